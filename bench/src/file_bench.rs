//! `spillway-bench file`: a JSON-lines file of trades through the filesystem source and the
//! trades query into a blackhole sink — the analogue of the batch engines' reference figure
//! (DuckDB, Flink SQL) over the same 10 million events.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use spillway_engine::job::{available_cores, prepare, JobOptions};

use crate::error::{BenchError, Result};
use crate::figures::{BenchSummary, RunFigures};
use crate::job_runner::{job_deadline, run_with_deadline};
use crate::memory_bench::check_runs_and_shards;
use crate::trades_data::{expected_from_file, generate, Expected, TradeDataConfig};
use crate::trades_query::{check_report, trades_program};

/// Buffer of the writer of the generated file.
const WRITE_BUFFER_BYTES: usize = 8 << 20;

/// Options of the file benchmark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileBenchOptions {
    /// The generated trades (`partitions` is ignored: the source splits the file).
    pub data: TradeDataConfig,
    /// Where the file is: an existing file is reused (its trades are read back for the
    /// oracle); a missing one is generated there and kept. None = generated in the temporary
    /// directory and removed afterwards.
    pub path: Option<PathBuf>,
    /// Shards (cores); None = every core.
    pub shards: Option<usize>,
    /// Checked runs; the report gives their median.
    pub runs: usize,
    /// Pin each shard to its own core.
    pub pin_cores: bool,
}

impl FileBenchOptions {
    /// `events` trades in a temporary file, every core, one run.
    pub fn new(events: u64) -> Self {
        FileBenchOptions {
            data: TradeDataConfig::new(events, 1),
            path: None,
            shards: None,
            runs: 1,
            pin_cores: true,
        }
    }
}

/// Writes the trades of `data` as JSON lines to `path`.
fn write_trades(path: &Path, data: &TradeDataConfig) -> Result<Expected> {
    let shown = path.display().to_string();
    let file = File::create(path)
        .map_err(|e| BenchError::io(format!("cannot create the data file {shown}"), e))?;
    let mut out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, file);
    let write_err = |e| BenchError::io(format!("cannot write the data file {shown}"), e);
    let expected = generate(data, |_, line| {
        out.write_all(line).map_err(write_err)?;
        out.write_all(b"\n").map_err(write_err)
    })?;
    let file = out.into_inner().map_err(|e| write_err(e.into_error()))?;
    file.sync_all().map_err(write_err)?;
    Ok(expected)
}

/// Removes the generated file when the benchmark ends (also on an error).
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Writes (or reuses) the file, then runs the query `runs` times over it, checking each
/// job (every trade read, none skipped or late, one result row per (symbol, window) pair)
/// before keeping its figures.
pub fn run_file(opts: &FileBenchOptions) -> Result<BenchSummary> {
    check_runs_and_shards(opts.runs, opts.shards)?;
    let mut data = opts.data;
    data.partitions = 1;
    data.validate()?;
    let (path, cleanup) = match &opts.path {
        Some(p) => (p.clone(), RemoveOnDrop(None)),
        None => {
            let p = std::env::temp_dir().join(format!(
                "spillway-bench-trades-{}-{}.jsonl",
                std::process::id(),
                data.events
            ));
            (p.clone(), RemoveOnDrop(Some(p)))
        }
    };
    let reused = opts.path.is_some() && path.exists();
    let expected = if reused {
        expected_from_file(&path)?
    } else {
        write_trades(&path, &data)?
    };
    let file_bytes = std::fs::metadata(&path)
        .map_err(|e| BenchError::io(format!("cannot stat {}", path.display()), e))?
        .len();
    let path_text = path
        .to_str()
        .ok_or_else(|| BenchError::Config(format!("the path {} is not UTF-8", path.display())))?;
    let program = trades_program(
        &[
            ("connector", "filesystem"),
            ("path", path_text),
            ("format", "json"),
        ],
        &[("connector", "blackhole")],
    )?;
    let shards = opts
        .shards
        .unwrap_or_else(|| available_cores().len())
        .max(1);
    let mut runs = Vec::with_capacity(opts.runs);
    let mut splits = 0;
    for _ in 0..opts.runs {
        let job_opts = JobOptions {
            shards: Some(shards),
            pin_cores: opts.pin_cores,
            stop: Arc::default(),
            ..JobOptions::default()
        };
        let job = prepare(&program, &job_opts)?;
        splits = job.partitions.len();
        let report = run_with_deadline(job, &job_opts, job_deadline(expected.events))?;
        check_report(&report, &expected)?;
        runs.push(RunFigures::from_report(&report));
    }
    drop(cleanup);
    let mut summary = BenchSummary {
        name: "file",
        partitions: splits,
        runs,
        extra: vec![
            ("file_bytes", file_bytes as f64),
            ("file_reused", if reused { 1.0 } else { 0.0 }),
            ("result_rows_expected", expected.rows() as f64),
        ],
    };
    let bytes_per_event = file_bytes as f64 / expected.events.max(1) as f64;
    let mb_per_second = summary.median_events_per_second() * bytes_per_event / 1e6;
    summary
        .extra
        .push(("megabytes_per_second_median", mb_per_second.round()));
    Ok(summary)
}
