//! Running a checked rule over a contact's features, and saying why: the
//! values of the features the rule read.

use std::{collections::HashMap, sync::Arc};

use cel::{
    Context,
    objects::{Key, Map, Value as CelValue},
};

use super::check::Checked;
use crate::features::{FeatureDoc, Value};

/// Whether a contact meets a rule, and what it read.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub member: bool,
    /// Each feature the rule read, with its value as the rule saw it.
    pub why: Vec<(String, String)>,
    /// Why the rule could not decide (a null compared, a type mismatch at
    /// run time): the contact is then not a member.
    pub error: Option<String>,
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

/// Runs `rule` over `doc`.
pub fn evaluate(rule: &Checked, doc: &FeatureDoc) -> Outcome {
    let mut context = Context::default();
    let mut why = Vec::with_capacity(rule.features.len());
    for feature in &rule.features {
        let Some(value) = doc.get(feature) else { continue };
        let keys: Vec<&str> =
            rule.map_keys.iter().filter(|(name, _)| name == feature).map(|(_, key)| key.as_str()).collect();
        context.add_variable_from_value(feature.as_str(), cel_value(value, &keys));
        why.push((feature.clone(), describe(value)));
    }
    match rule.program.execute(&context) {
        Ok(CelValue::Bool(member)) => Outcome { member, why, error: None },
        Ok(other) => Outcome { member: false, why, error: Some(format!("the rule gave {other:?}, not true or false")) },
        Err(error) => Outcome { member: false, why, error: Some(error.to_string()) },
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::{
        features::{Activity, Profile, compute},
        rules::check::check,
    };

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
        assert_eq!(outcome.error, None);
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
        assert!(outcome.error.is_some(), "{outcome:?}");
    }
}
