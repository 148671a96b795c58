//! The `nexmark` source: one table per event kind of one seeded Nexmark stream.
//!
//! ```sql
//! CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING,
//!   dateTime TIMESTAMP(3), extra STRING,
//!   WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND)
//! WITH ('connector' = 'nexmark', 'nexmark.table' = 'bid', 'events.num' = '10000000');
//! ```
//! Options: `nexmark.table` (`bid`, `auction` or `person`; default the table's name when it
//! is one of these), `events.num` (events of the whole stream, all kinds; default
//! [`EVENTS_NUM_DEFAULT`]), `seed` (default 0), `rate` (events per wall-clock second of the
//! whole stream; default 0 = as fast as possible), `event-time.rate` (events per second of
//! event time; default `rate`, or 10 000 when `rate` is 0), `base-time.ms` (epoch ms of
//! event 0; default a fixed instant, so the seed fixes the stream), `disorder.ms` (event
//! times jittered back by up to this much; default 0) and `partitions` (default one per
//! shard).
//!
//! Column names must be spelled as in Flink's Nexmark (`dateTime`, `itemName`, ...):
//! the JSON decoder matches field names exactly.
//!
//! Partition `p` of `P` holds the stream's events `p, p + P, p + 2P, ...`; its offset `k`
//! is event `p + kP`, counting the events of every kind, so a bid table's offsets skip the
//! persons and auctions. Any event is computed from its number alone, so opening or
//! resuming a partition at offset `k` costs nothing.

use std::collections::BTreeMap;

use super::generator::{NexmarkGenerator, StreamConfig, BASE_TIME_MS_DEFAULT, EVENT_RATE_DEFAULT};
use super::json::{write_auction_json, write_bid_json, write_person_json};
use super::model::EventKind;
use crate::error::{ConnectorError, Result};
use crate::generated_partitions::{self, PollBudget, Turns};
use crate::{PartitionInfo, RawBatch, Source, SourceFactory, SourceStatus};

/// Options the `nexmark` source accepts.
pub const NEXMARK_OPTIONS: &[&str] = &[
    "connector",
    "format",
    "nexmark.table",
    "events.num",
    "seed",
    "rate",
    "event-time.rate",
    "base-time.ms",
    "disorder.ms",
    "partitions",
];
/// Events of the whole stream when `events.num` is not given.
pub const EVENTS_NUM_DEFAULT: u64 = 10_000_000;
/// Largest accepted `partitions`.
pub const NEXMARK_PARTITIONS_MAX: u64 = 1024;
/// Largest accepted `disorder.ms` (one day).
pub const NEXMARK_DISORDER_MS_MAX: u64 = 86_400_000;
/// Largest accepted `event-time.rate` (one event per nanosecond).
pub const EVENT_RATE_MAX: u64 = 1_000_000_000;
/// Records one partition emits before the next partition's turn.
pub const NEXMARK_RUN_RECORDS_MAX: usize = 1024;
/// Stream events one partition steps over in one turn (most of them other kinds for an
/// auction or person table), so a poll stays short.
pub const NEXMARK_RUN_EVENTS_MAX: u64 = 16_384;

/// The parsed options of one `nexmark` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NexmarkOptions {
    /// Which events of the stream the table delivers.
    pub kind: EventKind,
    /// Events of the whole stream (all kinds).
    pub events_num: u64,
    /// The stream: seed, times, disorder.
    pub stream: StreamConfig,
    /// Events per wall-clock second of the whole stream (`None`: as fast as possible).
    pub rate: Option<u64>,
    pub partitions: u32,
}

impl NexmarkOptions {
    /// Stream events (all kinds) of partition `p`.
    pub fn partition_events(&self, p: u32) -> u64 {
        let n = u64::from(self.partitions);
        self.events_num / n + u64::from(u64::from(p) < self.events_num % n)
    }
}

/// Builds the sources of one `nexmark` table.
pub struct NexmarkSourceFactory {
    table: String,
    options: NexmarkOptions,
}

fn parse_u64(
    table: &str,
    options: &BTreeMap<String, String>,
    key: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<u64>> {
    let Some(value) = options.get(key) else {
        return Ok(None);
    };
    match value.trim().parse::<u64>() {
        Ok(n) if range.contains(&n) => Ok(Some(n)),
        _ => Err(ConnectorError::config(
            table,
            format!(
                "option '{key}' = '{value}' must be an integer from {} to {}",
                range.start(),
                range.end()
            ),
        )),
    }
}

impl NexmarkSourceFactory {
    /// Reads and checks the options of table `table`; `shards` is the default partition
    /// count.
    pub fn from_options(
        table: &str,
        options: &BTreeMap<String, String>,
        shards: usize,
    ) -> Result<Self> {
        crate::table_options::check_options(table, options, "nexmark", "source", NEXMARK_OPTIONS)?;
        let kind = match options.get("nexmark.table") {
            Some(v) => EventKind::from_name(v).ok_or_else(|| {
                ConnectorError::config(
                    table,
                    format!("option 'nexmark.table' = '{v}' must be 'bid', 'auction' or 'person'"),
                )
            })?,
            None => EventKind::from_name(table).ok_or_else(|| {
                ConnectorError::config(
                    table,
                    "option 'nexmark.table' is missing: say which events the table delivers \
                     ('bid', 'auction' or 'person')",
                )
            })?,
        };
        let events_num =
            parse_u64(table, options, "events.num", 0..=u64::MAX)?.unwrap_or(EVENTS_NUM_DEFAULT);
        let seed = parse_u64(table, options, "seed", 0..=u64::MAX)?.unwrap_or(0);
        let rate = parse_u64(table, options, "rate", 0..=u64::MAX)?.filter(|r| *r > 0);
        let event_rate = parse_u64(table, options, "event-time.rate", 1..=EVENT_RATE_MAX)?
            .or(rate.map(|r| r.min(EVENT_RATE_MAX)))
            .unwrap_or(EVENT_RATE_DEFAULT);
        let disorder_ms =
            parse_u64(table, options, "disorder.ms", 0..=NEXMARK_DISORDER_MS_MAX)?.unwrap_or(0);
        let default_partitions = (shards.max(1) as u64).min(NEXMARK_PARTITIONS_MAX);
        let partitions = parse_u64(table, options, "partitions", 1..=NEXMARK_PARTITIONS_MAX)?
            .unwrap_or(default_partitions);
        let base_time_ms = match options.get("base-time.ms") {
            Some(v) => v.trim().parse::<i64>().map_err(|_| {
                ConnectorError::config(
                    table,
                    format!("option 'base-time.ms' = '{v}' must be epoch milliseconds"),
                )
            })?,
            None => BASE_TIME_MS_DEFAULT,
        };
        Ok(NexmarkSourceFactory {
            table: table.to_string(),
            options: NexmarkOptions {
                kind,
                events_num,
                stream: StreamConfig {
                    seed,
                    base_time_ms,
                    event_rate,
                    disorder_ms,
                },
                rate,
                partitions: partitions as u32,
            },
        })
    }

    /// The parsed options.
    pub fn options(&self) -> &NexmarkOptions {
        &self.options
    }
}

impl SourceFactory for NexmarkSourceFactory {
    fn discover(&self) -> Result<Vec<PartitionInfo>> {
        Ok(generated_partitions::discover(
            &self.table,
            self.options.partitions,
        ))
    }

    fn open(
        &self,
        _shard: usize,
        partitions: Vec<PartitionInfo>,
        resume: Option<Vec<i64>>,
    ) -> Result<Box<dyn Source>> {
        let o = &self.options;
        let resolved = generated_partitions::resolve(
            &self.table,
            "nexmark",
            o.partitions,
            &partitions,
            resume.as_deref(),
        )?;
        let mut splits = Vec::with_capacity(partitions.len());
        for (p, next) in resolved {
            let end = o.partition_events(p);
            if next < 0 || next as u64 > end {
                return Err(ConnectorError::config(
                    &self.table,
                    format!("cannot resume nexmark partition {p} at offset {next} (it has {end})"),
                ));
            }
            splits.push(Split {
                partition: u64::from(p),
                next: next as u64,
                end,
                stepped_since_open: 0,
                ended: false,
            });
        }
        Ok(Box::new(NexmarkSource {
            partitions,
            splits,
            kind: o.kind,
            stride: u64::from(o.partitions),
            generator: NexmarkGenerator::new(o.stream),
            turns: Turns::new(o.rate.map(|r| r as f64 / f64::from(o.partitions))),
        }))
    }

    fn describe(&self) -> String {
        let o = &self.options;
        format!(
            "nexmark '{}': the {}s of {} events (seed {}, {} partitions, {}, {} events/s of \
             event time, disorder {} ms)",
            self.table,
            o.kind.name(),
            o.events_num,
            o.stream.seed,
            o.partitions,
            o.rate
                .map_or("unthrottled".to_string(), |r| format!("{r} events/s")),
            o.stream.event_rate,
            o.stream.disorder_ms
        )
    }
}

/// One partition's position in the stream.
struct Split {
    /// The partition number `p`: offset `k` is event `p + k * stride`.
    partition: u64,
    /// The next offset.
    next: u64,
    /// Offsets of this partition (all kinds).
    end: u64,
    /// Offsets stepped over since the source was opened (for the rate limit).
    stepped_since_open: u64,
    ended: bool,
}

struct NexmarkSource {
    partitions: Vec<PartitionInfo>,
    splits: Vec<Split>,
    kind: EventKind,
    stride: u64,
    generator: NexmarkGenerator,
    /// Turns over the splits, paced to stream events per wall-clock second of each.
    turns: Turns,
}

impl NexmarkSource {
    /// Appends event `n` (of this table's kind) to `out`.
    fn push(&mut self, out: &mut RawBatch, index: u32, offset: u64, n: u64) {
        match self.kind {
            EventKind::Bid => write_bid_json(&self.generator.bid(n), &mut out.data),
            EventKind::Auction => write_auction_json(&self.generator.auction(n), &mut out.data),
            EventKind::Person => write_person_json(&self.generator.person(n), &mut out.data),
        }
        out.ends.push(out.data.len());
        out.partition.push(index);
        out.offset.push(offset as i64);
    }
}

impl Source for NexmarkSource {
    fn partitions(&self) -> &[PartitionInfo] {
        &self.partitions
    }

    fn poll(
        &mut self,
        out: &mut RawBatch,
        records_max: usize,
        bytes_max: usize,
    ) -> Result<SourceStatus> {
        let budget = PollBudget::new(out, records_max, bytes_max);
        let allowed = self.turns.allowed();
        let count = self.splits.len();
        for _ in 0..count {
            if !budget.has_room(out) {
                break;
            }
            let index = self.turns.next(count);
            let (mut run, mut stepped) = (0, 0);
            loop {
                let split = &mut self.splits[index];
                if split.ended
                    || run >= NEXMARK_RUN_RECORDS_MAX
                    || stepped >= NEXMARK_RUN_EVENTS_MAX
                    || !budget.has_room(out)
                    || allowed.is_some_and(|a| split.stepped_since_open >= a)
                {
                    break;
                }
                if split.next >= split.end {
                    split.ended = true;
                    out.ended.push(index as u32);
                    break;
                }
                let offset = split.next;
                let n = split.partition + offset * self.stride;
                split.next += 1;
                split.stepped_since_open += 1;
                stepped += 1;
                if EventKind::of(n) == self.kind {
                    self.push(out, index as u32, offset, n);
                    run += 1;
                }
            }
            // A partition that just stepped over its last event ends now.
            let split = &mut self.splits[index];
            if !split.ended && split.next >= split.end {
                split.ended = true;
                out.ended.push(index as u32);
            }
        }
        Ok(if budget.records(out) > 0 {
            SourceStatus::Data
        } else if self.splits.iter().all(|s| s.ended) {
            SourceStatus::Finished
        } else {
            SourceStatus::Idle
        })
    }

    fn position(&self, index: u32) -> i64 {
        self.splits
            .get(index as usize)
            .map_or(0, |s| s.next.min(i64::MAX as u64) as i64)
    }

    fn high_watermark(&self, index: u32) -> Option<i64> {
        self.splits
            .get(index as usize)
            .map(|s| s.end.min(i64::MAX as u64) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nexmark::json::write_event_json;

    fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut o: BTreeMap<String, String> = [("connector".to_string(), "nexmark".to_string())]
            .into_iter()
            .collect();
        for (k, v) in pairs {
            o.insert(k.to_string(), v.to_string());
        }
        o
    }

    /// Every record of every partition: (partition, offset, JSON).
    fn drain(factory: &NexmarkSourceFactory, resume: Option<Vec<i64>>) -> Vec<(u32, i64, Vec<u8>)> {
        let parts = factory.discover().expect("discover");
        let mut source = factory.open(0, parts, resume).expect("open");
        let mut batch = RawBatch::default();
        let mut records = Vec::new();
        let mut ended = Vec::new();
        for _ in 0..100_000 {
            batch.clear();
            let status = source.poll(&mut batch, 300, 1 << 20).expect("poll");
            ended.extend_from_slice(&batch.ended);
            for i in 0..batch.len() {
                let (a, b) = batch.span(i);
                records.push((
                    batch.partition[i],
                    batch.offset[i],
                    batch.data[a..b].to_vec(),
                ));
            }
            if status == SourceStatus::Finished {
                ended.sort();
                let expected: Vec<u32> = (0..source.partitions().len() as u32).collect();
                assert_eq!(ended, expected, "every partition ends once");
                for (i, p) in source.partitions().iter().enumerate() {
                    let end = factory.options().partition_events(p.partition as u32) as i64;
                    assert_eq!(source.position(i as u32), end);
                    assert_eq!(source.high_watermark(i as u32), Some(end));
                }
                return records;
            }
        }
        panic!("the nexmark source never finished");
    }

    #[test]
    fn a_table_delivers_its_kind_of_the_stream_split_over_partitions() {
        let opts = options(&[
            ("nexmark.table", "bid"),
            ("events.num", "10001"),
            ("partitions", "3"),
            ("seed", "4"),
            ("disorder.ms", "100"),
        ]);
        let factory = NexmarkSourceFactory::from_options("bids", &opts, 2).expect("options");
        let records = drain(&factory, None);
        assert_eq!(records.len() as u64, EventKind::Bid.count_in(10_001));
        let mut generator = NexmarkGenerator::new(factory.options().stream);
        let mut line = Vec::new();
        for (p, offset, json) in &records {
            let n = u64::from(*p) + *offset as u64 * 3;
            assert_eq!(EventKind::of(n), EventKind::Bid);
            line.clear();
            write_event_json(&generator.event(n), &mut line);
            assert_eq!(json, &line, "partition {p} offset {offset}");
        }
        for p in 0..3u32 {
            let offsets: Vec<i64> = records.iter().filter(|r| r.0 == p).map(|r| r.1).collect();
            assert!(
                offsets.windows(2).all(|w| w[0] < w[1]),
                "partition {p} in order"
            );
        }
        let again = NexmarkSourceFactory::from_options("bids", &opts, 2).expect("options");
        assert_eq!(drain(&again, None), records, "same options, same records");
    }

    #[test]
    fn persons_and_auctions_come_from_the_same_stream() {
        let base = [("events.num", "5000"), ("seed", "8")];
        let persons = NexmarkSourceFactory::from_options("person", &options(&base), 1)
            .expect("the table name picks the kind");
        assert_eq!(persons.options().kind, EventKind::Person);
        let people = drain(&persons, None);
        assert_eq!(people.len(), 100);
        let json: serde_json::Value = serde_json::from_slice(&people[3].2).expect("json");
        assert_eq!(json["id"], 1003);
        let mut with = base.to_vec();
        with.push(("nexmark.table", "AUCTION"));
        let auctions = NexmarkSourceFactory::from_options("a", &options(&with), 1).expect("ok");
        let records = drain(&auctions, None);
        assert_eq!(records.len(), 300);
        let last: serde_json::Value = serde_json::from_slice(&records[299].2).expect("json");
        assert_eq!(last["id"], 1299);
        assert_eq!(
            records[299].1, 4953,
            "offset = event number on one partition"
        );
    }

    #[test]
    fn resume_continues_the_same_stream() {
        let opts = options(&[
            ("nexmark.table", "bid"),
            ("events.num", "400"),
            ("partitions", "2"),
        ]);
        let factory = NexmarkSourceFactory::from_options("t", &opts, 1).expect("options");
        let all = drain(&factory, None);
        let resumed = drain(&factory, Some(vec![150, 199]));
        let expected: Vec<_> = all
            .iter()
            .filter(|r| r.1 >= if r.0 == 0 { 150 } else { 199 })
            .cloned()
            .collect();
        assert_eq!(resumed, expected);
        assert!(!resumed.is_empty());
        let parts = factory.discover().expect("discover");
        assert!(factory.open(0, parts.clone(), Some(vec![201, 0])).is_err());
        assert!(factory.open(0, parts, Some(vec![0])).is_err());
    }

    #[test]
    fn rate_limit_holds_back_events() {
        let opts = options(&[
            ("nexmark.table", "bid"),
            ("rate", "1000"),
            ("partitions", "1"),
        ]);
        let factory = NexmarkSourceFactory::from_options("t", &opts, 1).expect("options");
        assert_eq!(
            factory.options().stream.event_rate,
            1000,
            "event time follows the rate"
        );
        let mut source = factory
            .open(0, factory.discover().expect("discover"), None)
            .expect("open");
        let mut batch = RawBatch::default();
        source.poll(&mut batch, 100_000, 1 << 24).expect("poll");
        assert!(
            batch.len() <= 20,
            "{} bids right after opening",
            batch.len()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
        source.poll(&mut batch, 100_000, 1 << 24).expect("poll");
        let stepped = source.position(0);
        assert!(
            (50..=400).contains(&stepped),
            "{stepped} events after ~100 ms at 1000/s"
        );
    }

    #[test]
    fn person_table_polls_stay_short_and_finish() {
        let opts = options(&[("nexmark.table", "person"), ("events.num", "1000000")]);
        let factory = NexmarkSourceFactory::from_options("p", &opts, 1).expect("options");
        let mut source = factory
            .open(0, factory.discover().expect("discover"), None)
            .expect("open");
        let mut batch = RawBatch::default();
        source.poll(&mut batch, 100_000, 1 << 24).expect("poll");
        assert_eq!(
            source.position(0) as u64,
            NEXMARK_RUN_EVENTS_MAX,
            "one turn per poll"
        );
        assert_eq!(batch.len() as u64, NEXMARK_RUN_EVENTS_MAX / 50 + 1);
    }

    #[test]
    fn options_are_checked() {
        let err = NexmarkSourceFactory::from_options("bid", &options(&[("events", "1")]), 1)
            .err()
            .expect("unknown key");
        assert!(err.to_string().contains("'events'") && err.to_string().contains("events.num"));
        let err = NexmarkSourceFactory::from_options("t", &options(&[]), 1)
            .err()
            .expect("no kind");
        assert!(err.to_string().contains("nexmark.table"), "{err}");
        for (k, v) in [
            ("partitions", "0"),
            ("nexmark.table", "bids"),
            ("rate", "fast"),
            ("event-time.rate", "0"),
            ("base-time.ms", "now"),
            ("disorder.ms", "-1"),
        ] {
            assert!(
                NexmarkSourceFactory::from_options("bid", &options(&[(k, v)]), 1).is_err(),
                "{k} = {v}"
            );
        }
        let defaults = NexmarkSourceFactory::from_options("Bid", &options(&[]), 3).expect("ok");
        let o = defaults.options();
        assert_eq!(
            (o.kind, o.events_num, o.partitions),
            (EventKind::Bid, EVENTS_NUM_DEFAULT, 3)
        );
        assert_eq!(o.stream.event_rate, EVENT_RATE_DEFAULT);
        assert!(defaults.describe().contains("the bids of 10000000 events"));
    }
}
