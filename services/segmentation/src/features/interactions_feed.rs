//! Following the interactions feed: each interaction becomes a row of
//! activity of its contact (or of the survivor it was merged into).

use std::sync::Arc;

use crm_platform::{clock::Clock, consumer::Handler, timestamp};
use crm_proto::{events::v1::Event, interactions::v1 as interactions};
use prost::{Message, Name};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Activity, short_name};
use crate::{segments::Segments, store::read_model};

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
    async fn handle(&self, tx: &mut PgConnection, event: &Event) -> anyhow::Result<()> {
        self.handle_batch(tx, &[event]).await
    }

    async fn handle_batch(&self, tx: &mut PgConnection, events: &[&Event]) -> anyhow::Result<()> {
        let mut rows = Vec::new();
        for event in events.iter().filter(|event| event.r#type == interactions::InteractionRecorded::full_name()) {
            let payload = event.payload.as_ref().map(|any| any.value.as_slice()).unwrap_or_default();
            let Some(interaction) = interactions::InteractionRecorded::decode(payload)?.interaction else { continue };
            rows.push(activity(&interaction)?);
        }
        let ids: Vec<Uuid> = rows.iter().map(|(contact, _)| *contact).collect();
        let resolved = read_model::resolve(tx, &ids).await?;
        let rows: Vec<(Uuid, Activity)> = rows
            .into_iter()
            .filter_map(|(contact, row)| Some((resolved.get(&contact).copied().flatten()?, row)))
            .collect();
        read_model::record_activity(tx, &rows).await?;
        let touched: Vec<Uuid> = rows.iter().map(|(contact, _)| *contact).collect();
        let now = self.clock.now();
        let computed = read_model::recompute(tx, &touched, now).await?;
        self.segments.reconcile(tx, &computed, now).await?;
        Ok(())
    }
}
