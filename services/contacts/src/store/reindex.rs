//! Bringing contacts indexed by an older version of `terms` (their search
//! terms and blocking keys) up to date: at
//! start, in the background, a few hundred contacts per transaction in id
//! order, each batch in a handful of statements (about 10,000 contacts a
//! second), by one replica at a time (an advisory lock). Until it finishes,
//! lookups, duplicate checks and search do not see the contacts it has not
//! reached; a fresh install has none.

use std::time::Duration;

use crm_platform::Error;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::rewrite_terms;
use crate::{model::ContactData, terms};

/// Contacts indexed per transaction.
const BATCH: i64 = 500;

/// Re-indexes stale contacts until none is left or `shutdown`; returns how many it did.
pub async fn run(pool: &PgPool, shutdown: &CancellationToken) -> Result<u64, Error> {
    let mut lock = pool.acquire().await?;
    let leader: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended('contacts reindex', 0))")
        .fetch_one(&mut *lock)
        .await?;
    if !leader {
        return Ok(0);
    }
    let mut done = 0;
    let mut after = Uuid::nil();
    while !shutdown.is_cancelled() {
        let mut tx = pool.begin().await?;
        let stale: Vec<(Uuid, sqlx::types::Json<ContactData>, bool)> = sqlx::query_as(
            "SELECT id, data, (merged_into IS NULL AND delete_time IS NULL AND erase_time IS NULL) FROM contacts
             WHERE id > $1 AND terms_version < $2 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED",
        )
        .bind(after)
        .bind(terms::VERSION)
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        let live: std::collections::HashSet<Uuid> =
            stale.iter().filter(|(_, _, live)| *live).map(|(id, ..)| *id).collect();
        let stale: Vec<(Uuid, sqlx::types::Json<ContactData>)> =
            stale.into_iter().map(|(id, data, _)| (id, data)).collect();
        let Some((last, _)) = stale.last() else { break };
        after = *last;
        // Live contacts get their terms again (those their rows recorded are replaced).
        let batch: Vec<(Uuid, Option<&ContactData>)> =
            stale.iter().map(|(id, data)| (*id, live.contains(id).then_some(&**data))).collect();
        rewrite_terms(&mut tx, &batch).await?;
        // rewrite_terms recorded the version of the live ones; the others have no terms to record.
        sqlx::query("UPDATE contacts SET terms_version = $2 WHERE id = ANY($1)")
            .bind(stale.iter().map(|(id, _)| *id).filter(|id| !live.contains(id)).collect::<Vec<_>>())
            .bind(terms::VERSION)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        done += stale.len() as u64;
        tracing::info!(contacts = done, "re-indexed contacts");
        tokio::time::sleep(Duration::from_millis(10)).await; // leave room for the calls being served
    }
    let _ = sqlx::query("SELECT pg_advisory_unlock(hashtextextended('contacts reindex', 0))").execute(&mut *lock).await;
    Ok(done)
}
