//! Post-data in parallel, overlapped with the copy.
//!
//! ```text
//!  copy job of t committed ─► DataReady: t's last job done ─► t's index builds, PK/UNIQUE
//!                                                             (unique index, then USING INDEX),
//!                                                             checks: on `jobs` sessions,
//!                                                             biggest table first
//!                                        t's builds all done ─► ANALYZE t (same sessions)
//!  all builds done ─► foreign keys, index attachment, triggers, rules, policies, comments …
//!                     in script order on one session
//! ```
//!
//! A table's index builds start as soon as its own data is committed, while other tables are
//! still copying: a copy worker with nothing left to copy no longer leaves its core idle. Units
//! on relations the copy does not fill (partitioned parents, materialized views) wait for the
//! whole copy. ANALYZE of a table waits for its index builds (it would wait for their locks
//! anyway, and expression indexes get statistics only once they exist).
//!
//! This is the crate's one post-data engine: `restore` runs it too, on the units its archive
//! stores, with every table ready from the start ([`DataReady::complete`]). Which statement
//! may run next to which is decided once, by the schema engine ([`PostDataUnit::parallel`]),
//! never by reading SQL text.

use super::CloneError;
use crate::conn::{connect, ConnConfig, Session};
use crate::copy::{CopyStats, ProgressSink, TableJob};
use crate::progress::Reporter;
use crate::quote::qualified;
use crate::script::{is_session_setting, PostDataUnit, PREAMBLE as SESSION_SETTINGS};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use tokio::sync::watch;

type TableName = (String, String);

/// Which tables have all their data in, told by the copy and read by the builders.
pub struct DataReady {
    state: Mutex<ReadyState>,
    changed: watch::Sender<u64>,
}

struct ReadyState {
    /// Copy jobs not finished yet, per table.
    remaining: HashMap<TableName, usize>,
    /// The copy is over: every table's data is in.
    all_done: bool,
}

impl DataReady {
    /// Tracks the tables of `jobs` (a split table is ready once all its ranges are).
    pub fn new(jobs: &[TableJob]) -> DataReady {
        let mut remaining: HashMap<TableName, usize> = HashMap::new();
        for j in jobs {
            *remaining
                .entry((j.schema.clone(), j.table.clone()))
                .or_default() += 1;
        }
        DataReady {
            state: Mutex::new(ReadyState {
                remaining,
                all_done: false,
            }),
            changed: watch::Sender::new(0),
        }
    }

    /// Every table's data is already in (a restore after its load): builds start at once.
    pub fn complete() -> DataReady {
        let ready = DataReady::new(&[]);
        ready.all_done();
        ready
    }

    fn job_done(&self, job: &TableJob) {
        let key = (job.schema.clone(), job.table.clone());
        if let Some(n) = lock(&self.state).remaining.get_mut(&key) {
            *n = n.saturating_sub(1);
        }
        self.changed.send_modify(|v| *v += 1);
    }

    /// The whole copy is done (data of relations without copy jobs included).
    pub fn all_done(&self) {
        lock(&self.state).all_done = true;
        self.changed.send_modify(|v| *v += 1);
    }

    fn is_ready(&self, table: Option<&TableName>) -> bool {
        let state = lock(&self.state);
        if state.all_done {
            return true;
        }
        match table.and_then(|t| state.remaining.get(t)) {
            Some(&n) => n == 0,
            None => false,
        }
    }

    /// A progress sink that forwards to `inner` and marks tables ready as their jobs finish.
    pub fn sink<'a>(&'a self, inner: &'a dyn Reporter) -> impl ProgressSink + 'a {
        ReadySink { inner, ready: self }
    }
}

struct ReadySink<'a> {
    inner: &'a dyn Reporter,
    ready: &'a DataReady,
}

impl ProgressSink for ReadySink<'_> {
    fn job_started(&self, job: &TableJob) {
        self.inner.job_started(job);
    }
    fn bytes_copied(&self, job: &TableJob, bytes: u64) {
        self.inner.bytes_copied(job, bytes);
    }
    fn job_finished(&self, job: &TableJob, stats: &CopyStats) {
        self.inner.job_finished(job, stats);
        self.ready.job_done(job);
    }
}

/// Work of the parallel sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Task {
    /// Index of a parallel unit.
    Build(usize),
    Analyze(TableName),
}

/// The parallel part's bookkeeping.
struct Board {
    /// Parallel units not started, biggest table first.
    waiting: Vec<usize>,
    /// Parallel units not finished, per table.
    open_builds: HashMap<Option<TableName>, usize>,
    /// Tables to ANALYZE once their builds are done.
    to_analyze: HashSet<TableName>,
    /// Tables whose ANALYZE may start now.
    analyze_ready: Vec<TableName>,
    /// Tasks started and not finished, plus tasks not started.
    left: usize,
    /// Units (index, first statement to run) a deadlock stopped; retried alone afterwards.
    retry: Vec<(usize, usize)>,
}

impl Board {
    fn next(&mut self, units: &[PostDataUnit], ready: &DataReady) -> Option<Task> {
        if let Some(pos) = self
            .waiting
            .iter()
            .position(|&u| ready.is_ready(units[u].table.as_ref()))
        {
            return Some(Task::Build(self.waiting.remove(pos)));
        }
        self.analyze_ready.pop().map(Task::Analyze)
    }

    fn finished_build(&mut self, table: &Option<TableName>) {
        self.left -= 1;
        let open = self.open_builds.entry(table.clone()).or_default();
        *open = open.saturating_sub(1);
        if *open == 0 {
            if let Some(t) = table.as_ref().filter(|t| self.to_analyze.remove(*t)) {
                self.analyze_ready.push(t.clone());
            }
        }
    }
}

/// What [`build`] needs besides the units.
pub struct BuildPlan<'a> {
    pub units: &'a [PostDataUnit],
    /// Tables to ANALYZE (empty with `--skip-analyze`).
    pub analyze: &'a [TableName],
    /// Estimated bytes per table, to start with the longest builds.
    pub sizes: &'a HashMap<TableName, u64>,
    /// Parallel sessions.
    pub jobs: usize,
}

/// Runs the post-data units (and ANALYZE) as the tables' data arrives; returns how many
/// statements ran. Returns when everything is done, which needs [`DataReady::all_done`].
pub async fn build(
    dst: &ConnConfig,
    plan: BuildPlan<'_>,
    ready: &DataReady,
) -> Result<usize, CloneError> {
    let units = plan.units;
    let mut waiting: Vec<usize> = (0..units.len()).filter(|&u| units[u].parallel).collect();
    let size = |u: usize| {
        units[u]
            .table
            .as_ref()
            .and_then(|t| plan.sizes.get(t))
            .copied()
            .unwrap_or(0)
    };
    // Stable: a table's own builds keep script order.
    waiting.sort_by_key(|&u| std::cmp::Reverse(size(u)));
    let mut open_builds: HashMap<Option<TableName>, usize> = HashMap::new();
    for &u in &waiting {
        *open_builds.entry(units[u].table.clone()).or_default() += 1;
    }
    let mut to_analyze: HashSet<TableName> = plan.analyze.iter().cloned().collect();
    // Tables without builds: ANALYZE as soon as their data is in (checked in `next_task`).
    let mut no_builds: Vec<TableName> = to_analyze
        .iter()
        .filter(|t| !open_builds.contains_key(&Some((*t).clone())))
        .cloned()
        .collect();
    no_builds.sort_by_key(|t| std::cmp::Reverse(plan.sizes.get(t).copied().unwrap_or(0)));
    for t in &no_builds {
        to_analyze.remove(t);
    }
    let board = Mutex::new(Board {
        left: waiting.len() + plan.analyze.len(),
        waiting,
        open_builds,
        to_analyze,
        analyze_ready: Vec::new(),
        retry: Vec::new(),
    });
    let no_builds = Mutex::new(no_builds);
    let count = units.iter().map(PostDataUnit::statement_count).sum();

    let worker = || async {
        let mut changes = ready.changed.subscribe();
        let mut session: Option<Session> = None;
        loop {
            changes.borrow_and_update();
            let task = {
                let mut b = lock(&board);
                if b.left == 0 {
                    break;
                }
                let mut t = b.next(units, ready);
                if t.is_none() {
                    let mut nb = lock(&no_builds);
                    if let Some(pos) = nb.iter().position(|t| ready.is_ready(Some(t))) {
                        t = Some(Task::Analyze(nb.remove(pos)));
                    }
                }
                t
            };
            let Some(task) = task else {
                // Nothing ready yet: wait for a copy job or a build to finish.
                if changes.changed().await.is_err() {
                    break;
                }
                continue;
            };
            if session.is_none() {
                session = Some(session_with(dst).await?);
            }
            let client = match &session {
                Some(s) => &s.client,
                None => unreachable!("opened above"),
            };
            match task {
                Task::Build(u) => {
                    if let Some(at) = run_unit(client, &units[u], 0).await? {
                        lock(&board).retry.push((u, at));
                    }
                    lock(&board).finished_build(&units[u].table);
                }
                Task::Analyze(t) => {
                    let name = qualified(&t.0, &t.1);
                    tracing::debug!(table = %name, "ANALYZE");
                    client
                        .batch_execute(&format!("ANALYZE {name}"))
                        .await
                        .map_err(|e| CloneError::target_failed(format!("ANALYZE {name}"), e))?;
                    lock(&board).left -= 1;
                }
            }
            // Others may wait for this table's builds to end (its ANALYZE).
            ready.changed.send_modify(|v| *v += 1);
        }
        Ok::<(), CloneError>(())
    };
    futures::future::try_join_all((0..plan.jobs.max(1)).map(|_| worker())).await?;

    // What a deadlock stopped, then everything that must follow the builds, in order.
    let session = session_with(dst).await?;
    let retry = std::mem::take(&mut lock(&board).retry);
    for (u, at) in retry {
        let unit = &units[u];
        // The unit's session settings before the failed statement, then the rest of it.
        for stmt in unit.statements[..at]
            .iter()
            .filter(|s| is_session_setting(s))
        {
            execute(&session.client, stmt).await?;
        }
        for stmt in &unit.statements[at..] {
            execute(&session.client, stmt).await?;
        }
    }
    for unit in units.iter().filter(|u| !u.parallel) {
        for stmt in &unit.statements {
            execute(&session.client, stmt).await?;
        }
    }
    Ok(count)
}

/// Runs `unit` from statement `from`, each statement in its own transaction. Returns the
/// statement to retry from when the server broke a deadlock by aborting one of ours (two
/// builds on related tables, such as a partitioned table and its partitions, can deadlock).
async fn run_unit(
    client: &tokio_postgres::Client,
    unit: &PostDataUnit,
    from: usize,
) -> Result<Option<usize>, CloneError> {
    for (i, stmt) in unit.statements.iter().enumerate().skip(from) {
        tracing::debug!(statement = %stmt, "post-data");
        if let Err(e) = client.batch_execute(stmt).await {
            if e.code() == Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED) {
                // Leave the session as the unit found it.
                let _ = client.batch_execute("SET default_tablespace = ''").await;
                return Ok(Some(i));
            }
            return Err(failed(stmt, e));
        }
    }
    Ok(None)
}

async fn execute(client: &tokio_postgres::Client, stmt: &str) -> Result<(), CloneError> {
    tracing::debug!(statement = %stmt, "post-data");
    client
        .batch_execute(stmt)
        .await
        .map_err(|e| failed(stmt, e))
}

fn failed(stmt: &str, e: tokio_postgres::Error) -> CloneError {
    CloneError::target_failed(format!("post-data statement `{}`", abbreviate(stmt)), e)
}

/// A target session with the script's session settings applied.
async fn session_with(dst: &ConnConfig) -> Result<Session, CloneError> {
    let session = connect(dst).await.map_err(|source| CloneError::Connect {
        role: "target",
        source,
    })?;
    session
        .client
        .batch_execute(SESSION_SETTINGS)
        .await
        .map_err(|e| CloneError::target_failed("preparing a post-data session", e))?;
    Ok(session)
}

/// The first line of a statement, shortened, for error messages.
fn abbreviate(stmt: &str) -> String {
    let line = stmt.lines().next().unwrap_or("");
    if line.chars().count() > 120 {
        format!("{}...", line.chars().take(117).collect::<String>())
    } else {
        line.to_string()
    }
}

/// The data behind these locks stays consistent even if a holder panicked (plain updates).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::CopyFormat;

    fn job(table: &str) -> TableJob {
        TableJob {
            schema: "public".into(),
            table: table.into(),
            columns: vec![],
            range: None,
            format: CopyFormat::Binary,
            truncate_first: true,
            estimated_bytes: 0,
            text_reason: None,
            row_filter: None,
        }
    }

    fn name(t: &str) -> TableName {
        ("public".into(), t.into())
    }

    #[test]
    fn a_split_table_is_ready_after_its_last_range() {
        let jobs = vec![job("a"), job("a"), job("b")];
        let ready = DataReady::new(&jobs);
        assert!(!ready.is_ready(Some(&name("a"))));
        ready.job_done(&jobs[0]);
        assert!(!ready.is_ready(Some(&name("a"))));
        ready.job_done(&jobs[1]);
        assert!(ready.is_ready(Some(&name("a"))));
        assert!(!ready.is_ready(Some(&name("b"))));
        // Relations without copy jobs wait for the whole copy.
        assert!(!ready.is_ready(Some(&name("parent"))));
        assert!(!ready.is_ready(None));
        ready.all_done();
        assert!(ready.is_ready(Some(&name("parent"))) && ready.is_ready(None));
    }

    #[test]
    fn analyze_follows_the_last_build_of_its_table() {
        let unit = |t: &str| PostDataUnit {
            table: Some(name(t)),
            parallel: true,
            statements: vec![format!("CREATE INDEX ON public.{t} (x)")],
        };
        let units = vec![unit("small"), unit("big"), unit("big")];
        let jobs = vec![job("small"), job("big")];
        let ready = DataReady::new(&jobs);
        let mut board = Board {
            waiting: vec![1, 2, 0],
            open_builds: HashMap::from([(Some(name("big")), 2), (Some(name("small")), 1)]),
            to_analyze: HashSet::from([name("big"), name("small")]),
            analyze_ready: Vec::new(),
            left: 5,
            retry: Vec::new(),
        };
        assert_eq!(board.next(&units, &ready), None);
        ready.job_done(&jobs[0]);
        assert_eq!(board.next(&units, &ready), Some(Task::Build(0)));
        ready.job_done(&jobs[1]);
        assert_eq!(board.next(&units, &ready), Some(Task::Build(1)));
        board.finished_build(&Some(name("small")));
        assert_eq!(board.next(&units, &ready), Some(Task::Build(2)));
        assert_eq!(
            board.next(&units, &ready),
            Some(Task::Analyze(name("small")))
        );
        board.finished_build(&Some(name("big")));
        assert_eq!(board.next(&units, &ready), None);
        board.finished_build(&Some(name("big")));
        assert_eq!(board.next(&units, &ready), Some(Task::Analyze(name("big"))));
    }
}
