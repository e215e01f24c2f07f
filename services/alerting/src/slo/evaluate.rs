//! Which of an SLO's alerts fire, from the counts of its indicator over each
//! alert's two windows: both windows must burn at the threshold, the long
//! one must hold at least `min_events` valid events (a quiet night with 3
//! requests does not page), and a firing page suppresses the ticket of the
//! same SLO.

use std::time::Duration;

use super::burn_rate::{Severity, Threshold, burn_rate};

/// Valid and bad events over a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub valid: u64,
    pub bad: u64,
}

/// One alert's state.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertState {
    pub threshold: Threshold,
    pub long_burn: Option<f64>,
    pub short_burn: Option<f64>,
    pub long_valid: u64,
    pub firing: bool,
}

/// The state of each alert, from `counts` over any window.
pub fn evaluate(
    objective: f64,
    min_events: u64,
    thresholds: &[Threshold],
    counts: impl Fn(Duration) -> Counts,
) -> Vec<AlertState> {
    let mut states: Vec<AlertState> = thresholds
        .iter()
        .map(|threshold| {
            let (long, short) = (counts(threshold.long), counts(threshold.short));
            let long_burn = burn_rate(long.bad, long.valid, objective);
            let short_burn = burn_rate(short.bad, short.valid, objective);
            let burning = |burn: Option<f64>| burn.is_some_and(|burn| burn >= threshold.burn_rate);
            AlertState {
                threshold: *threshold,
                long_burn,
                short_burn,
                long_valid: long.valid,
                firing: long.valid >= min_events && burning(long_burn) && burning(short_burn),
            }
        })
        .collect();
    if states.iter().any(|state| state.firing && state.threshold.severity == Severity::Page) {
        for state in states.iter_mut().filter(|state| state.threshold.severity == Severity::Ticket) {
            state.firing = false;
        }
    }
    states
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration as Span, Utc};

    use super::*;
    use crate::slo::burn_rate::{WORKBOOK, thresholds};

    const OBJECTIVE: f64 = 0.999;

    /// A minute-by-minute history: (minute, valid, bad).
    struct History(Vec<(DateTime<Utc>, u64, u64)>);

    impl History {
        fn new() -> Self {
            History(Vec::new())
        }

        /// `minutes` minutes from `start` with `per_minute` events, `error_ratio` of them bad.
        fn run(&mut self, start: DateTime<Utc>, minutes: i64, per_minute: u64, error_ratio: f64) {
            for minute in 0..minutes {
                let bad = (per_minute as f64 * error_ratio).round() as u64;
                self.0.push((start + Span::minutes(minute), per_minute, bad));
            }
        }

        fn counts(&self, now: DateTime<Utc>) -> impl Fn(Duration) -> Counts + '_ {
            move |window| {
                let from = now - Span::from_std(window).unwrap();
                self.0.iter().filter(|(minute, ..)| *minute > from && *minute <= now).fold(
                    Counts::default(),
                    |total, (_, valid, bad)| Counts { valid: total.valid + valid, bad: total.bad + bad },
                )
            }
        }

        fn firing(&self, now: DateTime<Utc>, min_events: u64) -> Vec<String> {
            let made = thresholds(OBJECTIVE, std::time::Duration::from_secs(30 * 24 * 3600), &WORKBOOK);
            evaluate(OBJECTIVE, min_events, &made, self.counts(now))
                .into_iter()
                .filter(|state| state.firing)
                .map(|state| format!("{} {}", state.threshold.severity.as_str(), state.threshold.windows_label()))
                .collect()
        }
    }

    fn start() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z").unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_steady_twofold_burn_opens_a_ticket_not_a_page() {
        let mut history = History::new();
        // Four days at 0.2% errors: twice the 0.1% the objective allows.
        history.run(start(), 4 * 24 * 60, 1000, 0.002);
        assert_eq!(history.firing(start() + Span::days(4), 10), ["ticket 3d/6h"]);
    }

    #[test]
    fn a_sudden_outage_pages_within_minutes_and_stops_soon_after_recovery() {
        let mut history = History::new();
        history.run(start(), 24 * 60, 100, 0.0);
        // A 20x burn: 2% of events fail from 24:00 on.
        let outage = start() + Span::days(1);
        history.run(outage, 30, 100, 0.02);
        // Five minutes in, the short window burns at 20 but the hour only at 1.7.
        assert!(history.firing(outage + Span::minutes(5), 10).is_empty(), "not yet: the hour has seen too little");
        // Forty-five minutes in, the outage still on: the hour has burned at 15 (> 14.4).
        let mut ongoing = History(history.0.clone());
        ongoing.run(outage + Span::minutes(30), 30, 100, 0.02);
        assert_eq!(ongoing.firing(outage + Span::minutes(45), 10), ["page 1h/5m"]);
        // Recovered at 60 minutes: five minutes later the short window is clean, the page stops.
        ongoing.run(outage + Span::minutes(60), 30, 100, 0.0);
        assert!(ongoing.firing(outage + Span::minutes(66), 10).is_empty());
    }

    #[test]
    fn a_quiet_night_with_three_requests_does_not_page() {
        let mut history = History::new();
        history.run(start(), 60, 0, 0.0);
        // 3 requests in the hour, 1 of them bad: a burn of 333, but too few events.
        history.0.push((start() + Span::minutes(58), 3, 1));
        assert!(history.firing(start() + Span::minutes(59), 10).is_empty());
        let unguarded = history.firing(start() + Span::minutes(59), 3);
        assert!(unguarded.contains(&"page 1h/5m".to_string()), "with a guard of 3 it would: {unguarded:?}");
    }

    #[test]
    fn a_page_suppresses_the_ticket_of_the_same_slo() {
        let mut history = History::new();
        history.run(start(), 3 * 24 * 60, 1000, 0.002);
        history.run(start() + Span::days(3), 60, 1000, 0.05);
        let firing = history.firing(start() + Span::days(3) + Span::minutes(59), 10);
        assert!(firing.iter().any(|alert| alert.starts_with("page")), "{firing:?}");
        assert!(!firing.iter().any(|alert| alert.starts_with("ticket")), "{firing:?}");
    }
}
