//! The events rules can read: every message of the contacts, interactions
//! and segmentation contracts documented as `// Event: ...`, found in the
//! contracts' descriptors (so a new event is readable with nothing to
//! change here), and their payloads as CEL values.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, OnceLock},
};

use cel::objects::{Key, Map, Value as CelValue};
use crm_platform::scope::Scope;
use crm_proto::events::v1::Event;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, ReflectMessage, Value,
};

/// A role whose feed rules follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Feed {
    Contacts,
    Interactions,
    Segmentation,
}

impl Feed {
    pub const ALL: [Feed; 3] = [Feed::Contacts, Feed::Interactions, Feed::Segmentation];

    /// The contracts' package.
    pub fn package(self) -> &'static str {
        match self {
            Feed::Contacts => "crm.contacts.v1",
            Feed::Interactions => "crm.interactions.v1",
            Feed::Segmentation => "crm.segmentation.v1",
        }
    }

    /// The service whose `Subscribe` serves the feed.
    pub fn service(self) -> &'static str {
        match self {
            Feed::Contacts => "crm.contacts.v1.ContactsService",
            Feed::Interactions => "crm.interactions.v1.InteractionsService",
            Feed::Segmentation => "crm.segmentation.v1.SegmentationService",
        }
    }

    /// The scope that reads what the feed's events carry.
    pub fn read_scope(self) -> Scope {
        match self {
            Feed::Contacts => Scope::ContactsRead,
            Feed::Interactions => Scope::InteractionsRead,
            Feed::Segmentation => Scope::SegmentsRead,
        }
    }
}

/// One event type.
#[derive(Clone, Debug)]
pub struct EventType {
    /// e.g. `crm.interactions.v1.InvoiceOverdue`.
    pub name: String,
    /// e.g. `InvoiceOverdue`.
    pub short: String,
    pub feed: Feed,
    /// Its documentation, after `Event:`.
    pub description: String,
    /// Every path under `event`, e.g. `invoice.amount.minor_units`.
    pub fields: Vec<String>,
    message: MessageDescriptor,
}

/// Every event type, by full name.
pub struct Catalogue {
    types: BTreeMap<String, EventType>,
}

/// The catalogue, read once from the compiled contracts.
pub fn catalogue() -> &'static Catalogue {
    static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();
    CATALOGUE.get_or_init(|| {
        let pool = DescriptorPool::decode(crm_proto::FILE_DESCRIPTOR_SET)
            .unwrap_or_else(|error| unreachable!("the compiled contracts decode: {error}"));
        Catalogue::from_pool(&pool)
    })
}

/// The leading comment of `message`, from its file's source info.
fn comment(message: &MessageDescriptor) -> Option<String> {
    let info = message.parent_file_descriptor_proto().source_code_info.as_ref()?;
    let location = info.location.iter().find(|location| location.path == message.path())?;
    location.leading_comments.clone()
}

impl Catalogue {
    fn from_pool(pool: &DescriptorPool) -> Catalogue {
        let mut types = BTreeMap::new();
        for message in pool.all_messages() {
            let Some(feed) = Feed::ALL.into_iter().find(|feed| feed.package() == message.package_name()) else {
                continue;
            };
            let Some(description) = comment(&message).and_then(|text| {
                text.trim().strip_prefix("Event:").map(|rest| rest.split_whitespace().collect::<Vec<_>>().join(" "))
            }) else {
                continue;
            };
            let mut fields = Vec::new();
            paths(&message, "", 0, &mut fields);
            types.insert(
                message.full_name().to_string(),
                EventType {
                    name: message.full_name().to_string(),
                    short: message.name().to_string(),
                    feed,
                    description,
                    fields,
                    message,
                },
            );
        }
        Catalogue { types }
    }

    pub fn get(&self, name: &str) -> Option<&EventType> {
        self.types.get(name)
    }

    pub fn all(&self) -> impl Iterator<Item = &EventType> {
        self.types.values()
    }

    /// The payload of `event` as a CEL map, and the contact it is about
    /// (a `contact_id` field of the payload or of a message in it, else the
    /// aggregate when that is a contact); `None` for a type not in the catalogue.
    pub fn decode(&self, event: &Event) -> Option<Decoded> {
        self.decode_reading(event, &Fields::whole())
    }

    /// Decodes `event` with only the `wanted` fields of its payload as CEL
    /// values (the rest absent): what its rules read, not the whole message.
    pub fn decode_reading(&self, event: &Event, wanted: &Fields) -> Option<Decoded> {
        let event_type = self.types.get(&event.r#type)?;
        let payload = event.payload.as_ref().map(|any| any.value.as_slice()).unwrap_or_default();
        let message = DynamicMessage::decode(event_type.message.clone(), payload).ok()?;
        let contact_id = contact_of(&message)
            .or_else(|| (event.aggregate_type == "contact").then(|| event.aggregate_id.clone()))
            .unwrap_or_default();
        Some(Decoded { event_type: event_type.clone(), payload: message_value(&message, wanted), contact_id })
    }
}

/// The fields of a payload some rules read, as a tree: a field read whole
/// (or the whole payload) has `whole` set; otherwise only its listed fields
/// are made CEL values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fields {
    whole: bool,
    fields: HashMap<String, Fields>,
}

impl Fields {
    /// Everything.
    pub fn whole() -> Self {
        Fields { whole: true, fields: HashMap::new() }
    }

    /// Nothing yet.
    pub fn nothing() -> Self {
        Fields::default()
    }

    /// Adds the field at `path` (`interaction.kind`), read whole.
    pub fn add(&mut self, path: &str) {
        let mut node = self;
        for field in path.split('.') {
            if node.whole {
                return;
            }
            node = node.fields.entry(field.to_string()).or_default();
        }
        node.whole = true;
        node.fields.clear();
    }

    /// Adds everything `other` wants.
    pub fn merge(&mut self, other: &Fields) {
        if self.whole {
            return;
        }
        if other.whole {
            *self = Fields::whole();
            return;
        }
        for (field, wanted) in &other.fields {
            self.fields.entry(field.clone()).or_default().merge(wanted);
        }
    }
}

/// An event, ready for rules.
#[derive(Clone, Debug)]
pub struct Decoded {
    pub event_type: EventType,
    pub payload: CelValue,
    pub contact_id: String,
}

/// The paths of `message`'s fields, messages walked 4 deep (the contracts have no deeper ones worth a rule).
fn paths(message: &MessageDescriptor, prefix: &str, depth: usize, into: &mut Vec<String>) {
    for field in message.fields() {
        let path = format!("{prefix}{}", field.name());
        into.push(path.clone());
        if let Kind::Message(inner) = field.kind()
            && !field.is_list()
            && !field.is_map()
            && depth < 4
            && !is_well_known(&inner)
        {
            paths(&inner, &format!("{path}."), depth + 1, into);
        }
    }
}

fn is_well_known(message: &MessageDescriptor) -> bool {
    message.package_name() == "google.protobuf"
}

fn contact_of(message: &DynamicMessage) -> Option<String> {
    let direct = message.get_field_by_name("contact_id").and_then(|value| value.as_str().map(str::to_string));
    if let Some(found) = direct.filter(|id| !id.is_empty()) {
        return Some(found);
    }
    message.fields().find_map(|(field, value)| match value {
        Value::Message(inner) if !field.is_list() => inner
            .get_field_by_name("contact_id")
            .and_then(|id| id.as_str().map(str::to_string))
            .filter(|id| !id.is_empty()),
        _ => None,
    })
}

fn text(value: &str) -> CelValue {
    CelValue::String(Arc::new(value.to_string()))
}

/// A message as a CEL map: every `wanted` field by name; a message field only when set.
fn message_value(message: &DynamicMessage, wanted: &Fields) -> CelValue {
    match message.descriptor().full_name() {
        "google.protobuf.Timestamp" => {
            let seconds = message.get_field_by_name("seconds").and_then(|v| v.as_i64()).unwrap_or_default();
            let nanos = message.get_field_by_name("nanos").and_then(|v| v.as_i32()).unwrap_or_default();
            return chrono::DateTime::from_timestamp(seconds, nanos.max(0) as u32)
                .map_or(CelValue::Null, |at| CelValue::Timestamp(at.fixed_offset()));
        }
        "google.protobuf.Duration" => {
            let seconds = message.get_field_by_name("seconds").and_then(|v| v.as_i64()).unwrap_or_default();
            let nanos = message.get_field_by_name("nanos").and_then(|v| v.as_i32()).unwrap_or_default();
            return CelValue::Duration(
                chrono::Duration::seconds(seconds) + chrono::Duration::nanoseconds(i64::from(nanos)),
            );
        }
        _ => {}
    }
    let mut entries: HashMap<Key, CelValue> = HashMap::new();
    for field in message.descriptor().fields() {
        let inner = if wanted.whole {
            wanted
        } else {
            match wanted.fields.get(field.name()) {
                Some(inner) => inner,
                None => continue, // no rule reads it
            }
        };
        let set = message.has_field(&field);
        let is_message = matches!(field.kind(), Kind::Message(_)) && !field.is_list() && !field.is_map();
        if !set && (is_message || field.containing_oneof().is_some()) {
            continue; // absent, so `has(event.x)` tells
        }
        let found = match message.get_field(&field).as_ref() {
            Value::Message(nested) if is_message => message_value(nested, inner),
            other => value(&field, other),
        };
        entries.insert(Key::String(Arc::new(field.name().to_string())), found);
    }
    CelValue::Map(Map { map: Arc::new(entries) })
}

fn value(field: &FieldDescriptor, found: &Value) -> CelValue {
    match found {
        Value::Bool(flag) => CelValue::Bool(*flag),
        Value::I32(number) => CelValue::Int(i64::from(*number)),
        Value::I64(number) => CelValue::Int(*number),
        Value::U32(number) => CelValue::UInt(u64::from(*number)),
        Value::U64(number) => CelValue::UInt(*number),
        Value::F32(number) => CelValue::Float(f64::from(*number)),
        Value::F64(number) => CelValue::Float(*number),
        Value::String(string) => text(string),
        Value::Bytes(bytes) => CelValue::Bytes(Arc::new(bytes.to_vec())),
        Value::EnumNumber(number) => enum_name(field, *number),
        Value::Message(message) => message_value(message, &Fields::whole()),
        Value::List(items) => CelValue::List(Arc::new(items.iter().map(|item| value(field, item)).collect())),
        Value::Map(entries) => {
            let value_field = match field.kind() {
                Kind::Message(entry) => entry.map_entry_value_field(),
                _ => field.clone(),
            };
            let map: HashMap<Key, CelValue> = entries
                .iter()
                .map(|(key, item)| {
                    let key = match key {
                        MapKey::Bool(flag) => Key::Bool(*flag),
                        MapKey::I32(number) => Key::Int(i64::from(*number)),
                        MapKey::I64(number) => Key::Int(*number),
                        MapKey::U32(number) => Key::Uint(u64::from(*number)),
                        MapKey::U64(number) => Key::Uint(*number),
                        MapKey::String(string) => Key::String(Arc::new(string.clone())),
                    };
                    (key, value(&value_field, item))
                })
                .collect();
            CelValue::Map(Map { map: Arc::new(map) })
        }
    }
}

/// `KIND_PAYMENT` of enum `Kind` → `payment`: as the API's users say it.
fn enum_name(field: &FieldDescriptor, number: i32) -> CelValue {
    let Kind::Enum(descriptor) = field.kind() else { return CelValue::Int(i64::from(number)) };
    let Some(found) = descriptor.get_value(number) else { return CelValue::Int(i64::from(number)) };
    let prefix = format!("{}_", screaming_snake(descriptor.name()));
    text(&found.name().strip_prefix(&prefix).unwrap_or(found.name()).to_lowercase())
}

/// `InvoiceStatus` → `INVOICE_STATUS`.
fn screaming_snake(name: &str) -> String {
    let mut out = String::new();
    for (index, letter) in name.chars().enumerate() {
        if letter.is_uppercase() && index > 0 {
            out.push('_');
        }
        out.push(letter.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use crm_proto::interactions::v1 as pb;
    use prost::{Message, Name};

    use super::*;

    #[test]
    fn events_are_found_by_their_documentation() {
        let names: Vec<&str> = catalogue().all().map(|event| event.name.as_str()).collect();
        for expected in [
            "crm.contacts.v1.ContactCreated",
            "crm.interactions.v1.InvoiceOverdue",
            "crm.interactions.v1.RecurringProblemDetected",
            "crm.segmentation.v1.SegmentExited",
        ] {
            assert!(names.contains(&expected), "{expected} in {names:?}");
        }
        assert!(!names.iter().any(|name| name.ends_with("Request") || name.ends_with(".Contact")), "{names:?}");
        let overdue = catalogue().get("crm.interactions.v1.InvoiceOverdue").unwrap();
        assert_eq!(overdue.feed, Feed::Interactions);
        assert!(overdue.description.contains("passed its due date"), "{}", overdue.description);
        assert!(overdue.fields.contains(&"invoice.amount.minor_units".to_string()), "{:?}", overdue.fields);
    }

    #[test]
    fn a_payload_reads_as_cel_values_with_its_contact() {
        let invoice = pb::Interaction {
            contact_id: "c-1".into(),
            kind: pb::Kind::Invoice as i32,
            amount: Some(crm_proto::common::v1::Money { currency_code: "EUR".into(), minor_units: 12_000 }),
            ..Default::default()
        };
        let payload = pb::InvoiceOverdue { invoice: Some(invoice) };
        let event = Event {
            r#type: pb::InvoiceOverdue::full_name(),
            payload: Some(prost_types::Any {
                type_url: pb::InvoiceOverdue::type_url(),
                value: payload.encode_to_vec(),
            }),
            ..Default::default()
        };
        let decoded = catalogue().decode(&event).unwrap();
        assert_eq!(decoded.contact_id, "c-1");
        let CelValue::Map(map) = &decoded.payload else { panic!("{:?}", decoded.payload) };
        let CelValue::Map(invoice) = map.map.get(&Key::String(Arc::new("invoice".into()))).unwrap() else { panic!() };
        assert_eq!(invoice.map.get(&Key::String(Arc::new("kind".into()))), Some(&text("invoice")));
        // Unset messages are absent; unset scalars read their default.
        assert!(!invoice.map.contains_key(&Key::String(Arc::new("occurred_at".into()))));
        assert_eq!(invoice.map.get(&Key::String(Arc::new("duration_ms".into()))), Some(&CelValue::Int(0)));
    }

    #[test]
    fn only_the_fields_rules_read_become_cel_values() {
        let invoice = pb::Interaction {
            contact_id: "c-1".into(),
            kind: pb::Kind::Invoice as i32,
            subject: "March".into(),
            amount: Some(crm_proto::common::v1::Money { currency_code: "EUR".into(), minor_units: 12_000 }),
            ..Default::default()
        };
        let event = Event {
            r#type: pb::InvoiceOverdue::full_name(),
            payload: Some(prost_types::Any {
                type_url: pb::InvoiceOverdue::type_url(),
                value: pb::InvoiceOverdue { invoice: Some(invoice) }.encode_to_vec(),
            }),
            ..Default::default()
        };
        let key = |name: &str| Key::String(Arc::new(name.into()));
        let mut wanted = Fields::nothing();
        wanted.add("invoice.amount");
        wanted.add("invoice.amount.minor_units"); // inside what is read whole already
        let decoded = catalogue().decode_reading(&event, &wanted).unwrap();
        assert_eq!(decoded.contact_id, "c-1", "the contact is found in the message, not the values");
        let CelValue::Map(map) = &decoded.payload else { panic!() };
        let CelValue::Map(invoice) = map.map.get(&key("invoice")).unwrap() else { panic!() };
        assert_eq!(invoice.map.keys().collect::<Vec<_>>(), [&key("amount")]);
        let CelValue::Map(amount) = invoice.map.get(&key("amount")).unwrap() else { panic!() };
        assert_eq!(amount.map.get(&key("currency_code")), Some(&text("EUR")));

        let mut kind = Fields::nothing();
        kind.add("invoice.kind");
        wanted.merge(&kind);
        let decoded = catalogue().decode_reading(&event, &wanted).unwrap();
        let CelValue::Map(map) = &decoded.payload else { panic!() };
        let CelValue::Map(invoice) = map.map.get(&key("invoice")).unwrap() else { panic!() };
        assert_eq!(invoice.map.len(), 2);
        wanted.merge(&Fields::whole());
        assert_eq!(wanted, Fields::whole());
        assert_eq!(
            catalogue().decode_reading(&event, &wanted).unwrap().payload,
            catalogue().decode(&event).unwrap().payload
        );
    }
}
