//! One place that sets up telemetry for every binary: an env filter from `RUST_LOG` (default
//! `info`) for JSON or pretty log lines on stderr, and OpenTelemetry configured only by the
//! standard `OTEL_*` variables ([`otel_env`]).
//!
//! - [`otel_env`]: what the `OTEL_*` variables ask for.
//! - `export`: the tracer and meter providers and their OTLP exporters (gRPC or
//!   http/protobuf), installed as the process's global providers.
//! - [`propagation`]: the W3C traceparent that carries a video's trace across processes.
//!
//! Spans reach OpenTelemetry through `tracing-opentelemetry`, at `info` and above whatever
//! `RUST_LOG` says for the log lines; metrics go through the OpenTelemetry metrics API
//! (`opentelemetry::global::meter`). With no OTLP endpoint set, no exporter is installed: trace
//! ids still exist (and travel with the job) but nothing leaves the process.

pub mod export;
pub mod otel_env;
pub mod propagation;

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

use crate::config::{LogFormat, TelemetrySettings};
use otel_env::OtelEnv;

/// How long dropping the guard may take to flush: a dead or hanging collector must not hold up
/// a container's stop (ECS waits `stopTimeout`, then kills).
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Flushes and shuts the exporters down when dropped, within [`FLUSH_TIMEOUT`].
#[must_use = "dropping the guard ends telemetry"]
pub struct TelemetryGuard {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let tracer = self.tracer.take();
        let meter = self.meter.take();
        if tracer.is_none() && meter.is_none() {
            return;
        }
        // Shut down on a thread of its own and wait a bounded time: the SDK's shutdown blocks
        // on the exporters, and an unreachable collector must cost at most the timeout.
        let (done, wait) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("otel-shutdown".into())
            .spawn(move || {
                if let Some(meter) = meter {
                    let _ = meter.shutdown();
                }
                if let Some(tracer) = tracer {
                    let _ = tracer.shutdown_with_timeout(FLUSH_TIMEOUT);
                }
                let _ = done.send(());
            });
        if spawned.is_ok() && wait.recv_timeout(FLUSH_TIMEOUT).is_err() {
            eprintln!(
                "telemetry: exporters did not flush within {FLUSH_TIMEOUT:?}; going on without"
            );
        }
    }
}

/// Installs the global subscriber and, from the process environment, the OpenTelemetry
/// providers. Calling it twice (as tests do) is harmless: the first call wins.
pub fn init(service: &'static str, settings: &TelemetrySettings) -> TelemetryGuard {
    init_with_env(service, settings, &|name| std::env::var(name).ok())
}

/// [`init`] with the `OTEL_*` variables read through `lookup` instead of the process
/// environment: the test stack gives in-process services a collector this way.
pub fn init_with_env(
    service: &'static str,
    settings: &TelemetrySettings,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> TelemetryGuard {
    let (providers, problem) = match OtelEnv::read(service, lookup) {
        Ok(env) if env.disabled => (None, None),
        Ok(env) => match export::build(&env) {
            Ok(providers) => (Some(providers), None),
            Err(error) => (None, Some(error.to_string())),
        },
        Err(error) => (None, Some(error.to_string())),
    };
    let otel_layer = providers.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer.tracer(service))
            .with_error_records_to_exceptions(true)
            // Spans for traces are ours and the SDK's at `info`, whatever RUST_LOG says for
            // logs; the exporters' own HTTP/2 stack never traces itself.
            .with_filter(
                Targets::new()
                    .with_default(LevelFilter::INFO)
                    .with_target("h2", LevelFilter::OFF)
                    .with_target("hyper", LevelFilter::OFF)
                    .with_target("tonic", LevelFilter::OFF)
                    .with_target("tower", LevelFilter::OFF)
                    .with_target("reqwest", LevelFilter::OFF)
                    .with_target("opentelemetry", LevelFilter::OFF),
            )
    });
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let log_layer = match settings.log_format {
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
        LogFormat::Pretty => fmt::layer()
            .compact()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    let installed = tracing_subscriber::registry()
        .with(log_layer)
        .with(otel_layer)
        .try_init()
        .is_ok();
    if let Some(problem) = problem {
        tracing::error!(
            service,
            problem,
            "OpenTelemetry is off: fix the OTEL_* variable"
        );
    }
    let Some(providers) = providers else {
        return TelemetryGuard {
            tracer: None,
            meter: None,
        };
    };
    if !installed {
        // Another init won (a second call in one test process): its providers stand.
        return TelemetryGuard {
            tracer: None,
            meter: None,
        };
    }
    opentelemetry::global::set_tracer_provider(providers.tracer.clone());
    if let Some(meter) = &providers.meter {
        opentelemetry::global::set_meter_provider(meter.clone());
    }
    tracing::debug!(service, "telemetry initialised");
    TelemetryGuard {
        tracer: Some(providers.tracer),
        meter: providers.meter,
    }
}
