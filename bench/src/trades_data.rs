//! The benchmarks' input: generated trades as JSON lines, and the oracle computed from the
//! very same trades while they are generated (the expected windows of the trades query).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;

use spillway_connectors::trades_generator::{TradeGenConfig, TradeGenerator};

use crate::error::{BenchError, Result};

/// Size of the tumbling window of the benchmarked query (`examples/trades.sql`).
pub const WINDOW_MS: i64 = 1_000;
/// How far out of order the generated trades are (the query's watermark bound is 1 s).
pub const DISORDER_MS: u64 = 200;
/// Distinct symbols of the generated trades.
pub const SYMBOLS: usize = 64;
/// Event time of the first trade: 2023-11-14 22:13:20 UTC.
pub const START_TS_MS: i64 = 1_700_000_000_000;
/// Default event-time rate of the generated trades: trades per second of event time.
pub const EVENT_RATE_DEFAULT: u64 = 100_000;
/// Largest number of trades one benchmark generates (about 60 bytes each in memory).
pub const EVENTS_MAX: u64 = 200_000_000;
/// Largest number of partitions the benchmarks spread trades over.
pub const PARTITIONS_MAX: usize = 1024;
/// Largest number of distinct (symbol, window) pairs the oracle holds.
pub const ORACLE_PAIRS_MAX: usize = 50_000_000;

/// What the generated trades look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TradeDataConfig {
    /// Number of trades.
    pub events: u64,
    /// Trades are dealt round robin over this many partitions.
    pub partitions: usize,
    /// Trades per second of event time (sets how many windows the data spans).
    pub event_rate: u64,
    /// Seed of the generator (the data is deterministic).
    pub seed: u64,
}

impl TradeDataConfig {
    /// The defaults of the benchmarks for `events` trades over `partitions` partitions.
    pub fn new(events: u64, partitions: usize) -> Self {
        TradeDataConfig {
            events,
            partitions,
            event_rate: EVENT_RATE_DEFAULT,
            seed: 42,
        }
    }

    /// Checks every value is in its range.
    pub fn validate(&self) -> Result<()> {
        if self.events == 0 || self.events > EVENTS_MAX {
            return Err(BenchError::Config(format!(
                "--events {} is out of range [1, {EVENTS_MAX}]",
                self.events
            )));
        }
        if self.partitions == 0 || self.partitions > PARTITIONS_MAX {
            return Err(BenchError::Config(format!(
                "--partitions {} is out of range [1, {PARTITIONS_MAX}]",
                self.partitions
            )));
        }
        if self.event_rate == 0 || self.event_rate > 1_000_000_000 {
            return Err(BenchError::Config(format!(
                "--event-rate {} is out of range [1, 1000000000]",
                self.event_rate
            )));
        }
        Ok(())
    }
}

/// The expected result of the trades query over some trades, computed directly from them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expected {
    /// Number of trades.
    pub events: u64,
    /// For each window start (epoch ms), the trade counts of its symbols, sorted.
    pub windows: BTreeMap<i64, Vec<u64>>,
}

impl Expected {
    /// Number of result rows the query must produce: one per (symbol, window) pair.
    pub fn rows(&self) -> u64 {
        self.windows.values().map(|c| c.len() as u64).sum()
    }

    fn from_pairs<K>(events: u64, pairs: HashMap<(K, i64), u64>) -> Self {
        let mut windows: BTreeMap<i64, Vec<u64>> = BTreeMap::new();
        for ((_, window), count) in pairs {
            windows.entry(window).or_default().push(count);
        }
        for counts in windows.values_mut() {
            counts.sort_unstable();
        }
        Expected { events, windows }
    }
}

/// The start of the tumbling window holding event time `ts_ms`.
pub fn window_start(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(WINDOW_MS) * WINDOW_MS
}

fn check_pairs(len: usize) -> Result<()> {
    if len > ORACLE_PAIRS_MAX {
        return Err(BenchError::Config(format!(
            "the data has more than {ORACLE_PAIRS_MAX} (symbol, window) pairs \
             (ORACLE_PAIRS_MAX); use fewer events or a higher --event-rate"
        )));
    }
    Ok(())
}

/// The trades of a config, generated chunk by chunk (a benchmark whose input is split over
/// several jobs checks each job against the oracle of its own chunk).
pub struct TradeStream {
    cfg: TradeDataConfig,
    generator: TradeGenerator,
    line: Vec<u8>,
    emitted: u64,
}

impl TradeStream {
    pub fn new(cfg: &TradeDataConfig) -> Result<Self> {
        cfg.validate()?;
        let generator = TradeGenerator::new(TradeGenConfig {
            seed: cfg.seed,
            symbols: SYMBOLS,
            start_ts_ms: START_TS_MS,
            events_per_second: cfg.event_rate,
            disorder_ms: DISORDER_MS,
            late_every: None,
        });
        Ok(TradeStream {
            cfg: *cfg,
            generator,
            line: Vec::with_capacity(128),
            emitted: 0,
        })
    }

    /// Trades not generated yet.
    pub fn remaining(&self) -> u64 {
        self.cfg.events - self.emitted
    }

    /// Generates trades and hands each JSON line (without newline) with its partition (trade
    /// i goes to partition i mod P) to `emit`, until all are generated or `emit` returns
    /// `Ok(false)` (the chunk ends after that trade). Returns the oracle of the chunk.
    pub fn next_chunk(
        &mut self,
        mut emit: impl FnMut(usize, &[u8]) -> Result<bool>,
    ) -> Result<Expected> {
        let mut pairs: HashMap<(u32, i64), u64> = HashMap::new();
        let mut events = 0u64;
        while self.emitted < self.cfg.events {
            let trade = self.generator.next();
            self.line.clear();
            self.generator.write_json(&trade, &mut self.line);
            let partition = (self.emitted % self.cfg.partitions as u64) as usize;
            self.emitted += 1;
            events += 1;
            *pairs
                .entry((trade.symbol, window_start(trade.ts_ms)))
                .or_insert(0) += 1;
            if pairs.len() > ORACLE_PAIRS_MAX {
                check_pairs(pairs.len())?;
            }
            if !emit(partition, &self.line)? {
                break;
            }
        }
        Ok(Expected::from_pairs(events, pairs))
    }
}

/// Generates all trades of `cfg`, hands each JSON line (without newline) with its partition
/// to `emit`, and returns the expected result computed from the same trades.
pub fn generate(
    cfg: &TradeDataConfig,
    mut emit: impl FnMut(usize, &[u8]) -> Result<()>,
) -> Result<Expected> {
    TradeStream::new(cfg)?.next_chunk(|p, line| {
        emit(p, line)?;
        Ok(true)
    })
}

/// Generates the trades of `cfg` as one JSON-lines buffer per partition.
pub fn generate_in_memory(cfg: &TradeDataConfig) -> Result<(Vec<Vec<u8>>, Expected)> {
    cfg.validate()?;
    let per_partition = (cfg.events / cfg.partitions as u64 + 1) as usize;
    let mut buffers: Vec<Vec<u8>> = (0..cfg.partitions)
        .map(|_| Vec::with_capacity(per_partition * 64))
        .collect();
    let expected = generate(cfg, |p, line| {
        let buf = &mut buffers[p];
        buf.extend_from_slice(line);
        buf.push(b'\n');
        Ok(())
    })?;
    Ok((buffers, expected))
}

/// The fields of a trade the oracle needs.
#[derive(serde::Deserialize)]
struct TradeKey<'a> {
    #[serde(borrow)]
    symbol: std::borrow::Cow<'a, str>,
    ts: i64,
}

/// Computes the expected result of the trades query over an existing JSON-lines file of
/// trades (`symbol` string, `ts` in epoch milliseconds). Empty lines are ignored, as the
/// filesystem source does.
pub fn expected_from_file(path: &Path) -> Result<Expected> {
    let shown = path.display();
    let file = std::fs::File::open(path)
        .map_err(|e| BenchError::io(format!("cannot open the data file {shown}"), e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut symbols: HashMap<String, u32> = HashMap::new();
    let mut pairs: HashMap<(u32, i64), u64> = HashMap::new();
    let mut line = Vec::with_capacity(256);
    let mut events = 0u64;
    let mut line_no = 0u64;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| BenchError::io(format!("cannot read the data file {shown}"), e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.is_empty() {
            continue;
        }
        let key: TradeKey = serde_json::from_slice(text).map_err(|e| {
            BenchError::Config(format!(
                "{shown}, line {line_no}: not a trade with a string 'symbol' and an epoch-ms \
                 'ts': {e}"
            ))
        })?;
        let next_id = symbols.len() as u32;
        let id = match symbols.get(key.symbol.as_ref()) {
            Some(id) => *id,
            None => *symbols.entry(key.symbol.into_owned()).or_insert(next_id),
        };
        *pairs.entry((id, window_start(key.ts))).or_insert(0) += 1;
        if pairs.len() > ORACLE_PAIRS_MAX {
            check_pairs(pairs.len())?;
        }
        events += 1;
    }
    Ok(Expected::from_pairs(events, pairs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_start_floors_negative_and_positive_times() {
        assert_eq!(window_start(0), 0);
        assert_eq!(window_start(999), 0);
        assert_eq!(window_start(1_000), 1_000);
        assert_eq!(window_start(-1), -1_000);
    }

    #[test]
    fn in_memory_data_matches_its_oracle() {
        let cfg = TradeDataConfig::new(10_000, 3);
        let (buffers, expected) = generate_in_memory(&cfg).expect("generate");
        assert_eq!(buffers.len(), 3);
        let lines: usize = buffers
            .iter()
            .map(|b| b.iter().filter(|&&c| c == b'\n').count())
            .sum();
        assert_eq!(lines, 10_000);
        // Round robin: partition sizes differ by at most one record.
        let counts: Vec<usize> = buffers
            .iter()
            .map(|b| b.iter().filter(|&&c| c == b'\n').count())
            .collect();
        assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1);
        assert_eq!(expected.events, 10_000);
        let total: u64 = expected.windows.values().flatten().sum();
        assert_eq!(total, 10_000);
        // 10k trades at 100k/s span 0.1 s of event time plus the disorder: one or two windows.
        assert!(
            (1..=2).contains(&expected.windows.len()),
            "{:?}",
            expected.windows.keys()
        );
        assert!(expected.rows() as usize <= 2 * SYMBOLS);
    }

    #[test]
    fn oracle_of_a_written_file_equals_the_generated_oracle() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("trades.jsonl");
        let mut cfg = TradeDataConfig::new(5_000, 1);
        cfg.event_rate = 1_000; // 5 s of event time: several windows
        let mut text = Vec::new();
        let expected = generate(&cfg, |_, line| {
            text.extend_from_slice(line);
            text.push(b'\n');
            Ok(())
        })
        .expect("generate");
        text.extend_from_slice(b"\n"); // an empty line is ignored
        std::fs::write(&path, &text).expect("write");
        let from_file = expected_from_file(&path).expect("read");
        assert_eq!(from_file, expected);
        assert!(expected.windows.len() >= 5);
    }

    #[test]
    fn a_file_that_is_not_trades_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.jsonl");
        std::fs::write(&path, "{\"symbol\":\"A\",\"ts\":1}\n{\"symbol\":\"A\"}\n").expect("write");
        let err = expected_from_file(&path).expect_err("missing ts");
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn window_start_holds_its_time(ts in -10_000_000_000_000i64..10_000_000_000_000) {
            let start = window_start(ts);
            proptest::prop_assert_eq!(start.rem_euclid(WINDOW_MS), 0);
            proptest::prop_assert!(start <= ts && ts < start + WINDOW_MS);
        }
    }

    #[test]
    fn chunks_together_are_the_whole_stream() {
        let mut cfg = TradeDataConfig::new(3_000, 2);
        cfg.event_rate = 1_000;
        let mut whole = Vec::new();
        let all = generate(&cfg, |p, l| {
            whole.push((p, l.to_vec()));
            Ok(())
        })
        .expect("whole");
        let mut stream = TradeStream::new(&cfg).expect("stream");
        let mut parts = Vec::new();
        let mut chunks = Vec::new();
        while stream.remaining() > 0 {
            let mut n = 0;
            let chunk = stream
                .next_chunk(|p, l| {
                    parts.push((p, l.to_vec()));
                    n += 1;
                    Ok(n < 700)
                })
                .expect("chunk");
            assert_eq!(chunk.events, n);
            chunks.push(chunk);
        }
        assert_eq!(parts, whole);
        assert_eq!(chunks.len(), 5); // 4 x 700 + 200
        assert_eq!(chunks.iter().map(|c| c.events).sum::<u64>(), all.events);
        let chunk_total: u64 = chunks
            .iter()
            .flat_map(|c| c.windows.values().flatten())
            .sum();
        assert_eq!(chunk_total, 3_000);
    }

    #[test]
    fn out_of_range_options_are_refused() {
        assert!(TradeDataConfig::new(0, 1).validate().is_err());
        assert!(TradeDataConfig::new(10, 0).validate().is_err());
        assert!(TradeDataConfig::new(10, PARTITIONS_MAX + 1)
            .validate()
            .is_err());
    }
}
