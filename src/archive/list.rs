//! `pgferry restore --list`: what an archive holds, as people read it.

use super::manifest::Manifest;
use crate::units::{count, format_size};
use std::fmt::Write;

/// The archive's header, then its schema objects, data files, sequences and large objects.
pub fn render(m: &Manifest) -> String {
    let mut out = String::new();
    let s = &m.source;
    let _ = writeln!(
        out,
        "; archive format {} version {}, written by {}",
        m.format, m.format_version, m.created_by
    );
    let _ = writeln!(
        out,
        "; database {} from PostgreSQL {} ({}), encoding {}, snapshot at LSN {}",
        s.database.name,
        s.server_version,
        s.server_version_num,
        s.database.encoding,
        s.snapshot_lsn
    );
    let stored: u64 = m.files().iter().map(|f| f.bytes).sum();
    let raw: u64 = m.tables.iter().map(|t| t.raw_bytes).sum();
    let _ = writeln!(
        out,
        "; contents: {}{}; compression {:?}; {}, {}, {} of COPY data stored in {}",
        if m.contents.schema { "schema" } else { "" },
        match (m.contents.schema, m.contents.data) {
            (true, true) => " and data",
            (false, true) => "data",
            _ => " only",
        },
        m.compression,
        count(m.tables.len() as u64, "data file"),
        count(m.tables.iter().map(|t| t.rows).sum::<u64>(), "row"),
        format_size(raw),
        format_size(stored)
    );
    for w in &m.warnings {
        let _ = writeln!(out, "; warning: {w}");
    }
    for o in &m.objects {
        let name = match &o.schema {
            Some(schema) => format!("{schema}.{}", o.name),
            None => o.name.clone(),
        };
        let _ = writeln!(out, "{:<9} {:<18} {name}", o.section, o.kind);
    }
    for t in &m.tables {
        let _ = writeln!(
            out,
            "data      {:<18} {} ({} rows, {} {}, file {} {})",
            "TableData",
            t.display_name(),
            t.rows,
            format_size(t.raw_bytes),
            match t.format {
                super::manifest::DataFormat::Binary => "binary",
                super::manifest::DataFormat::Text => "text",
            },
            t.file.path,
            format_size(t.file.bytes)
        );
    }
    for q in &m.sequences {
        let _ = writeln!(
            out,
            "data      {:<18} {}.{} = {}{}",
            "SequenceSet",
            q.schema,
            q.name,
            q.last_value,
            if q.is_called { "" } else { " (not called)" }
        );
    }
    for l in &m.large_objects {
        let _ = writeln!(
            out,
            "data      {:<18} {} (owner {}, file {} {})",
            "LargeObject",
            l.oid,
            l.owner,
            l.file.path,
            format_size(l.file.bytes)
        );
    }
    out
}
