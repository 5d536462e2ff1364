//! `pgferry bench`: how fast can data move between these two servers, and where is the limit?
//!
//! **Measures** (on a generated table of the chosen [`Shape`] in a scratch schema
//! `pgferry_bench`, created on both servers and dropped at the end, also when interrupted):
//!
//! - `COPY TO` (binary and text): the source's `COPY ... TO STDOUT`, written to a local spool
//!   file; the source's side alone;
//! - `COPY FROM` (binary and text): the target's `COPY ... FROM STDIN` fed from that spool; the
//!   target's side alone;
//! - `pipe` (binary and text, 1..=N jobs): the real copy path (the same code as `clone`), the
//!   table split into N ctid ranges.
//!
//! **Invariant: every line moves the same rows and the same bytes** (the spool holds exactly
//! what the source sent, and the pipe copies the whole table); `--size` is the size of the
//! binary COPY stream, which is what moves (the rows are counted from a probe to reach it).
//! Each line also carries pgferry's own CPU time, so the servers' cost (the rest of the wall
//! time) is separated from ours.
//!
//! `--plan` ([`plan`]) projects the time of a real migration of the source's database from
//! samples of its own tables.

pub mod chart;
pub mod plan;
pub mod shape;

use crate::conn::{connect, ConnConfig, Session};
use crate::copy::{
    copy_all, CopyFormat, ExportedSnapshot, NoProgress, RowCounter, RowRange, TableJob,
};
use bytes::Bytes;
use futures::{SinkExt, TryStreamExt};
use serde::Serialize;
pub use shape::Shape;
use std::io::{BufWriter, Read, Write};
use std::time::Instant;
use thiserror::Error;

/// The scratch schema on both servers.
pub const SCHEMA: &str = "pgferry_bench";

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
    #[error("the local spool file {path}: {source}")]
    Spool {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Plan(String),
}

pub(crate) fn fail<'a>(
    server: &'static str,
    what: &'a str,
) -> impl Fn(tokio_postgres::Error) -> BenchError + 'a {
    move |e| BenchError::Server {
        server,
        what: what.to_string(),
        message: crate::pgerror::server_message(&e),
    }
}

/// One measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Rate {
    /// `copy_to`, `copy_from` or `pipe`.
    pub measure: String,
    pub format: &'static str,
    pub jobs: usize,
    pub bytes: u64,
    pub rows: u64,
    pub seconds: f64,
    /// pgferry's own CPU time (user + system) during the measure.
    pub cpu_seconds: f64,
}

impl Rate {
    pub fn label(&self) -> String {
        match self.measure.as_str() {
            "copy_to" => format!("COPY TO, {} (source)", self.format),
            "copy_from" => format!("COPY FROM, {} (target)", self.format),
            _ => format!(
                "pipe, {}, {} job{}",
                self.format,
                self.jobs,
                if self.jobs == 1 { "" } else { "s" }
            ),
        }
    }

    pub fn mb_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 / self.seconds / 1e6
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

    /// pgferry's CPU seconds per GB moved.
    pub fn cpu_per_gb(&self) -> f64 {
        if self.bytes > 0 {
            self.cpu_seconds / (self.bytes as f64 / 1e9)
        } else {
            0.0
        }
    }
}

/// What `bench` measured, and what it concludes.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub shape: Shape,
    pub requested_bytes: u64,
    pub rates: Vec<Rate>,
    /// Which resource limits the copy, in a sentence.
    pub limit: String,
    /// The `-j` to use: the fewest jobs within 5% of the best pipe rate.
    pub recommended_jobs: usize,
}

/// Options of a measuring run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub size: u64,
    pub max_jobs: usize,
    pub shape: Shape,
}

/// pgferry's CPU time so far (user + system, all threads).
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass; RUSAGE_SELF is always valid.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return 0.0;
        }
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

pub(crate) async fn open(server: &'static str, cfg: &ConnConfig) -> Result<Session, BenchError> {
    connect(cfg).await.map_err(|e| BenchError::Server {
        server,
        what: "connecting".into(),
        message: e.to_string(),
    })
}

/// Drops the scratch schema on both servers (best effort). After an interruption
/// (`interrupted`), statements of ours still running on it (a server does not notice a gone
/// client while it executes) are cancelled first, or the DROP would wait for them.
pub async fn clean_up(src: &ConnConfig, dst: &ConnConfig, interrupted: bool) -> Vec<String> {
    let mut left = drop_scratch("source", src, interrupted).await;
    left.extend(drop_scratch("target", dst, interrupted).await);
    left
}

/// [`clean_up`] on one server.
pub async fn drop_scratch(
    server: &'static str,
    cfg: &ConnConfig,
    interrupted: bool,
) -> Vec<String> {
    let mut left = Vec::new();
    {
        let dropped = match connect(cfg).await {
            Ok(s) => {
                if interrupted {
                    let _ = s
                        .client
                        .batch_execute(&format!(
                            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity \
                             WHERE pid <> pg_backend_pid() AND datname = current_database() \
                               AND usename = current_user AND query LIKE '%{SCHEMA}%' \
                               AND application_name = current_setting('application_name')"
                        ))
                        .await;
                }
                let mut result = Ok(());
                for _ in 0..50 {
                    result = s
                        .client
                        .batch_execute(&format!(
                            "SET lock_timeout = '2s'; DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"
                        ))
                        .await
                        .map_err(|e| crate::pgerror::server_message(&e));
                    if result.is_ok() {
                        break;
                    }
                }
                result
            }
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = dropped {
            left.push(format!(
                "{server}: could not drop schema {SCHEMA}: {e}; drop it by hand"
            ));
        }
    }
    left
}

/// Runs the measures, then drops the scratch schema whatever happened.
pub async fn run(
    src: &ConnConfig,
    dst: &ConnConfig,
    opts: &BenchOptions,
) -> Result<Report, BenchError> {
    let result = async {
        let source = open("source", src).await?;
        let target = open("target", dst).await?;
        measure(src, dst, &source, &target, opts).await
    }
    .await;
    let left = clean_up(src, dst, false).await;
    for l in &left {
        tracing::warn!("{l}");
    }
    let rates = result?;
    let (limit, recommended_jobs) = conclude(&rates);
    Ok(Report {
        shape: opts.shape,
        requested_bytes: opts.size,
        rates,
        limit,
        recommended_jobs,
    })
}

/// Bytes of the binary COPY stream per row of `shape`, from a probe of 2000 rows.
async fn stream_bytes_per_row(source: &Session, shape: Shape) -> Result<f64, BenchError> {
    let probe = 2000u64;
    let stream = source
        .client
        .copy_out(&format!(
            "COPY (SELECT {} FROM generate_series(1::int8, {probe}) i) TO STDOUT (FORMAT binary)",
            shape.select()
        ))
        .await
        .map_err(fail("source", "probing the row size"))?;
    futures::pin_mut!(stream);
    let mut bytes = 0u64;
    while let Some(chunk) = stream
        .try_next()
        .await
        .map_err(fail("source", "probing the row size"))?
    {
        bytes += chunk.len() as u64;
    }
    // Without the 19-byte header and the 2-byte trailer.
    Ok((bytes.saturating_sub(21)) as f64 / probe as f64)
}

async fn measure(
    src: &ConnConfig,
    dst: &ConnConfig,
    source: &Session,
    target: &Session,
    opts: &BenchOptions,
) -> Result<Vec<Rate>, BenchError> {
    let per_row = stream_bytes_per_row(source, opts.shape).await?;
    let rows = ((opts.size as f64 / per_row.max(1.0)).round() as u64).max(1000);
    let columns = opts.shape.columns();
    for (server, s) in [("source", source), ("target", target)] {
        s.client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}; \
                 CREATE TABLE {SCHEMA}.t ({columns})"
            ))
            .await
            .map_err(fail(server, "creating the scratch table"))?;
    }
    tracing::info!(rows, "generating the source table");
    source
        .client
        .batch_execute(&format!(
            "INSERT INTO {SCHEMA}.t SELECT {} FROM generate_series(1::int8, {rows}) i",
            opts.shape.select()
        ))
        .await
        .map_err(fail("source", "generating the table"))?;
    // Separate statement: VACUUM cannot run in a multi-statement query. It sets relpages,
    // which the ranges are cut from.
    source
        .client
        .batch_execute(&format!("VACUUM ANALYZE {SCHEMA}.t"))
        .await
        .map_err(fail("source", "vacuuming the table"))?;
    let column_names: Vec<String> = source
        .client
        .query(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = $1::text::regclass \
             AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&format!("{SCHEMA}.t")],
        )
        .await
        .map_err(fail("source", "reading the columns"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
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

    let spool_dir = tempfile_dir()?;
    let mut rates = Vec::new();
    for format in [CopyFormat::Binary, CopyFormat::Text] {
        let path = spool_dir.join(format!("t.{}", format.as_sql()));
        rates.push(copy_to_spool(source, format, &path).await?);
        target
            .client
            .batch_execute(&format!("TRUNCATE {SCHEMA}.t"))
            .await
            .map_err(fail("target", "emptying the scratch table"))?;
        rates.push(copy_from_spool(target, format, &path).await?);
        let _ = std::fs::remove_file(&path);
    }
    let _ = std::fs::remove_dir(&spool_dir);
    let stream_bytes = rates.first().map(|r| r.bytes).unwrap_or(0);

    for format in [CopyFormat::Binary, CopyFormat::Text] {
        for jobs in 1..=opts.max_jobs {
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
                    columns: column_names.clone(),
                    range: (jobs > 1).then(|| RowRange::Ctid {
                        start: i * per,
                        end: (i + 1 < jobs as u64).then_some((i + 1) * per),
                    }),
                    format,
                    truncate_first: false,
                    estimated_bytes: stream_bytes / jobs as u64,
                    text_reason: None,
                    row_filter: None,
                })
                .collect();
            let cpu = cpu_seconds();
            let started = Instant::now();
            let stats = copy_all(src, dst, snapshot.name(), job_list, jobs, &NoProgress).await?;
            let seconds = started.elapsed().as_secs_f64();
            let cpu_seconds = cpu_seconds() - cpu;
            let _ = snapshot.close().await;
            rates.push(Rate {
                measure: "pipe".into(),
                format: format.as_sql(),
                jobs,
                bytes: stats.iter().map(|s| s.bytes).sum(),
                rows: stats.iter().map(|s| s.rows).sum(),
                seconds,
                cpu_seconds,
            });
        }
    }
    Ok(rates)
}

fn tempfile_dir() -> Result<std::path::PathBuf, BenchError> {
    let dir = std::env::temp_dir().join(format!("pgferry-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| BenchError::Spool {
        path: dir.display().to_string(),
        source,
    })?;
    Ok(dir)
}

/// The source's COPY TO alone: every byte written to the spool file (so that COPY FROM
/// replays exactly the same rows).
async fn copy_to_spool(
    source: &Session,
    format: CopyFormat,
    path: &std::path::Path,
) -> Result<Rate, BenchError> {
    let spool = |source| BenchError::Spool {
        path: path.display().to_string(),
        source,
    };
    let mut file = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).map_err(spool)?);
    let cpu = cpu_seconds();
    let started = Instant::now();
    let stream = source
        .client
        .copy_out(&format!(
            "COPY {SCHEMA}.t TO STDOUT (FORMAT {})",
            format.as_sql()
        ))
        .await
        .map_err(fail("source", "COPY TO"))?;
    futures::pin_mut!(stream);
    let mut counter = RowCounter::for_format(format);
    let mut bytes = 0u64;
    while let Some(chunk) = stream.try_next().await.map_err(fail("source", "COPY TO"))? {
        bytes += chunk.len() as u64;
        counter
            .feed(&chunk)
            .map_err(|e| BenchError::Plan(format!("the source's COPY stream: {e}")))?;
        file.write_all(&chunk).map_err(spool)?;
    }
    file.flush().map_err(spool)?;
    Ok(Rate {
        measure: "copy_to".into(),
        format: format.as_sql(),
        jobs: 1,
        bytes,
        rows: counter.rows(),
        seconds: started.elapsed().as_secs_f64(),
        cpu_seconds: cpu_seconds() - cpu,
    })
}

/// The target's COPY FROM alone, fed from the spool file in 1 MiB buffers.
async fn copy_from_spool(
    target: &Session,
    format: CopyFormat,
    path: &std::path::Path,
) -> Result<Rate, BenchError> {
    let spool = |source| BenchError::Spool {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(spool)?;
    let cpu = cpu_seconds();
    let started = Instant::now();
    let sink = target
        .client
        .copy_in::<_, Bytes>(&format!(
            "COPY {SCHEMA}.t FROM STDIN (FORMAT {})",
            format.as_sql()
        ))
        .await
        .map_err(fail("target", "COPY FROM"))?;
    futures::pin_mut!(sink);
    let mut bytes = 0u64;
    loop {
        let mut buf = vec![0u8; 1 << 20];
        let n = file.read(&mut buf).map_err(spool)?;
        if n == 0 {
            break;
        }
        buf.truncate(n);
        bytes += n as u64;
        sink.feed(Bytes::from(buf))
            .await
            .map_err(fail("target", "COPY FROM"))?;
    }
    let rows = sink
        .as_mut()
        .finish()
        .await
        .map_err(fail("target", "COPY FROM"))?;
    Ok(Rate {
        measure: "copy_from".into(),
        format: format.as_sql(),
        jobs: 1,
        bytes,
        rows,
        seconds: started.elapsed().as_secs_f64(),
        cpu_seconds: cpu_seconds() - cpu,
    })
}

/// The limit and the recommended `-j`, from the rates.
fn conclude(rates: &[Rate]) -> (String, usize) {
    let get = |m: &str| {
        rates
            .iter()
            .find(|r| r.measure == m && r.format == "binary")
            .map(Rate::mb_per_s)
            .unwrap_or(0.0)
    };
    let (read, write) = (get("copy_to"), get("copy_from"));
    let pipes: Vec<&Rate> = rates
        .iter()
        .filter(|r| r.measure == "pipe" && r.format == "binary")
        .collect();
    let best = pipes.iter().map(|r| r.mb_per_s()).fold(0.0f64, f64::max);
    let recommended = pipes
        .iter()
        .find(|r| r.mb_per_s() >= 0.95 * best)
        .map(|r| r.jobs)
        .unwrap_or(1);
    let slower = if read <= write {
        format!("the source's read ({read:.0} MB/s)")
    } else {
        format!("the target's write ({write:.0} MB/s)")
    };
    let cpu_share = pipes
        .iter()
        .find(|r| r.jobs == recommended)
        .map(|r| r.cpu_seconds / r.seconds.max(1e-9))
        .unwrap_or(0.0);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get() as f64)
        .unwrap_or(1.0);
    let limit = if best >= 0.8 * read.min(write) {
        format!(
            "the pipe runs at {best:.0} MB/s, near the slower side alone: {slower} is the limit"
        )
    } else if cpu_share >= 0.8 * cores {
        format!(
            "the pipe runs at {best:.0} MB/s; pgferry uses {cpu_share:.1} of {cores:.0} cores: \
             pgferry's CPU on this host is the limit"
        )
    } else {
        format!(
            "the pipe runs at {best:.0} MB/s, below either side alone (read {read:.0}, write \
             {write:.0} MB/s): both servers working at once (shared cores or disks, or the \
             network between them) are the limit"
        )
    };
    (limit, recommended)
}

/// A readable table of the rates and the conclusion.
pub fn render(report: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<32} {:>9} {:>11} {:>8} {:>11} {:>12}",
        "MEASURE", "MB", "ROWS", "MB/S", "ROWS/S", "PGFERRY CPU"
    );
    for r in &report.rates {
        let _ = writeln!(
            out,
            "{:<32} {:>9.1} {:>11} {:>8.1} {:>11.0} {:>9.1} s/GB",
            r.label(),
            r.bytes as f64 / 1e6,
            r.rows,
            r.mb_per_s(),
            r.rows_per_s(),
            r.cpu_per_gb()
        );
    }
    let _ = writeln!(
        out,
        "\nEvery line moved the same rows and bytes ({:?} rows, the binary COPY stream being the \
         --size); MB = 10^6 bytes.\nlimit: {}\nrecommended: -j {}",
        report.rates.first().map(|r| r.rows).unwrap_or(0),
        report.limit,
        report.recommended_jobs
    );
    out
}

/// The chart's series: one per (measure, format); COPY TO/FROM drawn flat across the jobs.
pub fn chart_series(report: &Report) -> Vec<chart::Series> {
    let max_jobs = report.rates.iter().map(|r| r.jobs).max().unwrap_or(1);
    let mut series: Vec<chart::Series> = Vec::new();
    for r in &report.rates {
        let name = match r.measure.as_str() {
            "pipe" => format!("pipe, {}", r.format),
            _ => r.label(),
        };
        let points: Vec<(usize, f64)> = if r.measure == "pipe" {
            vec![(r.jobs, r.mb_per_s())]
        } else {
            (1..=max_jobs).map(|j| (j, r.mb_per_s())).collect()
        };
        match series.iter_mut().find(|s| s.name == name) {
            Some(s) => s.points.extend(points),
            None => series.push(chart::Series { name, points }),
        }
    }
    series
}
