//! The test harness: real PostgreSQL, real servers, generated clients.
//!
//! - [`TestDb`]: a fresh database per test on the server in `DATABASE_URL`
//!   (or on a private cluster when it is unset), dropped when the test ends.
//! - [`TestSuite`]: any set of roles started in-process on ephemeral ports,
//!   with typed clients that reach them through the gateway.
//! - [`Alertmanager`]: a real Alertmanager on a free port, read through its API.
//! - [`Prometheus`]: a real Prometheus on a free port, scraping the suite.
//! - [`TcpProxy`]: a connection to PostgreSQL a test can cut, for outages.

mod alertmanager;
mod database;
mod prometheus;
mod suite;
mod tcp_proxy;

pub use alertmanager::Alertmanager;
pub use crm_platform::principal::SignedChannel;
pub use database::TestDb;
pub use prometheus::Prometheus;
pub use suite::{Authed, BearerKey, INTERNAL_SECRET, TestSuite};
pub use tcp_proxy::TcpProxy;
