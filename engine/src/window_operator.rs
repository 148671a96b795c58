//! The windowed aggregate of one shard: rows in, partial pane results out when the watermark
//! passes a pane's end.
//!
//! The shard keeps *panes* (see `window_assigner.rs`): each event updates exactly one pane,
//! whatever the number of windows holding it (TUMBLE: the window itself; HOP: the slide;
//! CUMULATE: the step). The final stage (`final_aggregate.rs`) assembles windows from panes.
//! `windows_open_max` bounds the panes open on one shard.
//!
//! Invariant: an event is counted late and dropped, updating nothing, when the last window
//! holding it ends, plus the allowed lateness (`lateness.rs`), at or before the late watermark
//! (for TUMBLE: its window's end). Such rows are listed in `late_rows` when the query has a
//! late-data sink. Otherwise it
//! updates its pane, which is created if needed, even one that already fired here (HOP and
//! CUMULATE: windows of the pane that have not fired yet still need the event); a pane is
//! dropped (its arena freed) exactly when it fires.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, TimestampMillisecondArray};
use arrow::datatypes::{SchemaRef, TimestampMillisecondType};
use arrow::row::{RowConverter, Rows, SortField};

use crate::accumulator::{Accumulator, Slot, StringStore};
use crate::checkpoint::chunk_codec::{save_all_pending, save_chunk, KIND_LOCAL};
use crate::error::{EngineError, Result};
use crate::group_table::GroupTable;
use crate::lateness::too_late;
use crate::limits::Limits;
use crate::plan::Aggregation;
use crate::window_assigner::WindowAssigner;

/// Seeds of the group-key hash: fixed, so every shard routes a key to the same owner.
const KEY_HASH_SEEDS: (u64, u64, u64, u64) = (
    0x5370_696c_6c77_6179,
    0x9e37_79b9_7f4a_7c15,
    0xc2b2_ae3d_27d4_eb4f,
    0x1656_67b1_9e37_79f9,
);

/// A pane (or, out of the final stage, a window) with all its groups.
pub struct FiredWindow {
    pub start: i64,
    pub end: i64,
    pub groups: GroupTable,
    /// Approximate bytes of state the window held (for the state limit).
    pub bytes: usize,
}

/// What the aggregation of one pipeline needs on every shard: key encoding, accumulators and
/// the conversion of a window's groups into an output batch.
pub struct AggregateLayout {
    pub aggregation: Aggregation,
    pub accumulators: Vec<Accumulator>,
    /// None when the query has no group keys besides the window.
    converter: Option<RowConverter>,
    pub output_schema: SchemaRef,
    hasher: ahash::RandomState,
}

impl AggregateLayout {
    pub fn new(aggregation: &Aggregation) -> Result<Self> {
        let accumulators = Accumulator::for_aggregation(aggregation)?;
        let converter = if aggregation.group_keys.is_empty() {
            None
        } else {
            let fields = aggregation
                .group_keys
                .iter()
                .map(|k| SortField::new(k.data_type()))
                .collect();
            Some(RowConverter::new(fields)?)
        };
        let (a, b, c, d) = KEY_HASH_SEEDS;
        Ok(AggregateLayout {
            aggregation: aggregation.clone(),
            accumulators,
            converter,
            output_schema: aggregation.output_schema(),
            hasher: ahash::RandomState::with_seeds(a, b, c, d),
        })
    }

    pub fn stride(&self) -> usize {
        self.accumulators.len()
    }

    #[inline]
    pub fn hash_key(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Empty key rows for [`AggregateLayout::encode_keys`] (None without group keys).
    pub fn empty_key_rows(&self) -> Option<Rows> {
        self.converter.as_ref().map(|c| c.empty_rows(0, 0))
    }

    /// Encodes the group keys of every row of `batch` once into `rows` (from
    /// [`AggregateLayout::empty_key_rows`]) and sets `hashes` to their hashes; without group
    /// keys every row gets the hash of the empty key.
    pub fn encode_keys(
        &self,
        batch: &RecordBatch,
        rows: &mut Option<Rows>,
        hashes: &mut Vec<u64>,
    ) -> Result<()> {
        hashes.clear();
        let n = batch.num_rows();
        if let (Some(conv), Some(rows)) = (&self.converter, rows) {
            let keys = self
                .aggregation
                .group_keys
                .iter()
                .map(|k| k.evaluate(batch))
                .collect::<Result<Vec<_>>>()?;
            rows.clear();
            conv.append(rows, &keys)?;
            hashes.extend((0..n).map(|i| self.hash_key(rows.row(i).data())));
        } else {
            hashes.resize(n, self.hash_key(&[]));
        }
        Ok(())
    }

    /// The shard (of `shards`) that owns the final state of a key with this hash.
    #[inline]
    pub fn owner(hash: u64, shards: usize) -> usize {
        ((hash >> 32) % shards as u64) as usize
    }

    /// Builds the aggregation output batch of one window (keys, window bounds, aggregates).
    pub fn to_batch(&self, start: i64, end: i64, groups: &GroupTable) -> Result<RecordBatch> {
        let n = groups.len();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.output_schema.fields().len());
        if let Some(conv) = &self.converter {
            let parser = conv.parser();
            let rows = (0..n as u32).map(|g| parser.parse(groups.key(g)));
            columns.extend(conv.convert_rows(rows)?);
        }
        if let Some(top_n) = self.accumulators.first().and_then(|a| a.top_n.as_ref()) {
            // A per-window top-N: each group becomes 0..n rows.
            return top_n.explode(&self.output_schema, columns, start, end, groups);
        }
        if self.aggregation.window.is_some() {
            columns.push(Arc::new(TimestampMillisecondArray::from_value(start, n)));
            columns.push(Arc::new(TimestampMillisecondArray::from_value(end, n)));
        }
        for (i, acc) in self.accumulators.iter().enumerate() {
            columns.push(acc.finish(
                &groups.slots,
                groups.stride,
                i,
                0..n as u32,
                &groups.strings,
            )?);
        }
        RecordBatch::try_new(self.output_schema.clone(), columns)
            .map_err(|e| EngineError::Internal(format!("window output batch: {e}")))
    }
}

impl AggregateLayout {
    /// The output batch of groups of an aggregation without a window (an updating
    /// aggregate): their encoded `keys` and slots (`stride` per group, in the keys' order).
    pub fn keyed_batch(
        &self,
        keys: &[&[u8]],
        slots: &[Slot],
        strings: &StringStore,
    ) -> Result<RecordBatch> {
        if self.aggregation.window.is_some() || self.aggregation.top_n.is_some() {
            return Err(EngineError::Internal(
                "keyed_batch of a windowed aggregation".into(),
            ));
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.output_schema.fields().len());
        if let Some(conv) = &self.converter {
            let parser = conv.parser();
            columns.extend(conv.convert_rows(keys.iter().map(|k| parser.parse(k)))?);
        }
        let stride = self.stride();
        for (i, acc) in self.accumulators.iter().enumerate() {
            let groups = 0..keys.len() as u32;
            columns.push(acc.finish(slots, stride, i, groups, strings)?);
        }
        RecordBatch::try_new(self.output_schema.clone(), columns)
            .map_err(|e| EngineError::Internal(format!("updating aggregate output batch: {e}")))
    }
}

/// Counters of the window operator.
#[derive(Debug, Default, Clone, Copy)]
pub struct WindowStats {
    pub rows_in: u64,
    pub late_events: u64,
    pub windows_fired: u64,
    pub groups_fired: u64,
}

/// Open panes of one shard and their groups.
pub struct WindowOperator {
    pub layout: Arc<AggregateLayout>,
    assigner: WindowAssigner,
    time_column: usize,
    /// Open panes by start.
    windows: BTreeMap<i64, FiredWindow>,
    groups_total: usize,
    bytes_total: usize,
    limits: Limits,
    pub stats: WindowStats,
    /// The source table's allowed lateness.
    allowed_lateness_ms: i64,
    /// Whether too-late rows are listed in `late_rows` (the query has a late-data sink).
    collect_late_rows: bool,
    /// The rows of the last batch given to `process` that were too late (when collected).
    pub late_rows: Vec<u32>,
    /// Panes fired since the last checkpoint that had chunks in the state store.
    removed: Vec<(i64, i64, u32)>,
    /// Chunks of the snapshot in progress serialized before a change or a firing (key,
    /// value), for the checkpoint to collect.
    saved: Vec<(Vec<u8>, Vec<u8>)>,
    // Buffers reused from batch to batch.
    rows: Option<Rows>,
    hashes: Vec<u64>,
    buckets: Vec<(i64, Vec<u32>)>,
    groups: Vec<u32>,
}

impl WindowOperator {
    pub fn new(layout: Arc<AggregateLayout>, limits: Limits) -> Result<Self> {
        let spec = layout
            .aggregation
            .window
            .ok_or_else(|| EngineError::Internal("window operator without a window".into()))?;
        let rows = layout.empty_key_rows();
        Ok(WindowOperator {
            assigner: WindowAssigner::new(&spec),
            time_column: spec.time_column,
            layout,
            windows: BTreeMap::new(),
            groups_total: 0,
            bytes_total: 0,
            limits,
            stats: WindowStats::default(),
            allowed_lateness_ms: 0,
            collect_late_rows: false,
            late_rows: Vec::new(),
            removed: Vec::new(),
            saved: Vec::new(),
            rows,
            hashes: Vec::new(),
            buckets: Vec::new(),
            groups: Vec::new(),
        })
    }

    /// Keeps accepting events `allowed_lateness_ms` behind the late watermark (see
    /// `lateness.rs`); with `collect_late_rows`, too-late rows are listed in `late_rows`.
    pub fn set_lateness(&mut self, allowed_lateness_ms: i64, collect_late_rows: bool) {
        assert!(
            allowed_lateness_ms >= 0,
            "the planner refuses a negative lateness"
        );
        self.allowed_lateness_ms = allowed_lateness_ms;
        self.collect_late_rows = collect_late_rows;
    }

    /// Open panes (for TUMBLE, windows).
    pub fn open_windows(&self) -> usize {
        self.windows.len()
    }

    pub fn groups(&self) -> usize {
        self.groups_total
    }

    pub fn state_bytes(&self) -> usize {
        self.bytes_total
    }

    /// Adds the rows of `batch` (the filtered source schema) to their panes. Rows whose last
    /// window ended, plus the allowed lateness, at or before `late_watermark` are counted late
    /// and dropped (and listed in `late_rows` when collected).
    pub fn process(&mut self, batch: &RecordBatch, late_watermark: i64) -> Result<()> {
        self.late_rows.clear();
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        self.stats.rows_in += n as u64;
        let layout = self.layout.clone();
        let agg = &layout.aggregation;
        // Event times (the decoder guarantees no nulls in the watermark column).
        let ts_col = batch.column(self.time_column);
        let ts: &[i64] = ts_col
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| EngineError::Internal("window time column is not TIMESTAMP(3)".into()))?
            .values();

        // Encode the group keys once for the whole batch and hash them.
        layout.encode_keys(batch, &mut self.rows, &mut self.hashes)?;
        let args = agg
            .aggregates
            .iter()
            .zip(&layout.accumulators)
            .map(|(a, acc)| acc.prepare_batch(a, batch, ts_col))
            .collect::<Result<Vec<_>>>()?;

        // Bucket the rows by pane (a batch usually spans one to three panes).
        for b in &mut self.buckets {
            b.1.clear();
        }
        let mut last = usize::MAX;
        for (i, &t) in ts.iter().enumerate() {
            let start = self.assigner.pane_start(t);
            let last_end = self.assigner.last_window_end(start);
            if too_late(last_end, late_watermark, self.allowed_lateness_ms) {
                self.stats.late_events += 1;
                if self.collect_late_rows {
                    self.late_rows.push(i as u32);
                }
                continue;
            }
            if last == usize::MAX || self.buckets[last].0 != start {
                last = match self.buckets.iter().position(|b| b.0 == start) {
                    Some(p) => p,
                    None => {
                        self.buckets.push((start, Vec::new()));
                        self.buckets.len() - 1
                    }
                };
            }
            self.buckets[last].1.push(i as u32);
        }

        let stride = layout.stride();
        for (start, rows_in_window) in &self.buckets {
            if rows_in_window.is_empty() {
                continue;
            }
            if !self.windows.contains_key(start)
                && self.windows.len() >= self.limits.windows_open_max
            {
                return Err(EngineError::Limit(format!(
                    "more than windows_open_max = {} panes (windows of {} ms) are open on one \
                     shard; is the event time far out of order, or the watermark bound too large?",
                    self.limits.windows_open_max,
                    self.assigner.pane_ms()
                )));
            }
            let window = self.windows.entry(*start).or_insert_with(|| FiredWindow {
                start: *start,
                end: self.assigner.pane_end(*start),
                groups: GroupTable::new(stride),
                bytes: 0,
            });
            self.groups.clear();
            for &r in rows_in_window {
                let key: &[u8] = match &self.rows {
                    Some(rows) => rows.row(r as usize).data(),
                    None => &[],
                };
                let (g, new) = window.groups.find_or_insert(key, self.hashes[r as usize]);
                if new {
                    let bytes = key.len() + stride * 16 + 40;
                    self.groups_total += 1;
                    self.bytes_total += bytes;
                    window.bytes += bytes;
                }
                self.groups.push(g);
            }
            let mut last_chunk = u32::MAX;
            for &g in &self.groups {
                let chunk = g / crate::group_table::GROUP_CHUNK;
                if chunk != last_chunk {
                    last_chunk = chunk;
                    // Copy before write: a chunk of the snapshot in progress is saved as it
                    // was before this batch changes it.
                    if window.groups.take_pending(chunk) {
                        save_chunk(&layout, KIND_LOCAL, window, chunk, &mut self.saved);
                    }
                    window.groups.mark_dirty(g);
                }
            }
            for (i, acc) in layout.accumulators.iter().enumerate() {
                let table = &mut window.groups;
                // Side state (strings, distinct sets, sketches) counts against the limit.
                let side_bytes = acc.update(
                    &mut table.slots,
                    stride,
                    i,
                    &self.groups,
                    rows_in_window,
                    args[i].as_ref(),
                    &mut table.strings,
                );
                self.bytes_total += side_bytes;
                window.bytes += side_bytes;
            }
        }
        if self.buckets.len() > 8 {
            self.buckets.clear();
        }
        if self.groups_total > self.limits.state_groups_max {
            return Err(EngineError::Limit(format!(
                "window state of one shard holds {} groups, over state_groups_max = {}",
                self.groups_total, self.limits.state_groups_max
            )));
        }
        if self.bytes_total > self.limits.state_bytes_max {
            return Err(EngineError::Limit(format!(
                "window state of one shard takes about {} bytes, over state_bytes_max = {}",
                self.bytes_total, self.limits.state_bytes_max
            )));
        }
        Ok(())
    }

    /// Removes and returns, oldest first, every pane whose end is at or before `watermark`.
    pub fn fire(&mut self, watermark: i64, out: &mut Vec<FiredWindow>) {
        while let Some(entry) = self.windows.first_entry() {
            if entry.get().end > watermark {
                break;
            }
            let mut w = entry.remove();
            save_all_pending(&self.layout, KIND_LOCAL, &mut w, &mut self.saved);
            if w.groups.persisted_chunks > 0 {
                self.removed
                    .push((w.start, w.end, w.groups.persisted_chunks));
            }
            self.groups_total -= w.groups.len();
            self.bytes_total -= w.bytes;
            self.stats.windows_fired += 1;
            self.stats.groups_fired += w.groups.len() as u64;
            out.push(w);
        }
    }

    /// The open panes, oldest first (for checkpoints).
    pub fn windows_mut(&mut self) -> impl Iterator<Item = &mut FiredWindow> {
        self.windows.values_mut()
    }

    /// Chunks of the snapshot in progress saved since the last call (key, value).
    pub fn take_saved(&mut self) -> Vec<(Vec<u8>, Vec<u8>)> {
        std::mem::take(&mut self.saved)
    }

    /// Panes fired since the last call that had chunks in the state store: (start, end,
    /// chunks).
    pub fn take_removed(&mut self) -> Vec<(i64, i64, u32)> {
        std::mem::take(&mut self.removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    /// The operator of `k, COUNT(*), SUM(v)` over 3 s windows every 1 s, and the source
    /// schema.
    fn hop_operator() -> (WindowOperator, SchemaRef) {
        let sql = "CREATE TABLE t (k STRING, v BIGINT, ts TIMESTAMP(3), \
             WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
             WITH ('connector' = 'filesystem', 'path' = 'unused.jsonl', 'format' = 'json');\n\
             SELECT k, COUNT(*), SUM(v) FROM t GROUP BY k, HOP(ts, INTERVAL '1' SECOND, INTERVAL '3' SECOND);";
        let program = crate::sql::parse_program(sql).expect("plans");
        let schema = program.table("t").expect("table t").schema();
        let aggregation = program.pipelines[0]
            .aggregation
            .as_ref()
            .expect("aggregation");
        let layout = Arc::new(AggregateLayout::new(aggregation).expect("layout"));
        let op = WindowOperator::new(layout, Limits::default()).expect("operator");
        (op, schema)
    }

    fn batch(schema: &SchemaRef, rows: &[(&str, i64, i64)]) -> RecordBatch {
        let k = StringArray::from_iter_values(rows.iter().map(|r| r.0));
        let v = Int64Array::from_iter_values(rows.iter().map(|r| r.1));
        let ts = TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.2));
        RecordBatch::try_new(schema.clone(), vec![Arc::new(k), Arc::new(v), Arc::new(ts)])
            .expect("batch")
    }

    /// (pane start, pane end, groups, COUNT(*) over all groups) of fired panes.
    fn summary(fired: &[FiredWindow]) -> Vec<(i64, i64, usize, u64)> {
        fired
            .iter()
            .map(|w| {
                let n = (0..w.groups.len() as u32)
                    .map(|g| w.groups.group_slots(g)[0].a)
                    .sum();
                (w.start, w.end, w.groups.len(), n)
            })
            .collect()
    }

    #[test]
    fn each_event_updates_one_pane_not_every_window() {
        let (mut op, schema) = hop_operator();
        let b = batch(
            &schema,
            &[
                ("a", 1, 100),
                ("b", 2, 900),
                ("a", 3, 1_500),
                ("a", 4, 4_200),
            ],
        );
        op.process(&b, i64::MIN).expect("process");
        assert_eq!(
            op.open_windows(),
            3,
            "panes [0, 1 s), [1 s, 2 s), [4 s, 5 s)"
        );
        assert_eq!(op.groups(), 4, "one group per key and pane, not per window");
        let mut fired = Vec::new();
        op.fire(2_000, &mut fired);
        assert_eq!(
            summary(&fired),
            vec![(0, 1_000, 2, 2), (1_000, 2_000, 1, 1)]
        );
        assert_eq!(op.open_windows(), 1);
        assert_eq!(op.stats.windows_fired, 2);
    }

    #[test]
    fn late_only_when_the_last_window_has_fired_and_fired_panes_reopen() {
        let (mut op, schema) = hop_operator();
        let mut fired = Vec::new();
        op.process(&batch(&schema, &[("a", 1, 500)]), i64::MIN)
            .expect("process");
        op.fire(2_500, &mut fired);
        assert_eq!(summary(&fired), vec![(0, 1_000, 1, 1)]);
        fired.clear();
        // Watermark 2.5 s: pane [0, 1 s) is still in the window [0, 3 s), so an event in it
        // is on time and reopens the pane; pane [-1 s, 0)'s last window [-1 s, 2 s) has
        // fired, so an event there is late.
        let b = batch(&schema, &[("a", 10, 700), ("b", 20, -1)]);
        op.process(&b, 2_500).expect("process");
        assert_eq!(op.stats.late_events, 1);
        assert_eq!(op.open_windows(), 1);
        op.fire(2_500, &mut fired);
        assert_eq!(
            summary(&fired),
            vec![(0, 1_000, 1, 1)],
            "the reopened pane fires again"
        );
        // At watermark 3 s every window of [0, 1 s) has fired.
        op.process(&batch(&schema, &[("a", 1, 999)]), 3_000)
            .expect("process");
        assert_eq!(op.stats.late_events, 2);
        assert_eq!(op.open_windows(), 0);
    }

    #[test]
    fn within_the_lateness_fired_panes_reopen_and_too_late_rows_are_listed() {
        let (mut op, schema) = hop_operator();
        op.set_lateness(2_000, true);
        let mut fired = Vec::new();
        op.process(&batch(&schema, &[("a", 1, 500)]), i64::MIN)
            .expect("process");
        op.fire(3_000, &mut fired);
        assert_eq!(summary(&fired), vec![(0, 1_000, 1, 1)]);
        fired.clear();
        // Watermark 4.5 s: pane [0, 1 s)'s last window [0, 3 s) ended 1.5 s ago, within the
        // 2 s lateness; pane [-1 s, 0) (last window ends at 2 s) is 2.5 s behind: too late.
        let b = batch(&schema, &[("a", 10, 700), ("b", 20, -1), ("c", 5, 999)]);
        op.process(&b, 4_500).expect("process");
        assert_eq!(op.stats.late_events, 1);
        assert_eq!(op.late_rows, vec![1], "row 1 of the batch");
        op.fire(4_500, &mut fired);
        assert_eq!(
            summary(&fired),
            vec![(0, 1_000, 2, 2)],
            "the reopened pane holds only the late delta"
        );
        // At 5 s the pane's last window is 2 s behind: too late now.
        op.process(&batch(&schema, &[("a", 1, 999)]), 5_000)
            .expect("process");
        assert_eq!(op.stats.late_events, 2);
        assert_eq!(op.late_rows, vec![0]);
        assert_eq!(op.open_windows(), 0);
    }

    /// A snapshot taken between two batches holds the first batch's counts, whether its
    /// chunks were serialized before the second batch changed them (copy before write) or
    /// after (drained), and a firing saves what is still pending.
    #[test]
    fn a_snapshot_holds_the_state_at_its_cut() {
        let (mut op, schema) = hop_operator();
        let keys: Vec<String> = (0..5_000).map(|i| format!("key-{i}")).collect();
        let rows = |ts: i64| -> Vec<(&str, i64, i64)> {
            keys.iter().map(|k| (k.as_str(), 1, ts)).collect()
        };
        op.process(&batch(&schema, &rows(100)), i64::MIN)
            .expect("first");
        let pending: usize = op.windows_mut().map(|w| w.groups.begin_snapshot()).sum();
        assert_eq!(pending, 5, "5000 groups in one pane are 5 chunks");
        // Change half the keys after the cut: their chunks are saved first.
        op.process(&batch(&schema, &rows(200)[..2_500]), i64::MIN)
            .expect("second");
        let early = op.take_saved();
        assert_eq!(early.len(), 3, "the chunks the second batch touched");
        // Firing the pane saves the chunks still pending.
        let mut fired = Vec::new();
        op.fire(i64::MAX, &mut fired);
        let late = op.take_saved();
        assert_eq!(early.len() + late.len(), 5);
        let layout = op.layout.clone();
        let mut total = 0;
        for (_, value) in early.iter().chain(&late) {
            let p = crate::checkpoint::chunk_codec::decode_groups(&layout, 0, 1_000, value)
                .expect("decode");
            total += (0..p.len()).map(|i| p.slots[i * 2].a).sum::<u64>();
        }
        assert_eq!(
            total, 5_000,
            "COUNT(*) at the cut, not after the second batch"
        );
        assert_eq!(
            summary(&fired)[0].3,
            7_500,
            "the live state has both batches"
        );
    }
}
