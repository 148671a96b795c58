//! The join operator of the shard that owns a set of join keys: it takes both sides' rows
//! (from every shard, see `routing.rs`), keeps them in its state (`state.rs`) until the
//! global watermark frees them, and writes the joined rows (left side's output columns,
//! then the right side's), filtered by the query's WHERE, into the shard's emitter.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::{interleave, take};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimestampMillisecondType};

use super::keys::KeyEncoder;
use super::routing::{is_late, side_schema, JoinRows};
use super::state::{join_window, window_side, IntervalJoinState, RowRef, WindowJoinState};
use super::top_state::{FinishedRow, RankEncoder, RowCodec, TopJoinState};
use crate::accumulator::{Accumulator, StringStore};
use crate::emitter::Emitter;
use crate::error::{EngineError, Result};
use crate::expr::{evaluate_predicate, filter_batch};
use crate::limits::JoinLimits;
use crate::plan::{Expr, JoinAggregate, JoinSide, StreamJoin, StreamJoinKind};
use crate::watermark::WATERMARK_MIN;

/// What a join operator did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JoinStats {
    /// Rows received per side (left, right).
    pub rows_in: [u64; 2],
    /// Rows that arrived after the watermark passed their window or interval.
    pub late_rows: u64,
    /// Joined rows produced (before WHERE).
    pub rows_joined: u64,
    /// Windows closed (window joins).
    pub windows_closed: u64,
}

#[derive(Clone, Copy)]
struct PeerClock {
    watermark: i64,
    idle: bool,
}

enum JoinState {
    Window(WindowJoinState),
    Interval(Box<IntervalJoinState>),
    /// A column-valued upper bound with the top N right rows (or aggregates over the
    /// matches) per left row.
    Top {
        state: Box<TopJoinState>,
        output: TopOutput,
        left_rows: RowCodec,
        until_column: usize,
    },
}

/// What a finished left row of a [`JoinState::Top`] join becomes.
enum TopOutput {
    /// Its best right rows, numbered.
    Ranked(RankEncoder),
    /// One row: the subquery's SELECT list over its grouped columns and aggregates.
    Aggregated(Box<AggregateOutput>),
}

/// The aggregates of an aggregating join (see `plan::JoinAggregate`).
struct AggregateOutput {
    plan: JoinAggregate,
    accumulators: Vec<Accumulator>,
    /// The grouped columns, then the aggregates (what `plan.projection` reads).
    grouped_schema: SchemaRef,
    strings: StringStore,
}

impl AggregateOutput {
    fn new(plan: &JoinAggregate, left: &SchemaRef) -> Result<Self> {
        let accumulators = plan
            .aggregates
            .iter()
            .map(Accumulator::new)
            .collect::<Result<Vec<_>>>()?;
        let mut fields = Vec::new();
        for &c in &plan.group_columns {
            let field = left.fields().get(c).ok_or_else(|| {
                EngineError::Internal(format!("grouped column {c} of a join's left side"))
            })?;
            fields.push(field.as_ref().clone().with_nullable(true));
        }
        for (i, a) in plan.aggregates.iter().enumerate() {
            fields.push(Field::new(format!("$agg{i}"), a.output_type.clone(), true));
        }
        Ok(AggregateOutput {
            plan: plan.clone(),
            accumulators,
            grouped_schema: Arc::new(Schema::new(fields)),
            strings: StringStore::new(),
        })
    }

    /// The prepared aggregate arguments of right rows `batch` (`times`: their event time).
    fn values(&self, batch: &RecordBatch, times: &ArrayRef) -> Result<Vec<Option<ArrayRef>>> {
        self.plan
            .aggregates
            .iter()
            .zip(&self.accumulators)
            .map(|(call, acc)| acc.prepare_batch(call, batch, times))
            .collect()
    }

    /// The joined rows (the SELECT list) of finished left rows.
    fn output(
        &self,
        finished: &[FinishedRow],
        left_rows: &RowCodec,
        schema: &SchemaRef,
    ) -> Result<Option<RecordBatch>> {
        if finished.is_empty() {
            return Ok(None);
        }
        let lefts: Vec<&[u8]> = finished.iter().map(|f| f.left.as_ref()).collect();
        let left = left_rows.decode(&lefts)?;
        let mut columns: Vec<ArrayRef> = Vec::new();
        for &c in &self.plan.group_columns {
            columns.push(left[c].clone());
        }
        let stride = self.accumulators.len();
        let slots: Vec<_> = finished
            .iter()
            .flat_map(|f| f.slots.iter().copied())
            .collect();
        for (a, acc) in self.accumulators.iter().enumerate() {
            let groups = 0..finished.len() as u32;
            columns.push(acc.finish(&slots, stride, a, groups, &self.strings)?);
        }
        let grouped = RecordBatch::try_new(self.grouped_schema.clone(), columns)?;
        let outputs = self
            .plan
            .projection
            .iter()
            .map(|e| e.evaluate(&grouped))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(RecordBatch::try_new(schema.clone(), outputs)?))
    }
}

/// The name of the row number column a top-N join appends to the joined schema.
pub const ROW_NUMBER_FIELD: &str = "row_number";

/// The join of two streams on one shard (for the keys it owns).
pub struct StreamJoinOperator {
    shard: usize,
    join: StreamJoin,
    encoders: [KeyEncoder; 2],
    side_schemas: [SchemaRef; 2],
    joined_schema: SchemaRef,
    filter: Option<Expr>,
    state: JoinState,
    peers: Vec<PeerClock>,
    /// The watermark every shard has passed (non-idle shards; all idle holds it).
    global: i64,
    limits: JoinLimits,
    pub stats: JoinStats,
}

impl StreamJoinOperator {
    /// The operator of shard `shard` of `shards`; `filter` is the query's WHERE over the
    /// joined schema.
    pub fn new(
        shard: usize,
        shards: usize,
        join: &StreamJoin,
        filter: Option<Expr>,
        limits: JoinLimits,
    ) -> Result<Self> {
        let side_schemas = [side_schema(&join.left), side_schema(&join.right)];
        let mut fields: Vec<_> = side_schemas
            .iter()
            .flat_map(|s| s.fields().iter().cloned())
            .collect();
        let state = match (join.kind, &join.top, &join.aggregate) {
            (StreamJoinKind::Window, None, None) => JoinState::Window(WindowJoinState::default()),
            (StreamJoinKind::Interval { lower_ms, upper_ms }, None, None) => {
                JoinState::Interval(Box::new(IntervalJoinState::new(lower_ms, upper_ms)))
            }
            (
                StreamJoinKind::IntervalUntil {
                    from_ms,
                    until_column,
                },
                Some(top),
                None,
            ) => {
                fields.push(Arc::new(Field::new(
                    ROW_NUMBER_FIELD,
                    DataType::Int64,
                    false,
                )));
                JoinState::Top {
                    state: Box::new(TopJoinState::new(from_ms, top.rank_max.max(1))),
                    output: TopOutput::Ranked(RankEncoder::new(&side_schemas[1], &top.order)?),
                    left_rows: RowCodec::new(&side_schemas[0])?,
                    until_column,
                }
            }
            (
                StreamJoinKind::IntervalUntil {
                    from_ms,
                    until_column,
                },
                None,
                Some(aggregate),
            ) => {
                fields = aggregate
                    .projection
                    .iter()
                    .zip(&aggregate.output_names)
                    .map(|(e, n)| Arc::new(Field::new(n, e.data_type(), true)))
                    .collect();
                let output = AggregateOutput::new(aggregate, &side_schemas[0])?;
                JoinState::Top {
                    state: Box::new(TopJoinState::aggregating(
                        from_ms,
                        output.accumulators.clone(),
                    )?),
                    output: TopOutput::Aggregated(Box::new(output)),
                    left_rows: RowCodec::new(&side_schemas[0])?,
                    until_column,
                }
            }
            (kind, top, aggregate) => {
                return Err(EngineError::Internal(format!(
                    "a stream join of kind {kind:?} with top-N {top:?} and aggregate {aggregate:?} was planned"
                )))
            }
        };
        Ok(StreamJoinOperator {
            shard,
            join: join.clone(),
            encoders: [
                KeyEncoder::new(join.left.keys.clone())?,
                KeyEncoder::new(join.right.keys.clone())?,
            ],
            side_schemas,
            joined_schema: Arc::new(Schema::new(fields)),
            filter,
            state,
            peers: vec![
                PeerClock {
                    watermark: WATERMARK_MIN,
                    idle: false,
                };
                shards
            ],
            global: WATERMARK_MIN,
            limits,
            stats: JoinStats::default(),
        })
    }

    /// The global watermark this operator has seen.
    pub fn global_watermark(&self) -> i64 {
        self.global
    }

    /// Rows and bytes held.
    pub fn state_size(&self) -> (usize, usize) {
        match &self.state {
            JoinState::Window(s) => (s.rows, s.bytes),
            JoinState::Interval(s) => (s.rows, s.bytes),
            JoinState::Top { state, .. } => (state.rows, state.bytes),
        }
    }

    /// Rows of one side for keys this shard owns.
    pub fn on_rows(&mut self, rows: JoinRows, emitter: &mut Emitter) -> Result<()> {
        let JoinRows { side, batch } = rows;
        self.stats.rows_in[side.index()] += batch.num_rows() as u64;
        let time_column = self.join.side(side).time_column;
        let times = batch
            .column(time_column)
            .as_primitive::<TimestampMillisecondType>();
        let global = self.global;
        let late: Vec<bool> = (0..batch.num_rows())
            .map(|i| times.is_null(i) || is_late(self.join.kind, side, times.value(i), global))
            .collect();
        let late_count = late.iter().filter(|l| **l).count();
        self.stats.late_rows += late_count as u64;
        if late_count == batch.num_rows() {
            return Ok(());
        }
        match &mut self.state {
            JoinState::Window(state) => {
                let batch = if late_count > 0 {
                    let mask = arrow::array::BooleanArray::from(
                        late.iter().map(|l| !l).collect::<Vec<_>>(),
                    );
                    filter_batch(&batch, &mask)?
                } else {
                    batch
                };
                state.insert(side, batch, time_column)?;
            }
            JoinState::Interval(state) => {
                let (keys, has_null) = self.encoders[side.index()].encode(&batch)?;
                let skip: Vec<bool> = has_null.iter().zip(&late).map(|(n, l)| *n || *l).collect();
                let ts: Vec<i64> = times.values().to_vec();
                let matches = state.insert(side, batch, &keys, &ts, &skip);
                if !matches.is_empty() {
                    let out = interval_output(state, &matches, &self.joined_schema)?;
                    state.release_empty();
                    self.emit(out, emitter)?;
                } else {
                    state.release_empty();
                }
            }
            JoinState::Top {
                state,
                output,
                left_rows,
                until_column,
            } => {
                let (keys, has_null) = self.encoders[side.index()].encode(&batch)?;
                let mut skip: Vec<bool> =
                    has_null.iter().zip(&late).map(|(n, l)| *n || *l).collect();
                let ts: Vec<i64> = times.values().to_vec();
                match side {
                    JoinSide::Left => {
                        let until = batch
                            .column(*until_column)
                            .as_primitive::<TimestampMillisecondType>();
                        for (i, s) in skip.iter_mut().enumerate() {
                            *s |= until.is_null(i);
                        }
                        let until = until.values().to_vec();
                        let rows = left_rows.encode(&batch)?;
                        state.insert_left(&rows, &keys, &ts, &until, &skip)?;
                    }
                    JoinSide::Right => match output {
                        TopOutput::Ranked(ranks) => {
                            let ranks = ranks.encode(&batch)?;
                            state.insert_right(&keys, &ts, ranks, &skip)?;
                        }
                        TopOutput::Aggregated(aggregate) => {
                            let values = aggregate.values(&batch, batch.column(time_column))?;
                            state.insert_right_values(&keys, &ts, values, &skip)?;
                        }
                    },
                }
            }
        }
        self.check_limits()
    }

    fn check_limits(&self) -> Result<()> {
        let (rows, bytes) = self.state_size();
        if rows > self.limits.join_state_rows_max {
            return Err(EngineError::Limit(format!(
                "the join of '{}' and '{}' holds {rows} rows on shard {}, over join.state.rows-max = {}; raise it (SET 'join.state.rows-max' = '...') or shorten the window or interval",
                self.join.left.table, self.join.right.table, self.shard, self.limits.join_state_rows_max
            )));
        }
        if bytes > self.limits.join_state_bytes_max {
            return Err(EngineError::Limit(format!(
                "the join of '{}' and '{}' holds {bytes} bytes on shard {}, over join.state.bytes-max = {}; raise it (SET 'join.state.bytes-max' = '...') or shorten the window or interval",
                self.join.left.table, self.join.right.table, self.shard, self.limits.join_state_bytes_max
            )));
        }
        Ok(())
    }

    /// A shard's watermark: closes windows / frees rows up to the new global watermark.
    pub fn on_watermark(
        &mut self,
        from: usize,
        watermark: i64,
        idle: bool,
        emitter: &mut Emitter,
    ) -> Result<()> {
        let Some(p) = self.peers.get_mut(from) else {
            return Err(EngineError::Internal(format!(
                "watermark from shard {from} of {}",
                self.peers.len()
            )));
        };
        assert!(
            watermark >= p.watermark,
            "watermark of shard {from} moved back from {} to {watermark}",
            p.watermark
        );
        *p = PeerClock { watermark, idle };
        let active: Vec<i64> = self
            .peers
            .iter()
            .filter(|p| !p.idle)
            .map(|p| p.watermark)
            .collect();
        let Some(min) = active.into_iter().min() else {
            return Ok(());
        };
        if min <= self.global {
            return Ok(());
        }
        self.global = min;
        match &mut self.state {
            JoinState::Interval(state) => state.expire(min),
            JoinState::Top {
                state,
                output,
                left_rows,
                ..
            } => {
                let finished = state.expire(min);
                let out = match output {
                    TopOutput::Ranked(ranks) => {
                        top_output(&finished, ranks, left_rows, &self.joined_schema)?
                    }
                    TopOutput::Aggregated(aggregate) => {
                        aggregate.output(&finished, left_rows, &self.joined_schema)?
                    }
                };
                if let Some(out) = out {
                    self.emit(out, emitter)?;
                }
            }
            JoinState::Window(state) => {
                let closed = state.close(min);
                for w in closed {
                    self.stats.windows_closed += 1;
                    let left =
                        window_side(&w.left, &self.side_schemas[0], self.join.left.distinct)?;
                    let right =
                        window_side(&w.right, &self.side_schemas[1], self.join.right.distinct)?;
                    if left.num_rows() == 0 || right.num_rows() == 0 {
                        continue;
                    }
                    let (lk, ln) = self.encoders[0].encode(&left)?;
                    let (rk, rn) = self.encoders[1].encode(&right)?;
                    let (li, ri) = join_window(&lk, &ln, &rk, &rn);
                    if li.is_empty() {
                        continue;
                    }
                    let li = arrow::array::UInt32Array::from(li);
                    let ri = arrow::array::UInt32Array::from(ri);
                    let mut columns: Vec<ArrayRef> = Vec::new();
                    for c in left.columns() {
                        columns.push(take(c.as_ref(), &li, None)?);
                    }
                    for c in right.columns() {
                        columns.push(take(c.as_ref(), &ri, None)?);
                    }
                    let out = RecordBatch::try_new(self.joined_schema.clone(), columns)?;
                    self.emit(out, emitter)?;
                }
            }
        }
        Ok(())
    }

    fn emit(&mut self, joined: RecordBatch, emitter: &mut Emitter) -> Result<()> {
        self.stats.rows_joined += joined.num_rows() as u64;
        let out = match &self.filter {
            Some(f) => {
                let mask = evaluate_predicate(f, &joined)?;
                filter_batch(&joined, &mask)?
            }
            None => joined,
        };
        if out.num_rows() > 0 {
            emitter.on_rows(&out)?;
        }
        Ok(())
    }
}

/// The joined rows of finished left rows of a top-N join: for each, its best right rows
/// with their row numbers (1 = best). None: no rows.
fn top_output(
    finished: &[FinishedRow],
    ranks: &RankEncoder,
    left_rows: &RowCodec,
    schema: &SchemaRef,
) -> Result<Option<RecordBatch>> {
    let mut lefts: Vec<&[u8]> = Vec::new();
    let mut rights: Vec<&[u8]> = Vec::new();
    let mut numbers = Vec::new();
    for f in finished {
        for (rank, r) in f.best.iter().enumerate() {
            lefts.push(&f.left);
            rights.push(r);
            numbers.push(rank as i64 + 1);
        }
    }
    if rights.is_empty() {
        return Ok(None);
    }
    let mut columns = left_rows.decode(&lefts)?;
    columns.extend(ranks.decode(&rights)?);
    columns.push(Arc::new(arrow::array::Int64Array::from(numbers)));
    Ok(Some(RecordBatch::try_new(schema.clone(), columns)?))
}

/// The joined rows of interval-join matches: left columns, then right columns.
fn interval_output(
    state: &IntervalJoinState,
    matches: &[(RowRef, RowRef)],
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let columns = pair_columns(matches, |side, id| {
        state.batch(side, id).ok_or_else(|| {
            EngineError::Internal(format!("join batch {id} of the {side:?} side is gone"))
        })
    })?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// The left columns, then the right columns, of (left row, right row) pairs.
fn pair_columns<'s>(
    matches: &[(RowRef, RowRef)],
    batch: impl Fn(JoinSide, u64) -> Result<&'s RecordBatch>,
) -> Result<Vec<ArrayRef>> {
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (side, pick) in [
        (
            JoinSide::Left,
            matches.iter().map(|m| m.0).collect::<Vec<_>>(),
        ),
        (
            JoinSide::Right,
            matches.iter().map(|m| m.1).collect::<Vec<_>>(),
        ),
    ] {
        let mut ids: Vec<u64> = pick.iter().map(|r| r.0).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut batches = Vec::with_capacity(ids.len());
        for id in &ids {
            batches.push(batch(side, *id)?);
        }
        let indices: Vec<(usize, usize)> = pick
            .iter()
            .map(|(id, row)| (ids.binary_search(id).unwrap_or(0), *row as usize))
            .collect();
        let Some(first) = batches.first() else {
            return Err(EngineError::Internal("a join match without rows".into()));
        };
        for c in 0..first.num_columns() {
            let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(c).as_ref()).collect();
            columns.push(interleave(&arrays, &indices)?);
        }
    }
    Ok(columns)
}

#[cfg(test)]
#[path = "operator_tests.rs"]
mod tests;
