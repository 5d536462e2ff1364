//! The snapshot copy engine: table data from source to target, in parallel, from one snapshot.
//!
//! ```text
//!  plan (catalog) ──► Vec<TableJob> ──► run::copy_all: N workers, largest job first
//!                                         │ each worker: source session in the exported
//!                                         │ snapshot (snapshot), target session
//!                                         ▼
//!        source COPY (SELECT ..) TO STDOUT ──bytes──► forward (re-chunk, count) ──► target COPY FROM STDIN
//!                                                  pipe::copy_table
//! ```
//!
//! - [`binary_stream`]: sans-IO readers of the COPY byte stream (row counting, validation).
//! - [`forward`]: merges per-row `CopyData` messages into big buffers, bounded in memory.
//! - [`pipe`]: one table (or one range of a table) through both COPY statements.
//! - [`snapshot`]: exporting a snapshot and joining it from worker sessions.
//! - [`plan`]: which tables, which columns, which format, how to split big tables.
//! - [`run`]: the worker pool and progress reporting.
//!
//! Rows are never decoded: the source's bytes reach the target as they were, in binary format
//! unless binary is unsafe (see [`plan`]).

pub mod binary_stream;
pub mod forward;
pub mod pipe;
pub mod plan;
pub mod run;
pub mod snapshot;

use std::fmt;

/// The chunk type of the copy path, re-exported so callers (fuzz targets, benches) need no
/// direct dependency on `bytes`.
pub use bytes::Bytes;

pub use binary_stream::{BinaryCopyReader, CopyStreamError, RowCounter, TextRowCounter};
pub use forward::{forward, ForwardOptions, Rechunker};
pub use pipe::{copy_table, PipeOptions};
pub use plan::{plan_tables, PlanOptions, TableFilter};
pub use run::{copy_all, NoProgress, ProgressSink};
pub use snapshot::{begin_in_snapshot, ExportedSnapshot};

/// The COPY format both sides use for one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CopyFormat {
    /// Each type's binary send/receive form: fastest, but only safe between the same major
    /// version and for types whose binary form does not embed server-specific OIDs.
    Binary,
    /// Text form: portable across versions.
    Text,
}

impl CopyFormat {
    /// The value of the `FORMAT` option.
    pub fn as_sql(self) -> &'static str {
        match self {
            CopyFormat::Binary => "binary",
            CopyFormat::Text => "text",
        }
    }
}

/// Which rows of a table a job copies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RowRange {
    /// Heap blocks `start..end` (`end: None` = to the end of the table), by ctid. Needs
    /// PostgreSQL 14 or later on the source (TID range scans) to be fast.
    Ctid { start: u64, end: Option<u64> },
    /// `low <= column < high` on a single-column integer key; `None` = unbounded, so rows
    /// outside the range seen at planning time are still copied by the first or last job.
    IntKey {
        column: String,
        low: Option<i64>,
        high: Option<i64>,
    },
}

/// One unit of copy work: a whole table, or one range of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableJob {
    pub schema: String,
    pub table: String,
    /// Columns copied, in order (generated and dropped columns excluded).
    pub columns: Vec<String>,
    /// `None` copies the whole table.
    pub range: Option<RowRange>,
    pub format: CopyFormat,
    /// Empty the target table first. For a whole-table job this is `TRUNCATE` + `COPY FREEZE`
    /// in one transaction; for ranged jobs [`run::copy_all`] truncates the table once before
    /// any of its ranges start, and the ranges copy without `FREEZE`.
    pub truncate_first: bool,
    /// Estimated bytes on the source (heap + TOAST, or this range's share), for ordering and
    /// progress.
    pub estimated_bytes: u64,
    /// Why the format is text, when it is (for logs and reports).
    pub text_reason: Option<String>,
    /// A condition the copied rows must meet, without `WHERE`. Set for extension
    /// configuration tables: only the rows the extension did not create itself are copied
    /// (`pg_extension.extcondition`, as pg_dump does), since `CREATE EXTENSION` on the target
    /// already made the others.
    pub row_filter: Option<String>,
}

impl TableJob {
    /// `schema.table` for messages (unquoted, as people read it), with the range if any.
    pub fn display_name(&self) -> String {
        let base = format!("{}.{}", self.schema, self.table);
        match &self.range {
            None => base,
            Some(RowRange::Ctid {
                start,
                end: Some(end),
            }) => {
                format!("{base} [blocks {start}..{end}]")
            }
            Some(RowRange::Ctid { start, end: None }) => format!("{base} [blocks {start}..]"),
            Some(RowRange::IntKey { column, low, high }) => {
                let low = low.map(|v| v.to_string()).unwrap_or_default();
                let high = high.map(|v| v.to_string()).unwrap_or_default();
                format!("{base} [{column} {low}..{high}]")
            }
        }
    }
}

/// What one job did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyStats {
    /// The job's [`TableJob::display_name`].
    pub table: String,
    pub format: CopyFormat,
    pub rows: u64,
    pub bytes: u64,
    pub elapsed: std::time::Duration,
}

/// Which end of a copy failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
    /// The bytes between the two: malformed COPY data or a row count that does not match.
    Data,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Target => "target",
            Side::Data => "copy stream",
        })
    }
}

/// A failed copy: which table (if any), which side, and what the server (or we) said.
#[derive(Debug, Clone, thiserror::Error)]
pub struct CopyError {
    /// The job's display name; `None` for failures outside any table (connecting, snapshot).
    pub table: Option<String>,
    pub side: Side,
    /// The server's message (with detail and hint when it gave them), or ours.
    pub message: String,
    /// The SQLSTATE, when the server sent one.
    pub code: Option<String>,
}

impl fmt::Display for CopyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.table {
            Some(t) => write!(f, "copying {t}: {} failed: {}", self.side, self.message),
            None => write!(f, "{} failed: {}", self.side, self.message),
        }
    }
}

impl CopyError {
    pub(crate) fn new(table: Option<&str>, side: Side, message: impl Into<String>) -> Self {
        CopyError {
            table: table.map(str::to_string),
            side,
            message: message.into(),
            code: None,
        }
    }

    /// From a tokio-postgres error, keeping the server's own words.
    pub(crate) fn from_pg(table: Option<&str>, side: Side, err: &tokio_postgres::Error) -> Self {
        CopyError {
            table: table.map(str::to_string),
            side,
            message: crate::pgerror::server_message(err),
            code: err.code().map(|c| c.code().to_string()),
        }
    }

    pub(crate) fn with_table(mut self, table: &str) -> Self {
        self.table.get_or_insert_with(|| table.to_string());
        self
    }
}
