//! `pgferry clone`: one database, schema + data + post-data, with progress and a summary.

use super::{conn_config, exit, CliError, CloneArgs, CopyFormat};
use crate::clone::database::ExistingTarget;
use crate::clone::{clone_database, render_summary, CloneOptions, CloneSummary, FormatChoice};
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
        snapshot: None,
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
        "large_objects": s.large_objects,
        "post_data_statements": s.post_data_statements,
        "seconds": s.elapsed.as_secs_f64(),
        "schema_kept": s.schema_kept,
        "warnings": s.schema_warnings.iter().chain(s.warnings.iter()).collect::<Vec<_>>(),
        "materialized_views_refreshed": s.materialized_views_refreshed,
    })
}
