//! What can go wrong while finding, starting or stopping a local cluster.

use std::io;
use std::path::PathBuf;

/// Every message is meant to be read by a person setting up a machine, so each one says what
/// was tried and, where there is one, how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum LocalPgError {
    /// No directory with `initdb`, `pg_ctl` and `postgres` was found.
    #[error(
        "no PostgreSQL server binaries found (need initdb, pg_ctl and postgres); searched: {}. \
         Install them with `apt-get install -y postgresql`, or set PGFERRY_PG_BIN to their bin directory",
        searched.join("; ")
    )]
    NotFound { searched: Vec<String> },

    /// A directory given explicitly lacks some server program.
    #[error("{} is not a PostgreSQL bin directory: missing {}", dir.display(), missing.join(", "))]
    InvalidBinDir { dir: PathBuf, missing: Vec<String> },

    /// `postgres --version` failed or printed something we could not read.
    #[error("could not tell the PostgreSQL version from `{} --version`: {detail}", program.display())]
    Version { program: PathBuf, detail: String },

    /// We run as root, the server cannot, and there is nobody to hand it to.
    #[error(
        "running as root, but there is no `postgres` OS user to run the server as \
         (create it with `useradd --system --user-group --home-dir /var/lib/postgresql postgres`)"
    )]
    NoPostgresUser,

    /// A setting or pg_hba.conf line that would corrupt the configuration file.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// A file system or process-spawning operation failed.
    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: io::Error,
    },

    /// A server program ran and reported failure.
    #[error("{program} failed ({status}): {output}")]
    Command {
        program: String,
        status: String,
        output: String,
    },

    /// `pg_ctl start` (or restart) failed; the server log usually says why.
    /// The log itself is usually gone by the time the error is read (a failed start cleans up),
    /// hence the copy of its last lines.
    #[error("the PostgreSQL server did not start: {detail}\n--- last lines of the server log ---\n{log_tail}")]
    StartFailed {
        detail: String,
        log: PathBuf,
        log_tail: String,
    },

    /// The server rejected a new pg_hba.conf (it keeps the old one) or never reloaded.
    #[error("pg_hba.conf was not reloaded: {detail}\n--- last lines of {} ---\n{log_tail}", log.display())]
    Reload {
        detail: String,
        log: PathBuf,
        log_tail: String,
    },
}

impl LocalPgError {
    pub(crate) fn io(action: impl Into<String>, source: io::Error) -> LocalPgError {
        LocalPgError::Io {
            action: action.into(),
            source,
        }
    }
}
