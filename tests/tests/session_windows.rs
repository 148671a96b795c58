//! SESSION windows end to end: Nexmark q11 (`examples/nexmark/q11.sql`) against the batch
//! oracle of `session_oracle.rs` three ways (straight; out of order within the watermark
//! bound on 2 shards; 4 partitions on 2 shards), the table-function form, keyless sessions
//! with more aggregates, late events, the session limit, and checkpoints with recovery on
//! other core counts.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use spillway_connectors::nexmark::EventKind;
use spillway_engine::checkpoint::CheckpointConfig;
use spillway_engine::job::{run_program, JobOptions, JobReport};
use spillway_tests::compare::{assert_rows_match, read_json_lines};
use spillway_tests::job::{
    file_sink_table, file_source_table, options, run_sql, run_to_rows, Scratch,
};
use spillway_tests::nexmark_oracle::{events_of, nexmark_program, BOUND_MS};
use spillway_tests::nexmark_runs::NexmarkRun as Run;
use spillway_tests::oracle::{format_time, Event};
use spillway_tests::process::committed_rows;
use spillway_tests::session_oracle::{q11_rows, sessions, Q11_KEY_FIELDS};

/// Nexmark q11 as the example file has it.
const Q11: &str = include_str!("../../examples/nexmark/q11.sql");
const SEED: u64 = 20_240_601;
/// 100 s of event time at 1000 events/s.
const EVENTS: u64 = 100_000;
const EVENT_RATE: u64 = 1_000;
/// Within the examples' 4 s watermark bound.
const DISORDER_MS: u64 = 3_000;

/// Straight, out of order within the bound, keys spread over 4 partitions on 2 shards.
fn runs() -> [Run; 3] {
    Run::three_ways(SEED, EVENTS, EVENT_RATE, DISORDER_MS)
}

/// Runs `sql` (source table `bid`) as `run`; returns the report and the sink's rows.
fn run_bids(sql: &str, run: &Run, opts: &JobOptions) -> (JobReport, Vec<Value>) {
    let scratch = Scratch::new();
    let output = scratch.path("out.jsonl");
    let program = nexmark_program(sql, "bid", &run.source_options(), &output)
        .unwrap_or_else(|e| panic!("{run:?}: {e}"));
    let report = run_program(&program, opts).unwrap_or_else(|e| panic!("{run:?}: {e}"));
    let rows = read_json_lines(&output).unwrap_or_else(|e| panic!("{run:?}: {e}"));
    assert_eq!(report.rows_out(), rows.len() as u64, "{run:?}: rows_out");
    (report, rows)
}

fn bids_of(run: &Run) -> Vec<Event> {
    let bids = events_of(run.stream(), EventKind::Bid, EVENTS);
    assert_eq!(bids.len() as u64, EventKind::Bid.count_in(EVENTS));
    bids
}

/// Checks q11's rows against the oracle's and returns (sessions, sessions of more than one
/// bid).
fn check_q11(sql: &str, run: &Run) -> (usize, usize) {
    let bids = bids_of(run);
    if run.disorder_ms > 0 {
        let backwards = bids.windows(2).filter(|w| w[1].ts_ms < w[0].ts_ms).count();
        assert!(
            backwards > bids.len() / 4,
            "{run:?}: only {backwards} out of order"
        );
    }
    let (report, rows) = run_bids(sql, run, &options(run.shards));
    assert_eq!(
        report.records_in(),
        bids.len() as u64,
        "{run:?}: records in"
    );
    assert_eq!(report.late_events(), 0, "{run:?}: on time within the bound");
    assert_eq!(
        report.late_partial_groups(),
        0,
        "{run:?}: no late mini-session"
    );
    let expected = q11_rows(&bids);
    assert_rows_match(&rows, &expected, Q11_KEY_FIELDS);
    let merged = expected
        .iter()
        .filter(|r| r["bid_count"].as_i64().unwrap_or(0) > 1)
        .count();
    (expected.len(), merged)
}

#[test]
fn q11_user_sessions_three_ways() {
    assert!((DISORDER_MS as i64) < BOUND_MS);
    for run in runs() {
        let (sessions, merged) = check_q11(Q11, &run);
        // Many users, most with several bids per session: the merging is exercised.
        assert!(sessions > 1_000, "{run:?}: {sessions} sessions");
        assert!(
            merged > sessions / 4,
            "{run:?}: {merged} of {sessions} merged"
        );
    }
}

/// q11 with the window table function: `GROUP BY bidder, window_start, window_end`.
const Q11_TVF: &str = "
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
  dateTime TIMESTAMP(3), extra VARCHAR,
  WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'nexmark.table' = 'bid');
CREATE TABLE q11 (bidder BIGINT, bid_count BIGINT, starttime TIMESTAMP(3), endtime TIMESTAMP(3))
  WITH ('connector' = 'blackhole');
INSERT INTO q11
SELECT bidder, COUNT(*) AS bid_count, window_start AS starttime, window_end AS endtime
FROM TABLE(SESSION(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
GROUP BY bidder, window_start, window_end;
";

#[test]
fn q11_table_function_form_gives_the_same_rows() {
    let (sessions, _) = check_q11(Q11_TVF, &runs()[2]);
    assert!(sessions > 1_000);
}

/// Keyless sessions of the bids of every 97th auction (sparse: they have gaps), 100 ms gap.
const KEYLESS: &str = "
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
  dateTime TIMESTAMP(3), extra VARCHAR,
  WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'nexmark.table' = 'bid');
CREATE TABLE out (window_start TIMESTAMP(3), window_end TIMESTAMP(3), bids BIGINT,
  total BIGINT, low BIGINT, high BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO out
SELECT window_start, window_end, COUNT(*), SUM(price), MIN(price), MAX(price)
FROM TABLE(SESSION(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '100' MILLISECOND))
WHERE auction % 97 = 0
GROUP BY window_start, window_end;
";

#[test]
fn keyless_sessions_are_one_key_on_any_number_of_shards() {
    for run in runs() {
        let bids: Vec<Event> = bids_of(&run)
            .into_iter()
            .filter(|e| e.i64("auction").is_some_and(|a| a % 97 == 0))
            .collect();
        let expected: Vec<Value> = sessions(&bids, |_| (), 100)
            .into_iter()
            .map(|s| {
                let prices: Vec<i64> = s.events.iter().filter_map(|e| e.i64("price")).collect();
                json!({
                    "window_start": format_time(s.start),
                    "window_end": format_time(s.end),
                    "bids": s.events.len(),
                    "total": prices.iter().sum::<i64>(),
                    "low": prices.iter().min(),
                    "high": prices.iter().max(),
                })
            })
            .collect();
        assert!(expected.len() > 10, "{run:?}: {} sessions", expected.len());
        let (report, rows) = run_bids(KEYLESS, &run, &options(run.shards));
        assert_eq!(report.late_events(), 0);
        assert_rows_match(&rows, &expected, &["window_start"]);
    }
}

/// Trades rows `(symbol, volume, ts)` as JSON lines.
fn write_trades(path: &Path, rows: &[(&str, i64, i64)]) {
    let text: String = rows
        .iter()
        .map(|(s, v, ts)| {
            format!("{{\"symbol\":\"{s}\",\"price\":1.0,\"volume\":{v},\"ts\":{ts}}}\n")
        })
        .collect();
    std::fs::write(path, text).expect("input written");
}

fn trades_sessions_sql(input: &Path, output: &Path) -> String {
    format!(
        "{}{}INSERT INTO out SELECT symbol, SESSION_START(ts, INTERVAL '10' SECOND), \
         SESSION_END(ts, INTERVAL '10' SECOND), COUNT(*), SUM(volume) FROM trades \
         GROUP BY symbol, SESSION(ts, INTERVAL '10' SECOND);\n",
        file_source_table("trades", input, 1_000, ""),
        file_sink_table(
            "out",
            "symbol STRING, s TIMESTAMP(3), e TIMESTAMP(3), n BIGINT, volume BIGINT",
            output
        ),
    )
}

#[test]
fn an_event_whose_own_window_is_complete_is_late_and_counted() {
    let scratch = Scratch::new();
    let input = scratch.path("in.jsonl");
    let output = scratch.path("out.jsonl");
    write_trades(
        &input,
        &[
            ("a", 1, 0),
            ("a", 2, 10_000),  // touches [0, 10 s): one session [0, 20 s)
            ("b", 4, 100_000), // the watermark moves to 99 s
            ("a", 8, 5_000),   // [5 s, 15 s) is complete: late
            ("b", 16, 99_000), // on time (at the watermark)
        ],
    );
    let sql = trades_sessions_sql(&input, &output);
    // One event per batch: the watermark moves between them.
    let mut opts = options(1);
    opts.limits.batch_rows_max = 1;
    let out = run_to_rows(&sql, &opts, &output).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.report.late_events(), 1);
    let expected = vec![
        json!({"symbol": "a", "s": format_time(0), "e": format_time(20_000), "n": 2, "volume": 3}),
        json!({"symbol": "b", "s": format_time(99_000), "e": format_time(110_000), "n": 2, "volume": 20}),
    ];
    assert_rows_match(&out.rows, &expected, &["symbol", "s"]);
}

#[test]
fn too_many_sessions_is_a_clear_error() {
    let mut opts = options(2);
    opts.limits.sessions_open_max = 50;
    let scratch = Scratch::new();
    let output = scratch.path("out.jsonl");
    let program = nexmark_program(Q11, "bid", &runs()[2].source_options(), &output)
        .unwrap_or_else(|e| panic!("{e}"));
    let err = run_program(&program, &opts).expect_err("over the limit");
    assert!(err.to_string().contains("sessions_open_max = 50"), "{err}");
}

/// Sessions over the paced trades generator (the same events whatever moment a run stops
/// at): the rare big trades of each symbol, 40 ms gap.
fn generator_sessions_sql(out: &Path) -> String {
    format!(
        "CREATE TABLE trades (symbol STRING, price DOUBLE, volume BIGINT, ts TIMESTAMP(3),
           WATERMARK FOR ts AS ts - INTERVAL '100' MILLISECOND)
         WITH ('connector' = 'trades-generator', 'number-of-rows' = '60000',
               'rows-per-second' = '60000', 'partitions' = '4', 'disorder-ms' = '80',
               'start-ts' = '1700000000000', 'symbols' = '24');
         CREATE TABLE out (symbol STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3),
           n BIGINT, volume BIGINT, low DOUBLE, top STRING)
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         INSERT INTO out SELECT symbol, window_start, window_end, COUNT(*), SUM(volume),
           MIN(price), MAX(symbol)
         FROM TABLE(SESSION(TABLE trades, DESCRIPTOR(ts), INTERVAL '40' MILLISECOND))
         WHERE volume > 990
         GROUP BY symbol, window_start, window_end;",
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

/// Runs until `after` (then stops with a final checkpoint) or the end; returns whether it
/// reached the end.
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
fn sessions_survive_checkpoints_and_resume_on_other_core_counts() {
    let keys = &["symbol", "window_start"];
    let scratch = Scratch::new();
    let straight_out = scratch.path("straight.jsonl");
    let report = run_sql(&generator_sessions_sql(&straight_out), &options(2))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.late_events(), 0);
    let straight = read_json_lines(&straight_out).expect("rows");
    let merged = straight
        .iter()
        .filter(|r| r["n"].as_i64().unwrap_or(0) > 1)
        .count();
    assert!(straight.len() > 100, "{} sessions", straight.len());
    assert!(
        merged > straight.len() / 5,
        "{merged} of {} merged",
        straight.len()
    );

    // Checkpoints every 15 ms, uninterrupted.
    let out = scratch.path("checkpointed");
    let dir = scratch.path("checkpointed-state");
    assert!(run_part(&generator_sessions_sql(&out), 2, &dir, None));
    assert_rows_match(&committed_rows(&out).expect("rows"), &straight, keys);

    // Stopped mid-way and resumed on 1, then 3, then 2 cores.
    let out = scratch.path("resumed");
    let dir = scratch.path("resumed-state");
    let text = generator_sessions_sql(&out);
    let mut parts = 0;
    for (shards, after_ms) in [(2, 300), (1, 250), (3, 200)] {
        parts += 1;
        let ended = run_part(&text, shards, &dir, Some(Duration::from_millis(after_ms)));
        // The generator is paced: 60 000 rows take a second, so the first part is cut.
        assert!(parts > 1 || !ended, "the first part stops mid-way");
        if ended {
            break;
        }
    }
    if parts == 3 {
        assert!(run_part(&text, 2, &dir, None), "the last part ends");
    }
    assert_rows_match(&committed_rows(&out).expect("rows"), &straight, keys);
}

/// Allowed lateness through the whole engine: late events update, extend and are refused,
/// with row kinds. (The planner does not accept `'allowed-lateness'` on SESSION queries yet,
/// so the test sets the plan's lateness itself.)
#[test]
fn late_events_within_the_lateness_update_emitted_sessions_with_row_kinds() {
    let scratch = Scratch::new();
    let input = scratch.path("in.jsonl");
    let output = scratch.path("out.jsonl");
    // A late update is emitted when the watermark next moves (c's events move it).
    write_trades(
        &input,
        &[
            ("a", 1, 0),
            ("b", 2, 30_000),   // watermark 29 s: a's [0, 10 s) fires ("+I")
            ("a", 4, 5_000),    // extends it to [0, 15 s) ...
            ("c", 8, 31_000),   // ... at 30 s: "-D" [0, 10 s), "+I" [0, 15 s)
            ("a", 16, 1_000),   // inside [0, 15 s) ...
            ("c", 32, 32_000),  // ... at 31 s: "+U"
            ("b", 64, 60_000),  // watermark 59 s: past 15 s + 20 s of lateness
            ("a", 128, 14_000), // 14 s + gap + lateness = 44 s < 59 s: too late
        ],
    );
    let sql = format!(
        "{}{}INSERT INTO out SELECT symbol, window_start, window_end, COUNT(*), SUM(volume) \
         FROM TABLE(SESSION(TABLE trades, DESCRIPTOR(ts), INTERVAL '10' SECOND)) \
         GROUP BY symbol, window_start, window_end;\n",
        file_source_table("trades", &input, 1_000, ""),
        file_sink_table(
            "out",
            "symbol STRING, s TIMESTAMP(3), e TIMESTAMP(3), n BIGINT, volume BIGINT, \
             row_kind STRING",
            &output
        ),
    );
    let mut program = spillway_engine::sql::parse_program(&sql).expect("plans");
    program.pipelines[0].late.allowed_lateness_ms = 20_000;
    // One shard, one event per batch: the watermark moves between the events.
    let mut opts = options(1);
    opts.limits.batch_rows_max = 1;
    let report = run_program(&program, &opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.late_events(), 1);
    let rows = read_json_lines(&output).expect("rows");
    let row = |k: &str, s: i64, e: i64, n: i64, v: i64, kind: &str| {
        json!({"symbol": k, "s": format_time(s), "e": format_time(e), "n": n, "volume": v,
               "row_kind": kind})
    };
    let expected = vec![
        row("a", 0, 10_000, 1, 1, "+I"),
        row("a", 0, 10_000, 1, 1, "-D"),
        row("a", 0, 15_000, 2, 5, "+I"),
        row("a", 0, 15_000, 3, 21, "+U"),
        row("b", 30_000, 40_000, 1, 2, "+I"),
        row("c", 31_000, 42_000, 2, 40, "+I"),
        row("b", 60_000, 70_000, 1, 64, "+I"),
    ];
    assert_rows_match(&rows, &expected, &["symbol", "s", "e", "row_kind", "n"]);
    // The withdrawal of [0, 10 s) comes before the result that replaces it.
    let at = |kind: &str, e: i64| {
        rows.iter()
            .position(|r| r["row_kind"] == kind && r["e"] == json!(format_time(e)))
            .unwrap_or_else(|| panic!("no {kind} row ending at {e}: {rows:?}"))
    };
    assert!(at("-D", 10_000) < at("+I", 15_000));
}

#[test]
fn session_lateness_with_checkpoints_is_refused_with_a_clear_error() {
    let scratch = Scratch::new();
    let input = scratch.path("in.jsonl");
    let output = scratch.path("out.jsonl");
    write_trades(&input, &[("a", 1, 0)]);
    let mut program =
        spillway_engine::sql::parse_program(&trades_sessions_sql(&input, &output)).expect("plans");
    program.pipelines[0].late.allowed_lateness_ms = 5_000;
    let opts = with_checkpoints(1, &scratch.path("state"), Arc::new(AtomicBool::new(false)));
    let err = run_program(&program, &opts).expect_err("refused");
    assert!(
        err.to_string()
            .contains("'allowed-lateness' on table 'trades' and checkpoints are not supported yet"),
        "{err}"
    );
}
