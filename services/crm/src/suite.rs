//! Starting and stopping a set of roles in this process.
//!
//! Each role gets its own pool (confined to its schema), its migrations, its
//! listener and its shutdown token. The gateway routes to the roles running
//! here by their bound addresses and to the others by configured upstreams.
//! Shutdown is ordered: the gateway drains first, so the calls it is still
//! proxying can finish on roles that are still up; then the roles drain.

use std::{collections::HashMap, net::SocketAddr};

use anyhow::Context;
use crm_platform::{
    Config, Role, RoleContext, clock::Clock, config::Secret, db, metrics::Metrics, page_token::PageTokens,
    principal::IdentitySigner, telemetry::Telemetry,
};
use sqlx::migrate::Migrator;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

/// What every role of one install shares, resolved from the configuration.
pub struct Install {
    pub config: Config,
    pub database_url: Secret,
    /// Signs page tokens (and, with issue #5, gateway identity).
    pub internal_secret: Secret,
    /// The gateway's bootstrap admin key; required when the gateway runs here.
    pub admin_key: Option<Secret>,
    /// Where the roles read the time (the system's, but for tests).
    pub clock: Clock,
}

/// The roles running in this process.
pub struct RunningSuite {
    addresses: HashMap<Role, SocketAddr>,
    /// In shutdown order: the gateway first.
    tasks: Vec<(Role, CancellationToken, JoinHandle<anyhow::Result<()>>)>,
    metrics: Option<(SocketAddr, CancellationToken, JoinHandle<anyhow::Result<()>>)>,
    /// Where the gateway serves the console, and whether it is built there.
    console: Option<(SocketAddr, crm_gateway::console::ConsoleSite)>,
    /// Kept alive while the roles run: dropping the last meter provider stops recording.
    _telemetry: Telemetry,
}

/// The migrations of `role`'s schema.
pub fn migrator(role: Role) -> Migrator {
    match role {
        Role::Gateway => crm_gateway::migrator(),
        Role::Contacts => crm_contacts::migrator(),
        Role::Interactions => crm_interactions::migrator(),
        Role::Segmentation => crm_segmentation::migrator(),
        Role::Alerting => crm_alerting::migrator(),
    }
}

/// Applies the migrations of `roles` and returns.
pub async fn migrate(install: &Install, roles: &[Role]) -> anyhow::Result<()> {
    for role in roles {
        let pool = db::connect(install.database_url.expose(), *role, &install.config.db).await?;
        db::migrate(&pool, *role, migrator(*role)).await?;
        pool.close().await;
        tracing::info!(%role, "migrations applied");
    }
    Ok(())
}

impl RunningSuite {
    /// Migrates and starts `roles` on their configured addresses (port 0 picks a free one).
    pub async fn start(install: &Install, roles: &[Role], telemetry: &Telemetry) -> anyhow::Result<RunningSuite> {
        let metrics = Metrics::new(telemetry);
        let page_tokens = PageTokens::new(install.internal_secret.expose().as_bytes());
        let identity = IdentitySigner::new(install.internal_secret.expose().as_bytes());
        let local = crm_platform::local::LocalRoles::default();
        let mut suite = RunningSuite {
            addresses: HashMap::new(),
            tasks: Vec::new(),
            metrics: None,
            console: None,
            _telemetry: telemetry.clone(),
        };

        if let Some(addr) = install.config.metrics_addr {
            let listener = TcpListener::bind(addr).await.with_context(|| format!("binding /metrics on {addr}"))?;
            let token = CancellationToken::new();
            let bound = listener.local_addr()?;
            let task =
                tokio::spawn(crm_platform::metrics::serve_metrics(listener, telemetry.registry.clone(), token.clone()));
            tracing::info!(address = %bound, "serving /metrics");
            suite.metrics = Some((bound, token, task));
        }

        // Every listener is bound before any role opens a connection: the
        // default ports lie in the kernel's ephemeral range, where a role's
        // own connections to the database could otherwise take the next
        // role's port first.
        let mut listeners = Vec::new();
        for role in Role::ALL.into_iter().filter(|role| roles.contains(role)) {
            let addr = install.config.listen[&role];
            let listener = TcpListener::bind(addr).await.with_context(|| {
                format!(
                    "binding the {role} role on {addr}; set CRM_{}_ADDR to a free address",
                    role.as_str().to_uppercase()
                )
            })?;
            listeners.push((role, listener));
        }
        let mut console = match install.config.console.address(None) {
            Some(addr) if roles.contains(&Role::Gateway) => Some(TcpListener::bind(addr).await.with_context(|| {
                format!("binding the console on {addr}; set CRM_CONSOLE_ADDR to a free address or to off")
            })?),
            _ => None,
        };
        // Domain roles first, so that the gateway can route to them from its first call.
        for (role, listener) in listeners {
            let bound = listener.local_addr()?;
            let pool = db::connect(install.database_url.expose(), role, &install.config.db).await?;
            db::migrate(&pool, role, migrator(role)).await?;
            let reads = match &install.config.database_read_url {
                Some(url) => db::ReadPool::with_replicas(url.expose(), role, &install.config.db, pool.clone())?,
                None => db::ReadPool::primary_only(pool.clone()),
            };
            let background = db::connect_background(install.database_url.expose(), role, &install.config.db)?;
            let ctx = RoleContext {
                role,
                pool,
                background,
                reads,
                page_tokens: page_tokens.clone(),
                identity: identity.clone(),
                server: install.config.server.clone(),
                metrics: metrics.clone(),
                shutdown: CancellationToken::new(),
                local: local.clone(),
                clock: install.clock.clone(),
            };
            let token = ctx.shutdown.clone();
            let task = match role {
                Role::Gateway => {
                    let gateway = crm_gateway::GatewayContext {
                        role: ctx,
                        upstreams: suite.upstreams(&install.config),
                        bootstrap_key: install
                            .admin_key
                            .clone()
                            .context("the gateway needs CRM_BOOTSTRAP_ADMIN_KEY (at least 24 characters)")?,
                        limits: install.config.gateway_limits.clone(),
                        cors_allowed_origins: install.config.cors_allowed_origins.clone(),
                        jwt: install.config.jwt.clone(),
                        console: match console.take() {
                            Some(listener) => {
                                let site = crm_gateway::console::ConsoleSite {
                                    dir: install.config.console.dir.clone(),
                                    gateway_port: bound.port(),
                                    gateway_tls: install.config.server.public_tls.is_some(),
                                };
                                suite.console = Some((listener.local_addr()?, site.clone()));
                                Some((listener, site))
                            }
                            None => None,
                        },
                    };
                    tokio::spawn(crm_gateway::serve(gateway, listener))
                }
                Role::Contacts => tokio::spawn(crm_contacts::serve(ctx, install.config.contacts.clone(), listener)),
                Role::Interactions => {
                    let contacts = suite.upstreams(&install.config).remove(&Role::Contacts).unwrap_or_default();
                    tokio::spawn(crm_interactions::serve(ctx, install.config.interactions.clone(), contacts, listener))
                }
                Role::Segmentation => {
                    let mut upstreams = suite.upstreams(&install.config);
                    let feeds = crm_segmentation::Upstreams {
                        contacts: upstreams.remove(&Role::Contacts).unwrap_or_default(),
                        interactions: upstreams.remove(&Role::Interactions).unwrap_or_default(),
                    };
                    tokio::spawn(crm_segmentation::serve(ctx, feeds, listener))
                }
                Role::Alerting => {
                    let mut upstreams = suite.upstreams(&install.config);
                    let feeds = crm_alerting::Upstreams {
                        contacts: upstreams.remove(&Role::Contacts).unwrap_or_default(),
                        interactions: upstreams.remove(&Role::Interactions).unwrap_or_default(),
                        segmentation: upstreams.remove(&Role::Segmentation).unwrap_or_default(),
                    };
                    tokio::spawn(crm_alerting::serve(ctx, install.config.alerting.clone(), feeds, listener))
                }
            };
            suite.addresses.insert(role, bound);
            suite.tasks.insert(if role == Role::Gateway { 0 } else { suite.tasks.len() }, (role, token, task));
        }
        Ok(suite)
    }

    /// Where each domain role is reached: here if it runs here, else its configured upstreams.
    fn upstreams(&self, config: &Config) -> HashMap<Role, Vec<String>> {
        Role::DOMAIN
            .into_iter()
            .map(|role| match self.addresses.get(&role) {
                Some(addr) => {
                    // A role here speaks mutual TLS on its listener when the install does.
                    let scheme = if config.server.internal_tls.is_some() { "https" } else { "http" };
                    (role, vec![format!("{scheme}://{addr}")])
                }
                None => (role, config.upstreams[&role].clone()),
            })
            .collect()
    }

    /// The address `role` listens on, if it runs here.
    pub fn address(&self, role: Role) -> Option<SocketAddr> {
        self.addresses.get(&role).copied()
    }

    /// Where the console is served and what it serves, if it is.
    pub fn console(&self) -> Option<&(SocketAddr, crm_gateway::console::ConsoleSite)> {
        self.console.as_ref()
    }

    /// The `/metrics` address, if served.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(addr, _, _)| *addr)
    }

    /// Completes when any role stops by itself (a failure), with its result.
    pub async fn wait_for_failure(&mut self) -> anyhow::Result<()> {
        if self.tasks.is_empty() {
            return std::future::pending().await;
        }
        let (result, index, _) = futures_util::future::select_all(self.tasks.iter_mut().map(|(_, _, task)| task)).await;
        // A finished task must not be awaited again by `shutdown`.
        let (role, _, _) = self.tasks.remove(index);
        match result {
            Ok(Ok(())) => anyhow::bail!("the {role} role stopped unexpectedly"),
            Ok(Err(error)) => Err(error.context(format!("the {role} role failed"))),
            Err(join_error) => Err(anyhow::Error::new(join_error).context(format!("the {role} role panicked"))),
        }
    }

    /// Stops every role in order, each draining its in-flight calls.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let mut first_error = None;
        for (role, token, task) in self.tasks {
            token.cancel();
            let outcome = match task.await {
                Ok(result) => result,
                Err(join_error) => Err(join_error.into()),
            };
            match outcome {
                Ok(()) => tracing::info!(%role, "stopped"),
                Err(error) => {
                    tracing::error!(%role, error = format!("{error:#}"), "stopped with an error");
                    first_error.get_or_insert(error);
                }
            }
        }
        if let Some((_, token, task)) = self.metrics {
            token.cancel();
            let _ = task.await;
        }
        first_error.map_or(Ok(()), Err)
    }
}
