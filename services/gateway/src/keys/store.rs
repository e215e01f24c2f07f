//! The `api_keys` table. Every change writes its event to the outbox in the
//! same transaction.

use chrono::{DateTime, Utc};
use crm_platform::{
    Error,
    outbox::{self, NewEvent},
    principal::AccessRole,
    timestamp::to_proto,
};
use crm_proto::gateway::v1 as pb;
use sqlx::{PgPool, Row, postgres::PgRow};
use uuid::Uuid;

/// A key as authentication needs it.
#[derive(Clone, Debug)]
pub struct KeyRecord {
    pub id: Uuid,
    pub roles: Vec<AccessRole>,
    pub secret_sha256: Vec<u8>,
    pub revoked: bool,
}

#[derive(Clone)]
pub struct KeyStore {
    pool: PgPool,
}

const COLUMNS: &str = "id, display_name, roles, secret_sha256, create_time, creator, revoke_time, revoker";

impl KeyStore {
    pub fn new(pool: PgPool) -> Self {
        KeyStore { pool }
    }

    /// Stores a new key and its `ApiKeyCreated` event.
    pub async fn create(
        &self,
        id: Uuid,
        display_name: &str,
        roles: &[AccessRole],
        secret_sha256: &[u8],
        creator: &str,
        request_id: &str,
    ) -> Result<pb::ApiKey, Error> {
        let role_names: Vec<&str> = roles.iter().map(|role| role.as_str()).collect();
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO api_keys (id, display_name, roles, secret_sha256, creator)
             VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
        )))
        .bind(id)
        .bind(display_name)
        .bind(&role_names)
        .bind(secret_sha256)
        .bind(creator)
        .fetch_one(&mut *tx)
        .await?;
        let key = api_key(&row)?;
        let event = pb::ApiKeyCreated { api_key: Some(key.clone()) };
        outbox::append(&mut tx, &[NewEvent::new("api_key", id.to_string(), &event, request_id)]).await?;
        tx.commit().await?;
        Ok(key)
    }

    pub async fn get(&self, id: Uuid) -> Result<pb::ApiKey, Error> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound { resource: "api key", id: id.to_string() })?;
        api_key(&row)
    }

    /// Up to `limit` keys older than `before` (ids are UUIDv7: newest first).
    pub async fn list(&self, before: Option<Uuid>, limit: i64, show_revoked: bool) -> Result<Vec<pb::ApiKey>, Error> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_keys
             WHERE ($1::uuid IS NULL OR id < $1) AND ($2 OR revoke_time IS NULL)
             ORDER BY id DESC LIMIT $3"
        )))
        .bind(before)
        .bind(show_revoked)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(api_key).collect()
    }

    /// Revokes a key and writes `ApiKeyRevoked`; a revoked key is returned as it is.
    pub async fn revoke(&self, id: Uuid, revoker: &str, request_id: &str) -> Result<pb::ApiKey, Error> {
        let mut tx = self.pool.begin().await?;
        let revoked = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE api_keys SET revoke_time = now(), revoker = $2
             WHERE id = $1 AND revoke_time IS NULL RETURNING {COLUMNS}"
        )))
        .bind(id)
        .bind(revoker)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = revoked else {
            tx.rollback().await?;
            return self.get(id).await;
        };
        let key = api_key(&row)?;
        let event = pb::ApiKeyRevoked { api_key: Some(key.clone()) };
        outbox::append(&mut tx, &[NewEvent::new("api_key", id.to_string(), &event, request_id)]).await?;
        tx.commit().await?;
        Ok(key)
    }

    /// What authentication needs to know about key `id`, if it exists.
    pub async fn record(&self, id: Uuid) -> Result<Option<KeyRecord>, Error> {
        let row =
            sqlx::query("SELECT roles, secret_sha256, revoke_time IS NOT NULL AS revoked FROM api_keys WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        let Some(row) = row else { return Ok(None) };
        let role_names: Vec<String> = row.try_get("roles")?;
        // Unknown role names (written by a newer version) grant nothing.
        let roles = role_names.iter().filter_map(|name| name.parse().ok()).collect();
        Ok(Some(KeyRecord {
            id,
            roles,
            secret_sha256: row.try_get("secret_sha256")?,
            revoked: row.try_get("revoked")?,
        }))
    }
}

fn api_key(row: &PgRow) -> Result<pb::ApiKey, Error> {
    let id: Uuid = row.try_get("id")?;
    let create_time: DateTime<Utc> = row.try_get("create_time")?;
    let revoke_time: Option<DateTime<Utc>> = row.try_get("revoke_time")?;
    Ok(pb::ApiKey {
        id: id.to_string(),
        display_name: row.try_get("display_name")?,
        roles: row.try_get("roles")?,
        create_time: Some(to_proto(create_time)),
        creator: row.try_get("creator")?,
        revoke_time: revoke_time.map(to_proto),
        revoker: row.try_get::<Option<String>, _>("revoker")?.unwrap_or_default(),
    })
}
