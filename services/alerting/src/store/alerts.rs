//! Alerts: each firing of a condition, from start to end.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use crm_platform::Error;
use sqlx::{PgConnection, Row, postgres::PgRow, types::Json};
use uuid::Uuid;

/// Labels or annotations, sorted by name.
pub type Pairs = BTreeMap<String, String>;

/// An alert as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertRecord {
    pub id: Uuid,
    pub fingerprint: String,
    pub labels: Pairs,
    pub annotations: Pairs,
    /// `slo` or `rule`.
    pub source: String,
    pub source_id: Uuid,
    pub firing: bool,
    pub starts_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
    pub resolved_by: String,
    pub acknowledged: Option<(String, DateTime<Utc>, String)>,
    /// When it resolves by itself (a rule's `resolve_after`).
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether receivers heard it fire (false while a silence held it back).
    pub notified: bool,
}

const COLUMNS: &str = "id, fingerprint, labels, annotations, source, source_id, state, starts_at, ends_at, resolved_by,
    acknowledged_by, acknowledged_at, acknowledge_note, expires_at, notified";

fn record(row: &PgRow) -> Result<AlertRecord, Error> {
    let acknowledged_by: Option<String> = row.try_get("acknowledged_by")?;
    let acknowledged_at: Option<DateTime<Utc>> = row.try_get("acknowledged_at")?;
    Ok(AlertRecord {
        id: row.try_get("id")?,
        fingerprint: row.try_get("fingerprint")?,
        labels: row.try_get::<Json<Pairs>, _>("labels")?.0,
        annotations: row.try_get::<Json<Pairs>, _>("annotations")?.0,
        source: row.try_get("source")?,
        source_id: row.try_get("source_id")?,
        firing: row.try_get::<String, _>("state")? == "firing",
        starts_at: row.try_get("starts_at")?,
        ends_at: row.try_get("ends_at")?,
        resolved_by: row.try_get("resolved_by")?,
        acknowledged: match (acknowledged_by, acknowledged_at) {
            (Some(by), Some(at)) => Some((by, at, row.try_get("acknowledge_note")?)),
            _ => None,
        },
        expires_at: row.try_get("expires_at")?,
        notified: row.try_get("notified")?,
    })
}

fn select(rest: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM alerts {rest}"))
}

pub async fn insert(conn: &mut PgConnection, alert: &AlertRecord, now: DateTime<Utc>) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO alerts (id, fingerprint, labels, annotations, source, source_id, state, starts_at, update_time, expires_at, notified)
         VALUES ($1, $2, $3, $4, $5, $6, 'firing', $7, $8, $9, $10)",
    )
    .bind(alert.id)
    .bind(&alert.fingerprint)
    .bind(Json(&alert.labels))
    .bind(Json(&alert.annotations))
    .bind(&alert.source)
    .bind(alert.source_id)
    .bind(alert.starts_at)
    .bind(now)
    .bind(alert.expires_at)
    .bind(alert.notified)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records whether receivers heard alert `id` fire.
pub async fn set_notified(conn: &mut PgConnection, id: Uuid, notified: bool) -> Result<(), Error> {
    sqlx::query("UPDATE alerts SET notified = $2 WHERE id = $1").bind(id).bind(notified).execute(conn).await?;
    Ok(())
}

/// Firing alerts receivers have not heard of (a silence held them back when they fired).
pub async fn unannounced(conn: &mut PgConnection) -> Result<Vec<AlertRecord>, Error> {
    let rows =
        sqlx::query(select("WHERE state = 'firing' AND NOT notified ORDER BY id LIMIT 1000")).fetch_all(conn).await?;
    rows.iter().map(record).collect()
}

/// Whether an alert with `fingerprint` is firing.
pub async fn is_firing(conn: &mut PgConnection, fingerprint: &str) -> Result<bool, Error> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM alerts WHERE fingerprint = $1 AND state = 'firing')")
        .bind(fingerprint)
        .fetch_one(conn)
        .await?)
}

/// Firing alerts whose time to resolve by themselves has come.
pub async fn expired(conn: &mut PgConnection, now: DateTime<Utc>) -> Result<Vec<AlertRecord>, Error> {
    let rows = sqlx::query(select("WHERE state = 'firing' AND expires_at <= $1 ORDER BY expires_at LIMIT 1000"))
        .bind(now)
        .fetch_all(conn)
        .await?;
    rows.iter().map(record).collect()
}

/// The firing alerts of one SLO or rule.
pub async fn firing_of(conn: &mut PgConnection, source_id: Uuid) -> Result<Vec<AlertRecord>, Error> {
    let rows = sqlx::query(select("WHERE source_id = $1 AND state = 'firing'")).bind(source_id).fetch_all(conn).await?;
    rows.iter().map(record).collect()
}

/// Ends a firing alert; `by` is who resolved it by hand (empty when its condition cleared).
pub async fn resolve(
    conn: &mut PgConnection,
    id: Uuid,
    now: DateTime<Utc>,
    by: &str,
    annotations: &Pairs,
) -> Result<AlertRecord, Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE alerts SET state = 'resolved', ends_at = $2, resolved_by = $3, annotations = $4, update_time = $2
         WHERE id = $1 AND state = 'firing' RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(now)
    .bind(by)
    .bind(Json(annotations))
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| Error::FailedPrecondition {
        reason: "ALERT_NOT_FIRING",
        message: format!("alert {id} is not firing"),
    })?;
    record(&row)
}

/// Replaces a firing alert's annotations (its figures move while it fires).
/// Not a change of its state: `update_time` stays, and receivers hear the
/// new figures at the next resend.
pub async fn annotate(conn: &mut PgConnection, id: Uuid, annotations: &Pairs) -> Result<(), Error> {
    sqlx::query("UPDATE alerts SET annotations = $2 WHERE id = $1")
        .bind(id)
        .bind(Json(annotations))
        .execute(conn)
        .await?;
    Ok(())
}

/// Whether an alert fired, resolved or was acknowledged at or after `since`.
pub async fn changed_since(conn: &mut PgConnection, since: DateTime<Utc>) -> Result<bool, Error> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM alerts WHERE update_time >= $1)")
        .bind(since)
        .fetch_one(conn)
        .await?)
}

pub async fn acknowledge(
    conn: &mut PgConnection,
    id: Uuid,
    by: &str,
    note: &str,
    now: DateTime<Utc>,
) -> Result<AlertRecord, Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE alerts SET acknowledged_by = $2, acknowledged_at = $4, acknowledge_note = $3, update_time = $4
         WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(by)
    .bind(note)
    .bind(now)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| Error::NotFound { resource: "alert", id: id.to_string() })?;
    record(&row)
}

/// The alerts with `ids` (those that exist), by id.
pub async fn get_many(conn: &mut PgConnection, ids: &[Uuid]) -> Result<HashMap<Uuid, AlertRecord>, Error> {
    let rows = sqlx::query(select("WHERE id = ANY($1)")).bind(ids).fetch_all(conn).await?;
    rows.iter().map(|row| record(row).map(|alert| (alert.id, alert))).collect()
}

pub async fn get(conn: &mut PgConnection, id: Uuid, for_update: bool) -> Result<AlertRecord, Error> {
    let lock = if for_update { "FOR UPDATE" } else { "" };
    let row = sqlx::query(select(&format!("WHERE id = $1 {lock}")))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| Error::NotFound { resource: "alert", id: id.to_string() })?;
    record(&row)
}

/// What a list of alerts keeps.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// `Some(true)`: firing only; `Some(false)`: resolved only.
    pub firing: Option<bool>,
    pub source_id: Option<Uuid>,
}

/// Alerts newest first, before `(starts_at, id)`.
pub async fn list(
    conn: &mut PgConnection,
    filter: &Filter,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<AlertRecord>, Error> {
    let rows = sqlx::query(select(
        "WHERE ($1::text IS NULL OR state = $1) AND ($2::uuid IS NULL OR source_id = $2)
           AND ($3::timestamptz IS NULL OR (starts_at, id) < ($3, $4))
         ORDER BY starts_at DESC, id DESC LIMIT $5",
    ))
    .bind(filter.firing.map(|firing| if firing { "firing" } else { "resolved" }))
    .bind(filter.source_id)
    .bind(before.map(|(at, _)| at))
    .bind(before.map(|(_, id)| id))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter().map(record).collect()
}

/// What Alertmanager must hear about: every firing alert, and those resolved since `resolved_since`.
pub async fn to_send(conn: &mut PgConnection, resolved_since: DateTime<Utc>) -> Result<Vec<AlertRecord>, Error> {
    let rows =
        sqlx::query(select("WHERE state = 'firing' OR (state = 'resolved' AND ends_at >= $1) ORDER BY starts_at, id"))
            .bind(resolved_since)
            .fetch_all(conn)
            .await?;
    rows.iter().map(record).collect()
}
