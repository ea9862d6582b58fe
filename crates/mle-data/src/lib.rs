//! Tabular data for mle trainers: CSV files with or without a header, a column schema,
//! feature normalisation, seeded shuffling, batching and sharding.
//!
//! The crate knows nothing about tensors or models: a [`Dataset`] is a row-major `f32`
//! feature matrix plus one `f32` label per row (a regression target, or a class index).
//!
//! ```
//! use mle_data::{Schema, Label, Dataset};
//! let schema = Schema {
//!     columns: vec!["x".into(), "y".into()],
//!     features: vec!["x".into()],
//!     label: Some("y".into()),
//!     label_kind: Label::Regression,
//!     header: mle_data::Header::Absent,
//! };
//! let ds = Dataset::parse_str(&schema, "1.0,2.0\n3.0,4.0\n", "inline").unwrap();
//! assert_eq!(ds.len(), 2);
//! assert_eq!(ds.row(1), &[3.0]);
//! assert_eq!(ds.labels(), &[2.0, 4.0]);
//! ```

mod batch;
mod csv;
mod normalize;

pub use batch::{BatchStream, Cursor};
pub use csv::{Dataset, Header, Label, Schema};
pub use normalize::Normalizer;

use std::path::PathBuf;

/// Everything that can go wrong while reading data. Messages name the file, the line and the
/// column so that a user can fix the input without a debugger.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path that was opened.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A row has the wrong number of fields.
    #[error("{file}:{line}: expected {expected} columns, found {found}")]
    ColumnCount {
        /// The file (or source name).
        file: String,
        /// 1-based line number.
        line: usize,
        /// Columns the schema declares.
        expected: usize,
        /// Columns the row holds.
        found: usize,
    },
    /// A feature field is not a finite number.
    #[error("{file}:{line}: column {column} ('{name}'): '{value}' is not a number")]
    NotANumber {
        /// The file (or source name).
        file: String,
        /// 1-based line number.
        line: usize,
        /// 1-based column number.
        column: usize,
        /// The column's name in the schema.
        name: String,
        /// The offending text.
        value: String,
    },
    /// A class label is not one of the declared class names (nor a valid class index).
    #[error(
        "{file}:{line}: column {column} ('{name}'): unknown class '{value}' (classes: {classes})"
    )]
    UnknownClass {
        /// The file (or source name).
        file: String,
        /// 1-based line number.
        line: usize,
        /// 1-based column number.
        column: usize,
        /// The label column's name.
        name: String,
        /// The offending text.
        value: String,
        /// The declared classes, comma separated.
        classes: String,
    },
    /// The schema itself is inconsistent.
    #[error("invalid schema: {0}")]
    Schema(String),
    /// No data rows were found.
    #[error("no data rows in {0}")]
    Empty(String),
}

/// Shorthand for results in this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
