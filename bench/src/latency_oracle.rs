//! Matching windowed results to the events they cover, after a run of `spillway-bench
//! latency`. The events are replayed from their schedule (in send order): per (symbol,
//! window) the number sent and the intended send time of the last one; and the watermark
//! as the engine computes it (per partition max event time minus the bound, minimum over
//! partitions) with the intended send time of the event that raised it. A window closes
//! when that watermark reaches its end; the event that made it reach the end is the one
//! the result waits for.

use std::collections::HashMap;

use hdrhistogram::Histogram;

use crate::error::{BenchError, Result};
use crate::latency_load::{symbol_index, symbol_name, EventSchedule};
use crate::latency_sink::WindowArrival;
use crate::latency_stats::{latency_histogram, Timeline};

/// Largest number of (symbol, window) pairs the replay holds.
pub const REPLAY_PAIRS_MAX: usize = 20_000_000;
/// Largest number of watermark steps the replay holds (at most one per ms of event time).
pub const WATERMARK_STEPS_MAX: usize = 20_000_000;

/// The windowed query's windows (tumbling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowShape {
    pub size_ms: i64,
    pub offset_ms: i64,
    /// The source's watermark bound.
    pub bound_ms: i64,
}

impl WindowShape {
    /// Start of the window holding `ts_ms`.
    pub fn start(&self, ts_ms: i64) -> i64 {
        ts_ms - (ts_ms - self.offset_ms).rem_euclid(self.size_ms)
    }
}

#[derive(Debug, Clone, Copy)]
struct Sent {
    count: u64,
    last_ns: u64,
}

/// What the replay of the sent events says the results must be.
#[derive(Debug, Clone)]
pub struct Replay {
    shape: WindowShape,
    pairs: HashMap<(u32, i64), Sent>,
    /// (watermark, intended ns of the event that raised it), increasing.
    steps: Vec<(i64, u64)>,
}

impl Replay {
    /// Replays events `0 .. sent`.
    pub fn new(schedule: &EventSchedule, sent: u64, shape: WindowShape) -> Result<Self> {
        let mut pairs: HashMap<(u32, i64), Sent> = HashMap::new();
        let mut ts_max = vec![i64::MIN; schedule.partitions.max(1)];
        let mut steps: Vec<(i64, u64)> = Vec::new();
        for seq in 0..sent {
            let e = schedule.event(seq);
            let ns = schedule.intended_ns(seq);
            let s = pairs
                .entry((e.symbol, shape.start(e.ts_ms)))
                .or_insert(Sent {
                    count: 0,
                    last_ns: 0,
                });
            s.count += 1;
            s.last_ns = ns;
            if e.ts_ms > ts_max[e.partition] {
                ts_max[e.partition] = e.ts_ms;
                let min = ts_max.iter().copied().min().unwrap_or(i64::MIN);
                if min != i64::MIN {
                    let wm = min - shape.bound_ms;
                    if steps.last().is_none_or(|&(last, _)| wm > last) {
                        steps.push((wm, ns));
                    }
                }
            }
            if pairs.len() > REPLAY_PAIRS_MAX || steps.len() > WATERMARK_STEPS_MAX {
                return Err(BenchError::Config(format!(
                    "the run is too long to replay (over {REPLAY_PAIRS_MAX} windows or \
                     {WATERMARK_STEPS_MAX} watermark steps): shorten --duration"
                )));
            }
        }
        Ok(Replay {
            shape,
            pairs,
            steps,
        })
    }

    /// The watermark after the last event.
    pub fn watermark(&self) -> i64 {
        self.steps.last().map(|s| s.0).unwrap_or(i64::MIN)
    }

    /// Intended ns of the event that raised the watermark to `end` or beyond.
    pub fn crossing_ns(&self, end: i64) -> Option<u64> {
        let i = self.steps.partition_point(|&(wm, _)| wm < end);
        self.steps.get(i).map(|s| s.1)
    }

    /// Result rows the engine must have emitted: pairs whose window closed.
    pub fn rows_closed(&self) -> u64 {
        let wm = self.watermark();
        self.pairs
            .keys()
            .filter(|(_, start)| start + self.shape.size_ms <= wm)
            .count() as u64
    }
}

/// Windowed latencies, µs, of the results whose reference event was sent after warm-up.
#[derive(Debug, Clone)]
pub struct WindowLatencies {
    /// From the event that moved the watermark past the window's end to the result.
    pub crossing_us: Histogram<u64>,
    /// From the last event of the (symbol, window) to the result.
    pub last_event_us: Histogram<u64>,
    pub crossing_timeline: Timeline,
    /// Result rows checked (all of them, warm-up included).
    pub rows_checked: u64,
    pub windows_checked: u64,
}

/// Checks every result against the replay and measures its latencies: each closed (symbol,
/// window) exactly once with the COUNT sent, nothing for windows that did not close.
pub fn match_windows(
    replay: &Replay,
    arrivals: &[WindowArrival],
    warmup_ns: u64,
) -> Result<WindowLatencies> {
    let wrong = |m: String| Err(BenchError::WrongResult(m));
    let wm = replay.watermark();
    let size = replay.shape.size_ms;
    let mut seen: HashMap<(u32, i64), ()> = HashMap::with_capacity(arrivals.len());
    let mut ends: HashMap<i64, ()> = HashMap::new();
    let mut out = WindowLatencies {
        crossing_us: latency_histogram(),
        last_event_us: latency_histogram(),
        crossing_timeline: Timeline::default(),
        rows_checked: 0,
        windows_checked: 0,
    };
    for a in arrivals {
        let what = format!(
            "result ({}, window {} .. {})",
            a.symbol, a.window_start, a.window_end
        );
        let Some(symbol) = symbol_index(&a.symbol) else {
            return wrong(format!("{what}: symbol was never sent"));
        };
        if a.window_end != a.window_start + size
            || replay.shape.start(a.window_start) != a.window_start
        {
            return wrong(format!("{what}: not a {size} ms window of the query"));
        }
        let Some(sent) = replay.pairs.get(&(symbol, a.window_start)) else {
            return wrong(format!(
                "{what}: no event of this symbol was sent in this window"
            ));
        };
        if a.window_end > wm {
            return wrong(format!(
                "{what}: emitted although the watermark of the events sent ({wm}) never \
                 reached the window's end (an idle timeout shorter than the drain?)"
            ));
        }
        if a.count < 0 || a.count as u64 != sent.count {
            return wrong(format!(
                "{what}: COUNT(*) = {}, but {} events were sent (none late: disorder {} ms \
                 < bound {} ms)",
                a.count,
                sent.count,
                crate::latency_load::LOAD_DISORDER_MS,
                replay.shape.bound_ms
            ));
        }
        if seen.insert((symbol, a.window_start), ()).is_some() {
            return wrong(format!("{what}: emitted more than once"));
        }
        let crossing = replay.crossing_ns(a.window_end).ok_or_else(|| {
            BenchError::WrongResult(format!("{what}: no watermark step reaches its end"))
        })?;
        out.rows_checked += 1;
        ends.insert(a.window_end, ());
        if crossing >= warmup_ns {
            let us = a.arrival_ns.saturating_sub(crossing) / 1_000;
            out.crossing_us.saturating_record(us.max(1));
            out.crossing_timeline.record(a.arrival_ns, us.max(1));
        }
        if sent.last_ns >= warmup_ns {
            let us = a.arrival_ns.saturating_sub(sent.last_ns) / 1_000;
            out.last_event_us.saturating_record(us.max(1));
        }
    }
    let closed = replay.rows_closed();
    if out.rows_checked != closed {
        let missing: Vec<String> = replay
            .pairs
            .keys()
            .filter(|(s, start)| start + size <= wm && !seen.contains_key(&(*s, *start)))
            .take(3)
            .map(|(s, start)| format!("({}, {start})", symbol_name(*s)))
            .collect();
        return wrong(format!(
            "{} result rows arrived, {closed} windows closed by the watermark of the events \
             sent; missing e.g. {missing:?} (the engine fell behind, or lost them)",
            out.rows_checked
        ));
    }
    out.windows_checked = ends.len() as u64;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> EventSchedule {
        EventSchedule {
            rate_total: 2_000,
            partitions: 2,
            epoch_ms_start: 1_700_000_000_300,
            seed: 3,
            offset_ns: 0,
        }
    }

    const SHAPE: WindowShape = WindowShape {
        size_ms: 1_000,
        offset_ms: 0,
        bound_ms: 1_000,
    };

    /// The results a correct engine emits for `replay`, arriving 1 ms after the crossing.
    fn correct(replay: &Replay) -> Vec<WindowArrival> {
        let wm = replay.watermark();
        replay
            .pairs
            .iter()
            .filter(|((_, s), _)| s + 1_000 <= wm)
            .map(|((sym, s), sent)| WindowArrival {
                symbol: symbol_name(*sym),
                window_start: *s,
                window_end: s + 1_000,
                count: sent.count as i64,
                arrival_ns: replay.crossing_ns(s + 1_000).expect("closed") + 1_000_000,
            })
            .collect()
    }

    #[test]
    fn correct_results_pass_and_latency_is_measured_from_the_crossing() {
        let replay = Replay::new(&schedule(), 8_000, SHAPE).expect("replay");
        let arrivals = correct(&replay);
        assert!(!arrivals.is_empty());
        let l = match_windows(&replay, &arrivals, 0).expect("match");
        assert_eq!(l.rows_checked, arrivals.len() as u64);
        assert!(
            l.windows_checked >= 2,
            "4 s of events close several windows"
        );
        assert_eq!(l.crossing_us.min(), 1_000);
        assert_eq!(l.crossing_us.max() / 10, 100, "1 ms, 3 significant digits");
        assert!(
            l.last_event_us.min() > 900_000,
            "the bound (1 s) less the disorder (100 ms) adds to it"
        );
    }

    #[test]
    fn crossing_is_the_first_step_at_or_past_the_end() {
        let replay = Replay::new(&schedule(), 8_000, SHAPE).expect("replay");
        let end = replay.steps[10].0;
        assert_eq!(replay.crossing_ns(end), Some(replay.steps[10].1));
        let after_previous = replay.steps[9].0 + 1;
        assert_eq!(replay.crossing_ns(after_previous), Some(replay.steps[10].1));
        assert!(replay
            .steps
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        assert_eq!(replay.crossing_ns(replay.watermark() + 1), None);
    }

    #[test]
    fn wrong_missing_duplicate_or_early_results_fail() {
        let replay = Replay::new(&schedule(), 8_000, SHAPE).expect("replay");
        let good = correct(&replay);
        let mut bad = good.clone();
        bad[0].count += 1;
        let e = match_windows(&replay, &bad, 0).expect_err("count");
        assert!(e.to_string().contains("COUNT(*)"), "{e}");
        let e = match_windows(&replay, &good[1..], 0).expect_err("missing");
        assert!(e.to_string().contains("missing"), "{e}");
        let mut twice = good.clone();
        twice.push(good[0].clone());
        let e = match_windows(&replay, &twice, 0).expect_err("twice");
        assert!(e.to_string().contains("more than once"), "{e}");
        let open = replay
            .pairs
            .iter()
            .find(|((_, s), _)| s + 1_000 > replay.watermark())
            .map(|((sym, s), sent)| WindowArrival {
                symbol: symbol_name(*sym),
                window_start: *s,
                window_end: s + 1_000,
                count: sent.count as i64,
                arrival_ns: 0,
            })
            .expect("an open window");
        let mut early = good;
        early.push(open);
        let e = match_windows(&replay, &early, 0).expect_err("early");
        assert!(e.to_string().contains("never"), "{e}");
    }

    #[test]
    fn warmup_excludes_early_results_from_the_figures_only() {
        let replay = Replay::new(&schedule(), 8_000, SHAPE).expect("replay");
        let arrivals = correct(&replay);
        let l = match_windows(&replay, &arrivals, 3_000_000_000).expect("match");
        assert_eq!(l.rows_checked, arrivals.len() as u64);
        assert!(l.crossing_us.len() < arrivals.len() as u64);
    }
}
