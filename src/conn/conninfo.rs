//! Parsing of libpq connection strings: `postgres://` / `postgresql://` URIs and `key=value`
//! conninfo strings. Produces [`ConnParams`]: only what the string says, nothing resolved.
//!
//! The grammar follows libpq (`fe-connect.c`) rather than RFC 3986, because users paste the
//! strings they already give `psql`:
//!
//! - **URI**: `postgresql://[user[:password]@][host][:port][/dbname][?key=value&...]`, also with
//!   the `postgres://` prefix (both case-sensitive, as in libpq). Every part is percent-decoded;
//!   `%00` is refused. An IPv6 literal goes in brackets (`[::1]:5432`). A host that decodes to an
//!   absolute path is a Unix-socket directory (`postgresql://%2Fvar%2Frun%2Fpostgresql/app`);
//!   `?host=/var/run/postgresql` works too. Empty parts (`postgresql:///app`, `postgresql://@h`)
//!   count as not given, so environment variables still apply to them. Query keys are the
//!   keywords below, plus libpq's JDBC-style `ssl=true` (= `sslmode=require`).
//! - **key=value**: pairs separated by whitespace, whitespace allowed around `=`. A value is
//!   either unquoted (ends at whitespace; `\x` stands for `x`) or single-quoted (`\'` and `\\`
//!   inside; may be empty: `password=''`). Unlike the URI form, an explicitly empty value counts
//!   as given: `host=''` means the default host and stops `PGHOST` from applying, as in libpq.
//! - When a keyword appears twice, the last value wins and only that one is checked, as in libpq.
//! - An empty (or all-blank) string is valid and means "everything from the environment and the
//!   defaults", as `psql ""` does. A plain word such as `mydb` is refused (libpq's tools would
//!   take it as a database name; pgferry asks for a URI instead).
//!
//! Keywords pgferry uses: `host`, `hostaddr`, `port`, `user`, `password`, `dbname`, `sslmode`,
//! `sslrootcert`, `sslcert`, `sslkey`, `application_name`, `connect_timeout`, `options`,
//! `target_session_attrs`, `channel_binding`, `passfile` (and the legacy `requiressl`, which libpq
//! turns into `sslmode`).
//!
//! libpq keywords that are accepted and **ignored**, because ignoring them cannot weaken security
//! or change what is copied (see [`IGNORED_KEYWORDS`]): `client_encoding` (tokio-postgres always
//! talks UTF-8), `fallback_application_name`, `keepalives`, `keepalives_idle`,
//! `keepalives_interval`, `keepalives_count`, `tcp_user_timeout`, `sslcompression` (libpq itself
//! no longer compresses), `sslsni` (SNI is always sent for host names), `sslpassword` (encrypted
//! client keys are not supported: loading one fails in the TLS layer), `krbsrvname`, `gsslib`,
//! `gssdelegation` (GSSAPI is not supported), `load_balance_hosts` (one host only),
//! `sslkeylogfile`. Some more are accepted only with the values that change nothing for pgferry:
//! `gssencmode` (`disable`, `prefer`), `sslnegotiation` (`postgres`), `sslcertmode` (`allow`),
//! `ssl_min_protocol_version` (up to `TLSv1.2`: rustls never goes below TLS 1.2),
//! `ssl_max_protocol_version` (`TLSv1.3`), `min_protocol_version` (`3.0`), `max_protocol_version`.
//! Other libpq keywords (`service`, `sslcrl`, `require_auth`, `replication`, ...) are refused with
//! a "not supported by pgferry" error rather than silently dropped, and anything else is refused
//! as libpq does: `invalid connection option "foo"`.
//!
//! Errors never contain a password: not the `password` value, not the URI (libpq echoes the whole
//! URI in some errors; we give positions instead), not the token right after a password value
//! (`password=a b` would otherwise echo `b`).

use super::{ChannelBinding, Secret, SslMode, TargetSessionAttrs};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// What a connection string says. Every field is optional: environment variables and defaults are
/// applied later by [`super::ConnConfig::resolve`].
///
/// `Some("")` in a string field records an explicitly empty value (`host=''`): libpq then uses the
/// default and does not look at the environment variable. Two fields need a sentinel for the same
/// purpose: `port == Some(0)` is `port=''` (port 0 is never valid), and
/// `connect_timeout == Some(Duration::ZERO)` is `connect_timeout=0` (or negative), which means no
/// timeout.
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

impl ConnParams {
    /// Whether the string gave `key` (one of [`USED_KEYWORDS`]), even as an empty value.
    pub(crate) fn is_set(&self, key: &str) -> bool {
        match key {
            "host" => self.host.is_some(),
            "hostaddr" => self.hostaddr.is_some(),
            "port" => self.port.is_some(),
            "user" => self.user.is_some(),
            "password" => self.password.is_some(),
            "dbname" => self.dbname.is_some(),
            "sslmode" => self.sslmode.is_some(),
            "sslrootcert" => self.sslrootcert.is_some(),
            "sslcert" => self.sslcert.is_some(),
            "sslkey" => self.sslkey.is_some(),
            "application_name" => self.application_name.is_some(),
            "connect_timeout" => self.connect_timeout.is_some(),
            "options" => self.options.is_some(),
            "target_session_attrs" => self.target_session_attrs.is_some(),
            "channel_binding" => self.channel_binding.is_some(),
            "passfile" => self.passfile.is_some(),
            _ => false,
        }
    }

    /// Fills every field that is `None` here from `other` (how environment variables apply).
    pub(crate) fn fill_missing(&mut self, other: ConnParams) {
        fn fill<T>(mine: &mut Option<T>, theirs: Option<T>) {
            if mine.is_none() {
                *mine = theirs;
            }
        }
        fill(&mut self.host, other.host);
        fill(&mut self.hostaddr, other.hostaddr);
        fill(&mut self.port, other.port);
        fill(&mut self.user, other.user);
        fill(&mut self.password, other.password);
        fill(&mut self.dbname, other.dbname);
        fill(&mut self.sslmode, other.sslmode);
        fill(&mut self.sslrootcert, other.sslrootcert);
        fill(&mut self.sslcert, other.sslcert);
        fill(&mut self.sslkey, other.sslkey);
        fill(&mut self.application_name, other.application_name);
        fill(&mut self.connect_timeout, other.connect_timeout);
        fill(&mut self.options, other.options);
        fill(&mut self.target_session_attrs, other.target_session_attrs);
        fill(&mut self.channel_binding, other.channel_binding);
        fill(&mut self.passfile, other.passfile);
    }
}

/// Why a connection string was refused. Each message says what to write instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error(
        "not a connection string: expected a URI such as postgresql://user@host:5432/dbname \
         or key=value pairs such as \"host=db.example.com dbname=app\""
    )]
    NotAConnectionString,
    #[error(
        "unsupported URI scheme \"{0}\": connection URIs start with postgresql:// or postgres://"
    )]
    UnsupportedScheme(String),
    #[error("the connection string contains a NUL character; remove it")]
    NulCharacter,
    #[error(
        "missing \"=\" after \"{0}\" in the connection string: write key=value, and quote values \
         that contain spaces (key='a b')"
    )]
    MissingEquals(String),
    /// The token after an unquoted password value has no `=`: usually a password with a blank.
    #[error(
        "missing \"=\" after the {0} value (not shown) in the connection string: a value that \
         contains spaces must be quoted ({0}='...')"
    )]
    MissingEqualsAfterSecret(&'static str),
    #[error(
        "unterminated quoted string in the value of \"{0}\": end it with ' (write \\' for a quote \
         inside the value)"
    )]
    UnterminatedQuote(String),
    #[error(
        "invalid connection option \"{0}\": see \"Parameter Key Words\" in the PostgreSQL \
         documentation for the valid ones"
    )]
    UnknownKeyword(String),
    /// An unknown keyword right after an unquoted password value: not echoed, it may be part of
    /// the password.
    #[error(
        "invalid connection option right after the {0} value (neither is shown: the option may \
         be the end of a {0} with a space): check the option's name (see \"Parameter Key \
         Words\" in the PostgreSQL documentation), or quote the {0} if it contains spaces \
         ({0}='...')"
    )]
    UnknownKeywordAfterSecret(&'static str),
    #[error("invalid value \"{value}\" for connection option \"{key}\": expected {expected}")]
    InvalidValue {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error(
        "\"{key}\" lists several values ({value}): pgferry connects to one server, \
         so pass a single {key}"
    )]
    MultipleHosts { key: &'static str, value: String },
    #[error("connection option \"{key}\" is not supported by pgferry: {hint}")]
    UnsupportedKeyword {
        key: &'static str,
        hint: &'static str,
    },
    #[error("{key}={value} is not supported by pgferry: {hint}")]
    UnsupportedValue {
        key: &'static str,
        value: String,
        hint: &'static str,
    },
    #[error("invalid connection URI: {0}")]
    InvalidUri(#[from] UriError),
}

/// What is wrong with a `postgresql://` URI. Positions are 1-based character offsets.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error("no \"]\" closes the IPv6 address that starts at position {0}")]
    UnclosedIpv6Bracket(usize),
    #[error("empty IPv6 address \"[]\" at position {0}")]
    EmptyIpv6(usize),
    #[error(
        "unexpected character {ch:?} at position {position} after an IPv6 address \
         (expected \":port\", \"/dbname\" or \"?\")"
    )]
    AfterIpv6 { ch: char, position: usize },
    #[error(
        "bad percent-encoding in the {0}: \"%\" must be followed by two hexadecimal digits \
         (write %25 for a literal \"%\")"
    )]
    BadPercentEncoding(String),
    #[error("the {0} contains %00, which is not allowed")]
    PercentEncodedNul(String),
    #[error("the {0} is not valid UTF-8 once percent-decoded")]
    NotUtf8(String),
    #[error(
        "query parameter \"{0}\" has no \"=\": write ?key=value&key=value (percent-encode \"&\" \
         and \"=\" inside values as %26 and %3D)"
    )]
    QueryMissingEquals(String),
    #[error(
        "query parameter \"{0}\" has a second \"=\": percent-encode \"=\" inside values as %3D"
    )]
    QueryExtraEquals(String),
    #[error(
        "invalid URI query parameter \"{0}\": see \"Parameter Key Words\" in the PostgreSQL \
         documentation for the valid ones"
    )]
    UnknownQueryParameter(String),
}

/// Keywords pgferry reads into [`ConnParams`].
pub const USED_KEYWORDS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "user",
    "password",
    "dbname",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "application_name",
    "connect_timeout",
    "options",
    "target_session_attrs",
    "channel_binding",
    "passfile",
];

/// libpq keywords accepted and ignored; the module documentation says why each is harmless.
/// The last seven are accepted only with certain values (checked when the string is parsed).
pub const IGNORED_KEYWORDS: &[&str] = &[
    "client_encoding",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "sslcompression",
    "sslsni",
    "sslpassword",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
    "load_balance_hosts",
    "sslkeylogfile",
    "gssencmode",
    "sslnegotiation",
    "sslcertmode",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "min_protocol_version",
    "max_protocol_version",
];

/// libpq keywords pgferry refuses, with what to do instead.
const UNSUPPORTED_KEYWORDS: &[(&str, &str)] = &[
    (
        "service",
        "connection service files (pg_service.conf) are not read; write host, port, user and \
         dbname into the connection string",
    ),
    (
        "sslcrl",
        "certificate revocation lists are not checked; remove the option",
    ),
    (
        "sslcrldir",
        "certificate revocation lists are not checked; remove the option",
    ),
    (
        "requirepeer",
        "the peer user of a Unix socket is not checked; remove the option",
    ),
    (
        "require_auth",
        "restricting the authentication method is not implemented; remove the option",
    ),
    (
        "replication",
        "pgferry opens its own replication connections; remove the option",
    ),
    ("oauth_issuer", "OAuth authentication is not supported"),
    ("oauth_client_id", "OAuth authentication is not supported"),
    (
        "oauth_client_secret",
        "OAuth authentication is not supported",
    ),
    ("oauth_scope", "OAuth authentication is not supported"),
    (
        "scram_client_key",
        "SCRAM key pass-through is not supported; give a password",
    ),
    (
        "scram_server_key",
        "SCRAM key pass-through is not supported; give a password",
    ),
];

/// Keywords whose values are secrets: never echoed, and neither is the token that follows them.
const SECRET_KEYWORDS: &[&str] = &["password", "sslpassword", "oauth_client_secret"];

/// The canonical (static) spelling of a keyword libpq knows, or `None`.
fn known_keyword(key: &str) -> Option<&'static str> {
    USED_KEYWORDS
        .iter()
        .chain(IGNORED_KEYWORDS)
        .copied()
        .chain(UNSUPPORTED_KEYWORDS.iter().map(|(k, _)| *k))
        .find(|k| *k == key)
}

fn secret_keyword(key: &str) -> Option<&'static str> {
    SECRET_KEYWORDS.iter().copied().find(|k| *k == key)
}

/// Keyword → raw value as written (last one wins), before any value is checked.
#[derive(Default)]
struct RawParams(BTreeMap<&'static str, String>);

impl RawParams {
    /// Stores a value under a known keyword; `None` if libpq does not know the keyword.
    /// `requiressl` becomes `sslmode` exactly as libpq does it (a value starting with `1` means
    /// `require`, anything else `prefer`).
    fn store(&mut self, key: &str, value: String) -> Option<&'static str> {
        if key == "requiressl" {
            let mode = if value.starts_with('1') {
                "require"
            } else {
                "prefer"
            };
            self.0.insert("sslmode", mode.to_owned());
            return Some("requiressl");
        }
        let key = known_keyword(key)?;
        self.0.insert(key, value);
        Some(key)
    }
}

/// Parses a libpq connection string (URI or `key=value`); see the module documentation.
pub fn parse(s: &str) -> Result<ConnParams, ParseError> {
    if s.contains('\0') {
        return Err(ParseError::NulCharacter);
    }
    let raw = if let Some(rest) = s
        .strip_prefix("postgresql://")
        .or_else(|| s.strip_prefix("postgres://"))
    {
        parse_uri(rest, s.len() - rest.len())?
    } else if s.contains('=') {
        if let Some(scheme) = foreign_scheme(s) {
            return Err(ParseError::UnsupportedScheme(scheme.to_owned()));
        }
        parse_key_value(s)?
    } else if s.chars().all(is_c_space) {
        RawParams::default()
    } else if let Some(scheme) = foreign_scheme(s) {
        return Err(ParseError::UnsupportedScheme(scheme.to_owned()));
    } else {
        return Err(ParseError::NotAConnectionString);
    };
    build(&raw)
}

/// Builds [`ConnParams`] from one keyword and its raw value, with the same checks as [`parse`]
/// (used for environment variables, which libpq treats like values written in the string).
pub(crate) fn params_from_pair(key: &str, value: String) -> Result<ConnParams, ParseError> {
    let mut raw = RawParams::default();
    if raw.store(key, value).is_none() {
        return Err(ParseError::UnknownKeyword(key.to_owned()));
    }
    build(&raw)
}

/// `jdbc:postgresql`, `postgis`, `POSTGRES`...: a `scheme://` prefix we do not accept.
fn foreign_scheme(s: &str) -> Option<&str> {
    let (scheme, _) = s.split_once("://")?;
    let plausible = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | ':'));
    plausible.then_some(scheme)
}

/// C's `isspace` in the "C" locale, which is what libpq uses to separate pairs.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

fn parse_key_value(s: &str) -> Result<RawParams, ParseError> {
    let mut raw = RawParams::default();
    let mut chars = s.chars().peekable();
    // The keyword of the previous pair when its value was an unquoted secret (SECRET_KEYWORDS).
    let mut after_secret: Option<&'static str> = None;
    loop {
        while chars.next_if(|c| is_c_space(*c)).is_some() {}
        if chars.peek().is_none() {
            return Ok(raw);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !is_c_space(*c)) {
            key.push(c);
        }
        while chars.next_if(|c| is_c_space(*c)).is_some() {}
        if chars.next_if_eq(&'=').is_none() {
            return Err(match after_secret {
                Some(secret) => ParseError::MissingEqualsAfterSecret(secret),
                None => ParseError::MissingEquals(key),
            });
        }
        while chars.next_if(|c| is_c_space(*c)).is_some() {}
        let mut value = String::new();
        let quoted = chars.next_if_eq(&'\'').is_some();
        if quoted {
            loop {
                match chars.next() {
                    None => return Err(ParseError::UnterminatedQuote(key)),
                    Some('\'') => break,
                    // A backslash at the very end leaves the quote open: caught above next turn.
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next() {
                match c {
                    c if is_c_space(c) => break,
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
        }
        if raw.store(&key, value).is_none() {
            return Err(match after_secret {
                Some(secret) => ParseError::UnknownKeywordAfterSecret(secret),
                None => ParseError::UnknownKeyword(key),
            });
        }
        // Only an unquoted secret can have been cut short by a blank.
        after_secret = secret_keyword(&key).filter(|_| !quoted);
    }
}

/// Parses what follows `postgresql://`; `offset` is the prefix length (for error positions).
/// The scanning mirrors libpq's `conninfo_uri_parse_options` step by step.
fn parse_uri(uri: &str, offset: usize) -> Result<RawParams, ParseError> {
    let mut raw = RawParams::default();
    // 1-based character position of byte index `i` of `uri` in the whole string.
    let position = |i: usize| offset + uri[..i].chars().count() + 1;

    // Credentials: only if an '@' comes before the first '/' (libpq does not stop at '?').
    let mut rest = uri;
    let mut rest_start = 0;
    if let Some(at) = uri.find(['@', '/']).filter(|&i| uri.as_bytes()[i] == b'@') {
        let credentials = &uri[..at];
        let (user, password) = match credentials.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (credentials, None),
        };
        if !user.is_empty() {
            raw.store("user", percent_decode(user, "user name")?);
        }
        if let Some(password) = password.filter(|p| !p.is_empty()) {
            raw.store("password", percent_decode(password, "password")?);
        }
        rest = &uri[at + 1..];
        rest_start = at + 1;
    }

    // Hosts and ports: libpq accepts a comma-separated list; we collect it the same way and
    // refuse lists later (in `build`), so `h1,h2` and `h1:1,h2:2` get the same clear error.
    let bytes = rest.as_bytes();
    let mut hosts = String::new();
    let mut ports = String::new();
    let mut i = 0;
    let terminator = loop {
        if bytes.get(i) == Some(&b'[') {
            let start = i + 1;
            let close = rest[start..]
                .find(']')
                .map(|k| start + k)
                .ok_or(UriError::UnclosedIpv6Bracket(position(rest_start + i)))?;
            if close == start {
                return Err(UriError::EmptyIpv6(position(rest_start + i)).into());
            }
            hosts.push_str(&rest[start..close]);
            i = close + 1;
            if let Some(ch) = rest[i..]
                .chars()
                .next()
                .filter(|c| !matches!(c, ':' | '/' | '?' | ','))
            {
                let position = position(rest_start + i);
                return Err(UriError::AfterIpv6 { ch, position }.into());
            }
        } else {
            let start = i;
            while i < bytes.len() && !matches!(bytes[i], b':' | b'/' | b'?' | b',') {
                i += 1;
            }
            hosts.push_str(&rest[start..i]);
        }
        let mut terminator = bytes.get(i).copied();
        if terminator == Some(b':') {
            i += 1;
            let start = i;
            while i < bytes.len() && !matches!(bytes[i], b'/' | b'?' | b',') {
                i += 1;
            }
            ports.push_str(&rest[start..i]);
            terminator = bytes.get(i).copied();
        }
        if terminator != Some(b',') {
            break terminator;
        }
        i += 1;
        hosts.push(',');
        ports.push(',');
    };
    if !hosts.is_empty() {
        raw.store("host", percent_decode(&hosts, "host")?);
    }
    if !ports.is_empty() {
        raw.store("port", percent_decode(&ports, "port")?);
    }

    let mut query = None;
    match terminator {
        Some(b'/') => {
            let path = &rest[i + 1..];
            let (dbname, q) = match path.split_once('?') {
                Some((dbname, q)) => (dbname, Some(q)),
                None => (path, None),
            };
            // An empty name is "not given" (libpq: so PGDATABASE still applies).
            if !dbname.is_empty() {
                raw.store("dbname", percent_decode(dbname, "database name")?);
            }
            query = q;
        }
        Some(b'?') => query = Some(&rest[i + 1..]),
        _ => {}
    }
    if let Some(query) = query {
        parse_query(query, &mut raw)?;
    }
    Ok(raw)
}

/// `key=value&key=value`; a trailing `&` is fine, an empty parameter elsewhere is not (libpq).
fn parse_query(query: &str, raw: &mut RawParams) -> Result<(), ParseError> {
    let params: Vec<&str> = query.split('&').collect();
    let last = params.len() - 1;
    for (n, param) in params.into_iter().enumerate() {
        if n == last && param.is_empty() {
            break;
        }
        let Some((key, value)) = param.split_once('=') else {
            return Err(UriError::QueryMissingEquals(param.to_owned()).into());
        };
        if value.contains('=') {
            return Err(UriError::QueryExtraEquals(key.to_owned()).into());
        }
        let key = percent_decode(key, "query parameter name")?;
        let mut value = percent_decode(value, &format!("value of query parameter \"{key}\""))?;
        let mut key = key.as_str();
        if key == "ssl" && value == "true" {
            // libpq's JDBC compatibility spelling.
            key = "sslmode";
            value = "require".to_owned();
        }
        if raw.store(key, value).is_none() {
            return Err(UriError::UnknownQueryParameter(key.to_owned()).into());
        }
    }
    Ok(())
}

/// libpq's URI decoding: `%XY` (either case) is a byte, `%00` is refused, nothing else changes
/// (`+` stays `+`). `part` names what is decoded, for errors; the text itself is never echoed.
fn percent_decode(s: &str, part: &str) -> Result<String, UriError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let hex = |j: usize| bytes.get(j).and_then(|b| (*b as char).to_digit(16));
        let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
            return Err(UriError::BadPercentEncoding(part.to_owned()));
        };
        let byte = (hi * 16 + lo) as u8;
        if byte == 0 {
            return Err(UriError::PercentEncodedNul(part.to_owned()));
        }
        out.push(byte);
        i += 3;
    }
    String::from_utf8(out).map_err(|_| UriError::NotUtf8(part.to_owned()))
}

/// C's `strtol` + `isspace` rules as libpq's `pqParseIntParam` applies them: blanks around the
/// number are fine, a sign is allowed, anything else or a value outside `i32` is refused.
fn parse_c_int(value: &str) -> Option<i32> {
    value.trim_matches(is_c_space).parse().ok()
}

fn invalid(key: &'static str, value: &str, expected: &'static str) -> ParseError {
    ParseError::InvalidValue {
        key,
        value: value.to_owned(),
        expected,
    }
}

fn unsupported_value(key: &'static str, value: &str, hint: &'static str) -> ParseError {
    ParseError::UnsupportedValue {
        key,
        value: value.to_owned(),
        hint,
    }
}

fn single(key: &'static str, value: &str) -> Result<(), ParseError> {
    if value.contains(',') {
        return Err(ParseError::MultipleHosts {
            key,
            value: value.to_owned(),
        });
    }
    Ok(())
}

/// Checks every raw value and builds the typed parameters.
fn build(raw: &RawParams) -> Result<ConnParams, ParseError> {
    let mut p = ConnParams::default();
    for (&key, value) in &raw.0 {
        let text = || Some(value.clone());
        match key {
            "host" => {
                single(key, value)?;
                if value.starts_with('@') {
                    return Err(unsupported_value(
                        key,
                        value,
                        "abstract Unix sockets are not supported; give a socket directory \
                         (starting with /) or a host name",
                    ));
                }
                p.host = text();
            }
            "hostaddr" => {
                single(key, value)?;
                if !value.is_empty() && value.parse::<IpAddr>().is_err() {
                    return Err(invalid(
                        key,
                        value,
                        "a numeric IPv4 or IPv6 address (put host names in host=)",
                    ));
                }
                p.hostaddr = text();
            }
            "port" => {
                single(key, value)?;
                p.port = Some(if value.is_empty() {
                    0
                } else {
                    parse_c_int(value)
                        .and_then(|n| u16::try_from(n).ok())
                        .filter(|n| *n != 0)
                        .ok_or_else(|| invalid(key, value, "a port number from 1 to 65535"))?
                });
            }
            "user" => p.user = text(),
            "password" => p.password = Some(Secret::new(value.clone())),
            "dbname" => p.dbname = text(),
            "sslmode" => {
                p.sslmode = Some(SslMode::parse(value).ok_or_else(|| {
                    invalid(
                        key,
                        value,
                        "disable, allow, prefer, require, verify-ca or verify-full",
                    )
                })?)
            }
            "sslrootcert" => p.sslrootcert = text(),
            "sslcert" => p.sslcert = text(),
            "sslkey" => p.sslkey = text(),
            "application_name" => p.application_name = text(),
            "connect_timeout" => {
                let seconds = parse_c_int(value).ok_or_else(|| {
                    invalid(
                        key,
                        value,
                        "a whole number of seconds (0 or less means no timeout)",
                    )
                })?;
                // libpq: zero or negative waits forever; 1 is raised to 2 so that rounding
                // cannot make the wait nearly nothing.
                p.connect_timeout = Some(Duration::from_secs(match seconds {
                    ..=0 => 0,
                    1 => 2,
                    n => u64::from(n.unsigned_abs()),
                }));
            }
            "options" => p.options = text(),
            "target_session_attrs" => {
                p.target_session_attrs = Some(match value.as_str() {
                    "any" => TargetSessionAttrs::Any,
                    "read-write" => TargetSessionAttrs::ReadWrite,
                    "read-only" | "primary" | "standby" | "prefer-standby" => {
                        return Err(unsupported_value(
                            key,
                            value,
                            "only \"any\" and \"read-write\" are supported; connect to the \
                             server you mean directly",
                        ))
                    }
                    _ => return Err(invalid(key, value, "any or read-write")),
                })
            }
            "channel_binding" => {
                p.channel_binding = Some(
                    ChannelBinding::parse(value)
                        .ok_or_else(|| invalid(key, value, "disable, prefer or require"))?,
                )
            }
            "passfile" => p.passfile = text(),
            _ => check_ignored(key, value)?,
        }
    }
    Ok(p)
}

/// Refuses unsupported keywords, and ignored keywords set to a value pgferry cannot honour.
fn check_ignored(key: &'static str, value: &str) -> Result<(), ParseError> {
    if let Some((_, hint)) = UNSUPPORTED_KEYWORDS.iter().find(|(k, _)| *k == key) {
        return Err(ParseError::UnsupportedKeyword { key, hint });
    }
    let lower = value.to_ascii_lowercase();
    match key {
        "gssencmode" => match value {
            "disable" | "prefer" => Ok(()),
            "require" => Err(unsupported_value(
                key,
                value,
                "GSSAPI encryption is not supported; use sslmode for encryption",
            )),
            _ => Err(invalid(key, value, "disable, prefer or require")),
        },
        "sslnegotiation" => match value {
            "postgres" => Ok(()),
            "direct" => Err(unsupported_value(
                key,
                value,
                "direct TLS negotiation is not supported; remove the option",
            )),
            _ => Err(invalid(key, value, "postgres or direct")),
        },
        "sslcertmode" => match value {
            "allow" => Ok(()),
            "disable" | "require" => Err(unsupported_value(
                key,
                value,
                "only the default \"allow\" is supported: a client certificate is sent when \
                 one is configured",
            )),
            _ => Err(invalid(key, value, "disable, allow or require")),
        },
        "ssl_min_protocol_version" => match lower.as_str() {
            "" | "tlsv1" | "tlsv1.1" | "tlsv1.2" => Ok(()),
            "tlsv1.3" => Err(unsupported_value(
                key,
                value,
                "pgferry negotiates TLS 1.2 or 1.3 and cannot require 1.3; remove the option",
            )),
            _ => Err(invalid(key, value, "TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3")),
        },
        "ssl_max_protocol_version" => match lower.as_str() {
            "" | "tlsv1.3" => Ok(()),
            "tlsv1" | "tlsv1.1" | "tlsv1.2" => Err(unsupported_value(
                key,
                value,
                "pgferry negotiates TLS 1.2 or 1.3 and cannot cap the version; remove the option",
            )),
            _ => Err(invalid(key, value, "TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3")),
        },
        "min_protocol_version" => match value {
            "" | "3.0" => Ok(()),
            "3.2" | "latest" => Err(unsupported_value(
                key,
                value,
                "pgferry speaks protocol version 3.0; remove the option",
            )),
            _ => Err(invalid(key, value, "3.0, 3.2 or latest")),
        },
        "max_protocol_version" => match value {
            "" | "3.0" | "3.2" | "latest" => Ok(()),
            _ => Err(invalid(key, value, "3.0, 3.2 or latest")),
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    fn pw(v: &str) -> Option<Secret> {
        Some(Secret::new(v))
    }

    fn d() -> ConnParams {
        ConnParams::default()
    }

    fn check_ok(cases: &[(&str, ConnParams)]) {
        for (input, expected) in cases {
            match parse(input) {
                Ok(got) => assert_eq!(&got, expected, "input: {input:?}"),
                Err(e) => panic!("input {input:?} failed: {e}"),
            }
        }
    }

    /// Every URI form libpq accepts, with what it means.
    ///
    /// Longer than 150 lines because it is one table of cases (input, expected parameters),
    /// read like libpq's documentation of the URI syntax; the checking is `check_ok`'s.
    #[test]
    fn uri_forms() {
        check_ok(&[
            ("postgresql://", d()),
            ("postgres://", d()),
            ("postgresql:///", d()),
            (
                "postgresql://localhost",
                ConnParams {
                    host: s("localhost"),
                    ..d()
                },
            ),
            (
                "postgres://db.example.com:5433",
                ConnParams {
                    host: s("db.example.com"),
                    port: Some(5433),
                    ..d()
                },
            ),
            (
                "postgresql://localhost/mydb",
                ConnParams {
                    host: s("localhost"),
                    dbname: s("mydb"),
                    ..d()
                },
            ),
            (
                "postgresql://alice@localhost",
                ConnParams {
                    user: s("alice"),
                    host: s("localhost"),
                    ..d()
                },
            ),
            (
                "postgresql://alice:secret@localhost:6000/app",
                ConnParams {
                    user: s("alice"),
                    password: pw("secret"),
                    host: s("localhost"),
                    port: Some(6000),
                    dbname: s("app"),
                    ..d()
                },
            ),
            // The password runs to the '@': it may contain ':'.
            (
                "postgresql://alice:se:cr:et@h",
                ConnParams {
                    user: s("alice"),
                    password: pw("se:cr:et"),
                    host: s("h"),
                    ..d()
                },
            ),
            (
                "postgresql://other@localhost/otherdb?connect_timeout=10&application_name=myapp",
                ConnParams {
                    user: s("other"),
                    host: s("localhost"),
                    dbname: s("otherdb"),
                    connect_timeout: Some(Duration::from_secs(10)),
                    application_name: s("myapp"),
                    ..d()
                },
            ),
            // Query right after the host, no path.
            (
                "postgresql://h?sslmode=verify-full&sslrootcert=/etc/root.crt",
                ConnParams {
                    host: s("h"),
                    sslmode: Some(SslMode::VerifyFull),
                    sslrootcert: s("/etc/root.crt"),
                    ..d()
                },
            ),
            // Empty parts are "not given".
            (
                "postgresql://@h/",
                ConnParams {
                    host: s("h"),
                    ..d()
                },
            ),
            (
                "postgresql://alice:@h",
                ConnParams {
                    user: s("alice"),
                    host: s("h"),
                    ..d()
                },
            ),
            (
                "postgresql://:5433",
                ConnParams {
                    port: Some(5433),
                    ..d()
                },
            ),
            (
                "postgresql://h/db?",
                ConnParams {
                    host: s("h"),
                    dbname: s("db"),
                    ..d()
                },
            ),
            (
                "postgresql://h/db?port=5433&",
                ConnParams {
                    host: s("h"),
                    dbname: s("db"),
                    port: Some(5433),
                    ..d()
                },
            ),
            // A query parameter overrides the authority part (last wins).
            (
                "postgresql://h:5432/db?host=other&port=6000",
                ConnParams {
                    host: s("other"),
                    port: Some(6000),
                    dbname: s("db"),
                    ..d()
                },
            ),
            // libpq's JDBC spelling and the legacy requiressl.
            (
                "postgresql://h/db?ssl=true",
                ConnParams {
                    host: s("h"),
                    dbname: s("db"),
                    sslmode: Some(SslMode::Require),
                    ..d()
                },
            ),
            (
                "postgresql://h?requiressl=1",
                ConnParams {
                    host: s("h"),
                    sslmode: Some(SslMode::Require),
                    ..d()
                },
            ),
            (
                "postgresql://h?requiressl=0",
                ConnParams {
                    host: s("h"),
                    sslmode: Some(SslMode::Prefer),
                    ..d()
                },
            ),
        ]);
    }

    #[test]
    fn uri_ipv6_and_unix_sockets() {
        check_ok(&[
            (
                "postgresql://[::1]:5432/db",
                ConnParams {
                    host: s("::1"),
                    port: Some(5432),
                    dbname: s("db"),
                    ..d()
                },
            ),
            (
                "postgresql://[2001:db8::1234]/database",
                ConnParams {
                    host: s("2001:db8::1234"),
                    dbname: s("database"),
                    ..d()
                },
            ),
            (
                "postgresql://u@[::1]?sslmode=disable",
                ConnParams {
                    user: s("u"),
                    host: s("::1"),
                    sslmode: Some(SslMode::Disable),
                    ..d()
                },
            ),
            (
                "postgresql://%2Fvar%2Frun%2Fpostgresql/db",
                ConnParams {
                    host: s("/var/run/postgresql"),
                    dbname: s("db"),
                    ..d()
                },
            ),
            (
                "postgresql://%2ftmp:5433/db",
                ConnParams {
                    host: s("/tmp"),
                    port: Some(5433),
                    dbname: s("db"),
                    ..d()
                },
            ),
            (
                "postgresql:///dbname?host=/var/lib/postgresql",
                ConnParams {
                    host: s("/var/lib/postgresql"),
                    dbname: s("dbname"),
                    ..d()
                },
            ),
            (
                "postgresql:///dbname?host=%2Fvar%2Flib%2Fpostgresql",
                ConnParams {
                    host: s("/var/lib/postgresql"),
                    dbname: s("dbname"),
                    ..d()
                },
            ),
        ]);
    }

    #[test]
    fn uri_percent_decoding() {
        check_ok(&[
            (
                "postgresql://us%40er:p%3Ass%2Fw%40rd@h/d%20b",
                ConnParams {
                    user: s("us@er"),
                    password: pw("p:ss/w@rd"),
                    host: s("h"),
                    dbname: s("d b"),
                    ..d()
                },
            ),
            (
                "postgresql://h/caf%C3%A9?options=-c%20search_path%3Dx&application_name=a+b",
                ConnParams {
                    host: s("h"),
                    dbname: s("café"),
                    options: s("-c search_path=x"),
                    // '+' is not a space in libpq's decoding.
                    application_name: s("a+b"),
                    ..d()
                },
            ),
            (
                "postgresql://h/db?application%5Fname=x",
                ConnParams {
                    host: s("h"),
                    dbname: s("db"),
                    application_name: s("x"),
                    ..d()
                },
            ),
            (
                "postgresql://h:%35%34%33%32",
                ConnParams {
                    host: s("h"),
                    port: Some(5432),
                    ..d()
                },
            ),
        ]);
    }

    #[test]
    fn key_value_forms() {
        check_ok(&[
            ("", d()),
            ("  \t\n ", d()),
            (
                "host=localhost port=5432 dbname=mydb",
                ConnParams {
                    host: s("localhost"),
                    port: Some(5432),
                    dbname: s("mydb"),
                    ..d()
                },
            ),
            (
                " \thost = localhost\n   port=\t5433  ",
                ConnParams {
                    host: s("localhost"),
                    port: Some(5433),
                    ..d()
                },
            ),
            (
                r"password='it\'s a \\ secret' user=bob",
                ConnParams {
                    password: pw(r"it's a \ secret"),
                    user: s("bob"),
                    ..d()
                },
            ),
            (
                r"dbname=my\ db user=a\\b host=x\'y",
                ConnParams {
                    dbname: s("my db"),
                    user: s(r"a\b"),
                    host: s("x'y"),
                    ..d()
                },
            ),
            (
                "dbname='a b = c' user='' host=h",
                ConnParams {
                    dbname: s("a b = c"),
                    user: s(""),
                    host: s("h"),
                    ..d()
                },
            ),
            // Explicit empty values are recorded (they block the environment variable).
            (
                "host='' port='' password='' dbname=",
                ConnParams {
                    host: s(""),
                    port: Some(0),
                    password: pw(""),
                    dbname: s(""),
                    ..d()
                },
            ),
            // After a quoted value the next pair may follow without a blank, as in libpq.
            (
                "host='h'port=1",
                ConnParams {
                    host: s("h"),
                    port: Some(1),
                    ..d()
                },
            ),
            (
                "host=/var/run/postgresql",
                ConnParams {
                    host: s("/var/run/postgresql"),
                    ..d()
                },
            ),
            (
                "host=::1 hostaddr=::1",
                ConnParams {
                    host: s("::1"),
                    hostaddr: s("::1"),
                    ..d()
                },
            ),
            // Last value wins, and only the last one is checked.
            (
                "sslmode=bogus sslmode=require",
                ConnParams {
                    sslmode: Some(SslMode::Require),
                    ..d()
                },
            ),
            (
                "port=' +5432 '",
                ConnParams {
                    port: Some(5432),
                    ..d()
                },
            ),
            (
                "connect_timeout=1",
                ConnParams {
                    connect_timeout: Some(Duration::from_secs(2)),
                    ..d()
                },
            ),
            (
                "connect_timeout=0",
                ConnParams {
                    connect_timeout: Some(Duration::ZERO),
                    ..d()
                },
            ),
            (
                "connect_timeout=-5",
                ConnParams {
                    connect_timeout: Some(Duration::ZERO),
                    ..d()
                },
            ),
            (
                "connect_timeout=' 30 '",
                ConnParams {
                    connect_timeout: Some(Duration::from_secs(30)),
                    ..d()
                },
            ),
        ]);
    }

    #[test]
    fn every_keyword() {
        let all = "host=h hostaddr=10.0.0.1 port=6543 user=u password=p dbname=d \
                   sslmode=verify-ca sslrootcert=/r.crt sslcert=/c.crt sslkey=/c.key \
                   application_name=app connect_timeout=7 options='-c x=y' \
                   target_session_attrs=read-write channel_binding=require passfile=/pf";
        let expected = ConnParams {
            host: s("h"),
            hostaddr: s("10.0.0.1"),
            port: Some(6543),
            user: s("u"),
            password: pw("p"),
            dbname: s("d"),
            sslmode: Some(SslMode::VerifyCa),
            sslrootcert: s("/r.crt"),
            sslcert: s("/c.crt"),
            sslkey: s("/c.key"),
            application_name: s("app"),
            connect_timeout: Some(Duration::from_secs(7)),
            options: s("-c x=y"),
            target_session_attrs: Some(TargetSessionAttrs::ReadWrite),
            channel_binding: Some(ChannelBinding::Require),
            passfile: s("/pf"),
        };
        assert_eq!(parse(all).unwrap(), expected);
        // The same through URI query parameters.
        let uri = format!(
            "postgresql:///?{}",
            all.replace("options='-c x=y'", "options=-c%20x%3Dy")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join("&")
        );
        assert_eq!(parse(&uri).unwrap(), expected);
        for key in USED_KEYWORDS {
            assert!(expected.is_set(key), "{key} not covered");
        }

        for mode in [
            "disable",
            "allow",
            "prefer",
            "require",
            "verify-ca",
            "verify-full",
        ] {
            let p = parse(&format!("sslmode={mode}")).unwrap();
            assert_eq!(p.sslmode.map(SslMode::as_str), Some(mode));
        }
        for (value, expected) in [
            ("disable", ChannelBinding::Disable),
            ("prefer", ChannelBinding::Prefer),
            ("require", ChannelBinding::Require),
        ] {
            let p = parse(&format!("channel_binding={value}")).unwrap();
            assert_eq!(p.channel_binding, Some(expected));
        }
        let p = parse("target_session_attrs=any").unwrap();
        assert_eq!(p.target_session_attrs, Some(TargetSessionAttrs::Any));
    }

    #[test]
    fn harmless_libpq_keywords_are_ignored() {
        let s = "host=h client_encoding=UTF8 fallback_application_name=x keepalives=1 \
                 keepalives_idle=30 keepalives_interval=5 keepalives_count=3 \
                 tcp_user_timeout=1000 sslcompression=0 sslsni=1 sslpassword=zz \
                 krbsrvname=postgres gsslib=gssapi gssdelegation=0 load_balance_hosts=disable \
                 sslkeylogfile=/tmp/k gssencmode=prefer sslnegotiation=postgres \
                 sslcertmode=allow ssl_min_protocol_version=TLSv1.2 \
                 ssl_max_protocol_version=TLSv1.3 min_protocol_version=3.0 \
                 max_protocol_version=latest";
        let expected = ConnParams {
            host: Some("h".to_owned()),
            ..d()
        };
        assert_eq!(parse(s).unwrap(), expected);
        for key in IGNORED_KEYWORDS {
            assert!(s.contains(&format!(" {key}=")), "{key} not covered");
        }
    }

    /// Every error case: the exact error, and no trace of the password given in the string.
    ///
    /// Longer than 150 lines because it is one table of cases (input, exact error) followed by
    /// one loop: every case must go through the same password check, so the table stays whole.
    #[test]
    fn errors_never_show_the_password() {
        use ParseError as E;
        use UriError as U;
        let invalid = |key, value: &str, expected| E::InvalidValue {
            key,
            value: value.to_owned(),
            expected,
        };
        let tsa_hint = "only \"any\" and \"read-write\" are supported; connect to the server \
                        you mean directly";
        let cases: Vec<(&str, ParseError)> = vec![
            ("mydb", E::NotAConnectionString),
            ("host", E::NotAConnectionString),
            (
                "mysql://u:S3cr3tPw@h/db",
                E::UnsupportedScheme("mysql".into()),
            ),
            (
                "jdbc:postgresql://h/db?user=u&password=S3cr3tPw",
                E::UnsupportedScheme("jdbc:postgresql".into()),
            ),
            ("password=S3cr3tPw host=h\0", E::NulCharacter),
            (
                "password=S3cr3tPw user=u host x=1",
                E::MissingEquals("host".into()),
            ),
            (
                "password=S3cr3t Tail9",
                E::MissingEqualsAfterSecret("password"),
            ),
            (
                "password=S3cr3t Tail9=x",
                E::UnknownKeywordAfterSecret("password"),
            ),
            (
                "password='S3cr3tPw",
                E::UnterminatedQuote("password".into()),
            ),
            (
                r"password='S3cr3tPw\'",
                E::UnterminatedQuote("password".into()),
            ),
            (
                "password=S3cr3tPw host=h foo=bar",
                E::UnknownKeyword("foo".into()),
            ),
            (
                "password='S3cr3tPw' foo=bar",
                E::UnknownKeyword("foo".into()),
            ),
            (
                "password='S3cr3tPw' host x=1",
                E::MissingEquals("host".into()),
            ),
            ("=x password=S3cr3tPw", E::UnknownKeyword("".into())),
            (
                "ssl=true password=S3cr3tPw",
                E::UnknownKeyword("ssl".into()),
            ),
            (
                "password=S3cr3tPw port=abc",
                invalid("port", "abc", "a port number from 1 to 65535"),
            ),
            (
                "password=S3cr3tPw port=70000",
                invalid("port", "70000", "a port number from 1 to 65535"),
            ),
            (
                "port=0",
                invalid("port", "0", "a port number from 1 to 65535"),
            ),
            (
                "port='  '",
                invalid("port", "  ", "a port number from 1 to 65535"),
            ),
            (
                "postgresql://u:S3cr3tPw@h:54x2/db",
                invalid("port", "54x2", "a port number from 1 to 65535"),
            ),
            (
                "password=S3cr3tPw sslmode=maybe",
                invalid(
                    "sslmode",
                    "maybe",
                    "disable, allow, prefer, require, verify-ca or verify-full",
                ),
            ),
            (
                "sslmode=''",
                invalid(
                    "sslmode",
                    "",
                    "disable, allow, prefer, require, verify-ca or verify-full",
                ),
            ),
            (
                "channel_binding=maybe",
                invalid("channel_binding", "maybe", "disable, prefer or require"),
            ),
            (
                "connect_timeout=abc",
                invalid(
                    "connect_timeout",
                    "abc",
                    "a whole number of seconds (0 or less means no timeout)",
                ),
            ),
            (
                "connect_timeout=99999999999",
                invalid(
                    "connect_timeout",
                    "99999999999",
                    "a whole number of seconds (0 or less means no timeout)",
                ),
            ),
            (
                "hostaddr=db.example.com",
                invalid(
                    "hostaddr",
                    "db.example.com",
                    "a numeric IPv4 or IPv6 address (put host names in host=)",
                ),
            ),
            (
                "target_session_attrs=whatever",
                invalid("target_session_attrs", "whatever", "any or read-write"),
            ),
            (
                "postgresql://u:S3cr3tPw@h1,h2/db",
                E::MultipleHosts {
                    key: "host",
                    value: "h1,h2".into(),
                },
            ),
            (
                "postgresql://u:S3cr3tPw@h1:5432,h2:5433/db",
                E::MultipleHosts {
                    key: "host",
                    value: "h1,h2".into(),
                },
            ),
            (
                "postgresql://u:S3cr3tPw@[::1]:1,[::2]:2/db",
                E::MultipleHosts {
                    key: "host",
                    value: "::1,::2".into(),
                },
            ),
            (
                "host=h1,h2 password=S3cr3tPw",
                E::MultipleHosts {
                    key: "host",
                    value: "h1,h2".into(),
                },
            ),
            (
                "port=5432,5433",
                E::MultipleHosts {
                    key: "port",
                    value: "5432,5433".into(),
                },
            ),
            (
                "hostaddr=10.0.0.1,10.0.0.2",
                E::MultipleHosts {
                    key: "hostaddr",
                    value: "10.0.0.1,10.0.0.2".into(),
                },
            ),
            (
                "target_session_attrs=read-only password=S3cr3tPw",
                E::UnsupportedValue {
                    key: "target_session_attrs",
                    value: "read-only".into(),
                    hint: tsa_hint,
                },
            ),
            (
                "postgresql://u:S3cr3tPw@h/db?target_session_attrs=primary",
                E::UnsupportedValue {
                    key: "target_session_attrs",
                    value: "primary".into(),
                    hint: tsa_hint,
                },
            ),
            (
                "target_session_attrs=standby",
                E::UnsupportedValue {
                    key: "target_session_attrs",
                    value: "standby".into(),
                    hint: tsa_hint,
                },
            ),
            (
                "target_session_attrs=prefer-standby",
                E::UnsupportedValue {
                    key: "target_session_attrs",
                    value: "prefer-standby".into(),
                    hint: tsa_hint,
                },
            ),
            (
                "host=@abstract",
                E::UnsupportedValue {
                    key: "host",
                    value: "@abstract".into(),
                    hint: "abstract Unix sockets are not supported; give a socket directory \
                           (starting with /) or a host name",
                },
            ),
            (
                "gssencmode=require",
                E::UnsupportedValue {
                    key: "gssencmode",
                    value: "require".into(),
                    hint: "GSSAPI encryption is not supported; use sslmode for encryption",
                },
            ),
            (
                "service=prod password=S3cr3tPw",
                E::UnsupportedKeyword {
                    key: "service",
                    hint: "connection service files (pg_service.conf) are not read; write \
                           host, port, user and dbname into the connection string",
                },
            ),
            (
                "sslcrl=/crl.pem",
                E::UnsupportedKeyword {
                    key: "sslcrl",
                    hint: "certificate revocation lists are not checked; remove the option",
                },
            ),
            (
                "oauth_client_secret=S3cr3tPw",
                E::UnsupportedKeyword {
                    key: "oauth_client_secret",
                    hint: "OAuth authentication is not supported",
                },
            ),
            (
                "postgresql://u:S3cr3tPw@[::1/db",
                U::UnclosedIpv6Bracket(25).into(),
            ),
            ("postgresql://u:S3cr3tPw@[]/db", U::EmptyIpv6(25).into()),
            (
                "postgresql://u:S3cr3tPw@[::1]x/db",
                U::AfterIpv6 {
                    ch: 'x',
                    position: 30,
                }
                .into(),
            ),
            (
                "postgresql://u:S3cr3t%zz@h",
                U::BadPercentEncoding("password".into()).into(),
            ),
            (
                "postgresql://u:S3cr3tPw@h/db%2",
                U::BadPercentEncoding("database name".into()).into(),
            ),
            (
                "postgresql://h/db?password=S3cr3tPw%00",
                U::PercentEncodedNul("value of query parameter \"password\"".into()).into(),
            ),
            (
                "postgresql://u:S3cr3tPw@h/%ff",
                U::NotUtf8("database name".into()).into(),
            ),
            (
                "postgresql://u:S3cr3tPw@h/db?sslmode",
                U::QueryMissingEquals("sslmode".into()).into(),
            ),
            (
                "postgresql://h/db?port=1&&password=S3cr3tPw",
                U::QueryMissingEquals("".into()).into(),
            ),
            (
                "postgresql://h/db?password=S3cr3t=Pw",
                U::QueryExtraEquals("password".into()).into(),
            ),
            (
                "postgresql://u:S3cr3tPw@h/db?foo=bar",
                U::UnknownQueryParameter("foo".into()).into(),
            ),
            (
                "postgresql://u:S3cr3tPw@h/db?ssl=false",
                U::UnknownQueryParameter("ssl".into()).into(),
            ),
        ];
        for (input, expected) in cases {
            let err = match parse(input) {
                Ok(p) => panic!("{input:?} was accepted: {p:?}"),
                Err(e) => e,
            };
            assert_eq!(err, expected, "input: {input:?}");
            for shown in [err.to_string(), format!("{err:?}")] {
                assert!(
                    !shown.contains("S3cr3t") && !shown.contains("Tail9"),
                    "{input:?} leaked the password: {shown}"
                );
            }
        }
    }

    #[test]
    fn error_messages_say_what_to_do() {
        let msg = |s: &str| parse(s).unwrap_err().to_string();
        assert!(msg("foo=1").starts_with("invalid connection option \"foo\""));
        assert!(msg("postgresql://a,b/db")
            .contains("pgferry connects to one server, so pass a single host"));
        assert!(msg("target_session_attrs=read-only").contains("not supported by pgferry"));
        assert!(msg("port=x").contains("\"port\"") && msg("port=x").contains("\"x\""));
        assert!(msg("mydb").contains("postgresql://"));
        assert!(msg("password=a b").contains("password='...'"));
    }

    #[test]
    fn params_from_pair_checks_like_parse() {
        assert_eq!(
            params_from_pair("port", "6000".into()).unwrap().port,
            Some(6000)
        );
        assert!(matches!(
            params_from_pair("sslmode", "bogus".into()),
            Err(ParseError::InvalidValue { key: "sslmode", .. })
        ));
    }

    /// A cheap property test next to the fuzz target: every string made of up to four pieces of
    /// connection-string syntax parses or fails cleanly, never panics.
    #[test]
    fn never_panics_on_syntax_fragments() {
        const PIECES: &[&str] = &[
            "postgresql://",
            "@",
            ":",
            "/",
            "?",
            "=",
            "&",
            "[",
            "]",
            "%",
            "%2",
            "%00",
            "%C3",
            "'",
            "\\",
            " ",
            ",",
            "host",
            "port=",
            "é",
        ];
        let (mut ok, mut err) = (0, 0);
        let n = PIECES.len();
        // Each number below n^4 spells one sequence of four pieces (its base-n digits).
        for code in 0..n.pow(4) {
            let input: String = (0..4).map(|k| PIECES[code / n.pow(k) % n]).collect();
            match parse(&input) {
                Ok(_) => ok += 1,
                Err(error) => {
                    assert!(!error.to_string().is_empty());
                    err += 1;
                }
            }
        }
        assert!(ok > 0 && err > 0, "ok={ok} err={err}");
    }
}
