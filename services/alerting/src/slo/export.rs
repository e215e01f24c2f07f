//! The Prometheus rules of the SLOs whose indicator Prometheus counts, for
//! a team that wants its own Prometheus to raise the same pages: per SLO,
//! recording rules that count its good and total events over each alert
//! window (`crm_slo:good:increase` and `crm_slo:total:increase`, labelled
//! `slo` and `window`), and one alerting rule per threshold with the
//! suite's labels (`alertname="SloErrorBudgetBurn"`, `severity`, `slo`,
//! `slo_id`, `window`, `owner`): both windows at the burn rate, the long
//! one holding the minimum of events, and a ticket held back while a page
//! of the same SLO fires, as the suite's evaluator decides.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use crm_proto::alerting::v1 as pb;
use serde::Serialize;

use super::{burn_rate::notation, prometheus::WINDOW};

/// A Prometheus rule file.
#[derive(Serialize)]
struct RuleFile {
    groups: Vec<Group>,
}

#[derive(Serialize)]
struct Group {
    name: String,
    rules: Vec<Rule>,
}

/// A recording rule (`record`) or an alerting rule (`alert`).
#[derive(Serialize)]
struct Rule {
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alert: Option<String>,
    expr: String,
    labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

fn seconds(duration: Option<&prost_types::Duration>) -> Duration {
    Duration::from_secs(duration.map_or(0, |duration| duration.seconds.max(0) as u64))
}

fn windows_of(alert: &pb::AlertThreshold) -> (Duration, Duration) {
    (seconds(alert.long_window.as_ref()), seconds(alert.short_window.as_ref()))
}

/// The PromQL condition of one threshold of `slo` over the recorded series.
fn condition(slo: &pb::Slo, alert: &pb::AlertThreshold) -> String {
    let name = serde_json::to_string(&slo.name).unwrap_or_default();
    let series = |record: &str, window: Duration| format!(r#"{record}{{slo={name}, window="{}"}}"#, notation(window));
    let error_ratio = |window| {
        format!("(1 - {} / {})", series("crm_slo:good:increase", window), series("crm_slo:total:increase", window))
    };
    let (long, short) = windows_of(alert);
    let threshold = alert.burn_rate * (1.0 - slo.objective);
    let min_events = if slo.min_events > 0 { slo.min_events } else { 10 };
    format!(
        "{} >= {threshold} and on(slo) {} >= {threshold} and on(slo) {} >= {min_events}",
        error_ratio(long),
        error_ratio(short),
        series("crm_slo:total:increase", long)
    )
}

fn group(slo: &pb::Slo, queries: &pb::PrometheusIndicator) -> Group {
    let mut rules = Vec::new();
    let windows: BTreeSet<Duration> =
        slo.alerts.iter().flat_map(|alert| <[Duration; 2]>::from(windows_of(alert))).collect();
    for window in windows {
        for (record, query) in [("crm_slo:good:increase", &queries.good), ("crm_slo:total:increase", &queries.total)] {
            rules.push(Rule {
                record: Some(record.into()),
                alert: None,
                expr: query.replace(WINDOW, &notation(window)),
                labels: BTreeMap::from([("slo".into(), slo.name.clone()), ("window".into(), notation(window))]),
                annotations: BTreeMap::new(),
            });
        }
    }
    let pages: Vec<String> = slo
        .alerts
        .iter()
        .filter(|alert| alert.severity == "page")
        .map(|alert| format!("({})", condition(slo, alert)))
        .collect();
    for alert in &slo.alerts {
        let mut expr = condition(slo, alert);
        if alert.severity == "ticket" && !pages.is_empty() {
            expr = format!("({expr}) unless on(slo) ({})", pages.join(" or "));
        }
        let (long, short) = windows_of(alert);
        let window = format!("{}/{}", notation(long), notation(short));
        let mut labels = BTreeMap::from([
            ("severity".to_string(), alert.severity.clone()),
            ("slo".to_string(), slo.name.clone()),
            ("slo_id".to_string(), slo.id.clone()),
            ("window".to_string(), window.clone()),
        ]);
        if !slo.owner.is_empty() {
            labels.insert("owner".into(), slo.owner.clone());
        }
        let summary = format!(
            "{}: the error budget burns at least {:.2}× faster than allowed over {window}",
            slo.name, alert.burn_rate
        );
        rules.push(Rule {
            record: None,
            alert: Some("SloErrorBudgetBurn".into()),
            expr,
            labels,
            annotations: BTreeMap::from([("summary".to_string(), summary)]),
        });
    }
    Group { name: format!("crm-slo-{}", slo.name), rules }
}

/// The rule file for `slos` (those without a Prometheus indicator are left out).
pub fn prometheus_rules(slos: &[pb::Slo]) -> Result<String, yaml_serde::Error> {
    let groups = slos
        .iter()
        .filter_map(|slo| match &slo.indicator {
            Some(pb::slo::Indicator::Prometheus(queries)) => Some(group(slo, queries)),
            _ => None,
        })
        .collect();
    yaml_serde::to_string(&RuleFile { groups })
}
