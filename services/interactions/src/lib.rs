//! The interactions role: every touchpoint with a customer on one timeline, with invoices and payments.
//!
//! - [`serve`]: the role's gRPC server (`crm.interactions.v1.InteractionsService`, health, reflection).
//! - [`migrator`]: the role's migrations, applied to the `interactions` schema.
//! - `api`: the service implementation: validates, calls the store, maps the result.
//! - [`validate`]: request messages to valid records ([`model`]).
//! - [`store`]: the partitioned timeline, idempotency by (source, external id), events.
//! - [`partitions`]: monthly partitions, created ahead and on demand.

mod api;
pub mod model;
pub mod partitions;
pub mod store;
pub mod validate;

use crm_platform::{RoleContext, server::GrpcServer};
use crm_proto::interactions::v1::interactions_service_server::InteractionsServiceServer;
use tokio::net::TcpListener;

/// The migrations of the `interactions` schema.
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations")
}

/// Serves the role on `listener` until `ctx.shutdown` is cancelled, then drains.
/// Expects `ctx.pool` to be migrated.
pub async fn serve(ctx: RoleContext, listener: TcpListener) -> anyhow::Result<()> {
    let store = std::sync::Arc::new(store::InteractionStore { pool: ctx.pool.clone(), partitions: Default::default() });
    store.partitions.ensure_ahead(&ctx.pool).await?;
    let ahead = store.clone();
    let shutdown = ctx.shutdown.clone();
    tokio::spawn(async move {
        let mut daily = tokio::time::interval(std::time::Duration::from_secs(24 * 60 * 60));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = daily.tick() => {
                    if let Err(error) = ahead.partitions.ensure_ahead(&ahead.pool).await {
                        tracing::warn!(error = %error, "creating interaction partitions ahead failed; retrying tomorrow or on demand");
                    }
                }
            }
        }
    });
    let api = api::InteractionsApi::new(&ctx, store).await?;
    let service = InteractionsServiceServer::new(api)
        .max_decoding_message_size(ctx.server.max_message_bytes)
        .max_encoding_message_size(ctx.server.max_message_bytes);
    GrpcServer::new("interactions").add_service(service).serve_role(&ctx, listener).await
}
