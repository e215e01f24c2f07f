//! Helpers shared by the test modules.

use std::time::Duration;

use crm_platform::outbox::{self, NewEvent};
use crm_proto::common::v1::Money;
use sqlx::PgPool;

/// Polls `condition` every 20 ms until it holds, failing after `limit`
/// (a bound on waiting, not a performance assertion).
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A test event about `aggregate_id`; its payload carries `amount` so events can be told apart.
pub fn test_event(aggregate_id: &str, amount: i64) -> NewEvent {
    NewEvent::new("test", aggregate_id, &Money { currency_code: "EUR".into(), minor_units: amount }, "req-test")
}

/// Commits `events` in one transaction of their own.
pub async fn commit_events(pool: &PgPool, events: &[NewEvent]) {
    let mut tx = pool.begin().await.unwrap();
    outbox::append(&mut tx, events).await.unwrap();
    tx.commit().await.unwrap();
}
