//! The segmentation role: rule-based segments, scores, service tiers, RFM and lifetime value.
//!
//! - [`serve`]: the role's gRPC server (`crm.segmentation.v1.SegmentationService`, health, reflection).
//! - [`migrator`]: the role's migrations, applied to the `segmentation` schema.
//! - `api`: the service implementation.

mod api;

use crm_platform::{RoleContext, server::GrpcServer};
use crm_proto::segmentation::v1::segmentation_service_server::SegmentationServiceServer;
use tokio::net::TcpListener;

/// The migrations of the `segmentation` schema.
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations")
}

/// Serves the role on `listener` until `ctx.shutdown` is cancelled, then drains.
/// Expects `ctx.pool` to be migrated.
pub async fn serve(ctx: RoleContext, listener: TcpListener) -> anyhow::Result<()> {
    let api = api::SegmentationApi::new(&ctx).await?;
    let service = SegmentationServiceServer::new(api)
        .max_decoding_message_size(ctx.server.max_message_bytes)
        .max_encoding_message_size(ctx.server.max_message_bytes);
    GrpcServer::new("segmentation").add_service(service).serve_role(&ctx, listener).await
}
