//! Turning [`ConnParams`] into a complete [`ConnConfig`]: libpq's environment variables
//! (`PGHOST`, `PGPORT`, ...), its defaults, and the password file.
//!
//! Precedence is libpq's: a value in the connection string (even an empty one, see
//! [`ConnParams`]) beats the environment variable, which beats the default. Environment values are
//! checked exactly like values in the string, and an error names the variable.
//!
//! Defaults (libpq's, with one documented choice):
//! - host: the Unix-socket directory [`DEFAULT_SOCKET_DIR`] (`/var/run/postgresql`, libpq's
//!   compiled-in default on Debian and Ubuntu) **if that directory exists**, else `localhost`
//!   over TCP. libpq has no fallback (it always uses its compiled-in choice); we add one so that
//!   machines without a local server still get a useful error from `localhost`.
//! - port 5432; user: the operating-system user (like libpq, the effective uid's passwd entry,
//!   falling back to `$USER` / `$LOGNAME`); dbname: the user name; sslmode `prefer`, or
//!   `verify-full` when `sslrootcert=system` (libpq 16+); channel_binding `prefer`;
//!   target_session_attrs `any`.
//! - password: the string or `PGPASSWORD`, else the password file (`passfile` / `PGPASSFILE`,
//!   else `~/.pgpass`), see [`super::pgpass`].
//! - sslrootcert / sslcert / sslkey: `~/.postgresql/root.crt`, `postgresql.crt`, `postgresql.key`,
//!   recorded only when the file exists (see the field docs: the TLS layer relies on this).

use super::conninfo::{self, ParseError, USED_KEYWORDS};
use super::pgpass::{self, PgpassQuery};
use super::{ChannelBinding, ConnParams, Host, Secret, SslMode, TargetSessionAttrs};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// libpq's compiled-in Unix-socket directory on Debian and Ubuntu (`DEFAULT_PGSOCKET_DIR`).
/// The password file matches a connection through this directory as host `localhost`.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// libpq's default port (`DEF_PGPORT`).
pub const DEFAULT_PORT: u16 = 5432;

/// A fully resolved connection target. `Debug` never shows the password (see [`Secret`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnConfig {
    /// When `hostaddr` is set this is always `Host::Tcp`: the host name given (for TLS name checks),
    /// or the address itself when no host name was given or the host was a socket directory
    /// (libpq connects to `hostaddr` over TCP in both cases).
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
    ///
    /// `Some` when given (string or `PGSSLROOTCERT`; kept as written even if the file is
    /// missing, so the TLS layer can name it), or when the default `~/.postgresql/root.crt`
    /// **exists**. The TLS layer relies on this for libpq's rule that `sslmode=require` verifies
    /// the chain (behaves as `verify-ca`) exactly when a root certificate file exists: with
    /// `None` there is none, with `Some(path)` it must still check that `path` exists.
    pub sslrootcert: Option<String>,
    /// Client certificate: as given, or `~/.postgresql/postgresql.crt` only when it exists.
    pub sslcert: Option<PathBuf>,
    /// Client key: as given, or `~/.postgresql/postgresql.key` only when it exists.
    pub sslkey: Option<PathBuf>,
    pub application_name: Option<String>,
    /// `None` means wait forever (libpq's `connect_timeout` of 0, negative or unset).
    pub connect_timeout: Option<Duration>,
    pub options: Option<String>,
    pub target_session_attrs: TargetSessionAttrs,
    pub channel_binding: ChannelBinding,
}

/// Where libpq's defaults come from. Abstracted so that tests do not depend on the machine.
pub trait Env {
    /// An environment variable, `None` if unset (or not UTF-8).
    fn var(&self, name: &str) -> Option<String>;

    /// The home directory, for `~/.pgpass` and `~/.postgresql/`.
    fn home_dir(&self) -> Option<PathBuf>;

    /// The operating-system user name, the default for `user`.
    fn os_user(&self) -> Option<String> {
        non_empty(self.var("USER")).or_else(|| non_empty(self.var("LOGNAME")))
    }

    /// Whether `path` is a directory (used for the default socket directory).
    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }
}

/// The real process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var_os(name).and_then(|v| v.into_string().ok())
    }

    /// `$HOME` if set and non-empty, else the passwd entry's directory (libpq's order).
    fn home_dir(&self) -> Option<PathBuf> {
        match std::env::var_os("HOME") {
            Some(home) if !home.is_empty() => Some(PathBuf::from(home)),
            _ => passwd_entry().map(|(_, dir)| dir),
        }
    }

    /// Like libpq: the effective uid's passwd entry, then `$USER` / `$LOGNAME`.
    fn os_user(&self) -> Option<String> {
        passwd_entry()
            .and_then(|(name, _)| name.into_string().ok())
            .filter(|n| !n.is_empty())
            .or_else(|| non_empty(self.var("USER")))
            .or_else(|| non_empty(self.var("LOGNAME")))
    }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// The effective user's name and home directory from the passwd database.
fn passwd_entry() -> Option<(OsString, PathBuf)> {
    use std::ffi::CStr;
    use std::os::unix::ffi::OsStrExt;

    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: `pwd` and `result` are valid out-pointers, `buf` is writable for `buf.len()`
        // bytes, and the strings `pwd` points to live in `buf`, which outlives their use below.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            libc::getpwuid_r(
                libc::geteuid(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() || pwd.pw_dir.is_null() {
            return None;
        }
        // SAFETY: getpwuid_r succeeded, so both fields are NUL-terminated strings inside `buf`.
        let (name, dir) = unsafe { (CStr::from_ptr(pwd.pw_name), CStr::from_ptr(pwd.pw_dir)) };
        let name = std::ffi::OsStr::from_bytes(name.to_bytes()).to_owned();
        let dir = PathBuf::from(std::ffi::OsStr::from_bytes(dir.to_bytes()));
        return Some((name, dir));
    }
}

/// Why a connection could not be fully described. Each message says what to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The connection string itself (only from [`ConnConfig::from_conn_str`]).
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("environment variable {var}: {error}")]
    Env {
        var: &'static str,
        error: ParseError,
    },
    #[error(
        "could not determine the user name (no passwd entry for this process, USER not set): \
         give user= in the connection string or set PGUSER"
    )]
    NoUser,
    #[error(
        "weak sslmode \"{0}\" may not be used with sslrootcert=system: use sslmode=verify-full"
    )]
    WeakSslModeWithSystemRoots(SslMode),
}

/// Environment variable for each keyword, as in libpq's option table.
const ENV_VARS: &[(&str, &str)] = &[
    ("host", "PGHOST"),
    ("hostaddr", "PGHOSTADDR"),
    ("port", "PGPORT"),
    ("user", "PGUSER"),
    ("password", "PGPASSWORD"),
    ("dbname", "PGDATABASE"),
    ("sslmode", "PGSSLMODE"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("sslcert", "PGSSLCERT"),
    ("sslkey", "PGSSLKEY"),
    ("connect_timeout", "PGCONNECT_TIMEOUT"),
    ("application_name", "PGAPPNAME"),
    ("options", "PGOPTIONS"),
    ("target_session_attrs", "PGTARGETSESSIONATTRS"),
    ("channel_binding", "PGCHANNELBINDING"),
    ("passfile", "PGPASSFILE"),
];

/// libpq variables for features pgferry lacks: ignored, with a warning (refusing to run because
/// of the ambient environment would be unhelpful, ignoring them silently would be surprising).
const IGNORED_ENV_VARS: &[(&str, &str)] = &[
    ("PGSERVICE", "connection service files are not read"),
    ("PGSERVICEFILE", "connection service files are not read"),
    ("PGSSLCRL", "certificate revocation lists are not checked"),
    (
        "PGSSLCRLDIR",
        "certificate revocation lists are not checked",
    ),
    (
        "PGREQUIREAUTH",
        "the authentication method is not restricted",
    ),
    (
        "PGREQUIREPEER",
        "the peer user of a Unix socket is not checked",
    ),
    (
        "PGSSLCERTMODE",
        "a configured client certificate is always sent",
    ),
    (
        "PGSSLNEGOTIATION",
        "TLS is always negotiated the traditional way",
    ),
];

impl ConnConfig {
    /// Applies environment variables, defaults and the password file to `params` (libpq rules;
    /// see the module documentation).
    pub fn resolve(mut params: ConnParams, env: &dyn Env) -> Result<ConnConfig, ResolveError> {
        debug_assert_eq!(ENV_VARS.len(), USED_KEYWORDS.len());
        for &(key, var) in ENV_VARS {
            if params.is_set(key) {
                continue;
            }
            if let Some(value) = env.var(var) {
                let layer = conninfo::params_from_pair(key, value)
                    .map_err(|error| ResolveError::Env { var, error })?;
                params.fill_missing(layer);
            }
        }
        // libpq's deprecated PGREQUIRESSL: "1..." means require; PGSSLMODE wins over it.
        if params.sslmode.is_none() && env.var("PGREQUIRESSL").is_some_and(|v| v.starts_with('1')) {
            params.sslmode = Some(SslMode::Require);
        }
        for &(var, consequence) in IGNORED_ENV_VARS {
            if env.var(var).is_some_and(|v| !v.is_empty()) {
                tracing::warn!("{var} is set but pgferry ignores it: {consequence}");
            }
        }

        let host_given = params.host.as_deref().filter(|h| !h.is_empty());
        let hostaddr_given = params.hostaddr.as_deref().filter(|a| !a.is_empty());
        let hostaddr = match hostaddr_given {
            None => None,
            Some(a) => Some(a.parse::<IpAddr>().map_err(|_| ParseError::InvalidValue {
                key: "hostaddr",
                value: a.to_owned(),
                expected: "a numeric IPv4 or IPv6 address (put host names in host=)",
            })?),
        };
        let host = match (host_given, hostaddr_given) {
            (Some(h), None) if h.starts_with('/') => Host::Unix(PathBuf::from(h)),
            (Some(h), Some(a)) if h.starts_with('/') => Host::Tcp(a.to_owned()),
            (Some(h), _) => Host::Tcp(h.to_owned()),
            (None, Some(a)) => Host::Tcp(a.to_owned()),
            (None, None) if env.is_dir(Path::new(DEFAULT_SOCKET_DIR)) => {
                Host::Unix(PathBuf::from(DEFAULT_SOCKET_DIR))
            }
            (None, None) => Host::Tcp("localhost".to_owned()),
        };
        let port = params.port.filter(|p| *p != 0).unwrap_or(DEFAULT_PORT);
        let user = match params.user.filter(|u| !u.is_empty()) {
            Some(user) => user,
            None => env.os_user().ok_or(ResolveError::NoUser)?,
        };
        let dbname = params
            .dbname
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| user.clone());

        let sslrootcert = params.sslrootcert.filter(|c| !c.is_empty());
        let system_roots = sslrootcert.as_deref() == Some("system");
        let sslmode = match params.sslmode {
            Some(mode) => mode,
            None if system_roots => SslMode::VerifyFull,
            None => SslMode::Prefer,
        };
        if system_roots && sslmode != SslMode::VerifyFull {
            return Err(ResolveError::WeakSslModeWithSystemRoots(sslmode));
        }

        let home = env.home_dir();
        let default_file = |name: &str| {
            home.as_ref()
                .map(|h| h.join(".postgresql").join(name))
                .filter(|p| p.is_file())
        };
        let sslrootcert = sslrootcert.or_else(|| {
            default_file("root.crt").and_then(|p| p.into_os_string().into_string().ok())
        });
        let sslcert = match params.sslcert.filter(|c| !c.is_empty()) {
            Some(c) => Some(PathBuf::from(c)),
            None => default_file("postgresql.crt"),
        };
        let sslkey = match params.sslkey.filter(|k| !k.is_empty()) {
            Some(k) => Some(PathBuf::from(k)),
            None => default_file("postgresql.key"),
        };

        let password = match params.password.filter(|p| !p.is_empty()) {
            Some(password) => Some(password),
            None => {
                let file = match params.passfile.filter(|f| !f.is_empty()) {
                    Some(f) => Some(PathBuf::from(f)),
                    None => home.as_ref().map(|h| h.join(".pgpass")),
                };
                let port = port.to_string();
                let query = PgpassQuery {
                    host: pgpass::lookup_host(host_given.or(hostaddr_given)),
                    port: &port,
                    dbname: &dbname,
                    user: &user,
                };
                file.and_then(|f| pgpass::password_from_file(&f, &query))
            }
        };

        Ok(ConnConfig {
            host,
            hostaddr,
            port,
            user,
            password,
            dbname,
            sslmode,
            sslrootcert,
            sslcert,
            sslkey,
            application_name: params.application_name.filter(|a| !a.is_empty()),
            connect_timeout: params.connect_timeout.filter(|t| !t.is_zero()),
            options: params.options.filter(|o| !o.is_empty()),
            target_session_attrs: params
                .target_session_attrs
                .unwrap_or(TargetSessionAttrs::Any),
            channel_binding: params.channel_binding.unwrap_or(ChannelBinding::Prefer),
        })
    }

    /// Parses `s` and resolves it against the real process environment.
    pub fn from_conn_str(s: &str) -> Result<ConnConfig, ResolveError> {
        ConnConfig::resolve(conninfo::parse(s)?, &ProcessEnv)
    }

    /// A one-line description safe for logs and error messages, e.g.
    /// `postgres@db.example.com:5432/app`: never the password; control characters escaped.
    pub fn display_target(&self) -> String {
        let mut out = String::new();
        push_escaped(&mut out, &self.user);
        out.push('@');
        push_escaped(&mut out, &self.host.to_string());
        let _ = write!(out, ":{}/", self.port);
        push_escaped(&mut out, &self.dbname);
        if let Some(addr) = self.hostaddr {
            if self.host != Host::Tcp(addr.to_string()) {
                let _ = write!(out, " (hostaddr {addr})");
            }
        }
        out
    }

    /// The same server and credentials, another database (e.g. each database of a cluster).
    ///
    /// The password is kept as resolved for the original database: a `.pgpass` line that names
    /// a specific database is not looked up again (the usual `*` database lines are unaffected).
    pub fn with_dbname(&self, dbname: &str) -> ConnConfig {
        ConnConfig {
            dbname: dbname.to_owned(),
            ..self.clone()
        }
    }
}

fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::parse;
    use std::collections::HashMap;

    /// A deterministic environment: chosen variables, a temporary home, a fixed OS user, and
    /// whether the default socket directory "exists".
    struct FakeEnv {
        vars: HashMap<&'static str, String>,
        home: tempfile::TempDir,
        user: Option<&'static str>,
        socket_dir: bool,
    }

    impl FakeEnv {
        fn new() -> FakeEnv {
            FakeEnv {
                vars: HashMap::new(),
                home: tempfile::tempdir().unwrap(),
                user: Some("osuser"),
                socket_dir: false,
            }
        }

        fn with(mut self, name: &'static str, value: &str) -> FakeEnv {
            self.vars.insert(name, value.to_owned());
            self
        }

        /// Writes `~/<relative>` (creating directories) with the given mode.
        fn home_file(&self, relative: &str, mode: u32, contents: &str) -> PathBuf {
            use std::os::unix::fs::PermissionsExt;
            let path = self.home.path().join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, contents).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        }
    }

    impl Env for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.vars.get(name).cloned()
        }
        fn home_dir(&self) -> Option<PathBuf> {
            Some(self.home.path().to_owned())
        }
        fn os_user(&self) -> Option<String> {
            self.user.map(str::to_owned)
        }
        fn is_dir(&self, path: &Path) -> bool {
            self.socket_dir && path == Path::new(DEFAULT_SOCKET_DIR)
        }
    }

    fn resolve(s: &str, env: &FakeEnv) -> Result<ConnConfig, ResolveError> {
        ConnConfig::resolve(parse(s).unwrap(), env)
    }

    fn password(c: &ConnConfig) -> Option<&str> {
        c.password.as_ref().map(Secret::expose)
    }

    #[test]
    fn defaults() {
        let env = FakeEnv::new();
        let c = resolve("", &env).unwrap();
        assert_eq!(
            c,
            ConnConfig {
                host: Host::Tcp("localhost".into()),
                hostaddr: None,
                port: 5432,
                user: "osuser".into(),
                password: None,
                dbname: "osuser".into(),
                sslmode: SslMode::Prefer,
                sslrootcert: None,
                sslcert: None,
                sslkey: None,
                application_name: None,
                connect_timeout: None,
                options: None,
                target_session_attrs: TargetSessionAttrs::Any,
                channel_binding: ChannelBinding::Prefer,
            }
        );
        let env = FakeEnv {
            socket_dir: true,
            ..FakeEnv::new()
        };
        let c = resolve("dbname=app", &env).unwrap();
        assert_eq!(c.host, Host::Unix(DEFAULT_SOCKET_DIR.into()));
        assert_eq!(c.dbname, "app");
    }

    #[test]
    fn environment_fills_what_the_string_leaves_out() {
        let env = FakeEnv::new()
            .with("PGHOST", "envhost")
            .with("PGHOSTADDR", "192.0.2.7")
            .with("PGPORT", "6001")
            .with("PGUSER", "envuser")
            .with("PGPASSWORD", "envpw")
            .with("PGDATABASE", "envdb")
            .with("PGSSLMODE", "verify-full")
            .with("PGSSLROOTCERT", "/env/root.crt")
            .with("PGSSLCERT", "/env/client.crt")
            .with("PGSSLKEY", "/env/client.key")
            .with("PGCONNECT_TIMEOUT", "9")
            .with("PGAPPNAME", "envapp")
            .with("PGOPTIONS", "-c work_mem=64MB")
            .with("PGTARGETSESSIONATTRS", "read-write")
            .with("PGCHANNELBINDING", "require")
            .with("PGPASSFILE", "/nonexistent/pgpass");
        let c = resolve("", &env).unwrap();
        assert_eq!(c.host, Host::Tcp("envhost".into()));
        assert_eq!(c.hostaddr, Some("192.0.2.7".parse().unwrap()));
        assert_eq!(c.port, 6001);
        assert_eq!(c.user, "envuser");
        assert_eq!(password(&c), Some("envpw"));
        assert_eq!(c.dbname, "envdb");
        assert_eq!(c.sslmode, SslMode::VerifyFull);
        assert_eq!(c.sslrootcert.as_deref(), Some("/env/root.crt"));
        assert_eq!(c.sslcert, Some(PathBuf::from("/env/client.crt")));
        assert_eq!(c.sslkey, Some(PathBuf::from("/env/client.key")));
        assert_eq!(c.connect_timeout, Some(Duration::from_secs(9)));
        assert_eq!(c.application_name.as_deref(), Some("envapp"));
        assert_eq!(c.options.as_deref(), Some("-c work_mem=64MB"));
        assert_eq!(c.target_session_attrs, TargetSessionAttrs::ReadWrite);
        assert_eq!(c.channel_binding, ChannelBinding::Require);

        // Everything explicit wins over every variable.
        let explicit = "host=h hostaddr=198.51.100.1 port=7000 user=u password=p dbname=d \
                        sslmode=disable sslrootcert=/r sslcert=/c sslkey=/k connect_timeout=3 \
                        application_name=a options=o target_session_attrs=any \
                        channel_binding=disable";
        let c = resolve(explicit, &env).unwrap();
        assert_eq!(c.host, Host::Tcp("h".into()));
        assert_eq!(c.hostaddr, Some("198.51.100.1".parse().unwrap()));
        assert_eq!(c.port, 7000);
        assert_eq!(c.user, "u");
        assert_eq!(password(&c), Some("p"));
        assert_eq!(c.dbname, "d");
        assert_eq!(c.sslmode, SslMode::Disable);
        assert_eq!(c.sslrootcert.as_deref(), Some("/r"));
        assert_eq!(c.sslcert, Some(PathBuf::from("/c")));
        assert_eq!(c.sslkey, Some(PathBuf::from("/k")));
        assert_eq!(c.connect_timeout, Some(Duration::from_secs(3)));
        assert_eq!(c.application_name.as_deref(), Some("a"));
        assert_eq!(c.options.as_deref(), Some("o"));
        assert_eq!(c.target_session_attrs, TargetSessionAttrs::Any);
        assert_eq!(c.channel_binding, ChannelBinding::Disable);
    }

    #[test]
    fn explicit_empty_values_block_the_environment_but_empty_uri_parts_do_not() {
        let env = FakeEnv::new()
            .with("PGHOST", "envhost")
            .with("PGPORT", "6001")
            .with("PGDATABASE", "envdb")
            .with("PGUSER", "envuser")
            .with("PGCONNECT_TIMEOUT", "10");
        let c = resolve("host='' port='' dbname='' connect_timeout=0", &env).unwrap();
        assert_eq!(c.host, Host::Tcp("localhost".into()));
        assert_eq!(c.port, 5432);
        assert_eq!(c.user, "envuser");
        assert_eq!(c.dbname, "envuser");
        assert_eq!(c.connect_timeout, None);
        let c = resolve("postgresql://@:/", &env).unwrap();
        assert_eq!(c.host, Host::Tcp("envhost".into()));
        assert_eq!(c.port, 6001);
        assert_eq!(c.dbname, "envdb");
    }

    #[test]
    fn bad_environment_values_name_the_variable() {
        let cases = [
            ("PGPORT", "abc"),
            ("PGSSLMODE", "bogus"),
            ("PGCONNECT_TIMEOUT", "soon"),
            ("PGHOST", "a,b"),
            ("PGHOSTADDR", "db.example.com"),
            ("PGTARGETSESSIONATTRS", "read-only"),
            ("PGCHANNELBINDING", "maybe"),
        ];
        for (var, value) in cases {
            let env = FakeEnv::new()
                .with(var, value)
                .with("PGPASSWORD", "S3cr3tPw");
            let err = resolve("", &env).unwrap_err();
            assert!(
                matches!(&err, ResolveError::Env { var: v, .. } if *v == var),
                "{var}: {err:?}"
            );
            let shown = err.to_string();
            assert!(
                shown.starts_with(&format!("environment variable {var}: ")),
                "{shown}"
            );
            assert!(!shown.contains("S3cr3t") && !format!("{err:?}").contains("S3cr3t"));
        }
        // Not consulted, so not checked, when the string sets the keyword (libpq).
        let env = FakeEnv::new()
            .with("PGSSLMODE", "bogus")
            .with("PGPORT", "x");
        let c = resolve("sslmode=require port=1", &env).unwrap();
        assert_eq!((c.sslmode, c.port), (SslMode::Require, 1));
    }

    #[test]
    fn legacy_pgrequiressl() {
        let env = FakeEnv::new().with("PGREQUIRESSL", "1");
        assert_eq!(resolve("", &env).unwrap().sslmode, SslMode::Require);
        let env = env.with("PGSSLMODE", "disable");
        assert_eq!(resolve("", &env).unwrap().sslmode, SslMode::Disable);
        let env = FakeEnv::new().with("PGREQUIRESSL", "0");
        assert_eq!(resolve("", &env).unwrap().sslmode, SslMode::Prefer);
    }

    #[test]
    fn sslrootcert_system_means_verify_full() {
        let env = FakeEnv::new();
        let c = resolve("host=h sslrootcert=system", &env).unwrap();
        assert_eq!(c.sslmode, SslMode::VerifyFull);
        assert_eq!(c.sslrootcert.as_deref(), Some("system"));
        let err = resolve("host=h sslrootcert=system sslmode=require", &env).unwrap_err();
        assert_eq!(
            err,
            ResolveError::WeakSslModeWithSystemRoots(SslMode::Require)
        );
        assert!(err.to_string().contains("verify-full"));
        let env = FakeEnv::new().with("PGSSLROOTCERT", "system");
        assert_eq!(resolve("", &env).unwrap().sslmode, SslMode::VerifyFull);
    }

    #[test]
    fn hosts_and_hostaddr() {
        let env = FakeEnv {
            socket_dir: true,
            ..FakeEnv::new()
        };
        let cases: &[(&str, Host, Option<&str>)] = &[
            ("host=/tmp", Host::Unix("/tmp".into()), None),
            (
                "postgresql://%2Fvar%2Frun%2Fpostgresql/db",
                Host::Unix("/var/run/postgresql".into()),
                None,
            ),
            ("postgresql://[::1]/db", Host::Tcp("::1".into()), None),
            (
                "hostaddr=10.0.0.5",
                Host::Tcp("10.0.0.5".into()),
                Some("10.0.0.5"),
            ),
            (
                "host=db.example.com hostaddr=10.0.0.5",
                Host::Tcp("db.example.com".into()),
                Some("10.0.0.5"),
            ),
            // libpq connects to hostaddr over TCP even when host is a socket directory.
            (
                "host=/tmp hostaddr=::1",
                Host::Tcp("::1".into()),
                Some("::1"),
            ),
        ];
        for (s, host, addr) in cases {
            let c = resolve(s, &env).unwrap();
            assert_eq!(&c.host, host, "{s}");
            assert_eq!(c.hostaddr, addr.map(|a| a.parse().unwrap()), "{s}");
        }
    }

    #[test]
    fn no_user_is_an_error() {
        let env = FakeEnv {
            user: None,
            ..FakeEnv::new()
        };
        assert_eq!(resolve("host=h", &env).unwrap_err(), ResolveError::NoUser);
        assert_eq!(resolve("user=u", &env).unwrap().dbname, "u");
    }

    #[test]
    fn default_certificates_only_when_the_files_exist() {
        let env = FakeEnv::new();
        let c = resolve("host=h", &env).unwrap();
        assert_eq!((c.sslrootcert, c.sslcert, c.sslkey), (None, None, None));

        let root = env.home_file(".postgresql/root.crt", 0o644, "pem");
        let cert = env.home_file(".postgresql/postgresql.crt", 0o644, "pem");
        let key = env.home_file(".postgresql/postgresql.key", 0o600, "pem");
        let c = resolve("host=h", &env).unwrap();
        assert_eq!(c.sslrootcert, Some(root.to_str().unwrap().to_owned()));
        assert_eq!(c.sslcert, Some(cert));
        assert_eq!(c.sslkey, Some(key));

        // Explicit paths are kept as written, even missing ones (the TLS layer names them).
        let c = resolve("host=h sslrootcert=/missing/root.crt sslcert=/m.crt", &env).unwrap();
        assert_eq!(c.sslrootcert.as_deref(), Some("/missing/root.crt"));
        assert_eq!(c.sslcert, Some(PathBuf::from("/m.crt")));
    }

    #[test]
    fn password_sources_in_order() {
        let env = FakeEnv::new();
        env.home_file(
            ".pgpass",
            0o600,
            "db.example.com:5432:app:alice:frompgpass\n\
             localhost:5432:*:alice:local\n\
             /tmp:5432:*:alice:tmpsocket\n\
             10.0.0.5:5432:*:alice:byaddr\n",
        );
        let base = "host=db.example.com dbname=app user=alice";
        let c = resolve(base, &env).unwrap();
        assert_eq!(password(&c), Some("frompgpass"));
        // An explicit password, then PGPASSWORD, come before the file.
        let c = resolve(&format!("{base} password=given"), &env).unwrap();
        assert_eq!(password(&c), Some("given"));
        let env = env.with("PGPASSWORD", "envpw");
        assert_eq!(password(&resolve(base, &env).unwrap()), Some("envpw"));
        // password='' blocks PGPASSWORD but still allows the file (libpq).
        let c = resolve(&format!("{base} password=''"), &env).unwrap();
        assert_eq!(password(&c), Some("frompgpass"));
        let env = FakeEnv {
            vars: HashMap::new(),
            ..env
        };

        let cases: &[(&str, Option<&str>)] = &[
            ("user=alice", Some("local")),
            ("user=alice host=localhost", Some("local")),
            ("user=alice host=/var/run/postgresql", Some("local")),
            ("user=alice host=/tmp", Some("tmpsocket")),
            ("user=alice hostaddr=10.0.0.5", Some("byaddr")),
            ("user=alice host=db.example.com hostaddr=10.0.0.5", None),
            ("user=alice host=db.example.com port=5433 dbname=app", None),
            ("user=bob", None),
        ];
        for (s, expected) in cases {
            assert_eq!(password(&resolve(s, &env).unwrap()), *expected, "{s}");
        }
        let env_socket = FakeEnv {
            socket_dir: true,
            ..env
        };
        assert_eq!(
            password(&resolve("user=alice", &env_socket).unwrap()),
            Some("local")
        );
    }

    #[test]
    fn passfile_parameter_and_variable() {
        let env = FakeEnv::new();
        env.home_file(".pgpass", 0o600, "*:*:*:*:default\n");
        let other = env.home_file("elsewhere/pgpass", 0o600, "*:*:*:*:other\n");
        let open = env.home_file("open/pgpass", 0o644, "*:*:*:*:open\n");
        assert_eq!(password(&resolve("", &env).unwrap()), Some("default"));
        let s = format!("passfile={}", other.display());
        assert_eq!(password(&resolve(&s, &env).unwrap()), Some("other"));
        let s = format!("passfile={}", open.display());
        assert_eq!(password(&resolve(&s, &env).unwrap()), None);
        let env = env.with("PGPASSFILE", other.to_str().unwrap());
        assert_eq!(password(&resolve("", &env).unwrap()), Some("other"));
        // passfile='' means the default file again.
        assert_eq!(
            password(&resolve("passfile=''", &env).unwrap()),
            Some("default")
        );
    }

    #[test]
    fn display_target_is_safe() {
        let env = FakeEnv::new();
        let cases = [
            (
                "postgresql://postgres:S3cr3tPw@db.example.com:5432/app",
                "postgres@db.example.com:5432/app",
            ),
            ("postgresql://u:S3cr3tPw@[::1]:6000/db", "u@[::1]:6000/db"),
            (
                "host=/var/run/postgresql user=u password=S3cr3tPw",
                "u@/var/run/postgresql:5432/u",
            ),
            (
                "host=db.example.com hostaddr=10.0.0.5 user=u dbname=d",
                "u@db.example.com:5432/d (hostaddr 10.0.0.5)",
            ),
            ("hostaddr=10.0.0.5 user=u dbname=d", "u@10.0.0.5:5432/d"),
            ("host=h user=u dbname='evil\nline'", "u@h:5432/evil\\nline"),
        ];
        for (s, expected) in cases {
            let c = resolve(s, &env).unwrap();
            assert_eq!(c.display_target(), expected);
            assert!(!format!("{c:?}").contains("S3cr3t"));
        }
    }

    #[test]
    fn with_dbname_changes_only_the_database() {
        let env = FakeEnv::new();
        let c = resolve("postgresql://u:pw@h:6000/one?sslmode=require", &env).unwrap();
        let d = c.with_dbname("two");
        assert_eq!(d.dbname, "two");
        assert_eq!(
            ConnConfig {
                dbname: "one".into(),
                ..d
            },
            c
        );
    }

    #[test]
    fn from_conn_str_reports_parse_errors() {
        let err = ConnConfig::from_conn_str("postgresql://h1,h2/db").unwrap_err();
        assert!(matches!(
            err,
            ResolveError::Parse(ParseError::MultipleHosts { .. })
        ));
        assert!(err.to_string().contains("pass a single host"));
    }
}
