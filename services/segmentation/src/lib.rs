//! The segmentation role: who the customers are. It keeps a read model of
//! features per contact, built only from the contacts and interactions
//! feeds, and segments, scores, service tiers and customer analytics over it.
//!
//! - [`serve`]: the role's gRPC server (`crm.segmentation.v1.SegmentationService`, health, reflection)
//!   and the consumers of the two feeds.
//! - [`migrator`]: the role's migrations, applied to the `segmentation` schema.
//! - [`features`]: the feature catalogue, the pure computation of a contact's
//!   features, and the handlers of the feeds.
//! - `parallel`: a burst's pure work spread over the cores.
//! - [`rules`]: CEL rules, checked against the catalogue and run over features.
//! - [`schedule`]: recomputes the contacts whose features change with time alone, when they do.
//! - [`segments`]: dynamic segments' memberships, kept as features change, with their events.
//! - [`analytics`]: customers won, lost, grown and shrunk; how concentrated revenue is.
//! - [`store`]: the read model's, the segments' and the analytics' SQL.
//! - `api`: the service implementation.

pub mod analytics;
mod api;
pub mod features;
mod parallel;
pub mod rules;
pub mod schedule;
pub mod scores;
pub mod segments;
pub mod store;

use crm_platform::{Role, RoleContext, consumer::follow, local::RoleChannel, server::GrpcServer};
use crm_proto::segmentation::v1::segmentation_service_server::SegmentationServiceServer;
use tokio::net::TcpListener;

use crate::features::{contacts_feed::ContactsFeed, interactions_feed::InteractionsFeed};

/// The migrations of the `segmentation` schema.
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations")
}

/// Where the feeds the read model is built from are served.
#[derive(Clone, Debug, Default)]
pub struct Upstreams {
    /// The contacts role's URLs (`CRM_CONTACTS_UPSTREAMS`).
    pub contacts: Vec<String>,
    /// The interactions role's URLs (`CRM_INTERACTIONS_UPSTREAMS`).
    pub interactions: Vec<String>,
}

/// Serves the role on `listener` until `ctx.shutdown` is cancelled, then drains.
/// Expects `ctx.pool` to be migrated.
pub async fn serve(ctx: RoleContext, upstreams: Upstreams, listener: TcpListener) -> anyhow::Result<()> {
    let segments = std::sync::Arc::new(segments::Segments::default());
    follow(
        &ctx,
        store::rebuild::CONSUMERS[0],
        &upstreams.contacts,
        "crm.contacts.v1.ContactsService",
        ContactsFeed { clock: ctx.clock.clone(), segments: segments.clone() },
    )?;
    follow(
        &ctx,
        store::rebuild::CONSUMERS[1],
        &upstreams.interactions,
        "crm.interactions.v1.InteractionsService",
        InteractionsFeed { clock: ctx.clock.clone(), segments: segments.clone() },
    )?;
    schedule::spawn(ctx.pool.clone(), ctx.clock.clone(), segments.clone(), ctx.shutdown.clone());
    analytics::recompute::spawn(ctx.pool.clone(), ctx.clock.clone(), segments.clone(), ctx.shutdown.clone());
    let peer = |role, urls: &[String]| urls.first().map(|url| RoleChannel::connect(&ctx, role, url)).transpose();
    let peers = api::Peers {
        contacts: peer(Role::Contacts, &upstreams.contacts)?,
        interactions: peer(Role::Interactions, &upstreams.interactions)?,
    };
    let api = api::SegmentationApi::new(&ctx, segments, peers).await?;
    let service = SegmentationServiceServer::new(api)
        .max_decoding_message_size(ctx.server.max_message_bytes)
        .max_encoding_message_size(ctx.server.max_message_bytes);
    GrpcServer::new("segmentation").add_service(service).serve_role(&ctx, listener).await
}
