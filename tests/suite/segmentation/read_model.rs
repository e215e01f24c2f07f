//! The invariant of the read model: what the two feed consumers build
//! incrementally (in any interleaving of the two feeds, in bursts of any
//! size) equals what is built from scratch from the same events (each feed
//! whole, contacts first), over random sequences of creates, updates,
//! merges, erasures, deletions and interactions, including interactions
//! that name merged, erased or not-yet-created contacts; and so do the
//! memberships of the dynamic segments kept over them. The incremental
//! side's clock moves between bursts (the schedule recomputing what time
//! changed), and whole-base computations (RFM, lifetime value) store new
//! analytics now and then, which the features follow by their refresh;
//! from scratch is computed at the time it reached, with the analytics the
//! incremental side ended with.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use crm_platform::{Role, clock::Clock, consumer::Handler};
use crm_proto::{
    common::v1::{Date, Money, PostalAddress},
    contacts::v1::{self as contacts, Contact, LifecycleStage},
    events::v1::Event,
    interactions::v1::{self as interactions, Interaction, ProductLine},
};
use crm_segmentation::{
    features::{contacts_feed::ContactsFeed, interactions_feed::InteractionsFeed},
    schedule,
    segments::{Evaluation, Segments},
};
use crm_testkit::TestDb;
use prost::{Message, Name};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};
use sqlx::PgPool;
use uuid::Uuid;

fn event<M: Message + Name>(message: &M) -> Event {
    Event {
        id: Uuid::now_v7().to_string(),
        r#type: M::full_name(),
        payload: Some(prost_types::Any { type_url: M::type_url(), value: message.encode_to_vec() }),
        ..Default::default()
    }
}

/// Two feeds' events, each in its feed's order.
struct Scenario {
    contacts: Vec<Event>,
    interactions: Vec<Event>,
}

fn contact_id(index: usize) -> Uuid {
    Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0000 + index as u128)
}

fn contact(rng: &mut StdRng, index: usize, now: DateTime<Utc>) -> Contact {
    let tags = ["vip", "newsletter", "b2b", "churn-risk"];
    Contact {
        id: contact_id(index).to_string(),
        lifecycle_stage: rng.random_range(1..=4),
        tags: {
            let count = rng.random_range(0..3);
            tags.choose_multiple(rng, count).map(|tag| tag.to_string()).collect()
        },
        owner: ["", "agent-1", "agent-2"].choose(rng).unwrap().to_string(),
        addresses: vec![PostalAddress {
            locality: ["Lyon", "Leeds", "Lima"].choose(rng).unwrap().to_string(),
            country_code: ["FR", "GB", "PE"].choose(rng).unwrap().to_string(),
            ..Default::default()
        }],
        birth_date: if rng.random_bool(0.5) {
            Some(Date {
                year: rng.random_range(1940..2005),
                month: rng.random_range(1..=12),
                day: rng.random_range(1..=28),
            })
        } else {
            None
        },
        create_time: Some(crm_platform::timestamp::to_proto(now - Duration::days(rng.random_range(1..900)))),
        ..Default::default()
    }
}

fn generate(seed: u64, now: DateTime<Utc>) -> Scenario {
    let mut rng = StdRng::seed_from_u64(seed);
    let count = 8;
    let mut contact_events = Vec::new();
    let mut live: Vec<usize> = Vec::new();
    for index in 0..count {
        let created = contact(&mut rng, index, now);
        contact_events.push(event(&contacts::ContactCreated { contact: Some(created), duplicate_override: false }));
        live.push(index);
    }
    // Referrals and employers among the contacts, some removed again.
    let organizations = [Uuid::from_u128(0xA1), Uuid::from_u128(0xA2)];
    let mut relationships = Vec::new();
    for _ in 0..6 {
        let contact = contact_id(rng.random_range(0..count));
        let relationship = if rng.random_bool(0.5) {
            let referrer = contact_id(rng.random_range(0..count));
            if referrer == contact {
                continue;
            }
            contacts::Relationship {
                id: Uuid::now_v7().to_string(),
                contact_id: contact.to_string(),
                target: Some(contacts::relationship::Target::OtherContactId(referrer.to_string())),
                r#type: contacts::RelationshipType::ReferredBy as i32,
                ..Default::default()
            }
        } else {
            contacts::Relationship {
                id: Uuid::now_v7().to_string(),
                contact_id: contact.to_string(),
                target: Some(contacts::relationship::Target::OrganizationId(
                    organizations.choose(&mut rng).unwrap().to_string(),
                )),
                r#type: contacts::RelationshipType::EmployeeOf as i32,
                ..Default::default()
            }
        };
        relationships.push(relationship.clone());
        contact_events.push(event(&contacts::RelationshipChanged { relationship: Some(relationship), removed: false }));
    }
    for _ in 0..7 {
        if rng.random_bool(0.2)
            && let Some(relationship) = relationships.choose(&mut rng)
        {
            let removed = contacts::RelationshipChanged { relationship: Some(relationship.clone()), removed: true };
            contact_events.push(event(&removed));
        }
        let Some(&index) = live.choose(&mut rng) else { break };
        match rng.random_range(0..10) {
            0..=5 => {
                let mut changed = contact(&mut rng, index, now);
                changed.lifecycle_stage = LifecycleStage::Customer as i32;
                contact_events
                    .push(event(&contacts::ContactUpdated { contact: Some(changed), changed_fields: vec![] }));
            }
            6..=7 if live.len() >= 2 => {
                let losers: Vec<usize> =
                    live.iter().copied().filter(|other| *other != index).take(rng.random_range(1..=2)).collect();
                live.retain(|other| !losers.contains(other));
                contact_events.push(event(&contacts::ContactMerged {
                    survivor: Some(contact(&mut rng, index, now)),
                    loser_ids: losers.iter().map(|loser| contact_id(*loser).to_string()).collect(),
                }));
            }
            8 => {
                live.retain(|other| *other != index);
                contact_events.push(event(&contacts::ContactErased { contact_id: contact_id(index).to_string() }));
            }
            _ => {
                live.retain(|other| *other != index);
                contact_events.push(event(&contacts::ContactDeleted { contact_id: contact_id(index).to_string() }));
            }
        }
    }
    let kinds = [
        interactions::Kind::Purchase,
        interactions::Kind::Complaint,
        interactions::Kind::Refund,
        interactions::Kind::Visit,
    ];
    let mut interaction_events: Vec<Event> = (0..30)
        .map(|_| {
            let kind = *kinds.choose(&mut rng).unwrap();
            let money = matches!(kind, interactions::Kind::Purchase | interactions::Kind::Refund);
            let interaction = Interaction {
                id: Uuid::now_v7().to_string(),
                // Any contact, even one merged, erased or not created yet: the interactions role does not check.
                contact_id: contact_id(rng.random_range(0..count)).to_string(),
                kind: kind as i32,
                channel: rng.random_range(1..=6),
                occurred_at: Some(crm_platform::timestamp::to_proto(
                    now - Duration::minutes(rng.random_range(0..600_000)),
                )),
                amount: money.then(|| Money {
                    currency_code: ["EUR", "USD"].choose(&mut rng).unwrap().to_string(),
                    minor_units: rng.random_range(1..10_000),
                }),
                sentiment: rng.random_bool(0.3).then(|| rng.random_range(-1.0..1.0)),
                product_lines: if kind == interactions::Kind::Purchase {
                    vec![ProductLine { sku: format!("SKU-{}", rng.random_range(1..4)), quantity: 1, unit_price: None }]
                } else {
                    Vec::new()
                },
                ..Default::default()
            };
            event(&interactions::InteractionRecorded { interaction: Some(interaction) })
        })
        .collect();
    // Invoices: issued, some overdue, some paid (late or not); and recurring
    // problems detected: each in its feed's order, between the interactions.
    for _ in 0..6 {
        let invoice = Interaction {
            id: Uuid::now_v7().to_string(),
            contact_id: contact_id(rng.random_range(0..count)).to_string(),
            kind: interactions::Kind::Invoice as i32,
            channel: interactions::Channel::Billing as i32,
            occurred_at: Some(crm_platform::timestamp::to_proto(now - Duration::days(rng.random_range(5..60)))),
            amount: Some(Money { currency_code: "EUR".into(), minor_units: rng.random_range(100..50_000) }),
            invoice: Some(interactions::Invoice {
                number: format!("INV-{}", rng.random_range(1..1000)),
                due_date: Some(Date { year: 2026, month: rng.random_range(3..=6), day: rng.random_range(1..=28) }),
                status: 0,
            }),
            ..Default::default()
        };
        let mut at = rng.random_range(0..interaction_events.len());
        interaction_events.insert(at, event(&interactions::InvoiceIssued { invoice: Some(invoice.clone()) }));
        if rng.random_bool(0.5) {
            at = rng.random_range(at + 1..=interaction_events.len());
            interaction_events.insert(at, event(&interactions::InvoiceOverdue { invoice: Some(invoice.clone()) }));
        }
        if rng.random_bool(0.6) {
            let payment = Interaction {
                id: Uuid::now_v7().to_string(),
                kind: interactions::Kind::Payment as i32,
                occurred_at: Some(crm_platform::timestamp::to_proto(now - Duration::days(rng.random_range(0..5)))),
                invoice: None,
                ..invoice.clone()
            };
            at = rng.random_range(at + 1..=interaction_events.len());
            let paid = interactions::PaymentReceived { payment: Some(payment), settled_invoice_id: invoice.id.clone() };
            interaction_events.insert(at, event(&paid));
        }
    }
    for _ in 0..3 {
        let mut detected = event(&interactions::RecurringProblemDetected {
            contact_id: contact_id(rng.random_range(0..count)).to_string(),
            problem: ["late delivery", "billing"].choose(&mut rng).unwrap().to_string(),
            occurrences: 3,
            window_days: 30,
            interaction_ids: Vec::new(),
        });
        detected.occurred_at = Some(crm_platform::timestamp::to_proto(now - Duration::days(rng.random_range(0..120))));
        let at = rng.random_range(0..=interaction_events.len());
        interaction_events.insert(at, detected);
    }
    Scenario { contacts: contact_events, interactions: interaction_events }
}

async fn apply<H: Handler>(pool: &PgPool, handler: &H, events: &[Event]) {
    let mut tx = pool.begin().await.unwrap();
    let refs: Vec<&Event> = events.iter().collect();
    handler.handle_batch(&mut tx, &refs).await.unwrap();
    tx.commit().await.unwrap();
}

/// Memberships agree with the stored features after every burst, not only
/// at the end (where the schedule's recomputes would hide a stale one): the
/// interactions consumer skips a rule only when the features it reads cannot
/// have moved. Returns how many decisions were checked.
async fn memberships_agree(pool: &PgPool, segments: &Segments, context: &str) -> usize {
    let mut conn = pool.acquire().await.unwrap();
    let every: Vec<String> =
        crm_segmentation::features::catalogue::features().iter().map(|feature| feature.name.clone()).collect();
    let docs = crm_segmentation::store::segments::features_page(&mut conn, None, 100_000, &every).await.unwrap();
    let members: Vec<(Uuid, Uuid)> =
        sqlx::query_as("SELECT contact_id, segment_id FROM memberships").fetch_all(&mut *conn).await.unwrap();
    let mut checked = 0;
    for (id, rule) in SEGMENTS {
        let id = Uuid::from_u128(id);
        let rule = segments.compiled(id, 1, rule).unwrap();
        for (contact, doc) in &docs {
            let member = members.contains(&(*contact, id));
            assert_eq!(
                crm_segmentation::rules::decide(&rule, doc),
                member,
                "{context}: contact {contact} in segment {id}: {member}, but its features say otherwise"
            );
            checked += 1;
        }
    }
    checked
}

/// Every table of the read model as text, sorted: what must be equal.
async fn read_model(pool: &PgPool) -> BTreeMap<&'static str, Vec<String>> {
    let mut tables = BTreeMap::new();
    for (table, columns) in [
        ("profiles", "contact_id, data"),
        ("activity", "contact_id, interaction_id, occurred_at, kind, channel, currency, amount, sentiment, skus"),
        ("redirects", "loser_id, survivor_id"),
        ("gone", "contact_id, reason"),
        ("invoices", "contact_id, invoice_id, currency, amount, due_date, status, paid_late"),
        ("problems", "contact_id, detected_at, problem"),
        ("relationships", "relationship_id, contact_id, kind, target_id"),
        // When a value was computed, or a member entered, depends on when
        // events came; what the values and members are must not.
        ("features", "contact_id, doc, next_change_at"),
        ("memberships", "contact_id, segment_id"),
    ] {
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT ({columns})::text FROM (SELECT {columns} FROM {table}) AS t ORDER BY 1"
        )))
        .fetch_all(pool)
        .await
        .unwrap();
        tables.insert(table, rows);
    }
    tables
}

/// The segments both read models keep: a rule over contact features, one
/// over windows of activity, one over both.
const SEGMENTS: [(u128, &str); 6] = [
    (1, r#"lifecycle == "customer" && "vip" in tags"#),
    (2, r#"purchases_365d >= 2 || refunds_total["EUR"] > 5000"#),
    (3, r#"country == "GB" && complaints_90d > 0"#),
    (4, r#"overdue_invoices > 0 || invoices_paid_late > 0 || recurring_problems_90d > 0"#),
    (5, r#"referrals > 0 && referred_revenue_365d["EUR"] > 1000 || organization_revenue_365d["USD"] > 5000"#),
    (6, r#"rfm_group == "champions" || rfm_monetary_score >= 4 && predicted_value > 5000"#),
];

/// A whole-base computation's outcome, at random: RFM scores and lifetime
/// values for some of the contacts that have features, stored as the
/// computations store them, then the features refreshed as they are after
/// a computation. Returns how many documents the refresh changed.
async fn analytics_step(pool: &PgPool, segments: &Segments, rng: &mut StdRng, now: DateTime<Utc>) -> usize {
    use crm_segmentation::{
        analytics::{
            clv::{BgNbd, GammaGamma},
            recompute::refresh_features,
            rfm::{Group, Scores, Totals},
        },
        store::analytics::{ClvFit, ClvValue, RfmRun, save_clv, save_rfm},
    };
    let known: Vec<Uuid> =
        sqlx::query_scalar("SELECT contact_id FROM features ORDER BY 1").fetch_all(pool).await.unwrap();
    let mut scored: Vec<(Uuid, Totals, Scores)> = Vec::new();
    let mut values: Vec<(Uuid, ClvValue)> = Vec::new();
    for contact in &known {
        if rng.random_bool(0.7) {
            let (recency, frequency) = (rng.random_range(1..=5), rng.random_range(1..=5));
            let totals = Totals {
                recency_days: rng.random_range(0..90),
                frequency: rng.random_range(1..6),
                monetary: rng.random_range(100..10_000),
            };
            let scores =
                Scores { recency, frequency, monetary: rng.random_range(1..=5), group: Group::of(recency, frequency) };
            scored.push((*contact, totals, scores));
        }
        if rng.random_bool(0.7) {
            let value = ClvValue {
                historic_value: rng.random_range(0..10_000),
                repeat_purchases: rng.random_range(0..5),
                probability_alive: rng.random_range(0.0..1.0),
                expected_purchases: rng.random_range(0.0..4.0),
                expected_spend: rng.random_range(0.0..3_000.0),
                predicted_value: rng.random_range(0..10_000),
            };
            values.push((*contact, value));
        }
    }
    let run = RfmRun { computed_at: now, currency: "EUR".into(), window_days: 90, customers: scored.len() as i64 };
    let fit = ClvFit {
        fitted_at: now,
        currency: "EUR".into(),
        horizon_days: 365,
        customers: values.len() as i64,
        repeat_customers: 0,
        purchases: BgNbd { r: 1.0, alpha: 1.0, a: 1.0, b: 1.0 },
        bgnbd_log_likelihood: 0.0,
        spend: GammaGamma { p: 1.0, q: 1.0, gamma: 1.0 },
        gamma_gamma_log_likelihood: 0.0,
    };
    let mut tx = pool.begin().await.unwrap();
    save_rfm(&mut tx, &run, &scored, "test").await.unwrap();
    if rng.random_bool(0.5) {
        save_clv(&mut tx, &fit, &values, "test").await.unwrap();
    }
    tx.commit().await.unwrap();
    refresh_features(pool, segments, now).await.unwrap()
}

/// The analytics the incremental side ended with, stored on the other
/// (before its feeds: their merges and erasures remove what they removed).
async fn copy_analytics(from: &PgPool, to: &PgPool) {
    for table in ["rfm_scores", "clv_values"] {
        let rows: serde_json::Value =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT coalesce(jsonb_agg(t), '[]') FROM {table} t")))
                .fetch_one(from)
                .await
                .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} SELECT * FROM jsonb_populate_recordset(null::{table}, $1)"
        )))
        .bind(rows)
        .execute(to)
        .await
        .unwrap();
    }
}

async fn clear(pool: &PgPool, segments: &Segments, now: DateTime<Utc>) {
    sqlx::query(
        "TRUNCATE profiles, activity, redirects, gone, features, memberships, segments, rfm_scores, clv_values",
    )
    .execute(pool)
    .await
    .unwrap();
    let mut tx = pool.begin().await.unwrap();
    for (id, rule) in SEGMENTS {
        let id = Uuid::from_u128(id);
        crm_segmentation::store::segments::insert(&mut tx, id, &format!("segment {id}"), "", "dynamic", rule)
            .await
            .unwrap();
        let checked = segments.compiled(id, 1, rule).unwrap();
        segments.populate(&mut tx, pool, id, 1, &checked, Evaluation::First, now).await.unwrap();
    }
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn features_built_incrementally_equal_features_built_from_scratch() {
    let (incremental_db, scratch_db) = (TestDb::create().await.unwrap(), TestDb::create().await.unwrap());
    let incremental = incremental_db.role_pool(Role::Segmentation).await.unwrap();
    let scratch = scratch_db.role_pool(Role::Segmentation).await.unwrap();
    let now = DateTime::parse_from_rfc3339("2026-06-01T09:30:00Z").unwrap().with_timezone(&Utc);
    let segments = std::sync::Arc::new(Segments::default());
    let (mut nonempty_features, mut members, mut moves, mut invoices, mut rolled_up) = (0, 0, 0, 0, 0);
    let (mut refreshed, mut with_analytics) = (0, 0);
    let mut checked = 0;
    for seed in 0..25 {
        let scenario = generate(seed, now);
        // The incremental side's clock starts at `now` and moves between bursts.
        let clock = Clock::manual(now);
        let contacts_feed = ContactsFeed { clock: clock.clone(), segments: segments.clone() };
        let interactions_feed = InteractionsFeed { clock: clock.clone(), segments: segments.clone() };
        clear(&incremental, &segments, now).await;

        // Incrementally: the two feeds interleaved at random, in random
        // bursts, with the clock moving (and the schedule running) between them.
        let mut rng = StdRng::seed_from_u64(seed + 1000);
        let (mut at_contacts, mut at_interactions) = (0, 0);
        while at_contacts < scenario.contacts.len() || at_interactions < scenario.interactions.len() {
            if rng.random_bool(0.3) {
                clock.advance(Duration::hours(rng.random_range(1..24 * 20)));
                while schedule::run_due(&incremental, &clock, &segments).await.unwrap() > 0 {}
                moves += 1;
            }
            if rng.random_bool(0.1) {
                refreshed += analytics_step(&incremental, &segments, &mut rng, clock.now()).await;
                checked += memberships_agree(&incremental, &segments, &format!("seed {seed}, after analytics")).await;
            }
            let take = rng.random_range(1..=4);
            let contacts_turn = at_interactions == scenario.interactions.len()
                || (at_contacts < scenario.contacts.len() && rng.random_bool(0.5));
            if contacts_turn {
                let end = (at_contacts + take).min(scenario.contacts.len());
                apply(&incremental, &contacts_feed, &scenario.contacts[at_contacts..end]).await;
                at_contacts = end;
            } else {
                let end = (at_interactions + take).min(scenario.interactions.len());
                apply(&incremental, &interactions_feed, &scenario.interactions[at_interactions..end]).await;
                at_interactions = end;
                checked += memberships_agree(&incremental, &segments, &format!("seed {seed}, event {end}")).await;
            }
        }
        while schedule::run_due(&incremental, &clock, &segments).await.unwrap() > 0 {}

        // From scratch, at the time the incremental side reached: each feed whole, contacts first.
        let final_clock = Clock::manual(clock.now());
        clear(&scratch, &segments, clock.now()).await;
        copy_analytics(&incremental, &scratch).await;
        let contacts_feed = ContactsFeed { clock: final_clock.clone(), segments: segments.clone() };
        let interactions_feed = InteractionsFeed { clock: final_clock.clone(), segments: segments.clone() };
        apply(&scratch, &contacts_feed, &scenario.contacts).await;
        apply(&scratch, &interactions_feed, &scenario.interactions).await;

        let (built, rebuilt) = (read_model(&incremental).await, read_model(&scratch).await);
        for (table, rows) in &built {
            let only_built: Vec<&String> = rows.iter().filter(|row| !rebuilt[table].contains(row)).collect();
            let only_rebuilt: Vec<&String> = rebuilt[table].iter().filter(|row| !rows.contains(row)).collect();
            assert!(
                only_built.is_empty() && only_rebuilt.is_empty(),
                "seed {seed}, table {table}: incremental only {only_built:#?}\nfrom scratch only {only_rebuilt:#?}"
            );
        }
        nonempty_features += built["features"].len();
        members += built["memberships"].len();
        invoices += built["invoices"].len();
        let (rolled, analysed): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE (d->>'referrals')::int8 > 0 OR (d->>'organization_contacts')::int8 > 0),
                    count(*) FILTER (WHERE d->>'rfm_group' <> '' OR (d->>'predicted_value')::int8 > 0)
             FROM (SELECT convert_from(doc, 'UTF8')::jsonb AS d FROM features) AS f",
        )
        .fetch_one(&incremental)
        .await
        .unwrap();
        rolled_up += rolled;
        with_analytics += analysed;
    }
    assert!(moves > 25, "the clock moved between bursts ({moves} times)");
    assert!(checked > 1000, "memberships were checked against features after bursts ({checked} decisions)");
    assert!(members > 10, "the scenarios put contacts in segments ({members})");
    assert!(invoices > 25, "the scenarios issue invoices ({invoices})");
    assert!(rolled_up > 25, "the scenarios roll referrals and organizations up ({rolled_up})");
    assert!(refreshed > 25, "refreshes after computations changed documents ({refreshed})");
    assert!(with_analytics > 25, "the scenarios end with analytics in the features ({with_analytics})");
    assert!(nonempty_features > 50, "the scenarios leave contacts with features ({nonempty_features})");
}

/// A burst holds a bounded number of locks however many contacts it
/// touches. PostgreSQL keeps every lock in one shared table
/// (`max_locks_per_transaction` × `max_connections`, for every connection of
/// the install: about 12,000 with the defaults); a lock per contact let one
/// burst fill it and fail, with "out of shared memory", forever and other
/// roles' transactions besides. The recompute locks are striped.
#[tokio::test]
async fn a_burst_holds_a_bounded_number_of_locks_however_many_contacts_it_touches() {
    let db = TestDb::create().await.unwrap();
    let pool = db.role_pool(Role::Segmentation).await.unwrap();
    let now = DateTime::parse_from_rfc3339("2026-06-01T09:30:00Z").unwrap().with_timezone(&Utc);
    let handler = InteractionsFeed { clock: Clock::manual(now), segments: std::sync::Arc::new(Segments::default()) };
    let stripes = crm_segmentation::store::CONTACT_LOCK_STRIPES as usize;
    let contacts = stripes * 4;
    // A segment the second purchase enters: a large burst's decisions (made
    // on every core) come out whole.
    let repeat = Uuid::from_u128(42);
    let mut tx = pool.begin().await.unwrap();
    crm_segmentation::store::segments::insert(&mut tx, repeat, "repeat buyers", "", "dynamic", "purchases_total >= 2")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let purchases = || -> Vec<Event> {
        (0..contacts)
            .map(|index| {
                event(&interactions::InteractionRecorded {
                    interaction: Some(Interaction {
                        id: Uuid::now_v7().to_string(),
                        contact_id: contact_id(index).to_string(),
                        kind: interactions::Kind::Purchase as i32,
                        channel: interactions::Channel::Web as i32,
                        occurred_at: Some(crm_platform::timestamp::to_proto(now - Duration::days(3))),
                        amount: Some(Money { currency_code: "EUR".into(), minor_units: 1_000 }),
                        ..Default::default()
                    }),
                })
            })
            .collect()
    };
    // Twice: new contacts are recomputed, known ones applied to; then the
    // second burst again, which changes nothing.
    let (first, second) = (purchases(), purchases());
    for (round, events) in [&first, &second, &second].into_iter().enumerate() {
        let mut tx = pool.begin().await.unwrap();
        let refs: Vec<&Event> = events.iter().collect();
        handler.handle_batch(&mut tx, &refs).await.unwrap();
        let held: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")
                .fetch_one(&mut *tx)
                .await
                .unwrap();
        tx.commit().await.unwrap();
        assert!(
            held as usize <= stripes + 10,
            "round {round}: a burst over {contacts} contacts held {held} advisory locks (stripes: {stripes})"
        );
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM features").fetch_one(&pool).await.unwrap();
    assert_eq!(stored, contacts as i64, "every contact of the burst has its features");
    let bought: Vec<Vec<u8>> = sqlx::query_scalar("SELECT doc FROM features LIMIT 5").fetch_all(&pool).await.unwrap();
    for doc in bought {
        let doc = crm_segmentation::features::doc_from_bytes(&doc);
        assert_eq!(doc["purchases_total"], crm_segmentation::features::Value::Int(2), "two purchases each, once");
    }
    let members: i64 = sqlx::query_scalar("SELECT count(*) FROM memberships WHERE segment_id = $1")
        .bind(repeat)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(members, contacts as i64, "every contact entered the segment on its second purchase");
    // A new segment's first evaluation over them all (pages read and decided on every core).
    let again = Uuid::from_u128(43);
    let segments = Segments::default();
    let mut tx = pool.begin().await.unwrap();
    crm_segmentation::store::segments::insert(&mut tx, again, "repeat again", "", "dynamic", "purchases_total >= 2")
        .await
        .unwrap();
    let rule = segments.compiled(again, 1, "purchases_total >= 2").unwrap();
    let populated = segments.populate(&mut tx, &pool, again, 1, &rule, Evaluation::First, now).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(populated, contacts as i64, "the first evaluation finds every member");
}

/// The features follow a computation even when the replica that stored it
/// stopped before refreshing them: the request stays pending, and the
/// leader of the analytics schedule finishes it, memberships included.
#[tokio::test]
async fn a_refresh_a_crash_interrupted_is_finished_by_the_leader() {
    use crm_segmentation::{
        analytics::{
            recompute,
            rfm::{Group, Scores, Totals},
        },
        store::analytics::{RfmRun, save_rfm},
    };
    let db = TestDb::create().await.unwrap();
    let pool = db.role_pool(Role::Segmentation).await.unwrap();
    let now = DateTime::parse_from_rfc3339("2026-06-01T09:30:00Z").unwrap().with_timezone(&Utc);
    let segments = std::sync::Arc::new(Segments::default());
    clear(&pool, &segments, now).await;
    let mut rng = StdRng::seed_from_u64(7);
    let feed = ContactsFeed { clock: Clock::manual(now), segments: segments.clone() };
    let created: Vec<Event> = (0..3)
        .map(|index| {
            event(&contacts::ContactCreated { contact: Some(contact(&mut rng, index, now)), ..Default::default() })
        })
        .collect();
    apply(&pool, &feed, &created).await;

    // A champion scored and stored; the replica gone before its refresh.
    let champion = contact_id(1);
    let scores = Scores { recency: 5, frequency: 5, monetary: 4, group: Group::of(5, 5) };
    let totals = Totals { recency_days: 2, frequency: 9, monetary: 90_000 };
    let run = RfmRun { computed_at: now, currency: "EUR".into(), window_days: 365, customers: 1 };
    let mut tx = pool.begin().await.unwrap();
    save_rfm(&mut tx, &run, &[(champion, totals, scores)], "a replica that stopped").await.unwrap();
    tx.commit().await.unwrap();
    let group = || async {
        let doc: Vec<u8> = sqlx::query_scalar("SELECT doc FROM features WHERE contact_id = $1")
            .bind(champion)
            .fetch_one(&pool)
            .await
            .unwrap();
        crm_segmentation::features::doc_from_bytes(&doc)["rfm_group"].clone()
    };
    assert_eq!(group().await, crm_segmentation::features::Value::Str(String::new()), "not refreshed yet");

    let shutdown = tokio_util::sync::CancellationToken::new();
    recompute::spawn(pool.clone(), Clock::manual(now), segments.clone(), shutdown.clone());
    crate::support::eventually(std::time::Duration::from_secs(20), "the leader's refresh", || async {
        let member: bool =
            sqlx::query_scalar("SELECT exists (SELECT FROM memberships WHERE contact_id = $1 AND segment_id = $2)")
                .bind(champion)
                .bind(Uuid::from_u128(6))
                .fetch_one(&pool)
                .await
                .unwrap();
        let pending: bool =
            sqlx::query_scalar("SELECT exists (SELECT FROM analytics_dirty)").fetch_one(&pool).await.unwrap();
        member && group().await == crm_segmentation::features::Value::Str("champions".into()) && !pending
    })
    .await;
    shutdown.cancel();
}

/// `count` random contacts (`contact_id(0..count)`), created through the contacts feed.
async fn create_contacts(pool: &PgPool, seed: u64, count: usize, now: DateTime<Utc>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let feed = ContactsFeed { clock: Clock::manual(now), segments: std::sync::Arc::new(Segments::default()) };
    let created: Vec<Event> = (0..count)
        .map(|index| {
            event(&contacts::ContactCreated { contact: Some(contact(&mut rng, index, now)), ..Default::default() })
        })
        .collect();
    apply(pool, &feed, &created).await;
}

/// A refresh that rewrote a large part of the documents leaves them (and
/// the replaced scores) vacuumed and analysed straight after, not when
/// autovacuum comes round to it, on whatever runs then.
#[tokio::test]
async fn a_large_refresh_leaves_the_features_vacuumed_and_analysed() {
    use crm_segmentation::{
        analytics::{
            recompute::refresh_features,
            rfm::{Group, Scores, Totals},
        },
        store::analytics::{RfmRun, save_rfm},
    };
    let db = TestDb::create().await.unwrap();
    let pool = db.role_pool(Role::Segmentation).await.unwrap();
    let now = DateTime::parse_from_rfc3339("2026-06-01T09:30:00Z").unwrap().with_timezone(&Utc);
    let segments = Segments::default();
    let count = crm_platform::db::TIDY_AFTER + 100;
    create_contacts(&pool, 11, count, now).await;
    let scores = Scores { recency: 3, frequency: 3, monetary: 3, group: Group::of(3, 3) };
    let totals = Totals { recency_days: 40, frequency: 2, monetary: 5_000 };
    let scored: Vec<_> = (0..count).map(|index| (contact_id(index), totals, scores)).collect();
    let run = RfmRun { computed_at: now, currency: "EUR".into(), window_days: 365, customers: count as i64 };
    let mut tx = pool.begin().await.unwrap();
    save_rfm(&mut tx, &run, &scored, "test").await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(refresh_features(&pool, &segments, now).await.unwrap(), count, "every document changed");
    crate::support::eventually(std::time::Duration::from_secs(60), "VACUUM (ANALYZE) after the refresh", || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT bool_and(last_vacuum IS NOT NULL AND last_analyze IS NOT NULL) FROM pg_stat_user_tables
             WHERE relid IN ('features'::regclass, 'rfm_scores'::regclass)",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    })
    .await;
}

/// A computation marks only the contacts whose scores, group or predicted
/// value changed (or went), and the refresh rewrites only those: the same
/// scores stored again mark nobody; one customer's new group and another's
/// lost scores mark those two; a fit marks the values that moved.
#[tokio::test]
async fn a_computation_marks_and_refreshes_only_the_contacts_whose_analytics_changed() {
    use crm_segmentation::{
        analytics::{
            clv::{BgNbd, GammaGamma},
            recompute::refresh_features,
            rfm::{Group, Scores, Totals},
        },
        features::{Value, doc_from_bytes},
        store::analytics::{ClvFit, ClvValue, RfmRun, save_clv, save_rfm},
    };
    let db = TestDb::create().await.unwrap();
    let pool = db.role_pool(Role::Segmentation).await.unwrap();
    let now = DateTime::parse_from_rfc3339("2026-06-01T09:30:00Z").unwrap().with_timezone(&Utc);
    let segments = Segments::default();
    let count = 40;
    create_contacts(&pool, 13, count, now).await;
    let marked = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM analytics_dirty").fetch_one(&pool).await.unwrap()
    };
    let group_of = |index: usize| {
        let pool = pool.clone();
        async move {
            let doc: Vec<u8> = sqlx::query_scalar("SELECT doc FROM features WHERE contact_id = $1")
                .bind(contact_id(index))
                .fetch_one(&pool)
                .await
                .unwrap();
            doc_from_bytes(&doc)["rfm_group"].clone()
        }
    };
    let save = |scored: Vec<(Uuid, Totals, Scores)>| {
        let pool = pool.clone();
        async move {
            let run = RfmRun { computed_at: now, currency: "EUR".into(), window_days: 365, customers: 0 };
            let mut tx = pool.begin().await.unwrap();
            save_rfm(&mut tx, &run, &scored, "test").await.unwrap();
            tx.commit().await.unwrap();
        }
    };
    let totals = Totals { recency_days: 40, frequency: 2, monetary: 5_000 };
    let middling = Scores { recency: 3, frequency: 3, monetary: 3, group: Group::of(3, 3) };
    let mut scored: Vec<_> = (0..count).map(|index| (contact_id(index), totals, middling)).collect();

    save(scored.clone()).await;
    assert_eq!(marked().await, count as i64, "a first computation marks every customer");
    assert_eq!(refresh_features(&pool, &segments, now).await.unwrap(), count);
    assert_eq!(marked().await, 0, "the refresh unmarks what it brought up to date");

    // The same scores, with other totals (not features): nobody marked.
    let later = Totals { recency_days: 41, ..totals };
    save(scored.iter().map(|(contact, _, scores)| (*contact, later, *scores)).collect()).await;
    assert_eq!(marked().await, 0, "unchanged scores mark nobody");
    assert_eq!(refresh_features(&pool, &segments, now).await.unwrap(), 0);

    // One champion more, one customer no longer scored.
    scored[7].2 = Scores { recency: 5, frequency: 5, monetary: 5, group: Group::of(5, 5) };
    scored.remove(8);
    save(scored.clone()).await;
    assert_eq!(marked().await, 2);
    assert_eq!(refresh_features(&pool, &segments, now).await.unwrap(), 2);
    assert_eq!(group_of(7).await, Value::Str("champions".into()));
    assert_eq!(group_of(8).await, Value::Str(String::new()), "unscored: no group");
    assert_eq!(group_of(9).await, Value::Str("need_attention".into()));

    // A fit: the values that moved are marked, the rest not.
    let value = |predicted_value| ClvValue {
        historic_value: 100,
        repeat_purchases: 1,
        probability_alive: 0.5,
        expected_purchases: 1.0,
        expected_spend: 100.0,
        predicted_value,
    };
    let fit = ClvFit {
        fitted_at: now,
        currency: "EUR".into(),
        horizon_days: 365,
        customers: 3,
        repeat_customers: 0,
        purchases: BgNbd { r: 1.0, alpha: 1.0, a: 1.0, b: 1.0 },
        bgnbd_log_likelihood: 0.0,
        spend: GammaGamma { p: 1.0, q: 1.0, gamma: 1.0 },
        gamma_gamma_log_likelihood: 0.0,
    };
    for (values, expected) in [([100, 200, 300], 3), ([100, 250, 300], 1)] {
        let values: Vec<_> = values.into_iter().enumerate().map(|(index, v)| (contact_id(index), value(v))).collect();
        let mut tx = pool.begin().await.unwrap();
        save_clv(&mut tx, &fit, &values, "test").await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(marked().await, expected);
        assert_eq!(refresh_features(&pool, &segments, now).await.unwrap(), expected as usize);
    }
}

/// Computations saved while a refresh runs: every document ends with the
/// group stored last, whichever page read what when (a save and each page
/// of the refresh take one lock, so no contact is unmarked with the scores
/// from before a save), and no mark is left.
#[tokio::test]
async fn computations_saved_while_a_refresh_runs_leave_every_document_at_the_last_scores() {
    use crm_segmentation::{
        analytics::{
            recompute::refresh_features,
            rfm::{Group, Scores, Totals},
        },
        features::{Value, doc_from_bytes},
        store::analytics::{RfmRun, save_rfm},
    };
    let db = TestDb::create().await.unwrap();
    let pool = db.role_pool(Role::Segmentation).await.unwrap();
    let now = DateTime::parse_from_rfc3339("2026-06-01T09:30:00Z").unwrap().with_timezone(&Utc);
    let segments = std::sync::Arc::new(Segments::default());
    let count = 5000;
    create_contacts(&pool, 17, count, now).await;
    let totals = Totals { recency_days: 40, frequency: 2, monetary: 5_000 };
    let run = RfmRun { computed_at: now, currency: "EUR".into(), window_days: 365, customers: count as i64 };
    let mut last = Group::Lost;
    for round in 0..6 {
        // Each round moves every customer to another group: every document is marked.
        let (recency, frequency) = [(5, 5), (1, 1), (3, 3)][round % 3];
        last = Group::of(recency, frequency);
        let scores = Scores { recency, frequency, monetary: 3, group: last };
        let refresh = tokio::spawn({
            let (pool, segments) = (pool.clone(), segments.clone());
            async move { refresh_features(&pool, &segments, now).await.unwrap() }
        });
        // The save lands before, between or after the running refresh's pages.
        tokio::time::sleep(std::time::Duration::from_millis(15 * round as u64)).await;
        let scored: Vec<_> = (0..count).map(|index| (contact_id(index), totals, scores)).collect();
        let mut tx = pool.begin().await.unwrap();
        save_rfm(&mut tx, &run, &scored, "test").await.unwrap();
        tx.commit().await.unwrap();
        refresh.await.unwrap();
    }
    refresh_features(&pool, &segments, now).await.unwrap();
    let docs: Vec<Vec<u8>> = sqlx::query_scalar("SELECT doc FROM features").fetch_all(&pool).await.unwrap();
    assert_eq!(docs.len(), count);
    let stale = docs.iter().filter(|doc| doc_from_bytes(doc)["rfm_group"] != Value::Str(last.name().into())).count();
    assert_eq!(stale, 0, "documents left with a group from before the last save");
    let marked: i64 = sqlx::query_scalar("SELECT count(*) FROM analytics_dirty").fetch_one(&pool).await.unwrap();
    assert_eq!(marked, 0);
}
