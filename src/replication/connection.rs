//! The async driver: one task owns the socket of a `replication=database` session and turns the
//! sans-IO pieces of [`super::protocol`] into calls.
//!
//! The slot commands (`CREATE_REPLICATION_SLOT`, `DROP_REPLICATION_SLOT`) are methods of the
//! connection written in [`super::slot`], the slots' one owner; the others' text is
//! [`super::command`].
//!
//! Connecting mirrors [`crate::conn::connect()`] (which tokio-postgres cannot do for us here: it
//! has no replication mode and no COPY BOTH): the same [`ConnConfig`], the same rustls
//! configuration from [`crate::conn::tls::client_config`], and the same order of plain and TLS
//! attempts per `sslmode` ([`crate::conn::attempts`]); an attempt here is socket, SSLRequest
//! (`N` plain for `prefer`, an error for `require`), handshake and authentication. Unix sockets:
//! never TLS.
//!
//! Authentication: trust, cleartext, md5, SCRAM-SHA-256 and, over TLS, SCRAM-SHA-256-PLUS with
//! `tls-server-end-point` channel binding. `channel_binding=require` fails unless the server
//! actually authenticated us with SCRAM-SHA-256-PLUS. Passwords only ever go into the
//! authentication messages; no error or log line contains them.
//!
//! All reads are cancel-safe (bytes read stay in our buffer), so [`ReplicationStream::next_event`]
//! can sit in a `tokio::select!` next to a timer.

use super::command::{self, CommandError, StartOptions, SystemInfo};
use super::protocol::{
    self, parse_backend, parse_copy_payload, Backend, CopyPayload, Lsn, ProtocolError,
    ServerMessage, StatusUpdate,
};
use crate::conn::attempts::{tls_then_plain, with_sslmode, AttemptFailure, TlsAttempt};
use crate::conn::connect::{ConnectErrorKind, DEFAULT_APPLICATION_NAME};
use crate::conn::{tls, ChannelBinding, ConnConfig, Host};
use crate::pgerror::SqlState;
use bytes::{Bytes, BytesMut};
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::{md5_hash, sasl};
use postgres_protocol::message::backend::Message;
use rustls::pki_types::ServerName;
use sha2::Digest;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

/// Everything that can go wrong on a replication connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicationError {
    /// Connecting or authenticating failed. `reason` is one line in the server's words when it
    /// said something; it never holds the password.
    #[error("could not open a replication connection to {target}: {reason}")]
    Connect {
        kind: ConnectErrorKind,
        target: String,
        reason: String,
        /// The SQLSTATE when the server refused.
        code: Option<String>,
    },
    /// The server answered a command with an ErrorResponse (the connection is still usable,
    /// except while streaming).
    #[error("the server refused {command}: {error}")]
    Server {
        command: String,
        /// Boxed: every field of the server's message, kept off the error's happy path size.
        error: Box<ServerMessage>,
    },
    #[error("replication connection I/O error: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error(transparent)]
    Encode(#[from] protocol::EncodeError),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("the server closed the replication connection")]
    Closed,
    #[error("unexpected answer to {command}: {what}")]
    Unexpected { command: String, what: String },
}

impl ReplicationError {
    /// The SQLSTATE, when the server reported the error.
    pub fn code(&self) -> Option<&str> {
        match self {
            ReplicationError::Server { error, .. } => Some(&error.code),
            ReplicationError::Connect { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// Whether reconnecting may help ([`crate::pgerror::is_transient`]): the connection broke,
    /// or the server answered with a transient SQLSTATE. A slot in use by another process
    /// (55006), an invalidated slot (55000), a refused privilege are permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            ReplicationError::Connect { kind, code, .. } => match kind {
                ConnectErrorKind::Unreachable | ConnectErrorKind::Other => true,
                ConnectErrorKind::Rejected => {
                    code.is_some() && crate::pgerror::is_transient_text(code.as_deref())
                }
                _ => false,
            },
            ReplicationError::Server { error, .. } => {
                crate::pgerror::is_transient_text(Some(&error.code))
            }
            ReplicationError::Io(_) | ReplicationError::Closed => true,
            ReplicationError::Protocol(_)
            | ReplicationError::Encode(_)
            | ReplicationError::Command(_)
            | ReplicationError::Unexpected { .. } => false,
        }
    }

    /// The slot named in the command does not exist (SQLSTATE 42704).
    pub fn is_missing_slot(&self) -> bool {
        self.code() == Some(SqlState::UNDEFINED_OBJECT.code())
    }

    pub(super) fn unexpected(command: &str, what: impl Into<String>) -> ReplicationError {
        ReplicationError::Unexpected {
            command: short(command),
            what: what.into(),
        }
    }
}

/// Commands in error messages are cut short: they are ours, but a user query may be long.
fn short(command: &str) -> String {
    const LIMIT: usize = 120;
    match command.char_indices().nth(LIMIT) {
        Some((at, _)) => format!("\"{}...\"", &command[..at]),
        None => format!("\"{command}\""),
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The rows of one statement run with [`ReplicationConnection::simple_query`], as text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
    /// The CommandComplete tag (`SELECT 1`, `CREATE_REPLICATION_SLOT`...).
    pub tag: String,
}

impl QueryResult {
    /// The value of `column` in row `row`, if both exist and it is not NULL.
    pub fn get(&self, row: usize, column: &str) -> Option<&str> {
        let index = self.columns.iter().position(|c| c == column)?;
        self.rows.get(row)?.get(index)?.as_deref()
    }
}

/// An open `replication=database` session, idle (not streaming).
pub struct ReplicationConnection {
    io: Box<dyn Io>,
    /// Read pacing while streaming (TCP only; see [`Pacing`]).
    pacing: Option<Pacing>,
    read_buf: BytesMut,
    write_buf: BytesMut,
    parameters: Vec<(String, String)>,
    tls: bool,
    target: String,
}

impl fmt::Debug for ReplicationConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicationConnection")
            .field("target", &self.target)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// A failed attempt, before it becomes a [`ReplicationError::Connect`].
struct Failure {
    kind: ConnectErrorKind,
    reason: String,
    code: Option<String>,
    /// The server answered `N` to the SSLRequest.
    server_lacks_tls: bool,
}

impl Failure {
    fn new(kind: ConnectErrorKind, reason: impl Into<String>) -> Failure {
        Failure {
            kind,
            reason: reason.into(),
            code: None,
            server_lacks_tls: false,
        }
    }

    fn from_server(error: ServerMessage) -> Failure {
        let kind = if error.code == SqlState::INVALID_PASSWORD.code() {
            ConnectErrorKind::Authentication
        } else {
            ConnectErrorKind::Rejected
        };
        let mut reason = error.message.clone();
        if let Some(detail) = &error.detail {
            reason.push_str(&format!(" ({})", detail.replace('\n', " ")));
        }
        Failure {
            kind,
            reason,
            code: Some(error.code),
            server_lacks_tls: false,
        }
    }

    fn from_error(error: ReplicationError) -> Failure {
        match error {
            ReplicationError::Io(e) => Failure::new(ConnectErrorKind::Other, e.to_string()),
            ReplicationError::Closed => Failure::new(
                ConnectErrorKind::Other,
                "the server closed the connection during startup",
            ),
            other => Failure::new(ConnectErrorKind::Other, other.to_string()),
        }
    }
}

impl AttemptFailure for Failure {
    fn kind(&self) -> ConnectErrorKind {
        self.kind
    }

    fn server_lacks_tls(&self) -> bool {
        self.server_lacks_tls
    }

    fn after_tls_failure(self, tls_failure: Failure) -> Failure {
        Failure {
            reason: tls_then_plain(&tls_failure.reason, &self.reason),
            ..self
        }
    }
}

impl ReplicationConnection {
    /// Opens a logical replication session to `cfg` (see the module docs for TLS and
    /// authentication).
    pub async fn connect(cfg: &ConnConfig) -> Result<ReplicationConnection, ReplicationError> {
        let target = cfg.display_target();
        let wrap = |f: Failure| ReplicationError::Connect {
            kind: f.kind,
            target: target.clone(),
            reason: f.reason,
            code: f.code,
        };
        let tls_config = tls::client_config(cfg)
            .map_err(|e| wrap(Failure::new(ConnectErrorKind::Setup, e.to_string())))?;
        with_sslmode(cfg.sslmode, tls_config.is_some(), |wish| {
            attempt(cfg, tls_config.clone(), wish, &target)
        })
        .await
        .map_err(wrap)
    }

    /// A server parameter reported at startup or later (`server_version`, `integer_datetimes`...).
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The server's major version (from `server_version`), 0 if it did not say.
    pub fn server_major(&self) -> u32 {
        self.parameter("server_version")
            .and_then(command::server_major)
            .unwrap_or(0)
    }

    /// Whether the session is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// IDENTIFY_SYSTEM.
    pub async fn identify_system(&mut self) -> Result<SystemInfo, ReplicationError> {
        const COMMAND: &str = "IDENTIFY_SYSTEM";
        let result = self.single_row(COMMAND).await?;
        let field = |name: &str| {
            result
                .get(0, name)
                .ok_or_else(|| ReplicationError::unexpected(COMMAND, format!("no {name} column")))
        };
        let timeline = field("timeline")?;
        let xlogpos = field("xlogpos")?;
        Ok(SystemInfo {
            systemid: field("systemid")?.to_owned(),
            timeline: timeline.parse().map_err(|_| {
                ReplicationError::unexpected(COMMAND, format!("timeline {timeline:?}"))
            })?,
            xlogpos: xlogpos.parse().map_err(|_| {
                ReplicationError::unexpected(COMMAND, format!("xlogpos {xlogpos:?}"))
            })?,
            dbname: result.get(0, "dbname").map(str::to_owned),
        })
    }

    /// Runs `sql` with the simple query protocol (replication commands, `SHOW`, or SQL: this
    /// is a `replication=database` session) and returns each statement's rows as text.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<QueryResult>, ReplicationError> {
        protocol::encode_query(sql, &mut self.write_buf)?;
        self.flush().await?;
        let mut results = Vec::new();
        let mut current = QueryResult::default();
        let mut failure = None;
        loop {
            match self.read().await? {
                Backend::Error(error) => {
                    failure = Some(ReplicationError::Server {
                        command: short(sql),
                        error: Box::new(error),
                    })
                }
                Backend::Other(Message::RowDescription(body)) => {
                    current.columns = body
                        .fields()
                        .map(|f| Ok(f.name().to_owned()))
                        .collect()
                        .map_err(|e: io::Error| ReplicationError::unexpected(sql, e.to_string()))?;
                }
                Backend::Other(Message::DataRow(body)) => {
                    let buf = body.buffer();
                    let row = body
                        .ranges()
                        .map(|range| {
                            Ok(range.map(|r| String::from_utf8_lossy(&buf[r]).into_owned()))
                        })
                        .collect()
                        .map_err(|e: io::Error| ReplicationError::unexpected(sql, e.to_string()))?;
                    current.rows.push(row);
                }
                Backend::Other(Message::CommandComplete(body)) => {
                    current.tag = body.tag().unwrap_or_default().to_owned();
                    results.push(std::mem::take(&mut current));
                }
                Backend::Other(Message::EmptyQueryResponse) => {}
                Backend::Other(Message::ReadyForQuery(_)) => break,
                // A COPY started by the query: we cannot take part in it.
                Backend::Other(Message::CopyOutResponse(_) | Message::CopyInResponse(_))
                | Backend::CopyBothResponse => {
                    return Err(ReplicationError::unexpected(
                        sql,
                        "a COPY started; use start_replication for streaming",
                    ))
                }
                Backend::CopyData(_) => {}
                Backend::Other(_) => {}
                Backend::Notice(_) => {}
            }
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(results),
        }
    }

    /// START_REPLICATION: the server streams pgoutput messages for `slot` from `start`
    /// (`Lsn::INVALID` = where the slot stands). The connection becomes the stream; get it
    /// back with [`ReplicationStream::stop`].
    #[allow(clippy::too_many_arguments)]
    pub async fn start_replication(
        self,
        slot_name: &str,
        start: Lsn,
        publication_names: &[String],
        proto_version: u32,
        binary: bool,
        streaming: bool,
        messages: bool,
    ) -> Result<ReplicationStream, ReplicationError> {
        let options = StartOptions {
            proto_version,
            publication_names: publication_names.to_vec(),
            binary,
            streaming,
            messages,
        };
        self.start_with(slot_name, start, &options).await
    }

    /// [`Self::start_replication`] with the options as a struct.
    pub async fn start_with(
        mut self,
        slot_name: &str,
        start: Lsn,
        options: &StartOptions,
    ) -> Result<ReplicationStream, ReplicationError> {
        let command = command::start_replication_command(slot_name, start, options)?;
        protocol::encode_query(&command, &mut self.write_buf)?;
        self.flush().await?;
        loop {
            match self.read().await? {
                Backend::CopyBothResponse => {
                    if let Some(pacing) = self.pacing.as_mut() {
                        pacing.streaming = true;
                    }
                    return Ok(ReplicationStream {
                        conn: self,
                        server_done: false,
                    });
                }
                Backend::Error(error) => {
                    // The server follows with ReadyForQuery; leave the session tidy.
                    self.drain_to_ready().await?;
                    return Err(ReplicationError::Server {
                        command: short(&command),
                        error: Box::new(error),
                    });
                }
                Backend::Notice(_) | Backend::Other(Message::ParameterStatus(_)) => {}
                Backend::Other(_) | Backend::CopyData(_) => {
                    return Err(ReplicationError::unexpected(
                        &command,
                        "no CopyBothResponse",
                    ))
                }
            }
        }
    }

    /// Sends Terminate and closes the socket.
    pub async fn close(mut self) -> Result<(), ReplicationError> {
        protocol::encode_terminate(&mut self.write_buf);
        self.flush().await?;
        self.io.shutdown().await?;
        Ok(())
    }

    pub(super) async fn single_row(
        &mut self,
        command: &str,
    ) -> Result<QueryResult, ReplicationError> {
        let mut results = self.simple_query(command).await?;
        match results.pop() {
            Some(r) if results.is_empty() && r.rows.len() == 1 => Ok(r),
            _ => Err(ReplicationError::unexpected(command, "expected one row")),
        }
    }

    async fn drain_to_ready(&mut self) -> Result<(), ReplicationError> {
        loop {
            if let Backend::Other(Message::ReadyForQuery(_)) = self.read().await? {
                return Ok(());
            }
        }
    }

    async fn flush(&mut self) -> Result<(), ReplicationError> {
        self.io.write_all(&self.write_buf).await?;
        self.write_buf.clear();
        self.io.flush().await?;
        Ok(())
    }

    /// The next message; notices are logged and ParameterStatus recorded on the way.
    /// Cancel-safe: a partial message stays in `read_buf`.
    async fn read(&mut self) -> Result<Backend, ReplicationError> {
        loop {
            if let Some(message) = self.read_buffered()? {
                return Ok(message);
            }
            if self.read_buf.capacity() - self.read_buf.len() < 4096 {
                self.read_buf.reserve(64 * 1024);
            }
            let read = self.io.read_buf(&mut self.read_buf);
            let n = match self.pacing.as_mut().filter(|p| p.gathering) {
                Some(pacing) => match tokio::time::timeout(GATHER_WAIT, read).await {
                    Ok(n) => n?,
                    Err(_) => {
                        // The stream slowed down: be woken by every byte again.
                        pacing.stop_gathering();
                        continue;
                    }
                },
                None => read.await?,
            };
            if n == 0 {
                return Err(ReplicationError::Closed);
            }
            if let Some(pacing) = self.pacing.as_mut().filter(|p| p.streaming) {
                pacing.after_read();
            }
        }
    }

    /// The next message if a whole one is already buffered (no I/O).
    fn read_buffered(&mut self) -> Result<Option<Backend>, ReplicationError> {
        match parse_backend(&mut self.read_buf)? {
            Some(Backend::Notice(notice)) => {
                tracing::info!(target: "pgferry::replication", "server notice: {notice}");
                Ok(Some(Backend::Notice(notice)))
            }
            Some(Backend::Other(Message::ParameterStatus(body))) => {
                if let (Ok(name), Ok(value)) = (body.name(), body.value()) {
                    let (name, value) = (name.to_owned(), value.to_owned());
                    match self.parameters.iter_mut().find(|(n, _)| *n == name) {
                        Some(slot) => slot.1 = value,
                        None => self.parameters.push((name, value)),
                    }
                }
                Ok(Some(Backend::Other(Message::ParameterStatus(body))))
            }
            other => Ok(other),
        }
    }
}

/// While streaming, how long a read waits for [`GATHER_BYTES`] before taking what there is.
const GATHER_WAIT: Duration = Duration::from_millis(10);
/// Bytes the socket gathers before it wakes the reader, during a burst (`SO_RCVLOWAT`).
const GATHER_BYTES: i32 = 64 * 1024;
/// A burst: this many socket reads within [`BURST_WINDOW`].
const BURST_READS: u32 = 64;
const BURST_WINDOW: Duration = Duration::from_millis(10);

/// Read pacing for a streaming TCP connection.
///
/// A walsender sends every pgoutput message with a send() of its own. A reader that keeps
/// up is woken for each one: one read per message on our side, and on the server each send
/// has to wake us up as well. During a backlog drain (one million inserts) that doubled the
/// walsender's CPU time, which bounds the drain. So once reads come in a rush, the socket is
/// told to wake us only when [`GATHER_BYTES`] have arrived (`SO_RCVLOWAT`), with a
/// [`GATHER_WAIT`] deadline so that the tail of a burst, a lone transaction or a keepalive is
/// never held back for longer; lowering the mark makes the kernel report the socket readable
/// again at once. Measured on loopback (examples/stream_floor.rs, 1M-row backlog): walsender
/// CPU 12–14 s without pacing, 6.2 s with it; the 64 KiB mark did best (32 KiB and 128 KiB
/// helped less), and a 2 ms deadline was too short (a burst kept falling out of gathering).
#[derive(Debug)]
struct Pacing {
    fd: std::os::fd::RawFd,
    /// Set by START_REPLICATION: commands before it are left alone.
    streaming: bool,
    gathering: bool,
    window_start: Instant,
    window_reads: u32,
}

impl Pacing {
    fn new(fd: std::os::fd::RawFd) -> Pacing {
        Pacing {
            fd,
            streaming: false,
            gathering: false,
            window_start: Instant::now(),
            window_reads: 0,
        }
    }

    fn after_read(&mut self) {
        if self.gathering {
            return;
        }
        self.window_reads += 1;
        if self.window_start.elapsed() >= BURST_WINDOW {
            let burst = self.window_reads >= BURST_READS;
            self.window_start = Instant::now();
            self.window_reads = 0;
            if burst && self.set_low_water(GATHER_BYTES) {
                self.gathering = true;
            }
        }
    }

    fn stop_gathering(&mut self) {
        self.gathering = false;
        self.window_start = Instant::now();
        self.window_reads = 0;
        // If this fails the mark stays high and every read waits its deadline: slower, but
        // nothing is lost. Stop pacing altogether then.
        if !self.set_low_water(1) {
            self.streaming = false;
        }
    }

    fn set_low_water(&self, bytes: i32) -> bool {
        // SAFETY: `fd` is the connection's own open TCP socket (it lives as long as `self`,
        // which its connection owns), and the option value is a plain int of the size given.
        let rc = unsafe {
            libc::setsockopt(
                self.fd,
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                (&bytes as *const i32).cast::<libc::c_void>(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            )
        };
        rc == 0
    }
}

/// One message of the replication stream.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplicationEvent {
    /// WAL data: one pgoutput message in `data` (decode with [`super::pgoutput::decode`]).
    XLogData {
        wal_start: Lsn,
        wal_end: Lsn,
        /// Server clock, microseconds since 2000-01-01.
        send_time: i64,
        data: Bytes,
    },
    /// The server is alive; with `reply_requested`, answer with [`ReplicationStream::send_status`]
    /// soon or it drops the connection after `wal_sender_timeout`.
    Keepalive {
        wal_end: Lsn,
        send_time: i64,
        reply_requested: bool,
    },
}

/// A connection in COPY BOTH mode after START_REPLICATION.
#[derive(Debug)]
pub struct ReplicationStream {
    conn: ReplicationConnection,
    /// The server sent CopyDone (it ended streaming on its side).
    server_done: bool,
}

impl ReplicationStream {
    /// The next event; `Ok(None)` when the server ended the stream (then call [`Self::stop`]).
    /// Cancel-safe.
    pub async fn next_event(&mut self) -> Result<Option<ReplicationEvent>, ReplicationError> {
        loop {
            if let Some(event) = self.buffered_event()? {
                return Ok(Some(event));
            }
            if self.server_done {
                return Ok(None);
            }
            let message = self.conn.read().await?;
            if let Some(event) = self.event(message)? {
                return Ok(Some(event));
            }
        }
    }

    /// The next event if a whole one is already buffered, without waiting for the network:
    /// after [`Self::next_event`], a caller drains what one socket read brought in, so that
    /// the rest of the pipeline handles messages in batches rather than one wake-up each.
    pub fn buffered_event(&mut self) -> Result<Option<ReplicationEvent>, ReplicationError> {
        while !self.server_done {
            let Some(message) = self.conn.read_buffered()? else {
                return Ok(None);
            };
            if let Some(event) = self.event(message)? {
                return Ok(Some(event));
            }
        }
        Ok(None)
    }

    /// One backend message while streaming: an event, nothing (notices, parameters, the
    /// server's CopyDone), or an error.
    fn event(&mut self, message: Backend) -> Result<Option<ReplicationEvent>, ReplicationError> {
        match message {
            Backend::CopyData(payload) => Ok(Some(match parse_copy_payload(payload)? {
                CopyPayload::XLogData(x) => ReplicationEvent::XLogData {
                    wal_start: x.wal_start,
                    wal_end: x.wal_end,
                    send_time: x.send_time,
                    data: x.data,
                },
                CopyPayload::Keepalive(k) => ReplicationEvent::Keepalive {
                    wal_end: k.wal_end,
                    send_time: k.send_time,
                    reply_requested: k.reply_requested,
                },
            })),
            Backend::Other(Message::CopyDone) => {
                self.server_done = true;
                Ok(None)
            }
            Backend::Error(error) => Err(ReplicationError::Server {
                command: "START_REPLICATION".to_owned(),
                error: Box::new(error),
            }),
            Backend::Notice(_) | Backend::Other(Message::ParameterStatus(_)) => Ok(None),
            _ => Err(ReplicationError::unexpected(
                "START_REPLICATION",
                "a message other than CopyData while streaming",
            )),
        }
    }

    /// Sends a Standby status update with our clock (see [`StatusUpdate`] for what the three
    /// positions promise the server).
    pub async fn send_status(
        &mut self,
        write: Lsn,
        flush: Lsn,
        apply: Lsn,
        reply_requested: bool,
    ) -> Result<(), ReplicationError> {
        let update = StatusUpdate {
            write,
            flush,
            apply,
            clock: protocol::pg_timestamp(SystemTime::now()),
            reply_requested,
        };
        protocol::encode_status_update(&update, &mut self.conn.write_buf);
        self.conn.flush().await
    }

    /// Ends streaming: sends CopyDone, skips what the server still had in flight, and waits
    /// for ReadyForQuery. The connection can then run commands again (e.g. drop the slot).
    pub async fn stop(mut self) -> Result<ReplicationConnection, ReplicationError> {
        if let Some(pacing) = self.conn.pacing.as_mut() {
            if pacing.gathering {
                pacing.stop_gathering();
            }
            pacing.streaming = false;
        }
        protocol::encode_copy_done(&mut self.conn.write_buf);
        self.conn.flush().await?;
        let mut failure = None;
        loop {
            match self.conn.read().await? {
                Backend::Other(Message::ReadyForQuery(_)) => break,
                Backend::Error(error) => {
                    failure = Some(ReplicationError::Server {
                        command: "CopyDone".to_owned(),
                        error: Box::new(error),
                    })
                }
                // In-flight data, the server's CopyDone, CommandComplete: nothing to keep.
                _ => {}
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(self.conn),
        }
    }
}

/// One connection attempt with one TLS choice, bounded by `connect_timeout` as a whole.
async fn attempt(
    cfg: &ConnConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    wish: TlsAttempt,
    target: &str,
) -> Result<ReplicationConnection, Failure> {
    let work = attempt_inner(cfg, tls, wish, target);
    match cfg.connect_timeout {
        Some(limit) => match tokio::time::timeout(limit, work).await {
            Ok(result) => result,
            Err(_) => Err(Failure::new(
                ConnectErrorKind::Unreachable,
                format!("no answer within {} s", limit.as_secs_f64()),
            )),
        },
        None => work.await,
    }
}

async fn attempt_inner(
    cfg: &ConnConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    wish: TlsAttempt,
    target: &str,
) -> Result<ReplicationConnection, Failure> {
    // (socket, channel binding data, encrypted)
    let socket = socket(cfg).await?;
    let raw_fd = match &socket {
        Socket::Tcp(tcp) => Some(std::os::fd::AsRawFd::as_raw_fd(tcp)),
        Socket::Unix(_) => None,
    };
    let (io, channel_binding, tls_used): (Box<dyn Io>, Option<Vec<u8>>, bool) = match socket {
        Socket::Unix(s) => (Box::new(s), None, false),
        Socket::Tcp(mut tcp) => match (wish, tls) {
            (TlsAttempt::Plain, _) | (_, None) => (Box::new(tcp), None, false),
            (_, Some(tls)) => {
                if negotiate_tls(&mut tcp).await? {
                    let name = server_name(cfg)?;
                    let stream = tokio_rustls::TlsConnector::from(tls)
                        .connect(name, tcp)
                        .await
                        .map_err(|e| {
                            Failure::new(
                                ConnectErrorKind::Tls,
                                format!("TLS handshake failed: {}", tls_reason(&e)),
                            )
                        })?;
                    let binding = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|certs| certs.first())
                        .and_then(|cert| tls_server_end_point(cert.as_ref()));
                    (Box::new(stream), binding, true)
                } else if wish == TlsAttempt::Prefer {
                    (Box::new(tcp), None, false)
                } else {
                    return Err(Failure {
                        server_lacks_tls: true,
                        ..Failure::new(
                            ConnectErrorKind::Tls,
                            format!(
                                "the server does not support SSL/TLS, but sslmode={} requires it",
                                cfg.sslmode
                            ),
                        )
                    });
                }
            }
        },
    };
    let mut conn = ReplicationConnection {
        io,
        pacing: raw_fd.map(Pacing::new),
        read_buf: BytesMut::with_capacity(64 * 1024),
        write_buf: BytesMut::with_capacity(1024),
        parameters: Vec::new(),
        tls: tls_used,
        target: target.to_owned(),
    };
    startup(&mut conn, cfg, channel_binding).await?;
    Ok(conn)
}

enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

async fn socket(cfg: &ConnConfig) -> Result<Socket, Failure> {
    let unreachable = |at: String, e: io::Error| {
        Failure::new(
            ConnectErrorKind::Unreachable,
            format!("could not connect to {at}: {e}"),
        )
    };
    if let (Host::Unix(dir), None) = (&cfg.host, cfg.hostaddr) {
        let path = dir.join(format!(".s.PGSQL.{}", cfg.port));
        return UnixStream::connect(&path)
            .await
            .map(Socket::Unix)
            .map_err(|e| unreachable(path.display().to_string(), e));
    }
    let addrs: Vec<SocketAddr> = match (cfg.hostaddr, &cfg.host) {
        (Some(ip), _) => vec![SocketAddr::new(ip, cfg.port)],
        (None, Host::Tcp(host)) => tokio::net::lookup_host((host.as_str(), cfg.port))
            .await
            .map_err(|e| {
                Failure::new(
                    ConnectErrorKind::Unreachable,
                    format!("could not resolve host name \"{host}\": {e}"),
                )
            })?
            .collect(),
        (None, Host::Unix(_)) => Vec::new(),
    };
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                // Status updates are small and time-sensitive.
                let _ = stream.set_nodelay(true);
                return Ok(Socket::Tcp(stream));
            }
            Err(e) => last = Some(unreachable(addr.to_string(), e)),
        }
    }
    Err(last.unwrap_or_else(|| {
        Failure::new(
            ConnectErrorKind::Unreachable,
            format!("no address found for {}", cfg.host),
        )
    }))
}

/// SSLRequest: `true` when the server answered `S`.
async fn negotiate_tls(tcp: &mut TcpStream) -> Result<bool, Failure> {
    let io_failure = |e: io::Error| Failure::new(ConnectErrorKind::Other, e.to_string());
    let mut buf = BytesMut::new();
    protocol::encode_ssl_request(&mut buf);
    tcp.write_all(&buf).await.map_err(io_failure)?;
    // Read exactly one byte: anything the server sent after `S` belongs to the TLS handshake.
    let answer = tcp.read_u8().await.map_err(io_failure)?;
    match answer {
        b'S' => Ok(true),
        b'N' => Ok(false),
        other => Err(Failure::new(
            ConnectErrorKind::Tls,
            format!(
                "unexpected answer {:?} to the SSL request",
                char::from(other)
            ),
        )),
    }
}

/// The name rustls checks the certificate against: the host name given, or the address.
fn server_name(cfg: &ConnConfig) -> Result<ServerName<'static>, Failure> {
    let name = match (&cfg.host, cfg.hostaddr) {
        (Host::Tcp(host), _) => host.clone(),
        (Host::Unix(_), Some(ip)) => ip.to_string(),
        (Host::Unix(_), None) => String::new(),
    };
    ServerName::try_from(name.clone()).map_err(|_| {
        Failure::new(
            ConnectErrorKind::Setup,
            format!("\"{name}\" cannot be used as a TLS server name"),
        )
    })
}

/// The innermost reason of a TLS error, with certificate problems in our words.
fn tls_reason(error: &io::Error) -> String {
    if let Some(inner) = error.get_ref() {
        if let Some(rustls_error) = inner.downcast_ref::<rustls::Error>() {
            if let Some(problem) = tls::CertProblem::find(rustls_error) {
                return problem.to_string();
            }
            return rustls_error.to_string();
        }
    }
    error.to_string()
}

/// The `tls-server-end-point` channel binding data (RFC 5929, section 4.1): a hash of the
/// server's certificate, with the hash function of the certificate's signature, except that
/// MD5 and SHA-1 are replaced by SHA-256. `None` when the signature algorithm names no single
/// hash (Ed25519, RSASSA-PSS here): we then do not offer channel binding, as libpq cannot either.
pub fn tls_server_end_point(cert_der: &[u8]) -> Option<Vec<u8>> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(cert_der).ok()?;
    let oid = cert.signature_algorithm.algorithm.to_id_string();
    let hash: fn(&[u8]) -> Vec<u8> = match oid.as_str() {
        // md5/sha1 with RSA, ecdsa-with-SHA1, dsa-with-sha1, and the SHA-256 family.
        "1.2.840.113549.1.1.4"
        | "1.2.840.113549.1.1.5"
        | "1.2.840.10045.4.1"
        | "1.2.840.10040.4.3"
        | "1.2.840.113549.1.1.11"
        | "1.2.840.10045.4.3.2"
        | "2.16.840.1.101.3.4.3.2" => |d| sha2::Sha256::digest(d).to_vec(),
        "1.2.840.113549.1.1.14" | "1.2.840.10045.4.3.1" | "2.16.840.1.101.3.4.3.1" => {
            |d| sha2::Sha224::digest(d).to_vec()
        }
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => |d| sha2::Sha384::digest(d).to_vec(),
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => |d| sha2::Sha512::digest(d).to_vec(),
        _ => return None,
    };
    Some(hash(cert_der))
}

/// StartupMessage, authentication, then everything up to the first ReadyForQuery.
async fn startup(
    conn: &mut ReplicationConnection,
    cfg: &ConnConfig,
    channel_binding: Option<Vec<u8>>,
) -> Result<(), Failure> {
    let application_name = cfg
        .application_name
        .as_deref()
        .unwrap_or(DEFAULT_APPLICATION_NAME);
    protocol::encode_startup(
        &cfg.user,
        &cfg.dbname,
        application_name,
        cfg.options.as_deref(),
        &mut conn.write_buf,
    )
    .map_err(|e| Failure::new(ConnectErrorKind::Setup, e.to_string()))?;
    conn.flush().await.map_err(Failure::from_error)?;
    authenticate(conn, cfg, channel_binding).await?;
    loop {
        match conn.read().await.map_err(Failure::from_error)? {
            Backend::Other(Message::ReadyForQuery(_)) => return Ok(()),
            Backend::Error(error) => return Err(Failure::from_server(error)),
            // ParameterStatus is recorded by `read`; BackendKeyData is for cancel requests,
            // which a replication session does not need.
            _ => {}
        }
    }
}

fn auth_failure(reason: impl Into<String>) -> Failure {
    Failure::new(ConnectErrorKind::Authentication, reason)
}

/// The authentication exchange, up to AuthenticationOk: trust, cleartext, md5, SCRAM-SHA-256
/// and SCRAM-SHA-256-PLUS (`channel_binding` is the `tls-server-end-point` data of a TLS
/// session). `channel_binding=require` refuses every method but SCRAM-SHA-256-PLUS.
async fn authenticate(
    conn: &mut ReplicationConnection,
    cfg: &ConnConfig,
    channel_binding: Option<Vec<u8>>,
) -> Result<(), Failure> {
    let password = || {
        cfg.password.as_ref().ok_or_else(|| {
            auth_failure(format!(
                "the server asks for a password for user \"{}\" and none was given",
                cfg.user
            ))
        })
    };
    let require_binding = cfg.channel_binding == ChannelBinding::Require;
    let mut scram: Option<sasl::ScramSha256> = None;
    let mut used_plus = false;
    loop {
        let message = conn.read().await.map_err(Failure::from_error)?;
        match message {
            Backend::Error(error) => return Err(Failure::from_server(error)),
            Backend::Other(Message::AuthenticationOk) => {
                if require_binding && !used_plus {
                    return Err(auth_failure(
                        "channel_binding=require, but the server authenticated us without \
                         SCRAM-SHA-256-PLUS (it needs TLS and scram-sha-256 in pg_hba.conf)",
                    ));
                }
                return Ok(());
            }
            Backend::Other(Message::AuthenticationCleartextPassword) => {
                if require_binding {
                    return Err(auth_failure(
                        "channel_binding=require, but the server asks for a cleartext password",
                    ));
                }
                protocol::encode_password(password()?.expose().as_bytes(), &mut conn.write_buf)
                    .map_err(|e| auth_failure(e.to_string()))?;
                conn.flush().await.map_err(Failure::from_error)?;
            }
            Backend::Other(Message::AuthenticationMd5Password(body)) => {
                if require_binding {
                    return Err(auth_failure(
                        "channel_binding=require, but the server asks for md5 authentication",
                    ));
                }
                let hashed = md5_hash(
                    cfg.user.as_bytes(),
                    password()?.expose().as_bytes(),
                    body.salt(),
                );
                protocol::encode_password(hashed.as_bytes(), &mut conn.write_buf)
                    .map_err(|e| auth_failure(e.to_string()))?;
                conn.flush().await.map_err(Failure::from_error)?;
            }
            Backend::Other(Message::AuthenticationSasl(body)) => {
                let (mechanism, binding) = choose_sasl(&body, cfg, channel_binding.as_deref())?;
                used_plus |= mechanism == "SCRAM-SHA-256-PLUS";
                let state = sasl::ScramSha256::new(password()?.expose().as_bytes(), binding);
                protocol::encode_sasl_initial(mechanism, state.message(), &mut conn.write_buf)
                    .map_err(|e| auth_failure(e.to_string()))?;
                conn.flush().await.map_err(Failure::from_error)?;
                scram = Some(state);
            }
            Backend::Other(Message::AuthenticationSaslContinue(body)) => {
                let state = scram.as_mut().ok_or_else(|| {
                    Failure::new(ConnectErrorKind::Other, "unexpected SASL continue message")
                })?;
                state
                    .update(body.data())
                    .map_err(|e| auth_failure(format!("SCRAM exchange failed: {e}")))?;
                protocol::encode_sasl_response(state.message(), &mut conn.write_buf)
                    .map_err(|e| auth_failure(e.to_string()))?;
                conn.flush().await.map_err(Failure::from_error)?;
            }
            Backend::Other(Message::AuthenticationSaslFinal(body)) => {
                let state = scram.as_mut().ok_or_else(|| {
                    Failure::new(ConnectErrorKind::Other, "unexpected SASL final message")
                })?;
                // Checks the server's signature: the server proves it knows the password too.
                state
                    .finish(body.data())
                    .map_err(|e| auth_failure(format!("SCRAM server verification failed: {e}")))?;
            }
            Backend::Notice(_) => {}
            Backend::Other(
                Message::AuthenticationGss
                | Message::AuthenticationSspi
                | Message::AuthenticationKerberosV5
                | Message::AuthenticationScmCredential
                | Message::AuthenticationGssContinue(_),
            ) => {
                return Err(auth_failure(
                    "the server asks for GSSAPI/SSPI/Kerberos authentication, which pgferry \
                     does not support",
                ))
            }
            _ => {
                return Err(Failure::new(
                    ConnectErrorKind::Other,
                    "unexpected message during authentication",
                ))
            }
        }
    }
}

/// The SASL mechanism among those the server offers, and the channel binding to announce:
/// SCRAM-SHA-256-PLUS when we have binding data and `channel_binding` allows it, else
/// SCRAM-SHA-256 (announcing `y`, "could bind but the server did not offer it", when we could).
fn choose_sasl(
    body: &postgres_protocol::message::backend::AuthenticationSaslBody,
    cfg: &ConnConfig,
    channel_binding: Option<&[u8]>,
) -> Result<(&'static str, sasl::ChannelBinding), Failure> {
    let require_binding = cfg.channel_binding == ChannelBinding::Require;
    let mut plus = false;
    let mut plain = false;
    let mut mechanisms = body.mechanisms();
    while let Some(m) = mechanisms
        .next()
        .map_err(|e| Failure::new(ConnectErrorKind::Other, e.to_string()))?
    {
        plus |= m == "SCRAM-SHA-256-PLUS";
        plain |= m == "SCRAM-SHA-256";
    }
    let allow_binding = cfg.channel_binding != ChannelBinding::Disable;
    Ok(match (channel_binding, plus && allow_binding) {
        (Some(data), true) => (
            "SCRAM-SHA-256-PLUS",
            sasl::ChannelBinding::tls_server_end_point(data.to_vec()),
        ),
        _ if require_binding => {
            return Err(auth_failure(if channel_binding.is_none() {
                "channel_binding=require, but channel binding needs a TLS session \
                 with a certificate whose signature hash is known"
            } else {
                "channel_binding=require, but the server does not offer \
                 SCRAM-SHA-256-PLUS"
            }))
        }
        _ if plain => (
            "SCRAM-SHA-256",
            // 'y': we could bind but the server did not offer it (downgrade check).
            if channel_binding.is_some() && allow_binding {
                sasl::ChannelBinding::unrequested()
            } else {
                sasl::ChannelBinding::unsupported()
            },
        ),
        _ => {
            return Err(auth_failure(
                "the server offers no SASL mechanism we support",
            ))
        }
    })
}
