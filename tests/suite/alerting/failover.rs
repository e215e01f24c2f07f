//! Two alerting replicas on one database, and their database sessions
//! killed again and again while an outage is evaluated and its pages are
//! delivered (the leader's lock session, its evaluation transaction, the
//! webhook sender's, the consumers'): whichever replica leads next carries
//! on from the schema, so each page fires once, has one event, one
//! delivery per webhook, and reaches the receiver; nothing is lost or
//! repeated.

use std::{collections::HashSet, sync::Arc, time::Duration};

use crm_platform::Role;
use crm_proto::{
    alerting::v1::{AlertFired, AlertState, CreateSloRequest, ListAlertsRequest, ListWebhookDeliveriesRequest},
    events::v1::ListEventsRequest,
    interactions::v1::Channel,
};
use crm_testkit::{TestDb, TestSuite};
use prost::Name;

use super::{
    ingest, payer, payment, payments_slo,
    webhooks::{Shared, deliveries, equal, receiver, register, seen},
};
use crate::support::eventually;

#[tokio::test]
async fn killing_the_alerting_sessions_mid_evaluation_neither_loses_nor_repeats_a_notification() {
    let state: Shared = Arc::default();
    let base = receiver(&state).await;
    let test_db = TestDb::create().await.unwrap();
    let vars: Vec<(String, String)> = [
        ("CRM_ALERTING_EVALUATION_INTERVAL", "100ms"),
        ("CRM_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8"),
        ("CRM_WEBHOOK_RETRY_MIN", "50ms"),
        ("CRM_WEBHOOK_RETRY_MAX", "200ms"),
        ("CRM_WEBHOOK_MAX_ATTEMPTS", "20"),
    ]
    .iter()
    .map(|(name, value)| (name.to_string(), value.to_string()))
    .collect();
    let clock = super::mid_minute_clock();
    let first = TestSuite::start_with_clock(&test_db, &Role::ALL, &vars, clock.clone()).await.unwrap();
    let mut second_vars = vars.clone();
    second_vars.extend(first.upstream_vars());
    let second = TestSuite::start_with_clock(&test_db, &[Role::Alerting], &second_vars, clock.clone()).await.unwrap();
    let mut alerting = first.alerting().await.unwrap();
    let mut interactions = first.interactions().await.unwrap();

    let pages = register(&mut alerting, &state, &base, "pages", vec![equal("severity", "page")]).await;
    let mut slo = payments_slo("Checkout");
    slo.window = Some(prost_types::Duration { seconds: super::DAY as i64, nanos: 0 });
    let slo = alerting.create_slo(CreateSloRequest { slo: Some(slo) }).await.unwrap().into_inner();
    let contact = payer(&first).await;

    // Kill every session of the alerting role, both replicas, every 150 ms.
    let killer_pool = sqlx::PgPool::connect(&test_db.url).await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let killer = {
        let (pool, stop) = (killer_pool.clone(), stop.clone());
        tokio::spawn(async move {
            let mut killed = 0u64;
            while !stop.is_cancelled() {
                let ended: Vec<bool> = sqlx::query_scalar(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                     WHERE application_name LIKE 'crm-alerting%' AND datname = current_database()",
                )
                .fetch_all(&pool)
                .await
                .unwrap_or_default();
                killed += ended.len() as u64;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            killed
        })
    };
    let failing = (0..40).map(|n| payment(&contact, n, clock.now(), Channel::Web, false)).collect();
    ingest(&mut interactions, failing, "outage").await;
    // Long enough for several evaluations and deliveries to be cut short.
    eventually(Duration::from_secs(60), "both pages received while sessions are killed", || async {
        seen(&state, "pages").iter().map(|received| received.delivery_id.clone()).collect::<HashSet<_>>().len() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let killed = killer.await.unwrap();
    assert!(killed >= 10, "the test must kill sessions to mean anything: {killed}");

    // Calm again: each page fired once, with one event, one delivery, received.
    eventually(Duration::from_secs(30), "the deliveries logged as delivered", || {
        let (mut alerting, pages) = (alerting.clone(), pages.clone());
        async move {
            let request = ListWebhookDeliveriesRequest { webhook_id: pages, ..Default::default() };
            match alerting.list_webhook_deliveries(request).await {
                // Its probes' sessions were killed too: the role says to retry shortly.
                Err(status) if status.code() == tonic::Code::Unavailable => false,
                answer => {
                    let found = answer.unwrap().into_inner().deliveries;
                    !found.is_empty() && found.iter().all(|delivery| delivery.state == "delivered")
                }
            }
        }
    })
    .await;
    let firing = alerting
        .list_alerts(ListAlertsRequest { state: AlertState::Firing as i32, ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .alerts;
    let mut windows: Vec<&str> = firing.iter().map(|alert| alert.labels["window"].as_str()).collect();
    windows.sort();
    assert_eq!(windows, ["15m/2m", "6m/1m"], "each page fires once: {firing:?}");
    assert!(firing.iter().all(|alert| alert.source_id == slo.id));
    let events = alerting.list_events(ListEventsRequest::default()).await.unwrap().into_inner().events;
    let fired = events.iter().filter(|event| event.r#type == AlertFired::full_name()).count();
    assert_eq!(fired, 2, "one AlertFired per alert, not one per evaluation that was cut short");
    let logged = deliveries(&mut alerting, &pages).await;
    assert_eq!(logged.len(), 2, "one delivery per page: {logged:?}");
    let received: HashSet<String> = seen(&state, "pages").iter().map(|received| received.delivery_id.clone()).collect();
    for delivery in &logged {
        assert!(received.contains(&delivery.id), "delivery {} never reached the receiver", delivery.id);
    }
    assert_eq!(received.len(), 2, "no delivery the log does not know: {received:?}");
    assert!(seen(&state, "pages").iter().all(|received| received.signed));
    second.shutdown().await.unwrap();
    first.shutdown().await.unwrap();
}
