//! The Prometheus text exposition (format 0.0.4) of the live metrics of `spillway serve`.
//!
//! Every series carries `job` (the query file's name) and `shard`; per-partition series add
//! `topic` and `partition`. `docs/operations.md` lists every metric.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use crate::metrics::{JobMetrics, PartitionMetrics, ShardMetrics, NO_VALUE, SKIP_REASONS};

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One job as the exposition sees it.
pub struct JobSample<'a> {
    pub metrics: &'a JobMetrics,
    /// Whether the job is running (not finished, failed or stopped).
    pub running: bool,
}

/// A per-shard metric: name, type, help, and how to read it (None: no value yet).
type ShardValue = fn(&ShardMetrics) -> Option<i64>;
/// How to read a per-partition metric (None: no value yet).
type PartitionValue = fn(&PartitionMetrics) -> Option<i64>;

fn load_u(cell: &std::sync::atomic::AtomicU64) -> Option<i64> {
    Some(cell.load(Ordering::Relaxed).min(i64::MAX as u64) as i64)
}

const SHARD_METRICS: &[(&str, &str, &str, ShardValue)] = &[
    (
        "spillway_records_in_total",
        "counter",
        "Records read from the source.",
        |m| load_u(&m.records_in),
    ),
    (
        "spillway_bytes_in_total",
        "counter",
        "Record bytes read from the source.",
        |m| load_u(&m.bytes_in),
    ),
    (
        "spillway_rows_out_total",
        "counter",
        "Result rows written to the sink.",
        |m| load_u(&m.rows_out),
    ),
    (
        "spillway_windows_out_total",
        "counter",
        "Windows whose results were written.",
        |m| load_u(&m.windows_out),
    ),
    (
        "spillway_late_events_total",
        "counter",
        "Events that arrived after their window fired (counted, not aggregated).",
        |m| load_u(&m.late_events),
    ),
    (
        "spillway_late_rows_out_total",
        "counter",
        "Too-late events written to the table's late-data sink ('late.sink').",
        |m| load_u(&m.late_rows_out),
    ),
    (
        "spillway_windows_updated_total",
        "counter",
        "Windows emitted again with late updates (row kind +U, 'allowed-lateness').",
        |m| load_u(&m.windows_updated),
    ),
    (
        "spillway_watermark_ms",
        "gauge",
        "Event-time watermark of the shard, epoch milliseconds.",
        |m| Some(m.watermark_ms.load(Ordering::Relaxed)).filter(|&w| w != NO_VALUE),
    ),
    (
        "spillway_windows_open",
        "gauge",
        "Windows holding state on the shard.",
        |m| load_u(&m.windows_open),
    ),
    (
        "spillway_state_bytes",
        "gauge",
        "Bytes of window state on the shard.",
        |m| load_u(&m.state_bytes),
    ),
];

/// Appends `value` of a label to `out`, escaped as the text format requires.
fn push_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// `name{job="..",shard=".."` without the closing brace, for extra labels to follow.
fn series_start(out: &mut String, name: &str, job: &str, shard: usize) {
    out.push_str(name);
    out.push_str("{job=\"");
    push_label_value(out, job);
    let _ = write!(out, "\",shard=\"{shard}\"");
}

type CheckpointCell = fn(&crate::metrics::CheckpointMetrics) -> &std::sync::atomic::AtomicU64;

/// Job-level checkpoint series: name, type, help, cell.
const CHECKPOINT_METRICS: &[(&str, &str, &str, CheckpointCell)] = &[
    (
        "spillway_checkpoints_total",
        "counter",
        "Checkpoints committed.",
        |c| &c.committed_total,
    ),
    (
        "spillway_checkpoint_epoch",
        "gauge",
        "Epoch of the last committed checkpoint.",
        |c| &c.epoch,
    ),
    (
        "spillway_checkpoint_duration_us",
        "gauge",
        "Request to commit of the last checkpoint, microseconds.",
        |c| &c.duration_us,
    ),
    (
        "spillway_checkpoint_stall_us",
        "gauge",
        "Longest hot-path stall of a shard in the last checkpoint, microseconds.",
        |c| &c.stall_us,
    ),
    (
        "spillway_checkpoint_bytes_total",
        "counter",
        "Bytes written to the shards' state stores.",
        |c| &c.bytes_total,
    ),
];

/// Renders every job's metrics.
pub fn render(jobs: &[JobSample<'_>]) -> String {
    let mut out = String::with_capacity(4096);
    let shards: Vec<(&str, Vec<std::sync::Arc<ShardMetrics>>)> = jobs
        .iter()
        .map(|j| (j.metrics.job.as_str(), j.metrics.shards()))
        .collect();

    header(
        &mut out,
        "spillway_job_running",
        "gauge",
        "1 while the job runs, 0 once it finished, failed or stopped.",
    );
    for j in jobs {
        out.push_str("spillway_job_running{job=\"");
        push_label_value(&mut out, &j.metrics.job);
        let _ = writeln!(out, "\"}} {}", u8::from(j.running));
    }

    for &(name, kind, help, value) in CHECKPOINT_METRICS {
        header(&mut out, name, kind, help);
        for j in jobs {
            out.push_str(name);
            out.push_str("{job=\"");
            push_label_value(&mut out, &j.metrics.job);
            let _ = writeln!(
                out,
                "\"}} {}",
                value(&j.metrics.checkpoints).load(Ordering::Relaxed)
            );
        }
    }

    for &(name, kind, help, value) in SHARD_METRICS {
        header(&mut out, name, kind, help);
        for (job, blocks) in &shards {
            for m in blocks {
                if let Some(v) = value(m) {
                    series_start(&mut out, name, job, m.shard);
                    let _ = writeln!(out, "}} {v}");
                }
            }
        }
    }

    let name = "spillway_skipped_records_total";
    header(
        &mut out,
        name,
        "counter",
        "Records skipped as bad input, by reason.",
    );
    for (job, blocks) in &shards {
        for m in blocks {
            for (reason, cell) in SKIP_REASONS.iter().zip(&m.skipped) {
                series_start(&mut out, name, job, m.shard);
                let n = cell.load(Ordering::Relaxed);
                let _ = writeln!(out, ",reason=\"{reason}\"}} {n}");
            }
        }
    }

    let name = "spillway_result_latency_us";
    header(
        &mut out,
        name,
        "gauge",
        "Result latency (window close to result at the sink) since the job started, \
         microseconds; quantile 1 is the maximum.",
    );
    for (job, blocks) in &shards {
        for m in blocks {
            for (q, cell) in [
                ("0.5", &m.latency_p50_us),
                ("0.99", &m.latency_p99_us),
                ("1", &m.latency_max_us),
            ] {
                series_start(&mut out, name, job, m.shard);
                let v = cell.load(Ordering::Relaxed);
                let _ = writeln!(out, ",quantile=\"{q}\"}} {v}");
            }
        }
    }

    let partition_metrics: [(&str, &str, PartitionValue); 2] = [
        (
            "spillway_source_position",
            "Next offset to read of the partition.",
            |p| Some(p.position.load(Ordering::Relaxed)).filter(|&o| o >= 0),
        ),
        (
            "spillway_consumer_lag",
            "Records of the partition not read yet: high watermark of the last fetch minus \
             the position (Kafka sources only).",
            |p| p.lag(),
        ),
    ];
    for (name, help, value) in partition_metrics {
        header(&mut out, name, "gauge", help);
        for (job, blocks) in &shards {
            for m in blocks {
                for p in &m.partitions {
                    let Some(v) = value(p) else { continue };
                    series_start(&mut out, name, job, m.shard);
                    out.push_str(",topic=\"");
                    push_label_value(&mut out, &p.topic);
                    let _ = writeln!(out, "\",partition=\"{}\"}} {v}", p.partition);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use spillway_connectors::PartitionInfo;

    fn sample_job() -> JobMetrics {
        let job = JobMetrics::new("tr\"ades");
        let p = |partition| PartitionInfo {
            topic: "trades".into(),
            partition,
        };
        let blocks = job.start(&[vec![p(0)], vec![p(1)]]);
        blocks[0].records_in.store(100, Ordering::Relaxed);
        blocks[1].records_in.store(50, Ordering::Relaxed);
        blocks[0].skipped[4].store(3, Ordering::Relaxed);
        blocks[0]
            .watermark_ms
            .store(1_700_000_000_000, Ordering::Relaxed);
        blocks[0].latency_p99_us.store(1234, Ordering::Relaxed);
        let part = &blocks[0].partitions[0];
        part.position.store(40, Ordering::Relaxed);
        part.high_watermark.store(45, Ordering::Relaxed);
        blocks[1].partitions[0].position.store(7, Ordering::Relaxed);
        job
    }

    /// The value of the series whose line starts with `series`.
    fn value(text: &str, series: &str) -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .map(str::to_string)
    }

    #[test]
    fn renders_counters_gauges_and_labels() {
        let job = sample_job();
        let text = render(&[JobSample {
            metrics: &job,
            running: true,
        }]);
        let j = "job=\"tr\\\"ades\"";
        let v = |s: String| value(&text, &s);
        assert_eq!(
            v(format!("spillway_job_running{{{j}}}")).as_deref(),
            Some("1")
        );
        let records = format!("spillway_records_in_total{{{j},shard=\"0\"}}");
        assert_eq!(v(records).as_deref(), Some("100"));
        let records = format!("spillway_records_in_total{{{j},shard=\"1\"}}");
        assert_eq!(v(records).as_deref(), Some("50"));
        let skipped =
            format!("spillway_skipped_records_total{{{j},shard=\"0\",reason=\"oversized\"}}");
        assert_eq!(v(skipped).as_deref(), Some("3"));
        let wm = format!("spillway_watermark_ms{{{j},shard=\"0\"}}");
        assert_eq!(v(wm).as_deref(), Some("1700000000000"));
        // Shard 1 has no watermark yet: no series rather than a made-up value.
        assert!(!text.contains(&format!("spillway_watermark_ms{{{j},shard=\"1\"}}")));
        let q = format!("spillway_result_latency_us{{{j},shard=\"0\",quantile=\"0.99\"}}");
        assert_eq!(v(q).as_deref(), Some("1234"));
        let lag =
            format!("spillway_consumer_lag{{{j},shard=\"0\",topic=\"trades\",partition=\"0\"}}");
        assert_eq!(v(lag).as_deref(), Some("5"));
        // Partition 1's high watermark is unknown: a position, but no lag.
        let pos =
            format!("spillway_source_position{{{j},shard=\"1\",topic=\"trades\",partition=\"1\"}}");
        assert_eq!(v(pos).as_deref(), Some("7"));
        assert!(!text.contains("spillway_consumer_lag{job=\"tr\\\"ades\",shard=\"1\""));
    }

    #[test]
    fn every_metric_has_one_help_and_type_line_before_its_series() {
        let a = sample_job();
        let b = JobMetrics::new("other");
        let text = render(&[
            JobSample {
                metrics: &a,
                running: true,
            },
            JobSample {
                metrics: &b,
                running: false,
            },
        ]);
        let mut declared: Vec<&str> = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap_or_default();
                assert!(!declared.contains(&name), "{name} declared twice");
                declared.push(name);
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap_or_default();
                assert_eq!(
                    declared.last(),
                    Some(&name),
                    "series {line} outside its family"
                );
                let value = line.rsplit(' ').next().unwrap_or_default();
                assert!(value.parse::<i64>().is_ok(), "value of {line}");
            }
        }
        assert!(declared.len() >= 13, "{declared:?}");
        assert_eq!(
            value(&text, "spillway_job_running{job=\"other\"}").as_deref(),
            Some("0")
        );
    }
}
