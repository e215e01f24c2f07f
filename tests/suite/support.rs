//! Helpers shared by the test modules.

use std::{sync::OnceLock, time::Duration};

use crm_platform::outbox::{self, NewEvent};
use crm_proto::common::v1::Money;
use sqlx::PgPool;

/// Polls `condition` every 20 ms until it holds, failing after `limit`
/// (a bound on waiting, not a performance assertion).
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A test event about `aggregate_id`; its payload carries `amount` so events can be told apart.
pub fn test_event(aggregate_id: &str, amount: i64) -> NewEvent {
    NewEvent::new("test", aggregate_id, &Money { currency_code: "EUR".into(), minor_units: amount }, "req-test")
}

/// Commits `events` in one transaction of their own.
pub async fn commit_events(pool: &PgPool, events: &[NewEvent]) {
    let mut tx = pool.begin().await.unwrap();
    outbox::append(&mut tx, events).await.unwrap();
    tx.commit().await.unwrap();
}

/// Spans of every test in this binary, recorded by a global subscriber with
/// an OpenTelemetry layer, installed once on first use (a per-thread
/// subscriber is unreliable here: tracing caches per-callsite interest across
/// threads). Tests find their own spans by a trace id of their own.
pub fn recorded_spans() -> &'static opentelemetry_sdk::trace::InMemorySpanExporter {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt;

    static RECORDER: OnceLock<(
        opentelemetry_sdk::trace::SdkTracerProvider,
        opentelemetry_sdk::trace::InMemorySpanExporter,
    )> = OnceLock::new();
    let (_, exporter) = RECORDER.get_or_init(|| {
        let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
        let provider =
            opentelemetry_sdk::trace::SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        let subscriber =
            tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("tests")));
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber in the tests");
        (provider, exporter)
    });
    exporter
}

/// Every row of every table of `schema` as lower-case text (bytea as hex):
/// what an erasure test searches for what must be gone.
pub async fn whole_schema(pool: &PgPool, schema: &str) -> String {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 AND table_type = 'BASE TABLE'",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(!tables.is_empty(), "no tables in {schema}");
    let mut text = String::new();
    for table in tables {
        let rows: Vec<String> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT t::text FROM \"{schema}\".\"{table}\" t")))
                .fetch_all(pool)
                .await
                .unwrap();
        for row in rows {
            text.push_str(&row);
            text.push('\n');
        }
    }
    text.to_lowercase()
}
