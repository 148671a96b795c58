//! The result side of a shard: final window state (panes) for the keys this shard owns, the
//! windows assembled from them, HAVING and projection, the sink, and the result latency
//! histogram. Shared (single-threaded, `Rc`) by the shard's source loop and its exchange links.

use std::time::Instant;

use arrow::array::RecordBatch;
use hdrhistogram::Histogram;
use spillway_connectors::Sink;

use crate::error::{EngineError, Result};
use crate::exchange::PartialWindow;
use crate::final_aggregate::{ClosedWindow, FinalAggregate};
use crate::late_sink::LateSink;
use crate::output_stage::OutputStage;
use crate::row_kind::RowKind;
use crate::session::{sessions_to_batches, FiredSession, SessionStage};
use crate::updating_aggregate::UpdatingAggregate;
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
    /// Where too-late source rows go (`'late.sink'`), if configured.
    late_sink: Option<LateSink>,
    closed: Vec<ClosedWindow>,
    /// SESSION windows: the owner stage (instead of `final_stage`; see `crate::session`).
    sessions: Option<SessionStage>,
    fired_sessions: Vec<FiredSession>,
    /// A GROUP BY without a window over a join's final results: the updating aggregate,
    /// which takes the rows `on_rows` gets and emits changes when partials merge.
    updating: Option<UpdatingAggregate>,
    /// Microseconds from a window's close to its result being handed to the sink.
    pub latency_us: Histogram<u64>,
    pub rows_out: u64,
    /// Windows emitted for the first time ("+I").
    pub windows_out: u64,
    /// Emitted windows emitted again with late updates ("+U").
    pub windows_updated: u64,
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
            if spec.kind.session_gap_ms().is_some() {
                return None;
            }
            Some((l, FinalAggregate::new(shards, WindowAssigner::new(&spec))))
        });
        Emitter {
            final_stage,
            output,
            sink,
            late_sink: None,
            closed: Vec::new(),
            sessions: None,
            fired_sessions: Vec::new(),
            updating: None,
            latency_us: latency_histogram(),
            rows_out: 0,
            windows_out: 0,
            windows_updated: 0,
            sink_ns: 0,
        }
    }

    /// An updating aggregate (`crate::updating_aggregate`): rows given to
    /// [`Emitter::on_rows`] are aggregated by it instead of written.
    pub fn set_updating(&mut self, stage: UpdatingAggregate) {
        self.updating = Some(stage);
    }

    /// The updating aggregate, if the query has one.
    pub fn updating(&self) -> Option<&UpdatingAggregate> {
        self.updating.as_ref()
    }

    /// Result rows of the pipeline's input stage (a join's results): aggregated by the
    /// updating aggregate when the query has one, else written.
    pub fn on_rows(&mut self, batch: &RecordBatch) -> Result<()> {
        match &mut self.updating {
            Some(stage) => stage.add(batch),
            None => self.write(batch),
        }
    }

    /// The updating aggregate's partials of this shard's rows since the last call for the
    /// keys other shards own; the partial of the keys shard `shard` (this one) owns is
    /// merged here and its changes written. Empty without an updating aggregate.
    pub fn take_updates(&mut self, shard: usize) -> Result<Vec<(usize, PartialWindow)>> {
        let Some(stage) = &mut self.updating else {
            return Ok(Vec::new());
        };
        let mut parts = stage.take_partials();
        if let Some(at) = parts.iter().position(|(owner, _)| *owner == shard) {
            let (_, own) = parts.swap_remove(at);
            self.merge_update(&own)?;
        }
        Ok(parts)
    }

    /// Merges an updating aggregate's partial and writes the changes it makes.
    fn merge_update(&mut self, partial: &PartialWindow) -> Result<()> {
        let Some(stage) = &mut self.updating else {
            return Err(EngineError::Internal(
                "an update partial reached a shard without an updating aggregate".into(),
            ));
        };
        // Keys, not windows: `windows_out` / `windows_updated` (late updates) stay as they are.
        for (kind, batch) in stage.merge(partial)? {
            self.write_kind(&batch, kind)?;
        }
        Ok(())
    }

    /// SESSION windows: the owner stage that replaces the final stage.
    pub fn set_sessions(&mut self, stage: SessionStage) {
        self.sessions = Some(stage);
    }

    /// The SESSION owner stage, if the query has one.
    pub fn sessions_mut(&mut self) -> Option<&mut SessionStage> {
        self.sessions.as_mut()
    }

    /// Applies the source table's lateness (`plan::LatePlan`): windows stay updatable for
    /// `allowed_lateness_ms` after they are emitted, and too-late rows go to `late_sink`.
    /// Call before any partial is merged.
    pub fn with_lateness(mut self, allowed_lateness_ms: i64, late_sink: Option<LateSink>) -> Self {
        if let Some((_, f)) = &mut self.final_stage {
            f.set_allowed_lateness(allowed_lateness_ms);
        }
        self.late_sink = late_sink;
        self
    }

    /// Writes rows `rows` of `batch` (source rows too late even for the lateness) to the
    /// late-data sink, if there is one.
    pub fn write_late(&mut self, batch: &RecordBatch, rows: &[u32]) -> Result<()> {
        match &mut self.late_sink {
            Some(s) => s.write(batch, rows),
            None => Ok(()),
        }
    }

    /// Rows written to the late-data sink.
    pub fn late_rows_out(&self) -> u64 {
        self.late_sink.as_ref().map(|s| s.rows_out).unwrap_or(0)
    }

    /// The watermark up to which every shard's windows have fired.
    pub fn global_watermark(&self) -> i64 {
        if let Some(s) = &self.sessions {
            return s.global_watermark();
        }
        self.final_stage
            .as_ref()
            .map(|(_, f)| f.global_watermark())
            .unwrap_or(i64::MIN)
    }

    pub fn late_partial_groups(&self) -> u64 {
        if let Some(s) = &self.sessions {
            return s.late_partial_groups;
        }
        self.final_stage
            .as_ref()
            .map(|(_, f)| f.late_partial_groups)
            .unwrap_or(0)
    }

    /// Panes held by the final stage (for TUMBLE, windows).
    pub fn open_windows(&self) -> usize {
        if let Some(s) = &self.sessions {
            return s.sessions_open();
        }
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
        let main = self.sink.prepare_epoch(epoch)?;
        match &mut self.late_sink {
            None => Ok(main),
            Some(late) => {
                // The late sink's epoch ends at the same cut.
                let late = late.prepare_epoch(epoch)?;
                Ok(spillway_connectors::EpochPrepared::later(move || {
                    main.wait()?;
                    late.wait()
                }))
            }
        }
    }

    pub fn on_partial(&mut self, partial: PartialWindow) -> Result<()> {
        if self.updating.is_some() {
            return self.merge_update(&partial);
        }
        if let Some(s) = &mut self.sessions {
            s.merge(&partial);
            return Ok(());
        }
        if let Some((layout, f)) = &mut self.final_stage {
            f.merge(layout, partial);
        }
        Ok(())
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
        if self.sessions.is_some() {
            return self.on_session_watermark(from, watermark, idle, at);
        }
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
            self.write_kind(&batch, c.kind)?;
            if c.kind == RowKind::Insert {
                self.windows_out += 1;
                let us = c.closed_at.elapsed().as_micros() as u64;
                self.latency_us.saturating_record(us.max(1));
            } else {
                self.windows_updated += 1;
            }
        }
        self.closed = closed;
        self.closed.clear();
        Ok(())
    }

    /// [`Emitter::on_watermark`] for SESSION windows.
    fn on_session_watermark(
        &mut self,
        from: usize,
        watermark: i64,
        idle: bool,
        at: Instant,
    ) -> Result<()> {
        let Some(s) = &mut self.sessions else {
            return Ok(());
        };
        s.on_watermark(from, watermark, idle, &mut self.fired_sessions)?;
        if self.fired_sessions.is_empty() {
            return Ok(());
        }
        let layout = s.layout().clone();
        let mut fired = std::mem::take(&mut self.fired_sessions);
        // "-D" first (the stage orders them so), then "+U", then "+I": one write per kind.
        let mut at_kind = 0;
        while at_kind < fired.len() {
            let kind = fired[at_kind].kind;
            let n = fired[at_kind..]
                .iter()
                .take_while(|f| f.kind == kind)
                .count();
            for batch in sessions_to_batches(&layout, &fired[at_kind..at_kind + n])? {
                self.write_kind(&batch, kind)?;
            }
            match kind {
                RowKind::Insert => self.windows_out += n as u64,
                RowKind::UpdateAfter => self.windows_updated += n as u64,
                RowKind::Delete | RowKind::UpdateBefore => {}
            }
            at_kind += n;
        }
        let us = at.elapsed().as_micros() as u64;
        self.latency_us.saturating_record(us.max(1));
        fired.clear();
        self.fired_sessions = fired;
        Ok(())
    }

    /// Writes result rows (aggregation output, or source rows of a non-windowed query).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.write_kind(batch, RowKind::Insert)
    }

    /// Writes result rows of kind `kind` (the sink's `row_kind` column, if any, says it).
    pub fn write_kind(&mut self, batch: &RecordBatch, kind: RowKind) -> Result<()> {
        let t0 = Instant::now();
        if let Some(out) = self.output.apply_kind(batch, kind)? {
            self.sink.write(&out)?;
            self.rows_out += out.num_rows() as u64;
        }
        self.sink_ns += t0.elapsed().as_nanos() as u64;
        Ok(())
    }

    pub fn flush(&mut self) -> Result<()> {
        self.sink.flush()?;
        if let Some(late) = &mut self.late_sink {
            late.flush()?;
        }
        Ok(())
    }
}
