//! MediaConvert job events: progress, failure, and on COMPLETE the fan-out of frame batches.
//!
//! The frame total is the index of the last output path + 1, so no listing is needed; only an
//! event without output paths makes us list the prefix. Fan-out can repeat safely (a batch is
//! counted once by its marker), and `fanned_out` keeps a duplicate COMPLETE from repeating it.

use framefleet_core::frames::{frame_index, frame_key, parse_s3_url};
use framefleet_core::jobs::{BatchPlan, JobRecord, JobStatus, Transition};
use framefleet_core::message::{plan_batches, FrameBatch};
use framefleet_core::telemetry::propagation;
use framefleet_core::video::VideoId;
use tracing::Instrument;

use crate::context::Inner;
use crate::error::DispatchError;
use crate::events::{self, JobState};

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
    // A fan-out cut short is repeated with the plan it started with, never with settings
    // changed by a redeploy since, so `batch#N` names the same frames either way.
    let plan = match (record.status, &record.plan) {
        (JobStatus::Processing, Some(plan)) => plan.clone(),
        _ => BatchPlan {
            batch_size: inner.settings.dispatcher.batch_size,
            params: inner.params.clone(),
            last_frame: last_output,
            layout: inner.settings.dispatcher.output_layout,
        },
    };
    let batches = plan_job(inner, &video_id, &plan).await?;
    if batches.is_empty() {
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
    }
    let total: u64 = batches.iter().map(|b| b.frame_keys.len() as u64).sum();
    if record.status != JobStatus::Processing {
        let moved = inner
            .jobs
            .start_processing(&video_id, job_id, total, batches.len() as u64, &plan)
            .await?;
        if moved == Transition::NotApplicable {
            // Another dispatcher moved it first, or it failed meanwhile: re-read and decide.
            let now = inner.jobs.get(&video_id).await?;
            if !now.is_some_and(|r| r.status == JobStatus::Processing && !r.fanned_out) {
                return Ok(());
            }
        }
    }
    let bodies: Vec<String> = batches.iter().map(|b| b.to_body()).collect();
    let span = tracing::info_span!("fan_out", video_id = %video_id, batches = bodies.len(), frames = total);
    // Each batch's span is a child of this one; without tracing here (an event from before
    // tracing), the job's own trace is used.
    let traceparent = propagation::traceparent(&span).or(record.traceparent);
    inner
        .frames
        .send_all(&bodies, traceparent.as_deref(), 8)
        .instrument(span)
        .await?;
    crate::metrics::batches_sent(bodies.len());
    inner.jobs.mark_fanned_out(&video_id).await?;
    tracing::info!(
        mediaconvert_job_id = job_id,
        total_frames = total,
        batches = bodies.len(),
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

/// The job's batches as `plan` cuts them: the same `batch#N` every time it is asked.
pub(crate) async fn plan_job(
    inner: &Inner,
    video_id: &VideoId,
    plan: &BatchPlan,
) -> Result<Vec<FrameBatch>, DispatchError> {
    let keys = frame_keys(inner, video_id, plan.last_frame.as_deref()).await?;
    Ok(plan_batches(
        video_id,
        &inner.settings.resources.frames_bucket,
        keys,
        plan.batch_size,
        &plan.params,
        plan.layout,
    ))
}

/// The keys of every captured frame, from the last output path or, without one, a listing.
async fn frame_keys(
    inner: &Inner,
    video_id: &VideoId,
    last_output: Option<&str>,
) -> Result<Vec<String>, DispatchError> {
    let frames_bucket = &inner.settings.resources.frames_bucket;
    if let Some((bucket, key)) = last_output.and_then(parse_s3_url) {
        if let Some(keys) = frame_index(key).and_then(|last| keys_through(key, last)) {
            if bucket != frames_bucket {
                tracing::warn!(bucket, "last output is outside the frames bucket");
            }
            return Ok(keys);
        }
        tracing::warn!(
            last_output,
            "last output path is not a frame name; listing instead"
        );
    }
    list_frames(inner, frames_bucket, &format!("{video_id}/")).await
}

/// Every frame key of a capture whose last frame is `last_key`, number `last`: MediaConvert
/// numbers frames from 0 with at least seven digits, under the last key's prefix and base
/// name. `None` when the key does not end in that number.
fn keys_through(last_key: &str, last: u64) -> Option<Vec<String>> {
    let stem = last_key.strip_suffix(&format!(".{last:07}.jpg"))?;
    let (prefix, base) = match stem.rfind('/') {
        Some(slash) => (&stem[..=slash], &stem[slash + 1..]),
        None => ("", stem),
    };
    Some((0..=last).map(|i| frame_key(prefix, base, i)).collect())
}

async fn list_frames(
    inner: &Inner,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<String>, DispatchError> {
    let mut keys: Vec<(u64, String)> = Vec::new();
    let mut pages = inner
        .clients
        .s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| DispatchError::s3(bucket, prefix, &e))?;
        for object in page.contents() {
            if let Some(key) = object.key() {
                if let Some(index) = frame_index(key) {
                    keys.push((index, key.to_string()));
                }
            }
        }
    }
    keys.sort();
    Ok(keys.into_iter().map(|(_, key)| key).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_frame_names_every_frame_before_it() {
        let keys = keys_through("v/my clip.0000002.jpg", 2).unwrap();
        assert_eq!(
            keys,
            [
                "v/my clip.0000000.jpg",
                "v/my clip.0000001.jpg",
                "v/my clip.0000002.jpg"
            ]
        );
        assert_eq!(
            keys_through("clip.0000000.jpg", 0).unwrap(),
            ["clip.0000000.jpg"]
        );
        // A number that is not the key's own is no frame total.
        assert_eq!(keys_through("v/clip.0000009.jpg", 8), None);
    }
}
