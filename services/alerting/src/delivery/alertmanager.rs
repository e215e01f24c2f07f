//! Alertmanager's API v2 (`POST /api/v2/alerts`), as Prometheus speaks it:
//! every firing alert is sent again each resend interval with an `endsAt`
//! four intervals ahead, so that if the suite dies Alertmanager resolves
//! the alert by itself; a resolved alert is sent with its real `endsAt`
//! for [`RESOLVED_KEPT`] after it ends. Alertmanager deduplicates by
//! labels, so sending an alert twice notifies no one twice; a new leader
//! sends everything at once, so a change committed just before a crash is
//! not lost. An alert a silence of the suite's own holds back is not sent
//! (Alertmanager lets it lapse at its `endsAt`); when the silence ends it
//! is sent again.

use std::{sync::Mutex, time::Duration};

use chrono::{DateTime, SecondsFormat, Utc};
use crm_platform::config::AlertingSettings;
use serde::Serialize;
use sqlx::PgPool;

use crate::{
    silences::Active,
    store::{
        alerts::{self as store, AlertRecord, Pairs},
        silences,
    },
};

/// How long a resolved alert is still sent.
pub const RESOLVED_KEPT: Duration = Duration::from_secs(15 * 60);
/// Alerts per request.
const CHUNK: usize = 1000;
const TIMEOUT: Duration = Duration::from_secs(10);

/// An alert as Alertmanager takes it (`postableAlert`).
#[derive(Debug, Serialize)]
struct Postable<'a> {
    labels: &'a Pairs,
    annotations: &'a Pairs,
    #[serde(rename = "startsAt")]
    starts_at: String,
    #[serde(rename = "endsAt")]
    ends_at: String,
    #[serde(rename = "generatorURL", skip_serializing_if = "Option::is_none")]
    generator_url: Option<String>,
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The configured Alertmanagers, and when they last heard everything.
pub struct Alertmanagers {
    client: reqwest::Client,
    urls: Vec<String>,
    resend: Duration,
    external_url: Option<String>,
    /// When every Alertmanager last took every alert; `None` before the first time or after a failure.
    last_sent: Mutex<Option<DateTime<Utc>>>,
}

impl Alertmanagers {
    pub fn new(settings: &AlertingSettings) -> anyhow::Result<Self> {
        Ok(Alertmanagers {
            client: reqwest::Client::builder().timeout(TIMEOUT).build()?,
            urls: settings.alertmanager_urls.clone(),
            resend: settings.alertmanager_resend_interval,
            external_url: settings.external_url.clone(),
            last_sent: Mutex::new(None),
        })
    }

    fn last_sent(&self) -> std::sync::MutexGuard<'_, Option<DateTime<Utc>>> {
        self.last_sent.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Sends every alert when one fired, resolved or was acknowledged since
    /// the last send (here or on another replica), when the resend interval
    /// has passed, or when the last send failed.
    pub async fn sync(&self, pool: &PgPool, now: DateTime<Utc>) -> anyhow::Result<()> {
        if self.urls.is_empty() {
            return Ok(());
        }
        let mut conn = pool.acquire().await?;
        let last = *self.last_sent();
        let due = match last {
            Some(last) => {
                now - last >= chrono::Duration::from_std(self.resend)?
                    || store::changed_since(&mut conn, last).await?
                    || silences::changed_between(&mut conn, last, now).await?
            }
            None => true,
        };
        if !due {
            return Ok(());
        }
        let silences = Active::load(&mut conn, now).await?;
        let alerts: Vec<AlertRecord> = store::to_send(&mut conn, now - chrono::Duration::from_std(RESOLVED_KEPT)?)
            .await?
            .into_iter()
            // Held back by a silence of the suite's own, or resolved without its firing ever sent.
            .filter(|alert| if alert.firing { !silences.holds(&alert.labels) } else { alert.notified })
            .collect();
        drop(conn);
        let outcome = self.send(&alerts, now).await;
        *self.last_sent() = outcome.is_ok().then_some(now);
        outcome
    }

    async fn send(&self, alerts: &[AlertRecord], now: DateTime<Utc>) -> anyhow::Result<()> {
        let held_until = now + chrono::Duration::from_std(self.resend * 4)?;
        let postable: Vec<Postable> = alerts
            .iter()
            .map(|alert| Postable {
                labels: &alert.labels,
                annotations: &alert.annotations,
                starts_at: rfc3339(alert.starts_at),
                ends_at: rfc3339(alert.ends_at.unwrap_or(held_until)),
                generator_url: self.external_url.as_ref().map(|base| format!("{base}/alerts/{}", alert.id)),
            })
            .collect();
        let mut failed = Vec::new();
        for url in &self.urls {
            for chunk in postable.chunks(CHUNK) {
                if let Err(error) = self.post(url, chunk).await {
                    tracing::warn!(alertmanager = %url, error = format!("{error:#}"), "Alertmanager did not take the alerts; sending again next evaluation");
                    failed.push(url.as_str());
                    break;
                }
            }
        }
        if failed.is_empty() { Ok(()) } else { anyhow::bail!("not delivered to {}", failed.join(", ")) }
    }

    async fn post(&self, url: &str, alerts: &[Postable<'_>]) -> anyhow::Result<()> {
        let response = self.client.post(format!("{url}/api/v2/alerts")).json(alerts).send().await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            anyhow::bail!("HTTP {status}: {}", body.chars().take(300).collect::<String>());
        }
        Ok(())
    }
}
