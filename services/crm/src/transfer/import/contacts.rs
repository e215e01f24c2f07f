//! `crm import contacts FILE`: a legacy file through the gateway's
//! `ImportContacts` stream, with the duplicate policy and the suite's own
//! dry run.

use anyhow::Context;
use crm_proto::contacts::v1::{
    ImportContactsRequest, ImportOptions, ImportRow, contacts_service_client::ContactsServiceClient,
};
use crm_transfer::{RowOptions, Target, contacts::to_contact};
use tokio::sync::mpsc;
use tokio_stream::{StreamExt, wrappers::ReceiverStream};

use super::{Started, read_batches};
use crate::{
    bench::transport::Transport,
    cli::ImportContacts,
    transfer::report::{self, Counts},
};

pub async fn run(args: ImportContacts) -> anyhow::Result<()> {
    let input = &args.input;
    let policy = args.duplicates;
    let options = format!("{policy:?}|{:?}", args.country);
    let Some(started) = super::start::<Target, Counts>(input, args.dry_run, &options)? else { return Ok(()) };
    let policy = policy.context(
        "say what to do with a row that likely duplicates a contact: --duplicates merge, skip, flag or fail",
    )?;
    let Started { mut rows, overrides, source, gateway, key, lines_done, mut ledger, mut progress } = started;

    let (batches_tx, mut batches) = mpsc::unbounded_channel();
    let (rows_tx, mut ready) = mpsc::channel::<Vec<(u64, ImportRow)>>(2);
    let reading = {
        let row_options =
            RowOptions { source: source.clone(), default_country: args.country.clone(), date_order: input.date_order };
        let (batch, strict) = (input.batch, input.strict);
        tokio::task::spawn_blocking(move || {
            read_batches(
                &mut rows,
                &overrides,
                lines_done,
                batch,
                strict,
                |mapping, record| {
                    to_contact(mapping, record, &row_options)
                        .map(|contact| ImportRow { row_id: record.line.to_string(), contact: Some(contact) })
                },
                Box::new(|rows| Ok((rows, Vec::new()))),
                &batches_tx,
                &rows_tx,
            )
        })
    };

    if let Some(first) = ready.recv().await {
        let mut options = Some(ImportOptions { duplicate_policy: policy as i32, dry_run: args.dry_run, source });
        let stream = tokio_stream::once(first).chain(ReceiverStream::new(ready)).map(move |rows| {
            ImportContactsRequest { options: options.take(), rows: rows.into_iter().map(|(_, row)| row).collect() }
        });
        let mut client = ContactsServiceClient::new(Transport::with_key(&gateway, &key).await?)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        let mut answers = super::opened(client.import_contacts(stream)).await?;
        while let Some(answer) = super::next_answer(&mut answers).await? {
            let batch =
                ledger.next_sent(&mut batches).await?.context("the suite answered a message that was not sent")?;
            let mut lines = batch.unreadable;
            for result in &answer.results {
                let line = result.row_id.parse().unwrap_or_default();
                lines.extend(report::record(&mut ledger.counts, line, result));
            }
            ledger.settle(lines, batch.last_line)?;
            progress.update(crate::transfer::report::Tally::rows(&ledger.counts));
        }
    }
    let end = reading.await.context("the reading thread failed")??;
    if ledger.next_sent(&mut batches).await?.is_some() {
        anyhow::bail!("the suite did not answer every message; run the same command again to finish the import");
    }
    let what = if args.dry_run { "dry run (nothing was written) of" } else { "imported" };
    ledger.finish(end, progress, what, &input.file)
}
