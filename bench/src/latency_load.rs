//! The open-loop load of `spillway-bench latency`: event `seq` has a fixed intended send
//! time (`seq / rate`) and is sent at that time whether or not the engine keeps up, so a
//! stall of the engine (or of the generator itself) cannot hide from the figures
//! (coordinated omission). Latencies are measured from intended send times, never from
//! actual ones.
//!
//! Every event is a pure function of its sequence number (symbol, volume, disorder) and of
//! the schedule, so the sink can check a row on arrival and the oracle can be replayed after
//! the run without the generator keeping a record of what it sent. The sequence number
//! travels in the `price` field (an exact integer in a DOUBLE).

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord};

use crate::delivery::wait_for_deliveries;
pub use crate::delivery::DeliveryCounter;
use crate::error::{BenchError, Result};

/// Distinct symbols of the generated events (`S00` .. `S63`).
pub const LOAD_SYMBOLS: u64 = 64;
/// Events are up to this much older than their intended send time (event time = wall
/// clock minus a per-event disorder), far below the 1 s watermark bound: none is late.
pub const LOAD_DISORDER_MS: u64 = 100;
/// Volumes are drawn from 1 ..= this.
pub const LOAD_VOLUME_MAX: i64 = 1_000;
/// Largest number of events one run may schedule.
pub const LOAD_EVENTS_MAX: u64 = 1_000_000_000;
/// Longest sleep of the generator between two sends (keeps the progress count fresh).
const SLEEP_NS_MAX: u64 = 10_000_000;
/// Sends between two non-blocking polls of the producer (delivery reports).
const SENDS_PER_POLL: u64 = 256;
/// Longest wait for the last deliveries after the load ends.
const DELIVERY_WAIT_MS_MAX: u64 = 10_000;

/// The schedule and content of the events of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSchedule {
    /// Events per second over all partitions.
    pub rate_total: u64,
    /// Event `seq` goes to partition `seq % partitions`.
    pub partitions: usize,
    /// Wall clock (epoch ms) at the run's start instant: event time of intended time 0.
    pub epoch_ms_start: i64,
    /// Seed of the per-event content.
    pub seed: u64,
    /// Intended send time of event 0, ns after the run's start.
    pub offset_ns: u64,
}

/// One generated event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadEvent {
    /// Index of the symbol (`S{symbol:02}`).
    pub symbol: u32,
    pub volume: i64,
    /// Event time, epoch ms.
    pub ts_ms: i64,
    pub partition: usize,
}

fn mix(mut z: u64) -> u64 {
    // splitmix64's finaliser: every bit of the input affects every bit of the output.
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The name of symbol index `symbol`.
pub fn symbol_name(symbol: u32) -> String {
    format!("S{symbol:02}")
}

/// The index of a symbol name made by [`symbol_name`].
pub fn symbol_index(name: &str) -> Option<u32> {
    let n: u32 = name.strip_prefix('S')?.parse().ok()?;
    (u64::from(n) < LOAD_SYMBOLS && symbol_name(n) == name).then_some(n)
}

impl EventSchedule {
    /// Intended send time of event `seq`, ns after the run's start.
    pub fn intended_ns(&self, seq: u64) -> u64 {
        self.offset_ns
            + (u128::from(seq) * 1_000_000_000 / u128::from(self.rate_total.max(1))) as u64
    }

    /// How many events are due `elapsed_ns` after the start (events 0 .. due).
    pub fn due(&self, elapsed_ns: u64) -> u64 {
        let Some(since) = elapsed_ns.checked_sub(self.offset_ns) else {
            return 0;
        };
        (u128::from(since) * u128::from(self.rate_total) / 1_000_000_000) as u64 + 1
    }

    /// The content of event `seq`.
    pub fn event(&self, seq: u64) -> LoadEvent {
        let h = mix(self.seed ^ mix(seq));
        let disorder = ((h >> 32) % LOAD_DISORDER_MS) as i64;
        LoadEvent {
            symbol: (h % LOAD_SYMBOLS) as u32,
            volume: ((h >> 8) % LOAD_VOLUME_MAX as u64) as i64 + 1,
            ts_ms: self.epoch_ms_start + (self.intended_ns(seq) / 1_000_000) as i64 - disorder,
            partition: (seq % self.partitions.max(1) as u64) as usize,
        }
    }

    /// Writes event `seq` as one JSON object (the `trades` table's columns).
    pub fn write_json(&self, seq: u64, out: &mut Vec<u8>) -> LoadEvent {
        let e = self.event(seq);
        out.clear();
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            r#"{{"symbol":"{}","price":{seq},"volume":{},"ts":{}}}"#,
            symbol_name(e.symbol),
            e.volume,
            e.ts_ms
        );
        e
    }
}

/// What the load generator did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOutcome {
    /// Events sent (0 .. sent).
    pub sent: u64,
    /// Longest time an event was handed to the producer after its intended send time, ns.
    pub lag_ns_max: u64,
}

/// Sends events on schedule to `topic` for `duration` after the schedule's offset (or until
/// `stop`), then waits for their delivery. `progress` counts events sent.
pub fn run_load(
    producer: &BaseProducer<DeliveryCounter>,
    topic: &str,
    schedule: &EventSchedule,
    start: Instant,
    duration: Duration,
    progress: &AtomicU64,
    stop: &AtomicBool,
) -> Result<LoadOutcome> {
    let end_ns = schedule.offset_ns + duration.as_nanos() as u64;
    let total = schedule.due(end_ns.saturating_sub(1)).min(LOAD_EVENTS_MAX);
    let mut line = Vec::with_capacity(128);
    let mut seq: u64 = 0;
    let mut lag_ns_max: u64 = 0;
    while seq < total && !stop.load(Ordering::Relaxed) {
        let now_ns = start.elapsed().as_nanos() as u64;
        let due = schedule.due(now_ns).min(total);
        while seq < due {
            let e = schedule.write_json(seq, &mut line);
            let mut record = BaseRecord::to(topic)
                .payload(&line[..])
                .partition(e.partition as i32);
            loop {
                match producer.send::<(), [u8]>(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        producer.poll(Duration::from_millis(1));
                        record = back;
                    }
                    Err((e, _)) => {
                        return Err(BenchError::Kafka(format!(
                            "cannot send event {seq} to {topic} [{}]: {e}",
                            schedule.event(seq).partition
                        )))
                    }
                }
            }
            let lag = (start.elapsed().as_nanos() as u64).saturating_sub(schedule.intended_ns(seq));
            lag_ns_max = lag_ns_max.max(lag);
            seq += 1;
            if seq.is_multiple_of(SENDS_PER_POLL) {
                producer.poll(Duration::ZERO);
            }
        }
        progress.store(seq, Ordering::Relaxed);
        producer.poll(Duration::ZERO);
        if seq >= total {
            break;
        }
        let wait_ns = schedule
            .intended_ns(seq)
            .saturating_sub(start.elapsed().as_nanos() as u64);
        // Sleep, never spin: on a small machine a spinning generator takes the core the
        // engine needs. The events that fall due meanwhile go out as a burst, measured
        // from their intended times all the same.
        if wait_ns > 0 {
            std::thread::sleep(Duration::from_nanos(wait_ns.min(SLEEP_NS_MAX)));
        }
    }
    wait_for_deliveries(producer, "events", None, DELIVERY_WAIT_MS_MAX)?;
    Ok(LoadOutcome {
        sent: seq,
        lag_ns_max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> EventSchedule {
        EventSchedule {
            rate_total: 1_000,
            partitions: 3,
            epoch_ms_start: 1_700_000_000_000,
            seed: 7,
            offset_ns: 0,
        }
    }

    #[test]
    fn intended_times_follow_the_rate() {
        let s = schedule();
        assert_eq!(s.intended_ns(0), 0);
        assert_eq!(s.intended_ns(1), 1_000_000);
        assert_eq!(s.intended_ns(1_000), 1_000_000_000);
        assert_eq!(s.due(0), 1);
        assert_eq!(s.due(999_999), 1);
        assert_eq!(s.due(1_000_000), 2);
        let late = EventSchedule {
            offset_ns: 5_000,
            ..s
        };
        assert_eq!(late.due(4_999), 0);
        assert_eq!(late.due(5_000), 1);
        assert_eq!(late.intended_ns(1), 1_005_000);
    }

    #[test]
    fn json_carries_the_sequence_and_the_event() {
        let s = schedule();
        let mut out = Vec::new();
        let e = s.write_json(1234, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(v["price"], 1234);
        assert_eq!(v["volume"], e.volume);
        assert_eq!(v["ts"], e.ts_ms);
        assert_eq!(v["symbol"], symbol_name(e.symbol));
        assert_eq!(e.partition, 1234 % 3);
    }

    proptest::proptest! {
        #[test]
        fn events_stay_in_their_ranges(seq in 0u64..10_000_000) {
            let s = schedule();
            let e = s.event(seq);
            proptest::prop_assert!(u64::from(e.symbol) < LOAD_SYMBOLS);
            proptest::prop_assert!((1..=LOAD_VOLUME_MAX).contains(&e.volume));
            let wall = s.epoch_ms_start + (s.intended_ns(seq) / 1_000_000) as i64;
            proptest::prop_assert!(e.ts_ms <= wall && e.ts_ms > wall - LOAD_DISORDER_MS as i64);
            proptest::prop_assert_eq!(symbol_index(&symbol_name(e.symbol)), Some(e.symbol));
            proptest::prop_assert!(s.due(s.intended_ns(seq)) > seq);
        }
    }

    #[test]
    fn foreign_symbols_have_no_index() {
        assert_eq!(symbol_index("S64"), None);
        assert_eq!(symbol_index("S7"), None);
        assert_eq!(symbol_index("AAPL"), None);
        assert_eq!(symbol_index("S07"), Some(7));
    }
}
