//! `crm.segmentation.v1.SegmentationService`: each RPC validates, calls the store, maps the result.
//! The event feed is the platform's; this role only names its service.

use crm_platform::{
    Error, RoleContext,
    feed_api::{FeedApi, SubscribeStream},
    timestamp::to_proto,
};
use crm_proto::{
    events::v1::{ListEventsRequest, ListEventsResponse, SubscribeRequest},
    segmentation::v1::{
        self as pb,
        segmentation_service_server::{SERVICE_NAME, SegmentationService},
    },
};
use sqlx::PgPool;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{features::catalogue, store::read_model};

pub struct SegmentationApi {
    feed: FeedApi,
    pool: PgPool,
}

impl SegmentationApi {
    pub async fn new(ctx: &RoleContext) -> anyhow::Result<Self> {
        Ok(SegmentationApi { feed: FeedApi::start(ctx, SERVICE_NAME).await?, pool: ctx.pool.clone() })
    }
}

fn id(field: &str, raw: &str) -> Result<Uuid, Error> {
    Uuid::try_parse(raw.trim()).map_err(|_| Error::invalid(field, "must be an id (a UUID)"))
}

#[tonic::async_trait]
impl SegmentationService for SegmentationApi {
    async fn list_features(
        &self,
        _request: Request<pb::ListFeaturesRequest>,
    ) -> Result<Response<pb::ListFeaturesResponse>, Status> {
        let features = catalogue::features().iter().map(catalogue::FeatureDef::to_proto).collect();
        Ok(Response::new(pb::ListFeaturesResponse { features }))
    }

    async fn get_contact_features(
        &self,
        request: Request<pb::GetContactFeaturesRequest>,
    ) -> Result<Response<pb::ContactFeatures>, Status> {
        let contact_id = id("contact_id", &request.get_ref().contact_id)?;
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let (contact_id, doc, computed_at, next_change) = read_model::load(&mut conn, contact_id)
            .await?
            .ok_or_else(|| Error::NotFound { resource: "contact features", id: contact_id.to_string() })?;
        Ok(Response::new(pb::ContactFeatures {
            contact_id: contact_id.to_string(),
            features: doc.iter().map(|(name, value)| (name.clone(), value.to_proto())).collect(),
            compute_time: Some(to_proto(computed_at)),
            next_change_time: next_change.map(to_proto),
        }))
    }

    type SubscribeStream = SubscribeStream;

    async fn subscribe(&self, request: Request<SubscribeRequest>) -> Result<Response<SubscribeStream>, Status> {
        self.feed.subscribe(request)
    }

    async fn list_events(&self, request: Request<ListEventsRequest>) -> Result<Response<ListEventsResponse>, Status> {
        self.feed.list_events(request).await
    }
}
