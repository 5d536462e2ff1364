//! The command line as a script sees it, on real clusters: names that match nothing are
//! refused before anything starts (exit 2), a live migration does not silently become a
//! one-shot copy (exit 3), the exit codes of refusals and interruptions, one JSON document on
//! stdout also on failure, and archives readable by their owner only.

mod support;

use pgferry::localpg::Cluster;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use support::{fresh_db, output_text as text, pgferry, psql, shared_cluster};

/// The target: a cluster of its own (the shared one is the source; migrating a server onto
/// itself is refused, which would hide what these tests look at).
fn target() -> &'static Cluster {
    support::target_cluster()
}

/// A local port with nothing listening.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Nothing of pgferry on the target: no database `db`, no state schema in the bootstrap
/// database `boot`; and no slot or publication on the source.
fn assert_untouched(db: &str, boot: &str) {
    assert_eq!(
        psql(
            target(),
            boot,
            &format!(
                "SELECT (SELECT count(*) FROM pg_database WHERE datname = '{db}') || '/' || \
                        (SELECT count(*) FROM pg_namespace WHERE nspname = 'pgferry')"
            )
        ),
        "0/0",
        "the target was changed"
    );
    assert_eq!(
        psql(
            shared_cluster(),
            db,
            "SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgferry%' \
                     AND database = current_database()) || '/' || \
                    (SELECT count(*) FROM pg_publication WHERE pubname LIKE 'pgferry%')"
        ),
        "0/0",
        "the source was changed"
    );
}

/// `migrate --databases db` into the target, with `boot` as the bootstrap database (one per
/// test: tests run at the same time, and a migration holds a lock in its bootstrap database).
fn migrate(db: &str, boot: &str, extra: &[&str]) -> std::process::Output {
    let (s, t) = (shared_cluster().uri("postgres"), target().uri(boot));
    let mut args = vec!["migrate", "-s", &s, "-t", &t, "--databases", db];
    args.extend_from_slice(extra);
    pgferry(&args)
}

#[test]
fn names_that_match_nothing_are_refused_before_starting() {
    let src = shared_cluster();
    let db = fresh_db(src, "filters");
    psql(
        src,
        &db,
        "CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE u (id int PRIMARY KEY); \
         INSERT INTO t VALUES (1);",
    );
    let boot = fresh_db(target(), "boot");
    let live = ["--max-replication-lag", "0", "--stop-replication"];
    for (extra, named) in [
        (
            vec!["--with-table", "nosuchtable"],
            "--with-table nosuchtable",
        ),
        (vec!["--skip-table", "t,nosuch"], "--skip-table nosuch"),
        (vec!["--with-table", "otherdb.public.t"], "otherdb.public.t"),
        (vec!["-f", "nosuchdb"], "nosuchdb"),
        (vec!["--force-method", "nosuchdb=dump"], "nosuchdb=dump"),
    ] {
        for validate in [false, true] {
            let mut args = extra.clone();
            if validate {
                args.push("--validate");
            } else {
                args.extend(live);
            }
            let out = migrate(&db, &boot, &args);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
            assert!(text(&out).contains(named), "{args:?}: {}", text(&out));
            assert!(
                !text(&out).contains("--skip-table t,"),
                "{args:?}: t matches: {}",
                text(&out)
            );
            assert_untouched(&db, &boot);
        }
    }
    // A database that does not exist: the same usage error, for --validate too.
    let out = migrate("nosuchdb", &boot, &["--validate"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("nosuchdb"), "{}", text(&out));

    // dump: a typo in a table name writes nothing.
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a");
    let a = archive.to_str().unwrap();
    for (flag, name) in [
        ("--with-table", "pgbench_acounts"),
        ("--skip-table", "nosuch"),
    ] {
        let out = pgferry(&["dump", "-s", &src.uri(&db), "-o", a, flag, name]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            text(&out).contains(&format!("{flag} {name}")),
            "{}",
            text(&out)
        );
        assert!(!archive.exists(), "an archive was written");
    }
    let out = pgferry(&["dump", "-s", &src.uri(&db), "-o", a, "--with-table", "t"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("dumped 1 data file (1 row,"),
        "{}",
        text(&out)
    );

    // verify: a name that matches nothing is a usage error too.
    let out = pgferry(&[
        "verify",
        "-s",
        &src.uri(&db),
        "-t",
        &src.uri(&db),
        "--tables",
        "public.nosuch",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("nosuch"), "{}", text(&out));
}

#[test]
fn a_live_migration_refuses_tables_without_replica_identity() {
    let src = shared_cluster();
    let db = fresh_db(src, "identity");
    psql(
        src,
        &db,
        "CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE notes (body text); \
         CREATE TABLE other (body text); INSERT INTO notes VALUES ('n');",
    );
    let boot = fresh_db(target(), "boot");
    // Live intent, as the user ran it: refused, both tables listed, nothing created.
    let out = migrate(
        &db,
        &boot,
        &["--max-replication-lag", "0", "--stop-replication"],
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(3), "{said}");
    for expected in [
        "public.notes",
        "public.other",
        "--replica-identity-full",
        "--skip-table",
        "--force-method dump",
    ] {
        assert!(said.contains(expected), "{expected:?} missing: {said}");
    }
    assert_untouched(&db, &boot);

    // --validate says the same, with the status' method names in JSON.
    let out = migrate(&db, &boot, &["--validate"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("public.notes"), "{}", text(&out));
    let out = migrate(&db, &boot, &["--validate", "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let plan = &report["databases"][0];
    assert_eq!(plan["method"], "replication", "{report}");
    assert!(
        plan["problems"][0]
            .as_str()
            .is_some_and(|p| p.contains("public.notes")),
        "{report}"
    );

    // Each of the three choices lets it proceed.
    let only_this = format!("{db}=dump");
    for (choice, method) in [
        (vec!["--force-method", "dump"], "pg_dump"),
        (vec!["--force-method", &only_this], "pg_dump"),
        (vec!["--skip-table", "notes,other"], "replication"),
        (vec!["--replica-identity-full"], "replication"),
    ] {
        let mut args = choice.clone();
        args.extend(["--validate", "--json"]);
        let out = migrate(&db, &boot, &args);
        assert_eq!(out.status.code(), Some(0), "{choice:?}: {}", text(&out));
        let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
        assert_eq!(report["databases"][0]["method"], method, "{report}");
    }
    // --validate changes nothing, whatever the flags (--replica-identity-full included).
    assert_eq!(
        psql(
            src,
            &db,
            "SELECT string_agg(relreplident::text, '' ORDER BY relname) FROM pg_class \
             WHERE relname IN ('notes', 'other')"
        ),
        "dd"
    );
    assert_untouched(&db, &boot);
}

#[test]
fn unreachable_servers_and_the_source_prefix() {
    let src = shared_cluster();
    let db = fresh_db(src, "unreachable");
    let closed = format!(
        "postgres://u@127.0.0.1:{}/db?connect_timeout=2",
        closed_port()
    );
    // migrate --validate: an unreachable source is a failure (1), named as the source.
    let out = pgferry(&[
        "migrate",
        "-s",
        &closed,
        "-t",
        &target().uri("postgres"),
        "--validate",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pgferry: source: "),
        "{}",
        text(&out)
    );
    let out = pgferry(&["migrate", "-s", &src.uri(&db), "-t", &closed, "--validate"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("target"), "{}", text(&out));

    // check --json: the source's report is kept when the target cannot be reached.
    let out = pgferry(&["check", "--json", "-s", &src.uri(&db), "-t", &closed]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["servers"][0]["role"], "source", "{doc}");
    assert_eq!(doc["servers"].as_array().map(Vec::len), Some(1), "{doc}");
    assert_eq!(doc["error"]["exit_code"], 1, "{doc}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("target: ")),
        "{doc}"
    );
    // Without --json the source's report is printed too.
    let out = pgferry(&["check", "-s", &src.uri(&db), "-t", &closed]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("server version"),
        "{}",
        text(&out)
    );
}

/// Every line of stdout is JSON; returns the last one.
fn last_json_line(out: &std::process::Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut last = Value::Null;
    for line in stdout.lines() {
        last = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    last
}

#[test]
fn json_output_on_failure() {
    let src = shared_cluster();
    let db = fresh_db(src, "jsonfail");
    psql(src, &db, "CREATE TABLE notes (body text)");
    let boot = fresh_db(target(), "boot");
    // An event stream ends with an error event carrying the exit code.
    let out = migrate(&db, &boot, &["--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let last = last_json_line(&out);
    assert_eq!(last["type"], "error", "{last}");
    assert_eq!(last["data"]["exit_code"], 3, "{last}");
    assert!(last["data"]["preflight"]["databases"].is_array(), "{last}");

    // clone into a database that is not empty: refused (3), as the last event.
    let busy = fresh_db(target(), "jsonfail_busy");
    psql(target(), &busy, "CREATE TABLE x (id int)");
    let out = pgferry(&[
        "clone",
        "--json",
        "-s",
        &src.uri(&db),
        "-t",
        &target().uri(&busy),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(last_json_line(&out)["data"]["exit_code"], 3);

    // A one-document command: the error document.
    let out = pgferry(&[
        "verify",
        "--json",
        "-s",
        &src.uri(&db),
        "-t",
        &src.uri(&db),
        "--tables",
        "nosuch",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["error"]["exit_code"], 2, "{doc}");
}

#[test]
fn clone_follow_interrupted_exits_130() {
    let src = shared_cluster();
    let db = fresh_db(src, "follow_sigterm");
    psql(
        src,
        &db,
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100);",
    );
    let (s, t) = (src.uri(&db), target().uri(&db));
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(["clone", "--follow", "-s", &s, "-t", &t])
        .env_remove("PGPASSWORD")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pgferry");
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(line) if line.contains("streaming from") => break,
            _ if std::time::Instant::now() > deadline => {
                let _ = child.kill();
                panic!("never streaming");
            }
            _ => {}
        }
    }
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = child.wait().unwrap();
    let log = reader.join().unwrap();
    assert_eq!(status.code(), Some(130), "{log}");
    assert!(log.contains("interrupted"), "{log}");
    assert!(!log.contains("cutover done"), "{log}");
    // Leave nothing behind on the shared source.
    let out = pgferry(&["cleanup", "-s", &s, "-t", &t]);
    assert!(out.status.success(), "{}", text(&out));
}

#[cfg(unix)]
#[test]
fn archives_are_owner_only_and_a_missing_file_is_named() {
    use std::os::unix::fs::PermissionsExt;
    let src = shared_cluster();
    let db = fresh_db(src, "owner_only");
    psql(
        src,
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a'); \
         SELECT lo_from_bytea(0, 'blob');",
    );
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let out = pgferry(&["dump", "-s", &src.uri(&db), "-o", archive.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("1 large object "), "{}", text(&out));
    let mut checked = 0;
    let mut stack = vec![archive.clone()];
    while let Some(path) = stack.pop() {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        if path.is_dir() {
            assert_eq!(mode, 0o700, "{}", path.display());
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            assert_eq!(mode, 0o600, "{}", path.display());
        }
        checked += 1;
    }
    assert!(checked > 4, "only {checked} entries in the archive");

    // A data file gone: the restore names it and says what to do, before touching the target.
    let data = std::fs::read_dir(archive.join("data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .expect("a data file");
    std::fs::remove_file(&data).unwrap();
    let target_db = format!("{db}_restored");
    let out = pgferry(&[
        "restore",
        "-i",
        archive.to_str().unwrap(),
        "-t",
        &target().uri(&target_db),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&data.display().to_string()) && text(&out).contains("is missing"),
        "{}",
        text(&out)
    );
    assert_eq!(
        psql(
            target(),
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{target_db}'")
        ),
        "0"
    );
}
