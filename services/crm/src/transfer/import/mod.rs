//! `crm import`: a file into the suite through the gateway.
//!
//! Every import runs the same way. A reading thread turns rows into
//! messages of `--batch` rows (lines it cannot read, and cells it cannot
//! convert, go straight to the report); the suite commits each message and
//! answers it in order; after each answer the report is flushed and the
//! checkpoint moved past the message's last line. Rows carry ids in the
//! source system (the file's id column under `--source`, or a digest of the
//! row), so a rerun after any interruption updates or skips what was
//! already imported instead of duplicating it, and the checkpoint lets it
//! skip those rows altogether.
//!
//! - [`contacts`]: `ImportContacts`, with the duplicate policy and dry run.
//! - [`interactions`]: `IngestInteractions`, each row's contact looked up.

pub mod contacts;
pub mod interactions;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use crm_transfer::{CellError, Item, Mapping, Overrides, ReadOptions, Record, Rows, columns::Field};
use tokio::sync::mpsc;

use super::{
    checkpoint::{self, Checkpoint},
    progress::Progress,
    report::{Line, Report, Tally},
};
use crate::cli::ImportFile;

/// The most rows the suite takes in one message.
pub const MAX_BATCH: usize = 5000;

/// One message's worth of rows, as the reading thread sent it.
pub struct Batch {
    /// The last line of the input it covers.
    pub last_line: u64,
    /// The lines of the rows sent in its message, in order (none: nothing
    /// to wait for).
    pub sent: Vec<u64>,
    /// Lines that were never sent, for the report.
    pub unreadable: Vec<Line>,
}

/// How the reading ended.
pub struct ReadEnd {
    /// `--strict` stopped at this line, for this reason.
    pub stopped: Option<(u64, String)>,
}

/// An import ready to run: the file open, the mapping checked, the report
/// and checkpoint picked up where an interrupted run left them.
pub struct Started<F: Field, C: Tally> {
    /// Taken by [`spawn_reading`].
    pub rows: Option<Rows>,
    pub overrides: Overrides<F>,
    pub source: String,
    pub gateway: String,
    pub key: String,
    pub lines_done: u64,
    pub ledger: Ledger<C>,
    pub progress: Progress,
}

/// Opens the file and everything around it; `None` when `--show-mapping`
/// printed the mapping and there is nothing more to do. `options` names
/// the command's own options that change what a row becomes.
pub fn start<F: Field, C: Tally>(
    input: &ImportFile,
    dry_run: bool,
    options: &str,
) -> anyhow::Result<Option<Started<F, C>>> {
    let overrides = overrides(input)?;
    let read = ReadOptions { format: input.format, delimiter: input.delimiter, encoding: input.encoding.clone() };
    let mut rows = Rows::open(&input.file, &read)?;
    if input.show_mapping {
        if rows.headers().is_empty() {
            // JSON Lines: the columns are the keys of the first rows.
            for _ in 0..1000 {
                if rows.next_item()?.is_none() {
                    break;
                }
            }
        }
        print!("{}", Mapping::new(rows.headers(), &overrides).describe());
        return Ok(None);
    }
    check_mapping(&rows, &overrides)?;
    let gateway = input.gateway.clone().context("say which gateway to import through: --gateway or CRM_GATEWAY")?;
    let key = input.key.clone().context("an API key that may write is needed: --key or CRM_API_KEY")?;
    if !(1..=MAX_BATCH).contains(&input.batch) {
        bail!("--batch must be 1 to {MAX_BATCH} rows");
    }
    let source = source(&input.file, input.source.as_deref())?;
    let checkpoint = if dry_run { None } else { checkpoint::path_for(&input.file, input.report.as_deref()) };
    let fingerprint = fingerprint(input, &source, options)?;
    let resumed = match &checkpoint {
        Some(path) if input.restart => {
            checkpoint::remove(path)?;
            None
        }
        Some(path) => checkpoint::load::<C>(path, &fingerprint)?,
        None => None,
    };
    let report = Report::open(input.report.as_deref(), resumed.is_some())?;
    let (lines_done, counts) = resumed.as_ref().map(|done| (done.lines_done, done.counts)).unwrap_or_default();
    if resumed.is_some() {
        eprintln!("resuming after line {lines_done}, where an earlier run of this import stopped");
    }
    let progress = Progress::start("imported", rows.total_bytes.map(|total| (rows.bytes_read.clone(), total)));
    let ledger = Ledger { report, counts, checkpoint, fingerprint };
    Ok(Some(Started { rows: Some(rows), overrides, source, gateway, key, lines_done, ledger, progress }))
}

/// What the import has settled so far: the counts, the report and the
/// checkpoint, moved on together.
pub struct Ledger<C> {
    report: Report,
    pub counts: C,
    checkpoint: Option<PathBuf>,
    fingerprint: String,
}

impl<C: Tally> Ledger<C> {
    /// Counts and reports the lines of a message, in line order, then moves
    /// the checkpoint past its last line.
    pub fn settle(&mut self, mut lines: Vec<Line>, last_line: u64) -> anyhow::Result<()> {
        lines.sort_by_key(|line| line.line);
        for line in &lines {
            self.counts.count_unsent(line.outcome);
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

    /// Settles the batches whose lines sent nothing, up to the next one that
    /// did (`None` when the reading is over).
    pub async fn next_sent(&mut self, batches: &mut mpsc::UnboundedReceiver<Batch>) -> anyhow::Result<Option<Batch>> {
        while let Some(batch) = batches.recv().await {
            if !batch.sent.is_empty() {
                return Ok(Some(batch));
            }
            self.settle(batch.unreadable, batch.last_line)?;
        }
        Ok(None)
    }

    /// Ends the import: the checkpoint removed (also after `--strict`
    /// stopped it: the file will change before the rerun, which then
    /// starts over and finds by their ids the rows this one imported), the
    /// summary printed.
    pub fn finish(self, end: ReadEnd, progress: Progress, what: &str, file: &Path) -> anyhow::Result<()> {
        let took = progress.finish();
        if let Some(path) = &self.checkpoint {
            checkpoint::remove(path)?;
        }
        let counts = self.counts;
        if let Some((line, reason)) = end.stopped {
            bail!(
                "stopped at line {line} (--strict): {reason}; the rows before it are imported ({counts}); \
                 fix the line and run the same command again"
            );
        }
        let rate = counts.rows() as f64 / took.as_secs_f64().max(1e-3);
        println!("{what} {} in {:.1} s ({rate:.0} rows/s): {counts}", file.display(), took.as_secs_f64());
        if let Some(path) = self.report.path() {
            println!("report: {} rows to look at in {}", counts.to_look_at(), path.display());
        }
        Ok(())
    }
}

/// The suite's answers to an import stream, once the call started.
pub async fn opened<T>(
    call: impl std::future::Future<Output = Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>>,
) -> anyhow::Result<tonic::Streaming<T>> {
    let answers = call.await.map_err(|status| anyhow::anyhow!("{}", status.message()));
    Ok(answers.context("starting the import through the gateway")?.into_inner())
}

/// The suite's next answer; an error says how to finish the import.
pub async fn next_answer<T>(answers: &mut tonic::Streaming<T>) -> anyhow::Result<Option<T>> {
    let answer = answers.message().await;
    let answer = answer.map_err(|status| anyhow::anyhow!("{} ({:?})", status.message(), status.code()));
    answer.context("the import stopped; run the same command again to finish it")
}

/// The report line of a row whose cells could not be converted.
pub fn unconvertible(line: u64, errors: &[CellError]) -> Line {
    let fields = errors.iter().map(|error| format!("{} (column {:?})", error.field, error.column));
    let reason = errors.iter().map(|error| format!("{}: {}", error.field, error.reason));
    Line {
        line,
        outcome: "invalid",
        fields: fields.collect::<Vec<_>>().join("; "),
        reason: reason.collect::<Vec<_>>().join("; "),
        ..Default::default()
    }
}

/// What a batch of converted rows becomes before it is sent: the rows to
/// send (in order, with their lines) and the lines that go to the report
/// instead. Runs on the reading thread.
pub type Prepare<R, S> = Box<dyn FnMut(Vec<(u64, R)>) -> anyhow::Result<Prepared<S>> + Send>;

/// A prepared batch: the rows to send, with their lines, and the report
/// lines of those that will not be sent.
pub type Prepared<S> = (Vec<(u64, S)>, Vec<Line>);

/// The reading thread of an import: the batches it read, in order, and
/// their rows ready to send.
pub struct Reading<S> {
    pub batches: mpsc::UnboundedReceiver<Batch>,
    ready: Option<mpsc::Receiver<Vec<(u64, S)>>>,
    thread: tokio::task::JoinHandle<anyhow::Result<ReadEnd>>,
}

/// Starts reading the rows of `started` after its checkpoint on a thread
/// of their own, in batches of `--batch` rows: each row converted, each
/// batch prepared, then handed over.
pub fn spawn_reading<F, C, R, S>(
    started: &mut Started<F, C>,
    input: &ImportFile,
    convert: impl Fn(&Mapping<F>, &Record) -> Result<R, Vec<CellError>> + Send + 'static,
    prepare: Prepare<R, S>,
) -> Reading<S>
where
    F: Field + Send + 'static,
    C: Tally,
    R: Send + 'static,
    S: Send + 'static,
{
    let (batches_tx, batches) = mpsc::unbounded_channel();
    let (ready_tx, ready) = mpsc::channel(2);
    let mut rows = started.rows.take();
    let overrides = std::mem::take(&mut started.overrides);
    let (lines_done, batch, strict) = (started.lines_done, input.batch, input.strict);
    let thread = tokio::task::spawn_blocking(move || {
        let Some(rows) = rows.as_mut() else { bail!("the file was read already") };
        read_batches(rows, &overrides, lines_done, batch, strict, convert, prepare, &batches_tx, &ready_tx)
    });
    Reading { batches, ready: Some(ready), thread }
}

impl<S: Send + 'static> Reading<S> {
    /// The rows to send, batch by batch, once the first is ready; `None`
    /// when the file had none to send (then no call is made at all).
    pub async fn to_send(&mut self) -> Option<impl futures_util::Stream<Item = Vec<(u64, S)>> + Send + 'static> {
        let mut ready = self.ready.take()?;
        let first = ready.recv().await?;
        Some(futures_util::StreamExt::chain(
            futures_util::stream::iter([first]),
            tokio_stream::wrappers::ReceiverStream::new(ready),
        ))
    }

    /// Ends the import once the suite answered its last message: the
    /// reading thread's outcome, then [`Ledger::finish`].
    pub async fn finish<C: Tally>(
        mut self,
        mut ledger: Ledger<C>,
        progress: Progress,
        what: &str,
        file: &Path,
    ) -> anyhow::Result<()> {
        let end = self.thread.await.context("the reading thread failed")??;
        if ledger.next_sent(&mut self.batches).await?.is_some() {
            bail!("the suite did not answer every message; run the same command again to finish the import");
        }
        ledger.finish(end, progress, what, file)
    }
}

/// Reads the rows after `lines_done` into batches of `batch` rows: each
/// batch's description goes to `batches`, its rows, prepared, to `sink`.
#[allow(clippy::too_many_arguments)]
fn read_batches<F: Field, R, S>(
    rows: &mut Rows,
    overrides: &Overrides<F>,
    lines_done: u64,
    batch: usize,
    strict: bool,
    convert: impl Fn(&Mapping<F>, &Record) -> Result<R, Vec<CellError>>,
    mut prepare: Prepare<R, S>,
    batches: &mpsc::UnboundedSender<Batch>,
    sink: &mpsc::Sender<Vec<(u64, S)>>,
) -> anyhow::Result<ReadEnd> {
    let mut mapping = Mapping::new(rows.headers(), overrides);
    let (mut pending, mut unreadable, mut last_line) = (Vec::with_capacity(batch), Vec::new(), lines_done);
    let mut send = |pending: &mut Vec<(u64, R)>, unreadable: &mut Vec<Line>, last_line: u64| -> anyhow::Result<bool> {
        let (ready, refused) = prepare(std::mem::take(pending))?;
        let mut unsent = std::mem::take(unreadable);
        unsent.extend(refused);
        let sent = ready.iter().map(|(line, _)| *line).collect();
        if batches.send(Batch { last_line, sent, unreadable: unsent }).is_err() {
            return Ok(false);
        }
        Ok(ready.is_empty() || sink.blocking_send(ready).is_ok())
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
                match convert(&mapping, &record) {
                    Ok(row) => pending.push((line, row)),
                    Err(errors) => {
                        let refused = unconvertible(line, &errors);
                        if strict {
                            stopped = Some((line, refused.reason.clone()));
                        }
                        unreadable.push(refused);
                    }
                }
            }
        }
        if stopped.is_some() {
            break;
        }
        if pending.len() == batch && !send(&mut pending, &mut unreadable, last_line)? {
            return Ok(ReadEnd { stopped });
        }
    }
    if !pending.is_empty() || !unreadable.is_empty() {
        send(&mut pending, &mut unreadable, last_line)?;
    }
    Ok(ReadEnd { stopped })
}

/// `--map` items and the mapping file, the file's first.
fn overrides<F: Field>(input: &ImportFile) -> anyhow::Result<Overrides<F>> {
    let mut overrides = Overrides::default();
    if let Some(path) = &input.mapping {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading the mapping {}", path.display()))?;
        overrides.extend(Overrides::parse(&text).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?);
    }
    for item in &input.map {
        overrides.extend(Overrides::parse(item).map_err(|error| anyhow::anyhow!("--map: {error}"))?);
    }
    Ok(overrides)
}

/// Refuses a mapping that names columns the file lacks, or maps no column
/// at all (a wrong delimiter, a file without a header).
fn check_mapping<F: Field>(rows: &Rows, overrides: &Overrides<F>) -> anyhow::Result<()> {
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
            "no column of the file maps to a field; check the delimiter (--delimiter) and map the columns \
             with --map:\n{}",
            mapping.describe()
        );
    }
    Ok(())
}

/// The source system's name: `--source`, or the file's name.
pub fn source(file: &Path, source: Option<&str>) -> anyhow::Result<String> {
    let name = match source {
        Some(source) => source.trim().to_lowercase(),
        None if file == Path::new("-") => {
            bail!("name the system the rows come from with --source when reading standard input")
        }
        None => {
            let stem = file.file_name().map(|name| name.to_string_lossy().to_lowercase()).unwrap_or_default();
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
fn fingerprint(input: &ImportFile, source: &str, options: &str) -> anyhow::Result<String> {
    let file = match std::fs::canonicalize(&input.file) {
        Ok(path) => {
            let meta = std::fs::metadata(&path)?;
            let modified = meta.modified().ok().and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok());
            format!("{}|{}|{:?}", path.display(), meta.len(), modified.map(|at| at.as_nanos()))
        }
        Err(_) => input.file.display().to_string(),
    };
    let mapping = match &input.mapping {
        Some(path) => std::fs::read_to_string(path).unwrap_or_default(),
        None => String::new(),
    };
    Ok(format!(
        "{file}|{source}|{options}|{:?}|{mapping:?}|{:?}|{:?}|{:?}|{:?}",
        input.map, input.format, input.delimiter, input.encoding, input.date_order
    ))
}
