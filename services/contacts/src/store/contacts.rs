//! Contacts: create with the duplicate check, read, change, list, delete,
//! look up, search, and find duplicate candidates.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use crm_platform::{
    Error, idempotency,
    outbox::{self, NewEvent},
};
use crm_proto::contacts::v1 as pb;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{
    Actor, CONTACT_COLUMNS, ContactStore, LIVE, audit, claim_external_ids, contact_record, ensure_not_erased, load,
    search, write_data, write_external_ids, write_terms,
};
use crate::{
    matching::{self, Match},
    model::{ContactData, ContactMeta, ContactRecord},
    terms,
};

/// A live contact that may be the same person, and how likely.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub record: ContactRecord,
    pub found: Match,
    /// The matching model that scored it (`Model::version`).
    pub model_version: String,
}

/// How a create treats a likely duplicate.
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    pub allow_duplicate: bool,
    pub override_reason: String,
    /// A retry with the same key (by the same caller, with the same request)
    /// returns the first result; empty for none.
    pub idempotency_key: String,
    /// The request's fingerprint ([`crm_platform::idempotency::Fingerprint`]):
    /// the same key with another request is refused.
    pub fingerprint: Vec<u8>,
    pub needs_review: bool,
}

/// List filters.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub lifecycle_stage: Option<String>,
    pub tag: Option<String>,
    pub owner: Option<String>,
    pub organization_id: Option<Uuid>,
    pub updated_since: Option<DateTime<Utc>>,
    pub show_deleted: bool,
    /// Only contacts flagged as possible duplicates and not yet reviewed.
    pub needs_review: bool,
}

/// What a lookup looks for.
pub enum LookupKey {
    /// A term of `contact_terms` (a normalised email or phone key).
    Blocking(String),
    External {
        source: String,
        id: String,
    },
}

const MAX_CANDIDATES: usize = 10;
/// Contacts with look-alike names a duplicate check of one contact also scores.
const SIMILAR_CANDIDATES: i64 = 20;

impl ContactStore {
    /// Live contacts sharing a blocking key with `data` (and, with `similar`,
    /// whose names look alike: typos, nicknames), scored, at or above
    /// `min_score`, best first.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "contacts.candidates", otel.kind = "client", db.system.name = "postgresql", db.operation.name = "candidates", db.collection.name = "contacts"))]
    pub async fn candidates(
        &self,
        conn: &mut PgConnection,
        data: &ContactData,
        exclude: &[Uuid],
        min_score: f64,
        similar: bool,
    ) -> Result<Vec<Candidate>, Error> {
        let mut ids: Vec<Uuid> =
            super::key_holders(&mut *conn, &terms::probes(data)).await?.into_iter().map(|(_, id)| id).collect();
        if similar {
            ids.extend(search::similar_names(&mut *conn, data, SIMILAR_CANDIDATES).await?);
        }
        ids.sort();
        ids.dedup();
        ids.retain(|id| !exclude.contains(id));
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.id = ANY($1) AND {LIVE}"
        )))
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
        let model = self.matcher.current();
        let mut candidates = Vec::new();
        for row in &rows {
            let record = contact_record(row)?;
            let found = model.score_pair(data, &record.data);
            if found.score >= min_score {
                candidates.push(Candidate { record, found, model_version: model.version.clone() });
            }
        }
        candidates
            .sort_by(|a, b| b.found.score.total_cmp(&a.found.score).then(a.record.meta.id.cmp(&b.record.meta.id)));
        candidates.truncate(MAX_CANDIDATES);
        Ok(candidates)
    }

    /// Creates a contact: refused with LIKELY_DUPLICATE when it likely
    /// duplicates a live contact, unless overridden (which the audit trail shows).
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "contacts.create", otel.kind = "client", db.system.name = "postgresql", db.operation.name = "create", db.collection.name = "contacts"))]
    pub async fn create(
        &self,
        data: ContactData,
        options: CreateOptions,
        actor: &Actor,
    ) -> Result<ContactRecord, Error> {
        let mut tx = self.pool.begin().await?;
        if let Some(existing) = self.created_by(&mut tx, actor, &options).await? {
            return Ok(existing);
        }
        // Two concurrent creates of one person must not both pass the check:
        // serialise on the blocking keys (sorted, so no deadlock).
        sqlx::query(
            "SELECT pg_advisory_xact_lock(h) FROM (SELECT hashtextextended(k, 0) AS h FROM unnest($1::text[]) AS k ORDER BY 1) AS s",
        )
        .bind(matching::keys(&data))
        .execute(&mut *tx)
        .await?;
        // Blocking keys only: look-alike names (FindDuplicates of one contact)
        // cost a vocabulary walk more, and the keys already hold typos of a
        // name with the same postal code or birth date.
        let candidates = self.candidates(&mut tx, &data, &[], self.threshold, false).await?;
        if !candidates.is_empty() && !options.allow_duplicate {
            return Err(likely_duplicate(&candidates));
        }
        let id = Uuid::now_v7();
        let meta = insert(&mut tx, id, &data, options.needs_review).await?;
        claim_external_ids(&mut tx, id, &data).await?;
        if !options.idempotency_key.is_empty() {
            let claimed = sqlx::query(
                "INSERT INTO create_requests (principal, request_id, contact_id, fingerprint) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
            )
            .bind(&actor.actor)
            .bind(&options.idempotency_key)
            .bind(id)
            .bind(&options.fingerprint)
            .execute(&mut *tx)
            .await?;
            if claimed.rows_affected() == 0 {
                // A concurrent retry won the race: return its contact.
                tx.rollback().await?;
                let mut conn = self.pool.acquire().await?;
                let winner = self.created_by(&mut conn, actor, &options).await?;
                return winner.ok_or_else(|| Error::Unavailable {
                    message: "a concurrent create with this request id did not finish; retry".into(),
                    retry_after: std::time::Duration::from_millis(100),
                });
            }
        }
        let duplicate_override = !candidates.is_empty();
        let note = if duplicate_override {
            format!("duplicate check overridden: {}; candidates {}", options.override_reason, describe(&candidates))
        } else {
            String::new()
        };
        let changes = audit::Changes::created(&data)?;
        let entry = audit::Entry { resource_type: "contact", resource_id: id, action: "create", changes, note, actor };
        audit::record(&mut tx, &[entry]).await?;
        let record = ContactRecord { meta, data };
        let event = pb::ContactCreated { contact: Some(record.to_proto()), duplicate_override };
        outbox::append(&mut tx, &[NewEvent::new("contact", id.to_string(), &event, &actor.request_id)]).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// The contact this caller's earlier request with the same key created;
    /// FAILED_PRECONDITION when that request was a different one.
    async fn created_by(
        &self,
        conn: &mut PgConnection,
        actor: &Actor,
        options: &CreateOptions,
    ) -> Result<Option<ContactRecord>, Error> {
        if options.idempotency_key.is_empty() {
            return Ok(None);
        }
        let first: Option<(Uuid, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT contact_id, fingerprint FROM create_requests WHERE principal = $1 AND request_id = $2",
        )
        .bind(&actor.actor)
        .bind(&options.idempotency_key)
        .fetch_optional(&mut *conn)
        .await?;
        match first {
            Some((_, Some(fingerprint))) if fingerprint != options.fingerprint => {
                Err(idempotency::reused("request_id", &options.idempotency_key))
            }
            Some((id, _)) => Ok(Some(load(conn, id, false).await?)),
            None => Ok(None),
        }
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "contacts.get", otel.kind = "client", db.system.name = "postgresql", db.operation.name = "get", db.collection.name = "contacts"))]
    pub async fn get(&self, id: Uuid) -> Result<ContactRecord, Error> {
        let mut conn = self.pool.acquire().await?;
        load(&mut conn, id, false).await
    }

    /// Applies `change` to the contact's data under its row lock; ABORTED on a stale etag.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "contacts.update", otel.kind = "client", db.system.name = "postgresql", db.operation.name = "update", db.collection.name = "contacts"))]
    pub async fn update(
        &self,
        id: Uuid,
        etag: &str,
        actor: &Actor,
        change: impl FnOnce(&ContactData) -> Result<(ContactData, Option<bool>), Error>,
    ) -> Result<ContactRecord, Error> {
        let mut tx = self.pool.begin().await?;
        let before = load(&mut tx, id, true).await?;
        ensure_not_erased(&before)?;
        if !etag.is_empty() && etag != crate::model::etag(before.meta.version) {
            return Err(Error::StaleEtag { resource: "contact", id: before.meta.id.to_string() });
        }
        // `change` returns the new data, and whether the contact still needs review when it says.
        let (after, needs_review) = change(&before.data)?;
        let needs_review = needs_review.unwrap_or(before.meta.needs_review);
        let record = write_update(&mut tx, &before, &after, needs_review, "update", String::new(), actor).await?;
        tx.commit().await?;
        Ok(record.unwrap_or(before))
    }

    /// Up to `limit` contacts after `after` (ids are UUIDv7: oldest first).
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "contacts.list", otel.kind = "client", db.system.name = "postgresql", db.operation.name = "list", db.collection.name = "contacts"))]
    pub async fn list(
        &self,
        filter: &ListFilter,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<ContactRecord>, Error> {
        let mut conn = self.reads.acquire().await?;
        // A merged-away organization's id lists its survivor's people.
        let organization = match filter.organization_id {
            Some(id) => Some(super::organizations::resolve_or_same(&mut *conn, id).await?),
            None => None,
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CONTACT_COLUMNS} FROM contacts c
             WHERE c.merged_into IS NULL AND ($1::uuid IS NULL OR c.id > $1)
               AND ($2::text IS NULL OR c.lifecycle_stage = $2)
               AND ($3::text IS NULL OR (c.tags @> ARRAY[$3::text] AND c.tags <> '{{}}'))
               AND ($4::text IS NULL OR c.owner = $4)
               AND ($5::uuid IS NULL OR c.id IN (SELECT r.contact_id FROM relationships r WHERE r.organization_id = $5))
               AND ($6::timestamptz IS NULL OR c.update_time >= $6)
               AND ($7 OR (c.delete_time IS NULL AND c.erase_time IS NULL))
               AND (NOT $9 OR c.needs_review)
             ORDER BY c.id LIMIT $8"
        )))
        .bind(after)
        .bind(&filter.lifecycle_stage)
        .bind(&filter.tag)
        .bind(&filter.owner)
        .bind(organization)
        .bind(filter.updated_since)
        .bind(filter.show_deleted)
        .bind(limit)
        .bind(filter.needs_review)
        .fetch_all(&mut *conn)
        .await?;
        rows.iter().map(contact_record).collect()
    }

    /// Soft delete: the contact leaves lists, lookups and matching, and frees its external ids.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "contacts.delete", otel.kind = "client", db.system.name = "postgresql", db.operation.name = "delete", db.collection.name = "contacts"))]
    pub async fn delete(&self, id: Uuid, etag: &str, actor: &Actor) -> Result<ContactRecord, Error> {
        let mut tx = self.pool.begin().await?;
        let before = load(&mut tx, id, true).await?;
        ensure_not_erased(&before)?;
        if !etag.is_empty() && etag != crate::model::etag(before.meta.version) {
            return Err(Error::StaleEtag { resource: "contact", id: before.meta.id.to_string() });
        }
        if before.meta.delete_time.is_some() {
            return Ok(before);
        }
        let id = before.meta.id;
        sqlx::query(
            "UPDATE contacts SET delete_time = now(), version = version + 1, update_time = now() WHERE id = $1",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        write_terms(&mut tx, id, None).await?;
        sqlx::query("DELETE FROM contact_external_ids WHERE contact_id = $1").bind(id).execute(&mut *tx).await?;
        let entry = audit::Entry {
            resource_type: "contact",
            resource_id: id,
            action: "delete",
            changes: audit::Changes::none(),
            note: String::new(),
            actor,
        };
        audit::record(&mut tx, &[entry]).await?;
        let event = pb::ContactDeleted { contact_id: id.to_string() };
        outbox::append(&mut tx, &[NewEvent::new("contact", id.to_string(), &event, &actor.request_id)]).await?;
        let record = load(&mut tx, id, false).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// The live contact holding an email, phone or external id; the most
    /// recently updated one when (after an overridden duplicate) several do.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "contacts.lookup", otel.kind = "client", db.system.name = "postgresql", db.operation.name = "lookup", db.collection.name = "contacts"))]
    pub async fn lookup(&self, key: &LookupKey) -> Result<ContactRecord, Error> {
        let row = match key {
            LookupKey::Blocking(key) => {
                // The holders first (a handful at most), so the planner cannot
                // walk contacts in update order looking for them; the newest
                // that really holds the key (not another sharing its hash).
                // The term is read through a subquery: given it as a value,
                // PostgreSQL estimated each term's holders from its statistics
                // and planned every call afresh (a custom plan costs less than
                // the generic one by the estimate): 0.1 ms of planning for
                // 0.03 ms of work (docs/benchmarks.md, "The lookup's plan").
                let holders = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "WITH holders AS MATERIALIZED (SELECT contact_id FROM contact_terms WHERE term = (SELECT $1::bigint))
                     SELECT {CONTACT_COLUMNS} FROM holders h JOIN contacts c ON c.id = h.contact_id
                     WHERE {LIVE} ORDER BY c.update_time DESC"
                )))
                .bind(terms::hash(key))
                .fetch_all(&self.pool)
                .await?;
                for row in &holders {
                    let record = contact_record(row)?;
                    if matching::holds_key(&record.data, key) {
                        return Ok(record);
                    }
                }
                None
            }
            LookupKey::External { source, id } => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {CONTACT_COLUMNS} FROM contact_external_ids x JOIN contacts c ON c.id = x.contact_id
                     WHERE x.source = $1 AND x.external_id = $2 AND {LIVE}"
                )))
                .bind(source)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
            }
        };
        match row {
            Some(row) => contact_record(&row),
            None => Err(Error::NotFound { resource: "contact", id: "with that identifier".into() }),
        }
    }

    /// Likely duplicates of one contact.
    pub async fn duplicates_of(&self, id: Uuid, min_score: f64) -> Result<(ContactRecord, Vec<Candidate>), Error> {
        let mut conn = self.pool.acquire().await?;
        let record = load(&mut conn, id, false).await?;
        let candidates = self.candidates(&mut conn, &record.data, &[record.meta.id], min_score, true).await?;
        Ok((record, candidates))
    }

    /// One page of a whole-base scan: up to `limit` live contacts after
    /// `after`, each with its likely duplicates.
    pub async fn scan_duplicates(
        &self,
        after: Option<Uuid>,
        limit: i64,
        min_score: f64,
    ) -> Result<(Vec<(Uuid, Vec<Candidate>)>, Option<Uuid>), Error> {
        let mut conn = self.reads.acquire().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CONTACT_COLUMNS} FROM contacts c WHERE ($1::uuid IS NULL OR c.id > $1) AND {LIVE} ORDER BY c.id LIMIT $2"
        )))
        .bind(after)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
        let mut found = Vec::new();
        let mut last = None;
        for row in &rows {
            let record = contact_record(row)?;
            last = Some(record.meta.id);
            let candidates = self.candidates(&mut conn, &record.data, &[record.meta.id], min_score, false).await?;
            if !candidates.is_empty() {
                found.push((record.meta.id, candidates));
            }
        }
        let next = if rows.len() as i64 == limit { last } else { None };
        Ok((found, next))
    }
}

/// Writes `after` over `before` with its keys, external ids, audit entry and
/// `ContactUpdated`; `None` when nothing changed.
pub(crate) async fn write_update(
    tx: &mut PgConnection,
    before: &ContactRecord,
    after: &ContactData,
    needs_review: bool,
    action: &'static str,
    note: String,
    actor: &Actor,
) -> Result<Option<ContactRecord>, Error> {
    let mut changes = audit::diff(&before.data.fields(), &after.fields());
    if needs_review != before.meta.needs_review {
        changes.push(audit::FieldChange {
            field: "needs_review".into(),
            before: before.meta.needs_review.to_string(),
            after: needs_review.to_string(),
        });
    }
    if changes.is_empty() {
        return Ok(None);
    }
    let id = before.meta.id;
    write_data(tx, id, after, needs_review).await?;
    let live = before.meta.delete_time.is_none();
    write_terms(tx, id, live.then_some(after)).await?;
    if live {
        write_external_ids(tx, id, after).await?;
    }
    let changed_fields = changes.iter().map(|change| change.field.clone()).collect();
    let entry = audit::Entry {
        resource_type: "contact",
        resource_id: id,
        action,
        changes: audit::Changes::Fields(changes),
        note,
        actor,
    };
    audit::record(tx, &[entry]).await?;
    let record = load(tx, id, false).await?;
    let event = pb::ContactUpdated { contact: Some(record.to_proto()), changed_fields };
    outbox::append(tx, &[NewEvent::new("contact", id.to_string(), &event, &actor.request_id)]).await?;
    Ok(Some(record))
}

/// Writes a new contact with its terms and the vocabulary of its words, in
/// one round trip; returns what the table set.
pub(crate) async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    data: &ContactData,
    needs_review: bool,
) -> Result<ContactMeta, Error> {
    let words: Vec<String> = terms::words(data).into_iter().collect();
    let row = sqlx::query(
        "WITH contact AS (
             INSERT INTO contacts (id, data, lifecycle_stage, owner, tags, terms, terms_version, needs_review)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             RETURNING version, create_time, update_time),
         terms AS (
             INSERT INTO contact_terms (term, contact_id)
             SELECT t, $1 FROM unnest($6::bigint[]) WITH ORDINALITY AS u(t, n) ORDER BY n ON CONFLICT DO NOTHING),
         words AS (
             INSERT INTO search_words (word)
             SELECT w FROM unnest($9::text[]) WITH ORDINALITY AS u(w, n) ORDER BY n ON CONFLICT DO NOTHING)
         SELECT version, create_time, update_time FROM contact",
    )
    .bind(id)
    .bind(sqlx::types::Json(data))
    .bind(&data.lifecycle_stage)
    .bind(&data.owner)
    .bind(&data.tags)
    .bind(terms::hashes(&terms::all(data)))
    .bind(terms::VERSION)
    .bind(needs_review)
    .bind(&words)
    .fetch_one(&mut *conn)
    .await?;
    Ok(ContactMeta {
        id,
        version: row.try_get("version")?,
        create_time: row.try_get("create_time")?,
        update_time: row.try_get("update_time")?,
        delete_time: None,
        erase_time: None,
        merged_ids: Vec::new(),
        needs_review,
    })
}

/// "id (0.97), id (0.85)": candidates without personal data.
pub(crate) fn describe(candidates: &[Candidate]) -> String {
    candidates
        .iter()
        .map(|candidate| format!("{} ({:.2})", candidate.record.meta.id, candidate.found.score))
        .collect::<Vec<_>>()
        .join(", ")
}

/// ALREADY_EXISTS naming the candidates, their scores and the strongest reasons.
pub(crate) fn likely_duplicate(candidates: &[Candidate]) -> Error {
    let ids: Vec<String> = candidates.iter().map(|candidate| candidate.record.meta.id.to_string()).collect();
    let scores: Vec<String> = candidates.iter().map(|candidate| format!("{:.4}", candidate.found.score)).collect();
    let reasons: BTreeSet<&str> =
        candidates[0].found.reasons.iter().filter(|(_, weight)| *weight > 0.0).map(|(signal, _)| *signal).collect();
    Error::AlreadyExists {
        reason: "LIKELY_DUPLICATE",
        message: format!(
            "the contact likely duplicates {}; merge into it, or pass allow_duplicate with an override_reason",
            describe(candidates)
        ),
        metadata: [
            ("candidate_ids".to_string(), ids.join(",")),
            ("candidate_scores".to_string(), scores.join(",")),
            ("reasons".to_string(), reasons.into_iter().collect::<Vec<_>>().join(",")),
            ("model_version".to_string(), candidates[0].model_version.clone()),
        ]
        .into(),
    }
}
