//! The CPU cost of the copy path without any server: per-row `CopyData` frames of ~100 bytes
//! (as tokio-postgres's CopyOutStream yields them) go through the binary COPY row counter and
//! the [`Rechunker`] into 256 KiB buffers, as `copy::forward` does (`forward_path`). The other
//! cases take the pieces apart, and `count_merged_buffers` shows why the counter runs on the
//! frames rather than on the merged buffers.
//! Throughput is reported in bytes/second; the network and the servers are what should limit
//! a real copy, so this wants to stay well above them (goal: ≥ 3 GB/s).
//!
//! Run: `cargo bench --bench copy_forward`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pgferry::copy::binary_stream::build;
use pgferry::copy::forward::DEFAULT_BUFFER_SIZE;
use pgferry::copy::{BinaryCopyReader, Bytes, Rechunker, TextRowCounter};
use std::hint::black_box;

/// 16 MiB of rows shaped like a typical narrow table: int8 id, int4, timestamptz, a short
/// text, a NULL, a numeric-sized blob — 100 bytes per row including the framing. The size fits
/// in the L3 cache, as frames just read from a socket would be; a set far larger than the
/// caches measures the machine's memory bandwidth instead of this code.
fn frames() -> (Vec<Bytes>, usize) {
    let mut frames = Vec::new();
    let mut total = 0;
    let header = Bytes::from(build::header());
    total += header.len();
    frames.push(header);
    let text = b"some text value!"; // 16 bytes
    let blob = [7u8; 28];
    let mut i: u64 = 0;
    while total < 16 << 20 {
        let id = i.to_be_bytes();
        let n = (i as u32).to_be_bytes();
        let ts = (i * 1_000_000).to_be_bytes();
        let row = build::tuple(&[
            Some(&id),
            Some(&n),
            Some(&ts),
            Some(text),
            None,
            Some(&blob),
        ]);
        total += row.len();
        frames.push(Bytes::from(row));
        i += 1;
    }
    let trailer = Bytes::from(build::trailer());
    total += trailer.len();
    frames.push(trailer);
    (frames, total)
}

fn bench(c: &mut Criterion) {
    let (frames, total) = frames();
    let rows = frames.len() as u64 - 2;
    let mut group = c.benchmark_group("copy_forward");
    group.throughput(Throughput::Bytes(total as u64));
    group.sample_size(20);

    // The stream hands each frame over by value and the rechunker drops it after copying,
    // so the frames are cloned outside the timed part (`iter_batched`) and moved in.
    group.bench_function("count_merged_buffers/100B_rows", |b| {
        b.iter_batched(
            || frames.clone(),
            |frames| {
                let mut rechunker = Rechunker::new(DEFAULT_BUFFER_SIZE);
                let mut reader = BinaryCopyReader::new();
                for f in frames {
                    for buf in rechunker.push(f) {
                        reader.feed(&buf).unwrap();
                    }
                }
                if let Some(buf) = rechunker.finish() {
                    reader.feed(&buf).unwrap();
                }
                assert_eq!(reader.finish().unwrap(), rows);
                black_box(reader.bytes())
            },
            BatchSize::LargeInput,
        )
    });

    group.bench_function("forward_path/100B_rows", |b| {
        b.iter_batched(
            || frames.clone(),
            |frames| {
                let mut rechunker = Rechunker::new(DEFAULT_BUFFER_SIZE);
                let mut reader = BinaryCopyReader::new();
                let mut n = 0;
                for f in frames {
                    reader.feed(&f).unwrap();
                    for buf in rechunker.push(f) {
                        n += buf.len();
                    }
                }
                n += rechunker.finish().map_or(0, |b| b.len());
                assert_eq!(reader.finish().unwrap(), rows);
                black_box(n)
            },
            BatchSize::LargeInput,
        )
    });

    group.bench_function("rechunk_only/100B_rows", |b| {
        b.iter_batched(
            || frames.clone(),
            |frames| {
                let mut rechunker = Rechunker::new(DEFAULT_BUFFER_SIZE);
                let mut n = 0;
                for f in frames {
                    for buf in rechunker.push(f) {
                        n += buf.len();
                    }
                }
                n += rechunker.finish().map_or(0, |b| b.len());
                black_box(n)
            },
            BatchSize::LargeInput,
        )
    });

    let joined: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
    group.bench_function("binary_count_only/256KiB_buffers", |b| {
        b.iter(|| {
            let mut reader = BinaryCopyReader::new();
            for buf in joined.chunks(DEFAULT_BUFFER_SIZE) {
                reader.feed(buf).unwrap();
            }
            black_box(reader.finish().unwrap())
        })
    });

    group.bench_function("text_count_only/256KiB_buffers", |b| {
        b.iter(|| {
            let mut counter = TextRowCounter::new();
            for buf in joined.chunks(DEFAULT_BUFFER_SIZE) {
                counter.feed(buf).unwrap();
            }
            black_box(counter.rows())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
