//! `crm export contacts`, `interactions` and `segment`: contacts by the
//! streaming `ExportContacts`, the others page by page, through the gateway,
//! written as they come to CSV or JSON Lines (a file, gzip by its name, or
//! standard output) in the columns `crm import` reads back.

use std::io::{self, BufWriter, Write};

use anyhow::Context;
use crm_proto::{
    contacts::v1::{Contact, ExportContactsRequest, GetContactRequest, contacts_service_client::ContactsServiceClient},
    events::v1::ListEventsRequest,
    interactions::v1::{
        InteractionRecorded, ListInteractionsRequest, interactions_service_client::InteractionsServiceClient,
    },
    segmentation::v1::{
        ListSegmentMembersRequest, SegmentMember, segmentation_service_client::SegmentationServiceClient,
    },
};
use crm_transfer::{Format, contacts, contacts::Cell, interactions};
use futures_util::{Stream, StreamExt};
use prost::{Message, Name};

use super::progress::Progress;
use crate::{
    bench::transport::Transport,
    cli::{ExportContacts, ExportInteractions, ExportSegment},
};

/// Items per page: the most the list calls give.
const PAGE: i32 = 500;

pub async fn contacts(args: ExportContacts) -> anyhow::Result<()> {
    let client = ContactsServiceClient::new(Transport::with_key(&args.gateway, &args.key).await?)
        .max_decoding_message_size(64 << 20);
    let request = ExportContactsRequest { updated_since: args.updated_since.map(timestamp), ..Default::default() };
    let batches = exported_contacts(client, request);
    let exported =
        write_batches(args.output.as_deref(), args.format, &contacts::EXPORT_COLUMNS, batches, contacts::to_row)
            .await?;
    eprintln!("{exported}");
    Ok(())
}

/// How many times in a row a broken export is taken up again.
const RESUMPTIONS: u32 = 3;

/// The batches of `ExportContacts`; when the stream breaks (the gateway or
/// the role restarted, the network dropped), it is asked again from the
/// last contact received, up to [`RESUMPTIONS`] times in a row.
fn exported_contacts(
    client: ContactsServiceClient<Transport>,
    mut request: ExportContactsRequest,
) -> impl Stream<Item = anyhow::Result<Vec<Contact>>> {
    async_stream::try_stream! {
        let mut failures = 0;
        loop {
            let mut stream = match client.clone().export_contacts(request.clone()).await {
                Ok(stream) => stream.into_inner(),
                Err(status) if resumable(&status) && failures < RESUMPTIONS => {
                    failures += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(500 << failures)).await;
                    continue;
                }
                Err(status) => Err(failed(status))?,
            };
            loop {
                match stream.message().await {
                    Ok(Some(batch)) => {
                        failures = 0;
                        if let Some(last) = batch.contacts.last() {
                            request.start_after.clone_from(&last.id);
                        }
                        yield batch.contacts;
                    }
                    Ok(None) => return,
                    Err(status) if resumable(&status) && failures < RESUMPTIONS => {
                        failures += 1;
                        eprintln!(
                            "the export stream broke ({}: {}); taking it up again after the last contact received",
                            status.code(),
                            status.message()
                        );
                        break;
                    }
                    Err(status) => Err(failed(status))?,
                }
            }
        }
    }
}

/// A failure that asking again may get past.
fn resumable(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Internal | tonic::Code::Cancelled
    )
}

/// `crm export interactions`: one contact's timeline (`ListInteractions`),
/// or every interaction recorded, in the order they were, from the
/// interactions feed (`ListEvents`, `InteractionRecorded`); `--since`
/// keeps those that happened at or after a time.
pub async fn interactions(args: ExportInteractions) -> anyhow::Result<()> {
    let transport = Transport::with_key(&args.gateway, &args.key).await?;
    let since = args.since.map(timestamp);
    let (output, format) = (args.output.as_deref(), args.format);
    let columns = &interactions::EXPORT_COLUMNS;
    let exported = match args.contact {
        Some(contact_id) => {
            let client = InteractionsServiceClient::new(transport).max_decoding_message_size(64 << 20);
            let fetch = move |page_token: String| {
                let (mut client, contact_id) = (client.clone(), contact_id.clone());
                async move {
                    let request = ListInteractionsRequest {
                        contact_id,
                        page_size: PAGE,
                        page_token,
                        start_time: since,
                        ..Default::default()
                    };
                    let page = client.list_interactions(request).await.map_err(failed)?.into_inner();
                    Ok((page.interactions, page.next_page_token))
                }
            };
            write_pages(output, format, columns, fetch, interactions::to_row).await?
        }
        None => {
            let client = InteractionsServiceClient::new(transport).max_decoding_message_size(64 << 20);
            let fetch = move |page_token: String| {
                let mut client = client.clone();
                async move {
                    let request = ListEventsRequest {
                        page_size: PAGE,
                        page_token,
                        event_types: vec![InteractionRecorded::full_name()],
                        ..Default::default()
                    };
                    let page = client.list_events(request).await.map_err(failed)?.into_inner();
                    let mut recorded = Vec::with_capacity(page.events.len());
                    for event in page.events {
                        let payload = event.payload.unwrap_or_default();
                        let interaction = InteractionRecorded::decode(payload.value.as_slice())
                            .context("reading an InteractionRecorded event")?
                            .interaction
                            .unwrap_or_default();
                        let at = interaction.occurred_at.unwrap_or_default();
                        if since.is_none_or(|since| (at.seconds, at.nanos) >= (since.seconds, since.nanos)) {
                            recorded.push(interaction);
                        }
                    }
                    Ok((recorded, page.next_page_token))
                }
            };
            write_pages(output, format, columns, fetch, interactions::to_row).await?
        }
    };
    eprintln!("{exported}");
    Ok(())
}

/// `crm export segment ID`: a segment's members, by contact id with the
/// time each joined (`ListSegmentMembers`), and with `--contacts` each
/// member's contact in the columns of `crm export contacts` (for a mailing
/// or advertising tool), looked up sixteen at a time.
pub async fn segment(args: ExportSegment) -> anyhow::Result<()> {
    let transport = Transport::with_key(&args.gateway, &args.key).await?;
    let members = SegmentationServiceClient::new(transport.clone()).max_decoding_message_size(64 << 20);
    let people = ContactsServiceClient::new(transport).max_decoding_message_size(64 << 20);
    let (segment_id, with_contacts) = (args.segment.clone(), args.contacts);
    let fetch = move |page_token: String| {
        let (mut members, people, segment_id) = (members.clone(), people.clone(), segment_id.clone());
        async move {
            let request = ListSegmentMembersRequest { segment_id, page_size: 1000, page_token };
            let page = members.list_segment_members(request).await.map_err(failed)?.into_inner();
            let contacts: Vec<Option<Contact>> = if with_contacts {
                let ids: Vec<String> = page.members.iter().map(|member| member.contact_id.clone()).collect();
                futures_util::stream::iter(ids)
                    .map(|id| {
                        let mut people = people.clone();
                        async move {
                            match people.get_contact(GetContactRequest { id }).await {
                                Ok(contact) => Ok(Some(contact.into_inner())),
                                // Erased or deleted since it joined: its id and time only.
                                Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
                                Err(status) => Err(failed(status)),
                            }
                        }
                    })
                    .buffered(16)
                    .collect::<Vec<anyhow::Result<Option<Contact>>>>()
                    .await
                    .into_iter()
                    .collect::<anyhow::Result<_>>()?
            } else {
                vec![None; page.members.len()]
            };
            Ok((page.members.into_iter().zip(contacts).collect::<Vec<_>>(), page.next_page_token))
        }
    };
    let columns: Vec<&str> = if args.contacts {
        ["member_since"].into_iter().chain(contacts::EXPORT_COLUMNS).collect()
    } else {
        vec!["contact_id", "member_since"]
    };
    let exported = write_pages(args.output.as_deref(), args.format, &columns, fetch, member_row).await?;
    eprintln!("{exported}");
    Ok(())
}

/// A member as a row: with its contact, the contact's columns after the time it joined.
fn member_row((member, contact): &(SegmentMember, Option<Contact>)) -> Vec<Option<Cell>> {
    let since = member
        .since
        .as_ref()
        .and_then(|at| chrono::DateTime::from_timestamp(at.seconds, at.nanos.max(0) as u32))
        .map(|at| Cell::Text(at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)));
    match contact {
        Some(contact) => std::iter::once(since).chain(contacts::to_row(contact)).collect(),
        None => vec![Some(Cell::Text(member.contact_id.clone())), since],
    }
}

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: at.timestamp(), nanos: at.timestamp_subsec_nanos() as i32 }
}

fn failed(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{} ({:?})", status.message(), status.code()).context("listing through the gateway")
}

/// Writes every page `fetch` gives (the next page asked for while this
/// one is written): see [`write_batches`].
async fn write_pages<T, Fut>(
    output: Option<&std::path::Path>,
    format: Option<Format>,
    columns: &[&str],
    fetch: impl Fn(String) -> Fut,
    to_row: fn(&T) -> Vec<Option<Cell>>,
) -> anyhow::Result<String>
where
    T: Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<(Vec<T>, String)>> + Send + 'static,
{
    let pages = async_stream::try_stream! {
        let mut next = Some(tokio::spawn(fetch(String::new())));
        while let Some(fetching) = next.take() {
            let (items, page_token) = fetching.await.context("listing")??;
            if !page_token.is_empty() {
                next = Some(tokio::spawn(fetch(page_token)));
            }
            yield items;
        }
    };
    write_batches(output, format, columns, pages, to_row).await
}

/// Writes every item of `batches` to `output` (standard output when `None`;
/// gzip by a `.gz` name) in `format` (by the name when `None`; CSV on
/// standard output); answers what was done, for the summary line.
async fn write_batches<T>(
    output: Option<&std::path::Path>,
    format: Option<Format>,
    columns: &[&str],
    batches: impl Stream<Item = anyhow::Result<Vec<T>>>,
    to_row: fn(&T) -> Vec<Option<Cell>>,
) -> anyhow::Result<String> {
    let format = format.unwrap_or_else(|| output.map_or(Format::Csv, Format::of));
    let sink = match output {
        Some(path) => {
            let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
            if path.to_string_lossy().to_lowercase().ends_with(".gz") {
                Sink::Gzip(flate2::write::GzEncoder::new(file, flate2::Compression::fast()))
            } else {
                Sink::File(file)
            }
        }
        None => Sink::Stdout(io::stdout().lock()),
    };
    let mut out = Rows::new(BufWriter::with_capacity(1 << 16, sink), format, columns)?;
    let mut progress = Progress::start("exported", None);
    let mut exported = 0u64;
    let mut batches = std::pin::pin!(batches);
    while let Some(items) = batches.next().await {
        let items = items?;
        for item in &items {
            out.write(&to_row(item))?;
        }
        exported += items.len() as u64;
        progress.update(exported);
    }
    out.finish()?.finish()?;
    let took = progress.finish();
    Ok(format!(
        "exported {exported} rows in {:.1} s ({:.0} rows/s)",
        took.as_secs_f64(),
        exported as f64 / took.as_secs_f64().max(1e-3)
    ))
}

/// Where the rows go.
enum Sink {
    File(std::fs::File),
    Gzip(flate2::write::GzEncoder<std::fs::File>),
    Stdout(io::StdoutLock<'static>),
}

impl Sink {
    /// Ends the output: a gzip file gets its trailer, and a failure to write it is an error.
    fn finish(self) -> anyhow::Result<()> {
        match self {
            Sink::File(mut file) => file.flush()?,
            Sink::Gzip(gzip) => gzip.finish()?.flush()?,
            Sink::Stdout(mut stdout) => stdout.flush()?,
        }
        Ok(())
    }
}

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Sink::File(file) => file.write(bytes),
            Sink::Gzip(gzip) => gzip.write(bytes),
            Sink::Stdout(stdout) => stdout.write(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::File(file) => file.flush(),
            Sink::Gzip(gzip) => gzip.flush(),
            Sink::Stdout(stdout) => stdout.flush(),
        }
    }
}

/// Rows written in one format.
enum Rows<'c> {
    Csv(Box<csv::Writer<BufWriter<Sink>>>),
    Jsonl(BufWriter<Sink>, &'c [&'c str]),
}

impl<'c> Rows<'c> {
    fn new(sink: BufWriter<Sink>, format: Format, columns: &'c [&'c str]) -> anyhow::Result<Rows<'c>> {
        Ok(match format {
            Format::Csv => {
                let mut writer = csv::Writer::from_writer(sink);
                writer.write_record(columns)?;
                Rows::Csv(Box::new(writer))
            }
            Format::Jsonl => Rows::Jsonl(sink, columns),
        })
    }

    fn write(&mut self, cells: &[Option<Cell>]) -> anyhow::Result<()> {
        match self {
            Rows::Csv(writer) => writer
                .write_record(cells.iter().map(|cell| cell.as_ref().map(|cell| cell.to_text()).unwrap_or_default()))?,
            Rows::Jsonl(writer, columns) => {
                let object: serde_json::Map<String, serde_json::Value> = columns
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

    /// Flushes what is buffered and gives the sink back.
    fn finish(self) -> anyhow::Result<Sink> {
        let writer = match self {
            Rows::Csv(writer) => writer.into_inner().map_err(|error| anyhow::anyhow!("{}", error.error()))?,
            Rows::Jsonl(writer, _) => writer,
        };
        writer.into_inner().map_err(|error| anyhow::anyhow!("{}", error.error()))
    }
}
