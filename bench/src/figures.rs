//! The figures of benchmark runs: throughput, the per-stage split of the time, medians, and
//! their text and JSON renderings.

use std::fmt::Write;
use std::time::Duration;

use hdrhistogram::Histogram;
use spillway_engine::job::JobReport;

/// Largest number of runs of one benchmark.
pub const RUNS_MAX: usize = 100;

/// What one checked run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFigures {
    /// Records the sources delivered.
    pub events: u64,
    /// Shards (cores) of the job.
    pub shards: usize,
    /// Wall time of the job, from its start to its last shard's end.
    pub elapsed: Duration,
    /// Time of all shards in decoding JSON (summed over shards), ns.
    pub decode_ns: u64,
    /// Time of all shards in filtering and aggregating, ns.
    pub aggregate_ns: u64,
    /// Time of all shards in writing results, ns.
    pub sink_ns: u64,
    /// Lifetime of all shards summed, ns (the other stages plus polling the source, watermarks,
    /// firing windows, exchanging partials and waiting).
    pub shard_ns: u64,
    /// Result rows.
    pub rows_out: u64,
    /// Latency from window close to result, microseconds.
    pub latency_us: Histogram<u64>,
}

impl RunFigures {
    /// The figures of a finished job.
    pub fn from_report(report: &JobReport) -> Self {
        let sum = |f: &dyn Fn(&spillway_engine::shard::ShardReport) -> u64| -> u64 {
            report.shards.iter().map(f).sum()
        };
        RunFigures {
            events: report.records_in(),
            shards: report.shards.len(),
            elapsed: report.elapsed,
            decode_ns: sum(&|s| s.decode_ns),
            aggregate_ns: sum(&|s| s.aggregate_ns),
            sink_ns: sum(&|s| s.sink_ns),
            shard_ns: sum(&|s| s.elapsed.as_nanos() as u64),
            rows_out: report.rows_out(),
            latency_us: report.latency_us(),
        }
    }

    /// Adds the figures of a job that ran after this one (one round of a benchmark whose
    /// input is split over several jobs): events, times and rows add up.
    pub fn append(&mut self, next: &RunFigures) {
        self.events += next.events;
        self.shards = self.shards.max(next.shards);
        self.elapsed += next.elapsed;
        self.decode_ns += next.decode_ns;
        self.aggregate_ns += next.aggregate_ns;
        self.sink_ns += next.sink_ns;
        self.shard_ns += next.shard_ns;
        self.rows_out += next.rows_out;
        // Both come from the engine's latency histogram, which has fixed bounds.
        let _ = self.latency_us.add(&next.latency_us);
    }

    /// A latency quantile in microseconds (0 without any result).
    pub fn latency_quantile_us(&self, q: f64) -> u64 {
        if self.latency_us.is_empty() {
            0
        } else {
            self.latency_us.value_at_quantile(q)
        }
    }

    /// Events per second of wall time.
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Events per second per shard (core).
    pub fn events_per_second_per_core(&self) -> f64 {
        self.events_per_second() / self.shards.max(1) as f64
    }

    fn per_event(&self, ns: u64) -> f64 {
        ns as f64 / self.events.max(1) as f64
    }

    /// Core time per event of each stage, ns: (decode, aggregate, sink, rest).
    pub fn stage_ns_per_event(&self) -> (f64, f64, f64, f64) {
        let staged = self.decode_ns + self.aggregate_ns + self.sink_ns;
        (
            self.per_event(self.decode_ns),
            self.per_event(self.aggregate_ns),
            self.per_event(self.sink_ns),
            self.per_event(self.shard_ns.saturating_sub(staged)),
        )
    }
}

/// The checked runs of one benchmark.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchSummary {
    /// `memory`, `kafka` or `file`.
    pub name: &'static str,
    /// Partitions of the source (file splits for `file`).
    pub partitions: usize,
    /// Every run, in the order they ran.
    pub runs: Vec<RunFigures>,
    /// Further figures of the benchmark (e.g. how fast the backlog was produced), by name.
    pub extra: Vec<(&'static str, f64)>,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

impl BenchSummary {
    /// Median events per second over the runs.
    pub fn median_events_per_second(&self) -> f64 {
        let mut v: Vec<f64> = self.runs.iter().map(|r| r.events_per_second()).collect();
        median(&mut v)
    }

    /// The run whose throughput is the median (the lower middle one for an even count).
    pub fn median_run(&self) -> Option<&RunFigures> {
        let mut order: Vec<&RunFigures> = self.runs.iter().collect();
        order.sort_by(|a, b| a.events_per_second().total_cmp(&b.events_per_second()));
        order.get(order.len().saturating_sub(1) / 2).copied()
    }

    fn shards(&self) -> usize {
        self.runs.first().map(|r| r.shards).unwrap_or(0).max(1)
    }

    /// A readable report.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let shards = self.shards();
        let med = self.median_events_per_second();
        let events = self.runs.first().map(|r| r.events).unwrap_or(0);
        let _ = writeln!(
            s,
            "{}: {} events, {} partitions, {} shards, {} runs (each result checked)",
            self.name,
            events,
            self.partitions,
            shards,
            self.runs.len()
        );
        for (i, r) in self.runs.iter().enumerate() {
            let _ = writeln!(
                s,
                "  run {}: {:.3} s  {:>12.0} events/s  ({} result rows)",
                i + 1,
                r.elapsed.as_secs_f64(),
                r.events_per_second(),
                r.rows_out
            );
        }
        let _ = writeln!(
            s,
            "median: {:.0} events/s total, {:.0} events/s per core, {:.0} events/s per partition",
            med,
            med / shards as f64,
            med / self.partitions.max(1) as f64
        );
        if let Some(r) = self.median_run() {
            let (d, a, k, rest) = r.stage_ns_per_event();
            let _ = writeln!(
                s,
                "core time per event (median run): decode {d:.1} ns, aggregate {a:.1} ns, \
                 sink {k:.2} ns, source+other {rest:.1} ns, total {:.1} ns",
                d + a + k + rest
            );
            let _ = writeln!(
                s,
                "latency window close -> result (median run): p50 {:.3} ms, p99 {:.3} ms",
                r.latency_quantile_us(0.5) as f64 / 1000.0,
                r.latency_quantile_us(0.99) as f64 / 1000.0
            );
        }
        for (name, v) in &self.extra {
            let _ = writeln!(s, "{name}: {v:.0}");
        }
        s
    }

    /// One machine-readable JSON line.
    pub fn json(&self) -> String {
        let shards = self.shards();
        let med = self.median_events_per_second();
        let mut obj = serde_json::Map::new();
        obj.insert("bench".into(), self.name.into());
        obj.insert(
            "events".into(),
            self.runs.first().map(|r| r.events).unwrap_or(0).into(),
        );
        obj.insert("partitions".into(), self.partitions.into());
        obj.insert("shards".into(), shards.into());
        obj.insert("runs".into(), self.runs.len().into());
        obj.insert("events_per_second_median".into(), med.round().into());
        obj.insert(
            "events_per_second_per_core_median".into(),
            (med / shards as f64).round().into(),
        );
        obj.insert(
            "events_per_second_per_partition_median".into(),
            (med / self.partitions.max(1) as f64).round().into(),
        );
        obj.insert(
            "events_per_second_runs".into(),
            self.runs
                .iter()
                .map(|r| serde_json::Value::from(r.events_per_second().round()))
                .collect::<Vec<_>>()
                .into(),
        );
        if let Some(r) = self.median_run() {
            let (d, a, k, rest) = r.stage_ns_per_event();
            obj.insert("decode_ns_per_event".into(), d.into());
            obj.insert("aggregate_ns_per_event".into(), a.into());
            obj.insert("sink_ns_per_event".into(), k.into());
            obj.insert("other_ns_per_event".into(), rest.into());
            obj.insert("rows_out".into(), r.rows_out.into());
            obj.insert("latency_p50_us".into(), r.latency_quantile_us(0.5).into());
            obj.insert("latency_p99_us".into(), r.latency_quantile_us(0.99).into());
        }
        for (name, v) in &self.extra {
            obj.insert((*name).into(), (*v).into());
        }
        serde_json::Value::Object(obj).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(events: u64, ms: u64) -> RunFigures {
        let mut latency_us = spillway_engine::emitter::latency_histogram();
        latency_us.record(1_000).expect("in range");
        latency_us.record(2_000).expect("in range");
        RunFigures {
            events,
            shards: 2,
            elapsed: Duration::from_millis(ms),
            decode_ns: events * 100,
            aggregate_ns: events * 50,
            sink_ns: events,
            shard_ns: events * 200,
            rows_out: 10,
            latency_us,
        }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
    }

    #[test]
    fn appended_rounds_add_up() {
        let mut total = run(1_000, 500);
        total.append(&run(3_000, 500));
        assert_eq!(total.events, 4_000);
        assert_eq!(total.elapsed, Duration::from_secs(1));
        assert_eq!(total.events_per_second(), 4_000.0);
        assert_eq!(total.stage_ns_per_event(), (100.0, 50.0, 1.0, 49.0));
        assert_eq!(total.rows_out, 20);
        assert_eq!(total.latency_us.len(), 4);
    }

    #[test]
    fn summary_reports_the_median_run_and_stage_split() {
        let summary = BenchSummary {
            name: "memory",
            partitions: 2,
            runs: vec![run(1_000, 1_000), run(1_000, 250), run(1_000, 500)],
            extra: vec![("produce_events_per_second", 5.0)],
        };
        assert_eq!(summary.median_events_per_second(), 2_000.0);
        assert_eq!(
            summary.median_run().map(|r| r.elapsed),
            Some(Duration::from_millis(500))
        );
        let r = run(1_000, 500);
        assert_eq!(r.events_per_second_per_core(), 1_000.0);
        assert_eq!(r.stage_ns_per_event(), (100.0, 50.0, 1.0, 49.0));
        let json: serde_json::Value = serde_json::from_str(&summary.json()).expect("json");
        assert_eq!(json["bench"], "memory");
        assert_eq!(json["events_per_second_median"], 2_000.0);
        assert_eq!(json["events_per_second_per_core_median"], 1_000.0);
        assert_eq!(json["produce_events_per_second"], 5.0);
        let text = summary.text();
        assert!(
            text.contains("median: 2000 events/s total, 1000 events/s per core"),
            "{text}"
        );
    }
}
