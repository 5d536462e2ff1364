//! A live follower (`follow_database`) between two clusters, run in a task; an "application"
//! writing to the source whose every error is kept; a random transactional workload; and the
//! end checks of a live migration (identical data, nothing of pgferry's left on the source).

use pgferry::conn::{connect, ConnConfig};
use pgferry::localpg::Cluster;
use pgferry::progress::Bars;
use pgferry::replication::publication::object_names;
use pgferry::replication::{
    follow_database, FollowError, FollowEvent, FollowOptions, FollowOutcome,
};
use pgferry::verify::{verify, VerifyOptions};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::XorShift;

pub fn cfg(cluster: &Cluster, db: &str) -> ConnConfig {
    ConnConfig::from_conn_str(&cluster.uri(db)).unwrap()
}

/// A follower running in its own task.
pub struct Follower {
    pub handle: JoinHandle<Result<FollowOutcome, FollowError>>,
    stop: watch::Sender<bool>,
    pub events: Arc<Mutex<Vec<String>>>,
    streaming: Arc<AtomicBool>,
}

impl Follower {
    pub fn start(src: ConnConfig, dst: ConnConfig, opts: FollowOptions) -> Follower {
        let (stop, stop_rx) = watch::channel(false);
        let events = Arc::new(Mutex::new(Vec::new()));
        let streaming = Arc::new(AtomicBool::new(false));
        let (ev, st) = (Arc::clone(&events), Arc::clone(&streaming));
        let handle = tokio::spawn(async move {
            let observer = move |event: FollowEvent| {
                if matches!(event, FollowEvent::Streaming { .. }) {
                    st.store(true, Ordering::SeqCst);
                }
                ev.lock().unwrap().push(format!("{event:?}"));
            };
            let bars = Bars::new();
            follow_database(&src, &dst, &opts, &bars, &observer, stop_rx).await
        });
        Follower {
            handle,
            stop,
            events,
            streaming,
        }
    }

    pub async fn wait_streaming(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !self.streaming.load(Ordering::SeqCst) {
            if self.handle.is_finished() {
                let result = (&mut self.handle).await;
                panic!(
                    "the follower ended before streaming: {result:?}; events: {:?}",
                    self.events.lock().unwrap()
                );
            }
            assert!(Instant::now() < deadline, "not streaming after 120 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Asks it to stop; returns how it ended.
    pub async fn stop(self) -> Result<FollowOutcome, FollowError> {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(120), self.handle)
            .await
            .expect("the follower did not stop within 120 s")
            .unwrap()
    }

    /// Waits for it to end by itself (a cutover, an error).
    pub async fn finish(self, limit: Duration) -> Result<FollowOutcome, FollowError> {
        tokio::time::timeout(limit, self.handle)
            .await
            .expect("the follower did not end in time")
            .unwrap()
    }
}

/// The application: one session on the source running its statements in a loop (`{n}` is
/// replaced by a counter), every error kept.
pub struct Writer {
    stop: Arc<AtomicBool>,
    statements: Arc<Mutex<Vec<String>>>,
    errors: Arc<Mutex<Vec<String>>>,
    done: Arc<AtomicU64>,
    handle: JoinHandle<()>,
}

impl Writer {
    pub fn start(src: ConnConfig, statements: &[&str]) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let list = Arc::new(Mutex::new(
            statements.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        ));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicU64::new(0));
        let (s, l, e, d) = (stop.clone(), list.clone(), errors.clone(), done.clone());
        let handle = tokio::spawn(async move {
            let session = connect(&src).await.unwrap();
            let mut n: u64 = 0;
            while !s.load(Ordering::SeqCst) {
                let batch = l.lock().unwrap().clone();
                for sql in batch {
                    n += 1;
                    let sql = sql.replace("{n}", &n.to_string());
                    match session.client.batch_execute(&sql).await {
                        Ok(()) => {
                            d.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(err) => e.lock().unwrap().push(format!("{sql}: {err:?}")),
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Writer {
            stop,
            statements: list,
            errors,
            done,
            handle,
        }
    }

    pub fn add(&self, sql: &str) {
        self.statements.lock().unwrap().push(sql.to_owned());
    }

    pub fn done(&self) -> u64 {
        self.done.load(Ordering::SeqCst)
    }

    /// Stops; returns the statements that succeeded and every error.
    pub async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.await.unwrap();
        let errors = self.errors.lock().unwrap().clone();
        (self.done.load(Ordering::SeqCst), errors)
    }
}

/// Small random transactions on the source until `stop`; returns how many committed. Each
/// transaction holds the statements `transaction` makes from the writer's own sequence
/// (seeded by `seed`); a serialization failure or deadlock between writers rolls back (and
/// so nothing of it may reach the target), any other error panics. `pause` is the wait
/// between two transactions.
pub fn spawn_random_writer(
    src: ConnConfig,
    seed: u64,
    stop: Arc<AtomicBool>,
    pause: Duration,
    transaction: fn(&mut XorShift) -> String,
) -> JoinHandle<u64> {
    tokio::spawn(async move {
        let session = connect(&src).await.unwrap();
        let client = &session.client;
        let mut random = XorShift::new(seed);
        let mut committed = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let sql = format!("BEGIN;{}COMMIT;", transaction(&mut random));
            match client.batch_execute(&sql).await {
                Ok(()) => committed += 1,
                Err(e) if matches!(e.code().map(|c| c.code()), Some("40001" | "40P01")) => {
                    client.batch_execute("ROLLBACK").await.unwrap();
                }
                Err(e) => panic!("workload: {e}"),
            }
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
        committed
    })
}

/// `pgferry verify` between `db` on both clusters finds no difference.
pub async fn assert_identical(src: &Cluster, dst: &Cluster, db: &str) {
    let report = verify(&cfg(src, db), &cfg(dst, db), &VerifyOptions::default())
        .await
        .unwrap();
    assert!(report.is_clean(), "source and target differ: {report:#?}");
}

/// Neither pgferry's slot nor its publication for `db` is left on the source.
pub fn assert_source_clean(src: &Cluster, db: &str) {
    let names = object_names(db);
    let left = super::psql(
        src,
        db,
        &format!(
            "SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}') + \
                    (SELECT count(*) FROM pg_publication WHERE pubname = '{}')",
            names.slot, names.publication
        ),
    );
    assert_eq!(left, "0", "slot or publication left on the source");
}
