//! The final stage of a windowed aggregate on the shard that owns a set of keys: merges the
//! partials of every shard and fires a window once every shard's watermark has passed it.
//!
//! Invariant: a window fires here at most once; partials that arrive for a window already
//! fired are counted and dropped, never merged.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::exchange::PartialWindow;
use crate::group_table::GroupTable;
use crate::watermark::WATERMARK_MIN;
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
    windows: BTreeMap<i64, FiredWindow>,
    peers: Vec<PeerClock>,
    /// The global watermark up to which windows have fired.
    fired_up_to: i64,
    /// Partial groups that arrived after their window had fired (dropped).
    pub late_partial_groups: u64,
    /// After recovery: per shard of the run that wrote the checkpoint, the watermark up to
    /// which it had emitted windows. A group whose old owner had emitted its window is dropped
    /// (its result is already published), whatever the new shards' watermarks say.
    restored_floors: Vec<i64>,
    /// Windows fired since the last checkpoint that had chunks in the state store.
    removed: Vec<(i64, i64, u32)>,
}

impl FinalAggregate {
    pub fn new(shards: usize) -> Self {
        FinalAggregate {
            windows: BTreeMap::new(),
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
        }
    }

    /// The watermark every shard has passed (non-idle shards only; all idle holds it).
    pub fn global_watermark(&self) -> i64 {
        self.fired_up_to
    }

    /// Merges a partial of some shard.
    pub fn merge(&mut self, layout: &AggregateLayout, partial: PartialWindow) {
        if partial.end <= self.fired_up_to {
            self.late_partial_groups += partial.len() as u64;
            return;
        }
        let stride = layout.stride();
        let w = self
            .windows
            .entry(partial.start)
            .or_insert_with(|| FiredWindow {
                start: partial.start,
                end: partial.end,
                groups: GroupTable::new(stride),
                bytes: 0,
            });
        for i in 0..partial.len() {
            if !self.restored_floors.is_empty() {
                let old_owner = AggregateLayout::owner(partial.hashes[i], self.restored_floors.len());
                if partial.end <= self.restored_floors[old_owner] {
                    self.late_partial_groups += 1;
                    continue;
                }
            }
            let (g, new) = w.groups.find_or_insert(partial.key(i), partial.hashes[i]);
            w.groups.mark_dirty(g);
            if new {
                w.bytes += partial.key(i).len() + stride * 16 + 40;
            }
            let base = g as usize * stride;
            for (a, acc) in layout.accumulators.iter().enumerate() {
                let from = partial.slots[i * stride + a];
                let from_str = (acc.uses_strings() && from.b > 0)
                    .then(|| &partial.strings[from.a as usize][..]);
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

    /// Adds a locally fired window directly (the owner of all its keys is this shard).
    pub fn merge_local(&mut self, layout: &AggregateLayout, window: FiredWindow) {
        if window.end <= self.fired_up_to {
            self.late_partial_groups += window.groups.len() as u64;
            return;
        }
        let mut window = window;
        let no_floors = self.restored_floors.is_empty();
        let window = match self.windows.entry(window.start) {
            std::collections::btree_map::Entry::Vacant(v) if no_floors => {
                // Its chunks in the store (if any) were the open window's; the final stage
                // writes its own.
                window.groups.persisted_chunks = 0;
                window.groups.mark_all_dirty();
                v.insert(window);
                return;
            }
            _ => window,
        };
        // Rare: partials of other shards came first. Merge group by group.
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

    /// Records a shard's watermark and returns the windows it completes, oldest first.
    pub fn on_watermark(
        &mut self,
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
        let closed_at = at;
        self.fired_up_to = min;
        if !self.restored_floors.is_empty() {
            self.prune_floors();
        }
        while let Some(e) = self.windows.first_entry() {
            if e.get().end > min {
                break;
            }
            let window = e.remove();
            if window.groups.persisted_chunks > 0 {
                self.removed.push((window.start, window.end, window.groups.persisted_chunks));
            }
            out.push(ClosedWindow { window, closed_at });
        }
    }

    pub fn open_windows(&self) -> usize {
        self.windows.len()
    }

    /// The windows waiting for other shards' watermarks, oldest first (for checkpoints).
    pub fn windows_mut(&mut self) -> impl Iterator<Item = &mut FiredWindow> {
        self.windows.values_mut()
    }

    /// Windows emitted since the last call that had chunks in the state store.
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
