//! An SLO now: its indicator over the whole window, the budget left, each
//! alert's burn, and when the budget runs out at the current pace.

use std::time::Duration;

use super::{
    burn_rate::{self, Threshold, WORKBOOK},
    evaluate::{AlertState, Counts, evaluate},
};
use crate::store::slos::SloRecord;

/// What [`status`] finds.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    /// Over the SLO's window.
    pub total: Counts,
    /// Good / valid over the window; `None` without valid events.
    pub sli: Option<f64>,
    pub budget_left: f64,
    pub alerts: Vec<AlertState>,
    /// At the burn rate over the first (fastest) alert's long window.
    pub exhausted_in: Option<Duration>,
}

/// The alert thresholds of `slo`.
pub fn thresholds(slo: &SloRecord) -> Vec<Threshold> {
    burn_rate::thresholds(slo.objective, slo.window, &WORKBOOK)
}

/// Every window [`status`] reads: the SLO's and each alert's two.
pub fn windows(slo: &SloRecord) -> Vec<Duration> {
    let mut windows = vec![slo.window];
    for threshold in thresholds(slo) {
        windows.extend([threshold.long, threshold.short]);
    }
    windows
}

/// The status of `slo` from its counts over each of [`windows`].
pub fn status(slo: &SloRecord, counts: impl Fn(Duration) -> Counts) -> Status {
    let total = counts(slo.window);
    let alerts = evaluate(slo.objective, slo.min_events, &thresholds(slo), &counts);
    let budget_left = burn_rate::budget_left(total.bad, total.valid, slo.objective);
    let current = alerts.first().and_then(|fastest| fastest.long_burn).unwrap_or(0.0);
    Status {
        sli: (total.valid > 0).then(|| (total.valid - total.bad) as f64 / total.valid as f64),
        total,
        budget_left,
        alerts,
        exhausted_in: burn_rate::exhausted_in(budget_left, slo.window, current),
    }
}
