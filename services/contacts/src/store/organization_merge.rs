//! Merging organizations, as contacts are merged (`merge`): field-level
//! survivorship, then the members' relationships and the external ids move
//! to the survivor and the losers become redirects to it.
//!
//! Survivorship: name, kind and domain take the value of the organization
//! the caller chose for it, otherwise the most recently updated non-empty
//! one; addresses, external ids and tags are unioned (the survivor's first);
//! attributes take, per key, the most recently updated organization's value.
//!
//! Relationships: each one that pointed at a loser points at the survivor,
//! unless the contact already has one of the same type with the survivor
//! (or with an earlier loser): that one is removed, so a person employed by
//! "ACME, Inc." and by "Acme Incorporated" is employed once by the merged
//! company. Each move and removal is audited on its contact and published
//! as `RelationshipChanged`, which is how the roles that roll contacts up by
//! organization (segmentation) follow the merge.

use std::collections::HashMap;

use crm_platform::{
    Error,
    outbox::{self, NewEvent},
};
use crm_proto::contacts::v1 as pb;
use sqlx::Row;
use uuid::Uuid;

use super::{
    Actor, ContactStore, audit,
    organizations::{self, OrganizationRecord},
    relationships,
};
use crate::{
    matching::organizations::name_key,
    model::{OrganizationData, etag},
};

/// The single-valued fields a caller may choose a source for.
pub const CHOOSABLE_FIELDS: &[&str] = &["name", "kind", "domain"];

/// The survivor's data after merging `others` into it; `chosen` maps a
/// field to the organization whose value wins.
pub fn survive(
    survivor: &OrganizationRecord,
    others: &[OrganizationRecord],
    chosen: &HashMap<String, Uuid>,
) -> OrganizationData {
    let mut everyone: Vec<&OrganizationRecord> = std::iter::once(survivor).chain(others).collect();
    // Most recently updated first; the survivor wins ties.
    everyone.sort_by(|a, b| b.update_time.cmp(&a.update_time).then((b.id == survivor.id).cmp(&(a.id == survivor.id))));
    let pick = |field: &str, value: &dyn Fn(&OrganizationData) -> &String| -> String {
        if let Some(source) = chosen.get(field)
            && let Some(record) = everyone.iter().find(|record| record.id == *source)
        {
            return value(&record.data).clone();
        }
        everyone.iter().map(|record| value(&record.data)).find(|value| !value.is_empty()).cloned().unwrap_or_default()
    };
    let mut merged = survivor.data.clone();
    merged.name = pick("name", &|data| &data.name);
    merged.kind = pick("kind", &|data| &data.kind);
    merged.domain = pick("domain", &|data| &data.domain);
    for other in others {
        for address in &other.data.addresses {
            if !merged.addresses.contains(address) {
                merged.addresses.push(address.clone());
            }
        }
        merged.external_ids.extend(other.data.external_ids.iter().cloned());
        merged.tags.extend(other.data.tags.iter().cloned());
    }
    merged.external_ids.sort();
    merged.external_ids.dedup();
    merged.tags.sort();
    merged.tags.dedup();
    merged.attributes = Default::default();
    for record in &everyone {
        for (key, value) in &record.data.attributes {
            merged.attributes.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    merged
}

impl ContactStore {
    /// Merges `loser_ids` into `survivor_id` (ids of merged organizations resolve first).
    pub async fn merge_organizations(
        &self,
        survivor_id: Uuid,
        loser_ids: &[Uuid],
        chosen: &HashMap<String, Uuid>,
        expected_etag: &str,
        actor: &Actor,
    ) -> Result<OrganizationRecord, Error> {
        let mut tx = self.pool.begin().await?;
        let survivor_id = organizations::resolve(&mut tx, survivor_id).await?;
        let mut losers = Vec::new();
        for id in loser_ids {
            let resolved = organizations::resolve(&mut tx, *id).await?;
            if resolved != survivor_id && !losers.contains(&resolved) {
                losers.push(resolved);
            }
        }
        // Lock every row in id order, so that crossing merges cannot deadlock;
        // one merged away meanwhile by another merge makes this one retry.
        let mut everyone: Vec<Uuid> = losers.iter().copied().chain([survivor_id]).collect();
        everyone.sort();
        let merged_meanwhile: Vec<bool> = sqlx::query_scalar(
            "SELECT merged_into IS NOT NULL FROM organizations WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .bind(&everyone)
        .fetch_all(&mut *tx)
        .await?;
        if merged_meanwhile.iter().any(|merged| *merged) {
            return Err(Error::Conflict);
        }
        let survivor = organizations::load(&mut tx, survivor_id, false).await?;
        if survivor.delete_time.is_some() {
            return Err(Error::FailedPrecondition {
                reason: "ORGANIZATION_DELETED",
                message: format!("organization {survivor_id} is deleted; merge into a live organization"),
            });
        }
        if !expected_etag.is_empty() && expected_etag != etag(survivor.version) {
            return Err(Error::StaleEtag { resource: "organization", id: survivor_id.to_string() });
        }
        if losers.is_empty() {
            return Ok(survivor);
        }
        for (field, source) in chosen {
            if !everyone.contains(source) {
                return Err(Error::invalid(
                    format!("field_sources[{field:?}]"),
                    "must name the survivor or one of the losers",
                ));
            }
        }
        let mut others = Vec::new();
        for id in &losers {
            others.push(organizations::load(&mut tx, *id, false).await?);
        }
        let merged = survive(&survivor, &others, chosen);

        sqlx::query("UPDATE organization_external_ids SET organization_id = $1 WHERE organization_id = ANY($2)")
            .bind(survivor_id)
            .bind(&losers)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE organizations SET data = $2, name = $3, name_key = $4, version = version + 1, update_time = now()
             WHERE id = $1",
        )
        .bind(survivor_id)
        .bind(organizations::to_json(&merged)?)
        .bind(&merged.name)
        .bind(name_key(&merged.name))
        .execute(&mut *tx)
        .await?;
        self.move_members(&mut tx, survivor_id, &losers, actor).await?;
        sqlx::query(
            "UPDATE organizations SET merged_into = $1, version = version + 1, update_time = now() WHERE id = ANY($2)",
        )
        .bind(survivor_id)
        .bind(&losers)
        .execute(&mut *tx)
        .await?;
        // Organizations merged into a loser earlier now resolve to the survivor directly.
        sqlx::query("UPDATE organizations SET merged_into = $1 WHERE merged_into = ANY($2)")
            .bind(survivor_id)
            .bind(&losers)
            .execute(&mut *tx)
            .await?;

        let loser_list = losers.iter().map(Uuid::to_string).collect::<Vec<_>>();
        let changes = audit::Changes::Fields(audit::diff(&survivor.data.fields(), &merged.fields()));
        let entries = audit::merge_entries("organization", survivor_id, &losers, changes, actor);
        audit::record(&mut tx, &entries).await?;
        let record = organizations::load(&mut tx, survivor_id, false).await?;
        let event = pb::OrganizationMerged { survivor: Some(record.to_proto()), loser_ids: loser_list };
        outbox::append(&mut tx, &[NewEvent::new("organization", survivor_id.to_string(), &event, &actor.request_id)])
            .await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Points the losers' relationships at the survivor, removing those that
    /// would double one the contact already has with it (module doc).
    async fn move_members(
        &self,
        tx: &mut sqlx::PgConnection,
        survivor_id: Uuid,
        losers: &[Uuid],
        actor: &Actor,
    ) -> Result<(), Error> {
        let columns = relationships::COLUMNS;
        let removed = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM relationships r
             WHERE r.organization_id = ANY($2)
               AND EXISTS (SELECT 1 FROM relationships s
                           WHERE s.id <> r.id AND s.contact_id = r.contact_id
                             AND s.type = r.type AND s.custom_type = r.custom_type
                             AND (s.organization_id = $1 OR (s.organization_id = ANY($2) AND s.id < r.id)))
             RETURNING {columns}"
        )))
        .bind(survivor_id)
        .bind(losers)
        .fetch_all(&mut *tx)
        .await?;
        let moved = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE relationships SET organization_id = $1 WHERE organization_id = ANY($2) RETURNING {columns}"
        )))
        .bind(survivor_id)
        .bind(losers)
        .fetch_all(&mut *tx)
        .await?;
        for (rows, action, gone) in [(&removed, "unlink", true), (&moved, "relink", false)] {
            for row in rows {
                let relationship = relationships::relationship(row)?;
                let contact_id: Uuid = row.try_get("contact_id")?;
                self.linked(tx, contact_id, action, &relationship, gone, actor).await?;
            }
        }
        Ok(())
    }
}
