//! `pgferry clone`: one database, schema + data + post-data, from one consistent snapshot.
//!
//! ```text
//!  source props ─► target database (create / drop / keep) ─► export snapshot
//!     ─► schema read in the snapshot ─► pre-data on target ─► plan jobs (in the snapshot)
//!     ─► parallel COPY (copy::copy_all) ─┬─► large objects ─► snapshot closed
//!          table t committed ──────────────┴─► t's indexes, PK/UNIQUE (USING INDEX), checks
//!                                              ─► ANALYZE t   (postdata, overlapping the copy)
//!     ─► FKs, triggers, rules … ─► sequences (values from the snapshot)
//!     ─► REFRESH materialized views
//! ```
//!
//! The exporting session stays open (and idle) until every reader has joined the snapshot and
//! the copy is done; it is closed last.

pub mod database;
pub mod large_objects;
pub mod postdata;
pub mod sequences;
mod summary;

pub use summary::render_summary;

use crate::conn::{connect, ConnConfig, ConnectError, Session};
use crate::copy::{
    copy_all, plan_tables, CopyError, CopyStats, ExportedSnapshot, PlanOptions, TableFilter,
    TableJob,
};
use crate::progress::Reporter;
use crate::schema::DumpOptions;
use crate::script::{dump_schema, DumpError};
use crate::server::access::Owners;
use crate::state::lifecycle::Phase;
use database::ExistingTarget;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// How the rows travel (`--copy-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatChoice {
    /// Binary where safe, text otherwise, decided per table.
    Auto,
    Binary,
    Text,
}

#[derive(Debug, Clone)]
pub struct CloneOptions {
    /// Table copy workers.
    pub jobs: usize,
    /// Post-data workers (indexes, constraints) and ANALYZE workers.
    pub index_jobs: usize,
    /// Split tables larger than this into ranges (with at least [`MIN_WORKERS_TO_SPLIT`]
    /// jobs).
    pub split_threshold: u64,
    pub format: FormatChoice,
    pub existing: ExistingTarget,
    pub skip_analyze: bool,
    pub filter: TableFilter,
    /// A snapshot to read the source under, e.g. the one a logical replication slot exported
    /// (so streaming starts exactly where the copy's view ends). The caller keeps it valid
    /// (its session idle) until [`clone_database`] returns. `None`: export one.
    pub snapshot: Option<String>,
    /// Extensions not to create on the target (`-xe`).
    pub excluded_extensions: Vec<String>,
    /// Copy the rows of extension configuration tables the extension did not create itself
    /// (as pg_dump does); `false` leaves them as the target's extension made them.
    pub extension_config_tables: bool,
    /// Go on when the target's major version is older than the source's
    /// (`--skip-db-version-check`); refused before anything is created otherwise.
    pub allow_downgrade: bool,
    /// Which owners the target user can act as (shared by every database of a run, so that
    /// each role is decided and reported once); `--no-owner` lives in it.
    pub owners: Arc<Owners>,
    /// `--no-privileges`: no GRANT/REVOKE on the objects or the database.
    pub no_privileges: bool,
    /// `--no-publications`: the source's publications are not created on the target.
    pub no_publications: bool,
}

/// Splitting a table costs its `COPY FREEZE` load and, it seems, the heap order its index
/// builds sort (ranges loaded side by side interleave on the target's pages). Measured at
/// pgbench scale 100 on two cores: the primary key took 11–12 s after a split copy against
/// 7 s after a single one, for no faster copy. With fewer workers than this the ranges of
/// one table take every worker, so the split only moves time from the copy to the index
/// builds; tables are then not split.
pub const MIN_WORKERS_TO_SPLIT: usize = 3;

/// The snapshot's name, whoever holds it.
struct SnapshotName(String);

impl SnapshotName {
    fn name(&self) -> &str {
        &self.0
    }
}

impl Default for CloneOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        CloneOptions {
            jobs: cores.max(2),
            index_jobs: cores.max(2),
            split_threshold: 1 << 30,
            format: FormatChoice::Auto,
            existing: ExistingTarget::Refuse,
            skip_analyze: false,
            filter: TableFilter::default(),
            snapshot: None,
            excluded_extensions: Vec::new(),
            extension_config_tables: true,
            allow_downgrade: false,
            owners: Arc::new(Owners::default()),
            no_privileges: false,
            no_publications: false,
        }
    }
}

/// What a clone did, for the summary.
#[derive(Debug, Clone, Default)]
pub struct CloneSummary {
    pub tables: Vec<CopyStats>,
    pub sequences: usize,
    pub large_objects: usize,
    pub materialized_views_refreshed: usize,
    /// The source's publications created on the target.
    pub publications: usize,
    /// Things that did not go as on the source but lose no data (shown in the summary).
    pub warnings: Vec<String>,
    pub post_data_statements: usize,
    pub schema_warnings: Vec<String>,
    pub elapsed: Duration,
    /// The schema was kept (`--truncate`) rather than created.
    pub schema_kept: bool,
}

/// Where a clone stopped, so an error can say what state the target is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Preparing,
    Schema,
    Data,
    PostData,
    Finishing,
}

impl Stage {
    /// What the target holds when a clone stops during this stage.
    pub fn target_state(self) -> &'static str {
        match self {
            Stage::Preparing => "the target database was not changed",
            Stage::Schema => "the target database may hold part of the schema and no data",
            Stage::Data => "the target database holds the schema and part of the data (tables copied so far are complete; the table being copied was rolled back)",
            Stage::PostData => "the target database holds all data but only part of the indexes and constraints",
            Stage::Finishing => "the target database holds all data, indexes and constraints; sequences, materialized views or statistics may be incomplete",
        }
    }
}

#[derive(Debug, Error)]
pub enum CloneError {
    #[error("{role}: {source}")]
    Connect {
        role: &'static str,
        #[source]
        source: ConnectError,
    },
    #[error("source: {what}: {message}")]
    Source { what: String, message: String },
    #[error("target: {what}: {message}")]
    Target { what: String, message: String },
    #[error("target database \"{database}\" exists and is not empty: use --drop-if-exists to replace it, or --truncate to keep its schema and reload the data")]
    TargetNotEmpty { database: String },
    #[error(transparent)]
    Versions(#[from] crate::compat::VersionError),
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error("source: reading the schema: {0}")]
    Schema(#[from] DumpError),
    #[error("{source} ({})", .stage.target_state())]
    During {
        stage: Stage,
        #[source]
        source: Box<CloneError>,
    },
}

impl CloneError {
    pub fn source_failed(what: impl Into<String>, err: tokio_postgres::Error) -> CloneError {
        CloneError::Source {
            what: what.into(),
            message: crate::pgerror::server_message(&err),
        }
    }

    pub fn target_failed(what: impl Into<String>, err: tokio_postgres::Error) -> CloneError {
        CloneError::Target {
            what: what.into(),
            message: crate::pgerror::server_message(&err),
        }
    }

    fn during(self, stage: Stage) -> CloneError {
        match self {
            already @ CloneError::During { .. } => already,
            other => CloneError::During {
                stage,
                source: Box::new(other),
            },
        }
    }
}

/// A session on `cfg`; `role` (`source` or `target`) names the side in a failure. Shared
/// with the archive's dump and restore.
pub(crate) async fn open(role: &'static str, cfg: &ConnConfig) -> Result<Session, CloneError> {
    connect(cfg)
        .await
        .map_err(|source| CloneError::Connect { role, source })
}

/// Clones the database named in `src` into the database named in `dst`.
pub async fn clone_database(
    src: &ConnConfig,
    dst: &ConnConfig,
    opts: &CloneOptions,
    progress: &dyn Reporter,
) -> Result<CloneSummary, CloneError> {
    let started = Instant::now();
    let mut stage = Stage::Preparing;
    let result = run(src, dst, opts, progress, &mut stage).await;
    match result {
        Ok(mut summary) => {
            summary.elapsed = started.elapsed();
            Ok(summary)
        }
        Err(e) => Err(e.during(stage)),
    }
}

/// The clone's phases, each a function of its own: the target database, the snapshot and
/// the schema read in it, pre-data, the copy plan, the copy overlapped with post-data, and
/// what follows both.
async fn run(
    src: &ConnConfig,
    dst: &ConnConfig,
    opts: &CloneOptions,
    progress: &dyn Reporter,
    stage: &mut Stage,
) -> Result<CloneSummary, CloneError> {
    let mut summary = CloneSummary::default();
    let prepared = prepare_target(src, dst, opts, &mut summary).await?;
    summary.schema_kept = prepared.keep_schema;
    let source = SnapshotRead::open(src, opts).await?;
    let script = read_schema(&source.reader.client, dst, opts, &prepared).await?;
    // Reported once, with the summary (by clone's table, migrate's log, the JSON events).
    summary.schema_warnings = script.warnings.clone();

    let target = open("target", dst).await?;
    let mode = SchemaMode::new(&prepared);
    let mut one_by_one = mode.downgrade;
    if !prepared.keep_schema {
        *stage = Stage::Schema;
        progress.stage(Some(Phase::Schema), "creating the schema (pre-data)");
        one_by_one = create_pre_data(
            &target.client,
            &script.pre_data,
            &prepared,
            &mode,
            &mut summary,
        )
        .await?;
    }
    let mut plan = plan_copy(
        &source.reader.client,
        &target.client,
        opts,
        &prepared,
        one_by_one,
        &mut summary,
    )
    .await?;
    // Set after the copy, from the snapshot's values.
    let sequence_values = std::mem::take(&mut plan.sequence_values);
    *stage = Stage::Data;
    copy_and_build(
        src,
        dst,
        opts,
        progress,
        stage,
        CopyPhase {
            source,
            plan,
            target: &target.client,
            script: &script,
            keep_schema: prepared.keep_schema,
            one_by_one: one_by_one.then_some(mode.refusal.as_str()),
        },
        &mut summary,
    )
    .await?;

    *stage = Stage::Finishing;
    progress.stage(
        Some(Phase::Finishing),
        "setting sequences, refreshing materialized views",
    );
    finish(
        &target.client,
        &script,
        sequence_values,
        mode.downgrade,
        opts,
        &mut summary,
    )
    .await?;
    Ok(summary)
}

/// What preparing the target decided.
struct Prepared {
    src_version: i32,
    dst_version: i32,
    /// The target user.
    me: crate::server::access::TargetUser,
    /// `--truncate` on an existing database: its schema stays, only the data is reloaded.
    keep_schema: bool,
}

/// Reads the source database's properties and owners, checks the versions, arranges the
/// owners, and creates (or drops and creates, or keeps) the target database.
async fn prepare_target(
    src: &ConnConfig,
    dst: &ConnConfig,
    opts: &CloneOptions,
    summary: &mut CloneSummary,
) -> Result<Prepared, CloneError> {
    let source = open("source", src).await?;
    let src_version = crate::compat::server_version_num(&source.client)
        .await
        .map_err(|e| CloneError::source_failed("reading the server version", e))?;
    let props = database::source_props(&source.client, src_version).await?;
    let source_owners = crate::server::access::source_owners(&source.client)
        .await
        .map_err(|e| CloneError::source_failed("listing the owners of objects", e))?;
    drop(source);

    // The target database is created or dropped from the server's maintenance database.
    let (admin, dst_version) = database::open_admin(dst).await?;
    crate::compat::check_versions(src_version, dst_version, opts.allow_downgrade)?;
    if src_version / 10000 != dst_version / 10000 {
        tracing::debug!(
            source = %crate::compat::display_version(src_version),
            target = %crate::compat::display_version(dst_version),
            "source and target majors differ"
        );
    }
    // Owners: the target user acts as each source owner where it may (memberships granted
    // as needed); the others' objects stay its own, each role reported once.
    let me = crate::server::access::TargetUser::read(&admin.client)
        .await
        .map_err(|e| CloneError::target_failed("reading the target user's attributes", e))?;
    let arranged = opts
        .owners
        .arrange(&admin.client, &source_owners)
        .await
        .map_err(|e| CloneError::target_failed("arranging the owners of objects", e))?;
    for (role, why) in &arranged.newly_refused {
        // Reported once, with the summary's warnings.
        summary
            .warnings
            .push(crate::server::access::owner_warning(role, &me.name, why));
    }
    for role in &arranged.newly_granted {
        tracing::info!(
            "granted {} membership in role {role} to give its objects their owner",
            me.name
        );
    }
    let exists = database::database_exists(&admin.client, &dst.dbname).await?;
    let created = match (exists, opts.existing) {
        (false, _) | (true, ExistingTarget::Drop) => {
            if exists {
                database::drop_database(&admin.client, &dst.dbname).await?;
            }
            let keep_db_owner = opts.owners.usable(&props.owner);
            let owner_kept =
                database::create_database(&admin.client, &dst.dbname, &props, keep_db_owner)
                    .await?;
            Some(owner_kept)
        }
        _ => None,
    };
    if let (Some(owner_kept), false) = (created, opts.no_privileges) {
        let owner = if owner_kept { &props.owner } else { &me.name };
        let refused =
            database::apply_database_acl(&admin.client, &dst.dbname, &props, owner, !me.superuser)
                .await?;
        // Reported once, with the summary's warnings.
        summary.warnings.extend(refused);
    }
    let keep_schema = match (exists, opts.existing) {
        (false, _) | (true, ExistingTarget::Drop) => false,
        (true, ExistingTarget::Truncate) => true,
        (true, ExistingTarget::Refuse) => {
            let target = open("target", dst).await?;
            if database::has_user_objects(&target.client).await? {
                return Err(CloneError::TargetNotEmpty {
                    database: dst.dbname.clone(),
                });
            }
            false
        }
    };
    Ok(Prepared {
        src_version,
        dst_version,
        me,
        keep_schema,
    })
}

/// The source session reading in the snapshot, and the snapshot's exporter when this clone
/// exported it (kept idle until the copy is done).
struct SnapshotRead {
    exported: Option<ExportedSnapshot>,
    snapshot: SnapshotName,
    reader: Session,
}

impl SnapshotRead {
    /// One snapshot for everything read from the source: the caller's (a replication
    /// slot's), or one exported now and held by an idle session until the end.
    async fn open(src: &ConnConfig, opts: &CloneOptions) -> Result<SnapshotRead, CloneError> {
        let (exported, snapshot) = match &opts.snapshot {
            Some(name) => (None, SnapshotName(name.clone())),
            None => {
                let e = ExportedSnapshot::export(src).await?;
                let name = SnapshotName(e.name().to_string());
                (Some(e), name)
            }
        };
        let reader = open("source", src).await?;
        crate::catalog::begin_snapshot_read(&reader.client, Some(snapshot.name()))
            .await
            .map_err(|e| CloneError::Source {
                what: "joining the snapshot".into(),
                message: e.to_string(),
            })?;
        Ok(SnapshotRead {
            exported,
            snapshot,
            reader,
        })
    }

    /// Done reading from the snapshot: the reader's transaction ends, the exporter closes.
    async fn close(self) {
        let _ = self.reader.client.batch_execute("COMMIT").await;
        drop(self.reader);
        if let Some(exported) = self.exported {
            if let Err(e) = exported.close().await {
                tracing::debug!("closing the snapshot session: {e}");
            }
        }
    }
}

/// Reads the source's schema in the snapshot and renders it for this target.
async fn read_schema(
    reader: &tokio_postgres::Client,
    dst: &ConnConfig,
    opts: &CloneOptions,
    prepared: &Prepared,
) -> Result<crate::script::SchemaScript, CloneError> {
    // Placements in tablespaces the target lacks are dropped (with a warning), not failed on.
    let target_tablespaces: Vec<String> = {
        let admin = open("target", dst).await?;
        admin
            .client
            .query("SELECT spcname::text FROM pg_tablespace", &[])
            .await
            .map_err(|e| CloneError::target_failed("listing tablespaces", e))?
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let dump_opts = DumpOptions {
        target_tablespaces: Some(target_tablespaces),
        excluded_extensions: opts.excluded_extensions.clone(),
        // --truncate keeps the target's schema: no post-data to build.
        post_data_units: !prepared.keep_schema,
        no_owner: opts.owners.no_owner,
        no_privileges: opts.no_privileges,
        owners_not_kept: opts.owners.refused(),
        grants_by_set_role: !prepared.me.superuser,
        target_major: Some((prepared.dst_version / 10000) as u32),
        ..DumpOptions::default()
    };
    Ok(dump_schema(reader, &dump_opts).await?)
}

/// How the schema goes in: into an older major (--skip-db-version-check) statement by
/// statement, each refusal of the older server reported, not fatal.
struct SchemaMode {
    downgrade: bool,
    /// What a statement refused in the statement-by-statement mode was.
    refusal: String,
}

impl SchemaMode {
    fn new(prepared: &Prepared) -> SchemaMode {
        let downgrade = prepared.dst_version / 10000 < prepared.src_version / 10000;
        let refusal = if downgrade {
            format!(
                "not created on the older target (PostgreSQL {})",
                crate::compat::display_version(prepared.dst_version)
            )
        } else {
            format!("refused to {} (not a superuser)", prepared.me.name)
        };
        SchemaMode { downgrade, refusal }
    }
}

/// Creates the pre-data schema; returns whether it went statement by statement (then the
/// post-data does too).
async fn create_pre_data(
    target: &tokio_postgres::Client,
    pre_data: &str,
    prepared: &Prepared,
    mode: &SchemaMode,
    summary: &mut CloneSummary,
) -> Result<bool, CloneError> {
    if mode.downgrade {
        apply_one_by_one(target, pre_data, &mode.refusal, &mut summary.warnings).await;
        return Ok(true);
    }
    let Err(e) = target
        .batch_execute(&format!("BEGIN;\n{pre_data}\nCOMMIT;"))
        .await
    else {
        return Ok(false);
    };
    // A user who is not a superuser may meet a statement only a superuser may run (an
    // untrusted extension, an owner without CREATE on the schema...): rather than fail in the
    // middle of a run, the schema goes statement by statement and each refusal is reported
    // by name.
    let _ = target.batch_execute("ROLLBACK").await;
    if prepared.me.superuser
        || e.code() != Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    {
        return Err(CloneError::target_failed(
            "creating the schema (pre-data)",
            e,
        ));
    }
    let first = crate::pgerror::server_message(&e);
    tracing::warn!(
        "the schema could not be created in one transaction ({first}): creating it statement by statement"
    );
    apply_one_by_one(target, pre_data, &mode.refusal, &mut summary.warnings).await;
    Ok(true)
}

/// What the copy phase works through, read in the snapshot.
struct CopyPlan {
    jobs: Vec<TableJob>,
    /// Tables to ANALYZE (none with `--skip-analyze`).
    analyze_targets: Vec<(String, String)>,
    /// Estimated bytes per table, for the post-data builder's order.
    sizes: HashMap<(String, String), u64>,
    sequence_values: Vec<sequences::SequenceValue>,
    large_objects: Vec<large_objects::LargeObject>,
}

/// Plans the copy jobs in the snapshot (without tables the target could not create, in the
/// statement-by-statement mode), and reads the sequences and large objects to copy.
async fn plan_copy(
    reader: &tokio_postgres::Client,
    target: &tokio_postgres::Client,
    opts: &CloneOptions,
    prepared: &Prepared,
    one_by_one: bool,
    summary: &mut CloneSummary,
) -> Result<CopyPlan, CloneError> {
    let plan_opts = PlanOptions {
        filter: opts.filter.clone(),
        split_threshold: (opts.jobs >= MIN_WORKERS_TO_SPLIT).then_some(opts.split_threshold),
        force_text: opts.format == FormatChoice::Text,
        target_major: Some((prepared.dst_version / 10000) as u32),
        truncate_first: true,
        extension_config_tables: opts.extension_config_tables,
    };
    let jobs = plan_tables(reader, &plan_opts).await?;
    for job in &jobs {
        if let Some(reason) = &job.text_reason {
            if opts.format == FormatChoice::Binary {
                tracing::warn!(table = %job.display_name(), "--copy-format binary asked, but {reason}: copying as text");
            } else {
                tracing::debug!(table = %job.display_name(), "text format: {reason}");
            }
        }
    }
    let jobs = if one_by_one {
        keep_existing(
            target,
            jobs,
            |j| crate::quote::qualified(&j.schema, &j.table),
            |name| {
                format!("table {name} could not be created on the target: its rows were not copied")
            },
            &mut summary.warnings,
        )
        .await?
    } else {
        jobs
    };
    let mut analyze_targets: Vec<(String, String)> = jobs
        .iter()
        .map(|j| (j.schema.clone(), j.table.clone()))
        .collect();
    analyze_targets.sort();
    analyze_targets.dedup();
    if opts.skip_analyze {
        analyze_targets.clear();
    }
    let mut sizes: HashMap<(String, String), u64> = HashMap::new();
    for j in &jobs {
        *sizes
            .entry((j.schema.clone(), j.table.clone()))
            .or_default() += j.estimated_bytes;
    }
    Ok(CopyPlan {
        jobs,
        analyze_targets,
        sizes,
        sequence_values: sequences::read(reader).await?,
        large_objects: large_objects::list(reader).await?,
    })
}

/// What [`copy_and_build`] works with besides the options.
struct CopyPhase<'a> {
    source: SnapshotRead,
    plan: CopyPlan,
    target: &'a tokio_postgres::Client,
    script: &'a crate::script::SchemaScript,
    keep_schema: bool,
    /// `Some(what a refusal was)`: the post-data goes statement by statement after the copy.
    one_by_one: Option<&'a str>,
}

/// The copy (tables, then large objects) and the post-data build, overlapped: a table's
/// indexes start as soon as its data is committed (see [`postdata`]). In the
/// statement-by-statement mode the post-data follows the copy instead.
async fn copy_and_build(
    src: &ConnConfig,
    dst: &ConnConfig,
    opts: &CloneOptions,
    progress: &dyn Reporter,
    stage: &mut Stage,
    phase: CopyPhase<'_>,
    summary: &mut CloneSummary,
) -> Result<(), CloneError> {
    let CopyPhase {
        source,
        plan,
        target,
        script,
        keep_schema,
        one_by_one,
    } = phase;
    let CopyPlan {
        jobs,
        analyze_targets,
        sizes,
        large_objects,
        ..
    } = plan;
    progress.planned(jobs.len(), jobs.iter().map(|j| j.estimated_bytes).sum());
    progress.stage(
        Some(Phase::Copy),
        &format!(
            "copying {} with {}",
            crate::units::count(analyze_targets.len() as u64, "table"),
            crate::units::count(opts.jobs as u64, "worker")
        ),
    );
    let ready = postdata::DataReady::new(&jobs);
    let copy_finished = AtomicBool::new(false);
    let mut large_objects_copied = 0;
    let copy_side = async {
        let sink = ready.sink(progress);
        let stats = copy_all(src, dst, source.snapshot.name(), jobs, opts.jobs, &sink).await?;
        ready.all_done();
        if !large_objects.is_empty() {
            progress.stage(
                Some(Phase::Copy),
                &format!(
                    "copying {}",
                    crate::units::count(large_objects.len() as u64, "large object")
                ),
            );
            if keep_schema {
                // --truncate reloads all data, large objects included.
                target
                    .batch_execute(
                        "SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata",
                    )
                    .await
                    .map_err(|e| {
                        CloneError::target_failed(
                            "removing the target's large objects (--truncate)",
                            e,
                        )
                    })?;
            }
            large_objects_copied = large_objects::copy_all(
                src,
                dst,
                source.snapshot.name(),
                large_objects,
                opts.jobs,
                &opts.owners,
            )
            .await?;
        }
        source.close().await;
        copy_finished.store(true, Ordering::Relaxed);
        progress.stage(
            Some(Phase::PostData),
            "building indexes and constraints (post-data)",
        );
        Ok::<_, CloneError>(stats)
    };
    if let Some(refusal) = one_by_one {
        // One statement at a time after the copy, so that each refusal is reported.
        summary.tables = copy_side.await?;
        summary.large_objects = large_objects_copied;
        *stage = Stage::PostData;
        summary.post_data_statements =
            apply_one_by_one(target, &script.post_data, refusal, &mut summary.warnings).await;
        for (schema, table) in &analyze_targets {
            let _ = target
                .batch_execute(&format!(
                    "ANALYZE {}",
                    crate::quote::qualified(schema, table)
                ))
                .await;
        }
        return Ok(());
    }
    let post_side = postdata::build(
        dst,
        postdata::BuildPlan {
            units: &script.post_data_units,
            analyze: &analyze_targets,
            sizes: &sizes,
            jobs: opts.index_jobs,
        },
        &ready,
    );
    match futures::future::try_join(copy_side, post_side).await {
        Ok((stats, statements)) => {
            summary.tables = stats;
            summary.large_objects = large_objects_copied;
            summary.post_data_statements = statements;
            Ok(())
        }
        Err(e) => {
            if copy_finished.load(Ordering::Relaxed) {
                *stage = Stage::PostData;
            }
            Err(e)
        }
    }
}

/// After the copy and the builds: sequences (the snapshot's values), materialized views,
/// publications.
async fn finish(
    target: &tokio_postgres::Client,
    script: &crate::script::SchemaScript,
    sequence_values: Vec<sequences::SequenceValue>,
    downgrade: bool,
    opts: &CloneOptions,
    summary: &mut CloneSummary,
) -> Result<(), CloneError> {
    let sequence_values = if downgrade {
        keep_existing(
            target,
            sequence_values,
            |v| crate::quote::qualified(&v.schema, &v.name),
            |name| format!("sequence {name} does not exist on the older target: not set"),
            &mut summary.warnings,
        )
        .await?
    } else {
        sequence_values
    };
    sequences::apply(target, &sequence_values).await?;
    summary.sequences = sequence_values.len();
    // REFRESH runs the view's query as the view's owner; an owner without the privileges it
    // needs cannot refresh (pg_restore fails the same way). That leaves the view unpopulated
    // on the target but loses nothing, so warn and go on.
    for stmt in crate::sqlscript::split_statements(&script.refresh_matviews) {
        let upper = stmt.to_ascii_uppercase();
        if !upper.starts_with("REFRESH") {
            // Session settings of the script's preamble.
            let _ = target.batch_execute(&stmt).await;
            continue;
        }
        match target.batch_execute(&stmt).await {
            Ok(()) => summary.materialized_views_refreshed += 1,
            Err(e) => {
                let message = crate::pgerror::server_message(&e);
                summary
                    .warnings
                    .push(format!("{stmt}: {message} (left unpopulated)"));
            }
        }
    }
    // After the data, so that they publish nothing of the copy.
    if !opts.no_publications {
        create_publications(target, &script.publications, summary).await;
    }
    Ok(())
}

/// The `items` whose relation (named by `name`) exists on the target; each missing one
/// becomes the warning `missing(name)`. For the statement-by-statement mode, where some
/// relations could not be created.
async fn keep_existing<T>(
    target: &tokio_postgres::Client,
    items: Vec<T>,
    name: impl Fn(&T) -> String,
    missing: impl Fn(&str) -> String,
    warnings: &mut Vec<String>,
) -> Result<Vec<T>, CloneError> {
    let mut kept = Vec::with_capacity(items.len());
    for item in items {
        let name = name(&item);
        if relation_exists(target, &name).await? {
            kept.push(item);
        } else {
            warnings.push(missing(&name));
        }
    }
    Ok(kept)
}

/// Creates the source's own publications (pgferry's are never in `script`) on the target,
/// statement by statement. One the target refuses (FOR ALL TABLES needs a superuser) is
/// reported by name in the summary's warnings; nothing else depends on it.
pub async fn create_publications(
    client: &tokio_postgres::Client,
    script: &str,
    summary: &mut CloneSummary,
) {
    let mut current: Option<String> = None;
    for stmt in crate::sqlscript::split_statements(script) {
        let upper = stmt.trim_start().to_ascii_uppercase();
        if !upper.contains("PUBLICATION") {
            // Session settings of the script's preamble.
            let _ = client.batch_execute(&stmt).await;
            continue;
        }
        let create = upper.starts_with("CREATE PUBLICATION");
        if create {
            current = Some(stmt.trim().to_owned());
        }
        match client.batch_execute(&stmt).await {
            Ok(()) => summary.publications += usize::from(create),
            Err(e) => {
                let message = crate::pgerror::server_message(&e);
                let what = if create {
                    stmt.trim().to_owned()
                } else {
                    format!(
                        "{} (of {})",
                        stmt.trim(),
                        current.as_deref().unwrap_or("a publication")
                    )
                };
                tracing::warn!("publication not reproduced: {what}: {message}");
                summary
                    .warnings
                    .push(format!("publication not reproduced: {what}: {message}"));
            }
        }
    }
}

async fn relation_exists(client: &tokio_postgres::Client, name: &str) -> Result<bool, CloneError> {
    Ok(client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
        .await
        .map_err(|e| CloneError::target_failed(format!("looking for {name}"), e))?
        .get(0))
}

/// Runs a script statement by statement, outside any transaction; each statement the server
/// refuses becomes a warning naming it and the server's message. Used only for a target older
/// than the source, where some objects cannot exist. Returns the number that succeeded.
async fn apply_one_by_one(
    client: &tokio_postgres::Client,
    script: &str,
    why: &str,
    warnings: &mut Vec<String>,
) -> usize {
    let mut applied = 0;
    for stmt in crate::sqlscript::split_statements(script) {
        match client.batch_execute(&stmt).await {
            Ok(()) => applied += 1,
            Err(e) => {
                let first_line = stmt.lines().next().unwrap_or("").trim();
                let shown: String = first_line.chars().take(120).collect();
                // Reported once, with the summary's warnings.
                warnings.push(format!(
                    "{why}: `{shown}`: {}",
                    crate::pgerror::server_message(&e)
                ));
            }
        }
    }
    applied
}
