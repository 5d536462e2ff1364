//! pgpass
