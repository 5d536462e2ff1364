//! The pure half of verification: which tables to compare, over which columns, split into
//! which block ranges, and the SQL that digests each piece. Nothing here talks to a server.
//!
//! # The digest
//!
//! For every row we build its text form with the columns sorted by name,
//! `ROW(a, b, c)::text`, hash it to 64 bits and sum the hashes as an exact integer (the
//! server's `sum(bigint)` returns `numeric`; we add the pieces up as `i128`). A table's digest
//! is `(row count, sum)`:
//! - the sum is independent of row order, so physical layout and `ctid`s do not matter;
//! - building the row from columns sorted by *name* makes it independent of column order, so a
//!   table whose columns were added in another order still matches;
//! - the sum is additive, so a table can be digested in block ranges on each side and the
//!   ranges summed, even though the ranges of the two sides hold different rows;
//! - a duplicated row replacing another changes the sum unless the two rows' hashes collide
//!   (one chance in 2^64 for unrelated rows), and the count catches a plain extra or missing row.
//!
//! It is a checksum, not a cryptographic proof: someone who can write both databases could
//! craft colliding rows. It is meant to catch migration mistakes.
//!
//! The text form must be the same on both sides for equal data, which is why every session sets
//! the output-affecting settings to fixed values (see `SESSION_SETUP` in `mod.rs`). Between
//! different major versions the text output of most types is stable; known exceptions are
//! floating point output before PostgreSQL 12 (shortest-exact since 12) and types whose output
//! embeds OIDs (`oid`, `regtype` of a type missing on one side). Hash values of
//! `hashtextextended` are only comparable between servers of the same byte order.

use std::collections::BTreeSet;
use std::fmt;

use crate::quote::{qualified, quote_ident};

/// A table or sequence, by schema-qualified name (unquoted, as in the catalog).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectName {
    pub schema: String,
    pub name: String,
}

impl ObjectName {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> ObjectName {
        ObjectName {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// The name as SQL needs it: each part quoted when necessary.
    pub fn sql(&self) -> String {
        qualified(&self.schema, &self.name)
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.sql())
    }
}

/// One user column: its name and its type as `format_type` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub type_name: String,
}

/// Does `name` pass the user's table filter? An empty filter passes everything; an entry
/// matches either `schema.table` or just `table` (in any schema), unquoted.
pub fn filter_matches(filter: &[String], name: &ObjectName) -> bool {
    filter.is_empty()
        || filter
            .iter()
            .any(|f| *f == name.name || *f == format!("{}.{}", name.schema, name.name))
}

/// The filter entries that match none of `names`.
pub fn unmatched_filters<'a>(
    filter: &[String],
    names: impl Iterator<Item = &'a ObjectName> + Clone,
) -> Vec<String> {
    filter
        .iter()
        .filter(|f| {
            !names
                .clone()
                .any(|n| filter_matches(std::slice::from_ref(*f), n))
        })
        .cloned()
        .collect()
}

/// The columns to digest a table present on both sides by (the common ones, sorted by name),
/// and, if the column sets or types differ, why.
pub fn compare_columns(source: &[Column], target: &[Column]) -> (Vec<Column>, Option<String>) {
    let src: BTreeSet<&str> = source.iter().map(|c| c.name.as_str()).collect();
    let dst: BTreeSet<&str> = target.iter().map(|c| c.name.as_str()).collect();
    let mut problems = Vec::new();
    let only_src: Vec<&str> = src.difference(&dst).copied().collect();
    if !only_src.is_empty() {
        problems.push(format!("columns only on source: {}", only_src.join(", ")));
    }
    let only_dst: Vec<&str> = dst.difference(&src).copied().collect();
    if !only_dst.is_empty() {
        problems.push(format!("columns only on target: {}", only_dst.join(", ")));
    }
    let mut common = Vec::new();
    for s in sorted_columns(source) {
        let Some(t) = target.iter().find(|t| t.name == s.name) else {
            continue;
        };
        if s.type_name != t.type_name {
            problems.push(format!(
                "column {} is {} on source, {} on target",
                s.name, s.type_name, t.type_name
            ));
        }
        common.push(s);
    }
    let why = (!problems.is_empty()).then(|| problems.join("; "));
    (common, why)
}

/// `columns` sorted by name (byte order, the same on both sides whatever the collation).
pub fn sorted_columns(columns: &[Column]) -> Vec<Column> {
    let mut out = columns.to_vec();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// A range of heap blocks, `[start, end)`; `None` is unbounded on that side. The last range of
/// a table is open-ended so rows in blocks added after the size was read are not missed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockRange {
    pub start: Option<u64>,
    pub end: Option<u64>,
}

impl BlockRange {
    /// The whole table.
    pub const ALL: BlockRange = BlockRange {
        start: None,
        end: None,
    };
}

/// More ranges than this only add per-query overhead; larger tables get larger ranges.
pub const MAX_RANGES: u64 = 4096;

/// Splits a table of `size_bytes` into block ranges of about `threshold_bytes` each, or returns
/// one whole-table range when the table is not larger than the threshold, the threshold is 0
/// (never split), or the server cannot scan by TID range (before PostgreSQL 14).
pub fn plan_ranges(
    size_bytes: u64,
    block_size: u64,
    threshold_bytes: u64,
    tid_range_scans: bool,
) -> Vec<BlockRange> {
    if !tid_range_scans || threshold_bytes == 0 || block_size == 0 || size_bytes <= threshold_bytes
    {
        return vec![BlockRange::ALL];
    }
    let blocks = size_bytes.div_ceil(block_size);
    let mut per_range = (threshold_bytes / block_size).max(1);
    if blocks.div_ceil(per_range) > MAX_RANGES {
        per_range = blocks.div_ceil(MAX_RANGES);
    }
    let count = blocks.div_ceil(per_range);
    (0..count)
        .map(|i| BlockRange {
            start: (i > 0).then(|| i * per_range),
            end: (i + 1 < count).then(|| (i + 1) * per_range),
        })
        .collect()
}

/// How rows are hashed; both sides must use the same one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowHash {
    /// `hashtextextended(text, 0)`: PostgreSQL 11 and later; fast.
    HashText,
    /// The first 64 bits of `md5(text)`: works on every version, slower.
    Md5,
}

impl RowHash {
    /// The hash both servers can compute (`server_version_num` of each).
    pub fn for_versions(source: i32, target: i32) -> RowHash {
        if source.min(target) >= 110000 {
            RowHash::HashText
        } else {
            RowHash::Md5
        }
    }

    fn expr(self, row_text: &str) -> String {
        match self {
            RowHash::HashText => format!("hashtextextended({row_text}, 0)"),
            RowHash::Md5 => format!("('x' || left(md5({row_text}), 16))::bit(64)::bigint"),
        }
    }
}

/// The query that digests `range` of `table` over `columns` (already in digest order): one
/// row, `(count bigint, sum text)`. The sum is text because it may not fit in 64 bits.
pub fn digest_sql(
    table: &ObjectName,
    columns: &[Column],
    range: BlockRange,
    hash: RowHash,
) -> String {
    let cols: Vec<String> = columns.iter().map(|c| quote_ident(&c.name)).collect();
    let row_text = format!("ROW({})::text", cols.join(", "));
    let mut sql = format!(
        "SELECT count(*), coalesce(sum({}), 0)::text FROM ONLY {}",
        hash.expr(&row_text),
        table.sql()
    );
    let mut conds = Vec::new();
    if let Some(start) = range.start {
        conds.push(format!("ctid >= '({start},0)'::tid"));
    }
    if let Some(end) = range.end {
        conds.push(format!("ctid < '({end},0)'::tid"));
    }
    if !conds.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conds.join(" AND "));
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: &str) -> Column {
        Column {
            name: name.into(),
            type_name: ty.into(),
        }
    }

    #[test]
    fn filter_accepts_qualified_or_bare_names() {
        let t = ObjectName::new("sales", "orders");
        assert!(filter_matches(&[], &t));
        assert!(filter_matches(&["orders".into()], &t));
        assert!(filter_matches(&["sales.orders".into()], &t));
        assert!(!filter_matches(&["public.orders".into()], &t));
        assert!(!filter_matches(&["order".into()], &t));
        let names = [t.clone(), ObjectName::new("public", "x")];
        assert_eq!(
            unmatched_filters(&["x".into(), "nope".into()], names.iter()),
            vec!["nope".to_string()]
        );
    }

    #[test]
    fn columns_are_compared_by_name_not_position() {
        let (common, why) = compare_columns(
            &[col("b", "text"), col("a", "integer")],
            &[col("a", "integer"), col("b", "text")],
        );
        assert_eq!(why, None);
        assert_eq!(common, vec![col("a", "integer"), col("b", "text")]);
    }

    #[test]
    fn column_differences_are_explained() {
        let (common, why) = compare_columns(
            &[col("a", "integer"), col("b", "text"), col("gone", "text")],
            &[col("a", "bigint"), col("b", "text"), col("new", "text")],
        );
        assert_eq!(common, vec![col("a", "integer"), col("b", "text")]);
        assert_eq!(
            why.as_deref(),
            Some(
                "columns only on source: gone; columns only on target: new; \
                 column a is integer on source, bigint on target"
            )
        );
    }

    #[test]
    fn small_tables_and_old_servers_are_not_split() {
        assert_eq!(plan_ranges(1000, 8192, 8192, true), vec![BlockRange::ALL]);
        assert_eq!(
            plan_ranges(1 << 30, 8192, 8192, false),
            vec![BlockRange::ALL]
        );
        assert_eq!(plan_ranges(1 << 30, 8192, 0, true), vec![BlockRange::ALL]);
    }

    #[test]
    fn ranges_cover_every_block_with_open_ends() {
        // 10 blocks, 3 blocks per range: [..3) [3..6) [6..9) [9..)
        let r = plan_ranges(10 * 8192, 8192, 3 * 8192, true);
        assert_eq!(r.len(), 4);
        assert_eq!(
            r[0],
            BlockRange {
                start: None,
                end: Some(3)
            }
        );
        assert_eq!(
            r[1],
            BlockRange {
                start: Some(3),
                end: Some(6)
            }
        );
        assert_eq!(
            r[3],
            BlockRange {
                start: Some(9),
                end: None
            }
        );
        for w in r.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
    }

    #[test]
    fn range_count_is_capped() {
        let r = plan_ranges(1 << 40, 8192, 1, true);
        assert!(
            r.len() as u64 <= MAX_RANGES && r.len() > 1000,
            "{}",
            r.len()
        );
        assert_eq!(r.last().unwrap().end, None);
    }

    #[test]
    fn digest_sql_quotes_names_and_bounds_ranges() {
        let t = ObjectName::new("Sales", "order");
        let sql = digest_sql(
            &t,
            &[col("Id", "integer"), col("x", "text")],
            BlockRange {
                start: Some(4),
                end: Some(8),
            },
            RowHash::HashText,
        );
        assert_eq!(
            sql,
            "SELECT count(*), coalesce(sum(hashtextextended(ROW(\"Id\", x)::text, 0)), 0)::text \
             FROM ONLY \"Sales\".\"order\" WHERE ctid >= '(4,0)'::tid AND ctid < '(8,0)'::tid"
        );
        assert!(!digest_sql(&t, &[], BlockRange::ALL, RowHash::Md5).contains("WHERE"));
    }

    #[test]
    fn hash_falls_back_to_md5_before_11() {
        assert_eq!(RowHash::for_versions(150000, 110000), RowHash::HashText);
        assert_eq!(RowHash::for_versions(100000, 150000), RowHash::Md5);
    }
}
