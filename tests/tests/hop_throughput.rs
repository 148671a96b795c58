//! Throughput of a HOP query (10 s windows every 2 s, per symbol COUNT, SUM, AVG, MIN, MAX)
//! over generated trades held in memory, like `spillway-bench memory` does for TUMBLE.
//!
//! Smoke mode (always): 200k trades, rows compared with the oracle. Benchmark mode:
//! `SPILLWAY_HOP_BENCH_EVENTS=10000000 cargo test --release -p spillway-tests --test
//! hop_throughput -- --ignored --nocapture` runs 3 checked runs and prints the median
//! events/s per core. The check of a benchmark run: nothing late or skipped, every window
//! emitted once, and the COUNT(*) over all rows is exactly 5 times the trades (each trade is
//! in size / slide = 5 windows).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use spillway_connectors::memory_source::MemorySourceFactory;
use spillway_connectors::trades_generator::{TradeGenConfig, TradeGenerator};
use spillway_engine::job::{JobOptions, JobReport};
use spillway_tests::compare::{assert_rows_match, read_json_lines};
use spillway_tests::job::{file_sink_table, run_sql, Scratch};
use spillway_tests::oracle::{parse_events, OracleQuery};
use spillway_tests::trades_stats::trades_stats;

const PARTITIONS: usize = 2;
const EVENTS_PER_SECOND: u64 = 100_000;
const WINDOWS_PER_EVENT: i64 = 5;

const QUERY: &str = "INSERT INTO out \
    SELECT symbol, window_start, window_end, COUNT(*), SUM(volume), AVG(price), MIN(price), MAX(price) \
    FROM TABLE(HOP(TABLE trades, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '10' SECOND)) \
    GROUP BY symbol, window_start, window_end;";

/// `events` generated trades (200 ms out of order) dealt round robin over the partitions.
fn trades(events: u64) -> Vec<Vec<u8>> {
    let mut generator = TradeGenerator::new(TradeGenConfig {
        seed: 42,
        symbols: 64,
        start_ts_ms: 1_700_000_000_000,
        events_per_second: EVENTS_PER_SECOND,
        disorder_ms: 200,
        late_every: None,
    });
    let mut buffers = vec![Vec::new(); PARTITIONS];
    for i in 0..events {
        let trade = generator.next();
        let buf = &mut buffers[i as usize % PARTITIONS];
        generator.write_json(&trade, buf);
        buf.push(b'\n');
    }
    buffers
}

/// Runs the query over `buffers`; returns the report and the rows.
fn run(buffers: &[Arc<Vec<u8>>], pin_cores: bool) -> (JobReport, Vec<Value>) {
    let scratch = Scratch::new();
    let output = scratch.path("out.jsonl");
    let sql = format!(
        "CREATE TABLE trades (symbol STRING, price DOUBLE, volume BIGINT, ts TIMESTAMP(3), \
           WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
         WITH ('connector' = 'filesystem', 'path' = 'in-memory', 'format' = 'json');\n{}{QUERY}",
        file_sink_table(
            "out",
            "symbol STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3), trades BIGINT, \
             volume BIGINT, avg_price DOUBLE, low DOUBLE, high DOUBLE",
            &output
        )
    );
    let opts = JobOptions {
        shards: Some(PARTITIONS),
        pin_cores,
        source_override: Some(Arc::new(MemorySourceFactory::new(
            "trades",
            buffers.to_vec(),
        ))),
        ..JobOptions::default()
    };
    let report = run_sql(&sql, &opts).unwrap_or_else(|e| panic!("{e}"));
    let rows = read_json_lines(&output).expect("rows");
    (report, rows)
}

/// The checks every run passes before its figure counts.
fn check(report: &JobReport, rows: &[Value], events: u64) {
    assert_eq!(report.records_in(), events, "records in");
    assert_eq!(report.late_events(), 0, "nothing is late");
    assert_eq!(report.late_partial_groups(), 0, "no late partials");
    let mut seen = BTreeSet::new();
    for r in rows {
        let key = (r["symbol"].to_string(), r["window_start"].to_string());
        assert!(seen.insert(key), "window emitted twice: {r}");
    }
    let counted: i64 = rows
        .iter()
        .map(|r| r["trades"].as_i64().unwrap_or(-1))
        .sum();
    assert_eq!(
        counted,
        events as i64 * WINDOWS_PER_EVENT,
        "each trade is in 5 windows"
    );
}

#[test]
fn hop_smoke_run_matches_the_oracle() {
    let events = 200_000;
    let buffers: Vec<Arc<Vec<u8>>> = trades(events).into_iter().map(Arc::new).collect();
    let (report, rows) = run(&buffers, false);
    check(&report, &rows, events);
    // Each partition's lines in order, then the next partition's: the oracle ignores order.
    let text: String = buffers
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    let parsed = parse_events(&text, "ts").expect("events");
    let expected = trades_stats(OracleQuery::hop(10_000, 2_000)).run(&parsed);
    assert_rows_match(&rows, &expected.rows, &["window_start", "symbol"]);
}

#[test]
#[ignore = "a benchmark: set SPILLWAY_HOP_BENCH_EVENTS and run with --ignored --nocapture"]
fn hop_throughput_in_memory() {
    let events: u64 = std::env::var("SPILLWAY_HOP_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let buffers: Vec<Arc<Vec<u8>>> = trades(events).into_iter().map(Arc::new).collect();
    let mut rates = Vec::new();
    for run_number in 1..=3 {
        let t0 = Instant::now();
        let (report, rows) = run(&buffers, true);
        let secs = t0.elapsed().as_secs_f64();
        check(&report, &rows, events);
        let rate = events as f64 / secs;
        println!(
            "HOP 10 s / 2 s run {run_number}: {secs:.3} s, {:.0} events/s, {:.0} events/s per core ({} rows)",
            rate,
            rate / PARTITIONS as f64,
            rows.len()
        );
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "HOP median: {:.0} events/s total, {:.0} events/s per core",
        rates[1],
        rates[1] / PARTITIONS as f64
    );
    assert!(rates[1] > 0.0);
}
