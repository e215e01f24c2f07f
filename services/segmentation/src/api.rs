//! `crm.segmentation.v1.SegmentationService`: each RPC validates, calls the store, maps the result.

use crm_platform::{
    RoleContext,
    feed_api::{FeedApi, SubscribeStream},
};
use crm_proto::{events::v1 as events, segmentation::v1::segmentation_service_server::SegmentationService};
use tonic::{Request, Response, Status};

pub struct SegmentationServiceApi {
    feed: FeedApi,
}

impl SegmentationServiceApi {
    pub async fn new(ctx: &RoleContext) -> anyhow::Result<Self> {
        let feed = FeedApi::new(
            ctx.feed().await?,
            ctx.page_tokens.clone(),
            "crm.segmentation.v1.SegmentationService",
            ctx.shutdown.clone(),
        );
        Ok(SegmentationServiceApi { feed })
    }
}

#[tonic::async_trait]
impl SegmentationService for SegmentationServiceApi {
    type SubscribeStream = SubscribeStream;

    async fn subscribe(&self, request: Request<events::SubscribeRequest>) -> Result<Response<SubscribeStream>, Status> {
        Ok(Response::new(self.feed.subscribe(request.into_inner())?))
    }

    async fn list_events(
        &self,
        request: Request<events::ListEventsRequest>,
    ) -> Result<Response<events::ListEventsResponse>, Status> {
        Ok(Response::new(self.feed.list_events(request.into_inner()).await?))
    }
}
