//! Late events: counted exactly, and never changing a window that was already emitted.
//!
//! The engine decides lateness per source poll. With one partition and `batch_rows_max = 1`
//! every event is its own poll, so the oracle can simulate the watermark event by event and
//! the late count is exact. With several partitions lateness depends on how the partitions
//! interleave, so that test checks what holds whatever the interleaving.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use spillway_connectors::embedded_kafka::EmbeddedKafka;
use spillway_engine::limits::Limits;
use spillway_tests::compare::assert_rows_match;
use spillway_tests::data::{
    generate_trades, produce_lines, trades_with_late_events, write_lines, PartitionBy, TradeSpec,
};
use spillway_tests::job::{
    file_sink_table, file_source_table, kafka_source_table, options, run_to_rows, Outcome, Scratch,
};
use spillway_tests::kafka::Batching;
use spillway_tests::oracle::{
    args, parse_events, tumble_window, Agg, Event, OracleOutput, OracleQuery,
};

const KEYS: [&str; 2] = ["window_start", "symbol"];
const COLUMNS: &str = "symbol STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3), \
    trades BIGINT, volume BIGINT";

fn query(size: &str) -> String {
    format!(
        "INSERT INTO out
         SELECT symbol, window_start, window_end, COUNT(*), SUM(volume)
         FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL {size}))
         GROUP BY symbol, window_start, window_end;"
    )
}

fn oracle(size_ms: i64, events: &[Event], bound_ms: Option<i64>) -> OracleOutput {
    let q = OracleQuery::tumble(size_ms)
        .keys(|e| vec![args::str_key(e, "symbol")])
        .agg(Agg::count_star())
        .agg(Agg::sum_int(|e| e.i64("volume")))
        .output(|g| {
            Some(json!({
                "symbol": g.key(0), "window_start": g.start(), "window_end": g.end(),
                "trades": g.aggs[0], "volume": g.aggs[1],
            }))
        });
    match bound_ms {
        Some(b) => q.run_with_lateness(events, b),
        None => q.run(events),
    }
}

/// Runs `lines` from a one-split file on one shard, one record per poll.
fn run_one_per_poll(lines: &[String], bound_ms: i64, size: &str) -> Outcome {
    let scratch = Scratch::new();
    let input = scratch.path("in.jsonl");
    write_lines(&input, lines).expect("input");
    let output = scratch.path("out.jsonl");
    let sql = format!(
        "{}{}{}",
        file_source_table("trades", &input, bound_ms, ""),
        file_sink_table("out", COLUMNS, &output),
        query(size)
    );
    let mut opts = options(1);
    opts.limits = Limits {
        batch_rows_max: 1,
        ..Limits::default()
    };
    run_to_rows(&sql, &opts, &output).unwrap_or_else(|e| panic!("{e}"))
}

/// Every (symbol, window) appears at most once in the results.
fn assert_each_window_once(rows: &[Value]) {
    let mut seen = BTreeSet::new();
    for r in rows {
        let key = (r["symbol"].to_string(), r["window_start"].to_string());
        assert!(seen.insert(key), "window emitted twice: {r}");
    }
}

fn trade(symbol: &str, volume: i64, ts: i64) -> String {
    json!({"symbol": symbol, "price": 10.0, "volume": volume, "ts": ts}).to_string()
}

#[test]
fn window_end_is_exclusive_and_late_events_never_update_an_emitted_window() {
    let base = 1_700_000_000_000i64; // a whole second
                                     // bound 100 ms, 1 s windows; late events carry a huge volume that must never show up
    let lines = vec![
        trade("A", 1, base + 100),
        trade("A", 2, base + 900),           // watermark base + 800
        trade("A", 4, base + 1_100), // watermark base + 1000: window [base, base + 1 s) fires
        trade("A", 1_000_000, base + 999), // its window ended at the watermark: late
        trade("A", 8, base + 1_000), // the next window's first millisecond: on time
        trade("A", 1_000_000, base + 950), // late
        trade("A", 16, base + 2_500), // watermark base + 2400
        trade("A", 1_000_000, base + 1_999), // late
        trade("A", 32, base + 2_000),
        trade("A", 64, base + 2_399), // on time: the watermark is not past its window
    ];
    let outcome = run_one_per_poll(&lines, 100, "'1' SECOND");
    assert_eq!(outcome.report.late_events(), 3, "late events counted");
    let start = |ms: i64| spillway_tests::oracle::format_time(ms);
    let expected = vec![
        json!({"symbol": "A", "window_start": start(base), "window_end": start(base + 1_000), "trades": 2, "volume": 3}),
        json!({"symbol": "A", "window_start": start(base + 1_000), "window_end": start(base + 2_000), "trades": 2, "volume": 12}),
        json!({"symbol": "A", "window_start": start(base + 2_000), "window_end": start(base + 3_000), "trades": 3, "volume": 112}),
    ];
    assert_rows_match(&outcome.rows, &expected, &KEYS);
    // The hand-computed answer is also the oracle's.
    let events = parse_events(&lines.join("\n"), "ts").expect("events");
    let o = oracle(1_000, &events, Some(100));
    assert_eq!((o.late_events, &o.rows), (3, &expected));
}

#[test]
fn late_counts_are_exact_event_by_event() {
    let bound = 100;
    let lines = trades_with_late_events(31, bound, 1_200, 300);
    let events = parse_events(&lines.join("\n"), "ts").expect("events");
    for (size_ms, size_sql) in [(250, "'250' MILLISECOND"), (1_000, "'1' SECOND")] {
        let expected = oracle(size_ms, &events, Some(bound));
        assert!(
            expected.late_events > 100 && expected.late_events < 400,
            "the data has late events: {}",
            expected.late_events
        );
        let outcome = run_one_per_poll(&lines, bound, size_sql);
        assert_eq!(
            outcome.report.late_events(),
            expected.late_events,
            "{size_ms} ms windows: late events"
        );
        assert_eq!(outcome.report.records_in(), lines.len() as u64);
        assert_each_window_once(&outcome.rows);
        assert_rows_match(&outcome.rows, &expected.rows, &KEYS);
    }
}

#[test]
fn out_of_order_within_the_bound_is_never_late_one_event_per_poll() {
    // The same disorder without injected late events, and a bound just above it.
    let lines = generate_trades(&TradeSpec {
        events: 4_000,
        seed: 8,
        symbols: 8,
        events_per_second: 1_000,
        disorder_ms: 150,
        ..TradeSpec::default()
    });
    let events = parse_events(&lines.join("\n"), "ts").expect("events");
    let expected = oracle(250, &events, Some(150));
    assert_eq!(expected.late_events, 0);
    let outcome = run_one_per_poll(&lines, 150, "'250' MILLISECOND");
    assert_eq!(outcome.report.late_events(), 0);
    assert_rows_match(&outcome.rows, &expected.rows, &KEYS);
}

#[test]
fn very_late_events_over_several_partitions_are_accounted_for() {
    // 20 events an hour old, each in its own window, injected in the second half of the
    // stream over 4 partitions and 2 shards. However the partitions interleave, each one is
    // either counted late, or dropped as a late partial group, or emitted in its own old
    // window; and the windows of the on-time events are exact.
    let lines = generate_trades(&TradeSpec {
        events: 20_000,
        seed: 3,
        symbols: 16,
        ..TradeSpec::default()
    });
    let on_time = parse_events(&lines.join("\n"), "ts").expect("events");
    let hour_ago = on_time[0].ts_ms - 3_600_000;
    let mut mixed = lines.clone();
    let injected = 20;
    for k in 0..injected {
        let at = lines.len() / 2 + k * 400;
        mixed.insert(at + k, trade("OLD", 5, hour_ago + k as i64 * 10_000));
    }
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    kafka.create_topic("late", 4).expect("topic");
    let bootstrap = kafka.bootstrap_servers();
    produce_lines(
        &bootstrap,
        "late",
        &mixed,
        4,
        PartitionBy::RoundRobin,
        Batching::Default,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let scratch = Scratch::new();
    let output = scratch.path("out.jsonl");
    let sql = format!(
        "{}{}{}",
        kafka_source_table("trades", "late", &bootstrap, 300),
        file_sink_table("out", COLUMNS, &output),
        query("'1' SECOND")
    );
    let outcome = run_to_rows(&sql, &options(2), &output).unwrap_or_else(|e| panic!("{e}"));
    assert_each_window_once(&outcome.rows);
    let (old, recent): (Vec<Value>, Vec<Value>) =
        outcome.rows.into_iter().partition(|r| r["symbol"] == "OLD");
    let emitted_old: i64 = old.iter().map(|r| r["trades"].as_i64().unwrap_or(-1)).sum();
    let r = &outcome.report;
    assert_eq!(
        emitted_old as u64 + r.late_events() + r.late_partial_groups(),
        injected as u64,
        "every very late event is emitted, counted late or counted as a late partial group"
    );
    for row in &old {
        let (start, _) = tumble_window(hour_ago, 1_000, 0);
        assert_eq!(
            row["trades"], 1,
            "an old window holds exactly one event: {row}"
        );
        assert!(
            row["window_start"].as_str()
                >= Some(spillway_tests::oracle::format_time(start).as_str())
        );
    }
    assert_rows_match(&recent, &oracle(1_000, &on_time, None).rows, &KEYS);
}
