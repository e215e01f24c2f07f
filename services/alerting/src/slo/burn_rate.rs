//! Multi-window, multi-burn-rate alerting, as the SRE workbook derives it
//! ("Alerting on SLOs"), for any objective.
//!
//! A tier pages (or opens a ticket) when, over its long window, the error
//! budget is being spent fast enough to consume a given fraction of the whole
//! budget: the burn-rate threshold is `fraction × slo_window / long_window`
//! (2% in 1 h of a 30-day window: 14.4). A short window of 1/12 of the long
//! one must burn as fast too, so the alert stops soon after the problem does.
//!
//! The largest burn rate an SLI can show is `1 / (1 - objective)` (every
//! event bad): 1,000 at 99.9%, but 10 at 90%, where 14.4 can never be
//! reached. So a tier whose threshold is above half the largest burn rate
//! (unreachable, or reachable only when nearly everything fails) is derived
//! again: its threshold is set to half the largest rate (a total outage
//! crosses it with margin) and its windows lengthened so that it still
//! means the same share of the budget. A tier written by hand that can
//! never fire is refused, saying which.

use std::time::Duration;

/// What an alert asks of people.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Severity {
    Page,
    Ticket,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Page => "page",
            Severity::Ticket => "ticket",
        }
    }
}

/// A tier: spending `budget_fraction` of the budget within `long`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tier {
    pub severity: Severity,
    pub budget_fraction: f64,
    pub long: Duration,
}

const HOUR: u64 = 3600;

/// The workbook's tiers: page at 2% of the budget in 1 h and at 5% in 6 h,
/// open a ticket at 10% in 3 days.
pub const WORKBOOK: [Tier; 3] = [
    Tier { severity: Severity::Page, budget_fraction: 0.02, long: Duration::from_secs(HOUR) },
    Tier { severity: Severity::Page, budget_fraction: 0.05, long: Duration::from_secs(6 * HOUR) },
    Tier { severity: Severity::Ticket, budget_fraction: 0.10, long: Duration::from_secs(72 * HOUR) },
];

/// A tier made concrete for one SLO: the burn rate to alert at, and its windows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Threshold {
    pub severity: Severity,
    pub budget_fraction: f64,
    pub burn_rate: f64,
    pub long: Duration,
    /// 1/12 of `long`, rounded up to a minute.
    pub short: Duration,
    /// Whether the workbook's window was lengthened because its threshold
    /// could not be reached at this objective.
    pub derived: bool,
}

impl Threshold {
    /// `1h/5m`: which window pair an alert's labels name.
    pub fn windows_label(&self) -> String {
        format!("{}/{}", notation(self.long), notation(self.short))
    }
}

/// A window as Prometheus writes durations, in its largest whole unit: `6m`, `173m`, `1h`, `3d`.
pub fn notation(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        s if s % (24 * HOUR) == 0 => format!("{}d", s / (24 * HOUR)),
        s if s % HOUR == 0 => format!("{}h", s / HOUR),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The largest burn rate an SLI can show at `objective` (every event bad).
pub fn max_burn_rate(objective: f64) -> f64 {
    1.0 / (1.0 - objective)
}

/// The burn rate at which `tier` fires for an SLO over `slo_window`.
fn burn_for(tier: &Tier, slo_window: Duration, long: Duration) -> f64 {
    tier.budget_fraction * slo_window.as_secs_f64() / long.as_secs_f64()
}

/// The SLO window the workbook's tiers are written for.
pub const WORKBOOK_WINDOW: Duration = Duration::from_secs(30 * 24 * HOUR);

/// `duration` rounded up to whole minutes, at least one: the indicators are counted per minute.
fn whole_minutes(duration: Duration) -> Duration {
    Duration::from_secs((duration.as_secs_f64() / 60.0).ceil().max(1.0) as u64 * 60)
}

/// `tiers` made concrete for `objective` over `slo_window`.
///
/// Under a 30-day window the tiers' windows shrink with it (a 7-day SLO
/// pages on 2% of its budget in 14 minutes, at the same burn rate of 14.4);
/// over 30 days they keep the workbook's lengths and their burn rates rise.
/// Windows are whole minutes. A tier whose threshold cannot be reached is
/// derived again (see the module doc).
pub fn thresholds(objective: f64, slo_window: Duration, tiers: &[Tier]) -> Vec<Threshold> {
    let ceiling = max_burn_rate(objective) / 2.0;
    let scale = (slo_window.as_secs_f64() / WORKBOOK_WINDOW.as_secs_f64()).min(1.0);
    let made = |tier: &Tier, long: Duration, derived: bool| {
        let long = whole_minutes(long);
        Threshold {
            severity: tier.severity,
            budget_fraction: tier.budget_fraction,
            burn_rate: burn_for(tier, slo_window, long),
            long,
            short: whole_minutes(long / 12),
            derived,
        }
    };
    tiers
        .iter()
        .map(|tier| {
            let scaled = made(tier, tier.long.mul_f64(scale), false);
            if scaled.burn_rate <= ceiling {
                return scaled;
            }
            // Same share of the budget, reachable: a lower rate over a longer window.
            made(tier, Duration::from_secs_f64(tier.budget_fraction * slo_window.as_secs_f64() / ceiling), true)
        })
        .collect()
}

/// A tier written by hand that can never fire at `objective`, and why.
pub fn unreachable(objective: f64, slo_window: Duration, tier: &Tier) -> Option<String> {
    let burn = burn_for(tier, slo_window, tier.long);
    let max = max_burn_rate(objective);
    (burn >= max).then(|| {
        format!(
            "{} of the budget in {} needs a burn rate of {burn:.2}, but at an objective of {} the burn rate cannot exceed {max:.2} (every event bad): lengthen the window or lower the fraction",
            percent(tier.budget_fraction),
            notation(tier.long),
            percent(objective)
        )
    })
}

fn percent(value: f64) -> String {
    let text = format!("{:.3}", value * 100.0);
    format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
}

/// The burn rate of `bad` out of `valid` events: how many times faster than
/// allowed the budget is being spent. `None` without events.
pub fn burn_rate(bad: u64, valid: u64, objective: f64) -> Option<f64> {
    (valid > 0).then(|| (bad as f64 / valid as f64) / (1.0 - objective))
}

/// The share of the error budget left over the SLO window (1: untouched;
/// negative: overspent).
pub fn budget_left(bad: u64, valid: u64, objective: f64) -> f64 {
    match burn_rate(bad, valid, objective) {
        Some(burn) => 1.0 - burn,
        None => 1.0,
    }
}

/// When the budget left runs out at `burn` (the forecast that lets people
/// act before the objective is missed); `None` when it does not at that rate.
pub fn exhausted_in(budget_left: f64, slo_window: Duration, burn: f64) -> Option<Duration> {
    if burn <= 0.0 || !burn.is_finite() {
        return None;
    }
    Some(Duration::from_secs_f64((budget_left.max(0.0) * slo_window.as_secs_f64() / burn).max(0.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const THIRTY_DAYS: Duration = WORKBOOK_WINDOW;

    #[test]
    fn the_workbook_table_at_999() {
        let made = thresholds(0.999, THIRTY_DAYS, &WORKBOOK);
        let table: Vec<(f64, String, bool)> =
            made.iter().map(|t| ((t.burn_rate * 1000.0).round() / 1000.0, t.windows_label(), t.derived)).collect();
        assert_eq!(
            table,
            [(14.4, "1h/5m".to_string(), false), (6.0, "6h/30m".to_string(), false), (1.0, "3d/6h".to_string(), false)]
        );
        assert_eq!(made[0].severity, Severity::Page);
        assert_eq!(made[2].severity, Severity::Ticket);
        assert!((max_burn_rate(0.999) - 1000.0).abs() < 1e-6);
    }

    #[test]
    fn at_90_percent_an_unreachable_page_is_derived_again_for_the_same_share_of_the_budget() {
        assert!((max_burn_rate(0.9) - 10.0).abs() < 1e-9);
        let made = thresholds(0.9, THIRTY_DAYS, &WORKBOOK);
        // 14.4 > 10: the page is derived at half the largest rate, over a longer window.
        assert!(made[0].derived);
        assert!((made[0].burn_rate - 5.0).abs() < 0.01, "{:?}", made[0]);
        assert_eq!(made[0].long, Duration::from_secs(2 * HOUR + 53 * 60));
        assert_eq!(made[0].short, Duration::from_secs(15 * 60)); // 14.4m, rounded up
        // Spending 2% at the derived rate over the derived window is still 2% of the budget.
        let spent = made[0].burn_rate * made[0].long.as_secs_f64() / THIRTY_DAYS.as_secs_f64();
        assert!((spent - 0.02).abs() < 0.0005, "{spent}");
        // 6 and 1 are reachable (and under half the largest rate? 6 is not: derived too).
        assert!(made[1].derived && made[1].burn_rate <= 5.0 + 1e-9);
        assert!(!made[2].derived && (made[2].burn_rate - 1.0).abs() < 1e-9);
        for threshold in &made {
            assert!(threshold.burn_rate < max_burn_rate(0.9), "{threshold:?} must be able to fire");
        }
    }

    #[test]
    fn shorter_windows_shrink_the_tiers_and_keep_their_rates() {
        let week = Duration::from_secs(7 * 24 * HOUR);
        let made = thresholds(0.999, week, &WORKBOOK);
        let labels: Vec<String> = made.iter().map(Threshold::windows_label).collect();
        // 1h × 7/30 = 14m, 6h × 7/30 = 84m, 72h × 7/30 = 16.8h (1008m); short windows 1/12, rounded up.
        assert_eq!(labels, ["14m/2m", "84m/7m", "1008m/84m"]);
        assert!((made[0].burn_rate - 14.4).abs() < 0.01, "{:?}", made[0]);
        assert!((made[2].burn_rate - 1.0).abs() < 0.01, "{:?}", made[2]);
        // Longer windows keep the workbook's lengths: 2% of 90 days in 1h is a rate of 43.2.
        let quarter = thresholds(0.999, Duration::from_secs(90 * 24 * HOUR), &WORKBOOK);
        assert_eq!(quarter[0].windows_label(), "1h/5m");
        assert!((quarter[0].burn_rate - 43.2).abs() < 1e-9);
        // A day: never under a minute.
        let day = thresholds(0.999, Duration::from_secs(24 * HOUR), &WORKBOOK);
        assert_eq!(day[0].windows_label(), "2m/1m");
    }

    #[test]
    fn a_tier_that_can_never_fire_is_named() {
        let reason = unreachable(0.9, THIRTY_DAYS, &WORKBOOK[0]).unwrap();
        assert!(reason.contains("2% of the budget in 1h needs a burn rate of 14.40"), "{reason}");
        assert!(reason.contains("cannot exceed 10.00"), "{reason}");
        assert!(unreachable(0.999, THIRTY_DAYS, &WORKBOOK[0]).is_none());
    }

    #[test]
    fn burn_budget_and_forecast() {
        // 99% objective, 2 bad in 100: burning twice as fast as allowed.
        assert!((burn_rate(2, 100, 0.99).unwrap() - 2.0).abs() < 1e-9);
        assert_eq!(burn_rate(0, 0, 0.99), None);
        assert!((budget_left(1, 200, 0.99) - 0.5).abs() < 1e-9);
        // Half the budget left over 30 days, burning at 2: gone in 7.5 days.
        let left = exhausted_in(0.5, THIRTY_DAYS, 2.0).unwrap();
        assert_eq!(left, Duration::from_secs(180 * HOUR));
        assert_eq!(exhausted_in(0.5, THIRTY_DAYS, 0.0), None);
    }
}
