//! The analytics that are computed over the whole base and kept: the
//! association rules (`ComputeAssociationRules`), the RFM scores
//! (`ComputeRfm`) and the lifetime-value fit (`FitLifetimeValue`), on
//! demand and daily on one replica at a time (an advisory lock) with the
//! parameters last used, so that offers, groups and values follow what
//! customers buy. The rules are computed at once on an install that never
//! had them; RFM and lifetime value once they have been asked for (they
//! need a currency).
//!
//! Each gives way to bulk streams between its steps (each slice of the
//! whole-base read, storing the results, each page of the features' refresh:
//! `foreground::GiveWay`): run beside an ingest at a million customers, a
//! computation slowed it by a quarter to three quarters. A computation asked during an ingest
//! therefore answers after it, or after five minutes of giving way.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use crm_platform::{Error, clock::Clock, foreground::GiveWay, leader::SessionLock};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Span, associations, clv, rfm};
use crate::{
    features::{self, FeatureDoc},
    segments::Segments,
    store::{
        analytics::{self as store, ClvFit, ClvValue, RfmRun, RulesRun},
        read_model,
    },
};

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
    let mut way = GiveWay::default();
    let mut phases = Phases::start("association rules");
    let baskets = store::baskets(pool, &mut way, window).await?;
    phases.done("read");
    let rules = crate::parallel::background({
        let Params { min_support, min_confidence, .. } = params;
        move || (baskets.len() as i64, associations::rules(&baskets, min_support, min_confidence))
    });
    let (baskets, rules) = rules.await.map_err(Error::Internal)?;
    let run = RulesRun {
        computed_at: now,
        window_days: params.window_days,
        min_support: params.min_support,
        min_confidence: params.min_confidence,
        baskets,
        total_rules: rules.len() as i64,
    };
    phases.done("count");
    way.before_step().await;
    let mut tx = pool.begin().await?;
    store::save_rules(&mut tx, &run, &rules, by).await?;
    tx.commit().await?;
    phases.done("save");
    phases.log(&way);
    Ok(run)
}

/// Scores every customer of the window ending `now`, stores the scores in
/// place of the last ones and brings the features and the memberships that
/// read them up to date ([`refresh_features`]); returns the run.
pub async fn compute_rfm(
    pool: &PgPool,
    segments: &Segments,
    currency: &str,
    window_days: i32,
    now: DateTime<Utc>,
    by: &str,
) -> Result<RfmRun, Error> {
    let window = Span { start: now - chrono::Duration::days(window_days.into()), end: now };
    let mut way = GiveWay::default();
    let mut phases = Phases::start("RFM");
    let customers = store::rfm_totals(pool, &mut way, currency, window).await?;
    phases.done("read");
    let totals: Vec<rfm::Totals> = customers.iter().map(|(_, totals)| *totals).collect();
    let scores = crate::parallel::background(move || rfm::score(&totals)).await.map_err(Error::Internal)?;
    let scored: Vec<_> =
        customers.iter().zip(scores).map(|((contact, totals), scores)| (*contact, *totals, scores)).collect();
    let run = RfmRun { computed_at: now, currency: currency.to_string(), window_days, customers: scored.len() as i64 };
    phases.done("score");
    way.before_step().await;
    let mut tx = pool.begin().await?;
    store::save_rfm(&mut tx, &run, &scored, by).await?;
    tx.commit().await?;
    phases.done("save");
    refresh_giving_way(pool, segments, now, &mut way).await?;
    phases.done("refresh");
    phases.log(&way);
    Ok(run)
}

/// Fits BG/NBD and Gamma-Gamma to every customer's purchase days before
/// `now` in `currency` and stores each customer's values over the horizon.
/// The features follow, as [`compute_rfm`]'s do. FAILED_PRECONDITION with
/// fewer than [`clv::MIN_CUSTOMERS`] customers or repeat customers: a fit
/// on so few says nothing.
pub async fn fit_clv(
    pool: &PgPool,
    segments: &Segments,
    currency: &str,
    horizon_days: i32,
    now: DateTime<Utc>,
    by: &str,
) -> Result<ClvFit, Error> {
    let mut way = GiveWay::default();
    let mut phases = Phases::start("lifetime value");
    let customers = store::purchase_days(pool, &mut way, currency, now).await?;
    phases.done("read");
    let summaries: Vec<clv::Summary> = customers.iter().map(|(_, days)| clv::summarise(days, now)).collect();
    let repeat: Vec<(f64, f64)> = summaries
        .iter()
        .filter(|summary| summary.history.x > 0.0)
        .map(|summary| (summary.history.x, summary.repeat_mean))
        .collect();
    if summaries.len() < clv::MIN_CUSTOMERS || repeat.len() < clv::MIN_CUSTOMERS {
        return Err(Error::FailedPrecondition {
            reason: "TOO_FEW_CUSTOMERS",
            message: format!(
                "{} customers, {} of them with a repeat purchase, bought in {currency}: a lifetime-value fit needs at least {} of each",
                summaries.len(),
                repeat.len(),
                clv::MIN_CUSTOMERS
            ),
        });
    }
    let horizon = f64::from(horizon_days);
    let fitted = crate::parallel::background(move || -> anyhow::Result<_> {
        let histories: Vec<clv::History> = summaries.iter().map(|summary| summary.history).collect();
        let (purchases, bgnbd_log_likelihood) = clv::fit_bgnbd(&histories)?;
        let (spend, gamma_gamma_log_likelihood) = clv::fit_gamma_gamma(&repeat)?;
        let values: Vec<ClvValue> = summaries
            .iter()
            .map(|summary| {
                let expected_purchases = purchases.expected_purchases(&summary.history, horizon);
                let expected_spend = spend.expected_spend(summary.history.x, summary.repeat_mean);
                ClvValue {
                    historic_value: summary.total,
                    repeat_purchases: summary.history.x as i64,
                    probability_alive: purchases.probability_alive(&summary.history),
                    expected_purchases,
                    expected_spend,
                    predicted_value: (expected_purchases * expected_spend).round() as i64,
                }
            })
            .collect();
        Ok((purchases, bgnbd_log_likelihood, spend, gamma_gamma_log_likelihood, repeat.len(), values))
    });
    let (purchases, bgnbd_log_likelihood, spend, gamma_gamma_log_likelihood, repeat_customers, values) =
        fitted.await.map_err(Error::Internal)?.map_err(Error::Internal)?;
    let fit = ClvFit {
        fitted_at: now,
        currency: currency.to_string(),
        horizon_days,
        customers: values.len() as i64,
        repeat_customers: repeat_customers as i64,
        purchases,
        bgnbd_log_likelihood,
        spend,
        gamma_gamma_log_likelihood,
    };
    let values: Vec<_> = customers.iter().map(|(contact, _)| *contact).zip(values).collect();
    phases.done("fit");
    way.before_step().await;
    let mut tx = pool.begin().await?;
    store::save_clv(&mut tx, &fit, &values, by).await?;
    tx.commit().await?;
    phases.done("save");
    refresh_giving_way(pool, segments, now, &mut way).await?;
    phases.done("refresh");
    phases.log(&way);
    Ok(fit)
}

/// Contacts whose analytics features one transaction brings up to date.
const REFRESH_PAGE: i64 = 2000;
/// The session lock one refresh at a time holds.
const REFRESH_LOCK: &str = "crm.segmentation.analytics.refresh";
/// How often a refresh waiting for another looks again.
const REFRESH_WAIT: Duration = Duration::from_millis(100);

/// Brings the analytics features of the contacts a computation marked
/// (`store::save_rfm`, `store::save_clv`: those whose scores, group or
/// predicted value changed), and the memberships of the segments that read
/// them, up to what the stored RFM scores and lifetime values say: a page of
/// contacts a transaction, with their segments' events. One refresh at a
/// time (a session lock): one asked while another runs waits for it, then
/// does only what is left. Returns how many documents changed.
pub async fn refresh_features(pool: &PgPool, segments: &Segments, now: DateTime<Utc>) -> Result<usize, Error> {
    let mut way = GiveWay::default();
    refresh_giving_way(pool, segments, now, &mut way).await
}

/// Where a computation's time went, logged when it ends: the whole-base
/// read, the arithmetic, the save and the features' refresh, and how long
/// it gave way to bulk streams in all.
struct Phases {
    computation: &'static str,
    started: std::time::Instant,
    last: std::time::Instant,
    took: Vec<(&'static str, f64)>,
}

impl Phases {
    fn start(computation: &'static str) -> Phases {
        let now = std::time::Instant::now();
        Phases { computation, started: now, last: now, took: Vec::new() }
    }

    /// Ends the phase `name`, begun when the last one ended.
    fn done(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.took.push((name, (now - self.last).as_secs_f64()));
        self.last = now;
    }

    fn log(&self, way: &GiveWay) {
        let phases: Vec<String> = self.took.iter().map(|(name, seconds)| format!("{name} {seconds:.1} s")).collect();
        tracing::info!(
            computation = self.computation,
            seconds = self.started.elapsed().as_secs_f64(),
            gave_way_seconds = way.waited().as_secs_f64(),
            phases = phases.join(", "),
            "computed"
        );
    }
}

/// [`refresh_features`], giving way to bulk streams before each page as
/// the computation that asked for it does (`way`).
async fn refresh_giving_way(
    pool: &PgPool,
    segments: &Segments,
    now: DateTime<Utc>,
    way: &mut GiveWay,
) -> Result<usize, Error> {
    // Nothing marked (the leader's every look): no connection opened for the lock.
    if !store::refresh_pending(&mut *pool.acquire().await?).await? {
        return Ok(0);
    }
    let session = loop {
        if let Some(session) = SessionLock::try_take(pool, REFRESH_LOCK).await.map_err(Error::Internal)? {
            break session;
        }
        tokio::time::sleep(REFRESH_WAIT).await;
    };
    let refreshed = refresh_locked(pool, segments, now, way).await;
    session.release().await;
    refreshed
}

async fn refresh_locked(
    pool: &PgPool,
    segments: &Segments,
    now: DateTime<Utc>,
    way: &mut GiveWay,
) -> Result<usize, Error> {
    let started = std::time::Instant::now();
    let (mut after, mut changed, mut seen) = (Uuid::nil(), 0, 0);
    loop {
        way.before_step().await;
        let mut tx = pool.begin().await?;
        crate::store::lock_batch(&mut tx, false).await?;
        store::lock_against_refresh(&mut tx).await?;
        let read = segments.features_read_with(&mut tx, &features::ANALYTICS_FEATURES).await?;
        let page = read_model::apply_analytics(&mut tx, after, REFRESH_PAGE, &read, now).await?;
        let Some(last) = page.last else {
            tx.commit().await?;
            // A computation saved while this ran may have marked contacts
            // before `after`: done once a pass from the start finds none.
            if after.is_nil() {
                break;
            }
            after = Uuid::nil();
            continue;
        };
        // No segment reads an analytics feature: no membership can move.
        if !read.is_empty() {
            let docs: Vec<(Uuid, &FeatureDoc)> = page.changed.iter().map(|(contact, doc)| (*contact, doc)).collect();
            segments.reconcile_docs(&mut tx, &docs, &page.moved, now).await?;
        }
        tx.commit().await?;
        changed += page.changed.len();
        seen += page.seen;
        after = last;
    }
    tracing::info!(marked = seen, changed, seconds = started.elapsed().as_secs_f64(), "analytics features refreshed");
    // A refresh that rewrote a fifth or more of the documents vacuums the
    // features and the replaced scores at once: at a million, the autovacuum
    // that came minutes later slowed the offers' p99 from 6–8 ms to 19–26 ms.
    // (The first test spares a small refresh the count of every document.)
    if changed >= crm_platform::db::TIDY_AFTER
        && crm_platform::db::worth_tidying(changed, read_model::documents(pool).await?)
    {
        let tables = ["features", "rfm_scores", "clv_values", "analytics_dirty"].map(String::from);
        tokio::spawn({
            let pool = pool.clone();
            async move { crm_platform::db::tidy(&pool, &tables, "an analytics refresh").await }
        });
    }
    Ok(changed)
}

/// Whether what was computed at `last` (never: `None`) is due again at `now`.
pub fn due(last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    last.is_none_or(|last| last + EVERY <= now)
}

/// Runs until `shutdown`, on the replica that holds the lock.
pub fn spawn(pool: PgPool, clock: Clock, segments: Arc<Segments>, shutdown: CancellationToken) {
    let run_pool = pool.clone();
    crm_platform::leader::spawn_periodic(pool, LOCK, POLL, shutdown, move || {
        let (pool, clock, segments) = (run_pool.clone(), clock.clone(), segments.clone());
        async move {
            // A refresh a crash interrupted is finished first.
            refresh_features(&pool, &segments, clock.now()).await?;
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
                let run =
                    compute_rfm(&pool, &segments, &last.currency, last.window_days, clock.now(), "schedule").await?;
                tracing::info!(customers = run.customers, "RFM scores recomputed");
            }
            let last = store::last_clv_fit(&mut *pool.acquire().await?).await?;
            if let Some(last) = last.filter(|last| due(Some(last.fitted_at), clock.now())) {
                let fit = fit_clv(&pool, &segments, &last.currency, last.horizon_days, clock.now(), "schedule").await?;
                tracing::info!(customers = fit.customers, "lifetime value refitted");
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
