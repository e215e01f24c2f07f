//! Reading the rows of a file as a migration team hands it over: CSV
//! (delimiter found from the header line, or given) or JSON Lines, from a
//! file, a gzip file or standard input, in UTF-8 with or without a byte
//! order mark, UTF-16 with one, or a legacy encoding named with
//! `--encoding` (Windows-1252, Latin-1…), streamed, never read whole.
//!
//! A line that cannot be read (bad quoting, the wrong number of fields,
//! bytes that are not UTF-8) is an [`Item::Malformed`] with its line
//! number, and the reading goes on.

use std::{
    fs::File,
    io::{self, BufRead, BufReader, Read},
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use anyhow::{Context, bail};
use encoding_rs::Encoding;

/// The two formats rows are read from and written to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Comma- (or semicolon-, tab-, pipe-) separated values with a header row.
    Csv,
    /// One JSON object per line; its keys are the columns.
    Jsonl,
}

impl Format {
    /// The format a file's name says (`.jsonl`, `.ndjson`, `.json`, under
    /// `.gz` too); CSV otherwise.
    pub fn of(path: &Path) -> Format {
        let name = path.to_string_lossy().to_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        if [".jsonl", ".ndjson", ".json"].iter().any(|ext| name.ends_with(ext)) { Format::Jsonl } else { Format::Csv }
    }
}

/// How to read a file.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    pub format: Option<Format>,
    pub delimiter: Option<u8>,
    /// A WHATWG label such as `windows-1252` or `latin1`; UTF-8 when unset.
    pub encoding: Option<String>,
}

/// One row of the file: its line and the text of each column it has.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// The line the row starts on (the header is line 1).
    pub line: u64,
    /// (column index in [`Rows::headers`], text), empty cells left out.
    pub values: Vec<(usize, String)>,
}

/// What reading the next row gave.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Record(Record),
    Malformed { line: u64, reason: String },
}

/// The rows of a file, in order.
pub struct Rows {
    headers: Vec<String>,
    source: Source,
    /// Bytes of the input read so far (before decompression), for progress.
    pub bytes_read: Arc<AtomicU64>,
    /// The input's size, when it is a file.
    pub total_bytes: Option<u64>,
}

enum Source {
    Csv(csv::Reader<Box<dyn Read + Send>>, csv::ByteRecord, Arc<Mutex<Lines>>),
    Jsonl { lines: Box<dyn BufRead + Send>, line: u64, buffer: Vec<u8> },
}

/// Where the lines of the text a CSV reader reads begin: the csv crate
/// counts lines wrong after a blank line, and a report's line numbers
/// must be the file's. Only the newlines not yet passed are kept (the
/// reader's read-ahead), so memory stays small whatever the file.
#[derive(Default)]
struct Lines {
    /// Offsets of the newlines read but not yet passed by a record.
    ahead: std::collections::VecDeque<u64>,
    /// Newlines passed.
    passed: u64,
    /// Bytes read.
    offset: u64,
    /// The offset of the last newline passed.
    last_passed: Option<u64>,
}

impl Lines {
    /// The line (from 1) of the text's byte `at`; `at` never goes back.
    fn line_at(&mut self, at: u64) -> u64 {
        while let Some(newline) = self.ahead.front().copied().filter(|newline| *newline < at) {
            self.ahead.pop_front();
            self.passed += 1;
            self.last_passed = Some(newline);
        }
        self.passed + 1
    }

    /// The line a record that ends before byte `end` starts on, holding
    /// `inside` newlines in its fields, and the line after it. (The csv
    /// crate's own start position is before the blank lines it skipped.)
    fn record(&mut self, end: u64, inside: u64) -> (u64, u64) {
        let next = self.line_at(end);
        let terminated = end > 0 && self.last_passed == Some(end - 1);
        let last = if terminated { next - 1 } else { next };
        (last.saturating_sub(inside).max(1), next)
    }
}

/// The decoded text on its way to the CSV reader, its lines noted.
struct LineNoting<R> {
    inner: R,
    lines: Arc<Mutex<Lines>>,
}

impl<R: Read> Read for LineNoting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        let mut lines = self.lines.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let start = lines.offset;
        for (index, byte) in buf[..read].iter().enumerate() {
            if *byte == b'\n' {
                lines.ahead.push_back(start + index as u64);
            }
        }
        lines.offset += read as u64;
        Ok(read)
    }
}

/// A reader that counts the bytes it passes on.
struct Counted<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.count.fetch_add(read as u64, Ordering::Relaxed);
        Ok(read)
    }
}

/// The bytes of `path` (`-`: standard input), counted, decompressed when
/// the name ends in `.gz`, decoded to UTF-8.
fn open_decoded(path: &Path, encoding: Option<&str>, count: Arc<AtomicU64>) -> anyhow::Result<Box<dyn Read + Send>> {
    let raw: Box<dyn Read + Send> = if path == Path::new("-") {
        Box::new(io::stdin())
    } else {
        Box::new(File::open(path).with_context(|| format!("opening {}", path.display()))?)
    };
    let counted = Counted { inner: raw, count };
    let plain: Box<dyn Read + Send> = if path.to_string_lossy().to_lowercase().ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(counted)))
    } else {
        Box::new(counted)
    };
    let encoding = match encoding {
        Some(label) => Some(Encoding::for_label(label.trim().as_bytes()).with_context(|| {
            format!("{label:?} is not an encoding name; try utf-8, windows-1252, latin1, iso-8859-15 or utf-16le")
        })?),
        None => None,
    };
    // Without --encoding: a UTF-8 or UTF-16 byte order mark is honoured and
    // removed, other bytes pass through as UTF-8 (and are checked per row).
    Ok(Box::new(encoding_rs_io::DecodeReaderBytesBuilder::new().encoding(encoding).build(plain)))
}

impl Rows {
    /// Opens `path` and reads its header (CSV) or nothing yet (JSON Lines).
    pub fn open(path: &Path, options: &ReadOptions) -> anyhow::Result<Rows> {
        let bytes_read = Arc::new(AtomicU64::new(0));
        let total_bytes =
            (path != Path::new("-")).then(|| std::fs::metadata(path).map(|meta| meta.len()).ok()).flatten();
        let decoded = open_decoded(path, options.encoding.as_deref(), bytes_read.clone())?;
        let mut buffered = BufReader::with_capacity(1 << 16, decoded);
        let format = options.format.unwrap_or_else(|| Format::of(path));
        let (headers, source) = match format {
            Format::Jsonl => (Vec::new(), Source::Jsonl { lines: Box::new(buffered), line: 0, buffer: Vec::new() }),
            Format::Csv => {
                // The header line is read first to find the delimiter, then given back.
                let mut header = Vec::new();
                buffered.read_until(b'\n', &mut header).context("reading the header line")?;
                let delimiter = options.delimiter.unwrap_or_else(|| sniff_delimiter(&header));
                let lines = Arc::new(Mutex::new(Lines::default()));
                let noting = LineNoting { inner: io::Cursor::new(header).chain(buffered), lines: lines.clone() };
                let mut reader = csv::ReaderBuilder::new()
                    .delimiter(delimiter)
                    .flexible(true)
                    .has_headers(true)
                    .from_reader(Box::new(noting) as Box<dyn Read + Send>);
                let headers = reader.byte_headers().context("reading the header line")?.clone();
                let headers: Vec<String> = headers
                    .iter()
                    .enumerate()
                    .map(|(index, header)| {
                        std::str::from_utf8(header).map(|text| text.trim().trim_start_matches('\u{feff}').to_string())
                            .with_context(|| format!("column {} of the header is not UTF-8: name the file's encoding with --encoding (windows-1252, latin1…)", index + 1))
                    })
                    .collect::<anyhow::Result<_>>()?;
                if headers.iter().all(String::is_empty) {
                    bail!("the file has no header line: its first line must name the columns");
                }
                (headers, Source::Csv(reader, csv::ByteRecord::new(), lines))
            }
        };
        Ok(Rows { headers, source, bytes_read, total_bytes })
    }

    /// The columns seen so far: a CSV file's header; for JSON Lines, every
    /// key met so far, in the order first met (it grows as rows are read).
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// The next row; `None` at the end of the input. An error that stops
    /// the reading itself (the disk, a broken gzip stream) is `Err`.
    pub fn next_item(&mut self) -> anyhow::Result<Option<Item>> {
        match &mut self.source {
            Source::Csv(reader, record, lines) => {
                let read = reader.read_byte_record(record);
                let mut lines = lines.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let inside: u64 =
                    record.iter().map(|field| field.iter().filter(|byte| **byte == b'\n').count() as u64).sum();
                // A quote never closed runs to the end of the file as one
                // field, which then ends with the file's last newline.
                let unclosed = record.iter().next_back().is_some_and(|field| field.ends_with(b"\n"));
                let (line, next_line) = lines.record(reader.position().byte(), inside - u64::from(unclosed));
                match read {
                    Ok(false) => Ok(None),
                    Ok(true) => Ok(Some(csv_item(&self.headers, record, line, next_line, unclosed))),
                    Err(error) => match error.kind() {
                        csv::ErrorKind::Io(_) => Err(anyhow::Error::new(error).context("reading the input")),
                        _ => Ok(Some(Item::Malformed { line, reason: error.to_string() })),
                    },
                }
            }
            Source::Jsonl { lines, line, buffer } => loop {
                buffer.clear();
                if lines.read_until(b'\n', buffer).context("reading the input")? == 0 {
                    return Ok(None);
                }
                *line += 1;
                let text = buffer.strip_suffix(b"\n").unwrap_or(buffer);
                let text = text.strip_suffix(b"\r").unwrap_or(text);
                if text.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(Some(json_item(&mut self.headers, text, *line)));
            },
        }
    }
}

/// The delimiter of a CSV file: the one of `,` `;` tab `|` that the header
/// line (outside quotes) holds most of; a comma when none.
fn sniff_delimiter(start: &[u8]) -> u8 {
    let header = start.split(|byte| *byte == b'\n').next().unwrap_or_default();
    let mut counts = [(b',', 0usize), (b';', 0), (b'\t', 0), (b'|', 0)];
    let mut quoted = false;
    for byte in header {
        if *byte == b'"' {
            quoted = !quoted;
        } else if !quoted && let Some(entry) = counts.iter_mut().find(|(delimiter, _)| delimiter == byte) {
            entry.1 += 1;
        }
    }
    let (delimiter, count) = counts.iter().fold((b',', 0), |best, entry| if entry.1 > best.1 { *entry } else { best });
    if count == 0 { b',' } else { delimiter }
}

fn csv_item(headers: &[String], record: &csv::ByteRecord, line: u64, next_line: u64, unclosed: bool) -> Item {
    if unclosed {
        return Item::Malformed {
            line,
            reason: format!(
                "a quote opened on line {line} is never closed: lines {line}–{} were read as one field",
                next_line - 1
            ),
        };
    }
    if record.len() != headers.len() {
        let spans = if next_line > line + 1 && !record.is_empty() {
            format!(" (it runs over lines {line}–{}: look for a quote that is not closed)", next_line - 1)
        } else {
            String::new()
        };
        return Item::Malformed {
            line,
            reason: format!("{} fields where the header has {}{spans}", record.len(), headers.len()),
        };
    }
    let mut values = Vec::with_capacity(record.len());
    for (index, field) in record.iter().enumerate() {
        let Ok(text) = std::str::from_utf8(field) else {
            return Item::Malformed {
                line,
                reason: format!(
                    "column {:?} is not UTF-8: name the file's encoding with --encoding (windows-1252, latin1…)",
                    headers[index]
                ),
            };
        };
        let text = text.trim();
        if !text.is_empty() {
            values.push((index, text.to_string()));
        }
    }
    Item::Record(Record { line, values })
}

fn json_item(headers: &mut Vec<String>, text: &[u8], line: u64) -> Item {
    let object = match serde_json::from_slice::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(object)) => object,
        Ok(_) => return Item::Malformed { line, reason: "not a JSON object".into() },
        Err(error) if error.is_data() || error.is_syntax() || error.is_eof() => {
            let reason = if std::str::from_utf8(text).is_err() {
                "not UTF-8: name the file's encoding with --encoding (windows-1252, latin1…)".to_string()
            } else {
                format!("not valid JSON: {error}")
            };
            return Item::Malformed { line, reason };
        }
        Err(error) => return Item::Malformed { line, reason: error.to_string() },
    };
    let mut values = Vec::with_capacity(object.len());
    for (key, value) in object {
        let text = match value {
            serde_json::Value::Null => continue,
            serde_json::Value::String(text) => text.trim().to_string(),
            serde_json::Value::Array(items) if items.is_empty() => continue,
            other => other.to_string(),
        };
        if text.is_empty() {
            continue;
        }
        let index = match headers.iter().position(|header| *header == key) {
            Some(index) => index,
            None => {
                headers.push(key);
                headers.len() - 1
            }
        };
        values.push((index, text));
    }
    Item::Record(Record { line, values })
}

/// A row of line 2 with `values` in column order, empty cells left out
/// (for the converters' tests).
#[cfg(test)]
pub(crate) fn row(values: &[&str]) -> Record {
    let values = values.iter().enumerate().filter(|(_, text)| !text.is_empty());
    Record { line: 2, values: values.map(|(index, text)| (index, text.to_string())).collect() }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn read_all(bytes: &[u8], name: &str, options: ReadOptions) -> (Vec<String>, Vec<Item>) {
        let dir = std::env::temp_dir().join(format!("crm-input-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::File::create(&path).unwrap().write_all(bytes).unwrap();
        let mut rows = Rows::open(&path, &options).unwrap();
        let mut items = Vec::new();
        while let Some(item) = rows.next_item().unwrap() {
            items.push(item);
        }
        (rows.headers().to_vec(), items)
    }

    fn record(line: u64, values: &[(usize, &str)]) -> Item {
        Item::Record(Record { line, values: values.iter().map(|(index, text)| (*index, text.to_string())).collect() })
    }

    #[test]
    fn a_bom_semicolons_quoted_newlines_and_broken_rows() {
        let file = "\u{feff}Name;E-mail;City\n\"Smith; Ann\";ann@example.com;\"Bath\nSomerset\"\nshort;row\n\n\"Lee\";lee@example.com;York\n";
        let (headers, items) = read_all(file.as_bytes(), "bom.csv", ReadOptions::default());
        assert_eq!(headers, ["Name", "E-mail", "City"]);
        assert_eq!(
            items,
            [
                record(2, &[(0, "Smith; Ann"), (1, "ann@example.com"), (2, "Bath\nSomerset")]),
                Item::Malformed { line: 4, reason: "2 fields where the header has 3".into() },
                record(6, &[(0, "Lee"), (1, "lee@example.com"), (2, "York")]),
            ]
        );
    }

    #[test]
    fn latin1_is_decoded_when_named_and_reported_when_not() {
        let file = b"given_name,family_name\nJos\xe9,M\xfcller\nAnn,Lee\n";
        let (_, items) =
            read_all(file, "latin1.csv", ReadOptions { encoding: Some("latin1".into()), ..Default::default() });
        assert_eq!(items[0], record(2, &[(0, "José"), (1, "Müller")]));
        let (_, items) = read_all(file, "latin1-unsaid.csv", ReadOptions::default());
        assert!(matches!(&items[0], Item::Malformed { line: 2, reason } if reason.contains("--encoding")), "{items:?}");
        assert_eq!(items[1], record(3, &[(0, "Ann"), (1, "Lee")]));
    }

    #[test]
    fn an_unclosed_quote_is_reported_with_the_lines_it_swallowed() {
        let file = "a,b\n1,2\n3,\"4\n5,6\n7,8\n";
        let (_, items) = read_all(file.as_bytes(), "quote.csv", ReadOptions::default());
        assert_eq!(items[0], record(2, &[(0, "1"), (1, "2")]));
        assert!(matches!(&items[1], Item::Malformed { line: 3, reason } if reason.contains("lines 3–5")), "{items:?}");
    }

    #[test]
    fn json_lines_grow_the_columns_and_report_bad_lines() {
        let file = "{\"given_name\":\"Ann\",\"emails\":[\"a@x.example\"]}\nnot json\n\n{\"owner\":\"kim\",\"given_name\":\"Bo\",\"x\":null}\n";
        let (headers, items) = read_all(file.as_bytes(), "rows.jsonl", ReadOptions::default());
        // Keys come in the order serde_json's map keeps them: sorted.
        assert_eq!(headers, ["emails", "given_name", "owner"]);
        assert_eq!(items[0], record(1, &[(0, "[\"a@x.example\"]"), (1, "Ann")]));
        assert!(matches!(&items[1], Item::Malformed { line: 2, reason } if reason.starts_with("not valid JSON")));
        assert_eq!(items[2], record(4, &[(1, "Bo"), (2, "kim")]));
    }

    #[test]
    fn gzip_is_read_by_its_name() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(b"a\tb\n1\t2\n").unwrap();
        let (headers, items) = read_all(&encoder.finish().unwrap(), "tabs.tsv.gz", ReadOptions::default());
        assert_eq!(headers, ["a", "b"]);
        assert_eq!(items, [record(2, &[(0, "1"), (1, "2")])]);
    }
}
