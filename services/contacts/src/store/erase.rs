//! The right to be forgotten. The contact (and every contact merged into
//! it, being the same person) keeps a tombstone: id, state and times. Its
//! data, blocking keys, external ids, idempotency keys and relationships are
//! deleted, the values in its audit trail are wiped (who did what when
//! stays), and the payloads of its past events in the outbox are rewritten
//! to the tombstone. `ContactErased` tells other roles to wipe what they hold.

use crm_platform::{
    Error,
    outbox::{self, NewEvent},
};
use crm_proto::contacts::v1 as pb;
use prost::{Message, Name};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{Actor, ContactStore, audit, load, resolve};
use crate::model::ContactRecord;

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
        sqlx::query(
            "UPDATE contacts SET data = '{}', search_text = '', tags = '{}', owner = '', lifecycle_stage = '',
                 needs_review = false, erase_time = now(), version = version + 1, update_time = now()
             WHERE id = ANY($1)",
        )
        .bind(&group)
        .execute(&mut *tx)
        .await?;
        for table in ["contact_keys", "contact_external_ids", "create_requests"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE contact_id = ANY($1)")))
                .bind(&group)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM relationships WHERE contact_id = ANY($1) OR other_contact_id = ANY($1)")
            .bind(&group)
            .execute(&mut *tx)
            .await?;
        audit::redact(&mut tx, &group).await?;
        scrub_events(&mut tx, &group).await?;

        let entry = audit::Entry {
            resource_type: "contact",
            resource_id: id,
            action: "erase",
            changes: Vec::new(),
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

/// The contact as an erased tombstone: its id and state only.
fn tombstone(contact: Option<pb::Contact>) -> Option<pb::Contact> {
    contact.map(|contact| pb::Contact { id: contact.id, state: pb::ContactState::Erased as i32, ..Default::default() })
}

/// Rewrites the payloads of the contacts' past events to tombstones.
async fn scrub_events(tx: &mut PgConnection, ids: &[Uuid]) -> Result<(), Error> {
    let aggregate_ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    let rows = sqlx::query(
        "SELECT id, event_type, payload FROM outbox WHERE aggregate_type = 'contact' AND aggregate_id = ANY($1)",
    )
    .bind(&aggregate_ids)
    .fetch_all(&mut *tx)
    .await?;
    let decode_error =
        |error: prost::DecodeError| Error::Internal(anyhow::Error::new(error).context("decoding an event"));
    for row in rows {
        let event_type: String = row.try_get("event_type")?;
        let payload: Vec<u8> = row.try_get("payload")?;
        let scrubbed = if event_type == pb::ContactCreated::full_name() {
            let mut event = pb::ContactCreated::decode(payload.as_slice()).map_err(decode_error)?;
            event.contact = tombstone(event.contact);
            event.encode_to_vec()
        } else if event_type == pb::ContactUpdated::full_name() {
            let mut event = pb::ContactUpdated::decode(payload.as_slice()).map_err(decode_error)?;
            event.contact = tombstone(event.contact);
            event.encode_to_vec()
        } else if event_type == pb::ContactMerged::full_name() {
            let mut event = pb::ContactMerged::decode(payload.as_slice()).map_err(decode_error)?;
            event.survivor = tombstone(event.survivor);
            event.encode_to_vec()
        } else {
            continue;
        };
        sqlx::query("UPDATE outbox SET payload = $2 WHERE id = $1")
            .bind(row.try_get::<Uuid, _>("id")?)
            .bind(scrubbed)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}
