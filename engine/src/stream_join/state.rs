//! The join state of the shard that owns a set of keys: both sides' rows, until the
//! watermark frees them.
//!
//! - [`IntervalJoinState`]: rows indexed by key per side; a new row probes the other
//!   side's rows of its key at once (`lower <= left.ts - right.ts <= upper`), then waits
//!   for later partners. A left row is freed once `ts - lower < watermark`, a right row
//!   once `ts + upper < watermark`: every row still to come has `ts >= watermark` (earlier
//!   ones are late and dropped before they get here), so none can match it any more.
//! - [`WindowJoinState`]: rows buffered per window (by its end); when the watermark reaches
//!   the end the window's rows are joined by key ([`join_window`]) and freed.
//!
//! Rows are held as the Arrow batches they came in (a batch is freed with its last row).
//! Both states count rows and bytes; the operator checks them against `JoinLimits`.

use std::collections::{BTreeMap, HashMap};

use arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::TimestampMillisecondType;
use arrow::row::Rows;

use super::keys::encode_whole_rows;
use crate::error::{EngineError, Result};
use crate::plan::JoinSide;

/// A held row: (batch id, row in the batch).
pub type RowRef = (u64, u32);

/// A batch held by the state and how many of its rows are still live.
struct HeldBatch {
    batch: RecordBatch,
    live: usize,
    bytes: usize,
}

struct Entry {
    ts: i64,
    batch: u64,
    row: u32,
}

/// One side of an interval join.
#[derive(Default)]
struct IntervalSide {
    batches: HashMap<u64, HeldBatch>,
    index: HashMap<Box<[u8]>, Vec<Entry>>,
    /// The smallest event time held (i64::MAX when empty).
    ts_min: Option<i64>,
}

/// Both sides of an interval join on one shard.
pub struct IntervalJoinState {
    lower_ms: i64,
    upper_ms: i64,
    sides: [IntervalSide; 2],
    next_batch: u64,
    /// Live rows held, both sides.
    pub rows: usize,
    /// Bytes of the held batches, both sides.
    pub bytes: usize,
}

impl IntervalJoinState {
    /// `lower_ms <= left.ts - right.ts <= upper_ms`.
    pub fn new(lower_ms: i64, upper_ms: i64) -> Self {
        assert!(lower_ms <= upper_ms, "interval bounds are ordered");
        IntervalJoinState {
            lower_ms,
            upper_ms,
            sides: [IntervalSide::default(), IntervalSide::default()],
            next_batch: 0,
            rows: 0,
            bytes: 0,
        }
    }

    /// The batch `id` of `side`.
    pub fn batch(&self, side: JoinSide, id: u64) -> Option<&RecordBatch> {
        self.sides[side.index()].batches.get(&id).map(|h| &h.batch)
    }

    /// Adds rows of `side` (`keys` and `times` per row; rows with `skip[i]` are not held)
    /// and returns their matches with the other side's held rows as (left, right) pairs.
    pub fn insert(
        &mut self,
        side: JoinSide,
        batch: RecordBatch,
        keys: &Rows,
        times: &[i64],
        skip: &[bool],
    ) -> Vec<(RowRef, RowRef)> {
        let id = self.next_batch;
        self.next_batch += 1;
        let mut matches = Vec::new();
        let (lower, upper) = (self.lower_ms, self.upper_ms);
        let other = &self.sides[side.other().index()];
        for (i, &ts) in times.iter().enumerate() {
            if skip[i] {
                continue;
            }
            let Some(entries) = other.index.get(keys.row(i).as_ref()) else {
                continue;
            };
            for e in entries {
                let (l, r) = match side {
                    JoinSide::Left => (ts, e.ts),
                    JoinSide::Right => (e.ts, ts),
                };
                let d = l.saturating_sub(r);
                if d >= lower && d <= upper {
                    let this = (id, i as u32);
                    let that = (e.batch, e.row);
                    matches.push(match side {
                        JoinSide::Left => (this, that),
                        JoinSide::Right => (that, this),
                    });
                }
            }
        }
        let own = &mut self.sides[side.index()];
        let mut live = 0;
        for (i, &ts) in times.iter().enumerate() {
            if skip[i] {
                continue;
            }
            live += 1;
            let entry = Entry {
                ts,
                batch: id,
                row: i as u32,
            };
            // Look up before inserting: a key's bytes are copied only when it is new.
            let key = keys.row(i);
            match own.index.get_mut(key.as_ref()) {
                Some(entries) => entries.push(entry),
                None => {
                    own.index.insert(key.as_ref().into(), vec![entry]);
                }
            }
            own.ts_min = Some(own.ts_min.map_or(ts, |m| m.min(ts)));
        }
        let bytes = batch.get_array_memory_size();
        own.batches.insert(id, HeldBatch { batch, live, bytes });
        self.rows += live;
        self.bytes += bytes;
        matches
    }

    /// Frees the batches no row of which is live (after the caller built its output).
    pub fn release_empty(&mut self) {
        for side in &mut self.sides {
            let mut freed = 0;
            side.batches.retain(|_, h| {
                if h.live == 0 {
                    freed += h.bytes;
                }
                h.live > 0
            });
            self.bytes -= freed;
        }
    }

    /// Frees every row no row at or after `watermark` can match.
    pub fn expire(&mut self, watermark: i64) {
        for s in [JoinSide::Left, JoinSide::Right] {
            // Left rows live while ts - lower >= watermark, right rows while
            // ts + upper >= watermark; without that bound (i64::MIN / i64::MAX), for ever.
            let keep_from = match s {
                JoinSide::Left if self.lower_ms == i64::MIN => continue,
                JoinSide::Right if self.upper_ms == i64::MAX => continue,
                JoinSide::Left => watermark.saturating_add(self.lower_ms),
                JoinSide::Right => watermark.saturating_sub(self.upper_ms),
            };
            let side = &mut self.sides[s.index()];
            if side.ts_min.is_none_or(|m| m >= keep_from) {
                continue;
            }
            let mut freed_rows = 0;
            let mut ts_min: Option<i64> = None;
            let batches = &mut side.batches;
            side.index.retain(|_, entries| {
                entries.retain(|e| {
                    if e.ts >= keep_from {
                        ts_min = Some(ts_min.map_or(e.ts, |m| m.min(e.ts)));
                        return true;
                    }
                    if let Some(h) = batches.get_mut(&e.batch) {
                        h.live -= 1;
                    }
                    freed_rows += 1;
                    false
                });
                !entries.is_empty()
            });
            side.ts_min = ts_min;
            self.rows -= freed_rows;
        }
        self.release_empty();
    }
}

/// Rows of one window, per side, as they came.
#[derive(Default)]
struct WindowRows {
    sides: [Vec<RecordBatch>; 2],
}

/// A closed window: its end and each side's rows.
pub struct ClosedJoinWindow {
    pub end: i64,
    pub left: Vec<RecordBatch>,
    pub right: Vec<RecordBatch>,
}

/// Both sides of a window join on one shard.
#[derive(Default)]
pub struct WindowJoinState {
    windows: BTreeMap<i64, WindowRows>,
    /// Rows held, both sides.
    pub rows: usize,
    /// Bytes of the held batches.
    pub bytes: usize,
}

impl WindowJoinState {
    /// Adds rows of `side`; `time_column` is the side's `window_end`.
    pub fn insert(&mut self, side: JoinSide, batch: RecordBatch, time_column: usize) -> Result<()> {
        let ends = batch
            .column(time_column)
            .as_primitive::<TimestampMillisecondType>();
        if ends.null_count() > 0 {
            return Err(EngineError::Internal(
                "a window join row without window_end".into(),
            ));
        }
        let first = ends.values().first().copied().unwrap_or(0);
        if ends.values().iter().all(|&e| e == first) {
            self.hold(side, first, batch);
            return Ok(());
        }
        let mut by_end: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        for (i, &e) in ends.values().iter().enumerate() {
            by_end.entry(e).or_default().push(i as u32);
        }
        for (end, rows) in by_end {
            let part = take_record_batch(&batch, &UInt32Array::from(rows))?;
            self.hold(side, end, part);
        }
        Ok(())
    }

    fn hold(&mut self, side: JoinSide, end: i64, batch: RecordBatch) {
        if batch.num_rows() == 0 {
            return;
        }
        self.rows += batch.num_rows();
        self.bytes += batch.get_array_memory_size();
        self.windows.entry(end).or_default().sides[side.index()].push(batch);
    }

    /// Windows held (ended or not).
    pub fn windows(&self) -> usize {
        self.windows.len()
    }

    /// Removes and returns the windows ending at or before `watermark`, by end.
    pub fn close(&mut self, watermark: i64) -> Vec<ClosedJoinWindow> {
        let mut out = Vec::new();
        while let Some(entry) = self.windows.first_entry() {
            if *entry.key() > watermark {
                break;
            }
            let (end, w) = entry.remove_entry();
            for b in w.sides.iter().flatten() {
                self.rows -= b.num_rows();
                self.bytes -= b.get_array_memory_size();
            }
            let [left, right] = w.sides;
            out.push(ClosedJoinWindow { end, left, right });
        }
        out
    }
}

/// One side of a closed window, concatenated; with `distinct`, only the first of equal
/// rows. Returns the rows and the indices kept.
pub fn window_side(
    batches: &[RecordBatch],
    schema: &arrow::datatypes::SchemaRef,
    distinct: bool,
) -> Result<RecordBatch> {
    let all = concat_batches(schema, batches)?;
    if !distinct || all.num_rows() < 2 {
        return Ok(all);
    }
    let rows = encode_whole_rows(&all)?;
    let mut seen = std::collections::HashSet::with_capacity(all.num_rows());
    let keep: Vec<u32> = (0..all.num_rows())
        .filter(|&i| seen.insert(rows.row(i).as_ref().to_vec()))
        .map(|i| i as u32)
        .collect();
    if keep.len() == all.num_rows() {
        return Ok(all);
    }
    Ok(take_record_batch(&all, &UInt32Array::from(keep))?)
}

/// The matching (left row, right row) pairs of one window by key; rows flagged in `skip`
/// (NULL keys) match nothing.
pub fn join_window(
    left_keys: &Rows,
    left_skip: &[bool],
    right_keys: &Rows,
    right_skip: &[bool],
) -> (Vec<u32>, Vec<u32>) {
    let mut by_key: HashMap<&[u8], Vec<u32>> = HashMap::new();
    for (i, &skip) in left_skip.iter().enumerate() {
        if !skip {
            by_key
                .entry(left_keys.row(i).data())
                .or_default()
                .push(i as u32);
        }
    }
    let (mut l, mut r) = (Vec::new(), Vec::new());
    for (j, &skip) in right_skip.iter().enumerate() {
        if skip {
            continue;
        }
        if let Some(rows) = by_key.get(right_keys.row(j).data()) {
            for &i in rows {
                l.push(i);
                r.push(j as u32);
            }
        }
    }
    (l, r)
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
