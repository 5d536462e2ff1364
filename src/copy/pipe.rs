//! One job through both COPY statements: the source's `COPY (SELECT ..) TO STDOUT` is forwarded
//! into the target's `COPY .. FROM STDIN`, both running at once.
//!
//! Failure on either side aborts the other: the target's `CopyInSink` is dropped unfinished
//! (tokio-postgres then sends CopyFail, so nothing of it is kept), and a failing target drops
//! the source stream (the source connection discards the rest of that COPY's output).

use bytes::Bytes;
use tokio_postgres::Client;

use super::binary_stream::RowCounter;
use super::forward::{forward, ForwardError, ForwardOptions};
use super::{CopyError, CopyStats, RowRange, Side, TableJob};

/// Tuning for [`copy_table`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipeOptions {
    pub forward: ForwardOptions,
}

/// Copies one job. `on_bytes` is called with each buffer's size as the target accepts it.
///
/// With `job.truncate_first` on a whole-table job, the target runs
/// `BEGIN; TRUNCATE ONLY t; COPY .. (FREEZE); COMMIT`: FREEZE writes the rows already frozen
/// (no later anti-wraparound vacuum of the whole table), which the server allows only when the
/// table was created or truncated in the same transaction. Ranged jobs never truncate here
/// (one range must not erase another's rows); see [`super::run::copy_all`].
pub async fn copy_table(
    src: &Client,
    dst: &Client,
    job: &TableJob,
    opts: &PipeOptions,
    on_bytes: &mut (dyn FnMut(u64) + Send),
) -> Result<CopyStats, CopyError> {
    let started = std::time::Instant::now();
    let name = job.display_name();
    let freeze = job.truncate_first && job.range.is_none();
    let target = |e: tokio_postgres::Error| CopyError::from_pg(Some(&name), Side::Target, &e);

    if freeze {
        let sql = format!("BEGIN; TRUNCATE ONLY {}", qualified(job));
        dst.batch_execute(&sql).await.map_err(target)?;
    }
    let copied = pipe(src, dst, job, freeze, opts, on_bytes)
        .await
        .map_err(|e| e.with_table(&name));
    if freeze {
        match &copied {
            Ok(_) => dst.batch_execute("COMMIT").await.map_err(target)?,
            // Best effort: the copy error is the one worth reporting, and a broken connection
            // rolls back by itself.
            Err(_) => {
                let _ = dst.batch_execute("ROLLBACK").await;
            }
        }
    }
    let (rows, bytes) = copied?;
    Ok(CopyStats {
        table: name,
        format: job.format,
        rows,
        bytes,
        elapsed: started.elapsed(),
    })
}

async fn pipe(
    src: &Client,
    dst: &Client,
    job: &TableJob,
    freeze: bool,
    opts: &PipeOptions,
    on_bytes: &mut (dyn FnMut(u64) + Send),
) -> Result<(u64, u64), CopyError> {
    let source = |e: tokio_postgres::Error| CopyError::from_pg(None, Side::Source, &e);
    let target = |e: tokio_postgres::Error| CopyError::from_pg(None, Side::Target, &e);
    let (src_sql, dst_sql) = (source_statement(job), target_statement(job, freeze));
    let (out, sink) = futures::try_join!(
        async { src.copy_out(src_sql.as_str()).await.map_err(source) },
        async {
            dst.copy_in::<_, Bytes>(dst_sql.as_str())
                .await
                .map_err(target)
        },
    )?;
    futures::pin_mut!(sink);
    let mut counter = RowCounter::for_format(job.format);
    let stats = forward(out, sink.as_mut(), &mut counter, opts.forward, on_bytes)
        .await
        .map_err(|e| match e {
            ForwardError::Source(e) => source(e),
            ForwardError::Sink(e) => target(e),
            ForwardError::Stream(e) => CopyError::new(None, Side::Data, e.to_string()),
        })?;
    let accepted = sink.as_mut().finish().await.map_err(target)?;
    if accepted != stats.rows {
        return Err(CopyError::new(
            None,
            Side::Data,
            format!(
                "the source sent {} rows but the target reports {accepted}",
                stats.rows
            ),
        ));
    }
    Ok((stats.rows, stats.bytes))
}

/// `COPY (SELECT cols FROM ONLY t [WHERE range]) TO STDOUT (FORMAT f)`. `ONLY`: a parent's
/// rows are its own, children are jobs of their own.
pub(crate) fn source_statement(job: &TableJob) -> String {
    let cols = job
        .columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let range = match &job.range {
        None => String::new(),
        Some(RowRange::Ctid { start, end }) => {
            let mut w = format!(" WHERE ctid >= '({start},0)'::tid");
            if let Some(end) = end {
                w.push_str(&format!(" AND ctid < '({end},0)'::tid"));
            }
            w
        }
        Some(RowRange::IntKey { column, low, high }) => {
            let col = quote_ident(column);
            let mut parts = Vec::new();
            if let Some(low) = low {
                parts.push(format!("{col} >= {low}"));
            }
            if let Some(high) = high {
                parts.push(format!("{col} < {high}"));
            }
            if parts.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", parts.join(" AND "))
            }
        }
    };
    let filter = match (&job.row_filter, range.is_empty()) {
        (None, _) => range,
        (Some(cond), true) => format!(" WHERE ({cond})"),
        (Some(cond), false) => format!("{range} AND ({cond})"),
    };
    format!(
        "COPY (SELECT {cols} FROM ONLY {}{filter}) TO STDOUT (FORMAT {})",
        qualified(job),
        job.format.as_sql()
    )
}

/// `COPY t (cols) FROM STDIN (FORMAT f[, FREEZE])`.
pub(crate) fn target_statement(job: &TableJob, freeze: bool) -> String {
    let cols = if job.columns.is_empty() {
        // A table with no copied columns: the rows still count (and carry generated values).
        String::new()
    } else {
        let list: Vec<String> = job.columns.iter().map(|c| quote_ident(c)).collect();
        format!(" ({})", list.join(", "))
    };
    let freeze = if freeze { ", FREEZE" } else { "" };
    format!(
        "COPY {}{cols} FROM STDIN (FORMAT {}{freeze})",
        qualified(job),
        job.format.as_sql()
    )
}

pub(crate) fn qualified(job: &TableJob) -> String {
    crate::quote::qualified(&job.schema, &job.table)
}

pub(crate) use crate::quote::quote_ident;

#[cfg(test)]
mod tests {
    use super::super::CopyFormat;
    use super::*;

    fn job(range: Option<RowRange>) -> TableJob {
        TableJob {
            schema: "s".into(),
            table: "T\"x".into(),
            columns: vec!["id".into(), "Na me".into()],
            range,
            format: CopyFormat::Binary,
            truncate_first: true,
            estimated_bytes: 0,
            text_reason: None,
            row_filter: None,
        }
    }

    #[test]
    fn statements_quote_identifiers_and_ranges() {
        assert_eq!(
            source_statement(&job(None)),
            r#"COPY (SELECT id, "Na me" FROM ONLY s."T""x") TO STDOUT (FORMAT binary)"#
        );
        assert_eq!(
            source_statement(&job(Some(RowRange::Ctid {
                start: 10,
                end: Some(20)
            }))),
            r#"COPY (SELECT id, "Na me" FROM ONLY s."T""x" WHERE ctid >= '(10,0)'::tid AND ctid < '(20,0)'::tid) TO STDOUT (FORMAT binary)"#
        );
        assert_eq!(
            source_statement(&job(Some(RowRange::IntKey {
                column: "id".into(),
                low: None,
                high: Some(-5)
            }))),
            r#"COPY (SELECT id, "Na me" FROM ONLY s."T""x" WHERE id < -5) TO STDOUT (FORMAT binary)"#
        );
        assert_eq!(
            target_statement(&job(None), true),
            r#"COPY s."T""x" (id, "Na me") FROM STDIN (FORMAT binary, FREEZE)"#
        );
    }
}
