//! The invariant of the business indicators: the per-minute counts the
//! interactions consumer keeps, summed over any window at any time, equal a
//! recount of every interaction by hand; over random interactions (kinds,
//! channels, durations, outcomes, times across 40 days, duplicates of
//! ids), applied in random bursts, read at moving times; and the status
//! built on them (SLI, budget, each window's burn) equals the same
//! arithmetic on the recount.

use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use crm_alerting::{
    interactions_feed::InteractionsFeed,
    slo::status,
    store::slos::{self, SloRecord},
};
use crm_platform::{Role, consumer::Handler, timestamp::to_proto};
use crm_proto::{
    events::v1::Event,
    interactions::v1::{self as pb, Interaction, InteractionRecorded},
};
use crm_testkit::TestDb;
use prost::{Message, Name};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};
use uuid::Uuid;

/// An SLO, and its conditions written again by hand.
struct Indicator {
    valid: &'static str,
    good: &'static str,
    is_valid: fn(&Interaction) -> bool,
    is_good: fn(&Interaction) -> bool,
}

const INDICATORS: [Indicator; 3] = [
    Indicator {
        valid: r#"kind == "payment" && channel == "web""#,
        good: r#"duration_ms <= 180000 && outcome != "failed""#,
        is_valid: |i| i.kind == pb::Kind::Payment as i32 && i.channel == pb::Channel::Web as i32,
        is_good: |i| i.duration_ms <= 180_000 && i.outcome != "failed",
    },
    Indicator {
        valid: r#"kind in ["purchase", "payment"]"#,
        good: r#"outcome != "failed""#,
        is_valid: |i| i.kind == pb::Kind::Purchase as i32 || i.kind == pb::Kind::Payment as i32,
        is_good: |i| i.outcome != "failed",
    },
    Indicator {
        valid: r#"channel == "phone" && duration_ms > 0"#,
        good: r#"size(pain_points) == 0"#,
        is_valid: |i| i.channel == pb::Channel::Phone as i32 && i.duration_ms > 0,
        is_good: |i| i.pain_points.is_empty(),
    },
];

fn recorded(interaction: &Interaction) -> Event {
    let payload = InteractionRecorded { interaction: Some(interaction.clone()) };
    Event {
        id: Uuid::now_v7().to_string(),
        r#type: InteractionRecorded::full_name(),
        payload: Some(prost_types::Any { type_url: InteractionRecorded::type_url(), value: payload.encode_to_vec() }),
        ..Default::default()
    }
}

fn random_interaction(rng: &mut StdRng, now: DateTime<Utc>) -> Interaction {
    let kinds = [pb::Kind::Payment, pb::Kind::Purchase, pb::Kind::Complaint, pb::Kind::Call];
    let channels = [pb::Channel::Web, pb::Channel::Store, pb::Channel::Phone];
    let at = now - chrono::Duration::seconds(rng.random_range(0..40 * 24 * 3600));
    Interaction {
        id: Uuid::now_v7().to_string(),
        contact_id: Uuid::now_v7().to_string(),
        kind: *kinds.choose(rng).unwrap() as i32,
        channel: *channels.choose(rng).unwrap() as i32,
        occurred_at: Some(to_proto(at)),
        duration_ms: *[0, 30_000, 179_999, 180_000, 400_000].choose(rng).unwrap(),
        outcome: ["", "ok", "failed"].choose(rng).unwrap().to_string(),
        pain_points: if rng.random_bool(0.3) { vec!["slow".into()] } else { vec![] },
        ..Default::default()
    }
}

/// Valid and bad by hand: interactions whose minute began within `(now - window, now]`.
fn recount(indicator: &Indicator, all: &[Interaction], now: DateTime<Utc>, window: Duration) -> (u64, u64) {
    let from = now - chrono::Duration::from_std(window).unwrap();
    let mut counts = (0, 0);
    for interaction in all {
        let at = crm_platform::timestamp::from_proto(interaction.occurred_at.as_ref().unwrap()).unwrap();
        let minute = at.duration_trunc(chrono::Duration::minutes(1)).unwrap();
        if minute > from && minute <= now && (indicator.is_valid)(interaction) {
            counts.0 += 1;
            if !(indicator.is_good)(interaction) {
                counts.1 += 1;
            }
        }
    }
    counts
}

#[tokio::test]
async fn counts_kept_per_minute_equal_a_recount_over_any_window_at_any_time() {
    let test_db = TestDb::create().await.unwrap();
    let pool = test_db.role_pool(Role::Alerting).await.unwrap();
    let now = DateTime::parse_from_rfc3339("2026-06-01T09:30:00Z").unwrap().with_timezone(&Utc);
    let (mut compared, mut nonzero) = (0, 0);
    for seed in 0..20 {
        let mut rng = StdRng::seed_from_u64(seed);
        sqlx::query("TRUNCATE slos, sli_minutes").execute(&pool).await.unwrap();
        let windows = [1u64, 7, 28, 30];
        let mut slo_records = Vec::new();
        for (index, indicator) in INDICATORS.iter().enumerate() {
            let record = SloRecord {
                id: Uuid::now_v7(),
                name: format!("slo {index}"),
                owner: String::new(),
                description: String::new(),
                objective: *[0.9, 0.99, 0.999].choose(&mut rng).unwrap(),
                window: Duration::from_secs(windows.choose(&mut rng).unwrap() * 24 * 3600),
                valid_rule: indicator.valid.into(),
                good_rule: indicator.good.into(),
                prometheus: None,
                min_events: 10,
                create_time: now,
            };
            let mut conn = pool.acquire().await.unwrap();
            slos::insert(&mut conn, &record).await.unwrap();
            slo_records.push(record);
        }

        // Random interactions in random bursts (an interaction is recorded once: the feed carries no duplicates).
        let all: Vec<Interaction> = (0..rng.random_range(50..400)).map(|_| random_interaction(&mut rng, now)).collect();
        let handler = InteractionsFeed::default();
        let mut at = 0;
        while at < all.len() {
            let take = rng.random_range(1..=60).min(all.len() - at);
            let events: Vec<Event> = all[at..at + take].iter().map(recorded).collect();
            let refs: Vec<&Event> = events.iter().collect();
            let mut tx = pool.begin().await.unwrap();
            handler.handle_batch(&mut tx, &refs).await.unwrap();
            tx.commit().await.unwrap();
            at += take;
        }

        // Read at moving times, over the SLO's window and every alert window.
        for later in [0, 17, 60 * 5, 60 * 24 * 3, 60 * 24 * 20] {
            let at = now + chrono::Duration::minutes(later);
            for (record, indicator) in slo_records.iter().zip(&INDICATORS) {
                let windows = status::windows(record);
                let mut conn = pool.acquire().await.unwrap();
                let kept = slos::counts(&mut conn, record.id, at, &windows).await.unwrap();
                for window in &windows {
                    let (valid, bad) = recount(indicator, &all, at, *window);
                    let found = kept[window];
                    assert_eq!((found.valid, found.bad), (valid, bad), "seed {seed}, +{later}m, window {window:?}");
                    compared += 1;
                    if valid > 0 {
                        nonzero += 1;
                    }
                }
                // The status is the workbook's arithmetic on those counts.
                let found = status::status(record, |window| kept[&window]);
                let (valid, bad) = recount(indicator, &all, at, record.window);
                let objective = record.objective;
                if valid > 0 {
                    assert!((found.sli.unwrap() - (valid - bad) as f64 / valid as f64).abs() < 1e-12);
                    let burn = bad as f64 / valid as f64 / (1.0 - objective);
                    assert!((found.budget_left - (1.0 - burn)).abs() < 1e-9, "seed {seed}");
                } else {
                    assert_eq!((found.sli, found.budget_left), (None, 1.0));
                }
                for alert in &found.alerts {
                    let (long_valid, long_bad) = recount(indicator, &all, at, alert.threshold.long);
                    let (short_valid, short_bad) = recount(indicator, &all, at, alert.threshold.short);
                    let burn =
                        |bad: u64, valid: u64| (valid > 0).then(|| bad as f64 / valid as f64 / (1.0 - objective));
                    assert_eq!(alert.long_burn, burn(long_bad, long_valid));
                    assert_eq!(alert.short_burn, burn(short_bad, short_valid));
                    let over = |rate: Option<f64>| rate.is_some_and(|rate| rate >= alert.threshold.burn_rate);
                    let should = long_valid >= 10 && over(alert.long_burn) && over(alert.short_burn);
                    // A firing page silences the ticket; otherwise firing is exactly "both windows over, enough events".
                    if alert.firing || alert.threshold.severity == crm_alerting::slo::burn_rate::Severity::Page {
                        assert_eq!(alert.firing, should, "seed {seed}, {alert:?}");
                    }
                }
            }
        }
    }
    assert!(compared > 1000 && nonzero > compared / 10, "{compared} windows compared, {nonzero} with events");
}
