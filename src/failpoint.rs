//! Failpoints: named instants where a test makes the process crash (or the bootstrap session
//! drop), to prove that a resume from exactly there gives identical data.
//!
//! Compiled in only with the `failpoints` cargo feature (the test command enables it; release
//! builds never have it): without it every function here is an empty inline. Armed through
//! the environment, so that tests drive the real binary:
//!
//! ```text
//! PGFERRY_FAILPOINTS=apply.after_commit            crash at the first hit
//! PGFERRY_FAILPOINTS=spool.append@2000,other@3     crash at the 2000th hit of spool.append
//! ```
//!
//! A crash is `std::process::abort()`: no destructor, no rollback, no goodbye to the servers,
//! the closest a process gets to `kill -9` from inside.
//!
//! The instants (each documented where it sits):
//! - `apply.after_commit`: the target committed a batch with its position, the slot was not
//!   told yet;
//! - `spool.append`: in the middle of writing a streamed transaction to its spool file;
//! - `copy.table_committed`: a table's copy committed on the target, its progress row not
//!   recorded;
//! - `schema.after_change`: a source schema change ran on the target, inside the batch that
//!   will store its position (see `replication::schema_follow`);
//! - `schema.after_copy`: a table created or rewritten on the source was copied into that
//!   batch;
//! - `bootstrap.drop_at_stop` (not a crash): the bootstrap session is dropped just as a stop
//!   request is read, so the request must survive the reconnection.

/// Crashes the process if `name` is armed and this is the armed hit.
#[inline(always)]
pub fn crash_at(name: &str) {
    if armed(name) {
        eprintln!("pgferry: failpoint {name}: crashing");
        std::process::abort();
    }
}

/// Whether `name` is armed and this is the armed hit (the caller acts). Counts the hit.
#[cfg(feature = "failpoints")]
pub fn armed(name: &str) -> bool {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static ARMED: OnceLock<HashMap<String, u64>> = OnceLock::new();
    static HITS: OnceLock<Mutex<HashMap<String, u64>>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| {
        std::env::var("PGFERRY_FAILPOINTS")
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| match s.trim().split_once('@') {
                Some((n, at)) => (n.to_owned(), at.parse().unwrap_or(1)),
                None => (s.trim().to_owned(), 1),
            })
            .collect()
    });
    let Some(at) = armed.get(name) else {
        return false;
    };
    let mut hits = HITS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let n = hits.entry(name.to_owned()).or_insert(0);
    *n += 1;
    *n == *at
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn armed(_name: &str) -> bool {
    false
}
