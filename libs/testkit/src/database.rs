//! A fresh database per test.

use std::sync::OnceLock;

use anyhow::Context;
use crm_localpg::{LocalPostgres, Options};
use crm_platform::{Role, config::DbSettings, db};
use sqlx::{Connection, PgConnection, PgPool};

use crate::TcpProxy;

/// The server tests create their databases on: `DATABASE_URL`, else a private
/// cluster (fsync off) kept under the temp directory and reused by later runs.
fn server_url() -> anyhow::Result<String> {
    static SERVER: OnceLock<Result<String, String>> = OnceLock::new();
    SERVER
        .get_or_init(|| match std::env::var("DATABASE_URL") {
            Ok(url) if !url.is_empty() => Ok(url),
            _ => {
                let dir = std::env::temp_dir().join(format!("crm-testkit-pg-{}", nix::unistd::geteuid()));
                LocalPostgres::start(&dir, &Options { unsafe_no_fsync: true })
                    .map(|cluster| cluster.url())
                    .map_err(|error| format!("{error:#}"))
            }
        })
        .clone()
        .map_err(|error| anyhow::anyhow!("no PostgreSQL for the tests: {error}"))
}

/// A database that exists for one test and is dropped after it.
pub struct TestDb {
    /// URL of the test's own database.
    pub url: String,
    name: String,
    server_url: String,
}

impl TestDb {
    /// Creates an empty database with a fresh name.
    pub async fn create() -> anyhow::Result<TestDb> {
        let server_url = server_url()?;
        let name = format!("crm_test_{}", uuid::Uuid::now_v7().simple());
        let url = db::create_database(&server_url, &name).await.context("creating the test database")?;
        Ok(TestDb { url, name, server_url })
    }

    /// Creates an empty database with a fresh name on the server at `server_url`.
    pub async fn create_on(server_url: &str) -> anyhow::Result<TestDb> {
        let name = format!("crm_test_{}", uuid::Uuid::now_v7().simple());
        let url = db::create_database(server_url, &name).await.context("creating the test database")?;
        Ok(TestDb { url, name, server_url: server_url.to_string() })
    }

    /// The same database on another server (a restored copy of this one's), dropped there after.
    pub fn copy_on(&self, server_url: &str) -> TestDb {
        TestDb {
            url: db::with_database(server_url, &self.name),
            name: self.name.clone(),
            server_url: server_url.into(),
        }
    }

    /// A pool confined to `role`'s schema, with the role's migrations applied:
    /// four connections at most, since two tests' suites beside it share the
    /// test server's hundred.
    pub async fn role_pool(&self, role: Role) -> anyhow::Result<PgPool> {
        let settings = DbSettings { max_connections: 4, connect_timeout: std::time::Duration::from_secs(10) };
        let pool = db::connect(&self.url, role, &settings).await?;
        db::migrate(&pool, role, crm::suite::migrator(role)).await?;
        Ok(pool)
    }

    /// The test database's URL through a [`TcpProxy`] the test can cut (a
    /// database outage as the suite sees one). Needs a server on TCP.
    pub async fn behind_proxy(&self) -> anyhow::Result<(TcpProxy, String)> {
        use std::str::FromStr;
        let options = sqlx::postgres::PgConnectOptions::from_str(&self.url)?;
        let host = options.get_host();
        anyhow::ensure!(!host.starts_with('/'), "the test database is on a Unix socket; a proxy needs TCP");
        let target = tokio::net::lookup_host((host, options.get_port()))
            .await?
            .next()
            .context("the test database's host does not resolve")?;
        let proxy = TcpProxy::start(target).await?;
        let url = format!("postgres://{}@{}/{}", options.get_username(), proxy.address(), self.name);
        Ok((proxy, url))
    }

    /// A plain connection to the test database, for what a test does behind the suite's back.
    pub async fn connect(&self) -> anyhow::Result<PgConnection> {
        Ok(PgConnection::connect(&self.url).await?)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (server_url, name) = (self.server_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime: do the async work on a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(db::drop_database(&server_url, &name))
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}
