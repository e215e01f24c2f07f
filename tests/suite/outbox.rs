//! The outbox feed: nothing lost, nothing repeated, commit order kept, even
//! when transactions take sequence numbers in one order and commit in another.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use crm_platform::{
    Role,
    outbox::{self, Feed, Position},
};
use crm_testkit::TestDb;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::support::{commit_events, eventually, test_event};

/// The classic outbox bug: B commits a higher sequence while A still holds a
/// lower one. A reader that delivered B and moved past it would lose A.
#[tokio::test]
async fn a_later_commit_waits_behind_an_open_transaction_and_nothing_is_skipped() {
    let test_db = TestDb::create().await.unwrap();
    let pool = test_db.role_pool(Role::Contacts).await.unwrap();
    let feed = Feed::start(pool.clone(), Role::Contacts, CancellationToken::new()).await.unwrap();

    let mut open = pool.begin().await.unwrap();
    outbox::append(&mut open, &[test_event("a", 1)]).await.unwrap();
    commit_events(&pool, &[test_event("b", 2)]).await;

    let while_open = feed.read(Position::default(), None, 100).await.unwrap();
    assert!(while_open.events.is_empty(), "B must not be delivered while A, which took an earlier number, is open");
    assert!(while_open.held_back, "the reader knows events may wait behind the open transaction");

    open.commit().await.unwrap();
    let after_commit = feed.read(Position::default(), None, 100).await.unwrap();
    let aggregates: Vec<&str> = after_commit.events.iter().map(|event| event.aggregate_id.as_str()).collect();
    assert_eq!(aggregates, ["a", "b"]);
    assert!(!after_commit.held_back);
}

/// A transaction that began after every committed event holds none of them
/// back: the read delivers them all and says nothing waits (a follower that
/// thought otherwise would back off for nothing), while one that began
/// before an event's commit still holds it back, and says so, even when it
/// has written a bulk load of its own rows meanwhile.
#[tokio::test]
async fn only_a_transaction_older_than_a_committed_event_holds_the_feed_back() {
    let test_db = TestDb::create().await.unwrap();
    let pool = test_db.role_pool(Role::Contacts).await.unwrap();
    let feed = Feed::start(pool.clone(), Role::Contacts, CancellationToken::new()).await.unwrap();

    commit_events(&pool, &[test_event("first", 1)]).await;
    let mut newer = pool.begin().await.unwrap();
    let bulk: Vec<_> = (0..2_000).map(|n| test_event("bulk", n)).collect();
    outbox::append(&mut newer, &bulk).await.unwrap();
    let batch = feed.read(Position::default(), None, 100).await.unwrap();
    let aggregates: Vec<&str> = batch.events.iter().map(|event| event.aggregate_id.as_str()).collect();
    assert_eq!(aggregates, ["first"]);
    assert!(!batch.held_back, "the running transaction is newer than every committed event");

    commit_events(&pool, &[test_event("second", 2)]).await;
    let batch = feed.read(batch.scanned_to, None, 100).await.unwrap();
    assert!(batch.events.is_empty(), "the bulk load's transaction is older than `second`");
    assert!(batch.held_back, "a committed event waits behind the bulk load");

    newer.commit().await.unwrap();
    let batch = feed.read(batch.scanned_to, None, 5_000).await.unwrap();
    assert_eq!(batch.events.len(), 2_001);
    assert_eq!(batch.events.last().unwrap().aggregate_id, "second");
    assert!(!batch.held_back);
}

/// Other databases of the cluster cannot write to this outbox, so their long
/// transactions must not hold this feed back (they would with a cluster-wide
/// `pg_snapshot_xmin` horizon).
#[tokio::test]
async fn an_open_transaction_in_another_database_does_not_hold_the_feed_back() {
    let test_db = TestDb::create().await.unwrap();
    let other_db = TestDb::create().await.unwrap();
    let pool = test_db.role_pool(Role::Contacts).await.unwrap();
    let feed = Feed::start(pool.clone(), Role::Contacts, CancellationToken::new()).await.unwrap();

    let mut elsewhere = other_db.connect().await.unwrap();
    sqlx::query("BEGIN").execute(&mut elsewhere).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()").execute(&mut elsewhere).await.unwrap(); // now holds an xid
    commit_events(&pool, &[test_event("here", 1)]).await;

    let batch = feed.read(Position::default(), None, 100).await.unwrap();
    let aggregates: Vec<&str> = batch.events.iter().map(|event| event.aggregate_id.as_str()).collect();
    assert_eq!(aggregates, ["here"]);
    assert!(!batch.held_back);
    sqlx::query("ROLLBACK").execute(&mut elsewhere).await.unwrap();
}

/// A transaction that rolls back leaves a gap in the sequence; the feed must not wait for it.
#[tokio::test]
async fn a_rolled_back_transaction_neither_appears_nor_blocks() {
    let test_db = TestDb::create().await.unwrap();
    let pool = test_db.role_pool(Role::Contacts).await.unwrap();
    let feed = Feed::start(pool.clone(), Role::Contacts, CancellationToken::new()).await.unwrap();

    let mut doomed = pool.begin().await.unwrap();
    outbox::append(&mut doomed, &[test_event("rolled-back", 1)]).await.unwrap();
    doomed.rollback().await.unwrap();
    commit_events(&pool, &[test_event("kept", 2)]).await;

    let batch = feed.read(Position::default(), None, 100).await.unwrap();
    let aggregates: Vec<&str> = batch.events.iter().map(|event| event.aggregate_id.as_str()).collect();
    assert_eq!(aggregates, ["kept"]);
}

/// One committed transaction, as the writers saw it.
struct Committed {
    event_ids: Vec<String>,
    /// Ticket drawn before the transaction began.
    began: u64,
    /// Ticket drawn after its commit returned.
    committed: u64,
}

#[tokio::test]
async fn concurrent_writers_lose_no_event_and_the_feed_keeps_commit_order() {
    const WRITERS: usize = 8;
    const TRANSACTIONS_PER_WRITER: usize = 40;

    let test_db = TestDb::create().await.unwrap();
    let pool = test_db.role_pool(Role::Contacts).await.unwrap();
    let feed = Feed::start(pool.clone(), Role::Contacts, CancellationToken::new()).await.unwrap();

    // A follower runs during the whole write storm, as a subscriber would.
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let stop = CancellationToken::new();
    let follower = {
        let delivered = delivered.clone();
        let mut events = Box::pin(feed.follow(Position::default(), Vec::new(), stop.clone()));
        tokio::spawn(async move {
            // The stream ends with UNAVAILABLE when `stop` is cancelled.
            while let Some(Ok(event)) = events.next().await {
                delivered.lock().unwrap().push(event);
            }
        })
    };

    let tickets = Arc::new(AtomicU64::new(0));
    let writers = (0..WRITERS).map(|writer| {
        let (pool, tickets) = (pool.clone(), tickets.clone());
        tokio::spawn(async move {
            let mut committed = Vec::new();
            for transaction in 0..TRANSACTIONS_PER_WRITER {
                let began = tickets.fetch_add(1, Ordering::SeqCst);
                let events: Vec<_> = (0..1 + transaction % 3)
                    .map(|n| test_event(&format!("w{writer}-t{transaction}"), n as i64))
                    .collect();
                let mut tx = pool.begin().await.unwrap();
                outbox::append(&mut tx, &events).await.unwrap();
                // Hold the transaction open a little, so that sequence order and commit order differ.
                sqlx::query("SELECT pg_sleep(random() * 0.004)").execute(&mut *tx).await.unwrap();
                tx.commit().await.unwrap();
                let committed_ticket = tickets.fetch_add(1, Ordering::SeqCst);
                committed.push(Committed {
                    event_ids: events.iter().map(|event| event.id.to_string()).collect(),
                    began,
                    committed: committed_ticket,
                });
            }
            committed
        })
    });
    let mut transactions = Vec::new();
    for writer in futures_util::future::join_all(writers).await {
        transactions.extend(writer.unwrap());
    }
    let written: usize = transactions.iter().map(|transaction| transaction.event_ids.len()).sum();

    eventually(Duration::from_secs(60), "the follower to receive every committed event", || {
        let delivered = delivered.clone();
        async move { delivered.lock().unwrap().len() >= written }
    })
    .await;
    stop.cancel();
    follower.await.unwrap();

    let delivered = delivered.lock().unwrap();
    assert_eq!(delivered.len(), written, "no event repeated");
    let delivered_ids: HashSet<&str> = delivered.iter().map(|event| event.id.as_str()).collect();
    let written_ids: HashSet<&str> =
        transactions.iter().flat_map(|transaction| transaction.event_ids.iter().map(String::as_str)).collect();
    assert_eq!(delivered_ids, written_ids, "no event lost");

    let positions: Vec<Position> = delivered.iter().map(|event| Position::from(event.position)).collect();
    assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "positions strictly increase");

    // Commit order: a transaction that committed before another began is delivered before it.
    let index_of = |id: &str| delivered.iter().position(|event| event.id == id).unwrap();
    let first_index: Vec<(usize, &Committed)> =
        transactions.iter().map(|transaction| (index_of(&transaction.event_ids[0]), transaction)).collect();
    for (earlier_index, earlier) in &first_index {
        for (later_index, later) in &first_index {
            if earlier.committed < later.began {
                assert!(earlier_index < later_index, "a transaction committed earlier was delivered later");
            }
        }
    }
}

/// A large append goes by COPY (`crm_platform::copy`), and reads back as
/// the `unnest` insert's would: every field as written, even text that COPY
/// must escape and payloads of any bytes, in the order appended, across the
/// pieces the rows are streamed in.
#[tokio::test]
async fn a_large_append_reads_back_field_for_field_in_order() {
    let test_db = TestDb::create().await.unwrap();
    let pool = test_db.role_pool(Role::Contacts).await.unwrap();
    let feed = Feed::start(pool.clone(), Role::Contacts, CancellationToken::new()).await.unwrap();

    let count = crm_platform::copy::WORTH_COPYING + 7;
    let events: Vec<outbox::NewEvent> = (0..count)
        .map(|n| {
            let mut event = test_event(&format!("agg\t{n}\\x\n\r"), n as i64);
            // Every byte value, a payload that differs by event, and some
            // 10 MB of COPY text in all, which goes in several pieces.
            event.payload = (0..=255u8).cycle().take(1_000).chain((n as u64).to_le_bytes()).collect();
            event.request_id = format!("req\\N {n}");
            event
        })
        .collect();
    commit_events(&pool, &events).await;

    let mut read = Vec::new();
    let mut after = Position::default();
    while read.len() < count {
        let batch = feed.read(after, None, 1_000).await.unwrap();
        assert!(!batch.events.is_empty(), "the feed ended after {} of {count} events", read.len());
        after = batch.scanned_to;
        read.extend(batch.events);
    }
    assert_eq!(read.len(), count);
    for (written, stored) in events.iter().zip(&read) {
        assert_eq!(stored.id, written.id.to_string());
        assert_eq!(stored.r#type, written.event_type);
        assert_eq!(stored.aggregate_type, written.aggregate_type);
        assert_eq!(stored.aggregate_id, written.aggregate_id);
        assert_eq!(stored.request_id, written.request_id);
        assert_eq!(stored.payload.as_ref().unwrap().value, written.payload);
    }
}

/// The live lane: events of single calls as they commit, past transactions
/// still open (a bulk load's, or an older single call's, delivered when it
/// commits), and never a bulk stream's events; the whole feed still has
/// every event, in order, and says which were bulk.
#[tokio::test]
async fn the_live_lane_delivers_single_calls_events_past_open_transactions_and_no_bulk_ones() {
    let test_db = TestDb::create().await.unwrap();
    let pool = test_db.role_pool(Role::Contacts).await.unwrap();
    let feed = Feed::start(pool.clone(), Role::Contacts, CancellationToken::new()).await.unwrap();

    let mut bulk = pool.begin().await.unwrap();
    outbox::mark_bulk(&mut bulk).await.unwrap();
    outbox::append(&mut bulk, &[test_event("bulk", 1)]).await.unwrap();
    let mut slow = pool.begin().await.unwrap();
    outbox::append(&mut slow, &[test_event("slow", 2)]).await.unwrap();
    commit_events(&pool, &[test_event("quick", 3)]).await;

    let lane = feed.follow_live(Position::default(), Vec::new(), CancellationToken::new());
    futures_util::pin_mut!(lane);
    let first = next_event(&mut lane).await;
    assert_eq!(first.aggregate_id, "quick", "delivered while two older transactions are open");
    assert!(!first.bulk);
    let whole = feed.read(Position::default(), None, 100).await.unwrap();
    assert!(whole.events.is_empty() && whole.held_back, "the whole feed waits for them");

    slow.commit().await.unwrap();
    assert_eq!(next_event(&mut lane).await.aggregate_id, "slow", "an older transaction's event once it commits");
    bulk.commit().await.unwrap();
    commit_events(&pool, &[test_event("later", 4)]).await;
    assert_eq!(next_event(&mut lane).await.aggregate_id, "later", "the bulk event is not in the lane");
    let quiet = tokio::time::timeout(Duration::from_millis(300), lane.next()).await;
    assert!(quiet.is_err(), "nothing delivered twice: {quiet:?}");

    let whole = feed.read(Position::default(), None, 100).await.unwrap();
    let seen: Vec<(&str, bool)> = whole.events.iter().map(|event| (event.aggregate_id.as_str(), event.bulk)).collect();
    assert_eq!(seen, [("bulk", true), ("slow", false), ("quick", false), ("later", false)]);
}

/// The next event of `stream`, within a bound on waiting.
async fn next_event(
    stream: &mut (impl futures_util::Stream<Item = Result<crm_proto::events::v1::Event, crm_platform::Error>> + Unpin),
) -> crm_proto::events::v1::Event {
    tokio::time::timeout(Duration::from_secs(30), stream.next()).await.expect("an event").unwrap().unwrap()
}

/// A transaction on another role's pool cannot write this role's outbox, so
/// it does not hold this feed back (an ingest's batches, or a follower's
/// long burst in its own schema, would hold back every feed otherwise).
#[tokio::test]
async fn another_roles_open_transaction_does_not_hold_this_feed_back() {
    let test_db = TestDb::create().await.unwrap();
    let contacts = test_db.role_pool(Role::Contacts).await.unwrap();
    let interactions = test_db.role_pool(Role::Interactions).await.unwrap();
    let feed = Feed::start(contacts.clone(), Role::Contacts, CancellationToken::new()).await.unwrap();

    let mut theirs = interactions.begin().await.unwrap();
    outbox::append(&mut theirs, &[test_event("theirs", 1)]).await.unwrap();
    commit_events(&contacts, &[test_event("ours", 2)]).await;
    let read = feed.read(Position::default(), None, 100).await.unwrap();
    let aggregates: Vec<&str> = read.events.iter().map(|event| event.aggregate_id.as_str()).collect();
    assert_eq!(aggregates, ["ours"], "not held back by the interactions role's transaction");
    assert!(!read.held_back);
    theirs.rollback().await.unwrap();
}

/// A writer that asks for its wake-up after the commit does not NOTIFY in
/// its transaction (which would hold PostgreSQL's notification lock while
/// its commit is flushed); `outbox::wake` sends it after, and a follower
/// hears it.
#[tokio::test]
async fn a_wake_up_asked_for_after_the_commit_is_sent_after_it_not_in_it() {
    let test_db = TestDb::create().await.unwrap();
    let pool = test_db.role_pool(Role::Contacts).await.unwrap();
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await.unwrap();
    listener.listen("crm_outbox_contacts").await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    outbox::wake_after_commit(&mut tx).await.unwrap();
    outbox::append(&mut tx, &[test_event("quiet", 1)]).await.unwrap();
    tx.commit().await.unwrap();
    let heard = tokio::time::timeout(Duration::from_millis(500), listener.recv()).await;
    assert!(heard.is_err(), "no NOTIFY in the transaction: {heard:?}");

    outbox::wake(&pool, Role::Contacts);
    let heard = tokio::time::timeout(Duration::from_secs(10), listener.recv()).await;
    assert_eq!(heard.expect("the wake-up").unwrap().channel(), "crm_outbox_contacts");

    commit_events(&pool, &[test_event("loud", 2)]).await;
    let heard = tokio::time::timeout(Duration::from_secs(10), listener.recv()).await;
    assert!(heard.is_ok(), "other writers keep the trigger's NOTIFY");
}
