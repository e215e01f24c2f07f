//! `--interactions N`: ingests N synthetic interactions (spread over N/50
//! new contact ids, or over the contacts `--contacts` imported, over the
//! last year; purchases carry one or two SKUs of a catalogue of 200 in
//! which each even SKU is often bought with the next, so that the customer
//! analytics find rules) through `IngestInteractions`, timed, next to
//! a plain `COPY` of the same rows into a scratch table in the same run;
//! keeps the contact ids for the timeline and summary operations.

use std::time::Instant;

use crm_proto::{
    common::v1::Money,
    interactions::v1::{
        Channel, Direction, IngestInteractionsRequest, IngestOutcome, Interaction, Kind, ProductLine,
        interactions_service_client::InteractionsServiceClient,
    },
};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use super::transport::Transport;

pub const BATCH: usize = 5000;
const PER_CONTACT: usize = 50;
const CHANNELS: [Channel; 5] = [Channel::Web, Channel::Email, Channel::Phone, Channel::Store, Channel::Billing];
const KINDS: [Kind; 5] = [Kind::Purchase, Kind::Inquiry, Kind::Visit, Kind::Payment, Kind::Complaint];

/// The contacts the interactions belong to.
pub fn contacts(count: usize) -> Vec<Uuid> {
    (0..count.div_ceil(PER_CONTACT).max(1)).map(|_| Uuid::now_v7()).collect()
}

/// Contacts with stored interactions (a benchmark against a loaded install).
pub async fn contacts_from(database_url: &str) -> anyhow::Result<Vec<Uuid>> {
    let mut conn = PgConnection::connect(database_url).await?;
    let contacts = sqlx::query_scalar(
        "SELECT DISTINCT contact_id FROM interactions.interaction_sources TABLESAMPLE SYSTEM (1) LIMIT 20000",
    )
    .fetch_all(&mut conn)
    .await?;
    Ok(contacts)
}

/// The SKUs of purchase `n`: one of 200, and two times in three its pair
/// (SKU 2k with 2k+1), so that each pair makes a strong rule.
fn product_lines(n: usize) -> Vec<ProductLine> {
    let first = (n / KINDS.len()).wrapping_mul(7919) % 200;
    let line = |sku: usize| ProductLine { sku: format!("SKU-{sku:03}"), quantity: 1, unit_price: None };
    if n.is_multiple_of(3) { vec![line(first)] } else { vec![line(first), line(first ^ 1)] }
}

/// Interaction `n`, the same every time it is asked for.
pub fn interaction(n: usize, contacts: &[Uuid], now: i64) -> Interaction {
    let kind = KINDS[n % KINDS.len()];
    let money = matches!(kind, Kind::Purchase | Kind::Payment);
    Interaction {
        contact_id: contacts[n % contacts.len()].to_string(),
        channel: CHANNELS[(n / 7) % CHANNELS.len()] as i32,
        kind: kind as i32,
        direction: if n.is_multiple_of(11) { Direction::Outbound } else { Direction::Inbound } as i32,
        occurred_at: Some(prost_types::Timestamp { seconds: now - ((n as i64 * 7919) % (365 * 86_400)), nanos: 0 }),
        subject: format!("bench interaction {n}"),
        amount: money.then(|| Money { currency_code: "EUR".into(), minor_units: 100 + (n % 10_000) as i64 }),
        duration_ms: (n % 600_000) as i64,
        sentiment: (kind == Kind::Complaint).then_some(-0.4),
        pain_points: if kind == Kind::Complaint { vec![format!("problem {}", n % 13)] } else { Vec::new() },
        product_lines: if kind == Kind::Purchase { product_lines(n) } else { Vec::new() },
        source: "bench".into(),
        external_id: format!("I{n}"),
        ..Default::default()
    }
}

/// Ingests interactions `range` for `contacts` in one stream; returns (stored, other, seconds).
async fn ingest(
    transport: &Transport,
    range: std::ops::Range<usize>,
    contacts: &[Uuid],
    now: i64,
) -> anyhow::Result<(usize, usize, f64)> {
    let started = Instant::now();
    let (start, end) = (range.start, range.end);
    let batches = (start / BATCH..end.div_ceil(BATCH)).map({
        let contacts = contacts.to_vec();
        move |batch| IngestInteractionsRequest {
            batch_id: batch.to_string(),
            interactions: ((batch * BATCH).max(start)..((batch + 1) * BATCH).min(end))
                .map(|n| interaction(n, &contacts, now))
                .collect(),
        }
    });
    let mut client = InteractionsServiceClient::new(transport.clone()).max_encoding_message_size(64 << 20);
    let mut acks = client.ingest_interactions(tokio_stream::iter(batches)).await?.into_inner();
    let (mut stored, mut other) = (0usize, 0usize);
    while let Some(ack) = acks.message().await? {
        for result in ack.results {
            if result.outcome() == IngestOutcome::Stored { stored += 1 } else { other += 1 }
        }
    }
    Ok((stored, other, started.elapsed().as_secs_f64()))
}

/// Ingests `count` interactions for `contacts`; prints rows/s next to
/// COPY's. With `alerting`, the second half is ingested after SLOs and
/// rules are defined, and both halves' rates are printed.
pub async fn seed(
    transport: &Transport,
    database_url: Option<&str>,
    count: usize,
    contacts: &[Uuid],
    alerting: Option<(usize, usize)>,
) -> anyhow::Result<()> {
    let now = chrono::Utc::now().timestamp() - 3600;
    let copy_rate = match database_url {
        Some(url) => Some(copy_baseline(url, count, contacts, now).await?),
        None => None,
    };
    let applied_before = match database_url {
        Some(url) => Some(segmentation_applied(url).await?),
        None => None,
    };
    let started = Instant::now();
    let (stored, other, elapsed) = match alerting {
        None => ingest(transport, 0..count, contacts, now).await?,
        Some((slos, rules)) => {
            let half = count / 2;
            let (stored_a, other_a, seconds_a) = ingest(transport, 0..half, contacts, now).await?;
            if let Some(url) = database_url {
                // Both halves start with every follower caught up: neither works off the other's backlog.
                drained(url).await?;
            }
            let counter = super::alerting_seed::define(transport, slos, rules).await?;
            let counted_before = match database_url {
                Some(url) => super::alerting_seed::counted(url, counter).await?,
                None => 0,
            };
            let (stored_b, other_b, seconds_b) = ingest(transport, half..count, contacts, now).await?;
            let (rate_a, rate_b) = (half as f64 / seconds_a, (count - half) as f64 / seconds_b);
            println!(
                "ingest without alerting definitions: {rate_a:.0} rows/s; with {slos} SLOs and {rules} rules on interactions: {rate_b:.0} rows/s ({:.2} of it)",
                rate_b / rate_a
            );
            if let Some(url) = database_url {
                super::alerting_seed::report_counting(url, counter, counted_before, stored_b, seconds_b).await?;
            }
            (stored_a + stored_b, other_a + other_b, seconds_a + seconds_b)
        }
    };
    let rate = count as f64 / elapsed;
    // What segmentation had applied when the ingest ended: the rest is its backlog.
    let applied_at_end = match database_url {
        Some(url) => Some(segmentation_applied(url).await?),
        None => None,
    };
    println!("ingest: {count} interactions in {elapsed:.1}s = {rate:.0} rows/s ({stored} stored, {other} other)");
    if let Some(copy_rate) = copy_rate {
        println!("COPY of the same rows: {copy_rate:.0} rows/s; ingest / COPY = {:.2}", rate / copy_rate);
    }
    if let (Some(url), Some(before), Some(at_end)) = (database_url, applied_before, applied_at_end) {
        // The segmentation role follows the interactions feed: how fast it keeps up.
        let ended = started.elapsed().as_secs_f64();
        let target = feed_end(url).await?;
        let mut applied = at_end;
        let mut stalled = Instant::now();
        while applied < target && stalled.elapsed() < std::time::Duration::from_secs(120) {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let now_applied = segmentation_applied(url).await?;
            if now_applied > applied {
                stalled = Instant::now();
            }
            applied = now_applied;
        }
        let total = started.elapsed().as_secs_f64();
        let done = applied - before;
        println!(
            "segmentation: {done} events of the interactions feed (the {stored} interactions and the invoice and payment events they raised) applied {:.1}s after the ingest began = {:.0} events/s ({:.2} of the ingest rate); caught up {:.1}s after the ingest ended",
            total,
            done as f64 / total,
            (done as f64 / total) / rate,
            total - ended
        );
        let backlog = applied - at_end;
        if backlog > 0 {
            let backlog_rate = backlog as f64 / (total - ended);
            println!(
                "segmentation alone on its backlog: {backlog} events in {:.1}s = {backlog_rate:.0} events/s ({:.2} of the ingest rate)",
                total - ended,
                backlog_rate / rate
            );
        }
    }
    Ok(())
}

/// The followers of the interactions feed, by schema and consumer name.
const FOLLOWERS: [(&str, &str); 3] = [
    ("segmentation", "segmentation.interactions"),
    ("alerting", "alerting.interactions"),
    ("alerting", "alerting.rules.interactions"),
];

/// Waits (up to five minutes) until every follower of the interactions feed has applied it to its end.
pub async fn drained(database_url: &str) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(database_url).await?;
    let started = Instant::now();
    let Some(end) = last_event(&mut conn).await? else { return Ok(()) };
    for (schema, consumer) in FOLLOWERS {
        loop {
            let at: Option<(i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT transaction_id, sequence FROM {schema}.feed_cursors WHERE consumer = $1"
            )))
            .bind(consumer)
            .fetch_optional(&mut conn)
            .await?;
            if at.is_some_and(|at| at >= end) || started.elapsed() > std::time::Duration::from_secs(300) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// How far the segmentation role has applied the interactions feed: its
/// cursor's event number (the feed numbers every event in one sequence).
/// Counting the read model's rows instead took 1.2 s at ten million, and
/// polling that count kept a core from the consumer it measured.
async fn segmentation_applied(database_url: &str) -> anyhow::Result<i64> {
    let mut conn = PgConnection::connect(database_url).await?;
    let at: Option<i64> = sqlx::query_scalar(
        "SELECT sequence FROM segmentation.feed_cursors WHERE consumer = 'segmentation.interactions'",
    )
    .fetch_optional(&mut conn)
    .await?;
    Ok(at.unwrap_or(0))
}

/// The number of the interactions feed's last event (0 when it has none).
async fn feed_end(database_url: &str) -> anyhow::Result<i64> {
    let mut conn = PgConnection::connect(database_url).await?;
    Ok(last_event(&mut conn).await?.map_or(0, |(_, sequence)| sequence))
}

/// The position (transaction, sequence) of the interactions feed's last event, if any.
async fn last_event(conn: &mut PgConnection) -> anyhow::Result<Option<(i64, i64)>> {
    Ok(sqlx::query_as(
        "SELECT transaction_id::text::bigint, sequence FROM interactions.outbox
         ORDER BY transaction_id DESC, sequence DESC LIMIT 1",
    )
    .fetch_optional(conn)
    .await?)
}

/// A plain COPY of the same rows (keys, time, kind, the rest as JSON text) into a scratch table.
async fn copy_baseline(database_url: &str, count: usize, contacts: &[Uuid], now: i64) -> anyhow::Result<f64> {
    let mut conn = PgConnection::connect(database_url).await?;
    sqlx::query(
        "CREATE TEMP TABLE bench_interactions (contact_id uuid, occurred_at timestamptz, id uuid, kind int, document text)",
    )
    .execute(&mut conn)
    .await?;
    let started = Instant::now();
    let mut copy = conn.copy_in_raw("COPY bench_interactions FROM STDIN").await?;
    let mut text = String::new();
    for n in 0..count {
        let row = interaction(n, contacts, now);
        let when = chrono::DateTime::from_timestamp(row.occurred_at.map_or(0, |t| t.seconds), 0).unwrap_or_default();
        let document = format!("{row:?}").replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n");
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\t{document}\n",
            row.contact_id,
            when.to_rfc3339(),
            Uuid::now_v7(),
            row.kind
        ));
        if text.len() > 8 << 20 {
            copy.send(text.as_bytes()).await?;
            text.clear();
        }
    }
    copy.send(text.as_bytes()).await?;
    copy.finish().await?;
    Ok(count as f64 / started.elapsed().as_secs_f64())
}
