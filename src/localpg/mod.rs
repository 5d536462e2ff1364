//! localpg (work in progress).
