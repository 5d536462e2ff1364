//! `pgferry bench` on two real clusters: every measure moves the same rows and bytes, `--size`
//! is honoured, the SVG chart is well-formed with one series per measure, `--plan` projects a
//! pgbench database read-only, and nothing is left on either server, even when interrupted.

mod support;

use pgferry::localpg::{Cluster, ClusterOptions};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};
use support::{output_text, pgferry, psql};

fn start() -> Cluster {
    Cluster::start(&support::install(), ClusterOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn scratch_schemas(c: &Cluster, db: &str) -> String {
    psql(
        c,
        db,
        "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgferry_bench'",
    )
}

#[test]
fn every_measure_moves_the_same_rows_and_size_is_honoured() {
    let (src, dst) = (start(), start());
    let chart = tempfile::NamedTempFile::new().unwrap();
    let chart_path = chart.path().to_str().unwrap().to_owned();
    let out = pgferry(&[
        "bench",
        "-s",
        &src.uri("postgres"),
        "-t",
        &dst.uri("postgres"),
        "--size",
        "16MB",
        "-j",
        "2",
        "--json",
        "--chart",
        &chart_path,
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rates = report["rates"].as_array().unwrap();
    // 2 formats × (COPY TO, COPY FROM, pipe at 1 and 2 jobs).
    assert_eq!(rates.len(), 8, "{report}");
    let rows: Vec<u64> = rates.iter().map(|r| r["rows"].as_u64().unwrap()).collect();
    assert!(rows.iter().all(|r| *r == rows[0] && *r > 0), "{rows:?}");
    for format in ["binary", "text"] {
        let bytes: Vec<u64> = rates
            .iter()
            .filter(|r| r["format"] == format)
            .map(|r| r["bytes"].as_u64().unwrap())
            .collect();
        // Two ranged jobs each send their own binary header and trailer (21 bytes).
        assert!(
            bytes.iter().all(|b| b.abs_diff(bytes[0]) <= 64),
            "{format}: {bytes:?}"
        );
    }
    let requested = report["requested_bytes"].as_u64().unwrap() as f64;
    let moved = rates[0]["bytes"].as_u64().unwrap() as f64;
    assert!(
        (moved - requested).abs() / requested < 0.05,
        "--size {requested} moved {moved}"
    );
    assert!(
        report["limit"].as_str().unwrap().contains("limit"),
        "{report}"
    );
    let svg = std::fs::read_to_string(&chart_path).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{e}:\n{svg}"));
    let series: Vec<&str> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("series"))
        .filter_map(|n| n.attribute("data-name"))
        .collect();
    assert_eq!(series.len(), 6, "{series:?}");
    assert_eq!(scratch_schemas(&src, "postgres"), "0");
    assert_eq!(scratch_schemas(&dst, "postgres"), "0");
}

#[test]
fn plan_projects_a_pgbench_database_without_writing_to_the_source() {
    let (src, dst) = (start(), start());
    psql(&src, "postgres", "CREATE DATABASE bank");
    let pgbench = support::tool(&support::install(), "pgbench");
    let status = Command::new(&pgbench)
        .args(["-i", "-s", "2", "-q", &src.uri("bank")])
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", output_text(&status));
    let objects = "SELECT count(*), sum(n_tup_ins) FROM pg_class LEFT JOIN pg_stat_user_tables s ON s.relid = pg_class.oid";
    let before = psql(&src, "bank", objects);
    let out = pgferry(&[
        "bench",
        "--plan",
        "-s",
        &src.uri("bank"),
        "-t",
        &dst.uri("postgres"),
        "-j",
        "2",
        "--change-rate",
        "1MB",
        "--json",
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let accounts = plan["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "public.pgbench_accounts")
        .unwrap_or_else(|| panic!("{plan}"))
        .clone();
    let rows = accounts["rows"].as_f64().unwrap();
    assert!((rows - 200_000.0).abs() / 200_000.0 < 0.25, "{accounts}");
    assert_eq!(accounts["indexes"], 1);
    assert!(plan["total_seconds"].as_f64().unwrap() > 0.0, "{plan}");
    assert_eq!(plan["phases"].as_array().unwrap().len(), 3, "{plan}");
    assert!(
        plan["catch_up"].as_str().unwrap().contains("1.0 MB/s"),
        "{plan}"
    );
    assert_eq!(
        psql(&src, "bank", objects),
        before,
        "the source was written to"
    );
    assert_eq!(scratch_schemas(&dst, "postgres"), "0");
    let table = text_plan(&src, &dst);
    assert!(
        table.contains("public.pgbench_accounts") && table.contains("total"),
        "{table}"
    );
}

fn text_plan(src: &Cluster, dst: &Cluster) -> String {
    let out = pgferry(&[
        "bench",
        "--plan",
        "-s",
        &src.uri("bank"),
        "-t",
        &dst.uri("postgres"),
        "-j",
        "1",
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    output_text(&out)
}

#[test]
fn an_interrupted_bench_leaves_nothing_behind() {
    let (src, dst) = (start(), start());
    let child = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args([
            "bench",
            "-s",
            &src.uri("postgres"),
            "-t",
            &dst.uri("postgres"),
            "--size",
            "4GB",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while scratch_schemas(&src, "postgres") != "1" {
        assert!(
            Instant::now() < deadline,
            "the scratch schema never appeared"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", output_text(&out));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(
        output_text(&out).contains("dropped on both servers"),
        "{}",
        output_text(&out)
    );
    assert_eq!(scratch_schemas(&src, "postgres"), "0");
    assert_eq!(scratch_schemas(&dst, "postgres"), "0");
}

#[test]
fn every_shape_is_measured() {
    let (src, dst) = (start(), start());
    for shape in ["narrow", "wide", "toast", "numeric"] {
        let out = pgferry(&[
            "bench",
            "-s",
            &src.uri("postgres"),
            "-t",
            &dst.uri("postgres"),
            "--size",
            "2MB",
            "-j",
            "1",
            "--shape",
            shape,
            "--json",
        ]);
        assert!(out.status.success(), "{shape}: {}", output_text(&out));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let rows: Vec<u64> = report["rates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["rows"].as_u64().unwrap())
            .collect();
        assert!(
            rows.iter().all(|r| *r == rows[0] && *r >= 1000),
            "{shape}: {rows:?}"
        );
    }
}
