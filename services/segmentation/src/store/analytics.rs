//! What the customer analytics read of the read model: purchases in one
//! currency, totalled per contact in one statement each. Merged contacts'
//! activity is already their survivor's, erased contacts' is gone.

use chrono::Duration;
use crm_platform::Error;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::analytics::{Span, movement::Bought};

/// Every customer who matters to a period's movement: bought in it or in
/// the compared span, was won in it, or may have been lost in it.
pub async fn bought(
    conn: &mut PgConnection,
    currency: &str,
    period: Span,
    compared: Span,
    churn: Duration,
) -> Result<Vec<Bought>, Error> {
    let churn_seconds = churn.num_seconds() as f64;
    let rows = sqlx::query(
        "WITH totals AS (
             SELECT contact_id, min(occurred_at) AS first_at, max(occurred_at) AS last_at,
                    coalesce(sum(amount) FILTER (WHERE occurred_at >= $2), 0)::int8 AS revenue,
                    coalesce(sum(amount) FILTER (WHERE occurred_at >= $4 AND occurred_at < $5), 0)::int8 AS compared
             FROM activity
             WHERE kind = 'purchase' AND currency = $1 AND occurred_at < $3
             GROUP BY contact_id
         )
         SELECT t.contact_id, t.first_at, t.last_at, t.revenue, t.compared, coalesce(p.data->>'owner', '') AS owner,
                CASE WHEN t.last_at + make_interval(secs => $6) >= $2 AND t.last_at + make_interval(secs => $6) < $3
                THEN (SELECT coalesce(sum(a.amount), 0)::int8 FROM activity a
                      WHERE a.contact_id = t.contact_id AND a.kind = 'purchase' AND a.currency = $1
                        AND a.occurred_at >= t.last_at - make_interval(secs => $6) AND a.occurred_at <= t.last_at)
                ELSE 0 END AS last_window
         FROM totals t LEFT JOIN profiles p USING (contact_id)
         WHERE t.revenue > 0 OR t.compared > 0 OR t.first_at >= $2 OR t.last_at + make_interval(secs => $6) >= $2",
    )
    .bind(currency)
    .bind(period.start)
    .bind(period.end)
    .bind(compared.start)
    .bind(compared.end)
    .bind(churn_seconds)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Bought {
                owner: row.try_get("owner")?,
                first_at: row.try_get("first_at")?,
                last_at: row.try_get("last_at")?,
                revenue: row.try_get("revenue")?,
                compared: row.try_get("compared")?,
                last_window: row.try_get("last_window")?,
            })
        })
        .collect()
}

/// What each customer spent in `window`, best first (ties by contact id).
pub async fn revenue_ranking(conn: &mut PgConnection, currency: &str, window: Span) -> Result<Vec<(Uuid, i64)>, Error> {
    let rows = sqlx::query(
        "SELECT contact_id, sum(amount)::int8 AS revenue FROM activity
         WHERE kind = 'purchase' AND currency = $1 AND occurred_at >= $2 AND occurred_at < $3
         GROUP BY contact_id HAVING sum(amount) > 0
         ORDER BY revenue DESC, contact_id",
    )
    .bind(currency)
    .bind(window.start)
    .bind(window.end)
    .fetch_all(conn)
    .await?;
    rows.iter().map(|row| Ok((row.try_get("contact_id")?, row.try_get("revenue")?))).collect()
}
