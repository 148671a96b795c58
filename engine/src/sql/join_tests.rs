//! Planning joins with dimension tables.

use arrow::datatypes::DataType;

use crate::error::EngineError;
use crate::plan::{Expr, JoinKind, Pipeline};
use crate::sql::parse_program;
use crate::sql::tests::TRADES;

const SECURITIES: &str =
    "CREATE TABLE securities (instrument_id STRING, name STRING, sector STRING,
  PRIMARY KEY (instrument_id) NOT ENFORCED)
WITH ('connector' = 'upsert-kafka', 'topic' = 'securities',
  'properties.bootstrap.servers' = '127.0.0.1:9092', 'format' = 'json');
";

const VERSIONED: &str = "CREATE TABLE rates (currency STRING, rate DOUBLE, valid_from TIMESTAMP(3),
  PRIMARY KEY (currency) NOT ENFORCED,
  WATERMARK FOR valid_from AS valid_from)
WITH ('connector' = 'filesystem', 'path' = 'rates.jsonl', 'format' = 'json');
";

fn pipeline(query: &str) -> Pipeline {
    let sql = format!("{TRADES}{SECURITIES}{VERSIONED}{query}");
    match parse_program(&sql) {
        Ok(mut p) => p.pipelines.remove(0),
        Err(e) => panic!("{e}\nin:\n{sql}"),
    }
}

fn error(query: &str) -> String {
    let sql = format!("{TRADES}{SECURITIES}{VERSIONED}{query}");
    match parse_program(&sql) {
        Err(EngineError::Plan { message, .. }) => message,
        Err(other) => panic!("not a plan error: {other}"),
        Ok(_) => panic!("planned: {query}"),
    }
}

#[test]
fn seed_query_plans_a_left_lookup_join() {
    let p = pipeline(
        "SELECT t.symbol, s.name, TUMBLE_START(t.ts, INTERVAL '1' MINUTE) AS window_start,
                AVG(t.price), SUM(t.volume), COUNT(*)
         FROM trades t LEFT JOIN securities s ON t.symbol = s.instrument_id
         GROUP BY t.symbol, s.name, s.sector, TUMBLE(t.ts, INTERVAL '1' MINUTE)
         HAVING AVG(t.price) > 100",
    );
    let join = p.join.expect("a join");
    assert_eq!(join.dimension, "securities");
    assert_eq!(join.qualifier, "s");
    assert_eq!(join.kind, JoinKind::Left);
    assert_eq!(join.version_time_column, None);
    assert_eq!(join.source_columns, 4);
    assert!(
        matches!(&join.probe_keys[..], [Expr::Column { index: 0, .. }]),
        "{:?}",
        join.probe_keys
    );
    let agg = p.aggregation.expect("aggregation");
    // s.name and s.sector are columns 4 + 1 and 4 + 2 of the joined schema.
    let key_indexes: Vec<usize> = agg
        .group_keys
        .iter()
        .map(|k| match k {
            Expr::Column { index, .. } => *index,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(key_indexes, vec![0, 5, 6]);
    assert!(agg.having.is_some());
}

#[test]
fn inner_join_and_bare_dimension_names() {
    let p = pipeline(
        "SELECT symbol, sector, price FROM trades JOIN securities ON instrument_id = symbol",
    );
    let join = p.join.expect("a join");
    assert_eq!(join.kind, JoinKind::Inner);
    assert_eq!(join.qualifier, "securities");
    let names: Vec<&str> = p
        .output_schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, vec!["symbol", "sector", "price"]);
    assert!(matches!(&p.projection[1], Expr::Column { index: 6, .. }));
}

#[test]
fn temporal_join_picks_the_stream_time_column() {
    let p = pipeline(
        "SELECT t.symbol, r.rate FROM trades t
         JOIN rates FOR SYSTEM_TIME AS OF t.ts AS r ON r.currency = t.symbol",
    );
    let join = p.join.expect("a join");
    assert_eq!(join.version_time_column, Some(3));
    assert_eq!(join.qualifier, "r");
}

#[test]
fn key_types_are_widened_or_refused() {
    let sql = "CREATE TABLE ids (id BIGINT, label STRING, PRIMARY KEY (id) NOT ENFORCED)
      WITH ('connector' = 'filesystem', 'path' = 'ids.jsonl');
      CREATE TABLE s (n INT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
      WITH ('connector' = 'filesystem', 'path' = 's.jsonl');
      SELECT n, label FROM s LEFT JOIN ids ON ids.id = s.n";
    let p = parse_program(sql).expect("plans").pipelines.remove(0);
    let key = &p.join.expect("join").probe_keys[0];
    assert_eq!(key.data_type(), DataType::Int64);

    let message =
        error("SELECT t.symbol FROM trades t JOIN securities s ON s.instrument_id = t.volume");
    assert!(message.contains("CAST"), "{message}");
}

#[test]
fn refused_joins_say_why() {
    let cases = [
        (
            "SELECT t.symbol FROM trades t JOIN securities s ON s.name = t.symbol",
            "not a PRIMARY KEY column",
        ),
        (
            "SELECT t.symbol FROM trades t JOIN securities s ON s.instrument_id > t.symbol",
            "must be s.key = expression",
        ),
        (
            "SELECT t.symbol FROM trades t RIGHT JOIN securities s ON s.instrument_id = t.symbol",
            "RIGHT JOIN is not supported",
        ),
        (
            "SELECT t.symbol FROM trades t JOIN trades u ON u.symbol = t.symbol",
            "joined with itself",
        ),
        (
            "SELECT symbol FROM trades t JOIN securities s ON s.instrument_id = t.symbol AND s.instrument_id = t.symbol",
            "equated twice",
        ),
        (
            "SELECT t.symbol FROM trades t JOIN securities FOR SYSTEM_TIME AS OF t.ts AS s ON s.instrument_id = t.symbol",
            "must declare WATERMARK",
        ),
        (
            "SELECT t.symbol FROM trades t JOIN rates FOR SYSTEM_TIME AS OF t.price AS r ON r.currency = t.symbol",
            "event-time column",
        ),
        (
            "SELECT x.symbol FROM trades t JOIN securities s ON s.instrument_id = t.symbol",
            "names 't' and 's'",
        ),
    ];
    for (query, expected) in cases {
        let message = error(query);
        assert!(message.contains(expected), "{query}\n -> {message}");
    }
}

#[test]
fn ambiguous_bare_names_are_errors() {
    let sql = "CREATE TABLE d (symbol STRING, name STRING, PRIMARY KEY (symbol) NOT ENFORCED)
      WITH ('connector' = 'filesystem', 'path' = 'd.jsonl');";
    let message = match parse_program(&format!(
        "{TRADES}{sql} SELECT symbol FROM trades t JOIN d ON d.symbol = t.symbol"
    )) {
        Err(EngineError::Plan { message, .. }) => message,
        other => panic!("{other:?}"),
    };
    assert!(message.contains("ambiguous"), "{message}");
}

#[test]
fn a_table_without_primary_key_cannot_be_joined() {
    let sql = "CREATE TABLE d (symbol STRING, name STRING)
      WITH ('connector' = 'filesystem', 'path' = 'd.jsonl');";
    let message = match parse_program(&format!(
        "{TRADES}{sql} SELECT t.symbol FROM trades t JOIN d ON d.symbol = t.symbol"
    )) {
        Err(EngineError::Plan { message, .. }) => message,
        other => panic!("{other:?}"),
    };
    assert!(message.contains("no PRIMARY KEY"), "{message}");
}
