//! Text PostgreSQL cannot store, found in a message's encoded bytes.
//!
//! PostgreSQL refuses the NUL character (U+0000) in `text` and `\u0000` in
//! `jsonb`, so a string holding one must never reach a store: it would fail
//! the statement (and a whole bulk batch with it) as INTERNAL. Every request
//! message is checked here, once, on its wire bytes, by the codec every
//! service of the suite decodes with ([`crate::codec`]); the items of a bulk
//! batch are exempt there and checked one by one by their handlers with
//! [`nul_in_message`], so a bad item is rejected as that item.
//!
//! The walk follows the contracts' descriptors (every string field, in every
//! nested and repeated message and map) and is linear in the message's size.

use std::{collections::HashMap, sync::OnceLock};

use prost::{
    Message, Name,
    bytes::Buf,
    encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field},
};
use prost_types::field_descriptor_proto::{Label, Type};

/// Why a string field was refused.
pub const NUL_REFUSED: &str = "must not contain the NUL character (U+0000), which cannot be stored";

/// Nesting deeper than this is left to prost's own decoding limits.
const MAX_DEPTH: usize = 32;

/// The path (`contact.emails[1].address`) of the first string field of the
/// encoded message `full_name` that holds a NUL, if any. Bytes that do not
/// decode are left for the decoder to refuse.
pub fn first_nul(full_name: &str, bytes: &[u8]) -> Option<String> {
    let plans = plans();
    let index = *plans.by_name.get(full_name)?;
    walk(plans, index, bytes, "", 0, None)
}

/// [`first_nul`] for a decoded message (a bulk item), by encoding it.
pub fn nul_in_message<M: Message + Name>(message: &M) -> Option<String> {
    let bytes = message.encode_to_vec();
    if !bytes.contains(&0) {
        return None;
    }
    first_nul(&M::full_name(), &bytes)
}

/// Like [`first_nul`], but not looking inside the entries of the repeated
/// field `exempt` of the top message (bulk items, checked one by one).
pub fn first_nul_outside(full_name: &str, bytes: &[u8], exempt: &str) -> Option<String> {
    let plans = plans();
    let index = *plans.by_name.get(full_name)?;
    walk(plans, index, bytes, "", 0, Some(exempt))
}

/// What to do with one field of a message.
#[derive(Clone, Copy)]
enum Check {
    Text,
    Message(usize),
    Skip,
}

struct Field {
    name: String,
    repeated: bool,
    check: Check,
}

struct Plan {
    fields: HashMap<u32, Field>,
    /// A map's entry: its key and value are reported as the map itself.
    map_entry: bool,
}

struct Plans {
    by_name: HashMap<String, usize>,
    plans: Vec<Plan>,
}

fn plans() -> &'static Plans {
    static PLANS: OnceLock<Plans> = OnceLock::new();
    PLANS.get_or_init(|| {
        let set = prost_types::FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET).unwrap_or_default();
        // Every message (nested ones too) by full name, then each one's fields.
        let mut messages = Vec::new();
        for file in &set.file {
            for message in &file.message_type {
                collect(&format!("{}.{}", file.package(), message.name()), message, &mut messages);
            }
        }
        let by_name: HashMap<String, usize> =
            messages.iter().enumerate().map(|(index, (name, _))| (name.clone(), index)).collect();
        let plans = messages
            .iter()
            .map(|(_, message)| Plan {
                map_entry: is_map_entry(message),
                fields: message
                    .field
                    .iter()
                    .map(|field| {
                        let check = match field.r#type() {
                            Type::String => Check::Text,
                            Type::Message => by_name
                                .get(field.type_name().trim_start_matches('.'))
                                .map_or(Check::Skip, |index| Check::Message(*index)),
                            _ => Check::Skip,
                        };
                        // A map is a repeated entry message, named without an index.
                        let is_map = match check {
                            Check::Message(index) => is_map_entry(messages[index].1),
                            _ => false,
                        };
                        let repeated = field.label() == Label::Repeated && !is_map;
                        (field.number() as u32, Field { name: field.name().to_string(), repeated, check })
                    })
                    .collect(),
            })
            .collect();
        Plans { by_name, plans }
    })
}

fn is_map_entry(message: &prost_types::DescriptorProto) -> bool {
    message.options.as_ref().is_some_and(|options| options.map_entry())
}

fn collect<'a>(
    name: &str,
    message: &'a prost_types::DescriptorProto,
    into: &mut Vec<(String, &'a prost_types::DescriptorProto)>,
) {
    into.push((name.to_string(), message));
    for nested in &message.nested_type {
        collect(&format!("{name}.{}", nested.name()), nested, into);
    }
}

fn walk(
    plans: &Plans,
    index: usize,
    mut bytes: &[u8],
    prefix: &str,
    depth: usize,
    exempt: Option<&str>,
) -> Option<String> {
    if depth > MAX_DEPTH {
        return None;
    }
    let plan = &plans.plans[index];
    let mut seen: Vec<(u32, usize)> = Vec::new();
    while bytes.has_remaining() {
        let (number, wire_type) = decode_key(&mut bytes).ok()?;
        match wire_type {
            WireType::Varint => {
                decode_varint(&mut bytes).ok()?;
            }
            WireType::SixtyFourBit => bytes.advance(8.min(bytes.remaining())),
            WireType::ThirtyTwoBit => bytes.advance(4.min(bytes.remaining())),
            // A group (proto2; no field of ours is one) is skipped as prost
            // skips it: giving up here would pass a NUL in a later field.
            WireType::StartGroup => {
                skip_field(WireType::StartGroup, number, &mut bytes, DecodeContext::default()).ok()?
            }
            // An end without its start: prost refuses the message.
            WireType::EndGroup => return None,
            WireType::LengthDelimited => {
                let length = usize::try_from(decode_varint(&mut bytes).ok()?).ok()?;
                if length > bytes.len() {
                    return None;
                }
                let (value, rest) = bytes.split_at(length);
                bytes = rest;
                let Some(field) = plan.fields.get(&number) else { continue };
                let occurrence = if field.repeated { occurrence_of(&mut seen, number) } else { 0 };
                let path = || path_of(prefix, plan.map_entry, field, occurrence);
                match field.check {
                    Check::Text if value.contains(&0) => return Some(path()),
                    Check::Message(nested) => {
                        let at = path();
                        if depth == 0 && exempt == Some(field.name.as_str()) {
                            continue;
                        }
                        if let Some(found) = walk(plans, nested, value, &at, depth + 1, None) {
                            return Some(found);
                        }
                    }
                    Check::Text | Check::Skip => {}
                }
            }
        }
    }
    None
}

/// How many times field `number` was seen before in this message.
fn occurrence_of(seen: &mut Vec<(u32, usize)>, number: u32) -> usize {
    match seen.iter_mut().find(|(seen_number, _)| *seen_number == number) {
        Some((_, count)) => {
            *count += 1;
            *count - 1
        }
        None => {
            seen.push((number, 1));
            0
        }
    }
}

/// `prefix.name`, `prefix.name[3]` for a repeated field, or just `prefix`
/// inside a map entry (its key or value stands for the map).
fn path_of(prefix: &str, map_entry: bool, field: &Field, occurrence: usize) -> String {
    if map_entry {
        return prefix.to_string();
    }
    let name = if field.repeated { format!("{}[{occurrence}]", field.name) } else { field.name.clone() };
    if prefix.is_empty() { name } else { format!("{prefix}.{name}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        contacts::v1::{Contact, CreateContactRequest, Email},
        interactions::v1::{IngestInteractionsRequest, Interaction},
    };

    fn nul_path<M: Message + Name>(message: &M) -> Option<String> {
        first_nul(&M::full_name(), &message.encode_to_vec())
    }

    #[test]
    fn finds_a_nul_in_any_string_field_with_its_path() {
        let clean = Contact {
            given_name: "Ann".into(),
            emails: vec![Email { address: "a@example.com".into(), ..Default::default() }; 2],
            attributes: [("plan".to_string(), "gold".to_string())].into(),
            ..Default::default()
        };
        let request = |contact: Contact| CreateContactRequest { contact: Some(contact), ..Default::default() };
        assert_eq!(nul_path(&request(clean.clone())), None);

        let mut named = clean.clone();
        named.given_name = "Nul\0Name".into();
        assert_eq!(nul_path(&request(named)).as_deref(), Some("contact.given_name"));

        let mut tagged = clean.clone();
        tagged.tags = vec!["a".into(), "b".into(), "c\0".into()];
        assert_eq!(nul_path(&request(tagged)).as_deref(), Some("contact.tags[2]"));

        let mut emailed = clean.clone();
        emailed.emails[1].address = "b\0@example.com".into();
        assert_eq!(nul_path(&request(emailed)).as_deref(), Some("contact.emails[1].address"));

        let mut attributed = clean.clone();
        attributed.attributes.insert("k\0".into(), "v".into());
        assert_eq!(nul_path(&request(attributed)).as_deref(), Some("contact.attributes"));

        let keyed = CreateContactRequest { contact: Some(clean), request_id: "r\0".into(), ..Default::default() };
        assert_eq!(nul_path(&keyed).as_deref(), Some("request_id"));
    }

    #[test]
    fn bulk_items_can_be_left_to_their_handler() {
        let bad = Interaction { subject: "a\0b".into(), ..Default::default() };
        let batch = IngestInteractionsRequest {
            batch_id: "b1".into(),
            interactions: vec![Interaction::default(), bad.clone()],
        };
        let bytes = batch.encode_to_vec();
        let name = IngestInteractionsRequest::full_name();
        assert_eq!(first_nul(&name, &bytes).as_deref(), Some("interactions[1].subject"));
        assert_eq!(first_nul_outside(&name, &bytes, "interactions"), None);
        assert_eq!(nul_in_message(&bad).as_deref(), Some("subject"));
        let bad_batch = IngestInteractionsRequest { batch_id: "b\0".into(), interactions: vec![bad] };
        assert_eq!(first_nul_outside(&name, &bad_batch.encode_to_vec(), "interactions").as_deref(), Some("batch_id"));
    }

    #[test]
    fn bytes_that_do_not_decode_are_left_to_the_decoder() {
        assert_eq!(first_nul(&CreateContactRequest::full_name(), &[0x0a, 0xff, 0xff]), None);
        assert_eq!(first_nul("no.such.Message", b"\0"), None);
    }

    #[test]
    fn a_group_before_a_nul_does_not_hide_it() {
        // Found by the request_decoding fuzz target: an unknown group (field
        // 11, started and ended), then roles[0] = "\0". prost skips the group
        // and decodes the NUL; the walk used to stop at the group.
        let bytes = [0x5b, 0x5c, 0x12, 0x01, 0x00];
        let decoded = crate::gateway::v1::CreateApiKeyRequest::decode(&bytes[..]).unwrap();
        assert_eq!(decoded.roles, ["\0"]);
        assert_eq!(first_nul("crm.gateway.v1.CreateApiKeyRequest", &bytes).as_deref(), Some("roles[0]"));
    }
}
