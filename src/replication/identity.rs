//! The replica identity rule, as the server applies it.
//!
//! A table in a publication that publishes UPDATE and DELETE must have a usable replica
//! identity, or PostgreSQL refuses those statements *on the source* ("cannot update table ...
//! because it does not have a replica identity and publishes updates"). The server's own rule
//! (relcache's choice of the replica identity index, then the check made before each UPDATE
//! or DELETE) is:
//!
//! | `relreplident` | usable when                                                               |
//! |----------------|---------------------------------------------------------------------------|
//! | `f` (FULL)     | always                                                                    |
//! | `i` (INDEX)    | the index marked `indisreplident` exists and is valid, ready, live, unique, immediate and not partial |
//! | `d` (DEFAULT)  | the table has a primary key that is valid, immediate (not DEFERRABLE) and not partial |
//! | `n` (NOTHING)  | never                                                                     |
//!
//! A DEFERRABLE primary key is therefore *not* an identity, nor is an identity index that was
//! dropped or left invalid by a failed `CREATE INDEX CONCURRENTLY`.
//!
//! The check runs on the relation a row lives in: for a partitioned table that is each leaf
//! partition, whatever the publication names (the root). So every leaf is checked and
//! reported by its own name, with the root it is published (and filtered) through.
//!
//! [`identity_gap_sql`] is this rule as one SQL expression; it is used both by the checks made
//! from Rust here and by the guard that pgferry installs on the source during streaming
//! (see [`super::guard`]), so the two can never disagree.

use crate::copy::TableFilter;
use crate::quote::qualified;
use std::fmt;
use thiserror::Error;
use tokio_postgres::Client;

/// Why a table has no usable replica identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityGap {
    /// `REPLICA IDENTITY NOTHING`.
    Nothing,
    /// `REPLICA IDENTITY DEFAULT` and no primary key.
    NoPrimaryKey,
    /// `REPLICA IDENTITY DEFAULT` and a DEFERRABLE primary key, which the server does not use.
    DeferrablePrimaryKey,
    /// `REPLICA IDENTITY USING INDEX` whose index is gone, invalid, partial or deferrable.
    IndexNotUsable,
}

impl IdentityGap {
    /// The one-letter code [`identity_gap_sql`] returns.
    pub fn from_code(code: &str) -> Option<IdentityGap> {
        match code {
            "n" => Some(IdentityGap::Nothing),
            "k" => Some(IdentityGap::NoPrimaryKey),
            "d" => Some(IdentityGap::DeferrablePrimaryKey),
            "i" => Some(IdentityGap::IndexNotUsable),
            _ => None,
        }
    }
}

impl fmt::Display for IdentityGap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdentityGap::Nothing => "REPLICA IDENTITY NOTHING",
            IdentityGap::NoPrimaryKey => "no primary key",
            IdentityGap::DeferrablePrimaryKey => {
                "its primary key is DEFERRABLE, which PostgreSQL does not use as replica identity"
            }
            IdentityGap::IndexNotUsable => {
                "its REPLICA IDENTITY index is missing or not usable (dropped, invalid, partial or deferrable)"
            }
        })
    }
}

/// One table (a plain table or a leaf partition) without a usable replica identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingIdentity {
    /// The table the application writes to (schema-qualified, quoted).
    pub table: String,
    /// The table it is published and filtered as: itself, or the root of its partition tree.
    pub root: String,
    pub gap: IdentityGap,
}

impl fmt::Display for MissingIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.table == self.root {
            write!(f, "{} ({})", self.table, self.gap)
        } else {
            write!(
                f,
                "{} (partition of {}: {})",
                self.table, self.root, self.gap
            )
        }
    }
}

#[derive(Debug, Error)]
#[error("source: looking for tables without a usable replica identity: {0}")]
pub struct IdentityQueryError(#[source] pub tokio_postgres::Error);

/// The rule as an SQL expression over the `pg_class` row aliased `alias` (a table that holds
/// rows: plain table or leaf partition): NULL when the table has a usable replica identity,
/// else one of `n` (NOTHING), `k` (no primary key), `d` (deferrable primary key), `i` (identity
/// index not usable). Names only `pg_catalog` objects, qualified, so it is safe in a function
/// with any search_path.
pub fn identity_gap_sql(alias: &str) -> String {
    format!(
        "CASE {a}.relreplident \
           WHEN 'f' THEN NULL \
           WHEN 'n' THEN 'n' \
           WHEN 'i' THEN CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_index x \
                 WHERE x.indrelid = {a}.oid AND x.indisreplident AND x.indisvalid AND x.indisready \
                   AND x.indislive AND x.indisunique AND x.indimmediate AND x.indpred IS NULL) \
               THEN NULL ELSE 'i' END \
           ELSE CASE \
               WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_index x \
                 WHERE x.indrelid = {a}.oid AND x.indisprimary AND x.indisvalid AND x.indisready \
                   AND x.indislive AND x.indimmediate AND x.indpred IS NULL) THEN NULL \
               WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_index x \
                 WHERE x.indrelid = {a}.oid AND x.indisprimary AND NOT x.indimmediate) THEN 'd' \
               ELSE 'k' END \
         END",
        a = alias
    )
}

/// The user's tables with the leaves that hold their rows: rows `(leaf oid, top oid)` where
/// `top` is a plain table or the root of a partition tree (what a FOR TABLE list names and a
/// table filter matches) and `leaf` a table holding rows (the top itself, or a leaf
/// partition). Written with pg_inherits so that it works from PostgreSQL 10.
pub const TREE_CTE: &str = "WITH RECURSIVE tree(leaf, top) AS ( \
       SELECT c.oid, c.oid FROM pg_catalog.pg_class c \
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
       WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p' AND NOT c.relispartition \
         AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgferry') \
         AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
       UNION ALL \
       SELECT i.inhrelid, t.top FROM tree t \
       JOIN pg_catalog.pg_inherits i ON i.inhparent = t.leaf \
       JOIN pg_catalog.pg_class k ON k.oid = i.inhrelid AND k.relispartition) ";

/// Every table that would make the source refuse UPDATE/DELETE once published, among the
/// tables `filter` selects (matched on the published name: the root for partitions). Ordered
/// by root, then table.
pub async fn missing_identity(
    client: &Client,
    filter: &TableFilter,
) -> Result<Vec<MissingIdentity>, IdentityQueryError> {
    let sql = format!(
        "{TREE_CTE} \
         SELECT tn.nspname::text, tc.relname::text, ln.nspname::text, lc.relname::text, gap \
         FROM (SELECT t.*, {gap} AS gap FROM tree t \
               JOIN pg_catalog.pg_class lc ON lc.oid = t.leaf \
               WHERE lc.relkind = 'r' AND lc.relpersistence = 'p') g \
         JOIN pg_catalog.pg_class lc ON lc.oid = g.leaf \
         JOIN pg_catalog.pg_namespace ln ON ln.oid = lc.relnamespace \
         JOIN pg_catalog.pg_class tc ON tc.oid = g.top \
         JOIN pg_catalog.pg_namespace tn ON tn.oid = tc.relnamespace \
         WHERE gap IS NOT NULL \
         ORDER BY 1, 2, 3, 4",
        gap = identity_gap_sql("lc")
    );
    let rows = client.query(&sql, &[]).await.map_err(IdentityQueryError)?;
    let mut out = Vec::new();
    for row in &rows {
        let (root_schema, root_name): (&str, &str) = (row.get(0), row.get(1));
        if !filter.matches(root_schema, root_name) {
            continue;
        }
        let code: &str = row.get(4);
        // The SQL returns only the four codes; anything else would be a bug here, reported as
        // the most conservative gap rather than a panic.
        let gap = IdentityGap::from_code(code).unwrap_or(IdentityGap::IndexNotUsable);
        out.push(MissingIdentity {
            table: qualified(row.get(2), row.get(3)),
            root: qualified(root_schema, root_name),
            gap,
        });
    }
    Ok(out)
}

/// The tables and what the user can do about them, for preflight, `--validate` and the
/// refusal of `clone --follow`.
pub fn describe_choices(tables: &[MissingIdentity]) -> String {
    let listed: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
    let mut roots: Vec<&str> = tables.iter().map(|t| t.root.as_str()).collect();
    roots.dedup();
    format!(
        "these tables have no usable replica identity, so publishing them would make UPDATE and \
         DELETE fail on the source: {}. Choices: give each a usable identity (a non-deferrable \
         primary key, or REPLICA IDENTITY USING INDEX on a valid unique non-deferrable index); \
         or rerun with --replica-identity-full to set REPLICA IDENTITY FULL on exactly these \
         tables (this changes the source; UPDATE and DELETE on them then log whole old rows); \
         or leave them out with --skip-table {}",
        listed.join(", "),
        roots.join(" --skip-table ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_texts() {
        assert_eq!(
            IdentityGap::from_code("d"),
            Some(IdentityGap::DeferrablePrimaryKey)
        );
        assert_eq!(IdentityGap::from_code("x"), None);
        let leaf = MissingIdentity {
            table: "public.p_2".into(),
            root: "public.p".into(),
            gap: IdentityGap::NoPrimaryKey,
        };
        assert_eq!(
            leaf.to_string(),
            "public.p_2 (partition of public.p: no primary key)"
        );
        let text = describe_choices(&[
            leaf.clone(),
            MissingIdentity {
                table: "public.p_3".into(),
                root: "public.p".into(),
                gap: IdentityGap::Nothing,
            },
            MissingIdentity {
                table: "public.a".into(),
                root: "public.a".into(),
                gap: IdentityGap::DeferrablePrimaryKey,
            },
        ]);
        assert!(
            text.contains("--skip-table public.p --skip-table public.a"),
            "{text}"
        );
        assert!(text.contains("--replica-identity-full"), "{text}");
        assert!(text.contains("public.p_3 (partition of public.p: REPLICA IDENTITY NOTHING)"));
    }

    #[test]
    fn the_rule_names_every_condition() {
        let sql = identity_gap_sql("c");
        for needle in [
            "c.relreplident",
            "indisreplident",
            "indisvalid",
            "indisready",
            "indimmediate",
            "indpred IS NULL",
            "indisprimary",
        ] {
            assert!(sql.contains(needle), "{needle} missing from {sql}");
        }
    }
}
