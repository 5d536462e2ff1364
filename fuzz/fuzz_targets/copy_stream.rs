//! The COPY stream readers and the re-chunker, fed any bytes cut at any points:
//! - no panic;
//! - the binary reader reaches the same verdict (rows, or the same error at the same offset)
//!   whether it gets the bytes in one piece or in chunks;
//! - the re-chunker's output, concatenated, is exactly its input.
//!
//! Chunk sizes (1-23 bytes, sometimes preceded by an empty chunk) come from the data itself
//! (the byte at each chunk's start), so the seeds in
//! `fuzz/corpus/copy_stream/` are plain `COPY .. TO STDOUT (FORMAT binary)` outputs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgferry::copy::{BinaryCopyReader, Bytes, Rechunker, TextRowCounter};

fuzz_target!(|data: &[u8]| {
    let mut chunks = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let pick = usize::from(data[pos]) % 24;
        if pick == 0 {
            // An empty chunk must change nothing either.
            chunks.push(&data[pos..pos]);
        }
        let len = pick.max(1).min(data.len() - pos);
        chunks.push(&data[pos..pos + len]);
        pos += len;
    }

    let mut whole = BinaryCopyReader::new();
    let whole_verdict = whole.feed(data).and_then(|_| whole.finish());
    let mut split = BinaryCopyReader::new();
    let mut split_verdict = Ok(0);
    for c in &chunks {
        if let Err(e) = split.feed(c) {
            split_verdict = Err(e);
            break;
        }
    }
    let split_verdict = split_verdict.and_then(|_| split.finish());
    assert_eq!(whole_verdict, split_verdict);
    if let Err(e) = &whole_verdict {
        let _ = e.to_string();
    }

    let mut text = TextRowCounter::new();
    for c in &chunks {
        let _ = text.feed(c);
    }
    let _ = text.finish();

    let mut rechunker = Rechunker::new(data.len() % 61 + 1);
    let mut out = Vec::with_capacity(data.len());
    for c in &chunks {
        for buf in rechunker.push(Bytes::copy_from_slice(c)) {
            out.extend_from_slice(&buf);
        }
    }
    if let Some(buf) = rechunker.finish() {
        out.extend_from_slice(&buf);
    }
    assert_eq!(out, data, "re-chunked bytes differ from the input");
});
