//! Native archives: `pgferry dump` writes one database to a directory, `pgferry restore`
//! loads it, for hosts without pg_dump and for servers that cannot reach each other.
//!
//! ```text
//!  dump:    export snapshot ─► schema (pre/post-data SQL, post-data units) ─► plan (copy::plan_tables)
//!           ─► N workers: COPY (SELECT ..) TO STDOUT ─► count rows ─► thread: zstd + SHA-256 ─► file
//!           ─► sequences, large objects ─► manifest.json ─► rename DIR.partial → DIR
//!  restore: manifest + sizes + schema checksums ─► target database ─► pre-data
//!           ─► N workers: thread: file ─► SHA-256 + unzstd + row count ─► COPY FROM [FREEZE]
//!              (committed only once the whole file checked out) ─► sequences, large objects
//!           ─► post-data units and ANALYZE (clone::postdata, every table ready)
//!           ─► REFRESH matviews ─► publications
//! ```
//!
//! - [`manifest`]: the versioned `manifest.json` and its checks.
//! - [`datafile`]: one stored file: writing (compress, hash) and validated reading.
//! - [`write`]: the dump. [`read`]: the restore. [`list`]: `--list`.
//!
//! The format is documented for other readers in docs/ARCHIVE.md.

pub mod datafile;
pub mod list;
pub mod manifest;
pub mod read;
pub mod write;

use std::path::PathBuf;

use crate::clone::{CloneError, Stage};
use crate::copy::CopyError;
use datafile::DataFileError;
use manifest::ManifestError;

pub use read::{open_archive, restore_archive, Archive, RestoreOptions, Sections};
pub use write::{dump_database, partial_dir, DumpOptions, DumpSummary};

/// A failed dump or restore.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("archive {dir}: {source}")]
    Manifest {
        dir: PathBuf,
        #[source]
        source: ManifestError,
    },
    /// A stored file failed a check: `what` says what it holds (a table, a large object).
    #[error("archive file {path} ({what}): {source}")]
    DataFile {
        path: PathBuf,
        what: String,
        #[source]
        source: DataFileError,
    },
    #[error(
        "{0} already exists: pgferry dump writes a new directory; remove it or choose another name"
    )]
    Exists(PathBuf),
    /// `restore -i DIR` where DIR is missing or holds no manifest.
    #[error("{dir} is not a pgferry archive ({why}): give -i the directory that `pgferry dump -o` created")]
    NotAnArchive { dir: PathBuf, why: String },
    /// A file the manifest lists is not in the archive.
    #[error("archive file {path} ({what}) is missing: the archive is incomplete; copy it again in full, or dump again")]
    MissingFile { path: PathBuf, what: String },
    #[error("target database \"{0}\" exists and is not empty: use --clean to drop and recreate it from the archive, or restore into a new database")]
    TargetNotEmpty(String),
    /// The archive cannot be restored as asked (missing section, different major version...).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Clone(#[from] CloneError),
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error("source: reading the schema: {0}")]
    Schema(#[from] crate::catalog::CatalogError),
    /// A restore stopped: the cause and the state of the target.
    #[error("{source} ({})", .stage.target_state())]
    During {
        stage: Stage,
        #[source]
        source: Box<ArchiveError>,
    },
}

impl ArchiveError {
    fn io(path: impl Into<PathBuf>, source: std::io::Error) -> ArchiveError {
        ArchiveError::Io {
            path: path.into(),
            source,
        }
    }

    fn during(self, stage: Stage) -> ArchiveError {
        match self {
            already @ ArchiveError::During { .. } => already,
            // A clone-level error that already says the state is kept as it is.
            ArchiveError::Clone(CloneError::During { stage, source }) => ArchiveError::During {
                stage,
                source: Box::new(ArchiveError::Clone(*source)),
            },
            other => ArchiveError::During {
                stage,
                source: Box::new(other),
            },
        }
    }
}

/// A file name part made of a table's name: readable, but only `[A-Za-z0-9_.-]` (names may
/// hold `/`, spaces or anything else), and short.
fn file_stem(schema: &str, table: &str) -> String {
    format!("{schema}.{table}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn file_stems_are_plain() {
        assert_eq!(super::file_stem("public", "a/b c"), "public.a_b_c");
        assert_eq!(super::file_stem("s", "ü").len(), 3);
    }
}
