//! `pgferry dump` and `pgferry restore`: flags → [`crate::archive`], progress, summaries.

use super::clone_cmd::wait_for_signal;
use super::{conn_config, exit, CliError, Compression, DumpArgs, RestoreArgs, RestoreSection};
use crate::archive::manifest::Compression as StoredCompression;
use crate::archive::{
    dump_database, open_archive, partial_dir, restore_archive, ArchiveError, DumpOptions,
    DumpSummary, RestoreOptions, Sections,
};
use crate::clone::{render_summary, CloneOptions};
use crate::copy::TableFilter;
use crate::progress::{Bars, JsonEvents, Reporter};
use crate::units::{count, format_size};
use serde_json::json;

/// `table` means `public.table`; `db.schema.table` (the migrate spelling) keeps its last two
/// parts.
fn table_pattern(text: &str) -> String {
    let parts: Vec<&str> = text.split('.').collect();
    match parts.as_slice() {
        [table] => format!("public.{table}"),
        [.., schema, table] => format!("{schema}.{table}"),
        [] => text.to_string(),
    }
}

/// One reporter, bars or JSON events, as `--json` says.
struct Progress {
    events: Option<JsonEvents>,
    bars: Option<Bars>,
}

impl Progress {
    fn new(json: bool) -> Progress {
        Progress {
            events: json.then(JsonEvents::default),
            bars: (!json).then(Bars::new),
        }
    }

    fn reporter(&self) -> &dyn Reporter {
        match (&self.events, &self.bars) {
            (Some(events), _) => events,
            (None, Some(bars)) => bars,
            (None, None) => unreachable!("one of the two reporters is always built"),
        }
    }

    fn finish(&self) {
        if let Some(bars) = &self.bars {
            bars.finish();
        }
    }
}

pub async fn dump(args: &DumpArgs) -> Result<u8, CliError> {
    let src = conn_config("source", &args.source.source)?;
    let opts = DumpOptions {
        output: args.output.clone(),
        jobs: args.jobs.or(CloneOptions::default().jobs),
        compression: match args.compress {
            Compression::Zstd => StoredCompression::Zstd,
            Compression::None => StoredCompression::None,
        },
        schema: !args.data_only,
        data: !args.schema_only,
        filter: TableFilter {
            include: args.with_table.iter().map(|t| table_pattern(t)).collect(),
            exclude: args.skip_table.iter().map(|t| table_pattern(t)).collect(),
        },
        split_threshold: args.split_tables_larger_than.max(1),
    };
    if opts.output.exists() {
        return Err(CliError::usage(
            ArchiveError::Exists(opts.output.clone()).to_string(),
        ));
    }
    // Each --with-table/--skip-table name must match a table: a typo would dump the wrong set.
    if !opts.filter.include.is_empty() || !opts.filter.exclude.is_empty() {
        check_table_filter(&src, &args.with_table, &args.skip_table).await?;
    }
    let progress = Progress::new(args.json);
    let outcome = tokio::select! {
        r = dump_database(&src, &opts, progress.reporter()) => r,
        _ = wait_for_signal() => {
            let _ = std::fs::remove_dir_all(partial_dir(&opts.output));
            progress.finish();
            return Err(CliError::interrupted(format!(
                "interrupted: no archive was written ({} does not exist; the partial directory was removed)",
                opts.output.display()
            )));
        }
    };
    progress.finish();
    let summary = outcome.map_err(|e| match e {
        // Another process created it meanwhile: it is not ours to describe.
        e @ ArchiveError::Exists(_) => CliError::usage(e.to_string()),
        e => CliError::failed(format!(
            "{e} (no archive was written: {} does not exist)",
            opts.output.display()
        )),
    })?;
    match &progress.events {
        Some(events) => events.emit("summary", dump_json(&summary, &opts)),
        None => println!("{}", dump_text(&summary, &opts)),
    }
    Ok(exit::OK)
}

/// Refuses (exit 2, before anything is written) filter names that match no table of the
/// source database, naming each.
async fn check_table_filter(
    src: &crate::conn::ConnConfig,
    with: &[String],
    skip: &[String],
) -> Result<(), CliError> {
    let session = crate::conn::connect(src)
        .await
        .map_err(|e| CliError::failed(format!("source: {e}")))?;
    let tables = crate::migrate::plan::user_tables(&session.client)
        .await
        .map_err(|e| {
            CliError::failed(format!(
                "source: listing tables: {}",
                crate::pgerror::server_message(&e)
            ))
        })?;
    let mut unmatched = Vec::new();
    for (flag, names) in [("--with-table", with), ("--skip-table", skip)] {
        for name in names.iter().filter(|n| !n.trim().is_empty()) {
            let pattern = TableFilter {
                include: vec![table_pattern(name)],
                exclude: Vec::new(),
            };
            if !tables.iter().any(|(s, t)| pattern.matches(s, t)) {
                unmatched.push(format!("{flag} {name}"));
            }
        }
    }
    if unmatched.is_empty() {
        Ok(())
    } else {
        Err(CliError::usage(format!(
            "no table of source database \"{}\" matches {} (a bare name means public.NAME; \
             write schema.table otherwise); nothing was written",
            src.dbname,
            unmatched.join(", ")
        )))
    }
}

fn dump_text(s: &DumpSummary, opts: &DumpOptions) -> String {
    format!(
        "dumped {} ({}, {} of COPY data), {}, {} into {} ({} stored) in {:.1} s",
        count(s.tables.len() as u64, "data file"),
        count(s.tables.iter().map(|t| t.rows).sum::<u64>(), "row"),
        format_size(s.raw_bytes),
        count(s.sequences as u64, "sequence"),
        count(s.large_objects as u64, "large object"),
        opts.output.display(),
        format_size(s.stored_bytes),
        s.elapsed.as_secs_f64()
    )
}

fn dump_json(s: &DumpSummary, opts: &DumpOptions) -> serde_json::Value {
    json!({
        "archive": opts.output.display().to_string(),
        "tables": s.tables.iter().map(|t| json!({
            "table": t.table, "rows": t.rows, "stored_bytes": t.bytes,
            "seconds": t.elapsed.as_secs_f64(), "format": t.format.as_sql(),
        })).collect::<Vec<_>>(),
        "sequences": s.sequences,
        "large_objects": s.large_objects,
        "raw_bytes": s.raw_bytes,
        "stored_bytes": s.stored_bytes,
        "seconds": s.elapsed.as_secs_f64(),
        "warnings": s.warnings,
    })
}

pub async fn restore(args: &RestoreArgs) -> Result<u8, CliError> {
    let archive = open_archive(&args.input).map_err(|e| CliError::failed(e.to_string()))?;
    if args.list {
        if args.json {
            println!("{}", String::from_utf8_lossy(&archive.manifest.to_json()));
        } else {
            print!("{}", crate::archive::list::render(&archive.manifest));
        }
        return Ok(exit::OK);
    }
    let Some(target) = &args.target.target else {
        return Err(CliError::usage("restore needs -t DST (or --list)"));
    };
    let dst = conn_config("target", target)?;
    let all = args.section.contains(&RestoreSection::All);
    let sections = Sections {
        pre_data: all || args.section.contains(&RestoreSection::PreData),
        data: all || args.section.contains(&RestoreSection::Data),
        post_data: all || args.section.contains(&RestoreSection::PostData),
    };
    let opts = RestoreOptions {
        jobs: args.jobs.or(CloneOptions::default().jobs),
        sections,
        clean: args.clean,
        skip_analyze: args.skip_analyze,
        no_publications: args.publications.no_publications,
    };
    let progress = Progress::new(args.json);
    let outcome = tokio::select! {
        r = restore_archive(&archive, &dst, &opts, progress.reporter()) => r,
        _ = wait_for_signal() => {
            progress.finish();
            return Err(CliError::interrupted(format!(
                "interrupted: target database \"{}\" is incomplete (the loads in progress were rolled back); \
                 rerun with --clean to start over",
                dst.dbname
            )));
        }
    };
    progress.finish();
    fn not_empty(e: &ArchiveError) -> bool {
        match e {
            ArchiveError::TargetNotEmpty(_) => true,
            ArchiveError::During { source, .. } => not_empty(source),
            _ => false,
        }
    }
    let summary = outcome.map_err(|e| {
        if not_empty(&e) {
            CliError::refused(e.to_string())
        } else {
            CliError::failed(e.to_string())
        }
    })?;
    match &progress.events {
        Some(events) => events.emit(
            "summary",
            json!({
                "tables": summary.tables.iter().map(|t| json!({
                    "table": t.table, "rows": t.rows, "bytes": t.bytes,
                    "seconds": t.elapsed.as_secs_f64(), "format": t.format.as_sql(),
                })).collect::<Vec<_>>(),
                "sequences": summary.sequences,
                "large_objects": summary.large_objects,
                "post_data_statements": summary.post_data_statements,
                "materialized_views_refreshed": summary.materialized_views_refreshed,
                "seconds": summary.elapsed.as_secs_f64(),
                "warnings": summary.schema_warnings.iter().chain(summary.warnings.iter()).collect::<Vec<_>>(),
            }),
        ),
        None => print!("{}", render_summary(&summary)),
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::table_pattern;

    #[test]
    fn table_patterns() {
        assert_eq!(table_pattern("t"), "public.t");
        assert_eq!(table_pattern("s.t"), "s.t");
        assert_eq!(table_pattern("db.s.t"), "s.t");
        assert_eq!(table_pattern("s.*"), "s.*");
    }
}
