//! What list commands print: a table with a header row, JSON or CSV; and writing to a
//! stdout whose reader went away (`fleetca cert list | head -1`) ends the command quietly
//! instead of panicking.

use std::io::{self, Write};

use serde_json::Value;

/// Output format of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns under a header row.
    Table,
    /// Comma-separated values with a header row (RFC 4180 quoting).
    Csv,
    /// One JSON array of objects.
    Json,
}

/// Writes one line to stdout; `?` hands a closed pipe to `main`, which exits quietly.
macro_rules! outln {
    () => {
        crate::output::write_stdout(format_args!("\n"))?
    };
    ($($arg:tt)*) => {
        crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))?
    };
}
/// Writes to stdout without a newline (see [`outln`]).
macro_rules! out {
    ($($arg:tt)*) => {
        crate::output::write_stdout(format_args!($($arg)*))?
    };
}

/// Writes formatted text to stdout.
pub fn write_stdout(args: std::fmt::Arguments<'_>) -> io::Result<()> {
    io::stdout().lock().write_fmt(args)
}

/// Whether an error is stdout's reader having gone away: not a failure of the command.
pub fn is_closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(io::ErrorKind::BrokenPipe))
            || cause
                .downcast_ref::<csv::Error>()
                .is_some_and(|c| matches!(c.kind(), csv::ErrorKind::Io(io) if io.kind() == io::ErrorKind::BrokenPipe))
    })
}

/// Rows under named columns. Cells are JSON values: strings, numbers, or null (shown as
/// `-` in tables and empty in CSV).
pub struct Listing {
    columns: Vec<&'static str>,
    rows: Vec<Vec<Value>>,
}

impl Listing {
    /// An empty listing with these column names (JSON keys and CSV headers; upper-cased
    /// for the table header).
    pub fn new(columns: &[&'static str]) -> Self {
        Self {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; cells in column order.
    pub fn push(&mut self, row: Vec<Value>) {
        self.rows.push(row);
    }

    /// Prints the listing in `format` to stdout.
    pub fn print(&self, format: Format) -> anyhow::Result<()> {
        let stdout = io::stdout();
        let mut w = io::BufWriter::new(stdout.lock());
        match format {
            Format::Table => self.table(&mut w)?,
            Format::Csv => {
                let mut c = csv::Writer::from_writer(&mut w);
                c.write_record(&self.columns)?;
                for row in &self.rows {
                    c.write_record(row.iter().map(|v| text(v, "")))?;
                }
                c.flush()?;
            }
            Format::Json => {
                let array: Vec<Value> = self
                    .rows
                    .iter()
                    .map(|row| {
                        Value::Object(
                            self.columns
                                .iter()
                                .zip(row)
                                .map(|(k, v)| (k.to_string(), v.clone()))
                                .collect(),
                        )
                    })
                    .collect();
                serde_json::to_writer_pretty(&mut w, &array)?;
                writeln!(w)?;
            }
        }
        w.flush()?;
        Ok(())
    }

    fn table(&self, w: &mut impl Write) -> io::Result<()> {
        let header: Vec<String> = self
            .columns
            .iter()
            .map(|c| c.to_uppercase().replace('_', " "))
            .collect();
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(|v| text(v, "-")).collect())
            .collect();
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in &cells {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |w: &mut dyn Write, row: &[String]| -> io::Result<()> {
            let last = row.len().saturating_sub(1);
            for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
                if i == last {
                    write!(w, "{cell}")?;
                } else {
                    write!(w, "{cell:<width$}  ")?;
                }
            }
            writeln!(w)
        };
        line(w, &header)?;
        for row in &cells {
            line(w, row)?;
        }
        Ok(())
    }
}

/// A cell as text for a table or CSV. Cells can quote request text (subjects, reasons):
/// control characters are escaped so that none reaches a terminal raw (JSON escapes its own).
fn text(v: &Value, null: &str) -> String {
    match v {
        Value::Null => null.to_string(),
        Value::String(s) => fleetca_pki::escape_controls(s).into_owned(),
        other => other.to_string(),
    }
}

/// Tells on stderr how many rows were shown, and whether the list was cut at its limit
/// (`more` is then how to see the rest).
pub fn summary(shown: usize, what: &str, cut: bool, more: &str) {
    if cut {
        eprintln!("{shown} {what} shown: the list was cut at its limit; {more}");
    } else {
        eprintln!("{shown} {what}");
    }
}
