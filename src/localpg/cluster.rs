//! One running throwaway cluster: created, configured, started, and removed again.

use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::conf::{self, TlsLayout};
use super::osuser::RunAs;
use super::watchdog::Watchdog;
use super::{LocalPgError, PgInstall};

/// The bootstrap superuser every cluster is created with.
const SUPERUSER: &str = "postgres";
const HOST: &str = "127.0.0.1";

/// How many fresh ports to try when another process grabs ours between picking and binding.
const PORT_ATTEMPTS: usize = 5;

/// How long the server may take to start, in seconds (`pg_ctl -t`).
const START_TIMEOUT_SECS: &str = "60";

/// How long to wait for the server to log that it processed a reload request.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// After the postmaster logs the reload it still has to parse pg_hba.conf; a rejected file is
/// reported right after. This is how long we give it.
const RELOAD_SETTLE: Duration = Duration::from_millis(200);

/// Lines of the server log quoted in an error.
const LOG_TAIL_LINES: usize = 30;

/// Characters of a database name kept as they are in a URI path segment.
const DBNAME_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// How to set up a cluster. `Default` gives a plain-TCP cluster on 127.0.0.1 with trust
/// authentication for everyone, replication included.
#[derive(Default, Clone)]
pub struct ClusterOptions {
    /// Server certificate and key, plus an optional CA for client certificates; enables `ssl=on`.
    pub tls: Option<TlsFiles>,
    /// Complete pg_hba.conf lines replacing the default (trust for local, 127.0.0.1/32 and
    /// ::1/128, normal and replication connections).
    pub hba: Option<Vec<String>>,
    /// Extra postgresql.conf settings; they come after ours, so they also override ours.
    pub settings: Vec<(String, String)>,
    /// Password for the bootstrap superuser, stored as SCRAM by initdb. Only useful together
    /// with `hba` lines that ask for a password.
    pub superuser_password: Option<String>,
    /// Also listen on a Unix socket in the cluster directory (see [`Cluster::socket_dir`]).
    pub listen_unix: bool,
    /// Extra `initdb` arguments, after ours (`-E UTF8 --locale=C`), so `-E`/`--locale` here win.
    pub initdb_args: Vec<String>,
}

impl fmt::Debug for ClusterOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterOptions")
            .field("tls", &self.tls)
            .field("hba", &self.hba)
            .field("settings", &self.settings)
            .field(
                "superuser_password",
                &self.superuser_password.as_ref().map(|_| "********"),
            )
            .field("listen_unix", &self.listen_unix)
            .field("initdb_args", &self.initdb_args)
            .finish()
    }
}

/// PEM texts for a TLS-enabled cluster.
#[derive(Clone)]
pub struct TlsFiles {
    pub cert_pem: String,
    pub key_pem: String,
    /// CA certificates that client certificates must chain to (`ssl_ca_file`).
    pub ca_pem: Option<String>,
}

impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsFiles")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &"********")
            .field("ca_pem", &self.ca_pem.as_ref().map(|c| c.len()))
            .finish()
    }
}

/// A running server in its own temporary directory. Dropping it stops the server
/// (`pg_ctl stop -m immediate`) and deletes the directory; if this process dies first, the
/// cluster's watchdog does the same.
pub struct Cluster {
    install: PgInstall,
    run_as: RunAs,
    /// The temporary directory: data directory, server log, socket.
    root: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
    socket_dir: Option<PathBuf>,
    port: u16,
    watchdog: Option<Watchdog>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("major", &self.install.major())
            .field("port", &self.port)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Creates, configures and starts a new cluster. On error everything created so far is
    /// removed again.
    pub fn start(install: &PgInstall, opts: ClusterOptions) -> Result<Cluster, LocalPgError> {
        let run_as = RunAs::detect()?;
        let root = create_root(&run_as)?;
        let data_dir = root.join("data");
        let mut cluster = Cluster {
            install: install.clone(),
            run_as,
            log_path: root.join("server.log"),
            socket_dir: opts.listen_unix.then(|| root.clone()),
            data_dir,
            root,
            port: 0,
            watchdog: None,
        };
        // From here on, returning an error drops `cluster`, which cleans up.
        cluster.watchdog = Some(Watchdog::arm(
            &install.tool("pg_ctl"),
            &cluster.data_dir,
            &cluster.root,
            &cluster.run_as,
        )?);
        cluster.initdb(&opts)?;
        cluster.write_static_files(&opts)?;
        cluster.start_on_free_port(&opts)?;
        Ok(cluster)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Always `127.0.0.1`: the server listens on IPv4 loopback only.
    pub fn host(&self) -> &str {
        HOST
    }

    /// The Unix socket directory, when started with `listen_unix`.
    pub fn socket_dir(&self) -> Option<&Path> {
        self.socket_dir.as_deref()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server log, for looking at after a surprising failure.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The bootstrap superuser, `postgres`.
    pub fn superuser(&self) -> &str {
        SUPERUSER
    }

    /// `postgres://postgres@127.0.0.1:PORT/DBNAME?sslmode=disable`.
    pub fn uri(&self, dbname: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@{HOST}:{}/{}?sslmode=disable",
            self.port,
            utf8_percent_encode(dbname, DBNAME_KEEP)
        )
    }

    pub fn major(&self) -> u32 {
        self.install.major()
    }

    pub fn install(&self) -> &PgInstall {
        &self.install
    }

    /// Replaces pg_hba.conf and has the server reload it. Returns once the server has processed
    /// the reload, so the next connection sees the new rules; an error if it rejected them (it
    /// then keeps the old ones).
    pub fn reload_hba(&self, lines: &[String]) -> Result<(), LocalPgError> {
        let text = conf::render_hba(lines)?;
        let log_offset = self.log_len();
        self.run_as
            .write_file(&self.data_dir.join("pg_hba.conf"), text.as_bytes(), 0o600)?;
        let out = self.pg_ctl(&["reload"])?;
        check_status("pg_ctl reload", &out)?;

        let reload_error = |detail: &str| LocalPgError::Reload {
            detail: detail.to_string(),
            log: self.log_path.clone(),
            log_tail: self.log_tail(log_offset),
        };
        let deadline = Instant::now() + RELOAD_TIMEOUT;
        while !self
            .log_since(log_offset)
            .contains("received SIGHUP, reloading configuration files")
        {
            if Instant::now() > deadline {
                return Err(reload_error("the server did not log the reload in time"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(RELOAD_SETTLE);
        if self
            .log_since(log_offset)
            .contains("pg_hba.conf was not reloaded")
        {
            return Err(reload_error("the server rejected the new pg_hba.conf"));
        }
        Ok(())
    }

    /// Restarts the server (fast shutdown), e.g. to apply a setting that needs it.
    pub fn restart(&self) -> Result<(), LocalPgError> {
        let log_offset = self.log_len();
        let log = self.log_path.display().to_string();
        let out = self.pg_ctl(&[
            "-w",
            "-t",
            START_TIMEOUT_SECS,
            "-l",
            &log,
            "-m",
            "fast",
            "restart",
        ])?;
        if out.status.success() {
            Ok(())
        } else {
            Err(self.start_failed(&out, log_offset))
        }
    }

    /// Stops the server and removes its directory, like dropping it.
    pub fn stop(self) {
        drop(self)
    }

    /// A command running the installation's `tool` as the server user, inside the cluster
    /// directory (the server user may not be allowed into our working directory).
    fn server_command(&self, tool: &str) -> Command {
        let mut cmd = self.run_as.command(&self.install.tool(tool));
        cmd.current_dir(&self.root);
        cmd
    }

    /// `pg_ctl -D <data> <args>`.
    fn pg_ctl(&self, args: &[&str]) -> Result<Output, LocalPgError> {
        self.server_command("pg_ctl")
            .arg("-D")
            .arg(&self.data_dir)
            .args(args)
            .output()
            .map_err(|e| LocalPgError::io("run pg_ctl", e))
    }

    fn initdb(&self, opts: &ClusterOptions) -> Result<(), LocalPgError> {
        let mut cmd = self.server_command("initdb");
        cmd.arg("-D").arg(&self.data_dir).args([
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            // Nothing here needs to survive a crash; skipping fsync saves seconds per cluster.
            "--no-sync",
        ]);
        let pwfile = self.root.join("superuser.pw");
        if let Some(password) = &opts.superuser_password {
            // initdb reads the first line of the file; it never echoes it.
            self.run_as
                .write_file(&pwfile, format!("{password}\n").as_bytes(), 0o600)?;
            cmd.arg(format!("--pwfile={}", pwfile.display()));
        }
        cmd.args(&opts.initdb_args);
        let out = cmd.output();
        if opts.superuser_password.is_some() {
            let _ = std::fs::remove_file(&pwfile);
        }
        let out = out.map_err(|e| LocalPgError::io("run initdb", e))?;
        check_status("initdb", &out)
    }

    /// pg_hba.conf, TLS files and the include line; everything except the port-dependent file.
    fn write_static_files(&self, opts: &ClusterOptions) -> Result<(), LocalPgError> {
        let hba = match &opts.hba {
            Some(lines) => conf::render_hba(lines)?,
            None => conf::render_hba(&conf::default_hba())?,
        };
        self.run_as
            .write_file(&self.data_dir.join("pg_hba.conf"), hba.as_bytes(), 0o600)?;
        if let Some(tls) = &opts.tls {
            let files = [
                (conf::TLS_CERT, Some(&tls.cert_pem)),
                (conf::TLS_KEY, Some(&tls.key_pem)),
                (conf::TLS_CA, tls.ca_pem.as_ref()),
            ];
            for (name, pem) in files {
                if let Some(pem) = pem {
                    self.run_as
                        .write_file(&self.data_dir.join(name), pem.as_bytes(), 0o600)?;
                }
            }
        }
        self.run_as.append_file(
            &self.data_dir.join("postgresql.conf"),
            format!("\ninclude '{}'\n", conf::CONF_FILE).as_bytes(),
        )
    }

    fn write_settings(&self, opts: &ClusterOptions) -> Result<(), LocalPgError> {
        let tls = opts.tls.as_ref().map(|t| TlsLayout {
            with_ca: t.ca_pem.is_some(),
        });
        let mut settings = conf::base_settings(self.port, self.socket_dir.as_deref(), tls);
        settings.extend(opts.settings.iter().cloned());
        let text = conf::render_conf(&settings)?;
        self.run_as
            .write_file(&self.data_dir.join(conf::CONF_FILE), text.as_bytes(), 0o600)
    }

    /// Picks a free port and starts; if someone else binds it first, tries another one.
    fn start_on_free_port(&mut self, opts: &ClusterOptions) -> Result<(), LocalPgError> {
        let log = self.log_path.display().to_string();
        let mut attempt = 1;
        loop {
            self.port = free_port()?;
            self.write_settings(opts)?;
            let log_offset = self.log_len();
            let out = self.pg_ctl(&["-w", "-t", START_TIMEOUT_SECS, "-l", &log, "start"])?;
            if out.status.success() {
                return Ok(());
            }
            let clash = self.log_since(log_offset).contains("could not bind");
            if !clash || attempt == PORT_ATTEMPTS {
                return Err(self.start_failed(&out, log_offset));
            }
            attempt += 1;
        }
    }

    fn start_failed(&self, out: &Output, log_offset: u64) -> LocalPgError {
        LocalPgError::StartFailed {
            detail: command_output(out),
            log: self.log_path.clone(),
            log_tail: self.log_tail(log_offset),
        }
    }

    fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log_path)
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// The server log from byte `offset` on (empty if unreadable: only used for diagnostics
    /// and for recognising messages).
    fn log_since(&self, offset: u64) -> String {
        let mut bytes = Vec::new();
        if let Ok(mut file) = std::fs::File::open(&self.log_path) {
            if file.seek(SeekFrom::Start(offset)).is_ok() {
                let _ = file.read_to_end(&mut bytes);
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn log_tail(&self, offset: u64) -> String {
        let text = self.log_since(offset);
        let lines: Vec<&str> = text.lines().collect();
        let skip = lines.len().saturating_sub(LOG_TAIL_LINES);
        lines[skip..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Only a started server has a pid file; skipping pg_ctl otherwise keeps a failed
        // start's cleanup quick. Failures are ignored: Drop must not panic, and the directory
        // is removed either way.
        if self.data_dir.join("postmaster.pid").exists() {
            let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w", "-t", "30"]);
        }
        let _ = std::fs::remove_dir_all(&self.root);
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.disarm();
        }
    }
}

/// A new private directory `<tmp>/pgferry-pg-<pid>-<n>-<time>`, owned by the server user.
fn create_root(run_as: &RunAs) -> Result<PathBuf, LocalPgError> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let tmp = std::env::temp_dir();
    let mut last_error = None;
    for _ in 0..100 {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = tmp.join(format!("pgferry-pg-{}-{n}-{nanos:08x}", std::process::id()));
        match run_as.create_private_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(LocalPgError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                last_error = Some(source);
            }
            Err(e) => {
                // Created but not handed over: remove it before giving up.
                let _ = std::fs::remove_dir(&dir);
                return Err(e);
            }
        }
    }
    Err(LocalPgError::io(
        format!("create a cluster directory in {}", tmp.display()),
        last_error.unwrap_or_else(|| std::io::Error::other("no free name")),
    ))
}

/// A port nobody listens on right now. The server binds it a moment later; the rare clash
/// with another process is handled by retrying.
fn free_port() -> Result<u16, LocalPgError> {
    let listener = TcpListener::bind((HOST, 0))
        .map_err(|e| LocalPgError::io("find a free TCP port on 127.0.0.1", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| LocalPgError::io("find a free TCP port on 127.0.0.1", e))?
        .port();
    Ok(port)
}

fn check_status(program: &str, out: &Output) -> Result<(), LocalPgError> {
    if out.status.success() {
        Ok(())
    } else {
        Err(LocalPgError::Command {
            program: program.to_string(),
            status: out.status.to_string(),
            output: command_output(out),
        })
    }
}

/// stdout and stderr of a finished program, trimmed, for an error message.
fn command_output(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let both = format!("{}\n{}", stdout.trim(), stderr.trim());
    both.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_debug_hides_secrets() {
        let opts = ClusterOptions {
            superuser_password: Some("hunter2-pw".into()),
            tls: Some(TlsFiles {
                cert_pem: "CERT".into(),
                key_pem: "PRIVATE-KEY-TEXT".into(),
                ca_pem: None,
            }),
            ..Default::default()
        };
        let text = format!("{opts:?}");
        assert!(!text.contains("hunter2-pw"), "{text}");
        assert!(!text.contains("PRIVATE-KEY-TEXT"), "{text}");
        assert!(text.contains("********"), "{text}");
    }

    #[test]
    fn dbname_is_percent_encoded_in_uri() {
        assert_eq!(
            utf8_percent_encode("a b/c?d_é.-~", DBNAME_KEEP).to_string(),
            "a%20b%2Fc%3Fd_%C3%A9.-~"
        );
    }
}
