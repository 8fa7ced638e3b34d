//! One trace per video, across processes: the W3C `traceparent` of the span that registered the
//! job is stored with the job, rides in MediaConvert's `UserMetadata` and as an SQS message
//! attribute on every frame batch, and each service makes its own spans children of it.
//!
//! Format: W3C Trace Context, `00-<trace id>-<parent span id>-<flags>`
//! (<https://www.w3.org/TR/trace-context/#traceparent-header>). Without a tracer provider
//! (`OTEL_SDK_DISABLED=true`) there is no traceparent and everything here does nothing.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The key of the traceparent: in the job record, MediaConvert `UserMetadata`, and as the SQS
/// message attribute name.
pub const TRACEPARENT: &str = "traceparent";

/// The traceparent naming `span` as parent, if `span` is traced.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// The trace id of `span` (32 hex digits), if it is traced: for logs beside `video_id`.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// The remote parent a traceparent names; `None` for a malformed one.
pub fn parent_context(traceparent: &str) -> Option<Context> {
    let carrier = HashMap::from([(TRACEPARENT.to_string(), traceparent.to_string())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    context.span().span_context().is_valid().then_some(context)
}

/// Makes `span` (not yet entered) the child of `traceparent`, or, without a usable one, the
/// root of a trace of its own: a job from before tracing, or a message without the attribute,
/// is still processed, in a trace that starts here. Then records `trace_id` on the span, if it
/// has that field, so JSON logs carry it beside `video_id`.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    let parent = traceparent.and_then(parent_context).unwrap_or_default();
    // Fails only when the span is disabled or the layer is absent: nothing to trace then.
    let _ = span.set_parent(parent);
    record_trace_id(span);
}

/// Makes `span` (not yet entered) the root of a new trace, whatever span is current: one video,
/// one trace, even when one ingress message names several uploads.
pub fn start_trace(span: &tracing::Span) {
    continue_trace(span, None);
}

/// Marks `span` failed with `error`'s message when `result` is an error, and hands `result`
/// back: a step's error shows on its span, not only in the logs.
pub fn record_error<T, E: std::fmt::Display>(
    span: &tracing::Span,
    result: Result<T, E>,
) -> Result<T, E> {
    if let Err(error) = &result {
        span.set_status(opentelemetry::trace::Status::error(error.to_string()));
    }
    result
}

fn record_trace_id(span: &tracing::Span) {
    if let Some(id) = trace_id(span) {
        span.record("trace_id", id.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_traceparents_are_no_parent() {
        assert!(parent_context("").is_none());
        assert!(parent_context("not-a-traceparent").is_none());
        // All-zero trace id is invalid by the specification.
        assert!(
            parent_context("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none()
        );
        let context =
            parent_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(
            context.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }
}
