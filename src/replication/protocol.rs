//! The replication sub-protocol, sans-IO: what goes on the wire and how to read it back, with no
//! socket in sight. [`super::connection`] owns the socket and calls these functions.
//!
//! Parsing follows postgres-protocol's convention: `Ok(None)` means "not enough bytes yet",
//! `Err` means the bytes can never become a valid message. Encoders append to a caller's
//! [`BytesMut`] so one buffer can batch several messages into one write.
//!
//! postgres-protocol parses the ordinary backend messages but not `CopyBothResponse` (`W`), the
//! answer to `START_REPLICATION`, so [`parse_backend`] peels off `W` and `d` itself (and `E`/`N`,
//! whose fields we keep as plain strings) and hands everything else to
//! [`backend::Message::parse`].

use bytes::{Buf, BufMut, Bytes, BytesMut};
use postgres_protocol::message::{backend, frontend};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// PostgreSQL refuses messages above 1 GiB; a larger length prefix means the stream is corrupt,
/// and we must not try to buffer it.
pub const MAX_MESSAGE_LEN: usize = 1 << 30;

/// Seconds from the Unix epoch to the PostgreSQL epoch (2000-01-01 00:00:00 UTC).
const PG_EPOCH_OFFSET_SECS: u64 = 946_684_800;

pub use crate::lsn::{Lsn, LsnParseError};

/// Microseconds since 2000-01-01 (PostgreSQL's `TimestampTz` on the wire) for `time`.
/// Times before 2000 give negative values; times beyond `i64` saturate.
pub fn pg_timestamp(time: SystemTime) -> i64 {
    let epoch = UNIX_EPOCH + Duration::from_secs(PG_EPOCH_OFFSET_SECS);
    match time.duration_since(epoch) {
        Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_micros())
            .map(|m| -m)
            .unwrap_or(i64::MIN),
    }
}

/// The wall-clock time of a PostgreSQL timestamp (microseconds since 2000-01-01).
pub fn system_time(pg_micros: i64) -> SystemTime {
    let epoch = UNIX_EPOCH + Duration::from_secs(PG_EPOCH_OFFSET_SECS);
    let magnitude = Duration::from_micros(pg_micros.unsigned_abs());
    if pg_micros >= 0 {
        epoch + magnitude
    } else {
        epoch - magnitude
    }
}

/// A framing error: the bytes from the server cannot be a valid message.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("invalid message from the server: {0}")]
    Invalid(String),
    #[error("message of {0} bytes from the server exceeds the 1 GiB limit")]
    TooLong(usize),
}

impl ProtocolError {
    fn invalid(what: impl Into<String>) -> ProtocolError {
        ProtocolError::Invalid(what.into())
    }
}

/// A message from the server, as far as the replication connection cares.
#[non_exhaustive]
pub enum Backend {
    /// The server entered COPY BOTH mode (the answer to `START_REPLICATION`).
    CopyBothResponse,
    /// One CopyData payload (an XLogData or keepalive while streaming).
    CopyData(Bytes),
    /// ErrorResponse.
    Error(ServerMessage),
    /// NoticeResponse (may arrive at any time).
    Notice(ServerMessage),
    /// Everything else, parsed by postgres-protocol.
    Other(backend::Message),
}

/// Takes one complete message off the front of `buf`, or returns `Ok(None)` (and leaves `buf`
/// alone) when it does not hold a whole message yet.
pub fn parse_backend(buf: &mut BytesMut) -> Result<Option<Backend>, ProtocolError> {
    let Some(header) =
        backend::Header::parse(buf).map_err(|e| ProtocolError::invalid(e.to_string()))?
    else {
        return Ok(None);
    };
    // `Header::parse` rejects lengths below 4, so this is non-negative.
    let body_len = usize::try_from(header.len())
        .map_err(|_| ProtocolError::invalid("negative length"))?
        .saturating_sub(4);
    if body_len > MAX_MESSAGE_LEN {
        return Err(ProtocolError::TooLong(body_len));
    }
    let total = body_len + 5;
    match header.tag() {
        b'W' | b'd' | b'E' | b'N' => {
            if buf.len() < total {
                buf.reserve(total - buf.len());
                return Ok(None);
            }
            let mut frame = buf.split_to(total);
            frame.advance(5);
            Ok(Some(match header.tag() {
                b'W' => Backend::CopyBothResponse,
                b'E' => Backend::Error(ServerMessage::parse(&frame)?),
                b'N' => Backend::Notice(ServerMessage::parse(&frame)?),
                _ => Backend::CopyData(frame.freeze()),
            }))
        }
        _ => match backend::Message::parse(buf) {
            Ok(Some(message)) => Ok(Some(Backend::Other(message))),
            Ok(None) => Ok(None),
            Err(e) => Err(ProtocolError::invalid(e.to_string())),
        },
    }
}

/// A CopyData payload while streaming (the "XLogData" and "Primary keepalive" messages of the
/// streaming replication protocol).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CopyPayload {
    XLogData(XLogData),
    Keepalive(Keepalive),
}

/// WAL data: for logical replication, one pgoutput message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XLogData {
    /// Where this data starts in the WAL (0/0 for some logical messages).
    pub wal_start: Lsn,
    /// The server's current end of WAL.
    pub wal_end: Lsn,
    /// When the server sent it (microseconds since 2000-01-01).
    pub send_time: i64,
    pub data: Bytes,
}

/// The server's "I am alive" message; when `reply_requested`, it wants a status update now or
/// it will drop the connection after `wal_sender_timeout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    pub wal_end: Lsn,
    pub send_time: i64,
    pub reply_requested: bool,
}

/// Reads one CopyData payload received while streaming.
pub fn parse_copy_payload(mut payload: Bytes) -> Result<CopyPayload, ProtocolError> {
    let Some(&tag) = payload.first() else {
        return Err(ProtocolError::invalid("empty CopyData message"));
    };
    match tag {
        b'w' => {
            if payload.len() < 25 {
                return Err(ProtocolError::invalid("XLogData message too short"));
            }
            payload.advance(1);
            let wal_start = Lsn(payload.get_u64());
            let wal_end = Lsn(payload.get_u64());
            let send_time = payload.get_i64();
            Ok(CopyPayload::XLogData(XLogData {
                wal_start,
                wal_end,
                send_time,
                data: payload,
            }))
        }
        b'k' => {
            if payload.len() != 18 {
                return Err(ProtocolError::invalid(format!(
                    "keepalive message of {} bytes (expected 18)",
                    payload.len()
                )));
            }
            payload.advance(1);
            let wal_end = Lsn(payload.get_u64());
            let send_time = payload.get_i64();
            let reply_requested = payload.get_u8() != 0;
            Ok(CopyPayload::Keepalive(Keepalive {
                wal_end,
                send_time,
                reply_requested,
            }))
        }
        other => Err(ProtocolError::invalid(format!(
            "unexpected CopyData message type {:?} while streaming",
            char::from(other)
        ))),
    }
}

/// What we tell the server about our progress (the "Standby status update" message).
///
/// - `write`: received and written somewhere (not necessarily durable);
/// - `flush`: durably applied; the server may recycle WAL and advances the slot's
///   `confirmed_flush_lsn` up to here, so this must never run ahead of what the target has committed;
/// - `apply`: applied (for a logical client the same as `flush` in practice).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusUpdate {
    pub write: Lsn,
    pub flush: Lsn,
    pub apply: Lsn,
    /// Our clock, microseconds since 2000-01-01 (see [`pg_timestamp`]).
    pub clock: i64,
    /// Ask the server to answer with a keepalive at once.
    pub reply_requested: bool,
}

/// Appends `update` as a CopyData message to `buf`.
pub fn encode_status_update(update: &StatusUpdate, buf: &mut BytesMut) {
    let mut body = [0u8; 34];
    body[0] = b'r';
    body[1..9].copy_from_slice(&update.write.0.to_be_bytes());
    body[9..17].copy_from_slice(&update.flush.0.to_be_bytes());
    body[17..25].copy_from_slice(&update.apply.0.to_be_bytes());
    body[25..33].copy_from_slice(&update.clock.to_be_bytes());
    body[33] = u8::from(update.reply_requested);
    encode_copy_data(&body, buf);
}

/// Appends a CopyData message carrying `payload` (at most [`MAX_MESSAGE_LEN`] bytes).
pub fn encode_copy_data(payload: &[u8], buf: &mut BytesMut) {
    let len = payload.len().min(MAX_MESSAGE_LEN);
    buf.reserve(5 + len);
    buf.put_u8(b'd');
    // Bounded by MAX_MESSAGE_LEN + 4 < i32::MAX.
    buf.put_i32((len + 4) as i32);
    buf.put_slice(&payload[..len]);
}

/// Appends CopyDone (ends our side of COPY BOTH).
pub fn encode_copy_done(buf: &mut BytesMut) {
    frontend::copy_done(buf);
}

/// Appends Terminate.
pub fn encode_terminate(buf: &mut BytesMut) {
    frontend::terminate(buf);
}

/// Appends SSLRequest.
pub fn encode_ssl_request(buf: &mut BytesMut) {
    frontend::ssl_request(buf);
}

/// Why a frontend message could not be encoded (an embedded NUL, usually).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode {what}: {reason}")]
pub struct EncodeError {
    what: &'static str,
    reason: String,
}

fn encode_error(what: &'static str) -> impl FnOnce(std::io::Error) -> EncodeError {
    move |e| EncodeError {
        what,
        reason: e.to_string(),
    }
}

/// Appends the StartupMessage of a logical replication connection (`replication=database`:
/// replication commands plus SQL in `dbname`).
pub fn encode_startup(
    user: &str,
    dbname: &str,
    application_name: &str,
    options: Option<&str>,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    let mut params = vec![
        ("user", user),
        ("database", dbname),
        ("replication", "database"),
        ("application_name", application_name),
        ("client_encoding", "UTF8"),
    ];
    if let Some(options) = options {
        params.push(("options", options));
    }
    frontend::startup_message(params, buf).map_err(encode_error("the startup message"))
}

/// Appends a simple Query.
pub fn encode_query(sql: &str, buf: &mut BytesMut) -> Result<(), EncodeError> {
    frontend::query(sql, buf).map_err(encode_error("the query"))
}

/// Appends a PasswordMessage (cleartext or md5 answer).
pub fn encode_password(password: &[u8], buf: &mut BytesMut) -> Result<(), EncodeError> {
    frontend::password_message(password, buf).map_err(encode_error("the password message"))
}

/// Appends SASLInitialResponse.
pub fn encode_sasl_initial(
    mechanism: &str,
    data: &[u8],
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    frontend::sasl_initial_response(mechanism, data, buf)
        .map_err(encode_error("the SASL initial response"))
}

/// Appends SASLResponse.
pub fn encode_sasl_response(data: &[u8], buf: &mut BytesMut) -> Result<(), EncodeError> {
    frontend::sasl_response(data, buf).map_err(encode_error("the SASL response"))
}

/// An ErrorResponse or NoticeResponse, every field kept (the codes are those of the protocol's
/// "Error and Notice Message Fields").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerMessage {
    /// `S`/`V`: ERROR, FATAL, WARNING, NOTICE... (`V` is never localized and wins).
    pub severity: String,
    /// `C`: the SQLSTATE.
    pub code: String,
    /// `M`.
    pub message: String,
    /// `D`.
    pub detail: Option<String>,
    /// `H`.
    pub hint: Option<String>,
    /// `W`.
    pub context: Option<String>,
    /// `P`: position in the query (1-based characters), as sent.
    pub position: Option<String>,
    /// `s`, `t`, `c`, `d`, `n`: the object involved.
    pub schema: Option<String>,
    pub table: Option<String>,
    pub column: Option<String>,
    pub datatype: Option<String>,
    pub constraint: Option<String>,
}

impl ServerMessage {
    /// Reads the fields of an ErrorResponse/NoticeResponse body: `(code byte, C string)*` then NUL.
    pub fn parse(body: &[u8]) -> Result<ServerMessage, ProtocolError> {
        let mut out = ServerMessage::default();
        let mut localized_severity = None;
        let mut rest = body;
        loop {
            let Some((&kind, after)) = rest.split_first() else {
                return Err(ProtocolError::invalid("error/notice fields not terminated"));
            };
            if kind == 0 {
                break;
            }
            let nul = after
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(|| ProtocolError::invalid("error/notice field not terminated"))?;
            let value = String::from_utf8_lossy(&after[..nul]).into_owned();
            rest = &after[nul + 1..];
            match kind {
                b'S' => localized_severity = Some(value),
                b'V' => out.severity = value,
                b'C' => out.code = value,
                b'M' => out.message = value,
                b'D' => out.detail = Some(value),
                b'H' => out.hint = Some(value),
                b'W' => out.context = Some(value),
                b'P' => out.position = Some(value),
                b's' => out.schema = Some(value),
                b't' => out.table = Some(value),
                b'c' => out.column = Some(value),
                b'd' => out.datatype = Some(value),
                b'n' => out.constraint = Some(value),
                _ => {}
            }
        }
        if out.severity.is_empty() {
            out.severity = localized_severity.unwrap_or_default();
        }
        Ok(out)
    }
}

impl fmt::Display for ServerMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.severity, self.message)?;
        if !self.code.is_empty() {
            write!(f, " (SQLSTATE {})", self.code)?;
        }
        if let Some(detail) = &self.detail {
            write!(f, "; detail: {}", detail.replace('\n', " "))?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "; hint: {}", hint.replace('\n', " "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_round_trips_in_postgres_form() {
        for (text, value) in [
            ("0/0", 0u64),
            ("16/B374D848", 0x16_B374_D848),
            ("FFFFFFFF/FFFFFFFF", u64::MAX),
            ("0/1", 1),
        ] {
            let lsn: Lsn = text.parse().unwrap();
            assert_eq!(lsn, Lsn(value));
            assert_eq!(lsn.to_string(), text);
        }
        // Lowercase is accepted, printing is uppercase like the server's.
        assert_eq!("a/b".parse::<Lsn>().unwrap().to_string(), "A/B");
        for bad in [
            "",
            "/",
            "1/",
            "/1",
            "1",
            "1/2/3",
            "+1/2",
            "g/0",
            "100000000/0",
            " 1/2",
        ] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?} parsed");
        }
        assert!(Lsn(1) < Lsn(0x1_0000_0000));
    }

    #[test]
    fn timestamps_count_microseconds_from_2000() {
        let y2k = UNIX_EPOCH + Duration::from_secs(PG_EPOCH_OFFSET_SECS);
        assert_eq!(pg_timestamp(y2k), 0);
        assert_eq!(
            pg_timestamp(y2k + Duration::from_micros(1_500_000)),
            1_500_000
        );
        assert_eq!(pg_timestamp(UNIX_EPOCH), -946_684_800_000_000);
        assert_eq!(
            system_time(1_500_000),
            y2k + Duration::from_micros(1_500_000)
        );
        assert_eq!(system_time(-946_684_800_000_000), UNIX_EPOCH);
    }

    #[test]
    fn status_update_layout() {
        let mut buf = BytesMut::new();
        encode_status_update(
            &StatusUpdate {
                write: Lsn(0x0102_0304_0506_0708),
                flush: Lsn(0x10),
                apply: Lsn(0x20),
                clock: -2,
                reply_requested: true,
            },
            &mut buf,
        );
        let mut expected = vec![b'd', 0, 0, 0, 38, b'r'];
        expected.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        expected.extend_from_slice(&0x10u64.to_be_bytes());
        expected.extend_from_slice(&0x20u64.to_be_bytes());
        expected.extend_from_slice(&(-2i64).to_be_bytes());
        expected.push(1);
        assert_eq!(&buf[..], &expected[..]);
    }

    #[test]
    fn keepalive_and_xlogdata_parse() {
        let mut k = vec![b'k'];
        k.extend_from_slice(&0x0000_0001_0000_0002u64.to_be_bytes());
        k.extend_from_slice(&42i64.to_be_bytes());
        k.push(1);
        assert_eq!(
            parse_copy_payload(Bytes::from(k.clone())).unwrap(),
            CopyPayload::Keepalive(Keepalive {
                wal_end: "1/2".parse().unwrap(),
                send_time: 42,
                reply_requested: true
            })
        );
        // Every shorter prefix, and a longer message, is an error rather than a panic.
        for n in 0..k.len() {
            assert!(parse_copy_payload(Bytes::copy_from_slice(&k[..n])).is_err());
        }
        k.push(0);
        assert!(parse_copy_payload(Bytes::from(k)).is_err());

        let mut w = vec![b'w'];
        w.extend_from_slice(&5u64.to_be_bytes());
        w.extend_from_slice(&9u64.to_be_bytes());
        w.extend_from_slice(&7i64.to_be_bytes());
        w.extend_from_slice(b"B...");
        match parse_copy_payload(Bytes::from(w.clone())).unwrap() {
            CopyPayload::XLogData(x) => {
                assert_eq!((x.wal_start, x.wal_end, x.send_time), (Lsn(5), Lsn(9), 7));
                assert_eq!(&x.data[..], b"B...");
            }
            other => panic!("{other:?}"),
        }
        for n in 0..25 {
            assert!(parse_copy_payload(Bytes::copy_from_slice(&w[..n])).is_err());
        }
        assert!(parse_copy_payload(Bytes::from_static(b"x")).is_err());
    }

    #[test]
    fn backend_framing_waits_for_whole_messages() {
        // CopyBothResponse: format 0, no columns; then a CopyData, then ReadyForQuery.
        let mut wire = vec![b'W', 0, 0, 0, 7, 0, 0, 0];
        let notice = b"SNOTICE\0VNOTICE\0C00000\0Mhi\0\0";
        wire.push(b'N');
        wire.extend_from_slice(&(notice.len() as i32 + 4).to_be_bytes());
        wire.extend_from_slice(notice);
        wire.extend_from_slice(&[b'd', 0, 0, 0, 7, b'a', b'b', b'c']);
        wire.extend_from_slice(&[b'Z', 0, 0, 0, 5, b'I']);
        let mut buf = BytesMut::new();
        let mut seen = Vec::new();
        // Feed one byte at a time: every partial state must answer "need more".
        for &b in &wire {
            buf.put_u8(b);
            while let Some(m) = parse_backend(&mut buf).unwrap() {
                seen.push(match m {
                    Backend::CopyBothResponse => "W".to_owned(),
                    Backend::CopyData(d) => format!("d:{}", String::from_utf8_lossy(&d)),
                    Backend::Other(backend::Message::ReadyForQuery(_)) => "Z".to_owned(),
                    Backend::Error(e) => format!("E:{}", e.message),
                    Backend::Notice(n) => format!("N:{}", n.message),
                    Backend::Other(_) => "?".to_owned(),
                });
            }
        }
        assert_eq!(seen, ["W", "N:hi", "d:abc", "Z"]);
        assert!(buf.is_empty());

        let mut bad = BytesMut::from(&[b'd', 0, 0, 0, 3][..]);
        assert!(parse_backend(&mut bad).is_err());
        let mut huge = BytesMut::from(&[b'd', 0x7f, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            parse_backend(&mut huge),
            Err(ProtocolError::TooLong(_))
        ));
    }

    #[test]
    fn error_fields_are_all_kept() {
        let body =
            b"SERREUR\0VERROR\0C42704\0Mreplication slot \"x\" does not exist\0Dmore\0Hdo this\0\0";
        let e = ServerMessage::parse(body).unwrap();
        assert_eq!(e.severity, "ERROR");
        assert_eq!(e.code, "42704");
        assert_eq!(e.detail.as_deref(), Some("more"));
        assert_eq!(
            e.to_string(),
            "ERROR: replication slot \"x\" does not exist (SQLSTATE 42704); detail: more; hint: do this"
        );
        // Missing terminators are errors, at every cut.
        for n in 0..body.len() {
            assert!(ServerMessage::parse(&body[..n]).is_err(), "{n}");
        }
    }

    #[test]
    fn startup_asks_for_a_database_replication_connection() {
        let mut buf = BytesMut::new();
        encode_startup("alice", "app", "pgferry", None, &mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[8..]).into_owned();
        assert!(text.contains("replication\0database\0"), "{text:?}");
        assert!(text.contains("user\0alice\0"));
        assert!(encode_startup("a\0b", "app", "x", None, &mut BytesMut::new()).is_err());
    }
}
