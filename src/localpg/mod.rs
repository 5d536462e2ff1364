//! Throwaway local PostgreSQL clusters, for tests, benchmarks and `pgferry demo`.
//!
//! [`PgInstall::find`] locates the server binaries (`initdb`, `pg_ctl`, `postgres`);
//! [`Cluster::start`] runs `initdb` into a fresh temporary directory, writes a configuration
//! suited to migrations (logical WAL, many replication slots, no fsync) and starts the server on
//! a free TCP port of 127.0.0.1. Dropping the [`Cluster`] stops the server and deletes the
//! directory.
//!
//! Two facts of the environment shape this module:
//! - PostgreSQL refuses to run as root. When we are root, the directory is handed to the
//!   `postgres` OS user and every server program runs through `runuser -u postgres --`
//!   (see [`osuser`]).
//! - `Drop` does not run for statics, on `process::exit` or on SIGKILL, and a leaked server keeps
//!   its port and memory until the machine reboots. So every cluster also gets a small watchdog
//!   process that outlives us and cleans up when our end of a pipe closes (see [`watchdog`]).
//!
//! Everything here is synchronous (`std::process`): starting a cluster is a handful of short
//! subprocesses, and callers include plain `#[test]` functions.

mod cluster;
mod conf;
mod error;
mod install;
mod osuser;
mod watchdog;

pub use cluster::{Cluster, ClusterOptions, TlsFiles};
pub use error::LocalPgError;
pub use install::PgInstall;
