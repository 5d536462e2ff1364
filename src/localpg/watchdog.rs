//! A process that removes a cluster if we die without doing it ourselves.
//!
//! `Drop` never runs for statics (the shared cluster of a test binary), on `process::exit`, on
//! a panic with `panic = "abort"`, or when the test process is killed. A leaked server keeps its
//! port, memory and directory forever, so each cluster gets a watchdog: `sh`, in its own session
//! (so Ctrl-C in the terminal, which signals the foreground process group, does not reach it),
//! blocked reading a pipe whose only write end we hold.
//!
//! - We exit for any reason → the kernel closes the write end → `read` sees end-of-file → the
//!   watchdog stops the server and deletes the directory.
//! - `Drop` cleans up itself, then writes one line → `read` succeeds → the watchdog exits
//!   without touching anything, and we reap it.
//!
//! A pipe rather than polling `kill -0 <our pid>` because it reacts at once, cannot be fooled by
//! pid reuse, and works when the watchdog and we are different users. Rust opens pipes with
//! `O_CLOEXEC`, so no other child (the server included) inherits the write end and keeps the
//! watchdog waiting.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

use super::osuser::RunAs;
use super::LocalPgError;

/// `$1` pg_ctl, `$2` data directory, `$3` cluster root to delete, `$4` user to run pg_ctl as
/// (empty: ourselves). Signals that could reach it by accident are ignored.
const SCRIPT: &str = r#"trap '' INT HUP
if read -r _line; then exit 0; fi
if [ -f "$2/postmaster.pid" ]; then
  if [ -n "$4" ]; then
    runuser -u "$4" -- "$1" stop -D "$2" -m immediate -w -t 30
  else
    "$1" stop -D "$2" -m immediate -w -t 30
  fi
fi
rm -rf -- "$3"
"#;

pub(crate) struct Watchdog {
    child: Child,
    disarm: Option<ChildStdin>,
}

impl Watchdog {
    /// Starts watching; from now on `root` is deleted when this process ends.
    pub(crate) fn arm(
        pg_ctl: &Path,
        data_dir: &Path,
        root: &Path,
        run_as: &RunAs,
    ) -> Result<Watchdog, LocalPgError> {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(SCRIPT)
            .arg("pgferry-watchdog")
            .arg(pg_ctl)
            .arg(data_dir)
            .arg(root)
            .arg(run_as.runuser_name().unwrap_or(""))
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: the closure runs between fork and exec and calls only setsid, which is
        // async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| LocalPgError::io("start the cluster watchdog (/bin/sh)", e))?;
        let disarm = child.stdin.take();
        Ok(Watchdog { child, disarm })
    }

    /// Tells the watchdog that cleanup is done and waits for it to exit. Never panics.
    pub(crate) fn disarm(mut self) {
        if let Some(mut pipe) = self.disarm.take() {
            // If the write fails the watchdog is already gone or will see end-of-file and run
            // a harmless cleanup of a directory that no longer exists.
            let _ = pipe.write_all(b"done\n");
        }
        let _ = self.child.wait();
    }
}
