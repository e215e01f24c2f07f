//! The interactions role: every touchpoint with a customer on one timeline, with invoices and payments.
//!
//! - [`serve`]: the role's gRPC server (`crm.interactions.v1.InteractionsService`, health, reflection).
//! - [`migrator`]: the role's migrations, applied to the `interactions` schema.
//! - `api`: the service implementation.

mod api;

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
    let api = api::InteractionsApi::new(&ctx).await?;
    let service = InteractionsServiceServer::new(api)
        .max_decoding_message_size(ctx.server.max_message_bytes)
        .max_encoding_message_size(ctx.server.max_message_bytes);
    GrpcServer::new("interactions").add_service(service).serve_role(&ctx, listener).await
}
