//! Segments and memberships.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use crm_platform::Error;
use sqlx::{PgConnection, Row, postgres::PgRow};
use uuid::Uuid;

use crate::features::{self, FeatureDoc};

/// A segment as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentRecord {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    /// `dynamic`.
    pub kind: String,
    pub rule: String,
    pub version: i64,
    pub member_count: i64,
    /// For a snapshot: the segment it froze.
    pub source_segment_id: Option<Uuid>,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

/// A segment's columns but its member count.
const FIELDS: &str =
    "s.id, s.name, s.description, s.kind, s.rule, s.version, s.create_time, s.update_time, s.source_segment_id";
/// Its member count, counted.
const COUNTED: &str = "(SELECT count(*) FROM memberships m WHERE m.segment_id = s.id) AS member_count";

fn record(row: &PgRow) -> Result<SegmentRecord, Error> {
    Ok(SegmentRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        kind: row.try_get("kind")?,
        rule: row.try_get("rule")?,
        version: row.try_get("version")?,
        member_count: row.try_get("member_count")?,
        source_segment_id: row.try_get("source_segment_id")?,
        create_time: row.try_get("create_time")?,
        update_time: row.try_get("update_time")?,
    })
}

/// Segments are named uniquely: ALREADY_EXISTS for a live one of that name.
fn name_taken(name: &str) -> Error {
    Error::AlreadyExists {
        reason: "SEGMENT_NAME_TAKEN",
        message: format!("a segment named {} exists", crm_platform::error::quote(name)),
        metadata: Default::default(),
    }
}

pub async fn insert(
    tx: &mut PgConnection,
    id: Uuid,
    name: &str,
    description: &str,
    kind: &str,
    rule: &str,
) -> Result<(), Error> {
    insert_from(tx, id, name, description, kind, rule, None).await
}

/// Inserts a segment; a snapshot names the segment it froze.
pub async fn insert_from(
    tx: &mut PgConnection,
    id: Uuid,
    name: &str,
    description: &str,
    kind: &str,
    rule: &str,
    source: Option<Uuid>,
) -> Result<(), Error> {
    let inserted = sqlx::query(
        "INSERT INTO segments (id, name, description, kind, rule, source_segment_id) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(name)
    .bind(description)
    .bind(kind)
    .bind(rule)
    .bind(source)
    .execute(tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(name_taken(name));
    }
    Ok(())
}

/// A live segment, locked for the rest of the transaction when `lock`.
pub async fn get(conn: &mut PgConnection, id: Uuid, lock: bool) -> Result<SegmentRecord, Error> {
    let suffix = if lock { " FOR UPDATE OF s" } else { "" };
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {FIELDS}, {COUNTED} FROM segments s WHERE s.id = $1 AND s.delete_time IS NULL{suffix}"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| Error::NotFound { resource: "segment", id: id.to_string() })?;
    record(&row)
}

/// [`get`] for a segment whose members the caller has just counted (its
/// evaluation, in the transaction that committed them): counting a million
/// memberships not yet vacuumed again takes 130 ms.
pub async fn get_counted(conn: &mut PgConnection, id: Uuid, member_count: i64) -> Result<SegmentRecord, Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {FIELDS}, $2::bigint AS member_count FROM segments s WHERE s.id = $1 AND s.delete_time IS NULL"
    )))
    .bind(id)
    .bind(member_count)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| Error::NotFound { resource: "segment", id: id.to_string() })?;
    record(&row)
}

/// Writes a segment's changed fields; a new rule bumps its version.
pub async fn update(
    tx: &mut PgConnection,
    id: Uuid,
    name: &str,
    description: &str,
    rule: &str,
    new_version: bool,
) -> Result<(), Error> {
    let taken: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM segments WHERE lower(name) = lower($1) AND id <> $2 AND delete_time IS NULL)",
    )
    .bind(name)
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    if taken {
        return Err(name_taken(name));
    }
    sqlx::query(
        "UPDATE segments SET name = $2, description = $3, rule = $4, version = version + $5::bigint, update_time = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(name)
    .bind(description)
    .bind(rule)
    .bind(i64::from(new_version))
    .execute(tx)
    .await?;
    Ok(())
}

pub async fn soft_delete(tx: &mut PgConnection, id: Uuid) -> Result<(), Error> {
    sqlx::query("UPDATE segments SET delete_time = now(), update_time = now() WHERE id = $1")
        .bind(id)
        .execute(tx)
        .await?;
    Ok(())
}

/// Live segments by name, after `(name, id)`.
pub async fn list(
    conn: &mut PgConnection,
    after: Option<(String, Uuid)>,
    limit: i64,
) -> Result<Vec<SegmentRecord>, Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {FIELDS}, {COUNTED} FROM segments s WHERE s.delete_time IS NULL
           AND ($1::text IS NULL OR (lower(s.name), s.id) > (lower($1), $2))
         ORDER BY lower(s.name), s.id LIMIT $3"
    )))
    .bind(after.as_ref().map(|(name, _)| name.as_str()))
    .bind(after.as_ref().map(|(_, id)| *id))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter().map(record).collect()
}

/// Live dynamic segments: id, version, rule.
pub async fn dynamic(conn: &mut PgConnection) -> Result<Vec<(Uuid, i64, String)>, Error> {
    Ok(sqlx::query_as("SELECT id, version, rule FROM segments WHERE kind = 'dynamic' AND delete_time IS NULL")
        .fetch_all(conn)
        .await?)
}

/// Whether the read model is rebuilt, with a dynamic segment (id,
/// version, rule; none when there is none).
type RebuildingWithSegment = (bool, Option<Uuid>, Option<i64>, Option<String>);

/// The live dynamic segments, as [`dynamic`]; `None` while the read model
/// is rebuilt. One statement: a reconcile runs in every burst.
pub async fn dynamic_unless_rebuilding(conn: &mut PgConnection) -> Result<Option<Vec<(Uuid, i64, String)>>, Error> {
    let rows: Vec<RebuildingWithSegment> = sqlx::query_as(
        "SELECT r.rebuilding, s.id, s.version, s.rule FROM rebuild r
         LEFT JOIN segments s ON s.kind = 'dynamic' AND s.delete_time IS NULL",
    )
    .fetch_all(conn)
    .await?;
    if rows.iter().any(|(rebuilding, ..)| *rebuilding) {
        return Ok(None);
    }
    Ok(Some(rows.into_iter().filter_map(|(_, id, version, rule)| Some((id?, version?, rule?))).collect()))
}

/// The kind of each of `segments` (`dynamic`, `static`, `snapshot`).
pub async fn kinds(conn: &mut PgConnection, segments: &[Uuid]) -> Result<HashMap<Uuid, String>, Error> {
    let rows: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT id, kind FROM segments WHERE id = ANY($1)").bind(segments).fetch_all(conn).await?;
    Ok(rows.into_iter().collect())
}

/// The segments each of `contacts` is in.
pub async fn memberships_of(conn: &mut PgConnection, contacts: &[Uuid]) -> Result<HashMap<Uuid, HashSet<Uuid>>, Error> {
    let rows: Vec<(Uuid, Uuid)> =
        sqlx::query_as("SELECT contact_id, segment_id FROM memberships WHERE contact_id = ANY($1)")
            .bind(contacts)
            .fetch_all(conn)
            .await?;
    let mut found: HashMap<Uuid, HashSet<Uuid>> = HashMap::new();
    for (contact, segment) in rows {
        found.entry(contact).or_default().insert(segment);
    }
    Ok(found)
}

/// Every member of `segment`.
pub async fn members(conn: &mut PgConnection, segment: Uuid) -> Result<HashSet<Uuid>, Error> {
    let members: Vec<Uuid> = sqlx::query_scalar("SELECT contact_id FROM memberships WHERE segment_id = $1")
        .bind(segment)
        .fetch_all(conn)
        .await?;
    Ok(members.into_iter().collect())
}

/// Adds `(contact, segment)` memberships at `since`, and counts them in the
/// segments' sizes of that day; returns those that were not members yet.
pub async fn enter(
    tx: &mut PgConnection,
    entries: &[(Uuid, Uuid)],
    since: DateTime<Utc>,
) -> Result<Vec<(Uuid, Uuid)>, Error> {
    let entered = insert_memberships(tx, entries, since).await?;
    count(tx, &entered, 1, since).await?;
    Ok(entered)
}

/// [`enter`] without the counting.
async fn insert_memberships(
    tx: &mut PgConnection,
    entries: &[(Uuid, Uuid)],
    since: DateTime<Utc>,
) -> Result<Vec<(Uuid, Uuid)>, Error> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let contacts: Vec<Uuid> = entries.iter().map(|(contact, _)| *contact).collect();
    let segments: Vec<Uuid> = entries.iter().map(|(_, segment)| *segment).collect();
    let entered: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "INSERT INTO memberships (contact_id, segment_id, since) SELECT c, s, $3 FROM unnest($1::uuid[], $2::uuid[]) AS t(c, s)
         ON CONFLICT DO NOTHING RETURNING contact_id, segment_id",
    )
    .bind(&contacts)
    .bind(&segments)
    .bind(since)
    .fetch_all(&mut *tx)
    .await?;
    Ok(entered)
}

/// [`enter`] for memberships the caller knows are new (a snapshot's frozen
/// members, under the exclusive segments lock, which read its members in
/// the same transaction): many at once go by COPY, which has no `ON CONFLICT`.
pub async fn enter_new(tx: &mut PgConnection, entries: &[(Uuid, Uuid)], since: DateTime<Utc>) -> Result<(), Error> {
    if entries.len() < crm_platform::copy::WORTH_COPYING {
        enter(tx, entries, since).await?;
        return Ok(());
    }
    let since_text = since.to_rfc3339();
    crm_platform::copy::copy_in(tx, COPY_MEMBERSHIPS, entries, |row, (contact, segment)| {
        membership_row(row, *contact, *segment, &since_text);
    })
    .await?;
    count(tx, entries, 1, since).await?;
    Ok(())
}

const COPY_MEMBERSHIPS: &str = "COPY memberships (contact_id, segment_id, since) FROM STDIN";

/// A membership's fields in [`COPY_MEMBERSHIPS`]'s column order.
fn membership_row<'r>(
    row: &'r mut crm_platform::copy::CopyRows,
    contact: Uuid,
    segment: Uuid,
    since_text: &str,
) -> &'r mut crm_platform::copy::CopyRows {
    row.plain(contact).plain(segment).plain(since_text)
}

/// New members of one segment stored as its evaluation decides them, page
/// by page, under the exclusive segments lock (which proves them new): held
/// until there are enough to be worth a COPY, then streamed, so the server
/// stores a page while the role decides the next. The transaction is the
/// writer's until [`NewMembers::finish`]; the caller then counts them in
/// the segment's size of the day ([`count_added`]).
pub struct NewMembers<'c> {
    segment: Uuid,
    since: DateTime<Utc>,
    since_text: String,
    /// `None` only while changing from holding to copying.
    writing: Option<Writing<'c>>,
    stored: i64,
}

enum Writing<'c> {
    Held(&'c mut PgConnection, Vec<Uuid>),
    Copying(crm_platform::copy::CopyWriter<'c>),
}

impl<'c> NewMembers<'c> {
    pub fn new(tx: &'c mut PgConnection, segment: Uuid, since: DateTime<Utc>) -> NewMembers<'c> {
        let writing = Some(Writing::Held(tx, Vec::new()));
        NewMembers { segment, since, since_text: since.to_rfc3339(), writing, stored: 0 }
    }

    /// Adds `contact` to the segment.
    pub fn push(&mut self, contact: Uuid) {
        self.stored += 1;
        match self.writing.as_mut() {
            Some(Writing::Held(_, held)) => held.push(contact),
            Some(Writing::Copying(copy)) => {
                membership_row(copy.row(), contact, self.segment, &self.since_text).end_row();
            }
            None => unreachable!("NewMembers is holding or copying between calls"),
        }
    }

    /// A page is decided: its members go to the server (once there are
    /// enough to copy).
    pub async fn end_page(&mut self) -> Result<(), Error> {
        let writing = match self.writing.take() {
            Some(Writing::Held(tx, held)) if held.len() >= crm_platform::copy::WORTH_COPYING => {
                let mut copy = crm_platform::copy::CopyWriter::start(tx, COPY_MEMBERSHIPS).await?;
                for contact in held {
                    membership_row(copy.row(), contact, self.segment, &self.since_text).end_row();
                }
                Writing::Copying(copy)
            }
            Some(writing) => writing,
            None => unreachable!("NewMembers is holding or copying between calls"),
        };
        let writing = self.writing.insert(writing);
        if let Writing::Copying(copy) = writing {
            copy.send().await?;
        }
        Ok(())
    }

    /// Stores the rest; returns how many members were added, for
    /// [`count_added`] (the writer's COPY keeps the transaction to the end).
    pub async fn finish(mut self) -> Result<i64, Error> {
        match self.writing.take() {
            Some(Writing::Held(tx, held)) => {
                let entries: Vec<(Uuid, Uuid)> = held.into_iter().map(|contact| (contact, self.segment)).collect();
                Ok(insert_memberships(tx, &entries, self.since).await?.len() as i64)
            }
            Some(Writing::Copying(copy)) => {
                copy.finish().await?;
                Ok(self.stored)
            }
            None => unreachable!("NewMembers is holding or copying between calls"),
        }
    }
}

/// Removes `(contact, segment)` memberships at `at`, counted in the sizes of
/// that day; returns those that were members.
pub async fn exit(
    tx: &mut PgConnection,
    exits: &[(Uuid, Uuid)],
    at: DateTime<Utc>,
) -> Result<Vec<(Uuid, Uuid)>, Error> {
    if exits.is_empty() {
        return Ok(Vec::new());
    }
    let contacts: Vec<Uuid> = exits.iter().map(|(contact, _)| *contact).collect();
    let segments: Vec<Uuid> = exits.iter().map(|(_, segment)| *segment).collect();
    let left: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "DELETE FROM memberships m USING unnest($1::uuid[], $2::uuid[]) AS t(c, s)
         WHERE m.contact_id = t.c AND m.segment_id = t.s RETURNING m.contact_id, m.segment_id",
    )
    .bind(&contacts)
    .bind(&segments)
    .fetch_all(&mut *tx)
    .await?;
    count(tx, &left, -1, at).await?;
    Ok(left)
}

/// Adds `sign` per change to each segment's size of `at`'s day (the day's
/// row starts from the latest earlier day's count).
async fn count(tx: &mut PgConnection, changes: &[(Uuid, Uuid)], sign: i64, at: DateTime<Utc>) -> Result<(), Error> {
    let mut deltas: HashMap<Uuid, i64> = HashMap::new();
    for (_, segment) in changes {
        *deltas.entry(*segment).or_default() += sign;
    }
    resize(tx, deltas, at).await
}

/// Adds `added` members to `segment`'s size of `at`'s day.
pub async fn count_added(tx: &mut PgConnection, segment: Uuid, added: i64, at: DateTime<Utc>) -> Result<(), Error> {
    resize(tx, HashMap::from([(segment, added)]), at).await
}

/// Adds each segment's delta to its size of `at`'s day.
async fn resize(tx: &mut PgConnection, deltas: HashMap<Uuid, i64>, at: DateTime<Utc>) -> Result<(), Error> {
    if deltas.is_empty() {
        return Ok(());
    }
    let (segments, amounts): (Vec<Uuid>, Vec<i64>) = deltas.into_iter().unzip();
    sqlx::query(
        "INSERT INTO segment_sizes (segment_id, day, members)
         SELECT s, $3, coalesce((SELECT z.members FROM segment_sizes z WHERE z.segment_id = s AND z.day < $3
                                  ORDER BY z.day DESC LIMIT 1), 0) + d
         FROM unnest($1::uuid[], $2::bigint[]) AS t(s, d)
         ON CONFLICT (segment_id, day) DO UPDATE SET members = segment_sizes.members + excluded.members
             - coalesce((SELECT z.members FROM segment_sizes z WHERE z.segment_id = excluded.segment_id AND z.day < excluded.day
                         ORDER BY z.day DESC LIMIT 1), 0)",
    )
    .bind(&segments)
    .bind(&amounts)
    .bind(at.date_naive())
    .execute(tx)
    .await?;
    Ok(())
}

/// A segment's size at the end of each day from `from` to `to`, carried
/// forward over days without changes; days before its first count are left out.
pub async fn sizes(
    conn: &mut PgConnection,
    segment: Uuid,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
) -> Result<Vec<(chrono::NaiveDate, i64)>, Error> {
    let rows: Vec<(chrono::NaiveDate, i64)> = sqlx::query_as(
        "SELECT d::date, (SELECT z.members FROM segment_sizes z WHERE z.segment_id = $1 AND z.day <= d::date
                          ORDER BY z.day DESC LIMIT 1)
         FROM generate_series($2::date, $3::date, interval '1 day') AS d
         WHERE EXISTS (SELECT 1 FROM segment_sizes z WHERE z.segment_id = $1 AND z.day <= d::date)",
    )
    .bind(segment)
    .bind(from)
    .bind(to)
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// A page of `segment`'s members after `after`, by contact id.
pub async fn list_members(
    conn: &mut PgConnection,
    segment: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<(Uuid, DateTime<Utc>)>, Error> {
    Ok(sqlx::query_as(
        "SELECT contact_id, since FROM memberships WHERE segment_id = $1 AND ($2::uuid IS NULL OR contact_id > $2)
         ORDER BY contact_id LIMIT $3",
    )
    .bind(segment)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// A contact's segments: id, name, version, rule, since.
pub async fn of_contact(
    conn: &mut PgConnection,
    contact: Uuid,
) -> Result<Vec<(Uuid, String, i64, String, DateTime<Utc>)>, Error> {
    Ok(sqlx::query_as(
        "SELECT s.id, s.name, s.version, s.rule, m.since FROM memberships m JOIN segments s ON s.id = m.segment_id
         WHERE m.contact_id = $1 AND s.delete_time IS NULL ORDER BY lower(s.name), s.id",
    )
    .bind(contact)
    .fetch_all(conn)
    .await?)
}

/// A page of every contact's features, by contact id, after `after`: only
/// those `wanted` (a rule's), read in parallel.
pub async fn features_page(
    conn: &mut PgConnection,
    after: Option<Uuid>,
    limit: i64,
    wanted: &[String],
) -> Result<Vec<(Uuid, FeatureDoc)>, Error> {
    let rows = stored_page(conn, after, limit).await?;
    Ok(crate::parallel::map(rows, |(contact, doc)| (contact, features::doc_from_bytes_only(&doc, wanted))))
}

/// Stored documents as their bytes, by contact id.
pub type StoredPage = Vec<(Uuid, Vec<u8>)>;

/// A page of stored documents as their bytes, by contact id, after `after`.
async fn stored_page(conn: &mut PgConnection, after: Option<Uuid>, limit: i64) -> Result<StoredPage, Error> {
    Ok(sqlx::query_as(
        "SELECT contact_id, doc FROM features WHERE ($1::uuid IS NULL OR contact_id > $1) ORDER BY contact_id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Every contact's stored document, page by page in contact order, read on
/// a connection of its own one page ahead of the caller, who parses and
/// decides the page before meanwhile: a whole-base evaluation keeps
/// PostgreSQL and the role's cores busy at once. An empty page ends it.
/// The caller holds the segments lock exclusively (`segments::lock`) or
/// needs no consistency across pages (a preview): no burst writes features
/// while the pages are read. The connection is opened for the purpose, not
/// taken from the pool, whose connections may all be held by transactions
/// waiting for that lock.
pub fn stored_pages(pool: &sqlx::PgPool, limit: i64) -> tokio::sync::mpsc::Receiver<Result<StoredPage, Error>> {
    use sqlx::Connection;
    let (pages, receiver) = tokio::sync::mpsc::channel(1);
    let options = pool.connect_options();
    tokio::spawn(async move {
        let mut conn = match PgConnection::connect_with(&options).await {
            Ok(conn) => conn,
            Err(error) => {
                let _ = pages.send(Err(error.into())).await;
                return;
            }
        };
        let mut after = None;
        loop {
            let page = stored_page(&mut conn, after, limit).await;
            let last = page.as_ref().ok().and_then(|rows| rows.last().map(|(contact, _)| *contact));
            if pages.send(page).await.is_err() || last.is_none() {
                break;
            }
            after = last;
        }
        let _ = conn.close().await;
    });
    receiver
}
