//! Scaling on known work: the worker fleet starts when the work is known, not minutes later
//! when queue-depth target tracking has seen enough one-minute datapoints.
//!
//! Every `scaling.period_secs` the scaler reads the unfinished jobs (the open-jobs index, one
//! Query per shard, then each job consistently) and counts the known work in batches:
//!
//! - PROCESSING jobs: the frames captured and not yet done, `total - processed - failed`, in
//!   batches of the job's stored plan;
//! - CAPTURING jobs whose capture is expected to complete within `scaling.look_ahead_secs`
//!   (about a task's start-up): their expected frames (`expected_frames`, the probe's duration
//!   × rate), when the record holds them, in batches of `scaling.batch_size`. When the capture
//!   lands is extrapolated from MediaConvert's progress (STATUS_UPDATE events, recorded as
//!   `capture_progress`) and the time since capture started.
//!
//! The desired count is `ceil(known batches / scaling.backlog_per_task)` within
//! `[scaling.min_tasks, scaling.max_tasks]` ([`desired_count`], the rule
//! `scripts/fleet_sim.py`'s `scale_on_known_work` models). The scaler reads the worker
//! service's desired count (ECS `DescribeServices`) and calls `UpdateService` with its own only
//! when the two differ: up at once, and down as the work is done. A lower desired count stops
//! idle tasks only, because busy workers hold ECS task scale-in protection.
//!
//! How this coexists with the template's Application Auto Scaling (queue-depth target tracking,
//! the scale-from-zero step and the idle alarm, all on the same scalable target): a desired
//! count set directly through `UpdateService` is a plain change of the service's desired count
//! ("UpdateService", Amazon ECS API Reference,
//! <https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_UpdateService.html>).
//! Application Auto Scaling does not undo it; its policies start from whatever the current
//! capacity is the next time one of their alarms fires, and it keeps the capacity within the
//! scalable target's minimum and maximum only when a policy acts ("Amazon ECS service auto
//! scaling", Amazon ECS Developer Guide,
//! <https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-auto-scaling.html>).
//! So the scaler keeps to the same bounds itself (`min_tasks`/`max_tasks` are the template's
//! `WorkerMinTasks`/`WorkerMaxTasks`), and the two signals agree by construction: the known
//! work includes every batch on the queue, so target tracking (which sees the same backlog a
//! minute or more later) asks for about the same count, and the idle alarm (nothing visible
//! or in flight) fires only when the known work is zero too. Whatever a policy sets in
//! between, the scaler sets its own again within one period. Without a dispatcher (or with
//! `ScaleOnKnownWork` false) the policies alone scale the fleet, as before.
//!
//! Cost: one Query per shard and a GetItem per unfinished job every period, plus one
//! DescribeServices; UpdateService only on a change. Nothing here is on a job's path.

use std::time::Duration;

use aws_sdk_ecs::error::ProvideErrorMetadata;
use framefleet_core::jobs::{JobRecord, JobStatus, JobTableError};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::context::Inner;
use crate::settings::ScalingConfig;
use crate::Dispatcher;

/// The name of the scaler loop's heartbeat, which `dispatcher healthcheck` checks.
pub const HEARTBEAT: &str = "dispatcher-scaler";

/// The work the dispatcher knows of, at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KnownWork {
    /// Frames captured and not yet done, plus those of captures landing within the look-ahead.
    pub frames: u64,
    /// The same frames in batches (each job's batches rounded up).
    pub batches: u64,
    /// Jobs that contributed.
    pub jobs: usize,
}

/// What one scaler pass found and did, for tests and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleReport {
    /// The known work.
    pub work: KnownWork,
    /// The desired count the known work asks for.
    pub desired: i32,
    /// The service's desired count before this pass.
    pub previous: i32,
    /// True when this pass called `UpdateService`.
    pub updated: bool,
}

/// A scaler pass failed; the next period tries again.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    /// The job table could not be read.
    #[error("cannot read the known work: {0}")]
    Jobs(#[from] JobTableError),
    /// `DescribeServices` failed.
    #[error("cannot describe ECS service `{service}` in cluster `{cluster}`: {message}")]
    Describe {
        /// The cluster as configured.
        cluster: String,
        /// The service as configured.
        service: String,
        /// The service's message.
        message: String,
        /// The SDK error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// ECS does not know the service (a `DescribeServices` failure entry, or an inactive one).
    #[error("ECS service `{service}` in cluster `{cluster}` is missing or inactive: {reason}")]
    Missing {
        /// The cluster as configured.
        cluster: String,
        /// The service as configured.
        service: String,
        /// ECS's reason (`MISSING`) or the service's status.
        reason: String,
    },
    /// `UpdateService` failed.
    #[error("cannot set the desired count of ECS service `{service}` to {desired}: {message}")]
    Update {
        /// The service as configured.
        service: String,
        /// The count that was to be set.
        desired: i32,
        /// The service's message.
        message: String,
        /// The SDK error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The desired count for `batches` known batches: `ceil(batches / backlog_per_task)` within
/// `[min_tasks, max_tasks]`.
pub fn desired_count(batches: u64, rule: &ScalingConfig) -> i32 {
    let tasks = (batches as f64 / rule.backlog_per_task).ceil();
    let tasks = if tasks.is_finite() && tasks >= 0.0 {
        tasks.min(f64::from(rule.max_tasks)) as u32
    } else {
        rule.max_tasks
    };
    tasks.clamp(rule.min_tasks, rule.max_tasks) as i32
}

/// When a CAPTURING job's capture is expected to complete, extrapolated from MediaConvert's
/// last reported progress and the time since capture started: `None` without progress (or
/// with timestamps that do not parse).
pub fn capture_lands_at(record: &JobRecord) -> Option<OffsetDateTime> {
    let percent = record.capture_progress.filter(|&p| p > 0)?.min(100);
    let started = OffsetDateTime::parse(record.capture_started_at.as_deref()?, &Rfc3339).ok()?;
    // The progress was reported when the record last changed.
    let reported = OffsetDateTime::parse(&record.updated_at, &Rfc3339).ok()?;
    let elapsed = (reported - started).max(time::Duration::ZERO);
    let total = elapsed * (100.0 / percent as f64);
    Some(started + total)
}

/// The known work in `jobs` at `now` (see the module docs). `default_batch_size` batches
/// frames of jobs with no stored plan.
pub fn known_work(
    jobs: &[JobRecord],
    now: OffsetDateTime,
    look_ahead: Duration,
    default_batch_size: usize,
) -> KnownWork {
    let horizon = now + look_ahead;
    let mut work = KnownWork::default();
    for job in jobs {
        let (frames, batch_size) = match job.status {
            JobStatus::Processing => {
                let total = job.total_frames.unwrap_or_default();
                let remaining = total.saturating_sub(job.processed_frames + job.failed_frames);
                let batch_size = job
                    .plan
                    .as_ref()
                    .map_or(default_batch_size, |plan| plan.batch_size);
                (remaining, batch_size)
            }
            JobStatus::Capturing => {
                let landing = capture_lands_at(job).is_some_and(|at| at <= horizon);
                // A segmented capture fans its segments out while it still captures: its work
                // is known as soon as its first segment lands, less what is already counted.
                let landing = landing || job.segments_complete > 0;
                let done = job.processed_frames + job.failed_frames;
                match job.expected_frames {
                    Some(frames) if landing => (frames.saturating_sub(done), default_batch_size),
                    _ => (0, default_batch_size),
                }
            }
            _ => (0, default_batch_size),
        };
        if frames == 0 {
            continue;
        }
        work.frames += frames;
        work.batches += frames.div_ceil(batch_size.max(1) as u64);
        work.jobs += 1;
    }
    work
}

/// The ECS side of the scaler: reads and sets the worker service's desired count.
#[derive(Debug, Clone)]
pub struct WorkerService {
    ecs: aws_sdk_ecs::Client,
    cluster: String,
    service: String,
}

impl WorkerService {
    /// The service named in `rule`, through `ecs`.
    pub fn new(ecs: aws_sdk_ecs::Client, rule: &ScalingConfig) -> Self {
        Self {
            ecs,
            cluster: rule.cluster.clone(),
            service: rule.service.clone(),
        }
    }

    /// The service's desired count (`DescribeServices`).
    pub async fn desired_count(&self) -> Result<i32, ScaleError> {
        let out = self
            .ecs
            .describe_services()
            .cluster(&self.cluster)
            .services(&self.service)
            .send()
            .await
            .map_err(|error| ScaleError::Describe {
                cluster: self.cluster.clone(),
                service: self.service.clone(),
                message: message(&error),
                source: Box::new(error),
            })?;
        let missing = |reason: String| ScaleError::Missing {
            cluster: self.cluster.clone(),
            service: self.service.clone(),
            reason,
        };
        if let Some(failure) = out.failures().first() {
            return Err(missing(failure.reason().unwrap_or("unknown").to_string()));
        }
        let service = out
            .services()
            .first()
            .ok_or_else(|| missing("not in the answer".into()))?;
        match service.status() {
            Some("ACTIVE") | None => Ok(service.desired_count()),
            Some(other) => Err(missing(other.to_string())),
        }
    }

    /// Sets the service's desired count (`UpdateService` with `desiredCount` only).
    pub async fn set_desired_count(&self, desired: i32) -> Result<(), ScaleError> {
        self.ecs
            .update_service()
            .cluster(&self.cluster)
            .service(&self.service)
            .desired_count(desired)
            .send()
            .await
            .map_err(|error| ScaleError::Update {
                service: self.service.clone(),
                desired,
                message: message(&error),
                source: Box::new(error),
            })?;
        Ok(())
    }
}

fn message<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    error: &aws_sdk_ecs::error::SdkError<E, R>,
) -> String {
    framefleet_core::aws::describe(error)
}

/// The unfinished jobs, each read consistently (the index is eventually consistent and keys
/// only).
async fn open_jobs(inner: &Inner) -> Result<Vec<JobRecord>, ScaleError> {
    let mut jobs = Vec::new();
    for key in inner.jobs.open_jobs().await? {
        if let Some(record) = inner.jobs.get(&key.video_id).await? {
            if !record.status.is_final() {
                jobs.push(record);
            }
        }
    }
    Ok(jobs)
}

/// One pass: the known work, the desired count, and `UpdateService` when it differs.
async fn scale_once(inner: &Inner, service: &WorkerService) -> Result<ScaleReport, ScaleError> {
    let rule = &inner.settings.scaling;
    let jobs = open_jobs(inner).await?;
    let batch_size = rule
        .batch_size
        .unwrap_or(inner.settings.dispatcher.batch_size);
    let work = known_work(
        &jobs,
        OffsetDateTime::now_utc(),
        Duration::from_secs(rule.look_ahead_secs),
        batch_size,
    );
    let desired = desired_count(work.batches, rule);
    let previous = service.desired_count().await?;
    let updated = previous != desired;
    if updated {
        service.set_desired_count(desired).await?;
        tracing::info!(
            previous,
            desired,
            known_frames = work.frames,
            known_batches = work.batches,
            jobs = work.jobs,
            "worker desired count set from the known work"
        );
    }
    Ok(ScaleReport {
        work,
        desired,
        previous,
        updated,
    })
}

impl Dispatcher {
    /// One scaler pass (see [`crate::scaler`]), whatever `scaling.enabled` says; needs
    /// `scaling.cluster` and `scaling.service`.
    pub async fn scale_once(&self) -> Result<ScaleReport, ScaleError> {
        let service = WorkerService::new(
            aws_sdk_ecs::Client::new(&self.inner.clients.config),
            &self.inner.settings.scaling,
        );
        scale_once(&self.inner, &service).await
    }

    /// The scaler loop: a pass every `scaling.period_secs` while `scaling.enabled`, and a
    /// heartbeat, in the service's heartbeat directory, at least three times within the health
    /// check's window (however long the period), enabled or not.
    pub(crate) async fn run_scaler(self, shutdown: CancellationToken) {
        let rule = &self.inner.settings.scaling;
        let heartbeat = self.heartbeat(HEARTBEAT);
        let service =
            WorkerService::new(aws_sdk_ecs::Client::new(&self.inner.clients.config), rule);
        let period = Duration::from_secs(rule.period_secs);
        let window = self.inner.settings.dispatcher.heartbeat_max_age_secs;
        let beat_every = Duration::from_secs((window / 3).max(1)).min(period);
        let mut ticker = tokio::time::interval(beat_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_pass: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let due = last_pass.is_none_or(|at| at.elapsed() >= period);
            if rule.enabled && due {
                last_pass = Some(tokio::time::Instant::now());
                // A pass is a few reads and at most one write, each safe to cut off and repeat.
                if let Err(error) = scale_once(&self.inner, &service).await {
                    tracing::warn!(error = %error, "scaler pass failed; next period");
                }
            }
            heartbeat.beat();
        }
    }
}

#[cfg(test)]
mod tests {
    use framefleet_core::jobs::BatchPlan;
    use framefleet_core::video::VideoId;

    use super::*;

    fn rule(min: u32, max: u32, backlog: f64) -> ScalingConfig {
        ScalingConfig {
            min_tasks: min,
            max_tasks: max,
            backlog_per_task: backlog,
            ..ScalingConfig::default()
        }
    }

    fn at(text: &str) -> OffsetDateTime {
        OffsetDateTime::parse(text, &Rfc3339).unwrap()
    }

    fn job(status: JobStatus) -> JobRecord {
        let mut record = JobRecord::new(VideoId::from_raw("v"), "in", "v.mp4", "e", 1);
        record.status = status;
        record
    }

    fn processing(total: u64, done: u64, failed: u64, batch_size: usize) -> JobRecord {
        let mut record = job(JobStatus::Processing);
        record.total_frames = Some(total);
        record.processed_frames = done;
        record.failed_frames = failed;
        record.plan = Some(BatchPlan {
            batch_size,
            params: framefleet_edge::EdgeParams::default(),
            last_frame: None,
            layout: Default::default(),
        });
        record
    }

    fn capturing(
        expected: Option<u64>,
        percent: Option<u64>,
        started: &str,
        reported: &str,
    ) -> JobRecord {
        let mut record = job(JobStatus::Capturing);
        record.expected_frames = expected;
        record.capture_progress = percent;
        record.capture_started_at = Some(started.into());
        record.updated_at = reported.into();
        record
    }

    #[test]
    fn desired_count_is_batches_over_the_backlog_target_within_bounds() {
        let r = rule(0, 10, 250.0);
        assert_eq!(desired_count(0, &r), 0);
        assert_eq!(desired_count(1, &r), 1);
        assert_eq!(desired_count(250, &r), 1);
        assert_eq!(desired_count(251, &r), 2);
        assert_eq!(desired_count(1300, &r), 6);
        assert_eq!(desired_count(1_000_000, &r), 10);
        assert_eq!(desired_count(u64::MAX, &r), 10);
        let r = rule(2, 3, 1.0);
        assert_eq!(desired_count(0, &r), 2);
        assert_eq!(desired_count(3, &r), 3);
        assert_eq!(desired_count(4, &r), 3);
    }

    #[test]
    fn processing_jobs_count_what_is_left_in_their_plans_batches() {
        let now = at("2026-01-01T00:00:00Z");
        let jobs = [
            processing(1000, 400, 100, 50),
            processing(101, 0, 0, 10),
            processing(80, 80, 0, 50),
        ];
        let work = known_work(&jobs, now, Duration::from_secs(45), 50);
        assert_eq!(
            work,
            KnownWork {
                frames: 500 + 101,
                batches: 10 + 11,
                jobs: 2,
            }
        );
    }

    #[test]
    fn a_segmented_capture_counts_its_work_once_a_segment_lands() {
        let now = at("2026-01-01T00:02:00Z");
        // Far from landing by its progress, but one of its 4 segments is in and being counted.
        let mut segmented = capturing(
            Some(6000),
            Some(0),
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:01:40Z",
        );
        segmented.segments_total = Some(4);
        let work = known_work(
            std::slice::from_ref(&segmented),
            now,
            Duration::from_secs(45),
            50,
        );
        assert_eq!(work, KnownWork::default());
        segmented.segments_complete = 1;
        segmented.processed_frames = 1000;
        let work = known_work(
            std::slice::from_ref(&segmented),
            now,
            Duration::from_secs(45),
            50,
        );
        assert_eq!(
            work,
            KnownWork {
                frames: 5000,
                batches: 100,
                jobs: 1,
            }
        );
    }

    #[test]
    fn a_capture_counts_only_when_it_lands_within_the_look_ahead() {
        let now = at("2026-01-01T00:02:00Z");
        // Started 100 s before the report at 50 %: lands 100 s after the report, 80 s from now.
        let soon = capturing(
            Some(6000),
            Some(50),
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:01:40Z",
        );
        assert_eq!(capture_lands_at(&soon), Some(at("2026-01-01T00:03:20Z")));
        let work = known_work(
            std::slice::from_ref(&soon),
            now,
            Duration::from_secs(45),
            50,
        );
        assert_eq!(work, KnownWork::default());
        let work = known_work(
            std::slice::from_ref(&soon),
            now,
            Duration::from_secs(80),
            50,
        );
        assert_eq!(
            work,
            KnownWork {
                frames: 6000,
                batches: 120,
                jobs: 1
            }
        );
        // No progress yet, or no expected frames: nothing known.
        let early = capturing(
            Some(6000),
            None,
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00Z",
        );
        let unknown = capturing(
            None,
            Some(99),
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:01:40Z",
        );
        let work = known_work(&[early, unknown], now, Duration::from_secs(3600), 50);
        assert_eq!(work, KnownWork::default());
    }

    #[test]
    fn finished_and_registered_jobs_add_nothing() {
        let now = at("2026-01-01T00:00:00Z");
        let jobs = [
            job(JobStatus::Registered),
            job(JobStatus::Finalizing),
            job(JobStatus::Complete),
        ];
        assert_eq!(
            known_work(&jobs, now, Duration::from_secs(45), 50),
            KnownWork::default()
        );
    }
}
