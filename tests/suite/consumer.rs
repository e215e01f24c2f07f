//! Following another role's feed: every event applied exactly once, across
//! failures, restarts and a second replica of the same consumer.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use crm_platform::{
    Role,
    consumer::{Consumer, FeedSource, Handler},
    metrics::Metrics,
    outbox::{self, Position},
    principal::{AccessRole, IdentitySigner, Principal, SignedChannel},
    telemetry::Telemetry,
};
use crm_proto::{common::v1::Money, events::v1::Event};
use crm_testkit::{INTERNAL_SECRET, TestDb, TestSuite};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::support::{commit_events, eventually, test_event};

/// Where consumer `name` stands, and how many claims it holds.
async fn cursor_and_claims(pool: &PgPool, name: &str) -> (Position, i64) {
    let mut conn = pool.acquire().await.unwrap();
    let cursor = crm_platform::consumer::cursor_of(&mut conn, name).await.unwrap();
    let claims = sqlx::query_scalar("SELECT count(*) FROM feed_claims").fetch_one(&mut *conn).await.unwrap();
    (cursor, claims)
}

/// The ids of the events consumed.
async fn consumed_ids(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT event_id FROM consumed ORDER BY event_id").fetch_all(pool).await.unwrap()
}

/// Records each event it is given; fails the first attempt at each when asked to.
#[derive(Clone, Default)]
struct Recorder {
    fail_first_attempt: bool,
    attempted: Arc<Mutex<HashSet<String>>>,
    /// Takes the test events ahead of their turn from the live lane.
    ahead: bool,
}

impl Handler for Recorder {
    fn ahead_types(&self) -> Vec<String> {
        if self.ahead { vec![<Money as prost::Name>::full_name()] } else { Vec::new() }
    }

    async fn handle(&self, tx: &mut PgConnection, event: &Event) -> anyhow::Result<()> {
        let first_attempt = self.attempted.lock().unwrap().insert(event.id.clone());
        if self.fail_first_attempt && first_attempt {
            anyhow::bail!("the first attempt at each event fails");
        }
        sqlx::query("INSERT INTO consumed (event_id) VALUES ($1)").bind(&event.id).execute(tx).await?;
        Ok(())
    }
}

fn consumer(
    channel: tonic::transport::Channel,
    pool: &PgPool,
    handler: Recorder,
    telemetry: &Telemetry,
) -> Consumer<Recorder> {
    let principal = Principal { key_id: "role:interactions".into(), roles: vec![AccessRole::Admin] };
    let channel = SignedChannel::new(channel, IdentitySigner::new(INTERNAL_SECRET.as_bytes()), principal);
    Consumer {
        name: "test.contacts-follower".into(),
        pool: pool.clone(),
        background: pool.clone(),
        source: FeedSource { channel, service: "crm.contacts.v1.ContactsService" },
        handler,
        metrics: Metrics::new(telemetry),
    }
}

async fn consumed(pool: &PgPool) -> (i64, i64) {
    sqlx::query_as("SELECT count(*), count(DISTINCT event_id) FROM consumed").fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn a_consumer_applies_each_event_once_across_failures_restarts_and_replicas() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let contacts = &test_db.role_pool(Role::Contacts).await.unwrap();
    let interactions = &test_db.role_pool(Role::Interactions).await.unwrap();
    sqlx::query("CREATE TABLE consumed (event_id text NOT NULL)").execute(interactions).await.unwrap();

    let telemetry = Telemetry::for_tests();
    let stop = CancellationToken::new();
    let flaky = Recorder { fail_first_attempt: true, ..Default::default() };
    let channel = suite.channel(Role::Contacts).await.unwrap();
    let first = consumer(channel.clone(), interactions, flaky.clone(), &telemetry).spawn(stop.clone());
    let second = consumer(channel.clone(), interactions, flaky, &telemetry).spawn(stop.clone());
    for amount in 0..10 {
        commit_events(contacts, &[test_event("c1", amount)]).await;
    }
    eventually(Duration::from_secs(60), "10 events to be consumed", || async { consumed(interactions).await.0 >= 10 })
        .await;
    assert_eq!(consumed(interactions).await, (10, 10), "each event once, though every first attempt failed");

    stop.cancel();
    first.await.unwrap();
    second.await.unwrap();

    // Events committed while no consumer runs are picked up from the stored cursor.
    for amount in 10..15 {
        commit_events(contacts, &[test_event("c1", amount)]).await;
    }
    let restart = CancellationToken::new();
    let steady = Recorder::default();
    let resumed = consumer(channel, interactions, steady.clone(), &telemetry).spawn(restart.clone());
    eventually(Duration::from_secs(60), "15 events in all", || async { consumed(interactions).await.0 >= 15 }).await;
    assert_eq!(consumed(interactions).await, (15, 15));
    assert_eq!(steady.attempted.lock().unwrap().len(), 5, "after the restart only the new events are offered");

    restart.cancel();
    resumed.await.unwrap();

    // Progress and lag per consumer are exported.
    let mut exported = String::new();
    prometheus::TextEncoder::new().encode_utf8(&telemetry.registry.gather(), &mut exported).unwrap();
    let applied = exported
        .lines()
        .find(|line| line.starts_with("crm_consumer_events_total{") && line.contains("test.contacts-follower"))
        .unwrap_or_else(|| panic!("no consumer counter in:\n{exported}"));
    assert!(applied.ends_with(" 15"), "{applied}");
    assert!(exported.contains("crm_consumer_delay_seconds_bucket{"), "{exported}");
    suite.shutdown().await.unwrap();
}

/// Two replicas of the test consumer in the interactions schema, following
/// the contacts feed of a running suite.
struct Following {
    _test_db: TestDb,
    suite: TestSuite,
    contacts: PgPool,
    interactions: PgPool,
    stop: CancellationToken,
    replicas: Vec<tokio::task::JoinHandle<()>>,
}

impl Following {
    async fn start(recorders: [Recorder; 2]) -> Following {
        let test_db = TestDb::create().await.unwrap();
        let suite = TestSuite::start(&test_db).await.unwrap();
        let contacts = test_db.role_pool(Role::Contacts).await.unwrap();
        let interactions = test_db.role_pool(Role::Interactions).await.unwrap();
        sqlx::query("CREATE TABLE consumed (event_id text NOT NULL)").execute(&interactions).await.unwrap();
        let telemetry = Telemetry::for_tests();
        let stop = CancellationToken::new();
        let channel = suite.channel(Role::Contacts).await.unwrap();
        let replicas = recorders
            .into_iter()
            .map(|recorder| consumer(channel.clone(), &interactions, recorder, &telemetry).spawn(stop.clone()))
            .collect();
        Following { _test_db: test_db, suite, contacts, interactions, stop, replicas }
    }

    async fn stop(self) {
        self.stop.cancel();
        for replica in self.replicas {
            replica.await.unwrap();
        }
        self.suite.shutdown().await.unwrap();
    }
}

/// A single call's event is applied from the live lane while a bulk
/// transaction, still open, holds the feed (and the cursor) behind it; once
/// it commits, the follower applies the bulk event and skips the one applied
/// ahead. Two replicas run; every event is applied once.
#[tokio::test]
async fn a_single_calls_event_is_applied_ahead_of_an_open_bulk_transaction_and_only_once() {
    let ahead = Recorder { ahead: true, ..Default::default() };
    let following = Following::start([ahead.clone(), ahead]).await;
    let (contacts, interactions) = (&following.contacts, &following.interactions);
    commit_events(contacts, &[test_event("before", 0)]).await;
    eventually(Duration::from_secs(60), "the first event", || async { consumed(interactions).await.0 == 1 }).await;
    // Its claim is dropped once the feed's follower, which leaves the lane
    // its events for a moment (`consumer::LANE_FIRST`), moves the cursor past it.
    eventually(Duration::from_secs(60), "the first event's claim dropped", || async {
        cursor_and_claims(interactions, "test.contacts-follower").await.1 == 0
    })
    .await;

    let mut bulk = contacts.begin().await.unwrap();
    outbox::mark_bulk(&mut bulk).await.unwrap();
    let held = test_event("bulk", 1);
    outbox::append(&mut bulk, std::slice::from_ref(&held)).await.unwrap();
    let single = test_event("single", 2);
    commit_events(contacts, std::slice::from_ref(&single)).await;
    eventually(Duration::from_secs(60), "the single call's event, ahead", || async {
        consumed_ids(interactions).await.contains(&single.id.to_string())
    })
    .await;
    let (cursor, claims) = cursor_and_claims(interactions, "test.contacts-follower").await;
    assert_eq!(consumed(interactions).await, (2, 2), "the bulk event waits");
    assert_eq!(claims, 1, "the event applied ahead is claimed");

    bulk.commit().await.unwrap();
    eventually(Duration::from_secs(60), "the bulk event", || async { consumed(interactions).await.0 >= 3 }).await;
    commit_events(contacts, &[test_event("after", 3)]).await;
    eventually(Duration::from_secs(60), "every event", || async { consumed(interactions).await.0 >= 4 }).await;
    eventually(Duration::from_secs(60), "the claims dropped as the cursor passes them", || async {
        cursor_and_claims(interactions, "test.contacts-follower").await.1 == 0
    })
    .await;
    let (after, _) = cursor_and_claims(interactions, "test.contacts-follower").await;
    assert!(after > cursor, "the cursor moved past the held events");
    assert_eq!(consumed(interactions).await, (4, 4), "each event once");

    following.stop().await;
}

/// Random interleavings of single calls' events, bulk events, transactions
/// left open for a while (single and bulk), rolled back or committed, while
/// two replicas follow with the live lane and the second fails its first
/// attempt at each event: what was applied is exactly what committed, each
/// once (the from-scratch answer: the committed events of the feed), and no
/// claim is left once the cursor has passed them all.
#[tokio::test]
async fn the_live_lane_and_the_feed_together_apply_every_committed_event_once() {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let following = Following::start([
        Recorder { ahead: true, ..Default::default() },
        Recorder { ahead: true, fail_first_attempt: true, ..Default::default() },
    ])
    .await;
    let (contacts, interactions) = (&following.contacts, &following.interactions);
    let mut committed: Vec<String> = Vec::new();
    for seed in 0..3u64 {
        let mut random = StdRng::seed_from_u64(seed);
        let mut open: Vec<(sqlx::Transaction<'_, sqlx::Postgres>, Vec<String>)> = Vec::new();
        for step in 0..60i64 {
            match random.random_range(0..10) {
                0..=3 => {
                    let event = test_event("single", step);
                    commit_events(contacts, std::slice::from_ref(&event)).await;
                    committed.push(event.id.to_string());
                }
                4..=5 => {
                    let mut tx = contacts.begin().await.unwrap();
                    if random.random_bool(0.7) {
                        outbox::mark_bulk(&mut tx).await.unwrap();
                    }
                    let events: Vec<_> =
                        (0..random.random_range(1..200)).map(|n| test_event("open", step * 1000 + n)).collect();
                    outbox::append(&mut tx, &events).await.unwrap();
                    open.push((tx, events.iter().map(|event| event.id.to_string()).collect()));
                }
                _ if !open.is_empty() => {
                    let (tx, ids) = open.swap_remove(random.random_range(0..open.len()));
                    if random.random_bool(0.8) {
                        tx.commit().await.unwrap();
                        committed.extend(ids);
                    } else {
                        tx.rollback().await.unwrap();
                    }
                }
                _ => tokio::time::sleep(Duration::from_millis(random.random_range(0..20))).await,
            }
        }
        for (tx, ids) in open {
            tx.commit().await.unwrap();
            committed.extend(ids);
        }
        committed.sort();
        eventually(Duration::from_secs(120), "every committed event", || async {
            consumed(interactions).await.0 >= committed.len() as i64
        })
        .await;
        let applied = consumed_ids(interactions).await;
        let twice: Vec<&String> = applied.windows(2).filter(|pair| pair[0] == pair[1]).map(|pair| &pair[0]).collect();
        let missing: Vec<&String> = committed.iter().filter(|id| applied.binary_search(id).is_err()).collect();
        let extra: Vec<&String> = applied.iter().filter(|id| committed.binary_search(id).is_err()).collect();
        assert!(
            twice.is_empty() && missing.is_empty() && extra.is_empty(),
            "seed {seed}: applied twice {twice:?}, missing {missing:?}, never committed {extra:?}"
        );
    }
    eventually(Duration::from_secs(60), "no claim left", || async {
        cursor_and_claims(interactions, "test.contacts-follower").await.1 == 0
    })
    .await;
    following.stop().await;
}

/// A rebuild sends a consumer back while its first burst, which creates its
/// cursor, has not committed: the rewind waits for that burst and then sends
/// the new cursor back. (An `UPDATE` did not see the uncommitted row: the
/// burst then committed its cursor past events whose effects the rebuild
/// emptied, and the replay never brought them back.)
#[tokio::test]
async fn a_rewind_sends_back_a_cursor_whose_first_burst_has_not_committed() {
    let test_db = TestDb::create().await.unwrap();
    let pool = test_db.role_pool(Role::Segmentation).await.unwrap();
    let past = Position { transaction: 42, sequence: 1 };
    let mut burst = pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO feed_cursors (consumer, transaction_id, sequence) VALUES ('test.first-burst', 0, 0)
         ON CONFLICT (consumer) DO UPDATE SET consumer = excluded.consumer",
    )
    .execute(&mut *burst)
    .await
    .unwrap();
    sqlx::query("UPDATE feed_cursors SET transaction_id = $1, sequence = $2 WHERE consumer = 'test.first-burst'")
        .bind(past.columns().0)
        .bind(past.columns().1)
        .execute(&mut *burst)
        .await
        .unwrap();

    let rebuild = tokio::spawn({
        let pool = pool.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            crm_platform::consumer::rewind(&mut tx, &["test.first-burst"]).await.unwrap();
            tx.commit().await.unwrap();
        }
    });
    eventually(Duration::from_secs(30), "the rewind waiting for the burst", || {
        let pool = pool.clone();
        async move {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%feed_cursors%'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            waiting == 1
        }
    })
    .await;
    burst.commit().await.unwrap();
    rebuild.await.unwrap();
    assert_eq!(cursor_and_claims(&pool, "test.first-burst").await.0, Position::default(), "sent back to the start");
}

/// Field `field` (1-based, as proc(5) numbers them) of process `pid`'s
/// `/proc/<pid>/stat`.
fn stat_field(pid: i32, field: usize) -> i64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name, field 2, may hold spaces: count from the parenthesis that ends it.
    let after_name = &stat[stat.rfind(')').unwrap() + 1..];
    after_name.split_whitespace().nth(field - 3).unwrap().parse().unwrap()
}

/// Whether this process may lower process `pid`'s priority: as root, or as its owner.
fn may_lower(pid: i32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let own = std::fs::metadata("/proc/self").unwrap().uid();
    own == 0 || std::fs::metadata(format!("/proc/{pid}")).unwrap().uid() == own
}

#[tokio::test]
async fn a_backlog_worked_off_while_callers_are_served_runs_in_database_processes_below_their_priority() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let admin = PgPool::connect(&test_db.url).await.unwrap();
    let sessions = || async {
        sqlx::query_as::<_, (String, i32)>(
            "SELECT application_name, pid FROM pg_stat_activity
             WHERE datname = current_database() AND application_name LIKE 'crm-%'",
        )
        .fetch_all(&admin)
        .await
        .unwrap()
    };
    let background =
        || async { sessions().await.into_iter().filter(|(name, _)| name.ends_with("-background")).count() };
    assert_eq!(background().await, 0, "nothing is background work on a quiet install");

    // A caller every 20 ms, and a backlog of 3,000 contacts created on the
    // contacts feed: its followers work it off in small bursts, on their
    // background pools.
    let stop = CancellationToken::new();
    let caller = tokio::spawn({
        let (mut contacts, stop) = (suite.contacts().await.unwrap(), stop.clone());
        async move {
            while !stop.is_cancelled() {
                let request = crm_proto::contacts::v1::GetContactRequest { id: uuid::Uuid::new_v4().to_string() };
                let answer = contacts.get_contact(request).await;
                assert_eq!(answer.unwrap_err().code(), tonic::Code::NotFound);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let now = crm_platform::timestamp::to_proto(chrono::Utc::now());
    let backlog: Vec<_> = (0..3_000)
        .map(|_| {
            let id = uuid::Uuid::new_v4().to_string();
            let contact = crm_proto::contacts::v1::Contact {
                id: id.clone(),
                lifecycle_stage: 1,
                create_time: Some(now),
                ..Default::default()
            };
            let created = crm_proto::contacts::v1::ContactCreated { contact: Some(contact), duplicate_override: false };
            outbox::NewEvent::new("contact", id, &created, "req-test")
        })
        .collect();
    commit_events(&test_db.role_pool(Role::Contacts).await.unwrap(), &backlog).await;
    // (Alerting's rules count a backlog from 2,500 events a burst: this one is too short for them.)
    eventually(
        Duration::from_secs(60),
        "interactions' and segmentation's followers on their background pools",
        || async {
            let names: HashSet<String> = sessions().await.into_iter().map(|(name, _)| name).collect();
            ["interactions", "segmentation"].iter().all(|role| names.contains(&format!("crm-{role}-background")))
        },
    )
    .await;
    stop.cancel();
    caller.await.unwrap();

    let sessions = sessions().await;
    assert!(
        sessions.iter().all(|(_, pid)| std::path::Path::new(&format!("/proc/{pid}")).exists()),
        "this test reads the priority of PostgreSQL's processes: run it beside its server (DATABASE_URL on this machine)"
    );
    for (name, pid) in sessions {
        let (nice, server) = (stat_field(pid, 19), stat_field(pid, 4) as i32);
        if name.ends_with("-background") {
            let lowered = if may_lower(pid) { crm_platform::foreground::BACKGROUND_NICE.into() } else { nice };
            assert_eq!(nice, lowered, "{name}'s process {pid} runs below the callers");
        } else {
            // Sessions of the callers' pools keep the server's own priority.
            assert_eq!(nice, stat_field(server, 19), "{name}'s process {pid} keeps the callers' priority");
        }
    }
    suite.shutdown().await.unwrap();
}
