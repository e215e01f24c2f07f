//! The Prometheus rules of the SLOs whose indicator Prometheus counts, for
//! a team that wants its own Prometheus to raise the same pages: per SLO,
//! recording rules that count its good and total events over each alert
//! window (`crm_slo:good:increase` and `crm_slo:total:increase`, labelled
//! `slo` and `window`), and one alerting rule per threshold with the
//! suite's labels (`alertname="SloErrorBudgetBurn"`, `severity`, `slo`,
//! `slo_id`, `window`, `owner`): both windows at the burn rate, the long
//! one holding the minimum of events, and a ticket held back while a page
//! of the same SLO fires, as the suite's evaluator decides.
//!
//! The output is YAML whose strings are written as JSON strings (valid
//! YAML), so any query text survives quoting.

use std::collections::BTreeSet;

use crm_proto::alerting::v1 as pb;

use super::{burn_rate::notation, prometheus::WINDOW};

fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

fn seconds(duration: Option<&prost_types::Duration>) -> std::time::Duration {
    std::time::Duration::from_secs(duration.map_or(0, |duration| duration.seconds.max(0) as u64))
}

/// The rule groups for `slos` (those without a Prometheus indicator are left out).
pub fn prometheus_rules(slos: &[pb::Slo]) -> String {
    let mut out = String::from("groups:\n");
    for slo in slos {
        let Some(pb::slo::Indicator::Prometheus(queries)) = &slo.indicator else { continue };
        out.push_str(&format!("  - name: {}\n    rules:\n", quoted(&format!("crm-slo-{}", slo.name))));
        let windows: BTreeSet<std::time::Duration> = slo
            .alerts
            .iter()
            .flat_map(|alert| [seconds(alert.long_window.as_ref()), seconds(alert.short_window.as_ref())])
            .collect();
        for window in &windows {
            for (record, query) in
                [("crm_slo:good:increase", &queries.good), ("crm_slo:total:increase", &queries.total)]
            {
                out.push_str(&format!(
                    "      - record: {record}\n        expr: {}\n        labels:\n          slo: {}\n          window: {}\n",
                    quoted(&query.replace(WINDOW, &notation(*window))),
                    quoted(&slo.name),
                    quoted(&notation(*window)),
                ));
            }
        }
        let condition = |alert: &pb::AlertThreshold| -> String {
            let series = |record: &str, window: std::time::Duration| {
                format!(r#"{record}{{slo={}, window="{}"}}"#, quoted(&slo.name), notation(window))
            };
            let error_ratio = |window| {
                format!(
                    "(1 - {} / {})",
                    series("crm_slo:good:increase", window),
                    series("crm_slo:total:increase", window)
                )
            };
            let (long, short) = (seconds(alert.long_window.as_ref()), seconds(alert.short_window.as_ref()));
            let threshold = alert.burn_rate * (1.0 - slo.objective);
            let min_events = if slo.min_events > 0 { slo.min_events } else { 10 };
            format!(
                "{} >= {threshold} and on(slo) {} >= {threshold} and on(slo) {} >= {min_events}",
                error_ratio(long),
                error_ratio(short),
                series("crm_slo:total:increase", long)
            )
        };
        let pages: Vec<String> = slo
            .alerts
            .iter()
            .filter(|alert| alert.severity == "page")
            .map(|alert| format!("({})", condition(alert)))
            .collect();
        for alert in &slo.alerts {
            let mut expr = condition(alert);
            if alert.severity == "ticket" && !pages.is_empty() {
                expr = format!("({expr}) unless on(slo) ({})", pages.join(" or "));
            }
            let label = format!(
                "{}/{}",
                notation(seconds(alert.long_window.as_ref())),
                notation(seconds(alert.short_window.as_ref()))
            );
            out.push_str(&format!(
                "      - alert: SloErrorBudgetBurn\n        expr: {}\n        labels:\n          severity: {}\n          slo: {}\n          slo_id: {}\n          window: {}\n",
                quoted(&expr),
                quoted(&alert.severity),
                quoted(&slo.name),
                quoted(&slo.id),
                quoted(&label),
            ));
            if !slo.owner.is_empty() {
                out.push_str(&format!("          owner: {}\n", quoted(&slo.owner)));
            }
            out.push_str(&format!(
                "        annotations:\n          summary: {}\n",
                quoted(&format!(
                    "{}: the error budget burns at least {:.2}× faster than allowed over {label}",
                    slo.name, alert.burn_rate
                ))
            ));
        }
    }
    out
}
