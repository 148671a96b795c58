//! The `trades-generator` source: generated trades (see [`crate::trades_generator`]) as a
//! SQL table, for demos and benchmarks.
//!
//! ```sql
//! CREATE TABLE trades (symbol STRING, price DOUBLE, volume BIGINT, ts TIMESTAMP(3),
//!   WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
//! WITH ('connector' = 'trades-generator', 'number-of-rows' = '1000000',
//!       'rows-per-second' = '50000', 'partitions' = '4', 'disorder-ms' = '200');
//! ```
//! Options: `number-of-rows` (in total; default unbounded), `rows-per-second` (in total, a
//! wall-clock rate limit; default unlimited), `seed` (default 42), `partitions` (default 1),
//! `disorder-ms` (default 0), `start-ts` (epoch ms of the first event; default the wall clock
//! when the table is created), `events-per-second` (event-time spacing in total; default
//! `rows-per-second` if set, else 10000), `symbols` (default 64), `late-every` (every n-th
//! event of a partition is an hour late; default none).
//!
//! Partition `p` generates its own deterministic stream (seed `seed + p`); a record's offset
//! is its index in its partition, and resuming at offset `k` regenerates and drops the first
//! `k` events (the same stream only if `start-ts` is given explicitly).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{ConnectorError, Result};
use crate::generated_partitions::{self, PollBudget, Turns};
use crate::trades_generator::{TradeGenConfig, TradeGenerator, SYMBOLS_MAX};
use crate::{PartitionInfo, RawBatch, Source, SourceFactory, SourceStatus};

/// Options the generator accepts.
pub const GENERATOR_OPTIONS: &[&str] = &[
    "connector",
    "format",
    "number-of-rows",
    "rows-per-second",
    "seed",
    "partitions",
    "disorder-ms",
    "start-ts",
    "events-per-second",
    "symbols",
    "late-every",
];
/// Largest accepted `partitions`.
pub const GENERATOR_PARTITIONS_MAX: u64 = 1024;
/// Default event-time spacing when neither `events-per-second` nor `rows-per-second` is set.
pub const EVENTS_PER_SECOND_DEFAULT: u64 = 10_000;
/// Records generated for one partition before the next partition's turn.
pub const GENERATOR_RUN_RECORDS_MAX: usize = 1024;
/// Largest `disorder-ms` accepted (one day).
pub const DISORDER_MS_MAX: u64 = 86_400_000;

/// The parsed options of one generator table.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorOptions {
    /// Rows in total over all partitions (`None`: unbounded).
    pub rows_total: Option<u64>,
    /// Rows per wall-clock second over all partitions (`None`: as fast as possible).
    pub rows_per_second: Option<u64>,
    pub seed: u64,
    pub partitions: u32,
    pub disorder_ms: u64,
    pub start_ts_ms: i64,
    /// Event-time spacing over all partitions.
    pub events_per_second: u64,
    pub symbols: usize,
    pub late_every: Option<u64>,
}

/// Builds the sources of one `trades-generator` table.
pub struct GeneratorSourceFactory {
    table: String,
    options: GeneratorOptions,
}

fn parse_u64(
    table: &str,
    options: &BTreeMap<String, String>,
    key: &str,
    min: u64,
    max: u64,
) -> Result<Option<u64>> {
    let Some(value) = options.get(key) else {
        return Ok(None);
    };
    match value.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(ConnectorError::config(
            table,
            format!("option '{key}' = '{value}' must be an integer from {min} to {max}"),
        )),
    }
}

impl GeneratorSourceFactory {
    /// Reads and checks the options of table `table`.
    pub fn from_options(table: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        crate::table_options::check_options(
            table,
            options,
            "trades-generator",
            "source",
            GENERATOR_OPTIONS,
        )?;
        let rows_total = parse_u64(table, options, "number-of-rows", 0, u64::MAX)?;
        let rows_per_second = parse_u64(table, options, "rows-per-second", 1, u64::MAX)?;
        let seed = parse_u64(table, options, "seed", 0, u64::MAX)?.unwrap_or(42);
        let partitions =
            parse_u64(table, options, "partitions", 1, GENERATOR_PARTITIONS_MAX)?.unwrap_or(1);
        let disorder_ms =
            parse_u64(table, options, "disorder-ms", 0, DISORDER_MS_MAX)?.unwrap_or(0);
        let events_per_second = parse_u64(table, options, "events-per-second", 1, u64::MAX)?
            .or(rows_per_second)
            .unwrap_or(EVENTS_PER_SECOND_DEFAULT);
        let symbols = parse_u64(table, options, "symbols", 1, SYMBOLS_MAX as u64)?.unwrap_or(64);
        let late_every = parse_u64(table, options, "late-every", 1, u64::MAX)?;
        let start_ts_ms = match options.get("start-ts") {
            Some(v) => v.trim().parse::<i64>().map_err(|_| {
                ConnectorError::config(
                    table,
                    format!("option 'start-ts' = '{v}' must be epoch milliseconds"),
                )
            })?,
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        };
        Ok(GeneratorSourceFactory {
            table: table.to_string(),
            options: GeneratorOptions {
                rows_total,
                rows_per_second,
                seed,
                partitions: partitions as u32,
                disorder_ms,
                start_ts_ms,
                events_per_second,
                symbols: symbols as usize,
                late_every,
            },
        })
    }

    /// The parsed options.
    pub fn options(&self) -> &GeneratorOptions {
        &self.options
    }

    /// Rows partition `p` generates (`None`: unbounded).
    fn partition_rows(&self, p: u32) -> Option<u64> {
        let n = self.options.partitions as u64;
        self.options
            .rows_total
            .map(|total| total / n + u64::from((p as u64) < total % n))
    }
}

impl SourceFactory for GeneratorSourceFactory {
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
        let per_partition = |total: u64| (total / o.partitions as u64).max(1);
        let resolved = generated_partitions::resolve(
            &self.table,
            "generator",
            o.partitions,
            &partitions,
            resume.as_deref(),
        )?;
        let mut streams = Vec::with_capacity(partitions.len());
        for (p, skip) in resolved {
            let mut generator = TradeGenerator::new(TradeGenConfig {
                seed: o.seed.wrapping_add(p as u64),
                symbols: o.symbols,
                start_ts_ms: o.start_ts_ms,
                events_per_second: per_partition(o.events_per_second),
                disorder_ms: o.disorder_ms,
                late_every: o.late_every,
            });
            let rows = self.partition_rows(p);
            if skip < 0 || rows.is_some_and(|rows| skip as u64 > rows) {
                return Err(ConnectorError::config(
                    &self.table,
                    format!("cannot resume generator partition {p} at row {skip}"),
                ));
            }
            for _ in 0..skip {
                generator.next();
            }
            streams.push(Stream {
                generator,
                rows,
                emitted_since_open: 0,
                ended: false,
            });
        }
        Ok(Box::new(GeneratorSource {
            partitions,
            streams,
            turns: Turns::new(o.rows_per_second.map(|r| r as f64 / o.partitions as f64)),
            line: Vec::with_capacity(128),
        }))
    }

    fn describe(&self) -> String {
        let o = &self.options;
        format!(
            "trades-generator '{}' ({} partitions, {}, {}, disorder {} ms)",
            self.table,
            o.partitions,
            o.rows_total
                .map_or("unbounded".to_string(), |n| format!("{n} rows")),
            o.rows_per_second
                .map_or("unthrottled".to_string(), |r| format!("{r} rows/s")),
            o.disorder_ms
        )
    }
}

/// One partition's generator.
struct Stream {
    generator: TradeGenerator,
    /// Rows this partition generates in all (`None`: unbounded).
    rows: Option<u64>,
    /// Rows generated since the source was opened (for the rate limit).
    emitted_since_open: u64,
    ended: bool,
}

struct GeneratorSource {
    partitions: Vec<PartitionInfo>,
    streams: Vec<Stream>,
    /// Turns over the partitions, each paced to its share of `rows-per-second`.
    turns: Turns,
    /// Reused encoding buffer of one record.
    line: Vec<u8>,
}

impl Source for GeneratorSource {
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
        let count = self.streams.len();
        for _ in 0..count {
            if !budget.has_room(out) {
                break;
            }
            let index = self.turns.next(count);
            let stream = &mut self.streams[index];
            let mut run = 0;
            while !stream.ended
                && run < GENERATOR_RUN_RECORDS_MAX
                && budget.has_room(out)
                && allowed.is_none_or(|a| stream.emitted_since_open < a)
            {
                let offset = stream.generator.generated();
                if stream.rows.is_some_and(|rows| offset >= rows) {
                    stream.ended = true;
                    out.ended.push(index as u32);
                    break;
                }
                let trade = stream.generator.next();
                self.line.clear();
                stream.generator.write_json(&trade, &mut self.line);
                out.push(index as u32, offset as i64, &self.line);
                stream.emitted_since_open += 1;
                run += 1;
            }
            // A bounded partition that just emitted its last row ends now.
            if !stream.ended
                && stream
                    .rows
                    .is_some_and(|r| stream.generator.generated() >= r)
            {
                stream.ended = true;
                out.ended.push(index as u32);
            }
        }
        Ok(if budget.records(out) > 0 {
            SourceStatus::Data
        } else if self.streams.iter().all(|s| s.ended) {
            SourceStatus::Finished
        } else {
            SourceStatus::Idle
        })
    }

    fn position(&self, index: u32) -> i64 {
        self.streams
            .get(index as usize)
            .map_or(0, |s| s.generator.generated() as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut o: BTreeMap<String, String> =
            [("connector".to_string(), "trades-generator".to_string())]
                .into_iter()
                .collect();
        for (k, v) in pairs {
            o.insert(k.to_string(), v.to_string());
        }
        o
    }

    fn drain(factory: &GeneratorSourceFactory) -> Vec<(u32, i64, Vec<u8>)> {
        let parts = factory.discover().expect("discover");
        let mut source = factory.open(0, parts, None).expect("open");
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
                return records;
            }
        }
        panic!("the generator never finished");
    }

    #[test]
    fn bounded_rows_are_split_over_partitions_deterministically() {
        let opts = options(&[
            ("number-of-rows", "1001"),
            ("partitions", "4"),
            ("seed", "9"),
            ("start-ts", "1700000000000"),
            ("disorder-ms", "100"),
        ]);
        let factory = GeneratorSourceFactory::from_options("trades", &opts).expect("opts");
        let first = drain(&factory);
        assert_eq!(first.len(), 1001);
        for p in 0..4u32 {
            let offsets: Vec<i64> = first.iter().filter(|r| r.0 == p).map(|r| r.1).collect();
            let want = if p == 0 { 251 } else { 250 };
            assert_eq!(offsets, (0..want).collect::<Vec<i64>>(), "partition {p}");
        }
        let again = GeneratorSourceFactory::from_options("trades", &opts).expect("opts");
        assert_eq!(drain(&again), first, "same options, same records");
        // Partition 2 is the trade generator seeded 9 + 2.
        let mut generator = TradeGenerator::new(TradeGenConfig {
            seed: 11,
            start_ts_ms: 1_700_000_000_000,
            events_per_second: EVENTS_PER_SECOND_DEFAULT / 4,
            disorder_ms: 100,
            ..TradeGenConfig::default()
        });
        let mut line = Vec::new();
        for record in first.iter().filter(|r| r.0 == 2) {
            line.clear();
            let trade = generator.next();
            generator.write_json(&trade, &mut line);
            assert_eq!(record.2, line);
        }
    }

    #[test]
    fn rate_limit_holds_back_rows() {
        let opts = options(&[("rows-per-second", "100"), ("start-ts", "0")]);
        let factory = GeneratorSourceFactory::from_options("t", &opts).expect("opts");
        let mut source = factory
            .open(0, factory.discover().expect("discover"), None)
            .expect("open");
        let mut batch = RawBatch::default();
        let status = source.poll(&mut batch, 10_000, 1 << 20).expect("poll");
        // Right after opening at 100 rows/s, at most a few rows are due.
        assert!(batch.len() <= 5, "{} rows, {status:?}", batch.len());
        std::thread::sleep(std::time::Duration::from_millis(100));
        batch.clear();
        source.poll(&mut batch, 10_000, 1 << 20).expect("poll");
        let total = source.position(0);
        assert!(
            (5..=60).contains(&total),
            "{total} rows after ~100 ms at 100 rows/s"
        );
    }

    #[test]
    fn resume_continues_the_same_stream() {
        let opts = options(&[("number-of-rows", "50"), ("start-ts", "1000")]);
        let factory = GeneratorSourceFactory::from_options("t", &opts).expect("opts");
        let all = drain(&factory);
        let parts = factory.discover().expect("discover");
        let mut source = factory.open(0, parts, Some(vec![45])).expect("open");
        let mut batch = RawBatch::default();
        source.poll(&mut batch, 100, 1 << 20).expect("poll");
        assert_eq!(batch.offset, vec![45, 46, 47, 48, 49]);
        let (a, b) = batch.span(0);
        assert_eq!(batch.data[a..b].to_vec(), all[45].2);
    }

    #[test]
    fn options_are_checked() {
        let err = GeneratorSourceFactory::from_options("t", &options(&[("rows", "1")]))
            .err()
            .expect("unknown key");
        assert!(err.to_string().contains("'rows'") && err.to_string().contains("number-of-rows"));
        for (k, v) in [
            ("partitions", "0"),
            ("rows-per-second", "fast"),
            ("start-ts", "now"),
        ] {
            assert!(
                GeneratorSourceFactory::from_options("t", &options(&[(k, v)])).is_err(),
                "{k}"
            );
        }
        let unbounded = GeneratorSourceFactory::from_options("t", &options(&[])).expect("ok");
        assert_eq!(unbounded.options().rows_total, None);
        assert!(unbounded.describe().contains("unbounded"));
    }
}
