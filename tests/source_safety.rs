//! The first promise of a live migration: the application on the source keeps working. Real
//! clusters, the real binary, and an "application" writing to the source during the whole run
//! whose every error is recorded; each test ends with no failed write.
//!
//! - the replica identity rule (deferrable primary key, REPLICA IDENTITY NOTHING, a leaf
//!   partition without identity, a dropped identity index; REPLICA IDENTITY USING INDEX on a
//!   valid index accepted): `--validate` and `clone --follow` name each table and the choices;
//!   with `--replica-identity-full` a non-superuser table owner migrates them under UPDATEs;
//! - tables that appear or change while streaming (a new table without primary key, a dropped
//!   primary key, REPLICA IDENTITY NOTHING): never a failed write, reported as not replicated;
//! - WAL retention: a stalled apply past `--max-slot-retained` drops pgferry's own slot.

mod support;

use pgferry::conn::{connect, ConnConfig};
use pgferry::localpg::{Cluster, ClusterOptions};
use pgferry::verify::{verify, VerifyOptions};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::ferry::Ferry;
use support::{output_text as text, pgferry, psql};

fn start_cluster() -> Cluster {
    Cluster::start(&support::install(), ClusterOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn as_user(uri: &str, user: &str) -> String {
    uri.replace("postgres://postgres@", &format!("postgres://{user}@"))
}

/// The application: one session on the source running its statements in a loop (`{id}` is
/// replaced by a row id in 1..=1000), plus one-off statements queued by the test; every
/// error is kept.
struct App {
    stop: Arc<AtomicBool>,
    loop_sql: Arc<Mutex<Vec<String>>>,
    once: Arc<Mutex<VecDeque<String>>>,
    errors: Arc<Mutex<Vec<String>>>,
    done: Arc<AtomicU64>,
    handle: JoinHandle<()>,
}

impl App {
    fn start(uri: &str, statements: &[&str]) -> App {
        let stop = Arc::new(AtomicBool::new(false));
        let loop_sql = Arc::new(Mutex::new(
            statements
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<String>>(),
        ));
        let once = Arc::new(Mutex::new(VecDeque::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicU64::new(0));
        let (s, l, o, e, d) = (
            stop.clone(),
            loop_sql.clone(),
            once.clone(),
            errors.clone(),
            done.clone(),
        );
        let cfg = ConnConfig::from_conn_str(uri).unwrap();
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let session = connect(&cfg).await.unwrap();
                let client = &session.client;
                let mut n: u64 = 0;
                while !s.load(Ordering::SeqCst) {
                    let pending = o.lock().unwrap().pop_front();
                    let batch: Vec<String> = match pending {
                        Some(sql) => vec![sql],
                        None => l.lock().unwrap().clone(),
                    };
                    for sql in batch {
                        n += 1;
                        let id = 1 + (n.wrapping_mul(7919) % 1000);
                        let sql = sql.replace("{id}", &id.to_string());
                        match client.batch_execute(&sql).await {
                            Ok(()) => {
                                d.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(err) => e.lock().unwrap().push(format!(
                                "{sql}: {}",
                                err.as_db_error()
                                    .map(|d| d.message().to_owned())
                                    .unwrap_or_else(|| err.to_string())
                            )),
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
            });
        });
        App {
            stop,
            loop_sql,
            once,
            errors,
            done,
            handle,
        }
    }

    /// Runs `sql` once, as the next statement of the application's session.
    fn run_once(&self, sql: &str) {
        self.once.lock().unwrap().push_back(sql.to_owned());
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.once.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "the application is stuck");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn add_loop(&self, sql: &str) {
        self.loop_sql.lock().unwrap().push(sql.to_owned());
    }

    fn statements_done(&self) -> u64 {
        self.done.load(Ordering::SeqCst)
    }

    /// Stops the application; returns how many statements succeeded, and every error.
    fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap();
        let errors = self.errors.lock().unwrap().clone();
        (self.done.load(Ordering::SeqCst), errors)
    }
}

fn verify_equal(src: &Cluster, dst: &Cluster, db: &str, opts: VerifyOptions) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let report = rt
        .block_on(verify(
            &ConnConfig::from_conn_str(&src.uri(db)).unwrap(),
            &ConnConfig::from_conn_str(&dst.uri(db)).unwrap(),
            &opts,
        ))
        .unwrap();
    assert!(report.is_clean(), "source and target differ: {report:#?}");
}

/// Our objects left on the source: slots, publications, event triggers, schema pgferry.
fn source_footprint(src: &Cluster, db: &str) -> String {
    psql(
        src,
        db,
        "SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgferry%') || '/' || \
                (SELECT count(*) FROM pg_publication WHERE pubname LIKE 'pgferry%') || '/' || \
                (SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'pgferry%') || '/' || \
                (SELECT count(*) FROM pg_namespace WHERE nspname = 'pgferry')",
    )
}

/// Tables of every kind the identity rule must judge, owned by `owner`, 1000 rows each.
fn identity_zoo(src: &Cluster, db: &str, owner: &str) {
    psql(
        src,
        db,
        &format!(
            "SET ROLE {owner};
             CREATE TABLE ok (id int PRIMARY KEY, v text);
             CREATE TABLE deferred (id int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED, v text);
             CREATE TABLE nothing (id int PRIMARY KEY, v text);
             ALTER TABLE nothing REPLICA IDENTITY NOTHING;
             CREATE TABLE by_index (id int NOT NULL, v text);
             CREATE UNIQUE INDEX by_index_id ON by_index (id);
             ALTER TABLE by_index REPLICA IDENTITY USING INDEX by_index_id;
             CREATE TABLE lost_index (id int NOT NULL, v text);
             CREATE UNIQUE INDEX lost_index_id ON lost_index (id);
             ALTER TABLE lost_index REPLICA IDENTITY USING INDEX lost_index_id;
             DROP INDEX lost_index_id;
             CREATE TABLE parted (id int NOT NULL, region int NOT NULL, v text) PARTITION BY LIST (region);
             CREATE TABLE parted_keyed PARTITION OF parted (PRIMARY KEY (id)) FOR VALUES IN (1);
             CREATE TABLE parted_bare PARTITION OF parted FOR VALUES IN (2);
             INSERT INTO ok SELECT g, 'v' FROM generate_series(1, 1000) g;
             INSERT INTO deferred SELECT g, 'v' FROM generate_series(1, 1000) g;
             INSERT INTO nothing SELECT g, 'v' FROM generate_series(1, 1000) g;
             INSERT INTO by_index SELECT g, 'v' FROM generate_series(1, 1000) g;
             INSERT INTO lost_index SELECT g, 'v' FROM generate_series(1, 1000) g;
             INSERT INTO parted SELECT g, 1 + g % 2, 'v' FROM generate_series(1, 1000) g;
             RESET ROLE;"
        ),
    );
}

/// Updates on every table of [`identity_zoo`], leaf partitions included.
const ZOO_UPDATES: &[&str] = &[
    "UPDATE ok SET v = v || 'o' WHERE id = {id}",
    "UPDATE deferred SET v = v || 'd' WHERE id = {id}",
    "UPDATE nothing SET v = v || 'n' WHERE id = {id}",
    "UPDATE by_index SET v = v || 'i' WHERE id = {id}",
    "UPDATE lost_index SET v = v || 'l' WHERE id = {id}",
    "UPDATE parted SET v = v || 'p' WHERE id = {id}",
    "DELETE FROM deferred WHERE id = {id} + 2000",
];

fn create_owner(src: &Cluster, dst: &Cluster, role: &str) {
    for cluster in [src, dst] {
        psql(
            cluster,
            "postgres",
            &format!(
                "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN \
                   CREATE ROLE {role} LOGIN REPLICATION; END IF; END $$;"
            ),
        );
    }
}

/// `--validate` and `clone --follow` name every table that fails the rule, with its reason and
/// the choices, and accept the others; nothing is created on the source.
#[test]
fn every_table_without_usable_identity_is_named_with_the_choices() {
    let src = start_cluster();
    let dst = start_cluster();
    create_owner(&src, &dst, "app_owner");
    psql(&src, "postgres", "CREATE DATABASE zoo OWNER app_owner");
    identity_zoo(&src, "zoo", "app_owner");
    let s = as_user(&src.uri("postgres"), "app_owner");

    let out = pgferry(&[
        "migrate",
        "-s",
        &s,
        "-t",
        &dst.uri("postgres"),
        "-f",
        "postgres",
        "--validate",
    ]);
    let report = text(&out);
    for expected in [
        "public.deferred (its primary key is DEFERRABLE",
        "public.nothing (REPLICA IDENTITY NOTHING)",
        "public.lost_index (its REPLICA IDENTITY index is missing or not usable",
        "public.parted_bare (partition of public.parted: no primary key)",
        "--replica-identity-full",
        "--skip-table",
    ] {
        assert!(report.contains(expected), "{expected:?} missing:\n{report}");
    }
    for accepted in ["public.ok", "public.by_index", "parted_keyed"] {
        assert!(
            !report.contains(accepted),
            "{accepted} has a usable identity but was named:\n{report}"
        );
    }

    let out = pgferry(&[
        "clone",
        "--follow",
        "-s",
        &as_user(&src.uri("zoo"), "app_owner"),
        "-t",
        &dst.uri("zoo"),
    ]);
    let refusal = text(&out);
    assert!(!out.status.success(), "{refusal}");
    for expected in [
        "public.deferred (its primary key is DEFERRABLE",
        "public.nothing (REPLICA IDENTITY NOTHING)",
        "public.lost_index (",
        "public.parted_bare (partition of public.parted",
        "--skip-table public.deferred --skip-table public.lost_index --skip-table public.nothing \
         --skip-table public.parted",
        "Nothing was created on the source",
    ] {
        assert!(
            refusal.contains(expected),
            "{expected:?} missing:\n{refusal}"
        );
    }
    assert_eq!(source_footprint(&src, "zoo"), "0/0/0/0");
    assert_eq!(
        psql(
            &src,
            "zoo",
            "SELECT string_agg(relname || '=' || relreplident::text, ',' ORDER BY relname) FROM pg_class \
             WHERE relname IN ('deferred', 'nothing', 'parted_bare', 'by_index')"
        ),
        "by_index=i,deferred=d,nothing=n,parted_bare=d",
        "the source was changed without --replica-identity-full"
    );
}

/// A table owner with REPLICATION (not a superuser) runs `clone --follow
/// --replica-identity-full` while the application updates every table of the zoo, and later
/// creates a table without a primary key and updates it: no write fails on the source,
/// exactly the failing tables got REPLICA IDENTITY FULL, the new table is reported as not
/// replicated, and after the cutover everything else is equal.
#[test]
fn clone_follow_fixes_exactly_the_failing_tables_without_one_failed_write() {
    let src = start_cluster();
    let dst = start_cluster();
    create_owner(&src, &dst, "app_owner");
    psql(&src, "postgres", "CREATE DATABASE shop OWNER app_owner");
    identity_zoo(&src, "shop", "app_owner");
    psql(
        &src,
        "shop",
        "SET ROLE app_owner; CREATE SCHEMA late; RESET ROLE;",
    );
    let app_uri = as_user(&src.uri("shop"), "app_owner");
    let app = App::start(&app_uri, ZOO_UPDATES);
    let started = Instant::now();

    let args = [
        "clone",
        "--follow",
        "--replica-identity-full",
        "-s",
        &app_uri,
        "-t",
        &dst.uri("shop"),
    ];
    let mut ferry = Ferry::spawn(&args);
    ferry.wait_for(&["streaming from"], Duration::from_secs(180));
    let before = app.statements_done();
    // The application creates a table without any identity while pgferry streams, and
    // updates it at once.
    app.run_once(
        "CREATE TABLE late.t (x int, v text); INSERT INTO late.t SELECT g, 'v' FROM generate_series(1, 1000) g",
    );
    app.add_loop("UPDATE late.t SET v = v || 'x' WHERE x = {id}");
    let line = ferry.wait_for(&["not replicated", "late.t"], Duration::from_secs(60));
    assert!(line.contains("late.t"), "{line}");
    std::thread::sleep(Duration::from_secs(2));
    let (done, errors) = app.finish();
    assert!(
        errors.is_empty(),
        "{} write(s) failed on the source: {errors:#?}",
        errors.len()
    );
    assert!(
        done > before + 50,
        "the application barely wrote while pgferry streamed ({before} then {done})"
    );
    eprintln!(
        "application: {done} statements, 0 errors in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        psql(
            &src,
            "shop",
            "SELECT string_agg(relname || '=' || relreplident::text, ',' ORDER BY relname) FROM pg_class \
             WHERE relname IN ('ok', 'deferred', 'nothing', 'by_index', 'lost_index', \
                               'parted_keyed', 'parted_bare', 't')"
        ),
        "by_index=i,deferred=f,lost_index=f,nothing=f,ok=d,parted_bare=f,parted_keyed=d,t=d",
        "REPLICA IDENTITY FULL must be set on exactly the failing tables"
    );
    // Not a superuser: no event trigger, a publication listing the tables.
    assert_eq!(source_footprint(&src, "shop"), "1/1/0/0");
    assert_eq!(
        psql(
            &src,
            "shop",
            "SELECT puballtables FROM pg_publication WHERE pubname LIKE 'pgferry%'"
        ),
        "f"
    );

    ferry.terminate();
    let (status, log) = ferry.wait(Duration::from_secs(60));
    assert_eq!(status.code(), Some(130), "interrupted: {log}");
    let cut = Ferry::spawn(
        &[
            &args[..],
            &["--stop-replication", "--max-replication-lag", "0"],
        ]
        .concat(),
    );
    let (status, log) = cut.wait(Duration::from_secs(180));
    assert!(status.success(), "{log}");
    assert!(log.contains("cutover done"), "{log}");
    verify_equal(
        &src,
        &dst,
        "shop",
        VerifyOptions {
            ignore_schemas: vec!["pgferry".into(), "late".into()],
            sequences: false,
            ..VerifyOptions::default()
        },
    );
    assert_eq!(source_footprint(&src, "shop"), "0/0/0/0");
}

fn status_json(dst: &Cluster) -> Option<Value> {
    let out = pgferry(&["status", "-t", &dst.uri("postgres"), "--json"]);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn db_detail(status: &Value, db: &str) -> Option<Value> {
    status["migration_detail"]
        .as_array()?
        .iter()
        .find(|d| d["dbname"] == db)
        .cloned()
}

fn wait_status(
    dst: &Cluster,
    ferry: &mut Ferry,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        if let Some(s) = status_json(dst) {
            if pred(&s) {
                return s;
            }
        }
        if Instant::now() > deadline || ferry.child.try_wait().ok().flatten().is_some() {
            let _ = ferry.child.kill();
            panic!(
                "gave up waiting for {what}: status {:?}\nmigrate said:\n{}",
                status_json(dst),
                ferry.log()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `pgferry migrate` with a superuser source: while it streams, the application drops the
/// primary key of a published table, sets REPLICA IDENTITY NOTHING on another and creates a
/// table without a key, each followed at once by UPDATEs in the same session. The guard
/// removes the two from the publication in the DDL's own transaction: not one write fails.
/// Status names the three tables as not replicated; the rest is equal after the cutover, and
/// nothing of pgferry's is left on the source.
#[test]
fn tables_changed_or_created_while_streaming_never_fail_a_write() {
    let src = start_cluster();
    let dst = start_cluster();
    psql(&src, "postgres", "CREATE DATABASE live");
    psql(
        &src,
        "live",
        "CREATE TABLE ok (id int PRIMARY KEY, v text);
         CREATE TABLE drops_pk (id int PRIMARY KEY, v text);
         CREATE TABLE goes_nothing (id int PRIMARY KEY, v text);
         CREATE TABLE parted (id int NOT NULL, region int NOT NULL, v text,
                              PRIMARY KEY (id, region)) PARTITION BY LIST (region);
         CREATE TABLE parted_1 PARTITION OF parted FOR VALUES IN (1);
         INSERT INTO ok SELECT g, 'v' FROM generate_series(1, 1000) g;
         INSERT INTO drops_pk SELECT g, 'v' FROM generate_series(1, 1000) g;
         INSERT INTO goes_nothing SELECT g, 'v' FROM generate_series(1, 1000) g;
         INSERT INTO parted SELECT g, 1, 'v' FROM generate_series(1, 1000) g;",
    );
    let app = App::start(
        &src.uri("live"),
        &[
            "UPDATE ok SET v = v || 'o' WHERE id = {id}",
            "UPDATE drops_pk SET v = v || 'd' WHERE id = {id}",
            "UPDATE goes_nothing SET v = v || 'n' WHERE id = {id}",
            "UPDATE parted SET v = v || 'p' WHERE id = {id}",
            "INSERT INTO ok VALUES ({id} + 100000, 'new') ON CONFLICT (id) DO NOTHING",
        ],
    );
    let (s, t) = (src.uri("postgres"), dst.uri("postgres"));
    let mut ferry = Ferry::spawn(&["migrate", "-s", &s, "-t", &t, "--databases", "live"]);
    wait_status(&dst, &mut ferry, "live syncing", |st| {
        db_detail(st, "live").is_some_and(|d| d["status"] == "syncing")
    });
    assert_eq!(
        psql(
            &src,
            "live",
            "SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'pgferry%'"
        ),
        "1",
        "a superuser source gets the guard"
    );
    // Each change is followed immediately by UPDATEs in the same session (and in the same
    // transaction for the first): there is no time for a poller.
    app.run_once(
        "BEGIN; ALTER TABLE drops_pk DROP CONSTRAINT drops_pk_pkey; \
         UPDATE drops_pk SET v = 'in the same transaction' WHERE id = 1; COMMIT",
    );
    app.run_once("UPDATE drops_pk SET v = 'right after' WHERE id = 2");
    app.run_once(
        "ALTER TABLE goes_nothing REPLICA IDENTITY NOTHING; \
         UPDATE goes_nothing SET v = 'right after' WHERE id = 1",
    );
    app.run_once(
        "CREATE TABLE late_t (x int, v text); INSERT INTO late_t SELECT g, 'v' FROM generate_series(1, 1000) g; \
         UPDATE late_t SET v = 'right after' WHERE x = 1",
    );
    app.add_loop("UPDATE late_t SET v = v || 'x' WHERE x = {id}");
    let st = wait_status(&dst, &mut ferry, "not replicated tables in status", |st| {
        db_detail(st, "live").is_some_and(|d| {
            d["not_replicated"]
                == serde_json::json!(["public.drops_pk", "public.goes_nothing", "public.late_t"])
        })
    });
    let live = db_detail(&st, "live").unwrap();
    assert!(
        live["slot_retained_bytes"].as_i64().is_some_and(|b| b >= 0),
        "status shows the WAL retained by the slot: {live}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let (done, errors) = app.finish();
    assert!(
        errors.is_empty(),
        "{} write(s) failed on the source: {errors:#?}",
        errors.len()
    );
    assert!(done > 100, "the application barely wrote: {done}");
    let table = text(&pgferry(&["status", "-t", &t]));
    assert!(
        table.contains("live: public.drops_pk, public.goes_nothing, public.late_t"),
        "{table}"
    );

    let out = pgferry(&["stop", "-t", &t]);
    assert!(out.status.success(), "{}", text(&out));
    let (status, log) = ferry.wait(Duration::from_secs(180));
    assert!(status.success(), "{log}");
    assert!(log.contains("not replicated"), "{log}");
    verify_equal(
        &src,
        &dst,
        "live",
        VerifyOptions {
            tables: vec!["public.ok".into()],
            ..VerifyOptions::default()
        },
    );
    let parted = "SELECT count(*), md5(string_agg(id || v, ',' ORDER BY id)) FROM parted";
    assert_eq!(psql(&dst, "live", parted), psql(&src, "live", parted));
    assert_eq!(source_footprint(&src, "live"), "0/0/0/0");
}

/// Apply blocked (a lock held on the target table) while the source keeps writing: the WAL
/// the slot retains grows, status shows it, and past a low `--max-slot-retained` pgferry drops
/// its own slot and publication and marks the database failed, saying how to continue. The
/// application's writes never fail. A rerun copies the database again and finishes.
#[test]
fn a_stalled_apply_past_max_slot_retained_drops_the_slot() {
    let src = start_cluster();
    let dst = start_cluster();
    psql(&src, "postgres", "CREATE DATABASE big");
    psql(
        &src,
        "big",
        "CREATE TABLE t (id bigserial PRIMARY KEY, v text);
         INSERT INTO t (v) SELECT 'v' FROM generate_series(1, 1000);",
    );
    let (s, t) = (src.uri("postgres"), dst.uri("postgres"));
    let args = [
        "migrate",
        "-s",
        &s,
        "-t",
        &t,
        "--databases",
        "big",
        "--max-slot-retained",
        "24MB",
    ];
    let mut ferry = Ferry::spawn(&args);
    wait_status(&dst, &mut ferry, "big syncing", |st| {
        db_detail(st, "big").is_some_and(|d| d["status"] == "syncing")
    });
    // The target's table locked: apply waits, the slot cannot advance.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let blocker = rt.block_on(async {
        let session = connect(&ConnConfig::from_conn_str(&dst.uri("big")).unwrap())
            .await
            .unwrap();
        session
            .client
            .batch_execute("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        session
    });
    // About 1 kB of WAL per statement: 64 MB in all, well past the limit.
    let app = App::start(
        &src.uri("big"),
        &["INSERT INTO t (v) SELECT repeat(md5(random()::text), 32) FROM generate_series(1, 20)"],
    );
    let seen = Mutex::new(Vec::<i64>::new());
    let st = wait_status(&dst, &mut ferry, "big failed", |st| {
        let Some(d) = db_detail(st, "big") else {
            return false;
        };
        if let Some(b) = d["slot_retained_bytes"].as_i64() {
            seen.lock().unwrap().push(b);
        }
        d["status"] == "failed"
    });
    let seen = seen.into_inner().unwrap();
    assert!(
        seen.windows(2).any(|w| w[1] > w[0]),
        "status never showed the retained WAL growing: {seen:?}"
    );
    let big = db_detail(&st, "big").unwrap();
    let error = big["error"].as_str().unwrap_or_default().to_owned();
    for expected in [
        "--max-slot-retained",
        "dropped its slot and publication",
        "copy the database",
        "rerun the same `pgferry migrate` command",
    ] {
        assert!(error.contains(expected), "{expected:?} missing: {error}");
    }
    let retained = big["slot_retained_bytes"].as_i64().unwrap_or(0);
    assert!(
        retained > 12 << 20,
        "status showed the retained WAL growing toward the limit: {big}"
    );
    assert_eq!(
        psql(
            &src,
            "big",
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgferry%'"
        ),
        "0",
        "the slot must be gone: nothing retains WAL on the source any more"
    );
    let (_, log) = ferry.wait(Duration::from_secs(60));
    assert!(
        log.contains("of --max-slot-retained"),
        "the 50%/80% warnings: {log}"
    );
    let (done, errors) = app.finish();
    assert!(
        errors.is_empty(),
        "writes failed on the source: {errors:#?}"
    );
    assert!(done > 100, "{done}");
    drop(blocker);

    // As the message says: rerun; the database is copied again and cut over.
    let mut again = Ferry::spawn(&args[..args.len() - 2]);
    wait_status(&dst, &mut again, "big syncing again", |st| {
        db_detail(st, "big").is_some_and(|d| d["status"] == "syncing")
    });
    let out = pgferry(&["stop", "-t", &t]);
    assert!(out.status.success(), "{}", text(&out));
    let (status, log) = again.wait(Duration::from_secs(180));
    assert!(status.success(), "{log}");
    verify_equal(&src, &dst, "big", VerifyOptions::default());
    assert_eq!(source_footprint(&src, "big"), "0/0/0/0");
}

/// `pgferry status -s SRC` as a user with LOGIN only: reading the slots needs no privilege.
fn status_with_source(src: &Cluster, dst: &Cluster, json: bool) -> std::process::Output {
    let s = as_user(&src.uri("postgres"), "watcher");
    let t = dst.uri("postgres");
    let mut args = vec!["status", "-s", s.as_str(), "-t", t.as_str()];
    if json {
        args.push("--json");
    }
    pgferry(&args)
}

fn live_retained(src: &Cluster, dst: &Cluster, db: &str) -> i64 {
    let out = status_with_source(src, dst, true);
    assert!(out.status.success(), "{}", text(&out));
    let st: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["migration"]["running"], false, "{st}");
    let d = db_detail(&st, db).unwrap();
    assert_eq!(d["slot_retention_measured"], "now", "{d}");
    d["slot_retained_bytes"]
        .as_i64()
        .unwrap_or_else(|| panic!("no retained WAL read now: {d}"))
}

/// While the copy runs, status shows how long its snapshot has been held on the source. Then
/// pgferry is killed (-9) and not restarted: the slot keeps the source's WAL, and `status -s
/// SRC` from another terminal reads it growing while nobody consumes; without `-s` it says
/// the figure is the last report and how to read it now. The next `migrate` warns, with the
/// size, before it resumes, and cuts over with data equal. `cleanup` reminds of a
/// pgferry-named slot it does not own. The application's writes never fail.
#[test]
fn a_killed_migrate_leaves_a_slot_that_status_reads_live() {
    let (src, dst) = (start_cluster(), start_cluster());
    fill_kept_database(&src);
    let app = App::start(
        &src.uri("kept"),
        &[
            "INSERT INTO t (v) VALUES ('app')",
            "UPDATE t SET v = v || 'u' WHERE id = {id}",
        ],
    );
    let (s, t) = (src.uri("postgres"), dst.uri("postgres"));
    let ferry = migrate_kept_until_streaming(&dst, &s, &t);
    killed_slot_keeps_retaining_and_status_reads_it(&src, &dst, &t, ferry);
    rerun_warns_then_cuts_over(&src, &dst, &s, &t, app);
    cleanup_names_a_foreign_slot_and_leaves_it(&src, &s, &t);
}

/// The database `kept` (400,000 rows, enough for a copy status can watch) on a source that
/// limits slots to 2 GB of WAL.
fn fill_kept_database(src: &Cluster) {
    psql(
        src,
        "postgres",
        "CREATE ROLE watcher LOGIN; CREATE DATABASE kept",
    );
    psql(
        src,
        "postgres",
        "ALTER SYSTEM SET max_slot_wal_keep_size = '2GB'",
    );
    psql(src, "postgres", "SELECT pg_reload_conf()");
    psql(
        src,
        "kept",
        "CREATE TABLE t (id bigserial PRIMARY KEY, v text);
         INSERT INTO t (v) SELECT repeat(md5(g::text), 8) FROM generate_series(1, 400000) g;",
    );
}

/// Migrates `kept` until it streams: meanwhile status shows the copy's snapshot age, and
/// preflight reports the source's slot limit.
fn migrate_kept_until_streaming(dst: &Cluster, s: &str, t: &str) -> Ferry {
    let mut ferry = Ferry::spawn(&[
        "migrate",
        "-s",
        s,
        "-t",
        t,
        "--databases",
        "kept",
        "-j",
        "1",
    ]);
    let snapshot_ages = Mutex::new(Vec::<i64>::new());
    let st = wait_status(dst, &mut ferry, "kept syncing", |st| {
        let Some(d) = db_detail(st, "kept") else {
            return false;
        };
        if let Some(age) = d["snapshot_age_seconds"].as_i64() {
            snapshot_ages.lock().unwrap().push(age);
        }
        // Streaming, and the process reported its slot's retention once (what status shows
        // without -s after the kill).
        d["status"] == "syncing" && !d["slot_retained_bytes"].is_null()
    });
    let ages = snapshot_ages.into_inner().unwrap();
    assert!(
        !ages.is_empty() && ages.iter().all(|a| *a >= 0),
        "status never showed the copy's snapshot age: {ages:?}"
    );
    assert!(
        db_detail(&st, "kept").unwrap()["snapshot_age_seconds"].is_null(),
        "no snapshot is held once streaming: {st}"
    );

    assert!(
        ferry
            .log()
            .contains("the source sets max_slot_wal_keep_size = 2.0 GB"),
        "preflight reports the server's own limit:\n{}",
        ferry.log()
    );
    ferry
}

/// pgferry killed (-9) and not restarted: status reads the slot's retained WAL growing with
/// `-s`, and without it says the figure is the last report.
fn killed_slot_keeps_retaining_and_status_reads_it(
    src: &Cluster,
    dst: &Cluster,
    t: &str,
    mut ferry: Ferry,
) {
    // Killed, not restarted.
    ferry.child.kill().unwrap();
    let _ = ferry.child.wait();
    let first = live_retained(src, dst, "kept");
    // 8000 rows of 1 kB of random hex (no compression): at least 8 MB of WAL.
    psql(
        src,
        "kept",
        "INSERT INTO t (v) SELECT string_agg(md5(random()::text), '') \
         FROM generate_series(1, 256000) g GROUP BY g % 8000",
    );
    let second = live_retained(src, dst, "kept");
    assert!(
        second >= first + (8 << 20),
        "the retained WAL read by status did not grow with 8 MB of writes: {first} -> {second}"
    );
    let table = text(&status_with_source(src, dst, false));
    assert!(table.contains("kept: the slot retains"), "{table}");
    assert!(
        table.contains("left before max_slot_wal_keep_size"),
        "{table}"
    );
    assert!(table.contains("(read now)"), "{table}");
    let last_report = text(&pgferry(&["status", "-t", t]));
    assert!(
        last_report.contains("at the last report")
            && last_report
                .contains("no pgferry process is running: these slots keep retaining WAL")
            && last_report.contains("status -s SRC -t DST"),
        "{last_report}"
    );
}

/// The next migrate warns, with the size, before it resumes, then cuts over with data
/// equal; the application's writes never failed.
fn rerun_warns_then_cuts_over(src: &Cluster, dst: &Cluster, s: &str, t: &str, app: App) {
    // The next migrate warns before resuming, then cuts over.
    let rerun = Ferry::spawn(&[
        "migrate",
        "-s",
        s,
        "-t",
        t,
        "--databases",
        "kept",
        "-j",
        "1",
        "--max-replication-lag",
        "0",
        "--stop-replication",
    ]);
    std::thread::sleep(Duration::from_secs(3));
    let (done, errors) = app.finish();
    let (status, log) = rerun.wait(Duration::from_secs(240));
    assert!(status.success(), "{log}");
    let warning = log
        .lines()
        .find(|l| l.contains("WARNING: resuming: the slot retains"))
        .unwrap_or_else(|| panic!("no warning before resuming:\n{log}"));
    assert!(
        warning.contains("kept since the slot was last read"),
        "{warning}"
    );
    let resumed_at = log
        .find("resuming streaming from")
        .unwrap_or_else(|| panic!("not resumed:\n{log}"));
    assert!(
        log.find("WARNING: resuming").unwrap() < resumed_at,
        "the warning comes before streaming resumes:\n{log}"
    );
    assert!(
        errors.is_empty(),
        "writes failed on the source: {errors:#?}"
    );
    assert!(done > 100, "{done}");
    verify_equal(src, dst, "kept", VerifyOptions::default());
    assert_eq!(source_footprint(src, "kept"), "0/0/0/0");
}

/// `cleanup` reminds of a pgferry-named slot it does not own (another migration's), and
/// leaves it.
fn cleanup_names_a_foreign_slot_and_leaves_it(src: &Cluster, s: &str, t: &str) {
    // A pgferry-named slot of some other run: cleanup names it, with what it holds, and
    // leaves it (it may be another migration's).
    psql(
        src,
        "postgres",
        "SELECT 1 FROM pg_create_logical_replication_slot('pgferry_elsewhere_slot', 'pgoutput')",
    );
    let out = pgferry(&["cleanup", "-s", s, "-t", t]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("still on the source: replication slot pgferry_elsewhere_slot (database \"postgres\", nobody streams from it)"),
        "{said}"
    );
    assert_eq!(
        psql(
            src,
            "postgres",
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pgferry_elsewhere_slot'"
        ),
        "1"
    );
    psql(
        src,
        "postgres",
        "SELECT pg_drop_replication_slot('pgferry_elsewhere_slot')",
    );
}
