//! ddl (work in progress).
