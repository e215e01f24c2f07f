//! `crm import contacts FILE`: a legacy file through the gateway's
//! `ImportContacts` stream, with the duplicate policy and the suite's own
//! dry run.

use anyhow::Context;
use crm_proto::contacts::v1::{
    ImportContactsRequest, ImportOptions, ImportRow, contacts_service_client::ContactsServiceClient,
};
use crm_transfer::{RowOptions, Target, contacts::to_contact};
use futures_util::StreamExt;

use super::{Started, spawn_reading};
use crate::{
    bench::transport::Transport,
    cli::ImportContacts,
    transfer::report::{self, Counts, Tally},
};

/// How many times an import that lost a race for an external id resumes by itself.
const RESUMES: u32 = 3;

/// Runs the import; when it stops because another import of the same rows
/// took an external id first (an earlier run, stopped, whose last messages
/// the suite was still writing), it resumes by itself after a moment, as
/// running the same command again would: the rows are found by their ids.
pub async fn run(args: ImportContacts) -> anyhow::Result<()> {
    let mut resumed = 0;
    loop {
        match run_once(args.clone()).await {
            Err(error) if resumed < RESUMES && lost_a_race(&error) => {
                resumed += 1;
                eprintln!("another import of these rows took an external id first; resuming in a second");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            outcome => return outcome,
        }
    }
}

/// Whether the import stopped because a concurrent write claimed an external id first.
fn lost_a_race(error: &anyhow::Error) -> bool {
    format!("{error:#}").contains("(AlreadyExists)")
}

async fn run_once(args: ImportContacts) -> anyhow::Result<()> {
    let input = &args.input;
    let policy = args.duplicates;
    let options = format!("{policy:?}|{:?}", args.country);
    let Some(mut started) = super::start::<Target, Counts>(input, args.dry_run, &options)? else { return Ok(()) };
    let policy = policy.context(
        "say what to do with a row that likely duplicates a contact: --duplicates merge, skip, flag or fail",
    )?;
    let row_options = RowOptions {
        source: started.source.clone(),
        default_country: args.country.clone(),
        date_order: input.date_order,
    };
    let mut reading = spawn_reading(
        &mut started,
        input,
        move |mapping, record| {
            to_contact(mapping, record, &row_options)
                .map(|contact| ImportRow { row_id: record.line.to_string(), contact: Some(contact) })
        },
        Box::new(|rows| Ok((rows, Vec::new()))),
    );
    let Started { source, gateway, key, mut ledger, mut progress, .. } = started;

    if let Some(rows) = reading.to_send().await {
        let mut options = Some(ImportOptions { duplicate_policy: policy as i32, dry_run: args.dry_run, source });
        let stream = rows.map(move |rows| ImportContactsRequest {
            options: options.take(),
            rows: rows.into_iter().map(|(_, row)| row).collect(),
        });
        let mut client = ContactsServiceClient::new(Transport::with_key(&gateway, &key).await?)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        let mut answers = super::opened(client.import_contacts(stream)).await?;
        while let Some(answer) = super::next_answer(&mut answers).await? {
            let batch = ledger
                .next_sent(&mut reading.batches)
                .await?
                .context("the suite answered a message that was not sent")?;
            let mut lines = batch.unreadable;
            for result in &answer.results {
                let line = result.row_id.parse().unwrap_or_default();
                lines.extend(report::record(&mut ledger.counts, line, result));
            }
            ledger.settle(lines, batch.last_line)?;
            progress.update(ledger.counts.rows());
        }
    }
    let what = if args.dry_run { "dry run (nothing was written) of" } else { "imported" };
    reading.finish(ledger, progress, what, &input.file).await
}
