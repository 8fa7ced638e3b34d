//! What the standard `OTEL_*` variables ask for, read once through a lookup function so that a
//! test can hand in-process services their own environment without touching the process's.
//!
//! Variables honoured (OpenTelemetry specification, "Environment Variable Specification",
//! <https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/>, and
//! "OTLP Exporter Configuration",
//! <https://opentelemetry.io/docs/specs/otel/protocol/exporter/>): `OTEL_SDK_DISABLED`,
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_EXPORTER` and
//! `OTEL_METRICS_EXPORTER` (`otlp` or `none`), `OTEL_EXPORTER_OTLP_ENDPOINT` and its per-signal
//! forms, `OTEL_EXPORTER_OTLP_PROTOCOL` and its per-signal forms (`grpc`, `http/protobuf`),
//! `OTEL_METRIC_EXPORT_INTERVAL`. Headers, timeouts and the batch processor's `OTEL_BSP_*`
//! are read by the SDK and exporter crates themselves.

use std::time::Duration;

use percent_encoding::percent_decode_str;

/// The OTLP transport of one signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC (default port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (default port 4318).
    HttpProtobuf,
}

/// Traces or metrics: the two signals this system exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Spans.
    Traces,
    /// Counters and histograms.
    Metrics,
}

impl Signal {
    fn env_name(self) -> &'static str {
        match self {
            Self::Traces => "TRACES",
            Self::Metrics => "METRICS",
        }
    }

    /// The path an OTLP/HTTP receiver takes this signal on, appended to the generic endpoint.
    pub fn http_path(self) -> &'static str {
        match self {
            Self::Traces => "/v1/traces",
            Self::Metrics => "/v1/metrics",
        }
    }
}

/// Where one signal goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The full URL the exporter is given (for HTTP, with the signal's path).
    pub endpoint: String,
    /// How it is sent.
    pub protocol: Protocol,
}

/// A variable that cannot be honoured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}={value:?}: {reason}")]
pub struct OtelEnvError {
    /// The variable.
    pub variable: String,
    /// Its value.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// The telemetry the environment asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtelEnv {
    /// `OTEL_SDK_DISABLED=true`: no tracer or meter provider at all (no trace ids either).
    pub disabled: bool,
    /// `service.name` (`OTEL_SERVICE_NAME`, else `service.name` in the resource attributes,
    /// else the binary's own name).
    pub service_name: String,
    /// The other resource attributes, in order.
    pub resource_attributes: Vec<(String, String)>,
    /// Where spans go; `None` exports none.
    pub traces: Option<Destination>,
    /// Where metrics go; `None` exports none.
    pub metrics: Option<Destination>,
    /// How often metrics are exported (`OTEL_METRIC_EXPORT_INTERVAL`, ms; default 60 s).
    pub metric_export_interval: Duration,
}

fn nonempty(lookup: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    lookup(name)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

impl OtelEnv {
    /// Reads the variables through `lookup` (`|name| std::env::var(name).ok()` for the process).
    pub fn read(
        default_service: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, OtelEnvError> {
        let disabled =
            nonempty(lookup, "OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let mut resource_attributes = match nonempty(lookup, "OTEL_RESOURCE_ATTRIBUTES") {
            Some(text) => parse_resource_attributes(&text)?,
            None => Vec::new(),
        };
        let from_attributes = resource_attributes
            .iter()
            .position(|(k, _)| k == "service.name")
            .map(|i| resource_attributes.remove(i).1);
        let service_name = nonempty(lookup, "OTEL_SERVICE_NAME")
            .or(from_attributes)
            .unwrap_or_else(|| default_service.to_string());
        let metric_export_interval = match nonempty(lookup, "OTEL_METRIC_EXPORT_INTERVAL") {
            Some(text) => match text.parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => {
                    return Err(OtelEnvError {
                        variable: "OTEL_METRIC_EXPORT_INTERVAL".into(),
                        value: text,
                        reason: "expected a positive number of milliseconds",
                    })
                }
            },
            None => Duration::from_secs(60),
        };
        Ok(Self {
            disabled,
            service_name,
            resource_attributes,
            traces: destination(Signal::Traces, lookup)?,
            metrics: destination(Signal::Metrics, lookup)?,
            metric_export_interval,
        })
    }
}

/// Where `signal` goes: nowhere without an endpoint (generic or the signal's own) or with the
/// signal's exporter set to `none`.
fn destination(
    signal: Signal,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Destination>, OtelEnvError> {
    let exporter_var = format!("OTEL_{}_EXPORTER", signal.env_name());
    match nonempty(lookup, &exporter_var).as_deref() {
        None | Some("otlp") => {}
        Some("none") => return Ok(None),
        Some(other) => {
            return Err(OtelEnvError {
                variable: exporter_var,
                value: other.to_string(),
                reason: "this build exports `otlp` or `none`",
            })
        }
    }
    let protocol_var = format!("OTEL_EXPORTER_OTLP_{}_PROTOCOL", signal.env_name());
    let (protocol_var, protocol_text) = match nonempty(lookup, &protocol_var) {
        Some(text) => (protocol_var, Some(text)),
        None => (
            "OTEL_EXPORTER_OTLP_PROTOCOL".to_string(),
            nonempty(lookup, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ),
    };
    let protocol = match protocol_text.as_deref() {
        // The specification's default is http/protobuf.
        None | Some("http/protobuf") => Protocol::HttpProtobuf,
        Some("grpc") => Protocol::Grpc,
        Some(other) => {
            return Err(OtelEnvError {
                variable: protocol_var,
                value: other.to_string(),
                reason: "this build speaks `grpc` or `http/protobuf`",
            })
        }
    };
    let signal_var = format!("OTEL_EXPORTER_OTLP_{}_ENDPOINT", signal.env_name());
    let endpoint = if let Some(url) = nonempty(lookup, &signal_var) {
        // A signal's own endpoint is used as given.
        check_url(&signal_var, &url)?;
        url
    } else if let Some(base) = nonempty(lookup, "OTEL_EXPORTER_OTLP_ENDPOINT") {
        check_url("OTEL_EXPORTER_OTLP_ENDPOINT", &base)?;
        match protocol {
            Protocol::Grpc => base,
            // "…the signal's path is appended to the base URL" for OTLP/HTTP.
            Protocol::HttpProtobuf => {
                format!("{}{}", base.trim_end_matches('/'), signal.http_path())
            }
        }
    } else {
        return Ok(None);
    };
    Ok(Some(Destination { endpoint, protocol }))
}

fn check_url(variable: &str, url: &str) -> Result<(), OtelEnvError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(OtelEnvError {
            variable: variable.to_string(),
            value: url.to_string(),
            reason: "expected an http:// or https:// URL",
        })
    }
}

/// `key1=value1,key2=value2`, values percent-encoded (W3C Baggage octets).
fn parse_resource_attributes(text: &str) -> Result<Vec<(String, String)>, OtelEnvError> {
    text.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').ok_or_else(|| OtelEnvError {
                variable: "OTEL_RESOURCE_ATTRIBUTES".into(),
                value: text.to_string(),
                reason: "expected key=value pairs separated by commas",
            })?;
            let value = percent_decode_str(value.trim())
                .decode_utf8_lossy()
                .into_owned();
            Ok((key.trim().to_string(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(pairs: &[(&str, &str)]) -> Result<OtelEnv, OtelEnvError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        OtelEnv::read("worker", &move |name| map.get(name).cloned())
    }

    #[test]
    fn no_endpoint_exports_nothing() {
        let env = read(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap();
        assert_eq!(env.traces, None);
        assert_eq!(env.metrics, None);
        assert_eq!(env.service_name, "worker");
        assert!(!env.disabled);
    }

    #[test]
    fn http_appends_the_signal_path_and_grpc_does_not() {
        let http = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")]).unwrap();
        assert_eq!(
            http.traces.unwrap(),
            Destination {
                endpoint: "http://c:4318/v1/traces".into(),
                protocol: Protocol::HttpProtobuf
            }
        );
        assert_eq!(http.metrics.unwrap().endpoint, "http://c:4318/v1/metrics");
        let grpc = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ])
        .unwrap();
        assert_eq!(grpc.traces.unwrap().endpoint, "http://c:4317");
    }

    #[test]
    fn signal_settings_win_and_none_turns_a_signal_off() {
        let env = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:9/spans"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
            ("OTEL_METRICS_EXPORTER", "none"),
        ])
        .unwrap();
        assert_eq!(
            env.traces.unwrap(),
            Destination {
                endpoint: "http://t:9/spans".into(),
                protocol: Protocol::Grpc
            }
        );
        assert_eq!(env.metrics, None);
    }

    #[test]
    fn a_signal_endpoint_alone_is_enough() {
        let env = read(&[(
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "http://m:4318/v1/metrics",
        )])
        .unwrap();
        assert_eq!(env.traces, None);
        assert_eq!(env.metrics.unwrap().endpoint, "http://m:4318/v1/metrics");
    }

    #[test]
    fn resource_attributes_and_service_name() {
        let env = read(&[
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=from-attrs,deployment.environment=dev%20one",
            ),
            ("OTEL_SDK_DISABLED", "TRUE"),
        ])
        .unwrap();
        assert_eq!(env.service_name, "from-attrs");
        assert_eq!(
            env.resource_attributes,
            [("deployment.environment".to_string(), "dev one".to_string())]
        );
        assert!(env.disabled);
        let named = read(&[
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=a"),
            ("OTEL_SERVICE_NAME", "b"),
        ])
        .unwrap();
        assert_eq!(named.service_name, "b");
    }

    #[test]
    fn bad_values_name_the_variable() {
        let error = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ])
        .unwrap_err();
        assert_eq!(error.variable, "OTEL_EXPORTER_OTLP_PROTOCOL");
        assert_eq!(
            read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "c:4317")])
                .unwrap_err()
                .variable,
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        );
        assert_eq!(
            read(&[("OTEL_TRACES_EXPORTER", "jaeger")])
                .unwrap_err()
                .variable,
            "OTEL_TRACES_EXPORTER"
        );
        assert!(read(&[("OTEL_RESOURCE_ATTRIBUTES", "novalue")]).is_err());
        assert!(read(&[("OTEL_METRIC_EXPORT_INTERVAL", "0")]).is_err());
    }
}
