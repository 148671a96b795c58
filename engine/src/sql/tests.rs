//! End-to-end tests of the SQL front end: SQL text -> `Program`.

use arrow::datatypes::DataType;

use super::{explain_expr, parse_program, PRINT_SINK_NAME};
use crate::catalog::ColumnType;
use crate::error::{EngineError, Pos};
use crate::plan::{
    AggCall, AggFunc, Aggregation, BinaryOp, Expr, Literal, Pipeline, Program, WindowKind,
    WindowSpec,
};

pub(super) const TRADES: &str = "CREATE TABLE trades (
  symbol STRING, price DOUBLE, volume BIGINT, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  'connector' = 'kafka', 'topic' = 'trades',
  'properties.bootstrap.servers' = '127.0.0.1:9092',
  'properties.group.id' = 'spillway-trades',
  'scan.startup.mode' = 'earliest-offset',      -- or latest-offset, group-offsets
  'scan.bounded.mode' = 'latest-offset',        -- optional: stop at the offsets seen at start
  'scan.watermark.idle-timeout' = '30 s',
  'format' = 'json'
);
";

pub(super) const STATS: &str =
    "CREATE TABLE stats (symbol STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3),
  trades BIGINT, volume BIGINT, avg_price DOUBLE, low DOUBLE, high DOUBLE)
WITH ('connector' = 'filesystem', 'path' = 'out/stats.jsonl', 'format' = 'json');
";

pub(super) fn program(sql: &str) -> Program {
    match parse_program(sql) {
        Ok(p) => p,
        Err(e) => panic!("{e}\nin:\n{sql}"),
    }
}

/// The pipeline of `TRADES` + `query` (a bare SELECT or an INSERT).
pub(super) fn pipeline(query: &str) -> Pipeline {
    let sql = format!("{TRADES}{STATS}{query}");
    let mut p = program(&sql);
    assert_eq!(p.pipelines.len(), 1);
    p.pipelines.remove(0)
}

pub(super) fn aggregation(query: &str) -> Aggregation {
    pipeline(query).aggregation.expect("an aggregation")
}

/// The error of `TRADES` + `query`, with the position relative to `query`'s first line.
pub(super) fn error(query: &str) -> (String, Pos) {
    let prefix_lines = TRADES.matches('\n').count() as u64;
    match parse_program(&format!("{TRADES}{query}")) {
        Err(EngineError::Plan { message, pos }) => (
            message,
            Pos {
                line: pos.line.saturating_sub(prefix_lines),
                column: pos.column,
            },
        ),
        other => panic!("expected a plan error for {query}, got {other:?}"),
    }
}

/// The position of the first occurrence of `needle` in `text`.
pub(super) fn pos_in(text: &str, needle: &str) -> Pos {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} not in {text}"));
    let before = &text[..at];
    let line = before.matches('\n').count() as u64 + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    Pos {
        line,
        column: text[line_start..at].chars().count() as u64 + 1,
    }
}

/// Asserts that `query` fails with a message containing `words` at the position of `at`.
pub(super) fn assert_error(query: &str, words: &str, at: &str) {
    let (message, pos) = error(query);
    assert!(
        message.contains(words),
        "message {message:?} should contain {words:?} (query: {query})"
    );
    assert_eq!(pos, pos_in(query, at), "position of {message:?} in {query}");
}

pub(super) fn column(index: usize, name: &str, data_type: DataType) -> Expr {
    Expr::Column {
        index,
        name: name.to_string(),
        data_type,
    }
}

pub(super) fn ts_type() -> DataType {
    ColumnType::Timestamp.to_arrow()
}

const DESIGN_INSERT: &str = "INSERT INTO stats
SELECT symbol, window_start, window_end, COUNT(*), SUM(volume), AVG(price), MIN(price), MAX(price)
FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' SECOND))
GROUP BY symbol, window_start, window_end;";

#[test]
fn design_example_plans_a_tumbling_aggregation() {
    let sql = format!("{TRADES}{STATS}\n{DESIGN_INSERT}");
    let p = program(&sql);
    assert_eq!(p.tables.len(), 2);
    let trades = p.table("TRADES").expect("case-insensitive lookup");
    assert_eq!(trades.option("scan.watermark.idle-timeout"), Some("30 s"));
    let pipeline = &p.pipelines[0];
    assert_eq!(pipeline.source, "trades");
    assert_eq!(pipeline.sink, "stats");
    assert_eq!(pipeline.filter, None);
    assert_eq!(pipeline.pos, pos_in(&sql, "INSERT INTO stats"));
    assert_eq!(
        pipeline.output_schema,
        p.table("stats").expect("stats").schema()
    );

    let agg = pipeline.aggregation.as_ref().expect("aggregation");
    assert_eq!(
        agg.window,
        Some(WindowSpec {
            kind: WindowKind::Tumble { size_ms: 1_000 },
            time_column: 3,
            offset_ms: 0
        })
    );
    assert_eq!(agg.group_keys, vec![column(0, "symbol", DataType::Utf8)]);
    assert_eq!(agg.group_key_names, vec!["symbol"]);
    let price = column(1, "price", DataType::Float64);
    let volume = column(2, "volume", DataType::Int64);
    assert_eq!(
        agg.aggregates,
        vec![
            AggCall {
                func: AggFunc::Count,
                arg: None,
                output_type: DataType::Int64
            },
            AggCall {
                func: AggFunc::Sum,
                arg: Some(volume),
                output_type: DataType::Int64
            },
            AggCall {
                func: AggFunc::Avg,
                arg: Some(price.clone()),
                output_type: DataType::Float64
            },
            AggCall {
                func: AggFunc::Min,
                arg: Some(price.clone()),
                output_type: DataType::Float64
            },
            AggCall {
                func: AggFunc::Max,
                arg: Some(price),
                output_type: DataType::Float64
            },
        ]
    );
    assert_eq!(
        agg.agg_names,
        vec!["EXPR$3", "EXPR$4", "EXPR$5", "EXPR$6", "EXPR$7"]
    );
    assert_eq!(agg.having, None);

    // The projection picks the aggregation output columns in order, with their types.
    let schema = agg.output_schema();
    let expected: Vec<Expr> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| column(i, f.name(), f.data_type().clone()))
        .collect();
    assert_eq!(pipeline.projection, expected);
    let projected: Vec<DataType> = pipeline.projection.iter().map(Expr::data_type).collect();
    let sink: Vec<DataType> = pipeline
        .output_schema
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    assert_eq!(projected, sink);
}

#[test]
fn group_window_form_gives_the_same_plan() {
    let tvf = pipeline(DESIGN_INSERT);
    let group = pipeline(
        "INSERT INTO stats
SELECT symbol, TUMBLE_START(ts, INTERVAL '1' SECOND), TUMBLE_END(ts, INTERVAL '1' SECOND),
       COUNT(*), SUM(volume), AVG(price), MIN(price), MAX(price)
FROM trades
GROUP BY symbol, TUMBLE(ts, INTERVAL '1' SECOND)",
    );
    assert_eq!(tvf.aggregation, group.aggregation);
    assert_eq!(tvf.projection, group.projection);
    assert_eq!(tvf.output_schema, group.output_schema);
}

#[test]
fn window_offset_and_units() {
    let agg = aggregation(
        "SELECT window_start, COUNT(*) FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '10' SECOND)) GROUP BY window_start, window_end",
    );
    assert_eq!(
        agg.window,
        Some(WindowSpec {
            kind: WindowKind::Tumble { size_ms: 60_000 },
            time_column: 3,
            offset_ms: 10_000
        })
    );
    assert!(agg.group_keys.is_empty());
    // A negative offset is normalised into [0, size).
    let agg = aggregation(
        "SELECT COUNT(*) FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '-10' SECOND)) GROUP BY window_start, window_end",
    );
    assert_eq!(agg.window.map(|w| w.offset_ms), Some(50_000));
}

#[test]
fn settings_are_collected() {
    let p = program(
        "SET 'checkpoint.interval' = '10 s';\nSET pipeline.name = spillway;\nSET parallelism.default = 4;\nSET 'checkpoint.interval' = '20 s';",
    );
    assert_eq!(
        p.settings.get("checkpoint.interval").map(String::as_str),
        Some("20 s")
    );
    assert_eq!(
        p.settings.get("pipeline.name").map(String::as_str),
        Some("spillway")
    );
    assert_eq!(
        p.settings.get("parallelism.default").map(String::as_str),
        Some("4")
    );
    assert!(p.pipelines.is_empty());
}

#[test]
fn bare_select_prints_to_an_implicit_sink() {
    let sql = format!(
        "{TRADES}SELECT symbol, price * 2, price AS p, symbol, ts FROM trades WHERE volume > 100"
    );
    let p = program(&sql);
    let sink = p.table(PRINT_SINK_NAME).expect("the print sink");
    assert_eq!(sink.connector(), "print");
    let names: Vec<&str> = sink.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["symbol", "EXPR$1", "p", "symbol0", "ts"]);
    let types: Vec<ColumnType> = sink.columns.iter().map(|c| c.ty).collect();
    assert_eq!(
        types,
        [
            ColumnType::String,
            ColumnType::Double,
            ColumnType::Double,
            ColumnType::String,
            ColumnType::Timestamp
        ]
    );
    let pipeline = &p.pipelines[0];
    assert_eq!(pipeline.sink, PRINT_SINK_NAME);
    assert_eq!(pipeline.aggregation, None);
    assert_eq!(pipeline.output_schema, sink.schema());
    assert_eq!(
        pipeline.filter.as_ref().map(explain_expr).as_deref(),
        Some("volume > 100")
    );
    assert_eq!(
        pipeline.filter,
        Some(Expr::Binary {
            op: BinaryOp::Gt,
            left: Box::new(column(2, "volume", DataType::Int64)),
            right: Box::new(Expr::Literal(Literal::Int64(100))),
            data_type: DataType::Boolean,
        })
    );
}

#[test]
fn select_star_expands_the_source_columns() {
    let sql = format!("{TRADES}SELECT t.* FROM trades AS t WHERE t.price > 1");
    let p = program(&sql);
    let sink = p.table(PRINT_SINK_NAME).expect("sink");
    let names: Vec<&str> = sink.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["symbol", "price", "volume", "ts"]);
    let projection = &p.pipelines[0].projection;
    assert_eq!(projection[3], column(3, "ts", ts_type()));
}

#[test]
fn aggregates_nest_in_expressions_and_are_computed_once() {
    let p = pipeline(
        "SELECT symbol, SUM(price * volume) / SUM(volume) AS vwap, SUM(volume) * 2, COUNT(1), COUNT(price)
FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, symbol
HAVING SUM(volume) > 10 AND MAX(price) < 100",
    );
    let agg = p.aggregation.expect("aggregation");
    let funcs: Vec<AggFunc> = agg.aggregates.iter().map(|a| a.func).collect();
    assert_eq!(
        funcs,
        [
            AggFunc::Sum,
            AggFunc::Sum,
            AggFunc::Count,
            AggFunc::Count,
            AggFunc::Max
        ]
    );
    assert_eq!(agg.aggregates[0].output_type, DataType::Float64);
    assert_eq!(agg.aggregates[1].output_type, DataType::Int64);
    assert_eq!(agg.aggregates[2].arg, None, "COUNT(1) counts rows");
    assert_eq!(
        agg.aggregates[3].arg,
        Some(column(1, "price", DataType::Float64))
    );
    assert_eq!(agg.group_key_names, ["symbol"]);
    assert_eq!(
        agg.agg_names,
        ["EXPR$5", "EXPR$6", "EXPR$3", "EXPR$4", "EXPR$7"]
    );
    assert_eq!(
        explain_expr(&p.projection[1]),
        "EXPR$5 / CAST(EXPR$6 AS DOUBLE)"
    );
    assert_eq!(explain_expr(&p.projection[2]), "EXPR$6 * 2");
    assert_eq!(
        agg.having.as_ref().map(explain_expr).as_deref(),
        Some("EXPR$6 > 10 AND EXPR$7 < 100.0")
    );
    // Columns of the HAVING and the projection index the aggregation output.
    let schema = agg.output_schema();
    assert_eq!(schema.field(0).name(), "symbol");
    assert_eq!(schema.field(1).name(), "window_start");
    assert_eq!(schema.field(3).name(), "EXPR$5");
    assert_eq!(schema.field(7).name(), "EXPR$7");
}

#[test]
fn aggregate_names_use_aliases() {
    let agg = aggregation(
        "SELECT volume % 10 AS bucket, COUNT(*) AS n, MIN(symbol) AS first_symbol
FROM trades GROUP BY volume % 10, TUMBLE(ts, INTERVAL '1' HOUR)",
    );
    assert_eq!(agg.group_key_names, ["bucket"]);
    assert_eq!(agg.agg_names, ["n", "first_symbol"]);
    assert_eq!(agg.aggregates[1].output_type, DataType::Utf8);
    assert_eq!(explain_expr(&agg.group_keys[0]), "volume % 10");
}

#[test]
fn aggregate_errors() {
    assert_error(
        "SELECT price, COUNT(*) FROM trades GROUP BY symbol, TUMBLE(ts, INTERVAL '1' SECOND)",
        "column 'price' in SELECT must be in GROUP BY or inside an aggregate function",
        "price",
    );
    assert_error(
        "SELECT COUNT(*) FROM trades GROUP BY symbol",
        "not supported yet: GROUP BY needs a window (TUMBLE, HOP or CUMULATE)",
        "symbol",
    );
    assert_error(
        "SELECT COUNT(*) FROM trades",
        "not supported yet: GROUP BY needs a window (TUMBLE, HOP or CUMULATE)",
        "SELECT",
    );
    assert_error(
        "SELECT SUM(COUNT(*)) FROM trades GROUP BY TUMBLE(ts, INTERVAL '1' SECOND)",
        "aggregate function COUNT is not allowed in an aggregate function's argument",
        "COUNT(*)",
    );
    assert_error(
        "SELECT SUM(symbol) FROM trades GROUP BY TUMBLE(ts, INTERVAL '1' SECOND)",
        "SUM needs a numeric argument, found STRING",
        "SUM",
    );
    assert_error(
        "SELECT AVG(DISTINCT price) FROM trades GROUP BY TUMBLE(ts, INTERVAL '1' SECOND)",
        "AVG(DISTINCT ...) is not supported",
        "AVG",
    );
    assert_error(
        "SELECT SUM(price, volume) FROM trades GROUP BY TUMBLE(ts, INTERVAL '1' SECOND)",
        "SUM takes exactly one argument, found 2",
        "SUM",
    );
    assert_error(
        "SELECT * FROM trades WHERE COUNT(*) > 1",
        "aggregate function COUNT is not allowed in WHERE",
        "COUNT",
    );
    assert_error(
        "SELECT * FROM trades GROUP BY symbol, TUMBLE(ts, INTERVAL '1' SECOND)",
        "SELECT * is not supported in an aggregate query",
        "*",
    );
    assert_error(
        "SELECT UPPER(symbol) FROM trades",
        "unknown function UPPER",
        "UPPER",
    );
}

#[test]
fn window_errors() {
    let two_times = "CREATE TABLE events (id BIGINT, created TIMESTAMP(3), ts TIMESTAMP(3), WATERMARK FOR ts AS ts);\n";
    let no_watermark = "CREATE TABLE plain (id BIGINT, ts TIMESTAMP(3));\n";
    assert_error(
        &format!(
            "{two_times}SELECT COUNT(*) FROM events GROUP BY TUMBLE(created, INTERVAL '1' SECOND)"
        ),
        "must be 'ts', the column the WATERMARK of table 'events' is declared on",
        "created,",
    );
    assert_error(
        &format!("{no_watermark}SELECT COUNT(*) FROM TABLE(TUMBLE(TABLE plain, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY window_start, window_end"),
        "table 'plain' declares no WATERMARK",
        "ts), INTERVAL",
    );
    assert_error(
        "SELECT COUNT(*) FROM TABLE(HOP(TABLE trades, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '5' SECOND)) GROUP BY window_start, window_end",
        "must be a multiple of its slide",
        "'5' SECOND",
    );
    assert_error(
        "SELECT COUNT(*) FROM trades GROUP BY SESSION(ts, INTERVAL '-1' MINUTE)",
        "the gap of a SESSION window must be positive",
        "'-1' MINUTE",
    );
    assert_error(
        "SELECT COUNT(*) FROM trades GROUP BY CUMULATE(ts, INTERVAL '1' SECOND, INTERVAL '1' MINUTE)",
        "CUMULATE has no group-window form",
        "CUMULATE",
    );
    assert_error(
        "SELECT TUMBLE_START(ts, INTERVAL '2' SECOND), COUNT(*) FROM trades GROUP BY TUMBLE(ts, INTERVAL '1' SECOND)",
        "must match the GROUP BY window",
        "TUMBLE_START",
    );
    assert_error(
        "SELECT TUMBLE_ROWTIME(ts, INTERVAL '1' SECOND), COUNT(*) FROM trades GROUP BY TUMBLE(ts, INTERVAL '1' SECOND)",
        "TUMBLE_ROWTIME is not supported yet",
        "TUMBLE_ROWTIME",
    );
    assert_error(
        "SELECT COUNT(*) FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY window_start",
        "must GROUP BY window_start, window_end",
        "window_start",
    );
    assert_error(
        "SELECT window_time, COUNT(*) FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY window_start, window_end",
        "window_time is not supported yet",
        "window_time",
    );
    assert_error(
        "SELECT symbol FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' SECOND))",
        "must aggregate with GROUP BY window_start, window_end",
        "TUMBLE(TABLE",
    );
    assert_error(
        "SELECT COUNT(*) FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '0' SECOND)) GROUP BY window_start, window_end",
        "must be positive",
        "'0' SECOND",
    );
    assert_error(
        "SELECT COUNT(*) FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts))) GROUP BY window_start, window_end",
        "wrong number of arguments for TUMBLE",
        "TUMBLE",
    );
    assert_error(
        "SELECT COUNT(*) FROM TABLE(TUMBLE(TABLE nope, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY window_start, window_end",
        "unknown table 'nope'",
        "nope",
    );
    assert_error(
        "SELECT * FROM trades WHERE window_start > ts",
        "unknown column 'window_start'",
        "window_start",
    );
    assert_error(
        "SELECT TUMBLE(ts, INTERVAL '1' SECOND), COUNT(*) FROM trades GROUP BY TUMBLE(ts, INTERVAL '1' SECOND)",
        "only allowed in GROUP BY",
        "TUMBLE",
    );
}

#[test]
fn unsupported_constructs_are_named() {
    let cases = [
        (
            "SELECT * FROM trades ORDER BY price",
            "ORDER BY is not supported",
            "price",
        ),
        (
            "SELECT * FROM trades LIMIT 10",
            "LIMIT / OFFSET is not supported",
            "10",
        ),
        (
            "SELECT * FROM trades JOIN trades AS u ON trades.symbol = u.symbol",
            "joined with itself",
            "trades AS u ON",
        ),
        (
            "SELECT * FROM trades, trades AS u",
            "joins (FROM a, b) are not supported yet",
            "trades AS u",
        ),
        (
            "SELECT COUNT(*) FROM (SELECT * FROM trades) GROUP BY symbol",
            "aggregating the result of a subquery in FROM",
            "SELECT COUNT(*)",
        ),
        (
            "SELECT symbol FROM trades UNION SELECT price FROM trades",
            "UNION is not supported yet",
            "SELECT price",
        ),
        (
            "SELECT DISTINCT symbol FROM trades",
            "SELECT DISTINCT is not supported yet",
            "SELECT",
        ),
        (
            "SELECT ROW_NUMBER() OVER (ORDER BY ts) FROM trades",
            "window functions",
            "ROW_NUMBER",
        ),
        (
            "WITH t AS (SELECT * FROM trades) SELECT * FROM t",
            "WITH (common table expressions)",
            "WITH",
        ),
        (
            "SELECT * FROM trades WHERE price IN (SELECT price FROM trades)",
            "IN is only supported with a list",
            "price IN",
        ),
        (
            "SELECT * FROM trades WHERE symbol LIKE 'A%'",
            "LIKE / SIMILAR TO is not supported yet",
            "symbol LIKE",
        ),
        (
            "SELECT symbol || 'x' FROM trades",
            "string concatenation (||) is not supported yet",
            "symbol ||",
        ),
        (
            "EXPLAIN SELECT * FROM trades",
            "spillway explain",
            "EXPLAIN",
        ),
        (
            "DROP TABLE trades",
            "DROP statements are not supported",
            "DROP",
        ),
        (
            "CREATE VIEW v AS SELECT * FROM trades",
            "only CREATE TABLE is supported, found CREATE VIEW",
            "VIEW",
        ),
    ];
    for (query, words, at) in cases {
        assert_error(query, words, at);
    }
}

#[test]
fn syntax_errors_and_statement_structure() {
    let (message, pos) = error("SELECT price FROM trades WHERE (price > 1");
    assert!(
        message.starts_with("syntax error: Expected: ), found: EOF"),
        "{message}"
    );
    assert_eq!(
        pos,
        Pos {
            line: 1,
            column: 42
        }
    );

    let (message, pos) = error("SELECT price FROM trades WHERE");
    assert!(message.starts_with("syntax error"), "{message}");
    assert_eq!(
        pos,
        Pos {
            line: 1,
            column: 31
        }
    );
    assert_error(
        "SELECT price FROM trades\nSELECT 1 FROM trades",
        "expected ';' or the end of the file after the statement, found SELECT",
        "SELECT 1",
    );
    let (message, _) = error(&TRADES.replace("CREATE TABLE trades", "CREATE TABLE Trades"));
    assert!(
        message.contains("table 'Trades' is already declared (at line 1, column 1)"),
        "{message}"
    );

    // Comments and empty statements are fine.
    let p = program(&format!(
        "-- leading comment\n;;\n{TRADES}/* block\ncomment */;\n"
    ));
    assert_eq!(p.tables.len(), 1);
    let empty = program("");
    assert!(empty.tables.is_empty() && empty.pipelines.is_empty());
}
