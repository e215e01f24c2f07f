//! The interactions role: every touchpoint with a customer on one timeline, with invoices and payments.
//!
//! - [`serve`]: the role's gRPC server (`crm.interactions.v1.InteractionsService`, health, reflection).
//! - [`migrator`]: the role's migrations, applied to the `interactions` schema.
//! - `api`: the service implementation: validates, calls the store, maps the result.
//! - [`validate`]: request messages to valid records ([`model`]).
//! - [`store`]: the partitioned timeline, idempotency by (source, external id), events.
//! - [`partitions`]: monthly partitions, created ahead and on demand.
//! - [`invoices`]: invoices opened, settled by payments, aged by the overdue check.
//! - [`recurring`]: the same pain point again and again for one contact.
//! - [`summary`]: the single customer view. [`frequency`]: consent and weekly caps.
//! - `contacts_feed`: what this role takes from the contacts feed (merges, erasures, preferences).

mod api;
mod contacts_feed;
pub mod frequency;
pub mod invoices;
pub mod model;
pub mod partitions;
pub mod recurring;
pub mod store;
pub mod summary;
pub mod validate;

use crm_platform::{
    Role, RoleContext, config::InteractionsSettings, consumer::follow, local::RoleChannel, server::GrpcServer,
};
use crm_proto::interactions::v1::interactions_service_server::InteractionsServiceServer;
use tokio::net::TcpListener;

/// The migrations of the `interactions` schema.
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations")
}

/// Serves the role on `listener` until `ctx.shutdown` is cancelled, then drains.
/// Expects `ctx.pool` to be migrated.
///
/// `contacts` are the contacts role's addresses (`http://host:port`), whose feed it follows.
pub async fn serve(
    ctx: RoleContext,
    settings: InteractionsSettings,
    contacts: Vec<String>,
    listener: TcpListener,
) -> anyhow::Result<()> {
    let recurring = recurring::Rule { count: settings.recurring_count, window_days: settings.recurring_window_days };
    let store = std::sync::Arc::new(store::InteractionStore {
        pool: ctx.pool.clone(),
        reads: ctx.reads.clone(),
        partitions: Default::default(),
        recurring,
    });
    let contacts_channel = follow_contacts(&ctx, &contacts)?;
    invoices::spawn_overdue_check(ctx.pool.clone(), settings.overdue_check_interval, ctx.shutdown.clone());
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
    let api = api::InteractionsApi::new(&ctx, store, contacts_channel).await?;
    let service = InteractionsServiceServer::new(api)
        .max_decoding_message_size(ctx.server.max_message_bytes)
        .max_encoding_message_size(ctx.server.max_message_bytes);
    GrpcServer::new("interactions").add_service(service).serve_role(&ctx, listener).await
}

/// Follows the contacts feed (merges, erasures, contact preferences); returns
/// a channel to the contacts role for the API's lookups.
fn follow_contacts(ctx: &RoleContext, contacts: &[String]) -> anyhow::Result<RoleChannel> {
    let url = contacts.first().ok_or_else(|| {
        anyhow::anyhow!("the interactions role needs the contacts role's address (CRM_CONTACTS_UPSTREAMS)")
    })?;
    follow(ctx, "interactions.contacts", contacts, "crm.contacts.v1.ContactsService", contacts_feed::ContactsFeed)?;
    RoleChannel::connect(ctx, Role::Contacts, url)
}
