//! Score models and their versions (the audit trail).

use chrono::{DateTime, Utc};
use crm_platform::Error;
use sqlx::{PgConnection, Row, postgres::PgRow};
use uuid::Uuid;

use crate::{
    features::{self, FeatureDoc},
    scores::ModelDef,
};

/// A score model at one version.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelRecord {
    pub id: Uuid,
    pub version: i64,
    pub def: ModelDef,
    pub is_default: bool,
    pub create_time: DateTime<Utc>,
    pub made_at: DateTime<Utc>,
    pub made_by: String,
}

fn record(row: &PgRow) -> Result<ModelRecord, Error> {
    let def: ModelDef = serde_json::from_value(row.try_get("definition")?)
        .map_err(|error| Error::Internal(anyhow::Error::new(error).context("reading a stored score model")))?;
    Ok(ModelRecord {
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        is_default: row.try_get("is_default")?,
        def,
        create_time: row.try_get("create_time")?,
        made_at: row.try_get("made_at")?,
        made_by: row.try_get("made_by")?,
    })
}

const CURRENT: &str = "SELECT m.id, m.version, m.is_default, m.create_time, v.definition, v.made_at, v.made_by
     FROM score_models m JOIN score_model_versions v ON v.model_id = m.id AND v.version = m.version";

fn name_taken(name: &str) -> Error {
    Error::AlreadyExists {
        reason: "SCORE_MODEL_NAME_TAKEN",
        message: format!("a score model named {} exists", crm_platform::error::quote(name)),
        metadata: Default::default(),
    }
}

async fn take_default(tx: &mut PgConnection, id: Uuid) -> Result<(), Error> {
    sqlx::query("UPDATE score_models SET is_default = false WHERE is_default AND id <> $1")
        .bind(id)
        .execute(tx)
        .await?;
    Ok(())
}

async fn add_version(
    tx: &mut PgConnection,
    id: Uuid,
    version: i64,
    def: &ModelDef,
    made_by: &str,
    request_id: &str,
) -> Result<(), Error> {
    let definition = serde_json::to_value(def).map_err(|error| Error::Internal(error.into()))?;
    sqlx::query(
        "INSERT INTO score_model_versions (model_id, version, definition, made_by, request_id) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(version)
    .bind(definition)
    .bind(made_by)
    .bind(request_id)
    .execute(tx)
    .await?;
    Ok(())
}

pub async fn create(
    tx: &mut PgConnection,
    id: Uuid,
    def: &ModelDef,
    made_by: &str,
    request_id: &str,
) -> Result<(), Error> {
    if def.is_default {
        take_default(tx, id).await?;
    }
    let inserted = sqlx::query(
        "INSERT INTO score_models (id, name, version, is_default) VALUES ($1, $2, 1, $3) ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(&def.name)
    .bind(def.is_default)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(name_taken(&def.name));
    }
    add_version(tx, id, 1, def, made_by, request_id).await
}

/// A model's current version, locked for the transaction when `lock`.
pub async fn get(conn: &mut PgConnection, id: Uuid, lock: bool) -> Result<ModelRecord, Error> {
    let suffix = if lock { " FOR UPDATE OF m" } else { "" };
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{CURRENT} WHERE m.id = $1{suffix}")))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| Error::NotFound { resource: "score model", id: id.to_string() })?;
    record(&row)
}

/// The default model's current version.
pub async fn default(conn: &mut PgConnection) -> Result<ModelRecord, Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{CURRENT} WHERE m.is_default")))
        .fetch_optional(conn)
        .await?
        .ok_or_else(no_default)?;
    record(&row)
}

fn no_default() -> Error {
    Error::FailedPrecondition {
        reason: "NO_DEFAULT_SCORE_MODEL",
        message: "no score model is the default: name one with model_id, or make one the default".into(),
    }
}

/// A model (the one named, or the default) and a contact's stored features
/// (`None` while the read model does not know the contact; a merged
/// contact's are its survivor's), read in one statement: a tier asked while
/// a caller waits on the phone costs one round trip.
pub async fn model_and_features(
    conn: &mut PgConnection,
    model_id: Option<Uuid>,
    contact_id: Uuid,
) -> Result<(ModelRecord, Option<(Uuid, FeatureDoc)>), Error> {
    let which = if model_id.is_some() { "m.id = $2" } else { "m.is_default" };
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT m.id, m.version, m.is_default, m.create_time, v.definition, v.made_at, v.made_by,
                f.contact_id AS feature_contact, f.doc
         FROM score_models m JOIN score_model_versions v ON v.model_id = m.id AND v.version = m.version
         LEFT JOIN features f
           ON f.contact_id = coalesce((SELECT survivor_id FROM redirects WHERE loser_id = $1), $1)
         WHERE {which}"
    )))
    .bind(contact_id)
    .bind(model_id)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else {
        return Err(match model_id {
            Some(id) => Error::NotFound { resource: "score model", id: id.to_string() },
            None => no_default(),
        });
    };
    let model = record(&row)?;
    // Only the features the model reads are parsed out of the document.
    let wanted: Vec<String> = model.def.contributions.iter().map(|given| given.feature.clone()).collect();
    let features = match row.try_get::<Option<Uuid>, _>("feature_contact")? {
        Some(survivor) => Some((survivor, features::doc_from_bytes_only(&row.try_get::<Vec<u8>, _>("doc")?, &wanted))),
        None => None,
    };
    Ok((model, features))
}

/// Makes `def` the next version of model `id` (locked by the caller).
pub async fn update(
    tx: &mut PgConnection,
    current: &ModelRecord,
    def: &ModelDef,
    made_by: &str,
    request_id: &str,
) -> Result<(), Error> {
    let taken: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM score_models WHERE lower(name) = lower($1) AND id <> $2)")
            .bind(&def.name)
            .bind(current.id)
            .fetch_one(&mut *tx)
            .await?;
    if taken {
        return Err(name_taken(&def.name));
    }
    if def.is_default {
        take_default(tx, current.id).await?;
    }
    sqlx::query("UPDATE score_models SET name = $2, version = $3, is_default = $4 WHERE id = $1")
        .bind(current.id)
        .bind(&def.name)
        .bind(current.version + 1)
        .bind(def.is_default)
        .execute(&mut *tx)
        .await?;
    add_version(tx, current.id, current.version + 1, def, made_by, request_id).await
}

/// Models by name, after `(name, id)`.
pub async fn list(
    conn: &mut PgConnection,
    after: Option<(String, Uuid)>,
    limit: i64,
) -> Result<Vec<ModelRecord>, Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{CURRENT} WHERE ($1::text IS NULL OR (lower(m.name), m.id) > (lower($1), $2)) ORDER BY lower(m.name), m.id LIMIT $3"
    )))
    .bind(after.as_ref().map(|(name, _)| name.as_str()))
    .bind(after.as_ref().map(|(_, id)| *id))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter().map(record).collect()
}

/// Every version of model `id`, newest first.
pub async fn versions(conn: &mut PgConnection, id: Uuid) -> Result<Vec<ModelRecord>, Error> {
    let rows = sqlx::query(
        "SELECT m.id, v.version, m.is_default AND v.version = m.version AS is_default, m.create_time, v.definition, v.made_at, v.made_by
         FROM score_models m JOIN score_model_versions v ON v.model_id = m.id WHERE m.id = $1 ORDER BY v.version DESC",
    )
    .bind(id)
    .fetch_all(conn)
    .await?;
    if rows.is_empty() {
        return Err(Error::NotFound { resource: "score model", id: id.to_string() });
    }
    rows.iter().map(record).collect()
}
