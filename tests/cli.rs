//! The binary's command line as a user meets it: help texts, usage errors, exit codes, the
//! SOURCE_SERVICE_URI / TARGET_SERVICE_URI fallbacks. No server needed here.

use std::net::TcpListener;
use std::process::{Command, Output};

fn pgferry(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgferry"));
    cmd.args(args)
        .env_remove("SOURCE_SERVICE_URI")
        .env_remove("TARGET_SERVICE_URI")
        .env_remove("PGPASSWORD")
        .env("PGPASSFILE", "/nonexistent/pgpass");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run pgferry")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A local port with nothing listening: bind, note the port, close.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn migrate_help_lists_every_seed_flag_and_pg_alias_works() {
    for sub in ["migrate", "pg"] {
        let out = pgferry(&[sub, "--help"], &[]);
        assert!(out.status.success(), "{sub} --help failed: {}", text(&out));
        let help = text(&out);
        for flag in [
            "--source",
            "--target",
            "--filtered-db",
            "--skip-table",
            "--with-table",
            "--max-replication-lag",
            "--stop-replication",
            "--debug",
            "--validate",
            "--force-method",
            "--excluded-roles",
            "--excluded-extensions",
            "--no-createdb",
            "--mangle",
            "--replicate-extension-tables",
            "--dbs-max-total-size",
            "--skip-db-version-check",
            "--migration-id",
            "--show-passwords",
            "--pgbin",
            "--jobs",
            "--index-jobs",
            "--split-tables-larger-than",
            "--db-jobs",
            "--config",
            "--json",
            "--replica-identity-full",
        ] {
            assert!(
                help.contains(flag),
                "`pgferry {sub} --help` does not mention {flag}"
            );
        }
    }
}

#[test]
fn every_subcommand_has_help() {
    for sub in [
        "migrate", "status", "stop", "cleanup", "schema", "clone", "dump", "restore", "verify",
        "bench", "demo", "check",
    ] {
        let out = pgferry(&[sub, "--help"], &[]);
        assert!(out.status.success(), "{sub} --help: {}", text(&out));
        assert!(
            text(&out).contains("Usage: pgferry"),
            "{sub} --help: {}",
            text(&out)
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    let out = pgferry(
        &[
            "migrate",
            "-s",
            "host=a",
            "-t",
            "host=b",
            "--stop-replication",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("--max-replication-lag"),
        "{}",
        text(&out)
    );

    let out = pgferry(&["check"], &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "missing -s must be a usage error: {}",
        text(&out)
    );

    let out = pgferry(&["no-such-command"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bad_connection_string_is_a_usage_error_without_the_password() {
    let out = pgferry(&["check", "-s", "postgres://u:s3cr3tpw@h:notaport/db"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let all = text(&out);
    assert!(all.contains("source"), "error must name the server: {all}");
    assert!(!all.contains("s3cr3tpw"), "password leaked: {all}");
}

#[test]
fn source_service_uri_is_the_fallback_and_the_flag_wins() {
    let port = closed_port();
    let env_uri = format!("postgres://envuser:envpw@127.0.0.1:{port}/db?connect_timeout=2");
    // Only the environment: it is used.
    let out = pgferry(&["check"], &[("SOURCE_SERVICE_URI", &env_uri)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains(&port.to_string()) && all.contains("envuser"),
        "{all}"
    );
    assert!(!all.contains("envpw"), "password leaked: {all}");

    // The flag wins over the environment.
    let port2 = closed_port();
    let flag_uri = format!("postgres://flaguser@127.0.0.1:{port2}/db?connect_timeout=2");
    let out = pgferry(
        &["check", "-s", &flag_uri],
        &[("SOURCE_SERVICE_URI", &env_uri)],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("flaguser") && !all.contains("envuser"),
        "{all}"
    );
}

#[test]
fn pgbin_is_accepted_and_ignored_with_a_note() {
    let out = pgferry(
        &[
            "pg",
            "-s",
            "host=127.0.0.1",
            "-t",
            "host=127.0.0.1",
            "--pgbin",
            "/usr/bin",
        ],
        &[],
    );
    assert!(text(&out).contains("--pgbin is ignored"), "{}", text(&out));
}
