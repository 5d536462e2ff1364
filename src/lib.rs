//! pgferry: move PostgreSQL databases between servers with near-zero downtime.
//!
//! A tour of the crate (see ARCHITECTURE.md for the data flow):
//! - [`conn`]: libpq-compatible connection strings, TLS per `sslmode`, connecting.
//! - [`localpg`]: throwaway local PostgreSQL clusters (for tests, benchmarks and `pgferry demo`).
//! - [`server`]: reading a server and the privilege rules shared by `check`, preflight and the
//!   run; [`check`] prints it (`pgferry check`).
//! - [`catalog`] → [`schema`] → [`ddl`]: catalog queries → object model → SQL text.
//! - [`archive`]: `pgferry dump` / `pgferry restore` directory archives.
//! - [`cli`]: the command line (clap); the only place that maps errors to exit codes.

pub mod archive;
pub mod bench;
pub mod catalog;
pub mod cli;
pub mod clone;
pub mod compat;
pub mod conn;
pub mod copy;
pub mod ddl;
pub mod demo;
pub mod failpoint;
pub mod live;
pub mod localpg;
pub mod lsn;
pub mod metrics;
pub mod migrate;
pub mod pgerror;
pub mod progress;
pub mod quote;
pub mod replication;
pub mod schema;
pub mod script;
pub mod server;
pub mod sqlscript;
pub mod state;
pub mod units;
pub mod verify;
