//! Business indicators: which interactions are valid and which valid ones
//! are good, as CEL conditions over an interaction's fields (checked and run
//! by `crm_rules`).

use std::{collections::HashMap, sync::Arc};

use cel::objects::{Key, Map, Value as CelValue};
use crm_proto::interactions::v1 as pb;
use crm_rules::{Checked, RuleError, Schema, Type};

/// An interaction's fields, as indicator rules read them.
struct InteractionFields;

const STRINGS: [&str; 8] = ["kind", "channel", "direction", "source", "outcome", "emotion", "agent", "currency"];
const INTS: [&str; 2] = ["duration_ms", "amount"];

impl Schema for InteractionFields {
    fn type_of(&self, name: &str) -> Option<Type> {
        Some(match name {
            name if STRINGS.contains(&name) => Type::String,
            name if INTS.contains(&name) => Type::Int,
            // null when the interaction carries none
            "sentiment" => Type::Dyn,
            "pain_points" => Type::List(Box::new(Type::String)),
            "attributes" => Type::Map(Box::new(Type::String), Box::new(Type::String)),
            _ => return None,
        })
    }

    fn names(&self) -> Vec<String> {
        STRINGS
            .iter()
            .chain(INTS.iter())
            .chain(["sentiment", "pain_points", "attributes"].iter())
            .map(|name| name.to_string())
            .collect()
    }

    fn where_listed(&self) -> &str {
        "an indicator reads kind, channel, direction, source, outcome, emotion, agent, currency, duration_ms, amount, sentiment, pain_points and attributes"
    }
}

/// Parses and checks an indicator condition.
pub fn check(rule: &str) -> Result<Checked, RuleError> {
    crm_rules::check(rule, &InteractionFields)
}

fn text(value: &str) -> CelValue {
    CelValue::String(Arc::new(value.to_string()))
}

fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_lowercase()
}

/// The value of field `name` of `interaction`.
fn field(interaction: &pb::Interaction, name: &str) -> Option<CelValue> {
    let amount = interaction.amount.clone().unwrap_or_default();
    Some(match name {
        "kind" => text(&short(pb::Kind::try_from(interaction.kind).unwrap_or_default().as_str_name(), "KIND_")),
        "channel" => {
            text(&short(pb::Channel::try_from(interaction.channel).unwrap_or_default().as_str_name(), "CHANNEL_"))
        }
        "direction" => {
            text(&short(pb::Direction::try_from(interaction.direction).unwrap_or_default().as_str_name(), "DIRECTION_"))
        }
        "source" => text(&interaction.source),
        "outcome" => text(&interaction.outcome),
        "emotion" => text(&interaction.emotion),
        "agent" => text(&interaction.agent),
        "currency" => text(&amount.currency_code),
        "duration_ms" => CelValue::Int(interaction.duration_ms),
        "amount" => CelValue::Int(amount.minor_units),
        "sentiment" => interaction.sentiment.map_or(CelValue::Null, CelValue::Float),
        "pain_points" => CelValue::List(Arc::new(interaction.pain_points.iter().map(|point| text(point)).collect())),
        "attributes" => {
            let entries: HashMap<Key, CelValue> = interaction
                .attributes
                .iter()
                .map(|(key, value)| (Key::String(Arc::new(key.clone())), text(value)))
                .collect();
            CelValue::Map(Map { map: Arc::new(entries) })
        }
        _ => return None,
    })
}

/// Whether `interaction` meets `rule` (a rule that cannot decide is not met).
pub fn meets(rule: &Checked, interaction: &pb::Interaction) -> bool {
    crm_rules::evaluate(rule, &|name| field(interaction, name).map(|value| (value, String::new()))).member
}

/// A condition with the equalities it cannot be met without
/// (`kind == "payment"`), checked first: most interactions fail one of an
/// SLO's, and the condition itself then never runs.
pub struct Filter {
    pub checked: Checked,
    equalities: Vec<(String, String)>,
}

impl Filter {
    pub fn new(checked: Checked) -> Self {
        let equalities = checked.equalities();
        Filter { checked, equalities }
    }

    /// Whether `interaction` meets the condition.
    pub fn meets(&self, interaction: &pb::Interaction) -> bool {
        let holds = |(name, text): &(String, String)| match field(interaction, name) {
            Some(CelValue::String(value)) => *value == *text,
            _ => false,
        };
        self.equalities.iter().all(holds) && meets(&self.checked, interaction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payment(duration_ms: i64, outcome: &str) -> pb::Interaction {
        pb::Interaction {
            kind: pb::Kind::Payment as i32,
            channel: pb::Channel::Web as i32,
            duration_ms,
            outcome: outcome.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_filter_decides_as_its_condition_does() {
        let kinds = [pb::Kind::Payment, pb::Kind::Purchase, pb::Kind::Complaint];
        let channels = [pb::Channel::Web, pb::Channel::Store];
        for rule in [
            r#"kind == "payment" && channel == "web""#,
            r#""web" == channel && (kind == "purchase" || outcome == "failed")"#,
            r#"kind == "payment" || channel == "store""#,
            r#"duration_ms <= 180000 && outcome != "failed""#,
        ] {
            let filter = Filter::new(check(rule).unwrap());
            for kind in kinds {
                for channel in channels {
                    for outcome in ["ok", "failed"] {
                        let interaction = pb::Interaction {
                            kind: kind as i32,
                            channel: channel as i32,
                            outcome: outcome.into(),
                            duration_ms: 1_000,
                            ..Default::default()
                        };
                        assert_eq!(filter.meets(&interaction), meets(&filter.checked, &interaction), "{rule}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_seeds_target_online_bill_payment_in_three_minutes() {
        let valid = check(r#"kind == "payment" && channel == "web""#).unwrap();
        let good = check(r#"duration_ms <= 180000 && outcome != "failed""#).unwrap();
        assert!(meets(&valid, &payment(95_000, "ok")) && meets(&good, &payment(95_000, "ok")));
        assert!(!meets(&good, &payment(200_000, "ok")));
        assert!(!meets(&good, &payment(10_000, "failed")));
        let store = pb::Interaction { channel: pb::Channel::Store as i32, ..payment(1, "") };
        assert!(!meets(&valid, &store));
        let unknown = check("latency < 3").err().unwrap();
        assert!(unknown.message.contains("unknown name `latency`"), "{unknown}");
    }
}
