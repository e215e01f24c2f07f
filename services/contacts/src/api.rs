//! `crm.contacts.v1.ContactsService`: each RPC validates, calls the store, maps the result.
//! The event feed is the platform's; this role only names its service.

use crm_platform::{
    RoleContext,
    feed_api::{FeedApi, SubscribeStream},
};
use crm_proto::{
    contacts::v1::contacts_service_server::{ContactsService, SERVICE_NAME},
    events::v1::{ListEventsRequest, ListEventsResponse, SubscribeRequest},
};
use tonic::{Request, Response, Status};

pub struct ContactsApi {
    feed: FeedApi,
}

impl ContactsApi {
    pub async fn new(ctx: &RoleContext) -> anyhow::Result<Self> {
        Ok(ContactsApi { feed: FeedApi::start(ctx, SERVICE_NAME).await? })
    }
}

#[tonic::async_trait]
impl ContactsService for ContactsApi {
    type SubscribeStream = SubscribeStream;

    async fn subscribe(&self, request: Request<SubscribeRequest>) -> Result<Response<SubscribeStream>, Status> {
        self.feed.subscribe(request)
    }

    async fn list_events(&self, request: Request<ListEventsRequest>) -> Result<Response<ListEventsResponse>, Status> {
        self.feed.list_events(request).await
    }
}
