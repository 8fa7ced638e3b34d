//! `manifest.json`: what went in, with which parameters, what came out, which frames failed
//! and why, how long each phase took, and what the job used and cost. Both services write it
//! through [`ManifestWriter`]: the worker that wins a job's completion, and the dispatcher's
//! reconciler for a winner that died (so the model lives here, not in either service).
//!
//! It is assembled from the job record as it stands FINALIZING (every batch counted: counts,
//! usage and `finished_at` no longer move) and from the batch markers (failed frames, pack
//! indexes), read with one Query. A batch whose failures do not fit its marker (DynamoDB's
//! 400 KB item limit) stores them whole in a failure log, `<video id>/failures/<batch>-<hash>.json`
//! in the processed bucket, written by the worker before the counting transaction and named
//! by the marker; the manifest lists every failure from those logs. A log's key carries a hash
//! of its content, so two deliveries of a batch that failed differently never overwrite each
//! other's list: the marker names the one that was counted.
//!
//! Written once in effect: only a FINALIZING job gets a manifest, and writers racing on one
//! (a slow winner and a finisher) build the same document from the same record and markers;
//! the job then moves FINALIZING → COMPLETE, so COMPLETE means the manifest is there.

use aws_sdk_s3::primitives::ByteStream;
use serde::Serialize;
use sha2::Digest;

use crate::aws::{describe, is_transient};
use crate::jobs::{
    failures_fit_marker, BatchMarkers, FailedFrame, JobRecord, JobStatus, JobTable, JobTableError,
    Transition,
};
use crate::message::OutputLayout;
use crate::pack::Pack;
use crate::pricing::{Cost, PriceTable};
use crate::usage::{read_units, write_units, Usage};
use crate::video::VideoId;
use framefleet_edge::EdgeParams;

/// The manifest document.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    /// The job.
    pub video_id: String,
    /// Final status (COMPLETE).
    pub status: String,
    /// The upload.
    pub source: Source,
    /// MediaConvert job id.
    pub mediaconvert_job_id: Option<String>,
    /// Capture rate as `numerator/denominator`.
    pub capture_rate: Option<String>,
    /// Kernel parameters every frame was processed with.
    pub parameters: EdgeParams,
    /// Frame counts.
    pub counts: Counts,
    /// Where the edge maps are.
    pub output: Output,
    /// The MP4 preview MediaConvert wrote beside them.
    pub preview: Preview,
    /// Frames that failed, with reasons.
    pub failed_frames: Vec<FailedFrame>,
    /// Phase timestamps and durations.
    pub timings: Timings,
    /// What the job used, in billing units.
    pub usage: JobUsage,
    /// What that costs under the price table, USD.
    pub cost: JobCost,
}

/// What a job used, by who used it, and the sum.
///
/// - `workers`: measured by the workers, summed exactly once per batch by the counting
///   transactions (attribution in the worker's `usage` module): frame GETs, edge map or pack
///   PUTs, the batch messages' send, receive and delete, the job table requests of each batch,
///   and the kernel's thread CPU time.
/// - `manifest`: the completion's own requests, counted as this document is written (the job
///   read, the one Query of the batch markers, the manifest PUT, the COMPLETE update).
/// - `dispatcher`: the fixed requests of a clean run, not measured: the upload notification and
///   the MediaConvert COMPLETE event (receive and delete each), the copy that pins the upload
///   (a PUT-class request), the header probe's first ranged GET, and the job table writes
///   (register, start capture, start processing, fanned out) and read. Progress events (one
///   every 10 s of capture), extra probe reads and retries add to this.
/// - `capture`: MediaConvert's writes into our buckets: one PUT per captured frame and one for
///   the preview, or one per preview part for a segmented capture. MediaConvert's own
///   per-minute charge is not priced here.
#[derive(Debug, Clone, Serialize)]
pub struct JobUsage {
    /// Everything below, summed; what `cost` prices.
    pub total: Usage,
    /// Measured per batch by the workers.
    pub workers: Usage,
    /// The completion writing this manifest.
    pub manifest: Usage,
    /// The dispatcher's fixed requests for one job.
    pub dispatcher: Usage,
    /// MediaConvert's frame and preview writes.
    pub capture: Usage,
}

/// The cost estimate, with the price table's date, and per 1,000 captured frames.
#[derive(Debug, Clone, Serialize)]
pub struct JobCost {
    /// Priced lines and their total.
    #[serde(flatten)]
    pub estimate: Cost,
    /// `total_usd` per 1,000 captured frames.
    pub per_1000_frames_usd: Option<f64>,
}

/// The upload.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// eTag.
    pub etag: String,
    /// Bytes.
    pub size: u64,
}

/// Frame counts.
#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    /// Frames captured.
    pub total: u64,
    /// Edge maps written.
    pub processed: u64,
    /// Frames failed.
    pub failed: u64,
}

/// Output location.
#[derive(Debug, Clone, Serialize)]
pub struct Output {
    /// The processed bucket.
    pub bucket: String,
    /// Prefix of the edge maps, `<video id>/`.
    pub prefix: String,
    /// `objects` (one object per edge map under `prefix`) or `packed` (tars under
    /// `<prefix>packs/`, listed in `packs`).
    pub layout: OutputLayout,
    /// Packed layout: every pack, in batch order, with each member's data offset and length,
    /// so one edge map is one ranged GET of `key`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub packs: Vec<Pack>,
}

/// File name of the preview under `<video id>/` in the processed bucket: the dispatcher's
/// MediaConvert job writes to `s3://<processed>/<video id>/preview`, and MediaConvert adds the
/// container's extension to that base name. The job cannot complete without it (MediaConvert
/// refuses frame-capture-only jobs), so a completed job has one.
pub const PREVIEW_NAME: &str = "preview.mp4";

/// Base name of segment `index`'s part of the preview, `preview-s{index:04}`: a segmented
/// capture's MediaConvert job `k` writes its part of the preview to
/// `s3://<processed>/<video id>/preview-s{k:04}`, and MediaConvert adds the container's
/// extension (`.mp4`), as for [`PREVIEW_NAME`].
pub fn preview_part_base(index: u32) -> String {
    format!("preview-s{index:04}")
}

/// Where the preview is: an H.264 MP4 of the video, shrunk to the dispatcher's
/// `preview_max_width` × `preview_max_height`, with the source's sound if it had any.
///
/// A job captured by one MediaConvert job (never segmented, or fallen back to one job) has the
/// whole preview under `key` and no `parts`. A segmented capture has one part per segment,
/// in the video's order, under `parts`, and no `key`: each segment's job wrote the preview of
/// its own stretch of the video (no job encodes the whole video again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preview {
    /// The processed bucket.
    pub bucket: String,
    /// `<video id>/preview.mp4`, the whole video's preview; absent for a segmented capture.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `<video id>/preview-s0000.mp4`, `<video id>/preview-s0001.mp4`, …: a segmented
    /// capture's parts in order; absent (empty) otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<String>,
}

impl Preview {
    /// Where `record`'s preview is in `processed_bucket`: its parts when it was captured in
    /// segments (`segments_total = Some(n)`) and did not fall back to one job, else the one
    /// `<video id>/preview.mp4`.
    pub fn of(record: &JobRecord, processed_bucket: &str) -> Self {
        let video_id = &record.video_id;
        match (record.segments_total, &record.fallback) {
            (Some(n), None) => Self {
                bucket: processed_bucket.to_string(),
                key: None,
                parts: (0..n)
                    .map(|k| format!("{video_id}/{}.mp4", preview_part_base(k)))
                    .collect(),
            },
            _ => Self {
                bucket: processed_bucket.to_string(),
                key: Some(format!("{video_id}/{PREVIEW_NAME}")),
                parts: Vec::new(),
            },
        }
    }

    /// How many objects the preview is: one PUT by MediaConvert each.
    pub fn objects(&self) -> u64 {
        self.parts.len() as u64 + u64::from(self.key.is_some())
    }
}

/// Timestamps (RFC 3339) and phase durations (seconds).
#[derive(Debug, Clone, Serialize)]
pub struct Timings {
    /// Registration.
    pub created_at: String,
    /// MediaConvert job created.
    pub capture_started_at: Option<String>,
    /// Frames fanned out.
    pub processing_started_at: Option<String>,
    /// COMPLETE.
    pub finished_at: Option<String>,
    /// Capture phase.
    pub capture_s: Option<f64>,
    /// Processing phase.
    pub processing_s: Option<f64>,
    /// Registration to COMPLETE.
    pub total_s: Option<f64>,
}

fn seconds_between(from: Option<&str>, to: Option<&str>) -> Option<f64> {
    let parse = |text: &str| {
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
    };
    let (from, to) = (parse(from?)?, parse(to?)?);
    Some(((to - from).as_seconds_f64() * 1000.0).round() / 1000.0)
}

/// Builds the manifest of a completed job.
pub fn build(
    record: &JobRecord,
    params: &EdgeParams,
    processed_bucket: &str,
    failed_frames: Vec<FailedFrame>,
) -> Manifest {
    let finished = record
        .finished_at
        .clone()
        .unwrap_or_else(crate::jobs::now_rfc3339);
    Manifest {
        video_id: record.video_id.to_string(),
        status: "COMPLETE".into(),
        source: Source {
            bucket: record.source_bucket.clone(),
            key: record.source_key.clone(),
            etag: record.source_etag.clone(),
            size: record.source_size,
        },
        mediaconvert_job_id: record.mediaconvert_job_id.clone(),
        capture_rate: record.capture_rate.clone(),
        parameters: params.clone(),
        counts: Counts {
            total: record.total_frames.unwrap_or_default(),
            processed: record.processed_frames,
            failed: record.failed_frames,
        },
        output: Output {
            bucket: processed_bucket.to_string(),
            prefix: format!("{}/", record.video_id),
            layout: record.plan.as_ref().map(|p| p.layout).unwrap_or_default(),
            packs: Vec::new(),
        },
        preview: Preview::of(record, processed_bucket),
        failed_frames,
        timings: Timings {
            capture_s: seconds_between(
                record.capture_started_at.as_deref(),
                record.processing_started_at.as_deref(),
            ),
            processing_s: seconds_between(record.processing_started_at.as_deref(), Some(&finished)),
            total_s: seconds_between(Some(&record.created_at), Some(&finished)),
            created_at: record.created_at.clone(),
            capture_started_at: record.capture_started_at.clone(),
            processing_started_at: record.processing_started_at.clone(),
            finished_at: Some(finished),
        },
        usage: job_usage(record, &[]),
        cost: JobCost {
            estimate: PriceTable::default().cost(&Usage::default()),
            per_1000_frames_usd: None,
        },
    }
}

impl Manifest {
    /// Lists the packs, given as the batch markers store them (JSON of [`Pack`]), in key order.
    /// A marker that does not parse is skipped with an error log: its frames stay counted.
    #[must_use]
    pub fn with_packs(mut self, stored: &[String]) -> Self {
        let mut packs: Vec<Pack> = stored
            .iter()
            .filter_map(|text| match serde_json::from_str(text) {
                Ok(pack) => Some(pack),
                Err(error) => {
                    tracing::error!(%error, "a batch marker's pack index does not parse");
                    None
                }
            })
            .collect();
        packs.sort_by(|a: &Pack, b: &Pack| a.key.cmp(&b.key));
        self.output.packs = packs;
        self
    }

    /// Fills `usage` and `cost` from the record's counters, the stored pack indexes and
    /// `pricing`.
    #[must_use]
    pub fn with_cost(mut self, record: &JobRecord, packs: &[String], pricing: &PriceTable) -> Self {
        self.usage = job_usage(record, packs);
        let estimate = pricing.cost(&self.usage.total);
        let per_1000_frames_usd = record
            .total_frames
            .filter(|&n| n > 0)
            .map(|n| (estimate.total_usd * 1000.0 / n as f64 * 1e6).round() / 1e6);
        self.cost = JobCost {
            estimate,
            per_1000_frames_usd,
        };
        self
    }
}

/// Size of a batch marker without a pack index, bytes (keys, counters, times): what the marker
/// Query reads per batch besides the pack indexes.
const MARKER_BYTES: usize = 150;

fn job_usage(record: &JobRecord, packs: &[String]) -> JobUsage {
    let job_bytes = serde_json::to_vec(record).map_or(1024, |json| json.len());
    let markers = record.batches.unwrap_or_default() as usize * MARKER_BYTES
        + packs.iter().map(String::len).sum::<usize>();
    let manifest = Usage {
        s3_put_requests: 1,
        dynamodb_read_units: read_units(job_bytes) + read_units(markers),
        dynamodb_write_units: write_units(job_bytes, false),
        ..Usage::default()
    };
    let dispatcher = Usage {
        s3_get_requests: 1,
        s3_put_requests: 1,
        sqs_requests: 4,
        dynamodb_read_units: read_units(job_bytes),
        dynamodb_write_units: 2 + 2 * write_units(job_bytes, false),
        worker_cpu_ms: 0,
    };
    // The preview's PUTs: one per part, or one for the whole (the bucket does not matter).
    let previews = Preview::of(record, "").objects();
    let capture = Usage {
        s3_put_requests: record.total_frames.unwrap_or_default() + previews,
        ..Usage::default()
    };
    JobUsage {
        total: record.usage.plus(manifest).plus(dispatcher).plus(capture),
        workers: record.usage,
        manifest,
        dispatcher,
        capture,
    }
}

/// `<video id>/manifest.json` in the processed bucket.
pub fn manifest_key(video_id: &VideoId) -> String {
    format!("{video_id}/manifest.json")
}

/// A batch's failure log: the full list of its failed frames, for a batch whose list does not
/// fit its marker. `None` when it fits (the common case: nothing extra is written).
///
/// The key is `<video id>/failures/<batch index, six digits>-<first 16 hex digits of the
/// body's SHA-256>.json` and the body a JSON array of [`FailedFrame`]: a redelivery that
/// failed the same frames for the same reasons rewrites the same object, one that failed
/// differently writes another, and the marker of the delivery that was counted names its own.
pub fn failure_log(
    video_id: &VideoId,
    batch_index: u32,
    failed: &[FailedFrame],
) -> Option<(String, Vec<u8>)> {
    if failures_fit_marker(failed) {
        return None;
    }
    let body = serde_json::to_vec(failed).unwrap_or_default();
    let digest = hex::encode(sha2::Sha256::digest(&body));
    let key = format!(
        "{video_id}/failures/{batch_index:06}-{}.json",
        &digest[..16]
    );
    Some((key, body))
}

/// Writing a manifest failed; the caller keeps its message (or its reconciler pass) to try
/// again.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The job table failed.
    #[error(transparent)]
    Jobs(#[from] JobTableError),
    /// Reading a failure log or writing the manifest failed.
    #[error("s3://{bucket}/{key}: {message}")]
    Storage {
        /// The processed bucket.
        bucket: String,
        /// The failure log or the manifest.
        key: String,
        /// Code and message.
        message: String,
        /// True when another try may succeed (throttling, 5xx, I/O).
        retryable: bool,
    },
}

impl ManifestError {
    /// True when another try may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Jobs(error) => error.is_retryable(),
            Self::Storage { retryable, .. } => *retryable,
        }
    }
}

/// What [`ManifestWriter::finish_job`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    /// This call wrote the manifest and completed the job (the record as it was FINALIZING).
    Completed(Box<JobRecord>),
    /// The job is not FINALIZING (or does not exist): nothing to finish.
    NotFinalizing,
    /// The manifest was written, and another finisher had completed the job first.
    CompletedElsewhere,
}

/// Writes the manifests of FINALIZING jobs and completes them.
#[derive(Debug, Clone)]
pub struct ManifestWriter {
    s3: aws_sdk_s3::Client,
    jobs: JobTable,
    processed_bucket: String,
    pricing: PriceTable,
}

impl ManifestWriter {
    /// A writer of manifests into `processed_bucket`, pricing the cost with `pricing`.
    pub fn new(
        s3: aws_sdk_s3::Client,
        jobs: JobTable,
        processed_bucket: &str,
        pricing: PriceTable,
    ) -> Self {
        Self {
            s3,
            jobs,
            processed_bucket: processed_bucket.to_string(),
            pricing,
        }
    }

    /// Writes the manifest of a FINALIZING job and marks it COMPLETE: what the winner of the
    /// completion does, and what a redelivery of a counted batch or the reconciler does for a
    /// winner that died.
    ///
    /// A winner that is only slow races such a finisher: both may write the manifest, and the
    /// loser of `complete` finds the job COMPLETE and is done, not failed. Both build it from
    /// the job as it stands FINALIZING (every batch counted: counts, usage, markers and
    /// `finished_at` no longer move), so the copies agree; the only fields that may still
    /// change under them (`fanned_out`, `updated_at`, by a late `mark_fanned_out`) feed
    /// nothing but the estimate of the job item's size in the manifest's own usage.
    pub async fn finish_job(
        &self,
        video_id: &VideoId,
        params: &EdgeParams,
    ) -> Result<Finish, ManifestError> {
        let Some(record) = self.jobs.get(video_id).await? else {
            return Ok(Finish::NotFinalizing);
        };
        if record.status != JobStatus::Finalizing {
            tracing::info!(status = %record.status, "the job is not FINALIZING; nothing to finish");
            return Ok(Finish::NotFinalizing);
        }
        let markers = self.jobs.markers(video_id).await?;
        let failed = self.failed_frames(&markers).await?;
        let document = build(&record, params, &self.processed_bucket, failed)
            .with_packs(&markers.packs)
            .with_cost(&record, &markers.packs, &self.pricing);
        let key = manifest_key(video_id);
        let body = serde_json::to_vec_pretty(&document).unwrap_or_default();
        self.s3
            .put_object()
            .bucket(&self.processed_bucket)
            .key(&key)
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|error| self.storage_error(&key, &error))?;
        if self.jobs.complete(video_id, &key).await? == Transition::NotApplicable {
            let now = self.jobs.get(video_id).await?.map(|r| r.status);
            if now == Some(JobStatus::Complete) {
                tracing::info!(manifest = %key, "another finisher completed the job first");
                return Ok(Finish::CompletedElsewhere);
            }
            // The job left FINALIZING for anything but COMPLETE (only an emulator loses writes
            // like that): report it retryable so the caller finalizes the job again.
            return Err(ManifestError::Jobs(JobTableError {
                table: self.jobs.name().to_string(),
                operation: "complete",
                video_id: video_id.to_string(),
                message: "the job is not FINALIZING after winning its completion".into(),
                retryable: true,
                source: None,
            }));
        }
        tracing::info!(manifest = %key, "manifest written; job COMPLETE");
        Ok(Finish::Completed(Box::new(record)))
    }

    /// Every failed frame in batch order: the markers' lists, with each failure log read in
    /// its batch's place.
    async fn failed_frames(
        &self,
        markers: &BatchMarkers,
    ) -> Result<Vec<FailedFrame>, ManifestError> {
        let mut failed = Vec::with_capacity(markers.failed.len());
        let mut from = 0;
        for log in &markers.failure_logs {
            failed.extend_from_slice(&markers.failed[from..log.at.min(markers.failed.len())]);
            from = log.at.min(markers.failed.len());
            failed.extend(self.read_failure_log(&log.key).await?);
        }
        failed.extend_from_slice(&markers.failed[from..]);
        Ok(failed)
    }

    async fn read_failure_log(&self, key: &str) -> Result<Vec<FailedFrame>, ManifestError> {
        let out = self
            .s3
            .get_object()
            .bucket(&self.processed_bucket)
            .key(key)
            .send()
            .await
            .map_err(|error| self.storage_error(key, &error))?;
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|error| ManifestError::Storage {
                bucket: self.processed_bucket.clone(),
                key: key.to_string(),
                message: error.to_string(),
                retryable: true,
            })?
            .into_bytes();
        // Written by our own workers; one that does not parse is a bug, not outside input, and
        // retrying will not fix it: say so rather than write a manifest missing failures.
        serde_json::from_slice(&bytes).map_err(|error| ManifestError::Storage {
            bucket: self.processed_bucket.clone(),
            key: key.to_string(),
            message: format!("not a failure log: {error}"),
            retryable: false,
        })
    }

    fn storage_error<E, R>(
        &self,
        key: &str,
        error: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
    ) -> ManifestError
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
        R: crate::aws::HasStatus,
    {
        ManifestError::Storage {
            bucket: self.processed_bucket.clone(),
            key: key.to_string(),
            message: describe(error),
            retryable: is_transient(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lists_too_long_for_a_marker_get_a_log() {
        let id = VideoId::from_raw("v-1");
        let few = vec![FailedFrame {
            key: "v-1/a.0000001.jpg".into(),
            reason: "corrupt".into(),
        }];
        assert!(failure_log(&id, 3, &few).is_none());
        let many: Vec<FailedFrame> = (0..1000)
            .map(|i| FailedFrame {
                key: format!("v-1/a.{i:07}.jpg"),
                reason: "r".repeat(500),
            })
            .collect();
        let (key, body) = failure_log(&id, 3, &many).unwrap();
        assert!(key.starts_with("v-1/failures/000003-"), "{key}");
        assert!(key.ends_with(".json") && key.len() == "v-1/failures/000003-".len() + 21);
        assert_eq!(
            serde_json::from_slice::<Vec<FailedFrame>>(&body).unwrap(),
            many
        );
        // Same list, same key; another list, another key.
        assert_eq!(failure_log(&id, 3, &many).unwrap().0, key);
        let mut other = many.clone();
        other[0].reason = "different".into();
        assert_ne!(failure_log(&id, 3, &other).unwrap().0, key);
    }

    #[test]
    fn durations_come_from_the_record() {
        let mut record = JobRecord::new(VideoId::from_raw("v-1"), "in", "a.mp4", "e", 10);
        record.created_at = "2026-01-01T00:00:00Z".into();
        record.capture_started_at = Some("2026-01-01T00:00:01Z".into());
        record.processing_started_at = Some("2026-01-01T00:00:04.5Z".into());
        record.finished_at = Some("2026-01-01T00:00:10Z".into());
        record.total_frames = Some(3);
        record.processed_frames = 2;
        record.failed_frames = 1;
        let manifest = build(
            &record,
            &EdgeParams::default(),
            "out",
            vec![FailedFrame {
                key: "v-1/a.0000001.jpg".into(),
                reason: "corrupt".into(),
            }],
        );
        assert_eq!(manifest.timings.capture_s, Some(3.5));
        assert_eq!(manifest.timings.processing_s, Some(5.5));
        assert_eq!(manifest.timings.total_s, Some(10.0));
        assert_eq!(manifest.counts.failed, 1);
        assert_eq!(manifest.output.prefix, "v-1/");
        let json = serde_json::to_value(&manifest).unwrap();
        assert_eq!(json["preview"]["bucket"], "out");
        assert_eq!(json["preview"]["key"], "v-1/preview.mp4");
        assert!(
            json["preview"].get("parts").is_none(),
            "{}",
            json["preview"]
        );
        assert_eq!(json["output"]["layout"], "objects");
        assert!(json["output"].get("packs").is_none());
    }

    #[test]
    fn the_completion_reads_the_markers_once() {
        let mut record = JobRecord::new(VideoId::from_raw("v-1"), "in", "a.mp4", "e", 10);
        record.total_frames = Some(240);
        record.batches = Some(60);
        let manifest = build(&record, &EdgeParams::default(), "out", Vec::new()).with_cost(
            &record,
            &[],
            &PriceTable::default(),
        );
        let job_bytes = serde_json::to_vec(&record).unwrap().len();
        // The job item, then one Query over 60 markers of ~150 bytes: 9,000 bytes, 3 units.
        assert_eq!(
            manifest.usage.manifest.dynamodb_read_units,
            read_units(job_bytes) + 3
        );
    }

    #[test]
    fn usage_sums_the_parts_and_cost_prices_the_total() {
        let mut record = JobRecord::new(VideoId::from_raw("v-1"), "in", "a.mp4", "e", 10);
        record.total_frames = Some(100);
        record.batches = Some(2);
        record.usage = Usage {
            s3_get_requests: 100,
            s3_put_requests: 2,
            sqs_requests: 6,
            dynamodb_read_units: 2,
            dynamodb_write_units: 10,
            worker_cpu_ms: 4000,
        };
        let pack = Pack {
            key: "v-1/packs/000000.tar".into(),
            frames: vec![crate::pack::PackedFrame {
                name: "a.0000000.jpg".into(),
                offset: 512,
                length: 10,
            }],
        };
        let stored = vec![
            serde_json::to_string(&pack).unwrap(),
            "not json".to_string(),
        ];
        let manifest = build(&record, &EdgeParams::default(), "out", Vec::new())
            .with_packs(&stored)
            .with_cost(&record, &stored, &PriceTable::default());
        assert_eq!(manifest.output.packs, vec![pack]);
        let usage = &manifest.usage;
        assert_eq!(usage.workers, record.usage);
        assert_eq!(usage.capture.s3_put_requests, 101);
        assert_eq!(usage.manifest.s3_put_requests, 1);
        assert_eq!(
            usage.total,
            record
                .usage
                .plus(usage.manifest)
                .plus(usage.dispatcher)
                .plus(usage.capture)
        );
        assert_eq!(usage.total.s3_put_requests, 2 + 1 + 1 + 101);
        let cost = &manifest.cost;
        let puts = cost
            .estimate
            .items
            .iter()
            .find(|i| i.item == "s3_put_requests")
            .unwrap();
        assert_eq!(puts.usd, 0.000525);
        let per_1000 = cost.per_1000_frames_usd.unwrap();
        assert!((per_1000 - cost.estimate.total_usd * 10.0).abs() < 1e-6);
        let json = serde_json::to_value(&manifest).unwrap();
        assert_eq!(json["cost"]["prices_read_on"], "2026-11-30");
        assert!(json["cost"]["total_usd"].as_f64().unwrap() > 0.0);
    }
    #[test]
    fn preview_part_bases_are_numbered_by_segment() {
        assert_eq!(preview_part_base(0), "preview-s0000");
        assert_eq!(preview_part_base(3), "preview-s0003");
        assert_eq!(preview_part_base(98), "preview-s0098");
    }

    #[test]
    fn a_segmented_capture_lists_its_preview_parts_and_no_key() {
        let mut record = JobRecord::new(VideoId::from_raw("v-1"), "in", "a.mp4", "e", 10);
        record.total_frames = Some(100);
        record.segments_total = Some(3);
        let manifest = build(&record, &EdgeParams::default(), "out", Vec::new()).with_cost(
            &record,
            &[],
            &PriceTable::default(),
        );
        assert_eq!(
            manifest.preview,
            Preview {
                bucket: "out".into(),
                key: None,
                parts: vec![
                    "v-1/preview-s0000.mp4".into(),
                    "v-1/preview-s0001.mp4".into(),
                    "v-1/preview-s0002.mp4".into(),
                ],
            }
        );
        let json = serde_json::to_value(&manifest).unwrap();
        assert!(json["preview"].get("key").is_none(), "{}", json["preview"]);
        assert_eq!(json["preview"]["parts"][2], "v-1/preview-s0002.mp4");
        // One preview PUT per part.
        assert_eq!(manifest.usage.capture.s3_put_requests, 100 + 3);

        // Fallen back to one job: the whole preview, as an unsegmented job's.
        record.fallback = Some("segment 1 captured 7 frames, planned 8".into());
        let manifest = build(&record, &EdgeParams::default(), "out", Vec::new()).with_cost(
            &record,
            &[],
            &PriceTable::default(),
        );
        let json = serde_json::to_value(&manifest).unwrap();
        assert_eq!(json["preview"]["key"], "v-1/preview.mp4");
        assert!(
            json["preview"].get("parts").is_none(),
            "{}",
            json["preview"]
        );
        assert_eq!(manifest.usage.capture.s3_put_requests, 100 + 1);
    }
}
