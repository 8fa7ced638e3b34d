//! The dispatcher's settings: resource names, how frames are captured and batched, and the
//! kernel parameters every frame of a job is processed with.

use framefleet_core::config::{ConfigError, Resources, TelemetrySettings};
use framefleet_core::message::OutputLayout;
use framefleet_core::pricing::PriceTable;
use framefleet_core::shutdown::StopBudget;
use framefleet_edge::{Blur, EdgeParams, OutputFormat};
use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::rate::CaptureRate;

/// Everything the dispatcher reads at start-up.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatcherSettings {
    /// Buckets, queues and table.
    pub resources: Resources,
    /// Capture and fan-out.
    pub dispatcher: DispatcherConfig,
    /// Edge map parameters, recorded in every batch and in the manifest.
    pub kernel: KernelConfig,
    /// Finding jobs that stopped moving and making them end.
    pub reconcile: ReconcileConfig,
    /// Setting the worker service's desired count from the known work (the `scaler` module).
    pub scaling: ScalingConfig,
    /// Prices of what a job uses, for the cost in the manifests the reconciler finishes; keep
    /// it equal to the workers' `[pricing]`.
    pub pricing: PriceTable,
    /// Logging.
    pub telemetry: TelemetrySettings,
}

/// Capture and fan-out settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatcherConfig {
    /// IAM role MediaConvert assumes to read the ingress bucket and write the frames bucket.
    pub mediaconvert_role_arn: String,
    /// MediaConvert queue ARN; the account's default queue when empty.
    pub mediaconvert_queue: String,
    /// `source` (read the frame rate from the container header) or a rate like `5` or
    /// `30000/1001` frames per second.
    pub capture_rate: String,
    /// Rate used under `source` when the container is not one whose header we read (MP4,
    /// QuickTime, Matroska, WebM); MediaConvert still reads the video.
    pub fallback_rate: String,
    /// JPEG quality of the captured frames (1..=100).
    pub jpeg_quality: u8,
    /// Most frames captured per video (1..=10,000,000).
    pub max_captures: u32,
    /// Frames per batch message (1..=1000); batches also stay under 256 KiB.
    pub batch_size: usize,
    /// File suffixes treated as videos (case-insensitive); other uploads are skipped. In the
    /// environment, a comma-separated list.
    #[serde(deserialize_with = "framefleet_core::config::comma_list")]
    pub video_suffixes: Vec<String>,
    /// Messages handled at once per queue.
    pub concurrency: usize,
    /// The container's stop timeout, seconds (2..=120; the template sets `StopTimeout` and
    /// this to the same 60): SIGKILL follows SIGTERM after it. The receive under way, the
    /// drain and the exit are planned to fit in it ([`framefleet_core::shutdown::StopBudget`]).
    pub stop_timeout_secs: u64,
    /// Seconds after SIGTERM (and after the receive under way) for in-flight messages to
    /// finish; `0` (default): what the stop timeout leaves after `poll_wait_secs` and a 10 s
    /// exit margin (30 s with the defaults). A value that does not fit is refused at start-up.
    pub drain_timeout_secs: u64,
    /// Seconds of invisibility a handler's message gets per extension (2..=43200, SQS's
    /// visibility range); extended every sixth of it while the handler runs, so a fan-out, a
    /// pin or any handler longer than the queue's visibility timeout is never picked up by a
    /// second dispatcher ([`framefleet_core::lease`]).
    pub lease_secs: u64,
    /// Seconds a loop's heartbeat may go without a beat before `dispatcher healthcheck` calls
    /// the dispatcher unhealthy. Loops beat after each receive and reconciler pass, and long
    /// work beats at each step (part copied, batch sent, job reconciled), so this must exceed
    /// `poll_wait_secs`, `reconcile.interval_secs` and the longest single step.
    pub heartbeat_max_age_secs: u64,
    /// Seconds one message may take before its handler is stopped and the message handed back
    /// for redelivery (and, after `maxReceiveCount` tries, the DLQ), so one stuck message
    /// cannot hold a slot for ever.
    pub handler_timeout_secs: u64,
    /// Long-poll wait of each receive, seconds (1..=20). 20 costs the fewest empty receives;
    /// a receive under way is finished on shutdown, so this also bounds how long that takes.
    pub poll_wait_secs: u64,
    /// Widest the MP4 preview may be, in pixels (an even number in 32..=8192). MediaConvert
    /// refuses a job made only of frame captures, so every job also writes
    /// `<video id>/preview.mp4` to the processed bucket, shrunk to fit inside
    /// `preview_max_width` × `preview_max_height` with its aspect kept (never enlarged).
    pub preview_max_width: u32,
    /// Tallest the MP4 preview may be, in pixels (an even number in 32..=8192); see
    /// `preview_max_width`.
    pub preview_max_height: u32,
    /// How new jobs store their edge maps: `objects` (one object per frame, the default) or
    /// `packed` (one tar per batch with its index in the manifest: one S3 PUT per batch instead
    /// of per frame). Recorded in the job's plan when fan-out starts, so a job keeps its layout
    /// across redeploys.
    pub output_layout: OutputLayout,
    /// SendMessageBatch calls under way at once while a job's batches are fanned out
    /// (1..=64). Fan-out memory is about this many calls' bodies (each call at most 256 KiB),
    /// whatever the job's frame count or key length.
    pub fanout_in_flight: usize,
    /// Batches between two fan-out checkpoints (`fanout_next` on the job item, one UpdateItem
    /// each; at least 1): a dispatcher stopped mid-fan-out is resumed from the last one, so at
    /// most about this many batches are sent twice (and processed twice: a worker checks a
    /// batch's marker only on redelivery).
    pub fanout_checkpoint_batches: u64,
    /// Segmented capture: each segment covers at least this many seconds of video, so a
    /// video is cut into N = ⌊duration / segment_secs⌋ MediaConvert jobs (at most
    /// `max_segments`) that capture at once (`timecode::plan_capture`).
    pub segment_secs: u64,
    /// Videos shorter than this many seconds are captured by one job: a burst of short uploads
    /// cut into segments would fill MediaConvert's concurrent-job slots with start-ups.
    pub segment_min_duration_secs: u64,
    /// Most segments one video is cut into (1..=99; 1 turns segmented capture off). One
    /// DynamoDB transaction writes the job and every segment item, and a transaction holds at
    /// most 100 items.
    pub max_segments: u32,
    /// MediaConvert jobs of one video running at once (at least 1); the rest of its segments
    /// are submitted as earlier ones complete. Keep it within the MediaConvert queue's
    /// concurrent-job quota.
    pub segments_in_flight: u32,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            mediaconvert_role_arn: "arn:aws:iam::000000000000:role/framefleet-mediaconvert".into(),
            mediaconvert_queue: String::new(),
            capture_rate: "source".into(),
            fallback_rate: "30000/1001".into(),
            jpeg_quality: 90,
            max_captures: 10_000_000,
            batch_size: 50,
            video_suffixes: [
                "mp4", "mov", "m4v", "mkv", "webm", "avi", "mpg", "mpeg", "ts", "mxf", "flv",
                "wmv", "3gp",
            ]
            .map(String::from)
            .to_vec(),
            concurrency: 4,
            stop_timeout_secs: 60,
            drain_timeout_secs: 0,
            lease_secs: 60,
            heartbeat_max_age_secs: 90,
            handler_timeout_secs: 900,
            poll_wait_secs: 20,
            preview_max_width: 640,
            preview_max_height: 360,
            output_layout: OutputLayout::Objects,
            fanout_in_flight: 4,
            fanout_checkpoint_batches: 1000,
            segment_secs: 120,
            segment_min_duration_secs: 240,
            max_segments: 16,
            segments_in_flight: 16,
        }
    }
}

/// The reconciler (see the `reconcile` module): how often it looks, and how long a job may sit
/// in each non-terminal state without its `updated_at` moving before it acts. Every counted
/// batch and every MediaConvert status update (every 10 s while capturing) moves `updated_at`,
/// so these are silences, not durations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconcileConfig {
    /// Run the reconciler loop in this dispatcher.
    pub enabled: bool,
    /// Seconds between passes.
    pub interval_secs: u64,
    /// Silence after which a REGISTERED job's registration is run again.
    pub registered_after_secs: u64,
    /// Silence after which MediaConvert is asked about a CAPTURING job.
    pub capturing_after_secs: u64,
    /// Silence after which a PROCESSING job's uncounted batches are sent again. Keep it above
    /// the time a batch may wait in a backed-up frames queue: a re-send costs the work twice
    /// (it is counted once), and after `max_attempts` re-sends the job fails.
    pub processing_after_secs: u64,
    /// Silence after which a FINALIZING job's manifest is written by the reconciler.
    pub finalizing_after_secs: u64,
    /// Re-sends (PROCESSING) or new capture jobs (CAPTURING) before the job is failed.
    pub max_attempts: u64,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 60,
            registered_after_secs: 600,
            capturing_after_secs: 900,
            processing_after_secs: 1800,
            finalizing_after_secs: 300,
            max_attempts: 3,
        }
    }
}

/// Scaling the worker fleet on known work (see the `scaler` module): every `period_secs` the
/// dispatcher sets the worker service's desired count to
/// `ceil(known batches / backlog_per_task)` within `[min_tasks, max_tasks]`. Keep `min_tasks`,
/// `max_tasks` and `backlog_per_task` equal to the template's `WorkerMinTasks`,
/// `WorkerMaxTasks` and `BacklogPerTaskTarget` (the template passes them through).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScalingConfig {
    /// Run the scaler loop in this dispatcher. Off by default: it needs an ECS service to
    /// scale (`cluster`, `service`) and `ecs:UpdateService` on it; without it queue-depth
    /// target tracking alone scales the workers.
    pub enabled: bool,
    /// Name or ARN of the ECS cluster the worker service runs in.
    pub cluster: String,
    /// Name or ARN of the worker service whose desired count is set.
    pub service: String,
    /// Fewest worker tasks (the scalable target's `MinCapacity`), 0..=1000.
    pub min_tasks: u32,
    /// Most worker tasks (the scalable target's `MaxCapacity`), `min_tasks`..=1000.
    pub max_tasks: u32,
    /// Frame-batch messages one task should have waiting for it (the target tracking
    /// policy's `TargetValue`), greater than 0.
    pub backlog_per_task: f64,
    /// Frames per batch for work not yet planned (capturing jobs); planned jobs use their
    /// stored plan's batch size. Empty: `dispatcher.batch_size`.
    pub batch_size: Option<usize>,
    /// Seconds between two computations of the desired count (1..=300).
    pub period_secs: u64,
    /// Seconds ahead a capture's frames count as known work: about a task's start-up (a
    /// Fargate task takes 30 to 60 s to start), so tasks are running as the frames land
    /// (0..=3600).
    pub look_ahead_secs: u64,
}

impl Default for ScalingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            cluster: String::new(),
            service: String::new(),
            min_tasks: 0,
            max_tasks: 10,
            backlog_per_task: 250.0,
            batch_size: None,
            period_secs: 10,
            look_ahead_secs: 45,
        }
    }
}

impl ScalingConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled {
            for (key, value) in [
                ("scaling.cluster", &self.cluster),
                ("scaling.service", &self.service),
            ] {
                if value.trim().is_empty() {
                    return Err(ConfigError::rule(
                        key,
                        "must name the worker service's ECS cluster and service when scaling is enabled",
                    ));
                }
            }
        }
        if self.min_tasks > 1000 {
            return Err(ConfigError::rule(
                "scaling.min_tasks",
                "must be between 0 and 1000",
            ));
        }
        if !(self.min_tasks.max(1)..=1000).contains(&self.max_tasks) {
            return Err(ConfigError::rule(
                "scaling.max_tasks",
                "must be between max(1, scaling.min_tasks) and 1000",
            ));
        }
        if !(self.backlog_per_task.is_finite() && self.backlog_per_task > 0.0) {
            return Err(ConfigError::rule(
                "scaling.backlog_per_task",
                "must be a number greater than 0",
            ));
        }
        if self
            .batch_size
            .is_some_and(|size| !(1..=1000).contains(&size))
        {
            return Err(ConfigError::rule(
                "scaling.batch_size",
                "must be between 1 and 1000",
            ));
        }
        if !(1..=300).contains(&self.period_secs) {
            return Err(ConfigError::rule(
                "scaling.period_secs",
                "must be between 1 and 300",
            ));
        }
        if self.look_ahead_secs > 3600 {
            return Err(ConfigError::rule(
                "scaling.look_ahead_secs",
                "must be between 0 and 3600",
            ));
        }
        Ok(())
    }
}

/// Edge map parameters (see the `framefleet-edge` crate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KernelConfig {
    /// Edgy's blur modifier: `sigma = width·height / 3,630,000 × blur_modifier`.
    pub blur_modifier: f32,
    /// Absolute blur sigma; overrides `blur_modifier` when set (0 disables the blur).
    pub sigma: Option<f32>,
    /// `jpeg` or `png`.
    pub format: OutputFormat,
    /// JPEG quality of the edge maps (1..=100).
    pub quality: u8,
    /// Downscale frames wider than this first (aspect kept).
    pub max_width: Option<u32>,
    /// Downscale frames taller than this first (aspect kept).
    pub max_height: Option<u32>,
    /// Frames with more pixels are refused from their header.
    pub max_pixels: u64,
}

impl Default for KernelConfig {
    fn default() -> Self {
        let params = EdgeParams::default();
        Self {
            blur_modifier: 1.0,
            sigma: None,
            format: params.format,
            quality: params.quality,
            max_width: params.max_width,
            max_height: params.max_height,
            max_pixels: params.max_pixels,
        }
    }
}

impl KernelConfig {
    /// The parameters sent with every batch.
    pub fn params(&self) -> EdgeParams {
        EdgeParams {
            blur: match self.sigma {
                Some(sigma) => Blur::Sigma(sigma),
                None => Blur::Modifier(self.blur_modifier),
            },
            format: self.format,
            quality: self.quality,
            max_width: self.max_width,
            max_height: self.max_height,
            max_pixels: self.max_pixels,
        }
    }
}

impl DispatcherConfig {
    /// How long a handler's message is held per extension, and how often it is extended.
    pub fn lease(&self) -> (Duration, Duration) {
        let lease = Duration::from_secs(self.lease_secs);
        (lease, (lease / 6).max(Duration::from_secs(1)))
    }

    /// When a video is cut into segments, from `segment_secs`, `segment_min_duration_secs`,
    /// `max_segments` and `max_captures`.
    pub fn segment_policy(&self) -> crate::timecode::SegmentPolicy {
        crate::timecode::SegmentPolicy {
            min_duration_ms: self.segment_min_duration_secs.saturating_mul(1000),
            segment_ms: self.segment_secs.saturating_mul(1000),
            max_segments: self.max_segments,
            max_frames: u64::from(self.max_captures),
        }
    }
}

impl DispatcherSettings {
    /// How the time between SIGTERM and SIGKILL is spent: the receive under way finishes, the
    /// handlers drain, then the process exits; the error says what does not fit.
    pub fn stop_budget(&self) -> Result<StopBudget, String> {
        let d = &self.dispatcher;
        StopBudget::receive_then_drain(
            Duration::from_secs(d.stop_timeout_secs),
            Duration::from_secs(d.poll_wait_secs),
            Duration::from_secs(d.drain_timeout_secs),
        )
    }

    /// Checks every rule; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.resources.validate()?;
        let d = &self.dispatcher;
        if d.mediaconvert_role_arn.trim().is_empty() {
            return Err(ConfigError::rule(
                "dispatcher.mediaconvert_role_arn",
                "must name the IAM role MediaConvert assumes",
            ));
        }
        if d.capture_rate != "source" {
            CaptureRate::parse(&d.capture_rate)
                .map_err(|e| ConfigError::rule("dispatcher.capture_rate", e.to_string()))?;
        }
        CaptureRate::parse(&d.fallback_rate)
            .map_err(|e| ConfigError::rule("dispatcher.fallback_rate", e.to_string()))?;
        if !(1..=100).contains(&d.jpeg_quality) {
            return Err(ConfigError::rule(
                "dispatcher.jpeg_quality",
                "must be between 1 and 100",
            ));
        }
        if !(1..=10_000_000).contains(&d.max_captures) {
            return Err(ConfigError::rule(
                "dispatcher.max_captures",
                "must be between 1 and 10000000",
            ));
        }
        if !(1..=1000).contains(&d.batch_size) {
            return Err(ConfigError::rule(
                "dispatcher.batch_size",
                "must be between 1 and 1000",
            ));
        }
        if d.video_suffixes.iter().all(|s| s.trim().is_empty()) {
            return Err(ConfigError::rule(
                "dispatcher.video_suffixes",
                "must list at least one suffix",
            ));
        }
        // MediaConvert's VideoDescription Width and Height are 32..=8192; 4:2:0 H.264 needs
        // even sizes.
        for (key, value) in [
            ("dispatcher.preview_max_width", d.preview_max_width),
            ("dispatcher.preview_max_height", d.preview_max_height),
        ] {
            if !(32..=8192).contains(&value) || value % 2 != 0 {
                return Err(ConfigError::rule(
                    key,
                    format!("must be an even number between 32 and 8192, not {value}"),
                ));
            }
        }
        if !(1..=64).contains(&d.concurrency) {
            return Err(ConfigError::rule(
                "dispatcher.concurrency",
                "must be between 1 and 64",
            ));
        }
        if !(1..=64).contains(&d.fanout_in_flight) {
            return Err(ConfigError::rule(
                "dispatcher.fanout_in_flight",
                "must be between 1 and 64",
            ));
        }
        if d.fanout_checkpoint_batches == 0 {
            return Err(ConfigError::rule(
                "dispatcher.fanout_checkpoint_batches",
                "must be at least 1",
            ));
        }
        if !(1..=99).contains(&d.max_segments) {
            return Err(ConfigError::rule(
                "dispatcher.max_segments",
                "must be between 1 (segmented capture off) and 99",
            ));
        }
        if d.segments_in_flight == 0 {
            return Err(ConfigError::rule(
                "dispatcher.segments_in_flight",
                "must be at least 1",
            ));
        }
        if d.segment_secs == 0 {
            return Err(ConfigError::rule(
                "dispatcher.segment_secs",
                "must be at least 1",
            ));
        }
        let r = &self.reconcile;
        for (key, value) in [
            ("reconcile.interval_secs", r.interval_secs),
            ("reconcile.registered_after_secs", r.registered_after_secs),
            ("reconcile.capturing_after_secs", r.capturing_after_secs),
            ("reconcile.processing_after_secs", r.processing_after_secs),
            ("reconcile.finalizing_after_secs", r.finalizing_after_secs),
        ] {
            if !(1..=7 * 24 * 3600).contains(&value) {
                return Err(ConfigError::rule(
                    key,
                    "must be between 1 and 604800 seconds",
                ));
            }
        }
        if !(1..=100).contains(&r.max_attempts) {
            return Err(ConfigError::rule(
                "reconcile.max_attempts",
                "must be between 1 and 100",
            ));
        }
        if !(1..=20).contains(&d.poll_wait_secs) {
            return Err(ConfigError::rule(
                "dispatcher.poll_wait_secs",
                "must be between 1 and 20 (SQS's longest long poll)",
            ));
        }
        self.stop_budget()
            .map_err(|e| ConfigError::rule("dispatcher.stop_timeout_secs", e))?;
        if !(2..=43_200).contains(&d.lease_secs) {
            return Err(ConfigError::rule(
                "dispatcher.lease_secs",
                "must be between 2 and 43200 (SQS's visibility timeout range)",
            ));
        }
        let slowest_beat = if self.reconcile.enabled {
            d.poll_wait_secs.max(self.reconcile.interval_secs)
        } else {
            d.poll_wait_secs
        };
        if d.heartbeat_max_age_secs <= slowest_beat {
            return Err(ConfigError::rule(
                "dispatcher.heartbeat_max_age_secs",
                format!(
                    "must exceed poll_wait_secs and reconcile.interval_secs ({slowest_beat} s), \
                     or an idle dispatcher is reported unhealthy"
                ),
            ));
        }
        if !(1..=3600).contains(&d.handler_timeout_secs) {
            return Err(ConfigError::rule(
                "dispatcher.handler_timeout_secs",
                "must be between 1 and 3600",
            ));
        }
        self.scaling.validate()?;
        self.pricing.validate()?;
        self.kernel
            .params()
            .validate()
            .map_err(|e| ConfigError::rule("kernel", e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<DispatcherSettings, ConfigError> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let settings: DispatcherSettings = framefleet_core::config::load(None, Some(env))?;
        settings.validate()?;
        Ok(settings)
    }

    #[test]
    fn defaults_are_valid() {
        let settings = load(&[]).unwrap();
        assert_eq!(settings.dispatcher.capture_rate, "source");
        assert_eq!(settings.kernel.params(), EdgeParams::default());
        assert_eq!(settings.dispatcher.output_layout, OutputLayout::Objects);
        assert_eq!(settings.pricing, PriceTable::default());
    }

    #[test]
    fn the_stop_budget_comes_from_the_stop_timeout() {
        let budget = load(&[]).unwrap().stop_budget().unwrap();
        assert_eq!(budget.drain, Duration::from_secs(30));
        assert!(budget.worst_case() <= Duration::from_secs(60));
        // The template's value, from the environment as the task definition passes it.
        let settings = load(&[("FRAMEFLEET__DISPATCHER__STOP_TIMEOUT_SECS", "90")]).unwrap();
        assert_eq!(
            settings.stop_budget().unwrap().drain,
            Duration::from_secs(60)
        );
        for pairs in [
            &[("FRAMEFLEET__DISPATCHER__DRAIN_TIMEOUT_SECS", "45")][..],
            &[("FRAMEFLEET__DISPATCHER__STOP_TIMEOUT_SECS", "30")][..],
            &[("FRAMEFLEET__DISPATCHER__STOP_TIMEOUT_SECS", "121")][..],
        ] {
            let err = load(pairs).unwrap_err().to_string();
            assert!(err.contains("dispatcher.stop_timeout_secs"), "{err}");
        }
        let err = load(&[("FRAMEFLEET__DISPATCHER__HEARTBEAT_MAX_AGE_SECS", "60")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("dispatcher.heartbeat_max_age_secs"), "{err}");
        let err = load(&[("FRAMEFLEET__DISPATCHER__LEASE_SECS", "1")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("dispatcher.lease_secs"), "{err}");
    }

    #[test]
    fn environment_sets_lists_and_numbers() {
        let settings = load(&[
            ("FRAMEFLEET__DISPATCHER__VIDEO_SUFFIXES", "mp4,mov"),
            ("FRAMEFLEET__DISPATCHER__BATCH_SIZE", "7"),
            ("FRAMEFLEET__DISPATCHER__CAPTURE_RATE", "30000/1001"),
            ("FRAMEFLEET__KERNEL__SIGMA", "1.5"),
            ("FRAMEFLEET__KERNEL__FORMAT", "png"),
            ("FRAMEFLEET__DISPATCHER__OUTPUT_LAYOUT", "packed"),
            ("FRAMEFLEET__PRICING__S3_PUT_PER_1000", "0.0055"),
        ])
        .unwrap();
        assert_eq!(settings.dispatcher.output_layout, OutputLayout::Packed);
        assert_eq!(settings.pricing.s3_put_per_1000, 0.0055);
        assert_eq!(settings.dispatcher.video_suffixes, ["mp4", "mov"]);
        assert_eq!(settings.dispatcher.batch_size, 7);
        assert_eq!(settings.kernel.params().blur, Blur::Sigma(1.5));
        assert_eq!(settings.kernel.params().format, OutputFormat::Png);
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = load(&[("FRAMEFLEET__DISPATCHER__CAPTURE_RATE", "fast")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("dispatcher.capture_rate"), "{err}");
        let err = load(&[("FRAMEFLEET__DISPATCHER__BATCH_SIZE", "0")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("dispatcher.batch_size"), "{err}");
        let err = load(&[(
            "FRAMEFLEET__DISPATCHER__CAPTURE_RATE",
            "2147483648/2147483647",
        )])
        .unwrap_err()
        .to_string();
        assert!(err.contains("dispatcher.capture_rate"), "{err}");
        assert!(err.contains("2147483648/2147483647"), "{err}");
        let err = load(&[("FRAMEFLEET__DISPATCHER__FALLBACK_RATE", "4294967295/1")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("dispatcher.fallback_rate"), "{err}");
        for (key, value) in [
            ("FRAMEFLEET__DISPATCHER__PREVIEW_MAX_WIDTH", "641"),
            ("FRAMEFLEET__DISPATCHER__PREVIEW_MAX_WIDTH", "16"),
            ("FRAMEFLEET__DISPATCHER__PREVIEW_MAX_HEIGHT", "9000"),
        ] {
            let err = load(&[(key, value)]).unwrap_err().to_string();
            let named = key
                .trim_start_matches("FRAMEFLEET__DISPATCHER__")
                .to_lowercase();
            assert!(err.contains(&format!("dispatcher.{named}")), "{err}");
        }
        let settings = load(&[
            ("FRAMEFLEET__DISPATCHER__PREVIEW_MAX_WIDTH", "1280"),
            ("FRAMEFLEET__DISPATCHER__PREVIEW_MAX_HEIGHT", "720"),
        ])
        .unwrap();
        assert_eq!(settings.dispatcher.preview_max_width, 1280);
        let err = load(&[("FRAMEFLEET__DISPATCHER__OUTPUT_LAYOUT", "zip")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("output_layout"), "{err}");
        let err = load(&[("FRAMEFLEET__PRICING__FARGATE_GB_HOUR", "-0.1")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("pricing.fargate_gb_hour"), "{err}");
        let err = load(&[("FRAMEFLEET__SCALING__ENABLED", "true")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("scaling.cluster"), "{err}");
        let err = load(&[
            ("FRAMEFLEET__SCALING__MIN_TASKS", "5"),
            ("FRAMEFLEET__SCALING__MAX_TASKS", "4"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("scaling.max_tasks"), "{err}");
        let err = load(&[("FRAMEFLEET__SCALING__BACKLOG_PER_TASK", "0")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("scaling.backlog_per_task"), "{err}");
        let err = load(&[("FRAMEFLEET__SCALING__PERIOD_SECS", "0")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("scaling.period_secs"), "{err}");
        let settings = load(&[
            ("FRAMEFLEET__SCALING__ENABLED", "true"),
            ("FRAMEFLEET__SCALING__CLUSTER", "framefleet"),
            ("FRAMEFLEET__SCALING__SERVICE", "worker"),
            ("FRAMEFLEET__SCALING__BATCH_SIZE", "25"),
        ])
        .unwrap();
        assert_eq!(settings.scaling.batch_size, Some(25));
        let err = load(&[("FRAMEFLEET__DISPATCHER__BATCH_SIZ", "3")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("batch_siz"), "{err}");
    }
}
