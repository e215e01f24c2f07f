//! A row of a file to a contact of the API, and a contact to a row: the
//! one place that knows how a cell spells a list, a date, a consent.
//!
//! Cells: a list (`emails`, `phones`, `tags`, `external_ids`) is items
//! separated by `;` or a JSON array; an email or phone item may end with
//! its type in brackets (`ann@example.com (work)`, `+44 20 7946 0000
//! (mobile)`); a street keeps one line per line of the cell; a birth date
//! is `YYYY-MM-DD`, `YYYYMMDD`, `D.M.YYYY`, or `D/M/YYYY` / `M/D/YYYY`
//! (which one `--date-order` says, unless the day is over 12); `attributes`,
//! `consents` and `other_addresses` are JSON as `crm export` writes them.
//! What the API validates (an email's form, a phone number, a country
//! code) it reports itself, field by field.

use crm_proto::{
    common::v1::{Date, ExternalId, PostalAddress, PostalAddressType},
    contacts::v1::{
        Consent, ConsentChannel, ConsentStatus, Contact, Email, EmailType, LifecycleStage, Phone, PhoneType,
    },
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{
    columns::{Channel, Field, Mapping, Target},
    input::Record,
};

/// How a slashed date is read when both parts could be the day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DateOrder {
    DayFirst,
    MonthFirst,
}

/// What every row of an import shares.
#[derive(Clone, Debug)]
pub struct RowOptions {
    /// The source system: the rows' external ids are under this name.
    pub source: String,
    /// The country of an address that names none.
    pub default_country: Option<String>,
    pub date_order: Option<DateOrder>,
}

/// A cell that could not be read: the column, the field and why.
#[derive(Clone, Debug, PartialEq)]
pub struct CellError {
    pub column: String,
    pub field: String,
    pub reason: String,
}

/// The contact a row describes, or every cell that could not be read.
pub fn to_contact(mapping: &Mapping, record: &Record, options: &RowOptions) -> Result<Contact, Vec<CellError>> {
    let mut contact = Contact::default();
    let mut addresses: Vec<(usize, PostalAddress)> = Vec::new();
    let mut indexed_emails: Vec<(usize, Email)> = Vec::new();
    let mut indexed_phones: Vec<(usize, Phone)> = Vec::new();
    let mut lines: Vec<(usize, usize, String)> = Vec::new();
    let mut errors = Vec::new();
    for (index, text) in &record.values {
        let Some(column) = mapping.columns.get(*index) else { continue };
        let Some(target) = &column.target else { continue };
        let mut fail = |reason: String| {
            errors.push(CellError { column: column.header.clone(), field: target.to_string(), reason })
        };
        match target {
            Target::GivenName => contact.given_name = text.clone(),
            Target::FamilyName => contact.family_name = text.clone(),
            Target::DisplayName => contact.display_name = text.clone(),
            Target::Owner => contact.owner = text.clone(),
            Target::Emails => match list(text) {
                Ok(items) => contact.emails.extend(items.iter().map(|item| email(item))),
                Err(reason) => fail(reason),
            },
            Target::Email(at) => indexed_emails.push((*at, email(text))),
            Target::Phones => match list(text) {
                Ok(items) => contact.phones.extend(items.iter().map(|item| phone(item))),
                Err(reason) => fail(reason),
            },
            Target::Phone(at) => indexed_phones.push((*at, phone(text))),
            Target::Street(at) => {
                address(&mut addresses, *at).lines =
                    text.lines().map(str::trim).filter(|line| !line.is_empty()).map(String::from).collect();
            }
            Target::Line(at, line) => lines.push((*at, *line, text.clone())),
            Target::Locality(at) => address(&mut addresses, *at).locality = text.clone(),
            Target::Region(at) => address(&mut addresses, *at).region = text.clone(),
            Target::PostalCode(at) => address(&mut addresses, *at).postal_code = text.clone(),
            Target::Country(at) => address(&mut addresses, *at).country_code = text.clone(),
            Target::AddressType(at) => match address_type(text) {
                Some(kind) => address(&mut addresses, *at).r#type = kind as i32,
                None => fail(format!("{text:?} is not an address type: physical or mailing")),
            },
            Target::OtherAddresses => match other_addresses(text) {
                Ok(others) => {
                    for other in others {
                        let at = 1 + addresses.iter().map(|(index, _)| *index).max().unwrap_or(0).max(9);
                        addresses.push((at, other));
                    }
                }
                Err(reason) => fail(reason),
            },
            Target::BirthDate => match date(text, options.date_order) {
                Ok(date) => contact.birth_date = Some(date),
                Err(reason) => fail(reason),
            },
            Target::LifecycleStage => match stage(text) {
                Some(stage) => contact.lifecycle_stage = stage as i32,
                None => fail(format!("{text:?} is not a lifecycle stage: prospect, lead, customer or former customer")),
            },
            Target::Tags => match list(text) {
                Ok(items) => contact.tags.extend(items),
                Err(reason) => fail(reason),
            },
            Target::Attributes => match serde_json::from_str::<serde_json::Map<String, Value>>(text) {
                Ok(object) => {
                    for (key, value) in object {
                        let value = match value {
                            Value::String(text) => text,
                            other => other.to_string(),
                        };
                        contact.attributes.insert(key, value);
                    }
                }
                Err(error) => fail(format!("not a JSON object of attributes: {error}")),
            },
            Target::Attribute(key) => {
                contact.attributes.insert(key.clone(), text.clone());
            }
            Target::ExternalId => {
                contact.external_ids.push(ExternalId { source: options.source.clone(), id: text.clone() })
            }
            Target::ExternalIds => match list(text) {
                Ok(items) => {
                    for item in items {
                        match item.split_once(':') {
                            Some((source, id)) if !source.trim().is_empty() && !id.trim().is_empty() => contact
                                .external_ids
                                .push(ExternalId { source: source.trim().into(), id: id.trim().into() }),
                            _ => fail(format!("{item:?} is not source:id")),
                        }
                    }
                }
                Err(reason) => fail(reason),
            },
            Target::Consents => match consents(text) {
                Ok(consents) => contact.consents.extend(consents),
                Err(reason) => fail(reason),
            },
            Target::Consent(channel) => match consent_status(text) {
                Some(status) => contact.consents.push(Consent {
                    channel: consent_channel(*channel) as i32,
                    status: status as i32,
                    ..Default::default()
                }),
                None => fail(format!("{text:?} is not a consent: yes or no (opted in, opted out)")),
            },
            Target::MaxContactsPerWeek => match text.parse::<i32>() {
                Ok(cap) => contact.max_contacts_per_week = cap,
                Err(_) => fail(format!("{text:?} is not a whole number")),
            },
        }
    }
    indexed_emails.sort_by_key(|(at, _)| *at);
    contact.emails.extend(indexed_emails.into_iter().map(|(_, email)| email));
    indexed_phones.sort_by_key(|(at, _)| *at);
    contact.phones.extend(indexed_phones.into_iter().map(|(_, phone)| phone));
    lines.sort_by_key(|(at, line, _)| (*at, *line));
    for (at, _, line) in lines {
        address(&mut addresses, at)
            .lines
            .extend(line.lines().map(str::trim).filter(|line| !line.is_empty()).map(String::from));
    }
    addresses.sort_by_key(|(at, _)| *at);
    for (_, mut address) in addresses {
        if address.country_code.is_empty()
            && let Some(country) = &options.default_country
        {
            address.country_code = country.clone();
        }
        contact.addresses.push(address);
    }
    if contact.external_ids.is_empty() {
        contact.external_ids.push(ExternalId { source: options.source.clone(), id: content_id(mapping, record) });
    }
    if errors.is_empty() { Ok(contact) } else { Err(errors) }
}

/// The address of index `at` among those a row fills, made when new.
fn address(addresses: &mut Vec<(usize, PostalAddress)>, at: usize) -> &mut PostalAddress {
    let position = match addresses.iter().position(|(index, _)| *index == at) {
        Some(position) => position,
        None => {
            addresses.push((at, PostalAddress::default()));
            addresses.len() - 1
        }
    };
    &mut addresses[position].1
}

/// The id of a row that names none: a digest of its columns and values, so
/// that importing the same row again finds the contact it made.
pub fn content_id<T: Field>(mapping: &Mapping<T>, record: &Record) -> String {
    let mut digest = Sha256::new();
    for (index, text) in &record.values {
        let header = mapping.columns.get(*index).map_or("", |column| column.header.as_str());
        digest.update(header.as_bytes());
        digest.update([0x1f]);
        digest.update(text.as_bytes());
        digest.update([0x1e]);
    }
    format!("row-{}", &hex::encode(digest.finalize())[..20])
}

/// The items of a list cell.
pub(crate) fn list(text: &str) -> Result<Vec<String>, String> {
    if text.starts_with('[') {
        let items: Vec<Value> = serde_json::from_str(text).map_err(|error| format!("not a JSON array: {error}"))?;
        return Ok(items
            .into_iter()
            .map(|item| match item {
                Value::String(text) => text,
                other => other.to_string(),
            })
            .filter(|item| !item.trim().is_empty())
            .collect());
    }
    Ok(text.split([';', '\n']).map(str::trim).filter(|item| !item.is_empty()).map(String::from).collect())
}

/// An item and the type in brackets at its end, if any.
fn typed(item: &str) -> (&str, Option<&str>) {
    match item.strip_suffix(')').and_then(|rest| rest.rsplit_once(" (")) {
        Some((value, kind)) => (value.trim(), Some(kind.trim())),
        None => (item.trim(), None),
    }
}

fn email(item: &str) -> Email {
    let (address, kind) = typed(item);
    let kind = match kind.map(str::to_lowercase).as_deref() {
        Some("personal" | "home" | "private") => EmailType::Personal,
        Some("work" | "business") => EmailType::Work,
        Some("other") => EmailType::Other,
        _ => EmailType::Unspecified,
    };
    Email { address: address.to_string(), r#type: kind as i32, ..Default::default() }
}

fn phone(item: &str) -> Phone {
    let (number, kind) = typed(item);
    let kind = match kind.map(str::to_lowercase).as_deref() {
        Some("mobile" | "cell") => PhoneType::Mobile,
        Some("home") => PhoneType::Home,
        Some("work" | "business") => PhoneType::Work,
        Some("other") => PhoneType::Other,
        _ => PhoneType::Unspecified,
    };
    Phone { number: number.to_string(), r#type: kind as i32, ..Default::default() }
}

fn address_type(text: &str) -> Option<PostalAddressType> {
    match text.trim().to_lowercase().as_str() {
        "physical" | "home" | "residential" => Some(PostalAddressType::Physical),
        "mailing" | "postal" | "billing" => Some(PostalAddressType::Mailing),
        "" => Some(PostalAddressType::Unspecified),
        _ => None,
    }
}

fn stage(text: &str) -> Option<LifecycleStage> {
    let normal: String = text.chars().filter(char::is_ascii_alphanumeric).collect::<String>().to_lowercase();
    Some(match normal.trim_start_matches("lifecyclestage") {
        "prospect" => LifecycleStage::Prospect,
        "lead" => LifecycleStage::Lead,
        "customer" | "client" => LifecycleStage::Customer,
        "formercustomer" | "former" | "churned" | "excustomer" => LifecycleStage::FormerCustomer,
        _ => return None,
    })
}

fn consent_channel(channel: Channel) -> ConsentChannel {
    match channel {
        Channel::Email => ConsentChannel::Email,
        Channel::Phone => ConsentChannel::Phone,
        Channel::Sms => ConsentChannel::Sms,
        Channel::Post => ConsentChannel::Post,
    }
}

fn consent_status(text: &str) -> Option<ConsentStatus> {
    let normal: String = text.chars().filter(char::is_ascii_alphanumeric).collect::<String>().to_lowercase();
    match normal.as_str() {
        "yes" | "y" | "true" | "1" | "in" | "optin" | "optedin" | "subscribed" | "granted" => {
            Some(ConsentStatus::OptedIn)
        }
        "no" | "n" | "false" | "0" | "out" | "optout" | "optedout" | "unsubscribed" | "refused" => {
            Some(ConsentStatus::OptedOut)
        }
        _ => None,
    }
}

/// `consents` as `crm export` writes it: `[{"channel": "email", "status":
/// "opted_in", "time": "…", "source": "…"}]`.
fn consents(text: &str) -> Result<Vec<Consent>, String> {
    let items: Vec<Value> =
        serde_json::from_str(text).map_err(|error| format!("not a JSON array of consents: {error}"))?;
    items
        .iter()
        .map(|item| {
            let channel = item["channel"]
                .as_str()
                .and_then(Channel::parse)
                .ok_or_else(|| format!("{} has no channel of email, phone, sms or post", item))?;
            let status = item["status"]
                .as_str()
                .and_then(consent_status)
                .ok_or_else(|| format!("{item} has no status of opted_in or opted_out"))?;
            let update_time = match item["time"].as_str() {
                Some(time) => Some(timestamp(time)?),
                None => None,
            };
            Ok(Consent {
                channel: consent_channel(channel) as i32,
                status: status as i32,
                update_time,
                source: item["source"].as_str().unwrap_or_default().to_string(),
            })
        })
        .collect()
}

fn timestamp(text: &str) -> Result<prost_types::Timestamp, String> {
    let at = chrono::DateTime::parse_from_rfc3339(text).map_err(|_| format!("{text:?} is not an RFC 3339 time"))?;
    Ok(prost_types::Timestamp { seconds: at.timestamp(), nanos: at.timestamp_subsec_nanos() as i32 })
}

fn other_addresses(text: &str) -> Result<Vec<PostalAddress>, String> {
    let items: Vec<Value> =
        serde_json::from_str(text).map_err(|error| format!("not a JSON array of addresses: {error}"))?;
    items
        .iter()
        .map(|item| {
            let field = |name: &str| item[name].as_str().unwrap_or_default().to_string();
            let kind = address_type(&field("type"))
                .ok_or_else(|| format!("{item} has a type other than physical or mailing"))?;
            let lines = item["lines"]
                .as_array()
                .map_or_else(Vec::new, |lines| lines.iter().filter_map(Value::as_str).map(String::from).collect());
            Ok(PostalAddress {
                r#type: kind as i32,
                lines,
                locality: field("locality"),
                region: field("region"),
                postal_code: field("postal_code"),
                country_code: field("country_code"),
            })
        })
        .collect()
}

/// A birth date in the spellings legacy systems use.
pub fn date(text: &str, order: Option<DateOrder>) -> Result<Date, String> {
    let text = text.trim();
    let numbers: Vec<&str> = text.split(['-', '/', '.']).collect();
    let parse = |part: &str| part.trim().parse::<i32>().ok();
    let (year, month, day) = match (numbers.as_slice(), text) {
        ([year, month, day], _) if year.len() == 4 && text.contains('-') => (parse(year), parse(month), parse(day)),
        ([day, month, year], _) if year.len() == 4 && text.contains('.') => (parse(year), parse(month), parse(day)),
        ([first, second, year], _) if year.len() == 4 && text.contains('/') => {
            let (first, second) = (parse(first), parse(second));
            match (first, second, order) {
                (Some(first), Some(second), _) if first > 12 => (parse(year), Some(second), Some(first)),
                (Some(first), Some(second), _) if second > 12 => (parse(year), Some(first), Some(second)),
                (first, second, Some(DateOrder::DayFirst)) => (parse(year), second, first),
                (first, second, Some(DateOrder::MonthFirst)) => (parse(year), first, second),
                (_, _, None) => {
                    return Err(format!(
                        "{text:?} could be day/month or month/day: say which with --date-order dmy or mdy"
                    ));
                }
            }
        }
        ([compact], _) if compact.len() == 8 && compact.bytes().all(|byte| byte.is_ascii_digit()) => {
            (parse(&compact[..4]), parse(&compact[4..6]), parse(&compact[6..]))
        }
        _ => (None, None, None),
    };
    let (Some(year), Some(month), Some(day)) = (year, month, day) else {
        return Err(format!("{text:?} is not a date: write YYYY-MM-DD"));
    };
    if chrono::NaiveDate::from_ymd_opt(year, month as u32, day as u32).is_none() {
        return Err(format!("{text:?} is not a day of the calendar"));
    }
    Ok(Date { year, month, day })
}

/// The columns `crm export contacts` writes, in order; each is a target
/// name [`Mapping`] reads back, but `crm_id` (the contact's id in the
/// install it came from) and `update_time`, which an import leaves out
/// unless mapped (`--map crm_id=attributes.old_id`).
pub const EXPORT_COLUMNS: [&str; 22] = [
    "crm_id",
    "external_ids",
    "given_name",
    "family_name",
    "display_name",
    "emails",
    "phones",
    "street",
    "locality",
    "region",
    "postal_code",
    "country_code",
    "address_type",
    "other_addresses",
    "birth_date",
    "lifecycle_stage",
    "owner",
    "tags",
    "attributes",
    "consents",
    "max_contacts_per_week",
    "update_time",
];

/// A cell of an exported row.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Text(String),
    List(Vec<String>),
    Json(Value),
}

impl Cell {
    /// As a CSV cell: a list joined by `; `, or a JSON array when an item
    /// holds a `;` itself.
    pub fn to_text(&self) -> String {
        match self {
            Cell::Text(text) => text.clone(),
            Cell::List(items) if items.iter().any(|item| item.contains(';') || item.contains('\n')) => {
                Value::from(items.clone()).to_string()
            }
            Cell::List(items) => items.join("; "),
            Cell::Json(value) => value.to_string(),
        }
    }

    /// As a JSON Lines value.
    pub fn to_json(&self) -> Value {
        match self {
            Cell::Text(text) => Value::String(text.clone()),
            Cell::List(items) => Value::from(items.clone()),
            Cell::Json(value) => value.clone(),
        }
    }
}

fn with_type(value: &str, kind: &str) -> String {
    if kind.is_empty() { value.to_string() } else { format!("{value} ({kind})") }
}

fn time_text(at: &prost_types::Timestamp) -> String {
    chrono::DateTime::from_timestamp(at.seconds, at.nanos.max(0) as u32)
        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

fn address_json(address: &PostalAddress) -> Value {
    json!({
        "type": address_type_name(address.r#type),
        "lines": address.lines,
        "locality": address.locality,
        "region": address.region,
        "postal_code": address.postal_code,
        "country_code": address.country_code,
    })
}

fn address_type_name(kind: i32) -> &'static str {
    match PostalAddressType::try_from(kind) {
        Ok(PostalAddressType::Mailing) => "mailing",
        Ok(PostalAddressType::Physical) => "physical",
        _ => "",
    }
}

/// A contact as the cells of [`EXPORT_COLUMNS`], empty cells as `None`.
pub fn to_row(contact: &Contact) -> Vec<Option<Cell>> {
    let text = |value: &str| (!value.is_empty()).then(|| Cell::Text(value.to_string()));
    let list = |items: Vec<String>| (!items.is_empty()).then_some(Cell::List(items));
    let first = contact.addresses.first();
    let address = |field: fn(&PostalAddress) -> &str| first.and_then(|address| text(field(address)));
    let emails = contact
        .emails
        .iter()
        .map(|email| {
            let kind = match email.r#type() {
                EmailType::Personal => "personal",
                EmailType::Work => "work",
                EmailType::Other => "other",
                EmailType::Unspecified => "",
            };
            with_type(&email.address, kind)
        })
        .collect();
    let phones = contact
        .phones
        .iter()
        .map(|phone| {
            let kind = match phone.r#type() {
                PhoneType::Mobile => "mobile",
                PhoneType::Home => "home",
                PhoneType::Work => "work",
                PhoneType::Other => "other",
                PhoneType::Unspecified => "",
            };
            with_type(&phone.number, kind)
        })
        .collect();
    let consents: Vec<Value> = contact
        .consents
        .iter()
        .map(|consent| {
            let channel = match consent.channel() {
                ConsentChannel::Email => "email",
                ConsentChannel::Phone => "phone",
                ConsentChannel::Sms => "sms",
                ConsentChannel::Post => "post",
                ConsentChannel::Unspecified => "",
            };
            let status = match consent.status() {
                ConsentStatus::OptedIn => "opted_in",
                ConsentStatus::OptedOut => "opted_out",
                ConsentStatus::Unspecified => "",
            };
            let mut item = json!({"channel": channel, "status": status, "source": consent.source});
            if let Some(at) = &consent.update_time {
                item["time"] = Value::String(time_text(at));
            }
            item
        })
        .collect();
    let stage = match contact.lifecycle_stage() {
        LifecycleStage::Prospect => "prospect",
        LifecycleStage::Lead => "lead",
        LifecycleStage::Customer => "customer",
        LifecycleStage::FormerCustomer => "former customer",
        LifecycleStage::Unspecified => "",
    };
    let mut attributes: Vec<(&String, &String)> = contact.attributes.iter().collect();
    attributes.sort();
    vec![
        text(&contact.id),
        list(contact.external_ids.iter().map(|external| format!("{}:{}", external.source, external.id)).collect()),
        text(&contact.given_name),
        text(&contact.family_name),
        text(&contact.display_name),
        list(emails),
        list(phones),
        first.and_then(|address| text(&address.lines.join("\n"))),
        address(|address| &address.locality),
        address(|address| &address.region),
        address(|address| &address.postal_code),
        address(|address| &address.country_code),
        first.and_then(|address| text(address_type_name(address.r#type))),
        (contact.addresses.len() > 1)
            .then(|| Cell::Json(Value::from(contact.addresses[1..].iter().map(address_json).collect::<Vec<_>>()))),
        contact
            .birth_date
            .as_ref()
            .map(|date| Cell::Text(format!("{:04}-{:02}-{:02}", date.year, date.month, date.day))),
        text(stage),
        text(&contact.owner),
        list(contact.tags.clone()),
        (!attributes.is_empty()).then(|| {
            Cell::Json(Value::Object(
                attributes.into_iter().map(|(key, value)| (key.clone(), Value::String(value.clone()))).collect(),
            ))
        }),
        (!consents.is_empty()).then_some(Cell::Json(Value::from(consents))),
        (contact.max_contacts_per_week != 0).then(|| Cell::Text(contact.max_contacts_per_week.to_string())),
        contact.update_time.as_ref().map(|at| Cell::Text(time_text(at))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::columns::Overrides;
    use crate::input::row as record;

    fn mapping(headers: &[&str]) -> Mapping {
        Mapping::new(&headers.iter().map(|header| header.to_string()).collect::<Vec<_>>(), &Overrides::default())
    }

    fn options() -> RowOptions {
        RowOptions { source: "legacy".into(), default_country: Some("GB".into()), date_order: None }
    }

    #[test]
    fn a_legacy_row_becomes_a_contact() {
        let mapping = mapping(&[
            "ID",
            "First Name",
            "Last Name",
            "Email",
            "Mobile",
            "Address",
            "Town",
            "DOB",
            "Stage",
            "Email opt-in",
        ]);
        let contact = to_contact(
            &mapping,
            &record(&[
                "C-7",
                "José",
                "Müller",
                "jose@example.com",
                "07700 900123 (mobile)",
                "1 High St\nFlat 2",
                "Bath",
                "31.12.1980",
                "Customer",
                "yes",
            ]),
            &options(),
        )
        .unwrap();
        assert_eq!(contact.external_ids, [ExternalId { source: "legacy".into(), id: "C-7".into() }]);
        assert_eq!((contact.given_name.as_str(), contact.family_name.as_str()), ("José", "Müller"));
        assert_eq!(contact.emails[0].address, "jose@example.com");
        assert_eq!(
            (contact.phones[0].number.as_str(), contact.phones[0].r#type()),
            ("07700 900123", PhoneType::Mobile)
        );
        assert_eq!(contact.addresses[0].lines, ["1 High St", "Flat 2"]);
        assert_eq!(
            (contact.addresses[0].locality.as_str(), contact.addresses[0].country_code.as_str()),
            ("Bath", "GB")
        );
        assert_eq!(contact.birth_date, Some(Date { year: 1980, month: 12, day: 31 }));
        assert_eq!(contact.lifecycle_stage(), LifecycleStage::Customer);
        assert_eq!(contact.consents[0].status(), ConsentStatus::OptedIn);
    }

    #[test]
    fn unreadable_cells_are_each_reported_with_their_column() {
        let mapping = mapping(&["name", "dob", "stage", "max contacts per week"]);
        let errors = to_contact(&mapping, &record(&["Ann", "03/04/1980", "vip", "often"]), &options()).unwrap_err();
        let fields: Vec<(&str, &str)> =
            errors.iter().map(|error| (error.column.as_str(), error.field.as_str())).collect();
        assert_eq!(
            fields,
            [("dob", "birth_date"), ("stage", "lifecycle_stage"), ("max contacts per week", "max_contacts_per_week")]
        );
        assert!(errors[0].reason.contains("--date-order"));
    }

    #[test]
    fn a_row_without_an_id_gets_one_from_its_content() {
        let mapping = mapping(&["name", "email"]);
        let first = to_contact(&mapping, &record(&["Ann", "ann@example.com"]), &options()).unwrap();
        let again = to_contact(&mapping, &record(&["Ann", "ann@example.com"]), &options()).unwrap();
        let other = to_contact(&mapping, &record(&["Ann", "ann@example.org"]), &options()).unwrap();
        assert_eq!(first.external_ids, again.external_ids);
        assert_ne!(first.external_ids, other.external_ids);
        assert!(first.external_ids[0].id.starts_with("row-"));
    }

    #[test]
    fn dates_in_the_spellings_of_legacy_systems() {
        let ymd = |year, month, day| Ok(Date { year, month, day });
        assert_eq!(date("1980-04-03", None), ymd(1980, 4, 3));
        assert_eq!(date("19800403", None), ymd(1980, 4, 3));
        assert_eq!(date("3.4.1980", None), ymd(1980, 4, 3));
        assert_eq!(date("25/12/1980", None), ymd(1980, 12, 25));
        assert_eq!(date("12/25/1980", None), ymd(1980, 12, 25));
        assert_eq!(date("03/04/1980", Some(DateOrder::DayFirst)), ymd(1980, 4, 3));
        assert_eq!(date("03/04/1980", Some(DateOrder::MonthFirst)), ymd(1980, 3, 4));
        assert!(date("1980-02-30", None).unwrap_err().contains("not a day"));
        assert!(date("yesterday", None).unwrap_err().contains("YYYY-MM-DD"));
    }

    #[test]
    fn an_exported_row_reads_back_as_the_same_contact() {
        let contact = Contact {
            id: "0190-id".into(),
            given_name: "Ann".into(),
            family_name: "Lee".into(),
            display_name: "Ann Lee".into(),
            emails: vec![
                Email { address: "ann@example.com".into(), r#type: EmailType::Work as i32, ..Default::default() },
                Email { address: "a.lee@example.org".into(), ..Default::default() },
            ],
            phones: vec![Phone {
                number: "+441632960000".into(),
                r#type: PhoneType::Mobile as i32,
                ..Default::default()
            }],
            addresses: vec![
                PostalAddress {
                    r#type: PostalAddressType::Physical as i32,
                    lines: vec!["1 High St".into(), "Flat 2".into()],
                    locality: "Bath".into(),
                    region: String::new(),
                    postal_code: "BA1 1AA".into(),
                    country_code: "GB".into(),
                },
                PostalAddress {
                    r#type: PostalAddressType::Mailing as i32,
                    lines: vec!["PO Box 9".into()],
                    locality: "York".into(),
                    country_code: "GB".into(),
                    ..Default::default()
                },
            ],
            birth_date: Some(Date { year: 1980, month: 4, day: 3 }),
            lifecycle_stage: LifecycleStage::FormerCustomer as i32,
            owner: "kim".into(),
            tags: vec!["vip".into(), "a;b".into()],
            attributes: [("tier".to_string(), "gold".to_string())].into(),
            consents: vec![Consent {
                channel: ConsentChannel::Sms as i32,
                status: ConsentStatus::OptedOut as i32,
                update_time: Some(prost_types::Timestamp { seconds: 1_700_000_000, nanos: 123_000 }),
                source: "web form".into(),
            }],
            max_contacts_per_week: 2,
            external_ids: vec![ExternalId { source: "billing".into(), id: "B:7".into() }],
            ..Default::default()
        };
        let cells = to_row(&contact);
        let texts: Vec<&str> = EXPORT_COLUMNS.to_vec();
        let mapping = mapping(&texts);
        let csv_record = Record {
            line: 2,
            values: cells
                .iter()
                .enumerate()
                .filter_map(|(index, cell)| Some((index, cell.as_ref()?.to_text())))
                .collect(),
        };
        let mut back = to_contact(&mapping, &csv_record, &options()).unwrap();
        assert_eq!(back.external_ids.remove(0), ExternalId { source: "billing".into(), id: "B:7".into() });
        let mut expected = contact.clone();
        expected.id.clear();
        expected.external_ids.clear();
        assert_eq!(back, expected);
        assert_eq!(mapping.columns[0].target, None, "crm_id is the other install's id, not this one's");
    }
}
