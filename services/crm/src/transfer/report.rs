//! What happened to the rows of an import: the counts of the summary and
//! the error report, one CSV line per row that was not simply created or
//! updated, so a team can fix the source and import those rows again.

use std::{fmt, fs::OpenOptions, path::Path};

use anyhow::Context;
use crm_proto::{
    contacts::v1::{ImportOutcome, ImportRowResult},
    interactions::v1::{IngestItemResult, IngestOutcome},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// Rows by outcome, as the summary prints them and the checkpoint keeps them.
pub trait Tally: Copy + Default + fmt::Display + Serialize + DeserializeOwned + Send + 'static {
    /// Every row counted.
    fn rows(&self) -> u64;
    /// The rows in the report.
    fn to_look_at(&self) -> u64;
    /// Counts a report line of a row that was never sent, by its outcome.
    fn count_unsent(&mut self, outcome: &str);
}

/// Contacts by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub created: u64,
    pub updated: u64,
    pub merged: u64,
    pub skipped: u64,
    pub flagged: u64,
    /// Refused by the suite (invalid fields, a duplicate under `--duplicates fail`).
    pub failed: u64,
    /// Never sent: a line or cell that could not be read.
    pub invalid: u64,
}

impl Counts {
    pub fn rejected(&self) -> u64 {
        self.failed + self.invalid
    }
}

impl Tally for Counts {
    fn rows(&self) -> u64 {
        self.created + self.updated + self.merged + self.skipped + self.flagged + self.failed + self.invalid
    }

    fn to_look_at(&self) -> u64 {
        self.rows() - self.created - self.updated
    }

    fn count_unsent(&mut self, outcome: &str) {
        if outcome == "invalid" {
            self.invalid += 1;
        }
    }
}

/// Interactions by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestCounts {
    pub stored: u64,
    /// Stored before (the same id in the same source).
    pub duplicates: u64,
    /// Refused by the suite.
    pub failed: u64,
    /// Never sent: nobody holds the contact the row names.
    pub no_contact: u64,
    /// Never sent: a line or cell that could not be read.
    pub invalid: u64,
}

impl Tally for IngestCounts {
    fn rows(&self) -> u64 {
        self.stored + self.duplicates + self.failed + self.no_contact + self.invalid
    }

    fn to_look_at(&self) -> u64 {
        self.failed + self.no_contact + self.invalid
    }

    fn count_unsent(&mut self, outcome: &str) {
        match outcome {
            "invalid" => self.invalid += 1,
            "no contact" => self.no_contact += 1,
            _ => {}
        }
    }
}

impl fmt::Display for IngestCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} stored, {} already there, {} rejected ({} unreadable, {} without a known contact, {} refused)",
            self.stored,
            self.duplicates,
            self.to_look_at(),
            self.invalid,
            self.no_contact,
            self.failed
        )
    }
}

/// Counts an interaction's result and gives its report line, if it needs one.
pub fn record_ingest(counts: &mut IngestCounts, line: u64, result: &IngestItemResult) -> Option<Line> {
    match result.outcome() {
        IngestOutcome::Stored => counts.stored += 1,
        IngestOutcome::Duplicate => counts.duplicates += 1,
        _ => {
            counts.failed += 1;
            return Some(Line {
                line,
                outcome: "failed",
                fields: result.invalid_fields.join("; "),
                reason: result.error.clone(),
                ..Default::default()
            });
        }
    }
    None
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} created, {} updated, {} merged, {} skipped, {} flagged for review, {} rejected ({} unreadable, {} refused)",
            self.created,
            self.updated,
            self.merged,
            self.skipped,
            self.flagged,
            self.rejected(),
            self.invalid,
            self.failed
        )
    }
}

/// One line of the report.
#[derive(Debug, Default, Serialize)]
pub struct Line {
    pub line: u64,
    pub outcome: &'static str,
    pub contact_id: String,
    pub matched_contact_id: String,
    pub match_score: String,
    /// The fields (and columns) that were wrong.
    pub fields: String,
    pub reason: String,
}

/// The report's header, as written.
const HEADER: [&str; 7] = ["line", "outcome", "contact_id", "matched_contact_id", "match_score", "fields", "reason"];

/// Where report lines go, if anywhere.
pub struct Report {
    writer: Option<csv::Writer<std::fs::File>>,
    path: Option<std::path::PathBuf>,
}

impl Report {
    /// A report at `path`: a new file, or, when `resume`, the one an
    /// interrupted run of the same import began.
    pub fn open(path: Option<&Path>, resume: bool) -> anyhow::Result<Report> {
        let Some(path) = path else { return Ok(Report { writer: None, path: None }) };
        let append = resume && path.exists();
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(path)
            .with_context(|| format!("opening the report {}", path.display()))?;
        let mut writer = csv::WriterBuilder::new().has_headers(false).from_writer(file);
        if !append {
            writer.write_record(HEADER)?;
        }
        Ok(Report { writer: Some(writer), path: Some(path.to_path_buf()) })
    }

    /// Where the report is written, if anywhere.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn write(&mut self, line: &Line) -> anyhow::Result<()> {
        if let Some(writer) = &mut self.writer {
            writer.serialize(line).context("writing the report")?;
        }
        Ok(())
    }

    /// Makes every line so far durable (before the checkpoint moves past them).
    pub fn flush(&mut self) -> anyhow::Result<()> {
        if let Some(writer) = &mut self.writer {
            writer.flush().context("writing the report")?;
            writer.get_ref().sync_data().context("writing the report")?;
        }
        Ok(())
    }
}

/// Counts a result of the suite and gives its report line, if it needs one.
pub fn record(counts: &mut Counts, line: u64, result: &ImportRowResult) -> Option<Line> {
    let outcome = match result.outcome() {
        ImportOutcome::Created => {
            counts.created += 1;
            return None;
        }
        ImportOutcome::Updated => {
            counts.updated += 1;
            return None;
        }
        ImportOutcome::Merged => {
            counts.merged += 1;
            "merged"
        }
        ImportOutcome::Skipped => {
            counts.skipped += 1;
            "skipped"
        }
        ImportOutcome::Flagged => {
            counts.flagged += 1;
            "flagged"
        }
        ImportOutcome::Failed | ImportOutcome::Unspecified => {
            counts.failed += 1;
            "failed"
        }
    };
    Some(Line {
        line,
        outcome,
        contact_id: result.contact_id.clone(),
        matched_contact_id: result.matched_contact_id.clone(),
        match_score: if result.matched_contact_id.is_empty() {
            String::new()
        } else {
            format!("{:.3}", result.match_score)
        },
        fields: result.invalid_fields.join("; "),
        reason: result.error.clone(),
    })
}
