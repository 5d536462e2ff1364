//! `pgferry clone`: one database, schema + data + post-data, with progress and a summary.

use super::{conn_config, exit, size::format_size, CliError, CloneArgs, CopyFormat};
use crate::clone::database::ExistingTarget;
use crate::clone::{clone_database, CloneOptions, CloneSummary, FormatChoice};
use crate::progress::{Bars, JsonEvents, Reporter};
use serde_json::json;

pub async fn run(args: &CloneArgs) -> Result<u8, CliError> {
    if args.follow {
        return Err(CliError::usage(
            "--follow needs the logical replication engine, which is not in this build yet; \
             run without --follow for a one-shot snapshot copy",
        ));
    }
    let src = conn_config("source", &args.source.source)?;
    let dst = conn_config("target", &args.target.target)?;
    let defaults = CloneOptions::default();
    let jobs = args.copy.jobs.unwrap_or(defaults.jobs).max(1);
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
        filter: Default::default(),
    };

    let events = args.json.then(JsonEvents::default);
    let bars = (!args.json).then(Bars::new);
    let reporter: &dyn Reporter = match (&events, &bars) {
        (Some(events), _) => events,
        (None, Some(bars)) => bars,
        (None, None) => unreachable!("one of the two reporters is always built"),
    };

    let outcome = tokio::select! {
        r = clone_database(&src, &dst, &opts, reporter) => r,
        _ = tokio::signal::ctrl_c() => {
            return Err(CliError::failed(format!(
                "interrupted: target database \"{}\" is incomplete (the copy in progress was rolled back); \
                 rerun with --drop-if-exists to start over",
                dst.dbname
            )));
        }
    };
    let summary = outcome.map_err(|e| CliError::failed(e.to_string()))?;
    if let Some(events) = &events {
        events.emit("summary", summary_json(&summary));
    }
    if let Some(bars) = &bars {
        bars.finish();
        print!("{}", render_summary(&summary));
    }
    Ok(exit::OK)
}

fn summary_json(s: &CloneSummary) -> serde_json::Value {
    json!({
        "tables": s.tables.iter().map(|t| json!({
            "table": t.table, "rows": t.rows, "bytes": t.bytes,
            "seconds": t.elapsed.as_secs_f64(), "format": t.format.as_sql(),
        })).collect::<Vec<_>>(),
        "sequences": s.sequences,
        "post_data_statements": s.post_data_statements,
        "seconds": s.elapsed.as_secs_f64(),
        "schema_kept": s.schema_kept,
        "warnings": s.schema_warnings,
    })
}

/// The end-of-run table: one row per copy job, slowest first, then totals.
pub fn render_summary(s: &CloneSummary) -> String {
    use std::fmt::Write;
    let mut tables = s.tables.clone();
    tables.sort_by(|a, b| b.elapsed.cmp(&a.elapsed).then(a.table.cmp(&b.table)));
    let width = tables
        .iter()
        .map(|t| t.table.len())
        .max()
        .unwrap_or(5)
        .clamp(5, 60);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<width$}  {:>12}  {:>10}  {:>8}  {:>9}  FORMAT",
        "TABLE", "ROWS", "BYTES", "SECONDS", "MB/S"
    );
    let (mut rows, mut bytes) = (0u64, 0u64);
    for t in &tables {
        let secs = t.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            t.bytes as f64 / secs / 1_048_576.0
        } else {
            0.0
        };
        let _ = writeln!(
            out,
            "{:<width$}  {:>12}  {:>10}  {:>8.2}  {:>9.1}  {}",
            t.table,
            t.rows,
            format_size(t.bytes),
            secs,
            rate,
            t.format.as_sql()
        );
        rows += t.rows;
        bytes += t.bytes;
    }
    let secs = s.elapsed.as_secs_f64();
    let _ = writeln!(
        out,
        "copied {} tables, {} rows, {} in {:.1} s ({:.1} MB/s overall); {} post-data statements, {} sequences{}",
        tables.len(),
        rows,
        format_size(bytes),
        secs,
        if secs > 0.0 { bytes as f64 / secs / 1_048_576.0 } else { 0.0 },
        s.post_data_statements,
        s.sequences,
        if s.materialized_views_refreshed { ", materialized views refreshed" } else { "" }
    );
    out
}
