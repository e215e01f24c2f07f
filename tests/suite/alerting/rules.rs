//! Rules on customer events, end to end through the gateway, a real
//! Alertmanager watching: the issue's four examples fire for the right
//! customers and only them, with what their annotations quote and no
//! personal data; a rule reading features sees the event that changed them;
//! a bad rule is refused where it is wrong; an SRE cannot quote customer data.

use std::time::Duration;

use chrono::Datelike;
use crm_platform::Role;
use crm_proto::{
    alerting::v1::{
        AlertRule, AlertState, CreateAlertRuleRequest, ListAlertsRequest, ListEventTypesRequest, ResolveAlertRequest,
        alerting_service_client::AlertingServiceClient,
    },
    common::v1::{Date, Money},
    contacts::v1::CreateContactRequest,
    interactions::v1::{Channel, Interaction, Invoice, Kind, RecordInteractionRequest},
    segmentation::v1::{
        CreateScoreModelRequest, CreateSegmentRequest, GetServiceTierRequest, ScoreModel, Segment, Tier,
        get_service_tier_request::Contact,
    },
};
use crm_testkit::{Alertmanager, Authed, TestDb, TestSuite};

use crate::{
    access::create_key,
    contacts::{person, violated_fields},
    support::eventually,
};

fn rule(name: &str, event_type: &str, condition: &str) -> AlertRule {
    AlertRule {
        name: name.into(),
        owner: "customer-care".into(),
        event_types: vec![format!("crm.{event_type}")],
        condition: condition.into(),
        ..Default::default()
    }
}

async fn create(alerting: &mut AlertingServiceClient<Authed>, rule: AlertRule) -> String {
    alerting.create_alert_rule(CreateAlertRuleRequest { rule: Some(rule) }).await.unwrap().into_inner().id
}

fn interaction(contact: &str, kind: Kind, external_id: &str, days_ago: i64) -> Interaction {
    Interaction {
        contact_id: contact.into(),
        channel: Channel::Phone as i32,
        kind: kind as i32,
        occurred_at: Some(crm_platform::timestamp::to_proto(chrono::Utc::now() - chrono::Duration::days(days_ago))),
        source: "care".into(),
        external_id: external_id.into(),
        ..Default::default()
    }
}

async fn record(suite: &TestSuite, interaction: Interaction) {
    let mut interactions = suite.interactions().await.unwrap();
    let request = RecordInteractionRequest { interaction: Some(interaction), contact_lookup: None };
    interactions.record_interaction(request).await.unwrap();
}

/// The alerts of rule `id`, firing or not.
async fn alerts_of(alerting: &AlertingServiceClient<Authed>, id: &str) -> Vec<crm_proto::alerting::v1::Alert> {
    let request = ListAlertsRequest { source_id: id.into(), ..Default::default() };
    alerting.clone().list_alerts(request).await.unwrap().into_inner().alerts
}

#[tokio::test]
async fn customer_event_rules_fire_for_the_right_customers_with_what_they_may_quote() {
    let alertmanager = Alertmanager::start().await.unwrap();
    let test_db = TestDb::create().await.unwrap();
    let vars = [
        ("CRM_ALERTING_EVALUATION_INTERVAL".to_string(), "200ms".to_string()),
        ("CRM_ALERTMANAGER_URLS".to_string(), alertmanager.url.clone()),
        ("CRM_OVERDUE_CHECK_INTERVAL".to_string(), "200ms".to_string()),
    ];
    let suite = TestSuite::start_roles(&test_db, &Role::ALL, &vars).await.unwrap();
    let mut alerting = suite.alerting().await.unwrap();
    let mut segmentation = suite.segmentation().await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();

    let types = alerting.list_event_types(ListEventTypesRequest {}).await.unwrap().into_inner().event_types;
    let overdue = types.iter().find(|event| event.name == "crm.interactions.v1.InvoiceOverdue").unwrap();
    assert!(overdue.fields.contains(&"invoice.invoice.number".to_string()), "{:?}", overdue.fields);

    // A bad rule is refused where it is wrong.
    let mut bad = rule("bad", "interactions.v1.InvoiceOverdue", "tier == \"gold\" &&\n  event.invoice.numbr == \"1\"");
    bad.event_types.push("crm.interactions.v1.InvoiceLost".into());
    bad.severity = "urgent".into();
    let refused = alerting.create_alert_rule(CreateAlertRuleRequest { rule: Some(bad) }).await.unwrap_err();
    let mut fields = violated_fields(&refused);
    fields.sort();
    assert_eq!(fields, ["rule.condition", "rule.event_types[1]", "rule.severity"], "{refused:?}");
    let misspelt = rule("typo", "interactions.v1.InteractionRecorded", "features.complaint_90d >= 3");
    let refused = alerting.create_alert_rule(CreateAlertRuleRequest { rule: Some(misspelt) }).await.unwrap_err();
    assert!(refused.message().contains("line 1, column 1: unknown feature `complaint_90d`"), "{refused:?}");

    // An SRE may write rules, but not quote what an SRE may not read.
    let (_, sre_secret) = create_key(&suite, &["sre"]).await;
    let mut as_sre = AlertingServiceClient::new(suite.with_key(Role::Gateway, &sre_secret).await.unwrap());
    let mut quoting = rule("quoting", "interactions.v1.InvoiceOverdue", "true");
    quoting.annotations.insert("summary".into(), "invoice {{ event.invoice.invoice.number }}".into());
    let denied = as_sre.create_alert_rule(CreateAlertRuleRequest { rule: Some(quoting.clone()) }).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("interactions.read"), "{denied:?}");
    quoting.annotations.insert("summary".into(), "contact {{ contact_id }}".into());
    as_sre.create_alert_rule(CreateAlertRuleRequest { rule: Some(quoting) }).await.unwrap();

    // Tiers: standard from 0, gold from 20, platinum from 40 points.
    let model = ScoreModel {
        name: "value".into(),
        contributions: vec![crm_proto::segmentation::v1::Contribution {
            feature: "revenue_365d".into(),
            key: "EUR".into(),
            transform: crm_proto::segmentation::v1::Transform::Log as i32,
            weight: 10.0,
            cap: 100.0,
            ..Default::default()
        }],
        tiers: vec![
            Tier { name: "standard".into(), min_score: 0.0, queue_priority: 1 },
            Tier { name: "gold".into(), min_score: 20.0, queue_priority: 5 },
            Tier { name: "platinum".into(), min_score: 40.0, queue_priority: 9 },
        ],
        is_default: true,
        ..Default::default()
    };
    segmentation.create_score_model(CreateScoreModelRequest { score_model: Some(model) }).await.unwrap();
    let untroubled = Segment { name: "Untroubled".into(), rule: "complaints_90d == 0".into(), ..Default::default() };
    let untroubled =
        segmentation.create_segment(CreateSegmentRequest { segment: Some(untroubled) }).await.unwrap().into_inner();

    // The issue's four examples.
    let mut vip_overdue =
        rule("VIP invoice overdue", "interactions.v1.InvoiceOverdue", r#"tier in ["gold", "platinum"]"#);
    vip_overdue.severity = "page".into();
    vip_overdue.labels.insert("team".into(), "collections".into());
    vip_overdue.annotations.insert(
        "summary".into(),
        "Invoice {{ event.invoice.invoice.number }} of a {{ tier }} customer is overdue".into(),
    );
    vip_overdue.annotations.insert("action".into(), "Alert the account owner and hold collections".into());
    let vip_overdue = create(&mut alerting, vip_overdue).await;
    let platinum_problem = create(
        &mut alerting,
        rule("Platinum recurring problem", "interactions.v1.RecurringProblemDetected", r#"tier == "platinum""#),
    )
    .await;
    let left_untroubled = create(
        &mut alerting,
        rule(
            "Left the untroubled",
            "segmentation.v1.SegmentExited",
            &format!("event.segment_id == {:?}", untroubled.id),
        ),
    )
    .await;
    let mut third_complaint = rule(
        "Third complaint",
        "interactions.v1.InteractionRecorded",
        r#"event.interaction.kind == "complaint" && features.complaints_90d >= 3"#,
    );
    third_complaint.annotations.insert("complaints".into(), "{{ features.complaints_90d }}".into());
    let third_complaint = create(&mut alerting, third_complaint).await;

    // Priya spends; Sam does not.
    let new_contact = |given: &str, family: &str, email: &str| CreateContactRequest {
        contact: Some(person(given, family, email, "")),
        ..Default::default()
    };
    let priya = contacts.create_contact(new_contact("Priya", "Okonkwo", "priya@example.com")).await.unwrap();
    let priya = priya.into_inner().id;
    let sam =
        contacts.create_contact(new_contact("Sam", "Lindqvist", "sam@example.com")).await.unwrap().into_inner().id;
    let purchase = Interaction {
        amount: Some(Money { currency_code: "EUR".into(), minor_units: 2_500_000 }),
        channel: Channel::Web as i32,
        ..interaction(&priya, Kind::Purchase, "BIG-1", 2)
    };
    record(&suite, purchase).await;
    eventually(Duration::from_secs(20), "Priya platinum", || {
        let mut client = segmentation.clone();
        let request =
            GetServiceTierRequest { contact: Some(Contact::ContactId(priya.clone())), model_id: String::new() };
        async move { client.get_service_tier(request).await.is_ok_and(|tier| tier.get_ref().tier == "platinum") }
    })
    .await;

    // Both have an invoice ten days overdue.
    let due = (chrono::Utc::now() - chrono::Duration::days(10)).date_naive();
    let invoice = |contact: &str, number: &str| Interaction {
        channel: Channel::Billing as i32,
        amount: Some(Money { currency_code: "EUR".into(), minor_units: 12_000 }),
        invoice: Some(Invoice {
            number: number.into(),
            due_date: Some(Date { year: due.year(), month: due.month() as i32, day: due.day() as i32 }),
            ..Default::default()
        }),
        ..interaction(contact, Kind::Invoice, number, 40)
    };
    record(&suite, invoice(&priya, "INV-P")).await;
    record(&suite, invoice(&sam, "INV-S")).await;
    // Priya complains three times about the same thing; Sam twice.
    for n in 0..3 {
        let complaint = Interaction {
            pain_points: vec!["late delivery".into()],
            ..interaction(&priya, Kind::Complaint, &format!("P-C{n}"), 1)
        };
        record(&suite, complaint).await;
    }
    for n in 0..2 {
        record(&suite, interaction(&sam, Kind::Complaint, &format!("S-C{n}"), 1)).await;
    }

    for (rule, what) in [
        (&vip_overdue, "the VIP overdue alert"),
        (&platinum_problem, "the platinum problem alert"),
        (&third_complaint, "the third-complaint alert"),
    ] {
        eventually(Duration::from_secs(30), what, || async { !alerts_of(&alerting, rule).await.is_empty() }).await;
    }
    // Both left the untroubled segment: one alert each.
    eventually(Duration::from_secs(30), "both exits alerted", || async {
        alerts_of(&alerting, &left_untroubled).await.len() == 2
    })
    .await;

    let overdue_alerts = alerts_of(&alerting, &vip_overdue).await;
    assert_eq!(overdue_alerts.len(), 1, "Sam is standard: only Priya's invoice alerts");
    let alert = &overdue_alerts[0];
    assert_eq!(alert.labels["contact_id"], priya);
    assert_eq!(alert.labels["severity"], "page");
    assert_eq!(alert.labels["team"], "collections");
    assert_eq!(alert.annotations["summary"], "Invoice INV-P of a platinum customer is overdue");
    assert_eq!(alert.annotations["action"], "Alert the account owner and hold collections");
    let problems = alerts_of(&alerting, &platinum_problem).await;
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].labels["contact_id"], priya);
    let complaints = alerts_of(&alerting, &third_complaint).await;
    assert_eq!(complaints.len(), 1, "fired once, at the third");
    assert_eq!(complaints[0].annotations["complaints"], "3", "the features included the event that fired it");

    // Alertmanager has it, with the contact's id and nothing personal.
    eventually(Duration::from_secs(20), "the VIP alert in Alertmanager", || async {
        alertmanager.alerts().await.unwrap().iter().any(|held| held["labels"]["alertname"] == "VIP invoice overdue")
    })
    .await;
    let held = serde_json::to_string(&alertmanager.alerts().await.unwrap()).unwrap();
    for personal in ["Priya", "Okonkwo", "priya@example.com", "Lindqvist", "sam@example.com"] {
        assert!(!held.contains(personal), "{personal} in what Alertmanager holds: {held}");
    }

    // A customer-event alert is resolved by a person, here and there.
    let resolved = alerting
        .resolve_alert(ResolveAlertRequest { id: alert.id.clone(), note: "owner called; collections held".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolved.state(), AlertState::Resolved);
    assert_eq!(resolved.resolved_by, "bootstrap");
    assert_eq!(resolved.annotations["resolution"], "owner called; collections held");
    eventually(Duration::from_secs(20), "the VIP alert resolved in Alertmanager", || async {
        !alertmanager.alerts().await.unwrap().iter().any(|held| held["labels"]["alertname"] == "VIP invoice overdue")
    })
    .await;
    suite.shutdown().await.unwrap();
}
