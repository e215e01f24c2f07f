//! The score RPCs: models (versioned, audited), a contact's score with each
//! contribution, and a caller's service tier found by any identifier.

use crm_platform::{
    Error,
    error::Violations,
    page_token::{Query, page_size},
    principal::{Caller, SignedChannel},
    timestamp::to_proto,
};
use crm_proto::{
    contacts::v1::{LookupContactRequest, contacts_service_client::ContactsServiceClient, lookup_contact_request::Key},
    segmentation::v1::{self as pb, get_service_tier_request::Contact, segmentation_service_server::SERVICE_NAME},
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{SegmentationApi, id};
use crate::{
    features::compute,
    scores::{self, Scored},
    store::scores::{self as store, ModelRecord},
};

fn etag(record: &ModelRecord) -> String {
    format!("{}.{}", record.version, record.made_at.timestamp_micros())
}

fn to_proto_model(record: &ModelRecord) -> pb::ScoreModel {
    pb::ScoreModel {
        id: record.id.to_string(),
        name: record.def.name.clone(),
        description: record.def.description.clone(),
        version: record.version,
        contributions: record.def.contributions_proto(),
        tiers: record.def.tiers_proto(),
        sensitive_features_allowed: record.def.sensitive_features_allowed.clone(),
        is_default: record.is_default,
        etag: etag(record),
        create_time: Some(to_proto(record.create_time)),
        update_time: Some(to_proto(record.made_at)),
        updated_by: record.made_by.clone(),
    }
}

fn model_def(input: Option<&pb::ScoreModel>) -> Result<scores::ModelDef, Error> {
    let input = input.ok_or_else(|| Error::invalid("score_model", "is required"))?;
    let mut violations = Violations::new();
    let def = scores::validate(&mut violations, "score_model", input);
    violations.into_result()?;
    Ok(def)
}

impl SegmentationApi {
    pub(super) async fn create_score_model(
        &self,
        request: Request<pb::CreateScoreModelRequest>,
    ) -> Result<Response<pb::ScoreModel>, Status> {
        let caller = Caller::of(&request)?;
        let def = model_def(request.get_ref().score_model.as_ref())?;
        let model_id = Uuid::now_v7();
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        store::create(&mut tx, model_id, &def, caller.principal.actor(), &caller.request_id).await?;
        tx.commit().await.map_err(Error::from)?;
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        Ok(Response::new(to_proto_model(&store::get(&mut conn, model_id, false).await?)))
    }

    pub(super) async fn get_score_model(
        &self,
        request: Request<pb::GetScoreModelRequest>,
    ) -> Result<Response<pb::ScoreModel>, Status> {
        let model_id = id("id", &request.get_ref().id)?;
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        Ok(Response::new(to_proto_model(&store::get(&mut conn, model_id, false).await?)))
    }

    pub(super) async fn update_score_model(
        &self,
        request: Request<pb::UpdateScoreModelRequest>,
    ) -> Result<Response<pb::ScoreModel>, Status> {
        let caller = Caller::of(&request)?;
        let input =
            request.get_ref().score_model.as_ref().ok_or_else(|| Error::invalid("score_model", "is required"))?;
        let model_id = id("score_model.id", &input.id)?;
        let def = model_def(Some(input))?;
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        let current = store::get(&mut tx, model_id, true).await?;
        if input.etag != etag(&current) {
            return Err(Error::StaleEtag { resource: "score model", id: model_id.to_string() }.into());
        }
        store::update(&mut tx, &current, &def, caller.principal.actor(), &caller.request_id).await?;
        tx.commit().await.map_err(Error::from)?;
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        Ok(Response::new(to_proto_model(&store::get(&mut conn, model_id, false).await?)))
    }

    pub(super) async fn list_score_models(
        &self,
        request: Request<pb::ListScoreModelsRequest>,
    ) -> Result<Response<pb::ListScoreModelsResponse>, Status> {
        let body = request.into_inner();
        let limit = page_size(body.page_size, 50, 500)?;
        let query = Query::builder(&format!("{SERVICE_NAME}/ListScoreModels")).build();
        let after: Option<(String, Uuid)> = self.tokens.resume(&query, &body.page_token)?;
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let mut records = store::list(&mut conn, after, limit + 1).await?;
        let next_page_token =
            self.tokens.next_page(&query, &mut records, limit, |last| (last.def.name.clone(), last.id))?;
        Ok(Response::new(pb::ListScoreModelsResponse {
            score_models: records.iter().map(to_proto_model).collect(),
            next_page_token,
        }))
    }

    pub(super) async fn list_score_model_versions(
        &self,
        request: Request<pb::ListScoreModelVersionsRequest>,
    ) -> Result<Response<pb::ListScoreModelVersionsResponse>, Status> {
        let model_id = id("id", &request.get_ref().id)?;
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let versions = store::versions(&mut conn, model_id).await?;
        Ok(Response::new(pb::ListScoreModelVersionsResponse {
            versions: versions.iter().map(to_proto_model).collect(),
        }))
    }

    /// The contact's score under the model named in `raw_model` (the default
    /// when empty), in one statement; a contact the read model does not know
    /// yet scores as one with no features (the lowest tier): never refused.
    async fn scored(&self, contact_id: Uuid, raw_model: &str) -> Result<(ModelRecord, Uuid, Scored), Error> {
        let model_id = if raw_model.trim().is_empty() { None } else { Some(id("model_id", raw_model)?) };
        let mut conn = self.pool.acquire().await?;
        let (model, features) = store::model_and_features(&mut conn, model_id, contact_id).await?;
        drop(conn);
        let (contact_id, doc) = features.unwrap_or_else(|| (contact_id, compute(None, &[], self.clock.now()).doc));
        let scored = scores::score(&model.def, &doc);
        Ok((model, contact_id, scored))
    }

    pub(super) async fn get_contact_score(
        &self,
        request: Request<pb::GetContactScoreRequest>,
    ) -> Result<Response<pb::ContactScore>, Status> {
        let body = request.into_inner();
        let contact_id = id("contact_id", &body.contact_id)?;
        let (model, contact_id, scored) = self.scored(contact_id, &body.model_id).await?;
        Ok(Response::new(pb::ContactScore {
            contact_id: contact_id.to_string(),
            model_id: model.id.to_string(),
            model_version: model.version,
            score: scored.score,
            tier: scored.tier,
            queue_priority: scored.queue_priority,
            contributions: scored
                .contributions
                .into_iter()
                .map(|given| pb::ContributionValue {
                    feature: given.feature,
                    key: given.key,
                    value: given.value,
                    points: given.points,
                    capped: given.capped,
                })
                .collect(),
        }))
    }

    pub(super) async fn get_service_tier(
        &self,
        request: Request<pb::GetServiceTierRequest>,
    ) -> Result<Response<pb::ServiceTier>, Status> {
        let caller = Caller::of(&request)?;
        let body = request.into_inner();
        let contact_id = match body.contact {
            None => return Err(Error::invalid("contact", "set contact_id, email, phone or external_id").into()),
            Some(Contact::ContactId(raw)) => id("contact_id", &raw)?,
            Some(Contact::Email(email)) => self.lookup(&caller, Key::Email(email)).await?,
            Some(Contact::Phone(phone)) => self.lookup(&caller, Key::Phone(phone)).await?,
            Some(Contact::ExternalId(external)) => self.lookup(&caller, Key::ExternalId(external)).await?,
        };
        let (model, contact_id, scored) = self.scored(contact_id, &body.model_id).await?;
        Ok(Response::new(pb::ServiceTier {
            contact_id: contact_id.to_string(),
            tier: scored.tier,
            queue_priority: scored.queue_priority,
            score: scored.score,
            model_id: model.id.to_string(),
            model_version: model.version,
        }))
    }

    /// The contact an identifier names, asked of the contacts role as the caller.
    async fn lookup(&self, caller: &Caller, key: Key) -> Result<Uuid, Error> {
        let field = match &key {
            Key::Email(_) => "email",
            Key::Phone(_) => "phone",
            Key::ExternalId(_) => "external_id",
        };
        let channel = self.contacts.clone().ok_or_else(|| Error::Unavailable {
            message: "the contacts role is not configured for this role; look up by contact_id".into(),
            retry_after: std::time::Duration::from_secs(1),
        })?;
        let mut contacts =
            ContactsServiceClient::new(SignedChannel::new(channel, self.identity.clone(), caller.principal.clone()));
        match contacts.lookup_contact(LookupContactRequest { key: Some(key) }).await {
            Ok(found) => id("contact_id", &found.into_inner().id),
            Err(status) => Err(match status.code() {
                tonic::Code::InvalidArgument => Error::invalid(field, status.message().to_string()),
                tonic::Code::NotFound => Error::NotFound { resource: "contact", id: format!("with that {field}") },
                tonic::Code::PermissionDenied => Error::PermissionDenied(status.message().to_string()),
                _ => Error::Unavailable {
                    message: format!("the contacts role could not look the caller up: {}", status.message()),
                    retry_after: std::time::Duration::from_millis(500),
                },
            }),
        }
    }
}
