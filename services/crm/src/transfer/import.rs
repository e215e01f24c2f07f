//! `crm import contacts FILE`: a legacy file into the suite through the
//! gateway's `ImportContacts` stream.
//!
//! A reading thread turns rows into messages of `--batch` rows (lines it
//! cannot read, and cells it cannot convert, go straight to the report);
//! the suite commits each message and answers it in order; after each
//! answer the report is flushed and the checkpoint moved past the
//! message's last line. Rows carry external ids (the file's id column
//! under `--source`, or a digest of the row), so a rerun after any
//! interruption updates what was already imported instead of duplicating
//! it, and the checkpoint lets it skip those rows altogether.

use std::path::PathBuf;

use anyhow::{Context, bail};
use crm_proto::contacts::v1::{
    DuplicatePolicy, ImportContactsRequest, ImportOptions, ImportRow, contacts_service_client::ContactsServiceClient,
};
use crm_transfer::{Item, Mapping, Overrides, ReadOptions, RowOptions, Rows, contacts::to_contact};
use tokio::sync::mpsc;
use tokio_stream::{StreamExt, wrappers::ReceiverStream};

use super::{
    checkpoint::{self, Checkpoint},
    progress::Progress,
    report::{self, Counts, Line, Report},
};
use crate::{bench::transport::Transport, cli::ImportContacts};

/// The most rows the suite takes in one message.
pub const MAX_BATCH: usize = 5000;

/// One message's worth of rows, as the reading thread sent it.
struct Batch {
    /// The last line of the input it covers.
    last_line: u64,
    /// Rows sent in its message (none: nothing to wait for).
    sent: usize,
    /// Lines that were never sent, for the report.
    unreadable: Vec<Line>,
}

/// How the reading ended.
struct ReadEnd {
    /// `--strict` stopped at this line, for this reason.
    stopped: Option<(u64, String)>,
}

pub async fn contacts(args: ImportContacts) -> anyhow::Result<()> {
    let overrides = overrides(&args)?;
    let read = ReadOptions { format: args.format, delimiter: args.delimiter, encoding: args.encoding.clone() };
    let mut rows = Rows::open(&args.file, &read)?;
    if args.show_mapping {
        if rows.headers().is_empty() {
            // JSON Lines: the columns are the keys of the first rows.
            for _ in 0..1000 {
                if rows.next_item()?.is_none() {
                    break;
                }
            }
        }
        print!("{}", Mapping::new(rows.headers(), &overrides).describe());
        return Ok(());
    }
    check_mapping(&rows, &overrides)?;
    let gateway = args.gateway.clone().context("say which gateway to import through: --gateway or CRM_GATEWAY")?;
    let key = args.key.clone().context("an API key that writes contacts is needed: --key or CRM_API_KEY")?;
    let policy = args.duplicates.context(
        "say what to do with a row that likely duplicates a contact: --duplicates merge, skip, flag or fail",
    )?;
    if !(1..=MAX_BATCH).contains(&args.batch) {
        bail!("--batch must be 1 to {MAX_BATCH} rows");
    }
    let source = source(&args)?;

    let checkpoint_path = if args.dry_run { None } else { checkpoint::path_for(&args.file, args.report.as_deref()) };
    let fingerprint = fingerprint(&args, &source, policy)?;
    let resumed = match &checkpoint_path {
        Some(path) if args.restart => {
            checkpoint::remove(path)?;
            None
        }
        Some(path) => checkpoint::load(path, &fingerprint)?,
        None => None,
    };
    let report = Report::open(args.report.as_deref(), resumed.is_some())?;
    let (lines_done, counts) = resumed.as_ref().map(|done| (done.lines_done, done.counts)).unwrap_or_default();
    if resumed.is_some() {
        eprintln!("resuming after line {lines_done}, where an earlier run of this import stopped");
    }

    let mut progress = Progress::start("imported", rows.total_bytes.map(|total| (rows.bytes_read.clone(), total)));
    let (batches_tx, mut batches) = mpsc::unbounded_channel::<Batch>();
    let (requests_tx, mut requests) = mpsc::channel::<ImportContactsRequest>(2);
    let reading = {
        let options = ImportOptions { duplicate_policy: policy as i32, dry_run: args.dry_run, source: source.clone() };
        let row_options =
            RowOptions { source: source.clone(), default_country: args.country.clone(), date_order: args.date_order };
        let (batch, strict) = (args.batch, args.strict);
        tokio::task::spawn_blocking(move || {
            read_batches(
                &mut rows,
                &overrides,
                &row_options,
                options,
                lines_done,
                batch,
                strict,
                &batches_tx,
                &requests_tx,
            )
        })
    };

    let mut ledger = Ledger { report, counts, checkpoint: checkpoint_path.clone(), fingerprint };
    if let Some(first) = requests.recv().await {
        let mut client = ContactsServiceClient::new(Transport::with_key(&gateway, &key).await?)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        let stream = tokio_stream::once(first).chain(ReceiverStream::new(requests));
        let mut answers = client
            .import_contacts(stream)
            .await
            .map_err(|status| anyhow::anyhow!("{}", status.message()))
            .context("starting the import through the gateway")?
            .into_inner();
        while let Some(answer) = answers
            .message()
            .await
            .map_err(|status| anyhow::anyhow!("{} ({:?})", status.message(), status.code()))
            .context("the import stopped; run the same command again to finish it")?
        {
            // Lines read before this message that sent nothing are done first.
            let batch = loop {
                let batch = batches.recv().await.context("the suite answered a message that was not sent")?;
                if batch.sent > 0 {
                    break batch;
                }
                ledger.settle(batch.unreadable, batch.last_line)?;
            };
            let mut lines = batch.unreadable;
            for result in &answer.results {
                let line = result.row_id.parse().unwrap_or_default();
                lines.extend(report::record(&mut ledger.counts, line, result));
            }
            ledger.settle(lines, batch.last_line)?;
            progress.update(ledger.counts.rows());
        }
    }
    let end = reading.await.context("the reading thread failed")??;
    while let Some(batch) = batches.recv().await {
        if batch.sent > 0 {
            bail!("the suite did not answer every message; run the same command again to finish the import");
        }
        ledger.settle(batch.unreadable, batch.last_line)?;
    }
    let counts = ledger.counts;
    let took = progress.finish();
    if let Some((line, reason)) = end.stopped {
        // The file will change before the rerun: that run starts over (and
        // updates, by external id, what this one imported).
        if let Some(path) = &checkpoint_path {
            checkpoint::remove(path)?;
        }
        bail!(
            "stopped at line {line} (--strict): {reason}; the rows before it are imported ({counts}); \
             fix the line and run the same command again"
        );
    }
    if let Some(path) = &checkpoint_path {
        checkpoint::remove(path)?;
    }
    let rate = counts.rows() as f64 / took.as_secs_f64().max(1e-3);
    let what = if args.dry_run { "dry run (nothing was written) of" } else { "imported" };
    println!("{what} {} in {:.1} s ({rate:.0} rows/s): {counts}", args.file.display(), took.as_secs_f64());
    if let Some(path) = &args.report {
        let lines = counts.rows() - counts.created - counts.updated;
        println!("report: {lines} rows to look at in {}", path.display());
    }
    Ok(())
}

/// What the import has settled so far: the counts, the report and the
/// checkpoint, moved on together.
struct Ledger {
    report: Report,
    counts: Counts,
    checkpoint: Option<PathBuf>,
    fingerprint: String,
}

impl Ledger {
    /// Counts and reports the lines of a message, in line order, then moves
    /// the checkpoint past its last line.
    fn settle(&mut self, mut lines: Vec<Line>, last_line: u64) -> anyhow::Result<()> {
        lines.sort_by_key(|line| line.line);
        for line in &lines {
            if line.outcome == "invalid" {
                self.counts.invalid += 1;
            }
            self.report.write(line)?;
        }
        self.report.flush()?;
        if let Some(path) = &self.checkpoint {
            let checkpoint =
                Checkpoint { fingerprint: self.fingerprint.clone(), lines_done: last_line, counts: self.counts };
            checkpoint::save(path, &checkpoint)?;
        }
        Ok(())
    }
}

/// Reads the rows after `lines_done` into messages of `batch` rows.
#[allow(clippy::too_many_arguments)]
fn read_batches(
    rows: &mut Rows,
    overrides: &Overrides,
    row_options: &RowOptions,
    options: ImportOptions,
    lines_done: u64,
    batch: usize,
    strict: bool,
    batches: &mpsc::UnboundedSender<Batch>,
    requests: &mpsc::Sender<ImportContactsRequest>,
) -> anyhow::Result<ReadEnd> {
    let mut mapping = Mapping::new(rows.headers(), overrides);
    let mut options = Some(options);
    let (mut pending, mut unreadable, mut last_line) = (Vec::with_capacity(batch), Vec::new(), lines_done);
    let mut send = |pending: &mut Vec<ImportRow>, unreadable: &mut Vec<Line>, last_line: u64| -> bool {
        let sent = pending.len();
        let message =
            (sent > 0).then(|| ImportContactsRequest { options: options.take(), rows: std::mem::take(pending) });
        if batches.send(Batch { last_line, sent, unreadable: std::mem::take(unreadable) }).is_err() {
            return false;
        }
        message.is_none_or(|message| requests.blocking_send(message).is_ok())
    };
    let mut stopped = None;
    while let Some(item) = rows.next_item()? {
        let line = match &item {
            Item::Record(record) => record.line,
            Item::Malformed { line, .. } => *line,
        };
        if line <= lines_done {
            continue;
        }
        last_line = line;
        match item {
            Item::Malformed { line, reason } => {
                if strict {
                    stopped = Some((line, reason.clone()));
                }
                unreadable.push(Line { line, outcome: "invalid", reason, ..Default::default() });
            }
            Item::Record(record) => {
                if mapping.columns.len() != rows.headers().len() {
                    mapping = Mapping::new(rows.headers(), overrides);
                }
                match to_contact(&mapping, &record, row_options) {
                    Ok(contact) => pending.push(ImportRow { row_id: line.to_string(), contact: Some(contact) }),
                    Err(errors) => {
                        let fields = errors.iter().map(|error| format!("{} (column {:?})", error.field, error.column));
                        let reason = errors.iter().map(|error| format!("{}: {}", error.field, error.reason));
                        let reason = reason.collect::<Vec<_>>().join("; ");
                        if strict {
                            stopped = Some((line, reason.clone()));
                        }
                        unreadable.push(Line {
                            line,
                            outcome: "invalid",
                            fields: fields.collect::<Vec<_>>().join("; "),
                            reason,
                            ..Default::default()
                        });
                    }
                }
            }
        }
        if stopped.is_some() {
            break;
        }
        if pending.len() == batch && !send(&mut pending, &mut unreadable, last_line) {
            return Ok(ReadEnd { stopped });
        }
    }
    if !pending.is_empty() || !unreadable.is_empty() {
        send(&mut pending, &mut unreadable, last_line);
    }
    Ok(ReadEnd { stopped })
}

/// `--map` items and the mapping file, the file's last.
fn overrides(args: &ImportContacts) -> anyhow::Result<Overrides> {
    let mut overrides = Overrides::default();
    if let Some(path) = &args.mapping {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading the mapping {}", path.display()))?;
        overrides.extend(Overrides::parse(&text).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?);
    }
    for item in &args.map {
        overrides.extend(Overrides::parse(item).map_err(|error| anyhow::anyhow!("--map: {error}"))?);
    }
    Ok(overrides)
}

/// Refuses a mapping that names columns the file lacks, or maps no column
/// at all (a wrong delimiter, a file without a header).
fn check_mapping(rows: &Rows, overrides: &Overrides) -> anyhow::Result<()> {
    if rows.headers().is_empty() {
        return Ok(()); // JSON Lines: columns are known row by row.
    }
    let unused = overrides.unused(rows.headers());
    if !unused.is_empty() {
        bail!(
            "the mapping names columns the file does not have: {}; its columns are: {}",
            unused.join(", "),
            rows.headers().join(", ")
        );
    }
    let mapping = Mapping::new(rows.headers(), overrides);
    if mapping.columns.iter().all(|column| column.target.is_none()) {
        bail!(
            "no column of the file maps to a contact field; check the delimiter (--delimiter) and map the columns \
             with --map:\n{}",
            mapping.describe()
        );
    }
    Ok(())
}

/// The source system's name: `--source`, or the file's name.
fn source(args: &ImportContacts) -> anyhow::Result<String> {
    let name = match &args.source {
        Some(source) => source.trim().to_lowercase(),
        None if args.file == std::path::Path::new("-") => {
            bail!("name the system the rows come from with --source when reading standard input")
        }
        None => {
            let stem = args.file.file_name().map(|name| name.to_string_lossy().to_lowercase()).unwrap_or_default();
            let stem = stem.split('.').next().unwrap_or_default().to_string();
            stem.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect()
        }
    };
    if name.is_empty() || name.chars().count() > 64 {
        bail!("--source must be 1 to 64 characters (got {name:?})");
    }
    Ok(name)
}

/// What makes two runs the same import: the file (its path, size and
/// modification time) and every option that changes what a row becomes.
fn fingerprint(args: &ImportContacts, source: &str, policy: DuplicatePolicy) -> anyhow::Result<String> {
    let file = match std::fs::canonicalize(&args.file) {
        Ok(path) => {
            let meta = std::fs::metadata(&path)?;
            let modified = meta.modified().ok().and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok());
            format!("{}|{}|{:?}", path.display(), meta.len(), modified.map(|at| at.as_nanos()))
        }
        Err(_) => args.file.display().to_string(),
    };
    let mapping = match &args.mapping {
        Some(path) => std::fs::read_to_string(path).unwrap_or_default(),
        None => String::new(),
    };
    Ok(format!(
        "{file}|{source}|{policy:?}|{:?}|{mapping:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        args.map, args.format, args.delimiter, args.encoding, args.country, args.date_order
    ))
}
