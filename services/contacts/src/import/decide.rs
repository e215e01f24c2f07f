//! Deciding each row of a batch, in order: an update of the contact owning
//! its external id, or a new contact, unless it likely duplicates a contact
//! of the base, of an earlier batch still in flight, or of an earlier row of
//! this batch, when the import's policy says what to do. Nothing is written
//! here: rows folded into existing contacts are listed ([`Absorbed`]) and
//! the writer applies them to the contacts as they are when it locks them.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use chrono::Utc;
use crm_platform::Error;
use crm_proto::contacts::v1 as pb;
use sqlx::{PgConnection, Row, types::Json};
use uuid::Uuid;

use super::{
    Policy,
    parse::{Parsed, outcome_result},
    window::Published,
};
use crate::{
    matching,
    model::{ContactData, ContactMeta, ContactRecord, ExternalId},
    store::{LIVE, merge::survive},
    terms,
};

/// What a blocking key or an external id points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Target {
    /// A committed contact.
    Stored(Uuid),
    /// A contact created by an earlier batch of this import, maybe not
    /// committed yet: the batch's place in the window's snapshot, and the
    /// contact's among the batch's new contacts.
    Earlier { batch: usize, at: usize },
    /// A contact this batch creates (its position).
    Pending(usize),
}

/// A row folded into a contact that exists before this batch.
pub struct Absorbed {
    pub contact: Uuid,
    pub row: ContactData,
    /// `import_update` (same external id) or `import_merge` (a likely duplicate).
    pub action: &'static str,
    /// The contact comes from an earlier batch of this import: its commit must be awaited.
    pub earlier: bool,
}

/// A contact this batch creates.
pub struct NewContact {
    pub id: Uuid,
    /// Shared with the window (see [`Decision::published`]).
    pub data: Arc<ContactData>,
    /// Hashes of its blocking keys (of `data` as it is now).
    pub keys: Vec<i64>,
    pub needs_review: bool,
}

/// What a batch does, row by row.
pub struct Decision {
    pub results: Vec<pb::ImportRowResult>,
    pub absorbed: Vec<Absorbed>,
    pub created: Vec<NewContact>,
}

impl Decision {
    /// The batch's new contacts, for the batches after it.
    pub fn published(&self) -> Published {
        let mut published = Published::default();
        for contact in &self.created {
            published.add(contact.id, contact.data.clone(), &contact.keys);
        }
        published
    }
}

/// How rows are decided.
pub struct Rules {
    pub policy: Policy,
    /// Score from which a row likely duplicates a contact.
    pub threshold: f64,
    /// The matching model the whole import decides with.
    pub model: std::sync::Arc<crate::matching::model::Model>,
    /// A dry run names no ids of contacts it would create.
    pub dry_run: bool,
}

/// What the rows of a batch are compared with, and what they changed so far.
///
/// The earlier batches' contacts are looked up in their own published maps
/// as they are needed, not copied in: a committed one is taken from the base
/// (the base wins), so it is never seen twice.
struct Known<'a> {
    /// External id -> its contact (of the base, or of this batch's rows).
    owners: HashMap<ExternalId, Target>,
    /// Blocking key (its hash) -> the contacts holding it (of the base, or of this batch's rows).
    index: HashMap<i64, Vec<Target>>,
    /// The wide keys among those the batch's rows probe.
    wide: HashSet<i64>,
    /// Live contacts of the base sharing a key or an external id with a row.
    stored: HashMap<Uuid, ContactData>,
    /// The new contacts of the earlier batches in flight.
    in_flight: &'a [Arc<Published>],
    /// Stored and earlier contacts as rows of this batch changed them.
    updated: HashMap<Uuid, ContactData>,
    created: Vec<NewContact>,
}

impl Known<'_> {
    fn data(&self, target: Target) -> Option<&ContactData> {
        match target {
            Target::Stored(id) => self.updated.get(&id).or_else(|| self.stored.get(&id)),
            Target::Earlier { batch, at } => {
                let (id, data) = &self.in_flight[batch].contacts[at];
                self.updated.get(id).or(Some(&**data))
            }
            Target::Pending(at) => self.created.get(at).map(|contact| &*contact.data),
        }
    }

    fn id(&self, target: Target) -> Uuid {
        match target {
            Target::Stored(id) => id,
            Target::Earlier { batch, at } => self.in_flight[batch].contacts[at].0,
            Target::Pending(at) => self.created[at].id,
        }
    }

    /// An earlier batch's new contact, as the base has it once committed.
    fn earlier(&self, batch: usize, at: usize) -> Target {
        let id = self.in_flight[batch].contacts[at].0;
        if self.stored.contains_key(&id) { Target::Stored(id) } else { Target::Earlier { batch, at } }
    }

    /// The contact owning one of these external ids: of this batch or the
    /// base, else of the earliest batch in flight that created it.
    fn owner(&self, externals: &[ExternalId]) -> Option<Target> {
        externals.iter().find_map(|external| {
            self.owners.get(external).copied().or_else(|| {
                self.in_flight
                    .iter()
                    .enumerate()
                    .find_map(|(batch, published)| Some(self.earlier(batch, *published.externals.get(external)?)))
            })
        })
    }

    /// The contacts holding a blocking key: of the base, of the batches in
    /// flight (those not in what this batch read of the base), of this
    /// batch; none for a wide key they hold more than
    /// [`matching::MAX_BLOCK`] of together, as the base purges it.
    fn holders(&self, key: i64) -> impl Iterator<Item = Target> + '_ {
        // Counted only for keys of a kind that is purged: the others never are.
        let limit = usize::try_from(matching::MAX_BLOCK).unwrap_or(usize::MAX);
        let purged = self.wide.contains(&key) && self.known_holders(key).take(limit + 1).count() > limit;
        self.known_holders(key).filter(move |_| !purged)
    }

    fn known_holders(&self, key: i64) -> impl Iterator<Item = Target> + '_ {
        let own = self.index.get(&key).into_iter().flatten().copied();
        let earlier = self.in_flight.iter().enumerate().flat_map(move |(batch, published)| {
            published
                .keys
                .get(&key)
                .into_iter()
                .flatten()
                .map(move |at| self.earlier(batch, *at))
                .filter(|target| matches!(target, Target::Earlier { .. }))
        });
        own.chain(earlier)
    }

    /// Indexes a row's keys and external ids as belonging to `target`.
    fn remember(&mut self, data: &ContactData, keys: &[i64], target: Target) {
        for external in &data.external_ids {
            self.owners.insert(external.clone(), target);
        }
        for key in keys {
            let targets = self.index.entry(*key).or_default();
            if !targets.contains(&target) {
                targets.push(target);
            }
        }
    }

    /// The best-scoring contact at or above the rules' threshold sharing a key with `data`.
    fn best_match(&self, data: &ContactData, keys: &[i64], rules: &Rules) -> Option<(Target, f64)> {
        let mut seen = HashSet::new();
        let mut best: Option<(Target, f64)> = None;
        for target in keys.iter().flat_map(|key| self.holders(*key)) {
            if !seen.insert(target) {
                continue;
            }
            let Some(other) = self.data(target) else { continue };
            let score = rules.model.score_pair(data, other).score;
            if score >= rules.threshold && best.is_none_or(|(_, top)| score > top) {
                best = Some((target, score));
            }
        }
        best
    }

    /// Folds a row into a contact; an existing one's change is listed for the writer.
    fn absorb(&mut self, target: Target, row: &ContactData, action: &'static str, absorbed: &mut Vec<Absorbed>) {
        let Some(base) = self.data(target) else { return };
        let merged = fold(base, row);
        match target {
            Target::Pending(at) => {
                // Its keys are those of what it now holds (for the batches after this one).
                self.created[at].keys = terms::hashes(&matching::keys(&merged));
                self.created[at].data = Arc::new(merged);
            }
            Target::Stored(_) | Target::Earlier { .. } => {
                let id = self.id(target);
                self.updated.insert(id, merged);
                let earlier = matches!(target, Target::Earlier { .. });
                absorbed.push(Absorbed { contact: id, row: row.clone(), action, earlier });
            }
        }
    }
}

/// `base` with `row` folded in as the newer statement: the row's non-empty
/// values win, lists are unioned (the survivorship of a merge).
pub fn fold(base: &ContactData, row: &ContactData) -> ContactData {
    let now = Utc::now();
    let record = |data: &ContactData, update_time| ContactRecord {
        meta: ContactMeta {
            id: Uuid::nil(),
            version: 0,
            create_time: update_time,
            update_time,
            delete_time: None,
            erase_time: None,
            merged_ids: Vec::new(),
            needs_review: false,
        },
        data: data.clone(),
    };
    survive(&record(base, now - chrono::Duration::seconds(1)), &[record(row, now)], &HashMap::new())
}

/// Decides the rows of a batch against the base (as [`read_base`] read it),
/// the contacts of the earlier batches in flight, and each other.
pub fn decide(rules: &Rules, base: Base, rows: Vec<Parsed>, in_flight: &[Arc<Published>]) -> Decision {
    let Base { owners, index, wide, stored } = base;
    let mut known = Known { owners, index, wide, stored, in_flight, updated: HashMap::new(), created: Vec::new() };

    let mut results = Vec::with_capacity(rows.len());
    let mut absorbed = Vec::new();
    for row in rows {
        let (data, keys) = match row.outcome {
            Ok((data, probes)) => (data, probes.into_iter().map(|(key, _)| key).collect::<Vec<i64>>()),
            Err(failed) => {
                results.push(failed);
                continue;
            }
        };
        if let Some(owner) = known.owner(&data.external_ids) {
            known.absorb(owner, &data, "import_update", &mut absorbed);
            let mut result = outcome_result(&row.row_id, pb::ImportOutcome::Updated);
            result.contact_id = known.id(owner).to_string();
            known.remember(&data, &keys, owner);
            results.push(result);
            continue;
        }
        let mut result = outcome_result(&row.row_id, pb::ImportOutcome::Created);
        result.model_version = rules.model.version.clone();
        let mut needs_review = false;
        if let Some((target, score)) = known.best_match(&data, &keys, rules) {
            let matched = known.id(target);
            result.matched_contact_id = matched.to_string();
            result.match_score = score;
            match rules.policy {
                Policy::Merge => {
                    known.absorb(target, &data, "import_merge", &mut absorbed);
                    result.outcome = pb::ImportOutcome::Merged as i32;
                    result.contact_id = matched.to_string();
                    known.remember(&data, &keys, target);
                    results.push(result);
                    continue;
                }
                Policy::Skip => {
                    result.outcome = pb::ImportOutcome::Skipped as i32;
                    results.push(result);
                    continue;
                }
                Policy::Fail => {
                    result.outcome = pb::ImportOutcome::Failed as i32;
                    result.error = format!("likely duplicate of contact {matched} (score {score:.2})");
                    results.push(result);
                    continue;
                }
                Policy::CreateAndFlag => {
                    result.outcome = pb::ImportOutcome::Flagged as i32;
                    needs_review = true;
                }
            }
        }
        let target = Target::Pending(known.created.len());
        let id = Uuid::now_v7();
        known.remember(&data, &keys, target);
        known.created.push(NewContact { id, data: Arc::new(data), keys, needs_review });
        result.contact_id = if rules.dry_run { String::new() } else { id.to_string() };
        results.push(result);
    }
    Decision { results, absorbed, created: known.created }
}

/// What the base holds for a batch's rows: the owners of their external
/// ids, and the live contacts sharing a blocking key with one.
pub struct Base {
    owners: HashMap<ExternalId, Target>,
    index: HashMap<i64, Vec<Target>>,
    wide: HashSet<i64>,
    stored: HashMap<Uuid, ContactData>,
}

/// Reads [`Base`] in `tx`.
pub async fn read_base(tx: &mut PgConnection, rows: &[Parsed]) -> Result<Base, Error> {
    let valid: Vec<&(ContactData, Vec<(i64, bool)>)> =
        rows.iter().filter_map(|row| row.outcome.as_ref().ok()).collect();
    let sources: Vec<&str> =
        valid.iter().flat_map(|(data, _)| data.external_ids.iter().map(|x| x.source.as_str())).collect();
    let values: Vec<&str> =
        valid.iter().flat_map(|(data, _)| data.external_ids.iter().map(|x| x.id.as_str())).collect();
    let mut owners: HashMap<ExternalId, Target> = HashMap::new();
    for row in sqlx::query(
        "SELECT source, external_id, contact_id FROM contact_external_ids
         WHERE (source, external_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
    )
    .bind(&sources)
    .bind(&values)
    .fetch_all(&mut *tx)
    .await?
    {
        let external = ExternalId { source: row.try_get("source")?, id: row.try_get("external_id")? };
        owners.insert(external, Target::Stored(row.try_get("contact_id")?));
    }
    let mut probes: Vec<(i64, bool)> = valid.iter().flat_map(|(_, probes)| probes.iter().copied()).collect();
    probes.sort_unstable();
    probes.dedup();
    let mut index: HashMap<i64, Vec<Target>> = HashMap::new();
    let mut stored: HashMap<Uuid, ContactData> = HashMap::new();
    let mut holders = crate::store::key_holders_with_data(&mut *tx, &probes).await?;
    // In id order, as the terms' index lists a key's holders (a tie goes to the first).
    holders.sort_unstable_by_key(|(holder, ..)| *holder);
    for (holder, keys, data) in holders {
        for key in keys {
            index.entry(key).or_default().push(Target::Stored(holder));
        }
        stored.insert(holder, data);
    }
    // The owners of external ids that hold no probed key: their data only
    // (the writer reads, and locks, the ones it changes).
    let mut wanted: Vec<Uuid> = owners
        .values()
        .filter_map(|target| match target {
            Target::Stored(id) if !stored.contains_key(id) => Some(*id),
            _ => None,
        })
        .collect();
    wanted.sort();
    wanted.dedup();
    if !wanted.is_empty() {
        let owned = sqlx::query_as::<_, (Uuid, Json<ContactData>)>(sqlx::AssertSqlSafe(format!(
            "SELECT c.id, c.data FROM contacts c WHERE c.id = ANY($1) AND {LIVE}"
        )))
        .bind(&wanted)
        .fetch_all(&mut *tx)
        .await?;
        stored.extend(owned.into_iter().map(|(id, data)| (id, data.0)));
    }
    // Only live contacts own external ids and keys (deleted ones free theirs).
    owners.retain(|_, target| matches!(target, Target::Stored(id) if stored.contains_key(id)));
    let wide = probes.iter().filter(|(_, wide)| *wide).map(|(key, _)| *key).collect();
    Ok(Base { owners, index, wide, stored })
}
