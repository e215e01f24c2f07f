//! The evaluator: every evaluation interval, on one replica at a time,
//! each SLO's status is computed at the clock's now, its alerts brought to
//! what the status says (in one transaction with their events), its figures
//! exported on `/metrics`, and alerts whose silence ended announced. (The
//! alerts reach Alertmanager from `delivery::alertmanager`, which follows
//! their changes.)

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crm_platform::{
    clock::Clock,
    metrics::{Metrics, SloFigures},
};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::{
    alerts,
    slo::{
        evaluate::Counts,
        prometheus::Prometheus,
        status::{self, Status},
    },
    store::slos::{self, SloRecord},
};

/// Taken by every transaction that changes alerts, so two writers never
/// decide about the same alerts at once.
pub const ALERTS_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtextextended('crm.alerting.alerts', 0))";
const LEADER_LOCK: &str = "crm.alerting.evaluator";

pub struct Evaluator {
    pub pool: PgPool,
    pub clock: Clock,
    pub metrics: Metrics,
    /// Where Prometheus indicators are read (`CRM_PROMETHEUS_URL`).
    pub prometheus: Option<Prometheus>,
}

impl Evaluator {
    /// Evaluates every `interval` until `shutdown`, while this replica leads.
    pub fn spawn(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        let pool = self.pool.clone();
        crm_platform::leader::spawn_periodic(pool, LEADER_LOCK, interval, shutdown, move || {
            let evaluator = self.clone();
            async move { evaluator.run_once().await }
        });
    }

    /// The counts of the SLOs whose indicator Prometheus reads, asked
    /// before the evaluation's transaction (no lock is held over HTTP). An
    /// SLO Prometheus cannot answer for is left out: its alerts stay as they are.
    async fn prometheus_counts(&self, now: DateTime<Utc>) -> anyhow::Result<HashMap<Uuid, HashMap<Duration, Counts>>> {
        let mut conn = self.pool.acquire().await?;
        let slos = slos::all(&mut conn).await?;
        drop(conn);
        let mut read = HashMap::new();
        for slo in slos {
            let Some(queries) = &slo.prometheus else { continue };
            let Some(prometheus) = &self.prometheus else {
                tracing::warn!(slo = %slo.id, "an SLO reads Prometheus but CRM_PROMETHEUS_URL is not set; it is not evaluated");
                continue;
            };
            match prometheus.counts(queries, &status::windows(&slo), now).await {
                Ok(counts) => {
                    read.insert(slo.id, counts);
                }
                Err(error) => {
                    tracing::warn!(slo = %slo.id, %error, "Prometheus did not give an SLO's counts; its alerts stay as they are")
                }
            }
        }
        Ok(read)
    }

    /// One evaluation of everything.
    pub async fn run_once(&self) -> anyhow::Result<()> {
        let now = self.clock.now();
        let mut from_prometheus = self.prometheus_counts(now).await?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(ALERTS_LOCK).execute(&mut *tx).await?;
        let mut figures = Vec::new();
        for slo in slos::all(&mut tx).await? {
            let counts = match &slo.prometheus {
                None => slos::counts(&mut tx, slo.id, now, &status::windows(&slo)).await?,
                Some(_) => match from_prometheus.remove(&slo.id) {
                    Some(counts) => counts,
                    None => continue,
                },
            };
            let found = status::status(&slo, |window| counts.get(&window).copied().unwrap_or_default());
            figures.push(slo_figures(&slo, &found));
            let changes = alerts::reconcile(&mut tx, "slo", slo.id, status::wanted_alerts(&slo, &found), now).await?;
            for alert in &changes.fired {
                tracing::info!(slo = %slo.id, alert = %alert.id, labels = ?alert.labels, "SLO alert fired");
            }
            for alert in &changes.resolved {
                tracing::info!(slo = %slo.id, alert = %alert.id, labels = ?alert.labels, "SLO alert resolved");
            }
        }
        for alert in alerts::expire(&mut tx, now).await? {
            tracing::info!(alert = %alert.id, "an alert resolved by itself (its rule's resolve_after)");
        }
        let unsilenced = alerts::announce_unsilenced(&mut tx, now).await?;
        if unsilenced > 0 {
            tracing::info!(alerts = unsilenced, "alerts whose silence ended are announced");
        }
        tx.commit().await?;
        self.metrics.set_slos(figures);
        Ok(())
    }
}

fn slo_figures(slo: &SloRecord, found: &Status) -> SloFigures {
    let mut burn_rates: Vec<(String, f64)> = Vec::new();
    for alert in &found.alerts {
        let threshold = &alert.threshold;
        let windows = threshold.windows_label();
        let (long, short) = windows.split_once('/').unwrap_or((&windows, ""));
        for (window, burn) in [(long, alert.long_burn), (short, alert.short_burn)] {
            if !burn_rates.iter().any(|(known, _)| known == window) {
                burn_rates.push((window.to_string(), burn.unwrap_or(0.0)));
            }
        }
    }
    SloFigures {
        slo: slo.name.clone(),
        objective: slo.objective,
        sli: found.sli,
        budget_left: found.budget_left,
        burn_rates,
        alerts: found
            .alerts
            .iter()
            .map(|alert| (alert.threshold.severity.as_str().to_string(), alert.threshold.windows_label(), alert.firing))
            .collect(),
    }
}
