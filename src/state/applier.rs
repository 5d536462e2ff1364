//! The applier's part of the state store, kept in the target database itself: the applied
//! position (`pgferry.apply_progress`) and the source relations it has seen
//! (`pgferry.apply_relations`). `replication` uses it as `replication::state`.
//!
//! The row for a slot is written in the same target transaction as the changes it covers, so
//! after a crash the target holds exactly the changes up to the stored LSN: a restart skips
//! every source transaction that ends at or before it (exactly-once apply).

use super::{APPLIER_LOCK_CLASS, ENSURE_SCHEMA_SQL};
use crate::lsn::Lsn;
use std::collections::HashMap;
use tokio_postgres::Client;

/// A relation's oid on the source (`pg_class.oid`; pgoutput's relation id).
pub type Oid = u32;

/// The progress table, created after schema `pgferry` in the same batch ([`ensure`]).
const PROGRESS_TABLE_SQL: &str = "CREATE TABLE IF NOT EXISTS pgferry.apply_progress (\
       slot text PRIMARY KEY, lsn pg_lsn NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())";

/// Upserts the row of slot `$1` with LSN `$2` (text).
pub const STORE_SQL: &str = "INSERT INTO pgferry.apply_progress AS p (slot, lsn, updated_at) \
     VALUES ($1, $2::text::pg_lsn, now()) \
     ON CONFLICT (slot) DO UPDATE SET lsn = excluded.lsn, updated_at = excluded.updated_at";

/// Takes the session-level "one applier per slot" advisory lock on `client`'s target database,
/// waiting up to `wait` for a previous holder to go. `Ok(false)`: still held after `wait`.
///
/// Why: a streaming session that ends (an error, an abandoned session) may still be
/// committing its last batch on its own connection; a new session that read the stored
/// position before that commit would apply those transactions again. Holding this lock from
/// before reading the position until the applier's connection closes makes appliers of one
/// slot take turns, so the position read is always the last one committed.
pub async fn lock_applier(
    client: &Client,
    slot: &str,
    wait: std::time::Duration,
) -> Result<bool, tokio_postgres::Error> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let got: bool = client
            .query_one(
                "SELECT pg_catalog.pg_try_advisory_lock($1, pg_catalog.hashtext($2))",
                &[&APPLIER_LOCK_CLASS, &slot],
            )
            .await?
            .get(0);
        if got || std::time::Instant::now() >= deadline {
            return Ok(got);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Creates schema `pgferry` and the progress table if missing.
pub async fn ensure(client: &Client) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!("{ENSURE_SCHEMA_SQL}; {PROGRESS_TABLE_SQL}"))
        .await
}

/// The stored position of `slot`; `None` when the table or the row does not exist.
pub async fn load(client: &Client, slot: &str) -> Result<Option<Lsn>, tokio_postgres::Error> {
    let exists = client
        .query_one(
            "SELECT to_regclass('pgferry.apply_progress') IS NOT NULL",
            &[],
        )
        .await?
        .get::<_, bool>(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT lsn::text FROM pgferry.apply_progress WHERE slot = $1",
            &[&slot],
        )
        .await?;
    Ok(row.and_then(|r| r.get::<_, String>(0).parse().ok()))
}

/// Writes the position of `slot` (in whatever transaction `client` is in).
pub async fn store(client: &Client, slot: &str, lsn: Lsn) -> Result<(), tokio_postgres::Error> {
    client
        .execute(STORE_SQL, &[&slot, &lsn.to_string()])
        .await
        .map(drop)
}

/// Drops the state tables (progress, relations) that no slot uses any more.
pub async fn drop_empty_tables(client: &Client) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(
            "DO $$BEGIN \
               IF to_regclass('pgferry.apply_progress') IS NOT NULL \
                  AND NOT EXISTS (SELECT 1 FROM pgferry.apply_progress) THEN \
                 DROP TABLE pgferry.apply_progress; END IF; \
               IF to_regclass('pgferry.apply_relations') IS NOT NULL \
                  AND NOT EXISTS (SELECT 1 FROM pgferry.apply_relations) THEN \
                 DROP TABLE pgferry.apply_relations; END IF; \
             END$$",
        )
        .await
}

/// Removes the rows of `slot` (after a cutover, or when cleaning up).
pub async fn forget(client: &Client, slot: &str) -> Result<(), tokio_postgres::Error> {
    let relations: bool = client
        .query_one(
            "SELECT to_regclass('pgferry.apply_relations') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if relations {
        client
            .execute(
                "DELETE FROM pgferry.apply_relations WHERE slot = $1",
                &[&slot],
            )
            .await?;
    }
    if load(client, slot).await?.is_none() {
        return Ok(());
    }
    client
        .execute(
            "DELETE FROM pgferry.apply_progress WHERE slot = $1",
            &[&slot],
        )
        .await
        .map(drop)
}

// ---------------------------------------------------------------------------------------------
// The source relations the applier has seen (`replication::schema_follow`).

/// Source relations the applier has seen, by oid, with the name they have on the target and,
/// for tables copied while streaming, the position of that copy.
const ENSURE_RELATIONS_SQL: &str = "CREATE TABLE IF NOT EXISTS pgferry.apply_relations (\
       slot text NOT NULL, relid oid NOT NULL, nspname text NOT NULL, relname text NOT NULL, \
       copied_at pg_lsn, PRIMARY KEY (slot, relid))";

const UPSERT_RELATION_SQL: &str = "INSERT INTO pgferry.apply_relations AS r \
       (slot, relid, nspname, relname, copied_at) VALUES ($1, $2, $3, $4, $5::text::pg_lsn) \
     ON CONFLICT (slot, relid) DO UPDATE SET nspname = excluded.nspname, \
       relname = excluded.relname, copied_at = COALESCE(excluded.copied_at, r.copied_at)";

#[derive(Debug, Clone)]
pub struct KnownRelation {
    pub schema: String,
    pub name: String,
    /// Changes from transactions that committed before this were copied with the table.
    pub copied_at: Option<Lsn>,
}

/// Reads the relations stored for `slot` (none when the table does not exist yet).
pub async fn load_relations(
    client: &Client,
    slot: &str,
) -> Result<HashMap<Oid, KnownRelation>, tokio_postgres::Error> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('pgferry.apply_relations') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(HashMap::new());
    }
    let rows = client
        .query(
            "SELECT relid, nspname, relname, copied_at::text FROM pgferry.apply_relations \
             WHERE slot = $1",
            &[&slot],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let copied: Option<String> = r.get(3);
            (
                r.get::<_, Oid>(0),
                KnownRelation {
                    schema: r.get(1),
                    name: r.get(2),
                    copied_at: copied.and_then(|t| t.parse().ok()),
                },
            )
        })
        .collect())
}

/// Creates `pgferry.apply_relations` if missing.
pub async fn ensure_relations(client: &Client) -> Result<(), tokio_postgres::Error> {
    client.batch_execute(ENSURE_RELATIONS_SQL).await
}

/// Records (or updates) relation `oid` of `slot`: its name on the target and, when it was just
/// copied, the copy's position (in whatever transaction `client` is in).
pub async fn store_relation(
    client: &Client,
    slot: &str,
    oid: Oid,
    schema: &str,
    name: &str,
    copied_at: Option<Lsn>,
) -> Result<(), tokio_postgres::Error> {
    let copied_text = copied_at.map(|l| l.to_string());
    client
        .execute(
            UPSERT_RELATION_SQL,
            &[&slot, &oid, &schema, &name, &copied_text],
        )
        .await
        .map(drop)
}

/// Records the relations of a fresh start, leaving those already recorded as they are.
pub async fn record_relations(
    client: &Client,
    slot: &str,
    oids: &[Oid],
    schemas: &[String],
    names: &[String],
) -> Result<(), tokio_postgres::Error> {
    ensure_relations(client).await?;
    client
        .execute(
            "INSERT INTO pgferry.apply_relations (slot, relid, nspname, relname) \
             SELECT $1, * FROM unnest($2::oid[], $3::text[], $4::text[]) \
             ON CONFLICT (slot, relid) DO NOTHING",
            &[&slot, &oids, &schemas, &names],
        )
        .await
        .map(drop)
}
