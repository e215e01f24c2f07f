//! Segment rules: CEL over a contact's features, checked and run by
//! `crm_rules` with the feature catalogue as the schema.
//!
//! What segmentation adds: the catalogue's types, the feature values as CEL
//! values, and money maps read with a literal currency (`revenue_365d["EUR"]`)
//! reading 0 for a contact without that currency, so `== 0` and `< 100` mean
//! what they say.

use std::{collections::HashMap, sync::Arc};

use cel::objects::{Key, Map, Value as CelValue};
use crm_proto::segmentation::v1::FeatureType;
pub use crm_rules::{Checked, Outcome, RuleError};
use crm_rules::{Schema, Type};

use crate::features::{FeatureDoc, Value, catalogue};

/// The feature catalogue as a rule's schema.
struct Features;

impl Schema for Features {
    fn type_of(&self, name: &str) -> Option<Type> {
        Some(match catalogue::feature(name)?.kind {
            FeatureType::Int => Type::Int,
            // An absent average is null.
            FeatureType::Double => Type::Dyn,
            FeatureType::String => Type::String,
            FeatureType::Bool => Type::Bool,
            FeatureType::Timestamp => Type::Timestamp,
            FeatureType::StringList => Type::List(Box::new(Type::String)),
            FeatureType::IntMap => Type::Map(Box::new(Type::String), Box::new(Type::Int)),
            FeatureType::Unspecified => Type::Dyn,
        })
    }

    fn names(&self) -> Vec<String> {
        catalogue::features().iter().map(|feature| feature.name.clone()).collect()
    }

    fn where_listed(&self) -> &str {
        "ListFeatures lists the features"
    }
}

/// Parses and checks a segment rule against the catalogue.
pub fn check(rule: &str) -> Result<Checked, RuleError> {
    crm_rules::check(rule, &Features)
}

fn cel_value(value: &Value, keys: &[&str]) -> CelValue {
    match value {
        Value::Int(number) => CelValue::Int(*number),
        Value::Double(Some(number)) => CelValue::Float(*number),
        Value::Double(None) | Value::Time(None) => CelValue::Null,
        Value::Str(text) => CelValue::String(Arc::new(text.clone())),
        Value::Bool(flag) => CelValue::Bool(*flag),
        Value::Time(Some(at)) => CelValue::Timestamp(at.fixed_offset()),
        Value::List(items) => {
            CelValue::List(Arc::new(items.iter().map(|item| CelValue::String(Arc::new(item.clone()))).collect()))
        }
        Value::Map(entries) => {
            let mut map: HashMap<Key, CelValue> = entries
                .iter()
                .map(|(key, number)| (Key::String(Arc::new(key.clone())), CelValue::Int(*number)))
                .collect();
            // A key the rule names that the contact lacks reads as 0 (no EUR revenue is 0 EUR).
            for key in keys {
                map.entry(Key::String(Arc::new(key.to_string()))).or_insert(CelValue::Int(0));
            }
            CelValue::Map(Map { map: Arc::new(map) })
        }
    }
}

/// What a value looks like in an explanation.
pub fn describe(value: &Value) -> String {
    match value {
        Value::Int(number) => number.to_string(),
        Value::Double(Some(number)) => format!("{number:.3}"),
        Value::Double(None) | Value::Time(None) => "null".into(),
        Value::Str(text) => format!("{text:?}"),
        Value::Bool(flag) => flag.to_string(),
        Value::Time(Some(at)) => at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        Value::List(items) => format!("{items:?}"),
        Value::Map(entries) => {
            let parts: Vec<String> =
                entries.iter().filter(|(_, n)| **n != 0).map(|(k, n)| format!("{k}: {n}")).collect();
            format!("{{{}}}", parts.join(", "))
        }
    }
}

/// The CEL value of feature `name` of `doc` as `rule` reads it.
fn bind(rule: &Checked, doc: &FeatureDoc, name: &str) -> Option<CelValue> {
    let value = doc.get(name)?;
    let keys: Vec<&str> =
        rule.map_keys.iter().filter(|(feature, _)| feature == name).map(|(_, key)| key.as_str()).collect();
    Some(cel_value(value, &keys))
}

/// Runs `rule` over a contact's features, with the values it read as why.
pub fn evaluate(rule: &Checked, doc: &FeatureDoc) -> Outcome {
    crm_rules::evaluate(rule, &|name| Some((bind(rule, doc, name)?, describe(doc.get(name)?))))
}

/// Whether a contact's features meet `rule` (as [`evaluate`] decides, without why).
pub fn decide(rule: &Checked, doc: &FeatureDoc) -> bool {
    crm_rules::decide(rule, &|name| bind(rule, doc, name))
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::features::{Activity, Profile, compute};

    fn doc() -> FeatureDoc {
        let now = DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z").unwrap().with_timezone(&Utc);
        let profile = Profile { lifecycle: "customer".into(), tags: vec!["vip".into()], ..Default::default() };
        let purchase = Activity {
            interaction_id: uuid::Uuid::now_v7(),
            occurred_at: now - chrono::Duration::days(3),
            kind: "purchase".into(),
            channel: "web".into(),
            currency: "EUR".into(),
            amount: 150_000,
            sentiment: None,
            skus: vec![],
        };
        compute(Some(&profile), &[purchase], now).doc
    }

    #[test]
    fn a_rule_decides_and_explains() {
        let rule = check(
            r#"lifecycle == "customer" && revenue_365d["EUR"] >= 100000 && complaints_90d == 0 && "vip" in tags"#,
        )
        .unwrap();
        let outcome = evaluate(&rule, &doc());
        assert!(outcome.member, "{outcome:?}");
        assert!(decide(&rule, &doc()), "deciding alone agrees");
        assert!(outcome.why.contains(&("revenue_365d".into(), "{EUR: 150000}".into())), "{:?}", outcome.why);
        assert!(outcome.why.contains(&("lifecycle".into(), "\"customer\"".into())));
    }

    #[test]
    fn a_currency_the_contact_lacks_reads_as_zero() {
        let rule = check(r#"revenue_365d["USD"] == 0 && revenue_total["USD"] < 5"#).unwrap();
        assert!(evaluate(&rule, &doc()).member);
    }

    #[test]
    fn a_rule_that_cannot_decide_is_not_met_and_says_why() {
        // The contact has no sentiment: null > 0.5 cannot be decided.
        let rule = check("first_purchase_time == null || sentiment_avg_90d > 0.5").unwrap();
        let outcome = evaluate(&rule, &doc());
        assert!(!outcome.member);
        assert!(!decide(&rule, &doc()), "deciding alone agrees");
        assert!(outcome.error.is_some(), "{outcome:?}");
    }

    #[test]
    fn unknown_features_are_named_with_a_suggestion() {
        let error = check(r#"revnue_365d["EUR"] > 5"#).err().unwrap();
        assert!(error.message.contains("unknown name `revnue_365d` (did you mean `revenue_365d`?)"), "{error}");
        assert!(error.message.contains("ListFeatures"), "{error}");
    }
}
