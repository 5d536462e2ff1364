//! Logical replication: our own client for the streaming replication protocol and our own
//! pgoutput decoder.
//!
//! tokio-postgres has no replication mode and cannot take part in COPY BOTH, so this module
//! speaks the protocol itself on top of postgres-protocol's message codecs:
//! - [`protocol`]: sans-IO framing (startup, CopyBoth, XLogData, keepalives, status updates,
//!   [`Lsn`]);
//! - [`connection`]: the async driver ([`ReplicationConnection`], [`ReplicationStream`]), using
//!   the same connection settings and TLS rules as [`crate::conn`];
//! - [`command`]: the walsender commands' text (quoted names) and the answers' shapes;
//! - [`slot`]: our slots' one owner: create, inspect, drop (walsender commands and SQL);
//! - [`pgoutput`]: a pure, panic-free decoder of pgoutput messages.
//!
//! The flow of a live migration: [`ReplicationConnection::create_slot`] with an exported
//! snapshot → copy the tables under that snapshot while this connection stays idle →
//! [`ReplicationConnection::start_replication`] from the slot's consistent point → decode each
//! [`ReplicationEvent::XLogData`] with [`pgoutput::decode`] → apply → confirm with
//! [`ReplicationStream::send_status`].
//!
//! The live path on top of that: [`publication`] (our source objects and the replica identity
//! check), [`apply`] (exactly-once apply with the position in [`state`]), [`feedback`] (the
//! task owning the stream), [`triggers`] (ALWAYS/REPLICA triggers held until cutover), and
//! [`follow`] (one database from clone to cutover).

pub mod apply;
pub mod command;
pub mod connection;
pub mod ddl_capture;
pub mod feedback;
pub mod follow;
pub mod guard;
pub mod identity;
pub mod pgoutput;
pub mod protocol;
pub mod publication;
pub mod reconcile;
pub mod schema_follow;
pub mod slot;
pub mod source_watch;
pub mod spool;
/// The applier's part of the crate's state store, under its old name.
pub use crate::state::applier as state;
pub mod triggers;

pub use command::{StartOptions, SystemInfo};
pub use connection::{
    QueryResult, ReplicationConnection, ReplicationError, ReplicationEvent, ReplicationStream,
};
pub use follow::{
    cleanup, follow_database, FollowError, FollowEvent, FollowOptions, FollowOutcome,
};
pub use protocol::Lsn;
pub use slot::CreatedSlot;
