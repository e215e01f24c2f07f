//! What the binary hands to each role when it starts it.

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::{
    config::ServerSettings, metrics::Metrics, outbox::Feed, page_token::PageTokens, principal::IdentitySigner,
    role::Role,
};

/// Everything a domain role needs to serve: its migrated pool, the shared
/// secrets and limits, the process's metrics, and the shutdown signal.
#[derive(Clone)]
pub struct RoleContext {
    pub role: Role,
    /// A pool whose `search_path` is the role's own schema, already migrated.
    pub pool: PgPool,
    /// The pool of background work (the feed followers' bursts), below the
    /// callers' priority where it can be (`db::connect_background`).
    pub background: PgPool,
    /// Where lag-tolerant reads go: the replicas when `DATABASE_READ_URL` is set.
    pub reads: crate::db::ReadPool,
    pub page_tokens: PageTokens,
    /// Signs (gateway) and verifies (roles) the caller's identity between roles.
    pub identity: IdentitySigner,
    pub server: ServerSettings,
    pub metrics: Metrics,
    /// Cancelled when the role must stop; the role drains and returns.
    pub shutdown: CancellationToken,
    /// The roles of this process: a domain role registers its server stack
    /// here, and the gateway calls the registered roles in-process.
    pub local: crate::local::LocalRoles,
    /// Where the role reads the current time (injected in tests).
    pub clock: crate::clock::Clock,
}

impl RoleContext {
    /// Starts following the role's outbox (NOTIFY wake-ups until shutdown).
    pub async fn feed(&self) -> anyhow::Result<Feed> {
        Feed::start(self.pool.clone(), self.role, self.shutdown.clone()).await
    }
}
