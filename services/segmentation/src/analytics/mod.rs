//! Customer analytics computed from the read model's purchases: customers
//! won, lost, grown and shrunk per period ([`movement`]), and how
//! concentrated revenue is ([`concentration`]). Pure: the store reads the
//! totals, these functions decide what they mean, so the definitions are
//! tested on hand-checked cases without a database.

pub mod associations;
pub mod clv;
pub mod concentration;
pub mod movement;
pub mod recompute;
pub mod rfm;

use chrono::{DateTime, Datelike, Months, TimeZone, Utc};

/// A calendar month or quarter, in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeriodLength {
    Month,
    Quarter,
}

/// What a period is compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    PreviousPeriod,
    SamePeriodLastYear,
}

/// A half-open span of time: `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Span {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Span {
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && at < self.end
    }
}

/// The month or quarter `at` falls in, and the span it is compared with.
pub fn period(at: DateTime<Utc>, length: PeriodLength, comparison: Comparison) -> (Span, Span) {
    let (months, first_month) = match length {
        PeriodLength::Month => (1, at.month()),
        PeriodLength::Quarter => (3, (at.month() - 1) / 3 * 3 + 1),
    };
    let start = Utc.with_ymd_and_hms(at.year(), first_month, 1, 0, 0, 0).single().expect("the first of a month exists");
    let end = start + Months::new(months);
    let back = match comparison {
        Comparison::PreviousPeriod => Months::new(months),
        Comparison::SamePeriodLastYear => Months::new(12),
    };
    (Span { start, end }, Span { start: start - back, end: end - back })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn periods_are_calendar_months_and_quarters_in_utc() {
        let (march, february) = period(at("2026-03-31T23:59:59Z"), PeriodLength::Month, Comparison::PreviousPeriod);
        assert_eq!((march.start, march.end), (at("2026-03-01T00:00:00Z"), at("2026-04-01T00:00:00Z")));
        assert_eq!((february.start, february.end), (at("2026-02-01T00:00:00Z"), at("2026-03-01T00:00:00Z")));

        let (q1, q4) = period(at("2026-02-10T08:00:00Z"), PeriodLength::Quarter, Comparison::PreviousPeriod);
        assert_eq!((q1.start, q1.end), (at("2026-01-01T00:00:00Z"), at("2026-04-01T00:00:00Z")));
        assert_eq!((q4.start, q4.end), (at("2025-10-01T00:00:00Z"), at("2026-01-01T00:00:00Z")));

        let (q4, a_year_before) =
            period(at("2026-12-31T00:00:00Z"), PeriodLength::Quarter, Comparison::SamePeriodLastYear);
        assert_eq!((q4.start, q4.end), (at("2026-10-01T00:00:00Z"), at("2027-01-01T00:00:00Z")));
        assert_eq!((a_year_before.start, a_year_before.end), (at("2025-10-01T00:00:00Z"), at("2026-01-01T00:00:00Z")));
        assert!(q4.contains(q4.start) && !q4.contains(q4.end));
    }
}
