//! Bad input: each kind of bad record mixed into good ones is skipped and counted exactly,
//! and the good records' results are intact (equal to the oracle over the good records
//! alone). Bad setups (unreachable broker, missing topic, missing file, bad SQL) end the job
//! with a clear error.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use spillway_connectors::embedded_kafka::EmbeddedKafka;
use spillway_engine::job::JobReport;
use spillway_engine::limits::Limits;
use spillway_engine::EngineError;
use spillway_tests::compare::assert_rows_match;
use spillway_tests::data::{generate_trades, write_lines, TradeSpec};
use spillway_tests::job::{
    file_sink_table, file_source_table, kafka_source_table, options, run_sql, run_to_rows, Scratch,
};
use spillway_tests::kafka::{produce, Batching};
use spillway_tests::oracle::{args, parse_events, Agg, OracleQuery};
use spillway_tests::tansu::TansuBroker;

const BOUND_MS: i64 = 300;
const KEYS: [&str; 2] = ["window_start", "symbol"];
const COLUMNS: &str = "symbol STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3), \
    trades BIGINT, volume BIGINT, low DOUBLE, high DOUBLE";
const QUERY: &str = "INSERT INTO out
    SELECT symbol, window_start, window_end, COUNT(*), SUM(volume), MIN(price), MAX(price)
    FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' SECOND))
    GROUP BY symbol, window_start, window_end;";

fn good_lines() -> Vec<String> {
    generate_trades(&TradeSpec {
        events: 6_000,
        seed: 5,
        symbols: 16,
        ..TradeSpec::default()
    })
}

fn expected(good: &[String]) -> Vec<Value> {
    let events = parse_events(&good.join("\n"), "ts").expect("good events");
    OracleQuery::tumble(1_000)
        .keys(|e| vec![args::str_key(e, "symbol")])
        .agg(Agg::count_star())
        .agg(Agg::sum_int(|e| e.i64("volume")))
        .agg(Agg::min(args::float("price")))
        .agg(Agg::max(args::float("price")))
        .output(|g| {
            Some(json!({
                "symbol": g.key(0), "window_start": g.start(), "window_end": g.end(),
                "trades": g.aggs[0], "volume": g.aggs[1], "low": g.aggs[2], "high": g.aggs[3],
            }))
        })
        .run(&events)
        .rows
}

/// A time in the middle of the good data, so bad records never move windows or watermarks.
const TS: i64 = 1_700_000_000_300;

/// Bad records of each kind, with the reason the report must count them under.
fn bad_records() -> Vec<(&'static str, String)> {
    vec![
        (
            "malformed JSON",
            r#"{"symbol":"SYM001","price":1.5,"volume":"#.to_string(),
        ),
        ("malformed JSON", "not json at all".to_string()),
        (
            "malformed JSON",
            format!(r#"{{"symbol":"SYM001","price":1.5,"volume":3,"ts":{TS}}} trailing"#),
        ),
        ("malformed JSON", "[1, 2, 3]".to_string()),
        (
            "missing field",
            format!(r#"{{"symbol":"SYM001","price":1.5,"ts":{TS}}}"#),
        ),
        (
            "missing field",
            format!(r#"{{"price":1.5,"volume":3,"ts":{TS}}}"#),
        ),
        (
            "wrong type",
            format!(r#"{{"symbol":"SYM001","price":"abc","volume":3,"ts":{TS}}}"#),
        ),
        (
            "wrong type",
            format!(r#"{{"symbol":"SYM001","price":1.5,"volume":2.5,"ts":{TS}}}"#),
        ),
        (
            "wrong type",
            format!(r#"{{"symbol":7,"price":1.5,"volume":3,"ts":{TS}}}"#),
        ),
        (
            "wrong type",
            format!(r#"{{"symbol":"SYM001","price":1.5,"volume":{{"n":3}},"ts":{TS}}}"#),
        ),
        (
            "null event time",
            r#"{"symbol":"SYM001","price":1.5,"volume":3,"ts":null}"#.to_string(),
        ),
    ]
}

/// Inserts `bad` into `good` at spread positions.
fn mix(good: &[String], bad: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(good.len() + bad.len());
    let step = good.len() / (bad.len() + 1);
    let mut bad_iter = bad.iter();
    for (i, line) in good.iter().enumerate() {
        if i > 0 && i % step == 0 {
            if let Some(b) = bad_iter.next() {
                out.push(b.clone());
            }
        }
        out.push(line.clone());
    }
    out.extend(bad_iter.cloned());
    out
}

fn skipped(report: &JobReport) -> BTreeMap<&'static str, u64> {
    report
        .skipped()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn counts(kinds: &[(&'static str, String)]) -> BTreeMap<&'static str, u64> {
    let mut m = BTreeMap::new();
    for (k, _) in kinds {
        *m.entry(*k).or_insert(0) += 1;
    }
    m
}

#[test]
fn bad_records_in_a_file_are_skipped_counted_and_good_rows_kept() {
    let good = good_lines();
    let bad = bad_records();
    let lines = mix(
        &good,
        &bad.iter().map(|(_, l)| l.clone()).collect::<Vec<_>>(),
    );
    let scratch = Scratch::new();
    let input = scratch.path("in.jsonl");
    write_lines(&input, &lines).expect("input");
    for shards in [1, 2] {
        let output = scratch.path(&format!("out-{shards}.jsonl"));
        let sql = format!(
            "{}{}{QUERY}",
            file_source_table("trades", &input, BOUND_MS, ""),
            file_sink_table("out", COLUMNS, &output)
        );
        let outcome =
            run_to_rows(&sql, &options(shards), &output).unwrap_or_else(|e| panic!("{e}"));
        let r = &outcome.report;
        assert_eq!(skipped(r), counts(&bad), "skip counts by reason");
        assert_eq!(r.skipped_total(), bad.len() as u64);
        assert_eq!(
            r.records_in(),
            lines.len() as u64,
            "bad records are read, then skipped"
        );
        assert!(
            !r.samples().is_empty(),
            "the report keeps examples of bad records"
        );
        assert_rows_match(&outcome.rows, &expected(&good), &KEYS);
    }
}

fn padded_trade(bytes: usize) -> String {
    let pad = "x".repeat(bytes);
    format!(r#"{{"symbol":"SYM001","price":1.5,"volume":3,"ts":{TS},"note":"{pad}"}}"#)
}

#[test]
fn oversized_records_are_skipped_by_the_limit() {
    let good = good_lines();
    let oversized: Vec<String> = (0..3).map(|i| padded_trade(500 + i * 1000)).collect();
    let lines = mix(&good, &oversized);
    let scratch = Scratch::new();
    let input = scratch.path("in.jsonl");
    write_lines(&input, &lines).expect("input");
    let output = scratch.path("out.jsonl");
    let sql = format!(
        "{}{}{QUERY}",
        file_source_table("trades", &input, BOUND_MS, ""),
        file_sink_table("out", COLUMNS, &output)
    );
    let mut opts = options(1);
    opts.limits = Limits {
        record_bytes_max: 256,
        ..Limits::default()
    };
    let outcome = run_to_rows(&sql, &opts, &output).unwrap_or_else(|e| panic!("{e}"));
    let r = &outcome.report;
    assert_eq!(
        skipped(r),
        BTreeMap::from([("oversized", 3)]),
        "records over limits.record_bytes_max = 256 are skipped as oversized"
    );
    assert_eq!(
        r.records_in(),
        good.len() as u64,
        "oversized records are never read whole"
    );
    assert_rows_match(&outcome.rows, &expected(&good), &KEYS);
}

#[test]
fn oversized_records_are_skipped_by_the_table_option() {
    let good = good_lines();
    let oversized = vec![padded_trade(2_000)];
    let scratch = Scratch::new();
    let input = scratch.path("in.jsonl");
    write_lines(&input, &mix(&good, &oversized)).expect("input");
    let output = scratch.path("out.jsonl");
    let sql = format!(
        "{}{}{QUERY}",
        file_source_table(
            "trades",
            &input,
            BOUND_MS,
            ",\n  'source.record-bytes-max' = '1024'"
        ),
        file_sink_table("out", COLUMNS, &output)
    );
    let outcome = run_to_rows(&sql, &options(1), &output).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(skipped(&outcome.report), BTreeMap::from([("oversized", 1)]));
    assert_rows_match(&outcome.rows, &expected(&good), &KEYS);
}

#[test]
fn bad_records_from_kafka_are_skipped_counted_and_good_rows_kept() {
    let good = good_lines();
    let mut bad = bad_records();
    bad.push(("empty payload", String::new()));
    let lines = mix(
        &good,
        &bad.iter().map(|(_, l)| l.clone()).collect::<Vec<_>>(),
    );
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    kafka.create_topic("dirty", 2).expect("topic");
    let bootstrap = kafka.bootstrap_servers();
    let records = lines
        .iter()
        .enumerate()
        .map(|(i, l)| ((i % 2) as i32, l.as_bytes()));
    produce(&bootstrap, "dirty", records, Batching::Default).unwrap_or_else(|e| panic!("{e}"));
    let scratch = Scratch::new();
    let output = scratch.path("out.jsonl");
    let sql = format!(
        "{}{}{QUERY}",
        kafka_source_table("trades", "dirty", &bootstrap, BOUND_MS),
        file_sink_table("out", COLUMNS, &output)
    );
    let outcome = run_to_rows(&sql, &options(2), &output).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        skipped(&outcome.report),
        counts(&bad),
        "skip counts by reason"
    );
    assert_rows_match(&outcome.rows, &expected(&good), &KEYS);
}

/// Runs `sql` expecting an error; returns its message. The error must come quickly.
fn expect_error(sql: &str) -> String {
    let started = Instant::now();
    let err = match run_sql(sql, &options(1)) {
        Ok(report) => panic!(
            "the job succeeded ({} records in) but should have failed",
            report.records_in()
        ),
        Err(e) => e,
    };
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the error took {:?}",
        started.elapsed()
    );
    err.to_string()
}

fn sink(scratch: &Scratch) -> String {
    file_sink_table("out", COLUMNS, &scratch.path("out.jsonl"))
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let scratch = Scratch::new();
    let missing = scratch.path("no-such-input.jsonl");
    let msg = expect_error(&format!(
        "{}{}{QUERY}",
        file_source_table("trades", &missing, BOUND_MS, ""),
        sink(&scratch)
    ));
    assert!(
        msg.contains(&missing.display().to_string()),
        "names the path: {msg}"
    );
}

#[test]
fn an_unreachable_broker_is_a_clear_error() {
    let scratch = Scratch::new();
    let source = kafka_source_table("trades", "trades", "127.0.0.1:1", BOUND_MS).replace(
        "'format' = 'json'",
        "'format' = 'json',\n  'scan.connect.timeout' = '2 s'",
    );
    let msg = expect_error(&format!("{source}{}{QUERY}", sink(&scratch)));
    assert!(msg.contains("127.0.0.1:1"), "names the broker: {msg}");
}

#[test]
fn a_missing_topic_on_the_mock_cluster_is_a_clear_error() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    kafka.create_topic("present", 1).expect("topic");
    let scratch = Scratch::new();
    let source = kafka_source_table("trades", "absent", &kafka.bootstrap_servers(), BOUND_MS);
    let msg = expect_error(&format!("{source}{}{QUERY}", sink(&scratch)));
    assert!(msg.contains("absent"), "names the topic: {msg}");
}

#[test]
fn a_missing_topic_on_tansu_is_a_clear_error() {
    let tansu = TansuBroker::start().unwrap_or_else(|e| panic!("tansu: {e}"));
    tansu
        .create_topic("present", 1)
        .unwrap_or_else(|e| panic!("{e}"));
    let scratch = Scratch::new();
    let source = kafka_source_table("trades", "absent", &tansu.bootstrap_servers(), BOUND_MS);
    let msg = expect_error(&format!("{source}{}{QUERY}", sink(&scratch)));
    assert!(msg.contains("absent"), "names the topic: {msg}");
}

#[test]
fn bad_sql_is_a_plan_error_with_line_and_column() {
    let scratch = Scratch::new();
    let input = scratch.path("in.jsonl");
    let source = file_source_table("trades", &input, BOUND_MS, "");
    let sink = sink(&scratch);
    let line_of_query = source.lines().count() + sink.lines().count() + 1;
    let cases = [
        // an unknown column
        "INSERT INTO out SELECT symbol, window_start, window_end, COUNT(*), SUM(nope), MIN(price), MAX(price) FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY symbol, window_start, window_end;",
        // a syntax error
        "INSERT INTO out SELECT symbol, COUNT(*) FROM trades GROUP BY BY symbol;",
    ];
    for query in cases {
        let column = query
            .find("nope")
            .or_else(|| query.find("BY BY").map(|c| c + 3))
            .map(|c| c + 1);
        let column = column.expect("the case marks its error");
        let sql = format!("{source}{sink}{query}");
        match spillway_engine::sql::parse_program(&sql) {
            Err(EngineError::Plan { pos, message }) => {
                assert_eq!(
                    (pos.line as usize, pos.column as usize),
                    (line_of_query, column),
                    "position of the error in {query}: {message}"
                );
            }
            Err(other) => panic!("not a plan error: {other}"),
            Ok(_) => panic!("bad SQL was accepted: {query}"),
        }
    }
}
