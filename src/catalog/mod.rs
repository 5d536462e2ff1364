//! Read-only catalog queries → the typed model in [`model`].
//!
//! One query per object kind, never one per object, so that a database with ten thousand
//! tables is read in a handful of round trips. Queries are chosen by `server_version_num`
//! (PostgreSQL 10 and later); the variants for versions this project cannot test locally are
//! marked "untested" next to the SQL fragment.
//!
//! What is skipped, as pg_dump does: system schemas (`pg_catalog`, `information_schema`,
//! `pg_toast*`, `pg_temp*`), objects created by initdb (oid below 16384, except schema
//! `public`, which is compared with its initial state) and members of extensions.

pub mod acl;
mod extras;
mod index_def;
mod internals;
pub mod model;
mod read;

pub use model::*;

use tokio_postgres::Client;

/// What to read. Kept as a struct so that new switches do not break callers.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog query for {what} failed: {source}")]
    Query {
        what: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("unexpected catalog data for {what}: {detail}")]
    Decode { what: &'static str, detail: String },
    #[error("PostgreSQL server version {0} is not supported (10 or later is needed)")]
    UnsupportedVersion(i32),
}

/// Opens the transaction that [`read_catalog`] expects: REPEATABLE READ, READ ONLY, and, when
/// `snapshot` is given, the exported snapshot (so the schema matches the data copied under it).
pub async fn begin_snapshot_read(
    client: &Client,
    snapshot: Option<&str>,
) -> Result<(), CatalogError> {
    let q = |source| CatalogError::Query {
        what: "begin snapshot transaction",
        source,
    };
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(q)?;
    if let Some(name) = snapshot {
        let sql = format!(
            "SET TRANSACTION SNAPSHOT {}",
            crate::quote::quote_literal(name)
        );
        client.batch_execute(&sql).await.map_err(q)?;
    }
    Ok(())
}

/// Reads the whole schema of the connected database. Meant to run inside a transaction opened
/// by the caller (see [`begin_snapshot_read`]) so all queries see one snapshot; outside one,
/// each query sees its own, which is only safe while no DDL runs. `search_path` is emptied
/// while reading (so every name the server deparses comes back schema-qualified) and restored
/// afterwards.
pub async fn read_catalog(client: &Client, opts: &ReadOptions) -> Result<Catalog, CatalogError> {
    read::read_all(&[client], opts).await
}

/// [`read_catalog`] over several sessions of the same database at once (the first two are
/// used), each already in a transaction on **the same snapshot** (the first exports it with
/// [`export_snapshot`], the others join it with [`begin_snapshot_read`]): the server reads
/// the object kinds on two backends in parallel, which is where most of the time goes.
pub async fn read_catalog_parallel(
    clients: &[&Client],
    opts: &ReadOptions,
) -> Result<Catalog, CatalogError> {
    read::read_all(clients, opts).await
}

/// Exports the snapshot of the transaction `client` has open (see [`begin_snapshot_read`]),
/// for other sessions to read the same state.
pub async fn export_snapshot(client: &Client) -> Result<String, CatalogError> {
    client
        .query_one("SELECT pg_catalog.pg_export_snapshot()", &[])
        .await
        .map(|row| row.get(0))
        .map_err(|source| CatalogError::Query {
            what: "exporting the snapshot",
            source,
        })
}
