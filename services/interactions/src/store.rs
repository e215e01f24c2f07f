//! The interactions tables. A batch is stored in one transaction: the
//! idempotency claims, the rows, their locations and `InteractionRecorded`
//! events commit together or not at all.
//!
//! Batches may be stored concurrently (a bulk ingest keeps several in
//! flight). What makes that safe:
//! - within one ingest stream, a batch claims its idempotency keys only once
//!   the batch before it has claimed its own, and runs its order-sensitive
//!   tail (an invoice and the payment that settles it, counting a contact's
//!   recurring problems) only once the batch before it has committed: the
//!   result is what sending the batches one at a time would give
//!   (`crm_platform::turn`);
//! - claims are inserted in key order, so batches of different streams that
//!   share keys wait for each other instead of deadlocking, and the later
//!   one sees the earlier one's claim as a duplicate;
//! - across streams and single calls, the tail runs under transaction-scoped
//!   advisory locks on the contacts it touches (hashed into
//!   [`CONTACT_LOCKS`] buckets, taken in order), so it waits for a
//!   concurrent change of the same contacts to commit and then sees it;
//! - a transaction that still conflicts (deadlock, serialization failure)
//!   is run again, up to [`ATTEMPTS`] times, unless a later batch of its
//!   stream may already have gone ahead of it: then the stream fails and the
//!   sender resends from its last acknowledged batch.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use crm_platform::{
    Error,
    outbox::{self, NewEvent},
};
use crm_proto::interactions::v1 as pb;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool, Row, postgres::PgRow, types::Json};
use uuid::Uuid;

use crate::{
    invoices,
    model::{InteractionData, InteractionRecord},
    partitions::Partitions,
    recurring::{self, Rule},
};

/// What became of one item of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    New(Uuid),
    /// Stored before under the same (source, external_id): the first one's id.
    Duplicate(Uuid),
    /// Its (source, external_id) names an interaction with other content:
    /// refused, with that interaction's id.
    Conflict(Uuid),
}

/// What makes two items under one (source, external_id) the same
/// interaction: everything the sender said but the contact (a merge re-keys
/// it), as the first 16 bytes of SHA-256 over its JSON (attributes sorted).
pub fn fingerprint(record: &InteractionRecord) -> Vec<u8> {
    let content = (record.occurred_at, &record.channel, &record.kind, &record.direction, &record.data);
    let json = serde_json::to_vec(&content).unwrap_or_default();
    Sha256::digest(json)[..16].to_vec()
}

/// Advisory-lock buckets for the per-contact tail of a batch: bounded, so a
/// batch of thousands of contacts takes at most this many locks.
pub const CONTACT_LOCKS: i64 = 256;

/// Times a batch's transaction is tried when it conflicts with a concurrent one.
pub const ATTEMPTS: usize = 3;

/// How far a batch of an ingest stream has got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Started,
    /// Its idempotency keys are claimed.
    Claimed,
    /// Committed (or given up).
    Committed,
}

/// A batch's place among the batches of its ingest stream.
pub type Turn = crm_platform::turn::Turn<Stage>;

/// Whether a failed attempt may run again: not once a later batch may have gone ahead.
fn may_retry(turn: &Turn) -> bool {
    turn.is_alone() || turn.reached() < Stage::Claimed
}

pub struct InteractionStore {
    pub pool: PgPool,
    /// Where the overdue-invoice report reads: the replicas when
    /// `DATABASE_READ_URL` is set. Timelines stay on the primary: a call
    /// recorded from the console shows on the timeline it reloads.
    pub reads: crm_platform::db::ReadPool,
    pub partitions: Partitions,
    pub recurring: Rule,
}

/// Timeline filters.
#[derive(Clone, Debug, Default)]
pub struct TimelineFilter {
    pub channels: Vec<String>,
    pub kinds: Vec<String>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, contact_id, occurred_at, recorded_at, channel, kind, direction, source, external_id, data";

fn record(row: &PgRow) -> Result<InteractionRecord, Error> {
    let data: InteractionData = serde_json::from_value(row.try_get("data")?)
        .map_err(|error| Error::Internal(anyhow::Error::new(error).context("reading a stored interaction")))?;
    Ok(InteractionRecord {
        id: row.try_get("id")?,
        contact_id: row.try_get("contact_id")?,
        occurred_at: row.try_get("occurred_at")?,
        recorded_at: row.try_get("recorded_at")?,
        channel: row.try_get("channel")?,
        kind: row.try_get("kind")?,
        direction: row.try_get("direction")?,
        source: row.try_get("source")?,
        external_id: row.try_get("external_id")?,
        data,
    })
}

impl InteractionStore {
    /// Stores a batch atomically; items already stored (same source and
    /// external id, before or earlier in the batch) come back as duplicates.
    /// A bulk stream's batch (`bulk`) writes its events out of the feed's
    /// live lane, so a single call's interaction is not queued behind it.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "interactions.store", otel.kind = "client", db.system.name = "postgresql", db.operation.name = "store", db.collection.name = "interactions"))]
    pub async fn store(
        &self,
        records: &[InteractionRecord],
        request_id: &str,
        bulk: bool,
        mut turn: Turn,
    ) -> Result<Vec<Stored>, Error> {
        self.partitions.ensure(&self.pool, records.iter().map(|record| record.occurred_at.date_naive())).await?;
        let mut attempt = 1;
        loop {
            match self.store_once(records, request_id, bulk, &mut turn).await {
                Err(error) if error.is_conflict() && attempt < ATTEMPTS && may_retry(&turn) => attempt += 1,
                outcome => return outcome,
            }
        }
    }

    async fn store_once(
        &self,
        records: &[InteractionRecord],
        request_id: &str,
        bulk: bool,
        turn: &mut Turn,
    ) -> Result<Vec<Stored>, Error> {
        let mut tx = self.pool.begin().await?;
        if bulk {
            outbox::mark_bulk(&mut tx).await?;
        }
        outbox::wake_after_commit(&mut tx).await?;
        turn.after_previous(Stage::Claimed).await;
        let outcomes = claim(&mut tx, records).await?;
        turn.reach(Stage::Claimed);
        let stored: Vec<&InteractionRecord> = records
            .iter()
            .zip(&outcomes)
            .filter(|(record, outcome)| **outcome == Stored::New(record.id))
            .map(|(record, _)| record)
            .collect();
        insert(&mut tx, &stored, request_id).await?;

        // The tail: what depends on the batches and calls before this one.
        turn.after_previous(Stage::Committed).await;
        let touched: Vec<Uuid> = stored
            .iter()
            .filter(|record| invoices::concerns(record) || !record.data.pain_points.is_empty())
            .map(|record| record.contact_id)
            .collect();
        lock_contacts(&mut tx, &touched).await?;
        invoices::on_stored(&mut tx, &stored, request_id).await?;
        recurring::check(&mut tx, &stored, self.recurring, request_id).await?;
        tx.commit().await?;
        outbox::wake(&self.pool, crm_platform::Role::Interactions);
        turn.reach(Stage::Committed);
        Ok(outcomes)
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "interactions.get", otel.kind = "client", db.system.name = "postgresql", db.operation.name = "get", db.collection.name = "interactions"))]
    pub async fn get(&self, id: Uuid) -> Result<InteractionRecord, Error> {
        let mut conn = self.pool.acquire().await?;
        load(&mut conn, id).await
    }

    /// Up to `limit` interactions of a contact before the `(occurred_at, id)` cursor, newest first.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "interactions.timeline", otel.kind = "client", db.system.name = "postgresql", db.operation.name = "timeline", db.collection.name = "interactions"))]
    pub async fn timeline(
        &self,
        contact_id: Uuid,
        filter: &TimelineFilter,
        before: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> Result<Vec<InteractionRecord>, Error> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM interactions
             WHERE contact_id = $1
               AND (cardinality($2::text[]) = 0 OR channel = ANY($2))
               AND (cardinality($3::text[]) = 0 OR kind = ANY($3))
               AND ($4::timestamptz IS NULL OR occurred_at >= $4)
               AND ($5::timestamptz IS NULL OR occurred_at < $5)
               AND ($6::timestamptz IS NULL OR (occurred_at, id) < ($6, $7))
             ORDER BY occurred_at DESC, id DESC LIMIT $8"
        )))
        .bind(contact_id)
        .bind(&filter.channels)
        .bind(&filter.kinds)
        .bind(filter.start)
        .bind(filter.end)
        .bind(before.map(|(time, _)| time))
        .bind(before.map(|(_, id)| id))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record).collect()
    }
}

/// One interaction by id.
pub async fn load(conn: &mut PgConnection, id: Uuid) -> Result<InteractionRecord, Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM interactions i
         WHERE (i.contact_id, i.occurred_at, i.id) = (SELECT contact_id, occurred_at, id FROM interaction_locations WHERE id = $1)"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| Error::NotFound { resource: "interaction", id: id.to_string() })?;
    record(&row)
}

/// Waits for, then holds until commit, the advisory locks of these contacts' buckets.
async fn lock_contacts(tx: &mut PgConnection, contacts: &[Uuid]) -> Result<(), Error> {
    if contacts.is_empty() {
        return Ok(());
    }
    let buckets: BTreeSet<i64> = contacts.iter().map(|id| (id.as_u128() % CONTACT_LOCKS as u128) as i64).collect();
    let buckets: Vec<i64> = buckets.into_iter().collect();
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('interactions contact', b))
         FROM unnest($1::bigint[]) WITH ORDINALITY AS t(b, n) ORDER BY n",
    )
    .bind(&buckets)
    .execute(tx)
    .await?;
    Ok(())
}

/// Claims each record's (source, external_id) in key order; a claim that
/// loses (to an earlier batch, or earlier in this one) names the first interaction.
async fn claim(tx: &mut PgConnection, records: &[InteractionRecord]) -> Result<Vec<Stored>, Error> {
    let mut keyed: Vec<&InteractionRecord> = records.iter().filter(|record| !record.source.is_empty()).collect();
    keyed.sort_by(|a, b| (&a.source, &a.external_id).cmp(&(&b.source, &b.external_id)));
    let fingerprints: HashMap<Uuid, Vec<u8>> = keyed.iter().map(|record| (record.id, fingerprint(record))).collect();
    let mut first: HashMap<(&str, &str), Uuid> = HashMap::new();
    // Keys held by an interaction with other content.
    let mut conflicts: HashMap<Uuid, Uuid> = HashMap::new();
    if !keyed.is_empty() {
        let claimed: Vec<Uuid> = sqlx::query_scalar(
            "INSERT INTO interaction_sources (source, external_id, interaction_id, contact_id, occurred_at, fingerprint)
             SELECT s, e, i, c, o, f
             FROM unnest($1::text[], $2::text[], $3::uuid[], $4::uuid[], $5::timestamptz[], $6::bytea[])
                  WITH ORDINALITY AS t(s, e, i, c, o, f, n)
             ORDER BY n
             ON CONFLICT DO NOTHING RETURNING interaction_id",
        )
        .bind(keyed.iter().map(|r| r.source.as_str()).collect::<Vec<_>>())
        .bind(keyed.iter().map(|r| r.external_id.as_str()).collect::<Vec<_>>())
        .bind(keyed.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(keyed.iter().map(|r| r.contact_id).collect::<Vec<_>>())
        .bind(keyed.iter().map(|r| r.occurred_at).collect::<Vec<_>>())
        .bind(keyed.iter().map(|r| &fingerprints[&r.id]).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
        let claimed: std::collections::HashSet<Uuid> = claimed.into_iter().collect();
        for record in &keyed {
            if claimed.contains(&record.id) {
                first.insert((record.source.as_str(), record.external_id.as_str()), record.id);
            }
        }
        // Keys claimed before (by an earlier batch, or twice in this one): who holds them.
        let lost: Vec<&&InteractionRecord> = keyed.iter().filter(|record| !claimed.contains(&record.id)).collect();
        if !lost.is_empty() {
            let earlier = sqlx::query(
                "SELECT source, external_id, interaction_id, fingerprint FROM interaction_sources
                 WHERE (source, external_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
            )
            .bind(lost.iter().map(|r| r.source.as_str()).collect::<Vec<_>>())
            .bind(lost.iter().map(|r| r.external_id.as_str()).collect::<Vec<_>>())
            .fetch_all(&mut *tx)
            .await?;
            type Holder = (Uuid, Option<Vec<u8>>);
            let holders: HashMap<(String, String), Holder> = earlier
                .iter()
                .map(|row| {
                    let key = (row.try_get("source")?, row.try_get("external_id")?);
                    Ok((key, (row.try_get("interaction_id")?, row.try_get("fingerprint")?)))
                })
                .collect::<Result<_, sqlx::Error>>()?;
            for record in lost {
                if let Some((holder, held)) = holders.get(&(record.source.clone(), record.external_id.clone())) {
                    first.entry((record.source.as_str(), record.external_id.as_str())).or_insert(*holder);
                    if held.as_ref().is_some_and(|held| *held != fingerprints[&record.id]) {
                        conflicts.insert(record.id, *holder);
                    }
                }
            }
        }
    }
    let outcomes: Vec<Stored> = records
        .iter()
        .map(|record| match first.get(&(record.source.as_str(), record.external_id.as_str())) {
            Some(_) if conflicts.contains_key(&record.id) => Stored::Conflict(conflicts[&record.id]),
            Some(id) if *id != record.id => Stored::Duplicate(*id),
            _ => Stored::New(record.id),
        })
        .collect();
    Ok(outcomes)
}

/// Writes the new rows, their locations and their `InteractionRecorded` events.
async fn insert(tx: &mut PgConnection, new: &[&InteractionRecord], request_id: &str) -> Result<(), Error> {
    if new.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO interactions (contact_id, occurred_at, id, recorded_at, channel, kind, direction, source, external_id, data)
         SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::uuid[], $4::timestamptz[], $5::text[], $6::text[],
                              $7::text[], $8::text[], $9::text[], $10::jsonb[])",
    )
    .bind(new.iter().map(|r| r.contact_id).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.occurred_at).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.id).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.recorded_at).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.channel.as_str()).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.direction.as_str()).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.source.as_str()).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.external_id.as_str()).collect::<Vec<_>>())
    .bind(new.iter().map(|r| Json(&r.data)).collect::<Vec<Json<&InteractionData>>>())
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO interaction_locations (id, contact_id, occurred_at)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[])",
    )
    .bind(new.iter().map(|r| r.id).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.contact_id).collect::<Vec<_>>())
    .bind(new.iter().map(|r| r.occurred_at).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    let events: Vec<NewEvent> = new
        .iter()
        .map(|r| {
            let event = pb::InteractionRecorded { interaction: Some(r.to_proto()) };
            NewEvent::new("interaction", r.contact_id.to_string(), &event, request_id)
        })
        .collect();
    outbox::append(tx, &events).await?;
    Ok(())
}
