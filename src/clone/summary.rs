//! The end-of-run table people read after a clone.

use super::CloneSummary;
use crate::units::{count, format_size};

/// The end-of-run table: one row per copy job, slowest first, then totals.
pub fn render_summary(s: &CloneSummary) -> String {
    use std::fmt::Write;
    let mut tables = s.tables.clone();
    tables.sort_by(|a, b| b.elapsed.cmp(&a.elapsed).then(a.table.cmp(&b.table)));
    let width = tables
        .iter()
        .map(|t| t.table.len())
        .max()
        .unwrap_or(5)
        .clamp(5, 60);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<width$}  {:>12}  {:>10}  {:>8}  {:>9}  FORMAT",
        "TABLE", "ROWS", "BYTES", "SECONDS", "MB/S"
    );
    let (mut rows, mut bytes) = (0u64, 0u64);
    for t in &tables {
        let secs = t.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            t.bytes as f64 / secs / 1_048_576.0
        } else {
            0.0
        };
        let _ = writeln!(
            out,
            "{:<width$}  {:>12}  {:>10}  {:>8.2}  {:>9.1}  {}",
            t.table,
            t.rows,
            format_size(t.bytes),
            secs,
            rate,
            t.format.as_sql()
        );
        rows += t.rows;
        bytes += t.bytes;
    }
    let secs = s.elapsed.as_secs_f64();
    let _ = writeln!(
        out,
        "copied {}, {}, {} in {:.1} s ({:.1} MB/s overall); {}, {}, {}{}",
        count(tables.len() as u64, "table"),
        count(rows, "row"),
        format_size(bytes),
        secs,
        if secs > 0.0 {
            bytes as f64 / secs / 1_048_576.0
        } else {
            0.0
        },
        count(s.post_data_statements as u64, "post-data statement"),
        count(s.sequences as u64, "sequence"),
        count(s.large_objects as u64, "large object"),
        if s.materialized_views_refreshed > 0 {
            format!(
                ", {} refreshed",
                count(s.materialized_views_refreshed as u64, "materialized view")
            )
        } else {
            String::new()
        } + &if s.publications > 0 {
            format!(", {}", count(s.publications as u64, "publication"))
        } else {
            String::new()
        }
    );
    for w in s.schema_warnings.iter().chain(&s.warnings) {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}
