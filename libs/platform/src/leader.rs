//! Periodic work that one replica at a time must do (the segmentation
//! schedule, the alerting evaluator): the replica holding a Postgres
//! session advisory lock leads and runs the task every period; the others
//! try again every period, so a new leader takes over within a period of
//! the old one's death (its session, and so its lock, ends with it).

use std::{future::Future, time::Duration};

use sqlx::{Connection, PgConnection, PgPool};
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
    let Some(mut session) = SessionLock::try_take(pool, lock).await? else {
        return Ok(());
    };
    let outcome = async {
        loop {
            task().await?;
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(period) => {}
            }
            session.still_held().await?;
        }
    }
    .await;
    session.release().await;
    outcome
}

/// A session advisory lock held on a connection of its own, opened with the
/// pool's options but outside it: a role's leaders (its consumers, its
/// periodic tasks) hold their locks for as long as they lead, and must not
/// take the pool's connections from the work they lead.
pub struct SessionLock {
    session: PgConnection,
    key: String,
}

impl SessionLock {
    /// Takes lock `key` if no other session holds it; `None` if one does.
    pub async fn try_take(pool: &PgPool, key: &str) -> anyhow::Result<Option<SessionLock>> {
        let mut session = PgConnection::connect_with(&pool.connect_options()).await?;
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
            .bind(key)
            .fetch_one(&mut session)
            .await?;
        if !taken {
            let _ = session.close().await;
            return Ok(None);
        }
        Ok(Some(SessionLock { session, key: key.to_string() }))
    }

    /// Fails when the session holding the lock has died (and the lock with it).
    pub async fn still_held(&mut self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&mut self.session).await?;
        Ok(())
    }

    /// Lets the lock go (closing the session lets it go too, if unlocking fails).
    pub async fn release(mut self) {
        let _ = sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
            .bind(&self.key)
            .execute(&mut self.session)
            .await;
        let _ = self.session.close().await;
    }
}
