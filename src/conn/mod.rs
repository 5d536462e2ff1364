//! Connection strings with libpq's semantics, TLS with libpq's `sslmode` rules, and connecting.
//!
//! tokio-postgres parses its own connection strings but rejects `sslmode=verify-ca|verify-full`
//! and ignores most libpq keys, so we parse them here and hand tokio-postgres a ready
//! [`tokio_postgres::Config`] plus a TLS connector that enforces the mode.
//!
//! The flow is: [`conninfo::parse`] (what the user wrote, every key optional) →
//! [`ConnConfig::resolve`] (environment variables, defaults and `~/.pgpass` applied) →
//! [`connect::connect`] (TLS negotiation per `sslmode`, authentication by tokio-postgres).
//! [`attempts`] is libpq's order of plain and TLS attempts per `sslmode`, used by both
//! [`connect::connect`] and the replication client.

pub mod attempts;
pub mod connect;
pub mod conninfo;
pub mod pgpass;
pub mod resolve;
pub mod secret;
pub mod tls;

pub use connect::{connect, ConnectError, Session, TlsInfo};
pub use conninfo::{parse, ConnParams, ParseError};
pub use resolve::{ConnConfig, Env, ProcessEnv, ResolveError};
pub use secret::Secret;

use std::fmt;

/// libpq's `sslmode`, with libpq's exact meaning (see [`tls`] for how each is enforced).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// Plain first; TLS only if the server refuses the plain connection.
    Allow,
    /// TLS if the server offers it, plain otherwise (libpq's default).
    Prefer,
    /// TLS, no certificate check — unless a root certificate file exists, then as `VerifyCa`.
    Require,
    /// TLS, certificate chain checked against `sslrootcert`, host name not checked.
    VerifyCa,
    /// TLS, chain and host name checked.
    VerifyFull,
}

impl SslMode {
    pub fn parse(value: &str) -> Option<SslMode> {
        Some(match value {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// libpq's `channel_binding`: whether SCRAM-SHA-256-PLUS must be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelBinding {
    Disable,
    Prefer,
    Require,
}

impl ChannelBinding {
    pub fn parse(value: &str) -> Option<ChannelBinding> {
        Some(match value {
            "disable" => ChannelBinding::Disable,
            "prefer" => ChannelBinding::Prefer,
            "require" => ChannelBinding::Require,
            _ => return None,
        })
    }
}

/// libpq's `target_session_attrs`. Only the values tokio-postgres can honour are accepted;
/// the others (`read-only`, `primary`, `standby`, `prefer-standby`) are rejected at parse time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetSessionAttrs {
    Any,
    ReadWrite,
}

/// Where the server listens: a TCP host name / IP, or a Unix-socket directory (starts with `/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    Tcp(String),
    Unix(std::path::PathBuf),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Tcp(h) if h.contains(':') => write!(f, "[{h}]"),
            Host::Tcp(h) => f.write_str(h),
            Host::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}
