//! What `pgferry verify` found: per table, per sequence and for large objects, whether the two
//! sides match. Every difference is listed (the run does not stop at the first one); whether
//! that makes the command fail is the caller's decision, from [`VerifyReport::is_clean`].
//!
//! The report serializes to JSON (serde) as a stable shape: `source`, `target`, `tables`,
//! `sequences` (null when not checked), `large_objects` (null when not checked). Each entry has
//! a `status` object with a `kind` of `match`, `mismatch` (with `why`), `missing_on_target` or
//! `missing_on_source`. Checksums are decimal strings because they do not fit in 64 bits. New
//! fields may be added.

use std::fmt::Write as _;

use serde::{Serialize, Serializer};

/// The outcome for one object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Status {
    Match,
    Mismatch { why: String },
    MissingOnTarget,
    MissingOnSource,
}

impl Status {
    pub fn is_match(&self) -> bool {
        matches!(self, Status::Match)
    }

    fn label(&self) -> String {
        match self {
            Status::Match => "match".to_owned(),
            Status::Mismatch { why } => format!("MISMATCH: {why}"),
            Status::MissingOnTarget => "MISSING ON TARGET".to_owned(),
            Status::MissingOnSource => "MISSING ON SOURCE (extra on target)".to_owned(),
        }
    }
}

/// One side's digest of a table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TableDigest {
    pub rows: i64,
    /// Sum of the 64-bit row hashes (see [`super::plan`]); meaningful only next to the other
    /// side's checksum over the same columns.
    #[serde(serialize_with = "as_decimal")]
    pub checksum: i128,
    /// How many block ranges the table was read in (1 = whole table).
    pub chunks: usize,
}

/// One table (or partition leaf), present on at least one side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TableReport {
    pub schema: String,
    pub name: String,
    pub source: Option<TableDigest>,
    pub target: Option<TableDigest>,
    pub status: Status,
}

impl TableReport {
    /// `schema.table`, quoted where SQL would need it.
    pub fn qualified_name(&self) -> String {
        crate::quote::qualified(&self.schema, &self.name)
    }

    pub fn rows_source(&self) -> Option<i64> {
        self.source.as_ref().map(|d| d.rows)
    }

    pub fn rows_target(&self) -> Option<i64> {
        self.target.as_ref().map(|d| d.rows)
    }
}

/// A sequence's position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SequenceState {
    pub last_value: i64,
    /// False until the first `nextval` (or after `setval(.., false)`): the next value is
    /// `last_value` itself rather than the one after it.
    pub is_called: bool,
}

/// One sequence, present on at least one side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SequenceReport {
    pub schema: String,
    pub name: String,
    pub source: Option<SequenceState>,
    pub target: Option<SequenceState>,
    pub status: Status,
}

impl SequenceReport {
    pub fn qualified_name(&self) -> String {
        crate::quote::qualified(&self.schema, &self.name)
    }
}

/// A large object that differs (absent, other content or other owner).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LargeObjectDiff {
    pub oid: u32,
    pub status: Status,
}

/// Large objects compared by OID: content (md5) and owner.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LargeObjectReport {
    pub source_count: usize,
    pub target_count: usize,
    /// Only the objects that differ, by OID.
    pub differences: Vec<LargeObjectDiff>,
}

/// Everything one verification found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The source server, `user@host:port/db` (no password).
    pub source: String,
    pub target: String,
    /// Sorted by schema-qualified name.
    pub tables: Vec<TableReport>,
    /// `None` when sequences were not checked (a table filter was given, or disabled).
    pub sequences: Option<Vec<SequenceReport>>,
    /// `None` when large objects were not checked.
    pub large_objects: Option<LargeObjectReport>,
}

impl VerifyReport {
    /// True when every checked object matches on both sides.
    pub fn is_clean(&self) -> bool {
        self.tables.iter().all(|t| t.status.is_match())
            && self.sequences.iter().flatten().all(|s| s.status.is_match())
            && self
                .large_objects
                .as_ref()
                .is_none_or(|l| l.differences.is_empty())
    }

    /// The table entry named `schema.name` (unquoted), if any.
    pub fn table(&self, schema: &str, name: &str) -> Option<&TableReport> {
        self.tables
            .iter()
            .find(|t| t.schema == schema && t.name == name)
    }

    /// The sequence entry named `schema.name` (unquoted), if any.
    pub fn sequence(&self, schema: &str, name: &str) -> Option<&SequenceReport> {
        self.sequences
            .iter()
            .flatten()
            .find(|s| s.schema == schema && s.name == name)
    }
}

fn as_decimal<S: Serializer>(value: &i128, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&value.to_string())
}

/// How many large-object differences the text report lists before summarizing the rest.
const MAX_LO_LINES: usize = 20;

/// The report as a human reads it: a table of tables, then sequences and large objects, then
/// one summary line that starts with `OK` or `DIFFERENCES FOUND`.
pub fn render_text(report: &VerifyReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "source: {}", report.source);
    let _ = writeln!(out, "target: {}", report.target);
    out.push('\n');

    let rows = |r: Option<i64>| r.map_or_else(|| "-".to_owned(), |n| n.to_string());
    let table_rows: Vec<[String; 4]> = report
        .tables
        .iter()
        .map(|t| {
            [
                t.qualified_name(),
                rows(t.rows_source()),
                rows(t.rows_target()),
                t.status.label(),
            ]
        })
        .collect();
    if table_rows.is_empty() {
        out.push_str("no tables to compare\n");
    } else {
        write_grid(
            &mut out,
            ["TABLE", "ROWS(SRC)", "ROWS(DST)", "STATUS"],
            &table_rows,
        );
    }

    if let Some(seqs) = &report.sequences {
        if !seqs.is_empty() {
            out.push('\n');
            let state = |s: Option<SequenceState>| match s {
                None => "-".to_owned(),
                Some(s) if s.is_called => s.last_value.to_string(),
                Some(s) => format!("{} (not called)", s.last_value),
            };
            let seq_rows: Vec<[String; 4]> = seqs
                .iter()
                .map(|s| {
                    [
                        s.qualified_name(),
                        state(s.source),
                        state(s.target),
                        s.status.label(),
                    ]
                })
                .collect();
            write_grid(
                &mut out,
                ["SEQUENCE", "LAST(SRC)", "LAST(DST)", "STATUS"],
                &seq_rows,
            );
        }
    }

    if let Some(lo) = &report.large_objects {
        if lo.source_count + lo.target_count > 0 {
            out.push('\n');
            let _ = writeln!(
                out,
                "LARGE OBJECTS: {} on source, {} on target, {} differ",
                lo.source_count,
                lo.target_count,
                lo.differences.len()
            );
            for d in lo.differences.iter().take(MAX_LO_LINES) {
                let _ = writeln!(out, "  oid {}: {}", d.oid, d.status.label());
            }
            if lo.differences.len() > MAX_LO_LINES {
                let _ = writeln!(
                    out,
                    "  ... and {} more",
                    lo.differences.len() - MAX_LO_LINES
                );
            }
        }
    }

    out.push('\n');
    out.push_str(&summary(report));
    out.push('\n');
    out
}

/// `OK: 12 tables match, ...` or `DIFFERENCES FOUND: 2 of 12 tables differ, ...`.
fn summary(report: &VerifyReport) -> String {
    let mut parts = Vec::new();
    let bad_tables = report
        .tables
        .iter()
        .filter(|t| !t.status.is_match())
        .count();
    parts.push(count_part(
        bad_tables,
        report.tables.len(),
        "table",
        "tables",
    ));
    if let Some(seqs) = &report.sequences {
        let bad = seqs.iter().filter(|s| !s.status.is_match()).count();
        parts.push(count_part(bad, seqs.len(), "sequence", "sequences"));
    }
    if let Some(lo) = &report.large_objects {
        let total = lo.source_count.max(lo.target_count);
        parts.push(count_part(
            lo.differences.len(),
            total,
            "large object",
            "large objects",
        ));
    }
    let verdict = if report.is_clean() {
        "OK"
    } else {
        "DIFFERENCES FOUND"
    };
    format!("{verdict}: {}", parts.join(", "))
}

fn count_part(bad: usize, total: usize, one: &str, many: &str) -> String {
    let noun = if total == 1 { one } else { many };
    if bad == 0 {
        format!("{total} {noun} match")
    } else {
        format!("{bad} of {total} {noun} differ")
    }
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
fn write_grid(out: &mut String, header: [&str; 4], rows: &[[String; 4]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: [&str; 4]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                s.push_str(cell);
                s.extend(std::iter::repeat_n(' ', pad + 2));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(header);
    for row in rows {
        line([&row[0], &row[1], &row[2], &row[3]]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(rows: i64) -> Option<TableDigest> {
        Some(TableDigest {
            rows,
            checksum: i128::from(rows) << 70,
            chunks: 1,
        })
    }

    fn sample() -> VerifyReport {
        VerifyReport {
            source: "u@a:5432/db".into(),
            target: "u@b:5432/db".into(),
            tables: vec![
                TableReport {
                    schema: "public".into(),
                    name: "a".into(),
                    source: digest(10),
                    target: digest(10),
                    status: Status::Match,
                },
                TableReport {
                    schema: "public".into(),
                    name: "Big".into(),
                    source: digest(1000),
                    target: None,
                    status: Status::MissingOnTarget,
                },
            ],
            sequences: Some(vec![SequenceReport {
                schema: "public".into(),
                name: "s".into(),
                source: Some(SequenceState {
                    last_value: 5,
                    is_called: true,
                }),
                target: Some(SequenceState {
                    last_value: 1,
                    is_called: false,
                }),
                status: Status::Mismatch {
                    why: "last_value differs".into(),
                },
            }]),
            large_objects: None,
        }
    }

    #[test]
    fn text_lists_every_object_and_a_verdict() {
        let text = render_text(&sample());
        let expected = "\
source: u@a:5432/db
target: u@b:5432/db

TABLE         ROWS(SRC)  ROWS(DST)  STATUS
public.a      10         10         match
public.\"Big\"  1000       -          MISSING ON TARGET

SEQUENCE  LAST(SRC)  LAST(DST)       STATUS
public.s  5          1 (not called)  MISMATCH: last_value differs

DIFFERENCES FOUND: 1 of 2 tables differ, 1 of 1 sequence differ
";
        assert_eq!(text, expected);
    }

    #[test]
    fn clean_only_when_everything_matches() {
        let mut r = sample();
        assert!(!r.is_clean());
        r.tables.truncate(1);
        r.sequences = Some(vec![]);
        r.large_objects = Some(LargeObjectReport::default());
        assert!(r.is_clean());
        assert!(render_text(&r)
            .ends_with("OK: 1 table match, 0 sequences match, 0 large objects match\n"));
    }

    #[test]
    fn json_shape_is_stable() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["tables"][0]["status"]["kind"], "match");
        assert_eq!(v["tables"][1]["status"]["kind"], "missing_on_target");
        assert_eq!(
            v["tables"][0]["source"]["checksum"],
            (10i128 << 70).to_string()
        );
        assert_eq!(v["sequences"][0]["status"]["why"], "last_value differs");
        assert!(v["large_objects"].is_null());
    }
}
