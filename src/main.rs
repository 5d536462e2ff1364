//! The `pgferry` binary: all behaviour lives in the library; this only hands over the arguments
//! and turns the outcome into an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    pgferry::cli::main_with_args(std::env::args_os().collect())
}
