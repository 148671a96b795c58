//! The partial stage of SESSION windows: each batch is pre-aggregated into *mini-sessions*
//! (the events of one key in one batch, sorted by event time and split where two successive
//! events are more than the gap apart) and handed to the keys' owners at once. The stage keeps
//! no state between batches, so it has nothing to checkpoint.
//!
//! Invariant: an event is too late (counted, dropped, written to the late-data sink if there
//! is one) exactly when its own window `[ts, ts + gap)` is complete and past the allowed
//! lateness `L`: `ts + gap + L < late watermark` (a session fires when the watermark exceeds
//! its end, see `session_stage.rs`); an event at or after the watermark is never late.

use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::TimestampMillisecondType;
use arrow::row::Rows;

use crate::accumulator::{Slot, StringStore};
use crate::error::{EngineError, Result};
use crate::exchange::PartialWindow;
use crate::window_operator::AggregateLayout;

/// Most mini-sessions in one message to an owner; a batch with more sends several.
pub const SESSION_PARTIAL_GROUPS_MAX: usize = 4096;

/// Counters of the partial stage.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MiniSessionStats {
    pub rows_in: u64,
    pub late_events: u64,
    pub mini_sessions: u64,
}

/// The per-shard partial stage of a SESSION aggregation.
pub struct MiniSessions {
    layout: Arc<AggregateLayout>,
    gap_ms: i64,
    /// Allowed lateness (`'allowed-lateness'`).
    lateness_ms: i64,
    time_column: usize,
    pub stats: MiniSessionStats,
    /// Rows of the last batch that were too late (for the late-data sink).
    pub late_rows: Vec<u32>,
    // Buffers reused from batch to batch.
    rows: Option<Rows>,
    hashes: Vec<u64>,
    order: Vec<u32>,
    groups: Vec<u32>,
    bounds: Vec<[i64; 2]>,
    slots: Vec<Slot>,
    strings: StringStore,
}

impl MiniSessions {
    /// The partial stage of `layout`, whose window must be a SESSION.
    pub fn new(layout: Arc<AggregateLayout>) -> Result<Self> {
        let spec = layout
            .aggregation
            .window
            .ok_or_else(|| EngineError::Internal("session stage without a window".into()))?;
        let gap_ms = spec.kind.session_gap_ms().ok_or_else(|| {
            EngineError::Internal(format!("session stage for a {} window", spec.kind.name()))
        })?;
        let rows = layout.empty_key_rows();
        Ok(MiniSessions {
            layout,
            gap_ms,
            lateness_ms: 0,
            time_column: spec.time_column,
            stats: MiniSessionStats::default(),
            late_rows: Vec::new(),
            rows,
            hashes: Vec::new(),
            order: Vec::new(),
            groups: Vec::new(),
            bounds: Vec::new(),
            slots: Vec::new(),
            strings: StringStore::new(),
        })
    }

    /// The session gap.
    pub fn gap_ms(&self) -> i64 {
        self.gap_ms
    }

    /// Sets the allowed lateness (`'allowed-lateness'`).
    pub fn set_allowed_lateness(&mut self, lateness_ms: i64) {
        self.lateness_ms = lateness_ms;
    }

    /// Pre-aggregates `batch` (the filtered source schema) into mini-sessions and appends
    /// them to `out`, one or more partials per owning shard (of `shards`). Events with
    /// `ts + gap + lateness < late_watermark` are counted late, dropped and listed in
    /// `late_rows`.
    pub fn process(
        &mut self,
        batch: &RecordBatch,
        late_watermark: i64,
        shards: usize,
        out: &mut Vec<(usize, PartialWindow)>,
    ) -> Result<()> {
        self.late_rows.clear();
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        self.stats.rows_in += n as u64;
        let layout = self.layout.clone();
        let agg = &layout.aggregation;
        let ts_col = batch.column(self.time_column);
        let ts: &[i64] = ts_col
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| EngineError::Internal("session time column is not TIMESTAMP(3)".into()))?
            .values();

        layout.encode_keys(batch, &mut self.rows, &mut self.hashes)?;
        let args = agg
            .aggregates
            .iter()
            .zip(&layout.accumulators)
            .map(|(a, acc)| {
                let v = a.arg.as_ref().map(|e| e.evaluate(batch)).transpose()?;
                acc.prepare(v.as_ref(), ts_col)
            })
            .collect::<Result<Vec<_>>>()?;

        // The rows that are on time, sorted by key, then event time.
        let gap = self.gap_ms;
        let reach = gap.saturating_add(self.lateness_ms);
        self.order.clear();
        for (i, &t) in ts.iter().enumerate() {
            if t.saturating_add(reach) < late_watermark {
                self.stats.late_events += 1;
                self.late_rows.push(i as u32);
            } else {
                self.order.push(i as u32);
            }
        }
        match &self.rows {
            Some(rows) => {
                let hashes = &self.hashes;
                self.order.sort_unstable_by(|&a, &b| {
                    hashes[a as usize]
                        .cmp(&hashes[b as usize])
                        .then_with(|| rows.row(a as usize).cmp(&rows.row(b as usize)))
                        .then_with(|| ts[a as usize].cmp(&ts[b as usize]))
                });
            }
            None => self.order.sort_unstable_by_key(|&r| ts[r as usize]),
        }

        // Mini-sessions: a new one where the key changes or the gap is exceeded (windows
        // [a, a + gap) and [b, b + gap) with a <= b touch or overlap iff b <= a + gap).
        self.groups.clear();
        self.bounds.clear();
        let mut first_rows: Vec<u32> = Vec::new();
        for (j, &r) in self.order.iter().enumerate() {
            let t = ts[r as usize];
            let same_session = j > 0 && {
                let p = self.order[j - 1];
                let same_key = self.hashes[p as usize] == self.hashes[r as usize]
                    && match &self.rows {
                        Some(rows) => rows.row(p as usize) == rows.row(r as usize),
                        None => true,
                    };
                same_key && t <= ts[p as usize].saturating_add(gap)
            };
            if same_session {
                let b = self
                    .bounds
                    .last_mut()
                    .expect("a session is open after row 0");
                b[1] = t.saturating_add(gap);
            } else {
                self.bounds.push([t, t.saturating_add(gap)]);
                first_rows.push(r);
            }
            self.groups.push((self.bounds.len() - 1) as u32);
        }
        let sessions = self.bounds.len();
        self.stats.mini_sessions += sessions as u64;
        let stride = layout.stride();
        self.slots.clear();
        self.slots.resize(sessions * stride, Slot::EMPTY);
        self.strings.clear();
        for (i, acc) in layout.accumulators.iter().enumerate() {
            acc.update(
                &mut self.slots,
                stride,
                i,
                &self.groups,
                &self.order,
                args[i].as_ref(),
                &mut self.strings,
            );
        }

        // One partial per owner (more when one would exceed SESSION_PARTIAL_GROUPS_MAX).
        let mut parts: Vec<Option<PartialWindow>> = (0..shards).map(|_| None).collect();
        for (g, &r) in first_rows.iter().enumerate() {
            let hash = self.hashes[r as usize];
            let owner = AggregateLayout::owner(hash, shards);
            let part = parts[owner].get_or_insert_with(PartialWindow::default);
            if let Some(rows) = &self.rows {
                part.key_bytes
                    .extend_from_slice(rows.row(r as usize).data());
            }
            part.key_ends.push(part.key_bytes.len() as u32);
            part.hashes.push(hash);
            part.session_bounds.push(self.bounds[g]);
            for (acc, slot) in layout
                .accumulators
                .iter()
                .zip(&self.slots[g * stride..(g + 1) * stride])
            {
                let mut s = *slot;
                if acc.uses_strings() && s.b > 0 {
                    part.strings.push(self.strings[s.a as usize].clone());
                    s.a = (part.strings.len() - 1) as u64;
                }
                part.slots.push(s);
            }
            if part.len() >= SESSION_PARTIAL_GROUPS_MAX {
                if let Some(full) = parts[owner].take() {
                    out.push((owner, full));
                }
            }
        }
        for (owner, part) in parts.into_iter().enumerate() {
            if let Some(p) = part {
                out.push((owner, p));
            }
        }
        if self.strings.capacity() > 4 * SESSION_PARTIAL_GROUPS_MAX {
            self.strings = StringStore::new();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::test_support::{batch, layout_of};

    const SQL: &str =
        "SELECT k, COUNT(*), SUM(v) FROM t GROUP BY k, SESSION(ts, INTERVAL '10' SECOND)";

    /// (key, start, end, count, sum) of every mini-session in `parts`.
    fn summary(parts: &[(usize, PartialWindow)]) -> Vec<(String, i64, i64, u64, u64)> {
        let mut v: Vec<_> = parts
            .iter()
            .flat_map(|(_, p)| {
                (0..p.len()).map(move |i| {
                    // The row format of a non-null string: a 1 byte, the text, then padding.
                    let key = String::from_utf8_lossy(&p.key(i)[1..2]).to_string();
                    let [s, e] = p.session_bounds[i];
                    (key, s, e, p.slots[i * 2].a, p.slots[i * 2 + 1].a)
                })
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_batch_becomes_mini_sessions_split_at_the_gap() {
        let (layout, schema) = layout_of(SQL);
        let mut op = MiniSessions::new(layout).expect("stage");
        let b = batch(
            &schema,
            &[
                ("a", 1, 30_000),
                ("b", 2, 0),
                ("a", 3, 0),
                ("a", 4, 10_000), // touches [0, 10 s): merges
                ("a", 5, 20_001), // 1 ms more than the gap after 10 s: a new session
                ("b", 6, 5_000),
            ],
        );
        let mut out = Vec::new();
        op.process(&b, i64::MIN, 1, &mut out).expect("process");
        assert_eq!(
            summary(&out),
            vec![
                ("a".into(), 0, 20_000, 2, 7),
                ("a".into(), 20_001, 40_000, 2, 6),
                ("b".into(), 0, 15_000, 2, 8),
            ]
        );
        assert_eq!(op.stats.mini_sessions, 3);
    }

    #[test]
    fn late_only_when_the_events_own_window_is_complete() {
        let (layout, schema) = layout_of(SQL);
        let mut op = MiniSessions::new(layout).expect("stage");
        // Watermark 20 s: [10 s, 20 s) is not complete yet (a session fires when the
        // watermark exceeds its end), [9.999 s, 19.999 s) is.
        let b = batch(&schema, &[("a", 1, 10_000), ("a", 1, 9_999)]);
        let mut out = Vec::new();
        op.process(&b, 20_000, 1, &mut out).expect("process");
        assert_eq!(op.stats.late_events, 1);
        assert_eq!(summary(&out), vec![("a".into(), 10_000, 20_000, 1, 1)]);
    }

    #[test]
    fn partials_go_to_the_owner_of_their_key_and_respect_the_message_limit() {
        let (layout, schema) = layout_of(SQL);
        let mut op = MiniSessions::new(layout.clone()).expect("stage");
        let keys: Vec<String> = (0..10_000).map(|i| format!("k{i}")).collect();
        let rows: Vec<(&str, i64, i64)> = keys.iter().map(|k| (k.as_str(), 1, 0)).collect();
        let mut out = Vec::new();
        op.process(&batch(&schema, &rows), i64::MIN, 2, &mut out)
            .expect("process");
        let total: usize = out.iter().map(|(_, p)| p.len()).sum();
        assert_eq!(total, 10_000);
        for (owner, p) in &out {
            assert!(p.len() <= SESSION_PARTIAL_GROUPS_MAX);
            for i in 0..p.len() {
                assert_eq!(AggregateLayout::owner(p.hashes[i], 2), *owner);
                assert_eq!(layout.hash_key(p.key(i)), p.hashes[i]);
            }
        }
        assert!(
            out.len() >= 3,
            "10 000 sessions over 2 owners take at least 3 messages"
        );
    }
}
