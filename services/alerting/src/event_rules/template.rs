//! Annotation templates: text in which `{{ path }}` is replaced by a value
//! a condition could read (`{{ contact_id }}`, `{{ event.invoice.number }}`).
//! Checked when the rule is made: the path must exist, and its author must
//! be allowed to read it, so an alert never carries customer data its
//! author could not see (an SRE's rule says which contact, not who).

use crm_platform::scope::Scope;

use super::{
    catalogue::{Decoded, EventType},
    condition::{ContactValues, lookup},
};

/// A parsed template.
#[derive(Clone, Debug, PartialEq)]
pub struct Template(Vec<Piece>);

#[derive(Clone, Debug, PartialEq)]
enum Piece {
    Text(String),
    Path(String),
}

impl Template {
    /// Parses `text` for a rule on `event_types`; the error says what is wrong.
    pub fn parse(text: &str, event_types: &[&EventType]) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            pieces.push(Piece::Text(rest[..open].to_string()));
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or("a `{{` is not closed by `}}`")?;
            let path = after[..close].trim();
            check_path(path, event_types)?;
            pieces.push(Piece::Path(path.to_string()));
            rest = &after[close + 2..];
        }
        if rest.contains("}}") {
            return Err("a `}}` closes no `{{`".into());
        }
        pieces.push(Piece::Text(rest.to_string()));
        Ok(Template(pieces))
    }

    /// The scopes a reader of the rendered text needs: the author must hold them.
    pub fn scopes(&self, event_types: &[&EventType]) -> Vec<Scope> {
        let mut scopes = Vec::new();
        for piece in &self.0 {
            let Piece::Path(path) = piece else { continue };
            let root = path.split('.').next().unwrap_or_default();
            match root {
                "event" => scopes.extend(event_types.iter().map(|event| event.feed.read_scope())),
                "features" | "tier" => scopes.push(Scope::SegmentsRead),
                _ => {}
            }
        }
        scopes.sort_by_key(|scope| scope.as_str());
        scopes.dedup();
        scopes
    }

    /// The payload fields it quotes (`invoice.amount.minor_units` for `{{ event.invoice.amount.minor_units }}`).
    pub fn event_fields(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|piece| match piece {
            Piece::Path(path) => path.strip_prefix("event."),
            Piece::Text(_) => None,
        })
    }

    /// Whether it reads the contact's features or tier.
    pub fn reads_contact(&self) -> bool {
        self.0.iter().any(|piece| matches!(piece, Piece::Path(path) if path == "tier" || path.starts_with("features.")))
    }

    /// The text with each path's value (`?` where the event lacks it).
    pub fn render(&self, event: &Decoded, contact: &ContactValues) -> String {
        self.0
            .iter()
            .map(|piece| match piece {
                Piece::Text(text) => text.clone(),
                Piece::Path(path) => lookup(event, contact, path).unwrap_or_else(|| "?".into()),
            })
            .collect()
    }
}

fn check_path(path: &str, event_types: &[&EventType]) -> Result<(), String> {
    let (root, rest) = path.split_once('.').unwrap_or((path, ""));
    match (root, rest) {
        ("contact_id" | "event_type" | "tier", "") => Ok(()),
        ("features", name) if !name.is_empty() && !name.contains('.') => Ok(()),
        ("event", field) if event_types.iter().any(|event| event.fields.iter().any(|known| known == field)) => Ok(()),
        ("event", field) => Err(format!("`{{{{ {path} }}}}`: no event of the rule has a field `{field}`")),
        _ => Err(format!(
            "`{{{{ {path} }}}}` is not a value a rule reads: write contact_id, event_type, tier, features.NAME or event.FIELD"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_rules::catalogue::catalogue;

    #[test]
    fn templates_check_their_paths_and_know_what_they_reveal() {
        let overdue = catalogue().get("crm.interactions.v1.InvoiceOverdue").unwrap();
        let plain = Template::parse("Contact {{ contact_id }}: hold collections", &[overdue]).unwrap();
        assert!(plain.scopes(&[overdue]).is_empty());
        let revealing =
            Template::parse("{{event.invoice.amount.minor_units}} overdue ({{ tier }})", &[overdue]).unwrap();
        assert_eq!(revealing.scopes(&[overdue]), [Scope::InteractionsRead, Scope::SegmentsRead]);
        assert!(Template::parse("{{ event.invoice.email }}", &[overdue]).unwrap_err().contains("no event"));
        assert!(Template::parse("{{ name }}", &[overdue]).unwrap_err().contains("not a value"));
        assert!(Template::parse("{{ contact_id ", &[overdue]).unwrap_err().contains("not closed"));
    }
}
