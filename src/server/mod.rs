//! What pgferry knows about a server before it acts on it: [`inspect`] reads it (one short
//! read-only session), [`access`] holds the privilege rules that `check`, migrate's preflight
//! and the run share. Commands (`check`, `migrate`, `clone`) use this module; it uses none of
//! them.

pub mod access;
mod inspect;

pub use inspect::{
    inspect, replication_blockers, CheckError, DatabaseReport, ServerReport, TlsReport, UserReport,
};
