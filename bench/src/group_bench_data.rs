//! The input and the result check of the group-mode benchmark (`spillway-bench group`): the
//! job's SQL, generated trades with their oracle (an independent batch computation of the
//! query: per symbol and 1 s window, the count and the volume sum), and the committed result
//! rows the processes' exactly-once filesystem sinks wrote under `<out>/partition-<r>/`.
//!
//! Event-time layout of a throughput run (all before the data is the warm-up):
//! - warm-up trades at [`WARMUP_START_BEFORE_MS`] before the data's start;
//! - one "fire" trade per partition at [`FIRE_BEFORE_MS`] before the data's start, which moves
//!   every partition's watermark past the warm-up windows (its own window fires with the data);
//! - the data, dealt round robin over the partitions, at most [`DISORDER_MS`] out of order;
//! - one sentinel per partition [`SENTINEL_AFTER_MS`] after the data, which fires every data
//!   window; its own window never fires (nothing comes after it).
//!
//! The producers put the input into Kafka: [`LineProducer`] (a prepared set of lines, as fast
//! as it goes) and [`LiveProducer`] (a thread producing at a fixed rate with wall-clock event
//! times, for the failover run), both checking every delivery.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord};

use serde_json::Value;
use spillway_connectors::epoch_files::PartName;
use spillway_connectors::timestamp::parse_timestamp_ms;
use spillway_connectors::trades_generator::{symbol_name, TradeGenConfig, TradeGenerator};

use crate::delivery::{wait_for_deliveries, DeliveryCounter};
use crate::error::{BenchError, Result};

/// Distinct symbols of the data (`SYM000` .. `SYM999`), spread over every partition.
pub const SYMBOLS: usize = 1_000;
/// The TUMBLE window of the job.
pub const WINDOW_MS: i64 = 1_000;
/// The WATERMARK bound of the job.
pub const BOUND_MS: i64 = 1_000;
/// How far out of order the data is (below [`BOUND_MS`]: nothing is late).
pub const DISORDER_MS: u64 = 200;
/// Event time of the data's first trade: 2023-11-14 22:13:20 UTC.
pub const DATA_START_TS_MS: i64 = 1_700_000_000_000;
/// The warm-up trades start this long before the data.
pub const WARMUP_START_BEFORE_MS: i64 = 60_000;
/// Warm-up trades (over every partition; with [`SYMBOLS`] symbols each repartition
/// partition gets keys).
pub const WARMUP_EVENTS: u64 = 4_000;
/// Event-time rate of the warm-up trades (they span two windows).
pub const WARMUP_EVENT_RATE: u64 = 2_000;
/// The fire trades are this long before the data.
pub const FIRE_BEFORE_MS: i64 = 10_000;
/// Symbol of the fire trades.
pub const FIRE_SYMBOL: &str = "FIRE";
/// The sentinels are this long after the data's last event time.
pub const SENTINEL_AFTER_MS: i64 = 60_000;
/// Symbol of the sentinels; no result row may carry it.
pub const SENTINEL_SYMBOL: &str = "SENTINEL";
/// Largest number of (symbol, window) cells an oracle holds.
pub const ORACLE_CELLS_MAX: usize = 20_000_000;
/// The live producer's tick.
const LIVE_TICK_MS: u64 = 5;
/// Longest wait for the producers' deliveries.
const DELIVERY_WAIT_MS_MAX: u64 = 120_000;
/// Mismatches quoted in a failed check.
const MISMATCHES_QUOTED_MAX: usize = 5;

/// What the job reads and where it writes.
#[derive(Debug, Clone)]
pub struct GroupJob {
    /// `properties.bootstrap.servers`.
    pub bootstrap: String,
    /// The source topic.
    pub topic: String,
    /// `properties.group.id` (the repartition topic is `<group>-repartition`).
    pub group: String,
    /// The sink's directory (each repartition partition writes `partition-<r>/` in it).
    pub out: PathBuf,
    /// `checkpoint.dir`, the same for every process (with the state topic, each restores its
    /// partitions' directories from the topic anyway).
    pub state: PathBuf,
    /// `properties.session.timeout.ms` of both consumer groups.
    pub session_timeout_ms: u64,
    /// `SET 'checkpoint.storage' = 'shared-directory'` instead of the state topic.
    pub shared_directory: bool,
}

/// The job's SQL: count and volume per symbol and 1 s window, group mode, checkpoints every
/// 200 ms, exactly-once filesystem sink.
pub fn group_job_sql(job: &GroupJob) -> String {
    format!(
        "CREATE TABLE trades (symbol STRING, price DOUBLE, volume BIGINT, ts TIMESTAMP(3),
           WATERMARK FOR ts AS ts - INTERVAL '{BOUND_MS}' MILLISECOND)
         WITH ('connector' = 'kafka', 'topic' = '{topic}',
               'properties.bootstrap.servers' = '{bootstrap}',
               'properties.group.id' = '{group}',
               'properties.session.timeout.ms' = '{session}',
               'properties.heartbeat.interval.ms' = '500',
               'scan.startup.mode' = 'group-offsets',
               'scan.partition-assignment' = 'group',
               'scan.watermark.idle-timeout' = '60 s',
               'format' = 'json');
         CREATE TABLE stats (symbol STRING, window_start TIMESTAMP(3), n BIGINT, v BIGINT)
         WITH ('connector' = 'filesystem', 'path' = '{out}', 'format' = 'json');
         SET 'checkpoint.dir' = '{state}';{storage}
         SET 'checkpoint.interval' = '200 ms';
         INSERT INTO stats
         SELECT symbol, window_start, COUNT(*) AS n, SUM(volume) AS v
         FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '{WINDOW_MS}' MILLISECOND))
         GROUP BY symbol, window_start, window_end;\n",
        topic = job.topic,
        bootstrap = job.bootstrap,
        group = job.group,
        session = job.session_timeout_ms,
        out = job.out.display(),
        state = job.state.display(),
        storage = if job.shared_directory {
            "\n         SET 'checkpoint.storage' = 'shared-directory';"
        } else {
            ""
        },
    )
}

/// The start of the window holding `ts_ms`.
pub fn window_start(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(WINDOW_MS) * WINDOW_MS
}

/// The expected result: per (symbol, window start) the count and the volume sum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Oracle {
    cells: HashMap<(String, i64), (u64, i64)>,
    /// Trades added.
    pub events: u64,
}

impl Oracle {
    /// Adds one trade.
    pub fn add(&mut self, symbol: &str, ts_ms: i64, volume: i64) -> Result<()> {
        let key = (symbol.to_string(), window_start(ts_ms));
        let cell = self.cells.entry(key).or_insert((0, 0));
        cell.0 += 1;
        cell.1 += volume;
        self.events += 1;
        if self.cells.len() > ORACLE_CELLS_MAX {
            return Err(BenchError::Config(format!(
                "the data has more than {ORACLE_CELLS_MAX} (symbol, window) cells \
                 (ORACLE_CELLS_MAX); use fewer events or a higher event rate"
            )));
        }
        Ok(())
    }

    /// Adds every trade of `other`.
    pub fn merge(&mut self, other: &Oracle) {
        for (key, (n, v)) in &other.cells {
            let cell = self.cells.entry(key.clone()).or_insert((0, 0));
            cell.0 += n;
            cell.1 += v;
        }
        self.events += other.events;
    }

    /// Result rows expected: one per (symbol, window).
    pub fn rows(&self) -> usize {
        self.cells.len()
    }

    /// Checks `rows` are exactly the expected result: every (symbol, window) once with its
    /// count and volume, nothing else. `what` names the rows in the error.
    pub fn check(&self, rows: &[ResultRow], what: &str) -> Result<()> {
        let mut seen: HashMap<(&str, i64), (u64, i64)> = HashMap::with_capacity(rows.len());
        let mut problems = Vec::new();
        let mut problem_count = 0usize;
        let mut note = |problem: String| {
            problem_count += 1;
            if problems.len() < MISMATCHES_QUOTED_MAX {
                problems.push(problem);
            }
        };
        for row in rows {
            let key = (row.symbol.as_str(), row.window_start_ms);
            if seen.insert(key, (row.n, row.v)).is_some() {
                note(format!("published twice: {row:?}"));
                continue;
            }
            match self.cells.get(&(row.symbol.clone(), row.window_start_ms)) {
                None => note(format!("not expected: {row:?}")),
                Some(&(n, v)) if (n, v) != (row.n, row.v) => {
                    note(format!("{row:?}, expected n = {n}, v = {v}"))
                }
                Some(_) => {}
            }
        }
        for ((symbol, start), (n, v)) in &self.cells {
            if !seen.contains_key(&(symbol.as_str(), *start)) {
                note(format!(
                    "missing: symbol {symbol}, window_start {start}, n = {n}, v = {v}"
                ));
            }
        }
        if problem_count > 0 {
            return Err(BenchError::WrongResult(format!(
                "{what}: {} rows committed, {} expected, {problem_count} problems, e.g. {}",
                rows.len(),
                self.rows(),
                problems.join("; ")
            )));
        }
        Ok(())
    }
}

/// One committed result row of the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultRow {
    pub symbol: String,
    /// `window_start`, epoch ms.
    pub window_start_ms: i64,
    /// `COUNT(*)`.
    pub n: u64,
    /// `SUM(volume)`.
    pub v: i64,
}

impl ResultRow {
    /// Parses one output line; `where_` names its file in the error.
    pub fn parse(line: &str, where_: &Path) -> Result<ResultRow> {
        let bad = |why: &str| {
            BenchError::WrongResult(format!(
                "{}: bad result line ({why}): {line}",
                where_.display()
            ))
        };
        let value: Value = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
        let symbol = value["symbol"].as_str().ok_or_else(|| bad("no symbol"))?;
        let start = value["window_start"]
            .as_str()
            .and_then(|s| parse_timestamp_ms(s.as_bytes()))
            .ok_or_else(|| bad("no valid window_start"))?;
        let n = value["n"].as_u64().ok_or_else(|| bad("no count n"))?;
        let v = value["v"].as_i64().ok_or_else(|| bad("no volume sum v"))?;
        Ok(ResultRow {
            symbol: symbol.to_string(),
            window_start_ms: start,
            n,
            v,
        })
    }
}

/// Generated trades, each as (partition, JSON line), with their oracle.
#[derive(Debug, Clone, Default)]
pub struct Trades {
    pub records: Vec<(i32, Vec<u8>)>,
    pub oracle: Oracle,
    /// Largest event time, epoch ms.
    pub ts_max_ms: i64,
}

impl Trades {
    fn push(
        &mut self,
        partition: i32,
        symbol: &str,
        ts_ms: i64,
        volume: i64,
        line: Vec<u8>,
    ) -> Result<()> {
        self.records.push((partition, line));
        self.ts_max_ms = self.ts_max_ms.max(ts_ms);
        self.oracle.add(symbol, ts_ms, volume)
    }

    /// Payload bytes of the records.
    pub fn bytes(&self) -> usize {
        self.records.iter().map(|(_, l)| l.len()).sum()
    }
}

/// A trade line with its own symbol (fire trades and sentinels).
pub fn marker_line(symbol: &str, ts_ms: i64) -> Vec<u8> {
    format!("{{\"symbol\":\"{symbol}\",\"price\":1.0,\"volume\":1,\"ts\":{ts_ms}}}").into_bytes()
}

/// `events` trades of [`SYMBOLS`] symbols from `start_ts_ms` at `event_rate` trades per
/// second of event time, trade i to partition i mod `partitions`.
pub fn generate_trades(
    events: u64,
    partitions: usize,
    event_rate: u64,
    start_ts_ms: i64,
    seed: u64,
) -> Result<Trades> {
    let mut generator = TradeGenerator::new(TradeGenConfig {
        seed,
        symbols: SYMBOLS,
        start_ts_ms,
        events_per_second: event_rate,
        disorder_ms: DISORDER_MS,
        late_every: None,
    });
    let mut trades = Trades {
        ts_max_ms: i64::MIN,
        ..Trades::default()
    };
    trades.records.reserve(events as usize);
    for i in 0..events {
        let trade = generator.next();
        let mut line = Vec::with_capacity(80);
        generator.write_json(&trade, &mut line);
        let symbol = symbol_name(trade.symbol);
        let partition = (i % partitions as u64) as i32;
        trades.push(partition, &symbol, trade.ts_ms, trade.volume, line)?;
    }
    Ok(trades)
}

/// The warm-up of a throughput run: [`WARMUP_EVENTS`] trades (also over every partition),
/// then one fire trade per partition.
pub fn warmup_trades(partitions: usize) -> Result<(Trades, Trades)> {
    let warmup = generate_trades(
        WARMUP_EVENTS.max(partitions as u64),
        partitions,
        WARMUP_EVENT_RATE,
        DATA_START_TS_MS - WARMUP_START_BEFORE_MS,
        7,
    )?;
    let mut fire = Trades::default();
    let ts = DATA_START_TS_MS - FIRE_BEFORE_MS;
    for p in 0..partitions as i32 {
        fire.push(p, FIRE_SYMBOL, ts, 1, marker_line(FIRE_SYMBOL, ts))?;
    }
    Ok((warmup, fire))
}

/// One sentinel per partition at `ts_ms`.
pub fn sentinels(partitions: usize, ts_ms: i64) -> Vec<(i32, Vec<u8>)> {
    (0..partitions as i32)
        .map(|p| (p, marker_line(SENTINEL_SYMBOL, ts_ms)))
        .collect()
}

/// The committed part files of the sink's partition directories, read as they appear (a
/// committed file never changes, so each is read once).
#[derive(Debug)]
pub struct CommittedRows {
    out: PathBuf,
    read: HashMap<PathBuf, usize>,
    /// Every row read so far.
    pub rows: Vec<ResultRow>,
}

impl CommittedRows {
    /// Rows under `out` (nothing yet).
    pub fn new(out: &Path) -> Self {
        CommittedRows {
            out: out.to_path_buf(),
            read: HashMap::new(),
            rows: Vec::new(),
        }
    }

    /// The partition directories `out/partition-<r>` present now.
    pub fn partition_dirs(&self) -> Result<Vec<PathBuf>> {
        let entries = match std::fs::read_dir(&self.out) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(BenchError::io(format!("listing {}", self.out.display()), e)),
        };
        let mut dirs = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| BenchError::io(format!("listing {}", self.out.display()), e))?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with("partition-") {
                dirs.push(entry.path());
            }
        }
        dirs.sort();
        Ok(dirs)
    }

    /// Reads the committed files that appeared since the last call; returns the rows added.
    pub fn refresh(&mut self) -> Result<usize> {
        let before = self.rows.len();
        for dir in self.partition_dirs()? {
            for path in committed_files(&dir)? {
                if self.read.contains_key(&path) {
                    continue;
                }
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| BenchError::io(format!("reading {}", path.display()), e))?;
                let mut count = 0;
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    self.rows.push(ResultRow::parse(line, &path)?);
                    count += 1;
                }
                self.read.insert(path, count);
            }
        }
        Ok(self.rows.len() - before)
    }

    /// Rows whose window starts at or after `from_ms` and before `to_ms`.
    pub fn count_between(&self, from_ms: i64, to_ms: i64) -> usize {
        self.rows
            .iter()
            .filter(|r| (from_ms..to_ms).contains(&r.window_start_ms))
            .count()
    }
}

/// The committed part files (`part-<epoch>-<shard>.jsonl`) of one directory.
pub fn committed_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BenchError::io(format!("listing {}", dir.display()), e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| BenchError::io(format!("listing {}", dir.display()), e))?;
        let name = entry.file_name();
        if let Some(PartName::Committed { .. }) = PartName::parse(&name.to_string_lossy()) {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Every committed row under `out`, read with the sink's own reader (the final check).
pub fn read_all_committed(out: &Path) -> Result<Vec<ResultRow>> {
    let mut rows = Vec::new();
    for dir in CommittedRows::new(out).partition_dirs()? {
        let lines = spillway_connectors::epoch_files::read_committed_lines(&dir)
            .map_err(|e| BenchError::io(format!("reading {}", dir.display()), e))?;
        for line in lines.iter().filter(|l| !l.trim().is_empty()) {
            rows.push(ResultRow::parse(line, &dir)?);
        }
    }
    Ok(rows)
}

/// A producer of trade lines to explicit partitions, with delivery checks.
pub struct LineProducer {
    producer: BaseProducer<DeliveryCounter>,
    sent: u64,
}

impl LineProducer {
    /// An idempotent producer to `bootstrap`.
    pub fn new(bootstrap: &str) -> Result<Self> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "2000000")
            .set("queue.buffering.max.kbytes", "1048576")
            // A retried request must not store a trade twice (the oracle counts it once).
            .set("enable.idempotence", "true")
            .create_with_context(DeliveryCounter::default())
            .map_err(|e| BenchError::Kafka(format!("cannot create the producer: {e}")))?;
        Ok(LineProducer { producer, sent: 0 })
    }

    /// Sends one line to `topic` [`partition`], waiting while the local queue is full.
    // `%` rather than `is_multiple_of`, which needs Rust 1.87 (the workspace says 1.85).
    #[allow(clippy::manual_is_multiple_of)]
    pub fn send(&mut self, topic: &str, partition: i32, line: &[u8]) -> Result<()> {
        let mut record = BaseRecord::<(), [u8]>::to(topic)
            .payload(line)
            .partition(partition);
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    self.producer.poll(Duration::from_millis(5));
                    record = back;
                }
                Err((e, _)) => {
                    return Err(BenchError::Kafka(format!(
                        "cannot send to {topic} [{partition}]: {e}"
                    )))
                }
            }
        }
        self.sent += 1;
        if self.sent % 1_000 == 0 {
            self.producer.poll(Duration::ZERO);
        }
        Ok(())
    }

    /// Sends every (partition, line) in order.
    pub fn send_all(&mut self, topic: &str, records: &[(i32, Vec<u8>)]) -> Result<()> {
        records
            .iter()
            .try_for_each(|(p, line)| self.send(topic, *p, line))
    }

    /// Waits until everything sent is delivered.
    pub fn wait(&self) -> Result<()> {
        wait_for_deliveries(
            &self.producer,
            "trades",
            Some(self.sent),
            DELIVERY_WAIT_MS_MAX,
        )
    }
}

/// Checks `topic` holds exactly `records` records from offset 0 on (the sum over its
/// partitions of the high watermarks): nothing dropped by the mock cluster's size limit,
/// nothing stored twice, so a wrong count in the result is the engine's.
pub fn check_topic_records(
    bootstrap: &str,
    topic: &str,
    partitions: usize,
    records: u64,
) -> Result<()> {
    crate::kafka_bench::check_backlog(bootstrap, topic, partitions, records)
}

/// Failover's producer thread: trades at a fixed rate with wall-clock event times.
pub struct LiveProducer {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<Result<(Oracle, i64)>>,
}

impl LiveProducer {
    /// Starts producing `rate` trades/s round robin into the job's topic.
    pub fn start(job: &GroupJob, partitions: usize, rate: u64) -> Result<Self> {
        let mut producer = LineProducer::new(&job.bootstrap)?;
        let topic = job.topic.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let thread = thread::Builder::new()
            .name("group-bench-producer".into())
            .spawn(move || -> Result<(Oracle, i64)> {
                let mut rng = StdRng::seed_from_u64(11);
                let mut oracle = Oracle::default();
                let mut ts_max = i64::MIN;
                let started = Instant::now();
                while !stop_flag.load(Ordering::Acquire) {
                    let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
                    let ts = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    while oracle.events < due {
                        let symbol = symbol_name(rng.random_range(0..SYMBOLS as u32));
                        let volume: i64 = rng.random_range(1..=1000);
                        let price = f64::from(rng.random_range(100u32..50_000)) / 100.0;
                        let line = format!(
                            "{{\"symbol\":\"{symbol}\",\"price\":{price:.2},\"volume\":{volume},\"ts\":{ts}}}"
                        );
                        let partition = (oracle.events % partitions as u64) as i32;
                        producer.send(&topic, partition, line.as_bytes())?;
                        oracle.add(&symbol, ts, volume)?;
                        ts_max = ts_max.max(ts);
                    }
                    producer.producer.poll(Duration::ZERO);
                    thread::sleep(Duration::from_millis(LIVE_TICK_MS));
                }
                producer.wait()?;
                Ok((oracle, ts_max))
            })
            .map_err(|e| BenchError::io("cannot start the producer thread", e))?;
        Ok(LiveProducer { stop, thread })
    }

    /// An error if the producer thread ended (it only ends early with an error).
    pub fn check_alive(&self) -> Result<()> {
        if self.thread.is_finished() {
            return Err(BenchError::Kafka("the live producer stopped early".into()));
        }
        Ok(())
    }

    /// Stops producing; the oracle of everything delivered and the largest event time.
    pub fn stop(self) -> Result<(Oracle, i64)> {
        self.stop.store(true, Ordering::Release);
        self.thread
            .join()
            .map_err(|_| BenchError::Kafka("the live producer thread panicked".into()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn row(symbol: &str, start: i64, n: u64, v: i64) -> ResultRow {
        ResultRow {
            symbol: symbol.to_string(),
            window_start_ms: start,
            n,
            v,
        }
    }

    #[test]
    fn the_sql_parses_and_names_the_group_options() {
        let sql = group_job_sql(&GroupJob {
            bootstrap: "127.0.0.1:1".into(),
            topic: "t".into(),
            group: "g".into(),
            out: PathBuf::from("/x/out"),
            state: PathBuf::from("/x/state"),
            session_timeout_ms: 6000,
            shared_directory: true,
        });
        for part in [
            "'scan.partition-assignment' = 'group'",
            "'scan.startup.mode' = 'group-offsets'",
            "'properties.session.timeout.ms' = '6000'",
            "'path' = '/x/out'",
            "SET 'checkpoint.dir' = '/x/state'",
            "SET 'checkpoint.storage' = 'shared-directory'",
        ] {
            assert!(sql.contains(part), "{part} missing in {sql}");
        }
        spillway_engine::sql::parse_program(&sql).expect("the engine parses the SQL");
    }

    #[test]
    fn the_check_finds_missing_extra_repeated_and_wrong_rows() {
        let mut oracle = Oracle::default();
        oracle.add("A", 1_500, 3).expect("add");
        oracle.add("A", 1_900, 4).expect("add");
        oracle.add("B", 2_000, 5).expect("add");
        assert_eq!(oracle.rows(), 2);
        let good = vec![row("A", 1_000, 2, 7), row("B", 2_000, 1, 5)];
        oracle.check(&good, "good").expect("exact result");
        let cases = [
            vec![row("A", 1_000, 2, 7)],
            vec![good[0].clone(), good[1].clone(), good[1].clone()],
            vec![good[0].clone(), good[1].clone(), row("C", 0, 1, 1)],
            vec![row("A", 1_000, 2, 8), good[1].clone()],
        ];
        for rows in cases {
            let e = oracle.check(&rows, "case").expect_err("a wrong result");
            assert!(matches!(e, BenchError::WrongResult(_)), "{e}");
        }
    }

    #[test]
    fn result_lines_parse_and_bad_ones_are_errors() {
        let path = Path::new("/x/part.jsonl");
        let line = r#"{"symbol":"SYM001","window_start":"2023-11-14 22:13:20.000","n":3,"v":9}"#;
        assert_eq!(
            ResultRow::parse(line, path).expect("row"),
            row("SYM001", DATA_START_TS_MS, 3, 9)
        );
        for bad in [
            "{",
            r#"{"window_start":"2023-11-14 22:13:20.000","n":3,"v":9}"#,
            r#"{"symbol":"A","window_start":"yesterday","n":3,"v":9}"#,
            r#"{"symbol":"A","window_start":"2023-11-14 22:13:20.000","n":-3,"v":9}"#,
        ] {
            assert!(ResultRow::parse(bad, path).is_err(), "{bad}");
        }
    }

    #[test]
    fn committed_rows_are_read_once_and_pending_files_never() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let mut rows = CommittedRows::new(&out);
        assert_eq!(rows.refresh().expect("no output yet"), 0);
        let p0 = out.join("partition-0");
        std::fs::create_dir_all(&p0).expect("dir");
        let line = r#"{"symbol":"A","window_start":"2023-11-14 22:13:20.000","n":1,"v":2}"#;
        std::fs::write(p0.join("part-000000000001-0000.jsonl"), format!("{line}\n")).expect("part");
        std::fs::write(p0.join(".part-000000000002-0000.pending"), "garbage\n").expect("pending");
        assert_eq!(rows.refresh().expect("one row"), 1);
        assert_eq!(rows.refresh().expect("nothing new"), 0);
        assert_eq!(
            rows.count_between(DATA_START_TS_MS, DATA_START_TS_MS + 1),
            1
        );
        assert_eq!(rows.count_between(0, DATA_START_TS_MS), 0);
        assert_eq!(read_all_committed(&out).expect("all"), rows.rows);
    }

    #[test]
    fn the_warmup_covers_every_partition_before_the_data() {
        let (warmup, fire) = warmup_trades(8).expect("warm-up");
        for p in 0..8 {
            assert!(warmup.records.iter().any(|(q, _)| *q == p), "partition {p}");
            assert_eq!(fire.records.iter().filter(|(q, _)| *q == p).count(), 1);
        }
        assert!(warmup.ts_max_ms + BOUND_MS < DATA_START_TS_MS - FIRE_BEFORE_MS);
        assert!(window_start(fire.ts_max_ms) + WINDOW_MS <= DATA_START_TS_MS - DISORDER_MS as i64);
        assert_eq!(fire.oracle.rows(), 1);
    }

    proptest! {
        #[test]
        fn generated_trades_match_their_oracle(events in 1u64..3_000, partitions in 1usize..9) {
            let trades = generate_trades(events, partitions, 5_000, DATA_START_TS_MS, 3).expect("trades");
            prop_assert_eq!(trades.records.len() as u64, events);
            prop_assert_eq!(trades.oracle.events, events);
            // Re-aggregating the lines themselves gives the oracle.
            let mut again = Oracle::default();
            let mut last_ts: HashMap<i32, i64> = HashMap::new();
            for (p, line) in &trades.records {
                let v: Value = serde_json::from_slice(line).expect("json");
                let ts = v["ts"].as_i64().expect("ts");
                again.add(v["symbol"].as_str().expect("symbol"), ts,
                    v["volume"].as_i64().expect("volume")).expect("add");
                let prev = last_ts.entry(*p).or_insert(i64::MIN);
                prop_assert!(ts + (DISORDER_MS as i64) >= *prev, "disorder within the bound");
                *prev = (*prev).max(ts);
                prop_assert!((*p as usize) < partitions);
            }
            prop_assert_eq!(&again, &trades.oracle);
        }
    }
}
