//! Line-numbered reading of CSV tables (instrument master, accounts, trade files).
//!
//! Callers open the file; this module only parses, so the domain stays free of I/O. Every
//! error names the line (1 = the header) and, where it applies, the column.

use std::collections::HashMap;
use std::io::Read;

/// A CSV table that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    #[error("line {line}: {message}")]
    Malformed { line: u64, message: String },
    #[error("header: missing column {column:?}")]
    MissingColumn { column: &'static str },
    #[error("line {line}, column {column:?}: {message}")]
    Field { line: u64, column: &'static str, message: String },
    #[error("line {line}: {message}")]
    Row { line: u64, message: String },
}

/// One data row, with the line it came from.
#[derive(Debug)]
pub struct Row<'a> {
    pub line: u64,
    record: &'a csv::StringRecord,
    columns: &'a HashMap<String, usize>,
}

impl Row<'_> {
    /// The trimmed value of an optional column; `None` when absent or empty.
    pub fn optional(&self, column: &'static str) -> Option<&str> {
        let index = *self.columns.get(column)?;
        self.record.get(index).map(str::trim).filter(|value| !value.is_empty())
    }

    /// The trimmed value of a required column.
    pub fn required(&self, column: &'static str) -> Result<&str, TableError> {
        self.optional(column).ok_or_else(|| self.field_error(column, "is empty"))
    }

    /// Parses a required column with `parse`, naming the column and line on failure.
    pub fn parse<T, E: std::fmt::Display>(
        &self,
        column: &'static str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<T, TableError> {
        let text = self.required(column)?;
        parse(text).map_err(|error| self.field_error(column, &error.to_string()))
    }

    /// Parses an optional column; empty gives `None`.
    pub fn parse_optional<T, E: std::fmt::Display>(
        &self,
        column: &'static str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, TableError> {
        match self.optional(column) {
            None => Ok(None),
            Some(text) => {
                parse(text).map(Some).map_err(|e| self.field_error(column, &e.to_string()))
            }
        }
    }

    pub fn field_error(&self, column: &'static str, message: &str) -> TableError {
        TableError::Field { line: self.line, column, message: message.to_owned() }
    }

    pub fn row_error(&self, message: impl Into<String>) -> TableError {
        TableError::Row { line: self.line, message: message.into() }
    }
}

/// Reads a CSV table with a header row, checks that `required` columns exist, and calls
/// `visit` for each data row in order. Lines starting with `#` are comments.
pub fn read_table(
    reader: impl Read,
    required: &[&'static str],
    mut visit: impl FnMut(&Row<'_>) -> Result<(), TableError>,
) -> Result<(), TableError> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .comment(Some(b'#'))
        .flexible(true)
        .trim(csv::Trim::None)
        .from_reader(reader);
    let headers = csv.headers().map_err(|e| malformed(&e))?.clone();
    let columns: HashMap<String, usize> =
        headers.iter().enumerate().map(|(index, name)| (name.trim().to_owned(), index)).collect();
    if let Some(column) = required.iter().find(|column| !columns.contains_key(**column)) {
        return Err(TableError::MissingColumn { column });
    }
    let mut record = csv::StringRecord::new();
    loop {
        match csv.read_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {
                let line = record.position().map_or(0, csv::Position::line);
                visit(&Row { line, record: &record, columns: &columns })?;
            }
            Err(error) => return Err(malformed(&error)),
        }
    }
}

fn malformed(error: &csv::Error) -> TableError {
    let line = error.position().map_or(0, csv::Position::line);
    TableError::Malformed { line, message: error.to_string() }
}
