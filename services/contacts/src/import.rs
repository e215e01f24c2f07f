//! `ImportContacts`: rows from a legacy system, one message (up to 1000
//! rows) at a time, each message committed atomically and answered with one
//! result per row.
//!
//! A row whose external id exists updates that contact (the row's non-empty
//! values win, lists are unioned). Any other row is checked against the base
//! and the rows before it in the import (blocking keys and score, as for a
//! create, without the trigram fallback) and, when it likely duplicates one,
//! handled by the caller's policy: merge into the match, skip, create and
//! flag for review, or fail the row. New contacts of a message are written
//! in bulk. A dry run processes every message in one transaction that is
//! rolled back at the end, so its results (including rows deduplicated
//! against earlier rows of the same import) are exactly what a real run
//! would report; it writes nothing.

use std::{
    collections::{HashMap, HashSet},
    pin::Pin,
};

use chrono::Utc;
use crm_platform::{
    Error,
    error::Violations,
    outbox::{self, NewEvent},
};
use crm_proto::contacts::v1 as pb;
use futures_util::Stream;
use sqlx::{PgConnection, Row};
use tonic::{Status, Streaming};
use uuid::Uuid;

use crate::{
    matching,
    model::{ContactData, ContactMeta, ContactRecord, ExternalId},
    store::{
        Actor, CONTACT_COLUMNS, ContactStore, audit, contact_record, contacts::write_update, merge::survive, to_json,
    },
    validate::{self, Region},
};

pub type ResultStream = Pin<Box<dyn Stream<Item = Result<pb::ImportContactsResponse, Status>> + Send>>;

/// Rows per message, at most.
pub const MAX_ROWS: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Policy {
    Merge,
    Skip,
    CreateAndFlag,
    Fail,
}

pub fn run(
    store: ContactStore,
    region: Region,
    actor: Actor,
    mut input: Streaming<pb::ImportContactsRequest>,
) -> ResultStream {
    Box::pin(async_stream::try_stream! {
        let Some(first) = input.message().await? else { return };
        let options = first.options.clone().ok_or_else(|| Error::invalid("options", "is required in the first message"))?;
        let policy = match pb::DuplicatePolicy::try_from(options.duplicate_policy) {
            Ok(pb::DuplicatePolicy::Merge) => Policy::Merge,
            Ok(pb::DuplicatePolicy::Skip) => Policy::Skip,
            Ok(pb::DuplicatePolicy::CreateAndFlag) => Policy::CreateAndFlag,
            Ok(pb::DuplicatePolicy::Fail) => Policy::Fail,
            _ => Err(Error::invalid("options.duplicate_policy", "must say what to do with a likely duplicate: merge, skip, create and flag, or fail"))?,
        };
        let source = options.source.trim().to_string();
        if source.chars().count() > 64 {
            Err(Error::invalid("options.source", "must be at most 64 characters"))?;
        }
        let importer = Importer { store: store.clone(), region, policy, dry_run: options.dry_run, source, actor };
        let mut dry_run = if options.dry_run { Some(store.pool.begin().await.map_err(Error::from)?) } else { None };
        let mut next = Some(first);
        while let Some(message) = next {
            if message.rows.len() > MAX_ROWS {
                Err(Error::invalid("rows", format!("must have at most {MAX_ROWS} rows per message (got {})", message.rows.len())))?;
            }
            let results = match dry_run.as_mut() {
                Some(tx) => importer.batch(tx, &message.rows).await?,
                None => {
                    let mut tx = store.pool.begin().await.map_err(Error::from)?;
                    let results = importer.batch(&mut tx, &message.rows).await?;
                    tx.commit().await.map_err(Error::from)?;
                    results
                }
            };
            yield pb::ImportContactsResponse { results };
            next = input.message().await?;
        }
        if let Some(tx) = dry_run {
            tx.rollback().await.map_err(Error::from)?;
        }
    })
}

struct Importer {
    store: ContactStore,
    region: Region,
    policy: Policy,
    dry_run: bool,
    source: String,
    actor: Actor,
}

/// Where a blocking key or external id points: a stored contact or a row created earlier in this batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Target {
    Stored(Uuid),
    Pending(usize),
}

struct Pending {
    id: Uuid,
    data: ContactData,
    keys: Vec<String>,
    needs_review: bool,
}

fn outcome_result(row_id: &str, outcome: pb::ImportOutcome) -> pb::ImportRowResult {
    pb::ImportRowResult { row_id: row_id.to_string(), outcome: outcome as i32, ..Default::default() }
}

impl Importer {
    async fn batch(&self, tx: &mut PgConnection, rows: &[pb::ImportRow]) -> Result<Vec<pb::ImportRowResult>, Error> {
        // 1. Validate every row.
        let mut parsed: Vec<Result<(ContactData, Vec<String>), pb::ImportRowResult>> = Vec::with_capacity(rows.len());
        for row in rows {
            let mut violations = Violations::new();
            let data = match &row.contact {
                Some(contact) => validate::contact(&mut violations, "contact", contact, self.region),
                None => {
                    violations.add("contact", "is required");
                    ContactData::default()
                }
            };
            parsed.push(match violations.into_result() {
                Ok(()) => {
                    let keys = matching::keys(&data);
                    Ok((data, keys))
                }
                Err(Error::InvalidArgument(violations)) => {
                    let mut result = outcome_result(&row.row_id, pb::ImportOutcome::Failed);
                    result.invalid_fields = violations.iter().map(|violation| violation.field.clone()).collect();
                    result.error = violations
                        .iter()
                        .map(|violation| format!("{}: {}", violation.field, violation.description))
                        .collect::<Vec<_>>()
                        .join("; ");
                    Err(result)
                }
                Err(other) => return Err(other),
            });
        }
        let valid: Vec<&(ContactData, Vec<String>)> = parsed.iter().filter_map(|row| row.as_ref().ok()).collect();

        // 2. What the base already holds for these rows: owners of their external ids, contacts sharing a key.
        let sources: Vec<&str> =
            valid.iter().flat_map(|(data, _)| data.external_ids.iter().map(|x| x.source.as_str())).collect();
        let values: Vec<&str> =
            valid.iter().flat_map(|(data, _)| data.external_ids.iter().map(|x| x.id.as_str())).collect();
        let mut owners: HashMap<ExternalId, Target> = HashMap::new();
        for row in sqlx::query(
            "SELECT source, external_id, contact_id FROM contact_external_ids
             WHERE (source, external_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
        )
        .bind(&sources)
        .bind(&values)
        .fetch_all(&mut *tx)
        .await?
        {
            let external = ExternalId { source: row.try_get("source")?, id: row.try_get("external_id")? };
            owners.insert(external, Target::Stored(row.try_get("contact_id")?));
        }
        let keys: Vec<&str> = valid
            .iter()
            .flat_map(|(_, keys)| keys.iter().map(String::as_str))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut index: HashMap<String, Vec<Target>> = HashMap::new();
        for row in sqlx::query("SELECT key, contact_id FROM contact_keys WHERE key = ANY($1)")
            .bind(&keys)
            .fetch_all(&mut *tx)
            .await?
        {
            index.entry(row.try_get("key")?).or_default().push(Target::Stored(row.try_get("contact_id")?));
        }
        let mut wanted: Vec<Uuid> = owners
            .values()
            .chain(index.values().flatten())
            .filter_map(|target| match target {
                Target::Stored(id) => Some(*id),
                Target::Pending(_) => None,
            })
            .collect();
        wanted.sort();
        wanted.dedup();
        let mut stored: HashMap<Uuid, ContactRecord> = HashMap::new();
        for row in sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.id = ANY($1) AND c.merged_into IS NULL AND c.delete_time IS NULL AND c.erase_time IS NULL"
        )))
        .bind(&wanted)
        .fetch_all(&mut *tx)
        .await?
        {
            let record = contact_record(&row)?;
            stored.insert(record.meta.id, record);
        }

        // 3. Decide each row in order, against the base and the rows before it.
        let mut pending: Vec<Pending> = Vec::new();
        let mut results = Vec::with_capacity(rows.len());
        for (row, parsed) in rows.iter().zip(parsed) {
            let (data, keys) = match parsed {
                Ok(parsed) => parsed,
                Err(failed) => {
                    results.push(failed);
                    continue;
                }
            };
            let owner = data.external_ids.iter().find_map(|external| owners.get(external).copied());
            if let Some(owner) = owner {
                let outcome = self.absorb(tx, owner, &data, &mut stored, &mut pending, "import_update").await?;
                let mut result = outcome_result(&row.row_id, pb::ImportOutcome::Updated);
                result.contact_id = outcome.to_string();
                self.remember(&data, &keys, owner, &mut owners, &mut index);
                results.push(result);
                continue;
            }
            let best = self.best_match(&data, &keys, &index, &stored, &pending);
            let mut result = outcome_result(&row.row_id, pb::ImportOutcome::Created);
            let mut needs_review = false;
            if let Some((target, score)) = best {
                let matched = match target {
                    Target::Stored(id) => id,
                    Target::Pending(at) => pending[at].id,
                };
                result.matched_contact_id = matched.to_string();
                result.match_score = score;
                match self.policy {
                    Policy::Merge => {
                        self.absorb(tx, target, &data, &mut stored, &mut pending, "import_merge").await?;
                        result.outcome = pb::ImportOutcome::Merged as i32;
                        result.contact_id = matched.to_string();
                        self.remember(&data, &keys, target, &mut owners, &mut index);
                        results.push(result);
                        continue;
                    }
                    Policy::Skip => {
                        result.outcome = pb::ImportOutcome::Skipped as i32;
                        results.push(result);
                        continue;
                    }
                    Policy::Fail => {
                        result.outcome = pb::ImportOutcome::Failed as i32;
                        result.error = format!("likely duplicate of contact {matched} (score {score:.2})");
                        results.push(result);
                        continue;
                    }
                    Policy::CreateAndFlag => {
                        result.outcome = pb::ImportOutcome::Flagged as i32;
                        needs_review = true;
                    }
                }
            }
            let target = Target::Pending(pending.len());
            let id = Uuid::now_v7();
            self.remember(&data, &keys, target, &mut owners, &mut index);
            pending.push(Pending { id, data, keys, needs_review });
            result.contact_id = if self.dry_run { String::new() } else { id.to_string() };
            results.push(result);
        }

        // 4. Write the new contacts of the batch in bulk.
        self.insert_pending(tx, &pending).await?;
        Ok(results)
    }

    /// The best-scoring contact at or above the threshold sharing a key with `data`.
    fn best_match(
        &self,
        data: &ContactData,
        keys: &[String],
        index: &HashMap<String, Vec<Target>>,
        stored: &HashMap<Uuid, ContactRecord>,
        pending: &[Pending],
    ) -> Option<(Target, f64)> {
        let mut seen = HashSet::new();
        let mut best: Option<(Target, f64)> = None;
        for key in keys {
            for target in index.get(key).into_iter().flatten() {
                if !seen.insert(*target) {
                    continue;
                }
                let other = match target {
                    Target::Stored(id) => match stored.get(id) {
                        Some(record) => &record.data,
                        None => continue,
                    },
                    Target::Pending(at) => &pending[*at].data,
                };
                let score = matching::score(data, other).score;
                if score >= self.store.threshold && best.is_none_or(|(_, top)| score > top) {
                    best = Some((*target, score));
                }
            }
        }
        best
    }

    /// Indexes a row's keys and external ids as belonging to `target`.
    fn remember(
        &self,
        data: &ContactData,
        keys: &[String],
        target: Target,
        owners: &mut HashMap<ExternalId, Target>,
        index: &mut HashMap<String, Vec<Target>>,
    ) {
        for external in &data.external_ids {
            owners.insert(external.clone(), target);
        }
        for key in keys {
            let targets = index.entry(key.clone()).or_default();
            if !targets.contains(&target) {
                targets.push(target);
            }
        }
    }

    /// Folds a row into a stored contact (written now) or a pending one; returns its id.
    async fn absorb(
        &self,
        tx: &mut PgConnection,
        target: Target,
        data: &ContactData,
        stored: &mut HashMap<Uuid, ContactRecord>,
        pending: &mut [Pending],
        action: &'static str,
    ) -> Result<Uuid, Error> {
        let row = |id: Uuid| ContactRecord {
            meta: ContactMeta {
                id,
                version: 0,
                create_time: Utc::now(),
                update_time: Utc::now(),
                delete_time: None,
                erase_time: None,
                merged_ids: Vec::new(),
                needs_review: false,
            },
            data: data.clone(),
        };
        match target {
            Target::Pending(at) => {
                let base = ContactRecord { data: pending[at].data.clone(), ..row(pending[at].id) };
                let mut older = base.clone();
                older.meta.update_time -= chrono::Duration::seconds(1);
                pending[at].data = survive(&older, &[row(Uuid::nil())], &HashMap::new());
                Ok(pending[at].id)
            }
            Target::Stored(id) => {
                let Some(before) = stored.get(&id).cloned() else {
                    return Err(Error::Unavailable {
                        message: format!("contact {id} changed during the import; resend the batch"),
                        retry_after: std::time::Duration::from_millis(100),
                    });
                };
                let after = survive(&before, &[row(Uuid::nil())], &HashMap::new());
                let note =
                    if self.source.is_empty() { "import".to_string() } else { format!("import from {}", self.source) };
                if let Some(record) = write_update(tx, &before, &after, action, note, &self.actor).await? {
                    stored.insert(id, record);
                }
                Ok(id)
            }
        }
    }

    async fn insert_pending(&self, tx: &mut PgConnection, pending: &[Pending]) -> Result<(), Error> {
        if pending.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = pending.iter().map(|row| row.id).collect();
        let data: Vec<serde_json::Value> = pending.iter().map(|row| to_json(&row.data)).collect::<Result<_, _>>()?;
        let stages: Vec<&str> = pending.iter().map(|row| row.data.lifecycle_stage.as_str()).collect();
        let owners: Vec<&str> = pending.iter().map(|row| row.data.owner.as_str()).collect();
        let tags: Vec<String> = pending.iter().map(|row| postgres_array(&row.data.tags)).collect();
        let search: Vec<String> = pending.iter().map(|row| row.data.search_text()).collect();
        let review: Vec<bool> = pending.iter().map(|row| row.needs_review).collect();
        sqlx::query(
            "INSERT INTO contacts (id, data, lifecycle_stage, owner, tags, search_text, needs_review)
             SELECT id, data, stage, owner, tags::text[], search, review
             FROM unnest($1::uuid[], $2::jsonb[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bool[])
                  AS t(id, data, stage, owner, tags, search, review)",
        )
        .bind(&ids)
        .bind(&data)
        .bind(&stages)
        .bind(&owners)
        .bind(&tags)
        .bind(&search)
        .bind(&review)
        .execute(&mut *tx)
        .await?;

        let (mut key_ids, mut keys) = (Vec::new(), Vec::new());
        let (mut external_owners, mut sources, mut externals) = (Vec::new(), Vec::new(), Vec::new());
        for row in pending {
            for key in &row.keys {
                key_ids.push(row.id);
                keys.push(key.as_str());
            }
            for external in &row.data.external_ids {
                external_owners.push(row.id);
                sources.push(external.source.as_str());
                externals.push(external.id.as_str());
            }
        }
        sqlx::query("INSERT INTO contact_keys (key, contact_id) SELECT * FROM unnest($1::text[], $2::uuid[])")
            .bind(&keys)
            .bind(&key_ids)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO contact_external_ids (source, external_id, contact_id) SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[])")
            .bind(&sources)
            .bind(&externals)
            .bind(&external_owners)
            .execute(&mut *tx)
            .await?;

        let note = if self.source.is_empty() { "import".to_string() } else { format!("import from {}", self.source) };
        let entries: Vec<audit::Entry> = pending
            .iter()
            .map(|row| audit::Entry {
                resource_type: "contact",
                resource_id: row.id,
                action: "import_create",
                changes: audit::diff(&Default::default(), &row.data.fields()),
                note: if row.needs_review {
                    format!("{note}; likely duplicate, flagged for review")
                } else {
                    note.clone()
                },
                actor: &self.actor,
            })
            .collect();
        audit::record(tx, &entries).await?;
        let now = Utc::now();
        let events: Vec<NewEvent> = pending
            .iter()
            .map(|row| {
                let record = ContactRecord {
                    meta: ContactMeta {
                        id: row.id,
                        version: 1,
                        create_time: now,
                        update_time: now,
                        delete_time: None,
                        erase_time: None,
                        merged_ids: Vec::new(),
                        needs_review: row.needs_review,
                    },
                    data: row.data.clone(),
                };
                let event =
                    pb::ContactCreated { contact: Some(record.to_proto()), duplicate_override: row.needs_review };
                NewEvent::new("contact", row.id.to_string(), &event, &self.actor.request_id)
            })
            .collect();
        outbox::append(tx, &events).await?;
        Ok(())
    }
}

/// A text array literal (`{"a","b"}`): unnest cannot take an array of arrays of different lengths.
fn postgres_array(items: &[String]) -> String {
    let quoted: Vec<String> =
        items.iter().map(|item| format!("\"{}\"", item.replace('\\', "\\\\").replace('"', "\\\""))).collect();
    format!("{{{}}}", quoted.join(","))
}
