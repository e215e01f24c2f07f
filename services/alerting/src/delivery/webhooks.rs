//! Signed webhooks: each alert that fires or resolves, and that a webhook's
//! matchers select, is queued for it in the transaction that changed the
//! alert (so no change is lost); one replica at a time sends what is due as
//! Alertmanager's webhook payload (version 4, one alert per request),
//! signed with HMAC-SHA256 over the timestamp and the body, and keeps every
//! attempt in the delivery log. A failure is tried again after an
//! exponential backoff with jitter (the `backon` crate's schedule); a
//! refusal, or the last attempt failing, leaves a dead letter that
//! RetryWebhookDelivery can send again. Delivery is at least once: the
//! delivery id in `X-CRM-Webhook-Id` lets a receiver drop a repeat.

use std::{collections::HashMap, sync::Arc, time::Duration};
use tracing::Instrument;

use backon::BackoffBuilder;
use chrono::{DateTime, SecondsFormat, Utc};
use crm_platform::{Error, clock::Clock, config::AlertingSettings};
use futures_util::{StreamExt, stream};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::addresses::{AddressPolicy, literal};
use crate::{
    matchers::Compiled,
    store::{
        alerts::{self as alert_store, AlertRecord, Pairs},
        webhooks::{self as store, Attempt, DeliveryRecord, WebhookRecord},
    },
};

/// The header carrying the delivery id (the same on every attempt).
pub const ID_HEADER: &str = "x-crm-webhook-id";
/// The header carrying the attempt's Unix time in seconds.
pub const TIMESTAMP_HEADER: &str = "x-crm-webhook-timestamp";
/// The header carrying `v1=` and the hex HMAC-SHA256 of `timestamp.body`.
pub const SIGNATURE_HEADER: &str = "x-crm-webhook-signature";
/// How often the leader looks for due deliveries.
const POLL: Duration = Duration::from_millis(200);
/// Deliveries taken per look, and sent at once.
const BATCH: i64 = 64;
const CONCURRENCY: usize = 8;
const LEADER_LOCK: &str = "crm.alerting.webhooks";

/// The signature of `body` sent at `timestamp` with `secret`: `v1=<hex>`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The webhooks and their compiled matchers, loaded once per announcement.
pub struct Hooks(Vec<(Uuid, Compiled)>);

impl Hooks {
    pub async fn load(conn: &mut PgConnection) -> Result<Hooks, Error> {
        let hooks = store::all(conn).await?.into_iter().map(|hook| (hook.id, Compiled::new(hook.matchers))).collect();
        Ok(Hooks(hooks))
    }

    /// Queues, for every webhook whose matchers select `alert`, a delivery
    /// announcing that it is `status` (`firing` or `resolved`).
    pub async fn enqueue(
        &self,
        conn: &mut PgConnection,
        alert: &AlertRecord,
        status: &str,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let selected: Vec<Uuid> =
            self.0.iter().filter(|(_, matchers)| matchers.matches(&alert.labels)).map(|(id, _)| *id).collect();
        store::enqueue(conn, &selected, alert.id, status, now).await
    }
}

/// An alert as Alertmanager's webhook payload carries it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PayloadAlert<'a> {
    status: &'a str,
    labels: &'a Pairs,
    annotations: &'a Pairs,
    starts_at: String,
    ends_at: String,
    #[serde(rename = "generatorURL")]
    generator_url: String,
    fingerprint: &'a str,
}

/// Alertmanager's webhook payload, version 4.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Payload<'a> {
    version: &'static str,
    group_key: String,
    truncated_alerts: u32,
    status: &'a str,
    receiver: &'a str,
    group_labels: Pairs,
    common_labels: &'a Pairs,
    common_annotations: &'a Pairs,
    #[serde(rename = "externalURL")]
    external_url: String,
    alerts: [PayloadAlert<'a>; 1],
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// What became of one attempt.
enum Outcome {
    Delivered,
    /// Worth trying again (network, timeout, 408, 429, 5xx).
    Failed,
    /// The receiver refused it (another 4xx, a refused address): not tried again.
    Refused,
}

/// The sender of due deliveries.
pub struct Webhooks {
    client: reqwest::Client,
    policy: AddressPolicy,
    max_attempts: u32,
    retry_min: Duration,
    retry_max: Duration,
    external_url: String,
}

impl Webhooks {
    pub fn new(settings: &AlertingSettings) -> anyhow::Result<Self> {
        let policy = AddressPolicy::new(settings.webhook_allowed_networks.clone());
        let client = reqwest::Client::builder()
            .timeout(settings.webhook_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(policy.resolver())
            .user_agent(concat!("crm-alerting/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Webhooks {
            client,
            policy,
            max_attempts: settings.webhook_max_attempts,
            retry_min: settings.webhook_retry_min,
            retry_max: settings.webhook_retry_max,
            external_url: settings.external_url.clone().unwrap_or_default(),
        })
    }

    /// Which addresses webhooks may reach (checked when one is made).
    pub fn policy(&self) -> &AddressPolicy {
        &self.policy
    }

    /// Sends due deliveries every [`POLL`] until `shutdown`, while this replica leads.
    pub fn spawn(self: Arc<Self>, pool: PgPool, clock: Clock, shutdown: CancellationToken) {
        crm_platform::leader::spawn_periodic(pool.clone(), LEADER_LOCK, POLL, shutdown, move || {
            let (webhooks, pool, clock) = (self.clone(), pool.clone(), clock.clone());
            async move {
                while webhooks.run_once(&pool, &clock).await? == BATCH as usize {}
                Ok(())
            }
        });
    }

    /// Sends the deliveries due now (up to a batch); returns how many.
    pub async fn run_once(&self, pool: &PgPool, clock: &Clock) -> anyhow::Result<usize> {
        let mut conn = pool.acquire().await?;
        let due = store::due(&mut conn, clock.now(), BATCH).await?;
        if due.is_empty() {
            return Ok(0);
        }
        let hooks: HashMap<Uuid, WebhookRecord> =
            store::all(&mut conn).await?.into_iter().map(|hook| (hook.id, hook)).collect();
        let ids: Vec<Uuid> = due.iter().map(|delivery| delivery.alert_id).collect();
        let alerts = alert_store::get_many(&mut conn, &ids).await?;
        drop(conn);
        // A delivery's alert stays (deliveries reference it), so each is found.
        let work: Vec<_> = due
            .iter()
            .filter_map(|delivery| {
                let alert = alerts.get(&delivery.alert_id).cloned()?;
                Some((delivery.clone(), hooks.get(&delivery.webhook_id).cloned(), alert))
            })
            .collect();
        let attempts: Vec<(Uuid, Attempt, Outcome, usize)> = stream::iter(work)
            .map(|(delivery, hook, alert): (DeliveryRecord, Option<WebhookRecord>, AlertRecord)| async move {
                let (attempt, outcome) = match &hook {
                    Some(hook) => self.attempt(&delivery, hook, &alert, clock).await,
                    None => (failure(clock.now(), 0, Duration::ZERO, "the webhook was deleted"), Outcome::Refused),
                };
                (delivery.id, attempt, outcome, delivery.counted_attempts() + 1)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut conn = pool.acquire().await?;
        for (id, attempt, outcome, made) in &attempts {
            let (state, next) = match outcome {
                Outcome::Delivered => ("delivered", None),
                Outcome::Failed if (*made as u32) < self.max_attempts => {
                    let delay = chrono::Duration::from_std(self.delay(*made))?;
                    ("pending", Some(attempt.time + delay))
                }
                Outcome::Failed | Outcome::Refused => ("dead", None),
            };
            if state == "dead" {
                tracing::warn!(delivery = %id, attempts = made, error = %attempt.error, status = attempt.http_status, "a webhook delivery is dead; RetryWebhookDelivery sends it again");
            }
            store::record_attempt(&mut conn, *id, attempt, state, next).await?;
        }
        Ok(due.len())
    }

    /// The wait before the attempt after `made` attempts: the backoff's
    /// `made`-th delay (doubling from the minimum, capped, plus jitter).
    fn delay(&self, made: usize) -> Duration {
        backon::ExponentialBuilder::new()
            .with_min_delay(self.retry_min)
            .with_max_delay(self.retry_max)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(made)
            .build()
            .last()
            .unwrap_or(self.retry_min)
    }

    async fn attempt(
        &self,
        delivery: &DeliveryRecord,
        hook: &WebhookRecord,
        alert: &AlertRecord,
        clock: &Clock,
    ) -> (Attempt, Outcome) {
        let now = clock.now();
        let started = std::time::Instant::now();
        // A literal address never meets the resolver: check it here.
        if let Some(ip) = reqwest::Url::parse(&hook.url).ok().and_then(|url| url.host_str().and_then(literal))
            && let Some(reason) = self.policy.refuses(ip)
        {
            return (failure(now, 0, started.elapsed(), &format!("{ip} is {reason}")), Outcome::Refused);
        }
        let body = match serde_json::to_vec(&self.payload(delivery, hook, alert)) {
            Ok(body) => body,
            Err(error) => return (failure(now, 0, started.elapsed(), &error.to_string()), Outcome::Refused),
        };
        let timestamp = now.timestamp();
        let span = crm_platform::trace_context::http_client_span("POST", &hook.url);
        let sent = self
            .client
            .post(&hook.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(ID_HEADER, delivery.id.to_string())
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, sign(&hook.secret, timestamp, &body))
            .body(body)
            .send()
            .instrument(span.clone())
            .await;
        if let Ok(response) = &sent {
            span.record("http.response.status_code", i64::from(response.status().as_u16()));
        }
        let latency = started.elapsed();
        match sent {
            Ok(response) => {
                let status = response.status();
                let code = status.as_u16();
                if status.is_success() {
                    let attempt = Attempt {
                        time: now,
                        http_status: code,
                        latency_ms: latency.as_millis() as u64,
                        error: String::new(),
                    };
                    (attempt, Outcome::Delivered)
                } else {
                    let again = status.is_server_error() || code == 408 || code == 429;
                    let attempt = failure(now, code, latency, &format!("answered HTTP {status}"));
                    (attempt, if again { Outcome::Failed } else { Outcome::Refused })
                }
            }
            Err(error) => {
                let mut reason = error.to_string();
                let mut source = std::error::Error::source(&error);
                while let Some(inner) = source {
                    reason = format!("{reason}: {inner}");
                    source = inner.source();
                }
                (failure(now, 0, latency, &reason), Outcome::Failed)
            }
        }
    }

    fn payload<'a>(
        &self,
        delivery: &'a DeliveryRecord,
        hook: &'a WebhookRecord,
        alert: &'a AlertRecord,
    ) -> Payload<'a> {
        let ends_at = match (delivery.status.as_str(), alert.ends_at) {
            ("resolved", Some(ends)) => rfc3339(ends),
            _ => "0001-01-01T00:00:00Z".to_string(),
        };
        let alertname = alert.labels.get("alertname").cloned().unwrap_or_default();
        let generator_url = if self.external_url.is_empty() {
            String::new()
        } else {
            format!("{}/alerts/{}", self.external_url, alert.id)
        };
        Payload {
            version: "4",
            group_key: format!("{}:{}", hook.id, alert.fingerprint),
            truncated_alerts: 0,
            status: &delivery.status,
            receiver: &hook.name,
            group_labels: Pairs::from([("alertname".to_string(), alertname)]),
            common_labels: &alert.labels,
            common_annotations: &alert.annotations,
            external_url: self.external_url.clone(),
            alerts: [PayloadAlert {
                status: &delivery.status,
                labels: &alert.labels,
                annotations: &alert.annotations,
                starts_at: rfc3339(alert.starts_at),
                ends_at,
                generator_url,
                fingerprint: &alert.fingerprint,
            }],
        }
    }
}

fn failure(time: DateTime<Utc>, http_status: u16, latency: Duration, error: &str) -> Attempt {
    Attempt { time, http_status, latency_ms: latency.as_millis() as u64, error: error.chars().take(500).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_timestamp_a_dot_and_the_body() {
        // Computed by OpenSSL: `printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret`.
        assert_eq!(
            sign("secret", 1_700_000_000, br#"{"a":1}"#),
            "v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
    }

    #[test]
    fn delays_double_from_the_minimum_with_jitter_up_to_the_maximum() {
        let settings = AlertingSettings {
            webhook_retry_min: Duration::from_millis(100),
            webhook_retry_max: Duration::from_secs(1),
            ..AlertingSettings::default()
        };
        let webhooks = Webhooks::new(&settings).unwrap();
        for made in 1..=8 {
            let base = Duration::from_millis(100) * 2u32.pow(made as u32 - 1);
            let base = base.min(Duration::from_secs(1));
            let delay = webhooks.delay(made);
            assert!(delay >= base && delay <= base * 2, "attempt {made}: {delay:?} against {base:?}");
        }
    }
}
