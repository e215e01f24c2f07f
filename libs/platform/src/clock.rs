//! Time, injected: roles read "now" from a [`Clock`] so that tests move time
//! by hand (windows that close, schedules that come due) instead of sleeping.

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Duration, Utc};

/// Where a role reads the current time.
#[derive(Clone)]
pub struct Clock(Inner);

#[derive(Clone)]
enum Inner {
    System,
    Manual(Arc<RwLock<DateTime<Utc>>>),
}

impl Clock {
    /// The machine's clock.
    pub fn system() -> Self {
        Clock(Inner::System)
    }

    /// A clock that stands at `at` until moved with [`Clock::set`] or [`Clock::advance`].
    pub fn manual(at: DateTime<Utc>) -> Self {
        Clock(Inner::Manual(Arc::new(RwLock::new(at))))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match &self.0 {
            Inner::System => Utc::now(),
            Inner::Manual(at) => *at.read().unwrap_or_else(|poison| poison.into_inner()),
        }
    }

    /// Moves a manual clock to `at` (a system clock ignores it).
    pub fn set(&self, at: DateTime<Utc>) {
        if let Inner::Manual(current) = &self.0 {
            *current.write().unwrap_or_else(|poison| poison.into_inner()) = at;
        }
    }

    /// Moves a manual clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.set(self.now() + by);
    }

    pub fn is_manual(&self) -> bool {
        matches!(self.0, Inner::Manual(_))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Inner::System => f.write_str("Clock::system"),
            Inner::Manual(_) => write!(f, "Clock::manual({})", self.now()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let start = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&Utc);
        let clock = Clock::manual(start);
        let copy = clock.clone();
        assert_eq!(clock.now(), start);
        copy.advance(Duration::days(31));
        assert_eq!(clock.now(), start + Duration::days(31));
        let system = Clock::system();
        system.set(start);
        assert!(system.now() > start);
    }
}
