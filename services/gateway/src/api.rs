//! `crm.gateway.v1.GatewayAdminService`: each RPC validates, calls the store, maps the result.
//! The event feed is the platform's; this role only names its service.

use crm_platform::{
    RoleContext,
    feed_api::{FeedApi, SubscribeStream},
};
use crm_proto::{
    events::v1::{ListEventsRequest, ListEventsResponse, SubscribeRequest},
    gateway::v1::gateway_admin_service_server::{GatewayAdminService, SERVICE_NAME},
};
use tonic::{Request, Response, Status};

pub struct GatewayAdminApi {
    feed: FeedApi,
}

impl GatewayAdminApi {
    pub async fn new(ctx: &RoleContext) -> anyhow::Result<Self> {
        Ok(GatewayAdminApi { feed: FeedApi::start(ctx, SERVICE_NAME).await? })
    }
}

#[tonic::async_trait]
impl GatewayAdminService for GatewayAdminApi {
    type SubscribeStream = SubscribeStream;

    async fn subscribe(&self, request: Request<SubscribeRequest>) -> Result<Response<SubscribeStream>, Status> {
        self.feed.subscribe(request)
    }

    async fn list_events(&self, request: Request<ListEventsRequest>) -> Result<Response<ListEventsResponse>, Status> {
        self.feed.list_events(request).await
    }
}
