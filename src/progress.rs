//! Progress of a copy, as people and programs read it: indicatif bars (one per active job and
//! a total in bytes with rate and ETA) on a terminal, or JSON Lines events with `--json`.
//!
//! JSON events are one object per line on stdout: `{"type": "...", "data": {...}}`, with
//! types `job_started` (table, estimated_bytes, format), `job_finished` (table, rows, bytes,
//! seconds), and `summary` (written by the command at the end). Fields may be added over time.

use crate::copy::{CopyStats, ProgressSink, TableJob};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;

/// What a long command reports besides per-job progress: the plan and its stages.
pub trait Reporter: ProgressSink {
    /// The copy plan is known: `jobs` jobs, about `bytes` bytes in all.
    fn planned(&self, jobs: usize, bytes: u64);
    /// A stage begins (e.g. "creating the schema").
    fn stage(&self, what: &str);
}

/// Terminal bars. Hidden automatically when stderr is not a terminal.
pub struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    jobs: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    pub fn new() -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let total = multi.add(ProgressBar::new(0));
        total.set_style(
            ProgressStyle::with_template(
                "{prefix:>8} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        total.set_prefix("total");
        Bars {
            multi,
            total,
            jobs: Mutex::new(HashMap::new()),
        }
    }

    /// Removes the bars (before printing the summary).
    pub fn finish(&self) {
        self.total.finish_and_clear();
        let _ = self.multi.clear();
    }
}

impl Default for Bars {
    fn default() -> Self {
        Bars::new()
    }
}

impl Reporter for Bars {
    fn planned(&self, _jobs: usize, bytes: u64) {
        self.total.set_length(bytes.max(1));
        self.total.reset_eta();
    }

    fn stage(&self, what: &str) {
        let _ = self.multi.println(format!("pgferry: {what}"));
    }
}

impl ProgressSink for Bars {
    fn job_started(&self, job: &TableJob) {
        let bar = self
            .multi
            .insert_before(&self.total, ProgressBar::new(job.estimated_bytes.max(1)));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>8} {msg:40!} {bytes:>10} {bytes_per_sec:>12}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix("copy");
        bar.set_message(job.display_name());
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.display_name(), bar);
    }

    fn bytes_copied(&self, job: &TableJob, bytes: u64) {
        self.total.inc(bytes);
        if let Some(bar) = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&job.display_name())
        {
            bar.inc(bytes);
        }
    }

    fn job_finished(&self, job: &TableJob, _stats: &CopyStats) {
        if let Some(bar) = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&job.display_name())
        {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
    }
}

/// JSON Lines events on stdout.
#[derive(Debug, Default)]
pub struct JsonEvents {
    out: Mutex<()>,
}

impl JsonEvents {
    pub fn emit(&self, kind: &str, data: serde_json::Value) {
        let _guard = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let line = json!({ "type": kind, "data": data });
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{line}");
    }
}

impl Reporter for JsonEvents {
    fn planned(&self, jobs: usize, bytes: u64) {
        self.emit("planned", json!({ "jobs": jobs, "estimated_bytes": bytes }));
    }

    fn stage(&self, what: &str) {
        self.emit("stage", json!({ "stage": what }));
    }
}

impl ProgressSink for JsonEvents {
    fn job_started(&self, job: &TableJob) {
        self.emit(
            "job_started",
            json!({ "table": job.display_name(), "estimated_bytes": job.estimated_bytes, "format": job.format.as_sql() }),
        );
    }

    fn bytes_copied(&self, _job: &TableJob, _bytes: u64) {}

    fn job_finished(&self, job: &TableJob, stats: &CopyStats) {
        self.emit(
            "job_finished",
            json!({
                "table": job.display_name(),
                "rows": stats.rows,
                "bytes": stats.bytes,
                "seconds": stats.elapsed.as_secs_f64(),
            }),
        );
    }
}
