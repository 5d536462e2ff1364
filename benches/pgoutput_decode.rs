//! The CPU cost of decoding pgoutput without any server: a stream of Insert and Update messages
//! shaped like pgbench's `pgbench_accounts` rows (int4 aid, int4 bid, int4 abalance, an 84-byte
//! char filler, all in text format, ~130 bytes per message), decoded one XLogData payload at a
//! time as the apply loop does. Throughput is in bytes of pgoutput per second; the goal is
//! ≥ 1 GB/s per core so that decoding never limits replication.
//!
//! Run: `cargo bench --bench pgoutput_decode`.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pgferry::replication::pgoutput::{
    decode, encode, DecodeContext, Insert, Message, Tuple, Update, Value,
};
use std::hint::black_box;

/// 16 MiB of messages, each its own `Bytes` slice of one buffer (as XLogData payloads are
/// slices of the read buffer).
fn messages() -> (Vec<Bytes>, usize) {
    let filler = Bytes::from(vec![b' '; 84]);
    let mut raw = Vec::new();
    let mut bounds = Vec::new();
    let mut i: u64 = 0;
    while raw.len() < 16 << 20 {
        let row = Tuple(vec![
            Value::Text(Bytes::from((i + 1).to_string())),
            Value::Text(Bytes::from((i / 100_000 + 1).to_string())),
            Value::Text(Bytes::from(((i * 7919) % 10_000).to_string())),
            Value::Text(filler.clone()),
        ]);
        let message = if i % 2 == 0 {
            Message::Insert(Insert {
                xid: None,
                relation: 16_398,
                new: row,
            })
        } else {
            Message::Update(Update {
                xid: None,
                relation: 16_398,
                old: None,
                new: row,
            })
        };
        let start = raw.len();
        raw.extend_from_slice(&encode::message(&message));
        bounds.push(start..raw.len());
        i += 1;
    }
    let total = raw.len();
    let all = Bytes::from(raw);
    (bounds.into_iter().map(|r| all.slice(r)).collect(), total)
}

fn bench(c: &mut Criterion) {
    let (messages, total) = messages();
    let ctx = DecodeContext::new(2);
    let mut group = c.benchmark_group("pgoutput_decode");
    group.throughput(Throughput::Bytes(total as u64));
    group.sample_size(20);
    group.bench_function("pgbench_accounts insert+update", |b| {
        b.iter(|| {
            let mut columns = 0usize;
            for m in &messages {
                match decode(black_box(m), &ctx) {
                    Ok(Message::Insert(i)) => columns += i.new.0.len(),
                    Ok(Message::Update(u)) => columns += u.new.0.len(),
                    other => panic!("unexpected {other:?}"),
                }
            }
            black_box(columns)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
