//! "Could not check", as opposed to "differs".
//!
//! A difference between the databases is a finding and goes into the report (see
//! [`super::report`]); the run keeps going so that every difference is listed. A
//! [`VerifyError`] means the verification itself could not be done: a server was unreachable,
//! a table could not be read, the options made no sense. Its message names the side, the
//! server (never the password), the object, and what to do about it.

use tokio_postgres::error::SqlState;

use crate::conn::ConnectError;

pub use crate::pgerror::Side;

/// Why a verification could not be completed. Differences are never errors.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A session to one side could not be opened.
    #[error("{side}: {source}")]
    Connect {
        side: Side,
        #[source]
        source: Box<ConnectError>,
    },
    /// A query on one side failed (boxed: the details are many and errors are rare).
    #[error(transparent)]
    Query(Box<QueryFailure>),
    /// Names given in [`super::VerifyOptions::tables`] that match no table on either side.
    #[error(
        "no table named {} on the source or the target (use schema.table or table, unquoted)",
        .0.join(", ")
    )]
    UnknownTables(Vec<String>),
    /// The options cannot work (e.g. zero jobs).
    #[error("invalid verify options: {0}")]
    InvalidOptions(String),
}

/// A query on one side failed: which side and server, what we were reading, the server's
/// message and what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("{side} {server}: could not check {object}: {message}{}", hint_suffix(.hint))]
pub struct QueryFailure {
    pub side: Side,
    /// `user@host:port/db`, never the password.
    pub server: String,
    /// What we were reading, e.g. `table public.t (blocks 8..16)`.
    pub object: String,
    /// The server's message (or ours, when the answer could not be understood).
    pub message: String,
    pub hint: Option<String>,
    /// The SQLSTATE, when the server sent one.
    pub code: Option<SqlState>,
    #[source]
    pub source: Option<tokio_postgres::Error>,
}

fn hint_suffix(hint: &Option<String>) -> String {
    match hint {
        Some(h) => format!(" (hint: {h})"),
        None => String::new(),
    }
}

impl VerifyError {
    /// Wraps a failed query on `side` while reading `object`, with a hint for the failures a
    /// user can fix (privileges, row-level security, timeouts).
    pub(crate) fn query(
        side: Side,
        server: &str,
        object: impl Into<String>,
        error: tokio_postgres::Error,
    ) -> VerifyError {
        let object = object.into();
        let code = error.code().cloned();
        let (message, server_hint) = match error.as_db_error() {
            Some(db) => {
                let mut m = db.message().to_owned();
                if let Some(detail) = db.detail() {
                    m.push_str(": ");
                    m.push_str(detail);
                }
                (m, db.hint().map(str::to_owned))
            }
            None => (error.to_string(), None),
        };
        let hint = match code.as_ref() {
            Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => Some(privilege_hint(&message)),
            Some(c) if *c == SqlState::QUERY_CANCELED => Some(
                "a statement_timeout or an administrator cancelled the query; \
                 raise the role's statement_timeout or retry"
                    .to_owned(),
            ),
            _ => server_hint,
        };
        VerifyError::Query(Box::new(QueryFailure {
            side,
            server: server.to_owned(),
            object,
            message,
            hint,
            code,
            source: Some(error),
        }))
    }

    /// An answer we could not interpret (a value out of range, an unexpected NULL).
    pub(crate) fn unexpected(
        side: Side,
        server: &str,
        object: impl Into<String>,
        message: impl Into<String>,
    ) -> VerifyError {
        VerifyError::Query(Box::new(QueryFailure {
            side,
            server: server.to_owned(),
            object: object.into(),
            message: message.into(),
            hint: None,
            code: None,
            source: None,
        }))
    }

    /// The side the error happened on, when it belongs to one.
    pub fn side(&self) -> Option<Side> {
        match self {
            VerifyError::Connect { side, .. } => Some(*side),
            VerifyError::Query(q) => Some(q.side),
            _ => None,
        }
    }
}

/// What to do about "permission denied": row-level security needs a different fix than a
/// missing GRANT.
fn privilege_hint(message: &str) -> String {
    if message.contains("row-level security") {
        "verify reads with row_security = off so that policies cannot hide rows; \
         connect as the table owner, a superuser or a role with BYPASSRLS"
            .to_owned()
    } else if message.contains("large object") {
        "connect as a superuser, or grant SELECT on the large objects to this role".to_owned()
    } else {
        "grant SELECT on it to this role, or connect as a role that can read all data \
         (pg_read_all_data on PostgreSQL 14+, or a superuser)"
            .to_owned()
    }
}
