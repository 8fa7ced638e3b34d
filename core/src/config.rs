//! Layered configuration: built-in defaults, then an optional TOML file, then environment
//! variables named `FRAMEFLEET__SECTION__KEY`. Every settings struct denies unknown fields so a
//! misspelt variable stops start-up instead of being ignored.

use std::collections::HashMap;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Exit code for a configuration error (`EX_CONFIG` would be 78; 64 is `EX_USAGE`, which is what
/// the house style asks for).
pub const EXIT_CONFIG: u8 = 64;

/// Why the settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A source could not be read or a value did not fit its field; the message names the key.
    #[error("configuration: {0}")]
    Invalid(#[from] config::ConfigError),
    /// The values parsed but break a rule the service checks at start-up.
    #[error("configuration: `{key}`: {message}")]
    Rule {
        /// The dotted key, e.g. `dispatcher.capture_rate`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

impl ConfigError {
    /// A rule violation for `key`.
    pub fn rule(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Rule {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Accepts a list as a sequence (TOML) or as one comma-separated string (environment), so
/// `FRAMEFLEET__DISPATCHER__VIDEO_SUFFIXES=mp4,mov` works without turning every all-digit value
/// into a number (which would eat an account id's leading zeros).
pub fn comma_list<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum List {
        One(String),
        Many(Vec<String>),
    }
    Ok(match List::deserialize(deserializer)? {
        List::One(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        List::Many(items) => items,
    })
}

/// Loads `T` from its defaults, `file` if given, and the environment.
///
/// `env` replaces the process environment when given, so tests (and the compose drift test) can
/// feed a map without `std::env::set_var`.
pub fn load<T: DeserializeOwned>(
    file: Option<&Path>,
    env: Option<HashMap<String, String>>,
) -> Result<T, ConfigError> {
    let mut builder = config::Config::builder();
    if let Some(file) = file {
        builder = builder.add_source(config::File::from(file).required(true));
    }
    let environment = config::Environment::with_prefix("FRAMEFLEET")
        .prefix_separator("__")
        .separator("__")
        .source(env);
    let settings = builder.add_source(environment).build()?;
    Ok(settings.try_deserialize()?)
}

/// Names of the AWS resources every service shares. Queues may be given by name or URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Resources {
    /// Bucket users upload videos to; its `ObjectCreated` events feed `ingress_queue`.
    pub ingress_bucket: String,
    /// Bucket MediaConvert writes captured frames to, under `<video id>/`.
    pub frames_bucket: String,
    /// Bucket the workers write edge maps and the manifest to, under `<video id>/`.
    pub processed_bucket: String,
    /// Queue of S3 notifications for the ingress bucket (name or URL).
    pub ingress_queue: String,
    /// Queue of MediaConvert job state change events (name or URL).
    pub job_events_queue: String,
    /// Queue of frame batches for the workers (name or URL).
    pub frames_queue: String,
    /// DynamoDB table holding job records and batch markers.
    pub jobs_table: String,
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            ingress_bucket: "framefleet-ingress".into(),
            frames_bucket: "framefleet-frames".into(),
            processed_bucket: "framefleet-processed".into(),
            ingress_queue: "framefleet-ingress".into(),
            job_events_queue: "framefleet-job-events".into(),
            frames_queue: "framefleet-frames".into(),
            jobs_table: "framefleet-jobs".into(),
        }
    }
}

impl Resources {
    /// Checks that no name is empty.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let named = [
            ("resources.ingress_bucket", &self.ingress_bucket),
            ("resources.frames_bucket", &self.frames_bucket),
            ("resources.processed_bucket", &self.processed_bucket),
            ("resources.ingress_queue", &self.ingress_queue),
            ("resources.job_events_queue", &self.job_events_queue),
            ("resources.frames_queue", &self.frames_queue),
            ("resources.jobs_table", &self.jobs_table),
        ];
        for (key, value) in named {
            if value.trim().is_empty() {
                return Err(ConfigError::rule(key, "must not be empty"));
            }
        }
        Ok(())
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line, for machines (the default).
    #[default]
    Json,
    /// Human-readable lines, for a terminal.
    Pretty,
}

/// Telemetry settings shared by every service. The level comes from `RUST_LOG`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// `json` (default) or `pretty`.
    pub log_format: LogFormat,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Default)]
    #[serde(default, deny_unknown_fields)]
    struct Sample {
        resources: Resources,
        telemetry: TelemetrySettings,
    }

    fn env(pairs: &[(&str, &str)]) -> Option<HashMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn defaults_apply_without_sources() {
        let sample: Sample = load(None, env(&[])).unwrap();
        assert_eq!(sample.resources, Resources::default());
        assert_eq!(sample.telemetry.log_format, LogFormat::Json);
    }

    #[test]
    fn environment_overrides_nested_keys() {
        let sample: Sample = load(
            None,
            env(&[
                ("FRAMEFLEET__RESOURCES__FRAMES_BUCKET", "custom-frames"),
                ("FRAMEFLEET__TELEMETRY__LOG_FORMAT", "pretty"),
            ]),
        )
        .unwrap();
        assert_eq!(sample.resources.frames_bucket, "custom-frames");
        assert_eq!(sample.telemetry.log_format, LogFormat::Pretty);
    }

    #[derive(Debug, Deserialize, Default)]
    #[serde(default, deny_unknown_fields)]
    struct Typed {
        numbers: Numbers,
    }

    #[derive(Debug, Deserialize, Default)]
    #[serde(default, deny_unknown_fields)]
    struct Numbers {
        account: String,
        count: u32,
        enabled: bool,
        ratio: Option<f32>,
    }

    #[test]
    fn strings_keep_leading_zeros_and_numbers_still_parse() {
        let typed: Typed = load(
            None,
            env(&[
                ("FRAMEFLEET__NUMBERS__ACCOUNT", "000000000042"),
                ("FRAMEFLEET__NUMBERS__COUNT", "7"),
                ("FRAMEFLEET__NUMBERS__ENABLED", "true"),
                ("FRAMEFLEET__NUMBERS__RATIO", "1.5"),
            ]),
        )
        .unwrap();
        assert_eq!(typed.numbers.account, "000000000042");
        assert_eq!(typed.numbers.count, 7);
        assert!(typed.numbers.enabled);
        assert_eq!(typed.numbers.ratio, Some(1.5));
    }

    #[test]
    fn unknown_key_is_rejected_by_name() {
        let err = load::<Sample>(None, env(&[("FRAMEFLEET__RESOURCES__FRAME_BUCKET", "x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("frame_bucket"), "{err}");
    }

    #[test]
    fn empty_name_fails_validation() {
        let resources = Resources {
            jobs_table: " ".into(),
            ..Resources::default()
        };
        let err = resources.validate().unwrap_err().to_string();
        assert!(err.contains("resources.jobs_table"), "{err}");
    }
}
