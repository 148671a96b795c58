//! Fired sessions to aggregation output batches (keys, `window_start` = the first event,
//! `window_end` = the last event + gap, aggregates), through the same
//! `AggregateLayout::to_batch` as the pane windows, with per-row bounds.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, TimestampMillisecondArray};

use crate::error::{EngineError, Result};
use crate::group_table::GroupTable;
use crate::session::session_stage::FiredSession;
use crate::window_operator::AggregateLayout;

/// The output batches of `fired` (usually one; one more for each further session of a key
/// that fired at the same watermark, since a batch holds a key once).
pub fn sessions_to_batches(
    layout: &AggregateLayout,
    fired: &[FiredSession],
) -> Result<Vec<RecordBatch>> {
    let stride = layout.stride();
    // Rounds: the groups of one output batch and their bounds.
    let mut rounds: Vec<(GroupTable, Vec<i64>, Vec<i64>)> = Vec::new();
    for f in fired {
        let mut placed = false;
        for (table, starts, ends) in rounds.iter_mut() {
            let (g, new) = table.find_or_insert(&f.key, f.hash);
            if !new {
                continue;
            }
            fill(layout, table, g, f);
            starts.push(f.session.start);
            ends.push(f.session.end);
            placed = true;
            break;
        }
        if !placed {
            let mut table = GroupTable::new(stride);
            let (g, _) = table.find_or_insert(&f.key, f.hash);
            fill(layout, &mut table, g, f);
            rounds.push((table, vec![f.session.start], vec![f.session.end]));
        }
    }
    let at = layout.aggregation.group_keys.len();
    rounds
        .into_iter()
        .map(|(table, starts, ends)| {
            let batch = layout.to_batch(0, 0, &table)?;
            let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
            columns[at] = Arc::new(TimestampMillisecondArray::from(starts));
            columns[at + 1] = Arc::new(TimestampMillisecondArray::from(ends));
            RecordBatch::try_new(batch.schema(), columns)
                .map_err(|e| EngineError::Internal(format!("session output batch: {e}")))
        })
        .collect()
}

/// Copies a fired session's accumulators into group `g` (new, so empty) of `table`.
fn fill(layout: &AggregateLayout, table: &mut GroupTable, g: u32, f: &FiredSession) {
    let base = g as usize * layout.stride();
    for (a, (acc, from)) in layout
        .accumulators
        .iter()
        .zip(f.session.slots.iter())
        .enumerate()
    {
        let side = (acc.uses_strings() && from.b > 0).then(|| &f.session.strings[from.a as usize]);
        acc.merge(&mut table.slots[base + a], *from, side, &mut table.strings);
    }
}
