//! `--chart FILE.svg`: the jobs sweep (MB/s against jobs, one series per measure) and, with
//! `--plan`, the projected time per phase. A small SVG writer of our own: two kinds of
//! picture do not justify a plotting dependency, and the output is plain SVG 1.1 that any
//! browser shows.

use std::fmt::Write;

/// One line of the sweep: a measure's MB/s at each number of jobs.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(usize, f64)>,
}

const W: f64 = 720.0;
const H: f64 = 360.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 220.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The whole document: the sweep on top, the phases (if any) below.
pub fn render(title: &str, series: &[Series], phases: &[(String, f64)]) -> String {
    // The sweep when there is one, the phases below it (or alone).
    let sweep_height = if series.is_empty() { TOP } else { H };
    let height = if phases.is_empty() {
        sweep_height
    } else {
        sweep_height + 60.0 + 28.0 * phases.len() as f64
    };
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{W}" height="{height}" viewBox="0 0 {W} {height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
        W / 2.0,
        escape(title)
    );
    if !series.is_empty() {
        sweep(&mut svg, series);
    }
    if !phases.is_empty() {
        bars(&mut svg, phases, sweep_height + 20.0);
    }
    svg.push_str("</svg>\n");
    svg
}

fn sweep(svg: &mut String, series: &[Series]) {
    let max_jobs = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .max()
        .unwrap_or(1)
        .max(2);
    let max_rate = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(1.0)
        * 1.1;
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let x = |jobs: usize| LEFT + (jobs as f64 - 1.0) / (max_jobs as f64 - 1.0) * pw;
    let y = |rate: f64| TOP + ph - rate / max_rate * ph;
    let _ = writeln!(
        svg,
        r##"<g class="axes" stroke="#444"><line x1="{LEFT}" y1="{}" x2="{}" y2="{}"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{}"/></g>"##,
        TOP + ph,
        LEFT + pw,
        TOP + ph,
        TOP + ph
    );
    for jobs in 1..=max_jobs {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{jobs}</text>"#,
            x(jobs),
            TOP + ph + 18.0
        );
    }
    for i in 0..=4 {
        let rate = max_rate * i as f64 / 4.0;
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{rate:.0}</text>"#,
            LEFT - 6.0,
            y(rate) + 4.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">jobs</text>
<text x="16" y="{:.1}" transform="rotate(-90 16 {:.1})" text-anchor="middle">MB/s</text>"#,
        LEFT + pw / 2.0,
        TOP + ph + 38.0,
        TOP + ph / 2.0,
        TOP + ph / 2.0
    );
    for (n, s) in series.iter().enumerate() {
        let colour = COLOURS[n % COLOURS.len()];
        let points: Vec<String> = s
            .points
            .iter()
            .map(|(j, r)| format!("{:.1},{:.1}", x(*j), y(*r)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<g class="series" data-name="{}"><polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            escape(&s.name),
            points.join(" ")
        );
        for (j, r) in &s.points {
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#,
                x(*j),
                y(*r)
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" fill="{colour}">{}</text></g>"#,
            LEFT + pw + 12.0,
            TOP + 14.0 + 18.0 * n as f64,
            escape(&s.name)
        );
    }
}

fn bars(svg: &mut String, phases: &[(String, f64)], top: f64) {
    let total: f64 = phases.iter().map(|p| p.1).sum::<f64>().max(0.001);
    let max = phases.iter().map(|p| p.1).fold(0.0f64, f64::max).max(0.001);
    let pw = W - LEFT - RIGHT;
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="{:.1}" font-size="13">projected time per phase (total {total:.1} s)</text>"#,
        top + 10.0
    );
    for (n, (name, secs)) in phases.iter().enumerate() {
        let yy = top + 24.0 + 28.0 * n as f64;
        let _ = writeln!(
            svg,
            r#"<g class="phase" data-name="{}"><rect x="{LEFT}" y="{yy:.1}" width="{:.1}" height="18" fill="{}"/><text x="{:.1}" y="{:.1}">{} {secs:.1} s</text></g>"#,
            escape(name),
            (secs / max * pw).max(1.0),
            COLOURS[n % COLOURS.len()],
            LEFT + (secs / max * pw).max(1.0) + 8.0,
            yy + 13.0,
            escape(name)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_draws_one_group_per_series() {
        let svg = render(
            "a < b",
            &[
                Series {
                    name: "pipe & binary".into(),
                    points: vec![(1, 10.0), (2, 18.0)],
                },
                Series {
                    name: "pipe, text".into(),
                    points: vec![(1, 8.0), (2, 12.0)],
                },
            ],
            &[("copy".into(), 12.0)],
        );
        assert!(svg.contains("a &lt; b") && svg.contains("pipe &amp; binary"));
        assert_eq!(svg.matches(r#"class="series""#).count(), 2);
        assert_eq!(svg.matches(r#"class="phase""#).count(), 1);
    }
}
