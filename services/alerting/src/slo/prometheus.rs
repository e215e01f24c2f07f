//! Indicators read from Prometheus: the good and total PromQL of an SLO,
//! each counting events over `{{.window}}`, run as instant queries
//! (`GET /api/v1/query`) at the evaluation's time with every window the
//! SLO's status needs written in Prometheus' notation.

use std::{collections::HashMap, time::Duration};
use tracing::Instrument;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::slo::{burn_rate::notation, evaluate::Counts};

/// The placeholder a query writes where the window goes (as Sloth writes it).
pub const WINDOW: &str = "{{.window}}";
const TIMEOUT: Duration = Duration::from_secs(10);

/// The good and total queries of an SLO.
#[derive(Clone, Debug, PartialEq)]
pub struct Queries {
    pub good: String,
    pub total: String,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: String,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

/// A Prometheus server's query API.
#[derive(Clone)]
pub struct Prometheus {
    client: reqwest::Client,
    url: String,
}

impl Prometheus {
    pub fn new(url: &str) -> anyhow::Result<Prometheus> {
        Ok(Prometheus { client: reqwest::Client::builder().timeout(TIMEOUT).build()?, url: url.to_string() })
    }

    /// `query` with `window` put in, at `at`: one number (an empty answer is 0).
    /// The error is Prometheus' own message (it names the position).
    pub async fn count(&self, query: &str, window: Duration, at: DateTime<Utc>) -> Result<f64, String> {
        let promql = query.replace(WINDOW, &notation(window));
        let time = format!("{:.3}", at.timestamp_millis() as f64 / 1000.0);
        let span = crm_platform::trace_context::http_client_span("GET", &self.url);
        let response = self
            .client
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", promql.as_str()), ("time", time.as_str())])
            .send()
            .instrument(span.clone())
            .await
            .map_err(|error| format!("Prometheus at {} did not answer: {error}", self.url))?;
        span.record("http.response.status_code", i64::from(response.status().as_u16()));
        let answer: Answer =
            response.json().await.map_err(|error| format!("Prometheus answered something else than JSON: {error}"))?;
        if answer.status != "success" {
            return Err(answer.error);
        }
        let data = answer.data.ok_or("Prometheus answered no data")?;
        let value = match data.result_type.as_str() {
            "scalar" => data.result.get(1).cloned(),
            "vector" => match data.result.as_array().map(Vec::as_slice) {
                Some([]) => return Ok(0.0),
                Some([one]) => one.get("value").and_then(|value| value.get(1)).cloned(),
                Some(many) => {
                    return Err(format!("gives {} series; it must give one number (wrap it in sum(...))", many.len()));
                }
                None => None,
            },
            other => return Err(format!("gives a {other}; it must give one number")),
        };
        let number = value.and_then(|value| value.as_str().and_then(|text| text.parse::<f64>().ok()));
        match number {
            Some(number) if number.is_finite() => Ok(number.max(0.0)),
            Some(_) => Ok(0.0),
            None => Err("gives no number".into()),
        }
    }

    /// The counts of `queries` over each of `windows` at `at`.
    pub async fn counts(
        &self,
        queries: &Queries,
        windows: &[Duration],
        at: DateTime<Utc>,
    ) -> Result<HashMap<Duration, Counts>, String> {
        let mut found = HashMap::new();
        for window in windows {
            if found.contains_key(window) {
                continue;
            }
            let total = self.count(&queries.total, *window, at).await?;
            let good = self.count(&queries.good, *window, at).await?.min(total);
            let valid = total.round() as u64;
            found.insert(*window, Counts { valid, bad: valid.saturating_sub(good.round() as u64) });
        }
        Ok(found)
    }
}
