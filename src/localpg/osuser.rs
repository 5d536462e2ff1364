//! Running server programs as a user PostgreSQL accepts.
//!
//! `initdb`, `pg_ctl` and `postgres` all refuse to run as root, and the server insists that its
//! data directory (and TLS key) belong to the user it runs as. When we are root we therefore
//! hand the cluster directory and everything we write into it to the `postgres` OS user and
//! run the programs through `runuser -u postgres --`. Otherwise everything runs as ourselves.

use std::ffi::CString;
use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::LocalPgError;

/// The OS user the server runs as when we are root.
const SERVER_USER: &str = "postgres";

/// Who runs the server programs and owns the cluster's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RunAs {
    /// Not root: programs run directly and our files are already ours.
    Myself,
    /// Root: programs run through `runuser`, files are chowned to this uid/gid.
    ServerUser { uid: u32, gid: u32 },
}

impl RunAs {
    pub(crate) fn detect() -> Result<RunAs, LocalPgError> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(RunAs::Myself);
        }
        let (uid, gid) = lookup_user(SERVER_USER).ok_or(LocalPgError::NoPostgresUser)?;
        Ok(RunAs::ServerUser { uid, gid })
    }

    /// The user name to pass to `runuser`, if programs must switch user.
    pub(crate) fn runuser_name(&self) -> Option<&'static str> {
        match self {
            RunAs::Myself => None,
            RunAs::ServerUser { .. } => Some(SERVER_USER),
        }
    }

    /// A command that runs `program` as the server user, with stdin closed.
    pub(crate) fn command(&self, program: &Path) -> Command {
        let mut cmd = match self {
            RunAs::Myself => Command::new(program),
            RunAs::ServerUser { .. } => {
                let mut cmd = Command::new(runuser_path());
                cmd.args(["-u", SERVER_USER, "--"]).arg(program);
                cmd
            }
        };
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Gives `path` to the server user (no-op when not root).
    pub(crate) fn hand_over(&self, path: &Path) -> Result<(), LocalPgError> {
        match self {
            RunAs::Myself => Ok(()),
            RunAs::ServerUser { uid, gid } => {
                std::os::unix::fs::chown(path, Some(*uid), Some(*gid))
                    .map_err(|e| LocalPgError::io(format!("chown {}", path.display()), e))
            }
        }
    }

    /// Creates a directory only its owner can enter (the server checks for 0700 or 0750),
    /// owned by the server user.
    pub(crate) fn create_private_dir(&self, path: &Path) -> Result<(), LocalPgError> {
        DirBuilder::new()
            .mode(0o700)
            .create(path)
            .map_err(|e| LocalPgError::io(format!("create {}", path.display()), e))?;
        self.hand_over(path)
    }

    /// Writes `contents` to `path` with `mode`, owned by the server user. The mode is set on
    /// open, so a key file is never readable by others even for a moment.
    pub(crate) fn write_file(
        &self,
        path: &Path,
        contents: &[u8],
        mode: u32,
    ) -> Result<(), LocalPgError> {
        let io_err = |e| LocalPgError::io(format!("write {}", path.display()), e);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path)
            .map_err(io_err)?;
        // `mode` on open only applies to new files; an existing one keeps its old bits.
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io_err)?;
        file.write_all(contents).map_err(io_err)?;
        drop(file);
        self.hand_over(path)
    }

    /// Appends to a file the server user already owns (root keeps the owner when appending).
    pub(crate) fn append_file(&self, path: &Path, contents: &[u8]) -> Result<(), LocalPgError> {
        let io_err = |e| LocalPgError::io(format!("append to {}", path.display()), e);
        let mut file = OpenOptions::new().append(true).open(path).map_err(io_err)?;
        file.write_all(contents).map_err(io_err)
    }
}

/// `runuser` lives in /usr/sbin, which is not on every root PATH (e.g. `sudo -E`).
fn runuser_path() -> PathBuf {
    let sbin = Path::new("/usr/sbin/runuser");
    if sbin.exists() {
        sbin.to_path_buf()
    } else {
        PathBuf::from("runuser")
    }
}

/// The uid and gid of `name`, via the re-entrant lookup (tests start clusters from many threads).
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let cname = CString::new(name).ok()?;
    let mut buf: Vec<libc::c_char> = vec![0; 4096];
    loop {
        // SAFETY: `passwd` is plain data; an all-zero value is a valid placeholder that
        // getpwnam_r overwrites.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the duration of the call and `buf.len()` is the
        // true size of `buf`; the strings in `pwd` point into `buf`, which we do not read.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() {
            return None;
        }
        return Some((pwd.pw_uid, pwd.pw_gid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_user_exists_and_unknown_user_does_not() {
        assert_eq!(lookup_user("root"), Some((0, 0)));
        assert_eq!(lookup_user("pgferry-no-such-user"), None);
    }

    #[test]
    fn written_files_get_the_requested_mode() {
        let dir = std::env::temp_dir().join(format!("pgferry-osuser-test-{}", std::process::id()));
        let run_as = RunAs::detect().unwrap();
        run_as.create_private_dir(&dir).unwrap();
        let key = dir.join("key");
        run_as.write_file(&key, b"secret", 0o600).unwrap();
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        let dir_mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(mode, 0o600);
        assert_eq!(dir_mode, 0o700);
    }
}
