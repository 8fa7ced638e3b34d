//! The local stack is built from `deploy/framefleet.yaml`: after `framefleet_provision::provision`
//! on a real moto_server, each resource reads back with the properties the template gives it
//! (versioning, lifecycle, encryption, public access block, notification; queue visibility,
//! redrive, retention, receive wait, SSE, policy; the table's keys, indexes, TTL, PITR), and the
//! stand-in's events pass the template's job-events rule.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::{ContinuousBackupsStatus, KeyType, ProjectionType, TimeToLiveStatus};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, ServerSideEncryption};
use aws_sdk_sqs::types::QueueAttributeName;
use framefleet_core::aws::AwsClients;
use framefleet_core::config::Resources;
use framefleet_core::event_pattern::EventPattern;
use framefleet_e2e::moto::MotoServer;
use framefleet_provision::{ProvisionSettings, Provisioned, QueueSettings};
use serde_json::Value;

async fn provisioned(queues: QueueSettings) -> (MotoServer, AwsClients, Resources, Provisioned) {
    let moto = MotoServer::start().await.unwrap();
    let clients = AwsClients::from_config(&framefleet_e2e::sdk_config(moto.endpoint()), true, None);
    let resources = framefleet_e2e::resources_named("prov");
    let settings = ProvisionSettings {
        resources: resources.clone(),
        provision: queues,
        ..ProvisionSettings::default()
    };
    settings.validate().unwrap();
    let out = framefleet_provision::provision(&clients, &settings)
        .await
        .unwrap();
    (moto, clients, resources, out)
}

async fn queue_attributes(clients: &AwsClients, url: &str) -> BTreeMap<String, String> {
    let out = clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    out.attributes()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_have_the_templates_configuration() {
    let (_moto, clients, r, _) = provisioned(QueueSettings::default()).await;
    let s3 = &clients.s3;
    let versioning = |bucket: String| {
        let s3 = s3.clone();
        async move {
            let out = s3
                .get_bucket_versioning()
                .bucket(bucket)
                .send()
                .await
                .unwrap();
            out.status().cloned()
        }
    };
    assert_eq!(
        versioning(r.ingress_bucket.clone()).await,
        Some(BucketVersioningStatus::Enabled)
    );
    assert_eq!(versioning(r.frames_bucket.clone()).await, None);

    let lifecycle = s3
        .get_bucket_lifecycle_configuration()
        .bucket(&r.frames_bucket)
        .send()
        .await
        .unwrap();
    let rule = &lifecycle.rules()[0];
    assert_eq!(rule.id(), Some("expire-captured-frames"));
    assert_eq!(rule.expiration().and_then(|e| e.days()), Some(7));
    assert_eq!(
        rule.abort_incomplete_multipart_upload()
            .and_then(|a| a.days_after_initiation()),
        Some(1)
    );
    let lifecycle = s3
        .get_bucket_lifecycle_configuration()
        .bucket(&r.ingress_bucket)
        .send()
        .await
        .unwrap();
    assert_eq!(
        lifecycle.rules()[0]
            .noncurrent_version_expiration()
            .and_then(|n| n.noncurrent_days()),
        Some(30)
    );

    for bucket in [&r.ingress_bucket, &r.frames_bucket, &r.processed_bucket] {
        let encryption = s3
            .get_bucket_encryption()
            .bucket(bucket)
            .send()
            .await
            .unwrap();
        let rule = &encryption
            .server_side_encryption_configuration()
            .unwrap()
            .rules()[0];
        assert_eq!(
            rule.apply_server_side_encryption_by_default()
                .map(|d| d.sse_algorithm()),
            Some(&ServerSideEncryption::Aes256),
            "{bucket}"
        );
        let block = s3
            .get_public_access_block()
            .bucket(bucket)
            .send()
            .await
            .unwrap();
        let block = block.public_access_block_configuration().unwrap();
        assert_eq!(
            (
                block.block_public_acls(),
                block.block_public_policy(),
                block.ignore_public_acls(),
                block.restrict_public_buckets()
            ),
            (Some(true), Some(true), Some(true), Some(true)),
            "{bucket}"
        );
    }

    let notification = s3
        .get_bucket_notification_configuration()
        .bucket(&r.ingress_bucket)
        .send()
        .await
        .unwrap();
    let queue = &notification.queue_configurations()[0];
    assert_eq!(
        queue.queue_arn(),
        format!("arn:aws:sqs:us-east-1:123456789012:{}", r.ingress_queue)
    );
    assert_eq!(queue.events()[0].as_str(), "s3:ObjectCreated:*");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_have_the_templates_attributes_and_policies() {
    let (_moto, clients, r, out) = provisioned(QueueSettings::default()).await;
    assert_eq!(out.local_overrides, Vec::<String>::new());
    let frames = queue_attributes(&clients, &out.frames_queue_url).await;
    assert_eq!(frames["VisibilityTimeout"], "300");
    assert_eq!(frames["ReceiveMessageWaitTimeSeconds"], "20");
    assert_eq!(frames["MessageRetentionPeriod"], "345600");
    assert_eq!(frames["SqsManagedSseEnabled"], "true");
    let redrive: Value = serde_json::from_str(&frames["RedrivePolicy"]).unwrap();
    assert_eq!(
        redrive["deadLetterTargetArn"],
        format!("arn:aws:sqs:us-east-1:123456789012:{}-dlq", r.frames_queue)
    );
    assert_eq!(
        redrive["maxReceiveCount"].to_string().trim_matches('"'),
        "5"
    );
    let control = queue_attributes(&clients, &out.ingress_queue_url).await;
    assert_eq!(control["VisibilityTimeout"], "120");
    let dlq = queue_attributes(&clients, &out.dead_letter_queue_urls[&r.frames_queue]).await;
    assert_eq!(dlq["MessageRetentionPeriod"], "1209600");
    assert!(!dlq.contains_key("RedrivePolicy"));

    let events = queue_attributes(&clients, &out.job_events_queue_url).await;
    let policy: Value = serde_json::from_str(&events["Policy"]).unwrap();
    let statement = &policy["Statement"][0];
    assert_eq!(statement["Principal"]["Service"], "events.amazonaws.com");
    assert_eq!(
        statement["Condition"]["ArnEquals"]["aws:SourceArn"],
        "arn:aws:events:us-east-1:123456789012:rule/framefleet-job-events"
    );
    let ingress_policy: Value = serde_json::from_str(&control["Policy"]).unwrap();
    assert_eq!(
        ingress_policy["Statement"][0]["Principal"]["Service"],
        "s3.amazonaws.com"
    );
}

/// Every attribute the template gives a queue reads back from moto as the template says, so a
/// property added to a queue in the template (`DelaySeconds: 5`) is applied or fails here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_queue_attribute_of_the_template_reads_back() {
    use framefleet_provision::iam_from_template::{LocalNames, Template, TEMPLATE};
    use framefleet_provision::stack_from_template::StackPlan;
    let (_moto, clients, r, _) = provisioned(QueueSettings::default()).await;
    let template =
        Template::parse(TEMPLATE, LocalNames::new(r, "us-east-1", "framefleet")).unwrap();
    let plan = StackPlan::from_template(&template).unwrap();
    for queue in &plan.queues {
        let url = framefleet_core::aws::queue_url(&clients.sqs, &queue.name)
            .await
            .unwrap();
        let actual = queue_attributes(&clients, &url).await;
        for (name, expected) in queue.properties.attributes() {
            let got = actual.get(name).map(String::as_str).unwrap_or("(missing)");
            if name == "RedrivePolicy" {
                let (got, expected): (Value, Value) = (
                    serde_json::from_str(got).unwrap(),
                    serde_json::from_str(&expected).unwrap(),
                );
                assert_eq!(got["deadLetterTargetArn"], expected["deadLetterTargetArn"]);
                assert_eq!(
                    got["maxReceiveCount"].to_string().trim_matches('"'),
                    expected["maxReceiveCount"].to_string().trim_matches('"'),
                );
            } else {
                assert_eq!(got, expected, "{}.{name}", queue.logical_id);
            }
        }
    }
}

/// The tests shorten visibility and redrive through `QueueSettings`; the provisioner applies
/// them over the template's values and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_overrides_are_applied_and_reported() {
    let queues = QueueSettings {
        max_receive_count: 2,
        frames_visibility_timeout_secs: 7,
        control_visibility_timeout_secs: 120,
    };
    let (_moto, clients, _, out) = provisioned(queues).await;
    let frames = queue_attributes(&clients, &out.frames_queue_url).await;
    assert_eq!(frames["VisibilityTimeout"], "7");
    let redrive: Value = serde_json::from_str(&frames["RedrivePolicy"]).unwrap();
    assert_eq!(
        redrive["maxReceiveCount"].to_string().trim_matches('"'),
        "2"
    );
    assert!(out
        .local_overrides
        .contains(&"FramesQueue.VisibilityTimeout: 7 (template: 300)".to_string()));
    assert_eq!(out.local_overrides.len(), 4, "{:?}", out.local_overrides);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_has_the_templates_keys_indexes_ttl_and_recovery() {
    let (_moto, clients, r, _) = provisioned(QueueSettings::default()).await;
    let ddb = &clients.dynamodb;
    let table = ddb
        .describe_table()
        .table_name(&r.jobs_table)
        .send()
        .await
        .unwrap();
    let table = table.table().unwrap();
    let keys: Vec<(&str, &KeyType)> = table
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name(), k.key_type()))
        .collect();
    assert_eq!(keys, [("pk", &KeyType::Hash), ("sk", &KeyType::Range)]);
    let mut indexes: Vec<(String, Vec<String>, Option<ProjectionType>)> = table
        .global_secondary_indexes()
        .iter()
        .map(|i| {
            (
                i.index_name().unwrap_or_default().to_string(),
                i.key_schema()
                    .iter()
                    .map(|k| k.attribute_name().to_string())
                    .collect(),
                i.projection().and_then(|p| p.projection_type()).cloned(),
            )
        })
        .collect();
    indexes.sort();
    assert_eq!(
        indexes,
        [
            (
                "open-jobs".to_string(),
                vec!["open_shard".to_string(), "updated_at".to_string()],
                Some(ProjectionType::KeysOnly)
            ),
            (
                "recent-jobs".to_string(),
                vec!["created_day".to_string(), "created_at".to_string()],
                Some(ProjectionType::KeysOnly)
            ),
        ]
    );
    assert_eq!(table.deletion_protection_enabled(), Some(true));
    let ttl = ddb
        .describe_time_to_live()
        .table_name(&r.jobs_table)
        .send()
        .await
        .unwrap();
    let ttl = ttl.time_to_live_description().unwrap();
    assert_eq!(ttl.attribute_name(), Some("expires_at"));
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
    let backups = ddb
        .describe_continuous_backups()
        .table_name(&r.jobs_table)
        .send()
        .await
        .unwrap();
    let backups = backups.continuous_backups_description().unwrap();
    assert_eq!(
        backups.continuous_backups_status(),
        &ContinuousBackupsStatus::Enabled
    );
    assert_eq!(
        backups
            .point_in_time_recovery_description()
            .and_then(|p| p.point_in_time_recovery_status())
            .map(|s| s.as_str()),
        Some("ENABLED")
    );
}

/// Provisioning again changes nothing and fails nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_twice_is_idempotent() {
    let (_moto, clients, r, first) = provisioned(QueueSettings::default()).await;
    let settings = ProvisionSettings {
        resources: r.clone(),
        ..ProvisionSettings::default()
    };
    let second = framefleet_provision::provision(&clients, &settings)
        .await
        .unwrap();
    assert_eq!(first.frames_queue_url, second.frames_queue_url);
    let attributes = queue_attributes(&clients, &second.frames_queue_url).await;
    assert_eq!(attributes["VisibilityTimeout"], "300");
}

/// On a versioned ingress bucket S3's notification names the new version, which the
/// dispatcher derives the video id from (moto leaves it out; `tests/moto_server.py` adds it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_notification_carries_the_version_id() {
    let (_moto, clients, r, out) = provisioned(QueueSettings::default()).await;
    let put = clients
        .s3
        .put_object()
        .bucket(&r.ingress_bucket)
        .key("clip.mp4")
        .body(ByteStream::from_static(b"not really a video"))
        .send()
        .await
        .unwrap();
    let version = put
        .version_id()
        .expect("a versioned bucket returns a version id");
    let record = loop {
        let received = clients
            .sqs
            .receive_message()
            .queue_url(&out.ingress_queue_url)
            .wait_time_seconds(5)
            .send()
            .await
            .unwrap();
        let Some(message) = received.messages().first() else {
            continue;
        };
        let body: Value = serde_json::from_str(message.body().unwrap()).unwrap();
        clients
            .sqs
            .delete_message()
            .queue_url(&out.ingress_queue_url)
            .receipt_handle(message.receipt_handle().unwrap())
            .send()
            .await
            .unwrap();
        if body.get("Records").is_some() {
            break body["Records"][0].clone();
        }
    };
    assert_eq!(record["s3"]["object"]["key"], "clip.mp4");
    assert_eq!(record["s3"]["object"]["versionId"], version);
}

/// The stand-in sends its job events through the template's rule pattern, as EventBridge
/// would forward them: only framefleet's jobs (`application: framefleet` in the user metadata)
/// reach the job-events queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standin_sends_only_what_the_templates_rule_forwards() {
    use mediaconvert_standin::events::{EventPublisher, JobContext, JobEvent};
    let (_moto, clients, _, out) = provisioned(QueueSettings::default()).await;
    let pattern = EventPattern::from_json_text(&out.job_events_pattern).unwrap();
    let job = |application: &str| JobContext {
        account: "123456789012".into(),
        region: "us-east-1".into(),
        queue_arn: "arn:aws:mediaconvert:us-east-1:123456789012:queues/Default".into(),
        job_id: format!("j-{application}"),
        job_arn: format!("arn:aws:mediaconvert:us-east-1:123456789012:jobs/j-{application}"),
        user_metadata: [("application".to_string(), application.to_string())].into(),
    };
    let publisher = EventPublisher::new(clients.sqs.clone(), out.job_events_queue_url.clone())
        .with_pattern(Some(pattern));
    publisher
        .publish(&job("another-app"), &JobEvent::Progressing)
        .await
        .unwrap();
    publisher
        .publish(&job("framefleet"), &JobEvent::Progressing)
        .await
        .unwrap();
    let mut job_ids = Vec::new();
    loop {
        let received = clients
            .sqs
            .receive_message()
            .queue_url(&out.job_events_queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        if received.messages().is_empty() {
            break;
        }
        for message in received.messages() {
            let body: Value = serde_json::from_str(message.body().unwrap()).unwrap();
            job_ids.push(body["detail"]["jobId"].as_str().unwrap().to_string());
            clients
                .sqs
                .delete_message()
                .queue_url(&out.job_events_queue_url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    assert_eq!(job_ids, ["j-framefleet"]);
}
