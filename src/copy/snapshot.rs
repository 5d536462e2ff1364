//! One consistent view of the source for every worker.
//!
//! A leader session opens a `REPEATABLE READ` transaction and calls `pg_export_snapshot()`;
//! while that transaction stays open, other sessions can adopt the same snapshot with
//! `SET TRANSACTION SNAPSHOT`, so every table and every range of a table is read as of the
//! same instant. The leader must outlive the workers: [`ExportedSnapshot`] keeps its session
//! and ends the transaction only in [`ExportedSnapshot::close`] (or when dropped).
//!
//! A snapshot created with a replication slot (`CREATE_REPLICATION_SLOT .. EXPORT_SNAPSHOT`)
//! is joined the same way: [`begin_in_snapshot`] only needs its name.

use tokio_postgres::Client;

use super::{CopyError, Side};
use crate::conn::{connect, ConnConfig, Session};

/// An exported snapshot and the session that keeps it alive.
pub struct ExportedSnapshot {
    session: Session,
    name: String,
}

impl std::fmt::Debug for ExportedSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportedSnapshot")
            .field("name", &self.name)
            .finish()
    }
}

impl ExportedSnapshot {
    /// Connects to the source and exports a snapshot.
    pub async fn export(cfg: &ConnConfig) -> Result<ExportedSnapshot, CopyError> {
        let session = connect(cfg)
            .await
            .map_err(|e| CopyError::new(None, Side::Source, e.to_string()))?;
        let name = Self::export_on(&session.client).await?;
        Ok(ExportedSnapshot { session, name })
    }

    /// Exports a snapshot from an existing session (which then must stay open and idle in its
    /// transaction until the workers are done).
    async fn export_on(client: &Client) -> Result<String, CopyError> {
        let err = |e: tokio_postgres::Error| CopyError::from_pg(None, Side::Source, &e);
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .map_err(err)?;
        let row = client
            .query_one("SELECT pg_export_snapshot()", &[])
            .await
            .map_err(err)?;
        row.try_get::<_, String>(0).map_err(err)
    }

    /// The name workers pass to [`begin_in_snapshot`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The leader's session, for catalog reads in the same snapshot.
    pub fn client(&self) -> &Client {
        &self.session.client
    }

    /// Ends the leader's transaction (the snapshot can no longer be joined) and disconnects.
    pub async fn close(self) -> Result<(), CopyError> {
        let result = self
            .session
            .client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| CopyError::from_pg(None, Side::Source, &e));
        self.session.close().await;
        result
    }
}

/// Settings that make text-format values mean the same thing on both sides, whatever the
/// servers' defaults (as pg_dump sets them): ISO dates cannot be read day-first or month-first
/// by mistake, `postgres` intervals are what every server parses, and floats are printed
/// exactly (PostgreSQL 11 and older round them unless `extra_float_digits` is 3). Worker
/// sessions on both ends run them.
pub const SESSION_SETTINGS: &str =
    "SET datestyle = ISO; SET intervalstyle = postgres; SET extra_float_digits = 3;";

/// Starts a read-only `REPEATABLE READ` transaction on `client` that sees exactly the
/// snapshot `name`, with row-level security off and [`SESSION_SETTINGS`].
///
/// `row_security = off` makes the server raise an error instead of silently filtering rows
/// when a policy applies to this user (as pg_dump does): a copy must be complete or fail.
/// The error names the table, and the copy reports it as a source failure of that table.
pub async fn begin_in_snapshot(client: &Client, name: &str) -> Result<(), CopyError> {
    // Names look like `00000003-0000001B-1`; anything else is refused before it reaches SQL.
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(CopyError::new(
            None,
            Side::Source,
            format!("invalid snapshot name {name:?}"),
        ));
    }
    let sql = format!(
        "SET row_security = off; {SESSION_SETTINGS} \
         BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; \
         SET TRANSACTION SNAPSHOT '{name}'"
    );
    client
        .batch_execute(&sql)
        .await
        .map_err(|e| CopyError::from_pg(None, Side::Source, &e))
}
