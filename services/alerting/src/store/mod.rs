//! The `alerting` schema's SQL.
//!
//! - [`slos`]: service-level objectives and the per-minute counts of their indicators.

pub mod slos;
