//! The right to be forgotten. The contact (and every contact merged into
//! it, being the same person) keeps a tombstone: id, state and times. Its
//! data, terms, external ids, idempotency keys and relationships are
//! deleted, its names leave the search vocabulary, the values in its audit
//! trail are wiped (who did what when stays), and the payloads of its past
//! events in the outbox are rewritten to the tombstone. `ContactErased` tells other roles to wipe what they hold.

use std::collections::BTreeSet;

use crm_platform::{
    Error,
    outbox::{self, NewEvent},
};
use crm_proto::contacts::v1 as pb;
use prost::{Message, Name};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Actor, ContactStore, audit, forget_terms, load, resolve, search};
use crate::{model::ContactRecord, terms};

impl ContactStore {
    pub async fn erase(&self, id: Uuid, reason: &str, actor: &Actor) -> Result<ContactRecord, Error> {
        let mut tx = self.pool.begin().await?;
        let id = resolve(&mut tx, id).await?;
        let survivor = load(&mut tx, id, true).await?;
        if survivor.meta.erase_time.is_some() {
            return Ok(survivor);
        }
        let mut group: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM contacts WHERE merged_into = $1 FOR UPDATE")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        group.push(id);
        // Every name the person ever had leaves the search vocabulary (below,
        // once the data is gone) unless a live contact has it too.
        let words = erased_words(&mut tx, &group).await?;
        forget_terms(&mut tx, &group).await?;
        sqlx::query(
            "UPDATE contacts SET data = '{}', tags = '{}', owner = '', lifecycle_stage = '',
                 needs_review = false, erase_time = now(), version = version + 1, update_time = now()
             WHERE id = ANY($1)",
        )
        .bind(&group)
        .execute(&mut *tx)
        .await?;
        for table in ["contact_external_ids", "create_requests"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE contact_id = ANY($1)")))
                .bind(&group)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM relationships WHERE contact_id = ANY($1) OR other_contact_id = ANY($1)")
            .bind(&group)
            .execute(&mut *tx)
            .await?;
        search::forget_unused_words(&mut tx, &words).await?;
        audit::redact(&mut tx, &group).await?;
        scrub_events(&mut tx, &group).await?;

        let entry = audit::Entry {
            resource_type: "contact",
            resource_id: id,
            action: "erase",
            changes: audit::Changes::none(),
            note: reason.to_string(),
            actor,
        };
        audit::record(&mut tx, &[entry]).await?;
        let events: Vec<NewEvent> = group
            .iter()
            .map(|erased| {
                let event = pb::ContactErased { contact_id: erased.to_string() };
                NewEvent::new("contact", erased.to_string(), &event, &actor.request_id)
            })
            .collect();
        outbox::append(&mut tx, &events).await?;
        let record = load(&mut tx, id, false).await?;
        tx.commit().await?;
        Ok(record)
    }
}

/// The name words of these contacts, now and in their audit trail.
async fn erased_words(tx: &mut PgConnection, group: &[Uuid]) -> Result<BTreeSet<String>, Error> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT n.v FROM contacts c,
             LATERAL (VALUES (c.data->>'given_name'), (c.data->>'family_name'), (c.data->>'display_name')) AS n(v)
         WHERE c.id = ANY($1) AND n.v <> ''
         UNION ALL
         SELECT n.v FROM audit_events a, jsonb_array_elements(a.changes) AS ch,
             LATERAL (VALUES (ch->>'before'), (ch->>'after')) AS n(v)
         WHERE a.resource_id = ANY($1) AND jsonb_typeof(a.changes) = 'array'
           AND ch->>'field' IN ('given_name', 'family_name', 'display_name') AND n.v <> ''
         UNION ALL
         SELECT n.v FROM audit_events a, LATERAL (SELECT coalesce(a.created, a.changes->'created') AS d) AS created,
             LATERAL (VALUES (created.d->>'given_name'), (created.d->>'family_name'),
                             (created.d->>'display_name')) AS n(v)
         WHERE a.resource_id = ANY($1) AND created.d IS NOT NULL AND n.v <> ''",
    )
    .bind(group)
    .fetch_all(tx)
    .await?;
    // Audit values of changes are JSON renderings ("\"Zeb\""); current and created names are plain.
    Ok(names
        .iter()
        .flat_map(|name| terms::split(&serde_json::from_str::<String>(name).unwrap_or_else(|_| name.clone())))
        .collect())
}

/// The contact as an erased tombstone: its id and state only.
fn tombstone(contact: Option<pb::Contact>) -> Option<pb::Contact> {
    contact.map(|contact| pb::Contact { id: contact.id, state: pb::ContactState::Erased as i32, ..Default::default() })
}

/// Rewrites the payloads of the contacts' past events to tombstones.
async fn scrub_events(tx: &mut PgConnection, ids: &[Uuid]) -> Result<(), Error> {
    let aggregate_ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    outbox::rewrite(tx, &aggregate_ids, |event_type, payload| {
        Ok(if event_type == pb::ContactCreated::full_name() {
            let mut event = pb::ContactCreated::decode(payload)?;
            event.contact = tombstone(event.contact);
            Some(event.encode_to_vec())
        } else if event_type == pb::ContactUpdated::full_name() {
            let mut event = pb::ContactUpdated::decode(payload)?;
            event.contact = tombstone(event.contact);
            Some(event.encode_to_vec())
        } else if event_type == pb::ContactMerged::full_name() {
            let mut event = pb::ContactMerged::decode(payload)?;
            event.survivor = tombstone(event.survivor);
            Some(event.encode_to_vec())
        } else {
            None
        })
    })
    .await
    .map_err(|error| Error::Internal(error.context("rewriting erased events")))
}
