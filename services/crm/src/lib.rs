//! The `crm` binary's library: everything `main` does, reusable by tests.
//!
//! - [`cli`]: the command line (`up`, `serve --target`, `migrate`, `bench`, `alerting export-rules`).
//! - [`alerting`]: `crm alerting`, tools against a running install.
//! - [`bench`]: the load generator.
//! - [`pages`]: every page of a paged list call.
//! - [`commands`]: what each command does.
//! - [`suite`]: starting a set of roles in this process and stopping them in order.
//! - [`transfer`]: `crm import` and `crm export`, files to and from a running install.
//! - [`secrets`]: secrets `crm up` generates once and keeps.

pub mod alerting;
pub mod bench;
pub mod cli;
pub mod commands;
pub mod pages;
pub mod secrets;
pub mod suite;
pub mod transfer;
