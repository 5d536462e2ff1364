//! PostgreSQL's own regression database as a schema we do not ship: the database that
//! `make installcheck` leaves behind (pg_upgrade's test dumps and restores the same one) is
//! built on a throwaway cluster with the server's own regression suite, then
//!
//! - `pgferry schema` of it, applied with `psql -1 -v ON_ERROR_STOP=1` to an empty database,
//!   must give the same `pg_dump -s` as the source: zero lines of difference;
//! - `pgferry clone` of it must give the same `pg_dump -s` and a clean `pgferry verify`.
//!
//! The suite (SQL, pg_regress, regress.so) is fetched and built by `scripts/fetch-regress.sh`
//! (which `scripts/test.sh` runs) outside the repository, from the Debian source package of
//! the installed server; the tests say SKIPPED when it is not there. The regression SQL is
//! test input only.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use pgferry::localpg::{Cluster, ClusterOptions};
use support::fidelity::{
    assert_index_defs_are_the_servers, first_diff, pg_dump_schema, psql_apply,
};
use support::{install, output_text, pgferry, psql, skip};

/// The database pg_regress builds.
const REGRESSION: &str = "regression";

/// Where the built suite is: `$PGFERRY_REGRESS_DIR`, else what `scripts/fetch-regress.sh
/// --cached` reports (a build already in the cache, nothing downloaded). `Err` says why not.
fn regress_dir(major: u32) -> Result<PathBuf, String> {
    let dir = match std::env::var_os("PGFERRY_REGRESS_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-regress.sh");
            let out = Command::new(&script)
                .arg("--cached")
                .output()
                .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
            let text = String::from_utf8_lossy(&out.stdout);
            match text.trim().strip_prefix("export PGFERRY_REGRESS_DIR=") {
                Some(dir) if out.status.success() => PathBuf::from(dir),
                _ => {
                    return Err(format!(
                        "PostgreSQL's regression suite is not built here (run scripts/fetch-regress.sh, \
                         or scripts/test.sh, which runs it): {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ))
                }
            }
        }
    };
    for file in ["pg_regress", "regress.so", "parallel_schedule"] {
        if !dir.join(file).is_file() {
            return Err(format!("{} has no {file}", dir.display()));
        }
    }
    // The suite must be the server's major: regress.so carries the major in its magic block
    // and the SQL uses what that major has.
    let header = dir.join("../../include/pg_config.h");
    let text =
        std::fs::read_to_string(&header).map_err(|e| format!("{}: {e}", header.display()))?;
    let want = format!("#define PG_MAJORVERSION \"{major}\"");
    if !text.lines().any(|l| l.trim() == want) {
        return Err(format!(
            "the regression suite in {} is not PostgreSQL {major}'s",
            dir.display()
        ));
    }
    Ok(dir)
}

/// The cluster holding the regression database, built once per test binary; `None` (after a
/// SKIPPED line naming `test`) when the suite is not available.
fn regression_cluster(test: &str) -> Option<&'static Cluster> {
    static BUILT: OnceLock<Result<Cluster, String>> = OnceLock::new();
    match BUILT.get_or_init(build_regression_database) {
        Ok(cluster) => Some(cluster),
        Err(why) => {
            skip(test, why);
            None
        }
    }
}

/// Starts a cluster and runs the server's `parallel_schedule` on it with one connection (as
/// pg_upgrade's test does), which leaves the `regression` database. Test failures of the
/// suite itself do not matter here: whatever state it leaves is what is compared.
fn build_regression_database() -> Result<Cluster, String> {
    let install = install();
    let dir = regress_dir(install.major())?;
    let cluster = Cluster::start(&install, ClusterOptions::default())
        .unwrap_or_else(|e| panic!("could not start a cluster for the regression database: {e}"));
    // pg_regress writes its results there and the server (another OS user when we are root)
    // writes COPY TO files into results/.
    let out = std::env::temp_dir().join(format!("pgferry-regress-{}", std::process::id()));
    let results = out.join("results");
    std::fs::create_dir_all(&results).expect("create the pg_regress output folder");
    for d in [&out, &results] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777))
            .expect("open the pg_regress output folder to the server");
    }
    let psql_path = support::tool(&install, "psql");
    let bindir = psql_path.parent().expect("psql has a folder");
    let port = cluster.port().to_string();
    let started = std::time::Instant::now();
    let run = Command::new(dir.join("pg_regress"))
        .current_dir(&out)
        .arg(format!("--inputdir={}", dir.display()))
        .arg(format!("--outputdir={}", out.display()))
        .arg(format!("--bindir={}", bindir.display()))
        .arg(format!("--dlpath={}", dir.display()))
        .arg(format!(
            "--schedule={}",
            dir.join("parallel_schedule").display()
        ))
        .arg("--max-connections=1")
        .arg(format!("--host={}", cluster.host()))
        .arg(format!("--port={port}"))
        .arg(format!("--user={}", cluster.superuser()))
        .output()
        .expect("run pg_regress");
    let summary = String::from_utf8_lossy(&run.stdout);
    let failed: Vec<&str> = summary.lines().filter(|l| l.contains("FAILED")).collect();
    eprintln!(
        "regression database built in {:.0?} ({} suite tests failed{})",
        started.elapsed(),
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(": {}", failed.join("; "))
        }
    );
    let _ = std::fs::remove_dir_all(&out);
    let tables = psql(
        &cluster,
        REGRESSION,
        "SELECT count(*) FROM pg_catalog.pg_class WHERE relnamespace = 'public'::regnamespace",
    );
    // A suite that stopped early would make the comparison below prove little.
    let tables: u32 = tables.trim().parse().unwrap_or(0);
    assert!(
        tables > 500,
        "pg_regress left only {tables} relations in public: {summary}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    Ok(cluster)
}

/// Lines of difference between two dumps, counted like `diff` would at least count them:
/// every line one side has more often than the other. Zero only when both hold the same lines;
/// the order is compared separately.
fn diff_lines(a: &[String], b: &[String]) -> usize {
    let mut count: HashMap<&str, i64> = HashMap::new();
    for l in a {
        *count.entry(l).or_default() += 1;
    }
    for l in b {
        *count.entry(l).or_default() -= 1;
    }
    count.values().map(|n| n.unsigned_abs() as usize).sum()
}

/// Lines only one side has, for the failure message.
fn one_sided(a: &[String], b: &[String], limit: usize) -> String {
    let mut count: HashMap<&str, i64> = HashMap::new();
    for l in a {
        *count.entry(l).or_default() += 1;
    }
    for l in b {
        *count.entry(l).or_default() -= 1;
    }
    let mut out = Vec::new();
    for l in a.iter().chain(b) {
        if let Some(n) = count.get_mut(l.as_str()) {
            if *n > 0 {
                out.push(format!("- {l}"));
                *n -= 1;
            } else if *n < 0 {
                out.push(format!("+ {l}"));
                *n += 1;
            }
        }
        if out.len() >= limit {
            break;
        }
    }
    out.join("\n")
}

/// Compares pg_dump of `db` with pg_dump of the source; panics with the count and the lines.
fn assert_same_dump(cluster: &Cluster, what: &str, db: &str) {
    let a = pg_dump_schema(cluster, REGRESSION);
    let b = pg_dump_schema(cluster, db);
    let n = diff_lines(&a, &b);
    let dir = format!("{}/target/regression_db", env!("CARGO_MANIFEST_DIR"));
    if n > 0 || a != b {
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(format!("{dir}/{what}.source.sql"), a.join("\n"));
        let _ = std::fs::write(format!("{dir}/{what}.restored.sql"), b.join("\n"));
    }
    assert_eq!(
        n,
        0,
        "{what}: {n} lines of pg_dump -s differ from the regression database (dumps in {dir}):\n{}",
        one_sided(&a, &b, 60)
    );
    if let Some(d) = first_diff(&a, &b) {
        panic!("{what}: the same lines in another order (dumps in {dir})\n{d}");
    }
    eprintln!("{what}: pg_dump -s identical ({} lines)", a.len());
}

#[test]
fn schema_of_the_regression_database_restores_with_zero_diff() {
    const TEST: &str = "schema_of_the_regression_database_restores_with_zero_diff";
    let Some(cluster) = regression_cluster(TEST) else {
        return;
    };
    let out = pgferry(&["schema", "-s", &cluster.uri(REGRESSION)]);
    assert!(
        out.status.success(),
        "pgferry schema: {}",
        output_text(&out)
    );
    let script = String::from_utf8(out.stdout).expect("the script is UTF-8");
    // Every index of the regression database, whoever wrote its definition, as the server
    // prints it.
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let compared = runtime.block_on(assert_index_defs_are_the_servers(cluster, REGRESSION));
    eprintln!("{compared} index definitions are the server's text");
    let db = support::fresh_db(cluster, "regression_schema");
    if let Err(e) = psql_apply(cluster, &db, &script, true) {
        let dir = format!("{}/target/regression_db", env!("CARGO_MANIFEST_DIR"));
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(format!("{dir}/schema.sql"), &script);
        panic!("the script does not apply (kept as {dir}/schema.sql): {e}");
    }
    assert_same_dump(cluster, "schema", &db);
}

#[test]
fn regression_database_clones_and_verifies() {
    const TEST: &str = "regression_database_clones_and_verifies";
    let Some(cluster) = regression_cluster(TEST) else {
        return;
    };
    let target = format!("regression_clone_{}", std::process::id());
    let src = cluster.uri(REGRESSION);
    let dst = cluster.uri(&target);
    let out = pgferry(&["clone", "-s", &src, "-t", &dst]);
    assert!(out.status.success(), "pgferry clone: {}", output_text(&out));
    assert_same_dump(cluster, "clone", &target);
    let out = pgferry(&["verify", "-s", &src, "-t", &dst]);
    assert!(
        out.status.success(),
        "pgferry verify: {}",
        output_text(&out)
    );
}
