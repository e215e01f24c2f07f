//! Alerts reach signed webhooks, a silence holds them back, and
//! `WatchAlerts` streams the changes. The receiver is a real HTTP server
//! in the test that checks every signature with its own HMAC; it answers
//! one webhook at once, fails another twice with 503 before taking it
//! (retried with a growing backoff), and refuses a third with 410 (a dead
//! letter, sent again by hand). A webhook to the cloud metadata address is
//! refused when made.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    routing::post,
};
use chrono::Utc;
use crm_platform::Role;
use crm_proto::{
    alerting::v1::{
        AlertChangeKind, CreateSilenceRequest, CreateSloRequest, CreateWebhookRequest, DeleteSloRequest,
        ExpireSilenceRequest, GetAlertRequest, ListAlertsRequest, ListWebhookDeliveriesRequest, MatchType, Matcher,
        RetryWebhookDeliveryRequest, Silence, WatchAlertsRequest, Webhook, WebhookDelivery,
        alerting_service_client::AlertingServiceClient,
    },
    interactions::v1::Channel,
};
use crm_testkit::{Authed, TestDb, TestSuite};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::{ingest, payer, payment, payments_slo};
use crate::support::eventually;

/// A request the receiver took.
#[derive(Clone, Debug)]
pub(super) struct Received {
    pub(super) delivery_id: String,
    pub(super) signed: bool,
    pub(super) body: Value,
}

#[derive(Default)]
pub(super) struct Receiver {
    secrets: HashMap<String, String>,
    /// Every request, answered or not, by webhook name.
    seen: HashMap<String, Vec<Received>>,
    /// Failures so far per delivery id of the `flaky` webhook.
    failures: HashMap<String, u32>,
}

pub(super) type Shared = Arc<Mutex<Receiver>>;

/// Checks the signature as a receiver would: HMAC-SHA256 of `timestamp.body`,
/// compared in constant time, with the timestamp within 5 minutes.
fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default().to_string();
    let Ok(timestamp) = header("x-crm-webhook-timestamp").parse::<i64>() else { return false };
    if (Utc::now().timestamp() - timestamp).abs() > 300 {
        return false;
    }
    let Some(signature) = header("x-crm-webhook-signature").strip_prefix("v1=").and_then(|hex| hex::decode(hex).ok())
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

async fn receive(State(state): State<Shared>, Path(name): Path<String>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut receiver = state.lock().unwrap();
    let secret = receiver.secrets.get(&name).cloned().unwrap_or_default();
    let delivery_id = headers.get("x-crm-webhook-id").and_then(|id| id.to_str().ok()).unwrap_or_default().to_string();
    let received = Received {
        delivery_id: delivery_id.clone(),
        signed: verify(&secret, &headers, &body),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    receiver.seen.entry(name.clone()).or_default().push(received);
    match name.as_str() {
        "flaky" => {
            let failures = receiver.failures.entry(delivery_id).or_default();
            *failures += 1;
            if *failures <= 2 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK }
        }
        "gone" => StatusCode::GONE,
        _ => StatusCode::NO_CONTENT,
    }
}

pub(super) fn seen(state: &Shared, name: &str) -> Vec<Received> {
    state.lock().unwrap().seen.get(name).cloned().unwrap_or_default()
}

pub(super) fn equal(name: &str, value: &str) -> Matcher {
    Matcher { name: name.into(), value: value.into(), r#type: MatchType::Equal as i32 }
}

pub(super) async fn register(
    alerting: &mut AlertingServiceClient<Authed>,
    state: &Shared,
    base: &str,
    name: &str,
    matchers: Vec<Matcher>,
) -> String {
    let webhook = Webhook { name: name.into(), url: format!("{base}/hooks/{name}"), matchers, ..Default::default() };
    let created = alerting.create_webhook(CreateWebhookRequest { webhook: Some(webhook) }).await.unwrap().into_inner();
    assert_eq!(created.secret.len(), 64, "32 random bytes in hex");
    state.lock().unwrap().secrets.insert(name.into(), created.secret);
    created.webhook.unwrap().id
}

pub(super) async fn deliveries(alerting: &mut AlertingServiceClient<Authed>, webhook_id: &str) -> Vec<WebhookDelivery> {
    let request = ListWebhookDeliveriesRequest { webhook_id: webhook_id.into(), ..Default::default() };
    alerting.list_webhook_deliveries(request).await.unwrap().into_inner().deliveries
}

/// A receiver on a free port; its base URL.
pub(super) async fn receiver(state: &Shared) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().route("/hooks/{name}", post(receive)).with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

#[tokio::test]
async fn alerts_reach_signed_webhooks_with_retries_silences_hold_them_back_and_watchers_see_every_change() {
    let state: Shared = Arc::default();
    let base = receiver(&state).await;

    let test_db = TestDb::create().await.unwrap();
    let vars = [
        ("CRM_ALERTING_EVALUATION_INTERVAL", "200ms"),
        ("CRM_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8"),
        ("CRM_WEBHOOK_RETRY_MIN", "100ms"),
        ("CRM_WEBHOOK_RETRY_MAX", "2s"),
        ("CRM_WEBHOOK_MAX_ATTEMPTS", "4"),
    ]
    .map(|(name, value)| (name.to_string(), value.to_string()));
    let clock = super::mid_minute_clock();
    let suite = TestSuite::start_with_clock(&test_db, &Role::ALL, &vars, clock.clone()).await.unwrap();
    let mut alerting = suite.alerting().await.unwrap();
    let mut interactions = suite.interactions().await.unwrap();

    // Cloud metadata is refused even with loopback allowed; so is a bad matcher, by position.
    let metadata = Webhook {
        name: "metadata".into(),
        url: "http://169.254.169.254/latest/meta-data/".into(),
        matchers: vec![Matcher { name: "slo".into(), value: "(".into(), r#type: MatchType::Regex as i32 }],
        ..Default::default()
    };
    let refused = alerting.create_webhook(CreateWebhookRequest { webhook: Some(metadata) }).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let details = tonic_types::StatusExt::get_details_bad_request(&refused).unwrap();
    let fields: Vec<&str> = details.field_violations.iter().map(|violation| violation.field.as_str()).collect();
    assert_eq!(fields, ["webhook.url", "webhook.matchers[0].value"], "{refused:?}");
    assert!(details.field_violations[0].description.contains("link-local"), "{refused:?}");

    let pages = register(&mut alerting, &state, &base, "pages", vec![equal("severity", "page")]).await;
    let flaky = register(&mut alerting, &state, &base, "flaky", vec![equal("slo", "Checkout")]).await;
    let gone = register(&mut alerting, &state, &base, "gone", vec![equal("slo", "Checkout")]).await;

    // A silence made before the outage holds back the SLO "Quiet".
    let now = Utc::now();
    let silence = Silence {
        matchers: vec![equal("slo", "Quiet")],
        ends_at: Some(crm_platform::timestamp::to_proto(now + chrono::Duration::hours(1))),
        comment: "maintenance of the quiet checkout".into(),
        ..Default::default()
    };
    let silence = alerting.create_silence(CreateSilenceRequest { silence: Some(silence) }).await.unwrap().into_inner();
    assert_eq!((silence.state.as_str(), silence.created_by.as_str()), ("active", "bootstrap"));
    let everything = Silence {
        matchers: vec![Matcher { name: "slo".into(), value: ".*".into(), r#type: MatchType::Regex as i32 }],
        ends_at: silence.ends_at,
        comment: "all".into(),
        ..Default::default()
    };
    let refused = alerting.create_silence(CreateSilenceRequest { silence: Some(everything) }).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "a silence of everything: {refused:?}");

    let mut watch = alerting.watch_alerts(WatchAlertsRequest::default()).await.unwrap().into_inner();

    // Two one-day SLOs over the same payments; every web payment fails: both page twice.
    let mut ids = HashMap::new();
    for name in ["Checkout", "Quiet"] {
        let mut slo = payments_slo(name);
        slo.window = Some(prost_types::Duration { seconds: super::DAY as i64, nanos: 0 });
        let created = alerting.create_slo(CreateSloRequest { slo: Some(slo) }).await.unwrap().into_inner();
        ids.insert(name, created.id);
    }
    let contact = payer(&suite).await;
    let failing = (0..40).map(|n| payment(&contact, n, clock.now(), Channel::Web, false)).collect();
    ingest(&mut interactions, failing, "outage").await;

    // The watcher sees the four pages fire, in commit order, each with its position.
    let mut fired = Vec::new();
    while fired.len() < 4 {
        let Ok(change) = tokio::time::timeout(Duration::from_secs(30), watch.message()).await else {
            let listed = alerting.list_alerts(ListAlertsRequest::default()).await.unwrap().into_inner().alerts;
            let brief = |alerts: &[crm_proto::alerting::v1::Alert]| -> Vec<String> {
                alerts
                    .iter()
                    .map(|alert| format!("{} {} {:?}", alert.labels["slo"], alert.labels["window"], alert.starts_at))
                    .collect()
            };
            panic!("the watcher saw {:?}; listed: {:?}", brief(&fired), brief(&listed));
        };
        let change = change.unwrap().unwrap();
        assert_eq!(change.kind(), AlertChangeKind::Fired);
        assert!(change.position.is_some() && change.time.is_some());
        fired.push(change.alert.unwrap());
    }

    // Checkout's pages reach `pages` at once, signed, as Alertmanager's webhook payload.
    eventually(Duration::from_secs(20), "Checkout's two pages at the pages webhook", || async {
        seen(&state, "pages").len() == 2
    })
    .await;
    for received in seen(&state, "pages") {
        assert!(received.signed, "{received:?}");
        let body = &received.body;
        assert_eq!(body["version"], "4");
        assert_eq!(body["status"], "firing");
        assert_eq!(body["receiver"], "pages");
        assert_eq!(body["alerts"][0]["labels"]["slo"], "Checkout", "Quiet is silenced: {body}");
        assert_eq!(body["alerts"][0]["labels"]["severity"], "page");
        assert_eq!(body["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    }
    eventually(Duration::from_secs(20), "the pages' deliveries logged", || {
        let (mut alerting, pages) = (alerting.clone(), pages.clone());
        async move {
            deliveries(&mut alerting, &pages).await.iter().filter(|delivery| delivery.state != "pending").count() == 2
        }
    })
    .await;
    let logged = deliveries(&mut alerting, &pages).await;
    assert_eq!(logged.len(), 2);
    for delivery in &logged {
        assert_eq!((delivery.state.as_str(), delivery.attempts.len()), ("delivered", 1), "{delivery:?}");
        assert_eq!(delivery.attempts[0].http_status, 204);
        assert!(seen(&state, "pages").iter().any(|received| received.delivery_id == delivery.id));
    }

    // Quiet's pages fire, listed with their silence, and reach no one.
    let quiet = alerting
        .list_alerts(ListAlertsRequest { source_id: ids["Quiet"].clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .alerts;
    assert_eq!(quiet.len(), 2);
    assert!(quiet.iter().all(|alert| alert.silenced_by == [silence.id.clone()]), "{quiet:?}");

    // `flaky` answers 503 twice per delivery, then takes it; the waits grow.
    eventually(Duration::from_secs(30), "flaky's deliveries delivered", || {
        let mut alerting = alerting.clone();
        let flaky = flaky.clone();
        async move {
            let found = deliveries(&mut alerting, &flaky).await;
            found.len() == 2 && found.iter().all(|delivery| delivery.state == "delivered")
        }
    })
    .await;
    for delivery in deliveries(&mut alerting, &flaky).await {
        let statuses: Vec<i32> = delivery.attempts.iter().map(|attempt| attempt.http_status).collect();
        assert_eq!(statuses, [503, 503, 200], "{delivery:?}");
        let times: Vec<chrono::DateTime<Utc>> = delivery
            .attempts
            .iter()
            .map(|attempt| crm_platform::timestamp::from_proto(attempt.time.as_ref().unwrap()).unwrap())
            .collect();
        let (first, second) = (times[1] - times[0], times[2] - times[1]);
        assert!(first >= chrono::Duration::milliseconds(100), "the first retry waits the minimum: {first}");
        assert!(second >= chrono::Duration::milliseconds(200), "the second waits twice as long: {second}");
        assert!(delivery.attempts[0].error.contains("503"));
    }
    assert!(seen(&state, "flaky").iter().all(|received| received.signed));

    // `gone` refuses with 410: dead at once; sent again by hand, dead again after one more attempt.
    eventually(Duration::from_secs(20), "gone's deliveries dead", || {
        let mut alerting = alerting.clone();
        let gone = gone.clone();
        async move {
            let found = deliveries(&mut alerting, &gone).await;
            found.len() == 2 && found.iter().all(|delivery| delivery.state == "dead")
        }
    })
    .await;
    let dead = deliveries(&mut alerting, &gone).await.remove(0);
    assert_eq!(dead.attempts.len(), 1, "a refusal is not tried again: {dead:?}");
    let retried = alerting
        .retry_webhook_delivery(RetryWebhookDeliveryRequest { id: dead.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.state, "pending");
    eventually(Duration::from_secs(20), "the retried delivery dead again", || {
        let mut alerting = alerting.clone();
        let (gone, id) = (gone.clone(), dead.id.clone());
        async move {
            deliveries(&mut alerting, &gone)
                .await
                .iter()
                .any(|delivery| delivery.id == id && delivery.state == "dead" && delivery.attempts.len() == 2)
        }
    })
    .await;
    let again = alerting.retry_webhook_delivery(RetryWebhookDeliveryRequest { id: flaky.clone() }).await.unwrap_err();
    assert_eq!(again.code(), tonic::Code::NotFound, "an id that is no delivery: {again:?}");

    // The silence ends: Quiet's pages are announced now.
    alerting.expire_silence(ExpireSilenceRequest { id: silence.id.clone() }).await.unwrap();
    eventually(Duration::from_secs(20), "Quiet's pages once the silence ends", || async {
        seen(&state, "pages").iter().filter(|received| received.body["alerts"][0]["labels"]["slo"] == "Quiet").count()
            == 2
    })
    .await;
    let page = alerting.get_alert(GetAlertRequest { id: quiet[0].id.clone() }).await.unwrap().into_inner();
    assert!(page.silenced_by.is_empty());

    // Deleting Checkout resolves its pages: the watcher and the webhooks hear it.
    alerting.delete_slo(DeleteSloRequest { id: ids["Checkout"].clone() }).await.unwrap();
    let mut resolved = 0;
    while resolved < 2 {
        let change = tokio::time::timeout(Duration::from_secs(30), watch.message()).await.unwrap().unwrap().unwrap();
        if change.kind() == AlertChangeKind::Resolved {
            assert_eq!(change.alert.unwrap().labels["slo"], "Checkout");
            resolved += 1;
        }
    }
    eventually(Duration::from_secs(20), "the resolutions at the pages webhook", || async {
        seen(&state, "pages").iter().filter(|received| received.body["status"] == "resolved").count() == 2
    })
    .await;
    let resolution = seen(&state, "pages").into_iter().find(|received| received.body["status"] == "resolved").unwrap();
    assert_ne!(resolution.body["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert!(resolution.signed);
    suite.shutdown().await.unwrap();
}
