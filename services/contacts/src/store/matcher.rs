//! The matching model in use, and fitting a new one on the base's own contacts.
//!
//! - [`Matcher`]: the model every duplicate decision of this process uses,
//!   swapped whole when a newer one is stored.
//! - [`fit`]: samples live contacts, compares random pairs of them (u) and
//!   each with the contacts it shares a blocking key with (m and the prior,
//!   by EM), and stores the result as the next version.
//! - [`latest`]: the newest stored model, if any.
//! - [`fit_if_due`]: the schedule's check: a first fit once the base holds
//!   [`MIN_CONTACTS_TO_FIT`] live contacts, another each time it has grown
//!   by half since the last.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, RwLock},
};

use crm_platform::{Error, leader::SessionLock};
use rand::{Rng, SeedableRng, rngs::StdRng};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::LIVE;
use crate::{
    matching::{
        compare::{Comparison, Field, compare},
        fit::{estimate_m, estimate_u},
        fitting_keys,
        model::{Model, NameFrequencies},
    },
    model::ContactData,
    terms,
};

/// Contacts a fit samples, at most.
const SAMPLE: i64 = 20_000;
/// Random pairs compared for u.
const RANDOM_PAIRS: usize = 100_000;
/// EM rounds, at most.
const MAX_ITERATIONS: usize = 200;

/// Live contacts from which the schedule fits a first model: fewer say too
/// little about how often strangers agree, and the built-in parameters stand.
pub const MIN_CONTACTS_TO_FIT: i64 = 1_000;

/// The model this process decides duplicates with; cheap to clone.
#[derive(Clone)]
pub struct Matcher(Arc<RwLock<Arc<Model>>>);

impl Default for Matcher {
    fn default() -> Self {
        Matcher(Arc::new(RwLock::new(Arc::new(Model::builtin().clone()))))
    }
}

impl Matcher {
    /// The model in use now.
    pub fn current(&self) -> Arc<Model> {
        self.0.read().unwrap_or_else(|poison| poison.into_inner()).clone()
    }

    /// Uses the newest stored model, if it is not the one in use already.
    pub async fn refresh(&self, pool: &PgPool) -> Result<(), Error> {
        if let Some(model) = latest(pool).await?
            && model.version != self.current().version
        {
            self.install(model);
        }
        Ok(())
    }

    /// Decides with `model` from now on.
    pub fn install(&self, model: Model) {
        tracing::info!(version = %model.version, "matching with a newly fitted model");
        *self.0.write().unwrap_or_else(|poison| poison.into_inner()) = Arc::new(model);
    }
}

/// Whether the schedule fits now, with `live` contacts in the base and
/// `last` live when the newest model was fitted (None: never).
pub fn due(live: i64, last: Option<i64>) -> bool {
    live >= MIN_CONTACTS_TO_FIT && last.is_none_or(|last| live >= last + last / 2)
}

/// Fits a model when [`due`]; what it stored, if it did. Cheap when not
/// due: the statistics' count of the table's live rows (kept at every
/// commit; it counts merged and deleted contacts too, so it is never
/// below the live contacts) rules most checks out, and the live contacts
/// are counted only up to the number that makes a fit due.
pub async fn fit_if_due(pool: &PgPool) -> Result<Option<Fitted>, Error> {
    let last: Option<i64> =
        sqlx::query_scalar("SELECT live_contacts FROM matcher_models ORDER BY version DESC LIMIT 1")
            .fetch_optional(pool)
            .await?;
    let needed = last.map_or(MIN_CONTACTS_TO_FIT, |last| (last + last / 2).max(MIN_CONTACTS_TO_FIT));
    let rows: Option<i64> =
        sqlx::query_scalar("SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = 'contacts'::regclass")
            .fetch_optional(pool)
            .await?;
    if rows.unwrap_or(0) < needed {
        return Ok(None);
    }
    let live: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM (SELECT 1 FROM contacts c WHERE {LIVE} LIMIT $1) AS enough"
    )))
    .bind(needed)
    .fetch_one(pool)
    .await?;
    if !due(live, last) {
        return Ok(None);
    }
    fit(pool).await.map(Some)
}

async fn live_contacts(pool: &PgPool) -> Result<i64, Error> {
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM contacts c WHERE {LIVE}")))
        .fetch_one(pool)
        .await?)
}

/// What a fit stored.
#[derive(Clone, Debug)]
pub struct Fitted {
    pub model: Model,
    pub contacts: usize,
    pub random_pairs: usize,
    pub blocked_pairs: usize,
    pub iterations: usize,
}

/// The newest stored model.
pub async fn latest(pool: &PgPool) -> Result<Option<Model>, Error> {
    let row = sqlx::query("SELECT version, prior, m, u, names FROM matcher_models ORDER BY version DESC LIMIT 1")
        .fetch_optional(pool)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let by_field = |column: &str| -> Result<Vec<Vec<f64>>, Error> {
        let stored: sqlx::types::Json<BTreeMap<String, Vec<f64>>> = row.try_get(column)?;
        Field::ALL
            .iter()
            .map(|field| match stored.0.get(field.name()) {
                Some(levels) if levels.len() == field.levels().len() => Ok(levels.clone()),
                // Stored before the field or its levels changed: the built-in ones stand in.
                _ => Ok(if column == "m" { Model::builtin().m.clone() } else { Model::builtin().u.clone() }
                    [*field as usize]
                    .clone()),
            })
            .collect()
    };
    let names: Option<sqlx::types::Json<NameFrequencies>> = row.try_get("names")?;
    Ok(Some(Model {
        version: row.try_get::<i64, _>("version")?.to_string(),
        prior: row.try_get("prior")?,
        m: by_field("m")?,
        u: by_field("u")?,
        names: names.map(|names| names.0),
    }))
}

/// Fits a model on the live contacts and stores it as the next version;
/// one fit at a time per install (FAILED_PRECONDITION `FIT_RUNNING` while
/// another runs, by the schedule, the CLI or the RPC).
pub async fn fit(pool: &PgPool) -> Result<Fitted, Error> {
    let Some(running) = SessionLock::try_take(pool, "contacts.matcher_fit.run").await.map_err(Error::Internal)? else {
        return Err(Error::FailedPrecondition {
            reason: "FIT_RUNNING",
            message: "a matching model is being fitted already; try again when it is stored".into(),
        });
    };
    let fitted = fit_holding_the_lock(pool).await;
    running.release().await;
    fitted
}

async fn fit_holding_the_lock(pool: &PgPool) -> Result<Fitted, Error> {
    let live = live_contacts(pool).await?;
    let sample: Vec<(Uuid, ContactData)> = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT c.id, c.data FROM contacts c WHERE {LIVE} ORDER BY random() LIMIT $1"
    )))
    .bind(SAMPLE)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|row| Ok((row.try_get("id")?, row.try_get::<sqlx::types::Json<ContactData>, _>("data")?.0)))
    .collect::<Result<_, Error>>()?;
    if sample.len() < 2 {
        return Err(Error::FailedPrecondition {
            reason: "TOO_FEW_CONTACTS",
            message: "a matching model is fitted on at least two live contacts; import some first".into(),
        });
    }

    let mut rng = StdRng::from_os_rng();
    let random: Vec<Comparison> = (0..RANDOM_PAIRS)
        .map(|_| {
            // Two different contacts: a contact compared with itself agrees
            // on everything, and in a small base would pass for a stranger.
            let a = rng.random_range(0..sample.len());
            let b = (a + rng.random_range(1..sample.len())) % sample.len();
            compare(&sample[a].1, &sample[b].1)
        })
        .collect();
    let blocked = blocked_pairs(pool, &sample).await?;

    let u = estimate_u(&random);
    let names = NameFrequencies::of(sample.iter().map(|(_, contact)| contact));
    let estimate = estimate_m(&blocked, &u, Model::builtin(), MAX_ITERATIONS);
    let as_json = |levels: &[Vec<f64>]| -> serde_json::Value {
        Field::ALL
            .iter()
            .map(|field| (field.name().to_string(), serde_json::Value::from(levels[*field as usize].clone())))
            .collect()
    };
    let version: i64 = sqlx::query_scalar(
        "INSERT INTO matcher_models (contacts, random_pairs, blocked_pairs, iterations, prior, m, u, live_contacts, names)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING version",
    )
    .bind(sample.len() as i32)
    .bind(random.len() as i32)
    .bind(blocked.len() as i32)
    .bind(estimate.iterations as i32)
    .bind(estimate.prior)
    .bind(as_json(&estimate.m))
    .bind(as_json(&u))
    .bind(live)
    .bind(sqlx::types::Json(&names))
    .fetch_one(pool)
    .await?;
    let model = Model { version: version.to_string(), prior: estimate.prior, m: estimate.m, u, names: Some(names) };
    Ok(Fitted {
        model,
        contacts: sample.len(),
        random_pairs: random.len(),
        blocked_pairs: blocked.len(),
        iterations: estimate.iterations,
    })
}

/// Each sampled contact compared with every live contact it shares a
/// fitting key with ([`fitting_keys`], none of them wide; at most
/// [`crate::matching::MAX_FAN_OUT`] a key), each pair once.
async fn blocked_pairs(pool: &PgPool, sample: &[(Uuid, ContactData)]) -> Result<Vec<Comparison>, Error> {
    let mut sampled_by_key: HashMap<i64, Vec<usize>> = HashMap::new();
    for (at, (_, data)) in sample.iter().enumerate() {
        for key in terms::hashes(&fitting_keys(data)) {
            sampled_by_key.entry(key).or_default().push(at);
        }
    }
    let all_keys: Vec<(i64, bool)> = sampled_by_key.keys().map(|&key| (key, false)).collect();
    let mut holders: Vec<(i64, Uuid)> = Vec::new();
    for chunk in all_keys.chunks(10_000) {
        holders.extend(super::key_holders(pool, chunk).await?);
    }
    let wanted: Vec<Uuid> = holders.iter().map(|(_, id)| *id).collect::<HashSet<_>>().into_iter().collect();
    let mut data: HashMap<Uuid, ContactData> = HashMap::new();
    for chunk in wanted.chunks(10_000) {
        for row in sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT c.id, c.data FROM contacts c WHERE c.id = ANY($1) AND {LIVE}"
        )))
        .bind(chunk)
        .fetch_all(pool)
        .await?
        {
            data.insert(row.try_get("id")?, row.try_get::<sqlx::types::Json<ContactData>, _>("data")?.0);
        }
    }
    let mut seen: HashSet<(Uuid, Uuid)> = HashSet::new();
    let mut pairs = Vec::new();
    for (key, holder) in holders {
        let Some(other) = data.get(&holder) else { continue };
        for &at in &sampled_by_key[&key] {
            let id = sample[at].0;
            if id != holder && seen.insert((id.min(holder), id.max(holder))) {
                pairs.push(compare(&sample[at].1, other));
            }
        }
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_fits_a_big_enough_base_first_and_again_when_it_has_grown_by_half() {
        assert!(!due(MIN_CONTACTS_TO_FIT - 1, None), "too few contacts to learn from");
        assert!(due(MIN_CONTACTS_TO_FIT, None), "a first fit");
        assert!(!due(14_999, Some(10_000)) && due(15_000, Some(10_000)), "again at half as many again");
        assert!(!due(500, Some(10_000)), "a base that shrank keeps its model");
    }
}
