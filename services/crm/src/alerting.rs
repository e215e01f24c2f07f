//! `crm alerting`: the alerting role's tools that work against a running
//! install through its gateway.

use std::path::Path;

use anyhow::Context;
use crm_proto::alerting::v1::{ListSlosRequest, alerting_service_client::AlertingServiceClient};

use crate::bench::transport::Transport;

/// `crm alerting export-rules`: every SLO, read through the gateway, and
/// the Prometheus rules of those Prometheus counts, to `output` or stdout.
pub async fn export_rules(gateway: &str, key: &str, output: Option<&Path>) -> anyhow::Result<()> {
    let mut client = AlertingServiceClient::new(Transport::with_key(gateway, key).await?);
    let (mut slos, mut page_token) = (Vec::new(), String::new());
    loop {
        let page = client
            .list_slos(ListSlosRequest { page_size: 500, page_token })
            .await
            .context("listing the SLOs through the gateway")?
            .into_inner();
        slos.extend(page.slos);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let rules = crm_alerting::slo::export::prometheus_rules(&slos);
    match output {
        Some(path) => std::fs::write(path, rules).with_context(|| format!("writing {}", path.display()))?,
        None => print!("{rules}"),
    }
    Ok(())
}
