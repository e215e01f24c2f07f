//! Rules: CEL expressions over a contact's features (see the catalogue).
//!
//! - [`check`]: parsing and checking before a rule is saved (unknown
//!   features, wrong types, syntax), with the line and column of each error.
//! - [`eval`]: running a checked rule over a feature document, with the
//!   values it read as the explanation.
//!
//! Rules cannot loop for ever or call out: CEL has no unbounded loops (its
//! comprehensions walk a list or map of the contact's), no I/O, and rules
//! are capped at 4,096 characters and 64 levels of nesting.

pub mod check;
pub mod eval;
