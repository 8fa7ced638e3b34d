//! The template's IAM against what the code calls: each service runs with exactly its role's
//! policies from `deploy/framefleet.yaml` while moto enforces IAM, so a permission the code
//! needs and the template lacks fails here rather than after a deployment.

use std::collections::BTreeSet;
use std::time::Duration;

use framefleet_core::jobs::{JobStatus, JobTable};
use framefleet_e2e::media::video_bytes;
use framefleet_e2e::stack::{spawn_stack_with, StackOptions};
use framefleet_provision::iam_from_template::{
    LocalNames, NamedPolicy, Template, LOCAL_ACCOUNT_ID, TEMPLATE,
};
use framefleet_provision::policy::{decide, Decision, PolicyDocument};
use framefleet_provision::QueueSettings;

const REGION: &str = "us-east-1";

fn names() -> LocalNames {
    LocalNames::new(
        framefleet_core::config::Resources {
            ingress_bucket: "t-ingress".into(),
            frames_bucket: "t-frames".into(),
            processed_bucket: "t-processed".into(),
            ingress_queue: "t-ingress".into(),
            job_events_queue: "t-job-events".into(),
            frames_queue: "t-frames".into(),
            jobs_table: "t-jobs".into(),
        },
        REGION,
        "t",
    )
}

fn documents(policies: &[NamedPolicy]) -> Vec<PolicyDocument> {
    policies.iter().map(|p| p.document.clone()).collect()
}

fn actions(policies: &[NamedPolicy]) -> BTreeSet<String> {
    policies
        .iter()
        .flat_map(|p| &p.document.statements)
        .flat_map(|s| s.actions.iter().cloned())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(ToString::to_string).collect()
}

fn allowed(policies: &[NamedPolicy], action: &str, resource: &str) -> bool {
    decide(&documents(policies), action, resource) == Decision::Allowed
}

/// The calls each service makes (`grep -rn "\.send()" core dispatcher worker localstack`),
/// and nothing more.
#[test]
fn each_role_grants_exactly_the_actions_its_code_calls() {
    let policies = Template::parse(TEMPLATE, names())
        .unwrap()
        .service_policies()
        .unwrap();
    assert_eq!(
        actions(&policies.dispatcher),
        set(&[
            // Queue loops (core/src/queue.rs, core/src/aws.rs) and the fan-out.
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
            "sqs:GetQueueUrl",
            "sqs:SendMessage",
            // The upload (GetObject, HeadObject, the pinned copy's source), the pinned copy,
            // and the listing of frames when MediaConvert names no last output.
            "s3:GetObject",
            // The pinned copy reads the registered version of a versioned upload.
            "s3:GetObjectVersion",
            "s3:PutObject",
            "s3:AbortMultipartUpload",
            "s3:ListBucket",
            // Job records (core/src/jobs.rs).
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            // A segmented capture's transactions check the job item (ConditionCheck).
            "dynamodb:ConditionCheckItem",
            // The reconciler (dispatcher/src/reconcile.rs): stale jobs from the open-jobs
            // index, a job's batch markers and failed frames; MediaConvert's state of a job.
            "dynamodb:Query",
            "mediaconvert:GetJob",
            "mediaconvert:CreateJob",
            // A second capture job of one video is canceled (dispatcher/src/mediaconvert.rs).
            "mediaconvert:CancelJob",
            "iam:PassRole",
            // The scaler (dispatcher/src/scaler.rs): the worker service's desired count.
            "ecs:DescribeServices",
            "ecs:UpdateService",
        ])
    );
    assert_eq!(
        actions(&policies.worker),
        set(&[
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
            "sqs:GetQueueUrl",
            "sqs:GetQueueAttributes",
            "s3:GetObject",
            "s3:ListBucket",
            "s3:PutObject",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:Query",
            "ecs:UpdateTaskProtection",
        ])
    );
}

/// The telemetry sidecar's actions are the collector's (ADOT sends to X-Ray and CloudWatch),
/// not calls of the services: they appear only with `EnableTelemetrySidecar` on, in both task
/// roles, and add nothing else; off (the default, and what every e2e test runs with) the roles
/// are exactly the code's calls above.
#[test]
fn the_telemetry_sidecar_adds_only_its_own_actions_and_only_when_enabled() {
    let off = Template::parse(TEMPLATE, names())
        .unwrap()
        .service_policies()
        .unwrap();
    let on = Template::parse(TEMPLATE, names())
        .unwrap()
        .with_parameter("EnableTelemetrySidecar", "true")
        .unwrap()
        .service_policies()
        .unwrap();
    let sidecar = set(&[
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
        "xray:GetSamplingStatisticSummaries",
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "logs:DescribeLogStreams",
        "logs:DescribeLogGroups",
        "logs:PutRetentionPolicy",
        "cloudwatch:PutMetricData",
    ]);
    for (role, off, on) in [
        ("dispatcher", &off.dispatcher, &on.dispatcher),
        ("worker", &off.worker, &on.worker),
    ] {
        assert!(actions(off).is_disjoint(&sidecar), "{role}");
        let added: BTreeSet<String> = actions(on).difference(&actions(off)).cloned().collect();
        assert_eq!(added, sidecar, "{role}");
        // The embedded-metric logs go to their own log group, not the services' one.
        let emf = format!(
            "arn:aws:logs:{REGION}:{LOCAL_ACCOUNT_ID}:log-group:/aws/ecs/application/metrics:log-stream:t1"
        );
        assert!(allowed(on, "logs:PutLogEvents", &emf), "{role}");
        assert!(
            !allowed(
                on,
                "logs:PutLogEvents",
                &format!("arn:aws:logs:{REGION}:{LOCAL_ACCOUNT_ID}:log-group:/ecs/t:log-stream:x")
            ),
            "{role}"
        );
    }
    assert_eq!(off.mediaconvert_standin, on.mediaconvert_standin);
}

/// Each grant is scoped to the resource it is for, including the ones other changes need.
#[test]
fn grants_are_scoped_to_their_resources() {
    let policies = Template::parse(TEMPLATE, names())
        .unwrap()
        .service_policies()
        .unwrap();
    let queue = |name: &str| format!("arn:aws:sqs:{REGION}:{LOCAL_ACCOUNT_ID}:{name}");
    let table = format!("arn:aws:dynamodb:{REGION}:{LOCAL_ACCOUNT_ID}:table/t-jobs");
    let task = names().task_arn("0123456789abcdef");

    let worker = &policies.worker;
    assert!(allowed(
        worker,
        "sqs:GetQueueAttributes",
        &queue("t-frames")
    ));
    assert!(!allowed(
        worker,
        "sqs:GetQueueAttributes",
        &queue("t-ingress")
    ));
    assert!(allowed(worker, "dynamodb:Query", &table));
    assert!(allowed(worker, "s3:ListBucket", "arn:aws:s3:::t-frames"));
    assert!(!allowed(
        worker,
        "s3:ListBucket",
        "arn:aws:s3:::t-processed"
    ));
    assert!(allowed(worker, "ecs:UpdateTaskProtection", &task));
    assert!(!allowed(
        worker,
        "ecs:UpdateTaskProtection",
        &format!("arn:aws:ecs:{REGION}:{LOCAL_ACCOUNT_ID}:task/other-cluster/0123")
    ));

    let dispatcher = &policies.dispatcher;
    assert!(allowed(
        dispatcher,
        "s3:PutObject",
        "arn:aws:s3:::t-frames/sources/v1"
    ));
    assert!(allowed(
        dispatcher,
        "s3:AbortMultipartUpload",
        "arn:aws:s3:::t-frames/sources/v1"
    ));
    assert!(!allowed(
        dispatcher,
        "s3:PutObject",
        "arn:aws:s3:::t-frames/v1/frame.0000000.jpg"
    ));
    assert!(allowed(
        dispatcher,
        "s3:ListBucket",
        "arn:aws:s3:::t-ingress"
    ));
    assert!(allowed(
        dispatcher,
        "s3:GetObject",
        "arn:aws:s3:::t-ingress/clip.mp4"
    ));
    assert!(!allowed(dispatcher, "sqs:SendMessage", &queue("t-ingress")));

    let mediaconvert = &policies.mediaconvert_standin;
    assert!(allowed(
        mediaconvert,
        "s3:PutObject",
        "arn:aws:s3:::t-processed/v1/preview.mp4"
    ));
    // A segment's part of the preview (segmented capture).
    assert!(allowed(
        mediaconvert,
        "s3:PutObject",
        "arn:aws:s3:::t-processed/v1/preview-s0003.mp4"
    ));
    assert!(!allowed(
        mediaconvert,
        "s3:PutObject",
        "arn:aws:s3:::t-processed/v1/frame.0000000.jpg"
    ));
    assert!(allowed(
        mediaconvert,
        "s3:GetObject",
        "arn:aws:s3:::t-frames/sources/v1"
    ));
    assert!(!allowed(
        mediaconvert,
        "s3:GetObject",
        "arn:aws:s3:::t-frames/v1/frame.0000000.jpg"
    ));
    // Its input is the pinned copy under sources/, never the upload: nothing in the ingress
    // bucket.
    for (action, resource) in [
        ("s3:GetObject", "arn:aws:s3:::t-ingress/clip.mp4"),
        ("s3:GetObjectVersion", "arn:aws:s3:::t-ingress/clip.mp4"),
        ("s3:ListBucket", "arn:aws:s3:::t-ingress"),
        ("s3:GetBucketLocation", "arn:aws:s3:::t-ingress"),
    ] {
        assert!(
            !allowed(mediaconvert, action, resource),
            "{action} {resource}"
        );
    }
    assert!(allowed(
        mediaconvert,
        "sqs:SendMessage",
        &queue("t-job-events")
    ));
    assert!(!allowed(
        mediaconvert,
        "sqs:SendMessage",
        &queue("t-frames")
    ));
}

/// Confused-deputy prevention: MediaConvert may assume the role only for jobs of this account
/// ("Cross-service confused deputy prevention", AWS Elemental MediaConvert User Guide,
/// https://docs.aws.amazon.com/mediaconvert/latest/ug/cross-service-confused-deputy-prevention.html).
#[test]
fn mediaconvert_may_assume_its_role_only_for_this_accounts_jobs() {
    let trust = Template::parse(TEMPLATE, names())
        .unwrap()
        .trust_policy("MediaConvertRole")
        .unwrap();
    let statements = trust["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 1);
    let statement = &statements[0];
    assert_eq!(
        statement["Principal"]["Service"],
        "mediaconvert.amazonaws.com"
    );
    assert_eq!(
        statement["Condition"]["StringEquals"]["aws:SourceAccount"],
        LOCAL_ACCOUNT_ID
    );
    assert_eq!(
        statement["Condition"]["ArnLike"]["aws:SourceArn"],
        format!("arn:aws:mediaconvert:{REGION}:{LOCAL_ACCOUNT_ID}:*")
    );
}

/// Enforcement is live: the same worker policy minus one action is refused by moto.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_policy_missing_one_action_is_refused() {
    let stack = spawn_stack_with(StackOptions {
        dispatcher: false,
        ..StackOptions::without_workers()
    })
    .await
    .unwrap();
    let without = |action: &str| -> Vec<NamedPolicy> {
        stack
            .policies
            .worker
            .iter()
            .map(|p| NamedPolicy {
                name: p.name.clone(),
                document: p.document.without_action(action),
            })
            .collect()
    };
    let blind = without("sqs:GetQueueAttributes");
    let key = stack.create_identity("worker-blind", &blind).await.unwrap();
    let error = stack.worker_as(&key, &blind).await.unwrap_err();
    // moto answers an SQS refusal in XML, whose code the JSON-protocol SDK cannot read, so
    // the refusal shows as a non-retryable failure of exactly that call.
    let refused = error
        .downcast_ref::<framefleet_core::queue::QueueError>()
        .unwrap_or_else(|| panic!("{error:#}"));
    assert_eq!(refused.operation, "get_attributes", "{refused}");
    assert!(!refused.is_retryable(), "{refused}");

    // The job table through a worker identity without Query, and through the worker's own.
    let no_query = without("dynamodb:Query");
    let key = stack
        .create_identity("worker-no-query", &no_query)
        .await
        .unwrap();
    let clients = stack.clients_as(&key, &no_query);
    let video_id = framefleet_core::video::VideoId::derive("b", "k", "e");
    let refused = JobTable::new(clients.dynamodb, &stack.resources.jobs_table)
        .markers(&video_id)
        .await
        .unwrap_err();
    assert!(!refused.is_retryable(), "{refused}");
    let clients = stack.clients_as(&stack.identities.worker, &stack.policies.worker);
    let markers = JobTable::new(clients.dynamodb, &stack.resources.jobs_table)
        .markers(&video_id)
        .await
        .unwrap();
    assert_eq!(markers, Default::default());
}

/// A worker whose policy lacks `dynamodb:Query` cannot read the batch markers (failed frames,
/// packs) for the manifest: the job stays FINALIZING and its last batch ends in the DLQ.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_query_the_job_stays_finalizing() {
    let stack = spawn_stack_with(StackOptions {
        queues: QueueSettings {
            max_receive_count: 2,
            frames_visibility_timeout_secs: 2,
            control_visibility_timeout_secs: 30,
        },
        ..StackOptions::without_workers()
    })
    .await
    .unwrap();
    let (bytes, _) = video_bytes("clip.mp4", 64, 48, "4", 1.0).await.unwrap();
    let video_id = stack.upload("no-query.mp4", bytes).await.unwrap();
    stack.wait_processing(&video_id).await.unwrap();
    let no_query: Vec<NamedPolicy> = stack
        .policies
        .worker
        .iter()
        .map(|p| NamedPolicy {
            name: p.name.clone(),
            document: p.document.without_action("dynamodb:Query"),
        })
        .collect();
    let key = stack
        .create_identity("worker-no-query", &no_query)
        .await
        .unwrap();
    let worker = stack.worker_as(&key, &no_query).await.unwrap();
    let token = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(worker.run(token.clone()));
    let frames_queue = stack.resources.frames_queue.clone();
    let dlq = stack.dlq_url(&frames_queue).to_string();
    // The batch that won finalisation is refused its manifest on every delivery until the
    // redrive policy moves it to the DLQ.
    while stack.queue_depth(&dlq).await.unwrap() == 0 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    token.cancel();
    running.await.unwrap().unwrap();
    let record = stack.jobs.get(&video_id).await.unwrap().unwrap();
    assert_eq!(record.status, JobStatus::Finalizing, "{record:#?}");
}

/// The worker starts with the template's policy (it reads the frames queue's visibility
/// timeout, sqs:GetQueueAttributes).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_starts_with_its_template_policy() {
    let stack = spawn_stack_with(StackOptions {
        dispatcher: false,
        ..StackOptions::without_workers()
    })
    .await
    .unwrap();
    stack.worker().await.unwrap();
}

/// A frame deleted after capture is a failed frame and the job completes with a manifest
/// naming it: S3 answers the worker 404, not 403, because the template grants it
/// s3:ListBucket on the frames bucket; and the manifest's Query is allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_frame_is_a_failed_frame() {
    let mut stack = spawn_stack_with(StackOptions::without_workers())
        .await
        .unwrap();
    let (bytes, frames) = video_bytes("clip.mp4", 64, 48, "6", 1.0).await.unwrap();
    let video_id = stack.upload("missing-frame.mp4", bytes).await.unwrap();
    stack.wait_processing(&video_id).await.unwrap();
    let captured = stack.captured_frames(&video_id).await.unwrap();
    let gone = captured[1].clone();
    stack.delete_frame(&gone).await.unwrap();
    stack.start_worker().await.unwrap();
    let record = stack.wait_final(&video_id).await.unwrap();
    assert_eq!(record.status, JobStatus::Complete, "{record:#?}");
    assert_eq!(record.failed_frames, 1);
    assert_eq!(record.processed_frames, frames - 1);
    let manifest = stack.manifest(video_id.as_str()).await.unwrap();
    let failed = manifest["failed_frames"].as_array().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["key"], gone.as_str());
    assert!(
        failed[0]["reason"].as_str().unwrap().contains("NoSuchKey"),
        "{manifest:#}"
    );
    assert_eq!(
        stack
            .queue_depth(stack.dlq_url(&stack.resources.frames_queue))
            .await
            .unwrap(),
        0
    );
}

/// The harness's S3 is as strict as AWS: without s3:ListBucket a missing key is 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_list_bucket_a_missing_key_is_access_denied() {
    let stack = spawn_stack_with(StackOptions {
        dispatcher: false,
        ..StackOptions::without_workers()
    })
    .await
    .unwrap();
    let read = |clients: framefleet_core::aws::AwsClients| {
        let bucket = stack.resources.frames_bucket.clone();
        async move {
            clients
                .s3
                .get_object()
                .bucket(bucket)
                .key("v/frame.0000000.jpg")
                .send()
                .await
                .unwrap_err()
        }
    };
    let worker = read(stack.clients_as(&stack.identities.worker, &stack.policies.worker)).await;
    assert!(worker
        .as_service_error()
        .is_some_and(|e| e.is_no_such_key()));
    let blind: Vec<NamedPolicy> = stack
        .policies
        .worker
        .iter()
        .map(|p| NamedPolicy {
            name: p.name.clone(),
            document: p.document.without_action("s3:ListBucket"),
        })
        .collect();
    let key = stack
        .create_identity("worker-unlisted", &blind)
        .await
        .unwrap();
    let refused = read(stack.clients_as(&key, &blind)).await;
    let code = refused.raw_response().map(|r| r.status().as_u16());
    assert_eq!(code, Some(403), "{refused:?}");
    assert!(!refused
        .as_service_error()
        .is_some_and(|e| e.is_no_such_key()));
}

/// A busy worker turns scale-in protection on through the ECS agent and off once idle; the
/// agent grants it only because the worker's role allows ecs:UpdateTaskProtection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn busy_worker_is_protected_from_scale_in_until_idle() {
    let stack = spawn_stack_with(StackOptions {
        workers: 1,
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let (bytes, _) = video_bytes("clip.mp4", 64, 48, "6", 1.0).await.unwrap();
    let video_id = stack.upload("protected.mp4", bytes).await.unwrap();
    let record = stack.wait_final(&video_id).await.unwrap();
    assert_eq!(record.status, JobStatus::Complete, "{record:#?}");
    let agent = &stack.ecs_agents[0];
    let log = agent
        .wait_until(|log| log.refusals > 0 || (!log.changes.is_empty() && !log.enabled))
        .await
        .unwrap();
    assert_eq!(log.refusals, 0, "the agent refused the worker: {log:?}");
    assert_eq!(log.changes.first(), Some(&true), "{log:?}");
    assert!(
        log.changes.windows(2).all(|pair| pair[0] != pair[1]),
        "protection alternates on/off: {log:?}"
    );
    assert!(!log.enabled);
}

/// Without ecs:UpdateTaskProtection the agent answers AccessDeniedException as ECS does.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ecs_agent_refuses_a_role_without_update_task_protection() {
    let task_arn = names().task_arn("feed");
    let policies = Template::parse(TEMPLATE, names())
        .unwrap()
        .service_policies()
        .unwrap();
    let without: Vec<PolicyDocument> = documents(&policies.worker)
        .iter()
        .map(|d| d.without_action("ecs:UpdateTaskProtection"))
        .collect();
    let agent = framefleet_e2e::ecs_agent::EcsAgent::start(
        &task_arn,
        "arn:aws:iam::123456789012:role/t-worker",
        without,
    )
    .await
    .unwrap();
    let body = reqwest_put(agent.uri(), r#"{"ProtectionEnabled":true}"#).await;
    assert_eq!(body.0, 400);
    assert_eq!(body.1["error"]["Code"], "AccessDeniedException");
    assert_eq!(body.1["error"]["Arn"], task_arn.as_str());
    assert_eq!(agent.log().refusals, 1);
    assert!(agent.log().changes.is_empty());
}

async fn reqwest_put(uri: &str, body: &str) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = uri.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "PUT /task-protection/v1/state HTTP/1.0\r\nHost: localhost\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap())
}

/// Creating an identity again (a second `framefleet-provision --local-iam`) keeps the user and
/// hands out a fresh key; the old key stops working.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identities_can_be_created_again() {
    let stack = spawn_stack_with(StackOptions {
        dispatcher: false,
        ..StackOptions::without_workers()
    })
    .await
    .unwrap();
    let admin = framefleet_e2e::sdk_config_as(
        stack.moto.endpoint(),
        &stack.identities.admin.access_key_id,
        &stack.identities.admin.secret_access_key,
    );
    let again = framefleet_provision::identities::create_identity(
        &aws_sdk_iam::Client::new(&admin),
        &stack.identities.worker.user,
        &stack.policies.worker,
    )
    .await
    .unwrap();
    assert_ne!(again.access_key_id, stack.identities.worker.access_key_id);
    stack
        .worker_as(&again, &stack.policies.worker)
        .await
        .unwrap();
    stack
        .worker_as(&stack.identities.worker, &stack.policies.worker)
        .await
        .unwrap_err();
}
