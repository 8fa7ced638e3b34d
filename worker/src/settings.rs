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
    /// Seconds to finish in-flight batches after SIGTERM before giving up on them (they are
    /// redelivered); keep it below the container's stop timeout.
    pub drain_timeout_secs: u64,
    /// Ask ECS for task scale-in protection while batches are in flight (no-op off ECS).
    pub scale_in_protection: bool,
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
            drain_timeout_secs: 90,
            scale_in_protection: true,
            sign_s3_payloads: false,
            s3_client: S3Client::Sdk,
        }
    }
}

impl WorkerConfig {
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
        if self.worker.drain_timeout_secs > 3600 {
            return Err(ConfigError::rule(
                "worker.drain_timeout_secs",
                "must be at most 3600",
            ));
        }
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
