//! Service-level objectives.
//!
//! - [`burn_rate`]: the arithmetic of multi-window, multi-burn-rate alerts,
//!   pure and tested against the SRE workbook.
//! - [`status`]: an SLO now, from its counts.
//! - [`indicator`]: business indicators, CEL conditions over an interaction.
//! - [`prometheus`]: indicators read from Prometheus (PromQL over `{{.window}}`).
//! - [`export`]: the Prometheus rules of those SLOs, for a team's own Prometheus.
//! - [`openslo`]: SLOs as OpenSLO v1 documents.
//! - [`evaluate`]: which alerts fire from an indicator's counts (both
//!   windows, the minimum-event guard, a page suppressing the ticket).

pub mod burn_rate;
pub mod evaluate;
pub mod export;
pub mod indicator;
pub mod openslo;
pub mod prometheus;
pub mod status;
