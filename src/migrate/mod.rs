//! `pgferry migrate`: a whole cluster (or chosen databases), the seed tool's workflow.
//!
//! ```text
//!  state lock ─► preflight (read-only) ─► [--validate: report, stop] ─► roles
//!     ─► databases, --db-jobs at a time:  create like the source + settings
//!            pg_dump method:     clone_database                     ─► done
//!            replication method: follow_database (copy, stream)    ─► syncing ─► cutover ─► done
//!  stop request (pgferry stop) or --stop-replication ─► cutover at the asked lag
//! ```
//!
//! Everything a run learns is written to schema `pgferry` of the target's bootstrap database
//! ([`crate::state::migration`]) by one writer task, so that `status` works from another terminal and a rerun
//! knows what is finished: finished databases are skipped, streaming resumes from the stored
//! position, and a database whose copy was interrupted is emptied and copied again (tables
//! copied under two different snapshots would not be consistent with each other).

pub mod bootstrap;
pub mod config;
pub mod finish;
pub mod globals;
pub mod plan;
pub mod preflight;
pub mod status;

use crate::clone::database;
use crate::clone::{clone_database, CloneError, CloneOptions};
use crate::conn::{connect, ConnConfig, ConnectError, Session};
use crate::copy::{CopyStats, ProgressSink, TableJob};
use crate::progress::Reporter;
use crate::replication::{
    follow_database, publication, state as apply_state, FollowError, FollowEvent, FollowOptions,
    FollowOutcome,
};
use crate::server::access;
use crate::state::lifecycle::{DatabaseStatus, MigrationStatus, Phase};
use crate::state::migration::{DatabaseRow, Store, StoreError, Update};
use crate::units::count;
use preflight::{DatabasePlan, Method, Preflight, PreflightError, PreflightOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{mpsc, watch};

/// Everything `migrate` was asked.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    pub preflight: PreflightOptions,
    /// Copy settings shared by every database (the table filter is set per database).
    pub clone: CloneOptions,
    pub db_jobs: usize,
    /// `--stop-replication --max-replication-lag N`: cut over once the lag is at most N.
    pub cutover_at_lag: Option<u64>,
    pub migration_id: Option<String>,
    pub show_passwords: bool,
    pub retry_for: Duration,
    /// `--max-slot-retained`: see [`crate::replication::source_watch`].
    pub max_slot_retained: Option<u64>,
    /// `--ddl-capture`: see [`crate::replication::ddl_capture`].
    pub ddl_capture: bool,
    /// Options as the user gave them, recorded in the state (never a password).
    pub recorded_options: serde_json::Value,
}

/// How a run is steered from outside: Ctrl-C, or a cutover asked by `pgferry stop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Run,
    /// Cut over every streaming database once its lag is at most this many bytes.
    CutOver(u64),
    /// Stop now; streaming databases keep their slot and resume on the next run.
    Interrupt,
}

/// What the caller shows to the user. `db` is `None` for messages about the whole migration.
pub trait Output: Send + Sync {
    fn message(&self, db: Option<&str>, text: &str);
    /// Progress of one database (a table finished...): shown only in verbose mode.
    fn detail(&self, db: &str, text: &str);
    fn roles(&self, outcomes: &[globals::RoleOutcome], show_passwords: bool);
    /// Where the live state of each database goes (the live view, the metrics endpoint);
    /// `None` when nobody watches.
    fn board(&self) -> Option<&crate::live::Board> {
        None
    }
}

#[derive(Debug, Error)]
pub enum MigrateError {
    #[error("{role}: {source}")]
    Connect {
        role: &'static str,
        #[source]
        source: ConnectError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error("preflight failed: nothing was created or changed on either server")]
    PreflightFailed(Box<Preflight>),
    #[error(
        "a migration is already running into this target (another pgferry process holds its lock in \
         database \"{database}\"); it was left alone. Use `pgferry status -t ...` to watch it, or \
         `pgferry stop -t ...` to cut it over"
    )]
    AlreadyRunning { database: String },
    #[error(
        "another pgferry migrate took the run lock of target database \"{database}\" while this \
         one's connection to it was down; this run stopped so that two do not run side by side \
         (its streaming databases keep their slots). `pgferry status -t ...` shows the other run"
    )]
    LockLost { database: String },
    #[error("roles: {0}")]
    Globals(#[from] globals::GlobalsError),
}

/// What happened to one database in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseOutcome {
    /// Finished (copied, or cut over).
    Done,
    /// Finished by an earlier run; nothing to do.
    AlreadyDone,
    /// Copied and streaming when the run stopped: a rerun or `pgferry stop` continues.
    Syncing,
    Failed(String),
}

/// The end of a run.
#[derive(Debug, Clone)]
pub struct MigrationReport {
    pub id: String,
    pub preflight: Preflight,
    pub roles: Vec<globals::RoleOutcome>,
    pub databases: Vec<(String, DatabaseOutcome)>,
}

impl MigrationReport {
    pub fn failed(&self) -> bool {
        self.databases
            .iter()
            .any(|(_, o)| matches!(o, DatabaseOutcome::Failed(_)))
    }
}

async fn open(role: &'static str, cfg: &ConnConfig) -> Result<Session, MigrateError> {
    connect(cfg)
        .await
        .map_err(|source| MigrateError::Connect { role, source })
}

/// The default migration id: stable for the same source server, so rerunning the same
/// command resumes.
pub fn default_migration_id(fingerprint: &str) -> String {
    use md5::{Digest, Md5};
    let digest = Md5::digest(fingerprint.as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("pgferry-{hex}")
}

/// Runs only the checks (`--validate`): nothing is created or changed on either server.
pub async fn validate(
    src: &ConnConfig,
    dst: &ConnConfig,
    opts: &MigrateOptions,
) -> Result<Preflight, MigrateError> {
    let bootstrap = open("target", dst).await?;
    let store = Store::new(&bootstrap.client, &dst.dbname);
    let rows = match store.migration().await? {
        Some(m) => store.databases(&m.id).await?,
        None => Vec::new(),
    };
    Ok(preflight::run(src, dst, &opts.preflight, &rows).await?)
}

/// Runs the migration. `control` steers it (Ctrl-C, stop); a stop request written by
/// `pgferry stop` into the state is turned into [`Control::CutOver`] here.
pub async fn run(
    src: &ConnConfig,
    dst: &ConnConfig,
    opts: &MigrateOptions,
    out: &dyn Output,
    control: watch::Receiver<Control>,
) -> Result<MigrationReport, MigrateError> {
    // The lock session lives as long as the run.
    let lock_session = open("target", dst).await?;
    let Begun {
        id,
        checks,
        prior_rows,
    } = begin(src, dst, opts, out, &lock_session.client).await?;

    // Roles before databases: databases and objects have owners.
    let roles = {
        let source = open("source", src).await?;
        let g = globals::read_globals(&source.client).await?;
        let outcomes = globals::apply_roles(
            &lock_session.client,
            &g,
            &globals::RoleOptions {
                excluded: opts.preflight.excluded_roles.clone(),
            },
        )
        .await?;
        out.roles(&outcomes, opts.show_passwords);
        outcomes
    };

    // One task keeps the bootstrap session from here on: the run lock, the state updates in
    // order, `pgferry stop`'s requests turned into CutOver; it reconnects when it breaks.
    let (control_tx, control_rx) = watch::channel(*control.borrow());
    let (updates, keeper) = bootstrap::Keeper {
        dst: dst.clone(),
        id: id.clone(),
        session: lock_session,
        control_in: control.clone(),
        control_tx,
    }
    .spawn();

    if let Some(board) = out.board() {
        for plan in &checks.databases {
            board.add(&plan.name);
            board.method(&plan.name, plan.method.as_status());
        }
    }
    let ctx = Context {
        src,
        dst,
        opts,
        id: &id,
        out,
        updates: &updates,
        control: control_rx,
        copy_slots: Arc::new(tokio::sync::Semaphore::new(opts.db_jobs.max(1))),
    };
    // Every database runs at once, but only `db_jobs` of them copy at a time: a live
    // database gives its permit back when it starts streaming, which lasts until cutover.
    let results: Vec<(String, DatabaseOutcome)> =
        futures::future::join_all(checks.databases.iter().map(|plan| {
            let ctx = &ctx;
            let prior = prior_rows.iter().find(|r| r.dbname == plan.name).cloned();
            async move {
                let outcome = ctx.migrate_database(plan, prior).await;
                (plan.name.clone(), outcome)
            }
        }))
        .await;
    drop(ctx);
    drop(updates);
    let exit = keeper.await.unwrap_or(bootstrap::Exit::Unreachable);

    let mut databases = results;
    databases.sort_by(|a, b| a.0.cmp(&b.0));
    let (status, error) = migration_outcome(&databases);
    match exit {
        bootstrap::Exit::Finished(session) => {
            Store::new(&session.client, &dst.dbname)
                .finish(&id, status, error.as_deref())
                .await?;
        }
        bootstrap::Exit::LockLost => {
            return Err(MigrateError::LockLost {
                database: dst.dbname.clone(),
            })
        }
        // Logged by the keeper; the outcome below is still this run's.
        bootstrap::Exit::Unreachable => {}
    }
    Ok(MigrationReport {
        id,
        preflight: checks,
        roles,
        databases,
    })
}

/// A migration that passed preflight and is recorded in the state.
struct Begun {
    id: String,
    checks: Preflight,
    /// The databases' rows of an earlier run of the same migration.
    prior_rows: Vec<DatabaseRow>,
}

/// Takes the run lock on `lock_client` (the session that keeps it for the whole run), runs
/// preflight (knowing what an earlier run recorded) and records the migration, or finds it
/// recorded by an earlier run (a resume).
async fn begin(
    src: &ConnConfig,
    dst: &ConnConfig,
    opts: &MigrateOptions,
    out: &dyn Output,
    lock_client: &tokio_postgres::Client,
) -> Result<Begun, MigrateError> {
    let store = Store::new(lock_client, &dst.dbname);
    if !store.try_lock().await? {
        return Err(MigrateError::AlreadyRunning {
            database: dst.dbname.clone(),
        });
    }
    let prior = store.migration().await?;
    let prior_rows = match &prior {
        Some(m) => store.databases(&m.id).await?,
        None => Vec::new(),
    };
    let checks = preflight::run(src, dst, &opts.preflight, &prior_rows).await?;
    for w in &checks.warnings {
        out.message(None, &format!("warning: {w}"));
    }
    if !checks.passed() {
        return Err(MigrateError::PreflightFailed(Box::new(checks)));
    }
    let id = opts
        .migration_id
        .clone()
        .unwrap_or_else(|| default_migration_id(&checks.source_fingerprint));
    let prior = store
        .begin(
            &id,
            &src.display_target(),
            &checks.source_fingerprint,
            &opts.recorded_options,
        )
        .await?;
    let prior_rows = if prior.is_some() {
        store.databases(&id).await?
    } else {
        Vec::new()
    };
    out.message(
        None,
        &format!(
            "migration {id}: {} → {} ({} database{}){}",
            src.display_target(),
            dst.display_target(),
            checks.databases.len(),
            if checks.databases.len() == 1 { "" } else { "s" },
            if prior.is_some() { ", resuming" } else { "" }
        ),
    );
    Ok(Begun {
        id,
        checks,
        prior_rows,
    })
}

/// The migration's status (and error) from its databases' outcomes: failed when one failed,
/// syncing when one still streams, else done.
fn migration_outcome(databases: &[(String, DatabaseOutcome)]) -> (MigrationStatus, Option<String>) {
    let failed: Vec<&str> = databases
        .iter()
        .filter(|(_, o)| matches!(o, DatabaseOutcome::Failed(_)))
        .map(|(n, _)| n.as_str())
        .collect();
    if !failed.is_empty() {
        (
            MigrationStatus::Failed,
            Some(format!("failed: {}", failed.join(", "))),
        )
    } else if databases
        .iter()
        .any(|(_, o)| *o == DatabaseOutcome::Syncing)
    {
        (MigrationStatus::Syncing, None)
    } else {
        (MigrationStatus::Done, None)
    }
}

struct Context<'a> {
    src: &'a ConnConfig,
    dst: &'a ConnConfig,
    opts: &'a MigrateOptions,
    id: &'a str,
    out: &'a dyn Output,
    updates: &'a mpsc::UnboundedSender<Update>,
    control: watch::Receiver<Control>,
    /// `--db-jobs`: how many databases may be copying at the same time.
    copy_slots: Arc<tokio::sync::Semaphore>,
}

/// Why a database's migration stopped, before it is turned into a [`DatabaseOutcome`].
#[derive(Debug, Error)]
enum DbError {
    #[error(transparent)]
    Clone(#[from] CloneError),
    #[error(transparent)]
    Follow(#[from] FollowError),
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    #[error("{0}")]
    Other(String),
}

impl Context<'_> {
    fn send(&self, update: Update) {
        let _ = self.updates.send(update);
    }

    /// The live view's state, when somebody watches.
    fn live(&self, f: impl FnOnce(&crate::live::Board)) {
        if let Some(board) = self.out.board() {
            f(board);
        }
    }

    /// The database entered `phase`: the live view and the state (with the status that goes
    /// with the phase) learn it.
    fn phase(&self, db: &str, phase: Phase) {
        self.live(|b| b.phase(db, phase));
        self.send(Update::Phase {
            db: db.to_owned(),
            phase,
        });
    }

    async fn migrate_database(
        &self,
        plan: &DatabasePlan,
        prior: Option<DatabaseRow>,
    ) -> DatabaseOutcome {
        let db = plan.name.as_str();
        if prior
            .as_ref()
            .is_some_and(|p| p.status == DatabaseStatus::Done)
        {
            self.out
                .message(Some(db), "done by an earlier run; skipped");
            self.live(|b| b.phase(db, Phase::Done));
            return DatabaseOutcome::AlreadyDone;
        }
        if *self.control.borrow() == Control::Interrupt {
            return DatabaseOutcome::Failed("interrupted before it started".into());
        }
        // The row first, synchronously, so that status shows every database from the start.
        if let Ok(session) = connect(self.dst).await {
            let store = Store::new(&session.client, &self.dst.dbname);
            if let Err(e) = store
                .start_database(self.id, db, plan.method, plan.reason.as_deref())
                .await
            {
                return DatabaseOutcome::Failed(e.to_string());
            }
        }
        match &plan.reason {
            Some(reason) => self.out.message(
                Some(db),
                &format!("method {} ({reason})", plan.method.as_status()),
            ),
            None => self
                .out
                .message(Some(db), &format!("method {}", plan.method.as_status())),
        }
        let permit = match self.copy_slots.clone().acquire_owned().await {
            Ok(p) => std::sync::Mutex::new(Some(p)),
            Err(_) => return DatabaseOutcome::Failed("internal: copy slots closed".into()),
        };
        let result = match plan.method {
            Method::Dump => self.migrate_by_copy(plan, prior.as_ref()).await,
            Method::Replication => self.migrate_live(plan, prior.as_ref(), &permit).await,
        };
        drop(permit);
        match result {
            Ok(outcome) => {
                match &outcome {
                    DatabaseOutcome::Done => {
                        self.phase(db, Phase::Done);
                        self.out.message(Some(db), "done");
                    }
                    DatabaseOutcome::Syncing => {
                        self.live(|b| b.phase(db, crate::live::LivePhase::Syncing));
                        self.out.message(
                            Some(db),
                            "still syncing: streaming stopped, the slot is kept; rerun the same command to resume, or `pgferry stop` to cut over",
                        )
                    }
                    _ => {}
                }
                outcome
            }
            Err(e) => {
                let message = e.to_string();
                self.live(|b| b.failed(db, &message));
                self.send(Update::Failed {
                    db: db.to_owned(),
                    error: message.clone(),
                });
                self.out.message(Some(db), &format!("FAILED: {message}"));
                DatabaseOutcome::Failed(message)
            }
        }
    }

    /// Makes the target database ready for a fresh copy: removes what an interrupted earlier
    /// run left (dropping the database when pgferry created it, emptying it otherwise),
    /// creates it like the source when missing, and applies its settings.
    async fn prepare_target(
        &self,
        plan: &DatabasePlan,
        prior: Option<&DatabaseRow>,
    ) -> Result<(), DbError> {
        let db = plan.name.as_str();
        let admin = open("target", self.dst).await?;
        let exists = database::database_exists(&admin.client, db).await?;
        let mut created = prior.is_some_and(|p| p.created_db);
        if let Some(p) = prior {
            if exists && p.phase != Phase::Pending {
                if p.created_db && db != self.dst.dbname {
                    self.out.message(
                        Some(db),
                        "an earlier run stopped during the copy: dropping the partial target database and starting again",
                    );
                    drop_database(&admin.client, db).await?;
                } else {
                    self.out.message(
                        Some(db),
                        "an earlier run stopped during the copy: emptying the target database and starting again",
                    );
                    let target = open("target", &self.dst.with_dbname(db)).await?;
                    empty_database(&target.client, db).await?;
                }
            }
        }
        self.send(Update::ForgetTables { db: db.to_owned() });
        if !database::database_exists(&admin.client, db).await? {
            let source = open("source", &self.src.with_dbname(db)).await?;
            let version = crate::compat::server_version_num(&source.client)
                .await
                .map_err(|e| CloneError::source_failed("reading the server version", e))?;
            let props = database::source_props(&source.client, version).await?;
            let owners = &self.opts.clone.owners;
            let source_owners = access::source_owners(&source.client)
                .await
                .map_err(|e| CloneError::source_failed("listing the owners of objects", e))?;
            let me = access::TargetUser::read(&admin.client)
                .await
                .map_err(|e| CloneError::target_failed("reading the target user", e))?;
            let arranged = owners
                .arrange(&admin.client, &source_owners)
                .await
                .map_err(|e| CloneError::target_failed("arranging the owners of objects", e))?;
            for (role, why) in &arranged.newly_refused {
                self.out.message(
                    Some(db),
                    &format!("warning: {}", access::owner_warning(role, &me.name, why)),
                );
            }
            let owner_kept =
                database::create_database(&admin.client, db, &props, owners.usable(&props.owner))
                    .await?;
            created = true;
            if !self.opts.clone.no_privileges {
                let owner = if owner_kept { &props.owner } else { &me.name };
                for w in
                    database::apply_database_acl(&admin.client, db, &props, owner, !me.superuser)
                        .await?
                {
                    self.out.message(Some(db), &format!("warning: {w}"));
                }
            }
            self.send(Update::CreatedDatabase { db: db.to_owned() });
            let role_opts = globals::RoleOptions {
                excluded: self.opts.preflight.excluded_roles.clone(),
            };
            let settings = globals::database_settings_sql(&source.client, db, db, &role_opts)
                .await
                .map_err(MigrateError::from)?;
            for sql in settings {
                if let Err(e) = admin.client.batch_execute(&sql).await {
                    self.out.message(
                        Some(db),
                        &format!(
                            "warning: could not apply a database setting ({}): {}",
                            sql.lines().next().unwrap_or(""),
                            crate::pgerror::server_message(&e)
                        ),
                    );
                }
            }
        }
        let _ = created;
        Ok(())
    }

    fn clone_options(&self, plan: &DatabasePlan) -> CloneOptions {
        CloneOptions {
            filter: plan.filter.clone(),
            existing: database::ExistingTarget::Refuse,
            snapshot: None,
            ..self.opts.clone.clone()
        }
    }

    async fn migrate_by_copy(
        &self,
        plan: &DatabasePlan,
        prior: Option<&DatabaseRow>,
    ) -> Result<DatabaseOutcome, DbError> {
        let db = plan.name.as_str();
        // A database that earlier used replication may have left its slot: ours, remove it.
        if prior.is_some_and(|p| p.method == Method::Replication) {
            self.remove_source_objects(db).await?;
        }
        self.phase(db, Phase::Schema);
        self.prepare_target(plan, prior).await?;
        let reporter = DbProgress::new(self, db);
        let (src_db, dst_db) = (self.src.with_dbname(db), self.dst.with_dbname(db));
        let clone_opts = self.clone_options(plan);
        let copy = clone_database(&src_db, &dst_db, &clone_opts, &reporter);
        let mut control = self.control.clone();
        // The copy exports a snapshot on the source and holds it until the data is copied.
        self.send(Update::Snapshot {
            db: db.to_owned(),
            held: true,
        });
        let copied = tokio::select! {
            r = copy => r.map_err(DbError::from),
            _ = wait_for(&mut control, |c| c == Control::Interrupt) => {
                Err(DbError::Other("interrupted during the copy; rerun to copy this database again".into()))
            }
        };
        self.send(Update::Snapshot {
            db: db.to_owned(),
            held: false,
        });
        let summary = copied?;
        self.live(|b| {
            b.copied(
                db,
                summary.tables.iter().map(|t| t.rows).sum(),
                summary.tables.iter().map(|t| t.bytes).sum(),
            )
        });
        self.out.message(
            Some(db),
            &format!(
                "copied {} ({}) in {:.1}s",
                count(summary.tables.len() as u64, "table"),
                count(summary.tables.iter().map(|t| t.rows).sum::<u64>(), "row"),
                summary.elapsed.as_secs_f64()
            ),
        );
        for w in summary.schema_warnings.iter().chain(&summary.warnings) {
            self.out.message(Some(db), &format!("warning: {w}"));
        }
        Ok(DatabaseOutcome::Done)
    }

    /// Drops this database's slot and publication on the source, if they exist.
    async fn remove_source_objects(&self, db: &str) -> Result<(), DbError> {
        let names = publication::names_for(db, self.opts.preflight.mangle);
        let source = open("source", &self.src.with_dbname(db)).await?;
        crate::replication::slot::drop(&source.client, &names.slot)
            .await
            .map_err(|e| DbError::Other(e.to_string()))?;
        publication::drop_publication(&source.client, &names.publication)
            .await
            .map_err(|e| DbError::Other(e.to_string()))?;
        Ok(())
    }

    /// The replication method: copy under a slot's snapshot (or resume), stream, and cut over
    /// at the asked lag. A cutover asked while streaming restarts the follow session with it.
    async fn migrate_live(
        &self,
        plan: &DatabasePlan,
        prior: Option<&DatabaseRow>,
        copy_permit: &std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>,
    ) -> Result<DatabaseOutcome, DbError> {
        let db = plan.name.as_str();
        let src_db = self.src.with_dbname(db);
        let dst_db = self.dst.with_dbname(db);
        let names = publication::names_for(db, self.opts.preflight.mangle);
        let resume = self.resume_or_start_over(plan, prior, &names).await?;
        let streaming = Arc::new(AtomicBool::new(resume));
        let mut cutover_at = self.opts.cutover_at_lag;
        // Follow sessions this process started for the database: the second one is the
        // cutover request restarting the stream, not a resume after a stop.
        let mut sessions = 0u32;
        loop {
            let restarted = sessions > 0;
            sessions += 1;
            if let Control::CutOver(lag) = *self.control.borrow() {
                cutover_at = Some(lag);
            }
            let follow_opts = self.follow_options(plan, cutover_at);
            // Shut the follower down on Ctrl-C, or on a cutover request once it streams
            // (a cutover asked during the copy waits for the copy to finish).
            let (watcher, shutdown_rx) =
                self.shutdown_signal(streaming.clone(), cutover_at.is_some());
            let reporter = DbProgress::new(self, db);
            let observer = |event: FollowEvent| {
                if matches!(event, FollowEvent::Cloned(_) | FollowEvent::Resuming { .. }) {
                    // Copy finished (or not needed): let another database copy.
                    if let Ok(mut p) = copy_permit.lock() {
                        p.take();
                    }
                }
                self.on_follow_event(db, &streaming, restarted, event)
            };
            let result = follow_database(
                &src_db,
                &dst_db,
                &follow_opts,
                &reporter,
                &observer,
                shutdown_rx,
            )
            .await;
            watcher.abort();
            match result? {
                FollowOutcome::CutOver { applied } => {
                    self.live(|b| b.cut_over(db, applied));
                    self.send(Update::Lag {
                        db: db.to_owned(),
                        bytes: 0,
                    });
                    self.out.message(
                        Some(db),
                        &format!(
                            "cut over at {applied}: sequences synced, slot and publication dropped"
                        ),
                    );
                    // The progress row served its purpose; so did schema pgferry in this
                    // database (unless it is the bootstrap database, which keeps the state).
                    if let Ok(target) = connect(&dst_db).await {
                        finish::forget_progress(&target.client, &names.slot, db == self.dst.dbname)
                            .await;
                    }
                    return Ok(DatabaseOutcome::Done);
                }
                FollowOutcome::Stopped { .. } => match *self.control.borrow() {
                    Control::CutOver(lag) if cutover_at.is_none() => {
                        self.out.message(
                            Some(db),
                            &format!("cutover requested: waiting for a lag of at most {lag} bytes"),
                        );
                        cutover_at = Some(lag);
                        continue;
                    }
                    _ => return Ok(DatabaseOutcome::Syncing),
                },
            }
        }
    }

    /// Whether the database resumes streaming: when the slot and the target's progress row
    /// both exist (and the state knows the database). Otherwise whatever an earlier run left
    /// is removed and the target made ready for a new copy.
    async fn resume_or_start_over(
        &self,
        plan: &DatabasePlan,
        prior: Option<&DatabaseRow>,
        names: &publication::ObjectNames,
    ) -> Result<bool, DbError> {
        let db = plan.name.as_str();
        let src_db = self.src.with_dbname(db);
        let dst_db = self.dst.with_dbname(db);
        let slot_exists = {
            let source = open("source", &src_db).await?;
            crate::replication::slot::exists(&source.client, &names.slot)
                .await
                .map_err(|e| DbError::Other(e.to_string()))?
        };
        let progress = match connect(&dst_db).await {
            // None when the progress table does not exist either.
            Ok(target) => apply_state::load(&target.client, &names.slot)
                .await
                .map_err(|e| CloneError::target_failed("reading the progress row", e))?,
            Err(_) => None,
        };
        let resume = slot_exists && progress.is_some() && prior.is_some();
        if !resume {
            if slot_exists {
                self.remove_source_objects(db).await?;
            }
            if progress.is_some() {
                if let Ok(target) = connect(&dst_db).await {
                    let _ = apply_state::forget(&target.client, &names.slot).await;
                }
            }
            self.phase(db, Phase::Schema);
            self.prepare_target(plan, prior).await?;
        } else {
            self.phase(db, Phase::Streaming);
        }
        Ok(resume)
    }

    /// The follower's options for one session of the database.
    fn follow_options(&self, plan: &DatabasePlan, cutover_at: Option<u64>) -> FollowOptions {
        FollowOptions {
            clone: self.clone_options(plan),
            cutover_at_lag: cutover_at,
            replica_identity_full: self.opts.preflight.replica_identity_full,
            retry_for: self.opts.retry_for,
            mangle: self.opts.preflight.mangle,
            create_aiven_extras: plan.apply_mode == Some(access::ApplyMode::AivenExtras),
            max_slot_retained: self.opts.max_slot_retained,
            ddl_capture: self.opts.ddl_capture,
            ..FollowOptions::default()
        }
    }

    /// A task that signals the follower to shut down on Ctrl-C, or on a cutover request once
    /// the database streams (unless this session already cuts over).
    fn shutdown_signal(
        &self,
        streaming: Arc<AtomicBool>,
        already_cutting: bool,
    ) -> (tokio::task::JoinHandle<()>, watch::Receiver<bool>) {
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let mut control = self.control.clone();
        let watcher = tokio::spawn(async move {
            loop {
                let c = *control.borrow();
                match c {
                    Control::Interrupt => break,
                    Control::CutOver(_) if !already_cutting && streaming.load(Ordering::SeqCst) => {
                        break
                    }
                    _ => {}
                }
                tokio::select! {
                    r = control.changed() => if r.is_err() { return; },
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            }
            let _ = shutdown_tx.send(true);
        });
        (watcher, shutdown_rx)
    }

    /// `restarted`: this process already streamed the database and the cutover request
    /// restarted the session — not a resume after a stop, so no warning about retained WAL.
    fn on_follow_event(
        &self,
        db: &str,
        streaming: &AtomicBool,
        restarted: bool,
        event: FollowEvent,
    ) {
        self.live(|b| b.follow_event(db, &event));
        match event {
            FollowEvent::ReplicaIdentityFull(tables) => self.out.message(
                Some(db),
                &format!(
                    "WARNING: the source was changed: REPLICA IDENTITY FULL set on {}",
                    tables.join(", ")
                ),
            ),
            FollowEvent::Cloned(summary) => {
                streaming.store(true, Ordering::SeqCst);
                self.send(Update::Snapshot {
                    db: db.to_owned(),
                    held: false,
                });
                self.phase(db, Phase::Streaming);
                self.out.message(
                    Some(db),
                    &format!(
                        "copied {} ({}) in {:.1}s; streaming the changes made since",
                        count(summary.tables.len() as u64, "table"),
                        count(summary.tables.iter().map(|t| t.rows).sum::<u64>(), "row"),
                        summary.elapsed.as_secs_f64()
                    ),
                );
                for w in summary.schema_warnings.iter().chain(&summary.warnings) {
                    self.out.message(Some(db), &format!("warning: {w}"));
                }
            }
            FollowEvent::Resuming { from, .. } => {
                streaming.store(true, Ordering::SeqCst);
                self.phase(db, Phase::Streaming);
                if restarted {
                    self.out.detail(db, &format!("streaming again from {from}"));
                } else {
                    self.out
                        .message(Some(db), &format!("resuming streaming from {from}"));
                }
            }
            FollowEvent::Streaming { .. } => {}
            // Shown by the live view.
            FollowEvent::Lag { bytes, .. } => {
                self.send(Update::Lag {
                    db: db.to_owned(),
                    bytes: bytes.min(i64::MAX as u64) as i64,
                });
            }
            FollowEvent::Retrying {
                attempt,
                error,
                wait,
            } => {
                self.out.message(
                    Some(db),
                    &format!(
                        "attempt {attempt} failed: {error}; retrying in {:.1}s",
                        wait.as_secs_f64()
                    ),
                );
                self.send(Update::Retry {
                    db: db.to_owned(),
                    error,
                });
            }
            FollowEvent::CutoverStarted { lag } => {
                self.phase(db, Phase::Cutover);
                self.out.message(
                    Some(db),
                    &format!("lag {lag} bytes: cutting over (sequences, slot, publication)"),
                );
            }
            FollowEvent::SequencesSynced(n) => self
                .out
                .detail(db, &format!("{} synced", count(n as u64, "sequence"))),
            FollowEvent::NotReplicated(tables) => self.on_not_replicated(db, tables),
            FollowEvent::SchemaReconciled(r) => {
                for line in r.lines() {
                    self.out.message(Some(db), &line);
                }
            }
            FollowEvent::SnapshotHeld => self.send(Update::Snapshot {
                db: db.to_owned(),
                held: true,
            }),
            FollowEvent::RetainedWhileStopped(r) => {
                if restarted {
                    self.out.detail(db, &r.describe());
                } else {
                    self.out.message(
                        Some(db),
                        &format!(
                            "WARNING: resuming: {} (kept since the slot was last read)",
                            r.describe()
                        ),
                    );
                }
                self.send(Update::Retention {
                    db: db.to_owned(),
                    bytes: r.retained_bytes.map(|b| b.min(i64::MAX as u64) as i64),
                    wal_status: r.wal_status,
                });
            }
            FollowEvent::SlotRetention(r) => {
                self.out.detail(db, &r.describe());
                self.send(Update::Retention {
                    db: db.to_owned(),
                    bytes: r.retained_bytes.map(|b| b.min(i64::MAX as u64) as i64),
                    wal_status: r.wal_status,
                });
            }
        }
    }
}

impl Context<'_> {
    /// Tables the publication does not list: into the state (status shows them) and the log.
    fn on_not_replicated(&self, db: &str, tables: Vec<String>) {
        if !tables.is_empty() {
            self.out.message(
                Some(db),
                &format!(
                    "WARNING: not replicated (created on the source without a usable replica \
                     identity, or removed from the publication because they lost theirs): {}",
                    tables.join(", ")
                ),
            );
        }
        self.send(Update::NotReplicated {
            db: db.to_owned(),
            tables,
        });
    }
}

async fn wait_for(control: &mut watch::Receiver<Control>, pred: impl Fn(Control) -> bool) {
    loop {
        if pred(*control.borrow()) {
            return;
        }
        if control.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Drops a database this migration created and was copying into. The sessions of a killed
/// earlier run may still be on their way out, so on PostgreSQL 13+ `WITH (FORCE)` ends them.
async fn drop_database(admin: &tokio_postgres::Client, db: &str) -> Result<(), DbError> {
    let version = crate::compat::server_version_num(admin)
        .await
        .map_err(|e| CloneError::target_failed("reading the server version", e))?;
    let force = if version >= 130000 {
        " WITH (FORCE)"
    } else {
        ""
    };
    admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {}{force}",
            crate::quote::quote_ident(db)
        ))
        .await
        .map_err(|e| {
            DbError::from(CloneError::target_failed(
                "dropping the partial database",
                e,
            ))
        })
}

/// Empties a target database pgferry did not create (e.g. the bootstrap database): every
/// schema but the system ones and `pgferry` is dropped, `public` recreated as initdb makes
/// it, large objects removed. Only used on a database this migration was copying into.
async fn empty_database(client: &tokio_postgres::Client, db: &str) -> Result<(), DbError> {
    client
        .batch_execute(
            "DO $$DECLARE s text; BEGIN \
               FOR s IN SELECT nspname FROM pg_catalog.pg_namespace \
                        WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pgferry') \
                          AND nspname NOT LIKE 'pg\\_%' LOOP \
                 EXECUTE format('DROP SCHEMA %I CASCADE', s); \
               END LOOP; \
               IF current_setting('server_version_num')::int >= 150000 THEN \
                 CREATE SCHEMA public AUTHORIZATION pg_database_owner; \
                 GRANT USAGE ON SCHEMA public TO PUBLIC; \
               ELSE \
                 CREATE SCHEMA public; \
                 GRANT ALL ON SCHEMA public TO PUBLIC; \
               END IF; \
               COMMENT ON SCHEMA public IS 'standard public schema'; \
             END$$; \
             SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata",
        )
        .await
        .map_err(|e| {
            DbError::from(CloneError::target_failed(
                format!("emptying database \"{db}\" for a new copy"),
                e,
            ))
        })
}

/// The copy's progress for one database: into the state (tables done) and to the user.
struct DbProgress<'a> {
    ctx: &'a Context<'a>,
    db: String,
}

impl<'a> DbProgress<'a> {
    fn new(ctx: &'a Context<'a>, db: &str) -> DbProgress<'a> {
        DbProgress {
            ctx,
            db: db.to_owned(),
        }
    }
}

impl Reporter for DbProgress<'_> {
    fn planned(&self, jobs: usize, bytes: u64) {
        self.ctx.live(|b| b.planned(&self.db, jobs as u64, bytes));
        self.ctx.send(Update::Planned {
            db: self.db.clone(),
            tables: jobs.min(i32::MAX as usize) as i32,
        });
        self.ctx.out.detail(
            &self.db,
            &format!(
                "{}, about {}",
                count(jobs as u64, "copy job"),
                crate::units::format_size(bytes)
            ),
        );
    }

    fn stage(&self, phase: Option<Phase>, what: &str) {
        if let Some(phase) = phase {
            self.ctx.phase(&self.db, phase);
        }
        self.ctx.out.message(Some(&self.db), what);
    }
}

impl ProgressSink for DbProgress<'_> {
    fn job_started(&self, _job: &TableJob) {}

    fn bytes_copied(&self, _job: &TableJob, bytes: u64) {
        self.ctx.live(|b| b.bytes_copied(&self.db, bytes));
    }

    fn job_finished(&self, job: &TableJob, stats: &CopyStats) {
        self.ctx.live(|b| b.job_finished(&self.db, stats.rows));
        // The table's copy committed on the target; its progress row is not recorded yet.
        crate::failpoint::crash_at("copy.table_committed");
        self.ctx.send(Update::TableDone {
            db: self.db.clone(),
            table: crate::quote::qualified(&job.schema, &job.table),
            rows: stats.rows.min(i64::MAX as u64) as i64,
            bytes: stats.bytes.min(i64::MAX as u64) as i64,
            seconds: stats.elapsed.as_secs_f64(),
        });
        self.ctx.out.detail(
            &self.db,
            &format!(
                "{}: {} rows, {} in {:.1}s",
                job.display_name(),
                stats.rows,
                crate::units::format_size(stats.bytes),
                stats.elapsed.as_secs_f64()
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_id_is_stable_per_source() {
        let a = default_migration_id("system:7301");
        assert_eq!(a, default_migration_id("system:7301"));
        assert_ne!(a, default_migration_id("system:7302"));
        assert!(a.starts_with("pgferry-") && a.len() == "pgferry-".len() + 12);
    }
}
