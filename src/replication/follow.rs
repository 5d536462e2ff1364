//! One database, live: publication + slot → clone under the slot's snapshot → stream and apply
//! → cutover. This is `pgferry clone --follow`.
//!
//! ```text
//!  fresh:   replica identity check ─► publication ─► slot (EXPORT_SNAPSHOT, session kept idle)
//!           ─► clone_database(snapshot) ─► progress row = consistent point
//!  resume:  slot exists and the target has a progress row ─► skip all of the above
//!  stream:  ALWAYS/REPLICA triggers disabled on the target ─► START_REPLICATION at the stored
//!           position ─► pump ─► applier ─► (lag ≤ N)
//!  cutover: tables never streamed copied ─► schema reconciled (reconcile) ─► sequences ─►
//!           those triggers as on the source ─► stop the stream ─► drop slot and publication
//!           (and the DDL capture) ─► forget the row
//! ```
//!
//! Dropped connections are retried with backoff for `retry_for`; each session resumes from the
//! position stored in the target, so nothing is applied twice.

use super::apply::{Applier, ApplyError, ApplyItem, BatchLimits};
use super::ddl_capture::{self, CaptureError};
use super::feedback::{pump, PumpError};
use super::publication::{self, ObjectNames, PublicationError};
use super::reconcile::{self, ReconcileError};
use super::schema_follow::{self, SchemaFollowError, SchemaFollower};
use super::slot;
use super::triggers;
use super::{state, Lsn, ReplicationConnection, ReplicationError, ReplicationStream, StartOptions};
use crate::clone::{clone_database, sequences, CloneError, CloneOptions, CloneSummary};
use crate::conn::{connect, ConnConfig, ConnectError};
use crate::pgerror::{PgError, Side, SqlState};
use crate::progress::Reporter;
use crate::schema::DumpOptions;
use crate::server::access;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::{mpsc, watch};

/// What `follow_database` should do besides streaming.
#[derive(Debug, Clone)]
pub struct FollowOptions {
    pub clone: CloneOptions,
    /// Cut over (sequences, drop slot and publication, return) once the lag is at most this
    /// many bytes. `None`: stream until shut down.
    pub cutover_at_lag: Option<u64>,
    /// Give tables without a replica identity `REPLICA IDENTITY FULL` instead of refusing.
    pub replica_identity_full: bool,
    /// How long to keep reconnecting after connections fail.
    pub retry_for: Duration,
    /// How often to report the lag.
    pub lag_interval: Duration,
    pub batch: BatchLimits,
    /// Slot and publication names use the md5 of the database name (`-m/--mangle`).
    pub mangle: bool,
    /// Create `aiven_extras` in the target database for the replica role when the user may
    /// not set it (migrate: the user installed the extension in the bootstrap database).
    pub create_aiven_extras: bool,
    /// `--max-slot-retained`: past this much WAL held back by the slot, drop it and stop
    /// ([`super::source_watch`]). `None` or 0: no limit.
    pub max_slot_retained: Option<u64>,
    /// `--ddl-capture`: an event trigger on the source puts each DDL statement into the
    /// stream, and the applier runs it in place ([`super::ddl_capture`]). Without it, schema
    /// changes are followed from the stream alone ([`super::schema_follow`]).
    pub ddl_capture: bool,
}

impl Default for FollowOptions {
    fn default() -> Self {
        FollowOptions {
            clone: CloneOptions::default(),
            cutover_at_lag: None,
            replica_identity_full: false,
            retry_for: Duration::from_secs(600),
            lag_interval: Duration::from_secs(5),
            batch: BatchLimits::default(),
            mangle: false,
            create_aiven_extras: false,
            max_slot_retained: Some(super::source_watch::DEFAULT_MAX_SLOT_RETAINED),
            ddl_capture: false,
        }
    }
}

/// What happened, for the caller to show.
#[derive(Debug, Clone)]
pub enum FollowEvent {
    /// Tables given REPLICA IDENTITY FULL on the source.
    ReplicaIdentityFull(Vec<String>),
    Cloned(Box<CloneSummary>),
    /// An existing slot and progress row were found: no copy, streaming resumes.
    Resuming {
        slot: String,
        from: Lsn,
    },
    Streaming {
        from: Lsn,
        binary: bool,
    },
    /// Every `lag_interval` while streaming.
    Lag {
        /// Source WAL insert position − applied position.
        bytes: u64,
        applied: Lsn,
        /// The source's `replay_lag` of our walsender (time between a source commit and our
        /// confirmation of it); 0 when caught up, `None` when the server does not know.
        seconds: Option<f64>,
        /// Source transactions committed on the target by this process so far (all
        /// sessions of this follow), for an apply rate.
        transactions: u64,
    },
    Retrying {
        attempt: u32,
        error: String,
        wait: Duration,
    },
    CutoverStarted {
        lag: u64,
    },
    /// At cutover: the source's schema changes the stream could not carry, applied (or not).
    SchemaReconciled(Box<reconcile::Reconciled>),
    SequencesSynced(usize),
    /// User tables the publication does not list (created after the start, or removed because
    /// they lost their replica identity); sent when the list changes.
    NotReplicated(Vec<String>),
    /// WAL the slot makes the source keep, every `lag_interval`.
    SlotRetention(super::slot::SlotRetention),
    /// On resuming an existing slot: the WAL it made the source keep while no pgferry was
    /// streaming (a stopped or killed run). Sent before streaming starts.
    RetainedWhileStopped(super::slot::SlotRetention),
    /// The slot was created with an exported snapshot: from now until [`FollowEvent::Cloned`]
    /// the copy holds that snapshot open on the source.
    SnapshotHeld,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowOutcome {
    /// Caught up, sequences synced, slot and publication dropped.
    CutOver { applied: Lsn },
    /// Shut down on request; slot and publication kept, a rerun resumes.
    Stopped { applied: Lsn },
}

#[derive(Debug, Error)]
pub enum FollowError {
    #[error(transparent)]
    Publication(#[from] PublicationError),
    #[error(transparent)]
    Slot(#[from] super::slot::SlotError),
    #[error(transparent)]
    Clone(#[from] CloneError),
    #[error("{role}: {source}")]
    Connect {
        role: &'static str,
        #[source]
        source: ConnectError,
    },
    #[error(transparent)]
    Pg(#[from] PgError),
    #[error("source: {what}: {message}")]
    Unexpected { what: String, message: String },
    #[error("replication: {0}")]
    Replication(#[from] ReplicationError),
    #[error("applying changes: {0}")]
    Apply(#[from] ApplyError),
    #[error("following the source's schema: {0}")]
    Schema(#[from] SchemaFollowError),
    #[error("cutover: {0}")]
    Reconcile(#[from] ReconcileError),
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Watch(#[from] super::source_watch::WatchError),
    #[error("replication stream: {0}")]
    Pump(#[from] PumpError),
    #[error(
        "replication slot \"{slot}\" exists on the source but target database \"{database}\" has no \
         progress row for it: an earlier run stopped before its copy finished. Remove the slot and \
         publication (pgferry cleanup, or on the source: SELECT pg_drop_replication_slot('{slot}'); \
         DROP PUBLICATION \"{publication}\";) and start again with --drop-if-exists"
    )]
    SlotWithoutProgress {
        slot: String,
        publication: String,
        database: String,
    },
    #[error(
        "interrupted during the copy: the replication slot and publication were removed from the \
         source; the target database is incomplete (rerun with --drop-if-exists to start over)"
    )]
    Interrupted,
    #[error("replication slot \"{0}\" disappeared from the source; the target cannot be kept in sync any more")]
    SlotGone(String),
    #[error(
        "replication slot \"{slot}\" was invalidated by the source server (wal_status lost: it \
         fell further behind than max_slot_wal_keep_size allows, and the WAL it needed is \
         removed): the changes since can no longer be read, so target database \"{database}\" \
         cannot be kept in sync. Copy the database again: `pgferry cleanup` (or drop the slot), \
         then rerun the same migrate command, or `clone --follow --drop-if-exists`; keep pgferry \
         running, or raise max_slot_wal_keep_size on the source"
    )]
    SlotInvalidated { slot: String, database: String },
    #[error(
        "replication slot \"{slot}\" on the source is in use by another process ({holder}): \
         another pgferry (a running migrate or clone --follow) streams this database. Stop that \
         one first (`pgferry stop`, Ctrl-C), or leave it running; two cannot share a slot"
    )]
    SlotInUse { slot: String, holder: String },
    #[error(
        "another session still applies the changes of slot \"{slot}\" into target database \
         \"{database}\" (its applier lock was held for {}s): another pgferry streams this \
         database, or a previous session of this one is stuck; stop the other one first",
        APPLIER_LOCK_WAIT.as_secs()
    )]
    ApplierBusy { slot: String, database: String },
    #[error("cannot start the streaming thread: {0}")]
    Runtime(String),
    #[error("gave up after retrying for {}s: {source}", .after.as_secs())]
    GaveUp {
        after: Duration,
        #[source]
        source: Box<FollowError>,
    },
}

impl FollowError {
    fn source(what: &str, e: tokio_postgres::Error) -> FollowError {
        FollowError::Pg(PgError::new(Side::Source, what, e))
    }

    fn target(what: &str, e: tokio_postgres::Error) -> FollowError {
        FollowError::Pg(PgError::new(Side::Target, what, e))
    }

    /// Whether reconnecting may help (dropped connections, restarts) or not (schema, data,
    /// missing slot, refusals).
    pub fn is_retryable(&self) -> bool {
        use super::source_watch::WatchError;
        match self {
            FollowError::Connect { source, .. } => source.is_transient(),
            FollowError::Pg(e) => e.is_transient(),
            FollowError::Replication(e) | FollowError::Pump(PumpError::Replication(e)) => {
                e.is_transient()
            }
            FollowError::Pump(PumpError::Ended | PumpError::Silent(_)) => true,
            FollowError::Apply(e) => !e.is_permanent(),
            FollowError::Schema(e) => !e.is_permanent(),
            FollowError::Watch(WatchError::Query(e)) => crate::pgerror::is_transient(e.code()),
            FollowError::Watch(WatchError::Guard(e)) => e.is_transient(),
            _ => false,
        }
    }
}

/// How long a new streaming session waits for the previous applier of its slot to finish
/// (its last commit, its connection closing) before giving up.
const APPLIER_LOCK_WAIT: Duration = Duration::from_secs(30);

/// Reports events; the CLI prints them, tests ignore them.
pub type Observer<'a> = &'a (dyn Fn(FollowEvent) + Send + Sync);

async fn open(role: &'static str, cfg: &ConnConfig) -> Result<crate::conn::Session, FollowError> {
    connect(cfg)
        .await
        .map_err(|source| FollowError::Connect { role, source })
}

/// Clones (or resumes) and follows the database named in `src` into the one named in `dst`
/// until cutover (with [`FollowOptions::cutover_at_lag`]) or until `shutdown` becomes true.
pub async fn follow_database(
    src: &ConnConfig,
    dst: &ConnConfig,
    opts: &FollowOptions,
    reporter: &dyn Reporter,
    observer: Observer<'_>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<FollowOutcome, FollowError> {
    let names = publication::names_for(&src.dbname, opts.mangle);
    let source = open("source", src).await?;
    let slot_exists = slot::exists(&source.client, &names.slot).await?;
    let stored = stored_position(dst, &names.slot).await?;
    match (slot_exists, stored) {
        (true, Some(from)) => {
            if opts.ddl_capture
                && ddl_capture::key(&source.client, &names.publication)
                    .await?
                    .is_none()
            {
                ddl_capture::check(&source.client).await?;
                ddl_capture::install(&source.client, &names.publication).await?;
                tracing::warn!(
                    "--ddl-capture: the capture was not installed on the source; it is now. \
                     Schema changes made before were followed from the stream alone"
                );
            }
            warn_retained(&source.client, &names.slot, observer).await;
            observer(FollowEvent::Resuming {
                slot: names.slot.clone(),
                from,
            });
        }
        (true, None) => {
            return Err(FollowError::SlotWithoutProgress {
                slot: names.slot.clone(),
                publication: names.publication.clone(),
                database: dst.dbname.clone(),
            })
        }
        (false, _) => {
            if opts.ddl_capture {
                ddl_capture::check(&source.client).await?;
            }
            let changed = publication::check_replica_identity(
                &source.client,
                opts.replica_identity_full,
                &opts.clone.filter,
            )
            .await?;
            if !changed.is_empty() {
                observer(FollowEvent::ReplicaIdentityFull(changed));
            }
            let summary = tokio::select! {
                r = start_fresh(src, dst, &names, &source.client, opts, reporter, observer) => r?,
                true = wait_shutdown(&mut shutdown) => {
                    // The copy (rolled back with its sessions) cannot be resumed: remove the
                    // source objects so that nothing holds WAL for it.
                    let _ = slot::drop(&source.client, &names.slot).await;
                    let _ = publication::drop_publication(&source.client, &names.publication).await;
                    return Err(FollowError::Interrupted);
                }
            };
            observer(FollowEvent::Cloned(Box::new(summary)));
        }
    }
    drop(source);

    let (applied_tx, applied_rx) = watch::channel(Lsn::INVALID);
    let applied = Applied {
        lsn: applied_tx,
        transactions: Arc::new(AtomicU64::new(0)),
    };
    let mut failing_since: Option<Instant> = None;
    let mut attempt = 0u32;
    loop {
        let before = *applied_rx.borrow();
        let result =
            session_on_own_thread(src, dst, &names, opts, observer, &applied, shutdown.clone())
                .await;
        let error = match result {
            Ok(outcome) => return Ok(outcome),
            Err(e) if !e.is_retryable() => return Err(e),
            Err(e) => e,
        };
        if *applied_rx.borrow() > before {
            failing_since = None;
            attempt = 0;
        }
        let since = *failing_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= opts.retry_for {
            return Err(FollowError::GaveUp {
                after: since.elapsed(),
                source: Box::new(error),
            });
        }
        attempt += 1;
        let wait = Duration::from_millis(500u64 << attempt.min(6)).min(Duration::from_secs(30));
        observer(FollowEvent::Retrying {
            attempt,
            error: error.to_string(),
            wait,
        });
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            true = wait_shutdown(&mut shutdown) => {
                return Ok(FollowOutcome::Stopped { applied: *applied_rx.borrow() });
            }
        }
    }
}

/// Waits until no process streams from `slot`. The walsender of our own previous session
/// (a cut or silent connection) lets go of the slot once it notices, at the latest after
/// `wal_sender_timeout`: worth waiting for. A live consumer keeps answering the walsender:
/// when the slot's holder got an answer while we watched, it is another pgferry, refused at
/// once ([`FollowError::SlotInUse`], permanent); so is a holder that outlasts the timeout.
async fn wait_slot_free(source: &tokio_postgres::Client, slot: &str) -> Result<(), FollowError> {
    const GRACE: Duration = Duration::from_secs(3);
    let started = Instant::now();
    let mut limit: Option<Duration> = None;
    let mut told = false;
    loop {
        let found = slot::holder(source, slot)
            .await
            .map_err(|e| FollowError::source("looking at who uses the replication slot", e))?;
        let Some(found) = found else {
            return Ok(());
        };
        if !found.active {
            return Ok(());
        }
        let reply_age = found.reply_age_seconds;
        let holder = || {
            format!(
                "PID {}{}{}",
                found
                    .pid
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "?".into()),
                found
                    .application_name
                    .as_ref()
                    .map(|a| format!(", application_name {a}"))
                    .unwrap_or_default(),
                found
                    .client_addr
                    .as_ref()
                    .map(|a| format!(", from {a}"))
                    .unwrap_or_default()
            )
        };
        let waited = started.elapsed();
        let limit = *limit.get_or_insert_with(|| {
            let timeout = parse_pg_duration_ms(&found.wal_sender_timeout).unwrap_or(60_000);
            Duration::from_millis(if timeout == 0 { 60_000 } else { timeout }) + GRACE
        });
        let answered_while_we_watched =
            waited >= GRACE && reply_age.is_some_and(|a| a < GRACE.as_secs_f64());
        if answered_while_we_watched || waited >= limit {
            return Err(FollowError::SlotInUse {
                slot: slot.to_owned(),
                holder: holder(),
            });
        }
        if !told {
            told = true;
            tracing::info!(
                "replication slot {slot} is still held by {}; waiting for it to be released",
                holder()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Whether the source invalidated the slot (`wal_status = 'lost'`, PostgreSQL 13+; older
/// servers never invalidate slots).
async fn slot_lost(source: &tokio_postgres::Client, slot: &str) -> Result<bool, FollowError> {
    let lost = slot::read_retention(source, slot)
        .await
        .map_err(|e| FollowError::source("reading the replication slot's state", e))?
        .is_some_and(|r| r.wal_status.as_deref() == Some("lost"));
    Ok(lost)
}

/// Before resuming: says how much WAL the slot made the source keep while nobody consumed it.
async fn warn_retained(source: &tokio_postgres::Client, slot: &str, observer: Observer<'_>) {
    if let Ok(Some(r)) = slot::read_retention(source, slot).await {
        // Reported once, by the caller.
        observer(FollowEvent::RetainedWhileStopped(r));
    }
}

/// The progress row of `slot` in the target database; `None` if the database, the table or
/// the row does not exist.
async fn stored_position(dst: &ConnConfig, slot: &str) -> Result<Option<Lsn>, FollowError> {
    let target = match connect(dst).await {
        Ok(t) => t,
        // 3D000: the database does not exist (yet).
        Err(e)
            if e.code()
                .is_some_and(|c| *c == SqlState::INVALID_CATALOG_NAME) =>
        {
            return Ok(None)
        }
        Err(source) => {
            return Err(FollowError::Connect {
                role: "target",
                source,
            })
        }
    };
    state::load(&target.client, slot)
        .await
        .map_err(|e| FollowError::target("reading the applied position", e))
}

/// Publication, slot with exported snapshot, clone under it, progress row. On failure the
/// slot and publication are removed again: a half-done copy cannot be resumed.
async fn start_fresh(
    src: &ConnConfig,
    dst: &ConnConfig,
    names: &ObjectNames,
    source: &tokio_postgres::Client,
    opts: &FollowOptions,
    reporter: &dyn Reporter,
    observer: Observer<'_>,
) -> Result<CloneSummary, FollowError> {
    publication::create_publication(source, &names.publication, &opts.clone.filter).await?;
    let result = async {
        if opts.ddl_capture {
            // Before the slot: every statement after its snapshot is in the stream.
            ddl_capture::install(source, &names.publication).await?;
        }
        let mut repl = ReplicationConnection::connect(src).await?;
        let created = repl.create_slot(&names.slot, false, true).await?;
        observer(FollowEvent::SnapshotHeld);
        let clone_opts = CloneOptions {
            snapshot: created.snapshot_name.clone(),
            ..opts.clone.clone()
        };
        // `repl` stays idle (and the snapshot valid) until the copy is done.
        let summary = clone_database(src, dst, &clone_opts, reporter).await?;
        let _ = repl.close().await;
        let target = open("target", dst).await?;
        state::ensure(&target.client)
            .await
            .map_err(|e| FollowError::target("creating pgferry.apply_progress", e))?;
        state::store(&target.client, &names.slot, created.consistent_point)
            .await
            .map_err(|e| FollowError::target("storing the start position", e))?;
        schema_follow::seed_relations(source, &target.client, &names.publication, &names.slot)
            .await?;
        Ok::<_, FollowError>(summary)
    }
    .await;
    if result.is_err() {
        let _ = slot::drop(source, &names.slot).await;
        let _ = publication::drop_publication(source, &names.publication).await;
    }
    result
}

/// The applier's schema follower, rendering new tables as the clone rendered the others.
async fn schema_follower(
    src: &ConnConfig,
    target: &tokio_postgres::Client,
    slot: &str,
    opts: &FollowOptions,
) -> Result<SchemaFollower, FollowError> {
    let dump = dump_options(target, opts).await?;
    Ok(SchemaFollower::new(src.clone(), target, slot, dump).await?)
}

/// How DDL is rendered for this target, as the clone rendered it.
async fn dump_options(
    target: &tokio_postgres::Client,
    opts: &FollowOptions,
) -> Result<DumpOptions, FollowError> {
    let me = access::TargetUser::read(target)
        .await
        .map_err(|e| FollowError::target("reading the target user's attributes", e))?;
    Ok(DumpOptions {
        no_owner: opts.clone.owners.no_owner,
        no_privileges: opts.clone.no_privileges,
        owners_not_kept: opts.clone.owners.refused(),
        grants_by_set_role: !me.superuser,
        target_major: Some((me.server_version_num / 10000) as u32),
        ..DumpOptions::default()
    })
}

/// Why a session ended without error.
/// Runs one [`session`] on a thread of its own, with a single-threaded runtime, and relays its
/// events to `observer` from the caller's task.
///
/// Streaming is one pipeline (socket → decoder → applier → target connection) whose steps
/// hand work to each other per message batch. On a work-stealing runtime each hand-over may
/// wake another worker thread; measured on the bulk drain benchmark, that cost pgferry about
/// twice the CPU time and the source's walsender, competing for the same cores, ran slower.
/// On its own thread the pipeline never migrates, and the caller's runtime (other databases
/// being copied, the status writer) is left alone.
async fn session_on_own_thread(
    src: &ConnConfig,
    dst: &ConnConfig,
    names: &ObjectNames,
    opts: &FollowOptions,
    observer: Observer<'_>,
    applied: &Applied,
    shutdown: watch::Receiver<bool>,
) -> Result<FollowOutcome, FollowError> {
    let (events_tx, mut events) = mpsc::unbounded_channel::<FollowEvent>();
    let (done_tx, done) = tokio::sync::oneshot::channel();
    let (src, dst, names, opts) = (src.clone(), dst.clone(), names.clone(), opts.clone());
    let applied = applied.clone();
    let spawned = std::thread::Builder::new()
        .name("pgferry-stream".into())
        .spawn(move || {
            let result = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(async {
                    // Stop when asked, or when the caller is gone (its future was dropped).
                    let (stop_tx, stop_rx) = watch::channel(false);
                    let mut outer = shutdown;
                    let closed = events_tx.clone();
                    let watcher = tokio::spawn(async move {
                        tokio::select! {
                            true = wait_shutdown(&mut outer) => {}
                            _ = closed.closed() => {}
                        }
                        let _ = stop_tx.send(true);
                    });
                    let relay = move |event: FollowEvent| {
                        let _ = events_tx.send(event);
                    };
                    let ctx = SessionCtx {
                        src: &src,
                        dst: &dst,
                        names: &names,
                        opts: &opts,
                        observer: &relay,
                        applied: &applied,
                    };
                    let result = session(ctx, stop_rx).await;
                    watcher.abort();
                    result
                }),
                Err(e) => Err(FollowError::Runtime(e.to_string())),
            };
            let _ = done_tx.send(result);
        });
    if let Err(e) = spawned {
        return Err(FollowError::Runtime(e.to_string()));
    }
    let mut done = done;
    loop {
        tokio::select! {
            Some(event) = events.recv() => observer(event),
            result = &mut done => {
                while let Ok(event) = events.try_recv() {
                    observer(event);
                }
                return result.unwrap_or_else(|_| {
                    Err(FollowError::Runtime("the streaming thread ended without a result".into()))
                });
            }
        }
    }
}

/// How far apply got, shared by the streaming sessions of one follow: the applied position
/// (what feedback may confirm) and the source transactions committed on the target.
#[derive(Clone)]
struct Applied {
    lsn: watch::Sender<Lsn>,
    transactions: Arc<AtomicU64>,
}

enum SessionEnd {
    Cutover { lag: u64 },
    Shutdown,
}

/// What every step of one streaming session reads: its settings, where it reports, and how
/// far apply got.
#[derive(Clone, Copy)]
struct SessionCtx<'a> {
    src: &'a ConnConfig,
    dst: &'a ConnConfig,
    names: &'a ObjectNames,
    opts: &'a FollowOptions,
    observer: Observer<'a>,
    applied: &'a Applied,
}

/// One streaming session: target session + applier, replication connection + pump, lag
/// monitor. Ends on error, shutdown, or cutover (which it then carries out).
async fn session(
    ctx: SessionCtx<'_>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<FollowOutcome, FollowError> {
    let SessionCtx {
        src,
        dst,
        names,
        observer,
        ..
    } = ctx;
    let target = open("target", dst).await?;
    let target_major = server_major(&target.client)
        .await
        .map_err(|e| FollowError::target("reading the server version", e))?;
    let source = open("source", src).await?;
    take_applier_lock(&source.client, &target.client, names, dst).await?;
    let stored = state::load(&target.client, &names.slot)
        .await
        .map_err(|e| FollowError::target("reading the applied position", e))?
        .ok_or_else(|| FollowError::SlotWithoutProgress {
            slot: names.slot.clone(),
            publication: names.publication.clone(),
            database: dst.dbname.clone(),
        })?;
    let (applier, capture_key, source_watch) =
        start_applier(ctx, target.client, &source.client, stored).await?;
    let mut started = start_stream(
        ctx,
        &source.client,
        stored,
        target_major,
        capture_key.is_some(),
    )
    .await?;
    observer(FollowEvent::Streaming {
        from: started.start,
        binary: started.options.binary,
    });
    let ended = stream_and_apply(
        ctx,
        &mut started,
        applier,
        &source.client,
        source_watch,
        &mut shutdown,
    )
    .await?;
    end_session(ctx, started.stream, &source.client, ended).await
}

/// Before touching the target: nobody else streams from the slot (refused at once when another
/// live process does), and this session holds the slot's applier lock. A previous session's
/// applier may still be committing its last batch; the position is read once it is gone (see
/// state::lock_applier).
async fn take_applier_lock(
    source: &tokio_postgres::Client,
    target: &tokio_postgres::Client,
    names: &ObjectNames,
    dst: &ConnConfig,
) -> Result<(), FollowError> {
    wait_slot_free(source, &names.slot).await?;
    let lock = |wait| state::lock_applier(target, &names.slot, wait);
    let mut locked = lock(Duration::from_secs(2))
        .await
        .map_err(|e| FollowError::target("taking the applier lock", e))?;
    if !locked {
        // Held: by another live process streaming this slot (whose walsender may have looked
        // idle a moment ago: refused now, naming it), or by our own previous session's
        // applier finishing its last batch (waited for).
        wait_slot_free(source, &names.slot).await?;
        locked = lock(APPLIER_LOCK_WAIT)
            .await
            .map_err(|e| FollowError::target("taking the applier lock", e))?;
    }
    if !locked {
        return Err(FollowError::ApplierBusy {
            slot: names.slot.clone(),
            database: dst.dbname.clone(),
        });
    }
    Ok(())
}

/// The applier on the target session from `stored` on (the replica role when this user may
/// have it; otherwise the ordered apply), with its schema follower and the DDL capture's key,
/// the source watch sharing the follower's known tables, and the triggers apply would fire
/// held until the cutover.
async fn start_applier(
    ctx: SessionCtx<'_>,
    target: tokio_postgres::Client,
    source: &tokio_postgres::Client,
    stored: Lsn,
) -> Result<(Applier, Option<String>, super::source_watch::SourceWatch), FollowError> {
    let (names, opts) = (ctx.names, ctx.opts);
    let mut applier = Applier::new(
        target,
        &names.slot,
        stored,
        opts.batch,
        ctx.applied.lsn.clone(),
        opts.create_aiven_extras,
    )
    .await?;
    applier.count_transactions_into(ctx.applied.transactions.clone());
    let mut follower = schema_follower(ctx.src, applier.client(), &names.slot, opts).await?;
    let capture_key = if opts.ddl_capture {
        ddl_capture::key(source, &names.publication).await?
    } else {
        None
    };
    if let Some(key) = capture_key.clone() {
        follower.capture(key);
    }
    let source_watch = super::source_watch::SourceWatch::new(
        names,
        &opts.clone.filter,
        opts.max_slot_retained,
        opts.lag_interval,
        follower.known(),
    );
    applier.follow_schema(follower);
    let mode = applier.mode();
    tracing::info!("applying changes with {}", mode.describe());
    // Triggers and rules that would fire during apply stay off until the cutover.
    let held = triggers::replica_triggers(source, mode)
        .await
        .map_err(|e| FollowError::source("listing the triggers that apply would fire", e))?;
    let disabled = triggers::hold(applier.client(), &held)
        .await
        .map_err(|e| FollowError::target("disabling the triggers that apply would fire", e))?;
    if disabled > 0 {
        tracing::info!(
            "{disabled} trigger(s) and rule(s) that would fire during apply are disabled on the \
             target until the cutover, so that apply does not repeat their effects"
        );
    }
    Ok((applier, capture_key, source_watch))
}

/// A replication stream just started, with what it was started with.
struct StartedStream {
    stream: ReplicationStream,
    start: Lsn,
    status_interval: Duration,
    options: StartOptions,
}

/// Checks the slot is still there and valid, then starts streaming from it at the later of
/// `stored` and its confirmed position, with the options both servers allow.
async fn start_stream(
    ctx: SessionCtx<'_>,
    source: &tokio_postgres::Client,
    stored: Lsn,
    target_major: u32,
    capture: bool,
) -> Result<StartedStream, FollowError> {
    let names = ctx.names;
    let Some(confirmed) = slot::confirmed_flush(source, &names.slot).await? else {
        return Err(FollowError::SlotGone(names.slot.clone()));
    };
    let invalidated = || FollowError::SlotInvalidated {
        slot: names.slot.clone(),
        database: ctx.dst.dbname.clone(),
    };
    if slot_lost(source, &names.slot).await? {
        return Err(invalidated());
    }
    // The server would start at its confirmed position anyway; say so explicitly. What it
    // resends between there and `stored` is skipped by the applier.
    let start = stored.max(confirmed.unwrap_or(Lsn::INVALID));
    let binary = use_binary(source, target_major).await?;
    let mut repl = ReplicationConnection::connect(ctx.src).await?;
    let status_interval = status_interval(&mut repl).await;
    let source_major = server_major(source)
        .await
        .map_err(|e| FollowError::source("reading the server version", e))?;
    // Large transactions streamed while in progress (PostgreSQL 14+): the source sends them
    // as they happen instead of spilling them to its disk until they commit; the applier
    // keeps them in spool files until their Stream Commit.
    let streaming = source_major >= 14;
    let options = StartOptions {
        proto_version: if streaming { 2 } else { 1 },
        publication_names: vec![names.publication.clone()],
        binary,
        streaming,
        // The capture's statements (PostgreSQL 14+, checked when it was installed).
        messages: capture && source_major >= 14,
    };
    let stream = match repl.start_with(&names.slot, start, &options).await {
        Ok(stream) => stream,
        // The server refuses to stream from a slot it invalidated meanwhile: say that.
        Err(e) if !e.is_transient() && slot_lost(source, &names.slot).await? => {
            return Err(invalidated());
        }
        // Another process started streaming from it since we looked.
        Err(ReplicationError::Server { error, .. })
            if error.code == SqlState::OBJECT_IN_USE.code() =>
        {
            let pid: String = error
                .message
                .split("PID ")
                .nth(1)
                .map(|rest| rest.chars().take_while(char::is_ascii_digit).collect())
                .unwrap_or_else(|| "?".into());
            return Err(FollowError::SlotInUse {
                slot: names.slot.clone(),
                holder: format!("PID {pid}"),
            });
        }
        Err(e) => return Err(e.into()),
    };
    Ok(StartedStream {
        stream,
        start,
        status_interval,
        options,
    })
}

/// The pipeline until it ends: the pump and the lag monitor on this thread, the applier on a
/// thread of its own. Returns why streaming ended (shutdown, or lag low enough to cut over).
async fn stream_and_apply(
    ctx: SessionCtx<'_>,
    started: &mut StartedStream,
    mut applier: Applier,
    source: &tokio_postgres::Client,
    source_watch: super::source_watch::SourceWatch,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<SessionEnd, FollowError> {
    let applied = ctx.applied;
    let (tx, mut rx) = mpsc::channel::<Vec<ApplyItem>>(64);
    let applied_rx = applied.lsn.subscribe();
    let (start, status_interval) = (started.start, started.status_interval);
    let proto_version = started.options.proto_version;
    let stream = &mut started.stream;
    let stream_side = async {
        let ended = tokio::select! {
            r = pump(stream, tx, applied_rx.clone(), start, status_interval, proto_version) => {
                r?;
                // The applier hung up: its own error tells why.
                SessionEnd::Shutdown
            }
            end = monitor(source, &applied_rx, &applied.transactions, ctx.opts, source_watch, ctx.observer, shutdown) => end?,
        };
        // `tx` is gone with the pump: the applier finishes what it has and returns.
        Ok::<_, FollowError>(ended)
    };
    // The applier runs on a thread of its own: however long it works on a change (a spooled
    // transaction of a million rows, a slow target), the stream's thread stays free to answer
    // the server's keepalives, which wal_sender_timeout would otherwise end the connection on.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("pgferry-apply".into())
        .spawn(move || {
            let result = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(async move { applier.run(&mut rx).await }),
                Err(e) => Err(ApplyError::Stream(format!(
                    "could not start the apply thread's runtime: {e}"
                ))),
            };
            let _ = done_tx.send(result);
        })
        .map_err(|e| FollowError::Runtime(format!("the apply thread: {e}")))?;
    let apply_side = async {
        match done_rx.await {
            Ok(result) => result.map_err(FollowError::from),
            Err(_) => Err(FollowError::Runtime(
                "the apply thread ended without a result".into(),
            )),
        }
    };
    let (ended, ()) = tokio::try_join!(stream_side, apply_side)?;
    Ok(ended)
}

/// Confirms the applied position, leaves COPY mode, and either stops (slot and publication
/// kept for a rerun) or carries out the cutover.
async fn end_session(
    ctx: SessionCtx<'_>,
    mut stream: ReplicationStream,
    source: &tokio_postgres::Client,
    ended: SessionEnd,
) -> Result<FollowOutcome, FollowError> {
    let names = ctx.names;
    let applied = *ctx.applied.lsn.borrow();
    // Tell the server where we are, then leave COPY mode.
    stream.send_status(applied, applied, applied, false).await?;
    let mut repl = stream.stop().await?;
    match ended {
        SessionEnd::Shutdown => {
            let _ = repl.close().await;
            Ok(FollowOutcome::Stopped { applied })
        }
        SessionEnd::Cutover { lag } => {
            (ctx.observer)(FollowEvent::CutoverStarted { lag });
            let target =
                settle_target(ctx.src, ctx.dst, names, ctx.opts, source, ctx.observer).await?;
            repl.drop_slot(&names.slot, false).await?;
            let _ = repl.close().await;
            publication::drop_publication(source, &names.publication).await?;
            state::forget(&target.client, &names.slot)
                .await
                .map_err(|e| FollowError::target("removing the progress row", e))?;
            Ok(FollowOutcome::CutOver { applied })
        }
    }
}

/// The cutover's work on the target once the stream stopped: tables never streamed copied,
/// the schema reconciled, sequences synced, held triggers released, a temporary aiven_extras
/// dropped. Returns the target session (the progress row goes last).
async fn settle_target(
    src: &ConnConfig,
    dst: &ConnConfig,
    names: &ObjectNames,
    opts: &FollowOptions,
    source: &tokio_postgres::Client,
    observer: Observer<'_>,
) -> Result<crate::conn::Session, FollowError> {
    let target = open("target", dst).await?;
    // What the stream could not carry of the source's schema changes, before the
    // sequences (a new identity's sequence) and the triggers (new ones).
    let dump = dump_options(&target.client, opts).await?;
    let mut follower =
        SchemaFollower::new(src.clone(), &target.client, &names.slot, dump.clone()).await?;
    for table in follower
        .copy_unstreamed(
            source,
            &target.client,
            &names.publication,
            &opts.clone.filter,
        )
        .await?
    {
        tracing::info!(
            "{table}, created on the source while streaming and not written to since, \
             copied at cutover"
        );
    }
    let reconciled = reconcile::reconcile(source, &target.client, &names.slot, &dump).await?;
    if !reconciled.is_empty() {
        observer(FollowEvent::SchemaReconciled(Box::new(reconciled)));
    }
    let values = sequences::read(source).await?;
    sequences::apply(&target.client, &values).await?;
    observer(FollowEvent::SequencesSynced(values.len()));
    // Read again: the source is the reference, whatever a crash left on the target.
    let held = triggers::all_triggers(source)
        .await
        .map_err(|e| FollowError::source("listing triggers and rules", e))?;
    let enabled = triggers::release(&target.client, &held)
        .await
        .map_err(|e| FollowError::target("enabling triggers held during streaming", e))?;
    if enabled > 0 {
        tracing::info!("{enabled} trigger(s) and rule(s) set back as on the source");
    }
    if access::drop_aiven_extras_if_ours(source, &target.client)
        .await
        .map_err(|e| FollowError::target("dropping aiven_extras created for apply", e))?
    {
        tracing::info!(
            "aiven_extras, created on the target for the replica role, dropped (the source database does not have it)"
        );
    }
    Ok(target)
}

/// Reports the lag (source WAL insert position − applied position) every `lag_interval`;
/// returns when it is small enough for the cutover, or on shutdown.
async fn monitor(
    source: &tokio_postgres::Client,
    applied: &watch::Receiver<Lsn>,
    transactions: &AtomicU64,
    opts: &FollowOptions,
    mut watch: super::source_watch::SourceWatch,
    observer: Observer<'_>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<SessionEnd, FollowError> {
    let mut last_report: Option<Instant> = None;
    loop {
        if let Some(tick) = watch.tick(source).await? {
            if let Some(tables) = tick.not_replicated {
                observer(FollowEvent::NotReplicated(tables));
            }
            if let Some(retention) = tick.retention {
                observer(FollowEvent::SlotRetention(retention));
            }
        }
        let row = source
            // The insert position, not pg_current_wal_lsn() (the write position): with
            // synchronous_commit = off a committed transaction may not be written yet, and a
            // cutover at "lag 0" would leave it behind.
            // The lag in time as the server measures it for our walsender (PostgreSQL 10+).
            .query_one(
                "SELECT pg_catalog.pg_current_wal_insert_lsn()::text, \
                        (SELECT extract(epoch FROM r.replay_lag)::float8 \
                           FROM pg_catalog.pg_stat_replication r \
                           JOIN pg_catalog.pg_replication_slots s ON s.active_pid = r.pid \
                          WHERE s.slot_name = $1)",
                &[&watch.slot()],
            )
            .await
            .map_err(|e| FollowError::source("reading the current WAL position", e))?;
        let replay_lag: Option<f64> = row.get(1);
        let current: Lsn =
            row.get::<_, String>(0)
                .parse()
                .map_err(|_| FollowError::Unexpected {
                    what: "reading the current WAL position".into(),
                    message: "not an LSN".into(),
                })?;
        let done = *applied.borrow();
        let lag = current.0.saturating_sub(done.0);
        if last_report.is_none_or(|t| t.elapsed() >= opts.lag_interval) {
            observer(FollowEvent::Lag {
                bytes: lag,
                applied: done,
                // The server shows no lag once the walsender caught up and idles.
                seconds: replay_lag.or((lag == 0).then_some(0.0)),
                transactions: transactions.load(std::sync::atomic::Ordering::Relaxed),
            });
            last_report = Some(Instant::now());
        }
        if opts.cutover_at_lag.is_some_and(|max| lag <= max) {
            return Ok(SessionEnd::Cutover { lag });
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            true = wait_shutdown(shutdown) => return Ok(SessionEnd::Shutdown),
        }
    }
}

/// True once `shutdown` is set; false if its sender is gone (then it never will be), which a
/// `true = ...` select! branch reads as "disabled".
async fn wait_shutdown(shutdown: &mut watch::Receiver<bool>) -> bool {
    shutdown.wait_for(|s| *s).await.is_ok()
}

/// The server's major version (`server_version_num` / 10000).
async fn server_major(client: &tokio_postgres::Client) -> Result<u32, tokio_postgres::Error> {
    let num = crate::compat::server_version_num(client).await?;
    Ok(u32::try_from(num / 10000).unwrap_or(0))
}

/// Binary values only when they are surely readable by the target: same major version (14+
/// for the option) and no published column of a user-defined type, whose binary form may
/// embed source OIDs (arrays, records).
async fn use_binary(
    source: &tokio_postgres::Client,
    target_major: u32,
) -> Result<bool, FollowError> {
    let src_major = server_major(source)
        .await
        .map_err(|e| FollowError::source("reading the server version", e))?;
    if src_major < 14 || src_major != target_major {
        return Ok(false);
    }
    let row = source
        .query_one(
            "SELECT NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a \
               JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
               JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
             WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND (t.oid >= 16384 OR t.typelem >= 16384 OR t.typtype NOT IN ('b', 'p')))",
            &[],
        )
        .await
        .map_err(|e| FollowError::source("checking column types", e))?;
    Ok(row.get(0))
}

/// How often to send a status update even with nothing new: well within the server's
/// `wal_sender_timeout`, at most every 10 s.
async fn status_interval(repl: &mut ReplicationConnection) -> Duration {
    let default = Duration::from_secs(10);
    let Ok(results) = repl.simple_query("SHOW wal_sender_timeout").await else {
        return default;
    };
    let text = results
        .first()
        .and_then(|r| r.rows.first())
        .and_then(|row| row.first().cloned().flatten())
        .unwrap_or_default();
    let millis = parse_pg_duration_ms(&text).unwrap_or(60_000);
    if millis == 0 {
        return default;
    }
    Duration::from_millis(millis / 3).clamp(Duration::from_millis(500), default)
}

/// `60s`, `6000ms`, `1min`, `0` as SHOW prints them.
fn parse_pg_duration_ms(text: &str) -> Option<u64> {
    let digits: String = text.chars().take_while(|c| c.is_ascii_digit()).collect();
    let n: u64 = digits.parse().ok()?;
    let unit = text[digits.len()..].trim();
    Some(match unit {
        "" | "ms" => n,
        "s" => n * 1000,
        "min" => n * 60_000,
        "h" => n * 3_600_000,
        "d" => n * 86_400_000,
        _ => return None,
    })
}

/// Drops our slot and publication for the source database `src` (idempotent), and the
/// progress row in `dst` if that database exists. For abandoning a live migration.
pub async fn cleanup(src: &ConnConfig, dst: &ConnConfig, mangle: bool) -> Result<(), FollowError> {
    let names = publication::names_for(&src.dbname, mangle);
    let source = open("source", src).await?;
    slot::drop(&source.client, &names.slot).await?;
    publication::drop_publication(&source.client, &names.publication).await?;
    match connect(dst).await {
        Ok(target) => state::forget(&target.client, &names.slot)
            .await
            .map_err(|e| FollowError::target("removing the progress row", e)),
        Err(e)
            if e.code()
                .is_some_and(|c| *c == SqlState::INVALID_CATALOG_NAME) =>
        {
            Ok(())
        }
        Err(source) => Err(FollowError::Connect {
            role: "target",
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_durations() {
        assert_eq!(parse_pg_duration_ms("60s"), Some(60_000));
        assert_eq!(parse_pg_duration_ms("6000ms"), Some(6000));
        assert_eq!(parse_pg_duration_ms("1min"), Some(60_000));
        assert_eq!(parse_pg_duration_ms("0"), Some(0));
        assert_eq!(parse_pg_duration_ms("x"), None);
    }
}
