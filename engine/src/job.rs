//! A job: one pipeline of a program, run on one shard per core until its sources are done
//! or it is told to stop.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use spillway_connectors::{EpochSinkContext, PartitionInfo, SinkFactory, SourceFactory};

use crate::catalog::TableDef;
use crate::checkpoint::committer::{CheckpointSummary, Committer, SharedPublisher};
use crate::checkpoint::control::EpochControl;
use crate::checkpoint::job_marker::{generation_dir, generations, JobMarker};
use crate::checkpoint::shard_checkpoint::ShardCheckpointSetup;
use crate::checkpoint::{restore, CheckpointConfig, CheckpointTuning};
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
    /// Checkpoints (run options; the SQL's `SET 'checkpoint.dir'` etc. override them).
    pub checkpoint: Option<CheckpointConfig>,
    /// Checkpoint settings of the tuning profile (store limits, io_uring depth, defaults).
    pub checkpoint_tuning: CheckpointTuning,
    /// Publishes every committed checkpoint (group mode's state topic).
    pub checkpoint_publisher: Option<SharedPublisher>,
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
            checkpoint: None,
            checkpoint_tuning: CheckpointTuning::default(),
            checkpoint_publisher: None,
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
    /// What the checkpoints did (None when the job does not checkpoint).
    pub checkpoints: Option<CheckpointSummary>,
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
    /// Too-late rows written to the late-data sink.
    pub fn late_rows_out(&self) -> u64 {
        self.sum(|s| s.late_rows_out)
    }
    /// Emitted windows emitted again with late updates ("+U").
    pub fn windows_updated(&self) -> u64 {
        self.sum(|s| s.windows_updated)
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
    /// Repartition-topic rows skipped because they were already applied.
    pub fn duplicates_skipped(&self) -> u64 {
        self.sum(|s| s.skipped_duplicates)
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
    pub checkpoint: Option<CheckpointConfig>,
    /// The dimension table the pipeline joins, if any (its changelog checked).
    pub dimension: Option<Arc<crate::dimension::DimensionSetup>>,
    /// The second stream of a join of two streams, if any.
    pub stream_join: Option<Arc<crate::stream_join::JoinInput>>,
    /// Group mode: processes share the job through Kafka consumer groups (see `group/`).
    pub group: Option<crate::group::GroupPlan>,
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
    let checkpoint = CheckpointConfig::from_settings(
        &program.settings,
        opts.checkpoint.as_ref(),
        &opts.checkpoint_tuning,
    )?;
    let sink = match &opts.sink_override {
        Some(s) => s.clone(),
        None => connector_registry::sink_factory(
            &sink_table,
            pipeline.output_schema.clone(),
            checkpoint.is_some(),
        )?,
    };
    let sink = crate::late_sink::attach(program, &pipeline, sink, checkpoint.is_some())?;
    let group = match &opts.source_override {
        Some(_) => None,
        None => crate::group::plan_group(
            program,
            &pipeline,
            &source_table,
            &sink_table,
            checkpoint.as_ref(),
        )?,
    };
    if group.is_none() && opts.source_override.is_none() {
        crate::group::plan::refuse_group_settings(program)?;
    }
    let mut partitions = source.discover()?;
    partitions.sort();
    let dimension = crate::dimension::prepare(program, &pipeline, &opts.kafka_properties)?;
    let idle_ms = connector_registry::idle_timeout_ms(&source_table)?
        .unwrap_or(opts.limits.idle_timeout_ms_default);
    let stream_join = crate::stream_join::prepare(
        program,
        &pipeline,
        &opts.kafka_properties,
        shards,
        opts.limits.record_bytes_max,
        opts.limits.idle_timeout_ms_default,
        checkpoint.is_some(),
    )?;
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
        checkpoint,
        dimension,
        stream_join,
        group,
    })
}

/// Runs the program's pipeline to the end (bounded sources) or until `opts.stop` is set.
pub fn run_program(program: &Program, opts: &JobOptions) -> Result<JobReport> {
    let job = prepare(program, opts)?;
    run_prepared(job, opts)
}

/// Checkpoint state of a job about to start: what each shard restores, and the committer.
struct CheckpointStart {
    shards: Vec<ShardCheckpointSetup>,
    resume: Vec<Option<Vec<i64>>>,
    control: Arc<EpochControl>,
    committer: Committer,
}

/// A stable fingerprint of the pipeline: checkpoints of another query are refused.
fn query_fingerprint(job: &PreparedJob) -> String {
    let text = format!("{:?}|{:?}", job.pipeline, job.source_table.schema());
    // FNV-1a: stable across builds and platforms.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Opens the job record, restores the last complete checkpoint (if any) for this run's
/// shards, settles the sink's epochs and builds the committer.
fn start_checkpoints(
    job: &PreparedJob,
    cfg: &CheckpointConfig,
    metrics: Option<&Arc<JobMetrics>>,
    publisher: Option<&SharedPublisher>,
) -> Result<CheckpointStart> {
    let n = job.shards;
    let query = query_fingerprint(job);
    let marker = JobMarker::open(&cfg.dir, cfg.store.clone())?;
    let last = marker.last().cloned();
    if let Some(m) = &last {
        if m.query != query {
            return Err(EngineError::Config(format!(
                "the checkpoints in {} were written by another query; point checkpoint.dir \
                 at a new directory (or delete this one to start over)",
                cfg.dir.display()
            )));
        }
    }
    let layout = match &job.pipeline.aggregation {
        Some(a) => Some(crate::window_operator::AggregateLayout::new(a)?),
        None => None,
    };
    let restored = match &last {
        Some(m) => {
            let r = restore::load(&cfg.dir, m, layout.as_ref(), &cfg.store)?;
            tracing::info!(
                "resuming from checkpoint {} ({} shards then, {n} now): {} partitions, {} groups",
                m.epoch,
                m.shards,
                r.partitions.len(),
                r.groups
            );
            Some(r)
        }
        None => None,
    };
    // Generations other than the one restored are leftovers of runs that never committed.
    let old_generation = last.as_ref().map(|m| m.generation);
    for g in generations(&cfg.dir)? {
        if Some(g) != old_generation {
            let dir = generation_dir(&cfg.dir, g);
            std::fs::remove_dir_all(&dir).map_err(|e| {
                EngineError::io(
                    format!("cannot remove stale checkpoints {}", dir.display()),
                    e,
                )
            })?;
        }
    }
    let generation = old_generation.map_or(1, |g| g + 1);
    let committed = last.as_ref().map_or(0, |m| m.epoch);
    let committed_positions = restored
        .as_ref()
        .map(|r| {
            r.partitions
                .iter()
                .map(|(p, (o, _))| (p.clone(), *o))
                .collect()
        })
        .unwrap_or_default();
    job.sink.bind_job(&EpochSinkContext {
        dir: cfg.dir.join("sink"),
        attempt: generation,
        shard_partitions: (0..n)
            .map(|s| assign_partitions(&job.partitions, s, n))
            .collect(),
        committed_positions,
        source_group: job.source.consumer_group(),
        checkpoint_interval: cfg.interval,
    })?;
    job.sink.recover_epochs(last.as_ref().map(|m| m.epoch))?;
    let control = Arc::new(EpochControl::new(n, committed));
    let (partials, floors, clocks) = match restored {
        Some(r) => {
            let per_shard = match &layout {
                Some(l) => restore::split_for_shards(l, r.partials, n),
                None => (0..n).map(|_| Vec::new()).collect(),
            };
            (per_shard, r.floors, Some(r.partitions))
        }
        None => ((0..n).map(|_| Vec::new()).collect(), Vec::new(), None),
    };
    let mut shards = Vec::with_capacity(n);
    let mut resume = Vec::with_capacity(n);
    for (shard, restored) in partials.into_iter().enumerate() {
        let parts = assign_partitions(&job.partitions, shard, n);
        let (offsets, ts_max): (Option<Vec<i64>>, Vec<i64>) = match &clocks {
            Some(c) => {
                let mut offsets = Vec::with_capacity(parts.len());
                let mut ts = Vec::with_capacity(parts.len());
                for p in &parts {
                    let (o, t) = c.get(p).copied().unwrap_or_else(|| {
                        tracing::warn!(
                            "partition {} of '{}' is not in the checkpoint: reading it from offset 0",
                            p.partition,
                            p.topic
                        );
                        (0, i64::MIN)
                    });
                    offsets.push(o);
                    ts.push(t);
                }
                (Some(offsets), ts)
            }
            None => (None, vec![i64::MIN; parts.len()]),
        };
        resume.push(offsets);
        shards.push(ShardCheckpointSetup {
            control: control.clone(),
            generation_dir: generation_dir(&cfg.dir, generation),
            generation,
            store: cfg.store.clone(),
            committed,
            query: query.clone(),
            restored,
            floors: floors.clone(),
            ts_max,
        });
    }
    let committer = Committer {
        dir: cfg.dir.clone(),
        interval: cfg.interval,
        final_timeout: cfg.final_timeout,
        marker,
        generation,
        old_generation,
        query,
        shards: n,
        sink: job.sink.clone(),
        offsets: if job.sink.commits_source_offsets() {
            None
        } else {
            job.source.offset_committer()?
        },
        metrics: metrics.cloned(),
        publisher: publisher.cloned(),
    };
    Ok(CheckpointStart {
        shards,
        resume,
        control,
        committer,
    })
}

/// Counts a shard as stopped when its executor ends, however it ends.
struct RunningGuard(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs a prepared job.
pub fn run_prepared(mut job: PreparedJob, opts: &JobOptions) -> Result<JobReport> {
    if let Some(plan) = job.group.take() {
        return crate::group::run_group(job, plan, opts);
    }
    let started = Instant::now();
    let n = job.shards;
    let mut checkpoints = match &job.checkpoint {
        Some(cfg) => Some(start_checkpoints(
            &job,
            cfg,
            opts.metrics.as_ref(),
            opts.checkpoint_publisher.as_ref(),
        )?),
        None => None,
    };
    // One bounded ring per ordered pair of shards.
    let (senders, receivers) = crate::exchange_link::make_links(n, opts.limits.exchange_queue_max);
    let first_error = Arc::new(OnceLock::new());
    let running = Arc::new(std::sync::atomic::AtomicUsize::new(n));
    let shard_metrics = match &opts.metrics {
        Some(m) => {
            let parts: Vec<_> = (0..n)
                .map(|s| assign_partitions(&job.partitions, s, n))
                .collect();
            m.start(&parts).into_iter().map(Some).collect()
        }
        None => vec![None; n],
    };
    let mut setups: Vec<Option<ShardCheckpointSetup>> = match &mut checkpoints {
        Some(c) => std::mem::take(&mut c.shards)
            .into_iter()
            .map(Some)
            .collect(),
        None => (0..n).map(|_| None).collect(),
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
            resume: checkpoints.as_ref().and_then(|c| c.resume[shard].clone()),
            limits: opts.limits.clone(),
            idle_timeout: job.idle_timeout,
            stop: opts.stop.clone(),
            first_error: first_error.clone(),
            senders: tx,
            receivers: rx,
            metrics: shard_metrics[shard].clone(),
            checkpoint: setups[shard].take(),
            dimension: job.dimension.clone(),
            stream_join: job.stream_join.clone(),
        };
        let placement = if opts.pin_cores {
            Placement::Fixed(job.cores[shard % job.cores.len()])
        } else {
            Placement::Unbound
        };
        let guard = RunningGuard(running.clone());
        // glommio's preempt timer stays at its default: shorter timers made executors park
        // and never wake (seen with 500 us); shards poll their links themselves instead.
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("spillway-shard-{shard}"))
            .spawn(move || async move {
                let _guard = guard;
                glommio_dma_probe_workaround().await;
                run_shard(ctx).await
            })
            .map_err(|e| EngineError::Internal(format!("cannot start shard {shard}: {e}")))?;
        handles.push(handle);
    }
    // The committer runs on this thread while the shards run.
    let committed = checkpoints.map(|c| {
        let failed = || first_error.get().is_some();
        let still = || running.load(Ordering::Acquire) > 0;
        let r = c.committer.run(&c.control, failed, still);
        if r.is_err() {
            c.control.abort();
            opts.stop.store(true, Ordering::Release);
        }
        r
    });
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
    let checkpoints = committed.transpose()?;
    close?;
    Ok(JobReport {
        shards: reports,
        elapsed: started.elapsed(),
        checkpoints,
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
