//! The same query over the same trades through three sources: a JSON-lines file, librdkafka's
//! mock cluster (4 partitions) and a real `tansu` broker process (4 partitions). All three
//! give the same rows, equal to the oracle's.

use serde_json::Value;
use spillway_connectors::embedded_kafka::EmbeddedKafka;
use spillway_tests::compare::assert_rows_match;
use spillway_tests::data::{
    generate_trades, produce_lines, write_lines, PartitionBy, TimeFormat, TradeSpec,
};
use spillway_tests::job::{
    file_sink_table, file_source_table, kafka_source_table, options, run_to_rows, Scratch,
};
use spillway_tests::kafka::{high_watermarks, Batching};
use spillway_tests::tansu::TansuBroker;
use spillway_tests::trades_stats::trades_stats_rows;

const BOUND_MS: i64 = 250;
const KEYS: [&str; 2] = ["window_start", "symbol"];
const STATS_COLUMNS: &str = "symbol STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3), \
    trades BIGINT, volume BIGINT, avg_price DOUBLE, low DOUBLE, high DOUBLE";
const TRADES_QUERY: &str = "INSERT INTO stats
    SELECT symbol, window_start, window_end,
           COUNT(*), SUM(volume), AVG(price), MIN(price), MAX(price)
    FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' SECOND))
    GROUP BY symbol, window_start, window_end;";

fn spec() -> TradeSpec {
    TradeSpec {
        events: 20_000,
        seed: 77,
        symbols: 32,
        events_per_second: 1_000,
        disorder_ms: 200,
        times: TimeFormat::Mixed,
        ..TradeSpec::default()
    }
}

fn oracle_rows(lines: &[String]) -> Vec<Value> {
    trades_stats_rows(lines, 1_000)
}

/// Runs the trades query over `source_ddl` on `shards` shards; checks the report.
fn run_query(
    scratch: &Scratch,
    name: &str,
    source_ddl: &str,
    shards: usize,
    events: usize,
) -> Vec<Value> {
    let output = scratch.path(&format!("{name}.jsonl"));
    let sql = format!(
        "{source_ddl}{}{TRADES_QUERY}",
        file_sink_table("stats", STATS_COLUMNS, &output)
    );
    let outcome =
        run_to_rows(&sql, &options(shards), &output).unwrap_or_else(|e| panic!("{name}: {e}"));
    let r = &outcome.report;
    assert_eq!(
        r.records_in(),
        events as u64,
        "{name}: every record read once"
    );
    assert_eq!(r.skipped_total(), 0, "{name}: skipped {:?}", r.skipped());
    assert_eq!(
        r.late_events(),
        0,
        "{name}: nothing is late within the bound"
    );
    outcome.rows
}

fn produce_to(bootstrap: &str, topic: &str, lines: &[String], by: PartitionBy) {
    let n = produce_lines(bootstrap, topic, lines, 4, by, Batching::OneRecordPerBatch)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, lines.len() as u64);
    let ends = high_watermarks(bootstrap, topic).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ends.iter().sum::<i64>(),
        lines.len() as i64,
        "{topic} holds every record once: {ends:?}"
    );
    assert!(
        ends.iter().all(|&e| e > 0),
        "every partition has data: {ends:?}"
    );
}

#[test]
fn file_mock_cluster_and_tansu_agree_with_the_oracle() {
    let lines = generate_trades(&spec());
    let expected = oracle_rows(&lines);
    let scratch = Scratch::new();

    let input = scratch.path("trades.jsonl");
    write_lines(&input, &lines).expect("input written");
    let from_file = run_query(
        &scratch,
        "file",
        &file_source_table("trades", &input, BOUND_MS, ""),
        2,
        lines.len(),
    );
    assert_rows_match(&from_file, &expected, &KEYS);

    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    kafka.create_topic("trades", 4).expect("topic");
    let mock = kafka.bootstrap_servers();
    produce_to(&mock, "trades", &lines, PartitionBy::Symbol);
    let from_mock = run_query(
        &scratch,
        "mock",
        &kafka_source_table("trades", "trades", &mock, BOUND_MS),
        4,
        lines.len(),
    );
    assert_rows_match(&from_mock, &expected, &KEYS);

    let tansu = TansuBroker::start().unwrap_or_else(|e| panic!("tansu: {e}"));
    tansu
        .create_topic("trades", 4)
        .unwrap_or_else(|e| panic!("{e}"));
    let broker = tansu.bootstrap_servers();
    produce_to(&broker, "trades", &lines, PartitionBy::RoundRobin);
    let from_tansu = run_query(
        &scratch,
        "tansu",
        &kafka_source_table("trades", "trades", &broker, BOUND_MS),
        2,
        lines.len(),
    );
    assert_rows_match(&from_tansu, &expected, &KEYS);

    // And with each other, row for row.
    assert_rows_match(&from_mock, &from_file, &KEYS);
    assert_rows_match(&from_tansu, &from_file, &KEYS);
}

#[test]
fn empty_partitions_do_not_stall_a_bounded_read() {
    // 3 partitions, data only on partitions 0 and 2, more shards than partitions.
    let lines = generate_trades(&TradeSpec {
        events: 3_000,
        ..spec()
    });
    let expected = oracle_rows(&lines);
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    kafka.create_topic("sparse", 3).expect("topic");
    let bootstrap = kafka.bootstrap_servers();
    let records = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (2 * (i % 2) as i32, l.as_bytes()));
    spillway_tests::kafka::produce(&bootstrap, "sparse", records, Batching::Default)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        high_watermarks(&bootstrap, "sparse"),
        Ok(vec![1_500, 0, 1_500])
    );
    let scratch = Scratch::new();
    let rows = run_query(
        &scratch,
        "sparse",
        &kafka_source_table("trades", "sparse", &bootstrap, BOUND_MS),
        4,
        lines.len(),
    );
    assert_rows_match(&rows, &expected, &KEYS);
}
