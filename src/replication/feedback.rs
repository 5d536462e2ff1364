//! The task that owns the replication stream: it reads and decodes messages, hands them to
//! the applier through a bounded channel, and keeps the server informed.
//!
//! The server drops a client that stays silent for `wal_sender_timeout`, and a busy applier
//! (a large transaction, a slow target) must not cause that: this loop never waits on the
//! applier. While the channel is full it stops reading (back-pressure on the server) but keeps
//! sending status updates on its timer; keepalives asking for a reply are answered at once.
//!
//! Positions reported: write = what we received; flush = apply = what the applier says is
//! applied (committed on the target, or passed while idle), never more and never backwards.

use super::apply::ApplyItem;
use super::pgoutput::{self, DecodeContext, DecodeError};
use super::{Lsn, ReplicationError, ReplicationEvent, ReplicationStream};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::{mpsc, watch};

#[derive(Debug, Error)]
pub enum PumpError {
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    #[error("could not decode a pgoutput message: {0}")]
    Decode(#[from] DecodeError),
    #[error("the server ended the replication stream")]
    Ended,
    #[error(
        "the server sent nothing for {0:?}, not even an answer to a status update asking for one"
    )]
    Silent(Duration),
}

/// How often the loop wakes to see whether there is something new to confirm.
const TICK: Duration = Duration::from_millis(250);

/// Items handed over at once at most: what one socket read brought in, usually far fewer.
/// Batches keep the per-message cost of the channel and of task wake-ups out of the hot path.
const MAX_BATCH: usize = 2048;

/// Streams until an error or until the caller drops this future (it is cancel-safe at every
/// await: an item read but not yet handed over is simply resent by the server next time,
/// since it was never confirmed). `status_interval` bounds the silence towards the server.
pub async fn pump(
    stream: &mut ReplicationStream,
    tx: mpsc::Sender<Vec<ApplyItem>>,
    applied: watch::Receiver<Lsn>,
    start: Lsn,
    status_interval: Duration,
    proto_version: u32,
) -> Result<(), PumpError> {
    let mut ctx = DecodeContext::new(proto_version);
    let mut pending: Option<Vec<ApplyItem>> = None;
    let mut received = start;
    let mut confirmed = *applied.borrow();
    let mut last_status = Instant::now();
    // A silent network (no reset, no close) would leave us waiting forever: a periodic status
    // update asks for an answer, and no answer for this long counts as a dropped connection.
    let silence_limit = status_interval * 3 + Duration::from_secs(10);
    let mut last_heard = Instant::now();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            permit = tx.reserve(), if pending.is_some() => {
                let Ok(permit) = permit else {
                    // The applier is gone (it failed; its error is reported by the caller).
                    return Ok(());
                };
                if let Some(item) = pending.take() {
                    permit.send(item);
                }
            }
            event = stream.next_event(), if pending.is_none() => {
                last_heard = Instant::now();
                let Some(mut event) = event? else {
                    return Err(PumpError::Ended);
                };
                // This event and whatever else the same socket read brought in.
                let mut items = Vec::new();
                loop {
                    match event {
                        ReplicationEvent::XLogData { wal_start, data, .. } => {
                            let message = pgoutput::decode(&data, &ctx)?;
                            ctx.observe(&message);
                            received = received.max(wal_start);
                            items.push(ApplyItem::Message(message));
                        }
                        ReplicationEvent::Keepalive { wal_end, reply_requested, .. } => {
                            received = received.max(wal_end);
                            items.push(ApplyItem::Caught(wal_end));
                            if reply_requested {
                                confirmed = *applied.borrow();
                                stream.send_status(received.max(confirmed), confirmed, confirmed, false).await?;
                                last_status = Instant::now();
                            }
                        }
                    }
                    if items.len() >= MAX_BATCH {
                        break;
                    }
                    match stream.buffered_event()? {
                        Some(next) => event = next,
                        None => break,
                    }
                }
                pending = Some(items);
            }
            _ = tick.tick() => {
                if pending.is_some() {
                    // Not reading (the applier is behind): silence says nothing.
                    last_heard = Instant::now();
                } else if last_heard.elapsed() >= silence_limit {
                    return Err(PumpError::Silent(last_heard.elapsed()));
                }
                let now_applied = *applied.borrow();
                let periodic = last_status.elapsed() >= status_interval;
                if now_applied > confirmed || periodic {
                    confirmed = confirmed.max(now_applied);
                    let ask = periodic && last_heard.elapsed() >= status_interval;
                    stream.send_status(received.max(confirmed), confirmed, confirmed, ask).await?;
                    last_status = Instant::now();
                }
            }
        }
    }
}
