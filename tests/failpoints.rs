//! Crashes at the dangerous instants (src/failpoint.rs), then a resume: identical data, each
//! time. Needs the `failpoints` feature (the test command enables it); without it this file
//! is empty.
#![cfg(feature = "failpoints")]

mod support;

use pgferry::conn::{connect, ConnConfig};
use pgferry::localpg::{Cluster, ClusterOptions};
use pgferry::verify::{verify, VerifyOptions};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use support::{output_text, psql};

fn start(settings: &[(&str, &str)]) -> Cluster {
    Cluster::start(
        &support::install(),
        ClusterOptions {
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..ClusterOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs pgferry with `failpoints` armed; returns its output.
fn pgferry_with(failpoints: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(args)
        .env("PGFERRY_FAILPOINTS", failpoints)
        .output()
        .unwrap()
}

fn crashed_at(out: &Output, name: &str) {
    let text = output_text(out);
    assert!(
        !out.status.success() && text.contains(&format!("failpoint {name}: crashing")),
        "pgferry did not crash at {name}:\n{text}"
    );
}

/// Small transactions on `t` (insert, update, delete) until stopped; every error panics.
fn writer(uri: String, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let session = connect(&ConnConfig::from_conn_str(&uri).unwrap())
                .await
                .unwrap();
            let mut n: u64 = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let id = 1 + (n * 7919) % 2000;
                session
                    .client
                    .batch_execute(&format!(
                        "BEGIN; INSERT INTO t (v) VALUES ('w{n}'); \
                         UPDATE t SET v = v || '+' WHERE id = {id}; \
                         DELETE FROM t WHERE id = {} ; COMMIT;",
                        id + 1
                    ))
                    .await
                    .unwrap_or_else(|e| panic!("the application's write failed: {e}"));
                done.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    })
}

fn assert_equal(src: &Cluster, dst: &Cluster, db: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let report = rt
        .block_on(verify(
            &ConnConfig::from_conn_str(&src.uri(db)).unwrap(),
            &ConnConfig::from_conn_str(&dst.uri(db)).unwrap(),
            &VerifyOptions::default(),
        ))
        .unwrap();
    assert!(report.is_clean(), "source and target differ: {report:#?}");
    assert_eq!(
        psql(
            src,
            db,
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgferry%'"
        ),
        "0"
    );
}

const TABLE: &str = "CREATE TABLE t (id bigserial PRIMARY KEY, v text);
                     INSERT INTO t (v) SELECT 'v' || g FROM generate_series(1, 2000) g;";

/// `clone --follow` crashes right after a target COMMIT, before the slot is told; the rerun
/// starts from the target's stored position and skips what the slot resends.
#[test]
fn crash_after_a_target_commit_before_the_slot_advances() {
    let (src, dst) = (start(&[]), start(&[]));
    psql(&src, "postgres", "CREATE DATABASE fp");
    psql(&src, "fp", TABLE);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let w = writer(src.uri("fp"), Arc::clone(&stop), Arc::clone(&done));
    let args = [
        "clone",
        "--follow",
        "-s",
        &src.uri("fp"),
        "-t",
        &dst.uri("fp"),
    ];
    let out = pgferry_with("apply.after_commit@20", &args);
    crashed_at(&out, "apply.after_commit");
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::SeqCst);
    w.join().unwrap();
    assert!(done.load(Ordering::SeqCst) > 20);
    let mut again = args.to_vec();
    again.extend(["--max-replication-lag", "0", "--stop-replication"]);
    let out = pgferry_with("", &again);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("resuming from"),
        "{}",
        output_text(&out)
    );
    assert_equal(&src, &dst, "fp");
}

/// A transaction larger than `logical_decoding_work_mem` is streamed while in progress
/// (PostgreSQL 14+) into a spool file; the crash comes in the middle of it. The rerun gets
/// the whole transaction again from the slot.
#[test]
fn crash_in_the_middle_of_a_spooled_transaction() {
    let src = start(&[("logical_decoding_work_mem", "64kB")]);
    if src.major() < 14 {
        eprintln!("SKIPPED: in-progress transactions are streamed from PostgreSQL 14 on");
        return;
    }
    let dst = start(&[]);
    psql(&src, "postgres", "CREATE DATABASE fp");
    psql(&src, "fp", TABLE);
    let args = [
        "clone",
        "--follow",
        "-s",
        &src.uri("fp"),
        "-t",
        &dst.uri("fp"),
    ];
    let child = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(args)
        .env("PGFERRY_FAILPOINTS", "spool.append@3000")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Let it copy and stream, then one big transaction.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while psql(
        &src,
        "fp",
        "SELECT count(*) FROM pg_replication_slots WHERE active",
    ) != "1"
    {
        assert!(std::time::Instant::now() < deadline, "never streamed");
        std::thread::sleep(Duration::from_millis(200));
    }
    psql(
        &src,
        "fp",
        "INSERT INTO t (v) SELECT 'big' || g FROM generate_series(1, 20000) g",
    );
    let out = child.wait_with_output().unwrap();
    crashed_at(&out, "spool.append");
    psql(&src, "fp", "UPDATE t SET v = v || '!' WHERE id % 7 = 0");
    let mut again = args.to_vec();
    again.extend(["--max-replication-lag", "0", "--stop-replication"]);
    let out = pgferry_with("", &again);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_equal(&src, &dst, "fp");
}

/// `migrate` crashes after a table's copy committed on the target and before its progress
/// row: the rerun copies the database again (an interrupted copy is never trusted).
#[test]
fn crash_between_a_table_copy_and_its_progress_row() {
    let (src, dst) = (start(&[]), start(&[]));
    psql(&src, "postgres", "CREATE DATABASE fp");
    psql(&src, "fp", TABLE);
    psql(
        &src,
        "fp",
        "CREATE TABLE u (id int PRIMARY KEY); INSERT INTO u SELECT generate_series(1, 500);",
    );
    let (s, t) = (src.uri("postgres"), dst.uri("postgres"));
    let args = ["migrate", "-s", &s, "-t", &t, "--databases", "fp"];
    let out = pgferry_with("copy.table_committed", &args);
    crashed_at(&out, "copy.table_committed");
    let mut again = args.to_vec();
    again.extend(["--max-replication-lag", "0", "--stop-replication"]);
    let out = pgferry_with("", &again);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_equal(&src, &dst, "fp");
}

/// The bootstrap session is dropped just as `migrate` reads a stop request: the request is
/// read again after the reconnection, the run cuts over and exits 0.
#[test]
fn a_stop_request_survives_a_bootstrap_reconnection() {
    let (src, dst) = (start(&[]), start(&[]));
    psql(&src, "postgres", "CREATE DATABASE fp");
    psql(&src, "fp", TABLE);
    let (s, t) = (src.uri("postgres"), dst.uri("postgres"));
    let child = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(["migrate", "-s", &s, "-t", &t, "--databases", "fp"])
        .env("PGFERRY_FAILPOINTS", "bootstrap.drop_at_stop")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let out = support::pgferry(&["status", "-t", &t, "--json"]);
        if output_text(&out).contains("\"syncing\"") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never syncing");
        std::thread::sleep(Duration::from_millis(300));
    }
    psql(&src, "fp", "UPDATE t SET v = 'after' WHERE id <= 10");
    let out = support::pgferry(&["stop", "-t", &t]);
    assert!(out.status.success(), "{}", output_text(&out));
    let out = child.wait_with_output().unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("reconnecting"), "{text}");
    assert!(text.contains("cut over at"), "{text}");
    assert_equal(&src, &dst, "fp");
}

/// A kill -9 in the middle of schema changes followed while streaming — after a change ran on
/// the target, after a table was copied, in both modes — then a rerun: nothing lost or applied
/// twice, and the schemas are equal.
#[test]
fn crash_in_the_middle_of_a_schema_change() {
    let (src, dst) = (start(&[]), start(&[]));
    let cases = [
        ("schema.after_change", false),
        ("schema.after_copy", false),
        ("schema.after_change", true),
        ("schema.after_copy", true),
    ];
    for (i, (failpoint, capture)) in cases.into_iter().enumerate() {
        let db = format!("ddl{i}");
        psql(&src, "postgres", &format!("CREATE DATABASE {db}"));
        psql(&src, &db, TABLE);
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let w = writer(src.uri(&db), Arc::clone(&stop), Arc::clone(&done));
        let mut args = vec![
            "clone".to_owned(),
            "--follow".into(),
            "-s".into(),
            src.uri(&db),
            "-t".into(),
            dst.uri(&db),
        ];
        if capture {
            args.push("--ddl-capture".into());
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_pgferry"))
            .args(&args)
            .env("PGFERRY_FAILPOINTS", failpoint)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let active = "SELECT count(*) FROM pg_replication_slots WHERE active";
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while psql(&src, &db, active) != "1" {
            assert!(std::time::Instant::now() < deadline, "{db}: never streamed");
            std::thread::sleep(Duration::from_millis(100));
        }
        psql(
            &src,
            &db,
            "ALTER TABLE t ADD COLUMN c int DEFAULT 5;
             ALTER TABLE t ADD COLUMN r float8 DEFAULT random();
             CREATE TABLE n (id int PRIMARY KEY, v text);
             INSERT INTO n SELECT g, 'n' FROM generate_series(1, 100) g;",
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while child.try_wait().unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "{db}: pgferry did not reach {failpoint}"
            );
            psql(
                &src,
                &db,
                "INSERT INTO n SELECT max(id) + 1, 'later' FROM n",
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        crashed_at(&child.wait_with_output().unwrap(), failpoint);
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::SeqCst);
        w.join().unwrap();
        let mut again: Vec<&str> = args.iter().map(String::as_str).collect();
        again.extend([
            "--max-replication-lag",
            "0",
            "--stop-replication",
            "--retry-for",
            "20s",
        ]);
        let out = pgferry_with("", &again);
        assert!(out.status.success(), "{db}: {}", output_text(&out));
        assert_equal(&src, &dst, &db);
        let (a, b) = (
            support::fidelity::pg_dump_schema_with(&src, &db, &["-N", "pgferry"]),
            support::fidelity::pg_dump_schema_with(&dst, &db, &["-N", "pgferry"]),
        );
        assert!(
            a == b,
            "{db} ({failpoint}, capture {capture}): {}",
            support::fidelity::first_diff(&a, &b).unwrap_or_default()
        );
    }
}
