//! Customer analytics through the gateway, on a hand-checked base: the
//! customers won, lost, grown and shrunk across period boundaries, in all
//! and per owner; how concentrated revenue is, and the gaps in the core
//! customers' data, duplicates included; association rules and next best
//! offers; RFM; lifetime value; bad requests named by field.

use std::time::Duration;

use chrono::DurationRound;
use crm_platform::{Role, clock::Clock};
use crm_proto::{
    common::v1::{Date, Money},
    contacts::v1::{
        Consent, ConsentChannel, ConsentStatus, Contact, CreateContactRequest, EraseContactRequest,
        MergeContactsRequest,
    },
    interactions::v1::{Channel, IngestInteractionsRequest, Interaction, Kind, ProductLine, RecordInteractionRequest},
    segmentation::v1::{
        Comparison, ComputeAssociationRulesRequest, ComputeRfmRequest, CreateSegmentRequest, CustomerMovement, DataGap,
        FitLifetimeValueRequest, GetAssociationRulesRequest, GetContactFeaturesRequest, GetContactLifetimeValueRequest,
        GetContactRfmRequest, GetCustomerMovementRequest, GetLifetimeValueModelRequest, GetNextBestOffersRequest,
        GetRevenueConcentrationRequest, GetRfmSummaryRequest, ListSegmentMembersRequest, MovementCounts, OfferPurpose,
        Period, RevenueConcentration, Segment, feature_value,
    },
};
use crm_proto::{
    contacts::v1::contacts_service_client::ContactsServiceClient,
    interactions::v1::interactions_service_client::InteractionsServiceClient,
    segmentation::v1::segmentation_service_client::SegmentationServiceClient,
};
use crm_testkit::{Authed, TestDb, TestSuite};
use tonic::Code;

use crate::{
    contacts::{person, violated_fields},
    support::eventually,
};

fn at(text: &str) -> prost_types::Timestamp {
    let at: chrono::DateTime<chrono::Utc> = text.parse().unwrap();
    prost_types::Timestamp { seconds: at.timestamp(), nanos: 0 }
}

fn days_ago(days: i64) -> prost_types::Timestamp {
    let at = chrono::Utc::now() - chrono::Duration::days(days);
    prost_types::Timestamp { seconds: at.timestamp(), nanos: 0 }
}

fn purchase(contact: &str, occurred_at: prost_types::Timestamp, currency: &str, minor_units: i64) -> Interaction {
    Interaction {
        contact_id: contact.into(),
        channel: Channel::Web as i32,
        kind: Kind::Purchase as i32,
        occurred_at: Some(occurred_at),
        amount: Some(Money { currency_code: currency.into(), minor_units }),
        source: "shop".into(),
        external_id: uuid::Uuid::now_v7().to_string(),
        ..Default::default()
    }
}

/// A customer of `owner`, born on a day of their own (so that no two are
/// likely duplicates of each other).
fn customer(given: &str, family: &str, owner: &str, phone: &str, day: i32) -> Contact {
    let mut contact = person(given, family, &format!("{}@example.com", given.to_lowercase()), phone);
    contact.owner = owner.into();
    contact.birth_date = Some(Date { year: 1970 + day, month: 1 + day % 12, day });
    contact
}

/// A suite on a fresh database with the clients every test here uses.
struct Shop {
    _db: TestDb,
    suite: TestSuite,
    contacts: ContactsServiceClient<Authed>,
    interactions: InteractionsServiceClient<Authed>,
    segmentation: SegmentationServiceClient<Authed>,
}

async fn open_shop(clock: Clock) -> Shop {
    let db = TestDb::create().await.unwrap();
    let suite = TestSuite::start_with_clock(&db, &Role::ALL, &[], clock).await.unwrap();
    let contacts = suite.contacts().await.unwrap();
    let interactions = suite.interactions().await.unwrap();
    let segmentation = suite.segmentation().await.unwrap();
    Shop { _db: db, suite, contacts, interactions, segmentation }
}

fn quarter_of_2025_q2() -> GetCustomerMovementRequest {
    GetCustomerMovementRequest {
        at: Some(at("2025-05-15T00:00:00Z")),
        period: Period::Quarter as i32,
        currency_code: "eur".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn movement_and_concentration_on_a_hand_checked_base() {
    // A clock the test moves: whole-base answers are kept for a minute of it.
    let clock = Clock::manual(chrono::Utc::now());
    let Shop { _db, suite, mut contacts, mut interactions, mut segmentation } = open_shop(clock.clone()).await;

    let mut ids = Vec::new();
    for (given, family, owner, phone, day) in [
        ("Alice", "Archer", "ann", "", 3),
        ("Bruno", "Baker", "ann", "(201) 555-0102", 5),
        ("Chen", "Cooper", "bob", "(201) 555-0103", 7),
        ("Dara", "Dyer", "bob", "(201) 555-0104", 9),
        ("Emil", "Evans", "", "(201) 555-0105", 11),
        ("Robert", "Smith", "", "(201) 555-0106", 13),
    ] {
        let created = contacts
            .create_contact(CreateContactRequest {
                contact: Some(customer(given, family, owner, phone, day)),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        ids.push(created.id);
    }
    let [alice, bruno, chen, dara, emil, robert] = <[String; 6]>::try_from(ids).unwrap();
    // Robert's likely duplicate, let in on purpose.
    let mut bob = customer("Bob", "Smith", "", "(201) 555-0106", 13);
    bob.emails[0].address = "robert@example.com".into();
    contacts
        .create_contact(CreateContactRequest {
            contact: Some(bob),
            allow_duplicate: true,
            override_reason: "to be merged after the analysis".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    let purchases = [
        // Q2 2025 against Q1, churn 365 days:
        // Alice is won on the quarter's first instant (a USD purchase does not count).
        purchase(&alice, at("2025-04-01T00:00:00Z"), "EUR", 500),
        purchase(&alice, at("2025-05-01T00:00:00Z"), "USD", 9999),
        // Bruno grows from 300 to 800.
        purchase(&bruno, at("2025-02-10T00:00:00Z"), "EUR", 300),
        purchase(&bruno, at("2025-05-01T00:00:00Z"), "EUR", 800),
        // Chen bought on the last second of Q1 only: shrunk to nothing, not lost.
        purchase(&chen, at("2025-03-31T23:59:59Z"), "EUR", 400),
        // Dara's churn window (365 days after 2024-05-20) ends on 2025-05-20: lost, with 1,000 spent.
        purchase(&dara, at("2024-03-01T00:00:00Z"), "EUR", 100),
        purchase(&dara, at("2024-05-20T00:00:00Z"), "EUR", 900),
        // Emil: 200 and 200, the second on the quarter's last second.
        purchase(&emil, at("2025-01-15T00:00:00Z"), "EUR", 200),
        purchase(&emil, at("2025-06-30T23:59:59Z"), "EUR", 200),
        // The last 365 days: Robert 1,000; Alice 500; Bruno 300; Chen and Emil 100.
        purchase(&robert, days_ago(10), "EUR", 1000),
        purchase(&alice, days_ago(20), "EUR", 500),
        purchase(&bruno, days_ago(30), "EUR", 300),
        purchase(&chen, days_ago(40), "EUR", 100),
        purchase(&emil, days_ago(400), "EUR", 7000),
        purchase(&emil, days_ago(50), "EUR", 100),
    ];
    for interaction in purchases {
        interactions
            .record_interaction(RecordInteractionRequest { interaction: Some(interaction), contact_lookup: None })
            .await
            .unwrap();
    }

    // Every purchase applied, and every profile (Robert's gaps show his);
    // each ask a minute later than the last, so that the kept answer is recomputed.
    eventually(Duration::from_secs(30), "the read model caught up", || {
        let mut client = segmentation.clone();
        clock.advance(chrono::Duration::seconds(61));
        async move {
            let request = GetRevenueConcentrationRequest { currency_code: "EUR".into(), ..Default::default() };
            client.get_revenue_concentration(request).await.is_ok_and(|found| {
                let found = found.get_ref();
                found.revenue == 2000 && found.core.first().is_some_and(|top| top.gaps.len() == 2)
            })
        }
    })
    .await;

    let movement: CustomerMovement =
        segmentation.get_customer_movement(quarter_of_2025_q2()).await.unwrap().into_inner();
    assert_eq!(
        (movement.period_start, movement.period_end),
        (Some(at("2025-04-01T00:00:00Z")), Some(at("2025-07-01T00:00:00Z")))
    );
    assert_eq!(movement.compared_start, Some(at("2025-01-01T00:00:00Z")));
    assert_eq!((movement.currency_code.as_str(), movement.churn_days), ("EUR", 365));
    assert_eq!(
        movement.total.unwrap(),
        MovementCounts {
            active: 3,
            revenue: 1500,
            compared_revenue: 900,
            won: 1,
            won_revenue: 500,
            lost: 1,
            lost_revenue: 1000,
            grown: 1,
            grown_revenue_change: 500,
            shrunk: 1,
            shrunk_revenue_change: -400,
        }
    );
    let owners: Vec<(&str, i64, i64, i64, i64, i64)> = movement
        .owners
        .iter()
        .map(|owner| {
            let counts = owner.counts.as_ref().unwrap();
            (owner.owner.as_str(), counts.active, counts.won, counts.lost, counts.grown, counts.shrunk)
        })
        .collect();
    // Robert bought nothing then and does not appear; Emil and he have no owner.
    assert_eq!(owners, [("", 1, 0, 0, 0, 0), ("ann", 2, 1, 0, 1, 0), ("bob", 0, 0, 1, 0, 1)]);

    // Against Q2 2024 instead: only Dara bought then, and she is lost.
    let a_year_before = segmentation
        .get_customer_movement(GetCustomerMovementRequest {
            comparison: Comparison::SamePeriodLastYear as i32,
            ..quarter_of_2025_q2()
        })
        .await
        .unwrap()
        .into_inner();
    let total = a_year_before.total.unwrap();
    assert_eq!(a_year_before.compared_start, Some(at("2024-04-01T00:00:00Z")));
    assert_eq!((total.compared_revenue, total.lost, total.grown, total.shrunk), (900, 1, 0, 0));

    // April 2025 alone: Alice won on its first instant; Chen's March purchase shrinks to nothing.
    let april = segmentation
        .get_customer_movement(GetCustomerMovementRequest {
            at: Some(at("2025-04-30T23:59:59Z")),
            period: Period::Month as i32,
            ..quarter_of_2025_q2()
        })
        .await
        .unwrap()
        .into_inner();
    let total = april.total.unwrap();
    assert_eq!((total.active, total.won, total.grown, total.shrunk, total.lost), (1, 1, 0, 1, 0));
    // A churn window of 30 days: Chen is lost in April (2025-04-30), no longer shrunk.
    let april_short_churn = segmentation
        .get_customer_movement(GetCustomerMovementRequest {
            at: Some(at("2025-04-30T23:59:59Z")),
            period: Period::Month as i32,
            churn_days: 30,
            ..quarter_of_2025_q2()
        })
        .await
        .unwrap()
        .into_inner();
    let total = april_short_churn.total.unwrap();
    assert_eq!((total.lost, total.lost_revenue, total.shrunk), (1, 400, 0));

    // 80/20 over the last 365 days: five customers, 2,000 in all; Robert alone is the top 20%.
    let found: RevenueConcentration = segmentation
        .get_revenue_concentration(GetRevenueConcentrationRequest { currency_code: "EUR".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((found.customers, found.revenue, found.core_customers), (5, 2000, 1));
    assert!((found.core_revenue_share - 0.5).abs() < 1e-12, "{found:?}");
    assert_eq!(found.curve.len(), 20);
    let share_at = |customer_share: f64| {
        found.curve.iter().find(|point| (point.customer_share - customer_share).abs() < 1e-9).unwrap().revenue_share
    };
    assert!((share_at(0.2) - 0.5).abs() < 1e-12 && (share_at(0.4) - 0.75).abs() < 1e-12 && share_at(1.0) == 1.0);
    let top = &found.core[0];
    assert_eq!((top.contact_id.as_str(), top.rank, top.revenue), (robert.as_str(), 1, 1000));
    assert_eq!(top.gaps, [DataGap::NoConsent as i32, DataGap::LikelyDuplicate as i32]);

    // The top 40%, one listed: Alice (no phone) counts in the gaps, unlisted; duplicates are checked for the listed only.
    let wider = segmentation
        .get_revenue_concentration(GetRevenueConcentrationRequest {
            currency_code: "EUR".into(),
            core_share: 0.4,
            core_limit: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((wider.core_customers, wider.core.len()), (2, 1));
    let gaps: Vec<(i32, i64)> = wider.core_gaps.iter().map(|count| (count.gap, count.customers)).collect();
    assert_eq!(
        gaps,
        [(DataGap::NoPhone as i32, 1), (DataGap::NoConsent as i32, 2), (DataGap::LikelyDuplicate as i32, 1)]
    );
    // A window of 450 days takes in Emil's 7,000: he is now the top customer.
    let longer = segmentation
        .get_revenue_concentration(GetRevenueConcentrationRequest {
            currency_code: "EUR".into(),
            window_days: 450,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((longer.revenue, longer.core[0].contact_id.as_str()), (9000, emil.as_str()));

    // A purchase now: the kept answer is given for a minute, then once more while it is recomputed, then the new one.
    let ask = || {
        let mut client = segmentation.clone();
        async move {
            let request = GetRevenueConcentrationRequest { currency_code: "EUR".into(), ..Default::default() };
            client.get_revenue_concentration(request).await.unwrap().into_inner()
        }
    };
    let kept = ask().await;
    interactions
        .record_interaction(RecordInteractionRequest {
            interaction: Some(purchase(&bruno, days_ago(1), "EUR", 250)),
            contact_lookup: None,
        })
        .await
        .unwrap();
    eventually(Duration::from_secs(30), "the purchase applied", || {
        let mut client = segmentation.clone();
        let bruno = bruno.clone();
        async move {
            let request = GetContactFeaturesRequest { contact_id: bruno };
            // Bruno's purchases of the last 365 days: 300 thirty days ago, and this one.
            client.get_contact_features(request).await.is_ok_and(|found| {
                found.get_ref().features["purchases_365d"].value == Some(feature_value::Value::IntValue(2))
            })
        }
    })
    .await;
    clock.advance(chrono::Duration::seconds(59));
    assert_eq!(ask().await, kept, "kept for a minute");
    clock.advance(chrono::Duration::seconds(1));
    assert_eq!(ask().await, kept, "the kept answer once more, while it is recomputed");
    eventually(Duration::from_secs(30), "the recomputed answer", || {
        let answer = ask();
        async move { answer.await.revenue == 2250 }
    })
    .await;
    let fresh = ask().await;
    let seconds = |answer: &RevenueConcentration| answer.computed_time.map(|at| at.seconds);
    assert!(seconds(&fresh) > seconds(&kept) && fresh.window_end == fresh.computed_time, "{fresh:?}");

    // Bad requests name their fields.
    let bad = segmentation
        .get_customer_movement(GetCustomerMovementRequest {
            currency_code: "euros".into(),
            churn_days: 5000,
            period: 9,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&bad), ["period", "currency_code", "churn_days"]);
    let bad = segmentation
        .get_revenue_concentration(GetRevenueConcentrationRequest {
            currency_code: "EUR".into(),
            core_share: 1.5,
            core_limit: 5000,
            window_days: -1,
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad), ["window_days", "core_share", "core_limit"]);
    suite.shutdown().await.unwrap();
}

fn basket_purchase(contact: &str, skus: &[&str], occurred_at: prost_types::Timestamp) -> Interaction {
    Interaction {
        product_lines: skus
            .iter()
            .map(|sku| ProductLine { sku: sku.to_string(), quantity: 1, unit_price: None })
            .collect(),
        ..purchase(contact, occurred_at, "EUR", 1000)
    }
}

/// Association rules equal the hand count of a small shop; a contact is
/// offered what it has not bought with the reason; a marketing offer waits
/// for consent; the leader recomputes the rules a day later with the
/// parameters last used.
#[tokio::test]
async fn next_best_offers_follow_co_purchases_and_consent() {
    let clock = Clock::manual(chrono::Utc::now());
    let Shop { _db, suite, mut contacts, mut interactions, mut segmentation } = open_shop(clock.clone()).await;
    let ago = |days: i64| {
        let at = clock.now() - chrono::Duration::days(days);
        prost_types::Timestamp { seconds: at.timestamp(), nanos: 0 }
    };

    // Eleven customers: 4 bought a tent and a stove, 2 a tent alone
    // (Tara, who opted in to email, and Uma, who did not), 2 a stove alone, 3 a lamp.
    let shop: [&[&str]; 11] = [
        &["TENT", "STOVE"],
        &["TENT", "STOVE"],
        &["TENT", "STOVE"],
        &["TENT", "STOVE"],
        &["TENT"],
        &["TENT"],
        &["STOVE"],
        &["STOVE"],
        &["LAMP"],
        &["LAMP"],
        &["LAMP"],
    ];
    let mut ids = Vec::new();
    for (index, skus) in shop.iter().enumerate() {
        let mut contact =
            customer(&format!("Camper{}", (b'a' + index as u8) as char), "Outdoors", "", "", index as i32 + 1);
        if index == 4 {
            contact.consents = vec![Consent {
                channel: ConsentChannel::Email as i32,
                status: ConsentStatus::OptedIn as i32,
                ..Default::default()
            }];
        }
        let created = contacts
            .create_contact(CreateContactRequest { contact: Some(contact), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        interactions
            .record_interaction(RecordInteractionRequest {
                interaction: Some(basket_purchase(&created.id, skus, ago(30))),
                contact_lookup: None,
            })
            .await
            .unwrap();
        ids.push(created.id);
    }
    let (tara, uma) = (ids[4].clone(), ids[5].clone());

    let compute = ComputeAssociationRulesRequest { min_support: 0.1, min_confidence: 0.5, ..Default::default() };
    eventually(Duration::from_secs(30), "every basket counted", || {
        let (mut client, request) = (segmentation.clone(), compute);
        async move { client.compute_association_rules(request).await.is_ok_and(|rules| rules.get_ref().baskets == 11) }
    })
    .await;
    let rules = segmentation.get_association_rules(GetAssociationRulesRequest::default()).await.unwrap().into_inner();
    assert_eq!((rules.baskets, rules.total_rules, rules.window_days, rules.min_support), (11, 2, 365, 0.1));
    // TENT → STOVE: support 4/11; confidence 4/6; STOVE in 6 of 11: lift (4/6) / (6/11).
    let tent = rules.rules.iter().find(|rule| rule.antecedent == "TENT").unwrap();
    assert_eq!((tent.consequent.as_str(), tent.antecedent_baskets, tent.both_baskets), ("STOVE", 6, 4));
    assert!((tent.support - 4.0 / 11.0).abs() < 1e-12 && (tent.confidence - 4.0 / 6.0).abs() < 1e-12);
    assert!((tent.lift - (4.0 / 6.0) / (6.0 / 11.0)).abs() < 1e-12);

    let service = |contact: &str| GetNextBestOffersRequest { contact_id: contact.into(), ..Default::default() };
    let offers = segmentation.get_next_best_offers(service(&uma)).await.unwrap().into_inner();
    let offered: Vec<(&str, &str)> =
        offers.offers.iter().map(|offer| (offer.sku.as_str(), offer.reason.as_str())).collect();
    assert_eq!(offered, [("STOVE", "bought TENT; 67% of TENT's buyers also bought STOVE, lift 1.2")]);
    let bought_both = segmentation.get_next_best_offers(service(&ids[0])).await.unwrap().into_inner();
    assert!(bought_both.offers.is_empty(), "nothing already bought: {bought_both:?}");

    // Marketing: Uma has no consent; Tara has, once the interactions role has heard.
    let marketing = |contact: &str| GetNextBestOffersRequest {
        contact_id: contact.into(),
        purpose: OfferPurpose::Marketing as i32,
        channel: Channel::Email as i32,
        ..Default::default()
    };
    let held = segmentation.get_next_best_offers(marketing(&uma)).await.unwrap().into_inner();
    assert_eq!((held.held_back_reason.as_str(), held.offers.len()), ("no_consent", 0));
    eventually(Duration::from_secs(20), "Tara's consent known", || {
        let (mut client, request) = (segmentation.clone(), marketing(&tara));
        async move { client.get_next_best_offers(request).await.is_ok_and(|offers| offers.get_ref().offers.len() == 1) }
    })
    .await;
    let no_channel = segmentation
        .get_next_best_offers(GetNextBestOffersRequest { channel: 0, ..marketing(&tara) })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&no_channel), ["channel"]);
    let bad = segmentation
        .compute_association_rules(ComputeAssociationRulesRequest { min_support: 2.0, window_days: -3, ..compute })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad), ["window_days", "min_support"]);

    let rfm = segmentation
        .compute_rfm(ComputeRfmRequest { currency_code: "EUR".into(), window_days: 90 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rfm.customers, 11);

    // A day later, with a twelfth customer, the leader recomputes both with the same parameters.
    let first = rules.computed_time.unwrap();
    let latecomer = contacts
        .create_contact(CreateContactRequest {
            contact: Some(customer("Latecomer", "Outdoors", "", "", 20)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    interactions
        .record_interaction(RecordInteractionRequest {
            interaction: Some(basket_purchase(&latecomer.id, &["LAMP", "TENT"], ago(1))),
            contact_lookup: None,
        })
        .await
        .unwrap();
    clock.advance(chrono::Duration::hours(25));
    eventually(Duration::from_secs(30), "the daily recompute", || {
        let mut client = segmentation.clone();
        async move {
            client.get_association_rules(GetAssociationRulesRequest::default()).await.is_ok_and(|rules| {
                let rules = rules.get_ref();
                rules.computed_time.as_ref().is_some_and(|at| at.seconds > first.seconds) && rules.baskets == 12
            })
        }
    })
    .await;
    let again = segmentation.get_association_rules(GetAssociationRulesRequest::default()).await.unwrap().into_inner();
    assert_eq!((again.min_support, again.min_confidence), (0.1, 0.5), "the parameters last used");
    eventually(Duration::from_secs(30), "the daily RFM", || {
        let mut client = segmentation.clone();
        async move {
            client.get_rfm_summary(GetRfmSummaryRequest {}).await.is_ok_and(|summary| summary.get_ref().customers == 12)
        }
    })
    .await;
    let rfm = segmentation.get_rfm_summary(GetRfmSummaryRequest {}).await.unwrap().into_inner();
    assert_eq!((rfm.currency_code.as_str(), rfm.window_days), ("EUR", 90), "the parameters last used");
    suite.shutdown().await.unwrap();
}

/// RFM on a hand-checked base: ten customers, two a quintile on each
/// score, named by the map; a contact who bought nothing is no customer.
#[tokio::test]
async fn rfm_scores_and_groups_on_a_hand_checked_base() {
    let Shop { _db, suite, mut contacts, mut interactions, mut segmentation } = open_shop(Clock::system()).await;
    let mut create = async |given: &str, day: i32| {
        let request =
            CreateContactRequest { contact: Some(customer(given, "Quintile", "", "", day)), ..Default::default() };
        contacts.create_contact(request).await.unwrap().into_inner().id
    };
    let mut ids = Vec::new();
    for index in 0..10 {
        ids.push(create(&format!("Rfm{}", (b'a' + index as u8) as char), index + 1).await);
    }
    let bystander = create("Bystander", 15).await;
    let dollars_only = create("Dollar", 16).await;

    let not_yet = segmentation.get_contact_rfm(GetContactRfmRequest { contact_id: ids[0].clone() }).await.unwrap_err();
    assert_eq!(not_yet.code(), Code::FailedPrecondition, "{not_yet:?}");

    // Customer i: 10 - i purchases, the latest i + 1 days ago; spends 100 × (i + 1), plus 1 a further purchase.
    for (index, contact) in ids.iter().enumerate() {
        let index = index as i64;
        let mut record = async |interaction: Interaction| {
            let request = RecordInteractionRequest { interaction: Some(interaction), contact_lookup: None };
            interactions.record_interaction(request).await.unwrap();
        };
        record(purchase(contact, days_ago(index + 1), "EUR", 100 * (index + 1))).await;
        for _ in 1..(10 - index) {
            record(purchase(contact, days_ago(100), "EUR", 1)).await;
        }
    }
    interactions
        .record_interaction(RecordInteractionRequest {
            interaction: Some(purchase(&dollars_only, days_ago(1), "USD", 5000)),
            contact_lookup: None,
        })
        .await
        .unwrap();

    // A segment of champions before any scores: empty.
    let champions = segmentation
        .create_segment(CreateSegmentRequest {
            segment: Some(Segment {
                name: "champions".into(),
                rule: r#"rfm_group == "champions" && rfm_monetary_score <= 2"#.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let compute = ComputeRfmRequest { currency_code: "EUR".into(), window_days: 0 };
    eventually(Duration::from_secs(90), "every purchase applied", || {
        let (mut client, request) = (segmentation.clone(), compute.clone());
        async move {
            client.compute_rfm(request).await.is_ok_and(|summary| {
                let summary = summary.get_ref();
                summary.customers == 10 && summary.groups.iter().map(|group| group.revenue).sum::<i64>() == 5_545
            })
        }
    })
    .await;
    let summary = segmentation.get_rfm_summary(GetRfmSummaryRequest {}).await.unwrap().into_inner();
    assert_eq!((summary.currency_code.as_str(), summary.window_days, summary.customers), ("EUR", 365, 10));
    let groups: Vec<(&str, i64)> = summary
        .groups
        .iter()
        .filter(|group| group.customers > 0)
        .map(|group| (group.group.as_str(), group.customers))
        .collect();
    assert_eq!(groups, [("champions", 2), ("loyal", 2), ("need_attention", 2), ("hibernating", 2), ("lost", 2)]);
    assert_eq!(summary.groups.len(), 11, "every group is listed, empty or not");

    let best =
        segmentation.get_contact_rfm(GetContactRfmRequest { contact_id: ids[0].clone() }).await.unwrap().into_inner();
    assert_eq!(
        (best.customer, best.recency_days, best.frequency, best.monetary, best.group.as_str()),
        (true, 1, 10, 109, "champions")
    );
    assert_eq!((best.recency_score, best.frequency_score, best.monetary_score), (5, 5, 1));
    let last =
        segmentation.get_contact_rfm(GetContactRfmRequest { contact_id: ids[9].clone() }).await.unwrap().into_inner();
    assert_eq!((last.recency_score, last.frequency_score, last.monetary_score, last.group.as_str()), (1, 1, 5, "lost"));
    for other in [&bystander, &dollars_only] {
        let none = segmentation
            .get_contact_rfm(GetContactRfmRequest { contact_id: other.clone() })
            .await
            .unwrap()
            .into_inner();
        assert!(!none.customer && none.group.is_empty() && none.recency_score == 0, "{none:?}");
    }
    let bad = segmentation
        .compute_rfm(ComputeRfmRequest { currency_code: String::new(), window_days: 4000 })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad), ["currency_code", "window_days"]);

    // The groups are features, up to date when the computation answers: the
    // segment of champions made before it holds the two.
    let request = ListSegmentMembersRequest { segment_id: champions.id.clone(), ..Default::default() };
    let members = segmentation.list_segment_members(request).await.unwrap().into_inner().members;
    let mut members: Vec<&str> = members.iter().map(|member| member.contact_id.as_str()).collect();
    members.sort_unstable();
    let mut expected = [ids[0].as_str(), ids[1].as_str()];
    expected.sort_unstable();
    assert_eq!(members, expected);
    let features = segmentation
        .get_contact_features(GetContactFeaturesRequest { contact_id: ids[9].clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(features.features["rfm_group"].value, Some(feature_value::Value::StringValue("lost".into())));

    // A merged customer is answered as its survivor, whose scores stand until the next computation.
    contacts
        .merge_contacts(MergeContactsRequest {
            survivor_id: ids[1].clone(),
            loser_ids: vec![ids[8].clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    eventually(Duration::from_secs(20), "the merge applied", || {
        let (mut client, contact_id, survivor) = (segmentation.clone(), ids[8].clone(), ids[1].clone());
        async move {
            let request = GetContactRfmRequest { contact_id };
            client.get_contact_rfm(request).await.is_ok_and(|rfm| {
                let rfm = rfm.get_ref();
                rfm.contact_id == survivor && rfm.group == "champions"
            })
        }
    })
    .await;
    let merged = segmentation.compute_rfm(compute.clone()).await.unwrap().into_inner();
    assert_eq!(merged.customers, 9, "the two are one customer now");

    // An erased customer's scores go with it.
    contacts.erase_contact(EraseContactRequest { id: ids[0].clone(), reason: "asked".into() }).await.unwrap();
    eventually(Duration::from_secs(20), "the erased customer's scores gone", || {
        let (mut client, contact_id) = (segmentation.clone(), ids[0].clone());
        async move {
            let request = GetContactRfmRequest { contact_id };
            client.get_contact_rfm(request).await.is_ok_and(|rfm| !rfm.get_ref().customer)
        }
    })
    .await;
    suite.shutdown().await.unwrap();
}

/// Lifetime value through the gateway: refused on too few customers; then
/// fitted on twelve, each customer's values equal the models fitted here
/// from the same purchases (two purchases on one day are one).
#[tokio::test]
async fn lifetime_value_is_fitted_on_the_base_and_answered_per_contact() {
    use crm_segmentation::analytics::clv;
    let clock = Clock::manual(chrono::Utc::now());
    let Shop { _db, suite, mut contacts, mut interactions, mut segmentation } = open_shop(clock.clone()).await;
    let now = clock.now();
    let fit = |currency: &str| FitLifetimeValueRequest { currency_code: currency.into(), horizon_days: 180 };

    let mut expected = Vec::new();
    for index in 0..12i64 {
        let request = CreateContactRequest {
            contact: Some(customer(
                &format!("Value{}", (b'a' + index as u8) as char),
                "Lifetime",
                "",
                "",
                index as i32 + 1,
            )),
            ..Default::default()
        };
        let contact = contacts.create_contact(request).await.unwrap().into_inner().id;
        // Purchases on 2 + index % 4 days, every 10 + index days back from 200 days ago, 1,000 + 100 × index each;
        // the first day twice.
        let mut days = Vec::new();
        for purchase_day in 0..(2 + index % 4) {
            let at = (now - chrono::Duration::days(200) + chrono::Duration::days(purchase_day * (10 + index)))
                .duration_trunc(chrono::TimeDelta::days(1))
                .unwrap()
                + chrono::Duration::hours(9);
            let times = if purchase_day == 0 { 2 } else { 1 };
            for _ in 0..times {
                let stamp = prost_types::Timestamp { seconds: at.timestamp(), nanos: 0 };
                let request = RecordInteractionRequest {
                    interaction: Some(purchase(&contact, stamp, "EUR", 1000 + 100 * index)),
                    contact_lookup: None,
                };
                interactions.record_interaction(request).await.unwrap();
            }
            days.push((at.duration_trunc(chrono::TimeDelta::days(1)).unwrap(), (1000 + 100 * index) * times));
        }
        expected.push((contact, clv::summarise(&days, now)));
    }
    let lone = expected[0].0.clone();
    interactions
        .record_interaction(RecordInteractionRequest {
            interaction: Some(purchase(&lone, days_ago(3), "USD", 500)),
            contact_lookup: None,
        })
        .await
        .unwrap();

    let too_few = segmentation.fit_lifetime_value(fit("USD")).await.unwrap_err();
    assert_eq!(too_few.code(), Code::FailedPrecondition, "{too_few:?}");
    assert!(too_few.message().contains("at least 10"), "{}", too_few.message());
    let not_yet =
        segmentation.get_contact_lifetime_value(GetContactLifetimeValueRequest { contact_id: lone.clone() }).await;
    assert_eq!(not_yet.unwrap_err().code(), Code::FailedPrecondition);

    // The same fit, here, from the purchases as recorded.
    let histories: Vec<clv::History> = expected.iter().map(|(_, summary)| summary.history).collect();
    let spends: Vec<(f64, f64)> =
        expected.iter().map(|(_, summary)| (summary.history.x, summary.repeat_mean)).collect();
    let (purchases, log_likelihood) = clv::fit_bgnbd(&histories).unwrap();
    let (spend, _) = clv::fit_gamma_gamma(&spends).unwrap();
    // Fitted again until every purchase is applied: then the fit is the one made here.
    // A fit runs at nice 10 (`parallel::background`): beside the whole suite
    // and a build, the 30 s this waited once ran out.
    eventually(Duration::from_secs(90), "every purchase applied", || {
        let mut client = segmentation.clone();
        async move {
            client.fit_lifetime_value(fit("EUR")).await.is_ok_and(|model| {
                (model.get_ref().bgnbd_log_likelihood - log_likelihood).abs() < 1e-6 * log_likelihood.abs()
            })
        }
    })
    .await;
    let model = segmentation.get_lifetime_value_model(GetLifetimeValueModelRequest {}).await.unwrap().into_inner();
    assert_eq!((model.currency_code.as_str(), model.horizon_days, model.customers), ("EUR", 180, 12));
    assert_eq!(model.repeat_customers, 12);
    assert!(((model.r - purchases.r) / purchases.r).abs() < 1e-3 && ((model.p - spend.p) / spend.p).abs() < 1e-3);
    for (contact, summary) in &expected {
        let value = segmentation
            .get_contact_lifetime_value(GetContactLifetimeValueRequest { contact_id: contact.clone() })
            .await
            .unwrap()
            .into_inner();
        assert!(value.customer);
        assert_eq!((value.historic_value, value.repeat_purchases), (summary.total, summary.history.x as i64));
        let expected_purchases = purchases.expected_purchases(&summary.history, 180.0);
        assert!(
            (value.expected_purchases - expected_purchases).abs() < 1e-3 * expected_purchases.max(1.0),
            "{value:?}"
        );
        assert!((0.0..=1.0).contains(&value.probability_alive));
        assert_eq!(value.predicted_value, (value.expected_purchases * value.expected_spend).round() as i64);
    }
    // The predicted value is a feature.
    let (first, _) = &expected[0];
    let value = segmentation
        .get_contact_lifetime_value(GetContactLifetimeValueRequest { contact_id: first.clone() })
        .await
        .unwrap()
        .into_inner();
    eventually(Duration::from_secs(20), "the predicted value a feature", || {
        let (mut client, contact_id) = (segmentation.clone(), first.clone());
        async move {
            client.get_contact_features(GetContactFeaturesRequest { contact_id }).await.is_ok_and(|features| {
                features.get_ref().features["predicted_value"].value
                    == Some(feature_value::Value::IntValue(value.predicted_value))
            })
        }
    })
    .await;
    let stranger = contacts
        .create_contact(CreateContactRequest {
            contact: Some(customer("Nobody", "Lifetime", "", "", 25)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let none = segmentation
        .get_contact_lifetime_value(GetContactLifetimeValueRequest { contact_id: stranger.id })
        .await
        .unwrap()
        .into_inner();
    assert!(!none.customer && none.predicted_value == 0);
    suite.shutdown().await.unwrap();
}

/// A whole-base computation gives way to a bulk ingest: asked while an
/// ingest stores batch after batch, it has not answered a second later,
/// and answers once the stream has ended. (The process's bulk mark is shared by the tests running
/// beside this one: their computations wait for this stream too, at most
/// for its length.)
#[tokio::test]
async fn a_computation_gives_way_to_an_ingest_while_it_runs() {
    let Shop { _db, suite, mut contacts, mut interactions, segmentation } = open_shop(Clock::system()).await;
    let created = contacts
        .create_contact(CreateContactRequest {
            contact: Some(customer("Ingrid", "Stream", "", "", 3)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // The ingest: one purchase a batch, each sent once the last is acknowledged, until told to end.
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    let mut acks = interactions
        .ingest_interactions(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .unwrap()
        .into_inner();
    let batch = |n: usize| IngestInteractionsRequest {
        batch_id: format!("gives-way-{n}"),
        interactions: vec![basket_purchase(&created.id, &["KAYAK", "PADDLE"], days_ago(2))],
    };
    sender.send(batch(0)).await.unwrap();
    acks.message().await.unwrap().unwrap();

    let computation = tokio::spawn({
        let mut client = segmentation.clone();
        async move { client.compute_association_rules(ComputeAssociationRulesRequest::default()).await }
    });
    let started = std::time::Instant::now();
    let mut sent = 1;
    while started.elapsed() < Duration::from_secs(1) {
        sender.send(batch(sent)).await.unwrap();
        acks.message().await.unwrap().unwrap();
        sent += 1;
    }
    assert!(!computation.is_finished(), "the computation ran beside the ingest ({sent} batches)");
    drop(sender);
    while acks.message().await.unwrap().is_some() {}

    let answer =
        tokio::time::timeout(Duration::from_secs(60), computation).await.expect("answered once the stream ended");
    answer.unwrap().unwrap();
    suite.shutdown().await.unwrap();
}
