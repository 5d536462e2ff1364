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

const CONTROL: &str = "comment = 'pgferry test stand-in for aiven_extras'\n\
                       default_version = '1.0'\n\
                       schema = aiven_extras\n\
                       relocatable = false\n\
                       superuser = true\n\
                       trusted = true\n";

const SCRIPT: &str = "\
GRANT USAGE ON SCHEMA aiven_extras TO PUBLIC;
CREATE FUNCTION aiven_extras.pg_create_publication_for_all_tables(
    arg_publication_name text, arg_publish text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
  EXECUTE format('CREATE PUBLICATION %I FOR ALL TABLES WITH (publish = %L)',
                 arg_publication_name, arg_publish);
  EXECUTE format('ALTER PUBLICATION %I OWNER TO %I', arg_publication_name, session_user);
END $$;
CREATE FUNCTION aiven_extras.pg_create_publication(
    arg_publication_name text, arg_publish text,
    VARIADIC arg_tables text[] DEFAULT ARRAY[]::text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
  EXECUTE format('CREATE PUBLICATION %I FOR TABLE %s WITH (publish = %L)',
                 arg_publication_name, array_to_string(arg_tables, ', '), arg_publish);
  EXECUTE format('ALTER PUBLICATION %I OWNER TO %I', arg_publication_name, session_user);
END $$;
CREATE FUNCTION aiven_extras.session_replication_role(arg_parameter text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
  RETURN set_config('session_replication_role', arg_parameter, false);
END $$;
";

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
