//! Latency figures of `spillway-bench latency`: HDR histograms in microseconds, their
//! percentiles, and a timeline (one histogram per second of the run) for the plot.

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Highest latency recorded, µs (10 minutes); higher values are clamped to it.
pub const LATENCY_US_MAX: u64 = 600_000_000;
/// Seconds a timeline covers; later arrivals fall into its last second.
pub const TIMELINE_SECONDS_MAX: usize = 3_600;
/// Width of one timeline bucket, ns.
const TIMELINE_BUCKET_NS: u64 = 1_000_000_000;

/// An empty histogram of µs, three significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("constant histogram bounds are valid")
}

/// The percentiles reported for one latency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyStats {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub p9999_ms: f64,
    pub max_ms: f64,
}

/// The percentiles of the plot's percentile curve.
pub const CURVE_PERCENTILES: &[f64] = &[
    0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0,
];

impl LatencyStats {
    /// The percentiles of `h` (all zero when it is empty).
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1_000.0;
        LatencyStats {
            count: h.len(),
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            p9999_ms: ms(0.9999),
            max_ms: h.max() as f64 / 1_000.0,
        }
    }

    /// One terminal line.
    pub fn text(&self) -> String {
        format!(
            "p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  p99.99 {:.3}  max {:.3} ms  (n = {})",
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.p999_ms,
            self.p9999_ms,
            self.max_ms,
            self.count
        )
    }

    pub fn json(&self) -> Value {
        json!({
            "count": self.count,
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "p99_9_ms": self.p999_ms,
            "p99_99_ms": self.p9999_ms,
            "max_ms": self.max_ms,
        })
    }
}

/// (percentile, ms) points of `h` for a percentile plot.
pub fn percentile_curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    CURVE_PERCENTILES
        .iter()
        .map(|&p| (p, h.value_at_percentile(p) as f64 / 1_000.0))
        .collect()
}

/// One histogram per second of arrival time.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    seconds: Vec<Histogram<u64>>,
}

/// The figures of one second of a timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimelinePoint {
    /// Start of the second, s after the run's start.
    pub t_s: f64,
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Timeline {
    /// Records latency `us` of something that arrived `arrival_ns` after the start.
    pub fn record(&mut self, arrival_ns: u64, us: u64) {
        let second = ((arrival_ns / TIMELINE_BUCKET_NS) as usize).min(TIMELINE_SECONDS_MAX - 1);
        while self.seconds.len() <= second {
            self.seconds.push(latency_histogram());
        }
        self.seconds[second].saturating_record(us.clamp(1, LATENCY_US_MAX));
    }

    /// Adds the other timeline's values.
    pub fn merge(&mut self, other: &Timeline) {
        while self.seconds.len() < other.seconds.len() {
            self.seconds.push(latency_histogram());
        }
        for (a, b) in self.seconds.iter_mut().zip(&other.seconds) {
            let _ = a.add(b);
        }
    }

    /// One point per second that saw an arrival.
    pub fn points(&self) -> Vec<TimelinePoint> {
        self.seconds
            .iter()
            .enumerate()
            .filter(|(_, h)| !h.is_empty())
            .map(|(s, h)| TimelinePoint {
                t_s: s as f64,
                count: h.len(),
                p50_ms: h.value_at_quantile(0.5) as f64 / 1_000.0,
                p99_ms: h.value_at_quantile(0.99) as f64 / 1_000.0,
                max_ms: h.max() as f64 / 1_000.0,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_histogram() {
        let mut h = latency_histogram();
        for us in 1..=1_000u64 {
            h.record(us * 10).expect("in range");
        }
        let s = LatencyStats::of(&h);
        assert_eq!(s.count, 1_000);
        assert!((s.p50_ms - 5.0).abs() < 0.01, "{s:?}");
        assert!((s.p99_ms - 9.9).abs() < 0.01, "{s:?}");
        assert!((s.max_ms - 10.0).abs() < 0.01, "{s:?}");
        assert!(s.p50_ms <= s.p90_ms && s.p90_ms <= s.p99_ms && s.p99_ms <= s.p999_ms);
        let curve = percentile_curve(&h);
        assert_eq!(curve.len(), CURVE_PERCENTILES.len());
        assert!(curve.windows(2).all(|w| w[0].1 <= w[1].1));
    }

    #[test]
    fn timeline_buckets_by_arrival_second_and_merges() {
        let mut a = Timeline::default();
        a.record(100, 5);
        a.record(2_500_000_000, 7_000);
        let mut b = Timeline::default();
        b.record(2_000_000_000, 1_000);
        a.merge(&b);
        let p = a.points();
        assert_eq!(p.len(), 2, "second 1 saw nothing: {p:?}");
        assert_eq!((p[0].t_s, p[0].count), (0.0, 1));
        assert_eq!((p[1].t_s, p[1].count), (2.0, 2));
        assert!((p[1].max_ms - 7.0).abs() < 0.01);
    }
}
