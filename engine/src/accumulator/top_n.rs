//! The accumulator of a per-window top-N (`plan::TopN`): a window aggregation whose one
//! aggregate nests a whole second level, so the existing partial / exchange / final /
//! checkpoint machinery carries it. Per group (the window, with the outer group keys, if
//! any) it keeps either the best raw rows ([`TopRows`]) or every inner group of an inner
//! aggregation ([`InnerGroups`]); both merge across panes and shards in any order. When the
//! window is emitted, [`TopNSpec::explode`] ranks and turns each group into 0..n rows.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, StructArray, TimestampMillisecondArray,
    UInt32Array,
};
use arrow::compute::{concat_batches, lexsort_to_indices, take, SortColumn, SortOptions};
use arrow::datatypes::{Field, Fields, SchemaRef};
use arrow::row::{RowConverter, Rows, SortField};

use super::inner_groups::{InnerGroups, INNER_GROUPS_MAX};
use super::top_rows::{Keep, TopRows, TOP_ROWS_MAX};
use super::{side_of, AccKind, Accumulator, SideValue, Slot, StringStore};
use crate::error::{EngineError, Result};
use crate::expr::{evaluate_predicate, filter_batch};
use crate::group_table::GroupTable;
use crate::plan::{Aggregation, TopN, TopNInput};

/// The state of one group of a top-N.
#[derive(Debug, Clone, PartialEq)]
pub enum TopNState {
    Rows(TopRows),
    Groups(InnerGroups),
}

impl TopNState {
    /// Approximate bytes held.
    pub fn bytes(&self) -> usize {
        match self {
            TopNState::Rows(r) => r.bytes(),
            TopNState::Groups(g) => g.bytes(),
        }
    }

    /// Appends the state to `out` (checkpoints): a tag byte (`R` rows, `G` groups) and the
    /// state's own bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            TopNState::Rows(r) => {
                out.push(b'R');
                r.encode(out);
            }
            TopNState::Groups(g) => {
                out.push(b'G');
                g.encode(out);
            }
        }
    }
}

/// The inner aggregation of `TopNInput::Groups`.
struct InnerSpec {
    aggregation: Aggregation,
    /// None when the inner aggregation has no group keys (one inner group, key `[]`).
    key_converter: Option<RowConverter>,
    accumulators: Vec<Accumulator>,
    /// For each inner aggregate, the column of the prepared struct holding its argument.
    arg_columns: Vec<Option<usize>>,
    /// The inner aggregation's output schema (keys, window bounds, aggregates).
    output_schema: SchemaRef,
}

/// What the accumulator needs to update, merge and emit a top-N.
pub struct TopNSpec {
    pub plan: TopN,
    keep: Keep,
    /// Sort keys of the kept columns, with their directions.
    order_converter: RowConverter,
    /// The kept columns (raw rows only), ascending.
    row_converter: RowConverter,
    inner: Option<InnerSpec>,
}

impl std::fmt::Debug for TopNSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopNSpec")
            .field("plan", &self.plan)
            .finish()
    }
}

fn sort_options(descending: bool) -> SortOptions {
    SortOptions {
        descending,
        nulls_first: !descending,
    }
}

impl TopNSpec {
    pub fn new(plan: &TopN) -> Result<Self> {
        let types = plan.column_types();
        if plan.rows_max == 0 || plan.rows_max > TOP_ROWS_MAX {
            return Err(EngineError::Internal(format!(
                "top-N of {} rows reached the executor (the planner allows 1..={TOP_ROWS_MAX})",
                plan.rows_max
            )));
        }
        let order_fields = plan
            .order
            .iter()
            .map(|&(i, desc)| {
                let t = types.get(i).cloned().ok_or_else(|| {
                    EngineError::Internal(format!("top-N sort key {i} is not a kept column"))
                })?;
                Ok(SortField::new_with_options(t, sort_options(desc)))
            })
            .collect::<Result<Vec<_>>>()?;
        let order_converter = RowConverter::new(order_fields)?;
        let row_converter = RowConverter::new(types.iter().cloned().map(SortField::new).collect())?;
        let inner = match &plan.input {
            TopNInput::Rows(_) => None,
            TopNInput::Groups(aggregation) => Some(InnerSpec::new(aggregation)?),
        };
        Ok(TopNSpec {
            plan: plan.clone(),
            keep: Keep {
                rows_max: plan.rows_max,
                with_ties: plan.with_ties,
            },
            order_converter,
            row_converter,
            inner,
        })
    }

    /// The argument of the accumulator: a struct of the event times, then the kept columns'
    /// values (raw rows), or the inner keys and the inner aggregates' arguments (groups).
    pub fn prepare(&self, batch: &RecordBatch, event_time: &ArrayRef) -> Result<ArrayRef> {
        let mut columns = vec![event_time.clone()];
        match (&self.plan.input, &self.inner) {
            (TopNInput::Rows(exprs), _) => {
                for e in exprs {
                    columns.push(e.evaluate(batch)?);
                }
            }
            (TopNInput::Groups(_), Some(inner)) => {
                for k in &inner.aggregation.group_keys {
                    columns.push(k.evaluate(batch)?);
                }
                for (call, acc) in inner.aggregation.aggregates.iter().zip(&inner.accumulators) {
                    if let Some(arg) = &call.arg {
                        let v = arg.evaluate(batch)?;
                        if let Some(p) = acc.prepare(Some(&v), event_time)? {
                            columns.push(p);
                        }
                    }
                }
            }
            (TopNInput::Groups(_), None) => {
                return Err(EngineError::Internal("top-N without its inner spec".into()))
            }
        }
        let fields: Fields = columns
            .iter()
            .enumerate()
            .map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true))
            .collect();
        Ok(Arc::new(StructArray::try_new(fields, columns, None)?))
    }

    /// Updates the groups `groups[i]` with rows `rows[i]` of the prepared `input`; returns
    /// the bytes the state grew by.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &self,
        slots: &mut [Slot],
        stride: usize,
        index: usize,
        groups: &[u32],
        rows: &[u32],
        input: &ArrayRef,
        strings: &mut StringStore,
    ) -> Result<usize> {
        let st = input
            .as_struct_opt()
            .ok_or_else(|| EngineError::Internal("top-N input is not a struct".into()))?;
        let columns = &st.columns()[1..];
        match &self.inner {
            None => self.update_rows(slots, stride, index, groups, rows, columns, strings),
            Some(inner) => inner.update(slots, stride, index, groups, rows, columns, strings),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn update_rows(
        &self,
        slots: &mut [Slot],
        stride: usize,
        index: usize,
        groups: &[u32],
        rows: &[u32],
        columns: &[ArrayRef],
        strings: &mut StringStore,
    ) -> Result<usize> {
        let order: Vec<ArrayRef> = self
            .plan
            .order
            .iter()
            .map(|&(i, _)| columns[i].clone())
            .collect();
        let keys = self.order_converter.convert_columns(&order)?;
        // Candidates: rows not worse than their group's N-th kept row at the batch start.
        let mut candidates: Vec<(u32, u32)> = Vec::new();
        for (&g, &r) in groups.iter().zip(rows) {
            let s = slots[g as usize * stride + index];
            let threshold = match (s.b > 0).then(|| &strings[s.a as usize]) {
                Some(SideValue::TopN(state)) => match state.as_ref() {
                    TopNState::Rows(t) => t.threshold(self.keep),
                    TopNState::Groups(_) => None,
                },
                _ => None,
            };
            if threshold.is_none_or(|t| keys.row(r as usize).data() <= t) {
                candidates.push((g, r));
            }
        }
        if candidates.is_empty() {
            return Ok(0);
        }
        // Of the candidates, per group, only N and the rows tied with the N-th can be kept.
        candidates.sort_unstable_by(|a, b| {
            (a.0, keys.row(a.1 as usize)).cmp(&(b.0, keys.row(b.1 as usize)))
        });
        let mut kept: Vec<(u32, u32)> = Vec::with_capacity(candidates.len());
        let mut run_start = 0;
        for (i, &(g, r)) in candidates.iter().enumerate() {
            if i > 0 && candidates[i - 1].0 != g {
                run_start = i;
            }
            let rank = i - run_start;
            let n = self.keep.rows_max;
            if rank < n {
                kept.push((g, r));
            } else {
                let nth = candidates[run_start + n - 1].1 as usize;
                if keys.row(r as usize) == keys.row(nth) {
                    kept.push((g, r));
                }
            }
        }
        let indices = UInt32Array::from_iter_values(kept.iter().map(|&(_, r)| r));
        let taken = columns
            .iter()
            .map(|c| take(c.as_ref(), &indices, None))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let encoded = self.row_converter.convert_columns(&taken)?;
        let mut grown = 0;
        for (i, &(g, r)) in kept.iter().enumerate() {
            let init = || SideValue::TopN(Box::new(TopNState::Rows(TopRows::default())));
            let side = side_of(
                &mut slots[g as usize * stride + index],
                strings,
                &mut grown,
                init,
            );
            if let SideValue::TopN(state) = side {
                if let TopNState::Rows(t) = state.as_mut() {
                    let key = keys.row(r as usize);
                    grown += t.offer(self.keep, key.data(), encoded.row(i).data());
                }
            }
        }
        Ok(grown)
    }

    /// Merges `from` into `into` (same variant).
    pub fn merge(&self, into: &mut TopNState, from: &TopNState) {
        match (into, from, &self.inner) {
            (TopNState::Rows(a), TopNState::Rows(b), _) => {
                a.merge(self.keep, b);
            }
            (TopNState::Groups(a), TopNState::Groups(b), Some(inner)) => inner.merge(a, b),
            (a, b, _) => debug_assert!(false, "top-N cannot merge {a:?} with {b:?}"),
        }
    }

    /// Reads a state written by [`TopNState::encode`]; None when the bytes are not one.
    pub fn decode(&self, bytes: &[u8]) -> Option<TopNState> {
        let (&tag, rest) = bytes.split_first()?;
        match (tag, &self.inner) {
            (b'R', None) => TopRows::decode(rest).map(TopNState::Rows),
            (b'G', Some(inner)) => {
                InnerGroups::decode(rest, inner.accumulators.len()).map(TopNState::Groups)
            }
            _ => None,
        }
    }

    /// The output rows of one window: per group, its outer keys (`key_columns`, one row per
    /// group), the window bounds, the kept columns of its best rows, and their numbers.
    pub fn explode(
        &self,
        schema: &SchemaRef,
        key_columns: Vec<ArrayRef>,
        start: i64,
        end: i64,
        groups: &GroupTable,
    ) -> Result<RecordBatch> {
        let mut batches = Vec::with_capacity(groups.len());
        for g in 0..groups.len() {
            let slot = groups.group_slots(g as u32)[0];
            let state = match (slot.b > 0).then(|| &groups.strings[slot.a as usize]) {
                Some(SideValue::TopN(s)) => s.as_ref(),
                _ => continue,
            };
            let kept = match state {
                TopNState::Rows(t) => self.rows_of(t)?,
                TopNState::Groups(i) => match &self.inner {
                    Some(inner) => inner.best(self, i, start, end)?,
                    None => {
                        return Err(EngineError::Internal("top-N without its inner spec".into()))
                    }
                },
            };
            let m = kept.first().map_or(0, |c| c.len());
            if m == 0 {
                continue;
            }
            let repeat = UInt32Array::from_value(g as u32, m);
            let mut columns = key_columns
                .iter()
                .map(|k| take(k.as_ref(), &repeat, None))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            columns.push(Arc::new(TimestampMillisecondArray::from_value(start, m)));
            columns.push(Arc::new(TimestampMillisecondArray::from_value(end, m)));
            columns.extend(kept);
            if self.plan.row_number_name.is_some() {
                columns.push(Arc::new(Int64Array::from_iter_values(1..=m as i64)));
            }
            batches.push(RecordBatch::try_new(schema.clone(), columns)?);
        }
        Ok(concat_batches(schema, &batches)?)
    }

    /// The kept columns of a group's best raw rows, best first.
    fn rows_of(&self, t: &TopRows) -> Result<Vec<ArrayRef>> {
        if t.overflowed {
            return Err(overflow_error(
                "rows tied for the last kept place",
                TOP_ROWS_MAX,
            ));
        }
        let n = match self.keep.with_ties {
            true => t.rows.len(),
            false => t.rows.len().min(self.keep.rows_max),
        };
        let parser = self.row_converter.parser();
        let rows = (0..n).map(|i| parser.parse(t.row(i)));
        Ok(self.row_converter.convert_rows(rows)?)
    }
}

fn overflow_error(what: &str, limit: usize) -> EngineError {
    EngineError::Limit(format!(
        "a window of the per-window top-N holds more than {limit} {what} (the limit of one \
         window); rank by more columns, use smaller windows, or filter the input"
    ))
}

impl InnerSpec {
    fn new(aggregation: &Aggregation) -> Result<Self> {
        let accumulators = aggregation
            .aggregates
            .iter()
            .map(Accumulator::new)
            .collect::<Result<Vec<_>>>()?;
        if let Some(a) = accumulators.iter().find(|a| a.uses_strings()) {
            return Err(EngineError::Internal(format!(
                "inner aggregate {:?} of a top-N keeps side state (the planner refuses it)",
                a.kind
            )));
        }
        let key_converter = match aggregation.group_keys.is_empty() {
            true => None,
            false => Some(RowConverter::new(
                aggregation
                    .group_keys
                    .iter()
                    .map(|k| SortField::new(k.data_type()))
                    .collect(),
            )?),
        };
        let mut next = aggregation.group_keys.len();
        let arg_columns = aggregation
            .aggregates
            .iter()
            .map(|c| {
                c.arg.as_ref().map(|_| {
                    next += 1;
                    next - 1
                })
            })
            .collect();
        Ok(InnerSpec {
            output_schema: aggregation.output_schema(),
            aggregation: aggregation.clone(),
            key_converter,
            accumulators,
            arg_columns,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn update(
        &self,
        slots: &mut [Slot],
        stride: usize,
        index: usize,
        groups: &[u32],
        rows: &[u32],
        columns: &[ArrayRef],
        strings: &mut StringStore,
    ) -> Result<usize> {
        let key_count = self.aggregation.group_keys.len();
        let keys: Option<Rows> = match &self.key_converter {
            Some(c) => Some(c.convert_columns(&columns[..key_count])?),
            None => None,
        };
        let inner_stride = self.accumulators.len();
        let mut no_side = StringStore::new();
        let mut grown = 0;
        let mut ids: Vec<u32> = Vec::with_capacity(rows.len());
        let mut run_rows: Vec<u32> = Vec::with_capacity(rows.len());
        let mut at = 0;
        while at < groups.len() {
            // A run of rows of one outer group (a keyless top-N has one).
            let g = groups[at];
            let run_end = groups[at..]
                .iter()
                .position(|&x| x != g)
                .map_or(groups.len(), |p| at + p);
            let init =
                || SideValue::TopN(Box::new(TopNState::Groups(InnerGroups::new(inner_stride))));
            let side = side_of(
                &mut slots[g as usize * stride + index],
                strings,
                &mut grown,
                init,
            );
            let SideValue::TopN(state) = side else {
                return Err(EngineError::Internal(
                    "top-N slot holds another state".into(),
                ));
            };
            let TopNState::Groups(inner) = state.as_mut() else {
                return Err(EngineError::Internal("top-N slot holds raw rows".into()));
            };
            ids.clear();
            run_rows.clear();
            for &r in &rows[at..run_end] {
                let key: &[u8] = keys.as_ref().map_or(&[], |k| k.row(r as usize).data());
                let (id, bytes) = inner.find_or_insert(key);
                grown += bytes;
                if let Some(id) = id {
                    ids.push(id);
                    run_rows.push(r);
                }
            }
            for (i, acc) in self.accumulators.iter().enumerate() {
                let arg = self.arg_columns[i].map(|c| &columns[c]);
                acc.update(
                    &mut inner.slots,
                    inner_stride,
                    i,
                    &ids,
                    &run_rows,
                    arg,
                    &mut no_side,
                );
            }
            at = run_end;
        }
        Ok(grown)
    }

    fn merge(&self, into: &mut InnerGroups, from: &InnerGroups) {
        let stride = self.accumulators.len();
        let mut no_side = StringStore::new();
        into.overflowed |= from.overflowed;
        for g in 0..from.len() {
            let (Some(id), _) = into.find_or_insert(from.key(g)) else {
                continue;
            };
            for (i, acc) in self.accumulators.iter().enumerate() {
                let f = from.slots[g * stride + i];
                acc.merge(
                    &mut into.slots[id as usize * stride + i],
                    f,
                    None,
                    &mut no_side,
                );
            }
        }
    }

    /// The kept columns of the best inner groups of one window, best first.
    fn best(
        &self,
        spec: &TopNSpec,
        inner: &InnerGroups,
        start: i64,
        end: i64,
    ) -> Result<Vec<ArrayRef>> {
        if inner.overflowed {
            return Err(overflow_error("inner groups", INNER_GROUPS_MAX));
        }
        let n = inner.len();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.output_schema.fields().len());
        if let Some(conv) = &self.key_converter {
            let parser = conv.parser();
            columns.extend(conv.convert_rows((0..n).map(|g| parser.parse(inner.key(g))))?);
        }
        columns.push(Arc::new(TimestampMillisecondArray::from_value(start, n)));
        columns.push(Arc::new(TimestampMillisecondArray::from_value(end, n)));
        let stride = self.accumulators.len();
        for (i, acc) in self.accumulators.iter().enumerate() {
            columns.push(acc.finish(&inner.slots, stride, i, 0..n as u32, &StringStore::new())?);
        }
        let mut batch = RecordBatch::try_new(self.output_schema.clone(), columns)?;
        if let Some(having) = &self.aggregation.having {
            let mask = evaluate_predicate(having, &batch)?;
            batch = filter_batch(&batch, &mask)?;
        }
        // The kept columns: the inner output without the window bounds.
        let key_count = self.aggregation.group_keys.len();
        let mut kept: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != key_count && *i != key_count + 1)
            .map(|(_, c)| c.clone())
            .collect();
        if batch.num_rows() == 0 {
            return Ok(kept);
        }
        // Only rows not worse than the N-th by the sort keys can be kept: select them in
        // linear time, then sort just those.
        let n = batch.num_rows();
        let limit = spec.keep.rows_max;
        if n > limit {
            let order: Vec<ArrayRef> = spec
                .plan
                .order
                .iter()
                .map(|&(i, _)| kept[i].clone())
                .collect();
            let keys = spec.order_converter.convert_columns(&order)?;
            let mut idx: Vec<u32> = (0..n as u32).collect();
            idx.select_nth_unstable_by(limit - 1, |a, b| {
                keys.row(*a as usize).cmp(&keys.row(*b as usize))
            });
            let nth = keys.row(idx[limit - 1] as usize);
            let candidates = UInt32Array::from_iter_values(
                (0..n as u32).filter(|&i| keys.row(i as usize) <= nth),
            );
            kept = kept
                .iter()
                .map(|c| take(c.as_ref(), &candidates, None))
                .collect::<std::result::Result<_, _>>()?;
        }
        let mut sort: Vec<SortColumn> = spec
            .plan
            .order
            .iter()
            .map(|&(i, desc)| SortColumn {
                values: kept[i].clone(),
                options: Some(sort_options(desc)),
            })
            .collect();
        sort.extend(kept.iter().map(|c| SortColumn {
            values: c.clone(),
            options: Some(SortOptions::default()),
        }));
        let sorted = lexsort_to_indices(&sort, None)?;
        let mut take_n = spec.keep.rows_max.min(sorted.len());
        if spec.keep.with_ties && take_n < sorted.len() {
            let order: Vec<ArrayRef> = spec
                .plan
                .order
                .iter()
                .map(|&(i, _)| take(kept[i].as_ref(), &sorted, None))
                .collect::<std::result::Result<_, _>>()?;
            let keys = spec.order_converter.convert_columns(&order)?;
            while take_n < sorted.len() && keys.row(take_n) == keys.row(take_n - 1) {
                take_n += 1;
            }
        }
        let best = sorted.slice(0, take_n);
        Ok(kept
            .iter()
            .map(|c| take(c.as_ref(), &best, None))
            .collect::<std::result::Result<_, _>>()?)
    }
}

/// Whether `kind` may be an inner aggregate of a top-N (its state is the slot itself).
pub fn inner_aggregate_allowed(acc: &Accumulator) -> bool {
    !acc.uses_strings() && acc.kind != AccKind::TopN
}

#[cfg(test)]
#[path = "top_n_tests.rs"]
mod tests;
