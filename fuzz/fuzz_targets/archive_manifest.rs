//! The archive reader on any bytes: no panic, whatever a manifest or a data file holds.
//!
//! The first byte picks what the rest is:
//! - bit 0 clear: a `manifest.json`. A manifest that parses must serialize and parse back to
//!   itself, and list only paths that stay inside the archive.
//! - bit 0 set: a data file read through the validating reader; bit 1: zstd (else plain);
//!   bit 2: text COPY (else binary); bit 3: a large object (no rows). The expected size and
//!   checksum are those of the input itself, so the checks after the last byte (raw size, row
//!   count) are reached too; the expected row and raw byte counts come from bytes 1..9.
//!
//! Seeds in `fuzz/corpus/archive_manifest/` are a real manifest and real data files with
//! their mode byte in front.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgferry::archive::datafile::{read_data, Expected};
use pgferry::archive::manifest::{is_safe_path, Compression, Manifest};
use pgferry::copy::CopyFormat;
use sha2::{Digest, Sha256};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        match Manifest::parse(rest) {
            Ok(m) => {
                assert_eq!(Manifest::parse(&m.to_json()).as_ref(), Ok(&m));
                assert!(m.files().iter().all(|f| is_safe_path(&f.path)));
                let _ = pgferry::archive::list::render(&m);
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
        return;
    }
    let compression = if mode & 2 != 0 {
        Compression::Zstd
    } else {
        Compression::None
    };
    let format = if mode & 4 != 0 {
        CopyFormat::Text
    } else {
        CopyFormat::Binary
    };
    let hint = |i: usize| u64::from(rest.get(i).copied().unwrap_or(0));
    let rows = (mode & 8 == 0).then(|| (format, hint(1) | hint(2) << 8));
    let raw_bytes = (mode & 8 == 0).then(|| hint(3) | hint(4) << 8 | hint(5) << 16);
    let expected = Expected {
        compression,
        bytes: rest.len() as u64,
        sha256: Sha256::digest(rest)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        raw_bytes,
        rows,
    };
    let mut seen = 0u64;
    match read_data(rest, &expected, |b| {
        seen += b.len() as u64;
        true
    }) {
        Ok(summary) => {
            assert_eq!(summary.raw_bytes, seen);
            if let Some((_, want)) = rows {
                assert_eq!(summary.rows, want);
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
