//! `crm.interactions.v1.InteractionsService`: each RPC validates, calls the store, maps the result.

use crm_platform::{
    RoleContext,
    feed_api::{FeedApi, SubscribeStream},
};
use crm_proto::{events::v1 as events, interactions::v1::interactions_service_server::InteractionsService};
use tonic::{Request, Response, Status};

pub struct InteractionsServiceApi {
    feed: FeedApi,
}

impl InteractionsServiceApi {
    pub async fn new(ctx: &RoleContext) -> anyhow::Result<Self> {
        let feed = FeedApi::new(
            ctx.feed().await?,
            ctx.page_tokens.clone(),
            "crm.interactions.v1.InteractionsService",
            ctx.shutdown.clone(),
        );
        Ok(InteractionsServiceApi { feed })
    }
}

#[tonic::async_trait]
impl InteractionsService for InteractionsServiceApi {
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
