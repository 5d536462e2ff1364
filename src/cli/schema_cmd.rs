//! `pgferry schema`: print the DDL rebuilt from the source's catalogs.

use super::{conn_config, exit, CliError, SchemaArgs, Section};
use crate::conn::connect;
use crate::conn::{ConnConfig, Session};
use crate::schema::{DumpOptions, SectionFilter, SubscriptionMode};
use crate::script::dump_schema_parallel;

pub async fn run(args: &SchemaArgs) -> Result<u8, CliError> {
    let cfg = conn_config("source", &args.source.source)?;
    let session = connect(&cfg)
        .await
        .map_err(|e| CliError::failed(format!("source: {e}")))?;
    let label = format!("source ({})", cfg.display_target());
    crate::catalog::begin_snapshot_read(&session.client, None)
        .await
        .map_err(|e| CliError::failed(format!("{label}: {e}")))?;
    let opts = DumpOptions {
        no_owner: args.ownership.no_owner,
        no_privileges: args.ownership.no_privileges,
        section: match args.section {
            Section::PreData => SectionFilter::PreData,
            Section::PostData => SectionFilter::PostData,
            Section::All => SectionFilter::All,
        },
        target_tablespaces: None,
        excluded_extensions: Vec::new(),
        post_data_units: false,
        subscriptions: if args.no_subscriptions {
            SubscriptionMode::Omit
        } else {
            SubscriptionMode::Script
        },
        ..DumpOptions::default()
    };
    // A second session on the same snapshot lets the server read half of the catalogs in
    // parallel; without it (the export or the connection refused) one session reads it all.
    let helper = second_reader(&session.client, &cfg).await;
    let clients: Vec<&tokio_postgres::Client> = std::iter::once(&session.client)
        .chain(helper.as_ref().map(|s| &s.client))
        .collect();
    let script = dump_schema_parallel(&clients, &opts)
        .await
        .map_err(|e| CliError::failed(format!("{label}: {e}")))?;
    // Read-only transactions: ending them changes nothing.
    if let Some(h) = &helper {
        let _ = h.client.batch_execute("COMMIT").await;
    }
    let _ = session.client.batch_execute("COMMIT").await;
    for warning in &script.warnings {
        tracing::warn!("{warning}");
    }
    let mut text = String::new();
    if !script.pre_data.is_empty() {
        text.push_str("--\n-- pgferry schema: pre-data\n--\n\n");
        text.push_str(&script.pre_data);
    }
    if !script.post_data.is_empty() {
        text.push_str("--\n-- pgferry schema: post-data\n--\n\n");
        text.push_str(&script.post_data);
    }
    // pg_dump puts publications in post-data; pgferry's own are never in the script.
    let publications =
        args.section != Section::PreData && !args.ownership.publications.no_publications;
    if publications && !script.publications.is_empty() {
        text.push_str("--\n-- pgferry schema: publications\n--\n\n");
        text.push_str(&script.publications);
    }
    if !script.subscriptions.is_empty() {
        text.push_str("--\n-- pgferry schema: subscriptions\n--\n\n");
        text.push_str(&script.subscriptions);
    }
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| CliError::failed(format!("cannot write {}: {e}", path.display())))?,
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            // A closed pipe (`pgferry schema | head`) is not an error.
            if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    return Err(CliError::failed(format!(
                        "cannot write to standard output: {e}"
                    )));
                }
            }
        }
    }
    Ok(exit::OK)
}

/// A second session in the snapshot `primary`'s transaction exports; `None` (said in debug
/// logs) when that cannot be had.
async fn second_reader(primary: &tokio_postgres::Client, cfg: &ConnConfig) -> Option<Session> {
    let snapshot = match crate::catalog::export_snapshot(primary).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("one session reads the catalogs: {e}");
            return None;
        }
    };
    let session = match connect(cfg).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("one session reads the catalogs: a second connection failed: {e}");
            return None;
        }
    };
    match crate::catalog::begin_snapshot_read(&session.client, Some(&snapshot)).await {
        Ok(()) => Some(session),
        Err(e) => {
            tracing::debug!("one session reads the catalogs: {e}");
            None
        }
    }
}
