//! Following the interactions feed: each interaction becomes a row of
//! activity of its contact (or of the survivor it was merged into).

use std::{collections::HashSet, sync::Arc};

use crm_platform::{clock::Clock, consumer::Handler, timestamp};
use crm_proto::{events::v1::Event, interactions::v1 as interactions};
use prost::{Message, Name};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Activity, Invoice, short_name};
use crate::{segments::Segments, store::read_model};

/// Events applied in one transaction, at most. A burst costs one
/// recomputation per contact it touches and one commit, whatever its
/// length, so a consumer catching up gains from long ones: 5,000 applied
/// 1.6–1.8 times as many events a second as the platform's 500 (`crm bench
/// --interactions 100000`, alternating runs, 2026-12-02); 20,000 gained
/// nothing more. A live feed's bursts stay short: only what has arrived.
const BURST: usize = 5000;

/// The interactions feed's handler.
pub struct InteractionsFeed {
    pub clock: Clock,
    pub segments: Arc<Segments>,
}

/// What features need of an interaction: its contact and its activity row.
pub fn activity(interaction: &interactions::Interaction) -> anyhow::Result<(Uuid, Activity)> {
    let kind = interactions::Kind::try_from(interaction.kind).unwrap_or_default();
    let channel = interactions::Channel::try_from(interaction.channel).unwrap_or_default();
    let amount = interaction.amount.clone().unwrap_or_default();
    let row = Activity {
        interaction_id: Uuid::try_parse(&interaction.id)?,
        occurred_at: interaction
            .occurred_at
            .as_ref()
            .and_then(timestamp::from_proto)
            .ok_or_else(|| anyhow::anyhow!("interaction {} has no time", interaction.id))?
            .trunc_subsecs_micros(),
        kind: short_name(kind.as_str_name(), "KIND_"),
        channel: short_name(channel.as_str_name(), "CHANNEL_"),
        currency: amount.currency_code,
        amount: amount.minor_units,
        sentiment: interaction.sentiment,
        skus: interaction.product_lines.iter().map(|line| line.sku.clone()).collect(),
    };
    Ok((Uuid::try_parse(&interaction.contact_id)?, row))
}

/// PostgreSQL keeps microseconds: what is computed in memory must be what is stored.
trait Micros {
    fn trunc_subsecs_micros(self) -> Self;
}

impl Micros for chrono::DateTime<chrono::Utc> {
    fn trunc_subsecs_micros(self) -> Self {
        chrono::SubsecRound::trunc_subsecs(self, 6)
    }
}

impl Handler for InteractionsFeed {
    fn max_batch(&self) -> usize {
        BURST
    }

    /// A recorded interaction is a row of activity, kept as a set by id, and
    /// features are recomputed from the rows or added to: in any order, the
    /// same. So one recorded by a single call moves segments at once, ahead
    /// of an ingest's backlog. Invoices and payments change state in order
    /// and wait their turn.
    fn ahead_types(&self) -> Vec<String> {
        vec![interactions::InteractionRecorded::full_name()]
    }

    async fn idle(&self, pool: &sqlx::PgPool, applied: crm_platform::outbox::Position) -> anyhow::Result<()> {
        let consumer = crate::store::rebuild::CONSUMERS[1];
        Ok(self.segments.caught_up(pool, consumer, applied, self.clock.now()).await?)
    }

    async fn handle(&self, tx: &mut PgConnection, event: &Event) -> anyhow::Result<()> {
        self.handle_batch(tx, &[event]).await
    }

    async fn handle_batch(&self, tx: &mut PgConnection, events: &[&Event]) -> anyhow::Result<()> {
        crate::store::lock_batch(tx, false).await?;
        let mut rows = Vec::new();
        let mut touched = Vec::new();
        for event in events {
            let payload = event.payload.as_ref().map(|any| any.value.as_slice()).unwrap_or_default();
            let kind = event.r#type.as_str();
            if kind == interactions::InteractionRecorded::full_name() {
                if let Some(interaction) = interactions::InteractionRecorded::decode(payload)?.interaction {
                    rows.push(activity(&interaction)?);
                }
            } else if kind == interactions::InvoiceIssued::full_name() {
                let Some(invoice) = interactions::InvoiceIssued::decode(payload)?.invoice else { continue };
                let (contact, row) = activity(&invoice)?;
                let Some(target) = resolve_one(tx, contact).await? else { continue };
                let due = invoice
                    .invoice
                    .as_ref()
                    .and_then(|details| details.due_date.as_ref())
                    .and_then(timestamp::date_from_proto);
                let issued = Invoice {
                    invoice_id: row.interaction_id,
                    currency: row.currency,
                    amount: row.amount,
                    status: "open".into(),
                    paid_late: false,
                };
                read_model::invoice_issued(tx, target, &issued, due).await?;
                touched.push(target);
            } else if kind == interactions::InvoiceOverdue::full_name() {
                let Some(invoice) = interactions::InvoiceOverdue::decode(payload)?.invoice else { continue };
                let (contact, row) = activity(&invoice)?;
                let Some(target) = resolve_one(tx, contact).await? else { continue };
                read_model::invoice_overdue(tx, target, row.interaction_id).await?;
                touched.push(target);
            } else if kind == interactions::PaymentReceived::full_name() {
                let received = interactions::PaymentReceived::decode(payload)?;
                let Some(payment) = received.payment else { continue };
                if received.settled_invoice_id.is_empty() {
                    continue;
                }
                let (contact, row) = activity(&payment)?;
                let Some(target) = resolve_one(tx, contact).await? else { continue };
                let settled = Uuid::try_parse(&received.settled_invoice_id)?;
                read_model::invoice_paid(tx, target, settled, row.occurred_at.date_naive()).await?;
                touched.push(target);
            } else if kind == interactions::RecurringProblemDetected::full_name() {
                let detected = interactions::RecurringProblemDetected::decode(payload)?;
                let Some(target) = resolve_one(tx, Uuid::try_parse(&detected.contact_id)?).await? else { continue };
                let at = event
                    .occurred_at
                    .as_ref()
                    .and_then(timestamp::from_proto)
                    .ok_or_else(|| anyhow::anyhow!("event {} has no time", event.id))?
                    .trunc_subsecs_micros();
                read_model::problem_detected(tx, target, at, &detected.problem).await?;
                touched.push(target);
            }
        }
        let ids: Vec<Uuid> = rows.iter().map(|(contact, _)| *contact).collect();
        let resolved = read_model::resolve(tx, &ids).await?;
        let rows: Vec<(Uuid, Activity)> = rows
            .into_iter()
            .filter_map(|(contact, row)| Some((resolved.get(&contact).copied().flatten()?, row)))
            .collect();
        let new = read_model::record_activity(tx, rows).await?;
        // Who referred them, and their colleagues, read their revenue: those
        // are recomputed, as are contacts with invoices or problems; the
        // others' new interactions are applied to their stored features.
        let active: Vec<Uuid> = new.iter().map(|(contact, _)| *contact).collect();
        let mut recompute: HashSet<Uuid> = touched.iter().copied().collect();
        recompute.extend(read_model::dependents(tx, &[touched.as_slice(), &active].concat()).await?);
        let mut everyone: Vec<Uuid> = recompute.iter().chain(&active).copied().collect();
        everyone.sort_unstable();
        everyone.dedup();
        // All at once, in key order: never two transactions waiting for each other.
        crate::store::lock_contacts(tx, &everyone).await?;
        let now = self.clock.now();
        // The others' rows are stored: their recompute reads them.
        let applicable: Vec<(Uuid, Activity)> =
            new.into_iter().filter(|(contact, _)| !recompute.contains(contact)).collect();
        let applied = read_model::apply_activity(tx, &applicable, now).await?;
        recompute.extend(applied.stale);
        let recompute: Vec<Uuid> = recompute.into_iter().collect();
        let mut computed = applied.computed;
        computed.extend(read_model::recompute(tx, &recompute, now).await?);
        self.segments.reconcile(tx, &computed, &applied.moved, now).await?;
        Ok(())
    }
}

/// Where an event about `contact` goes (its survivor, or nowhere if gone).
async fn resolve_one(tx: &mut PgConnection, contact: Uuid) -> anyhow::Result<Option<Uuid>> {
    Ok(read_model::resolve(tx, &[contact]).await?.get(&contact).copied().flatten())
}
