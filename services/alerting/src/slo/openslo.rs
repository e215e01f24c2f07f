//! SLOs as OpenSLO v1 documents (`apiVersion: openslo/v1`, `kind: SLO`),
//! the vendor-neutral format SRE teams keep in git: read for `crm alerting
//! apply`, written for `crm alerting export-openslo`.
//!
//! The mapping: `metadata.name` is the SLO's name (what apply matches on),
//! `metadata.labels.owner` (else `spec.service`) its owner,
//! `spec.description`, `spec.objectives[0].target` its objective, a rolling
//! `spec.timeWindow[0].duration` (`28d`, `4w`, `1440m`) its window, and
//! `spec.indicator.spec.ratioMetric` its indicator: `good` and `total`
//! metric sources of type `Prometheus` (`spec.query`, written with
//! `{{.window}}`) or of type `crm.interactions` (`spec.condition`, CEL over
//! an interaction: `total` the valid interactions, `good` the good ones).
//! Budgeting is by occurrences; calendar windows, time slices and more
//! than one objective are refused with the field that says so.

use std::{collections::BTreeMap, time::Duration};

use crm_proto::alerting::v1 as pb;
use serde::{Deserialize, Serialize};

/// The metric source type of a business indicator's conditions.
pub const CRM_SOURCE: &str = "crm.interactions";

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: Spec,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, yaml_serde::Value>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    pub indicator: Option<Indicator>,
    #[serde(default)]
    pub time_window: Vec<TimeWindow>,
    #[serde(default)]
    pub budgeting_method: String,
    #[serde(default)]
    pub objectives: Vec<Objective>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Indicator {
    #[serde(default)]
    pub metadata: Metadata,
    pub spec: IndicatorSpec,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndicatorSpec {
    pub ratio_metric: Option<RatioMetric>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RatioMetric {
    #[serde(default)]
    pub counter: bool,
    pub good: Option<Metric>,
    pub total: Option<Metric>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    pub metric_source: MetricSource,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct MetricSource {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub spec: BTreeMap<String, String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimeWindow {
    pub duration: String,
    #[serde(default)]
    pub is_rolling: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Objective {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    pub target: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_slice_target: Option<f64>,
}

/// Every document of a (multi-document) YAML text; an error names the
/// document and the line and column.
pub fn parse(text: &str) -> Result<Vec<Document>, String> {
    let mut documents = Vec::new();
    for (index, document) in yaml_serde::Deserializer::from_str(text).enumerate() {
        let parsed = Document::deserialize(document).map_err(|error| format!("document {}: {error}", index + 1))?;
        documents.push(parsed);
    }
    Ok(documents)
}

/// `28d`, `4w`, `36h`, `1440m` as a duration.
fn window(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let number: u64 = number.parse().ok()?;
    let minutes = match unit {
        "m" => 1,
        "h" => 60,
        "d" => 24 * 60,
        "w" => 7 * 24 * 60,
        _ => return None,
    };
    Some(Duration::from_secs(number.checked_mul(minutes * 60)?))
}

fn source(metric: &Option<Metric>) -> Option<&MetricSource> {
    metric.as_ref().map(|metric| &metric.metric_source)
}

/// The SLO a document describes; every problem with its field.
pub fn to_slo(document: &Document) -> Result<pb::Slo, Vec<(String, String)>> {
    let mut problems = Vec::new();
    let mut problem = |field: &str, text: String| problems.push((field.to_string(), text));
    if document.api_version != "openslo/v1" {
        problem("apiVersion", format!("must be openslo/v1 (got {:?})", document.api_version));
    }
    if document.kind != "SLO" {
        problem("kind", format!("must be SLO (got {:?}; SLIs are written inline in spec.indicator)", document.kind));
    }
    let spec = &document.spec;
    let owner = match document.metadata.labels.get("owner") {
        Some(yaml_serde::Value::String(owner)) => owner.clone(),
        _ => spec.service.clone(),
    };
    let objective = match spec.objectives.as_slice() {
        [one] if one.time_slice_target.is_some() => {
            problem(
                "spec.objectives[0].timeSliceTarget",
                "time slices are not supported: budget by occurrences".into(),
            );
            0.0
        }
        [one] => one.target.unwrap_or_else(|| {
            problem("spec.objectives[0].target", "is required, e.g. 0.99".into());
            0.0
        }),
        other => {
            problem("spec.objectives", format!("must hold exactly one objective (got {})", other.len()));
            0.0
        }
    };
    if !matches!(spec.budgeting_method.as_str(), "Occurrences" | "") {
        problem("spec.budgetingMethod", format!("must be Occurrences (got {:?})", spec.budgeting_method));
    }
    let slo_window = match spec.time_window.as_slice() {
        [one] if !one.is_rolling => {
            problem("spec.timeWindow[0].isRolling", "must be true: calendar windows are not supported".into());
            None
        }
        [one] => window(&one.duration).or_else(|| {
            problem(
                "spec.timeWindow[0].duration",
                format!("{:?} is not a duration such as 28d, 4w or 36h", one.duration),
            );
            None
        }),
        other => {
            problem("spec.timeWindow", format!("must hold exactly one window (got {})", other.len()));
            None
        }
    };
    let ratio = spec.indicator.as_ref().and_then(|indicator| indicator.spec.ratio_metric.as_ref());
    let indicator = match ratio.map(|ratio| (source(&ratio.good), source(&ratio.total))) {
        Some((Some(good), Some(total))) if good.kind == "Prometheus" && total.kind == "Prometheus" => {
            let query = |source: &MetricSource, field: &str, problem: &mut dyn FnMut(&str, String)| {
                source.spec.get("query").cloned().unwrap_or_else(|| {
                    problem(field, "needs spec.query (PromQL over {{.window}})".into());
                    String::new()
                })
            };
            let good = query(good, "spec.indicator.spec.ratioMetric.good.metricSource", &mut problem);
            let total = query(total, "spec.indicator.spec.ratioMetric.total.metricSource", &mut problem);
            Some(pb::slo::Indicator::Prometheus(pb::PrometheusIndicator { good, total }))
        }
        Some((Some(good), Some(total))) if good.kind == CRM_SOURCE && total.kind == CRM_SOURCE => {
            let condition = |source: &MetricSource, field: &str, problem: &mut dyn FnMut(&str, String)| {
                source.spec.get("condition").cloned().unwrap_or_else(|| {
                    problem(field, "needs spec.condition (CEL over an interaction)".into());
                    String::new()
                })
            };
            let good = condition(good, "spec.indicator.spec.ratioMetric.good.metricSource", &mut problem);
            let valid = condition(total, "spec.indicator.spec.ratioMetric.total.metricSource", &mut problem);
            Some(pb::slo::Indicator::Business(pb::BusinessIndicator { valid, good }))
        }
        Some((Some(good), Some(total))) => {
            problem(
                "spec.indicator.spec.ratioMetric",
                format!(
                    "good and total must both be of type Prometheus or {CRM_SOURCE} (got {} and {})",
                    good.kind, total.kind
                ),
            );
            None
        }
        _ => {
            problem(
                "spec.indicator.spec.ratioMetric",
                "is required, with good and total metric sources (thresholdMetric is not supported)".into(),
            );
            None
        }
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(pb::Slo {
        name: document.metadata.name.clone(),
        owner,
        description: spec.description.clone(),
        objective,
        window: slo_window.and_then(|window| prost_types::Duration::try_from(window).ok()),
        indicator,
        ..Default::default()
    })
}

/// The document of an SLO.
pub fn from_slo(slo: &pb::Slo) -> Document {
    let source = |kind: &str, key: &str, value: &str| Metric {
        metric_source: MetricSource { kind: kind.into(), spec: BTreeMap::from([(key.to_string(), value.to_string())]) },
    };
    let (good, total) = match &slo.indicator {
        Some(pb::slo::Indicator::Prometheus(queries)) => {
            (source("Prometheus", "query", &queries.good), source("Prometheus", "query", &queries.total))
        }
        Some(pb::slo::Indicator::Business(business)) => {
            (source(CRM_SOURCE, "condition", &business.good), source(CRM_SOURCE, "condition", &business.valid))
        }
        None => (Metric::default(), Metric::default()),
    };
    let minutes = slo.window.map_or(0, |window| window.seconds.max(0) / 60);
    let duration = if minutes % (24 * 60) == 0 { format!("{}d", minutes / (24 * 60)) } else { format!("{minutes}m") };
    let mut labels = BTreeMap::new();
    if !slo.owner.is_empty() {
        labels.insert("owner".to_string(), yaml_serde::Value::String(slo.owner.clone()));
    }
    Document {
        api_version: "openslo/v1".into(),
        kind: "SLO".into(),
        metadata: Metadata { name: slo.name.clone(), display_name: None, labels },
        spec: Spec {
            description: slo.description.clone(),
            service: String::new(),
            indicator: Some(Indicator {
                metadata: Metadata { name: format!("{}-sli", slo.name), ..Default::default() },
                spec: IndicatorSpec {
                    ratio_metric: Some(RatioMetric { counter: true, good: Some(good), total: Some(total) }),
                },
            }),
            time_window: vec![TimeWindow { duration, is_rolling: true }],
            budgeting_method: "Occurrences".into(),
            objectives: vec![Objective {
                display_name: String::new(),
                target: Some(slo.objective),
                time_slice_target: None,
            }],
        },
    }
}

/// SLOs as one multi-document YAML text.
pub fn write(slos: &[pb::Slo]) -> Result<String, String> {
    let mut out = String::new();
    for slo in slos {
        out.push_str("---\n");
        out.push_str(&yaml_serde::to_string(&from_slo(slo)).map_err(|error| error.to_string())?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAYMENTS: &str = r#"
apiVersion: openslo/v1
kind: SLO
metadata:
  name: web-payments
  labels:
    owner: billing-team
spec:
  description: Online bill payment in under three minutes
  indicator:
    metadata:
      name: web-payments-sli
    spec:
      ratioMetric:
        counter: true
        good:
          metricSource:
            type: crm.interactions
            spec:
              condition: duration_ms <= 180000 && outcome != "failed"
        total:
          metricSource:
            type: crm.interactions
            spec:
              condition: kind == "payment" && channel == "web"
  timeWindow:
    - duration: 28d
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - displayName: ninety percent
      target: 0.9
"#;

    #[test]
    fn a_document_becomes_an_slo_and_back() {
        let documents = parse(PAYMENTS).unwrap();
        let slo = to_slo(&documents[0]).unwrap();
        assert_eq!((slo.name.as_str(), slo.owner.as_str(), slo.objective), ("web-payments", "billing-team", 0.9));
        assert_eq!(slo.window.unwrap().seconds, 28 * 24 * 3600);
        let Some(pb::slo::Indicator::Business(business)) = &slo.indicator else { panic!("business") };
        assert_eq!(business.valid, r#"kind == "payment" && channel == "web""#);
        let again = to_slo(&parse(&write(std::slice::from_ref(&slo)).unwrap()).unwrap()[0]).unwrap();
        assert_eq!(again, slo);
    }

    #[test]
    fn what_is_not_supported_is_named_by_its_field() {
        let text = PAYMENTS.replace("isRolling: true", "isRolling: false").replace("Occurrences", "Timeslices");
        let problems = to_slo(&parse(&text).unwrap()[0]).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|(field, _)| field.as_str()).collect();
        assert_eq!(fields, ["spec.budgetingMethod", "spec.timeWindow[0].isRolling"]);
        let broken = parse("apiVersion: openslo/v1\nkind: SLO\nmetadata: [\n");
        assert!(broken.unwrap_err().starts_with("document 1:"));
    }
}
