//! A real Alertmanager (the Debian package `prometheus-alertmanager`, or
//! the binary in `CRM_ALERTMANAGER_BIN`) on a free port, with a route that
//! groups within a second and a receiver that sends nowhere: tests read
//! what it holds through its API v2.

use std::{path::PathBuf, process::Stdio, time::Duration};

use serde_json::Value;
use tokio::process::{Child, Command};

pub struct Alertmanager {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    child: Child,
    dir: PathBuf,
    client: reqwest::Client,
}

const CONFIG: &str = "route:
  receiver: nowhere
  group_by: ['alertname', 'slo', 'rule']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: nowhere
";

/// The Alertmanager binary: `CRM_ALERTMANAGER_BIN`, else Debian's name, else upstream's.
fn binary() -> String {
    std::env::var("CRM_ALERTMANAGER_BIN").unwrap_or_else(|_| {
        let debian = "/usr/bin/prometheus-alertmanager";
        if std::path::Path::new(debian).exists() { debian.into() } else { "alertmanager".into() }
    })
}

impl Alertmanager {
    /// Starts one and waits until it is ready.
    pub async fn start() -> anyhow::Result<Alertmanager> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = std::env::temp_dir().join(format!("crm-alertmanager-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(dir.join("data"))?;
        std::fs::write(dir.join("alertmanager.yml"), CONFIG)?;
        let child = Command::new(binary())
            .arg(format!("--config.file={}", dir.join("alertmanager.yml").display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| {
                anyhow::anyhow!(
                    "cannot start Alertmanager ({}): {error}; install the Debian package prometheus-alertmanager or set CRM_ALERTMANAGER_BIN",
                    binary()
                )
            })?;
        let alertmanager =
            Alertmanager { url: format!("http://127.0.0.1:{port}"), child, dir, client: reqwest::Client::new() };
        for _ in 0..200 {
            let ready = alertmanager.client.get(format!("{}/-/ready", alertmanager.url)).send().await;
            if ready.is_ok_and(|response| response.status().is_success()) {
                return Ok(alertmanager);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("Alertmanager did not become ready at {}", alertmanager.url)
    }

    /// The alerts it holds that have not resolved (`GET /api/v2/alerts`),
    /// silenced ones included (their `status.state` is `suppressed`).
    pub async fn alerts(&self) -> anyhow::Result<Vec<Value>> {
        let response = self.client.get(format!("{}/api/v2/alerts", self.url)).send().await?.error_for_status()?;
        Ok(response.json().await?)
    }

    /// Silences the alerts whose labels equal `matchers` for an hour; returns the silence's id.
    pub async fn silence(&self, matchers: &[(&str, &str)], comment: &str) -> anyhow::Result<String> {
        let now = chrono::Utc::now();
        let body = serde_json::json!({
            "matchers": matchers.iter().map(|(name, value)| serde_json::json!({
                "name": name, "value": value, "isRegex": false, "isEqual": true
            })).collect::<Vec<_>>(),
            "startsAt": (now - chrono::Duration::seconds(1)).to_rfc3339(),
            "endsAt": (now + chrono::Duration::hours(1)).to_rfc3339(),
            "createdBy": "crm tests",
            "comment": comment,
        });
        let response = self.client.post(format!("{}/api/v2/silences", self.url)).json(&body).send().await?;
        let response = response.error_for_status()?;
        let created: Value = response.json().await?;
        Ok(created["silenceID"].as_str().unwrap_or_default().to_string())
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
