//! Request messages to valid, normalised records. Every wrong field is
//! collected (with its path, e.g. `contact.emails[1].address`) so one
//! INVALID_ARGUMENT lists all of them; nothing is truncated silently.
//!
//! Normalisation: names and free text trimmed; email domains lower case;
//! phones to E.164 (national numbers read in the configured default region);
//! country codes and postal codes upper case; tags lower case and unique;
//! one primary email and phone.

use std::{collections::BTreeSet, str::FromStr};

use chrono::{NaiveDate, Utc};
use crm_platform::error::{Violations, quote};
use crm_proto::{common::v1 as common, contacts::v1 as pb};
use phonenumber::{Mode, country};

use crate::model::{Address, Consent, ContactData, Email, ExternalId, OrganizationData, Phone};

pub const MAX_NAME: usize = 200;
pub const MAX_EMAILS: usize = 10;
pub const MAX_EMAIL: usize = 254;
pub const MAX_PHONES: usize = 10;
pub const MAX_PHONE_INPUT: usize = 40;
pub const MAX_ADDRESSES: usize = 10;
pub const MAX_ADDRESS_LINES: usize = 4;
pub const MAX_ADDRESS_TEXT: usize = 200;
pub const MAX_POSTAL_CODE: usize = 20;
pub const MAX_TAGS: usize = 50;
pub const MAX_TAG: usize = 64;
pub const MAX_ATTRIBUTES: usize = 100;
pub const MAX_ATTRIBUTE_KEY: usize = 64;
pub const MAX_ATTRIBUTE_VALUE: usize = 1000;
pub const MAX_EXTERNAL_IDS: usize = 20;
pub const MAX_SOURCE: usize = 64;
pub const MAX_EXTERNAL_ID: usize = 200;
pub const MAX_CONSENTS: usize = 10;
pub const MAX_CONTACTS_PER_WEEK: i32 = 1000;

/// Phone numbers without a country code are read in this region.
#[derive(Clone, Copy, Debug)]
pub struct Region(country::Id);

impl Region {
    pub fn parse(code: &str) -> Result<Region, String> {
        country::Id::from_str(code)
            .map(Region)
            .map_err(|_| format!("{code:?} is not a region the phone-number library knows"))
    }
}

/// Checks a bounded, trimmed text field.
fn text(violations: &mut Violations, field: &str, value: &str, max: usize) -> String {
    let value = value.trim();
    if value.chars().count() > max {
        violations.add(field, format!("must be at most {max} characters (got {})", value.chars().count()));
    }
    value.to_string()
}

/// An email address with its domain lower case, or why it is not one.
pub fn email_address(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("must not be empty".into());
    }
    if raw.len() > MAX_EMAIL {
        return Err(format!("must be at most {MAX_EMAIL} characters"));
    }
    let parsed =
        email_address::EmailAddress::from_str(raw).map_err(|error| format!("is not an email address: {error}"))?;
    let domain = parsed.domain().to_lowercase();
    if !domain.contains('.') || domain.starts_with('[') {
        return Err("is not an email address: the domain needs a dot".into());
    }
    Ok(format!("{}@{domain}", parsed.local_part()))
}

/// A phone number in E.164, or why it is not one.
pub fn phone_number(raw: &str, region: Region) -> Result<String, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("must not be empty".into());
    }
    if raw.len() > MAX_PHONE_INPUT {
        return Err(format!("must be at most {MAX_PHONE_INPUT} characters"));
    }
    let number = phonenumber::parse(Some(region.0), raw).map_err(|error| format!("is not a phone number: {error}"))?;
    if !crate::phones::is_valid(&number) {
        return Err("is not a valid phone number for its country".into());
    }
    Ok(number.format().mode(Mode::E164).to_string())
}

fn country_code(violations: &mut Violations, field: &str, raw: &str) -> String {
    let code = raw.trim().to_uppercase();
    if code.is_empty() {
        violations.add(field, "must be an ISO 3166-1 alpha-2 country code, for example GB");
    } else if code.len() != 2 || country::Id::from_str(&code).is_err() {
        violations.add(field, format!("{} is not an ISO 3166-1 alpha-2 country code", quote(raw)));
    }
    code
}

pub fn date(violations: &mut Violations, field: &str, date: &common::Date) -> Option<NaiveDate> {
    let parsed = crm_platform::timestamp::date_from_proto(date);
    if parsed.is_none() {
        violations.add(field, format!("{}-{:02}-{:02} is not a calendar date", date.year, date.month, date.day));
    }
    parsed
}

pub fn addresses(violations: &mut Violations, field: &str, input: &[common::PostalAddress]) -> Vec<Address> {
    let mut output = Vec::new();
    for (index, address) in violations.within(field, input, MAX_ADDRESSES).iter().enumerate() {
        let at = format!("{field}[{index}]");
        let lines: Vec<String> = violations
            .within(&format!("{at}.lines"), &address.lines, MAX_ADDRESS_LINES)
            .iter()
            .enumerate()
            .map(|(line_index, line)| text(violations, &format!("{at}.lines[{line_index}]"), line, MAX_ADDRESS_TEXT))
            .filter(|line| !line.is_empty())
            .collect();
        let postal_code = text(violations, &format!("{at}.postal_code"), address.postal_code.as_str(), MAX_POSTAL_CODE)
            .to_uppercase()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let kind = common::PostalAddressType::try_from(address.r#type).unwrap_or_else(|_| {
            violations.add(format!("{at}.type"), format!("{} is not an address type", address.r#type));
            common::PostalAddressType::Unspecified
        });
        let kind =
            if kind == common::PostalAddressType::Unspecified { common::PostalAddressType::Physical } else { kind };
        let address = Address {
            kind: kind.as_str_name().to_string(),
            lines,
            locality: text(violations, &format!("{at}.locality"), &address.locality, MAX_ADDRESS_TEXT),
            region: text(violations, &format!("{at}.region"), &address.region, MAX_ADDRESS_TEXT),
            postal_code,
            country_code: country_code(violations, &format!("{at}.country_code"), &address.country_code),
        };
        if address.lines.is_empty() && address.locality.is_empty() && address.postal_code.is_empty() {
            violations.add(at, "needs at least a street line, a locality or a postal code");
        }
        output.push(address);
    }
    output
}

pub fn tags(violations: &mut Violations, field: &str, input: &[String]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    for (index, tag) in violations.within(field, input, MAX_TAGS).iter().enumerate() {
        let tag = tag.trim().to_lowercase();
        if tag.is_empty() || tag.chars().count() > MAX_TAG {
            violations.add(format!("{field}[{index}]"), format!("must be 1 to {MAX_TAG} characters"));
        } else {
            seen.insert(tag);
        }
    }
    seen.into_iter().collect()
}

pub fn attributes(
    violations: &mut Violations,
    field: &str,
    input: &std::collections::HashMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    let mut output = std::collections::BTreeMap::new();
    if input.len() > MAX_ATTRIBUTES {
        violations.add(field, format!("must have at most {MAX_ATTRIBUTES} entries (got {})", input.len()));
        return output;
    }
    for (key, value) in input {
        let trimmed = key.trim();
        if trimmed.is_empty() || trimmed.chars().count() > MAX_ATTRIBUTE_KEY {
            violations
                .add(format!("{field}[{}]", quote(key)), format!("keys must be 1 to {MAX_ATTRIBUTE_KEY} characters"));
            continue;
        }
        if value.chars().count() > MAX_ATTRIBUTE_VALUE {
            violations.add(
                format!("{field}[{}]", quote(key)),
                format!("values must be at most {MAX_ATTRIBUTE_VALUE} characters"),
            );
        }
        output.insert(trimmed.to_string(), value.clone());
    }
    output
}

pub fn external_ids(violations: &mut Violations, field: &str, input: &[common::ExternalId]) -> Vec<ExternalId> {
    let mut output = BTreeSet::new();
    for (index, external_id) in violations.within(field, input, MAX_EXTERNAL_IDS).iter().enumerate() {
        let at = format!("{field}[{index}]");
        let source = external_id.source.trim().to_lowercase();
        let id = external_id.id.trim().to_string();
        if source.is_empty() || source.chars().count() > MAX_SOURCE {
            violations.add(format!("{at}.source"), format!("must be 1 to {MAX_SOURCE} characters"));
        }
        if id.is_empty() || id.chars().count() > MAX_EXTERNAL_ID {
            violations.add(format!("{at}.id"), format!("must be 1 to {MAX_EXTERNAL_ID} characters"));
        }
        if !output.insert(ExternalId { source, id }) {
            violations.add(at, "is listed twice");
        }
    }
    output.into_iter().collect()
}

/// A contact from its protobuf message; `field` is the message's path in the request.
pub fn contact(violations: &mut Violations, field: &str, input: &pb::Contact, region: Region) -> ContactData {
    let at = |name: &str| format!("{field}.{name}");
    // Unary requests were checked by the codec; an imported row is checked here, as itself.
    if let Some(path) = crm_proto::storable::nul_in_message(input) {
        violations.add(at(&path), crm_proto::storable::NUL_REFUSED);
    }
    let given_name = text(violations, &at("given_name"), &input.given_name, MAX_NAME);
    let family_name = text(violations, &at("family_name"), &input.family_name, MAX_NAME);
    let mut display_name = text(violations, &at("display_name"), &input.display_name, MAX_NAME);
    if given_name.is_empty() && family_name.is_empty() && display_name.is_empty() {
        violations.add(at("given_name"), "a contact needs a given, family or display name");
    }

    let mut emails: Vec<Email> = Vec::new();
    for (index, email) in violations.within(&at("emails"), &input.emails, MAX_EMAILS).iter().enumerate() {
        let path = format!("{}[{index}]", at("emails"));
        match email_address(&email.address) {
            Ok(address) if emails.iter().any(|seen| seen.key() == address.to_lowercase()) => {
                violations.add(format!("{path}.address"), "is listed twice");
            }
            Ok(address) => emails.push(Email {
                address,
                kind: enum_name(violations, &format!("{path}.type"), email.r#type, pb::EmailType::try_from),
                primary: email.primary,
                verified: email.verified,
            }),
            Err(reason) => violations.add(format!("{path}.address"), reason),
        }
    }
    one_primary(violations, &at("emails"), emails.iter_mut().map(|email| &mut email.primary));

    let mut phones: Vec<Phone> = Vec::new();
    for (index, phone) in violations.within(&at("phones"), &input.phones, MAX_PHONES).iter().enumerate() {
        let path = format!("{}[{index}]", at("phones"));
        match phone_number(&phone.number, region) {
            Ok(number) if phones.iter().any(|seen| seen.number == number) => {
                violations.add(format!("{path}.number"), "is listed twice");
            }
            Ok(number) => phones.push(Phone {
                number,
                kind: enum_name(violations, &format!("{path}.type"), phone.r#type, pb::PhoneType::try_from),
                primary: phone.primary,
            }),
            Err(reason) => violations.add(format!("{path}.number"), reason),
        }
    }
    one_primary(violations, &at("phones"), phones.iter_mut().map(|phone| &mut phone.primary));

    let birth_date = input.birth_date.as_ref().and_then(|birth| date(violations, &at("birth_date"), birth));
    if let Some(birth) = birth_date
        && (birth > Utc::now().date_naive() || birth < NaiveDate::from_ymd_opt(1880, 1, 1).unwrap_or(birth))
    {
        violations.add(at("birth_date"), "must be between 1880-01-01 and today");
    }

    let lifecycle = pb::LifecycleStage::try_from(input.lifecycle_stage).unwrap_or_else(|_| {
        violations.add(at("lifecycle_stage"), format!("{} is not a lifecycle stage", input.lifecycle_stage));
        pb::LifecycleStage::Unspecified
    });
    let lifecycle = if lifecycle == pb::LifecycleStage::Unspecified { pb::LifecycleStage::Prospect } else { lifecycle };

    let mut consents: Vec<Consent> = Vec::new();
    for (index, consent) in violations.within(&at("consents"), &input.consents, MAX_CONSENTS).iter().enumerate() {
        let path = format!("{}[{index}]", at("consents"));
        let channel = match pb::ConsentChannel::try_from(consent.channel) {
            Ok(pb::ConsentChannel::Unspecified) | Err(_) => {
                violations.add(format!("{path}.channel"), "must be email, phone, SMS or post");
                continue;
            }
            Ok(channel) => channel.as_str_name().to_string(),
        };
        if consents.iter().any(|seen| seen.channel == channel) {
            violations.add(format!("{path}.channel"), "is listed twice");
        }
        let status = match pb::ConsentStatus::try_from(consent.status) {
            Ok(pb::ConsentStatus::Unspecified) | Err(_) => {
                violations.add(format!("{path}.status"), "must be opted in or opted out");
                continue;
            }
            Ok(status) => status.as_str_name().to_string(),
        };
        let update_time = match &consent.update_time {
            Some(time) => crm_platform::timestamp::from_proto(time).unwrap_or_else(|| {
                violations.add(format!("{path}.update_time"), "is not a valid timestamp");
                Utc::now()
            }),
            None => Utc::now(),
        };
        let source = text(violations, &format!("{path}.source"), &consent.source, MAX_ADDRESS_TEXT);
        consents.push(Consent { channel, status, update_time, source });
    }

    if !(0..=MAX_CONTACTS_PER_WEEK).contains(&input.max_contacts_per_week) {
        violations.add(at("max_contacts_per_week"), format!("must be 0 (no preference) to {MAX_CONTACTS_PER_WEEK}"));
    }
    if display_name.is_empty() {
        display_name = format!("{given_name} {family_name}").trim().to_string();
    }
    ContactData {
        given_name,
        family_name,
        display_name,
        emails,
        phones,
        addresses: addresses(violations, &at("addresses"), &input.addresses),
        birth_date,
        lifecycle_stage: lifecycle.as_str_name().to_string(),
        owner: text(violations, &at("owner"), &input.owner, MAX_NAME),
        tags: tags(violations, &at("tags"), &input.tags),
        attributes: attributes(violations, &at("attributes"), &input.attributes),
        consents,
        max_contacts_per_week: input.max_contacts_per_week.clamp(0, MAX_CONTACTS_PER_WEEK),
        external_ids: external_ids(violations, &at("external_ids"), &input.external_ids),
    }
}

/// The protobuf name of an enum value (UNSPECIFIED allowed), or a violation.
fn enum_name<E: Default + Copy + EnumName>(
    violations: &mut Violations,
    field: &str,
    value: i32,
    parse: impl Fn(i32) -> Result<E, prost::UnknownEnumValue>,
) -> String {
    match parse(value) {
        Ok(known) => known.name().to_string(),
        Err(_) => {
            violations.add(field, format!("{value} is not a known value"));
            E::default().name().to_string()
        }
    }
}

/// The protobuf enums whose names `enum_name` stores.
pub trait EnumName {
    fn name(self) -> &'static str;
}

impl EnumName for pb::EmailType {
    fn name(self) -> &'static str {
        self.as_str_name()
    }
}

impl EnumName for pb::PhoneType {
    fn name(self) -> &'static str {
        self.as_str_name()
    }
}

/// At most one entry marked primary; when none is, the first becomes primary.
fn one_primary<'a>(violations: &mut Violations, field: &str, flags: impl Iterator<Item = &'a mut bool>) {
    let mut flags: Vec<&mut bool> = flags.collect();
    match flags.iter().filter(|flag| ***flag).count() {
        0 => {
            if let Some(first) = flags.first_mut() {
                **first = true;
            }
        }
        1 => {}
        many => violations.add(field, format!("exactly one entry may be primary ({many} are)")),
    }
}

/// An organization from its protobuf message.
pub fn organization(violations: &mut Violations, field: &str, input: &pb::Organization) -> OrganizationData {
    let at = |name: &str| format!("{field}.{name}");
    let name = text(violations, &at("name"), &input.name, MAX_NAME);
    if name.is_empty() {
        violations.add(at("name"), "must not be empty");
    }
    let kind = pb::OrganizationKind::try_from(input.kind).unwrap_or_else(|_| {
        violations.add(at("kind"), format!("{} is not an organization kind", input.kind));
        pb::OrganizationKind::Unspecified
    });
    let kind = if kind == pb::OrganizationKind::Unspecified { pb::OrganizationKind::Company } else { kind };
    let domain = input.domain.trim().to_lowercase();
    if !domain.is_empty()
        && (domain.len() > 253
            || !domain.contains('.')
            || !domain.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'))
    {
        violations.add(at("domain"), format!("{} is not a domain name such as example.com", quote(&input.domain)));
    }
    OrganizationData {
        name,
        kind: kind.as_str_name().to_string(),
        domain,
        addresses: addresses(violations, &at("addresses"), &input.addresses),
        external_ids: external_ids(violations, &at("external_ids"), &input.external_ids),
        tags: tags(violations, &at("tags"), &input.tags),
        attributes: attributes(violations, &at("attributes"), &input.attributes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_keep_the_local_part_and_lower_case_the_domain() {
        assert_eq!(email_address("  Ann.Lee@Example.COM ").unwrap(), "Ann.Lee@example.com");
        assert!(email_address("ann@").is_err());
        assert!(email_address("ann.example.com").is_err());
        assert!(email_address("ann@localhost").is_err());
    }

    #[test]
    fn phones_become_e164_in_the_default_region() {
        let gb = Region::parse("GB").unwrap();
        assert_eq!(phone_number("020 7946 0018", gb).unwrap(), "+442079460018");
        assert_eq!(phone_number("+1 (202) 555-0143", gb).unwrap(), "+12025550143");
        assert!(phone_number("12", gb).is_err());
        assert!(phone_number("not a phone", gb).is_err());
        assert!(Region::parse("XX").is_err());
    }
}
