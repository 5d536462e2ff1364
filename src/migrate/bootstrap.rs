//! The running migrate's session with the target's bootstrap database: it holds the run lock,
//! writes the state updates in order, and polls for `pgferry stop`'s requests.
//!
//! A migration runs for days and this connection breaks like any other (network cuts, a
//! failover, an idle timeout). Without it the run could not be stopped, `status` went stale
//! and a second `migrate` could start beside the first. So one task owns it and keeps it:
//!
//! - **Reconnect with backoff** (1 s doubling to 10 s), for as long as the run lasts. Updates
//!   wait in memory meanwhile, in order, and are written once the session is back.
//! - **The lock first.** Right after reconnecting, before writing anything, the task takes the
//!   run lock again. If another process took it during the outage (a second `migrate` started
//!   because the lock looked free), this run must not go on beside it: the task asks the run
//!   to stop (as Ctrl-C would: streaming databases keep their slots) and reports
//!   [`Exit::LockLost`].
//! - An update refused by the server for another reason (not a lost connection) is logged and
//!   dropped: the state is a report, and the data path never waits for it.
//!
//! Invariant: while the task runs, either it holds the run lock on its current session or it
//! is reconnecting and writes nothing.

use super::Control;
use crate::conn::{connect, ConnConfig, Session};
use crate::state::migration::{Store, StoreError, Update};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How the task ended.
pub enum Exit {
    /// The update channel closed; everything sent was written (or logged as refused). The
    /// session still holds the run lock.
    Finished(Box<Session>),
    /// Another process holds the run lock; this run was asked to stop.
    LockLost,
    /// The run ended while the bootstrap database could not be reached for
    /// [`GIVE_UP_AT_END`]: the last updates are lost (the data is not).
    Unreachable,
}

/// What the task is given.
pub struct Keeper {
    pub dst: ConnConfig,
    pub id: String,
    /// The session that already holds the run lock.
    pub session: Session,
    /// Steering from the caller (Ctrl-C), relayed to `control_tx` along with stop requests.
    pub control_in: watch::Receiver<Control>,
    pub control_tx: watch::Sender<Control>,
}

const POLL: Duration = Duration::from_secs(1);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long one statement on the bootstrap session may take before the session counts as
/// lost (a silent network never errors).
const STATEMENT_LIMIT: Duration = Duration::from_secs(30);
/// Once the run is over, how long to keep trying to write its last updates.
pub const GIVE_UP_AT_END: Duration = Duration::from_secs(60);

impl Keeper {
    /// Starts the task; updates go through the returned sender.
    pub fn spawn(self) -> (mpsc::UnboundedSender<Update>, JoinHandle<Exit>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, tokio::spawn(self.run(rx)))
    }

    /// The task: takes updates and steering as they come, keeps the session (see the module
    /// documentation), writes the updates in order and polls for stop requests.
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Update>) -> Exit {
        let mut link = Link {
            // Our backend on the target: after a silent cut it may live on, holding the lock.
            our_pid: Store::new(&self.session.client, &self.dst.dbname)
                .backend_pid()
                .await
                .ok(),
            session: Some(self.session),
            down_since: None,
            next_attempt: Instant::now(),
            backoff: FIRST_BACKOFF,
        };
        let mut pending: VecDeque<Update> = VecDeque::new();
        let mut closed = false;
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut control_open = true;
        loop {
            let mut poll_now = false;
            tokio::select! {
                update = rx.recv(), if !closed => match update {
                    Some(u) => {
                        pending.push_back(u);
                        // Whatever else is queued, in one go.
                        while let Ok(u) = rx.try_recv() {
                            pending.push_back(u);
                        }
                    }
                    None => closed = true,
                },
                changed = self.control_in.changed(), if control_open => {
                    if changed.is_err() {
                        control_open = false;
                    } else {
                        let value = *self.control_in.borrow();
                        let _ = self.control_tx.send(value);
                    }
                }
                _ = poll.tick() => poll_now = true,
            }

            if link.session.as_ref().is_some_and(|s| s.client.is_closed()) {
                link.session = None;
            }
            if link.session.is_none() {
                match link
                    .restore(&self.dst, &self.control_tx, closed, pending.len())
                    .await
                {
                    Restored::Up => {}
                    Restored::Later => continue,
                    Restored::Exit(exit) => return exit,
                }
            }
            let Some(s) = &link.session else { continue };
            let store = Store::new(&s.client, &self.dst.dbname);
            // A silent network leaves a query waiting forever: past STATEMENT_LIMIT the
            // session counts as lost (dropping it ends its socket task).
            let mut stuck = write_pending(&store, &s.client, &self.id, &mut pending).await;
            if !stuck && poll_now && !s.client.is_closed() {
                stuck = poll_stop_request(&store, &self.id, &self.control_tx).await;
            }
            if stuck {
                tracing::warn!(
                    "the target's bootstrap database \"{}\" has not answered for {}s: \
                     reconnecting",
                    self.dst.dbname,
                    STATEMENT_LIMIT.as_secs()
                );
                link.session = None;
                continue;
            }
            if s.client.is_closed() {
                continue;
            }
            if closed && pending.is_empty() {
                if let Some(s) = link.session.take() {
                    return Exit::Finished(Box::new(s));
                }
            }
        }
    }
}

/// The bootstrap session, and how far its reconnection is while it is down.
struct Link {
    session: Option<Session>,
    /// Our backend on the target: after a silent cut it may live on, holding the lock.
    our_pid: Option<i32>,
    down_since: Option<Instant>,
    next_attempt: Instant,
    backoff: Duration,
}

/// What an attempt to bring the session back gave.
enum Restored {
    /// The session is back and holds the run lock again.
    Up,
    /// Still down; try again on a later turn.
    Later,
    /// The task ends.
    Exit(Exit),
}

impl Link {
    /// With the session down: reconnects (with backoff) and takes the run lock back first.
    /// Gives up when the run is over (`closed`) and the database stayed unreachable for
    /// [`GIVE_UP_AT_END`]; stops the run when another process took the lock.
    async fn restore(
        &mut self,
        dst: &ConnConfig,
        control_tx: &watch::Sender<Control>,
        closed: bool,
        pending: usize,
    ) -> Restored {
        let since = *self.down_since.get_or_insert_with(|| {
            tracing::warn!(
                "lost the connection to the target's bootstrap database \"{}\": \
                 reconnecting (progress is kept meanwhile)",
                dst.dbname
            );
            Instant::now()
        });
        if closed && since.elapsed() >= GIVE_UP_AT_END {
            tracing::error!(
                "the target's bootstrap database \"{}\" stayed unreachable for {:.0}s at \
                 the end of the run: {} state update(s) not recorded",
                dst.dbname,
                since.elapsed().as_secs_f64(),
                pending
            );
            return Restored::Exit(Exit::Unreachable);
        }
        if Instant::now() < self.next_attempt {
            return Restored::Later;
        }
        if let Some(s) = reconnect(dst).await {
            let store = Store::new(&s.client, &dst.dbname);
            match take_lock_back(&store, self.our_pid).await {
                Ok(true) => {
                    tracing::info!(
                        "reconnected to the bootstrap database \"{}\" after {:.0}s; \
                         the run lock is held again",
                        dst.dbname,
                        since.elapsed().as_secs_f64()
                    );
                    self.our_pid = store.backend_pid().await.ok();
                    self.session = Some(s);
                    self.down_since = None;
                    self.backoff = FIRST_BACKOFF;
                    return Restored::Up;
                }
                Ok(false) => {
                    tracing::error!(
                        "another pgferry migrate took the run lock of target database \
                         \"{}\" while this one's connection was down: this one stops \
                         (streaming databases keep their slots; the other run goes on)",
                        dst.dbname
                    );
                    let _ = control_tx.send(Control::Interrupt);
                    return Restored::Exit(Exit::LockLost);
                }
                Err(_) => {}
            }
        }
        self.next_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        Restored::Later
    }
}

/// Writes the pending updates in order. An update the server refuses (the session alive) is
/// logged and dropped; a lost session keeps the rest for later. True when a statement took
/// longer than [`STATEMENT_LIMIT`] (the session counts as lost).
async fn write_pending(
    store: &Store<'_>,
    client: &tokio_postgres::Client,
    id: &str,
    pending: &mut VecDeque<Update>,
) -> bool {
    while let Some(update) = pending.front() {
        match tokio::time::timeout(STATEMENT_LIMIT, store.apply(id, update)).await {
            Err(_) => return true,
            Ok(Ok(())) => {
                pending.pop_front();
            }
            Ok(Err(_)) if client.is_closed() => break,
            Ok(Err(e)) => {
                tracing::warn!("could not record progress: {e}");
                pending.pop_front();
            }
        }
    }
    false
}

/// Reads `pgferry stop`'s request and turns it into [`Control::CutOver`] (unless the run is
/// already steered otherwise). True when the session counts as lost.
async fn poll_stop_request(
    store: &Store<'_>,
    id: &str,
    control_tx: &watch::Sender<Control>,
) -> bool {
    match tokio::time::timeout(STATEMENT_LIMIT, store.stop_requested(id)).await {
        Err(_) => true,
        // As if the connection broke just as the request was read.
        Ok(Ok(Some(_))) if crate::failpoint::armed("bootstrap.drop_at_stop") => true,
        Ok(Ok(Some(lag))) => {
            if *control_tx.borrow() == Control::Run {
                let _ = control_tx.send(Control::CutOver(lag.max(0) as u64));
            }
            false
        }
        Ok(_) => false,
    }
}

/// Takes the run lock on a new session. When the holder is our own earlier backend (the
/// connection was cut without the server noticing), that backend is ended first: it is
/// ours, and nothing else could stop it from holding the lock for hours.
async fn take_lock_back(store: &Store<'_>, our_pid: Option<i32>) -> Result<bool, StoreError> {
    if store.try_lock().await? {
        return Ok(true);
    }
    let holder = store.lock_holder().await?;
    if holder.is_none() || holder != our_pid {
        // Released meanwhile, or another process: one more try decides.
        return store.try_lock().await;
    }
    if let Some(pid) = our_pid {
        tracing::info!("ending our own earlier session (PID {pid}) that still holds the run lock");
        store.end_backend(pid).await?;
    }
    for _ in 0..20 {
        if store.try_lock().await? {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(false)
}

async fn reconnect(dst: &ConnConfig) -> Option<Session> {
    match connect(dst).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::debug!("bootstrap database: {e}");
            None
        }
    }
}
