//! `pgferry check` must connect, or refuse to, exactly where libpq does. For each TLS and
//! authentication case the same connection string goes to `psql` (libpq, the oracle) and to the
//! `pgferry` binary; both must agree. When pgferry refuses, it must exit non-zero with one line
//! that names the server, and no output may contain the password.

mod support;

use pgferry::localpg::{Cluster, TlsFiles};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::{TestPki, TlsCluster};

const SCRAM_PW: &str = "Scram-pw-4711";
const MD5_PW: &str = "Md5-pw-4712";
const CLEAR_PW: &str = "Clear-pw-4713";

struct Fixture {
    pki: TestPki,
    other: TestPki,
    main: Cluster,
    self_signed: Cluster,
    cn_only: Cluster,
    /// An empty directory used as HOME, so no ~/.postgresql/root.crt or ~/.pgpass of the
    /// machine changes the outcome.
    home: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let TlsCluster { pki, cluster: main } = TlsCluster::start(
            &[
                "host all postgres 127.0.0.1/32 trust",
                "hostssl all tlsonly 127.0.0.1/32 scram-sha-256",
                "hostnossl all tlsonly 127.0.0.1/32 reject",
                "host all scram 127.0.0.1/32 scram-sha-256",
                "host all md5user 127.0.0.1/32 md5",
                "host all clear 127.0.0.1/32 password",
            ],
            false,
            &format!(
                "CREATE ROLE tlsonly LOGIN PASSWORD '{SCRAM_PW}';
                 CREATE ROLE scram LOGIN PASSWORD '{SCRAM_PW}';
                 CREATE ROLE clear LOGIN PASSWORD '{CLEAR_PW}';
                 SET password_encryption = 'md5';
                 CREATE ROLE md5user LOGIN PASSWORD '{MD5_PW}';"
            ),
        );
        let (cert_pem, key_pem) = pki.self_signed_ca_server("localhost", &["localhost"]);
        let self_signed_pem = cert_pem.clone();
        let self_signed = support::start_with_certificate(TlsFiles {
            cert_pem,
            key_pem,
            ca_pem: None,
        });
        let (cert_pem, key_pem) = pki.server_cert_cn_only("localhost");
        let cn_only = support::start_with_certificate(TlsFiles {
            cert_pem,
            key_pem,
            ca_pem: None,
        });
        let home = tempfile::tempdir().unwrap();
        let f = Fixture {
            pki,
            other: TestPki::new(),
            main,
            self_signed,
            cn_only,
            home,
        };
        // The self-signed certificate is its own root: keep it as a file next to the others.
        std::fs::write(self_signed_root(&f), self_signed_pem).unwrap();
        f
    })
}

fn self_signed_root(f: &Fixture) -> std::path::PathBuf {
    f.home.path().join("self-signed-root.crt")
}

struct Outcome {
    ok: bool,
    output: String,
    elapsed: Duration,
}

fn common_env(cmd: &mut Command, home: &Path, extra: &[(&str, &str)]) {
    for var in [
        "PGPASSWORD",
        "PGSSLMODE",
        "PGSSLROOTCERT",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGSERVICE",
        "PGOPTIONS",
        "PGCHANNELBINDING",
        "SOURCE_SERVICE_URI",
        "TARGET_SERVICE_URI",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HOME", home)
        .env("PGPASSFILE", home.join("no-pgpass"));
    for (k, v) in extra {
        cmd.env(k, v);
    }
}

fn run_libpq(conninfo: &str, env: &[(&str, &str)]) -> Outcome {
    let f = fixture();
    let mut cmd = Command::new(support::tool(&support::install(), "psql"));
    cmd.args(["-X", "-At", "-c", "SELECT 1", "-d", conninfo]);
    common_env(&mut cmd, f.home.path(), env);
    let start = Instant::now();
    let out = cmd.output().unwrap();
    Outcome {
        ok: out.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        elapsed: start.elapsed(),
    }
}

fn run_pgferry(conninfo: &str, env: &[(&str, &str)]) -> Outcome {
    let f = fixture();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgferry"));
    cmd.args(["check", "--json", "-s", conninfo]);
    common_env(&mut cmd, f.home.path(), env);
    let start = Instant::now();
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        let doc: serde_json::Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("check --json printed invalid JSON ({e}): {stdout}"));
        assert_eq!(doc["servers"][0]["wal_level"], "logical", "{stdout}");
    } else {
        assert_eq!(
            out.status.code(),
            Some(1),
            "a refused connection exits 1: {stderr}"
        );
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "one-line reason expected, got: {stderr}"
        );
        assert!(
            stderr.contains("source"),
            "the reason must name the server: {stderr}"
        );
    }
    Outcome {
        ok: out.status.success(),
        output: format!("{stdout}{stderr}"),
        elapsed: start.elapsed(),
    }
}

/// Runs both, asserts they agree on success, and that no password reaches pgferry's output.
fn agree(case: &str, conninfo: &str, env: &[(&str, &str)], expect_ok: bool) -> Outcome {
    let libpq = run_libpq(conninfo, env);
    let ours = run_pgferry(conninfo, env);
    assert_eq!(
        libpq.ok, expect_ok,
        "{case}: libpq itself did not behave as the test expects: {}",
        libpq.output
    );
    assert_eq!(
        ours.ok,
        libpq.ok,
        "{case}: pgferry {} where libpq {}.\npgferry: {}\nlibpq: {}",
        if ours.ok { "connected" } else { "refused" },
        if libpq.ok { "connected" } else { "refused" },
        ours.output,
        libpq.output
    );
    eprintln!("[{case}] pgferry: {}", ours.output.trim());
    for pw in [SCRAM_PW, MD5_PW, CLEAR_PW, "Wrong-pw-9999"] {
        assert!(
            !ours.output.contains(pw),
            "{case}: password in pgferry's output: {}",
            ours.output
        );
    }
    ours
}

fn base(cluster: &Cluster, host: &str, user: &str) -> String {
    format!(
        "host={host} port={} dbname=postgres user={user} connect_timeout=5",
        cluster.port()
    )
}

#[test]
fn verify_full_with_the_right_ca_connects_and_reports_tls() {
    let f = fixture();
    let ca = f.pki.ca_path().display().to_string();
    let conn = format!(
        "{} password={SCRAM_PW} sslmode=verify-full sslrootcert={ca}",
        base(&f.main, "localhost", "tlsonly")
    );
    let out = agree("verify-full good cert", &conn, &[], true);
    assert!(
        out.output.contains("\"version\": \"TLSv1."),
        "TLS version expected in: {}",
        out.output
    );
}

#[test]
fn verify_full_refuses_a_host_name_mismatch() {
    let f = fixture();
    let ca = f.pki.ca_path().display().to_string();
    let conn = format!(
        "{} hostaddr=127.0.0.1 password={SCRAM_PW} sslmode=verify-full sslrootcert={ca}",
        base(&f.main, "wrong.example", "tlsonly")
    );
    let out = agree("verify-full hostname mismatch", &conn, &[], false);
    assert!(out.output.contains("wrong.example"), "{}", out.output);
    // verify-ca does not check the name: the same string with verify-ca connects.
    let conn = conn.replace("verify-full", "verify-ca");
    agree("verify-ca ignores the name", &conn, &[], true);
}

#[test]
fn an_unknown_ca_is_refused() {
    let f = fixture();
    let other = f.other.ca_path().display().to_string();
    for mode in ["verify-ca", "verify-full", "require"] {
        let conn = format!(
            "{} password={SCRAM_PW} sslmode={mode} sslrootcert={other}",
            base(&f.main, "localhost", "tlsonly")
        );
        agree(&format!("unknown CA with {mode}"), &conn, &[], false);
    }
}

#[test]
fn require_without_a_root_certificate_does_not_check_it() {
    let f = fixture();
    let conn = format!(
        "{} password={SCRAM_PW} sslmode=require",
        base(&f.main, "localhost", "tlsonly")
    );
    agree("require, no root cert", &conn, &[], true);
}

#[test]
fn require_with_a_root_cert_file_in_home_behaves_as_verify_ca() {
    let f = fixture();
    // A separate HOME holding ~/.postgresql/root.crt of an unrelated CA: libpq then verifies.
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".postgresql")).unwrap();
    std::fs::write(home.path().join(".postgresql/root.crt"), &f.other.ca_pem).unwrap();
    let conn = format!(
        "{} password={SCRAM_PW} sslmode=require",
        base(&f.main, "localhost", "tlsonly")
    );
    let home_str = home.path().display().to_string();
    agree(
        "require + ~/.postgresql/root.crt of another CA",
        &conn,
        &[("HOME", &home_str)],
        false,
    );
    std::fs::write(home.path().join(".postgresql/root.crt"), &f.pki.ca_pem).unwrap();
    agree(
        "require + ~/.postgresql/root.crt of the right CA",
        &conn,
        &[("HOME", &home_str)],
        true,
    );
}

#[test]
fn disable_against_a_hostssl_only_entry_is_refused_with_the_servers_reason() {
    let f = fixture();
    let conn = format!(
        "{} password={SCRAM_PW} sslmode=disable",
        base(&f.main, "127.0.0.1", "tlsonly")
    );
    let out = agree("sslmode=disable vs hostssl-only", &conn, &[], false);
    assert!(
        out.output.contains("pg_hba.conf"),
        "the server's reason should be kept: {}",
        out.output
    );
}

#[test]
fn a_wrong_scram_password_is_refused_without_echoing_it() {
    let f = fixture();
    let conn = format!(
        "{} password=Wrong-pw-9999 sslmode=require",
        base(&f.main, "localhost", "scram")
    );
    let out = agree("wrong SCRAM password", &conn, &[], false);
    assert!(
        out.output.contains("password authentication failed"),
        "{}",
        out.output
    );
}

#[test]
fn nothing_listening_is_refused_within_connect_timeout() {
    // A listener that never answers the startup packet: only the timeout can end the attempt.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let conn = format!(
        "host=127.0.0.1 port={port} dbname=postgres user=x connect_timeout=2 sslmode=disable"
    );
    let out = agree("silent server", &conn, &[], false);
    assert!(
        out.elapsed < Duration::from_secs(5),
        "took {:?}",
        out.elapsed
    );
    drop(silent);
    // And a closed port is refused at once.
    let conn = format!("host=127.0.0.1 port={port} dbname=postgres user=x connect_timeout=2");
    agree("closed port", &conn, &[], false);
}

#[test]
fn the_password_file_is_used() {
    let f = fixture();
    let passfile = f.home.path().join("pgpass-ok");
    std::fs::write(
        &passfile,
        format!("# test\nlocalhost:{}:*:scram:{SCRAM_PW}\n", f.main.port()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    let pf = passfile.display().to_string();
    let conn = format!("{} sslmode=require", base(&f.main, "localhost", "scram"));
    agree(".pgpass lookup", &conn, &[("PGPASSFILE", &pf)], true);
    // No entry for this user: both fail for lack of a password.
    let conn = format!("{} sslmode=require", base(&f.main, "localhost", "md5user"));
    agree(
        ".pgpass without a matching line",
        &conn,
        &[("PGPASSFILE", &pf)],
        false,
    );
}

#[test]
fn md5_and_clear_text_password_methods() {
    let f = fixture();
    let conn = format!(
        "{} password={MD5_PW} sslmode=disable",
        base(&f.main, "127.0.0.1", "md5user")
    );
    agree("md5", &conn, &[], true);
    let conn = format!(
        "{} password={CLEAR_PW} sslmode=require",
        base(&f.main, "127.0.0.1", "clear")
    );
    agree("password (clear text)", &conn, &[], true);
}

#[test]
fn channel_binding_require_needs_tls() {
    let f = fixture();
    let conn = format!(
        "{} password={SCRAM_PW} sslmode=require channel_binding=require",
        base(&f.main, "localhost", "scram")
    );
    agree("channel_binding=require over TLS", &conn, &[], true);
    let conn = format!(
        "{} password={SCRAM_PW} sslmode=disable channel_binding=require",
        base(&f.main, "127.0.0.1", "scram")
    );
    agree("channel_binding=require over plain TCP", &conn, &[], false);
}

#[test]
fn a_self_signed_ca_server_certificate_trusted_directly() {
    let f = fixture();
    let root = self_signed_root(f).display().to_string();
    let conn = format!(
        "{} sslmode=verify-full sslrootcert={root}",
        base(&f.self_signed, "localhost", "postgres")
    );
    agree(
        "self-signed CA:TRUE server cert, verify-full",
        &conn,
        &[],
        true,
    );
    let ca = f.pki.ca_path().display().to_string();
    let conn = format!(
        "{} sslmode=verify-full sslrootcert={ca}",
        base(&f.self_signed, "localhost", "postgres")
    );
    agree("self-signed server cert, other root", &conn, &[], false);
}

#[test]
fn a_host_name_only_in_the_cn() {
    let f = fixture();
    let ca = f.pki.ca_path().display().to_string();
    let conn = format!(
        "{} sslmode=verify-full sslrootcert={ca}",
        base(&f.cn_only, "localhost", "postgres")
    );
    agree("CN-only certificate, matching name", &conn, &[], true);
    let conn = format!(
        "{} hostaddr=127.0.0.1 sslmode=verify-full sslrootcert={ca}",
        base(&f.cn_only, "other.example", "postgres")
    );
    agree("CN-only certificate, other name", &conn, &[], false);
}

#[test]
fn uri_form_agrees_too() {
    let f = fixture();
    let ca = f.pki.ca_path().display().to_string();
    let uri = format!(
        "postgresql://tlsonly:{}@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
        SCRAM_PW.replace('-', "%2D"),
        f.main.port(),
        ca.replace('/', "%2F")
    );
    agree("URI with percent-encoding", &uri, &[], true);
}
