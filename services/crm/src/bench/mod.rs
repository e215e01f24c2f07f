//! `crm bench`: a load generator for the suite.
//!
//! Each target (the gateway, and with `--direct` or self-hosting a role
//! straight) is loaded twice: closed-loop by N clients as fast as they go
//! (saturation), then open-loop at half the gateway's saturated rate (the
//! same rate for both targets, so latencies compare). The report gives
//! requests/s, p50/p90/p99/max and errors per method, then the gateway's
//! throughput as a share of direct and its added latency.
//!
//! - [`operations`]: the calls a mix is made of.
//! - `transport`: how calls reach a target (bearer key, or signed as a gateway).
//! - [`load`]: the two load shapes and their measurements.
//! - `report`: the table.
//! - `self_hosted`: a private suite on a scratch database when no `--gateway` is given.
//! - [`alert_latency`]: from `RecordInteraction` to the alert in Alertmanager, or to `SegmentEntered`.
//! - [`analytics`]: the customer analytics' whole-base computations, timed alone and beside an ingest.

pub mod alert_latency;
pub mod alerting_seed;
pub mod analytics;
pub mod load;
pub mod operations;
mod report;
pub mod scores_seed;
pub mod seed;
pub mod segments_seed;
mod self_hosted;
pub mod timeline_seed;
pub(crate) mod transport;

use std::time::Duration;

use crm_platform::{Config, Role};

pub use operations::{Mix, Operation, parse_mix};
use transport::Transport;

/// What `crm bench` was asked to do.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// A running gateway (`host:port`); `None` starts a private suite.
    pub gateway: Option<String>,
    /// The API key for `gateway`.
    pub key: Option<String>,
    /// A role to load directly as well (`host:port`), signing identity with the install's secret.
    pub direct: Option<String>,
    pub concurrency: usize,
    pub duration: Duration,
    pub mix: Mix,
    /// The fixed-rate phase's calls per second; `None`: half of the gateway's saturation.
    pub rate: Option<f64>,
    /// Contacts to import before the load (0: none).
    pub contacts: usize,
    /// Interactions to ingest before the load (0: none).
    pub interactions: usize,
    /// SLOs and rules on interactions defined halfway through the ingest (none: no alerting figures).
    pub alerting: Option<(usize, usize)>,
    /// Dynamic segments defined before the ingest (0: none).
    pub segments: usize,
    /// Measure the alert latency (`alert_latency`) instead of the load phases.
    pub alert_latency: bool,
    /// Measure the latency to `SegmentEntered` on a Subscribe stream instead of the load phases.
    pub segment_latency: bool,
    /// Time the customer analytics' whole-base computations before the load
    /// phases, with this many rounds of an ingest beside each (0: alone only).
    pub analytics: Option<usize>,
}

/// One target's results in both load shapes.
pub struct TargetResult {
    pub name: &'static str,
    pub saturation: load::Measurement,
    pub half_load: load::Measurement,
}

/// Runs the benchmark and prints the report.
pub async fn run(options: BenchOptions, config: Config) -> anyhow::Result<()> {
    match &options.gateway {
        Some(gateway_address) => {
            let key = options.key.clone().ok_or_else(|| anyhow::anyhow!("--gateway needs --key (or CRM_BENCH_KEY)"))?;
            let gateway = Transport::with_key(gateway_address, &key).await?;
            let direct = match &options.direct {
                Some(address) => {
                    let secret = config.internal_secret.as_ref().ok_or_else(|| {
                        anyhow::anyhow!("--direct signs calls as a gateway: set CRM_INTERNAL_SECRET to the install's")
                    })?;
                    Some(Transport::signed(address, secret.expose()).await?)
                }
                None => None,
            };
            prepare(&options, &gateway, config.database_url.as_ref().map(|url| url.expose())).await?;
            if options.alert_latency || options.segment_latency {
                let ingest = Transport::with_key(gateway_address, &key).await?;
                return alert_latency(&options, &config, &gateway, ingest).await;
            }
            compare(&options, gateway, direct).await
        }
        None => {
            let suite = self_hosted::SelfHosted::start(&config).await?;
            let gateway = Transport::with_key(&suite.address(Role::Gateway), suite.admin_key()).await?;
            let direct = Transport::signed(&suite.address(Role::Contacts), suite.internal_secret()).await?;
            prepare(&options, &gateway, Some(suite.database_url())).await?;
            let outcome = if options.alert_latency || options.segment_latency {
                let ingest = Transport::with_key(&suite.address(Role::Gateway), suite.admin_key()).await?;
                alert_latency(&options, &config, &gateway, ingest).await
            } else {
                compare(&options, gateway, Some(direct)).await
            };
            suite.stop().await?;
            outcome
        }
    }
}

/// Seeds contacts and interactions when asked (the interactions over the
/// seeded contacts when both are); refuses a mix that reads what is not there.
async fn prepare(options: &BenchOptions, gateway: &Transport, database_url: Option<&str>) -> anyhow::Result<()> {
    let mut seeded = Vec::new();
    if options.contacts > 0 {
        let mut sample = seed::seed(gateway, database_url, options.contacts).await?;
        seeded = std::mem::take(&mut sample.created);
        let _ = operations::SAMPLE.set(sample);
        if let Some(url) = database_url {
            settle(url).await?;
        }
    } else if options.mix.0.iter().any(|(operation, _)| operation.needs_sample()) {
        let Some(url) = database_url else {
            anyhow::bail!(
                "the mix reads contacts: load some with --contacts N, or set DATABASE_URL to draw them from the install"
            );
        };
        let sample = seed::sample_from(url).await?;
        if sample.ids.is_empty() {
            anyhow::bail!("the database holds no contacts to read: load some with --contacts N");
        }
        println!("reading a sample of {} stored contacts", sample.ids.len());
        let _ = operations::SAMPLE.set(sample);
    }
    if options.interactions > 0 {
        let contacts = if seeded.is_empty() { timeline_seed::contacts(options.interactions) } else { seeded };
        segments_seed::define(gateway, options.segments).await?;
        timeline_seed::seed(gateway, database_url, options.interactions, &contacts, options.alerting).await?;
        let _ = operations::TIMELINES.set(contacts);
    } else if options.analytics.is_some() || options.mix.0.iter().any(|(operation, _)| operation.needs_timelines()) {
        let Some(url) = database_url else {
            anyhow::bail!(
                "the mix reads timelines: load some with --interactions N, or set DATABASE_URL to draw them from the install"
            );
        };
        let contacts = timeline_seed::contacts_from(url).await?;
        if contacts.is_empty() {
            anyhow::bail!("the database holds no interactions to read: load some with --interactions N");
        }
        println!("reading the timelines of {} stored contacts", contacts.len());
        let _ = operations::TIMELINES.set(contacts);
    }
    // Whole-base evaluations, after the ingest (or over an install's own contacts).
    if options.segments > 0 && !options.alert_latency && !options.segment_latency {
        if options.interactions == 0 {
            segments_seed::define(gateway, options.segments).await?;
        }
        segments_seed::time_evaluations(gateway).await?;
    }
    if options.mix.0.iter().any(|(operation, _)| operation.needs_score_model()) {
        scores_seed::define(gateway).await?;
    }
    if let Some(rounds) = options.analytics {
        let contacts = operations::TIMELINES.get().cloned().unwrap_or_default();
        analytics::time_computations(gateway, database_url, &contacts, rounds).await?;
    }
    Ok(())
}

/// Waits (up to ten minutes) until the interactions and segmentation roles
/// have applied the contacts feed up to its end: right after a load they
/// are still working through one event per imported contact, and what is
/// measured next would share the machine with them.
async fn settle(database_url: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(database_url).await?;
    let started = std::time::Instant::now();
    let mut told = false;
    for (schema, consumer) in [("interactions", "interactions.contacts"), ("segmentation", "segmentation.contacts")] {
        loop {
            let behind: Option<bool> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT (SELECT (transaction_id::text::bigint, sequence) FROM contacts.outbox
                         ORDER BY transaction_id DESC, sequence DESC LIMIT 1)
                      > (SELECT (transaction_id, sequence) FROM {schema}.feed_cursors WHERE consumer = $1)"
            )))
            .bind(consumer)
            .fetch_one(&mut conn)
            .await?;
            if behind != Some(true) || started.elapsed() > std::time::Duration::from_secs(600) {
                break;
            }
            if !told {
                println!("waiting for the roles to apply the contacts feed before going on");
                told = true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
    println!("the roles applied the contacts feed {:.1}s after the import", started.elapsed().as_secs_f64());
    Ok(())
}

/// `--alert-latency`: defines the SLOs and rules asked for (unless the
/// ingest did), then measures against the suite's first Alertmanager.
/// The ingest of the busy phase has a connection of its own, as a billing
/// integration would.
async fn alert_latency(
    options: &BenchOptions,
    config: &Config,
    gateway: &Transport,
    ingest: Transport,
) -> anyhow::Result<()> {
    let watch = if options.segment_latency {
        alert_latency::Watch::SegmentEntered
    } else {
        let Some(alertmanager) = config.alerting.alertmanager_urls.first() else {
            anyhow::bail!(
                "--alert-latency reads the alerts from Alertmanager: set CRM_ALERTMANAGER_URLS to the one the suite sends to"
            );
        };
        alert_latency::Watch::Alertmanager(alertmanager.clone())
    };
    if let Some((slos, rules)) = options.alerting.filter(|_| options.interactions == 0) {
        alerting_seed::define(gateway, slos, rules).await?;
    }
    if options.interactions == 0 {
        segments_seed::define(gateway, options.segments).await?;
    }
    alert_latency::run(gateway, ingest, watch, options.duration).await
}

async fn compare(options: &BenchOptions, gateway: Transport, direct: Option<Transport>) -> anyhow::Result<()> {
    println!(
        "crm bench: {} clients, {} per phase, mix {}",
        options.concurrency,
        humantime::format_duration(options.duration),
        options.mix
    );
    let gateway_saturation = load::closed_loop(&gateway, &options.mix, options.concurrency, options.duration).await;
    let rate = options.rate.unwrap_or((gateway_saturation.throughput() / 2.0).max(1.0));
    let gateway_half = load::open_loop(&gateway, &options.mix, options.concurrency, options.duration, rate).await;
    let mut results = vec![TargetResult { name: "gateway", saturation: gateway_saturation, half_load: gateway_half }];
    let contacts_only = options.mix.0.iter().all(|(operation, _)| !operation.calls_other_roles());
    if !contacts_only && direct.is_some() {
        println!(
            "(the mix calls another role than contacts: --direct reaches the contacts role only, so it is skipped)"
        );
    }
    if let Some(direct) = direct.filter(|_| contacts_only) {
        let saturation = load::closed_loop(&direct, &options.mix, options.concurrency, options.duration).await;
        let half_load = load::open_loop(&direct, &options.mix, options.concurrency, options.duration, rate).await;
        results.push(TargetResult { name: "direct", saturation, half_load });
    }
    report::print(&results, rate, options.rate.is_none());
    Ok(())
}
