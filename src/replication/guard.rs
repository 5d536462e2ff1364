//! Tables that appear or change on the source while a live migration runs.
//!
//! The application keeps running DDL during a migration that may last days. Two things could
//! make pgferry's publication refuse the application's own writes on the source:
//!
//! 1. **A new table without a usable replica identity.** With `FOR ALL TABLES` (or `FOR
//!    TABLES IN SCHEMA`) it would be published the moment it is created, and its first UPDATE
//!    would fail. pgferry therefore always publishes an **explicit list** (`FOR TABLE ...`),
//!    for superusers too: a table created after the start is never published implicitly. It
//!    is not replicated either (its rows were not copied, and the target has no such table):
//!    pgferry lists it by name in the log and in `status` ([`not_published`]), so that nothing
//!    is left out in silence. Copy it afterwards, or start the database again.
//! 2. **A published table that loses its identity** (`ALTER TABLE ... REPLICA IDENTITY
//!    NOTHING`, a dropped primary key or identity index, a partition without one attached to a
//!    published root). The only race-free answer is to act in the same transaction as the
//!    DDL, before any UPDATE can see the table: when the source user is a superuser, pgferry
//!    installs an event trigger (`ddl_command_end`) whose function removes every published
//!    table that no longer passes the server's rule ([`super::identity`]) from the
//!    publication, and warns the session that ran the DDL. The application's DDL itself is
//!    never refused: the function catches its own errors. The table is then reported as not
//!    replicated like a new one.
//!
//!    Event triggers need a superuser. Without one, pgferry checks the same rule every few
//!    seconds while streaming ([`enforce`]) and removes such tables from a publication it owns;
//!    between the DDL and that check the application's UPDATEs on that one table can fail.
//!    With aiven_extras the publication belongs to the extension's owner and pgferry can only
//!    report the table. The README says so.
//!
//! The objects: schema `pgferry` in the source database (left out of every copy and
//! comparison), function `pgferry.<guard>()`, event trigger `<guard>`, where `<guard>` is
//! [`guard_name`] of the publication. [`remove`] drops them with the publication (cutover,
//! cleanup, an interrupted copy), and the schema too when nothing else is in it.

use super::identity::{identity_gap_sql, TREE_CTE};
use crate::copy::TableFilter;
use crate::pgerror::SqlState;
use crate::quote::{qualified, quote_ident, quote_literal};
use md5::{Digest, Md5};
use thiserror::Error;
use tokio_postgres::Client;

#[derive(Debug, Error)]
#[error("source: {what}: {source}")]
pub struct GuardError {
    what: &'static str,
    #[source]
    source: tokio_postgres::Error,
}

impl GuardError {
    pub fn is_transient(&self) -> bool {
        crate::pgerror::is_transient(self.source.code())
    }
}

fn err(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> GuardError {
    move |source| GuardError { what, source }
}

/// The event trigger's (and its function's) name for `publication`: `<publication
/// without _pub>_guard`, or `pgferry_<md5>_guard` when that would not fit in 63 bytes.
pub fn guard_name(publication: &str) -> String {
    let base = publication.strip_suffix("_pub").unwrap_or(publication);
    let name = format!("{base}_guard");
    if name.len() <= 63 {
        return name;
    }
    let hex: String = Md5::digest(publication.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("pgferry_{hex}_guard")
}

/// Rows `(published, leaf, gap)`, one per published relation: relations listed in
/// `publication` (a plain table, a partition root, or a leaf partition listed on its own) that
/// hold, or have a partition holding, rows without a usable replica identity (names
/// schema-qualified and quoted; `leaf` is the first such table).
fn unsafe_published_sql(publication: &str) -> String {
    format!(
        "{TREE_CTE} \
         SELECT DISTINCT ON (s.top) s.top, s.leaf, s.gap FROM ( \
         SELECT pg_catalog.format('%I.%I', pn.nspname, pc.relname) AS top, \
                pg_catalog.format('%I.%I', ln.nspname, lc.relname) AS leaf, g.gap \
         FROM (SELECT t.*, {gap} AS gap FROM tree t \
               JOIN pg_catalog.pg_class lc ON lc.oid = t.leaf WHERE lc.relkind = 'r') g \
         JOIN pg_catalog.pg_publication_rel pr ON pr.prrelid IN (g.top, g.leaf) \
         JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid AND p.pubname = {name} \
         JOIN pg_catalog.pg_class pc ON pc.oid = pr.prrelid \
         JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace \
         JOIN pg_catalog.pg_class lc ON lc.oid = g.leaf \
         JOIN pg_catalog.pg_namespace ln ON ln.oid = lc.relnamespace \
         WHERE g.gap IS NOT NULL) s ORDER BY s.top, s.leaf",
        gap = identity_gap_sql("lc"),
        name = quote_literal(publication)
    )
}

/// Installs the event trigger and its function for `publication` (the session's user must be
/// a superuser; the caller checks). Replaces leftovers of an earlier run.
pub async fn install(client: &Client, publication: &str) -> Result<(), GuardError> {
    remove(client, publication).await?;
    let guard = quote_ident(&guard_name(publication));
    let name = quote_literal(publication);
    let sql = format!(
        "{ensure_schema}; \
         CREATE FUNCTION pgferry.{guard}() RETURNS event_trigger LANGUAGE plpgsql \
           SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $pgferry_guard$ \
         DECLARE r record; \
         BEGIN \
           FOR r IN {unsafe_sql} LOOP \
             BEGIN \
               EXECUTE pg_catalog.format('ALTER PUBLICATION %I DROP TABLE %s', {name}, r.top); \
               RAISE WARNING 'pgferry: % has no usable replica identity any more (%): it was removed from publication % so that UPDATE and DELETE on it keep working; its changes are no longer replicated', r.top, r.leaf, {name}; \
             EXCEPTION WHEN OTHERS THEN \
               RAISE WARNING 'pgferry: could not remove % from publication %: %', r.top, {name}, SQLERRM; \
             END; \
           END LOOP; \
         EXCEPTION WHEN OTHERS THEN \
           RAISE WARNING 'pgferry: replica identity guard: %', SQLERRM; \
         END $pgferry_guard$; \
         CREATE EVENT TRIGGER {guard} ON ddl_command_end \
           WHEN TAG IN ('ALTER TABLE', 'CREATE TABLE', 'DROP INDEX', 'ALTER INDEX') \
           EXECUTE PROCEDURE pgferry.{guard}();",
        unsafe_sql = unsafe_published_sql(publication),
        ensure_schema = crate::state::ENSURE_SCHEMA_SQL,
    );
    client
        .batch_execute(&sql)
        .await
        .map_err(err("installing the replica identity guard (event trigger)"))
}

/// Drops the event trigger and function of `publication` if they exist, and schema `pgferry`
/// of the source database if nothing else is in it.
pub async fn remove(client: &Client, publication: &str) -> Result<(), GuardError> {
    let guard = guard_name(publication);
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger WHERE evtname = $1), \
                    EXISTS (SELECT 1 FROM pg_catalog.pg_proc p \
                            JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
                            WHERE n.nspname = 'pgferry' AND p.proname = $1)",
            &[&guard],
        )
        .await
        .map_err(err("looking for the replica identity guard"))?;
    let (trigger, function): (bool, bool) = (row.get(0), row.get(1));
    if trigger {
        client
            .batch_execute(&format!("DROP EVENT TRIGGER {}", quote_ident(&guard)))
            .await
            .map_err(err("dropping the replica identity guard"))?;
    }
    if function {
        client
            .batch_execute(&format!(
                "DROP FUNCTION pgferry.{}(); \
                 DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
                     WHERE d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass \
                       AND d.refobjid = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'pgferry')) \
                   THEN DROP SCHEMA IF EXISTS pgferry; END IF; END$$",
                quote_ident(&guard)
            ))
            .await
            .map_err(err("dropping the replica identity guard's function"))?;
    }
    Ok(())
}

/// What [`enforce`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Enforced {
    /// Tables removed from the publication now (`table (leaf without identity: reason)`).
    pub removed: Vec<String>,
    /// Published tables without identity that this user may not remove (not the
    /// publication's owner, e.g. aiven_extras): the application's UPDATEs on them fail.
    pub stuck: Vec<String>,
}

/// Removes from `publication` every listed table that fails the replica identity rule (the
/// backstop of the event trigger, and the only protection when there is none).
pub async fn enforce(client: &Client, publication: &str) -> Result<Enforced, GuardError> {
    let rows = client
        .query(&unsafe_published_sql(publication), &[])
        .await
        .map_err(err("looking for published tables without replica identity"))?;
    let mut out = Enforced::default();
    let mut seen: Vec<String> = Vec::new();
    for row in &rows {
        let (top, leaf, gap): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        if seen.contains(&top) {
            continue;
        }
        seen.push(top.clone());
        let reason = super::identity::IdentityGap::from_code(&gap)
            .map(|g| g.to_string())
            .unwrap_or(gap);
        let what = if top == leaf {
            format!("{top} ({reason})")
        } else {
            format!("{top} (table {leaf}: {reason})")
        };
        let result = client
            .batch_execute(&format!(
                "ALTER PUBLICATION {} DROP TABLE {top}",
                quote_ident(publication)
            ))
            .await;
        match result {
            Ok(()) => {
                tracing::warn!(
                    "{what} has no usable replica identity any more: removed from publication \
                     {publication} so that the application's UPDATE and DELETE on it keep \
                     working; its changes are no longer replicated"
                );
                out.removed.push(what);
            }
            Err(e)
                if e.code()
                    .is_some_and(|c| *c == SqlState::INSUFFICIENT_PRIVILEGE) =>
            {
                tracing::warn!(
                    "{what} has no usable replica identity but is in publication {publication}, \
                     which this user may not alter: UPDATE and DELETE on it fail on the source. \
                     Give it an identity (or REPLICA IDENTITY FULL), or remove it from the \
                     publication as its owner"
                );
                out.stuck.push(what);
            }
            Err(e) => return Err(err("removing a table from the publication")(e)),
        }
    }
    Ok(out)
}

/// Adds to `publication` the tables created on the source since the start: every leaf table
/// (plain or partition) that `filter` selects, that is not published, that the migration has
/// never replicated (`known`: oids the applier has seen; a table once replicated then removed
/// by the guard stays out, since its changes in between are lost), and that has a usable
/// replica identity, as has every other leaf of its partition tree (so that adding it can
/// never make the source refuse an UPDATE). Returns the names added. A table this user may
/// not add (another role owns it) goes into `refused`, is named once in the log, and stays
/// in the not-replicated list.
///
/// The applier creates each on the target and copies it when its first change arrives
/// ([`super::schema_follow`]).
pub async fn publish_new(
    client: &Client,
    publication: &str,
    filter: &TableFilter,
    known: &std::collections::HashSet<u32>,
    refused: &mut std::collections::HashSet<u32>,
) -> Result<Vec<String>, GuardError> {
    let sql = format!(
        "{TREE_CTE}, \
         listed AS (SELECT pr.prrelid FROM pg_catalog.pg_publication_rel pr \
                    JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid \
                    WHERE p.pubname = $1 AND NOT p.puballtables AND p.pubowner = \
                          (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)), \
         leaves AS (SELECT t.top, t.leaf, {gap} AS gap FROM tree t \
                    JOIN pg_catalog.pg_class lc ON lc.oid = t.leaf \
                    WHERE lc.relkind = 'r' AND lc.relpersistence = 'p') \
         SELECT l.leaf, tn.nspname::text, tc.relname::text, \
                pg_catalog.format('%I.%I', ln.nspname, lc.relname) \
         FROM leaves l \
         JOIN pg_catalog.pg_class lc ON lc.oid = l.leaf \
         JOIN pg_catalog.pg_namespace ln ON ln.oid = lc.relnamespace \
         JOIN pg_catalog.pg_class tc ON tc.oid = l.top \
         JOIN pg_catalog.pg_namespace tn ON tn.oid = tc.relnamespace \
         WHERE EXISTS (SELECT 1 FROM listed) \
           AND l.top NOT IN (SELECT prrelid FROM listed) AND l.leaf NOT IN (SELECT prrelid FROM listed) \
           AND NOT EXISTS (SELECT 1 FROM leaves o WHERE o.top = l.top AND o.gap IS NOT NULL) \
           AND l.top NOT IN (SELECT objid FROM pg_catalog.pg_depend WHERE deptype = 'e' \
                             AND classid = 'pg_catalog.pg_class'::pg_catalog.regclass) \
         ORDER BY 2, 3, 4",
        gap = identity_gap_sql("lc")
    );
    let rows = client
        .query(&sql, &[&publication])
        .await
        .map_err(err("listing tables created since the start"))?;
    let mut added = Vec::new();
    for row in &rows {
        let (oid, schema, top, leaf): (u32, &str, &str, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if known.contains(&oid) || refused.contains(&oid) || !filter.matches(schema, top) {
            continue;
        }
        let added_now = client
            .batch_execute(&format!(
                "ALTER PUBLICATION {} ADD TABLE ONLY {leaf}",
                quote_ident(publication)
            ))
            .await;
        match added_now {
            Ok(()) => {}
            // Another role owns the table: it stays out, and is reported as not replicated.
            Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
                refused.insert(oid);
                tracing::warn!(
                    "{leaf}, created on the source while streaming, cannot be added to \
                     publication {publication} by this user ({}): it is not replicated",
                    crate::pgerror::server_message(&e)
                );
                continue;
            }
            Err(e) => return Err(err("adding a new table to the publication")(e)),
        }
        tracing::info!(
            "{leaf}, created on the source while streaming, added to publication {publication}: \
             it is created on the target and copied with its first change"
        );
        added.push(leaf);
    }
    Ok(added)
}

/// User tables (those `filter` selects) that `publication` does not replicate: a plain table
/// or a whole partition tree not listed (created after the start, or removed by the guard) by
/// its own name, and a leaf partition of a tree published leaf by leaf that is not listed (a
/// partition created later) by the leaf's name. Empty for a FOR ALL TABLES publication (an
/// older run's).
pub async fn not_published(
    client: &Client,
    publication: &str,
    filter: &TableFilter,
) -> Result<Vec<String>, GuardError> {
    let sql = format!(
        "{TREE_CTE}, \
         listed AS (SELECT pr.prrelid FROM pg_catalog.pg_publication_rel pr \
                    JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid \
                    WHERE p.pubname = $1 AND NOT p.puballtables) \
         SELECT DISTINCT tn.nspname::text, tc.relname::text, \
                CASE WHEN EXISTS (SELECT 1 FROM tree t2 JOIN listed ON listed.prrelid = t2.leaf \
                                  WHERE t2.top = t.top) \
                     THEN pg_catalog.format('%I.%I', ln.nspname, lc.relname) END \
         FROM tree t \
         JOIN pg_catalog.pg_class lc ON lc.oid = t.leaf \
         JOIN pg_catalog.pg_namespace ln ON ln.oid = lc.relnamespace \
         JOIN pg_catalog.pg_class tc ON tc.oid = t.top \
         JOIN pg_catalog.pg_namespace tn ON tn.oid = tc.relnamespace \
         WHERE lc.relkind = 'r' \
           AND t.top NOT IN (SELECT prrelid FROM listed) AND t.leaf NOT IN (SELECT prrelid FROM listed) \
           AND EXISTS (SELECT 1 FROM pg_catalog.pg_publication p \
                       WHERE p.pubname = $1 AND NOT p.puballtables) \
           AND t.top NOT IN (SELECT objid FROM pg_catalog.pg_depend WHERE deptype = 'e' \
                             AND classid = 'pg_catalog.pg_class'::pg_catalog.regclass) \
         ORDER BY 1, 2, 3"
    );
    let rows = client
        .query(&sql, &[&publication])
        .await
        .map_err(err("listing tables that are not replicated"))?;
    let mut out: Vec<String> = Vec::new();
    for row in &rows {
        let (schema, name): (&str, &str) = (row.get(0), row.get(1));
        if !filter.matches(schema, name) {
            continue;
        }
        let entry = row
            .get::<_, Option<String>>(2)
            .unwrap_or_else(|| qualified(schema, name));
        if out.last() != Some(&entry) {
            out.push(entry);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_names_fit() {
        assert_eq!(guard_name("pgferry_shop_pub"), "pgferry_shop_guard");
        let long = format!("pgferry_{}_pub", "a".repeat(50));
        let name = guard_name(&long);
        assert!(name.len() <= 63 && name.starts_with("pgferry_") && name.ends_with("_guard"));
        assert_ne!(name, guard_name(&format!("pgferry_{}_pub", "b".repeat(50))));
    }
}
