//! Customers won, lost, grown and shrunk in a period, in all and per
//! account owner. A customer is a contact with a purchase in the currency
//! asked; the definitions (also on `crm.segmentation.v1.MovementCounts`):
//!
//! - **active**: bought in the period; **revenue**: what they spent in it;
//! - **won**: the first purchase ever falls in the period;
//! - **lost**: the churn window after the latest purchase ended in the
//!   period, and before now (no purchase since); counted with what the
//!   customer spent in the churn window up to that latest purchase;
//! - **grown** / **shrunk**: bought in the compared span, not lost, and
//!   spent more / less in the period (nothing counts as less); counted with
//!   the sum of the changes.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use super::Span;

/// One customer's purchases up to the period's end, in the currency asked.
#[derive(Clone, Debug, PartialEq)]
pub struct Bought {
    /// The account owner now (empty for none).
    pub owner: String,
    pub first_at: DateTime<Utc>,
    /// The latest purchase before the period's end.
    pub last_at: DateTime<Utc>,
    /// Spent in the period.
    pub revenue: i64,
    /// Spent in the compared span.
    pub compared: i64,
    /// Spent in the churn window up to `last_at` (read only for customers
    /// whose window ends in the period; 0 for the others).
    pub last_window: i64,
}

/// The movement of a set of customers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub active: i64,
    pub revenue: i64,
    pub compared_revenue: i64,
    pub won: i64,
    pub won_revenue: i64,
    pub lost: i64,
    pub lost_revenue: i64,
    pub grown: i64,
    pub grown_change: i64,
    pub shrunk: i64,
    pub shrunk_change: i64,
}

/// When a customer whose latest purchase was at `last_at` is lost.
pub fn lost_at(last_at: DateTime<Utc>, churn: Duration) -> DateTime<Utc> {
    last_at + churn
}

/// Whether a customer counts as lost in `period`, as of `now`.
pub fn is_lost(bought: &Bought, period: Span, churn: Duration, now: DateTime<Utc>) -> bool {
    let at = lost_at(bought.last_at, churn);
    period.start <= at && at < period.end.min(now)
}

impl Counts {
    fn add(&mut self, bought: &Bought, period: Span, churn: Duration, now: DateTime<Utc>) {
        if bought.revenue > 0 {
            self.active += 1;
            self.revenue += bought.revenue;
        }
        self.compared_revenue += bought.compared;
        let won = period.contains(bought.first_at);
        if won {
            self.won += 1;
            self.won_revenue += bought.revenue;
        }
        if is_lost(bought, period, churn, now) {
            self.lost += 1;
            self.lost_revenue += bought.last_window;
        } else if !won && bought.compared > 0 {
            let change = bought.revenue - bought.compared;
            if change > 0 {
                self.grown += 1;
                self.grown_change += change;
            } else if change < 0 {
                self.shrunk += 1;
                self.shrunk_change += change;
            }
        }
    }
}

/// The movement of every customer and of each owner's.
pub fn count<'a>(
    customers: impl IntoIterator<Item = &'a Bought>,
    period: Span,
    churn: Duration,
    now: DateTime<Utc>,
) -> (Counts, BTreeMap<String, Counts>) {
    let mut total = Counts::default();
    let mut owners: BTreeMap<String, Counts> = BTreeMap::new();
    for bought in customers {
        total.add(bought, period, churn, now);
        owners.entry(bought.owner.clone()).or_default().add(bought, period, churn, now);
    }
    (total, owners)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::{Comparison, PeriodLength, period};

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn bought(owner: &str, first: &str, last: &str, revenue: i64, compared: i64, last_window: i64) -> Bought {
        Bought { owner: owner.into(), first_at: at(first), last_at: at(last), revenue, compared, last_window }
    }

    #[test]
    fn a_hand_checked_quarter() {
        // Q2 2026 against Q1, churn 365 days, asked on 2026-05-15 (mid-quarter).
        let (q2, _) = period(at("2026-05-15T00:00:00Z"), PeriodLength::Quarter, Comparison::PreviousPeriod);
        let now = at("2026-05-15T12:00:00Z");
        let churn = Duration::days(365);
        let customers = [
            // Won: first purchase in April.
            bought("ann", "2026-04-02T10:00:00Z", "2026-04-20T10:00:00Z", 500, 0, 0),
            // Grown: 300 in Q1, 800 in Q2.
            bought("ann", "2025-01-05T00:00:00Z", "2026-05-01T00:00:00Z", 800, 300, 0),
            // Shrunk to nothing: 400 in Q1, none since; not lost (bought in March).
            bought("bob", "2025-06-01T00:00:00Z", "2026-03-10T00:00:00Z", 0, 400, 0),
            // Lost on 2026-04-30 (last purchase 2025-04-30): before now, so counted.
            bought("bob", "2024-01-01T00:00:00Z", "2025-04-30T00:00:00Z", 0, 0, 900),
            // Would be lost on 2026-06-01: after now, not yet.
            bought("", "2024-01-01T00:00:00Z", "2025-06-01T00:00:00Z", 0, 0, 700),
            // Unchanged: 200 and 200.
            bought("", "2025-02-01T00:00:00Z", "2026-04-03T00:00:00Z", 200, 200, 0),
        ];
        let (total, owners) = count(&customers, q2, churn, now);
        assert_eq!(
            total,
            Counts {
                active: 3,
                revenue: 1500,
                compared_revenue: 900,
                won: 1,
                won_revenue: 500,
                lost: 1,
                lost_revenue: 900,
                grown: 1,
                grown_change: 500,
                shrunk: 1,
                shrunk_change: -400,
            }
        );
        assert_eq!(owners.keys().collect::<Vec<_>>(), ["", "ann", "bob"]);
        assert_eq!((owners["ann"].won, owners["ann"].grown, owners["ann"].revenue), (1, 1, 1300));
        assert_eq!((owners["bob"].lost, owners["bob"].shrunk, owners["bob"].active), (1, 1, 0));
        assert_eq!((owners[""].active, owners[""].lost), (1, 0));

        // The same customers seen after the quarter: the June loss counts too.
        let (after, _) = count(&customers, q2, churn, at("2026-08-01T00:00:00Z"));
        assert_eq!((after.lost, after.lost_revenue), (2, 1600));
    }

    #[test]
    fn the_boundaries_belong_to_the_period_that_starts_there() {
        let (april, _) = period(at("2026-04-10T00:00:00Z"), PeriodLength::Month, Comparison::PreviousPeriod);
        let now = at("2027-01-01T00:00:00Z");
        let first_instant = bought("", "2026-04-01T00:00:00Z", "2026-04-01T00:00:00Z", 1, 0, 0);
        let last_instant_before = bought("", "2026-03-31T23:59:59Z", "2026-03-31T23:59:59Z", 0, 1, 0);
        let (total, _) = count([&first_instant, &last_instant_before], april, Duration::days(365), now);
        assert_eq!((total.won, total.active, total.shrunk), (1, 1, 1));
        // Lost exactly when April starts (2026-03-02 + 30 days), and not lost in March.
        let lost_on_the_first = bought("", "2026-01-01T00:00:00Z", "2026-03-02T00:00:00Z", 0, 5, 5);
        let (total, _) = count([&lost_on_the_first], april, Duration::days(30), now);
        assert_eq!((total.lost, total.shrunk), (1, 0), "lost takes precedence over shrunk");
        let (march, _) = period(at("2026-03-10T00:00:00Z"), PeriodLength::Month, Comparison::PreviousPeriod);
        assert!(!is_lost(&lost_on_the_first, march, Duration::days(30), now));
    }
}
