//! The state store: everything pgferry keeps in a database between sessions lives in schema
//! `pgferry`, and this module owns it — the schema's creation (one statement,
//! [`ENSURE_SCHEMA_SQL`]), the DDL of every state table, and the advisory-lock keys.
//!
//! ```text
//! target's bootstrap database (the database named in -t):
//!   pgferry.migration, migration_db, migration_table   migrate's state      [migration]
//! every target database that streams:
//!   pgferry.apply_progress, apply_relations            the applier's state  [applier]
//! source databases (event triggers' functions, --ddl-capture's key table): created by
//!   replication::guard and replication::ddl_capture, which start their DDL with ENSURE_SCHEMA_SQL
//! ```
//!
//! Locks (session-level advisory locks, in the database holding the state):
//! - [`RUN_LOCK_KEY`], one key: a running `migrate` holds it in the bootstrap database.
//! - [`APPLIER_LOCK_CLASS`] and `hashtext(slot)`, two keys (a key space apart from the one-key
//!   locks): one applier per slot in the target database ([`applier::lock_applier`]).
//!
//! Invariants: the store imports neither `migrate` nor `replication` (both use it); positions
//! are [`crate::lsn::Lsn`] and relation oids plain `u32`. Creating is idempotent (`IF NOT
//! EXISTS`); schema `pgferry` is dropped only when no table is left in it.

pub mod applier;
pub mod lifecycle;
pub mod migration;

use tokio_postgres::Client;

/// Creates schema `pgferry` if missing: the only statement that creates it. Callers that
/// create objects in it put this first in the same batch, so both commit together.
pub const ENSURE_SCHEMA_SQL: &str = "CREATE SCHEMA IF NOT EXISTS pgferry";

/// Drops schema `pgferry` when no table (or other relation) is left in it.
pub const DROP_SCHEMA_IF_NO_TABLE_SQL: &str =
    "DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c \
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
       WHERE n.nspname = 'pgferry') THEN DROP SCHEMA IF EXISTS pgferry; END IF; END$$";

/// The advisory lock key of a running migration ("pgferry" in ASCII).
pub const RUN_LOCK_KEY: i64 = 0x0070_6766_6572_7279;

/// First key of the applier lock (two-key advisory locks are a key space of their own, apart
/// from migrate's one-key run lock): "pgfa".
pub const APPLIER_LOCK_CLASS: i32 = 0x7067_6661;

/// Creates schema `pgferry` if missing.
pub async fn ensure_schema(client: &Client) -> Result<(), tokio_postgres::Error> {
    client.batch_execute(ENSURE_SCHEMA_SQL).await
}

/// Drops schema `pgferry` of `client`'s database if no table is left in it.
pub async fn drop_schema_if_no_table(client: &Client) -> Result<(), tokio_postgres::Error> {
    client.batch_execute(DROP_SCHEMA_IF_NO_TABLE_SQL).await
}
