//! SLOs over business indicators, through the gateway: a bad condition is
//! refused with the field and the position in the rule; the interactions
//! feed is counted into the indicator; the status shows the budget, each
//! alert's burn, and which alert fires as the error rate climbs.

use std::time::Duration;

use chrono::Utc;
use crm_platform::{Role, clock::Clock};
use crm_proto::{
    alerting::v1::{
        BusinessIndicator, CreateSloRequest, GetSloStatusRequest, ListSlosRequest, SloStatus,
        alerting_service_client::AlertingServiceClient, slo,
    },
    interactions::v1::{Channel, Interaction},
};
use crm_testkit::{Authed, TestDb, TestSuite};
use tonic_types::StatusExt;

use super::{ingest, payer, payment, payments_slo};
use crate::{contacts::violated_fields, support::eventually};

#[tokio::test]
async fn a_bad_slo_is_refused_field_by_field_with_the_position_in_the_rule() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut alerting = suite.alerting().await.unwrap();

    let mut bad = payments_slo("");
    bad.objective = 1.0;
    bad.window = Some(prost_types::Duration { seconds: 3600, nanos: 0 });
    bad.indicator = Some(slo::Indicator::Business(BusinessIndicator {
        valid: "kind == \"payment\" &&\n  latency_ms < 3".into(),
        good: "outcome ==".into(),
    }));
    let refused = alerting.create_slo(CreateSloRequest { slo: Some(bad) }).await.unwrap_err();
    let mut fields = violated_fields(&refused);
    fields.sort();
    assert_eq!(fields, ["slo.business.good", "slo.business.valid", "slo.name", "slo.objective", "slo.window"]);
    let details = refused.check_error_details().unwrap();
    let violations = details.bad_request().unwrap().field_violations.clone();
    let valid = violations.iter().find(|violation| violation.field == "slo.business.valid").unwrap();
    assert!(valid.description.contains("line 2"), "{}", valid.description);
    assert!(valid.description.contains("latency_ms"), "{}", valid.description);

    let made = alerting.create_slo(CreateSloRequest { slo: Some(payments_slo("Web payments")) }).await.unwrap();
    let taken = alerting.create_slo(CreateSloRequest { slo: Some(payments_slo("web PAYMENTS")) }).await.unwrap_err();
    assert_eq!(taken.code(), tonic::Code::AlreadyExists, "{taken:?}");
    let listed = alerting.list_slos(ListSlosRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.slos, [made.into_inner()]);
}

#[tokio::test]
async fn the_status_follows_the_feed_and_the_alerts_fire_by_burn_rate() {
    let test_db = TestDb::create().await.unwrap();
    let clock = Clock::manual(Utc::now());
    let suite = TestSuite::start_with_clock(&test_db, &Role::ALL, &[], clock.clone()).await.unwrap();
    let mut interactions = suite.interactions().await.unwrap();
    let mut alerting = suite.alerting().await.unwrap();

    let slo = alerting.create_slo(CreateSloRequest { slo: Some(payments_slo("Web payments")) }).await.unwrap();
    let slo = slo.into_inner();
    // At 90% the workbook's 14.4 and 6 cannot be reached (the rate tops out at 10):
    // both pages are derived at about 5 over longer windows; the ticket keeps 1.
    let alerts: Vec<(String, bool, f64)> = slo
        .alerts
        .iter()
        .map(|alert| (alert.severity.clone(), alert.derived, (alert.burn_rate * 10.0).round() / 10.0))
        .collect();
    assert_eq!(alerts, [("page".into(), true, 4.9), ("page".into(), true, 5.0), ("ticket".into(), false, 1.0)]);

    let payer = payer(&suite).await;
    let payment = |n: usize, channel: Channel, good: bool| {
        payment(&payer, n, clock.now() - chrono::Duration::seconds(1 + (n % 90) as i64), channel, good)
    };
    // 100 web payments, 30 slow (a burn rate of 3), and 50 in the shop that do not count.
    let first: Vec<Interaction> = (0..150)
        .map(|n| match n {
            0..70 => payment(n, Channel::Web, true),
            70..100 => payment(n, Channel::Web, false),
            _ => payment(n, Channel::Store, false),
        })
        .collect();
    ingest(&mut interactions, first, "b1").await;

    let status = wait_for_valid(&alerting, &slo.id, 100).await;
    assert_eq!(status.good_events, 70);
    assert!((status.sli.unwrap() - 0.7).abs() < 1e-9);
    // 30% bad against a 10% budget: three times the budget spent already.
    assert!((status.budget_left - -2.0).abs() < 1e-9, "{status:?}");
    let firing: Vec<&str> =
        status.alerts.iter().filter(|alert| alert.firing).map(|alert| alert.severity.as_str()).collect();
    assert_eq!(firing, ["ticket"], "a burn of 3 opens a ticket and pages no one: {status:?}");
    assert!(status.alerts.iter().all(|alert| (alert.long_burn_rate.unwrap() - 3.0).abs() < 1e-9));

    // 100 more, all failing: 130 bad of 200 is a burn of 6.5, over both pages' thresholds.
    let second: Vec<Interaction> = (150..250).map(|n| payment(n, Channel::Web, false)).collect();
    ingest(&mut interactions, second, "b2").await;
    let status = wait_for_valid(&alerting, &slo.id, 200).await;
    let firing: Vec<(&str, bool)> = status.alerts.iter().map(|alert| (alert.severity.as_str(), alert.firing)).collect();
    assert_eq!(firing, [("page", true), ("page", true), ("ticket", false)], "a page suppresses the ticket");

    // A day later, with nothing new, both pages' windows hold no events: they stop.
    clock.advance(chrono::Duration::days(1));
    let status = alerting.get_slo_status(GetSloStatusRequest { id: slo.id.clone() }).await.unwrap().into_inner();
    assert_eq!(status.valid_events, 200, "still in the week");
    let pages: Vec<bool> = status.alerts.iter().take(2).map(|alert| alert.firing).collect();
    assert_eq!(pages, [false, false], "{status:?}");
    assert!(status.alerts[0].long_burn_rate.is_none());
}

async fn wait_for_valid(alerting: &AlertingServiceClient<Authed>, slo: &str, valid: i64) -> SloStatus {
    let found = std::sync::Arc::new(std::sync::Mutex::new(None));
    eventually(Duration::from_secs(30), "the payments counted", || {
        let mut client = alerting.clone();
        let (id, found) = (slo.to_string(), found.clone());
        async move {
            let status = client.get_slo_status(GetSloStatusRequest { id }).await.unwrap().into_inner();
            let done = status.valid_events == valid;
            *found.lock().unwrap() = Some(status);
            done
        }
    })
    .await;
    found.lock().unwrap().take().unwrap()
}
