//! The OpenTelemetry SDK providers behind [`super::init`]: a tracer provider whenever the SDK is
//! on (so trace ids exist and travel even when nothing is exported), an OTLP batch exporter
//! only for a signal that has an endpoint, and a meter provider only when metrics go somewhere.
//!
//! Export never holds up the work: spans go through the SDK's batch processor, whose queue is
//! bounded (`OTEL_BSP_MAX_QUEUE_SIZE`, 2,048 by default) and drops spans when full rather than
//! block the caller; metrics are aggregated in memory and read by a periodic reader on its own
//! thread. An unreachable collector only costs failed exports on those background threads.

use opentelemetry::KeyValue;
use opentelemetry_otlp::{MetricExporter, SpanExporter, WithExportConfig};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

use super::otel_env::{Destination, OtelEnv, Protocol};

/// An exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("OTLP {signal} exporter for {endpoint}: {source}")]
pub struct ExportError {
    /// `traces` or `metrics`.
    pub signal: &'static str,
    /// Where it was to send.
    pub endpoint: String,
    /// The exporter crate's error.
    #[source]
    pub source: opentelemetry_otlp::ExporterBuildError,
}

/// The providers one process runs.
pub(crate) struct Providers {
    pub(crate) tracer: SdkTracerProvider,
    pub(crate) meter: Option<SdkMeterProvider>,
}

/// `service.name`, the `OTEL_RESOURCE_ATTRIBUTES`, and a `service.instance.id` unless given:
/// the counters of two workers must not be taken for one series.
pub(crate) fn resource(env: &OtelEnv) -> Resource {
    let mut attributes: Vec<KeyValue> = env
        .resource_attributes
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    if !env
        .resource_attributes
        .iter()
        .any(|(k, _)| k == "service.instance.id")
    {
        attributes.push(KeyValue::new(
            "service.instance.id",
            uuid::Uuid::new_v4().to_string(),
        ));
    }
    Resource::builder_empty()
        .with_service_name(env.service_name.clone())
        .with_attributes(attributes)
        .build()
}

fn span_exporter(destination: &Destination) -> Result<SpanExporter, ExportError> {
    let built = match destination.protocol {
        Protocol::Grpc => SpanExporter::builder()
            .with_tonic()
            .with_endpoint(&destination.endpoint)
            .build(),
        Protocol::HttpProtobuf => SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(&destination.endpoint)
            .build(),
    };
    built.map_err(|source| ExportError {
        signal: "traces",
        endpoint: destination.endpoint.clone(),
        source,
    })
}

fn metric_exporter(destination: &Destination) -> Result<MetricExporter, ExportError> {
    let built = match destination.protocol {
        Protocol::Grpc => MetricExporter::builder()
            .with_tonic()
            .with_endpoint(&destination.endpoint)
            .build(),
        Protocol::HttpProtobuf => MetricExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(&destination.endpoint)
            .build(),
    };
    built.map_err(|source| ExportError {
        signal: "metrics",
        endpoint: destination.endpoint.clone(),
        source,
    })
}

/// Builds the providers `env` asks for. gRPC needs a Tokio runtime (tonic's channel lives on
/// it): every service calls this from inside its runtime.
pub(crate) fn build(env: &OtelEnv) -> Result<Providers, ExportError> {
    let resource = resource(env);
    let mut tracer = SdkTracerProvider::builder().with_resource(resource.clone());
    if let Some(destination) = &env.traces {
        tracer = tracer.with_batch_exporter(span_exporter(destination)?);
    }
    let meter = match &env.metrics {
        Some(destination) => {
            let reader = PeriodicReader::builder(metric_exporter(destination)?)
                .with_interval(env.metric_export_interval)
                .build();
            Some(
                SdkMeterProvider::builder()
                    .with_resource(resource)
                    .with_reader(reader)
                    .build(),
            )
        }
        None => None,
    };
    Ok(Providers {
        tracer: tracer.build(),
        meter,
    })
}
