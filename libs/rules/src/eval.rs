//! Running a checked rule over the values of the names it reads, and
//! saying why: those values, written out.

use cel::{Context, objects::Value as CelValue};

use super::check::Checked;

/// Whether a rule is met, and what it read.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub member: bool,
    /// Each name the rule read, with its value as the rule saw it.
    pub why: Vec<(String, String)>,
    /// Why the rule could not decide (a null compared, a type mismatch at
    /// run time): the rule is then not met.
    pub error: Option<String>,
}

/// Runs `rule`; `bind` gives each name it reads its value and how that
/// value is written in the explanation (`None`: the name is absent, which the
/// rule sees as an undeclared name, so it cannot decide).
pub fn evaluate(rule: &Checked, bind: &dyn Fn(&str) -> Option<(CelValue, String)>) -> Outcome {
    let mut context = Context::default();
    let mut why = Vec::with_capacity(rule.features.len());
    for name in &rule.features {
        let Some((value, shown)) = bind(name) else { continue };
        context.add_variable_from_value(name.as_str(), value);
        why.push((name.clone(), shown));
    }
    match rule.program.execute(&context) {
        Ok(CelValue::Bool(member)) => Outcome { member, why, error: None },
        Ok(other) => Outcome { member: false, why, error: Some(format!("the rule gave {other:?}, not true or false")) },
        Err(error) => Outcome { member: false, why, error: Some(error.to_string()) },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{Schema, Type, check};

    struct Interaction;

    impl Schema for Interaction {
        fn type_of(&self, name: &str) -> Option<Type> {
            match name {
                "kind" | "channel" | "outcome" => Some(Type::String),
                "duration_ms" => Some(Type::Int),
                _ => None,
            }
        }

        fn names(&self) -> Vec<String> {
            vec!["kind".into(), "channel".into(), "outcome".into(), "duration_ms".into()]
        }

        fn where_listed(&self) -> &str {
            "the indicator's fields"
        }
    }

    fn bind(name: &str) -> Option<(CelValue, String)> {
        Some(match name {
            "kind" => (CelValue::String(Arc::new("payment".into())), "\"payment\"".into()),
            "channel" => (CelValue::String(Arc::new("web".into())), "\"web\"".into()),
            "duration_ms" => (CelValue::Int(95_000), "95000".into()),
            _ => return None,
        })
    }

    #[test]
    fn a_rule_decides_and_explains() {
        let rule = check(r#"kind == "payment" && channel == "web" && duration_ms <= 180000"#, &Interaction).unwrap();
        let outcome = evaluate(&rule, &bind);
        assert!(outcome.member, "{outcome:?}");
        assert!(outcome.why.contains(&("duration_ms".into(), "95000".into())));
    }

    #[test]
    fn a_rule_that_cannot_decide_is_not_met_and_says_why() {
        // `outcome` is in the schema but this binder has no value for it.
        let rule = check(r#"outcome != "failed""#, &Interaction).unwrap();
        let outcome = evaluate(&rule, &bind);
        assert!(!outcome.member);
        assert!(outcome.error.is_some(), "{outcome:?}");
    }
}
