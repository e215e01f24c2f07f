//! What each subcommand does.

use std::path::PathBuf;

use anyhow::Context;
use crm_localpg::{LocalPostgres, Options};
use crm_platform::{Config, Role, config::Secret, db, telemetry::Telemetry};

use crate::{
    alerting, bench,
    cli::{AlertingCommand, Command, ContactsCommand, ExportCommand, ImportCommand},
    secrets,
    suite::{self, Install, RunningSuite},
    transfer,
};

/// Runs `command` until it is done or the process is asked to stop.
pub async fn run(command: Command, config: Config, telemetry: &Telemetry) -> anyhow::Result<()> {
    match command {
        Command::Up { data_dir } => up(config, data_dir, telemetry).await,
        Command::Serve { target } => {
            let install = install_for_serve(config)?;
            serve_until_signal(&install, &target.0, telemetry, None).await
        }
        Command::Alerting { command: AlertingCommand::ExportRules { gateway, key, output } } => {
            alerting::export_rules(&gateway, &key, output.as_deref()).await
        }
        Command::Alerting { command: AlertingCommand::Apply { gateway, key, file } } => {
            let report = alerting::apply(&gateway, &key, &file).await?;
            print!("{report}");
            Ok(())
        }
        Command::Alerting { command: AlertingCommand::ExportOpenslo { gateway, key, output } } => {
            alerting::export_openslo(&gateway, &key, output.as_deref()).await
        }
        Command::Contacts { command: ContactsCommand::FitMatcher } => fit_matcher(config).await,
        Command::Import { command: ImportCommand::Contacts(args) } => transfer::import::contacts::run(args).await,
        Command::Import { command: ImportCommand::Interactions(args) } => {
            transfer::import::interactions::run(args).await
        }
        Command::Export { command: ExportCommand::Contacts(args) } => transfer::export::contacts(args).await,
        Command::Export { command: ExportCommand::Subject(args) } => transfer::subject::run(args).await,
        Command::Export { command: ExportCommand::Interactions(args) } => transfer::export::interactions(args).await,
        Command::Export { command: ExportCommand::Segment(args) } => transfer::export::segment(args).await,
        Command::Migrate { target } => suite::migrate(&install_for_serve(config)?, &target.0).await,
        Command::Bench {
            gateway,
            key,
            direct,
            concurrency,
            duration,
            mix,
            rate,
            contacts,
            interactions,
            slos,
            alert_rules,
            segments,
            alert_latency,
            segment_latency,
            analytics,
            analytics_rounds,
        } => {
            let options = bench::BenchOptions {
                gateway,
                key,
                direct,
                concurrency: concurrency.max(1),
                duration,
                mix,
                rate,
                contacts,
                interactions,
                alerting: (slos > 0 || alert_rules > 0).then_some((slos, alert_rules)),
                segments,
                alert_latency,
                segment_latency,
                analytics: analytics.then_some(analytics_rounds),
            };
            bench::run(options, config).await
        }
    }
}

/// A process serving one role is, to a tracing backend, that role
/// (`crm-contacts`, `crm-gateway`…): a split install's spans say which
/// Deployment they came from. `OTEL_SERVICE_NAME` set by hand wins; every
/// other process is `crm`.
pub fn name_the_service(command: &Command, config: &mut Config) {
    if let (Command::Serve { target }, Some(otlp)) = (command, config.otlp.as_mut())
        && let [role] = target.0.as_slice()
        && std::env::var_os("OTEL_SERVICE_NAME").is_none()
    {
        otlp.service_name = format!("crm-{role}");
    }
}

/// `crm serve` and `crm migrate` need a database; the secrets must be shared by every replica.
fn install_for_serve(config: Config) -> anyhow::Result<Install> {
    let database_url = config.database_url.clone().context(
        "DATABASE_URL is not set; point it at PostgreSQL (postgres://user:password@host:5432/crm), or use `crm up`, which starts its own",
    )?;
    let internal_secret = config.internal_secret.clone().unwrap_or_else(|| {
        tracing::warn!(
            "CRM_INTERNAL_SECRET is not set: page tokens will not survive a restart or work across replicas"
        );
        secrets::ephemeral()
    });
    let admin_key = config.bootstrap_admin_key.clone();
    Ok(Install { config, database_url, internal_secret, admin_key, clock: Default::default() })
}

/// `crm up`: every role, a private PostgreSQL when needed, and the bootstrap credential printed.
async fn up(mut config: Config, data_dir: Option<PathBuf>, telemetry: &Telemetry) -> anyhow::Result<()> {
    if let Some(dir) = data_dir {
        config.data_dir = dir;
    }
    // The console is on by default here (off under `serve`).
    if config.console.addr == crm_platform::config::ConsoleAddr::Unset {
        config.console.addr = crm_platform::config::ConsoleAddr::At(crm_platform::config::ConsoleSettings::UP_DEFAULT);
    }
    let dir = config.data_dir.clone();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating the data directory {}", dir.display()))?;

    let mut local_postgres = None;
    let database_url = match config.database_url.clone() {
        Some(url) => url,
        None => {
            let pg_dir = dir.join("postgres");
            let cluster =
                tokio::task::spawn_blocking(move || LocalPostgres::start(&pg_dir, &Options::default())).await??;
            let url = Secret::new(db::create_database(&cluster.url(), "crm").await?);
            local_postgres = Some(cluster);
            url
        }
    };
    let internal_secret = match config.internal_secret.clone() {
        Some(secret) => secret,
        None => secrets::load_or_create(&dir.join("internal-secret"), "")?,
    };
    let admin_key = match config.bootstrap_admin_key.clone() {
        Some(key) => key,
        None => secrets::load_or_create(&dir.join("admin-key"), "crm_admin_")?,
    };
    let install = Install {
        config,
        database_url,
        internal_secret,
        admin_key: Some(admin_key.clone()),
        clock: Default::default(),
    };

    let outcome =
        serve_until_signal(&install, &Role::ALL, telemetry, Some((&admin_key, local_postgres.as_ref()))).await;
    if let Some(cluster) = local_postgres
        && let Err(error) = tokio::task::spawn_blocking(move || cluster.stop()).await?
    {
        tracing::warn!(error = format!("{error:#}"), "stopping the private PostgreSQL failed");
    }
    outcome
}

/// Starts `roles`, prints where they are, and stops them in order on SIGTERM/SIGINT.
async fn serve_until_signal(
    install: &Install,
    roles: &[Role],
    telemetry: &Telemetry,
    banner: Option<(&Secret, Option<&LocalPostgres>)>,
) -> anyhow::Result<()> {
    let mut suite = RunningSuite::start(install, roles, telemetry).await?;
    if let Some((admin_key, local_postgres)) = banner {
        print_banner(&suite, admin_key, local_postgres, &install.config);
    }
    let failure = tokio::select! {
        () = crm_platform::shutdown::signal() => None,
        failure = suite.wait_for_failure() => Some(failure),
    };
    let stopped = suite.shutdown().await;
    match failure {
        Some(failure) => failure,
        None => stopped,
    }
}

fn print_banner(suite: &RunningSuite, admin_key: &Secret, local_postgres: Option<&LocalPostgres>, config: &Config) {
    let gateway = suite.address(Role::Gateway).map(|addr| addr.to_string()).unwrap_or_default();
    println!("CRM suite is up.");
    println!("  gateway (gRPC):   {gateway}");
    println!("  admin API key:    {}", admin_key.expose());
    if let Some(metrics) = suite.metrics_address() {
        println!("  metrics:          http://{metrics}/metrics");
    }
    if let Some((address, site)) = suite.console() {
        match site.missing() {
            None => println!("  console:          http://{address}/"),
            Some(reason) => println!("  console:          not served at http://{address}/: {reason}"),
        }
    }
    match local_postgres {
        Some(cluster) => println!(
            "  database:         private PostgreSQL on 127.0.0.1:{} in {}",
            cluster.port(),
            config.data_dir.join("postgres").display()
        ),
        None => println!("  database:         DATABASE_URL"),
    }
    println!("Try: grpcurl -plaintext {gateway} grpc.health.v1.Health/Check");
    println!("Stop with Ctrl-C; calls in flight finish first.");
}

/// Fits and stores a matching model on DATABASE_URL's contacts, and prints it.
async fn fit_matcher(config: Config) -> anyhow::Result<()> {
    let install = install_for_serve(config)?;
    let pool = db::connect(install.database_url.expose(), Role::Contacts, &install.config.db).await?;
    db::migrate(&pool, Role::Contacts, crm_contacts::migrator()).await?;
    let fitted = crm_contacts::store::matcher::fit(&pool).await?;
    println!(
        "matching model {} fitted on {} contacts ({} random pairs, {} blocked pairs, {} EM rounds); prior {:.4}",
        fitted.model.version,
        fitted.contacts,
        fitted.random_pairs,
        fitted.blocked_pairs,
        fitted.iterations,
        fitted.model.prior
    );
    for field in crm_contacts::matching::compare::Field::ALL {
        let weights: Vec<String> = (0..=field.different())
            .map(|level| format!("{} {:+.2}", field.levels()[usize::from(level)], fitted.model.weight(field, level)))
            .collect();
        println!("  {:<12} {}", field.name(), weights.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::cli::Targets;

    fn named(targets: Vec<Role>) -> String {
        let vars = HashMap::from([("OTEL_EXPORTER_OTLP_ENDPOINT".to_string(), "http://collector:4317".to_string())]);
        let mut config = Config::from_vars(&vars).unwrap();
        name_the_service(&Command::Serve { target: Targets(targets) }, &mut config);
        config.otlp.unwrap().service_name
    }

    #[test]
    fn a_process_serving_one_role_is_named_for_it() {
        if std::env::var_os("OTEL_SERVICE_NAME").is_some() {
            return; // set by hand, it wins: nothing to name
        }
        assert_eq!(named(vec![Role::Contacts]), "crm-contacts");
        assert_eq!(named(vec![Role::Gateway]), "crm-gateway");
        assert_eq!(named(Role::ALL.to_vec()), "crm");
        assert_eq!(named(vec![Role::Gateway, Role::Contacts]), "crm");
    }
}
