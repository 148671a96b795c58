//! A job: one pipeline of a program, run on one shard per core until its sources are done
//! or it is told to stop.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use spillway_connectors::{PartitionInfo, SinkFactory, SourceFactory};

use crate::catalog::TableDef;
use crate::connector_registry;
use crate::error::{EngineError, Result};
use crate::limits::Limits;
use crate::metrics::JobMetrics;
use crate::plan::{Pipeline, Program};
use crate::shard::{run_shard, ShardContext, ShardReport};

/// How to run a job.
#[derive(Clone)]
pub struct JobOptions {
    /// Number of shards (cores); None = every core this process may run on.
    pub shards: Option<usize>,
    /// Pin each shard to its own core.
    pub pin_cores: bool,
    /// The cores that run shards, in order (None: every core this process may run on);
    /// each must be one of [`available_cores`]. A tuning profile sets it.
    pub cores: Option<Vec<usize>>,
    /// librdkafka properties (no `properties.` prefix) for every Kafka source and sink whose
    /// table does not set them itself. A tuning profile sets them.
    pub kafka_properties: BTreeMap<String, String>,
    pub limits: Limits,
    /// Set to stop the job (from a signal handler, a timer or another thread).
    pub stop: Arc<AtomicBool>,
    /// Replaces the source built from the table's options (benchmarks, tests).
    pub source_override: Option<Arc<dyn SourceFactory>>,
    /// Replaces the sink built from the table's options (benchmarks, tests).
    pub sink_override: Option<Arc<dyn SinkFactory>>,
    /// Live metrics the shards publish (`spillway serve`); one block per shard is created
    /// when the job starts.
    pub metrics: Option<Arc<JobMetrics>>,
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions {
            shards: None,
            pin_cores: true,
            cores: None,
            kafka_properties: BTreeMap::new(),
            limits: Limits::default(),
            stop: Arc::new(AtomicBool::new(false)),
            source_override: None,
            sink_override: None,
            metrics: None,
        }
    }
}

/// The cores this process may run on, in order.
pub fn available_cores() -> Vec<usize> {
    let mut ids: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    ids.sort_unstable();
    if ids.is_empty() {
        ids.push(0);
    }
    ids
}

/// The cores shards run on: `chosen` (each checked to be available) or every available core.
fn job_cores(chosen: Option<&[usize]>) -> Result<Vec<usize>> {
    let available = available_cores();
    let Some(chosen) = chosen else {
        return Ok(available);
    };
    if chosen.is_empty() {
        return Err(EngineError::Config(
            "the list of cores to run shards on is empty".into(),
        ));
    }
    if let Some(c) = chosen.iter().find(|c| !available.contains(c)) {
        return Err(EngineError::Config(format!(
            "core {c} is not available to this process (available: {available:?})"
        )));
    }
    Ok(chosen.to_vec())
}

/// The partitions of shard `shard` of `shards`: round robin over the sorted partitions.
pub fn assign_partitions(
    partitions: &[PartitionInfo],
    shard: usize,
    shards: usize,
) -> Vec<PartitionInfo> {
    partitions
        .iter()
        .enumerate()
        .filter(|(i, _)| i % shards == shard)
        .map(|(_, p)| p.clone())
        .collect()
}

/// What a finished job did.
#[derive(Debug, Clone)]
pub struct JobReport {
    pub shards: Vec<ShardReport>,
    pub elapsed: Duration,
}

impl JobReport {
    fn sum(&self, f: impl Fn(&ShardReport) -> u64) -> u64 {
        self.shards.iter().map(f).sum()
    }
    pub fn records_in(&self) -> u64 {
        self.sum(|s| s.records_in)
    }
    pub fn bytes_in(&self) -> u64 {
        self.sum(|s| s.bytes_in)
    }
    pub fn rows_out(&self) -> u64 {
        self.sum(|s| s.rows_out)
    }
    pub fn windows_out(&self) -> u64 {
        self.sum(|s| s.windows_out)
    }
    pub fn late_events(&self) -> u64 {
        self.sum(|s| s.late_events)
    }
    pub fn late_partial_groups(&self) -> u64 {
        self.sum(|s| s.late_partial_groups)
    }
    /// Records skipped as bad input, by reason.
    pub fn skipped(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("malformed JSON", self.sum(|s| s.decode.malformed)),
            ("missing field", self.sum(|s| s.decode.missing_field)),
            ("wrong type", self.sum(|s| s.decode.wrong_type)),
            ("null event time", self.sum(|s| s.decode.null_time)),
            ("oversized", self.sum(|s| s.skipped_oversized)),
            ("empty payload", self.sum(|s| s.skipped_empty)),
        ]
    }
    pub fn skipped_total(&self) -> u64 {
        self.skipped().iter().map(|(_, n)| n).sum()
    }
    /// Result latency (window close to result) over all shards, microseconds.
    pub fn latency_us(&self) -> hdrhistogram::Histogram<u64> {
        let mut h = crate::emitter::latency_histogram();
        for s in &self.shards {
            let _ = h.add(&s.latency_us);
        }
        h
    }
    pub fn events_per_second(&self) -> f64 {
        self.records_in() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    pub fn samples(&self) -> Vec<String> {
        self.shards
            .iter()
            .flat_map(|s| s.decode_samples.iter().cloned())
            .take(8)
            .collect()
    }
}

/// A pipeline ready to run: its tables and its connectors, checked.
pub struct PreparedJob {
    pub pipeline: Arc<Pipeline>,
    pub source_table: Arc<TableDef>,
    pub sink_table: Arc<TableDef>,
    pub source: Arc<dyn SourceFactory>,
    pub sink: Arc<dyn SinkFactory>,
    pub partitions: Vec<PartitionInfo>,
    pub shards: usize,
    pub cores: Vec<usize>,
    pub idle_timeout: Duration,
}

/// Picks the program's pipeline, builds and checks its connectors, discovers partitions.
pub fn prepare(program: &Program, opts: &JobOptions) -> Result<PreparedJob> {
    opts.limits.validate()?;
    let pipeline = match program.pipelines.as_slice() {
        [p] => p.clone(),
        [] => {
            return Err(EngineError::Config(
                "the SQL has no INSERT INTO or SELECT: nothing to run".into(),
            ))
        }
        _ => {
            return Err(EngineError::Config(
                "only one INSERT INTO or SELECT per file is supported".into(),
            ))
        }
    };
    let table = |name: &str| {
        program
            .table(name)
            .cloned()
            .ok_or_else(|| EngineError::Internal(format!("table '{name}' missing from the plan")))
    };
    let source_table =
        connector_registry::with_kafka_properties(table(&pipeline.source)?, &opts.kafka_properties);
    let sink_table =
        connector_registry::with_kafka_properties(table(&pipeline.sink)?, &opts.kafka_properties);
    let cores = job_cores(opts.cores.as_deref())?;
    let shards = opts.shards.unwrap_or(cores.len()).max(1);
    let source = match &opts.source_override {
        Some(s) => s.clone(),
        None => {
            connector_registry::source_factory(&source_table, shards, opts.limits.record_bytes_max)?
        }
    };
    let sink = match &opts.sink_override {
        Some(s) => s.clone(),
        None => connector_registry::sink_factory(&sink_table, pipeline.output_schema.clone())?,
    };
    let mut partitions = source.discover()?;
    partitions.sort();
    let idle_ms = connector_registry::idle_timeout_ms(&source_table)?
        .unwrap_or(opts.limits.idle_timeout_ms_default);
    Ok(PreparedJob {
        pipeline: Arc::new(pipeline),
        source_table: Arc::new(source_table),
        sink_table: Arc::new(sink_table),
        source,
        sink,
        partitions,
        shards,
        cores,
        idle_timeout: Duration::from_millis(idle_ms as u64),
    })
}

/// Runs the program's pipeline to the end (bounded sources) or until `opts.stop` is set.
pub fn run_program(program: &Program, opts: &JobOptions) -> Result<JobReport> {
    let job = prepare(program, opts)?;
    run_prepared(job, opts)
}

/// Runs a prepared job.
pub fn run_prepared(job: PreparedJob, opts: &JobOptions) -> Result<JobReport> {
    let started = Instant::now();
    let n = job.shards;
    // One bounded ring per ordered pair of shards.
    let (senders, receivers) = crate::exchange_link::make_links(n, opts.limits.exchange_queue_max);
    let first_error = Arc::new(OnceLock::new());
    let shard_metrics = match &opts.metrics {
        Some(m) => {
            let parts: Vec<_> = (0..n)
                .map(|s| assign_partitions(&job.partitions, s, n))
                .collect();
            m.start(&parts).into_iter().map(Some).collect()
        }
        None => vec![None; n],
    };
    let mut handles = Vec::with_capacity(n);
    for (shard, (tx, rx)) in senders.into_iter().zip(receivers).enumerate() {
        let ctx = ShardContext {
            shard,
            shards: n,
            pipeline: job.pipeline.clone(),
            source_table: job.source_table.clone(),
            source: job.source.clone(),
            sink: job.sink.clone(),
            partitions: assign_partitions(&job.partitions, shard, n),
            resume: None,
            limits: opts.limits.clone(),
            idle_timeout: job.idle_timeout,
            stop: opts.stop.clone(),
            first_error: first_error.clone(),
            senders: tx,
            receivers: rx,
            metrics: shard_metrics[shard].clone(),
        };
        let placement = if opts.pin_cores {
            Placement::Fixed(job.cores[shard % job.cores.len()])
        } else {
            Placement::Unbound
        };
        // glommio's preempt timer stays at its default: shorter timers made executors park
        // and never wake (seen with 500 us); shards poll their links themselves instead.
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("spillway-shard-{shard}"))
            .spawn(move || async move {
                glommio_dma_probe_workaround().await;
                run_shard(ctx).await
            })
            .map_err(|e| EngineError::Internal(format!("cannot start shard {shard}: {e}")))?;
        handles.push(handle);
    }
    let mut reports = Vec::with_capacity(n);
    let mut errors = Vec::new();
    for (shard, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(r)) => reports.push(r),
            Ok(Err(e)) => errors.push((shard, e)),
            Err(_) => errors.push((
                shard,
                EngineError::Internal(format!("shard {shard} panicked")),
            )),
        }
    }
    let close = job.sink.close();
    if !errors.is_empty() {
        opts.stop.store(true, Ordering::Release);
        // Report the root cause: the error of the shard that failed first.
        let first = first_error.get().copied();
        let pos = errors
            .iter()
            .position(|(s, _)| Some(*s) == first)
            .unwrap_or(0);
        let (_, e) = errors.swap_remove(pos);
        for (shard, other) in errors {
            tracing::debug!("shard {shard} also failed: {other}");
        }
        return Err(e);
    }
    close?;
    Ok(JobReport {
        shards: reports,
        elapsed: started.elapsed(),
    })
}

/// glommio probes polled I/O on the first direct-I/O open; on some filesystems the probe
/// misfires unless a non-empty file is opened with `DmaFile::open` once at start-up
/// (glommio issue 605). The executable itself is such a file.
async fn glommio_dma_probe_workaround() {
    if let Ok(exe) = std::env::current_exe() {
        if let Ok(f) = glommio::io::DmaFile::open(&exe).await {
            let _ = f.close().await;
        }
    }
}
