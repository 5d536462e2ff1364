//! The live path end to end on two real clusters: publication and slot, clone under the slot's
//! snapshot, streaming apply, resume after the follower is dropped, cutover.
//!
//! The source runs with a short `wal_sender_timeout` so that a busy applier (a big transaction)
//! would lose its connection unless the stream task keeps answering.

mod support;

use pgferry::conn::{connect, ConnConfig};
use pgferry::localpg::Cluster;
use pgferry::progress::Bars;
use pgferry::replication::publication::object_names;
use pgferry::replication::{
    cleanup, follow_database, FollowError, FollowEvent, FollowOptions, FollowOutcome,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::follow::{cfg, spawn_random_writer, Follower};
use support::{psql, ClusterPair};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The source's short `wal_sender_timeout`: see the module doc.
static CLUSTERS: ClusterPair = ClusterPair::new(&[("wal_sender_timeout", "5s")]);

fn source() -> &'static Cluster {
    CLUSTERS.source()
}

fn target() -> &'static Cluster {
    CLUSTERS.target()
}

/// A follower of `db` from the source to the target cluster (see [`support::follow`]).
fn start_follower(db: &str, opts: FollowOptions) -> Follower {
    Follower::start(cfg(source(), db), cfg(target(), db), opts)
}

/// Runs a follower that cuts over at lag 0 and returns its outcome and events.
async fn cutover(db: &str) -> (FollowOutcome, Vec<String>) {
    let opts = FollowOptions {
        cutover_at_lag: Some(0),
        ..FollowOptions::default()
    };
    let follower = start_follower(db, opts);
    let events = Arc::clone(&follower.events);
    let outcome = tokio::time::timeout(Duration::from_secs(300), follower.handle)
        .await
        .expect("no cutover within 300 s")
        .unwrap()
        .unwrap_or_else(|e| panic!("follow failed: {e}"));
    let events = events.lock().unwrap().clone();
    (outcome, events)
}

async fn assert_identical(db: &str) {
    support::follow::assert_identical(source(), target(), db).await;
}

fn assert_source_clean(db: &str) {
    support::follow::assert_source_clean(source(), db);
}

/// Waits until `query` on the target returns `want`.
async fn wait_target(db: &str, query: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = psql(target(), db, query);
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

const WORKLOAD_SCHEMA: &str = "
    CREATE TABLE accounts (id serial PRIMARY KEY, balance int NOT NULL, note text);
    CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, account int,
                         payload jsonb, at timestamptz DEFAULT now());
    CREATE TABLE nopk (a int, b text);
    ALTER TABLE nopk REPLICA IDENTITY FULL;
    CREATE TABLE parted (id int, region int, v text, PRIMARY KEY (id, region))
        PARTITION BY LIST (region);
    CREATE TABLE parted_0 PARTITION OF parted FOR VALUES IN (0);
    CREATE TABLE parted_1 PARTITION OF parted FOR VALUES IN (1);
    CREATE TABLE parted_2 PARTITION OF parted FOR VALUES IN (2);
    INSERT INTO accounts (balance, note) SELECT g, 'acct ' || g FROM generate_series(1, 20000) g;
    INSERT INTO nopk SELECT g % 50, 'dup ' || (g % 50) FROM generate_series(1, 400) g;
    INSERT INTO parted SELECT g, g % 3, 'p' || g FROM generate_series(1, 3000) g;
";

/// Small random transactions on every table of [`WORKLOAD_SCHEMA`] until `stop`.
fn spawn_writer(db: &str, seed: u64, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    spawn_random_writer(cfg(source(), db), seed, stop, Duration::ZERO, |random| {
        let mut sql = String::new();
        for _ in 0..(1 + random.below(4)) {
            let id = 1 + random.below(25000);
            sql.push_str(&match random.below(8) {
                0 => format!(
                    "INSERT INTO accounts (balance, note) VALUES ({}, 'new');",
                    random.below(1000)
                ),
                1 => format!("UPDATE accounts SET balance = balance + 1 WHERE id = {id};"),
                2 => format!("DELETE FROM accounts WHERE id = {id};"),
                3 => format!(
                    "INSERT INTO events (account, payload) VALUES ({id}, '{{\"k\": {id}}}');"
                ),
                4 => format!("INSERT INTO nopk VALUES ({}, 'dup {}');", id % 50, id % 50),
                5 => format!(
                    "DELETE FROM nopk WHERE ctid = (SELECT ctid FROM nopk WHERE a = {} LIMIT 1);",
                    id % 50
                ),
                6 => format!(
                    "UPDATE parted SET region = (region + 1) % 3, v = v || '+' WHERE id = {};",
                    id % 3000
                ),
                _ => format!("UPDATE nopk SET b = b || '.' WHERE a = {};", id % 50),
            });
        }
        sql
    })
}

/// Writes run during the copy and the streaming; the follower is dropped mid-stream (as in a
/// crash) while they go on; a rerun resumes without a copy and cuts over at lag 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_crash_resume_and_cutover() {
    let db = support::fresh_db(source(), "follow_load");
    psql(source(), &db, WORKLOAD_SCHEMA);
    let stop = Arc::new(AtomicBool::new(false));
    let writers = [
        spawn_writer(&db, 7, Arc::clone(&stop)),
        spawn_writer(&db, 11, Arc::clone(&stop)),
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut follower = start_follower(&db, FollowOptions::default());
    follower.wait_streaming().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A crash: the future is dropped wherever it is.
    follower.handle.abort();
    let _ = follower.handle.await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Resume while the writes go on, then stop gracefully.
    let mut follower = start_follower(&db, FollowOptions::default());
    follower.wait_streaming().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for w in writers {
        total += w.await.unwrap();
    }
    assert!(total > 50, "the workload ran only {total} transactions");
    let events = Arc::clone(&follower.events);
    assert!(matches!(
        follower.stop().await.unwrap(),
        FollowOutcome::Stopped { .. }
    ));
    assert!(
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.starts_with("Resuming")),
        "the rerun did not resume: {:?}",
        events.lock().unwrap()
    );

    let (outcome, events) = cutover(&db).await;
    assert!(
        matches!(outcome, FollowOutcome::CutOver { .. }),
        "{outcome:?}"
    );
    assert!(
        events.iter().any(|e| e.starts_with("Resuming")),
        "{events:?}"
    );
    assert!(
        !events.iter().any(|e| e.starts_with("Cloned")),
        "{events:?}"
    );
    assert_identical(&db).await;
    assert_eq!(
        psql(source(), &db, "SELECT last_value FROM accounts_id_seq"),
        psql(target(), &db, "SELECT last_value FROM accounts_id_seq"),
    );
    assert_source_clean(&db);
}

/// The kinds of change that need care: unchanged TOAST, FULL identity with identical rows,
/// TRUNCATE, a row moving between partitions, quoted names, NULLs, key updates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_kinds_arrive() {
    let db = support::fresh_db(source(), "follow_kinds");
    psql(
        source(),
        &db,
        "CREATE SCHEMA \"Odd Schema\";
         CREATE TABLE \"Odd Schema\".\"Doc-s\" (id int PRIMARY KEY, title text, body text, n int);
         ALTER TABLE \"Odd Schema\".\"Doc-s\" ALTER body SET STORAGE EXTERNAL;
         INSERT INTO \"Odd Schema\".\"Doc-s\"
           SELECT 1, 'big', string_agg(md5(g::text), ''), 0 FROM generate_series(1, 400) g;
         CREATE TABLE twins (a int, b text) ;
         ALTER TABLE twins REPLICA IDENTITY FULL;
         INSERT INTO twins VALUES (1, 'same'), (1, 'same'), (2, NULL);
         CREATE TABLE gone (id int PRIMARY KEY);
         INSERT INTO gone SELECT generate_series(1, 100);
         CREATE TABLE parted (id int, region int, v text, PRIMARY KEY (id, region))
             PARTITION BY LIST (region);
         CREATE TABLE parted_a PARTITION OF parted FOR VALUES IN (1);
         CREATE TABLE parted_b PARTITION OF parted FOR VALUES IN (2);
         INSERT INTO parted VALUES (1, 1, 'one'), (2, 2, 'two');
         CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
         CREATE TABLE typed (id int PRIMARY KEY, m mood, ms mood[], j json, p point, t timestamptz);",
    );
    let mut follower = start_follower(&db, FollowOptions::default());
    follower.wait_streaming().await;
    psql(
        source(),
        &db,
        "UPDATE \"Odd Schema\".\"Doc-s\" SET n = n + 1, title = 'changed' WHERE id = 1;
         UPDATE \"Odd Schema\".\"Doc-s\" SET id = 10 WHERE id = 1;
         INSERT INTO \"Odd Schema\".\"Doc-s\" VALUES (2, NULL, NULL, NULL);
         DELETE FROM twins WHERE ctid = (SELECT ctid FROM twins WHERE a = 1 LIMIT 1);
         UPDATE twins SET b = 'was null' WHERE a = 2;
         TRUNCATE gone;
         INSERT INTO gone VALUES (7);
         UPDATE parted SET region = 2 WHERE id = 1;
         INSERT INTO typed VALUES (1, 'happy', '{sad,ok}', '{\"a\": [1, 2]}', '(1,2)', '2024-02-29 12:00+02');
         UPDATE typed SET m = 'ok', p = '(3,4)' WHERE id = 1;",
    );
    wait_target(&db, "SELECT count(*) FROM typed WHERE m = 'ok'", "1").await;
    assert_eq!(
        psql(
            target(),
            &db,
            "SELECT id, title, n, length(body) FROM \"Odd Schema\".\"Doc-s\" ORDER BY id"
        ),
        "2|||\n10|changed|1|12800"
    );
    assert_eq!(
        psql(target(), &db, "SELECT a, b FROM twins ORDER BY a"),
        "1|same\n2|was null"
    );
    assert_eq!(psql(target(), &db, "SELECT id FROM gone"), "7");
    assert_eq!(
        psql(
            target(),
            &db,
            "SELECT tableoid::regclass, id, region FROM parted ORDER BY id"
        ),
        "parted_b|1|2\nparted_b|2|2"
    );
    assert!(matches!(
        follower.stop().await.unwrap(),
        FollowOutcome::Stopped { .. }
    ));
    let (outcome, _) = cutover(&db).await;
    assert!(matches!(outcome, FollowOutcome::CutOver { .. }));
    assert_identical(&db).await;
    assert_source_clean(&db);
}

/// A table whose UPDATE/DELETE would fail once published is refused before anything is
/// created; with `replica_identity_full` it is changed and followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_without_identity_is_refused_then_fixed_on_request() {
    let db = support::fresh_db(source(), "follow_noident");
    psql(
        source(),
        &db,
        "CREATE TABLE ok (id int PRIMARY KEY);
         CREATE TABLE \"Log Lines\" (at timestamptz, line text);
         INSERT INTO \"Log Lines\" VALUES (now(), 'a'), (now(), 'a');",
    );
    let follower = start_follower(&db, FollowOptions::default());
    let err = follower.handle.await.unwrap().unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("public.\"Log Lines\"") && message.contains("--replica-identity-full"),
        "{message}"
    );
    assert_source_clean(&db);
    assert_eq!(
        psql(
            source(),
            &db,
            "SELECT relreplident FROM pg_class WHERE relname = 'Log Lines'"
        ),
        "d"
    );
    assert_eq!(
        psql(
            target(),
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{db}'")
        ),
        "0",
        "the target database was created although the source was refused"
    );

    let mut follower = start_follower(
        &db,
        FollowOptions {
            replica_identity_full: true,
            ..FollowOptions::default()
        },
    );
    follower.wait_streaming().await;
    assert_eq!(
        psql(
            source(),
            &db,
            "SELECT relreplident FROM pg_class WHERE relname = 'Log Lines'"
        ),
        "f"
    );
    psql(
        source(),
        &db,
        "DELETE FROM \"Log Lines\" WHERE ctid = (SELECT min(ctid) FROM \"Log Lines\");",
    );
    wait_target(&db, "SELECT count(*) FROM \"Log Lines\"", "1").await;
    assert!(matches!(
        follower.stop().await.unwrap(),
        FollowOutcome::Stopped { .. }
    ));
    let (outcome, _) = cutover(&db).await;
    assert!(matches!(outcome, FollowOutcome::CutOver { .. }));
    assert_identical(&db).await;
}

/// One source transaction of many rows: applied as one target transaction while the stream
/// task keeps the server (wal_sender_timeout = 5 s) satisfied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_big_transaction() {
    const ROWS: u64 = 1_000_000;
    let db = support::fresh_db(source(), "follow_big");
    psql(
        source(),
        &db,
        "CREATE TABLE big (id bigint PRIMARY KEY, v text, n numeric);",
    );
    let mut follower = start_follower(&db, FollowOptions::default());
    follower.wait_streaming().await;
    let started = Instant::now();
    psql(
        source(),
        &db,
        &format!(
            "INSERT INTO big SELECT g, 'row ' || g, g / 7.0 FROM generate_series(1, {ROWS}) g"
        ),
    );
    let committed = started.elapsed();
    wait_until_count(&db, "big", ROWS, Duration::from_secs(600)).await;
    let applied = started.elapsed();
    eprintln!(
        "one_big_transaction: {ROWS} rows committed on the source in {:.1}s, on the target after {:.1}s \
         ({:.0} rows/s end to end)",
        committed.as_secs_f64(),
        applied.as_secs_f64(),
        ROWS as f64 / applied.as_secs_f64()
    );
    let events = Arc::clone(&follower.events);
    assert!(matches!(
        follower.stop().await.unwrap(),
        FollowOutcome::Stopped { .. }
    ));
    assert!(
        !events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.starts_with("Retrying")),
        "the stream was dropped during the big transaction: {:?}",
        events.lock().unwrap()
    );
    let (outcome, _) = cutover(&db).await;
    assert!(matches!(outcome, FollowOutcome::CutOver { .. }));
    assert_identical(&db).await;
}

async fn wait_until_count(db: &str, table: &str, want: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let got: u64 = psql(target(), db, &format!("SELECT count(*) FROM {table}"))
            .parse()
            .unwrap();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{table}: {got} of {want} rows after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A slot without the target's progress row means an earlier copy did not finish: refuse,
/// and say how to clean up; `cleanup` removes exactly our objects, twice without error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_without_progress_is_refused_and_cleanup_is_idempotent() {
    let db = support::fresh_db(source(), "follow_orphan");
    psql(source(), &db, "CREATE TABLE t (id int PRIMARY KEY);");
    let names = object_names(&db);
    psql(
        source(),
        &db,
        &format!(
            "SELECT pg_create_logical_replication_slot('{}', 'pgoutput');
             CREATE PUBLICATION {} FOR ALL TABLES;",
            names.slot, names.publication
        ),
    );
    let follower = start_follower(&db, FollowOptions::default());
    let err = follower.handle.await.unwrap().unwrap_err();
    assert!(
        matches!(err, FollowError::SlotWithoutProgress { .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&names.slot), "{err}");
    let src = cfg(source(), &db);
    let dst = cfg(target(), &db);
    cleanup(&src, &dst, false).await.unwrap();
    assert_source_clean(&db);
    cleanup(&src, &dst, false).await.unwrap();
}

/// A schema change the target cannot reproduce (a type change whose USING expression the
/// stream does not carry, and the target's cast refuses the data) stops apply with a message
/// naming the statement, the table and the position; once the user made the target's table
/// match, a rerun resumes from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_change_the_target_refuses_stops_and_resumes_once_fixed() {
    let db = support::fresh_db(source(), "follow_drift");
    psql(
        source(),
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, a text); INSERT INTO t VALUES (1, 'x');",
    );
    let mut follower = start_follower(&db, FollowOptions::default());
    follower.wait_streaming().await;
    psql(
        source(),
        &db,
        "ALTER TABLE t ALTER COLUMN a TYPE int USING length(a); INSERT INTO t VALUES (2, 7);",
    );
    let err = tokio::time::timeout(Duration::from_secs(60), follower.handle)
        .await
        .expect("apply did not stop")
        .unwrap()
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("ALTER TABLE public.t ALTER COLUMN a TYPE integer")
            && message.contains("source transaction at 0/"),
        "{message}"
    );
    psql(
        target(),
        &db,
        "ALTER TABLE t ALTER COLUMN a TYPE int USING length(a)",
    );
    let (outcome, _) = cutover(&db).await;
    assert!(
        matches!(outcome, FollowOutcome::CutOver { .. }),
        "{outcome:?}"
    );
    assert_identical(&db).await;
    assert_eq!(
        psql(
            target(),
            &db,
            "SELECT string_agg(a::text, ',' ORDER BY id) FROM t"
        ),
        "1,7"
    );
}

/// The same backlog drained by pgferry and by a native subscription on the same target
/// cluster: 2,000 transactions of 100 inserts, then 1,000 of 100 updates. Run by hand:
/// `cargo test --test replication_apply -- --ignored --nocapture drain_rate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: prints drain rates, asserts only that both drained"]
async fn drain_rate_vs_native_subscription() {
    const TABLE: &str = "CREATE TABLE bench (id bigint PRIMARY KEY, v text, n int);";
    const BACKLOG: &str = "
        DO $$ BEGIN
          FOR t IN 0..1999 LOOP
            INSERT INTO bench SELECT g, md5(g::text), 0 FROM generate_series(t * 100 + 1, t * 100 + 100) g;
            COMMIT;
          END LOOP;
          FOR t IN 0..999 LOOP
            UPDATE bench SET n = n + 1 WHERE id BETWEEN t * 100 + 1 AND t * 100 + 100;
            COMMIT;
          END LOOP;
        END $$;";
    const DONE: &str = "SELECT count(*) = 200000 AND sum(n) = 100000 FROM bench";

    async fn wait_done(db: &str) -> Duration {
        let started = Instant::now();
        while psql(target(), db, DONE) != "t" {
            assert!(
                started.elapsed() < Duration::from_secs(900),
                "{db} did not drain"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        started.elapsed()
    }

    // pgferry: clone the empty table, stop, build the backlog, drain it.
    let ours = support::fresh_db(source(), "drain_ours");
    psql(source(), &ours, TABLE);
    let mut follower = start_follower(&ours, FollowOptions::default());
    follower.wait_streaming().await;
    follower.stop().await.unwrap();
    psql(source(), &ours, BACKLOG);
    let follower = start_follower(&ours, FollowOptions::default());
    let ours_time = wait_done(&ours).await;
    follower.stop().await.unwrap();
    cleanup(&cfg(source(), &ours), &cfg(target(), &ours), false)
        .await
        .unwrap();

    // Native: publication and slot first, backlog, then a subscription that starts draining.
    let native = support::fresh_db(source(), "drain_native");
    psql(source(), &native, TABLE);
    psql(target(), "postgres", &format!("CREATE DATABASE {native}"));
    psql(target(), &native, TABLE);
    psql(
        source(),
        &native,
        &format!(
            "CREATE PUBLICATION p_{native} FOR TABLE bench;
             SELECT pg_create_logical_replication_slot('s_{native}', 'pgoutput');"
        ),
    );
    psql(source(), &native, BACKLOG);
    let started = Instant::now();
    psql(
        target(),
        &native,
        &format!(
            "CREATE SUBSCRIPTION sub_{native} CONNECTION 'host=127.0.0.1 port={} user=postgres dbname={native}' \
             PUBLICATION p_{native} WITH (create_slot = false, slot_name = 's_{native}', copy_data = false)",
            source().port()
        ),
    );
    wait_done(&native).await;
    let native_time = started.elapsed();
    psql(
        target(),
        &native,
        &format!("DROP SUBSCRIPTION sub_{native}"),
    );

    let changes = 300_000f64;
    eprintln!(
        "drain of 3,000 transactions / 300,000 row changes: pgferry {:.1}s ({:.0} changes/s), \
         native subscription {:.1}s ({:.0} changes/s)",
        ours_time.as_secs_f64(),
        changes / ours_time.as_secs_f64(),
        native_time.as_secs_f64(),
        changes / native_time.as_secs_f64()
    );
}

/// A source user who is not a superuser gets a FOR TABLE publication listing its tables
/// (partitioned ones through their root), and streaming works the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_superuser_source_publishes_its_tables() {
    let db = support::fresh_db(source(), "follow_owner");
    psql(
        source(),
        &db,
        &format!(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rep_owner') THEN
                 CREATE ROLE rep_owner LOGIN REPLICATION;
               END IF;
             END $$;
             ALTER DATABASE {db} OWNER TO rep_owner;
             ALTER SCHEMA public OWNER TO rep_owner;
             SET ROLE rep_owner;
             CREATE TABLE plain (id int PRIMARY KEY, v text);
             CREATE TABLE parted (id int, region int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
             CREATE TABLE parted_1 PARTITION OF parted FOR VALUES IN (1);
             CREATE TABLE parted_2 PARTITION OF parted FOR VALUES IN (2);
             INSERT INTO plain VALUES (1, 'a');
             INSERT INTO parted VALUES (1, 1);"
        ),
    );
    // Roles are not part of a database clone.
    psql(
        target(),
        "postgres",
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rep_owner') THEN
             CREATE ROLE rep_owner LOGIN REPLICATION;
           END IF;
         END $$;",
    );
    let uri = source()
        .uri(&db)
        .replace("postgres://postgres@", "postgres://rep_owner@");
    let src = ConnConfig::from_conn_str(&uri).unwrap();
    let dst = cfg(target(), &db);
    let (stop, stop_rx) = watch::channel(false);
    let streaming = Arc::new(AtomicBool::new(false));
    let st = Arc::clone(&streaming);
    let (s2, d2) = (src.clone(), dst.clone());
    let handle = tokio::spawn(async move {
        let observer = move |event: FollowEvent| {
            if matches!(event, FollowEvent::Streaming { .. }) {
                st.store(true, Ordering::SeqCst);
            }
        };
        follow_database(
            &s2,
            &d2,
            &FollowOptions::default(),
            &Bars::new(),
            &observer,
            stop_rx,
        )
        .await
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    while !streaming.load(Ordering::SeqCst) {
        if handle.is_finished() {
            panic!("follow ended: {:?}", handle.await.unwrap());
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let names = object_names(&db);
    assert_eq!(
        psql(
            source(),
            &db,
            &format!(
                "SELECT puballtables, pubviaroot FROM pg_publication WHERE pubname = '{}';
                 SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_publication_tables
                 WHERE pubname = '{}'",
                names.publication, names.publication
            )
        ),
        "f|t\nparted,plain"
    );
    psql(
        source(),
        &db,
        "SET ROLE rep_owner; UPDATE plain SET v = 'b'; UPDATE parted SET region = 2;",
    );
    wait_target(&db, "SELECT v FROM plain", "b").await;
    wait_target(&db, "SELECT tableoid::regclass FROM parted", "parted_2").await;
    let _ = stop.send(true);
    assert!(matches!(
        handle.await.unwrap().unwrap(),
        FollowOutcome::Stopped { .. }
    ));
    cleanup(&src, &dst, false).await.unwrap();
}

/// The slot's confirmed position may be behind what the target committed (a crash before the
/// confirmation went out). Made deterministic by putting back a copy of the slot taken
/// earlier: nothing may apply twice (the increments and keyless inserts below would show it),
/// and what came after must still arrive before the cutover. Streaming starts at
/// max(stored, confirmed); the applier's own skip of resent transactions is tested directly in
/// `applier_skips_transactions_before_the_stored_position`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resent_transactions_are_skipped() {
    let db = support::fresh_db(source(), "follow_resend");
    psql(
        source(),
        &db,
        "CREATE TABLE acc (id int PRIMARY KEY, n int);
         INSERT INTO acc VALUES (1, 0), (2, 0);
         CREATE TABLE log (a int, b text);
         ALTER TABLE log REPLICA IDENTITY FULL;",
    );
    let names = object_names(&db);
    let mut follower = start_follower(&db, FollowOptions::default());
    follower.wait_streaming().await;
    follower.stop().await.unwrap();
    psql(
        source(),
        &db,
        &format!(
            "SELECT pg_copy_logical_replication_slot('{}', 'backup_{db}')",
            names.slot
        ),
    );

    psql(
        source(),
        &db,
        "INSERT INTO log VALUES (1, 'x'), (1, 'x');
         UPDATE acc SET n = n + 1;
         DELETE FROM log WHERE ctid = (SELECT min(ctid) FROM log);
         UPDATE acc SET n = n + 10 WHERE id = 2;",
    );
    let mut follower = start_follower(&db, FollowOptions::default());
    follower.wait_streaming().await;
    wait_target(
        &db,
        "SELECT string_agg(n::text, ',' ORDER BY id) FROM acc",
        "1,11",
    )
    .await;
    follower.stop().await.unwrap();

    // Back to the earlier position: the server will send all of the above again.
    psql(
        source(),
        &db,
        &format!(
            "SELECT pg_drop_replication_slot('{slot}');
             SELECT pg_copy_logical_replication_slot('backup_{db}', '{slot}');
             SELECT pg_drop_replication_slot('backup_{db}');
             INSERT INTO log VALUES (2, 'after');",
            slot = names.slot
        ),
    );
    let (outcome, _) = cutover(&db).await;
    assert!(matches!(outcome, FollowOutcome::CutOver { .. }));
    assert_eq!(
        psql(
            target(),
            &db,
            "SELECT string_agg(n::text, ',' ORDER BY id) FROM acc"
        ),
        "1,11"
    );
    assert_eq!(
        psql(target(), &db, "SELECT a, b FROM log ORDER BY a"),
        "1|x\n2|after"
    );
    assert_identical(&db).await;
}

/// The applier itself against a real target: transactions whose commit lies before the stored
/// position are skipped (the server may resend them), later ones are applied, and the
/// position is stored with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applier_skips_transactions_before_the_stored_position() {
    use bytes::Bytes;
    use pgferry::replication::apply::ApplyItem;
    use pgferry::replication::pgoutput::{
        Begin, Column, Commit, Insert, Message, Relation, ReplicaIdentity, Tuple, Value,
    };
    use pgferry::replication::Lsn;

    let (db, mut applier, applied_rx) = test_applier(
        "applier_skip",
        "CREATE TABLE t (id int PRIMARY KEY, v text);",
    )
    .await;
    let relation = Relation {
        xid: None,
        id: 42,
        namespace: "public".into(),
        name: "t".into(),
        replica_identity: ReplicaIdentity::Default,
        columns: vec![
            Column {
                flags: 1,
                name: "id".into(),
                type_oid: 23,
                type_modifier: -1,
            },
            Column {
                flags: 0,
                name: "v".into(),
                type_oid: 25,
                type_modifier: -1,
            },
        ],
    };
    let txn = |final_lsn: u64, end_lsn: u64, id: &'static str| {
        vec![
            Message::Begin(Begin {
                final_lsn,
                commit_time: 0,
                xid: 1,
            }),
            Message::Insert(Insert {
                xid: None,
                relation: 42,
                new: Tuple(vec![
                    Value::Text(Bytes::from_static(id.as_bytes())),
                    Value::Text(Bytes::from_static(b"x")),
                ]),
            }),
            Message::Commit(Commit {
                flags: 0,
                commit_lsn: final_lsn,
                end_lsn,
                commit_time: 0,
            }),
        ]
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(100);
    tx.send(vec![ApplyItem::Message(Message::Relation(relation))])
        .await
        .unwrap();
    // Applied before (ends at 0x1000 exactly), then two new ones.
    for m in txn(0x0f00, 0x0f40, "1")
        .into_iter()
        .chain(txn(0x0fc0, 0x1000, "2"))
        .chain(txn(0x1000, 0x1040, "3"))
        .chain(txn(0x1100, 0x1140, "4"))
    {
        tx.send(vec![ApplyItem::Message(m)]).await.unwrap();
    }
    drop(tx);
    applier.run(&mut rx).await.unwrap();
    assert_eq!(
        psql(
            target(),
            &db,
            "SELECT string_agg(id::text, ',' ORDER BY id) FROM t"
        ),
        "3,4"
    );
    assert_eq!(
        psql(
            target(),
            &db,
            "SELECT lsn FROM pgferry.apply_progress WHERE slot = 's'"
        ),
        "0/1140"
    );
    assert_eq!(*applied_rx.borrow(), Lsn(0x1140));
    assert_eq!(applier.stats.skipped_transactions, 2);
}

/// pgbench (TPC-B-like, 4 clients) running through the copy and the streaming, then a
/// cutover. `pgbench_history` has no key: it gets REPLICA IDENTITY FULL on request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_during_copy_and_streaming() {
    let db = support::fresh_db(source(), "follow_pgbench");
    let pgbench = support::tool(&support::install(), "pgbench");
    let port = source().port().to_string();
    let base = [
        "-h",
        source().host(),
        "-p",
        &port,
        "-U",
        source().superuser(),
    ];
    let init = std::process::Command::new(&pgbench)
        .args(base)
        .args(["-i", "-q", "-s", "1", &db])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let bench = std::process::Command::new(&pgbench)
        .args(base)
        .args(["-c", "4", "-j", "2", "-T", "10", "-n", &db])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut follower = start_follower(
        &db,
        FollowOptions {
            replica_identity_full: true,
            ..FollowOptions::default()
        },
    );
    follower.wait_streaming().await;
    let out = tokio::task::spawn_blocking(move || bench.wait_with_output().unwrap())
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let history: u64 = psql(source(), &db, "SELECT count(*) FROM pgbench_history")
        .parse()
        .unwrap();
    assert!(history > 100, "pgbench ran only {history} transactions");
    assert!(matches!(
        follower.stop().await.unwrap(),
        FollowOutcome::Stopped { .. }
    ));
    let (outcome, _) = cutover(&db).await;
    assert!(matches!(outcome, FollowOutcome::CutOver { .. }));
    assert_identical(&db).await;
    eprintln!(
        "pgbench_during_copy_and_streaming: {history} pgbench transactions replicated; {}",
        report.lines().find(|l| l.starts_with("tps")).unwrap_or("")
    );
}

/// Ctrl-C during the copy: the copy cannot be resumed, so the slot and publication are
/// removed again and the error says what state the target is in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_during_the_copy_removes_the_slot() {
    let db = support::fresh_db(source(), "follow_interrupt");
    psql(
        source(),
        &db,
        "CREATE TABLE big (id int PRIMARY KEY, v text);
         INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 1000000) g;",
    );
    let follower = start_follower(&db, FollowOptions::default());
    let names = object_names(&db);
    let deadline = Instant::now() + Duration::from_secs(60);
    while psql(
        source(),
        &db,
        &format!(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}'",
            names.slot
        ),
    ) != "1"
    {
        assert!(Instant::now() < deadline && !follower.handle.is_finished());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let err = follower.stop().await.unwrap_err();
    assert!(matches!(err, FollowError::Interrupted), "{err}");
    assert_source_clean(&db);
}

/// Values COPY's text format would misread unless escaped (tab, newline, CR, backslash, `\N`,
/// `\.`), NULLs, non-ASCII, bytea and arrays, inserted in runs long enough to go through COPY:
/// once with a text stream (a user-defined type in the database turns binary off) and once
/// with a binary stream. One big transaction, then 1k-row transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_runs_round_trip_through_copy() {
    const SCHEMA: &str = "CREATE TABLE odd (id int PRIMARY KEY, t text, b bytea, a text[], \
                          j jsonb, n numeric, ts timestamptz, c char(3));";
    const ROWS: &str = "SELECT g,
          CASE g % 7 WHEN 0 THEN NULL WHEN 1 THEN E'tab\\there' WHEN 2 THEN E'new\\nline\\r\\n'
                     WHEN 3 THEN E'back\\\\slash \\\\N \\\\.' WHEN 4 THEN 'ünïcødé 😀 ' || g
                     WHEN 5 THEN E'\\\\.' ELSE '' END,
          CASE WHEN g % 5 = 0 THEN NULL ELSE decode(md5(g::text) || '5c090a0d', 'hex') END,
          ARRAY[E'x\\\\y', 'a\"b', NULL, E'\\t'],
          jsonb_build_object('k', E'a\\tb\\\\c', 'n', g),
          g / 3.0, '2024-02-29 12:00+02'::timestamptz + g * interval '1 s',
          CASE WHEN g % 2 = 0 THEN E'\\\\' END";
    for (name, binary) in [("copy_text", false), ("copy_bin", true)] {
        let db = support::fresh_db(source(), name);
        psql(source(), &db, SCHEMA);
        if !binary {
            psql(
                source(),
                &db,
                "CREATE TYPE mood AS ENUM ('ok'); CREATE TABLE typed (id int PRIMARY KEY, m mood);",
            );
        }
        let mut follower = start_follower(&db, FollowOptions::default());
        follower.wait_streaming().await;
        psql(
            source(),
            &db,
            &format!("INSERT INTO odd {ROWS} FROM generate_series(1, 20000) g"),
        );
        psql(
            source(),
            &db,
            &format!(
                "DO $$ BEGIN FOR t IN 0..19 LOOP
                   INSERT INTO odd {} FROM generate_series(20001 + t * 1000, 21000 + t * 1000) g;
                   COMMIT;
                 END LOOP; END $$;",
                ROWS
            ),
        );
        wait_until_count(&db, "odd", 40_000, Duration::from_secs(300)).await;
        let events = Arc::clone(&follower.events);
        assert!(matches!(
            follower.stop().await.unwrap(),
            FollowOutcome::Stopped { .. }
        ));
        let want = format!("binary: {binary}");
        assert!(
            events
                .lock()
                .unwrap()
                .iter()
                .any(|e| e.starts_with("Streaming") && e.contains(&want)),
            "{name}: not streamed with {want}: {:?}",
            events.lock().unwrap()
        );
        let (outcome, _) = cutover(&db).await;
        assert!(matches!(outcome, FollowOutcome::CutOver { .. }));
        assert_identical(&db).await;
        // Not only verify's checksums: the tricky values themselves.
        let probe =
            "SELECT string_agg(md5(coalesce(t, '<null>') || coalesce(encode(b, 'hex'), '') \
                     || a::text || j::text || coalesce(c, '-')), '' ORDER BY id) FROM odd";
        assert_eq!(psql(target(), &db, probe), psql(source(), &db, probe));
    }
}

/// The applier alone: a long run of inserts goes through COPY (counted), a short one through
/// INSERT, both in the right order around an update, text and binary values alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applier_copies_long_insert_runs() {
    use bytes::Bytes;
    use pgferry::replication::apply::ApplyItem;
    use pgferry::replication::pgoutput::{
        Begin, Column, Commit, Insert, Message, Relation, ReplicaIdentity, Tuple, Update, Value,
    };

    let (db, mut applier, _applied_rx) = test_applier(
        "applier_copy",
        "CREATE TABLE t (id int PRIMARY KEY, v text);",
    )
    .await;
    let column = |name: &str, flags: u8, type_oid: u32| Column {
        flags,
        name: name.into(),
        type_oid,
        type_modifier: -1,
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(10_000);
    tx.send(vec![ApplyItem::Message(Message::Relation(Relation {
        xid: None,
        id: 42,
        namespace: "public".into(),
        name: "t".into(),
        replica_identity: ReplicaIdentity::Default,
        columns: vec![column("id", 1, 23), column("v", 0, 25)],
    }))])
    .await
    .unwrap();
    let text_row = |id: i32| {
        Message::Insert(Insert {
            xid: None,
            relation: 42,
            new: Tuple(vec![
                Value::Text(Bytes::from(id.to_string())),
                if id % 10 == 0 {
                    Value::Null
                } else {
                    Value::Text(Bytes::from(format!("r\t{id}\\\n")))
                },
            ]),
        })
    };
    let binary_row = |id: i32| {
        Message::Insert(Insert {
            xid: None,
            relation: 42,
            new: Tuple(vec![
                Value::Binary(Bytes::copy_from_slice(&id.to_be_bytes())),
                Value::Binary(Bytes::from(format!("b{id}"))),
            ]),
        })
    };
    let mut messages = vec![Message::Begin(Begin {
        final_lsn: 0x2000,
        commit_time: 0,
        xid: 1,
    })];
    messages.extend((1..=500).map(text_row));
    // An update of a row of the run: must see the COPY's rows.
    messages.push(Message::Update(Update {
        xid: None,
        relation: 42,
        old: None,
        new: Tuple(vec![
            Value::Text(Bytes::from_static(b"7")),
            Value::Text(Bytes::from_static(b"updated")),
        ]),
    }));
    messages.extend((501..=505).map(text_row));
    messages.push(Message::Update(Update {
        xid: None,
        relation: 42,
        old: None,
        new: Tuple(vec![
            Value::Text(Bytes::from_static(b"503")),
            Value::Text(Bytes::from_static(b"updated")),
        ]),
    }));
    messages.extend((506..=1000).map(binary_row));
    messages.push(Message::Commit(Commit {
        flags: 0,
        commit_lsn: 0x2000,
        end_lsn: 0x2040,
        commit_time: 0,
    }));
    for m in messages {
        tx.send(vec![ApplyItem::Message(m)]).await.unwrap();
    }
    drop(tx);
    applier.run(&mut rx).await.unwrap();
    assert_eq!(applier.stats.copied_rows, 500 + 495);
    assert_eq!(
        psql(
            target(),
            &db,
            "SELECT count(*), count(v), sum(id), \
                    sum(CASE WHEN v = E'r\\t' || id || E'\\\\\\n' THEN 1 END), \
                    sum(CASE WHEN v = 'b' || id THEN 1 END), \
                    (SELECT string_agg(v, ',') FROM t WHERE id IN (7, 503)) FROM t"
        ),
        "1000|950|500500|453|495|updated,updated"
    );
    assert_eq!(
        psql(
            target(),
            &db,
            "SELECT lsn FROM pgferry.apply_progress WHERE slot = 's'"
        ),
        "0/2040"
    );
}

/// The applier alone: repeated updates of one row inside one target transaction are folded
/// into its last values (hot rows would otherwise pile up row versions), and everything that
/// must keep its order does: an update leaving an unchanged TOAST value out, a delete and
/// re-insert of a key, a key change, a second table in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applier_folds_repeated_updates_of_a_row() {
    let (db, mut applier, _applied_rx) = test_applier(
        "applier_fold",
        "CREATE TABLE t (id int PRIMARY KEY, a int, b text);
         INSERT INTO t SELECT g, 0, 'b' || g FROM generate_series(1, 5) g;
         CREATE TABLE u (id int PRIMARY KEY, n int);
         INSERT INTO u VALUES (1, 0);",
    )
    .await;
    let (messages, lsn) = fold_messages();
    tx_all(&mut applier, messages).await;
    assert!(
        applier.stats.merged_updates >= 200,
        "updates folded: {}",
        applier.stats.merged_updates
    );
    assert_eq!(applier.stats.target_commits, 1);
    assert_eq!(
        psql(
            target(),
            &db,
            "SELECT string_agg(id || ':' || a || ':' || b, ' ' ORDER BY id) FROM t"
        ),
        "1:1001:last 2:-100:two 3:32:again2 5:0:b5 40:42:moved2"
    );
    assert_eq!(psql(target(), &db, "SELECT n FROM u"), "100");
    assert_eq!(
        psql(
            target(),
            &db,
            "SELECT lsn FROM pgferry.apply_progress WHERE slot = 's'"
        ),
        format!("0/{:X}", lsn - 0x100 + 0x40)
    );
}

/// The stream of [`applier_folds_repeated_updates_of_a_row`]: its two relations, then one
/// transaction after another from LSN 0/2000 on; returns the messages and the LSN after the
/// last transaction.
fn fold_messages() -> (Vec<pgferry::replication::pgoutput::Message>, u64) {
    use bytes::Bytes;
    use pgferry::replication::pgoutput::{
        Begin, Column, Commit, Delete, Insert, Message, OldTuple, Relation, ReplicaIdentity, Tuple,
        Update, Value,
    };

    let column = |name: &str, flags: u8, type_oid: u32| Column {
        flags,
        name: name.into(),
        type_oid,
        type_modifier: -1,
    };
    let text = |v: String| Value::Text(Bytes::from(v));
    let relation = |id: u32, name: &str, columns: Vec<Column>| {
        Message::Relation(Relation {
            xid: None,
            id,
            namespace: "public".into(),
            name: name.into(),
            replica_identity: ReplicaIdentity::Default,
            columns,
        })
    };
    let update_t = |id: i32, a: i32, b: Option<&str>| {
        Message::Update(Update {
            xid: None,
            relation: 1,
            old: None,
            new: Tuple(vec![
                text(id.to_string()),
                text(a.to_string()),
                match b {
                    Some(b) => text(b.to_owned()),
                    None => Value::UnchangedToast,
                },
            ]),
        })
    };
    let update_u = |n: i32| {
        Message::Update(Update {
            xid: None,
            relation: 2,
            old: None,
            new: Tuple(vec![text("1".into()), text(n.to_string())]),
        })
    };
    let mut messages = vec![
        relation(
            1,
            "t",
            vec![column("id", 1, 23), column("a", 0, 23), column("b", 0, 25)],
        ),
        relation(2, "u", vec![column("id", 1, 23), column("n", 0, 23)]),
    ];
    let mut lsn = 0x2000u64;
    let mut txn = |body: Vec<Message>, messages: &mut Vec<Message>| {
        messages.push(Message::Begin(Begin {
            final_lsn: lsn,
            commit_time: 0,
            xid: 1,
        }));
        messages.extend(body);
        messages.push(Message::Commit(Commit {
            flags: 0,
            commit_lsn: lsn,
            end_lsn: lsn + 0x40,
            commit_time: 0,
        }));
        lsn += 0x100;
    };
    // Hot rows: t.1 and u.1 a hundred times each, t.2 in between.
    for i in 1..=100 {
        txn(
            vec![
                update_t(1, i, Some("hot")),
                update_u(i),
                update_t(2, -i, Some("two")),
            ],
            &mut messages,
        );
    }
    // Another shape (b unchanged, TOAST): after the folded run, then full updates again.
    txn(vec![update_t(1, 1000, None)], &mut messages);
    txn(vec![update_t(1, 1001, Some("last"))], &mut messages);
    // Delete, re-insert, update of one key.
    txn(
        vec![
            Message::Delete(Delete {
                xid: None,
                relation: 1,
                old: OldTuple::Key(Tuple(vec![text("3".into()), Value::Null, Value::Null])),
            }),
            Message::Insert(Insert {
                xid: None,
                relation: 1,
                new: Tuple(vec![
                    text("3".into()),
                    text("30".into()),
                    text("again".into()),
                ]),
            }),
            update_t(3, 31, Some("again")),
            update_t(3, 32, Some("again2")),
        ],
        &mut messages,
    );
    // A key change, then updates of the new key.
    txn(
        vec![
            Message::Update(Update {
                xid: None,
                relation: 1,
                old: Some(OldTuple::Key(Tuple(vec![
                    text("4".into()),
                    Value::Null,
                    Value::Null,
                ]))),
                new: Tuple(vec![
                    text("40".into()),
                    text("4".into()),
                    text("moved".into()),
                ]),
            }),
            update_t(40, 41, Some("moved")),
            update_t(40, 42, Some("moved2")),
        ],
        &mut messages,
    );
    (messages, lsn)
}

/// Sends `messages` to the applier in batches of varying size, as the stream would, and runs
/// it until they are all applied.
async fn tx_all(
    applier: &mut pgferry::replication::apply::Applier,
    messages: Vec<pgferry::replication::pgoutput::Message>,
) {
    use pgferry::replication::apply::ApplyItem;
    let (tx, mut rx) = tokio::sync::mpsc::channel(messages.len().max(1));
    let mut batch = Vec::new();
    for (i, m) in messages.into_iter().enumerate() {
        batch.push(ApplyItem::Message(m));
        if batch.len() > i % 7 {
            tx.send(std::mem::take(&mut batch)).await.unwrap();
        }
    }
    if !batch.is_empty() {
        tx.send(batch).await.unwrap();
    }
    drop(tx);
    applier.run(&mut rx).await.unwrap();
}

/// Triggers (and rules) enabled ALWAYS or REPLICA would fire under apply's replica role and repeat what
/// the source already did (its audit rows arrive through the stream): they are disabled on
/// the target while streaming and enabled as on the source at cutover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_and_replica_triggers_wait_for_the_cutover() {
    let db = support::fresh_db(source(), "follow_trig");
    psql(
        source(),
        &db,
        "CREATE TABLE acct (id int PRIMARY KEY, v int);
         CREATE TABLE audit (id bigserial PRIMARY KEY, acct int, v int, op text);
         CREATE TABLE tally (id int PRIMARY KEY, n int);
         INSERT INTO tally VALUES (1, 0);
         CREATE FUNCTION audit_acct() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN INSERT INTO audit (acct, v, op) VALUES (NEW.id, NEW.v, TG_OP); RETURN NEW; END $$;
         CREATE FUNCTION count_audit() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN UPDATE tally SET n = n + 1 WHERE id = 1; RETURN NEW; END $$;
         CREATE TRIGGER acct_audit AFTER INSERT OR UPDATE ON acct
           FOR EACH ROW EXECUTE FUNCTION audit_acct();
         ALTER TABLE acct ENABLE ALWAYS TRIGGER acct_audit;
         CREATE TRIGGER audit_count AFTER INSERT ON audit
           FOR EACH ROW EXECUTE FUNCTION count_audit();
         ALTER TABLE audit ENABLE REPLICA TRIGGER audit_count;
         CREATE TRIGGER plain AFTER INSERT ON acct FOR EACH ROW EXECUTE FUNCTION audit_acct();
         ALTER TABLE acct DISABLE TRIGGER plain;
         CREATE TABLE gone (id int PRIMARY KEY, v int);
         CREATE RULE keep_gone AS ON DELETE TO acct DO ALSO INSERT INTO gone VALUES (OLD.id, OLD.v);
         ALTER TABLE acct ENABLE ALWAYS RULE keep_gone;
         INSERT INTO acct SELECT g, g FROM generate_series(1, 10) g;",
    );
    let states = "SELECT string_agg(tgname || '=' || tgenabled::text, ',' ORDER BY tgname) \
                  FROM pg_trigger WHERE NOT tgisinternal";
    let rule = "SELECT ev_enabled FROM pg_rewrite WHERE rulename = 'keep_gone'";
    let mut follower = start_follower(&db, FollowOptions::default());
    follower.wait_streaming().await;
    assert_eq!(
        psql(target(), &db, states),
        "acct_audit=D,audit_count=D,plain=D"
    );
    assert_eq!(psql(target(), &db, rule), "D");
    // Single rows, and a run long enough to be copied.
    psql(
        source(),
        &db,
        "UPDATE acct SET v = v + 100 WHERE id <= 5;
         INSERT INTO acct SELECT g, g FROM generate_series(11, 500) g;
         INSERT INTO acct VALUES (1000, 1);
         DELETE FROM acct WHERE id IN (7, 8, 9);",
    );
    wait_target(&db, "SELECT count(*) FROM acct", "498").await;
    assert!(matches!(
        follower.stop().await.unwrap(),
        FollowOutcome::Stopped { .. }
    ));
    // A rerun (resume) streams more, then cuts over.
    psql(
        source(),
        &db,
        "UPDATE acct SET v = 0 WHERE id > 490; DELETE FROM acct WHERE id = 10;",
    );
    let (outcome, _) = cutover(&db).await;
    assert!(matches!(outcome, FollowOutcome::CutOver { .. }));
    let audit = "SELECT count(*), sum(v), string_agg(DISTINCT op, ',') FROM audit";
    assert_eq!(psql(target(), &db, audit), psql(source(), &db, audit));
    assert_eq!(
        psql(target(), &db, "SELECT n FROM tally"),
        psql(source(), &db, "SELECT n FROM tally")
    );
    let gone = "SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM gone";
    assert_eq!(psql(source(), &db, gone), "7:7,8:8,9:9,10:10");
    assert_eq!(psql(target(), &db, gone), psql(source(), &db, gone));
    assert_identical(&db).await;
    assert_eq!(
        psql(target(), &db, states),
        "acct_audit=A,audit_count=R,plain=D"
    );
    assert_eq!(psql(target(), &db, rule), "A");
    // Enabled ALWAYS indeed: a write on the target now audits itself.
    let before: u64 = psql(target(), &db, "SELECT count(*) FROM audit")
        .parse()
        .unwrap();
    psql(target(), &db, "INSERT INTO acct VALUES (5000, 5)");
    assert_eq!(
        psql(target(), &db, "SELECT count(*) FROM audit"),
        (before + 1).to_string()
    );
    assert_source_clean(&db);
}

/// Transactions larger than the source's `logical_decoding_work_mem` arrive streamed while in
/// progress (protocol 2): kept in spool files, applied at their commit, cut back for a
/// subtransaction rolled back, dropped when aborted; transactions committing meanwhile are
/// applied at once, and the target never shows part of a streamed transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_transactions_stream_through_spool_files() {
    let db = support::fresh_db(source(), "follow_streamed");
    psql(
        source(),
        &db,
        &format!(
            "ALTER DATABASE \"{db}\" SET logical_decoding_work_mem = '64kB';
             CREATE TABLE big (id int PRIMARY KEY, v text);
             CREATE TABLE small (id int PRIMARY KEY);"
        ),
    );
    let mut follower = start_follower(&db, FollowOptions::default());
    follower.wait_streaming().await;

    // A big transaction stays open while small ones commit.
    let writer = connect(&cfg(source(), &db)).await.unwrap();
    writer
        .client
        .batch_execute(
            "BEGIN;
             INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g;
             SAVEPOINT a;
             INSERT INTO big SELECT g, 'gone' FROM generate_series(20001, 30000) g;
             SAVEPOINT b;
             INSERT INTO big SELECT g, 'gone too' FROM generate_series(30001, 31000) g;
             ROLLBACK TO SAVEPOINT a;
             SAVEPOINT c;
             UPDATE big SET v = 'kept' WHERE id <= 100;
             RELEASE SAVEPOINT c;",
        )
        .await
        .unwrap();
    psql(source(), &db, "INSERT INTO small VALUES (1)");
    wait_target(&db, "SELECT count(*) FROM small", "1").await;
    assert_eq!(psql(target(), &db, "SELECT count(*) FROM big"), "0");
    writer
        .client
        .batch_execute(
            "INSERT INTO big SELECT g, 'after' FROM generate_series(40001, 45000) g;
             COMMIT;",
        )
        .await
        .unwrap();
    // Aborted as a whole.
    psql(
        source(),
        &db,
        "BEGIN; INSERT INTO big SELECT g, 'aborted' FROM generate_series(50001, 70000) g; ROLLBACK;
         INSERT INTO small VALUES (2);",
    );
    wait_target(&db, "SELECT count(*) FROM small", "2").await;
    let shape = "SELECT count(*), count(*) FILTER (WHERE v = 'kept'), \
                 count(*) FILTER (WHERE v = 'after'), max(id) FROM big";
    assert_eq!(psql(target(), &db, shape), "25000|100|5000|45000");
    let names = object_names(&db);
    let streamed: i64 = psql(
        source(),
        &db,
        &format!(
            "SELECT stream_txns FROM pg_stat_replication_slots WHERE slot_name = '{}'",
            names.slot
        ),
    )
    .parse()
    .unwrap();
    assert!(
        streamed >= 2,
        "transactions streamed by the source: {streamed}"
    );
    assert!(matches!(
        follower.stop().await.unwrap(),
        FollowOutcome::Stopped { .. }
    ));
    let (outcome, _) = cutover(&db).await;
    assert!(matches!(outcome, FollowOutcome::CutOver { .. }));
    assert_identical(&db).await;
    assert_source_clean(&db);
}

fn install_aiven_extras_stand_in() -> Option<()> {
    support::aiven::install_stand_in(&support::install())
}

/// A user who is neither superuser nor owner of the tables, on a source with aiven_extras:
/// the publication comes from the extension's functions (FOR ALL TABLES, then given to the
/// session user as the published interface says), changes stream (partition moves included,
/// published per partition), and the cutover drops the publication like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiven_extras_publishes_for_a_user_without_superuser() {
    if install_aiven_extras_stand_in().is_none() {
        eprintln!("SKIPPED: the server's extension directory is not writable (run as root)");
        return;
    }
    let db = support::fresh_db(source(), "follow_aiven");
    for cluster in [source(), target()] {
        psql(
            cluster,
            "postgres",
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tbl_owner') THEN
                 CREATE ROLE tbl_owner;
               END IF;
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'aiven_user') THEN
                 CREATE ROLE aiven_user LOGIN REPLICATION;
               END IF;
             END $$;",
        );
    }
    psql(
        source(),
        &db,
        "CREATE EXTENSION aiven_extras;
         GRANT CREATE ON SCHEMA public TO tbl_owner;
         SET ROLE tbl_owner;
         CREATE TABLE plain (id int PRIMARY KEY, v text);
         CREATE TABLE parted (id int, region int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
         CREATE TABLE parted_1 PARTITION OF parted FOR VALUES IN (1);
         CREATE TABLE parted_2 PARTITION OF parted FOR VALUES IN (2);
         INSERT INTO plain VALUES (1, 'a');
         INSERT INTO parted VALUES (1, 1);
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO aiven_user;",
    );
    let uri = source()
        .uri(&db)
        .replace("postgres://postgres@", "postgres://aiven_user@");
    let src = ConnConfig::from_conn_str(&uri).unwrap();
    let dst = cfg(target(), &db);
    let run = |cutover_at_lag: Option<u64>, stop_rx: watch::Receiver<bool>| {
        let (s2, d2) = (src.clone(), dst.clone());
        let streaming = Arc::new(AtomicBool::new(false));
        let st = Arc::clone(&streaming);
        let handle = tokio::spawn(async move {
            let observer = move |event: FollowEvent| {
                if matches!(event, FollowEvent::Streaming { .. }) {
                    st.store(true, Ordering::SeqCst);
                }
            };
            let opts = FollowOptions {
                cutover_at_lag,
                ..FollowOptions::default()
            };
            follow_database(&s2, &d2, &opts, &Bars::new(), &observer, stop_rx).await
        });
        (handle, streaming)
    };
    // First run: copy, then stream the writes below; stopped (slot kept).
    let (stop, stop_rx) = watch::channel(false);
    let (handle, streaming) = run(None, stop_rx);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !streaming.load(Ordering::SeqCst) {
        if handle.is_finished() {
            panic!("follow ended: {:?}", handle.await.unwrap());
        }
        assert!(Instant::now() < deadline, "not streaming after 120 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let names = object_names(&db);
    let publication = format!(
        "SELECT puballtables, pg_get_userbyid(pubowner) FROM pg_publication WHERE pubname = '{}'",
        names.publication
    );
    // Made by the extension's function, with the list of tables (never FOR ALL TABLES: a
    // table created later must not be published implicitly), then given to the user who
    // asked, as the published interface says.
    assert_eq!(psql(source(), &db, &publication), "f|aiven_user");
    psql(
        source(),
        &db,
        "SET ROLE tbl_owner; UPDATE plain SET v = 'b'; UPDATE parted SET region = 2;
         INSERT INTO plain SELECT g, 'n' FROM generate_series(2, 100) g;",
    );
    wait_target(&db, "SELECT count(*), max(v) FROM plain", "100|n").await;
    wait_target(&db, "SELECT tableoid::regclass FROM parted", "parted_2").await;
    let _ = stop.send(true);
    assert!(matches!(
        handle.await.unwrap().unwrap(),
        FollowOutcome::Stopped { .. }
    ));
    // Second run: resume and cut over as the same user, who owns the publication.
    psql(
        source(),
        &db,
        "SET ROLE tbl_owner; DELETE FROM plain WHERE id > 50;",
    );
    let (_stop, stop_rx) = watch::channel(false);
    let (handle, _) = run(Some(0), stop_rx);
    let outcome = tokio::time::timeout(Duration::from_secs(120), handle)
        .await
        .expect("no cutover within 120 s")
        .unwrap()
        .unwrap();
    assert!(matches!(outcome, FollowOutcome::CutOver { .. }));
    assert_eq!(psql(target(), &db, "SELECT count(*) FROM plain"), "50");
    assert_eq!(psql(source(), &db, &publication), "");
    assert_source_clean(&db);
}

/// A fresh target database with `schema`, and an applier on it for slot `s` whose stored
/// position is 0/1000 (with the receiver of what it reports as applied).
async fn test_applier(
    name: &str,
    schema: &str,
) -> (
    String,
    pgferry::replication::apply::Applier,
    watch::Receiver<pgferry::replication::Lsn>,
) {
    use pgferry::replication::apply::{Applier, BatchLimits};
    use pgferry::replication::{state, Lsn};
    let db = support::fresh_db(target(), name);
    psql(target(), &db, schema);
    let session = connect(&cfg(target(), &db)).await.unwrap();
    state::ensure(&session.client).await.unwrap();
    let (applied, applied_rx) = watch::channel(Lsn::INVALID);
    let applier = Applier::new(
        session.client,
        "s",
        Lsn(0x1000),
        BatchLimits::default(),
        applied,
        false,
    )
    .await
    .unwrap();
    (db, applier, applied_rx)
}
