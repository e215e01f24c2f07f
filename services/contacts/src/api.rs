//! `crm.contacts.v1.ContactsService`: each RPC validates, calls the store, maps the result.
//! The event feed is the platform's; this role only names its service.

use std::collections::HashMap;

use crm_platform::{
    Error, RoleContext,
    error::{Violations, quote},
    feed_api::{FeedApi, SubscribeStream},
    idempotency::Fingerprint,
    page_token::{PageTokens, Query, page_size},
    timestamp::from_proto,
};
use crm_proto::{
    contacts::v1::{
        self as pb,
        contacts_service_server::{ContactsService, SERVICE_NAME},
    },
    events::v1::{ListEventsRequest, ListEventsResponse, SubscribeRequest},
};
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::{
    import, matching,
    model::ContactData,
    search,
    store::{
        Actor, ContactStore,
        contacts::{Candidate, CreateOptions, ListFilter, LookupKey},
        merge::CHOOSABLE_FIELDS,
        organization_merge::CHOOSABLE_FIELDS as ORGANIZATION_CHOOSABLE_FIELDS,
        relationships::{NewRelationship, Target},
    },
    validate::{self, Region},
};

/// The most fields one update mask may name (a contact has fewer).
const MAX_MASK_PATHS: usize = 32;
/// The most contacts (or organizations) one merge folds into its survivor.
const MAX_MERGE_LOSERS: usize = 50;

/// A merge request checked: the survivor, the losers, and the chosen source of each field.
struct MergeRequest {
    survivor: Uuid,
    losers: Vec<Uuid>,
    chosen: HashMap<String, Uuid>,
}

impl MergeRequest {
    /// Checks a merge of `what`s (contact, organization) whose single-valued
    /// fields `choosable` may be given a source.
    fn validate(
        what: &str,
        survivor_id: &str,
        loser_ids: &[String],
        field_sources: &HashMap<String, String>,
        choosable: &[&str],
    ) -> Result<MergeRequest, Error> {
        let mut violations = Violations::new();
        let survivor = Uuid::try_parse(survivor_id.trim()).ok();
        if survivor.is_none() {
            violations.add("survivor_id", format!("must be {} id (a UUID)", article(what)));
        }
        if loser_ids.is_empty() {
            violations.add("loser_ids", format!("must name at least one {what} to merge into the survivor"));
        }
        // Counts before entries: the work is bounded by the limits, not by what was sent.
        let loser_ids = violations.within("loser_ids", loser_ids, MAX_MERGE_LOSERS);
        let field_sources: Vec<(&String, &String)> = if field_sources.len() > choosable.len() {
            violations.add("field_sources", format!("must name at most {} fields", choosable.len()));
            Vec::new()
        } else {
            field_sources.iter().collect()
        };
        let mut losers = Vec::new();
        for (index, raw) in loser_ids.iter().enumerate() {
            match Uuid::try_parse(raw.trim()) {
                Ok(loser) if Some(loser) == survivor => {
                    violations.add(format!("loser_ids[{index}]"), "is the survivor");
                }
                Ok(loser) => losers.push(loser),
                Err(_) => {
                    violations.add(format!("loser_ids[{index}]"), format!("must be {} id (a UUID)", article(what)))
                }
            }
        }
        let mut chosen = HashMap::new();
        for (field, source) in field_sources {
            if !choosable.contains(&field.as_str()) {
                violations.add(
                    format!("field_sources[{}]", quote(field)),
                    format!("is not a single-valued field; choose among {}", choosable.join(", ")),
                );
                continue;
            }
            match Uuid::try_parse(source.trim()) {
                Ok(source) => {
                    chosen.insert(field.clone(), source);
                }
                Err(_) => violations
                    .add(format!("field_sources[{}]", quote(field)), format!("must be {} id (a UUID)", article(what))),
            }
        }
        violations.into_result()?;
        let survivor = survivor.ok_or_else(|| Error::invalid("survivor_id", "is required"))?;
        Ok(MergeRequest { survivor, losers, chosen })
    }
}

/// "a contact", "an organization".
fn article(what: &str) -> String {
    if what.starts_with(['a', 'e', 'i', 'o', 'u']) { format!("an {what}") } else { format!("a {what}") }
}

pub struct ContactsApi {
    feed: FeedApi,
    store: ContactStore,
    region: Region,
    tokens: PageTokens,
}

impl ContactsApi {
    pub async fn new(ctx: &RoleContext, store: ContactStore, region: Region) -> anyhow::Result<Self> {
        Ok(ContactsApi {
            feed: FeedApi::start(ctx, SERVICE_NAME).await?,
            store,
            region,
            tokens: ctx.page_tokens.clone(),
        })
    }

    fn contact(&self, field: &str, input: Option<&pb::Contact>) -> Result<ContactData, Error> {
        let Some(input) = input else { return Err(Error::invalid(field, "is required")) };
        let mut violations = Violations::new();
        let data = validate::contact(&mut violations, field, input, self.region);
        violations.into_result()?;
        Ok(data)
    }

    fn cursor(&self, query: &Query, token: &str) -> Result<Option<Uuid>, Error> {
        if token.is_empty() { Ok(None) } else { self.tokens.decode(query, token).map(Some) }
    }

    fn next_token(&self, query: &Query, last: Option<Uuid>, more: bool) -> Result<String, Error> {
        match last {
            Some(last) if more => self.tokens.encode(query, &last),
            _ => Ok(String::new()),
        }
    }
}

/// The filters `ListContacts` and `ExportContacts` share, as either request carries them.
struct ListFields<'a> {
    lifecycle_stage: i32,
    tag: &'a str,
    owner: &'a str,
    organization_id: &'a str,
    updated_since: Option<&'a prost_types::Timestamp>,
    show_deleted: bool,
    needs_review: bool,
}

impl<'a> From<&'a pb::ListContactsRequest> for ListFields<'a> {
    fn from(body: &'a pb::ListContactsRequest) -> Self {
        ListFields {
            lifecycle_stage: body.lifecycle_stage,
            tag: &body.tag,
            owner: &body.owner,
            organization_id: &body.organization_id,
            updated_since: body.updated_since.as_ref(),
            show_deleted: body.show_deleted,
            needs_review: body.needs_review,
        }
    }
}

impl<'a> From<&'a pb::ExportContactsRequest> for ListFields<'a> {
    fn from(body: &'a pb::ExportContactsRequest) -> Self {
        ListFields {
            lifecycle_stage: body.lifecycle_stage,
            tag: &body.tag,
            owner: &body.owner,
            organization_id: &body.organization_id,
            updated_since: body.updated_since.as_ref(),
            show_deleted: body.show_deleted,
            needs_review: body.needs_review,
        }
    }
}

/// The filter the fields ask for; what is wrong is added to `violations`.
fn list_filter(violations: &mut Violations, fields: ListFields<'_>) -> ListFilter {
    let ListFields { lifecycle_stage, tag, owner, organization_id, updated_since, show_deleted, needs_review } = fields;
    let lifecycle_stage = match pb::LifecycleStage::try_from(lifecycle_stage) {
        Ok(pb::LifecycleStage::Unspecified) => None,
        Ok(stage) => Some(stage.as_str_name().to_string()),
        Err(_) => {
            violations.add("lifecycle_stage", format!("{lifecycle_stage} is not a lifecycle stage"));
            None
        }
    };
    let organization_id = if organization_id.is_empty() {
        None
    } else {
        Uuid::try_parse(organization_id).map(Some).unwrap_or_else(|_| {
            violations.add("organization_id", "must be an organization id (a UUID)");
            None
        })
    };
    let updated_since = updated_since.and_then(|time| {
        let parsed = from_proto(time);
        if parsed.is_none() {
            violations.add("updated_since", "is not a valid timestamp");
        }
        parsed
    });
    ListFilter {
        lifecycle_stage,
        tag: Some(tag.trim().to_lowercase()).filter(|tag| !tag.is_empty()),
        owner: Some(owner.trim().to_string()).filter(|owner| !owner.is_empty()),
        organization_id,
        updated_since,
        show_deleted,
        needs_review,
    }
}

/// An export's batches.
pub type ExportStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<pb::ExportContactsResponse, Status>> + Send>>;

/// Contacts per batch of an export.
const EXPORT_BATCH: i64 = 1000;

/// Every contact passing `filter` after `start_after`, a batch at a time by
/// id (ids are UUIDv7: oldest first); the next batch is read from the
/// database while this one is encoded and sent, and at most one more waits.
fn export(store: ContactStore, filter: ListFilter, start_after: Option<Uuid>) -> ExportStream {
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let mut after = start_after;
        loop {
            let batch = match store.list(&filter, after, EXPORT_BATCH).await {
                Ok(batch) => batch,
                Err(error) => {
                    let _ = sender.send(Err(Status::from(error))).await;
                    return;
                }
            };
            let Some(last) = batch.last() else { return };
            after = Some(last.meta.id);
            let full = batch.len() as i64 == EXPORT_BATCH;
            let contacts = batch.iter().map(|record| record.to_proto()).collect();
            // The client hung up: stop reading.
            if sender.send(Ok(pb::ExportContactsResponse { contacts })).await.is_err() || !full {
                return;
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))
}

fn id(field: &str, raw: &str) -> Result<Uuid, Error> {
    Uuid::try_parse(raw.trim()).map_err(|_| Error::invalid(field, "must be an id (a UUID)"))
}

/// The stored contact with the fields named in `paths` taken from `input`.
fn overlay(existing: &pb::Contact, input: &pb::Contact, paths: &[String]) -> Result<pb::Contact, Error> {
    let mut merged = existing.clone();
    let mut violations = Violations::new();
    if paths.is_empty() {
        violations.add("update_mask", "must name the fields to change, for example given_name");
    }
    if paths.len() > MAX_MASK_PATHS {
        violations.add("update_mask.paths", format!("must name at most {MAX_MASK_PATHS} fields"));
        return Err(violations.into_result().unwrap_err());
    }
    for (index, path) in paths.iter().enumerate() {
        match path.as_str() {
            "given_name" => merged.given_name = input.given_name.clone(),
            "family_name" => merged.family_name = input.family_name.clone(),
            "display_name" => merged.display_name = input.display_name.clone(),
            "emails" => merged.emails = input.emails.clone(),
            "phones" => merged.phones = input.phones.clone(),
            "addresses" => merged.addresses = input.addresses.clone(),
            "birth_date" => merged.birth_date = input.birth_date,
            "lifecycle_stage" => merged.lifecycle_stage = input.lifecycle_stage,
            "owner" => merged.owner = input.owner.clone(),
            "tags" => merged.tags = input.tags.clone(),
            "attributes" => merged.attributes = input.attributes.clone(),
            "consents" => merged.consents = input.consents.clone(),
            "max_contacts_per_week" => merged.max_contacts_per_week = input.max_contacts_per_week,
            "external_ids" => merged.external_ids = input.external_ids.clone(),
            // Stored beside the data; the caller of `overlay` applies it.
            "needs_review" => {}
            other => violations.add(
                format!("update_mask.paths[{index}]"),
                format!("{} is not a field that can be updated", quote(other)),
            ),
        }
    }
    violations.into_result()?;
    Ok(merged)
}

fn organization_overlay(
    existing: &pb::Organization,
    input: &pb::Organization,
    paths: &[String],
) -> Result<pb::Organization, Error> {
    let mut merged = existing.clone();
    let mut violations = Violations::new();
    if paths.is_empty() {
        violations.add("update_mask", "must name the fields to change, for example name");
    }
    if paths.len() > MAX_MASK_PATHS {
        violations.add("update_mask.paths", format!("must name at most {MAX_MASK_PATHS} fields"));
        return Err(violations.into_result().unwrap_err());
    }
    for (index, path) in paths.iter().enumerate() {
        match path.as_str() {
            "name" => merged.name = input.name.clone(),
            "kind" => merged.kind = input.kind,
            "domain" => merged.domain = input.domain.clone(),
            "addresses" => merged.addresses = input.addresses.clone(),
            "external_ids" => merged.external_ids = input.external_ids.clone(),
            "tags" => merged.tags = input.tags.clone(),
            "attributes" => merged.attributes = input.attributes.clone(),
            other => violations.add(
                format!("update_mask.paths[{index}]"),
                format!("{} is not a field that can be updated", quote(other)),
            ),
        }
    }
    violations.into_result()?;
    Ok(merged)
}

/// What makes two creates the same request: everything but the key itself.
fn create_fingerprint(mut request: pb::CreateContactRequest) -> Vec<u8> {
    request.request_id.clear();
    let attributes =
        request.contact.as_mut().map(|contact| std::mem::take(&mut contact.attributes)).unwrap_or_default();
    Fingerprint::of(&request).map("contact.attributes", &attributes).finish()
}

fn pair(contact_id: Uuid, candidate: &Candidate) -> pb::DuplicatePair {
    pb::DuplicatePair {
        contact_id: contact_id.to_string(),
        other_contact_id: candidate.record.meta.id.to_string(),
        score: candidate.found.score,
        reasons: candidate
            .found
            .reasons
            .iter()
            .map(|(signal, weight)| pb::MatchReason { signal: signal.to_string(), weight: *weight })
            .collect(),
        model_version: candidate.model_version.clone(),
    }
}

/// Groups of three or more contacts connected by likely-duplicate pairs.
fn clusters(pairs: &[pb::DuplicatePair]) -> Vec<pb::DuplicateCluster> {
    let mut ids: Vec<&str> =
        pairs.iter().flat_map(|found| [found.contact_id.as_str(), found.other_contact_id.as_str()]).collect();
    ids.sort();
    ids.dedup();
    let index = |id: &str| ids.binary_search(&id).unwrap_or(0);
    let mut parent: Vec<usize> = (0..ids.len()).collect();
    fn root(parent: &[usize], mut at: usize) -> usize {
        while parent[at] != at {
            at = parent[at];
        }
        at
    }
    for found in pairs {
        let (a, b) = (root(&parent, index(&found.contact_id)), root(&parent, index(&found.other_contact_id)));
        parent[a.max(b)] = a.min(b);
    }
    let mut groups: HashMap<usize, Vec<String>> = HashMap::new();
    for (at, id) in ids.iter().enumerate() {
        groups.entry(root(&parent, at)).or_default().push(id.to_string());
    }
    let mut clusters: Vec<pb::DuplicateCluster> = groups
        .into_values()
        .filter(|members| members.len() >= 3)
        .map(|contact_ids| pb::DuplicateCluster { contact_ids })
        .collect();
    clusters.sort_by(|a, b| a.contact_ids.cmp(&b.contact_ids));
    clusters
}

fn relationship_kind(violations: &mut Violations, input: &pb::Relationship) -> String {
    match pb::RelationshipType::try_from(input.r#type) {
        Ok(pb::RelationshipType::Unspecified) | Err(_) => {
            violations.add(
                "relationship.type",
                "must be a relationship type (RELATIONSHIP_TYPE_CUSTOM with custom_type for others)",
            );
            String::new()
        }
        Ok(kind) => kind.as_str_name().to_string(),
    }
}

#[tonic::async_trait]
impl ContactsService for ContactsApi {
    async fn create_contact(
        &self,
        request: Request<pb::CreateContactRequest>,
    ) -> Result<Response<pb::Contact>, Status> {
        let actor = Actor::of(&request)?;
        let body = request.into_inner();
        let data = self.contact("contact", body.contact.as_ref())?;
        let override_reason = body.override_reason.trim().to_string();
        if body.allow_duplicate && (override_reason.is_empty() || override_reason.chars().count() > 500) {
            return Err(Error::invalid(
                "override_reason",
                "must say why (1 to 500 characters) when allow_duplicate is set",
            )
            .into());
        }
        if body.request_id.chars().count() > 200 {
            return Err(Error::invalid("request_id", "must be at most 200 characters").into());
        }
        let idempotency_key = if body.request_id.trim().is_empty() {
            actor.request_id.clone()
        } else {
            body.request_id.trim().to_string()
        };
        let options = CreateOptions {
            allow_duplicate: body.allow_duplicate,
            override_reason,
            idempotency_key,
            fingerprint: create_fingerprint(body),
            needs_review: false,
        };
        let record = self.store.create(data, options, &actor).await?;
        Ok(Response::new(record.to_proto()))
    }

    async fn get_contact(&self, request: Request<pb::GetContactRequest>) -> Result<Response<pb::Contact>, Status> {
        let id = id("id", &request.get_ref().id)?;
        Ok(Response::new(self.store.get(id).await?.to_proto()))
    }

    async fn update_contact(
        &self,
        request: Request<pb::UpdateContactRequest>,
    ) -> Result<Response<pb::Contact>, Status> {
        let actor = Actor::of(&request)?;
        let body = request.into_inner();
        let input = body.contact.ok_or_else(|| Error::invalid("contact", "is required"))?;
        let contact_id = id("contact.id", &input.id)?;
        let paths = body.update_mask.map(|mask| mask.paths).unwrap_or_default();
        let region = self.region;
        let record = self
            .store
            .update(contact_id, &input.etag, &actor, |existing| {
                let merged = overlay(&existing.to_proto(), &input, &paths)?;
                let mut violations = Violations::new();
                let data = validate::contact(&mut violations, "contact", &merged, region);
                violations.into_result()?;
                // `needs_review` in the mask: a person reviewed the flag (or raised one).
                let reviewed = paths.iter().any(|path| path == "needs_review").then_some(input.needs_review);
                Ok((data, reviewed))
            })
            .await?;
        Ok(Response::new(record.to_proto()))
    }

    async fn list_contacts(
        &self,
        request: Request<pb::ListContactsRequest>,
    ) -> Result<Response<pb::ListContactsResponse>, Status> {
        let body = request.into_inner();
        let limit = page_size(body.page_size, 50, 500)?;
        let mut violations = Violations::new();
        let filter = list_filter(&mut violations, ListFields::from(&body));
        violations.into_result()?;
        let query = Query::builder(&format!("{SERVICE_NAME}/ListContacts"))
            .field("lifecycle_stage", filter.lifecycle_stage.clone().unwrap_or_default())
            .field("tag", filter.tag.clone().unwrap_or_default())
            .field("owner", filter.owner.clone().unwrap_or_default())
            .field("organization_id", body.organization_id.as_bytes())
            .field("updated_since", filter.updated_since.map(|time| time.to_rfc3339()).unwrap_or_default())
            .field("show_deleted", if body.show_deleted { "1" } else { "0" })
            .field("needs_review", if body.needs_review { "1" } else { "0" })
            .build();
        let after = self.cursor(&query, &body.page_token)?;
        let mut records = self.store.list(&filter, after, limit + 1).await?;
        let more = records.len() as i64 > limit;
        records.truncate(limit as usize);
        let next_page_token = self.next_token(&query, records.last().map(|record| record.meta.id), more)?;
        let contacts = records.iter().map(|record| record.to_proto()).collect();
        Ok(Response::new(pb::ListContactsResponse { contacts, next_page_token }))
    }

    type ExportContactsStream = ExportStream;

    async fn export_contacts(
        &self,
        request: Request<pb::ExportContactsRequest>,
    ) -> Result<Response<ExportStream>, Status> {
        let body = request.into_inner();
        let mut violations = Violations::new();
        let filter = list_filter(&mut violations, ListFields::from(&body));
        let start_after = match body.start_after.trim() {
            "" => None,
            raw => Uuid::try_parse(raw).map(Some).unwrap_or_else(|_| {
                violations.add("start_after", "must be a contact id (a UUID), the last one received");
                None
            }),
        };
        violations.into_result()?;
        Ok(Response::new(export(self.store.clone(), filter, start_after)))
    }

    async fn delete_contact(
        &self,
        request: Request<pb::DeleteContactRequest>,
    ) -> Result<Response<pb::Contact>, Status> {
        let actor = Actor::of(&request)?;
        let contact_id = id("id", &request.get_ref().id)?;
        let record = self.store.delete(contact_id, &request.get_ref().etag, &actor).await?;
        Ok(Response::new(record.to_proto()))
    }

    async fn lookup_contact(
        &self,
        request: Request<pb::LookupContactRequest>,
    ) -> Result<Response<pb::Contact>, Status> {
        use pb::lookup_contact_request::Key;
        let key = match &request.get_ref().key {
            None => return Err(Error::invalid("key", "set one of email, phone or external_id").into()),
            Some(Key::Email(email)) => LookupKey::Blocking(matching::email_key(
                &validate::email_address(email).map_err(|reason| Error::invalid("email", reason))?,
            )),
            Some(Key::Phone(phone)) => LookupKey::Blocking(matching::phone_key(
                &validate::phone_number(phone, self.region).map_err(|reason| Error::invalid("phone", reason))?,
            )),
            Some(Key::ExternalId(external)) => {
                let mut violations = Violations::new();
                let ids = validate::external_ids(&mut violations, "external_id", std::slice::from_ref(external));
                violations.into_result()?;
                let external = ids.into_iter().next().ok_or_else(|| Error::invalid("external_id", "is required"))?;
                LookupKey::External { source: external.source, id: external.id }
            }
        };
        Ok(Response::new(self.store.lookup(&key).await?.to_proto()))
    }

    async fn search_contacts(
        &self,
        request: Request<pb::SearchContactsRequest>,
    ) -> Result<Response<pb::SearchContactsResponse>, Status> {
        let body = request.into_inner();
        let limit = page_size(body.page_size, 20, 100)?;
        let raw = body.query.trim();
        let length = raw.chars().count();
        if !(2..=200).contains(&length) {
            return Err(Error::invalid("query", "must be 2 to 200 characters").into());
        }
        // A phone number (six digits or more, parsed in the default region)
        // is searched as its E.164 form; anything else as words, emails and domains.
        let phone = match validate::phone_number(raw, self.region) {
            Ok(e164) if raw.chars().filter(char::is_ascii_digit).count() >= 6 => Some(e164),
            _ => None,
        };
        let tokens = search::tokens(raw, phone.as_deref());
        if tokens.is_empty() {
            return Err(Error::invalid(
                "query",
                "must hold a word of two letters or more, an email, a domain or a phone number",
            )
            .into());
        }
        let results = self.store.search(tokens, raw, limit).await?;
        let results = results
            .into_iter()
            .map(|(record, score)| pb::SearchResult { contact: Some(record.to_proto()), score })
            .collect();
        Ok(Response::new(pb::SearchContactsResponse { results }))
    }

    async fn find_duplicates(
        &self,
        request: Request<pb::FindDuplicatesRequest>,
    ) -> Result<Response<pb::FindDuplicatesResponse>, Status> {
        let body = request.into_inner();
        if !(0.0..=1.0).contains(&body.min_score) {
            return Err(Error::invalid("min_score", "must be between 0 and 1").into());
        }
        let min_score = if body.min_score == 0.0 { self.store.threshold } else { body.min_score };
        if !body.contact_id.is_empty() {
            let (record, candidates) = self.store.duplicates_of(id("contact_id", &body.contact_id)?, min_score).await?;
            let pairs: Vec<pb::DuplicatePair> =
                candidates.iter().map(|candidate| pair(record.meta.id, candidate)).collect();
            let clusters = clusters(&pairs);
            return Ok(Response::new(pb::FindDuplicatesResponse { pairs, clusters, next_page_token: String::new() }));
        }
        let limit = page_size(body.page_size, 200, 1000)?;
        let query =
            Query::builder(&format!("{SERVICE_NAME}/FindDuplicates")).field("min_score", min_score.to_string()).build();
        let after = self.cursor(&query, &body.page_token)?;
        let (found, next) = self.store.scan_duplicates(after, limit, min_score).await?;
        let mut all_pairs = Vec::new();
        for (contact_id, candidates) in &found {
            all_pairs.extend(candidates.iter().map(|candidate| pair(*contact_id, candidate)));
        }
        let clusters = clusters(&all_pairs);
        // Each pair once: from the contact with the smaller id.
        let mut pairs: Vec<pb::DuplicatePair> =
            all_pairs.into_iter().filter(|found| found.contact_id < found.other_contact_id).collect();
        pairs.sort_by(|a, b| b.score.total_cmp(&a.score));
        let next_page_token = self.next_token(&query, next, next.is_some())?;
        Ok(Response::new(pb::FindDuplicatesResponse { pairs, clusters, next_page_token }))
    }

    async fn merge_contacts(
        &self,
        request: Request<pb::MergeContactsRequest>,
    ) -> Result<Response<pb::MergeContactsResponse>, Status> {
        let actor = Actor::of(&request)?;
        let body = request.into_inner();
        let merge = MergeRequest::validate(
            "contact",
            &body.survivor_id,
            &body.loser_ids,
            &body.field_sources,
            CHOOSABLE_FIELDS,
        )?;
        let record = self.store.merge(merge.survivor, &merge.losers, &merge.chosen, &body.etag, &actor).await?;
        Ok(Response::new(pb::MergeContactsResponse { contact: Some(record.to_proto()) }))
    }

    type ImportContactsStream = import::ResultStream;

    async fn import_contacts(
        &self,
        request: Request<Streaming<pb::ImportContactsRequest>>,
    ) -> Result<Response<Self::ImportContactsStream>, Status> {
        let actor = Actor::of(&request)?;
        let stream = import::run(self.store.clone(), self.region, actor, request.into_inner());
        Ok(Response::new(stream))
    }

    async fn erase_contact(
        &self,
        request: Request<pb::EraseContactRequest>,
    ) -> Result<Response<pb::EraseContactResponse>, Status> {
        let actor = Actor::of(&request)?;
        let body = request.into_inner();
        let contact_id = id("id", &body.id)?;
        let reason = body.reason.trim();
        if reason.chars().count() > 200 {
            return Err(Error::invalid("reason", "must be at most 200 characters").into());
        }
        let record = self.store.erase(contact_id, reason, &actor).await?;
        Ok(Response::new(pb::EraseContactResponse { contact: Some(record.to_proto()) }))
    }

    async fn create_organization(
        &self,
        request: Request<pb::CreateOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        let actor = Actor::of(&request)?;
        let body = request.into_inner();
        let input = body.organization.ok_or_else(|| Error::invalid("organization", "is required"))?;
        let mut violations = Violations::new();
        let data = validate::organization(&mut violations, "organization", &input);
        let override_reason = body.override_reason.trim();
        if body.allow_duplicate && (override_reason.is_empty() || override_reason.chars().count() > 500) {
            violations.add("override_reason", "must say why (1 to 500 characters) when allow_duplicate is set");
        }
        violations.into_result()?;
        let record = self.store.create_organization(data, body.allow_duplicate, override_reason, &actor).await?;
        Ok(Response::new(record.to_proto()))
    }

    async fn fit_matcher(
        &self,
        _request: Request<pb::FitMatcherRequest>,
    ) -> Result<Response<pb::FitMatcherResponse>, Status> {
        let fitted = crate::store::matcher::fit(&self.store.pool).await?;
        let response = pb::FitMatcherResponse {
            model_version: fitted.model.version.clone(),
            contacts: fitted.contacts as i32,
            random_pairs: fitted.random_pairs as i32,
            blocked_pairs: fitted.blocked_pairs as i32,
            iterations: fitted.iterations as i32,
            prior: fitted.model.prior,
        };
        self.store.matcher.install(fitted.model);
        Ok(Response::new(response))
    }

    async fn find_duplicate_organizations(
        &self,
        request: Request<pb::FindDuplicateOrganizationsRequest>,
    ) -> Result<Response<pb::FindDuplicateOrganizationsResponse>, Status> {
        let body = request.into_inner();
        let limit = page_size(body.page_size, 200, 1000)?;
        let query = Query::builder(&format!("{SERVICE_NAME}/FindDuplicateOrganizations")).build();
        let after = self.cursor(&query, &body.page_token)?;
        let (found, next) = self.store.scan_organization_duplicates(after, limit).await?;
        let pairs = found
            .into_iter()
            .map(|(first, other, reasons)| pb::DuplicateOrganizationPair {
                organization_id: first.to_string(),
                other_organization_id: other.to_string(),
                reasons: reasons.into_iter().map(String::from).collect(),
            })
            .collect();
        let next_page_token = self.next_token(&query, next, next.is_some())?;
        Ok(Response::new(pb::FindDuplicateOrganizationsResponse { pairs, next_page_token }))
    }

    async fn merge_organizations(
        &self,
        request: Request<pb::MergeOrganizationsRequest>,
    ) -> Result<Response<pb::MergeOrganizationsResponse>, Status> {
        let actor = Actor::of(&request)?;
        let body = request.into_inner();
        let merge = MergeRequest::validate(
            "organization",
            &body.survivor_id,
            &body.loser_ids,
            &body.field_sources,
            ORGANIZATION_CHOOSABLE_FIELDS,
        )?;
        let record =
            self.store.merge_organizations(merge.survivor, &merge.losers, &merge.chosen, &body.etag, &actor).await?;
        Ok(Response::new(pb::MergeOrganizationsResponse { organization: Some(record.to_proto()) }))
    }

    async fn get_organization(
        &self,
        request: Request<pb::GetOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        let organization_id = id("id", &request.get_ref().id)?;
        Ok(Response::new(self.store.get_organization(organization_id).await?.to_proto()))
    }

    async fn update_organization(
        &self,
        request: Request<pb::UpdateOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        let actor = Actor::of(&request)?;
        let body = request.into_inner();
        let input = body.organization.ok_or_else(|| Error::invalid("organization", "is required"))?;
        let organization_id = id("organization.id", &input.id)?;
        let paths = body.update_mask.map(|mask| mask.paths).unwrap_or_default();
        let record = self
            .store
            .update_organization(organization_id, &input.etag, &actor, |existing| {
                let merged = organization_overlay(&existing.to_proto(), &input, &paths)?;
                let mut violations = Violations::new();
                let data = validate::organization(&mut violations, "organization", &merged);
                violations.into_result()?;
                Ok(data)
            })
            .await?;
        Ok(Response::new(record.to_proto()))
    }

    async fn list_organizations(
        &self,
        request: Request<pb::ListOrganizationsRequest>,
    ) -> Result<Response<pb::ListOrganizationsResponse>, Status> {
        let body = request.into_inner();
        let limit = page_size(body.page_size, 50, 500)?;
        let query = Query::builder(&format!("{SERVICE_NAME}/ListOrganizations"))
            .field("show_deleted", if body.show_deleted { "1" } else { "0" })
            .build();
        let after = self.cursor(&query, &body.page_token)?;
        let mut records = self.store.list_organizations(after, limit + 1, body.show_deleted).await?;
        let more = records.len() as i64 > limit;
        records.truncate(limit as usize);
        let next_page_token = self.next_token(&query, records.last().map(|record| record.id), more)?;
        let organizations = records.iter().map(|record| record.to_proto()).collect();
        Ok(Response::new(pb::ListOrganizationsResponse { organizations, next_page_token }))
    }

    async fn delete_organization(
        &self,
        request: Request<pb::DeleteOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        let actor = Actor::of(&request)?;
        let organization_id = id("id", &request.get_ref().id)?;
        let record = self.store.delete_organization(organization_id, &request.get_ref().etag, &actor).await?;
        Ok(Response::new(record.to_proto()))
    }

    async fn create_relationship(
        &self,
        request: Request<pb::CreateRelationshipRequest>,
    ) -> Result<Response<pb::Relationship>, Status> {
        use pb::relationship::Target as Side;
        let actor = Actor::of(&request)?;
        let input = request.into_inner().relationship.ok_or_else(|| Error::invalid("relationship", "is required"))?;
        let mut violations = Violations::new();
        let contact_id = Uuid::try_parse(input.contact_id.trim()).ok();
        if contact_id.is_none() {
            violations.add("relationship.contact_id", "must be a contact id (a UUID)");
        }
        let target = match &input.target {
            Some(Side::OrganizationId(raw)) => {
                Uuid::try_parse(raw.trim()).ok().map(Target::Organization).or_else(|| {
                    violations.add("relationship.organization_id", "must be an organization id (a UUID)");
                    None
                })
            }
            Some(Side::OtherContactId(raw)) => Uuid::try_parse(raw.trim()).ok().map(Target::Contact).or_else(|| {
                violations.add("relationship.other_contact_id", "must be a contact id (a UUID)");
                None
            }),
            None => {
                violations.add("relationship.target", "set organization_id or other_contact_id");
                None
            }
        };
        let kind = relationship_kind(&mut violations, &input);
        let custom_type = input.custom_type.trim().to_string();
        let is_custom = kind == pb::RelationshipType::Custom.as_str_name();
        if is_custom && (custom_type.is_empty() || custom_type.chars().count() > 64) {
            violations.add("relationship.custom_type", "must be 1 to 64 characters for a custom relationship");
        }
        if !is_custom && !custom_type.is_empty() {
            violations.add("relationship.custom_type", "is only for RELATIONSHIP_TYPE_CUSTOM");
        }
        let start_date =
            input.start_date.as_ref().and_then(|date| validate::date(&mut violations, "relationship.start_date", date));
        let end_date =
            input.end_date.as_ref().and_then(|date| validate::date(&mut violations, "relationship.end_date", date));
        if let (Some(start), Some(end)) = (start_date, end_date)
            && end < start
        {
            violations.add("relationship.end_date", "must not be before start_date");
        }
        violations.into_result()?;
        let (Some(contact_id), Some(target)) = (contact_id, target) else {
            return Err(Error::invalid("relationship", "is incomplete").into());
        };
        let new = NewRelationship { contact_id, target, kind, custom_type, start_date, end_date };
        Ok(Response::new(self.store.create_relationship(new, &actor).await?))
    }

    async fn delete_relationship(
        &self,
        request: Request<pb::DeleteRelationshipRequest>,
    ) -> Result<Response<pb::DeleteRelationshipResponse>, Status> {
        let actor = Actor::of(&request)?;
        let relationship_id = id("id", &request.get_ref().id)?;
        self.store.delete_relationship(relationship_id, &actor).await?;
        Ok(Response::new(pb::DeleteRelationshipResponse {}))
    }

    async fn list_relationships(
        &self,
        request: Request<pb::ListRelationshipsRequest>,
    ) -> Result<Response<pb::ListRelationshipsResponse>, Status> {
        use pb::list_relationships_request::Parent;
        let body = request.into_inner();
        let limit = page_size(body.page_size, 100, 1000)?;
        let (target, parent) = match &body.parent {
            Some(Parent::ContactId(raw)) => {
                let mut conn = self.store.pool.acquire().await.map_err(Error::from)?;
                let resolved = crate::store::resolve(&mut conn, id("contact_id", raw)?).await?;
                (Target::Contact(resolved), format!("contact/{resolved}"))
            }
            Some(Parent::OrganizationId(raw)) => {
                (Target::Organization(id("organization_id", raw)?), format!("organization/{raw}"))
            }
            None => return Err(Error::invalid("parent", "set contact_id or organization_id").into()),
        };
        let query = Query::builder(&format!("{SERVICE_NAME}/ListRelationships")).field("parent", parent).build();
        let after = self.cursor(&query, &body.page_token)?;
        let mut relationships = self.store.list_relationships(target, after, limit + 1).await?;
        let more = relationships.len() as i64 > limit;
        relationships.truncate(limit as usize);
        let last = relationships.last().and_then(|relationship| Uuid::try_parse(&relationship.id).ok());
        let next_page_token = self.next_token(&query, last, more)?;
        Ok(Response::new(pb::ListRelationshipsResponse { relationships, next_page_token }))
    }

    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        use pb::list_audit_events_request::Parent;
        let body = request.into_inner();
        let limit = page_size(body.page_size, 50, 500)?;
        let resource = match &body.parent {
            Some(Parent::ContactId(raw)) => id("contact_id", raw)?,
            Some(Parent::OrganizationId(raw)) => id("organization_id", raw)?,
            None => return Err(Error::invalid("parent", "set contact_id or organization_id").into()),
        };
        let query =
            Query::builder(&format!("{SERVICE_NAME}/ListAuditEvents")).field("resource", resource.to_string()).build();
        let before = self.cursor(&query, &body.page_token)?;
        let mut reads = self.store.reads.acquire().await.map_err(Error::from)?;
        let mut audit_events = crate::store::audit::list(&mut reads, resource, before, limit + 1).await?;
        let more = audit_events.len() as i64 > limit;
        audit_events.truncate(limit as usize);
        let last = audit_events.last().and_then(|event| Uuid::try_parse(&event.id).ok());
        let next_page_token = self.next_token(&query, last, more)?;
        Ok(Response::new(pb::ListAuditEventsResponse { audit_events, next_page_token }))
    }

    type SubscribeStream = SubscribeStream;

    async fn subscribe(&self, request: Request<SubscribeRequest>) -> Result<Response<SubscribeStream>, Status> {
        self.feed.subscribe(request)
    }

    async fn list_events(&self, request: Request<ListEventsRequest>) -> Result<Response<ListEventsResponse>, Status> {
        self.feed.list_events(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusters_join_pairs_that_share_a_contact() {
        let link = |a: &str, b: &str| pb::DuplicatePair {
            contact_id: a.into(),
            other_contact_id: b.into(),
            score: 0.9,
            reasons: Vec::new(),
            model_version: "builtin".into(),
        };
        let found = clusters(&[link("a", "b"), link("b", "c"), link("x", "y")]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].contact_ids, ["a", "b", "c"]);
    }
}
