//! Our replication slots, one owner: creating them, looking at them and dropping them.
//!
//! - **Creating**: `CREATE_REPLICATION_SLOT` on a replication connection
//!   ([`ReplicationConnection::create_slot`], permanent or temporary, with or without an exported
//!   snapshot); the command's syntax changed in PostgreSQL 15 and is unit tested here.
//! - **Inspecting** (SQL on an ordinary session): whether it exists ([`exists`]), the position
//!   it confirmed ([`confirmed_flush`]), the WAL it retains ([`read_retention`]), who streams
//!   from it ([`holder`]), every slot named like ours on the server ([`pgferry_slots`]) and
//!   the names matching a pattern ([`names_like`], preflight's check for leftovers).
//! - **Dropping**: [`drop`] over SQL, ending the session still holding the slot first (a
//!   killed pgferry whose walsender has not noticed yet), retrying while it goes away; or
//!   `DROP_REPLICATION_SLOT [WAIT]` on a replication connection
//!   ([`ReplicationConnection::drop_slot`]).
//!
//! Slot names are checked against the server's rule before any command is built
//! ([`super::command::check_slot_name`]) and always sent double-quoted (walsender commands) or
//! as parameters / quoted literals (SQL).
//!
//! Reads of `pg_replication_slots` that stay elsewhere, because they are one part of a bigger
//! query answered in the same round trip: `server::inspect` (counts of slots among the
//! server's other facts), the lag query of `follow` (the current WAL insert position with the
//! walsender's `replay_lag`, joined through the slot).

use super::command::{check_slot_name, CommandError};
use super::connection::{ReplicationConnection, ReplicationError};
use super::protocol::Lsn;
use crate::pgerror::SqlState;
use crate::quote::{quote_ident_always as quote_ident, quote_literal};
use std::time::Duration;
use tokio_postgres::Client;

/// A slot query failed; says what we were doing, as the other source-side errors do.
#[derive(Debug, thiserror::Error)]
#[error("source: {what}: {source}")]
pub struct SlotError {
    what: &'static str,
    #[source]
    source: tokio_postgres::Error,
}

impl SlotError {
    fn doing(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> SlotError {
        move |source| SlotError { what, source }
    }

    /// The server's error.
    pub fn pg(&self) -> &tokio_postgres::Error {
        &self.source
    }
}

/// The answer to CREATE_REPLICATION_SLOT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedSlot {
    pub slot_name: String,
    /// The first LSN the slot will stream: every change before it is in the snapshot.
    pub consistent_point: Lsn,
    /// The exported snapshot (`SET TRANSACTION SNAPSHOT '...'`), valid until this connection
    /// runs its next command.
    pub snapshot_name: Option<String>,
}

/// CREATE_REPLICATION_SLOT for pgoutput. `server_major` picks the syntax: the option list
/// `(SNAPSHOT 'export')` exists from PostgreSQL 15, older servers want `EXPORT_SNAPSHOT`.
pub fn create_slot_command(
    name: &str,
    temporary: bool,
    export_snapshot: bool,
    server_major: u32,
) -> Result<String, CommandError> {
    check_slot_name(name)?;
    let temporary = if temporary { " TEMPORARY" } else { "" };
    let snapshot = match (server_major >= 15, export_snapshot) {
        (true, true) => " (SNAPSHOT 'export')",
        (true, false) => " (SNAPSHOT 'nothing')",
        (false, true) => " EXPORT_SNAPSHOT",
        (false, false) => " NOEXPORT_SNAPSHOT",
    };
    Ok(format!(
        "CREATE_REPLICATION_SLOT {}{temporary} LOGICAL pgoutput{snapshot}",
        quote_ident(name)
    ))
}

/// DROP_REPLICATION_SLOT; `WAIT` (wait for an active slot to be released) exists from 13.
pub fn drop_slot_command(
    name: &str,
    wait: bool,
    server_major: u32,
) -> Result<String, CommandError> {
    check_slot_name(name)?;
    let wait = if wait && server_major >= 13 {
        " WAIT"
    } else {
        ""
    };
    Ok(format!("DROP_REPLICATION_SLOT {}{wait}", quote_ident(name)))
}

impl ReplicationConnection {
    /// CREATE_REPLICATION_SLOT for pgoutput. With `export_snapshot`, the returned snapshot can
    /// be imported by other sessions until this connection runs its next command.
    pub async fn create_slot(
        &mut self,
        name: &str,
        temporary: bool,
        export_snapshot: bool,
    ) -> Result<CreatedSlot, ReplicationError> {
        let command = create_slot_command(name, temporary, export_snapshot, self.server_major())?;
        let result = self.single_row(&command).await?;
        let point = result
            .get(0, "consistent_point")
            .ok_or_else(|| ReplicationError::unexpected(&command, "no consistent_point"))?;
        Ok(CreatedSlot {
            slot_name: result.get(0, "slot_name").unwrap_or(name).to_owned(),
            consistent_point: point.parse().map_err(|_| {
                ReplicationError::unexpected(&command, format!("consistent_point {point:?}"))
            })?,
            snapshot_name: result.get(0, "snapshot_name").map(str::to_owned),
        })
    }

    /// DROP_REPLICATION_SLOT; with `wait`, waits for another session to release it.
    pub async fn drop_slot(&mut self, name: &str, wait: bool) -> Result<(), ReplicationError> {
        let command = drop_slot_command(name, wait, self.server_major())?;
        self.simple_query(&command).await.map(std::mem::drop)
    }
}

/// Whether the slot exists (in any database: slot names are cluster-wide).
pub async fn exists(client: &Client, name: &str) -> Result<bool, SlotError> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = $1)",
            &[&name],
        )
        .await
        .map_err(SlotError::doing("looking for the replication slot"))?;
    Ok(row.get(0))
}

/// The slot's `confirmed_flush_lsn`: `None` when the slot does not exist, `Some(None)` when it
/// has confirmed nothing yet.
pub async fn confirmed_flush(
    client: &Client,
    name: &str,
) -> Result<Option<Option<Lsn>>, SlotError> {
    let row = client
        .query_opt(
            "SELECT confirmed_flush_lsn::text FROM pg_catalog.pg_replication_slots \
             WHERE slot_name = $1",
            &[&name],
        )
        .await
        .map_err(SlotError::doing("reading the replication slot"))?;
    Ok(row.map(|r| r.get::<_, Option<String>>(0).and_then(|t| t.parse().ok())))
}

/// How much WAL the slot holds back on the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRetention {
    /// `pg_current_wal_lsn() - restart_lsn`; `None` when the slot has no restart_lsn (lost).
    pub retained_bytes: Option<u64>,
    /// `reserved`, `extended`, `unreserved`, `lost` (PostgreSQL 13+).
    pub wal_status: Option<String>,
    /// Bytes that can still be written before the slot is in danger of being invalidated
    /// (PostgreSQL 13+, only with `max_slot_wal_keep_size` set).
    pub safe_wal_size: Option<i64>,
    /// The server's `max_slot_wal_keep_size` in bytes when it sets one (13+; -1 = unlimited is
    /// reported as `None`).
    pub max_slot_wal_keep_size: Option<u64>,
}

impl SlotRetention {
    /// One line for the log: `slot retains 12.0 MB of WAL on the source (wal_status reserved)`.
    pub fn describe(&self) -> String {
        let size = match self.retained_bytes {
            Some(b) => crate::units::format_size(b),
            None => "no WAL (restart_lsn unset)".into(),
        };
        let mut out = format!("the slot retains {size} of WAL on the source");
        if let Some(status) = &self.wal_status {
            out.push_str(&format!(" (wal_status {status}"));
            if let Some(safe) = self.safe_wal_size {
                out.push_str(&format!(
                    ", {} left before max_slot_wal_keep_size",
                    crate::units::format_size(safe.max(0) as u64)
                ));
            }
            out.push(')');
        }
        out
    }
}

/// Reads the slot's retention; `None` when the slot does not exist.
pub async fn read_retention(
    client: &Client,
    slot: &str,
) -> Result<Option<SlotRetention>, tokio_postgres::Error> {
    let version = crate::compat::server_version_num(client).await?;
    let sql = if version >= 130000 {
        "SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), restart_lsn)::int8, \
                wal_status::text, safe_wal_size::int8, \
                (SELECT setting::int8 FROM pg_catalog.pg_settings WHERE name = 'max_slot_wal_keep_size') \
         FROM pg_catalog.pg_replication_slots WHERE slot_name = $1"
    } else {
        "SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), restart_lsn)::int8, \
                NULL::text, NULL::int8, NULL::int8 \
         FROM pg_catalog.pg_replication_slots WHERE slot_name = $1"
    };
    let Some(row) = client.query_opt(sql, &[&slot]).await? else {
        return Ok(None);
    };
    let retained: Option<i64> = row.get(0);
    let keep_mb: Option<i64> = row.get(3);
    Ok(Some(SlotRetention {
        retained_bytes: retained.map(|b| b.max(0) as u64),
        wal_status: row.get(1),
        safe_wal_size: row.get(2),
        max_slot_wal_keep_size: keep_mb
            .filter(|mb| *mb >= 0)
            .map(|mb| (mb as u64).saturating_mul(1 << 20)),
    }))
}

/// Who streams from a slot, as `pg_replication_slots` and `pg_stat_replication` say.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotHolder {
    /// A process streams from the slot now.
    pub active: bool,
    pub pid: Option<i32>,
    /// Seconds since the holder last answered its walsender.
    pub reply_age_seconds: Option<f64>,
    pub application_name: Option<String>,
    pub client_addr: Option<String>,
    /// The server's `wal_sender_timeout`, as `current_setting` gives it (`60s`).
    pub wal_sender_timeout: String,
}

/// The slot's holder, if the slot exists.
pub async fn holder(
    client: &Client,
    slot: &str,
) -> Result<Option<SlotHolder>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT s.active, s.active_pid, \
                    extract(epoch FROM now() - r.reply_time)::float8, \
                    r.application_name::text, r.client_addr::text, \
                    current_setting('wal_sender_timeout') \
             FROM pg_catalog.pg_replication_slots s \
             LEFT JOIN pg_catalog.pg_stat_replication r ON r.pid = s.active_pid \
             WHERE s.slot_name = $1",
            &[&slot],
        )
        .await?;
    Ok(row.map(|row| SlotHolder {
        active: row.get(0),
        pid: row.get(1),
        reply_age_seconds: row.get(2),
        application_name: row.get(3),
        client_addr: row.get(4),
        wal_sender_timeout: row.get(5),
    }))
}

/// A replication slot named like pgferry's on the source server, with what it retains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftSlot {
    pub slot: String,
    pub database: String,
    /// `pg_current_wal_lsn() - restart_lsn`.
    pub retained_bytes: Option<u64>,
    /// A process streams from it now.
    pub active: bool,
}

/// Every slot on the server `client` is connected to whose name pgferry would give
/// (`pgferry_..._slot`): after a cleanup, what is still there keeps retaining WAL.
pub async fn pgferry_slots(client: &Client) -> Result<Vec<LeftSlot>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT slot_name::text, coalesce(database::text, ''), \
                    pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), restart_lsn)::int8, \
                    active \
             FROM pg_catalog.pg_replication_slots \
             WHERE slot_name::text LIKE 'pgferry\\_%\\_slot' ORDER BY 1",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| LeftSlot {
            slot: r.get(0),
            database: r.get(1),
            retained_bytes: r.get::<_, Option<i64>>(2).map(|b| b.max(0) as u64),
            active: r.get(3),
        })
        .collect())
}

/// The names of the slots matching the `LIKE` pattern `pattern` (any database).
pub async fn names_like(
    client: &Client,
    pattern: &str,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT slot_name::text FROM pg_catalog.pg_replication_slots WHERE slot_name LIKE $1",
            &[&pattern],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Drops the slot if it exists. A session still holding it (a pgferry that was killed or
/// abandoned, whose walsender has not noticed yet) is terminated first: the slot is ours by
/// name, and dropping it means giving up this migration anyway.
pub async fn drop(client: &Client, name: &str) -> Result<(), SlotError> {
    let literal = quote_literal(name);
    let mut tries = 0;
    loop {
        client
            .batch_execute(&format!(
                "SELECT pg_catalog.pg_terminate_backend(active_pid) \
                 FROM pg_catalog.pg_replication_slots \
                 WHERE slot_name = {literal} AND active_pid IS NOT NULL"
            ))
            .await
            .map_err(SlotError::doing(
                "ending the session holding the replication slot",
            ))?;
        let result = client
            .batch_execute(&format!(
                "SELECT pg_catalog.pg_drop_replication_slot(slot_name) \
                 FROM pg_catalog.pg_replication_slots WHERE slot_name = {literal}"
            ))
            .await;
        match result {
            Ok(()) => return Ok(()),
            // 55006: still active (the terminated session is on its way out).
            Err(e) if e.code().is_some_and(|c| *c == SqlState::OBJECT_IN_USE) && tries < 50 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(SlotError::doing("dropping the replication slot")(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_slot_syntax_depends_on_the_version() {
        assert_eq!(
            create_slot_command("s1", false, true, 15).unwrap(),
            "CREATE_REPLICATION_SLOT \"s1\" LOGICAL pgoutput (SNAPSHOT 'export')"
        );
        assert_eq!(
            create_slot_command("s1", true, false, 16).unwrap(),
            "CREATE_REPLICATION_SLOT \"s1\" TEMPORARY LOGICAL pgoutput (SNAPSHOT 'nothing')"
        );
        assert_eq!(
            create_slot_command("s1", false, true, 14).unwrap(),
            "CREATE_REPLICATION_SLOT \"s1\" LOGICAL pgoutput EXPORT_SNAPSHOT"
        );
        assert_eq!(
            create_slot_command("s1", true, false, 10).unwrap(),
            "CREATE_REPLICATION_SLOT \"s1\" TEMPORARY LOGICAL pgoutput NOEXPORT_SNAPSHOT"
        );
    }

    #[test]
    fn slot_names_are_checked() {
        for bad in ["", "Upper", "a-b", "a\"b", "é", &"x".repeat(64)] {
            assert!(create_slot_command(bad, false, false, 15).is_err(), "{bad}");
            assert!(drop_slot_command(bad, false, 15).is_err(), "{bad}");
        }
        assert!(check_slot_name(&"x".repeat(63)).is_ok());
    }

    #[test]
    fn drop_wait_only_where_supported() {
        assert_eq!(
            drop_slot_command("s", true, 15).unwrap(),
            "DROP_REPLICATION_SLOT \"s\" WAIT"
        );
        assert_eq!(
            drop_slot_command("s", true, 12).unwrap(),
            "DROP_REPLICATION_SLOT \"s\""
        );
    }
}
