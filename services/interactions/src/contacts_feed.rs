//! What this role takes from the contacts feed (a platform consumer: each
//! event applied once, in the transaction that moves the cursor):
//!
//! - created/updated/merged contacts: their consent per channel and weekly
//!   cap, for `CheckContactFrequency`;
//! - merged contacts: the losers' interactions, invoices and idempotency
//!   keys move to the survivor;
//! - erased contacts: the personal free text (subject, notes) of their
//!   interactions is wiped, in the tables and in this role's past events.

use crm_platform::{consumer::Handler, outbox};
use crm_proto::{contacts::v1 as contacts, events::v1::Event, interactions::v1 as pb};
use prost::{Message, Name};
use sqlx::PgConnection;
use uuid::Uuid;

pub struct ContactsFeed;

fn decode<M: Message + Default>(event: &Event) -> anyhow::Result<M> {
    let payload = event.payload.as_ref().ok_or_else(|| anyhow::anyhow!("event {} has no payload", event.id))?;
    Ok(M::decode(payload.value.as_slice())?)
}

async fn remember_preferences(tx: &mut PgConnection, contact: &contacts::Contact) -> anyhow::Result<()> {
    let id = Uuid::try_parse(&contact.id)?;
    let consents: serde_json::Map<String, serde_json::Value> = contact
        .consents
        .iter()
        .map(|consent| {
            let channel = contacts::ConsentChannel::try_from(consent.channel).unwrap_or_default().as_str_name();
            let status = contacts::ConsentStatus::try_from(consent.status).unwrap_or_default().as_str_name();
            (channel.to_string(), serde_json::Value::String(status.to_string()))
        })
        .collect();
    sqlx::query(
        "INSERT INTO contact_preferences (contact_id, consents, max_per_week) VALUES ($1, $2, $3)
         ON CONFLICT (contact_id) DO UPDATE SET consents = excluded.consents, max_per_week = excluded.max_per_week",
    )
    .bind(id)
    .bind(serde_json::Value::Object(consents))
    .bind(contact.max_contacts_per_week)
    .execute(tx)
    .await?;
    Ok(())
}

async fn rekey(tx: &mut PgConnection, survivor: Uuid, losers: &[Uuid]) -> anyhow::Result<()> {
    // The lookup tables are keyed by id and by (source, external_id): reach
    // their rows through the losers' interactions (indexed by contact),
    // before those move.
    sqlx::query(
        "UPDATE interaction_locations SET contact_id = $1
         WHERE id IN (SELECT id FROM interactions WHERE contact_id = ANY($2))",
    )
    .bind(survivor)
    .bind(losers)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE interaction_sources SET contact_id = $1
         WHERE (source, external_id) IN (SELECT source, external_id FROM interactions WHERE contact_id = ANY($2) AND source <> '')",
    )
    .bind(survivor)
    .bind(losers)
    .execute(&mut *tx)
    .await?;
    for table in ["interactions", "invoices"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE {table} SET contact_id = $1 WHERE contact_id = ANY($2)")))
            .bind(survivor)
            .bind(losers)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("DELETE FROM recurring_problems WHERE contact_id = ANY($1)").bind(losers).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM contact_preferences WHERE contact_id = ANY($1)").bind(losers).execute(&mut *tx).await?;
    Ok(())
}

/// An interaction without its personal free text.
fn scrub(interaction: &mut Option<pb::Interaction>) {
    if let Some(interaction) = interaction {
        interaction.subject.clear();
        interaction.notes.clear();
    }
}

async fn wipe(tx: &mut PgConnection, contact: Uuid) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE interactions SET data = data || '{\"subject\": \"\", \"notes\": \"\"}'::jsonb
         WHERE contact_id = $1 AND (data->>'subject' <> '' OR data->>'notes' <> '')",
    )
    .bind(contact)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM contact_preferences WHERE contact_id = $1").bind(contact).execute(&mut *tx).await?;
    // A fingerprint is derived from the wiped text: it goes too (NULL matches any resend).
    sqlx::query(
        "UPDATE interaction_sources SET fingerprint = NULL
         WHERE (source, external_id) IN (SELECT source, external_id FROM interactions WHERE contact_id = $1 AND source <> '')",
    )
    .bind(contact)
    .execute(&mut *tx)
    .await?;
    outbox::rewrite(tx, &[contact.to_string()], |event_type, payload| {
        Ok(if event_type == pb::InteractionRecorded::full_name() {
            let mut event = pb::InteractionRecorded::decode(payload)?;
            scrub(&mut event.interaction);
            Some(event.encode_to_vec())
        } else if event_type == pb::InvoiceIssued::full_name() {
            let mut event = pb::InvoiceIssued::decode(payload)?;
            scrub(&mut event.invoice);
            Some(event.encode_to_vec())
        } else if event_type == pb::InvoiceOverdue::full_name() {
            let mut event = pb::InvoiceOverdue::decode(payload)?;
            scrub(&mut event.invoice);
            Some(event.encode_to_vec())
        } else if event_type == pb::PaymentReceived::full_name() {
            let mut event = pb::PaymentReceived::decode(payload)?;
            scrub(&mut event.payment);
            Some(event.encode_to_vec())
        } else {
            None
        })
    })
    .await?;
    Ok(())
}

impl Handler for ContactsFeed {
    async fn handle(&self, tx: &mut PgConnection, event: &Event) -> anyhow::Result<()> {
        let kind = event.r#type.as_str();
        if kind == contacts::ContactCreated::full_name() {
            // No row means no consent and no cap: a new contact without them needs none.
            let created = decode::<contacts::ContactCreated>(event)?.contact;
            if let Some(contact) = created.filter(|c| !c.consents.is_empty() || c.max_contacts_per_week != 0) {
                remember_preferences(tx, &contact).await?;
            }
        } else if kind == contacts::ContactUpdated::full_name() {
            if let Some(contact) = decode::<contacts::ContactUpdated>(event)?.contact {
                remember_preferences(tx, &contact).await?;
            }
        } else if kind == contacts::ContactMerged::full_name() {
            let merged = decode::<contacts::ContactMerged>(event)?;
            let survivor =
                merged.survivor.ok_or_else(|| anyhow::anyhow!("merge event {} has no survivor", event.id))?;
            let losers: Vec<Uuid> = merged.loser_ids.iter().map(|id| Uuid::try_parse(id)).collect::<Result<_, _>>()?;
            rekey(tx, Uuid::try_parse(&survivor.id)?, &losers).await?;
            remember_preferences(tx, &survivor).await?;
        } else if kind == contacts::ContactErased::full_name() {
            wipe(tx, Uuid::try_parse(&decode::<contacts::ContactErased>(event)?.contact_id)?).await?;
        }
        Ok(())
    }
}
