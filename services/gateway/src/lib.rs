//! The gateway role: the one listener clients reach.
//!
//! - [`routing`]: which role serves a call, read from its service path.
//! - [`proxy`]: the transparent proxy: every call kind, no per-method code.
//! - [`upstream_health`]: mirrors each role's health into the gateway's, so
//!   `grpc.health.v1.Health/Check` at the gateway answers for the whole suite.
//! - [`auth`]: who the caller is (bearer API key).
//! - `api`: `crm.gateway.v1.GatewayAdminService`, served by the gateway itself.
//!
//! A call goes: server layers (request id, span, metrics, deadline) → proxy
//! (authenticate, route, strip the credential) → the role's channel → back.

mod api;
pub mod auth;
pub mod proxy;
pub mod routing;
pub mod upstream_health;

use std::collections::HashMap;

use anyhow::Context;
use crm_platform::{Role, RoleContext, config::Secret, server::GrpcServer};
use crm_proto::gateway::v1::gateway_admin_service_server::GatewayAdminServiceServer;
use tokio::net::TcpListener;

/// The migrations of the `gateway` schema.
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations")
}

/// What the gateway needs besides a role's usual context.
pub struct GatewayContext {
    /// The gateway's own schema, feed, limits and shutdown.
    pub role: RoleContext,
    /// Upstream URLs of each domain role; several URLs are load-balanced.
    pub upstreams: HashMap<Role, Vec<String>>,
    /// The admin API key every call must present until issue #5's key store exists.
    pub admin_key: Secret,
}

/// Serves the gateway on `listener` until shutdown, then drains.
pub async fn serve(ctx: GatewayContext, listener: TcpListener) -> anyhow::Result<()> {
    let routes = routing::RoutingTable::connect(&ctx.upstreams).context("building upstream channels")?;
    let authenticator = auth::Authenticator::new(ctx.admin_key.clone());
    let health = tonic_health::server::HealthReporter::new();
    upstream_health::spawn(&routes, health.clone(), ctx.role.shutdown.clone());

    let admin = api::GatewayAdminApi::new(&ctx.role).await?;
    let admin = GatewayAdminServiceServer::new(admin)
        .max_decoding_message_size(ctx.role.server.max_message_bytes)
        .max_encoding_message_size(ctx.role.server.max_message_bytes);
    let admin = tonic::service::interceptor::InterceptedService::new(admin, authenticator.interceptor());
    let proxied_services = routes.service_names();
    let proxy = proxy::Proxy::new(routes, authenticator, ctx.role.shutdown.clone());
    GrpcServer::new("gateway")
        .add_service(admin)
        .with_fallback(axum::Router::new().fallback_service(proxy), proxied_services)
        .serve(listener, &ctx.role.server, ctx.role.metrics.clone(), Some(health), ctx.role.shutdown.clone())
        .await
}
