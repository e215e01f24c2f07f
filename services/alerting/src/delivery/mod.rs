//! Where alerts go.
//!
//! - [`alertmanager`]: every alert to each configured Alertmanager (API v2).
//! - [`webhooks`]: signed webhooks with retries and a delivery log.
//! - [`addresses`]: where webhooks may go (SSRF).

pub mod addresses;
pub mod alertmanager;
pub mod webhooks;
