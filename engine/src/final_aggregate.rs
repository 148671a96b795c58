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
//! Invariant: a window is emitted here at most once with row kind "+I"; a partial that arrives
//! for a pane whose windows were all emitted more than the allowed lateness ago is counted and
//! dropped, never merged. Without lateness a pane merged after some of its windows were
//! emitted only reaches the windows not emitted yet.
//!
//! Allowed lateness (`lateness.rs`): a pane is kept until the watermark passes its last
//! window's end plus the lateness. A partial merged into a pane with windows already emitted
//! (and within the lateness) notes the changed keys of those windows; the next watermark
//! message from any shard emits them again, the changed groups only, with row kind "+U"
//! (coalesced: one update per window and key per watermark message). After recovery, every
//! group of a window its old owner had emitted, still within the lateness, is emitted once
//! more as "+U" (updates merged before the cut but not yet emitted are not in the checkpoint);
//! the restored floors still keep such groups out of the window's "+I".
//! Invariant (checkpoints): every group changed in a held pane is marked dirty, and a freed
//! pane that had chunks in the state store is recorded in `removed`.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::checkpoint::chunk_codec::{save_all_pending, save_chunk, KIND_FINAL};
use crate::exchange::PartialWindow;
use crate::group_table::{GroupTable, GROUP_CHUNK};
use crate::lateness::{too_late, updatable, PendingUpdates};
use crate::row_kind::RowKind;
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
    /// "+I" for a window's first emission, "+U" for an update of an emitted window.
    pub kind: RowKind,
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
    /// The source table's allowed lateness (0: a window is final when emitted).
    allowed_lateness_ms: i64,
    /// Emitted windows changed by late partials, to emit again as "+U".
    updates: PendingUpdates,
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
            allowed_lateness_ms: 0,
            updates: PendingUpdates::default(),
        }
    }

    /// Keeps windows updatable for `allowed_lateness_ms` after they are emitted (see the
    /// module docs). Call before any merge.
    pub fn set_allowed_lateness(&mut self, allowed_lateness_ms: i64) {
        assert!(
            allowed_lateness_ms >= 0,
            "the planner refuses a negative lateness"
        );
        self.allowed_lateness_ms = allowed_lateness_ms;
    }

    /// Whether window `end` was already emitted for a group with this hash (here, or by its
    /// old owner before a recovery).
    fn emitted_for(&self, end: i64, hash: u64) -> bool {
        end <= self.fired_up_to
            || (!self.restored_floors.is_empty()
                && end
                    <= self.restored_floors
                        [AggregateLayout::owner(hash, self.restored_floors.len())])
    }

    /// Whether a group with this hash in a pane whose last window ends at `last_end` is
    /// dropped because its old owner had emitted that window more than the lateness ago.
    fn dropped_by_floor(&self, last_end: i64, hash: u64) -> bool {
        let floors = &self.restored_floors;
        !floors.is_empty()
            && too_late(
                last_end,
                floors[AggregateLayout::owner(hash, floors.len())],
                self.allowed_lateness_ms,
            )
    }

    /// Notes the emitted windows of the pane `pane_start` that the group `key` changes.
    fn note_updates(&mut self, pane_start: i64, key: &[u8], hash: u64) {
        let last = self.assigner.last_window_end(pane_start);
        let mut end = self.assigner.pane_end(pane_start);
        // The watermark that emitted the group's windows (after recovery: its old owner's,
        // until this stage's own passes it).
        let floors = &self.restored_floors;
        let emitted_up_to = if floors.is_empty() {
            self.fired_up_to
        } else {
            self.fired_up_to
                .max(floors[AggregateLayout::owner(hash, floors.len())])
        };
        while end <= last {
            if !self.emitted_for(end, hash) {
                // Later windows of the pane are not emitted either.
                break;
            }
            if updatable(end, emitted_up_to, self.allowed_lateness_ms) {
                self.updates.note(end, key);
            }
            match end.checked_add(self.assigner.pane_ms()) {
                Some(next) => end = next,
                None => break,
            }
        }
    }

    /// The watermark every shard has passed (non-idle shards only; all idle holds it).
    pub fn global_watermark(&self) -> i64 {
        self.fired_up_to
    }

    /// Merges a partial pane of some shard.
    pub fn merge(&mut self, layout: &AggregateLayout, partial: PartialWindow) {
        let last_end = self.assigner.last_window_end(partial.start);
        let lateness = self.allowed_lateness_ms;
        if too_late(last_end, self.fired_up_to, lateness) {
            self.late_partial_groups += partial.len() as u64;
            return;
        }
        let stride = layout.stride();
        let pane_end = self.assigner.pane_end(partial.start);
        // Whether some window of the pane may have been emitted already (then the groups
        // merged are updates of it).
        let may_update =
            lateness > 0 && (pane_end <= self.fired_up_to || !self.restored_floors.is_empty());
        if may_update {
            for i in 0..partial.len() {
                if !self.dropped_by_floor(last_end, partial.hashes[i]) {
                    self.note_updates(partial.start, partial.key(i), partial.hashes[i]);
                }
            }
        }
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
                if too_late(last_end, self.restored_floors[old_owner], lateness) {
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
        let last_end = self.assigner.last_window_end(window.start);
        if too_late(last_end, self.fired_up_to, self.allowed_lateness_ms) {
            self.late_partial_groups += window.groups.len() as u64;
            return;
        }
        let mut window = window;
        // Whole only when no window of the pane has been emitted (else its groups update
        // emitted windows, noted group by group in `merge`).
        let no_floors = self.restored_floors.is_empty() && window.end > self.fired_up_to;
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
        // Updates first: every partial the sender sent before this watermark is merged, and
        // the panes they changed are still held.
        if !self.updates.is_empty() {
            self.emit_updates(layout, at, out);
        }
        if any_active && min > self.fired_up_to {
            // This message moved the global watermark: the input behind it closed the windows.
            let emitted_up_to = self.fired_up_to;
            self.fired_up_to = min;
            self.emit_windows(layout, emitted_up_to, min, at, out);
            if !self.restored_floors.is_empty() {
                self.prune_floors();
            }
        }
    }

    /// Emits again ("+U") the changed groups of emitted windows, by end.
    fn emit_updates(&mut self, layout: &AggregateLayout, at: Instant, out: &mut Vec<ClosedWindow>) {
        // Noted only for windows emitted and within the lateness at this watermark.
        for (end, keys) in self.updates.take_up_to(self.fired_up_to) {
            let start = self.assigner.window_start_of_end(end);
            let window = self.assemble(layout, start, end, |_, key| keys.contains(key));
            if !window.groups.is_empty() {
                out.push(ClosedWindow {
                    window,
                    closed_at: at,
                    kind: RowKind::UpdateAfter,
                });
            }
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
        let lateness = self.allowed_lateness_ms;
        loop {
            self.free_panes(layout, cursor);
            // With lateness, panes whose windows were all emitted are only kept for updates:
            // skip them (those of windows ending after the cursor start at the window
            // start of the first boundary after it).
            let first = if lateness > 0 && cursor > WATERMARK_MIN {
                let Some(next) = self.assigner.next_window_end_after(cursor) else {
                    break;
                };
                let from = self.assigner.window_start_of_end(next);
                self.panes.range(from..).next().map(|(_, p)| p)
            } else {
                self.panes.values().next()
            };
            let Some(first) = first else {
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
            if self.assigner.one_pane_per_window()
                && self.restored_floors.is_empty()
                && lateness == 0
            {
                // The window is its one pane and no other window needs it: hand it over.
                if let Some(e) = self.panes.first_entry() {
                    debug_assert_eq!((e.get().start, e.get().end), (start, end));
                    let mut window = e.remove();
                    save_all_pending(layout, KIND_FINAL, &mut window, &mut self.saved);
                    self.note_removed(&window);
                    if !window.groups.is_empty() {
                        out.push(ClosedWindow {
                            window,
                            closed_at,
                            kind: RowKind::Insert,
                        });
                    }
                }
            } else {
                // First emission of the groups not emitted yet (after recovery, some old
                // owners may have emitted the window).
                let floors = &self.restored_floors;
                let first_time = |hash: u64| {
                    floors.is_empty() || end > floors[AggregateLayout::owner(hash, floors.len())]
                };
                let window = self.assemble(layout, start, end, |hash, _| first_time(hash));
                if !window.groups.is_empty() {
                    out.push(ClosedWindow {
                        window,
                        closed_at,
                        kind: RowKind::Insert,
                    });
                }
                // Groups an old owner emitted before a recovery, still within the lateness:
                // emitted again whole as updates (changes merged before the cut and not
                // emitted yet are not in the checkpoint), once, as the cursor passes `end`.
                self.updates.take(end);
                if !floors.is_empty() && lateness > 0 {
                    // Within the lateness at the old owner's watermark (when the changes
                    // were merged), however far the restored watermarks are now.
                    let again = |hash: u64, _: &[u8]| {
                        !first_time(hash)
                            && updatable(
                                end,
                                floors[AggregateLayout::owner(hash, floors.len())],
                                lateness,
                            )
                    };
                    let window = self.assemble(layout, start, end, again);
                    if !window.groups.is_empty() {
                        out.push(ClosedWindow {
                            window,
                            closed_at,
                            kind: RowKind::UpdateAfter,
                        });
                    }
                }
            }
            cursor = end;
        }
        self.free_panes(layout, up_to);
    }

    /// The window `[start, end)`: the groups of its panes that `keep(hash, key)` accepts,
    /// merged.
    fn assemble(
        &self,
        layout: &AggregateLayout,
        start: i64,
        end: i64,
        keep: impl Fn(u64, &[u8]) -> bool,
    ) -> FiredWindow {
        let stride = layout.stride();
        let mut table = GroupTable::new(stride);
        let mut bytes = 0;
        for pane in self.panes.range(start..end).map(|(_, p)| p) {
            let from = &pane.groups;
            for g in 0..from.len() as u32 {
                let hash = from.hash(g);
                let key = from.key(g);
                if !keep(hash, key) {
                    continue;
                }
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

    /// Frees, oldest first, the panes whose last window ends, plus the allowed lateness, at
    /// or before `emitted_up_to` (the last window end grows with the pane start, so they are
    /// the first ones).
    fn free_panes(&mut self, layout: &AggregateLayout, emitted_up_to: i64) {
        while let Some(e) = self.panes.first_entry() {
            let last_end = self.assigner.last_window_end(e.get().start);
            if !too_late(last_end, emitted_up_to, self.allowed_lateness_ms) {
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
