//! `pgferry verify`: prove that the target holds the same data as the source.
//!
//! ```text
//!   source ──┐  N sessions, one exported snapshot          ┌── target
//!            │  catalog: tables (+ size, columns),         │
//!            │           sequences, large objects          │
//!            ▼                                             ▼
//!       digest tasks (table or block range) ── both sides in parallel ──
//!            │                                             │
//!            └────────► per-table (count, Σ row hash) ◄────┘
//!                              compare → VerifyReport
//! ```
//!
//! What is compared:
//! - **Tables** with storage (ordinary tables and partition leaves; a partitioned parent is
//!   covered by its leaves; foreign tables, views and materialized views are skipped), matched by
//!   schema-qualified name: column names and types, row count, and an order-independent,
//!   column-order-independent checksum computed by the servers (see [`plan`] for the digest
//!   and its limits). Tables larger than [`VerifyOptions::chunk_threshold_bytes`] are read in
//!   `ctid` block ranges (PostgreSQL 14+ TID range scans) spread over `jobs` sessions per side;
//!   the range sums of each side are added up and only the totals are compared, because the
//!   same rows sit in different blocks on the two sides.
//! - **Sequences**: `last_value` and `is_called`.
//! - **Large objects**: the set of OIDs, each object's md5 and owner.
//!
//! Each side reads within one `REPEATABLE READ` snapshot shared by all its sessions
//! (`pg_export_snapshot`), so a table is seen at one instant even when read in ranges by
//! several sessions. The two sides are still read at different instants: verify a source that
//! no longer changes (after cutover, or a restored dump), or expect differences.
//!
//! Differences are findings, listed in the [`VerifyReport`] (every one of them; the run goes
//! on). A [`VerifyError`] means something could not be checked (unreachable server, permission
//! denied, unknown table in the filter) and ends the run.

pub mod catalog;
pub mod error;
pub mod plan;
pub mod report;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Mutex;

use futures::future::try_join_all;

use crate::conn::{connect, ConnConfig, Session};
use crate::quote::quote_literal;
use catalog::{Server, ServerInfo, TableInfo};
use plan::{BlockRange, Column, ObjectName, RowHash};

pub use error::{QueryFailure, Side, VerifyError};
pub use report::{
    render_text, LargeObjectDiff, LargeObjectReport, SequenceReport, SequenceState, Status,
    TableDigest, TableReport, VerifyReport,
};

/// Tables above this size (`pg_relation_size`) are read in block ranges by default.
pub const DEFAULT_CHUNK_THRESHOLD_BYTES: u64 = 256 * 1024 * 1024;

/// Sessions per side by default.
pub const DEFAULT_JOBS: usize = 2;

/// What to verify and how hard to push the servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Only these tables (`schema.table` or `table` in any schema, unquoted). Empty: all.
    /// When given, sequences and large objects are not checked: the question was about
    /// these tables.
    pub tables: Vec<String>,
    /// Sessions per side (each side gets its own `jobs`); at least 1.
    pub jobs: usize,
    /// Tables larger than this are read in ranges of about this size; 0 never splits.
    pub chunk_threshold_bytes: u64,
    /// Schemas left out on both sides. By default `pgferry`, where pgferry keeps its own
    /// migration state in the target.
    pub ignore_schemas: Vec<String>,
    /// Compare sequences (when no table filter is given).
    pub sequences: bool,
    /// Compare large objects (when no table filter is given).
    pub large_objects: bool,
    /// Leave owners out of the comparison (a migration made with `--no-owner`, or into a
    /// target where an owner could not be kept).
    pub ignore_owners: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            tables: Vec::new(),
            jobs: DEFAULT_JOBS,
            chunk_threshold_bytes: DEFAULT_CHUNK_THRESHOLD_BYTES,
            ignore_schemas: vec!["pgferry".to_owned()],
            sequences: true,
            large_objects: true,
            ignore_owners: false,
        }
    }
}

/// Settings that change how values print as text. They are pinned on both sides so that equal
/// data gives equal row text whatever the servers' or roles' defaults are. `search_path` is
/// pinned too because `regclass`-like values print schema-qualified or not depending on it.
/// `row_security = off` makes a policy that would hide rows an error instead of a silent
/// difference. Timeouts are lifted: a checksum of a big table is a long query, and sessions
/// wait idle in their transaction while the others finish.
const SESSION_SETUP: &str = "\
    SET datestyle = 'ISO, YMD'; \
    SET intervalstyle = 'postgres'; \
    SET timezone = 'UTC'; \
    SET extra_float_digits = 3; \
    SET bytea_output = 'hex'; \
    SET lc_monetary = 'C'; \
    SET search_path = pg_catalog; \
    SET row_security = off; \
    SET statement_timeout = 0; \
    SET lock_timeout = 0; \
    SET idle_in_transaction_session_timeout = 0";

const BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// Compares `dst` against `src` (see the module docs) and returns every difference found.
pub async fn verify(
    src: &ConnConfig,
    dst: &ConnConfig,
    opts: &VerifyOptions,
) -> Result<VerifyReport, VerifyError> {
    if opts.jobs == 0 {
        return Err(VerifyError::InvalidOptions(
            "jobs must be at least 1".into(),
        ));
    }
    let (source, target) = tokio::try_join!(
        SideSessions::open(Side::Source, src, opts.jobs),
        SideSessions::open(Side::Target, dst, opts.jobs),
    )?;

    let (src_tables, dst_tables) = tokio::try_join!(
        catalog::tables(source.leader(), &source.server, &opts.ignore_schemas),
        catalog::tables(target.leader(), &target.server, &opts.ignore_schemas),
    )?;
    let pairs = pair_tables(&src_tables, &dst_tables, &opts.tables)?;
    let tables = compare_tables(&source, &target, &pairs, opts).await?;

    let check_others = opts.tables.is_empty();
    let sequences = if check_others && opts.sequences {
        let (s, d) = tokio::try_join!(
            catalog::sequences(source.leader(), &source.server, &opts.ignore_schemas),
            catalog::sequences(target.leader(), &target.server, &opts.ignore_schemas),
        )?;
        Some(compare_sequences(s, d))
    } else {
        None
    };
    let large_objects = if check_others && opts.large_objects {
        let (s, d) = tokio::try_join!(
            catalog::large_objects(source.leader(), &source.server),
            catalog::large_objects(target.leader(), &target.server),
        )?;
        Some(compare_large_objects(&s, &d, opts.ignore_owners))
    } else {
        None
    };

    let report = VerifyReport {
        source: source.server.label.clone(),
        target: target.server.label.clone(),
        tables,
        sequences,
        large_objects,
    };
    tokio::join!(source.close(), target.close());
    Ok(report)
}

/// The `jobs` sessions of one side, all in one snapshot when the server can export it.
struct SideSessions {
    server: Server,
    info: ServerInfo,
    /// Never empty; the first one exported the snapshot and reads the catalog.
    sessions: Vec<Session>,
}

impl SideSessions {
    async fn open(side: Side, cfg: &ConnConfig, jobs: usize) -> Result<SideSessions, VerifyError> {
        let server = Server {
            side,
            label: cfg.display_target(),
        };
        let leader = open_session(&server, cfg).await?;
        let begin_err = |e| server.query_error("a read-only transaction", e);
        leader
            .client
            .batch_execute(BEGIN)
            .await
            .map_err(begin_err)?;
        // Hot standbys before some versions cannot export snapshots; then each session gets
        // its own snapshot, which is fine for a source that is not changing.
        let snapshot = match leader
            .client
            .query_one("SELECT pg_export_snapshot()", &[])
            .await
            .and_then(|row| row.try_get::<_, String>(0))
        {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::warn!(
                    "{side} {}: cannot share one snapshot between sessions ({e}); \
                     each session reads its own",
                    server.label
                );
                leader
                    .client
                    .batch_execute(&format!("ROLLBACK; {BEGIN}"))
                    .await
                    .map_err(begin_err)?;
                None
            }
        };
        let info = catalog::server_info(&leader.client, &server).await?;
        let others = try_join_all((1..jobs).map(|_| async {
            let s = open_session(&server, cfg).await?;
            let mut sql = BEGIN.to_owned();
            if let Some(id) = &snapshot {
                sql.push_str(&format!("; SET TRANSACTION SNAPSHOT {}", quote_literal(id)));
            }
            s.client
                .batch_execute(&sql)
                .await
                .map_err(|e| server.query_error("the shared snapshot", e))?;
            Ok::<_, VerifyError>(s)
        }))
        .await?;
        let mut sessions = vec![leader];
        sessions.extend(others);
        Ok(SideSessions {
            server,
            info,
            sessions,
        })
    }

    fn leader(&self) -> &tokio_postgres::Client {
        &self.sessions[0].client
    }

    /// Ends the read-only transactions and closes the sessions.
    async fn close(self) {
        futures::future::join_all(self.sessions.into_iter().map(|s| async move {
            // Nothing was written; a failed COMMIT changes nothing.
            let _ = s.client.batch_execute("COMMIT").await;
            s.close().await;
        }))
        .await;
    }
}

async fn open_session(server: &Server, cfg: &ConnConfig) -> Result<Session, VerifyError> {
    let session = connect(cfg).await.map_err(|source| VerifyError::Connect {
        side: server.side,
        source: Box::new(source),
    })?;
    session
        .client
        .batch_execute(SESSION_SETUP)
        .await
        .map_err(|e| server.query_error("the session settings", e))?;
    Ok(session)
}

/// A table present on at least one side, with the columns to digest it by.
struct TablePair<'a> {
    name: ObjectName,
    source: Option<&'a TableInfo>,
    target: Option<&'a TableInfo>,
    /// Sorted by name: the common columns when on both sides, else the side's own.
    columns: Vec<Column>,
    /// Why the columns differ, if they do.
    column_problem: Option<String>,
}

/// Matches the tables of both sides by name and applies the filter; a filter entry that
/// matches nothing on either side is an error (most likely a typo).
fn pair_tables<'a>(
    src: &'a [TableInfo],
    dst: &'a [TableInfo],
    filter: &[String],
) -> Result<Vec<TablePair<'a>>, VerifyError> {
    let unmatched = plan::unmatched_filters(filter, src.iter().chain(dst).map(|t| &t.name));
    if !unmatched.is_empty() {
        return Err(VerifyError::UnknownTables(unmatched));
    }
    let mut by_name: BTreeMap<&ObjectName, (Option<&TableInfo>, Option<&TableInfo>)> =
        BTreeMap::new();
    for t in src {
        by_name.entry(&t.name).or_default().0 = Some(t);
    }
    for t in dst {
        by_name.entry(&t.name).or_default().1 = Some(t);
    }
    Ok(by_name
        .into_iter()
        .filter(|(name, _)| plan::filter_matches(filter, name))
        .map(|(name, (s, d))| {
            let (columns, column_problem) = match (s, d) {
                (Some(s), Some(d)) => plan::compare_columns(&s.columns, &d.columns),
                (Some(only), None) | (None, Some(only)) => {
                    (plan::sorted_columns(&only.columns), None)
                }
                (None, None) => (Vec::new(), None),
            };
            TablePair {
                name: name.clone(),
                source: s,
                target: d,
                columns,
                column_problem,
            }
        })
        .collect())
}

/// One query: a whole table or one block range of it.
struct Task {
    /// Index into the table pairs.
    table: usize,
    sql: String,
    /// For error messages, e.g. `table public.t (blocks 8..16)`.
    object: String,
}

/// One task's answer.
struct Partial {
    table: usize,
    rows: i64,
    sum: i128,
}

async fn compare_tables(
    source: &SideSessions,
    target: &SideSessions,
    pairs: &[TablePair<'_>],
    opts: &VerifyOptions,
) -> Result<Vec<TableReport>, VerifyError> {
    let hash = RowHash::for_versions(source.info.version_num, target.info.version_num);
    let src_tasks = plan_tasks(pairs, |p| p.source, &source.info, hash, opts);
    let dst_tasks = plan_tasks(pairs, |p| p.target, &target.info, hash, opts);
    let (src_parts, dst_parts) = tokio::try_join!(
        run_tasks(source, src_tasks.tasks),
        run_tasks(target, dst_tasks.tasks),
    )?;
    let src_digests = sum_up(pairs.len(), &src_parts, &src_tasks.chunks, |i| {
        pairs[i].source.is_some()
    });
    let dst_digests = sum_up(pairs.len(), &dst_parts, &dst_tasks.chunks, |i| {
        pairs[i].target.is_some()
    });
    let mut out = Vec::with_capacity(pairs.len());
    for (i, pair) in pairs.iter().enumerate() {
        let source = src_digests[i].clone();
        let target = dst_digests[i].clone();
        let status = table_status(source.as_ref(), target.as_ref(), &pair.column_problem);
        out.push(TableReport {
            schema: pair.name.schema.clone(),
            name: pair.name.name.clone(),
            source,
            target,
            status,
        });
    }
    Ok(out)
}

/// The tasks of one side, biggest tables first so that the long reads start early, and how
/// many ranges each table was split into.
struct SidePlan {
    tasks: Vec<Task>,
    chunks: Vec<usize>,
}

fn plan_tasks<'a>(
    pairs: &[TablePair<'a>],
    side_of: impl Fn(&TablePair<'a>) -> Option<&'a TableInfo>,
    info: &ServerInfo,
    hash: RowHash,
    opts: &VerifyOptions,
) -> SidePlan {
    let mut order: Vec<(usize, &TableInfo)> = pairs
        .iter()
        .enumerate()
        .filter_map(|(i, p)| side_of(p).map(|t| (i, t)))
        .collect();
    order.sort_by_key(|(_, t)| std::cmp::Reverse(t.size_bytes));
    let mut chunks = vec![0; pairs.len()];
    let mut tasks = Vec::new();
    for (i, table) in order {
        let ranges = plan::plan_ranges(
            table.size_bytes,
            info.block_size,
            opts.chunk_threshold_bytes,
            info.tid_range_scans(),
        );
        chunks[i] = ranges.len();
        for range in ranges {
            tasks.push(Task {
                table: i,
                sql: plan::digest_sql(&pairs[i].name, &pairs[i].columns, range, hash),
                object: describe(&pairs[i].name, range),
            });
        }
    }
    SidePlan { tasks, chunks }
}

fn describe(name: &ObjectName, range: BlockRange) -> String {
    match (range.start, range.end) {
        (None, None) => format!("table {name}"),
        (s, e) => format!(
            "table {name} (blocks {}..{})",
            s.unwrap_or(0),
            e.map_or_else(String::new, |e| e.to_string())
        ),
    }
}

/// Runs `tasks` over all the sessions of one side: each session takes the next task when it
/// is done with its last one.
async fn run_tasks(side: &SideSessions, tasks: Vec<Task>) -> Result<Vec<Partial>, VerifyError> {
    let queue = Mutex::new(VecDeque::from(tasks));
    let next = || {
        queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop_front()
    };
    let workers = side.sessions.iter().map(|session| async {
        let mut done = Vec::new();
        while let Some(task) = next() {
            done.push(run_task(&session.client, &side.server, task).await?);
        }
        Ok::<_, VerifyError>(done)
    });
    Ok(try_join_all(workers).await?.into_iter().flatten().collect())
}

async fn run_task(
    client: &tokio_postgres::Client,
    server: &Server,
    task: Task,
) -> Result<Partial, VerifyError> {
    tracing::debug!(
        "{} {}: digesting {}",
        server.side,
        server.label,
        task.object
    );
    let row = client
        .query_one(&task.sql, &[])
        .await
        .map_err(|e| server.query_error(task.object.clone(), e))?;
    let rows: i64 = row
        .try_get(0)
        .map_err(|e| server.query_error(task.object.clone(), e))?;
    let sum: String = row
        .try_get(1)
        .map_err(|e| server.query_error(task.object.clone(), e))?;
    let sum: i128 = sum.parse().map_err(|_| {
        server.unexpected(task.object, format!("checksum {sum:?} is not an integer"))
    })?;
    Ok(Partial {
        table: task.table,
        rows,
        sum,
    })
}

/// Adds up the partial digests of each table of one side.
fn sum_up(
    n: usize,
    parts: &[Partial],
    chunks: &[usize],
    present: impl Fn(usize) -> bool,
) -> Vec<Option<TableDigest>> {
    let mut out: Vec<Option<TableDigest>> = (0..n)
        .map(|i| {
            present(i).then(|| TableDigest {
                rows: 0,
                checksum: 0,
                chunks: chunks[i],
            })
        })
        .collect();
    for p in parts {
        if let Some(Some(d)) = out.get_mut(p.table) {
            d.rows += p.rows;
            // Wrapping keeps a pathological table from panicking; both sides wrap alike.
            d.checksum = d.checksum.wrapping_add(p.sum);
        }
    }
    out
}

fn table_status(
    source: Option<&TableDigest>,
    target: Option<&TableDigest>,
    column_problem: &Option<String>,
) -> Status {
    let (s, t) = match (source, target) {
        (Some(s), Some(t)) => (s, t),
        (Some(_), None) => return Status::MissingOnTarget,
        (None, _) => return Status::MissingOnSource,
    };
    let mut why = Vec::new();
    if let Some(p) = column_problem {
        why.push(p.clone());
    }
    if s.rows != t.rows {
        why.push(format!(
            "row count differs (source {}, target {})",
            s.rows, t.rows
        ));
    } else if s.checksum != t.checksum {
        why.push(if column_problem.is_some() {
            "the common columns' contents differ too".to_owned()
        } else {
            "same row count, different contents (checksum differs)".to_owned()
        });
    }
    if why.is_empty() {
        Status::Match
    } else {
        Status::Mismatch {
            why: why.join("; "),
        }
    }
}

fn compare_sequences(
    src: BTreeMap<ObjectName, SequenceState>,
    dst: BTreeMap<ObjectName, SequenceState>,
) -> Vec<SequenceReport> {
    let names: BTreeSet<&ObjectName> = src.keys().chain(dst.keys()).collect();
    names
        .into_iter()
        .map(|name| {
            let s = src.get(name).copied();
            let t = dst.get(name).copied();
            let status = match (s, t) {
                (Some(_), None) => Status::MissingOnTarget,
                (None, _) => Status::MissingOnSource,
                (Some(s), Some(t)) if s == t => Status::Match,
                (Some(s), Some(t)) => {
                    let mut why = Vec::new();
                    if s.last_value != t.last_value {
                        why.push(format!(
                            "last_value differs (source {}, target {})",
                            s.last_value, t.last_value
                        ));
                    }
                    if s.is_called != t.is_called {
                        why.push(format!(
                            "is_called differs (source {}, target {})",
                            s.is_called, t.is_called
                        ));
                    }
                    Status::Mismatch {
                        why: why.join("; "),
                    }
                }
            };
            SequenceReport {
                schema: name.schema.clone(),
                name: name.name.clone(),
                source: s,
                target: t,
                status,
            }
        })
        .collect()
}

fn compare_large_objects(
    src: &BTreeMap<u32, catalog::LargeObjectDigest>,
    dst: &BTreeMap<u32, catalog::LargeObjectDigest>,
    ignore_owners: bool,
) -> LargeObjectReport {
    let oids: BTreeSet<u32> = src.keys().chain(dst.keys()).copied().collect();
    let mut differences = Vec::new();
    for oid in oids {
        let status = match (src.get(&oid), dst.get(&oid)) {
            (Some(_), None) => Status::MissingOnTarget,
            (None, _) => Status::MissingOnSource,
            (Some(s), Some(t)) => {
                let mut why = Vec::new();
                if s.md5 != t.md5 {
                    why.push(format!(
                        "content differs (md5 {} on source, {} on target)",
                        s.md5, t.md5
                    ));
                }
                if s.owner != t.owner && !ignore_owners {
                    why.push(format!(
                        "owner differs ({} on source, {} on target)",
                        s.owner, t.owner
                    ));
                }
                if why.is_empty() {
                    continue;
                }
                Status::Mismatch {
                    why: why.join("; "),
                }
            }
        };
        differences.push(LargeObjectDiff { oid, status });
    }
    LargeObjectReport {
        source_count: src.len(),
        target_count: dst.len(),
        differences,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(rows: i64, checksum: i128) -> TableDigest {
        TableDigest {
            rows,
            checksum,
            chunks: 1,
        }
    }

    #[test]
    fn table_status_names_the_difference() {
        assert_eq!(
            table_status(Some(&digest(3, 7)), Some(&digest(3, 7)), &None),
            Status::Match
        );
        assert_eq!(
            table_status(Some(&digest(3, 7)), None, &None),
            Status::MissingOnTarget
        );
        assert_eq!(
            table_status(None, Some(&digest(3, 7)), &None),
            Status::MissingOnSource
        );
        let Status::Mismatch { why } =
            table_status(Some(&digest(3, 7)), Some(&digest(2, 7)), &None)
        else {
            panic!("expected a mismatch")
        };
        assert_eq!(why, "row count differs (source 3, target 2)");
        let Status::Mismatch { why } =
            table_status(Some(&digest(3, 7)), Some(&digest(3, 8)), &None)
        else {
            panic!("expected a mismatch")
        };
        assert!(why.contains("checksum differs"), "{why}");
        let cols = Some("columns only on target: x".to_owned());
        let Status::Mismatch { why } =
            table_status(Some(&digest(3, 7)), Some(&digest(3, 7)), &cols)
        else {
            panic!("expected a mismatch")
        };
        assert_eq!(why, "columns only on target: x");
    }

    #[test]
    fn range_sums_add_up_per_table() {
        let parts = [
            Partial {
                table: 0,
                rows: 2,
                sum: -5,
            },
            Partial {
                table: 1,
                rows: 1,
                sum: 9,
            },
            Partial {
                table: 0,
                rows: 3,
                sum: i128::from(i64::MAX),
            },
        ];
        let d = sum_up(3, &parts, &[2, 1, 0], |i| i < 2);
        assert_eq!(
            d[0],
            Some(TableDigest {
                rows: 5,
                checksum: i128::from(i64::MAX) - 5,
                chunks: 2
            })
        );
        assert_eq!(d[1], Some(digest(1, 9)));
        assert_eq!(d[2], None);
    }
}
