//! Helpers shared by the integration tests: real throwaway PostgreSQL clusters, `psql` for
//! setting up and inspecting them, and a small certificate authority for TLS tests.
//!
//! Each test binary compiles this module separately and uses only part of it.
#![allow(dead_code)]

pub mod aiven;
pub mod ferry;
pub mod fidelity;
pub mod follow;
pub mod proxy;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use pgferry::localpg::{Cluster, ClusterOptions, PgInstall, TlsFiles};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// The client program `name` (`psql`, `pg_dump`, `pg_dumpall`, `pgbench`) to use with
/// `install`'s servers: `install`'s own when it has one, else the one in
/// `PGFERRY_PG_CLIENT_BIN` (the newest major's client tools, set by `scripts/fetch-pg.sh`:
/// the server-only builds it fetches have none, and these read every older server). Tests
/// only: pgferry itself never runs these programs.
pub fn tool(install: &PgInstall, name: &str) -> PathBuf {
    let own = install.tool(name);
    if own.is_file() {
        return own;
    }
    match std::env::var_os("PGFERRY_PG_CLIENT_BIN").filter(|d| !d.is_empty()) {
        Some(dir) if Path::new(&dir).join(name).is_file() => Path::new(&dir).join(name),
        // The error when it is run then names the path that was expected.
        _ => own,
    }
}

/// The PostgreSQL installation to test with; panics with the reason (and the fix) if there is
/// none, so a missing server reads as a setup problem, not a test failure.
pub fn install() -> PgInstall {
    static INSTALL: OnceLock<PgInstall> = OnceLock::new();
    INSTALL
        .get_or_init(|| PgInstall::find().unwrap_or_else(|e| panic!("{e}")))
        .clone()
}

/// One default cluster per test binary, started on first use. It is never dropped (statics are
/// not); its watchdog removes it when the test process exits. Tests sharing it should work in
/// their own database ([`fresh_db`]).
pub fn shared_cluster() -> &'static Cluster {
    static SHARED: OnceLock<Cluster> = OnceLock::new();
    SHARED.get_or_init(|| {
        Cluster::start(&install(), ClusterOptions::default())
            .unwrap_or_else(|e| panic!("could not start the shared test cluster: {e}"))
    })
}

/// The installation of PostgreSQL `major`, if this machine has one: the default installation
/// ([`PgInstall::find`], the system's server) when it is that major, else the bin folder in
/// `PGFERRY_PG_BIN_<major>` (set by `scripts/fetch-pg.sh`), else
/// `/usr/lib/postgresql/<major>/bin`. `None` means the caller must [`skip`] visibly.
/// A variable that is set but wrong panics: that is a broken setup, not an absent version.
pub fn install_major(major: u32) -> Option<PgInstall> {
    static FOUND: OnceLock<Mutex<HashMap<u32, Option<PgInstall>>>> = OnceLock::new();
    let found = FOUND.get_or_init(|| Mutex::new(HashMap::new()));
    let mut found = found.lock().unwrap_or_else(|e| e.into_inner());
    found
        .entry(major)
        .or_insert_with(|| find_major(major))
        .clone()
}

fn find_major(major: u32) -> Option<PgInstall> {
    if let Ok(default) = PgInstall::find() {
        if default.major() == major {
            return Some(default);
        }
    }
    let var = format!("PGFERRY_PG_BIN_{major}");
    if let Some(dir) = std::env::var_os(&var).filter(|d| !d.is_empty()) {
        let install = PgInstall::from_bin_dir(&dir)
            .unwrap_or_else(|e| panic!("{var}={}: {e}", Path::new(&dir).display()));
        assert_eq!(
            install.major(),
            major,
            "{var}={} holds PostgreSQL {}",
            Path::new(&dir).display(),
            install.major()
        );
        return Some(install);
    }
    PgInstall::from_bin_dir(format!("/usr/lib/postgresql/{major}/bin"))
        .ok()
        .filter(|i| i.major() == major)
}

/// One default cluster of PostgreSQL `major` per test binary, like [`shared_cluster`];
/// `None` (and a SKIPPED line naming `test`) when that major is not installed here.
pub fn major_cluster(major: u32, test: &str) -> Option<&'static Cluster> {
    static CLUSTERS: OnceLock<Mutex<HashMap<u32, &'static Cluster>>> = OnceLock::new();
    let Some(install) = install_major(major) else {
        skip(
            test,
            &format!(
                "PostgreSQL {major} is not installed (run `eval \"$(scripts/fetch-pg.sh {major})\"` \
                 to set PGFERRY_PG_BIN_{major})"
            ),
        );
        return None;
    };
    let clusters = CLUSTERS.get_or_init(|| Mutex::new(HashMap::new()));
    let mut clusters = clusters.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = clusters.entry(major).or_insert_with(|| {
        let cluster = Cluster::start(&install, ClusterOptions::default()).unwrap_or_else(|e| {
            panic!("could not start the shared PostgreSQL {major} test cluster: {e}")
        });
        // Like the static in shared_cluster: never dropped, removed by its watchdog.
        Box::leak(Box::new(cluster))
    });
    Some(*cluster)
}

/// A new cluster of PostgreSQL `major` owned by the caller (dropped = removed), or `None` with
/// a SKIPPED line naming `test` when that major is not installed here.
pub fn start_major(major: u32, test: &str, opts: ClusterOptions) -> Option<Cluster> {
    let Some(install) = install_major(major) else {
        skip(
            test,
            &format!(
                "PostgreSQL {major} is not installed (run `eval \"$(scripts/fetch-pg.sh {major})\"` \
                 to set PGFERRY_PG_BIN_{major})"
            ),
        );
        return None;
    };
    Some(
        Cluster::start(&install, opts)
            .unwrap_or_else(|e| panic!("could not start a PostgreSQL {major} cluster: {e}")),
    )
}

/// Creates a new, empty database named `<prefix>_<pid>_<n>` and returns its name. `prefix`
/// is reduced to lowercase letters, digits and underscores so the name needs no quoting.
pub fn fresh_db(cluster: &Cluster, prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let clean: String = prefix
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(40)
        .collect();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("{clean}_{}_{n}", std::process::id());
    psql(cluster, "postgres", &format!("CREATE DATABASE {name}"));
    name
}

/// Runs `sql` (any number of statements) in `db` as the superuser and returns what the queries
/// printed: unaligned, tuples only, one row per line, fields separated by `|`, without the
/// trailing newline. Panics with psql's stderr if any statement fails.
pub fn psql(cluster: &Cluster, db: &str, sql: &str) -> String {
    let port = cluster.port().to_string();
    let args = [
        "-h",
        cluster.host(),
        "-p",
        &port,
        "-U",
        cluster.superuser(),
        "-d",
        db,
    ];
    run_psql(cluster.install(), &args, &[], sql)
}

/// Like [`psql`], but connecting with a libpq connection string (e.g. to test TLS modes or
/// passwords); `env` adds variables such as `PGPASSWORD`.
pub fn psql_conninfo(
    install: &PgInstall,
    conninfo: &str,
    env: &[(&str, &str)],
    sql: &str,
) -> String {
    run_psql(install, &["-d", conninfo], env, sql)
}

/// Like [`psql_conninfo`], but returns psql's stderr when it fails instead of panicking.
pub fn try_psql_conninfo(
    install: &PgInstall,
    conninfo: &str,
    env: &[(&str, &str)],
    sql: &str,
) -> Result<String, String> {
    try_run_psql(install, &["-d", conninfo], env, sql)
}

fn run_psql(install: &PgInstall, args: &[&str], env: &[(&str, &str)], sql: &str) -> String {
    try_run_psql(install, args, env, sql)
        .unwrap_or_else(|stderr| panic!("psql failed running {sql:?}:\n{stderr}"))
}

fn try_run_psql(
    install: &PgInstall,
    args: &[&str],
    env: &[(&str, &str)],
    sql: &str,
) -> Result<String, String> {
    let mut cmd = Command::new(tool(install, "psql"));
    // -q hides command tags ("CREATE TABLE"), so the output is only what queries return.
    cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-f", "-"])
        .args(args)
        // The caller's environment must not change what we connect to or how.
        .env_remove("PGPASSWORD")
        .env_remove("PGSERVICE")
        .env_remove("PGSSLMODE")
        .env_remove("PGOPTIONS")
        .env("PGCONNECT_TIMEOUT", "10")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("could not run {}: {e}", tool(install, "psql").display()));
    let mut stdin = child.stdin.take().unwrap();
    // A failing statement makes psql exit early; a broken pipe then is expected.
    let _ = stdin.write_all(sql.as_bytes());
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.strip_suffix('\n').unwrap_or(&text).to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A throwaway certificate authority, plus the certificates TLS tests need. Every key is an
/// ECDSA P-256 key in PKCS#8 PEM, which both the server and rustls accept.
pub struct TestPki {
    /// The CA certificate (what a client trusts).
    pub ca_pem: String,
    /// The CA's private key.
    pub ca_key: String,
    ca_cert: Certificate,
    ca_key_pair: KeyPair,
    /// Temporary files handed out by [`TestPki::write_pem`]; deleted with the struct.
    files: Mutex<Vec<tempfile::TempPath>>,
    ca_path: PathBuf,
}

impl Default for TestPki {
    fn default() -> Self {
        TestPki::new()
    }
}

impl TestPki {
    pub fn new() -> TestPki {
        let ca_key_pair = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "pgferry test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = params.self_signed(&ca_key_pair).unwrap();
        let mut pki = TestPki {
            ca_pem: ca_cert.pem(),
            ca_key: ca_key_pair.serialize_pem(),
            ca_cert,
            ca_key_pair,
            files: Mutex::new(Vec::new()),
            ca_path: PathBuf::new(),
        };
        pki.ca_path = pki.write_pem(&pki.ca_pem.clone());
        pki
    }

    /// A file holding [`TestPki::ca_pem`], for `sslrootcert`.
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// A server certificate signed by this CA, with these subjectAltNames (IP addresses are
    /// recognised as such) and common name. Returns `(cert_pem, key_pem)`.
    pub fn server_cert(&self, sans: &[&str], cn: &str) -> (String, String) {
        self.leaf(sans, cn, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A server certificate signed by this CA with a common name but no subjectAltName
    /// extension at all (host name checks must fall back to the CN).
    pub fn server_cert_cn_only(&self, cn: &str) -> (String, String) {
        self.leaf(&[], cn, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate signed by this CA; `cn` is the user name the server maps it to.
    pub fn client_cert(&self, cn: &str) -> (String, String) {
        self.leaf(&[], cn, ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// A self-signed certificate with basicConstraints CA:TRUE, used directly as the server
    /// certificate (and as its own root). Returns `(cert_pem, key_pem)`.
    pub fn self_signed_ca_server(&self, cn: &str, sans: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(owned(sans)).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// An unrelated CA, for "certificate signed by an unknown authority" tests.
    pub fn other_ca(&self) -> TestPki {
        TestPki::new()
    }

    /// Server TLS files for [`ClusterOptions::tls`]: a certificate for `sans`/`cn` signed by
    /// this CA, and this CA as the root for client certificates.
    pub fn server_tls(&self, sans: &[&str], cn: &str) -> TlsFiles {
        let (cert_pem, key_pem) = self.server_cert(sans, cn);
        TlsFiles {
            cert_pem,
            key_pem,
            ca_pem: Some(self.ca_pem.clone()),
        }
    }

    /// Writes `pem` to a temporary file that lives as long as this struct and returns its path
    /// (for `sslrootcert`, `sslcert`, `sslkey`; the file is 0600, as libpq wants for keys).
    pub fn write_pem(&self, pem: &str) -> PathBuf {
        let mut file = tempfile::Builder::new()
            .prefix("pgferry-test-")
            .suffix(".pem")
            .tempfile()
            .unwrap();
        file.write_all(pem.as_bytes()).unwrap();
        let path = file.into_temp_path();
        let owned = path.to_path_buf();
        self.files.lock().unwrap().push(path);
        owned
    }

    fn leaf(&self, sans: &[&str], cn: &str, usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(owned(sans)).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.ca_cert, &self.ca_key_pair)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn owned(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A cluster serving TLS with a certificate for `localhost` and `127.0.0.1` signed by its own
/// test CA (which also roots client certificates), for the TLS and authentication tests.
pub struct TlsCluster {
    pub pki: TestPki,
    pub cluster: Cluster,
}

impl TlsCluster {
    /// Starts it with these pg_hba.conf lines (and a Unix socket when `listen_unix`), then
    /// runs `setup_sql` (the roles the lines name) as the superuser.
    pub fn start(hba: &[&str], listen_unix: bool, setup_sql: &str) -> TlsCluster {
        let pki = TestPki::new();
        let cluster = start_cluster(
            "TLS",
            ClusterOptions {
                tls: Some(pki.server_tls(&["localhost", "127.0.0.1"], "localhost")),
                hba: Some(hba.iter().map(|l| l.to_string()).collect()),
                listen_unix,
                ..ClusterOptions::default()
            },
        );
        psql(&cluster, "postgres", setup_sql);
        TlsCluster { pki, cluster }
    }
}

/// A cluster whose server certificate is `tls` (with the default pg_hba.conf: everyone on
/// 127.0.0.1 trusted), for certificate shapes a client must accept or refuse.
pub fn start_with_certificate(tls: TlsFiles) -> Cluster {
    start_cluster(
        "TLS",
        ClusterOptions {
            tls: Some(tls),
            ..ClusterOptions::default()
        },
    )
}

/// A file of the shared test corpus (`../shared/corpus` next to the repository, or
/// `$PGFERRY_CORPUS`), e.g. `pagila/pagila-schema.sql`. `None` when the corpus is not on this
/// machine: callers skip with [`skip`], and `.ci/run` says so loudly.
pub fn corpus_file(relative: &str) -> Option<PathBuf> {
    let base = std::env::var_os("PGFERRY_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"));
    let path = base.join(relative);
    path.is_file().then_some(path)
}

/// Reports a skipped test on stderr (shown by `cargo test -- --nocapture` and in CI logs
/// through `.ci/run`'s own check).
pub fn skip(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why}");
}

/// The pgferry binary with a clean environment (no password or service variables of the
/// caller's), ready for more arguments, variables or pipes.
pub fn pgferry_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgferry"));
    cmd.args(args)
        .env_remove("PGPASSWORD")
        .env_remove("SOURCE_SERVICE_URI")
        .env_remove("TARGET_SERVICE_URI");
    cmd
}

/// Runs the pgferry binary with a clean environment ([`pgferry_command`]), and waits for it.
pub fn pgferry(args: &[&str]) -> std::process::Output {
    pgferry_command(args).output().expect("run pgferry")
}

/// Standard output then standard error, as one text (for assertion messages).
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A new default cluster owned by the caller (dropped = removed); `what` names it in the
/// panic when it cannot start.
pub fn start_cluster(what: &str, opts: ClusterOptions) -> Cluster {
    Cluster::start(&install(), opts)
        .unwrap_or_else(|e| panic!("could not start the {what} cluster: {e}"))
}

/// A second default cluster per test binary, beside [`shared_cluster`]: the target of tests
/// whose source is the shared one (pgferry refuses to migrate a server onto itself). Never
/// dropped, like the shared one.
pub fn target_cluster() -> &'static Cluster {
    static TARGET: OnceLock<Cluster> = OnceLock::new();
    TARGET.get_or_init(|| start_cluster("target", ClusterOptions::default()))
}

/// A source and a target cluster of their own per test binary, each started on first use and
/// never dropped (their watchdogs remove them). The source gets `source_settings` (e.g. a
/// short `wal_sender_timeout` for the live path); the target is a default cluster.
pub struct ClusterPair {
    source_settings: &'static [(&'static str, &'static str)],
    source: OnceLock<Cluster>,
    target: OnceLock<Cluster>,
}

impl ClusterPair {
    pub const fn new(source_settings: &'static [(&'static str, &'static str)]) -> ClusterPair {
        ClusterPair {
            source_settings,
            source: OnceLock::new(),
            target: OnceLock::new(),
        }
    }

    pub fn source(&self) -> &Cluster {
        self.source.get_or_init(|| {
            let settings = self
                .source_settings
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect();
            start_cluster(
                "source",
                ClusterOptions {
                    settings,
                    ..ClusterOptions::default()
                },
            )
        })
    }

    pub fn target(&self) -> &Cluster {
        self.target
            .get_or_init(|| start_cluster("target", ClusterOptions::default()))
    }
}

/// xorshift64: a deterministic pseudo-random sequence per seed, without a dependency, so a
/// failing randomised test can be replayed from its seed.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed | 1)
    }

    /// The next number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
