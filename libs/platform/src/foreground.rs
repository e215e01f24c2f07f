//! Calls from the suite's users (the foreground) and the background work
//! that makes room for them.
//!
//! After a migration the other roles read a million `ContactCreated`
//! events, each burst a transaction, as fast as the machine lets them;
//! lookups through the same process then waited behind them (p99 52–64 ms
//! at 1,000 calls/s straight after a million-contact import, 4–5 ms once
//! the followers had caught up). Every server of the process marks the
//! calls it starts ([`call_started`]; feed reads, health and reflection
//! are not the foreground); a feed follower working off a backlog while
//! calls came in the last [`WINDOW`] applies it in bursts of [`YIELD_BURST`]
//! events ([`burst`]) and pauses after each, so that it takes a quarter of
//! the time ([`pause`]) and a call never waits behind a long burst (p99
//! 18–19 ms with bursts of a thousand, 4.6–6.4 ms with bursts of 64); it
//! runs at full speed on a quiet machine or when it has caught up (a burst
//! smaller than half its maximum). It sees the calls of its own process
//! only: a follower in a process of its own runs as before.

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// How recent a call must be for the process to count as busy.
pub const WINDOW: Duration = Duration::from_millis(250);
/// While busy, background work gets one part in this many of the time.
pub const SHARE: u32 = 4;
/// The longest pause after one burst.
pub const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Milliseconds since the process's first look at the clock, plus one, of
/// the last foreground call (0: none yet).
static LAST_CALL: AtomicU64 = AtomicU64::new(0);

fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// Whether a call to `path` is the foreground: not a feed read, a health
/// check or reflection (what the roles and probes call on their own).
pub fn is_foreground(path: &str) -> bool {
    !(path.ends_with("/Subscribe") || path.ends_with("/ListEvents") || path.starts_with("/grpc."))
}

/// Marks a call to `path` starting now, when it is the foreground.
pub fn call_started(path: &str) {
    if is_foreground(path) {
        LAST_CALL.store(now_ms(), Ordering::Relaxed);
    }
}

/// Whether a foreground call started within the last [`WINDOW`].
pub fn busy() -> bool {
    let last = LAST_CALL.load(Ordering::Relaxed);
    last != 0 && now_ms().saturating_sub(last) <= WINDOW.as_millis() as u64
}

/// Events in one burst of a follower working off a backlog while callers
/// are served: a burst holds the process's threads (and its transaction the
/// database's) for as long as it takes, and a caller's call waits behind it.
pub const YIELD_BURST: usize = 64;

/// How many of `received` events a follower applies in one burst: all of
/// them, unless it works off a backlog while callers are served.
pub fn burst(received: usize, backlog: bool, busy: bool) -> usize {
    if backlog && busy { YIELD_BURST.min(received.max(1)) } else { received.max(1) }
}

/// How long background work that just took `took` pauses: while busy and
/// working off a backlog, long enough that it has one part in [`SHARE`]
/// of the time (at most [`MAX_PAUSE`]); otherwise not at all.
pub fn pause(took: Duration, backlog: bool, busy: bool) -> Duration {
    if backlog && busy { (took * (SHARE - 1)).min(MAX_PAUSE) } else { Duration::ZERO }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backlog_yields_three_quarters_of_the_time_to_callers_and_nothing_otherwise() {
        let took = Duration::from_millis(40);
        assert_eq!(pause(took, true, true), Duration::from_millis(120));
        assert_eq!(pause(took, false, true), Duration::ZERO, "caught up: every event at once");
        assert_eq!(pause(took, true, false), Duration::ZERO, "a quiet machine: full speed");
        assert_eq!(pause(Duration::from_secs(2), true, true), MAX_PAUSE);
    }

    #[test]
    fn a_backlog_goes_in_small_bursts_only_while_callers_are_served() {
        assert_eq!(burst(1000, true, true), YIELD_BURST);
        assert_eq!(burst(1000, true, false), 1000);
        assert_eq!(burst(10, false, true), 10);
        assert_eq!(burst(0, false, false), 1, "chunks of zero would panic");
    }

    #[test]
    fn feed_reads_probes_and_reflection_are_not_the_foreground() {
        assert!(is_foreground("/crm.contacts.v1.ContactsService/LookupContact"));
        assert!(is_foreground("/crm.contacts.v1.ContactsService/ImportContacts"));
        assert!(!is_foreground("/crm.contacts.v1.ContactsService/Subscribe"));
        assert!(!is_foreground("/crm.interactions.v1.InteractionsService/ListEvents"));
        assert!(!is_foreground("/grpc.health.v1.Health/Check"));
        call_started("/crm.contacts.v1.ContactsService/GetContact");
        assert!(busy());
    }
}
