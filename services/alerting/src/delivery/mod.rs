//! Where alerts go.
//!
//! - [`alertmanager`]: every alert to each configured Alertmanager (API v2).

pub mod alertmanager;
