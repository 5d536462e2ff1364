//! What a streaming session keeps an eye on at the source, besides the lag: tables that are
//! not (or no longer) replicated ([`super::guard`]), and the WAL our slot makes the source keep.
//!
//! **WAL retention.** A logical slot makes the source keep every WAL segment from the slot's
//! `restart_lsn` on, whether or not anybody reads it. pgferry stopped, crashed or far behind
//! (apply blocked on the target) means the source's disk fills, an outage caused by the
//! migration. So every `lag_interval` the session reads `pg_current_wal_lsn() - restart_lsn`
//! (and `wal_status` / `safe_wal_size` on PostgreSQL 13+), reports it (status shows it), warns
//! once past half of `--max-slot-retained` and again past 80 %, and past the limit drops its
//! own slot and publication and stops with [`RetentionExceeded`]: the database must be copied
//! again. A server that sets `max_slot_wal_keep_size` invalidates the slot itself past that
//! size (`wal_status = lost`); that is reported too.

use super::guard;
use super::publication::{self, ObjectNames};
use super::slot::{self, read_retention, SlotRetention};
use crate::copy::TableFilter;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio_postgres::Client;

/// `--max-slot-retained` when not given: 64 GiB. Large enough not to fire on a busy but
/// healthy migration, small enough to stop before most data disks are full.
pub const DEFAULT_MAX_SLOT_RETAINED: u64 = 64 << 30;

#[derive(Debug, Error)]
pub enum WatchError {
    #[error("source: reading the replication slot's WAL retention: {0}")]
    Query(#[source] tokio_postgres::Error),
    #[error(transparent)]
    Guard(#[from] guard::GuardError),
    #[error(transparent)]
    Exceeded(#[from] RetentionExceeded),
}

/// The hard limit was passed; the slot and publication were dropped.
#[derive(Debug, Error)]
#[error(
    "replication slot \"{slot}\" made the source retain {retained} bytes of WAL, past \
     --max-slot-retained {limit} bytes (the source keeps WAL until pgferry consumes it, and its \
     disk could fill). pgferry dropped its slot and publication, so the source no longer retains \
     WAL for it{dropped}; the target database is no longer kept in sync. To continue, find why \
     streaming fell behind (the log says why apply waited or failed), then copy the database \
     again: rerun the same `pgferry migrate` command (it copies a database without a slot \
     again), or `pgferry clone --follow --drop-if-exists`"
)]
pub struct RetentionExceeded {
    pub slot: String,
    pub retained: u64,
    pub limit: u64,
    /// Empty, or why dropping failed (then the user must drop the slot).
    pub dropped: String,
}

/// What a tick found that the caller reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tick {
    /// Tables created since the start, added to the publication now.
    pub published: Vec<String>,
    /// The tables not replicated, when that list changed since the last tick.
    pub not_replicated: Option<Vec<String>>,
    pub retention: Option<SlotRetention>,
}

/// Oids of the source tables the applier has replicated, shared with the watch.
pub type KnownTables = std::sync::Arc<std::sync::RwLock<std::collections::HashSet<u32>>>;

/// State kept across ticks of one streaming session.
pub struct SourceWatch {
    names: ObjectNames,
    /// The source tables the applier has seen (see [`guard::publish_new`]).
    known: KnownTables,
    /// New tables this user may not publish (named once).
    refused: std::collections::HashSet<u32>,
    filter: TableFilter,
    max_retained: Option<u64>,
    interval: Duration,
    last: Option<Instant>,
    not_replicated: Option<Vec<String>>,
    warned_percent: u64,
    keep_size_reported: bool,
}

impl SourceWatch {
    /// `max_retained`: `--max-slot-retained` (`None` or 0: no limit).
    pub fn new(
        names: &ObjectNames,
        filter: &TableFilter,
        max_retained: Option<u64>,
        interval: Duration,
        known: KnownTables,
    ) -> SourceWatch {
        SourceWatch {
            known,
            refused: Default::default(),
            names: names.clone(),
            filter: filter.clone(),
            max_retained: max_retained.filter(|m| *m > 0),
            interval,
            last: None,
            not_replicated: None,
            warned_percent: 0,
            keep_size_reported: false,
        }
    }

    /// The slot watched.
    pub fn slot(&self) -> &str {
        &self.names.slot
    }

    /// Does the work when `interval` has passed since the last time; `Ok(None)` otherwise.
    pub async fn tick(&mut self, client: &Client) -> Result<Option<Tick>, WatchError> {
        if self.last.is_some_and(|t| t.elapsed() < self.interval) {
            return Ok(None);
        }
        self.last = Some(Instant::now());
        let mut tick = Tick::default();

        guard::enforce(client, &self.names.publication).await?;
        let known = self.known.read().map(|k| k.clone()).unwrap_or_default();
        tick.published = guard::publish_new(
            client,
            &self.names.publication,
            &self.filter,
            &known,
            &mut self.refused,
        )
        .await?;
        let missing = guard::not_published(client, &self.names.publication, &self.filter).await?;
        if self.not_replicated.as_ref() != Some(&missing) {
            // Reported once, by the caller (FollowEvent::NotReplicated).
            tick.not_replicated = Some(missing.clone());
            self.not_replicated = Some(missing);
        }

        let retention = read_retention(client, &self.names.slot)
            .await
            .map_err(WatchError::Query)?;
        if let Some(r) = &retention {
            self.check_limits(client, r).await?;
        }
        tick.retention = retention;
        Ok(Some(tick))
    }

    async fn check_limits(&mut self, client: &Client, r: &SlotRetention) -> Result<(), WatchError> {
        if !self.keep_size_reported {
            self.keep_size_reported = true;
            if let Some(keep) = r.max_slot_wal_keep_size {
                tracing::info!(
                    "the source sets max_slot_wal_keep_size = {keep} bytes: past that it \
                     invalidates slot {} itself and the database must be copied again",
                    self.names.slot
                );
            }
        }
        if r.wal_status.as_deref() == Some("unreserved") {
            tracing::warn!(
                "slot {}: wal_status unreserved: the source is about to remove WAL this slot \
                 needs (max_slot_wal_keep_size); streaming must catch up now",
                self.names.slot
            );
        }
        let (Some(limit), Some(retained)) = (self.max_retained, r.retained_bytes) else {
            return Ok(());
        };
        let percent = retained.saturating_mul(100) / limit.max(1);
        for level in [50, 80] {
            if percent >= level && self.warned_percent < level {
                self.warned_percent = level;
                tracing::warn!(
                    "slot {} retains {retained} bytes of WAL on the source, {percent}% of \
                     --max-slot-retained {limit}: at 100% pgferry drops it and the database must \
                     be copied again",
                    self.names.slot
                );
            }
        }
        if retained <= limit {
            return Ok(());
        }
        tracing::error!(
            "slot {} retains {retained} bytes of WAL, past --max-slot-retained {limit}: dropping \
             it and publication {}",
            self.names.slot,
            self.names.publication
        );
        let mut dropped = String::new();
        if let Err(e) = slot::drop(client, &self.names.slot).await {
            dropped = format!(
                " (but dropping the slot failed: {e}; drop it: SELECT pg_drop_replication_slot('{}'))",
                self.names.slot
            );
        }
        if let Err(e) = publication::drop_publication(client, &self.names.publication).await {
            tracing::warn!("dropping publication {}: {e}", self.names.publication);
        }
        Err(RetentionExceeded {
            slot: self.names.slot.clone(),
            retained,
            limit,
            dropped,
        }
        .into())
    }
}
