//! The end of a migration: `pgferry stop` (cutover) and `pgferry cleanup` (remove what pgferry
//! created for replication, on both sides).
//!
//! `stop` asks a running `migrate` through the state (it polls for the request), or, when none
//! runs, cuts over itself: for every database still syncing it resumes streaming from the
//! stored position until the lag is small enough, syncs sequences and drops the slot and
//! publication. `cleanup` refuses while a migrate runs, and is idempotent.

use super::{MigrateError, Output};
use crate::clone::CloneOptions;
use crate::conn::{connect, ConnConfig};
use crate::pgerror::SqlState;
use crate::progress::Reporter;
use crate::replication::{
    follow_database, publication, state as apply_state, FollowOptions, FollowOutcome,
};
use crate::state::lifecycle::{DatabaseStatus, Method, MigrationStatus, Phase};
use crate::state::migration::{Store, StoreError, Update};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::watch;

#[derive(Debug, Error)]
pub enum FinishError {
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("target database \"{0}\" holds no pgferry migration (schema pgferry is absent or empty); check -t names the bootstrap database used by migrate")]
    NoMigration(String),
    #[error("no pgferry migrate process is running for this target, so stop must cut over itself: give the source with -s SRC (passwords are never stored)")]
    NeedSource,
    #[error("a pgferry migrate process is running for this target: stop it first (`pgferry stop -t ...` cuts it over; Ctrl-C keeps the slots for a resume), then run cleanup")]
    Running,
    #[error("{db}: {message}")]
    Database { db: String, message: String },
}

fn db_err(db: &str) -> impl Fn(String) -> FinishError + '_ {
    move |message| FinishError::Database {
        db: db.to_owned(),
        message,
    }
}

fn mangle_of(options: &serde_json::Value) -> bool {
    options
        .get("mangle")
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

/// `pgferry stop`: returns the databases that were cut over (or found done).
pub async fn stop(
    src: Option<&ConnConfig>,
    dst: &ConnConfig,
    lag: u64,
    out: &dyn Output,
    poll: Duration,
) -> Result<Vec<String>, FinishError> {
    let session = connect(dst).await.map_err(|source| MigrateError::Connect {
        role: "target",
        source,
    })?;
    let store = Store::new(&session.client, &dst.dbname);
    let Some(migration) = store.migration().await? else {
        return Err(FinishError::NoMigration(dst.dbname.clone()));
    };
    if store.is_running().await? {
        return ask_running_to_cut_over(&store, &migration.id, lag, out, poll).await;
    }

    // Nobody runs: cut over here, holding the run lock so that no migrate starts meanwhile.
    let src = src.ok_or(FinishError::NeedSource)?;
    if !store.try_lock().await? {
        return Err(MigrateError::AlreadyRunning {
            database: dst.dbname.clone(),
        }
        .into());
    }
    let mangle = mangle_of(&migration.options);
    let mut finished = Vec::new();
    for db in store.databases(&migration.id).await? {
        match db.status {
            DatabaseStatus::Done => {
                finished.push(db.dbname);
                continue;
            }
            DatabaseStatus::Syncing if db.method == Method::Replication => {}
            _ => {
                out.message(
                    Some(&db.dbname),
                    &format!(
                        "status {}: nothing to cut over (rerun migrate to finish its copy)",
                        db.status
                    ),
                );
                continue;
            }
        }
        let name = db.dbname.clone();
        let opts = FollowOptions {
            clone: CloneOptions::default(),
            cutover_at_lag: Some(lag),
            mangle,
            ..FollowOptions::default()
        };
        let (_tx, rx) = watch::channel(false);
        let observer = |_e| {};
        out.message(
            Some(&name),
            &format!("resuming streaming to cut over at a lag of at most {lag} bytes"),
        );
        let (src_db, dst_db) = (src.with_dbname(&name), dst.with_dbname(&name));
        let outcome = follow_database(&src_db, &dst_db, &opts, &Quiet, &observer, rx)
            .await
            .map_err(|e| db_err(&name)(e.to_string()))?;
        if let FollowOutcome::CutOver { applied } = outcome {
            for update in [
                Update::Lag {
                    db: name.clone(),
                    bytes: 0,
                },
                Update::Phase {
                    db: name.clone(),
                    phase: Phase::Done,
                },
            ] {
                store.apply(&migration.id, &update).await?;
            }
            if let Ok(target) = connect(&dst_db).await {
                let names = publication::names_for(&name, mangle);
                forget_progress(&target.client, &names.slot, name == dst.dbname).await;
            }
            out.message(Some(&name), &format!("cut over at {applied}"));
            finished.push(name);
        }
    }
    let dbs = store.databases(&migration.id).await?;
    if dbs.iter().all(|d| d.status == DatabaseStatus::Done) {
        store
            .finish(&migration.id, MigrationStatus::Done, None)
            .await?;
    }
    Ok(finished)
}

/// `stop` with a migrate process running: the request goes into the state, and the running
/// process cuts over; this waits until no database is left syncing or running, or the process
/// is gone (its lock missing for longer than [`LOCK_GAP_TOLERATED`]).
async fn ask_running_to_cut_over(
    store: &Store<'_>,
    id: &str,
    lag: u64,
    out: &dyn Output,
    poll: Duration,
) -> Result<Vec<String>, FinishError> {
    store
        .request_stop(id, lag.min(i64::MAX as u64) as i64)
        .await?;
    out.message(
        None,
        &format!(
            "asked the running migration {} to cut over at a lag of at most {lag} bytes; waiting",
            id
        ),
    );
    let mut shown = Vec::new();
    // The running process may be between two sessions with the bootstrap database (it
    // reconnects with a backoff of up to 10 s): only a lock missing for longer than that
    // means the process is gone.
    let mut absent_since: Option<std::time::Instant> = None;
    loop {
        tokio::time::sleep(poll).await;
        let dbs = store.databases(id).await?;
        let pending: Vec<&str> = dbs
            .iter()
            .filter(|d| matches!(d.status, DatabaseStatus::Syncing | DatabaseStatus::Running))
            .map(|d| d.dbname.as_str())
            .collect();
        let running = if store.is_running().await? {
            absent_since = None;
            true
        } else {
            absent_since
                .get_or_insert_with(std::time::Instant::now)
                .elapsed()
                < LOCK_GAP_TOLERATED
        };
        if pending.is_empty() || !running {
            let failed: Vec<String> = dbs
                .iter()
                .filter(|d| d.status == DatabaseStatus::Failed)
                .map(|d| format!("{}: {}", d.dbname, d.error.as_deref().unwrap_or("failed")))
                .collect();
            if !failed.is_empty() {
                return Err(FinishError::Database {
                    db: "cutover".into(),
                    message: failed.join("; "),
                });
            }
            if !pending.is_empty() {
                return Err(FinishError::Database {
                    db: pending.join(", "),
                    message: "the migrate process ended before these databases were cut over; run stop again with -s SRC".into(),
                });
            }
            return Ok(dbs.into_iter().map(|d| d.dbname).collect());
        }
        if pending != shown {
            out.message(None, &format!("waiting for: {}", pending.join(", ")));
            shown = pending.iter().map(|s| s.to_string()).collect();
        }
    }
}

/// A reporter for resumed streams (no copy happens).
struct Quiet;

impl crate::copy::ProgressSink for Quiet {
    fn job_started(&self, _: &crate::copy::TableJob) {}
    fn bytes_copied(&self, _: &crate::copy::TableJob, _: u64) {}
    fn job_finished(&self, _: &crate::copy::TableJob, _: &crate::copy::CopyStats) {}
}

impl Reporter for Quiet {
    fn planned(&self, _: usize, _: u64) {}
    fn stage(&self, _: Option<crate::state::lifecycle::Phase>, _: &str) {}
}

/// How long `stop` waits for the run lock to come back before it concludes that the running
/// migrate ended ([`super::bootstrap`] reconnects within this).
const LOCK_GAP_TOLERATED: std::time::Duration = std::time::Duration::from_secs(20);

/// What cleanup removed.
#[derive(Debug, Default)]
pub struct Cleaned {
    /// `db: slot, publication` per database whose source objects were looked for.
    pub source_objects: Vec<String>,
    pub state_removed: bool,
}

/// `pgferry cleanup` of a whole migration: for every database of the stored migration, its
/// slot and publication on the source and its progress table on the target, then the state.
/// Returns `None` when the target holds no migration state (the caller then cleans one pair).
pub async fn cleanup(src: &ConnConfig, dst: &ConnConfig) -> Result<Option<Cleaned>, FinishError> {
    let session = match connect(dst).await {
        Ok(s) => s,
        // No such database on the target: it holds no state (the caller cleans the pair).
        Err(e)
            if e.code()
                .is_some_and(|c| *c == SqlState::INVALID_CATALOG_NAME) =>
        {
            return Ok(None)
        }
        Err(source) => {
            return Err(MigrateError::Connect {
                role: "target",
                source,
            }
            .into())
        }
    };
    let store = Store::new(&session.client, &dst.dbname);
    let Some(migration) = store.migration().await? else {
        return Ok(None);
    };
    if !store.try_lock().await? {
        return Err(FinishError::Running);
    }
    let mangle = mangle_of(&migration.options);
    let mut cleaned = Cleaned::default();
    for db in store.databases(&migration.id).await? {
        let name = db.dbname;
        let names = publication::names_for(&name, mangle);
        match connect(&src.with_dbname(&name)).await {
            Ok(source) => {
                crate::replication::slot::drop(&source.client, &names.slot)
                    .await
                    .map_err(|e| db_err(&name)(e.to_string()))?;
                publication::drop_publication(&source.client, &names.publication)
                    .await
                    .map_err(|e| db_err(&name)(e.to_string()))?;
                cleaned
                    .source_objects
                    .push(format!("{name}: {}, {}", names.slot, names.publication));
            }
            // The database is gone from the source: nothing of ours can be left there.
            Err(e)
                if e.code()
                    .is_some_and(|c| *c == SqlState::INVALID_CATALOG_NAME) => {}
            Err(e) => return Err(db_err(&name)(format!("source: {e}"))),
        }
        match connect(&dst.with_dbname(&name)).await {
            Ok(target) => {
                forget_progress(&target.client, &names.slot, name == dst.dbname).await;
            }
            Err(e)
                if e.code()
                    .is_some_and(|c| *c == SqlState::INVALID_CATALOG_NAME) => {}
            Err(e) => return Err(db_err(&name)(format!("target: {e}"))),
        }
    }
    store.drop_all().await?;
    cleaned.state_removed = true;
    Ok(Some(cleaned))
}

/// Removes a database's progress row, then the progress table and schema `pgferry` when
/// nothing else is left in them (in the bootstrap database the schema also holds the
/// migration state, which stays until cleanup). Best effort: a leftover empty table harms
/// nothing.
pub(crate) async fn forget_progress(client: &tokio_postgres::Client, slot: &str, bootstrap: bool) {
    let _ = apply_state::forget(client, slot).await;
    let _ = apply_state::drop_empty_tables(client).await;
    if !bootstrap {
        let _ = crate::state::drop_schema_if_no_table(client).await;
    }
}
