//! `crm.alerting.v1.AlertingService`: each RPC validates, calls the store, maps the result.
//! The event feed is the platform's; this role only names its service.

use crm_platform::{
    RoleContext,
    feed_api::{FeedApi, SubscribeStream},
};
use crm_proto::{
    alerting::v1::alerting_service_server::{AlertingService, SERVICE_NAME},
    events::v1::{ListEventsRequest, ListEventsResponse, SubscribeRequest},
};
use tonic::{Request, Response, Status};

pub struct AlertingApi {
    feed: FeedApi,
}

impl AlertingApi {
    pub async fn new(ctx: &RoleContext) -> anyhow::Result<Self> {
        Ok(AlertingApi { feed: FeedApi::start(ctx, SERVICE_NAME).await? })
    }
}

#[tonic::async_trait]
impl AlertingService for AlertingApi {
    type SubscribeStream = SubscribeStream;

    async fn subscribe(&self, request: Request<SubscribeRequest>) -> Result<Response<SubscribeStream>, Status> {
        self.feed.subscribe(request)
    }

    async fn list_events(&self, request: Request<ListEventsRequest>) -> Result<Response<ListEventsResponse>, Status> {
        self.feed.list_events(request).await
    }
}
