//! Every golden query three ways, with identical output: straight through (no checkpoints),
//! with checkpoints taken every few milliseconds, and stopped mid-way (final checkpoint)
//! then resumed from the checkpoint on another number of cores, twice. The input is the
//! trades generator paced at a fixed rate with a fixed start time, so each run sees the same
//! events whatever moment it stops at.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use spillway_engine::checkpoint::CheckpointConfig;
use spillway_engine::job::JobOptions;
use spillway_tests::compare::{assert_rows_match, read_json_lines};
use spillway_tests::job::{options, run_sql, Scratch};
use spillway_tests::process::committed_rows;

const ROWS: u64 = 60_000;
const RATE: u64 = 60_000;

/// (name, output columns, query, key fields that order the output).
const GOLDEN: &[(&str, &str, &str, &[&str])] = &[
    (
        "tumble_all_aggregates",
        "symbol STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3), trades BIGINT, \
         volume BIGINT, avg_price DOUBLE, low DOUBLE, high DOUBLE, first_sym STRING",
        "SELECT symbol, window_start, window_end, COUNT(*), SUM(volume), AVG(price), \
         MIN(price), MAX(price), MAX(symbol) \
         FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '100' MILLISECOND)) \
         GROUP BY symbol, window_start, window_end",
        &["window_start", "symbol"],
    ),
    (
        "group_window_having",
        "symbol STRING, w TIMESTAMP(3), volume BIGINT",
        "SELECT symbol, TUMBLE_START(ts, INTERVAL '250' MILLISECOND) AS w, SUM(volume) \
         FROM trades WHERE price > 50 \
         GROUP BY symbol, TUMBLE(ts, INTERVAL '250' MILLISECOND) HAVING COUNT(*) > 3",
        &["w", "symbol"],
    ),
    (
        "window_without_keys",
        "window_start TIMESTAMP(3), n BIGINT, hi DOUBLE",
        "SELECT window_start, COUNT(*), MAX(price) \
         FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '50' MILLISECOND)) \
         GROUP BY window_start, window_end",
        &["window_start"],
    ),
    (
        "hop_all_aggregates",
        "symbol STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3), trades BIGINT, \
         volume BIGINT, avg_price DOUBLE, low DOUBLE, high DOUBLE, first_sym STRING",
        "SELECT symbol, window_start, window_end, COUNT(*), SUM(volume), AVG(price), \
         MIN(price), MAX(price), MAX(symbol) \
         FROM TABLE(HOP(TABLE trades, DESCRIPTOR(ts), INTERVAL '50' MILLISECOND, \
         INTERVAL '200' MILLISECOND)) \
         GROUP BY symbol, window_start, window_end",
        &["window_start", "symbol"],
    ),
    (
        "hop_group_window_having",
        "symbol STRING, w TIMESTAMP(3), volume BIGINT",
        "SELECT symbol, HOP_END(ts, INTERVAL '100' MILLISECOND, INTERVAL '300' MILLISECOND) AS w, \
         SUM(volume) FROM trades WHERE price > 50 \
         GROUP BY symbol, HOP(ts, INTERVAL '100' MILLISECOND, INTERVAL '300' MILLISECOND) \
         HAVING COUNT(*) > 3",
        &["w", "symbol"],
    ),
    (
        "cumulate_without_keys",
        "window_start TIMESTAMP(3), window_end TIMESTAMP(3), n BIGINT, hi DOUBLE",
        "SELECT window_start, window_end, COUNT(*), MAX(price) \
         FROM TABLE(CUMULATE(TABLE trades, DESCRIPTOR(ts), INTERVAL '25' MILLISECOND, \
         INTERVAL '250' MILLISECOND)) \
         GROUP BY window_start, window_end",
        &["window_start", "window_end"],
    ),
    (
        "side_state_aggregates",
        "window_start TIMESTAMP(3), symbols BIGINT, volumes BIGINT, open DOUBLE, \
         last_sym STRING, sd DOUBLE, var_samp DOUBLE, approx BIGINT, rich_volume BIGINT",
        "SELECT window_start, COUNT(DISTINCT symbol), COUNT(DISTINCT volume), \
         FIRST_VALUE(price), LAST_VALUE(symbol), STDDEV_POP(price), VAR_SAMP(volume), \
         APPROX_COUNT_DISTINCT(price), SUM(volume) FILTER (WHERE price > 50) \
         FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '50' MILLISECOND)) \
         GROUP BY window_start, window_end",
        &["window_start"],
    ),
    (
        "filter_project",
        "symbol STRING, price DOUBLE, volume BIGINT, ts TIMESTAMP(3)",
        "SELECT symbol, price * 2, volume, ts FROM trades WHERE volume > 900",
        &["ts", "symbol", "price", "volume"],
    ),
];

fn sql(columns: &str, query: &str, out: &Path) -> String {
    format!(
        "CREATE TABLE trades (symbol STRING, price DOUBLE, volume BIGINT, ts TIMESTAMP(3),
           WATERMARK FOR ts AS ts - INTERVAL '100' MILLISECOND)
         WITH ('connector' = 'trades-generator', 'number-of-rows' = '{ROWS}',
               'rows-per-second' = '{RATE}', 'partitions' = '4', 'disorder-ms' = '80',
               'start-ts' = '1700000000000', 'symbols' = '24');
         CREATE TABLE out ({columns})
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         INSERT INTO out {query};",
        out.display()
    )
}

fn with_checkpoints(shards: usize, dir: &Path, stop: Arc<AtomicBool>) -> JobOptions {
    JobOptions {
        checkpoint: Some(
            CheckpointConfig::new(dir, Duration::from_millis(15)).expect("checkpoint config"),
        ),
        stop,
        ..options(shards)
    }
}

/// Runs until `after` (then stops gracefully) or the end; returns whether it reached the end.
fn run_part(sql: &str, shards: usize, dir: &Path, after: Option<Duration>) -> bool {
    let stop = Arc::new(AtomicBool::new(false));
    if let Some(d) = after {
        let s = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(d);
            s.store(true, Ordering::Release);
        });
    }
    let report =
        run_sql(sql, &with_checkpoints(shards, dir, stop)).unwrap_or_else(|e| panic!("{e}\n{sql}"));
    let c = report.checkpoints.expect("the job checkpoints");
    assert!(c.final_committed, "every run ends with a final checkpoint");
    report.shards.iter().all(|s| s.finished)
}

#[test]
fn golden_queries_agree_straight_checkpointed_and_resumed_on_other_core_counts() {
    let mut rng = StdRng::seed_from_u64(4);
    for (name, columns, query, keys) in GOLDEN {
        let scratch = Scratch::new();
        let straight_out = scratch.path("straight.jsonl");
        let report = run_sql(&sql(columns, query, &straight_out), &options(2))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(report.records_in(), ROWS, "{name}");
        assert_eq!(report.late_events(), 0, "{name}: nothing is late");
        let straight: Vec<Value> = read_json_lines(&straight_out).expect("rows");
        assert!(
            straight.len() > 20,
            "{name}: a meaningful output ({})",
            straight.len()
        );

        // With checkpoints every 15 ms, uninterrupted.
        let out = scratch.path("checkpointed");
        let dir = scratch.path("checkpointed-state");
        assert!(
            run_part(&sql(columns, query, &out), 2, &dir, None),
            "{name}"
        );
        let rows = committed_rows(&out).expect("rows");
        assert_rows_match(&rows, &straight, keys);

        // Stopped mid-way and resumed on 1, then 3, then 2 cores.
        let out = scratch.path("resumed");
        let dir = scratch.path("resumed-state");
        let text = sql(columns, query, &out);
        let mut parts = 0;
        for shards in [2, 1, 3] {
            let after = Duration::from_millis(rng.random_range(150..450));
            parts += 1;
            if run_part(&text, shards, &dir, Some(after)) {
                break;
            }
        }
        if parts == 3 {
            assert!(run_part(&text, 2, &dir, None), "{name}: the last part ends");
        }
        let rows = committed_rows(&out).expect("rows");
        assert_rows_match(&rows, &straight, keys);
    }
}
