//! The pgferry binary as a child process that runs while a test acts around it: its stderr
//! lines are collected (for assertion messages) and handed to the test one by one (to wait
//! for a stage such as "streaming from"), and it can be signalled like an operator would.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// A running pgferry whose stderr lines are collected.
pub struct Ferry {
    /// The process itself, for a test that polls or kills it on its own terms.
    pub child: Child,
    lines: mpsc::Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Ferry {
    /// Starts `pgferry args` with a clean environment ([`super::pgferry_command`]); stdout is
    /// discarded.
    pub fn spawn(args: &[&str]) -> Ferry {
        let mut child = super::pgferry_command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pgferry");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        Ferry { child, lines, log }
    }

    /// Everything it wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits for a stderr line containing every one of `what` and returns it; panics with
    /// the process's status and stderr when none comes within `limit`.
    pub fn wait_for(&mut self, what: &[&str], limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if what.iter().all(|w| line.contains(w)) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "no line with {what:?} from pgferry within {limit:?}; status {:?}; stderr:\n{}",
                    self.child.try_wait(),
                    self.log()
                ),
            }
        }
    }

    /// SIGKILL: no chance to commit, roll back or say goodbye.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, as an operator's Ctrl-C or a service manager would send.
    pub fn terminate(&mut self) {
        let term = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(term.success());
    }

    /// Waits for it to exit; returns its status and all of its stderr. Kills it and panics
    /// when it is still running after `limit`.
    pub fn wait(mut self, limit: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader thread drain what is left.
                std::thread::sleep(Duration::from_millis(200));
                return (status, self.log());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("pgferry did not exit within {limit:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
