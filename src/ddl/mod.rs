//! Model → SQL text. The only place that quotes identifiers and literals ([`quote`]).
//!
//! Renderers are pure: every piece of server-side deparsing (expressions, index, constraint,
//! view and function definitions) was fetched by [`crate::catalog`] in batch, so this module
//! only assembles statements.

pub mod extras;
pub mod internals;
pub mod privileges;
pub mod render;

pub use crate::quote::{qualified, quote_ident, quote_literal};
pub use render::{constraint_using_index, render_object, tablespace_of, ConstraintViaIndex};
