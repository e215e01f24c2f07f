//! Rules on customer events.

use std::time::Duration;

use chrono::{DateTime, Utc};
use crm_platform::Error;
use sqlx::{PgConnection, Row, postgres::PgRow, types::Json};
use uuid::Uuid;

use super::alerts::Pairs;

/// A rule as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleRecord {
    pub id: Uuid,
    pub name: String,
    pub owner: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub condition: String,
    pub severity: String,
    pub labels: Pairs,
    pub annotations: Pairs,
    pub resolve_after: Option<Duration>,
    pub created_by: String,
    pub create_time: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, owner, description, event_types, condition, severity, labels, annotations,
    resolve_after_seconds, created_by, create_time";

fn record(row: &PgRow) -> Result<RuleRecord, Error> {
    Ok(RuleRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        owner: row.try_get("owner")?,
        description: row.try_get("description")?,
        event_types: row.try_get("event_types")?,
        condition: row.try_get("condition")?,
        severity: row.try_get("severity")?,
        labels: row.try_get::<Json<Pairs>, _>("labels")?.0,
        annotations: row.try_get::<Json<Pairs>, _>("annotations")?.0,
        resolve_after: row
            .try_get::<Option<i64>, _>("resolve_after_seconds")?
            .map(|seconds| Duration::from_secs(seconds.max(0) as u64)),
        created_by: row.try_get("created_by")?,
        create_time: row.try_get("create_time")?,
    })
}

fn select(rest: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM rules WHERE delete_time IS NULL {rest}"))
}

pub async fn insert(conn: &mut PgConnection, rule: &RuleRecord) -> Result<(), Error> {
    let inserted = sqlx::query(
        "INSERT INTO rules (id, name, owner, description, event_types, condition, severity, labels, annotations,
                            resolve_after_seconds, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
    )
    .bind(rule.id)
    .bind(&rule.name)
    .bind(&rule.owner)
    .bind(&rule.description)
    .bind(&rule.event_types)
    .bind(&rule.condition)
    .bind(&rule.severity)
    .bind(Json(&rule.labels))
    .bind(Json(&rule.annotations))
    .bind(rule.resolve_after.map(|after| after.as_secs() as i64))
    .bind(&rule.created_by)
    .execute(conn)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(Error::AlreadyExists {
            reason: "RULE_NAME_TAKEN",
            message: format!("a rule named {} exists", crm_platform::error::quote(&rule.name)),
            metadata: Default::default(),
        });
    }
    Ok(())
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<RuleRecord, Error> {
    let row = sqlx::query(select("AND id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| Error::NotFound { resource: "alert rule", id: id.to_string() })?;
    record(&row)
}

/// Every live rule.
pub async fn all(conn: &mut PgConnection) -> Result<Vec<RuleRecord>, Error> {
    sqlx::query(select("")).fetch_all(conn).await?.iter().map(record).collect()
}

/// Live rules by name, after `(name, id)`.
pub async fn list(
    conn: &mut PgConnection,
    after: Option<(String, Uuid)>,
    limit: i64,
) -> Result<Vec<RuleRecord>, Error> {
    let rows = sqlx::query(select(
        "AND ($1::text IS NULL OR (lower(name), id) > (lower($1), $2)) ORDER BY lower(name), id LIMIT $3",
    ))
    .bind(after.as_ref().map(|(name, _)| name.as_str()))
    .bind(after.as_ref().map(|(_, id)| *id))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter().map(record).collect()
}

pub async fn delete(conn: &mut PgConnection, id: Uuid) -> Result<(), Error> {
    sqlx::query("UPDATE rules SET delete_time = now() WHERE id = $1").bind(id).execute(conn).await?;
    Ok(())
}
