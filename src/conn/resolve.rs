//! Turning [`ConnParams`] into a complete [`ConnConfig`]: libpq's environment variables
//! (`PGHOST`, `PGPORT`, ...), its defaults, and the password file.

use super::{ChannelBinding, ConnParams, Host, Secret, SslMode, TargetSessionAttrs};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A fully resolved connection target. `Debug` never shows the password (see [`Secret`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnConfig {
    pub host: Host,
    /// Numeric address to connect to instead of resolving `host` (which is still used for TLS
    /// name checks and `.pgpass` lookup), as libpq's `hostaddr`.
    pub hostaddr: Option<IpAddr>,
    pub port: u16,
    pub user: String,
    pub password: Option<Secret>,
    pub dbname: String,
    pub sslmode: SslMode,
    /// `sslrootcert`: a file path, or `system` for the platform's trust store.
    pub sslrootcert: Option<String>,
    pub sslcert: Option<PathBuf>,
    pub sslkey: Option<PathBuf>,
    pub application_name: Option<String>,
    pub connect_timeout: Option<Duration>,
    pub options: Option<String>,
    pub target_session_attrs: TargetSessionAttrs,
    pub channel_binding: ChannelBinding,
}
pub trait Env {}
pub struct ProcessEnv;
#[derive(Debug, thiserror::Error)]
#[error("todo")]
pub struct ResolveError;
