//! Chaos: the real `crm serve` killed with SIGKILL mid-ingest and mid-import,
//! over and over, and PostgreSQL restarted under load. Senders follow the
//! documented protocol (resend from the last acknowledged batch, retry a
//! refused call with the same idempotency key); afterwards every row is there
//! exactly once: nothing acknowledged is lost, nothing is doubled.
//!
//! `CRM_CHAOS_ROUNDS` sets the kills and restarts (default 3, the short
//! version CI runs); the README's quick start gives a longer run.

use std::{collections::HashSet, net::TcpListener, process::Stdio, time::Duration};

use crm_proto::{
    common::v1::ExternalId,
    contacts::v1::{
        Contact, DuplicatePolicy, ImportContactsRequest, ImportOptions, ImportRow,
        contacts_service_client::ContactsServiceClient,
    },
    interactions::v1::{
        Channel as InteractionChannel, IngestInteractionsRequest, Interaction, Kind, RecordInteractionRequest,
        interactions_service_client::InteractionsServiceClient,
    },
};
use crm_testkit::{BearerKey, TestDb};
use sqlx::Connection;
use tokio::process::{Child, Command};
use tonic::{service::interceptor::InterceptedService, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

const ADMIN_KEY: &str = "crm_chaos_admin_key_0123456789abcdef";
const BATCH: usize = 200;

fn rounds() -> usize {
    std::env::var("CRM_CHAOS_ROUNDS").ok().and_then(|rounds| rounds.parse().ok()).unwrap_or(3)
}

/// A free port below the ephemeral range: kept across restarts, it must not
/// be taken meanwhile as the local port of some outgoing connection.
fn free_port() -> u16 {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let span = u32::from(ephemeral_start.saturating_sub(10_000).max(1));
    loop {
        let port = 10_000 + (uuid::Uuid::now_v7().as_u128() % u128::from(span)) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// `crm serve --target all` on fixed ports, so that a restart is found where it was.
struct Serve {
    database_url: String,
    ports: Vec<(&'static str, u16)>,
    child: Option<Child>,
}

impl Serve {
    fn new(database_url: String) -> Serve {
        let ports = ["GATEWAY", "CONTACTS", "INTERACTIONS", "SEGMENTATION", "ALERTING"]
            .into_iter()
            .map(|role| (role, free_port()))
            .collect();
        Serve { database_url, ports, child: None }
    }

    fn gateway(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[0].1)
    }

    async fn start(&mut self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_crm"));
        command
            .args(["serve", "--target", "all"])
            .env("DATABASE_URL", &self.database_url)
            .env("CRM_BOOTSTRAP_ADMIN_KEY", ADMIN_KEY)
            .env("CRM_INTERNAL_SECRET", "chaos-internal-secret-0123456789abcdef")
            .env("CRM_METRICS_ADDR", "off")
            .env("CRM_LOG", "error")
            .env("CRM_SHUTDOWN_GRACE", "1s")
            // Five roles' pools, with the connections of a killed process
            // still closing beside them, within the shared server's 100
            // (as the test suite's roles do: `crm_testkit::TestSuite`).
            .env("CRM_DB_MAX_CONNECTIONS", "5")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (role, port) in &self.ports {
            command.env(format!("CRM_{role}_ADDR"), format!("127.0.0.1:{port}"));
        }
        self.child = Some(command.spawn().expect("crm serve runs"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(channel) = tonic::transport::Endpoint::from_shared(self.gateway()).unwrap().connect().await {
                let mut health = HealthClient::new(channel);
                let mut serving = true;
                for service in ["crm.contacts.v1.ContactsService", "crm.interactions.v1.InteractionsService"] {
                    let answer = health.check(HealthCheckRequest { service: service.into() }).await;
                    serving &= matches!(answer, Ok(response) if response.get_ref().status() == ServingStatus::Serving);
                }
                if serving {
                    return;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "crm serve did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no drain, no goodbye, as when a node dies.
    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }
}

async fn channel(gateway: &str) -> Option<InterceptedService<Channel, BearerKey>> {
    let endpoint = tonic::transport::Endpoint::from_shared(gateway.to_string()).ok()?;
    let channel = endpoint.connect_timeout(Duration::from_secs(1)).connect().await.ok()?;
    Some(InterceptedService::new(channel, BearerKey::new(ADMIN_KEY)))
}

fn item(batch: usize, index: usize) -> Interaction {
    Interaction {
        contact_id: uuid::Uuid::from_u128(1 + (batch * BATCH + index) as u128 % 97).to_string(),
        channel: InteractionChannel::Web as i32,
        kind: Kind::Note as i32,
        occurred_at: Some(prost_types_timestamp(batch * BATCH + index)),
        source: "chaos".into(),
        external_id: format!("E-{batch}-{index}"),
        subject: format!("note {batch}/{index}"),
        ..Default::default()
    }
}

fn prost_types_timestamp(offset: usize) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: 1_767_225_600 + offset as i64, nanos: 0 }
}

/// How long the resending loops keep at it before failing: a bound on
/// waiting (a server that refuses every call, as on a full disk, would
/// otherwise keep a CI run until its time ran out), not a performance limit.
const GIVE_UP: Duration = Duration::from_secs(600);

/// Sends `batches` batches through IngestInteractions, resending from the
/// last acknowledged one whenever the stream breaks, until all are acknowledged.
async fn ingest_all(gateway: String, batches: usize) {
    let mut next = 0;
    let deadline = tokio::time::Instant::now() + GIVE_UP;
    while next < batches {
        assert!(tokio::time::Instant::now() < deadline, "the ingest never finished: read the server's log above");
        let Some(channel) = channel(&gateway).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut client = InteractionsServiceClient::new(channel);
        let outgoing = (next..batches).map(|batch| IngestInteractionsRequest {
            batch_id: batch.to_string(),
            interactions: (0..BATCH).map(|index| item(batch, index)).collect(),
        });
        let Ok(response) = client.ingest_interactions(tokio_stream::iter(outgoing)).await else { continue };
        let mut acks = response.into_inner();
        while let Ok(Some(ack)) = acks.message().await {
            assert_eq!(ack.batch_id, next.to_string(), "acknowledgements come in order");
            assert!(ack.results.iter().all(|result| result.error.is_empty()), "{:?}", ack.results);
            next += 1;
        }
    }
}

/// Imports `messages` messages of rows with external ids, resending from the
/// last acknowledged message whenever the stream breaks.
async fn import_all(gateway: String, messages: usize) {
    let mut next = 0;
    let deadline = tokio::time::Instant::now() + GIVE_UP;
    while next < messages {
        assert!(tokio::time::Instant::now() < deadline, "the import never finished: read the server's log above");
        let Some(channel) = channel(&gateway).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut client = ContactsServiceClient::new(channel);
        let first = next;
        let outgoing = (first..messages).map(move |message| ImportContactsRequest {
            // Options go with the first message of every stream.
            options: (message == first).then(|| ImportOptions {
                duplicate_policy: DuplicatePolicy::CreateAndFlag as i32,
                dry_run: false,
                source: "chaos".into(),
            }),
            rows: (0..BATCH)
                .map(|index| ImportRow {
                    row_id: format!("{message}-{index}"),
                    contact: Some(Contact {
                        display_name: format!("Chaos Row {message} {index}"),
                        external_ids: vec![ExternalId { source: "chaos".into(), id: format!("X-{message}-{index}") }],
                        ..Default::default()
                    }),
                })
                .collect(),
        });
        let Ok(response) = client.import_contacts(tokio_stream::iter(outgoing)).await else { continue };
        let mut results = response.into_inner();
        while let Ok(Some(result)) = results.message().await {
            assert!(result.results.iter().all(|row| row.error.is_empty()), "{:?}", result.results);
            next += 1;
        }
    }
}

#[tokio::test]
async fn kill_9_mid_ingest_and_mid_import_loses_and_doubles_nothing() {
    let test_db = TestDb::create().await.unwrap();
    let mut serve = Serve::new(test_db.url.clone());
    serve.start().await;
    // Enough traffic to outlast the kills.
    let (batches, messages) = (30 * rounds(), 12 * rounds());
    let ingest = tokio::spawn(ingest_all(serve.gateway(), batches));
    let import = tokio::spawn(import_all(serve.gateway(), messages));
    let mut mid_traffic = 0;
    for round in 0..rounds() {
        // Somewhere in the middle of the traffic, varying from round to round.
        tokio::time::sleep(Duration::from_millis(300 + 137 * (round as u64 % 5))).await;
        mid_traffic += usize::from(!ingest.is_finished() && !import.is_finished());
        serve.kill().await;
        serve.start().await;
    }
    ingest.await.unwrap();
    import.await.unwrap();
    println!("chaos: {} kills, {mid_traffic} of them while both ingest and import were sending", rounds());
    assert!(mid_traffic > 0, "no kill hit the traffic");

    let mut conn = sqlx::PgConnection::connect(&test_db.url).await.unwrap();
    let (rows, distinct): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT external_id) FROM interactions.interactions WHERE source = 'chaos'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((rows, distinct), ((batches * BATCH) as i64, (batches * BATCH) as i64), "ingest: rows and distinct ids");
    let (contacts, holders): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM contacts.contacts WHERE merged_into IS NULL AND delete_time IS NULL),
                (SELECT count(DISTINCT external_id) FROM contacts.contact_external_ids WHERE source = 'chaos')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((contacts, holders), ((messages * BATCH) as i64, (messages * BATCH) as i64), "import: contacts and ids");
    serve.kill().await;
}

#[tokio::test]
async fn postgres_restarted_under_load_loses_no_acknowledged_write() {
    let dir = std::env::temp_dir().join(format!("crm-chaos-pg-{}", uuid::Uuid::now_v7().simple()));
    // Durable settings, as `crm up` runs: with synchronous_commit off (the
    // tests' fast cluster) an immediate restart loses acknowledged commits.
    let postgres = crm_localpg::LocalPostgres::start(&dir, &crm_localpg::Options::default()).unwrap();
    let mut serve = Serve::new(postgres.url());
    serve.start().await;

    // One writer, call after call; a refused call is retried with the same key.
    let gateway = serve.gateway();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut next = 0;
            let mut client = None;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || next < 50 {
                if client.is_none() {
                    client = channel(&gateway).await.map(InteractionsServiceClient::new);
                }
                let Some(connected) = client.as_mut() else { continue };
                let request = RecordInteractionRequest { interaction: Some(item(5_000, next)), contact_lookup: None };
                match connected.record_interaction(request).await {
                    Ok(_) => {
                        acknowledged.push(format!("E-5000-{next}"));
                        next += 1;
                    }
                    Err(status) if status.code() == tonic::Code::Unavailable => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(status) => panic!("a write failed with {status:?}"),
                }
            }
            acknowledged
        })
    };
    for round in 0..rounds().min(3) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        postgres.restart(if round % 2 == 0 { "immediate" } else { "fast" }).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acknowledged = writer.await.unwrap();

    let mut conn = sqlx::PgConnection::connect(&postgres.url()).await.unwrap();
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT external_id FROM interactions.interactions WHERE source = 'chaos'")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let distinct: HashSet<&String> = stored.iter().collect();
    assert_eq!(distinct.len(), stored.len(), "a write was stored twice");
    for id in &acknowledged {
        assert!(distinct.contains(id), "acknowledged write {id} was lost");
    }
    assert!(acknowledged.len() >= 50);
    serve.kill().await;
    drop(conn);
    postgres.stop().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
