//! Where a migration and each of its databases are: the method, phase and status stored in
//! `pgferry.migration` and `pgferry.migration_db` ([`super::migration`]).
//!
//! The columns are `text` and keep the seed tool's words (`pg_dump`, `running`, `syncing`...):
//! `status --json` shows them as they are, and a state written by an older pgferry reads back.
//! In the code they are closed enums; the text exists only at the store's boundary
//! ([`as_str`](Phase::as_str) writing, [`FromStr`](std::str::FromStr) reading) and in JSON
//! (serialized as the same text).
//!
//! Reading a word this pgferry does not know (a state written by a newer one, or edited by
//! hand) is an [`UnknownValue`] error naming the column and the word, never a panic and never
//! a silent guess. A column missing from an older state reads as the column's default
//! ([`Phase::Pending`], [`DatabaseStatus::Running`]), which is what that state meant.
//!
//! The run's decisions on a restart (`migrate` rerun, `pgferry stop` without a running
//! process) read the database's status and phase; each variant says what it leads to.

use serde::{Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A stored word this pgferry does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown {column} \"{value}\" in the migration state (written by a newer pgferry?); \
     known: {}", known.join(", ")
)]
pub struct UnknownValue {
    /// The column (`migration_db.phase`...).
    pub column: &'static str,
    pub value: String,
    /// The words this pgferry knows.
    pub known: &'static [&'static str],
}

/// The text of each variant, and the conversions at the store's boundary that follow from it.
macro_rules! stored_as_text {
    ($ty:ident, $column:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// The stored (and shown) word.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $text),+
                }
            }
        }

        impl FromStr for $ty {
            type Err = UnknownValue;

            fn from_str(text: &str) -> Result<$ty, UnknownValue> {
                match text {
                    $($text => Ok($ty::$variant),)+
                    _ => Err(UnknownValue {
                        column: $column,
                        value: text.to_owned(),
                        known: &[$($text),+],
                    }),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        /// Compares with the stored word (status reports and tests speak in words).
        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}

/// How a database is migrated (`migration_db.method`). Named as the seed tool names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// One-shot snapshot copy; named `pg_dump` in status, like the seed tool. Chosen by
    /// preflight (a condition of the server rules replication out) or forced by the user.
    /// Restart: a database not done is copied again from scratch; a slot left by an earlier
    /// replication attempt is dropped first.
    Dump,
    /// Snapshot copy under a replication slot, then streaming until cutover. Restart: resumes
    /// streaming when the slot and the target's progress row both survived, else copies again.
    Replication,
}

stored_as_text!(Method, "migration_db.method", {
    Dump => "pg_dump",
    Replication => "replication",
});

impl Method {
    /// The name in status output (the seed tool's).
    pub fn as_status(self) -> &'static str {
        self.as_str()
    }

    /// The name on the command line (`--force-method`).
    pub fn as_cli(self) -> &'static str {
        match self {
            Method::Dump => "dump",
            Method::Replication => "replication",
        }
    }

    /// The method named `text` in status, if any.
    pub fn from_status(text: &str) -> Option<Method> {
        text.parse().ok()
    }
}

/// What a database is doing (`migration_db.phase`), written by the running `migrate` (and by
/// `pgferry stop` when it cuts over itself). The order is the order of the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// The column's default: the row exists, no run has started work on the database.
    /// Restart: nothing to undo; the target database is left as it is and copied into.
    Pending,
    /// Set when a fresh copy starts (creating the database, then the pre-data schema).
    /// Restart: the copy was interrupted; the target database is dropped (pgferry created it)
    /// or emptied, and copied again.
    Schema,
    /// Set when the table data is being copied. Restart: as [`Phase::Schema`].
    Copy,
    /// Set while indexes and constraints are built. Restart: as [`Phase::Schema`].
    PostData,
    /// Set while sequences, large objects and materialized views are finished. Restart: as
    /// [`Phase::Schema`].
    Finishing,
    /// Set once the copy committed (or a resume found the slot and the progress row) and
    /// changes stream. Restart: streaming resumes from the stored position.
    Streaming,
    /// Set when the lag reached the cutover threshold and the cutover began. Restart: as
    /// [`Phase::Streaming`] (the slot is dropped only at the very end of the cutover).
    Cutover,
    /// Set when the database is finished (copied, or cut over). Restart: skipped.
    Done,
}

stored_as_text!(Phase, "migration_db.phase", {
    Pending => "pending",
    Schema => "schema",
    Copy => "copy",
    PostData => "post-data",
    Finishing => "finishing",
    Streaming => "streaming",
    Cutover => "cutover",
    Done => "done",
});

impl Phase {
    /// The status that goes with the phase: a database streams (`syncing`) only after its
    /// copy committed.
    pub fn status(self) -> DatabaseStatus {
        match self {
            Phase::Pending | Phase::Schema | Phase::Copy | Phase::PostData | Phase::Finishing => {
                DatabaseStatus::Running
            }
            Phase::Streaming | Phase::Cutover => DatabaseStatus::Syncing,
            Phase::Done => DatabaseStatus::Done,
        }
    }
}

/// How a database stands (`migration_db.status`), the seed tool's per-database status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatabaseStatus {
    /// The column's default, and what a (re)start of the database sets: its copy is under
    /// way. `status` shows it as `failed` when no process runs (nothing moves it). Restart:
    /// the copy is redone (the target emptied first unless the phase is still `pending`).
    Running,
    /// Copied, and streaming (or stopped with its slot kept). Set with the streaming and
    /// cutover phases. Restart: streaming resumes; `pgferry stop` without a running process
    /// cuts over the replication databases in this status.
    Syncing,
    /// Finished. Set with [`Phase::Done`]. Restart: skipped; `stop` counts it as finished.
    Done,
    /// The database's run ended with an error (kept in `error`). Set by the running migrate.
    /// Restart: as any started database (resume when slot and progress row survived, else
    /// copy again); the row's status goes back to `running`.
    Failed,
}

stored_as_text!(DatabaseStatus, "migration_db.status", {
    Running => "running",
    Syncing => "syncing",
    Done => "done",
    Failed => "failed",
});

/// How the whole migration stands (`migration.status`, and the overall status `status`
/// derives from the databases).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MigrationStatus {
    /// Set when a run begins (the column's default, and reset on a rerun).
    Running,
    /// Set at the end of a run that left databases streaming and none failed. Restart: the
    /// rerun resumes them; `pgferry stop` cuts them over.
    Syncing,
    /// Every database finished; set at the end of a run or by `pgferry stop`.
    Done,
    /// Some database failed (named in `error`); set at the end of a run. Restart: a rerun
    /// retries the databases not done.
    Failed,
}

stored_as_text!(MigrationStatus, "migration.status", {
    Running => "running",
    Syncing => "syncing",
    Done => "done",
    Failed => "failed",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_unknown_ones_are_named() {
        for p in [
            Phase::Pending,
            Phase::Schema,
            Phase::Copy,
            Phase::PostData,
            Phase::Finishing,
            Phase::Streaming,
            Phase::Cutover,
            Phase::Done,
        ] {
            assert_eq!(p.as_str().parse::<Phase>(), Ok(p));
        }
        assert_eq!("post-data".parse::<Phase>(), Ok(Phase::PostData));
        let e = "copying".parse::<Phase>().unwrap_err();
        assert_eq!(e.column, "migration_db.phase");
        assert!(e.to_string().contains("\"copying\""), "{e}");
        assert!(e.to_string().contains("pending, schema, copy"), "{e}");
        assert_eq!(
            serde_json::json!(DatabaseStatus::Syncing),
            serde_json::json!("syncing")
        );
        assert!("stopped".parse::<MigrationStatus>().is_err());
    }
}
