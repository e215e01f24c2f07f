//! Writing many rows in one go with `COPY … FROM STDIN` (text format).
//!
//! An `INSERT … SELECT FROM unnest($1, $2, …)` sends every column as one
//! array parameter, which the client encodes and the server decodes before
//! a row is stored; for the hundreds of thousands of rows of a broad
//! segment's first evaluation that was half the time of the call. COPY
//! streams the rows as text instead. It has no `ON CONFLICT` and no
//! `RETURNING`: use it where the caller knows the rows are new.

use std::fmt::Display;

use sqlx::PgConnection;

/// Rows below this many are not worth a COPY: the `unnest` statement is
/// prepared once and is as fast for a burst's few hundred.
pub const WORTH_COPYING: usize = 5_000;

/// Rows in COPY's text format: fields separated by tabs, rows by newlines,
/// text escaped, `bytea` in hex.
#[derive(Default)]
pub struct CopyRows {
    text: Vec<u8>,
    /// Whether the current row has a field yet (the next needs a tab before it).
    in_row: bool,
}

impl CopyRows {
    pub fn new() -> CopyRows {
        CopyRows::default()
    }

    /// A field written as it displays (uuids, numbers, timestamps in RFC 3339):
    /// for values whose text holds no tab, newline or backslash.
    pub fn plain(&mut self, value: impl Display) -> &mut Self {
        use std::io::Write;
        self.separate();
        // Writing into a Vec cannot fail.
        let _ = write!(self.text, "{value}");
        self
    }

    /// A text field, escaped.
    pub fn text(&mut self, value: &str) -> &mut Self {
        self.separate();
        for byte in value.bytes() {
            match byte {
                b'\\' => self.text.extend_from_slice(b"\\\\"),
                b'\t' => self.text.extend_from_slice(b"\\t"),
                b'\n' => self.text.extend_from_slice(b"\\n"),
                b'\r' => self.text.extend_from_slice(b"\\r"),
                other => self.text.push(other),
            }
        }
        self
    }

    /// A `bytea` field, in hex (`\x…`, its backslash escaped for COPY).
    pub fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.separate();
        self.text.extend_from_slice(b"\\\\x");
        let start = self.text.len();
        self.text.resize(start + value.len() * 2, 0);
        // The slice is exactly twice the input's length, as hex needs.
        let _ = hex::encode_to_slice(value, &mut self.text[start..]);
        self
    }

    /// Ends the current row ([`copy_in`] ends each item's).
    pub fn end_row(&mut self) {
        self.text.push(b'\n');
        self.in_row = false;
    }

    fn separate(&mut self) {
        if self.in_row {
            self.text.push(b'\t');
        }
        self.in_row = true;
    }
}

/// How much row text is sent at a time: the rows are streamed as they are
/// written, so a COPY of a million rows holds a few MB of text, not its
/// whole (payloads in hex are twice their size).
const PIECE: usize = 4 << 20;

/// Stores `items` with `statement` (`COPY table (columns) FROM STDIN`) on
/// `conn`, `row` writing each item's fields in the statement's column
/// order; returns how many rows the server stored.
pub async fn copy_in<T>(
    conn: &mut PgConnection,
    statement: &str,
    items: &[T],
    mut row: impl FnMut(&mut CopyRows, &T),
) -> Result<u64, sqlx::Error> {
    let mut copy = CopyWriter::start(conn, statement).await?;
    for item in items {
        row(copy.row(), item);
        copy.end_row().await?;
    }
    copy.finish().await
}

/// A COPY fed as its rows become known (rows decided a page at a time, say):
/// the server stores each piece while the caller works out the next, where
/// [`copy_in`] needs them all first. The connection is the writer's until
/// [`CopyWriter::finish`]; dropped unfinished, the COPY fails and with it
/// the transaction.
pub struct CopyWriter<'c> {
    copy: sqlx::postgres::PgCopyIn<&'c mut PgConnection>,
    rows: CopyRows,
}

impl<'c> CopyWriter<'c> {
    /// Starts `statement` (`COPY table (columns) FROM STDIN`) on `conn`.
    pub async fn start(conn: &'c mut PgConnection, statement: &str) -> Result<CopyWriter<'c>, sqlx::Error> {
        Ok(CopyWriter { copy: conn.copy_in_raw(statement).await?, rows: CopyRows::new() })
    }

    /// The row being written: its fields in the statement's column order,
    /// then [`CopyWriter::end_row`].
    pub fn row(&mut self) -> &mut CopyRows {
        &mut self.rows
    }

    /// Ends the row; sends what is written once it reaches a piece.
    pub async fn end_row(&mut self) -> Result<(), sqlx::Error> {
        self.rows.end_row();
        if self.rows.text.len() >= PIECE { self.send().await } else { Ok(()) }
    }

    /// Sends the rows written so far, however few (the end of a page: the
    /// server stores them while the next is worked out).
    pub async fn send(&mut self) -> Result<(), sqlx::Error> {
        if self.rows.text.is_empty() {
            return Ok(());
        }
        // On an error the caller drops the writer, whose COPY then fails.
        self.copy.send(self.rows.text.as_slice()).await?;
        self.rows.text.clear();
        Ok(())
    }

    /// Sends the rest and ends the COPY; returns how many rows the server stored.
    pub async fn finish(mut self) -> Result<u64, sqlx::Error> {
        self.send().await?;
        self.copy.finish().await
    }
}

#[cfg(test)]
mod tests {
    use super::CopyRows;

    #[test]
    fn fields_are_escaped_and_separated_as_copy_reads_them() {
        let mut rows = CopyRows::new();
        rows.plain(42).text("a\tb\\c\nd\re").bytes(&[0x00, 0xff, 0x10]).end_row();
        rows.text("").end_row();
        assert_eq!(String::from_utf8(rows.text).unwrap(), "42\ta\\tb\\\\c\\nd\\re\t\\\\x00ff10\n\n");
    }
}
