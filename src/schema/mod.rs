//! The schema model: dumpable objects with dependencies, a stable topological order, and
//! pg_dump's split into pre-data (before the data is loaded) and post-data (indexes,
//! PRIMARY KEY/UNIQUE/EXCLUDE constraints, foreign keys, triggers, rules, policies, NOT VALID
//! checks, default privileges).
//!
//! The script builder ([`crate::script`]) runs the whole pipeline: [`crate::catalog`] →
//! [`Model`] → [`order`] → [`crate::ddl`]. Nothing here renders SQL.

mod build;
mod cycles;
mod make;
mod object;
mod options;
mod order;

pub use build::Model;
pub use object::{Item, Object, ObjectKind, Section};
pub use options::{DumpOptions, SectionFilter, SubscriptionMode};
pub use order::order;
