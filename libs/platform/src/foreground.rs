//! Calls from the suite's users (the foreground) and the background work
//! that makes room for them.
//!
//! After a migration the other roles read a million `ContactCreated`
//! events, each burst a transaction, as fast as the machine lets them;
//! lookups through the same process then waited behind them (p99 52–64 ms
//! at 1,000 calls/s straight after a million-contact import, 4–5 ms once
//! the followers had caught up). Every server of the process marks the
//! calls it starts ([`call_started`]; feed reads, health, reflection and
//! bulk streams are not the foreground); a feed follower working off a backlog while
//! calls came in the last [`WINDOW`] applies it in bursts of [`YIELD_BURST`]
//! events ([`burst`]) and pauses after each, so that it takes a quarter of
//! the time ([`pause`]) and a call never waits behind a long burst (p99
//! 18–19 ms with bursts of a thousand, 4.6–6.4 ms with bursts of 64); it
//! runs at full speed on a quiet machine, while a bulk stream stores its
//! batches ([`bulk_batch`]), or when it has caught up (a burst smaller
//! than half its maximum). It sees the calls of its own process
//! only: a follower in a process of its own runs as before.
//!
//! A follower with a live lane (`consumer::Handler::ahead_types`) makes
//! room for callers during a bulk stream too ([`serving`]), and counts
//! the stream's events as backlog however few have arrived: what callers
//! wait on goes ahead of the backlog by the lane, so the backlog can wait
//! for them. Running at full speed beside an ingest, segmentation's 20
//! segments re-evaluated for each ingested contact had kept recorded
//! interactions waiting seconds for an answer (docs/benchmarks.md).
//!
//! Those bursts are background work in the scheduler's eyes too: they run
//! on the process's background threads ([`in_background`]) and on the
//! role's background pool, whose PostgreSQL processes run at the same
//! lower priority ([`BACKGROUND_NICE`], `db::connect_background`), so on a
//! busy machine the kernel runs a caller's threads and database process
//! first. Pauses alone left a lookup that arrived during a burst waiting
//! for a core (p99 3.4–3.9 ms at 1,000 lookups/s straight after a
//! million-contact import).
//!
//! The quarter is the process's, not each follower's: after an import
//! three followers read the contacts feed in one process (interactions,
//! segmentation, alerting's rules), and each taking a quarter of the time
//! left the callers a quarter between them. While busy, a burst and its
//! pause are taken under the process's one [`turn`], so the followers
//! yield to each other as well as to the callers.
//!
//! Whole-base computations (customer analytics) give way to bulk streams
//! between their steps ([`GiveWay`]): an ingest from billing is what the
//! business waits on, a nightly score is not. A process learns that a
//! bulk stream runs from its own servers ([`stream_started`], from the
//! call's start to its answer's end) or, when the stream is stored by
//! another process, from a follower receiving its events as they commit
//! ([`bulk_event_seen`]).

use std::{
    future::Future,
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::{Semaphore, SemaphorePermit};

/// The nice value of background work's threads and database processes:
/// below the callers' (0), so that the kernel runs a caller's work first.
pub const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread to [`BACKGROUND_NICE`] (on Linux the priority
/// is the thread's; threads it starts inherit it). Where the system
/// refuses, the thread keeps the usual priority.
pub fn lower_this_thread() {
    let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), BACKGROUND_NICE);
}

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

/// Bulk streams: an import, an ingest, an export. They are background
/// work of their own, run for throughput, not calls a person waits on;
/// followers yielding to them fell behind the feed for as long as they
/// ran (an ingest of 20,000 rows/s left the segments minutes behind).
const BULK: [&str; 5] =
    ["/ImportContacts", "/IngestInteractions", "/UploadInteractions", "/ExportContacts", "/ExportSegment"];

/// Whether a call to `path` is the foreground: not a feed read, a health
/// check or reflection (what the roles and probes call on their own), nor
/// a bulk stream.
pub fn is_foreground(path: &str) -> bool {
    !(path.ends_with("/Subscribe")
        || path.ends_with("/ListEvents")
        || path.starts_with("/grpc.")
        || BULK.iter().any(|method| path.ends_with(method)))
}

/// Marks a call to `path` starting now, when it is the foreground.
pub fn call_started(path: &str) {
    if is_foreground(path) {
        LAST_CALL.store(now_ms(), Ordering::Relaxed);
    }
}

/// Like [`LAST_CALL`], of the last batch of a bulk stream.
static LAST_BULK: AtomicU64 = AtomicU64::new(0);

/// Marks a batch of a bulk stream (an import's message, an ingest's) being
/// stored now: while one runs, followers keep up with what it writes
/// instead of yielding.
pub fn bulk_batch() {
    LAST_BULK.store(now_ms(), Ordering::Relaxed);
}

/// Bulk streams that write (an import, an ingest, an upload), of the
/// bulk streams in [`BULK`].
const BULK_WRITES: [&str; 3] = ["/ImportContacts", "/IngestInteractions", "/UploadInteractions"];

/// How many bulk streams that write are open in this process now.
static OPEN_BULK: AtomicU64 = AtomicU64::new(0);

/// A bulk stream that writes, counted open until this is dropped (with
/// the call's response).
#[derive(Debug)]
pub struct BulkStream(());

impl Drop for BulkStream {
    fn drop(&mut self) {
        OPEN_BULK.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a call to `path` open, when it is a bulk stream that writes,
/// until the answer is dropped: whole-base computations give way to it
/// for as long as it runs, however far apart its batches (a batch waited
/// seconds for the database beside a computation, and the gap between two
/// batches said nothing about whether the stream had ended).
pub fn stream_started(path: &str) -> Option<BulkStream> {
    BULK_WRITES.iter().any(|method| path.ends_with(method)).then(|| {
        OPEN_BULK.fetch_add(1, Ordering::Relaxed);
        BulkStream(())
    })
}

/// How old a bulk stream's event may be, when a follower receives it, to
/// say that the stream still runs: a batch commits and reaches the
/// followers within a fraction of this; a backlog worked off long after
/// an import says nothing about now. Also how long after such an event
/// the stream counts as running.
pub const BULK_FRESH: Duration = Duration::from_secs(2);

/// Like [`LAST_CALL`], of the last fresh bulk event a follower received.
static LAST_BULK_EVENT: AtomicU64 = AtomicU64::new(0);

/// Marks a bulk stream's event a follower received, committed `age` ago:
/// a fresh one means a bulk stream runs now, maybe in another process (a
/// role in a process of its own sees no other role's calls, but it follows
/// their feeds).
pub fn bulk_event_seen(age: Duration) {
    if says_a_stream_runs(age) {
        LAST_BULK_EVENT.store(now_ms(), Ordering::Relaxed);
    }
}

fn says_a_stream_runs(age: Duration) -> bool {
    age <= BULK_FRESH
}

/// Whether a bulk stream that writes runs: open in this process, or, as
/// its feed told a follower here within [`BULK_FRESH`], in another.
pub fn bulk_running() -> bool {
    OPEN_BULK.load(Ordering::Relaxed) > 0 || recent(now_ms(), LAST_BULK_EVENT.load(Ordering::Relaxed), BULK_FRESH)
}

/// Whether `at` (0: never) is within `within` of `now`.
fn recent(now: u64, at: u64, within: Duration) -> bool {
    at != 0 && now.saturating_sub(at) <= within.as_millis() as u64
}

/// Whether background work makes room for callers: a foreground call
/// started within the last [`WINDOW`], and no bulk stream stored a batch
/// in it. A bulk stream keeps the machine busy for as long as it runs, and
/// what it writes must be followed as it comes (segments, alerts within
/// seconds of the event); a follower yielding then fell further behind
/// with every batch. Straight after the stream, the backlog it left is
/// worked off in the callers' gaps.
pub fn busy() -> bool {
    yields(now_ms(), LAST_CALL.load(Ordering::Relaxed), LAST_BULK.load(Ordering::Relaxed))
}

/// Whether a foreground call started within the last [`WINDOW`], bulk
/// stream or not: when background work whose callers' events go ahead of
/// the bulk backlog by the feed's live lane makes room for them.
pub fn serving() -> bool {
    yields(now_ms(), LAST_CALL.load(Ordering::Relaxed), 0)
}

/// [`busy`] at `now`, given the last call's and the last bulk batch's times.
fn yields(now: u64, last_call: u64, last_bulk: u64) -> bool {
    recent(now, last_call, WINDOW) && !recent(now, last_bulk, WINDOW)
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

/// The process's one turn of background work while callers are served.
static TURN: Semaphore = Semaphore::const_new(1);

/// Waits for the process's turn of background work, held for a burst and
/// its pause: one follower at a time, so that together they take one part
/// in [`SHARE`] of the time.
pub async fn turn() -> SemaphorePermit<'static> {
    // The semaphore is never closed, so acquiring cannot fail.
    TURN.acquire().await.expect("the background turn is never closed")
}

/// The process's runtime for background work: as many threads as cores,
/// each at [`BACKGROUND_NICE`] (threads they start inherit it). `None`
/// where it could not be built; the work then runs where it is asked.
fn background_runtime() -> Option<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let built = tokio::runtime::Builder::new_multi_thread()
                .thread_name("crm-background")
                .on_thread_start(lower_this_thread)
                .enable_all()
                .build();
            built
                .inspect_err(
                    |error| tracing::warn!(%error, "no background threads: background work runs beside the callers"),
                )
                .ok()
        })
        .as_ref()
}

/// Runs `work` on the process's background threads, below the callers'
/// priority, and answers when it ends: on a busy machine the kernel runs
/// the callers' threads first, and a call does not wait for a core behind
/// it. A panic in `work` is resumed here.
pub async fn in_background<T: Send + 'static>(work: impl Future<Output = T> + Send + 'static) -> T {
    let Some(runtime) = background_runtime() else { return work.await };
    match runtime.spawn(work).await {
        Ok(answer) => answer,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        // The runtime is never shut down (a static), so its tasks are never cancelled.
        Err(error) => panic!("background work was cancelled: {error}"),
    }
}

/// The longest a whole-base computation gives way to bulk streams in all:
/// an ingest that never ends must not put off the nightly scores forever.
pub const MAX_GIVE_WAY: Duration = Duration::from_secs(300);
/// How often a computation giving way looks whether the stream has ended.
const GIVE_WAY_POLL: Duration = Duration::from_millis(100);

/// A whole-base computation giving way to bulk streams between its steps
/// (each slice of a whole-base read, storing the results, each page of a
/// refresh): before each, it waits while a bulk stream runs
/// ([`bulk_running`]), up to [`MAX_GIVE_WAY`] over the whole computation,
/// then runs at full speed.
/// Its steps are PostgreSQL's work on the ingest's cores (at a million
/// customers, a computation beside an ingest slowed it by a quarter to
/// three quarters); a step under way when a stream starts runs to its end.
#[derive(Debug)]
pub struct GiveWay {
    waited: Duration,
    limit: Duration,
}

impl Default for GiveWay {
    fn default() -> Self {
        GiveWay { waited: Duration::ZERO, limit: MAX_GIVE_WAY }
    }
}

impl GiveWay {
    /// Waits, if a bulk stream runs, until it ends or the computation has
    /// given way for [`MAX_GIVE_WAY`].
    pub async fn before_step(&mut self) {
        self.wait_while(bulk_running).await;
    }

    async fn wait_while(&mut self, running: impl Fn() -> bool) {
        while let Some(wait) = give_way(running(), self.waited, self.limit) {
            tokio::time::sleep(wait).await;
            self.waited += wait;
        }
    }

    /// How long the computation has given way so far.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

/// How long a computation that has given way for `waited` of its `limit`
/// waits next, when a bulk stream runs (`bulk`); `None`: it goes on.
fn give_way(bulk: bool, waited: Duration, limit: Duration) -> Option<Duration> {
    (bulk && waited < limit).then(|| GIVE_WAY_POLL.min(limit - waited))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_priority() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
    }

    #[tokio::test]
    async fn background_work_runs_on_threads_below_the_callers_priority() {
        let caller = own_priority();
        let (own, spawned) = in_background(async {
            let spawned = std::thread::scope(|scope| scope.spawn(own_priority).join().unwrap());
            (own_priority(), spawned)
        })
        .await;
        assert_eq!(own, BACKGROUND_NICE.max(caller), "the caller's nice: {caller}");
        assert_eq!(spawned, own, "threads it starts inherit its priority");
        assert_eq!(own_priority(), caller, "the caller's own priority is untouched");
        let panicked = tokio::spawn(in_background(async { panic!("a burst failed") })).await;
        assert!(panicked.unwrap_err().is_panic(), "a panic reaches the caller");
    }

    #[test]
    fn a_backlog_yields_three_quarters_of_the_time_to_callers_and_nothing_otherwise() {
        let took = Duration::from_millis(40);
        assert_eq!(pause(took, true, true), Duration::from_millis(120));
        assert_eq!(pause(took, false, true), Duration::ZERO, "caught up: every event at once");
        assert_eq!(pause(took, true, false), Duration::ZERO, "a quiet machine: full speed");
        assert_eq!(pause(Duration::from_secs(2), true, true), MAX_PAUSE);
    }

    #[test]
    fn a_computation_gives_way_while_a_bulk_stream_runs_up_to_a_limit() {
        let limit = MAX_GIVE_WAY;
        assert_eq!(give_way(false, Duration::ZERO, limit), None, "no stream: straight on");
        assert_eq!(give_way(true, Duration::ZERO, limit), Some(GIVE_WAY_POLL));
        let nearly = limit - Duration::from_millis(30);
        assert_eq!(give_way(true, nearly, limit), Some(Duration::from_millis(30)));
        assert_eq!(give_way(true, limit, limit), None, "given way long enough: on at full speed");
    }

    #[tokio::test]
    async fn giving_way_stops_at_the_limit_however_long_the_stream() {
        // The limit made short: the waits add up by what was asked, not by a clock.
        let limit = GIVE_WAY_POLL + Duration::from_millis(20);
        let mut way = GiveWay { limit, ..GiveWay::default() };
        // A stream that never ends, as the computation sees it at every look.
        way.wait_while(|| true).await;
        assert_eq!(way.waited(), limit);
        way.wait_while(|| true).await;
        assert_eq!(way.waited(), limit, "the limit is the computation's, not each step's");
        let mut way = GiveWay::default();
        way.wait_while(|| false).await;
        assert_eq!(way.waited(), Duration::ZERO, "no stream, no wait");
    }

    #[test]
    fn a_bulk_write_counts_open_until_its_answer_is_dropped() {
        assert!(stream_started("/crm.contacts.v1.ContactsService/GetContact").is_none());
        assert!(stream_started("/crm.contacts.v1.ContactsService/ExportContacts").is_none(), "a read");
        // Other tests may hold streams open: compare counts.
        let ingest = stream_started("/crm.interactions.v1.InteractionsService/IngestInteractions").unwrap();
        let upload = stream_started("/crm.interactions.v1.InteractionsService/UploadInteractions").unwrap();
        let open = OPEN_BULK.load(Ordering::Relaxed);
        assert!(open >= 2 && bulk_running());
        drop(ingest);
        assert!(OPEN_BULK.load(Ordering::Relaxed) < open);
        drop(upload);
    }

    #[test]
    fn only_a_fresh_bulk_event_says_a_stream_runs() {
        assert!(says_a_stream_runs(Duration::from_millis(20)));
        assert!(says_a_stream_runs(BULK_FRESH));
        assert!(!says_a_stream_runs(BULK_FRESH + Duration::from_millis(1)), "a backlog's old event");
    }

    #[test]
    fn a_backlog_goes_in_small_bursts_only_while_callers_are_served() {
        assert_eq!(burst(1000, true, true), YIELD_BURST);
        assert_eq!(burst(1000, true, false), 1000);
        assert_eq!(burst(10, false, true), 10);
        assert_eq!(burst(0, false, false), 1, "chunks of zero would panic");
    }

    #[test]
    fn followers_yield_to_recent_calls_unless_a_bulk_stream_runs() {
        assert!(yields(10_000, 9_900, 0), "a call 100 ms ago");
        assert!(!yields(10_000, 9_000, 0), "the last call a second ago");
        assert!(!yields(10_000, 0, 0), "no call yet");
        assert!(!yields(10_000, 9_900, 9_950), "an ingest runs: keep up with it");
        assert!(yields(10_000, 9_900, 8_000), "the ingest ended: work its backlog off in the gaps");
    }

    #[tokio::test]
    async fn followers_take_the_background_turn_one_at_a_time() {
        let first = turn().await;
        let second = tokio::spawn(turn());
        tokio::task::yield_now().await;
        assert!(!second.is_finished(), "a second follower waits while the first has the turn");
        drop(first);
        let second = second.await.expect("the second follower gets the turn");
        assert!(TURN.try_acquire().is_err(), "and holds it alone");
        drop(second);
    }

    #[test]
    fn feed_reads_probes_reflection_and_bulk_streams_are_not_the_foreground() {
        assert!(is_foreground("/crm.contacts.v1.ContactsService/LookupContact"));
        assert!(!is_foreground("/crm.contacts.v1.ContactsService/ImportContacts"), "bulk");
        assert!(!is_foreground("/crm.interactions.v1.InteractionsService/UploadInteractions"), "bulk");
        assert!(is_foreground("/crm.interactions.v1.InteractionsService/RecordInteraction"));
        assert!(!is_foreground("/crm.contacts.v1.ContactsService/Subscribe"));
        assert!(!is_foreground("/crm.interactions.v1.InteractionsService/ListEvents"));
        assert!(!is_foreground("/grpc.health.v1.Health/Check"));
        call_started("/crm.contacts.v1.ContactsService/GetContact");
        assert!(busy());
    }
}
