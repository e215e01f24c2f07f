//! Webhooks and their delivery log.

use chrono::{DateTime, Utc};
use crm_platform::Error;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Row, postgres::PgRow, types::Json};
use uuid::Uuid;

use crate::matchers::Matcher;

/// A webhook as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookRecord {
    pub id: Uuid,
    pub name: String,
    pub url: String,
    pub matchers: Vec<Matcher>,
    pub secret: String,
    pub created_by: String,
    pub create_time: DateTime<Utc>,
}

const WEBHOOK_COLUMNS: &str = "id, name, url, matchers, secret, created_by, create_time";

fn webhook(row: &PgRow) -> Result<WebhookRecord, Error> {
    Ok(WebhookRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        url: row.try_get("url")?,
        matchers: row.try_get::<Json<Vec<Matcher>>, _>("matchers")?.0,
        secret: row.try_get("secret")?,
        created_by: row.try_get("created_by")?,
        create_time: row.try_get("create_time")?,
    })
}

pub async fn insert(conn: &mut PgConnection, record: &WebhookRecord) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO webhooks (id, name, url, matchers, secret, created_by, create_time) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(record.id)
    .bind(&record.name)
    .bind(&record.url)
    .bind(Json(&record.matchers))
    .bind(&record.secret)
    .bind(&record.created_by)
    .bind(record.create_time)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<WebhookRecord, Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1")))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| Error::NotFound { resource: "webhook", id: id.to_string() })?;
    webhook(&row)
}

/// Every webhook.
pub async fn all(conn: &mut PgConnection) -> Result<Vec<WebhookRecord>, Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY id")))
        .fetch_all(conn)
        .await?;
    rows.iter().map(webhook).collect()
}

/// Webhooks oldest first (by id, UUIDv7), after `after`.
pub async fn list(conn: &mut PgConnection, after: Option<Uuid>, limit: i64) -> Result<Vec<WebhookRecord>, Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2"
    )))
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter().map(webhook).collect()
}

/// Deletes a webhook; its pending deliveries become dead, with the reason as their last attempt.
pub async fn delete(conn: &mut PgConnection, id: Uuid, now: DateTime<Utc>) -> Result<WebhookRecord, Error> {
    let row =
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM webhooks WHERE id = $1 RETURNING {WEBHOOK_COLUMNS}")))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| Error::NotFound { resource: "webhook", id: id.to_string() })?;
    let attempt = Attempt { time: now, http_status: 0, latency_ms: 0, error: "the webhook was deleted".into() };
    sqlx::query(
        "UPDATE webhook_deliveries SET state = 'dead', next_attempt_at = NULL, attempts = attempts || $2
         WHERE webhook_id = $1 AND state = 'pending'",
    )
    .bind(id)
    .bind(Json(vec![attempt]))
    .execute(conn)
    .await?;
    webhook(&row)
}

/// One attempt at a delivery, as the log keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub time: DateTime<Utc>,
    pub http_status: u16,
    pub latency_ms: u64,
    pub error: String,
}

/// A delivery as the log keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryRecord {
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub alert_id: Uuid,
    /// `firing` or `resolved`.
    pub status: String,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    pub attempts: Vec<Attempt>,
    /// Attempts before this index were made before a retry by hand: they do not count against the limit.
    pub counted_from: usize,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub create_time: DateTime<Utc>,
}

impl DeliveryRecord {
    /// Attempts that count against the limit.
    pub fn counted_attempts(&self) -> usize {
        self.attempts.len().saturating_sub(self.counted_from)
    }
}

const DELIVERY_COLUMNS: &str =
    "id, webhook_id, alert_id, status, state, attempts, counted_from, next_attempt_at, create_time";

fn delivery(row: &PgRow) -> Result<DeliveryRecord, Error> {
    Ok(DeliveryRecord {
        id: row.try_get("id")?,
        webhook_id: row.try_get("webhook_id")?,
        alert_id: row.try_get("alert_id")?,
        status: row.try_get("status")?,
        state: row.try_get("state")?,
        attempts: row.try_get::<Json<Vec<Attempt>>, _>("attempts")?.0,
        counted_from: usize::try_from(row.try_get::<i32, _>("counted_from")?).unwrap_or_default(),
        next_attempt_at: row.try_get("next_attempt_at")?,
        create_time: row.try_get("create_time")?,
    })
}

/// Queues one delivery per webhook of `webhooks` announcing that `alert_id`
/// is `status` (once: queuing it again does nothing).
pub async fn enqueue(
    conn: &mut PgConnection,
    webhooks: &[Uuid],
    alert_id: Uuid,
    status: &str,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    if webhooks.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = webhooks.iter().map(|_| Uuid::now_v7()).collect();
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, webhook_id, alert_id, status, state, next_attempt_at, create_time)
         SELECT d, w, $3, $4, 'pending', $5, $5 FROM unnest($1::uuid[], $2::uuid[]) AS t(d, w)
         ON CONFLICT (webhook_id, alert_id, status) DO NOTHING",
    )
    .bind(&ids)
    .bind(webhooks)
    .bind(alert_id)
    .bind(status)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Pending deliveries due at `now`, the longest waiting first.
pub async fn due(conn: &mut PgConnection, now: DateTime<Utc>, limit: i64) -> Result<Vec<DeliveryRecord>, Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
         WHERE state = 'pending' AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $2"
    )))
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter().map(delivery).collect()
}

/// Records an attempt and where the delivery goes next: `delivered`,
/// `dead`, or `pending` again at `next_attempt_at`.
pub async fn record_attempt(
    conn: &mut PgConnection,
    id: Uuid,
    attempt: &Attempt,
    state: &str,
    next_attempt_at: Option<DateTime<Utc>>,
) -> Result<(), Error> {
    sqlx::query(
        "UPDATE webhook_deliveries SET attempts = attempts || $2, state = $3, next_attempt_at = $4
         WHERE id = $1 AND state = 'pending'",
    )
    .bind(id)
    .bind(Json(vec![attempt]))
    .bind(state)
    .bind(next_attempt_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// A dead delivery made pending again, due now, with a fresh count of attempts.
pub async fn retry(conn: &mut PgConnection, id: Uuid, now: DateTime<Utc>) -> Result<DeliveryRecord, Error> {
    let current = get_delivery(&mut *conn, id).await?;
    if current.state != "dead" {
        return Err(Error::FailedPrecondition {
            reason: "DELIVERY_NOT_DEAD",
            message: format!("delivery {id} is {}; only a dead delivery is sent again", current.state),
        });
    }
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = $2, counted_from = jsonb_array_length(attempts)
         WHERE id = $1 AND state = 'dead' AND EXISTS (SELECT 1 FROM webhooks WHERE webhooks.id = webhook_id)
         RETURNING {DELIVERY_COLUMNS}"
    )))
    .bind(id)
    .bind(now)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| Error::FailedPrecondition {
        reason: "WEBHOOK_DELETED",
        message: format!("the webhook of delivery {id} was deleted"),
    })?;
    delivery(&row)
}

pub async fn get_delivery(conn: &mut PgConnection, id: Uuid) -> Result<DeliveryRecord, Error> {
    let row =
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1")))
            .bind(id)
            .fetch_optional(conn)
            .await?
            .ok_or_else(|| Error::NotFound { resource: "webhook delivery", id: id.to_string() })?;
    delivery(&row)
}

/// A webhook's deliveries newest first (by id, UUIDv7), before `before`; `state`: only those in it.
pub async fn deliveries(
    conn: &mut PgConnection,
    webhook_id: Uuid,
    state: Option<&str>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<DeliveryRecord>, Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
         WHERE webhook_id = $1 AND ($2::text IS NULL OR state = $2) AND ($3::uuid IS NULL OR id < $3)
         ORDER BY id DESC LIMIT $4"
    )))
    .bind(webhook_id)
    .bind(state)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter().map(delivery).collect()
}

/// Whether webhook `id` (perhaps deleted) has any delivery in the log.
pub async fn has_deliveries(conn: &mut PgConnection, webhook_id: Uuid) -> Result<bool, Error> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM webhook_deliveries WHERE webhook_id = $1)")
        .bind(webhook_id)
        .fetch_one(conn)
        .await?)
}
