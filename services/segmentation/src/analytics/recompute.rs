//! The analytics that are computed over the whole base and kept: the
//! association rules (`ComputeAssociationRules`) and the RFM scores
//! (`ComputeRfm`), on demand and daily on one replica at a time (an
//! advisory lock) with the parameters last used, so that offers and groups
//! follow what customers buy. The rules are computed at once on an install
//! that never had them; RFM once it has been asked for (it needs a currency).

use std::time::Duration;

use chrono::{DateTime, Utc};
use crm_platform::{Error, clock::Clock};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::{Span, associations, rfm};
use crate::store::analytics::{self as store, RfmRun, RulesRun};

/// How often the leader looks whether the rules are due.
pub const POLL: Duration = Duration::from_secs(5);
/// How old the rules may grow before the leader recomputes them.
pub const EVERY: chrono::Duration = chrono::Duration::hours(24);
const LOCK: &str = "crm.segmentation.analytics";

/// What a computation is asked.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    pub window_days: i32,
    pub min_support: f64,
    pub min_confidence: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params { window_days: 365, min_support: 0.01, min_confidence: 0.1 }
    }
}

/// Counts the baskets of the window ending `now`, finds the rules and
/// stores them in place of the last ones; returns the run.
pub async fn compute(pool: &PgPool, params: Params, now: DateTime<Utc>, by: &str) -> Result<RulesRun, Error> {
    let window = Span { start: now - chrono::Duration::days(params.window_days.into()), end: now };
    let mut conn = pool.acquire().await?;
    let baskets = store::baskets(&mut conn, window).await?;
    drop(conn);
    let rules = tokio::task::spawn_blocking({
        let Params { min_support, min_confidence, .. } = params;
        move || (baskets.len() as i64, associations::rules(&baskets, min_support, min_confidence))
    });
    let (baskets, rules) = rules.await.map_err(|error| Error::Internal(error.into()))?;
    let run = RulesRun {
        computed_at: now,
        window_days: params.window_days,
        min_support: params.min_support,
        min_confidence: params.min_confidence,
        baskets,
        total_rules: rules.len() as i64,
    };
    let mut tx = pool.begin().await?;
    store::save_rules(&mut tx, &run, &rules, by).await?;
    tx.commit().await?;
    Ok(run)
}

/// Scores every customer of the window ending `now` and stores the scores
/// in place of the last ones; returns the run.
pub async fn compute_rfm(
    pool: &PgPool,
    currency: &str,
    window_days: i32,
    now: DateTime<Utc>,
    by: &str,
) -> Result<RfmRun, Error> {
    let window = Span { start: now - chrono::Duration::days(window_days.into()), end: now };
    let mut conn = pool.acquire().await?;
    let customers = store::rfm_totals(&mut conn, currency, window).await?;
    drop(conn);
    let totals: Vec<rfm::Totals> = customers.iter().map(|(_, totals)| *totals).collect();
    let scores = tokio::task::spawn_blocking(move || rfm::score(&totals))
        .await
        .map_err(|error| Error::Internal(error.into()))?;
    let scored: Vec<_> =
        customers.iter().zip(scores).map(|((contact, totals), scores)| (*contact, *totals, scores)).collect();
    let run = RfmRun { computed_at: now, currency: currency.to_string(), window_days, customers: scored.len() as i64 };
    let mut tx = pool.begin().await?;
    store::save_rfm(&mut tx, &run, &scored, by).await?;
    tx.commit().await?;
    Ok(run)
}

/// Whether what was computed at `last` (never: `None`) is due again at `now`.
pub fn due(last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    last.is_none_or(|last| last + EVERY <= now)
}

/// Runs until `shutdown`, on the replica that holds the lock.
pub fn spawn(pool: PgPool, clock: Clock, shutdown: CancellationToken) {
    let run_pool = pool.clone();
    crm_platform::leader::spawn_periodic(pool, LOCK, POLL, shutdown, move || {
        let (pool, clock) = (run_pool.clone(), clock.clone());
        async move {
            let last = store::last_run(&mut *pool.acquire().await?).await?;
            if due(last.as_ref().map(|run| run.computed_at), clock.now()) {
                let params = last
                    .map(|run| Params {
                        window_days: run.window_days,
                        min_support: run.min_support,
                        min_confidence: run.min_confidence,
                    })
                    .unwrap_or_default();
                let run = compute(&pool, params, clock.now(), "schedule").await?;
                tracing::info!(baskets = run.baskets, rules = run.total_rules, "association rules recomputed");
            }
            let last = store::last_rfm_run(&mut *pool.acquire().await?).await?;
            if let Some(last) = last.filter(|last| due(Some(last.computed_at), clock.now())) {
                let run = compute_rfm(&pool, &last.currency, last.window_days, clock.now(), "schedule").await?;
                tracing::info!(customers = run.customers, "RFM scores recomputed");
            }
            Ok(())
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_due_daily_and_at_once_when_never_computed() {
        let now: DateTime<Utc> = "2026-12-03T10:00:00Z".parse().unwrap();
        assert!(due(None, now));
        assert!(!due(Some(now - chrono::Duration::hours(23)), now));
        assert!(due(Some(now - chrono::Duration::hours(24)), now));
    }
}
