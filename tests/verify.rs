//! `pgferry verify` against real databases: pairs of fresh databases on the shared test
//! cluster, loaded with the same data (sometimes through a different physical layout), then
//! changed on purpose to see that each kind of difference is reported, and by name.

mod support;

use pgferry::conn::ConnConfig;
use pgferry::localpg::{Cluster, ClusterOptions};
use pgferry::verify::{
    render_text, verify, Side, Status, VerifyError, VerifyOptions, VerifyReport,
};
use support::{fresh_db, install, psql, shared_cluster};

fn cfg(db: &str) -> ConnConfig {
    ConnConfig::from_conn_str(&shared_cluster().uri(db)).unwrap()
}

/// Two fresh databases; `both` runs in each, then `src_only` / `dst_only`.
fn pair(prefix: &str, both: &str, src_only: &str, dst_only: &str) -> (String, String) {
    let cluster = shared_cluster();
    let src = fresh_db(cluster, &format!("{prefix}_src"));
    let dst = fresh_db(cluster, &format!("{prefix}_dst"));
    for (db, extra) in [(&src, src_only), (&dst, dst_only)] {
        psql(cluster, db, both);
        if !extra.is_empty() {
            psql(cluster, db, extra);
        }
    }
    (src, dst)
}

async fn run(src: &str, dst: &str, opts: &VerifyOptions) -> VerifyReport {
    verify(&cfg(src), &cfg(dst), opts)
        .await
        .unwrap_or_else(|e| panic!("verify failed: {e}"))
}

fn table_status<'a>(report: &'a VerifyReport, schema: &str, name: &str) -> &'a Status {
    &report
        .table(schema, name)
        .unwrap_or_else(|| panic!("{schema}.{name} not in report:\n{}", render_text(report)))
        .status
}

fn assert_mismatch(report: &VerifyReport, name: &str, because: &str) {
    match table_status(report, "public", name) {
        Status::Mismatch { why } => assert!(
            why.contains(because),
            "{name}: expected {because:?} in {why:?}"
        ),
        other => panic!(
            "{name}: expected a mismatch, got {other:?}:\n{}",
            render_text(report)
        ),
    }
}

/// Types whose text form is easy to get wrong, NULLs in every position, unicode, a generated
/// column, a partitioned table, a quoted schema and table, a sequence, a large object.
const RICH_DATA: &str = r#"
CREATE TABLE misc (
    id int PRIMARY KEY, t text, b bytea, arr int[], tarr text[], n numeric, f float8,
    ts timestamptz, j jsonb, iv interval, twice int GENERATED ALWAYS AS (id * 2) STORED);
INSERT INTO misc (id, t, b, arr, tarr, n, f, ts, j, iv) VALUES
  (1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (2, 'héllo wörld ✓ 日本語 🐘', '\x00ff10', '{1,2,NULL}', '{"a,b","c\"d",NULL,""}', 1.50,
      0.1, '2024-01-02 03:04:05+02', '{"k": [1, 2], "u": "ü"}', '1 day 02:00'),
  (3, '', '\x', '{}', '{}', -0.0, 'NaN', 'infinity', 'null', '0'),
  (4, 'tab	and
newline', '\x5c00', '{{1,2},{3,4}}', '{"(x)"}', 1e-30, -1.7976931348623157e308,
      '1999-12-31 23:59:59.999999+00', '[]', '-3 years 2 mons');
INSERT INTO misc (id, t, f) SELECT g, md5(g::text), g / 7.0 FROM generate_series(10, 500) g;

CREATE TABLE events (id int, at date, payload text) PARTITION BY RANGE (at);
CREATE TABLE events_2023 PARTITION OF events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
INSERT INTO events SELECT g, date '2023-06-01' + g, 'p' || g FROM generate_series(1, 400) g;

CREATE SCHEMA "Odd Schema";
CREATE TABLE "Odd Schema"."Mixed Case" ("Col" int, "select" text);
INSERT INTO "Odd Schema"."Mixed Case" VALUES (1, 'a'), (NULL, NULL), (1, 'a');

CREATE SEQUENCE counter;
SELECT setval('counter', 42);
SELECT lo_from_bytea(424242, '\x68656c6c6f00ff'::bytea);
"#;

#[tokio::test(flavor = "multi_thread")]
async fn identical_data_is_clean() {
    let (src, dst) = pair(
        "verify_same",
        RICH_DATA,
        // The same table with its columns in another physical order on each side, and a
        // dropped column on the target; a materialized view (not compared) on the source.
        "CREATE TABLE reordered (a int, b text, c date);
         INSERT INTO reordered (a, b, c) SELECT g, 'r' || g, date '2020-01-01' + g
           FROM generate_series(1, 300) g;
         CREATE MATERIALIZED VIEW mv AS SELECT 1 AS one;",
        // pgferry's own state schema on the target is ignored.
        "CREATE TABLE reordered (zz int, c date, b text, a int);
         ALTER TABLE reordered DROP COLUMN zz;
         INSERT INTO reordered (a, b, c) SELECT g, 'r' || g, date '2020-01-01' + g
           FROM generate_series(300, 1, -1) g;
         CREATE SCHEMA pgferry; CREATE TABLE pgferry.state (x int); INSERT INTO pgferry.state VALUES (1);",
    );
    let report = run(&src, &dst, &VerifyOptions::default()).await;
    let text = render_text(&report);
    assert!(report.is_clean(), "{text}");
    assert!(
        text.trim_end()
            .ends_with("OK: 5 tables match, 1 sequence match, 1 large object match"),
        "{text}"
    );

    let misc = report.table("public", "misc").unwrap();
    assert_eq!(
        (misc.rows_source(), misc.rows_target()),
        (Some(495), Some(495))
    );
    assert_ne!(misc.source.as_ref().unwrap().checksum, 0);
    // Leaves are compared; the partitioned parent has no rows of its own.
    assert_eq!(
        report.table("public", "events_2023").unwrap().rows_source(),
        Some(213)
    );
    assert_eq!(
        report.table("public", "events_2024").unwrap().rows_target(),
        Some(187)
    );
    assert!(report.table("public", "events").is_none());
    assert!(report.table("public", "mv").is_none());
    assert!(report.table("pgferry", "state").is_none());
    assert_eq!(
        report
            .table("Odd Schema", "Mixed Case")
            .unwrap()
            .rows_source(),
        Some(3)
    );
    assert!(text.contains("\"Odd Schema\".\"Mixed Case\""), "{text}");
    let counter = report.sequence("public", "counter").unwrap();
    assert_eq!(counter.source.unwrap().last_value, 42);
    assert_eq!(report.large_objects.as_ref().unwrap().source_count, 1);

    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["tables"][0]["status"]["kind"], "match");
}

/// Two separate servers, the target's database with other output settings (time zone, date
/// style, bytea and float output, search_path): sessions pin these, so equal data still
/// digests equally.
#[tokio::test(flavor = "multi_thread")]
async fn two_servers_with_different_output_settings_match() {
    let source_cluster = shared_cluster();
    let target_cluster = Cluster::start(&install(), ClusterOptions::default()).unwrap();
    let extra = "CREATE TABLE refs (r regclass, t regtype, m money);
                 INSERT INTO refs VALUES ('misc', 'integer', 1.5);";
    let src = fresh_db(source_cluster, "verify_xsrv_src");
    let dst = fresh_db(&target_cluster, "verify_xsrv_dst");
    for (cluster, db) in [(source_cluster, &src), (&target_cluster, &dst)] {
        psql(cluster, db, RICH_DATA);
        psql(cluster, db, extra);
    }
    psql(
        &target_cluster,
        "postgres",
        &format!(
            "ALTER DATABASE {dst} SET timezone = 'Asia/Tokyo';
             ALTER DATABASE {dst} SET datestyle = 'German, DMY';
             ALTER DATABASE {dst} SET intervalstyle = 'sql_standard';
             ALTER DATABASE {dst} SET bytea_output = 'escape';
             ALTER DATABASE {dst} SET extra_float_digits = -3;
             ALTER DATABASE {dst} SET search_path = pg_catalog;"
        ),
    );
    // The control: without pinning, the two sides really print the same row differently.
    let row = "SELECT ROW(ts, b, f, iv)::text FROM public.misc WHERE id = 2; SELECT r::text FROM public.refs";
    assert_ne!(
        psql(source_cluster, &src, row),
        psql(&target_cluster, &dst, row)
    );

    let dst_cfg = ConnConfig::from_conn_str(&target_cluster.uri(&dst)).unwrap();
    let report = verify(&cfg(&src), &dst_cfg, &VerifyOptions::default())
        .await
        .unwrap_or_else(|e| panic!("verify failed: {e}"));
    assert!(report.is_clean(), "{}", render_text(&report));
    assert_eq!(report.tables.len(), 5);
    assert_ne!(report.source, report.target);

    // And a difference across servers is still a difference.
    psql(&target_cluster, &dst, "UPDATE public.refs SET m = 2;");
    let report = verify(&cfg(&src), &dst_cfg, &VerifyOptions::default())
        .await
        .unwrap();
    assert_mismatch(&report, "refs", "checksum differs");
    target_cluster.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_table_difference_is_reported() {
    let both = "
        CREATE TABLE same (id int, v text);
        CREATE TABLE changed (id int, v text);
        CREATE TABLE missing_row (id int, v text);
        CREATE TABLE extra_row (id int, v text);
        CREATE TABLE dup_row (id int, v text);
        CREATE TABLE null_vs_empty (id int, v text);
        INSERT INTO same SELECT g, 'v' || g FROM generate_series(1, 100) g;
        INSERT INTO changed SELECT g, 'v' || g FROM generate_series(1, 100) g;
        INSERT INTO missing_row SELECT g, 'v' || g FROM generate_series(1, 100) g;
        INSERT INTO extra_row SELECT g, 'v' || g FROM generate_series(1, 100) g;
        INSERT INTO dup_row SELECT g, 'v' || g FROM generate_series(1, 100) g;
        INSERT INTO null_vs_empty VALUES (1, NULL);";
    let (src, dst) = pair(
        "verify_diff",
        both,
        "CREATE TABLE only_on_source (x int); INSERT INTO only_on_source VALUES (1), (2);
         CREATE TABLE typed (x int); INSERT INTO typed VALUES (1);",
        "UPDATE changed SET v = 'V5' WHERE id = 5;
         DELETE FROM missing_row WHERE id = 50;
         INSERT INTO extra_row VALUES (101, 'v101');
         DELETE FROM dup_row WHERE id = 3; INSERT INTO dup_row VALUES (2, 'v2');
         UPDATE null_vs_empty SET v = '';
         CREATE TABLE only_on_target (x int);
         CREATE TABLE typed (x bigint); INSERT INTO typed VALUES (1);",
    );
    let report = run(&src, &dst, &VerifyOptions::default()).await;
    let text = render_text(&report);
    assert!(!report.is_clean(), "{text}");

    assert_eq!(
        *table_status(&report, "public", "same"),
        Status::Match,
        "{text}"
    );
    assert_mismatch(&report, "changed", "checksum differs");
    assert_mismatch(
        &report,
        "missing_row",
        "row count differs (source 100, target 99)",
    );
    assert_mismatch(
        &report,
        "extra_row",
        "row count differs (source 100, target 101)",
    );
    // Same count, a duplicate in place of another row: only the checksum can tell.
    assert_mismatch(&report, "dup_row", "checksum differs");
    assert_mismatch(&report, "null_vs_empty", "checksum differs");
    assert_mismatch(
        &report,
        "typed",
        "column x is integer on source, bigint on target",
    );
    assert_eq!(
        *table_status(&report, "public", "only_on_source"),
        Status::MissingOnTarget
    );
    assert_eq!(
        report
            .table("public", "only_on_source")
            .unwrap()
            .rows_source(),
        Some(2)
    );
    assert_eq!(
        *table_status(&report, "public", "only_on_target"),
        Status::MissingOnSource
    );

    // The text report names every table that differs, and the summary counts them.
    for name in [
        "changed",
        "missing_row",
        "extra_row",
        "dup_row",
        "only_on_source",
        "typed",
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("public.{name} ")))
            .unwrap_or_else(|| panic!("no line for {name}:\n{text}"));
        assert!(
            line.contains("MISMATCH") || line.contains("MISSING"),
            "{line}"
        );
    }
    assert!(
        text.lines().next().unwrap().starts_with("source: "),
        "{text}"
    );
    assert!(text.contains("TABLE") && text.contains("ROWS(SRC)") && text.contains("ROWS(DST)"));
    assert!(
        text.trim_end().ends_with(
            "DIFFERENCES FOUND: 8 of 9 tables differ, 0 sequences match, 0 large objects match"
        ),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_digests_equal_whole_table_digests() {
    // Wide rows so the table spans many blocks; the target is loaded in reverse order and then
    // churned, so the same rows sit in different blocks on the two sides.
    let (src, dst) = pair(
        "verify_chunks",
        "CREATE TABLE big (id int, pad text, n numeric);",
        "INSERT INTO big SELECT g, repeat(md5(g::text), 6), g * 1.25 FROM generate_series(1, 6000) g;",
        "INSERT INTO big SELECT g, repeat(md5(g::text), 6), g * 1.25 FROM generate_series(6000, 1, -1) g;
         UPDATE big SET n = n WHERE id % 3 = 0;",
    );
    let whole = run(&src, &dst, &VerifyOptions::default()).await;
    let chunked_opts = VerifyOptions {
        jobs: 3,
        chunk_threshold_bytes: 4 * 8192,
        ..VerifyOptions::default()
    };
    let chunked = run(&src, &dst, &chunked_opts).await;
    assert!(whole.is_clean(), "{}", render_text(&whole));
    assert!(chunked.is_clean(), "{}", render_text(&chunked));

    let w = whole.table("public", "big").unwrap();
    let c = chunked.table("public", "big").unwrap();
    assert_eq!(w.source.as_ref().unwrap().chunks, 1);
    let (cs, ct) = (c.source.as_ref().unwrap(), c.target.as_ref().unwrap());
    assert!(
        cs.chunks >= 4 && ct.chunks >= 4,
        "chunks {} / {}",
        cs.chunks,
        ct.chunks
    );
    let ws = w.source.as_ref().unwrap();
    assert_eq!((cs.rows, cs.checksum), (ws.rows, ws.checksum));
    assert_eq!(ct.rows, 6000);
    assert_eq!(ct.checksum, w.target.as_ref().unwrap().checksum);

    // A difference is still found when every side is read in ranges.
    psql(
        shared_cluster(),
        &dst,
        "UPDATE big SET pad = 'x' WHERE id = 4321;",
    );
    let report = run(&src, &dst, &chunked_opts).await;
    assert_mismatch(&report, "big", "checksum differs");
}

#[tokio::test(flavor = "multi_thread")]
async fn sequence_differences_are_reported() {
    let (src, dst) = pair(
        "verify_seq",
        "CREATE SEQUENCE same; SELECT setval('same', 7);
         CREATE SEQUENCE ahead; CREATE SEQUENCE called; CREATE SEQUENCE fresh;",
        "SELECT setval('ahead', 100); SELECT setval('called', 10, true);
         CREATE SEQUENCE gone;",
        "SELECT setval('ahead', 90); SELECT setval('called', 10, false);",
    );
    let report = run(&src, &dst, &VerifyOptions::default()).await;
    let text = render_text(&report);
    assert!(!report.is_clean(), "{text}");
    let status = |name: &str| report.sequence("public", name).unwrap().status.clone();
    assert_eq!(status("same"), Status::Match);
    assert_eq!(status("fresh"), Status::Match);
    assert_eq!(
        status("ahead"),
        Status::Mismatch {
            why: "last_value differs (source 100, target 90)".into()
        }
    );
    assert_eq!(
        status("called"),
        Status::Mismatch {
            why: "is_called differs (source true, target false)".into()
        }
    );
    assert_eq!(status("gone"), Status::MissingOnTarget);
    assert!(text.contains("SEQUENCE"), "{text}");
    assert!(text.contains("10 (not called)"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn large_object_differences_are_reported() {
    let both = "SELECT lo_from_bytea(515151, '\\x000102030405'::bytea);
                SELECT lo_from_bytea(515152, convert_to(repeat('abc', 100000), 'UTF8'));";
    let (src, dst) = pair("verify_lo", both, "", "");
    let report = run(&src, &dst, &VerifyOptions::default()).await;
    assert!(report.is_clean(), "{}", render_text(&report));
    assert_eq!(report.large_objects.as_ref().unwrap().target_count, 2);

    // One byte changed in the middle of the big one; one object only on the source.
    let cluster = shared_cluster();
    psql(
        cluster,
        &dst,
        "SELECT lo_put(515152, 150000, '\\x78'::bytea);",
    );
    psql(
        cluster,
        &src,
        "SELECT lo_from_bytea(515153, '\\x01'::bytea);",
    );
    let report = run(&src, &dst, &VerifyOptions::default()).await;
    let text = render_text(&report);
    assert!(!report.is_clean(), "{text}");
    let lo = report.large_objects.as_ref().unwrap();
    assert_eq!((lo.source_count, lo.target_count), (3, 2));
    assert_eq!(lo.differences.len(), 2, "{text}");
    assert_eq!(lo.differences[0].oid, 515152);
    assert!(
        matches!(&lo.differences[0].status, Status::Mismatch { why } if why.contains("content differs")),
        "{text}"
    );
    assert_eq!(lo.differences[1].oid, 515153);
    assert_eq!(lo.differences[1].status, Status::MissingOnTarget);
    assert!(
        text.contains("oid 515152: MISMATCH: content differs"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn table_filter_limits_the_check() {
    let (src, dst) = pair(
        "verify_filter",
        "CREATE TABLE wanted (x int); CREATE TABLE other (x int); CREATE SEQUENCE s;",
        "INSERT INTO other VALUES (1);",
        "",
    );
    let opts = VerifyOptions {
        tables: vec!["public.wanted".into()],
        ..VerifyOptions::default()
    };
    let report = run(&src, &dst, &opts).await;
    assert!(report.is_clean(), "{}", render_text(&report));
    assert_eq!(report.tables.len(), 1);
    assert_eq!(report.tables[0].name, "wanted");
    assert!(report.sequences.is_none() && report.large_objects.is_none());

    let opts = VerifyOptions {
        tables: vec!["wanted".into(), "nosuch".into()],
        ..VerifyOptions::default()
    };
    let err = verify(&cfg(&src), &cfg(&dst), &opts).await.unwrap_err();
    assert!(matches!(&err, VerifyError::UnknownTables(names) if names == &["nosuch".to_string()]));
    assert!(err.to_string().contains("nosuch"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unreadable_table_is_an_error_naming_server_and_table() {
    let cluster = shared_cluster();
    let role = format!("verify_nopriv_{}", std::process::id());
    let (src, dst) = pair("verify_priv", "CREATE TABLE secret (x int);", "", "");
    psql(cluster, "postgres", &format!("CREATE ROLE {role} LOGIN"));
    let src_cfg = ConnConfig::from_conn_str(&format!(
        "postgres://{role}@{}:{}/{src}?sslmode=disable",
        cluster.host(),
        cluster.port()
    ))
    .unwrap();
    let err = verify(&src_cfg, &cfg(&dst), &VerifyOptions::default())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.side(), Some(Side::Source), "{msg}");
    let VerifyError::Query(failure) = &err else {
        panic!("expected a query failure: {msg}")
    };
    assert_eq!(failure.object, "table public.secret");
    assert!(failure.code.is_some(), "{msg}");
    assert!(msg.starts_with(&format!("source {role}@")), "{msg}");
    assert!(msg.contains("table public.secret"), "{msg}");
    assert!(msg.contains("permission denied"), "{msg}");
    assert!(msg.contains("hint: grant SELECT"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_target_is_an_error() {
    let db = fresh_db(shared_cluster(), "verify_unreach");
    // A port nobody listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dst = ConnConfig::from_conn_str(&format!(
        "postgres://postgres@127.0.0.1:{port}/x?sslmode=disable&connect_timeout=5"
    ))
    .unwrap();
    let err = verify(&cfg(&db), &dst, &VerifyOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Connect {
                side: Side::Target,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().starts_with("target: could not connect"),
        "{err}"
    );
}

/// A row-level security policy must not silently hide rows from the checksum: verify reads
/// with `row_security = off`, which turns "would be filtered" into an error with a hint.
#[tokio::test(flavor = "multi_thread")]
async fn row_level_security_is_an_error_not_a_silent_difference() {
    let cluster = shared_cluster();
    let role = format!("verify_rls_{}", std::process::id());
    psql(cluster, "postgres", &format!("CREATE ROLE {role} LOGIN"));
    let (src, dst) = pair(
        "verify_rls",
        &format!(
            "CREATE TABLE guarded (x int); INSERT INTO guarded VALUES (1), (2);
             ALTER TABLE guarded OWNER TO {role};
             ALTER TABLE guarded ENABLE ROW LEVEL SECURITY;
             ALTER TABLE guarded FORCE ROW LEVEL SECURITY;
             CREATE POLICY only_one ON guarded USING (x = 1);"
        ),
        "",
        "",
    );
    let as_owner = ConnConfig::from_conn_str(&format!(
        "postgres://{role}@{}:{}/{dst}?sslmode=disable",
        cluster.host(),
        cluster.port()
    ))
    .unwrap();
    let err = verify(&cfg(&src), &as_owner, &VerifyOptions::default())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.side(), Some(Side::Target), "{msg}");
    assert!(msg.contains("table public.guarded"), "{msg}");
    assert!(msg.contains("row-level security"), "{msg}");
    assert!(msg.contains("BYPASSRLS"), "{msg}");
}
