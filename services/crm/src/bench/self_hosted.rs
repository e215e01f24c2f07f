//! A private suite for `crm bench` without `--gateway`: every role in this
//! process on ephemeral ports, on a scratch database that is dropped after.

use crm_localpg::{LocalPostgres, Options};
use crm_platform::{Config, Role, config::Secret, db, telemetry::Telemetry};

use crate::{
    secrets,
    suite::{Install, RunningSuite},
};

pub struct SelfHosted {
    suite: RunningSuite,
    admin_key: String,
    internal_secret: String,
    server_url: String,
    database: String,
    database_url: String,
    /// The private PostgreSQL started for the run, if `DATABASE_URL` was unset.
    local_postgres: Option<LocalPostgres>,
}

impl SelfHosted {
    pub async fn start(config: &Config) -> anyhow::Result<SelfHosted> {
        let mut local_postgres = None;
        let server_url = match &config.database_url {
            Some(url) => url.expose().to_string(),
            None => {
                let dir = config.data_dir.join("bench-postgres");
                let cluster =
                    tokio::task::spawn_blocking(move || LocalPostgres::start(&dir, &Options::default())).await??;
                let url = cluster.url();
                local_postgres = Some(cluster);
                url
            }
        };
        let database = format!("crm_bench_{}", uuid::Uuid::now_v7().simple());
        let database_url = db::create_database(&server_url, &database).await?;
        let scratch_url = database_url.clone();

        let admin_key = secrets::ephemeral().expose().to_string();
        let internal_secret = secrets::ephemeral().expose().to_string();
        let mut bench_config = config.clone();
        for role in Role::ALL {
            bench_config.listen.insert(role, "127.0.0.1:0".parse()?);
        }
        bench_config.metrics_addr = None;
        // The benchmark measures the suite, not the rate limiter.
        for limit in bench_config.gateway_limits.rate.values_mut() {
            limit.per_second = 1_000_000;
            limit.burst = 1_000_000;
        }
        let install = Install {
            database_url: Secret::new(database_url),
            internal_secret: Secret::new(internal_secret.clone()),
            admin_key: Some(Secret::new(admin_key.clone())),
            config: bench_config,
            clock: Default::default(),
        };
        let suite = RunningSuite::start(&install, &Role::ALL, &Telemetry::for_tests()).await?;
        Ok(SelfHosted {
            suite,
            admin_key,
            internal_secret,
            server_url,
            database,
            database_url: scratch_url,
            local_postgres,
        })
    }

    pub fn address(&self, role: Role) -> String {
        self.suite.address(role).map(|addr| addr.to_string()).unwrap_or_default()
    }

    /// The scratch database (for the COPY baseline).
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    pub fn admin_key(&self) -> &str {
        &self.admin_key
    }

    pub fn internal_secret(&self) -> &str {
        &self.internal_secret
    }

    /// Stops the suite and drops the scratch database.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.suite.shutdown().await?;
        db::drop_database(&self.server_url, &self.database).await?;
        if let Some(cluster) = self.local_postgres {
            tokio::task::spawn_blocking(move || cluster.stop()).await??;
        }
        Ok(())
    }
}
