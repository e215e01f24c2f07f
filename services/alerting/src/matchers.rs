//! Label matchers, as Alertmanager's: `=`, `!=`, `=~`, `!~`; a regular
//! expression (RE2 syntax, the `regex` crate) must match the whole value,
//! and a label an alert lacks reads as "". Silences say which alerts they
//! hold back with them, webhooks which alerts they hear of.

use crm_platform::error::{Violations, quote};
use crm_proto::alerting::v1 as pb;
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::store::alerts::Pairs;

/// Matchers per silence or webhook.
pub const MAX_MATCHERS: usize = 20;
const MAX_VALUE: usize = 1000;
/// A compiled expression's size bound: a pathological pattern is refused, not run.
const MAX_REGEX_BYTES: usize = 1 << 20;

/// How a matcher compares, as stored (`=`, `!=`, `=~`, `!~`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = "=")]
    Equal,
    #[serde(rename = "!=")]
    NotEqual,
    #[serde(rename = "=~")]
    Regex,
    #[serde(rename = "!~")]
    NotRegex,
}

/// A matcher as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Matcher {
    pub name: String,
    pub value: String,
    pub op: Op,
}

/// Matchers ready to match: each expression compiled once.
#[derive(Clone, Debug)]
pub struct Compiled {
    matchers: Vec<(Matcher, Option<Regex>)>,
}

fn compile_regex(value: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{value})$")).size_limit(MAX_REGEX_BYTES).build()
}

impl Compiled {
    /// Compiles stored matchers (checked when they were stored; one that no
    /// longer compiles matches nothing, so it never silences by accident).
    pub fn new(matchers: Vec<Matcher>) -> Compiled {
        let matchers = matchers
            .into_iter()
            .map(|matcher| {
                let regex = matches!(matcher.op, Op::Regex | Op::NotRegex).then(|| {
                    compile_regex(&matcher.value).unwrap_or_else(|_| Regex::new("$.^").expect("a valid regex"))
                });
                (matcher, regex)
            })
            .collect();
        Compiled { matchers }
    }

    /// Whether every matcher matches `labels`.
    pub fn matches(&self, labels: &Pairs) -> bool {
        self.matchers.iter().all(|(matcher, regex)| {
            let value = labels.get(&matcher.name).map(String::as_str).unwrap_or_default();
            match (matcher.op, regex) {
                (Op::Equal, _) => value == matcher.value,
                (Op::NotEqual, _) => value != matcher.value,
                (Op::Regex, Some(regex)) => regex.is_match(value),
                (Op::NotRegex, Some(regex)) => !regex.is_match(value),
                (_, None) => false,
            }
        })
    }

    /// Whether some matcher refuses the empty label set (a silence must not hold back everything).
    pub fn is_selective(&self) -> bool {
        !self.matches(&Pairs::new())
    }
}

/// A label or annotation name as Prometheus and Alertmanager accept it.
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks `matchers` at `field` (names, values, operators, expressions).
pub fn check(violations: &mut Violations, field: &str, matchers: &[pb::Matcher]) -> Vec<Matcher> {
    let mut kept = Vec::new();
    for (index, matcher) in violations.within(field, matchers, MAX_MATCHERS).iter().enumerate() {
        let at = format!("{field}[{index}]");
        let name = matcher.name.trim();
        if !is_label_name(name) {
            violations.add(
                format!("{at}.name"),
                format!("{} is not a label name (letters, digits and `_`, not starting with a digit)", quote(name)),
            );
        }
        let value = violations.text(&format!("{at}.value"), &matcher.value, 0, MAX_VALUE);
        let op = match pb::MatchType::try_from(matcher.r#type) {
            Ok(pb::MatchType::Equal) => Op::Equal,
            Ok(pb::MatchType::NotEqual) => Op::NotEqual,
            Ok(pb::MatchType::Regex) => Op::Regex,
            Ok(pb::MatchType::NotRegex) => Op::NotRegex,
            _ => {
                violations.add(format!("{at}.type"), "must be MATCH_TYPE_EQUAL, _NOT_EQUAL, _REGEX or _NOT_REGEX");
                continue;
            }
        };
        if matches!(op, Op::Regex | Op::NotRegex)
            && let Err(error) = compile_regex(&value)
        {
            let reason = error.to_string();
            let first = reason.lines().last().unwrap_or_default().trim().to_string();
            violations.add(format!("{at}.value"), format!("is not a regular expression: {first}"));
        }
        kept.push(Matcher { name: name.to_string(), value, op });
    }
    kept
}

pub fn to_proto(matcher: &Matcher) -> pb::Matcher {
    let kind = match matcher.op {
        Op::Equal => pb::MatchType::Equal,
        Op::NotEqual => pb::MatchType::NotEqual,
        Op::Regex => pb::MatchType::Regex,
        Op::NotRegex => pb::MatchType::NotRegex,
    };
    pb::Matcher { name: matcher.name.clone(), value: matcher.value.clone(), r#type: kind as i32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Pairs {
        pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
    }

    fn matcher(name: &str, value: &str, op: Op) -> Matcher {
        Matcher { name: name.into(), value: value.into(), op }
    }

    #[test]
    fn matchers_compare_as_alertmanager_does() {
        let page = labels(&[("severity", "page"), ("slo", "Checkout")]);
        let cases = [
            (matcher("severity", "page", Op::Equal), true),
            (matcher("severity", "ticket", Op::NotEqual), true),
            (matcher("slo", "Check.*", Op::Regex), true),
            // The whole value: a prefix does not match.
            (matcher("slo", "Check", Op::Regex), false),
            (matcher("slo", "Check", Op::NotRegex), true),
            // A missing label is "".
            (matcher("team", "", Op::Equal), true),
            (matcher("team", ".+", Op::Regex), false),
        ];
        for (matcher, expected) in cases {
            assert_eq!(Compiled::new(vec![matcher.clone()]).matches(&page), expected, "{matcher:?}");
        }
        let both = Compiled::new(vec![matcher("severity", "page", Op::Equal), matcher("slo", "Other", Op::Equal)]);
        assert!(!both.matches(&page), "every matcher must match");
    }

    #[test]
    fn a_matcher_set_that_matches_everything_is_not_selective() {
        assert!(!Compiled::new(vec![matcher("team", ".*", Op::Regex)]).is_selective());
        assert!(!Compiled::new(vec![matcher("team", "x", Op::NotEqual)]).is_selective());
        assert!(Compiled::new(vec![matcher("team", "x", Op::Equal)]).is_selective());
    }

    #[test]
    fn bad_matchers_are_named_by_position() {
        let mut violations = Violations::new();
        let input = [
            pb::Matcher { name: "1bad".into(), value: "x".into(), r#type: pb::MatchType::Equal as i32 },
            pb::Matcher { name: "slo".into(), value: "(".into(), r#type: pb::MatchType::Regex as i32 },
            pb::Matcher { name: "slo".into(), value: "x".into(), r#type: 0 },
        ];
        check(&mut violations, "silence.matchers", &input);
        let Err(crm_platform::Error::InvalidArgument(found)) = violations.into_result() else { panic!("refused") };
        let fields: Vec<&str> = found.iter().map(|violation| violation.field.as_str()).collect();
        assert_eq!(fields, ["silence.matchers[0].name", "silence.matchers[1].value", "silence.matchers[2].type"]);
    }
}
