//! `spillway-bench sweep`: raises the rate per partition step by step, one short checked
//! latency run each, and reports the highest rate whose headline p99 stays under a limit,
//! per partition and per core (shard). The sweep stops at the first rate that misses the
//! limit or fails (the engine fell behind so far that results were missing at the drain).

use serde_json::{json, Value};

use crate::error::{BenchError, Result};
use crate::latency::{run_latency, LatencyOptions};

/// Largest number of steps of one sweep.
pub const SWEEP_STEPS_MAX: u64 = 1_000;

/// Options of a sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepOptions {
    /// Every run's options; the rate is replaced by the sweep's.
    pub run: LatencyOptions,
    pub rate_from: u64,
    pub rate_step: u64,
    pub rate_max: u64,
    /// The limit on the headline p99.
    pub p99_ms_max: f64,
}

/// One rate of a sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepStep {
    pub rate_per_partition: u64,
    /// None when the run failed.
    pub p99_ms: Option<f64>,
    pub passed: bool,
    /// The error of a failed run.
    pub note: Option<String>,
}

/// What a sweep found.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepReport {
    pub partitions: usize,
    pub shards: usize,
    pub p99_ms_max: f64,
    pub steps: Vec<SweepStep>,
}

impl SweepReport {
    /// The highest passing rate per partition (the steps pass from the first up to it).
    pub fn best_rate_per_partition(&self) -> Option<u64> {
        self.steps
            .iter()
            .take_while(|s| s.passed)
            .map(|s| s.rate_per_partition)
            .last()
    }

    /// The best rate over all partitions, per shard (core).
    pub fn best_rate_per_core(&self) -> Option<f64> {
        self.best_rate_per_partition()
            .map(|r| r as f64 * self.partitions as f64 / self.shards.max(1) as f64)
    }

    pub fn text(&self) -> String {
        let mut t = String::new();
        for s in &self.steps {
            t += &format!(
                "  {:>10} events/s/partition  p99 {:>10}  {}\n",
                s.rate_per_partition,
                s.p99_ms
                    .map(|p| format!("{p:.3} ms"))
                    .unwrap_or_else(|| "-".into()),
                match (&s.note, s.passed) {
                    (Some(n), _) => format!("failed: {n}"),
                    (None, true) => "ok".into(),
                    (None, false) => format!("over {} ms", self.p99_ms_max),
                }
            );
        }
        match (self.best_rate_per_partition(), self.best_rate_per_core()) {
            (Some(p), Some(c)) => {
                t += &format!(
                    "highest rate with p99 < {} ms: {p} events/s per partition, {c:.0} events/s \
                     per core ({} partitions on {} shards)\n",
                    self.p99_ms_max, self.partitions, self.shards
                )
            }
            _ => t += &format!("no rate kept p99 under {} ms\n", self.p99_ms_max),
        }
        t
    }

    pub fn json(&self) -> Value {
        json!({
            "benchmark": "sweep",
            "partitions": self.partitions,
            "shards": self.shards,
            "p99_ms_max": self.p99_ms_max,
            "best_rate_per_partition": self.best_rate_per_partition(),
            "best_rate_per_core": self.best_rate_per_core(),
            "steps": self.steps.iter().map(|s| json!({
                "rate_per_partition": s.rate_per_partition,
                "p99_ms": s.p99_ms,
                "passed": s.passed,
                "note": s.note,
            })).collect::<Vec<_>>(),
        })
    }
}

/// The rates of a sweep, checked.
pub fn sweep_rates(from: u64, step: u64, max: u64) -> Result<Vec<u64>> {
    if from == 0 || step == 0 || max < from {
        return Err(BenchError::Config(format!(
            "sweep --from {from} --step {step} --max {max}: need 0 < from <= max and step > 0"
        )));
    }
    let n = (max - from) / step + 1;
    if n > SWEEP_STEPS_MAX {
        return Err(BenchError::Config(format!(
            "the sweep has {n} steps, more than {SWEEP_STEPS_MAX}; use a larger --step"
        )));
    }
    Ok((0..n).map(|i| from + i * step).collect())
}

/// Runs the sweep; `on_step` sees each step as it ends.
pub fn run_sweep(opts: &SweepOptions, mut on_step: impl FnMut(&SweepStep)) -> Result<SweepReport> {
    if opts.p99_ms_max.is_nan() || opts.p99_ms_max <= 0.0 {
        return Err(BenchError::Config("--p99-max-ms must be above 0".into()));
    }
    let rates = sweep_rates(opts.rate_from, opts.rate_step, opts.rate_max)?;
    let mut report = SweepReport {
        partitions: opts.run.partitions,
        shards: opts
            .run
            .shards
            .unwrap_or_else(|| crate::trades_query::default_shards(opts.run.partitions)),
        p99_ms_max: opts.p99_ms_max,
        steps: Vec::new(),
    };
    for rate in rates {
        let mut run = opts.run.clone();
        run.rate_per_partition = rate;
        let step = match run_latency(&run) {
            Ok(r) => SweepStep {
                rate_per_partition: rate,
                p99_ms: Some(r.p99_ms()),
                passed: r.p99_ms() < opts.p99_ms_max,
                note: None,
            },
            // A bad option fails the first step the same way: report it, do not sweep on.
            Err(e @ BenchError::Config(_)) => return Err(e),
            Err(e) => SweepStep {
                rate_per_partition: rate,
                p99_ms: None,
                passed: false,
                note: Some(e.to_string()),
            },
        };
        on_step(&step);
        let passed = step.passed;
        report.steps.push(step);
        if !passed {
            break;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_step_up_to_the_max() {
        assert_eq!(sweep_rates(10, 5, 27).expect("rates"), vec![10, 15, 20, 25]);
        assert_eq!(sweep_rates(10, 5, 10).expect("rates"), vec![10]);
        assert!(sweep_rates(0, 5, 10).is_err());
        assert!(sweep_rates(10, 0, 20).is_err());
        assert!(sweep_rates(20, 1, 10).is_err());
        assert!(sweep_rates(1, 1, 10_000).is_err(), "too many steps");
    }

    fn step(rate: u64, passed: bool) -> SweepStep {
        SweepStep {
            rate_per_partition: rate,
            p99_ms: Some(if passed { 0.5 } else { 3.0 }),
            passed,
            note: None,
        }
    }

    #[test]
    fn best_rate_is_the_last_of_the_passing_prefix() {
        let r = SweepReport {
            partitions: 4,
            shards: 2,
            p99_ms_max: 1.0,
            steps: vec![step(100, true), step(200, true), step(300, false)],
        };
        assert_eq!(r.best_rate_per_partition(), Some(200));
        assert_eq!(r.best_rate_per_core(), Some(400.0));
        assert_eq!(r.json()["best_rate_per_partition"], 200);
        assert!(
            r.text().contains("200 events/s per partition"),
            "{}",
            r.text()
        );
        let none = SweepReport {
            steps: vec![step(100, false)],
            ..r
        };
        assert_eq!(none.best_rate_per_partition(), None);
        assert!(none.text().contains("no rate"));
    }
}
