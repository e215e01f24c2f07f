//! W3C trace context across the suite: a server's RPC span continues the
//! caller's trace (`traceparent`), and a call the gateway forwards carries the
//! gateway's span as its parent, so one trace runs from the client through the
//! gateway to the role. Without an OpenTelemetry layer (OTLP not configured)
//! spans have no context and headers pass through untouched.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (http::HeaderName::try_from(key), http::HeaderValue::try_from(value)) {
            self.0.insert(name, value);
        }
    }
}

/// Makes `span` continue the trace named in `headers`, if any.
pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    // Fails only when no OpenTelemetry layer records spans: then there is no trace to continue.
    let _ = span.set_parent(parent);
}

/// Writes the current span's context into `headers` (`traceparent`, `tracestate`)
/// when it has one, so the next hop's span becomes its child.
pub fn propagate_current(headers: &mut http::HeaderMap) {
    let context = tracing::Span::current().context();
    if opentelemetry::trace::TraceContextExt::span(&context).span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
    }
}
