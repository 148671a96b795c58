//! The loop of a shard running a join of two streams: it reads its partitions of both
//! tables, routes each side's rows to the owners of their keys, keeps the shard watermark
//! (the minimum over both sides' partitions) and broadcasts it; the operator (reached from
//! this loop for local rows and from the exchange links for the others') joins and emits.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use arrow::datatypes::TimestampMillisecondType;
use spillway_connectors::{RawBatch, Source, SourceStatus};

use super::operator::StreamJoinOperator;
use super::routing::SideRouter;
use super::JoinInput;
use crate::catalog::TableDef;
use crate::decode::{DecodeStats, JsonDecoder};
use crate::emitter::Emitter;
use crate::error::{EngineError, Result};
use crate::exchange::ExchangeMsg;
use crate::exchange_link::Links;
use crate::output_stage::OutputStage;
use crate::plan::JoinSide;
use crate::shard::{ShardContext, ShardReport};
use crate::updating_aggregate::UpdatingAggregate;
use crate::watermark::{ShardWatermark, WatermarkTracker, WATERMARK_MAX};
use crate::window_operator::AggregateLayout;

/// One side's reading end on this shard.
struct SideReader {
    source: Box<dyn Source>,
    decoder: JsonDecoder,
    tracker: WatermarkTracker,
    time_column: usize,
    router: SideRouter,
    finished: bool,
    partitions: usize,
}

impl SideReader {
    fn open(
        table: &TableDef,
        source: Box<dyn Source>,
        partitions: usize,
        idle_timeout: Duration,
        router: SideRouter,
    ) -> Result<Self> {
        let wm = table.watermark.ok_or_else(|| {
            EngineError::Internal(format!("join side '{}' without a WATERMARK", table.name))
        })?;
        Ok(SideReader {
            source,
            decoder: JsonDecoder::new(table.schema(), Some(wm.column)),
            tracker: WatermarkTracker::new(partitions, wm.bound_ms, idle_timeout, Instant::now()),
            time_column: wm.column,
            router,
            finished: false,
            partitions,
        })
    }
}

/// The shard watermark of two sides: the minimum over the sides that are not idle.
fn combine(sides: [ShardWatermark; 2], current: &mut i64) -> ShardWatermark {
    let (wm, idle) = match (sides[0].idle, sides[1].idle) {
        (true, true) => (*current, true),
        (true, false) => (sides[1].watermark, false),
        (false, true) => (sides[0].watermark, false),
        (false, false) => (sides[0].watermark.min(sides[1].watermark), false),
    };
    if wm > *current {
        *current = wm;
    }
    ShardWatermark {
        watermark: *current,
        idle,
    }
}

/// Sends this shard's watermark to every peer and to its own operator.
async fn broadcast(
    shard: usize,
    links: &mut Links,
    emitter: &Rc<RefCell<Emitter>>,
    operator: &Rc<RefCell<StreamJoinOperator>>,
    wm: ShardWatermark,
) -> Result<()> {
    let at = Instant::now();
    for to in 0..links.shards() {
        if to != shard {
            let msg = ExchangeMsg::Watermark {
                from: shard,
                watermark: wm.watermark,
                idle: wm.idle,
                at,
            };
            links.send(to, msg, emitter).await?;
        }
    }
    operator
        .borrow_mut()
        .on_watermark(shard, wm.watermark, wm.idle, &mut emitter.borrow_mut())
}

/// Sends the updating aggregate's partials of this shard's join results to the owners of
/// their keys (its own are merged by the emitter); nothing without an updating aggregate.
async fn ship_updates(
    shard: usize,
    links: &mut Links,
    emitter: &Rc<RefCell<Emitter>>,
) -> Result<()> {
    loop {
        // Sending drains incoming messages, which may produce more results.
        let parts = emitter.borrow_mut().take_updates(shard)?;
        if parts.is_empty() {
            return Ok(());
        }
        for (to, part) in parts {
            links.send(to, ExchangeMsg::Partial(part), emitter).await?;
        }
    }
}

/// Runs one shard of a join of two streams to completion.
pub async fn run_join_shard(ctx: ShardContext, input: Arc<JoinInput>) -> Result<ShardReport> {
    let started = Instant::now();
    let shard = ctx.shard;
    let shards = ctx.shards;
    let pipeline = ctx.pipeline.clone();
    let limits = ctx.limits.clone();
    let join = pipeline
        .stream_join
        .clone()
        .ok_or_else(|| EngineError::Internal("run_join_shard without a stream join".into()))?;
    // An aggregation after a join is an updating aggregate (`crate::updating_aggregate`).
    let updating = match &pipeline.aggregation {
        Some(a) if a.window.is_none() && join.append_only_final() => Some(UpdatingAggregate::new(
            Arc::new(AggregateLayout::new(a)?),
            shard,
            shards,
            pipeline.late.update_before,
            &limits,
        )?),
        Some(_) => {
            return Err(EngineError::Internal(
                "a window aggregation (or one over a join that updates) after a stream join was planned".into(),
            ))
        }
        None => None,
    };
    let updating_query = updating.is_some();
    let operator = Rc::new(RefCell::new(StreamJoinOperator::new(
        shard,
        shards,
        &join,
        pipeline.filter.clone(),
        input.limits,
    )?));
    let mut links = Links::new(
        ctx.senders,
        ctx.receivers,
        Duration::from_micros(limits.poll_idle_us.max(10)),
    );
    links.set_stream_join(operator.clone());
    let right_partitions = input.partitions_for(shard, shards);
    let left_source = ctx.source.open(shard, ctx.partitions.clone(), None)?;
    let right_source = input
        .right_source
        .open(shard, right_partitions.clone(), None)?;
    let sink = ctx.sink.open(shard)?;
    // Join results are inserts ("+I" in a sink's row_kind column); an updating
    // aggregate's rows carry their own kinds.
    let output = OutputStage::new(
        None,
        pipeline.projection.clone(),
        pipeline.output_schema.clone(),
    )
    .with_row_kind_column(pipeline.late.row_kind_column);
    let mut emitter = Emitter::new(shards, None, output, sink);
    if let Some(stage) = updating {
        emitter.set_updating(stage);
    }
    let emitter = Rc::new(RefCell::new(emitter));
    let mut readers = [
        SideReader::open(
            &ctx.source_table,
            left_source,
            ctx.partitions.len(),
            ctx.idle_timeout,
            SideRouter::new(JoinSide::Left, &join.left, join.kind, &ctx.source_table)?,
        )?,
        SideReader::open(
            &input.right_table,
            right_source,
            right_partitions.len(),
            input.right_idle_timeout,
            SideRouter::new(JoinSide::Right, &join.right, join.kind, &input.right_table)?,
        )?,
    ];
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
        late_partial_groups: 0,
        late_rows_out: 0,
        windows_updated: 0,
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
    let mut raw = RawBatch::default();
    let mut kept = Vec::new();
    let mut current = i64::MIN;
    let mut last_wm: Option<ShardWatermark> = None;
    loop {
        if ctx.stop.load(Ordering::Acquire) || ctx.first_error.get().is_some() {
            break;
        }
        links.drain(&emitter)?;
        let mut got_rows = false;
        for reader in readers.iter_mut() {
            if reader.finished {
                continue;
            }
            raw.clear();
            let status =
                reader
                    .source
                    .poll(&mut raw, limits.batch_rows_max, limits.batch_bytes_max)?;
            let now = Instant::now();
            for &p in &raw.ended {
                reader.tracker.finish(p as usize);
            }
            report.skipped_oversized += raw.oversized;
            report.skipped_empty += raw.empty;
            if !raw.is_empty() {
                got_rows = true;
                report.records_in += raw.len() as u64;
                report.bytes_in += raw.bytes() as u64;
                let batch = reader.decoder.decode(&mut raw, &mut kept)?;
                let ts = batch
                    .column(reader.time_column)
                    .as_primitive::<TimestampMillisecondType>();
                for (row, &rec) in kept.iter().enumerate() {
                    reader.tracker.observe(
                        raw.partition[rec as usize] as usize,
                        ts.value(row),
                        now,
                    );
                }
                let late_wm = current.max(operator.borrow().global_watermark());
                let rows = reader.router.prepare(&batch)?;
                let parts = reader.router.route(&rows, late_wm, shards)?;
                for (owner, part) in parts {
                    if owner == shard {
                        operator
                            .borrow_mut()
                            .on_rows(part, &mut emitter.borrow_mut())?;
                    } else {
                        links
                            .send(owner, ExchangeMsg::JoinRows(part), &emitter)
                            .await?;
                    }
                }
                report.busy_ns += now.elapsed().as_nanos() as u64;
            }
            if status == SourceStatus::Finished {
                reader.finished = true;
                for p in 0..reader.partitions {
                    reader.tracker.finish(p);
                }
            }
        }
        let now = Instant::now();
        let sides = [
            readers[0].tracker.advance(now),
            readers[1].tracker.advance(now),
        ];
        let wm = combine(sides, &mut current);
        if last_wm != Some(wm) {
            broadcast(shard, &mut links, &emitter, &operator, wm).await?;
            last_wm = Some(wm);
        }
        ship_updates(shard, &mut links, &emitter).await?;
        if readers.iter().all(|r| r.finished) {
            report.finished = true;
            break;
        }
        if got_rows {
            glommio::executor().yield_task_queue_now().await;
        } else {
            glommio::timer::sleep(idle_sleep).await;
        }
    }
    if report.finished && last_wm.map(|w| w.watermark) != Some(WATERMARK_MAX) {
        let fin = ShardWatermark {
            watermark: WATERMARK_MAX,
            idle: false,
        };
        broadcast(shard, &mut links, &emitter, &operator, fin).await?;
    }
    if updating_query && report.finished {
        // The last join results come when every shard's final watermark is in: their
        // updates go out before this shard says Done.
        let wait = Duration::from_micros(limits.poll_idle_us.max(10));
        while operator.borrow().global_watermark() < WATERMARK_MAX {
            if ctx.first_error.get().is_some() || links.all_done() {
                break;
            }
            links.drain(&emitter)?;
            ship_updates(shard, &mut links, &emitter).await?;
            glommio::timer::sleep(wait).await;
        }
    }
    ship_updates(shard, &mut links, &emitter).await?;
    links.say_done(shard, &emitter).await;
    links.drain_until_done(&emitter).await?;
    let mut em = emitter.borrow_mut();
    em.flush()?;
    let op = operator.borrow();
    let mut decode = DecodeStats::default();
    for r in &readers {
        let s = r.decoder.stats();
        decode.malformed += s.malformed;
        decode.missing_field += s.missing_field;
        decode.wrong_type += s.wrong_type;
        decode.null_time += s.null_time;
        report.late_events += r.router.stats.late_rows;
        report.rows_filtered_out += r.router.stats.filtered_rows;
        report
            .decode_samples
            .extend(r.decoder.samples().iter().cloned());
    }
    report.decode = decode;
    report.late_events += op.stats.late_rows;
    report.rows_out = em.rows_out;
    report.windows_out = op.stats.windows_closed;
    if let Some(stage) = em.updating() {
        tracing::debug!(
            "shard {shard}: updating aggregate: {} rows in, {} keys held, {} inserted, {} updates",
            stage.stats.rows_in,
            stage.keys(),
            stage.stats.keys_inserted,
            stage.stats.keys_updated
        );
    }
    report.sink_ns = em.sink_ns;
    report.watermark = current;
    report.positions = (0..readers[0].partitions as u32)
        .map(|i| readers[0].source.position(i))
        .collect();
    tracing::debug!(
        "shard {shard}: stream join: {:?} rows in, {} joined, {} late, {} null keys",
        op.stats.rows_in,
        op.stats.rows_joined,
        report.late_events,
        readers[0].router.stats.null_key_rows + readers[1].router.stats.null_key_rows
    );
    report.elapsed = started.elapsed();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wm(watermark: i64, idle: bool) -> ShardWatermark {
        ShardWatermark { watermark, idle }
    }

    #[test]
    fn shard_watermark_is_the_minimum_of_active_sides_and_never_moves_back() {
        let mut current = i64::MIN;
        assert_eq!(
            combine([wm(10, false), wm(5, false)], &mut current),
            wm(5, false)
        );
        assert_eq!(
            combine([wm(10, true), wm(7, false)], &mut current),
            wm(7, false)
        );
        assert_eq!(
            combine([wm(20, false), wm(7, true)], &mut current),
            wm(20, false)
        );
        // a side that wakes up behind does not move the watermark back
        assert_eq!(
            combine([wm(20, false), wm(8, false)], &mut current),
            wm(20, false)
        );
        assert_eq!(
            combine([wm(20, true), wm(8, true)], &mut current),
            wm(20, true)
        );
    }
}
