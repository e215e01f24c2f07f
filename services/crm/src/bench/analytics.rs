//! `--analytics`: the customer analytics' whole-base computations (RFM, the
//! lifetime-value fit, the association rules), each timed through the
//! gateway alone, then beside an ingest: the ingest's rate for the same
//! length of time alone and with the computation running, their ratio
//! (issue #16 asks for under 10% slower), and how long the computation took
//! beside it (it gives way to the ingest). The ingest's rate alone drifts
//! between phases of one run by more than the 10% asked, so each
//! computation has `--analytics-rounds` rounds (3 by default; 0 times it
//! alone only) of the two phases in alternating order (alone first, then
//! beside first), and the median of their ratios is printed beside each.
//! Every phase starts once the interactions feed's followers have caught up
//! (none works off another's backlog), no vacuum runs and a checkpoint has
//! written out what came before. The interactions ingested here are new
//! ones (numbered past any `--interactions` seed) over the seeded timelines.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crm_proto::{
    interactions::v1::{IngestInteractionsRequest, interactions_service_client::InteractionsServiceClient},
    segmentation::v1::{
        ComputeAssociationRulesRequest, ComputeRfmRequest, FitLifetimeValueRequest,
        segmentation_service_client::SegmentationServiceClient,
    },
};
use uuid::Uuid;

use super::{
    timeline_seed::{self, BATCH},
    transport::Transport,
};

/// How long a computation may take before the bench gives up on it.
const WHOLE_BASE: Duration = Duration::from_secs(600);
/// The longest an ingest phase runs (shorter when the computation ends first).
const INGEST_PHASE: Duration = Duration::from_secs(15);

/// One of the three computations.
#[derive(Clone, Copy, Debug)]
enum Computation {
    Rfm,
    LifetimeValue,
    AssociationRules,
}

impl Computation {
    const ALL: [Computation; 3] = [Computation::Rfm, Computation::LifetimeValue, Computation::AssociationRules];

    fn name(self) -> &'static str {
        match self {
            Computation::Rfm => "ComputeRfm",
            Computation::LifetimeValue => "FitLifetimeValue",
            Computation::AssociationRules => "ComputeAssociationRules",
        }
    }

    /// Runs it over the whole base (EUR, the default windows); answers how long it took.
    async fn run(self, transport: Transport) -> anyhow::Result<Duration> {
        let mut segmentation = SegmentationServiceClient::new(transport);
        let started = Instant::now();
        match self {
            Computation::Rfm => {
                let mut request =
                    tonic::Request::new(ComputeRfmRequest { currency_code: "EUR".into(), window_days: 0 });
                request.set_timeout(WHOLE_BASE);
                segmentation.compute_rfm(request).await?;
            }
            Computation::LifetimeValue => {
                let mut request =
                    tonic::Request::new(FitLifetimeValueRequest { currency_code: "EUR".into(), horizon_days: 0 });
                request.set_timeout(WHOLE_BASE);
                segmentation.fit_lifetime_value(request).await?;
            }
            Computation::AssociationRules => {
                let mut request = tonic::Request::new(ComputeAssociationRulesRequest::default());
                request.set_timeout(WHOLE_BASE);
                segmentation.compute_association_rules(request).await?;
            }
        }
        Ok(started.elapsed())
    }
}

/// Times each computation alone and beside an ingest over `contacts`
/// (`rounds` of the ingest alone and beside it; 0: alone only), printing the figures.
pub async fn time_computations(
    gateway: &Transport,
    database_url: Option<&str>,
    contacts: &[Uuid],
    rounds: usize,
) -> anyhow::Result<()> {
    if contacts.is_empty() {
        anyhow::bail!("--analytics needs purchases to analyse: load some with --interactions N");
    }
    // Past any seed, and apart for every phase: each ingest stores new interactions.
    let mut next = 1usize << 40;
    for computation in Computation::ALL {
        settled(database_url).await?;
        let alone = computation.run(gateway.clone()).await?;
        println!("analytics: {} over the whole base: {:.1}s", computation.name(), alone.as_secs_f64());
        let phase = alone.min(INGEST_PHASE);
        let mut ratios = Vec::new();
        for round in 0..rounds {
            let (mut rate_alone, mut rate_beside, mut took_beside) = (0.0, 0.0, Duration::ZERO);
            for beside in if round % 2 == 0 { [false, true] } else { [true, false] } {
                settled(database_url).await?;
                let (rows, seconds, took) =
                    ingest_phase(gateway, contacts, next, phase, beside.then_some(computation)).await?;
                next += rows + BATCH;
                match took {
                    Some(took) => (rate_beside, took_beside) = (rows as f64 / seconds, took),
                    None => rate_alone = rows as f64 / seconds,
                }
            }
            ratios.push(rate_beside / rate_alone);
            println!(
                "analytics: round {}: ingest for {:.1}s alone {rate_alone:.0} rows/s; beside {} {rate_beside:.0} rows/s ({:.2} of it); the computation beside it took {:.1}s",
                round + 1,
                phase.as_secs_f64(),
                computation.name(),
                rate_beside / rate_alone,
                took_beside.as_secs_f64()
            );
        }
        if ratios.is_empty() {
            continue;
        }
        ratios.sort_by(f64::total_cmp);
        println!(
            "analytics: ingest beside {} / alone, median of {rounds} rounds: {:.2} (each: {})",
            computation.name(),
            ratios[rounds / 2],
            ratios.iter().map(|ratio| format!("{ratio:.2}")).collect::<Vec<_>>().join(", ")
        );
    }
    caught_up(database_url).await
}

/// One ingest phase of `phase` (or until `beside` ends, if it ends first),
/// with `beside` started at the same moment and run to its end (it gives
/// way to the ingest, so it may end after it); answers (rows acknowledged,
/// seconds, how long `beside` took).
async fn ingest_phase(
    gateway: &Transport,
    contacts: &[Uuid],
    first: usize,
    phase: Duration,
    beside: Option<Computation>,
) -> anyhow::Result<(usize, f64, Option<Duration>)> {
    let stop = Arc::new(AtomicBool::new(false));
    let computation = beside.map(|computation| {
        let (stop, transport) = (stop.clone(), gateway.clone());
        tokio::spawn(async move {
            let took = computation.run(transport).await;
            stop.store(true, Ordering::Relaxed);
            took
        })
    });
    let timer = tokio::spawn({
        let stop = stop.clone();
        async move {
            tokio::time::sleep(phase).await;
            stop.store(true, Ordering::Relaxed);
        }
    });
    let (rows, seconds) = ingest_until(gateway, contacts, first, stop).await?;
    timer.abort();
    let took = match computation {
        Some(computation) => Some(computation.await??),
        None => None,
    };
    Ok((rows, seconds, took))
}

/// Ingests new interactions numbered from `first` until `stop` is set; answers (rows acknowledged, seconds).
async fn ingest_until(
    transport: &Transport,
    contacts: &[Uuid],
    first: usize,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<(usize, f64)> {
    let now = chrono::Utc::now().timestamp() - 3600;
    let contacts = contacts.to_vec();
    let batches = (0..).map_while(move |batch: usize| {
        (!stop.load(Ordering::Relaxed)).then(|| IngestInteractionsRequest {
            batch_id: format!("analytics-{first}-{batch}"),
            interactions: (first + batch * BATCH..first + (batch + 1) * BATCH)
                .map(|n| timeline_seed::interaction(n, &contacts, now))
                .collect(),
        })
    });
    let started = Instant::now();
    let mut client = InteractionsServiceClient::new(transport.clone()).max_encoding_message_size(64 << 20);
    let mut acks = client.ingest_interactions(tokio_stream::iter(batches)).await?.into_inner();
    let mut rows = 0;
    while let Some(ack) = acks.message().await? {
        rows += ack.results.len();
    }
    Ok((rows, started.elapsed().as_secs_f64()))
}

/// Waits for the interactions feed's followers, when the database is known.
async fn caught_up(database_url: Option<&str>) -> anyhow::Result<()> {
    match database_url {
        Some(url) => timeline_seed::drained(url).await,
        None => Ok(()),
    }
}

/// The longest the bench waits for vacuums to end before an ingest phase.
const SETTLE: Duration = Duration::from_secs(180);

/// Waits, when the database is known, for the followers to catch up and
/// for every vacuum and analyse to end (a computation's own tidying of the
/// table it refreshed, 15–25 s at a million, or an autovacuum), so that
/// an ingest phase "alone" is alone: one that ran beside the tidying of
/// the computation before stored 3,879 rows/s, the next 7,717. Then a
/// checkpoint writes out what the phases before left dirty, so that no
/// phase pays for another's writes.
async fn settled(database_url: Option<&str>) -> anyhow::Result<()> {
    caught_up(database_url).await?;
    let Some(url) = database_url else { return Ok(()) };
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url).await?;
    let started = Instant::now();
    loop {
        let running: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM pg_stat_progress_vacuum) + (SELECT count(*) FROM pg_stat_progress_analyze)",
        )
        .fetch_one(&mut conn)
        .await?;
        if running == 0 {
            break;
        }
        if started.elapsed() > SETTLE {
            println!("analytics: {running} vacuums still running after {}s; measuring beside them", SETTLE.as_secs());
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    sqlx::query("CHECKPOINT").execute(&mut conn).await?;
    Ok(())
}
