//! The text of the walsender commands other than the slot's (those are [`super::slot`]'s), the
//! shapes of their answers, and the name rules every command shares.
//!
//! Kept apart from the connection so the exact syntax is unit tested without a server. Slot
//! names are always double-quoted identifiers, publication names are quoted identifiers inside
//! a quoted literal, as the walsender's grammar wants.

use super::protocol::Lsn;
use crate::quote::{quote_ident_always as quote_ident, quote_literal_standard as quote_literal};

/// PostgreSQL's `NAMEDATALEN - 1`: longer slot names are refused by the server.
pub const MAX_SLOT_NAME_LEN: usize = 63;

/// The answer to IDENTIFY_SYSTEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemInfo {
    /// The cluster's unique system identifier (as text: it is a 64-bit number).
    pub systemid: String,
    pub timeline: u32,
    /// The current WAL flush position.
    pub xlogpos: Lsn,
    /// The database of a `replication=database` connection.
    pub dbname: Option<String>,
}

/// Why a command could not be built from the given names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("invalid replication slot name \"{0}\": use 1 to 63 lowercase letters, digits and underscores")]
    SlotName(String),
    #[error("invalid name \"{0}\": names may not contain NUL")]
    Nul(String),
    #[error("proto_version {0} is not supported (1 to 4)")]
    ProtoVersion(u32),
    #[error("streaming needs proto_version 2 or higher (got {0})")]
    StreamingNeedsProto2(u32),
}

/// Slot names follow the server's rule (`ReplicationSlotValidateName`): lowercase letters,
/// digits and underscores, at most 63 bytes. Checking here gives a clear error before any I/O.
pub fn check_slot_name(name: &str) -> Result<(), CommandError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_SLOT_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(CommandError::SlotName(name.to_owned()))
    }
}

fn no_nul(name: &str) -> Result<(), CommandError> {
    if name.contains('\0') {
        Err(CommandError::Nul(name.to_owned()))
    } else {
        Ok(())
    }
}

/// What to ask pgoutput for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartOptions {
    pub proto_version: u32,
    pub publication_names: Vec<String>,
    /// Column values in binary send format (PostgreSQL 14+).
    pub binary: bool,
    /// Stream large in-progress transactions (proto 2+, PostgreSQL 14+).
    pub streaming: bool,
    /// Include `pg_logical_emit_message` messages (PostgreSQL 14+).
    pub messages: bool,
}

/// START_REPLICATION for a logical slot. Options that are off are left out, so the command
/// also works on servers that do not know them.
pub fn start_replication_command(
    slot: &str,
    start: Lsn,
    options: &StartOptions,
) -> Result<String, CommandError> {
    check_slot_name(slot)?;
    if !(1..=4).contains(&options.proto_version) {
        return Err(CommandError::ProtoVersion(options.proto_version));
    }
    if options.streaming && options.proto_version < 2 {
        return Err(CommandError::StreamingNeedsProto2(options.proto_version));
    }
    for name in &options.publication_names {
        no_nul(name)?;
    }
    let publications = options
        .publication_names
        .iter()
        .map(|n| quote_ident(n))
        .collect::<Vec<_>>()
        .join(",");
    let mut parts = vec![
        format!("proto_version '{}'", options.proto_version),
        format!("publication_names {}", quote_literal(&publications)),
    ];
    if options.binary {
        parts.push("binary 'true'".to_owned());
    }
    if options.streaming {
        parts.push("streaming 'on'".to_owned());
    }
    if options.messages {
        parts.push("messages 'true'".to_owned());
    }
    Ok(format!(
        "START_REPLICATION SLOT {} LOGICAL {start} ({})",
        quote_ident(slot),
        parts.join(", ")
    ))
}

/// The major version from `server_version` ("15.8 (Debian 15.8-1)", "9.6.24", "17beta1").
pub fn server_major(server_version: &str) -> Option<u32> {
    let digits: String = server_version
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_replication_quotes_publications() {
        let options = StartOptions {
            proto_version: 2,
            publication_names: vec!["pub".into(), "Odd \"one\"".into(), "it's".into()],
            binary: false,
            streaming: true,
            messages: true,
        };
        assert_eq!(
            start_replication_command("s", "1/2A".parse().unwrap(), &options).unwrap(),
            "START_REPLICATION SLOT \"s\" LOGICAL 1/2A (proto_version '2', \
             publication_names '\"pub\",\"Odd \"\"one\"\"\",\"it''s\"', streaming 'on', \
             messages 'true')"
        );
        let v1 = StartOptions {
            proto_version: 1,
            ..options.clone()
        };
        assert!(start_replication_command("s", Lsn(0), &v1).is_err());
        let v9 = StartOptions {
            proto_version: 9,
            ..options
        };
        assert!(start_replication_command("s", Lsn(0), &v9).is_err());
    }

    #[test]
    fn server_major_reads_all_forms() {
        assert_eq!(server_major("15.8 (Debian 15.8-1.pgdg120+1)"), Some(15));
        assert_eq!(server_major("9.6.24"), Some(9));
        assert_eq!(server_major("17beta1"), Some(17));
        assert_eq!(server_major("x"), None);
    }
}
