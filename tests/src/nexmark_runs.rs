//! The three ways every windowed Nexmark query is run by the golden tests: straight (one
//! partition, one shard), with event times out of order within the watermark bound (2
//! partitions on 2 shards), and with keys spread over 4 partitions on 2 shards.

use spillway_connectors::nexmark::StreamConfig;

/// One way to run a query over the `nexmark` source.
#[derive(Debug, Clone, Copy)]
pub struct NexmarkRun {
    pub seed: u64,
    /// Events of the whole stream (all kinds).
    pub events: u64,
    /// Events per second of event time.
    pub event_rate: u64,
    pub disorder_ms: u64,
    pub partitions: u32,
    pub shards: usize,
}

impl NexmarkRun {
    /// The generator settings of this run (for the oracle's copy of the stream).
    pub fn stream(&self) -> StreamConfig {
        StreamConfig {
            seed: self.seed,
            event_rate: self.event_rate,
            disorder_ms: self.disorder_ms,
            ..StreamConfig::default()
        }
    }

    /// The `nexmark` table options of this run.
    pub fn source_options(&self) -> Vec<(&'static str, String)> {
        vec![
            ("events.num", self.events.to_string()),
            ("seed", self.seed.to_string()),
            ("event-time.rate", self.event_rate.to_string()),
            ("disorder.ms", self.disorder_ms.to_string()),
            ("partitions", self.partitions.to_string()),
        ]
    }

    /// Straight; `disorder_ms` out of order on 2 partitions and 2 shards; 4 partitions on 2
    /// shards.
    pub fn three_ways(seed: u64, events: u64, event_rate: u64, disorder_ms: u64) -> [Self; 3] {
        let straight = NexmarkRun {
            seed,
            events,
            event_rate,
            disorder_ms: 0,
            partitions: 1,
            shards: 1,
        };
        [
            straight,
            NexmarkRun {
                disorder_ms,
                partitions: 2,
                shards: 2,
                ..straight
            },
            NexmarkRun {
                partitions: 4,
                shards: 2,
                ..straight
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_ways_differ_in_order_and_spread_only() {
        let [a, b, c] = NexmarkRun::three_ways(7, 1000, 100, 3000);
        assert_eq!((a.disorder_ms, a.partitions, a.shards), (0, 1, 1));
        assert_eq!((b.disorder_ms, b.partitions, b.shards), (3000, 2, 2));
        assert_eq!((c.disorder_ms, c.partitions, c.shards), (0, 4, 2));
        assert!(b
            .source_options()
            .contains(&("disorder.ms", "3000".to_string())));
        assert_eq!(a.stream().seed, 7);
    }
}
