//! A real Alertmanager receives the suite's alerts: an SLO burning fast
//! pages (one alert per window pair, the ticket suppressed), the alert
//! arrives with its labels and an `endsAt` ahead, a silence made in
//! Alertmanager suppresses it there, acknowledging it is recorded, and
//! deleting the SLO resolves its alerts here and there. The SLO's figures
//! are on `/metrics`. A rule's alert reaches Alertmanager when it commits,
//! not at the next evaluation.

use std::time::Duration;

use chrono::Utc;
use crm_platform::Role;
use crm_proto::{
    alerting::v1::{
        AcknowledgeAlertRequest, AlertFired, AlertRule, AlertState, CreateAlertRuleRequest, CreateSloRequest,
        DeleteSloRequest, ListAlertsRequest, ResolveAlertRequest,
    },
    events::v1::ListEventsRequest,
    interactions::v1::{Channel, RecordInteractionRequest},
};
use crm_testkit::{Alertmanager, TestDb, TestSuite};
use prost::{Message, Name};
use serde_json::Value;

use super::{DAY, ingest, payer, payment, payments_slo};
use crate::{gateway::scrape, support::eventually};

/// The alerts Alertmanager holds for SLO `name`.
async fn held(alertmanager: &Alertmanager, name: &str) -> Vec<Value> {
    let alerts = alertmanager.alerts().await.unwrap();
    alerts.into_iter().filter(|alert| alert["labels"]["slo"] == name).collect()
}

#[tokio::test]
async fn a_burning_slo_pages_through_a_real_alertmanager_and_resolves_when_deleted() {
    let alertmanager = Alertmanager::start().await.unwrap();
    let test_db = TestDb::create().await.unwrap();
    let vars = [
        ("CRM_ALERTING_EVALUATION_INTERVAL".to_string(), "200ms".to_string()),
        ("CRM_ALERTMANAGER_URLS".to_string(), alertmanager.url.clone()),
        ("CRM_ALERTMANAGER_RESEND_INTERVAL".to_string(), "1m".to_string()),
    ];
    let clock = super::mid_minute_clock();
    let suite = TestSuite::start_with_clock(&test_db, &Role::ALL, &vars, clock.clone()).await.unwrap();
    let mut alerting = suite.alerting().await.unwrap();
    let mut interactions = suite.interactions().await.unwrap();

    // A one-day window: the pages watch 6 and 15 minutes, derived at a burn of 5 (the largest is 10 at 90%).
    let mut slo = payments_slo("Checkout");
    slo.window = Some(prost_types::Duration { seconds: DAY as i64, nanos: 0 });
    let slo = alerting.create_slo(CreateSloRequest { slo: Some(slo) }).await.unwrap().into_inner();
    let windows: Vec<String> = slo
        .alerts
        .iter()
        .map(|alert| {
            format!("{}/{}", alert.long_window.unwrap().seconds / 60, alert.short_window.unwrap().seconds / 60)
        })
        .collect();
    assert_eq!(windows, ["6/1", "15/2", "144/12"], "minutes");

    // Every web payment fails: a burn rate of 10.
    let contact = payer(&suite).await;
    let failing = (0..40).map(|n| payment(&contact, n, clock.now(), Channel::Web, false)).collect();
    ingest(&mut interactions, failing, "outage").await;

    eventually(Duration::from_secs(30), "both pages in Alertmanager", || async {
        held(&alertmanager, "Checkout").await.len() == 2
    })
    .await;
    let mut pages = held(&alertmanager, "Checkout").await;
    pages.sort_by_key(|alert| alert["labels"]["window"].as_str().unwrap_or_default().len());
    for page in &pages {
        assert_eq!(page["labels"]["alertname"], "SloErrorBudgetBurn");
        assert_eq!(page["labels"]["severity"], "page", "a page suppresses the ticket: {page}");
        assert_eq!(page["labels"]["slo_id"], slo.id.as_str());
        assert_eq!(page["labels"]["owner"], "billing-team");
        assert_eq!(page["status"]["state"], "active");
        assert_eq!(page["annotations"]["burn_rate_long"], "10.00");
        // Held ahead (four resends), so Alertmanager resolves it by itself if the suite dies.
        let ends: chrono::DateTime<Utc> = page["endsAt"].as_str().unwrap().parse().unwrap();
        assert!(ends > Utc::now() + chrono::Duration::minutes(3), "{page}");
    }
    let labels: Vec<&str> = pages.iter().map(|page| page["labels"]["window"].as_str().unwrap()).collect();
    assert_eq!(labels, ["6m/1m", "15m/2m"]);

    // Here: two firing alerts, each with its AlertFired event.
    let firing = alerting
        .list_alerts(ListAlertsRequest { state: AlertState::Firing as i32, ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .alerts;
    assert_eq!(firing.len(), 2);
    let events = alerting.list_events(ListEventsRequest::default()).await.unwrap().into_inner().events;
    let fired: Vec<String> = events
        .iter()
        .filter(|event| event.r#type == AlertFired::full_name())
        .map(|event| AlertFired::decode(event.payload.as_ref().unwrap().value.as_slice()).unwrap().alert.unwrap().id)
        .collect();
    assert_eq!(fired.len(), 2, "one event per alert, not one per evaluation");

    // The figures are on /metrics.
    let metrics = scrape(suite.metrics_address().unwrap()).await;
    let series = |prefix: &str| -> f64 {
        let line =
            metrics.lines().find(|line| line.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix}: {metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!((series(r#"crm_slo_burn_rate{slo="Checkout",window="6m","#) - 10.0).abs() < 1e-6);
    assert_eq!(series(r#"crm_slo_alert_firing{severity="page",slo="Checkout",window="6m/1m","#), 1.0);
    assert_eq!(series(r#"crm_slo_alert_firing{severity="ticket",slo="Checkout",window="144m/12m","#), 0.0);
    assert!((series(r#"crm_slo_error_budget_remaining{slo="Checkout","#) - -9.0).abs() < 1e-6);

    // A silence made in Alertmanager suppresses the short page there.
    alertmanager.silence(&[("slo", "Checkout"), ("window", "6m/1m")], "known outage").await.unwrap();
    eventually(Duration::from_secs(10), "the page silenced in Alertmanager", || async {
        held(&alertmanager, "Checkout")
            .await
            .iter()
            .any(|alert| alert["labels"]["window"] == "6m/1m" && alert["status"]["state"] == "suppressed")
    })
    .await;

    // Someone is on it; an SLO's alert cannot be resolved by hand.
    let page = &firing[0];
    let acknowledged = alerting
        .acknowledge_alert(AcknowledgeAlertRequest { id: page.id.clone(), note: "looking".into() })
        .await
        .unwrap()
        .into_inner();
    let acknowledgement = acknowledged.acknowledgement.unwrap();
    assert_eq!((acknowledgement.by.as_str(), acknowledgement.note.as_str()), ("bootstrap", "looking"));
    let refused =
        alerting.resolve_alert(ResolveAlertRequest { id: page.id.clone(), note: String::new() }).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");

    // Deleting the SLO resolves its alerts, here and in Alertmanager.
    alerting.delete_slo(DeleteSloRequest { id: slo.id.clone() }).await.unwrap();
    let resolved = alerting
        .list_alerts(ListAlertsRequest { state: AlertState::Resolved as i32, ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .alerts;
    assert_eq!(resolved.len(), 2);
    assert!(resolved.iter().all(|alert| alert.ends_at.is_some()));
    eventually(Duration::from_secs(30), "the pages resolved in Alertmanager", || async {
        held(&alertmanager, "Checkout").await.is_empty()
    })
    .await;
    // Alertmanager hears of the resolution when it commits; the series go at the next evaluation.
    eventually(Duration::from_secs(10), "a deleted SLO's series go", || async {
        !scrape(suite.metrics_address().unwrap()).await.contains(r#"slo="Checkout""#)
    })
    .await;
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_rules_alert_reaches_alertmanager_when_it_commits_not_at_the_next_evaluation() {
    let alertmanager = Alertmanager::start().await.unwrap();
    let test_db = TestDb::create().await.unwrap();
    // The evaluation (and the resend) would not come again within the test.
    let vars = [
        ("CRM_ALERTING_EVALUATION_INTERVAL".to_string(), "1h".to_string()),
        ("CRM_ALERTMANAGER_URLS".to_string(), alertmanager.url.clone()),
        ("CRM_ALERTMANAGER_RESEND_INTERVAL".to_string(), "1h".to_string()),
    ];
    let suite = TestSuite::start_roles(&test_db, &Role::ALL, &vars).await.unwrap();
    let mut alerting = suite.alerting().await.unwrap();
    let rule = AlertRule {
        name: "SlowWebPayment".into(),
        owner: "billing".into(),
        event_types: vec!["crm.interactions.v1.InteractionRecorded".into()],
        condition: r#"event.interaction.kind == "payment" && event.interaction.duration_ms > 180000"#.into(),
        ..Default::default()
    };
    alerting.create_alert_rule(CreateAlertRuleRequest { rule: Some(rule) }).await.unwrap();
    let contact = payer(&suite).await;
    let mut interactions = suite.interactions().await.unwrap();
    for (n, good) in [(0, true), (1, false)] {
        let request = RecordInteractionRequest {
            interaction: Some(payment(&contact, n, Utc::now(), Channel::Web, good)),
            ..Default::default()
        };
        interactions.record_interaction(request).await.unwrap();
    }
    eventually(Duration::from_secs(20), "the rule's alert in Alertmanager", || async {
        let alerts = alertmanager.alerts().await.unwrap();
        alerts.iter().any(|alert| {
            alert["labels"]["alertname"] == "SlowWebPayment" && alert["labels"]["contact_id"] == contact.as_str()
        })
    })
    .await;
    let held = alertmanager.alerts().await.unwrap();
    assert_eq!(held.iter().filter(|alert| alert["labels"]["alertname"] == "SlowWebPayment").count(), 1, "{held:?}");
    suite.shutdown().await.unwrap();
}
