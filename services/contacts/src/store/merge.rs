//! Merging contacts: field-level survivorship, then the losers become
//! redirects to the survivor.
//!
//! Survivorship: a single-valued field takes the value of the contact the
//! caller chose for it, otherwise the most recently updated non-empty value.
//! Emails, phones, addresses, tags and external ids are unioned (the
//! survivor's primary email and phone stay primary); attributes take, per
//! key, the most recently updated contact's value; consents, per channel, the
//! most recent statement. A merged record may hold more entries than a
//! single write may send: nothing a customer told us is dropped.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crm_platform::{
    Error,
    outbox::{self, NewEvent},
};
use crm_proto::contacts::v1 as pb;
use uuid::Uuid;

use super::{
    Actor, ContactStore, audit, ensure_not_erased, forget_terms, load, resolve, search, write_data, write_terms,
};
use crate::{
    model::{ContactData, ContactRecord},
    terms,
};

/// The single-valued fields a caller may choose a source for.
pub const CHOOSABLE_FIELDS: &[&str] =
    &["given_name", "family_name", "display_name", "birth_date", "lifecycle_stage", "owner", "max_contacts_per_week"];

/// The survivor's data after merging `others` into it; `chosen` maps a
/// field to the contact whose value wins.
pub fn survive(survivor: &ContactRecord, others: &[ContactRecord], chosen: &HashMap<String, Uuid>) -> ContactData {
    let mut everyone: Vec<&ContactRecord> = std::iter::once(survivor).chain(others).collect();
    // Most recently updated first; the survivor wins ties.
    everyone.sort_by(|a, b| {
        b.meta
            .update_time
            .cmp(&a.meta.update_time)
            .then((b.meta.id == survivor.meta.id).cmp(&(a.meta.id == survivor.meta.id)))
    });
    let pick = |field: &str, is_set: &dyn Fn(&ContactData) -> bool| -> &ContactData {
        if let Some(source) = chosen.get(field)
            && let Some(record) = everyone.iter().find(|record| record.meta.id == *source)
        {
            return &record.data;
        }
        everyone.iter().map(|record| &record.data).find(|data| is_set(data)).unwrap_or(&survivor.data)
    };
    let mut merged = survivor.data.clone();
    merged.given_name = pick("given_name", &|d| !d.given_name.is_empty()).given_name.clone();
    merged.family_name = pick("family_name", &|d| !d.family_name.is_empty()).family_name.clone();
    merged.display_name = pick("display_name", &|d| !d.display_name.is_empty()).display_name.clone();
    merged.birth_date = pick("birth_date", &|d| d.birth_date.is_some()).birth_date;
    merged.lifecycle_stage = pick("lifecycle_stage", &|d| !d.lifecycle_stage.is_empty()).lifecycle_stage.clone();
    merged.owner = pick("owner", &|d| !d.owner.is_empty()).owner.clone();
    merged.max_contacts_per_week =
        pick("max_contacts_per_week", &|d| d.max_contacts_per_week > 0).max_contacts_per_week;

    let survivor_first: Vec<&ContactData> =
        std::iter::once(&survivor.data).chain(others.iter().map(|record| &record.data)).collect();
    merged.emails = Vec::new();
    merged.phones = Vec::new();
    merged.addresses = Vec::new();
    for data in &survivor_first {
        for email in &data.emails {
            match merged.emails.iter_mut().find(|seen| seen.key() == email.key()) {
                Some(seen) => seen.verified |= email.verified,
                None => merged.emails.push(email.clone()),
            }
        }
        for phone in &data.phones {
            if !merged.phones.iter().any(|seen| seen.number == phone.number) {
                merged.phones.push(phone.clone());
            }
        }
        for address in &data.addresses {
            if !merged.addresses.contains(address) {
                merged.addresses.push(address.clone());
            }
        }
        merged.tags.extend(data.tags.iter().cloned());
        merged.external_ids.extend(data.external_ids.iter().cloned());
    }
    keep_one_primary(merged.emails.iter_mut().map(|email| &mut email.primary));
    keep_one_primary(merged.phones.iter_mut().map(|phone| &mut phone.primary));
    merged.tags.sort();
    merged.tags.dedup();
    merged.external_ids.sort();
    merged.external_ids.dedup();

    let mut attributes = BTreeMap::new();
    let mut consents: Vec<crate::model::Consent> = Vec::new();
    for record in &everyone {
        for (key, value) in &record.data.attributes {
            attributes.entry(key.clone()).or_insert_with(|| value.clone());
        }
        for consent in &record.data.consents {
            match consents.iter_mut().find(|seen| seen.channel == consent.channel) {
                Some(seen) if seen.update_time < consent.update_time => *seen = consent.clone(),
                Some(_) => {}
                None => consents.push(consent.clone()),
            }
        }
    }
    consents.sort_by(|a, b| a.channel.cmp(&b.channel));
    merged.attributes = attributes;
    merged.consents = consents;
    merged
}

fn keep_one_primary<'a>(flags: impl Iterator<Item = &'a mut bool>) {
    let mut seen = false;
    let mut flags: Vec<&mut bool> = flags.collect();
    for flag in flags.iter_mut() {
        if **flag && !seen {
            seen = true;
        } else {
            **flag = false;
        }
    }
    if !seen && let Some(first) = flags.first_mut() {
        **first = true;
    }
}

impl ContactStore {
    /// Merges `loser_ids` into `survivor_id` (ids of merged contacts resolve first).
    pub async fn merge(
        &self,
        survivor_id: Uuid,
        loser_ids: &[Uuid],
        chosen: &HashMap<String, Uuid>,
        etag: &str,
        actor: &Actor,
    ) -> Result<ContactRecord, Error> {
        let mut tx = self.pool.begin().await?;
        let survivor_id = resolve(&mut tx, survivor_id).await?;
        let mut losers = Vec::new();
        for id in loser_ids {
            let resolved = resolve(&mut tx, *id).await?;
            if resolved != survivor_id && !losers.contains(&resolved) {
                losers.push(resolved);
            }
        }
        // Lock every row in id order, so that crossing merges cannot deadlock.
        let mut everyone: Vec<Uuid> = losers.iter().copied().chain([survivor_id]).collect();
        everyone.sort();
        sqlx::query("SELECT id FROM contacts WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&everyone)
            .execute(&mut *tx)
            .await?;
        let survivor = load(&mut tx, survivor_id, false).await?;
        ensure_not_erased(&survivor)?;
        if !etag.is_empty() && etag != crate::model::etag(survivor.meta.version) {
            return Err(Error::StaleEtag { resource: "contact", id: survivor_id.to_string() });
        }
        if losers.is_empty() {
            return Ok(survivor);
        }
        let mut others = Vec::new();
        for id in &losers {
            let record = load(&mut tx, *id, false).await?;
            ensure_not_erased(&record)?;
            others.push(record);
        }
        for (field, source) in chosen {
            if !everyone.contains(source) {
                return Err(Error::invalid(
                    format!("field_sources[{field:?}]"),
                    "must name the survivor or one of the losers",
                ));
            }
        }
        let merged = survive(&survivor, &others, chosen);

        // A merge is the review a flag asks for: the survivor is no longer flagged.
        write_data(&mut tx, survivor_id, &merged, false).await?;
        forget_terms(&mut tx, &losers).await?;
        let live = survivor.meta.delete_time.is_none();
        write_terms(&mut tx, survivor_id, live.then_some(&merged)).await?;
        sqlx::query("UPDATE contact_external_ids SET contact_id = $1 WHERE contact_id = ANY($2)")
            .bind(survivor_id)
            .bind(&losers)
            .execute(&mut *tx)
            .await?;
        // Links between the merged contacts would point at themselves: drop them; move the rest.
        sqlx::query("DELETE FROM relationships WHERE contact_id = ANY($1) AND other_contact_id = ANY($1)")
            .bind(&everyone)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE relationships SET contact_id = $1 WHERE contact_id = ANY($2)")
            .bind(survivor_id)
            .bind(&losers)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE relationships SET other_contact_id = $1 WHERE other_contact_id = ANY($2)")
            .bind(survivor_id)
            .bind(&losers)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE contacts SET merged_into = $1, version = version + 1, update_time = now() WHERE id = ANY($2)",
        )
        .bind(survivor_id)
        .bind(&losers)
        .execute(&mut *tx)
        .await?;
        // Contacts merged into a loser earlier now resolve to the survivor directly.
        sqlx::query("UPDATE contacts SET merged_into = $1 WHERE merged_into = ANY($2)")
            .bind(survivor_id)
            .bind(&losers)
            .execute(&mut *tx)
            .await?;
        // Names that only the merged-away records had leave the search vocabulary.
        let mut dropped: BTreeSet<String> =
            std::iter::once(&survivor).chain(&others).flat_map(|record| terms::words(&record.data)).collect();
        for kept in terms::words(&merged) {
            dropped.remove(&kept);
        }
        search::forget_unused_words(&mut tx, &dropped).await?;

        let loser_list = losers.iter().map(Uuid::to_string).collect::<Vec<_>>();
        let changes = audit::Changes::Fields(audit::diff(&survivor.data.fields(), &merged.fields()));
        let entries = audit::merge_entries("contact", survivor_id, &losers, changes, actor);
        audit::record(&mut tx, &entries).await?;
        let record = load(&mut tx, survivor_id, false).await?;
        let event = pb::ContactMerged { survivor: Some(record.to_proto()), loser_ids: loser_list };
        outbox::append(&mut tx, &[NewEvent::new("contact", survivor_id.to_string(), &event, &actor.request_id)])
            .await?;
        tx.commit().await?;
        Ok(record)
    }
}
