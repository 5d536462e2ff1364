//! What verification reads from each server: the tables (with size and columns), the
//! sequences' positions and the large objects' digests. Each function runs on one session
//! and turns failures into [`VerifyError`]s that say which server and which object.

use std::collections::BTreeMap;

use futures::future::try_join_all;
use tokio_postgres::Client;

use super::error::{Side, VerifyError};
use super::plan::{Column, ObjectName};
use super::report::SequenceState;

/// Who we are talking to, for error messages.
#[derive(Clone, Debug)]
pub struct Server {
    pub side: Side,
    /// `user@host:port/db`, no password.
    pub label: String,
}

impl Server {
    pub fn query_error(&self, object: impl Into<String>, e: tokio_postgres::Error) -> VerifyError {
        VerifyError::query(self.side, &self.label, object, e)
    }

    pub fn unexpected(&self, object: impl Into<String>, message: impl Into<String>) -> VerifyError {
        VerifyError::unexpected(self.side, &self.label, object, message)
    }
}

/// Facts about the server that change how we read it.
#[derive(Clone, Copy, Debug)]
pub struct ServerInfo {
    /// `server_version_num`, e.g. 150004.
    pub version_num: i32,
    pub block_size: u64,
}

impl ServerInfo {
    /// TID range scans (`WHERE ctid >= .. AND ctid < ..` read only those blocks) exist since 14.
    pub fn tid_range_scans(&self) -> bool {
        self.version_num >= 140000
    }
}

/// A table with storage: an ordinary table or a partition leaf.
#[derive(Clone, Debug)]
pub struct TableInfo {
    pub name: ObjectName,
    /// `pg_relation_size` of the main fork, to decide whether to split it.
    pub size_bytes: u64,
    pub columns: Vec<Column>,
}

pub async fn server_info(client: &Client, server: &Server) -> Result<ServerInfo, VerifyError> {
    let what = "the server version";
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int4, \
                    current_setting('block_size')::int8",
            &[],
        )
        .await
        .map_err(|e| server.query_error(what, e))?;
    let version_num: i32 = row.try_get(0).map_err(|e| server.query_error(what, e))?;
    let block_size: i64 = row.try_get(1).map_err(|e| server.query_error(what, e))?;
    let block_size = u64::try_from(block_size)
        .map_err(|_| server.unexpected(what, format!("block_size {block_size}")))?;
    Ok(ServerInfo {
        version_num,
        block_size,
    })
}

/// The schemas verification never looks at: the system's, TOAST and temporary ones, and
/// pgferry's own state (apply progress on the target, the DDL capture's key on the source).
const SYSTEM_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgferry') \
     AND n.nspname !~ '^pg_toast' AND n.nspname !~ '^pg_temp_'";

/// Ordinary tables and partition leaves (relkind `r`) outside system schemas and `ignore`;
/// partitioned parents hold no rows of their own, foreign tables and views hold none here, and
/// temporary tables belong to other sessions.
pub async fn tables(
    client: &Client,
    server: &Server,
    ignore: &[String],
) -> Result<Vec<TableInfo>, VerifyError> {
    let what = "the list of tables";
    let sql = format!(
        "SELECT c.oid, n.nspname::text, c.relname::text, pg_relation_size(c.oid) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'r' AND c.relpersistence <> 't' AND {SYSTEM_SCHEMAS} \
           AND n.nspname <> ALL($1::text[]) \
         ORDER BY 2, 3"
    );
    let rows = client
        .query(&sql, &[&ignore])
        .await
        .map_err(|e| server.query_error(what, e))?;
    let mut by_oid: BTreeMap<u32, TableInfo> = BTreeMap::new();
    for row in rows {
        let oid: u32 = row.try_get(0).map_err(|e| server.query_error(what, e))?;
        let schema: String = row.try_get(1).map_err(|e| server.query_error(what, e))?;
        let name: String = row.try_get(2).map_err(|e| server.query_error(what, e))?;
        let size: i64 = row.try_get(3).map_err(|e| server.query_error(what, e))?;
        by_oid.insert(
            oid,
            TableInfo {
                name: ObjectName::new(schema, name),
                size_bytes: u64::try_from(size).unwrap_or(0),
                columns: Vec::new(),
            },
        );
    }
    let what = "the columns of the tables";
    let oids: Vec<u32> = by_oid.keys().copied().collect();
    let rows = client
        .query(
            "SELECT a.attrelid, a.attname::text, format_type(a.atttypid, a.atttypmod) \
             FROM pg_attribute a \
             WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attrelid, a.attnum",
            &[&oids],
        )
        .await
        .map_err(|e| server.query_error(what, e))?;
    for row in rows {
        let oid: u32 = row.try_get(0).map_err(|e| server.query_error(what, e))?;
        let name: String = row.try_get(1).map_err(|e| server.query_error(what, e))?;
        let type_name: String = row.try_get(2).map_err(|e| server.query_error(what, e))?;
        if let Some(t) = by_oid.get_mut(&oid) {
            t.columns.push(Column { name, type_name });
        }
    }
    let mut out: Vec<TableInfo> = by_oid.into_values().collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Every sequence outside system schemas and `ignore`, with its position.
///
/// The position is read from the sequence itself (`SELECT last_value, is_called FROM seq`),
/// not from `pg_sequences`, whose `last_value` is NULL both for "never called" and for "no
/// privilege" and so cannot tell them apart. Needs SELECT (or USAGE) on each sequence.
pub async fn sequences(
    client: &Client,
    server: &Server,
    ignore: &[String],
) -> Result<BTreeMap<ObjectName, SequenceState>, VerifyError> {
    let what = "the list of sequences";
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'S' AND c.relpersistence <> 't' AND {SYSTEM_SCHEMAS} \
           AND n.nspname <> ALL($1::text[])"
    );
    let rows = client
        .query(&sql, &[&ignore])
        .await
        .map_err(|e| server.query_error(what, e))?;
    let mut names = Vec::with_capacity(rows.len());
    for row in rows {
        let schema: String = row.try_get(0).map_err(|e| server.query_error(what, e))?;
        let name: String = row.try_get(1).map_err(|e| server.query_error(what, e))?;
        names.push(ObjectName::new(schema, name));
    }
    // Queries on one client are pipelined: many small reads cost about one round trip.
    let states = try_join_all(names.iter().map(|name| async move {
        let what = format!("sequence {name}");
        let sql = format!("SELECT last_value, is_called FROM {}", name.sql());
        let row = client
            .query_one(&sql, &[])
            .await
            .map_err(|e| server.query_error(what.clone(), e))?;
        let last_value: i64 = row
            .try_get(0)
            .map_err(|e| server.query_error(what.clone(), e))?;
        let is_called: bool = row.try_get(1).map_err(|e| server.query_error(what, e))?;
        Ok::<_, VerifyError>(SequenceState {
            last_value,
            is_called,
        })
    }))
    .await?;
    Ok(names.into_iter().zip(states).collect())
}

/// A large object as compared: its owner and the md5 of its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LargeObjectDigest {
    pub owner: String,
    pub md5: String,
}

/// Every large object by OID. `lo_get` reads each object whole into server memory, so this
/// suits objects up to a few hundred megabytes (1 GB is the hard limit of a `bytea`). Needs
/// SELECT on the objects (a superuser has it, or `lo_compat_privileges`).
pub async fn large_objects(
    client: &Client,
    server: &Server,
) -> Result<BTreeMap<u32, LargeObjectDigest>, VerifyError> {
    let what = "large objects";
    let rows = client
        .query(
            "SELECT m.oid, pg_get_userbyid(m.lomowner)::text, md5(lo_get(m.oid)) \
             FROM pg_largeobject_metadata m",
            &[],
        )
        .await
        .map_err(|e| server.query_error(what, e))?;
    let mut out = BTreeMap::new();
    for row in rows {
        let oid: u32 = row.try_get(0).map_err(|e| server.query_error(what, e))?;
        let owner: String = row.try_get(1).map_err(|e| server.query_error(what, e))?;
        let md5: String = row.try_get(2).map_err(|e| server.query_error(what, e))?;
        out.insert(oid, LargeObjectDigest { owner, md5 });
    }
    Ok(out)
}
