//! A real Prometheus (the Debian package `prometheus`, or the binary in
//! `CRM_PROMETHEUS_BIN`) on a free port, scraping given targets every
//! second: the source of technical SLOs in the tests. Its address is known
//! before it starts ([`Prometheus::reserve`]), so a suite can be configured
//! with it and then be its target.

use std::{net::SocketAddr, path::PathBuf, process::Stdio, time::Duration};

use serde_json::Value;
use tokio::process::{Child, Command};

/// A port and directory for a Prometheus not started yet.
pub struct Prometheus {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    port: u16,
    child: Option<Child>,
    dir: PathBuf,
    client: reqwest::Client,
}

fn binary() -> String {
    std::env::var("CRM_PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".into())
}

impl Prometheus {
    /// Picks its port and directory.
    pub fn reserve() -> anyhow::Result<Prometheus> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = std::env::temp_dir().join(format!("crm-prometheus-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(dir.join("data"))?;
        Ok(Prometheus {
            url: format!("http://127.0.0.1:{port}"),
            port,
            child: None,
            dir,
            client: reqwest::Client::new(),
        })
    }

    /// Starts it scraping `targets`' `/metrics` every second, and waits until it is ready.
    pub async fn start(&mut self, targets: &[SocketAddr]) -> anyhow::Result<()> {
        self.start_with_rules(targets, &[]).await
    }

    /// Starts it as [`Prometheus::start`] does, evaluating `rule_files` every second.
    pub async fn start_with_rules(&mut self, targets: &[SocketAddr], rule_files: &[PathBuf]) -> anyhow::Result<()> {
        let targets: Vec<String> = targets.iter().map(|target| format!("'{target}'")).collect();
        let rules: Vec<String> = rule_files.iter().map(|file| format!("'{}'", file.display())).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [{}]\nscrape_configs:\n  - job_name: crm\n    static_configs:\n      - targets: [{}]\n",
            rules.join(", "),
            targets.join(", ")
        );
        std::fs::write(self.dir.join("prometheus.yml"), config)?;
        let child = Command::new(binary())
            .arg(format!("--config.file={}", self.dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", self.dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| {
                anyhow::anyhow!(
                    "cannot start Prometheus ({}): {error}; install the Debian package prometheus or set CRM_PROMETHEUS_BIN",
                    binary()
                )
            })?;
        self.child = Some(child);
        for _ in 0..400 {
            let ready = self.client.get(format!("{}/-/ready", self.url)).send().await;
            if ready.is_ok_and(|response| response.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("Prometheus did not become ready at {}", self.url)
    }

    /// Every rule it evaluates, by group: `data.groups` of `/api/v1/rules`
    /// (each rule with its `name`, `health` and `lastError`).
    pub async fn rules(&self) -> anyhow::Result<Value> {
        let response = self.client.get(format!("{}/api/v1/rules", self.url)).send().await?.error_for_status()?;
        let answer: Value = response.json().await?;
        Ok(answer["data"]["groups"].clone())
    }

    /// The result of an instant query (`data.result`).
    pub async fn query(&self, promql: &str) -> anyhow::Result<Value> {
        let response = self
            .client
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", promql)])
            .send()
            .await?
            .error_for_status()?;
        let answer: Value = response.json().await?;
        Ok(answer["data"]["result"].clone())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
