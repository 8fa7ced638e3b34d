//! The worker's settings. Kernel parameters travel in each batch (the dispatcher sets them per
//! job), so the worker only knows its resources and how much to do at once.

use framefleet_core::config::{ConfigError, Resources, TelemetrySettings};
use framefleet_core::pricing::PriceTable;
use serde::{Deserialize, Serialize};

use crate::pipeline::{self, PipelineConfig};

/// Everything the worker reads at start-up.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    /// Buckets, queues and table.
    pub resources: Resources,
    /// Consumer tuning.
    pub worker: WorkerConfig,
    /// Prices of what a job uses, for the cost in the manifest the completing worker writes;
    /// keep it equal to the dispatcher's `[pricing]` (its reconciler writes manifests too).
    pub pricing: PriceTable,
    /// Logging.
    pub telemetry: TelemetrySettings,
}

/// Consumer tuning. The defaults size everything from what the worker measures and the task it
/// runs in; the keys are overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Most batches received and not yet finished; `0` (default) leaves it to the frame
    /// pipeline, which keeps two batches waiting ahead of the one being started.
    pub batches_in_flight: usize,
    /// `0` (default): frames flow through one pipeline shared by all batches. `n > 0`: the
    /// older scheduling, each batch on its own with `n` frames at a time and no pipeline
    /// (kept to measure against; `batches_in_flight` then defaults to 2).
    pub frame_concurrency: usize,
    /// Frames between the start of their download and the end of their upload, across all
    /// batches; `0` (default) sizes it by Little's law from the measured storage latency and
    /// kernel time, within the memory bound.
    pub frames_in_flight: usize,
    /// Frames running the kernel at once; `0` (default): the cores this process may use.
    pub kernel_threads: usize,
    /// Memory, in MiB, the frame budget is bounded by (half of it, at `frame_memory_kib` a
    /// frame); `0` (default): the container's cgroup limit, else the machine's memory.
    pub memory_limit_mib: u64,
    /// What one frame in flight holds, in KiB: its JPEG, its edge map, the SDK's buffers.
    pub frame_memory_kib: u64,
    /// The container's stop timeout, seconds (the template sets `StopTimeout` and this to the
    /// same 120, Fargate's maximum): SIGKILL follows SIGTERM after it. The drain and the exit
    /// are planned to fit in it ([`framefleet_core::shutdown::StopBudget`]).
    pub stop_timeout_secs: u64,
    /// Seconds to finish in-flight batches after SIGTERM before handing them back for
    /// redelivery; `0` (default): what the stop timeout leaves after a 10 s exit margin (110 s
    /// with the defaults). A value that does not fit is refused at start-up.
    pub drain_timeout_secs: u64,
    /// Ask ECS for task scale-in protection while batches are in flight (no-op off ECS).
    pub scale_in_protection: bool,
    /// `ExpiresInMinutes` of the protection (1..=2880, ECS's range): how long a task that dies
    /// protected stays protected. A busy task renews it every `scale_in_protection_renew_secs`.
    pub scale_in_protection_minutes: u32,
    /// Seconds between renewals of the protection while busy; `0` (default): half of
    /// `scale_in_protection_minutes`. Must be shorter than the expiry.
    pub scale_in_protection_renew_secs: u64,
    /// SigV4-sign the body of every edge-map and pack PUT (a SHA-256 of each body). Off
    /// (default): bodies go as `UNSIGNED-PAYLOAD`, protected by TLS and the SDK's checksum;
    /// `scripts/bench-fleet` measures what signing costs.
    pub sign_s3_payloads: bool,
    /// How the frame hot path (each frame's GET, each edge map's or pack's PUT) reaches S3:
    /// `sdk` (default), through the AWS SDK like every other request, or `direct`, one pooled
    /// HTTP client signing with the SDK's SigV4 signer, without the SDK's per-request
    /// orchestration (see `worker/src/direct_s3.rs`; `scripts/bench-fleet` measures both).
    pub s3_client: S3Client,
}

/// See [`WorkerConfig::s3_client`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum S3Client {
    /// The AWS SDK's S3 client.
    #[default]
    Sdk,
    /// [`crate::direct_s3::DirectS3`].
    Direct,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            batches_in_flight: 0,
            frame_concurrency: 0,
            frames_in_flight: 0,
            kernel_threads: 0,
            memory_limit_mib: 0,
            frame_memory_kib: crate::pipeline::DEFAULT_FRAME_MEMORY_KIB,
            stop_timeout_secs: 120,
            drain_timeout_secs: 0,
            scale_in_protection: true,
            scale_in_protection_minutes: 60,
            scale_in_protection_renew_secs: 0,
            sign_s3_payloads: false,
            s3_client: S3Client::Sdk,
        }
    }
}

/// The long-poll wait of the consumer's receives (SQS's longest), which the stop budget lets
/// finish alongside the drain.
pub const RECEIVE_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

impl WorkerConfig {
    /// How the time between SIGTERM and SIGKILL is spent: the receive under way (a 20 s long
    /// poll) finishes alongside the drain, then the process exits.
    pub fn stop_budget(&self) -> Result<framefleet_core::shutdown::StopBudget, String> {
        framefleet_core::shutdown::StopBudget::receive_alongside_drain(
            std::time::Duration::from_secs(self.stop_timeout_secs),
            RECEIVE_WAIT,
            std::time::Duration::from_secs(self.drain_timeout_secs),
        )
    }

    /// The protection's expiry and renewal period these settings ask for.
    pub fn protection_timing(&self) -> crate::protection::ProtectionTiming {
        let mut timing =
            crate::protection::ProtectionTiming::renewed_at_half(self.scale_in_protection_minutes);
        if self.scale_in_protection_renew_secs > 0 {
            timing.renew_every =
                std::time::Duration::from_secs(self.scale_in_protection_renew_secs);
        }
        timing
    }

    /// The pipeline these settings ask for, or `None` for per-batch scheduling
    /// (`frame_concurrency > 0`).
    pub fn pipeline(&self) -> Option<PipelineConfig> {
        if self.frame_concurrency > 0 {
            return None;
        }
        let kernel_threads = match self.kernel_threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let memory = match self.memory_limit_mib {
            0 => pipeline::detected_memory_bytes().unwrap_or(1 << 30),
            mib => mib * 1024 * 1024,
        };
        let max_frames =
            pipeline::memory_bound(memory, self.frame_memory_kib * 1024, kernel_threads);
        Some(PipelineConfig {
            kernel_threads,
            fixed_frames: (self.frames_in_flight > 0).then_some(self.frames_in_flight),
            max_frames,
        })
    }

    /// Batches received and not finished at most: the setting, or 2 for per-batch scheduling,
    /// or no limit beyond the pipeline's.
    pub fn batch_slots(&self) -> usize {
        match (self.batches_in_flight, self.frame_concurrency) {
            (0, 0) => tokio::sync::Semaphore::MAX_PERMITS,
            (0, _) => 2,
            (n, _) => n,
        }
    }
}

impl WorkerSettings {
    /// Checks every rule; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.resources.validate()?;
        self.pricing.validate()?;
        let w = &self.worker;
        if w.batches_in_flight > 64 {
            return Err(ConfigError::rule(
                "worker.batches_in_flight",
                "must be between 0 (automatic) and 64",
            ));
        }
        if w.frame_concurrency > 64 {
            return Err(ConfigError::rule(
                "worker.frame_concurrency",
                "must be between 0 (pipeline) and 64",
            ));
        }
        if w.frames_in_flight > pipeline::MAX_FRAMES_IN_FLIGHT {
            return Err(ConfigError::rule(
                "worker.frames_in_flight",
                "must be between 0 (automatic) and 1024",
            ));
        }
        if w.kernel_threads > 256 {
            return Err(ConfigError::rule(
                "worker.kernel_threads",
                "must be between 0 (the cores available) and 256",
            ));
        }
        if w.memory_limit_mib != 0 && !(64..=1 << 20).contains(&w.memory_limit_mib) {
            return Err(ConfigError::rule(
                "worker.memory_limit_mib",
                "must be 0 (detected) or between 64 and 1048576",
            ));
        }
        if !(16..=1 << 20).contains(&w.frame_memory_kib) {
            return Err(ConfigError::rule(
                "worker.frame_memory_kib",
                "must be between 16 and 1048576",
            ));
        }
        if !(1..=2880).contains(&w.scale_in_protection_minutes) {
            return Err(ConfigError::rule(
                "worker.scale_in_protection_minutes",
                "must be between 1 and 2880 (ECS's ExpiresInMinutes range)",
            ));
        }
        if w.scale_in_protection_renew_secs >= u64::from(w.scale_in_protection_minutes) * 60 {
            return Err(ConfigError::rule(
                "worker.scale_in_protection_renew_secs",
                "must be shorter than scale_in_protection_minutes, or the protection lapses \
                 before it is renewed",
            ));
        }
        self.worker
            .stop_budget()
            .map_err(|e| ConfigError::rule("worker.stop_timeout_secs", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<WorkerSettings, ConfigError> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let settings: WorkerSettings = framefleet_core::config::load(None, Some(env))?;
        settings.validate()?;
        Ok(settings)
    }

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(load(&[]).unwrap().worker, WorkerConfig::default());
        let settings = load(&[("FRAMEFLEET__WORKER__BATCHES_IN_FLIGHT", "6")]).unwrap();
        assert_eq!(settings.worker.batches_in_flight, 6);
        let settings = load(&[("FRAMEFLEET__PRICING__READ_ON", "2027-01-31")]).unwrap();
        assert_eq!(settings.pricing.read_on, "2027-01-31");
        let err = load(&[("FRAMEFLEET__PRICING__S3_GET_PER_1000", "NaN")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("pricing.s3_get_per_1000"), "{err}");
    }

    #[test]
    fn the_pipeline_is_sized_from_the_task_unless_told() {
        let auto = WorkerConfig {
            kernel_threads: 2,
            memory_limit_mib: 2048,
            ..WorkerConfig::default()
        };
        let pipeline = auto.pipeline().unwrap();
        assert_eq!(pipeline.kernel_threads, 2);
        assert_eq!(pipeline.fixed_frames, None);
        assert_eq!(pipeline.max_frames, 512);
        assert_eq!(auto.batch_slots(), tokio::sync::Semaphore::MAX_PERMITS);
        let small = WorkerConfig {
            memory_limit_mib: 256,
            frame_memory_kib: 4096,
            ..auto.clone()
        };
        assert_eq!(small.pipeline().unwrap().max_frames, 32);
        let fixed = WorkerConfig {
            frames_in_flight: 12,
            ..auto.clone()
        };
        assert_eq!(fixed.pipeline().unwrap().fixed_frames, Some(12));
        let per_batch = WorkerConfig {
            frame_concurrency: 4,
            ..auto
        };
        assert_eq!(per_batch.pipeline(), None);
        assert_eq!(per_batch.batch_slots(), 2);
    }

    #[test]
    fn the_stop_budget_comes_from_the_stop_timeout() {
        let budget = load(&[]).unwrap().worker.stop_budget().unwrap();
        assert_eq!(budget.drain, std::time::Duration::from_secs(110));
        assert!(budget.worst_case() <= std::time::Duration::from_secs(120));
        let settings = load(&[("FRAMEFLEET__WORKER__DRAIN_TIMEOUT_SECS", "90")]).unwrap();
        assert_eq!(
            settings.worker.stop_budget().unwrap().drain,
            std::time::Duration::from_secs(90)
        );
        for (key, value) in [
            ("DRAIN_TIMEOUT_SECS", "111"),
            ("STOP_TIMEOUT_SECS", "25"),
            ("STOP_TIMEOUT_SECS", "121"),
        ] {
            let err = load(&[(&format!("FRAMEFLEET__WORKER__{key}"), value)])
                .unwrap_err()
                .to_string();
            assert!(err.contains("worker.stop_timeout_secs"), "{err}");
        }
        for (key, value) in [
            ("SCALE_IN_PROTECTION_MINUTES", "0"),
            ("SCALE_IN_PROTECTION_MINUTES", "2881"),
            ("SCALE_IN_PROTECTION_RENEW_SECS", "3600"),
        ] {
            let err = load(&[(&format!("FRAMEFLEET__WORKER__{key}"), value)])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("worker.{}", key.to_lowercase())),
                "{err}"
            );
        }
        let timing = load(&[]).unwrap().worker.protection_timing();
        assert_eq!(timing.expires_in_minutes, 60);
        assert_eq!(timing.renew_every, std::time::Duration::from_secs(1800));
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = load(&[("FRAMEFLEET__WORKER__BATCHES_IN_FLIGHT", "65")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("worker.batches_in_flight"), "{err}");
        let err = load(&[("FRAMEFLEET__WORKER__BATCHES_IN_FLIGHT", "many")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("batches_in_flight"), "{err}");
        for (key, value) in [
            ("FRAMES_IN_FLIGHT", "5000"),
            ("KERNEL_THREADS", "1000"),
            ("MEMORY_LIMIT_MIB", "8"),
            ("FRAME_MEMORY_KIB", "0"),
            ("FRAME_CONCURRENCY", "65"),
        ] {
            let err = load(&[(&format!("FRAMEFLEET__WORKER__{key}"), value)])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("worker.{}", key.to_lowercase())),
                "{err}"
            );
        }
        let err = load(&[("FRAMEFLEET__KERNEL__SIGMA", "1")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("kernel"), "{err}");
    }
}
