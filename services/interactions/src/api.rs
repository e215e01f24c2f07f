//! `crm.interactions.v1.InteractionsService`: each RPC validates, calls the store, maps the result.

use chrono::{DateTime, Utc};
use crm_platform::{
    Error, RoleContext,
    error::{Violations, quote},
    feed_api::{FeedApi, SubscribeStream},
    idempotency,
    page_token::{PageTokens, Query, page_size},
    principal::{Caller, IdentitySigner, SignedChannel},
    timestamp::from_proto,
};
use crm_proto::{
    events::v1::{ListEventsRequest, ListEventsResponse, SubscribeRequest},
    interactions::v1::{
        self as pb,
        interactions_service_server::{InteractionsService, SERVICE_NAME},
    },
};
use futures_util::StreamExt;
use std::{pin::Pin, sync::Arc};
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::{
    model::InteractionRecord,
    store::{InteractionStore, Stage, Stored, TimelineFilter, Turn},
    validate,
};

/// Items per ingest message, at most.
pub const MAX_BATCH: usize = 5000;

/// Batches of one ingest stream in flight at once.
pub const INGEST_PIPELINE: usize = 3;

/// Rejected items an upload's answer names, at most (it counts them all).
pub const MAX_REJECTIONS_LISTED: usize = 1000;

pub type IngestStream =
    Pin<Box<dyn futures_util::Stream<Item = Result<pb::IngestInteractionsResponse, Status>> + Send>>;

pub struct InteractionsApi {
    feed: FeedApi,
    store: Arc<InteractionStore>,
    tokens: PageTokens,
    /// The contacts role, for `contact_lookup`.
    contacts: crm_platform::local::RoleChannel,
    identity: IdentitySigner,
}

impl InteractionsApi {
    pub async fn new(
        ctx: &RoleContext,
        store: Arc<InteractionStore>,
        contacts: crm_platform::local::RoleChannel,
    ) -> anyhow::Result<Self> {
        Ok(InteractionsApi {
            feed: FeedApi::start(ctx, SERVICE_NAME).await?,
            store,
            tokens: ctx.page_tokens.clone(),
            contacts,
            identity: ctx.identity.clone(),
        })
    }

    /// The id of the contact `lookup` names, through the contacts service as
    /// the caller; creates a prospect with that identifier when asked.
    async fn resolve(&self, caller: &Caller, lookup: &pb::ContactLookup) -> Result<String, Error> {
        use crm_proto::contacts::v1::{
            Contact, CreateContactRequest, Email, LookupContactRequest, Phone,
            contacts_service_client::ContactsServiceClient, lookup_contact_request::Key,
        };
        let channel = SignedChannel::new(self.contacts.clone(), self.identity.clone(), caller.principal.clone());
        let mut contacts = ContactsServiceClient::new(channel);
        let (key, field, prospect) = match &lookup.key {
            Some(pb::contact_lookup::Key::Email(email)) => (
                Key::Email(email.clone()),
                "contact_lookup.email",
                Contact {
                    display_name: email.clone(),
                    emails: vec![Email { address: email.clone(), ..Default::default() }],
                    ..Default::default()
                },
            ),
            Some(pb::contact_lookup::Key::Phone(phone)) => (
                Key::Phone(phone.clone()),
                "contact_lookup.phone",
                Contact {
                    display_name: phone.clone(),
                    phones: vec![Phone { number: phone.clone(), ..Default::default() }],
                    ..Default::default()
                },
            ),
            Some(pb::contact_lookup::Key::ExternalId(external)) => (
                Key::ExternalId(external.clone()),
                "contact_lookup.external_id",
                Contact {
                    display_name: format!("{} {}", external.source, external.id),
                    external_ids: vec![external.clone()],
                    ..Default::default()
                },
            ),
            None => return Err(Error::invalid("contact_lookup", "set email, phone or external_id")),
        };
        let upstream = |status: Status| match status.code() {
            tonic::Code::InvalidArgument => Error::invalid(field, status.message().to_string()),
            tonic::Code::PermissionDenied => Error::PermissionDenied(status.message().to_string()),
            tonic::Code::NotFound => Error::NotFound { resource: "contact", id: "with that identifier".into() },
            _ => Error::Unavailable {
                message: format!("the contacts service could not resolve the contact: {}", status.message()),
                retry_after: std::time::Duration::from_millis(500),
            },
        };
        match contacts.lookup_contact(LookupContactRequest { key: Some(key.clone()) }).await {
            Ok(found) => return Ok(found.into_inner().id),
            Err(status) if status.code() == tonic::Code::NotFound && lookup.create_prospect => {}
            Err(status) => return Err(upstream(status)),
        }
        // A retry of this call creates no second prospect; another lookup
        // under the same x-request-id is another request, with a key of its own.
        let request_id = {
            use sha2::Digest;
            let digest = sha2::Sha256::new()
                .chain_update(caller.request_id.as_bytes())
                .chain_update([0])
                .chain_update(prost::Message::encode_to_vec(&LookupContactRequest { key: Some(key.clone()) }))
                .finalize();
            format!("prospect-{}", hex::encode(&digest[..16]))
        };
        let request = CreateContactRequest { contact: Some(prospect), request_id, ..Default::default() };
        match contacts.create_contact(request).await {
            Ok(created) => Ok(created.into_inner().id),
            // Created meanwhile by someone else: it is found now.
            Err(status) if status.code() == tonic::Code::AlreadyExists => contacts
                .lookup_contact(LookupContactRequest { key: Some(key) })
                .await
                .map(|found| found.into_inner().id)
                .map_err(upstream),
            Err(status) => Err(upstream(status)),
        }
    }
}

/// Why an item is refused whose (source, external_id) names an interaction
/// with other content: storing it would drop it in silence.
fn external_id_reused(record: &InteractionRecord, first: Uuid) -> Error {
    Error::FailedPrecondition {
        reason: idempotency::REUSED,
        message: format!(
            "source {} external_id {} already names interaction {first}, which says something else; \
             a new interaction needs a new external_id",
            quote(&record.source),
            quote(&record.external_id)
        ),
    }
}

fn id(field: &str, raw: &str) -> Result<Uuid, Error> {
    Uuid::try_parse(raw.trim()).map_err(|_| Error::invalid(field, "must be an id (a UUID)"))
}

#[tonic::async_trait]
impl InteractionsService for InteractionsApi {
    async fn record_interaction(
        &self,
        request: Request<pb::RecordInteractionRequest>,
    ) -> Result<Response<pb::Interaction>, Status> {
        let caller = Caller::of(&request)?;
        let body = request.into_inner();
        let mut input = body.interaction.ok_or_else(|| Error::invalid("interaction", "is required"))?;
        if let Some(lookup) = &body.contact_lookup
            && input.contact_id.trim().is_empty()
        {
            input.contact_id = self.resolve(&caller, lookup).await?;
        }
        let mut violations = Violations::new();
        let record = validate::interaction(&mut violations, "interaction", &input, Utc::now());
        violations.into_result()?;
        let outcome = self
            .store
            .store(std::slice::from_ref(&record), &caller.request_id, false, Turn::alone(Stage::Started))
            .await?;
        let stored = match outcome.first() {
            Some(Stored::New(_)) => record,
            Some(Stored::Duplicate(first)) => self.store.get(*first).await?,
            Some(Stored::Conflict(first)) => return Err(external_id_reused(&record, *first).into()),
            None => return Err(Error::Internal(anyhow::anyhow!("a batch of one returned no outcome")).into()),
        };
        Ok(Response::new(stored.to_proto()))
    }

    type IngestInteractionsStream = IngestStream;

    async fn ingest_interactions(
        &self,
        request: Request<Streaming<pb::IngestInteractionsRequest>>,
    ) -> Result<Response<IngestStream>, Status> {
        let caller = Caller::of(&request)?;
        Ok(Response::new(ingest(self.store.clone(), request.into_inner(), caller.request_id)))
    }

    async fn upload_interactions(
        &self,
        request: Request<Streaming<pb::IngestInteractionsRequest>>,
    ) -> Result<Response<pb::UploadInteractionsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let mut acks = ingest(self.store.clone(), request.into_inner(), caller.request_id);
        let mut summary = pb::UploadInteractionsResponse::default();
        while let Some(ack) = acks.next().await {
            let ack = ack?;
            summary.batches += 1;
            for (index, result) in ack.results.into_iter().enumerate() {
                match result.outcome() {
                    pb::IngestOutcome::Stored => summary.stored += 1,
                    pb::IngestOutcome::Duplicate => summary.duplicates += 1,
                    pb::IngestOutcome::Rejected | pb::IngestOutcome::Unspecified => {
                        summary.rejected += 1;
                        if summary.rejections.len() < MAX_REJECTIONS_LISTED {
                            summary.rejections.push(pb::RejectedItem {
                                batch_id: ack.batch_id.clone(),
                                index: index as i32,
                                error: result.error,
                                invalid_fields: result.invalid_fields,
                            });
                        }
                    }
                }
            }
        }
        Ok(Response::new(summary))
    }

    async fn get_interaction(
        &self,
        request: Request<pb::GetInteractionRequest>,
    ) -> Result<Response<pb::Interaction>, Status> {
        let interaction_id = id("id", &request.get_ref().id)?;
        Ok(Response::new(self.store.get(interaction_id).await?.to_proto()))
    }

    async fn list_interactions(
        &self,
        request: Request<pb::ListInteractionsRequest>,
    ) -> Result<Response<pb::ListInteractionsResponse>, Status> {
        let body = request.into_inner();
        let mut violations = Violations::new();
        let contact_id = Uuid::try_parse(body.contact_id.trim()).ok();
        if contact_id.is_none() {
            violations.add("contact_id", "must be a contact id (a UUID)");
        }
        let limit = page_size(body.page_size, 50, 500).unwrap_or_else(|_| {
            violations.add("page_size", "must not be negative");
            50
        });
        let mut channels = Vec::new();
        for (index, channel) in body.channels.iter().enumerate() {
            match pb::Channel::try_from(*channel) {
                Ok(pb::Channel::Unspecified) | Err(_) => {
                    violations.add(format!("channels[{index}]"), "is not a channel")
                }
                Ok(channel) => channels.push(channel.as_str_name().to_string()),
            }
        }
        let mut kinds = Vec::new();
        for (index, kind) in body.kinds.iter().enumerate() {
            match pb::Kind::try_from(*kind) {
                Ok(pb::Kind::Unspecified) | Err(_) => violations.add(format!("kinds[{index}]"), "is not a kind"),
                Ok(kind) => kinds.push(kind.as_str_name().to_string()),
            }
        }
        let mut time = |field: &str, value: &Option<prost_types::Timestamp>| -> Option<DateTime<Utc>> {
            let value = value.as_ref()?;
            let parsed = from_proto(value);
            if parsed.is_none() {
                violations.add(field, "is not a valid timestamp");
            }
            parsed
        };
        let start = time("start_time", &body.start_time);
        let end = time("end_time", &body.end_time);
        violations.into_result()?;
        let contact_id = contact_id.ok_or_else(|| Error::invalid("contact_id", "is required"))?;
        let filter = TimelineFilter { channels, kinds, start, end };
        let query = Query::builder(&format!("{SERVICE_NAME}/ListInteractions"))
            .field("contact_id", contact_id.to_string())
            .field("channels", filter.channels.join(","))
            .field("kinds", filter.kinds.join(","))
            .field("start", start.map(|t| t.to_rfc3339()).unwrap_or_default())
            .field("end", end.map(|t| t.to_rfc3339()).unwrap_or_default())
            .build();
        let before: Option<(DateTime<Utc>, Uuid)> =
            if body.page_token.is_empty() { None } else { Some(self.tokens.decode(&query, &body.page_token)?) };
        let mut records = self.store.timeline(contact_id, &filter, before, limit + 1).await?;
        let more = records.len() as i64 > limit;
        records.truncate(limit as usize);
        let next_page_token = match records.last() {
            Some(last) if more => self.tokens.encode(&query, &(last.occurred_at, last.id))?,
            _ => String::new(),
        };
        let interactions = records.iter().map(InteractionRecord::to_proto).collect();
        Ok(Response::new(pb::ListInteractionsResponse { interactions, next_page_token }))
    }

    async fn get_contact_summary(
        &self,
        request: Request<pb::GetContactSummaryRequest>,
    ) -> Result<Response<pb::ContactSummary>, Status> {
        let contact_id = id("contact_id", &request.get_ref().contact_id)?;
        Ok(Response::new(crate::summary::summary(&self.store.pool, contact_id).await?))
    }

    async fn list_overdue_invoices(
        &self,
        request: Request<pb::ListOverdueInvoicesRequest>,
    ) -> Result<Response<pb::ListOverdueInvoicesResponse>, Status> {
        let body = request.into_inner();
        let limit = page_size(body.page_size, 50, 500)?;
        let query = Query::builder(&format!("{SERVICE_NAME}/ListOverdueInvoices")).build();
        let after = if body.page_token.is_empty() { None } else { Some(self.tokens.decode(&query, &body.page_token)?) };
        let mut reads = self.store.reads.acquire().await.map_err(Error::from)?;
        let mut found = crate::invoices::list_overdue(&mut reads, after, limit + 1).await?;
        let more = found.len() as i64 > limit;
        found.truncate(limit as usize);
        let next_page_token = match found.last() {
            Some((_, _, cursor)) if more => self.tokens.encode(&query, cursor)?,
            _ => String::new(),
        };
        let today = Utc::now().date_naive();
        let invoices = found
            .into_iter()
            .map(|(invoice, due, _)| pb::OverdueInvoice {
                invoice: Some(invoice.to_proto()),
                days_overdue: (today - due).num_days(),
            })
            .collect();
        Ok(Response::new(pb::ListOverdueInvoicesResponse { invoices, next_page_token }))
    }

    async fn check_contact_frequency(
        &self,
        request: Request<pb::CheckContactFrequencyRequest>,
    ) -> Result<Response<pb::CheckContactFrequencyResponse>, Status> {
        let body = request.into_inner();
        let mut violations = Violations::new();
        let contact_id = Uuid::try_parse(body.contact_id.trim()).ok();
        if contact_id.is_none() {
            violations.add("contact_id", "must be a contact id (a UUID)");
        }
        let consent = pb::Channel::try_from(body.channel).ok().and_then(crate::frequency::consent_channel);
        if consent.is_none() {
            violations.add(
                "channel",
                "must be an outbound channel: CHANNEL_EMAIL, CHANNEL_PHONE, CHANNEL_SMS or CHANNEL_POST",
            );
        }
        violations.into_result()?;
        let (Some(contact_id), Some(consent)) = (contact_id, consent) else {
            return Err(Error::invalid("contact_id", "is required").into());
        };
        Ok(Response::new(crate::frequency::check(&self.store.pool, contact_id, consent).await?))
    }

    type SubscribeStream = SubscribeStream;

    async fn subscribe(&self, request: Request<SubscribeRequest>) -> Result<Response<SubscribeStream>, Status> {
        self.feed.subscribe(request)
    }

    async fn list_events(&self, request: Request<ListEventsRequest>) -> Result<Response<ListEventsResponse>, Status> {
        self.feed.list_events(request).await
    }
}

/// Validates one ingest message and stores its valid items in one transaction;
/// the acknowledgement has one result per item, in order.
async fn ingest_batch(
    store: &InteractionStore,
    batch: pb::IngestInteractionsRequest,
    request_id: &str,
    turn: Turn,
) -> Result<pb::IngestInteractionsResponse, Error> {
    if batch.interactions.len() > MAX_BATCH {
        return Err(Error::invalid(
            "interactions",
            format!("must have at most {MAX_BATCH} items per message (got {})", batch.interactions.len()),
        ));
    }
    crm_platform::foreground::bulk_batch();
    let now = Utc::now();
    let mut results = vec![pb::IngestItemResult::default(); batch.interactions.len()];
    let mut positions = Vec::with_capacity(batch.interactions.len());
    let mut records = Vec::with_capacity(batch.interactions.len());
    for (index, item) in batch.interactions.iter().enumerate() {
        let mut violations = Violations::new();
        let record = validate::interaction(&mut violations, "interaction", item, now);
        if record.source.is_empty() {
            violations.add(
                "interaction.source",
                "is required in a bulk ingest (with external_id), so a resend is recognised",
            );
        }
        match violations.into_result() {
            Ok(()) => {
                positions.push(index);
                records.push(record);
            }
            Err(Error::InvalidArgument(violations)) => {
                results[index] = pb::IngestItemResult {
                    outcome: pb::IngestOutcome::Rejected as i32,
                    error: violations
                        .iter()
                        .map(|v| format!("{}: {}", v.field, v.description))
                        .collect::<Vec<_>>()
                        .join("; "),
                    invalid_fields: violations.iter().map(|v| v.field.clone()).collect(),
                    ..Default::default()
                };
            }
            Err(other) => return Err(other),
        }
    }
    let outcomes = store.store(&records, request_id, true, turn).await?;
    for ((index, record), outcome) in positions.into_iter().zip(&records).zip(outcomes) {
        let (outcome, id) = match outcome {
            Stored::New(id) => (pb::IngestOutcome::Stored, id),
            Stored::Duplicate(id) => (pb::IngestOutcome::Duplicate, id),
            Stored::Conflict(first) => {
                let reason = external_id_reused(record, first);
                results[index] = pb::IngestItemResult {
                    outcome: pb::IngestOutcome::Rejected as i32,
                    error: format!("interaction.external_id: {reason}"),
                    invalid_fields: vec!["interaction.external_id".into()],
                    ..Default::default()
                };
                continue;
            }
        };
        results[index] =
            pb::IngestItemResult { outcome: outcome as i32, interaction_id: id.to_string(), ..Default::default() };
    }
    Ok(pb::IngestInteractionsResponse { batch_id: batch.batch_id, results })
}

/// An ingest stream's acknowledgements, one per batch, in order. Each batch
/// runs as its own task, up to [`INGEST_PIPELINE`] at once: while one
/// commits, the next is validated and written, on both cores. Its turn orders
/// it after the batch before (see store.rs).
fn ingest(
    store: Arc<InteractionStore>,
    batches: Streaming<pb::IngestInteractionsRequest>,
    request_id: String,
) -> IngestStream {
    let mut turns = Turn::sequence(Stage::Started);
    let acks = batches
        .map(move |batch| {
            let (store, request_id, turn) = (store.clone(), request_id.clone(), turns());
            tokio::spawn(async move { ingest_batch(&store, batch?, &request_id, turn).await.map_err(Status::from) })
        })
        .buffered(INGEST_PIPELINE)
        .map(|joined| {
            joined.unwrap_or_else(|failure| {
                Err(Error::Internal(anyhow::Error::new(failure).context("an ingest batch failed")).into())
            })
        });
    Box::pin(acks)
}
