//! The gRPC server every role runs, built the same way for all of them.
//!
//! Besides the role's own services it serves `grpc.health.v1.Health` (one
//! entry per service, plus the empty name for the whole server, both
//! NOT_SERVING while the database is unreachable: a readiness probe; and
//! [`LIVENESS`], SERVING for as long as the process answers: a liveness
//! probe, which must not restart a replica for a database outage) and
//! server reflection over every contract of the suite. Around them, in order:
//!
//! 0. for the gateway only: CORS and gRPC-Web translation, so browsers can call;
//! 1. request id: refuses one that cannot be stored, keeps the caller's
//!    `x-request-id` or mints a UUIDv7, and returns it;
//! 2. a `tracing` span per RPC carrying the request id;
//! 3. RED metrics per RPC;
//! 4. for the domain roles: the signed principal's check, then readiness
//!    (UNAVAILABLE at once while the database is unreachable);
//! 5. tonic's own deadline (`grpc-timeout`, capped by the configured request
//!    timeout) and per-connection concurrency limit.
//!
//! Every server speaks TLS when configured ([`crate::tls`]) and sets its
//! HTTP/2 limits: [`MAX_HEADER_LIST_BYTES`] of request headers and the
//! rapid-reset guards ([`MAX_PENDING_ACCEPT_RESETS`], [`MAX_LOCAL_ERROR_RESETS`]),
//! besides the per-connection concurrency limit (calls beyond it wait) and
//! keepalive pings that find dead peers; streams per connection are not capped,
//! and the connection's flow-control window ([`CONNECTION_WINDOW`]) leaves
//! room for the calls waiting their turn.
//!
//! On shutdown every service turns NOT_SERVING, the listener closes, and
//! in-flight calls drain for up to the grace period before they are cut.

use std::{convert::Infallible, time::Duration};

use axum::response::IntoResponse;
use http::{HeaderValue, Request};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{
    body::Body,
    server::NamedService,
    service::{Routes, RoutesBuilder},
    transport::Server,
};
use tower::{Service, ServiceBuilder, util::BoxCloneSyncService};
use tower_http::{
    cors::{AllowOrigin, CorsLayer},
    propagate_header::PropagateHeaderLayer,
    request_id::{PropagateRequestIdLayer, SetRequestIdLayer},
    trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer},
};
use tracing::Level;

use crate::{
    Role,
    config::ServerSettings,
    local::LocalRoles,
    metrics::{Metrics, RpcMetricsLayer},
    principal::{IdentitySigner, VerifyIdentityLayer},
    readiness::{Readiness, ReadinessLayer},
    request_id::{CheckRequestIdLayer, MakeUuidV7},
};

/// Streams one HTTP/2 connection may have open are not capped, as in
/// gRPC's own servers: calls beyond `CRM_MAX_CONCURRENT_REQUESTS` per
/// connection wait instead, and memory is bounded by the flow-control
/// windows. (A cap makes the server refuse a burst that a client sends
/// before it has read the cap, REFUSED_STREAM, which tonic clients surface
/// as errors and which counts against [`MAX_LOCAL_ERROR_RESETS`], closing
/// the connection: 2,000 concurrent calls on a new connection failed so.)
/// The largest header block a request may send (keys, principal, trace
/// context and request id fit in a few KB).
pub const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;
/// The health entry a liveness probe asks for: SERVING while the process
/// answers, whatever the state of its database or upstreams.
pub const LIVENESS: &str = "liveness";
/// Streams a client may open and reset before the server has accepted them:
/// past this, the connection is closed with GOAWAY (the HTTP/2 rapid-reset
/// attack, CVE-2023-44487).
pub const MAX_PENDING_ACCEPT_RESETS: usize = 50;
/// Streams the server may reset for a client's protocol errors before it
/// closes the connection.
pub const MAX_LOCAL_ERROR_RESETS: usize = 256;

/// The connection-level HTTP/2 flow-control window each server offers: the
/// request bytes a client may have sent and the server not yet read.
///
/// It also sizes h2's guard against floods of small DATA frames (h2 0.4.19
/// and later: the framing overhead of frames received and not yet read may
/// reach half this window, else GOAWAY `too_many_data_frames`). Calls
/// waiting for the per-connection concurrency limit hold their request
/// frames unread, and a unary call's message is a small frame: with hyper's
/// 1 MiB default, a client that queued a few thousand calls on one
/// connection (a benchmark at 1,000 calls/s on a busy machine, a bulk job
/// firing calls in parallel) had the connection cut and every call on it
/// failed (7,836 and 9,870 of a burst of 10,000 `GetContact`s). 16 MiB, the most
/// gRPC-Go's servers grow their window to, leaves room for some 40,000
/// waiting calls and bounds one connection's unread request bytes there.
pub const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;

/// The header that carries the request id, in and out.
pub use crate::request_id::HEADER as REQUEST_ID_HEADER;

/// The services of one server, and the names health reports on.
pub struct GrpcServer {
    name: &'static str,
    routes: RoutesBuilder,
    /// Services served here; health reports them SERVING while the server runs.
    service_names: Vec<String>,
    /// Services the fallback answers for (the gateway's upstreams): another
    /// task sets their health, from the upstreams' own.
    fallback_service_names: Vec<String>,
    /// Where calls to services not added here go.
    fallback: Option<axum::Router>,
    /// Who owns the health statuses; by default a private reporter.
    health: Option<tonic_health::server::HealthReporter>,
    /// When set, every call but health and reflection must carry a principal
    /// signed by a gateway (the domain roles).
    identity: Option<IdentitySigner>,
    /// When set, browsers may call over gRPC-Web (HTTP/1.1) from these origins (the gateway).
    browsers: Option<CorsLayer>,
    /// When set, the server stack is also registered for in-process calls
    /// under this role while it serves (the domain roles).
    local: Option<(LocalRoles, Role)>,
    /// When set, the role's health and calls follow whether this pool's
    /// database answers (the domain roles; see [`crate::readiness`]).
    database: Option<sqlx::PgPool>,
    /// When set, connections speak TLS (see [`crate::tls`]).
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

impl GrpcServer {
    /// A server named `name` in logs.
    pub fn new(name: &'static str) -> Self {
        GrpcServer {
            name,
            routes: RoutesBuilder::default(),
            service_names: Vec::new(),
            fallback_service_names: Vec::new(),
            fallback: None,
            health: None,
            identity: None,
            browsers: None,
            local: None,
            database: None,
            tls: None,
        }
    }

    /// Adds a generated tonic service; health reports it by its full name.
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: Service<Request<Body>, Error = Infallible> + NamedService + Clone + Send + Sync + 'static,
        S::Response: IntoResponse,
        S::Future: Send + 'static,
    {
        self.service_names.push(S::NAME.to_string());
        self.routes.add_service(service);
        self
    }

    /// Sends every call that no added service takes to `fallback` (the
    /// gateway's proxy), which answers for `service_names`; their health is
    /// set by the caller through the reporter it passes to [`GrpcServer::with_health`].
    pub fn with_fallback(mut self, fallback: axum::Router, service_names: Vec<String>) -> Self {
        self.fallback = Some(fallback);
        self.fallback_service_names = service_names;
        self
    }

    /// Lets the caller own the health statuses (the gateway mirrors its upstreams').
    pub fn with_health(mut self, reporter: tonic_health::server::HealthReporter) -> Self {
        self.health = Some(reporter);
        self
    }

    /// Refuses calls whose principal a gateway did not sign (see [`crate::principal`]).
    pub fn verify_identity(mut self, signer: IdentitySigner) -> Self {
        self.identity = Some(signer);
        self
    }

    /// Accepts gRPC-Web (over HTTP/1.1 or HTTP/2) besides gRPC, with CORS for
    /// `allowed_origins` (`*` for any), so that a web page can call the server.
    pub fn grpc_web(mut self, allowed_origins: &[String]) -> anyhow::Result<Self> {
        let origins = if allowed_origins.iter().any(|origin| origin == "*") {
            AllowOrigin::any()
        } else {
            let parsed = allowed_origins
                .iter()
                .map(|origin| HeaderValue::from_str(origin))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| anyhow::anyhow!("CRM_CORS_ALLOWED_ORIGINS holds a value that is not a header value"))?;
            AllowOrigin::list(parsed)
        };
        let header = http::HeaderName::from_static;
        self.browsers = Some(
            CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([http::Method::POST, http::Method::OPTIONS])
                .allow_headers([
                    http::header::AUTHORIZATION,
                    http::header::CONTENT_TYPE,
                    header("x-grpc-web"),
                    header("x-user-agent"),
                    header("grpc-timeout"),
                    header(REQUEST_ID_HEADER),
                    header("traceparent"),
                ])
                .expose_headers([
                    header("grpc-status"),
                    header("grpc-message"),
                    header("grpc-status-details-bin"),
                    header(REQUEST_ID_HEADER),
                ])
                .max_age(Duration::from_secs(24 * 3600)),
        );
        Ok(self)
    }

    /// Serves TLS: the gateway with `CRM_TLS_*` (certificate reloaded when it
    /// changes), a role with the install's mutual TLS.
    pub fn tls(mut self, config: std::sync::Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Serves a domain role's services with the role's limits, metrics and
    /// shutdown, accepting only calls that come through a gateway.
    /// The role is also registered in `ctx.local` while it serves, so that a
    /// gateway in this process can call it without a network hop.
    pub async fn serve_role(mut self, ctx: &crate::RoleContext, listener: TcpListener) -> anyhow::Result<()> {
        self.local = Some((ctx.local.clone(), ctx.role));
        self.database = Some(ctx.pool.clone());
        if let Some(internal) = &ctx.server.internal_tls {
            // Only processes of the install (certificates from its CA) may call a role.
            self.tls = Some(crate::tls::server_config(&internal.identity, Some(&internal.ca), false)?);
        }
        self.verify_identity(ctx.identity.clone())
            .serve(listener, &ctx.server, ctx.metrics.clone(), ctx.shutdown.clone())
            .await
    }

    /// Serves on `listener` until `shutdown` is cancelled, then drains.
    pub async fn serve(
        self,
        listener: TcpListener,
        settings: &ServerSettings,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let reporter = self.health.unwrap_or_default();
        reporter.set_service_status("", tonic_health::ServingStatus::Serving).await;
        reporter.set_service_status(LIVENESS, tonic_health::ServingStatus::Serving).await;
        for name in &self.service_names {
            reporter.set_service_status(name.as_str(), tonic_health::ServingStatus::Serving).await;
        }
        let health_service = health_service_for(reporter.clone());
        let readiness = self
            .database
            .as_ref()
            .map(|pool| Readiness::watch(pool, reporter.clone(), self.service_names.clone(), shutdown.child_token()));
        if let (Some(pool), Some(readiness)) = (&self.database, &readiness) {
            metrics.watch_database(self.name, pool.clone(), readiness.clone());
        }
        // Both reflection versions (grpcurl and older tools still ask v1alpha) over every contract.
        let contracts = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(crm_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection = contracts().build_v1()?;
        let reflection_alpha = contracts().build_v1alpha()?;
        let mut routes = self.routes;
        routes.add_service(health_service).add_service(reflection).add_service(reflection_alpha);
        let mut routes = routes.routes();
        if let Some(fallback) = self.fallback {
            routes = Routes::from(routes.into_axum_router().fallback_service(fallback));
        }

        let accept_http1 = self.browsers.is_some();
        let grpc_web = self.browsers.is_some().then(tonic_web::GrpcWebLayer::new);
        let layers = ServiceBuilder::new()
            // Browsers: answer CORS preflights, then translate gRPC-Web into gRPC.
            .option_layer(self.browsers)
            .option_layer(grpc_web)
            // One body type below, whichever layers are on.
            .map_response(|response: http::Response<_>| response.map(Body::new))
            // A request id too long or odd to store is refused before anything keeps it.
            .layer(CheckRequestIdLayer)
            .layer(SetRequestIdLayer::new(http::HeaderName::from_static(REQUEST_ID_HEADER), MakeUuidV7))
            .layer(
                TraceLayer::new_for_grpc()
                    .make_span_with(rpc_span)
                    .on_response(DefaultOnResponse::new().level(Level::DEBUG))
                    .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
            )
            .layer(PropagateRequestIdLayer::new(http::HeaderName::from_static(REQUEST_ID_HEADER)))
            // W3C trace context comes back to the caller as it went in.
            .layer(PropagateHeaderLayer::new(http::HeaderName::from_static("traceparent")))
            .layer(RpcMetricsLayer::new(metrics, self.name))
            .option_layer(self.identity.map(VerifyIdentityLayer::new))
            // Innermost: while the database is unreachable, calls fail fast with RetryInfo.
            .option_layer(readiness.map(ReadinessLayer::new));

        if let Some((registry, role)) = &self.local {
            // The same stack the listener serves, minus the transport.
            registry.register(*role, BoxCloneSyncService::new(layers.clone().service(routes.clone())));
        }
        let address = listener.local_addr()?;
        tracing::info!(server = self.name, %address, services = ?self.service_names, proxied = ?self.fallback_service_names, "serving");
        let signal = shutdown.clone();
        let router = Server::builder()
            .accept_http1(accept_http1)
            // The cap: the gateway gives unary calls their default deadline (see its `deadline` module).
            .timeout(settings.max_request_timeout)
            .concurrency_limit_per_connection(settings.max_concurrent_requests)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .initial_connection_window_size(CONNECTION_WINDOW)
            // HTTP/2 limits (see the module doc): the size of a request's
            // headers and the rapid-reset guards.
            .http2_max_header_list_size(Some(MAX_HEADER_LIST_BYTES))
            .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_ACCEPT_RESETS))
            .http2_max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
            .layer(layers)
            .add_routes(routes);
        let server: std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), tonic::transport::Error>> + Send>> =
            match self.tls {
                Some(config) => Box::pin(router.serve_with_incoming_shutdown(
                    crate::tls::incoming(listener, config, shutdown.child_token()),
                    signal.cancelled_owned(),
                )),
                // No Nagle: a small response must not wait for the peer's delayed
                // ACK (a sequential caller saw 40 ms per call without this).
                None => Box::pin(router.serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                    signal.cancelled_owned(),
                )),
            };
        tokio::pin!(server);

        tokio::select! {
            result = &mut server => return result.map_err(Into::into),
            () = shutdown.cancelled() => {}
        }
        if let Some((registry, role)) = &self.local {
            registry.unregister(*role);
        }
        reporter.set_service_status("", tonic_health::ServingStatus::NotServing).await;
        for name in self.service_names.iter().chain(&self.fallback_service_names) {
            reporter.set_service_status(name.as_str(), tonic_health::ServingStatus::NotServing).await;
        }
        tracing::info!(server = self.name, grace_s = settings.shutdown_grace.as_secs(), "draining in-flight calls");
        match tokio::time::timeout(settings.shutdown_grace, &mut server).await {
            Ok(result) => result.map_err(Into::into),
            Err(_) => {
                tracing::warn!(server = self.name, "grace period over; cutting the calls still in flight");
                Ok(())
            }
        }
    }
}

/// A health service that answers from `reporter`'s statuses.
fn health_service_for(
    reporter: tonic_health::server::HealthReporter,
) -> tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService> {
    tonic_health::pb::health_server::HealthServer::new(tonic_health::server::HealthService::from_health_reporter(
        reporter,
    ))
}

/// One span per RPC, in the caller's trace, as OpenTelemetry's RPC
/// conventions name it: `crm.contacts.v1.ContactsService/CreateContact`,
/// kind server, `rpc.system`, `rpc.service`, `rpc.method`, and at its end
/// `rpc.grpc.status_code` (recorded by the metrics layer, which sees the
/// status); besides them the request id, and the principal once known.
fn rpc_span<B>(request: &Request<B>) -> tracing::Span {
    let request_id = request.headers().get(REQUEST_ID_HEADER).and_then(|value| value.to_str().ok()).unwrap_or("");
    let (service, method) = crate::trace_context::rpc_names(request.uri().path());
    let span = tracing::info_span!(
        "rpc",
        otel.name = %format!("{service}/{method}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = tracing::field::Empty,
        request_id = %request_id,
        principal = tracing::field::Empty,
    );
    crate::trace_context::continue_trace(&span, request.headers());
    span
}
