//! The read model's SQL: profiles, activity, merges and tombstones, and the
//! features computed from them. Nothing outside this module writes the
//! `segmentation` schema's read-model tables.
//!
//! Two consumers (contacts feed, interactions feed) write concurrently, each
//! in its own transaction: a contact's features are recomputed under a
//! transaction-scoped advisory lock on that contact (its stripe), taken before its inputs
//! are read, so the second of two concurrent changes always reads the first
//! one's committed result (READ COMMITTED) and no update is lost.

pub mod analytics;
pub mod read_model;
pub mod rebuild;
pub mod scores;
pub mod segments;

use uuid::Uuid;

/// Who a contact id names changes with a merge (its survivor) or an
/// erasure (no one), and whose revenue a contact reads changes with a
/// relationship (its referees, its organization's staff): the contacts
/// consumer holds this lock exclusively while it applies any of these,
/// every other batch shared from its start. So an interaction stored under
/// a loser by a concurrent batch is either committed before the merge moves
/// the loser's activity, or resolved to the survivor after it; and a
/// purchase either commits before a new colleague's features read the
/// organization's revenue, or finds that colleague among its dependents
/// after. Taken before any other lock of the role.
const IDENTITIES_LOCK: &str = "crm.segmentation.identities";

/// The lock that orders a segment's population (exclusive) and the
/// reconciles of memberships (shared): `segments`' module doc says why.
pub const SEGMENTS_LOCK: &str = "crm.segmentation.segments";

/// Taken at the start of a batch that reads or writes features (a feed's
/// burst, the schedule's, a refresh's page), before it reads anything:
/// [`IDENTITIES_LOCK`] (exclusive when the batch merges, erases or
/// relinks contacts) then [`SEGMENTS_LOCK`] shared, in that order, in one
/// round trip (a live lane's transaction is some fifteen statements; each
/// costs a round trip on two busy cores).
pub async fn lock_batch(tx: &mut sqlx::PgConnection, identities_exclusive: bool) -> Result<(), crm_platform::Error> {
    let identities = if identities_exclusive { "pg_advisory_xact_lock" } else { "pg_advisory_xact_lock_shared" };
    // A target list is evaluated left to right: the identities lock first.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {identities}(hashtextextended($1, 0)), pg_advisory_xact_lock_shared(hashtextextended($2, 0))"
    )))
    .bind(IDENTITIES_LOCK)
    .bind(SEGMENTS_LOCK)
    .execute(tx)
    .await?;
    Ok(())
}

/// Contacts share this many recompute locks (by a hash of their id).
/// PostgreSQL keeps every lock a transaction holds in one shared table sized
/// by `max_locks_per_transaction` × connections (about 12,000 with the
/// defaults, for every connection of the install): a lock per contact let one
/// burst touching thousands of contacts fill it, failing its own commit
/// forever and other roles' transactions with "out of shared memory". So
/// a transaction holds at most this many, whatever it touches; two that
/// share a stripe wait for each other where they need not, which costs
/// only overlap between the role's own writers.
pub const CONTACT_LOCK_STRIPES: i32 = 1024;

/// Waits for, then holds until commit, the recompute locks of `contacts`
/// (their stripes), taken in key order so that two transactions never wait
/// for each other.
pub async fn lock_contacts(tx: &mut sqlx::PgConnection, contacts: &[Uuid]) -> Result<(), crm_platform::Error> {
    if contacts.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtext('crm.segmentation.contact'), k)
         FROM (SELECT DISTINCT (hashtextextended(c::text, 0) & ($2 - 1))::int AS k FROM unnest($1::uuid[]) AS c) AS s
         ORDER BY k",
    )
    .bind(contacts)
    .bind(i64::from(CONTACT_LOCK_STRIPES))
    .execute(tx)
    .await?;
    Ok(())
}
