//! The gateway role: the one listener clients reach.
//!
//! - [`routing`]: which role serves a call, read from its service path.
//! - [`proxy`]: the transparent proxy: every call kind, no per-method code.
//! - [`upstream_health`]: checks every replica, ejects failing ones from the
//!   balancer, and reports each role's health at the gateway.
//! - [`auth`]: who the caller is (bearer API key: bootstrap or from the store; or a JWT).
//! - [`jwt`]: JWTs verified against the identity provider's JWKS file.
//! - [`keys`]: API keys: secrets, the table, the per-replica cache.
//! - [`policy`]: the scope every method requires, and the scopes of each access role.
//! - [`limits`]: per-key rate limits and the cap on open streams.
//! - [`deadline`]: the default and maximum deadline of a call, passed on.
//! - [`guard`]: authenticate, authorize, limit, set the deadline, and pass the signed principal on.
//! - `api`: `crm.gateway.v1.GatewayAdminService`, served by the gateway itself.
//! - [`console`]: the customer-360 screen, on its own port, calling back by gRPC-Web.
//!
//! A call goes: server layers (request id, span, metrics, deadline) → guard
//! (key, scope, signed principal) → proxy (route) → the role's channel → back.

mod api;
pub mod auth;
pub mod console;
pub mod deadline;
pub mod guard;
pub mod jwt;
pub mod keys;
pub mod limits;
pub mod policy;
pub mod proxy;
pub mod routing;
pub mod upstream_health;

use std::collections::HashMap;

use anyhow::Context;
use crm_platform::{
    Role, RoleContext,
    config::{GatewayLimits, JwtSettings, Secret},
    server::GrpcServer,
};
use crm_proto::gateway::v1::gateway_admin_service_server::GatewayAdminServiceServer;
use tokio::net::TcpListener;

use crate::{
    guard::{Guard, Guarded},
    keys::{cache::KeyCache, store::KeyStore},
};

/// The migrations of the `gateway` schema.
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations")
}

/// What the gateway needs besides a role's usual context.
pub struct GatewayContext {
    /// The gateway's own schema, feed, limits, identity signer and shutdown.
    pub role: RoleContext,
    /// Upstream URLs of each domain role; several URLs are load-balanced.
    pub upstreams: HashMap<Role, Vec<String>>,
    /// The admin API key that works before any key exists (`CRM_BOOTSTRAP_ADMIN_KEY`).
    pub bootstrap_key: Secret,
    pub limits: GatewayLimits,
    /// Origins allowed to call by gRPC-Web.
    pub cors_allowed_origins: Vec<String>,
    /// JWTs accepted besides API keys, when configured.
    pub jwt: Option<JwtSettings>,
    /// The console's listener and files, when it is served.
    pub console: Option<(TcpListener, console::ConsoleSite)>,
}

/// Serves the gateway on `listener` until shutdown, then drains.
pub async fn serve(ctx: GatewayContext, listener: TcpListener) -> anyhow::Result<()> {
    let shutdown = ctx.role.shutdown.clone();
    let routes = routing::RoutingTable::connect(&ctx.upstreams, ctx.role.server.internal_tls.as_ref())
        .context("building upstream channels")?;
    let health = tonic_health::server::HealthReporter::new();
    upstream_health::spawn(&routes, health.clone(), shutdown.clone());

    let store = KeyStore::new(ctx.role.pool.clone());
    let cache = KeyCache::new(store.clone());
    let feed = ctx.role.feed().await?;
    cache.follow_revocations(feed.clone(), shutdown.clone()).await?;
    let limits = limits::Limits::new(ctx.limits);
    spawn_idle_key_sweeper(limits.clone(), shutdown.clone());
    let jwt = ctx.jwt.map(jwt::JwtVerifier::load).transpose()?;
    let authenticator = auth::Authenticator::new(ctx.bootstrap_key, cache.clone(), jwt);
    let deadlines =
        deadline::Deadlines { default: ctx.role.server.request_timeout, max: ctx.role.server.max_request_timeout };
    let guard = Guard::new(authenticator, ctx.role.identity.clone(), limits, deadlines);
    let mut origins = ctx.cors_allowed_origins.clone();
    if let Some((listener, site)) = ctx.console {
        // The console's page calls from its own origin: allowed whatever else is.
        if !origins.iter().any(|origin| origin == "*") {
            origins.extend(console::ConsoleSite::origins(listener.local_addr()?));
        }
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(error) = console::serve(site, listener, shutdown).await {
                tracing::error!(error = format!("{error:#}"), "the console stopped");
            }
        });
    }

    let admin = GatewayAdminServiceServer::new(api::GatewayAdminApi::new(&ctx.role, feed, store, cache))
        .max_decoding_message_size(ctx.role.server.max_message_bytes)
        .max_encoding_message_size(ctx.role.server.max_message_bytes);
    let proxied_services = routes.service_names();
    let proxy = Guarded::new(proxy::Proxy::new(routes, ctx.role.local.clone(), shutdown.clone()), guard.clone());
    let mut server = GrpcServer::new("gateway")
        .add_service(Guarded::new(admin, guard))
        .with_fallback(axum::Router::new().fallback_service(proxy), proxied_services)
        .with_health(health)
        .grpc_web(&origins)?;
    if let Some(files) = &ctx.role.server.public_tls {
        // HTTP/1.1 offered too: browsers call by gRPC-Web.
        server = server.tls(crm_platform::tls::server_config(files, None, true)?);
    }
    server.serve(listener, &ctx.role.server, ctx.role.metrics.clone(), shutdown).await
}

/// Drops the rate-limit buckets of keys idle for a while, every minute.
fn spawn_idle_key_sweeper(limits: std::sync::Arc<limits::Limits>, shutdown: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(std::time::Duration::from_secs(60)) => limits.forget_idle_keys(),
            }
        }
    });
}
