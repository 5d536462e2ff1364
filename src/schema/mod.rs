//! The schema model: dumpable objects with dependencies, a stable topological order, and
//! pg_dump's split into pre-data (before the data is loaded) and post-data (indexes,
//! PRIMARY KEY/UNIQUE/EXCLUDE constraints, foreign keys, triggers, rules, policies, NOT VALID
//! checks, default privileges).
//!
//! [`dump_schema`] runs the whole pipeline: [`crate::catalog`] → [`Model`] → [`order`] →
//! [`crate::ddl`].

mod build;
mod cycles;
mod dump;
mod object;
mod order;
mod parallel;

pub use build::Model;
pub use dump::{
    dump_schema, dump_schema_parallel, render_script, DumpError, DumpOptions, SchemaScript,
    SectionFilter, SubscriptionMode, PREAMBLE as SESSION_SETTINGS,
};
pub use object::{Item, Object, ObjectKind, Section};
pub use order::order;
pub use parallel::{is_session_setting, PostDataUnit};
