//! Parsing of libpq connection strings: `postgres://` / `postgresql://` URIs and `key=value`
//! conninfo strings. Produces [`ConnParams`]: only what the string says, nothing resolved.

use super::{ChannelBinding, Secret, SslMode, TargetSessionAttrs};
use std::time::Duration;

/// What a connection string says. Every field is optional: environment variables and defaults are
/// applied later by [`super::ConnConfig::resolve`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnParams {
    pub host: Option<String>,
    pub hostaddr: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub dbname: Option<String>,
    pub sslmode: Option<SslMode>,
    pub sslrootcert: Option<String>,
    pub sslcert: Option<String>,
    pub sslkey: Option<String>,
    pub application_name: Option<String>,
    pub connect_timeout: Option<Duration>,
    pub options: Option<String>,
    pub target_session_attrs: Option<TargetSessionAttrs>,
    pub channel_binding: Option<ChannelBinding>,
    pub passfile: Option<String>,
}
#[derive(Debug, thiserror::Error)]
#[error("todo")]
pub struct ParseError;
pub fn parse(_s: &str) -> Result<ConnParams, ParseError> { Err(ParseError) }
