//! `crm.alerting.v1.AlertingService`: each RPC validates, calls the store, maps the result.

use crm_platform::{
    RoleContext,
    feed_api::{FeedApi, SubscribeStream},
};
use crm_proto::{alerting::v1::alerting_service_server::AlertingService, events::v1 as events};
use tonic::{Request, Response, Status};

pub struct AlertingServiceApi {
    feed: FeedApi,
}

impl AlertingServiceApi {
    pub async fn new(ctx: &RoleContext) -> anyhow::Result<Self> {
        let feed = FeedApi::new(
            ctx.feed().await?,
            ctx.page_tokens.clone(),
            "crm.alerting.v1.AlertingService",
            ctx.shutdown.clone(),
        );
        Ok(AlertingServiceApi { feed })
    }
}

#[tonic::async_trait]
impl AlertingService for AlertingServiceApi {
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
