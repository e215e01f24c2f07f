//! Organizations: companies, households, partners, suppliers.

use chrono::{DateTime, Utc};
use crm_platform::{
    Error,
    outbox::{self, NewEvent},
};
use crm_proto::contacts::v1 as pb;
use sqlx::{PgConnection, Row, postgres::PgRow};
use uuid::Uuid;

use super::{Actor, ContactStore, audit};
use crate::{
    matching::organizations::{likely_same, name_key},
    model::{OrganizationData, etag, timestamp},
};

const COLUMNS: &str = "id, data, version, create_time, update_time, delete_time";

#[derive(Clone, Debug)]
pub struct OrganizationRecord {
    pub id: Uuid,
    pub data: OrganizationData,
    pub version: i64,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    pub delete_time: Option<DateTime<Utc>>,
}

impl OrganizationRecord {
    pub fn to_proto(&self) -> pb::Organization {
        let mut organization = self.data.to_proto();
        organization.id = self.id.to_string();
        organization.create_time = Some(timestamp(self.create_time));
        organization.update_time = Some(timestamp(self.update_time));
        organization.delete_time = self.delete_time.map(timestamp);
        organization.etag = etag(self.version);
        organization
    }
}

fn record(row: &PgRow) -> Result<OrganizationRecord, Error> {
    let data = serde_json::from_value(row.try_get("data")?)
        .map_err(|error| Error::Internal(anyhow::Error::new(error).context("reading a stored organization")))?;
    Ok(OrganizationRecord {
        id: row.try_get("id")?,
        data,
        version: row.try_get("version")?,
        create_time: row.try_get("create_time")?,
        update_time: row.try_get("update_time")?,
        delete_time: row.try_get("delete_time")?,
    })
}

/// The id an organization id resolves to: itself, or the survivor it was merged into.
pub(super) async fn resolve(conn: &mut PgConnection, id: Uuid) -> Result<Uuid, Error> {
    super::survivor_of(conn, "organizations", id)
        .await?
        .ok_or_else(|| Error::NotFound { resource: "organization", id: id.to_string() })
}

/// The id an organization id resolves to, or the id itself when no
/// organization has it (a filter by it then finds nothing, as before merges).
/// Resolved apart from the query that filters by it: an id computed inside
/// a statement ordered by another column can lead the planner to walk that
/// column's index instead of the filter's.
pub(super) async fn resolve_or_same<'e>(executor: impl sqlx::PgExecutor<'e>, id: Uuid) -> Result<Uuid, Error> {
    Ok(super::survivor_of(executor, "organizations", id).await?.unwrap_or(id))
}

/// The organization `id` resolves to (itself, or the survivor it was merged into).
pub(super) async fn load(conn: &mut PgConnection, id: Uuid, for_update: bool) -> Result<OrganizationRecord, Error> {
    let lock = if for_update { "FOR UPDATE" } else { "" };
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM organizations
         WHERE id = (SELECT coalesce(r.merged_into, r.id) FROM organizations r WHERE r.id = $1) {lock}"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| Error::NotFound { resource: "organization", id: id.to_string() })?;
    record(&row)
}

async fn write_external_ids(conn: &mut PgConnection, id: Uuid, data: &OrganizationData) -> Result<(), Error> {
    sqlx::query("DELETE FROM organization_external_ids WHERE organization_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    for external in &data.external_ids {
        let claimed = sqlx::query(
            "INSERT INTO organization_external_ids (source, external_id, organization_id) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(&external.source)
        .bind(&external.id)
        .bind(id)
        .execute(&mut *conn)
        .await?;
        if claimed.rows_affected() == 0 {
            return Err(Error::AlreadyExists {
                reason: "EXTERNAL_ID_TAKEN",
                message: format!("external id {}/{} belongs to another organization", external.source, external.id),
                metadata: Default::default(),
            });
        }
    }
    Ok(())
}

pub(super) fn to_json(data: &OrganizationData) -> Result<serde_json::Value, Error> {
    serde_json::to_value(data)
        .map_err(|error| Error::Internal(anyhow::Error::new(error).context("writing an organization")))
}

/// Records a change of `record`: its audit entry (with `note`, empty for
/// none) and its `OrganizationChanged` event.
async fn changed(
    tx: &mut PgConnection,
    record: &OrganizationRecord,
    action: &'static str,
    changes: audit::Changes,
    note: String,
    actor: &Actor,
) -> Result<(), Error> {
    let entry = audit::Entry { resource_type: "organization", resource_id: record.id, action, changes, note, actor };
    audit::record(tx, &[entry]).await?;
    let event = pb::OrganizationChanged { organization: Some(record.to_proto()) };
    outbox::append(tx, &[NewEvent::new("organization", record.id.to_string(), &event, &actor.request_id)]).await?;
    Ok(())
}

/// Live organizations likely the same company as `data` (at most 20, the
/// oldest first; only those created after `newer_than` when given), with why.
async fn likely_duplicates(
    tx: &mut PgConnection,
    data: &OrganizationData,
    newer_than: Option<Uuid>,
) -> Result<Vec<(OrganizationRecord, Vec<&'static str>)>, Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM organizations WHERE delete_time IS NULL AND merged_into IS NULL
           AND ((name_key = $1 AND $1 <> '') OR (data->>'domain' = $2 AND $2 <> ''))
           AND ($3::uuid IS NULL OR id > $3)
         ORDER BY id LIMIT 20"
    )))
    .bind(name_key(&data.name))
    .bind(&data.domain)
    .bind(newer_than)
    .fetch_all(&mut *tx)
    .await?;
    let mut found = Vec::new();
    for row in &rows {
        let candidate = record(row)?;
        let reasons = likely_same(data, &candidate.data);
        if !reasons.is_empty() {
            found.push((candidate, reasons));
        }
    }
    Ok(found)
}

/// ALREADY_EXISTS naming the candidates and why (no names: they may be people's).
fn likely_duplicate(candidates: &[(OrganizationRecord, Vec<&'static str>)]) -> Error {
    let ids: Vec<String> = candidates.iter().map(|(candidate, _)| candidate.id.to_string()).collect();
    Error::AlreadyExists {
        reason: "LIKELY_DUPLICATE",
        message: format!(
            "the organization likely duplicates {} ({}); merge into it, or pass allow_duplicate with an override_reason",
            ids.join(", "),
            candidates[0].1.join(", ")
        ),
        metadata: [("candidate_ids".to_string(), ids.join(",")), ("reasons".to_string(), candidates[0].1.join(","))]
            .into(),
    }
}

impl ContactStore {
    /// Creates an organization, unless it likely duplicates a live one and
    /// `allow_duplicate` is off (`override_reason` goes into the audit trail).
    pub async fn create_organization(
        &self,
        data: OrganizationData,
        allow_duplicate: bool,
        override_reason: &str,
        actor: &Actor,
    ) -> Result<OrganizationRecord, Error> {
        let mut tx = self.pool.begin().await?;
        // Two concurrent creates of one company must not both pass the check:
        // serialise on its name key and domain (sorted, so no deadlock).
        let key = name_key(&data.name);
        let locks: Vec<String> = [("organization-name", &key), ("organization-domain", &data.domain)]
            .into_iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(kind, value)| format!("{kind}:{value}"))
            .collect();
        sqlx::query(
            "SELECT pg_advisory_xact_lock(h) FROM (SELECT hashtextextended(k, 0) AS h FROM unnest($1::text[]) AS k ORDER BY 1) AS s",
        )
        .bind(&locks)
        .execute(&mut *tx)
        .await?;
        let candidates = likely_duplicates(&mut tx, &data, None).await?;
        if !candidates.is_empty() && !allow_duplicate {
            return Err(likely_duplicate(&candidates));
        }
        let id = Uuid::now_v7();
        sqlx::query("INSERT INTO organizations (id, data, name, name_key) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(to_json(&data)?)
            .bind(&data.name)
            .bind(&key)
            .execute(&mut *tx)
            .await?;
        write_external_ids(&mut tx, id, &data).await?;
        let record = load(&mut tx, id, false).await?;
        let note = if candidates.is_empty() {
            String::new()
        } else {
            let ids: Vec<String> = candidates.iter().map(|(candidate, _)| candidate.id.to_string()).collect();
            format!("duplicate check overridden: {override_reason}; candidates {}", ids.join(", "))
        };
        changed(&mut tx, &record, "create", audit::Changes::created(&data)?, note, actor).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// One page of the scan for duplicate organizations: up to `limit` live
    /// organizations after `after`, each paired with the live ones after it
    /// that are likely the same company; and where the next page starts.
    pub async fn scan_organization_duplicates(
        &self,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<(Vec<(Uuid, Uuid, Vec<&'static str>)>, Option<Uuid>), Error> {
        let mut conn = self.pool.acquire().await?;
        let firsts: Vec<OrganizationRecord> = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM organizations
             WHERE delete_time IS NULL AND merged_into IS NULL AND ($1::uuid IS NULL OR id > $1)
             ORDER BY id LIMIT $2"
        )))
        .bind(after)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(record)
        .collect::<Result<_, _>>()?;
        let mut pairs = Vec::new();
        for first in &firsts {
            for (other, reasons) in likely_duplicates(&mut conn, &first.data, Some(first.id)).await? {
                pairs.push((first.id, other.id, reasons));
            }
        }
        let next = if firsts.len() as i64 == limit { firsts.last().map(|first| first.id) } else { None };
        Ok((pairs, next))
    }

    /// Gives the organizations stored before name keys existed theirs; the
    /// number filled in.
    pub async fn fill_name_keys(&self) -> Result<u64, Error> {
        let mut filled = 0;
        loop {
            let rows: Vec<(Uuid, String)> =
                sqlx::query_as("SELECT id, name FROM organizations WHERE name_key IS NULL ORDER BY id LIMIT 1000")
                    .fetch_all(&self.pool)
                    .await?;
            if rows.is_empty() {
                return Ok(filled);
            }
            let (ids, keys): (Vec<Uuid>, Vec<String>) = rows.iter().map(|(id, name)| (*id, name_key(name))).unzip();
            filled += sqlx::query(
                "UPDATE organizations o SET name_key = k.key FROM unnest($1::uuid[], $2::text[]) AS k(id, key)
                 WHERE o.id = k.id",
            )
            .bind(&ids)
            .bind(&keys)
            .execute(&self.pool)
            .await?
            .rows_affected();
        }
    }

    pub async fn get_organization(&self, id: Uuid) -> Result<OrganizationRecord, Error> {
        let mut conn = self.pool.acquire().await?;
        load(&mut conn, id, false).await
    }

    pub async fn update_organization(
        &self,
        id: Uuid,
        expected_etag: &str,
        actor: &Actor,
        change: impl FnOnce(&OrganizationData) -> Result<OrganizationData, Error>,
    ) -> Result<OrganizationRecord, Error> {
        let mut tx = self.pool.begin().await?;
        let before = load(&mut tx, id, true).await?;
        if !expected_etag.is_empty() && expected_etag != etag(before.version) {
            return Err(Error::StaleEtag { resource: "organization", id: id.to_string() });
        }
        let after = change(&before.data)?;
        let changes = audit::diff(&before.data.fields(), &after.fields());
        if changes.is_empty() {
            return Ok(before);
        }
        let id = before.id; // a merged-away id changes its survivor
        sqlx::query(
            "UPDATE organizations SET data = $2, name = $3, name_key = $4, version = version + 1, update_time = now()
             WHERE id = $1",
        )
        .bind(id)
        .bind(to_json(&after)?)
        .bind(&after.name)
        .bind(name_key(&after.name))
        .execute(&mut *tx)
        .await?;
        write_external_ids(&mut tx, id, &after).await?;
        let record = load(&mut tx, id, false).await?;
        changed(&mut tx, &record, "update", audit::Changes::Fields(changes), String::new(), actor).await?;
        tx.commit().await?;
        Ok(record)
    }

    pub async fn list_organizations(
        &self,
        after: Option<Uuid>,
        limit: i64,
        show_deleted: bool,
    ) -> Result<Vec<OrganizationRecord>, Error> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM organizations
             WHERE merged_into IS NULL AND ($1::uuid IS NULL OR id > $1) AND ($2 OR delete_time IS NULL)
             ORDER BY id LIMIT $3"
        )))
        .bind(after)
        .bind(show_deleted)
        .bind(limit)
        .fetch_all(&mut *self.reads.acquire().await?)
        .await?;
        rows.iter().map(record).collect()
    }

    pub async fn delete_organization(
        &self,
        id: Uuid,
        expected_etag: &str,
        actor: &Actor,
    ) -> Result<OrganizationRecord, Error> {
        let mut tx = self.pool.begin().await?;
        let before = load(&mut tx, id, true).await?;
        if !expected_etag.is_empty() && expected_etag != etag(before.version) {
            return Err(Error::StaleEtag { resource: "organization", id: id.to_string() });
        }
        if before.delete_time.is_some() {
            return Ok(before);
        }
        let id = before.id; // a merged-away id deletes its survivor
        sqlx::query(
            "UPDATE organizations SET delete_time = now(), version = version + 1, update_time = now() WHERE id = $1",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM organization_external_ids WHERE organization_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let record = load(&mut tx, id, false).await?;
        changed(&mut tx, &record, "delete", audit::Changes::none(), String::new(), actor).await?;
        tx.commit().await?;
        Ok(record)
    }
}
