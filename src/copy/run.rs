//! The worker pool: N workers, each with one source session inside the shared snapshot and
//! one target session, take jobs from one queue (largest first) until it is empty.
//!
//! The workers are futures driven together by the calling task rather than spawned tasks:
//! the sockets are driven by each connection's own task anyway, and the work left here (copying
//! bytes into buffers and counting rows) runs at several GB/s, far above what the network gives.
//! It also lets the caller pass a borrowed [`ProgressSink`].
//!
//! The first failure stops everything: the other workers' futures are dropped, which aborts
//! their target COPYs (an unfinished `CopyInSink` sends CopyFail) and rolls back their
//! `TRUNCATE` transactions when the sessions close.
//!
//! Truncation of split tables: ranges of one table run in different sessions, so none of them
//! may truncate (it would erase the others' rows, or wait on their locks). When a ranged job
//! asks for `truncate_first`, its table is truncated once, before any job starts, in its own
//! committed transaction, and the ranges copy without `FREEZE`.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Mutex;

use super::pipe::{copy_table, qualified, PipeOptions};
use super::snapshot::{begin_in_snapshot, SESSION_SETTINGS};
use super::{CopyError, CopyStats, Side, TableJob};
use crate::conn::{connect, ConnConfig, Session};

/// Receives progress events; the CLI renders them (indicatif bars, JSON lines).
pub trait ProgressSink: Send + Sync {
    /// A worker started `job`.
    fn job_started(&self, job: &TableJob);
    /// `bytes` more bytes of `job` reached the target.
    fn bytes_copied(&self, job: &TableJob, bytes: u64);
    /// `job` finished and committed.
    fn job_finished(&self, job: &TableJob, stats: &CopyStats);
}

/// A [`ProgressSink`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn job_started(&self, _: &TableJob) {}
    fn bytes_copied(&self, _: &TableJob, _: u64) {}
    fn job_finished(&self, _: &TableJob, _: &CopyStats) {}
}

/// Copies every job with `workers` workers, all reading the source as of `snapshot` (which
/// the caller keeps alive, e.g. with an [`super::ExportedSnapshot`]). Returns one
/// [`CopyStats`] per job, in completion order, or the first error.
pub async fn copy_all(
    src_cfg: &ConnConfig,
    dst_cfg: &ConnConfig,
    snapshot: &str,
    jobs: Vec<TableJob>,
    workers: usize,
    progress: &dyn ProgressSink,
) -> Result<Vec<CopyStats>, CopyError> {
    let mut jobs = jobs;
    jobs.sort_by_key(|j| std::cmp::Reverse(j.estimated_bytes));
    truncate_split_tables(dst_cfg, &jobs).await?;
    let workers = workers.clamp(1, jobs.len().max(1));
    let queue = Mutex::new(VecDeque::from(jobs));
    let done = Mutex::new(Vec::new());
    let opts = PipeOptions::default();
    let pool =
        (0..workers).map(|_| worker(src_cfg, dst_cfg, snapshot, &queue, &done, &opts, progress));
    futures::future::try_join_all(pool).await?;
    let stats = done
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Ok(stats)
}

async fn worker(
    src_cfg: &ConnConfig,
    dst_cfg: &ConnConfig,
    snapshot: &str,
    queue: &Mutex<VecDeque<TableJob>>,
    done: &Mutex<Vec<CopyStats>>,
    opts: &PipeOptions,
    progress: &dyn ProgressSink,
) -> Result<(), CopyError> {
    if queue_is_empty(queue) {
        return Ok(());
    }
    let (src, dst) = futures::try_join!(open(src_cfg, Side::Source), open(dst_cfg, Side::Target))?;
    begin_in_snapshot(&src.client, snapshot).await?;
    dst.client
        .batch_execute(SESSION_SETTINGS)
        .await
        .map_err(|e| CopyError::from_pg(None, Side::Target, &e))?;
    while let Some(job) = next_job(queue) {
        progress.job_started(&job);
        let mut on_bytes = |n: u64| progress.bytes_copied(&job, n);
        let stats = copy_table(&src.client, &dst.client, &job, opts, &mut on_bytes).await?;
        progress.job_finished(&job, &stats);
        lock(done).push(stats);
    }
    // The source transaction only read; ending it releases the snapshot for this session.
    src.client
        .batch_execute("COMMIT")
        .await
        .map_err(|e| CopyError::from_pg(None, Side::Source, &e))?;
    src.close().await;
    dst.close().await;
    Ok(())
}

async fn open(cfg: &ConnConfig, side: Side) -> Result<Session, CopyError> {
    connect(cfg)
        .await
        .map_err(|e| CopyError::new(None, side, e.to_string()))
}

/// Truncates, once each, the tables whose ranged jobs ask for it (see the module docs).
async fn truncate_split_tables(dst_cfg: &ConnConfig, jobs: &[TableJob]) -> Result<(), CopyError> {
    let tables: BTreeSet<String> = jobs
        .iter()
        .filter(|j| j.truncate_first && j.range.is_some())
        .map(qualified)
        .collect();
    if tables.is_empty() {
        return Ok(());
    }
    let dst = open(dst_cfg, Side::Target).await?;
    let sql = format!(
        "TRUNCATE ONLY {}",
        tables.into_iter().collect::<Vec<_>>().join(", ")
    );
    let result = dst
        .client
        .batch_execute(&sql)
        .await
        .map_err(|e| CopyError::from_pg(None, Side::Target, &e));
    dst.close().await;
    result
}

fn next_job(queue: &Mutex<VecDeque<TableJob>>) -> Option<TableJob> {
    lock(queue).pop_front()
}

fn queue_is_empty(queue: &Mutex<VecDeque<TableJob>>) -> bool {
    lock(queue).is_empty()
}

/// The data behind these locks stays consistent even if a holder panicked (push/pop only).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
