//! Rules on customer events: a CEL condition over an event of the contacts,
//! interactions or segmentation feed and its contact's features; when it
//! holds, an alert fires for the contact (once while it fires).
//!
//! - [`catalogue`]: the event types (found by their documentation in the
//!   contracts) and their payloads as CEL values.
//! - [`condition`]: the names a condition reads, its checks, its evaluation.
//! - [`template`]: annotations with `{{ path }}` placeholders, and the scopes they reveal.
//! - [`index`]: which rules an event can meet, so that most are never run.
//! - [`feed`]: the handler of the three feeds.

pub mod catalogue;
pub mod condition;
pub mod feed;
pub mod index;
pub mod template;

use catalogue::{Decoded, EventType, Fields, catalogue};
use condition::{Condition, ContactValues};
use template::Template;

use crate::{
    alerts::Wanted,
    store::{alerts::Pairs, rules::RuleRecord},
};

/// A rule ready to run.
pub struct CompiledRule {
    pub record: RuleRecord,
    pub condition: Condition,
    pub annotations: Vec<(String, Template)>,
}

impl CompiledRule {
    /// Checks `record`; each problem with the field it is in. `features`:
    /// the feature catalogue's names, when known.
    pub fn compile(record: RuleRecord, features: Option<&[String]>) -> Result<CompiledRule, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let mut types: Vec<&EventType> = Vec::new();
        for (index, name) in record.event_types.iter().enumerate() {
            match catalogue().get(name) {
                Some(found) => types.push(found),
                None => problems.push((
                    format!("rule.event_types[{index}]"),
                    format!("{} is not an event type; ListEventTypes lists them", crm_platform::error::quote(name)),
                )),
            }
        }
        let condition = match condition::check(&record.condition, &types, features) {
            Ok(condition) => Some(condition),
            Err(error) => {
                problems.push(("rule.condition".into(), error.to_string()));
                None
            }
        };
        let mut annotations = Vec::new();
        for (name, text) in &record.annotations {
            match Template::parse(text, &types) {
                Ok(template) => annotations.push((name.clone(), template)),
                Err(problem) => problems.push((format!("rule.annotations[{name}]"), problem)),
            }
        }
        match condition {
            Some(condition) if problems.is_empty() => Ok(CompiledRule { record, condition, annotations }),
            _ => Err(problems),
        }
    }

    /// The event types it reads.
    pub fn event_types(&self) -> Vec<&'static EventType> {
        self.record.event_types.iter().filter_map(|name| catalogue().get(name)).collect()
    }

    /// Whether its condition or an annotation reads the contact's features or tier.
    pub fn reads_contact(&self) -> bool {
        self.condition.reads_contact || self.annotations.iter().any(|(_, template)| template.reads_contact())
    }

    /// The payload fields its condition and annotations read (all of them
    /// when the condition names `event` other than by its fields).
    pub fn event_fields(&self) -> Fields {
        if condition::reads_whole(&self.record.condition, "event") {
            return Fields::whole();
        }
        let mut wanted = Fields::nothing();
        for (_, path) in condition::paths_under(&self.record.condition, "event") {
            wanted.add(path);
        }
        for (_, template) in &self.annotations {
            for path in template.event_fields() {
                wanted.add(path);
            }
        }
        wanted
    }

    /// Whether it reads events of type `name`.
    pub fn reads(&self, name: &str) -> bool {
        self.record.event_types.iter().any(|known| known == name)
    }

    /// The alert it raises for `event`: labelled by the rule, severity and
    /// contact (never by name or email); annotated by its templates, with
    /// the event's type and id.
    pub fn alert(&self, event: &Decoded, event_id: &str, contact: &ContactValues) -> Wanted {
        let mut labels: Pairs = self.record.labels.clone();
        labels.insert("alertname".into(), self.record.name.clone());
        labels.insert("severity".into(), self.record.severity.clone());
        labels.insert("rule_id".into(), self.record.id.to_string());
        if !event.contact_id.is_empty() {
            labels.insert("contact_id".into(), event.contact_id.clone());
        }
        let mut annotations: Pairs =
            self.annotations.iter().map(|(name, template)| (name.clone(), template.render(event, contact))).collect();
        annotations.entry("summary".into()).or_insert_with(|| {
            format!("{}: {} for contact {}", self.record.name, event.event_type.short, event.contact_id)
        });
        annotations.insert("event_type".into(), event.event_type.name.clone());
        annotations.insert("event_id".into(), event_id.to_string());
        Wanted { labels, annotations }
    }
}
