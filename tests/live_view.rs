//! Watching a long run, on real clusters: `migrate`'s live view as JSON-lines `progress`
//! events, as plain lines when stderr is not a terminal, redrawn on a pseudo-terminal; the
//! summary per database at the end; the Prometheus endpoint read with a real HTTP request while
//! the migration streams; log lines without colours or timestamps in a pipe and each event
//! printed once with -d.

mod support;

use pgferry::localpg::Cluster;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::{fresh_db, output_text as text, pgferry, psql, shared_cluster};

/// The target: a cluster of its own (the shared one is the source; migrating a server onto
/// itself is refused, which would hide what these tests look at).
fn target() -> &'static Cluster {
    support::target_cluster()
}

/// A source database with `rows` rows in table t, and a bootstrap database on the target of
/// its own (a migration locks its bootstrap database).
fn setup(prefix: &str, rows: u32) -> (String, String) {
    let db = fresh_db(shared_cluster(), prefix);
    psql(
        shared_cluster(),
        &db,
        &format!(
            "CREATE TABLE t (id int PRIMARY KEY, v text); \
             INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, {rows}) g;"
        ),
    );
    let boot = fresh_db(target(), &format!("{prefix}_boot"));
    (db, boot)
}

fn migrate_command(db: &str, boot: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgferry"));
    cmd.args([
        "migrate",
        "-s",
        &shared_cluster().uri("postgres"),
        "-t",
        &target().uri(boot),
        "--databases",
        db,
    ])
    .args(extra)
    .env_remove("PGPASSWORD")
    .env_remove("SOURCE_SERVICE_URI")
    .env_remove("TARGET_SERVICE_URI");
    cmd
}

/// Lines of a child's stream, as they come, and all of them at the end.
fn lines_of(
    stream: impl Read + Send + 'static,
) -> (mpsc::Receiver<String>, std::thread::JoinHandle<String>) {
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    (rx, reader)
}

/// Waits (up to two minutes) for a line that `pred` accepts; kills the child if none comes.
fn wait_line(
    child: &mut Child,
    rx: &mpsc::Receiver<String>,
    what: &str,
    pred: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(line) if pred(&line) => return line,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = child.kill();
                panic!("the output ended before {what}");
            }
            _ if Instant::now() > deadline => {
                let _ = child.kill();
                panic!("no {what} within two minutes");
            }
            _ => {}
        }
    }
}

/// `GET path` with a plain TCP client: the status line and the body.
fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {response:?}"));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

fn json_line(line: &str) -> Option<Value> {
    serde_json::from_str(line).ok()
}

fn stop(boot: &str) {
    let out = pgferry(&["stop", "-t", &target().uri(boot)]);
    assert!(out.status.success(), "stop: {}", text(&out));
}

#[test]
fn json_progress_events_and_metrics_while_streaming() {
    let (db, boot) = setup("live_json", 20_000);
    let mut child = migrate_command(
        &db,
        &boot,
        &[
            "--json",
            "--progress-interval",
            "300ms",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn pgferry");
    let (rx, reader) = lines_of(child.stdout.take().expect("stdout"));
    let (_, err_reader) = lines_of(child.stderr.take().expect("stderr"));

    let metrics = wait_line(&mut child, &rx, "the metrics event", |l| {
        json_line(l).is_some_and(|v| v["type"] == "metrics")
    });
    let url = json_line(&metrics).expect("json")["data"]["url"]
        .as_str()
        .expect("url")
        .to_owned();
    let addr = url
        .strip_prefix("http://")
        .and_then(|u| u.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("unexpected metrics url {url}"))
        .to_owned();

    // Streaming: the progress event has the lag and the applied position.
    let streaming = wait_line(&mut child, &rx, "a streaming progress event", |l| {
        json_line(l).is_some_and(|v| {
            v["type"] == "progress"
                && v["data"]["phase"] == "streaming"
                && v["data"]["lag_bytes"].is_u64()
        })
    });
    let event = json_line(&streaming).expect("json");
    assert_eq!(event["data"]["database"], db.as_str(), "{event}");
    assert_eq!(event["data"]["method"], "replication", "{event}");
    assert_eq!(event["data"]["rows"], 20_000, "{event}");
    assert!(
        event["data"]["applied_lsn"]
            .as_str()
            .is_some_and(|l| l.contains('/')),
        "{event}"
    );

    // 30 transactions on the source: the apply count reaches them.
    for i in 0..30 {
        psql(
            shared_cluster(),
            &db,
            &format!("INSERT INTO t VALUES ({}, 'new')", 100_000 + i),
        );
    }
    wait_line(&mut child, &rx, "30 applied transactions", |l| {
        json_line(l).is_some_and(|v| {
            v["type"] == "progress" && v["data"]["transactions"].as_u64().is_some_and(|n| n >= 30)
        })
    });

    // The metrics endpoint, read by a real HTTP client while the migration streams.
    let (status, body) = http_get(&addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    for want in [
        format!("pgferry_database_phase{{database=\"{db}\",phase=\"streaming\"}} 1"),
        format!("pgferry_database_phase{{database=\"{db}\",phase=\"copy\"}} 0"),
        format!("pgferry_rows_copied_total{{database=\"{db}\"}} 20000"),
        format!("pgferry_replication_lag_bytes{{database=\"{db}\"}} "),
        format!("pgferry_replication_lag_seconds{{database=\"{db}\"}} "),
        format!("pgferry_apply_transactions_per_second{{database=\"{db}\"}} "),
        format!("pgferry_retries_total{{database=\"{db}\"}} 0"),
        format!("pgferry_errors_total{{database=\"{db}\"}} 0"),
    ] {
        assert!(body.contains(&want), "{want} missing in:\n{body}");
    }
    let bytes: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix(&format!("pgferry_bytes_copied_total{{database=\"{db}\"}} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no bytes copied in:\n{body}"));
    assert!(
        bytes > 20_000 * 100,
        "{bytes} bytes copied for 2 MB of rows"
    );
    let applied: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix(&format!("pgferry_applied_lsn{{database=\"{db}\"}} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no applied LSN in:\n{body}"));
    assert!(applied > 0);
    let transactions: u64 = body
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!(
                "pgferry_applied_transactions_total{{database=\"{db}\"}} "
            ))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no applied transactions in:\n{body}"));
    assert!(transactions >= 30, "{body}");
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    let (status, _) = http_get(&addr, "/");
    assert_eq!(status, "HTTP/1.1 404 Not Found");

    stop(&boot);
    let status = child.wait().expect("wait");
    let out = reader.join().expect("stdout reader");
    let err = err_reader.join().expect("stderr reader");
    assert!(status.success(), "{out}{err}");
    // The last line is the summary: one entry per database, cut over.
    let summary = out
        .lines()
        .filter_map(json_line)
        .find(|v| v["type"] == "summary")
        .unwrap_or_else(|| panic!("no summary in {out}"));
    let dbs = summary["data"]["databases"].as_array().expect("databases");
    assert_eq!(dbs.len(), 1, "{summary}");
    assert_eq!(dbs[0]["database"], db.as_str());
    assert_eq!(dbs[0]["status"], "done", "{summary}");
    assert_eq!(dbs[0]["method"], "replication");
    assert_eq!(dbs[0]["rows"], 20_000);
    assert!(
        dbs[0]["cutover_lsn"]
            .as_str()
            .is_some_and(|l| l.contains('/')),
        "{summary}"
    );
    // Every stdout line is one JSON object.
    assert!(out.lines().all(|l| json_line(l).is_some()), "{out}");
    // The endpoint is gone with the run.
    assert!(TcpStream::connect(&addr).is_err());
    assert_eq!(psql(target(), &db, "SELECT count(*) FROM t"), "20030");
}

/// `2026-12-04T14:21:09` and the like, anywhere in a line.
fn has_timestamp(line: &str) -> bool {
    let b = line.as_bytes();
    b.windows(19).any(|w| {
        w[..4].iter().all(u8::is_ascii_digit)
            && w[4] == b'-'
            && w[7] == b'-'
            && w[10] == b'T'
            && w[13] == b':'
    })
}

#[test]
fn plain_lines_in_a_pipe_and_each_event_printed_once_with_debug() {
    let (db, boot) = setup("live_plain", 2_000);
    let mut child = migrate_command(&db, &boot, &["-d", "--progress-interval", "300ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pgferry");
    let (out_rx, out_reader) = lines_of(child.stdout.take().expect("stdout"));
    let (rx, err_reader) = lines_of(child.stderr.take().expect("stderr"));
    let line = wait_line(&mut child, &rx, "a plain streaming line", |l| {
        l.starts_with(&format!("pgferry: [{db}] streaming: lag "))
    });
    assert!(line.contains("applied up to "), "{line}");
    // Printed again at the interval, as new lines.
    wait_line(&mut child, &rx, "a second streaming line", |l| {
        l.starts_with(&format!("pgferry: [{db}] streaming: lag "))
    });
    stop(&boot);
    let status = child.wait().expect("wait");
    drop(out_rx);
    let out = out_reader.join().expect("stdout");
    let err = err_reader.join().expect("stderr");
    assert!(status.success(), "{out}{err}");

    // Not a terminal: no colours, no cursor movement, no timestamps.
    assert!(!err.contains('\x1b'), "escape sequences in a pipe:\n{err}");
    assert!(!err.contains('\r'), "{err}");
    assert!(
        !err.lines().any(has_timestamp),
        "timestamps in a pipe:\n{err}"
    );
    // -d logs debug lines...
    assert!(err.lines().any(|l| l.starts_with("DEBUG")), "{err}");
    // ... but an event reaches the user once: no log line repeats a pgferry: line's text.
    let events: Vec<&str> = err
        .lines()
        .filter_map(|l| l.strip_prefix("pgferry: "))
        .map(|l| l.strip_prefix(&format!("[{db}] ")).unwrap_or(l))
        .collect();
    let logs: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("pgferry: "))
        .collect();
    for log in &logs {
        for e in &events {
            assert!(
                e.len() < 12 || !log.contains(e),
                "printed twice: {e:?} in {log:?}\n{err}"
            );
        }
    }
    // The roles are reported by the run's output, not also as log lines.
    assert!(err.contains("pgferry: role postgres: exists"), "{err}");
    assert!(!logs.iter().any(|l| l.contains("role=postgres")), "{err}");
    // Periodic reports repeat by design: the live lines ("... [3s]") and the WAL the slot
    // retains (once per streaming session, then every interval).
    let periodic = |e: &str| e.ends_with("s]") || e.starts_with("the slot retains");
    for e in events.iter().filter(|e| !periodic(e)) {
        assert_eq!(
            events.iter().filter(|x| *x == e).count(),
            1,
            "{e:?} printed more than once:\n{err}"
        );
    }
    // The summary table on stdout.
    let mut rows = out.lines();
    let head = rows.next().unwrap_or_default();
    assert!(
        head.starts_with("DATABASE") && head.ends_with("CUTOVER LSN"),
        "{out}"
    );
    let row = rows.next().unwrap_or_default();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells.first(), Some(&db.as_str()), "{out}");
    assert_eq!(cells.get(1), Some(&"replication"), "{out}");
    assert_eq!(cells.get(2), Some(&"done"), "{out}");
    assert_eq!(cells.get(3), Some(&"2000"), "{out}");
    assert!(cells.last().is_some_and(|l| l.contains('/')), "{out}");
}

/// A pseudo-terminal: the parent's end and the child's end.
#[cfg(unix)]
fn pty() -> (std::fs::File, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let (mut parent, mut child) = (0, 0);
    let size = libc::winsize {
        ws_row: 40,
        ws_col: 200,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two descriptors, which we then own.
    let rc = unsafe {
        libc::openpty(
            &mut parent,
            &mut child,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned by nobody else.
    unsafe {
        (
            std::fs::File::from_raw_fd(parent),
            std::os::fd::OwnedFd::from_raw_fd(child),
        )
    }
}

#[cfg(unix)]
#[test]
fn live_lines_redraw_in_place_on_a_terminal() {
    let (db, boot) = setup("live_tty", 2_000);
    let (parent, child_end) = pty();
    let mut cmd = migrate_command(&db, &boot, &[]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::from(child_end));
    let mut child = cmd.spawn().expect("spawn pgferry");
    // Our copy of the child's end closes with the command, so that reading ends with the child.
    drop(cmd);
    let (out_rx, out_reader) = lines_of(child.stdout.take().expect("stdout"));
    // The terminal's bytes, in chunks (redraws end lines with cursor movements, not newlines).
    let (tx, rx) = mpsc::channel::<String>();
    let screen_reader = std::thread::spawn(move || {
        let mut parent = parent;
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once the child's end is closed everywhere.
        while let Ok(n) = parent.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            let _ = tx.send(String::from_utf8_lossy(&all).into_owned());
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    let streaming = format!("pgferry: [{db}] streaming: lag ");
    wait_line(
        &mut child,
        &rx,
        "a live streaming line on the terminal",
        |screen| screen.matches(&streaming).count() >= 2,
    );
    stop(&boot);
    let status = child.wait().expect("wait");
    let screen = screen_reader.join().expect("terminal reader");
    drop(out_rx);
    let out = out_reader.join().expect("stdout");
    assert!(status.success(), "{out}{screen}");
    // Redrawn in place: the cursor goes back up and the line is cleared, rather than a new
    // line per update.
    assert!(
        screen.contains("\x1b[2K") || screen.contains("\x1b[1A"),
        "{screen:?}"
    );
    let newline_lines = screen
        .split('\n')
        .filter(|l| l.trim_start_matches('\r').starts_with(&streaming))
        .count();
    assert!(
        newline_lines < screen.matches(&streaming).count(),
        "every live update was a new line: {screen:?}"
    );
    // The log lines still read as lines, and the summary is on stdout.
    assert!(
        screen.contains(&format!("pgferry: [{db}] method replication")),
        "{screen:?}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with(&format!("{db} ")) && l.contains("done")),
        "{out}"
    );
}

#[test]
fn clone_follow_has_the_same_live_view_and_metrics() {
    let (db, _) = setup("live_clone", 3_000);
    let (s, t) = (shared_cluster().uri(&db), target().uri(&db));

    // A one-shot clone is not a long run: no metrics endpoint.
    let out = pgferry(&[
        "clone",
        "-s",
        &s,
        "-t",
        &t,
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--follow"), "{}", text(&out));

    let mut child = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args([
            "clone",
            "--follow",
            "-s",
            &s,
            "-t",
            &t,
            "--json",
            "--progress-interval",
            "300ms",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .env_remove("PGPASSWORD")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pgferry");
    let (rx, reader) = lines_of(child.stdout.take().expect("stdout"));
    let (_, err_reader) = lines_of(child.stderr.take().expect("stderr"));
    let metrics = wait_line(&mut child, &rx, "the metrics event", |l| {
        json_line(l).is_some_and(|v| v["type"] == "metrics")
    });
    let url = json_line(&metrics).expect("json")["data"]["url"]
        .as_str()
        .expect("url")
        .to_owned();
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_owned();
    let streaming = wait_line(&mut child, &rx, "a streaming progress event", |l| {
        json_line(l).is_some_and(|v| {
            v["type"] == "progress"
                && v["data"]["phase"] == "streaming"
                && v["data"]["lag_bytes"].is_u64()
        })
    });
    let event = json_line(&streaming).expect("json");
    assert_eq!(event["data"]["database"], db.as_str(), "{event}");
    assert_eq!(event["data"]["rows"], 3_000, "{event}");

    let (status, body) = http_get(&addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    for want in [
        format!("pgferry_database_phase{{database=\"{db}\",phase=\"streaming\"}} 1"),
        format!("pgferry_rows_copied_total{{database=\"{db}\"}} 3000"),
        format!("pgferry_replication_lag_bytes{{database=\"{db}\"}} "),
        format!("pgferry_applied_lsn{{database=\"{db}\"}} "),
    ] {
        assert!(body.contains(&want), "{want} missing in:\n{body}");
    }

    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(term.success());
    let status = child.wait().expect("wait");
    let out = reader.join().expect("stdout");
    let err = err_reader.join().expect("stderr");
    assert_eq!(status.code(), Some(130), "{out}{err}");
    // The summary says where it stopped: still syncing, no cutover.
    let summary = out
        .lines()
        .filter_map(json_line)
        .find(|v| v["type"] == "summary")
        .unwrap_or_else(|| panic!("no summary in {out}"));
    let dbs = &summary["data"]["databases"];
    assert_eq!(dbs[0]["status"], "syncing", "{summary}");
    assert_eq!(dbs[0]["rows"], 3_000, "{summary}");
    assert!(dbs[0]["cutover_lsn"].is_null(), "{summary}");
    let out = pgferry(&["cleanup", "-s", &s, "-t", &t]);
    assert!(out.status.success(), "{}", text(&out));
}
