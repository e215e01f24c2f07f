//! Which rules an event can meet. Rules are indexed by an equality their
//! condition cannot be met without (`event.interaction.kind ==
//! "complaint"`, a top-level conjunct: `crm_rules::Checked::equalities`),
//! so of a hundred rules on interactions an event runs the few that name
//! its kind, and the rules with no such equality. Skipping is exact: a
//! rule whose equality fails on the event would have been false or
//! undecided, neither of which fires.

use std::{collections::HashMap, sync::Arc};

use super::{
    CompiledRule,
    catalogue::{Decoded, Fields},
    condition::{ContactValues, lookup},
};

/// Rules by the text a path must hold for them.
type ByText = HashMap<String, Vec<Arc<CompiledRule>>>;

/// The live rules, indexed.
#[derive(Default)]
pub struct RuleIndex {
    /// Rules with no equality on what the event carries: run for every event of their types.
    always: Vec<Arc<CompiledRule>>,
    /// By the path an equality reads, then by the text it must hold.
    by_value: Vec<(String, ByText)>,
    /// The event types any rule reads, with the payload fields they read.
    types: HashMap<String, Fields>,
}

impl RuleIndex {
    pub fn new(rules: Vec<Arc<CompiledRule>>) -> Self {
        let mut index = RuleIndex::default();
        for rule in rules {
            let fields = rule.event_fields();
            for name in &rule.record.event_types {
                index.types.entry(name.clone()).or_insert_with(Fields::nothing).merge(&fields);
            }
            let guard = rule.condition.checked.equalities().into_iter().find(|(path, _)| is_of_event(path));
            let Some((path, text)) = guard else {
                index.always.push(rule);
                continue;
            };
            let at = match index.by_value.iter().position(|(known, _)| *known == path) {
                Some(at) => at,
                None => {
                    index.by_value.push((path, HashMap::new()));
                    index.by_value.len() - 1
                }
            };
            index.by_value[at].1.entry(text).or_default().push(rule);
        }
        index
    }

    /// The payload fields the rules on events of type `name` read; `None`
    /// when no rule reads them (they need not be decoded).
    pub fn fields_of(&self, name: &str) -> Option<&Fields> {
        self.types.get(name)
    }

    /// The rules that read `event`'s type and whose equality (if any) it meets.
    pub fn candidates(&self, event: &Decoded) -> Vec<&Arc<CompiledRule>> {
        let indexed = self.by_value.iter().flat_map(|(path, by_text)| {
            // The value as a template would quote it: a number written as
            // text may name a rule whose equality then fails when it runs
            // (an extra candidate, never a missed one).
            lookup(event, &ContactValues::default(), path).and_then(|text| by_text.get(&text)).into_iter().flatten()
        });
        self.always.iter().chain(indexed).filter(|rule| rule.reads(&event.event_type.name)).collect()
    }
}

/// Whether a condition's `path` reads the event itself (not the contact's features or tier).
fn is_of_event(path: &str) -> bool {
    path == "event_type" || path == "contact_id" || path.starts_with("event.")
}
