//! The throwaway-cluster harness itself: configuration, TLS, authentication, and above all that
//! no server outlives its owner.

mod support;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pgferry::localpg::{Cluster, ClusterOptions, LocalPgError, PgInstall};
use support::{fresh_db, install, psql, psql_conninfo, shared_cluster, try_psql_conninfo, TestPki};

/// The postmaster's pid, from the first line of `postmaster.pid`.
fn postmaster_pid(cluster: &Cluster) -> i32 {
    let text = std::fs::read_to_string(cluster.data_dir().join("postmaster.pid")).unwrap();
    text.lines().next().unwrap().trim().parse().unwrap()
}

/// Alive and not a zombie (a container's pid 1 may never reap the orphaned postmaster).
fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

fn accepts_connections(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

/// Polls `cond` for up to `limit`.
fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn shared_cluster_is_configured_for_logical_replication() {
    let cluster = shared_cluster();
    assert_eq!(psql(cluster, "postgres", "SHOW wal_level"), "logical");
    assert_eq!(psql(cluster, "postgres", "SHOW fsync"), "off");
    assert_eq!(
        psql(cluster, "postgres", "SHOW max_replication_slots"),
        "20"
    );
    assert_eq!(psql(cluster, "postgres", "SHOW server_encoding"), "UTF8");
    assert_eq!(
        psql(cluster, "postgres", "SELECT current_user"),
        cluster.superuser()
    );
    assert_eq!(
        psql(cluster, "postgres", "SHOW server_version_num")[..2],
        cluster.major().to_string()
    );
    assert!(cluster.socket_dir().is_none());
    assert!(cluster.uri("db").starts_with(&format!(
        "postgres://postgres@127.0.0.1:{}/db",
        cluster.port()
    )));
}

#[test]
fn fresh_db_gives_distinct_empty_databases() {
    let cluster = shared_cluster();
    let a = fresh_db(cluster, "Fresh-DB test");
    let b = fresh_db(cluster, "Fresh-DB test");
    assert_ne!(a, b);
    assert!(a.starts_with("fresh_db_test_"), "{a}");
    psql(
        cluster,
        &a,
        "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2);",
    );
    assert_eq!(psql(cluster, &a, "SELECT sum(x) FROM t"), "3");
    assert_eq!(
        psql(
            cluster,
            &b,
            "SELECT count(*) FROM pg_class WHERE relname = 't'"
        ),
        "0"
    );
}

#[test]
fn drop_stops_the_server_and_removes_the_directory() {
    let cluster = Cluster::start(&install(), ClusterOptions::default()).unwrap();
    let port = cluster.port();
    let data_dir = cluster.data_dir().to_path_buf();
    let root = data_dir.parent().unwrap().to_path_buf();
    let pid = postmaster_pid(&cluster);
    assert!(process_alive(pid));
    assert!(accepts_connections(port));

    drop(cluster);

    assert!(!root.exists(), "{} still exists", root.display());
    assert!(!process_alive(pid), "postmaster {pid} still running");
    assert!(!accepts_connections(port), "port {port} still accepts");
}

#[test]
fn tls_cluster_serves_the_given_certificate() {
    let pki = TestPki::new();
    let opts = ClusterOptions {
        tls: Some(pki.server_tls(&["127.0.0.1", "localhost"], "pgferry-test-server")),
        ..Default::default()
    };
    let cluster = Cluster::start(&install(), opts).unwrap();
    assert_eq!(psql(&cluster, "postgres", "SHOW ssl"), "on");

    let key_mode = std::fs::metadata(cluster.data_dir().join("server.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);

    // libpq checks the chain and the host name against our CA: the server uses our files.
    let verified = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=verify-full sslrootcert={}",
        cluster.port(),
        pki.ca_path().display()
    );
    let sql = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    assert_eq!(psql_conninfo(cluster.install(), &verified, &[], sql), "t");

    // And a client trusting another CA refuses it.
    let other = pki.other_ca();
    let unknown = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=verify-ca sslrootcert={}",
        cluster.port(),
        other.ca_path().display()
    );
    let err = try_psql_conninfo(cluster.install(), &unknown, &[], sql).unwrap_err();
    assert!(err.contains("certificate verify failed"), "{err}");
}

#[test]
fn password_hba_reload_unix_socket_and_restart() {
    let password = "pgferry-test-pw";
    let opts = ClusterOptions {
        superuser_password: Some(password.to_string()),
        listen_unix: true,
        settings: vec![("work_mem".into(), "7MB".into())],
        ..Default::default()
    };
    let cluster = Cluster::start(&install(), opts).unwrap();
    let socket_dir = cluster.socket_dir().unwrap().to_path_buf();
    assert!(socket_dir
        .join(format!(".s.PGSQL.{}", cluster.port()))
        .exists());
    assert_eq!(psql(&cluster, "postgres", "SHOW work_mem"), "7MB");

    // Require the password over TCP, keep trust on the socket.
    cluster
        .reload_hba(&[
            "local all all trust".to_string(),
            "host all all 127.0.0.1/32 scram-sha-256".to_string(),
        ])
        .unwrap();
    let tcp = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable",
        cluster.port()
    );
    let err = try_psql_conninfo(cluster.install(), &tcp, &[], "SELECT 1").unwrap_err();
    assert!(err.contains("password"), "{err}");
    let ok = psql_conninfo(
        cluster.install(),
        &tcp,
        &[("PGPASSWORD", password)],
        "SELECT 1",
    );
    assert_eq!(ok, "1");
    let wrong = try_psql_conninfo(
        cluster.install(),
        &tcp,
        &[("PGPASSWORD", "not-it")],
        "SELECT 1",
    )
    .unwrap_err();
    assert!(wrong.contains("password authentication failed"), "{wrong}");

    let via_socket = format!(
        "host={} port={} user=postgres dbname=postgres",
        socket_dir.display(),
        cluster.port()
    );
    assert_eq!(
        psql_conninfo(cluster.install(), &via_socket, &[], "SELECT 2"),
        "2"
    );

    // A pg_hba.conf the server rejects is an error, and the old rules stay in force.
    let err = cluster
        .reload_hba(&["host all all 127.0.0.1/32 no-such-method".to_string()])
        .unwrap_err();
    assert!(matches!(err, LocalPgError::Reload { .. }), "{err}");
    assert!(try_psql_conninfo(cluster.install(), &tcp, &[], "SELECT 1").is_err());

    // The rejected file is still on disk and would stop a restart: put a good one back.
    cluster
        .reload_hba(&[
            "local all all trust".to_string(),
            "host all all 127.0.0.1/32 trust".to_string(),
        ])
        .unwrap();
    assert_eq!(psql_conninfo(cluster.install(), &tcp, &[], "SELECT 3"), "3");

    let port = cluster.port();
    let pid = postmaster_pid(&cluster);
    cluster.restart().unwrap();
    assert_ne!(postmaster_pid(&cluster), pid);
    assert_eq!(cluster.port(), port);
    assert_eq!(
        psql_conninfo(cluster.install(), &via_socket, &[], "SHOW work_mem"),
        "7MB"
    );
}

#[test]
fn invalid_bin_dir_is_a_clear_error() {
    let started = Instant::now();
    let empty = tempfile::tempdir().unwrap();
    let err = PgInstall::from_bin_dir(empty.path()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LocalPgError::InvalidBinDir { .. }), "{msg}");
    assert!(msg.contains("missing initdb, pg_ctl, postgres"), "{msg}");
    assert!(msg.contains(&empty.path().display().to_string()), "{msg}");

    // Programs present but not PostgreSQL's: the version check says so instead of hanging.
    let fake = tempfile::tempdir().unwrap();
    for name in ["initdb", "pg_ctl", "postgres"] {
        write_script(fake.path(), name, "#!/bin/sh\necho 'not postgres'\n");
    }
    let err = PgInstall::from_bin_dir(fake.path()).unwrap_err();
    assert!(matches!(err, LocalPgError::Version { .. }), "{err}");
    assert!(err.to_string().contains("not postgres"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn failed_start_reports_the_server_log_and_cleans_up() {
    let opts = ClusterOptions {
        settings: vec![("shared_buffers".into(), "not-a-size".into())],
        ..Default::default()
    };
    let err = Cluster::start(&install(), opts).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LocalPgError::StartFailed { .. }), "{msg}");
    assert!(msg.contains("shared_buffers"), "{msg}");
    // Other tests' clusters may exist concurrently; only this one has the bad setting.
    let leaked: Vec<_> = cluster_dirs()
        .into_iter()
        .filter(|d| {
            std::fs::read_to_string(d.join("data").join("pgferry.conf"))
                .is_ok_and(|c| c.contains("not-a-size"))
        })
        .collect();
    assert!(leaked.is_empty(), "left behind: {leaked:?}");
}

#[test]
fn watchdog_cleans_up_after_the_owner_is_killed() {
    const CHILD_ENV: &str = "PGFERRY_LOCALPG_WATCHDOG_CHILD";
    // libtest prints "test <name> ... " without a newline first, so the marker is searched
    // for anywhere in a line.
    const MARKER: &str = "PGFERRY-CHILD-CLUSTER ";
    if std::env::var_os(CHILD_ENV).is_some() {
        // Child role: start a cluster, report it, then wait to be killed.
        let cluster = Cluster::start(&install(), ClusterOptions::default()).unwrap();
        println!(
            "{MARKER}{} {} {}",
            postmaster_pid(&cluster),
            cluster.port(),
            cluster.data_dir().display()
        );
        std::mem::forget(cluster);
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    }

    // Parent role: run this same test in a child process, SIGKILL it, expect cleanup.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "watchdog_cleans_up_after_the_owner_is_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = BufReader::new(stdout)
        .lines()
        .map(Result::unwrap)
        .find_map(|l| l.split_once(MARKER).map(|(_, rest)| rest.to_string()))
        .expect("the child exited without starting a cluster");
    let mut parts = line.splitn(3, ' ');
    let pid: i32 = parts.next().unwrap().parse().unwrap();
    let port: u16 = parts.next().unwrap().parse().unwrap();
    let data_dir = PathBuf::from(parts.next().unwrap());
    assert!(process_alive(pid));

    child.kill().unwrap();
    child.wait().unwrap();

    let root = data_dir.parent().unwrap().to_path_buf();
    assert!(
        eventually(Duration::from_secs(30), || !process_alive(pid)),
        "postmaster {pid} outlived its owner"
    );
    assert!(
        eventually(Duration::from_secs(30), || !root.exists()),
        "{} outlived its owner",
        root.display()
    );
    assert!(!accepts_connections(port));
}

fn write_script(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Cluster directories of this process currently in the temp directory.
fn cluster_dirs() -> Vec<PathBuf> {
    let prefix = format!("pgferry-pg-{}-", std::process::id());
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}
