//! `crm.gateway.v1.GatewayAdminService`: each RPC validates, calls the store, maps the result.

use crm_platform::{
    RoleContext,
    feed_api::{FeedApi, SubscribeStream},
};
use crm_proto::{events::v1 as events, gateway::v1::gateway_admin_service_server::GatewayAdminService};
use tonic::{Request, Response, Status};

pub struct GatewayAdminApi {
    feed: FeedApi,
}

impl GatewayAdminApi {
    pub async fn new(ctx: &RoleContext) -> anyhow::Result<Self> {
        let feed = FeedApi::new(
            ctx.feed().await?,
            ctx.page_tokens.clone(),
            "crm.gateway.v1.GatewayAdminService",
            ctx.shutdown.clone(),
        );
        Ok(GatewayAdminApi { feed })
    }
}

#[tonic::async_trait]
impl GatewayAdminService for GatewayAdminApi {
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
