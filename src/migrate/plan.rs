//! Which databases and which tables a migration covers: `-f/--filtered-db`, `--databases`,
//! `--with-table` / `--skip-table` in the seed tool's three spellings (`table`,
//! `schema.table`, `db.schema.table`). Every name given must match something: a typo refuses
//! the run before it starts instead of silently copying another set. Pure functions, plus
//! [`user_tables`], the one catalog read the filters are checked against.

use crate::copy::TableFilter;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("table name {text:?}: {why} (expected table, schema.table or db.schema.table; quote names with dots or capitals: '\"My Schema\".\"T\"')")]
    BadTableName { text: String, why: &'static str },
    #[error("--databases names {} which the source does not have (or the source user may not connect to); source databases: {}", .missing.join(", "), .available.join(", "))]
    UnknownDatabases {
        missing: Vec<String>,
        available: Vec<String>,
    },
    #[error("-f/--filtered-db names {} which the source does not have; source databases: {}", .missing.join(", "), .available.join(", "))]
    UnknownFilteredDatabases {
        missing: Vec<String>,
        available: Vec<String>,
    },
    /// Per-database values (`--force-method DB=...`) naming a database not migrated.
    #[error("{} {} none of the databases to migrate ({})", .0.join(", "), if .0.len() == 1 { "names" } else { "name" }, .1.join(", "))]
    UnmatchedDatabases(Vec<String>, Vec<String>),
    /// Table filter values that match no table of the databases they apply to.
    #[error("{} {} no table of the databases to migrate ({}); nothing was created or changed", .0.join(", "), if .0.len() == 1 { "matches" } else { "match" }, .1.join(", "))]
    UnmatchedTables(Vec<String>, Vec<String>),
}

/// One `--with-table`/`--skip-table` value, split and unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// Set for `db.schema.table`: the filter applies to that database only.
    pub database: Option<String>,
    /// `None` for a bare `table`: any schema.
    pub schema: Option<String>,
    pub table: String,
}

/// Splits a possibly quoted, dot-separated name the way PostgreSQL reads identifiers:
/// `"A.b".c` is two parts; unquoted parts are folded to lower case; `""` inside quotes is a
/// quote.
fn split_identifiers(text: &str) -> Result<Vec<String>, &'static str> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = text.trim().chars().peekable();
    let mut quoted_part = false;
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted_part = true;
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            current.push('"');
                        }
                        Some('"') => break,
                        Some(other) => current.push(other),
                        None => return Err("unterminated quote"),
                    }
                }
            }
            '.' => {
                if current.is_empty() && !quoted_part {
                    return Err("empty name part");
                }
                parts.push(std::mem::take(&mut current));
                quoted_part = false;
            }
            other => current.extend(other.to_lowercase()),
        }
    }
    if current.is_empty() && !quoted_part {
        return Err("empty name part");
    }
    parts.push(current);
    Ok(parts)
}

pub fn parse_table_spec(text: &str) -> Result<TableSpec, PlanError> {
    let bad = |why| PlanError::BadTableName {
        text: text.to_owned(),
        why,
    };
    let mut parts = split_identifiers(text).map_err(bad)?;
    let spec = match parts.len() {
        1 => TableSpec {
            database: None,
            schema: None,
            table: parts.remove(0),
        },
        2 => TableSpec {
            database: None,
            table: parts.remove(1),
            schema: Some(parts.remove(0)),
        },
        3 => TableSpec {
            table: parts.remove(2),
            schema: Some(parts.remove(1)),
            database: Some(parts.remove(0)),
        },
        _ => return Err(bad("too many dots")),
    };
    Ok(spec)
}

/// Parses every value of a repeatable flag.
pub fn parse_table_specs(values: &[String]) -> Result<Vec<TableSpec>, PlanError> {
    values
        .iter()
        .filter(|v| !v.trim().is_empty())
        .map(|v| parse_table_spec(v))
        .collect()
}

/// The copy filter for database `db`: the specs without a database, plus those naming `db`.
pub fn filter_for_database(db: &str, with: &[TableSpec], skip: &[TableSpec]) -> TableFilter {
    let patterns = |specs: &[TableSpec]| -> Vec<String> {
        specs
            .iter()
            .filter(|s| s.database.as_deref().is_none_or(|d| d == db))
            .map(|s| format!("{}.{}", s.schema.as_deref().unwrap_or("*"), s.table))
            .collect()
    };
    TableFilter {
        include: patterns(with),
        exclude: patterns(skip),
    }
}

/// Does `spec` name table `schema.table` of database `db`? (`schema.*` names every table of
/// the schema.)
pub fn spec_matches(spec: &TableSpec, db: &str, schema: &str, table: &str) -> bool {
    spec.database.as_deref().is_none_or(|d| d == db)
        && spec.schema.as_deref().is_none_or(|s| s == schema)
        && (spec.table == "*" || spec.table == table)
}

/// The user tables of the connected database as (schema, name): ordinary and partitioned
/// tables outside the system schemas, what table filters can name.
pub async fn user_tables(
    client: &tokio_postgres::Client,
) -> Result<Vec<(String, String)>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname !~ '^pg_toast'",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// The databases to migrate, in the source's order: `only` (when given) or every database,
/// minus `filtered` (`-f`). `available` are the databases the source user may connect to,
/// `existing` every database of the source. A name in `only` that is not available, or in
/// `filtered` that does not exist (template0/1 always do), is an error: most likely a typo.
pub fn select_databases(
    available: &[String],
    existing: &[String],
    only: &[String],
    filtered: &[String],
) -> Result<Vec<String>, PlanError> {
    let unknown_filtered: Vec<String> = filtered
        .iter()
        .filter(|d| !d.is_empty() && !existing.contains(d))
        .filter(|d| !matches!(d.as_str(), "template0" | "template1"))
        .cloned()
        .collect();
    if !unknown_filtered.is_empty() {
        return Err(PlanError::UnknownFilteredDatabases {
            missing: unknown_filtered,
            available: existing.to_vec(),
        });
    }
    let only: Vec<&String> = only.iter().filter(|d| !d.is_empty()).collect();
    let missing: Vec<String> = only
        .iter()
        .filter(|d| !available.contains(d))
        .map(|d| d.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(PlanError::UnknownDatabases {
            missing,
            available: available.to_vec(),
        });
    }
    Ok(available
        .iter()
        .filter(|d| only.is_empty() || only.contains(d))
        .filter(|d| !filtered.contains(d))
        .cloned()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(db: Option<&str>, schema: Option<&str>, table: &str) -> TableSpec {
        TableSpec {
            database: db.map(str::to_owned),
            schema: schema.map(str::to_owned),
            table: table.to_owned(),
        }
    }

    #[test]
    fn three_spellings() {
        assert_eq!(
            parse_table_spec("spatial_ref_sys").unwrap(),
            spec(None, None, "spatial_ref_sys")
        );
        assert_eq!(
            parse_table_spec("public.t").unwrap(),
            spec(None, Some("public"), "t")
        );
        assert_eq!(
            parse_table_spec("\"Shop-2\".public.\"Orders.Old\"").unwrap(),
            spec(Some("Shop-2"), Some("public"), "Orders.Old")
        );
        assert_eq!(
            parse_table_spec("Public.T").unwrap(),
            spec(None, Some("public"), "t")
        );
        assert_eq!(
            parse_table_spec("\"a\"\"b\"").unwrap(),
            spec(None, None, "a\"b")
        );
    }

    #[test]
    fn bad_names_are_explained() {
        for text in ["a..b", "a.b.c.d", "\"open", "", "."] {
            let err = parse_table_spec(text).unwrap_err();
            assert!(matches!(err, PlanError::BadTableName { .. }), "{text}");
        }
    }

    #[test]
    fn database_qualified_filters_apply_to_that_database_only() {
        let skip = parse_table_specs(&[
            "shop.public.orders".into(),
            "spatial_ref_sys".into(),
            "audit.log".into(),
        ])
        .unwrap();
        let shop = filter_for_database("shop", &[], &skip);
        assert!(!shop.matches("public", "orders"));
        assert!(!shop.matches("public", "spatial_ref_sys"));
        assert!(!shop.matches("audit", "log"));
        assert!(shop.matches("public", "customers"));
        let other = filter_for_database("crm", &[], &skip);
        assert!(other.matches("public", "orders"));
        assert!(!other.matches("x", "spatial_ref_sys"));
    }

    #[test]
    fn with_table_limits_only_its_database() {
        let with = parse_table_specs(&["shop.public.orders".into()]).unwrap();
        let shop = filter_for_database("shop", &with, &[]);
        assert!(shop.matches("public", "orders"));
        assert!(!shop.matches("public", "customers"));
        assert!(filter_for_database("crm", &with, &[]).matches("public", "customers"));
    }

    #[test]
    fn specs_match_their_database_schema_and_table() {
        let spec = |t: &str| parse_table_spec(t).unwrap();
        assert!(spec_matches(&spec("t"), "db", "any", "t"));
        assert!(!spec_matches(&spec("t"), "db", "any", "u"));
        assert!(spec_matches(&spec("s.t"), "db", "s", "t"));
        assert!(!spec_matches(&spec("s.t"), "db", "x", "t"));
        assert!(spec_matches(&spec("db.s.t"), "db", "s", "t"));
        assert!(!spec_matches(&spec("db.s.t"), "other", "s", "t"));
        assert!(spec_matches(&spec("s.*"), "db", "s", "anything"));
    }

    #[test]
    fn database_selection() {
        let all: Vec<String> = ["defaultdb", "Shop-2", "rdsadmin", "x"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            select_databases(&all, &all, &[], &["rdsadmin".into(), "template1".into()]).unwrap(),
            vec!["defaultdb", "Shop-2", "x"]
        );
        assert_eq!(
            select_databases(&all, &all, &["Shop-2".into(), "x".into()], &["x".into()]).unwrap(),
            vec!["Shop-2"]
        );
        let err = select_databases(&all, &all, &["missing".into()], &[]).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        // -f with a name the source lacks: refused, naming it.
        let err =
            select_databases(&all, &all, &[], &["rdsadmin".into(), "nope".into()]).unwrap_err();
        assert!(
            matches!(&err, PlanError::UnknownFilteredDatabases { missing, .. } if missing == &["nope"]),
            "{err}"
        );
        // A database the user may not connect to can still be filtered out.
        let connectable: Vec<String> = ["defaultdb", "x"].map(String::from).to_vec();
        assert_eq!(
            select_databases(&connectable, &all, &[], &["rdsadmin".into()]).unwrap(),
            vec!["defaultdb", "x"]
        );
    }
}
