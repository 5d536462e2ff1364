//! Finding the PostgreSQL server binaries on this machine.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::LocalPgError;

/// The programs a cluster cannot start without.
const REQUIRED: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// Where Debian and Ubuntu install each major version side by side.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// A directory holding `initdb`, `pg_ctl` and `postgres`, and the major version they belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgInstall {
    bin_dir: PathBuf,
    major: u32,
}

impl PgInstall {
    /// Looks, in order, at `PGFERRY_PG_BIN`, `pg_config --bindir` and the newest
    /// `/usr/lib/postgresql/<N>/bin`. An explicit `PGFERRY_PG_BIN` is never second-guessed:
    /// if it is wrong, that is the error.
    pub fn find() -> Result<PgInstall, LocalPgError> {
        if let Some(dir) = std::env::var_os("PGFERRY_PG_BIN").filter(|d| !d.is_empty()) {
            return PgInstall::from_bin_dir(dir).map_err(|e| LocalPgError::NotFound {
                searched: vec![format!("PGFERRY_PG_BIN ({e})")],
            });
        }
        let mut searched = vec!["PGFERRY_PG_BIN (not set)".to_string()];

        match pg_config_bindir() {
            Ok(dir) => match PgInstall::from_bin_dir(&dir) {
                Ok(install) => return Ok(install),
                Err(e) => searched.push(format!("`pg_config --bindir` ({e})")),
            },
            Err(why) => searched.push(format!("`pg_config --bindir` ({why})")),
        }

        let mut candidates = debian_bin_dirs(Path::new(DEBIAN_ROOT));
        if candidates.is_empty() {
            searched.push(format!("{DEBIAN_ROOT}/<N>/bin (none present)"));
        }
        // Newest first: a test suite wants the most capable server available.
        candidates.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
        for (_, dir) in candidates {
            match PgInstall::from_bin_dir(&dir) {
                Ok(install) => return Ok(install),
                Err(e) => searched.push(e.to_string()),
            }
        }
        Err(LocalPgError::NotFound { searched })
    }

    /// Uses `dir` as the bin directory, checking that the server programs are there and asking
    /// `postgres --version` for the major version.
    pub fn from_bin_dir(dir: impl Into<PathBuf>) -> Result<PgInstall, LocalPgError> {
        let bin_dir = dir.into();
        let missing: Vec<String> = REQUIRED
            .iter()
            .filter(|name| !is_executable(&bin_dir.join(name)))
            .map(|name| name.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(LocalPgError::InvalidBinDir {
                dir: bin_dir,
                missing,
            });
        }
        let major = server_major(&bin_dir.join("postgres"))?;
        Ok(PgInstall { bin_dir, major })
    }

    /// The server's major version (15 for 15.10; 9 for 9.6, which we do not otherwise support).
    pub fn major(&self) -> u32 {
        self.major
    }

    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The path of another program of this installation, such as `psql` or `pg_dump`.
    /// Not checked: the client programs are a separate package on some systems.
    pub fn tool(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The bin directory `pg_config` reports, or why there is none.
fn pg_config_bindir() -> Result<PathBuf, String> {
    let out = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run pg_config: {e}"))?;
    if !out.status.success() {
        return Err(format!("pg_config exited with {}", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let dir = text.trim();
    if dir.is_empty() {
        return Err("pg_config printed nothing".to_string());
    }
    Ok(PathBuf::from(dir))
}

/// `<root>/<N>/bin` for every numeric `<N>`, with `N`.
fn debian_bin_dirs(root: &Path) -> Vec<(u32, PathBuf)> {
    let Ok(entries) = root.read_dir() else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect()
}

/// Runs `postgres --version`; root may run it (the root check comes after option parsing).
fn server_major(postgres: &Path) -> Result<u32, LocalPgError> {
    let version_error = |detail: String| LocalPgError::Version {
        program: postgres.to_path_buf(),
        detail,
    };
    let out = Command::new(postgres)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| version_error(e.to_string()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(version_error(format!(
            "exited with {}: {}",
            out.status,
            err.trim()
        )));
    }
    parse_major(&text).ok_or_else(|| version_error(format!("unexpected output {:?}", text.trim())))
}

/// Reads the major version from `postgres (PostgreSQL) 15.10 (Debian 15.10-0+deb12u1)`.
fn parse_major(version_output: &str) -> Option<u32> {
    let rest = version_output.split("(PostgreSQL)").nth(1)?.trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_from_debian_version_line() {
        assert_eq!(
            parse_major("postgres (PostgreSQL) 15.10 (Debian 15.10-0+deb12u1)\n"),
            Some(15)
        );
        assert_eq!(parse_major("postgres (PostgreSQL) 17beta2\n"), Some(17));
        assert_eq!(parse_major("postgres (PostgreSQL) 9.6.24\n"), Some(9));
    }

    #[test]
    fn major_rejects_other_programs() {
        assert_eq!(parse_major("psql 15.10\n"), None);
        assert_eq!(parse_major("postgres (PostgreSQL) devel\n"), None);
    }

    #[test]
    fn debian_dirs_only_numeric_versions() {
        let root =
            std::env::temp_dir().join(format!("pgferry-install-test-{}", std::process::id()));
        for name in ["13", "16", "common", "16.bak"] {
            std::fs::create_dir_all(root.join(name)).unwrap();
        }
        let mut found = debian_bin_dirs(&root);
        found.sort();
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(
            found,
            vec![(13, root.join("13/bin")), (16, root.join("16/bin"))]
        );
    }

    #[test]
    fn missing_programs_are_named() {
        let err = PgInstall::from_bin_dir("/nonexistent/pgferry/bin").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent/pgferry/bin"), "{msg}");
        assert!(msg.contains("initdb, pg_ctl, postgres"), "{msg}");
    }
}
