//! `pgferry migrate` end to end through the binary, between two real clusters per test: roles,
//! several databases (one named "Shop-2", one filtered with -f), both methods, status in the
//! seed's JSON shape, stop, a second identical run, cleanup, and a killed run that resumes.
//! Oracles: pg_dump -s / pg_dumpall --roles-only of both sides, and `pgferry verify`.

mod support;

use pgferry::localpg::{Cluster, ClusterOptions};
use serde_json::Value;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{output_text as text, pgferry, pgferry_command, psql};

fn start_cluster() -> Cluster {
    Cluster::start(&support::install(), ClusterOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn spawn_pgferry(args: &[&str]) -> Child {
    pgferry_command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pgferry")
}

fn status_json(dst: &Cluster) -> Option<Value> {
    let out = pgferry(&["status", "-t", &dst.uri("postgres"), "--json"]);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn detail<'a>(status: &'a Value, db: &str) -> Option<&'a Value> {
    status["migration_detail"]
        .as_array()?
        .iter()
        .find(|d| d["dbname"] == db)
}

/// Polls status until `pred` holds; on the way checks the promise of the status report: a
/// database is never syncing/done before its initial copy finished.
fn wait_status(
    dst: &Cluster,
    child: &mut Child,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        if let Some(s) = status_json(dst) {
            for d in s["migration_detail"].as_array().into_iter().flatten() {
                if d["status"] == "syncing" || (d["status"] == "done" && d["phase"] != "done") {
                    assert_eq!(
                        d["tables_done"], d["tables_total"],
                        "syncing before the copy finished: {s}"
                    );
                }
            }
            if pred(&s) {
                return s;
            }
        }
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            let _ = child.kill();
            let mut log = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut log);
            }
            panic!(
                "gave up waiting for {what}: status {:?}\nmigrate said:\n{log}",
                status_json(dst)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn dump_schema(cluster: &Cluster, db: &str) -> Vec<String> {
    support::fidelity::pg_dump_schema_with(cluster, db, &["-N", "pgferry"])
        .into_iter()
        // Publications are never copied (on purpose): ours would be noise.
        .filter(|l| !l.contains("PUBLICATION"))
        .collect()
}

/// Roles, attributes, memberships and settings as pg_dumpall prints them, minus the lines
/// about the bootstrap superuser (initdb's, different on each side by design).
fn dump_roles(cluster: &Cluster) -> Vec<String> {
    let out = Command::new(support::tool(&support::install(), "pg_dumpall"))
        .args([
            "--roles-only",
            "-h",
            cluster.host(),
            "-p",
            &cluster.port().to_string(),
            "-U",
            "postgres",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_dumpall: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            !l.starts_with("--")
                && !l.starts_with('\\')
                && !l.trim().is_empty()
                && !l.contains("ROLE postgres")
                && !l.starts_with("SET ")
        })
        .map(|l| l.replace(" GRANTED BY postgres", ""))
        .collect();
    lines.sort();
    lines
}

fn verify(src: &Cluster, dst: &Cluster, db: &str) {
    let out = pgferry(&["verify", "-s", &src.uri(db), "-t", &dst.uri(db)]);
    assert!(out.status.success(), "verify {db}: {}", text(&out));
}

fn source_footprint(src: &Cluster, db: &str) -> String {
    psql(
        src,
        db,
        "SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgferry%' AND database = current_database()) || '/' || \
                (SELECT count(*) FROM pg_publication WHERE pubname LIKE 'pgferry%')",
    )
}

fn setup_source(src: &Cluster) -> bool {
    // The first role created in a fresh cluster: the seed tool's oid cut-off loses it.
    psql(
        src,
        "postgres",
        "CREATE ROLE app_owner LOGIN PASSWORD 'owner-secret'",
    );
    assert_eq!(
        psql(
            src,
            "postgres",
            "SELECT oid FROM pg_roles WHERE rolname = 'app_owner'"
        ),
        "16384"
    );
    psql(
        src,
        "postgres",
        "CREATE ROLE reader NOLOGIN CONNECTION LIMIT 3; \
         GRANT app_owner TO reader WITH ADMIN OPTION; \
         CREATE ROLE legacy NOLOGIN; \
         CREATE DATABASE \"Shop-2\" OWNER app_owner; \
         ALTER DATABASE \"Shop-2\" SET work_mem = '8MB'; \
         ALTER ROLE reader IN DATABASE \"Shop-2\" SET search_path = app, public; \
         CREATE DATABASE crm; CREATE DATABASE skipme;",
    );
    psql(
        src,
        "Shop-2",
        "SET ROLE app_owner; \
         CREATE SCHEMA app; \
         CREATE TABLE app.customers (id int PRIMARY KEY, name text NOT NULL); \
         CREATE TABLE app.orders (id bigserial PRIMARY KEY, customer int REFERENCES app.customers, \
                                  amount numeric(10,2), note text); \
         CREATE SEQUENCE app.odd_seq START 1000 INCREMENT 7; \
         SELECT setval('app.odd_seq', 1021, false); \
         INSERT INTO app.customers SELECT g, 'c' || g FROM generate_series(1, 500) g; \
         INSERT INTO app.orders (customer, amount, note) \
           SELECT 1 + g % 500, g / 100.0, repeat('x', g % 50) FROM generate_series(1, 20000) g; \
         CREATE VIEW app.big_orders AS SELECT * FROM app.orders WHERE amount > 100; \
         SELECT lo_from_bytea(0, 'large object payload'); \
         RESET ROLE; GRANT SELECT ON ALL TABLES IN SCHEMA app TO reader;",
    );
    psql(
        src,
        "crm",
        "CREATE TABLE notes (body text, at timestamptz DEFAULT now()); \
         INSERT INTO notes (body) SELECT 'n' || g FROM generate_series(1, 3000) g; \
         CREATE TABLE contacts (id int PRIMARY KEY, email text UNIQUE); \
         INSERT INTO contacts SELECT g, g || '@x' FROM generate_series(1, 1000) g;",
    );
    psql(src, "skipme", "CREATE TABLE t (id int PRIMARY KEY)");
    let postgis = psql(
        src,
        "postgres",
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'postgis'",
    ) == "1";
    if postgis {
        psql(src, "postgres", "CREATE DATABASE geo");
        psql(
            src,
            "geo",
            "CREATE EXTENSION postgis; \
             INSERT INTO spatial_ref_sys (srid, auth_name, auth_srid, srtext, proj4text) \
               VALUES (990001, 'local', 990001, '', '+proj=longlat +datum=WGS84 +no_defs'); \
             CREATE TABLE places (id int PRIMARY KEY, at geometry(Point, 4326)); \
             INSERT INTO places VALUES (1, 'SRID=4326;POINT(1 2)');",
        );
    } else {
        support::skip(
            "whole_cluster_migration (postgis database)",
            "postgis is not installed (apt-get install -y postgresql-15-postgis-3; .ci/run does it)",
        );
    }
    postgis
}

/// One whole-cluster migration as a user runs it, in the order the steps must come: refusals
/// and `--validate` first (nothing may exist yet), then the live run until `pgferry stop`, the
/// checks of its result, and the reruns and cleanup that need that result.
#[test]
fn whole_cluster_migration_end_to_end() {
    let src = start_cluster();
    let dst = start_cluster();
    let postgis = setup_source(&src);
    let (s, t) = (src.uri("postgres"), dst.uri("postgres"));
    let mut dbs = vec!["Shop-2", "crm", "postgres"];
    if postgis {
        dbs.push("geo");
    }
    let run = WholeCluster {
        src: &src,
        dst: &dst,
        s: &s,
        t: &t,
        dbs,
        postgis,
    };
    validate_refuses_and_touches_nothing(&run);
    live_migration_until_stopped(&run);
    assert_done_and_identical(&run);
    rerun_refusal_and_cleanup(&run);
}

/// The clusters and databases of [`whole_cluster_migration_end_to_end`].
struct WholeCluster<'a> {
    src: &'a Cluster,
    dst: &'a Cluster,
    /// The source's and target's URIs.
    s: &'a str,
    t: &'a str,
    /// The databases migrated (all but `skipme`).
    dbs: Vec<&'static str>,
    /// Whether the `geo` database (PostGIS) is among them.
    postgis: bool,
}

impl WholeCluster<'_> {
    /// `pgferry migrate` from the source to the target with `extra`.
    fn migrate(&self, extra: &[&str]) -> Output {
        let mut args = vec!["migrate", "-s", self.s, "-t", self.t];
        args.extend_from_slice(extra);
        pgferry(&args)
    }
}

fn validate_refuses_and_touches_nothing(run: &WholeCluster) {
    let target_roles_before = dump_roles(run.dst);

    // A live migration of crm, whose notes have no replica identity, is refused, listing the
    // table and the ways out; a one-shot copy would lose the writes made after it.
    let out = run.migrate(&["-f", "skipme", "--validate"]);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(3), "{report}");
    assert!(
        report.contains("public.notes")
            && report.contains("--replica-identity-full")
            && report.contains("--force-method dump"),
        "{report}"
    );

    // --validate: the method per database and why; nothing created on either side. crm is
    // copied once, as the user chose for it.
    let out = run.migrate(&["-f", "skipme", "--force-method", "crm=dump", "--validate"]);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(
        report.contains("Shop-2") && report.contains("replication"),
        "{report}"
    );
    assert!(
        report.contains("crm") && report.contains("pg_dump"),
        "crm is copied once (--force-method crm=dump): {report}"
    );
    assert!(!report.contains("skipme"), "{report}");
    assert_eq!(dump_roles(run.dst), target_roles_before);
    assert_eq!(
        psql(
            run.dst,
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname IN ('Shop-2', 'crm', 'geo')"
        ),
        "0"
    );
    assert_eq!(
        psql(
            run.dst,
            "postgres",
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgferry'"
        ),
        "0"
    );
    assert_eq!(source_footprint(run.src, "Shop-2"), "0/0");

    // A forced replication of a database that cannot replicate is a preflight failure (3).
    let out = run.migrate(&[
        "--databases",
        "crm",
        "--force-method",
        "replication",
        "--validate",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
}

fn live_migration_until_stopped(run: &WholeCluster) {
    // The live migration: runs until stopped; writes continue meanwhile.
    let mut child = spawn_pgferry(&[
        "pg",
        "-s",
        run.s,
        "-t",
        run.t,
        "-f",
        "skipme",
        "--force-method",
        "crm=dump",
        "-v",
    ]);
    let syncing = wait_status(run.dst, &mut child, "Shop-2 syncing", |s| {
        detail(s, "Shop-2").is_some_and(|d| d["status"] == "syncing")
    });
    assert_eq!(detail(&syncing, "Shop-2").unwrap()["method"], "replication");
    psql(
        run.src,
        "Shop-2",
        "INSERT INTO app.orders (customer, amount, note) SELECT 1, 1, 'late' FROM generate_series(1, 500); \
         UPDATE app.customers SET name = 'renamed' WHERE id <= 10; DELETE FROM app.orders WHERE id <= 100; \
         SELECT nextval('app.odd_seq'); SELECT nextval('app.odd_seq');",
    );
    let everything_settled = wait_status(run.dst, &mut child, "all databases copied", |s| {
        s["migration_detail"].as_array().is_some_and(|a| {
            a.len() == run.dbs.len()
                && a.iter()
                    .all(|d| d["status"] == "syncing" || d["status"] == "done")
        })
    });
    assert_eq!(
        detail(&everything_settled, "crm").unwrap()["method"],
        "pg_dump"
    );
    assert!(detail(&everything_settled, "crm").unwrap()["method_reason"]
        .as_str()
        .unwrap()
        .contains("--force-method dump"));
    assert_eq!(source_footprint(run.src, "Shop-2"), "1/1");

    let out = pgferry(&["stop", "-t", run.t]);
    assert!(out.status.success(), "stop: {}", text(&out));
    let run = child.wait_with_output().unwrap();
    assert!(run.status.success(), "migrate: {}", text(&run));
    let log = text(&run);
    assert!(!log.contains("owner-secret"), "{log}");
}

fn assert_done_and_identical(run: &WholeCluster) {
    // Status: the seed's shape, everything done.
    let done = status_json(run.dst).expect("status");
    assert_eq!(done["migration"]["status"], "done", "{done}");
    assert_eq!(done["migration"]["method"], "");
    assert!(done["migration"]["error"].is_null());
    for db in &run.dbs {
        let d = detail(&done, db).unwrap_or_else(|| panic!("{db} missing from {done}"));
        assert_eq!(d["status"], "done", "{done}");
        assert!(d["error"].is_null(), "{done}");
    }
    assert!(detail(&done, "skipme").is_none());

    // The target equals the source: roles, schema, data, sequences, large objects.
    assert_eq!(dump_roles(run.src), dump_roles(run.dst));
    for db in &run.dbs {
        assert_eq!(
            dump_schema(run.src, db),
            dump_schema(run.dst, db),
            "schema of {db}"
        );
        verify(run.src, run.dst, db);
    }
    assert_eq!(
        psql(
            run.dst,
            "Shop-2",
            "SELECT last_value, is_called FROM app.odd_seq"
        ),
        psql(
            run.src,
            "Shop-2",
            "SELECT last_value, is_called FROM app.odd_seq"
        )
    );
    assert_eq!(
        psql(run.dst, "postgres", "SELECT setconfig::text FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = 'Shop-2' AND s.setrole = 0"),
        "{work_mem=8MB}"
    );
    if run.postgis {
        assert_eq!(
            psql(
                run.dst,
                "geo",
                "SELECT count(*) FROM spatial_ref_sys WHERE srid = 990001"
            ),
            "1"
        );
    }
    assert_eq!(
        source_footprint(run.src, "Shop-2"),
        "0/0",
        "cutover drops slot and publication"
    );
    assert_eq!(
        psql(
            run.dst,
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname = 'skipme'"
        ),
        "0"
    );
}

fn rerun_refusal_and_cleanup(run: &WholeCluster) {
    // A second identical run changes nothing.
    let before: Vec<Vec<String>> = run.dbs.iter().map(|db| dump_schema(run.dst, db)).collect();
    let counts = psql(run.dst, "Shop-2", "SELECT count(*) FROM app.orders");
    let out = run.migrate(&["-f", "skipme"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("done by an earlier run"),
        "{}",
        text(&out)
    );
    let after: Vec<Vec<String>> = run.dbs.iter().map(|db| dump_schema(run.dst, db)).collect();
    assert_eq!(before, after);
    assert_eq!(
        psql(run.dst, "Shop-2", "SELECT count(*) FROM app.orders"),
        counts
    );
    assert_eq!(source_footprint(run.src, "Shop-2"), "0/0");

    // Another migration into the same target is refused, naming the one there.
    let out = run.migrate(&["--migration-id", "other"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("already holds migration"),
        "{}",
        text(&out)
    );

    // Cleanup removes the state; idempotent.
    for _ in 0..2 {
        let out = pgferry(&["cleanup", "-s", run.s, "-t", run.t]);
        assert!(out.status.success(), "{}", text(&out));
    }
    assert_eq!(
        psql(
            run.dst,
            "postgres",
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgferry'"
        ),
        "0"
    );
}

#[test]
fn killed_run_resumes_to_the_same_result() {
    let src = start_cluster();
    let dst = start_cluster();
    psql(
        &src,
        "postgres",
        "CREATE DATABASE big; CREATE DATABASE plain",
    );
    psql(
        &src,
        "big",
        "CREATE TABLE items (id bigint PRIMARY KEY, payload text); \
         INSERT INTO items SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 400000) g; \
         CREATE TABLE more (id bigint PRIMARY KEY, v int); \
         INSERT INTO more SELECT g, g FROM generate_series(1, 200000) g;",
    );
    psql(
        &src,
        "plain",
        "CREATE TABLE log (line text); INSERT INTO log SELECT 'l' || g FROM generate_series(1, 100000) g;",
    );
    let (s, t) = (src.uri("postgres"), dst.uri("postgres"));
    let args = [
        "migrate",
        "-s",
        &s,
        "-t",
        &t,
        "--databases",
        "big,plain",
        // plain's log has no replica identity: copied once, as chosen here.
        "--force-method",
        "plain=dump",
        "-j",
        "1",
    ];

    // Kill -9 in the middle of big's copy.
    let mut child = spawn_pgferry(&args);
    wait_status(&dst, &mut child, "big copying", |s| {
        detail(s, "big").is_some_and(|d| d["phase"] == "copy")
    });
    child.kill().unwrap();
    let _ = child.wait();
    let dead = status_json(&dst).expect("status");
    assert_eq!(dead["migration"]["running"], false);
    assert_ne!(dead["migration"]["status"], "done");

    // Rerun: big is copied again from scratch (no duplicates), then streams.
    let mut child = spawn_pgferry(&args);
    wait_status(&dst, &mut child, "big syncing", |s| {
        detail(s, "big").is_some_and(|d| d["status"] == "syncing")
            && detail(s, "plain").is_some_and(|d| d["status"] == "done")
    });
    psql(
        &src,
        "big",
        "INSERT INTO items SELECT g, 'new' FROM generate_series(400001, 400100) g",
    );

    // Kill -9 while streaming; more writes; rerun resumes from the stored position.
    std::thread::sleep(Duration::from_secs(2));
    child.kill().unwrap();
    let _ = child.wait();
    psql(
        &src,
        "big",
        "UPDATE more SET v = -v WHERE id <= 1000; DELETE FROM items WHERE id > 400050",
    );
    let mut child = spawn_pgferry(&args);
    wait_status(&dst, &mut child, "big syncing again", |s| {
        s["migration"]["running"] == true
            && detail(s, "big").is_some_and(|d| d["status"] == "syncing")
    });
    let out = pgferry(&["stop", "-t", &t]);
    assert!(out.status.success(), "stop: {}", text(&out));
    let run = child.wait_with_output().unwrap();
    assert!(run.status.success(), "{}", text(&run));
    assert!(text(&run).contains("resuming streaming"), "{}", text(&run));
    assert!(
        text(&run).contains("done by an earlier run"),
        "{}",
        text(&run)
    );

    for db in ["big", "plain"] {
        verify(&src, &dst, db);
    }
    assert_eq!(psql(&dst, "big", "SELECT count(*) FROM items"), "400050");
    assert_eq!(
        psql(&dst, "big", "SELECT count(*) FROM more WHERE v < 0"),
        "1000"
    );
    assert_eq!(source_footprint(&src, "big"), "0/0");
}

/// The seed document's command line (`pg -d ... --max-replication-lag 1 --stop-replication -f
/// DB`), with the source given by the seed's `migration.*` keys in a --config file: the run
/// ends by itself after cutover; the password in the file never shows.
#[test]
fn seed_command_line_with_config_file_stops_by_itself() {
    let src = start_cluster();
    let dst = start_cluster();
    psql(
        &src,
        "postgres",
        "CREATE DATABASE app; CREATE DATABASE db_to_skip",
    );
    psql(
        &src,
        "app",
        "CREATE TABLE t (id int PRIMARY KEY, v text); \
         INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 5000) g; \
         CREATE SEQUENCE s; SELECT setval('s', 77);",
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("migration.toml");
    std::fs::write(
        &config,
        format!(
            "[migration]\nhost = \"{}\"\nport = {}\nssl = false\nusername = \"postgres\"\n\
             password = \"file-secret-1234\"\ndbname = \"postgres\"\nignore_dbs = \"db_to_skip,postgres\"\n",
            src.host(),
            src.port()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let t = dst.uri("postgres");

    let out = pgferry(&["pg", "-s", &src.uri("postgres"), "--config", cfg, "-t", &t]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // The source cannot be its own target, even through another host name.
    let other_name = src.uri("postgres").replace("127.0.0.1", "localhost");
    let out = pgferry(&[
        "pg",
        "-s",
        &src.uri("postgres"),
        "-t",
        &other_name,
        "--validate",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("same server"), "{}", text(&out));

    let out = pgferry(&[
        "pg",
        "-d",
        "--config",
        cfg,
        "-t",
        &t,
        "--max-replication-lag",
        "1",
        "--stop-replication",
    ]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(!log.contains("file-secret-1234"), "password leaked: {log}");
    let status = status_json(&dst).expect("status");
    assert_eq!(status["migration"]["status"], "done", "{status}");
    let app = detail(&status, "app").expect("app in status");
    assert_eq!(app["method"], "replication");
    assert_eq!(app["status"], "done");
    assert!(detail(&status, "db_to_skip").is_none());
    verify(&src, &dst, "app");
    assert_eq!(source_footprint(&src, "app"), "0/0");
    assert_eq!(
        psql(
            &dst,
            "app",
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgferry'"
        ),
        "0"
    );
}

/// SIGTERM stops a live migration and keeps its slot, exiting with the interrupted code (130)
/// and without calling the migration finished; `pgferry stop` then cuts over by itself (no
/// migrate process running), and needs the source for that.
#[test]
fn sigterm_keeps_the_slot_and_stop_cuts_over_alone() {
    let src = start_cluster();
    let dst = start_cluster();
    psql(&src, "postgres", "CREATE DATABASE live");
    psql(
        &src,
        "live",
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' FROM generate_series(1, 1000) g;",
    );
    let (s, t) = (src.uri("postgres"), dst.uri("postgres"));
    let mut child = spawn_pgferry(&["migrate", "-s", &s, "-t", &t, "--databases", "live"]);
    wait_status(&dst, &mut child, "live syncing", |st| {
        detail(st, "live").is_some_and(|d| d["status"] == "syncing")
    });
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let run = child.wait_with_output().unwrap();
    assert_eq!(run.status.code(), Some(130), "{}", text(&run));
    assert!(text(&run).contains("syncing"), "{}", text(&run));
    assert!(text(&run).contains("interrupted"), "{}", text(&run));
    assert!(!text(&run).contains("finished"), "{}", text(&run));
    assert_eq!(
        source_footprint(&src, "live"),
        "1/1",
        "the slot is kept for a resume"
    );
    let st = status_json(&dst).unwrap();
    assert_eq!(st["migration"]["running"], false);
    assert_eq!(detail(&st, "live").unwrap()["status"], "syncing");

    psql(
        &src,
        "live",
        "UPDATE t SET v = 'changed' WHERE id <= 10; INSERT INTO t VALUES (5000, 'new')",
    );
    let out = pgferry(&["stop", "-t", &t]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("-s SRC"), "{}", text(&out));
    let out = pgferry(&["stop", "-t", &t, "-s", &s]);
    assert!(out.status.success(), "{}", text(&out));
    let st = status_json(&dst).unwrap();
    assert_eq!(st["migration"]["status"], "done", "{st}");
    verify(&src, &dst, "live");
    assert_eq!(
        psql(&dst, "live", "SELECT count(*) FROM t WHERE v = 'changed'"),
        "10"
    );
    assert_eq!(source_footprint(&src, "live"), "0/0");
}
