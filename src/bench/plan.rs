//! `pgferry bench --plan`: how long will `pgferry clone -j N` of this database take, and what
//! limits it? Read-only on the source.
//!
//! 1. The source's tables and indexes from its catalogs (sizes on disk).
//! 2. The largest tables sampled (`TABLESAMPLE SYSTEM`, a bounded share of each) through the
//!    real pipe (`copy::forward`, binary when both majors are equal, as `clone` does) into a
//!    scratch table in schema `pgferry_bench` on the target, dropped at the end. A sample gives
//!    the table's COPY-stream bytes per disk byte and its pipe rate; the largest table's
//!    sample is also copied by N pipes at once (the speed-up of `-j N`) and only read (the
//!    source's side alone). Its indexes are built on the sample and timed.
//! 3. The projection, with `clone`'s own schedule in mind: the copy of all tables at the
//!    measured rates divided by the speed-up; index builds overlap the copy except for the
//!    last (largest) table's; plus the schema: the source's catalog read (timed: the same read
//!    clone does), connections, the database's creation and a statement per object (timed on
//!    the scratch tables).
//!
//! Build times grow as n·log n: a build timed on `r` sampled rows is scaled by
//! `(R/r)·ln R/ln r` for `R` rows.

use super::{cpu_seconds, fail, open, BenchError, SCHEMA};
use crate::conn::ConnConfig;
use crate::copy::{forward, CopyFormat, ForwardOptions, RowCounter};
use crate::quote::{qualified, quote_ident};
use bytes::Bytes;
use futures::TryStreamExt;
use serde::Serialize;
use std::time::Instant;
use tokio_postgres::Client;

#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// The `-j` of the clone to project.
    pub jobs: usize,
    /// Bytes sampled from each sampled table at most.
    pub sample_bytes: u64,
    /// How many of the largest tables are sampled.
    pub sampled_tables: usize,
    /// WAL the application writes per second on the source, for the catch-up estimate.
    pub change_rate: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TablePlan {
    pub table: String,
    pub disk_bytes: u64,
    /// Estimated rows and COPY-stream bytes of the whole table.
    pub rows: u64,
    pub stream_bytes: u64,
    /// Share of the table's pages sampled (0 when not sampled: the averages of the sampled
    /// tables are used).
    pub sampled_share: f64,
    /// Pipe rate, one job, MB/s.
    pub rate_mb_s: f64,
    pub copy_seconds: f64,
    pub indexes: usize,
    pub index_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub database: String,
    pub jobs: usize,
    pub format: &'static str,
    pub tables: Vec<TablePlan>,
    /// Aggregate pipe rate of `jobs` pipes over one, measured on the largest table's sample.
    pub speedup: f64,
    /// (phase, seconds), in order.
    pub phases: Vec<(String, f64)>,
    pub total_seconds: f64,
    pub limit: String,
    pub catch_up: Option<String>,
}

struct TableRow {
    schema: String,
    name: String,
    disk_bytes: u64,
    columns: Vec<(String, String)>,
    indexes: Vec<String>,
}

/// What the schema phase of a clone costs, measured here rather than assumed: the source's
/// catalog read (the same read clone does), a connection to the target, the target database's
/// creation (template1's size at the measured pipe rate: CREATE DATABASE copies it) and one
/// DDL statement per object (the scratch tables' CREATE TABLE, timed).
#[derive(Debug, Default)]
struct SchemaCost {
    catalog_read: f64,
    connect: f64,
    template_bytes: f64,
    ddl: Vec<f64>,
}

impl SchemaCost {
    fn seconds(&self, objects: usize, write_rate: f64) -> f64 {
        let per_object = if self.ddl.is_empty() {
            0.0
        } else {
            self.ddl.iter().sum::<f64>() / self.ddl.len() as f64
        };
        // Clone connects to the source and to the target (twice: server, then the database).
        self.catalog_read
            + 3.0 * self.connect
            + self.template_bytes / write_rate.max(1.0)
            + per_object * objects as f64
    }
}

pub async fn run(
    src: &ConnConfig,
    dst: &ConnConfig,
    opts: &PlanOptions,
) -> Result<Plan, BenchError> {
    let result = plan(src, dst, opts).await;
    // Only the target has something of ours: the source is only read.
    for l in super::drop_scratch("target", dst, false).await {
        tracing::warn!("{l}");
    }
    result
}

async fn plan(src: &ConnConfig, dst: &ConnConfig, opts: &PlanOptions) -> Result<Plan, BenchError> {
    let source = open("source", src).await?;
    let connecting = Instant::now();
    let target = open("target", dst).await?;
    let mut cost = SchemaCost {
        connect: connecting.elapsed().as_secs_f64(),
        ..SchemaCost::default()
    };
    let reading = Instant::now();
    crate::catalog::read_catalog(&source.client, &crate::catalog::ReadOptions::default())
        .await
        .map_err(|e| BenchError::Plan(format!("source: reading the catalogs: {e}")))?;
    cost.catalog_read = reading.elapsed().as_secs_f64();
    // A user without CONNECT on template1 cannot size it: its creation is then left out.
    cost.template_bytes = match target
        .client
        .query_one(
            "SELECT pg_catalog.pg_database_size('template1')::float8",
            &[],
        )
        .await
    {
        Ok(row) => row.get(0),
        Err(_) => 0.0,
    };
    let same_major =
        major(&source.client, "source").await? == major(&target.client, "target").await?;
    let format = if same_major {
        CopyFormat::Binary
    } else {
        CopyFormat::Text
    };
    let tables = read_tables(&source.client).await?;
    if tables.is_empty() {
        return Err(BenchError::Plan(format!(
            "source database \"{}\" has no tables to plan a copy for",
            src.dbname
        )));
    }
    target
        .client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}"
        ))
        .await
        .map_err(fail("target", "creating the scratch schema"))?;

    let sampler = Sampler {
        src,
        dst,
        source: &source.client,
        target: &target.client,
        opts,
        format,
        jobs: opts.jobs.max(1),
    };
    let (plans, measured) = sampler.sample_tables(&tables, &mut cost).await?;
    let tables = estimate_unsampled(&tables, plans, &measured.sampled_ratio);
    Ok(sum_up(src, opts, format, tables, &cost, &measured))
}

/// What the samples measured, beyond each sampled table's own plan.
#[derive(Default)]
struct Measured {
    /// Rate of `jobs` pipes over the rate of one (at least 0.5).
    speedup: f64,
    /// Reading the largest table alone, bytes/s.
    read_rate: f64,
    /// One pipe on the largest table, bytes/s.
    pipe_rate: f64,
    /// pgferry's CPU time per second of that pipe.
    cpu_share: f64,
    /// Per sampled table: (stream bytes per disk byte, rate bytes/s).
    sampled_ratio: Vec<(f64, f64)>,
}

/// The sessions and settings the samples run with.
struct Sampler<'a> {
    src: &'a ConnConfig,
    dst: &'a ConnConfig,
    source: &'a Client,
    target: &'a Client,
    opts: &'a PlanOptions,
    format: CopyFormat,
    jobs: usize,
}

impl Sampler<'_> {
    /// Copies a sample of each of the first `sampled_tables` tables into a scratch table and
    /// builds its indexes; on the largest, also measures reading alone and `jobs` pipes.
    /// `None` for a table not sampled.
    async fn sample_tables(
        &self,
        tables: &[TableRow],
        cost: &mut SchemaCost,
    ) -> Result<(Vec<Option<TablePlan>>, Measured), BenchError> {
        let mut plans = Vec::new();
        let mut measured = Measured {
            speedup: 1.0,
            ..Measured::default()
        };
        for (i, t) in tables.iter().enumerate() {
            if i >= self.opts.sampled_tables || t.disk_bytes == 0 {
                plans.push(None);
                continue;
            }
            let share = (self.opts.sample_bytes as f64 / t.disk_bytes as f64).min(1.0);
            let scratch = format!("{SCHEMA}.s{i}");
            let creating = Instant::now();
            let fmt = create_scratch(self.target, &scratch, &t.columns, self.format).await?;
            cost.ddl.push(creating.elapsed().as_secs_f64());
            let sample = Sample {
                table: t,
                share,
                scratch: &scratch,
                format: fmt,
            };
            let one = sample.pipe(self.source, self.target, 1, 0).await?;
            if i == 0 {
                // The largest table: the speed-up of `jobs` pipes, and the source's side alone.
                measured.read_rate = sample.read_only(self.source).await?;
                measured.pipe_rate = one.bytes as f64 / one.seconds.max(1e-9);
                measured.cpu_share = one.cpu / one.seconds.max(1e-9);
                if self.jobs > 1 {
                    truncate(self.target, &scratch).await?;
                    measured.speedup = self.speedup(&sample, measured.pipe_rate).await?;
                }
            }
            let index_seconds = sample
                .build_indexes(self.target, one.rows, &t.indexes)
                .await?;
            let stream_bytes = (one.bytes as f64 / share) as u64;
            let rows = (one.rows as f64 / share) as u64;
            let rate = one.bytes as f64 / one.seconds.max(1e-9);
            measured
                .sampled_ratio
                .push((one.bytes as f64 / (t.disk_bytes as f64 * share), rate));
            plans.push(Some(TablePlan {
                table: qualified(&t.schema, &t.name),
                disk_bytes: t.disk_bytes,
                rows,
                stream_bytes,
                sampled_share: share,
                rate_mb_s: rate / 1e6,
                copy_seconds: stream_bytes as f64 / rate,
                indexes: t.indexes.len(),
                index_seconds: scale_build(index_seconds, one.rows, rows),
            }));
        }
        Ok((plans, measured))
    }

    /// `jobs` pipes on their own sessions, each a part of the sample: their rate over
    /// `pipe_rate` (one pipe's), at least 0.5.
    async fn speedup(&self, sample: &Sample<'_>, pipe_rate: f64) -> Result<f64, BenchError> {
        let jobs = self.jobs;
        let (src, dst) = (self.src, self.dst);
        let sessions = futures::future::try_join_all((0..jobs).map(|_| async {
            Ok::<_, BenchError>((open("source", src).await?, open("target", dst).await?))
        }))
        .await?;
        let started = Instant::now();
        let runs = futures::future::try_join_all(
            sessions
                .iter()
                .enumerate()
                // Part 0 is the whole sample's seed: each pipe takes a sample of its own.
                .map(|(k, (s, d))| sample.pipe(&s.client, &d.client, jobs, k + 1)),
        )
        .await?;
        let bytes: u64 = runs.iter().map(|r| r.bytes).sum();
        let rate_j = bytes as f64 / started.elapsed().as_secs_f64().max(1e-9);
        Ok((rate_j / pipe_rate.max(1.0)).max(0.5))
    }
}

/// Tables not sampled: the sampled tables' averages (weighted by what was sampled).
fn estimate_unsampled(
    tables: &[TableRow],
    plans: Vec<Option<TablePlan>>,
    sampled_ratio: &[(f64, f64)],
) -> Vec<TablePlan> {
    let n = sampled_ratio.len().max(1) as f64;
    let avg_ratio = sampled_ratio.iter().map(|r| r.0).sum::<f64>() / n;
    let avg_rate = sampled_ratio.iter().map(|r| r.1).sum::<f64>() / n;
    tables
        .iter()
        .zip(plans)
        .map(|(t, p)| {
            p.unwrap_or_else(|| {
                let stream_bytes = (t.disk_bytes as f64 * avg_ratio) as u64;
                TablePlan {
                    table: qualified(&t.schema, &t.name),
                    disk_bytes: t.disk_bytes,
                    rows: 0,
                    stream_bytes,
                    sampled_share: 0.0,
                    rate_mb_s: avg_rate / 1e6,
                    copy_seconds: stream_bytes as f64 / avg_rate.max(1.0),
                    indexes: t.indexes.len(),
                    // Small tables: their builds hide in the copy of the large ones.
                    index_seconds: 0.0,
                }
            })
        })
        .collect()
}

/// The plan from the tables' estimates: the phases' times, what limits the copy, and the
/// backlog streaming will find.
fn sum_up(
    src: &ConnConfig,
    opts: &PlanOptions,
    format: CopyFormat,
    tables: Vec<TablePlan>,
    cost: &SchemaCost,
    measured: &Measured,
) -> Plan {
    let jobs = opts.jobs.max(1);
    let Measured {
        speedup,
        read_rate,
        pipe_rate,
        cpu_share,
        ..
    } = *measured;
    let objects: usize = tables.iter().map(|t| 1 + t.indexes).sum();
    let schema_seconds = cost.seconds(objects, pipe_rate);
    let copy_seconds = tables.iter().map(|t| t.copy_seconds).sum::<f64>() / speedup;
    // Builds start per table when its data is committed; the largest table is copied first
    // but, split in ranges, finishes with the copy: its builds come after.
    let index_total: f64 = tables.iter().map(|t| t.index_seconds).sum();
    let largest = tables.first().map(|t| t.index_seconds).unwrap_or(0.0);
    let index_seconds = largest.max(index_total / jobs as f64);
    let phases = vec![
        ("schema".to_owned(), schema_seconds),
        (format!("copy, -j {jobs}"), copy_seconds),
        ("index builds after the copy".to_owned(), index_seconds),
    ];
    let total_seconds: f64 = phases.iter().map(|p| p.1).sum();
    let limit = if pipe_rate >= 0.8 * read_rate {
        format!(
            "the source's read: the pipe ({:.0} MB/s) runs at the speed of reading alone ({:.0} MB/s)",
            pipe_rate / 1e6,
            read_rate / 1e6
        )
    } else if cpu_share >= 0.8 {
        format!(
            "pgferry's CPU: one pipe keeps {:.0}% of a core busy; more jobs help up to the cores",
            cpu_share * 100.0
        )
    } else {
        format!(
            "the target's write (or the network): reading alone runs at {:.0} MB/s, the pipe at {:.0} MB/s",
            read_rate / 1e6,
            pipe_rate / 1e6
        )
    };
    let catch_up = opts.change_rate.map(|rate| {
        let backlog = rate as f64 * total_seconds;
        format!(
            "at {}/s of WAL, the source accumulates about {} of changes during the copy; \
             streaming applies them after it (measure the drain rate with \
             benches/replication_drain.sh: several times the write rate of a pgbench workload)",
            crate::units::format_size(rate),
            crate::units::format_size(backlog as u64)
        )
    });
    Plan {
        database: src.dbname.clone(),
        jobs,
        format: format.as_sql(),
        tables,
        speedup,
        phases,
        total_seconds,
        limit,
        catch_up,
    }
}

/// The server's major version (`server_version_num` / 10000).
async fn major(client: &Client, server: &'static str) -> Result<i32, BenchError> {
    crate::compat::server_version_num(client)
        .await
        .map(|num| num / 10000)
        .map_err(fail(server, "reading the server version"))
}

/// Build seconds measured on `sampled` rows, scaled to `rows` as n·log n.
fn scale_build(seconds: f64, sampled: u64, rows: u64) -> f64 {
    if sampled < 2 || rows <= sampled {
        return seconds;
    }
    let (r, n) = (sampled as f64, rows as f64);
    seconds * (n / r) * (n.ln() / r.ln()).max(1.0)
}

async fn read_tables(client: &Client) -> Result<Vec<TableRow>, BenchError> {
    let rows = client
        .query(
            "SELECT c.oid, n.nspname::text, c.relname::text, pg_table_size(c.oid)::int8 \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'm') AND c.relpersistence <> 't' \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgferry', 'pgferry_bench') \
               AND n.nspname NOT LIKE 'pg\\_toast%' \
             ORDER BY 4 DESC, 2, 3",
            &[],
        )
        .await
        .map_err(fail("source", "listing the tables"))?;
    let mut out = Vec::new();
    for r in rows {
        let oid: u32 = r.get(0);
        let columns = client
            .query(
                "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
                 WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                &[&oid],
            )
            .await
            .map_err(fail("source", "reading the columns"))?
            .iter()
            .map(|c| (c.get(0), c.get(1)))
            .collect();
        let indexes = client
            .query(
                "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = $1",
                &[&oid],
            )
            .await
            .map_err(fail("source", "reading the indexes"))?
            .iter()
            .map(|c| c.get(0))
            .collect();
        out.push(TableRow {
            schema: r.get(1),
            name: r.get(2),
            disk_bytes: r.get::<_, i64>(3).max(0) as u64,
            columns,
            indexes,
        });
    }
    Ok(out)
}

/// The scratch table with the source's column types; all `text` (and the text format) when
/// a type does not exist on the target.
async fn create_scratch(
    target: &Client,
    scratch: &str,
    columns: &[(String, String)],
    format: CopyFormat,
) -> Result<CopyFormat, BenchError> {
    let typed: Vec<String> = columns
        .iter()
        .map(|(n, t)| format!("{} {t}", quote_ident(n)))
        .collect();
    if target
        .batch_execute(&format!("CREATE TABLE {scratch} ({})", typed.join(", ")))
        .await
        .is_ok()
    {
        return Ok(format);
    }
    let text: Vec<String> = columns
        .iter()
        .map(|(n, _)| format!("{} text", quote_ident(n)))
        .collect();
    target
        .batch_execute(&format!("CREATE TABLE {scratch} ({})", text.join(", ")))
        .await
        .map_err(fail("target", "creating a scratch table"))?;
    Ok(CopyFormat::Text)
}

async fn truncate(target: &Client, scratch: &str) -> Result<(), BenchError> {
    target
        .batch_execute(&format!("TRUNCATE {scratch}"))
        .await
        .map_err(fail("target", "emptying a scratch table"))
}

struct Sample<'a> {
    table: &'a TableRow,
    share: f64,
    scratch: &'a str,
    format: CopyFormat,
}

struct Moved {
    rows: u64,
    bytes: u64,
    seconds: f64,
    cpu: f64,
}

impl Sample<'_> {
    fn select(&self, share: f64, seed: usize) -> String {
        let cols: Vec<String> = self
            .table
            .columns
            .iter()
            .map(|(n, _)| quote_ident(n))
            .collect();
        let from = qualified(&self.table.schema, &self.table.name);
        let sample = if share >= 1.0 {
            String::new()
        } else {
            format!(
                " TABLESAMPLE SYSTEM ({:.6}) REPEATABLE ({seed})",
                share * 100.0
            )
        };
        format!("SELECT {} FROM ONLY {from}{sample}", cols.join(", "))
    }

    /// The sample through one pipe: the whole of it (`parts` 1), or, as one of `parts` pipes
    /// running at once, a sample of its own of `share / parts` (`part` ≥ 1 picks the seed).
    async fn pipe(
        &self,
        src: &Client,
        dst: &Client,
        parts: usize,
        part: usize,
    ) -> Result<Moved, BenchError> {
        let cpu = cpu_seconds();
        let started = Instant::now();
        let (rows, bytes) = self.copy(src, dst, self.share / parts as f64, part).await?;
        Ok(Moved {
            rows,
            bytes,
            seconds: started.elapsed().as_secs_f64(),
            cpu: cpu_seconds() - cpu,
        })
    }

    async fn copy(
        &self,
        src: &Client,
        dst: &Client,
        share: f64,
        seed: usize,
    ) -> Result<(u64, u64), BenchError> {
        let f = self.format.as_sql();
        let out = src
            .copy_out(&format!(
                "COPY ({}) TO STDOUT (FORMAT {f})",
                self.select(share, seed)
            ))
            .await
            .map_err(fail("source", "sampling a table"))?;
        let sink = dst
            .copy_in::<_, Bytes>(&format!("COPY {} FROM STDIN (FORMAT {f})", self.scratch))
            .await
            .map_err(fail("target", "loading a sample"))?;
        futures::pin_mut!(sink);
        let mut counter = RowCounter::for_format(self.format);
        let stats = forward(
            out,
            sink.as_mut(),
            &mut counter,
            ForwardOptions::default(),
            &mut |_| {},
        )
        .await
        .map_err(|e| BenchError::Plan(format!("sampling {}: {e}", self.table.name)))?;
        sink.as_mut()
            .finish()
            .await
            .map_err(fail("target", "loading a sample"))?;
        Ok((stats.rows, stats.bytes))
    }

    /// The source's side alone: the sample read and discarded, bytes per second.
    async fn read_only(&self, src: &Client) -> Result<f64, BenchError> {
        let started = Instant::now();
        let stream = src
            .copy_out(&format!(
                "COPY ({}) TO STDOUT (FORMAT {})",
                self.select(self.share, 0),
                self.format.as_sql()
            ))
            .await
            .map_err(fail("source", "reading a sample"))?;
        futures::pin_mut!(stream);
        let mut bytes = 0u64;
        while let Some(chunk) = stream
            .try_next()
            .await
            .map_err(fail("source", "reading a sample"))?
        {
            bytes += chunk.len() as u64;
        }
        Ok(bytes as f64 / started.elapsed().as_secs_f64().max(1e-9))
    }

    /// Builds the table's indexes on the sample (without UNIQUE: samples taken by several
    /// pipes may repeat rows); returns the seconds.
    async fn build_indexes(
        &self,
        target: &Client,
        _rows: u64,
        indexes: &[String],
    ) -> Result<f64, BenchError> {
        let mut seconds = 0.0;
        for def in indexes {
            let Some(at) = def.find(" USING ") else {
                continue;
            };
            let sql = format!("CREATE INDEX ON {}{}", self.scratch, &def[at..]);
            let started = Instant::now();
            // An index the scratch table cannot have (an operator class from an extension
            // missing on the target...) is left out of the estimate.
            if target.batch_execute(&sql).await.is_ok() {
                seconds += started.elapsed().as_secs_f64();
            }
        }
        Ok(seconds)
    }
}

/// The plan as a table.
pub fn render(plan: &Plan) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "projected `pgferry clone -j {}` of database \"{}\" ({} COPY format):\n",
        plan.jobs, plan.database, plan.format
    );
    let _ = writeln!(
        out,
        "{:<40} {:>10} {:>11} {:>8} {:>8} {:>8} {:>8}",
        "TABLE", "DISK MB", "ROWS", "SAMPLED", "MB/S", "COPY S", "INDEX S"
    );
    for t in &plan.tables {
        let _ = writeln!(
            out,
            "{:<40} {:>10.1} {:>11} {:>7.1}% {:>8.1} {:>8.1} {:>8.1}",
            t.table,
            t.disk_bytes as f64 / 1e6,
            if t.rows > 0 {
                t.rows.to_string()
            } else {
                "-".into()
            },
            t.sampled_share * 100.0,
            t.rate_mb_s,
            t.copy_seconds,
            t.index_seconds
        );
    }
    let _ = writeln!(
        out,
        "\n{} pipes copy {:.2}× as fast as one (measured on the largest table)",
        plan.jobs, plan.speedup
    );
    for (phase, secs) in &plan.phases {
        let _ = writeln!(out, "  {phase:<32} {secs:>8.1} s");
    }
    let _ = writeln!(out, "  {:<32} {:>8.1} s", "total", plan.total_seconds);
    let _ = writeln!(out, "limit: {}", plan.limit);
    if let Some(c) = &plan.catch_up {
        let _ = writeln!(out, "catch-up: {c}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_scale_as_n_log_n() {
        assert_eq!(scale_build(2.0, 1000, 1000), 2.0);
        let s = scale_build(1.0, 1000, 10_000);
        assert!(s > 10.0 && s < 14.0, "{s}");
    }
}
