//! The contact and organization records as this role stores them: validated,
//! normalised values (built only by `validate`), kept as JSON in the `data`
//! column, and converted to and from their protobuf messages here.
//!
//! Enumerations are stored by their protobuf names (`LIFECYCLE_STAGE_CUSTOMER`),
//! so the JSON reads on its own and the audit trail shows names, not numbers.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use crm_proto::{common::v1 as common, contacts::v1 as pb};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The fields of a contact a caller can write.
///
/// As JSON (the `data` of its row, its audit entries) an empty field is left
/// out: a missing field reads as empty, and a sixth of a typical document
/// was empty fields (`"tags": []`, `"owner": ""`, `"verified": false`, …),
/// stored twice and parsed by PostgreSQL on every write.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContactData {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub given_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub family_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<Email>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phones: Vec<Phone>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Address>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<NaiveDate>,
    pub lifecycle_stage: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub owner: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub consents: Vec<Consent>,
    #[serde(skip_serializing_if = "is_zero")]
    pub max_contacts_per_week: i32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub external_ids: Vec<ExternalId>,
}

fn is_zero(value: &i32) -> bool {
    *value == 0
}

fn is_false(value: &bool) -> bool {
    !*value
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Email {
    pub address: String,
    pub kind: String,
    #[serde(skip_serializing_if = "is_false")]
    pub primary: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub verified: bool,
}

impl Email {
    /// The form emails are compared and looked up in: the whole address lower case.
    pub fn key(&self) -> String {
        self.address.to_lowercase()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Phone {
    /// E.164, for example `+442079460018`.
    pub number: String,
    pub kind: String,
    #[serde(skip_serializing_if = "is_false")]
    pub primary: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Address {
    pub kind: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub locality: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub region: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub postal_code: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub country_code: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Consent {
    pub channel: String,
    pub status: String,
    pub update_time: DateTime<Utc>,
    pub source: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ExternalId {
    pub source: String,
    pub id: String,
}

/// What the table keeps beside a contact's data.
#[derive(Clone, Debug)]
pub struct ContactMeta {
    pub id: Uuid,
    pub version: i64,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    pub delete_time: Option<DateTime<Utc>>,
    pub erase_time: Option<DateTime<Utc>>,
    pub merged_ids: Vec<Uuid>,
    pub needs_review: bool,
}

/// A stored contact.
#[derive(Clone, Debug)]
pub struct ContactRecord {
    pub meta: ContactMeta,
    pub data: ContactData,
}

impl ContactData {
    /// The name as people read it: the display name, else given and family.
    pub fn derived_display_name(&self) -> String {
        format!("{} {}", self.given_name, self.family_name).trim().to_string()
    }

    /// The text free-text search matches: names, emails and phone digits, lower case.
    pub fn search_text(&self) -> String {
        let mut parts = vec![self.given_name.to_lowercase(), self.family_name.to_lowercase()];
        if !self.display_name.is_empty() && self.display_name != self.derived_display_name() {
            parts.push(self.display_name.to_lowercase());
        }
        parts.extend(self.emails.iter().map(Email::key));
        parts.extend(self.phones.iter().map(|phone| phone.number.trim_start_matches('+').to_string()));
        parts.retain(|part| !part.is_empty());
        parts.join(" ")
    }

    /// Each top-level field as JSON, for the audit trail's before/after.
    pub fn fields(&self) -> BTreeMap<String, serde_json::Value> {
        json_fields(self)
    }
}

/// Each top-level field of a record as JSON (the audit trail diffs these).
fn json_fields<T: Serialize>(record: &T) -> BTreeMap<String, serde_json::Value> {
    match serde_json::to_value(record) {
        Ok(serde_json::Value::Object(map)) => map.into_iter().collect(),
        _ => BTreeMap::new(),
    }
}

pub fn etag(version: i64) -> String {
    format!("v{version}")
}

pub fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    crm_platform::timestamp::to_proto(time)
}

pub use crm_platform::timestamp::date_to_proto;

pub fn address_to_proto(address: &Address) -> common::PostalAddress {
    common::PostalAddress {
        r#type: common::PostalAddressType::from_str_name(&address.kind).unwrap_or_default() as i32,
        lines: address.lines.clone(),
        locality: address.locality.clone(),
        region: address.region.clone(),
        postal_code: address.postal_code.clone(),
        country_code: address.country_code.clone(),
    }
}

pub fn external_id_to_proto(external_id: &ExternalId) -> common::ExternalId {
    common::ExternalId { source: external_id.source.clone(), id: external_id.id.clone() }
}

impl ContactRecord {
    pub fn to_proto(&self) -> pb::Contact {
        self.meta.to_proto(&self.data)
    }
}

impl ContactMeta {
    /// The contact these facts and `data` make.
    pub fn to_proto(&self, data: &ContactData) -> pb::Contact {
        let meta = self;
        let state = if meta.erase_time.is_some() {
            pb::ContactState::Erased
        } else if meta.delete_time.is_some() {
            pb::ContactState::Deleted
        } else {
            pb::ContactState::Active
        };
        let mut contact = data.to_proto();
        contact.id = meta.id.to_string();
        contact.create_time = Some(timestamp(meta.create_time));
        contact.update_time = Some(timestamp(meta.update_time));
        contact.delete_time = meta.delete_time.map(timestamp);
        contact.etag = etag(meta.version);
        contact.state = state as i32;
        contact.merged_ids = meta.merged_ids.iter().map(Uuid::to_string).collect();
        contact.needs_review = meta.needs_review;
        contact
    }
}

impl ContactData {
    /// The writable fields as a protobuf contact (no id, times or etag).
    pub fn to_proto(&self) -> pb::Contact {
        pb::Contact {
            given_name: self.given_name.clone(),
            family_name: self.family_name.clone(),
            display_name: self.display_name.clone(),
            emails: self
                .emails
                .iter()
                .map(|email| pb::Email {
                    address: email.address.clone(),
                    r#type: pb::EmailType::from_str_name(&email.kind).unwrap_or_default() as i32,
                    primary: email.primary,
                    verified: email.verified,
                })
                .collect(),
            phones: self
                .phones
                .iter()
                .map(|phone| pb::Phone {
                    number: phone.number.clone(),
                    r#type: pb::PhoneType::from_str_name(&phone.kind).unwrap_or_default() as i32,
                    primary: phone.primary,
                })
                .collect(),
            addresses: self.addresses.iter().map(address_to_proto).collect(),
            birth_date: self.birth_date.map(date_to_proto),
            lifecycle_stage: pb::LifecycleStage::from_str_name(&self.lifecycle_stage).unwrap_or_default() as i32,
            owner: self.owner.clone(),
            tags: self.tags.clone(),
            attributes: self.attributes.clone().into_iter().collect(),
            consents: self
                .consents
                .iter()
                .map(|consent| pb::Consent {
                    channel: pb::ConsentChannel::from_str_name(&consent.channel).unwrap_or_default() as i32,
                    status: pb::ConsentStatus::from_str_name(&consent.status).unwrap_or_default() as i32,
                    update_time: Some(timestamp(consent.update_time)),
                    source: consent.source.clone(),
                })
                .collect(),
            max_contacts_per_week: self.max_contacts_per_week,
            external_ids: self.external_ids.iter().map(external_id_to_proto).collect(),
            ..Default::default()
        }
    }
}

/// The fields of an organization a caller can write.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OrganizationData {
    pub name: String,
    pub kind: String,
    pub domain: String,
    pub addresses: Vec<Address>,
    pub external_ids: Vec<ExternalId>,
    pub tags: Vec<String>,
    pub attributes: BTreeMap<String, String>,
}

impl OrganizationData {
    pub fn fields(&self) -> BTreeMap<String, serde_json::Value> {
        json_fields(self)
    }

    pub fn to_proto(&self) -> pb::Organization {
        pb::Organization {
            name: self.name.clone(),
            kind: pb::OrganizationKind::from_str_name(&self.kind).unwrap_or_default() as i32,
            domain: self.domain.clone(),
            addresses: self.addresses.iter().map(address_to_proto).collect(),
            external_ids: self.external_ids.iter().map(external_id_to_proto).collect(),
            tags: self.tags.clone(),
            attributes: self.attributes.clone().into_iter().collect(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_leaves_empty_fields_out_and_reads_back_the_same() {
        let contact = ContactData {
            given_name: "Ann".into(),
            emails: vec![Email {
                address: "ann@example.com".into(),
                kind: "EMAIL_TYPE_WORK".into(),
                ..Default::default()
            }],
            addresses: vec![Address {
                kind: "POSTAL_ADDRESS_TYPE_PHYSICAL".into(),
                country_code: "GB".into(),
                ..Default::default()
            }],
            lifecycle_stage: "LIFECYCLE_STAGE_LEAD".into(),
            ..Default::default()
        };
        let document = serde_json::to_value(&contact).unwrap();
        assert_eq!(
            document,
            serde_json::json!({
                "given_name": "Ann",
                "emails": [{ "address": "ann@example.com", "kind": "EMAIL_TYPE_WORK" }],
                "addresses": [{ "kind": "POSTAL_ADDRESS_TYPE_PHYSICAL", "country_code": "GB" }],
                "lifecycle_stage": "LIFECYCLE_STAGE_LEAD",
            })
        );
        assert_eq!(serde_json::from_value::<ContactData>(document).unwrap(), contact);
        // As documents written before held it: every field, empty or not.
        let full = serde_json::json!({
            "given_name": "Ann", "family_name": "", "display_name": "", "birth_date": null, "owner": "",
            "emails": [{ "address": "ann@example.com", "kind": "EMAIL_TYPE_WORK", "primary": false, "verified": false }],
            "phones": [], "tags": [], "attributes": {}, "consents": [], "max_contacts_per_week": 0, "external_ids": [],
            "addresses": [{ "kind": "POSTAL_ADDRESS_TYPE_PHYSICAL", "lines": [], "locality": "", "region": "",
                            "postal_code": "", "country_code": "GB" }],
            "lifecycle_stage": "LIFECYCLE_STAGE_LEAD",
        });
        assert_eq!(serde_json::from_value::<ContactData>(full).unwrap(), contact);
    }
}
