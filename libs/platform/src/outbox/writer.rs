//! Writing events into the outbox, inside the transaction of the change.

use sqlx::PgConnection;
use uuid::Uuid;

/// An event to append: built from a payload message and the aggregate it is about.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub id: Uuid,
    /// Full protobuf name of the payload, e.g. `crm.contacts.v1.ContactCreated`.
    pub event_type: String,
    pub aggregate_type: &'static str,
    pub aggregate_id: String,
    /// The encoded payload message.
    pub payload: Vec<u8>,
    /// Request id of the call that caused the change.
    pub request_id: String,
}

impl NewEvent {
    pub fn new<M: prost::Name>(
        aggregate_type: &'static str,
        aggregate_id: impl Into<String>,
        payload: &M,
        request_id: impl Into<String>,
    ) -> Self {
        NewEvent {
            id: Uuid::now_v7(),
            event_type: M::full_name(),
            aggregate_type,
            aggregate_id: aggregate_id.into(),
            payload: payload.encode_to_vec(),
            request_id: request_id.into(),
        }
    }
}

/// Marks the events `tx` appends from now on as a bulk stream's (an
/// import's, an ingest's): they stay out of the feed's live lane, which
/// carries what single calls write ahead of bulk work. Call it on the
/// transaction of each batch a bulk stream stores; it ends with it.
pub async fn mark_bulk(tx: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT set_config('crm.outbox_bulk', 'on', true)").execute(tx).await?;
    Ok(())
}

/// Leaves the wake-up of the feed's followers out of `tx`'s commit: the
/// caller sends it with [`wake`] once the commit has returned. A
/// transaction that NOTIFYs holds PostgreSQL's one notification lock until
/// its commit is flushed to disk, so busy writers (a thousand recorded
/// interactions a second) would otherwise commit one at a time.
pub async fn wake_after_commit(tx: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT set_config('crm.outbox_wake', 'after_commit', true)").execute(tx).await?;
    Ok(())
}

/// Wakes the followers of `role`'s feed (after a commit that asked for
/// [`wake_after_commit`]) from a connection of `pool`, in the background.
/// Wake-ups asked for while one is being sent are sent as one more after it.
pub fn wake(pool: &sqlx::PgPool, role: crate::Role) {
    use std::sync::atomic::Ordering;
    let state = &WAKE_STATE[role as usize];
    // 0: idle; 1: sending; 2: sending, and another asked for.
    loop {
        match state.load(Ordering::Acquire) {
            0 if state.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire).is_ok() => break,
            1 if state.compare_exchange(1, 2, Ordering::AcqRel, Ordering::Acquire).is_ok() => return,
            2 => return,
            _ => {}
        }
    }
    {
        let pool = pool.clone();
        tokio::spawn(async move {
            loop {
                let sent = sqlx::query("SELECT pg_notify($1, '')")
                    .bind(format!("crm_outbox_{}", role.schema()))
                    .execute(&pool)
                    .await;
                if let Err(error) = sent {
                    // The followers' periodic read still finds the events.
                    tracing::warn!(%error, "could not wake the feed's followers");
                }
                if state.compare_exchange(1, 0, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                    return;
                }
                state.store(1, Ordering::Release);
            }
        });
    }
}

/// Per role: whether a wake-up is being sent, and whether another waits.
static WAKE_STATE: [std::sync::atomic::AtomicU8; crate::Role::ALL.len()] =
    [const { std::sync::atomic::AtomicU8::new(0) }; crate::Role::ALL.len()];

/// Appends `events`, in order, to the outbox of the connection's schema.
/// Call it on the transaction that makes the change.
pub async fn append(tx: &mut PgConnection, events: &[NewEvent]) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    if events.len() >= crate::copy::WORTH_COPYING {
        return append_by_copy(tx, events).await;
    }
    let ids: Vec<Uuid> = events.iter().map(|event| event.id).collect();
    let types: Vec<&str> = events.iter().map(|event| event.event_type.as_str()).collect();
    let aggregate_types: Vec<&str> = events.iter().map(|event| event.aggregate_type).collect();
    let aggregate_ids: Vec<&str> = events.iter().map(|event| event.aggregate_id.as_str()).collect();
    let payloads: Vec<&[u8]> = events.iter().map(|event| event.payload.as_slice()).collect();
    let request_ids: Vec<&str> = events.iter().map(|event| event.request_id.as_str()).collect();
    sqlx::query(
        "INSERT INTO outbox (id, event_type, aggregate_type, aggregate_id, payload, request_id)
         SELECT id, event_type, aggregate_type, aggregate_id, payload, request_id
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::text[])
              WITH ORDINALITY AS e(id, event_type, aggregate_type, aggregate_id, payload, request_id, n)
         ORDER BY n",
    )
    .bind(ids)
    .bind(types)
    .bind(aggregate_types)
    .bind(aggregate_ids)
    .bind(payloads)
    .bind(request_ids)
    .execute(tx)
    .await?;
    Ok(())
}

/// [`append`] for many events (a broad segment's first members): COPY
/// numbers the rows in the order sent, as the `unnest` insert does.
async fn append_by_copy(tx: &mut PgConnection, events: &[NewEvent]) -> Result<(), sqlx::Error> {
    let statement = "COPY outbox (id, event_type, aggregate_type, aggregate_id, payload, request_id) FROM STDIN";
    crate::copy::copy_in(tx, statement, events, |row, event| {
        row.plain(event.id)
            .text(&event.event_type)
            .text(event.aggregate_type)
            .text(&event.aggregate_id)
            .bytes(&event.payload)
            .text(&event.request_id);
    })
    .await?;
    Ok(())
}

/// Rewrites the payloads of the events of these aggregates (erasure): `scrub`
/// gets each event's type and payload and returns the new payload, or `None`
/// to leave it. Call it on the transaction that erases the data.
pub async fn rewrite(
    tx: &mut PgConnection,
    aggregate_ids: &[String],
    scrub: impl Fn(&str, &[u8]) -> anyhow::Result<Option<Vec<u8>>>,
) -> anyhow::Result<()> {
    let rows: Vec<(Uuid, String, Vec<u8>)> =
        sqlx::query_as("SELECT id, event_type, payload FROM outbox WHERE aggregate_id = ANY($1)")
            .bind(aggregate_ids)
            .fetch_all(&mut *tx)
            .await?;
    for (id, event_type, payload) in rows {
        if let Some(scrubbed) = scrub(&event_type, &payload)? {
            sqlx::query("UPDATE outbox SET payload = $2 WHERE id = $1")
                .bind(id)
                .bind(scrubbed)
                .execute(&mut *tx)
                .await?;
        }
    }
    Ok(())
}
