//! One PostgreSQL error for the crate's long-running paths, and the one rule that decides
//! whether trying again can help.
//!
//! A live migration runs for days: the network drops, servers restart, a failover happens.
//! Those are worth waiting for. A refused privilege, a missing table, a slot the server
//! invalidated are not: retrying them for `--retry-for` only hides the cause from the user for
//! ten minutes. So every retry loop asks [`is_transient`], and an error keeps the SQLSTATE the
//! server sent (as [`SqlState`], never a hand-typed string) together with the server's words
//! and what pgferry was doing.
//!
//! **Transient** (invariant: nothing else is): a lost or failed connection (no SQLSTATE, or
//! class 08), administrator or crash shutdown and crash recovery (57P01, 57P02, 57P03), an idle
//! session timeout (57P05), serialization failures and deadlocks (40001, 40P01), too many
//! connections (53300). Everything else is permanent: the database stops at once with the
//! server's message.

use std::fmt;
use thiserror::Error;
pub use tokio_postgres::error::SqlState;

/// Which server an error came from (also verify's "which of the two databases"; JSON
/// `"source"` / `"target"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Source,
    Target,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Target => "target",
        })
    }
}

/// A failed query on one side, with what we were doing and the server's fields.
#[derive(Debug, Error)]
#[error("{side}: {what}: {message}")]
pub struct PgError {
    pub side: Side,
    /// What pgferry was doing ("reading the applied position").
    pub what: String,
    /// The SQLSTATE, when the server answered (none for a lost connection).
    pub code: Option<SqlState>,
    /// The server's message, detail and hint, or the client-side error.
    pub message: String,
    #[source]
    pub source: tokio_postgres::Error,
}

impl PgError {
    pub fn new(side: Side, what: impl Into<String>, source: tokio_postgres::Error) -> PgError {
        PgError {
            side,
            what: what.into(),
            code: source.code().cloned(),
            message: server_message(&source),
            source,
        }
    }

    pub fn is_transient(&self) -> bool {
        is_transient(self.code.as_ref())
    }
}

/// The crate's one rule: may waiting and trying again help with an error of this SQLSTATE?
/// `None` (no answer from the server: the connection broke) is transient.
pub fn is_transient(code: Option<&SqlState>) -> bool {
    let Some(code) = code else {
        return true;
    };
    // Class 08: connection exception (whatever its subclass).
    code.code().starts_with("08")
        || [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::IDLE_SESSION_TIMEOUT,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::TOO_MANY_CONNECTIONS,
        ]
        .contains(code)
}

/// [`is_transient`] for a SQLSTATE received as text (the replication protocol's own client).
pub fn is_transient_text(code: Option<&str>) -> bool {
    is_transient(code.map(SqlState::from_code).as_ref())
}

/// The server's message, detail and hint, or the client-side error text.
pub fn server_message(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => {
            let mut msg = db.message().to_string();
            if let Some(detail) = db.detail() {
                msg.push_str(" (");
                msg.push_str(detail);
                msg.push(')');
            }
            if let Some(hint) = db.hint() {
                msg.push_str("; hint: ");
                msg.push_str(hint);
            }
            msg
        }
        None => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule() {
        assert!(is_transient(None));
        for code in [
            "08006", "08001", "57P01", "57P02", "57P03", "40001", "40P01", "53300",
        ] {
            assert!(is_transient_text(Some(code)), "{code}");
        }
        // Privileges, missing objects, data, an invalidated or busy slot, a full disk.
        for code in [
            "42501", "42P01", "23505", "22P02", "55000", "55006", "53100", "XX000",
        ] {
            assert!(!is_transient_text(Some(code)), "{code}");
        }
    }
}
