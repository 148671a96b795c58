//! Joins with dimension tables, end to end against the oracle: the seed query (a LEFT lookup
//! join feeding a windowed aggregate with HAVING) and a temporal join (FOR SYSTEM_TIME AS OF),
//! each from a JSON-lines file, from librdkafka's mock cluster and from tansu (dimension keys
//! spread over 3 partitions; updates, deletes and keys missing from the table), plus the
//! errors a user meets: a table over its row limit, a changelog that never catches up.

use std::time::Duration;

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::{json, Map, Value};
use spillway_connectors::embedded_kafka::EmbeddedKafka;
use spillway_tests::compare::assert_rows_match;
use spillway_tests::data::{generate_trades, produce_lines, PartitionBy, TimeFormat, TradeSpec};
use spillway_tests::job::{
    file_sink_table, file_source_table, kafka_source_table, options, run_sql, run_to_rows, Scratch,
};
use spillway_tests::kafka::Batching;
use spillway_tests::oracle::{
    args, join_events, parse_events, Agg, DimensionOracle, Event, OracleQuery,
};
use spillway_tests::tansu::TansuBroker;

const BOUND_MS: i64 = 300;
const DIMENSION_PARTITIONS: i32 = 3;
const SECTORS: [&str; 3] = ["tech", "energy", "health"];

/// One change of a dimension table: key, row (None: delete), valid-from / message time.
#[derive(Debug, Clone)]
struct Change {
    key: String,
    row: Option<Map<String, Value>>,
    time_ms: i64,
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// The securities changelog: SYM000..SYM047 (SYM048..SYM063 never appear), then new names
/// for SYM000..SYM009, deletes of SYM010..SYM013 and a re-insert of SYM012.
fn securities_changes() -> Vec<Change> {
    let row = |i: usize, version: usize| {
        object(json!({
            "instrument_id": format!("SYM{i:03}"),
            "name": format!("Security {i} v{version}"),
            "sector": SECTORS[i % 3],
        }))
    };
    let mut changes: Vec<Change> = (0..48)
        .map(|i| Change {
            key: format!("SYM{i:03}"),
            row: Some(row(i, 1)),
            time_ms: 0,
        })
        .collect();
    changes.extend((0..10).map(|i| Change {
        key: format!("SYM{i:03}"),
        row: Some(row(i, 2)),
        time_ms: 0,
    }));
    changes.extend((10..14).map(|i| Change {
        key: format!("SYM{i:03}"),
        row: None,
        time_ms: 0,
    }));
    changes.push(Change {
        key: "SYM012".into(),
        row: Some(row(12, 3)),
        time_ms: 0,
    });
    changes
}

fn oracle_of(changes: &[Change]) -> DimensionOracle {
    let mut d = DimensionOracle::new();
    for c in changes {
        match &c.row {
            Some(row) => d.upsert(&c.key, row.clone(), c.time_ms),
            None => d.delete(&c.key, c.time_ms),
        }
    }
    d
}

/// The file form of a changelog: rows, and `"__deleted": true` lines for deletes (with the
/// time column `time_field` when given).
fn changelog_lines(changes: &[Change], key_field: &str, time_field: Option<&str>) -> Vec<String> {
    changes
        .iter()
        .map(|c| match &c.row {
            Some(row) => Value::Object(row.clone()).to_string(),
            None => {
                let mut m = Map::new();
                m.insert(key_field.into(), Value::from(c.key.clone()));
                m.insert("__deleted".into(), Value::Bool(true));
                if let Some(t) = time_field {
                    m.insert(t.into(), Value::from(c.time_ms));
                }
                Value::Object(m).to_string()
            }
        })
        .collect()
}

/// Produces a changelog keyed like the upsert-kafka sink (`{"key_field": key}`), keys spread
/// over the topic's partitions by a hash, deletes as tombstones with the change's time as
/// message timestamp; one record per request so a broker keeps the order.
fn produce_changes(bootstrap: &str, topic: &str, changes: &[Change], key_field: &str) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "0")
        .set("max.in.flight.requests.per.connection", "1")
        .set("enable.idempotence", "false")
        .set("batch.num.messages", "1")
        .create()
        .expect("producer");
    for c in changes {
        let key = json!({ key_field: c.key }).to_string();
        let partition =
            (c.key.bytes().map(u32::from).sum::<u32>() % DIMENSION_PARTITIONS as u32) as i32;
        let payload = c.row.as_ref().map(|r| Value::Object(r.clone()).to_string());
        let mut record = BaseRecord::<String, String>::to(topic)
            .key(&key)
            .partition(partition);
        if let Some(p) = &payload {
            record = record.payload(p);
        }
        if c.time_ms > 0 {
            record = record.timestamp(c.time_ms);
        }
        producer.send(record).map_err(|(e, _)| e).expect("send");
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

fn trades() -> Vec<String> {
    generate_trades(&TradeSpec {
        events: 12_000,
        seed: 11,
        symbols: 64,
        events_per_second: 100, // 120 s of event time: 2 to 3 one-minute windows
        disorder_ms: 200,
        times: TimeFormat::EpochMs,
        ..TradeSpec::default()
    })
}

const SEED_SINK_COLUMNS: &str = "symbol STRING, name STRING, window_start TIMESTAMP(3), \
     avg_price DOUBLE, volume BIGINT, trades BIGINT";

/// The seed query of the original design.
const SEED_QUERY: &str = "INSERT INTO out
SELECT t.symbol, s.name, TUMBLE_START(t.ts, INTERVAL '1' MINUTE) AS window_start,
       AVG(t.price), SUM(t.volume), COUNT(*)
FROM trades t LEFT JOIN securities s ON t.symbol = s.instrument_id
GROUP BY t.symbol, s.name, s.sector, TUMBLE(t.ts, INTERVAL '1' MINUTE)
HAVING AVG(t.price) > 100;";

fn seed_oracle(lines: &[String], dimension: &DimensionOracle) -> Vec<Value> {
    let events = parse_events(&lines.join("\n"), "ts").expect("events");
    let joined = join_events(&events, false, "s", |e: &Event| {
        dimension.latest(e.str("symbol")?)
    });
    let rows = OracleQuery::tumble(60_000)
        .keys(|e| {
            vec![
                args::str_key(e, "symbol"),
                args::str_key(e, "s.name"),
                args::str_key(e, "s.sector"),
            ]
        })
        .agg(Agg::avg(|e| e.f64("price")))
        .agg(Agg::sum_int(|e| e.i64("volume")))
        .agg(Agg::count_star())
        .output(|g| {
            (g.agg_f64(0) > 100.0).then(|| {
                json!({"symbol": g.key(0), "name": g.key(1), "window_start": g.start(),
                       "avg_price": g.aggs[0], "volume": g.aggs[1], "trades": g.aggs[2]})
            })
        })
        .run(&joined)
        .rows;
    assert!(rows.len() > 50, "a meaningful oracle: {} rows", rows.len());
    let nulls = rows.iter().filter(|r| r["name"].is_null()).count();
    assert!(
        nulls > 5 && nulls < rows.len() / 2,
        "some rows miss the dimension: {nulls}"
    );
    let v2 = rows
        .iter()
        .filter(|r| r["name"].as_str().is_some_and(|n| n.ends_with("v2")))
        .count();
    assert!(v2 > 0, "updated names reach the results");
    rows
}

fn securities_table(options: &str) -> String {
    format!(
        "CREATE TABLE securities (instrument_id STRING, name STRING, sector STRING,
           PRIMARY KEY (instrument_id) NOT ENFORCED) WITH ({options});\n"
    )
}

const SEED_KEYS: &[&str] = &["symbol", "window_start", "name"];

#[test]
fn seed_query_from_files_equals_the_oracle() {
    let scratch = Scratch::new();
    let lines = trades();
    let changes = securities_changes();
    let trades_path = scratch.path("trades.jsonl");
    let dim_path = scratch.path("securities.jsonl");
    let out = scratch.path("out.jsonl");
    std::fs::write(&trades_path, lines.join("\n")).expect("trades");
    std::fs::write(
        &dim_path,
        changelog_lines(&changes, "instrument_id", None).join("\n"),
    )
    .expect("securities");
    let sql = format!(
        "{}{}{}{SEED_QUERY}",
        file_source_table("trades", &trades_path, BOUND_MS, ""),
        securities_table(&format!(
            "'connector' = 'filesystem', 'path' = '{}', 'format' = 'json'",
            dim_path.display()
        )),
        file_sink_table("out", SEED_SINK_COLUMNS, &out),
    );
    let expected = seed_oracle(&lines, &oracle_of(&changes));
    for shards in [1, 2] {
        let _ = std::fs::remove_file(&out);
        let outcome = run_to_rows(&sql, &options(shards), &out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outcome.report.records_in(), lines.len() as u64);
        assert_rows_match(&outcome.rows, &expected, SEED_KEYS);
    }
}

/// The seed query with trades and securities on a broker.
fn seed_query_through_kafka(bootstrap: &str, batching: Batching) {
    let scratch = Scratch::new();
    let lines = trades();
    let changes = securities_changes();
    produce_lines(
        bootstrap,
        "trades",
        &lines,
        2,
        PartitionBy::RoundRobin,
        batching,
    )
    .expect("trades");
    produce_changes(bootstrap, "securities", &changes, "instrument_id");
    let out = scratch.path("out.jsonl");
    let sql = format!(
        "{}{}{}{SEED_QUERY}",
        kafka_source_table("trades", "trades", bootstrap, BOUND_MS),
        securities_table(&format!(
            "'connector' = 'upsert-kafka', 'topic' = 'securities',
             'properties.bootstrap.servers' = '{bootstrap}',
             'key.format' = 'json', 'value.format' = 'json', 'dimension.startup-timeout' = '30 s'"
        )),
        file_sink_table("out", SEED_SINK_COLUMNS, &out),
    );
    let expected = seed_oracle(&lines, &oracle_of(&changes));
    let outcome = run_to_rows(&sql, &options(2), &out).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.report.records_in(), lines.len() as u64);
    assert_rows_match(&outcome.rows, &expected, SEED_KEYS);
}

#[test]
fn seed_query_through_the_mock_cluster_equals_the_oracle() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    kafka.create_topic("trades", 2).expect("topic");
    kafka
        .create_topic("securities", DIMENSION_PARTITIONS)
        .expect("topic");
    seed_query_through_kafka(&kafka.bootstrap_servers(), Batching::Default);
}

#[test]
fn seed_query_through_tansu_equals_the_oracle() {
    let tansu = TansuBroker::start().unwrap_or_else(|e| panic!("tansu: {e}"));
    tansu.create_topic("trades", 2).expect("topic");
    tansu
        .create_topic("securities", DIMENSION_PARTITIONS)
        .expect("topic");
    seed_query_through_kafka(&tansu.bootstrap_servers(), Batching::OneRecordPerBatch);
}

/// Versions of exchange rates for SYM000..SYM007: a version every 7 s (staggered per key),
/// SYM003 deleted at 40 s and back at 70 s; SYM007 only from 50 s on.
fn rate_changes(start_ms: i64) -> Vec<Change> {
    let mut changes = Vec::new();
    for step in 0..14i64 {
        for k in 0..8i64 {
            let at = start_ms + step * 7_000 + k * 300;
            if k == 7 && at < start_ms + 50_000 {
                continue;
            }
            let key = format!("SYM{k:03}");
            if k == 3 && (start_ms + 40_000..start_ms + 70_000).contains(&at) {
                if !changes
                    .iter()
                    .any(|c: &Change| c.key == key && c.row.is_none())
                {
                    changes.push(Change {
                        key,
                        row: None,
                        time_ms: start_ms + 40_000,
                    });
                }
                continue;
            }
            let row =
                object(json!({"currency": key, "rate": (step * 10 + k) as f64, "valid_from": at}));
            changes.push(Change {
                key,
                row: Some(row),
                time_ms: at,
            });
        }
    }
    changes
}

const RATES_COLUMNS: &str = "currency STRING, rate DOUBLE, valid_from TIMESTAMP(3),
  PRIMARY KEY (currency) NOT ENFORCED, WATERMARK FOR valid_from AS valid_from";

const TEMPORAL_QUERY: &str = "INSERT INTO out
SELECT t.symbol, t.ts, t.volume, r.rate
FROM trades t JOIN rates FOR SYSTEM_TIME AS OF t.ts AS r ON r.currency = t.symbol;";

fn temporal_oracle(lines: &[String], changes: &[Change]) -> Vec<Value> {
    let dimension = oracle_of(changes);
    let events = parse_events(&lines.join("\n"), "ts").expect("events");
    let joined = join_events(&events, true, "r", |e: &Event| {
        dimension.as_of(e.str("symbol")?, e.ts_ms)
    });
    assert!(
        joined.len() > 1000 && joined.len() < events.len() / 2,
        "{}",
        joined.len()
    );
    joined
        .iter()
        .map(|e| {
            json!({"symbol": e.str("symbol"), "ts": spillway_tests::oracle::format_time(e.ts_ms),
                   "volume": e.i64("volume"), "rate": e.f64("r.rate")})
        })
        .collect()
}

fn temporal_trades() -> (Vec<String>, i64) {
    let spec = TradeSpec {
        events: 20_000,
        seed: 5,
        symbols: 16,
        events_per_second: 200, // 100 s
        disorder_ms: 200,
        times: TimeFormat::EpochMs,
        ..TradeSpec::default()
    };
    (generate_trades(&spec), spec.start_ts_ms)
}

const TEMPORAL_SINK_COLUMNS: &str = "symbol STRING, ts TIMESTAMP(3), volume BIGINT, rate DOUBLE";
const TEMPORAL_KEYS: &[&str] = &["symbol", "ts", "volume"];

#[test]
fn temporal_join_from_files_equals_the_oracle() {
    let scratch = Scratch::new();
    let (lines, start) = temporal_trades();
    let changes = rate_changes(start);
    let trades_path = scratch.path("trades.jsonl");
    let rates_path = scratch.path("rates.jsonl");
    let out = scratch.path("out.jsonl");
    std::fs::write(&trades_path, lines.join("\n")).expect("trades");
    std::fs::write(
        &rates_path,
        changelog_lines(&changes, "currency", Some("valid_from")).join("\n"),
    )
    .expect("rates");
    let sql = format!(
        "{}CREATE TABLE rates ({RATES_COLUMNS}) WITH ('connector' = 'filesystem', 'path' = '{}');\n{}{TEMPORAL_QUERY}",
        file_source_table("trades", &trades_path, BOUND_MS, ""),
        rates_path.display(),
        file_sink_table("out", TEMPORAL_SINK_COLUMNS, &out),
    );
    let expected = temporal_oracle(&lines, &changes);
    let outcome = run_to_rows(&sql, &options(2), &out).unwrap_or_else(|e| panic!("{e}"));
    assert_rows_match(&outcome.rows, &expected, TEMPORAL_KEYS);
}

fn temporal_join_through_kafka(bootstrap: &str, batching: Batching) {
    let scratch = Scratch::new();
    let (lines, start) = temporal_trades();
    let changes = rate_changes(start);
    produce_lines(
        bootstrap,
        "trades",
        &lines,
        2,
        PartitionBy::Symbol,
        batching,
    )
    .expect("trades");
    produce_changes(bootstrap, "rates", &changes, "currency");
    let out = scratch.path("out.jsonl");
    let sql = format!(
        "{}CREATE TABLE rates ({RATES_COLUMNS}) WITH ('connector' = 'upsert-kafka',
           'topic' = 'rates', 'properties.bootstrap.servers' = '{bootstrap}', 'format' = 'json');\n{}{TEMPORAL_QUERY}",
        kafka_source_table("trades", "trades", bootstrap, BOUND_MS),
        file_sink_table("out", TEMPORAL_SINK_COLUMNS, &out),
    );
    let expected = temporal_oracle(&lines, &changes);
    let outcome = run_to_rows(&sql, &options(2), &out).unwrap_or_else(|e| panic!("{e}"));
    assert_rows_match(&outcome.rows, &expected, TEMPORAL_KEYS);
}

#[test]
fn temporal_join_through_the_mock_cluster_equals_the_oracle() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    kafka.create_topic("trades", 2).expect("topic");
    kafka
        .create_topic("rates", DIMENSION_PARTITIONS)
        .expect("topic");
    temporal_join_through_kafka(&kafka.bootstrap_servers(), Batching::Default);
}

#[test]
fn temporal_join_through_tansu_equals_the_oracle() {
    let tansu = TansuBroker::start().unwrap_or_else(|e| panic!("tansu: {e}"));
    tansu.create_topic("trades", 2).expect("topic");
    tansu
        .create_topic("rates", DIMENSION_PARTITIONS)
        .expect("topic");
    temporal_join_through_kafka(&tansu.bootstrap_servers(), Batching::OneRecordPerBatch);
}

fn error_of(sql: &str) -> String {
    match run_sql(sql, &options(1)) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("the job succeeded:\n{sql}"),
    }
}

fn small_job(scratch: &Scratch, dimension_options: &str) -> String {
    let trades_path = scratch.path("trades.jsonl");
    std::fs::write(&trades_path, trades()[..100].join("\n")).expect("trades");
    format!(
        "{}{}{}INSERT INTO out SELECT t.symbol, s.name FROM trades t LEFT JOIN securities s ON t.symbol = s.instrument_id;",
        file_source_table("trades", &trades_path, BOUND_MS, ""),
        securities_table(dimension_options),
        file_sink_table("out", "symbol STRING, name STRING", &scratch.path("out.jsonl")),
    )
}

#[test]
fn a_table_over_its_row_limit_is_a_clear_error() {
    let scratch = Scratch::new();
    let dim_path = scratch.path("securities.jsonl");
    let lines = changelog_lines(&securities_changes(), "instrument_id", None);
    std::fs::write(&dim_path, lines.join("\n")).expect("securities");
    let sql = small_job(
        &scratch,
        &format!(
            "'connector' = 'filesystem', 'path' = '{}', 'dimension.rows-max' = '20'",
            dim_path.display()
        ),
    );
    let e = error_of(&sql);
    assert!(
        e.contains("'securities'") && e.contains("dimension.rows-max") && e.contains("= 20"),
        "{e}"
    );
}

#[test]
fn a_changelog_that_does_not_catch_up_in_time_is_a_clear_error() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    kafka.create_topic("securities", 1).expect("topic");
    let bootstrap = kafka.bootstrap_servers();
    produce_changes(
        &bootstrap,
        "securities",
        &securities_changes(),
        "instrument_id",
    );
    let scratch = Scratch::new();
    // Every fetch fails for longer than the start-up timeout.
    kafka.fail_next_requests(
        rdkafka::types::RDKafkaApiKey::Fetch,
        rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        100_000,
    );
    let sql = small_job(
        &scratch,
        &format!(
            "'connector' = 'upsert-kafka', 'topic' = 'securities',
             'properties.bootstrap.servers' = '{bootstrap}', 'dimension.startup-timeout' = '1 s'"
        ),
    );
    let e = error_of(&sql);
    assert!(
        e.contains("'securities'")
            && e.contains("dimension.startup-timeout")
            && e.contains("partition 0"),
        "{e}"
    );
}

#[test]
fn a_missing_dimension_file_fails_before_any_shard_starts() {
    let scratch = Scratch::new();
    let sql = small_job(
        &scratch,
        &format!(
            "'connector' = 'filesystem', 'path' = '{}'",
            scratch.path("nope.jsonl").display()
        ),
    );
    let e = error_of(&sql);
    assert!(e.contains("nope.jsonl") && e.contains("securities"), "{e}");
}
