//! Rebuilding the read model from the feeds (when a feature's definition
//! changes): the read model is emptied and both consumers' cursors go back
//! to the start in one transaction; the consumers notice, replay their feeds,
//! and say when they have caught up. Memberships are kept meanwhile and not
//! reconciled; when both have caught up, every dynamic segment is evaluated
//! once over the rebuilt features, so only real changes become events.

use chrono::{DateTime, Utc};
use crm_platform::Error;
use sqlx::PgConnection;

/// The consumers that rebuild the read model.
pub const CONSUMERS: [&str; 2] = ["segmentation.contacts", "segmentation.interactions"];

/// A rebuild's state.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    pub generation: i64,
    /// The last event of each feed the read model applied.
    pub contacts_applied: crm_platform::outbox::Position,
    pub interactions_applied: crm_platform::outbox::Position,
    pub rebuilding: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

pub async fn status(conn: &mut PgConnection) -> Result<Status, Error> {
    let (generation, rebuilding, started_at, finished_at) =
        sqlx::query_as("SELECT generation, rebuilding, started_at, finished_at FROM rebuild")
            .fetch_one(&mut *conn)
            .await?;
    let contacts_applied = crm_platform::consumer::cursor_of(conn, CONSUMERS[0]).await?;
    let interactions_applied = crm_platform::consumer::cursor_of(conn, CONSUMERS[1]).await?;
    Ok(Status { generation, rebuilding, started_at, finished_at, contacts_applied, interactions_applied })
}

/// Sends the consumers' cursors back to the start: first in a rebuild's
/// transaction, before any lock a follower's transaction may wait for
/// (`consumer::rewind` waits for the one in flight), then [`start`].
pub async fn rewind(tx: &mut PgConnection) -> Result<(), Error> {
    Ok(crm_platform::consumer::rewind(tx, &CONSUMERS).await?)
}

/// Empties the read model, once [`rewind`] has sent the consumers back,
/// and drops their claims (after the emptying, as `consumer::forget_claims`
/// asks).
pub async fn start(tx: &mut PgConnection, now: DateTime<Utc>) -> Result<Status, Error> {
    sqlx::query("TRUNCATE profiles, activity, redirects, gone, invoices, problems, relationships, features")
        .execute(&mut *tx)
        .await?;
    crm_platform::consumer::forget_claims(tx, &CONSUMERS).await?;
    sqlx::query(
        "UPDATE rebuild SET generation = generation + 1, rebuilding = true, started_at = $1, finished_at = NULL, caught_up = '{}'",
    )
    .bind(now)
    .execute(&mut *tx)
    .await?;
    status(tx).await
}

/// Whether a rebuild is under way (memberships wait for it).
pub async fn rebuilding(conn: &mut PgConnection) -> Result<bool, Error> {
    Ok(sqlx::query_scalar("SELECT rebuilding FROM rebuild").fetch_one(conn).await?)
}

/// Notes that `consumer` has caught up with its feed during a rebuild;
/// returns whether every consumer has (the rebuild can finish).
pub async fn caught_up(tx: &mut PgConnection, consumer: &str) -> Result<bool, Error> {
    let caught_up: Option<Vec<String>> = sqlx::query_scalar(
        "UPDATE rebuild SET caught_up = CASE WHEN $1 = ANY(caught_up) THEN caught_up ELSE caught_up || $1 END
         WHERE rebuilding RETURNING caught_up",
    )
    .bind(consumer)
    .fetch_optional(tx)
    .await?;
    Ok(caught_up.is_some_and(|done| CONSUMERS.iter().all(|name| done.iter().any(|seen| seen == name))))
}

pub async fn finish(tx: &mut PgConnection, now: DateTime<Utc>) -> Result<(), Error> {
    sqlx::query("UPDATE rebuild SET rebuilding = false, finished_at = $1").bind(now).execute(tx).await?;
    Ok(())
}
