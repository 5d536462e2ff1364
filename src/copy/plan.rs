//! Which tables to copy, which columns, in which format, and how to split the big ones.
//!
//! - Tables: ordinary tables (`relkind 'r'`), partitions included (partitioned parents hold no
//!   rows; their leaves are copied one by one), unlogged included; temporary tables, foreign
//!   tables, views, system schemas and tables that belong to an extension (CREATE EXTENSION on
//!   the target fills those) are left out.
//! - Columns: every live column except generated ones, which the target computes itself.
//! - Size: `pg_table_size` (heap + TOAST, no indexes), largest first, so the longest job
//!   starts first and the pool drains evenly.
//! - Format: binary unless a reason makes it unsafe ([`text_reason`]).
//! - Splitting: a table above the threshold becomes ranges of heap blocks by ctid on
//!   PostgreSQL 14+ (TID range scans read only those blocks); before 14, ranges of a
//!   single-column integer primary key; otherwise it stays one job. The last range is
//!   open-ended so blocks added after planning are still read.

use std::collections::HashMap;

use tokio_postgres::Client;

use super::{CopyError, CopyFormat, RowRange, Side, TableJob};

/// OIDs below this belong to objects created by initdb, identical on every server of a major
/// version; user-defined types get OIDs from here up and differ between clusters.
const FIRST_NORMAL_OID: u32 = 16384;

/// Which tables to copy, by `schema.table`, `schema.*` or `*.table` (any schema). An empty
/// include list means all; exclude wins over include.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableFilter {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl TableFilter {
    pub fn matches(&self, schema: &str, table: &str) -> bool {
        let hit = |pattern: &String| match pattern.split_once('.') {
            Some((s, "*")) => s == schema,
            Some(("*", t)) => t == table,
            Some((s, t)) => s == schema && t == table,
            None => false,
        };
        (self.include.is_empty() || self.include.iter().any(hit)) && !self.exclude.iter().any(hit)
    }
}

/// How to plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanOptions {
    pub filter: TableFilter,
    /// Tables larger than this (bytes) are split into ranges of about this size; `None`
    /// never splits.
    pub split_threshold: Option<u64>,
    /// Copy everything as text.
    pub force_text: bool,
    /// The target's major version; binary needs the same major on both sides. `None` means
    /// "same as the source".
    pub target_major: Option<u32>,
    /// Sets [`TableJob::truncate_first`] on every job.
    pub truncate_first: bool,
    /// Also copy extension configuration tables (`pg_extension.extconfig`), only the rows
    /// matching the extension's condition, as pg_dump does (postgis' `spatial_ref_sys`: the
    /// user's own rows).
    pub extension_config_tables: bool,
}

/// The source's major version (e.g. 15).
pub async fn server_major(client: &Client) -> Result<u32, CopyError> {
    let num = crate::compat::server_version_num(client)
        .await
        .map_err(|e| CopyError::from_pg(None, Side::Source, &e))?;
    Ok(u32::try_from(num / 10000).unwrap_or(0))
}

/// A table as the catalog describes it.
#[derive(Debug, Clone)]
struct TableRow {
    schema: String,
    table: String,
    size: u64,
    blocks: u64,
    columns: Vec<String>,
    types: Vec<u32>,
    int_pk: Option<String>,
    /// For an extension configuration table: the extension's row condition ("" = all rows).
    config_condition: Option<String>,
}

/// What binary safety needs to know of a type.
#[derive(Debug, Clone)]
struct TypeRow {
    name: String,
    typtype: String,
    basetype: u32,
    elem: u32,
    len: i16,
    has_binary_io: bool,
    range_subtype: Option<u32>,
}

/// Lists the jobs for everything the filter selects, largest first. Run it inside the
/// snapshot the workers will use, so sizes and key ranges describe the data they copy.
pub async fn plan_tables(src: &Client, opts: &PlanOptions) -> Result<Vec<TableJob>, CopyError> {
    let major = server_major(src).await?;
    let tables: Vec<TableRow> = list_tables(src, major)
        .await?
        .into_iter()
        .filter(|t| opts.filter.matches(&t.schema, &t.table))
        .filter(|t| opts.extension_config_tables || t.config_condition.is_none())
        .collect();
    let types = load_types(src).await?;
    let version_reason = match opts.target_major {
        Some(target) if target != major => Some(format!(
            "source is PostgreSQL {major}, target is PostgreSQL {target}"
        )),
        _ => None,
    };

    let mut jobs = Vec::new();
    for t in tables {
        let text_reason = if opts.force_text {
            Some("text format requested".to_string())
        } else if let Some(r) = &version_reason {
            Some(r.clone())
        } else {
            t.columns.iter().zip(&t.types).find_map(|(col, &ty)| {
                text_reason(&types, ty).map(|r| format!("column {col}: {r}"))
            })
        };
        let format = if text_reason.is_some() {
            CopyFormat::Text
        } else {
            CopyFormat::Binary
        };
        let base = TableJob {
            schema: t.schema.clone(),
            table: t.table.clone(),
            columns: t.columns.clone(),
            range: None,
            format,
            // The target's extension already holds its own rows: never truncate those tables.
            truncate_first: opts.truncate_first && t.config_condition.is_none(),
            estimated_bytes: t.size,
            text_reason,
            row_filter: t.config_condition.as_deref().and_then(row_condition),
        };
        let ranges = match opts.split_threshold {
            Some(threshold)
                if threshold > 0 && t.size > threshold && t.config_condition.is_none() =>
            {
                let parts = t.size.div_ceil(threshold);
                if major >= 14 {
                    ctid_ranges(t.blocks, parts)
                } else if let Some(pk) = &t.int_pk {
                    int_ranges(src, &base, pk, parts).await?
                } else {
                    Vec::new()
                }
            }
            _ => Vec::new(),
        };
        if ranges.len() <= 1 {
            jobs.push(base);
        } else {
            let share = t.size / ranges.len() as u64;
            jobs.extend(ranges.into_iter().map(|range| TableJob {
                range: Some(range),
                estimated_bytes: share,
                ..base.clone()
            }));
        }
    }
    // Stable: equal sizes keep the catalog's (schema, table) order.
    jobs.sort_by_key(|j| std::cmp::Reverse(j.estimated_bytes));
    Ok(jobs)
}

/// The row condition of an extension configuration table as a bare boolean expression:
/// `pg_extension_config_dump` stores it with its `WHERE` (or empty for "all rows").
fn row_condition(stored: &str) -> Option<String> {
    let trimmed = stored.trim();
    if trimmed.is_empty() {
        return None;
    }
    let starts_with_where = trimmed
        .get(..5)
        .is_some_and(|h| h.eq_ignore_ascii_case("where"))
        && trimmed[5..].starts_with(|c: char| c.is_whitespace() || c == '(');
    let bare = if starts_with_where {
        trimmed[5..].trim()
    } else {
        trimmed
    };
    (!bare.is_empty()).then(|| bare.to_string())
}

async fn list_tables(src: &Client, major: u32) -> Result<Vec<TableRow>, CopyError> {
    let not_generated = if major >= 12 {
        "AND a.attgenerated = ''"
    } else {
        ""
    };
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text,
                pg_table_size(c.oid)::bigint,
                (pg_relation_size(c.oid) / current_setting('block_size')::bigint)::bigint,
                array(SELECT a.attname::text FROM pg_attribute a
                      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped {not_generated}
                      ORDER BY a.attnum),
                array(SELECT a.atttypid FROM pg_attribute a
                      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped {not_generated}
                      ORDER BY a.attnum),
                (SELECT a.attname::text FROM pg_index i
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                  WHERE i.indrelid = c.oid AND i.indisprimary AND i.indnatts = 1
                    AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)),
                (SELECT coalesce(e.extcondition[array_position(e.extconfig, c.oid)], '')
                   FROM pg_extension e WHERE c.oid = ANY (e.extconfig))
           FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind = 'r' AND c.relpersistence <> 't'
            AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgferry')
            AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
            AND (NOT EXISTS (SELECT 1 FROM pg_depend d
                              WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                AND d.deptype = 'e')
                 OR EXISTS (SELECT 1 FROM pg_extension e WHERE c.oid = ANY (e.extconfig)))
          ORDER BY 1, 2"
    );
    let err = |e: tokio_postgres::Error| CopyError::from_pg(None, Side::Source, &e);
    let rows = src.query(&sql, &[]).await.map_err(err)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let size: i64 = row.try_get(2).map_err(err)?;
        let blocks: i64 = row.try_get(3).map_err(err)?;
        out.push(TableRow {
            schema: row.try_get(0).map_err(err)?,
            table: row.try_get(1).map_err(err)?,
            size: u64::try_from(size).unwrap_or(0),
            blocks: u64::try_from(blocks).unwrap_or(0),
            columns: row.try_get(4).map_err(err)?,
            types: row.try_get(5).map_err(err)?,
            int_pk: row.try_get(6).map_err(err)?,
            config_condition: row.try_get(7).map_err(err)?,
        });
    }
    Ok(out)
}

/// Every type used by a table column, and every type those are built from (domain bases,
/// array elements, range subtypes).
async fn load_types(src: &Client) -> Result<HashMap<u32, TypeRow>, CopyError> {
    let sql = "WITH RECURSIVE used(oid) AS (
                   SELECT DISTINCT a.atttypid FROM pg_attribute a
                     JOIN pg_class c ON c.oid = a.attrelid
                    WHERE c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
                 UNION
                   SELECT v.next FROM used u
                     JOIN pg_type t ON t.oid = u.oid
                     LEFT JOIN pg_range r ON r.rngtypid = t.oid
                    CROSS JOIN LATERAL (VALUES (t.typbasetype),
                                               (CASE WHEN t.typlen = -1 THEN t.typelem END),
                                               (r.rngsubtype)) v(next)
                    WHERE v.next IS NOT NULL AND v.next <> 0
               )
               SELECT t.oid, format_type(t.oid, NULL), t.typtype::text, t.typbasetype, t.typelem,
                      t.typlen, t.typsend::oid <> 0 AND t.typreceive::oid <> 0, r.rngsubtype
                 FROM used u JOIN pg_type t ON t.oid = u.oid
                 LEFT JOIN pg_range r ON r.rngtypid = t.oid";
    let err = |e: tokio_postgres::Error| CopyError::from_pg(None, Side::Source, &e);
    let rows = src.query(sql, &[]).await.map_err(err)?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let oid: u32 = row.try_get(0).map_err(err)?;
        out.insert(
            oid,
            TypeRow {
                name: row.try_get(1).map_err(err)?,
                typtype: row.try_get(2).map_err(err)?,
                basetype: row.try_get(3).map_err(err)?,
                elem: row.try_get(4).map_err(err)?,
                len: row.try_get(5).map_err(err)?,
                has_binary_io: row.try_get(6).map_err(err)?,
                range_subtype: row.try_get(7).map_err(err)?,
            },
        );
    }
    Ok(out)
}

/// Why a column of type `oid` cannot go through binary COPY between two clusters, if it
/// cannot:
/// - the type (or a type it is built from) has no binary send/receive functions;
/// - an array's binary form names its element type by OID, which the receiver checks, and a
///   user-defined element type has a different OID on the target;
/// - a composite's binary form names each member type by OID, likewise.
fn text_reason(types: &HashMap<u32, TypeRow>, oid: u32) -> Option<String> {
    // Types nest only a few levels; the bound guards against a cyclic catalog.
    let mut oid = oid;
    for _ in 0..32 {
        let Some(t) = types.get(&oid) else {
            return Some(format!("type {oid} not found in the catalog"));
        };
        if !t.has_binary_io {
            return Some(format!("type {} has no binary send/receive", t.name));
        }
        match t.typtype.as_str() {
            "d" => oid = t.basetype,
            "c" => {
                return Some(format!(
                    "composite type {} (its binary form carries type OIDs)",
                    t.name
                ))
            }
            "m" if oid >= FIRST_NORMAL_OID => {
                return Some(format!("user-defined multirange type {}", t.name))
            }
            "r" => match t.range_subtype {
                Some(sub) => oid = sub,
                None => return None,
            },
            _ if t.len == -1 && t.elem != 0 => {
                if t.elem >= FIRST_NORMAL_OID {
                    return Some(format!(
                        "array {} of a user-defined type (its binary form carries the element type OID)",
                        t.name
                    ));
                }
                oid = t.elem;
            }
            _ => return None,
        }
    }
    Some("type nesting too deep".to_string())
}

/// `parts` ranges of about equal numbers of blocks; the last one open-ended.
fn ctid_ranges(blocks: u64, parts: u64) -> Vec<RowRange> {
    let parts = parts.min(blocks).max(1);
    let per = blocks.div_ceil(parts).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    while start < blocks || out.is_empty() {
        let end = start + per;
        let last = end >= blocks;
        out.push(RowRange::Ctid {
            start,
            end: (!last).then_some(end),
        });
        if last {
            break;
        }
        start = end;
    }
    out
}

async fn int_ranges(
    src: &Client,
    job: &TableJob,
    pk: &str,
    parts: u64,
) -> Result<Vec<RowRange>, CopyError> {
    let col = super::pipe::quote_ident(pk);
    let sql = format!(
        "SELECT min({col})::bigint, max({col})::bigint FROM ONLY {}",
        super::pipe::qualified(job)
    );
    let name = job.display_name();
    let err = |e: tokio_postgres::Error| CopyError::from_pg(Some(&name), Side::Source, &e);
    let row = src.query_one(&sql, &[]).await.map_err(err)?;
    let (Some(min), Some(max)) = (
        row.try_get::<_, Option<i64>>(0).map_err(err)?,
        row.try_get::<_, Option<i64>>(1).map_err(err)?,
    ) else {
        return Ok(Vec::new());
    };
    Ok(int_key_ranges(pk, min, max, parts))
}

/// Splits `min..=max` into `parts` ranges; the first has no lower and the last no upper bound.
fn int_key_ranges(column: &str, min: i64, max: i64, parts: u64) -> Vec<RowRange> {
    let span = i128::from(max) - i128::from(min) + 1;
    let parts = i128::from(parts).min(span).max(1);
    let step = (span + parts - 1) / parts;
    let mut out = Vec::new();
    let mut low: Option<i64> = None;
    for i in 1..=parts {
        let bound = i128::from(min) + step * i;
        let high = if i == parts || bound > i128::from(max) {
            None
        } else {
            i64::try_from(bound).ok()
        };
        out.push(RowRange::IntKey {
            column: column.to_string(),
            low,
            high,
        });
        match high {
            Some(h) => low = Some(h),
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_row_conditions() {
        assert_eq!(row_condition(""), None);
        assert_eq!(row_condition("  "), None);
        assert_eq!(
            row_condition("WHERE NOT (srid BETWEEN 2000 AND 6999)").as_deref(),
            Some("NOT (srid BETWEEN 2000 AND 6999)")
        );
        assert_eq!(row_condition("where(x > 1)").as_deref(), Some("(x > 1)"));
        assert_eq!(
            row_condition("whereabouts > 1").as_deref(),
            Some("whereabouts > 1")
        );
    }

    #[test]
    fn filter_patterns() {
        let f = TableFilter {
            include: vec!["public.*".into(), "app.users".into()],
            exclude: vec!["public.big".into()],
        };
        assert!(f.matches("public", "a"));
        assert!(!f.matches("public", "big"));
        assert!(f.matches("app", "users"));
        assert!(!f.matches("app", "orders"));
        assert!(TableFilter::default().matches("x", "y"));
    }

    #[test]
    fn ctid_ranges_cover_all_blocks_and_end_open() {
        let r = ctid_ranges(10, 4);
        assert_eq!(
            r,
            vec![
                RowRange::Ctid {
                    start: 0,
                    end: Some(3)
                },
                RowRange::Ctid {
                    start: 3,
                    end: Some(6)
                },
                RowRange::Ctid {
                    start: 6,
                    end: Some(9)
                },
                RowRange::Ctid {
                    start: 9,
                    end: None
                },
            ]
        );
        assert_eq!(
            ctid_ranges(0, 5),
            vec![RowRange::Ctid {
                start: 0,
                end: None
            }]
        );
        assert_eq!(ctid_ranges(3, 100).len(), 3);
    }

    #[test]
    fn int_ranges_are_open_at_both_ends() {
        let r = int_key_ranges("id", 1, 100, 4);
        let bounds: Vec<(Option<i64>, Option<i64>)> = r
            .iter()
            .map(|r| match r {
                RowRange::IntKey { low, high, .. } => (*low, *high),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            bounds,
            vec![
                (None, Some(26)),
                (Some(26), Some(51)),
                (Some(51), Some(76)),
                (Some(76), None)
            ]
        );
        assert_eq!(int_key_ranges("id", i64::MIN, i64::MAX, 3).len(), 3);
        assert_eq!(int_key_ranges("id", 5, 5, 3).len(), 1);
    }

    fn ty(name: &str, typtype: &str, base: u32, elem: u32, len: i16, io: bool) -> TypeRow {
        TypeRow {
            name: name.into(),
            typtype: typtype.into(),
            basetype: base,
            elem,
            len,
            has_binary_io: io,
            range_subtype: None,
        }
    }

    #[test]
    fn text_reasons() {
        let mut types = HashMap::new();
        types.insert(23, ty("integer", "b", 0, 0, 4, true));
        types.insert(1007, ty("integer[]", "b", 0, 23, -1, true));
        types.insert(1033, ty("aclitem", "b", 0, 0, 12, false));
        types.insert(1034, ty("aclitem[]", "b", 0, 1033, -1, true));
        types.insert(20000, ty("mydomain", "d", 23, 0, 4, true));
        types.insert(20001, ty("mydomain[]", "b", 0, 20000, -1, true));
        types.insert(20002, ty("myrow", "c", 0, 0, -1, true));
        assert_eq!(text_reason(&types, 23), None);
        assert_eq!(text_reason(&types, 1007), None);
        assert_eq!(text_reason(&types, 20000), None);
        assert!(text_reason(&types, 1034).unwrap().contains("aclitem"));
        assert!(text_reason(&types, 20001).unwrap().contains("array"));
        assert!(text_reason(&types, 20002).unwrap().contains("composite"));
        assert!(text_reason(&types, 99).is_some());
    }
}
