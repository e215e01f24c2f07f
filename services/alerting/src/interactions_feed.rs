//! Following the interactions feed: each interaction is counted for every
//! business SLO whose valid condition it meets (and as good when it meets
//! the good one), in the minute it occurred.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use chrono::{DateTime, DurationRound, Utc};
use crm_platform::{consumer::Handler, timestamp};
use crm_proto::{events::v1::Event, interactions::v1 as pb};
use prost::{Message, Name};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{
    slo::indicator::{self, Filter},
    store::slos::{self, SloRecord},
};

/// The interactions feed's handler, with the SLOs' conditions compiled once.
#[derive(Default)]
pub struct InteractionsFeed {
    compiled: Mutex<HashMap<Uuid, Arc<(Filter, Filter)>>>,
}

impl InteractionsFeed {
    fn conditions(&self, slo: &SloRecord) -> Option<Arc<(Filter, Filter)>> {
        let mut compiled = self.compiled.lock().unwrap_or_else(|poison| poison.into_inner());
        if let Some(found) = compiled.get(&slo.id) {
            return Some(found.clone());
        }
        match (indicator::check(&slo.valid_rule), indicator::check(&slo.good_rule)) {
            (Ok(valid), Ok(good)) => {
                let both = Arc::new((Filter::new(valid), Filter::new(good)));
                compiled.insert(slo.id, both.clone());
                Some(both)
            }
            _ => {
                tracing::warn!(slo = %slo.id, "an SLO's stored conditions no longer check; it is not counted");
                None
            }
        }
    }
}

impl Handler for InteractionsFeed {
    fn max_batch(&self) -> usize {
        crate::CATCH_UP_BURST
    }

    /// Counts per minute add up in any order: an interaction recorded by a
    /// single call is counted at once, ahead of an ingest's backlog.
    fn ahead_types(&self) -> Vec<String> {
        vec![pb::InteractionRecorded::full_name()]
    }

    async fn handle(&self, tx: &mut PgConnection, event: &Event) -> anyhow::Result<()> {
        self.handle_batch(tx, &[event]).await
    }

    async fn handle_batch(&self, tx: &mut PgConnection, events: &[&Event]) -> anyhow::Result<()> {
        let interactions: Vec<pb::Interaction> = events
            .iter()
            .filter(|event| event.r#type == pb::InteractionRecorded::full_name())
            .filter_map(|event| {
                let payload = event.payload.as_ref().map(|any| any.value.as_slice()).unwrap_or_default();
                pb::InteractionRecorded::decode(payload).ok()?.interaction
            })
            .collect();
        if interactions.is_empty() {
            return Ok(());
        }
        let slos: Vec<(Uuid, Arc<(Filter, Filter)>)> = slos::all(tx)
            .await?
            .iter()
            .filter(|slo| slo.prometheus.is_none())
            .filter_map(|slo| Some((slo.id, self.conditions(slo)?)))
            .collect();
        let mut deltas: HashMap<(Uuid, DateTime<Utc>), (i64, i64)> = HashMap::new();
        for interaction in &interactions {
            let Some(at) = interaction.occurred_at.as_ref().and_then(timestamp::from_proto) else { continue };
            let minute = at.duration_trunc(chrono::Duration::minutes(1)).unwrap_or(at);
            for (slo, conditions) in &slos {
                if conditions.0.meets(interaction) {
                    let delta = deltas.entry((*slo, minute)).or_default();
                    delta.0 += 1;
                    if conditions.1.meets(interaction) {
                        delta.1 += 1;
                    }
                }
            }
        }
        slos::count(tx, &deltas).await?;
        Ok(())
    }
}
