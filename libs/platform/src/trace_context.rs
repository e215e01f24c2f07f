//! W3C trace context across the suite: a server's RPC span continues the
//! caller's trace (`traceparent`), and a call the gateway forwards is a
//! client span of the gateway's whose context it carries, so one trace runs
//! from the client through the gateway (server, then client span) to the
//! role (server span, then its database spans). Without an OpenTelemetry layer (OTLP not configured)
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

/// A call's service and method by OpenTelemetry's RPC conventions
/// (`crm.contacts.v1.ContactsService`, `CreateContact`); a path that names
/// no method of the suite is a caller's text and never becomes a name
/// ([`crate::metrics::UNKNOWN_METHOD`] for both).
pub fn rpc_names(path: &str) -> (&str, &str) {
    match path.strip_prefix('/').and_then(|rest| rest.split_once('/')) {
        Some(names) if crate::metrics::is_known_path(path) => names,
        _ => (crate::metrics::UNKNOWN_METHOD, crate::metrics::UNKNOWN_METHOD),
    }
}

/// A span for a call this process makes to another role (kind client), to
/// wrap the call in; [`propagate`] it into the call's headers.
pub fn client_span(path: &str) -> tracing::Span {
    let (service, method) = rpc_names(path);
    tracing::info_span!(
        "rpc.client",
        otel.name = %format!("{service}/{method}"),
        otel.kind = "client",
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
    )
}

/// A span for an HTTP request this process sends (Alertmanager, a webhook,
/// Prometheus), kind client, by OpenTelemetry's HTTP conventions: named by
/// its method, with the server's host and port but never the URL's path or
/// query (a webhook's path may hold a token); record
/// `http.response.status_code` on it when the answer comes.
pub fn http_client_span(method: &str, url: &str) -> tracing::Span {
    let parsed = url.parse::<http::Uri>().ok();
    let host = parsed.as_ref().and_then(|uri| uri.host()).unwrap_or("").to_string();
    let port = parsed.as_ref().and_then(|uri| uri.port_u16()).map(i64::from);
    tracing::info_span!(
        "http.client",
        otel.name = %method,
        otel.kind = "client",
        http.request.method = %method,
        server.address = %host,
        server.port = port,
        http.response.status_code = tracing::field::Empty,
    )
}

/// Makes `span` continue the trace named in `headers`, if any.
pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    // Fails only when no OpenTelemetry layer records spans: then there is no trace to continue.
    let _ = span.set_parent(parent);
}

/// Writes `span`'s context into `headers` (`traceparent`, `tracestate`)
/// when it has one, so the next hop's span becomes its child.
pub fn propagate(span: &tracing::Span, headers: &mut http::HeaderMap) {
    let context = span.context();
    if opentelemetry::trace::TraceContextExt::span(&context).span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
    }
}
