//! Golden tests of the per-window top-N Nexmark queries of `examples/nexmark/` (q5: the
//! auctions with the most bids per hopping window, a per-window MAX joined back; q7: the
//! highest bids per window, raw rows joined back; top_bids: ROW_NUMBER() <= 3), each run
//! three ways with the same result as an independent batch computation
//! (`nexmark_oracle_topn.rs`): straight, out of order within the watermark bound on 2
//! shards, and 4 partitions on 2 shards. Then top-N state through checkpoints: straight,
//! checkpointed, and stopped and resumed on other core counts give the same rows.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::Value;
use spillway_connectors::nexmark::EventKind;
use spillway_engine::checkpoint::CheckpointConfig;
use spillway_engine::job::{run_program, JobOptions};
use spillway_tests::compare::{assert_rows_match, read_json_lines};
use spillway_tests::job::{options, run_sql, Scratch};
use spillway_tests::nexmark_oracle::{events_of, nexmark_program, BOUND_MS};
use spillway_tests::nexmark_oracle_topn::{topn_expected_rows, topn_key_fields, topn_query_sql};
use spillway_tests::nexmark_runs::NexmarkRun as Run;
use spillway_tests::oracle::Event;
use spillway_tests::process::committed_rows;

const SEED: u64 = 20_240_611;
/// 100 s of event time at [`EVENT_RATE`]: 10 tumbling windows, 54 hopping ones.
const EVENTS: u64 = 100_000;
const EVENT_RATE: u64 = 1_000;
/// Within the examples' 4 s watermark bound.
const DISORDER_MS: u64 = 3_000;

/// Straight, out of order within the bound, keys spread over 4 partitions on 2 shards.
fn runs() -> [Run; 3] {
    Run::three_ways(SEED, EVENTS, EVENT_RATE, DISORDER_MS)
}

fn bids(run: &Run) -> &'static [Event] {
    static STRAIGHT: OnceLock<Vec<Event>> = OnceLock::new();
    static DISORDERED: OnceLock<Vec<Event>> = OnceLock::new();
    let cell = if run.disorder_ms == 0 {
        &STRAIGHT
    } else {
        &DISORDERED
    };
    cell.get_or_init(|| events_of(run.stream(), EventKind::Bid, EVENTS))
}

/// Runs query `name` as `run`, compares with the oracle; returns the rows.
fn check_query(name: &str, run: Run) -> Vec<Value> {
    assert!(DISORDER_MS < BOUND_MS as u64);
    let scratch = Scratch::new();
    let output = scratch.path("out.jsonl");
    let sql = topn_query_sql(name).unwrap_or_else(|e| panic!("{e}"));
    let program = nexmark_program(sql, "bid", &run.source_options(), &output)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let bids = bids(&run);
    let report =
        run_program(&program, &options(run.shards)).unwrap_or_else(|e| panic!("{run:?}: {e}"));
    let rows = read_json_lines(&output).unwrap_or_else(|e| panic!("{run:?}: {e}"));
    assert_eq!(report.records_in(), bids.len() as u64, "{run:?}");
    assert_eq!(
        report.late_events(),
        0,
        "{run:?}: disorder within the bound"
    );
    assert_eq!(report.rows_out(), rows.len() as u64, "{run:?}");
    let expected = topn_expected_rows(name, bids).unwrap_or_else(|e| panic!("{e}"));
    assert_rows_match(&rows, &expected, topn_key_fields(name));
    rows
}

#[test]
fn q7_highest_bids_per_window_three_ways() {
    for run in runs() {
        let rows = check_query("q7", run);
        // At least one bid per window (10 or 11 windows), a few ties at most.
        assert!(
            (10..=30).contains(&rows.len()),
            "{run:?}: {} rows",
            rows.len()
        );
    }
}

#[test]
fn q5_hot_auctions_per_hopping_window_three_ways() {
    for run in runs() {
        let rows = check_query("q5", run);
        assert!(
            rows.len() >= 50,
            "{run:?}: at least one auction per window: {}",
            rows.len()
        );
    }
}

#[test]
fn top_bids_three_per_window_three_ways() {
    for run in runs() {
        let rows = check_query("top_bids", run);
        assert!(
            (30..=33).contains(&rows.len()),
            "{run:?}: 3 per window: {}",
            rows.len()
        );
    }
}

const ROWS: u64 = 60_000;
const RATE: u64 = 60_000;

/// Top-N queries over the paced trades generator: (name, output columns, query, keys).
const CHECKPOINTED: &[(&str, &str, &str, &[&str])] = &[
    (
        "top_trades",
        "window_start TIMESTAMP(3), rn BIGINT, symbol STRING, volume BIGINT",
        "SELECT window_start, rn, symbol, volume FROM (
           SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY volume DESC) AS rn
           FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '50' MILLISECOND))
         ) WHERE rn <= 4",
        &["window_start", "rn"],
    ),
    (
        "busiest_symbols",
        "symbol STRING, n BIGINT",
        "SELECT a.symbol, a.n FROM (
           SELECT symbol, COUNT(*) AS n, window_start AS ws, window_end AS we
           FROM TABLE(HOP(TABLE trades, DESCRIPTOR(ts), INTERVAL '50' MILLISECOND, INTERVAL '200' MILLISECOND))
           GROUP BY symbol, window_start, window_end) a
         JOIN (
           SELECT MAX(c.n) AS m, c.ws, c.we FROM (
             SELECT COUNT(*) AS n, window_start AS ws, window_end AS we
             FROM TABLE(HOP(TABLE trades, DESCRIPTOR(ts), INTERVAL '50' MILLISECOND, INTERVAL '200' MILLISECOND))
             GROUP BY symbol, window_start, window_end) c
           GROUP BY c.ws, c.we) b
         ON a.ws = b.ws AND a.we = b.we AND a.n = b.m",
        &["symbol", "n"],
    ),
];

fn trades_sql(columns: &str, query: &str, out: &Path) -> String {
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

/// Runs until `after` (then stops with a final checkpoint) or the end; whether it ended.
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
            CheckpointConfig::new(dir, Duration::from_millis(15)).expect("checkpoint config"),
        ),
        stop,
        ..options(shards)
    };
    let report = run_sql(sql, &opts).unwrap_or_else(|e| panic!("{e}\n{sql}"));
    let c = report.checkpoints.expect("the job checkpoints");
    assert!(c.final_committed, "every run ends with a final checkpoint");
    report.shards.iter().all(|s| s.finished)
}

#[test]
fn top_n_state_survives_checkpoints_and_restores_on_other_core_counts() {
    for (i, (name, columns, query, keys)) in CHECKPOINTED.iter().enumerate() {
        let scratch = Scratch::new();
        let straight_out = scratch.path("straight.jsonl");
        let report = run_sql(&trades_sql(columns, query, &straight_out), &options(2))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(report.records_in(), ROWS, "{name}");
        let straight = read_json_lines(&straight_out).expect("rows");
        assert!(straight.len() > 20, "{name}: {} rows", straight.len());

        let out = scratch.path("checkpointed");
        let dir = scratch.path("checkpointed-state");
        assert!(
            run_part(&trades_sql(columns, query, &out), 2, &dir, None),
            "{name}"
        );
        assert_rows_match(&committed_rows(&out).expect("rows"), &straight, keys);

        let out = scratch.path("resumed");
        let dir = scratch.path("resumed-state");
        let text = trades_sql(columns, query, &out);
        let mut ended = false;
        for (part, shards) in [2, 1, 3].into_iter().enumerate() {
            let after = Duration::from_millis(150 + 100 * ((i + part) as u64 % 3));
            if run_part(&text, shards, &dir, Some(after)) {
                ended = true;
                break;
            }
        }
        if !ended {
            assert!(run_part(&text, 2, &dir, None), "{name}: the last part ends");
        }
        assert_rows_match(&committed_rows(&out).expect("rows"), &straight, keys);
    }
}
