//! The contacts schema. Every change writes its audit entries and its event
//! to the outbox in the same transaction as the change.
//!
//! - `contacts`: create (with the duplicate check and idempotency), get,
//!   update, list, delete, lookup, search, duplicate candidates.
//! - `merge`: survivorship and merging.
//! - `erase`: the right to be forgotten.
//! - `organizations`, `relationships`.
//! - `audit`: the trail and its redaction.
//! - `search`: the search vocabulary and free-text search.
//! - `matcher`: the matching model in use, and fitting one on the base.
//! - `reindex`: bringing contacts indexed by an older `terms` version up to date.

pub mod audit;
pub mod contacts;
pub mod erase;
pub mod matcher;
pub mod merge;
pub mod organization_merge;
pub mod organizations;
pub mod reindex;
pub mod relationships;
pub mod search;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use crm_platform::Error;
use sqlx::{PgConnection, PgPool, Row, postgres::PgRow};
use uuid::Uuid;

use crate::{
    model::{ContactData, ContactMeta, ContactRecord},
    terms,
};

pub use audit::Actor;

/// The contacts store; cheap to clone.
#[derive(Clone)]
pub struct ContactStore {
    pub pool: PgPool,
    /// Where lists, exports, the audit trail and the whole-base duplicate
    /// scan read: the replicas when `DATABASE_READ_URL` is set.
    pub reads: crm_platform::db::ReadPool,
    /// Score from which a contact is a likely duplicate.
    pub threshold: f64,
    /// The matching model in use.
    pub matcher: matcher::Matcher,
}

/// A live contact (`c`): not merged away, deleted or erased. The terms index covers exactly these.
pub(crate) const LIVE: &str = "c.merged_into IS NULL AND c.delete_time IS NULL AND c.erase_time IS NULL";

pub(crate) const CONTACT_COLUMNS: &str = "c.id, c.data, c.version, c.create_time, c.update_time, c.delete_time, \
     c.erase_time, c.needs_review, c.merged_into, \
     ARRAY(SELECT m.id FROM contacts m WHERE m.merged_into = c.id ORDER BY m.id) AS merged_ids";

pub(crate) fn contact_record(row: &PgRow) -> Result<ContactRecord, Error> {
    let data: sqlx::types::Json<ContactData> = row.try_get("data")?;
    let data = data.0;
    Ok(ContactRecord {
        meta: ContactMeta {
            id: row.try_get("id")?,
            version: row.try_get("version")?,
            create_time: row.try_get("create_time")?,
            update_time: row.try_get("update_time")?,
            delete_time: row.try_get("delete_time")?,
            erase_time: row.try_get("erase_time")?,
            merged_ids: row.try_get("merged_ids")?,
            needs_review: row.try_get("needs_review")?,
        },
        data,
    })
}

/// The contacts holding each blocking key (`terms::probes`: its hash and
/// whether it is wide): none for a wide key held by more than
/// [`crate::matching::MAX_BLOCK`] (block purging; one holder more is read
/// to know), at most [`crate::matching::MAX_FAN_OUT`] for any other, so a
/// common value cannot make one decision compare against thousands.
pub(crate) async fn key_holders<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    probes: &[(i64, bool)],
) -> Result<Vec<(i64, Uuid)>, Error> {
    let (keys, wide): (Vec<i64>, Vec<bool>) = probes.iter().copied().unzip();
    Ok(sqlx::query_as(KEY_HOLDERS)
        .bind(keys)
        .bind(wide)
        .bind(crate::matching::MAX_BLOCK)
        .bind(crate::matching::MAX_FAN_OUT)
        .fetch_all(executor)
        .await?)
}

/// [`key_holders`]' statement: (term, contact) rows.
const KEY_HOLDERS: &str = "SELECT k.term, held.contact_id FROM unnest($1::bigint[], $2::bool[]) AS k(term, wide)
     CROSS JOIN LATERAL (SELECT array_agg(t.contact_id) AS ids
                         FROM (SELECT contact_id FROM contact_terms WHERE term = k.term
                               LIMIT CASE WHEN k.wide THEN $3 + 1 ELSE $4 END) AS t) AS block
     CROSS JOIN LATERAL unnest(block.ids) AS held(contact_id)
     WHERE NOT k.wide OR cardinality(block.ids) <= $3";

/// The live contacts [`key_holders`] finds, each once with the probed keys
/// it holds and its data: one statement instead of the holders and then
/// their rows (an import's message reads some 20,000 of them).
pub(crate) async fn key_holders_with_data(
    conn: &mut PgConnection,
    probes: &[(i64, bool)],
) -> Result<Vec<(Uuid, Vec<i64>, ContactData)>, Error> {
    let (keys, wide): (Vec<i64>, Vec<bool>) = probes.iter().copied().unzip();
    let rows: Vec<(Uuid, Vec<i64>, sqlx::types::Json<ContactData>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH held AS ({KEY_HOLDERS}),
                  holders AS (SELECT contact_id, array_agg(term) AS terms FROM held GROUP BY contact_id)
             SELECT c.id, h.terms, c.data FROM holders h JOIN contacts c ON c.id = h.contact_id WHERE {LIVE}"
    )))
    .bind(keys)
    .bind(wide)
    .bind(crate::matching::MAX_BLOCK)
    .bind(crate::matching::MAX_FAN_OUT)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(id, terms, data)| (id, terms, data.0)).collect())
}

/// The id a contact or organization id resolves to (`table`: contacts or
/// organizations): itself, or the survivor it was merged into; `None` when
/// no row has it.
pub(crate) async fn survivor_of<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    table: &'static str,
    id: Uuid,
) -> Result<Option<Uuid>, Error> {
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT coalesce(merged_into, id) FROM {table} WHERE id = $1")))
        .bind(id)
        .fetch_optional(executor)
        .await?)
}

/// The id a contact id resolves to: itself, or the survivor it was merged into.
pub(crate) async fn resolve(conn: &mut PgConnection, id: Uuid) -> Result<Uuid, Error> {
    survivor_of(conn, "contacts", id).await?.ok_or_else(|| Error::NotFound { resource: "contact", id: id.to_string() })
}

/// Reads a contact (resolving merges), locking its row when `for_update`.
pub(crate) async fn load(conn: &mut PgConnection, id: Uuid, for_update: bool) -> Result<ContactRecord, Error> {
    let lock = if for_update { "FOR UPDATE OF c" } else { "" };
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CONTACT_COLUMNS} FROM contacts c
         WHERE c.id = (SELECT coalesce(r.merged_into, r.id) FROM contacts r WHERE r.id = $1) {lock}"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    match row {
        Some(row) => contact_record(&row),
        None => Err(Error::NotFound { resource: "contact", id: id.to_string() }),
    }
}

/// Refuses changes to a tombstone.
pub(crate) fn ensure_not_erased(record: &ContactRecord) -> Result<(), Error> {
    if record.meta.erase_time.is_some() {
        return Err(Error::FailedPrecondition {
            reason: "CONTACT_ERASED",
            message: format!("contact {} was erased; its tombstone cannot change", record.meta.id),
        });
    }
    Ok(())
}

/// Replaces the terms of a contact (none for one that is no longer live):
/// deletes those its row records, inserts the new ones, records them.
pub(crate) async fn write_terms(conn: &mut PgConnection, id: Uuid, data: Option<&ContactData>) -> Result<(), Error> {
    rewrite_terms(conn, &[(id, data)]).await
}

/// [`write_terms`] for many contacts at once, in a handful of statements
/// whatever their number (the re-index of a whole base goes through here).
pub(crate) async fn rewrite_terms(
    conn: &mut PgConnection,
    contacts: &[(Uuid, Option<&ContactData>)],
) -> Result<(), Error> {
    let ids: Vec<Uuid> = contacts.iter().map(|(id, _)| *id).collect();
    forget_terms(&mut *conn, &ids).await?;
    let live: Vec<(Uuid, &ContactData, Vec<i64>)> = contacts
        .iter()
        .filter_map(|(id, data)| data.map(|data| (*id, data, terms::hashes(&terms::all(data)))))
        .collect();
    if live.is_empty() {
        return Ok(());
    }
    let (terms_written, owners): (Vec<i64>, Vec<Uuid>) =
        term_rows(live.iter().map(|(id, _, all)| (*id, all.as_slice()))).into_iter().unzip();
    sqlx::query(
        "INSERT INTO contact_terms (term, contact_id)
         SELECT * FROM unnest($1::bigint[], $2::uuid[]) ON CONFLICT DO NOTHING",
    )
    .bind(&terms_written)
    .bind(&owners)
    .execute(&mut *conn)
    .await?;
    let live_ids: Vec<Uuid> = live.iter().map(|(id, ..)| *id).collect();
    let recorded: Vec<String> = live.iter().map(|(_, _, all)| integer_array(all)).collect();
    sqlx::query(
        "UPDATE contacts c SET terms = t.terms::bigint[], terms_version = $3
         FROM unnest($1::uuid[], $2::text[]) AS t(id, terms) WHERE c.id = t.id",
    )
    .bind(&live_ids)
    .bind(&recorded)
    .bind(terms::VERSION)
    .execute(&mut *conn)
    .await?;
    let words: BTreeSet<String> = live.iter().flat_map(|(_, data, _)| terms::words(data)).collect();
    search::remember_words(conn, &words.iter().map(String::as_str).collect::<Vec<_>>()).await
}

/// The `contact_terms` rows (term, contact) of these contacts, in term
/// order: consecutive inserts then walk the index in one direction (its
/// upper pages stay in cache), a third cheaper than in contact order.
pub(crate) fn term_rows<'a>(contacts: impl Iterator<Item = (Uuid, &'a [i64])>) -> Vec<(i64, Uuid)> {
    let mut rows: Vec<(i64, Uuid)> = contacts.flat_map(|(id, all)| all.iter().map(move |term| (*term, id))).collect();
    rows.sort_unstable();
    rows
}

/// Deletes the terms the rows of these contacts record, and the record.
pub(crate) async fn forget_terms(conn: &mut PgConnection, ids: &[Uuid]) -> Result<(), Error> {
    sqlx::query(
        "DELETE FROM contact_terms t USING contacts c
         WHERE c.id = ANY($1) AND t.term = ANY(c.terms) AND t.contact_id = c.id",
    )
    .bind(ids)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE contacts SET terms = '{}' WHERE id = ANY($1) AND terms <> '{}'")
        .bind(ids)
        .execute(conn)
        .await?;
    Ok(())
}

/// Claims the contact's external ids, replacing those it held; ALREADY_EXISTS when another contact holds one.
pub(crate) async fn write_external_ids(conn: &mut PgConnection, id: Uuid, data: &ContactData) -> Result<(), Error> {
    refuse_taken_external_ids(&mut *conn, id, data).await?;
    sqlx::query("DELETE FROM contact_external_ids WHERE contact_id = $1").bind(id).execute(&mut *conn).await?;
    insert_external_ids(conn, id, data).await
}

/// Claims a new contact's external ids; ALREADY_EXISTS when another contact holds one.
pub(crate) async fn claim_external_ids(conn: &mut PgConnection, id: Uuid, data: &ContactData) -> Result<(), Error> {
    if data.external_ids.is_empty() {
        return Ok(());
    }
    refuse_taken_external_ids(&mut *conn, id, data).await?;
    insert_external_ids(conn, id, data).await
}

async fn refuse_taken_external_ids(conn: &mut PgConnection, id: Uuid, data: &ContactData) -> Result<(), Error> {
    let sources: Vec<&str> = data.external_ids.iter().map(|external| external.source.as_str()).collect();
    let values: Vec<&str> = data.external_ids.iter().map(|external| external.id.as_str()).collect();
    let taken = sqlx::query(
        "SELECT source, external_id, contact_id FROM contact_external_ids
         WHERE (source, external_id) IN (SELECT * FROM unnest($1::text[], $2::text[])) AND contact_id <> $3 LIMIT 1",
    )
    .bind(&sources)
    .bind(&values)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    if let Some(row) = taken {
        let (source, external_id, owner): (String, String, Uuid) =
            (row.try_get("source")?, row.try_get("external_id")?, row.try_get("contact_id")?);
        return Err(Error::AlreadyExists {
            reason: "EXTERNAL_ID_TAKEN",
            message: format!("external id {source}/{external_id} belongs to contact {owner}"),
            metadata: [("contact_id".to_string(), owner.to_string())].into(),
        });
    }
    Ok(())
}

async fn insert_external_ids(conn: &mut PgConnection, id: Uuid, data: &ContactData) -> Result<(), Error> {
    let sources: Vec<&str> = data.external_ids.iter().map(|external| external.source.as_str()).collect();
    let values: Vec<&str> = data.external_ids.iter().map(|external| external.id.as_str()).collect();
    sqlx::query(
        "INSERT INTO contact_external_ids (source, external_id, contact_id)
         SELECT s, e, $3 FROM unnest($1::text[], $2::text[]) AS t(s, e)",
    )
    .bind(&sources)
    .bind(&values)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes a contact's new data and bumps its version; returns the new
/// update time. Its terms are the caller's ([`write_terms`]).
pub(crate) async fn write_data(
    conn: &mut PgConnection,
    id: Uuid,
    data: &ContactData,
    needs_review: bool,
) -> Result<DateTime<Utc>, Error> {
    let row = sqlx::query(
        "UPDATE contacts SET data = $2, lifecycle_stage = $3, owner = $4, tags = $5,
             needs_review = $6, version = version + 1, update_time = greatest(now(), update_time + interval '1 microsecond')
         WHERE id = $1 RETURNING update_time",
    )
    .bind(id)
    .bind(sqlx::types::Json(data))
    .bind(&data.lifecycle_stage)
    .bind(&data.owner)
    .bind(&data.tags)
    .bind(needs_review)
    .fetch_one(&mut *conn)
    .await?;
    Ok(row.try_get("update_time")?)
}

/// A text array literal (`{"a","b"}`): unnest cannot take an array of arrays of different lengths.
pub(crate) fn postgres_array(items: &[String]) -> String {
    let quoted: Vec<String> =
        items.iter().map(|item| format!("\"{}\"", item.replace('\\', "\\\\").replace('"', "\\\""))).collect();
    format!("{{{}}}", quoted.join(","))
}

/// A bigint array literal (`{1,-2}`), for the same reason.
pub(crate) fn integer_array(items: &[i64]) -> String {
    let items: Vec<String> = items.iter().map(i64::to_string).collect();
    format!("{{{}}}", items.join(","))
}
