//! The reconciler: finds jobs that stopped moving and makes each one end.
//!
//! Events get lost (an EventBridge delivery that ran out of retries, a MediaConvert stand-in
//! killed mid-capture), batches reach the frames DLQ after five transient failures, and the
//! worker that won a job's completion can die before its manifest. Each leaves a job whose
//! `updated_at` stops moving in a non-terminal state. Every `reconcile.interval_secs` this loop
//! reads the open-jobs index (one Query per shard, never a scan) for jobs older than the
//! shortest threshold, re-reads each consistently, and acts by state:
//!
//! - REGISTERED: the registration is run again (pin, probe, CreateJob are idempotent) for the
//!   object version the job recorded, so it derives the same video id.
//! - CAPTURING: MediaConvert is asked (`GetJob`) and its state applied: COMPLETE fans out
//!   (listing the frames, since `GetJob` names no output files), ERROR and CANCELED fail the
//!   job with MediaConvert's reason; a job MediaConvert no longer knows is created again, up to
//!   `reconcile.max_attempts` times.
//! - PROCESSING: a fan-out cut short is finished with the stored plan; otherwise the batches
//!   with no marker are sent again (counted once whatever happens, by their markers), up to
//!   `reconcile.max_attempts` times, after which the job FAILS naming those batches.
//! - FINALIZING: the manifest is written and the job completed, as the winning worker would.
//!
//! It runs inside the dispatcher rather than as a service of its own: it needs exactly the
//! dispatcher's clients, permissions and fan-out code, and several dispatchers running it at
//! once are safe because every action is conditional (forward-only transitions, batches
//! counted once by marker, `restart_capture` conditional on the recorded job id).
//! Cost: one Query per shard per interval, plus a GetItem per stale job.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_mediaconvert::types::JobStatus as MediaConvertStatus;
use framefleet_core::aws::{describe, is_transient};
use framefleet_core::jobs::{BatchPlan, JobRecord, JobStatus, Transition};
use framefleet_core::manifest::ManifestWriter;
use framefleet_core::video::VideoId;
use tracing::Instrument;

use crate::context::Inner;
use crate::error::DispatchError;
use crate::notification::ObjectCreated;
use crate::settings::ReconcileConfig;

/// What one pass did, for tests and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Stale jobs looked at.
    pub examined: usize,
    /// Jobs acted on: (video id, what was done).
    pub actions: Vec<(VideoId, Action)>,
}

/// What the reconciler did to one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The registration ran again.
    Reregistered,
    /// MediaConvert had completed: the frames were fanned out.
    FannedOut,
    /// MediaConvert no longer knew the job: a new capture job was created.
    Recaptured(String),
    /// These batches had no marker and were sent again.
    Resent(Vec<u32>),
    /// Every batch was counted but nobody had finalized the job: it was, and completed.
    Finalized,
    /// The manifest of a FINALIZING job was written and the job completed.
    Completed,
    /// The job cannot finish; it was failed with this reason.
    Failed(String),
}

impl ReconcileConfig {
    fn stale_after(&self, status: JobStatus) -> Option<Duration> {
        let secs = match status {
            JobStatus::Registered => self.registered_after_secs,
            JobStatus::Capturing => self.capturing_after_secs,
            JobStatus::Processing => self.processing_after_secs,
            JobStatus::Finalizing => self.finalizing_after_secs,
            JobStatus::Complete | JobStatus::Failed | JobStatus::Canceled => return None,
        };
        Some(Duration::from_secs(secs))
    }

    fn shortest(&self) -> Duration {
        Duration::from_secs(
            [
                self.registered_after_secs,
                self.capturing_after_secs,
                self.processing_after_secs,
                self.finalizing_after_secs,
            ]
            .into_iter()
            .min()
            .unwrap_or(0),
        )
    }
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn parse_time(text: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

/// One pass over the open jobs.
pub(crate) async fn reconcile_once(inner: &Inner) -> Result<ReconcileReport, DispatchError> {
    let config = &inner.settings.reconcile;
    let now = time::OffsetDateTime::now_utc();
    let cutoff = rfc3339(now - config.shortest());
    let mut report = ReconcileReport::default();
    for video_id in inner.jobs.stale_jobs(&cutoff).await? {
        report.examined += 1;
        let span = tracing::info_span!("reconcile", video_id = %video_id);
        // Boxed: acting on a job can run the whole registration (pin, probe, CreateJob), a
        // large future to keep inline in every caller's.
        match Box::pin(reconcile_job(inner, &video_id, now).instrument(span)).await {
            Ok(Some(action)) => {
                tracing::info!(video_id = %video_id, ?action, "reconciled a stale job");
                report.actions.push((video_id, action));
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(video_id = %video_id, %error, "cannot reconcile the job now; next pass");
            }
        }
        // A long pass keeps the reconciler's heartbeat alive job by job.
        framefleet_core::health::progress();
    }
    Ok(report)
}

async fn reconcile_job(
    inner: &Inner,
    video_id: &VideoId,
    now: time::OffsetDateTime,
) -> Result<Option<Action>, DispatchError> {
    let Some(record) = inner.jobs.get(video_id).await? else {
        return Ok(None);
    };
    let config = &inner.settings.reconcile;
    let Some(threshold) = config.stale_after(record.status) else {
        return Ok(None);
    };
    let moved_recently = parse_time(&record.updated_at).is_some_and(|updated| {
        now - updated < time::Duration::try_from(threshold).unwrap_or_default()
    });
    if moved_recently {
        return Ok(None);
    }
    match record.status {
        JobStatus::Registered => reregister(inner, &record).await.map(Some),
        JobStatus::Capturing => capturing(inner, record).await,
        JobStatus::Processing => processing(inner, record).await.map(Some),
        JobStatus::Finalizing => {
            finish(inner, &record).await?;
            Ok(Some(Action::Completed))
        }
        JobStatus::Complete | JobStatus::Failed | JobStatus::Canceled => Ok(None),
    }
}

async fn reregister(inner: &Inner, record: &JobRecord) -> Result<Action, DispatchError> {
    let object = ObjectCreated {
        bucket: record.source_bucket.clone(),
        key: record.source_key.clone(),
        size: record.source_size,
        etag: record.source_etag.clone(),
        // The version the job was registered (and pinned) for: the same video id again, not
        // a twin under the eTag's id.
        version_id: record.source_version_id.clone(),
    };
    crate::ingress::register_upload(inner, &object).await?;
    Ok(Action::Reregistered)
}

async fn fail(inner: &Inner, video_id: &VideoId, reason: String) -> Result<Action, DispatchError> {
    if inner.jobs.fail(video_id, &reason).await? == Transition::Applied {
        crate::metrics::job_failed("reconcile");
    }
    tracing::warn!(reason, "stale job FAILED");
    Ok(Action::Failed(reason))
}

async fn capturing(inner: &Inner, record: JobRecord) -> Result<Option<Action>, DispatchError> {
    let video_id = record.video_id.clone();
    let Some(job_id) = record.mediaconvert_job_id.clone() else {
        return fail(
            inner,
            &video_id,
            "capturing without a MediaConvert job id".into(),
        )
        .await
        .map(Some);
    };
    let asked = inner
        .clients
        .mediaconvert
        .get_job()
        .id(&job_id)
        .send()
        .await;
    let job = match asked {
        Ok(out) => out.job,
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_not_found_exception()) =>
        {
            None
        }
        Err(error) if is_transient(&error) => {
            return Err(DispatchError::Reconcile {
                video_id: video_id.to_string(),
                message: format!("GetJob {job_id}: {}", describe(&error)),
            })
        }
        Err(error) => {
            return Err(DispatchError::Reconcile {
                video_id: video_id.to_string(),
                message: format!("GetJob {job_id}: {}", describe(&error)),
            })
        }
    };
    let Some(job) = job else {
        let attempts = record.reconcile_attempts;
        if attempts >= inner.settings.reconcile.max_attempts {
            let reason = format!(
                "MediaConvert no longer knows job {job_id}, and {attempts} new capture jobs did not finish either"
            );
            return fail(inner, &video_id, reason).await.map(Some);
        }
        let new_job = crate::ingress::recapture(inner, &record).await?;
        if inner
            .jobs
            .restart_capture(&video_id, &job_id, &new_job)
            .await?
            == Transition::Applied
        {
            let note = format!(
                "MediaConvert no longer knew job {job_id}; capture restarted as {new_job} (attempt {} of {})",
                attempts + 1,
                inner.settings.reconcile.max_attempts
            );
            inner
                .jobs
                .note_reconcile(&video_id, JobStatus::Capturing, attempts, &note)
                .await?;
        }
        return Ok(Some(Action::Recaptured(new_job)));
    };
    match job.status {
        Some(MediaConvertStatus::Complete) => {
            crate::fanout::complete_from_reconciler(inner, record, &job_id).await?;
            Ok(Some(Action::FannedOut))
        }
        Some(MediaConvertStatus::Error) => {
            let reason = format!(
                "MediaConvert error {}: {}",
                job.error_code
                    .map_or_else(|| "unknown".to_string(), |c| c.to_string()),
                job.error_message.unwrap_or_default()
            );
            fail(inner, &video_id, reason).await.map(Some)
        }
        Some(MediaConvertStatus::Canceled) => fail(
            inner,
            &video_id,
            format!("MediaConvert job {job_id} was canceled"),
        )
        .await
        .map(Some),
        // Submitted or progressing: MediaConvert moves a job still running after 48 h to
        // ERROR itself, which a later pass applies.
        _ => Ok(None),
    }
}

async fn processing(inner: &Inner, record: JobRecord) -> Result<Action, DispatchError> {
    let video_id = record.video_id.clone();
    if !record.fanned_out {
        let job_id = record.mediaconvert_job_id.clone().unwrap_or_default();
        crate::fanout::complete_from_reconciler(inner, record, &job_id).await?;
        return Ok(Action::FannedOut);
    }
    let planned = record.batches.unwrap_or_default();
    let counted = inner.jobs.counted_batches(&video_id).await?;
    let missing: Vec<u32> = (0..planned as u32)
        .filter(|index| !counted.contains(index))
        .collect();
    if missing.is_empty() {
        // Every batch counted, yet nobody finalized: the winner died between its count and
        // its completion, and its message is gone.
        if inner.jobs.try_finalize(&video_id).await? == Transition::Applied {
            let record = inner.jobs.get(&video_id).await?.unwrap_or(record);
            finish(inner, &record).await?;
        }
        return Ok(Action::Finalized);
    }
    let attempts = record.reconcile_attempts;
    let max = inner.settings.reconcile.max_attempts;
    if attempts >= max {
        let reason = format!(
            "batches {} were never counted after {attempts} re-sends (see the frames DLQ); last: {}",
            list(&missing),
            record.last_error.as_deref().unwrap_or("none")
        );
        return fail(inner, &video_id, reason).await;
    }
    let plan = plan_of(inner, &record);
    let wanted: BTreeSet<u32> = missing.iter().copied().collect();
    let bodies: Vec<String> = crate::fanout::plan_job(inner, &video_id, &plan)
        .await?
        .into_iter()
        .filter(|batch| wanted.contains(&batch.batch_index))
        .map(|batch| batch.to_body())
        .collect();
    inner
        .frames
        .send_all(&bodies, record.traceparent.as_deref(), 8)
        .await?;
    crate::metrics::batches_sent(bodies.len());
    let note = format!(
        "batches {} had not been counted; re-sent them (attempt {} of {max})",
        list(&missing),
        attempts + 1
    );
    inner
        .jobs
        .note_reconcile(&video_id, JobStatus::Processing, attempts, &note)
        .await?;
    Ok(Action::Resent(missing))
}

fn plan_of(inner: &Inner, record: &JobRecord) -> BatchPlan {
    record.plan.clone().unwrap_or_else(|| BatchPlan {
        batch_size: inner.settings.dispatcher.batch_size,
        params: inner.params.clone(),
        last_frame: None,
        layout: inner.settings.dispatcher.output_layout,
    })
}

async fn finish(inner: &Inner, record: &JobRecord) -> Result<(), DispatchError> {
    let plan = plan_of(inner, record);
    let writer = ManifestWriter::new(
        inner.clients.s3.clone(),
        inner.jobs.clone(),
        &inner.settings.resources.processed_bucket,
        inner.settings.pricing.clone(),
    );
    writer
        .finish_job(&record.video_id, &plan.params)
        .await
        .map(|_finish| ())
        .map_err(|error| DispatchError::Reconcile {
            video_id: record.video_id.to_string(),
            message: format!("finishing the manifest: {error}"),
        })
}

fn list(indices: &[u32]) -> String {
    const SHOWN: usize = 20;
    let mut text: Vec<String> = indices
        .iter()
        .take(SHOWN)
        .map(|i| format!("#{i}"))
        .collect();
    if indices.len() > SHOWN {
        text.push(format!("and {} more", indices.len() - SHOWN));
    }
    text.join(", ")
}
