//! The migration's part of the state store ([`super`]): kept in schema `pgferry` of the
//! target's bootstrap database (the database named in `-t`), so that `status` and `stop` work from another terminal and a rerun
//! knows what is finished.
//!
//! ```text
//! pgferry.migration        one row: id, source (never with a password), options, stop request
//! pgferry.migration_db     per database: method and why, phase, status, error, lag, copy jobs
//!                          done/total (a table split into ranges counts once per range),
//!                          tables not replicated, WAL retained by the slot, since when the
//!                          copy holds a snapshot open on the source, retries and the last
//!                          error retried
//! pgferry.migration_table  per database and table: rows and bytes of the finished copy
//! ```
//!
//! A running `migrate` holds a session-level advisory lock ([`RUN_LOCK_KEY`]) in the bootstrap
//! database for its whole life: a second `migrate` sees it and refuses, `status` reports
//! whether one runs, and `stop` knows whether to ask the running process or to cut over itself.
//!
//! Methods, phases and statuses are the enums of [`super::lifecycle`]; the columns hold their
//! words.

use super::lifecycle::{DatabaseStatus, Method, MigrationStatus, Phase, UnknownValue};
use super::{DROP_SCHEMA_IF_NO_TABLE_SQL, ENSURE_SCHEMA_SQL, RUN_LOCK_KEY};
use serde::Serialize;
use thiserror::Error;
use tokio_postgres::Client;

/// The migration's tables, created after schema `pgferry` in the same batch. The columns'
/// defaults are [`MigrationStatus::Running`], [`Phase::Pending`] and
/// [`DatabaseStatus::Running`]; columns added since the first version come last, so that an
/// older state is brought up to date.
const TABLES_SQL: &str = "CREATE TABLE IF NOT EXISTS pgferry.migration (
    id text PRIMARY KEY,
    source text NOT NULL,
    source_fingerprint text NOT NULL,
    options jsonb NOT NULL DEFAULT '{}',
    status text NOT NULL DEFAULT 'running',
    error text,
    stop_lag bigint,
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS pgferry.migration_db (
    migration_id text NOT NULL REFERENCES pgferry.migration (id) ON DELETE CASCADE,
    dbname text NOT NULL,
    method text NOT NULL,
    method_reason text,
    phase text NOT NULL DEFAULT 'pending',
    status text NOT NULL DEFAULT 'running',
    error text,
    lag_bytes bigint,
    tables_done integer NOT NULL DEFAULT 0,
    tables_total integer NOT NULL DEFAULT 0,
    created_db boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (migration_id, dbname));
CREATE TABLE IF NOT EXISTS pgferry.migration_table (
    migration_id text NOT NULL,
    dbname text NOT NULL,
    table_name text NOT NULL,
    rows bigint NOT NULL,
    bytes bigint NOT NULL,
    seconds double precision NOT NULL,
    PRIMARY KEY (migration_id, dbname, table_name),
    FOREIGN KEY (migration_id, dbname) REFERENCES pgferry.migration_db ON DELETE CASCADE);
ALTER TABLE pgferry.migration_db ADD COLUMN IF NOT EXISTS not_replicated text[] NOT NULL DEFAULT '{}';
ALTER TABLE pgferry.migration_db ADD COLUMN IF NOT EXISTS slot_retained_bytes bigint;
ALTER TABLE pgferry.migration_db ADD COLUMN IF NOT EXISTS slot_wal_status text;
ALTER TABLE pgferry.migration_db ADD COLUMN IF NOT EXISTS snapshot_since timestamptz;
ALTER TABLE pgferry.migration_db ADD COLUMN IF NOT EXISTS retries integer NOT NULL DEFAULT 0;
ALTER TABLE pgferry.migration_db ADD COLUMN IF NOT EXISTS last_error text;";

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("target (bootstrap database \"{database}\"): {what}: {message}")]
    Query {
        database: String,
        what: &'static str,
        message: String,
    },
    #[error(
        "target database \"{database}\" already holds migration \"{existing}\" (from {source_server}, status {status}); \
         this one is \"{requested}\". Finish or remove the other first: `pgferry status -t ...` shows it, \
         `pgferry cleanup -s SRC -t DST` removes its state (and its slots and publications), or pass \
         --migration-id {existing} if this is the same migration"
    )]
    OtherMigration {
        database: String,
        existing: String,
        requested: String,
        source_server: String,
        status: MigrationStatus,
    },
    #[error(
        "target database \"{database}\" already holds migration \"{existing}\" from another source server \
         ({source_server}); refusing to mix two sources. Use another target or `pgferry cleanup` the old migration"
    )]
    OtherSource {
        database: String,
        existing: String,
        source_server: String,
    },
    #[error("target (bootstrap database \"{database}\"): {source}")]
    Value {
        database: String,
        #[source]
        source: UnknownValue,
    },
}

/// Whether the run lock is held, on `pg_locks` (`$1`: [`RUN_LOCK_KEY`]): how a one-key
/// advisory lock shows there.
const RUN_LOCK_HELD_WHERE: &str = "locktype = 'advisory' AND granted \
       AND database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) \
       AND classid = (($1::bigint >> 32) & 4294967295)::oid \
       AND objid = ($1::bigint & 4294967295)::oid AND objsubid = 1";

/// The stored migration row.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationRow {
    pub id: String,
    pub source: String,
    pub source_fingerprint: String,
    pub status: MigrationStatus,
    pub error: Option<String>,
    pub stop_lag: Option<i64>,
    pub options: serde_json::Value,
}

/// One database's stored state.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DatabaseRow {
    pub dbname: String,
    pub method: Method,
    pub method_reason: Option<String>,
    pub phase: Phase,
    pub status: DatabaseStatus,
    pub error: Option<String>,
    pub lag_bytes: Option<i64>,
    pub tables_done: i32,
    pub tables_total: i32,
    pub created_db: bool,
    /// Source tables the publication does not list (created after the start, or removed
    /// because they lost their replica identity).
    pub not_replicated: Vec<String>,
    /// WAL the slot made the source keep, at the last report.
    pub slot_retained_bytes: Option<i64>,
    /// The slot's `wal_status` (PostgreSQL 13+), at the last report.
    pub slot_wal_status: Option<String>,
    /// Seconds the copy has held its snapshot open on the source (the source's vacuum cannot
    /// remove rows deleted since); `None` when no snapshot is held.
    pub snapshot_age_seconds: Option<f64>,
    /// Attempts of the stream that failed with a transient error and were retried.
    pub retries: i32,
    /// The error of the last retried attempt.
    pub last_error: Option<String>,
    /// Seconds since the row was last written (the age of `lag_bytes` and
    /// `slot_retained_bytes`).
    pub reported_seconds_ago: Option<f64>,
}

/// Access to the state through one client (connected to the bootstrap database).
pub struct Store<'a> {
    client: &'a Client,
    database: String,
}

impl<'a> Store<'a> {
    pub fn new(client: &'a Client, database: &str) -> Store<'a> {
        Store {
            client,
            database: database.to_owned(),
        }
    }

    fn err(&self, what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError + '_ {
        move |e| StoreError::Query {
            database: self.database.clone(),
            what,
            message: crate::pgerror::server_message(&e),
        }
    }

    /// A stored word read back: the enum, or the error naming the word.
    fn word<T: std::str::FromStr<Err = UnknownValue>>(&self, text: &str) -> Result<T, StoreError> {
        text.parse().map_err(|source| StoreError::Value {
            database: self.database.clone(),
            source,
        })
    }

    /// The one value of a one-row query.
    async fn value<T: for<'r> tokio_postgres::types::FromSql<'r>>(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        what: &'static str,
    ) -> Result<T, StoreError> {
        let row = self
            .client
            .query_one(sql, params)
            .await
            .map_err(self.err(what))?;
        Ok(row.get(0))
    }

    /// Whether schema `pgferry` with the migration table exists (read-only).
    pub async fn exists(&self) -> Result<bool, StoreError> {
        self.value(
            "SELECT to_regclass('pgferry.migration') IS NOT NULL \
                    AND to_regclass('pgferry.migration_db') IS NOT NULL",
            &[],
            "looking for the migration state",
        )
        .await
    }

    pub async fn ensure_schema(&self) -> Result<(), StoreError> {
        self.client
            .batch_execute(&format!("{ENSURE_SCHEMA_SQL}; {TABLES_SQL}"))
            .await
            .map_err(self.err("creating schema pgferry"))
    }

    /// Takes the run lock for this session; `false` when another session holds it.
    pub async fn try_lock(&self) -> Result<bool, StoreError> {
        self.value(
            "SELECT pg_try_advisory_lock($1)",
            &[&RUN_LOCK_KEY],
            "taking the migration lock",
        )
        .await
    }

    /// Whether some session (a running migrate) holds the run lock. Read-only: looks at
    /// pg_locks rather than taking the lock.
    pub async fn is_running(&self) -> Result<bool, StoreError> {
        self.value(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks WHERE {RUN_LOCK_HELD_WHERE})"
            ),
            &[&RUN_LOCK_KEY],
            "checking whether a migration runs",
        )
        .await
    }

    /// The backend holding the run lock, if any.
    pub async fn lock_holder(&self) -> Result<Option<i32>, StoreError> {
        let row = self
            .client
            .query_opt(
                &format!("SELECT pid FROM pg_catalog.pg_locks WHERE {RUN_LOCK_HELD_WHERE} LIMIT 1"),
                &[&RUN_LOCK_KEY],
            )
            .await
            .map_err(self.err("looking for the holder of the run lock"))?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Ends the backend `pid` (our own earlier session, cut off from us but still holding
    /// the lock). Allowed for a backend of the same role.
    pub async fn end_backend(&self, pid: i32) -> Result<bool, StoreError> {
        self.value(
            "SELECT pg_catalog.pg_terminate_backend($1)",
            &[&pid],
            "ending our own earlier session",
        )
        .await
    }

    /// This session's backend (to recognise it holding the lock after a silent cut).
    pub async fn backend_pid(&self) -> Result<i32, StoreError> {
        self.value(
            "SELECT pg_catalog.pg_backend_pid()",
            &[],
            "reading the session's process id",
        )
        .await
    }

    pub async fn migration(&self) -> Result<Option<MigrationRow>, StoreError> {
        if !self.exists().await? {
            return Ok(None);
        }
        let row = self
            .client
            .query_opt(
                "SELECT id, source, source_fingerprint, status, error, stop_lag, options::text \
                 FROM pgferry.migration ORDER BY started_at LIMIT 1",
                &[],
            )
            .await
            .map_err(self.err("reading the migration"))?;
        row.map(|r| {
            Ok(MigrationRow {
                id: r.get(0),
                source: r.get(1),
                source_fingerprint: r.get(2),
                status: self.word(r.get(3))?,
                error: r.get(4),
                stop_lag: r.get(5),
                options: serde_json::from_str(r.get::<_, &str>(6)).unwrap_or_default(),
            })
        })
        .transpose()
    }

    /// Records the migration, or checks that the stored one is this one (a rerun). A stop
    /// request already stored is kept: `pgferry stop` may have been typed while this run was
    /// still starting.
    pub async fn begin(
        &self,
        id: &str,
        source: &str,
        fingerprint: &str,
        options: &serde_json::Value,
    ) -> Result<Option<MigrationRow>, StoreError> {
        self.ensure_schema().await?;
        let existing = self.migration().await?;
        match &existing {
            Some(m) if m.id != id => {
                return Err(StoreError::OtherMigration {
                    database: self.database.clone(),
                    existing: m.id.clone(),
                    requested: id.to_owned(),
                    source_server: m.source.clone(),
                    status: m.status,
                })
            }
            Some(m) if m.source_fingerprint != fingerprint => {
                return Err(StoreError::OtherSource {
                    database: self.database.clone(),
                    existing: m.id.clone(),
                    source_server: m.source.clone(),
                })
            }
            Some(_) => {
                self.client
                    .execute(
                        "UPDATE pgferry.migration SET status = $3, error = NULL, \
                         options = $2::text::jsonb, updated_at = now() WHERE id = $1",
                        &[
                            &id,
                            &options.to_string(),
                            &MigrationStatus::Running.as_str(),
                        ],
                    )
                    .await
                    .map_err(self.err("updating the migration"))?;
            }
            None => {
                self.client
                    .execute(
                        "INSERT INTO pgferry.migration (id, source, source_fingerprint, options) \
                         VALUES ($1, $2, $3, $4::text::jsonb)",
                        &[&id, &source, &fingerprint, &options.to_string()],
                    )
                    .await
                    .map_err(self.err("recording the migration"))?;
            }
        }
        Ok(existing)
    }

    pub async fn finish(
        &self,
        id: &str,
        status: MigrationStatus,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        self.client
            .execute(
                "UPDATE pgferry.migration SET status = $2, error = $3, stop_lag = NULL, updated_at = now() \
                 WHERE id = $1",
                &[&id, &status.as_str(), &error],
            )
            .await
            .map_err(self.err("recording the migration's outcome"))?;
        Ok(())
    }

    /// The databases' rows. Read as JSON so that a state written by an older pgferry (without
    /// the newer columns) is still shown: `status` must never fail on it, nor change it. A
    /// missing phase or status reads as the column's default; a word this pgferry does not
    /// know is [`StoreError::Value`].
    pub async fn databases(&self, id: &str) -> Result<Vec<DatabaseRow>, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT to_jsonb(d)::text, \
                        extract(epoch FROM now() - (to_jsonb(d) ->> 'snapshot_since')::timestamptz)::float8, \
                        extract(epoch FROM now() - d.updated_at)::float8 \
                 FROM pgferry.migration_db d WHERE migration_id = $1 ORDER BY dbname",
                &[&id],
            )
            .await
            .map_err(self.err("reading the databases' state"))?;
        rows.iter()
            .map(|r| {
                let row: serde_json::Value =
                    serde_json::from_str(r.get::<_, &str>(0)).map_err(|e| StoreError::Query {
                        database: self.database.clone(),
                        what: "reading the databases' state",
                        message: e.to_string(),
                    })?;
                let text = |k: &str| row[k].as_str().map(str::to_owned);
                let int = |k: &str| row[k].as_i64();
                let word = |k: &str| row[k].as_str().unwrap_or_default();
                Ok(DatabaseRow {
                    dbname: text("dbname").unwrap_or_default(),
                    method: self.word(word("method"))?,
                    method_reason: text("method_reason"),
                    phase: row["phase"]
                        .as_str()
                        .map_or(Ok(Phase::Pending), |w| self.word(w))?,
                    status: row["status"]
                        .as_str()
                        .map_or(Ok(DatabaseStatus::Running), |w| self.word(w))?,
                    error: text("error"),
                    lag_bytes: int("lag_bytes"),
                    tables_done: int("tables_done").unwrap_or(0) as i32,
                    tables_total: int("tables_total").unwrap_or(0) as i32,
                    created_db: row["created_db"].as_bool().unwrap_or(false),
                    not_replicated: row["not_replicated"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                    slot_retained_bytes: int("slot_retained_bytes"),
                    slot_wal_status: text("slot_wal_status"),
                    retries: int("retries").unwrap_or(0) as i32,
                    last_error: text("last_error"),
                    snapshot_age_seconds: r.get(1),
                    reported_seconds_ago: r.get(2),
                })
            })
            .collect()
    }

    /// Inserts or resets a database's row for a (re)start of its migration.
    pub async fn start_database(
        &self,
        id: &str,
        db: &str,
        method: Method,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        self.client
            .execute(
                "INSERT INTO pgferry.migration_db (migration_id, dbname, method, method_reason) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (migration_id, dbname) DO UPDATE SET method = EXCLUDED.method, \
                   method_reason = EXCLUDED.method_reason, status = $5, error = NULL, \
                   snapshot_since = NULL, retries = 0, last_error = NULL, updated_at = now()",
                &[
                    &id,
                    &db,
                    &method.as_str(),
                    &reason,
                    &DatabaseStatus::Running.as_str(),
                ],
            )
            .await
            .map_err(self.err("recording a database's method"))?;
        Ok(())
    }

    pub async fn apply(&self, id: &str, update: &Update) -> Result<(), StoreError> {
        let result = match update {
            Update::Phase { db, phase } => {
                self.client
                    .execute(
                        "UPDATE pgferry.migration_db SET phase = $3, status = $4, updated_at = now() \
                         WHERE migration_id = $1 AND dbname = $2",
                        &[&id, db, &phase.as_str(), &phase.status().as_str()],
                    )
                    .await
            }
            Update::Failed { db, error } => {
                self.client
                    .execute(
                        "UPDATE pgferry.migration_db SET status = $4, error = $3, \
                                snapshot_since = NULL, updated_at = now() \
                         WHERE migration_id = $1 AND dbname = $2",
                        &[&id, db, error, &DatabaseStatus::Failed.as_str()],
                    )
                    .await
            }
            Update::Lag { db, bytes } => {
                self.client
                    .execute(
                        "UPDATE pgferry.migration_db SET lag_bytes = $3, updated_at = now() \
                         WHERE migration_id = $1 AND dbname = $2",
                        &[&id, db, bytes],
                    )
                    .await
            }
            Update::NotReplicated { db, tables } => {
                self.client
                    .execute(
                        "UPDATE pgferry.migration_db SET not_replicated = $3, updated_at = now() \
                         WHERE migration_id = $1 AND dbname = $2",
                        &[&id, db, tables],
                    )
                    .await
            }
            Update::Retention {
                db,
                bytes,
                wal_status,
            } => {
                self.client
                    .execute(
                        "UPDATE pgferry.migration_db SET slot_retained_bytes = $3, \
                                slot_wal_status = $4, updated_at = now() \
                         WHERE migration_id = $1 AND dbname = $2",
                        &[&id, db, bytes, wal_status],
                    )
                    .await
            }
            Update::Planned { db, tables } => {
                self.client
                    .execute(
                        "UPDATE pgferry.migration_db SET tables_total = $3, tables_done = 0, updated_at = now() \
                         WHERE migration_id = $1 AND dbname = $2",
                        &[&id, db, tables],
                    )
                    .await
            }
            Update::Retry { db, error } => {
                self.client
                    .execute(
                        "UPDATE pgferry.migration_db SET retries = retries + 1, last_error = $3, \
                                updated_at = now() \
                         WHERE migration_id = $1 AND dbname = $2",
                        &[&id, db, error],
                    )
                    .await
            }
            Update::Snapshot { db, held } => {
                self.client
                    .execute(
                        "UPDATE pgferry.migration_db SET snapshot_since = \
                                CASE WHEN $3 THEN coalesce(snapshot_since, now()) END, \
                                updated_at = now() \
                         WHERE migration_id = $1 AND dbname = $2",
                        &[&id, db, held],
                    )
                    .await
            }
            Update::CreatedDatabase { db } => {
                self.client
                    .execute(
                        "UPDATE pgferry.migration_db SET created_db = true, updated_at = now() \
                         WHERE migration_id = $1 AND dbname = $2",
                        &[&id, db],
                    )
                    .await
            }
            Update::ForgetTables { db } => {
                self.client
                    .execute(
                        "DELETE FROM pgferry.migration_table WHERE migration_id = $1 AND dbname = $2",
                        &[&id, db],
                    )
                    .await
            }
            Update::TableDone {
                db,
                table,
                rows,
                bytes,
                seconds,
            } => {
                self.client
                    .execute(
                        "WITH t AS (INSERT INTO pgferry.migration_table AS t \
                                       (migration_id, dbname, table_name, rows, bytes, seconds) \
                                    VALUES ($1, $2, $3, $4, $5, $6) \
                                    ON CONFLICT (migration_id, dbname, table_name) DO UPDATE \
                                      SET rows = t.rows + EXCLUDED.rows, bytes = t.bytes + EXCLUDED.bytes, \
                                          seconds = greatest(t.seconds, EXCLUDED.seconds) \
                                    RETURNING 1) \
                         UPDATE pgferry.migration_db SET tables_done = tables_done + 1, updated_at = now() \
                         WHERE migration_id = $1 AND dbname = $2 AND EXISTS (SELECT 1 FROM t)",
                        &[&id, db, table, rows, bytes, seconds],
                    )
                    .await
            }
        };
        result.map(|_| ()).map_err(self.err("recording progress"))
    }

    /// Asks a running migrate to cut over at `lag` bytes.
    pub async fn request_stop(&self, id: &str, lag: i64) -> Result<(), StoreError> {
        self.client
            .execute(
                "UPDATE pgferry.migration SET stop_lag = $2, updated_at = now() WHERE id = $1",
                &[&id, &lag],
            )
            .await
            .map_err(self.err("asking the running migration to stop"))?;
        Ok(())
    }

    pub async fn stop_requested(&self, id: &str) -> Result<Option<i64>, StoreError> {
        let row = self
            .client
            .query_opt(
                "SELECT stop_lag FROM pgferry.migration WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(self.err("reading a stop request"))?;
        Ok(row.and_then(|r| r.get(0)))
    }

    /// Removes the whole state (after cleanup).
    pub async fn drop_all(&self) -> Result<(), StoreError> {
        self.client
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS pgferry.migration_table, pgferry.migration_db, pgferry.migration; \
                 {DROP_SCHEMA_IF_NO_TABLE_SQL}"
            ))
            .await
            .map_err(self.err("removing the migration state"))
    }
}

/// One change of state, sent by the workers to the task that writes them.
#[derive(Debug, Clone)]
pub enum Update {
    /// The database entered `phase`; its status follows ([`Phase::status`]).
    Phase {
        db: String,
        phase: Phase,
    },
    Failed {
        db: String,
        error: String,
    },
    Lag {
        db: String,
        bytes: i64,
    },
    Planned {
        db: String,
        tables: i32,
    },
    NotReplicated {
        db: String,
        tables: Vec<String>,
    },
    Retention {
        db: String,
        bytes: Option<i64>,
        wal_status: Option<String>,
    },
    /// The stream failed with a transient error and is retried.
    Retry {
        db: String,
        error: String,
    },
    /// The copy opened (`held`) or closed its snapshot on the source.
    Snapshot {
        db: String,
        held: bool,
    },
    CreatedDatabase {
        db: String,
    },
    ForgetTables {
        db: String,
    },
    TableDone {
        db: String,
        table: String,
        rows: i64,
        bytes: i64,
        seconds: f64,
    },
}
