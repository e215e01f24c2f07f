//! The `alerting` schema's SQL.
//!
//! - [`alerts`]: alerts, from firing to resolved.
//! - [`rules`]: rules on customer events.
//! - [`silences`]: the silences.
//! - [`webhooks`]: webhooks and their delivery log.
//! - [`slos`]: service-level objectives and the per-minute counts of their indicators.

pub mod alerts;
pub mod rules;
pub mod silences;
pub mod slos;
pub mod webhooks;
