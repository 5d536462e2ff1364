//! `pgferry bench`: how fast can data move between these two servers? Measured on a generated
//! table in a scratch schema `pgferry_bench` (created on both servers, dropped at the end):
//!
//! - **COPY TO**: the source's binary `COPY ... TO STDOUT`, bytes read and discarded;
//! - **COPY FROM**: the target's binary `COPY ... FROM STDIN` fed from memory (a sample of the
//!   source's stream, replayed until the table size is reached);
//! - **pipe**: the real copy path (the same code as `clone`) with 1..=N parallel jobs, the table
//!   split into N ctid ranges.
//!
//! The slowest of the first two bounds the third; comparing them tells whether the source, the
//! target or the network limits a migration.

use crate::conn::{connect, ConnConfig, Session};
use crate::copy::{copy_all, CopyFormat, ExportedSnapshot, NoProgress, RowRange, TableJob};
use bytes::Bytes;
use futures::{SinkExt, TryStreamExt};
use serde::Serialize;
use std::time::Instant;
use thiserror::Error;

const SCHEMA: &str = "pgferry_bench";
/// Bytes of the sample replayed into COPY FROM (kept in memory).
const SAMPLE_LIMIT: usize = 64 << 20;

#[derive(Debug, Error)]
pub enum BenchError {
    #[error("{server}: {what}: {message}")]
    Server {
        server: &'static str,
        what: String,
        message: String,
    },
    #[error("{0}")]
    Copy(#[from] crate::copy::CopyError),
}

fn fail<'a>(
    server: &'static str,
    what: &'a str,
) -> impl Fn(tokio_postgres::Error) -> BenchError + 'a {
    move |e| BenchError::Server {
        server,
        what: what.to_string(),
        message: crate::copy::server_message(&e),
    }
}

/// One measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Rate {
    pub what: String,
    pub bytes: u64,
    pub rows: u64,
    pub seconds: f64,
}

impl Rate {
    pub fn mb_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 / self.seconds / 1_048_576.0
        } else {
            0.0
        }
    }

    pub fn rows_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.rows as f64 / self.seconds
        } else {
            0.0
        }
    }
}

async fn open(server: &'static str, cfg: &ConnConfig) -> Result<Session, BenchError> {
    connect(cfg).await.map_err(|e| BenchError::Server {
        server,
        what: "connecting".into(),
        message: e.to_string(),
    })
}

const TABLE_DDL: &str = "CREATE TABLE pgferry_bench.t (id bigint NOT NULL, k integer NOT NULL, \
     v double precision NOT NULL, ts timestamptz NOT NULL, payload text NOT NULL)";

/// Runs the benchmark with a table of about `size` bytes and up to `max_jobs` parallel pipes.
pub async fn run(
    src: &ConnConfig,
    dst: &ConnConfig,
    size: u64,
    max_jobs: usize,
) -> Result<Vec<Rate>, BenchError> {
    let source = open("source", src).await?;
    let target = open("target", dst).await?;
    let result = measure(src, dst, &source, &target, size, max_jobs.max(1)).await;
    // Clean up whatever happened.
    let drop = format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE");
    let _ = source.client.batch_execute(&drop).await;
    let _ = target.client.batch_execute(&drop).await;
    result
}

async fn measure(
    src: &ConnConfig,
    dst: &ConnConfig,
    source: &Session,
    target: &Session,
    size: u64,
    max_jobs: usize,
) -> Result<Vec<Rate>, BenchError> {
    // About 150 bytes per row on disk.
    let rows = (size / 150).max(1000);
    for (server, s) in [("source", source), ("target", target)] {
        s.client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}; {TABLE_DDL}"
            ))
            .await
            .map_err(fail(server, "creating the scratch table"))?;
    }
    tracing::info!(rows, "generating the source table");
    source
        .client
        .batch_execute(&format!(
            "INSERT INTO {SCHEMA}.t SELECT i, (i % 1000)::int, i / 7.0, \
             timestamptz '2024-01-01' + i * interval '1 second', md5(i::text) || md5((i + 1)::text) \
             FROM generate_series(1, {rows}) i"
        ))
        .await
        .map_err(fail("source", "generating the table"))?;
    // Separate statement: VACUUM cannot run in the implicit transaction of a multi-statement
    // query. It sets relpages, which the ranges are cut from.
    source
        .client
        .batch_execute(&format!("VACUUM ANALYZE {SCHEMA}.t"))
        .await
        .map_err(fail("source", "vacuuming the table"))?;
    let columns = ["id", "k", "v", "ts", "payload"].map(String::from).to_vec();
    let mut rates = Vec::new();

    // COPY TO: read and discard, keeping a sample for COPY FROM.
    let started = Instant::now();
    let stream = source
        .client
        .copy_out(&format!("COPY {SCHEMA}.t TO STDOUT (FORMAT binary)"))
        .await
        .map_err(fail("source", "COPY TO"))?;
    futures::pin_mut!(stream);
    let mut bytes = 0u64;
    let mut sample: Vec<Bytes> = Vec::new();
    let mut sample_len = 0usize;
    while let Some(chunk) = stream.try_next().await.map_err(fail("source", "COPY TO"))? {
        bytes += chunk.len() as u64;
        if sample_len < SAMPLE_LIMIT {
            sample_len += chunk.len();
            sample.push(chunk);
        }
    }
    let source_bytes = bytes;
    rates.push(Rate {
        what: "COPY TO (source read)".into(),
        bytes,
        rows,
        seconds: started.elapsed().as_secs_f64(),
    });

    // COPY FROM: the sample's rows (without the binary header/trailer) replayed until the
    // target has received as many bytes as the source sent.
    let (header, body, trailer) = split_binary_sample(&sample);
    let sample_rows = count_rows(&body);
    let started = Instant::now();
    let sink = target
        .client
        .copy_in::<_, Bytes>(&format!("COPY {SCHEMA}.t FROM STDIN (FORMAT binary)"))
        .await
        .map_err(fail("target", "COPY FROM"))?;
    futures::pin_mut!(sink);
    sink.feed(header)
        .await
        .map_err(fail("target", "COPY FROM"))?;
    let mut sent = 0u64;
    let mut sent_rows = 0u64;
    while sent < source_bytes && !body.is_empty() {
        let mut batch =
            futures::stream::iter(body.iter().cloned().map(Ok::<_, tokio_postgres::Error>));
        sink.send_all(&mut batch)
            .await
            .map_err(fail("target", "COPY FROM"))?;
        sent += body.iter().map(|b| b.len() as u64).sum::<u64>();
        sent_rows += sample_rows;
    }
    sink.feed(trailer)
        .await
        .map_err(fail("target", "COPY FROM"))?;
    sink.as_mut()
        .finish()
        .await
        .map_err(fail("target", "COPY FROM"))?;
    rates.push(Rate {
        what: "COPY FROM (target write)".into(),
        bytes: sent,
        rows: sent_rows,
        seconds: started.elapsed().as_secs_f64(),
    });

    // The real pipe, 1..=max_jobs ranges.
    let pages: i64 = source
        .client
        .query_one(
            &format!("SELECT relpages::int8 FROM pg_class WHERE oid = '{SCHEMA}.t'::regclass"),
            &[],
        )
        .await
        .map_err(fail("source", "reading the table size"))?
        .get(0);
    let pages = pages.max(1) as u64;
    for jobs in 1..=max_jobs {
        target
            .client
            .batch_execute(&format!("TRUNCATE {SCHEMA}.t"))
            .await
            .map_err(fail("target", "emptying the scratch table"))?;
        let snapshot = ExportedSnapshot::export(src).await?;
        let per = pages.div_ceil(jobs as u64);
        let job_list: Vec<TableJob> = (0..jobs as u64)
            .map(|i| TableJob {
                schema: SCHEMA.into(),
                table: "t".into(),
                columns: columns.clone(),
                range: if jobs == 1 {
                    None
                } else {
                    Some(RowRange::Ctid {
                        start: i * per,
                        end: if i + 1 == jobs as u64 {
                            None
                        } else {
                            Some((i + 1) * per)
                        },
                    })
                },
                format: CopyFormat::Binary,
                truncate_first: false,
                estimated_bytes: source_bytes / jobs as u64,
                text_reason: None,
                row_filter: None,
            })
            .collect();
        let started = Instant::now();
        let stats = copy_all(src, dst, snapshot.name(), job_list, jobs, &NoProgress).await?;
        let seconds = started.elapsed().as_secs_f64();
        let _ = snapshot.close().await;
        rates.push(Rate {
            what: format!("pipe, {jobs} job{}", if jobs == 1 { "" } else { "s" }),
            bytes: stats.iter().map(|s| s.bytes).sum(),
            rows: stats.iter().map(|s| s.rows).sum(),
            seconds,
        });
    }
    Ok(rates)
}

/// Splits a captured binary COPY stream into its header (signature, flags, extension), the
/// tuple bytes (as received) and the trailer.
fn split_binary_sample(chunks: &[Bytes]) -> (Bytes, Vec<Bytes>, Bytes) {
    // The server sends the 19-byte header with the first row and the 2-byte trailer alone.
    const HEADER: usize = 19;
    let mut body: Vec<Bytes> = Vec::with_capacity(chunks.len());
    let mut header = Bytes::new();
    for (i, c) in chunks.iter().enumerate() {
        if i == 0 && c.len() >= HEADER {
            header = c.slice(..HEADER);
            body.push(c.slice(HEADER..));
        } else if c.as_ref() == [0xff, 0xff] {
            continue;
        } else {
            body.push(c.clone());
        }
    }
    // Keep whole tuples only: a trailing partial message cannot happen (one CopyData per row),
    // so nothing to trim.
    (header, body, Bytes::from_static(&[0xff, 0xff]))
}

/// Rows in the sample: one CopyData per row, as the server sends them.
fn count_rows(body: &[Bytes]) -> u64 {
    body.iter().filter(|b| b.len() >= 2).count() as u64
}

/// A readable table of the rates.
pub fn render(rates: &[Rate]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<28} {:>10} {:>12} {:>9} {:>12}",
        "MEASURE", "MB", "ROWS", "MB/S", "ROWS/S"
    );
    for r in rates {
        let _ = writeln!(
            out,
            "{:<28} {:>10.1} {:>12} {:>9.1} {:>12.0}",
            r.what,
            r.bytes as f64 / 1_048_576.0,
            r.rows,
            r.mb_per_s(),
            r.rows_per_s()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_split_keeps_rows_and_drops_the_trailer() {
        let mut first = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
        first.extend_from_slice(&[0, 1, 0, 0, 0, 1, 7]);
        let chunks = vec![
            Bytes::from(first),
            Bytes::from_static(&[0, 1, 0, 0, 0, 1, 8]),
            Bytes::from_static(&[0xff, 0xff]),
        ];
        let (header, body, trailer) = split_binary_sample(&chunks);
        assert_eq!(header.len(), 19);
        assert_eq!(body.len(), 2);
        assert_eq!(count_rows(&body), 2);
        assert_eq!(trailer.as_ref(), &[0xff, 0xff]);
    }
}
