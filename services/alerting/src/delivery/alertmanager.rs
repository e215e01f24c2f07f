//! Alertmanager's API v2 (`POST /api/v2/alerts`), as Prometheus speaks it.
//!
//! The sender follows the role's own feed, on one replica at a time: every
//! change of an alert is an event committed with the change, so the alerts
//! go out as soon as a change commits (a rule's alert reaches Alertmanager
//! milliseconds after the event that broke it, not at the next evaluation),
//! and a change committed while a send was under way is sent again after it.
//! It follows the feed's live lane too, where a change arrives as it
//! commits, not once every older transaction of the role has ended (a rules
//! follower's burst of thousands of an ingest's events takes seconds); the
//! feed, a moment later, brings what the lane skipped, and what both bring
//! is sent once.
//! Between changes, each evaluation interval checks what time alone makes
//! due: the resend interval, a silence that started or ended, a send that failed.
//!
//! Every firing alert is sent again each resend interval with an `endsAt`
//! four intervals ahead, so that if the suite dies Alertmanager resolves
//! the alert by itself; a resolved alert is sent with its real `endsAt`
//! for [`RESOLVED_KEPT`] after it ends. Alertmanager deduplicates by
//! labels, so sending an alert twice notifies no one twice; a new leader
//! sends everything at once, so a change committed just before a crash is
//! not lost. An alert a silence of the suite's own holds back is not sent
//! (Alertmanager lets it lapse at its `endsAt`); when the silence ends it
//! is sent again.

use std::{
    collections::{HashSet, VecDeque},
    sync::Mutex,
    time::Duration,
};
use tracing::Instrument;

use chrono::{DateTime, SecondsFormat, Utc};
use crm_platform::{clock::Clock, config::AlertingSettings, leader::SessionLock, outbox::Feed};
use futures_util::StreamExt;
use serde::Serialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

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
const LEADER_LOCK: &str = "crm.alerting.alertmanager";

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

/// Whether Alertmanager hears of `alert`: not when a silence of the suite's
/// own holds it back, nor when it resolved without its firing ever sent.
fn is_sent(alert: &AlertRecord, silences: &Active) -> bool {
    if alert.firing { !silences.holds(&alert.labels) } else { alert.notified }
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
    /// How often what time alone makes due is checked (the evaluation interval).
    check_every: Duration,
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
            check_every: settings.evaluation_interval,
            last_sent: Mutex::new(None),
        })
    }

    fn last_sent(&self) -> std::sync::MutexGuard<'_, Option<DateTime<Utc>>> {
        self.last_sent.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Sends the alerts to the configured Alertmanagers until `shutdown`,
    /// while this replica leads (none configured: nothing to do).
    pub fn spawn(self: std::sync::Arc<Self>, pool: PgPool, feed: Feed, clock: Clock, shutdown: CancellationToken) {
        if self.urls.is_empty() {
            return;
        }
        tokio::spawn(async move {
            while !shutdown.is_cancelled() {
                if let Err(error) = self.lead(&pool, &feed, &clock, &shutdown).await {
                    tracing::warn!(error = format!("{error:#}"), "the Alertmanager sender failed; trying again");
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(self.check_every) => {}
                }
            }
        });
    }

    /// Sends on every committed change of an alert and checks what is due
    /// every [`Self::check_every`], while holding the sender's lock.
    async fn lead(
        &self,
        pool: &PgPool,
        feed: &Feed,
        clock: &Clock,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let Some(mut session) = SessionLock::try_take(pool, LEADER_LOCK).await? else { return Ok(()) };
        let outcome = async {
            let end = feed.end().await?;
            let mut changes = Box::pin(
                futures_util::stream::select(
                    feed.follow_live(end, Vec::new(), shutdown.child_token()),
                    feed.follow(end, Vec::new(), shutdown.child_token()),
                )
                .ready_chunks(1000),
            );
            let mut taken = Taken::default();
            // A new leader sends everything at once: a change committed just before a crash is not lost.
            *self.last_sent() = None;
            let mut checks = tokio::time::interval(self.check_every);
            checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let changed: Vec<Uuid> = tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    _ = checks.tick() => {
                        session.still_held().await?;
                        Vec::new()
                    }
                    next = changes.next() => {
                        let Some(events) = next else { anyhow::bail!("the role's feed ended") };
                        let mut changed = Vec::with_capacity(events.len());
                        for event in events {
                            let event = event?;
                            if taken.first_time(&event.id) {
                                changed.extend(Uuid::try_parse(&event.aggregate_id).ok());
                            }
                        }
                        changed
                    }
                };
                let outcome = if changed.is_empty() {
                    self.sync(pool, clock.now()).await
                } else {
                    self.send_changed(pool, &changed, clock.now()).await
                };
                if let Err(error) = outcome {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "the alerts were not sent; sending again at the next check"
                    );
                }
            }
        }
        .await;
        session.release().await;
        outcome
    }

    /// Sends the alerts `changed` (their changes committed): only those, as
    /// long as the last full send succeeded; else everything.
    async fn send_changed(&self, pool: &PgPool, changed: &[Uuid], now: DateTime<Utc>) -> anyhow::Result<()> {
        if self.last_sent().is_none() {
            return self.sync(pool, now).await;
        }
        let mut conn = pool.acquire().await?;
        let silences = Active::load(&mut conn, now).await?;
        let mut alerts: Vec<AlertRecord> = store::get_many(&mut conn, changed)
            .await?
            .into_values()
            .filter(|alert| is_sent(alert, &silences))
            .collect();
        drop(conn);
        alerts.sort_by_key(|alert| (alert.starts_at, alert.id));
        let outcome = self.send(&alerts, now).await;
        if outcome.is_err() {
            *self.last_sent() = None;
        }
        outcome
    }

    /// Sends every alert when one was annotated since the last send (here
    /// or on another replica), when the resend interval has passed, when a
    /// silence started or ended, or when the last send failed.
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
            .filter(|alert| is_sent(alert, &silences))
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
        let span = crm_platform::trace_context::http_client_span("POST", url);
        let response =
            self.client.post(format!("{url}/api/v2/alerts")).json(alerts).send().instrument(span.clone()).await?;
        let status = response.status();
        span.record("http.response.status_code", i64::from(status.as_u16()));
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            anyhow::bail!("HTTP {status}: {}", body.chars().take(300).collect::<String>());
        }
        Ok(())
    }
}

/// The ids of the changes taken lately, from the live lane or the feed:
/// each change is sent once though both bring it.
#[derive(Default)]
struct Taken {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl Taken {
    /// How many ids are kept: far more than the lane delivers before the feed catches up with it.
    const KEPT: usize = 100_000;

    /// Notes `id`; false when it was taken already.
    fn first_time(&mut self, id: &str) -> bool {
        if !self.ids.insert(id.to_string()) {
            return false;
        }
        self.order.push_back(id.to_string());
        if self.order.len() > Self::KEPT
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::Taken;

    #[test]
    fn a_change_both_the_lane_and_the_feed_bring_is_taken_once() {
        let mut taken = Taken::default();
        assert!(taken.first_time("a"));
        assert!(!taken.first_time("a"), "the feed brings what the lane brought");
        for n in 0..Taken::KEPT {
            taken.first_time(&n.to_string());
        }
        assert!(taken.first_time("a"), "forgotten once far behind");
        assert_eq!(taken.ids.len(), Taken::KEPT);
    }
}
