//! One frame batch: download each frame, run the kernel on the blocking pool, upload the edge
//! map, then count the batch exactly once and, if it was the last, complete the job.
//!
//! Order matters for at-least-once delivery: outputs are written before the counting
//! transaction (same keys on a retry, so rewriting is harmless), and the message is deleted
//! last, by the consumer.

use std::sync::Arc;
use std::time::Instant;

use framefleet_core::aws::{describe, is_transient};
use framefleet_core::jobs::{BatchOutcome, Counting, FailedFrame, JobStatus, JobTable, Transition};
use framefleet_core::manifest::{self, Finish, ManifestWriter};
use framefleet_core::message::FrameBatch;
use framefleet_core::pack::Pack;
use framefleet_core::pricing::PriceTable;
use framefleet_core::telemetry::propagation;
use framefleet_edge::EdgeParams;
use futures::StreamExt;
use tracing::Instrument;

use crate::direct_s3::{DirectS3, DirectS3Error};
use crate::error::BatchError;
use crate::metrics;
use crate::output::{self, Emitted, Held, PackOutcome};
use crate::pipeline::{run_frames, Pipeline, Ticket};
use crate::usage::{self, BatchMeter};

/// What processing a batch ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchReport {
    /// Frames written and failed.
    pub outcome: BatchOutcome,
    /// Whether this delivery counted the batch (`AlreadyCounted` when `canceled`: nothing was
    /// counted, nor will be).
    pub counting: Counting,
    /// True if this worker completed the job and wrote its manifest.
    pub completed_job: bool,
    /// True when the job was CANCELED: the batch was skipped (no frame read, nothing counted,
    /// no frame failed) and its message is deleted.
    pub canceled: bool,
}

/// Processes batches; shared by every in-flight batch.
#[derive(Debug, Clone)]
pub struct BatchProcessor {
    pub(crate) s3: aws_sdk_s3::Client,
    pub(crate) jobs: JobTable,
    pub(crate) processed_bucket: Arc<str>,
    pub(crate) frame_concurrency: usize,
    pub(crate) pricing: Arc<PriceTable>,
    /// The worker's shared frame pipeline; without one (the reconciler, tests), each batch
    /// runs `frame_concurrency` frames at a time on its own.
    pub(crate) pipeline: Option<Arc<Pipeline>>,
    /// Whether edge-map PUTs sign their bodies (`worker.sign_s3_payloads`).
    pub(crate) sign_payloads: bool,
    /// The frame hot path's S3 requests without the SDK (`worker.s3_client = "direct"`).
    pub(crate) direct: Option<DirectS3>,
}

/// Why a captured frame could not be read, whichever client read it.
enum ReadFailure {
    /// The frame does not exist (404 NoSuchKey): it is recorded as failed.
    Missing,
    /// Any other failure: the batch is left for redelivery.
    Refused {
        /// Worth another delivery without anyone fixing anything (throttling, 5xx, I/O).
        transient: bool,
        /// The code and message.
        message: String,
    },
}

enum FrameResult {
    Written,
    Held(Held),
    Failed(FailedFrame),
}

impl BatchProcessor {
    /// A processor writing to `processed_bucket`.
    pub fn new(
        s3: aws_sdk_s3::Client,
        jobs: JobTable,
        processed_bucket: &str,
        frame_concurrency: usize,
    ) -> Self {
        Self {
            s3,
            jobs,
            processed_bucket: processed_bucket.into(),
            frame_concurrency: frame_concurrency.max(1),
            pricing: Arc::new(PriceTable::default()),
            pipeline: None,
            sign_payloads: false,
            direct: None,
        }
    }

    /// Sends each frame's GET and each edge map's or pack's PUT through `direct` instead of the
    /// SDK (see [`crate::direct_s3`]).
    pub fn with_direct_s3(mut self, direct: DirectS3) -> Self {
        self.direct = Some(direct);
        self
    }

    /// SigV4-signs the bodies of the edge-map PUTs (a SHA-256 of every body) when `sign` is
    /// true; see `worker.sign_s3_payloads`.
    pub fn with_signed_payloads(mut self, sign: bool) -> Self {
        self.sign_payloads = sign;
        self
    }

    /// Prices the cost in the manifests this processor writes with `pricing` (list prices when
    /// not given).
    pub fn with_pricing(mut self, pricing: PriceTable) -> Self {
        self.pricing = Arc::new(pricing);
        self
    }

    /// The same processor taking its frames through `pipeline`, shared with every batch.
    pub fn with_pipeline(mut self, pipeline: Arc<Pipeline>) -> Self {
        self.pipeline = Some(pipeline);
        self
    }

    /// Processes, counts and possibly completes. `redelivered` allows finishing a manifest a
    /// crashed winner left unwritten.
    pub async fn process(
        &self,
        batch: &FrameBatch,
        redelivered: bool,
    ) -> Result<BatchReport, BatchError> {
        self.process_in_trace(batch, redelivered, None, None).await
    }

    /// [`Self::process`] in the video's trace, for a batch the consumer received ahead:
    /// `traceparent` (the message's attribute) is the parent of the batch span (without one the
    /// batch starts a trace of its own), and `ticket` holds the batch's place among those
    /// waiting for the pipeline, given up when the batch is admitted.
    pub async fn process_in_trace(
        &self,
        batch: &FrameBatch,
        redelivered: bool,
        traceparent: Option<&str>,
        ticket: Option<Ticket>,
    ) -> Result<BatchReport, BatchError> {
        let span = tracing::info_span!("batch", video_id = %batch.video_id, batch_index = batch.batch_index, frames = batch.frame_keys.len(), trace_id = tracing::field::Empty);
        propagation::continue_trace(&span, traceparent);
        let traced = span.clone();
        let result: Result<BatchReport, BatchError> = async move {
            if redelivered
                && self
                    .jobs
                    .is_counted(&batch.video_id, batch.batch_index)
                    .await?
            {
                // Counted by an earlier delivery that died before deleting the message: only
                // the completion may still be owed.
                metrics::batch_redelivered();
                tracing::info!("batch was counted before (redelivery); skipping its frames");
                let completed_job = self.finish_if_last(batch, redelivered).await?;
                return Ok(BatchReport {
                    outcome: BatchOutcome::default(),
                    counting: Counting::AlreadyCounted,
                    completed_job,
                    canceled: false,
                });
            }
            // One consistent read before any frame is fetched: a canceled job's remaining
            // batches are dropped, not counted as failed (its counters stay as they were).
            let meter = Arc::new(BatchMeter::default());
            if redelivered {
                meter.dynamodb_read(1);
            }
            let record = self.jobs.get(&batch.video_id).await?;
            let job_item_bytes = record.as_ref().map_or(1, usage::job_item_bytes);
            meter.dynamodb_read(job_item_bytes);
            let status = record.map(|r| r.status);
            if status == Some(JobStatus::Canceled) {
                tracing::info!("job CANCELED; skipping the batch");
                return Ok(BatchReport {
                    outcome: BatchOutcome::default(),
                    counting: Counting::AlreadyCounted,
                    completed_job: false,
                    canceled: true,
                });
            }
            // Futures built eagerly: a lazy `map` closure over borrowed state is not `Send`
            // for every lifetime, which `tokio::spawn` needs.
            let frames: Vec<_> = batch
                .frame_keys
                .iter()
                .enumerate()
                .map(|(position, key)| self.process_frame(batch, position, key, &meter))
                .collect();
            let results: Vec<Result<FrameResult, BatchError>> = match &self.pipeline {
                Some(pipeline) => run_frames(pipeline, frames, ticket).await,
                None => {
                    futures::stream::iter(frames)
                        .buffered(self.frame_concurrency)
                        .collect()
                        .await
                }
            };
            let mut outcome = BatchOutcome::default();
            let mut held = Vec::new();
            for result in results {
                match result? {
                    FrameResult::Written => outcome.processed += 1,
                    FrameResult::Held(frame) => {
                        outcome.processed += 1;
                        held.push(frame);
                    }
                    FrameResult::Failed(failed) => outcome.failed.push(failed),
                }
            }
            match output::finish_batch(&self.output(), batch, held, &meter).await? {
                PackOutcome::None => {}
                PackOutcome::Written(pack) => outcome.pack = Some(pack_index(&pack)),
                PackOutcome::Exists(key) => {
                    // An earlier delivery stored this batch's pack. Counted: this is a
                    // duplicate, and the pack stays as its index says. Not counted (that
                    // delivery died before its count, or is counting now): this delivery
                    // counts the stored pack, so whichever count wins, its index describes
                    // the bytes under the key.
                    meter.dynamodb_read(1);
                    if self
                        .jobs
                        .is_counted(&batch.video_id, batch.batch_index)
                        .await?
                    {
                        metrics::batch_redelivered();
                        tracing::info!("batch was counted before (duplicate); its pack is kept");
                        let completed_job = self.finish_if_last(batch, redelivered).await?;
                        return Ok(BatchReport {
                            outcome: BatchOutcome::default(),
                            counting: Counting::AlreadyCounted,
                            completed_job,
                            canceled: false,
                        });
                    }
                    let stored = output::stored_pack(&self.output(), &key, &meter).await?;
                    outcome = count_stored_pack(batch, outcome, &stored);
                }
            }
            // A failure list too long for the marker goes to its log before the count.
            if let Some((key, body)) =
                manifest::failure_log(&batch.video_id, batch.batch_index, &outcome.failed)
            {
                output::put(&self.output(), &key, body, "application/json", &meter).await?;
                outcome.failure_log = Some(key);
            }
            outcome.usage = meter.usage(batch.to_body().len(), job_item_bytes);
            outcome.job_item_bytes = job_item_bytes as u64;
            let counting = self
                .jobs
                .count_batch(&batch.video_id, batch.batch_index, &outcome)
                .instrument(tracing::info_span!("count"))
                .await?;
            match counting {
                Counting::Counted => {
                    // Frames are counted with their batch, once: the counters add up to the job's.
                    metrics::batch_counted(outcome.processed, outcome.failed.len() as u64);
                    tracing::info!(
                        processed = outcome.processed,
                        failed = outcome.failed.len(),
                        "batch counted"
                    )
                }
                Counting::AlreadyCounted => {
                    metrics::batch_redelivered();
                    tracing::info!("batch was counted before (redelivery); not counting again")
                }
            }
            let completed_job = self.finish_if_last(batch, redelivered).await?;
            Ok(BatchReport {
                outcome,
                counting,
                completed_job,
                canceled: false,
            })
        }
        .instrument(span)
        .await;
        propagation::record_error(&traced, result)
    }

    async fn finish_if_last(
        &self,
        batch: &FrameBatch,
        redelivered: bool,
    ) -> Result<bool, BatchError> {
        let video_id = &batch.video_id;
        match self.jobs.try_finalize(video_id).await? {
            Transition::Applied => {
                tracing::info!("last batch counted: writing the manifest");
                self.write_manifest(batch).await
            }
            Transition::NotApplicable if redelivered => {
                // This batch's earlier delivery may have won and died before the manifest.
                let record = self.jobs.get(video_id).await?;
                if record.is_some_and(|r| r.status == framefleet_core::jobs::JobStatus::Finalizing)
                {
                    tracing::warn!("job FINALIZING without a manifest; writing it");
                    return self.write_manifest(batch).await;
                }
                Ok(false)
            }
            Transition::NotApplicable => Ok(false),
        }
    }

    async fn write_manifest(&self, batch: &FrameBatch) -> Result<bool, BatchError> {
        self.finish_job(&batch.video_id, &batch.params).await
    }

    /// Writes the manifest of a FINALIZING job and marks it COMPLETE (see
    /// [`ManifestWriter::finish_job`]). True when this call completed the job; false when the
    /// job was not FINALIZING, or another finisher completed it first.
    pub async fn finish_job(
        &self,
        video_id: &framefleet_core::video::VideoId,
        params: &EdgeParams,
    ) -> Result<bool, BatchError> {
        let writer = ManifestWriter::new(
            self.s3.clone(),
            self.jobs.clone(),
            &self.processed_bucket,
            (*self.pricing).clone(),
        );
        match writer.finish_job(video_id, params).await? {
            Finish::Completed(record) => {
                metrics::job_completed(since(&record.created_at));
                Ok(true)
            }
            Finish::NotFinalizing | Finish::CompletedElsewhere => Ok(false),
        }
    }

    async fn process_frame(
        &self,
        batch: &FrameBatch,
        position: usize,
        key: &str,
        meter: &Arc<BatchMeter>,
    ) -> Result<FrameResult, BatchError> {
        let bucket = &batch.frames_bucket;
        meter.s3_get();
        let started = Instant::now();
        let fetched = self
            .read_frame(bucket, key)
            .instrument(tracing::info_span!("download", key))
            .await;
        metrics::s3_request("GetObject", fetched.is_ok(), started.elapsed());
        let bytes = match fetched {
            Ok(bytes) => bytes,
            Err(ReadFailure::Missing) => {
                return Ok(failed(key, "the captured frame does not exist (NoSuchKey)"));
            }
            Err(ReadFailure::Refused { transient, message }) => {
                if !transient {
                    tracing::warn!(key, error = %message, "frame read refused");
                }
                return Err(BatchError::Storage {
                    bucket: bucket.clone(),
                    key: key.to_string(),
                    message,
                });
            }
        };
        let params: EdgeParams = batch.params.clone();
        let span = tracing::info_span!("kernel", key);
        let kernel_meter = Arc::clone(meter);
        let kernel = move || {
            let _entered = span.enter();
            let started = Instant::now();
            let result =
                usage::metered(&kernel_meter, || framefleet_edge::process(&bytes, &params));
            metrics::kernel_time(started.elapsed());
            result
        };
        let result = match &self.pipeline {
            Some(pipeline) => pipeline.kernel(kernel).await,
            None => tokio::task::spawn_blocking(kernel).await,
        }
        .map_err(|e| BatchError::Kernel(e.to_string()))?;
        let edge_map = match result {
            Ok(edge_map) => edge_map,
            Err(error) => {
                tracing::warn!(key, error = %error, "frame cannot be processed; counted as failed");
                return Ok(failed(key, &error.to_string()));
            }
        };
        match output::emit(&self.output(), batch, position, key, edge_map, meter).await? {
            Emitted::Written => Ok(FrameResult::Written),
            Emitted::Held(frame) => Ok(FrameResult::Held(frame)),
        }
    }

    /// GetObject of a captured frame, through the direct client when the worker has one, else
    /// the SDK.
    async fn read_frame(&self, bucket: &str, key: &str) -> Result<bytes::Bytes, ReadFailure> {
        if let Some(direct) = &self.direct {
            return direct.get(bucket, key).await.map_err(|error| match error {
                DirectS3Error::NoSuchKey => ReadFailure::Missing,
                error => ReadFailure::Refused {
                    transient: error.is_transient(),
                    message: error.to_string(),
                },
            });
        }
        match self.s3.get_object().bucket(bucket).key(key).send().await {
            // A body cut short is worth reading again.
            Ok(out) => out
                .body
                .collect()
                .await
                .map(|data| data.into_bytes())
                .map_err(|error| ReadFailure::Refused {
                    transient: true,
                    message: error.to_string(),
                }),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                Err(ReadFailure::Missing)
            }
            Err(error) => Err(ReadFailure::Refused {
                transient: is_transient(&error),
                message: describe(&error),
            }),
        }
    }

    fn output(&self) -> output::Destination<'_> {
        output::Destination {
            s3: &self.s3,
            bucket: &self.processed_bucket,
            sign_payloads: self.sign_payloads,
            direct: self.direct.as_ref(),
        }
    }
}

/// Time since `rfc3339` (a job's `created_at`), if it parses and is in the past.
fn since(rfc3339: &str) -> Option<std::time::Duration> {
    let then = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()?;
    (time::OffsetDateTime::now_utc() - then).try_into().ok()
}

fn failed(key: &str, reason: &str) -> FrameResult {
    FrameResult::Failed(FailedFrame {
        key: key.to_string(),
        reason: reason.to_string(),
    })
}

/// A pack index as the batch marker stores it (JSON of [`Pack`]).
fn pack_index(pack: &Pack) -> String {
    serde_json::to_string(pack).unwrap_or_default()
}

/// The outcome of a batch whose pack an earlier, uncounted delivery stored: what is in that
/// pack is processed, every other frame of the batch failed (with this delivery's reason when
/// it failed here too), and the stored pack's index is what the marker keeps.
fn count_stored_pack(batch: &FrameBatch, mine: BatchOutcome, stored: &Pack) -> BatchOutcome {
    let packed: std::collections::HashSet<&str> = stored
        .frames
        .iter()
        .map(|f| {
            f.name
                .rsplit_once('.')
                .map_or(f.name.as_str(), |(stem, _)| stem)
        })
        .collect();
    let reasons: std::collections::HashMap<&str, &str> = mine
        .failed
        .iter()
        .map(|f| (f.key.as_str(), f.reason.as_str()))
        .collect();
    let failed = batch
        .frame_keys
        .iter()
        .enumerate()
        .filter(|(position, key)| {
            !packed.contains(&*output::edge_map_stem(key, batch.frame_index(*position)))
        })
        .map(|(_, key)| FailedFrame {
            key: key.clone(),
            reason: reasons.get(key.as_str()).map_or_else(
                || {
                    "not in the pack an earlier delivery of this batch stored (that delivery \
                     could not process the frame)"
                        .to_string()
                },
                |reason| reason.to_string(),
            ),
        })
        .collect();
    BatchOutcome {
        processed: stored.frames.len() as u64,
        failed,
        pack: Some(pack_index(stored)),
        ..mine
    }
}

#[cfg(test)]
mod tests {
    use framefleet_core::message::OutputLayout;
    use framefleet_core::pack::PackedFrame;
    use framefleet_core::video::VideoId;

    use super::*;

    #[test]
    fn a_stored_pack_is_counted_as_it_is() {
        let batch = FrameBatch {
            version: framefleet_core::message::FRAME_BATCH_VERSION,
            video_id: VideoId::from_raw("v-1"),
            batch_index: 0,
            frames_bucket: "frames".into(),
            frame_keys: (0..4).map(|i| format!("v-1/c.{i:07}.jpg")).collect(),
            params: EdgeParams::default(),
            layout: OutputLayout::Packed,
            first_index: None,
        };
        let member = |i: u32| PackedFrame {
            name: format!("c.{i:07}.png"),
            offset: 512 + u64::from(i) * 1024,
            length: 10,
        };
        // The earlier delivery could not process frame 1; this one could not process frame 3.
        let stored = Pack {
            key: "v-1/packs/000000.tar".into(),
            frames: vec![member(0), member(2), member(3)],
        };
        let mine = BatchOutcome {
            processed: 3,
            failed: vec![FailedFrame {
                key: "v-1/c.0000003.jpg".into(),
                reason: "input is corrupt: here".into(),
            }],
            job_item_bytes: 700,
            pack: Some("mine".into()),
            ..BatchOutcome::default()
        };
        let counted = count_stored_pack(&batch, mine, &stored);
        assert_eq!(counted.processed, 3);
        assert_eq!(counted.failed.len(), 1);
        assert_eq!(counted.failed[0].key, "v-1/c.0000001.jpg");
        assert!(counted.failed[0].reason.contains("earlier delivery"));
        assert_eq!(counted.job_item_bytes, 700);
        assert_eq!(
            serde_json::from_str::<Pack>(counted.pack.as_deref().unwrap()).unwrap(),
            stored
        );
    }
    #[test]
    fn a_segments_stored_pack_is_matched_by_global_names() {
        // Segment 1's batch: local frames 0..3 with first_index 500; the stored pack names its
        // members 500.. and lacks frame 501.
        let batch = FrameBatch {
            version: framefleet_core::message::FRAME_BATCH_VERSION,
            video_id: VideoId::from_raw("v-1"),
            batch_index: 9,
            frames_bucket: "frames".into(),
            frame_keys: (0..3).map(|i| format!("v-1/s0001/c.{i:07}.jpg")).collect(),
            params: EdgeParams::default(),
            layout: OutputLayout::Packed,
            first_index: Some(500),
        };
        let member = |g: u64| PackedFrame {
            name: format!("c.{g:07}.jpg"),
            offset: 512 + g * 1024,
            length: 10,
        };
        let stored = Pack {
            key: "v-1/packs/000009.tar".into(),
            frames: vec![member(500), member(502)],
        };
        let counted = count_stored_pack(&batch, BatchOutcome::default(), &stored);
        assert_eq!(counted.processed, 2);
        assert_eq!(
            counted
                .failed
                .iter()
                .map(|f| f.key.as_str())
                .collect::<Vec<_>>(),
            ["v-1/s0001/c.0000001.jpg"],
            "the frame missing from the pack, by its key in the frames bucket"
        );
    }
}
