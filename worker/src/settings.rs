//! The worker's settings. Kernel parameters travel in each batch (the dispatcher sets them per
//! job), so the worker only knows its resources and how much to do at once.

use framefleet_core::config::{ConfigError, Resources, TelemetrySettings};
use framefleet_core::pricing::PriceTable;
use serde::{Deserialize, Serialize};

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

/// Consumer tuning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Batches processed at once. Frames inside a batch also run in parallel, so one or two
    /// per vCPU keeps the cores busy while downloads and uploads wait on the network.
    pub batches_in_flight: usize,
    /// Frames of one batch downloaded, processed and uploaded at once.
    pub frame_concurrency: usize,
    /// Seconds to finish in-flight batches after SIGTERM before giving up on them (they are
    /// redelivered); keep it below the container's stop timeout.
    pub drain_timeout_secs: u64,
    /// Ask ECS for task scale-in protection while batches are in flight (no-op off ECS).
    pub scale_in_protection: bool,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            batches_in_flight: 2,
            frame_concurrency: 4,
            drain_timeout_secs: 90,
            scale_in_protection: true,
        }
    }
}

impl WorkerSettings {
    /// Checks every rule; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.resources.validate()?;
        self.pricing.validate()?;
        if !(1..=64).contains(&self.worker.batches_in_flight) {
            return Err(ConfigError::rule(
                "worker.batches_in_flight",
                "must be between 1 and 64",
            ));
        }
        if !(1..=64).contains(&self.worker.frame_concurrency) {
            return Err(ConfigError::rule(
                "worker.frame_concurrency",
                "must be between 1 and 64",
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
    fn bad_values_name_their_key() {
        let err = load(&[("FRAMEFLEET__WORKER__BATCHES_IN_FLIGHT", "0")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("worker.batches_in_flight"), "{err}");
        let err = load(&[("FRAMEFLEET__WORKER__BATCHES_IN_FLIGHT", "many")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("batches_in_flight"), "{err}");
        let err = load(&[("FRAMEFLEET__KERNEL__SIGMA", "1")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("kernel"), "{err}");
    }
}
