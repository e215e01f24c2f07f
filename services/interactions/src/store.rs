//! The interactions tables. A batch is stored in one transaction: the
//! idempotency claims, the rows, their locations and `InteractionRecorded`
//! events commit together or not at all.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use crm_platform::{
    Error,
    outbox::{self, NewEvent},
};
use crm_proto::interactions::v1 as pb;
use sqlx::{PgConnection, PgPool, Row, postgres::PgRow};
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
}

pub struct InteractionStore {
    pub pool: PgPool,
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
    pub async fn store(&self, records: &[InteractionRecord], request_id: &str) -> Result<Vec<Stored>, Error> {
        self.partitions.ensure(&self.pool, records.iter().map(|record| record.occurred_at.date_naive())).await?;
        let mut tx = self.pool.begin().await?;
        let outcomes = store_batch(&mut tx, records, request_id).await?;
        let stored: Vec<&InteractionRecord> = records
            .iter()
            .zip(&outcomes)
            .filter(|(record, outcome)| **outcome == Stored::New(record.id))
            .map(|(record, _)| record)
            .collect();
        invoices::on_stored(&mut tx, &stored, request_id).await?;
        recurring::check(&mut tx, &stored, self.recurring, request_id).await?;
        tx.commit().await?;
        Ok(outcomes)
    }

    pub async fn get(&self, id: Uuid) -> Result<InteractionRecord, Error> {
        let mut conn = self.pool.acquire().await?;
        load(&mut conn, id).await
    }

    /// Up to `limit` interactions of a contact before the `(occurred_at, id)` cursor, newest first.
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

async fn store_batch(
    tx: &mut PgConnection,
    records: &[InteractionRecord],
    request_id: &str,
) -> Result<Vec<Stored>, Error> {
    // 1. Claim (source, external_id); the claims that lose name the first interaction.
    let keyed: Vec<&InteractionRecord> = records.iter().filter(|record| !record.source.is_empty()).collect();
    let mut first: HashMap<(String, String), Uuid> = HashMap::new();
    if !keyed.is_empty() {
        let claimed = sqlx::query(
            "INSERT INTO interaction_sources (source, external_id, interaction_id, contact_id, occurred_at)
             SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::uuid[], $5::timestamptz[])
             ON CONFLICT DO NOTHING RETURNING source, external_id, interaction_id",
        )
        .bind(keyed.iter().map(|r| r.source.as_str()).collect::<Vec<_>>())
        .bind(keyed.iter().map(|r| r.external_id.as_str()).collect::<Vec<_>>())
        .bind(keyed.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(keyed.iter().map(|r| r.contact_id).collect::<Vec<_>>())
        .bind(keyed.iter().map(|r| r.occurred_at).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
        for row in &claimed {
            first.insert((row.try_get("source")?, row.try_get("external_id")?), row.try_get("interaction_id")?);
        }
        let earlier = sqlx::query(
            "SELECT source, external_id, interaction_id FROM interaction_sources
             WHERE (source, external_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
        )
        .bind(keyed.iter().map(|r| r.source.as_str()).collect::<Vec<_>>())
        .bind(keyed.iter().map(|r| r.external_id.as_str()).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
        for row in &earlier {
            first
                .entry((row.try_get("source")?, row.try_get("external_id")?))
                .or_insert(row.try_get("interaction_id")?);
        }
    }
    let outcomes: Vec<Stored> = records
        .iter()
        .map(|record| match first.get(&(record.source.clone(), record.external_id.clone())) {
            Some(id) if *id != record.id => Stored::Duplicate(*id),
            _ => Stored::New(record.id),
        })
        .collect();

    // 2. The new rows, their locations and events.
    let new: Vec<&InteractionRecord> = records
        .iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| matches!(outcome, Stored::New(_)))
        .map(|(r, _)| r)
        .collect();
    if new.is_empty() {
        return Ok(outcomes);
    }
    let data: Vec<serde_json::Value> = new
        .iter()
        .map(|r| serde_json::to_value(&r.data))
        .collect::<Result<_, _>>()
        .map_err(|error| Error::Internal(anyhow::Error::new(error).context("writing an interaction")))?;
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
    .bind(&data)
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
    Ok(outcomes)
}
