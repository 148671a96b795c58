//! Window assignment of the oracle, naively: every window holding an event.

use super::tumble_window;

/// The hopping windows `[start, start + size_ms)` starting every `slide_ms` (at `offset_ms +
/// k * slide_ms`) that hold `ts`, by start.
pub fn hop_windows(ts: i64, size_ms: i64, slide_ms: i64, offset_ms: i64) -> Vec<(i64, i64)> {
    assert!(
        size_ms > 0 && slide_ms > 0,
        "oracle: HOP lengths must be positive"
    );
    let mut k = (ts - size_ms - offset_ms).div_euclid(slide_ms);
    let mut out = Vec::new();
    loop {
        let start = offset_ms + k * slide_ms;
        if start > ts {
            return out;
        }
        if ts < start + size_ms {
            out.push((start, start + size_ms));
        }
        k += 1;
    }
}

/// The cumulating windows holding `ts`: in the cycle `[c, c + max_ms)` (`c = offset_ms + k *
/// max_ms`) holding it, the windows `[c, c + j * step_ms)` that contain `ts`, by end.
pub fn cumulate_windows(ts: i64, step_ms: i64, max_ms: i64, offset_ms: i64) -> Vec<(i64, i64)> {
    assert!(
        step_ms > 0 && max_ms > 0,
        "oracle: CUMULATE lengths must be positive"
    );
    let (cycle, _) = tumble_window(ts, max_ms, offset_ms);
    (1..=max_ms / step_ms)
        .map(|j| (cycle, cycle + j * step_ms))
        .filter(|&(_, end)| ts < end)
        .collect()
}

/// The window kind of a test query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Windows {
    Tumble { size_ms: i64 },
    Hop { size_ms: i64, slide_ms: i64 },
    Cumulate { step_ms: i64, max_ms: i64 },
}

impl Windows {
    /// Every window holding `ts` on the grid shifted by `offset_ms`.
    pub(super) fn holding(self, ts: i64, offset_ms: i64) -> Vec<(i64, i64)> {
        match self {
            Windows::Tumble { size_ms } => vec![tumble_window(ts, size_ms, offset_ms)],
            Windows::Hop { size_ms, slide_ms } => hop_windows(ts, size_ms, slide_ms, offset_ms),
            Windows::Cumulate { step_ms, max_ms } => {
                cumulate_windows(ts, step_ms, max_ms, offset_ms)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_and_cumulate_windows_are_every_window_holding_the_event() {
        assert_eq!(
            hop_windows(11_500, 10_000, 2_000, 0),
            vec![
                (2_000, 12_000),
                (4_000, 14_000),
                (6_000, 16_000),
                (8_000, 18_000),
                (10_000, 20_000)
            ]
        );
        assert_eq!(
            hop_windows(-1, 4_000, 1_000, 500),
            vec![
                (-3_500, 500),
                (-2_500, 1_500),
                (-1_500, 2_500),
                (-500, 3_500)
            ]
        );
        assert_eq!(
            hop_windows(2_000, 1_000, 1_000, 0),
            vec![tumble_window(2_000, 1_000, 0)]
        );
        assert_eq!(
            cumulate_windows(1_200, 1_000, 3_000, 0),
            vec![(0, 2_000), (0, 3_000)]
        );
        assert_eq!(cumulate_windows(2_999, 1_000, 3_000, 0), vec![(0, 3_000)]);
        assert_eq!(cumulate_windows(-1, 1_000, 3_000, 0), vec![(-3_000, 0)]);
    }
}
