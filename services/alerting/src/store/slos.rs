//! SLOs and their indicators' counts.

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, Utc};
use crm_platform::Error;
use sqlx::{PgConnection, Row, postgres::PgRow};
use uuid::Uuid;

use crate::slo::{evaluate::Counts, prometheus::Queries};

/// An SLO as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct SloRecord {
    pub id: Uuid,
    pub name: String,
    pub owner: String,
    pub description: String,
    pub objective: f64,
    pub window: Duration,
    /// A business indicator's conditions (empty for a Prometheus one).
    pub valid_rule: String,
    pub good_rule: String,
    /// A Prometheus indicator's queries.
    pub prometheus: Option<Queries>,
    pub min_events: u64,
    pub create_time: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, owner, description, objective, window_seconds, valid_rule, good_rule, good_query, total_query, min_events, create_time";

fn record(row: &PgRow) -> Result<SloRecord, Error> {
    Ok(SloRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        owner: row.try_get("owner")?,
        description: row.try_get("description")?,
        objective: row.try_get("objective")?,
        window: Duration::from_secs(row.try_get::<i64, _>("window_seconds")?.max(0) as u64),
        valid_rule: row.try_get("valid_rule")?,
        good_rule: row.try_get("good_rule")?,
        prometheus: match (
            row.try_get::<Option<String>, _>("good_query")?,
            row.try_get::<Option<String>, _>("total_query")?,
        ) {
            (Some(good), Some(total)) => Some(Queries { good, total }),
            _ => None,
        },
        min_events: row.try_get::<i64, _>("min_events")?.max(0) as u64,
        create_time: row.try_get("create_time")?,
    })
}

pub async fn insert(conn: &mut PgConnection, slo: &SloRecord) -> Result<(), Error> {
    let inserted = sqlx::query(
        "INSERT INTO slos (id, name, owner, description, objective, window_seconds, valid_rule, good_rule, min_events,
                           good_query, total_query)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
    )
    .bind(slo.id)
    .bind(&slo.name)
    .bind(&slo.owner)
    .bind(&slo.description)
    .bind(slo.objective)
    .bind(slo.window.as_secs() as i64)
    .bind(&slo.valid_rule)
    .bind(&slo.good_rule)
    .bind(slo.min_events as i64)
    .bind(slo.prometheus.as_ref().map(|queries| queries.good.as_str()))
    .bind(slo.prometheus.as_ref().map(|queries| queries.total.as_str()))
    .execute(conn)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(Error::AlreadyExists {
            reason: "SLO_NAME_TAKEN",
            message: format!("an SLO named {} exists", crm_platform::error::quote(&slo.name)),
            metadata: Default::default(),
        });
    }
    Ok(())
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<SloRecord, Error> {
    let row =
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM slos WHERE id = $1 AND delete_time IS NULL")))
            .bind(id)
            .fetch_optional(conn)
            .await?
            .ok_or_else(|| Error::NotFound { resource: "SLO", id: id.to_string() })?;
    record(&row)
}

/// Every live SLO.
pub async fn all(conn: &mut PgConnection) -> Result<Vec<SloRecord>, Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM slos WHERE delete_time IS NULL")))
        .fetch_all(conn)
        .await?;
    rows.iter().map(record).collect()
}

/// Live SLOs by name, after `(name, id)`.
pub async fn list(conn: &mut PgConnection, after: Option<(String, Uuid)>, limit: i64) -> Result<Vec<SloRecord>, Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM slos WHERE delete_time IS NULL AND ($1::text IS NULL OR (lower(name), id) > (lower($1), $2))
         ORDER BY lower(name), id LIMIT $3"
    )))
    .bind(after.as_ref().map(|(name, _)| name.as_str()))
    .bind(after.as_ref().map(|(_, id)| *id))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter().map(record).collect()
}

/// Deletes an SLO and its counts.
pub async fn delete(conn: &mut PgConnection, id: Uuid) -> Result<(), Error> {
    sqlx::query("UPDATE slos SET delete_time = now() WHERE id = $1").bind(id).execute(&mut *conn).await?;
    sqlx::query("DELETE FROM sli_minutes WHERE slo_id = $1").bind(id).execute(conn).await?;
    Ok(())
}

/// Adds valid and good events to each (SLO, minute).
pub async fn count(conn: &mut PgConnection, deltas: &HashMap<(Uuid, DateTime<Utc>), (i64, i64)>) -> Result<(), Error> {
    if deltas.is_empty() {
        return Ok(());
    }
    let mut slos = Vec::with_capacity(deltas.len());
    let mut minutes = Vec::with_capacity(deltas.len());
    let (mut valid, mut good) = (Vec::with_capacity(deltas.len()), Vec::with_capacity(deltas.len()));
    for ((slo, minute), (v, g)) in deltas {
        slos.push(*slo);
        minutes.push(*minute);
        valid.push(*v);
        good.push(*g);
    }
    sqlx::query(
        "INSERT INTO sli_minutes (slo_id, minute, valid, good)
         SELECT s, m, v, g FROM unnest($1::uuid[], $2::timestamptz[], $3::bigint[], $4::bigint[]) AS t(s, m, v, g)
         ORDER BY s, m
         ON CONFLICT (slo_id, minute) DO UPDATE SET valid = sli_minutes.valid + excluded.valid, good = sli_minutes.good + excluded.good",
    )
    .bind(&slos)
    .bind(&minutes)
    .bind(&valid)
    .bind(&good)
    .execute(conn)
    .await?;
    Ok(())
}

/// The counts of `slo` over each of `windows` ending at `now` (a minute
/// counts when it began after `now - window`, and not after `now`).
pub async fn counts(
    conn: &mut PgConnection,
    slo: Uuid,
    now: DateTime<Utc>,
    windows: &[Duration],
) -> Result<HashMap<Duration, Counts>, Error> {
    let longest = windows.iter().max().copied().unwrap_or_default();
    let rows: Vec<(DateTime<Utc>, i64, i64)> = sqlx::query_as(
        "SELECT minute, valid, good FROM sli_minutes WHERE slo_id = $1 AND minute > $2 AND minute <= $3",
    )
    .bind(slo)
    .bind(now - chrono::Duration::from_std(longest).unwrap_or_default())
    .bind(now)
    .fetch_all(conn)
    .await?;
    let mut found = HashMap::new();
    for window in windows {
        let from = now - chrono::Duration::from_std(*window).unwrap_or_default();
        let mut total = Counts::default();
        for (minute, valid, good) in rows.iter().filter(|(minute, ..)| *minute > from) {
            let _ = minute;
            total.valid += (*valid).max(0) as u64;
            total.bad += (*valid - *good).max(0) as u64;
        }
        found.insert(*window, total);
    }
    Ok(found)
}
