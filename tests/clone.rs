//! `pgferry clone` end to end, through the binary, between two real clusters: the schema must
//! come out identical (pg_dump -s of both, as the oracle) and `pgferry verify` must be clean.

mod support;

use std::process::Command;
use support::fidelity::pg_dump_schema;
use support::{fresh_db, output_text as text, pgferry, psql, shared_cluster, target_cluster};

/// Creates every role of the source cluster on the target cluster (roles are global objects,
/// created by `migrate`, not by `clone`; the schema refers to them by name).
fn sync_roles() {
    let roles = psql(
        shared_cluster(),
        "postgres",
        "SELECT string_agg(quote_ident(rolname), ',') FROM pg_roles WHERE rolname !~ '^pg_' AND rolname <> 'postgres'",
    );
    for role in roles.split(',').filter(|r| !r.is_empty()) {
        psql(
            target_cluster(),
            "postgres",
            &format!(
                "DO $$BEGIN CREATE ROLE {role}; EXCEPTION WHEN duplicate_object THEN NULL; END$$"
            ),
        );
    }
}

/// Loads `sql` into a fresh source database, clones it with `extra` flags into a new target
/// database, and checks schema identity and a clean verify. Returns (database, target URI).
fn clone_and_check(name: &str, sql: &str, extra: &[&str]) -> (String, String) {
    let src = shared_cluster();
    let dst = target_cluster();
    let db = fresh_db(src, name);
    psql(src, &db, sql);
    sync_roles();
    let src_uri = src.uri(&db);
    let dst_uri = dst.uri(&db);
    let mut args = vec!["clone", "-s", &src_uri, "-t", &dst_uri];
    args.extend_from_slice(extra);
    let out = pgferry(&args);
    assert!(
        out.status.success(),
        "clone of {name} failed: {}",
        text(&out)
    );
    // Everything identical, the source's own publications included (pgferry's own are
    // never copied: clone_follow tests check that).
    let a = pg_dump_schema(src, &db);
    let b = pg_dump_schema(dst, &db);
    if a != b {
        let diff: Vec<String> = a
            .iter()
            .zip(b.iter())
            .filter(|(x, y)| x != y)
            .take(5)
            .map(|(x, y)| format!("- {x}\n+ {y}"))
            .collect();
        panic!(
            "{name}: schemas differ ({} vs {} lines):\n{}",
            a.len(),
            b.len(),
            diff.join("\n")
        );
    }
    let out = pgferry(&["verify", "-s", &src_uri, "-t", &dst_uri]);
    assert!(
        out.status.success(),
        "verify of {name} not clean: {}",
        text(&out)
    );
    (db, dst_uri)
}

#[test]
fn pagila_clones_identically() {
    let Some(schema) = support::corpus_file("pagila/pagila-schema.sql") else {
        support::skip(
            "pagila_clones_identically",
            "pagila corpus not found (set PGFERRY_CORPUS)",
        );
        return;
    };
    let data =
        support::corpus_file("pagila/pagila-data.sql").expect("pagila data next to its schema");
    let sql = format!(
        "{}\n{}",
        std::fs::read_to_string(schema).unwrap(),
        std::fs::read_to_string(data).unwrap()
    );
    let (db, _) = clone_and_check("pagila", &sql, &[]);
    // pagila's materialized view is unpopulated on the source and stays so.
    let populated = psql(
        target_cluster(),
        &db,
        "SELECT relispopulated FROM pg_class WHERE relname = 'rental_by_category'",
    );
    assert_eq!(populated, "f");
}

#[test]
fn every_schema_fixture_clones_identically() {
    for fixture in [
        "tables.sql",
        "routines.sql",
        "privileges.sql",
        "edge_cases.sql",
        "cycles.sql",
        "extras.sql",
        "internals.sql",
        "recreated_public.sql",
    ] {
        let path = format!("{}/tests/fixtures/{fixture}", env!("CARGO_MANIFEST_DIR"));
        let sql = std::fs::read_to_string(&path).unwrap();
        clone_and_check(fixture.trim_end_matches(".sql"), &sql, &[]);
    }
}

const DATA_KINDS: &str = r#"
CREATE TABLE kinds (
    id int PRIMARY KEY,
    t text, b bytea, n numeric(20,5), ts timestamptz, arr int[], j jsonb,
    g int GENERATED ALWAYS AS (id * 2) STORED
);
INSERT INTO kinds (id, t, b, n, ts, arr, j)
SELECT i, 'row ' || i || E'\nwith newline\\ and tab\t ü', decode(md5(i::text), 'hex'), i / 7.0,
       '2020-01-01'::timestamptz + i * interval '1 hour', ARRAY[i, i + 1], jsonb_build_object('i', i)
FROM generate_series(1, 5000) i;
INSERT INTO kinds (id) VALUES (0);
CREATE UNLOGGED TABLE scratch (id int, v text);
INSERT INTO scratch SELECT i, repeat('x', i % 50) FROM generate_series(1, 1000) i;
CREATE TABLE acl_holder (id serial PRIMARY KEY, perms aclitem[]);
INSERT INTO acl_holder (perms) SELECT ARRAY['postgres=r/postgres'::aclitem] FROM generate_series(1, 10);
CREATE TABLE parted (id int, k int) PARTITION BY LIST (k);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES IN (1);
CREATE TABLE parted_2 PARTITION OF parted FOR VALUES IN (2);
INSERT INTO parted SELECT i, 1 + i % 2 FROM generate_series(1, 1000) i;
CREATE SEQUENCE odd_seq INCREMENT BY -3 MINVALUE -1000000 MAXVALUE 100 START 7;
SELECT nextval('odd_seq'), nextval('odd_seq');
CREATE SEQUENCE never_called_seq;
SELECT lo_from_bytea(0, decode(repeat('ab', 300000), 'hex'));
CREATE TABLE big AS SELECT i AS id, md5(i::text) AS v FROM generate_series(1, 60000) i;
ALTER TABLE big ADD PRIMARY KEY (id);
CREATE MATERIALIZED VIEW big_summary AS SELECT count(*) AS n FROM big;
"#;

#[test]
fn data_kinds_split_tables_text_fallback_large_objects_and_sequences() {
    // A 64 kB split threshold cuts `big` (about 4 MB) into many ctid ranges.
    let (db, dst_uri) = clone_and_check(
        "kinds",
        DATA_KINDS,
        &["--split-tables-larger-than", "64kB", "-j", "3", "--json"],
    );
    let dst = target_cluster();
    assert_eq!(
        psql(dst, &db, "SELECT count(*), sum(g) FROM kinds"),
        "5001|25005000"
    );
    assert_eq!(psql(dst, &db, "SELECT count(*) FROM big"), "60000");
    assert_eq!(
        psql(dst, &db, "SELECT last_value, is_called FROM odd_seq"),
        "4|t"
    );
    assert_eq!(
        psql(dst, &db, "SELECT is_called FROM never_called_seq"),
        "f"
    );
    assert_eq!(
        psql(dst, &db, "SELECT n FROM big_summary"),
        "60000",
        "populated matview refreshed"
    );
    assert_eq!(
        psql(
            dst,
            &db,
            "SELECT relpersistence FROM pg_class WHERE relname = 'scratch'"
        ),
        "u"
    );
    assert_eq!(psql(dst, &db, "SELECT count(*) FROM scratch"), "1000");
    assert_eq!(
        psql(dst, &db, "SELECT count(*) FROM pg_largeobject_metadata"),
        "1"
    );
    let _ = dst_uri;
}

#[test]
fn the_json_progress_stream_and_text_fallback() {
    let src = shared_cluster();
    let db = fresh_db(src, "jsonprog");
    psql(src, &db, "CREATE TABLE acl_only (id int PRIMARY KEY, perms aclitem[]); INSERT INTO acl_only SELECT i, ARRAY['postgres=r/postgres'::aclitem] FROM generate_series(1, 100) i;");
    let out = pgferry(&[
        "clone",
        "-s",
        &src.uri(&db),
        "-t",
        &target_cluster().uri(&db),
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let finished = events
        .iter()
        .find(|e| e["type"] == "job_finished" && e["data"]["table"] == "public.acl_only")
        .unwrap_or_else(|| panic!("no job_finished for acl_only in {stdout}"));
    assert_eq!(finished["data"]["rows"], 100);
    let started = events
        .iter()
        .find(|e| e["type"] == "job_started" && e["data"]["table"] == "public.acl_only")
        .unwrap();
    assert_eq!(
        started["data"]["format"], "text",
        "aclitem has no binary I/O: text fallback expected"
    );
    let summary = events
        .iter()
        .find(|e| e["type"] == "summary")
        .expect("a summary event");
    assert_eq!(summary["data"]["tables"][0]["rows"], 100);
}

#[test]
fn a_non_empty_target_is_refused_unless_asked() {
    let src = shared_cluster();
    let db = fresh_db(src, "nonempty");
    psql(
        src,
        &db,
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10);",
    );
    let dst = target_cluster();
    psql(dst, "postgres", &format!("CREATE DATABASE {db}"));
    psql(
        dst,
        &db,
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (42);",
    );
    let (s, t) = (src.uri(&db), dst.uri(&db));

    // Refused before anything changed: exit 3, as restore and migrate do.
    let out = pgferry(&["clone", "-s", &s, "-t", &t]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("not empty") && text(&out).contains("--drop-if-exists"),
        "{}",
        text(&out)
    );
    assert_eq!(
        psql(dst, &db, "SELECT count(*) FROM t"),
        "1",
        "refusal must not touch the target"
    );

    let out = pgferry(&["clone", "-s", &s, "-t", &t, "--truncate"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(psql(dst, &db, "SELECT count(*), max(id) FROM t"), "10|10");

    let out = pgferry(&["clone", "-s", &s, "-t", &t, "--drop-if-exists"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(psql(dst, &db, "SELECT count(*) FROM t"), "10");
}

#[test]
fn schema_command_output_applies_with_psql() {
    let src = shared_cluster();
    let db = fresh_db(src, "schemacmd");
    psql(src, &db, "CREATE SCHEMA app; CREATE TABLE app.\"Order\" (id int PRIMARY KEY, note text); CREATE INDEX ON app.\"Order\" (note);");
    let out = pgferry(&["schema", "-s", &src.uri(&db)]);
    assert!(out.status.success(), "{}", text(&out));
    let script = String::from_utf8_lossy(&out.stdout).into_owned();
    let target = fresh_db(src, "schemacmd_dst");
    psql(src, &target, &script);
    assert_eq!(pg_dump_schema(src, &db), pg_dump_schema(src, &target));
    let out = pgferry(&["schema", "-s", &src.uri(&db), "--section", "pre-data"]);
    let pre = String::from_utf8_lossy(&out.stdout);
    assert!(
        pre.contains("CREATE TABLE app.\"Order\"") && !pre.contains("CREATE INDEX"),
        "{pre}"
    );
}

/// The source's publications are part of the schema (as in pg_dump -s), pgferry's own never
/// is; `--no-publications` leaves them out; a target user who may not create one (FOR ALL
/// TABLES needs a superuser) gets a warning naming it, and the rest of the clone goes on.
#[test]
fn publications_are_reproduced_but_never_pgferrys_own() {
    let src = shared_cluster();
    let db = fresh_db(src, "pubs");
    psql(
        src,
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         CREATE PUBLICATION app_pub FOR TABLE t WITH (publish = 'insert');
         CREATE PUBLICATION app_all FOR ALL TABLES;",
    );
    // pgferry's own publication for this database, as a running migration leaves it.
    psql(
        src,
        &db,
        &format!("CREATE PUBLICATION pgferry_{db}_pub FOR TABLE t"),
    );
    let out = pgferry(&["schema", "-s", &src.uri(&db)]);
    assert!(out.status.success(), "{}", text(&out));
    let script = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        script.contains("CREATE PUBLICATION app_pub WITH (publish = 'insert')")
            && script.contains("ALTER PUBLICATION app_pub ADD TABLE ONLY public.t;")
            && script.contains("CREATE PUBLICATION app_all FOR ALL TABLES"),
        "{script}"
    );
    assert!(!script.contains("pgferry_"), "{script}");
    let out = pgferry(&["schema", "-s", &src.uri(&db), "--no-publications"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("PUBLICATION"));

    // Into a database owned by a user who is not a superuser: FOR ALL TABLES is refused by
    // the server and reported by name; app_pub is created.
    let dst = target_cluster();
    psql(
        dst,
        "postgres",
        "DO $$BEGIN CREATE ROLE pub_owner LOGIN CREATEDB; EXCEPTION WHEN duplicate_object THEN NULL; END$$",
    );
    let target_db = format!("{db}_as_user");
    let dst_uri = dst.uri(&target_db).replacen("postgres@", "pub_owner@", 1);
    let out = pgferry(&["clone", "-s", &src.uri(&db), "-t", &dst_uri, "--no-owner"]);
    assert!(out.status.success(), "{}", text(&out));
    let log = text(&out);
    assert!(
        log.contains("publication not reproduced: CREATE PUBLICATION app_all FOR ALL TABLES"),
        "{log}"
    );
    assert_eq!(
        psql(
            dst,
            &target_db,
            "SELECT string_agg(pubname, ',' ORDER BY pubname) FROM pg_publication"
        ),
        "app_pub"
    );
    let out = pgferry(&[
        "clone",
        "-s",
        &src.uri(&db),
        "-t",
        &dst.uri(&format!("{db}_nopub")),
        "--no-publications",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        psql(
            dst,
            &format!("{db}_nopub"),
            "SELECT count(*) FROM pg_publication"
        ),
        "0"
    );
}

/// Subscriptions: `schema` prints them as pg_dump does (disabled, `connect = false`) and
/// `--no-subscriptions` leaves them out; `clone` never creates one (the target would pull
/// the same changes as the source) and names each in a warning.
#[test]
fn subscriptions_are_scripted_by_schema_and_named_by_clone() {
    let src = shared_cluster();
    let db = fresh_db(src, "subs");
    psql(
        src,
        &db,
        "CREATE TABLE t (id int PRIMARY KEY);
         CREATE SUBSCRIPTION app_sub CONNECTION 'host=192.0.2.1 dbname=app'
             PUBLICATION app_pub WITH (connect = false, binary = true);",
    );
    let out = pgferry(&["schema", "-s", &src.uri(&db)]);
    assert!(out.status.success(), "{}", text(&out));
    let script = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        script.contains(
            "CREATE SUBSCRIPTION app_sub CONNECTION 'host=192.0.2.1 dbname=app' PUBLICATION app_pub WITH (connect = false, slot_name = 'app_sub', binary = true, streaming = off);"
        ),
        "{script}"
    );
    let out = pgferry(&["schema", "-s", &src.uri(&db), "--no-subscriptions"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("SUBSCRIPTION"));
    assert!(!text(&out).contains("app_sub"), "{}", text(&out));

    let dst = target_cluster();
    let target_db = format!("{db}_copy");
    let out = pgferry(&["clone", "-s", &src.uri(&db), "-t", &dst.uri(&target_db)]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("subscription app_sub is not reproduced"),
        "{}",
        text(&out)
    );
    assert_eq!(
        psql(
            dst,
            &target_db,
            "SELECT count(*) FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid \
             WHERE d.datname = current_database()"
        ),
        "0"
    );
}

#[test]
fn demo_runs_end_to_end() {
    let out = pgferry(&["demo", "--rows", "20000"]);
    assert!(out.status.success(), "demo failed: {}", text(&out));
    assert!(
        text(&out).contains("the target equals the source"),
        "{}",
        text(&out)
    );
}

#[test]
fn bench_measures_and_cleans_up() {
    let src = shared_cluster();
    let db = fresh_db(src, "benchsrc");
    let out = pgferry(&[
        "bench",
        "-s",
        &src.uri(&db),
        "-t",
        &target_cluster().uri("postgres"),
        "--size",
        "4MB",
        "-j",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let report = text(&out);
    for line in [
        "COPY TO, binary (source)",
        "COPY FROM, binary (target)",
        "pipe, binary, 1 job",
        "pipe, binary, 2 jobs",
        "recommended: -j ",
    ] {
        assert!(report.contains(line), "missing {line:?} in {report}");
    }
    let leftover = "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgferry_bench'";
    assert_eq!(psql(src, &db, leftover), "0");
    assert_eq!(psql(target_cluster(), "postgres", leftover), "0");
}

#[test]
fn cleanup_removes_our_slot_and_publication_and_is_idempotent() {
    let src = shared_cluster();
    let db = fresh_db(src, "cleanupcmd");
    psql(src, &db, "CREATE TABLE t (id int PRIMARY KEY)");
    let names = pgferry::replication::publication::object_names(&db);
    psql(
        src,
        &db,
        &format!(
            "CREATE PUBLICATION {} FOR ALL TABLES; SELECT pg_create_logical_replication_slot('{}', 'pgoutput')",
            names.publication, names.slot
        ),
    );
    for _ in 0..2 {
        let out = pgferry(&[
            "cleanup",
            "-s",
            &src.uri(&db),
            "-t",
            &target_cluster().uri(&db),
        ]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let left = format!(
        "SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}') + \
                (SELECT count(*) FROM pg_publication WHERE pubname = '{}')",
        names.slot, names.publication
    );
    assert_eq!(psql(src, &db, &left), "0");
}

#[test]
fn postgis_spatial_ref_sys_gets_only_the_user_rows() {
    let src = shared_cluster();
    let available = "SELECT count(*) FROM pg_available_extensions WHERE name = 'postgis'";
    if psql(src, "postgres", available) != "1"
        || psql(target_cluster(), "postgres", available) != "1"
    {
        support::skip(
            "postgis_spatial_ref_sys_gets_only_the_user_rows",
            "postgis is not installed (apt-get install -y postgresql-15-postgis-3; .ci/run does it)",
        );
        return;
    }
    let sql = r#"
        CREATE EXTENSION postgis;
        INSERT INTO spatial_ref_sys (srid, auth_name, auth_srid, srtext, proj4text)
            VALUES (900914, 'pgferry', 900914, 'LOCAL_CS["pgferry test"]', '');
        CREATE TABLE places (id int PRIMARY KEY, geom geometry(Point, 4326));
        INSERT INTO places VALUES (1, ST_SetSRID(ST_MakePoint(24.94, 60.17), 4326));
    "#;
    // The extension's own rows exist on the target as soon as CREATE EXTENSION runs there:
    // copying them again would fail on the primary key.
    let (db, _) = clone_and_check("postgis", sql, &[]);
    let dst = target_cluster();
    assert_eq!(
        psql(
            dst,
            &db,
            "SELECT count(*) FROM spatial_ref_sys WHERE srid = 900914"
        ),
        "1"
    );
    assert_eq!(
        psql(dst, &db, "SELECT count(*) FROM spatial_ref_sys"),
        psql(src, &db, "SELECT count(*) FROM spatial_ref_sys")
    );
    assert_eq!(
        psql(dst, &db, "SELECT ST_AsText(geom) FROM places"),
        "POINT(24.94 60.17)"
    );
}

#[test]
fn a_latin1_database_keeps_its_encoding_and_bytes() {
    let src = shared_cluster();
    let db = format!("latin1_{}", std::process::id());
    psql(
        src,
        "postgres",
        &format!(
            "CREATE DATABASE {db} TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'"
        ),
    );
    // Every byte LATIN1 has above ASCII, in text and in a table name.
    psql(
        src,
        &db,
        "CREATE TABLE \"café\" (id int PRIMARY KEY, t text); \
         INSERT INTO \"café\" SELECT i, repeat(chr(i), 3) || ' ñ ü ÿ' FROM generate_series(160, 255) i;",
    );
    let dst = target_cluster();
    let out = pgferry(&["clone", "-s", &src.uri(&db), "-t", &dst.uri(&db)]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        psql(
            dst,
            "postgres",
            &format!(
                "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = '{db}'"
            )
        ),
        "LATIN1"
    );
    let digest =
        "SELECT md5(string_agg(convert_to(t, 'LATIN1')::text, ',' ORDER BY id)) FROM \"café\"";
    assert_eq!(psql(dst, &db, digest), psql(src, &db, digest));
    let out = pgferry(&["verify", "-s", &src.uri(&db), "-t", &dst.uri(&db)]);
    assert!(out.status.success(), "{}", text(&out));
}

/// A directory for a tablespace, owned by the server's OS user (tablespaces are cluster-wide).
fn tablespace_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let id = |args: &[&str]| -> String {
        let out = Command::new("id").args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    if id(&["-u"]) == "0" {
        let uid = id(&["-u", "postgres"]).parse().unwrap();
        let gid = id(&["-g", "postgres"]).parse().unwrap();
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
    }
    dir
}

#[test]
fn a_tablespace_missing_on_the_target_is_a_warning_not_a_failure() {
    let src = shared_cluster();
    let dir = tablespace_dir();
    psql(
        src,
        "postgres",
        &format!(
            "CREATE TABLESPACE clone_space LOCATION '{}'",
            dir.path().display()
        ),
    );
    let db = fresh_db(src, "tblspc");
    psql(
        src,
        &db,
        "CREATE TABLE t (id int PRIMARY KEY USING INDEX TABLESPACE clone_space, v text) TABLESPACE clone_space; \
         INSERT INTO t SELECT i, 'v' || i FROM generate_series(1, 100) i;",
    );
    let out = pgferry(&[
        "clone",
        "-s",
        &src.uri(&db),
        "-t",
        &target_cluster().uri(&db),
    ]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("tablespace clone_space does not exist on the target"),
        "{all}"
    );
    assert_eq!(psql(target_cluster(), &db, "SELECT count(*) FROM t"), "100");
    let out = pgferry(&[
        "verify",
        "-s",
        &src.uri(&db),
        "-t",
        &target_cluster().uri(&db),
    ]);
    assert!(out.status.success(), "{}", text(&out));

    // Once the target has the tablespace, table and index placements are kept (the
    // tablespace setting travels with its statement to the parallel post-data sessions).
    let dst_dir = tablespace_dir();
    psql(
        target_cluster(),
        "postgres",
        &format!(
            "CREATE TABLESPACE clone_space LOCATION '{}'",
            dst_dir.path().display()
        ),
    );
    let out = pgferry(&[
        "clone",
        "-s",
        &src.uri(&db),
        "-t",
        &target_cluster().uri(&db),
        "--drop-if-exists",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !text(&out).contains("does not exist on the target"),
        "{}",
        text(&out)
    );
    assert_eq!(
        pg_dump_schema(src, &db),
        pg_dump_schema(target_cluster(), &db)
    );
    let placed = "SELECT string_agg(c.relname || ':' || coalesce(t.spcname, '-'), ',' ORDER BY c.relname) \
                  FROM pg_class c LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace WHERE c.relname IN ('t', 't_pkey')";
    assert_eq!(
        psql(target_cluster(), &db, placed),
        "t:clone_space,t_pkey:clone_space"
    );
    psql(target_cluster(), "postgres", &format!("DROP DATABASE {db}"));
    psql(target_cluster(), "postgres", "DROP TABLESPACE clone_space");
    psql(src, "postgres", &format!("DROP DATABASE {db}"));
    psql(src, "postgres", "DROP TABLESPACE clone_space");
}

const UNIQUE_CONSTRAINTS: &str = r#"
CREATE TABLE pk_incl (id int, v text, w int,
    CONSTRAINT pk_incl_pkey PRIMARY KEY (id) INCLUDE (w) WITH (fillfactor = 70));
CREATE TABLE uq_def (a int, b int,
    CONSTRAINT uq_def_ab UNIQUE (a, b) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT uq_def_b UNIQUE (b) DEFERRABLE);
CREATE TABLE uq_nnd (a int, CONSTRAINT uq_nnd_a UNIQUE NULLS NOT DISTINCT (a));
COMMENT ON CONSTRAINT uq_nnd_a ON uq_nnd IS 'nulls are equal';
COMMENT ON INDEX uq_nnd_a IS 'the index of it';
CREATE TABLE clustered (id int PRIMARY KEY, k int NOT NULL UNIQUE, v text);
ALTER TABLE clustered CLUSTER ON clustered_pkey;
ALTER TABLE clustered REPLICA IDENTITY USING INDEX clustered_k_key;
CREATE INDEX clustered_v ON clustered (v);
CREATE TABLE "Odd ""name""" ("Id" int, CONSTRAINT "Odd pk" PRIMARY KEY ("Id"));
CREATE TABLE colls (t text COLLATE "C" PRIMARY KEY);
CREATE TABLE ex (r int4range, EXCLUDE USING gist (r WITH &&));
CREATE TABLE parted (id int, k int, PRIMARY KEY (id, k), UNIQUE (k, id)) PARTITION BY LIST (k);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES IN (1);
CREATE TABLE parted_2 PARTITION OF parted FOR VALUES IN (2);
CREATE TABLE referenced (id int PRIMARY KEY, code int UNIQUE);
CREATE TABLE referencing (id int PRIMARY KEY, code int REFERENCES referenced (code));
INSERT INTO pk_incl SELECT i, 'v' || i, i FROM generate_series(1, 3000) i;
INSERT INTO uq_def SELECT i, i FROM generate_series(1, 3000) i;
INSERT INTO uq_nnd SELECT i FROM generate_series(1, 3000) i;
INSERT INTO uq_nnd VALUES (NULL);
INSERT INTO clustered SELECT i, -i, md5(i::text) FROM generate_series(1, 3000) i;
INSERT INTO "Odd ""name""" SELECT generate_series(1, 100);
INSERT INTO colls SELECT md5(i::text) FROM generate_series(1, 1000) i;
INSERT INTO ex SELECT int4range(i * 10, i * 10 + 5) FROM generate_series(1, 1000) i;
INSERT INTO parted SELECT i, 1 + i % 2 FROM generate_series(1, 2000) i;
INSERT INTO referenced SELECT i, i * 7 FROM generate_series(1, 1000) i;
INSERT INTO referencing SELECT i, (1 + i % 1000) * 7 FROM generate_series(1, 5000) i;
"#;

/// What a PRIMARY KEY/UNIQUE/EXCLUDE constraint is in the catalog, beyond what pg_dump -s
/// shows: the index flags `USING INDEX` must set (primary, deferred, nulls not distinct), its
/// internal dependency on the constraint and the deferred-check triggers.
const CONSTRAINT_CATALOG: &str = "SELECT string_agg(format('%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s', \
    c.conrelid::regclass, c.conname, c.contype, c.condeferrable, c.condeferred, c.conislocal, \
    c.coninhcount, i.relname, x.indisprimary, x.indimmediate, x.indnullsnotdistinct, \
    x.indisclustered, x.indisreplident, i.reloptions, pg_get_indexdef(i.oid), \
    (SELECT count(*) FROM pg_depend d WHERE d.objid = i.oid AND d.refobjid = c.oid AND d.deptype = 'i') \
    || '/' || (SELECT count(*) FROM pg_trigger t WHERE t.tgconstraint = c.oid)), E'\\n' ORDER BY c.conrelid::regclass::text, c.conname) \
    FROM pg_constraint c JOIN pg_class i ON i.oid = c.conindid JOIN pg_index x ON x.indexrelid = i.oid \
    WHERE c.contype IN ('p', 'u', 'x') AND c.connamespace = 'public'::regnamespace";

#[test]
fn primary_keys_and_unique_constraints_are_built_then_attached_using_index() {
    let (db, dst_uri) = clone_and_check("uniques", UNIQUE_CONSTRAINTS, &["--drop-if-exists"]);
    let src_catalog = psql(shared_cluster(), &db, CONSTRAINT_CATALOG);
    assert!(src_catalog.lines().count() >= 15, "{src_catalog}");
    assert_eq!(src_catalog, psql(target_cluster(), &db, CONSTRAINT_CATALOG));
    // Deferred uniqueness still works on the target.
    let dst = target_cluster();
    assert_eq!(
        psql(
            dst,
            &db,
            "BEGIN; UPDATE uq_def SET b = b + 1; COMMIT; SELECT count(*) FROM uq_def"
        ),
        "3000"
    );

    // The clone took the USING INDEX path for ordinary tables and the plain one where the
    // server does not allow it (exclusion constraints, partitioned tables).
    let out = pgferry(&[
        "--debug",
        "clone",
        "--drop-if-exists",
        "-s",
        &shared_cluster().uri(&db),
        "-t",
        &dst_uri,
    ]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    for expected in [
        "ADD CONSTRAINT pk_incl_pkey PRIMARY KEY USING INDEX pk_incl_pkey",
        "ADD CONSTRAINT uq_def_ab UNIQUE USING INDEX uq_def_ab DEFERRABLE INITIALLY DEFERRED",
        "ADD CONSTRAINT uq_def_b UNIQUE USING INDEX uq_def_b DEFERRABLE",
        "ADD CONSTRAINT parted_1_pkey PRIMARY KEY USING INDEX parted_1_pkey",
        "ADD CONSTRAINT parted_pkey PRIMARY KEY (id, k)",
        "ADD CONSTRAINT ex_r_excl EXCLUDE USING gist (r WITH &&)",
    ] {
        assert!(log.contains(expected), "no `{expected}` in:\n{log}");
    }
    assert_eq!(src_catalog, psql(target_cluster(), &db, CONSTRAINT_CATALOG));
}
