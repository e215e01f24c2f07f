//! Following another role's feed: the consumer side of the event feed.
//!
//! A [`Consumer`] subscribes to a role's `Subscribe` stream and hands each
//! event to its [`Handler`] inside a transaction of the consumer's own schema
//! that also moves its cursor (`feed_cursors`). The cursor row is locked in
//! that transaction and an event at or before it is skipped, so each event's
//! effects commit exactly once, even if two replicas run the same consumer.
//! Events that arrive together (a bulk import's thousands) are applied in one
//! transaction, up to [`MAX_BATCH`] at a time: one commit per burst instead of
//! one per event, so a follower keeps up with its feed.
//! Normally only one does: the consumer takes a Postgres advisory lock per
//! name and only the holder (the leader) follows the feed. After any failure
//! (handler, stream, database) it backs off and resumes from the stored cursor.
//!
//! # Ahead of a bulk backlog
//! A handler may name event types it can apply out of turn
//! ([`Handler::ahead_types`]): applying one before the events that precede
//! it in the feed gives what applying them in order gives. The leader then
//! also follows the feed's live lane (events written by single calls, as
//! they commit) and applies those at once, so a recorded interaction moves
//! a segment while an ingest's backlog is still being worked off, instead
//! of seconds later. Each such event is claimed in `feed_claims` by
//! whichever of the two followers reaches it first, in the transaction that
//! applies it; the other skips it. The feed's follower gives the lane
//! [`LANE_FIRST`] before it claims a lane event itself, so the two do not
//! race for the same events and wait for each other's transactions. A
//! claim's insert waits for a concurrent one's transaction and then
//! conflicts, and the lane skips what the cursor has passed, so every event
//! is applied exactly once.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use crm_proto::events::v1 as pb;
use futures_util::{Stream, StreamExt};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::{metrics::Metrics, outbox::Position, principal::SignedChannel};

/// How long a consumer waits after a failure before it resumes.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// How often a follower checks its stored cursor, and tells an idle handler so.
pub const IDLE_CHECK: Duration = Duration::from_secs(1);

/// How long after an event of the live lane was written the feed's follower
/// leaves it to the lane's follower before claiming it itself. Both may
/// apply it (the claim decides), but a follower that claims what the other
/// is about to claim makes it wait for its transaction: in the quiet phase
/// of the segment latency bench the lane's transactions spent half their
/// time waiting for the feed follower's claims (16 ms at the median; 3 ms
/// with this wait, and `SegmentEntered` p50 63–71 ms against 86–92 ms in
/// alternating runs: docs/benchmarks.md). The events of other types in the
/// same burst wait as long, at most; should the lane's follower be down,
/// the feed's applies every event, this much later.
pub const LANE_FIRST: Duration = Duration::from_millis(250);

/// Events applied in one transaction, at most: those already received when
/// the consumer is ready for more, so a quiet feed still applies each event
/// at once.
pub const MAX_BATCH: usize = 500;

/// Applies events of another role to the consumer's own schema.
pub trait Handler: Send + Sync + 'static {
    /// Applies `event` using `tx`; the cursor moves in the same transaction.
    /// An error rolls both back and the event is offered again later.
    fn handle(&self, tx: &mut PgConnection, event: &pb::Event) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// The most events applied in one transaction. A handler whose cost
    /// grows with the distinct records a burst touches rather than with its
    /// events (one recomputation per contact, one commit per burst) catches
    /// up faster with larger bursts; a quiet feed still applies each event
    /// at once, since a burst is only what has already arrived.
    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    /// Called when no event came for a while ([`IDLE_CHECK`]) after the feed
    /// said it had delivered every committed event (a caught-up marker,
    /// `SubscribeRequest.caught_up_markers`): the follower has applied
    /// everything its feed had, up to `applied`. By default
    /// nothing. A handler that records having caught up must check, in the
    /// transaction that records it, that its stored cursor is not behind
    /// `applied` ([`cursor_of`]): a rebuild may have moved it back since the
    /// follower last looked, and then the follower has not replayed yet.
    fn idle(&self, _pool: &PgPool, _applied: Position) -> impl Future<Output = anyhow::Result<()>> + Send {
        async { Ok(()) }
    }

    /// Event types (full names) this handler may apply ahead of their turn,
    /// from the feed's live lane: applying such an event before events that
    /// precede it in the feed must give what applying them in order gives
    /// (the read model keeps a set of them and derives the rest). None by
    /// default.
    fn ahead_types(&self) -> Vec<String> {
        Vec::new()
    }

    /// Applies a burst of events, in feed order, in one transaction. By
    /// default one by one; a handler that can do a burst's work in fewer
    /// statements (the segmentation read model) does it here.
    fn handle_batch(
        &self,
        tx: &mut PgConnection,
        events: &[&pb::Event],
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        async move {
            for event in events {
                self.handle(tx, event).await?;
            }
            Ok(())
        }
    }
}

/// Where a consumer's events come from: a role's `Subscribe`.
#[derive(Clone)]
pub struct FeedSource {
    /// A channel to the role, signing the consumer's principal.
    pub channel: SignedChannel,
    /// The role's service, e.g. `crm.contacts.v1.ContactsService`.
    pub service: &'static str,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::SubscribeResponse, Status>> + Send>>;

impl FeedSource {
    /// Opens the feed (or its live lane) after `after`, with events of `event_types` (empty: all).
    async fn open(&self, after: Position, live: bool, event_types: Vec<String>) -> Result<EventStream, Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready().await.map_err(|error| Status::unavailable(error.to_string()))?;
        let path = http::uri::PathAndQuery::try_from(format!("/{}/Subscribe", self.service))
            .map_err(|_| Status::internal("bad service name"))?;
        // The whole feed says when it has caught up (the follower's idle check needs it).
        let request = pb::SubscribeRequest { after: Some(after.into()), event_types, live, caught_up_markers: !live };
        let codec = tonic_prost::ProstCodec::<pb::SubscribeRequest, pb::SubscribeResponse>::default();
        let stream = grpc.server_streaming(tonic::Request::new(request), path, codec).await?.into_inner();
        Ok(Box::pin(stream))
    }
}

/// A named follower of one feed.
pub struct Consumer<H> {
    /// Unique per consumer within its role, e.g. `interactions.contact-merges`.
    pub name: String,
    /// The consumer's own pool (its role's schema, where `feed_cursors` lives).
    pub pool: PgPool,
    /// Where the bursts of a backlog worked off while callers are served
    /// are applied: the role's background pool, below the callers'
    /// priority (`db::connect_background`).
    pub background: PgPool,
    pub source: FeedSource,
    pub handler: H,
    /// Where the consumer's progress and lag are recorded.
    pub metrics: Metrics,
}

impl<H: Handler> Consumer<H> {
    /// Runs until `shutdown`, leading when it holds the lock and waiting otherwise.
    pub fn spawn(self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let consumer = Arc::new(self);
        tokio::spawn(async move {
            while !shutdown.is_cancelled() {
                match consumer.lead(&shutdown).await {
                    Ok(Leadership::Done) => return,
                    Ok(Leadership::Refused) => {}
                    Err(error) => {
                        tracing::warn!(consumer = %consumer.name, error = format!("{error:#}"), "consumer failed; resuming from its cursor")
                    }
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(RETRY_AFTER) => {}
                }
            }
        })
    }

    /// Follows the feed while holding the consumer's advisory lock.
    async fn lead(self: &Arc<Self>, shutdown: &CancellationToken) -> anyhow::Result<Leadership> {
        let key = format!("crm.consumer.{}", self.name);
        let Some(lock) = crate::leader::SessionLock::try_take(&self.pool, &key).await? else {
            return Ok(Leadership::Refused);
        };
        // Asked once per leadership: the follower consults them for every burst.
        let ahead_types = self.handler.ahead_types();
        let outcome = if ahead_types.is_empty() {
            self.follow(shutdown, &ahead_types).await
        } else {
            let ahead = CancellationToken::new();
            let (outcome, ()) = tokio::join!(
                async {
                    let outcome = self.follow(shutdown, &ahead_types).await;
                    ahead.cancel();
                    outcome
                },
                self.follow_ahead(&ahead, shutdown, &ahead_types),
            );
            outcome
        };
        lock.release().await;
        outcome.map(|()| Leadership::Done)
    }

    /// Reads the cursor, subscribes after it and handles events until shutdown.
    ///
    /// Every [`IDLE_CHECK`] without events, the handler hears that it is
    /// idle if the feed has said it is caught up, and the stored
    /// cursor is read: if someone moved it back (a rebuild of the read
    /// model), the follower subscribes again from there.
    async fn follow(self: &Arc<Self>, shutdown: &CancellationToken, ahead_types: &[String]) -> anyhow::Result<()> {
        let after = self.cursor().await?;
        let mut messages =
            self.source.open(after, false, Vec::new()).await?.ready_chunks(self.handler.max_batch().max(1));
        let mut applied = after;
        let mut ticks = tokio::time::interval(IDLE_CHECK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut busy = true;
        // Whether the feed said it has delivered every event committed so
        // far, and none came after: quiet alone is not caught up (a stream
        // opened on a loaded server may take seconds to bring its backlog).
        let mut caught_up = false;
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                _ = ticks.tick() => {
                    if self.cursor().await? < applied {
                        anyhow::bail!("the cursor was moved back (a rebuild); subscribing again from it");
                    }
                    if !busy && caught_up {
                        self.handler.idle(&self.pool, applied).await?;
                    }
                    busy = false;
                    continue;
                }
                next = messages.next() => next,
            };
            let Some(received) = next else { anyhow::bail!("the feed ended") };
            let mut events = Vec::with_capacity(received.len());
            for message in received {
                // A stream error drops the events after the cursor: they come again on resume.
                let message = message?;
                if let Some(event) = message.event {
                    events.push(event);
                    caught_up = false;
                }
                if message.caught_up.is_some() {
                    caught_up = true;
                }
            }
            if events.is_empty() {
                continue;
            }
            busy = true;
            // A bulk stream's events as they commit: one runs now, maybe in
            // another process, and whole-base computations here give way to it.
            let now = std::time::SystemTime::now();
            let freshest = events.iter().filter(|event| event.bulk);
            if let Some(age) =
                freshest.map(|event| crate::timestamp::elapsed_between(event.occurred_at.as_ref(), now)).min()
            {
                crate::foreground::bulk_event_seen(age);
            }
            // Events of the live lane that just committed are the lane's to
            // apply: claiming them here too would race it and make it wait.
            let wait = lane_first(&events, ahead_types, now);
            if !wait.is_zero() {
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(wait) => {}
                }
            }
            // Working off a backlog (a full burst) while users call: make
            // room, in small bursts each followed by a pause. A follower with
            // a live lane counts a bulk stream's events as backlog however
            // few have arrived: what callers wait on goes ahead by the lane.
            let ahead = !ahead_types.is_empty();
            let backlog =
                events.len() * 2 >= self.handler.max_batch().max(1) || (ahead && events.iter().any(|event| event.bulk));
            let size = crate::foreground::burst(events.len(), backlog, makes_room(ahead));
            for part in events.chunks(size) {
                // While callers are served, the process's followers take
                // turns, and a burst runs below the callers' priority.
                let yielding = backlog && makes_room(ahead);
                let _turn = if yielding {
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        turn = crate::foreground::turn() => Some(turn),
                    }
                } else {
                    None
                };
                let started = std::time::Instant::now();
                if yielding {
                    self.apply_in_background(part, applied, ahead_types).await?;
                } else {
                    self.apply(&self.pool, part, applied, ahead_types).await?;
                }
                if let Some(last) = part.last() {
                    applied = applied.max(Position::from(last.position));
                }
                let pause = crate::foreground::pause(started.elapsed(), backlog, makes_room(ahead));
                if !pause.is_zero() {
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }

    /// Handles the events after the cursor and moves the cursor past the last,
    /// in one transaction on `pool`. `applied` is where this follower left the cursor:
    /// a stored cursor behind it was moved back (a rebuild), and the events
    /// in hand must not be applied before the ones it goes back to.
    async fn apply(
        &self,
        pool: &PgPool,
        events: &[pb::Event],
        applied: Position,
        ahead_types: &[String],
    ) -> anyhow::Result<()> {
        let Some(last) = events.last() else { return Ok(()) };
        let mut tx = pool.begin().await?;
        // Creates the cursor on first use; either way locks it for this transaction and reads it.
        let (transaction, sequence): (i64, i64) = sqlx::query_as(
            "INSERT INTO feed_cursors (consumer, transaction_id, sequence) VALUES ($1, 0, 0)
             ON CONFLICT (consumer) DO UPDATE SET consumer = excluded.consumer
             RETURNING transaction_id, sequence",
        )
        .bind(&self.name)
        .fetch_one(&mut *tx)
        .await?;
        let stored = Position::from_columns(transaction, sequence);
        if stored < applied {
            anyhow::bail!("the cursor was moved back (a rebuild); subscribing again from it");
        }
        let position = Position::from(last.position);
        if position <= stored {
            return Ok(()); // handled already (by another replica, or before a restart)
        }
        // Handled already: those at or before the cursor, and those the live lane applied.
        let mut fresh: Vec<&pb::Event> =
            events.iter().filter(|event| Position::from(event.position) > stored).collect();
        if !ahead_types.is_empty() {
            let in_lane = |event: &pb::Event| !event.bulk && ahead_types.contains(&event.r#type);
            let lane: Vec<Position> =
                fresh.iter().filter(|event| in_lane(event)).map(|event| Position::from(event.position)).collect();
            let ours = claim(&mut tx, &self.name, &lane).await?;
            fresh.retain(|event| !in_lane(event) || ours.contains(&Position::from(event.position)));
        }
        self.handler.handle_batch(&mut tx, &fresh).await?;
        if !ahead_types.is_empty() {
            sqlx::query("DELETE FROM feed_claims WHERE consumer = $1 AND (transaction_id, sequence) <= ($2, $3)")
                .bind(&self.name)
                .bind(position.columns().0)
                .bind(position.columns().1)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE feed_cursors SET transaction_id = $2, sequence = $3, updated_at = now() WHERE consumer = $1",
        )
        .bind(&self.name)
        .bind(position.columns().0)
        .bind(position.columns().1)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        for event in fresh {
            self.metrics.record_consumed(&self.name, crate::timestamp::elapsed_since(event.occurred_at.as_ref()));
        }
        Ok(())
    }

    /// [`Consumer::apply`] as background work: on the process's background
    /// threads and the role's background pool, both below the callers'
    /// priority where the system allows (`foreground::in_background`,
    /// `db::connect_background`). After a million-contact import three
    /// followers work off its events for minutes; at the callers' priority
    /// a lookup arriving during a burst waited for a core behind them.
    async fn apply_in_background(
        self: &Arc<Self>,
        events: &[pb::Event],
        applied: Position,
        ahead_types: &[String],
    ) -> anyhow::Result<()> {
        let (consumer, events, ahead_types) = (Arc::clone(self), events.to_vec(), ahead_types.to_vec());
        crate::foreground::in_background(async move {
            consumer.apply(&consumer.background, &events, applied, &ahead_types).await
        })
        .await
    }

    /// Follows the live lane until `stop` (the leader's follower ended) or
    /// `shutdown`, applying the handler's ahead types as they commit; after
    /// a failure it starts again from the cursor.
    async fn follow_ahead(&self, stop: &CancellationToken, shutdown: &CancellationToken, ahead_types: &[String]) {
        while !stop.is_cancelled() && !shutdown.is_cancelled() {
            if let Err(error) = self.follow_lane(stop, shutdown, ahead_types).await {
                tracing::warn!(consumer = %self.name, error = format!("{error:#}"), "the live lane failed; the feed still brings every event");
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(RETRY_AFTER) => {}
            }
        }
    }

    async fn follow_lane(
        &self,
        stop: &CancellationToken,
        shutdown: &CancellationToken,
        ahead_types: &[String],
    ) -> anyhow::Result<()> {
        let after = self.cursor().await?;
        let mut messages = self.source.open(after, true, ahead_types.to_vec()).await?.ready_chunks(MAX_BATCH);
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = shutdown.cancelled() => return Ok(()),
                next = messages.next() => next,
            };
            let Some(received) = next else { anyhow::bail!("the live lane ended") };
            let mut events = Vec::with_capacity(received.len());
            for message in received {
                events.extend(message?.event);
            }
            self.apply_ahead(&events).await?;
        }
    }

    /// Applies events of the live lane that neither follower has yet, in one
    /// transaction: those it claims and the cursor has not passed.
    async fn apply_ahead(&self, events: &[pb::Event]) -> anyhow::Result<()> {
        let mut events: Vec<&pb::Event> = events.iter().collect();
        events.sort_by_key(|event| Position::from(event.position));
        let lane: Vec<Position> = events.iter().map(|event| Position::from(event.position)).collect();
        let mut tx = self.pool.begin().await?;
        let ours = claim(&mut tx, &self.name, &lane).await?;
        // Read after the claims: a follower that applied one of them and moved past it has committed.
        let cursor = cursor_of(&mut tx, &self.name).await?;
        events.retain(|event| {
            let position = Position::from(event.position);
            position > cursor && ours.contains(&position)
        });
        if events.is_empty() {
            return Ok(()); // dropping the transaction rolls the claims back
        }
        self.handler.handle_batch(&mut tx, &events).await?;
        tx.commit().await?;
        for event in events {
            self.metrics.record_consumed(&self.name, crate::timestamp::elapsed_since(event.occurred_at.as_ref()));
        }
        Ok(())
    }

    async fn cursor(&self) -> anyhow::Result<Position> {
        let mut conn = self.pool.acquire().await?;
        Ok(cursor_of(&mut conn, &self.name).await?)
    }
}

/// Where consumer `name` stands: the position of the last event it applied
/// (the start of the feed before any).
pub async fn cursor_of(conn: &mut PgConnection, name: &str) -> Result<Position, sqlx::Error> {
    let stored: Option<(i64, i64)> =
        sqlx::query_as("SELECT transaction_id, sequence FROM feed_cursors WHERE consumer = $1")
            .bind(name)
            .fetch_optional(conn)
            .await?;
    Ok(stored.map(|(transaction, sequence)| Position::from_columns(transaction, sequence)).unwrap_or_default())
}

/// How long the feed's follower waits before applying `events`, so that the
/// lane's follower gets its events first: until the youngest of the lane's
/// (not bulk, of `ahead_types`) is [`LANE_FIRST`] old, by the time it was
/// written (`occurred_at`, the writer's transaction start: an event cannot
/// have committed before it).
fn lane_first(events: &[pb::Event], ahead_types: &[String], now: std::time::SystemTime) -> Duration {
    events
        .iter()
        .filter(|event| !event.bulk && ahead_types.contains(&event.r#type))
        .map(|event| LANE_FIRST.saturating_sub(crate::timestamp::elapsed_between(event.occurred_at.as_ref(), now)))
        .max()
        .unwrap_or(Duration::ZERO)
}

/// Whether a follower makes room for callers now: while they are served
/// ([`crate::foreground::busy`]); one that follows the live lane (`ahead`)
/// also while a bulk stream runs, since what callers wait on goes ahead of
/// the bulk backlog by the lane ([`crate::foreground::serving`]).
fn makes_room(ahead: bool) -> bool {
    if ahead { crate::foreground::serving() } else { crate::foreground::busy() }
}

/// Sends consumers `names` back to the start of their feeds, for a rebuild
/// of what they derive, in the transaction that empties it. In this order:
/// `rewind`, then the emptying, then [`forget_claims`].
///
/// The cursors go to zero by an upsert, before anything is emptied: a
/// follower's transaction in flight holds its cursor row (or is creating
/// it: an `UPDATE` does not see a row whose insert has not committed, and
/// the follower's first burst then committed its cursor past events whose
/// effects the rebuild emptied, found by the rebuild test under load), so
/// this waits for it to commit, then holds the row: the follower's next
/// transaction waits for the rebuild and finds its cursor moved back.
pub async fn rewind(tx: &mut PgConnection, names: &[&str]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO feed_cursors (consumer, transaction_id, sequence) SELECT name, 0, 0 FROM unnest($1::text[]) AS name
         ON CONFLICT (consumer) DO UPDATE SET transaction_id = 0, sequence = 0, updated_at = now()",
    )
    .bind(names)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Drops the live lane's claims of consumers `names` (rewound by
/// [`rewind`]), after what they derive is emptied: a lane transaction does
/// not hold the cursor, and one the emptying waited for has committed its
/// claims by then, so none is left to hide an event from the replay.
pub async fn forget_claims(tx: &mut PgConnection, names: &[&str]) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM feed_claims WHERE consumer = ANY($1)").bind(names).execute(&mut *tx).await?;
    Ok(())
}

/// Whether consumer `name` has applied each of the events at `positions`:
/// in its turn (its cursor passed it) or ahead of it, from the live lane.
pub async fn applied(conn: &mut PgConnection, name: &str, positions: &[Position]) -> Result<Vec<bool>, sqlx::Error> {
    let (transactions, sequences) = columns(positions);
    // One statement, one snapshot: a claim is deleted as the cursor passes it.
    sqlx::query_scalar(
        "SELECT coalesce((c.transaction_id, c.sequence) >= (p.t, p.s), false)
                OR EXISTS (SELECT 1 FROM feed_claims k
                           WHERE k.consumer = $1 AND k.transaction_id = p.t AND k.sequence = p.s)
         FROM unnest($2::bigint[], $3::bigint[]) WITH ORDINALITY AS p(t, s, n)
         LEFT JOIN feed_cursors c ON c.consumer = $1
         ORDER BY p.n",
    )
    .bind(name)
    .bind(transactions)
    .bind(sequences)
    .fetch_all(conn)
    .await
}

/// `positions` as the two bigint arrays PostgreSQL takes them in.
fn columns(positions: &[Position]) -> (Vec<i64>, Vec<i64>) {
    positions.iter().map(|position| position.columns()).unzip()
}

/// Claims the events at `positions` for consumer `name` in `tx`: returns
/// those it got, leaving out those another transaction claimed and
/// committed (it waits for one still running). Claims are taken in feed
/// order, so two claimers never wait for each other in a circle.
async fn claim(
    tx: &mut PgConnection,
    name: &str,
    positions: &[Position],
) -> Result<std::collections::HashSet<Position>, sqlx::Error> {
    if positions.is_empty() {
        return Ok(Default::default());
    }
    let (transactions, sequences) = columns(positions);
    let claimed: Vec<(i64, i64)> = sqlx::query_as(
        "INSERT INTO feed_claims (consumer, transaction_id, sequence)
         SELECT $1, t, s FROM unnest($2::bigint[], $3::bigint[]) AS c(t, s) ORDER BY t, s
         ON CONFLICT DO NOTHING
         RETURNING transaction_id, sequence",
    )
    .bind(name)
    .bind(transactions)
    .bind(sequences)
    .fetch_all(tx)
    .await?;
    Ok(claimed.into_iter().map(|(transaction, sequence)| Position::from_columns(transaction, sequence)).collect())
}

/// Follows `service`'s feed at the first of `urls` with `handler`, as the
/// consumer `name` of `ctx`'s role: the role signs itself in as an admin
/// principal (`role:<role>`), over internal TLS when configured.
pub fn follow<H: Handler>(
    ctx: &crate::RoleContext,
    name: &str,
    urls: &[String],
    service: &'static str,
    handler: H,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let role = ctx.role.as_str();
    let url = urls.first().ok_or_else(|| anyhow::anyhow!("the {role} role needs the address of {service}"))?;
    let channel = crate::tls::internal_endpoint(url, ctx.server.internal_tls.as_ref())?.connect_lazy();
    let principal = crate::principal::Principal {
        key_id: format!("role:{role}"),
        roles: vec![crate::principal::AccessRole::Admin],
    };
    let consumer = Consumer {
        name: name.into(),
        pool: ctx.pool.clone(),
        background: ctx.background.clone(),
        source: FeedSource { channel: SignedChannel::new(channel, ctx.identity.clone(), principal), service },
        handler,
        metrics: ctx.metrics.clone(),
    };
    Ok(consumer.spawn(ctx.shutdown.clone()))
}

enum Leadership {
    /// Another replica leads.
    Refused,
    /// Led until shutdown.
    Done,
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn event(event_type: &str, bulk: bool, written: SystemTime) -> pb::Event {
        let written = chrono::DateTime::<chrono::Utc>::from(written);
        pb::Event {
            r#type: event_type.into(),
            bulk,
            occurred_at: Some(crate::timestamp::to_proto(written)),
            ..Default::default()
        }
    }

    #[test]
    fn the_feeds_follower_leaves_the_lanes_young_events_to_the_lane() {
        let now = SystemTime::now();
        let ago = |ms: u64| now - Duration::from_millis(ms);
        let ahead = vec!["Recorded".to_string()];
        let burst =
            [event("Issued", false, ago(0)), event("Recorded", false, ago(100)), event("Recorded", false, ago(50))];
        assert_eq!(
            lane_first(&burst, &ahead, now),
            LANE_FIRST - Duration::from_millis(50),
            "until the youngest is old enough"
        );
        let old = [event("Recorded", false, ago(400))];
        assert_eq!(lane_first(&old, &ahead, now), Duration::ZERO, "the lane had its turn");
        let bulk = [event("Recorded", true, ago(0))];
        assert_eq!(lane_first(&bulk, &ahead, now), Duration::ZERO, "bulk events are not in the lane");
        assert_eq!(lane_first(&burst, &[], now), Duration::ZERO, "a handler without ahead types follows no lane");
    }
}
