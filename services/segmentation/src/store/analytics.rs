//! What the customer analytics read of the read model (purchases in one
//! currency, totalled per contact; baskets of SKUs) and the association
//! rules they store. Merged contacts' activity is already their
//! survivor's, erased contacts' is gone.
//!
//! The whole-base reads go through `activity` a slice of its blocks a
//! statement ([`Slices`]), in one snapshot, totalled per contact here: a
//! computation gives way to bulk streams between slices instead of
//! holding the machine for one statement of 4–20 s.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};
use crm_platform::{Error, foreground::GiveWay};
use sqlx::{PgConnection, PgPool, Postgres, Row, Transaction, postgres::PgRow};
use uuid::Uuid;

use crate::analytics::{
    Span,
    associations::Rule,
    clv::{BgNbd, GammaGamma},
    movement::Bought,
    rfm::{Scores, Totals},
};

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

/// The SKUs each contact bought in `window`: one basket per contact.
pub async fn baskets(pool: &PgPool, way: &mut GiveWay, window: Span) -> Result<Vec<BTreeSet<String>>, Error> {
    let mut slices = Slices::open(pool).await?;
    let mut baskets: HashMap<Uuid, BTreeSet<String>> = HashMap::new();
    while let Some((conn, slice)) = slices.next(way).await {
        let rows: Vec<(Uuid, Vec<String>)> = sqlx::query_as(
            "SELECT contact_id, array_agg(DISTINCT sku) FROM activity, unnest(skus) AS sku
             WHERE kind = 'purchase' AND occurred_at >= $1 AND occurred_at < $2
               AND ctid >= $3::text::tid AND ctid < $4::text::tid
             GROUP BY contact_id",
        )
        .bind(window.start)
        .bind(window.end)
        .bind(&slice.from)
        .bind(&slice.to)
        .fetch_all(conn)
        .await?;
        for (contact, skus) in rows {
            baskets.entry(contact).or_default().extend(skus);
        }
    }
    slices.close().await?;
    let mut baskets: Vec<(Uuid, BTreeSet<String>)> = baskets.into_iter().collect();
    baskets.sort_unstable_by_key(|(contact, _)| *contact);
    Ok(baskets.into_iter().map(|(_, skus)| skus).collect())
}

/// Blocks of `activity` one statement of a whole-base read covers: 64 MB
/// of the table, a fraction of a second's read (ten million interactions
/// fill about 190,000 blocks).
const SLICE_BLOCKS: i64 = 8192;

/// One slice of `activity`'s blocks: its rows have `from <= ctid < to`.
struct Slice {
    from: String,
    to: String,
}

/// A whole-base read of `activity`, slice by slice, in one repeatable-read
/// snapshot (a contact's rows are wherever they were written, so each
/// read totals its slice per contact and the caller adds the slices up).
/// The snapshot is taken before the table's size is read: every row it
/// sees lies in a block below that size.
struct Slices {
    tx: Transaction<'static, Postgres>,
    next: i64,
    blocks: i64,
}

impl Slices {
    async fn open(pool: &PgPool) -> Result<Slices, Error> {
        let mut tx = pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await?;
        let blocks: i64 =
            sqlx::query_scalar("SELECT pg_relation_size('activity') / current_setting('block_size')::int8")
                .fetch_one(&mut *tx)
                .await?;
        Ok(Slices { tx, next: 0, blocks })
    }

    /// The next slice and the connection to read it on, after giving way
    /// to any bulk stream that runs; `None` after the last.
    async fn next(&mut self, way: &mut GiveWay) -> Option<(&mut PgConnection, Slice)> {
        if self.next >= self.blocks {
            return None;
        }
        way.before_step().await;
        let from = self.next;
        self.next = (from + SLICE_BLOCKS).min(self.blocks);
        Some((&mut *self.tx, Slice { from: format!("({from},0)"), to: format!("({},0)", self.next) }))
    }

    async fn close(self) -> Result<(), Error> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// How the stored rules were computed.
#[derive(Clone, Debug, PartialEq)]
pub struct RulesRun {
    pub computed_at: DateTime<Utc>,
    pub window_days: i32,
    pub min_support: f64,
    pub min_confidence: f64,
    pub baskets: i64,
    pub total_rules: i64,
}

/// Replaces the stored rules with `rules`, found by `run`.
pub async fn save_rules(tx: &mut PgConnection, run: &RulesRun, rules: &[Rule], by: &str) -> Result<(), Error> {
    sqlx::query("DELETE FROM association_rules").execute(&mut *tx).await?;
    sqlx::query(
        "INSERT INTO association_rules
             (antecedent, consequent, antecedent_baskets, both_baskets, support, confidence, lift)
         SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::float8[], $6::float8[], $7::float8[])",
    )
    .bind(rules.iter().map(|rule| rule.antecedent.as_str()).collect::<Vec<_>>())
    .bind(rules.iter().map(|rule| rule.consequent.as_str()).collect::<Vec<_>>())
    .bind(rules.iter().map(|rule| rule.antecedent_baskets).collect::<Vec<_>>())
    .bind(rules.iter().map(|rule| rule.both_baskets).collect::<Vec<_>>())
    .bind(rules.iter().map(|rule| rule.support).collect::<Vec<_>>())
    .bind(rules.iter().map(|rule| rule.confidence).collect::<Vec<_>>())
    .bind(rules.iter().map(|rule| rule.lift).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO association_runs (computed_at, window_days, min_support, min_confidence, baskets, computed_by)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (singleton) DO UPDATE SET computed_at = excluded.computed_at, window_days = excluded.window_days,
             min_support = excluded.min_support, min_confidence = excluded.min_confidence,
             baskets = excluded.baskets, computed_by = excluded.computed_by",
    )
    .bind(run.computed_at)
    .bind(run.window_days)
    .bind(run.min_support)
    .bind(run.min_confidence)
    .bind(run.baskets)
    .bind(by)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The last computation, if any.
pub async fn last_run(conn: &mut PgConnection) -> Result<Option<RulesRun>, Error> {
    let row = sqlx::query(
        "SELECT computed_at, window_days, min_support, min_confidence, baskets,
                (SELECT count(*) FROM association_rules) AS total_rules
         FROM association_runs",
    )
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        Ok(RulesRun {
            computed_at: row.try_get("computed_at")?,
            window_days: row.try_get("window_days")?,
            min_support: row.try_get("min_support")?,
            min_confidence: row.try_get("min_confidence")?,
            baskets: row.try_get("baskets")?,
            total_rules: row.try_get("total_rules")?,
        })
    })
    .transpose()
}

fn rule(row: &PgRow) -> Result<Rule, Error> {
    Ok(Rule {
        antecedent: row.try_get("antecedent")?,
        consequent: row.try_get("consequent")?,
        antecedent_baskets: row.try_get("antecedent_baskets")?,
        both_baskets: row.try_get("both_baskets")?,
        support: row.try_get("support")?,
        confidence: row.try_get("confidence")?,
        lift: row.try_get("lift")?,
    })
}

const RULE_COLUMNS: &str = "antecedent, consequent, antecedent_baskets, both_baskets, support, confidence, lift";

/// The strongest `limit` stored rules (by lift, then confidence, then the SKUs).
pub async fn strongest_rules(conn: &mut PgConnection, limit: i64) -> Result<Vec<Rule>, Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {RULE_COLUMNS} FROM association_rules
         ORDER BY lift DESC, confidence DESC, antecedent, consequent LIMIT $1"
    )))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter().map(rule).collect()
}

/// A contact (its survivor when merged) and every SKU it ever bought.
pub async fn bought_skus(conn: &mut PgConnection, contact: Uuid) -> Result<(Uuid, BTreeSet<String>), Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{WHO} SELECT who.id AS survivor, array(SELECT DISTINCT sku FROM activity, unnest(skus) AS sku
                                                WHERE contact_id = who.id AND kind = 'purchase') AS skus
         FROM who"
    )))
    .bind(contact)
    .fetch_one(conn)
    .await?;
    let skus: Vec<String> = row.try_get("skus")?;
    Ok((row.try_get("survivor")?, skus.into_iter().collect()))
}

/// The stored rules leading from any of `skus`.
pub async fn rules_from(conn: &mut PgConnection, skus: &BTreeSet<String>) -> Result<Vec<Rule>, Error> {
    let skus: Vec<&str> = skus.iter().map(String::as_str).collect();
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {RULE_COLUMNS} FROM association_rules WHERE antecedent = ANY($1)"
    )))
    .bind(skus)
    .fetch_all(conn)
    .await?;
    rows.iter().map(rule).collect()
}

/// Each customer's RFM totals over `window` in `currency`: whole days from
/// the latest purchase to the window's end, purchases, spend.
pub async fn rfm_totals(
    pool: &PgPool,
    way: &mut GiveWay,
    currency: &str,
    window: Span,
) -> Result<Vec<(Uuid, Totals)>, Error> {
    let mut slices = Slices::open(pool).await?;
    // Per contact: the latest purchase, the purchases, the spend.
    let mut totals: HashMap<Uuid, (DateTime<Utc>, i64, i64)> = HashMap::new();
    while let Some((conn, slice)) = slices.next(way).await {
        let rows: Vec<(Uuid, DateTime<Utc>, i64, i64)> = sqlx::query_as(
            "SELECT contact_id, max(occurred_at), count(*)::int8, sum(amount)::int8
             FROM activity WHERE kind = 'purchase' AND currency = $1 AND occurred_at >= $2 AND occurred_at < $3
               AND ctid >= $4::text::tid AND ctid < $5::text::tid
             GROUP BY contact_id",
        )
        .bind(currency)
        .bind(window.start)
        .bind(window.end)
        .bind(&slice.from)
        .bind(&slice.to)
        .fetch_all(conn)
        .await?;
        for (contact, latest, purchases, spend) in rows {
            let total = totals.entry(contact).or_insert((latest, 0, 0));
            *total = (total.0.max(latest), total.1 + purchases, total.2 + spend);
        }
    }
    slices.close().await?;
    let mut totals: Vec<(Uuid, Totals)> = totals
        .into_iter()
        .map(|(contact, (latest, frequency, monetary))| {
            (contact, Totals { recency_days: whole_days(window.end - latest), frequency, monetary })
        })
        .collect();
    totals.sort_unstable_by_key(|(contact, _)| *contact);
    Ok(totals)
}

/// Whole days in `span`, rounded down (a purchase 36 hours ago: 1).
fn whole_days(span: Duration) -> i64 {
    span.num_microseconds().map_or(span.num_days(), |micros| micros.div_euclid(86_400_000_000))
}

/// How the stored RFM scores were computed.
#[derive(Clone, Debug, PartialEq)]
pub struct RfmRun {
    pub computed_at: DateTime<Utc>,
    pub currency: String,
    pub window_days: i32,
    pub customers: i64,
}

/// Replaces the stored RFM scores and their groups' totals, and marks for
/// the features' refresh the contacts whose scores or group changed
/// ([`mark_changed`]).
pub async fn save_rfm(
    tx: &mut PgConnection,
    run: &RfmRun,
    scored: &[(Uuid, Totals, Scores)],
    by: &str,
) -> Result<(), Error> {
    lock_against_refresh(tx).await?;
    let before: HashMap<Uuid, ([i32; 3], String)> = sqlx::query_as::<_, (Uuid, i32, i32, i32, String)>(
        "SELECT contact_id, recency_score, frequency_score, monetary_score, rfm_group FROM rfm_scores",
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|(contact, recency, frequency, monetary, group)| (contact, ([recency, frequency, monetary], group)))
    .collect();
    let after = scored.iter().map(|(contact, _, scores)| {
        (*contact, ([scores.recency, scores.frequency, scores.monetary], scores.group.name().to_string()))
    });
    mark_changed(tx, &changed(before, after)).await?;
    sqlx::query("DELETE FROM rfm_scores").execute(&mut *tx).await?;
    sqlx::query(
        "INSERT INTO rfm_scores (contact_id, recency_days, frequency, monetary,
                                 recency_score, frequency_score, monetary_score, rfm_group)
         SELECT * FROM unnest($1::uuid[], $2::int8[], $3::int8[], $4::int8[], $5::int4[], $6::int4[], $7::int4[], $8::text[])",
    )
    .bind(scored.iter().map(|(contact, _, _)| *contact).collect::<Vec<_>>())
    .bind(scored.iter().map(|(_, totals, _)| totals.recency_days).collect::<Vec<_>>())
    .bind(scored.iter().map(|(_, totals, _)| totals.frequency).collect::<Vec<_>>())
    .bind(scored.iter().map(|(_, totals, _)| totals.monetary).collect::<Vec<_>>())
    .bind(scored.iter().map(|(_, _, scores)| scores.recency).collect::<Vec<_>>())
    .bind(scored.iter().map(|(_, _, scores)| scores.frequency).collect::<Vec<_>>())
    .bind(scored.iter().map(|(_, _, scores)| scores.monetary).collect::<Vec<_>>())
    .bind(scored.iter().map(|(_, _, scores)| scores.group.name()).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO rfm_runs (computed_at, currency, window_days, customers, computed_by) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (singleton) DO UPDATE SET computed_at = excluded.computed_at, currency = excluded.currency,
             window_days = excluded.window_days, customers = excluded.customers, computed_by = excluded.computed_by",
    )
    .bind(run.computed_at)
    .bind(&run.currency)
    .bind(run.window_days)
    .bind(run.customers)
    .bind(by)
    .execute(&mut *tx)
    .await?;
    let mut groups: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for (_, totals, scores) in scored {
        let (customers, revenue) = groups.entry(scores.group.name()).or_default();
        *customers += 1;
        *revenue += totals.monetary;
    }
    analyse(tx, "rfm_scores").await?;
    sqlx::query("DELETE FROM rfm_group_totals").execute(&mut *tx).await?;
    sqlx::query(
        "INSERT INTO rfm_group_totals (rfm_group, customers, revenue)
         SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[])",
    )
    .bind(groups.keys().collect::<Vec<_>>())
    .bind(groups.values().map(|(customers, _)| *customers).collect::<Vec<_>>())
    .bind(groups.values().map(|(_, revenue)| *revenue).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The last RFM computation, if any.
pub async fn last_rfm_run(conn: &mut PgConnection) -> Result<Option<RfmRun>, Error> {
    let row =
        sqlx::query("SELECT computed_at, currency, window_days, customers FROM rfm_runs").fetch_optional(conn).await?;
    row.map(|row| {
        Ok(RfmRun {
            computed_at: row.try_get("computed_at")?,
            currency: row.try_get("currency")?,
            window_days: row.try_get("window_days")?,
            customers: row.try_get("customers")?,
        })
    })
    .transpose()
}

/// Customers and their spend per RFM group, as the last computation
/// counted them (stored with it: grouping a million scores on every ask
/// took 2.5 s). Merges and erasures since change the scores, not these
/// counts, until the next computation.
pub async fn rfm_groups(conn: &mut PgConnection) -> Result<Vec<(String, i64, i64)>, Error> {
    let rows = sqlx::query("SELECT rfm_group, customers, revenue FROM rfm_group_totals").fetch_all(conn).await?;
    rows.iter().map(|row| Ok((row.try_get("rfm_group")?, row.try_get("customers")?, row.try_get("revenue")?))).collect()
}

/// A contact's stored RFM totals and scores (its survivor's when merged).
pub async fn contact_rfm(
    conn: &mut PgConnection,
    contact: Uuid,
) -> Result<(Uuid, Option<(Totals, [i32; 3], String)>), Error> {
    let row = of_survivor(conn, "rfm_scores", contact).await?;
    let survivor = row.try_get("survivor")?;
    let scores = held(row)?
        .map(|row| -> Result<_, Error> {
            let totals = Totals {
                recency_days: row.try_get("recency_days")?,
                frequency: row.try_get("frequency")?,
                monetary: row.try_get("monetary")?,
            };
            let scores =
                [row.try_get("recency_score")?, row.try_get("frequency_score")?, row.try_get("monetary_score")?];
            Ok((totals, scores, row.try_get("rfm_group")?))
        })
        .transpose()?;
    Ok((survivor, scores))
}

/// Who contact `$1` is now (`who.id`): its survivor when it was merged.
const WHO: &str = "WITH who AS (SELECT coalesce((SELECT survivor_id FROM redirects WHERE loser_id = $1), $1) AS id)";

/// Who `contact` is now (`survivor`) and its row of `table`, in one statement.
async fn of_survivor(conn: &mut PgConnection, table: &str, contact: Uuid) -> Result<PgRow, Error> {
    Ok(sqlx::query(sqlx::AssertSqlSafe(format!(
        "{WHO} SELECT who.id AS survivor, held.* FROM who LEFT JOIN {table} held ON held.contact_id = who.id"
    )))
    .bind(contact)
    .fetch_one(conn)
    .await?)
}

/// The row [`of_survivor`] read, when the table held one.
fn held(row: PgRow) -> Result<Option<PgRow>, Error> {
    let held: Option<Uuid> = row.try_get("contact_id")?;
    Ok(held.map(|_| row))
}

/// A customer's purchase days, in order, each with the day's spend.
pub type PurchaseDays = Vec<(DateTime<Utc>, i64)>;

/// Each customer's purchase days before `until` in `currency`.
pub async fn purchase_days(
    pool: &PgPool,
    way: &mut GiveWay,
    currency: &str,
    until: DateTime<Utc>,
) -> Result<Vec<(Uuid, PurchaseDays)>, Error> {
    let mut slices = Slices::open(pool).await?;
    let mut days: BTreeMap<(Uuid, DateTime<Utc>), i64> = BTreeMap::new();
    while let Some((conn, slice)) = slices.next(way).await {
        let rows: Vec<(Uuid, DateTime<Utc>, i64)> = sqlx::query_as(
            "SELECT contact_id, date_trunc('day', occurred_at, 'UTC'), sum(amount)::int8 FROM activity
             WHERE kind = 'purchase' AND currency = $1 AND occurred_at < $2
               AND ctid >= $3::text::tid AND ctid < $4::text::tid
             GROUP BY 1, 2",
        )
        .bind(currency)
        .bind(until)
        .bind(&slice.from)
        .bind(&slice.to)
        .fetch_all(conn)
        .await?;
        for (contact, day, spend) in rows {
            *days.entry((contact, day)).or_insert(0) += spend;
        }
    }
    slices.close().await?;
    let mut customers: Vec<(Uuid, PurchaseDays)> = Vec::new();
    for ((contact, day), spend) in days {
        match customers.last_mut() {
            Some((last, days)) if *last == contact => days.push((day, spend)),
            _ => customers.push((contact, vec![(day, spend)])),
        }
    }
    Ok(customers)
}

/// A lifetime-value fit.
#[derive(Clone, Debug, PartialEq)]
pub struct ClvFit {
    pub fitted_at: DateTime<Utc>,
    pub currency: String,
    pub horizon_days: i32,
    pub customers: i64,
    pub repeat_customers: i64,
    pub purchases: BgNbd,
    pub bgnbd_log_likelihood: f64,
    pub spend: GammaGamma,
    pub gamma_gamma_log_likelihood: f64,
}

/// One customer's values under a fit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClvValue {
    pub historic_value: i64,
    pub repeat_purchases: i64,
    pub probability_alive: f64,
    pub expected_purchases: f64,
    pub expected_spend: f64,
    pub predicted_value: i64,
}

/// Replaces the stored fit and values, and marks for the features' refresh
/// the contacts whose predicted value changed ([`mark_changed`]).
pub async fn save_clv(tx: &mut PgConnection, fit: &ClvFit, values: &[(Uuid, ClvValue)], by: &str) -> Result<(), Error> {
    lock_against_refresh(tx).await?;
    let before: HashMap<Uuid, i64> =
        sqlx::query_as::<_, (Uuid, i64)>("SELECT contact_id, predicted_value FROM clv_values")
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
    let after = values.iter().map(|(contact, value)| (*contact, value.predicted_value));
    mark_changed(tx, &changed(before, after)).await?;
    sqlx::query("DELETE FROM clv_values").execute(&mut *tx).await?;
    sqlx::query(
        "INSERT INTO clv_values (contact_id, historic_value, repeat_purchases, probability_alive,
                                 expected_purchases, expected_spend, predicted_value)
         SELECT * FROM unnest($1::uuid[], $2::int8[], $3::int8[], $4::float8[], $5::float8[], $6::float8[], $7::int8[])",
    )
    .bind(values.iter().map(|(contact, _)| *contact).collect::<Vec<_>>())
    .bind(values.iter().map(|(_, value)| value.historic_value).collect::<Vec<_>>())
    .bind(values.iter().map(|(_, value)| value.repeat_purchases).collect::<Vec<_>>())
    .bind(values.iter().map(|(_, value)| value.probability_alive).collect::<Vec<_>>())
    .bind(values.iter().map(|(_, value)| value.expected_purchases).collect::<Vec<_>>())
    .bind(values.iter().map(|(_, value)| value.expected_spend).collect::<Vec<_>>())
    .bind(values.iter().map(|(_, value)| value.predicted_value).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    analyse(tx, "clv_values").await?;
    sqlx::query("DELETE FROM clv_fits").execute(&mut *tx).await?;
    sqlx::query(
        "INSERT INTO clv_fits (fitted_at, currency, horizon_days, customers, repeat_customers, r, alpha, a, b, bgnbd_ll,
                               p, q, gamma, gamma_gamma_ll, fitted_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(fit.fitted_at)
    .bind(&fit.currency)
    .bind(fit.horizon_days)
    .bind(fit.customers)
    .bind(fit.repeat_customers)
    .bind(fit.purchases.r)
    .bind(fit.purchases.alpha)
    .bind(fit.purchases.a)
    .bind(fit.purchases.b)
    .bind(fit.bgnbd_log_likelihood)
    .bind(fit.spend.p)
    .bind(fit.spend.q)
    .bind(fit.spend.gamma)
    .bind(fit.gamma_gamma_log_likelihood)
    .bind(by)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The last lifetime-value fit, if any.
pub async fn last_clv_fit(conn: &mut PgConnection) -> Result<Option<ClvFit>, Error> {
    let row = sqlx::query("SELECT * FROM clv_fits").fetch_optional(conn).await?;
    row.map(|row| {
        Ok(ClvFit {
            fitted_at: row.try_get("fitted_at")?,
            currency: row.try_get("currency")?,
            horizon_days: row.try_get("horizon_days")?,
            customers: row.try_get("customers")?,
            repeat_customers: row.try_get("repeat_customers")?,
            purchases: BgNbd {
                r: row.try_get("r")?,
                alpha: row.try_get("alpha")?,
                a: row.try_get("a")?,
                b: row.try_get("b")?,
            },
            bgnbd_log_likelihood: row.try_get("bgnbd_ll")?,
            spend: GammaGamma { p: row.try_get("p")?, q: row.try_get("q")?, gamma: row.try_get("gamma")? },
            gamma_gamma_log_likelihood: row.try_get("gamma_gamma_ll")?,
        })
    })
    .transpose()
}

/// A contact's stored values (its survivor's when merged).
pub async fn contact_clv(conn: &mut PgConnection, contact: Uuid) -> Result<(Uuid, Option<ClvValue>), Error> {
    let row = of_survivor(conn, "clv_values", contact).await?;
    let survivor = row.try_get("survivor")?;
    let value = held(row)?
        .map(|row| -> Result<_, Error> {
            Ok(ClvValue {
                historic_value: row.try_get("historic_value")?,
                repeat_purchases: row.try_get("repeat_purchases")?,
                probability_alive: row.try_get("probability_alive")?,
                expected_purchases: row.try_get("expected_purchases")?,
                expected_spend: row.try_get("expected_spend")?,
                predicted_value: row.try_get("predicted_value")?,
            })
        })
        .transpose()?;
    Ok((survivor, value))
}

/// Gathers the planner's statistics of `table`, just replaced whole, in the
/// transaction that replaced it (its own new rows count): the refresh that
/// follows joins every page of contacts to it, and statistics from before
/// (an empty table, analysed after another computation's refresh) made that
/// join scan the whole table for each page: 17 s a page at a million.
async fn analyse(tx: &mut PgConnection, table: &'static str) -> Result<(), Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE {table}"))).execute(tx).await?;
    Ok(())
}

/// The contacts whose stored value (what the features show of it) differs
/// between `before` and `after`, or is in only one of them: in id order, as
/// [`crate::store::read_model::apply_analytics`] takes them.
fn changed<V: PartialEq>(mut before: HashMap<Uuid, V>, after: impl Iterator<Item = (Uuid, V)>) -> Vec<Uuid> {
    let mut changed: Vec<Uuid> = Vec::new();
    for (contact, value) in after {
        if before.remove(&contact).is_none_or(|old| old != value) {
            changed.push(contact);
        }
    }
    changed.extend(before.into_keys());
    changed.sort_unstable();
    changed
}

/// Records, in the transaction that replaced RFM scores or lifetime values,
/// that the features of `contacts` must follow them (`analytics_dirty`):
/// the refresh reads those documents, not the whole base, and one a crash
/// interrupted leaves them marked for the leader to finish.
async fn mark_changed(tx: &mut PgConnection, contacts: &[Uuid]) -> Result<(), Error> {
    sqlx::query("INSERT INTO analytics_dirty (contact_id) SELECT unnest($1::uuid[]) ON CONFLICT DO NOTHING")
        .bind(contacts)
        .execute(tx)
        .await?;
    Ok(())
}

/// Holds, until commit, the lock that a computation's save and each page of
/// the refresh take: a page reads the marked contacts and their stored
/// analytics wholly before a save or wholly after it, so a contact a save
/// marks while a page brings it up to date is never unmarked with the
/// values from before.
pub async fn lock_against_refresh(tx: &mut PgConnection) -> Result<(), Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('crm.segmentation.analytics.changed', 0))")
        .execute(tx)
        .await?;
    Ok(())
}

/// Whether some contacts' features have yet to follow a computation.
pub async fn refresh_pending(conn: &mut PgConnection) -> Result<bool, Error> {
    Ok(sqlx::query_scalar("SELECT exists (SELECT FROM analytics_dirty)").fetch_one(conn).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contact_is_marked_when_its_value_changed_came_or_went_and_only_then() {
        let id = Uuid::from_u128;
        let before: HashMap<Uuid, i64> = [(id(1), 10), (id(2), 20), (id(3), 30)].into();
        // 1 kept, 2 changed, 3 gone, 4 new.
        let after = [(id(4), 40), (id(2), 21), (id(1), 10)].into_iter();
        assert_eq!(changed(before, after), vec![id(2), id(3), id(4)]);
        let same: HashMap<Uuid, i64> = [(id(1), 10)].into();
        assert!(changed(same, [(id(1), 10)].into_iter()).is_empty());
    }
}
