//! Periodic work that one replica at a time must do (the segmentation
//! schedule, the alerting evaluator): the replica holding a Postgres
//! session advisory lock leads and runs the task every period; the others
//! try again every period, so a new leader takes over within a period of
//! the old one's death (its session, and so its lock, ends with it).

use std::{future::Future, time::Duration};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Runs `task` every `period` until `shutdown`, while holding the advisory
/// lock named `lock`. A failed run is logged and the next one comes a period later.
pub fn spawn_periodic<F, Fut>(
    pool: PgPool,
    lock: &'static str,
    period: Duration,
    shutdown: CancellationToken,
    mut task: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    tokio::spawn(async move {
        while !shutdown.is_cancelled() {
            if let Err(error) = lead(&pool, lock, period, &shutdown, &mut task).await {
                tracing::warn!(task = lock, error = format!("{error:#}"), "a periodic task failed; trying again");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(period) => {}
            }
        }
    })
}

async fn lead<F, Fut>(
    pool: &PgPool,
    lock: &'static str,
    period: Duration,
    shutdown: &CancellationToken,
    task: &mut F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut session = pool.acquire().await?;
    let leader: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
        .bind(lock)
        .fetch_one(&mut *session)
        .await?;
    if !leader {
        return Ok(());
    }
    let outcome = async {
        loop {
            task().await?;
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(period) => {}
            }
            // Still the leader: the session holding the lock is alive.
            sqlx::query("SELECT 1").execute(&mut *session).await?;
        }
    }
    .await;
    let unlocked =
        sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1, 0))").bind(lock).execute(&mut *session).await;
    if unlocked.is_err() {
        session.detach(); // a session lock dies with its session
    }
    outcome
}
