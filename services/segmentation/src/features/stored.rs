//! A document as the `features.doc` column holds it: the bytes of its JSON
//! text, with its [`Tally`] under `_tally`. Maps with fixed keys (kinds,
//! channels) leave their zero counts out (a third of the size, and under
//! PostgreSQL's 2 KB TOAST threshold, so a row is written inline without
//! compression); reading puts them back.
//!
//! Every burst of the interactions feed reads and writes one document per
//! contact it touches, so both directions go straight between the text and
//! [`FeatureDoc`] with serde, typed by the catalogue; the
//! `serde_json::Value` path ([`doc_to_json`], [`doc_from_json`]) is the
//! reference they are tested against, and reads what the direct path
//! refuses (a document stored when a feature had another type).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use crm_proto::segmentation::v1::FeatureType;
use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{IgnoredAny, MapAccess, Visitor},
    ser::SerializeMap,
};

use super::{Computed, FeatureDoc, Tally, Value, catalogue, fixed_keys};

/// The key of the stored document that holds its [`Tally`] (not a feature).
const TALLY: &str = "_tally";

/// A document as stored, in the `serde_json::Value` form.
pub fn doc_to_json(doc: &FeatureDoc) -> serde_json::Value {
    serde_json::Value::Object(
        doc.iter()
            .map(|(name, value)| {
                let json = match value {
                    Value::Map(entries) if fixed_keys(name).is_some() => {
                        serde_json::json!(entries.iter().filter(|(_, count)| **count != 0).collect::<BTreeMap<_, _>>())
                    }
                    other => other.to_json(),
                };
                (name.clone(), json)
            })
            .collect(),
    )
}

/// The bytes the `features.doc` column holds for `computed`.
pub fn doc_to_bytes(computed: &Computed) -> Vec<u8> {
    // Writing into a Vec cannot fail, nor can these values (no map keys but strings).
    serde_json::to_vec(&Stored(computed)).unwrap_or_default()
}

/// Stored features read back whole, to apply new interactions to: `None`
/// when they lack their tally or any feature of the catalogue (stored by
/// an older version: recompute them).
pub fn computed_from_bytes(bytes: &[u8], next_change: Option<DateTime<Utc>>) -> Option<Computed> {
    let Loaded { doc, tally } = serde_json::from_slice(bytes).ok()?;
    (doc.len() == catalogue::features().len()).then_some(Computed { doc, next_change, tally: tally? })
}

/// A document read back from the `features.doc` column (one that does not
/// parse reads as empty: the next recompute writes it again).
pub fn doc_from_bytes(bytes: &[u8]) -> FeatureDoc {
    match serde_json::from_slice::<Loaded>(bytes) {
        Ok(loaded) => loaded.doc,
        Err(_) => serde_json::from_slice(bytes).map(|json| doc_from_json(&json)).unwrap_or_default(),
    }
}

/// Only the features named in `wanted` (those a rule reads) of a stored
/// document, as [`doc_from_bytes`] reads them: the others are stepped over
/// unparsed, so evaluating a rule over every contact (a new segment,
/// `PreviewSegment`) does not build sixty features to read two.
pub fn doc_from_bytes_only(bytes: &[u8], wanted: &[String]) -> FeatureDoc {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let read = Deserializer::deserialize_map(&mut deserializer, LoadedVisitor { wanted: Some(wanted) })
        .and_then(|loaded| deserializer.end().map(|()| loaded));
    match read {
        Ok(loaded) => loaded.doc,
        Err(_) => {
            let mut doc = doc_from_bytes(bytes);
            doc.retain(|name, _| wanted.contains(name));
            doc
        }
    }
}

/// A stored document read back; features the catalogue no longer has are left out.
pub fn doc_from_json(json: &serde_json::Value) -> FeatureDoc {
    let Some(object) = json.as_object() else { return FeatureDoc::new() };
    object
        .iter()
        .filter_map(|(name, value)| {
            let def = catalogue::feature(name)?;
            let mut value = Value::from_json(def.kind, value)?;
            fill_fixed_keys(name, &mut value);
            Some((name.clone(), value))
        })
        .collect()
}

fn fill_fixed_keys(name: &str, value: &mut Value) {
    if let (Value::Map(entries), Some(keys)) = (value, fixed_keys(name)) {
        for key in keys {
            entries.entry(key.clone()).or_insert(0);
        }
    }
}

/// Times as stored: RFC 3339 in UTC with microseconds.
fn time_text(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Serializes a document and its tally as stored.
struct Stored<'a>(&'a Computed);

/// A fixed-key map without its zero counts.
struct NonZero<'a>(&'a BTreeMap<String, i64>);

impl Serialize for NonZero<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().filter(|(_, count)| **count != 0))
    }
}

impl Serialize for Stored<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.doc.len() + 1))?;
        map.serialize_entry(TALLY, &self.0.tally)?;
        for (name, value) in &self.0.doc {
            map.serialize_entry(name, &StoredValue(name, value))?;
        }
        map.end()
    }
}

/// One feature's value as stored (feature `.0`, value `.1`).
struct StoredValue<'a>(&'a str, &'a Value);

impl Serialize for StoredValue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.1 {
            Value::Int(number) => number.serialize(serializer),
            Value::Double(number) => number.serialize(serializer),
            Value::Str(text) => text.serialize(serializer),
            Value::Bool(flag) => flag.serialize(serializer),
            Value::Time(at) => at.as_ref().map(time_text).serialize(serializer),
            Value::List(items) => items.serialize(serializer),
            Value::Map(entries) if fixed_keys(self.0).is_some() => NonZero(entries).serialize(serializer),
            Value::Map(entries) => entries.serialize(serializer),
        }
    }
}

/// The stored bytes of a document with `values` (features of the catalogue,
/// each already in it) put in place of its own, every other entry copied as
/// written: the analytics refresh changes five features of up to every
/// document, and reading each whole to write it back took most of its
/// minute at a million. `None` when the text is not a document of the
/// current catalogue (a feature or the tally missing: recompute it).
pub fn patched_bytes(bytes: &[u8], values: &FeatureDoc) -> Option<Vec<u8>> {
    let Entries(entries) = serde_json::from_slice(bytes).ok()?;
    let (mut features, mut replaced, mut tally) = (0, 0, false);
    let mut patched = Vec::with_capacity(bytes.len() + 16);
    patched.push(b'{');
    for (index, (name, raw)) in entries.into_iter().enumerate() {
        if index > 0 {
            patched.push(b',');
        }
        serde_json::to_writer(&mut patched, name).ok()?;
        patched.push(b':');
        match values.get(name) {
            Some(value) => {
                serde_json::to_writer(&mut patched, &StoredValue(name, value)).ok()?;
                replaced += 1;
            }
            None => patched.extend_from_slice(raw.get().as_bytes()),
        }
        tally |= name == TALLY;
        features += usize::from(catalogue::feature(name).is_some());
    }
    patched.push(b'}');
    (tally && features == catalogue::features().len() && replaced == values.len()).then_some(patched)
}

/// A stored document's entries in their order, each value's text as written.
struct Entries<'a>(Vec<(&'a str, &'a serde_json::value::RawValue)>);

impl<'de> Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries<'de>;

            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a stored feature document")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<'de>, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(64));
                while let Some(name) = map.next_key::<&'de str>()? {
                    entries.push((name, map.next_value()?));
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor)
    }
}

/// A stored document read straight into features, typed by the catalogue.
struct Loaded {
    doc: FeatureDoc,
    tally: Option<Tally>,
}

impl<'de> Deserialize<'de> for Loaded {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(LoadedVisitor { wanted: None })
    }
}

/// Reads every feature, or only those `wanted` (then without the tally).
struct LoadedVisitor<'w> {
    wanted: Option<&'w [String]>,
}

impl<'de> Visitor<'de> for LoadedVisitor<'_> {
    type Value = Loaded;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a stored feature document")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Loaded, A::Error> {
        use FeatureType as T;
        let (mut doc, mut tally) = (FeatureDoc::new(), None);
        while let Some(Name(name)) = map.next_key::<Name<'de>>()? {
            if self.wanted.is_some_and(|wanted| !wanted.iter().any(|feature| *feature == name)) {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if name == TALLY {
                tally = Some(map.next_value()?);
                continue;
            }
            let Some(def) = catalogue::feature(&name) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let mut value = match def.kind {
                T::Int => Value::Int(map.next_value()?),
                T::Double => Value::Double(map.next_value()?),
                T::String => Value::Str(map.next_value()?),
                T::Bool => Value::Bool(map.next_value()?),
                T::Timestamp => Value::Time(map.next_value()?),
                T::StringList => Value::List(map.next_value()?),
                T::IntMap => Value::Map(map.next_value()?),
                T::Unspecified => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            fill_fixed_keys(&name, &mut value);
            doc.insert(name.into_owned(), value);
        }
        Ok(Loaded { doc, tally })
    }
}

/// A key of the stored document, borrowed from its text when it has no
/// escapes (always, for feature names): a key skipped costs no allocation.
struct Name<'de>(std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Name<'de>;

            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a feature name")
            }

            fn visit_borrowed_str<E: serde::de::Error>(self, name: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(std::borrow::Cow::Borrowed(name)))
            }

            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Name<'de>, E> {
                Ok(Name(std::borrow::Cow::Owned(name.to_owned())))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}
