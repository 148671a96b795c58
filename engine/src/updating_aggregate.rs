//! The updating aggregate: a `GROUP BY` without a window over an append-only input whose
//! rows are final (a ranked or aggregating join's results; Nexmark q4's `AVG(Q.final) ...
//! GROUP BY Q.category`). One row per key, emitted again each time the key changes, as
//! Flink's group aggregate emits its changelog.
//!
//! ```text
//! every shard: its input rows (the join results of the keys it owns for the join)
//!                -> `add`: partial aggregates per group key since the last hand-over
//!                -> `take_partials` (once per turn of the shard loop): split by the owner
//!                   of the group key (hash of the key, as for windows) and sent as
//!                   `ExchangeMsg::Partial` (the own part is merged directly)
//! owner:       `merge`: each partial merged into the key's totals (`Accumulator::merge`)
//!                -> per merged partial, each key it changed once: "+I" (a new key), or
//!                   "-U" (the row emitted before) then "+U" (the new row); a key whose
//!                   totals did not change emits nothing
//! ```
//!
//! **Emission**: per merged partial, that is per batch of input (one partial per shard and
//! turn of its loop), not per watermark: the last row a sink received for a key is the
//! key's total so far, and once every input row is merged (the end of a bounded input) it
//! is the final total. A key's rows all come from its owner, in order.
//! **Upsert form**: with `update_before` false (an `upsert-kafka` sink) no "-U" is emitted.
//! **Invariant:** a key's totals live on one shard (its owner); a shard's partial is never
//! emitted as a total. The input is append-only, so the slot-only aggregates (COUNT, SUM,
//! AVG, MIN, MAX over numbers) merge exactly and nothing is retracted.
//! **Limits**: keys held (totals and the pending partial) count against
//! `state_groups_max`, their bytes against `state_bytes_max`; past either the job fails
//! naming the limit.
//! **Checkpoints**: not supported yet: the only input is a join of two streams, whose
//! state is not checkpointed, and such a job refuses checkpoints at start.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch};
use arrow::row::Rows;

use crate::accumulator::{inner_aggregate_allowed, Slot, StringStore};
use crate::error::{EngineError, Result};
use crate::exchange::{split_by_owner, PartialWindow};
use crate::group_table::GroupTable;
use crate::limits::Limits;
use crate::row_kind::RowKind;
use crate::window_operator::{AggregateLayout, FiredWindow};

/// What an updating aggregate did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UpdatingStats {
    /// Input rows aggregated on this shard.
    pub rows_in: u64,
    /// Keys emitted for the first time ("+I").
    pub keys_inserted: u64,
    /// Key updates emitted ("+U", each after its "-U" unless in upsert form).
    pub keys_updated: u64,
}

/// The rows one merged partial emits, in order: "-U" rows, "+U" rows, "+I" rows.
pub type Changes = Vec<(RowKind, RecordBatch)>;

/// The updating aggregate of one shard: partials of its own input, totals of its keys.
pub struct UpdatingAggregate {
    layout: Arc<AggregateLayout>,
    shard: usize,
    shards: usize,
    update_before: bool,
    /// Partial aggregates of this shard's input since the last hand-over (any owner).
    pending: GroupTable,
    /// The totals of the keys this shard owns.
    totals: GroupTable,
    groups_max: usize,
    bytes_max: usize,
    /// Unused by the slot-only aggregates (no side state, no event time).
    strings: StringStore,
    no_time: ArrayRef,
    key_rows: Option<Rows>,
    hashes: Vec<u64>,
    groups: Vec<u32>,
    rows: Vec<u32>,
    pub stats: UpdatingStats,
}

impl UpdatingAggregate {
    /// The stage of shard `shard` of `shards` for `layout` (an aggregation without a
    /// window of slot-only aggregates); `update_before`: emit "-U" rows.
    pub fn new(
        layout: Arc<AggregateLayout>,
        shard: usize,
        shards: usize,
        update_before: bool,
        limits: &Limits,
    ) -> Result<Self> {
        let agg = &layout.aggregation;
        if agg.window.is_some() || agg.top_n.is_some() {
            return Err(EngineError::Internal(
                "an updating aggregate over a windowed aggregation".into(),
            ));
        }
        if let Some(a) = layout
            .accumulators
            .iter()
            .find(|a| !inner_aggregate_allowed(a))
        {
            return Err(EngineError::Internal(format!(
                "aggregate {:?} with side state reached an updating aggregate",
                a.kind
            )));
        }
        let stride = layout.stride();
        Ok(UpdatingAggregate {
            key_rows: layout.empty_key_rows(),
            layout,
            shard,
            shards,
            update_before,
            pending: GroupTable::new(stride),
            totals: GroupTable::new(stride),
            groups_max: limits.state_groups_max,
            bytes_max: limits.state_bytes_max,
            strings: StringStore::new(),
            no_time: Arc::new(Int64Array::from(Vec::<i64>::new())),
            hashes: Vec::new(),
            groups: Vec::new(),
            rows: Vec::new(),
            stats: UpdatingStats::default(),
        })
    }

    /// Keys whose totals this shard holds.
    pub fn keys(&self) -> usize {
        self.totals.len()
    }

    /// Aggregates input rows (the aggregation's input schema) into this shard's partials.
    pub fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        self.stats.rows_in += n as u64;
        let layout = self.layout.clone();
        layout.encode_keys(batch, &mut self.key_rows, &mut self.hashes)?;
        self.groups.clear();
        for (r, &hash) in self.hashes.iter().enumerate() {
            let key: &[u8] = match &self.key_rows {
                Some(rows) => rows.row(r).data(),
                None => &[],
            };
            self.groups.push(self.pending.find_or_insert(key, hash).0);
        }
        self.rows.clear();
        self.rows.extend(0..n as u32);
        let stride = layout.stride();
        for (i, (call, acc)) in layout
            .aggregation
            .aggregates
            .iter()
            .zip(&layout.accumulators)
            .enumerate()
        {
            let arg = acc.prepare_batch(call, batch, &self.no_time)?;
            acc.update(
                &mut self.pending.slots,
                stride,
                i,
                &self.groups,
                &self.rows,
                arg.as_ref(),
                &mut self.strings,
            );
        }
        self.check_limits()
    }

    /// The partials of this shard's input since the last call, one per owning shard (the
    /// own one included); empty when there was no input.
    pub fn take_partials(&mut self) -> Vec<(usize, PartialWindow)> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        let groups = std::mem::replace(&mut self.pending, GroupTable::new(self.layout.stride()));
        let window = FiredWindow {
            start: 0,
            end: 0,
            groups,
            bytes: 0,
        };
        split_by_owner(&self.layout, &window, self.shards)
    }

    /// Merges a partial of keys this shard owns into their totals; returns the rows to
    /// emit (see the module docs).
    pub fn merge(&mut self, partial: &PartialWindow) -> Result<Changes> {
        let stride = self.layout.stride();
        let mut inserted: Vec<u32> = Vec::new();
        let mut updated: Vec<u32> = Vec::new();
        let mut before: Vec<Slot> = Vec::new();
        for i in 0..partial.len() {
            let hash = partial.hashes[i];
            if AggregateLayout::owner(hash, self.shards) != self.shard {
                return Err(EngineError::Internal(format!(
                    "shard {} got a partial of a key shard {} owns",
                    self.shard,
                    AggregateLayout::owner(hash, self.shards)
                )));
            }
            let (g, new) = self.totals.find_or_insert(partial.key(i), hash);
            let base = g as usize * stride;
            let old: Vec<Slot> = self.totals.slots[base..base + stride].to_vec();
            for (a, acc) in self.layout.accumulators.iter().enumerate() {
                let from = partial.slots[i * stride + a];
                acc.merge(
                    &mut self.totals.slots[base + a],
                    from,
                    None,
                    &mut self.strings,
                );
            }
            if new {
                inserted.push(g);
            } else if old[..] != self.totals.slots[base..base + stride] {
                updated.push(g);
                before.extend_from_slice(&old);
            }
        }
        self.check_limits()?;
        let mut changes = Changes::new();
        if !updated.is_empty() {
            let keys: Vec<&[u8]> = updated.iter().map(|&g| self.totals.key(g)).collect();
            if self.update_before {
                let batch = self.layout.keyed_batch(&keys, &before, &self.strings)?;
                changes.push((RowKind::UpdateBefore, batch));
            }
            let after = self.slots_of(&updated);
            let batch = self.layout.keyed_batch(&keys, &after, &self.strings)?;
            changes.push((RowKind::UpdateAfter, batch));
            self.stats.keys_updated += updated.len() as u64;
        }
        if !inserted.is_empty() {
            let keys: Vec<&[u8]> = inserted.iter().map(|&g| self.totals.key(g)).collect();
            let slots = self.slots_of(&inserted);
            let batch = self.layout.keyed_batch(&keys, &slots, &self.strings)?;
            changes.push((RowKind::Insert, batch));
            self.stats.keys_inserted += inserted.len() as u64;
        }
        Ok(changes)
    }

    /// The slots of `groups` of the totals, back to back.
    fn slots_of(&self, groups: &[u32]) -> Vec<Slot> {
        groups
            .iter()
            .flat_map(|&g| self.totals.group_slots(g).iter().copied())
            .collect()
    }

    fn check_limits(&self) -> Result<()> {
        let keys = self.totals.len() + self.pending.len();
        if keys > self.groups_max {
            return Err(EngineError::Limit(format!(
                "the updating aggregate (GROUP BY without a window) holds {keys} keys on shard {}, over state_groups_max = {}; raise it in the tuning profile ([limits] state_groups_max) or group by fewer distinct keys",
                self.shard, self.groups_max
            )));
        }
        let bytes = self.totals.bytes() + self.pending.bytes();
        if bytes > self.bytes_max {
            return Err(EngineError::Limit(format!(
                "the updating aggregate (GROUP BY without a window) holds {bytes} bytes on shard {}, over state_bytes_max = {}; raise it in the tuning profile ([limits] state_bytes_max) or group by fewer distinct keys",
                self.shard, self.bytes_max
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "updating_aggregate_tests.rs"]
mod tests;
