//! The state of an interval join whose upper bound is a column of the left row, keeping
//! the best N right rows per left row (Nexmark q9's winning bid per auction):
//! `left.ts + from_ms <= right.ts <= left.until`, `ROW_NUMBER() OVER (PARTITION BY
//! <left key> ORDER BY <right columns>) <= N`.
//!
//! - A left row waits for its partners until the watermark passes its `until` time (every
//!   right row still to come has `ts >= watermark`); its best rows are then final: they are
//!   handed out ([`TopJoinState::expire`]) and the row is freed. A left row without any
//!   partner is freed without a result (an inner join).
//! - A right row is offered to the held left rows of its key on arrival. When none is
//!   held, it waits for a left row still to come (the planner takes the join key to be
//!   unique per left row: PARTITION BY is the left key, so a key whose left row is held
//!   gets no other); it is freed once `ts < watermark + from_ms` (a left row still to
//!   come has `ts >= watermark`, so it needs `right.ts >= watermark + from_ms`).
//! - Ranking: ascending bytes of arrow's row format over the ORDER BY columns (DESC
//!   columns encoded descending), then over every right column: equal ORDER BY values are
//!   ordered by the rows' contents, so the result does not depend on arrival order.
//!
//! Rows are held as bytes of arrow's row format: a left row as its [`RowCodec`] bytes, a
//! right row as its rank bytes (which hold all its columns), kept per incoming batch while
//! its rows wait in the index (a batch's bytes are freed with its last waiting row) and
//! copied into a left row's best rows. A long-lived left row thus holds only its own bytes
//! and its best rows', not the batches they came in.
//!
//! Aggregating instead of ranking (Nexmark q4's `MAX(B.price) ... GROUP BY A.id`, see
//! [`TopJoinState::aggregating`]): a left row keeps one accumulator slot per aggregate
//! (`crate::accumulator`, the slot-only kinds) instead of its best rows, and a right row
//! updates them; a waiting right batch is held as its prepared aggregate arguments.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::SortOptions;
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, Rows, SortField};

use super::state::RowRef;
use crate::accumulator::{inner_aggregate_allowed, Accumulator, Slot, StringStore};
use crate::error::{EngineError, Result};

/// Encodes right rows into their rank bytes (smaller is better).
pub struct RankEncoder {
    /// The ORDER BY columns, then every column of the right side.
    columns: Vec<usize>,
    /// The number of the right side's columns.
    columns_all: usize,
    converter: RowConverter,
}

impl RankEncoder {
    /// `order`: (column of `schema`, descending). NULLs rank as the smallest value (first
    /// ascending, last descending).
    pub fn new(schema: &SchemaRef, order: &[(usize, bool)]) -> Result<Self> {
        let mut columns = Vec::with_capacity(order.len() + schema.fields().len());
        let mut fields = Vec::with_capacity(columns.capacity());
        let all = (0..schema.fields().len()).map(|c| (c, false));
        for (c, descending) in order.iter().copied().chain(all) {
            let field = schema.fields().get(c).ok_or_else(|| {
                EngineError::Internal(format!("ORDER BY column {c} of a join's right side"))
            })?;
            columns.push(c);
            fields.push(SortField::new_with_options(
                field.data_type().clone(),
                SortOptions {
                    descending,
                    nulls_first: !descending,
                },
            ));
        }
        Ok(RankEncoder {
            columns,
            columns_all: schema.fields().len(),
            converter: RowConverter::new(fields)?,
        })
    }

    /// The rank bytes of `batch`'s rows.
    pub fn encode(&self, batch: &RecordBatch) -> Result<Rows> {
        let arrays: Vec<_> = self
            .columns
            .iter()
            .map(|&c| batch.column(c).clone())
            .collect();
        Ok(self.converter.convert_columns(&arrays)?)
    }

    /// The right side's columns of rows given by their rank bytes.
    pub fn decode(&self, ranks: &[&[u8]]) -> Result<Vec<ArrayRef>> {
        let order = self.columns.len() - self.columns_all;
        let parser = self.converter.parser();
        let mut columns = self
            .converter
            .convert_rows(ranks.iter().map(|r| parser.parse(r)))?;
        Ok(columns.split_off(order))
    }
}

/// Whole rows of one side as bytes (arrow's row format), and back.
pub struct RowCodec {
    converter: RowConverter,
}

impl RowCodec {
    /// A codec of rows of `schema`.
    pub fn new(schema: &SchemaRef) -> Result<Self> {
        let fields = schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        Ok(RowCodec {
            converter: RowConverter::new(fields)?,
        })
    }

    /// The rows of `batch` as bytes.
    pub fn encode(&self, batch: &RecordBatch) -> Result<Rows> {
        Ok(self.converter.convert_columns(batch.columns())?)
    }

    /// The columns of rows given as bytes.
    pub fn decode(&self, rows: &[&[u8]]) -> Result<Vec<ArrayRef>> {
        let parser = self.converter.parser();
        Ok(self
            .converter
            .convert_rows(rows.iter().map(|r| parser.parse(r)))?)
    }
}

/// What a right batch brings to the left rows: its rows' rank bytes (ranking), or its
/// prepared aggregate arguments, one per aggregate (aggregating).
enum RightRows {
    Ranks(Rows),
    Values(Vec<Option<ArrayRef>>),
}

impl RightRows {
    fn bytes(&self) -> usize {
        match self {
            RightRows::Ranks(r) => r.size(),
            RightRows::Values(v) => v.iter().flatten().map(|a| a.get_array_memory_size()).sum(),
        }
    }
}

/// A right batch, held for its rows still waiting in the index.
struct HeldBatch {
    rows: RightRows,
    refs: usize,
    bytes: usize,
}

/// What a left row collects of its partners.
enum Collect {
    /// The best `rank_max` right rows.
    Best { rank_max: usize },
    /// Aggregates over every partner (slot-only accumulators).
    Aggregate {
        accumulators: Vec<Accumulator>,
        /// Unused: slot-only aggregates keep no side state.
        strings: StringStore,
    },
}

struct LeftEntry {
    key: Box<[u8]>,
    /// The earliest right time that matches (`left.ts + from_ms`).
    from: i64,
    /// The latest right time that matches.
    until: i64,
    /// The left row's bytes (see [`RowCodec`]).
    row: Box<[u8]>,
    /// The rank bytes of the best right rows (which hold the whole rows), best first, at
    /// most `rank_max` (ranking).
    best: Vec<Box<[u8]>>,
    /// One slot per aggregate (aggregating).
    slots: Box<[Slot]>,
    /// Right rows matched (aggregating).
    matches: u64,
}

struct RightEntry {
    key: Box<[u8]>,
    ts: i64,
    row: RowRef,
}

/// A left row whose partners are final: the left row's bytes ([`RowCodec`]) and its best
/// right rows' rank bytes ([`RankEncoder`]), best first; or, aggregating, its slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedRow {
    pub left: Box<[u8]>,
    pub best: Vec<Box<[u8]>>,
    /// One slot per aggregate (aggregating; empty when ranking).
    pub slots: Box<[Slot]>,
}

/// Both sides of a top-N (or aggregating) interval join on one shard.
pub struct TopJoinState {
    from_ms: i64,
    collect: Collect,
    /// Right batches by id.
    batches: HashMap<u64, HeldBatch>,
    left: HashMap<u64, LeftEntry>,
    left_index: HashMap<Box<[u8]>, VecDeque<u64>>,
    left_by_until: BinaryHeap<Reverse<(i64, u64)>>,
    right: HashMap<u64, RightEntry>,
    right_index: HashMap<Box<[u8]>, VecDeque<u64>>,
    right_by_ts: BinaryHeap<Reverse<(i64, u64)>>,
    next_batch: u64,
    next_entry: u64,
    /// Rows held (left rows waiting, right rows waiting).
    pub rows: usize,
    /// Bytes of the held right batches and their rank bytes, the left rows and their best
    /// rows.
    pub bytes: usize,
}

/// Offers a right row (its rank bytes) to a left row's best rows; returns the change of
/// held bytes.
fn offer(best: &mut Vec<Box<[u8]>>, rank: &[u8], rank_max: usize) -> isize {
    let at = best
        .iter()
        .position(|b| rank < b.as_ref())
        .unwrap_or(best.len());
    if at >= rank_max {
        return 0;
    }
    let mut delta = rank.len() as isize;
    best.insert(at, rank.into());
    if best.len() > rank_max {
        if let Some(dropped) = best.pop() {
            delta -= dropped.len() as isize;
        }
    }
    delta
}

fn candidates_bytes(best: &[Box<[u8]>]) -> usize {
    best.iter().map(|c| c.len()).sum()
}

fn slot_bytes(slots: &[Slot]) -> usize {
    std::mem::size_of_val(slots)
}

impl Collect {
    /// The slots of a new left row (none when ranking).
    fn empty_slots(&self) -> Box<[Slot]> {
        match self {
            Collect::Best { .. } => Box::default(),
            Collect::Aggregate { accumulators, .. } => vec![Slot::EMPTY; accumulators.len()].into(),
        }
    }

    /// Offers right row `row` of `rows` to `left`; returns the change of held bytes.
    fn take(&mut self, left: &mut LeftEntry, rows: &RightRows, row: usize) -> Result<isize> {
        match (self, rows) {
            (Collect::Best { rank_max }, RightRows::Ranks(ranks)) => {
                Ok(offer(&mut left.best, ranks.row(row).as_ref(), *rank_max))
            }
            (
                Collect::Aggregate {
                    accumulators,
                    strings,
                },
                RightRows::Values(values),
            ) => {
                let stride = accumulators.len();
                for (a, (acc, value)) in accumulators.iter().zip(values).enumerate() {
                    // Slot-only kinds: the side table stays empty.
                    acc.update(
                        &mut left.slots,
                        stride,
                        a,
                        &[0],
                        &[row as u32],
                        value.as_ref(),
                        strings,
                    );
                }
                left.matches += 1;
                Ok(0)
            }
            _ => Err(EngineError::Internal(
                "right rows of a ranked join offered to an aggregating one, or back".into(),
            )),
        }
    }
}

impl TopJoinState {
    /// Matches `left.ts + from_ms <= right.ts <= left.until`, keeping `rank_max` (>= 1)
    /// right rows per left row.
    pub fn new(from_ms: i64, rank_max: usize) -> Self {
        assert!(rank_max >= 1, "a top-N join keeps at least one row");
        Self::with_collect(from_ms, Collect::Best { rank_max })
    }

    /// Matches as [`TopJoinState::new`], aggregating each left row's partners with
    /// `accumulators` (slot-only kinds: COUNT, SUM, AVG, MIN, MAX over numbers); right
    /// rows come with their prepared arguments ([`TopJoinState::insert_right_values`]).
    pub fn aggregating(from_ms: i64, accumulators: Vec<Accumulator>) -> Result<Self> {
        if let Some(a) = accumulators.iter().find(|a| !inner_aggregate_allowed(a)) {
            return Err(EngineError::Internal(format!(
                "aggregate {:?} over a join's matches keeps side state",
                a.kind
            )));
        }
        Ok(Self::with_collect(
            from_ms,
            Collect::Aggregate {
                accumulators,
                strings: StringStore::new(),
            },
        ))
    }

    fn with_collect(from_ms: i64, collect: Collect) -> Self {
        TopJoinState {
            from_ms,
            collect,
            batches: HashMap::new(),
            left: HashMap::new(),
            left_index: HashMap::new(),
            left_by_until: BinaryHeap::new(),
            right: HashMap::new(),
            right_index: HashMap::new(),
            right_by_ts: BinaryHeap::new(),
            next_batch: 0,
            next_entry: 0,
            rows: 0,
            bytes: 0,
        }
    }

    fn add_bytes(&mut self, delta: isize) {
        self.bytes = self
            .bytes
            .checked_add_signed(delta)
            .unwrap_or_else(|| panic!("top-N join state bytes {} moved by {delta}", self.bytes));
    }

    /// Adds left rows: `keys`, event `times` and `until` times per row; rows flagged in
    /// `skip` (NULL key or time, late) are not held.
    pub fn insert_left(
        &mut self,
        rows: &Rows,
        keys: &Rows,
        times: &[i64],
        until: &[i64],
        skip: &[bool],
    ) -> Result<()> {
        for (i, (&ts, &until)) in times.iter().zip(until).enumerate() {
            let from = ts.saturating_add(self.from_ms);
            if skip[i] || until < from {
                continue;
            }
            let key: Box<[u8]> = keys.row(i).as_ref().into();
            if self
                .left_index
                .get(&key)
                .is_some_and(|held| !held.is_empty())
            {
                // Right rows of a held key are ranked into its row and not kept, so a second
                // left row of the key would miss them: refuse rather than rank wrongly.
                return Err(EngineError::Config(
                    "a ranked or aggregating join of two streams (ROW_NUMBER() OVER \
                     (PARTITION BY the left key), or GROUP BY the left key) needs a unique join \
                     key per left row, but a left row repeats the key of one still held (not \
                     supported yet)"
                        .into(),
                ));
            }
            let row: Box<[u8]> = rows.row(i).as_ref().into();
            let mut left = LeftEntry {
                key,
                from,
                until,
                row,
                best: Vec::new(),
                slots: self.collect.empty_slots(),
                matches: 0,
            };
            let mut delta = (left.row.len() + slot_bytes(&left.slots)) as isize;
            if let Some(rights) = self.right_index.get(&left.key) {
                for r in rights {
                    let Some(e) = self.right.get(r) else { continue };
                    if e.ts < from || e.ts > until {
                        continue;
                    }
                    if let Some(h) = self.batches.get(&e.row.0) {
                        delta += self.collect.take(&mut left, &h.rows, e.row.1 as usize)?;
                    }
                }
            }
            let entry = self.next_entry;
            self.next_entry += 1;
            self.left_index
                .entry(left.key.clone())
                .or_default()
                .push_back(entry);
            self.left_by_until.push(Reverse((until, entry)));
            self.left.insert(entry, left);
            self.add_bytes(delta);
            self.rows += 1;
        }
        Ok(())
    }

    /// Adds right rows: `keys`, event `times`, and their `ranks` (see [`RankEncoder`]);
    /// rows flagged in `skip` are not held.
    pub fn insert_right(
        &mut self,
        keys: &Rows,
        times: &[i64],
        ranks: Rows,
        skip: &[bool],
    ) -> Result<()> {
        self.insert_right_rows(keys, times, RightRows::Ranks(ranks), skip)
    }

    /// Adds right rows of an aggregating join: `keys`, event `times`, and one prepared
    /// argument per aggregate (`Accumulator::prepare_batch`; None for COUNT(*)); rows
    /// flagged in `skip` are not held.
    pub fn insert_right_values(
        &mut self,
        keys: &Rows,
        times: &[i64],
        values: Vec<Option<ArrayRef>>,
        skip: &[bool],
    ) -> Result<()> {
        self.insert_right_rows(keys, times, RightRows::Values(values), skip)
    }

    fn insert_right_rows(
        &mut self,
        keys: &Rows,
        times: &[i64],
        rows: RightRows,
        skip: &[bool],
    ) -> Result<()> {
        let id = self.next_batch;
        self.next_batch += 1;
        let mut delta = 0;
        let mut refs = 0;
        for (i, &ts) in times.iter().enumerate() {
            if skip[i] {
                continue;
            }
            let key: Box<[u8]> = keys.row(i).as_ref().into();
            if let Some(lefts) = self.left_index.get(&key) {
                for l in lefts {
                    let Some(e) = self.left.get_mut(l) else {
                        continue;
                    };
                    if ts >= e.from && ts <= e.until {
                        delta += self.collect.take(e, &rows, i)?;
                    }
                }
                // The key's left row is here, and the key is unique per left row (the
                // rank is per left row): no later left row can match this row.
                continue;
            }
            let entry = self.next_entry;
            self.next_entry += 1;
            self.right_index
                .entry(key.clone())
                .or_default()
                .push_back(entry);
            self.right_by_ts.push(Reverse((ts, entry)));
            self.right.insert(
                entry,
                RightEntry {
                    key,
                    ts,
                    row: (id, i as u32),
                },
            );
            refs += 1;
        }
        self.rows += refs;
        if refs > 0 {
            let bytes = rows.bytes();
            delta += bytes as isize;
            self.batches.insert(id, HeldBatch { rows, refs, bytes });
        }
        self.add_bytes(delta);
        Ok(())
    }

    /// Removes the left rows whose partners are final at `watermark` (`until <
    /// watermark`) and returns those with partners, by `until`; frees the right rows no
    /// later left row can match.
    pub fn expire(&mut self, watermark: i64) -> Vec<FinishedRow> {
        let mut finished = Vec::new();
        while let Some(&Reverse((until, entry))) = self.left_by_until.peek() {
            if until >= watermark {
                break;
            }
            self.left_by_until.pop();
            let Some(e) = self.left.remove(&entry) else {
                continue;
            };
            remove_from_index(&mut self.left_index, &e.key, entry);
            self.rows -= 1;
            self.bytes -= e.row.len() + candidates_bytes(&e.best) + slot_bytes(&e.slots);
            // An inner join: a left row without partners has no result.
            if !e.best.is_empty() || e.matches > 0 {
                finished.push(FinishedRow {
                    left: e.row,
                    best: e.best,
                    slots: e.slots,
                });
            }
        }
        let keep_from = watermark.saturating_add(self.from_ms);
        while let Some(&Reverse((ts, entry))) = self.right_by_ts.peek() {
            if ts >= keep_from {
                break;
            }
            self.right_by_ts.pop();
            let Some(e) = self.right.remove(&entry) else {
                continue;
            };
            remove_from_index(&mut self.right_index, &e.key, entry);
            self.rows -= 1;
            let id = e.row.0;
            let Some(h) = self.batches.get_mut(&id) else {
                continue;
            };
            assert!(h.refs > 0, "a join batch released more often than held");
            h.refs -= 1;
            if h.refs == 0 {
                let bytes = h.bytes;
                self.batches.remove(&id);
                self.bytes -= bytes;
            }
        }
        finished
    }
    /// Right batches held.
    pub fn batches_held(&self) -> usize {
        self.batches.len()
    }
}

/// Removes `entry` from `key`'s entries; entries leave mostly in arrival order, so the
/// first is checked first.
fn remove_from_index(index: &mut HashMap<Box<[u8]>, VecDeque<u64>>, key: &[u8], entry: u64) {
    if let Some(entries) = index.get_mut(key) {
        if entries.front() == Some(&entry) {
            entries.pop_front();
        } else if let Some(at) = entries.iter().position(|e| *e == entry) {
            entries.remove(at);
        }
        if entries.is_empty() {
            index.remove(key);
        }
    }
}

#[cfg(test)]
#[path = "top_state_tests.rs"]
mod tests;
