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
    principal::{AccessRole, IdentitySigner, Principal, SignedChannel},
    telemetry::Telemetry,
};
use crm_proto::events::v1::Event;
use crm_testkit::{INTERNAL_SECRET, TestDb, TestSuite};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::support::{commit_events, eventually, test_event};

/// Records each event it is given; fails the first attempt at each when asked to.
#[derive(Clone)]
struct Recorder {
    fail_first_attempt: bool,
    attempted: Arc<Mutex<HashSet<String>>>,
}

impl Handler for Recorder {
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
    let contacts = test_db.role_pool(Role::Contacts).await.unwrap();
    let interactions = test_db.role_pool(Role::Interactions).await.unwrap();
    sqlx::query("CREATE TABLE consumed (event_id text NOT NULL)").execute(&interactions).await.unwrap();

    let telemetry = Telemetry::for_tests();
    let stop = CancellationToken::new();
    let flaky = Recorder { fail_first_attempt: true, attempted: Arc::default() };
    let channel = suite.channel(Role::Contacts).await.unwrap();
    let first = consumer(channel.clone(), &interactions, flaky.clone(), &telemetry).spawn(stop.clone());
    let second = consumer(channel.clone(), &interactions, flaky, &telemetry).spawn(stop.clone());
    for amount in 0..10 {
        commit_events(&contacts, &[test_event("c1", amount)]).await;
    }
    eventually(Duration::from_secs(60), "10 events to be consumed", || async { consumed(&interactions).await.0 >= 10 })
        .await;
    assert_eq!(consumed(&interactions).await, (10, 10), "each event once, though every first attempt failed");

    stop.cancel();
    first.await.unwrap();
    second.await.unwrap();

    // Events committed while no consumer runs are picked up from the stored cursor.
    for amount in 10..15 {
        commit_events(&contacts, &[test_event("c1", amount)]).await;
    }
    let restart = CancellationToken::new();
    let steady = Recorder { fail_first_attempt: false, attempted: Arc::default() };
    let resumed = consumer(channel, &interactions, steady.clone(), &telemetry).spawn(restart.clone());
    eventually(Duration::from_secs(60), "15 events in all", || async { consumed(&interactions).await.0 >= 15 }).await;
    assert_eq!(consumed(&interactions).await, (15, 15));
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
