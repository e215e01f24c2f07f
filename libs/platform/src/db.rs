//! PostgreSQL for one role: a pool confined to the role's schema, opened with
//! retries at start-up, the role's migrations, run under an advisory lock,
//! and the pool its lag-tolerant reads use ([`ReadPool`]).
//!
//! Each role's pool sets `search_path` to its own schema, so a role's SQL
//! names its tables unqualified and cannot reach another role's by accident.

use std::{
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use sqlx::{
    AssertSqlSafe, PgPool, Postgres,
    migrate::Migrator,
    pool::PoolConnection,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use tokio::time::{Instant, sleep};

use crate::{config::DbSettings, role::Role};

/// Opens a pool for `role`, retrying with backoff until `settings.connect_timeout`
/// passes, so that the suite can start before its database is up.
#[tracing::instrument(skip(database_url, settings), fields(role = %role))]
pub async fn connect(database_url: &str, role: Role, settings: &DbSettings) -> anyhow::Result<PgPool> {
    let [name, _, _] = pool_names(role);
    let options = options(database_url, "DATABASE_URL", role, &name)?;
    let deadline = Instant::now() + settings.connect_timeout;
    let mut delay = Duration::from_millis(100);
    loop {
        let attempt = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await;
        match attempt {
            Ok(pool) => return Ok(pool),
            Err(error) if Instant::now() + delay < deadline && is_transient(&error) => {
                tracing::warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "database not reachable yet");
                sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(error) => {
                return Err(error).with_context(|| {
                    format!("could not connect to PostgreSQL for the {role} role; check DATABASE_URL and that the server is up")
                });
            }
        }
    }
}

/// The name of `role`'s pool (`application_name`), of its read pool and of
/// its background pool.
fn pool_names(role: Role) -> [String; 3] {
    [format!("crm-{role}"), format!("crm-{role}-reads"), format!("crm-{role}-background")]
}

/// A pool for `role`'s background work: the bursts of a feed follower
/// working off a backlog while callers are served (`consumer`). Its
/// connections open lazily (the first such burst opens one) and, when
/// PostgreSQL runs on this machine, their server processes run below the
/// callers' scheduling priority ([`lower_server_priority`]). After a
/// million-contact import three followers work off its events for
/// minutes, each burst a transaction whose statements PostgreSQL runs on
/// the same cores as the callers' lookups; at the usual priority a lookup
/// arriving mid-statement waited for a core (p99 3.4–3.9 ms at 1,000
/// lookups/s, 0.9–1.1 ms once they had caught up). The kernel runs a
/// waking caller's process ahead of them.
pub fn connect_background(database_url: &str, role: Role, settings: &DbSettings) -> anyhow::Result<PgPool> {
    let [_, _, name] = pool_names(role);
    let options = options(database_url, "DATABASE_URL", role, &name)?;
    Ok(PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(|connection, _| {
            Box::pin(async move {
                lower_server_priority(connection).await;
                Ok(())
            })
        })
        .connect_lazy_with(options))
}

/// Lowers the scheduling priority of the PostgreSQL process serving
/// `connection` to [`crate::foreground::BACKGROUND_NICE`], when that process
/// runs on this machine and may be changed by this one: PostgreSQL serves
/// each connection by a process of its own. The process is known by its
/// title, which names this connection's client port (`postgres: postgres
/// crm 127.0.0.1(54321) idle`); a server on another host, in a container
/// whose processes are not visible here, or run by another user (without
/// the right to change it) is left as it is, and the work runs at the usual
/// priority.
async fn lower_server_priority(connection: &mut sqlx::PgConnection) {
    let server: Result<(i32, Option<i32>), sqlx::Error> =
        sqlx::query_as("SELECT pg_backend_pid(), inet_client_port()").fetch_one(connection).await;
    let Ok((pid, Some(port))) = server else { return };
    let title = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if !serves_port(&title, port) {
        return;
    }
    let Some(pid) = rustix::process::Pid::from_raw(pid) else { return };
    if let Err(error) = rustix::process::setpriority_process(Some(pid), crate::foreground::BACKGROUND_NICE) {
        tracing::debug!(%error, "the background pool's server process keeps its priority");
    }
}

/// Whether a process `title` (its `/proc/<pid>/cmdline`) is PostgreSQL's
/// process serving a client on `port`.
fn serves_port(title: &[u8], port: i32) -> bool {
    let client = format!("({port})");
    title.starts_with(b"postgres:") && title.windows(client.len()).any(|part| part == client.as_bytes())
}

/// The names of the pools of every role but `role`: their transactions
/// write their own schemas only (each pool's `search_path`), never `role`'s.
pub fn other_roles_pools(role: Role) -> Vec<String> {
    Role::ALL.into_iter().filter(|other| *other != role).flat_map(pool_names).collect()
}

/// How `role` connects to the server at `url` (read from `variable`).
fn options(url: &str, variable: &str, role: Role, application: &str) -> anyhow::Result<PgConnectOptions> {
    let options = PgConnectOptions::from_str(url)
        .with_context(|| format!("{variable} is not a valid PostgreSQL URL"))?
        .application_name(application)
        .options([("search_path", role.schema())]);
    // The interactions tables are partitioned by month: planning a query
    // over every partition costs milliseconds, more than running it, so that
    // role plans each prepared statement once (all its queries lead with the
    // contact id, which no partition bound prunes anyway).
    Ok(if role == Role::Interactions { options.options([("plan_cache_mode", "force_generic_plan")]) } else { options })
}

/// How long a read waits for a replica's connection before it reads from the primary.
const REPLICA_WAIT: Duration = Duration::from_secs(2);

/// Where the calls that tolerate a little lag read (lists, exports, reports:
/// docs/configuration.md names them, at `DATABASE_READ_URL`): the replicas of
/// `DATABASE_READ_URL` when it is set, else the primary. When the replicas
/// give no connection within [`REPLICA_WAIT`] (down, failing over, the pool
/// spent), the read goes to the primary: a replica outage makes these calls
/// slower, never failed. Everything else (writes, single-record reads that
/// must see the caller's own writes, feeds) stays on the primary.
#[derive(Clone, Debug)]
pub struct ReadPool {
    replicas: Option<PgPool>,
    primary: PgPool,
    /// When (seconds since the epoch) a fallback was last logged: once a minute at most.
    warned_at: Arc<AtomicU64>,
}

impl ReadPool {
    /// Every read on the primary.
    pub fn primary_only(primary: PgPool) -> ReadPool {
        ReadPool { replicas: None, primary, warned_at: Arc::default() }
    }

    /// Reads on the replicas at `url` (`DATABASE_READ_URL`), connected
    /// lazily: replicas that are down at start delay nothing.
    pub fn with_replicas(url: &str, role: Role, settings: &DbSettings, primary: PgPool) -> anyhow::Result<ReadPool> {
        let [_, name, _] = pool_names(role);
        let options = options(url, "DATABASE_READ_URL", role, &name)?;
        let replicas = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(REPLICA_WAIT)
            .connect_lazy_with(options);
        Ok(ReadPool { replicas: Some(replicas), primary, warned_at: Arc::default() })
    }

    /// A connection to read from: a replica's, or the primary's when none comes.
    pub async fn acquire(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        if let Some(replicas) = &self.replicas {
            match replicas.acquire().await {
                Ok(connection) => return Ok(connection),
                Err(error) => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |since| since.as_secs());
                    if now.saturating_sub(self.warned_at.swap(now, Ordering::Relaxed)) >= 60 {
                        tracing::warn!(%error, "the replicas (DATABASE_READ_URL) gave no connection: reading from the primary");
                    }
                }
            }
        }
        self.primary.acquire().await
    }
}

/// Connection refusals and timeouts pass; bad credentials or a missing database do not.
fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        // 57P03: the database system is starting up.
        sqlx::Error::Database(db) => db.code().as_deref() == Some("57P03"),
        _ => false,
    }
}

/// The migrations every role shares (its outbox and feed cursors).
fn platform_migrator() -> Migrator {
    sqlx::migrate!("./migrations")
}

/// Applies the platform's and then the role's migrations to the role's schema.
///
/// Safe to run twice and concurrently: a session advisory lock per schema
/// serialises runners, and each migration set records what it applied in a
/// table of its own inside the schema.
#[tracing::instrument(skip(pool, role_migrator), fields(role = %role))]
pub async fn migrate(pool: &PgPool, role: Role, role_migrator: Migrator) -> anyhow::Result<()> {
    let schema = role.schema();
    let mut conn = pool.acquire().await.context("acquiring a connection for migrations")?;
    sqlx::query("SELECT pg_advisory_lock(hashtextextended($1, 0))")
        .bind(format!("crm.migrate.{schema}"))
        .execute(&mut *conn)
        .await
        .context("taking the migration lock")?;

    let outcome = async {
        // `schema` comes from the Role enum, never from input.
        sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"")))
            .execute(&mut *conn)
            .await
            .with_context(|| format!("creating schema {schema}"))?;
        for (set, mut migrator) in [("platform", platform_migrator()), ("role", role_migrator)] {
            migrator.set_locking(false); // we hold our own, per-schema lock
            migrator.dangerous_set_table_name(format!("\"{schema}\"._{set}_migrations"));
            migrator.run(&mut *conn).await.with_context(|| format!("applying the {set} migrations of {schema}"))?;
        }
        check_feed_positions(&mut conn, role).await
    }
    .await;

    let unlocked = sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
        .bind(format!("crm.migrate.{schema}"))
        .execute(&mut *conn)
        .await;
    if unlocked.is_err() {
        // A session lock dies with its session: never return this connection to the pool.
        conn.detach();
    }
    outcome
}

/// Refuses a database whose feed holds events of transactions this cluster
/// has not reached: a logical dump (`pg_dump`) restored into another
/// cluster, whose transaction counter starts afresh. There, new events
/// would take smaller positions than the old ones (a feed is ordered by
/// transaction id) and every follower, resuming after its stored position,
/// would miss them for ever. A physical backup (`pg_basebackup`,
/// CloudNativePG's) keeps the counter, and passes.
async fn check_feed_positions(conn: &mut sqlx::PgConnection, role: Role) -> anyhow::Result<()> {
    let (newest, reached): (Option<i64>, i64) = sqlx::query_as(
        "SELECT (SELECT max(transaction_id)::text::bigint FROM outbox),
                pg_snapshot_xmax(pg_current_snapshot())::text::bigint",
    )
    .fetch_one(&mut *conn)
    .await
    .context("reading the feed's newest position")?;
    match newest {
        Some(newest) if newest >= reached => anyhow::bail!(
            "the {role} feed holds events of transaction {newest}, which this PostgreSQL cluster has not \
             reached (it is at {reached}): the database was restored from a logical dump (pg_dump) into \
             another cluster, where new events would sort before the old ones and the followers would miss \
             them. Restore it from a physical backup (pg_basebackup, CloudNativePG's backups), which keeps the \
             cluster's transaction counter: deploy/README.md, \"Backups\""
        ),
        _ => Ok(()),
    }
}

/// A bulk write of fewer rows than this leaves its tables to autovacuum.
pub const TIDY_AFTER: usize = 1000;

/// Whether a bulk write of `written` rows, into a set of `total` rows as it
/// stands after the write, is worth a [`tidy`] at once: at least
/// [`TIDY_AFTER`] rows, and a fifth or more of the set.
pub fn worth_tidying(written: usize, total: usize) -> bool {
    written >= TIDY_AFTER && written * 5 >= total
}

/// Vacuums and analyses `tables` (quoted names in the role's schema) at
/// once, after the bulk write named by `after` (an import, a refresh of a
/// million documents): autovacuum would get to them minutes later, and
/// until then reads run on the statistics and visibility map from before
/// the write (at a million contacts, lookups p99 2.9–3.9 ms until a manual
/// `VACUUM ANALYZE`, under 2 ms after), and the vacuum, when it comes, lands
/// on whatever runs then. A failure is logged: the write is done either way.
pub async fn tidy(pool: &PgPool, tables: &[String], after: &'static str) {
    let started = std::time::Instant::now();
    let statement = format!("VACUUM (ANALYZE) {}", tables.join(", "));
    match sqlx::raw_sql(AssertSqlSafe(statement)).execute(pool).await {
        Ok(_) => tracing::info!(after, seconds = started.elapsed().as_secs_f64(), "tables vacuumed and analysed"),
        Err(error) => tracing::warn!(%error, after, "vacuuming the tables failed; autovacuum will"),
    }
}

/// Creates database `name` on the server at `server_url` unless it exists,
/// and returns its URL. For `crm up`, scratch databases and tests.
pub async fn create_database(server_url: &str, name: &str) -> anyhow::Result<String> {
    use sqlx::{Connection, PgConnection};
    check_database_name(name)?;
    let mut admin = PgConnection::connect(server_url).await.context("connecting to PostgreSQL to create a database")?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&mut admin)
        .await?;
    if !exists {
        // Checked above to be a plain identifier.
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).execute(&mut admin).await?;
    }
    admin.close().await?;
    Ok(with_database(server_url, name))
}

/// Drops database `name` on the server at `server_url`, closing its sessions.
pub async fn drop_database(server_url: &str, name: &str) -> anyhow::Result<()> {
    use sqlx::{Connection, PgConnection};
    check_database_name(name)?;
    let mut admin = PgConnection::connect(server_url).await.context("connecting to PostgreSQL to drop a database")?;
    sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))).execute(&mut admin).await?;
    admin.close().await?;
    Ok(())
}

/// Database names this code creates are plain identifiers: lower-case letters, digits, `_`.
fn check_database_name(name: &str) -> anyhow::Result<()> {
    let plain =
        !name.is_empty() && name.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_');
    anyhow::ensure!(plain, "{name:?} is not a plain database name (a-z, 0-9, _)");
    Ok(())
}

/// `url` with its database replaced by `name` (for scratch databases).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |index| index + 3);
    let authority_end = base[authority_start..].find('/').map_or(base.len(), |index| authority_start + index);
    format!("{}/{name}{query}", &base[..authority_end])
}

#[cfg(test)]
mod tests {
    use super::{serves_port, with_database};

    #[test]
    fn a_server_process_is_known_by_the_client_port_in_its_title() {
        let title = b"postgres: 15/main: postgres crm 127.0.0.1(54321) idle\0\0";
        assert!(serves_port(title, 54321));
        assert!(!serves_port(title, 5432), "a port that only begins the same");
        assert!(!serves_port(title, 4321), "nor one that ends the same");
        assert!(!serves_port(b"bash\0-c\0echo (54321)\0", 54321), "another program naming the port");
        assert!(!serves_port(b"", 54321), "no such process here");
    }

    #[test]
    fn the_database_is_replaced_and_the_rest_kept() {
        assert_eq!(with_database("postgres://u@h:5432/postgres", "t1"), "postgres://u@h:5432/t1");
        assert_eq!(with_database("postgres://u@h:5432", "t1"), "postgres://u@h:5432/t1");
        assert_eq!(with_database("postgres://u:p@h/db?sslmode=disable", "t1"), "postgres://u:p@h/t1?sslmode=disable");
    }
}
