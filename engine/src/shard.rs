//! One shard: the whole pipeline for the partitions of one core, on a glommio executor
//! pinned to that core.
//!
//! Invariant: a shard never takes a lock on the hot path; everything it touches is its own,
//! and what crosses cores (partials, watermarks) travels on bounded single-producer channels.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use arrow::datatypes::TimestampMillisecondType;
use rtrb::{Consumer, Producer};
use spillway_connectors::{PartitionInfo, RawBatch, SinkFactory, SourceFactory, SourceStatus};

use crate::catalog::TableDef;
use crate::checkpoint::shard_checkpoint::{ShardCheckpointSetup, ShardCheckpointer};
use crate::decode::{DecodeStats, JsonDecoder};
use crate::dimension::{DimensionSetup, ShardDimension};
use crate::emitter::Emitter;
use crate::error::Result;
use crate::exchange::{split_by_owner, ExchangeMsg};
use crate::exchange_link::Links;
use crate::expr::{evaluate_predicate, filter_batch};
use crate::late_sink::LateSink;
use crate::limits::Limits;
use crate::metrics::{MetricsPublisher, ShardMetrics, ShardView};
use crate::output_stage::OutputStage;
use crate::plan::Pipeline;
use crate::watermark::{ShardWatermark, WatermarkTracker, WATERMARK_MAX};
use crate::window_operator::{AggregateLayout, FiredWindow, WindowOperator};

/// Everything a shard needs, handed to its executor thread.
pub struct ShardContext {
    pub shard: usize,
    pub shards: usize,
    pub pipeline: Arc<Pipeline>,
    pub source_table: Arc<TableDef>,
    pub source: Arc<dyn SourceFactory>,
    pub sink: Arc<dyn SinkFactory>,
    pub partitions: Vec<PartitionInfo>,
    pub resume: Option<Vec<i64>>,
    pub limits: Limits,
    pub idle_timeout: Duration,
    /// Set by the job to stop reading (SIGINT, SIGTERM, --duration, another shard failed).
    pub stop: Arc<AtomicBool>,
    /// The number of the shard that failed first.
    pub first_error: Arc<OnceLock<usize>>,
    /// `senders[to]` for every other shard (None at this shard's own index).
    pub senders: Vec<Option<Producer<ExchangeMsg>>>,
    /// Channels from every other shard.
    pub receivers: Vec<(usize, Consumer<ExchangeMsg>)>,
    /// Live metrics this shard publishes once per batch (`spillway serve`).
    pub metrics: Option<Arc<ShardMetrics>>,
    /// Checkpoints (None when the job does not checkpoint).
    pub checkpoint: Option<ShardCheckpointSetup>,
    /// The dimension table the pipeline joins (each shard reads its own copy).
    pub dimension: Option<Arc<DimensionSetup>>,
    /// The second stream of a join of two streams (`crate::stream_join`).
    pub stream_join: Option<Arc<crate::stream_join::JoinInput>>,
}

/// What a shard did.
#[derive(Debug, Clone)]
pub struct ShardReport {
    pub shard: usize,
    pub partitions: Vec<PartitionInfo>,
    /// Next offset to read per partition when the shard stopped.
    pub positions: Vec<i64>,
    pub records_in: u64,
    pub bytes_in: u64,
    pub decode: DecodeStats,
    pub decode_samples: Vec<String>,
    pub skipped_oversized: u64,
    pub skipped_empty: u64,
    /// Repartition-topic rows already applied (written again after a writer restarted).
    pub skipped_duplicates: u64,
    pub rows_filtered_out: u64,
    pub late_events: u64,
    /// Too-late rows written to the late-data sink (`'late.sink'`).
    pub late_rows_out: u64,
    /// Emitted windows emitted again with late updates (row kind "+U").
    pub windows_updated: u64,
    pub late_partial_groups: u64,
    pub rows_out: u64,
    pub windows_out: u64,
    pub latency_us: hdrhistogram::Histogram<u64>,
    pub watermark: i64,
    pub decode_ns: u64,
    pub aggregate_ns: u64,
    pub sink_ns: u64,
    pub busy_ns: u64,
    pub elapsed: Duration,
    /// Whether the source delivered everything (bounded) rather than being stopped.
    pub finished: bool,
    /// Checkpoints this shard took its part of.
    pub checkpoints: u64,
    /// How long each snapshot held the hot path, microseconds.
    pub checkpoint_stall_us: hdrhistogram::Histogram<u64>,
}

/// Runs one shard to completion. Called inside the shard's glommio executor.
pub async fn run_shard(ctx: ShardContext) -> Result<ShardReport> {
    let first_error = ctx.first_error.clone();
    let stop = ctx.stop.clone();
    let shard = ctx.shard;
    let result = run_shard_inner(ctx).await;
    if let Err(e) = &result {
        tracing::debug!("shard {shard} failed: {e}");
        let _ = first_error.set(shard);
        stop.store(true, Ordering::Release);
    }
    result
}

/// Sends a watermark to every shard (to this shard's own final stage directly).
async fn broadcast_watermark(
    shard: usize,
    links: &mut Links,
    emitter: &Rc<RefCell<Emitter>>,
    wm: ShardWatermark,
    at: Instant,
) -> Result<()> {
    for to in 0..links.shards() {
        if to == shard {
            continue;
        }
        let msg = ExchangeMsg::Watermark {
            from: shard,
            watermark: wm.watermark,
            idle: wm.idle,
            at,
        };
        links.send(to, msg, emitter).await?;
    }
    emitter
        .borrow_mut()
        .on_watermark(shard, wm.watermark, wm.idle, at)
}

/// Sends the barrier of checkpoint `epoch` to every peer.
async fn broadcast_barrier(
    shard: usize,
    links: &mut Links,
    emitter: &Rc<RefCell<Emitter>>,
    epoch: u64,
) -> Result<()> {
    for to in 0..links.shards() {
        if to != shard {
            links
                .send(to, ExchangeMsg::Barrier { from: shard, epoch }, emitter)
                .await?;
        }
    }
    Ok(())
}

/// Fires every open window (the input ended) and says so to every shard.
async fn fire_all(
    shard: usize,
    shards: usize,
    window_op: &mut Option<WindowOperator>,
    layout: &Option<Arc<AggregateLayout>>,
    links: &mut Links,
    emitter: &Rc<RefCell<Emitter>>,
    fired: &mut Vec<FiredWindow>,
) -> Result<()> {
    if let Some(l) = layout {
        // SESSION windows have no window operator: their owners fire on this watermark.
        if let Some(op) = window_op {
            op.fire(WATERMARK_MAX, fired);
            route_fired(shard, shards, l, links, emitter, fired).await?;
        }
        let fin = ShardWatermark {
            watermark: WATERMARK_MAX,
            idle: false,
        };
        broadcast_watermark(shard, links, emitter, fin, Instant::now()).await?;
    }
    Ok(())
}

/// Routes locally fired windows to the shards that own their keys.
async fn route_fired(
    shard: usize,
    shards: usize,
    layout: &AggregateLayout,
    links: &mut Links,
    emitter: &Rc<RefCell<Emitter>>,
    fired: &mut Vec<FiredWindow>,
) -> Result<()> {
    for w in fired.drain(..) {
        if shards == 1 {
            emitter.borrow_mut().on_local(w);
            continue;
        }
        for (owner, part) in split_by_owner(layout, &w, shards) {
            if owner == shard {
                emitter.borrow_mut().on_partial(part)?;
            } else {
                links
                    .send(owner, ExchangeMsg::Partial(part), emitter)
                    .await?;
            }
        }
    }
    Ok(())
}

async fn run_shard_inner(ctx: ShardContext) -> Result<ShardReport> {
    if let Some(input) = ctx.stream_join.clone() {
        return crate::stream_join::run_join_shard(ctx, input).await;
    }
    let started = Instant::now();
    let shard = ctx.shard;
    let pipeline = ctx.pipeline.clone();
    let limits = ctx.limits.clone();
    let n_parts = ctx.partitions.len();
    let mut links = Links::new(
        ctx.senders,
        ctx.receivers,
        Duration::from_micros(limits.poll_idle_us.max(10)),
    );

    let mut source = ctx
        .source
        .open(shard, ctx.partitions.clone(), ctx.resume.clone())?;
    let sink = ctx.sink.open(shard)?;
    let late_sink = match (ctx.sink.open_late(shard)?, &pipeline.late.late_sink) {
        (Some(s), Some(table)) => Some(LateSink::new(table, pipeline.late.late_columns.clone(), s)),
        _ => None,
    };
    // The dimension copy catches up with its changelog before any event is read (and before
    // the partitions' idle clocks start).
    let mut dimension = match &ctx.dimension {
        Some(setup) => {
            let mut d = ShardDimension::open(setup, shard, &ctx.source_table.schema())?;
            d.catch_up(&ctx.stop).await?;
            let (keys, rows, bytes) = d.size();
            tracing::debug!(
                "shard {shard}: dimension table '{}' caught up: {keys} keys, {rows} rows, {bytes} bytes",
                setup.table.name
            );
            Some(d)
        }
        None => None,
    };
    let layout = match &pipeline.aggregation {
        Some(a) => Some(Arc::new(AggregateLayout::new(a)?)),
        None => None,
    };
    let having = pipeline.aggregation.as_ref().and_then(|a| a.having.clone());
    let output = OutputStage::new(
        having,
        pipeline.projection.clone(),
        pipeline.output_schema.clone(),
    )
    .with_row_kind_column(pipeline.late.row_kind_column);
    let emitter = Rc::new(RefCell::new(
        Emitter::new(ctx.shards, layout.clone(), output, sink)
            .with_lateness(pipeline.late.allowed_lateness_ms, late_sink),
    ));
    let wm_spec = ctx.source_table.watermark;
    let time_column = wm_spec.map(|w| w.column);
    let mut decoder = JsonDecoder::new(ctx.source_table.schema(), time_column);
    let mut tracker = WatermarkTracker::new(
        n_parts,
        wm_spec.map(|w| w.bound_ms).unwrap_or(0),
        ctx.idle_timeout,
        Instant::now(),
    );
    // Windows over a processing-time column run on the wall clock (`crate::proctime`).
    crate::proctime::check_pipeline(&pipeline, &ctx.source_table)?;
    if crate::proctime::windows_on_proctime(&pipeline, &ctx.source_table) {
        tracker = WatermarkTracker::processing_time(n_parts, Instant::now());
    }
    let sessions = crate::session::is_session(&pipeline);
    let mut window_op = match &layout {
        Some(l) if !sessions => {
            let mut op = WindowOperator::new(l.clone(), limits.clone())?;
            op.set_lateness(
                pipeline.late.allowed_lateness_ms,
                pipeline.late.late_sink.is_some(),
            );
            Some(op)
        }
        _ => None,
    };
    let mut session_op = match &layout {
        Some(l) if sessions => {
            crate::session::check_pipeline(&pipeline, ctx.checkpoint.is_some())?;
            let mut stage =
                crate::session::SessionStage::new(ctx.shards, l.clone(), limits.sessions_open_max)?;
            stage.set_allowed_lateness(pipeline.late.allowed_lateness_ms);
            emitter.borrow_mut().set_sessions(stage);
            let mut op = crate::session::MiniSessions::new(l.clone())?;
            op.set_allowed_lateness(pipeline.late.allowed_lateness_ms);
            Some(op)
        }
        _ => None,
    };
    let mut session_parts = Vec::new();
    let mut checkpointer = match &ctx.checkpoint {
        Some(setup) => {
            let cp = ShardCheckpointer::start(shard, ctx.shards, setup)?;
            for (i, &ts) in setup.ts_max.iter().enumerate() {
                tracker.restore_ts_max(i, ts);
            }
            // The late check of the first batch after a restart starts from the restored
            // clocks, not from no watermark at all.
            tracker.advance(Instant::now());
            let mut em = emitter.borrow_mut();
            if let Some(stage) = em.sessions_mut() {
                stage.restore(&setup.restored)?;
            }
            if let Some((l, fin)) = em.final_stage_mut() {
                let l = l.clone();
                for p in setup.restored.iter().cloned() {
                    fin.merge(&l, p);
                }
                fin.set_restored_floors(setup.floors.clone());
            }
            Some(cp)
        }
        None => None,
    };
    let mut reading = true;
    let mut ended = false;
    let mut quiescent = false;
    let mut raw = RawBatch::default();
    let mut kept = Vec::new();
    let mut fired = Vec::new();
    let mut last_wm: Option<ShardWatermark> = None;
    let mut report = ShardReport {
        shard,
        partitions: ctx.partitions.clone(),
        positions: Vec::new(),
        records_in: 0,
        bytes_in: 0,
        decode: DecodeStats::default(),
        decode_samples: Vec::new(),
        skipped_oversized: 0,
        skipped_empty: 0,
        skipped_duplicates: 0,
        rows_filtered_out: 0,
        late_events: 0,
        late_rows_out: 0,
        windows_updated: 0,
        late_partial_groups: 0,
        rows_out: 0,
        windows_out: 0,
        latency_us: crate::emitter::latency_histogram(),
        watermark: i64::MIN,
        decode_ns: 0,
        aggregate_ns: 0,
        sink_ns: 0,
        busy_ns: 0,
        elapsed: Duration::ZERO,
        finished: false,
        checkpoints: 0,
        checkpoint_stall_us: crate::emitter::latency_histogram(),
    };
    let idle_sleep = Duration::from_micros(limits.poll_idle_us);
    let mut publisher = ctx.metrics.clone().map(MetricsPublisher::new);

    loop {
        if reading && ctx.stop.load(Ordering::Acquire) {
            match &checkpointer {
                None => break,
                Some(_) => reading = false,
            }
        }
        links.drain(&emitter)?;
        if let Some(cp) = &mut checkpointer {
            if cp.aborted() || ctx.first_error.get().is_some() {
                links.stop_checkpoints();
                break;
            }
            if cp.due(&links) {
                let epoch = cp.snapshot(
                    window_op.as_mut(),
                    &mut emitter.borrow_mut(),
                    &tracker,
                    source.as_ref(),
                )?;
                links.start_epoch(epoch);
                broadcast_barrier(shard, &mut links, &emitter, epoch).await?;
            }
            cp.poll(&mut links, window_op.as_mut(), &mut emitter.borrow_mut())?;
            if cp.final_complete() {
                break;
            }
            // Quiescent: reads no more input, and after the end of a bounded input every
            // window has been emitted (so the final checkpoint covers all results).
            // A shard whose input ended while another was stopped would wait for a global
            // +infinity that never comes: the stop makes it quiescent too (its results so far
            // and its state are in the final checkpoint; a restart finds its input done).
            if !quiescent
                && !reading
                && (!ended
                    || layout.is_none()
                    || ctx.stop.load(Ordering::Acquire)
                    || emitter.borrow().global_watermark() == WATERMARK_MAX)
            {
                cp.set_quiescent();
                quiescent = true;
            }
            if !reading {
                glommio::timer::sleep(idle_sleep).await;
                continue;
            }
        }
        if let Some(d) = &mut dimension {
            d.poll()?;
        }
        raw.clear();
        let status = source.poll(&mut raw, limits.batch_rows_max, limits.batch_bytes_max)?;
        let now = Instant::now();
        for &p in &raw.ended {
            tracker.finish(p as usize);
        }
        for &(p, ts) in &raw.marks {
            tracker.observe(p as usize, ts, now);
        }
        report.skipped_oversized += raw.oversized;
        report.skipped_duplicates += raw.duplicates;
        report.skipped_empty += raw.empty;
        if !raw.is_empty() {
            report.records_in += raw.len() as u64;
            report.bytes_in += raw.bytes() as u64;
            let batch = decoder.decode(&mut raw, &mut kept)?;
            let t_decoded = Instant::now();
            report.decode_ns += (t_decoded - now).as_nanos() as u64;
            // Before this batch's times move it: versions its events may need are kept.
            let watermark_before = tracker.current();
            if let Some(tc) = time_column {
                let ts = batch.column(tc).as_primitive::<TimestampMillisecondType>();
                for (row, &rec) in kept.iter().enumerate() {
                    tracker.observe(raw.partition[rec as usize] as usize, ts.value(row), now);
                }
            }
            let batch = match &mut dimension {
                Some(d) => d.join(&batch, watermark_before)?,
                None => batch,
            };
            let batch = match &pipeline.filter {
                Some(f) => {
                    let mask = evaluate_predicate(f, &batch)?;
                    let out = filter_batch(&batch, &mask)?;
                    report.rows_filtered_out += (batch.num_rows() - out.num_rows()) as u64;
                    out
                }
                None => batch,
            };
            match &mut window_op {
                Some(op) => {
                    let late_wm = tracker.current().max(emitter.borrow().global_watermark());
                    op.process(&batch, late_wm)?;
                    if !op.late_rows.is_empty() {
                        emitter.borrow_mut().write_late(&batch, &op.late_rows)?;
                    }
                }
                None if session_op.is_some() => {
                    if let Some(op) = &mut session_op {
                        let late_wm = tracker.current().max(emitter.borrow().global_watermark());
                        crate::session::session_route::route_batch(
                            shard,
                            op,
                            &batch,
                            late_wm,
                            &mut links,
                            &emitter,
                            &mut session_parts,
                        )
                        .await?;
                    }
                }
                None => emitter.borrow_mut().write(&batch)?,
            }
            report.aggregate_ns += t_decoded.elapsed().as_nanos() as u64;
            report.busy_ns += now.elapsed().as_nanos() as u64;
        }
        if let (Some(op), Some(l)) = (&mut window_op, &layout) {
            let wm = tracker.advance(now);
            if last_wm != Some(wm) {
                let fire_at = wm.watermark.max(emitter.borrow().global_watermark());
                op.fire(fire_at, &mut fired);
                route_fired(shard, ctx.shards, l, &mut links, &emitter, &mut fired).await?;
                broadcast_watermark(shard, &mut links, &emitter, wm, now).await?;
                last_wm = Some(wm);
            }
        } else if session_op.is_some() {
            let wm = tracker.advance(now);
            if last_wm != Some(wm) {
                broadcast_watermark(shard, &mut links, &emitter, wm, now).await?;
                last_wm = Some(wm);
            }
        }
        if let Some(p) = &mut publisher {
            let em = emitter.borrow();
            let view = ShardView {
                report: &report,
                decode: decoder.stats(),
                window: window_op.as_ref(),
                emitter: &em,
                watermark_ms: tracker.current(),
                source: source.as_ref(),
            };
            p.publish(&view, now, false);
        }
        if status == SourceStatus::Finished {
            report.finished = true;
            if checkpointer.is_none() {
                break;
            }
            // Checkpointing: emit everything now, then keep answering checkpoints until the
            // final one, which covers these results.
            fire_all(
                shard,
                ctx.shards,
                &mut window_op,
                &layout,
                &mut links,
                &emitter,
                &mut fired,
            )
            .await?;
            reading = false;
            ended = true;
            continue;
        }
        if raw.is_empty() {
            glommio::timer::sleep(idle_sleep).await;
        } else {
            glommio::executor().yield_task_queue_now().await;
        }
    }

    // Bounded input ends with a final watermark of +infinity: every open window fires.
    if report.finished && !ended {
        fire_all(
            shard,
            ctx.shards,
            &mut window_op,
            &layout,
            &mut links,
            &emitter,
            &mut fired,
        )
        .await?;
    }
    links.say_done(shard, &emitter).await;
    links.drain_until_done(&emitter).await?;
    let mut em = emitter.borrow_mut();
    em.flush()?;
    if let Some(op) = &window_op {
        report.late_events = op.stats.late_events;
    }
    if let Some(op) = &session_op {
        report.late_events = op.stats.late_events;
    }
    report.late_partial_groups = em.late_partial_groups();
    report.rows_out = em.rows_out;
    report.windows_out = em.windows_out;
    report.windows_updated = em.windows_updated;
    report.late_rows_out = em.late_rows_out();
    report.sink_ns = em.sink_ns;
    report.latency_us = em.latency_us.clone();
    report.decode = decoder.stats().clone();
    report.decode_samples = decoder.samples().to_vec();
    report.watermark = tracker.current();
    report.positions = (0..n_parts as u32).map(|i| source.position(i)).collect();
    if let Some(d) = &dimension {
        let c = d.changelog_stats();
        let j = d.join_stats();
        tracing::debug!(
            "shard {shard}: dimension: {} upserts, {} deletes, {} skipped; join: {} of {} rows matched",
            c.upserts,
            c.deletes,
            c.skipped,
            j.rows_matched,
            j.rows_in
        );
        if c.skipped > 0 {
            tracing::warn!(
                "shard {shard}: {} dimension changelog records skipped (first: {})",
                c.skipped,
                d.samples().join("; ")
            );
        }
    }
    report.elapsed = started.elapsed();
    if let Some(cp) = &mut checkpointer {
        cp.finish();
        report.checkpoints = cp.checkpoints;
        report.checkpoint_stall_us = cp.stall_us.clone();
    }
    if let Some(p) = &mut publisher {
        let view = ShardView {
            report: &report,
            decode: decoder.stats(),
            window: window_op.as_ref(),
            emitter: &em,
            watermark_ms: report.watermark,
            source: source.as_ref(),
        };
        p.publish(&view, Instant::now(), true);
    }
    Ok(report)
}
