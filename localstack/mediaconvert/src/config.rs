//! The stand-in's settings, loaded like every framefleet service's: defaults, then an optional
//! file, then `FRAMEFLEET__STANDIN__…` variables. AWS endpoints are not here: the S3 and SQS
//! clients take them from `AWS_ENDPOINT_URL[_SERVICE]`.

use std::net::SocketAddr;

use framefleet_core::config::{ConfigError, TelemetrySettings};
use serde::{Deserialize, Serialize};

/// Everything the `mediaconvert-standin` binary reads at start-up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StandinSettings {
    /// The stand-in itself.
    pub standin: StandinConfig,
    /// Logging.
    pub telemetry: TelemetrySettings,
}

/// How the stand-in listens, where it sends job events and how much it runs at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StandinConfig {
    /// Address the MediaConvert REST API is served on (`host:port`; port 0 picks a free one).
    /// Clients reach it through `AWS_ENDPOINT_URL_MEDIACONVERT`.
    pub listen: String,
    /// Queue (name or URL) that receives the "MediaConvert Job State Change" events, standing in
    /// for the EventBridge rule that targets the job-events queue on AWS.
    pub events_queue: String,
    /// Account id written into ARNs and events.
    pub account_id: String,
    /// Region written into ARNs and events.
    pub region: String,
    /// Jobs captured at once; later jobs wait in SUBMITTED, as on a MediaConvert queue.
    pub max_concurrent_jobs: usize,
    /// The ffmpeg program that captures frames.
    pub ffmpeg: String,
    /// The ffprobe program that reads the input before capture.
    pub ffprobe: String,
    /// The EventBridge rule's `EventPattern` as JSON text (`framefleet-provision` prints it as
    /// `job_events_pattern`): only events it matches are sent, as the rule forwards only those
    /// on AWS. Unset sends every event.
    pub event_pattern: Option<String>,
    /// Video seconds a job transcodes per wall-clock second, so long clips take longer than
    /// short ones and concurrent jobs finish out of order, as on MediaConvert; 0 runs as fast
    /// as ffmpeg goes. A job completes no sooner than its (clipped) input's duration divided by
    /// this, counted from the end of its start-up delay.
    pub speed: u32,
    /// Milliseconds a job spends PROGRESSING before it reads its input (MediaConvert's job
    /// start-up), so jobs created together overlap.
    pub startup_delay_ms: u64,
    /// Downloaded inputs kept, keyed by (bucket, key, ETag), so the jobs of one video's
    /// segments read it from S3 once; at least 1.
    pub input_cache_entries: usize,
    /// Faults injected into matching jobs, for tests.
    pub faults: Vec<FaultRule>,
}

/// A fault the stand-in injects into the jobs whose `userMetadata` carries `metadata_key` =
/// `metadata_value`: the first `times` of them (0: every one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// The user metadata key a job must carry.
    pub metadata_key: String,
    /// Its value.
    pub metadata_value: String,
    /// What happens to the job.
    pub fault: Fault,
    /// How many matching jobs it hits, from the first; 0 hits every one.
    #[serde(default)]
    pub times: u32,
}

/// What an injected fault does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// The job ends in ERROR with this MediaConvert error code once it is PROGRESSING.
    Error {
        /// `errorCode` of the ERROR event.
        code: i32,
    },
    /// The clip's first frame moves by this many frames (a boundary off by one).
    ShiftStart {
        /// Frames, negative for earlier.
        frames: i64,
    },
    /// The clip's last frame moves by this many frames.
    ShiftEnd {
        /// Frames, negative for earlier.
        frames: i64,
    },
}

impl Default for StandinConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:4590".into(),
            events_queue: "framefleet-job-events".into(),
            account_id: "000000000000".into(),
            region: "us-east-1".into(),
            max_concurrent_jobs: 1,
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
            event_pattern: None,
            speed: 0,
            startup_delay_ms: 0,
            input_cache_entries: 4,
            faults: Vec::new(),
        }
    }
}

impl StandinConfig {
    /// Checks the rules serde cannot: a parseable listen address, names that are not empty, a
    /// 12-digit account id and at least one job slot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.parse::<SocketAddr>().is_err() {
            return Err(ConfigError::rule(
                "standin.listen",
                format!("`{}` is not an `ip:port` address", self.listen),
            ));
        }
        let named = [
            ("standin.events_queue", &self.events_queue),
            ("standin.region", &self.region),
            ("standin.ffmpeg", &self.ffmpeg),
            ("standin.ffprobe", &self.ffprobe),
        ];
        for (key, value) in named {
            if value.trim().is_empty() {
                return Err(ConfigError::rule(key, "must not be empty"));
            }
        }
        if self.account_id.len() != 12 || !self.account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ConfigError::rule(
                "standin.account_id",
                format!("`{}` is not a 12-digit account id", self.account_id),
            ));
        }
        if let Some(pattern) = &self.event_pattern {
            framefleet_core::event_pattern::EventPattern::from_json_text(pattern)
                .map_err(|e| ConfigError::rule("standin.event_pattern", e.to_string()))?;
        }
        if self.input_cache_entries == 0 {
            return Err(ConfigError::rule(
                "standin.input_cache_entries",
                "must be at least 1",
            ));
        }
        if self.max_concurrent_jobs == 0 {
            return Err(ConfigError::rule(
                "standin.max_concurrent_jobs",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// The ARN of the account's default queue, which every job is reported on unless it names
    /// another.
    pub fn default_queue_arn(&self) -> String {
        self.queue_arn("Default")
    }

    /// The ARN of the MediaConvert queue called `name`.
    pub fn queue_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:mediaconvert:{}:{}:queues/{name}",
            self.region, self.account_id
        )
    }

    /// The ARN of job `id`.
    pub fn job_arn(&self, id: &str) -> String {
        format!(
            "arn:aws:mediaconvert:{}:{}:jobs/{id}",
            self.region, self.account_id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(pairs: &[(&str, &str)]) -> Result<StandinSettings, ConfigError> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        framefleet_core::config::load(None, Some(env))
    }

    #[test]
    fn defaults_validate() {
        let settings = load(&[]).unwrap();
        assert_eq!(settings, StandinSettings::default());
        settings.standin.validate().unwrap();
        assert_eq!(settings.standin.listen, "127.0.0.1:4590");
        assert_eq!(settings.standin.max_concurrent_jobs, 1);
    }

    #[test]
    fn environment_overrides_and_unknown_keys_fail() {
        let settings = load(&[
            ("FRAMEFLEET__STANDIN__LISTEN", "0.0.0.0:0"),
            ("FRAMEFLEET__STANDIN__ACCOUNT_ID", "000000000000"),
            ("FRAMEFLEET__STANDIN__MAX_CONCURRENT_JOBS", "2"),
        ])
        .unwrap();
        assert_eq!(settings.standin.listen, "0.0.0.0:0");
        assert_eq!(settings.standin.max_concurrent_jobs, 2);
        let err = load(&[("FRAMEFLEET__STANDIN__LISTEN_ADDR", "x")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen_addr"), "{err}");
    }

    #[test]
    fn rules_name_the_key() {
        let bad = [
            StandinConfig {
                listen: "localhost".into(),
                ..StandinConfig::default()
            },
            StandinConfig {
                account_id: "123".into(),
                ..StandinConfig::default()
            },
            StandinConfig {
                max_concurrent_jobs: 0,
                ..StandinConfig::default()
            },
            StandinConfig {
                events_queue: " ".into(),
                ..StandinConfig::default()
            },
        ];
        let keys = [
            "standin.listen",
            "standin.account_id",
            "standin.max_concurrent_jobs",
            "standin.events_queue",
        ];
        for (config, key) in bad.iter().zip(keys) {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn arns_follow_mediaconvert() {
        let config = StandinConfig::default();
        assert_eq!(
            config.job_arn("1515368087458-qnoxtd"),
            "arn:aws:mediaconvert:us-east-1:000000000000:jobs/1515368087458-qnoxtd"
        );
        assert_eq!(
            config.default_queue_arn(),
            "arn:aws:mediaconvert:us-east-1:000000000000:queues/Default"
        );
    }
}
