//! `pgferry status`: the state in the target, in the seed tool's JSON shape (with pgferry's
//! extra fields) or as a table.
//!
//! The overall status is derived from the databases: `failed` when one failed, `done` when all
//! are done, `syncing` when all are done or streaming, `running` otherwise. A database is
//! never `syncing` or `done` before its initial copy finished (the state is only moved there
//! after the copy committed). When no pgferry process runs, a database left `running` is shown
//! as `failed` with the reason, since nothing is moving it forward.

use super::store::{DatabaseRow, MigrationRow, Store, StoreError};
use serde_json::{json, Value};
use tokio_postgres::Client;

#[derive(Debug, Clone)]
pub struct StatusReport {
    pub migration: MigrationRow,
    pub databases: Vec<DatabaseRow>,
    /// A migrate process holds the run lock.
    pub running: bool,
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
                if !self.running && d.status == "running" {
                    d.status = "failed".into();
                    d.error.get_or_insert_with(|| INTERRUPTED.into());
                }
                d
            })
            .collect()
    }

    /// The overall (status, error).
    pub fn overall(&self) -> (String, Option<String>) {
        let dbs = self.effective_databases();
        let failed: Vec<&str> = dbs
            .iter()
            .filter(|d| d.status == "failed")
            .map(|d| d.dbname.as_str())
            .collect();
        if !failed.is_empty() {
            return (
                "failed".into(),
                Some(format!("failed databases: {}", failed.join(", "))),
            );
        }
        if dbs.is_empty() {
            return (
                if self.running { "running" } else { "done" }.into(),
                self.migration.error.clone(),
            );
        }
        if dbs.iter().all(|d| d.status == "done") {
            ("done".into(), None)
        } else if dbs
            .iter()
            .all(|d| d.status == "done" || d.status == "syncing")
        {
            ("syncing".into(), None)
        } else {
            ("running".into(), None)
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
                    "slot_retained_bytes": d.slot_retained_bytes,
                    "slot_wal_status": d.slot_wal_status,
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
        let mut out = format!(
            "migration {} from {} ({})\n\nSTATUS   METHOD  ERROR\n{:<8} {:<7} {}\n\n",
            self.migration.id,
            self.migration.source,
            if self.running {
                "a pgferry process is running"
            } else {
                "no pgferry process is running"
            },
            status,
            "",
            error.unwrap_or_else(|| "-".into())
        );
        let dbs = self.effective_databases();
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
        let retaining: Vec<&DatabaseRow> = dbs
            .iter()
            .filter(|d| d.slot_retained_bytes.is_some() && d.status != "done")
            .collect();
        if !retaining.is_empty() {
            out.push_str(
                "\nWAL retained on the source by the replication slot (at the last report):\n",
            );
            for d in retaining {
                out.push_str(&format!(
                    "  {}: {} bytes{}\n",
                    d.dbname,
                    d.slot_retained_bytes.unwrap_or(0),
                    d.slot_wal_status
                        .as_deref()
                        .map(|s| format!(" (wal_status {s})"))
                        .unwrap_or_default()
                ));
            }
        }
        let missing: Vec<&DatabaseRow> = dbs
            .iter()
            .filter(|d| !d.not_replicated.is_empty())
            .collect();
        if !missing.is_empty() {
            out.push_str(
                "\nnot replicated (created on the source after the start, or removed from the \
                 publication because they lost their replica identity):\n",
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
        out
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
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(name: &str, status: &str, method: &str) -> DatabaseRow {
        DatabaseRow {
            dbname: name.into(),
            method: method.into(),
            method_reason: None,
            phase: "copy".into(),
            status: status.into(),
            error: None,
            lag_bytes: None,
            tables_done: 1,
            tables_total: 2,
            created_db: true,
            not_replicated: Vec::new(),
            slot_retained_bytes: None,
            slot_wal_status: None,
        }
    }

    fn report(dbs: Vec<DatabaseRow>, running: bool) -> StatusReport {
        StatusReport {
            migration: MigrationRow {
                id: "m".into(),
                source: "u@h:5432/postgres".into(),
                source_fingerprint: "f".into(),
                status: "running".into(),
                error: None,
                stop_lag: None,
                options: json!({}),
            },
            databases: dbs,
            running,
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
    }

    #[test]
    fn not_replicated_tables_and_retained_wal_are_shown() {
        let mut b = db("b", "syncing", "replication");
        b.not_replicated = vec!["public.late".into()];
        b.slot_retained_bytes = Some(123456);
        b.slot_wal_status = Some("reserved".into());
        let r = report(vec![db("a", "done", "pg_dump"), b], true);
        let v = r.to_json();
        assert_eq!(v["migration_detail"][1]["not_replicated"][0], "public.late");
        assert_eq!(v["migration_detail"][1]["slot_retained_bytes"], 123456);
        let table = r.to_table();
        assert!(table.contains("  b: public.late"), "{table}");
        assert!(
            table.contains("  b: 123456 bytes (wal_status reserved)"),
            "{table}"
        );
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
