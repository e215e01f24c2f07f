//! RED metrics for every RPC, each consumer's lag, and the `/metrics`
//! endpoint that serves them.
//!
//! [`RpcMetricsLayer`] counts each call when it ends: for a unary call when
//! its response is done, for a stream when its last message or its trailers
//! are sent. The gRPC status comes from the headers (errors before any
//! message) or from the trailers; a call the client abandons counts as
//! CANCELLED.
//!
//! Labels name only methods the suite serves; any other path is counted as
//! `unknown` (see [`UNKNOWN_METHOD`]).
//!
//! Exported (Prometheus names): `crm_rpc_requests_total{server,rpc_service,rpc_method,rpc_grpc_status}`,
//! `crm_rpc_errors_total{..}` (status other than OK) and
//! `crm_rpc_duration_seconds{..}` (histogram); the SLOs' figures as their
//! last evaluation found them (see [`SloFigures`]); for each server with a
//! database, `crm_database_ready{server}` (1 while its probes answer, see
//! [`crate::readiness`]), `crm_db_pool_connections{server,state}` (`in_use`,
//! `idle`) and `crm_db_pool_max_connections{server}`: its pool's saturation.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use http_body::{Body, Frame};
use opentelemetry::{
    KeyValue,
    metrics::{Counter, Histogram, MeterProvider},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::{Layer, Service};

use crate::telemetry::Telemetry;

/// The process's instruments, shared by every server and consumer in it.
#[derive(Clone)]
pub struct Metrics {
    requests: Counter<u64>,
    errors: Counter<u64>,
    duration: Histogram<f64>,
    /// Events each consumer applied (`crm_consumer_events_total{consumer}`).
    consumed: Counter<u64>,
    /// From an event's commit to its application by a consumer: the consumer's lag
    /// (`crm_consumer_delay_seconds{consumer}`).
    consumer_delay: Histogram<f64>,
    /// Each SLO's figures at its last evaluation, read when `/metrics` is scraped.
    slos: Arc<std::sync::Mutex<Vec<SloFigures>>>,
    /// Each server's database: its pool and readiness, read when scraped.
    databases: Arc<std::sync::Mutex<Vec<Database>>>,
}

/// A server's database, as the gauges read it.
struct Database {
    server: &'static str,
    pool: sqlx::PgPool,
    readiness: crate::readiness::Readiness,
}

/// Registers the database gauges; each reads `databases` when scraped.
fn database_gauges(meter: &opentelemetry::metrics::Meter, databases: &Arc<std::sync::Mutex<Vec<Database>>>) {
    type Read = fn(&Database) -> Vec<(u64, Vec<KeyValue>)>;
    let gauges: [(&'static str, &'static str, Read); 3] = [
        ("crm.database.ready", "1 while the server's database answers its probes, else 0", |database| {
            vec![(u64::from(database.readiness.is_ready()), vec![])]
        }),
        ("crm.db.pool.connections", "The server's pooled connections, in use and idle", |database| {
            let (size, idle) = (u64::from(database.pool.size()), database.pool.num_idle() as u64);
            vec![
                (size.saturating_sub(idle), vec![KeyValue::new("state", "in_use")]),
                (idle, vec![KeyValue::new("state", "idle")]),
            ]
        }),
        ("crm.db.pool.max_connections", "The most connections the server's pool opens", |database| {
            vec![(u64::from(database.pool.options().get_max_connections()), vec![])]
        }),
    ];
    for (name, description, read) in gauges {
        let databases = databases.clone();
        meter
            .u64_observable_gauge(name)
            .with_description(description)
            .with_callback(move |observer| {
                let databases = databases.lock().unwrap_or_else(|poison| poison.into_inner());
                for database in databases.iter() {
                    for (value, mut labels) in read(database) {
                        labels.push(KeyValue::new("server", database.server));
                        observer.observe(value, &labels);
                    }
                }
            })
            .build();
    }
}

/// One SLO's figures, exported as gauges labelled by the SLO's name:
/// `crm_slo_objective{slo}`, `crm_slo_sli{slo}` (absent without events),
/// `crm_slo_error_budget_remaining{slo}` (1 untouched, below 0 overspent),
/// `crm_slo_burn_rate{slo,window}` (each alert window's rate) and
/// `crm_slo_alert_firing{slo,severity,window}` (1 or 0).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SloFigures {
    pub slo: String,
    pub objective: f64,
    pub sli: Option<f64>,
    pub budget_left: f64,
    /// (window, burn rate), e.g. (`1h`, 14.9).
    pub burn_rates: Vec<(String, f64)>,
    /// (severity, windows, firing), e.g. (`page`, `1h/5m`, true).
    pub alerts: Vec<(String, String, bool)>,
}

/// Registers the SLO gauges; each reads `figures` when scraped.
fn slo_gauges(meter: &opentelemetry::metrics::Meter, figures: &Arc<std::sync::Mutex<Vec<SloFigures>>>) {
    type Read = fn(&SloFigures) -> Vec<(f64, Vec<KeyValue>)>;
    let gauges: [(&'static str, &'static str, Read); 5] = [
        ("crm.slo.objective", "The SLO's objective", |slo| vec![(slo.objective, vec![])]),
        ("crm.slo.sli", "Good / valid events over the SLO's window", |slo| {
            slo.sli.map(|sli| (sli, vec![])).into_iter().collect()
        }),
        ("crm.slo.error_budget_remaining", "The share of the error budget left", |slo| vec![(slo.budget_left, vec![])]),
        ("crm.slo.burn_rate", "How many times faster than allowed the budget is spent, per window", |slo| {
            slo.burn_rates.iter().map(|(window, rate)| (*rate, vec![KeyValue::new("window", window.clone())])).collect()
        }),
        ("crm.slo.alert_firing", "Whether each burn-rate alert fires", |slo| {
            slo.alerts
                .iter()
                .map(|(severity, window, firing)| {
                    let labels =
                        vec![KeyValue::new("severity", severity.clone()), KeyValue::new("window", window.clone())];
                    (if *firing { 1.0 } else { 0.0 }, labels)
                })
                .collect()
        }),
    ];
    for (name, description, read) in gauges {
        let figures = figures.clone();
        meter
            .f64_observable_gauge(name)
            .with_description(description)
            .with_callback(move |observer| {
                let figures = figures.lock().unwrap_or_else(|poison| poison.into_inner());
                for slo in figures.iter() {
                    for (value, mut labels) in read(slo) {
                        labels.push(KeyValue::new("slo", slo.slo.clone()));
                        observer.observe(value, &labels);
                    }
                }
            })
            .build();
    }
}

impl Metrics {
    pub fn new(telemetry: &Telemetry) -> Self {
        let meter = telemetry.meter_provider.meter("crm");
        let slos = Arc::default();
        slo_gauges(&meter, &slos);
        let databases = Arc::default();
        database_gauges(&meter, &databases);
        Metrics {
            slos,
            databases,
            requests: meter.u64_counter("crm.rpc.requests").with_description("RPCs served, by status").build(),
            errors: meter
                .u64_counter("crm.rpc.errors")
                .with_description("RPCs that ended with a status other than OK")
                .build(),
            duration: meter
                .f64_histogram("crm.rpc.duration")
                .with_unit("s")
                .with_description("RPC duration until the last response message")
                .with_boundaries(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ])
                .build(),
            consumed: meter
                .u64_counter("crm.consumer.events")
                .with_description("Events applied by each consumer")
                .build(),
            consumer_delay: meter
                .f64_histogram("crm.consumer.delay")
                .with_unit("s")
                .with_description("From an event's commit to its application by a consumer")
                .with_boundaries(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0])
                .build(),
        }
    }

    /// One event applied by `consumer`, `delay` after it occurred.
    /// Exports `server`'s database readiness and pool saturation from now on.
    pub fn watch_database(&self, server: &'static str, pool: sqlx::PgPool, readiness: crate::readiness::Readiness) {
        let mut databases = self.databases.lock().unwrap_or_else(|poison| poison.into_inner());
        databases.retain(|database| database.server != server);
        databases.push(Database { server, pool, readiness });
    }

    pub fn record_consumed(&self, consumer: &str, delay: std::time::Duration) {
        let attributes = [KeyValue::new("consumer", consumer.to_string())];
        self.consumed.add(1, &attributes);
        self.consumer_delay.record(delay.as_secs_f64(), &attributes);
    }

    /// Replaces every SLO's figures (a deleted SLO's series disappear).
    pub fn set_slos(&self, figures: Vec<SloFigures>) {
        *self.slos.lock().unwrap_or_else(|poison| poison.into_inner()) = figures;
    }

    fn record(&self, call: &CallInfo, status: &str) {
        let attributes = [
            KeyValue::new("server", call.server),
            KeyValue::new("rpc.service", call.service.clone()),
            KeyValue::new("rpc.method", call.method.clone()),
            KeyValue::new("rpc.grpc.status", status.to_string()),
        ];
        self.requests.add(1, &attributes);
        if status != "OK" {
            self.errors.add(1, &attributes);
        }
        self.duration.record(call.started.elapsed().as_secs_f64(), &attributes);
    }
}

/// Records [`Metrics`] around every call of the wrapped service.
#[derive(Clone)]
pub struct RpcMetricsLayer {
    metrics: Metrics,
    /// Which server recorded the call (`gateway`, `contacts`, …): in
    /// `--target all` a proxied call is counted by the gateway and by its role.
    server: &'static str,
}

impl RpcMetricsLayer {
    pub fn new(metrics: Metrics, server: &'static str) -> Self {
        RpcMetricsLayer { metrics, server }
    }
}

impl<S> Layer<S> for RpcMetricsLayer {
    type Service = RpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetricsService { inner, metrics: self.metrics.clone(), server: self.server }
    }
}

#[derive(Clone)]
pub struct RpcMetricsService<S> {
    inner: S,
    metrics: Metrics,
    server: &'static str,
}

struct CallInfo {
    server: &'static str,
    service: String,
    method: String,
    started: Instant,
    /// The call's span, which gets its status when the call ends.
    span: tracing::Span,
}

/// The label values of a path that names no method of the contracts: what a
/// caller sends becomes a label only when it names a real method, so junk
/// paths cannot grow `/metrics` or push real series out.
pub const UNKNOWN_METHOD: &str = "unknown";

/// Whether `path` names a method the suite serves.
pub fn is_known_path(path: &str) -> bool {
    known_paths().contains(path)
}

/// Every method path the suite serves: the contracts', health's and reflection's.
fn known_paths() -> &'static std::collections::HashSet<String> {
    static KNOWN: std::sync::OnceLock<std::collections::HashSet<String>> = std::sync::OnceLock::new();
    KNOWN.get_or_init(|| {
        let contracts = crm_proto::services()
            .into_iter()
            .flat_map(|service| service.methods.iter().map(|method| service.path(method)).collect::<Vec<_>>());
        let standard = [
            "/grpc.health.v1.Health/Check",
            "/grpc.health.v1.Health/Watch",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ];
        contracts.chain(standard.iter().map(|path| path.to_string())).collect()
    })
}

impl CallInfo {
    /// `/pkg.Service/Method` → (`pkg.Service`, `Method`) for a method the
    /// suite serves, else ([`UNKNOWN_METHOD`], [`UNKNOWN_METHOD`]).
    fn new(server: &'static str, path: &str) -> CallInfo {
        let (service, method) = match path.strip_prefix('/').and_then(|rest| rest.split_once('/')) {
            Some((service, method)) if known_paths().contains(path) => (service.to_string(), method.to_string()),
            _ => (UNKNOWN_METHOD.to_string(), UNKNOWN_METHOD.to_string()),
        };
        // Called inside the server's span for the call (`server::rpc_span`).
        CallInfo { server, service, method, started: Instant::now(), span: tracing::Span::current() }
    }
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RpcMetricsService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        crate::foreground::call_started(request.uri().path());
        let stream = crate::foreground::stream_started(request.uri().path());
        let call = CallInfo::new(self.server, request.uri().path());
        let metrics = self.metrics.clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            let recorder =
                Arc::new(Recorder { metrics, call, done: std::sync::atomic::AtomicBool::new(false), _stream: stream });
            // Trailers-only responses (errors before any message) carry the status in the headers.
            if let Some(status) = grpc_status_name(response.headers()) {
                recorder.finish(status);
            }
            Ok(response.map(|body| MeteredBody { inner: body, recorder }))
        })
    }
}

/// Records a call exactly once: at its status, at the end of its body, or when dropped.
struct Recorder {
    metrics: Metrics,
    call: CallInfo,
    done: std::sync::atomic::AtomicBool,
    /// A bulk stream that writes, counted open as long as its answer lives.
    _stream: Option<crate::foreground::BulkStream>,
}

impl Recorder {
    fn finish(&self, status: &str) {
        if !self.done.swap(true, std::sync::atomic::Ordering::AcqRel) {
            self.metrics.record(&self.call, status);
            record_status(&self.call.span, status);
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // The body was dropped before it ended: the client went away.
        self.finish("CANCELLED");
    }
}

pin_project_lite::pin_project! {
    /// A response body that reports the call's status when it ends.
    pub struct MeteredBody<B> {
        #[pin]
        inner: B,
        recorder: Arc<Recorder>,
    }
}

impl<B: Body> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(status) = frame.trailers_ref().and_then(grpc_status_name) {
                    this.recorder.finish(status);
                }
            }
            Poll::Ready(Some(Err(_))) => this.recorder.finish("INTERNAL"),
            Poll::Ready(None) => this.recorder.finish("OK"),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// gRPC's status names, by code.
const STATUS_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The canonical name of the `grpc-status` in `headers`, if there is one.
fn grpc_status_name(headers: &http::HeaderMap) -> Option<&'static str> {
    let code = headers.get("grpc-status")?.to_str().ok()?.parse::<usize>().ok()?;
    STATUS_NAMES.get(code).copied()
}

/// Ends the call's span as OpenTelemetry's RPC conventions say: its numeric
/// `rpc.grpc.status_code`, and an error status for the codes a server
/// answers when it failed (not when the caller erred).
fn record_status(span: &tracing::Span, status: &str) {
    let code = STATUS_NAMES.iter().position(|name| *name == status).unwrap_or(2);
    span.record("rpc.grpc.status_code", code as i64);
    if matches!(status, "UNKNOWN" | "DEADLINE_EXCEEDED" | "UNIMPLEMENTED" | "INTERNAL" | "UNAVAILABLE" | "DATA_LOSS") {
        span.record("otel.status_code", "ERROR");
    }
}

/// Serves `GET /metrics` in the Prometheus text format until `shutdown`.
pub async fn serve_metrics(
    listener: TcpListener,
    registry: prometheus::Registry,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move {
                let mut text = String::new();
                let encoded = prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut text);
                match encoded {
                    Ok(()) => (http::StatusCode::OK, text),
                    Err(error) => (http::StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
                }
            }
        }),
    );
    axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_methods_of_the_contracts_become_labels() {
        let known = CallInfo::new("gateway", "/crm.contacts.v1.ContactsService/GetContact");
        assert_eq!((known.service.as_str(), known.method.as_str()), ("crm.contacts.v1.ContactsService", "GetContact"));
        let health = CallInfo::new("gateway", "/grpc.health.v1.Health/Check");
        assert_eq!(health.method, "Check");
        for junk in ["/crm.contacts.v1.ContactsService/Nope", "/x/y", "/", "", "/junk"] {
            let call = CallInfo::new("gateway", junk);
            assert_eq!((call.service.as_str(), call.method.as_str()), (UNKNOWN_METHOD, UNKNOWN_METHOD), "{junk}");
        }
    }
}
