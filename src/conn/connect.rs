//! Opening an ordinary (non-replication) session: a resolved [`ConnConfig`] becomes a
//! [`tokio_postgres::Config`] plus a TLS connector enforcing `sslmode` (see [`super::tls`]).
//!
//! tokio-postgres knows only `disable`/`prefer`/`require`; libpq's sequence of attempts per mode
//! (`allow`: plain then TLS; `prefer`: TLS then plain after a failed handshake;
//! `require`/`verify-*`: TLS or nothing) is [`super::attempts`], shared with the replication
//! client; the verifier decides what the certificate must prove.
//! - Unix sockets: never TLS.
//! - `connect_timeout` bounds each attempt as a whole (socket, TLS and authentication), as in
//!   libpq, not only the TCP connect as in tokio-postgres.
//!
//! Failures become a [`ConnectError`] whose message is one line that names the target (never the
//! password), says what went wrong in the server's own words when the server said it, and hints
//! at what to change.

pub use super::attempts::ConnectErrorKind;
use super::attempts::{tls_then_plain, with_sslmode, AttemptFailure, TlsAttempt};
use super::tls::{self, CertProblem, TlsSetupError};
use super::{ChannelBinding, ConnConfig, Host, TargetSessionAttrs};
use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode as WireMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::{MakeTlsConnect, NoTls};
use tokio_postgres::{Client, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

/// The `application_name` we report when the user gives none.
pub const DEFAULT_APPLICATION_NAME: &str = "pgferry";

/// An open session. Dropping it closes the connection.
pub struct Session {
    pub client: Client,
    /// `None` when the session is not encrypted.
    pub tls: Option<TlsInfo>,
    /// The task that drives the socket; it ends when `client` is dropped.
    connection: JoinHandle<()>,
}

impl Session {
    /// Closes the session and waits until the server has been told (Terminate sent).
    pub async fn close(self) {
        let Session {
            client, connection, ..
        } = self;
        drop(client);
        // The task only logs; a panic there is not ours to propagate.
        let _ = connection.await;
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").field("tls", &self.tls).finish()
    }
}

/// The TLS parameters of a session, as the server reports them in `pg_stat_ssl`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// e.g. `TLSv1.3`.
    pub version: String,
    /// e.g. `TLS_AES_256_GCM_SHA384`.
    pub cipher: String,
}

/// Why [`connect`] failed. `Display` is one line: target, reason and, when we have one, a hint.
#[derive(Debug)]
pub struct ConnectError {
    kind: ConnectErrorKind,
    target: String,
    reason: String,
    hint: Option<String>,
    code: Option<SqlState>,
    /// The server answered the TLS request with "no" (`allow` then reports the plain refusal).
    server_lacks_tls: bool,
}

impl ConnectError {
    pub fn kind(&self) -> ConnectErrorKind {
        self.kind
    }

    /// Who we tried to reach (user, host, port, database; never the password).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// What went wrong, in one line.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// What the user could change, if we can tell.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// The SQLSTATE when the server itself refused.
    /// Whether trying again later may succeed: nothing answered, the session broke during
    /// start-up, or the server said so (too many connections, starting up, shutting down).
    /// A refused password, a missing database, a TLS or pg_hba refusal are permanent.
    pub fn is_transient(&self) -> bool {
        match self.kind {
            ConnectErrorKind::Unreachable | ConnectErrorKind::Other => true,
            ConnectErrorKind::Rejected => self
                .code
                .as_ref()
                .is_some_and(|c| crate::pgerror::is_transient(Some(c))),
            ConnectErrorKind::Setup | ConnectErrorKind::Tls | ConnectErrorKind::Authentication => {
                false
            }
        }
    }

    pub fn code(&self) -> Option<&SqlState> {
        self.code.as_ref()
    }

    fn setup(target: String, error: TlsSetupError) -> ConnectError {
        let hint = match error {
            TlsSetupError::MissingRootCert(_) | TlsSetupError::WeakModeWithSystemRoots(_) => None,
            _ => Some("check the sslrootcert/sslcert/sslkey settings".to_owned()),
        };
        ConnectError {
            kind: ConnectErrorKind::Setup,
            target,
            reason: error.to_string(),
            hint,
            code: None,
            server_lacks_tls: false,
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not connect to {}: {}", self.target, self.reason)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl StdError for ConnectError {}

/// Opens a session to `cfg` with libpq's `sslmode` semantics (see the module docs).
pub async fn connect(cfg: &ConnConfig) -> Result<Session, ConnectError> {
    let target = cfg.display_target();
    let tls_config = tls::client_config(cfg).map_err(|e| ConnectError::setup(target.clone(), e))?;
    let attempt = Attempt {
        cfg,
        target: &target,
    };
    let Some(tls_config) = tls_config else {
        return attempt.plain().await;
    };
    let tls = MakeRustlsConnect::new(Arc::unwrap_or_clone(tls_config));
    with_sslmode(cfg.sslmode, true, |wish| {
        let tls = tls.clone();
        async move {
            match wish {
                TlsAttempt::Plain => attempt.plain().await,
                TlsAttempt::Prefer => attempt.run(tls, WireMode::Prefer).await,
                TlsAttempt::Require => attempt.run(tls, WireMode::Require).await,
            }
        }
    })
    .await
}

impl AttemptFailure for ConnectError {
    fn kind(&self) -> ConnectErrorKind {
        self.kind
    }

    fn server_lacks_tls(&self) -> bool {
        self.server_lacks_tls
    }

    fn after_tls_failure(self, tls_failure: ConnectError) -> ConnectError {
        ConnectError {
            reason: tls_then_plain(&tls_failure.reason, &self.reason),
            hint: self.hint.or(tls_failure.hint),
            ..self
        }
    }
}

/// One try at connecting, with one TLS setting.
#[derive(Clone, Copy)]
struct Attempt<'a> {
    cfg: &'a ConnConfig,
    target: &'a str,
}

impl Attempt<'_> {
    async fn plain(&self) -> Result<Session, ConnectError> {
        self.run(NoTls, WireMode::Disable).await
    }

    async fn run<T>(&self, tls: T, mode: WireMode) -> Result<Session, ConnectError>
    where
        T: MakeTlsConnect<Socket> + Send + 'static,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as tokio_postgres::tls::TlsConnect<Socket>>::Future: Send,
    {
        let mut config = pg_config(self.cfg);
        config.ssl_mode(mode);
        let connecting = config.connect(tls);
        let result = match self.cfg.connect_timeout {
            Some(limit) => match tokio::time::timeout(limit, connecting).await {
                Ok(result) => result,
                Err(_) => return Err(self.timed_out(limit)),
            },
            None => connecting.await,
        };
        let (client, connection) = result.map_err(|e| self.explain(&e))?;
        let connection = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
        let tls = if mode == WireMode::Disable {
            None
        } else {
            tls_info(&client).await
        };
        Ok(Session {
            client,
            tls,
            connection,
        })
    }

    fn timed_out(&self, limit: Duration) -> ConnectError {
        ConnectError {
            kind: ConnectErrorKind::Unreachable,
            target: self.target.to_owned(),
            reason: format!(
                "nothing answered at {} within {} s",
                endpoint(self.cfg),
                seconds(limit)
            ),
            hint: Some("check host/port and that the server is running".to_owned()),
            code: None,
            server_lacks_tls: false,
        }
    }

    /// Turns a tokio-postgres error into a one-line reason and a hint.
    fn explain(&self, error: &tokio_postgres::Error) -> ConnectError {
        let explained = describe(self.cfg, error);
        ConnectError {
            kind: explained.kind,
            target: self.target.to_owned(),
            reason: explained.reason,
            hint: explained.hint.map(str::to_owned),
            code: error.code().cloned(),
            server_lacks_tls: explained.server_lacks_tls,
        }
    }
}

/// The tokio-postgres settings for `cfg`; the TLS mode is set per attempt.
fn pg_config(cfg: &ConnConfig) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    match &cfg.host {
        Host::Tcp(host) => {
            config.host(host);
        }
        Host::Unix(dir) => {
            config.host_path(dir);
        }
    }
    if let Some(addr) = cfg.hostaddr {
        config.hostaddr(addr);
    }
    config
        .port(cfg.port)
        .user(&cfg.user)
        .dbname(&cfg.dbname)
        .application_name(
            cfg.application_name
                .as_deref()
                .unwrap_or(DEFAULT_APPLICATION_NAME),
        )
        .target_session_attrs(match cfg.target_session_attrs {
            TargetSessionAttrs::Any => tokio_postgres::config::TargetSessionAttrs::Any,
            TargetSessionAttrs::ReadWrite => tokio_postgres::config::TargetSessionAttrs::ReadWrite,
        })
        .channel_binding(match cfg.channel_binding {
            ChannelBinding::Disable => tokio_postgres::config::ChannelBinding::Disable,
            ChannelBinding::Prefer => tokio_postgres::config::ChannelBinding::Prefer,
            ChannelBinding::Require => tokio_postgres::config::ChannelBinding::Require,
        });
    if let Some(password) = &cfg.password {
        config.password(password.expose());
    }
    if let Some(timeout) = cfg.connect_timeout {
        config.connect_timeout(timeout);
    }
    if let Some(options) = &cfg.options {
        config.options(options);
    }
    config
}

/// The server's view of our TLS session. A server without `pg_stat_ssl` (a pooler, say) just
/// gives no information.
async fn tls_info(client: &Client) -> Option<TlsInfo> {
    let row = client
        .query_opt(
            "SELECT version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl",
            &[],
        )
        .await;
    match row {
        Ok(Some(row)) => {
            let version: Option<String> = row.try_get(0).ok().flatten();
            let cipher: Option<String> = row.try_get(1).ok().flatten();
            Some(TlsInfo {
                version: version.unwrap_or_default(),
                cipher: cipher.unwrap_or_default(),
            })
        }
        Ok(None) => None,
        Err(e) => {
            tracing::debug!(error = %e, "could not read pg_stat_ssl");
            None
        }
    }
}

/// `host:port`, with the address actually dialled, or the socket file.
fn endpoint(cfg: &ConnConfig) -> String {
    match (&cfg.host, cfg.hostaddr) {
        (Host::Unix(dir), _) => format!("{}/.s.PGSQL.{}", dir.display(), cfg.port),
        (host, Some(addr)) if host.to_string() != addr.to_string() => {
            format!("{host} (address {addr}) port {}", cfg.port)
        }
        (host, _) => format!("{host}:{}", cfg.port),
    }
}

fn seconds(limit: Duration) -> String {
    if limit.subsec_millis() == 0 {
        limit.as_secs().to_string()
    } else {
        format!("{:.1}", limit.as_secs_f64())
    }
}

/// Every error in the chain. `io::Error::source` skips the error it wraps (it returns the
/// wrapped error's source), so look inside it explicitly: that is where rustls errors sit.
fn chain<'a>(error: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut out = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        out.push(e);
        next = match e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    out
}

/// A failure put into words.
struct Explained {
    kind: ConnectErrorKind,
    reason: String,
    hint: Option<&'static str>,
    server_lacks_tls: bool,
}

impl Explained {
    fn new(kind: ConnectErrorKind, reason: String, hint: Option<&'static str>) -> Explained {
        Explained {
            kind,
            reason,
            hint,
            server_lacks_tls: false,
        }
    }
}

fn describe(cfg: &ConnConfig, error: &tokio_postgres::Error) -> Explained {
    if let Some(db) = error.as_db_error() {
        return describe_server_error(db);
    }
    let errors = chain(error);
    let top = error.to_string();
    let innermost = errors.last().map(|e| e.to_string()).unwrap_or_default();

    if let Some(tls_error) = errors
        .iter()
        .find_map(|e| e.downcast_ref::<rustls::Error>())
    {
        return describe_tls_error(tls_error);
    }
    // tokio-postgres's kinds are private; its Display text is all there is to go by.
    if top.starts_with("error performing TLS handshake") {
        if innermost.contains("does not support TLS") {
            return Explained {
                server_lacks_tls: true,
                ..Explained::new(
                    ConnectErrorKind::Tls,
                    format!(
                        "the server does not support SSL/TLS, but sslmode={} requires it",
                        cfg.sslmode
                    ),
                    Some("enable ssl on the server, or use sslmode=prefer or disable"),
                )
            };
        }
        return Explained::new(
            ConnectErrorKind::Tls,
            format!("TLS handshake failed: {innermost}"),
            None,
        );
    }
    if top.starts_with("authentication error") {
        return describe_auth_error(&innermost);
    }
    if let Some(io_error) = errors.iter().find_map(|e| e.downcast_ref::<io::Error>()) {
        if let Some(explained) = describe_io_error(cfg, io_error) {
            return explained;
        }
    }
    // tokio-postgres says "invalid configuration: password missing" when the server asks for a
    // password and none was given: that is an authentication problem, not a configuration one.
    if innermost.contains("password missing") {
        return Explained::new(
            ConnectErrorKind::Authentication,
            format!(
                "the server asks for a password for user \"{}\" and none was given",
                cfg.user
            ),
            Some("add it to ~/.pgpass (or PGPASSFILE), set PGPASSWORD, or put it in the connection string"),
        );
    }
    if error.is_closed() {
        return Explained::new(
            ConnectErrorKind::Other,
            "the server closed the connection during startup".to_owned(),
            Some("check the server log"),
        );
    }
    let reason = errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(": ");
    Explained::new(ConnectErrorKind::Other, reason, None)
}

fn describe_server_error(db: &tokio_postgres::error::DbError) -> Explained {
    let code = db.code();
    let (kind, hint) = if *code == SqlState::INVALID_PASSWORD {
        (
            ConnectErrorKind::Authentication,
            Some("check the password given in the connection string, PGPASSWORD or ~/.pgpass"),
        )
    } else if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
        (
            ConnectErrorKind::Rejected,
            Some("the server's pg_hba.conf does not allow this connection; check sslmode, user and database, or ask its administrator"),
        )
    } else if *code == SqlState::INVALID_CATALOG_NAME {
        (ConnectErrorKind::Rejected, Some("check dbname"))
    } else if *code == SqlState::TOO_MANY_CONNECTIONS {
        (
            ConnectErrorKind::Rejected,
            Some("close other sessions or raise max_connections"),
        )
    } else if *code == SqlState::CANNOT_CONNECT_NOW {
        (
            ConnectErrorKind::Rejected,
            Some("the server is starting up or shutting down; retry shortly"),
        )
    } else {
        (ConnectErrorKind::Rejected, None)
    };
    let mut reason = db.message().to_owned();
    if let Some(detail) = db.detail() {
        reason.push_str(" (");
        reason.push_str(&detail.replace('\n', " "));
        reason.push(')');
    }
    Explained::new(kind, reason, hint)
}

fn describe_tls_error(error: &rustls::Error) -> Explained {
    if let Some(problem) = CertProblem::find(error) {
        let hint = match problem {
            CertProblem::NameMismatch { .. } => Some(
                "connect using a host name the certificate lists, or use sslmode=verify-ca to skip the name check",
            ),
            CertProblem::Expired(_) | CertProblem::NotYetValid(_) => {
                Some("renew the server certificate or check this machine's clock")
            }
            _ => None,
        };
        return Explained::new(ConnectErrorKind::Tls, problem.to_string(), hint);
    }
    let hint = match error {
        rustls::Error::AlertReceived(_) => {
            Some("the server refused the handshake; if it requires a client certificate, set sslcert and sslkey")
        }
        _ => None,
    };
    Explained::new(
        ConnectErrorKind::Tls,
        format!("TLS handshake failed: {error}"),
        hint,
    )
}

fn describe_auth_error(detail: &str) -> Explained {
    let hint = if detail.contains("channel binding") {
        Some("channel_binding=require needs SCRAM-SHA-256 over TLS; use sslmode=require or stronger, or lower channel_binding")
    } else if detail.contains("password missing") {
        Some("give a password in the connection string, PGPASSWORD or ~/.pgpass")
    } else {
        None
    };
    Explained::new(
        ConnectErrorKind::Authentication,
        format!("authentication failed: {detail}"),
        hint,
    )
}

fn describe_io_error(cfg: &ConnConfig, error: &io::Error) -> Option<Explained> {
    let at = endpoint(cfg);
    let server_hint = Some("check host/port and that the server is running");
    Some(match error.kind() {
        io::ErrorKind::ConnectionRefused => Explained::new(
            ConnectErrorKind::Unreachable,
            format!("connection refused at {at}"),
            server_hint,
        ),
        io::ErrorKind::TimedOut => Explained::new(
            ConnectErrorKind::Unreachable,
            match cfg.connect_timeout {
                Some(limit) => format!("nothing answered at {at} within {} s", seconds(limit)),
                None => format!("nothing answered at {at} (timed out)"),
            },
            server_hint,
        ),
        io::ErrorKind::NotFound if matches!(cfg.host, Host::Unix(_)) => Explained::new(
            ConnectErrorKind::Unreachable,
            format!("no server socket at {at}"),
            server_hint,
        ),
        io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof => Explained::new(
            ConnectErrorKind::Other,
            format!("the server at {at} closed the connection unexpectedly"),
            Some("check the server log"),
        ),
        _ if cfg.hostaddr.is_none()
            && matches!(cfg.host, Host::Tcp(_))
            && is_lookup_failure(error) =>
        {
            Explained::new(
                ConnectErrorKind::Unreachable,
                format!("could not resolve host name \"{}\": {error}", cfg.host),
                Some("check the host name"),
            )
        }
        _ => return None,
    })
}

/// tokio's resolver reports failures as plain `io::Error`s with getaddrinfo's text.
fn is_lookup_failure(error: &io::Error) -> bool {
    let text = error.to_string();
    text.contains("lookup")
        || text.contains("Name or service not known")
        || text.contains("resolve")
}
