//! Reading the outbox in commit order, and following it as it grows.

use std::time::Duration;

use crm_proto::events::v1 as pb;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row, postgres::PgListener};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{error::Error, role::Role};

/// How many rows one read takes.
const BATCH: i64 = 500;
/// A follower re-reads at least this often even without a NOTIFY, as a safety net.
const FALLBACK_POLL: Duration = Duration::from_secs(5);
/// While committed events wait behind an older running transaction, a follower
/// re-reads with a backoff between these bounds (the transaction ends
/// without a NOTIFY when it wrote no event, so only a timer notices). A read
/// is held back only when committed events really wait, so the bound can be
/// short: a long transaction costs a follower 20 cheap reads a second.
const HORIZON_RETRY_MIN: Duration = Duration::from_millis(5);
const HORIZON_RETRY_MAX: Duration = Duration::from_millis(50);
/// A one-shot reader waiting for running transactions polls at most this far apart.
const SETTLE_RETRY_MAX: Duration = Duration::from_millis(50);

/// A place in the feed: compares as `(transaction, sequence)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    pub transaction: u64,
    pub sequence: u64,
}

impl Position {
    /// A position as PostgreSQL stores it (two bigints; values are never negative).
    pub fn from_columns(transaction: i64, sequence: i64) -> Self {
        Position { transaction: transaction.max(0) as u64, sequence: sequence.max(0) as u64 }
    }

    /// The position as two bigints. Values past `i64::MAX` cannot exist in a
    /// table, so they become `i64::MAX` ("after everything").
    pub fn columns(self) -> (i64, i64) {
        let column = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        (column(self.transaction), column(self.sequence))
    }
}

impl From<Option<pb::EventPosition>> for Position {
    fn from(position: Option<pb::EventPosition>) -> Self {
        position.map(|p| Position { transaction: p.transaction, sequence: p.sequence }).unwrap_or_default()
    }
}

impl From<Position> for pb::EventPosition {
    fn from(position: Position) -> Self {
        pb::EventPosition { transaction: position.transaction, sequence: position.sequence }
    }
}

/// One read of the feed.
#[derive(Debug)]
pub struct Batch {
    /// The events read, in feed order.
    pub events: Vec<pb::Event>,
    /// The position of the last row examined; resume after it.
    pub scanned_to: Position,
    /// True when the read hit its limit: more events are ready now.
    pub full: bool,
    /// True when committed events wait beyond the horizon for an older
    /// transaction of this database to finish: read again soon.
    pub held_back: bool,
}

/// Where readers may read up to now.
#[derive(Clone, Copy, Debug)]
struct Horizon {
    /// Every transaction of this database below it has finished.
    below: i64,
    /// Whether a transaction of this database is still running (then `below`
    /// is under `xmax`).
    running: bool,
    /// The snapshot's xmax: every transaction that had committed when the
    /// horizon was taken is below it.
    xmax: i64,
    /// Whether committed events lay beyond `below` when it was taken.
    held: bool,
}

/// The feed of one role's outbox.
#[derive(Clone)]
pub struct Feed {
    pool: PgPool,
    wakeups: watch::Receiver<u64>,
    /// The role whose outbox this is: transactions of the other roles'
    /// pools cannot write to it and do not hold it back.
    role: Role,
}

impl Feed {
    /// Starts listening for the role's NOTIFY wake-ups; the listener stops with `shutdown`.
    pub async fn start(pool: PgPool, role: Role, shutdown: CancellationToken) -> anyhow::Result<Feed> {
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(&format!("crm_outbox_{}", role.schema())).await?;
        let (wake, wakeups) = watch::channel(0u64);
        tokio::spawn(async move {
            loop {
                let received = tokio::select! {
                    () = shutdown.cancelled() => return,
                    received = listener.try_recv() => received,
                };
                match received {
                    // Ok(None): the connection dropped and notifications may have
                    // been missed; the next try_recv reconnects. Wake everyone anyway.
                    Ok(_) => wake.send_modify(|count| *count += 1),
                    Err(error) => {
                        tracing::warn!(%error, "outbox listener failed; retrying");
                        wake.send_modify(|count| *count += 1);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(Feed { pool, wakeups, role })
    }

    /// The horizon: every transaction of this database below it has finished,
    /// so rows below it can be read without any earlier row appearing later;
    /// whether a transaction of this database is still running (the horizon
    /// is then below the snapshot's xmax); and whether committed events wait
    /// beyond it.
    ///
    /// It is the oldest transaction the current snapshot still sees running,
    /// leaving out those that `pg_stat_activity` places in another database
    /// or on a connection of another role of the suite (they cannot write to
    /// this outbox: a role's pool is named `crm-<role>` and writes its own
    /// schema only; an xid it cannot place is kept), or, with none left, the
    /// snapshot's xmax. So a long transaction in another database of the
    /// cluster does not hold this feed back, nor does another role's: an
    /// ingest's batches, or a follower's burst of thousands of events in
    /// its own schema, would otherwise hold back every feed of the suite
    /// while they run.
    ///
    /// Committed events wait beyond it when a row lies strictly between two
    /// running transactions, or between the last and xmax: one index probe
    /// per gap (`LIMIT 1`), which never walks a running transaction's own
    /// uncommitted rows (a bulk load's thousands cost 15 ms a read when
    /// asked as `transaction_id >= horizon`). A transaction that is running
    /// but holds nothing back (it began after every waiting commit) is then
    /// not mistaken for one that does, and followers do not back off for it.
    /// Must run as its own statement, before the read's snapshot is taken.
    async fn horizon(&self) -> Result<Horizon, Error> {
        let (below, running, xmax, held): (i64, bool, i64, bool) = sqlx::query_as(
            "WITH snap AS (SELECT pg_current_snapshot() AS s),
                  ours AS (SELECT oid FROM pg_database WHERE datname = current_database()),
                  running AS (
                      SELECT x::text::bigint AS xid
                      FROM snap, pg_snapshot_xip(snap.s) AS x
                      WHERE NOT EXISTS (
                          SELECT 1 FROM pg_stat_activity a, ours
                          WHERE a.backend_xid = xid(x)
                            AND ((a.datid IS NOT NULL AND a.datid <> ours.oid)
                                 OR a.application_name = ANY($1)))),
                  xmax AS (SELECT pg_snapshot_xmax(s)::text::bigint AS xmax FROM snap),
                  gaps AS (
                      SELECT xid AS low, coalesce(lead(xid) OVER (ORDER BY xid), (SELECT xmax FROM xmax)) AS high
                      FROM running)
             SELECT coalesce((SELECT min(xid) FROM running), (SELECT xmax FROM xmax)),
                    EXISTS (SELECT 1 FROM running),
                    (SELECT xmax FROM xmax),
                    EXISTS (SELECT 1 FROM gaps, LATERAL (
                                SELECT 1 FROM outbox
                                WHERE transaction_id > gaps.low::text::xid8 AND transaction_id < gaps.high::text::xid8
                                LIMIT 1) AS waiting)",
        )
        .bind(crate::db::other_roles_pools(self.role))
        .fetch_one(&self.pool)
        .await?;
        Ok(Horizon { below, running, xmax, held })
    }

    /// Reads up to `limit` events after `after`, optionally about one aggregate only.
    pub async fn read(&self, after: Position, aggregate_id: Option<&str>, limit: i64) -> Result<Batch, Error> {
        let horizon = self.horizon().await?;
        self.read_below(after, aggregate_id, limit, horizon).await
    }

    /// Reads like [`Feed::read`], but when events may be held back it first
    /// waits, up to `patience`, for the transactions that were running when
    /// it was called to finish: every event committed before the call is then
    /// in the answer (or behind a full page), unless a transaction outlives
    /// the patience. For one-shot readers (`ListEvents`), which cannot come
    /// back on a NOTIFY as a follower does.
    pub async fn read_settled(
        &self,
        after: Position,
        aggregate_id: Option<&str>,
        limit: i64,
        patience: Duration,
    ) -> Result<Batch, Error> {
        let first = self.horizon().await?;
        let batch = self.read_below(after, aggregate_id, limit, first).await?;
        if !batch.held_back {
            return Ok(batch);
        }
        let deadline = tokio::time::Instant::now() + patience;
        let mut horizon = first;
        let mut wait = HORIZON_RETRY_MIN;
        while horizon.running && horizon.below < first.xmax && tokio::time::Instant::now() + wait < deadline {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(SETTLE_RETRY_MAX);
            horizon = self.horizon().await?;
        }
        if horizon.below == first.below {
            return Ok(batch);
        }
        self.read_below(after, aggregate_id, limit, horizon).await
    }

    async fn read_below(
        &self,
        after: Position,
        aggregate_id: Option<&str>,
        limit: i64,
        horizon: Horizon,
    ) -> Result<Batch, Error> {
        let Horizon { below: horizon, held, .. } = horizon;
        let (after_transaction, after_sequence) = after.columns();
        let rows = sqlx::query(
            "SELECT transaction_id::text::bigint AS transaction, sequence, id, event_type, aggregate_type,
                    aggregate_id, occurred_at, payload, request_id, bulk
             FROM outbox
             WHERE (transaction_id, sequence) > ($1::bigint::text::xid8, $2)
               AND transaction_id < $5::bigint::text::xid8
               AND ($3::text IS NULL OR aggregate_id = $3)
             ORDER BY transaction_id, sequence
             LIMIT $4",
        )
        .bind(after_transaction)
        .bind(after_sequence)
        .bind(aggregate_id)
        .bind(limit)
        .bind(horizon)
        .fetch_all(&self.pool)
        .await?;

        let full = rows.len() as i64 == limit;
        let mut scanned_to = after;
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            let event = event_from_row(&row)?;
            scanned_to = Position::from(event.position);
            events.push(event);
        }
        Ok(Batch { events, scanned_to, full, held_back: !full && held })
    }

    /// The position of the newest event readers can see now: following from
    /// it delivers exactly the events that become visible later.
    pub async fn end(&self) -> Result<Position, Error> {
        let horizon = self.horizon().await?.below;
        let newest: Option<(i64, i64)> = sqlx::query_as(
            "SELECT transaction_id::text::bigint, sequence FROM outbox
             WHERE transaction_id < $1::bigint::text::xid8
             ORDER BY transaction_id DESC, sequence DESC
             LIMIT 1",
        )
        .bind(horizon)
        .fetch_optional(&self.pool)
        .await?;
        Ok(newest.map(|(transaction, sequence)| Position::from_columns(transaction, sequence)).unwrap_or_default())
    }

    /// Follows the feed from `after`: every event, once, in commit order, for
    /// as long as the caller listens. When `stop` is cancelled (shutdown) the
    /// stream ends with UNAVAILABLE, telling the consumer to resume from its
    /// last position elsewhere. `event_types`, when not empty, filters by type.
    pub fn follow(
        &self,
        after: Position,
        event_types: Vec<String>,
        stop: CancellationToken,
    ) -> impl Stream<Item = Result<pb::Event, Error>> + Send + use<> {
        self.follow_marked(after, event_types, stop).filter_map(|delivery| {
            std::future::ready(match delivery {
                Ok(Delivery::Event(event)) => Some(Ok(event)),
                Ok(Delivery::CaughtUp(_)) => None,
                Err(error) => Some(Err(error)),
            })
        })
    }

    /// Follows the feed like [`Feed::follow`], and says when it has caught
    /// up: a [`Delivery::CaughtUp`] follows the events each time a read
    /// found no more committed ones (none held back behind a running
    /// transaction either), so every event committed before that read has
    /// been delivered. Said once when the stream starts at the end of the
    /// feed, then again only after new events.
    pub fn follow_marked(
        &self,
        after: Position,
        event_types: Vec<String>,
        stop: CancellationToken,
    ) -> impl Stream<Item = Result<Delivery, Error>> + Send + use<> {
        let feed = self.clone();
        async_stream::stream! {
            let mut cursor = after;
            let mut wakeups = feed.wakeups.clone();
            let mut horizon_retry = HORIZON_RETRY_MIN;
            let mut said = false;
            loop {
                if stop.is_cancelled() {
                    yield Err(shutting_down());
                    return;
                }
                // Mark before reading: a NOTIFY that lands during the read wakes the next wait.
                wakeups.mark_unchanged();
                let batch = match feed.read(cursor, None, BATCH).await {
                    Ok(batch) => batch,
                    Err(error) => {
                        yield Err(error);
                        return;
                    }
                };
                cursor = batch.scanned_to;
                said &= batch.events.is_empty();
                for event in batch.events {
                    if is_wanted(&event_types, &event) {
                        yield Ok(Delivery::Event(event));
                    }
                }
                if batch.full {
                    continue;
                }
                if !batch.held_back && !said {
                    said = true;
                    yield Ok(Delivery::CaughtUp(cursor));
                }
                let wait = if batch.held_back {
                    let wait = horizon_retry;
                    horizon_retry = (horizon_retry * 2).min(HORIZON_RETRY_MAX);
                    wait
                } else {
                    horizon_retry = HORIZON_RETRY_MIN;
                    FALLBACK_POLL
                };
                tokio::select! {
                    () = stop.cancelled() => {
                        yield Err(shutting_down());
                        return;
                    }
                    _ = wakeups.changed() => {}
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// What [`Feed::follow_marked`] delivers.
// Nearly every delivery is an event: boxing them to shrink the rare marker
// would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Delivery {
    /// The next event.
    Event(pb::Event),
    /// Every event committed before the last read is delivered; the stream
    /// has read up to this position.
    CaughtUp(Position),
}

/// Where a follower of the live lane stands: every event of the lane at or
/// before `floor` was delivered (or is skipped), and those after it in
/// `seen` were.
struct LiveLane {
    floor: Position,
    seen: std::collections::BTreeSet<Position>,
}

impl LiveLane {
    /// Notes `position` as delivered; false when it was already.
    fn deliver(&mut self, position: Position) -> bool {
        position > self.floor && self.seen.insert(position)
    }

    /// Every transaction below `horizon` has ended and its events were
    /// read: the floor rises to it. At most [`LIVE_SEEN`] positions are
    /// kept above it; the oldest beyond that are given up (an event
    /// committing behind them is skipped).
    fn settle(&mut self, horizon: i64) {
        let settled = Position { transaction: horizon.max(0) as u64, sequence: 0 };
        self.floor = self.floor.max(settled);
        while self.seen.len() > LIVE_SEEN {
            if let Some(oldest) = self.seen.pop_first() {
                self.floor = self.floor.max(oldest);
            }
        }
        self.seen = self.seen.split_off(&self.floor);
        self.seen.remove(&self.floor);
    }
}

/// How often a follower of the live lane asks where every older transaction
/// has ended (a query of `pg_stat_activity`, too dear for every commit of
/// a thousand a second); between, a read walks the lane from the last floor.
const LIVE_SETTLE: Duration = Duration::from_millis(100);

/// How many delivered events of the live lane a follower remembers above
/// the point where every older transaction has ended.
const LIVE_SEEN: usize = 10_000;

impl Feed {
    /// Follows the live lane from `after`: events not written by bulk
    /// streams, each once, as soon as it commits, without waiting for older
    /// transactions to end (a bulk load's), so not in feed order. Every read
    /// takes the lane's events after the floor, where every older
    /// transaction had ended, and delivers those not yet delivered; the
    /// lane's partial index leaves the bulk rows out of the walk.
    pub fn follow_live(
        &self,
        after: Position,
        event_types: Vec<String>,
        stop: CancellationToken,
    ) -> impl Stream<Item = Result<pb::Event, Error>> + Send + use<> {
        let feed = self.clone();
        async_stream::stream! {
            let mut lane = LiveLane { floor: after, seen: Default::default() };
            let mut wakeups = feed.wakeups.clone();
            let mut settled_at: Option<tokio::time::Instant> = None;
            loop {
                if stop.is_cancelled() {
                    yield Err(shutting_down());
                    return;
                }
                wakeups.mark_unchanged();
                // The horizon only lets the floor rise: taken at most every LIVE_SETTLE.
                let horizon = if settled_at.is_none_or(|at| at.elapsed() >= LIVE_SETTLE) {
                    settled_at = Some(tokio::time::Instant::now());
                    match feed.horizon().await {
                        Ok(horizon) => Some(horizon.below),
                        Err(error) => {
                            yield Err(error);
                            return;
                        }
                    }
                } else {
                    None
                };
                let mut from = lane.floor;
                loop {
                    let rows = match feed.read_live(from, BATCH).await {
                        Ok(rows) => rows,
                        Err(error) => {
                            yield Err(error);
                            return;
                        }
                    };
                    let full = rows.len() as i64 == BATCH;
                    for event in rows {
                        let position = Position::from(event.position);
                        from = position;
                        if lane.deliver(position) && is_wanted(&event_types, &event) {
                            yield Ok(event);
                        }
                    }
                    if !full {
                        break;
                    }
                }
                if let Some(horizon) = horizon {
                    lane.settle(horizon);
                }
                tokio::select! {
                    () = stop.cancelled() => {
                        yield Err(shutting_down());
                        return;
                    }
                    _ = wakeups.changed() => {}
                    () = tokio::time::sleep(FALLBACK_POLL) => {}
                }
            }
        }
    }

    /// Up to `limit` committed events of the live lane after `after`.
    async fn read_live(&self, after: Position, limit: i64) -> Result<Vec<pb::Event>, Error> {
        let (after_transaction, after_sequence) = after.columns();
        let rows = sqlx::query(
            "SELECT transaction_id::text::bigint AS transaction, sequence, id, event_type, aggregate_type,
                    aggregate_id, occurred_at, payload, request_id, bulk
             FROM outbox
             WHERE NOT bulk AND (transaction_id, sequence) > ($1::bigint::text::xid8, $2)
             ORDER BY transaction_id, sequence
             LIMIT $3",
        )
        .bind(after_transaction)
        .bind(after_sequence)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }
}

/// Whether `event` passes an `event_types` filter (empty: every type passes).
pub fn is_wanted(event_types: &[String], event: &pb::Event) -> bool {
    event_types.is_empty() || event_types.contains(&event.r#type)
}

/// What a follower gets when the server stops under it.
pub fn shutting_down() -> Error {
    Error::Unavailable {
        message: "the server is shutting down; subscribe again after the last position you handled".into(),
        retry_after: Duration::from_secs(1),
    }
}

fn event_from_row(row: &sqlx::postgres::PgRow) -> Result<pb::Event, Error> {
    let transaction: i64 = row.try_get("transaction")?;
    let sequence: i64 = row.try_get("sequence")?;
    let occurred_at: chrono::DateTime<chrono::Utc> = row.try_get("occurred_at")?;
    let event_type: String = row.try_get("event_type")?;
    let id: uuid::Uuid = row.try_get("id")?;
    Ok(pb::Event {
        id: id.to_string(),
        position: Some(Position::from_columns(transaction, sequence).into()),
        occurred_at: Some(crate::timestamp::to_proto(occurred_at)),
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        payload: Some(prost_types::Any {
            type_url: format!("type.googleapis.com/{event_type}"),
            value: row.try_get("payload")?,
        }),
        request_id: row.try_get("request_id")?,
        r#type: event_type,
        bulk: row.try_get("bulk")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(transaction: u64, sequence: u64) -> Position {
        Position { transaction, sequence }
    }

    #[test]
    fn the_live_lane_delivers_each_event_once_and_forgets_what_every_older_transaction_settled() {
        let mut lane = LiveLane { floor: at(10, 0), seen: Default::default() };
        assert!(!lane.deliver(at(9, 5)), "at or before the floor: delivered before");
        assert!(lane.deliver(at(12, 1)));
        assert!(!lane.deliver(at(12, 1)), "once");
        assert!(lane.deliver(at(11, 7)), "an older transaction's, committed later");
        lane.settle(12);
        assert_eq!(lane.floor, at(12, 0), "every transaction below 12 has ended");
        assert_eq!(lane.seen.iter().copied().collect::<Vec<_>>(), [at(12, 1)], "11's is below the floor now");
        assert!(!lane.deliver(at(12, 1)) && !lane.deliver(at(11, 7)));
        lane.settle(5);
        assert_eq!(lane.floor, at(12, 0), "the floor never goes back");
    }

    #[test]
    fn the_live_lane_remembers_a_bounded_number_of_events_above_its_floor() {
        let mut lane = LiveLane { floor: Position::default(), seen: Default::default() };
        for sequence in 1..=(LIVE_SEEN as u64 + 5) {
            assert!(lane.deliver(at(100, sequence)));
        }
        lane.settle(1);
        assert_eq!(lane.seen.len(), LIVE_SEEN);
        assert_eq!(lane.floor, at(100, 5), "the oldest five are given up");
        assert!(!lane.deliver(at(100, 3)), "one committing behind them is skipped");
    }
}
