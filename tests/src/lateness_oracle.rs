//! The oracle of allowed lateness (`tests/tests/allowed_lateness.rs`):
//! generated trades with explicitly placed late events, and an independent batch computation
//! of which events are too late, of every window's final result and (for one partition read by
//! one shard) of every window's first result.
//!
//! The rule it computes, per partition in input order (one partition per shard, so the
//! shard's watermark is the partition's): the watermark before an event is the largest time
//! before it minus the bound; an event is too late when the last window holding it ends, plus
//! the lateness, at or before that watermark. Everything else counts in its windows. Plain
//! Rust, no engine code.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::oracle::format_time;

/// Windows of the test query: TUMBLE when `slide_ms == size_ms`, else HOP.
#[derive(Debug, Clone, Copy)]
pub struct LatenessCase {
    pub size_ms: i64,
    pub slide_ms: i64,
    pub bound_ms: i64,
    pub lateness_ms: i64,
}

impl LatenessCase {
    /// `[start, end)` of every window holding `ts`.
    pub fn windows_of(&self, ts: i64) -> Vec<(i64, i64)> {
        let last_start = ts - ts.rem_euclid(self.slide_ms);
        let mut out = Vec::new();
        let mut start = last_start;
        while start > ts - self.size_ms {
            out.push((start, start + self.size_ms));
            start -= self.slide_ms;
        }
        out.reverse();
        out
    }

    /// The end of the last window holding `ts`.
    pub fn last_window_end(&self, ts: i64) -> i64 {
        ts - ts.rem_euclid(self.slide_ms) + self.size_ms
    }
}

/// One generated trade.
#[derive(Debug, Clone, PartialEq)]
pub struct Trade {
    pub symbol: String,
    pub volume: i64,
    pub ts: i64,
}

impl Trade {
    /// The JSON line the source reads.
    pub fn line(&self) -> String {
        json!({"symbol": self.symbol, "price": 1.5, "volume": self.volume, "ts": self.ts})
            .to_string()
    }

    /// The row the late table (`symbol STRING, volume BIGINT, ts TIMESTAMP(3)`) gets.
    pub fn late_row(&self) -> Value {
        json!({"symbol": self.symbol, "volume": self.volume, "ts": format_time(self.ts)})
    }
}

/// Per partition: `events` trades from `start_ms`, 4 symbols, times rising by 20..60 ms with
/// disorder within `bound_ms`; every `late_every`-th event instead lies `bound_ms` plus
/// 0 .. `2 * (size_ms + lateness_ms)` behind the largest time so far (late: some within the
/// lateness, some beyond). Volumes are distinct, so sums tell events apart.
pub fn generate(
    partitions: usize,
    events: usize,
    start_ms: i64,
    case: &LatenessCase,
    late_every: usize,
    seed: u64,
) -> Vec<Vec<Trade>> {
    let mut state = seed | 1;
    let mut next = move |n: u64| {
        // xorshift64*: a fixed sequence per seed.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) % n.max(1)
    };
    // Behind the watermark by up to twice the longest time an event stays updatable.
    let spread_ms = (2 * (case.size_ms + case.lateness_ms)).max(1) as u64;
    let mut out = Vec::with_capacity(partitions);
    let mut volume = 1;
    for _ in 0..partitions {
        let mut trades = Vec::with_capacity(events);
        let mut clock = start_ms;
        let mut ts_max = i64::MIN;
        for i in 0..events {
            clock += 20 + next(41) as i64;
            let ts = if i > 0 && i % late_every.max(1) == 0 {
                ts_max - case.bound_ms - next(spread_ms) as i64
            } else {
                clock - next(case.bound_ms.max(1) as u64) as i64
            };
            ts_max = ts_max.max(ts);
            trades.push(Trade {
                symbol: ["A", "B", "C", "D"][next(4) as usize].to_string(),
                volume,
                ts,
            });
            volume += 1;
        }
        out.push(trades);
    }
    out
}

/// COUNT(*), SUM(volume) per (symbol, window start, window end).
pub type WindowResults = BTreeMap<(String, i64, i64), (u64, i64)>;

/// What the engine must produce.
#[derive(Debug, Default)]
pub struct LatenessExpected {
    /// The result of every window over the events that are not too late for it (a window
    /// past its end plus the lateness at an event's watermark leaves it out). Exact when the
    /// watermark deciding is the partition's (one shard; or TUMBLE, where an event that is
    /// not too late has a single window, not past its lateness).
    pub final_results: WindowResults,
    /// Every window of every event that is not too late: an upper bound of the results on
    /// several shards, where the owner's watermark (the minimum over shards) decides
    /// whether a HOP window past its lateness on the event's shard still takes it.
    pub final_results_loose: WindowResults,
    /// The too-late events, in the late table's row form, partition by partition.
    pub too_late: Vec<Value>,
    /// Events late for a window already emitted but within the lateness.
    pub late_within: u64,
    /// One partition only: each window's result at its first emission (when the watermark
    /// first reached its end; the windows still open at the end of the input at the end).
    pub first_results: Option<WindowResults>,
}

/// Runs the oracle over `partitions` (one per shard).
pub fn expected(partitions: &[Vec<Trade>], case: &LatenessCase) -> LatenessExpected {
    let mut out = LatenessExpected::default();
    // A window is emitted when the watermark first reaches its end: an accepted event
    // counts in its first result when its window ends after the watermark before it.
    let mut first = WindowResults::new();
    for trades in partitions {
        let mut ts_max = i64::MIN;
        for t in trades {
            let watermark = if ts_max == i64::MIN {
                i64::MIN
            } else {
                ts_max - case.bound_ms
            };
            let last_end = case.last_window_end(t.ts);
            if last_end + case.lateness_ms <= watermark {
                out.too_late.push(t.late_row());
            } else {
                if last_end <= watermark {
                    out.late_within += 1;
                }
                for (start, end) in case.windows_of(t.ts) {
                    let key = (t.symbol.clone(), start, end);
                    let e = out.final_results_loose.entry(key.clone()).or_default();
                    e.0 += 1;
                    e.1 += t.volume;
                    if end + case.lateness_ms <= watermark {
                        // HOP: this window of the event is past its lateness.
                        continue;
                    }
                    let e = out.final_results.entry(key).or_default();
                    e.0 += 1;
                    e.1 += t.volume;
                    if partitions.len() == 1 && end > watermark {
                        let e = first.entry((t.symbol.clone(), start, end)).or_default();
                        e.0 += 1;
                        e.1 += t.volume;
                    }
                }
            }
            ts_max = ts_max.max(t.ts);
        }
    }
    if partitions.len() == 1 {
        out.first_results = Some(first);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_lateness_by_hand() {
        let hop = LatenessCase {
            size_ms: 2_000,
            slide_ms: 500,
            bound_ms: 100,
            lateness_ms: 1_000,
        };
        assert_eq!(
            hop.windows_of(1_200),
            vec![(-500, 1_500), (0, 2_000), (500, 2_500), (1_000, 3_000)]
        );
        assert_eq!(hop.last_window_end(1_200), 3_000);
        let tumble = LatenessCase {
            slide_ms: 1_000,
            size_ms: 1_000,
            ..hop
        };
        let t = |ts: i64, volume: i64| Trade {
            symbol: "A".into(),
            volume,
            ts,
        };
        // Watermark 2 900 after the second event: [0, 1 s) ended 1.9 s ago (too late with
        // 1 s of lateness); [2 s, 3 s) has not been emitted; [1 s, 2 s) is late but within.
        let e = expected(
            &[vec![
                t(100, 1),
                t(3_000, 2),
                t(500, 4),
                t(1_500, 8),
                t(2_500, 16),
            ]],
            &tumble,
        );
        assert_eq!(e.too_late, vec![t(500, 4).late_row()]);
        assert_eq!(e.late_within, 1);
        let first = e.first_results.expect("one partition");
        assert_eq!(first.get(&("A".into(), 0, 1_000)), Some(&(1, 1)));
        assert_eq!(
            first.get(&("A".into(), 1_000, 2_000)),
            None,
            "only an update"
        );
        assert_eq!(
            e.final_results.get(&("A".into(), 1_000, 2_000)),
            Some(&(1, 8))
        );
        assert_eq!(
            e.final_results.get(&("A".into(), 2_000, 3_000)),
            Some(&(1, 16))
        );
    }

    #[test]
    fn generated_data_has_both_kinds_of_late_events() {
        let case = LatenessCase {
            size_ms: 1_000,
            slide_ms: 1_000,
            bound_ms: 200,
            lateness_ms: 1_500,
        };
        let data = generate(2, 2_000, 1_700_000_000_000, &case, 25, 7);
        let e = expected(&data, &case);
        assert!(e.too_late.len() > 20, "too late: {}", e.too_late.len());
        assert!(e.late_within > 20, "within: {}", e.late_within);
        assert_eq!(data, generate(2, 2_000, 1_700_000_000_000, &case, 25, 7));
    }
}
