//! The live view of a long run (`migrate`, `clone --follow`): one [`Board`] holds where each
//! database is (phase; rows and bytes copied; lag, applied position and apply rate while
//! streaming; retries and errors), fed by the copy's progress and the follow events. It is
//! read by three things, none of which changes it:
//!
//! - [`Renderer`]: on a terminal, one line per database redrawn in place; when stderr is not a
//!   terminal, a plain line per database every `--progress-interval`; with `--json`, a
//!   `progress` event per database at the same interval;
//! - the end-of-run summary ([`render_summary`], [`summary_json`]);
//! - the Prometheus endpoint ([`crate::metrics`]).
//!
//! Rows are counted when a copy job (a table or a range of it) commits; bytes as they flow.

use crate::replication::{FollowEvent, Lsn};
use crate::state::lifecycle::Phase;
use crate::units::{count, format_size};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How far back rates look.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// A rate over the last [`RATE_WINDOW`], from samples of a growing total.
#[derive(Debug, Clone, Default)]
struct Rate {
    samples: VecDeque<(Instant, u64)>,
}

impl Rate {
    fn observe(&mut self, now: Instant, total: u64) {
        // One sample per 200 ms is plenty; the newest replaces a too recent one.
        if let Some(&(t, _)) = self.samples.back() {
            if now.duration_since(t) < Duration::from_millis(200) && self.samples.len() > 1 {
                self.samples.pop_back();
            }
        }
        self.samples.push_back((now, total));
        while self
            .samples
            .front()
            .is_some_and(|&(t, _)| now.duration_since(t) > RATE_WINDOW)
            && self.samples.len() > 2
        {
            self.samples.pop_front();
        }
    }

    /// Per second, once the samples span at least half a second.
    fn per_second(&self) -> Option<f64> {
        let (&(t0, v0), &(t1, v1)) = (self.samples.front()?, self.samples.back()?);
        let secs = t1.duration_since(t0).as_secs_f64();
        (secs >= 0.5).then(|| v1.saturating_sub(v0) as f64 / secs)
    }
}

/// What the live view, the end-of-run summary and the metrics show for a database: the
/// migration phase it is in ([`Phase`], set by `migrate` and `clone` as they go), or a state it
/// ends in that is not a phase of its own: `syncing` (copied and streaming, waiting for the
/// cutover: set when a database reaches the asked lag, or when an interrupted `clone --follow`
/// leaves its stream to be resumed) and `failed`. Shown as the same words as the state store's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LivePhase {
    At(Phase),
    Syncing,
    Failed,
}

impl LivePhase {
    /// Every value, in the order a database goes through them (the metrics' series).
    pub const ALL: [LivePhase; 10] = [
        LivePhase::At(Phase::Pending),
        LivePhase::At(Phase::Schema),
        LivePhase::At(Phase::Copy),
        LivePhase::At(Phase::PostData),
        LivePhase::At(Phase::Finishing),
        LivePhase::At(Phase::Streaming),
        LivePhase::At(Phase::Cutover),
        LivePhase::Syncing,
        LivePhase::At(Phase::Done),
        LivePhase::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LivePhase::At(p) => p.as_str(),
            LivePhase::Syncing => "syncing",
            LivePhase::Failed => "failed",
        }
    }

    /// `done`, `failed` and `syncing` stop the database's clock (its time in the summary).
    fn ends_clock(self) -> bool {
        matches!(
            self,
            LivePhase::At(Phase::Done) | LivePhase::Syncing | LivePhase::Failed
        )
    }
}

impl From<Phase> for LivePhase {
    fn from(p: Phase) -> LivePhase {
        LivePhase::At(p)
    }
}

impl std::fmt::Display for LivePhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl serde::Serialize for LivePhase {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Where one database is.
#[derive(Debug, Clone)]
struct DbState {
    phase: LivePhase,
    method: Option<String>,
    tables_planned: u64,
    bytes_planned: u64,
    rows: u64,
    bytes: u64,
    copy_rate: Rate,
    lag_bytes: Option<u64>,
    lag_seconds: Option<f64>,
    applied: Option<Lsn>,
    transactions: u64,
    tx_rate: Rate,
    retries: u64,
    errors: u64,
    last_error: Option<String>,
    started: Instant,
    finished: Option<Duration>,
    cutover_lsn: Option<Lsn>,
}

impl DbState {
    fn new() -> DbState {
        DbState {
            phase: LivePhase::At(Phase::Pending),
            method: None,
            tables_planned: 0,
            bytes_planned: 0,
            rows: 0,
            bytes: 0,
            copy_rate: Rate::default(),
            lag_bytes: None,
            lag_seconds: None,
            applied: None,
            transactions: 0,
            tx_rate: Rate::default(),
            retries: 0,
            errors: 0,
            last_error: None,
            started: Instant::now(),
            finished: None,
            cutover_lsn: None,
        }
    }
}

/// One database as the views read it: a copy of its state with the rates worked out.
#[derive(Debug, Clone, PartialEq)]
pub struct DbView {
    pub database: String,
    pub phase: LivePhase,
    /// `pg_dump` (one copy) or `replication`, once known.
    pub method: Option<String>,
    pub tables_planned: u64,
    /// The copy plan's estimate (sizes of the relations on the source).
    pub bytes_planned: u64,
    /// Rows of the copy jobs committed so far.
    pub rows: u64,
    /// Bytes of COPY data moved so far.
    pub bytes: u64,
    pub bytes_per_second: Option<f64>,
    /// While copying: the estimated time left, from the plan's estimate and the rate.
    pub eta_seconds: Option<f64>,
    pub lag_bytes: Option<u64>,
    pub lag_seconds: Option<f64>,
    pub applied_lsn: Option<Lsn>,
    /// Source transactions applied on the target by this process.
    pub transactions: u64,
    pub transactions_per_second: Option<f64>,
    pub retries: u64,
    pub errors: u64,
    pub last_error: Option<String>,
    pub elapsed: Duration,
    pub cutover_lsn: Option<Lsn>,
}

impl DbView {
    fn finished(&self) -> bool {
        self.phase.ends_clock()
    }
}

/// The state of every database of a run; cheap to update from any task or thread.
#[derive(Debug, Default)]
pub struct Board {
    dbs: Mutex<BTreeMap<String, DbState>>,
}

impl Board {
    pub fn new() -> Board {
        Board::default()
    }

    fn with(&self, db: &str, f: impl FnOnce(&mut DbState)) {
        let mut dbs = self.dbs.lock().unwrap_or_else(|p| p.into_inner());
        f(dbs.entry(db.to_owned()).or_insert_with(DbState::new));
    }

    /// The database is part of the run (shown as pending until it starts).
    pub fn add(&self, db: &str) {
        self.with(db, |_| {});
    }

    pub fn method(&self, db: &str, method: &str) {
        self.with(db, |s| s.method = Some(method.to_owned()));
    }

    /// A new phase; `done`, `failed` and `syncing` end the database's clock.
    pub fn phase(&self, db: &str, phase: impl Into<LivePhase>) {
        let phase = phase.into();
        self.with(db, |s| {
            if s.phase == phase {
                return;
            }
            s.phase = phase;
            if phase.ends_clock() {
                s.finished.get_or_insert(s.started.elapsed());
            } else {
                s.finished = None;
            }
        });
    }

    pub fn planned(&self, db: &str, tables: u64, bytes: u64) {
        self.with(db, |s| {
            s.tables_planned = tables;
            s.bytes_planned = bytes;
            s.copy_rate.observe(Instant::now(), s.bytes);
        });
    }

    pub fn bytes_copied(&self, db: &str, bytes: u64) {
        self.with(db, |s| {
            s.bytes += bytes;
            s.copy_rate.observe(Instant::now(), s.bytes);
        });
    }

    pub fn job_finished(&self, db: &str, rows: u64) {
        self.with(db, |s| s.rows += rows);
    }

    /// The copy ended: its exact totals replace the running counts.
    pub fn copied(&self, db: &str, rows: u64, bytes: u64) {
        self.with(db, |s| {
            s.rows = rows;
            s.bytes = bytes;
        });
    }

    pub fn lag(&self, db: &str, bytes: u64, seconds: Option<f64>, applied: Lsn, transactions: u64) {
        self.with(db, |s| {
            s.lag_bytes = Some(bytes);
            s.lag_seconds = seconds;
            s.applied = Some(applied);
            s.transactions = transactions;
            s.tx_rate.observe(Instant::now(), transactions);
        });
    }

    pub fn retry(&self, db: &str, error: &str) {
        self.with(db, |s| {
            s.retries += 1;
            s.errors += 1;
            s.last_error = Some(error.to_owned());
        });
    }

    pub fn failed(&self, db: &str, error: &str) {
        self.with(db, |s| {
            s.errors += 1;
            s.last_error = Some(error.to_owned());
        });
        self.phase(db, LivePhase::Failed);
    }

    pub fn cut_over(&self, db: &str, at: Lsn) {
        self.with(db, |s| {
            s.cutover_lsn = Some(at);
            s.applied = Some(at);
            s.lag_bytes = Some(0);
        });
    }

    /// What a follow event changes (the messages are the caller's business).
    pub fn follow_event(&self, db: &str, event: &FollowEvent) {
        match event {
            FollowEvent::Cloned(summary) => {
                self.copied(
                    db,
                    summary.tables.iter().map(|t| t.rows).sum(),
                    summary.tables.iter().map(|t| t.bytes).sum(),
                );
                self.phase(db, Phase::Streaming);
            }
            FollowEvent::Resuming { .. } | FollowEvent::Streaming { .. } => {
                self.phase(db, Phase::Streaming)
            }
            FollowEvent::Lag {
                bytes,
                applied,
                seconds,
                transactions,
            } => self.lag(db, *bytes, *seconds, *applied, *transactions),
            FollowEvent::Retrying { error, .. } => self.retry(db, error),
            FollowEvent::CutoverStarted { .. } => self.phase(db, Phase::Cutover),
            _ => {}
        }
    }

    /// Every database, by name.
    pub fn views(&self) -> Vec<DbView> {
        let dbs = self.dbs.lock().unwrap_or_else(|p| p.into_inner());
        dbs.iter()
            .map(|(name, s)| {
                let bytes_per_second = s.copy_rate.per_second();
                let eta_seconds = match (s.phase, bytes_per_second) {
                    (LivePhase::At(Phase::Copy), Some(rate)) if rate > 0.0 => {
                        Some(s.bytes_planned.saturating_sub(s.bytes) as f64 / rate)
                    }
                    _ => None,
                };
                DbView {
                    database: name.clone(),
                    phase: s.phase,
                    method: s.method.clone(),
                    tables_planned: s.tables_planned,
                    bytes_planned: s.bytes_planned,
                    rows: s.rows,
                    bytes: s.bytes,
                    bytes_per_second,
                    eta_seconds,
                    lag_bytes: s.lag_bytes,
                    lag_seconds: s.lag_seconds,
                    applied_lsn: s.applied,
                    transactions: s.transactions,
                    transactions_per_second: s.tx_rate.per_second(),
                    retries: s.retries,
                    errors: s.errors,
                    last_error: s.last_error.clone(),
                    elapsed: s.finished.unwrap_or_else(|| s.started.elapsed()),
                    cutover_lsn: s.cutover_lsn,
                }
            })
            .collect()
    }
}

fn seconds_text(secs: f64) -> String {
    let secs = secs.max(0.0);
    if secs < 60.0 {
        format!("{secs:.0}s")
    } else if secs < 3600.0 {
        format!("{}m{:02}s", (secs / 60.0) as u64, secs as u64 % 60)
    } else {
        format!(
            "{}h{:02}m",
            (secs / 3600.0) as u64,
            (secs as u64 % 3600) / 60
        )
    }
}

/// The live line of one database (without the program name).
pub fn line(v: &DbView) -> String {
    let mut out = format!("[{}] {}", v.database, v.phase);
    match v.phase.as_str() {
        "copy" => {
            out.push_str(&format!(
                ": {} of ~{}, {}",
                format_size(v.bytes),
                format_size(v.bytes_planned),
                count(v.rows, "row")
            ));
            match v.bytes_per_second {
                Some(rate) => out.push_str(&format!(", {}/s", format_size(rate as u64))),
                None => out.push_str(", measuring the rate"),
            }
            if let Some(eta) = v.eta_seconds {
                out.push_str(&format!(", ETA {}", seconds_text(eta)));
            }
        }
        "streaming" | "cutover" => match (v.lag_bytes, v.applied_lsn) {
            (Some(lag), Some(applied)) => {
                out.push_str(&format!(": lag {}", format_size(lag)));
                match v.lag_seconds {
                    Some(s) => out.push_str(&format!(" ({s:.1}s)")),
                    None => out.push_str(" (? s)"),
                }
                out.push_str(&format!(", applied up to {applied}"));
                if let Some(rate) = v.transactions_per_second {
                    out.push_str(&format!(", {rate:.0} tx/s"));
                }
            }
            _ => out.push_str(": starting"),
        },
        "pending" => {}
        _ if v.bytes > 0 => out.push_str(&format!(
            ": copied {}, {}",
            format_size(v.bytes),
            count(v.rows, "row")
        )),
        _ => {}
    }
    if v.retries > 0 {
        out.push_str(&format!(", {}", count(v.retries, "retry")));
    }
    out.push_str(&format!(" [{}]", seconds_text(v.elapsed.as_secs_f64())));
    out
}

/// The live state of one database as a JSON object (the `progress` event's data).
pub fn view_json(v: &DbView) -> serde_json::Value {
    json!({
        "database": v.database,
        "phase": v.phase,
        "method": v.method,
        "tables_planned": v.tables_planned,
        "estimated_bytes": v.bytes_planned,
        "rows": v.rows,
        "bytes": v.bytes,
        "bytes_per_second": v.bytes_per_second,
        "eta_seconds": v.eta_seconds,
        "lag_bytes": v.lag_bytes,
        "lag_seconds": v.lag_seconds,
        "applied_lsn": v.applied_lsn.map(|l| l.to_string()),
        "transactions": v.transactions,
        "transactions_per_second": v.transactions_per_second,
        "retries": v.retries,
        "errors": v.errors,
        "last_error": v.last_error,
        "seconds": v.elapsed.as_secs_f64(),
        "cutover_lsn": v.cutover_lsn.map(|l| l.to_string()),
    })
}

/// The end-of-run table: one row per database.
pub fn render_summary(views: &[DbView]) -> String {
    use std::fmt::Write;
    let width = views
        .iter()
        .map(|v| v.database.len())
        .max()
        .unwrap_or(8)
        .clamp(8, 60);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<width$}  {:<11}  {:<9}  {:>12}  {:>10}  {:>9}  CUTOVER LSN",
        "DATABASE", "METHOD", "STATUS", "ROWS", "BYTES", "TIME"
    );
    for v in views {
        let _ = writeln!(
            out,
            "{:<width$}  {:<11}  {:<9}  {:>12}  {:>10}  {:>9}  {}",
            v.database,
            v.method.as_deref().unwrap_or("-"),
            v.phase,
            v.rows,
            format_size(v.bytes),
            format!("{:.1} s", v.elapsed.as_secs_f64()),
            v.cutover_lsn
                .map(|l| l.to_string())
                .unwrap_or_else(|| "-".into())
        );
    }
    out
}

/// The end-of-run summary as JSON: one object per database.
pub fn summary_json(views: &[DbView]) -> serde_json::Value {
    json!(views
        .iter()
        .map(|v| json!({
            "database": v.database,
            "method": v.method,
            "status": v.phase,
            "rows": v.rows,
            "bytes": v.bytes,
            "seconds": v.elapsed.as_secs_f64(),
            "cutover_lsn": v.cutover_lsn.map(|l| l.to_string()),
            "retries": v.retries,
            "errors": v.errors,
        }))
        .collect::<Vec<_>>())
}

/// How the live view is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One line per database redrawn in place (stderr is a terminal).
    Terminal,
    /// A plain line per database on stderr every interval.
    Lines,
    /// A `progress` JSON Lines event per database on stdout every interval.
    Json,
}

impl Mode {
    /// JSON when asked; else redrawn lines on a terminal, plain lines otherwise.
    pub fn detect(json: bool) -> Mode {
        if json {
            Mode::Json
        } else if std::io::stderr().is_terminal() {
            Mode::Terminal
        } else {
            Mode::Lines
        }
    }
}

/// The redrawn lines on the terminal now, if any: log lines written by [`LogWriter`] clear
/// them first and let them be redrawn below.
static ACTIVE: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// stderr for the log (tracing) lines: on a terminal with live lines, each log line is written
/// with the live lines suspended, so neither tears the other.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let active = ACTIVE.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match active {
            Some(multi) => multi.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Shows a [`Board`] while a run goes on; log lines go through [`Renderer::println`] so that
/// they do not tear the redrawn lines.
pub struct Renderer {
    mode: Mode,
    multi: Option<MultiProgress>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Renderer {
    /// Starts showing `board`: redrawn every second on a terminal, else every `interval`.
    pub fn start(
        board: Arc<Board>,
        mode: Mode,
        interval: Duration,
        json: Option<Arc<crate::progress::JsonEvents>>,
    ) -> Renderer {
        let interval = interval.max(Duration::from_millis(100));
        let multi = (mode == Mode::Terminal)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        if let Some(multi) = &multi {
            *ACTIVE.lock().unwrap_or_else(|p| p.into_inner()) = Some(multi.clone());
        }
        let task = {
            let multi = multi.clone();
            tokio::spawn(async move {
                let mut bars: HashMap<String, ProgressBar> = HashMap::new();
                let period = if mode == Mode::Terminal {
                    Duration::from_secs(1).min(interval)
                } else {
                    interval
                };
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                // The first tick is immediate: the first plain lines wait one interval.
                if mode != Mode::Terminal {
                    tick.tick().await;
                }
                loop {
                    tick.tick().await;
                    let views = board.views();
                    match (&multi, mode) {
                        (Some(multi), _) => {
                            for v in &views {
                                let bar = bars.entry(v.database.clone()).or_insert_with(|| {
                                    let bar = multi.add(ProgressBar::new_spinner());
                                    bar.set_style(
                                        ProgressStyle::with_template("pgferry: {msg}")
                                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                                    );
                                    bar
                                });
                                bar.set_message(line(v));
                            }
                        }
                        (None, Mode::Json) => {
                            if let Some(events) = &json {
                                for v in views.iter().filter(|v| !v.finished()) {
                                    events.emit("progress", view_json(v));
                                }
                            }
                        }
                        (None, _) => {
                            for v in views.iter().filter(|v| !v.finished()) {
                                eprintln!("pgferry: {}", line(v));
                            }
                        }
                    }
                }
            })
        };
        Renderer {
            mode,
            multi,
            task: Some(task),
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// A log line on stderr, above the redrawn lines.
    pub fn println(&self, text: &str) {
        match &self.multi {
            Some(multi) => {
                if multi.println(text).is_err() {
                    eprintln!("{text}");
                }
            }
            None => eprintln!("{text}"),
        }
    }

    /// Stops redrawing and removes the live lines (before the summary is printed).
    pub fn finish(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(multi) = &self.multi {
            ACTIVE.lock().unwrap_or_else(|p| p.into_inner()).take();
            let _ = multi.clear();
        }
    }
}

impl Drop for Renderer {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_line_has_rate_and_eta_and_streaming_line_has_lag() {
        let board = Board::new();
        board.method("crm", "replication");
        board.phase("crm", Phase::Copy);
        board.planned("crm", 2, 10 << 20);
        {
            let mut dbs = board.dbs.lock().unwrap();
            let s = dbs.get_mut("crm").unwrap();
            let t0 = Instant::now() - Duration::from_secs(2);
            s.copy_rate.samples = VecDeque::from([(t0, 0)]);
            s.bytes = 4 << 20;
            s.copy_rate
                .samples
                .push_back((t0 + Duration::from_secs(2), 4 << 20));
        }
        board.job_finished("crm", 1000);
        let v = &board.views()[0];
        assert_eq!(v.bytes_per_second, Some((2 << 20) as f64));
        assert_eq!(v.eta_seconds, Some(3.0));
        assert_eq!(
            line(v).split(" [").next(),
            Some("[crm] copy: 4.0 MB of ~10.0 MB, 1000 rows, 2.0 MB/s, ETA 3s")
        );

        board.follow_event(
            "crm",
            &FollowEvent::Lag {
                bytes: 2048,
                applied: Lsn(0x3000060),
                seconds: Some(0.3),
                transactions: 10,
            },
        );
        board.phase("crm", Phase::Streaming);
        let v = &board.views()[0];
        assert_eq!(
            line(v).split(" [").next(),
            Some("[crm] streaming: lag 2.0 kB (0.3s), applied up to 0/3000060")
        );
        assert_eq!(view_json(v)["lag_bytes"], 2048);
        assert_eq!(view_json(v)["applied_lsn"], "0/3000060");
    }

    #[test]
    fn rates_need_half_a_second_of_samples() {
        let mut r = Rate::default();
        let t = Instant::now();
        r.observe(t, 0);
        assert_eq!(r.per_second(), None);
        r.observe(t + Duration::from_secs(1), 100);
        r.observe(t + Duration::from_secs(2), 300);
        assert_eq!(r.per_second(), Some(150.0));
        // Old samples leave the window.
        r.observe(t + Duration::from_secs(20), 300);
        assert!(r.per_second().is_some_and(|x| x < 20.0));
    }

    #[test]
    fn summary_has_one_row_per_database() {
        let board = Board::new();
        board.method("a", "pg_dump");
        board.copied("a", 5, 2048);
        board.phase("a", Phase::Done);
        board.method("b", "replication");
        board.cut_over("b", Lsn(0x10));
        board.phase("b", Phase::Done);
        let table = render_summary(&board.views());
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].starts_with("DATABASE") && lines[0].ends_with("CUTOVER LSN"));
        assert!(lines[1].starts_with("a ") && lines[1].contains("pg_dump"));
        assert!(lines[1].contains("2.0 kB") && lines[1].ends_with('-'));
        assert!(lines[2].ends_with("0/10"), "{table}");
        let json = summary_json(&board.views());
        assert_eq!(json[1]["cutover_lsn"], "0/10");
        assert_eq!(json[0]["rows"], 5);
    }
}
