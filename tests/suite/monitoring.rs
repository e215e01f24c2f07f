//! deploy/monitoring's rules in a real Prometheus scraping a running suite:
//! every rule evaluates without error, and the recording rules and the
//! database gauges they read produce series.

use std::{path::PathBuf, time::Duration};

use crm_platform::Role;
use crm_proto::contacts::v1::{CreateContactRequest, GetContactRequest};
use crm_testkit::{Prometheus, TestDb, TestSuite};
use serde_json::Value;

use crate::{contacts::person, support::eventually};

fn rules_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/monitoring/prometheus/crm.rules.yml")
}

/// The first sample's value of a query, if it has one.
async fn value(prometheus: &Prometheus, promql: &str) -> Option<f64> {
    let result = prometheus.query(promql).await.ok()?;
    result.get(0)?["value"][1].as_str()?.parse().ok()
}

#[tokio::test]
async fn the_suites_rules_evaluate_in_a_real_prometheus_and_record_its_calls() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start_roles(&test_db, &Role::ALL, &[]).await.unwrap();
    let mut prometheus = Prometheus::reserve().unwrap();
    prometheus.start_with_rules(&[suite.metrics_address().unwrap()], &[rules_file()]).await.unwrap();

    let mut contacts = suite.contacts().await.unwrap();
    for (given, family) in [("Mona", "Tor"), ("Piet", "Kasper"), ("Ilse", "Brand")] {
        let contact = person(given, family, "", "");
        contacts.create_contact(CreateContactRequest { contact: Some(contact), ..Default::default() }).await.unwrap();
    }
    // Calls that are a caller's mistake: counted, but spending no availability
    // budget; made until their rate shows (a series' first sample has no rate).
    let looked_up = r#"crm:rpc_requests:rate5m{server="gateway",rpc_method="GetContact"}"#;
    eventually(Duration::from_secs(60), "the look-ups' rate recorded", || {
        let (mut contacts, prometheus) = (contacts.clone(), &prometheus);
        async move {
            let missing = GetContactRequest { id: uuid::Uuid::now_v7().to_string() };
            assert_eq!(contacts.get_contact(missing).await.unwrap_err().code(), tonic::Code::NotFound);
            value(prometheus, looked_up).await.is_some_and(|rate| rate > 0.0)
        }
    })
    .await;

    let recorded = [
        (r#"crm:rpc_requests:rate5m{server="gateway",rpc_method="CreateContact"}"#, "calls per second, per method"),
        (r#"crm:rpc_failure_ratio:rate5m{server="gateway",rpc_method="GetContact"}"#, "the failure ratio, per method"),
        (r#"crm:rpc_duration_seconds:p99_5m{server="contacts",rpc_method="CreateContact"}"#, "p99 per method"),
        ("crm:slo_availability_errors:ratio_rate5m", "the availability SLO's error ratio"),
        ("crm:slo_latency_errors:ratio_rate1h", "the latency SLO's error ratio"),
        (r#"crm:db_pool_saturation:ratio{server="contacts"}"#, "the contacts pool's saturation"),
        (r#"crm_database_ready{server="contacts"}"#, "the contacts database's readiness"),
    ];
    for (promql, what) in recorded {
        eventually(Duration::from_secs(60), what, || async { value(&prometheus, promql).await.is_some() }).await;
    }
    assert_eq!(value(&prometheus, recorded[1].0).await, Some(0.0), "NOT_FOUND is no failure");
    assert_eq!(
        value(&prometheus, "crm:slo_availability_errors:ratio_rate5m").await,
        Some(0.0),
        "NOT_FOUND is no failure"
    );
    assert_eq!(value(&prometheus, r#"crm_database_ready{server="contacts"}"#).await, Some(1.0));
    let saturation = value(&prometheus, r#"crm:db_pool_saturation:ratio{server="contacts"}"#).await.unwrap();
    assert!((0.0..=1.0).contains(&saturation), "{saturation}");

    // Every rule loaded and evaluated without error; the quiet suite fires nothing.
    let groups = prometheus.rules().await.unwrap();
    let rules: Vec<&Value> =
        groups.as_array().unwrap().iter().flat_map(|group| group["rules"].as_array().unwrap()).collect();
    assert_eq!(rules.len(), 33, "every rule of the file");
    for rule in &rules {
        assert_eq!(rule["health"], "ok", "{rule}");
    }
    let firing: Vec<&&Value> = rules.iter().filter(|rule| rule["state"] == "firing").collect();
    assert!(firing.is_empty(), "{firing:?}");
    suite.shutdown().await.unwrap();
}
