//! HOP and CUMULATE windows against the oracle, which puts every event in every window
//! holding it (computed naively): both HOP forms and CUMULATE over the standard trades (up to
//! 200 ms out of order within a 300 ms bound, cut into 4 file splits so every symbol's panes
//! come from several shards) on 1 and 2 shards; late events one per poll, counted exactly;
//! and very late events over several splits on 2 shards, which never update an emitted
//! window.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use spillway_engine::limits::Limits;
use spillway_tests::compare::assert_rows_match;
use spillway_tests::data::{
    generate_trades, standard_events, standard_trades, trades_with_late_events, write_lines,
    TradeSpec, STANDARD_BOUND_MS,
};
use spillway_tests::job::{
    file_sink_table, file_source_table, options, run_to_rows, Outcome, Scratch,
};
use spillway_tests::oracle::{parse_events, OracleOutput, OracleQuery};

/// Output rows are identified by window and symbol (CUMULATE windows share their start).
const KEYS: [&str; 3] = ["window_start", "window_end", "symbol"];

const STATS_COLUMNS: &str = "symbol STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3), \
    trades BIGINT, volume BIGINT, avg_price DOUBLE, low DOUBLE, high DOUBLE";

/// Per symbol COUNT(*), SUM(volume), AVG(price), MIN(price), MAX(price) as the stats sink
/// writes them.
fn stats(q: OracleQuery<'_>) -> OracleQuery<'_> {
    spillway_tests::trades_stats::trades_stats(q)
}

const STATS_SELECT: &str = "SELECT symbol, window_start, window_end, \
    COUNT(*), SUM(volume), AVG(price), MIN(price), MAX(price)";

/// Every (symbol, window) appears at most once in the results.
fn assert_each_window_once(rows: &[Value]) {
    let mut seen = BTreeSet::new();
    for r in rows {
        let key = (
            r["symbol"].to_string(),
            r["window_start"].to_string(),
            r["window_end"].to_string(),
        );
        assert!(seen.insert(key), "window emitted twice: {r}");
    }
}

/// Runs `query` over `lines` in a file on each of `shards`, checks the counters and compares
/// the rows with `expected`.
fn check(lines: &[String], bound_ms: i64, query: &str, shards: &[usize], expected: &OracleOutput) {
    let scratch = Scratch::new();
    let input = scratch.path("trades.jsonl");
    write_lines(&input, lines).expect("input written");
    for &n in shards {
        let output = scratch.path(&format!("out-{n}.jsonl"));
        let sql = format!(
            "{}{}INSERT INTO out {query};",
            file_source_table("trades", &input, bound_ms, ""),
            file_sink_table("out", STATS_COLUMNS, &output)
        );
        let outcome =
            run_to_rows(&sql, &options(n), &output).unwrap_or_else(|e| panic!("{n} shards: {e}"));
        let r = &outcome.report;
        assert_eq!(r.records_in(), lines.len() as u64, "{n} shards: records in");
        assert_eq!(
            r.late_events(),
            0,
            "{n} shards: disorder within the bound is never late"
        );
        assert_eq!(r.late_partial_groups(), 0, "{n} shards: no late partials");
        assert_eq!(
            r.rows_out(),
            outcome.rows.len() as u64,
            "{n} shards: rows_out"
        );
        assert_each_window_once(&outcome.rows);
        assert_rows_match(&outcome.rows, &expected.rows, &KEYS);
    }
}

#[test]
fn hop_table_function_per_symbol_on_1_and_2_shards() {
    let expected = stats(OracleQuery::hop(2_000, 500)).run(standard_events());
    // 100 s of events: about 200 windows (4 per event) of about 64 symbols.
    assert!(expected.rows.len() > 12_000, "{}", expected.rows.len());
    check(
        standard_trades(),
        STANDARD_BOUND_MS,
        &format!(
            "{STATS_SELECT} FROM TABLE(HOP(TABLE trades, DESCRIPTOR(ts), \
             INTERVAL '500' MILLISECOND, INTERVAL '2' SECOND)) \
             GROUP BY symbol, window_start, window_end"
        ),
        &[1, 2],
        &expected,
    );
}

#[test]
fn hop_group_window_with_where_having_and_an_offset_grid() {
    // The group-window form; an offset in the table function form moves the grid.
    let expected = stats(OracleQuery::hop(1_000, 250))
        .filter(|e| e.i64("volume").is_some_and(|v| v >= 300))
        .output(|g| {
            (g.agg_i64(0) >= 20).then(|| {
                json!({
                    "symbol": g.key(0), "window_start": g.start(), "window_end": g.end(),
                    "trades": g.aggs[0], "volume": g.aggs[1], "avg_price": g.aggs[2],
                    "low": g.aggs[3], "high": g.aggs[4],
                })
            })
        })
        .run(standard_events());
    let all = stats(OracleQuery::hop(1_000, 250))
        .filter(|e| e.i64("volume").is_some_and(|v| v >= 300))
        .run(standard_events());
    let (kept, groups) = (expected.rows.len(), all.rows.len());
    assert!(
        kept > groups / 10 && kept < groups * 9 / 10,
        "HAVING keeps {kept} of {groups}"
    );
    check(
        standard_trades(),
        STANDARD_BOUND_MS,
        "SELECT symbol, HOP_START(ts, INTERVAL '250' MILLISECOND, INTERVAL '1' SECOND), \
                HOP_END(ts, INTERVAL '250' MILLISECOND, INTERVAL '1' SECOND), \
                COUNT(*), SUM(volume), AVG(price), MIN(price), MAX(price) \
         FROM trades WHERE volume >= 300 \
         GROUP BY symbol, HOP(ts, INTERVAL '250' MILLISECOND, INTERVAL '1' SECOND) \
         HAVING COUNT(*) >= 20",
        &[2],
        &expected,
    );
    let shifted = stats(OracleQuery::hop(3_000, 1_000).offset(400)).run(standard_events());
    check(
        standard_trades(),
        STANDARD_BOUND_MS,
        &format!(
            "{STATS_SELECT} FROM TABLE(HOP(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' SECOND, \
             INTERVAL '3' SECOND, INTERVAL '400' MILLISECOND)) \
             GROUP BY symbol, window_start, window_end"
        ),
        &[2],
        &shifted,
    );
}

#[test]
fn cumulate_per_symbol_on_1_and_2_shards() {
    let expected = stats(OracleQuery::cumulate(250, 2_000)).run(standard_events());
    assert!(expected.rows.len() > 20_000, "{}", expected.rows.len());
    check(
        standard_trades(),
        STANDARD_BOUND_MS,
        &format!(
            "{STATS_SELECT} FROM TABLE(CUMULATE(TABLE trades, DESCRIPTOR(ts), \
             INTERVAL '250' MILLISECOND, INTERVAL '2' SECOND)) \
             GROUP BY symbol, window_start, window_end"
        ),
        &[1, 2],
        &expected,
    );
}

/// Runs `lines` from a one-split file on one shard, one record per poll, so the watermark
/// before each event is exact.
fn run_one_per_poll(lines: &[String], bound_ms: i64, query: &str) -> Outcome {
    let scratch = Scratch::new();
    let input = scratch.path("in.jsonl");
    write_lines(&input, lines).expect("input");
    let output = scratch.path("out.jsonl");
    let sql = format!(
        "{}{}INSERT INTO out {query};",
        file_source_table("trades", &input, bound_ms, ""),
        file_sink_table("out", STATS_COLUMNS, &output),
    );
    let mut opts = options(1);
    opts.limits = Limits {
        batch_rows_max: 1,
        ..Limits::default()
    };
    run_to_rows(&sql, &opts, &output).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn late_counts_are_exact_and_late_events_reach_only_windows_not_emitted() {
    let bound = 100;
    let lines = trades_with_late_events(77, bound, 2_500, 900);
    let events = parse_events(&lines.join("\n"), "ts").expect("events");
    let cases = [
        (
            stats(OracleQuery::hop(1_000, 250)),
            "HOP(TABLE trades, DESCRIPTOR(ts), INTERVAL '250' MILLISECOND, INTERVAL '1' SECOND)",
        ),
        (
            stats(OracleQuery::cumulate(250, 1_000)),
            "CUMULATE(TABLE trades, DESCRIPTOR(ts), INTERVAL '250' MILLISECOND, INTERVAL '1' SECOND)",
        ),
    ];
    for (oracle, window) in cases {
        let expected = oracle.run_with_lateness(&events, bound);
        // Events late for their first windows but not their last one exist, and some are late.
        let all_on_time = oracle.run(&events);
        assert!(
            expected.late_events > 100 && expected.late_events < 300,
            "{window}: the data has late events: {}",
            expected.late_events
        );
        assert_ne!(
            expected.rows, all_on_time.rows,
            "{window}: lateness matters"
        );
        let outcome = run_one_per_poll(
            &lines,
            bound,
            &format!(
                "{STATS_SELECT} FROM TABLE({window}) GROUP BY symbol, window_start, window_end"
            ),
        );
        assert_eq!(
            outcome.report.late_events(),
            expected.late_events,
            "{window}: late events"
        );
        assert_eq!(outcome.report.records_in(), lines.len() as u64);
        assert_each_window_once(&outcome.rows);
        assert_rows_match(&outcome.rows, &expected.rows, &KEYS);
    }
}

#[test]
fn very_late_events_over_several_splits_on_2_shards_never_update_an_emitted_window() {
    // 20 events an hour old, each far from the others, injected in the second half of the
    // stream, read from 2 file splits by 2 shards. However the splits interleave, each one is
    // counted late, or dropped as late partial groups, or emitted in some of its own old
    // windows (never more than once per window); the windows of the on-time events are exact.
    let lines = generate_trades(&TradeSpec {
        events: 120_000,
        seed: 5,
        symbols: 16,
        ..TradeSpec::default()
    });
    let on_time = parse_events(&lines.join("\n"), "ts").expect("events");
    let hour_ago = on_time[0].ts_ms - 3_600_000;
    let mut mixed = lines.clone();
    let injected = 20;
    for k in 0..injected {
        let at = lines.len() * 3 / 5 + k * 2_000;
        let old = json!({"symbol": "OLD", "price": 10.0, "volume": 5, "ts": hour_ago + k as i64 * 60_000});
        mixed.insert(at + k, old.to_string());
    }
    let scratch = Scratch::new();
    let input = scratch.path("in.jsonl");
    write_lines(&input, &mixed).expect("input");
    let output = scratch.path("out.jsonl");
    let sql = format!(
        "{}{}INSERT INTO out {STATS_SELECT} FROM TABLE(HOP(TABLE trades, DESCRIPTOR(ts), \
         INTERVAL '1' SECOND, INTERVAL '4' SECOND)) GROUP BY symbol, window_start, window_end;",
        file_source_table("trades", &input, 300, ""),
        file_sink_table("out", STATS_COLUMNS, &output),
    );
    let outcome = run_to_rows(&sql, &options(2), &output).unwrap_or_else(|e| panic!("{e}"));
    assert_each_window_once(&outcome.rows);
    let (old, recent): (Vec<Value>, Vec<Value>) =
        outcome.rows.into_iter().partition(|r| r["symbol"] == "OLD");
    for row in &old {
        assert_eq!(
            row["trades"], 1,
            "an old window holds exactly one event: {row}"
        );
    }
    // An old event is in 4 windows; it shows up in at most 4 rows, and an event that is
    // emitted nowhere was counted (late on its shard, or late partial groups at the owner).
    let windows_with_old = old.len() as u64;
    let r = &outcome.report;
    assert!(windows_with_old <= 4 * injected as u64);
    assert!(
        r.late_events() + r.late_partial_groups() + windows_with_old >= injected as u64,
        "every very late event is emitted or counted: late {}, late partial groups {}, rows {}",
        r.late_events(),
        r.late_partial_groups(),
        windows_with_old
    );
    assert!(
        r.late_events() + r.late_partial_groups() > 0,
        "some old events were late"
    );
    let expected = stats(OracleQuery::hop(4_000, 1_000)).run(&on_time);
    assert_rows_match(&recent, &expected.rows, &KEYS);
}
