//! Time moves features without any event: a purchase leaves the 30-day
//! window 30 days after it happened, a day count ticks at midnight of its
//! own clock, a birthday comes. Every recompute stores the moment its
//! contact's features next change (`features.next_change_at`); this task,
//! on one replica at a time (an advisory lock), recomputes the contacts
//! whose moment has come and brings their memberships up to date, with
//! their events. It looks every [`POLL`], so a membership that time ends is
//! exited within a second or two of the moment (the issue asks for a minute).

use std::{sync::Arc, time::Duration};

use crm_platform::{Error, clock::Clock};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{segments::Segments, store::read_model};

/// How often the due contacts are looked for.
pub const POLL: Duration = Duration::from_secs(1);
/// Contacts recomputed per transaction.
const BATCH: i64 = 500;
const LOCK: &str = "crm.segmentation.schedule";

/// Runs until `shutdown`, on the replica that holds the lock.
pub fn spawn(pool: PgPool, clock: Clock, segments: Arc<Segments>, shutdown: CancellationToken) {
    let run_pool = pool.clone();
    crm_platform::leader::spawn_periodic(pool, LOCK, POLL, shutdown, move || {
        let (pool, clock, segments) = (run_pool.clone(), clock.clone(), segments.clone());
        async move {
            while run_due(&pool, &clock, &segments).await? == BATCH as usize {}
            Ok(())
        }
    });
}

/// Recomputes up to one batch of contacts whose features are due to change;
/// returns how many.
pub async fn run_due(pool: &PgPool, clock: &Clock, segments: &Segments) -> Result<usize, Error> {
    let now = clock.now();
    let mut tx = pool.begin().await?;
    crate::store::lock_batch(&mut tx, false).await?;
    let due: Vec<Uuid> = sqlx::query_scalar(
        "SELECT contact_id FROM features WHERE next_change_at <= $1 ORDER BY next_change_at LIMIT $2",
    )
    .bind(now)
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await?;
    if due.is_empty() {
        return Ok(0);
    }
    let computed = read_model::recompute(&mut tx, &due, now).await?;
    segments.reconcile(&mut tx, &computed, &Default::default(), now).await?;
    tx.commit().await?;
    Ok(due.len())
}
