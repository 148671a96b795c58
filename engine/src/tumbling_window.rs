//! Window assignment. Tumbling windows: `[start, start + size)` with
//! `start = ts - (ts - offset) mod size` (Euclidean, so negative times work too).

use crate::plan::{WindowKind, WindowSpec};

/// The start of the tumbling window of size `size_ms` (shifted by `offset_ms`) holding `ts`.
#[inline]
pub fn tumble_start(ts: i64, size_ms: i64, offset_ms: i64) -> i64 {
    debug_assert!(size_ms > 0);
    ts - (ts - offset_ms).rem_euclid(size_ms)
}

/// Assigns event times to windows for one window spec.
#[derive(Debug, Clone, Copy)]
pub struct WindowAssigner {
    size_ms: i64,
    offset_ms: i64,
}

impl WindowAssigner {
    pub fn new(spec: &WindowSpec) -> Self {
        match spec.kind {
            WindowKind::Tumble { size_ms } => {
                assert!(size_ms > 0, "the planner refuses empty windows");
                WindowAssigner {
                    size_ms,
                    offset_ms: spec.offset_ms,
                }
            }
        }
    }

    /// The window `[start, end)` holding `ts`.
    #[inline]
    pub fn assign(&self, ts: i64) -> (i64, i64) {
        let start = tumble_start(ts, self.size_ms, self.offset_ms);
        (start, start.saturating_add(self.size_ms))
    }

    pub fn size_ms(&self) -> i64 {
        self.size_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        assert_eq!(tumble_start(1_999, 1_000, 0), 1_000);
        assert_eq!(tumble_start(2_000, 1_000, 0), 2_000);
        assert_eq!(tumble_start(-1, 1_000, 0), -1_000);
        assert_eq!(tumble_start(1_250, 1_000, 500), 500);
    }

    proptest! {
        #[test]
        fn window_holds_its_event(ts in -1_000_000_000_000i64..4_000_000_000_000, size in 1i64..86_400_000, off in 0i64..1_000) {
            let s = tumble_start(ts, size, off);
            prop_assert!(s <= ts && ts < s + size);
            prop_assert_eq!((s - off).rem_euclid(size), 0);
        }
    }
}
