//! The alerting role: SLOs over business indicators, their burn-rate alerts.

mod slos;
