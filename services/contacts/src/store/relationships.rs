//! Typed links from a contact to an organization or to another contact.

use chrono::{DateTime, NaiveDate, Utc};
use crm_platform::{
    Error,
    outbox::{self, NewEvent},
};
use crm_proto::contacts::v1 as pb;
use sqlx::{Row, postgres::PgRow};
use uuid::Uuid;

use super::{Actor, ContactStore, audit, ensure_not_erased, load};
use crate::model::{date_to_proto, timestamp};

/// A relationship as written.
#[derive(Clone, Debug)]
pub struct NewRelationship {
    pub contact_id: Uuid,
    pub target: Target,
    pub kind: String,
    pub custom_type: String,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
}

#[derive(Clone, Copy, Debug)]
pub enum Target {
    Organization(Uuid),
    Contact(Uuid),
}

pub(super) const COLUMNS: &str =
    "id, contact_id, organization_id, other_contact_id, type, custom_type, start_date, end_date, create_time";

pub(super) fn relationship(row: &PgRow) -> Result<pb::Relationship, Error> {
    let organization: Option<Uuid> = row.try_get("organization_id")?;
    let other: Option<Uuid> = row.try_get("other_contact_id")?;
    let target = match (organization, other) {
        (Some(organization), _) => Some(pb::relationship::Target::OrganizationId(organization.to_string())),
        (_, Some(other)) => Some(pb::relationship::Target::OtherContactId(other.to_string())),
        _ => None,
    };
    let kind: String = row.try_get("type")?;
    let create_time: DateTime<Utc> = row.try_get("create_time")?;
    Ok(pb::Relationship {
        id: row.try_get::<Uuid, _>("id")?.to_string(),
        contact_id: row.try_get::<Uuid, _>("contact_id")?.to_string(),
        target,
        r#type: pb::RelationshipType::from_str_name(&kind).unwrap_or_default() as i32,
        custom_type: row.try_get("custom_type")?,
        start_date: row.try_get::<Option<NaiveDate>, _>("start_date")?.map(date_to_proto),
        end_date: row.try_get::<Option<NaiveDate>, _>("end_date")?.map(date_to_proto),
        create_time: Some(timestamp(create_time)),
    })
}

impl ContactStore {
    pub async fn create_relationship(&self, new: NewRelationship, actor: &Actor) -> Result<pb::Relationship, Error> {
        let mut tx = self.pool.begin().await?;
        let contact = load(&mut tx, new.contact_id, true).await?;
        ensure_not_erased(&contact)?;
        let (organization_id, other_contact_id) = match new.target {
            Target::Organization(id) => {
                // A merged-away organization's id links to its survivor.
                let live: Option<(Uuid, bool)> = sqlx::query_as(
                    "SELECT o.id, o.delete_time IS NULL FROM organizations r
                     JOIN organizations o ON o.id = coalesce(r.merged_into, r.id) WHERE r.id = $1",
                )
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                match live {
                    Some((organization, true)) => (Some(organization), None),
                    _ => return Err(Error::NotFound { resource: "organization", id: id.to_string() }),
                }
            }
            Target::Contact(id) => {
                let other = load(&mut tx, id, false).await?;
                ensure_not_erased(&other)?;
                if other.meta.id == contact.meta.id {
                    return Err(Error::invalid("relationship.other_contact_id", "must be another contact"));
                }
                (None, Some(other.meta.id))
            }
        };
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO relationships (id, contact_id, organization_id, other_contact_id, type, custom_type, start_date, end_date)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
        )))
        .bind(Uuid::now_v7())
        .bind(contact.meta.id)
        .bind(organization_id)
        .bind(other_contact_id)
        .bind(&new.kind)
        .bind(&new.custom_type)
        .bind(new.start_date)
        .bind(new.end_date)
        .fetch_one(&mut *tx)
        .await?;
        let created = relationship(&row)?;
        self.linked(&mut tx, contact.meta.id, "link", &created, false, actor).await?;
        tx.commit().await?;
        Ok(created)
    }

    pub(super) async fn linked(
        &self,
        tx: &mut sqlx::PgConnection,
        contact_id: Uuid,
        action: &'static str,
        relationship: &pb::Relationship,
        removed: bool,
        actor: &Actor,
    ) -> Result<(), Error> {
        let target = match &relationship.target {
            Some(pb::relationship::Target::OrganizationId(id)) => format!("organization {id}"),
            Some(pb::relationship::Target::OtherContactId(id)) => format!("contact {id}"),
            None => String::new(),
        };
        let kind = pb::RelationshipType::try_from(relationship.r#type).unwrap_or_default().as_str_name();
        let entry = audit::Entry {
            resource_type: "contact",
            resource_id: contact_id,
            action,
            changes: audit::Changes::none(),
            note: format!("{kind} {target} (relationship {})", relationship.id),
            actor,
        };
        audit::record(tx, &[entry]).await?;
        let event = pb::RelationshipChanged { relationship: Some(relationship.clone()), removed };
        outbox::append(tx, &[NewEvent::new("relationship", relationship.id.clone(), &event, &actor.request_id)])
            .await?;
        Ok(())
    }

    pub async fn delete_relationship(&self, id: Uuid, actor: &Actor) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        let row =
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM relationships WHERE id = $1 RETURNING {COLUMNS}")))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| Error::NotFound { resource: "relationship", id: id.to_string() })?;
        let removed = relationship(&row)?;
        let contact_id: Uuid = row.try_get("contact_id")?;
        self.linked(&mut tx, contact_id, "unlink", &removed, true, actor).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Relationships of a contact (held or pointing at it) or of an organization,
    /// oldest first; a merged-away id lists its survivor's.
    pub async fn list_relationships(
        &self,
        target: Target,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<pb::Relationship>, Error> {
        // A merged-away id lists its survivor's (resolved apart: see `organizations::resolve_or_same`).
        let (filter, id) = match target {
            Target::Contact(id) => (
                "(contact_id = $1 OR other_contact_id = $1)",
                super::survivor_of(&self.pool, "contacts", id).await?.unwrap_or(id),
            ),
            Target::Organization(id) => {
                ("organization_id = $1", super::organizations::resolve_or_same(&self.pool, id).await?)
            }
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM relationships WHERE {filter} AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
        )))
        .bind(id)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(relationship).collect()
    }
}
