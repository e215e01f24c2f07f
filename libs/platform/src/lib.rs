//! What every role of the CRM suite shares.
//!
//! - [`clock`]: the current time, injected (tests move it by hand).
//! - [`config`]: typed settings read once from the environment, with errors naming each bad variable.
//! - [`role`]: the roles by name, their schemas and default ports.
//! - [`db`]: a Postgres pool per role (confined to its schema, retried at start) and migrations.
//! - [`outbox`]: the transactional outbox and the commit-ordered event feed read from it.
//! - [`feed_api`]: the `Subscribe` / `ListEvents` RPCs every role serves over its outbox.
//! - [`consumer`]: following another role's feed, exactly once per event, as a leader.
//! - [`foreground`]: the users' calls, which a follower working off a backlog makes room for.
//! - [`error`]: one error type, mapped to `tonic::Status` with google.rpc details.
//! - [`idempotency`]: idempotency keys scoped to their caller and bound to a request fingerprint.
//! - [`page_token`]: opaque page tokens bound to their query.
//! - [`principal`]: the caller, as the gateway signs it and the roles verify it.
//! - [`readiness`]: a role's health and calls follow whether its database answers.
//! - [`request_id`]: the `x-request-id` of every call, checked before anything stores it.
//! - [`server`]: the gRPC server builder (health, reflection, limits, request ids, drain).
//! - [`metrics`]: RED metrics per RPC and the `/metrics` endpoint.
//! - [`telemetry`]: tracing subscriber, OTLP export, meter provider.
//! - [`tls`]: TLS at the gateway (certificate reloaded when it changes) and mutual TLS between roles.
//! - [`timestamp`]: times as `google.protobuf.Timestamp`.
//! - [`trace_context`]: W3C trace context continued by every server and passed on by the gateway.
//! - [`turn`]: the order of overlapping batches of one bulk stream.
//! - [`context`]: what the binary hands to a role when it starts it.
//! - [`local`]: the roles running in this process, which the gateway calls without a network hop.
//! - [`shutdown`]: SIGTERM / SIGINT.

pub mod clock;
pub mod config;
pub mod consumer;
pub mod context;
pub mod copy;
pub mod db;
pub mod error;
pub mod feed_api;
pub mod foreground;
pub mod idempotency;
pub mod leader;
pub mod local;
pub mod metrics;
pub mod outbox;
pub mod page_token;
pub mod principal;
pub mod readiness;
pub mod refusal;
pub mod request_id;
pub mod role;
pub mod scope;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod timestamp;
pub mod tls;
pub mod trace_context;
pub mod turn;

pub use config::Config;
pub use context::RoleContext;
pub use error::Error;
pub use role::Role;
