//! A rule's condition: CEL over the event and its contact (see the
//! `AlertRule` contract for the names), checked by `crm_rules`; paths into
//! `event` checked against the rule's event types and paths into
//! `features` against the feature catalogue, each with its position.

use std::sync::Arc;

use cel::objects::{Key, Map, Value as CelValue};
use crm_rules::{Checked, RuleError, Schema, Type};

use super::catalogue::{Decoded, EventType};

/// The names a condition reads.
struct Scope;

const NAMES: [&str; 5] = ["event_type", "event", "contact_id", "features", "tier"];

impl Schema for Scope {
    fn type_of(&self, name: &str) -> Option<Type> {
        Some(match name {
            "event_type" | "contact_id" | "tier" => Type::String,
            "event" | "features" => Type::Map(Box::new(Type::String), Box::new(Type::Dyn)),
            _ => return None,
        })
    }

    fn names(&self) -> Vec<String> {
        NAMES.iter().map(|name| name.to_string()).collect()
    }

    fn where_listed(&self) -> &str {
        "a rule reads event_type, event, contact_id, features and tier; ListEventTypes lists each event's fields"
    }
}

/// A checked condition, and whether it needs the contact's features.
pub struct Condition {
    pub checked: Checked,
    /// Reads `features` or `tier`: evaluated once segmentation has the event.
    pub reads_contact: bool,
}

/// The `name.a.b` paths under `root` in `text`, with their byte offsets.
pub fn paths_under<'a>(text: &'a str, root: &str) -> Vec<(usize, &'a str)> {
    let mut found = Vec::new();
    let pattern = format!("{root}.");
    let mut from = 0;
    while let Some(at) = text[from..].find(&pattern) {
        let start = from + at;
        let boundary = start == 0 || !text[..start].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '.');
        let rest = &text[start + pattern.len()..];
        let length = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.')).unwrap_or(rest.len());
        let path = rest[..length].trim_end_matches('.');
        if boundary && !path.is_empty() {
            found.push((start, path));
        }
        from = start + pattern.len();
    }
    found
}

/// Whether `text` reads the name `root` other than through `root.a.b`
/// paths (`root["a"]`, `x in root`, `size(root)`), or might: a caller that
/// keeps only the paths' fields must then keep them all. A word in a
/// string literal counts too (harmless: all fields are kept).
pub fn reads_whole(text: &str, root: &str) -> bool {
    let mut from = 0;
    while let Some(at) = text[from..].find(root) {
        let start = from + at;
        let end = start + root.len();
        let before = text[..start].chars().next_back();
        let after = text[end..].chars().next();
        let word_starts = !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.');
        let word_ends = !after.is_some_and(|c| c.is_alphanumeric() || c == '_');
        if word_starts && word_ends && after != Some('.') {
            return true;
        }
        from = end;
    }
    false
}

/// Line and column (from 1) of byte `offset` in `text`.
pub fn position(text: &str, offset: usize) -> (u32, u32) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |last| last.chars().count()) + 1;
    (line as u32, column as u32)
}

/// Checks `text` for a rule reading `event_types`; `features` lists the feature names (none: not checked).
pub fn check(text: &str, event_types: &[&EventType], features: Option<&[String]>) -> Result<Condition, RuleError> {
    let checked = crm_rules::check(text, &Scope)?;
    for (offset, path) in paths_under(text, "event") {
        // `has(event.x)` and `event.x.y`: the first path that no type has is wrong.
        let known = event_types.iter().any(|event| event.fields.iter().any(|field| field == path));
        if !known {
            let (line, column) = position(text, offset);
            let names: Vec<&str> = event_types.iter().map(|event| event.short.as_str()).collect();
            return Err(RuleError {
                line,
                column,
                message: format!(
                    "no event of {} has a field `{path}`; ListEventTypes lists their fields",
                    names.join(", ")
                ),
            });
        }
    }
    if let Some(features) = features {
        for (offset, path) in paths_under(text, "features") {
            let name = path.split('.').next().unwrap_or(path);
            if !features.iter().any(|feature| feature == name) {
                let (line, column) = position(text, offset);
                return Err(RuleError {
                    line,
                    column,
                    message: format!("unknown feature `{name}`; ListFeatures lists the features"),
                });
            }
        }
    }
    let reads_contact = checked.features.iter().any(|name| name == "features" || name == "tier");
    Ok(Condition { checked, reads_contact })
}

/// What a rule reads about an event's contact.
#[derive(Clone, Debug, Default)]
pub struct ContactValues {
    pub features: Option<CelValue>,
    pub tier: String,
}

/// The value of each name a condition or annotation reads.
pub fn bind(event: &Decoded, contact: &ContactValues, name: &str) -> Option<CelValue> {
    let text = |value: &str| CelValue::String(Arc::new(value.to_string()));
    Some(match name {
        "event_type" => text(&event.event_type.short),
        "event" => event.payload.clone(),
        "contact_id" => text(&event.contact_id),
        "tier" => text(&contact.tier),
        "features" => {
            contact.features.clone().unwrap_or_else(|| CelValue::Map(Map { map: Arc::new(Default::default()) }))
        }
        _ => return None,
    })
}

/// Whether `condition` holds for `event`; a condition that cannot decide does not.
pub fn holds(condition: &Condition, event: &Decoded, contact: &ContactValues) -> crm_rules::Outcome {
    crm_rules::evaluate(&condition.checked, &|name| bind(event, contact, name).map(|value| (value, String::new())))
}

/// The value at `path` (`event.invoice.amount.minor_units`), written out for an annotation.
pub fn lookup(event: &Decoded, contact: &ContactValues, path: &str) -> Option<String> {
    let mut parts = path.split('.');
    let mut current = bind(event, contact, parts.next()?)?;
    for part in parts {
        let CelValue::Map(map) = current else { return None };
        current = map.map.get(&Key::String(Arc::new(part.to_string())))?.clone();
    }
    Some(written(&current))
}

fn written(value: &CelValue) -> String {
    match value {
        CelValue::String(text) => text.to_string(),
        CelValue::Int(number) => number.to_string(),
        CelValue::UInt(number) => number.to_string(),
        CelValue::Float(number) => number.to_string(),
        CelValue::Bool(flag) => flag.to_string(),
        CelValue::Timestamp(at) => at.to_rfc3339(),
        CelValue::Null => "null".into(),
        CelValue::List(items) => format!("[{}]", items.iter().map(written).collect::<Vec<_>>().join(", ")),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_condition_reads_the_whole_event_only_when_it_names_it_bare() {
        use super::reads_whole;
        assert!(!reads_whole(r#"event.interaction.kind == "complaint" && has(event.interaction.amount)"#, "event"));
        assert!(!reads_whole(r#"event_type == "InvoiceOverdue" && event.invoice.amount.minor_units > 1"#, "event"));
        assert!(reads_whole(r#"event["interaction"].kind == "visit""#, "event"));
        assert!(reads_whole(r#""interaction" in event"#, "event"));
        assert!(reads_whole("size(event) > 1", "event"));
        assert!(reads_whole("event .interaction.kind == 'visit'", "event"));
    }

    use super::*;
    use crate::event_rules::catalogue::catalogue;

    #[test]
    fn paths_are_found_with_their_positions() {
        let rule = "tier == \"gold\" &&\n  event.invoice.amount.minor_units > 100 && has(event.invoice)";
        let found = paths_under(rule, "event");
        assert_eq!(found.iter().map(|(_, path)| *path).collect::<Vec<_>>(), ["invoice.amount.minor_units", "invoice"]);
        assert_eq!(position(rule, found[0].0), (2, 3));
        assert!(paths_under("my_event.x", "event").is_empty(), "only whole names");
    }

    #[test]
    fn a_field_no_event_type_has_is_refused_where_it_stands() {
        let overdue = catalogue().get("crm.interactions.v1.InvoiceOverdue").unwrap();
        let ok =
            check("event.invoice.amount.minor_units >= 10000 && tier in [\"gold\", \"platinum\"]", &[overdue], None)
                .unwrap();
        assert!(ok.reads_contact);
        let error = check("contact_id != \"\" &&\n event.invoice.amont > 3", &[overdue], None).err().unwrap();
        assert_eq!((error.line, error.column), (2, 2));
        assert!(error.message.contains("`invoice.amont`"), "{error}");
        let features = ["complaints_90d".to_string()];
        let error = check("features.complaint_90d >= 3", &[overdue], Some(&features)).err().unwrap();
        assert!(error.message.contains("unknown feature `complaint_90d`"), "{error}");
        assert!(!check("event_type == \"InvoiceOverdue\"", &[overdue], None).unwrap().reads_contact);
    }
}
