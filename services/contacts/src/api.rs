//! `crm.contacts.v1.ContactsService`: each RPC validates, calls the store, maps the result.

use crm_platform::{
    RoleContext,
    feed_api::{FeedApi, SubscribeStream},
};
use crm_proto::{contacts::v1::contacts_service_server::ContactsService, events::v1 as events};
use tonic::{Request, Response, Status};

pub struct ContactsServiceApi {
    feed: FeedApi,
}

impl ContactsServiceApi {
    pub async fn new(ctx: &RoleContext) -> anyhow::Result<Self> {
        let feed = FeedApi::new(
            ctx.feed().await?,
            ctx.page_tokens.clone(),
            "crm.contacts.v1.ContactsService",
            ctx.shutdown.clone(),
        );
        Ok(ContactsServiceApi { feed })
    }
}

#[tonic::async_trait]
impl ContactsService for ContactsServiceApi {
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
