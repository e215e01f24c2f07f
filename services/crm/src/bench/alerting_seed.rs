//! `--slos N --alert-rules M` with `--interactions`: SLOs over interactions
//! and rules on their events, defined halfway through the ingest, to show
//! what counting indicators and evaluating rules cost the ingest (both
//! halves' rates from one run), and how fast the alerting role counts.

use std::time::{Duration, Instant};

use crm_proto::alerting::v1::{
    AlertRule, BusinessIndicator, CreateAlertRuleRequest, CreateSloRequest, Slo,
    alerting_service_client::AlertingServiceClient, slo,
};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use super::transport::Transport;

const KINDS: [&str; 5] = ["purchase", "inquiry", "visit", "payment", "complaint"];
const CHANNELS: [&str; 5] = ["web", "email", "phone", "store", "billing"];

/// Defines `slos` SLOs (the first counts every interaction: the counter
/// the report reads) and `rules` rules; returns the counter SLO's id.
pub async fn define(transport: &Transport, slos: usize, rules: usize) -> anyhow::Result<Uuid> {
    let mut client = AlertingServiceClient::new(transport.clone());
    let mut counter = None;
    for n in 0..slos.max(1) {
        let (valid, good) = if n == 0 {
            ("true".to_string(), r#"outcome != "failed""#.to_string())
        } else {
            (
                format!(
                    r#"kind == "{}" && channel == "{}""#,
                    KINDS[n % KINDS.len()],
                    CHANNELS[(n / 5) % CHANNELS.len()]
                ),
                format!("duration_ms <= {}", 60_000 * (1 + n % 10)),
            )
        };
        let slo = Slo {
            name: format!("bench slo {n} {}", Uuid::now_v7()),
            owner: "bench".into(),
            objective: 0.99,
            window: Some(prost_types::Duration { seconds: 28 * 24 * 3600, nanos: 0 }),
            indicator: Some(slo::Indicator::Business(BusinessIndicator { valid, good })),
            ..Default::default()
        };
        let created = client.create_slo(CreateSloRequest { slo: Some(slo) }).await?.into_inner();
        counter.get_or_insert(Uuid::parse_str(&created.id)?);
    }
    for n in 0..rules {
        let rule = AlertRule {
            name: format!("bench rule {n} {}", Uuid::now_v7()),
            event_types: vec!["crm.interactions.v1.InteractionRecorded".into()],
            condition: format!(
                r#"event.interaction.kind == "{}" && event.interaction.duration_ms > {}"#,
                KINDS[n % KINDS.len()],
                599_000 - n as i64
            ),
            annotations: [(
                "summary".to_string(),
                "a long {{ event.interaction.kind }} for {{ contact_id }}".to_string(),
            )]
            .into(),
            ..Default::default()
        };
        client.create_alert_rule(CreateAlertRuleRequest { rule: Some(rule) }).await?;
    }
    println!("defined {} SLOs and {rules} rules on interactions", slos.max(1));
    counter.ok_or_else(|| anyhow::anyhow!("no SLO was made"))
}

/// Interactions the counter SLO has counted.
pub async fn counted(database_url: &str, counter: Uuid) -> anyhow::Result<i64> {
    let mut conn = PgConnection::connect(database_url).await?;
    Ok(sqlx::query_scalar("SELECT coalesce(sum(valid), 0)::bigint FROM alerting.sli_minutes WHERE slo_id = $1")
        .bind(counter)
        .fetch_one(&mut conn)
        .await?)
}

/// Waits until the counter SLO has counted the `stored` interactions of
/// the second half (or stalls for two minutes); prints how fast.
pub async fn report_counting(
    database_url: &str,
    counter: Uuid,
    before: i64,
    stored: usize,
    ingest_seconds: f64,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let target = before + stored as i64;
    let mut done = counted(database_url, counter).await?;
    let mut stalled = Instant::now();
    while done < target && stalled.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = counted(database_url, counter).await?;
        if now > done {
            stalled = Instant::now();
        }
        done = now;
    }
    let counted_events = done - before;
    let seconds = ingest_seconds + started.elapsed().as_secs_f64();
    println!(
        "alerting: {counted_events} of {stored} interactions counted {seconds:.1}s after the second half began = {:.0} events/s; caught up {:.1}s after it ended",
        counted_events as f64 / seconds,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
