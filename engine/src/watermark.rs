//! Event-time watermarks: per partition `max(ts) - bound`, per shard the minimum over its
//! partitions that are neither idle nor finished. Monotone: never moves back.
//!
//! For windows over a processing-time column (`crate::proctime`) the tracker is built with
//! [`WatermarkTracker::processing_time`]: the watermark is then the wall clock (in steps of
//! `PROCTIME_WATERMARK_STEP_MS`), advancing with no input at all, and +infinity once every
//! partition finished.

use std::time::{Duration, Instant};

/// The watermark before any event: nothing is complete.
pub const WATERMARK_MIN: i64 = i64::MIN;
/// The watermark of a finished (bounded) input: everything is complete.
pub const WATERMARK_MAX: i64 = i64::MAX;

#[derive(Debug, Clone)]
struct PartitionClock {
    /// Largest event time seen, or WATERMARK_MIN.
    ts_max: i64,
    last_event: Instant,
    finished: bool,
}

/// Watermarks of the partitions one shard owns.
#[derive(Debug, Clone)]
pub struct WatermarkTracker {
    bound_ms: i64,
    idle_timeout: Duration,
    partitions: Vec<PartitionClock>,
    /// The shard watermark last returned; never decreases.
    current: i64,
    /// The watermark is the wall clock (processing-time windows), not the event times.
    processing_time: bool,
}

/// The state of a shard's watermark after an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardWatermark {
    pub watermark: i64,
    /// Every partition is idle (none finished, none active): the shard holds no one back.
    pub idle: bool,
}

impl WatermarkTracker {
    pub fn new(partitions: usize, bound_ms: i64, idle_timeout: Duration, now: Instant) -> Self {
        assert!(bound_ms >= 0, "watermark bound must not be negative");
        WatermarkTracker {
            bound_ms,
            idle_timeout,
            partitions: vec![
                PartitionClock {
                    ts_max: WATERMARK_MIN,
                    last_event: now,
                    finished: false,
                };
                partitions
            ],
            current: if partitions == 0 {
                WATERMARK_MAX
            } else {
                WATERMARK_MIN
            },
            processing_time: false,
        }
    }

    /// A tracker whose watermark is the wall clock (`crate::proctime::wall_ms_at`), for
    /// windows over a processing-time column: never idle, +infinity once every partition
    /// finished. Event times observed are kept (checkpoints) but do not move it.
    pub fn processing_time(partitions: usize, now: Instant) -> Self {
        let mut tracker = WatermarkTracker::new(partitions, 0, Duration::MAX, now);
        tracker.processing_time = true;
        tracker
    }

    /// Records an event time seen on `partition`.
    #[inline]
    pub fn observe(&mut self, partition: usize, ts: i64, now: Instant) {
        let p = &mut self.partitions[partition];
        if ts > p.ts_max {
            p.ts_max = ts;
        }
        p.last_event = now;
    }

    /// The largest event time seen on `partition` (WATERMARK_MIN before any): what a
    /// checkpoint keeps of the partition's clock.
    pub fn ts_max(&self, partition: usize) -> i64 {
        self.partitions[partition].ts_max
    }

    /// Restores a partition's clock from a checkpoint (before any event is observed).
    pub fn restore_ts_max(&mut self, partition: usize, ts_max: i64) {
        let p = &mut self.partitions[partition];
        p.ts_max = p.ts_max.max(ts_max);
    }

    /// Records that `partition` delivered everything it will (bounded input).
    pub fn finish(&mut self, partition: usize) {
        self.partitions[partition].finished = true;
    }

    /// The watermark of one partition (`max(ts) - bound`), WATERMARK_MAX once finished.
    pub fn partition_watermark(&self, partition: usize) -> i64 {
        let p = &self.partitions[partition];
        if p.finished {
            WATERMARK_MAX
        } else if p.ts_max == WATERMARK_MIN {
            WATERMARK_MIN
        } else {
            p.ts_max.saturating_sub(self.bound_ms)
        }
    }

    /// The current shard watermark (what the last `advance` returned).
    pub fn current(&self) -> i64 {
        self.current
    }

    /// Recomputes the shard watermark: the minimum over partitions that are not idle (no
    /// event for `idle_timeout`) and not finished. Finished partitions count as +infinity; if
    /// every unfinished partition is idle, the watermark stays where it is and the shard is
    /// reported idle.
    pub fn advance(&mut self, now: Instant) -> ShardWatermark {
        if self.processing_time {
            return self.advance_processing_time(now);
        }
        let mut min = WATERMARK_MAX;
        let mut active = false;
        let mut idle_any = false;
        for (i, p) in self.partitions.iter().enumerate() {
            if p.finished {
                continue;
            }
            if now.saturating_duration_since(p.last_event) >= self.idle_timeout {
                idle_any = true;
                continue;
            }
            active = true;
            min = min.min(self.partition_watermark(i));
        }
        let idle = !active && idle_any;
        if !idle && min > self.current {
            self.current = min;
        }
        ShardWatermark {
            watermark: self.current,
            idle,
        }
    }

    /// [`Self::advance`] of a processing-time tracker.
    fn advance_processing_time(&mut self, now: Instant) -> ShardWatermark {
        let step = crate::proctime::PROCTIME_WATERMARK_STEP_MS;
        let clock = if self.partitions.iter().all(|p| p.finished) {
            WATERMARK_MAX
        } else {
            crate::proctime::wall_ms_at(now).div_euclid(step) * step
        };
        if clock > self.current {
            self.current = clock;
        }
        ShardWatermark {
            watermark: self.current,
            idle: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn minimum_over_partitions_minus_bound() {
        let t0 = Instant::now();
        let mut w = WatermarkTracker::new(2, 100, Duration::from_secs(60), t0);
        w.observe(0, 1_000, t0);
        assert_eq!(
            w.advance(t0).watermark,
            WATERMARK_MIN,
            "partition 1 has no data yet"
        );
        w.observe(1, 500, t0);
        assert_eq!(w.advance(t0).watermark, 400);
        w.observe(1, 2_000, t0);
        assert_eq!(w.advance(t0).watermark, 900);
    }

    #[test]
    fn idle_partition_does_not_stall_and_resumes_without_going_back() {
        let t0 = Instant::now();
        let mut w = WatermarkTracker::new(2, 0, Duration::from_millis(10), t0);
        w.observe(0, 1_000, t0);
        let later = t0 + Duration::from_millis(20);
        w.observe(0, 5_000, later);
        // partition 1 never had data and is idle now: it no longer holds the watermark
        assert_eq!(
            w.advance(later),
            ShardWatermark {
                watermark: 5_000,
                idle: false
            }
        );
        // partition 1 wakes up with old data: the watermark does not move back
        w.observe(1, 10, later);
        assert_eq!(w.advance(later).watermark, 5_000);
    }

    #[test]
    fn all_idle_holds_and_reports_idle() {
        let t0 = Instant::now();
        let mut w = WatermarkTracker::new(1, 0, Duration::from_millis(10), t0);
        w.observe(0, 7, t0);
        assert_eq!(w.advance(t0).watermark, 7);
        let s = w.advance(t0 + Duration::from_millis(50));
        assert_eq!(
            s,
            ShardWatermark {
                watermark: 7,
                idle: true
            }
        );
    }

    #[test]
    fn finished_partitions_count_as_infinite() {
        let t0 = Instant::now();
        let mut w = WatermarkTracker::new(2, 0, Duration::from_secs(60), t0);
        w.observe(0, 100, t0);
        w.finish(1);
        assert_eq!(w.advance(t0).watermark, 100);
        w.finish(0);
        assert_eq!(w.advance(t0).watermark, WATERMARK_MAX);
        assert_eq!(
            WatermarkTracker::new(0, 0, Duration::ZERO, t0).current(),
            WATERMARK_MAX
        );
    }

    #[test]
    fn processing_time_follows_the_wall_clock_without_input() {
        let step = crate::proctime::PROCTIME_WATERMARK_STEP_MS;
        let t0 = Instant::now();
        let mut w = WatermarkTracker::processing_time(2, t0);
        let first = w.advance(t0);
        assert!(!first.idle);
        assert_eq!(first.watermark % step, 0);
        let wall = crate::proctime::wall_ms_at(t0);
        assert!(first.watermark <= wall && wall - first.watermark < step);
        // No event at all, yet the clock moves: windows fire on an idle shard.
        let later = t0 + Duration::from_millis(1_000);
        assert_eq!(w.advance(later).watermark, first.watermark + 1_000);
        // Event times do not move it, nor an earlier instant move it back.
        w.observe(0, i64::MAX - 1, later);
        assert_eq!(w.advance(t0).watermark, first.watermark + 1_000);
        // Every partition finished: +infinity, as for event time.
        w.finish(0);
        assert_eq!(w.advance(later).watermark, first.watermark + 1_000);
        w.finish(1);
        assert_eq!(w.advance(later).watermark, WATERMARK_MAX);
        assert_eq!(
            WatermarkTracker::processing_time(0, t0)
                .advance(t0)
                .watermark,
            WATERMARK_MAX
        );
    }

    proptest! {
        /// A processing-time watermark is monotone, on the step grid, and never ahead of the
        /// wall clock.
        #[test]
        fn processing_time_is_monotone_and_behind_the_clock(
            steps in proptest::collection::vec(0u64..5_000, 1..100),
        ) {
            let t0 = Instant::now();
            let mut w = WatermarkTracker::processing_time(1, t0);
            let mut clock = t0;
            let mut prev = WATERMARK_MIN;
            for dt in steps {
                clock += Duration::from_millis(dt);
                let s = w.advance(clock);
                prop_assert!(s.watermark >= prev);
                prop_assert!(s.watermark <= crate::proctime::wall_ms_at(clock));
                prop_assert_eq!(s.watermark % crate::proctime::PROCTIME_WATERMARK_STEP_MS, 0);
                prev = s.watermark;
            }
        }

        #[test]
        fn watermark_is_monotone_and_never_passes_a_live_partition(
            events in proptest::collection::vec((0usize..3, -1_000i64..1_000_000, 0u64..50), 1..200),
            bound in 0i64..10_000,
        ) {
            let t0 = Instant::now();
            let mut w = WatermarkTracker::new(3, bound, Duration::from_millis(1_000), t0);
            let mut prev = WATERMARK_MIN;
            let mut max_ts = [WATERMARK_MIN; 3];
            let mut clock = t0;
            for (p, ts, dt) in events {
                clock += Duration::from_millis(dt);
                w.observe(p, ts, clock);
                max_ts[p] = max_ts[p].max(ts);
                let s = w.advance(clock);
                prop_assert!(s.watermark >= prev);
                prev = s.watermark;
                // the watermark never exceeds (max_ts - bound) of a partition that is live
                // and has data
                for (i, m) in max_ts.iter().enumerate() {
                    let live = clock.saturating_duration_since(w.partitions[i].last_event)
                        < Duration::from_millis(1_000);
                    if live && *m != WATERMARK_MIN && s.watermark != prev {
                        prop_assert!(s.watermark <= m - bound);
                    }
                }
            }
        }
    }
}
