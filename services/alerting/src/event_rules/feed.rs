//! Following a feed for the rules: each event of a type some rule reads is
//! decoded once, the rules that read it run, and an alert fires (in the
//! consumer's transaction, so an event's alert commits with the cursor that
//! passes it: never lost, never raised twice).
//!
//! A rule that reads the contact's `features` or `tier` runs once
//! segmentation has applied the event (its read model reports how far it
//! got), so "the third complaint in 90 days" sees the third complaint.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use cel::objects::{Key, Map, Value as CelValue};
use crm_platform::{clock::Clock, consumer::Handler, outbox::Position, principal::SignedChannel};
use crm_proto::{
    events::v1::Event,
    segmentation::v1::{
        self as seg, feature_value::Value as FeatureValue, get_service_tier_request,
        segmentation_service_client::SegmentationServiceClient,
    },
};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{
    CompiledRule,
    catalogue::{Feed, catalogue},
    condition::{ContactValues, holds},
    index::RuleIndex,
};
use crate::{alerts, evaluator::ALERTS_LOCK, store::rules};

/// The most events one barrier asks segmentation about (its limit).
const ASKED_AT_ONCE: usize = 1000;

/// How long a rule that reads features waits for segmentation to apply its event.
const BARRIER_WAIT: Duration = Duration::from_secs(10);

/// The rules' handler of one feed.
pub struct RulesFeed {
    feed: Feed,
    clock: Clock,
    segmentation: Option<SegmentationServiceClient<SignedChannel>>,
    compiled: Mutex<HashMap<Uuid, Arc<CompiledRule>>>,
}

impl RulesFeed {
    pub fn new(feed: Feed, clock: Clock, segmentation: Option<SignedChannel>) -> Self {
        RulesFeed {
            feed,
            clock,
            segmentation: segmentation.map(SegmentationServiceClient::new),
            compiled: Mutex::default(),
        }
    }

    /// The live rules, compiled once each (their features were checked when they were made).
    async fn rules(&self, tx: &mut PgConnection) -> anyhow::Result<Vec<Arc<CompiledRule>>> {
        let records = rules::all(tx).await?;
        let mut compiled = self.compiled.lock().unwrap_or_else(|poison| poison.into_inner());
        compiled.retain(|id, _| records.iter().any(|record| record.id == *id));
        let mut live = Vec::with_capacity(records.len());
        for record in records {
            if let Some(found) = compiled.get(&record.id) {
                live.push(found.clone());
                continue;
            }
            let id = record.id;
            match CompiledRule::compile(record, None) {
                Ok(rule) => {
                    let rule = Arc::new(rule);
                    compiled.insert(id, rule.clone());
                    live.push(rule);
                }
                Err(problems) => {
                    tracing::warn!(rule = %id, ?problems, "a stored rule no longer checks; it does not run")
                }
            }
        }
        Ok(live)
    }

    /// Waits until segmentation has applied the events at `positions` of
    /// this feed: of the contacts feed, once its cursor passed the last; of
    /// the interactions feed, each in its turn or ahead of it (from the
    /// live lane, while an ingest's backlog waits).
    async fn wait_for_segmentation(&self, positions: &[Position]) {
        let Some(client) = &self.segmentation else { return };
        let Some(last) = positions.iter().max().copied() else { return };
        if self.feed == Feed::Segmentation {
            return;
        }
        let mut distinct = positions.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        // A catching-up burst's thousands wait for the cursor.
        let asked: Vec<_> = match self.feed {
            Feed::Interactions if distinct.len() <= ASKED_AT_ONCE => {
                distinct.iter().map(|position| (*position).into()).collect()
            }
            _ => Vec::new(),
        };
        let deadline = Instant::now() + BARRIER_WAIT;
        loop {
            let request = seg::GetReadModelStatusRequest { interactions_events: asked.clone() };
            if let Ok(status) = client.clone().get_read_model_status(request).await {
                let status = status.into_inner();
                let applied =
                    if self.feed == Feed::Contacts { status.contacts_applied } else { status.interactions_applied };
                let each = !asked.is_empty() && status.interactions_events_applied.iter().all(|applied| *applied);
                if Position::from(applied) >= last || each {
                    return;
                }
            }
            if Instant::now() >= deadline {
                tracing::warn!(feed = ?self.feed, "segmentation has not applied the event after 10 s; rules read the features it has");
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What rules read about `contact_id`: its features and tier (none when segmentation does not know it).
    async fn contact_values(&self, contact_id: &str) -> anyhow::Result<ContactValues> {
        let Some(client) = &self.segmentation else { return Ok(ContactValues::default()) };
        let request = seg::GetContactFeaturesRequest { contact_id: contact_id.to_string() };
        let features = match client.clone().get_contact_features(request).await {
            Ok(found) => Some(features_value(&found.into_inner().features)),
            Err(status) if status.code() == tonic::Code::NotFound => None,
            Err(status) => anyhow::bail!("segmentation did not give the contact's features: {status}"),
        };
        let request = seg::GetServiceTierRequest {
            contact: Some(get_service_tier_request::Contact::ContactId(contact_id.to_string())),
            model_id: String::new(),
        };
        let tier = match client.clone().get_service_tier(request).await {
            Ok(found) => found.into_inner().tier,
            Err(status) if matches!(status.code(), tonic::Code::NotFound | tonic::Code::FailedPrecondition) => {
                String::new()
            }
            Err(status) => anyhow::bail!("segmentation did not give the contact's tier: {status}"),
        };
        Ok(ContactValues { features, tier })
    }
}

fn features_value(features: &HashMap<String, seg::FeatureValue>) -> CelValue {
    let text = |value: &str| CelValue::String(Arc::new(value.to_string()));
    let entries = features
        .iter()
        .map(|(name, value)| {
            let value = match &value.value {
                None => CelValue::Null,
                Some(FeatureValue::IntValue(number)) => CelValue::Int(*number),
                Some(FeatureValue::DoubleValue(number)) => CelValue::Float(*number),
                Some(FeatureValue::StringValue(string)) => text(string),
                Some(FeatureValue::BoolValue(flag)) => CelValue::Bool(*flag),
                Some(FeatureValue::TimestampValue(at)) => crm_platform::timestamp::from_proto(at)
                    .map_or(CelValue::Null, |at| CelValue::Timestamp(at.fixed_offset())),
                Some(FeatureValue::StringListValue(list)) => {
                    CelValue::List(Arc::new(list.values.iter().map(|item| text(item)).collect()))
                }
                Some(FeatureValue::IntMapValue(map)) => CelValue::Map(Map {
                    map: Arc::new(
                        map.values
                            .iter()
                            .map(|(key, number)| (Key::String(Arc::new(key.clone())), CelValue::Int(*number)))
                            .collect(),
                    ),
                }),
            };
            (Key::String(Arc::new(name.clone())), value)
        })
        .collect();
    CelValue::Map(Map { map: Arc::new(entries) })
}

impl Handler for RulesFeed {
    fn max_batch(&self) -> usize {
        crate::CATCH_UP_BURST
    }

    /// Each event is judged on its own (and the features it changed, once
    /// segmentation has applied it, which it does ahead for the same
    /// type): an interaction recorded by a single call fires its alert at
    /// once, ahead of an ingest's backlog.
    fn ahead_types(&self) -> Vec<String> {
        match self.feed {
            Feed::Interactions => vec![<crm_proto::interactions::v1::InteractionRecorded as prost::Name>::full_name()],
            _ => Vec::new(),
        }
    }

    async fn handle(&self, tx: &mut PgConnection, event: &Event) -> anyhow::Result<()> {
        self.handle_batch(tx, &[event]).await
    }

    async fn handle_batch(&self, tx: &mut PgConnection, events: &[&Event]) -> anyhow::Result<()> {
        let rules = RuleIndex::new(self.rules(tx).await?);
        // Only the fields the rules read become CEL values (binding the event
        // to a rule converts all of it, for every rule run).
        let decoded: Vec<(&Event, _)> = events
            .iter()
            .filter_map(|event| Some((*event, catalogue().decode_reading(event, rules.fields_of(&event.r#type)?)?)))
            .collect();
        if decoded.is_empty() {
            return Ok(());
        }
        let matches: Vec<_> = decoded
            .iter()
            .flat_map(|(event, found)| rules.candidates(found).into_iter().map(move |rule| (*event, found, rule)))
            .collect();
        if matches.is_empty() {
            return Ok(());
        }
        let wanting_contact: Vec<_> =
            matches.iter().filter(|(_, found, rule)| rule.reads_contact() && !found.contact_id.is_empty()).collect();
        let mut contacts: HashMap<&str, ContactValues> = HashMap::new();
        let positions: Vec<Position> =
            wanting_contact.iter().map(|(event, ..)| Position::from(event.position)).collect();
        if !positions.is_empty() {
            self.wait_for_segmentation(&positions).await;
            for (_, found, _) in &wanting_contact {
                if !contacts.contains_key(found.contact_id.as_str()) {
                    contacts.insert(&found.contact_id, self.contact_values(&found.contact_id).await?);
                }
            }
        }
        sqlx::query(ALERTS_LOCK).execute(&mut *tx).await?;
        let now = self.clock.now();
        let none = ContactValues::default();
        for (event, found, rule) in matches {
            let contact = contacts.get(found.contact_id.as_str()).unwrap_or(&none);
            let outcome = holds(&rule.condition, found, contact);
            if let Some(error) = &outcome.error {
                tracing::debug!(rule = %rule.record.id, event = %event.id, error, "a rule could not decide; not met");
            }
            if !outcome.member {
                continue;
            }
            let expires_at = rule
                .record
                .resolve_after
                .and_then(|after| chrono::Duration::from_std(after).ok())
                .map(|after| now + after);
            if let Some(alert) =
                alerts::fire(tx, rule.record.id, rule.alert(found, &event.id, contact), now, expires_at).await?
            {
                tracing::info!(rule = %rule.record.id, alert = %alert.id, event = %event.id, "a customer-event rule fired");
            }
        }
        Ok(())
    }
}
