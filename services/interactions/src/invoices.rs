//! Invoices and payments: an invoice interaction opens an invoice, a payment
//! naming its number (same contact and source) settles it, and the overdue
//! job turns open invoices past their due date into overdue ones. Each change
//! updates the invoice interaction's status and writes its event in the same
//! transaction.

use chrono::{NaiveDate, Utc};
use crm_platform::{
    Error,
    outbox::{self, NewEvent},
};
use crm_proto::interactions::v1 as pb;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::{model::InteractionRecord, store};

const OPEN: &str = "INVOICE_STATUS_OPEN";
const PAID: &str = "INVOICE_STATUS_PAID";
const OVERDUE: &str = "INVOICE_STATUS_OVERDUE";

/// Sets the status inside an invoice interaction's data.
async fn set_status(tx: &mut PgConnection, contact_id: Uuid, interaction_id: Uuid, status: &str) -> Result<(), Error> {
    sqlx::query(
        "UPDATE interactions SET data = jsonb_set(data, '{invoice,status}', to_jsonb($3::text))
         WHERE contact_id = $1 AND id = $2
           AND occurred_at = (SELECT occurred_at FROM interaction_locations WHERE id = $2)",
    )
    .bind(contact_id)
    .bind(interaction_id)
    .bind(status)
    .execute(tx)
    .await?;
    Ok(())
}

/// Whether storing `record` opens or settles an invoice (so it must be
/// ordered against other batches touching the contact's invoices).
pub fn concerns(record: &InteractionRecord) -> bool {
    record.data.invoice.is_some()
        || (record.kind == pb::Kind::Payment.as_str_name() && !record.data.payment_invoice_number.is_empty())
}

/// Opens the invoices and settles the invoices paid among freshly stored interactions.
pub async fn on_stored(tx: &mut PgConnection, stored: &[&InteractionRecord], request_id: &str) -> Result<(), Error> {
    let mut events = Vec::new();
    for record in stored {
        if let Some(invoice) = &record.data.invoice {
            let amount = record.data.amount.clone().unwrap_or_default();
            let opened = sqlx::query(
                "INSERT INTO invoices (contact_id, source, number, interaction_id, occurred_at, due_date, currency, amount_minor, status)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
            )
            .bind(record.contact_id)
            .bind(&record.source)
            .bind(&invoice.number)
            .bind(record.id)
            .bind(record.occurred_at)
            .bind(invoice.due_date)
            .bind(&amount.currency_code)
            .bind(amount.minor_units)
            .bind(OPEN)
            .execute(&mut *tx)
            .await?;
            if opened.rows_affected() == 1 {
                let event = pb::InvoiceIssued { invoice: Some(record.to_proto()) };
                events.push(NewEvent::new("interaction", record.contact_id.to_string(), &event, request_id));
            }
        }
        if record.kind == pb::Kind::Payment.as_str_name() {
            let mut settled_invoice_id = String::new();
            if !record.data.payment_invoice_number.is_empty() {
                let settled = sqlx::query(
                    "UPDATE invoices SET status = $4, paid_by = $5, status_time = now()
                     WHERE contact_id = $1 AND source = $2 AND number = $3 AND status IN ($6, $7)
                     RETURNING interaction_id",
                )
                .bind(record.contact_id)
                .bind(&record.source)
                .bind(&record.data.payment_invoice_number)
                .bind(PAID)
                .bind(record.id)
                .bind(OPEN)
                .bind(OVERDUE)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(row) = settled {
                    let invoice_id: Uuid = row.try_get("interaction_id")?;
                    set_status(tx, record.contact_id, invoice_id, PAID).await?;
                    settled_invoice_id = invoice_id.to_string();
                }
            }
            let event = pb::PaymentReceived { payment: Some(record.to_proto()), settled_invoice_id };
            events.push(NewEvent::new("interaction", record.contact_id.to_string(), &event, request_id));
        }
    }
    outbox::append(tx, &events).await?;
    Ok(())
}

/// Marks open invoices due before `today` overdue, if this replica wins the
/// run's lock (another replica running the same check skips it); returns
/// how many it marked.
pub async fn mark_overdue(pool: &PgPool, today: NaiveDate) -> Result<usize, Error> {
    let mut tx = pool.begin().await?;
    let leader: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended('interactions overdue', 0))")
            .fetch_one(&mut *tx)
            .await?;
    if !leader {
        return Ok(0);
    }
    let rows = sqlx::query(
        "UPDATE invoices SET status = $2, status_time = now()
         WHERE status = $3 AND due_date < $1 RETURNING contact_id, interaction_id",
    )
    .bind(today)
    .bind(OVERDUE)
    .bind(OPEN)
    .fetch_all(&mut *tx)
    .await?;
    let mut events = Vec::new();
    for row in &rows {
        let (contact_id, interaction_id): (Uuid, Uuid) = (row.try_get("contact_id")?, row.try_get("interaction_id")?);
        set_status(&mut tx, contact_id, interaction_id, OVERDUE).await?;
        let invoice = store::load(&mut tx, interaction_id).await?;
        let event = pb::InvoiceOverdue { invoice: Some(invoice.to_proto()) };
        events.push(NewEvent::new("interaction", contact_id.to_string(), &event, "overdue-check"));
    }
    outbox::append(&mut tx, &events).await?;
    tx.commit().await?;
    if !rows.is_empty() {
        tracing::info!(invoices = rows.len(), "invoices became overdue");
    }
    Ok(rows.len())
}

/// Runs [`mark_overdue`] every `interval` until `shutdown`.
pub fn spawn_overdue_check(
    pool: PgPool,
    interval: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => {
                    if let Err(error) = mark_overdue(&pool, Utc::now().date_naive()).await {
                        tracing::warn!(error = %error, "the overdue check failed; it runs again at the next tick");
                    }
                }
            }
        }
    })
}

/// Up to `limit` overdue invoices after the `(due_date, contact, source, number)` cursor, oldest due first.
pub async fn list_overdue(
    conn: &mut PgConnection,
    after: Option<(NaiveDate, Uuid, String, String)>,
    limit: i64,
) -> Result<Vec<(InteractionRecord, NaiveDate, (NaiveDate, Uuid, String, String))>, Error> {
    let rows = sqlx::query(
        "SELECT due_date, contact_id, source, number, interaction_id FROM invoices
         WHERE status = $1 AND ($2::date IS NULL OR (due_date, contact_id, source, number) > ($2, $3, $4, $5))
         ORDER BY due_date, contact_id, source, number LIMIT $6",
    )
    .bind(OVERDUE)
    .bind(after.as_ref().map(|cursor| cursor.0))
    .bind(after.as_ref().map(|cursor| cursor.1))
    .bind(after.as_ref().map(|cursor| cursor.2.clone()))
    .bind(after.as_ref().map(|cursor| cursor.3.clone()))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let mut found = Vec::new();
    for row in rows {
        let due: NaiveDate = row.try_get("due_date")?;
        let cursor = (due, row.try_get("contact_id")?, row.try_get("source")?, row.try_get("number")?);
        let invoice = store::load(conn, row.try_get("interaction_id")?).await?;
        found.push((invoice, due, cursor));
    }
    Ok(found)
}
