//! A technical SLO read from a real Prometheus that scrapes the suite's
//! own `/metrics`: contact look-ups that fail burn the budget of "90% of
//! GetContact calls succeed" and page, as the business SLOs do. A query
//! Prometheus refuses is refused when the SLO is made, with Prometheus'
//! own message; a query without `{{.window}}` too.

use std::time::Duration;

use crm_platform::Role;
use crm_proto::{
    alerting::v1::{
        AlertState, CreateSloRequest, GetSloStatusRequest, ListAlertsRequest, PrometheusIndicator, Slo, slo,
    },
    contacts::v1::GetContactRequest,
};
use crm_testkit::{Prometheus, TestDb, TestSuite};
use tonic_types::StatusExt;

use crate::support::eventually;

const TOTAL: &str = r#"sum(increase(crm_rpc_requests_total{server="gateway",rpc_method="GetContact"}[{{.window}}]))"#;
const GOOD: &str = r#"sum(increase(crm_rpc_requests_total{server="gateway",rpc_method="GetContact"}[{{.window}}])) - (sum(increase(crm_rpc_errors_total{server="gateway",rpc_method="GetContact"}[{{.window}}])) or vector(0))"#;

fn lookups_slo(good: &str, total: &str) -> Slo {
    Slo {
        name: "Contact look-ups".into(),
        owner: "sre".into(),
        objective: 0.9,
        window: Some(prost_types::Duration { seconds: super::DAY as i64, nanos: 0 }),
        indicator: Some(slo::Indicator::Prometheus(PrometheusIndicator { good: good.into(), total: total.into() })),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_technical_slo_read_from_a_real_prometheus_pages_when_lookups_fail() {
    let mut prometheus = Prometheus::reserve().unwrap();
    let test_db = TestDb::create().await.unwrap();
    let vars = [
        ("CRM_ALERTING_EVALUATION_INTERVAL".to_string(), "200ms".to_string()),
        ("CRM_PROMETHEUS_URL".to_string(), prometheus.url.clone()),
    ];
    let suite = TestSuite::start_roles(&test_db, &Role::ALL, &vars).await.unwrap();
    prometheus.start(&[suite.metrics_address().unwrap()]).await.unwrap();
    let mut alerting = suite.alerting().await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();

    // Refused with Prometheus' own words, field by field.
    let broken = lookups_slo("sum(rate(crm_rpc_requests_total[{{.window}}])", TOTAL);
    let refused = alerting.create_slo(CreateSloRequest { slo: Some(broken) }).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    let violations = refused.get_details_bad_request().unwrap().field_violations;
    assert_eq!(violations[0].field, "slo.prometheus.good");
    assert!(violations[0].description.contains("parse error"), "{violations:?}");
    let windowless = lookups_slo(GOOD, "sum(crm_rpc_requests_total)");
    let refused = alerting.create_slo(CreateSloRequest { slo: Some(windowless) }).await.unwrap_err();
    let violations = refused.get_details_bad_request().unwrap().field_violations;
    assert_eq!(violations[0].field, "slo.prometheus.total", "{violations:?}");

    let slo = alerting.create_slo(CreateSloRequest { slo: Some(lookups_slo(GOOD, TOTAL)) }).await.unwrap().into_inner();
    assert!(matches!(slo.indicator, Some(slo::Indicator::Prometheus(_))));

    // The series exist before the outage (a counter's first sample is no increase).
    let unknown = || GetContactRequest { id: uuid::Uuid::now_v7().to_string() };
    contacts.get_contact(unknown()).await.unwrap_err();
    eventually(Duration::from_secs(30), "the failed look-up scraped", || async {
        let found = prometheus.query(r#"crm_rpc_errors_total{server="gateway",rpc_method="GetContact"}"#).await;
        found.is_ok_and(|series| series.as_array().is_some_and(|series| !series.is_empty()))
    })
    .await;

    // Every look-up fails: a burn rate of 10 against 90%; both pages fire.
    for _ in 0..40 {
        let failed = contacts.get_contact(unknown()).await.unwrap_err();
        assert_eq!(failed.code(), tonic::Code::NotFound);
    }
    eventually(Duration::from_secs(60), "both pages of the look-ups SLO", || {
        let mut alerting = alerting.clone();
        let source_id = slo.id.clone();
        async move {
            let request = ListAlertsRequest { state: AlertState::Firing as i32, source_id, ..Default::default() };
            alerting.list_alerts(request).await.is_ok_and(|found| found.get_ref().alerts.len() == 2)
        }
    })
    .await;
    let status = alerting.get_slo_status(GetSloStatusRequest { id: slo.id.clone() }).await.unwrap().into_inner();
    assert!(status.valid_events >= 30, "{status:?}");
    assert!(status.sli.unwrap() < 0.2, "{status:?}");

    // The same SLO as rules for a team's own Prometheus: promtool checks
    // them, and its unit test shows them paging on the windows the suite
    // paged on, the ticket held back, for the same outage.
    let firing = alerting
        .list_alerts(ListAlertsRequest {
            state: AlertState::Firing as i32,
            source_id: slo.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .alerts;
    let dir = std::env::temp_dir().join(format!("crm-rules-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("rules.yml");
    crm::alerting::export_rules(&suite.address(Role::Gateway).to_string(), &suite.admin_key, Some(&rules))
        .await
        .unwrap();
    promtool(&["check", "rules", rules.to_str().unwrap()]);
    let expected: Vec<String> = firing
        .iter()
        .map(|alert| {
            let labels: Vec<String> = ["severity", "slo", "slo_id", "window", "owner"]
                .iter()
                .map(|name| format!("{name}: {}", serde_json::to_string(&alert.labels[*name]).unwrap()))
                .collect();
            let threshold = slo
                .alerts
                .iter()
                .find(|threshold| {
                    alert.labels["window"]
                        == format!(
                            "{}m/{}m",
                            threshold.long_window.unwrap().seconds / 60,
                            threshold.short_window.unwrap().seconds / 60
                        )
                })
                .unwrap();
            let summary = format!(
                "{}: the error budget burns at least {:.2}× faster than allowed over {}",
                slo.name, threshold.burn_rate, alert.labels["window"]
            );
            format!(
                "          - exp_labels: {{ {} }}\n            exp_annotations: {{ summary: {} }}\n",
                labels.join(", "),
                serde_json::to_string(&summary).unwrap()
            )
        })
        .collect();
    let unit = format!(
        "rule_files:\n  - rules.yml\nevaluation_interval: 15s\ntests:\n  - interval: 15s\n    input_series:\n      - series: 'crm_rpc_requests_total{{server=\"gateway\",rpc_method=\"GetContact\"}}'\n        values: '0+10x200'\n      - series: 'crm_rpc_errors_total{{server=\"gateway\",rpc_method=\"GetContact\"}}'\n        values: '0+10x200'\n    alert_rule_test:\n      - eval_time: 30m\n        alertname: SloErrorBudgetBurn\n        exp_alerts:\n{}",
        expected.concat()
    );
    std::fs::write(dir.join("rules_test.yml"), unit).unwrap();
    promtool(&["test", "rules", dir.join("rules_test.yml").to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    suite.shutdown().await.unwrap();
}

/// Runs promtool (the Debian package `prometheus`), failing with its output.
fn promtool(args: &[&str]) {
    let output =
        std::process::Command::new("promtool").args(args).output().expect("promtool (Debian package prometheus)");
    assert!(
        output.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
