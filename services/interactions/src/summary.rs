//! The single customer view, computed from the contact's own rows (every
//! query starts with `contact_id`, the first column of each key).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use crm_platform::{Error, timestamp::to_proto};
use crm_proto::{common::v1::Money, interactions::v1 as pb};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::store;

const WINDOWS: [i32; 3] = [30, 90, 365];

fn money(totals: BTreeMap<String, i64>) -> Vec<Money> {
    totals.into_iter().map(|(currency_code, minor_units)| Money { currency_code, minor_units }).collect()
}

pub async fn summary(pool: &PgPool, contact_id: Uuid) -> Result<pb::ContactSummary, Error> {
    let mut conn = pool.acquire().await?;
    let row = sqlx::query(
        "SELECT min(occurred_at) AS first, max(occurred_at) AS last,
                max(occurred_at) FILTER (WHERE kind = 'KIND_PURCHASE') AS last_purchase,
                avg((data->>'sentiment')::float8) FILTER (WHERE data->>'sentiment' IS NOT NULL) AS sentiment
         FROM interactions WHERE contact_id = $1",
    )
    .bind(contact_id)
    .fetch_one(&mut *conn)
    .await?;
    let first: Option<DateTime<Utc>> = row.try_get("first")?;
    let last: Option<DateTime<Utc>> = row.try_get("last")?;
    let last_purchase: Option<DateTime<Utc>> = row.try_get("last_purchase")?;
    let average_sentiment: Option<f64> = row.try_get("sentiment")?;

    let mut windows: Vec<pb::WindowSummary> =
        WINDOWS.iter().map(|days| pb::WindowSummary { days: *days, ..Default::default() }).collect();
    let mut revenue: Vec<BTreeMap<String, i64>> = vec![BTreeMap::new(); WINDOWS.len()];
    let mut refunds: Vec<BTreeMap<String, i64>> = vec![BTreeMap::new(); WINDOWS.len()];
    let rows = sqlx::query(
        "SELECT channel, kind, coalesce(data->'amount'->>'currency_code', '') AS currency,
                count(*) FILTER (WHERE occurred_at > now() - interval '30 days') AS n30,
                count(*) FILTER (WHERE occurred_at > now() - interval '90 days') AS n90,
                count(*) AS n365,
                coalesce(sum((data->'amount'->>'minor_units')::bigint) FILTER (WHERE occurred_at > now() - interval '30 days'), 0)::bigint AS m30,
                coalesce(sum((data->'amount'->>'minor_units')::bigint) FILTER (WHERE occurred_at > now() - interval '90 days'), 0)::bigint AS m90,
                coalesce(sum((data->'amount'->>'minor_units')::bigint), 0)::bigint AS m365
         FROM interactions WHERE contact_id = $1 AND occurred_at > now() - interval '365 days'
         GROUP BY channel, kind, currency",
    )
    .bind(contact_id)
    .fetch_all(&mut *conn)
    .await?;
    for row in &rows {
        let (channel, kind, currency): (String, String, String) =
            (row.try_get("channel")?, row.try_get("kind")?, row.try_get("currency")?);
        let counts: [i64; 3] = [row.try_get("n30")?, row.try_get("n90")?, row.try_get("n365")?];
        let amounts: [i64; 3] = [row.try_get("m30")?, row.try_get("m90")?, row.try_get("m365")?];
        for (at, window) in windows.iter_mut().enumerate() {
            if counts[at] == 0 {
                continue;
            }
            *window.by_channel.entry(channel.clone()).or_default() += counts[at];
            *window.by_kind.entry(kind.clone()).or_default() += counts[at];
            if kind == "KIND_PURCHASE" && !currency.is_empty() {
                *revenue[at].entry(currency.clone()).or_default() += amounts[at];
            }
            if kind == "KIND_REFUND" && !currency.is_empty() {
                *refunds[at].entry(currency.clone()).or_default() += amounts[at];
            }
        }
    }
    for (at, window) in windows.iter_mut().enumerate() {
        window.revenue = money(std::mem::take(&mut revenue[at]));
        window.refunds = money(std::mem::take(&mut refunds[at]));
    }

    let mut summary = pb::ContactSummary {
        contact_id: contact_id.to_string(),
        first_interaction_time: first.map(to_proto),
        last_interaction_time: last.map(to_proto),
        windows,
        days_since_last_purchase: last_purchase.map(|time| (Utc::now() - time).num_days()),
        average_sentiment,
        ..Default::default()
    };
    let (mut open, mut overdue) = (BTreeMap::new(), BTreeMap::new());
    for row in sqlx::query(
        "SELECT status, currency, count(*) AS n, sum(amount_minor)::bigint AS total FROM invoices
         WHERE contact_id = $1 AND status IN ('INVOICE_STATUS_OPEN', 'INVOICE_STATUS_OVERDUE') GROUP BY status, currency",
    )
    .bind(contact_id)
    .fetch_all(&mut *conn)
    .await?
    {
        let (status, currency, n, total): (String, String, i64, i64) =
            (row.try_get("status")?, row.try_get("currency")?, row.try_get("n")?, row.try_get("total")?);
        if status == "INVOICE_STATUS_OPEN" {
            summary.open_invoices += n;
            *open.entry(currency).or_default() += total;
        } else {
            summary.overdue_invoices += n;
            *overdue.entry(currency).or_default() += total;
        }
    }
    summary.open_amount = money(open);
    summary.overdue_amount = money(overdue);
    let complaint: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM interactions WHERE contact_id = $1 AND kind = 'KIND_COMPLAINT' ORDER BY occurred_at DESC LIMIT 1",
    )
    .bind(contact_id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(id) = complaint {
        summary.last_complaint = Some(store::load(&mut conn, id).await?.to_proto());
    }
    summary.open_pain_points = sqlx::query_scalar(
        "SELECT point FROM interactions, jsonb_array_elements_text(data->'pain_points') AS point
         WHERE contact_id = $1 AND occurred_at > now() - interval '90 days'
         GROUP BY point ORDER BY count(*) DESC, point",
    )
    .bind(contact_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(summary)
}
