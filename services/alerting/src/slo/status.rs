//! An SLO now: its indicator over the whole window, the budget left, each
//! alert's burn, and when the budget runs out at the current pace.

use std::time::Duration;

use super::{
    burn_rate::{self, Threshold, WORKBOOK},
    evaluate::{AlertState, Counts, evaluate},
};
use crate::{
    alerts::Wanted,
    store::{alerts::Pairs, slos::SloRecord},
};

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

/// The alerts `slo` should have firing, given its `status`: one per firing
/// window pair, labelled with the SLO, the severity and the windows.
pub fn wanted_alerts(slo: &SloRecord, status: &Status) -> Vec<Wanted> {
    status
        .alerts
        .iter()
        .filter(|alert| alert.firing)
        .map(|alert| {
            let threshold = &alert.threshold;
            let mut labels = Pairs::from([
                ("alertname".to_string(), "SloErrorBudgetBurn".to_string()),
                ("severity".to_string(), threshold.severity.as_str().to_string()),
                ("slo".to_string(), slo.name.clone()),
                ("slo_id".to_string(), slo.id.to_string()),
                ("window".to_string(), threshold.windows_label()),
            ]);
            if !slo.owner.is_empty() {
                labels.insert("owner".into(), slo.owner.clone());
            }
            let burn = |rate: Option<f64>| rate.map_or_else(|| "none".to_string(), |rate| format!("{rate:.2}"));
            let exhausted = status.exhausted_in.map_or_else(|| "not at this rate".to_string(), human_duration);
            let annotations = Pairs::from([
                (
                    "summary".to_string(),
                    format!(
                        "{}: the error budget burns {}× faster than allowed over {}",
                        slo.name,
                        burn(alert.long_burn),
                        threshold.windows_label()
                    ),
                ),
                (
                    "description".to_string(),
                    format!(
                        "At this rate {} of the budget goes in {}; {:.1}% of the budget is left over the SLO window, gone in {}.",
                        percent(threshold.budget_fraction),
                        human_duration(threshold.long),
                        status.budget_left * 100.0,
                        exhausted
                    ),
                ),
                ("objective".to_string(), slo.objective.to_string()),
                ("burn_rate_long".to_string(), burn(alert.long_burn)),
                ("burn_rate_short".to_string(), burn(alert.short_burn)),
                ("burn_rate_threshold".to_string(), format!("{:.2}", threshold.burn_rate)),
                ("budget_left".to_string(), format!("{:.4}", status.budget_left)),
            ]);
            Wanted { labels, annotations }
        })
        .collect()
}

fn percent(fraction: f64) -> String {
    format!("{}%", (fraction * 1000.0).round() / 10.0)
}

/// `2h 53m`, `7d 4h`, `12m`: to the minute.
pub fn human_duration(duration: Duration) -> String {
    let minutes = duration.as_secs() / 60;
    let (days, hours, minutes) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    let parts: Vec<String> = [(days, "d"), (hours, "h"), (minutes, "m")]
        .iter()
        .filter(|(value, _)| *value > 0)
        .map(|(value, unit)| format!("{value}{unit}"))
        .collect();
    if parts.is_empty() { "under a minute".into() } else { parts.join(" ") }
}
