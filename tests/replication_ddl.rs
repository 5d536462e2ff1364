//! Schema changes on the source while a live migration streams, under a running write load:
//! each is applied on the target at its place in the stream and streaming goes on; after the
//! cutover `verify` finds data and sequences equal and `pg_dump -s` of both is identical.

mod support;

use pgferry::conn::ConnConfig;
use pgferry::localpg::Cluster;
use pgferry::replication::{cleanup, FollowOptions, FollowOutcome};
use pgferry::verify::{verify, VerifyOptions};
use std::time::{Duration, Instant};
use support::follow::{cfg, Follower, Writer};
use support::{psql, ClusterPair};

static CLUSTERS: ClusterPair = ClusterPair::new(&[]);

fn source() -> &'static Cluster {
    CLUSTERS.source()
}

fn target() -> &'static Cluster {
    CLUSTERS.target()
}

/// The two clusters of a run: the source may be of another major.
#[derive(Clone, Copy)]
struct Pair {
    src: &'static Cluster,
    dst: &'static Cluster,
}

fn default_pair() -> Pair {
    Pair {
        src: source(),
        dst: target(),
    }
}

const SCHEMA: &str = "
    CREATE TABLE t (id int PRIMARY KEY, a text, b int, c text);
    CREATE TABLE other (id int PRIMARY KEY, v text);
    CREATE TABLE dropme (id int PRIMARY KEY);
    CREATE TABLE ren (id int PRIMARY KEY, v int);
    CREATE TABLE p (id int NOT NULL, region int NOT NULL, v text, PRIMARY KEY (id, region))
        PARTITION BY LIST (region);
    CREATE TABLE p_1 PARTITION OF p FOR VALUES IN (1);
    INSERT INTO t SELECT g, 'a' || g, g, 'c' FROM generate_series(1, 2000) g;
    INSERT INTO other SELECT g, 'o' FROM generate_series(1, 100) g;
    INSERT INTO dropme SELECT generate_series(1, 10);
    INSERT INTO ren SELECT g, g FROM generate_series(1, 100) g;
    INSERT INTO p SELECT g, 1, 'p' FROM generate_series(1, 100) g;
";

/// Waits until `query` on the target returns `want`.
async fn wait_target(pair: Pair, db: &str, query: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = psql(pair.dst, db, query);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "target still answers {got:?} to {query:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `ddl` on the source, then a marker insert, and waits for the marker on the target:
/// the change and everything before it were applied and streaming goes on.
/// One streaming run's schema changes, made one by one.
struct Steps<'a> {
    pair: Pair,
    db: &'a str,
    /// `SET ROLE ...;` when the application is not the superuser.
    role: String,
    markers: i32,
    follower: Follower,
}

impl Steps<'_> {
    /// Runs `ddl` on the source, then a marker insert, and waits for the marker on the
    /// target: the change and everything before it were applied and streaming goes on.
    async fn step(&mut self, ddl: &str) {
        let (pair, db) = (self.pair, self.db);
        psql(pair.src, db, &format!("{}{ddl}", self.role));
        self.markers += 1;
        let id = 100_000 + self.markers;
        psql(
            pair.src,
            db,
            &format!("INSERT INTO other VALUES ({id}, 'marker')"),
        );
        let query = format!("SELECT count(*) FROM other WHERE id = {id}");
        let deadline = Instant::now() + Duration::from_secs(90);
        while psql(pair.dst, db, &query) != "1" {
            if self.follower.handle.is_finished() {
                let result = (&mut self.follower.handle).await;
                panic!("streaming ended after {ddl:?}: {result:?}");
            }
            assert!(
                Instant::now() < deadline,
                "{ddl:?} never reached the target"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `pg_dump -s -N pgferry` of `db` on `cluster`, by the target's pg_dump (the newest of the
/// two).
fn schema_of(pair: Pair, cluster: &Cluster, db: &str) -> Vec<String> {
    support::fidelity::pg_dump_schema_by(pair.dst.install(), cluster, db, &["-N", "pgferry"])
}

/// Every kind of schema change of the default mode (nothing installed on the source), each
/// under the application's writes, then a stop, a resume and the cutover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_changes_follow_the_stream_without_touching_the_source() {
    let db = support::fresh_db(source(), "ddl_default");
    scenario(default_pair(), &db, false, None).await;
}

/// The default mode as users run it: on the source a REPLICATION role that owns the tables
/// (the application runs as it too), on the target a managed-service-like admin (CREATEDB,
/// CREATEROLE, member of the application's role, no superuser). `--ddl-capture`, which needs
/// a superuser on the source, is refused before anything is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_changes_follow_the_stream_as_non_superusers() {
    let roles = "DO $$ BEGIN
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ddl_owner') THEN
             CREATE ROLE ddl_owner LOGIN REPLICATION;
           END IF;
         END $$;";
    psql(source(), "postgres", roles);
    psql(target(), "postgres", roles);
    psql(
        target(),
        "postgres",
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ddl_admin') THEN
             CREATE ROLE ddl_admin LOGIN CREATEDB CREATEROLE;
             GRANT ddl_owner TO ddl_admin;
           END IF;
         END $$;",
    );
    let db = support::fresh_db(source(), "ddl_users");
    psql(
        source(),
        &db,
        &format!("ALTER DATABASE {db} OWNER TO ddl_owner; ALTER SCHEMA public OWNER TO ddl_owner;"),
    );
    let users = Users {
        source: "ddl_owner",
        target: "ddl_admin",
    };
    // Refused before anything is created.
    let src = as_user(cfg(source(), &db), users.source);
    let dst = as_user(cfg(target(), &db), users.target);
    let refused = Follower::start(
        src,
        dst,
        FollowOptions {
            ddl_capture: true,
            ..FollowOptions::default()
        },
    )
    .finish(Duration::from_secs(60))
    .await
    .unwrap_err()
    .to_string();
    assert!(
        refused.contains("--ddl-capture needs a source user that may create event triggers"),
        "{refused}"
    );
    assert_eq!(
        psql(source(), &db, "SELECT (SELECT count(*) FROM pg_publication) + (SELECT count(*) FROM pg_replication_slots \
              WHERE database = current_database())"),
        "0"
    );
    // The command line says so with exit code 3 (refused before starting).
    let src_uri = source()
        .uri(&db)
        .replace("postgres://postgres@", "postgres://ddl_owner@");
    let dst_uri = target()
        .uri(&db)
        .replace("postgres://postgres@", "postgres://ddl_admin@");
    let out = support::pgferry(&[
        "clone",
        "--follow",
        "--ddl-capture",
        "-s",
        &src_uri,
        "-t",
        &dst_uri,
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", support::output_text(&out));
    assert!(
        support::output_text(&out).contains("--ddl-capture needs a source user"),
        "{}",
        support::output_text(&out)
    );
    scenario(default_pair(), &db, false, Some(users)).await;
}

/// Non-superuser accounts of a run: the source's (REPLICATION, owns the tables, runs the
/// application) and the target's.
#[derive(Clone, Copy)]
struct Users {
    source: &'static str,
    target: &'static str,
}

fn as_user(mut c: pgferry::conn::ConnConfig, user: &str) -> pgferry::conn::ConnConfig {
    c.user = user.to_owned();
    c
}

/// The same with `--ddl-capture`: the statements themselves replayed in stream order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_changes_are_replayed_with_ddl_capture() {
    let db = support::fresh_db(source(), "ddl_capture");
    scenario(default_pair(), &db, true, None).await;
}

/// From the older majors users migrate off (each as a live source into this build's own
/// server), the default mode; from 14, the first with logical messages, `--ddl-capture` too.
async fn from_major(major: u32, capture: bool) {
    let test = format!(
        "schema_changes_from_{major}{}",
        if capture { "_captured" } else { "" }
    );
    let Some(src) = support::major_cluster(major, &test) else {
        return;
    };
    let pair = Pair { src, dst: target() };
    let db = support::fresh_db(
        src,
        &format!("ddl{major}{}", if capture { "c" } else { "" }),
    );
    scenario(pair, &db, capture, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_changes_from_12() {
    from_major(12, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_changes_from_13() {
    from_major(13, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_changes_from_14_both_modes() {
    from_major(14, false).await;
    from_major(14, true).await;
}

/// Streams `db` (with or without `--ddl-capture`) through every kind of schema change under
/// the application's writes, stops, resumes, cuts over and compares.
async fn scenario(pair: Pair, db: &str, capture: bool, users: Option<Users>) {
    let db = db.to_owned();
    // As the application: the tables' owner.
    let role = users
        .map(|u| format!("SET ROLE {};\n", u.source))
        .unwrap_or_default();
    psql(pair.src, &db, &format!("{role}{SCHEMA}"));
    let (mut src, mut dst) = (cfg(pair.src, &db), cfg(pair.dst, &db));
    if let Some(u) = users {
        src = as_user(src, u.source);
        dst = as_user(dst, u.target);
    }
    let opts = FollowOptions {
        ddl_capture: capture,
        ..FollowOptions::default()
    };
    let mut follower = Follower::start(src.clone(), dst.clone(), opts.clone());
    follower.wait_streaming().await;
    let triggers = "SELECT count(*) FROM pg_event_trigger \
                    WHERE evtname LIKE '%\\_ddl' OR evtname LIKE '%\\_ddl\\_rewrite'";
    assert_eq!(
        psql(pair.src, &db, triggers),
        if capture { "2" } else { "0" },
        "the capture's event triggers"
    );
    let writer = Writer::start(
        src.clone(),
        &[
            "UPDATE t SET b = b + 1 WHERE id = {n} % 2000 + 1",
            "INSERT INTO t (id, b) VALUES ({n} + 10000, {n})",
            "DELETE FROM t WHERE id = {n} % 2000 + 1 AND id % 97 = 0",
            "UPDATE p SET v = v || 'x' WHERE id = {n} % 100 + 1",
        ],
    );
    let mut steps = Steps {
        pair,
        db: &db,
        role,
        markers: 0,
        follower,
    };
    change_columns(&mut steps, &writer).await;
    change_tables(&mut steps, &writer).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (done, errors) = writer.finish().await;
    assert!(
        errors.is_empty(),
        "the application got {} error(s), the first: {:#?}",
        errors.len(),
        &errors[..errors.len().min(3)]
    );
    assert!(done > 100, "the application barely wrote: {done}");

    cut_over_and_compare(pair, &db, (src, dst), opts, steps.follower, triggers).await;
}

/// Every kind of column change on `t`, each at its place in the stream; the application then
/// writes the changed columns too.
async fn change_columns(steps: &mut Steps<'_>, writer: &Writer) {
    // Columns.
    steps.step("ALTER TABLE t ADD COLUMN n1 int").await;
    steps
        .step("ALTER TABLE t ADD COLUMN d1 text NOT NULL DEFAULT 'constant'")
        .await;
    steps
        .step("ALTER TABLE t ADD COLUMN v1 float8 DEFAULT random()")
        .await;
    steps
        .step("ALTER TABLE t ADD COLUMN g1 int GENERATED ALWAYS AS (id * 2) STORED")
        .await;
    steps
        .step("ALTER TABLE t ADD COLUMN i1 bigint GENERATED BY DEFAULT AS IDENTITY")
        .await;
    steps.step("ALTER TABLE t DROP COLUMN c").await;
    steps.step("ALTER TABLE t RENAME COLUMN a TO a2").await;
    steps.step("ALTER TABLE t ALTER COLUMN b TYPE bigint").await;
    steps
        .step(
            "ALTER TABLE t ALTER COLUMN n1 SET DEFAULT 0; UPDATE t SET n1 = 0 WHERE n1 IS NULL;
         ALTER TABLE t ALTER COLUMN n1 SET NOT NULL",
        )
        .await;
    steps
        .step("ALTER TABLE t ALTER COLUMN d1 DROP NOT NULL")
        .await;
    writer.add("UPDATE t SET n1 = n1 + 1, a2 = a2 || '.' WHERE id = {n} % 2000 + 1");
}

/// New (with rows, then streamed), dropped and renamed tables, an index, and partitions
/// created in place or attached.
async fn change_tables(steps: &mut Steps<'_>, writer: &Writer) {
    // Tables.
    steps
        .step(
            "CREATE TABLE newt (id int PRIMARY KEY, other_id int REFERENCES other (id), v text);
         INSERT INTO newt SELECT g, g, 'early' FROM generate_series(1, 50) g",
        )
        .await;
    writer.add("INSERT INTO newt VALUES ({n} + 1000, {n} % 100 + 1, 'streamed')");
    // The watch adds it to the publication; its rows arrive once it is copied.
    wait_target(
        steps.pair,
        steps.db,
        "SELECT to_regclass('public.newt') IS NOT NULL",
        "t",
    )
    .await;
    wait_target(steps.pair, steps.db, "SELECT count(*) >= 50 FROM newt", "t").await;
    steps.step("DROP TABLE dropme").await;
    steps
        .step("ALTER TABLE ren RENAME TO ren2; UPDATE ren2 SET v = v + 1")
        .await;
    steps.step("CREATE INDEX t_b ON t (b)").await;
    steps
        .step(
            "CREATE TABLE p_2 PARTITION OF p FOR VALUES IN (2);
         INSERT INTO p SELECT g, 2, 'two' FROM generate_series(1, 100) g",
        )
        .await;
    writer.add("UPDATE p SET v = v || 'y' WHERE id = {n} % 100 + 1 AND region = 2");
    // A table made apart, then attached as a partition.
    steps
        .step(
            "CREATE TABLE p_3 (id int NOT NULL, region int NOT NULL, v text);
         ALTER TABLE p ATTACH PARTITION p_3 FOR VALUES IN (3);
         INSERT INTO p SELECT g, 3, 'three' FROM generate_series(1, 40) g",
        )
        .await;
}

/// Stops the follower and resumes it to cut over at lag 0; then data, schema and the
/// removed capture are compared, and pgferry's objects cleaned up.
async fn cut_over_and_compare(
    pair: Pair,
    db: &str,
    (src, dst): (ConnConfig, ConnConfig),
    opts: FollowOptions,
    follower: Follower,
    triggers: &str,
) {
    // Stopped and resumed, then cut over.
    let stopped = follower.stop().await.unwrap();
    assert!(
        matches!(stopped, FollowOutcome::Stopped { .. }),
        "{stopped:?}"
    );
    let follower = Follower::start(
        src.clone(),
        dst.clone(),
        FollowOptions {
            cutover_at_lag: Some(0),
            ..opts
        },
    );
    let events = follower.events.clone();
    let outcome = follower.finish(Duration::from_secs(300)).await;
    assert!(
        matches!(outcome, Ok(FollowOutcome::CutOver { .. })),
        "{outcome:?}; events {:?}",
        events.lock().unwrap()
    );

    let report = verify(&src, &dst, &VerifyOptions::default()).await.unwrap();
    assert!(report.is_clean(), "source and target differ: {report:#?}");
    let (a, b) = (schema_of(pair, pair.src, db), schema_of(pair, pair.dst, db));
    assert!(
        a == b,
        "pg_dump -s differs: {}",
        support::fidelity::first_diff(&a, &b).unwrap_or_default()
    );
    assert_eq!(
        psql(pair.src, db, triggers),
        "0",
        "the capture is removed at cutover"
    );
    cleanup(&src, &dst, false).await.unwrap();
}
