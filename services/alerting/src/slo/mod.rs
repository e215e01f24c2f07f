//! Service-level objectives.
//!
//! - [`burn_rate`]: the arithmetic of multi-window, multi-burn-rate alerts,
//!   pure and tested against the SRE workbook.

pub mod burn_rate;
