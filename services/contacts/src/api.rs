//! `crm.contacts.v1.ContactsService`: each RPC validates, calls the store, maps the result.
//! The event feed is the platform's; this role only names its service.

use crm_platform::{
    RoleContext,
    feed_api::{FeedApi, SubscribeStream},
};
use crm_proto::contacts::v1 as pb;
use crm_proto::{
    contacts::v1::contacts_service_server::{ContactsService, SERVICE_NAME},
    events::v1::{ListEventsRequest, ListEventsResponse, SubscribeRequest},
};
use tonic::{Request, Response, Status};
type SubscribeStream2 =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<pb::ImportContactsResponse, Status>> + Send>>;

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
    async fn create_contact(
        &self,
        _request: Request<pb::CreateContactRequest>,
    ) -> Result<Response<pb::Contact>, Status> {
        Err(Status::unimplemented("TODO"))
    }

    async fn get_contact(&self, _request: Request<pb::GetContactRequest>) -> Result<Response<pb::Contact>, Status> {
        Err(Status::unimplemented("TODO"))
    }

    async fn update_contact(
        &self,
        _request: Request<pb::UpdateContactRequest>,
    ) -> Result<Response<pb::Contact>, Status> {
        Err(Status::unimplemented("TODO"))
    }

    async fn list_contacts(
        &self,
        _request: Request<pb::ListContactsRequest>,
    ) -> Result<Response<pb::ListContactsResponse>, Status> {
        Err(Status::unimplemented("TODO"))
    }

    async fn delete_contact(
        &self,
        _request: Request<pb::DeleteContactRequest>,
    ) -> Result<Response<pb::Contact>, Status> {
        Err(Status::unimplemented("TODO"))
    }

    async fn lookup_contact(
        &self,
        _request: Request<pb::LookupContactRequest>,
    ) -> Result<Response<pb::Contact>, Status> {
        Err(Status::unimplemented("TODO"))
    }

    async fn search_contacts(
        &self,
        _request: Request<pb::SearchContactsRequest>,
    ) -> Result<Response<pb::SearchContactsResponse>, Status> {
        Err(Status::unimplemented("TODO"))
    }

    async fn find_duplicates(
        &self,
        _request: Request<pb::FindDuplicatesRequest>,
    ) -> Result<Response<pb::FindDuplicatesResponse>, Status> {
        Err(Status::unimplemented("TODO"))
    }

    async fn merge_contacts(
        &self,
        _request: Request<pb::MergeContactsRequest>,
    ) -> Result<Response<pb::MergeContactsResponse>, Status> {
        Err(Status::unimplemented("TODO"))
    }

    async fn erase_contact(
        &self,
        _request: Request<pb::EraseContactRequest>,
    ) -> Result<Response<pb::EraseContactResponse>, Status> {
        Err(Status::unimplemented("TODO"))
    }

    async fn create_organization(
        &self,
        _request: Request<pb::CreateOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        Err(Status::unimplemented("TODO"))
    }

    async fn get_organization(
        &self,
        _request: Request<pb::GetOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        Err(Status::unimplemented("TODO"))
    }

    async fn update_organization(
        &self,
        _request: Request<pb::UpdateOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        Err(Status::unimplemented("TODO"))
    }

    async fn list_organizations(
        &self,
        _request: Request<pb::ListOrganizationsRequest>,
    ) -> Result<Response<pb::ListOrganizationsResponse>, Status> {
        Err(Status::unimplemented("TODO"))
    }

    async fn delete_organization(
        &self,
        _request: Request<pb::DeleteOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        Err(Status::unimplemented("TODO"))
    }

    async fn create_relationship(
        &self,
        _request: Request<pb::CreateRelationshipRequest>,
    ) -> Result<Response<pb::Relationship>, Status> {
        Err(Status::unimplemented("TODO"))
    }

    async fn delete_relationship(
        &self,
        _request: Request<pb::DeleteRelationshipRequest>,
    ) -> Result<Response<pb::DeleteRelationshipResponse>, Status> {
        Err(Status::unimplemented("TODO"))
    }

    async fn list_relationships(
        &self,
        _request: Request<pb::ListRelationshipsRequest>,
    ) -> Result<Response<pb::ListRelationshipsResponse>, Status> {
        Err(Status::unimplemented("TODO"))
    }

    async fn list_audit_events(
        &self,
        _request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        Err(Status::unimplemented("TODO"))
    }

    type ImportContactsStream = SubscribeStream2;
    async fn import_contacts(
        &self,
        _request: Request<tonic::Streaming<pb::ImportContactsRequest>>,
    ) -> Result<Response<Self::ImportContactsStream>, Status> {
        Err(Status::unimplemented("TODO"))
    }

    type SubscribeStream = SubscribeStream;

    async fn subscribe(&self, request: Request<SubscribeRequest>) -> Result<Response<SubscribeStream>, Status> {
        self.feed.subscribe(request)
    }

    async fn list_events(&self, request: Request<ListEventsRequest>) -> Result<Response<ListEventsResponse>, Status> {
        self.feed.list_events(request).await
    }
}
