//! `pgferry clone`: one database, schema + data + post-data, with progress and a summary;
//! with `--follow`, then the changes made since, through logical replication, until cutover.

use super::{conn_config, exit, CliError, CloneArgs, CopyFormat};
use crate::clone::database::ExistingTarget;
use crate::clone::{
    clone_database, render_summary, CloneError, CloneOptions, CloneSummary, FormatChoice,
};
use crate::copy::{CopyStats, ProgressSink, TableJob};
use crate::live::{Board, Mode, Renderer};
use crate::progress::{Bars, JsonEvents, Reporter};
use crate::replication::ddl_capture::CaptureError;
use crate::replication::{follow_database, FollowError, FollowEvent, FollowOptions, FollowOutcome};
use crate::state::lifecycle::Phase;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

pub async fn run(args: &CloneArgs) -> Result<u8, CliError> {
    let src = conn_config("source", &args.source.source)?;
    let dst = conn_config("target", &args.target.target)?;
    let defaults = CloneOptions::default();
    let jobs = args.copy.jobs.or(defaults.jobs);
    let opts = CloneOptions {
        jobs,
        index_jobs: args.copy.index_jobs.unwrap_or(jobs).max(1),
        split_threshold: args.copy.split_tables_larger_than.max(1),
        format: match args.copy_format {
            CopyFormat::Auto => FormatChoice::Auto,
            CopyFormat::Binary => FormatChoice::Binary,
            CopyFormat::Text => FormatChoice::Text,
        },
        existing: if args.drop_if_exists {
            ExistingTarget::Drop
        } else if args.truncate {
            ExistingTarget::Truncate
        } else {
            ExistingTarget::Refuse
        },
        skip_analyze: args.skip_analyze,
        owners: std::sync::Arc::new(crate::server::access::Owners::new(args.ownership.no_owner)),
        no_privileges: args.ownership.no_privileges,
        no_publications: args.ownership.publications.no_publications,
        ..defaults
    };

    if args.follow {
        return follow(args, &src, &dst, opts).await;
    }
    if args.streaming.live.metrics_listen.is_some() {
        return Err(CliError::usage(
            "--metrics-listen is for a long run: give it with --follow (or use migrate)",
        ));
    }

    let events = args.json.then(JsonEvents::default);
    let bars = (!args.json).then(Bars::new);
    let reporter: &dyn Reporter = match (&events, &bars) {
        (Some(events), _) => events,
        (None, Some(bars)) => bars,
        (None, None) => unreachable!("one of the two reporters is always built"),
    };

    let outcome = tokio::select! {
        r = clone_database(&src, &dst, &opts, reporter) => r,
        _ = wait_for_signal() => {
            if let Some(bars) = &bars {
                bars.finish();
            }
            return Err(CliError::interrupted(format!(
                "interrupted: target database \"{}\" is incomplete (the copy in progress was rolled back); \
                 rerun with --drop-if-exists to start over",
                dst.dbname
            )));
        }
    };
    let summary = outcome.map_err(clone_error)?;
    if let Some(events) = &events {
        events.emit("summary", summary_json(&summary));
    }
    if let Some(bars) = &bars {
        bars.finish();
        print!("{}", render_summary(&summary));
    }
    Ok(exit::OK)
}

/// A refusal to touch a non-empty target database is exit 3, as for `restore` and `migrate`;
/// every other error is a failure (1).
fn clone_error(e: CloneError) -> CliError {
    fn not_empty(e: &CloneError) -> bool {
        match e {
            CloneError::TargetNotEmpty { .. } => true,
            CloneError::During { source, .. } => not_empty(source),
            _ => false,
        }
    }
    if not_empty(&e) {
        CliError::refused(e.to_string())
    } else {
        CliError::failed(e.to_string())
    }
}

fn summary_json(s: &CloneSummary) -> serde_json::Value {
    json!({
        "tables": s.tables.iter().map(|t| json!({
            "table": t.table, "rows": t.rows, "bytes": t.bytes,
            "seconds": t.elapsed.as_secs_f64(), "format": t.format.as_sql(),
        })).collect::<Vec<_>>(),
        "sequences": s.sequences,
        "large_objects": s.large_objects,
        "post_data_statements": s.post_data_statements,
        "seconds": s.elapsed.as_secs_f64(),
        "schema_kept": s.schema_kept,
        "warnings": s.schema_warnings.iter().chain(s.warnings.iter()).collect::<Vec<_>>(),
        "materialized_views_refreshed": s.materialized_views_refreshed,
        "publications": s.publications,
    })
}

/// The copy's progress of `clone --follow` into the live view; JSON events as `clone` writes
/// them with --json.
struct LiveReporter<'a> {
    board: &'a Board,
    db: &'a str,
    events: Option<&'a JsonEvents>,
    live: &'a Renderer,
}

impl Reporter for LiveReporter<'_> {
    fn planned(&self, jobs: usize, bytes: u64) {
        self.board.planned(self.db, jobs as u64, bytes);
        if let Some(events) = self.events {
            events.planned(jobs, bytes);
        }
    }

    fn stage(&self, phase: Option<Phase>, what: &str) {
        if let Some(phase) = phase {
            self.board.phase(self.db, phase);
        }
        match self.events {
            Some(events) => events.stage(phase, what),
            None => self.live.println(&format!("pgferry: {what}")),
        }
    }
}

impl ProgressSink for LiveReporter<'_> {
    fn job_started(&self, job: &TableJob) {
        if let Some(events) = self.events {
            events.job_started(job);
        }
    }

    fn bytes_copied(&self, _job: &TableJob, bytes: u64) {
        self.board.bytes_copied(self.db, bytes);
    }

    fn job_finished(&self, job: &TableJob, stats: &CopyStats) {
        self.board.job_finished(self.db, stats.rows);
        if let Some(events) = self.events {
            events.job_finished(job, stats);
        }
    }
}

/// `--follow`: clone under a slot's snapshot (or resume), stream, and cut over when asked;
/// a live line while it runs and a summary at the end.
async fn follow(
    args: &CloneArgs,
    src: &crate::conn::ConnConfig,
    dst: &crate::conn::ConnConfig,
    clone: CloneOptions,
) -> Result<u8, CliError> {
    let json = args.json.then(|| Arc::new(JsonEvents::default()));
    let board = Arc::new(Board::new());
    let db = src.dbname.clone();
    board.method(&db, "replication");
    let metrics =
        super::migrate_cmd::start_metrics(&args.streaming.live, &board, json.as_deref()).await?;
    let mut live = Renderer::start(
        board.clone(),
        Mode::detect(args.json),
        args.streaming.live.progress_interval,
        json.clone(),
    );
    let events = json.as_deref();
    let result = follow_live(args, src, dst, clone, &board, &db, events, &live).await;
    live.finish();
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    match &result {
        Ok(_) => board.phase(&db, Phase::Done),
        Err(e) if e.code == exit::INTERRUPTED => board.phase(&db, crate::live::LivePhase::Syncing),
        Err(e) => board.failed(&db, &e.message),
    }
    let views = board.views();
    match events {
        Some(events) => events.emit(
            "summary",
            json!({"databases": crate::live::summary_json(&views)}),
        ),
        None => print!("{}", crate::live::render_summary(&views)),
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn follow_live(
    args: &CloneArgs,
    src: &crate::conn::ConnConfig,
    dst: &crate::conn::ConnConfig,
    clone: CloneOptions,
    board: &Board,
    db: &str,
    events: Option<&JsonEvents>,
    live: &Renderer,
) -> Result<u8, CliError> {
    let reporter = LiveReporter {
        board,
        db,
        events,
        live,
    };
    let opts = FollowOptions {
        clone,
        cutover_at_lag: args
            .stop_replication
            .then_some(args.lag.max_replication_lag)
            .flatten(),
        replica_identity_full: args.streaming.replica_identity_full,
        retry_for: args.streaming.retry_for,
        max_slot_retained: Some(args.streaming.max_slot_retained),
        ddl_capture: args.streaming.ddl_capture,
        ..FollowOptions::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signals = tokio::spawn(async move {
        wait_for_signal().await;
        let _ = stop_tx.send(true);
    });
    let observer = |event: FollowEvent| {
        board.follow_event(db, &event);
        match events {
            Some(events) => events.emit("replication", event_json(&event)),
            // The live line shows the lag.
            None if matches!(event, FollowEvent::Lag { .. }) => {}
            None => {
                live.println(&format!("pgferry: {}", event_text(&event)));
                if let FollowEvent::Cloned(summary) = &event {
                    for w in summary.schema_warnings.iter().chain(&summary.warnings) {
                        live.println(&format!("pgferry: warning: {w}"));
                    }
                }
            }
        }
    };
    let result = follow_database(src, dst, &opts, &reporter, &observer, stop_rx).await;
    signals.abort();
    match result {
        Ok(FollowOutcome::CutOver { applied }) => {
            board.cut_over(db, applied);
            let text = format!(
                "cutover done at {applied}: sequences synced, replication slot and publication dropped; \
                 \"{}\" can take the writes",
                dst.dbname
            );
            match events {
                Some(events) => events.emit("cutover", json!({"applied_lsn": applied.to_string()})),
                None => live.println(&format!("pgferry: {text}")),
            }
            Ok(exit::OK)
        }
        // Only a signal stops a follow without a cutover.
        Ok(FollowOutcome::Stopped { applied }) => {
            if let Some(events) = events {
                events.emit("stopped", json!({"applied_lsn": applied.to_string()}));
            }
            Err(CliError::interrupted(format!(
                "interrupted: streaming stopped at {applied}; the slot and publication are kept on \
                 the source: rerun the same command to resume streaming"
            )))
        }
        Err(FollowError::Clone(e)) => Err(clone_error(e)),
        // --ddl-capture the source cannot have: refused before anything was created.
        Err(
            e @ FollowError::Capture(CaptureError::NotAllowed { .. } | CaptureError::TooOld { .. }),
        ) => Err(CliError::refused(e.to_string())),
        Err(e) => Err(CliError::failed(e.to_string())),
    }
}

/// Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn event_text(event: &FollowEvent) -> String {
    match event {
        FollowEvent::ReplicaIdentityFull(tables) => format!(
            "WARNING: the source was changed: REPLICA IDENTITY FULL set on {}",
            tables.join(", ")
        ),
        FollowEvent::Cloned(summary) => format!(
            "copy done ({} in {:.1}s); streaming the changes made since",
            crate::units::count(summary.tables.len() as u64, "table"),
            summary.elapsed.as_secs_f64()
        ),
        FollowEvent::Resuming { slot, from } => {
            format!("slot {slot} and the target's progress found: resuming from {from}, no copy")
        }
        FollowEvent::Streaming { from, binary } => format!(
            "streaming from {from} ({} values)",
            if *binary { "binary" } else { "text" }
        ),
        FollowEvent::Lag {
            bytes,
            applied,
            seconds,
            ..
        } => match seconds {
            Some(s) => format!("replication lag {bytes} bytes, {s:.1}s (applied up to {applied})"),
            None => format!("replication lag {bytes} bytes (applied up to {applied})"),
        },
        FollowEvent::Retrying {
            attempt,
            error,
            wait,
        } => format!(
            "attempt {attempt} failed: {error}; retrying in {:.1}s",
            wait.as_secs_f64()
        ),
        FollowEvent::CutoverStarted { lag } => {
            format!(
                "lag {lag} bytes: cutting over (syncing sequences, dropping slot and publication)"
            )
        }
        FollowEvent::SequencesSynced(n) => {
            format!("{} synced", crate::units::count(*n as u64, "sequence"))
        }
        FollowEvent::NotReplicated(tables) if tables.is_empty() => {
            "every user table is replicated".into()
        }
        FollowEvent::NotReplicated(tables) => format!(
            "WARNING: not replicated (created on the source without a usable replica identity, or \
             removed from the publication because they lost theirs): {}",
            tables.join(", ")
        ),
        FollowEvent::SlotRetention(r) => r.describe(),
        FollowEvent::RetainedWhileStopped(r) => format!(
            "WARNING: resuming: {} (kept since the slot was last read)",
            r.describe()
        ),
        FollowEvent::SnapshotHeld => {
            "slot created: the copy holds its snapshot open on the source until it ends".into()
        }
        FollowEvent::SchemaReconciled(r) => r.lines().join("\n"),
    }
}

fn event_json(event: &FollowEvent) -> serde_json::Value {
    match event {
        FollowEvent::Lag {
            bytes,
            applied,
            seconds,
            transactions,
        } => {
            json!({"event": "lag", "lag_bytes": bytes, "lag_seconds": seconds,
                   "applied_lsn": applied.to_string(), "transactions": transactions})
        }
        FollowEvent::Retrying {
            attempt,
            error,
            wait,
        } => {
            json!({"event": "retrying", "attempt": attempt, "error": error, "wait_seconds": wait.as_secs_f64()})
        }
        FollowEvent::Cloned(summary) => {
            json!({"event": "cloned", "summary": summary_json(summary)})
        }
        other => json!({"event": "info", "message": event_text(other)}),
    }
}

/// `30s`, `10m`, `1h`, `500ms`, `2d`, or a number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?} (expected e.g. 30s, 10m, 1h)"))?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ms, s, m, h or d)"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5y").is_err());
    }
}
