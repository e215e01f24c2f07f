//! `--alert-latency`: how long from the start of the `RecordInteraction`
//! that breaks a customer-event rule to the alert in Alertmanager, read
//! from Alertmanager's own API (the suite's word is not taken for it).
//! `--segment-latency`: the same to the `SegmentEntered` event on a
//! `Subscribe` stream of the segmentation role, through the gateway, as an
//! outside system would follow it (issue #13).
//!
//! A rule fires on interactions with the outcome `bench-breach`, and a
//! dynamic segment takes contacts with a phone interaction; every
//! [`BREACH_EVERY`]th recorded interaction is both, for a contact of its
//! own (one alert, one entry each). Two phases of `--duration`: interactions recorded at
//! [`QUIET_RATE`]/s, then the same while [`BUSY_INGEST`] rows/s are
//! ingested besides through `IngestInteractions`. A poller asks
//! Alertmanager for the rule's alerts every [`POLL`] and notes when each
//! contact's first appears; a breach not seen [`GIVE_UP`] after its phase
//! counts as missed.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crm_proto::{
    alerting::v1::{AlertRule, CreateAlertRuleRequest, alerting_service_client::AlertingServiceClient},
    events::v1::{Event, SubscribeRequest, SubscribeResponse},
    interactions::v1::{
        Channel, IngestInteractionsRequest, Interaction, InteractionRecorded, Kind, RecordInteractionRequest,
        interactions_service_client::InteractionsServiceClient,
    },
    segmentation::v1::{SegmentEntered, segmentation_service_client::SegmentationServiceClient},
};
use hdrhistogram::Histogram;
use prost::{Message, Name};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::transport::Transport;

/// Interactions recorded per second in both phases (the issue's 1,000/s).
pub const QUIET_RATE: u64 = 1_000;
/// Rows ingested per second besides in the second phase (the issue's 20,000/s).
pub const BUSY_INGEST: u64 = 20_000;
/// One recorded interaction in this many breaks the rule.
const BREACH_EVERY: u64 = 50;
/// How often Alertmanager is asked.
const POLL: Duration = Duration::from_millis(50);
/// How long after its phase a breach may still show up.
const GIVE_UP: Duration = Duration::from_secs(30);
/// Rows per ingest request of the busy phase (20 requests a second at 20,000/s).
const INGEST_BATCH: u64 = 1_000;

/// When each breach was recorded, and when Alertmanager first showed it
/// (or the segmentation feed), by contact; and when it passed the stages
/// on the way, to tell where the time goes.
#[derive(Default)]
struct Breaches {
    recorded: HashMap<String, Instant>,
    seen: HashMap<String, Instant>,
    stages: HashMap<Stage, HashMap<String, Instant>>,
}

/// A point on a breach's way, timed from the start of its `RecordInteraction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Stage {
    /// `RecordInteraction` answered.
    Answered,
    /// Its `InteractionRecorded` on the interactions feed's live lane.
    Recorded,
    /// Its `SegmentEntered` on the segmentation feed's live lane.
    EnteredLive,
}

impl Stage {
    const ALL: [Stage; 3] = [Stage::Answered, Stage::Recorded, Stage::EnteredLive];

    fn describe(self) -> &'static str {
        match self {
            Stage::Answered => "RecordInteraction answered",
            Stage::Recorded => "InteractionRecorded on the interactions live lane",
            Stage::EnteredLive => "SegmentEntered on the segmentation live lane",
        }
    }
}

impl Breaches {
    fn note(&mut self, stage: Stage, contact: &str, at: Instant) {
        self.stages.entry(stage).or_default().entry(contact.to_string()).or_insert(at);
    }
}

/// Where a breach is seen.
pub enum Watch {
    /// The alert in Alertmanager (a base URL).
    Alertmanager(String),
    /// `SegmentEntered` on the segmentation role's `Subscribe` stream.
    SegmentEntered,
}

/// Runs both phases against `transport` (the busy phase's ingest over
/// `ingest`), watching where `watch` says.
pub async fn run(transport: &Transport, ingest: Transport, watch: Watch, duration: Duration) -> anyhow::Result<()> {
    let breaches = Arc::new(Mutex::new(Breaches::default()));
    let stop = CancellationToken::new();
    let recorded = tokio::spawn(follow_interactions(transport.clone(), breaches.clone(), stop.clone()));
    let (what, watcher) = match watch {
        Watch::Alertmanager(alertmanager) => {
            let rule = define_rule(transport).await?;
            let watcher = tokio::spawn(poll(alertmanager, rule.clone(), breaches.clone(), stop.clone()));
            (format!("alert latency, RecordInteraction start → alert in Alertmanager (rule `{rule}`)"), watcher)
        }
        Watch::SegmentEntered => {
            let segment =
                super::segments_seed::create(transport, "bench phone contacts", r#"channels_total["phone"] >= 1"#)
                    .await?;
            let live = tokio::spawn(follow_segment(transport.clone(), segment, true, breaches.clone(), stop.clone()));
            let whole = follow_segment(transport.clone(), segment, false, breaches.clone(), stop.clone());
            let watcher = tokio::spawn(async move {
                whole.await?;
                live.await?
            });
            (
                format!("segment latency, RecordInteraction start → SegmentEntered on Subscribe (segment {segment})"),
                watcher,
            )
        }
    };
    let quiet = phase(transport, &breaches, duration, None).await?;
    let busy = phase(transport, &breaches, duration, Some((ingest, BUSY_INGEST))).await?;
    stop.cancel();
    watcher.await??;
    recorded.await??;
    println!("{what}:");
    for (name, phase) in [("quiet", quiet), ("busy", busy)] {
        let found = latencies(&breaches, &phase.contacts, None);
        for stage in Stage::ALL {
            let at = latencies(&breaches, &phase.contacts, Some(stage));
            if !at.is_empty() {
                println!(
                    "  {name}, to {}: {} seen; p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
                    stage.describe(),
                    at.len(),
                    at.value_at_quantile(0.5),
                    at.value_at_quantile(0.9),
                    at.value_at_quantile(0.99),
                    at.max(),
                );
            }
        }
        println!(
            "  {name}: {QUIET_RATE} interactions/s{} ({} calls, {} failed): {} breaches, {} seen, {} missed; p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
            match phase.ingested {
                Some(rate) => format!(" while ingesting {rate:.0} rows/s"),
                None => String::new(),
            },
            phase.calls,
            phase.failed,
            phase.contacts.len(),
            found.len(),
            phase.contacts.len() as u64 - found.len(),
            found.value_at_quantile(0.5),
            found.value_at_quantile(0.9),
            found.value_at_quantile(0.99),
            found.max(),
        );
    }
    Ok(())
}

/// The rule the breaches break; returns its name (the alerts' `alertname`).
async fn define_rule(transport: &Transport) -> anyhow::Result<String> {
    let name = format!("bench breach {}", Uuid::now_v7());
    let rule = AlertRule {
        name: name.clone(),
        event_types: vec!["crm.interactions.v1.InteractionRecorded".into()],
        condition: r#"event.interaction.outcome == "bench-breach""#.into(),
        ..Default::default()
    };
    AlertingServiceClient::new(transport.clone())
        .create_alert_rule(CreateAlertRuleRequest { rule: Some(rule) })
        .await?;
    Ok(name)
}

/// Follows the segmentation role's feed (or its live lane) through the
/// gateway until `stop`, noting when each contact's entry into `segment`
/// arrives.
async fn follow_segment(
    transport: Transport,
    segment: Uuid,
    live: bool,
    breaches: Arc<Mutex<Breaches>>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let request =
        SubscribeRequest { after: None, event_types: vec![SegmentEntered::full_name()], live, ..Default::default() };
    let stream = SegmentationServiceClient::new(transport).subscribe(request).await?.into_inner();
    let segment = segment.to_string();
    each_event(stream, &stop, "segmentation", |event, at| {
        let payload = event.payload.map(|any| any.value).unwrap_or_default();
        let entered = SegmentEntered::decode(payload.as_slice())?;
        if entered.segment_id == segment {
            let mut breaches = breaches.lock().unwrap_or_else(|poison| poison.into_inner());
            if live {
                breaches.note(Stage::EnteredLive, &entered.contact_id, at);
            } else {
                breaches.seen.entry(entered.contact_id).or_insert(at);
            }
        }
        Ok(())
    })
    .await
}

/// Follows the interactions feed's live lane through the gateway until
/// `stop`, noting when each breach's `InteractionRecorded` arrives.
async fn follow_interactions(
    transport: Transport,
    breaches: Arc<Mutex<Breaches>>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let request = SubscribeRequest {
        after: None,
        event_types: vec![InteractionRecorded::full_name()],
        live: true,
        ..Default::default()
    };
    let stream = InteractionsServiceClient::new(transport).subscribe(request).await?.into_inner();
    each_event(stream, &stop, "interactions", |event, at| {
        let mut breaches = breaches.lock().unwrap_or_else(|poison| poison.into_inner());
        if breaches.recorded.contains_key(&event.aggregate_id) {
            breaches.note(Stage::Recorded, &event.aggregate_id, at);
        }
        Ok(())
    })
    .await
}

/// Hands each event of `role`'s `stream` to `note` with when it arrived, until `stop`.
async fn each_event(
    mut stream: tonic::Streaming<SubscribeResponse>,
    stop: &CancellationToken,
    role: &str,
    mut note: impl FnMut(Event, Instant) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            message = stream.message() => message?,
        };
        let Some(event) = message.and_then(|message| message.event) else {
            anyhow::bail!("the {role} feed ended");
        };
        note(event, Instant::now())?;
    }
}

/// What a phase did.
struct Phase {
    /// The contacts whose interactions broke the rule.
    contacts: Vec<String>,
    /// The ingest rate reached besides, when there was one.
    ingested: Option<f64>,
    /// `RecordInteraction` calls made, and how many failed.
    calls: u64,
    failed: u64,
}

/// Records interactions at [`QUIET_RATE`] for `duration` (with `ingest`
/// rows/s ingested besides, over a connection of its own), then waits until every breach is seen or [`GIVE_UP`].
async fn phase(
    transport: &Transport,
    breaches: &Arc<Mutex<Breaches>>,
    duration: Duration,
    ingest: Option<(Transport, u64)>,
) -> anyhow::Result<Phase> {
    let stop = CancellationToken::new();
    let ingester = ingest.map(|(over, rate)| tokio::spawn(ingest_at(over, rate, stop.clone())));
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    let mut contacts = Vec::new();
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / QUIET_RATE as u32);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (mut n, mut failed) = (0u64, 0u64);
    while started.elapsed() < duration {
        ticks.tick().await;
        n += 1;
        let breach = n.is_multiple_of(BREACH_EVERY);
        let contact = Uuid::now_v7().to_string();
        if breach {
            contacts.push(contact.clone());
        }
        let (transport, breaches) = (transport.clone(), breaches.clone());
        calls.spawn(async move {
            let interaction = Interaction {
                contact_id: contact.clone(),
                kind: Kind::Visit as i32,
                channel: if breach { Channel::Phone } else { Channel::Web } as i32,
                occurred_at: Some(crm_platform::timestamp::to_proto(chrono::Utc::now())),
                subject: "bench".into(),
                outcome: if breach { "bench-breach" } else { "ok" }.into(),
                ..Default::default()
            };
            let at = Instant::now();
            if breach {
                breaches.lock().unwrap_or_else(|poison| poison.into_inner()).recorded.insert(contact.clone(), at);
            }
            let request = RecordInteractionRequest { interaction: Some(interaction), ..Default::default() };
            let outcome = InteractionsServiceClient::new(transport).record_interaction(request).await;
            if breach && outcome.is_ok() {
                breaches.lock().unwrap_or_else(|poison| poison.into_inner()).note(
                    Stage::Answered,
                    &contact,
                    Instant::now(),
                );
            }
            if let Err(status) = &outcome {
                // Not recorded: no alert to wait for.
                tracing::warn!(%status, "a RecordInteraction of the benchmark failed");
                breaches.lock().unwrap_or_else(|poison| poison.into_inner()).recorded.remove(&contact);
            }
            outcome.is_err()
        });
        while let Some(done) = calls.try_join_next() {
            failed += u64::from(done?);
        }
    }
    while let Some(done) = calls.join_next().await {
        failed += u64::from(done?);
    }
    let contacts: Vec<String> = {
        let breaches = breaches.lock().unwrap_or_else(|poison| poison.into_inner());
        contacts.into_iter().filter(|contact| breaches.recorded.contains_key(contact)).collect()
    };
    stop.cancel();
    let ingested = match ingester {
        Some(task) => Some(task.await??),
        None => None,
    };
    let waited = Instant::now();
    while waited.elapsed() < GIVE_UP {
        let all_seen = {
            let breaches = breaches.lock().unwrap_or_else(|poison| poison.into_inner());
            contacts.iter().all(|contact| breaches.seen.contains_key(contact))
        };
        if all_seen {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Phase { contacts, ingested, calls: n, failed })
}

/// Ingests `rate` rows/s of plain visits (no breach) until `stop`; returns the rate reached.
async fn ingest_at(transport: Transport, rate: u64, stop: CancellationToken) -> anyhow::Result<f64> {
    let started = Instant::now();
    let run = Uuid::now_v7().simple().to_string();
    let contacts: Vec<String> = (0..2_000).map(|_| Uuid::now_v7().to_string()).collect();
    let (sender, receiver) = tokio::sync::mpsc::channel::<IngestInteractionsRequest>(4);
    let mut client = InteractionsServiceClient::new(transport).max_encoding_message_size(64 << 20);
    let stream = client.ingest_interactions(tokio_stream::wrappers::ReceiverStream::new(receiver));
    let feeding = async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(1) * INGEST_BATCH as u32 / rate as u32);
        let mut batch = 0u64;
        while !stop.is_cancelled() {
            ticks.tick().await;
            let interactions = (0..INGEST_BATCH)
                .map(|i| {
                    let n = batch * INGEST_BATCH + i;
                    Interaction {
                        contact_id: contacts[(n % contacts.len() as u64) as usize].clone(),
                        kind: Kind::Visit as i32,
                        channel: Channel::Store as i32,
                        occurred_at: Some(crm_platform::timestamp::to_proto(chrono::Utc::now())),
                        subject: "bench ingest".into(),
                        outcome: "ok".into(),
                        source: "bench".into(),
                        external_id: format!("L{run}-{n}"),
                        ..Default::default()
                    }
                })
                .collect();
            let request = IngestInteractionsRequest { batch_id: batch.to_string(), interactions };
            if sender.send(request).await.is_err() {
                break;
            }
            batch += 1;
        }
        batch * INGEST_BATCH
    };
    let acknowledging = async {
        let mut acks = stream.await?.into_inner();
        let mut rows = 0u64;
        while let Some(ack) = acks.message().await? {
            rows += ack.results.len() as u64;
        }
        anyhow::Ok(rows)
    };
    let (_, acknowledged) = tokio::join!(feeding, acknowledging);
    Ok(acknowledged? as f64 / started.elapsed().as_secs_f64())
}

/// Asks Alertmanager for `rule`'s alerts every [`POLL`] until `stop`, noting when each contact's first appears.
async fn poll(
    alertmanager: String,
    rule: String,
    breaches: Arc<Mutex<Breaches>>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let url = format!("{}/api/v2/alerts", alertmanager.trim_end_matches('/'));
    let filter = format!("alertname=\"{rule}\"");
    while !stop.is_cancelled() {
        let alerts: Vec<serde_json::Value> =
            client.get(&url).query(&[("filter", filter.as_str())]).send().await?.error_for_status()?.json().await?;
        let at = Instant::now();
        {
            let mut breaches = breaches.lock().unwrap_or_else(|poison| poison.into_inner());
            for alert in &alerts {
                if let Some(contact) = alert["labels"]["contact_id"].as_str() {
                    breaches.seen.entry(contact.to_string()).or_insert(at);
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// The latencies (ms) of `contacts`' breaches that were seen (at `stage`, when given).
fn latencies(breaches: &Mutex<Breaches>, contacts: &[String], stage: Option<Stage>) -> Histogram<u64> {
    let breaches = breaches.lock().unwrap_or_else(|poison| poison.into_inner());
    let none = HashMap::new();
    let seen = match stage {
        Some(stage) => breaches.stages.get(&stage).unwrap_or(&none),
        None => &breaches.seen,
    };
    let mut found = Histogram::new_with_bounds(1, 3_600_000, 3)
        .unwrap_or_else(|_| unreachable!("static histogram bounds are valid"));
    for contact in contacts {
        if let (Some(recorded), Some(seen)) = (breaches.recorded.get(contact), seen.get(contact)) {
            let ms = u64::try_from(seen.saturating_duration_since(*recorded).as_millis()).unwrap_or(u64::MAX);
            let _ = found.record(ms.clamp(1, 3_600_000));
        }
    }
    found
}
