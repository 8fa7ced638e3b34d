//! Provisioning of every resource a local framefleet needs, idempotently: run it twice and the
//! second run changes nothing. The tests, the demo and docker compose all call this, so the
//! local stack is the same everywhere. On AWS, `deploy/` creates the same resources.
//!
//! - buckets: ingress, frames, processed;
//! - queues: ingress, job events, frames, each with a `-dlq` and a redrive policy;
//! - the ingress bucket's `ObjectCreated` notification to the ingress queue;
//! - the DynamoDB job table (`pk`, `sk`, on demand) with TTL on `expires_at`.
//!
//! IAM comes from the CloudFormation template rather than from here: [`iam_from_template`]
//! resolves the task roles' policies for local names, [`policy`] evaluates and adapts them to
//! the emulator, and [`identities`] creates one IAM user per service with them, so a local
//! stack can enforce exactly what AWS will.

pub mod iam_from_template;
pub mod identities;
pub mod policy;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
use aws_sdk_sqs::types::QueueAttributeName;
use framefleet_core::aws::AwsClients;
use framefleet_core::config::{ConfigError, Resources, TelemetrySettings};
use framefleet_core::jobs::{OPEN_JOBS_INDEX, RECENT_JOBS_INDEX};
use serde::{Deserialize, Serialize};

/// Settings of the provisioning command.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvisionSettings {
    /// The resource names to create.
    pub resources: Resources,
    /// Queue tuning.
    pub provision: QueueSettings,
    /// Logging.
    pub telemetry: TelemetrySettings,
}

/// Queue attributes the provisioner sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSettings {
    /// Receives before a message moves to its DLQ (AWS's usual choice is 5).
    pub max_receive_count: u32,
    /// Visibility timeout of the frames queue; workers heartbeat at half of it.
    pub frames_visibility_timeout_secs: u32,
    /// Visibility timeout of the ingress and job-events queues.
    pub control_visibility_timeout_secs: u32,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            max_receive_count: 5,
            frames_visibility_timeout_secs: 300,
            control_visibility_timeout_secs: 120,
        }
    }
}

impl ProvisionSettings {
    /// Checks the values before anything is created.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.resources.validate()?;
        if !(1..=1000).contains(&self.provision.max_receive_count) {
            return Err(ConfigError::rule(
                "provision.max_receive_count",
                "must be between 1 and 1000",
            ));
        }
        for (key, value) in [
            (
                "provision.frames_visibility_timeout_secs",
                self.provision.frames_visibility_timeout_secs,
            ),
            (
                "provision.control_visibility_timeout_secs",
                self.provision.control_visibility_timeout_secs,
            ),
        ] {
            if !(1..=43_200).contains(&value) {
                return Err(ConfigError::rule(
                    key,
                    "must be between 1 and 43200 seconds",
                ));
            }
        }
        Ok(())
    }
}

/// URLs of what was provisioned.
#[derive(Debug, Clone, Serialize)]
pub struct Provisioned {
    /// Ingress queue URL.
    pub ingress_queue_url: String,
    /// Job events queue URL.
    pub job_events_queue_url: String,
    /// Frames queue URL.
    pub frames_queue_url: String,
    /// Dead-letter queue URLs by main queue name.
    pub dead_letter_queue_urls: HashMap<String, String>,
}

/// Creates everything in `settings`, leaving what exists as it is.
pub async fn provision(
    clients: &AwsClients,
    settings: &ProvisionSettings,
) -> anyhow::Result<Provisioned> {
    let r = &settings.resources;
    for bucket in [&r.ingress_bucket, &r.frames_bucket, &r.processed_bucket] {
        ensure_bucket(clients, bucket).await?;
    }
    let mut dead_letter_queue_urls = HashMap::new();
    let mut urls = Vec::new();
    for (queue, visibility) in [
        (
            &r.ingress_queue,
            settings.provision.control_visibility_timeout_secs,
        ),
        (
            &r.job_events_queue,
            settings.provision.control_visibility_timeout_secs,
        ),
        (
            &r.frames_queue,
            settings.provision.frames_visibility_timeout_secs,
        ),
    ] {
        let (url, dlq) = ensure_queue(
            clients,
            queue,
            visibility,
            settings.provision.max_receive_count,
        )
        .await?;
        dead_letter_queue_urls.insert(queue.clone(), dlq);
        urls.push(url);
    }
    let ingress_arn = queue_arn(clients, &urls[0]).await?;
    ensure_notification(clients, &r.ingress_bucket, &ingress_arn).await?;
    ensure_table(clients, &r.jobs_table).await?;
    tracing::info!("provisioned buckets, queues, notification and table");
    Ok(Provisioned {
        ingress_queue_url: urls[0].clone(),
        job_events_queue_url: urls[1].clone(),
        frames_queue_url: urls[2].clone(),
        dead_letter_queue_urls,
    })
}

async fn ensure_bucket(clients: &AwsClients, bucket: &str) -> anyhow::Result<()> {
    match clients.s3.create_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(()),
        Err(error) => {
            let exists = error.as_service_error().is_some_and(|e| {
                e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists()
            });
            if exists {
                Ok(())
            } else {
                Err(error).with_context(|| format!("create bucket {bucket}"))
            }
        }
    }
}

async fn queue_arn(clients: &AwsClients, url: &str) -> anyhow::Result<String> {
    let out = clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .with_context(|| format!("get attributes of {url}"))?;
    out.attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .with_context(|| format!("queue {url} has no ARN"))
}

async fn create_queue(
    clients: &AwsClients,
    name: &str,
    attributes: HashMap<QueueAttributeName, String>,
) -> anyhow::Result<String> {
    let out = clients
        .sqs
        .create_queue()
        .queue_name(name)
        .set_attributes(Some(attributes.clone()))
        .send()
        .await;
    let url = match out {
        Ok(out) => out.queue_url().unwrap_or_default().to_string(),
        // An existing queue with other attributes: keep it and bring the attributes in line.
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_queue_name_exists()) =>
        {
            let url = framefleet_core::aws::queue_url(&clients.sqs, name).await?;
            clients
                .sqs
                .set_queue_attributes()
                .queue_url(&url)
                .set_attributes(Some(attributes))
                .send()
                .await
                .with_context(|| format!("update attributes of queue {name}"))?;
            url
        }
        Err(error) => return Err(error).with_context(|| format!("create queue {name}")),
    };
    Ok(url)
}

async fn ensure_queue(
    clients: &AwsClients,
    name: &str,
    visibility_secs: u32,
    max_receive_count: u32,
) -> anyhow::Result<(String, String)> {
    let dlq_name = format!("{name}-dlq");
    let dlq_url = create_queue(
        clients,
        &dlq_name,
        HashMap::from([(
            QueueAttributeName::MessageRetentionPeriod,
            (14 * 24 * 3600).to_string(),
        )]),
    )
    .await?;
    let dlq_arn = queue_arn(clients, &dlq_url).await?;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": max_receive_count.to_string(),
    });
    let url = create_queue(
        clients,
        name,
        HashMap::from([
            (
                QueueAttributeName::VisibilityTimeout,
                visibility_secs.to_string(),
            ),
            (
                QueueAttributeName::ReceiveMessageWaitTimeSeconds,
                "20".into(),
            ),
            (
                QueueAttributeName::MessageRetentionPeriod,
                (4 * 24 * 3600).to_string(),
            ),
            (QueueAttributeName::RedrivePolicy, redrive.to_string()),
        ]),
    )
    .await?;
    Ok((url, dlq_url))
}

async fn ensure_notification(
    clients: &AwsClients,
    bucket: &str,
    queue_arn: &str,
) -> anyhow::Result<()> {
    // PUT replaces the whole configuration, so repeating it is idempotent. (Reading it first
    // would be nicer, but moto answers an empty configuration with a root element the SDK
    // rejects.) Each PUT makes S3 send an `s3:TestEvent`, which the dispatcher deletes.
    let queue = QueueConfiguration::builder()
        .id("framefleet-ingress")
        .queue_arn(queue_arn)
        .events(Event::S3ObjectCreated)
        .build()
        .context("notification configuration")?;
    clients
        .s3
        .put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(queue)
                .build(),
        )
        .send()
        .await
        .with_context(|| format!("put notification on {bucket}"))?;
    Ok(())
}

async fn ensure_table(clients: &AwsClients, table: &str) -> anyhow::Result<()> {
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
    };
    let mut create = clients
        .dynamodb
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .attribute_definitions(string_attribute("pk")?)
        .attribute_definitions(string_attribute("sk")?);
    for (name, hash, range) in JOB_INDEXES {
        create = create
            .attribute_definitions(string_attribute(hash)?)
            .attribute_definitions(string_attribute(range)?)
            .global_secondary_indexes(keys_only_index(name, hash, range)?);
    }
    let created = create.send().await;
    match created {
        Ok(_) => {}
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) => {}
        Err(error) => return Err(error).with_context(|| format!("create table {table}")),
    }
    wait_table_active(clients, table).await?;
    ensure_job_indexes(clients, table).await?;
    let ttl = clients
        .dynamodb
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .with_context(|| format!("describe TTL of {table}"))?;
    let enabled = ttl
        .time_to_live_description()
        .and_then(|d| d.attribute_name())
        .is_some_and(|name| name == "expires_at");
    if !enabled {
        clients
            .dynamodb
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name("expires_at")
                    .build()?,
            )
            .send()
            .await
            .with_context(|| format!("enable TTL on {table}"))?;
    }
    Ok(())
}

/// A keys-only global secondary index of the job table: `name`, partitioned by `hash` and
/// sorted by `range` (both strings). Both of ours are sparse: only job items carry their keys.
/// - `open-jobs` (`open_shard`, `updated_at`): unfinished jobs, which the reconciler queries
///   (see `framefleet_core::jobs`); the key is removed when a job ends.
/// - `recent-jobs` (`created_day`, `created_at`): every job by day, which `framefleet list`
///   queries day by day; set once at registration, so counting batches never writes to it.
///
/// Keys only: readers re-read each job they find.
const JOB_INDEXES: [(&str, &str, &str); 2] = [
    (OPEN_JOBS_INDEX, "open_shard", "updated_at"),
    (RECENT_JOBS_INDEX, "created_day", "created_at"),
];

fn string_attribute(name: &str) -> anyhow::Result<AttributeDefinition> {
    Ok(AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()?)
}

fn keys_only_index(name: &str, hash: &str, range: &str) -> anyhow::Result<GlobalSecondaryIndex> {
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
    };
    Ok(GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key(hash, KeyType::Hash)?)
        .key_schema(key(range, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::KeysOnly)
                .build(),
        )
        .build()?)
}

/// Adds the job table's indexes that a table made before them lacks, one per UpdateTable as
/// DynamoDB requires. Jobs written before an index carry none of its keys.
async fn ensure_job_indexes(clients: &AwsClients, table: &str) -> anyhow::Result<()> {
    for (name, hash, range) in JOB_INDEXES {
        let out = clients
            .dynamodb
            .describe_table()
            .table_name(table)
            .send()
            .await
            .with_context(|| format!("describe table {table}"))?;
        let present = out
            .table()
            .map(|t| t.global_secondary_indexes())
            .unwrap_or_default()
            .iter()
            .any(|index| index.index_name() == Some(name));
        if present {
            continue;
        }
        let index = keys_only_index(name, hash, range)?;
        clients
            .dynamodb
            .update_table()
            .table_name(table)
            .attribute_definitions(string_attribute(hash)?)
            .attribute_definitions(string_attribute(range)?)
            .global_secondary_index_updates(
                GlobalSecondaryIndexUpdate::builder()
                    .create(
                        CreateGlobalSecondaryIndexAction::builder()
                            .index_name(name)
                            .set_key_schema(Some(index.key_schema().to_vec()))
                            .set_projection(index.projection().cloned())
                            .build()?,
                    )
                    .build(),
            )
            .send()
            .await
            .with_context(|| format!("add index {name} to {table}"))?;
        wait_table_active(clients, table).await?;
    }
    Ok(())
}

async fn wait_table_active(clients: &AwsClients, table: &str) -> anyhow::Result<()> {
    for _ in 0..120 {
        let out = clients
            .dynamodb
            .describe_table()
            .table_name(table)
            .send()
            .await
            .with_context(|| format!("describe table {table}"))?;
        let active = out
            .table()
            .and_then(|t| t.table_status())
            .is_some_and(|s| s == &aws_sdk_dynamodb::types::TableStatus::Active);
        if active {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    anyhow::bail!("table {table} did not become ACTIVE within 60 s")
}
