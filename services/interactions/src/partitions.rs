//! Monthly partitions of `interactions`: created ahead at start and every
//! day after (three months ahead), and on demand when an interaction falls in
//! a month that has none. Creation is serialised by an advisory lock, so
//! replicas racing to create one partition do not fail.

use std::{collections::HashSet, sync::Mutex};

use chrono::{Datelike, Months, NaiveDate, Utc};
use crm_platform::Error;
use sqlx::PgPool;

/// Months ahead of the current one that always have a partition.
pub const MONTHS_AHEAD: u32 = 3;

/// Interactions before this date go to `interactions_history`.
pub fn first_month() -> NaiveDate {
    NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default()
}

/// The first day of the month of `date`.
pub fn month_of(date: NaiveDate) -> NaiveDate {
    date.with_day(1).unwrap_or(date)
}

/// The partitions this process knows exist.
#[derive(Default)]
pub struct Partitions {
    known: Mutex<HashSet<NaiveDate>>,
}

impl Partitions {
    /// Makes sure each month of `months` has its partition.
    pub async fn ensure(&self, pool: &PgPool, months: impl IntoIterator<Item = NaiveDate>) -> Result<(), Error> {
        let missing: Vec<NaiveDate> = {
            let known = self.known.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut missing: Vec<NaiveDate> = months
                .into_iter()
                .map(month_of)
                .filter(|month| *month >= first_month() && !known.contains(month))
                .collect();
            missing.sort();
            missing.dedup();
            missing
        };
        if missing.is_empty() {
            return Ok(());
        }
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('interactions partitions', 0))")
            .execute(&mut *tx)
            .await?;
        for month in &missing {
            let next = *month + Months::new(1);
            let name = format!("interactions_y{:04}m{:02}", month.year(), month.month());
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE TABLE IF NOT EXISTS {name} PARTITION OF interactions FOR VALUES FROM ('{month}') TO ('{next}')"
            )))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.known.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).extend(missing);
        Ok(())
    }

    /// The current month and `MONTHS_AHEAD` after it.
    pub async fn ensure_ahead(&self, pool: &PgPool) -> Result<(), Error> {
        let this_month = month_of(Utc::now().date_naive());
        let months: Vec<NaiveDate> = (0..=MONTHS_AHEAD).map(|ahead| this_month + Months::new(ahead)).collect();
        self.ensure(pool, months).await
    }
}
