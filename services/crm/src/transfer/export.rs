//! `crm export contacts`: every live contact, oldest first, page by page
//! through the gateway's `ListContacts`, streamed to CSV or JSON Lines (a
//! file, gzip by its name, or standard output) in the columns `crm import`
//! reads back.

use std::io::{self, BufWriter, Write};

use anyhow::Context;
use crm_proto::contacts::v1::{ListContactsRequest, contacts_service_client::ContactsServiceClient};
use crm_transfer::{
    Format,
    contacts::{EXPORT_COLUMNS, to_row},
};

use super::progress::Progress;
use crate::{bench::transport::Transport, cli::ExportContacts};

/// Contacts per page: the most `ListContacts` gives.
const PAGE: i32 = 500;

pub async fn contacts(args: ExportContacts) -> anyhow::Result<()> {
    let format = args.format.unwrap_or_else(|| args.output.as_deref().map_or(Format::Csv, Format::of));
    let sink: Box<dyn Write> = match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
            if path.to_string_lossy().to_lowercase().ends_with(".gz") {
                Box::new(flate2::write::GzEncoder::new(file, flate2::Compression::fast()))
            } else {
                Box::new(file)
            }
        }
        None => Box::new(io::stdout().lock()),
    };
    let mut out = Rows::new(BufWriter::with_capacity(1 << 16, sink), format)?;
    let client = ContactsServiceClient::new(Transport::with_key(&args.gateway, &args.key).await?)
        .max_decoding_message_size(64 << 20);
    let mut progress = Progress::start("exported", None);
    let updated_since = args
        .updated_since
        .map(|at| prost_types::Timestamp { seconds: at.timestamp(), nanos: at.timestamp_subsec_nanos() as i32 });
    let (mut page_token, mut exported) = (String::new(), 0u64);
    // The next page is asked for while this one is written.
    let mut next = Some(tokio::spawn(page(client.clone(), page_token.clone(), updated_since)));
    while let Some(fetching) = next.take() {
        let (contacts, token) = fetching.await.context("listing contacts")??;
        page_token = token;
        if !page_token.is_empty() {
            next = Some(tokio::spawn(page(client.clone(), page_token.clone(), updated_since)));
        }
        for contact in &contacts {
            out.write(&to_row(contact))?;
        }
        exported += contacts.len() as u64;
        progress.update(exported);
    }
    out.finish()?;
    let took = progress.finish();
    eprintln!(
        "exported {exported} contacts in {:.1} s ({:.0} rows/s)",
        took.as_secs_f64(),
        exported as f64 / took.as_secs_f64().max(1e-3)
    );
    Ok(())
}

async fn page(
    mut client: ContactsServiceClient<Transport>,
    page_token: String,
    updated_since: Option<prost_types::Timestamp>,
) -> anyhow::Result<(Vec<crm_proto::contacts::v1::Contact>, String)> {
    let page = client
        .list_contacts(ListContactsRequest { page_size: PAGE, page_token, updated_since, ..Default::default() })
        .await
        .map_err(|status| anyhow::anyhow!("{} ({:?})", status.message(), status.code()))
        .context("listing contacts through the gateway")?
        .into_inner();
    Ok((page.contacts, page.next_page_token))
}

/// Rows written in one format.
enum Rows<W: Write> {
    Csv(Box<csv::Writer<W>>),
    Jsonl(W),
}

impl<W: Write> Rows<W> {
    fn new(sink: W, format: Format) -> anyhow::Result<Rows<W>> {
        Ok(match format {
            Format::Csv => {
                let mut writer = csv::Writer::from_writer(sink);
                writer.write_record(EXPORT_COLUMNS)?;
                Rows::Csv(Box::new(writer))
            }
            Format::Jsonl => Rows::Jsonl(sink),
        })
    }

    fn write(&mut self, cells: &[Option<crm_transfer::contacts::Cell>]) -> anyhow::Result<()> {
        match self {
            Rows::Csv(writer) => writer
                .write_record(cells.iter().map(|cell| cell.as_ref().map(|cell| cell.to_text()).unwrap_or_default()))?,
            Rows::Jsonl(writer) => {
                let object: serde_json::Map<String, serde_json::Value> = EXPORT_COLUMNS
                    .iter()
                    .zip(cells)
                    .filter_map(|(column, cell)| Some((column.to_string(), cell.as_ref()?.to_json())))
                    .collect();
                serde_json::to_writer(&mut *writer, &object)?;
                writer.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        match self {
            Rows::Csv(writer) => writer.into_inner().map_err(|error| anyhow::anyhow!("{}", error.error()))?.flush()?,
            Rows::Jsonl(mut writer) => writer.flush()?,
        }
        Ok(())
    }
}
