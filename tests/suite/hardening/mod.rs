//! The reproductions of the hardening review (issue #12), one module per
//! class of fault: each test failed before its fix.

mod auth_flood;
mod bounds;
mod database_down;
mod every_method;
mod http2;
mod idempotency;
mod metrics;
mod nul;
mod races;
mod tls;
