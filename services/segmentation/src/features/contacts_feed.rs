//! Following the contacts feed: a contact's profile (the inputs of its
//! contact features), merges folded into the survivor, and contacts that
//! are erased or deleted forgotten.

use std::sync::Arc;

use crm_platform::{clock::Clock, consumer::Handler, timestamp};
use crm_proto::{contacts::v1 as contacts, events::v1::Event};
use prost::{Message, Name};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Profile, short_name};
use crate::{
    segments::{self, Segments},
    store::read_model,
};

/// The contacts feed's handler.
pub struct ContactsFeed {
    pub clock: Clock,
    pub segments: Arc<Segments>,
}

/// What features need of a contact.
pub fn profile(contact: &contacts::Contact) -> Profile {
    let lifecycle = match contacts::LifecycleStage::try_from(contact.lifecycle_stage) {
        Ok(contacts::LifecycleStage::Unspecified) | Err(_) => String::new(),
        Ok(stage) => short_name(stage.as_str_name(), "LIFECYCLE_STAGE_"),
    };
    let address = contact.addresses.first();
    let consents = contact
        .consents
        .iter()
        .filter(|consent| consent.status == contacts::ConsentStatus::OptedIn as i32)
        .filter_map(|consent| contacts::ConsentChannel::try_from(consent.channel).ok())
        .map(|channel| short_name(channel.as_str_name(), "CONSENT_CHANNEL_"))
        .collect();
    Profile {
        lifecycle,
        tags: contact.tags.clone(),
        owner: contact.owner.clone(),
        country: address.map(|address| address.country_code.clone()).unwrap_or_default(),
        region: address.map(|address| address.region.clone()).unwrap_or_default(),
        city: address.map(|address| address.locality.clone()).unwrap_or_default(),
        created_time: contact.create_time.as_ref().and_then(timestamp::from_proto),
        consents,
        has_email: !contact.emails.is_empty(),
        has_phone: !contact.phones.is_empty(),
        birth_date: contact.birth_date.as_ref().and_then(timestamp::date_from_proto),
    }
}

fn decode<M: Message + Default>(event: &Event) -> anyhow::Result<M> {
    Ok(M::decode(event.payload.as_ref().map(|any| any.value.as_slice()).unwrap_or_default())?)
}

fn id(raw: &str) -> anyhow::Result<Uuid> {
    Ok(Uuid::try_parse(raw)?)
}

impl ContactsFeed {
    /// The contact and its profile, when `event` creates or updates one.
    fn profile_of(event: &Event) -> anyhow::Result<Option<(Uuid, Profile)>> {
        let kind = event.r#type.as_str();
        let contact = if kind == contacts::ContactCreated::full_name() {
            decode::<contacts::ContactCreated>(event)?.contact
        } else if kind == contacts::ContactUpdated::full_name() {
            decode::<contacts::ContactUpdated>(event)?.contact
        } else {
            return Ok(None);
        };
        contact.map(|contact| Ok((id(&contact.id)?, profile(&contact)))).transpose()
    }

    /// Applies one event other than a creation or update (those are
    /// [`Self::profile_of`]'s); returns the contacts whose features must be
    /// recomputed.
    async fn apply(&self, tx: &mut PgConnection, event: &Event) -> anyhow::Result<Vec<Uuid>> {
        let kind = event.r#type.as_str();
        if kind == contacts::ContactMerged::full_name() {
            let merged = decode::<contacts::ContactMerged>(event)?;
            let survivor =
                merged.survivor.ok_or_else(|| anyhow::anyhow!("merge event {} has no survivor", event.id))?;
            let survivor_id = id(&survivor.id)?;
            let losers: Vec<Uuid> = merged.loser_ids.iter().map(|loser| id(loser)).collect::<Result<_, _>>()?;
            segments::merge(tx, survivor_id, &losers, self.clock.now()).await?;
            let mut touched = read_model::dependents(tx, &losers).await?;
            read_model::merge(tx, survivor_id, &losers).await?;
            read_model::save_profiles(tx, &[(survivor_id, profile(&survivor))]).await?;
            touched.push(survivor_id);
            touched.extend(read_model::dependents(tx, &[survivor_id]).await?);
            return Ok(touched);
        }
        if kind == contacts::RelationshipChanged::full_name() {
            let changed = decode::<contacts::RelationshipChanged>(event)?;
            let Some(relationship) = changed.relationship else { return Ok(Vec::new()) };
            use contacts::relationship::Target;
            let (kind, target) = match (contacts::RelationshipType::try_from(relationship.r#type), &relationship.target)
            {
                (Ok(contacts::RelationshipType::ReferredBy), Some(Target::OtherContactId(other))) => {
                    ("referred_by", id(other)?)
                }
                (Ok(contacts::RelationshipType::EmployeeOf), Some(Target::OrganizationId(organization))) => {
                    ("employee_of", id(organization)?)
                }
                _ => return Ok(Vec::new()),
            };
            let contact_id = id(&relationship.contact_id)?;
            let mut touched = read_model::dependents(tx, &[contact_id]).await?;
            read_model::relationship_changed(tx, id(&relationship.id)?, contact_id, kind, target, changed.removed)
                .await?;
            touched.extend(read_model::dependents(tx, &[contact_id]).await?);
            touched.push(contact_id);
            return Ok(touched);
        }
        let (contact_id, reason) = if kind == contacts::ContactDeleted::full_name() {
            (id(&decode::<contacts::ContactDeleted>(event)?.contact_id)?, "deleted")
        } else if kind == contacts::ContactErased::full_name() {
            (id(&decode::<contacts::ContactErased>(event)?.contact_id)?, "erased")
        } else {
            return Ok(Vec::new());
        };
        segments::leave_all(tx, &[contact_id], reason, self.clock.now()).await?;
        let touched = read_model::dependents(tx, &[contact_id]).await?;
        read_model::forget(tx, contact_id, reason).await?;
        if reason == "erased" {
            segments::scrub_events(tx, contact_id).await?;
        }
        Ok(touched.into_iter().filter(|other| *other != contact_id).collect())
    }
}

impl Handler for ContactsFeed {
    async fn idle(&self, pool: &sqlx::PgPool, applied: crm_platform::outbox::Position) -> anyhow::Result<()> {
        let consumer = crate::store::rebuild::CONSUMERS[0];
        Ok(self.segments.caught_up(pool, consumer, applied, self.clock.now()).await?)
    }

    async fn handle(&self, tx: &mut PgConnection, event: &Event) -> anyhow::Result<()> {
        self.handle_batch(tx, &[event]).await
    }

    async fn handle_batch(&self, tx: &mut PgConnection, events: &[&Event]) -> anyhow::Result<()> {
        let changes_identities = events.iter().any(|event| {
            [
                contacts::ContactMerged::full_name(),
                contacts::ContactDeleted::full_name(),
                contacts::ContactErased::full_name(),
                contacts::RelationshipChanged::full_name(),
            ]
            .contains(&event.r#type)
        });
        crate::store::lock_batch(tx, changes_identities).await?;
        let mut touched = Vec::new();
        // Runs of creations and updates are stored together, before the next other event.
        let mut profiles = Vec::new();
        for event in events {
            if let Some((contact_id, profile)) = Self::profile_of(event)? {
                profiles.push((contact_id, profile));
                touched.push(contact_id);
                continue;
            }
            read_model::save_profiles(tx, &std::mem::take(&mut profiles)).await?;
            touched.extend(self.apply(tx, event).await?);
        }
        read_model::save_profiles(tx, &profiles).await?;
        let now = self.clock.now();
        let computed = read_model::recompute(tx, &touched, now).await?;
        self.segments.reconcile(tx, &computed, &Default::default(), now).await?;
        Ok(())
    }
}
