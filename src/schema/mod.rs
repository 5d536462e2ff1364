//! schema (work in progress).
