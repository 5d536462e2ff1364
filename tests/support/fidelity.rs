//! Schema round trips judged by pg_dump: load a fixture into a source database, rebuild it in
//! another database from `dump_schema`'s script, and compare `pg_dump --schema-only` of both.
//! pg_dump is the oracle only (never used by the library); each cluster's own pg_dump is used,
//! so a round trip on PostgreSQL 18 is judged by pg_dump 18.

use std::io::Write;
use std::process::{Command, Stdio};

use pgferry::localpg::Cluster;
use pgferry::schema::DumpOptions;
use pgferry::script::{dump_schema, SchemaScript};
use tokio_postgres::NoTls;

use super::fresh_db;

pub async fn connect(cluster: &Cluster, db: &str) -> tokio_postgres::Client {
    let conn = format!(
        "host={} port={} user={} dbname={db}",
        cluster.host(),
        cluster.port(),
        cluster.superuser()
    );
    let (client, connection) = tokio_postgres::connect(&conn, NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Runs a script file-style through the cluster's psql (optionally as one transaction);
/// returns stderr on failure.
pub fn psql_apply(cluster: &Cluster, db: &str, sql: &str, single_tx: bool) -> Result<(), String> {
    let port = cluster.port().to_string();
    let mut cmd = Command::new(super::tool(cluster.install(), "psql"));
    cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1"]);
    if single_tx {
        cmd.arg("-1");
    }
    cmd.args([
        "-h",
        cluster.host(),
        "-p",
        &port,
        "-U",
        cluster.superuser(),
        "-d",
        db,
    ])
    .args(["-f", "-"])
    .stdin(Stdio::piped())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(sql.as_bytes());
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `pg_dump --schema-only` of `db` by the cluster's own pg_dump, without comment lines, blank
/// lines and the random `\restrict`/`\unrestrict` keys.
pub fn pg_dump_schema(cluster: &Cluster, db: &str) -> Vec<String> {
    pg_dump_schema_with(cluster, db, &[])
}

/// [`pg_dump_schema`] with extra pg_dump arguments (e.g. `-N pgferry`).
pub fn pg_dump_schema_with(cluster: &Cluster, db: &str, extra: &[&str]) -> Vec<String> {
    pg_dump_schema_by(cluster.install(), cluster, db, extra)
}

/// [`pg_dump_schema_with`] run by the pg_dump of `dump` (to compare clusters of two majors
/// with the newer one's pg_dump).
pub fn pg_dump_schema_by(
    dump: &pgferry::localpg::PgInstall,
    cluster: &Cluster,
    db: &str,
    extra: &[&str],
) -> Vec<String> {
    let port = cluster.port().to_string();
    let out = Command::new(super::tool(dump, "pg_dump"))
        .args(["--schema-only", "-h", cluster.host(), "-p", &port])
        .args(extra)
        .args(["-U", cluster.superuser(), "-d", db])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("--") && !l.trim().is_empty())
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .map(str::to_string)
        .collect()
}

/// A readable diff: the first differing line with a few lines of context on each side.
pub fn first_diff(a: &[String], b: &[String]) -> Option<String> {
    let i = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then_some(a.len().min(b.len())))?;
    let from = i.saturating_sub(5);
    let mut s = format!("first difference at line {} (source vs restored):\n", i + 1);
    for l in &a[from..i.min(a.len())] {
        s.push_str(&format!("  {l}\n"));
    }
    for l in a.iter().skip(i).take(8) {
        s.push_str(&format!("- {l}\n"));
    }
    for l in b.iter().skip(i).take(8) {
        s.push_str(&format!("+ {l}\n"));
    }
    Some(s)
}

/// A test fixture's text (`tests/fixtures/<file>`).
pub fn fixture(file: &str) -> String {
    let path = format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Loads `fixture` into a fresh source database of `cluster`, round-trips it through
/// `dump_schema` into a fresh database of the same cluster and compares pg_dump's view of
/// both; panics with the first difference (both dumps are kept under
/// `target/schema_fidelity/<name>.*`). Returns the script for further assertions.
pub async fn roundtrip_on(
    cluster: &Cluster,
    name: &str,
    fixture: &str,
    opts: &DumpOptions,
) -> SchemaScript {
    let src = fresh_db(cluster, &format!("{name}_src"));
    let dst = fresh_db(cluster, &format!("{name}_dst"));
    psql_apply(cluster, &src, fixture, true)
        .unwrap_or_else(|e| panic!("fixture {name} does not load: {e}"));

    let client = connect(cluster, &src).await;
    pgferry::catalog::begin_snapshot_read(&client, None)
        .await
        .unwrap();
    let script = dump_schema(&client, opts).await.unwrap();
    client.batch_execute("COMMIT").await.unwrap();

    let parts = [
        ("pre-data", &script.pre_data),
        ("post-data", &script.post_data),
        ("publications", &script.publications),
        ("subscriptions", &script.subscriptions),
    ];
    for (part, sql) in parts {
        if let Err(e) = psql_apply(cluster, &dst, sql, true) {
            panic!("{part} of {name} failed to apply: {e}\n--- script ---\n{sql}");
        }
    }
    // Keep what we generated next to the build output, for reading.
    let dir = format!("{}/target/schema_fidelity", env!("CARGO_MANIFEST_DIR"));
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(
        format!("{dir}/{name}.script.sql"),
        format!("{}\n{}", script.pre_data, script.post_data),
    );
    let a = pg_dump_schema(cluster, &src);
    let b = pg_dump_schema(cluster, &dst);
    if let Some(d) = first_diff(&a, &b) {
        // Keep the evidence: both dumps.
        let _ = std::fs::write(format!("{dir}/{name}.source.sql"), a.join("\n"));
        let _ = std::fs::write(format!("{dir}/{name}.restored.sql"), b.join("\n"));
        panic!("{name}: restored schema differs from the source (files in {dir})\n{d}");
    }
    script
}

/// Every index definition pgferry reads from `db` (written by pgferry itself for plain
/// indexes) must be the server's own `pg_get_indexdef` text, byte for byte. Returns how
/// many indexes were compared.
pub async fn assert_index_defs_are_the_servers(cluster: &Cluster, db: &str) -> usize {
    let client = connect(cluster, db).await;
    pgferry::catalog::begin_snapshot_read(&client, None)
        .await
        .unwrap();
    let catalog = pgferry::catalog::read_catalog(&client, &Default::default())
        .await
        .unwrap();
    client
        .batch_execute("SET LOCAL search_path = ''")
        .await
        .unwrap();
    let oids: Vec<u32> = catalog.indexes.iter().map(|i| i.oid).collect();
    let rows = client
        .query(
            "SELECT x.oid, pg_catalog.pg_get_indexdef(x.oid) AS def
             FROM pg_catalog.unnest($1::pg_catalog.oid[]) AS x(oid)",
            &[&oids],
        )
        .await
        .unwrap();
    let server: std::collections::HashMap<u32, String> = rows
        .iter()
        .map(|r| (r.get::<_, u32>("oid"), r.get::<_, String>("def")))
        .collect();
    for index in &catalog.indexes {
        assert_eq!(
            Some(&index.def),
            server.get(&index.oid),
            "index {}.{}",
            index.schema,
            index.name
        );
    }
    client.batch_execute("COMMIT").await.unwrap();
    catalog.indexes.len()
}
