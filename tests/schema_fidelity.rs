//! Schema fidelity: for each fixture, load it into a source database, generate our DDL with
//! `dump_schema`, apply it to an empty database with `psql -1`, and require that pg_dump
//! (the oracle; never used by the library) prints the same schema for both databases.

mod support;

use std::process::Command;

use pgferry::schema::{DumpOptions, SubscriptionMode};
use pgferry::script::{dump_schema, SchemaScript};
use support::fidelity::{
    assert_index_defs_are_the_servers, connect, first_diff, fixture, pg_dump_schema, psql_apply,
    roundtrip_on,
};
use support::{fresh_db, psql, shared_cluster};

/// [`roundtrip_on`] the shared (default-version) cluster.
async fn roundtrip(name: &str, fixture: &str, opts: &DumpOptions) -> SchemaScript {
    roundtrip_on(shared_cluster(), name, fixture, opts).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagila_roundtrips_with_zero_diff() {
    let Some(path) = support::corpus_file("pagila/pagila-schema.sql") else {
        support::skip(
            "pagila_roundtrips_with_zero_diff",
            "pagila corpus not found (set PGFERRY_CORPUS)",
        );
        return;
    };
    let sql = std::fs::read_to_string(path).unwrap();
    let script = roundtrip("pagila", &sql, &DumpOptions::default()).await;
    assert!(script.warnings.is_empty(), "{:?}", script.warnings);
    // The partitioned payment table is attached, not created with PARTITION OF.
    assert!(script
        .pre_data
        .contains("ATTACH PARTITION public.payment_p2022_01"));
    assert!(script.post_data.contains("CREATE TRIGGER last_updated"));
    // Nothing about system objects whose privileges were not changed.
    assert!(!script.post_data.contains("information_schema"));
    assert!(!script.post_data.contains("ON FUNCTION pg_catalog."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_sequences_partitions_and_constraints() {
    let script = roundtrip("tables", &fixture("tables.sql"), &DumpOptions::default()).await;
    assert!(script.warnings.is_empty(), "{:?}", script.warnings);
    assert!(script.pre_data.contains("CREATE SCHEMA \"Sales-Data\";"));
    assert!(script.post_data.contains("NOT VALID"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn types_routines_views_triggers_rules_policies() {
    let script = roundtrip(
        "routines",
        &fixture("routines.sql"),
        &DumpOptions::default(),
    )
    .await;
    // Created WITH NO DATA in the source: nothing to refresh.
    assert_eq!(script.refresh_matviews, "");
    assert!(script.warnings.is_empty(), "{:?}", script.warnings);
    // The view grouping by the primary key can only be created after it, in post-data.
    assert!(script.post_data.contains("CREATE VIEW app.account_notes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_privileges_default_privileges_extensions() {
    let script = roundtrip("privs", &fixture("privileges.sql"), &DumpOptions::default()).await;
    assert!(script.warnings.is_empty(), "{:?}", script.warnings);
    assert!(script
        .pre_data
        .contains("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA ext;"));
    // Extension members are not dumped.
    assert!(!script.pre_data.contains("FUNCTION ext.similarity"));
    assert!(script.post_data.contains("ALTER DEFAULT PRIVILEGES"));
    // Privileges on objects not dumped themselves (built-in, extension member).
    assert!(script
        .post_data
        .contains("GRANT EXECUTE ON FUNCTION pg_catalog.pg_ls_dir(text) TO fx_app;"));
    assert!(script
        .post_data
        .contains("REVOKE EXECUTE ON FUNCTION ext.similarity(text, text) FROM PUBLIC;"));
}

/// The comparison itself must be able to fail: leaving out post-data (or owners) has to show
/// up as a difference, otherwise the round-trip tests above would prove nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oracle_notices_missing_pieces() {
    let cluster = shared_cluster();
    let src = fresh_db(cluster, "oracle_src");
    psql_apply(cluster, &src, &fixture("privileges.sql"), true).unwrap();
    let client = connect(cluster, &src).await;
    let opts = DumpOptions {
        no_owner: true,
        no_privileges: true,
        ..DumpOptions::default()
    };
    let script = dump_schema(&client, &opts).await.unwrap();
    assert!(!script.pre_data.contains("OWNER TO"));
    assert!(!script.pre_data.contains("GRANT"));
    assert!(!script.post_data.contains("DEFAULT PRIVILEGES"));

    let dst = fresh_db(cluster, "oracle_dst");
    psql_apply(cluster, &dst, &script.pre_data, true).unwrap();
    let a = pg_dump_schema(cluster, &src);
    let b = pg_dump_schema(cluster, &dst);
    let diff = first_diff(&a, &b).expect("dumps should differ");
    assert!(
        diff.contains("OWNER TO") || diff.contains("GRANT"),
        "{diff}"
    );
    // Everything it left out is post-data or privileges; adding post-data still differs only
    // in owners and privileges.
    psql_apply(cluster, &dst, &script.post_data, true).unwrap();
    let b = pg_dump_schema(cluster, &dst);
    let strip = |v: &[String]| -> Vec<String> {
        v.iter()
            .filter(|l| {
                !l.contains("OWNER TO") && !l.starts_with("GRANT") && !l.starts_with("REVOKE")
            })
            .filter(|l| !l.starts_with("ALTER DEFAULT PRIVILEGES"))
            .filter(|l| !l.ends_with("SESSION AUTHORIZATION;") && !l.starts_with("SET SESSION"))
            .cloned()
            .collect()
    };
    assert_eq!(first_diff(&strip(&a), &strip(&b)), None);
}

/// Catalog reads are batched per object kind: 10,000 tables (each with a sequence, a primary
/// key, a CHECK and an index) must be read and rendered in under 10 seconds. Ignored by
/// default because creating the tables takes about half a minute on a small machine; run
/// with `cargo test --test schema_fidelity -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn ten_thousand_tables_are_read_in_under_ten_seconds() {
    let cluster = shared_cluster();
    let db = fresh_db(cluster, "scale");
    for batch in 0..10 {
        let sql = format!(
            "DO $$ BEGIN FOR i IN {}..{} LOOP
               EXECUTE format('CREATE TABLE t%s (id serial PRIMARY KEY, name text NOT NULL DEFAULT ''x'', v numeric(10,2), CHECK (v > 0))', i);
               EXECUTE format('CREATE INDEX ON t%s (name)', i);
             END LOOP; END $$",
            batch * 1000 + 1,
            batch * 1000 + 1000
        );
        psql(cluster, &db, &sql);
    }
    let client = connect(cluster, &db).await;
    pgferry::catalog::begin_snapshot_read(&client, None)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let script = dump_schema(&client, &DumpOptions::default()).await.unwrap();
    let took = started.elapsed();
    assert_eq!(script.pre_data.matches("CREATE TABLE").count(), 10_000);
    assert_eq!(script.post_data.matches("CREATE INDEX").count(), 10_000);
    assert_eq!(script.pre_data.matches(" CHECK (").count(), 10_000);
    assert_eq!(script.post_data.matches(" PRIMARY KEY ").count(), 10_000);
    assert!(took.as_secs_f64() < 10.0, "took {took:?}");
    eprintln!("10,000 tables read and rendered in {took:?}");
}

/// Our `quote_ident` against the server's, for every keyword the server knows plus awkward
/// names. We may quote more than this server (keywords added in later versions, so a script
/// also works on a newer target), never less.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quote_ident_agrees_with_the_server() {
    use pgferry::ddl::{quote_ident, quote_literal};
    let cluster = shared_cluster();
    let client = connect(cluster, "postgres").await;
    let mut words: Vec<String> = client
        .query("SELECT word FROM pg_get_keywords()", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(words.len() > 400);
    for w in [
        "", "a", "A", "Abc", "abc1", "1abc", "_", "my-table", "a b", "we\"ird", "bıgınt", "ünï",
        "UPPER", "x$y", "a.b", "tab\tle", "日本",
    ] {
        words.push(w.to_string());
    }
    let newer = [
        "json",
        "json_array",
        "json_arrayagg",
        "json_exists",
        "json_object",
        "json_objectagg",
        "json_query",
        "json_scalar",
        "json_serialize",
        "json_table",
        "json_value",
        "merge_action",
        "system_user",
    ];
    for w in &words {
        let server: String = client
            .query_one("SELECT quote_ident($1)", &[w])
            .await
            .unwrap()
            .get(0);
        let ours = quote_ident(w);
        if ours != server {
            assert!(
                newer.contains(&w.as_str()) && server == *w,
                "quote_ident({w:?}): server {server:?}, ours {ours:?}"
            );
        }
        let lit: String = client
            .query_one("SELECT quote_literal($1)", &[w])
            .await
            .unwrap()
            .get(0);
        assert_eq!(quote_literal(w), lit, "quote_literal({w:?})");
    }
    for s in ["a\\b", "it's", "\\'", "x\ny"] {
        let lit: String = client
            .query_one("SELECT quote_literal($1)", &[&s])
            .await
            .unwrap()
            .get(0);
        assert_eq!(quote_literal(s), lit, "quote_literal({s:?})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collations_operators_casts_text_search_foreign_data_statistics_event_triggers() {
    let script = roundtrip("extras", &fixture("extras.sql"), &DumpOptions::default()).await;
    assert!(script.warnings.is_empty(), "{:?}", script.warnings);
    // Publications are never part of pre-data or post-data.
    assert!(!script.pre_data.contains("PUBLICATION"));
    assert!(!script.post_data.contains("PUBLICATION"));
    assert!(script.publications.contains("CREATE PUBLICATION fx_pub "));
    // The extension's own wrapper is not dumped, the server using it is.
    assert!(!script
        .pre_data
        .contains("CREATE FOREIGN DATA WRAPPER postgres_fdw"));
    assert!(script.pre_data.contains("CREATE SERVER fx_pg"));
    // The implicit family of a class is left to the class; an explicit one is created.
    assert!(!script
        .pre_data
        .contains("CREATE OPERATOR FAMILY misc.money2_ops"));
    assert!(script
        .pre_data
        .contains("ALTER OPERATOR FAMILY misc.money2_hash_fam USING hash ADD"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_cases() {
    let script = roundtrip("edge", &fixture("edge_cases.sql"), &DumpOptions::default()).await;
    assert!(script.warnings.is_empty(), "{:?}", script.warnings);
    // Populated materialized views are refreshed after the data, dependencies first.
    let r = &script.refresh_matviews;
    assert!(r.contains("REFRESH MATERIALIZED VIEW lower_s.mv_full;"));
    let mv1 = r.find("lower_s.mv1;").unwrap();
    let mv2 = r.find("lower_s.mv2;").unwrap();
    assert!(mv1 < mv2, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_in_a_dependency_cycle_gets_a_stub() {
    let script = roundtrip("cycles", &fixture("cycles.sql"), &DumpOptions::default()).await;
    assert!(script.warnings.is_empty(), "{:?}", script.warnings);
    assert!(script.pre_data.contains("CREATE OR REPLACE VIEW cyc.v"));
    assert!(script
        .pre_data
        .contains("ALTER TABLE cyc.acct\n    ADD CONSTRAINT acct_ok CHECK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tablespaces_are_kept() {
    let cluster = shared_cluster();
    // A directory the server's OS user owns; tablespaces belong to the whole cluster.
    let dir = tempfile::tempdir().unwrap();
    let uid = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    if nix_is_root() {
        std::os::unix::fs::chown(dir.path(), Some(uid("-u")), Some(uid("-g"))).unwrap();
    }
    psql(
        cluster,
        "postgres",
        &format!(
            "CREATE TABLESPACE fx_space LOCATION '{}'",
            dir.path().display()
        ),
    );
    let script = roundtrip(
        "tablespaces",
        &fixture("tablespaces.sql"),
        &DumpOptions::default(),
    )
    .await;
    assert!(script
        .pre_data
        .contains("SET default_tablespace = fx_space;"));
    assert!(script
        .post_data
        .contains("SET default_tablespace = fx_space;"));
}

fn nix_is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// The catalog is read under an exported snapshot: a table created after the export is not
/// seen, and `--section` keeps only the requested part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_under_an_exported_snapshot() {
    use pgferry::schema::SectionFilter;
    let cluster = shared_cluster();
    let db = fresh_db(cluster, "snapshot");
    psql(
        cluster,
        &db,
        "CREATE TABLE before_export (id int PRIMARY KEY)",
    );
    let exporter = connect(cluster, &db).await;
    exporter
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await
        .unwrap();
    let snapshot: String = exporter
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .unwrap()
        .get(0);
    psql(cluster, &db, "CREATE TABLE after_export (id int)");

    let reader = connect(cluster, &db).await;
    pgferry::catalog::begin_snapshot_read(&reader, Some(&snapshot))
        .await
        .unwrap();
    let opts = DumpOptions {
        section: SectionFilter::PreData,
        ..DumpOptions::default()
    };
    let script = dump_schema(&reader, &opts).await.unwrap();
    reader.batch_execute("COMMIT").await.unwrap();
    exporter.batch_execute("COMMIT").await.unwrap();
    assert!(script
        .pre_data
        .contains("CREATE TABLE public.before_export"));
    assert!(!script.pre_data.contains("after_export"));
    assert!(script.post_data.is_empty());

    // A snapshot name that does not exist is an error, not a silent fresh snapshot.
    let other = connect(cluster, &db).await;
    assert!(
        pgferry::catalog::begin_snapshot_read(&other, Some("00000003-0000001B-1"))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreated_public_schema_is_altered_not_created() {
    let script = roundtrip(
        "recreated_public",
        &fixture("recreated_public.sql"),
        &DumpOptions::default(),
    )
    .await;
    assert!(!script.pre_data.contains("CREATE SCHEMA public"));
    assert!(script
        .pre_data
        .contains("REVOKE USAGE ON SCHEMA public FROM PUBLIC;"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internals_roundtrip() {
    let script = roundtrip(
        "internals",
        &fixture("internals.sql"),
        &DumpOptions::default(),
    )
    .await;
    assert!(script.warnings.is_empty(), "{:?}", script.warnings);
    let pre = &script.pre_data;
    // A base type: shell first, then its I/O functions, then the full definition.
    let shell = pre.find("CREATE TYPE fx_int.fx_base;").unwrap();
    let input = pre.find("FUNCTION fx_int.fx_base_in(").unwrap();
    let full = pre.find("CREATE TYPE fx_int.fx_base (").unwrap();
    assert!(shell < input && input < full, "{pre}");
    // A shell never completed stays a shell.
    assert!(pre.contains("CREATE TYPE public.fx_shell;"));
    assert!(!pre.contains("CREATE TYPE public.fx_shell ("));
    for needle in [
        "CREATE ACCESS METHOD fx_am TYPE INDEX HANDLER bthandler;",
        "CREATE ACCESS METHOD fx_tam TYPE TABLE HANDLER heap_tableam_handler;",
        "CREATE DEFAULT CONVERSION fx_int.fx_conv_default FOR 'LATIN1' TO 'UTF8'",
        "CREATE TEXT SEARCH PARSER public.fx_parser (",
        "CREATE TEXT SEARCH TEMPLATE fx_int.fx_tmpl_noinit (",
        "CREATE TRANSFORM FOR fx_int.fx_base LANGUAGE plpgsql (",
        "CREATE TRUSTED PROCEDURAL LANGUAGE fx_pl HANDLER fx_int.fx_pl_handler",
    ] {
        assert!(pre.contains(needle), "missing {needle:?} in\n{pre}");
    }
}

/// The object kinds PostgreSQL's regression database caught, each in a fixture of our own:
/// loose operator-family members, a STORAGE-only operator class, generated columns of
/// inheritance children, a materialized view column's compression, identity sequences of an
/// unlogged table, column privileges on a system catalog, publications with column lists,
/// row filters and schemas, and subscriptions (scripted as pg_dump does; for a user who may
/// not read their connection strings, named in a warning instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_kinds_the_regression_database_caught() {
    let opts = DumpOptions {
        subscriptions: SubscriptionMode::Script,
        ..DumpOptions::default()
    };
    let script = roundtrip("regress_kinds", &fixture("regress_kinds.sql"), &opts).await;
    assert!(script.warnings.is_empty(), "{:?}", script.warnings);
    let pre = &script.pre_data;
    let function = pre
        .find("FUNCTION rk.zz_hash_noop(integer, bigint)")
        .unwrap();
    let member = pre
        .find("ALTER OPERATOR FAMILY rk.aa_int4_hash USING hash ADD")
        .unwrap();
    assert!(function < member, "{pre}");
    let subs = &script.subscriptions;
    assert!(
        subs.contains("CREATE SUBSCRIPTION rk_sub CONNECTION"),
        "{subs}"
    );
    assert!(subs.contains("connect = false"), "{subs}");
    assert!(subs.contains("slot_name = NONE"), "{subs}");
    assert!(!script.post_data.contains("SUBSCRIPTION"));

    // A user who is not a superuser reads everything but the connection strings: the
    // subscriptions are named, not silently dropped.
    let cluster = shared_cluster();
    let src = fresh_db(cluster, "regress_kinds_user");
    psql_apply(cluster, &src, &fixture("regress_kinds.sql"), true).unwrap();
    let conn = format!(
        "host={} port={} user=rk_reader dbname={src}",
        cluster.host(),
        cluster.port()
    );
    let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    pgferry::catalog::begin_snapshot_read(&client, None)
        .await
        .unwrap();
    let script = dump_schema(&client, &opts).await.unwrap();
    assert!(script.subscriptions.is_empty(), "{}", script.subscriptions);
    for name in ["rk_sub", "rk_sub_noslot"] {
        assert!(
            script.warnings.iter().any(|w| w.contains(&format!(
                "subscription {name} is not in the script: its connection string is readable only by a superuser"
            ))),
            "{:?}",
            script.warnings
        );
    }
    // --no-subscriptions: left out without a word.
    let omit = DumpOptions {
        subscriptions: SubscriptionMode::Omit,
        ..DumpOptions::default()
    };
    let script = dump_schema(&client, &omit).await.unwrap();
    assert!(script.subscriptions.is_empty());
    assert!(
        !script.warnings.iter().any(|w| w.contains("subscription")),
        "{:?}",
        script.warnings
    );
}

/// Index definitions pgferry writes itself (plain indexes, to spare the server a
/// `pg_get_indexdef` call each) are the server's text exactly; the shapes it must leave to
/// the server (another operator class or collation, DESC, INCLUDE, expressions, predicates,
/// storage options, a type that borrows another's operator class) come back from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_definitions_are_the_servers_text() {
    let cluster = shared_cluster();
    let db = fresh_db(cluster, "index_defs");
    let mut sql = fixture("tables.sql");
    sql.push_str(&fixture("edge_cases.sql"));
    sql.push_str(
        r#"
CREATE SCHEMA "Index Shapes";
CREATE TABLE "Index Shapes"."Mixed Case" (
    id bigint, "select" text, v varchar(20), c text COLLATE "C", n numeric, d date,
    arr int[], part int NOT NULL
);
CREATE INDEX plain_multi ON "Index Shapes"."Mixed Case" (id, "select", d);
CREATE UNIQUE INDEX "Unique One" ON "Index Shapes"."Mixed Case" (n);
CREATE INDEX on_varchar ON "Index Shapes"."Mixed Case" (v);
CREATE INDEX on_c ON "Index Shapes"."Mixed Case" (c);
CREATE INDEX other_collation ON "Index Shapes"."Mixed Case" ("select" COLLATE "C");
CREATE INDEX pattern ON "Index Shapes"."Mixed Case" ("select" text_pattern_ops);
CREATE INDEX descending ON "Index Shapes"."Mixed Case" (id DESC, d NULLS FIRST);
CREATE INDEX hashed ON "Index Shapes"."Mixed Case" USING hash (id);
CREATE INDEX gin_arr ON "Index Shapes"."Mixed Case" USING gin (arr);
CREATE INDEX covering ON "Index Shapes"."Mixed Case" (id) INCLUDE (n);
CREATE INDEX partial ON "Index Shapes"."Mixed Case" (id) WHERE n > 0;
CREATE INDEX expr ON "Index Shapes"."Mixed Case" (lower("select"));
CREATE INDEX filled ON "Index Shapes"."Mixed Case" (d) WITH (fillfactor = 70);
CREATE UNIQUE INDEX nnd ON "Index Shapes"."Mixed Case" (n, d) NULLS NOT DISTINCT;
CREATE TABLE "Index Shapes".parted (id int, k int) PARTITION BY RANGE (k);
CREATE TABLE "Index Shapes".parted_1 PARTITION OF "Index Shapes".parted FOR VALUES FROM (0) TO (10);
CREATE INDEX parted_k ON "Index Shapes".parted (k, id);
"#,
    );
    psql_apply(cluster, &db, &sql, true).unwrap();
    let compared = assert_index_defs_are_the_servers(cluster, &db).await;
    assert!(compared > 20, "{compared}");
}
