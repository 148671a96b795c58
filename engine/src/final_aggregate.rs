//! The final stage of a windowed aggregate on the shard that owns a set of keys: merges the
//! pane partials of every shard, and once every shard's watermark has passed a window's end,
//! assembles that window from its panes and emits it.
//!
//! State is kept by *pane* (see `window_assigner.rs`): a partial from a shard is one pane
//! (TUMBLE: one window; HOP: one slide; CUMULATE: one step), merged into the pane here. When
//! the global watermark passes a window end, the one window ending there is assembled by
//! merging the groups of its panes with `Accumulator::merge` (for TUMBLE, and whenever a
//! window is exactly one pane no other window needs, the pane is handed over whole). A pane is
//! freed once the last window holding it has been emitted; a window none of whose panes holds
//! a group emits nothing.
//!
//! Invariant: a window is emitted here at most once; a partial that arrives for a pane whose
//! windows were all emitted is counted and dropped, never merged, and a pane merged after some
//! of its windows were emitted only reaches the windows not emitted yet.
//! Invariant (checkpoints): every group changed in a held pane is marked dirty, and a freed
//! pane that had chunks in the state store is recorded in `removed`.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::checkpoint::chunk_codec::{save_all_pending, save_chunk, KIND_FINAL};
use crate::exchange::PartialWindow;
use crate::group_table::{GroupTable, GROUP_CHUNK};
use crate::watermark::WATERMARK_MIN;
use crate::window_assigner::WindowAssigner;
use crate::window_operator::{AggregateLayout, FiredWindow};

#[derive(Debug, Clone, Copy)]
struct PeerClock {
    watermark: i64,
    idle: bool,
}

/// A window complete on every shard, with when it became so.
pub struct ClosedWindow {
    pub window: FiredWindow,
    /// When the input that completed the window arrived (start of the result latency).
    pub closed_at: Instant,
}

/// Final window state of one shard for the keys it owns.
pub struct FinalAggregate {
    assigner: WindowAssigner,
    /// Panes by start, each held until the last window holding it has been emitted.
    panes: BTreeMap<i64, FiredWindow>,
    peers: Vec<PeerClock>,
    /// The global watermark up to which windows have been emitted.
    fired_up_to: i64,
    /// Partial groups that arrived after every window of their pane had been emitted
    /// (dropped).
    pub late_partial_groups: u64,
    /// After recovery: per shard of the run that wrote the checkpoint, the watermark up to
    /// which it had emitted windows. A group whose old owner had emitted a window is left out
    /// of that window (its result is already published), whatever the new shards' watermarks
    /// say; a group whose old owner had emitted every window of its pane is dropped.
    restored_floors: Vec<i64>,
    /// Panes freed since the last checkpoint that had chunks in the state store.
    removed: Vec<(i64, i64, u32)>,
    /// Chunks of the snapshot in progress serialized before a change or a removal (key,
    /// value), for the checkpoint to collect.
    saved: Vec<(Vec<u8>, Vec<u8>)>,
}

impl FinalAggregate {
    /// The final stage of a query on `shards` shards whose windows `assigner` describes.
    pub fn new(shards: usize, assigner: WindowAssigner) -> Self {
        FinalAggregate {
            assigner,
            panes: BTreeMap::new(),
            peers: vec![
                PeerClock {
                    watermark: WATERMARK_MIN,
                    idle: false,
                };
                shards
            ],
            fired_up_to: WATERMARK_MIN,
            late_partial_groups: 0,
            restored_floors: Vec::new(),
            removed: Vec::new(),
            saved: Vec::new(),
        }
    }

    /// The watermark every shard has passed (non-idle shards only; all idle holds it).
    pub fn global_watermark(&self) -> i64 {
        self.fired_up_to
    }

    /// Merges a partial pane of some shard.
    pub fn merge(&mut self, layout: &AggregateLayout, partial: PartialWindow) {
        let last_end = self.assigner.last_window_end(partial.start);
        if last_end <= self.fired_up_to {
            self.late_partial_groups += partial.len() as u64;
            return;
        }
        let stride = layout.stride();
        let pane_end = self.assigner.pane_end(partial.start);
        let w = self
            .panes
            .entry(partial.start)
            .or_insert_with(|| FiredWindow {
                start: partial.start,
                end: pane_end,
                groups: GroupTable::new(stride),
                bytes: 0,
            });
        for i in 0..partial.len() {
            if !self.restored_floors.is_empty() {
                let old_owner =
                    AggregateLayout::owner(partial.hashes[i], self.restored_floors.len());
                if last_end <= self.restored_floors[old_owner] {
                    self.late_partial_groups += 1;
                    continue;
                }
            }
            let (g, new) = w.groups.find_or_insert(partial.key(i), partial.hashes[i]);
            // Copy before write: a chunk of the snapshot in progress is saved first.
            let chunk = g / GROUP_CHUNK;
            if w.groups.take_pending(chunk) {
                save_chunk(layout, KIND_FINAL, w, chunk, &mut self.saved);
            }
            w.groups.mark_dirty(g);
            if new {
                w.bytes += partial.key(i).len() + stride * 16 + 40;
            }
            let base = g as usize * stride;
            for (a, acc) in layout.accumulators.iter().enumerate() {
                let from = partial.slots[i * stride + a];
                let from_str =
                    (acc.uses_strings() && from.b > 0).then(|| &partial.strings[from.a as usize]);
                let table = &mut w.groups;
                acc.merge(
                    &mut table.slots[base + a],
                    from,
                    from_str,
                    &mut table.strings,
                );
            }
        }
    }

    /// Adds a locally fired pane directly (the owner of all its keys is this shard).
    pub fn merge_local(&mut self, layout: &AggregateLayout, window: FiredWindow) {
        if self.assigner.last_window_end(window.start) <= self.fired_up_to {
            self.late_partial_groups += window.groups.len() as u64;
            return;
        }
        let mut window = window;
        let no_floors = self.restored_floors.is_empty();
        let window = match self.panes.entry(window.start) {
            std::collections::btree_map::Entry::Vacant(v) if no_floors => {
                // Its chunks in the store (if any) were the open pane's; the final stage
                // writes its own.
                window.groups.persisted_chunks = 0;
                window.groups.mark_all_dirty();
                v.insert(window);
                return;
            }
            _ => window,
        };
        // Rare: partials of other shards (or an earlier firing of this pane) came first.
        // Merge group by group.
        let mut p = PartialWindow {
            start: window.start,
            end: window.end,
            ..PartialWindow::default()
        };
        for (owner, part) in crate::exchange::split_by_owner(layout, &window, 1) {
            debug_assert_eq!(owner, 0);
            p = part;
        }
        self.merge(layout, p);
    }

    /// Records a shard's watermark and returns the windows it completes, by end.
    pub fn on_watermark(
        &mut self,
        layout: &AggregateLayout,
        from: usize,
        watermark: i64,
        idle: bool,
        at: Instant,
        out: &mut Vec<ClosedWindow>,
    ) {
        let p = &mut self.peers[from];
        assert!(
            watermark >= p.watermark,
            "watermark of shard {from} moved back from {} to {watermark}",
            p.watermark
        );
        *p = PeerClock { watermark, idle };
        let mut min = i64::MAX;
        let mut any_active = false;
        for p in &self.peers {
            if !p.idle {
                any_active = true;
                min = min.min(p.watermark);
            }
        }
        if !any_active || min <= self.fired_up_to {
            return;
        }
        // This message moved the global watermark: the input behind it closed the windows.
        let emitted_up_to = self.fired_up_to;
        self.fired_up_to = min;
        self.emit_windows(layout, emitted_up_to, min, at, out);
        if !self.restored_floors.is_empty() {
            self.prune_floors();
        }
    }

    /// Emits, by end, every window ending in `(after, up_to]` that holds a group, and frees
    /// the panes all of whose windows are then emitted.
    fn emit_windows(
        &mut self,
        layout: &AggregateLayout,
        after: i64,
        up_to: i64,
        closed_at: Instant,
        out: &mut Vec<ClosedWindow>,
    ) {
        let mut cursor = after;
        loop {
            self.free_panes(layout, cursor);
            let Some(first) = self.panes.values().next() else {
                break;
            };
            // The first window end after the cursor that holds a pane: the first pane's own
            // end if it has not passed, else the next boundary (panes later in time have no
            // earlier window ends).
            let end = if first.end > cursor {
                first.end
            } else {
                match self.assigner.next_window_end_after(cursor) {
                    Some(end) => end,
                    None => break,
                }
            };
            if end > up_to || end <= cursor {
                break;
            }
            let start = self.assigner.window_start_of_end(end);
            if self.assigner.one_pane_per_window() && self.restored_floors.is_empty() {
                // The window is its one pane and no other window needs it: hand it over.
                if let Some(e) = self.panes.first_entry() {
                    debug_assert_eq!((e.get().start, e.get().end), (start, end));
                    let mut window = e.remove();
                    save_all_pending(layout, KIND_FINAL, &mut window, &mut self.saved);
                    self.note_removed(&window);
                    if !window.groups.is_empty() {
                        out.push(ClosedWindow { window, closed_at });
                    }
                }
            } else {
                let window = self.assemble(layout, start, end);
                if !window.groups.is_empty() {
                    out.push(ClosedWindow { window, closed_at });
                }
            }
            cursor = end;
        }
        self.free_panes(layout, up_to);
    }

    /// The window `[start, end)`: the groups of its panes merged (leaving out, after
    /// recovery, groups whose old owner had already emitted it).
    fn assemble(&self, layout: &AggregateLayout, start: i64, end: i64) -> FiredWindow {
        let stride = layout.stride();
        let mut table = GroupTable::new(stride);
        let mut bytes = 0;
        let floors = &self.restored_floors;
        for pane in self.panes.range(start..end).map(|(_, p)| p) {
            let from = &pane.groups;
            for g in 0..from.len() as u32 {
                let hash = from.hash(g);
                if !floors.is_empty() && end <= floors[AggregateLayout::owner(hash, floors.len())] {
                    continue;
                }
                let key = from.key(g);
                let (t, new) = table.find_or_insert(key, hash);
                if new {
                    bytes += key.len() + stride * 16 + 40;
                }
                let base = t as usize * stride;
                for (a, (acc, slot)) in layout
                    .accumulators
                    .iter()
                    .zip(from.group_slots(g))
                    .enumerate()
                {
                    let from_str =
                        (acc.uses_strings() && slot.b > 0).then(|| &from.strings[slot.a as usize]);
                    acc.merge(
                        &mut table.slots[base + a],
                        *slot,
                        from_str,
                        &mut table.strings,
                    );
                }
            }
        }
        FiredWindow {
            start,
            end,
            groups: table,
            bytes,
        }
    }

    /// Frees, oldest first, the panes whose last window ends at or before `emitted_up_to`
    /// (the last window end grows with the pane start, so they are the first ones).
    fn free_panes(&mut self, layout: &AggregateLayout, emitted_up_to: i64) {
        while let Some(e) = self.panes.first_entry() {
            if self.assigner.last_window_end(e.get().start) > emitted_up_to {
                break;
            }
            let mut pane = e.remove();
            save_all_pending(layout, KIND_FINAL, &mut pane, &mut self.saved);
            self.note_removed(&pane);
        }
    }

    fn note_removed(&mut self, pane: &FiredWindow) {
        if pane.groups.persisted_chunks > 0 {
            self.removed
                .push((pane.start, pane.end, pane.groups.persisted_chunks));
        }
    }

    /// Panes held (for TUMBLE, windows).
    pub fn open_windows(&self) -> usize {
        self.panes.len()
    }

    /// The panes held, oldest first (for checkpoints).
    pub fn windows_mut(&mut self) -> impl Iterator<Item = &mut FiredWindow> {
        self.panes.values_mut()
    }

    /// Chunks of the snapshot in progress saved since the last call (key, value).
    pub fn take_saved(&mut self) -> Vec<(Vec<u8>, Vec<u8>)> {
        std::mem::take(&mut self.saved)
    }

    /// Panes freed since the last call that had chunks in the state store.
    pub fn take_removed(&mut self) -> Vec<(i64, i64, u32)> {
        std::mem::take(&mut self.removed)
    }

    /// After recovery: the emitted-up-to watermark of every shard of the run that wrote the
    /// checkpoint (see `restored_floors`). Call after merging the restored state.
    pub fn set_restored_floors(&mut self, floors: Vec<i64>) {
        self.restored_floors = floors;
    }

    /// Forgets the restored floors once the global watermark has passed all of them.
    fn prune_floors(&mut self) {
        if self.restored_floors.iter().all(|&f| f <= self.fired_up_to) {
            self.restored_floors.clear();
        }
    }
}

#[cfg(test)]
#[path = "final_aggregate_tests.rs"]
mod tests;
