//! The alerting role: service-level objectives over business indicators and their burn-rate alerts.
//!
//! - [`serve`]: the role's gRPC server (`crm.alerting.v1.AlertingService`, health, reflection)
//!   and the consumer of the interactions feed that counts business indicators.
//! - [`migrator`]: the role's migrations, applied to the `alerting` schema.
//! - [`slo`]: service-level objectives: burn-rate arithmetic, indicators, evaluation.
//! - [`alerts`]: the alert lifecycle (fire, resolve, acknowledge), with its events.
//! - [`evaluator`]: evaluates every SLO each interval on one replica and sends the alerts.
//! - [`delivery`]: where alerts go (Alertmanager, signed webhooks).
//! - [`silences`]: silences in force, which hold alerts back from every receiver.
//! - [`matchers`]: label matchers (of silences and webhooks).
//! - [`event_rules`]: rules on customer events, and the handler of the feeds they read.
//! - [`store`]: the schema's SQL.
//! - `interactions_feed`: counts each interaction for the SLOs whose indicator it belongs to.
//! - `api`: the service implementation.

pub mod alerts;
mod api;
pub mod delivery;
pub mod evaluator;
pub mod event_rules;
pub mod interactions_feed;
pub mod matchers;
pub mod silences;
pub mod slo;
pub mod store;

use std::sync::Arc;

use crm_platform::{
    RoleContext,
    config::AlertingSettings,
    consumer::follow,
    principal::{AccessRole, Principal, SignedChannel},
    server::GrpcServer,
};
use crm_proto::alerting::v1::alerting_service_server::AlertingServiceServer;
use event_rules::{catalogue::Feed, feed::RulesFeed};
use tokio::net::TcpListener;

/// Events the role's consumers apply in one transaction, at most: what has
/// arrived, so a live feed's events go one by one, but a backlog (ingest at
/// 20,000 rows/s) is worked off in long bursts, each paying for the rules
/// it loads and its commit once.
const CATCH_UP_BURST: usize = 5000;

/// The migrations of the `alerting` schema.
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations")
}

/// Where the feeds the role reads are served.
#[derive(Clone, Debug, Default)]
pub struct Upstreams {
    /// The contacts role's URLs (`CRM_CONTACTS_UPSTREAMS`).
    pub contacts: Vec<String>,
    /// The interactions role's URLs (`CRM_INTERACTIONS_UPSTREAMS`).
    pub interactions: Vec<String>,
    /// The segmentation role's URLs (`CRM_SEGMENTATION_UPSTREAMS`): its feed, and the features rules read.
    pub segmentation: Vec<String>,
}

/// Serves the role on `listener` until `ctx.shutdown` is cancelled, then drains.
/// Expects `ctx.pool` to be migrated.
pub async fn serve(
    ctx: RoleContext,
    settings: AlertingSettings,
    upstreams: Upstreams,
    listener: TcpListener,
) -> anyhow::Result<()> {
    follow(
        &ctx,
        "alerting.interactions",
        &upstreams.interactions,
        Feed::Interactions.service(),
        interactions_feed::InteractionsFeed::default(),
    )?;
    let segmentation = signed(&ctx, &upstreams.segmentation)?;
    let prometheus = settings.prometheus_url.as_deref().map(slo::prometheus::Prometheus::new).transpose()?;
    for (feed, urls) in [
        (Feed::Contacts, &upstreams.contacts),
        (Feed::Interactions, &upstreams.interactions),
        (Feed::Segmentation, &upstreams.segmentation),
    ] {
        let name = format!("alerting.rules.{}", feed.package().split('.').nth(1).unwrap_or_default());
        let handler = RulesFeed::new(feed, ctx.clock.clone(), segmentation.clone());
        follow(&ctx, &name, urls, feed.service(), handler)?;
    }
    let evaluator = Arc::new(evaluator::Evaluator {
        pool: ctx.pool.clone(),
        clock: ctx.clock.clone(),
        metrics: ctx.metrics.clone(),
        prometheus: prometheus.clone(),
    });
    evaluator.spawn(settings.evaluation_interval, ctx.shutdown.clone());
    let alertmanagers = Arc::new(delivery::alertmanager::Alertmanagers::new(&settings)?);
    alertmanagers.spawn(ctx.pool.clone(), ctx.feed().await?, ctx.clock.clone(), ctx.shutdown.clone());
    let webhooks = Arc::new(delivery::webhooks::Webhooks::new(&settings)?);
    webhooks.clone().spawn(ctx.pool.clone(), ctx.clock.clone(), ctx.shutdown.clone());
    let api = api::AlertingApi::new(&ctx, segmentation, webhooks, prometheus).await?;
    let service = AlertingServiceServer::new(api)
        .max_decoding_message_size(ctx.server.max_message_bytes)
        .max_encoding_message_size(ctx.server.max_message_bytes);
    GrpcServer::new("alerting").add_service(service).serve_role(&ctx, listener).await
}

/// A channel to the first of `urls` that signs this role in as an admin.
fn signed(ctx: &RoleContext, urls: &[String]) -> anyhow::Result<Option<SignedChannel>> {
    let Some(url) = urls.first() else { return Ok(None) };
    let channel = crm_platform::tls::internal_endpoint(url, ctx.server.internal_tls.as_ref())?.connect_lazy();
    let principal = Principal { key_id: "role:alerting".into(), roles: vec![AccessRole::Admin] };
    Ok(Some(SignedChannel::new(channel, ctx.identity.clone(), principal)))
}
