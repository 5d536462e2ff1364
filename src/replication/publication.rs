//! The source side of a live migration: our publication, the names of our publication and slot
//! (the slot itself is [`super::slot`]'s), and the tables that would break the source's own
//! writes once published.
//!
//! A table in a publication that publishes UPDATE and DELETE must have a usable replica
//! identity, or PostgreSQL refuses those statements *on the source* ("cannot update table ...
//! because it does not have a replica identity"). So before creating anything we look for such
//! tables with the server's own rule ([`super::identity`]) and refuse with their list, unless
//! the user asked for `REPLICA IDENTITY FULL` on exactly them.
//!
//! The publication always lists its tables (`FOR TABLE`), for superusers too, so that a table
//! created later is never published implicitly; see [`super::guard`] for tables that appear or
//! lose their identity while streaming.

use super::guard::{self, GuardError};
use super::identity::{
    describe_choices, identity_gap_sql, missing_identity, IdentityQueryError, MissingIdentity,
    TREE_CTE,
};
use crate::copy::TableFilter;
use crate::pgerror::SqlState;
use crate::quote::{qualified, quote_ident};
use md5::{Digest, Md5};
use thiserror::Error;
use tokio_postgres::Client;

/// The two source objects pgferry creates for one database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectNames {
    pub publication: String,
    pub slot: String,
}

/// Longest `<db>` part kept as is: `pgferry_` + part + `_slot` must fit in 63 bytes.
const MAX_PLAIN_PART: usize = 63 - "pgferry__slot".len();

/// `pgferry_<db>_pub` / `pgferry_<db>_slot`, where `<db>` is the database name when it is made
/// of `[a-z0-9_]` and short enough (slot names allow nothing else), else the md5 of the name
/// in hex — stable across runs, so a rerun finds the objects again.
pub fn object_names(database: &str) -> ObjectNames {
    names_for(database, false)
}

/// [`object_names`], or with `mangle` (`-m/--mangle`) always the md5 form, so the database
/// name does not appear on the source at all.
pub fn names_for(database: &str, mangle: bool) -> ObjectNames {
    let plain = !mangle
        && !database.is_empty()
        && database.len() <= MAX_PLAIN_PART
        && database
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    let part = if plain {
        database.to_owned()
    } else {
        Md5::digest(database.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    ObjectNames {
        publication: format!("pgferry_{part}_pub"),
        slot: format!("pgferry_{part}_slot"),
    }
}

#[derive(Debug, Error)]
pub enum PublicationError {
    #[error("source: {what}: {source}")]
    Source {
        what: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{}. Nothing was created on the source.", describe_choices(.tables))]
    NoReplicaIdentity { tables: Vec<MissingIdentity> },
    #[error(transparent)]
    Identity(#[from] IdentityQueryError),
    #[error(transparent)]
    Guard(#[from] GuardError),
    #[error("{0}")]
    Capture(String),
}

fn source_err(what: &str) -> impl FnOnce(tokio_postgres::Error) -> PublicationError + '_ {
    move |source| PublicationError::Source {
        what: what.to_owned(),
        source,
    }
}

/// Tables whose UPDATE/DELETE would fail once published, each with the reason (see
/// [`super::identity`]): `public.a (its primary key is DEFERRABLE, ...)`, `public.p_2
/// (partition of public.p: no primary key)`.
pub async fn tables_without_identity(
    client: &Client,
    filter: &TableFilter,
) -> Result<Vec<String>, PublicationError> {
    Ok(missing_identity(client, filter)
        .await?
        .iter()
        .map(|t| t.to_string())
        .collect())
}

/// Refuses (changing nothing) when some tables lack a usable replica identity, or with
/// `set_full` gives exactly those tables (leaf partitions by their own name)
/// `REPLICA IDENTITY FULL` and returns their names so the caller can say so loudly.
pub async fn check_replica_identity(
    client: &Client,
    set_full: bool,
    filter: &TableFilter,
) -> Result<Vec<String>, PublicationError> {
    let tables = missing_identity(client, filter).await?;
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    if !set_full {
        return Err(PublicationError::NoReplicaIdentity { tables });
    }
    for t in &tables {
        tracing::warn!(
            "changing the SOURCE: ALTER TABLE {} REPLICA IDENTITY FULL ({}; UPDATE and DELETE on \
             it now log the whole old row)",
            t.table,
            t.gap
        );
        client
            .batch_execute(&format!("ALTER TABLE {} REPLICA IDENTITY FULL", t.table))
            .await
            .map_err(source_err("setting REPLICA IDENTITY FULL"))?;
    }
    Ok(tables.into_iter().map(|t| t.table).collect())
}

/// Whether the session's user is a superuser (FOR ALL TABLES needs it).
async fn is_superuser(client: &Client) -> Result<bool, PublicationError> {
    let row = client
        .query_one(
            "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(source_err("reading the user's attributes"))?;
    Ok(row.get(0))
}

/// Whether our publication exists.
pub async fn publication_exists(client: &Client, name: &str) -> Result<bool, PublicationError> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1)",
            &[&name],
        )
        .await
        .map_err(source_err("looking for the publication"))?;
    Ok(row.get(0))
}

/// The schema of the `aiven_extras` extension in this database, if installed: it offers
/// publication functions (SECURITY DEFINER) to users who are not superusers.
async fn aiven_extras_schema(client: &Client) -> Result<Option<String>, PublicationError> {
    let row = client
        .query_opt(
            "SELECT n.nspname::text FROM pg_catalog.pg_extension e \
             JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace \
             WHERE e.extname = 'aiven_extras'",
            &[],
        )
        .await
        .map_err(source_err("looking for the aiven_extras extension"))?;
    Ok(row.map(|r| r.get(0)))
}

/// What aiven_extras' functions are asked to publish (a plain CREATE PUBLICATION publishes
/// all four by default).
const AIVEN_PUBLISH: &str = "INSERT,UPDATE,DELETE,TRUNCATE";

/// Creates the publication (replacing a leftover one of ours, which cannot be in use without
/// its slot) `FOR TABLE` with every user table the filter selects (roots of partition trees
/// included, their partitions follow) — for superusers too: a table created later must never
/// be published implicitly (see [`super::guard`]). On PG 13+, changes to partitions are
/// published as changes to the root, so the target needs no identical partition layout.
/// With a table filter (`--with-table`/`--skip-table`) the publication lists exactly the tables
/// that are copied: changes to a table that was not copied must not reach the target.
///
/// A superuser also gets the replica identity guard (an event trigger, [`guard::install`]).
/// Then, whoever the user, the listed tables are checked once more ([`guard::enforce`]): a
/// table that lost its identity between the check and now is not left published.
///
/// A user who is not a superuser but has the `aiven_extras` extension (Aiven's managed
/// PostgreSQL) gets the publication through its function `pg_create_publication` with the
/// same list, as aiven-db-migrate does; it cannot ask for `publish_via_partition_root`, so
/// changes to partitions arrive as changes to the partitions themselves, which the target has
/// too (it was cloned from this database).
pub async fn create_publication(
    client: &Client,
    name: &str,
    filter: &TableFilter,
) -> Result<(), PublicationError> {
    if publication_exists(client, name).await? {
        drop_publication(client, name).await?;
    }
    let superuser = is_superuser(client).await?;
    let version = crate::compat::server_version_num(client)
        .await
        .map_err(source_err("reading the server version"))?;
    let tables = tables_to_publish(client, filter, version >= 130000).await?;
    // No table needs no help: anyone may create an empty publication.
    let aiven = if !superuser && !tables.is_empty() {
        aiven_extras_schema(client).await?
    } else {
        None
    };
    if let Some(schema) = aiven {
        tracing::info!(
            "creating publication {name} through {schema}'s functions (aiven_extras; not a superuser)"
        );
        client
            .execute(
                &format!(
                    "SELECT 1 FROM {}.pg_create_publication($1, $2, VARIADIC $3::text[])",
                    quote_ident(&schema)
                ),
                &[&name, &AIVEN_PUBLISH, &tables],
            )
            .await
            .map_err(source_err("creating the publication with aiven_extras"))?;
    } else {
        // A publication with no table is valid; tables created later are not replicated.
        let target = if tables.is_empty() {
            String::new()
        } else {
            format!("FOR TABLE {}", tables.join(", "))
        };
        let with = if version >= 130000 {
            " WITH (publish_via_partition_root = true)"
        } else {
            ""
        };
        client
            .batch_execute(&format!(
                "CREATE PUBLICATION {} {target}{with}",
                quote_ident(name)
            ))
            .await
            .map_err(source_err("creating the publication"))?;
    }
    if superuser {
        guard::install(client, name).await?;
    }
    guard::enforce(client, name).await?;
    Ok(())
}

/// The FOR TABLE list: plain tables, and for each partition tree its root when changes can
/// be published through it (PostgreSQL 13+, and the root has a usable replica identity, so
/// that the root's relation message carries the key the leaves log), else its leaf partitions
/// one by one (their changes then arrive under their own names and identities; the target has
/// the same partitions, cloned from this database).
async fn tables_to_publish(
    client: &Client,
    filter: &TableFilter,
    via_root: bool,
) -> Result<Vec<String>, PublicationError> {
    let sql = format!(
        "{TREE_CTE} \
         SELECT tn.nspname::text, tc.relname::text, ln.nspname::text, lc.relname::text, \
                tc.relkind = 'p' AS partitioned, ({root_gap}) IS NULL AS root_has_identity \
         FROM tree t \
         JOIN pg_catalog.pg_class lc ON lc.oid = t.leaf \
         JOIN pg_catalog.pg_namespace ln ON ln.oid = lc.relnamespace \
         JOIN pg_catalog.pg_class tc ON tc.oid = t.top \
         JOIN pg_catalog.pg_namespace tn ON tn.oid = tc.relnamespace \
         WHERE lc.relkind = 'r' OR t.leaf = t.top \
         ORDER BY 1, 2, 3, 4",
        root_gap = identity_gap_sql("tc")
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(source_err("listing the tables to publish"))?;
    let mut out: Vec<String> = Vec::new();
    for row in &rows {
        let (schema, name): (&str, &str) = (row.get(0), row.get(1));
        if !filter.matches(schema, name) {
            continue;
        }
        let (partitioned, root_ok): (bool, bool) = (row.get(4), row.get(5));
        let entry = if partitioned && !(via_root && root_ok) {
            let (leaf_schema, leaf): (&str, &str) = (row.get(2), row.get(3));
            if leaf_schema == schema && leaf == name {
                // A partitioned table without partitions: nothing to publish yet.
                continue;
            }
            qualified(leaf_schema, leaf)
        } else {
            qualified(schema, name)
        };
        // Rows come ordered by root: a root repeats only on consecutive rows.
        if out.last() != Some(&entry) {
            out.push(entry);
        }
    }
    Ok(out)
}

/// Drops our publication if it exists, with its replica identity guard. One made through aiven_extras belongs to the
/// extension's (superuser) owner: if this user may not drop it, that is reported as a warning
/// naming what to run, and not as a failure: a publication holds no WAL (the slot, dropped
/// separately, does).
pub async fn drop_publication(client: &Client, name: &str) -> Result<(), PublicationError> {
    // The guard and the DDL capture first: they belong to the publication and must not
    // outlive it.
    super::ddl_capture::remove(client, name)
        .await
        .map_err(|e| PublicationError::Capture(e.to_string()))?;
    guard::remove(client, name).await?;
    let result = client
        .batch_execute(&format!("DROP PUBLICATION IF EXISTS {}", quote_ident(name)))
        .await;
    match result {
        Err(e)
            if e.code()
                .is_some_and(|c| *c == SqlState::INSUFFICIENT_PRIVILEGE) =>
        {
            tracing::warn!(
                "publication {name} could not be dropped by this user (it belongs to another \
                 role, e.g. created through aiven_extras): it holds no WAL, but drop it as its \
                 owner or a superuser: DROP PUBLICATION {};",
                quote_ident(name)
            );
            Ok(())
        }
        other => other.map_err(source_err("dropping the publication")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_kept() {
        let names = object_names("shop_2");
        assert_eq!(names.publication, "pgferry_shop_2_pub");
        assert_eq!(names.slot, "pgferry_shop_2_slot");
    }

    #[test]
    fn other_names_become_md5() {
        // md5("Shop-2") computed independently with `printf 'Shop-2' | md5sum`.
        let names = object_names("Shop-2");
        assert_eq!(
            names.slot,
            format!("pgferry_{}_slot", "349918a9f12e05ef2148d6089377af2a")
        );
        let long = "a".repeat(MAX_PLAIN_PART + 1);
        assert_eq!(object_names(&long).slot.len(), "pgferry__slot".len() + 32);
        assert_eq!(object_names(&"a".repeat(MAX_PLAIN_PART)).slot.len(), 63);
        assert!(object_names("").slot.starts_with("pgferry_d41d8cd9"));
        assert_eq!(
            names_for("shop", true).slot,
            format!("pgferry_{}_slot", "fb54f3c5992b96d001bb16e8e92d968d")
        );
    }
}
