//! The replication drain's lower bound on one machine: stream a logical slot through our
//! replication connection and pgoutput decoder up to a position, apply nothing, confirm
//! nothing (the slot keeps its position, so the same backlog can then be drained for real).
//! Used by benches/replication_drain.sh to show how much of a drain the source's walsender
//! costs by itself.
//!
//! usage: stream_floor CONNINFO SLOT PUBLICATION END_LSN [binary]
use pgferry::conn::ConnConfig;
use pgferry::replication::pgoutput::{self, DecodeContext};
use pgferry::replication::{Lsn, ReplicationConnection, ReplicationEvent, StartOptions};
use std::time::Instant;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        return Err("usage: stream_floor CONNINFO SLOT PUBLICATION END_LSN [binary]".into());
    }
    let cfg = ConnConfig::from_conn_str(&args[1])?;
    let end: Lsn = args[4].parse().map_err(|_| "END_LSN: not an LSN")?;
    let options = StartOptions {
        proto_version: 1,
        publication_names: vec![args[3].clone()],
        binary: args.get(5).is_some_and(|b| b == "binary"),
        streaming: false,
        messages: false,
    };
    let started = Instant::now();
    let repl = ReplicationConnection::connect(&cfg).await?;
    let mut stream = repl.start_with(&args[2], Lsn(0), &options).await?;
    let ctx = DecodeContext::new(1);
    let (mut messages, mut bytes) = (0u64, 0u64);
    while let Some(event) = stream.next_event().await? {
        match event {
            ReplicationEvent::XLogData {
                wal_start, data, ..
            } => {
                pgoutput::decode(&data, &ctx)?;
                messages += 1;
                bytes += data.len() as u64;
                if wal_start >= end {
                    break;
                }
            }
            ReplicationEvent::Keepalive { wal_end, .. } if wal_end >= end => break,
            _ => {}
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    drop(stream);
    println!("{elapsed:.3} {messages} {bytes}");
    Ok(())
}
