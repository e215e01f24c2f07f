//! Silences.

use chrono::{DateTime, Utc};
use crm_platform::Error;
use sqlx::{PgConnection, Row, postgres::PgRow, types::Json};
use uuid::Uuid;

use crate::matchers::Matcher;

/// A silence as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct SilenceRecord {
    pub id: Uuid,
    pub matchers: Vec<Matcher>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub comment: String,
    pub created_by: String,
}

const COLUMNS: &str = "id, matchers, starts_at, ends_at, comment, created_by";

fn record(row: &PgRow) -> Result<SilenceRecord, Error> {
    Ok(SilenceRecord {
        id: row.try_get("id")?,
        matchers: row.try_get::<Json<Vec<Matcher>>, _>("matchers")?.0,
        starts_at: row.try_get("starts_at")?,
        ends_at: row.try_get("ends_at")?,
        comment: row.try_get("comment")?,
        created_by: row.try_get("created_by")?,
    })
}

pub async fn insert(conn: &mut PgConnection, silence: &SilenceRecord, now: DateTime<Utc>) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO silences (id, matchers, starts_at, ends_at, comment, created_by, update_time)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(silence.id)
    .bind(Json(&silence.matchers))
    .bind(silence.starts_at)
    .bind(silence.ends_at)
    .bind(&silence.comment)
    .bind(&silence.created_by)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Ends a silence at `now` (one already over stays as it is).
pub async fn expire(conn: &mut PgConnection, id: Uuid, now: DateTime<Utc>) -> Result<SilenceRecord, Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE silences SET ends_at = least(ends_at, $2), starts_at = least(starts_at, $2),
                update_time = CASE WHEN ends_at > $2 THEN $2 ELSE update_time END
         WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(now)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| Error::NotFound { resource: "silence", id: id.to_string() })?;
    record(&row)
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<SilenceRecord, Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM silences WHERE id = $1")))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| Error::NotFound { resource: "silence", id: id.to_string() })?;
    record(&row)
}

/// The silences in force at `now`.
pub async fn active(conn: &mut PgConnection, now: DateTime<Utc>) -> Result<Vec<SilenceRecord>, Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM silences WHERE starts_at <= $1 AND ends_at > $1"
    )))
    .bind(now)
    .fetch_all(conn)
    .await?;
    rows.iter().map(record).collect()
}

/// Silences newest first (by id, UUIDv7), before `before`; `not_ended_at`: only those not over then.
pub async fn list(
    conn: &mut PgConnection,
    not_ended_at: Option<DateTime<Utc>>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<SilenceRecord>, Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM silences
         WHERE ($1::timestamptz IS NULL OR ends_at > $1) AND ($2::uuid IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3"
    )))
    .bind(not_ended_at)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter().map(record).collect()
}

/// Whether what silences hold back changed in `(since, now]`: one was made
/// or ended by hand, or one started or ended by its times.
pub async fn changed_between(conn: &mut PgConnection, since: DateTime<Utc>, now: DateTime<Utc>) -> Result<bool, Error> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM silences
                        WHERE update_time > $1 OR (starts_at > $1 AND starts_at <= $2) OR (ends_at > $1 AND ends_at <= $2))",
    )
    .bind(since)
    .bind(now)
    .fetch_one(conn)
    .await?)
}
