//! Checking a rule before it is saved: CEL's parser finds syntax errors; this
//! module walks the parsed expression against a [`Schema`] and finds unknown
//! names, unknown functions and operands of the wrong type, each with its
//! line and column in the rule. The `cel` crate is an interpreter only: the
//! checker is ours.

use std::collections::HashMap;

use crate::Schema;
use cel::{
    Program,
    common::ast::{CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedExpr, LiteralValue, SourceInfo},
};

/// The longest rule accepted, in characters.
pub const MAX_RULE: usize = 4096;
/// The deepest nesting a rule may have, as the parser counts it.
const MAX_PARSE_DEPTH: u16 = 24;
/// The deepest nesting a rule may have, as the checker counts it (a chain of
/// `&&` nests one level per operand).
const MAX_DEPTH: usize = 64;

/// What is wrong with a rule, and where: line and column are 1-based.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}: {}", self.line, self.column, self.message)
    }
}

/// The type of an expression, as far as the checker can tell.
#[derive(Clone, Debug, PartialEq)]
pub enum Type {
    Int,
    Double,
    String,
    Bool,
    /// May be null (never happened).
    Timestamp,
    Duration,
    Null,
    List(Box<Type>),
    Map(Box<Type>, Box<Type>),
    /// Unknown until run: accepted wherever a value is.
    Dyn,
}

impl Type {
    pub fn name(&self) -> String {
        match self {
            Type::Int => "int".into(),
            Type::Double => "double".into(),
            Type::String => "string".into(),
            Type::Bool => "bool".into(),
            Type::Timestamp => "timestamp".into(),
            Type::Duration => "duration".into(),
            Type::Null => "null".into(),
            Type::List(element) => format!("list of {}", element.name()),
            Type::Map(key, value) => format!("map of {} to {}", key.name(), value.name()),
            Type::Dyn => "any".into(),
        }
    }

    fn is_number(&self) -> bool {
        matches!(self, Type::Int | Type::Double | Type::Dyn)
    }

    /// Whether values of the two types can be compared for equality or order.
    fn comparable(&self, other: &Type) -> bool {
        match (self, other) {
            (Type::Dyn, _) | (_, Type::Dyn) => true,
            (Type::Null, Type::Timestamp | Type::Null) | (Type::Timestamp, Type::Null) => true,
            (left, right) if left.is_number() && right.is_number() => true,
            (Type::List(a), Type::List(b)) => a.comparable(b),
            (left, right) => left == right,
        }
    }
}

/// A rule that parsed and checked, ready to run.
pub struct Checked {
    pub program: Program,
    /// The names it reads.
    pub features: Vec<String>,
    /// Keys of maps it reads by a literal (`revenue_365d["EUR"]`): a binder
    /// may give a missing one a default (segmentation reads a missing
    /// currency as 0) instead of an error.
    pub map_keys: Vec<(String, String)>,
}

impl Checked {
    /// The rule's top-level conjuncts that compare a name or a path in it
    /// with a text (`event.interaction.kind == "complaint"`, either way
    /// round), as (path, text): the rule can only be met where each holds
    /// (a false or failing conjunct of `&&` leaves it false or undecided,
    /// which is not met). A caller holding many rules indexes them by these,
    /// so that most are never run.
    pub fn equalities(&self) -> Vec<(String, String)> {
        let mut found = Vec::new();
        conjunct_equalities(self.program.expression(), &mut found);
        found
    }
}

fn conjunct_equalities(at: &IdedExpr, found: &mut Vec<(String, String)>) {
    let Expr::Call(call) = &at.expr else { return };
    match (call.func_name.as_str(), call.target.as_ref(), call.args.as_slice()) {
        ("_&&_", None, [left, right]) => {
            conjunct_equalities(left, found);
            conjunct_equalities(right, found);
        }
        ("_==_", None, [left, right]) => {
            let pair = match (&left.expr, &right.expr) {
                (_, Expr::Literal(LiteralValue::String(text))) => path_of(left).map(|path| (path, text.inner())),
                (Expr::Literal(LiteralValue::String(text)), _) => path_of(right).map(|path| (path, text.inner())),
                _ => None,
            };
            if let Some((path, text)) = pair {
                found.push((path, text.to_string()));
            }
        }
        _ => {}
    }
}

/// `a.b.c` as written, when `at` is a name followed by field selections.
fn path_of(at: &IdedExpr) -> Option<String> {
    match &at.expr {
        Expr::Ident(name) => Some(name.clone()),
        Expr::Select(select) if !select.test => Some(format!("{}.{}", path_of(&select.operand)?, select.field)),
        _ => None,
    }
}

/// Parses and checks `rule` against `schema`; the rule must be a condition (bool).
pub fn check(rule: &str, schema: &dyn Schema) -> Result<Checked, RuleError> {
    let length = rule.chars().count();
    if rule.trim().is_empty() || length > MAX_RULE {
        return Err(RuleError {
            line: 1,
            column: 1,
            message: format!("a rule is 1 to {MAX_RULE} characters (got {length})"),
        });
    }
    let syntax = |errors: cel::ParseErrors| {
        let first = errors.errors.first();
        RuleError {
            line: first.map_or(1, |error| error.pos.0.max(1) as u32),
            column: first.map_or(1, |error| error.pos.1.max(0) as u32 + 1),
            message: first.map_or_else(|| "syntax error".into(), |error| format!("syntax error: {}", error.msg)),
        }
    };
    // The parser recurses per level of brackets before any limit of its own
    // applies: 200 nested parentheses exhausted a thread's stack. Count first.
    if let Some((line, column)) = too_deeply_bracketed(rule) {
        return Err(RuleError { line, column, message: format!("brackets nest deeper than {MAX_PARSE_DEPTH} levels") });
    }
    cel::parser::Parser::new().max_recursion_depth(MAX_PARSE_DEPTH).parse(rule).map_err(syntax)?;
    let program = Program::compile(rule).map_err(syntax)?;
    let mut checker =
        Checker { source: rule, info: program.source_info(), schema, features: Vec::new(), map_keys: Vec::new() };
    let result = checker.expression(program.expression(), &HashMap::new(), 0)?;
    if !matches!(result, Type::Bool | Type::Dyn) {
        return Err(
            checker.error(program.expression(), format!("a rule must be a condition (bool), not {}", result.name()))
        );
    }
    let (mut features, mut map_keys) = (checker.features, checker.map_keys);
    features.sort();
    features.dedup();
    map_keys.sort();
    map_keys.dedup();
    Ok(Checked { program, features, map_keys })
}

/// Where brackets outside string literals first nest deeper than
/// [`MAX_PARSE_DEPTH`], if they do.
fn too_deeply_bracketed(rule: &str) -> Option<(u32, u32)> {
    let (mut depth, mut quote, mut escaped) = (0u16, None, false);
    let (mut line, mut column) = (1u32, 0u32);
    for character in rule.chars() {
        column += 1;
        if character == '\n' {
            (line, column) = (line + 1, 0);
        }
        match quote {
            Some(_) if escaped => escaped = false,
            Some(_) if character == '\\' => escaped = true,
            Some(open) if character == open => quote = None,
            Some(_) => {}
            None => match character {
                '"' | '\'' => quote = Some(character),
                '(' | '[' | '{' => {
                    depth += 1;
                    if depth > MAX_PARSE_DEPTH {
                        return Some((line, column));
                    }
                }
                ')' | ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
    }
    None
}

struct Checker<'a> {
    source: &'a str,
    info: &'a SourceInfo,
    schema: &'a dyn Schema,
    features: Vec<String>,
    map_keys: Vec<(String, String)>,
}

type Scope = HashMap<String, Type>;

impl Checker<'_> {
    fn error(&self, at: &IdedExpr, message: impl Into<String>) -> RuleError {
        let offset = self.info.offset_for(at.id).map_or(0, |(start, _)| start as usize);
        let before: String = self.source.chars().take(offset).collect();
        let line = before.matches('\n').count() as u32 + 1;
        let column = before.rsplit('\n').next().map_or(0, |tail| tail.chars().count()) as u32 + 1;
        RuleError { line, column, message: message.into() }
    }

    fn expression(&mut self, at: &IdedExpr, scope: &Scope, depth: usize) -> Result<Type, RuleError> {
        if depth > MAX_DEPTH {
            return Err(self.error(at, format!("the rule nests deeper than {MAX_DEPTH} levels")));
        }
        match &at.expr {
            Expr::Literal(literal) => Ok(match literal {
                LiteralValue::Boolean(_) => Type::Bool,
                LiteralValue::Int(_) | LiteralValue::UInt(_) => Type::Int,
                LiteralValue::Double(_) => Type::Double,
                LiteralValue::String(_) => Type::String,
                LiteralValue::Null => Type::Null,
                LiteralValue::Bytes(_) => Type::Dyn,
            }),
            Expr::Ident(name) => self.identifier(at, name, scope),
            Expr::Select(select) => {
                let operand = self.expression(&select.operand, scope, depth + 1)?;
                if select.test {
                    // has(x.f): whether a map has a key.
                    return Ok(Type::Bool);
                }
                match operand {
                    Type::Map(_, value) => Ok(*value),
                    Type::Dyn => Ok(Type::Dyn),
                    other => {
                        Err(self.error(at, format!("`.{}` selects from a map, not a {}", select.field, other.name())))
                    }
                }
            }
            Expr::List(list) => {
                let mut element = None;
                for item in &list.elements {
                    let item_type = self.expression(item, scope, depth + 1)?;
                    element = Some(match element {
                        None => item_type,
                        Some(previous) if previous == item_type => previous,
                        Some(_) => Type::Dyn,
                    });
                }
                Ok(Type::List(Box::new(element.unwrap_or(Type::Dyn))))
            }
            Expr::Map(map) => {
                for entry in &map.entries {
                    if let EntryExpr::MapEntry(entry) = &entry.expr {
                        self.expression(&entry.key, scope, depth + 1)?;
                        self.expression(&entry.value, scope, depth + 1)?;
                    }
                }
                Ok(Type::Map(Box::new(Type::Dyn), Box::new(Type::Dyn)))
            }
            Expr::Call(call) => self.call(at, call, scope, depth),
            Expr::Comprehension(comprehension) => self.comprehension(comprehension, scope, depth),
            Expr::Struct(_) => Err(self.error(at, "rules cannot build messages")),
            Expr::Unspecified => Err(self.error(at, "an empty expression")),
        }
    }

    fn identifier(&mut self, at: &IdedExpr, name: &str, scope: &Scope) -> Result<Type, RuleError> {
        if let Some(bound) = scope.get(name) {
            return Ok(bound.clone());
        }
        match self.schema.type_of(name) {
            Some(found) => {
                self.features.push(name.to_string());
                Ok(found)
            }
            None => {
                let hint =
                    closest(self.schema, name).map(|close| format!(" (did you mean `{close}`?)")).unwrap_or_default();
                Err(self.error(at, format!("unknown name `{name}`{hint}; {}", self.schema.where_listed())))
            }
        }
    }

    fn comprehension(
        &mut self,
        comprehension: &ComprehensionExpr,
        scope: &Scope,
        depth: usize,
    ) -> Result<Type, RuleError> {
        let range = self.expression(&comprehension.iter_range, scope, depth + 1)?;
        let element = match range {
            Type::List(element) => *element,
            Type::Map(key, _) => *key,
            Type::Dyn => Type::Dyn,
            other => {
                return Err(self.error(
                    &comprehension.iter_range,
                    format!("only lists and maps can be iterated, not a {}", other.name()),
                ));
            }
        };
        let mut inner = scope.clone();
        inner.insert(comprehension.iter_var.clone(), element);
        if let Some(second) = &comprehension.iter_var2 {
            inner.insert(second.clone(), Type::Dyn);
        }
        let accumulator = self.expression(&comprehension.accu_init, &inner, depth + 1)?;
        // The accumulator's type can widen as it goes (a list built by map/filter).
        inner.insert(
            comprehension.accu_var.clone(),
            match accumulator {
                Type::Bool | Type::Int => accumulator,
                _ => Type::Dyn,
            },
        );
        self.expression(&comprehension.loop_cond, &inner, depth + 1)?;
        self.expression(&comprehension.loop_step, &inner, depth + 1)?;
        self.expression(&comprehension.result, &inner, depth + 1)
    }

    fn call(&mut self, at: &IdedExpr, call: &CallExpr, scope: &Scope, depth: usize) -> Result<Type, RuleError> {
        let target = match &call.target {
            Some(target) => Some(self.expression(target, scope, depth + 1)?),
            None => None,
        };
        let mut args = Vec::with_capacity(call.args.len());
        for arg in &call.args {
            args.push(self.expression(arg, scope, depth + 1)?);
        }
        let name = call.func_name.as_str();
        let wrong = |checker: &Self, what: String| Err(checker.error(at, what));
        match (name, target.as_ref(), args.as_slice()) {
            ("_&&_" | "_||_", None, [left, right]) => {
                for (index, operand) in [left, right].into_iter().enumerate() {
                    if !matches!(operand, Type::Bool | Type::Dyn) {
                        return Err(self.error(
                            &call.args[index],
                            format!("`&&` and `||` join conditions, not a {}", operand.name()),
                        ));
                    }
                }
                Ok(Type::Bool)
            }
            ("!_", None, [operand]) => match operand {
                Type::Bool | Type::Dyn => Ok(Type::Bool),
                other => wrong(self, format!("`!` negates a condition, not a {}", other.name())),
            },
            ("@not_strictly_false", None, [_]) => Ok(Type::Bool),
            ("_==_" | "_!=_", None, [left, right]) => {
                if left.comparable(right) {
                    Ok(Type::Bool)
                } else {
                    wrong(self, format!("a {} is never equal to a {}", left.name(), right.name()))
                }
            }
            ("_<_" | "_<=_" | "_>_" | "_>=_", None, [left, right]) => {
                let ordered = |value: &Type| {
                    matches!(
                        value,
                        Type::Int | Type::Double | Type::String | Type::Timestamp | Type::Duration | Type::Dyn
                    )
                };
                if ordered(left) && ordered(right) && left.comparable(right) {
                    Ok(Type::Bool)
                } else {
                    wrong(self, format!("a {} cannot be ordered against a {}", left.name(), right.name()))
                }
            }
            ("_+_" | "_-_" | "_*_" | "_/_" | "_%_", None, [left, right]) => self.arithmetic(at, name, left, right),
            ("-_", None, [operand]) if operand.is_number() => Ok(operand.clone()),
            ("_?_:_", None, [condition, yes, no]) => {
                if !matches!(condition, Type::Bool | Type::Dyn) {
                    return Err(self.error(&call.args[0], format!("a condition is a bool, not a {}", condition.name())));
                }
                Ok(if yes == no { yes.clone() } else { Type::Dyn })
            }
            ("_[_]", None, [container, key]) => match container {
                Type::Map(key_type, value) => {
                    if !key.comparable(key_type) {
                        return Err(self.error(
                            &call.args[1],
                            format!("this map's keys are {}s, not {}s", key_type.name(), key.name()),
                        ));
                    }
                    self.literal_map_key(&call.args[0], &call.args[1]);
                    Ok(*value.clone())
                }
                Type::List(element) => match key {
                    Type::Int | Type::Dyn => Ok(*element.clone()),
                    other => wrong(self, format!("a list is indexed by an int, not a {}", other.name())),
                },
                Type::Dyn => Ok(Type::Dyn),
                other => wrong(self, format!("a {} cannot be indexed", other.name())),
            },
            ("@in", None, [element, container]) => match container {
                Type::List(item) if element.comparable(item) => Ok(Type::Bool),
                Type::Map(key, _) if element.comparable(key) => Ok(Type::Bool),
                Type::Dyn => Ok(Type::Bool),
                other => {
                    wrong(self, format!("`in` needs a list or map of {}s, not a {}", element.name(), other.name()))
                }
            },
            ("size", None, [value]) | ("size", Some(value), []) => match value {
                Type::String | Type::List(_) | Type::Map(_, _) | Type::Dyn => Ok(Type::Int),
                other => wrong(self, format!("size() counts a string, list or map, not a {}", other.name())),
            },
            ("contains" | "startsWith" | "endsWith" | "matches", Some(value), [argument]) => {
                if matches!(value, Type::String | Type::Dyn) && matches!(argument, Type::String | Type::Dyn) {
                    Ok(Type::Bool)
                } else {
                    wrong(self, format!("{name}() works on strings, not a {} and a {}", value.name(), argument.name()))
                }
            }
            ("timestamp", None, [Type::String | Type::Dyn]) => Ok(Type::Timestamp),
            ("duration", None, [Type::String | Type::Dyn]) => Ok(Type::Duration),
            ("int", None, [_]) => Ok(Type::Int),
            ("double", None, [_]) => Ok(Type::Double),
            ("string", None, [_]) => Ok(Type::String),
            (
                "_&&_" | "_||_" | "!_" | "_==_" | "_!=_" | "_<_" | "_<=_" | "_>_" | "_>=_" | "_+_" | "_-_" | "_*_"
                | "_/_" | "_%_" | "-_" | "_?_:_" | "_[_]" | "@in" | "size" | "contains" | "startsWith" | "endsWith"
                | "matches" | "timestamp" | "duration" | "int" | "double" | "string",
                _,
                _,
            ) => wrong(self, format!("{} takes other arguments here", display_name(name))),
            _ => wrong(
                self,
                format!(
                    "unknown function {}: rules may use size, contains, startsWith, endsWith, matches, timestamp, duration, int, double, string, has, exists, all, exists_one, map and filter",
                    display_name(name)
                ),
            ),
        }
    }

    fn arithmetic(&self, at: &IdedExpr, name: &str, left: &Type, right: &Type) -> Result<Type, RuleError> {
        match (name, left, right) {
            (_, Type::Dyn, _) | (_, _, Type::Dyn) => Ok(Type::Dyn),
            (_, Type::Int, Type::Int) => Ok(Type::Int),
            (_, Type::Double, Type::Double) => Ok(Type::Double),
            ("_+_", Type::String, Type::String) => Ok(Type::String),
            ("_+_", Type::List(_), Type::List(_)) => Ok(Type::Dyn),
            ("_+_" | "_-_", Type::Timestamp, Type::Duration) => Ok(Type::Timestamp),
            ("_-_", Type::Timestamp, Type::Timestamp) => Ok(Type::Duration),
            _ => Err(self.error(
                at,
                format!(
                    "{} does not apply to a {} and a {} (convert with int() or double())",
                    display_name(name),
                    left.name(),
                    right.name()
                ),
            )),
        }
    }

    /// Notes `feature["KEY"]` for a map feature read by a literal key.
    fn literal_map_key(&mut self, container: &IdedExpr, key: &IdedExpr) {
        if let (Expr::Ident(feature), Expr::Literal(LiteralValue::String(literal))) = (&container.expr, &key.expr)
            && self.schema.type_of(feature).is_some()
        {
            self.map_keys.push((feature.clone(), literal.inner().to_string()));
        }
    }
}

/// `_>=_` as `>=`, for messages.
fn display_name(function: &str) -> String {
    match function.trim_matches('_') {
        "[" => "`[]`".into(),
        "?_:" => "`?:`".into(),
        "@in" => "`in`".into(),
        operator if function.starts_with('_') || function.ends_with('_') => format!("`{}`", operator.trim_matches('_')),
        other => format!("`{other}`"),
    }
}

/// The schema's name nearest to `name`, when one is near.
fn closest(schema: &dyn Schema, name: &str) -> Option<String> {
    schema
        .names()
        .into_iter()
        .map(|known| (strsim::jaro_winkler(name, &known), known))
        .filter(|(score, _)| *score > 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, known)| known)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A few features of the segmentation catalogue's kinds.
    struct Features;

    impl Schema for Features {
        fn type_of(&self, name: &str) -> Option<Type> {
            let money = || Type::Map(Box::new(Type::String), Box::new(Type::Int));
            Some(match name {
                "lifecycle" | "country" | "city" => Type::String,
                "complaints_90d" | "days_since_last_purchase" | "age" | "purchases_total" | "purchases_30d" => {
                    Type::Int
                }
                "revenue_365d" | "revenue_total" | "kinds_30d" => money(),
                "tags" | "skus" => Type::List(Box::new(Type::String)),
                "last_purchase_time" => Type::Timestamp,
                "sentiment_avg_90d" => Type::Dyn,
                _ => return None,
            })
        }

        fn names(&self) -> Vec<String> {
            ["lifecycle", "revenue_365d", "complaints_90d", "tags"].iter().map(|name| name.to_string()).collect()
        }

        fn where_listed(&self) -> &str {
            "ListFeatures lists them"
        }
    }

    fn check(rule: &str) -> Result<Checked, RuleError> {
        super::check(rule, &Features)
    }

    fn error(rule: &str) -> RuleError {
        check(rule).err().unwrap_or_else(|| panic!("{rule} was accepted"))
    }

    #[test]
    fn good_rules_pass_and_say_what_they_read() {
        let checked = check(
            r#"lifecycle == "customer" && revenue_365d["EUR"] >= 100000 && complaints_90d == 0 && "vip" in tags"#,
        )
        .unwrap();
        assert_eq!(checked.features, ["complaints_90d", "lifecycle", "revenue_365d", "tags"]);
        assert_eq!(checked.map_keys, [("revenue_365d".to_string(), "EUR".to_string())]);
        for rule in [
            "days_since_last_purchase > 90 || last_purchase_time == null",
            "tags.exists(t, t.startsWith('vip'))",
            "size(skus) >= 3 && kinds_30d.purchase > 1",
            "has(revenue_total.USD) && sentiment_avg_90d < 0.0",
            "last_purchase_time != null && last_purchase_time > timestamp('2026-01-01T00:00:00Z')",
            "age >= 18 ? purchases_total > 0 : false",
            "country in ['FR', 'GB'] && city.matches('^L')",
        ] {
            check(rule).unwrap_or_else(|error| panic!("{rule}: {error}"));
        }
    }

    #[test]
    fn bad_rules_say_what_and_where() {
        let unknown = error("lifecycle == \"customer\" && revnue_365d[\"EUR\"] > 5");
        assert_eq!((unknown.line, unknown.column), (1, 28), "{unknown}");
        assert!(unknown.message.contains("unknown name `revnue_365d`"), "{unknown}");
        assert!(unknown.message.contains("did you mean `revenue_365d`"), "{unknown}");

        let typed = error("complaints_90d == \"none\"");
        assert!(typed.message.contains("int is never equal to a string"), "{typed}");
        let ordered = error("tags > 3");
        assert!(ordered.message.contains("cannot be ordered"), "{ordered}");
        let not_condition = error("purchases_30d + 1");
        assert!(not_condition.message.contains("must be a condition"), "{not_condition}");
        let syntax = error("lifecycle == ");
        assert!(syntax.message.starts_with("syntax error"), "{syntax}");
        let second_line = error("lifecycle == 'customer' &&\n  nope > 1");
        assert_eq!((second_line.line, second_line.column), (2, 3), "{second_line}");
        let function = error("launch_missiles(tags)");
        assert!(function.message.contains("unknown function `launch_missiles`"), "{function}");
        let key = error("revenue_365d[3] > 0");
        assert!(key.message.contains("keys are strings"), "{key}");
        assert!(error(&"a".repeat(MAX_RULE + 1)).message.contains("1 to 4096"));
        // Too deep to parse, or to check: refused, never a stack overflow.
        assert!(!error(&format!("{}true{}", "(".repeat(200), ")".repeat(200))).message.is_empty());
        // CEL balances chains of && and ||: a long one is shallow, and runs.
        let conditions = vec!["purchases_30d > 0"; 150].join(" && ");
        check(&conditions).unwrap();
        // A long sum nests one level per term: refused before it is run.
        let sum = format!("{} > 0", vec!["purchases_30d"; 150].join(" + "));
        let refused = error(&sum);
        assert!(refused.message.contains("deep") || refused.message.contains("recursion"), "{refused}");
    }
}
