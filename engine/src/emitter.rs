//! The result side of a shard: final window state (panes) for the keys this shard owns, the
//! windows assembled from them, HAVING and projection, the sink, and the result latency
//! histogram. Shared (single-threaded, `Rc`) by the shard's source loop and its exchange links.

use std::time::Instant;

use arrow::array::RecordBatch;
use hdrhistogram::Histogram;
use spillway_connectors::Sink;

use crate::error::Result;
use crate::exchange::PartialWindow;
use crate::final_aggregate::{ClosedWindow, FinalAggregate};
use crate::output_stage::OutputStage;
use crate::window_assigner::WindowAssigner;
use crate::window_operator::{AggregateLayout, FiredWindow};

/// Highest latency the histograms record, in microseconds (one hour).
pub const LATENCY_US_MAX: u64 = 3_600_000_000;

pub fn latency_histogram() -> Histogram<u64> {
    // Three significant digits up to an hour: a few tens of KiB per histogram.
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("constant histogram bounds are valid")
}

pub struct Emitter {
    final_stage: Option<(std::sync::Arc<AggregateLayout>, FinalAggregate)>,
    output: OutputStage,
    sink: Box<dyn Sink>,
    closed: Vec<ClosedWindow>,
    /// Microseconds from a window's close to its result being handed to the sink.
    pub latency_us: Histogram<u64>,
    pub rows_out: u64,
    pub windows_out: u64,
    /// Nanoseconds spent in HAVING, projection and the sink.
    pub sink_ns: u64,
}

impl Emitter {
    /// The result side of a shard of `shards`; `layout` is the windowed aggregation, if any
    /// (an aggregation without a window has no final stage: the window operator refuses it).
    pub fn new(
        shards: usize,
        layout: Option<std::sync::Arc<AggregateLayout>>,
        output: OutputStage,
        sink: Box<dyn Sink>,
    ) -> Self {
        let final_stage = layout.and_then(|l| {
            let spec = l.aggregation.window?;
            Some((l, FinalAggregate::new(shards, WindowAssigner::new(&spec))))
        });
        Emitter {
            final_stage,
            output,
            sink,
            closed: Vec::new(),
            latency_us: latency_histogram(),
            rows_out: 0,
            windows_out: 0,
            sink_ns: 0,
        }
    }

    /// The watermark up to which every shard's windows have fired.
    pub fn global_watermark(&self) -> i64 {
        self.final_stage
            .as_ref()
            .map(|(_, f)| f.global_watermark())
            .unwrap_or(i64::MIN)
    }

    pub fn late_partial_groups(&self) -> u64 {
        self.final_stage
            .as_ref()
            .map(|(_, f)| f.late_partial_groups)
            .unwrap_or(0)
    }

    /// Panes held by the final stage (for TUMBLE, windows).
    pub fn open_windows(&self) -> usize {
        self.final_stage
            .as_ref()
            .map(|(_, f)| f.open_windows())
            .unwrap_or(0)
    }

    /// The final stage and its layout (checkpoints, recovery).
    pub fn final_stage_mut(
        &mut self,
    ) -> Option<(&std::sync::Arc<AggregateLayout>, &mut FinalAggregate)> {
        self.final_stage.as_mut().map(|(l, f)| (&*l, f))
    }

    /// Ends the sink's epoch `epoch` (see `Sink::prepare_epoch`).
    pub fn prepare_epoch(&mut self, epoch: u64) -> Result<spillway_connectors::EpochPrepared> {
        Ok(self.sink.prepare_epoch(epoch)?)
    }

    pub fn on_partial(&mut self, partial: PartialWindow) {
        if let Some((layout, f)) = &mut self.final_stage {
            f.merge(layout, partial);
        }
    }

    pub fn on_local(&mut self, window: FiredWindow) {
        if let Some((layout, f)) = &mut self.final_stage {
            f.merge_local(layout, window);
        }
    }

    /// A shard's watermark: emits the windows it completes into the sink.
    pub fn on_watermark(
        &mut self,
        from: usize,
        watermark: i64,
        idle: bool,
        at: Instant,
    ) -> Result<()> {
        let Some((layout, f)) = &mut self.final_stage else {
            return Ok(());
        };
        f.on_watermark(layout, from, watermark, idle, at, &mut self.closed);
        if self.closed.is_empty() {
            return Ok(());
        }
        let layout = layout.clone();
        let closed = std::mem::take(&mut self.closed);
        for c in &closed {
            let batch = layout.to_batch(c.window.start, c.window.end, &c.window.groups)?;
            self.write(&batch)?;
            self.windows_out += 1;
            let us = c.closed_at.elapsed().as_micros() as u64;
            self.latency_us.saturating_record(us.max(1));
        }
        self.closed = closed;
        self.closed.clear();
        Ok(())
    }

    /// Writes result rows (aggregation output, or source rows of a non-windowed query).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let t0 = Instant::now();
        if let Some(out) = self.output.apply(batch)? {
            self.sink.write(&out)?;
            self.rows_out += out.num_rows() as u64;
        }
        self.sink_ns += t0.elapsed().as_nanos() as u64;
        Ok(())
    }

    pub fn flush(&mut self) -> Result<()> {
        self.sink.flush()?;
        Ok(())
    }
}
