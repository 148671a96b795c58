//! `spillway-bench memory`: generated trades in memory (one JSON-lines buffer per
//! partition) through the trades query into a checking sink. Measures the engine alone:
//! decode, watermarks, windows, exchange and emit, without Kafka or the disk.

use std::sync::Arc;

use spillway_connectors::memory_source::MemorySourceFactory;
use spillway_engine::job::{prepare, JobOptions};

use crate::checking_sink::CheckingSinkFactory;
use crate::error::{BenchError, Result};
use crate::figures::{BenchSummary, RunFigures, RUNS_MAX};
use crate::job_runner::{job_deadline, run_with_deadline};
use crate::trades_data::{generate_in_memory, TradeDataConfig};
use crate::trades_query::{check_report, default_shards, trades_program};

/// Options of the in-memory benchmark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryBenchOptions {
    /// The generated trades.
    pub data: TradeDataConfig,
    /// Shards (cores); None = one per partition, at most one per core.
    pub shards: Option<usize>,
    /// Checked runs; the report gives their median.
    pub runs: usize,
    /// Pin each shard to its own core.
    pub pin_cores: bool,
}

impl MemoryBenchOptions {
    /// `events` trades over `partitions` partitions, default shards, one run.
    pub fn new(events: u64, partitions: usize) -> Self {
        MemoryBenchOptions {
            data: TradeDataConfig::new(events, partitions),
            shards: None,
            runs: 1,
            pin_cores: true,
        }
    }
}

/// Checks the run count and shard count of a benchmark.
pub(crate) fn check_runs_and_shards(runs: usize, shards: Option<usize>) -> Result<()> {
    if runs == 0 || runs > RUNS_MAX {
        return Err(BenchError::Config(format!(
            "--runs {runs} is out of range [1, {RUNS_MAX}]"
        )));
    }
    if shards == Some(0) || shards.is_some_and(|s| s > 1024) {
        return Err(BenchError::Config(format!(
            "--shards {} is out of range [1, 1024]",
            shards.unwrap_or(0)
        )));
    }
    Ok(())
}

/// Generates the trades once, then runs the query `runs` times, checking each result before
/// keeping its figures. Fails on the first wrong result.
pub fn run_memory(opts: &MemoryBenchOptions) -> Result<BenchSummary> {
    check_runs_and_shards(opts.runs, opts.shards)?;
    let (buffers, expected) = generate_in_memory(&opts.data)?;
    let buffers: Vec<Arc<Vec<u8>>> = buffers.into_iter().map(Arc::new).collect();
    let program = trades_program(&[("connector", "memory")], &[("connector", "checking")])?;
    let shards = opts
        .shards
        .unwrap_or_else(|| default_shards(opts.data.partitions));
    let mut runs = Vec::with_capacity(opts.runs);
    for _ in 0..opts.runs {
        let sink = Arc::new(CheckingSinkFactory::new());
        let job_opts = JobOptions {
            shards: Some(shards),
            pin_cores: opts.pin_cores,
            source_override: Some(Arc::new(MemorySourceFactory::new(
                "trades",
                buffers.clone(),
            ))),
            sink_override: Some(sink.clone()),
            ..JobOptions::default()
        };
        let job = prepare(&program, &job_opts)?;
        let report = run_with_deadline(job, &job_opts, job_deadline(expected.events))?;
        check_report(&report, &expected)?;
        sink.check(&expected)?;
        runs.push(RunFigures::from_report(&report));
    }
    Ok(BenchSummary {
        name: "memory",
        partitions: opts.data.partitions,
        runs,
        extra: vec![("result_rows_expected", expected.rows() as f64)],
    })
}
