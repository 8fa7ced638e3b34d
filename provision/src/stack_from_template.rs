//! The buckets, queues, queue policies, job table and job-events rule of `deploy/framefleet.yaml`,
//! read from the template itself, so the local stack is the deployed one with local names and
//! cannot drift from it.
//!
//! [`StackPlan::from_template`] resolves each resource's `Properties` for the local stack
//! ([`crate::iam_from_template::Template`] evaluates `!Ref`, `!Sub`, `!GetAtt`, `!If` and the
//! conditions) and reads them into strict types: a property or a nested field this module does
//! not know is an error, not something silently left out. What the emulator cannot apply is
//! listed by name in [`NOT_APPLICABLE`], with the reason, and is taken out before the strict read.
//! [`audit`] checks that every property of every resource of the template is one or the other;
//! the provisioning tests run it on the deployed template, so a template change the local stack
//! does not follow fails a test.
//!
//! Names stay local: every bucket, queue and table keeps its `<prefix>-<role>` name
//! ([`LocalNames`]), whatever `BucketName`, `QueueName` or `TableName` say.

use std::collections::{BTreeMap, BTreeSet};

use framefleet_core::event_pattern::EventPattern;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value as Json;

use crate::iam_from_template::{LocalNames, Template, TemplateError};

/// A property of the template the local stack does not apply, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotApplicable {
    /// CloudFormation resource type, e.g. `AWS::DynamoDB::Table`.
    pub resource_type: &'static str,
    /// Property path under `Properties`, dots for nesting (`Targets.RetryPolicy` names that key
    /// in every element of `Targets`).
    pub property: &'static str,
    /// Why the emulator cannot (or need not) apply it.
    pub why: &'static str,
}

const fn na(
    resource_type: &'static str,
    property: &'static str,
    why: &'static str,
) -> NotApplicable {
    NotApplicable {
        resource_type,
        property,
        why,
    }
}

const ECS: &str = "ECS and Fargate do not run locally: the services run as processes or tasks of the test harness";
const AUTOSCALING: &str = "Application Auto Scaling does not run locally; scripts/simulate-fleet models the policies instead";
const ALARMS: &str =
    "CloudWatch alarms do not run locally; their metrics come from SQS and ECS on AWS";
const NETWORK: &str = "there is no VPC locally: everything talks over loopback";

/// Every template property the local stack does not apply. [`audit`] fails when the template
/// has a property that is neither applied nor listed here, or when an entry here no longer
/// names anything in the template.
pub const NOT_APPLICABLE: &[NotApplicable] = &[
    na("AWS::SQS::Queue", "QueueName", "local queues are named `<prefix>-<role>` so tests can run side by side"),
    na("AWS::S3::Bucket", "BucketName", "local buckets are named `<prefix>-<role>` so tests can run side by side"),
    na("AWS::DynamoDB::Table", "TableName", "the local table is named `<prefix>-jobs` so tests can run side by side"),
    na("AWS::S3::BucketPolicy", "Bucket", "the bucket policies are not put on local buckets (see PolicyDocument)"),
    na("AWS::S3::BucketPolicy", "PolicyDocument", "moto does not evaluate bucket policies, and their one statement denies requests without TLS (aws:SecureTransport), which every local endpoint is"),
    na("AWS::Events::Rule", "Description", "a label for people; nothing reads it"),
    na("AWS::Events::Rule", "Targets.Id", "a label within the rule; nothing reads it"),
    na("AWS::Events::Rule", "Targets.RetryPolicy", "EventBridge's delivery retries: the stand-in retries its own sends a few times instead"),
    na("AWS::Events::Rule", "Targets.DeadLetterConfig", "EventBridge's dead-letter queue for events it could not deliver: the stand-in reports a failed send as an error instead"),
    na("AWS::IAM::Role", "AssumeRolePolicyDocument", "nothing assumes a role locally: each service signs as an IAM user that has its role's policies"),
    na("AWS::IAM::Role", "Description", "a label for people; nothing reads it"),
    na("AWS::IAM::Role", "ManagedPolicyArns", "only on the task execution role, which ECS uses to pull images and write logs; neither happens locally"),
    na("AWS::ECS::Cluster", "ClusterName", ECS),
    na("AWS::ECS::Cluster", "ClusterSettings", ECS),
    na("AWS::ECS::Service", "Cluster", ECS),
    na("AWS::ECS::Service", "DeploymentConfiguration", ECS),
    na("AWS::ECS::Service", "DesiredCount", ECS),
    na("AWS::ECS::Service", "EnableECSManagedTags", ECS),
    na("AWS::ECS::Service", "LaunchType", ECS),
    na("AWS::ECS::Service", "NetworkConfiguration", ECS),
    na("AWS::ECS::Service", "PropagateTags", ECS),
    na("AWS::ECS::Service", "ServiceName", ECS),
    na("AWS::ECS::Service", "TaskDefinition", ECS),
    na("AWS::ECS::TaskDefinition", "ContainerDefinitions", "containers are compose's part (docker-compose.yml); the test harness runs the services in process"),
    na("AWS::ECS::TaskDefinition", "Cpu", ECS),
    na("AWS::ECS::TaskDefinition", "ExecutionRoleArn", ECS),
    na("AWS::ECS::TaskDefinition", "Family", ECS),
    na("AWS::ECS::TaskDefinition", "Memory", ECS),
    na("AWS::ECS::TaskDefinition", "NetworkMode", ECS),
    na("AWS::ECS::TaskDefinition", "RequiresCompatibilities", ECS),
    na("AWS::ECS::TaskDefinition", "RuntimePlatform", ECS),
    na("AWS::ECS::TaskDefinition", "TaskRoleArn", "the task roles' policies are applied to each service's IAM user instead (identities)"),
    na("AWS::ECS::TaskDefinition", "Volumes", ECS),
    na("AWS::Logs::LogGroup", "LogGroupName", "services log to stderr locally"),
    na("AWS::Logs::LogGroup", "RetentionInDays", "services log to stderr locally"),
    na("AWS::EC2::SecurityGroup", "GroupDescription", NETWORK),
    na("AWS::EC2::SecurityGroup", "SecurityGroupEgress", NETWORK),
    na("AWS::EC2::SecurityGroup", "VpcId", NETWORK),
    na("AWS::ApplicationAutoScaling::ScalableTarget", "MaxCapacity", AUTOSCALING),
    na("AWS::ApplicationAutoScaling::ScalableTarget", "MinCapacity", AUTOSCALING),
    na("AWS::ApplicationAutoScaling::ScalableTarget", "ResourceId", AUTOSCALING),
    na("AWS::ApplicationAutoScaling::ScalableTarget", "ScalableDimension", AUTOSCALING),
    na("AWS::ApplicationAutoScaling::ScalableTarget", "ServiceNamespace", AUTOSCALING),
    na("AWS::ApplicationAutoScaling::ScalingPolicy", "PolicyName", AUTOSCALING),
    na("AWS::ApplicationAutoScaling::ScalingPolicy", "PolicyType", AUTOSCALING),
    na("AWS::ApplicationAutoScaling::ScalingPolicy", "ScalingTargetId", AUTOSCALING),
    na("AWS::ApplicationAutoScaling::ScalingPolicy", "StepScalingPolicyConfiguration", AUTOSCALING),
    na("AWS::ApplicationAutoScaling::ScalingPolicy", "TargetTrackingScalingPolicyConfiguration", AUTOSCALING),
    na("AWS::CloudWatch::Alarm", "AlarmActions", ALARMS),
    na("AWS::CloudWatch::Alarm", "AlarmDescription", ALARMS),
    na("AWS::CloudWatch::Alarm", "ComparisonOperator", ALARMS),
    na("AWS::CloudWatch::Alarm", "DatapointsToAlarm", ALARMS),
    na("AWS::CloudWatch::Alarm", "Dimensions", ALARMS),
    na("AWS::CloudWatch::Alarm", "EvaluationPeriods", ALARMS),
    na("AWS::CloudWatch::Alarm", "MetricName", ALARMS),
    na("AWS::CloudWatch::Alarm", "Metrics", ALARMS),
    na("AWS::CloudWatch::Alarm", "Namespace", ALARMS),
    na("AWS::CloudWatch::Alarm", "Period", ALARMS),
    na("AWS::CloudWatch::Alarm", "Statistic", ALARMS),
    na("AWS::CloudWatch::Alarm", "Threshold", ALARMS),
    na("AWS::CloudWatch::Alarm", "TreatMissingData", ALARMS),
];

/// [`NOT_APPLICABLE`] as the Markdown table `docs/local-stack.md` shows (a test keeps the two
/// the same): one row per resource type and reason, the properties joined.
pub fn not_applicable_table() -> String {
    let mut rows: Vec<(&str, &str, Vec<&str>)> = Vec::new();
    for entry in NOT_APPLICABLE {
        match rows
            .iter_mut()
            .find(|(t, why, _)| *t == entry.resource_type && *why == entry.why)
        {
            Some(row) => row.2.push(entry.property),
            None => rows.push((entry.resource_type, entry.why, vec![entry.property])),
        }
    }
    let mut out = String::from("| Resource type | Properties | Why not locally |\n|---|---|---|\n");
    for (resource_type, why, properties) in rows {
        let properties: Vec<String> = properties.iter().map(|p| format!("`{p}`")).collect();
        out.push_str(&format!(
            "| `{resource_type}` | {} | {why} |\n",
            properties.join(", ")
        ));
    }
    out
}

/// Properties applied outside this module: the IAM policies, which
/// [`crate::iam_from_template`] resolves and [`crate::identities`] gives each service's user.
pub const APPLIED_AS_IDENTITIES: &[(&str, &str)] = &[
    ("AWS::IAM::Role", "Policies"),
    ("AWS::IAM::Policy", "PolicyName"),
    ("AWS::IAM::Policy", "PolicyDocument"),
    ("AWS::IAM::Policy", "Roles"),
];

/// Resource types this module reads into [`StackPlan`].
const PLANNED_TYPES: &[&str] = &[
    "AWS::SQS::Queue",
    "AWS::SQS::QueuePolicy",
    "AWS::S3::Bucket",
    "AWS::DynamoDB::Table",
    "AWS::Events::Rule",
];

/// Everything the provisioner creates, read from the template.
#[derive(Debug, Clone, PartialEq)]
pub struct StackPlan {
    /// Queues in creation order: a queue comes after the dead-letter queue it names.
    pub queues: Vec<QueuePlan>,
    /// Queue policies, put on their queues as the `Policy` attribute.
    pub queue_policies: Vec<QueuePolicyPlan>,
    /// Buckets with their configurations.
    pub buckets: Vec<BucketPlan>,
    /// The job table.
    pub table: TablePlan,
    /// The rule that forwards MediaConvert job events to the job-events queue.
    pub job_events_rule: EventRulePlan,
}

/// One queue: its local name and the attributes `CreateQueue` / `SetQueueAttributes` take.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuePlan {
    /// Logical id in the template.
    pub logical_id: String,
    /// Local name.
    pub name: String,
    /// The queue's properties.
    pub properties: QueueProperties,
}

/// The properties of an `AWS::SQS::Queue` the local stack applies (CloudFormation names).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct QueueProperties {
    /// Seconds a received message stays invisible.
    #[serde(default, deserialize_with = "number")]
    pub visibility_timeout: Option<u32>,
    /// Long-poll wait of a receive that asks for none.
    #[serde(default, deserialize_with = "number")]
    pub receive_message_wait_time_seconds: Option<u32>,
    /// Seconds a message is kept.
    #[serde(default, deserialize_with = "number")]
    pub message_retention_period: Option<u32>,
    /// Seconds before a new message becomes visible.
    #[serde(default, deserialize_with = "number")]
    pub delay_seconds: Option<u32>,
    /// Largest message body in bytes.
    #[serde(default, deserialize_with = "number")]
    pub maximum_message_size: Option<u32>,
    /// SSE-SQS encryption at rest.
    #[serde(default)]
    pub sqs_managed_sse_enabled: Option<bool>,
    /// Where messages go after too many receives.
    #[serde(default)]
    pub redrive_policy: Option<RedrivePolicy>,
}

/// A queue's `RedrivePolicy`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedrivePolicy {
    /// ARN of the dead-letter queue (resolved to the local one).
    pub dead_letter_target_arn: String,
    /// Receives before a message moves there.
    #[serde(deserialize_with = "required_number")]
    pub max_receive_count: u32,
}

impl QueueProperties {
    /// The queue's attributes as SQS names them, values as SQS takes them.
    pub fn attributes(&self) -> BTreeMap<&'static str, String> {
        let mut out = BTreeMap::new();
        let mut put = |name: &'static str, value: Option<String>| {
            if let Some(value) = value {
                out.insert(name, value);
            }
        };
        put(
            "VisibilityTimeout",
            self.visibility_timeout.map(|v| v.to_string()),
        );
        put(
            "ReceiveMessageWaitTimeSeconds",
            self.receive_message_wait_time_seconds
                .map(|v| v.to_string()),
        );
        put(
            "MessageRetentionPeriod",
            self.message_retention_period.map(|v| v.to_string()),
        );
        put("DelaySeconds", self.delay_seconds.map(|v| v.to_string()));
        put(
            "MaximumMessageSize",
            self.maximum_message_size.map(|v| v.to_string()),
        );
        put(
            "SqsManagedSseEnabled",
            self.sqs_managed_sse_enabled.map(|v| v.to_string()),
        );
        put(
            "RedrivePolicy",
            self.redrive_policy.as_ref().map(|r| {
                serde_json::json!({
                    "deadLetterTargetArn": r.dead_letter_target_arn,
                    "maxReceiveCount": r.max_receive_count.to_string(),
                })
                .to_string()
            }),
        );
        out
    }
}

/// A queue policy: the document and the local queues it goes on.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuePolicyPlan {
    /// Logical id in the template.
    pub logical_id: String,
    /// Local queue names.
    pub queues: Vec<String>,
    /// The resolved policy document.
    pub document: Json,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct QueuePolicyProperties {
    queues: Vec<String>,
    policy_document: Json,
}

/// One bucket and its configurations.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketPlan {
    /// Logical id in the template.
    pub logical_id: String,
    /// Local name.
    pub name: String,
    /// The bucket's properties.
    pub properties: BucketProperties,
}

/// The properties of an `AWS::S3::Bucket` the local stack applies (CloudFormation names).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct BucketProperties {
    /// `Status: Enabled | Suspended`.
    #[serde(default)]
    pub versioning_configuration: Option<Versioning>,
    /// Default encryption.
    #[serde(default)]
    pub bucket_encryption: Option<BucketEncryption>,
    /// Public access block.
    #[serde(default)]
    pub public_access_block_configuration: Option<PublicAccessBlock>,
    /// Object ownership (ACLs off with `BucketOwnerEnforced`).
    #[serde(default)]
    pub ownership_controls: Option<OwnershipControls>,
    /// Expiration rules.
    #[serde(default)]
    pub lifecycle_configuration: Option<Lifecycle>,
    /// Event notifications.
    #[serde(default)]
    pub notification_configuration: Option<Notifications>,
}

/// `VersioningConfiguration`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Versioning {
    /// `Enabled` or `Suspended`.
    pub status: String,
}

/// `BucketEncryption`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct BucketEncryption {
    /// The rules (S3 takes one).
    pub server_side_encryption_configuration: Vec<EncryptionRule>,
}

/// One default-encryption rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct EncryptionRule {
    /// The algorithm (and key).
    pub server_side_encryption_by_default: EncryptionByDefault,
    /// S3 Bucket Keys for SSE-KMS.
    #[serde(default)]
    pub bucket_key_enabled: Option<bool>,
}

/// `ServerSideEncryptionByDefault`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionByDefault {
    /// `AES256`, `aws:kms` or `aws:kms:dsse`.
    #[serde(rename = "SSEAlgorithm")]
    pub sse_algorithm: String,
    /// KMS key for `aws:kms`.
    #[serde(rename = "KMSMasterKeyID", default)]
    pub kms_master_key_id: Option<String>,
}

/// `PublicAccessBlockConfiguration`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct PublicAccessBlock {
    /// Refuse public ACLs.
    #[serde(default)]
    pub block_public_acls: bool,
    /// Refuse public bucket policies.
    #[serde(default)]
    pub block_public_policy: bool,
    /// Ignore public ACLs.
    #[serde(default)]
    pub ignore_public_acls: bool,
    /// Restrict access under a public policy.
    #[serde(default)]
    pub restrict_public_buckets: bool,
}

/// `OwnershipControls`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct OwnershipControls {
    /// One rule.
    pub rules: Vec<OwnershipRule>,
}

/// An ownership rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct OwnershipRule {
    /// `BucketOwnerEnforced`, `BucketOwnerPreferred` or `ObjectWriter`.
    pub object_ownership: String,
}

/// `LifecycleConfiguration`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Lifecycle {
    /// The rules.
    pub rules: Vec<LifecycleRule>,
}

/// One lifecycle rule (the subset with behaviour this stack uses; anything else is refused).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct LifecycleRule {
    /// Rule id.
    #[serde(default)]
    pub id: Option<String>,
    /// `Enabled` or `Disabled`.
    pub status: String,
    /// Only keys under this prefix.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Current versions expire this many days after creation.
    #[serde(default, deserialize_with = "number")]
    pub expiration_in_days: Option<i32>,
    /// Noncurrent versions expire this long after they stop being current.
    #[serde(default)]
    pub noncurrent_version_expiration: Option<NoncurrentExpiration>,
    /// Incomplete multipart uploads are aborted this long after they start.
    #[serde(default)]
    pub abort_incomplete_multipart_upload: Option<AbortIncomplete>,
}

/// `NoncurrentVersionExpiration`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct NoncurrentExpiration {
    /// Days.
    #[serde(deserialize_with = "required_number")]
    pub noncurrent_days: i32,
}

/// `AbortIncompleteMultipartUpload`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct AbortIncomplete {
    /// Days.
    #[serde(deserialize_with = "required_number")]
    pub days_after_initiation: i32,
}

/// `NotificationConfiguration`: S3 events straight to SQS queues (the only route the template
/// uses; an `EventBridgeConfiguration` or a topic or function target would be refused here and
/// fail the drift test).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Notifications {
    /// Queue targets.
    #[serde(default)]
    pub queue_configurations: Vec<QueueNotification>,
}

/// One `QueueConfigurations` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct QueueNotification {
    /// The event type, e.g. `s3:ObjectCreated:*`.
    pub event: String,
    /// The target queue's ARN (resolved to the local one).
    pub queue: String,
    /// Key name filters.
    #[serde(default)]
    pub filter: Option<NotificationFilter>,
}

/// A notification's `Filter`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationFilter {
    /// `S3Key.Rules`.
    #[serde(rename = "S3Key")]
    pub s3_key: KeyFilter,
}

/// `S3Key`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KeyFilter {
    /// `prefix` / `suffix` rules.
    pub rules: Vec<KeyFilterRule>,
}

/// One key filter rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KeyFilterRule {
    /// `prefix` or `suffix`.
    pub name: String,
    /// The value.
    pub value: String,
}

/// The job table.
#[derive(Debug, Clone, PartialEq)]
pub struct TablePlan {
    /// Logical id in the template.
    pub logical_id: String,
    /// Local name.
    pub name: String,
    /// The table's properties.
    pub properties: TableProperties,
}

/// The properties of an `AWS::DynamoDB::Table` the local stack applies (CloudFormation names).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TableProperties {
    /// `PAY_PER_REQUEST` (the only mode this stack takes; provisioned throughput is refused).
    pub billing_mode: String,
    /// Types of every key attribute.
    pub attribute_definitions: Vec<AttributeDefinition>,
    /// The table's key.
    pub key_schema: Vec<KeyElement>,
    /// Global secondary indexes.
    #[serde(default)]
    pub global_secondary_indexes: Vec<SecondaryIndex>,
    /// TTL attribute.
    #[serde(default)]
    pub time_to_live_specification: Option<TimeToLive>,
    /// Point-in-time recovery.
    #[serde(default)]
    pub point_in_time_recovery_specification: Option<PointInTimeRecovery>,
    /// Encryption at rest.
    #[serde(default, rename = "SSESpecification")]
    pub sse_specification: Option<SseSpecification>,
    /// Refuse DeleteTable.
    #[serde(default)]
    pub deletion_protection_enabled: Option<bool>,
}

/// An attribute definition.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct AttributeDefinition {
    /// Name.
    pub attribute_name: String,
    /// `S`, `N` or `B`.
    pub attribute_type: String,
}

/// A key schema element.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KeyElement {
    /// Name.
    pub attribute_name: String,
    /// `HASH` or `RANGE`.
    pub key_type: String,
}

/// A global secondary index.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SecondaryIndex {
    /// Name.
    pub index_name: String,
    /// Its key.
    pub key_schema: Vec<KeyElement>,
    /// What it carries.
    pub projection: Projection,
}

/// An index projection.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Projection {
    /// `KEYS_ONLY`, `INCLUDE` or `ALL`.
    pub projection_type: String,
    /// For `INCLUDE`.
    #[serde(default)]
    pub non_key_attributes: Vec<String>,
}

/// `TimeToLiveSpecification`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TimeToLive {
    /// The epoch-seconds attribute.
    pub attribute_name: String,
    /// On or off.
    pub enabled: bool,
}

/// `PointInTimeRecoverySpecification`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct PointInTimeRecovery {
    /// On or off.
    pub point_in_time_recovery_enabled: bool,
}

/// `SSESpecification`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SseSpecification {
    /// On (AWS managed key) or off (AWS owned key).
    #[serde(rename = "SSEEnabled")]
    pub sse_enabled: bool,
}

/// The EventBridge rule for MediaConvert job events: the stand-in applies its pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRulePlan {
    /// Logical id in the template.
    pub logical_id: String,
    /// The rule's `EventPattern`, checked with [`EventPattern::parse`].
    pub pattern: Json,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RuleProperties {
    state: String,
    event_pattern: Json,
    targets: Vec<RuleTarget>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RuleTarget {
    arn: String,
}

/// A template the local stack cannot follow.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The template itself did not resolve.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A resource's properties have a shape, property or value the local stack does not apply.
    #[error("Resources.{logical_id} ({resource_type}): {message}")]
    Unsupported {
        /// The resource.
        logical_id: String,
        /// Its type.
        resource_type: String,
        /// What is not supported, e.g. serde's "unknown field `FifoQueue`".
        message: String,
    },
}

fn unsupported(logical_id: &str, resource_type: &str, message: impl Into<String>) -> PlanError {
    PlanError::Unsupported {
        logical_id: logical_id.to_string(),
        resource_type: resource_type.to_string(),
        message: message.into(),
    }
}

impl StackPlan {
    /// Reads the buckets, queues, queue policies, table and job-events rule of `template`.
    pub fn from_template(template: &Template) -> Result<Self, PlanError> {
        let names = template.names();
        let mut queues = Vec::new();
        let mut queue_policies = Vec::new();
        let mut buckets = Vec::new();
        let mut tables = Vec::new();
        let mut rules = Vec::new();
        for (id, kind, _) in template.resources() {
            if !PLANNED_TYPES.contains(&kind.as_str()) {
                continue;
            }
            let properties = applicable_properties(template, &id, &kind)?;
            let name = || {
                names.local_name(&id).ok_or_else(|| {
                    unsupported(&id, &kind, "has no local counterpart in LocalNames")
                })
            };
            match kind.as_str() {
                "AWS::SQS::Queue" => queues.push(QueuePlan {
                    name: name()?,
                    properties: read(&id, &kind, properties)?,
                    logical_id: id,
                }),
                "AWS::SQS::QueuePolicy" => {
                    let p: QueuePolicyProperties = read(&id, &kind, properties)?;
                    queue_policies.push(QueuePolicyPlan {
                        queues: p
                            .queues
                            .iter()
                            .map(|url| queue_name(url).to_string())
                            .collect(),
                        document: p.policy_document,
                        logical_id: id,
                    });
                }
                "AWS::S3::Bucket" => buckets.push(BucketPlan {
                    name: name()?,
                    properties: read(&id, &kind, properties)?,
                    logical_id: id,
                }),
                "AWS::DynamoDB::Table" => {
                    let properties: TableProperties = read(&id, &kind, properties)?;
                    if properties.billing_mode != "PAY_PER_REQUEST" {
                        return Err(unsupported(
                            &id,
                            &kind,
                            "only BillingMode PAY_PER_REQUEST is applied locally",
                        ));
                    }
                    tables.push(TablePlan {
                        name: name()?,
                        properties,
                        logical_id: id,
                    });
                }
                "AWS::Events::Rule" => {
                    let p: RuleProperties = read(&id, &kind, properties)?;
                    if p.state != "ENABLED" {
                        return Err(unsupported(
                            &id,
                            &kind,
                            format!(
                                "State {} is not applied locally (the stand-in always sends)",
                                p.state
                            ),
                        ));
                    }
                    let job_events = job_events_arn(names);
                    if p.targets.len() != 1 || p.targets[0].arn != job_events {
                        return Err(unsupported(&id, &kind, format!("the stand-in sends job events to the job-events queue only ({job_events})")));
                    }
                    EventPattern::parse(&p.event_pattern)
                        .map_err(|e| unsupported(&id, &kind, e.to_string()))?;
                    rules.push(EventRulePlan {
                        logical_id: id,
                        pattern: p.event_pattern,
                    });
                }
                _ => {}
            }
        }
        order_by_dead_letter(&mut queues);
        let one = |what: &str, count: usize| {
            if count == 1 {
                Ok(())
            } else {
                Err(unsupported(
                    "*",
                    what,
                    format!("the local stack has exactly one, the template {count}"),
                ))
            }
        };
        one("AWS::DynamoDB::Table", tables.len())?;
        one("AWS::Events::Rule", rules.len())?;
        Ok(Self {
            queues,
            queue_policies,
            buckets,
            table: tables.remove(0),
            job_events_rule: rules.remove(0),
        })
    }

    /// The queue `logical_id`.
    pub fn queue_mut(&mut self, logical_id: &str) -> Option<&mut QueuePlan> {
        self.queues.iter_mut().find(|q| q.logical_id == logical_id)
    }
}

fn job_events_arn(names: &LocalNames) -> String {
    format!(
        "arn:aws:sqs:{}:{}:{}",
        names.region, names.account_id, names.resources.job_events_queue
    )
}

/// The name at the end of a queue URL.
fn queue_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// Dead-letter queues first, so a redrive policy names a queue that exists.
fn order_by_dead_letter(queues: &mut [QueuePlan]) {
    queues.sort_by_key(|q| q.properties.redrive_policy.is_some());
}

/// `logical_id`'s resolved properties without those [`NOT_APPLICABLE`] lists for its type.
fn applicable_properties(
    template: &Template,
    logical_id: &str,
    resource_type: &str,
) -> Result<Json, PlanError> {
    let mut properties = Json::Object(template.resolved_properties(logical_id)?);
    for entry in NOT_APPLICABLE
        .iter()
        .filter(|e| e.resource_type == resource_type)
    {
        let path: Vec<&str> = entry.property.split('.').collect();
        remove_path(&mut properties, &path);
    }
    Ok(properties)
}

fn remove_path(value: &mut Json, path: &[&str]) {
    match value {
        Json::Array(items) => items.iter_mut().for_each(|item| remove_path(item, path)),
        Json::Object(map) => match path {
            [] => {}
            [last] => {
                map.remove(*last);
            }
            [first, rest @ ..] => {
                if let Some(inner) = map.get_mut(*first) {
                    remove_path(inner, rest);
                }
            }
        },
        _ => {}
    }
}

fn has_path(value: &Json, path: &[&str]) -> bool {
    match (value, path) {
        (_, []) => true,
        (Json::Array(items), _) => items.iter().any(|item| has_path(item, path)),
        (Json::Object(map), [first, rest @ ..]) => {
            map.get(*first).is_some_and(|inner| has_path(inner, rest))
        }
        _ => false,
    }
}

fn read<T: DeserializeOwned>(logical_id: &str, kind: &str, value: Json) -> Result<T, PlanError> {
    serde_json::from_value(value).map_err(|e| unsupported(logical_id, kind, e.to_string()))
}

/// A number CloudFormation may write as a number or a string (`"5"`).
fn number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr + TryFrom<u64>,
{
    let value = Json::deserialize(deserializer)?;
    let parsed = match &value {
        Json::Number(n) => n.as_u64().and_then(|n| T::try_from(n).ok()),
        Json::String(s) => s.parse().ok(),
        _ => None,
    };
    parsed.map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!("expected a non-negative number, got {value}"))
    })
}

fn required_number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr + TryFrom<u64>,
{
    number(deserializer)?.ok_or_else(|| serde::de::Error::custom("missing number"))
}

/// A template property the local stack neither applies nor lists as not applicable, or a
/// [`NOT_APPLICABLE`] entry that names nothing in the template any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// `Resources.<logical_id>.Properties.<property>` is neither applied nor listed.
    Unaccounted {
        /// The resource.
        logical_id: String,
        /// Its type.
        resource_type: String,
        /// The property.
        property: String,
    },
    /// The plan could not be read: a property or nested field the provisioner does not know.
    Unreadable(String),
    /// A [`NOT_APPLICABLE`] entry that no resource of the template has.
    Stale {
        /// Its type.
        resource_type: String,
        /// Its property.
        property: String,
    },
}

/// Checks that the local stack follows `template` completely: the planned types read
/// strictly, every other property applied as an identity's policy or listed in
/// [`NOT_APPLICABLE`], and every entry there still in the template.
pub fn audit(template: &Template) -> Vec<Drift> {
    let mut drift = Vec::new();
    if let Err(error) = StackPlan::from_template(template) {
        drift.push(Drift::Unreadable(error.to_string()));
    }
    let mut present: BTreeSet<(&str, &str)> = BTreeSet::new();
    let resources = template.resources();
    for (id, kind, resource) in &resources {
        let properties = match resource.get("Properties") {
            Some(p) => serde_json::to_value(p).unwrap_or(Json::Null),
            None => Json::Object(Default::default()),
        };
        for entry in NOT_APPLICABLE.iter().filter(|e| e.resource_type == kind) {
            let path: Vec<&str> = entry.property.split('.').collect();
            if has_path(&properties, &path) {
                present.insert((entry.resource_type, entry.property));
            }
        }
        if PLANNED_TYPES.contains(&kind.as_str()) {
            continue;
        }
        let Json::Object(map) = &properties else {
            continue;
        };
        for property in map.keys() {
            let listed = NOT_APPLICABLE
                .iter()
                .any(|e| e.resource_type == kind && e.property == property)
                || APPLIED_AS_IDENTITIES.contains(&(kind.as_str(), property.as_str()));
            if !listed {
                drift.push(Drift::Unaccounted {
                    logical_id: id.clone(),
                    resource_type: kind.clone(),
                    property: property.clone(),
                });
            }
        }
    }
    for entry in NOT_APPLICABLE {
        if !present.contains(&(entry.resource_type, entry.property)) {
            drift.push(Drift::Stale {
                resource_type: entry.resource_type.to_string(),
                property: entry.property.to_string(),
            });
        }
    }
    drift
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iam_from_template::tests::names;
    use crate::iam_from_template::TEMPLATE;

    fn deployed() -> Template {
        Template::parse(TEMPLATE, names()).unwrap()
    }

    /// The drift test: every property of every resource in `deploy/framefleet.yaml` is applied
    /// locally or listed in NOT_APPLICABLE with a reason, and every entry there still names
    /// something in the template.
    #[test]
    fn the_local_stack_follows_every_property_of_the_template() {
        assert_eq!(audit(&deployed()), Vec::<Drift>::new());
    }

    /// `template` with `line` added after the first line that is exactly `after`.
    fn edited(after: &str, line: &str) -> String {
        let (head, tail) = TEMPLATE.split_once(&format!("{after}\n")).unwrap();
        format!("{head}{after}\n{line}\n{tail}")
    }

    /// `docs/local-stack.md` lists what the local stack does not apply: the same table as
    /// [`NOT_APPLICABLE`] (regenerate it with `not_applicable_table`).
    #[test]
    fn the_local_stack_doc_lists_what_is_not_applied() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/local-stack.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let table = not_applicable_table();
        assert!(
            doc.contains(&table),
            "{path} does not have the current table; put this in it:\n{table}"
        );
    }

    #[test]
    fn a_property_the_provisioner_does_not_know_is_drift() {
        for (after, line) in [
            // A queue property nobody handles.
            (
                "      QueueName: !Sub ${ResourcePrefix}-frames",
                "      FifoQueue: true",
            ),
            // A nested field of an applied property.
            (
                "          - Event: s3:ObjectCreated:*",
                "            EventBridgeConfiguration: {}",
            ),
            // A property of a type that is not applied at all.
            ("      ClusterName: !Ref ResourcePrefix", "      Tags: []"),
        ] {
            let text = edited(after, line);
            let template = Template::parse(&text, names()).unwrap();
            let drift = audit(&template);
            assert!(!drift.is_empty(), "{line} went unnoticed");
        }
    }

    /// A property the provisioner knows is applied, not drift: `DelaySeconds: 5` on the frames
    /// queue reaches its attributes (and `tests/tests/provision.rs` reads those back from moto).
    #[test]
    fn an_added_property_the_provisioner_knows_is_applied() {
        let text = edited(
            "      QueueName: !Sub ${ResourcePrefix}-frames",
            "      DelaySeconds: 5",
        );
        let template = Template::parse(&text, names()).unwrap();
        assert_eq!(audit(&template), Vec::<Drift>::new());
        let plan = StackPlan::from_template(&template).unwrap();
        let frames = plan.queues.iter().find(|q| q.name == "t-frames").unwrap();
        assert_eq!(frames.properties.attributes()["DelaySeconds"], "5");
    }

    #[test]
    fn the_plan_reads_what_the_template_says() {
        let plan = StackPlan::from_template(&deployed()).unwrap();
        let names: Vec<&str> = plan.queues.iter().map(|q| q.name.as_str()).collect();
        let position = |n: &str| names.iter().position(|q| *q == n).unwrap();
        assert!(position("t-frames-dlq") < position("t-frames"));
        let frames = plan.queues.iter().find(|q| q.name == "t-frames").unwrap();
        let attributes = frames.properties.attributes();
        assert_eq!(attributes["VisibilityTimeout"], "300");
        assert_eq!(attributes["SqsManagedSseEnabled"], "true");
        let redrive: Json = serde_json::from_str(&attributes["RedrivePolicy"]).unwrap();
        assert_eq!(
            redrive,
            serde_json::json!({
                "deadLetterTargetArn": "arn:aws:sqs:us-east-1:123456789012:t-frames-dlq",
                "maxReceiveCount": "5",
            })
        );
        let ingress = plan.buckets.iter().find(|b| b.name == "t-ingress").unwrap();
        assert_eq!(
            ingress
                .properties
                .versioning_configuration
                .as_ref()
                .unwrap()
                .status,
            "Enabled"
        );
        let notification = &ingress
            .properties
            .notification_configuration
            .as_ref()
            .unwrap();
        assert_eq!(
            notification.queue_configurations[0].queue,
            "arn:aws:sqs:us-east-1:123456789012:t-ingress"
        );
        let frames_bucket = plan.buckets.iter().find(|b| b.name == "t-frames").unwrap();
        let rules = &frames_bucket
            .properties
            .lifecycle_configuration
            .as_ref()
            .unwrap()
            .rules;
        assert_eq!(
            rules[0].expiration_in_days,
            Some(7),
            "FramesRetentionDays' default"
        );
        assert_eq!(plan.table.name, "t-jobs");
        assert_eq!(plan.table.properties.global_secondary_indexes.len(), 2);
        assert!(EventPattern::parse(&plan.job_events_rule.pattern).is_ok());
        let policy = plan
            .queue_policies
            .iter()
            .find(|p| p.logical_id == "JobEventsQueuePolicy")
            .unwrap();
        assert_eq!(policy.queues, ["t-job-events", "t-job-events-dlq"]);
    }
}
