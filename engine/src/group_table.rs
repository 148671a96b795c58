//! The groups of one window: encoded group keys in a bumpalo arena, a hash table from key to
//! group number, and the accumulator slots of every group.
//!
//! Invariant: a group's key bytes live in `arena` and never move until the table is dropped,
//! which frees the whole window's state at once when the window fires.

use std::ptr::NonNull;

use bumpalo::Bump;
use hashbrown::HashTable;

use crate::accumulator::{Slot, StringStore};

/// Groups of one window of one shard.
pub struct GroupTable {
    arena: Bump,
    index: HashTable<u32>,
    /// Key bytes (in `arena`) and hash of each group, by group number.
    keys: Vec<(NonNull<u8>, usize, u64)>,
    /// `stride` slots per group.
    pub slots: Vec<Slot>,
    pub stride: usize,
    /// Side state of the aggregates whose state is not two words (MIN/MAX strings,
    /// COUNT(DISTINCT), FIRST/LAST_VALUE, STDDEV/VAR, APPROX_COUNT_DISTINCT).
    pub strings: StringStore,
    /// One bit per chunk of [`GROUP_CHUNK`] groups changed since the last checkpoint.
    dirty_chunks: Vec<u64>,
    /// Chunks written to the state store so far (deleted from it when the window goes).
    pub persisted_chunks: u32,
    /// Chunks of the snapshot in progress not serialized yet: each is serialized before its
    /// next change (copy before write) or when the shard has time, whichever comes first.
    pending_chunks: Vec<u64>,
    /// Groups the table had when the snapshot was taken: later ones are not part of it.
    pub pending_groups: u32,
}

/// Groups per checkpoint record: a checkpoint rewrites the chunks whose groups changed.
pub const GROUP_CHUNK: u32 = 1024;

// SAFETY: the raw pointers in `keys` point into `arena`, which the table owns and moves with
// it; a GroupTable is only ever used by one thread at a time.
unsafe impl Send for GroupTable {}

impl GroupTable {
    pub fn new(stride: usize) -> Self {
        GroupTable {
            arena: Bump::new(),
            index: HashTable::new(),
            keys: Vec::new(),
            slots: Vec::new(),
            stride,
            strings: StringStore::new(),
            dirty_chunks: Vec::new(),
            persisted_chunks: 0,
            pending_chunks: Vec::new(),
            pending_groups: 0,
        }
    }

    /// Starts a snapshot: the chunks changed since the last one become pending (to serialize
    /// as they are now) and the change marks start over. Returns how many are pending.
    pub fn begin_snapshot(&mut self) -> usize {
        debug_assert!(
            !self.has_pending(),
            "a snapshot began before the last one was saved"
        );
        self.pending_chunks = std::mem::take(&mut self.dirty_chunks);
        self.pending_groups = self.keys.len() as u32;
        self.pending_chunks
            .iter()
            .map(|w| w.count_ones() as usize)
            .sum()
    }

    /// Whether chunk `chunk` is pending; if so it no longer is (the caller serializes it now,
    /// before changing it).
    #[inline]
    pub fn take_pending(&mut self, chunk: u32) -> bool {
        let (word, bit) = ((chunk / 64) as usize, chunk % 64);
        match self.pending_chunks.get_mut(word) {
            Some(w) if *w & (1 << bit) != 0 => {
                *w &= !(1 << bit);
                true
            }
            _ => false,
        }
    }

    /// The lowest pending chunk, no longer pending.
    pub fn next_pending(&mut self) -> Option<u32> {
        for (i, w) in self.pending_chunks.iter_mut().enumerate() {
            if *w != 0 {
                let bit = w.trailing_zeros();
                *w &= !(1 << bit);
                return Some(i as u32 * 64 + bit);
            }
        }
        None
    }

    /// Whether chunks of the snapshot in progress wait to be serialized.
    pub fn has_pending(&self) -> bool {
        self.pending_chunks.iter().any(|w| *w != 0)
    }

    /// Records that group `g` changed since the last checkpoint.
    #[inline]
    pub fn mark_dirty(&mut self, g: u32) {
        let chunk = (g / GROUP_CHUNK) as usize;
        let (word, bit) = (chunk / 64, chunk % 64);
        if word >= self.dirty_chunks.len() {
            self.dirty_chunks.resize(word + 1, 0);
        }
        self.dirty_chunks[word] |= 1 << bit;
    }

    /// Records that every group changed (a window handed over whole).
    pub fn mark_all_dirty(&mut self) {
        let chunks = self.chunks();
        for c in 0..chunks {
            self.mark_dirty(c * GROUP_CHUNK);
        }
    }

    /// Number of chunks of [`GROUP_CHUNK`] groups.
    pub fn chunks(&self) -> u32 {
        (self.keys.len() as u32).div_ceil(GROUP_CHUNK)
    }

    /// The chunks changed since the last call, in order; clears the marks.
    pub fn take_dirty_chunks(&mut self, out: &mut Vec<u32>) {
        out.clear();
        for (w, word) in self.dirty_chunks.iter_mut().enumerate() {
            let mut bits = std::mem::take(word);
            while bits != 0 {
                let b = bits.trailing_zeros();
                out.push(w as u32 * 64 + b);
                bits &= bits - 1;
            }
        }
    }

    /// Whether any group changed since the last checkpoint.
    pub fn is_dirty(&self) -> bool {
        self.dirty_chunks.iter().any(|w| *w != 0)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The group of `key` (with its precomputed `hash`), created with empty slots if new.
    /// Returns the group number and whether it was created.
    #[inline]
    pub fn find_or_insert(&mut self, key: &[u8], hash: u64) -> (u32, bool) {
        let keys = &self.keys;
        if let Some(&g) = self.index.find(hash, |&g| {
            let (p, len, h) = keys[g as usize];
            // SAFETY: see the module invariant; (p, len) was allocated in `arena`.
            h == hash && unsafe { std::slice::from_raw_parts(p.as_ptr(), len) } == key
        }) {
            return (g, false);
        }
        let g = self.keys.len() as u32;
        let stored = self.arena.alloc_slice_copy(key);
        let ptr = NonNull::new(stored.as_mut_ptr()).unwrap_or(NonNull::dangling());
        self.keys.push((ptr, key.len(), hash));
        let keys = &self.keys;
        self.index.insert_unique(hash, g, |&g| keys[g as usize].2);
        self.slots
            .resize(self.slots.len() + self.stride, Slot::EMPTY);
        (g, true)
    }

    /// The key bytes of group `g`.
    pub fn key(&self, g: u32) -> &[u8] {
        let (p, len, _) = self.keys[g as usize];
        // SAFETY: see the module invariant.
        unsafe { std::slice::from_raw_parts(p.as_ptr(), len) }
    }

    pub fn hash(&self, g: u32) -> u64 {
        self.keys[g as usize].2
    }

    /// The slots of group `g`.
    pub fn group_slots(&self, g: u32) -> &[Slot] {
        let s = g as usize * self.stride;
        &self.slots[s..s + self.stride]
    }

    /// Bytes held by this table (arena, index, slots, side state), for the state limit.
    pub fn bytes(&self) -> usize {
        self.arena.allocated_bytes()
            + self.index.capacity() * (std::mem::size_of::<u32>() + 1)
            + self.keys.capacity() * std::mem::size_of::<(NonNull<u8>, usize, u64)>()
            + self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.strings.iter().map(|s| s.bytes()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn same_key_same_group(keys in proptest::collection::vec(proptest::collection::vec(0u8..4, 0..4), 1..300)) {
            let mut t = GroupTable::new(2);
            let mut model = std::collections::HashMap::new();
            for k in &keys {
                // a deliberately weak hash so collisions are exercised
                let h = k.iter().map(|&b| b as u64).sum::<u64>();
                let (g, new) = t.find_or_insert(k, h);
                let expect = model.len() as u32;
                let m = *model.entry(k.clone()).or_insert(expect);
                prop_assert_eq!(g, m);
                prop_assert_eq!(new, g == expect && model.len() as u32 == expect + 1);
                prop_assert_eq!(t.key(g), &k[..]);
            }
            prop_assert_eq!(t.len(), model.len());
            prop_assert_eq!(t.slots.len(), model.len() * 2);
        }
    }
}
