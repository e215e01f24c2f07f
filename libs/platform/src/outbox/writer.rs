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
