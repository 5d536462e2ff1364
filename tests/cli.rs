//! The binary's command line as a user meets it: help texts, usage errors, exit codes, the
//! SOURCE_SERVICE_URI / TARGET_SERVICE_URI fallbacks. No server needed here.

mod support;

use std::net::TcpListener;
use std::process::Output;
use support::{output_text as text, pgferry_command};

/// pgferry with a clean environment, no password file, and `env` added.
fn pgferry(args: &[&str], env: &[(&str, &str)]) -> Output {
    pgferry_command(args)
        .env("PGPASSFILE", "/nonexistent/pgpass")
        .envs(env.iter().copied())
        .output()
        .expect("run pgferry")
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

const SUBCOMMANDS: [&str; 12] = [
    "migrate", "status", "stop", "cleanup", "schema", "clone", "dump", "restore", "verify",
    "bench", "demo", "check",
];

#[test]
fn every_help_lists_the_exit_codes() {
    let top = pgferry(&["--help"], &[]);
    assert!(text(&top).contains("Exit codes"), "{}", text(&top));
    for sub in SUBCOMMANDS {
        let out = pgferry(&[sub, "--help"], &[]);
        let help = text(&out);
        for code in ["Exit codes", "  0 ", "  1 ", "  2 ", "  3 ", "  130 "] {
            assert!(help.contains(code), "{sub} --help lacks {code:?}:\n{help}");
        }
    }
}

#[test]
fn the_bootstrap_database_is_mentioned_only_where_it_applies() {
    for sub in SUBCOMMANDS {
        let help = text(&pgferry(&[sub, "--help"], &[]));
        let applies = matches!(sub, "migrate" | "status" | "stop");
        assert_eq!(
            help.contains("bootstrap database"),
            applies,
            "{sub} --help:\n{help}"
        );
    }
}

#[test]
fn zero_workers_and_negative_lags_are_usage_errors() {
    for args in [
        &["clone", "-s", "host=a", "-t", "host=b", "-j", "0"][..],
        &["dump", "-s", "host=a", "-o", "x", "-j", "0"],
        &["bench", "-s", "host=a", "-t", "host=b", "--size", "0"],
        &[
            "migrate",
            "-s",
            "host=a",
            "-t",
            "host=b",
            "--max-replication-lag",
            "-5",
        ],
        &["stop", "-t", "host=b", "--max-replication-lag", "1x"],
    ] {
        let out = pgferry(args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(
            !text(&out).contains("unexpected argument"),
            "{args:?}: {}",
            text(&out)
        );
    }
}

#[test]
fn json_usage_errors_print_an_error_document() {
    for args in [
        &["check", "--json"][..],
        &[
            "migrate",
            "--json",
            "-s",
            "host=a",
            "-t",
            "host=b",
            "--stop-replication",
        ],
        &["check", "--json", "-s", "postgres://u:pw@h:notaport/db"],
    ] {
        let out = pgferry(args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: stdout is not one JSON document ({e}): {}",
                text(&out)
            )
        });
        assert_eq!(doc["error"]["exit_code"], 2, "{doc}");
        assert!(
            doc["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{doc}"
        );
    }
    // A server that cannot be reached: exit 1 and the document.
    let uri = format!(
        "postgres://u@127.0.0.1:{}/db?connect_timeout=2",
        closed_port()
    );
    let out = pgferry(&["check", "--json", "-s", &uri], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["error"]["exit_code"], 1, "{doc}");
    assert_eq!(doc["servers"], serde_json::json!([]), "{doc}");
}

#[test]
fn messages_that_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();

    // dump -o EXISTING: refused before connecting, without a contradiction.
    std::fs::create_dir(dir.path().join("taken")).unwrap();
    let out = pgferry(&["dump", "-s", "host=127.0.0.1", "-o", &path("taken")], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("already exists"), "{}", text(&out));
    assert!(!text(&out).contains("does not exist"), "{}", text(&out));

    // restore from a directory that is not an archive, or not there.
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    for (input, why) in [
        (path("empty"), "it has no manifest.json"),
        (path("nowhere"), "no such directory"),
    ] {
        let out = pgferry(&["restore", "-i", &input, "-t", "host=127.0.0.1"], &[]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let said = text(&out);
        assert!(
            said.contains(&format!("{input} is not a pgferry archive ({why})"))
                && said.contains("pgferry dump -o"),
            "{said}"
        );
    }

    // An unknown option after a password: neither shown, both causes named.
    let out = pgferry(
        &["check", "-s", "password=s3cr3t sslmod=require host=h"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(
        !said.contains("s3cr3t") && !said.contains("sslmod"),
        "{said}"
    );
    assert!(
        said.contains("check the option's name") && said.contains("quote the password"),
        "{said}"
    );

    // A broken config file: the line of the mistake.
    let config = dir.path().join("m.toml");
    std::fs::write(&config, "[migration]\nhost = \"h\"\nport = 5432x\n").unwrap();
    let out = pgferry(
        &[
            "migrate",
            "--config",
            config.to_str().unwrap(),
            "-t",
            "host=127.0.0.1",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("line 3"), "{}", text(&out));
}
