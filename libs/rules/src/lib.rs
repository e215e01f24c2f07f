//! Rules in CEL (the Common Expression Language), as the segmentation and
//! alerting roles use them: segment rules over a contact's features,
//! indicator filters over interactions, alert conditions over events.
//!
//! - [`check`]: parsing (the `cel` crate) and checking against a [`Schema`]
//!   (ours): unknown names with a did-you-mean, unknown functions, operand
//!   types, a condition at the top; each error with its line and column.
//! - [`eval`]: running a checked rule over the values of the names it reads,
//!   with those values as its explanation.
//!
//! Rules cannot loop for ever or call out: CEL has no unbounded loops (its
//! comprehensions walk a list or map given to it), no I/O, and rules are
//! capped at 4,096 characters and 64 levels of nesting; brackets are counted
//! before parsing so that no rule can exhaust a stack.

pub mod check;
pub mod eval;

pub use check::{Checked, RuleError, Type, check};
pub use eval::{Outcome, decide, evaluate};

/// The names a rule may read, and their types.
pub trait Schema {
    /// The type of `name`, if the rule may read it.
    fn type_of(&self, name: &str) -> Option<Type>;
    /// Every name, for suggestions.
    fn names(&self) -> Vec<String>;
    /// Where a caller finds the names (`ListFeatures lists them`).
    fn where_listed(&self) -> &str;
}
