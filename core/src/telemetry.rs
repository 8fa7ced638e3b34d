//! One place that sets up logging for every binary: an env filter from `RUST_LOG` (default
//! `info`) and JSON or pretty lines on stderr.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter};

use crate::config::{LogFormat, TelemetrySettings};

/// Flushes telemetry when dropped. Logs go to stderr unbuffered today; the guard keeps the call
/// sites stable for an exporter that buffers.
#[must_use = "dropping the guard ends telemetry"]
pub struct TelemetryGuard(());

/// Installs the global subscriber. Calling it twice (as tests do) is harmless.
pub fn init(service: &'static str, settings: &TelemetrySettings) -> TelemetryGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match settings.log_format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(fmt::layer().compact().with_writer(std::io::stderr))
            .try_init(),
    };
    if result.is_ok() {
        tracing::debug!(service, "telemetry initialised");
    }
    TelemetryGuard(())
}
