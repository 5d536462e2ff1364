//! `pgferry dump` + `pgferry restore` end to end, through the binary, between two real
//! clusters: the restored schema must be identical (pg_dump -s of both, as the oracle) and
//! `pgferry verify` clean; damaged archives must be refused, naming the damaged file.

mod support;

use support::fidelity::pg_dump_schema;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::{fresh_db, output_text as text, pgferry, psql, shared_cluster, target_cluster};

/// A fresh directory for archives, removed with the returned guard.
fn workdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("pgferry-archive-test-")
        .tempdir()
        .unwrap()
}

/// Creates every role of the source cluster on the target cluster (the schema refers to
/// roles by name; archives do not carry them).
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

/// Dumps source database `db` into `dir/name` with `extra` flags; panics unless it works.
fn dump(db: &str, archive: &Path, extra: &[&str]) {
    let src_uri = shared_cluster().uri(db);
    let archive = archive.to_str().unwrap();
    let mut args = vec!["dump", "-s", &src_uri, "-o", archive];
    args.extend_from_slice(extra);
    let out = pgferry(&args);
    assert!(out.status.success(), "dump of {db} failed: {}", text(&out));
}

fn restore(archive: &Path, db: &str, extra: &[&str]) -> Output {
    let dst_uri = target_cluster().uri(db);
    let mut args = vec!["restore", "-i", archive.to_str().unwrap(), "-t", &dst_uri];
    args.extend_from_slice(extra);
    pgferry(&args)
}

/// Schema identical (the source's publications included: the archive keeps them) and
/// `pgferry verify` clean.
fn assert_same(name: &str, db: &str) {
    let src = shared_cluster();
    let dst = target_cluster();
    let a = pg_dump_schema(src, db);
    let b = pg_dump_schema(dst, db);
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
    let out = pgferry(&["verify", "-s", &src.uri(db), "-t", &dst.uri(db)]);
    assert!(
        out.status.success(),
        "verify of {name} not clean: {}",
        text(&out)
    );
}

/// Loads `sql` into a fresh source database, dumps it, restores it into a new database of the
/// target cluster and checks the result. Returns the database name and the archive path.
fn round_trip(name: &str, sql: &str, dump_flags: &[&str], dir: &Path) -> (String, PathBuf) {
    let src = shared_cluster();
    let db = fresh_db(src, name);
    psql(src, &db, sql);
    sync_roles();
    let archive = dir.join(&db);
    dump(&db, &archive, dump_flags);
    let out = restore(&archive, &db, &["-j", "2"]);
    assert!(
        out.status.success(),
        "restore of {name} failed: {}",
        text(&out)
    );
    assert_same(name, &db);
    (db, archive)
}

#[test]
fn every_schema_fixture_round_trips() {
    let dir = workdir();
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
        round_trip(fixture.trim_end_matches(".sql"), &sql, &[], dir.path());
    }
}

#[test]
fn pagila_round_trips() {
    let Some(schema) = support::corpus_file("pagila/pagila-schema.sql") else {
        support::skip(
            "pagila_round_trips",
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
    let dir = workdir();
    let (db, archive) = round_trip("pagila", &sql, &["-j", "2"], dir.path());
    let rentals = psql(target_cluster(), &db, "SELECT count(*) FROM rental");
    assert_eq!(
        rentals,
        psql(shared_cluster(), &db, "SELECT count(*) FROM rental")
    );
    assert_ne!(rentals, "0");
    // --list names the archive's tables and their row counts.
    let out = pgferry(&["restore", "-i", archive.to_str().unwrap(), "--list"]);
    assert!(out.status.success(), "{}", text(&out));
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains(&format!("public.rental ({rentals} rows")),
        "{listing}"
    );
    assert!(listing.contains("pre-data  Table"), "{listing}");
}

#[test]
fn pgbench_scale_10_round_trips() {
    let src = shared_cluster();
    let db = fresh_db(src, "pgbench10");
    let out = Command::new(support::tool(&support::install(), "pgbench"))
        .args([
            "-i",
            "-s",
            "10",
            "-q",
            "-h",
            src.host(),
            "-p",
            &src.port().to_string(),
            "-U",
            "postgres",
            &db,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "pgbench -i: {}", text(&out));
    let dir = workdir();
    let archive = dir.path().join("pgbench");
    dump(&db, &archive, &["-j", "2"]);
    let out = restore(&archive, &db, &["-j", "2"]);
    assert!(out.status.success(), "restore failed: {}", text(&out));
    assert_same("pgbench", &db);
    assert_eq!(
        psql(
            target_cluster(),
            &db,
            "SELECT count(*) FROM pgbench_accounts"
        ),
        "1000000"
    );
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
CREATE TABLE child (id int PRIMARY KEY, big_id int REFERENCES big);
INSERT INTO child SELECT i, i FROM generate_series(1, 100) i;
CREATE MATERIALIZED VIEW big_summary AS SELECT count(*) AS n FROM big;
"#;

#[test]
fn data_kinds_split_tables_text_large_objects_and_sequences() {
    let dir = workdir();
    for compress in ["zstd", "none"] {
        // A 64 kB split threshold cuts `big` (about 4 MB) into many files.
        let (db, archive) = round_trip(
            &format!("kinds_{compress}"),
            DATA_KINDS,
            &[
                "--split-tables-larger-than",
                "64kB",
                "-j",
                "3",
                "--compress",
                compress,
            ],
            dir.path(),
        );
        let files = std::fs::read_dir(archive.join("data")).unwrap().count();
        assert!(files > 10, "big was not split: {files} data files");
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
        assert_eq!(psql(dst, &db, "SELECT n FROM big_summary"), "60000");
        assert_eq!(psql(dst, &db, "SELECT count(*) FROM scratch"), "1000");
        assert_eq!(
            psql(
                dst,
                &db,
                "SELECT length(lo_get(oid)) FROM pg_largeobject_metadata"
            ),
            "300000"
        );
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(archive.join("manifest.json")).unwrap()).unwrap();
        let acl = manifest["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == "acl_holder")
            .unwrap();
        assert_eq!(acl["format"], "text", "aclitem has no binary I/O");
        assert_eq!(acl["rows"], 10);
    }
}

/// A small archive for the damage tests: two tables and a large object.
fn small_archive(dir: &Path, name: &str, compress: &str) -> (String, PathBuf) {
    let src = shared_cluster();
    let db = fresh_db(src, name);
    psql(
        src,
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, v text); \
         INSERT INTO t SELECT i, repeat(md5(i::text), 3) FROM generate_series(1, 20000) i; \
         CREATE TABLE u (id int); INSERT INTO u SELECT generate_series(1, 10); \
         SELECT lo_from_bytea(0, decode(repeat('cd', 5000), 'hex'));",
    );
    let archive = dir.join(&db);
    dump(&db, &archive, &["--compress", compress]);
    (db, archive)
}

/// The data file of table `table`, from the manifest.
fn data_file(archive: &Path, table: &str) -> PathBuf {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(archive.join("manifest.json")).unwrap()).unwrap();
    let entry = manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == table)
        .unwrap_or_else(|| panic!("no {table} in the manifest"));
    archive.join(entry["file"]["path"].as_str().unwrap())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// Restores a damaged copy of `archive` and expects a failure naming `damaged`, with the
/// damaged table left empty (its load rolled back).
fn expect_refused(archive: &Path, damaged: &Path, db: &str, case: &str) {
    let target_db = format!("{db}_{case}");
    let out = restore(archive, &target_db, &["-j", "1"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{case}: {said}");
    assert!(
        said.contains(&damaged.display().to_string()),
        "{case}: the error does not name {}: {said}",
        damaged.display()
    );
    assert!(
        said.contains("the target database holds"),
        "{case}: the error does not state the target's state: {said}"
    );
    let rows = psql(target_cluster(), &target_db, "SELECT count(*) FROM t");
    assert_eq!(rows, "0", "{case}: rows of the damaged file were committed");
}

#[test]
fn damaged_data_files_stop_the_restore_naming_the_file() {
    let dir = workdir();
    for compress in ["zstd", "none"] {
        let (db, archive) = small_archive(dir.path(), &format!("damage_{compress}"), compress);
        let original = data_file(&archive, "t");
        let bytes = std::fs::read(&original).unwrap();

        // Flipped bytes in the middle of the file.
        let flipped = dir.path().join(format!("flipped_{compress}"));
        copy_dir(&archive, &flipped);
        let file = data_file(&flipped, "t");
        let mut damaged = bytes.clone();
        let mid = damaged.len() / 2;
        for b in &mut damaged[mid..mid + 4] {
            *b ^= 0xa5;
        }
        std::fs::write(&file, &damaged).unwrap();
        expect_refused(&flipped, &file, &db, "flipped");

        // Truncated, manifest untouched: refused before anything is loaded.
        let truncated = dir.path().join(format!("truncated_{compress}"));
        copy_dir(&archive, &truncated);
        let file = data_file(&truncated, "t");
        std::fs::write(&file, &bytes[..bytes.len() * 2 / 3]).unwrap();
        let out = restore(&truncated, &format!("{db}_truncated"), &[]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            text(&out).contains(&file.display().to_string()),
            "{}",
            text(&out)
        );

        // Truncated with the manifest's size edited to match: caught while loading, by the
        // checksum (or the zstd frame / COPY structure).
        let sneaky = dir.path().join(format!("sneaky_{compress}"));
        copy_dir(&archive, &sneaky);
        let file = data_file(&sneaky, "t");
        let cut = bytes.len() * 2 / 3;
        std::fs::write(&file, &bytes[..cut]).unwrap();
        let manifest = std::fs::read_to_string(sneaky.join("manifest.json")).unwrap();
        let mut value: serde_json::Value = serde_json::from_str(&manifest).unwrap();
        for t in value["tables"].as_array_mut().unwrap() {
            if t["table"] == "t" {
                t["file"]["bytes"] = cut.into();
            }
        }
        std::fs::write(sneaky.join("manifest.json"), value.to_string()).unwrap();
        expect_refused(&sneaky, &file, &db, "sneaky");

        // The intact archive still restores.
        let out = restore(&archive, &db, &[]);
        assert!(out.status.success(), "{}", text(&out));
        assert_same("damage", &db);
    }
}

#[test]
fn unknown_manifest_version_is_a_clear_error() {
    let dir = workdir();
    let (db, archive) = small_archive(dir.path(), "version", "zstd");
    let path = archive.join("manifest.json");
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    value["format_version"] = 2.into();
    std::fs::write(&path, value.to_string()).unwrap();
    let out = restore(&archive, &db, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("archive format version 2 is not supported"),
        "{}",
        text(&out)
    );
    let exists = psql(
        target_cluster(),
        "postgres",
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{db}'"),
    );
    assert_eq!(
        exists, "0",
        "nothing may be created for an unreadable archive"
    );
}

/// An archive written before post-data was stored as units (no `post-data-units.json`, no
/// `schema.post_data_units` in the manifest) still restores completely: its `post-data.sql`
/// runs in script order.
#[test]
fn an_archive_without_post_data_units_restores_its_post_data_in_order() {
    let dir = workdir();
    let src = shared_cluster();
    let db = fresh_db(src, "older_archive");
    let path = format!("{}/tests/fixtures/tables.sql", env!("CARGO_MANIFEST_DIR"));
    psql(src, &db, &std::fs::read_to_string(&path).unwrap());
    sync_roles();
    let archive = dir.path().join(&db);
    dump(&db, &archive, &[]);
    let manifest_path = archive.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let units = manifest["schema"]["post_data_units"]["path"]
        .as_str()
        .expect("a new archive lists its post-data units")
        .to_owned();
    std::fs::remove_file(archive.join(&units)).unwrap();
    manifest["schema"]
        .as_object_mut()
        .unwrap()
        .remove("post_data_units");
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let out = restore(&archive, &db, &["-j", "2"]);
    assert!(
        out.status.success(),
        "restore of an archive without units failed: {}",
        text(&out)
    );
    assert_same("older archive", &db);
}

#[test]
fn existing_targets_sections_and_refusals() {
    let dir = workdir();
    let (db, archive) = small_archive(dir.path(), "sections", "zstd");
    let a = archive.to_str().unwrap();
    // A dump never overwrites, and says so without claiming the archive does not exist.
    let out = pgferry(&["dump", "-s", &shared_cluster().uri(&db), "-o", a]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("already exists"), "{}", text(&out));
    assert!(!text(&out).contains("does not exist"), "{}", text(&out));

    // Pre-data, then data, then post-data, as three runs.
    for section in ["pre-data", "data", "post-data"] {
        let out = restore(&archive, &db, &["--section", section]);
        assert!(out.status.success(), "{section}: {}", text(&out));
    }
    assert_same("sections", &db);

    // The target is not empty now: refused (exit 3, as clone), then replaced with --clean.
    let out = restore(&archive, &db, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("--clean"), "{}", text(&out));
    psql(target_cluster(), &db, "INSERT INTO u VALUES (-1)");
    let out = restore(&archive, &db, &["--clean"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_same("sections --clean", &db);

    // A schema-only archive restores the schema; its data section is refused when asked for.
    let schema_only = dir.path().join("schema_only");
    dump(&db, &schema_only, &["--schema-only"]);
    let out = restore(&schema_only, &format!("{db}_s"), &["--section", "data"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("no data"), "{}", text(&out));
    let out = restore(&schema_only, &format!("{db}_s"), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        psql(
            target_cluster(),
            &format!("{db}_s"),
            "SELECT count(*) FROM t"
        ),
        "0"
    );
}
