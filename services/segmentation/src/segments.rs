//! Dynamic segments: each rule compiled once per version, memberships kept
//! as features change, and every entry and exit an event of this role's feed
//! (`SegmentEntered`, `SegmentExited`, aggregate `contact`).
//!
//! Evaluating a new or changed rule over every contact and keeping
//! memberships as features change must not miss each other: a consumer
//! holds a shared advisory lock from the start of its batch (before it reads
//! features or memberships, `store::lock_batch`), a segment's population the
//! exclusive one, so a population sees every feature committed before it,
//! and a reconcile after it sees the new rule.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use chrono::{DateTime, Utc};
use crm_platform::{
    Error,
    outbox::{self, NewEvent},
};
use crm_proto::segmentation::v1 as pb;
use prost::{Message, Name};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{
    features::{Computed, FeatureDoc},
    rules::{Checked, Outcome, check, decide, evaluate},
    store::{rebuild, segments as store},
};

/// Feature documents read per page when a segment is populated.
const PAGE: i64 = 2000;

/// Compiled rules, by segment and version; shared by the consumers and the API.
#[derive(Default)]
pub struct Segments {
    compiled: Mutex<HashMap<(Uuid, i64), Arc<Checked>>>,
}

fn reading(why: &[(String, String)]) -> Vec<pb::FeatureReading> {
    why.iter().map(|(feature, value)| pb::FeatureReading { feature: feature.clone(), value: value.clone() }).collect()
}

fn entered(segment: Uuid, version: i64, contact: Uuid, outcome: &Outcome) -> NewEvent {
    let event = pb::SegmentEntered {
        segment_id: segment.to_string(),
        contact_id: contact.to_string(),
        segment_version: version,
        why: reading(&outcome.why),
    };
    NewEvent::new("contact", contact.to_string(), &event, "")
}

fn exited(segment: Uuid, contact: Uuid, reason: &str) -> NewEvent {
    let event =
        pb::SegmentExited { segment_id: segment.to_string(), contact_id: contact.to_string(), reason: reason.into() };
    NewEvent::new("contact", contact.to_string(), &event, "")
}

/// A segment's first members announced at once (see `SegmentPopulated`).
fn populated(segment: Uuid, version: i64, members: i64) -> NewEvent {
    let event =
        pb::SegmentPopulated { segment_id: segment.to_string(), segment_version: version, member_count: members };
    NewEvent::new("segment", segment.to_string(), &event, "")
}

/// Which evaluation of a segment's rule a population is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Evaluation {
    /// A new segment's: its members are announced by one `SegmentPopulated`.
    First,
    /// A new rule's, or a rebuild's end: each change is an event.
    Again,
}

/// The decisions of a rule for every contact with stored features, a page
/// at a time in contact order: pages read one ahead (`store::stored_pages`),
/// parsed only for the features the rule reads and decided on every core.
pub struct Decisions<'r> {
    rule: &'r Checked,
    pages: tokio::sync::mpsc::Receiver<Result<store::StoredPage, Error>>,
}

impl<'r> Decisions<'r> {
    pub fn start(pool: &sqlx::PgPool, rule: &'r Checked) -> Decisions<'r> {
        Decisions { rule, pages: store::stored_pages(pool, PAGE) }
    }

    /// The next page: each contact, its features so read, and whether it
    /// meets the rule; `None` after the last.
    pub async fn next_page(&mut self) -> Result<Option<Vec<(Uuid, crate::features::FeatureDoc, bool)>>, Error> {
        let Some(page) = self.pages.recv().await else { return Ok(None) };
        let page = page?;
        if page.is_empty() {
            return Ok(None);
        }
        let rule = self.rule;
        Ok(Some(crate::parallel::map(page, |(contact, stored)| {
            let doc = crate::features::doc_from_bytes_only(&stored, &rule.features);
            let member = decide(rule, &doc);
            (contact, doc, member)
        })))
    }
}

/// Decides `rule` for every contact with stored features ([`Decisions`]);
/// `visit` gets each contact, its features so read, and whether it meets
/// the rule.
pub async fn decide_all(
    pool: &sqlx::PgPool,
    rule: &Checked,
    mut visit: impl FnMut(Uuid, crate::features::FeatureDoc, bool),
) -> Result<(), Error> {
    let mut decisions = Decisions::start(pool, rule);
    while let Some(page) = decisions.next_page().await? {
        for (contact, doc, member) in page {
            visit(contact, doc, member);
        }
    }
    Ok(())
}

/// Holds the segments lock exclusively (a population, a segment emptied, a
/// rebuild): no reconcile runs meanwhile, since each holds it shared from
/// the start of its batch (`store::lock_batch`).
pub async fn lock_exclusive(tx: &mut PgConnection) -> Result<(), Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(crate::store::SEGMENTS_LOCK)
        .execute(tx)
        .await?;
    Ok(())
}

impl Segments {
    /// The compiled rule of segment `id` at `version`; `None` (with a
    /// warning) for a stored rule that no longer checks.
    pub fn compiled(&self, id: Uuid, version: i64, rule: &str) -> Option<Arc<Checked>> {
        let mut compiled = self.compiled.lock().unwrap_or_else(|poison| poison.into_inner());
        if let Some(found) = compiled.get(&(id, version)) {
            return Some(found.clone());
        }
        match check(rule) {
            Ok(checked) => {
                let checked = Arc::new(checked);
                compiled.retain(|(cached, _), _| *cached != id);
                compiled.insert((id, version), checked.clone());
                Some(checked)
            }
            Err(error) => {
                tracing::warn!(segment = %id, version, %error, "a stored rule no longer checks; the segment is not evaluated");
                None
            }
        }
    }

    /// Brings the memberships of the contacts just recomputed up to date.
    /// `moved`: for contacts whose features were applied to rather than
    /// recomputed, the features that may have changed; a segment whose rule
    /// reads none of them keeps its decision (memberships always agree with
    /// the stored features) and is not run for that contact. The caller
    /// holds the segments lock shared since its batch began
    /// (`store::lock_batch`).
    pub async fn reconcile(
        &self,
        tx: &mut PgConnection,
        computed: &[(Uuid, Computed)],
        moved: &HashMap<Uuid, HashSet<&'static str>>,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let docs: Vec<(Uuid, &FeatureDoc)> =
            computed.iter().map(|(contact, computed)| (*contact, &computed.doc)).collect();
        self.reconcile_docs(tx, &docs, moved, now).await
    }

    /// The features read by the dynamic segments whose rules read any of
    /// `moved`: what [`Segments::reconcile_docs`] needs of a document whose
    /// `moved` features alone changed (none: no membership can move).
    pub async fn features_read_with(&self, tx: &mut PgConnection, moved: &[&str]) -> Result<Vec<String>, Error> {
        let Some(dynamic) = store::dynamic_unless_rebuilding(tx).await? else { return Ok(Vec::new()) };
        let mut read = std::collections::BTreeSet::new();
        for (id, version, rule) in dynamic {
            let Some(rule) = self.compiled(id, version, &rule) else { continue };
            if rule.features.iter().any(|feature| moved.contains(&feature.as_str())) {
                read.extend(rule.features.iter().cloned());
            }
        }
        Ok(read.into_iter().collect())
    }

    /// [`Segments::reconcile`] over documents that need hold only the
    /// features the segments read ([`Segments::features_read_with`]).
    pub async fn reconcile_docs(
        &self,
        tx: &mut PgConnection,
        computed: &[(Uuid, &FeatureDoc)],
        moved: &HashMap<Uuid, HashSet<&'static str>>,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        if computed.is_empty() {
            return Ok(());
        }
        // During a rebuild the features are incomplete: memberships wait for it to finish.
        let Some(dynamic) = store::dynamic_unless_rebuilding(tx).await? else { return Ok(()) };
        let segments: Vec<(Uuid, i64, Arc<Checked>)> = dynamic
            .into_iter()
            .filter_map(|(id, version, rule)| Some((id, version, self.compiled(id, version, &rule)?)))
            .collect();
        let contacts: Vec<Uuid> = computed.iter().map(|(contact, _)| *contact).collect();
        let current = store::memberships_of(tx, &contacts).await?;
        let none = HashSet::new();
        // Each contact's changes: (entered, contact, segment, event), in order.
        let changes = crate::parallel::map(computed.iter().collect(), |(contact, features)| {
            let member_of = current.get(contact).unwrap_or(&none);
            let moved = moved.get(contact);
            let mut changes = Vec::new();
            for (segment, version, rule) in &segments {
                if moved.is_some_and(|moved| !rule.features.iter().any(|feature| moved.contains(feature.as_str()))) {
                    continue;
                }
                // Explained only when it enters: most contacts stay where they were.
                match (decide(rule, features), member_of.contains(segment)) {
                    (true, false) => changes.push((
                        true,
                        *contact,
                        *segment,
                        entered(*segment, *version, *contact, &evaluate(rule, features)),
                    )),
                    (false, true) => changes.push((false, *contact, *segment, exited(*segment, *contact, "rule"))),
                    _ => {}
                }
            }
            changes
        });
        let (mut entries, mut exits, mut events) = (Vec::new(), Vec::new(), Vec::new());
        for (entering, contact, segment, event) in changes.into_iter().flatten() {
            if entering {
                entries.push((contact, segment))
            } else {
                exits.push((contact, segment))
            }
            events.push(event);
        }
        store::enter(tx, &entries, now).await?;
        store::exit(tx, &exits, now).await?;
        outbox::append(tx, &events).await?;
        Ok(())
    }

    /// Evaluates segment `id`'s rule over every contact and makes its
    /// memberships match; returns how many contacts are members. New
    /// members are stored as each page is decided ([`store::NewMembers`]);
    /// on the [`Evaluation::First`] they are announced by one event (a
    /// broad segment's million `SegmentEntered` events had taken two thirds
    /// of its creation).
    #[allow(clippy::too_many_arguments)]
    pub async fn populate(
        &self,
        tx: &mut PgConnection,
        pool: &sqlx::PgPool,
        id: Uuid,
        version: i64,
        rule: &Checked,
        evaluation: Evaluation,
        now: DateTime<Utc>,
    ) -> Result<i64, Error> {
        lock_exclusive(tx).await?;
        let current = store::members(tx, id).await?;
        // The current members that stay: the others exit.
        let mut staying = HashSet::new();
        let mut events = Vec::new();
        let mut new_members = store::NewMembers::new(tx, id, now);
        // Read on another connection: with the lock held exclusively no burst
        // writes features, so it sees what this transaction would.
        let mut decisions = Decisions::start(pool, rule);
        while let Some(page) = decisions.next_page().await? {
            for (contact, doc, member) in page {
                if !member {
                    continue;
                }
                if current.contains(&contact) {
                    staying.insert(contact);
                } else {
                    new_members.push(contact);
                    if evaluation == Evaluation::Again {
                        events.push(entered(id, version, contact, &evaluate(rule, &doc)));
                    }
                }
            }
            new_members.end_page().await?;
        }
        let added = new_members.finish().await?;
        store::count_added(tx, id, added, now).await?;
        let exits: Vec<(Uuid, Uuid)> =
            current.iter().filter(|contact| !staying.contains(contact)).map(|contact| (*contact, id)).collect();
        events.extend(exits.iter().map(|(contact, _)| exited(id, *contact, "rule")));
        store::exit(tx, &exits, now).await?;
        let members = staying.len() as i64 + added;
        if evaluation == Evaluation::First {
            events.push(populated(id, version, members));
        }
        outbox::append(tx, &events).await?;
        Ok(members)
    }

    /// Evaluates every dynamic segment over every contact (a rebuild's end).
    pub async fn populate_all(
        &self,
        tx: &mut PgConnection,
        pool: &sqlx::PgPool,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        for (id, version, rule) in store::dynamic(tx).await? {
            if let Some(checked) = self.compiled(id, version, &rule) {
                self.populate(tx, pool, id, version, &checked, Evaluation::Again, now).await?;
            }
        }
        Ok(())
    }

    /// A consumer has been idle: during a rebuild it has caught up with its
    /// feed; when both have, memberships are brought up to date and the
    /// rebuild ends.
    pub async fn caught_up(
        &self,
        pool: &sqlx::PgPool,
        consumer: &str,
        applied: crm_platform::outbox::Position,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let mut tx = pool.begin().await?;
        if !rebuild::rebuilding(&mut tx).await? {
            return Ok(());
        }
        // A follower that went idle before the rebuild sent its cursor back
        // has not replayed anything yet: it has not caught up.
        if crm_platform::consumer::cursor_of(&mut tx, consumer).await? < applied {
            return Ok(());
        }
        if rebuild::caught_up(&mut tx, consumer).await? {
            self.populate_all(&mut tx, pool, now).await?;
            rebuild::finish(&mut tx, now).await?;
            tracing::info!("the read model is rebuilt; memberships are up to date");
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every member of segment `id` leaves it (the segment is deleted).
    pub async fn empty(&self, tx: &mut PgConnection, id: Uuid, now: DateTime<Utc>) -> Result<(), Error> {
        lock_exclusive(tx).await?;
        let exits: Vec<(Uuid, Uuid)> = store::members(tx, id).await?.into_iter().map(|contact| (contact, id)).collect();
        let left = store::exit(tx, &exits, now).await?;
        let events: Vec<NewEvent> = left.iter().map(|(contact, _)| exited(id, *contact, "segment_deleted")).collect();
        outbox::append(tx, &events).await?;
        Ok(())
    }
}

/// Adds (or removes) `contacts` to static segment `id`; returns how many changed.
pub async fn change_static(
    tx: &mut PgConnection,
    id: Uuid,
    version: i64,
    contacts: &[Uuid],
    add: bool,
    now: DateTime<Utc>,
) -> Result<usize, Error> {
    let pairs: Vec<(Uuid, Uuid)> = contacts.iter().map(|contact| (*contact, id)).collect();
    let no_reasons = Outcome { member: true, why: Vec::new(), error: None };
    let (changed, events): (Vec<(Uuid, Uuid)>, Vec<NewEvent>) = if add {
        let entered_now = store::enter(tx, &pairs, now).await?;
        let events = entered_now.iter().map(|(contact, _)| entered(id, version, *contact, &no_reasons)).collect();
        (entered_now, events)
    } else {
        let left = store::exit(tx, &pairs, now).await?;
        let events = left.iter().map(|(contact, _)| exited(id, *contact, "removed")).collect();
        (left, events)
    };
    outbox::append(tx, &events).await?;
    Ok(changed.len())
}

/// A new snapshot `id` takes the members `source` has now, announced by
/// one `SegmentPopulated` as a new dynamic segment's are.
pub async fn freeze(tx: &mut PgConnection, id: Uuid, source: Uuid, now: DateTime<Utc>) -> Result<(), Error> {
    lock_exclusive(tx).await?;
    let members: Vec<(Uuid, Uuid)> =
        store::members(tx, source).await?.into_iter().map(|contact| (contact, id)).collect();
    // Under the exclusive lock, and the segment new: none of them is a member.
    store::enter_new(tx, &members, now).await?;
    outbox::append(tx, &[populated(id, 1, members.len() as i64)]).await?;
    Ok(())
}

/// `contacts` leave every segment they are in (erased, deleted).
pub async fn leave_all(
    tx: &mut PgConnection,
    contacts: &[Uuid],
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let current = store::memberships_of(tx, contacts).await?;
    let exits: Vec<(Uuid, Uuid)> =
        current.iter().flat_map(|(contact, segments)| segments.iter().map(|segment| (*contact, *segment))).collect();
    let left = store::exit(tx, &exits, now).await?;
    let events: Vec<NewEvent> = left.iter().map(|(contact, segment)| exited(*segment, *contact, reason)).collect();
    outbox::append(tx, &events).await?;
    Ok(())
}

/// Losers merged into `survivor` leave their segments; the survivor takes
/// their places in static segments and snapshots (the same person), and is
/// evaluated again for the dynamic ones by the recompute that follows.
pub async fn merge(tx: &mut PgConnection, survivor: Uuid, losers: &[Uuid], now: DateTime<Utc>) -> Result<(), Error> {
    let current = store::memberships_of(tx, losers).await?;
    let segments: Vec<Uuid> = current.values().flatten().copied().collect();
    let kinds = store::kinds(tx, &segments).await?;
    leave_all(tx, losers, "merged", now).await?;
    let kept: HashSet<Uuid> =
        segments.into_iter().filter(|segment| kinds.get(segment).is_some_and(|kind| kind != "dynamic")).collect();
    for segment in kept {
        change_static(tx, segment, 0, &[survivor], true, now).await?;
    }
    Ok(())
}

/// An erased contact's past entries lose their explanations (feature values
/// such as its city or tags): the events keep only ids.
pub async fn scrub_events(tx: &mut PgConnection, contact: Uuid) -> Result<(), Error> {
    outbox::rewrite(tx, &[contact.to_string()], |event_type, payload| {
        Ok(if event_type == pb::SegmentEntered::full_name() {
            let mut event = pb::SegmentEntered::decode(payload)?;
            event.why.clear();
            Some(event.encode_to_vec())
        } else {
            None
        })
    })
    .await
    .map_err(|error| Error::Internal(error.context("scrubbing an erased contact's segment events")))
}
