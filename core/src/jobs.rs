//! The job table in DynamoDB: one item per video (`sk = "job"`) and one marker per counted batch
//! (`sk = "batch#NNNNNN"`), both under `pk = <video id>`.
//!
//! Status only moves forward, through conditional writes. Counting is exactly once under
//! at-least-once delivery: a batch result is one transaction that puts the batch marker
//! (`attribute_not_exists`) and adds to the counters, so a redelivered batch is refused as
//! "already counted". The job is finalized when `done_frames = total_frames`, a comparison
//! DynamoDB can evaluate (it has no arithmetic in conditions, hence the extra `done_frames`);
//! the one worker that wins that write writes the manifest and then marks the job COMPLETE.
//! The same transaction ADDs the batch's [`Usage`] to the job item's `usage_*` counters and
//! stores the batch's pack index (packed layout) in its marker, so usage is exactly once too
//! and the manifest's pack index is complete once the job is.
//!
//! Jobs that are not finished carry `open_shard` (one of [`OPEN_SHARDS`] values, from the video
//! id), the partition key of the sparse index [`OPEN_JOBS_INDEX`] whose sort key is
//! `updated_at`: the reconciler finds jobs that stopped moving with one Query per shard, never
//! a scan, and the attribute is removed when the job ends, so finished jobs leave the index.
//! Sharded because every counted batch rewrites `updated_at`, and one index partition takes
//! about 1,000 writes a second.
//!
//! Concurrent batches of one job meet on the job item, so DynamoDB cancels some transactions
//! with `TransactionConflict` and rejects some updates with `TransactionConflictException`.
//! Nothing was written in either case, so the same request is sent again in process with
//! jittered backoff ([`ConflictBackoff`]) instead of costing a redelivery. Only
//! `ConditionalCheckFailed` on the marker (item 0) means "already counted". The winner of
//! FINALIZING writes a token of its own, so it still knows it won when its answer was lost and
//! the SDK's resend failed the condition.

use std::collections::HashMap;
use std::fmt;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use serde::{Deserialize, Serialize};

use crate::aws::{describe, is_transaction_conflict, is_transient, ConflictBackoff};
use crate::message::OutputLayout;
use crate::usage::{write_units, Usage};
use crate::video::VideoId;

/// Sort key of the job item.
const JOB_SK: &str = "job";
/// Markers outlive any redelivery by far; DynamoDB's TTL removes them after this.
const MARKER_TTL_SECS: i64 = 30 * 24 * 3600;

/// The sparse index of unfinished jobs: partition key `open_shard`, sort key `updated_at`,
/// keys only.
pub const OPEN_JOBS_INDEX: &str = "open-jobs";
/// How many `open_shard` values unfinished jobs spread over.
pub const OPEN_SHARDS: u32 = 8;

/// The `open_shard` of a job: stable for its life, spread by a hash of its id.
pub fn open_shard(video_id: &VideoId) -> String {
    let hash = video_id
        .as_str()
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    shard_key(hash % OPEN_SHARDS)
}

/// The `open_shard` value of shard `shard` (`0..OPEN_SHARDS`).
fn shard_key(shard: u32) -> String {
    format!("open#{shard}")
}

/// How a job's frames were cut into batches, stored when fan-out starts, so that a repeated
/// COMPLETE event or the reconciler rebuilds exactly the same `batch#N` (same frames, same
/// parameters) whatever the dispatcher's settings are by then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchPlan {
    /// Frames per batch.
    pub batch_size: usize,
    /// Kernel parameters of every batch.
    pub params: framefleet_edge::EdgeParams,
    /// `s3://…` of the last captured frame, when MediaConvert named it; without it the frames
    /// are listed (the frames bucket does not change under a job).
    pub last_frame: Option<String>,
    /// How the edge maps are stored; absent in plans stored before the field (per-frame).
    #[serde(default)]
    pub layout: OutputLayout,
}

/// Where a job is. The order is the only order transitions may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Registered from an upload; no MediaConvert job yet.
    Registered,
    /// MediaConvert is capturing frames.
    Capturing,
    /// Frames are fanned out; workers are counting.
    Processing,
    /// Every frame is counted; the one worker that won the completion is writing the manifest.
    Finalizing,
    /// Every frame is counted (processed or failed) and the manifest is written.
    Complete,
    /// The job cannot finish; `last_error` says why.
    Failed,
    /// A user canceled the job (`framefleet cancel`); workers skip its remaining batches.
    Canceled,
}

impl JobStatus {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "REGISTERED",
            Self::Capturing => "CAPTURING",
            Self::Processing => "PROCESSING",
            Self::Finalizing => "FINALIZING",
            Self::Complete => "COMPLETE",
            Self::Failed => "FAILED",
            Self::Canceled => "CANCELED",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "REGISTERED" => Self::Registered,
            "CAPTURING" => Self::Capturing,
            "PROCESSING" => Self::Processing,
            "FINALIZING" => Self::Finalizing,
            "COMPLETE" => Self::Complete,
            "FAILED" => Self::Failed,
            "CANCELED" => Self::Canceled,
            _ => return None,
        })
    }

    /// True for COMPLETE, FAILED and CANCELED: nothing moves the job any more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Complete | Self::Failed | Self::Canceled)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The video id (partition key).
    pub video_id: VideoId,
    /// Current status.
    pub status: JobStatus,
    /// Bucket of the uploaded video.
    pub source_bucket: String,
    /// Key of the uploaded video (decoded).
    pub source_key: String,
    /// eTag of the uploaded video.
    pub source_etag: String,
    /// S3 version id of the upload on a versioned ingress bucket (the notification's
    /// `versionId`): the video id is derived from it, and the reconciler re-registers exactly
    /// this version. `None` on an unversioned bucket, where the eTag names the content.
    pub source_version_id: Option<String>,
    /// Size of the upload in bytes.
    pub source_size: u64,
    /// MediaConvert job id, once created.
    pub mediaconvert_job_id: Option<String>,
    /// Capture rate as `numerator/denominator`.
    pub capture_rate: Option<String>,
    /// Frames MediaConvert captured.
    pub total_frames: Option<u64>,
    /// Frames turned into edge maps.
    pub processed_frames: u64,
    /// Frames that could not be processed (reasons in the batch markers and the manifest).
    pub failed_frames: u64,
    /// Batches fanned out.
    pub batches: Option<u64>,
    /// True once every batch message is on the frames queue.
    pub fanned_out: bool,
    /// MediaConvert's last reported progress, percent.
    pub capture_progress: Option<u64>,
    /// Frames the capture is expected to produce (the probe's duration × the capture rate),
    /// when known before capture completes; the scaler counts them as work about to land
    /// (`note_expected_frames`).
    pub expected_frames: Option<u64>,
    /// Key of the manifest, once written.
    pub manifest_key: Option<String>,
    /// The last error, for FAILED jobs.
    pub last_error: Option<String>,
    /// RFC 3339 timestamps.
    pub created_at: String,
    /// When the record last changed.
    pub updated_at: String,
    /// When frame capture started.
    pub capture_started_at: Option<String>,
    /// When fan-out started.
    pub processing_started_at: Option<String>,
    /// When the job reached COMPLETE or FAILED.
    pub finished_at: Option<String>,
    /// How the frames were batched, once fan-out started.
    pub plan: Option<BatchPlan>,
    /// Frames in every batch but the last, stored with the plan when fan-out started (absent
    /// for jobs fanned out before it was stored: then it follows from the plan, see
    /// `message::frames_per_batch`).
    pub batch_frames: Option<u64>,
    /// Fan-out checkpoint: batches `0..fanout_next` are known to be on the frames queue, so a
    /// fan-out cut short resumes there instead of sending them all again.
    pub fanout_next: Option<u64>,
    /// How many times the reconciler acted on this job (re-sent batches, restarted a capture).
    pub reconcile_attempts: u64,
    /// What the counted batches used, summed by their counting transactions.
    pub usage: Usage,
    /// W3C traceparent of the span that registered the job: every later step (capture events,
    /// batches, the reconciler) joins this trace. `None` for jobs registered without tracing.
    pub traceparent: Option<String>,
    /// N, the number of MediaConvert jobs ("segments") of a segmented capture (N ≥ 2), set by
    /// [`JobTable::start_segmented_capture`]; `None` for a job captured by one MediaConvert job.
    #[serde(default)]
    pub segments_total: Option<u32>,
    /// Segments whose capture completed and was counted ([`JobTable::complete_segment`] ADDs
    /// one per segment, exactly once); 0 on jobs that were never segmented.
    #[serde(default)]
    pub segments_complete: u64,
    /// Frames the completed segments captured, summed exactly once per segment by
    /// [`JobTable::complete_segment`]; 0 on jobs that were never segmented.
    #[serde(default)]
    pub captured_frames: u64,
    /// F, the frame count the header promised and the segment plan covers; set by
    /// [`JobTable::start_segmented_capture`].
    #[serde(default)]
    pub planned_frames: Option<u64>,
    /// Why the video was or was not segmented, or why it fell back (human text).
    #[serde(default)]
    pub capture_note: Option<String>,
    /// Why a segmented capture fell back to one MediaConvert job; set once
    /// ([`JobTable::fall_back`]).
    #[serde(default)]
    pub fallback: Option<String>,
}

impl JobRecord {
    /// A new record for an upload.
    pub fn new(video_id: VideoId, bucket: &str, key: &str, etag: &str, size: u64) -> Self {
        let now = now_rfc3339();
        Self {
            video_id,
            status: JobStatus::Registered,
            source_bucket: bucket.to_string(),
            source_key: key.to_string(),
            source_etag: etag.trim_matches('"').to_string(),
            source_version_id: None,
            source_size: size,
            mediaconvert_job_id: None,
            capture_rate: None,
            total_frames: None,
            processed_frames: 0,
            failed_frames: 0,
            batches: None,
            fanned_out: false,
            capture_progress: None,
            expected_frames: None,
            manifest_key: None,
            last_error: None,
            created_at: now.clone(),
            updated_at: now,
            capture_started_at: None,
            processing_started_at: None,
            finished_at: None,
            plan: None,
            batch_frames: None,
            fanout_next: None,
            reconcile_attempts: 0,
            usage: Usage::default(),
            traceparent: None,
            segments_total: None,
            segments_complete: 0,
            captured_frames: 0,
            planned_frames: None,
            capture_note: None,
            fallback: None,
        }
    }
}

/// One frame that could not be processed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedFrame {
    /// The frame key in the frames bucket.
    pub key: String,
    /// Why it failed.
    pub reason: String,
}

/// What a worker reports for one batch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchOutcome {
    /// Frames turned into edge maps.
    pub processed: u64,
    /// Frames that failed, with reasons.
    pub failed: Vec<FailedFrame>,
    /// What the batch used, besides the counting transaction (which [`JobTable::count_batch`]
    /// adds itself).
    pub usage: Usage,
    /// Size of the job item as last read, bytes: the counting transaction's update of it costs
    /// write units by that size.
    pub job_item_bytes: u64,
    /// The batch's pack index (packed layout), stored opaque in the batch marker and handed
    /// back by [`JobTable::markers`].
    pub pack: Option<String>,
    /// Key (in the processed bucket) of the object holding `failed` in full, written before
    /// the count when the list does not fit a marker ([`failures_fit_marker`]): the marker
    /// then keeps the count, the first [`MARKER_FAILURE_SAMPLE`] failures with their reasons
    /// cut short, and this key.
    pub failure_log: Option<String>,
}

/// What a batch marker may spend on its failed frames, bytes: far below DynamoDB's 400 KB
/// item limit, which also holds the keys, counters and the pack index (a batch message is at
/// most 256 KiB of frame keys, so the pack index stays below about 300 KB).
pub const MARKER_FAILURES_BYTES: usize = 64 * 1024;
/// How many failed frames a marker lists when the whole list does not fit.
pub const MARKER_FAILURE_SAMPLE: usize = 20;
/// How much of each listed reason such a marker keeps, bytes (cut on a character boundary).
pub const MARKER_REASON_BYTES: usize = 256;
/// The largest marker [`JobTable::count_batch`] sends. DynamoDB refuses items over 400 KB,
/// attribute names and values together ("Service, account, and table quotas in Amazon
/// DynamoDB": item size,
/// <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html>);
/// moto refuses them a little above 400,000 bytes.
pub const MAX_MARKER_BYTES: usize = 390_000;

/// True when `failed` can be stored whole in a batch marker (within
/// [`MARKER_FAILURES_BYTES`]); otherwise the full list goes to a failure log first.
pub fn failures_fit_marker(failed: &[FailedFrame]) -> bool {
    failures_bytes(failed) <= MARKER_FAILURES_BYTES
}

/// The size a list of failures takes in a marker, as [`item_bytes`] counts it.
fn failures_bytes(failed: &[FailedFrame]) -> usize {
    3 + failed
        .iter()
        .map(|f| 1 + 3 + "key".len() + 1 + f.key.len() + "reason".len() + 1 + f.reason.len())
        .sum::<usize>()
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn failures_attribute(failed: &[FailedFrame], reason_bytes: usize) -> AttributeValue {
    AttributeValue::L(
        failed
            .iter()
            .map(|f| {
                AttributeValue::M(HashMap::from([
                    ("key".to_string(), s(&f.key)),
                    ("reason".to_string(), s(cut(&f.reason, reason_bytes))),
                ]))
            })
            .collect(),
    )
}

/// A batch marker that cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarkerError {
    /// The failures do not fit the marker and no failure log holds them.
    #[error("{failed} failed frames take {bytes} bytes, more than a marker holds, and no failure log was written")]
    FailuresWithoutLog {
        /// How many frames failed.
        failed: usize,
        /// Their size in the marker.
        bytes: usize,
    },
    /// The marker would be larger than DynamoDB stores.
    #[error("the batch marker would be {bytes} bytes, over the {MAX_MARKER_BYTES}-byte limit")]
    TooLarge {
        /// Its size.
        bytes: usize,
    },
}

/// The marker item of batch `batch_index`: keys, counters, times, the failures (whole, or a
/// sample and the failure log's key) and the pack index.
fn batch_marker(
    video_id: &VideoId,
    batch_index: u32,
    outcome: &BatchOutcome,
) -> Result<Item, MarkerError> {
    let mut marker = JobTable::key(video_id, &format!("batch#{batch_index:06}"));
    marker.insert("processed_frames".into(), n(outcome.processed));
    marker.insert("failed_frames".into(), n(outcome.failed.len()));
    marker.insert("counted_at".into(), s(now_rfc3339()));
    marker.insert(
        "expires_at".into(),
        n(time::OffsetDateTime::now_utc().unix_timestamp() + MARKER_TTL_SECS),
    );
    if let Some(log) = &outcome.failure_log {
        let shown = outcome.failed.len().min(MARKER_FAILURE_SAMPLE);
        marker.insert(
            "failures_sample".into(),
            failures_attribute(&outcome.failed[..shown], MARKER_REASON_BYTES),
        );
        marker.insert("failure_log".into(), s(log));
    } else if !outcome.failed.is_empty() {
        if !failures_fit_marker(&outcome.failed) {
            return Err(MarkerError::FailuresWithoutLog {
                failed: outcome.failed.len(),
                bytes: failures_bytes(&outcome.failed),
            });
        }
        marker.insert(
            "failures".into(),
            failures_attribute(&outcome.failed, usize::MAX),
        );
    }
    if let Some(pack) = &outcome.pack {
        marker.insert("pack".into(), s(pack));
    }
    let bytes = item_bytes(&marker);
    if bytes > MAX_MARKER_BYTES {
        return Err(MarkerError::TooLarge { bytes });
    }
    Ok(marker)
}

/// What the manifest needs from the counted batches' markers, read together by
/// [`JobTable::markers`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchMarkers {
    /// Every failed frame with its reason stored in a marker, in batch order (the batches
    /// whose failures went to a failure log are in `failure_logs` instead).
    pub failed: Vec<FailedFrame>,
    /// The batches whose failures did not fit their marker, in batch order: where each one's
    /// full list is stored, and where in `failed` it belongs.
    pub failure_logs: Vec<FailureLogRef>,
    /// The pack index of every batch that wrote a pack (packed layout), in batch order, as
    /// [`JobTable::count_batch`] stored it: JSON of [`crate::pack::Pack`], read by
    /// [`crate::manifest`].
    pub packs: Vec<String>,
}

/// A batch's failure log named by its marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureLogRef {
    /// Key of the log in the processed bucket.
    pub key: String,
    /// Its place in [`BatchMarkers::failed`]: the failures of the batches before it.
    pub at: usize,
}

/// Result of registering an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// A new job was created.
    Created,
    /// The job already existed (duplicate notification).
    Existing,
}

/// Result of counting a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counting {
    /// The batch was counted now.
    Counted,
    /// The batch had been counted before (redelivery).
    AlreadyCounted,
}

/// Result of a conditional status transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// This call moved the job.
    Applied,
    /// The job was not in a state that allows it (already moved, or elsewhere).
    NotApplicable,
}

/// A job table operation failed.
#[derive(Debug, thiserror::Error)]
#[error("job table `{table}`: {operation} for `{video_id}`: {message}")]
pub struct JobTableError {
    /// The table.
    pub table: String,
    /// The operation, e.g. `register`.
    pub operation: &'static str,
    /// The job.
    pub video_id: String,
    /// Code and message.
    pub message: String,
    /// True when retrying later may succeed (throttling, 5xx, timeouts).
    pub retryable: bool,
    /// The SDK error.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl JobTableError {
    /// True when the caller should leave its message for redelivery.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

/// The job table.
#[derive(Debug, Clone)]
pub struct JobTable {
    client: Client,
    table: String,
}

type Item = HashMap<String, AttributeValue>;

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl fmt::Display) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Now as RFC 3339 (UTC).
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn status_names() -> HashMap<String, String> {
    HashMap::from([("#status".to_string(), "status".to_string())])
}

impl JobTable {
    /// The table `table` through `client`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The table name.
    pub fn name(&self) -> &str {
        &self.table
    }

    fn key(video_id: &VideoId, sk: &str) -> Item {
        HashMap::from([
            ("pk".to_string(), s(video_id.as_str())),
            ("sk".to_string(), s(sk)),
        ])
    }

    fn error<E, R>(
        &self,
        operation: &'static str,
        video_id: &VideoId,
        error: aws_smithy_runtime_api::client::result::SdkError<E, R>,
    ) -> JobTableError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
        R: crate::aws::HasStatus,
    {
        JobTableError {
            table: self.table.clone(),
            operation,
            video_id: video_id.to_string(),
            message: describe(&error),
            retryable: is_transient(&error),
            source: Some(Box::new(error)),
        }
    }

    /// Creates the job unless it exists: a duplicate notification is a no-op.
    pub async fn register(&self, record: &JobRecord) -> Result<Registration, JobTableError> {
        let mut item = Self::key(&record.video_id, JOB_SK);
        item.insert("video_id".into(), s(record.video_id.as_str()));
        item.insert("status".into(), s(record.status.as_str()));
        item.insert("source_bucket".into(), s(&record.source_bucket));
        item.insert("source_key".into(), s(&record.source_key));
        item.insert("source_etag".into(), s(&record.source_etag));
        item.insert("source_size".into(), n(record.source_size));
        if let Some(version_id) = &record.source_version_id {
            item.insert("source_version_id".into(), s(version_id));
        }
        item.insert("processed_frames".into(), n(0));
        item.insert("failed_frames".into(), n(0));
        item.insert("done_frames".into(), n(0));
        item.insert("created_at".into(), s(&record.created_at));
        item.insert("updated_at".into(), s(&record.updated_at));
        item.insert("open_shard".into(), s(open_shard(&record.video_id)));
        item.insert("created_day".into(), s(created_day(&record.created_at)));
        if let Some(traceparent) = &record.traceparent {
            item.insert("traceparent".into(), s(traceparent));
        }
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)");
        let mut backoff = ConflictBackoff::new();
        let result = loop {
            match request.clone().send().await {
                Err(error) if is_transaction_conflict(&error) && backoff.wait().await => {}
                result => break result,
            }
        };
        match result {
            Ok(_) => Ok(Registration::Created),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(Registration::Existing)
            }
            Err(error) => Err(self.error("register", &record.video_id, error)),
        }
    }

    /// Reads a job (strongly consistent).
    pub async fn get(&self, video_id: &VideoId) -> Result<Option<JobRecord>, JobTableError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(video_id, JOB_SK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("get", video_id, e))?;
        Ok(out.item().map(record_from_item))
    }

    async fn transition(
        &self,
        operation: &'static str,
        video_id: &VideoId,
        from: &[JobStatus],
        set: Vec<(&str, AttributeValue)>,
        extra_condition: Option<&str>,
    ) -> Result<Transition, JobTableError> {
        self.claimed_transition(operation, video_id, from, set, extra_condition, None)
            .await
    }

    /// A transition that also writes `claim` (an attribute and a value unique to this call),
    /// so a call can recognise its own write. The SDK resends a request whose answer was lost
    /// (connection closed after DynamoDB applied it); the resent conditional write then fails
    /// its condition, and only the item as it stands (`ReturnValuesOnConditionCheckFailure`,
    /// "UpdateItem", Amazon DynamoDB API Reference,
    /// <https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_UpdateItem.html>)
    /// tells "I applied it before" from "someone else did".
    async fn claimed_transition(
        &self,
        operation: &'static str,
        video_id: &VideoId,
        from: &[JobStatus],
        mut set: Vec<(&str, AttributeValue)>,
        extra_condition: Option<&str>,
        claim: Option<(&str, String)>,
    ) -> Result<Transition, JobTableError> {
        if let Some((field, token)) = &claim {
            set.push((field, s(token)));
        }
        let finishing = set.iter().any(|(field, value)| {
            *field == "status"
                && value
                    .as_s()
                    .is_ok_and(|v| JobStatus::parse(v).is_some_and(JobStatus::is_final))
        });
        let mut names = status_names();
        let mut values: Item = HashMap::new();
        let mut sets = vec!["updated_at = :now".to_string()];
        values.insert(":now".into(), s(now_rfc3339()));
        for (i, (field, value)) in set.into_iter().enumerate() {
            let name = format!("#f{i}");
            let placeholder = format!(":v{i}");
            sets.push(format!("{name} = {placeholder}"));
            names.insert(name, field.to_string());
            values.insert(placeholder, value);
        }
        let allowed: Vec<String> = from
            .iter()
            .enumerate()
            .map(|(i, status)| {
                let placeholder = format!(":from{i}");
                values.insert(placeholder.clone(), s(status.as_str()));
                placeholder
            })
            .collect();
        let mut condition = format!("#status IN ({})", allowed.join(", "));
        if let Some(extra) = extra_condition {
            condition = format!("{condition} AND ({extra})");
        }
        // A finished job leaves the open-jobs index.
        let remove = if finishing { " REMOVE open_shard" } else { "" };
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(video_id, JOB_SK)))
            .update_expression(format!("SET {}{remove}", sets.join(", ")))
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .set_return_values_on_condition_check_failure(
                claim
                    .as_ref()
                    .map(|_| aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld),
            );
        // A conflict means the write was rejected, so sending the same conditional SET again is
        // safe (it cannot apply twice: it only sets values, guarded by the status).
        let mut backoff = ConflictBackoff::new();
        let result = loop {
            match request.clone().send().await {
                Err(error) if is_transaction_conflict(&error) && backoff.wait().await => {
                    tracing::debug!(operation, %video_id, "transaction conflict; retrying");
                }
                result => break result,
            }
        };
        use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
        match result {
            Ok(_) => Ok(Transition::Applied),
            Err(error) => match error.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    let ours = claim.as_ref().is_some_and(|(field, token)| {
                        failed
                            .item()
                            .and_then(|item| get_s(item, field))
                            .is_some_and(|stored| stored == *token)
                    });
                    if ours {
                        tracing::info!(operation, %video_id, "the write had applied; its answer was lost");
                        Ok(Transition::Applied)
                    } else {
                        Ok(Transition::NotApplicable)
                    }
                }
                _ => Err(self.error(operation, video_id, error)),
            },
        }
    }

    /// REGISTERED → CAPTURING with the MediaConvert job id and the capture rate.
    pub async fn start_capture(
        &self,
        video_id: &VideoId,
        mediaconvert_job_id: &str,
        capture_rate: &str,
    ) -> Result<Transition, JobTableError> {
        self.transition(
            "start_capture",
            video_id,
            &[JobStatus::Registered],
            vec![
                ("status", s(JobStatus::Capturing.as_str())),
                ("mediaconvert_job_id", s(mediaconvert_job_id)),
                ("capture_rate", s(capture_rate)),
                ("capture_started_at", s(now_rfc3339())),
            ],
            None,
        )
        .await
    }

    /// Records MediaConvert's progress while capturing.
    pub async fn record_capture_progress(
        &self,
        video_id: &VideoId,
        percent: u64,
    ) -> Result<Transition, JobTableError> {
        self.transition(
            "record_capture_progress",
            video_id,
            &[JobStatus::Capturing],
            vec![("capture_progress", n(percent.min(100)))],
            None,
        )
        .await
    }

    /// CAPTURING (or REGISTERED, when events overtake the create call) → PROCESSING with the
    /// frame total and the number of batches.
    pub async fn start_processing(
        &self,
        video_id: &VideoId,
        mediaconvert_job_id: &str,
        total_frames: u64,
        batches: u64,
        plan: &BatchPlan,
    ) -> Result<Transition, JobTableError> {
        self.start_fan_out(
            video_id,
            mediaconvert_job_id,
            total_frames,
            batches,
            plan,
            None,
        )
        .await
    }

    /// [`JobTable::start_processing`] that also stores `batch_frames`, the frames in every batch
    /// but the last: with the plan, all any later fan-out or re-send needs to cut batch `j`
    /// exactly as this one does.
    pub async fn start_fan_out(
        &self,
        video_id: &VideoId,
        mediaconvert_job_id: &str,
        total_frames: u64,
        batches: u64,
        plan: &BatchPlan,
        batch_frames: Option<u64>,
    ) -> Result<Transition, JobTableError> {
        let plan = serde_json::to_string(plan).unwrap_or_default();
        let mut set = vec![
            ("status", s(JobStatus::Processing.as_str())),
            // Set again here: the COMPLETE event can overtake the CreateJob response.
            ("mediaconvert_job_id", s(mediaconvert_job_id)),
            ("total_frames", n(total_frames)),
            ("batches", n(batches)),
            ("capture_progress", n(100)),
            ("processing_started_at", s(now_rfc3339())),
            ("plan", s(plan)),
        ];
        if let Some(frames) = batch_frames {
            set.push(("batch_frames", n(frames)));
        }
        self.transition(
            "start_processing",
            video_id,
            &[JobStatus::Registered, JobStatus::Capturing],
            set,
            None,
        )
        .await
    }

    /// Records that batches `0..next` are on the frames queue (a fan-out checkpoint), while the
    /// job is PROCESSING; never moves the checkpoint back. `NotApplicable` when the job has
    /// left PROCESSING (canceled or failed meanwhile: the fan-out should stop) or a later
    /// checkpoint is stored. Moves `updated_at`, so the reconciler leaves a fan-out that is
    /// making progress alone.
    pub async fn record_fanout_progress(
        &self,
        video_id: &VideoId,
        next: u64,
    ) -> Result<Transition, JobTableError> {
        self.transition(
            "record_fanout_progress",
            video_id,
            &[JobStatus::Processing],
            vec![("fanout_next", n(next))],
            Some("attribute_not_exists(fanout_next) OR fanout_next < :v0"),
        )
        .await
    }

    /// Notes that every batch is on the queue, so a duplicate COMPLETE event sends nothing.
    pub async fn mark_fanned_out(&self, video_id: &VideoId) -> Result<Transition, JobTableError> {
        self.transition(
            "mark_fanned_out",
            video_id,
            &[
                JobStatus::Processing,
                JobStatus::Finalizing,
                JobStatus::Complete,
            ],
            vec![("fanned_out", AttributeValue::Bool(true))],
            None,
        )
        .await
    }

    /// Any non-final status → FAILED with `error`.
    pub async fn fail(&self, video_id: &VideoId, error: &str) -> Result<Transition, JobTableError> {
        self.end_unfinished("fail", video_id, JobStatus::Failed, error)
            .await
    }

    /// REGISTERED, CAPTURING or PROCESSING → `status` (FAILED or CANCELED) with `reason`.
    async fn end_unfinished(
        &self,
        operation: &'static str,
        video_id: &VideoId,
        status: JobStatus,
        reason: &str,
    ) -> Result<Transition, JobTableError> {
        self.transition(
            operation,
            video_id,
            &[
                JobStatus::Registered,
                JobStatus::Capturing,
                JobStatus::Processing,
            ],
            vec![
                ("status", s(status.as_str())),
                ("last_error", s(reason)),
                ("finished_at", s(now_rfc3339())),
            ],
            None,
        )
        .await
    }

    /// Counts one batch exactly once: the marker and the counters in one transaction.
    pub async fn count_batch(
        &self,
        video_id: &VideoId,
        batch_index: u32,
        outcome: &BatchOutcome,
    ) -> Result<Counting, JobTableError> {
        let failed = outcome.failed.len() as u64;
        let marker =
            batch_marker(video_id, batch_index, outcome).map_err(|error| JobTableError {
                table: self.table.clone(),
                operation: "count_batch",
                video_id: video_id.to_string(),
                message: error.to_string(),
                retryable: false,
                source: Some(Box::new(error)),
            })?;
        // The transaction itself: 2 write units per KB of each item it writes.
        let usage = outcome.usage.plus(Usage {
            dynamodb_write_units: write_units(item_bytes(&marker), true)
                + write_units(outcome.job_item_bytes as usize, true),
            ..Usage::default()
        });
        let mut names = HashMap::from([
            ("#processed".to_string(), "processed_frames".to_string()),
            ("#failed".to_string(), "failed_frames".to_string()),
            ("#done".to_string(), "done_frames".to_string()),
        ]);
        let mut values = HashMap::from([
            (":p".to_string(), n(outcome.processed)),
            (":f".to_string(), n(failed)),
            (":d".to_string(), n(outcome.processed + failed)),
            (":now".to_string(), s(now_rfc3339())),
        ]);
        let mut adds = vec!["#processed :p, #failed :f, #done :d".to_string()];
        for (i, (attribute, count)) in usage.attributes().into_iter().enumerate() {
            names.insert(format!("#u{i}"), attribute.to_string());
            values.insert(format!(":u{i}"), n(count));
            adds.push(format!("#u{i} :u{i}"));
        }
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(marker))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| self.build_error("count_batch", video_id, e))?;
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(video_id, JOB_SK)))
            .update_expression(format!("ADD {} SET updated_at = :now", adds.join(", ")))
            .condition_expression("attribute_exists(pk)")
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| self.build_error("count_batch", video_id, e))?;
        let request = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().update(update).build());
        // Retrying the whole transaction is safe because the marker makes it idempotent: if an
        // earlier attempt did commit (its answer lost), the retry is cancelled with
        // ConditionalCheckFailed on the marker, i.e. "already counted". The ADDs alone would not
        // be safe to resend; they never travel without the marker.
        let mut backoff = ConflictBackoff::new();
        loop {
            let error = match request.clone().send().await {
                Ok(_) => return Ok(Counting::Counted),
                Err(error) => error,
            };
            use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
            let verdict = match error.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(t)) => {
                    classify_cancellation(t.cancellation_reasons().iter().map(|r| r.code()))
                }
                _ if is_transaction_conflict(&error) => Cancellation::Retry,
                _ => Cancellation::Refused,
            };
            match verdict {
                Cancellation::AlreadyCounted => return Ok(Counting::AlreadyCounted),
                Cancellation::Retry if backoff.wait().await => {
                    tracing::debug!(%video_id, batch_index, error = %describe(&error), "counting transaction conflicted; retrying");
                }
                Cancellation::Retry => {
                    let mut error = self.error("count_batch", video_id, error);
                    // Conflicts and throttling pass; redelivery tries again later.
                    error.retryable = true;
                    return Err(error);
                }
                Cancellation::Refused => return Err(self.error("count_batch", video_id, error)),
            }
        }
    }

    fn build_error(
        &self,
        operation: &'static str,
        video_id: &VideoId,
        error: aws_sdk_dynamodb::error::BuildError,
    ) -> JobTableError {
        JobTableError {
            table: self.table.clone(),
            operation,
            video_id: video_id.to_string(),
            message: error.to_string(),
            retryable: false,
            source: Some(Box::new(error)),
        }
    }

    /// PROCESSING → FINALIZING when every frame is counted. Exactly one caller gets `Applied`
    /// and owes the job its manifest.
    ///
    /// The winner is recognised even when its answer is lost and the SDK resends the write
    /// (which then fails its condition): it claims the job with a token of its own.
    pub async fn try_finalize(&self, video_id: &VideoId) -> Result<Transition, JobTableError> {
        self.claimed_transition(
            "try_finalize",
            video_id,
            &[JobStatus::Processing],
            vec![
                ("status", s(JobStatus::Finalizing.as_str())),
                ("finished_at", s(now_rfc3339())),
            ],
            Some("done_frames = total_frames"),
            Some(("finalized_by", claim_token())),
        )
        .await
    }

    /// FINALIZING → COMPLETE once the manifest is written, so COMPLETE always means the
    /// manifest is there to read.
    pub async fn complete(
        &self,
        video_id: &VideoId,
        manifest_key: &str,
    ) -> Result<Transition, JobTableError> {
        self.transition(
            "complete",
            video_id,
            &[JobStatus::Finalizing],
            vec![
                ("status", s(JobStatus::Complete.as_str())),
                ("manifest_key", s(manifest_key)),
                ("fanned_out", AttributeValue::Bool(true)),
            ],
            None,
        )
        .await
    }

    /// What the counted batches' markers hold for the manifest, in batch order, from one
    /// strongly consistent Query of the `batch#` markers: the markers are read and billed once.
    /// A Query costs the summed size of the items it reads, rounded up to 4 KB ("DynamoDB read
    /// and write operations",
    /// <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html>),
    /// whatever its filter leaves out ("Filter expressions for the Query operation",
    /// <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Query.FilterExpression.html>),
    /// so two Queries with different filters read every marker twice.
    pub async fn markers(&self, video_id: &VideoId) -> Result<BatchMarkers, JobTableError> {
        let mut markers = BatchMarkers::default();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :batch)")
            .filter_expression("failed_frames > :zero OR attribute_exists(pack)")
            .projection_expression("failures, failure_log, pack")
            .expression_attribute_values(":pk", s(video_id.as_str()))
            .expression_attribute_values(":batch", s("batch#"))
            .expression_attribute_values(":zero", n(0))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| self.error("markers", video_id, e))?;
            if let Some(AttributeValue::L(list)) = item.get("failures") {
                for entry in list {
                    if let AttributeValue::M(map) = entry {
                        markers.failed.push(FailedFrame {
                            key: get_s(map, "key").unwrap_or_default(),
                            reason: get_s(map, "reason").unwrap_or_default(),
                        });
                    }
                }
            }
            if let Some(key) = get_s(&item, "failure_log") {
                markers.failure_logs.push(FailureLogRef {
                    key,
                    at: markers.failed.len(),
                });
            }
            markers.packs.extend(get_s(&item, "pack"));
        }
        Ok(markers)
    }
}

impl JobTable {
    /// True when batch `batch_index` of the job has been counted (its marker exists). One
    /// strongly consistent read, so a redelivered batch that was counted is not processed again.
    pub async fn is_counted(
        &self,
        video_id: &VideoId,
        batch_index: u32,
    ) -> Result<bool, JobTableError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(
                video_id,
                &format!("batch#{batch_index:06}"),
            )))
            .projection_expression("pk")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("is_counted", video_id, e))?;
        Ok(out.item().is_some())
    }

    /// Unfinished jobs whose `updated_at` is older than `cutoff` (RFC 3339), from the open-jobs
    /// index: one Query per shard, never a scan. The index is eventually consistent: re-read a
    /// job ([`JobTable::get`]) before acting on it.
    pub async fn stale_jobs(&self, cutoff: &str) -> Result<Vec<VideoId>, JobTableError> {
        self.open_index("stale_jobs", Some(cutoff)).await
    }

    /// The video ids in the open-jobs index, shard by shard (one Query each, never a scan),
    /// all of them or, with `updated_before`, those whose `updated_at` sorts before it.
    async fn open_index(
        &self,
        operation: &'static str,
        updated_before: Option<&str>,
    ) -> Result<Vec<VideoId>, JobTableError> {
        let scope = VideoId::from_raw(OPEN_JOBS_INDEX);
        let mut found = Vec::new();
        for shard in 0..OPEN_SHARDS {
            let query = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(OPEN_JOBS_INDEX)
                .expression_attribute_values(":shard", s(shard_key(shard)));
            let query = match updated_before {
                Some(cutoff) => query
                    .key_condition_expression("open_shard = :shard AND updated_at < :cutoff")
                    .expression_attribute_values(":cutoff", s(cutoff)),
                None => query.key_condition_expression("open_shard = :shard"),
            };
            let mut pages = query.into_paginator().items().send();
            while let Some(item) = pages.next().await {
                let item = item.map_err(|e| self.error(operation, &scope, e))?;
                found.extend(get_s(&item, "pk").map(VideoId::from_raw));
            }
        }
        Ok(found)
    }

    /// The indices of the job's counted batches (their markers), read consistently.
    pub async fn counted_batches(
        &self,
        video_id: &VideoId,
    ) -> Result<std::collections::BTreeSet<u32>, JobTableError> {
        let mut counted = std::collections::BTreeSet::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :batch)")
            .expression_attribute_values(":pk", s(video_id.as_str()))
            .expression_attribute_values(":batch", s("batch#"))
            .projection_expression("sk")
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| self.error("counted_batches", video_id, e))?;
            if let Some(index) = get_s(&item, "sk")
                .and_then(|sk| sk.strip_prefix("batch#").and_then(|n| n.parse().ok()))
            {
                counted.insert(index);
            }
        }
        Ok(counted)
    }

    /// Sends a conditional UpdateItem of the job item: `Applied`, or `NotApplicable` when its
    /// condition failed (the job had moved on).
    async fn conditional_update(
        &self,
        operation: &'static str,
        video_id: &VideoId,
        update: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
    ) -> Result<Transition, JobTableError> {
        match update.send().await {
            Ok(_) => Ok(Transition::Applied),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(Transition::NotApplicable)
            }
            Err(error) => Err(self.error(operation, video_id, error)),
        }
    }

    /// Records that the reconciler acted on a job still in `expected`: counts the attempt,
    /// says what it did in `last_error`, and moves `updated_at`, so the job is looked at again
    /// only after another stale period.
    ///
    /// `attempts_read` is the `reconcile_attempts` the reconciler read before acting; the
    /// count is set to one more than that, on condition that it is still that value. An
    /// `ADD 1` would not be idempotent: when the answer to an applied update is lost, the
    /// SDK's retry (or the next pass) would count the same attempt twice, and
    /// `reconcile.max_attempts` would fail a job early. A retried write now finds the count
    /// already moved and answers [`Transition::NotApplicable`].
    pub async fn note_reconcile(
        &self,
        video_id: &VideoId,
        expected: JobStatus,
        attempts_read: u64,
        note: &str,
    ) -> Result<Transition, JobTableError> {
        // A job the reconciler never acted on has no `reconcile_attempts` attribute yet.
        let unchanged = if attempts_read == 0 {
            "(attribute_not_exists(#attempts) OR #attempts = :read)"
        } else {
            "#attempts = :read"
        };
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(video_id, JOB_SK)))
            .update_expression("SET #attempts = :next, #error = :note, updated_at = :now")
            .condition_expression(format!("#status = :expected AND {unchanged}"))
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#attempts", "reconcile_attempts")
            .expression_attribute_names("#error", "last_error")
            .expression_attribute_values(":read", n(attempts_read))
            .expression_attribute_values(":next", n(attempts_read + 1))
            .expression_attribute_values(":note", s(note))
            .expression_attribute_values(":now", s(now_rfc3339()))
            .expression_attribute_values(":expected", s(expected.as_str()));
        self.conditional_update("note_reconcile", video_id, update)
            .await
    }

    /// CAPTURING → CAPTURING under a new MediaConvert job, when the recorded one
    /// (`expected_job_id`) is gone; a second reconciler racing this one finds the id changed.
    pub async fn restart_capture(
        &self,
        video_id: &VideoId,
        expected_job_id: &str,
        mediaconvert_job_id: &str,
    ) -> Result<Transition, JobTableError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(video_id, JOB_SK)))
            .update_expression("SET #job = :job, capture_started_at = :now, updated_at = :now")
            .condition_expression("#status = :capturing AND #job = :expected")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#job", "mediaconvert_job_id")
            .expression_attribute_values(":job", s(mediaconvert_job_id))
            .expression_attribute_values(":expected", s(expected_job_id))
            .expression_attribute_values(":capturing", s(JobStatus::Capturing.as_str()))
            .expression_attribute_values(":now", s(now_rfc3339()));
        self.conditional_update("restart_capture", video_id, update)
            .await
    }
}

/// A value no other call writes: 128 random bits from the standard library's randomly keyed
/// hasher, plus the time.
fn claim_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let random = || {
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    };
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    format!("{:016x}{:016x}-{nanos:x}", random(), random())
}

/// What a cancelled counting transaction means, read from its per-item cancellation reasons
/// (in request order: item 0 is the marker Put, item 1 the counter Update).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cancellation {
    /// The marker's condition failed: this batch was counted before.
    AlreadyCounted,
    /// Another transaction held an item, or the table was throttled: nothing was written and
    /// the same transaction may be sent again.
    Retry,
    /// Anything else (the job item is missing, validation): sending it again will not help.
    Refused,
}

/// Reads the reasons DynamoDB gives in a `TransactionCanceledException`, one per item, code
/// `None` for items that were not the cause ("TransactWriteItems", API reference,
/// <https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html>).
/// Only `ConditionalCheckFailed` on the marker means "already counted": a conflict on the
/// marker or the job item says nothing about whether the batch was counted.
fn classify_cancellation<'a>(codes: impl IntoIterator<Item = Option<&'a str>>) -> Cancellation {
    let codes: Vec<Option<&str>> = codes.into_iter().collect();
    let marker_exists = codes
        .first()
        .copied()
        .flatten()
        .is_some_and(|code| code == "ConditionalCheckFailed");
    if marker_exists {
        return Cancellation::AlreadyCounted;
    }
    let retryable = codes.iter().flatten().any(|code| {
        matches!(
            *code,
            "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"
        )
    });
    let refused = codes.iter().flatten().any(|code| {
        !matches!(
            *code,
            "None" | "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"
        )
    });
    if retryable && !refused {
        Cancellation::Retry
    } else {
        Cancellation::Refused
    }
}

fn get_s(item: &Item, field: &str) -> Option<String> {
    item.get(field)
        .and_then(|v| v.as_s().ok())
        .map(ToString::to_string)
}

fn get_n(item: &Item, field: &str) -> Option<u64> {
    item.get(field)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn record_from_item(item: &Item) -> JobRecord {
    JobRecord {
        video_id: VideoId::from_raw(get_s(item, "pk").unwrap_or_default()),
        status: get_s(item, "status")
            .and_then(|s| JobStatus::parse(&s))
            .unwrap_or(JobStatus::Registered),
        source_bucket: get_s(item, "source_bucket").unwrap_or_default(),
        source_key: get_s(item, "source_key").unwrap_or_default(),
        source_etag: get_s(item, "source_etag").unwrap_or_default(),
        source_version_id: get_s(item, "source_version_id"),
        source_size: get_n(item, "source_size").unwrap_or_default(),
        mediaconvert_job_id: get_s(item, "mediaconvert_job_id"),
        capture_rate: get_s(item, "capture_rate"),
        total_frames: get_n(item, "total_frames"),
        processed_frames: get_n(item, "processed_frames").unwrap_or_default(),
        failed_frames: get_n(item, "failed_frames").unwrap_or_default(),
        batches: get_n(item, "batches"),
        fanned_out: item
            .get("fanned_out")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
        capture_progress: get_n(item, "capture_progress"),
        expected_frames: get_n(item, "expected_frames"),
        manifest_key: get_s(item, "manifest_key"),
        last_error: get_s(item, "last_error"),
        created_at: get_s(item, "created_at").unwrap_or_default(),
        updated_at: get_s(item, "updated_at").unwrap_or_default(),
        capture_started_at: get_s(item, "capture_started_at"),
        processing_started_at: get_s(item, "processing_started_at"),
        finished_at: get_s(item, "finished_at"),
        plan: get_s(item, "plan").and_then(|text| serde_json::from_str(&text).ok()),
        batch_frames: get_n(item, "batch_frames"),
        fanout_next: get_n(item, "fanout_next"),
        reconcile_attempts: get_n(item, "reconcile_attempts").unwrap_or_default(),
        usage: Usage::from_attributes(|name| get_n(item, name)),
        traceparent: get_s(item, "traceparent"),
        segments_total: get_n(item, "segments_total").and_then(|n| u32::try_from(n).ok()),
        segments_complete: get_n(item, "segments_complete").unwrap_or_default(),
        captured_frames: get_n(item, "captured_frames").unwrap_or_default(),
        planned_frames: get_n(item, "planned_frames"),
        capture_note: get_s(item, "capture_note"),
        fallback: get_s(item, "fallback"),
    }
}

/// An item's size as DynamoDB bills it, closely enough for write units: attribute names plus
/// values (strings and binaries by length, numbers by digits, lists and maps with their
/// overhead), "Item sizes and formats", DynamoDB Developer Guide,
/// <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html>.
fn item_bytes(item: &Item) -> usize {
    fn value_bytes(value: &AttributeValue) -> usize {
        match value {
            AttributeValue::S(text) => text.len(),
            AttributeValue::N(number) => number.len().div_ceil(2) + 1,
            AttributeValue::B(blob) => blob.as_ref().len(),
            AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
            AttributeValue::L(list) => 3 + list.iter().map(|v| 1 + value_bytes(v)).sum::<usize>(),
            AttributeValue::M(map) => {
                3 + map
                    .iter()
                    .map(|(k, v)| 1 + k.len() + value_bytes(v))
                    .sum::<usize>()
            }
            _ => 0,
        }
    }
    item.iter().map(|(k, v)| k.len() + value_bytes(v)).sum()
}

/// The sparse index of recent jobs: partition key `created_day` (`jobs#YYYY-MM-DD`, set once at
/// registration and never changed), sort key `created_at`, keys only. Only job items carry
/// `created_day` (batch markers do not), so `framefleet list` reads jobs day by day, newest
/// first, with one Query per day and never a scan. Keys only, so counting a batch (which
/// rewrites the counters and `updated_at`) never writes to this index: each job writes one
/// index entry in its life, and a day's partition takes up to ~1,000 new jobs a second.
///
/// "Take advantage of sparse indexes",
/// <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-indexes-general-sparse-indexes.html>;
/// projections: "Using Global Secondary Indexes in DynamoDB",
/// <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/GSI.html>.
pub const RECENT_JOBS_INDEX: &str = "recent-jobs";

/// The `created_day` of a job created at `created_at` (RFC 3339): `jobs#YYYY-MM-DD`, the UTC
/// day, which is the first ten characters of the timestamps this module writes.
pub fn created_day(created_at: &str) -> String {
    format!("jobs#{}", created_at.get(..10).unwrap_or(created_at))
}

/// A job found in one of the listing indexes: enough to sort and to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobKey {
    /// The job.
    pub video_id: VideoId,
    /// When it was registered (RFC 3339), when the index carries it.
    pub created_at: Option<String>,
}

impl JobTable {
    /// User cancellation: REGISTERED, CAPTURING or PROCESSING → CANCELED, final (the job leaves
    /// the open-jobs index like COMPLETE and FAILED). A FINALIZING job has every frame counted
    /// and is left to complete. Workers read the status before each batch and skip the
    /// batches of a CANCELED job; the dispatcher's `fail` and fan-out never move it again.
    pub async fn cancel(
        &self,
        video_id: &VideoId,
        reason: &str,
    ) -> Result<Transition, JobTableError> {
        self.end_unfinished("cancel", video_id, JobStatus::Canceled, reason)
            .await
    }

    /// Up to `limit` jobs registered in the last `days` UTC days (today included), newest
    /// first, from the recent-jobs index: one Query per day, going backwards, stopping as soon
    /// as `limit` are found. The index is eventually consistent; read a job to show it.
    pub async fn recent_jobs(&self, days: u32, limit: usize) -> Result<Vec<JobKey>, JobTableError> {
        let scope = VideoId::from_raw(RECENT_JOBS_INDEX);
        let today = time::OffsetDateTime::now_utc().date();
        let mut found = Vec::new();
        for back in 0..days {
            if found.len() >= limit {
                break;
            }
            let Some(day) = today.checked_sub(time::Duration::days(i64::from(back))) else {
                break;
            };
            let partition = format!(
                "jobs#{:04}-{:02}-{:02}",
                day.year(),
                u8::from(day.month()),
                day.day()
            );
            let mut pages = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(RECENT_JOBS_INDEX)
                .key_condition_expression("created_day = :day")
                .expression_attribute_values(":day", s(partition))
                .scan_index_forward(false)
                .into_paginator()
                .items()
                .send();
            while let Some(item) = pages.next().await {
                let item = item.map_err(|e| self.error("recent_jobs", &scope, e))?;
                if let Some(pk) = get_s(&item, "pk") {
                    found.push(JobKey {
                        video_id: VideoId::from_raw(pk),
                        created_at: get_s(&item, "created_at"),
                    });
                    if found.len() >= limit {
                        break;
                    }
                }
            }
        }
        Ok(found)
    }

    /// Records how many frames a job's capture is expected to produce (REGISTERED or
    /// CAPTURING only: once fan-out starts the stored total is exact), so the scaler can start
    /// tasks for them before the capture completes.
    pub async fn note_expected_frames(
        &self,
        video_id: &VideoId,
        frames: u64,
    ) -> Result<Transition, JobTableError> {
        self.transition(
            "note_expected_frames",
            video_id,
            &[JobStatus::Registered, JobStatus::Capturing],
            vec![("expected_frames", n(frames))],
            None,
        )
        .await
    }

    /// Every unfinished job, from the open-jobs index (one Query per shard, never a scan).
    pub async fn open_jobs(&self) -> Result<Vec<JobKey>, JobTableError> {
        let found = self.open_index("open_jobs", None).await?;
        Ok(found
            .into_iter()
            .map(|video_id| JobKey {
                video_id,
                created_at: None,
            })
            .collect())
    }
}

// -------------------------------------------------------------------------------------------
// Segmented capture: one MediaConvert job per segment of a long video.
// -------------------------------------------------------------------------------------------

/// The most segments one video may have: [`JobTable::start_segmented_capture`] writes the job
/// item and every segment item in one `TransactWriteItems`, which takes at most 100 actions
/// ("TransactWriteItems", Amazon DynamoDB API Reference,
/// <https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html>).
pub const MAX_SEGMENTS: usize = 99;

/// Sort key prefix of the segment items (`segment#NNNN`).
const SEGMENT_PREFIX: &str = "segment#";

/// The sort key of segment `index`.
fn segment_sk(index: u32) -> String {
    format!("{SEGMENT_PREFIX}{index:04}")
}

/// Where one segment of a segmented capture is. Forward only: PENDING → SUBMITTED (again, with
/// the next attempt) → COMPLETE → FANNED_OUT, or PENDING / SUBMITTED → FAILED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SegmentState {
    /// Planned; no MediaConvert job yet.
    Pending,
    /// A MediaConvert job was (or is being) created for the segment's current attempt.
    Submitted,
    /// Its MediaConvert job completed and its captured frames were counted into the job.
    Complete,
    /// Every batch of the segment is on the frames queue.
    FannedOut,
    /// The segment cannot be captured; `last_error` says why.
    Failed,
}

impl SegmentState {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Submitted => "SUBMITTED",
            Self::Complete => "COMPLETE",
            Self::FannedOut => "FANNED_OUT",
            Self::Failed => "FAILED",
        }
    }

    /// The state stored as `text`, if it is one.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "PENDING" => Self::Pending,
            "SUBMITTED" => Self::Submitted,
            "COMPLETE" => Self::Complete,
            "FANNED_OUT" => Self::FannedOut,
            "FAILED" => Self::Failed,
            _ => return None,
        })
    }
}

impl fmt::Display for SegmentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One segment as stored: item `pk = <video id>`, `sk = "segment#NNNN"`, removed by TTL
/// (`expires_at`) like the batch markers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRecord {
    /// k, 0-based.
    pub index: u32,
    /// Global index of the segment's first source frame.
    pub first: u64,
    /// Frames the plan gives the segment (`first .. first + frames`).
    pub frames: u64,
    /// `InputClippings` start timecode, when clipped by timecode.
    pub start_timecode: Option<String>,
    /// `InputClippings` end timecode (inclusive), when clipped by timecode.
    pub end_timecode: Option<String>,
    /// Where it is.
    pub state: SegmentState,
    /// Submission attempt: 0 for the first MediaConvert job, one more per re-submission.
    pub attempt: u32,
    /// The MediaConvert job of the current attempt, once recorded.
    pub mediaconvert_job_id: Option<String>,
    /// Frames its MediaConvert job captured, once COMPLETE.
    pub captured: Option<u64>,
    /// Index of its first batch.
    pub batch_base: u32,
    /// Its number of batches (`batch_base .. batch_base + batches`).
    pub batches: u64,
    /// Fan-out checkpoint: the segment's batches before this (local batch number) are on the
    /// frames queue.
    pub fanout_next: Option<u64>,
    /// Why it failed.
    pub last_error: Option<String>,
    /// When it last changed (RFC 3339).
    pub updated_at: String,
}

impl SegmentRecord {
    /// A PENDING segment at attempt 0, as [`JobTable::start_segmented_capture`] takes them.
    pub fn pending(index: u32, first: u64, frames: u64, batch_base: u32, batches: u64) -> Self {
        Self {
            index,
            first,
            frames,
            start_timecode: None,
            end_timecode: None,
            state: SegmentState::Pending,
            attempt: 0,
            mediaconvert_job_id: None,
            captured: None,
            batch_base,
            batches,
            fanout_next: None,
            last_error: None,
            updated_at: now_rfc3339(),
        }
    }
}

/// Everything [`JobTable::start_segmented_capture`] writes.
#[derive(Debug, Clone, Copy)]
pub struct SegmentedCapture<'a> {
    /// Capture rate as `numerator/denominator`.
    pub capture_rate: &'a str,
    /// F, the header's frame count, which the segments' frames add up to.
    pub planned_frames: u64,
    /// How the frames are batched (stored as [`JobTable::start_fan_out`] stores it).
    pub plan: &'a BatchPlan,
    /// Frames in every batch of a segment but its last.
    pub batch_frames: u64,
    /// B, the job's total number of batches over all segments.
    pub batches: u64,
    /// Why the video was segmented (human text).
    pub note: &'a str,
    /// The segments, in index order, each PENDING at attempt 0.
    pub segments: &'a [SegmentRecord],
}

fn segment_item(video_id: &VideoId, segment: &SegmentRecord) -> Item {
    let mut item = JobTable::key(video_id, &segment_sk(segment.index));
    item.insert("segment_index".into(), n(segment.index));
    item.insert("first".into(), n(segment.first));
    item.insert("frames".into(), n(segment.frames));
    if let Some(start) = &segment.start_timecode {
        item.insert("start_timecode".into(), s(start));
    }
    if let Some(end) = &segment.end_timecode {
        item.insert("end_timecode".into(), s(end));
    }
    item.insert("state".into(), s(segment.state.as_str()));
    item.insert("attempt".into(), n(segment.attempt));
    if let Some(job_id) = &segment.mediaconvert_job_id {
        item.insert("mediaconvert_job_id".into(), s(job_id));
    }
    if let Some(captured) = segment.captured {
        item.insert("captured".into(), n(captured));
    }
    item.insert("batch_base".into(), n(segment.batch_base));
    item.insert("batches".into(), n(segment.batches));
    if let Some(next) = segment.fanout_next {
        item.insert("fanout_next".into(), n(next));
    }
    if let Some(error) = &segment.last_error {
        item.insert("last_error".into(), s(error));
    }
    item.insert("updated_at".into(), s(now_rfc3339()));
    item.insert(
        "expires_at".into(),
        n(time::OffsetDateTime::now_utc().unix_timestamp() + MARKER_TTL_SECS),
    );
    item
}

/// The segment stored as `item`, or `None` when it is not a segment item.
fn segment_from_item(item: &Item) -> Option<SegmentRecord> {
    let index = get_s(item, "sk")?
        .strip_prefix(SEGMENT_PREFIX)?
        .parse()
        .ok()?;
    Some(SegmentRecord {
        index,
        first: get_n(item, "first").unwrap_or_default(),
        frames: get_n(item, "frames").unwrap_or_default(),
        start_timecode: get_s(item, "start_timecode"),
        end_timecode: get_s(item, "end_timecode"),
        state: get_s(item, "state")
            .and_then(|text| SegmentState::parse(&text))
            .unwrap_or(SegmentState::Pending),
        attempt: get_n(item, "attempt")
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or_default(),
        mediaconvert_job_id: get_s(item, "mediaconvert_job_id"),
        captured: get_n(item, "captured"),
        batch_base: get_n(item, "batch_base")
            .and_then(|b| u32::try_from(b).ok())
            .unwrap_or_default(),
        batches: get_n(item, "batches").unwrap_or_default(),
        fanout_next: get_n(item, "fanout_next"),
        last_error: get_s(item, "last_error"),
        updated_at: get_s(item, "updated_at").unwrap_or_default(),
    })
}

/// A token for `ClientRequestToken` of one transaction attempt (at most 36 characters): the
/// SDK's own resend of a request whose answer was lost carries the same token, and DynamoDB
/// answers it as the success it was instead of evaluating the conditions again
/// ("TransactWriteItems", ClientRequestToken, Amazon DynamoDB API Reference,
/// <https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html>).
fn request_token() -> String {
    claim_token().chars().take(32).collect()
}

/// What a cancelled single-purpose transaction (not the counting one) means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// A condition failed: nothing was written, and the state it wants has passed.
    ConditionFailed,
    /// Conflict or throttling only: the same transaction may be sent again.
    Retry,
    /// Anything else.
    Refused,
}

/// Reads a `TransactionCanceledException`'s per-item reasons: any `ConditionalCheckFailed`
/// means the transaction cannot apply (transactions are all or nothing, and the conditions here
/// only ever stop holding as items move forward).
fn classify_refusal<'a>(codes: impl IntoIterator<Item = Option<&'a str>>) -> Refusal {
    let codes: Vec<&str> = codes.into_iter().flatten().collect();
    if codes.contains(&"ConditionalCheckFailed") {
        return Refusal::ConditionFailed;
    }
    let retryable = |code: &str| {
        matches!(
            code,
            "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"
        )
    };
    if codes.iter().any(|c| retryable(c)) && codes.iter().all(|c| *c == "None" || retryable(c)) {
        Refusal::Retry
    } else {
        Refusal::Refused
    }
}

/// Expression attribute names for every attribute the segment updates touch: `state`,
/// `index`, `first` and others are DynamoDB reserved words ("Reserved words in DynamoDB",
/// <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ReservedWords.html>).
fn segment_names(names: &[(&str, &str)]) -> HashMap<String, String> {
    names
        .iter()
        .map(|(placeholder, name)| (placeholder.to_string(), name.to_string()))
        .collect()
}

impl JobTable {
    fn invalid(
        &self,
        operation: &'static str,
        video_id: &VideoId,
        message: String,
    ) -> JobTableError {
        JobTableError {
            table: self.table.clone(),
            operation,
            video_id: video_id.to_string(),
            message,
            retryable: false,
            source: None,
        }
    }

    /// Sends one TransactWriteItems: `Applied` when it committed, `NotApplicable` when a
    /// condition failed (nothing was written). Conflicts and throttling are retried in process
    /// ([`ConflictBackoff`]), each attempt with a fresh `ClientRequestToken`; once the attempts
    /// are spent the error is retryable.
    async fn transact(
        &self,
        operation: &'static str,
        video_id: &VideoId,
        items: Vec<TransactWriteItem>,
    ) -> Result<Transition, JobTableError> {
        use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
        let mut backoff = ConflictBackoff::new();
        loop {
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .client_request_token(request_token())
                .send()
                .await;
            let error = match result {
                Ok(_) => return Ok(Transition::Applied),
                Err(error) => error,
            };
            let verdict = match error.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(t)) => {
                    classify_refusal(t.cancellation_reasons().iter().map(|r| r.code()))
                }
                _ if is_transaction_conflict(&error) => Refusal::Retry,
                _ => Refusal::Refused,
            };
            match verdict {
                Refusal::ConditionFailed => return Ok(Transition::NotApplicable),
                Refusal::Retry if backoff.wait().await => {
                    tracing::debug!(operation, %video_id, error = %describe(&error), "transaction conflicted; retrying");
                }
                Refusal::Retry => {
                    let mut error = self.error(operation, video_id, error);
                    error.retryable = true;
                    return Err(error);
                }
                Refusal::Refused => return Err(self.error(operation, video_id, error)),
            }
        }
    }

    /// Sends one conditional UpdateItem of `sk`, retrying transaction conflicts in process:
    /// `Applied`, or `NotApplicable` when its condition failed.
    async fn update_item(
        &self,
        operation: &'static str,
        video_id: &VideoId,
        update: Update,
    ) -> Result<Transition, JobTableError> {
        let request = self
            .client
            .update_item()
            .table_name(update.table_name())
            .set_key(Some(update.key().clone()))
            .update_expression(update.update_expression())
            .set_condition_expression(update.condition_expression().map(str::to_string))
            .set_expression_attribute_names(update.expression_attribute_names().cloned())
            .set_expression_attribute_values(update.expression_attribute_values().cloned());
        let mut backoff = ConflictBackoff::new();
        let result = loop {
            match request.clone().send().await {
                Err(error) if is_transaction_conflict(&error) && backoff.wait().await => {
                    tracing::debug!(operation, %video_id, "transaction conflict; retrying");
                }
                result => break result,
            }
        };
        match result {
            Ok(_) => Ok(Transition::Applied),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(Transition::NotApplicable)
            }
            Err(error) => Err(self.error(operation, video_id, error)),
        }
    }

    /// An Update of item `sk` of the job (SET/ADD/REMOVE in `expression`, guarded by
    /// `condition`), with `:now` bound to now.
    #[allow(clippy::too_many_arguments)] // the parts of one UpdateItem, named at each call
    fn update(
        &self,
        operation: &'static str,
        video_id: &VideoId,
        sk: &str,
        expression: &str,
        condition: &str,
        names: &[(&str, &str)],
        mut values: Item,
    ) -> Result<Update, JobTableError> {
        values.insert(":now".into(), s(now_rfc3339()));
        Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(video_id, sk)))
            .update_expression(expression)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(segment_names(names)))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| self.build_error(operation, video_id, e))
    }

    /// Starts a segmented capture: REGISTERED → CAPTURING with the capture rate, N =
    /// `segments.len()`, F, the plan, B and the note, and every segment item (PENDING,
    /// attempt 0), all in one transaction, so the segments exist exactly when the job says it
    /// is segmented.
    ///
    /// Exactly once: the job must be REGISTERED and not segmented before, so a duplicate call
    /// (a repeated event, a second dispatcher) gets `NotApplicable` and writes nothing, and so
    /// does a job already captured by one MediaConvert job ([`JobTable::start_capture`]).
    /// Fewer than 2 or more than [`MAX_SEGMENTS`] segments, segments not PENDING at attempt 0
    /// or not numbered `0..N` are refused with a non-retryable error before anything is sent.
    pub async fn start_segmented_capture(
        &self,
        video_id: &VideoId,
        capture: &SegmentedCapture<'_>,
    ) -> Result<Transition, JobTableError> {
        const OPERATION: &str = "start_segmented_capture";
        let count = capture.segments.len();
        if !(2..=MAX_SEGMENTS).contains(&count) {
            return Err(self.invalid(
                OPERATION,
                video_id,
                format!("{count} segments: a segmented capture has 2 to {MAX_SEGMENTS}"),
            ));
        }
        if let Some((at, bad)) = capture.segments.iter().enumerate().find(|(at, segment)| {
            segment.state != SegmentState::Pending
                || segment.attempt != 0
                || usize::try_from(segment.index).ok() != Some(*at)
        }) {
            return Err(self.invalid(
                OPERATION,
                video_id,
                format!(
                    "segment at position {at} is segment {} in state {} at attempt {}: expected segment {at}, PENDING at attempt 0",
                    bad.index, bad.state, bad.attempt
                ),
            ));
        }
        let plan = serde_json::to_string(capture.plan).unwrap_or_default();
        let values = HashMap::from([
            (":registered".to_string(), s(JobStatus::Registered.as_str())),
            (":capturing".to_string(), s(JobStatus::Capturing.as_str())),
            (":rate".to_string(), s(capture.capture_rate)),
            (":total".to_string(), n(count)),
            (":zero".to_string(), n(0)),
            (":planned".to_string(), n(capture.planned_frames)),
            (":plan".to_string(), s(plan)),
            (":batch_frames".to_string(), n(capture.batch_frames)),
            (":batches".to_string(), n(capture.batches)),
            (":note".to_string(), s(capture.note)),
        ]);
        let job = self.update(
            OPERATION,
            video_id,
            JOB_SK,
            "SET #status = :capturing, capture_rate = :rate, capture_started_at = :now, \
             segments_total = :total, segments_complete = :zero, captured_frames = :zero, \
             planned_frames = :planned, #plan = :plan, batch_frames = :batch_frames, \
             batches = :batches, capture_note = :note, updated_at = :now",
            "#status = :registered AND attribute_not_exists(segments_total)",
            &[("#status", "status"), ("#plan", "plan")],
            values,
        )?;
        let mut items = vec![TransactWriteItem::builder().update(job).build()];
        for segment in capture.segments {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(segment_item(video_id, segment)))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(|e| self.build_error(OPERATION, video_id, e))?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        self.transact(OPERATION, video_id, items).await
    }

    /// Records why the video was or was not segmented (`capture_note`), while the job is
    /// REGISTERED or CAPTURING; later it is `NotApplicable`. Overwrites an earlier note.
    pub async fn note_capture_plan(
        &self,
        video_id: &VideoId,
        note: &str,
    ) -> Result<Transition, JobTableError> {
        self.transition(
            "note_capture_plan",
            video_id,
            &[JobStatus::Registered, JobStatus::Capturing],
            vec![("capture_note", s(note))],
            None,
        )
        .await
    }

    /// Every segment of the job, sorted by index: one strongly consistent Query of the
    /// `segment#` items, all pages. Empty for a job that was never segmented.
    pub async fn segments(&self, video_id: &VideoId) -> Result<Vec<SegmentRecord>, JobTableError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :segment)")
            .expression_attribute_values(":pk", s(video_id.as_str()))
            .expression_attribute_values(":segment", s(SEGMENT_PREFIX))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut segments = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| self.error("segments", video_id, e))?;
            segments.extend(segment_from_item(&item));
        }
        segments.sort_by_key(|segment| segment.index);
        Ok(segments)
    }

    /// Claims submission `attempt` of segment `index`: PENDING (attempt `attempt`) →
    /// SUBMITTED, or, for a re-submission, SUBMITTED at `attempt - 1` → SUBMITTED at
    /// `attempt`, forgetting the earlier attempt's MediaConvert job id; in one transaction with
    /// a check that the job is CAPTURING and has not fallen back.
    ///
    /// Exactly one caller gets `Applied` for each attempt and then creates its MediaConvert
    /// job; a duplicate (same attempt again), a stale attempt, a COMPLETE / FAILED segment, or a
    /// job that is canceled, failed or fell back gets `NotApplicable` and changes nothing.
    pub async fn submit_segment(
        &self,
        video_id: &VideoId,
        index: u32,
        attempt: u32,
    ) -> Result<Transition, JobTableError> {
        const OPERATION: &str = "submit_segment";
        let check = aws_sdk_dynamodb::types::ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(video_id, JOB_SK)))
            .condition_expression("#status = :capturing AND attribute_not_exists(fallback)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":capturing", s(JobStatus::Capturing.as_str()))
            .build()
            .map_err(|e| self.build_error(OPERATION, video_id, e))?;
        let mut values = HashMap::from([
            (":pending".to_string(), s(SegmentState::Pending.as_str())),
            (
                ":submitted".to_string(),
                s(SegmentState::Submitted.as_str()),
            ),
            (":a".to_string(), n(attempt)),
        ]);
        let condition = match attempt.checked_sub(1) {
            Some(previous) => {
                values.insert(":previous".into(), n(previous));
                "(#state = :pending AND #attempt = :a) OR (#state = :submitted AND #attempt = :previous)"
            }
            None => "#state = :pending AND #attempt = :a",
        };
        let segment = self.update(
            OPERATION,
            video_id,
            &segment_sk(index),
            "SET #state = :submitted, #attempt = :a, updated_at = :now REMOVE mediaconvert_job_id",
            condition,
            &[("#state", "state"), ("#attempt", "attempt")],
            values,
        )?;
        self.transact(
            OPERATION,
            video_id,
            vec![
                TransactWriteItem::builder().condition_check(check).build(),
                TransactWriteItem::builder().update(segment).build(),
            ],
        )
        .await
    }

    /// Records the MediaConvert job created for `attempt` of segment `index`. Idempotent:
    /// the same id again is `Applied` (and changes nothing); another id, or an attempt that is
    /// no longer the segment's, is `NotApplicable`. A COMPLETE event that overtook the create
    /// call may have recorded the id already ([`JobTable::complete_segment`]).
    pub async fn record_segment_job(
        &self,
        video_id: &VideoId,
        index: u32,
        attempt: u32,
        job_id: &str,
    ) -> Result<Transition, JobTableError> {
        const OPERATION: &str = "record_segment_job";
        let update = self.update(
            OPERATION,
            video_id,
            &segment_sk(index),
            "SET #job = :id, updated_at = :now",
            "#attempt = :a AND (attribute_not_exists(#job) OR #job = :id)",
            &[("#job", "mediaconvert_job_id"), ("#attempt", "attempt")],
            HashMap::from([
                (":a".to_string(), n(attempt)),
                (":id".to_string(), s(job_id)),
            ]),
        )?;
        self.update_item(OPERATION, video_id, update).await
    }

    /// SUBMITTED → COMPLETE for segment `index` captured by MediaConvert job `job_id`, with
    /// `captured` frames, and in the same transaction ADD 1 to the job's `segments_complete` and
    /// `captured` to its `captured_frames`.
    ///
    /// Counts exactly once: a duplicate COMPLETE event finds the segment COMPLETE and gets
    /// `NotApplicable`, adding nothing; so does the event of another MediaConvert job than the
    /// one recorded for the segment (an earlier attempt's), and any segment of a job that is no
    /// longer CAPTURING or has fallen back.
    pub async fn complete_segment(
        &self,
        video_id: &VideoId,
        index: u32,
        job_id: &str,
        captured: u64,
    ) -> Result<Transition, JobTableError> {
        const OPERATION: &str = "complete_segment";
        let segment = self.update(
            OPERATION,
            video_id,
            &segment_sk(index),
            "SET #state = :complete, captured = :c, #job = :id, updated_at = :now",
            "#state = :submitted AND (attribute_not_exists(#job) OR #job = :id)",
            &[("#state", "state"), ("#job", "mediaconvert_job_id")],
            HashMap::from([
                (":complete".to_string(), s(SegmentState::Complete.as_str())),
                (
                    ":submitted".to_string(),
                    s(SegmentState::Submitted.as_str()),
                ),
                (":c".to_string(), n(captured)),
                (":id".to_string(), s(job_id)),
            ]),
        )?;
        let job = self.update(
            OPERATION,
            video_id,
            JOB_SK,
            "ADD segments_complete :one, captured_frames :c SET updated_at = :now",
            "#status = :capturing AND attribute_not_exists(fallback)",
            &[("#status", "status")],
            HashMap::from([
                (":one".to_string(), n(1)),
                (":c".to_string(), n(captured)),
                (":capturing".to_string(), s(JobStatus::Capturing.as_str())),
            ]),
        )?;
        self.transact(
            OPERATION,
            video_id,
            vec![
                TransactWriteItem::builder().update(segment).build(),
                TransactWriteItem::builder().update(job).build(),
            ],
        )
        .await
    }

    /// CAPTURING → PROCESSING of a segmented job once every segment is COMPLETE and they
    /// captured exactly the planned F = `total` frames: sets `total_frames = total` (so
    /// [`JobTable::try_finalize`] can finish the job once `done_frames` reaches it),
    /// `processing_started_at` and `capture_progress` 100.
    ///
    /// Refused (`NotApplicable`) while a segment is missing, when the captured frames differ
    /// from `total` or `total` is not the stored `planned_frames`, after a fallback, and on a
    /// second call (the job is no longer CAPTURING).
    pub async fn start_segmented_processing(
        &self,
        video_id: &VideoId,
        total: u64,
    ) -> Result<Transition, JobTableError> {
        const OPERATION: &str = "start_segmented_processing";
        let update = self.update(
            OPERATION,
            video_id,
            JOB_SK,
            "SET #status = :processing, total_frames = :f, processing_started_at = :now, \
             capture_progress = :hundred, updated_at = :now",
            "#status = :capturing AND segments_complete = segments_total \
             AND captured_frames = :f AND planned_frames = :f AND attribute_not_exists(fallback)",
            &[("#status", "status")],
            HashMap::from([
                (":processing".to_string(), s(JobStatus::Processing.as_str())),
                (":capturing".to_string(), s(JobStatus::Capturing.as_str())),
                (":f".to_string(), n(total)),
                (":hundred".to_string(), n(100)),
            ]),
        )?;
        self.update_item(OPERATION, video_id, update).await
    }

    /// Records that the batches `0..next` of segment `index` (numbered within the segment) are
    /// on the frames queue, while the segment is COMPLETE. Never moves the checkpoint back: an
    /// equal or lower `next` is `NotApplicable`, as is a segment not COMPLETE (fanned out or
    /// never completed).
    pub async fn record_segment_fanout_progress(
        &self,
        video_id: &VideoId,
        index: u32,
        next: u64,
    ) -> Result<Transition, JobTableError> {
        const OPERATION: &str = "record_segment_fanout_progress";
        let update = self.update(
            OPERATION,
            video_id,
            &segment_sk(index),
            "SET fanout_next = :n, updated_at = :now",
            "#state = :complete AND (attribute_not_exists(fanout_next) OR fanout_next < :n)",
            &[("#state", "state")],
            HashMap::from([
                (":complete".to_string(), s(SegmentState::Complete.as_str())),
                (":n".to_string(), n(next)),
            ]),
        )?;
        self.update_item(OPERATION, video_id, update).await
    }

    /// COMPLETE → FANNED_OUT: every batch of segment `index` is on the frames queue. A
    /// duplicate call (or a segment not COMPLETE) is `NotApplicable`.
    pub async fn mark_segment_fanned_out(
        &self,
        video_id: &VideoId,
        index: u32,
    ) -> Result<Transition, JobTableError> {
        const OPERATION: &str = "mark_segment_fanned_out";
        let update = self.update(
            OPERATION,
            video_id,
            &segment_sk(index),
            "SET #state = :fanned_out, updated_at = :now",
            "#state = :complete",
            &[("#state", "state")],
            HashMap::from([
                (":complete".to_string(), s(SegmentState::Complete.as_str())),
                (
                    ":fanned_out".to_string(),
                    s(SegmentState::FannedOut.as_str()),
                ),
            ]),
        )?;
        self.update_item(OPERATION, video_id, update).await
    }

    /// PENDING or SUBMITTED → FAILED for segment `index`, with `reason` in `last_error`. A
    /// segment already COMPLETE, FANNED_OUT or FAILED is left alone (`NotApplicable`), so a
    /// late ERROR event of an earlier attempt cannot undo a completed capture.
    pub async fn fail_segment(
        &self,
        video_id: &VideoId,
        index: u32,
        reason: &str,
    ) -> Result<Transition, JobTableError> {
        const OPERATION: &str = "fail_segment";
        let update = self.update(
            OPERATION,
            video_id,
            &segment_sk(index),
            "SET #state = :failed, last_error = :reason, updated_at = :now",
            "#state IN (:pending, :submitted)",
            &[("#state", "state")],
            HashMap::from([
                (":failed".to_string(), s(SegmentState::Failed.as_str())),
                (":pending".to_string(), s(SegmentState::Pending.as_str())),
                (
                    ":submitted".to_string(),
                    s(SegmentState::Submitted.as_str()),
                ),
                (":reason".to_string(), s(reason)),
            ]),
        )?;
        self.update_item(OPERATION, video_id, update).await
    }

    /// Gives up the segments of a CAPTURING segmented job for one unsegmented MediaConvert
    /// job: sets `fallback = reason` and a `capture_note` saying so. Once only: a second call,
    /// an unsegmented job or a job no longer CAPTURING gets `NotApplicable`. From then on
    /// [`JobTable::submit_segment`], [`JobTable::complete_segment`] and
    /// [`JobTable::start_segmented_processing`] refuse the job.
    pub async fn fall_back(
        &self,
        video_id: &VideoId,
        reason: &str,
    ) -> Result<Transition, JobTableError> {
        self.transition(
            "fall_back",
            video_id,
            &[JobStatus::Capturing],
            vec![
                ("fallback", s(reason)),
                (
                    "capture_note",
                    s(format!("segmented capture fell back to one job: {reason}")),
                ),
            ],
            Some("attribute_exists(segments_total) AND attribute_not_exists(fallback)"),
        )
        .await
    }

    /// Records the fallback's MediaConvert job `job_id` on a CAPTURING job that fell back.
    /// Idempotent: the same id again is `Applied`; another id is `NotApplicable`.
    pub async fn record_fallback_job(
        &self,
        video_id: &VideoId,
        job_id: &str,
    ) -> Result<Transition, JobTableError> {
        self.transition(
            "record_fallback_job",
            video_id,
            &[JobStatus::Capturing],
            vec![("mediaconvert_job_id", s(job_id))],
            Some(
                "attribute_exists(fallback) AND (attribute_not_exists(mediaconvert_job_id) \
                 OR mediaconvert_job_id = :v0)",
            ),
        )
        .await
    }

    /// CAPTURING → PROCESSING of a job that fell back, when its recorded fallback job
    /// `job_id` completed: sets `total_frames`, `batches`, `processing_started_at` and
    /// `capture_progress` 100. `NotApplicable` for another job id (or none recorded), a job
    /// that did not fall back, and a second call.
    pub async fn start_fallback_processing(
        &self,
        video_id: &VideoId,
        job_id: &str,
        total: u64,
        batches: u64,
    ) -> Result<Transition, JobTableError> {
        self.transition(
            "start_fallback_processing",
            video_id,
            &[JobStatus::Capturing],
            vec![
                ("mediaconvert_job_id", s(job_id)),
                ("status", s(JobStatus::Processing.as_str())),
                ("total_frames", n(total)),
                ("batches", n(batches)),
                ("processing_started_at", s(now_rfc3339())),
                ("capture_progress", n(100)),
            ],
            Some("attribute_exists(fallback) AND mediaconvert_job_id = :v0"),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips() {
        for status in [
            JobStatus::Registered,
            JobStatus::Capturing,
            JobStatus::Processing,
            JobStatus::Finalizing,
            JobStatus::Complete,
            JobStatus::Failed,
            JobStatus::Canceled,
        ] {
            assert_eq!(JobStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(JobStatus::parse("DONE"), None);
    }

    #[test]
    fn only_a_failed_marker_condition_means_already_counted() {
        use Cancellation::*;
        let cases: [(&[Option<&str>], Cancellation); 10] = [
            (
                &[Some("ConditionalCheckFailed"), Some("None")],
                AlreadyCounted,
            ),
            (
                &[Some("ConditionalCheckFailed"), Some("TransactionConflict")],
                AlreadyCounted,
            ),
            (
                &[Some("TransactionConflict"), Some("TransactionConflict")],
                Retry,
            ),
            (&[Some("None"), Some("TransactionConflict")], Retry),
            (&[Some("TransactionConflict"), Some("None")], Retry),
            (&[Some("ThrottlingError"), Some("None")], Retry),
            (
                &[Some("None"), Some("ProvisionedThroughputExceeded")],
                Retry,
            ),
            // The job item's `attribute_exists` failed: the job is gone, no retry helps.
            (&[Some("None"), Some("ConditionalCheckFailed")], Refused),
            (
                &[Some("ValidationError"), Some("TransactionConflict")],
                Refused,
            ),
            (&[], Refused),
        ];
        for (codes, expected) in cases {
            assert_eq!(
                classify_cancellation(codes.iter().copied()),
                expected,
                "{codes:?}"
            );
        }
        assert_eq!(classify_cancellation([None, None]), Refused);
    }

    fn service_error(
        code: &str,
        status: u16,
    ) -> aws_smithy_runtime_api::client::result::SdkError<
        aws_sdk_dynamodb::operation::update_item::UpdateItemError,
        aws_smithy_runtime_api::http::Response,
    > {
        use aws_sdk_dynamodb::error::ErrorMetadata;
        use aws_smithy_runtime_api::http::{Response, StatusCode};
        use aws_smithy_types::body::SdkBody;
        let err = aws_sdk_dynamodb::operation::update_item::UpdateItemError::generic(
            ErrorMetadata::builder().code(code).build(),
        );
        let raw = Response::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        aws_smithy_runtime_api::client::result::SdkError::service_error(err, raw)
    }

    #[test]
    fn transaction_conflicts_are_retried_and_transient() {
        let conflict = service_error("TransactionConflictException", 400);
        assert!(is_transaction_conflict(&conflict));
        assert!(
            is_transient(&conflict),
            "redelivery once the retries are spent"
        );
        for (code, transient) in [
            ("ConditionalCheckFailedException", false),
            ("ValidationException", false),
            ("ThrottlingException", true),
            ("ProvisionedThroughputExceededException", true),
        ] {
            let error = service_error(code, 400);
            assert!(!is_transaction_conflict(&error), "{code}");
            assert_eq!(is_transient(&error), transient, "{code}");
        }
    }

    #[test]
    fn the_index_queries_cover_every_shard_jobs_are_written_to() {
        let queried: std::collections::HashSet<String> = (0..OPEN_SHARDS).map(shard_key).collect();
        assert_eq!(queried.len(), OPEN_SHARDS as usize);
        for i in 0..200 {
            let shard = open_shard(&VideoId::from_raw(format!("video-{i}")));
            assert!(queried.contains(&shard), "{shard}");
        }
    }

    #[test]
    fn created_day_is_the_utc_date() {
        assert_eq!(created_day("2026-11-30T12:00:00.5Z"), "jobs#2026-11-30");
    }

    fn failures(count: usize, reason_bytes: usize) -> Vec<FailedFrame> {
        (0..count)
            .map(|i| FailedFrame {
                key: format!("v-1/{}.{i:07}.jpg", "long clip name ".repeat(10)),
                reason: format!("input is corrupt: {}", "é".repeat(reason_bytes / 2)),
            })
            .collect()
    }

    #[test]
    fn a_few_failures_stay_whole_in_the_marker() {
        let id = VideoId::from_raw("v-1");
        let outcome = BatchOutcome {
            processed: 8,
            failed: failures(2, 40),
            ..BatchOutcome::default()
        };
        assert!(failures_fit_marker(&outcome.failed));
        let marker = batch_marker(&id, 3, &outcome).unwrap();
        let Some(AttributeValue::L(listed)) = marker.get("failures") else {
            panic!("{marker:?}")
        };
        assert_eq!(listed.len(), 2);
        let AttributeValue::M(first) = &listed[0] else {
            panic!()
        };
        assert_eq!(get_s(first, "reason").unwrap(), outcome.failed[0].reason);
        assert!(!marker.contains_key("failure_log"));
        // The estimate of their size is the size the marker bills.
        let mut bare = marker.clone();
        let stored = bare.remove("failures").unwrap();
        assert_eq!(
            item_bytes(&marker) - item_bytes(&bare),
            "failures".len() + failures_bytes(&outcome.failed)
        );
        drop(stored);
    }

    /// A batch of 1,000 frames that all failed with long reasons: far over 400 KB as a list,
    /// a small marker with a sample once the full list is in a failure log.
    #[test]
    fn many_long_failures_leave_a_capped_marker() {
        let id = VideoId::from_raw("v-1");
        let mut outcome = BatchOutcome {
            failed: failures(1000, 600),
            ..BatchOutcome::default()
        };
        assert!(failures_bytes(&outcome.failed) > 400 * 1024);
        assert!(!failures_fit_marker(&outcome.failed));
        assert!(matches!(
            batch_marker(&id, 0, &outcome),
            Err(MarkerError::FailuresWithoutLog { failed: 1000, .. })
        ));
        outcome.failure_log = Some("v-1/failures/000000-0123456789abcdef.json".into());
        let marker = batch_marker(&id, 0, &outcome).unwrap();
        assert!(
            item_bytes(&marker) < MARKER_FAILURES_BYTES,
            "{}",
            item_bytes(&marker)
        );
        assert_eq!(get_n(&marker, "failed_frames"), Some(1000));
        assert!(!marker.contains_key("failures"));
        let Some(AttributeValue::L(sample)) = marker.get("failures_sample") else {
            panic!("{marker:?}")
        };
        assert_eq!(sample.len(), MARKER_FAILURE_SAMPLE);
        for entry in sample {
            let AttributeValue::M(entry) = entry else {
                panic!()
            };
            let reason = get_s(entry, "reason").unwrap();
            assert!(
                reason.len() <= MARKER_REASON_BYTES && reason.len() > 200,
                "{reason}"
            );
            assert!(outcome.failed[0].reason.starts_with(&reason));
        }
        assert_eq!(
            get_s(&marker, "failure_log").as_deref(),
            outcome.failure_log.as_deref()
        );
    }

    #[test]
    fn a_marker_over_the_item_limit_is_refused_before_it_is_sent() {
        let outcome = BatchOutcome {
            pack: Some("x".repeat(MAX_MARKER_BYTES)),
            ..BatchOutcome::default()
        };
        assert!(matches!(
            batch_marker(&VideoId::from_raw("v-1"), 0, &outcome),
            Err(MarkerError::TooLarge { .. })
        ));
    }

    #[test]
    fn segment_states_round_trip() {
        for state in [
            SegmentState::Pending,
            SegmentState::Submitted,
            SegmentState::Complete,
            SegmentState::FannedOut,
            SegmentState::Failed,
        ] {
            assert_eq!(SegmentState::parse(state.as_str()), Some(state));
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
        }
        assert_eq!(SegmentState::parse("DONE"), None);
    }

    #[test]
    fn a_segment_reads_back_from_its_item() {
        let id = VideoId::from_raw("v-1");
        let mut segment = SegmentRecord::pending(3, 300, 100, 75, 25);
        segment.start_timecode = Some("00:00:12:00".into());
        segment.mediaconvert_job_id = Some("mc-3".into());
        segment.captured = Some(100);
        segment.fanout_next = Some(7);
        segment.state = SegmentState::Complete;
        let item = segment_item(&id, &segment);
        assert_eq!(get_s(&item, "sk").as_deref(), Some("segment#0003"));
        assert!(get_n(&item, "expires_at").is_some());
        let mut read = segment_from_item(&item).unwrap();
        read.updated_at.clone_from(&segment.updated_at);
        assert_eq!(read, segment);
        // A batch marker is not a segment.
        assert_eq!(segment_from_item(&JobTable::key(&id, "batch#000001")), None);
    }

    #[test]
    fn a_failed_condition_in_any_item_means_not_applicable() {
        use Refusal::*;
        let cases: [(&[Option<&str>], Refusal); 6] = [
            (
                &[Some("ConditionalCheckFailed"), Some("None")],
                ConditionFailed,
            ),
            (
                &[Some("None"), Some("ConditionalCheckFailed")],
                ConditionFailed,
            ),
            (
                &[Some("TransactionConflict"), Some("ConditionalCheckFailed")],
                ConditionFailed,
            ),
            (&[Some("None"), Some("TransactionConflict")], Retry),
            (&[Some("ValidationError"), Some("None")], Refused),
            (&[], Refused),
        ];
        for (codes, expected) in cases {
            assert_eq!(
                classify_refusal(codes.iter().copied()),
                expected,
                "{codes:?}"
            );
        }
        assert!(request_token().len() <= 36);
    }

    #[test]
    fn an_item_without_segment_attributes_reads_as_a_single_job() {
        let mut item = JobTable::key(&VideoId::from_raw("v-1"), JOB_SK);
        item.insert("status".into(), s("CAPTURING"));
        let record = record_from_item(&item);
        assert_eq!(record.segments_total, None);
        assert_eq!(record.segments_complete, 0);
        assert_eq!(record.captured_frames, 0);
        assert_eq!(record.planned_frames, None);
        assert_eq!(record.capture_note, None);
        assert_eq!(record.fallback, None);
        item.insert("segments_total".into(), n(4));
        item.insert("segments_complete".into(), n(2));
        item.insert("captured_frames".into(), n(50));
        item.insert("fallback".into(), s("segment 1 short"));
        let record = record_from_item(&item);
        assert_eq!(record.segments_total, Some(4));
        assert_eq!((record.segments_complete, record.captured_frames), (2, 50));
        assert_eq!(record.fallback.as_deref(), Some("segment 1 short"));
    }

    #[test]
    fn record_reads_back_from_item() {
        let mut item = JobTable::key(&VideoId::from_raw("v-1"), JOB_SK);
        item.insert("status".into(), s("PROCESSING"));
        item.insert("total_frames".into(), n(10));
        item.insert("processed_frames".into(), n(4));
        item.insert("fanned_out".into(), AttributeValue::Bool(true));
        let record = record_from_item(&item);
        assert_eq!(record.video_id.as_str(), "v-1");
        assert_eq!(record.status, JobStatus::Processing);
        assert_eq!(record.total_frames, Some(10));
        assert_eq!(record.processed_frames, 4);
        assert!(record.fanned_out);
        // Items written before segmented capture read as one job's.
        assert_eq!((record.segments_total, record.fallback), (None, None));
        item.insert("segments_total".into(), n(4));
        item.insert(
            "fallback".into(),
            s("segment 2 captured 9 frames, planned 10"),
        );
        let record = record_from_item(&item);
        assert_eq!(record.segments_total, Some(4));
        assert_eq!(
            record.fallback.as_deref(),
            Some("segment 2 captured 9 frames, planned 10")
        );
    }
}
