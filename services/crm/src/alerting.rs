//! `crm alerting`: the alerting role's tools that work against a running
//! install through its gateway.

use std::{fmt::Write as _, path::Path};

use anyhow::Context;
use crm_alerting::slo::openslo;
use crm_proto::alerting::v1::{CreateSloRequest, ListSlosRequest, Slo, alerting_service_client::AlertingServiceClient};
use tonic_types::StatusExt;

use crate::bench::transport::Transport;

type Client = AlertingServiceClient<Transport>;

async fn client(gateway: &str, key: &str) -> anyhow::Result<Client> {
    Ok(AlertingServiceClient::new(Transport::with_key(gateway, key).await?))
}

/// Every SLO, by name.
async fn all_slos(client: &mut Client) -> anyhow::Result<Vec<Slo>> {
    crate::pages::all(|page_token| {
        let mut client = client.clone();
        async move {
            let page = client
                .list_slos(ListSlosRequest { page_size: 500, page_token })
                .await
                .context("listing the SLOs through the gateway")?
                .into_inner();
            Ok((page.slos, page.next_page_token))
        }
    })
    .await
}

fn write_out(output: Option<&Path>, text: &str) -> anyhow::Result<()> {
    match output {
        Some(path) => std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}

/// `crm alerting export-rules`: every SLO, read through the gateway, and
/// the Prometheus rules of those Prometheus counts, to `output` or stdout.
pub async fn export_rules(gateway: &str, key: &str, output: Option<&Path>) -> anyhow::Result<()> {
    let slos = all_slos(&mut client(gateway, key).await?).await?;
    write_out(output, &crm_alerting::slo::export::prometheus_rules(&slos)?)
}

/// `crm alerting export-openslo`: every SLO as an OpenSLO v1 document.
pub async fn export_openslo(gateway: &str, key: &str, output: Option<&Path>) -> anyhow::Result<()> {
    let slos = all_slos(&mut client(gateway, key).await?).await?;
    write_out(output, &openslo::write(&slos).map_err(anyhow::Error::msg)?)
}

/// Whether an existing SLO says what `wanted` says (what a document sets).
fn same(existing: &Slo, wanted: &Slo) -> bool {
    existing.owner == wanted.owner
        && existing.description == wanted.description
        && existing.objective == wanted.objective
        && existing.window == wanted.window
        && existing.indicator == wanted.indicator
}

/// `crm alerting apply -f FILE`: checks every document, then creates the
/// SLOs that do not exist; returns one line per document. Fails, applying
/// nothing, when a document is wrong; fails after the others when the
/// server refuses one, naming its fields.
pub async fn apply(gateway: &str, key: &str, file: &Path) -> anyhow::Result<String> {
    let text = if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let documents = openslo::parse(&text).map_err(|error| anyhow::anyhow!("{}: {error}", file.display()))?;
    let mut wanted = Vec::new();
    let mut problems = String::new();
    for (index, document) in documents.iter().enumerate() {
        match openslo::to_slo(document) {
            Ok(slo) => wanted.push(slo),
            Err(found) => {
                for (field, problem) in found {
                    let _ =
                        writeln!(problems, "document {} ({}): {field} {problem}", index + 1, document.metadata.name);
                }
            }
        }
    }
    if !problems.is_empty() {
        anyhow::bail!("{}: nothing applied:\n{problems}", file.display());
    }
    let mut client = client(gateway, key).await?;
    let existing = all_slos(&mut client).await?;
    let (mut report, mut refused) = (String::new(), 0);
    for slo in wanted {
        match existing.iter().find(|known| known.name.eq_ignore_ascii_case(&slo.name)) {
            Some(known) if same(known, &slo) => {
                let _ = writeln!(report, "{}: unchanged", slo.name);
            }
            Some(known) => {
                refused += 1;
                let _ = writeln!(
                    report,
                    "{}: exists ({}) and differs; an SLO does not change once made (its counts start with it): delete it first",
                    slo.name, known.id
                );
            }
            None => match client.create_slo(CreateSloRequest { slo: Some(slo.clone()) }).await {
                Ok(created) => {
                    let _ = writeln!(report, "{}: created ({})", slo.name, created.into_inner().id);
                }
                Err(status) => {
                    refused += 1;
                    let _ = writeln!(report, "{}: refused: {}", slo.name, status.message());
                    for violation in
                        status.get_details_bad_request().map(|details| details.field_violations).unwrap_or_default()
                    {
                        let _ = writeln!(report, "  {}: {}", violation.field, violation.description);
                    }
                }
            },
        }
    }
    if refused > 0 {
        anyhow::bail!("{report}{refused} of the documents were not applied");
    }
    Ok(report)
}
