//! Progress of a copy, as people and programs read it: indicatif bars (one per active job and
//! a total in bytes with rate and ETA) on a terminal, or JSON Lines events with `--json`.
//!
//! JSON events are one object per line on stdout: `{"type": "...", "data": {...}}`, with
//! types `job_started` (table, estimated_bytes, format), `job_finished` (table, rows, bytes,
//! seconds), and `summary` (written by the command at the end). Fields may be added over time.

use crate::copy::{CopyStats, ProgressSink, TableJob};
use crate::state::lifecycle::Phase;
use crate::units::format_size;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;

/// What a long command reports besides per-job progress: the plan and its stages.
pub trait Reporter: ProgressSink {
    /// The copy plan is known: `jobs` jobs, about `bytes` bytes in all.
    fn planned(&self, jobs: usize, bytes: u64);
    /// A stage begins: `what` is the text shown (e.g. "creating the schema"), `phase` the
    /// migration phase it starts, if any (typed, so that the live view and the state store
    /// never read it back from the text).
    fn stage(&self, phase: Option<Phase>, what: &str);
}

/// Terminal bars. Hidden automatically when stderr is not a terminal.
///
/// The total bar appears once the copy plan is known (a run with nothing to copy, e.g. a
/// resumed one, shows none), grows its length when the copy turns out larger than the
/// estimate, and ends at 100% when the last job finished. Sizes are written like every other
/// size pgferry prints ([`crate::units::format_size`]: kB, MB, GB as powers of 1024).
pub struct Bars {
    multi: MultiProgress,
    total: Mutex<Option<ProgressBar>>,
    jobs: Mutex<HashMap<String, ProgressBar>>,
    /// Jobs planned and jobs finished, to end the total bar with the copy.
    counts: Mutex<(usize, usize)>,
}

/// `{size}`, `{total_size}`, `{size_rate}`: bytes in pgferry's units.
fn sized(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("size", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&format_size(s.pos()));
        })
        .with_key(
            "total_size",
            |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(&format_size(s.len().unwrap_or(0)));
            },
        )
        .with_key(
            "size_rate",
            |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}/s", format_size(s.per_sec() as u64));
            },
        )
}

impl Bars {
    pub fn new() -> Bars {
        Bars::with_target(ProgressDrawTarget::stderr())
    }

    pub fn with_target(target: ProgressDrawTarget) -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(target),
            total: Mutex::new(None),
            jobs: Mutex::new(HashMap::new()),
            counts: Mutex::new((0, 0)),
        }
    }

    fn total(&self) -> Option<ProgressBar> {
        self.total.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Removes the bars (before printing the summary).
    pub fn finish(&self) {
        if let Some(total) = self.total() {
            total.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}

impl Default for Bars {
    fn default() -> Self {
        Bars::new()
    }
}

impl Reporter for Bars {
    fn planned(&self, jobs: usize, bytes: u64) {
        *self.counts.lock().unwrap_or_else(|p| p.into_inner()) = (jobs, 0);
        if jobs == 0 {
            return;
        }
        let mut total = self.total.lock().unwrap_or_else(|p| p.into_inner());
        let bar = total.get_or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new(bytes.max(1)));
            bar.set_style(
                sized("{prefix:>8} [{bar:40}] {size}/{total_size} {size_rate} ETA {eta}")
                    .progress_chars("=> "),
            );
            bar.set_prefix("total");
            bar
        });
        bar.set_length(bytes.max(1));
        bar.set_position(0);
        bar.reset_eta();
    }

    fn stage(&self, _: Option<Phase>, what: &str) {
        let _ = self.multi.println(format!("pgferry: {what}"));
    }
}

impl ProgressSink for Bars {
    fn job_started(&self, job: &TableJob) {
        let bar = ProgressBar::new(job.estimated_bytes.max(1));
        let bar = match self.total() {
            Some(total) => self.multi.insert_before(&total, bar),
            None => self.multi.add(bar),
        };
        bar.set_style(sized("{prefix:>8} {msg:40!} {size:>10} {size_rate:>12}"));
        bar.set_prefix("copy");
        bar.set_message(job.display_name());
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.display_name(), bar);
    }

    fn bytes_copied(&self, job: &TableJob, bytes: u64) {
        if let Some(total) = self.total() {
            total.inc(bytes);
            // The plan's estimate was low: the bar grows instead of overflowing.
            if total.length().is_some_and(|len| total.position() > len) {
                total.set_length(total.position());
            }
        }
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
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.1 += 1;
        if counts.1 >= counts.0 {
            // The copy is over: the bar says so, whatever the estimate was.
            if let Some(total) = self.total() {
                total.set_length(total.position().max(1));
                total.set_position(total.position().max(1));
                total.finish();
            }
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

    fn stage(&self, _: Option<Phase>, what: &str) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::{CopyFormat, TableJob};

    fn job(name: &str, bytes: u64) -> TableJob {
        TableJob {
            schema: "public".into(),
            table: name.into(),
            columns: vec!["id".into()],
            range: None,
            format: CopyFormat::Binary,
            truncate_first: true,
            estimated_bytes: bytes,
            text_reason: None,
            row_filter: None,
        }
    }

    fn stats() -> CopyStats {
        CopyStats {
            table: String::new(),
            format: CopyFormat::Binary,
            rows: 0,
            bytes: 0,
            elapsed: std::time::Duration::ZERO,
        }
    }

    #[test]
    fn no_total_bar_before_a_plan_and_none_for_an_empty_one() {
        let bars = Bars::with_target(ProgressDrawTarget::hidden());
        assert!(bars.total().is_none());
        bars.planned(0, 0);
        assert!(
            bars.total().is_none(),
            "a resumed run copies nothing: no bar"
        );
        bars.finish();
    }

    #[test]
    fn total_bar_starts_empty_and_ends_full_whatever_the_estimate() {
        let bars = Bars::with_target(ProgressDrawTarget::hidden());
        bars.planned(2, 1000);
        let total = bars.total().expect("a bar once planned");
        assert_eq!((total.position(), total.length()), (0, Some(1000)));
        let (a, b) = (job("a", 600), job("b", 400));
        bars.job_started(&a);
        bars.job_started(&b);
        bars.bytes_copied(&a, 500);
        bars.job_finished(&a, &stats());
        bars.bytes_copied(&b, 330);
        assert!(!total.is_finished());
        bars.job_finished(&b, &stats());
        // 830 of the estimated 1000 bytes came: 100%, not 83%.
        assert!(total.is_finished());
        assert_eq!((total.position(), total.length()), (830, Some(830)));

        // An estimate that is too low grows the bar.
        let bars = Bars::with_target(ProgressDrawTarget::hidden());
        bars.planned(1, 10);
        let c = job("c", 10);
        bars.job_started(&c);
        bars.bytes_copied(&c, 25);
        let total = bars.total().expect("bar");
        assert_eq!(total.length(), Some(25));
    }

    #[test]
    fn bars_write_sizes_in_pgferry_units() {
        let term = indicatif::InMemoryTerm::new(4, 120);
        let bars = Bars::with_target(ProgressDrawTarget::term_like(Box::new(term.clone())));
        bars.planned(1, 3 << 20);
        if let Some(total) = bars.total() {
            total.tick();
        }
        let screen = term.contents();
        // It starts empty, not full.
        assert!(
            screen.contains(&format!("[{}] 0 B/3.0 MB", " ".repeat(40))),
            "{screen}"
        );
        let a = job("a", 3 << 20);
        bars.job_started(&a);
        bars.bytes_copied(&a, 1536 * 1024);
        if let Some(total) = bars.total() {
            total.tick();
        }
        let screen = term.contents();
        // MB as powers of 1024, as in summaries, never indicatif's MiB.
        assert!(screen.contains("1.5 MB/3.0 MB"), "{screen}");
        assert!(!screen.contains("MiB"), "{screen}");
    }
}
