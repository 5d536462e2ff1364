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

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Update>) -> Exit {
        // Our backend on the target: after a silent cut it may live on, holding the lock.
        let mut our_pid = Store::new(&self.session.client, &self.dst.dbname)
            .backend_pid()
            .await
            .ok();
        let mut session = Some(self.session);
        let mut pending: VecDeque<Update> = VecDeque::new();
        let mut closed = false;
        let mut down_since: Option<Instant> = None;
        let mut next_attempt = Instant::now();
        let mut backoff = FIRST_BACKOFF;
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

            if session.as_ref().is_some_and(|s| s.client.is_closed()) {
                session = None;
            }
            if session.is_none() {
                let since = *down_since.get_or_insert_with(|| {
                    tracing::warn!(
                        "lost the connection to the target's bootstrap database \"{}\": \
                         reconnecting (progress is kept meanwhile)",
                        self.dst.dbname
                    );
                    Instant::now()
                });
                if closed && since.elapsed() >= GIVE_UP_AT_END {
                    tracing::error!(
                        "the target's bootstrap database \"{}\" stayed unreachable for {:.0}s at \
                         the end of the run: {} state update(s) not recorded",
                        self.dst.dbname,
                        since.elapsed().as_secs_f64(),
                        pending.len()
                    );
                    return Exit::Unreachable;
                }
                if Instant::now() < next_attempt {
                    continue;
                }
                if let Some(s) = reconnect(&self.dst).await {
                    {
                        let store = Store::new(&s.client, &self.dst.dbname);
                        match take_lock_back(&store, our_pid).await {
                            Ok(true) => {
                                tracing::info!(
                                    "reconnected to the bootstrap database \"{}\" after {:.0}s; \
                                     the run lock is held again",
                                    self.dst.dbname,
                                    since.elapsed().as_secs_f64()
                                );
                                our_pid = store.backend_pid().await.ok();
                                session = Some(s);
                                down_since = None;
                                backoff = FIRST_BACKOFF;
                            }
                            Ok(false) => {
                                tracing::error!(
                                    "another pgferry migrate took the run lock of target database \
                                     \"{}\" while this one's connection was down: this one stops \
                                     (streaming databases keep their slots; the other run goes on)",
                                    self.dst.dbname
                                );
                                let _ = self.control_tx.send(Control::Interrupt);
                                return Exit::LockLost;
                            }
                            Err(_) => {}
                        }
                    }
                }
                if session.is_none() {
                    next_attempt = Instant::now() + backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
            let Some(s) = &session else { continue };
            let store = Store::new(&s.client, &self.dst.dbname);
            // A silent network leaves a query waiting forever: past STATEMENT_LIMIT the
            // session counts as lost (dropping it ends its socket task).
            let mut stuck = false;
            while let Some(update) = pending.front() {
                match tokio::time::timeout(STATEMENT_LIMIT, store.apply(&self.id, update)).await {
                    Err(_) => {
                        stuck = true;
                        break;
                    }
                    Ok(Ok(())) => {
                        pending.pop_front();
                    }
                    Ok(Err(_)) if s.client.is_closed() => break,
                    Ok(Err(e)) => {
                        tracing::warn!("could not record progress: {e}");
                        pending.pop_front();
                    }
                }
            }
            if !stuck && poll_now && !s.client.is_closed() {
                match tokio::time::timeout(STATEMENT_LIMIT, store.stop_requested(&self.id)).await {
                    Err(_) => stuck = true,
                    Ok(Ok(Some(_))) if crate::failpoint::armed("bootstrap.drop_at_stop") => {
                        // As if the connection broke just as the request was read.
                        stuck = true;
                    }
                    Ok(Ok(Some(lag))) => {
                        if *self.control_tx.borrow() == Control::Run {
                            let _ = self.control_tx.send(Control::CutOver(lag.max(0) as u64));
                        }
                    }
                    Ok(_) => {}
                }
            }
            if stuck {
                tracing::warn!(
                    "the target's bootstrap database \"{}\" has not answered for {}s: \
                     reconnecting",
                    self.dst.dbname,
                    STATEMENT_LIMIT.as_secs()
                );
                session = None;
                continue;
            }
            if s.client.is_closed() {
                continue;
            }
            if closed && pending.is_empty() {
                if let Some(s) = session.take() {
                    return Exit::Finished(Box::new(s));
                }
            }
        }
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
