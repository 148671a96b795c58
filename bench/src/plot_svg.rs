//! A hand-written SVG of a latency report: on the left the latency by percentile (x: the
//! percentile on the usual "nines" scale, log of 1 / (1 - p)), on the right the headline
//! latency per second of the run (p50, p99, max).

use std::fmt::Write;

use crate::latency::LatencyReport;
use crate::latency_stats::{percentile_curve, TimelinePoint};

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 400.0;
const PANEL_WIDTH: f64 = 400.0;
const PANEL_HEIGHT: f64 = 300.0;
const MARGIN_LEFT: f64 = 60.0;
const MARGIN_TOP: f64 = 50.0;
const PANEL_GAP: f64 = 80.0;
/// The percentile axis ends at 99.999 (five nines).
const NINES_MAX: f64 = 5.0;
const COLOURS: &[&str] = &["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// Position of percentile `p` (0..=100) on the nines axis, 0..=1.
fn nines(p: f64) -> f64 {
    let tail = (1.0 - p / 100.0).max(10f64.powf(-NINES_MAX));
    (-tail.log10() / NINES_MAX).clamp(0.0, 1.0)
}

/// A "nice" upper bound of an axis holding `v`.
fn axis_max(v: f64) -> f64 {
    if !v.is_finite() || v <= 0.0 {
        return 1.0;
    }
    let step = 10f64.powf(v.log10().floor());
    let m = (v / step).ceil() * step;
    if m < v * 1.05 {
        m + step
    } else {
        m
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

struct Panel {
    x0: f64,
    y_max: f64,
}

impl Panel {
    fn x(&self, f: f64) -> f64 {
        self.x0 + f * PANEL_WIDTH
    }
    fn y(&self, v: f64) -> f64 {
        MARGIN_TOP + PANEL_HEIGHT * (1.0 - (v / self.y_max).clamp(0.0, 1.0))
    }
    fn frame(&self, out: &mut String, title: &str, x_label: &str) {
        let _ = write!(
            out,
            r##"<rect x="{:.1}" y="{MARGIN_TOP}" width="{PANEL_WIDTH}" height="{PANEL_HEIGHT}" fill="none" stroke="#444"/>
<text x="{:.1}" y="{:.1}" font-size="14" text-anchor="middle">{}</text>
<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>
"##,
            self.x0,
            self.x0 + PANEL_WIDTH / 2.0,
            MARGIN_TOP - 15.0,
            escape(title),
            self.x0 + PANEL_WIDTH / 2.0,
            MARGIN_TOP + PANEL_HEIGHT + 35.0,
            escape(x_label)
        );
        for i in 0..=4 {
            let v = self.y_max * i as f64 / 4.0;
            let _ = writeln!(
                out,
                r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{v:.3}</text><line x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/>"##,
                self.x0 - 5.0,
                self.y(v) + 4.0,
                self.x0,
                self.x0 + PANEL_WIDTH,
                self.y(v),
                self.y(v)
            );
        }
    }
    fn line(&self, out: &mut String, points: &[(f64, f64)], colour: &str) {
        if points.is_empty() {
            return;
        }
        let d: Vec<String> = points
            .iter()
            .map(|&(f, v)| format!("{:.1},{:.1}", self.x(f), self.y(v)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            d.join(" ")
        );
    }
}

fn legend(out: &mut String, x: f64, row: usize, colour: &str, label: &str) {
    let y = MARGIN_TOP + 15.0 + row as f64 * 16.0;
    let _ = writeln!(
        out,
        r#"<rect x="{:.1}" y="{:.1}" width="10" height="10" fill="{colour}"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
        x,
        y - 9.0,
        x + 14.0,
        y,
        escape(label)
    );
}

/// The SVG document of `report`.
pub fn latency_svg(report: &LatencyReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif">"#
    );
    let _ = writeln!(
        out,
        r#"<text x="{MARGIN_LEFT}" y="18" font-size="14">spillway latency: query {}, {} events/s x {} partitions, {} shards, {:.0} s (ms)</text>"#,
        report.query,
        report.rate_per_partition,
        report.partitions,
        report.shards,
        report.duration_s
    );
    // Percentile panel: the headline series only sets the scale when others dwarf it.
    let curves: Vec<(&str, Vec<(f64, f64)>)> = report
        .series
        .iter()
        .map(|s| (s.name, percentile_curve(&s.histogram)))
        .collect();
    let head_max = curves
        .first()
        .and_then(|(_, c)| c.last().map(|p| p.1))
        .unwrap_or(1.0);
    let left = Panel {
        x0: MARGIN_LEFT,
        y_max: axis_max(head_max),
    };
    left.frame(&mut out, "latency by percentile", "percentile");
    for (label, p) in [
        ("0", 0.0),
        ("90", 90.0),
        ("99", 99.0),
        ("99.9", 99.9),
        ("99.99", 99.99),
        ("99.999", 99.999),
    ] {
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{label}</text>"#,
            left.x(nines(p)),
            MARGIN_TOP + PANEL_HEIGHT + 15.0
        );
    }
    for (i, (name, curve)) in curves.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<(f64, f64)> = curve.iter().map(|&(p, v)| (nines(p), v)).collect();
        left.line(&mut out, &points, colour);
        let clipped = curve.last().map(|p| p.1 > left.y_max).unwrap_or(false);
        let label = if clipped {
            format!("{name} (off scale)")
        } else {
            name.to_string()
        };
        legend(&mut out, left.x0 + 10.0, i, colour, &label);
    }
    // Timeline panel.
    let t_max = report
        .timeline
        .last()
        .map(|p| p.t_s + 1.0)
        .unwrap_or(1.0)
        .max(1.0);
    let v_max = report.timeline.iter().map(|p| p.max_ms).fold(0.0, f64::max);
    let right = Panel {
        x0: MARGIN_LEFT + PANEL_WIDTH + PANEL_GAP,
        y_max: axis_max(v_max),
    };
    let head = report.series.first().map(|s| s.name).unwrap_or("latency");
    right.frame(
        &mut out,
        &format!("{head} per second"),
        "seconds since start",
    );
    for i in 0..=4 {
        let t = t_max * i as f64 / 4.0;
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{t:.0}</text>"#,
            right.x(i as f64 / 4.0),
            MARGIN_TOP + PANEL_HEIGHT + 15.0
        );
    }
    type Value = fn(&TimelinePoint) -> f64;
    let series: [(&str, Value); 3] = [
        ("p50", |p| p.p50_ms),
        ("p99", |p| p.p99_ms),
        ("max", |p| p.max_ms),
    ];
    for (i, (label, f)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<(f64, f64)> = report
            .timeline
            .iter()
            .map(|p| ((p.t_s + 0.5) / t_max, f(p)))
            .collect();
        right.line(&mut out, &points, colour);
        legend(&mut out, right.x0 + 10.0, i, colour, label);
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_axis_orders_percentiles() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(90.0) - 0.2).abs() < 1e-9);
        assert!((nines(99.0) - 0.4).abs() < 1e-9);
        assert_eq!(nines(100.0), 1.0);
        assert!(nines(99.9) < nines(99.99));
    }

    #[test]
    fn axis_max_holds_the_value_with_room() {
        assert_eq!(axis_max(0.0), 1.0);
        assert!(axis_max(0.73) >= 0.73 * 1.05);
        assert!(axis_max(0.73) <= 1.0);
        assert!(axis_max(1234.0) >= 1234.0 * 1.05);
        assert!(axis_max(1234.0) <= 2000.0);
    }

    #[test]
    fn escape_keeps_the_document_well_formed() {
        assert_eq!(escape("a<b & c>"), "a&lt;b &amp; c&gt;");
    }
}
