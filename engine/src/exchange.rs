//! What shards send each other: partial aggregates of *panes* (see `window_assigner.rs`; for
//! TUMBLE a pane is a window) for the keys another shard owns, and watermarks. Messages
//! travel on bounded single-producer rings (`exchange_link.rs`), one per ordered pair of
//! shards; a message is owned by its receiver. A pane crosses once, whatever the number of
//! windows holding it.
//!
//! Invariant: on every channel a shard sends a pane's partial before the watermark that
//! passes the pane's end, except a pane reopened by an event that came later (HOP, CUMULATE:
//! its last window had not fired), which goes before the shard's next watermark. So a
//! receiver that has seen every shard's watermark pass a window's end has every partial of
//! it, and a reopened pane only reaches windows that were not emitted yet.

use std::time::Instant;

use crate::accumulator::{Slot, StringStore};
use crate::group_table::GroupTable;
use crate::window_operator::{AggregateLayout, FiredWindow};

/// The partial aggregates of one pane for the keys one shard owns.
#[derive(Debug, Default, Clone)]
pub struct PartialWindow {
    /// The pane's bounds `[start, end)`.
    pub start: i64,
    pub end: i64,
    /// Encoded group keys, back to back; group `i` ends at `key_ends[i]`.
    pub key_bytes: Vec<u8>,
    pub key_ends: Vec<u32>,
    pub hashes: Vec<u64>,
    /// `stride` slots per group; string slots index `strings`.
    pub slots: Vec<Slot>,
    pub strings: StringStore,
    /// SESSION windows only (`crate::session`): per group, the bounds `[start, end)` of its
    /// mini-session (a key may then appear more than once; `start`/`end` above are unused).
    /// Empty for panes.
    pub session_bounds: Vec<[i64; 2]>,
    /// SESSION windows restored from a checkpoint only: per group, whether it is the kept
    /// bounds of a fired session (its slots are empty). Empty: none is.
    pub session_fired: Vec<bool>,
}

impl PartialWindow {
    pub fn len(&self) -> usize {
        self.key_ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.key_ends.is_empty()
    }

    pub fn key(&self, i: usize) -> &[u8] {
        let start = if i == 0 {
            0
        } else {
            self.key_ends[i - 1] as usize
        };
        &self.key_bytes[start..self.key_ends[i] as usize]
    }

    fn push(&mut self, layout: &AggregateLayout, table: &GroupTable, g: u32) {
        self.key_bytes.extend_from_slice(table.key(g));
        self.key_ends.push(self.key_bytes.len() as u32);
        self.hashes.push(table.hash(g));
        for (acc, slot) in layout.accumulators.iter().zip(table.group_slots(g)) {
            let mut s = *slot;
            if acc.uses_strings() && s.b > 0 {
                self.strings.push(table.strings[s.a as usize].clone());
                s.a = (self.strings.len() - 1) as u64;
            }
            self.slots.push(s);
        }
    }
}

/// A message between shards.
#[derive(Debug)]
pub enum ExchangeMsg {
    Partial(PartialWindow),
    /// The sender's watermark; `at` is when the input that moved it arrived (for latency).
    Watermark {
        from: usize,
        watermark: i64,
        idle: bool,
        at: Instant,
    },
    /// The sender took its part of checkpoint `epoch`: what it sends after this is not in
    /// that checkpoint (see `exchange_link.rs`).
    Barrier {
        from: usize,
        epoch: u64,
    },
    /// Rows of one side of a join of two streams for keys the receiver owns
    /// (`crate::stream_join`); like partials, they precede the watermark that passes them.
    JoinRows(crate::stream_join::routing::JoinRows),
    /// The sender sends nothing more.
    Done {
        from: usize,
    },
}

/// Splits a locally fired pane into one partial per owning shard (empty ones omitted).
pub fn split_by_owner(
    layout: &AggregateLayout,
    window: &FiredWindow,
    shards: usize,
) -> Vec<(usize, PartialWindow)> {
    let mut parts: Vec<PartialWindow> = (0..shards)
        .map(|_| PartialWindow {
            start: window.start,
            end: window.end,
            ..PartialWindow::default()
        })
        .collect();
    for g in 0..window.groups.len() as u32 {
        let owner = AggregateLayout::owner(window.groups.hash(g), shards);
        parts[owner].push(layout, &window.groups, g);
    }
    parts
        .into_iter()
        .enumerate()
        .filter(|(_, p)| !p.is_empty())
        .collect()
}
