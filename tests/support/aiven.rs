//! A stand-in for Aiven's `aiven_extras` extension, written here from its published interface
//! (not the extension's code): the functions aiven-db-migrate and a managed-service user call.
//!
//! - `aiven_extras.pg_create_publication_for_all_tables(name, publish)` and
//!   `aiven_extras.pg_create_publication(name, publish, VARIADIC tables)`: create the
//!   publication as the extension's superuser, then give it to `session_user`, so that the
//!   user who asked for it owns it (and can drop it).
//! - `aiven_extras.session_replication_role(text) RETURNS text`: sets the parameter for the
//!   session (SECURITY DEFINER, so a user who may not set it can) and returns its new value.
//!
//! It is marked trusted, so a user with CREATE on a database may create it there, as the
//! service's admin user can with the real one. Installing means writing into the server's
//! share directory: `None` when that is not possible (not root), and the caller says SKIPPED.

use pgferry::localpg::PgInstall;
use std::path::PathBuf;

/// The stand-in's files (tests/fixtures/aiven_extras, also used by benches/replication_drain.sh).
const CONTROL: &str = include_str!("../fixtures/aiven_extras/aiven_extras.control");
const SCRIPT: &str = include_str!("../fixtures/aiven_extras/aiven_extras--1.0.sql");

/// The installation's share directory (`pg_config --sharedir`, or next to its bin folder).
fn share_dir(install: &PgInstall) -> Option<PathBuf> {
    if let Ok(out) = std::process::Command::new(install.tool("pg_config"))
        .arg("--sharedir")
        .output()
    {
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success() && !dir.is_empty() {
            return Some(PathBuf::from(dir));
        }
    }
    let root = install.tool("postgres").parent()?.parent()?.to_path_buf();
    ["share/postgresql", "share"]
        .iter()
        .map(|s| root.join(s))
        .find(|d| d.join("extension").is_dir())
}

/// Installs the stand-in into `install`'s extension directory.
pub fn install_stand_in(install: &PgInstall) -> Option<()> {
    let dir = share_dir(install)?.join("extension");
    std::fs::write(dir.join("aiven_extras.control"), CONTROL).ok()?;
    std::fs::write(dir.join("aiven_extras--1.0.sql"), SCRIPT).ok()?;
    Some(())
}
