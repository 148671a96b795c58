//! `spillway-bench checkpoint`: the cost of checkpoints with N keys of window state.
//!
//! A one-hour tumbling window over N distinct keys (then updates to a hot fraction of them),
//! read from memory into a blackhole, checkpointed every `--interval-ms`. Once every key has
//! been seen the job is stopped, which takes a final checkpoint holding all N keys. Reported:
//! per checkpoint the duration (request to commit) and the longest hot-path stall of a shard,
//! the bytes of the last (full) checkpoint and its write rate, and the time to load that
//! checkpoint back (recovery: read, verify, decode, split by owner).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use spillway_connectors::memory_source::MemorySourceFactory;
use spillway_engine::checkpoint::job_marker::JobMarker;
use spillway_engine::checkpoint::{restore, CheckpointConfig};
use spillway_engine::job::{prepare, run_prepared, JobOptions};
use spillway_engine::metrics::JobMetrics;
use spillway_engine::window_operator::AggregateLayout;

use crate::error::{BenchError, Result};

/// Most keys the benchmark generates.
pub const KEYS_MAX: u64 = 50_000_000;

/// Options of `spillway-bench checkpoint`.
#[derive(Debug, Clone, Args)]
pub struct CheckpointArgs {
    /// Distinct keys of window state.
    #[arg(long, default_value_t = 1_000_000)]
    pub keys: u64,
    /// Events after the first pass over the keys, each updating one of the hot keys (the job
    /// is stopped after half of them, so the rest stay unread).
    #[arg(long, default_value_t = 4_000_000)]
    pub updates: u64,
    /// Fraction of the keys the updates touch (incremental checkpoints rewrite only their
    /// chunks).
    #[arg(long, default_value_t = 0.01)]
    pub hot_fraction: f64,
    /// Checkpoint interval, milliseconds.
    #[arg(long, default_value_t = 100)]
    pub interval_ms: u64,
    /// Shards (cores).
    #[arg(long, default_value_t = 2)]
    pub shards: usize,
    /// Checkpoint directory (default: a temporary directory, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[arg(long)]
    pub no_pin: bool,
}

/// What the benchmark measured.
#[derive(Debug, Clone)]
pub struct CheckpointFiguresReport {
    pub keys: u64,
    pub events: u64,
    pub checkpoints: u64,
    pub duration_p50_us: u64,
    pub duration_p99_us: u64,
    pub duration_max_us: u64,
    pub stall_p50_us: u64,
    pub stall_p99_us: u64,
    pub stall_max_us: u64,
    pub bytes_total: u64,
    /// Groups and time to load the last checkpoint.
    pub restored_groups: usize,
    pub restore: Duration,
    pub events_per_second: f64,
}

impl CheckpointFiguresReport {
    pub fn text(&self) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        format!(
            "keys {}  events {}  ({:.0} events/s)\n\
             checkpoints {}: duration p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms\n\
             hot-path stall per checkpoint (longest shard): p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms\n\
             bytes written {} ({:.1} MiB)\n\
             recovery: {} groups loaded in {:.3} s\n",
            self.keys,
            self.events,
            self.events_per_second,
            self.checkpoints,
            ms(self.duration_p50_us),
            ms(self.duration_p99_us),
            ms(self.duration_max_us),
            ms(self.stall_p50_us),
            ms(self.stall_p99_us),
            ms(self.stall_max_us),
            self.bytes_total,
            self.bytes_total as f64 / (1 << 20) as f64,
            self.restored_groups,
            self.restore.as_secs_f64()
        )
    }
}

const SQL: &str = "CREATE TABLE t (k STRING, v BIGINT, ts TIMESTAMP(3),
    WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH ('connector' = 'filesystem',
    'path' = 'unused', 'format' = 'json');
  CREATE TABLE out (k STRING, window_start TIMESTAMP(3), n BIGINT, s BIGINT)
    WITH ('connector' = 'blackhole');
  INSERT INTO out SELECT k, window_start, COUNT(*), SUM(v)
  FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' HOUR))
  GROUP BY k, window_start, window_end;";

/// Two partitions of JSON lines: every key once, then `updates` events on the hot keys.
fn generate(args: &CheckpointArgs) -> Vec<Arc<Vec<u8>>> {
    let mut parts = vec![Vec::new(), Vec::new()];
    let hot = ((args.keys as f64 * args.hot_fraction) as u64).max(1);
    let mut rng = StdRng::seed_from_u64(7);
    let total = args.keys + args.updates;
    for i in 0..total {
        let key = if i < args.keys {
            i
        } else {
            rng.random_range(0..hot)
        };
        // All inside the first hour: 1000 events per millisecond of event time at most.
        let ts = 1_700_000_000_000i64 - 1_700_000_000_000 % 3_600_000 + (i / 1000) as i64;
        let line = format!("{{\"k\":\"key-{key}\",\"v\":{i},\"ts\":{ts}}}\n");
        parts[(i % 2) as usize].extend_from_slice(line.as_bytes());
    }
    parts.into_iter().map(Arc::new).collect()
}

/// Runs the benchmark once.
pub fn run_checkpoint_bench(args: &CheckpointArgs) -> Result<CheckpointFiguresReport> {
    if args.keys == 0 || args.keys > KEYS_MAX {
        return Err(BenchError::Config(format!(
            "--keys {} is out of range [1, {KEYS_MAX}]",
            args.keys
        )));
    }
    if args.updates == 0 {
        return Err(BenchError::Config(
            "--updates must be at least 1: the job is stopped before its input ends".into(),
        ));
    }
    if !(0.0..=1.0).contains(&args.hot_fraction) {
        return Err(BenchError::Config(
            "--hot-fraction must be in [0, 1]".into(),
        ));
    }
    let temp = tempfile::Builder::new()
        .prefix("spillway-ckpt-bench-")
        .tempdir()
        .map_err(|e| BenchError::Config(format!("temp dir: {e}")))?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().join("state"));
    let _ = std::fs::remove_dir_all(&dir);
    let parts = generate(args);
    let program = spillway_engine::sql::parse_program(SQL)?;
    let metrics = Arc::new(JobMetrics::new("checkpoint-bench"));
    let cfg = CheckpointConfig::new(&dir, Duration::from_millis(args.interval_ms))?;
    let store = cfg.store.clone();
    let opts = JobOptions {
        shards: Some(args.shards),
        pin_cores: !args.no_pin,
        source_override: Some(Arc::new(MemorySourceFactory::new("t", parts))),
        metrics: Some(metrics.clone()),
        checkpoint: Some(cfg),
        ..JobOptions::default()
    };
    // Stop (final checkpoint with every key) once every key and half the updates are read,
    // before the input ends (at its end every window would fire and leave no state).
    let stop = opts.stop.clone();
    let stop_at = args.keys + args.updates / 2;
    let watcher = {
        let metrics = metrics.clone();
        std::thread::spawn(move || loop {
            if metrics.records_in() >= stop_at || stop.load(Ordering::Acquire) {
                stop.store(true, Ordering::Release);
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        })
    };
    let job = prepare(&program, &opts)?;
    let layout = match &job.pipeline.aggregation {
        Some(a) => AggregateLayout::new(a)?,
        None => {
            return Err(BenchError::Config(
                "the benchmark query lost its window".into(),
            ))
        }
    };
    let started = Instant::now();
    let report = run_prepared(job, &opts);
    opts.stop.store(true, Ordering::Release);
    let _ = watcher.join();
    let report = report?;
    let elapsed = started.elapsed();
    let c = report
        .checkpoints
        .clone()
        .ok_or_else(|| BenchError::Config("the job did not checkpoint".into()))?;

    let t0 = Instant::now();
    let marker = JobMarker::open(&dir, store.clone())?;
    let last = marker
        .last()
        .cloned()
        .ok_or_else(|| BenchError::Config("no complete checkpoint".into()))?;
    let restored = restore::load(&dir, &last, Some(&layout), &store)?;
    let groups = restored.groups;
    let split = restore::split_for_shards(&layout, restored.partials, args.shards);
    let restore_time = t0.elapsed();
    drop(split);
    // Hot keys read on both shards are a group on each.
    if (groups as u64) < args.keys {
        return Err(BenchError::Config(format!(
            "the last checkpoint holds {groups} groups, expected at least {}",
            args.keys
        )));
    }
    Ok(CheckpointFiguresReport {
        keys: args.keys,
        events: report.records_in(),
        checkpoints: c.checkpoints,
        duration_p50_us: c.duration_us.value_at_quantile(0.5),
        duration_p99_us: c.duration_us.value_at_quantile(0.99),
        duration_max_us: c.duration_us.max(),
        stall_p50_us: c.stall_us.value_at_quantile(0.5),
        stall_p99_us: c.stall_us.value_at_quantile(0.99),
        stall_max_us: c.stall_us.max(),
        bytes_total: c.bytes,
        restored_groups: groups,
        restore: restore_time,
        events_per_second: report.records_in() as f64 / elapsed.as_secs_f64().max(1e-9),
    })
}
