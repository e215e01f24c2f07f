//! The alerting role: SLOs over business indicators, their burn-rate
//! alerts, and their delivery to a real Alertmanager.

mod alertmanager;
mod counts;
mod failover;
mod openslo;
mod prometheus;
mod rules;
mod slos;
mod webhooks;

use crm_proto::{
    alerting::v1::{BusinessIndicator, Slo, slo},
    common::v1::Money,
    contacts::v1::CreateContactRequest,
    interactions::v1::{
        Channel, IngestInteractionsRequest, IngestOutcome, Interaction, Kind,
        interactions_service_client::InteractionsServiceClient,
    },
};
use crm_testkit::Authed;

pub const DAY: u64 = 24 * 3600;

/// A clock that runs as fast as the machine's but stands at second 15 of
/// a minute when the test starts: the pages' 1-minute short windows count
/// whole minute buckets, so an outage recorded at its now stays in the
/// window for the 45 s a test may take (on the machine's clock, an outage
/// recorded just before a minute ends leaves the short window at once).
pub fn mid_minute_clock() -> crm_platform::clock::Clock {
    use chrono::{DurationRound, Timelike};
    let real = chrono::Utc::now();
    let minute = real.duration_trunc(chrono::Duration::minutes(1)).unwrap();
    let start = if real.second() >= 15 {
        minute + chrono::Duration::seconds(15)
    } else {
        minute - chrono::Duration::seconds(45)
    };
    let clock = crm_platform::clock::Clock::manual(start);
    let running = clock.clone();
    tokio::spawn(async move {
        let mut last = std::time::Instant::now();
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            let elapsed = last.elapsed();
            last += elapsed;
            running.advance(chrono::Duration::from_std(elapsed).unwrap());
        }
    });
    clock
}

/// Online bill payment in under three minutes, 90% of the time, over a week.
pub fn payments_slo(name: &str) -> Slo {
    Slo {
        name: name.into(),
        owner: "billing-team".into(),
        objective: 0.9,
        window: Some(prost_types::Duration { seconds: (7 * DAY) as i64, nanos: 0 }),
        indicator: Some(slo::Indicator::Business(BusinessIndicator {
            valid: r#"kind == "payment" && channel == "web""#.into(),
            good: r#"duration_ms <= 180000 && outcome != "failed""#.into(),
        })),
        ..Default::default()
    }
}

/// Web (or shop) payment number `n` of `contact` at `at`: good is quick, bad takes 400 s.
pub fn payment(
    contact: &str,
    n: usize,
    at: chrono::DateTime<chrono::Utc>,
    channel: Channel,
    good: bool,
) -> Interaction {
    Interaction {
        contact_id: contact.into(),
        channel: channel as i32,
        kind: Kind::Payment as i32,
        occurred_at: Some(crm_platform::timestamp::to_proto(at)),
        source: "billing".into(),
        external_id: format!("P-{n}"),
        duration_ms: if good { 40_000 } else { 400_000 },
        outcome: "paid".into(),
        amount: Some(Money { currency_code: "EUR".into(), minor_units: 4_990 }),
        ..Default::default()
    }
}

/// A contact who pays.
pub async fn payer(suite: &crm_testkit::TestSuite) -> String {
    let mut contacts = suite.contacts().await.unwrap();
    let request = CreateContactRequest {
        contact: Some(crate::contacts::person("Paula", "Payer", "paula@example.com", "")),
        ..Default::default()
    };
    contacts.create_contact(request).await.unwrap().into_inner().id
}

/// Ingests `batch`, every interaction accepted.
pub async fn ingest(client: &mut InteractionsServiceClient<Authed>, batch: Vec<Interaction>, batch_id: &str) {
    let request = IngestInteractionsRequest { batch_id: batch_id.into(), interactions: batch };
    let mut acks = client.ingest_interactions(tokio_stream::iter([request])).await.unwrap().into_inner();
    while let Some(ack) = acks.message().await.unwrap() {
        for result in &ack.results {
            assert_eq!(result.outcome(), IngestOutcome::Stored, "{result:?}");
        }
    }
}
