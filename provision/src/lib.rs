//! Provisioning of every resource a local framefleet needs, idempotently: run it twice and the
//! second run changes nothing. The tests, the demo and docker compose all call this, so the
//! local stack is the same everywhere. On AWS, `deploy/framefleet.yaml` creates the same
//! resources, and the local stack is built from that template: [`stack_from_template`] reads
//! its buckets (versioning, encryption, public access block, ownership, lifecycle, the S3 → SQS
//! notification with its filters), queues (visibility, retention, receive wait, delay, size,
//! SSE, redrive to the `-dlq`), queue policies, the job table (keys, indexes, TTL, PITR, SSE,
//! deletion protection) and the job-events rule (whose pattern the MediaConvert stand-in
//! applies), and [`provision`] applies them here with local `<prefix>-<role>` names. What the
//! emulator cannot apply is listed in [`stack_from_template::NOT_APPLICABLE`], with the reason.
//!
//! IAM comes from the same template: [`iam_from_template`]
//! resolves the task roles' policies for local names, [`policy`] evaluates and adapts them to
//! the emulator, and [`identities`] creates one IAM user per service with them, so a local
//! stack can enforce exactly what AWS will.

pub mod iam_from_template;
pub mod identities;
pub mod policy;
pub mod stack_from_template;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use aws_sdk_dynamodb::types as ddb;
use aws_sdk_s3::types as s3;
use aws_sdk_sqs::types::QueueAttributeName;
use framefleet_core::aws::AwsClients;
use framefleet_core::config::{ConfigError, Resources, TelemetrySettings};
use serde::{Deserialize, Serialize};

use crate::iam_from_template::{LocalNames, Template, TEMPLATE};
use crate::stack_from_template::{BucketPlan, StackPlan, TablePlan};
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

/// Queue attributes in which the local stack may differ from the template, so tests can see a
/// redelivery in seconds rather than minutes. The defaults are the template's values
/// (`provision`'s tests check that); [`provision`] logs every value that differs and lists it
/// in [`Provisioned::local_overrides`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSettings {
    /// Receives before a message moves to its DLQ, on every queue with a redrive policy (the
    /// template's `maxReceiveCount`, 5).
    pub max_receive_count: u32,
    /// Visibility timeout of the frames queue; workers heartbeat at half of it (the template's
    /// `FramesQueue.VisibilityTimeout`, 300).
    pub frames_visibility_timeout_secs: u32,
    /// Visibility timeout of the ingress and job-events queues (the template's 120).
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
    /// The job-events rule's `EventPattern` as JSON text: the MediaConvert stand-in sends only
    /// the events it matches (its `standin.event_pattern` setting), as the rule forwards only
    /// those on AWS.
    pub job_events_pattern: String,
    /// Where this stack differs from the template on purpose ([`QueueSettings`]), one line
    /// each, e.g. `FramesQueue.VisibilityTimeout: 30 (template: 300)`.
    pub local_overrides: Vec<String>,
}

/// Creates everything in `settings`, as the template says, leaving what exists as it is.
pub async fn provision(
    clients: &AwsClients,
    settings: &ProvisionSettings,
) -> anyhow::Result<Provisioned> {
    let region = clients
        .sqs
        .config()
        .region()
        .map_or("us-east-1".to_string(), ToString::to_string);
    let mut names = LocalNames::new(settings.resources.clone(), &region, "framefleet");
    let plan_for = |names: &LocalNames| -> anyhow::Result<StackPlan> {
        let template =
            Template::parse(TEMPLATE, names.clone()).context("reading deploy/framefleet.yaml")?;
        StackPlan::from_template(&template).context("reading deploy/framefleet.yaml")
    };
    let mut plan = plan_for(&names)?;
    // ARNs name the emulator's account: moto's is LOCAL_ACCOUNT_ID, LocalStack's another. The
    // first queue (a dead-letter queue, which names no other resource) tells which.
    let account = emulator_account(clients, &plan).await?;
    if account != names.account_id {
        names.account_id = account;
        plan = plan_for(&names)?;
    }
    let local_overrides = apply_overrides(&mut plan, &settings.provision);
    for line in &local_overrides {
        tracing::info!(setting = %line, "local override of the template");
    }
    provision_plan(clients, &settings.resources, &plan, local_overrides).await
}

/// The account in the ARN of the plan's first queue, created as the plan says.
async fn emulator_account(clients: &AwsClients, plan: &StackPlan) -> anyhow::Result<String> {
    let first = plan
        .queues
        .first()
        .context("the template creates no queue")?;
    let attributes = first
        .properties
        .attributes()
        .into_iter()
        .map(|(name, value)| (QueueAttributeName::from(name), value))
        .collect();
    let url = create_queue(clients, &first.name, attributes).await?;
    let out = clients
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .with_context(|| format!("get the ARN of {url}"))?;
    let arn = out
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .with_context(|| format!("queue {url} has no ARN"))?;
    arn.split(':')
        .nth(4)
        .map(ToString::to_string)
        .with_context(|| format!("`{arn}` is not an ARN"))
}

/// Applies `settings` to the plan's queues; returns what now differs from the template.
pub fn apply_overrides(plan: &mut StackPlan, settings: &QueueSettings) -> Vec<String> {
    let mut overrides = Vec::new();
    let visibility = [
        ("IngressQueue", settings.control_visibility_timeout_secs),
        ("JobEventsQueue", settings.control_visibility_timeout_secs),
        ("FramesQueue", settings.frames_visibility_timeout_secs),
    ];
    for (logical_id, seconds) in visibility {
        if let Some(queue) = plan.queue_mut(logical_id) {
            let template = queue.properties.visibility_timeout;
            if template != Some(seconds) {
                overrides.push(format!(
                    "{logical_id}.VisibilityTimeout: {seconds} (template: {})",
                    template.map_or("unset".into(), |v| v.to_string())
                ));
                queue.properties.visibility_timeout = Some(seconds);
            }
        }
    }
    for queue in &mut plan.queues {
        if let Some(redrive) = &mut queue.properties.redrive_policy {
            if redrive.max_receive_count != settings.max_receive_count {
                overrides.push(format!(
                    "{}.RedrivePolicy.maxReceiveCount: {} (template: {})",
                    queue.logical_id, settings.max_receive_count, redrive.max_receive_count
                ));
                redrive.max_receive_count = settings.max_receive_count;
            }
        }
    }
    overrides
}

/// Creates what `plan` says: queues (dead-letter queues first), queue policies, buckets with
/// their configurations and notification, the table.
pub async fn provision_plan(
    clients: &AwsClients,
    resources: &Resources,
    plan: &StackPlan,
    local_overrides: Vec<String>,
) -> anyhow::Result<Provisioned> {
    let mut urls = HashMap::new();
    for queue in &plan.queues {
        let attributes = queue
            .properties
            .attributes()
            .into_iter()
            .map(|(name, value)| (QueueAttributeName::from(name), value))
            .collect();
        let url = create_queue(clients, &queue.name, attributes).await?;
        urls.insert(queue.name.clone(), url);
    }
    for policy in &plan.queue_policies {
        for queue in &policy.queues {
            let url = urls.get(queue).with_context(|| {
                format!(
                    "{} names queue {queue}, which the template does not create",
                    policy.logical_id
                )
            })?;
            clients
                .sqs
                .set_queue_attributes()
                .queue_url(url)
                .attributes(QueueAttributeName::Policy, policy.document.to_string())
                .send()
                .await
                .with_context(|| format!("put {} on queue {queue}", policy.logical_id))?;
        }
    }
    for bucket in &plan.buckets {
        ensure_bucket(clients, bucket).await?;
    }
    ensure_table(clients, &plan.table).await?;
    tracing::info!("provisioned buckets, queues, notification and table from the template");
    let url = |name: &str| {
        urls.get(name)
            .cloned()
            .with_context(|| format!("the template has no queue that is local {name}"))
    };
    let mut dead_letter_queue_urls = HashMap::new();
    for queue in [
        &resources.ingress_queue,
        &resources.job_events_queue,
        &resources.frames_queue,
    ] {
        dead_letter_queue_urls.insert(queue.clone(), url(&format!("{queue}-dlq"))?);
    }
    Ok(Provisioned {
        ingress_queue_url: url(&resources.ingress_queue)?,
        job_events_queue_url: url(&resources.job_events_queue)?,
        frames_queue_url: url(&resources.frames_queue)?,
        dead_letter_queue_urls,
        job_events_pattern: plan.job_events_rule.pattern.to_string(),
        local_overrides,
    })
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

/// Creates the bucket if needed, then puts each configuration the template gives it. Every PUT
/// replaces the whole configuration, so repeating them is idempotent.
async fn ensure_bucket(clients: &AwsClients, plan: &BucketPlan) -> anyhow::Result<()> {
    let bucket = plan.name.as_str();
    let p = &plan.properties;
    match clients.s3.create_bucket().bucket(bucket).send().await {
        Ok(_) => {}
        Err(error) => {
            let exists = error.as_service_error().is_some_and(|e| {
                e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists()
            });
            if !exists {
                return Err(error).with_context(|| format!("create bucket {bucket}"));
            }
        }
    }
    if let Some(versioning) = &p.versioning_configuration {
        clients
            .s3
            .put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(
                s3::VersioningConfiguration::builder()
                    .status(s3::BucketVersioningStatus::from(versioning.status.as_str()))
                    .build(),
            )
            .send()
            .await
            .with_context(|| format!("put versioning on {bucket}"))?;
    }
    if let Some(encryption) = &p.bucket_encryption {
        let mut configuration = s3::ServerSideEncryptionConfiguration::builder();
        for rule in &encryption.server_side_encryption_configuration {
            let default = &rule.server_side_encryption_by_default;
            configuration = configuration.rules(
                s3::ServerSideEncryptionRule::builder()
                    .apply_server_side_encryption_by_default(
                        s3::ServerSideEncryptionByDefault::builder()
                            .sse_algorithm(s3::ServerSideEncryption::from(
                                default.sse_algorithm.as_str(),
                            ))
                            .set_kms_master_key_id(default.kms_master_key_id.clone())
                            .build()?,
                    )
                    .set_bucket_key_enabled(rule.bucket_key_enabled)
                    .build(),
            );
        }
        clients
            .s3
            .put_bucket_encryption()
            .bucket(bucket)
            .server_side_encryption_configuration(configuration.build()?)
            .send()
            .await
            .with_context(|| format!("put encryption on {bucket}"))?;
    }
    if let Some(block) = &p.public_access_block_configuration {
        clients
            .s3
            .put_public_access_block()
            .bucket(bucket)
            .public_access_block_configuration(
                s3::PublicAccessBlockConfiguration::builder()
                    .block_public_acls(block.block_public_acls)
                    .block_public_policy(block.block_public_policy)
                    .ignore_public_acls(block.ignore_public_acls)
                    .restrict_public_buckets(block.restrict_public_buckets)
                    .build(),
            )
            .send()
            .await
            .with_context(|| format!("put public access block on {bucket}"))?;
    }
    if let Some(ownership) = &p.ownership_controls {
        let mut controls = s3::OwnershipControls::builder();
        for rule in &ownership.rules {
            controls = controls.rules(
                s3::OwnershipControlsRule::builder()
                    .object_ownership(s3::ObjectOwnership::from(rule.object_ownership.as_str()))
                    .build()?,
            );
        }
        clients
            .s3
            .put_bucket_ownership_controls()
            .bucket(bucket)
            .ownership_controls(controls.build()?)
            .send()
            .await
            .with_context(|| format!("put ownership controls on {bucket}"))?;
    }
    if let Some(lifecycle) = &p.lifecycle_configuration {
        let mut configuration = s3::BucketLifecycleConfiguration::builder();
        for rule in &lifecycle.rules {
            let mut built = s3::LifecycleRule::builder()
                .set_id(rule.id.clone())
                .status(s3::ExpirationStatus::from(rule.status.as_str()))
                .filter(
                    s3::LifecycleRuleFilter::builder()
                        .prefix(rule.prefix.clone().unwrap_or_default())
                        .build(),
                );
            if let Some(days) = rule.expiration_in_days {
                built = built.expiration(s3::LifecycleExpiration::builder().days(days).build());
            }
            if let Some(noncurrent) = &rule.noncurrent_version_expiration {
                built = built.noncurrent_version_expiration(
                    s3::NoncurrentVersionExpiration::builder()
                        .noncurrent_days(noncurrent.noncurrent_days)
                        .build(),
                );
            }
            if let Some(abort) = &rule.abort_incomplete_multipart_upload {
                built = built.abort_incomplete_multipart_upload(
                    s3::AbortIncompleteMultipartUpload::builder()
                        .days_after_initiation(abort.days_after_initiation)
                        .build(),
                );
            }
            configuration = configuration.rules(built.build()?);
        }
        clients
            .s3
            .put_bucket_lifecycle_configuration()
            .bucket(bucket)
            .lifecycle_configuration(configuration.build()?)
            .send()
            .await
            .with_context(|| format!("put lifecycle configuration on {bucket}"))?;
    }
    if let Some(notifications) = &p.notification_configuration {
        // Each PUT makes S3 send an `s3:TestEvent`, which the dispatcher deletes. (Reading the
        // configuration first would be nicer, but moto answers an empty configuration with a
        // root element the SDK rejects.)
        let mut configuration = s3::NotificationConfiguration::builder();
        for (i, target) in notifications.queue_configurations.iter().enumerate() {
            let mut queue = s3::QueueConfiguration::builder()
                .id(format!("{}-{i}", plan.logical_id))
                .queue_arn(&target.queue)
                .events(s3::Event::from(target.event.as_str()));
            if let Some(filter) = &target.filter {
                let mut key = s3::S3KeyFilter::builder();
                for rule in &filter.s3_key.rules {
                    key = key.filter_rules(
                        s3::FilterRule::builder()
                            .name(s3::FilterRuleName::from(
                                rule.name.to_ascii_lowercase().as_str(),
                            ))
                            .value(&rule.value)
                            .build(),
                    );
                }
                queue = queue.filter(
                    s3::NotificationConfigurationFilter::builder()
                        .key(key.build())
                        .build(),
                );
            }
            configuration = configuration.queue_configurations(queue.build()?);
        }
        clients
            .s3
            .put_bucket_notification_configuration()
            .bucket(bucket)
            .notification_configuration(configuration.build())
            .send()
            .await
            .with_context(|| format!("put notification on {bucket}"))?;
    }
    Ok(())
}

fn key_schema(
    elements: &[stack_from_template::KeyElement],
) -> anyhow::Result<Vec<ddb::KeySchemaElement>> {
    elements
        .iter()
        .map(|e| {
            Ok(ddb::KeySchemaElement::builder()
                .attribute_name(&e.attribute_name)
                .key_type(ddb::KeyType::from(e.key_type.as_str()))
                .build()?)
        })
        .collect()
}

fn attribute_definitions(plan: &TablePlan) -> anyhow::Result<Vec<ddb::AttributeDefinition>> {
    plan.properties
        .attribute_definitions
        .iter()
        .map(|a| {
            Ok(ddb::AttributeDefinition::builder()
                .attribute_name(&a.attribute_name)
                .attribute_type(ddb::ScalarAttributeType::from(a.attribute_type.as_str()))
                .build()?)
        })
        .collect()
}

fn projection(p: &stack_from_template::Projection) -> ddb::Projection {
    ddb::Projection::builder()
        .projection_type(ddb::ProjectionType::from(p.projection_type.as_str()))
        .set_non_key_attributes(
            (!p.non_key_attributes.is_empty()).then(|| p.non_key_attributes.clone()),
        )
        .build()
}

/// Creates the table as the template says (a table made before an index gets it added), then
/// turns on TTL and point-in-time recovery where the template does.
async fn ensure_table(clients: &AwsClients, plan: &TablePlan) -> anyhow::Result<()> {
    let table = plan.name.as_str();
    let p = &plan.properties;
    let mut create = clients
        .dynamodb
        .create_table()
        .table_name(table)
        .billing_mode(ddb::BillingMode::from(p.billing_mode.as_str()))
        .set_key_schema(Some(key_schema(&p.key_schema)?))
        .set_attribute_definitions(Some(attribute_definitions(plan)?))
        .set_deletion_protection_enabled(p.deletion_protection_enabled);
    if let Some(sse) = &p.sse_specification {
        create = create.sse_specification(
            ddb::SseSpecification::builder()
                .enabled(sse.sse_enabled)
                .build(),
        );
    }
    for index in &p.global_secondary_indexes {
        create = create.global_secondary_indexes(
            ddb::GlobalSecondaryIndex::builder()
                .index_name(&index.index_name)
                .set_key_schema(Some(key_schema(&index.key_schema)?))
                .projection(projection(&index.projection))
                .build()?,
        );
    }
    match create.send().await {
        Ok(_) => {}
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) => {}
        Err(error) => return Err(error).with_context(|| format!("create table {table}")),
    }
    wait_table_active(clients, table).await?;
    ensure_indexes(clients, plan).await?;
    if let Some(ttl) = &p.time_to_live_specification {
        let current = clients
            .dynamodb
            .describe_time_to_live()
            .table_name(table)
            .send()
            .await
            .with_context(|| format!("describe TTL of {table}"))?;
        let description = current.time_to_live_description();
        let enabled = description.and_then(|d| d.time_to_live_status())
            == Some(&ddb::TimeToLiveStatus::Enabled);
        let same_attribute =
            description.and_then(|d| d.attribute_name()) == Some(ttl.attribute_name.as_str());
        if enabled != ttl.enabled || (ttl.enabled && !same_attribute) {
            clients
                .dynamodb
                .update_time_to_live()
                .table_name(table)
                .time_to_live_specification(
                    ddb::TimeToLiveSpecification::builder()
                        .enabled(ttl.enabled)
                        .attribute_name(&ttl.attribute_name)
                        .build()?,
                )
                .send()
                .await
                .with_context(|| format!("set TTL on {table}"))?;
        }
    }
    if let Some(pitr) = &p.point_in_time_recovery_specification {
        clients
            .dynamodb
            .update_continuous_backups()
            .table_name(table)
            .point_in_time_recovery_specification(
                ddb::PointInTimeRecoverySpecification::builder()
                    .point_in_time_recovery_enabled(pitr.point_in_time_recovery_enabled)
                    .build()?,
            )
            .send()
            .await
            .with_context(|| format!("set point-in-time recovery on {table}"))?;
    }
    Ok(())
}

/// Adds the indexes a table made before them lacks, one per UpdateTable as DynamoDB requires.
/// Items written before an index carry none of its keys.
async fn ensure_indexes(clients: &AwsClients, plan: &TablePlan) -> anyhow::Result<()> {
    let table = plan.name.as_str();
    for index in &plan.properties.global_secondary_indexes {
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
            .any(|i| i.index_name() == Some(index.index_name.as_str()));
        if present {
            continue;
        }
        clients
            .dynamodb
            .update_table()
            .table_name(table)
            .set_attribute_definitions(Some(attribute_definitions(plan)?))
            .global_secondary_index_updates(
                ddb::GlobalSecondaryIndexUpdate::builder()
                    .create(
                        ddb::CreateGlobalSecondaryIndexAction::builder()
                            .index_name(&index.index_name)
                            .set_key_schema(Some(key_schema(&index.key_schema)?))
                            .projection(projection(&index.projection))
                            .build()?,
                    )
                    .build(),
            )
            .send()
            .await
            .with_context(|| format!("add index {} to {table}", index.index_name))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Compose and the demo provision with the default settings, which must be the template's
    /// values: nothing overridden.
    #[test]
    fn the_default_queue_settings_are_the_templates() {
        let names = LocalNames::new(Resources::default(), "us-east-1", "framefleet");
        let template = Template::parse(TEMPLATE, names).unwrap();
        let mut plan = StackPlan::from_template(&template).unwrap();
        assert_eq!(
            apply_overrides(&mut plan, &QueueSettings::default()),
            Vec::<String>::new()
        );
        let shorter = QueueSettings {
            frames_visibility_timeout_secs: 30,
            ..QueueSettings::default()
        };
        assert_eq!(
            apply_overrides(&mut plan, &shorter),
            ["FramesQueue.VisibilityTimeout: 30 (template: 300)"]
        );
    }
}
