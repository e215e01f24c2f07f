//! `crm.segmentation.v1.SegmentationService`: each RPC validates, calls the store, maps the result.
//! The event feed is the platform's; this role only names its service.
//!
//! - this module: features, segments and the feed;
//! - [`scores`]: score models, contact scores and service tiers;
//! - [`analytics`]: customers won, lost, grown and shrunk; how concentrated revenue is; RFM; lifetime value;
//! - [`answers`]: whole-base answers kept a while and refreshed behind;
//! - [`offers`]: association rules and next best offers.

mod analytics;
mod answers;
mod offers;
mod scores;

use std::sync::Arc;

use crm_platform::{
    Error, RoleContext,
    clock::Clock,
    error::Violations,
    feed_api::{FeedApi, SubscribeStream},
    local::RoleChannel,
    outbox::Position,
    page_token::{PageTokens, Query, page_size},
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

use crate::{
    features::catalogue,
    rules::{Checked, check, evaluate},
    segments::{self, Segments},
    store::{
        read_model, rebuild,
        segments::{self as store, SegmentRecord},
    },
};

const MAX_NAME: usize = 200;
const MAX_DESCRIPTION: usize = 2000;

/// The roles this one asks on a caller's behalf (absent when not configured).
pub struct Peers {
    pub contacts: Option<RoleChannel>,
    pub interactions: Option<RoleChannel>,
}

pub struct SegmentationApi {
    feed: FeedApi,
    pool: PgPool,
    /// Where member lists, exports and the whole-base reports read: the
    /// replicas when `DATABASE_READ_URL` is set.
    reads: crm_platform::db::ReadPool,
    segments: Arc<Segments>,
    tokens: PageTokens,
    clock: Clock,
    /// The contacts role, to find a caller by email, phone or external id
    /// and core customers' duplicates.
    contacts: Option<RoleChannel>,
    /// The interactions role, to check a contact may be sent a marketing offer.
    interactions: Option<RoleChannel>,
    /// Signs the caller's principal on calls to the other roles.
    identity: crm_platform::principal::IdentitySigner,
    /// The whole-base analytics' answers, kept a while.
    answers: Analytics,
}

/// Questions: movement (currency, period, compared span, churn days);
/// concentration (currency, window days, core share's bits, core listed, caller's key).
type MovementQuestion = (String, crate::analytics::Span, crate::analytics::Span, i64);
type ConcentrationQuestion = (String, i64, u64, usize, String);

#[derive(Default)]
struct Analytics {
    movement: answers::Answers<MovementQuestion, pb::CustomerMovement>,
    concentration: answers::Answers<ConcentrationQuestion, pb::RevenueConcentration>,
}

impl SegmentationApi {
    pub async fn new(ctx: &RoleContext, segments: Arc<Segments>, peers: Peers) -> anyhow::Result<Self> {
        Ok(SegmentationApi {
            feed: FeedApi::start(ctx, SERVICE_NAME).await?,
            pool: ctx.pool.clone(),
            reads: ctx.reads.clone(),
            segments,
            tokens: ctx.page_tokens.clone(),
            clock: ctx.clock.clone(),
            contacts: peers.contacts,
            interactions: peers.interactions,
            identity: ctx.identity.clone(),
            answers: Analytics::default(),
        })
    }

    /// Adds or removes members of a static segment.
    async fn change_members(
        &self,
        segment: &str,
        contacts: &[String],
        add: bool,
    ) -> Result<pb::ChangeSegmentMembersResponse, Error> {
        let segment_id = id("segment_id", segment)?;
        let contacts = contact_ids(contacts)?;
        let mut tx = self.pool.begin().await?;
        let current = store::get(&mut tx, segment_id, true).await?;
        if current.kind != "static" {
            return Err(Error::FailedPrecondition {
                reason: "NOT_A_STATIC_SEGMENT",
                message: format!(
                    "segment {segment_id} is {}: only a static segment takes members by hand",
                    current.kind
                ),
            });
        }
        let changed =
            segments::change_static(&mut tx, segment_id, current.version, &contacts, add, self.clock.now()).await?;
        tx.commit().await?;
        let member_count = self.read(segment_id).await?.member_count;
        Ok(pb::ChangeSegmentMembersResponse { changed: changed as i64, member_count })
    }

    async fn read(&self, id: Uuid) -> Result<pb::Segment, Error> {
        let mut conn = self.pool.acquire().await?;
        Ok(to_proto_segment(&store::get(&mut conn, id, false).await?))
    }

    /// [`Self::read`] after an evaluation that counted the members: `Some(count)`.
    async fn read_evaluated(&self, id: Uuid, evaluated: Option<i64>) -> Result<pb::Segment, Error> {
        let Some(member_count) = evaluated else { return self.read(id).await };
        let mut conn = self.pool.acquire().await?;
        Ok(to_proto_segment(&store::get_counted(&mut conn, id, member_count).await?))
    }
}

/// The most events one `GetReadModelStatus` asks about.
const MAX_EVENTS_ASKED: usize = 1000;

fn status_proto(status: &rebuild::Status) -> pb::ReadModelStatus {
    pb::ReadModelStatus {
        generation: status.generation,
        rebuilding: status.rebuilding,
        start_time: status.started_at.map(to_proto),
        finish_time: status.finished_at.map(to_proto),
        contacts_applied: Some(status.contacts_applied.into()),
        interactions_applied: Some(status.interactions_applied.into()),
        interactions_events_applied: Vec::new(),
    }
}

fn id(field: &str, raw: &str) -> Result<Uuid, Error> {
    Uuid::try_parse(raw.trim()).map_err(|_| Error::invalid(field, "must be an id (a UUID)"))
}

/// A rule, checked; INVALID_ARGUMENT on `field` with the error's line and column.
fn rule(field: &str, text: &str) -> Result<Checked, Error> {
    check(text).map_err(|error| Error::invalid(field, error.to_string()))
}

fn etag(record: &SegmentRecord) -> String {
    format!("{}.{}", record.version, record.update_time.timestamp_micros())
}

fn to_proto_segment(record: &SegmentRecord) -> pb::Segment {
    let kind = match record.kind.as_str() {
        "static" => pb::SegmentKind::Static,
        "snapshot" => pb::SegmentKind::Snapshot,
        _ => pb::SegmentKind::Dynamic,
    };
    pb::Segment {
        id: record.id.to_string(),
        name: record.name.clone(),
        description: record.description.clone(),
        kind: kind as i32,
        source_segment_id: record.source_segment_id.map(|source| source.to_string()).unwrap_or_default(),
        rule: record.rule.clone(),
        version: record.version,
        member_count: record.member_count,
        etag: etag(record),
        create_time: Some(to_proto(record.create_time)),
        update_time: Some(to_proto(record.update_time)),
    }
}

/// The stored name of a segment kind (unspecified means dynamic).
fn kind(violations: &mut Violations, field: &str, value: i32) -> &'static str {
    match pb::SegmentKind::try_from(value) {
        Ok(pb::SegmentKind::Unspecified | pb::SegmentKind::Dynamic) => "dynamic",
        Ok(pb::SegmentKind::Static) => "static",
        Ok(pb::SegmentKind::Snapshot) => "snapshot",
        Err(_) => {
            violations.add(field, format!("{value} is not a segment kind"));
            "dynamic"
        }
    }
}

/// At most this many contacts per AddSegmentMembers / RemoveSegmentMembers.
const MAX_MEMBERS_PER_CALL: usize = 1000;

fn contact_ids(raw: &[String]) -> Result<Vec<Uuid>, Error> {
    let mut violations = Violations::new();
    if raw.is_empty() {
        violations.add("contact_ids", "must name at least one contact");
    }
    let mut ids = Vec::new();
    for (index, contact) in violations.within("contact_ids", raw, MAX_MEMBERS_PER_CALL).iter().enumerate() {
        match Uuid::try_parse(contact.trim()) {
            Ok(contact) => ids.push(contact),
            Err(_) => violations.add(format!("contact_ids[{index}]"), "must be a contact id (a UUID)"),
        }
    }
    violations.into_result()?;
    Ok(ids)
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

    async fn rebuild_read_model(
        &self,
        _request: Request<pb::RebuildReadModelRequest>,
    ) -> Result<Response<pb::ReadModelStatus>, Status> {
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        // The cursors first: the followers' transactions take them before the lock below.
        rebuild::rewind(&mut tx).await?;
        // No reconcile runs while the model is emptied.
        crate::segments::lock_exclusive(&mut tx).await?;
        let status = rebuild::start(&mut tx, self.clock.now()).await?;
        tx.commit().await.map_err(Error::from)?;
        tracing::info!(generation = status.generation, "rebuilding the read model from the feeds");
        Ok(Response::new(status_proto(&status)))
    }

    async fn get_read_model_status(
        &self,
        request: Request<pb::GetReadModelStatusRequest>,
    ) -> Result<Response<pb::ReadModelStatus>, Status> {
        let asked = request.into_inner().interactions_events;
        if asked.len() > MAX_EVENTS_ASKED {
            return Err(
                Error::invalid("interactions_events", format!("must have at most {MAX_EVENTS_ASKED} entries")).into()
            );
        }
        let positions: Vec<Position> = asked.into_iter().map(|position| Position::from(Some(position))).collect();
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let mut status = status_proto(&rebuild::status(&mut conn).await?);
        status.interactions_events_applied =
            crm_platform::consumer::applied(&mut conn, rebuild::CONSUMERS[1], &positions).await.map_err(Error::from)?;
        Ok(Response::new(status))
    }

    async fn create_segment(
        &self,
        request: Request<pb::CreateSegmentRequest>,
    ) -> Result<Response<pb::Segment>, Status> {
        let input = request.into_inner().segment.ok_or_else(|| Error::invalid("segment", "is required"))?;
        let mut violations = Violations::new();
        let name = violations.text("segment.name", &input.name, 1, MAX_NAME);
        let description = violations.text("segment.description", &input.description, 0, MAX_DESCRIPTION);
        let kind = kind(&mut violations, "segment.kind", input.kind);
        let checked = if kind == "dynamic" {
            match rule("segment.rule", &input.rule) {
                Ok(checked) => Some(checked),
                Err(Error::InvalidArgument(found)) => {
                    for violation in found {
                        violations.add(violation.field, violation.description);
                    }
                    None
                }
                Err(other) => return Err(other.into()),
            }
        } else {
            if !input.rule.trim().is_empty() {
                violations.add("segment.rule", "only a dynamic segment has a rule");
            }
            None
        };
        let source = match kind {
            "snapshot" => match Uuid::try_parse(input.source_segment_id.trim()) {
                Ok(source) => Some(source),
                Err(_) => {
                    violations.add("segment.source_segment_id", "a snapshot names the segment it freezes (its id)");
                    None
                }
            },
            _ => None,
        };
        violations.into_result()?;
        let segment_id = Uuid::now_v7();
        let now = self.clock.now();
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        if let Some(source) = source {
            store::get(&mut tx, source, false).await?;
        }
        let rule_text = if kind == "dynamic" { input.rule.trim() } else { "" };
        store::insert_from(&mut tx, segment_id, &name, &description, kind, rule_text, source).await?;
        let evaluated = match (kind, &checked, source) {
            ("dynamic", Some(checked), _) => Some(
                self.segments
                    .populate(&mut tx, &self.pool, segment_id, 1, checked, segments::Evaluation::First, now)
                    .await?,
            ),
            ("snapshot", _, Some(source)) => {
                segments::freeze(&mut tx, segment_id, source, now).await?;
                None
            }
            _ => None,
        };
        tx.commit().await.map_err(Error::from)?;
        Ok(Response::new(self.read_evaluated(segment_id, evaluated).await?))
    }

    async fn get_segment(&self, request: Request<pb::GetSegmentRequest>) -> Result<Response<pb::Segment>, Status> {
        let segment_id = id("id", &request.get_ref().id)?;
        Ok(Response::new(self.read(segment_id).await?))
    }

    async fn update_segment(
        &self,
        request: Request<pb::UpdateSegmentRequest>,
    ) -> Result<Response<pb::Segment>, Status> {
        let body = request.into_inner();
        let input = body.segment.ok_or_else(|| Error::invalid("segment", "is required"))?;
        let segment_id = id("segment.id", &input.id)?;
        let paths = body.update_mask.map(|mask| mask.paths).unwrap_or_default();
        let mut violations = Violations::new();
        if paths.is_empty() {
            violations.add("update_mask", "must name the fields to change: name, description, rule");
        }
        for (index, path) in violations.within("update_mask.paths", &paths, 3).iter().enumerate() {
            if !["name", "description", "rule"].contains(&path.as_str()) {
                violations.add(
                    format!("update_mask.paths[{index}]"),
                    format!("{} is not a field that can be updated", crm_platform::error::quote(path)),
                );
            }
        }
        let changes = |field: &str| paths.iter().any(|path| path == field);
        let name = changes("name").then(|| violations.text("segment.name", &input.name, 1, MAX_NAME));
        let description = changes("description")
            .then(|| violations.text("segment.description", &input.description, 0, MAX_DESCRIPTION));
        violations.into_result()?;
        let checked = if changes("rule") { Some(rule("segment.rule", &input.rule)?) } else { None };

        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        let current = store::get(&mut tx, segment_id, true).await?;
        if input.etag != etag(&current) {
            return Err(Error::StaleEtag { resource: "segment", id: segment_id.to_string() }.into());
        }
        if checked.is_some() && current.kind != "dynamic" {
            return Err(Error::invalid("update_mask.paths", "only a dynamic segment has a rule").into());
        }
        let new_rule = checked.is_some() && input.rule.trim() != current.rule;
        store::update(
            &mut tx,
            segment_id,
            name.as_deref().unwrap_or(&current.name),
            description.as_deref().unwrap_or(&current.description),
            if new_rule { input.rule.trim() } else { &current.rule },
            new_rule,
        )
        .await?;
        let mut evaluated = None;
        if let (true, Some(checked)) = (new_rule, &checked) {
            evaluated = self
                .segments
                .populate(
                    &mut tx,
                    &self.pool,
                    segment_id,
                    current.version + 1,
                    checked,
                    segments::Evaluation::Again,
                    self.clock.now(),
                )
                .await
                .map(Some)?;
        }
        tx.commit().await.map_err(Error::from)?;
        Ok(Response::new(self.read_evaluated(segment_id, evaluated).await?))
    }

    async fn list_segments(
        &self,
        request: Request<pb::ListSegmentsRequest>,
    ) -> Result<Response<pb::ListSegmentsResponse>, Status> {
        let body = request.into_inner();
        let limit = page_size(body.page_size, 50, 500)?;
        let query = Query::builder(&format!("{SERVICE_NAME}/ListSegments")).build();
        let after: Option<(String, Uuid)> = self.tokens.resume(&query, &body.page_token)?;
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let mut records = store::list(&mut conn, after, limit + 1).await?;
        let next_page_token =
            self.tokens.next_page(&query, &mut records, limit, |last| (last.name.clone(), last.id))?;
        Ok(Response::new(pb::ListSegmentsResponse {
            segments: records.iter().map(to_proto_segment).collect(),
            next_page_token,
        }))
    }

    async fn delete_segment(
        &self,
        request: Request<pb::DeleteSegmentRequest>,
    ) -> Result<Response<pb::Segment>, Status> {
        let body = request.into_inner();
        let segment_id = id("id", &body.id)?;
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        let current = store::get(&mut tx, segment_id, true).await?;
        if !body.etag.is_empty() && body.etag != etag(&current) {
            return Err(Error::StaleEtag { resource: "segment", id: segment_id.to_string() }.into());
        }
        self.segments.empty(&mut tx, segment_id, self.clock.now()).await?;
        store::soft_delete(&mut tx, segment_id).await?;
        tx.commit().await.map_err(Error::from)?;
        Ok(Response::new(pb::Segment { member_count: 0, ..to_proto_segment(&current) }))
    }

    async fn preview_segment(
        &self,
        request: Request<pb::PreviewSegmentRequest>,
    ) -> Result<Response<pb::PreviewSegmentResponse>, Status> {
        let body = request.into_inner();
        let sample_size =
            page_size(body.sample_size, 20, 100).map_err(|_| Error::invalid("sample_size", "must not be negative"))?;
        let checked = rule("rule", &body.rule)?;
        let started = std::time::Instant::now();
        let (mut count, mut evaluated, mut sample) = (0i64, 0i64, Vec::new());
        segments::decide_all(&self.pool, &checked, |contact, _, member| {
            evaluated += 1;
            if member {
                count += 1;
                if (sample.len() as i64) < sample_size {
                    sample.push(contact.to_string());
                }
            }
        })
        .await?;
        Ok(Response::new(pb::PreviewSegmentResponse {
            count,
            evaluated,
            sample_contact_ids: sample,
            elapsed_ms: started.elapsed().as_millis() as i64,
        }))
    }

    async fn list_segment_members(
        &self,
        request: Request<pb::ListSegmentMembersRequest>,
    ) -> Result<Response<pb::ListSegmentMembersResponse>, Status> {
        let body = request.into_inner();
        let segment_id = id("segment_id", &body.segment_id)?;
        let limit = page_size(body.page_size, 100, 1000)?;
        let query = Query::builder(&format!("{SERVICE_NAME}/ListSegmentMembers"))
            .field("segment_id", segment_id.as_bytes())
            .build();
        let after: Option<Uuid> = self.tokens.resume(&query, &body.page_token)?;
        let mut conn = self.reads.acquire().await.map_err(Error::from)?;
        store::get(&mut conn, segment_id, false).await?;
        let mut members = store::list_members(&mut conn, segment_id, after, limit + 1).await?;
        let next_page_token = self.tokens.next_page(&query, &mut members, limit, |(last, _)| *last)?;
        Ok(Response::new(pb::ListSegmentMembersResponse {
            members: members
                .into_iter()
                .map(|(contact, since)| pb::SegmentMember {
                    contact_id: contact.to_string(),
                    since: Some(to_proto(since)),
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn get_contact_segments(
        &self,
        request: Request<pb::GetContactSegmentsRequest>,
    ) -> Result<Response<pb::GetContactSegmentsResponse>, Status> {
        let contact_id = id("contact_id", &request.get_ref().contact_id)?;
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let (contact_id, doc, _, _) = read_model::load(&mut conn, contact_id)
            .await?
            .ok_or_else(|| Error::NotFound { resource: "contact features", id: contact_id.to_string() })?;
        let mut segments = Vec::new();
        for (segment_id, name, version, rule_text, since) in store::of_contact(&mut conn, contact_id).await? {
            // Why, now: the rule (compiled once per version, as memberships use it) run over today's features.
            let compiled = (!rule_text.is_empty()).then(|| self.segments.compiled(segment_id, version, &rule_text));
            let why = compiled
                .flatten()
                .map(|checked| evaluate(&checked, &doc).why)
                .unwrap_or_default()
                .into_iter()
                .map(|(feature, value)| pb::FeatureReading { feature, value })
                .collect();
            segments.push(pb::ContactSegment {
                segment_id: segment_id.to_string(),
                name,
                since: Some(to_proto(since)),
                why,
            });
        }
        Ok(Response::new(pb::GetContactSegmentsResponse { contact_id: contact_id.to_string(), segments }))
    }

    async fn create_score_model(
        &self,
        request: Request<pb::CreateScoreModelRequest>,
    ) -> Result<Response<pb::ScoreModel>, Status> {
        SegmentationApi::create_score_model(self, request).await
    }

    async fn get_score_model(
        &self,
        request: Request<pb::GetScoreModelRequest>,
    ) -> Result<Response<pb::ScoreModel>, Status> {
        SegmentationApi::get_score_model(self, request).await
    }

    async fn update_score_model(
        &self,
        request: Request<pb::UpdateScoreModelRequest>,
    ) -> Result<Response<pb::ScoreModel>, Status> {
        SegmentationApi::update_score_model(self, request).await
    }

    async fn list_score_models(
        &self,
        request: Request<pb::ListScoreModelsRequest>,
    ) -> Result<Response<pb::ListScoreModelsResponse>, Status> {
        SegmentationApi::list_score_models(self, request).await
    }

    async fn list_score_model_versions(
        &self,
        request: Request<pb::ListScoreModelVersionsRequest>,
    ) -> Result<Response<pb::ListScoreModelVersionsResponse>, Status> {
        SegmentationApi::list_score_model_versions(self, request).await
    }

    async fn get_contact_score(
        &self,
        request: Request<pb::GetContactScoreRequest>,
    ) -> Result<Response<pb::ContactScore>, Status> {
        SegmentationApi::get_contact_score(self, request).await
    }

    async fn get_service_tier(
        &self,
        request: Request<pb::GetServiceTierRequest>,
    ) -> Result<Response<pb::ServiceTier>, Status> {
        SegmentationApi::get_service_tier(self, request).await
    }

    async fn get_customer_movement(
        &self,
        request: Request<pb::GetCustomerMovementRequest>,
    ) -> Result<Response<pb::CustomerMovement>, Status> {
        SegmentationApi::get_customer_movement(self, request).await
    }

    async fn get_revenue_concentration(
        &self,
        request: Request<pb::GetRevenueConcentrationRequest>,
    ) -> Result<Response<pb::RevenueConcentration>, Status> {
        SegmentationApi::get_revenue_concentration(self, request).await
    }

    async fn compute_association_rules(
        &self,
        request: Request<pb::ComputeAssociationRulesRequest>,
    ) -> Result<Response<pb::AssociationRules>, Status> {
        SegmentationApi::compute_association_rules(self, request).await
    }

    async fn get_association_rules(
        &self,
        request: Request<pb::GetAssociationRulesRequest>,
    ) -> Result<Response<pb::AssociationRules>, Status> {
        SegmentationApi::get_association_rules(self, request).await
    }

    async fn get_next_best_offers(
        &self,
        request: Request<pb::GetNextBestOffersRequest>,
    ) -> Result<Response<pb::NextBestOffers>, Status> {
        SegmentationApi::get_next_best_offers(self, request).await
    }

    async fn compute_rfm(&self, request: Request<pb::ComputeRfmRequest>) -> Result<Response<pb::RfmSummary>, Status> {
        SegmentationApi::compute_rfm(self, request).await
    }

    async fn get_rfm_summary(
        &self,
        request: Request<pb::GetRfmSummaryRequest>,
    ) -> Result<Response<pb::RfmSummary>, Status> {
        SegmentationApi::get_rfm_summary(self, request).await
    }

    async fn get_contact_rfm(
        &self,
        request: Request<pb::GetContactRfmRequest>,
    ) -> Result<Response<pb::ContactRfm>, Status> {
        SegmentationApi::get_contact_rfm(self, request).await
    }

    async fn fit_lifetime_value(
        &self,
        request: Request<pb::FitLifetimeValueRequest>,
    ) -> Result<Response<pb::LifetimeValueModel>, Status> {
        SegmentationApi::fit_lifetime_value(self, request).await
    }

    async fn get_lifetime_value_model(
        &self,
        request: Request<pb::GetLifetimeValueModelRequest>,
    ) -> Result<Response<pb::LifetimeValueModel>, Status> {
        SegmentationApi::get_lifetime_value_model(self, request).await
    }

    async fn get_contact_lifetime_value(
        &self,
        request: Request<pb::GetContactLifetimeValueRequest>,
    ) -> Result<Response<pb::ContactLifetimeValue>, Status> {
        SegmentationApi::get_contact_lifetime_value(self, request).await
    }

    async fn add_segment_members(
        &self,
        request: Request<pb::AddSegmentMembersRequest>,
    ) -> Result<Response<pb::ChangeSegmentMembersResponse>, Status> {
        let body = request.into_inner();
        self.change_members(&body.segment_id, &body.contact_ids, true).await.map(Response::new).map_err(Into::into)
    }

    async fn remove_segment_members(
        &self,
        request: Request<pb::RemoveSegmentMembersRequest>,
    ) -> Result<Response<pb::ChangeSegmentMembersResponse>, Status> {
        let body = request.into_inner();
        self.change_members(&body.segment_id, &body.contact_ids, false).await.map(Response::new).map_err(Into::into)
    }

    type ExportSegmentStream =
        std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<pb::ExportSegmentResponse, Status>> + Send>>;

    async fn export_segment(
        &self,
        request: Request<pb::ExportSegmentRequest>,
    ) -> Result<Response<Self::ExportSegmentStream>, Status> {
        let segment_id = id("segment_id", &request.get_ref().segment_id)?;
        let pool = self.reads.clone();
        store::get(&mut *pool.acquire().await.map_err(Error::from)?, segment_id, false).await?;
        // Page by page by contact id: a page is read when the client has taken the one before.
        let stream = async_stream::try_stream! {
            let mut after = None;
            loop {
                let mut conn = pool.acquire().await.map_err(Error::from)?;
                let page = store::list_members(&mut conn, segment_id, after, 1000).await?;
                drop(conn);
                let Some((last, _)) = page.last() else { break };
                after = Some(*last);
                let members = page
                    .iter()
                    .map(|(contact, since)| pb::SegmentMember { contact_id: contact.to_string(), since: Some(to_proto(*since)) })
                    .collect();
                yield pb::ExportSegmentResponse { members };
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_segment_sizes(
        &self,
        request: Request<pb::GetSegmentSizesRequest>,
    ) -> Result<Response<pb::GetSegmentSizesResponse>, Status> {
        let body = request.into_inner();
        let segment_id = id("segment_id", &body.segment_id)?;
        let days = page_size(body.days, 30, 366).map_err(|_| Error::invalid("days", "must not be negative"))?;
        let today = self.clock.now().date_naive();
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        store::get(&mut conn, segment_id, false).await?;
        let sizes = store::sizes(&mut conn, segment_id, today - chrono::Duration::days(days - 1), today).await?;
        Ok(Response::new(pb::GetSegmentSizesResponse {
            sizes: sizes
                .into_iter()
                .map(|(day, members)| pb::SegmentSize {
                    day: Some(crm_platform::timestamp::date_to_proto(day)),
                    members,
                })
                .collect(),
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
