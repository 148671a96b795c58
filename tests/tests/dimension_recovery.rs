//! Dimension state is re-read on recovery, not checkpointed: a join query (window table
//! function form, LEFT JOIN with a file dimension table) stopped mid-way with a final
//! checkpoint and resumed on another number of cores gives exactly the rows of an
//! uninterrupted run, and those equal the oracle (the join applied to the generated trades).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use spillway_engine::checkpoint::CheckpointConfig;
use spillway_engine::job::JobOptions;
use spillway_tests::compare::{assert_rows_match, read_json_lines};
use spillway_tests::job::{options, run_sql, Scratch};
use spillway_tests::oracle::{args, join_events, Agg, DimensionOracle, Event, OracleQuery};
use spillway_tests::process::committed_rows;

const ROWS: u64 = 40_000;
const RATE: u64 = 40_000;
const KEYS: &[&str] = &["symbol", "window_start", "name"];

fn sql(securities: &Path, out: &Path) -> String {
    format!(
        "CREATE TABLE trades (symbol STRING, price DOUBLE, volume BIGINT, ts TIMESTAMP(3),
           WATERMARK FOR ts AS ts - INTERVAL '100' MILLISECOND)
         WITH ('connector' = 'trades-generator', 'number-of-rows' = '{ROWS}',
               'rows-per-second' = '{RATE}', 'partitions' = '4', 'disorder-ms' = '80',
               'start-ts' = '1700000000000', 'symbols' = '24');
         CREATE TABLE securities (instrument_id STRING, name STRING,
           PRIMARY KEY (instrument_id) NOT ENFORCED)
         WITH ('connector' = 'filesystem', 'path' = '{}');
         CREATE TABLE out (symbol STRING, name STRING, window_start TIMESTAMP(3),
           trades BIGINT, volume BIGINT)
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         INSERT INTO out
         SELECT t.symbol, s.name, window_start, COUNT(*), SUM(t.volume)
         FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '200' MILLISECOND)) t
         LEFT JOIN securities s ON s.instrument_id = t.symbol
         GROUP BY t.symbol, s.name, window_start, window_end;",
        securities.display(),
        out.display()
    )
}

fn run_part(sql: &str, shards: usize, dir: &Path, after: Option<Duration>) -> bool {
    let stop = Arc::new(AtomicBool::new(false));
    if let Some(d) = after {
        let s = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(d);
            s.store(true, Ordering::Release);
        });
    }
    let opts = JobOptions {
        checkpoint: Some(
            CheckpointConfig::new(dir, Duration::from_millis(20)).expect("checkpoint config"),
        ),
        stop,
        ..options(shards)
    };
    let report = run_sql(sql, &opts).unwrap_or_else(|e| panic!("{e}\n{sql}"));
    let c = report.checkpoints.expect("the job checkpoints");
    assert!(c.final_committed, "every run ends with a final checkpoint");
    report.shards.iter().all(|s| s.finished)
}

/// SYM000..SYM017 have names (the last lines rename SYM000..SYM003); SYM018.. have none.
fn securities() -> (Vec<String>, DimensionOracle) {
    let mut lines = Vec::new();
    let mut oracle = DimensionOracle::new();
    let mut add = |i: usize, name: String| {
        let row = json!({"instrument_id": format!("SYM{i:03}"), "name": name});
        lines.push(row.to_string());
        let Value::Object(map) = row else {
            unreachable!("an object")
        };
        oracle.upsert(&format!("SYM{i:03}"), map, 0);
    };
    for i in 0..18 {
        add(i, format!("Security {i}"));
    }
    for i in 0..4 {
        add(i, format!("Renamed {i}"));
    }
    (lines, oracle)
}

fn oracle_rows(straight: &[Value], dimension: &DimensionOracle) -> Vec<Value> {
    // The straight run's windows come from the generator; the oracle recomputes them from
    // events rebuilt per (symbol, window) with their counts and volumes: a join keyed by
    // symbol only renames groups, it never splits or merges them.
    let events: Vec<Event> = straight
        .iter()
        .map(|r| {
            let mut fields = Map::new();
            fields.insert("symbol".into(), r["symbol"].clone());
            fields.insert("trades".into(), r["trades"].clone());
            fields.insert("volume".into(), r["volume"].clone());
            let ts = spillway_tests::oracle::parse_time(&r["window_start"]).expect("time");
            Event { fields, ts_ms: ts }
        })
        .collect();
    let joined = join_events(&events, false, "s", |e: &Event| {
        dimension.latest(e.str("symbol")?)
    });
    OracleQuery::tumble(200)
        .keys(|e| vec![args::str_key(e, "symbol"), args::str_key(e, "s.name")])
        .agg(Agg::sum_int(|e| e.i64("trades")))
        .agg(Agg::sum_int(|e| e.i64("volume")))
        .output(|g| {
            Some(
                json!({"symbol": g.key(0), "name": g.key(1), "window_start": g.start(),
                        "trades": g.aggs[0], "volume": g.aggs[1]}),
            )
        })
        .run(&joined)
        .rows
}

#[test]
fn a_join_resumed_from_checkpoints_equals_an_uninterrupted_run() {
    let scratch = Scratch::new();
    let (lines, dimension) = securities();
    let securities_path = scratch.path("securities.jsonl");
    std::fs::write(&securities_path, lines.join("\n")).expect("securities");

    let straight_out = scratch.path("straight.jsonl");
    let report = run_sql(&sql(&securities_path, &straight_out), &options(2))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.records_in(), ROWS);
    let straight = read_json_lines(&straight_out).expect("rows");
    let named = straight.iter().filter(|r| r["name"].is_string()).count();
    assert!(
        named > 100 && named < straight.len(),
        "{named} of {}",
        straight.len()
    );
    assert!(straight.iter().any(|r| r["name"] == "Renamed 2"));
    assert!(!straight.iter().any(|r| r["name"] == "Security 2"));
    // The names are the dimension's, per symbol (the oracle).
    assert_rows_match(&straight, &oracle_rows(&straight, &dimension), KEYS);

    let out = scratch.path("resumed");
    let dir = scratch.path("state");
    let text = sql(&securities_path, &out);
    let mut ended = false;
    for (shards, after_ms) in [(2, 300), (1, 250), (2, 250)] {
        if run_part(&text, shards, &dir, Some(Duration::from_millis(after_ms))) {
            ended = true;
            break;
        }
    }
    if !ended {
        assert!(run_part(&text, 2, &dir, None), "the last part ends");
    }
    let rows = committed_rows(&out).expect("rows");
    assert_rows_match(&rows, &straight, KEYS);
}
