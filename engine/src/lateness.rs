//! Allowed lateness (the source table's `'allowed-lateness'`): when an event is too late, and
//! which already emitted window results a late update makes the final stage emit again.
//!
//! Used by the pane windows (`window_operator.rs`, `final_aggregate.rs`); session windows
//! call the same functions. A window `[start, end)` keeps its state until the watermark
//! passes `end + allowed_lateness_ms`; before that an event updates it and its result is
//! emitted again with row kind "+U" (`crate::row_kind`), after that the event is too late:
//! counted, and written to the late-data sink when one is configured (`late_sink.rs`).

use std::collections::{BTreeMap, HashSet};

/// Keys of pending updates held before a window is re-emitted whole instead of key by key
/// (bounds the memory of [`PendingUpdates`]; re-emitting a whole window is still right, only
/// more rows).
pub const PENDING_UPDATE_KEYS_MAX: usize = 1 << 20;

/// Whether an event (or a partial) whose last window ends at `last_window_end` is too late
/// at `watermark`: that window's end plus the allowed lateness is at or before it.
#[inline]
pub fn too_late(last_window_end: i64, watermark: i64, allowed_lateness_ms: i64) -> bool {
    last_window_end.saturating_add(allowed_lateness_ms) <= watermark
}

/// Whether a window ending at `end` still accepts updates at `watermark`.
#[inline]
pub fn updatable(end: i64, watermark: i64, allowed_lateness_ms: i64) -> bool {
    !too_late(end, watermark, allowed_lateness_ms)
}

/// Which keys of one window changed after it was emitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdatedKeys {
    /// These group keys (row-format bytes).
    Keys(HashSet<Vec<u8>>),
    /// Every group of the window (after [`PENDING_UPDATE_KEYS_MAX`] was reached, or after a
    /// recovery, when what changed before the cut is not known).
    All,
}

impl UpdatedKeys {
    /// Whether the group with `key` is to be emitted again.
    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            UpdatedKeys::Keys(keys) => keys.contains(key),
            UpdatedKeys::All => true,
        }
    }
}

/// Emitted windows changed by late updates and not emitted again yet, by window end.
#[derive(Debug, Default)]
pub struct PendingUpdates {
    by_end: BTreeMap<i64, UpdatedKeys>,
    keys: usize,
}

impl PendingUpdates {
    /// Notes that group `key` of the window ending at `end` changed after its emission.
    pub fn note(&mut self, end: i64, key: &[u8]) {
        let entry = self
            .by_end
            .entry(end)
            .or_insert_with(|| UpdatedKeys::Keys(HashSet::new()));
        if let UpdatedKeys::Keys(keys) = entry {
            if keys.contains(key) {
                return;
            }
            if self.keys >= PENDING_UPDATE_KEYS_MAX {
                self.keys -= keys.len();
                *entry = UpdatedKeys::All;
                return;
            }
            keys.insert(key.to_vec());
            self.keys += 1;
        }
    }

    /// Notes that every group of the window ending at `end` is to be emitted again.
    pub fn note_all(&mut self, end: i64) {
        if let Some(UpdatedKeys::Keys(keys)) = self.by_end.insert(end, UpdatedKeys::All) {
            self.keys -= keys.len();
        }
    }

    /// Removes and returns what changed in the window ending at `end`.
    pub fn take(&mut self, end: i64) -> Option<UpdatedKeys> {
        let taken = self.by_end.remove(&end)?;
        if let UpdatedKeys::Keys(keys) = &taken {
            self.keys -= keys.len();
        }
        Some(taken)
    }

    /// Removes and returns, by end, the windows ending at or before `up_to`.
    pub fn take_up_to(&mut self, up_to: i64) -> Vec<(i64, UpdatedKeys)> {
        let later = match up_to.checked_add(1) {
            Some(next) => self.by_end.split_off(&next),
            None => BTreeMap::new(),
        };
        let taken = std::mem::replace(&mut self.by_end, later);
        for keys in taken.values() {
            if let UpdatedKeys::Keys(keys) = keys {
                self.keys -= keys.len();
            }
        }
        taken.into_iter().collect()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.by_end.is_empty()
    }

    /// Keys held (windows marked whole count none).
    pub fn keys(&self) -> usize {
        self.keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn too_late_only_past_end_plus_lateness() {
        assert!(!too_late(1_000, 999, 0));
        assert!(too_late(1_000, 1_000, 0), "end exclusive: the window fired");
        assert!(!too_late(1_000, 5_999, 5_000));
        assert!(too_late(1_000, 6_000, 5_000));
        assert!(!too_late(i64::MAX - 1, i64::MAX - 1, 5_000), "saturates");
        assert!(updatable(1_000, 5_999, 5_000));
    }

    #[test]
    fn pending_updates_are_taken_by_end_and_counted() {
        let mut p = PendingUpdates::default();
        p.note(2_000, b"a");
        p.note(2_000, b"a");
        p.note(2_000, b"b");
        p.note(3_000, b"a");
        p.note_all(4_000);
        assert_eq!(p.keys(), 3);
        let taken = p.take_up_to(3_000);
        assert_eq!(taken.len(), 2);
        assert!(taken[0].1.contains(b"b") && !taken[0].1.contains(b"c"));
        assert_eq!(p.keys(), 0);
        assert_eq!(p.take(4_000), Some(UpdatedKeys::All));
        assert!(p.is_empty());
    }

    proptest! {
        /// Whatever is noted is taken back exactly once, and the key count returns to 0.
        #[test]
        fn noted_keys_come_back_once(notes in proptest::collection::vec((0i64..5, 0u8..8), 0..64)) {
            let mut p = PendingUpdates::default();
            let mut expected: BTreeMap<i64, HashSet<Vec<u8>>> = BTreeMap::new();
            for &(end, key) in &notes {
                p.note(end, &[key]);
                expected.entry(end).or_default().insert(vec![key]);
            }
            let taken = p.take_up_to(i64::MAX);
            prop_assert_eq!(p.keys(), 0);
            prop_assert!(p.is_empty());
            let got: BTreeMap<i64, HashSet<Vec<u8>>> = taken
                .into_iter()
                .map(|(end, keys)| match keys {
                    UpdatedKeys::Keys(k) => (end, k),
                    UpdatedKeys::All => (end, HashSet::new()),
                })
                .collect();
            prop_assert_eq!(got, expected);
        }
    }
}
