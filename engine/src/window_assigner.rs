//! Window assignment by shared panes.
//!
//! Every window kind is computed from *panes*: the tumbling windows of the pane length (TUMBLE:
//! size, HOP: slide, CUMULATE: step) on the window's grid (`offset + k * pane`). An event
//! updates exactly one pane, whatever the number of windows holding it; a window is the
//! union of the panes it covers, assembled when it fires. Window ends are pane boundaries,
//! and exactly one window ends at each boundary:
//!
//! - TUMBLE: the pane itself, `[end - size, end)`;
//! - HOP: `[end - size, end)`, `size / slide` panes;
//! - CUMULATE: `[cycle, end)` with `cycle` the start of the `max_size` cycle holding
//!   `end - 1`, from 1 to `max_size / step` panes.
//!
//! A pane is needed until its *last* window (the one ending at [`WindowAssigner::last_window_end`])
//! has fired: HOP `pane_start + size`, CUMULATE the end of its cycle, TUMBLE its own end.
//!
//! Times are Euclidean (negative times work too) and saturate at the ends of `i64`.

use crate::plan::{WindowKind, WindowSpec};

/// Most panes one window may span (HOP `size / slide`, CUMULATE `max_size / step`): firing a
/// window merges all its panes, so more would make each window cost more than its events.
pub const WINDOW_PANES_MAX: i64 = 10_000;

/// The start of the tumbling window of size `size_ms` (shifted by `offset_ms`) holding `ts`.
#[inline]
pub fn tumble_start(ts: i64, size_ms: i64, offset_ms: i64) -> i64 {
    debug_assert!(size_ms > 0);
    ts - (ts - offset_ms).rem_euclid(size_ms)
}

/// Assigns event times to panes and panes to windows, for one window spec.
#[derive(Debug, Clone, Copy)]
pub struct WindowAssigner {
    pane_ms: i64,
    /// The longest window (TUMBLE and HOP: size; CUMULATE: max size).
    size_ms: i64,
    offset_ms: i64,
    /// CUMULATE: windows restart every `size_ms`.
    cumulate: bool,
}

impl WindowAssigner {
    /// The assigner of `spec`. The planner guarantees positive lengths with the size a
    /// multiple of the pane; a spec without that is a bug.
    pub fn new(spec: &WindowSpec) -> Self {
        let kind = spec.kind;
        let (pane_ms, size_ms) = (kind.pane_ms(), kind.size_ms());
        assert!(
            pane_ms > 0 && size_ms >= pane_ms && size_ms % pane_ms == 0,
            "the planner refuses window {kind:?}: panes must tile the window"
        );
        WindowAssigner {
            pane_ms,
            size_ms,
            offset_ms: spec.offset_ms,
            cumulate: matches!(kind, WindowKind::Cumulate { .. }),
        }
    }

    /// The pane length.
    pub fn pane_ms(&self) -> i64 {
        self.pane_ms
    }

    /// The longest window's length.
    pub fn size_ms(&self) -> i64 {
        self.size_ms
    }

    /// Whether every window is one pane and every pane one window (TUMBLE, or a HOP or
    /// CUMULATE with size equal to its pane).
    pub fn one_pane_per_window(&self) -> bool {
        self.pane_ms == self.size_ms
    }

    /// The start of the pane holding `ts`.
    #[inline]
    pub fn pane_start(&self, ts: i64) -> i64 {
        tumble_start(ts, self.pane_ms, self.offset_ms)
    }

    /// The end of the pane starting at `pane_start`.
    #[inline]
    pub fn pane_end(&self, pane_start: i64) -> i64 {
        pane_start.saturating_add(self.pane_ms)
    }

    /// The end of the last window holding the pane that starts at `pane_start`: once the
    /// windows up to it have fired, the pane is no longer needed, and an event in it is late.
    #[inline]
    pub fn last_window_end(&self, pane_start: i64) -> i64 {
        if self.cumulate {
            tumble_start(pane_start, self.size_ms, self.offset_ms).saturating_add(self.size_ms)
        } else {
            pane_start.saturating_add(self.size_ms)
        }
    }

    /// The start of the one window that ends at the pane boundary `end`.
    #[inline]
    pub fn window_start_of_end(&self, end: i64) -> i64 {
        if self.cumulate {
            tumble_start(end.saturating_sub(1), self.size_ms, self.offset_ms)
        } else {
            end.saturating_sub(self.size_ms)
        }
    }

    /// The first pane boundary (and so window end) after `t`; None past the end of `i64`.
    #[inline]
    pub fn next_window_end_after(&self, t: i64) -> Option<i64> {
        tumble_start(t, self.pane_ms, self.offset_ms).checked_add(self.pane_ms)
    }

    /// Every window `[start, end)` holding `ts`, by end (for tests and explanations; the
    /// operators never enumerate windows per event).
    pub fn windows_of(&self, ts: i64) -> Vec<(i64, i64)> {
        let pane = self.pane_start(ts);
        let last = self.last_window_end(pane);
        let mut out = Vec::new();
        let mut end = self.pane_end(pane);
        while end <= last {
            out.push((self.window_start_of_end(end), end));
            match end.checked_add(self.pane_ms) {
                Some(next) => end = next,
                None => break,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec(kind: WindowKind, offset_ms: i64) -> WindowSpec {
        WindowSpec {
            kind,
            time_column: 0,
            offset_ms,
        }
    }

    fn hop(size_ms: i64, slide_ms: i64, offset_ms: i64) -> WindowAssigner {
        WindowAssigner::new(&spec(WindowKind::Hop { size_ms, slide_ms }, offset_ms))
    }

    fn cumulate(step_ms: i64, max_size_ms: i64, offset_ms: i64) -> WindowAssigner {
        WindowAssigner::new(&spec(
            WindowKind::Cumulate {
                step_ms,
                max_size_ms,
            },
            offset_ms,
        ))
    }

    #[test]
    fn examples() {
        assert_eq!(tumble_start(1_999, 1_000, 0), 1_000);
        assert_eq!(tumble_start(2_000, 1_000, 0), 2_000);
        assert_eq!(tumble_start(-1, 1_000, 0), -1_000);
        assert_eq!(tumble_start(1_250, 1_000, 500), 500);
    }

    #[test]
    fn tumble_is_one_pane_per_window() {
        let a = WindowAssigner::new(&spec(WindowKind::Tumble { size_ms: 1_000 }, 0));
        assert!(a.one_pane_per_window());
        assert_eq!(a.pane_start(1_999), 1_000);
        assert_eq!(a.last_window_end(1_000), 2_000);
        assert_eq!(a.windows_of(1_999), vec![(1_000, 2_000)]);
    }

    #[test]
    fn hop_examples() {
        // 10 s windows every 2 s: an event at 11.5 s is in the windows starting at 2, 4, 6,
        // 8 and 10 s; its pane [10 s, 12 s) is needed until the window ending at 20 s.
        let a = hop(10_000, 2_000, 0);
        assert_eq!(a.pane_start(11_500), 10_000);
        assert_eq!(a.last_window_end(10_000), 20_000);
        assert_eq!(
            a.windows_of(11_500),
            vec![
                (2_000, 12_000),
                (4_000, 14_000),
                (6_000, 16_000),
                (8_000, 18_000),
                (10_000, 20_000)
            ]
        );
        assert_eq!(a.window_start_of_end(12_000), 2_000);
        assert_eq!(a.next_window_end_after(12_000), Some(14_000));
        assert_eq!(a.next_window_end_after(12_001), Some(14_000));
        // with an offset of 500 ms the grid moves
        assert_eq!(hop(4_000, 1_000, 500).windows_of(0)[0], (-3_500, 500));
    }

    #[test]
    fn cumulate_examples() {
        // step 1 s, max 3 s: cycles [0, 3 s), [3 s, 6 s); an event at 1.2 s is in [0, 2 s)
        // and [0, 3 s), and its pane is needed until 3 s.
        let a = cumulate(1_000, 3_000, 0);
        assert_eq!(a.pane_start(1_200), 1_000);
        assert_eq!(a.last_window_end(1_000), 3_000);
        assert_eq!(a.windows_of(1_200), vec![(0, 2_000), (0, 3_000)]);
        assert_eq!(
            a.windows_of(3_000),
            vec![(3_000, 4_000), (3_000, 5_000), (3_000, 6_000)]
        );
        assert_eq!(a.window_start_of_end(3_000), 0);
        assert_eq!(a.window_start_of_end(4_000), 3_000);
        assert_eq!(a.windows_of(-1), vec![(-3_000, 0)]);
    }

    #[test]
    fn extremes_saturate() {
        let a = hop(10_000, 2_000, 0);
        assert_eq!(a.next_window_end_after(i64::MAX), None);
        assert!(a.last_window_end(a.pane_start(i64::MAX)) == i64::MAX);
        assert!(!a.windows_of(i64::MAX).is_empty());
        assert!(!a.windows_of(i64::MIN + 1).is_empty());
        let c = cumulate(1_000, 3_000, 0);
        assert!(!c.windows_of(i64::MAX - 5).is_empty());
    }

    /// The HOP windows holding `ts`, computed naively from the window starts.
    fn hop_windows_naive(ts: i64, size: i64, slide: i64, off: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        let first = tumble_start(ts - size, slide, off);
        let mut s = first;
        while s <= ts {
            if s <= ts && ts < s + size {
                out.push((s, s + size));
            }
            s += slide;
        }
        out
    }

    proptest! {
        #[test]
        fn window_holds_its_event(ts in -1_000_000_000_000i64..4_000_000_000_000, size in 1i64..86_400_000, off in 0i64..1_000) {
            let s = tumble_start(ts, size, off);
            prop_assert!(s <= ts && ts < s + size);
            prop_assert_eq!((s - off).rem_euclid(size), 0);
        }

        #[test]
        fn every_event_is_in_size_over_slide_hop_windows(
            ts in -1_000_000_000i64..4_000_000_000_000,
            slide in 1i64..5_000,
            panes in 1i64..40,
            off in 0i64..5_000,
        ) {
            let size = slide * panes;
            let off = off % slide;
            let a = hop(size, slide, off);
            let windows = a.windows_of(ts);
            prop_assert_eq!(windows.len() as i64, panes);
            prop_assert_eq!(&windows, &hop_windows_naive(ts, size, slide, off));
            // the event's pane lies inside every one of its windows
            let p = a.pane_start(ts);
            for &(s, e) in &windows {
                prop_assert!(s <= p && a.pane_end(p) <= e);
            }
            prop_assert_eq!(windows.last().map(|w| w.1), Some(a.last_window_end(p)));
        }

        #[test]
        fn every_window_is_the_union_of_its_panes(
            end_k in -1_000_000i64..1_000_000,
            pane in 1i64..5_000,
            panes in 1i64..40,
            off in 0i64..5_000,
            cumulating in any::<bool>(),
        ) {
            let size = pane * panes;
            let (a, off) = if cumulating {
                let off = off % size;
                (cumulate(pane, size, off), off)
            } else {
                let off = off % pane;
                (hop(size, pane, off), off)
            };
            let end = off + end_k * pane;
            let start = a.window_start_of_end(end);
            prop_assert!(start < end && end - start <= size);
            prop_assert_eq!((end - start) % pane, 0);
            // The panes tiling [start, end) each count this window among theirs, and the
            // ones just outside do not.
            let mut p = start;
            while p < end {
                prop_assert_eq!(a.pane_start(p), p);
                prop_assert!(a.windows_of(p).contains(&(start, end)), "pane {} of [{}, {})", p, start, end);
                p += pane;
            }
            prop_assert!(!a.windows_of(end).contains(&(start, end)));
            prop_assert!(!a.windows_of(start - 1).contains(&(start, end)));
        }

        #[test]
        fn cumulate_windows_start_at_their_cycle(
            ts in -1_000_000_000i64..4_000_000_000_000,
            step in 1i64..5_000,
            steps in 1i64..40,
            off in 0i64..200_000,
        ) {
            let max = step * steps;
            let off = off % max;
            let a = cumulate(step, max, off);
            let cycle = tumble_start(ts, max, off);
            let windows = a.windows_of(ts);
            // one window per step boundary after the event's pane, up to the cycle's end
            let expected: Vec<(i64, i64)> = (1..=steps)
                .map(|j| (cycle, cycle + j * step))
                .filter(|&(_, e)| e > ts)
                .collect();
            prop_assert_eq!(windows, expected);
        }
    }
}
