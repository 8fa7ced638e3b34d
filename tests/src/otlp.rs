//! An OTLP receiver of the test suite's own, standing in for an OpenTelemetry Collector: it
//! takes OTLP/HTTP (protobuf bodies on `POST /v1/traces` and `/v1/metrics`) on one port and
//! OTLP/gRPC (`TraceService/Export`, `MetricsService/Export`) on another, decodes the protobuf
//! with the `opentelemetry-proto` types, and keeps every span and counter data point for the
//! test to check. Protocol: "OTLP Specification 1.x",
//! <https://opentelemetry.io/docs/specs/otlp/#otlphttp-request> and `#otlpgrpc`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use prost::Message;
use tokio_util::sync::CancellationToken;

/// One received span.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// `service.name` of the exporting resource.
    pub service: String,
    /// Span name.
    pub name: String,
    /// Trace id, 32 hex digits.
    pub trace_id: String,
    /// Span id, 16 hex digits.
    pub span_id: String,
    /// Parent span id, 16 hex digits, empty for a root.
    pub parent_span_id: String,
    /// Attributes, values as text.
    pub attributes: HashMap<String, String>,
    /// True when the span's status is ERROR.
    pub error: bool,
    /// `http/protobuf` or `grpc`: how it arrived.
    pub protocol: &'static str,
}

/// One data point of a sum (counter or up-down counter).
#[derive(Debug, Clone, PartialEq)]
pub struct SumPoint {
    /// `service.name` of the exporting resource.
    pub service: String,
    /// `service.instance.id` of the exporting resource: one series per process.
    pub instance: String,
    /// Metric name.
    pub metric: String,
    /// Data point attributes, as `k=v` sorted and joined: a series key.
    pub attributes: String,
    /// When the point was taken (ns since the epoch).
    pub time_unix_nano: u64,
    /// Value (integers as they are, doubles truncated).
    pub value: i64,
    /// True for cumulative temporality.
    pub cumulative: bool,
    /// `http/protobuf` or `grpc`: how it arrived.
    pub protocol: &'static str,
}

/// Everything received so far.
#[derive(Debug, Default, Clone)]
pub struct Received {
    /// Spans.
    pub spans: Vec<ReceivedSpan>,
    /// Sum data points.
    pub sums: Vec<SumPoint>,
    /// Histogram names seen, with their total count of recorded values.
    pub histograms: HashMap<String, u64>,
    /// Requests taken, by protocol.
    pub requests: HashMap<&'static str, u64>,
}

impl Received {
    /// The total of counter `metric` over every exporter: for each series (process and
    /// attributes) its latest cumulative value (or the sum of its deltas), added up.
    pub fn counter_total(&self, metric: &str) -> i64 {
        let mut latest: HashMap<(String, String), (u64, i64)> = HashMap::new();
        let mut deltas = 0;
        for point in self.sums.iter().filter(|p| p.metric == metric) {
            if !point.cumulative {
                deltas += point.value;
                continue;
            }
            let key = (point.instance.clone(), point.attributes.clone());
            let entry = latest.entry(key).or_insert((0, 0));
            if point.time_unix_nano >= entry.0 {
                *entry = (point.time_unix_nano, point.value);
            }
        }
        deltas + latest.values().map(|(_, v)| v).sum::<i64>()
    }

    /// Metric names seen (sums and histograms).
    pub fn metric_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .sums
            .iter()
            .map(|p| p.metric.clone())
            .chain(self.histograms.keys().cloned())
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

type Store = Arc<Mutex<Received>>;

/// A running receiver; stops when dropped.
pub struct OtlpReceiver {
    /// Where OTLP/HTTP is taken (`http://127.0.0.1:port`).
    pub http_endpoint: String,
    /// Where OTLP/gRPC is taken (`http://127.0.0.1:port`).
    pub grpc_endpoint: String,
    store: Store,
    shutdown: CancellationToken,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn text(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attribute(attributes: &[KeyValue], key: &str) -> String {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| text(&kv.value))
        .unwrap_or_default()
}

fn take_traces(store: &Store, request: ExportTraceServiceRequest, protocol: &'static str) {
    let mut received = store.lock().unwrap();
    *received.requests.entry(protocol).or_default() += 1;
    for resource_spans in request.resource_spans {
        let resource = resource_spans.resource.unwrap_or_default();
        let service = attribute(&resource.attributes, "service.name");
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                received.spans.push(ReceivedSpan {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex::encode(&span.trace_id),
                    span_id: hex::encode(&span.span_id),
                    parent_span_id: hex::encode(&span.parent_span_id),
                    attributes: span
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), text(&kv.value)))
                        .collect(),
                    // STATUS_CODE_ERROR = 2.
                    error: span.status.is_some_and(|s| s.code == 2),
                    protocol,
                });
            }
        }
    }
}

fn take_metrics(store: &Store, request: ExportMetricsServiceRequest, protocol: &'static str) {
    let mut received = store.lock().unwrap();
    *received.requests.entry(protocol).or_default() += 1;
    for resource_metrics in request.resource_metrics {
        let resource = resource_metrics.resource.unwrap_or_default();
        let service = attribute(&resource.attributes, "service.name");
        let instance = attribute(&resource.attributes, "service.instance.id");
        for scope in resource_metrics.scope_metrics {
            for m in scope.metrics {
                match m.data {
                    Some(metric::Data::Sum(sum)) => {
                        // AGGREGATION_TEMPORALITY_CUMULATIVE = 2.
                        let cumulative = sum.aggregation_temporality == 2;
                        for point in sum.data_points {
                            let mut attributes: Vec<String> = point
                                .attributes
                                .iter()
                                .map(|kv| format!("{}={}", kv.key, text(&kv.value)))
                                .collect();
                            attributes.sort();
                            let value = match point.value {
                                Some(number_data_point::Value::AsInt(i)) => i,
                                Some(number_data_point::Value::AsDouble(d)) => d as i64,
                                None => 0,
                            };
                            received.sums.push(SumPoint {
                                service: service.clone(),
                                instance: instance.clone(),
                                metric: m.name.clone(),
                                attributes: attributes.join(","),
                                time_unix_nano: point.time_unix_nano,
                                value,
                                cumulative,
                                protocol,
                            });
                        }
                    }
                    Some(metric::Data::Histogram(histogram)) => {
                        let count: u64 = histogram.data_points.iter().map(|p| p.count).sum();
                        let entry = received.histograms.entry(m.name.clone()).or_default();
                        *entry = (*entry).max(count);
                    }
                    _ => {}
                }
            }
        }
    }
}

fn protobuf_response(bytes: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        bytes,
    )
        .into_response()
}

async fn http_traces(State(store): State<Store>, body: Bytes) -> Response {
    match ExportTraceServiceRequest::decode(body) {
        Ok(request) => {
            take_traces(&store, request, "http/protobuf");
            protobuf_response(ExportTraceServiceResponse::default().encode_to_vec())
        }
        Err(error) => (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    }
}

async fn http_metrics(State(store): State<Store>, body: Bytes) -> Response {
    match ExportMetricsServiceRequest::decode(body) {
        Ok(request) => {
            take_metrics(&store, request, "http/protobuf");
            protobuf_response(ExportMetricsServiceResponse::default().encode_to_vec())
        }
        Err(error) => (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    }
}

struct Grpc(Store);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        take_traces(&self.0, request.into_inner(), "grpc");
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        take_metrics(&self.0, request.into_inner(), "grpc");
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

impl OtlpReceiver {
    /// Starts both listeners on free loopback ports.
    pub async fn start() -> anyhow::Result<Self> {
        let store: Store = Arc::default();
        let shutdown = CancellationToken::new();
        let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let http_addr: SocketAddr = http_listener.local_addr()?;
        let app = Router::new()
            .route("/v1/traces", post(http_traces))
            .route("/v1/metrics", post(http_metrics))
            .with_state(Arc::clone(&store));
        let token = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(http_listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
        });
        let grpc_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let grpc_addr: SocketAddr = grpc_listener.local_addr()?;
        let token = shutdown.clone();
        let traces = TraceServiceServer::new(Grpc(Arc::clone(&store)));
        let metrics = MetricsServiceServer::new(Grpc(Arc::clone(&store)));
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(traces)
                .add_service(metrics)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(grpc_listener),
                    token.cancelled_owned(),
                )
                .await;
        });
        Ok(Self {
            http_endpoint: format!("http://{http_addr}"),
            grpc_endpoint: format!("http://{grpc_addr}"),
            store,
            shutdown,
        })
    }

    /// A copy of what was received so far.
    pub fn received(&self) -> Received {
        self.store.lock().unwrap().clone()
    }

    /// The `OTEL_*` environment that points a service at this receiver over `protocol`
    /// (`grpc` or `http/protobuf`), exporting metrics every 500 ms.
    pub fn env(&self, protocol: &str) -> Vec<(String, String)> {
        let endpoint = if protocol == "grpc" {
            &self.grpc_endpoint
        } else {
            &self.http_endpoint
        };
        [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}
