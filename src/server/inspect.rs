//! Reading a server: version, settings, the connected user's attributes, slots and WAL
//! senders, databases. One short read-only session; shared by `pgferry check` (which prints
//! it) and migrate's preflight (which plans from it).

use super::access;
use crate::conn::{connect, ConnConfig, ConnectError};
use serde::Serialize;
use thiserror::Error;

/// What one server told us.
#[derive(Debug, Clone, Serialize)]
pub struct ServerReport {
    /// "source" or "target": which flag named this server.
    pub role: String,
    /// `user@host:port/dbname`, never with the password.
    pub server: String,
    pub server_version: String,
    pub server_version_num: i32,
    pub tls: Option<TlsReport>,
    pub user: UserReport,
    pub wal_level: String,
    pub max_replication_slots: i32,
    pub used_replication_slots: i64,
    pub max_wal_senders: i32,
    pub used_wal_senders: i64,
    pub databases: Vec<DatabaseReport>,
    /// `max_slot_wal_keep_size` in bytes when the server sets one (PostgreSQL 13+): past it,
    /// the server itself invalidates a slot that falls behind.
    pub max_slot_wal_keep_size: Option<u64>,
    /// Problems that would stop a live (logical replication) migration from this server.
    pub replication_blockers: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TlsReport {
    pub version: String,
    pub cipher: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserReport {
    pub name: String,
    pub superuser: bool,
    pub replication: bool,
    pub createrole: bool,
    pub createdb: bool,
    /// Member of `rds_replication` / `rds_superuser` (Amazon RDS's stand-ins for the attributes).
    pub rds_roles: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatabaseReport {
    pub name: String,
    /// `None` when the user may not connect to it (size unknown).
    pub size_bytes: Option<i64>,
    pub can_connect: bool,
}

#[derive(Debug, Error)]
pub enum CheckError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{server}: query failed while reading {what}: {source}")]
    Query {
        server: String,
        what: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
}

/// Connects to `cfg` and reads the report. `role` is the user-facing name of the server.
pub async fn inspect(role: &str, cfg: &ConnConfig) -> Result<ServerReport, CheckError> {
    let session = connect(cfg).await?;
    let client = &session.client;
    let server = cfg.display_target();
    let query_err = |what: &'static str| {
        let server = format!("{role} ({server})");
        move |source| CheckError::Query {
            server,
            what,
            source,
        }
    };

    let row = client
        .query_one(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int4, \
                    current_setting('wal_level'), current_setting('max_replication_slots')::int4, \
                    current_setting('max_wal_senders')::int4, \
                    (SELECT setting::int8 FROM pg_settings WHERE name = 'max_slot_wal_keep_size')",
            &[],
        )
        .await
        .map_err(query_err("server settings"))?;
    let max_slot_wal_keep_size = row
        .get::<_, Option<i64>>(5)
        .filter(|mb| *mb >= 0)
        .map(|mb| (mb as u64).saturating_mul(1 << 20));
    let server_version: String = row.get(0);
    let server_version_num: i32 = row.get(1);
    let wal_level: String = row.get(2);
    let max_replication_slots: i32 = row.get(3);
    let max_wal_senders: i32 = row.get(4);

    let row = client
        .query_one(
            "SELECT r.rolname::text, r.rolsuper, r.rolreplication, r.rolcreaterole, r.rolcreatedb, \
                    ARRAY(SELECT g.rolname::text FROM pg_roles g \
                          WHERE g.rolname IN ('rds_replication', 'rds_superuser') \
                            AND pg_has_role(r.oid, g.oid, 'MEMBER')) \
             FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await
        .map_err(query_err("the user's attributes"))?;
    let user = UserReport {
        name: row.get(0),
        superuser: row.get(1),
        replication: row.get(2),
        createrole: row.get(3),
        createdb: row.get(4),
        rds_roles: row.get(5),
    };

    // Counting rows works for any user: columns of other sessions are hidden, rows are not.
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM pg_replication_slots), \
                    (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender')",
            &[],
        )
        .await
        .map_err(query_err("replication slots and WAL senders in use"))?;
    let used_replication_slots: i64 = row.get(0);
    let used_wal_senders: i64 = row.get(1);

    let rows = client
        .query(
            "SELECT datname::text, has_database_privilege(oid, 'CONNECT'), \
                    CASE WHEN has_database_privilege(oid, 'CONNECT') THEN pg_database_size(oid) END \
             FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname",
            &[],
        )
        .await
        .map_err(query_err("the list of databases"))?;
    let databases = rows
        .iter()
        .map(|r| DatabaseReport {
            name: r.get(0),
            can_connect: r.get(1),
            size_bytes: r.get(2),
        })
        .collect();

    let tls = session.tls.as_ref().map(|t| TlsReport {
        version: t.version.clone(),
        cipher: t.cipher.clone(),
    });

    let mut report = ServerReport {
        role: role.to_string(),
        server,
        server_version,
        server_version_num,
        tls,
        user,
        wal_level,
        max_replication_slots,
        used_replication_slots,
        max_wal_senders,
        used_wal_senders,
        databases,
        max_slot_wal_keep_size,
        replication_blockers: Vec::new(),
    };
    report.replication_blockers = replication_blockers(&report);
    Ok(report)
}

/// Reasons this server cannot be the source of a logical-replication migration, each with what
/// to do about it. Empty means nothing known stands in the way.
pub fn replication_blockers(r: &ServerReport) -> Vec<String> {
    let mut out = access::cluster_replication_blockers(r);
    if i64::from(r.max_replication_slots) <= r.used_replication_slots {
        out.push(format!(
            "no free replication slot ({} of {} used): raise max_replication_slots (one per migrated database) or drop unused slots",
            r.used_replication_slots, r.max_replication_slots
        ));
    }
    if i64::from(r.max_wal_senders) <= r.used_wal_senders {
        out.push(format!(
            "no free WAL sender ({} of {} used): raise max_wal_senders",
            r.used_wal_senders, r.max_wal_senders
        ));
    }
    out
}
