//! `pgferry status`: the state in the target, in the seed tool's JSON shape (with pgferry's
//! extra fields) or as a table.
//!
//! The overall status is derived from the databases: `failed` when one failed, `done` when all
//! are done, `syncing` when all are done or streaming, `running` otherwise. A database is
//! never `syncing` or `done` before its initial copy finished (the state is only moved there
//! after the copy committed). When no pgferry process runs, a database left `running` is shown
//! as `failed` with the reason, since nothing is moving it forward.
//!
//! **What the source pays.** A running copy holds a snapshot open on the source (its vacuum
//! cannot remove rows deleted since): its age is shown while the copy runs. A replication
//! slot makes the source keep WAL until pgferry consumes it, also while no pgferry runs (a
//! killed or stopped migrate): the running process reports it every few seconds, and
//! `status -s SRC` reads it on the source *now* ([`read_live`]), which is what matters when
//! nobody is consuming. Each figure says when it was measured.

use crate::replication::publication;
use crate::replication::slot::{self, SlotRetention};
use crate::state::lifecycle::{DatabaseStatus, Method, MigrationStatus};
use crate::state::migration::{DatabaseRow, MigrationRow, Store, StoreError};
use crate::units::format_size;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use tokio_postgres::Client;

#[derive(Debug, Clone)]
pub struct StatusReport {
    pub migration: MigrationRow,
    pub databases: Vec<DatabaseRow>,
    /// A migrate process holds the run lock.
    pub running: bool,
    /// The slots read on the source just now (`status -s SRC`); `None` when not read.
    pub live: Option<LiveSlots>,
}

/// Per database using replication and not done: its slot's retention read now, `None` when
/// the source has no such slot.
pub type LiveSlots = BTreeMap<String, Option<SlotRetention>>;

/// How one database's retained WAL is known.
enum Retention<'a> {
    /// Read on the source now.
    Now(&'a SlotRetention),
    /// Read now: the slot does not exist.
    NoSlot,
    /// Stored by the running (or last) process `age` seconds ago.
    Reported {
        bytes: i64,
        wal_status: Option<&'a str>,
        age: Option<f64>,
    },
}

const INTERRUPTED: &str =
    "interrupted: no pgferry process is running; rerun the same migrate command to resume";

impl StatusReport {
    /// Databases as they should be shown (see the module documentation).
    pub fn effective_databases(&self) -> Vec<DatabaseRow> {
        self.databases
            .iter()
            .map(|d| {
                let mut d = d.clone();
                if !self.running && d.status == DatabaseStatus::Running {
                    d.status = DatabaseStatus::Failed;
                    d.error.get_or_insert_with(|| INTERRUPTED.into());
                }
                d
            })
            .collect()
    }

    /// The slot retention to show for `d`, if any (replication databases not done).
    fn retention<'a>(&'a self, d: &'a DatabaseRow) -> Option<Retention<'a>> {
        if d.status == DatabaseStatus::Done || d.method != Method::Replication {
            return None;
        }
        if let Some(live) = &self.live {
            return match live.get(&d.dbname) {
                Some(Some(r)) => Some(Retention::Now(r)),
                Some(None) => Some(Retention::NoSlot),
                None => None,
            };
        }
        d.slot_retained_bytes.map(|bytes| Retention::Reported {
            bytes,
            wal_status: d.slot_wal_status.as_deref(),
            age: d.reported_seconds_ago,
        })
    }

    /// The snapshot age to show for `d`: only while a process runs its copy.
    fn snapshot_age(&self, d: &DatabaseRow) -> Option<f64> {
        (self.running && d.status == DatabaseStatus::Running)
            .then_some(d.snapshot_age_seconds)
            .flatten()
    }

    /// The overall (status, error).
    pub fn overall(&self) -> (MigrationStatus, Option<String>) {
        let dbs = self.effective_databases();
        let failed: Vec<&str> = dbs
            .iter()
            .filter(|d| d.status == DatabaseStatus::Failed)
            .map(|d| d.dbname.as_str())
            .collect();
        if !failed.is_empty() {
            return (
                MigrationStatus::Failed,
                Some(format!("failed databases: {}", failed.join(", "))),
            );
        }
        if dbs.is_empty() {
            return (
                if self.running {
                    MigrationStatus::Running
                } else {
                    MigrationStatus::Done
                },
                self.migration.error.clone(),
            );
        }
        if dbs.iter().all(|d| d.status == DatabaseStatus::Done) {
            (MigrationStatus::Done, None)
        } else if dbs
            .iter()
            .all(|d| matches!(d.status, DatabaseStatus::Done | DatabaseStatus::Syncing))
        {
            (MigrationStatus::Syncing, None)
        } else {
            (MigrationStatus::Running, None)
        }
    }

    /// The seed tool's shape: `{"migration": {error, method, status}, "migration_detail": [...]}`
    /// plus pgferry's fields (id, source, running; per database phase, lag, tables).
    pub fn to_json(&self) -> Value {
        let (status, error) = self.overall();
        let detail: Vec<Value> = self
            .effective_databases()
            .iter()
            .map(|d| {
                let (retained, wal_status, measured, age) = match self.retention(d) {
                    Some(Retention::Now(r)) => (
                        r.retained_bytes.map(|b| b.min(i64::MAX as u64) as i64),
                        r.wal_status.clone(),
                        Some("now"),
                        Some(0.0),
                    ),
                    Some(Retention::NoSlot) => (None, None, Some("now: no slot"), Some(0.0)),
                    Some(Retention::Reported {
                        bytes,
                        wal_status,
                        age,
                    }) => (
                        Some(bytes),
                        wal_status.map(str::to_owned),
                        Some("last report"),
                        age,
                    ),
                    None => (d.slot_retained_bytes, d.slot_wal_status.clone(), None, None),
                };
                json!({
                    "dbname": d.dbname,
                    "error": d.error,
                    "method": d.method,
                    "status": d.status,
                    "phase": d.phase,
                    "method_reason": d.method_reason,
                    "lag_bytes": d.lag_bytes,
                    "tables_done": d.tables_done,
                    "tables_total": d.tables_total,
                    "not_replicated": d.not_replicated,
                    "slot_retained_bytes": retained,
                    "slot_wal_status": wal_status,
                    "slot_retention_measured": measured,
                    "slot_retention_age_seconds": age.map(|a| a.round() as i64),
                    "snapshot_age_seconds": self.snapshot_age(d).map(|a| a.round() as i64),
                    "retries": d.retries,
                    "last_error": d.last_error,
                })
            })
            .collect();
        json!({
            "migration": {
                "error": error,
                "method": "",
                "status": status,
                "id": self.migration.id,
                "source": self.migration.source,
                "running": self.running,
            },
            "migration_detail": detail,
        })
    }

    pub fn to_table(&self) -> String {
        let (status, error) = self.overall();
        let dbs = self.effective_databases();
        // The seed's JSON keeps the migration-level method empty; the table says which
        // methods the databases use instead.
        let mut methods: Vec<&str> = dbs.iter().map(|d| d.method.as_status()).collect();
        methods.sort_unstable();
        methods.dedup();
        let methods = if methods.is_empty() {
            "-".to_owned()
        } else {
            methods.join(",")
        };
        let mut out = format!(
            "migration {} from {} ({})\n\nSTATUS   {:<w$}  ERROR\n{:<8} {:<w$}  {}\n\n",
            self.migration.id,
            self.migration.source,
            if self.running {
                "a pgferry process is running"
            } else {
                "no pgferry process is running"
            },
            "METHODS",
            status,
            methods,
            error.unwrap_or_else(|| "-".into()),
            w = methods.len().max(7),
        );
        let width = dbs.iter().map(|d| d.dbname.len()).max().unwrap_or(8).max(8);
        out.push_str(&format!(
            "{:<width$}  {:<8} {:<11} {:<10} {:>8} {:>12}  ERROR\n",
            "DATABASE", "STATUS", "METHOD", "PHASE", "TABLES", "LAG (bytes)"
        ));
        for d in &dbs {
            out.push_str(&format!(
                "{:<width$}  {:<8} {:<11} {:<10} {:>8} {:>12}  {}\n",
                d.dbname,
                d.status,
                d.method,
                d.phase,
                format!("{}/{}", d.tables_done, d.tables_total),
                d.lag_bytes
                    .map(|l| l.to_string())
                    .unwrap_or_else(|| "-".into()),
                d.error.as_deref().unwrap_or("-")
            ));
        }
        self.source_cost_notes(&dbs, &mut out);
        stream_notes(&dbs, &mut out);
        out
    }

    /// What the source pays, under the table: the snapshot the copy holds open and the WAL
    /// the slots retain.
    fn source_cost_notes(&self, dbs: &[DatabaseRow], out: &mut String) {
        let snapshots: Vec<String> = dbs
            .iter()
            .filter_map(|d| {
                self.snapshot_age(d)
                    .map(|age| format!("  {}: {:.0}s\n", d.dbname, age))
            })
            .collect();
        if !snapshots.is_empty() {
            out.push_str(
            "\nsnapshot held open on the source by the copy (the source's vacuum cannot remove \
             rows deleted since it was taken):\n",
        );
            out.push_str(&snapshots.concat());
        }
        let retaining: Vec<String> = dbs
            .iter()
            .filter_map(|d| {
                let line = match self.retention(d)? {
                    Retention::Now(r) => format!("{} (read now)", r.describe()),
                    Retention::NoSlot => {
                        "no replication slot on the source (nothing retained; a rerun copies \
                     this database again)"
                            .into()
                    }
                    Retention::Reported {
                        bytes,
                        wal_status,
                        age,
                    } => format!(
                        "{} ({bytes} bytes){}, at the last report{}",
                        format_size(bytes.max(0) as u64),
                        wal_status
                            .map(|s| format!(", wal_status {s}"))
                            .unwrap_or_default(),
                        age.map(|a| format!(", {a:.0}s ago")).unwrap_or_default()
                    ),
                };
                Some(format!("  {}: {line}\n", d.dbname))
            })
            .collect();
        if !retaining.is_empty() {
            out.push_str("\nWAL retained on the source by the replication slot:\n");
            out.push_str(&retaining.concat());
            if !self.running && self.live.is_none() {
                out.push_str(
                    "  no pgferry process is running: these slots keep retaining WAL on the \
                 source until migrate is rerun (it resumes) or `pgferry cleanup` removes \
                 them; `pgferry status -s SRC -t DST` reads the figure now\n",
                );
            }
        }
    }
}

/// The streams' notes under the table: retries, tables not replicated, why not replication.
fn stream_notes(dbs: &[DatabaseRow], out: &mut String) {
    let retried: Vec<String> = dbs
        .iter()
        .filter(|d| d.retries > 0)
        .map(|d| {
            format!(
                "  {}: {} retr{}, the last after: {}\n",
                d.dbname,
                d.retries,
                if d.retries == 1 { "y" } else { "ies" },
                d.last_error.as_deref().unwrap_or("-")
            )
        })
        .collect();
    if !retried.is_empty() {
        out.push_str("\nstreaming retried after transient errors:\n");
        out.push_str(&retried.concat());
    }
    let missing: Vec<&DatabaseRow> = dbs
        .iter()
        .filter(|d| !d.not_replicated.is_empty())
        .collect();
    if !missing.is_empty() {
        out.push_str(
            "\nnot replicated (created on the source without a usable replica identity, or \
             removed from the publication because they lost theirs):\n",
        );
        for d in missing {
            out.push_str(&format!(
                "  {}: {}\n",
                d.dbname,
                d.not_replicated.join(", ")
            ));
        }
    }
    let reasons: Vec<&DatabaseRow> = dbs.iter().filter(|d| d.method_reason.is_some()).collect();
    if !reasons.is_empty() {
        out.push_str("\nwhy not replication:\n");
        for d in reasons {
            out.push_str(&format!(
                "  {}: {}\n",
                d.dbname,
                d.method_reason.as_deref().unwrap_or("")
            ));
        }
    }
}

/// Reads the status from the bootstrap database `client` is connected to; `None` when it
/// holds no migration.
pub async fn read(client: &Client, database: &str) -> Result<Option<StatusReport>, StoreError> {
    let store = Store::new(client, database);
    let Some(migration) = store.migration().await? else {
        return Ok(None);
    };
    let databases = store.databases(&migration.id).await?;
    let running = store.is_running().await?;
    Ok(Some(StatusReport {
        migration,
        databases,
        running,
        live: None,
    }))
}

/// Reads, on the source `source` is connected to (any database of the server), the WAL each
/// replicating database's slot retains now.
pub async fn read_live(
    source: &Client,
    report: &StatusReport,
) -> Result<LiveSlots, tokio_postgres::Error> {
    let mangle = report.migration.options["mangle"]
        .as_bool()
        .unwrap_or(false);
    let mut live = LiveSlots::new();
    for d in &report.databases {
        if d.status == DatabaseStatus::Done || d.method != Method::Replication {
            continue;
        }
        let slot = publication::names_for(&d.dbname, mangle).slot;
        live.insert(d.dbname.clone(), slot::read_retention(source, &slot).await?);
    }
    Ok(live)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(name: &str, status: &str, method: &str) -> DatabaseRow {
        DatabaseRow {
            dbname: name.into(),
            method: Method::from_status(method).expect("a method's word"),
            method_reason: None,
            phase: crate::state::lifecycle::Phase::Copy,
            status: status.parse().expect("a status word"),
            error: None,
            lag_bytes: None,
            tables_done: 1,
            tables_total: 2,
            created_db: true,
            not_replicated: Vec::new(),
            slot_retained_bytes: None,
            slot_wal_status: None,
            snapshot_age_seconds: None,
            reported_seconds_ago: None,
            retries: 0,
            last_error: None,
        }
    }

    fn report(dbs: Vec<DatabaseRow>, running: bool) -> StatusReport {
        StatusReport {
            migration: MigrationRow {
                id: "m".into(),
                source: "u@h:5432/postgres".into(),
                source_fingerprint: "f".into(),
                status: MigrationStatus::Running,
                error: None,
                stop_lag: None,
                options: json!({}),
            },
            databases: dbs,
            running,
            live: None,
        }
    }

    #[test]
    fn seed_shape() {
        let r = report(
            vec![
                db("a", "done", "pg_dump"),
                db("b", "syncing", "replication"),
            ],
            true,
        );
        let v = r.to_json();
        assert_eq!(v["migration"]["status"], "syncing");
        assert_eq!(v["migration"]["method"], "");
        assert!(v["migration"]["error"].is_null());
        assert_eq!(v["migration_detail"][0]["dbname"], "a");
        assert_eq!(v["migration_detail"][0]["method"], "pg_dump");
        assert_eq!(v["migration_detail"][1]["status"], "syncing");
        assert_eq!(v["migration_detail"][1]["tables_total"], 2);
        let table = r.to_table();
        assert!(
            table.contains("STATUS   METHODS              ERROR\nsyncing  pg_dump,replication  -"),
            "{table}"
        );
    }

    #[test]
    fn not_replicated_tables_and_retained_wal_are_shown() {
        let mut b = db("b", "syncing", "replication");
        b.not_replicated = vec!["public.late".into()];
        b.slot_retained_bytes = Some(123456);
        b.slot_wal_status = Some("reserved".into());
        b.reported_seconds_ago = Some(4.2);
        b.retries = 2;
        b.last_error = Some("source: connection closed".into());
        let r = report(vec![db("a", "done", "pg_dump"), b], true);
        let v = r.to_json();
        assert_eq!(v["migration_detail"][1]["not_replicated"][0], "public.late");
        assert_eq!(v["migration_detail"][1]["slot_retained_bytes"], 123456);
        assert_eq!(
            v["migration_detail"][1]["slot_retention_measured"],
            "last report"
        );
        assert_eq!(v["migration_detail"][1]["slot_retention_age_seconds"], 4);
        let table = r.to_table();
        assert!(table.contains("  b: public.late"), "{table}");
        assert_eq!(v["migration_detail"][1]["retries"], 2);
        assert!(
            table.contains("  b: 2 retries, the last after: source: connection closed"),
            "{table}"
        );
        assert!(
            table.contains("(123456 bytes), wal_status reserved, at the last report, 4s ago"),
            "{table}"
        );
        assert!(!table.contains("no pgferry process is running: these slots"));
    }

    #[test]
    fn live_retention_replaces_the_last_report_and_a_dead_run_is_told_to_read_it() {
        let mut b = db("b", "syncing", "replication");
        b.slot_retained_bytes = Some(1000);
        let mut c = db("c", "syncing", "replication");
        c.slot_retained_bytes = Some(5);
        let dead = report(vec![b.clone(), c.clone()], false);
        assert!(dead.to_table().contains("status -s SRC -t DST"));
        let mut live = report(vec![b, c], false);
        let mut slots = LiveSlots::new();
        slots.insert(
            "b".into(),
            Some(SlotRetention {
                retained_bytes: Some(50 << 20),
                wal_status: Some("extended".into()),
                safe_wal_size: None,
                max_slot_wal_keep_size: None,
            }),
        );
        slots.insert("c".into(), None);
        live.live = Some(slots);
        let v = live.to_json();
        assert_eq!(v["migration_detail"][0]["slot_retained_bytes"], 50 << 20);
        assert_eq!(v["migration_detail"][0]["slot_retention_measured"], "now");
        assert!(v["migration_detail"][1]["slot_retained_bytes"].is_null());
        let table = live.to_table();
        assert!(table.contains("(read now)"), "{table}");
        assert!(table.contains("c: no replication slot"), "{table}");
        assert!(!table.contains("status -s SRC -t DST"), "{table}");
    }

    #[test]
    fn snapshot_age_only_while_a_copy_runs() {
        let mut a = db("a", "running", "replication");
        a.snapshot_age_seconds = Some(12.4);
        let running = report(vec![a.clone()], true);
        assert_eq!(
            running.to_json()["migration_detail"][0]["snapshot_age_seconds"],
            12
        );
        assert!(running.to_table().contains("snapshot held open"));
        let dead = report(vec![a], false);
        assert!(dead.to_json()["migration_detail"][0]["snapshot_age_seconds"].is_null());
    }

    #[test]
    fn a_dead_run_is_not_reported_as_running() {
        let r = report(
            vec![
                db("a", "running", "replication"),
                db("b", "done", "pg_dump"),
            ],
            false,
        );
        let (status, error) = r.overall();
        assert_eq!(status, "failed");
        assert!(error.unwrap().contains('a'));
        assert!(r.to_json()["migration_detail"][0]["error"]
            .as_str()
            .unwrap()
            .contains("rerun"));
        let live = report(vec![db("a", "running", "replication")], true);
        assert_eq!(live.overall().0, "running");
        assert!(live.to_table().contains("a pgferry process is running"));
    }
}
