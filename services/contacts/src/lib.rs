//! The contacts role: people, organizations and their relationships, kept as one clean, deduplicated record per customer.
//!
//! - [`serve`]: the role's gRPC server (`crm.contacts.v1.ContactsService`, health, reflection).
//! - [`migrator`]: the role's migrations, applied to the `contacts` schema.
//! - `api`: the service implementation.

mod api;
pub mod matching;
pub mod model;
pub mod store;
pub mod validate;

use crm_platform::{RoleContext, server::GrpcServer};
use crm_proto::contacts::v1::contacts_service_server::ContactsServiceServer;
use tokio::net::TcpListener;

/// The migrations of the `contacts` schema.
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations")
}

/// Serves the role on `listener` until `ctx.shutdown` is cancelled, then drains.
/// Expects `ctx.pool` to be migrated.
pub async fn serve(ctx: RoleContext, listener: TcpListener) -> anyhow::Result<()> {
    let api = api::ContactsApi::new(&ctx).await?;
    let service = ContactsServiceServer::new(api)
        .max_decoding_message_size(ctx.server.max_message_bytes)
        .max_encoding_message_size(ctx.server.max_message_bytes);
    GrpcServer::new("contacts").add_service(service).serve_role(&ctx, listener).await
}
