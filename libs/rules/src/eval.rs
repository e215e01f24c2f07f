//! Running a checked rule over the values of the names it reads, and
//! saying why: those values, written out.

use std::sync::{Arc, LazyLock};

use cel::{Context, Env, objects::Value as CelValue};

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

/// CEL's standard functions and types, registered once: `Context::default()`
/// registers them again for every context (hundreds of overloads), which cost
/// more than running the rule itself (the alerting role's counters ran at
/// 1,600 events/s with it).
static STANDARD: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// Runs `rule`; `bind` gives each name it reads its value and how that
/// value is written in the explanation (`None`: the name is absent, which the
/// rule sees as an undeclared name, so it cannot decide).
pub fn evaluate(rule: &Checked, bind: &dyn Fn(&str) -> Option<(CelValue, String)>) -> Outcome {
    let mut why = Vec::with_capacity(rule.features.len());
    let result = execute(rule, &mut |name| {
        let (value, shown) = bind(name)?;
        why.push((name.to_string(), shown));
        Some(value)
    });
    match result {
        Ok(CelValue::Bool(member)) => Outcome { member, why, error: None },
        Ok(other) => Outcome { member: false, why, error: Some(format!("the rule gave {other:?}, not true or false")) },
        Err(error) => Outcome { member: false, why, error: Some(error.to_string()) },
    }
}

/// Whether `rule` is met, without the explanation: for callers that decide
/// many contacts and explain only the few whose membership changes (`bind`
/// as in [`evaluate`], without the written value). The same decision as
/// [`evaluate`]'s.
pub fn decide(rule: &Checked, bind: &dyn Fn(&str) -> Option<CelValue>) -> bool {
    matches!(execute(rule, &mut |name| bind(name)), Ok(CelValue::Bool(true)))
}

/// Runs `rule` with each name it reads bound by `bind` (absent when `None`).
fn execute(rule: &Checked, bind: &mut dyn FnMut(&str) -> Option<CelValue>) -> Result<CelValue, cel::ExecutionError> {
    let mut context = Context::with_env(STANDARD.clone());
    for name in &rule.features {
        if let Some(value) = bind(name) {
            context.add_variable_from_value(name.as_str(), value);
        }
    }
    rule.program.execute(&context)
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

    #[test]
    fn a_met_rule_meets_every_equality_it_names() {
        // Exhaustive over a small world: a rule skipped because one of its
        // equalities fails could never have been met.
        let rules = [
            (r#"kind == "payment" && channel == "web" && duration_ms <= 180000"#, 2),
            (r#""web" == channel && (kind == "payment" || kind == "refund")"#, 1),
            (r#"kind == "payment" || channel == "web""#, 0),
            (r#"!(kind == "payment") && outcome == "failed""#, 1),
            (r#"kind == "payment" && outcome != "failed" && channel == "store""#, 2),
            (r#"duration_ms > 10 && (kind == "visit" && channel == "web")"#, 2),
        ];
        let values = ["payment", "refund", "visit", "web", "store", "failed", "ok"];
        for (rule, expected) in rules {
            let checked = check(rule, &Interaction).unwrap();
            let equalities = checked.equalities();
            assert_eq!(equalities.len(), expected, "{rule}: {equalities:?}");
            for kind in values {
                for channel in values {
                    for outcome in values {
                        let bind = |name: &str| {
                            let text = |value: &str| (CelValue::String(Arc::new(value.into())), String::new());
                            Some(match name {
                                "kind" => text(kind),
                                "channel" => text(channel),
                                "outcome" => text(outcome),
                                "duration_ms" => (CelValue::Int(95), String::new()),
                                _ => return None,
                            })
                        };
                        if evaluate(&checked, &bind).member {
                            for (path, text) in &equalities {
                                let held = bind(path).map(|(value, _)| value);
                                assert_eq!(held, Some(CelValue::String(Arc::new(text.clone()))), "{rule}");
                            }
                        }
                    }
                }
            }
        }
    }
}
