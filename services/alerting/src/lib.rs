//! The alerting role: service-level objectives over business indicators and their burn-rate alerts.
//!
//! - [`serve`]: the role's gRPC server (`crm.alerting.v1.AlertingService`, health, reflection).
//! - [`migrator`]: the role's migrations, applied to the `alerting` schema.
//! - [`slo`]: service-level objectives; their burn-rate arithmetic.
//! - `api`: the service implementation.

mod api;
pub mod slo;

use crm_platform::{RoleContext, server::GrpcServer};
use crm_proto::alerting::v1::alerting_service_server::AlertingServiceServer;
use tokio::net::TcpListener;

/// The migrations of the `alerting` schema.
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations")
}

/// Serves the role on `listener` until `ctx.shutdown` is cancelled, then drains.
/// Expects `ctx.pool` to be migrated.
pub async fn serve(ctx: RoleContext, listener: TcpListener) -> anyhow::Result<()> {
    let api = api::AlertingApi::new(&ctx).await?;
    let service = AlertingServiceServer::new(api)
        .max_decoding_message_size(ctx.server.max_message_bytes)
        .max_encoding_message_size(ctx.server.max_message_bytes);
    GrpcServer::new("alerting").add_service(service).serve_role(&ctx, listener).await
}
