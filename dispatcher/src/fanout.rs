//! MediaConvert job events: progress, failure, and on COMPLETE the fan-out of frame batches.
//!
//! The frame total is the index of the last output path + 1, so no listing is needed; only an
//! event without output paths makes us list the prefix (keeping only the highest-numbered key).
//! Fan-out can repeat safely (a batch is counted once by its marker), and `fanned_out` keeps a
//! duplicate COMPLETE from repeating it.
//!
//! Batches are streamed ([`send_batches`]): the plan stored with the job at `start_processing`
//! (batch size, parameters, layout, the last frame's name, frames per batch) names batch `j`'s
//! frames arithmetically, each body is written only when a SendMessageBatch call has room for
//! it, a few calls are in flight, and `fanout_next` records progress every
//! `fanout_checkpoint_batches` batches. Memory is a few calls' worth (each at most 256 KiB)
//! whatever the frame count and key length, and a dispatcher killed mid-way is resumed near
//! where it stopped. Resuming matters: a worker checks a batch's marker only on redelivery, so
//! every batch sent twice is processed twice (counted once).

use framefleet_core::frames::{parse_s3_url, FrameSeries};
use framefleet_core::jobs::{BatchPlan, JobRecord, JobStatus, Transition};
use framefleet_core::message::{frames_per_batch, BatchSeries};
use framefleet_core::telemetry::propagation;
use framefleet_core::video::VideoId;
use tracing::Instrument;

use crate::context::Inner;
use crate::error::DispatchError;
use crate::events::{self, JobState};
use crate::send::{list_frames, send_batches, Checkpoint, Sent};

/// Handles one job-events message.
pub(crate) async fn handle(inner: &Inner, body: &str) -> Result<(), DispatchError> {
    let event = events::parse(body)?;
    let Some(video_id) = event.video_id.clone() else {
        tracing::warn!(mediaconvert_job_id = %event.job_id, "event for a job without a video id; ignoring");
        return Ok(());
    };
    let video_id = VideoId::from_raw(video_id);
    let span = tracing::info_span!(
        "job_event",
        video_id = %video_id,
        mediaconvert_job_id = %event.job_id,
        trace_id = tracing::field::Empty
    );
    // The event echoes the job's `userMetadata`: it joins the video's trace.
    propagation::continue_trace(&span, event.traceparent.as_deref());
    let result: Result<(), DispatchError> = async move {
        let Some(record) = inner.jobs.get(&video_id).await? else {
            tracing::warn!("event for an unknown job; ignoring");
            return Ok(());
        };
        // A part of a segmented capture (a segment or its fallback) has its own rules.
        if let Some(part) = event.part.as_deref() {
            return Box::pin(crate::segments::on_event(inner, record, &event, part)).await;
        }
        if record.segments_total.is_some() {
            tracing::warn!("event of a job that names no segment, for a segmented job; ignoring");
            return Ok(());
        }
        if let Some(own) = record.mediaconvert_job_id.as_deref() {
            if own != event.job_id {
                // A second CreateJob for the same video (a handler cut off after CreateJob and
                // redelivered after the client-token window): only the recorded job speaks for
                // the video, so the other's ERROR cannot fail a healthy job.
                tracing::warn!(
                    recorded_job_id = own,
                    "event of a MediaConvert job that is not the one recorded for this video; ignoring"
                );
                // Still running (any event but its last): stop it.
                if !matches!(
                    event.state,
                    JobState::Complete { .. } | JobState::Error { .. } | JobState::Canceled
                ) {
                    crate::mediaconvert::cancel_stray_job(
                        &inner.clients.mediaconvert,
                        &video_id,
                        &event.job_id,
                    )
                    .await?;
                }
                return Ok(());
            }
        }
        match event.state {
            JobState::Progress { percent } => {
                if let Some(percent) = percent {
                    inner
                        .jobs
                        .record_capture_progress(&video_id, percent)
                        .await?;
                    tracing::info!(percent, "capture progress");
                }
                Ok(())
            }
            JobState::Complete { last_output } => {
                complete(inner, record, &event.job_id, last_output).await
            }
            JobState::Error { code, message } => {
                let reason = format!("MediaConvert error {code}: {message}");
                if inner.jobs.fail(&video_id, &reason).await? == Transition::Applied {
                    crate::metrics::job_failed("capture");
                    tracing::warn!(reason, "capture failed; job FAILED");
                }
                Ok(())
            }
            JobState::Canceled => {
                // `fail` moves only unfinished jobs: a job the user canceled (`framefleet
                // cancel` marks it CANCELED before canceling the capture) stays CANCELED.
                let reason = format!("MediaConvert job {} was canceled", event.job_id);
                if inner.jobs.fail(&video_id, &reason).await? == Transition::Applied {
                    crate::metrics::job_failed("capture");
                    tracing::warn!("capture canceled outside framefleet; job FAILED");
                } else {
                    tracing::info!(status = %record.status, "capture canceled; job already final");
                }
                Ok(())
            }
            JobState::Other(status) => {
                tracing::debug!(status, "event needs no action");
                Ok(())
            }
        }
    }
    .instrument(span.clone())
    .await;
    propagation::record_error(&span, result)
}

async fn complete(
    inner: &Inner,
    record: JobRecord,
    job_id: &str,
    last_output: Option<String>,
) -> Result<(), DispatchError> {
    let video_id = record.video_id.clone();
    match record.status {
        JobStatus::Finalizing | JobStatus::Complete if !record.fanned_out => {
            // A dispatcher stopped between the last send and recording it, and the workers
            // counted every frame since: the batches were all sent, so say so.
            inner.jobs.mark_fanned_out(&video_id).await?;
            tracing::info!(status = %record.status, "duplicate COMPLETE; recorded the fan-out");
            return Ok(());
        }
        JobStatus::Finalizing | JobStatus::Complete | JobStatus::Failed | JobStatus::Canceled => {
            tracing::info!(status = %record.status, "duplicate COMPLETE for a finished job");
            return Ok(());
        }
        JobStatus::Processing if record.fanned_out => {
            tracing::info!("duplicate COMPLETE; batches already sent");
            return Ok(());
        }
        _ => {}
    }
    // A fan-out cut short is finished with the plan it started with, never with settings
    // changed by a redeploy since, so `batch#N` names the same frames either way.
    let record = if record.status == JobStatus::Processing && record.plan.is_some() {
        record
    } else {
        let Some(series) = frame_series(inner, &video_id, last_output.as_deref()).await? else {
            if inner
                .jobs
                .fail(&video_id, "MediaConvert completed but captured no frames")
                .await?
                == Transition::Applied
            {
                crate::metrics::job_failed("capture");
            }
            tracing::warn!("no frames captured; job FAILED");
            return Ok(());
        };
        let frames_bucket = &inner.settings.resources.frames_bucket;
        let plan = BatchPlan {
            batch_size: inner.settings.dispatcher.batch_size,
            params: inner.params.clone(),
            // Always the last frame's name, listed or not: every later fan-out or re-send
            // then names the frames without listing them.
            last_frame: series
                .last_key()
                .map(|key| format!("s3://{frames_bucket}/{key}")),
            layout: inner.settings.dispatcher.output_layout,
        };
        let per = frames_per_batch(
            &video_id,
            frames_bucket,
            &series,
            plan.batch_size,
            &plan.params,
            plan.layout,
        );
        let batches = series.count.div_ceil(per);
        if record.status != JobStatus::Processing {
            inner
                .jobs
                .start_fan_out(&video_id, job_id, series.count, batches, &plan, Some(per))
                .await?;
        }
        // Whoever moved it (this call, another dispatcher, or an older one whose plan had no
        // `batch_frames`), what is stored is what is sent.
        match inner.jobs.get(&video_id).await? {
            Some(now) if now.status == JobStatus::Processing && !now.fanned_out => now,
            _ => return Ok(()),
        }
    };
    let Some(stored) = StoredBatches::of(inner, &record).await? else {
        return Err(DispatchError::Reconcile {
            video_id: video_id.to_string(),
            message: "the stored plan names no frames".into(),
        });
    };
    let batches = stored.batches(inner, &record);
    let from = record.fanout_next.unwrap_or(0).min(batches.len());
    let span = tracing::info_span!(
        "fan_out",
        video_id = %video_id,
        batches = batches.len(),
        frames = stored.series.count,
        resumed_at = from
    );
    // Each batch's span is a child of this one; without tracing here (an event from before
    // tracing), the job's own trace is used.
    let traceparent = propagation::traceparent(&span).or(record.traceparent.clone());
    let sent = send_batches(
        inner,
        &video_id,
        &batches,
        from,
        traceparent.as_deref(),
        Checkpoint::Job,
    )
    .instrument(span)
    .await?;
    if sent == Sent::Stopped {
        return Ok(());
    }
    inner.jobs.mark_fanned_out(&video_id).await?;
    tracing::info!(
        mediaconvert_job_id = job_id,
        total_frames = stored.series.count,
        batches = batches.len(),
        resumed_at = from,
        "frames fanned out"
    );
    Ok(())
}

/// Fans out a job the reconciler found complete at MediaConvert (or fanned out only in part),
/// as a COMPLETE event would: `GetJob` names no output files, so the frames are listed unless
/// the stored plan names the last one.
pub(crate) async fn complete_from_reconciler(
    inner: &Inner,
    record: JobRecord,
    job_id: &str,
) -> Result<(), DispatchError> {
    let last = record.plan.as_ref().and_then(|p| p.last_frame.clone());
    complete(inner, record, job_id, last).await
}

/// A job's batches as its stored plan cuts them: the frames (named, not listed, when the plan
/// names the last one) and the frames per batch stored with the plan.
pub(crate) struct StoredBatches {
    /// The job's frames.
    pub(crate) series: FrameSeries,
    plan: BatchPlan,
    frames_per_batch: u64,
}

impl StoredBatches {
    /// The batches of `record`'s stored plan; `None` without a plan or without frames. A plan
    /// without `batch_frames` (stored before it was) gets the length the eager planner gave
    /// the same keys, so its batches are cut as they were first sent.
    pub(crate) async fn of(
        inner: &Inner,
        record: &JobRecord,
    ) -> Result<Option<Self>, DispatchError> {
        let Some(plan) = record.plan.clone() else {
            return Ok(None);
        };
        let Some(series) =
            frame_series(inner, &record.video_id, plan.last_frame.as_deref()).await?
        else {
            return Ok(None);
        };
        if record
            .total_frames
            .is_some_and(|total| total != series.count)
        {
            tracing::warn!(
                stored = record.total_frames,
                named = series.count,
                "the stored plan names a different number of frames than the job's total"
            );
        }
        let frames_per_batch = record.batch_frames.filter(|n| *n > 0).unwrap_or_else(|| {
            frames_per_batch(
                &record.video_id,
                &inner.settings.resources.frames_bucket,
                &series,
                plan.batch_size,
                &plan.params,
                plan.layout,
            )
        });
        Ok(Some(Self {
            series,
            plan,
            frames_per_batch,
        }))
    }

    /// The batches, numbered from 0 (a segment's would start at its base).
    pub(crate) fn batches<'a>(
        &'a self,
        inner: &'a Inner,
        record: &'a JobRecord,
    ) -> BatchSeries<'a> {
        BatchSeries {
            video_id: &record.video_id,
            frames_bucket: &inner.settings.resources.frames_bucket,
            series: &self.series,
            frames_per_batch: self.frames_per_batch,
            batch_base: 0,
            params: &self.plan.params,
            layout: self.plan.layout,
            first_index: None,
        }
    }
}

/// The job's frames, from the last output path or, without one, a listing.
async fn frame_series(
    inner: &Inner,
    video_id: &VideoId,
    last_output: Option<&str>,
) -> Result<Option<FrameSeries>, DispatchError> {
    let frames_bucket = &inner.settings.resources.frames_bucket;
    if let Some((bucket, key)) = last_output.and_then(parse_s3_url) {
        if let Some(series) = FrameSeries::through(key) {
            if bucket != frames_bucket {
                tracing::warn!(bucket, "last output is outside the frames bucket");
            }
            return Ok(Some(series));
        }
        tracing::warn!(
            last_output,
            "last output path is not a frame name; listing instead"
        );
    }
    list_frames(inner, frames_bucket, &format!("{video_id}/")).await
}
