//! The snapshot copy engine against a real server: a source database and a target database on
//! the shared test cluster, tables created on both sides with psql (the schema engine's job in
//! a real migration), data copied with `copy::plan_tables` + `copy::copy_all`, and both sides
//! compared with psql as the oracle.

mod support;

use std::sync::Mutex;

use pgferry::conn::{connect, ConnConfig};
use pgferry::copy::{
    copy_all, plan_tables, CopyFormat, CopyStats, ExportedSnapshot, NoProgress, PlanOptions,
    ProgressSink, RowRange, Side, TableFilter, TableJob,
};
use support::{fresh_db, psql, shared_cluster};

/// A source and a target database holding the same (empty) tables made by `ddl`.
struct Pair {
    src_db: String,
    dst_db: String,
    src: ConnConfig,
    dst: ConnConfig,
}

fn pair(prefix: &str, ddl: &str) -> Pair {
    let cluster = shared_cluster();
    let src_db = fresh_db(cluster, &format!("{prefix}_src"));
    let dst_db = fresh_db(cluster, &format!("{prefix}_dst"));
    psql(cluster, &src_db, ddl);
    psql(cluster, &dst_db, ddl);
    Pair {
        src: ConnConfig::from_conn_str(&cluster.uri(&src_db)).unwrap(),
        dst: ConnConfig::from_conn_str(&cluster.uri(&dst_db)).unwrap(),
        src_db,
        dst_db,
    }
}

impl Pair {
    fn src_sql(&self, sql: &str) -> String {
        psql(shared_cluster(), &self.src_db, sql)
    }
    fn dst_sql(&self, sql: &str) -> String {
        psql(shared_cluster(), &self.dst_db, sql)
    }

    /// Asserts that `query` returns the same, non-empty answer on both sides.
    fn assert_same(&self, query: &str) -> String {
        let (s, d) = (self.src_sql(query), self.dst_sql(query));
        assert!(!s.is_empty(), "{query} returned nothing on the source");
        assert_eq!(s, d, "source and target differ for {query}");
        s
    }

    /// `md5` over every row of `table` in `id` order, which must match on both sides.
    fn assert_same_rows(&self, table: &str) {
        self.assert_same(&format!(
            "SELECT count(*) || ':' || md5(string_agg(t::text, ',' ORDER BY id)) FROM {table} t"
        ));
    }

    /// Exports a snapshot, plans inside it and copies everything the filter selects.
    async fn copy(&self, opts: PlanOptions, workers: usize) -> (Vec<TableJob>, Vec<CopyStats>) {
        let snapshot = ExportedSnapshot::export(&self.src).await.unwrap();
        let jobs = plan_tables(snapshot.client(), &opts).await.unwrap();
        let stats = copy_all(
            &self.src,
            &self.dst,
            snapshot.name(),
            jobs.clone(),
            workers,
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("copy failed: {e}"));
        snapshot.close().await.unwrap();
        (jobs, stats)
    }
}

fn only(tables: &[&str]) -> TableFilter {
    TableFilter {
        include: tables.iter().map(|t| t.to_string()).collect(),
        exclude: Vec::new(),
    }
}

const MANY_TYPES: &str = "
CREATE TABLE many (
    id int PRIMARY KEY,
    i8 bigint,
    t text,
    b bytea,
    n numeric,
    ts timestamptz,
    arr int[],
    tarr text[],
    j jsonb,
    r int4range,
    u uuid
);";

const MANY_ROWS: &str = r#"
INSERT INTO many
SELECT g, g * 1000000007::bigint,
       'ünïcødé ☃ ' || g || E'\nsecond line\\with backslash\ttab',
       decode(md5(g::text), 'hex') || '\x00ff'::bytea,
       g * 3.14159265358979::numeric / 7,
       '2024-02-29 12:34:56.789+05:30'::timestamptz + g * interval '1 hour',
       ARRAY[g, NULL, -g],
       ARRAY['a,b', NULL, E'q"uote\\', '{}'],
       jsonb_build_object('k', g, 'nested', jsonb_build_array(1, 'two', NULL)),
       int4range(g, g + 10),
       md5(g::text)::uuid
  FROM generate_series(1, 500) g;
INSERT INTO many (id) VALUES (0);
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_types_copy_identically_in_binary_and_text() {
    let p = pair("copy_types", MANY_TYPES);
    p.src_sql(MANY_ROWS);
    // A stale row on the target: truncate_first must remove it.
    p.dst_sql("INSERT INTO many (id, t) VALUES (-1, 'stale')");

    let opts = PlanOptions {
        filter: only(&["public.many"]),
        truncate_first: true,
        ..PlanOptions::default()
    };
    let (jobs, stats) = p.copy(opts.clone(), 2).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        jobs[0].format,
        CopyFormat::Binary,
        "{:?}",
        jobs[0].text_reason
    );
    assert_eq!(stats[0].rows, 501);
    p.assert_same_rows("many");

    // Text, forced; the second copy truncates the first one's rows (in the FREEZE transaction).
    let (jobs, stats) = p
        .copy(
            PlanOptions {
                force_text: true,
                ..opts.clone()
            },
            1,
        )
        .await;
    assert_eq!(jobs[0].format, CopyFormat::Text);
    assert_eq!(stats[0].rows, 501);
    p.assert_same_rows("many");

    // Another major version on the target also means text.
    let snapshot = ExportedSnapshot::export(&p.src).await.unwrap();
    let jobs = plan_tables(
        snapshot.client(),
        &PlanOptions {
            target_major: Some(shared_cluster().major() + 1),
            ..opts
        },
    )
    .await
    .unwrap();
    assert_eq!(jobs[0].format, CopyFormat::Text);
    assert!(jobs[0]
        .text_reason
        .as_deref()
        .unwrap()
        .contains("target is PostgreSQL"));
    snapshot.close().await.unwrap();
}

/// Records progress events, to check they add up.
#[derive(Default)]
struct Recorder {
    started: Mutex<Vec<String>>,
    bytes: Mutex<u64>,
    finished: Mutex<Vec<(String, u64)>>,
}

impl ProgressSink for Recorder {
    fn job_started(&self, job: &TableJob) {
        self.started.lock().unwrap().push(job.display_name());
    }
    fn bytes_copied(&self, _job: &TableJob, bytes: u64) {
        *self.bytes.lock().unwrap() += bytes;
    }
    fn job_finished(&self, job: &TableJob, stats: &CopyStats) {
        self.finished
            .lock()
            .unwrap()
            .push((job.display_name(), stats.rows));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_table_copies_every_row_exactly_once() {
    let p = pair(
        "copy_split",
        "CREATE TABLE big (id int PRIMARY KEY, pad text);",
    );
    p.src_sql(
        "INSERT INTO big SELECT g, repeat(md5(g::text), 6) FROM generate_series(1, 5000) g;
         DELETE FROM big WHERE id % 7 = 0; -- holes in some blocks
         VACUUM ANALYZE big;",
    );
    p.dst_sql("INSERT INTO big VALUES (-1, 'stale'), (1, 'conflicts with a source row')");
    let size: u64 = p.src_sql("SELECT pg_table_size('big')").parse().unwrap();

    let snapshot = ExportedSnapshot::export(&p.src).await.unwrap();
    let jobs = plan_tables(
        snapshot.client(),
        &PlanOptions {
            filter: only(&["public.big"]),
            split_threshold: Some(size / 5),
            truncate_first: true,
            ..PlanOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(jobs.len() >= 4, "expected at least 4 ranges, got {jobs:?}");
    assert!(jobs
        .iter()
        .all(|j| matches!(j.range, Some(RowRange::Ctid { .. }))));
    // Exactly one open-ended range, and it starts where another ends.
    assert_eq!(
        jobs.iter()
            .filter(|j| matches!(j.range, Some(RowRange::Ctid { end: None, .. })))
            .count(),
        1
    );

    let recorder = Recorder::default();
    let stats = copy_all(&p.src, &p.dst, snapshot.name(), jobs.clone(), 3, &recorder)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    snapshot.close().await.unwrap();

    let total_rows: u64 = stats.iter().map(|s| s.rows).sum();
    let expected: u64 = p.src_sql("SELECT count(*) FROM big").parse().unwrap();
    assert_eq!(total_rows, expected);
    assert_eq!(
        p.dst_sql("SELECT count(*) = count(DISTINCT id) FROM big"),
        "t"
    );
    p.assert_same_rows("big");
    assert_eq!(recorder.started.lock().unwrap().len(), jobs.len());
    assert_eq!(recorder.finished.lock().unwrap().len(), jobs.len());
    let bytes: u64 = stats.iter().map(|s| s.bytes).sum();
    assert_eq!(*recorder.bytes.lock().unwrap(), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_without_binary_io_falls_back_to_text() {
    // aclitem has no binary send/receive functions; an aclitem[] column must go as text.
    let p = pair(
        "copy_aclitem",
        "CREATE TABLE acl (id int PRIMARY KEY, grants aclitem[], note text);",
    );
    assert_eq!(
        p.src_sql("SELECT typsend::oid = 0 AND typreceive::oid = 0 FROM pg_type WHERE oid = 'aclitem'::regtype"),
        "t"
    );
    p.src_sql(
        "INSERT INTO acl SELECT g, ARRAY[makeaclitem('postgres'::regrole, 'postgres'::regrole, 'SELECT', g % 2 = 0)], 'n' || g
           FROM generate_series(1, 50) g;",
    );
    let (jobs, stats) = p
        .copy(
            PlanOptions {
                filter: only(&["public.acl"]),
                ..PlanOptions::default()
            },
            1,
        )
        .await;
    assert_eq!(jobs[0].format, CopyFormat::Text);
    let reason = jobs[0].text_reason.as_deref().unwrap();
    assert!(
        reason.contains("grants") && reason.contains("aclitem"),
        "{reason}"
    );
    assert_eq!(stats[0].rows, 50);
    p.assert_same_rows("acl");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_columns_are_left_to_the_target() {
    let p = pair(
        "copy_generated",
        "CREATE TABLE g (id int PRIMARY KEY, a int, doubled int GENERATED ALWAYS AS (a * 2) STORED, b text);
         ALTER TABLE g DROP COLUMN b;
         ALTER TABLE g ADD COLUMN c text;",
    );
    p.src_sql("INSERT INTO g (id, a, c) SELECT x, x, 'c' || x FROM generate_series(1, 100) x");
    let (jobs, _) = p
        .copy(
            PlanOptions {
                filter: only(&["public.g"]),
                ..PlanOptions::default()
            },
            1,
        )
        .await;
    assert_eq!(jobs[0].columns, vec!["id", "a", "c"]);
    p.assert_same_rows("g");
    assert_eq!(
        p.dst_sql("SELECT count(*) FROM g WHERE doubled = a * 2"),
        "100"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_tables_are_copied_through_their_leaves() {
    let p = pair(
        "copy_parts",
        "CREATE SCHEMA app;
         CREATE TABLE app.events (id int, at date, payload text) PARTITION BY RANGE (at);
         CREATE TABLE app.events_2023 PARTITION OF app.events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
         CREATE TABLE app.events_2024 PARTITION OF app.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')
             PARTITION BY LIST (payload);
         CREATE TABLE app.events_2024_x PARTITION OF app.events_2024 FOR VALUES IN ('x');
         CREATE TABLE app.events_2024_rest PARTITION OF app.events_2024 DEFAULT;
         CREATE UNLOGGED TABLE app.scratch (id int, v text);
         CREATE VIEW app.recent AS SELECT * FROM app.events WHERE at > '2024-06-01';",
    );
    p.src_sql(
        "INSERT INTO app.events SELECT g, DATE '2023-01-01' + g, CASE WHEN g % 3 = 0 THEN 'x' ELSE 'y' || g END
           FROM generate_series(1, 600) g;
         INSERT INTO app.scratch VALUES (1, 'unlogged rows count too');",
    );
    let (jobs, _) = p
        .copy(
            PlanOptions {
                filter: only(&["app.*"]),
                truncate_first: true,
                ..PlanOptions::default()
            },
            2,
        )
        .await;
    let mut names: Vec<String> = jobs.iter().map(|j| j.display_name()).collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "app.events_2023",
            "app.events_2024_rest",
            "app.events_2024_x",
            "app.scratch"
        ]
    );
    p.assert_same_rows("app.events");
    p.assert_same_rows("app.scratch");
    p.assert_same("SELECT count(*) FROM app.events_2024_x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_committed_after_the_snapshot_are_not_copied() {
    let p = pair(
        "copy_snapshot",
        "CREATE TABLE s (id int PRIMARY KEY, v text); CREATE TABLE s2 (id int PRIMARY KEY);",
    );
    p.src_sql("INSERT INTO s SELECT g, 'before' FROM generate_series(1, 100) g; INSERT INTO s2 VALUES (1);");
    let snapshot = ExportedSnapshot::export(&p.src).await.unwrap();
    // Committed after the export, in other sessions: invisible to every worker.
    p.src_sql(
        "INSERT INTO s SELECT g, 'after' FROM generate_series(101, 150) g;
         UPDATE s SET v = 'changed' WHERE id <= 10;
         DELETE FROM s2;",
    );
    let jobs = plan_tables(
        snapshot.client(),
        &PlanOptions {
            filter: only(&["public.s", "public.s2"]),
            ..PlanOptions::default()
        },
    )
    .await
    .unwrap();
    copy_all(&p.src, &p.dst, snapshot.name(), jobs, 2, &NoProgress)
        .await
        .unwrap();
    snapshot.close().await.unwrap();
    assert_eq!(
        p.dst_sql("SELECT count(*), count(*) FILTER (WHERE v = 'before') FROM s"),
        "100|100"
    );
    assert_eq!(p.dst_sql("SELECT count(*) FROM s2"), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_error_names_the_table_and_the_side() {
    let cluster = shared_cluster();
    let src_db = fresh_db(cluster, "copy_err_src");
    let dst_db = fresh_db(cluster, "copy_err_dst");
    psql(
        cluster,
        &src_db,
        "CREATE TABLE ok (id int); INSERT INTO ok VALUES (1);
         CREATE TABLE broken (id int, extra text); INSERT INTO broken VALUES (1, 'x');",
    );
    psql(
        cluster,
        &dst_db,
        "CREATE TABLE ok (id int); CREATE TABLE broken (id int);",
    );
    let src = ConnConfig::from_conn_str(&cluster.uri(&src_db)).unwrap();
    let dst = ConnConfig::from_conn_str(&cluster.uri(&dst_db)).unwrap();
    let snapshot = ExportedSnapshot::export(&src).await.unwrap();
    let jobs = plan_tables(snapshot.client(), &PlanOptions::default())
        .await
        .unwrap();
    let err = copy_all(&src, &dst, snapshot.name(), jobs, 1, &NoProgress)
        .await
        .unwrap_err();
    snapshot.close().await.unwrap();
    assert_eq!(err.side, Side::Target);
    assert_eq!(err.table.as_deref(), Some("public.broken"));
    assert_eq!(err.code.as_deref(), Some("42703"), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("public.broken") && text.contains("target") && text.contains("extra"),
        "{text}"
    );
    // Nothing half-copied is left behind in the failing table.
    assert_eq!(psql(cluster, &dst_db, "SELECT count(*) FROM broken"), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_row_security_fails_loudly_instead_of_filtering() {
    let cluster = shared_cluster();
    let src_db = fresh_db(cluster, "copy_rls_src");
    let dst_db = fresh_db(cluster, "copy_rls_dst");
    let owner = format!("copy_rls_owner_{}", std::process::id());
    psql(
        cluster,
        &src_db,
        &format!(
            "DO $$ BEGIN CREATE ROLE {owner} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
             GRANT CREATE ON SCHEMA public TO {owner};
             SET ROLE {owner};
             CREATE TABLE secret (id int, owner_name text);
             INSERT INTO secret VALUES (1, 'a'), (2, 'b');
             ALTER TABLE secret ENABLE ROW LEVEL SECURITY;
             ALTER TABLE secret FORCE ROW LEVEL SECURITY;
             CREATE POLICY only_a ON secret USING (owner_name = 'a');"
        ),
    );
    psql(
        cluster,
        &dst_db,
        "CREATE TABLE secret (id int, owner_name text);",
    );
    // The table owner (not a superuser) is subject to its FORCEd policy.
    let src_uri = cluster
        .uri(&src_db)
        .replacen("postgres@", &format!("{owner}@"), 1);
    let src = ConnConfig::from_conn_str(&src_uri).unwrap();
    let dst = ConnConfig::from_conn_str(&cluster.uri(&dst_db)).unwrap();
    let snapshot = ExportedSnapshot::export(&src).await.unwrap();
    let jobs = plan_tables(snapshot.client(), &PlanOptions::default())
        .await
        .unwrap();
    let err = copy_all(&src, &dst, snapshot.name(), jobs, 1, &NoProgress)
        .await
        .unwrap_err();
    snapshot.close().await.unwrap();
    assert_eq!(err.side, Side::Source, "{err}");
    assert_eq!(err.table.as_deref(), Some("public.secret"));
    assert!(err.message.contains("row-level security"), "{err}");
    assert_eq!(psql(cluster, &dst_db, "SELECT count(*) FROM secret"), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_a_bad_snapshot_name_is_refused() {
    let cluster = shared_cluster();
    let db = fresh_db(cluster, "copy_badsnap");
    let cfg = ConnConfig::from_conn_str(&cluster.uri(&db)).unwrap();
    let session = connect(&cfg).await.unwrap();
    let err = pgferry::copy::begin_in_snapshot(&session.client, "x'; DROP TABLE t; --")
        .await
        .unwrap_err();
    assert!(err.message.contains("invalid snapshot name"), "{err}");
    let err = pgferry::copy::begin_in_snapshot(&session.client, "00000003-0000FFFF-1")
        .await
        .unwrap_err();
    assert_eq!(err.side, Side::Source);
    assert!(err.message.contains("snapshot"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_copy_does_not_depend_on_either_sides_datestyle() {
    let p = pair(
        "copy_datestyle",
        "CREATE TABLE d (id int PRIMARY KEY, day date, at timestamp, span interval, f float8);",
    );
    // Day-first on the source, month-first on the target: 03/04 would swap without ISO.
    p.src_sql(&format!(
        "ALTER DATABASE {} SET datestyle = 'SQL, DMY'; ALTER DATABASE {} SET intervalstyle = 'sql_standard';",
        p.src_db, p.src_db
    ));
    p.dst_sql(&format!(
        "ALTER DATABASE {} SET datestyle = 'SQL, MDY'; ALTER DATABASE {} SET extra_float_digits = -3;",
        p.dst_db, p.dst_db
    ));
    p.src_sql(
        "INSERT INTO d VALUES (1, '2024-04-03', '2024-04-03 01:02:03.456789', '1 year 2 mons -3 days 04:05:06', 0.1::float8 + 0.2::float8),
                              (2, '2001-12-11', '2001-12-11 23:59:59', '-1 day +1 hour', 1e-310);",
    );
    let (jobs, _) = p
        .copy(
            PlanOptions {
                filter: only(&["public.d"]),
                force_text: true,
                ..PlanOptions::default()
            },
            1,
        )
        .await;
    assert_eq!(jobs[0].format, CopyFormat::Text);
    // Compared in one fixed style (psql sessions get each database's own settings).
    p.assert_same(
        "SET datestyle = ISO; SET intervalstyle = postgres; SET extra_float_digits = 3;
         SELECT string_agg(format('%s|%s|%s|%s|%s', id, day, at, span, f), ',' ORDER BY id) FROM d",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_without_copied_columns_keep_their_row_count() {
    let p = pair(
        "copy_nocols",
        "CREATE TABLE nothing (); CREATE TABLE only_generated (g int GENERATED ALWAYS AS (1) STORED);",
    );
    p.src_sql(
        "INSERT INTO nothing SELECT FROM generate_series(1, 3);
         INSERT INTO only_generated SELECT FROM generate_series(1, 4);",
    );
    let (jobs, stats) = p
        .copy(
            PlanOptions {
                filter: only(&["public.nothing", "public.only_generated"]),
                ..PlanOptions::default()
            },
            2,
        )
        .await;
    assert!(jobs.iter().all(|j| j.columns.is_empty()));
    let rows: u64 = stats.iter().map(|s| s.rows).sum();
    assert_eq!(rows, 7);
    assert_eq!(p.dst_sql("SELECT count(*) FROM nothing"), "3");
    assert_eq!(
        p.dst_sql("SELECT count(*), sum(g) FROM only_generated"),
        "4|4"
    );
}

/// Not run by default (it moves ~150 MB): `cargo test --release --test copy_engine -- --ignored
/// --nocapture bulk` prints the end-to-end rate through one local server, binary and text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bulk_copy_throughput() {
    let p = pair(
        "copy_bulk",
        "CREATE TABLE bulk (id bigint PRIMARY KEY, n int, at timestamptz, t text, f float8);",
    );
    p.src_sql(
        "INSERT INTO bulk SELECT g, g % 1000, now() - g * interval '1 second', md5(g::text) || ' ' || g, g / 3.0
           FROM generate_series(1, 1500000) g;
         VACUUM ANALYZE bulk;",
    );
    for force_text in [false, true] {
        let started = std::time::Instant::now();
        let (_, stats) = p
            .copy(
                PlanOptions {
                    filter: only(&["public.bulk"]),
                    force_text,
                    truncate_first: true,
                    split_threshold: Some(32 << 20),
                    ..PlanOptions::default()
                },
                2,
            )
            .await;
        let secs = started.elapsed().as_secs_f64();
        let bytes: u64 = stats.iter().map(|s| s.bytes).sum();
        let rows: u64 = stats.iter().map(|s| s.rows).sum();
        assert_eq!(rows, 1_500_000);
        println!(
            "{}: {} jobs, {rows} rows, {:.1} MB in {secs:.2} s = {:.1} MB/s, {:.0} rows/s",
            if force_text { "text" } else { "binary" },
            stats.len(),
            bytes as f64 / 1e6,
            bytes as f64 / 1e6 / secs,
            rows as f64 / secs
        );
        p.assert_same_rows("bulk");
    }
}
