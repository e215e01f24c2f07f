//! The alert lifecycle: a condition's alerts fire and resolve as its
//! evaluation says, each change with its event (`AlertFired`,
//! `AlertResolved`, `AlertAcknowledged`) in the same transaction, so a
//! crashed evaluator's successor neither loses nor repeats a change.
//!
//! An alert is identified by its labels (the [`fingerprint`]); while one
//! is firing another with the same labels cannot start.
//!
//! Every change is announced in its transaction ([`announce`]): its event,
//! and a delivery for each webhook that hears of it, unless a silence holds
//! the alert back (then the evaluator announces it when the silence ends,
//! [`announce_unsilenced`]).

use chrono::{DateTime, Utc};
use crm_platform::{
    Error,
    outbox::{self, NewEvent},
    timestamp,
};
use crm_proto::alerting::v1 as pb;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{
    delivery::webhooks,
    silences::Active,
    store::alerts::{self as store, AlertRecord, Pairs},
};

/// An alert that should be firing now.
#[derive(Clone, Debug, PartialEq)]
pub struct Wanted {
    pub labels: Pairs,
    pub annotations: Pairs,
}

/// A hash of `labels`, the same whatever their order: 16 hex digits, like Alertmanager's.
pub fn fingerprint(labels: &Pairs) -> String {
    let mut hash = Sha256::new();
    for (name, value) in labels {
        hash.update(name.as_bytes());
        hash.update([0xff]);
        hash.update(value.as_bytes());
        hash.update([0xff]);
    }
    hex::encode(&hash.finalize()[..8])
}

/// What [`reconcile`] changed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changes {
    pub fired: Vec<AlertRecord>,
    pub resolved: Vec<AlertRecord>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.fired.is_empty() && self.resolved.is_empty()
    }
}

/// A new alert of `source` that fires from `now`.
fn firing_now(
    wanted: Wanted,
    fingerprint: String,
    source: &str,
    source_id: Uuid,
    now: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
) -> AlertRecord {
    AlertRecord {
        id: Uuid::now_v7(),
        fingerprint,
        labels: wanted.labels,
        annotations: wanted.annotations,
        source: source.into(),
        source_id,
        firing: true,
        starts_at: now,
        ends_at: None,
        resolved_by: String::new(),
        acknowledged: None,
        expires_at,
        notified: true,
    }
}

/// Brings the alerts of `source_id` to `wanted`: those not firing fire,
/// those firing and no longer wanted resolve, the others take the new annotations.
pub async fn reconcile(
    tx: &mut PgConnection,
    source: &str,
    source_id: Uuid,
    wanted: Vec<Wanted>,
    now: DateTime<Utc>,
) -> Result<Changes, Error> {
    let mut firing = store::firing_of(tx, source_id).await?;
    let mut changes = Changes::default();
    for want in wanted {
        let fingerprint = fingerprint(&want.labels);
        match firing.iter().position(|alert| alert.fingerprint == fingerprint) {
            Some(index) => {
                let alert = firing.swap_remove(index);
                if alert.annotations != want.annotations {
                    store::annotate(tx, alert.id, &want.annotations).await?;
                }
            }
            None => {
                let alert = firing_now(want, fingerprint, source, source_id, now, None);
                store::insert(tx, &alert, now).await?;
                changes.fired.push(alert);
            }
        }
    }
    for gone in firing {
        let annotations = gone.annotations.clone();
        changes.resolved.push(store::resolve(tx, gone.id, now, "", &annotations).await?);
    }
    announce(tx, &changes.fired, &changes.resolved, now).await?;
    Ok(changes)
}

/// Tells the feed and the receivers, in the transaction that changed them,
/// that `fired` fired and `resolved` resolved: their events; for each fired
/// alert no silence holds back, a delivery to every webhook that hears of
/// it (a held-back one is marked unannounced); for each resolved alert
/// whose firing was announced, its resolution.
async fn announce(
    tx: &mut PgConnection,
    fired: &[AlertRecord],
    resolved: &[AlertRecord],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    if fired.is_empty() && resolved.is_empty() {
        return Ok(());
    }
    let events: Vec<NewEvent> = fired
        .iter()
        .map(|alert| NewEvent::new("alert", alert.id.to_string(), &pb::AlertFired { alert: Some(to_proto(alert)) }, ""))
        .chain(resolved.iter().map(resolved_event))
        .collect();
    outbox::append(tx, &events).await?;
    let silences = Active::load(tx, now).await?;
    let hooks = webhooks::Hooks::load(tx).await?;
    for alert in fired {
        if silences.holds(&alert.labels) {
            store::set_notified(tx, alert.id, false).await?;
        } else {
            hooks.enqueue(tx, alert, "firing", now).await?;
        }
    }
    for alert in resolved.iter().filter(|alert| alert.notified) {
        hooks.enqueue(tx, alert, "resolved", now).await?;
    }
    Ok(())
}

/// Announces the firing alerts a silence held back and no longer does;
/// returns how many.
pub async fn announce_unsilenced(tx: &mut PgConnection, now: DateTime<Utc>) -> Result<usize, Error> {
    let waiting = store::unannounced(tx).await?;
    if waiting.is_empty() {
        return Ok(0);
    }
    let silences = Active::load(tx, now).await?;
    let hooks = webhooks::Hooks::load(tx).await?;
    let mut announced = 0;
    for alert in waiting.iter().filter(|alert| !silences.holds(&alert.labels)) {
        hooks.enqueue(tx, alert, "firing", now).await?;
        store::set_notified(tx, alert.id, true).await?;
        announced += 1;
    }
    Ok(announced)
}

/// Fires `wanted` for a rule unless an alert with its labels fires already
/// (the same rule and contact fire once until resolved); `expires_at`: when
/// it resolves by itself.
pub async fn fire(
    tx: &mut PgConnection,
    source_id: Uuid,
    wanted: Wanted,
    now: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
) -> Result<Option<AlertRecord>, Error> {
    let fingerprint = fingerprint(&wanted.labels);
    if store::is_firing(tx, &fingerprint).await? {
        return Ok(None);
    }
    let alert = firing_now(wanted, fingerprint, "rule", source_id, now, expires_at);
    store::insert(tx, &alert, now).await?;
    announce(tx, std::slice::from_ref(&alert), &[], now).await?;
    Ok(Some(alert))
}

/// Resolves the alerts whose time has come (a rule's `resolve_after`).
pub async fn expire(tx: &mut PgConnection, now: DateTime<Utc>) -> Result<Vec<AlertRecord>, Error> {
    let mut resolved = Vec::new();
    for alert in store::expired(tx, now).await? {
        resolved.push(store::resolve(tx, alert.id, now, "", &alert.annotations).await?);
    }
    announce(tx, &[], &resolved, now).await?;
    Ok(resolved)
}

/// Resolves every firing alert of `source_id` (its SLO or rule was deleted).
pub async fn resolve_all(tx: &mut PgConnection, source_id: Uuid, now: DateTime<Utc>) -> Result<Changes, Error> {
    reconcile(tx, "", source_id, Vec::new(), now).await
}

/// Resolves one firing alert by hand, with `note` as its `resolution` annotation.
pub async fn resolve_by_hand(
    tx: &mut PgConnection,
    id: Uuid,
    by: &str,
    note: &str,
    now: DateTime<Utc>,
) -> Result<AlertRecord, Error> {
    let current = store::get(tx, id, true).await?;
    let mut annotations = current.annotations.clone();
    if !note.is_empty() {
        annotations.insert("resolution".into(), note.into());
    }
    let resolved = store::resolve(tx, id, now, by, &annotations).await?;
    announce(tx, &[], std::slice::from_ref(&resolved), now).await?;
    Ok(resolved)
}

/// Records who is on an alert.
pub async fn acknowledge(
    tx: &mut PgConnection,
    id: Uuid,
    by: &str,
    note: &str,
    now: DateTime<Utc>,
) -> Result<AlertRecord, Error> {
    let acknowledged = store::acknowledge(tx, id, by, note, now).await?;
    let event = pb::AlertAcknowledged { alert: Some(to_proto(&acknowledged)) };
    outbox::append(tx, &[NewEvent::new("alert", id.to_string(), &event, "")]).await?;
    Ok(acknowledged)
}

fn resolved_event(alert: &AlertRecord) -> NewEvent {
    NewEvent::new("alert", alert.id.to_string(), &pb::AlertResolved { alert: Some(to_proto(alert)) }, "")
}

pub fn to_proto(alert: &AlertRecord) -> pb::Alert {
    pb::Alert {
        id: alert.id.to_string(),
        fingerprint: alert.fingerprint.clone(),
        labels: alert.labels.iter().map(|(name, value)| (name.clone(), value.clone())).collect(),
        annotations: alert.annotations.iter().map(|(name, value)| (name.clone(), value.clone())).collect(),
        state: if alert.firing { pb::AlertState::Firing } else { pb::AlertState::Resolved } as i32,
        starts_at: Some(timestamp::to_proto(alert.starts_at)),
        ends_at: alert.ends_at.map(timestamp::to_proto),
        source: alert.source.clone(),
        source_id: alert.source_id.to_string(),
        acknowledgement: alert.acknowledged.as_ref().map(|(by, at, note)| pb::Acknowledgement {
            by: by.clone(),
            time: Some(timestamp::to_proto(*at)),
            note: note.clone(),
        }),
        resolved_by: alert.resolved_by.clone(),
        silenced_by: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_depends_on_the_labels_not_their_order_nor_on_ambiguous_joins() {
        let labels = |pairs: &[(&str, &str)]| -> Pairs {
            pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
        };
        let a = labels(&[("slo", "payments"), ("severity", "page")]);
        let b = labels(&[("severity", "page"), ("slo", "payments")]);
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a).len(), 16);
        assert_ne!(fingerprint(&labels(&[("a", "bc")])), fingerprint(&labels(&[("ab", "c")])));
        assert_ne!(fingerprint(&a), fingerprint(&labels(&[("slo", "payments"), ("severity", "ticket")])));
    }
}
