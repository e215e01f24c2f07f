//! The alerting role: service-level objectives over business indicators and their burn-rate alerts.
//!
//! - [`serve`]: the role's gRPC server (`crm.alerting.v1.AlertingService`, health, reflection)
//!   and the consumer of the interactions feed that counts business indicators.
//! - [`migrator`]: the role's migrations, applied to the `alerting` schema.
//! - [`slo`]: service-level objectives: burn-rate arithmetic, indicators, evaluation.
//! - [`alerts`]: the alert lifecycle (fire, resolve, acknowledge), with its events.
//! - [`evaluator`]: evaluates every SLO each interval on one replica and sends the alerts.
//! - [`delivery`]: where alerts go (Alertmanager).
//! - [`store`]: the schema's SQL.
//! - `interactions_feed`: counts each interaction for the SLOs whose indicator it belongs to.
//! - `api`: the service implementation.

pub mod alerts;
mod api;
pub mod delivery;
pub mod evaluator;
mod interactions_feed;
pub mod slo;
pub mod store;

use std::sync::Arc;

use crm_platform::{RoleContext, config::AlertingSettings, consumer::follow, server::GrpcServer};
use crm_proto::alerting::v1::alerting_service_server::AlertingServiceServer;
use tokio::net::TcpListener;

/// The migrations of the `alerting` schema.
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations")
}

/// Serves the role on `listener` until `ctx.shutdown` is cancelled, then drains.
/// Expects `ctx.pool` to be migrated. `interactions` are the interactions
/// role's addresses, whose feed business indicators are counted from.
pub async fn serve(
    ctx: RoleContext,
    settings: AlertingSettings,
    interactions: Vec<String>,
    listener: TcpListener,
) -> anyhow::Result<()> {
    follow(
        &ctx,
        "alerting.interactions",
        &interactions,
        "crm.interactions.v1.InteractionsService",
        interactions_feed::InteractionsFeed::default(),
    )?;
    let evaluator = Arc::new(evaluator::Evaluator {
        pool: ctx.pool.clone(),
        clock: ctx.clock.clone(),
        metrics: ctx.metrics.clone(),
        alertmanagers: delivery::alertmanager::Alertmanagers::new(&settings)?,
    });
    evaluator.spawn(settings.evaluation_interval, ctx.shutdown.clone());
    let api = api::AlertingApi::new(&ctx).await?;
    let service = AlertingServiceServer::new(api)
        .max_decoding_message_size(ctx.server.max_message_bytes)
        .max_encoding_message_size(ctx.server.max_message_bytes);
    GrpcServer::new("alerting").add_service(service).serve_role(&ctx, listener).await
}
