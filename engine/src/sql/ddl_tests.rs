//! Tests of `ddl.rs` (CREATE TABLE).

use super::*;
use crate::sql::dialect::SpillwayDialect;
use crate::sql::end_pos;

fn create(sql: &str) -> Result<CreateTable> {
    let dialect = SpillwayDialect;
    let mut parser = Parser::new(&dialect)
        .try_with_sql(sql)
        .map_err(|e| parser_error(e, end_pos(sql)))?;
    parse_create_table(&mut parser, end_pos(sql))
}

fn plan_error(sql: &str) -> (String, Pos) {
    match create(sql) {
        Err(EngineError::Plan { message, pos }) => (message, pos),
        other => panic!("expected a plan error for {sql}, got {other:?}"),
    }
}

#[test]
fn design_trades_table() {
    let sql = "CREATE TABLE trades (\n  symbol STRING, price DOUBLE, volume BIGINT, ts TIMESTAMP(3),\n  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND\n) WITH (\n  'connector' = 'kafka', 'topic' = 'trades',\n  'format' = 'json'\n)";
    let table = create(sql).expect("parses").def;
    assert_eq!(table.name, "trades");
    let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["symbol", "price", "volume", "ts"]);
    let types: Vec<ColumnType> = table.columns.iter().map(|c| c.ty).collect();
    assert_eq!(
        types,
        [
            ColumnType::String,
            ColumnType::Double,
            ColumnType::BigInt,
            ColumnType::Timestamp
        ]
    );
    assert!(table.columns.iter().all(|c| c.nullable));
    assert_eq!(
        table.watermark,
        Some(WatermarkSpec {
            column: 3,
            bound_ms: 5_000
        })
    );
    assert_eq!(table.option("connector"), Some("kafka"));
    assert_eq!(table.option("topic"), Some("trades"));
    assert_eq!(table.options.len(), 3);
    assert_eq!(table.pos, Pos { line: 1, column: 1 });
}

#[test]
fn every_supported_type() {
    let sql = "CREATE TABLE t (a STRING, b VARCHAR, c VARCHAR(10), d CHAR(3), e BOOLEAN, f INT, g INTEGER, h BIGINT, i FLOAT, j REAL, k DOUBLE, l DOUBLE PRECISION, m TIMESTAMP(3), n TIMESTAMP, o TIMESTAMP_LTZ(3))";
    let table = create(sql).expect("parses").def;
    let types: Vec<ColumnType> = table.columns.iter().map(|c| c.ty).collect();
    use ColumnType::*;
    assert_eq!(
        types,
        [
            String, String, String, String, Boolean, Int, Int, BigInt, Float, Float, Double,
            Double, Timestamp, Timestamp, Timestamp
        ]
    );
    assert!(table.options.is_empty());
    assert_eq!(table.watermark, None);
}

#[test]
fn watermark_forms() {
    let cases = [
        ("ts", 0),
        ("ts - INTERVAL '0.5' SECOND", 500),
        ("ts - INTERVAL '3' MILLISECOND", 3),
        ("ts - INTERVAL '2' MINUTE", 120_000),
        ("ts - INTERVAL '1' HOUR", 3_600_000),
        ("ts - INTERVAL '1' DAY", 86_400_000),
        ("(ts - INTERVAL '5' SECOND)", 5_000),
    ];
    for (expr, bound_ms) in cases {
        let sql = format!("CREATE TABLE t (x INT, ts TIMESTAMP(3), WATERMARK FOR ts AS {expr})");
        let table = create(&sql).expect("parses").def;
        assert_eq!(
            table.watermark,
            Some(WatermarkSpec {
                column: 1,
                bound_ms
            }),
            "{expr}"
        );
    }
}

#[test]
fn primary_key_not_enforced() {
    let table = create("CREATE TABLE t (a STRING, b INT, c INT, PRIMARY KEY (b, a) NOT ENFORCED)")
        .expect("parses")
        .def;
    assert_eq!(table.primary_key, vec![1, 0]);
    assert!(!table.columns[0].nullable && !table.columns[1].nullable);
    assert!(table.columns[2].nullable);

    let inline = create("CREATE TABLE t (a STRING PRIMARY KEY NOT ENFORCED, b INT NOT NULL)")
        .expect("parses")
        .def;
    assert_eq!(inline.primary_key, vec![0]);
    assert!(!inline.columns[1].nullable);

    let (message, pos) = plan_error("CREATE TABLE t (a INT, PRIMARY KEY (a))");
    assert!(message.contains("NOT ENFORCED"), "{message}");
    assert_eq!(
        pos,
        Pos {
            line: 1,
            column: 39
        }
    );

    let (message, pos) = plan_error("CREATE TABLE t (a INT, PRIMARY KEY (zz) NOT ENFORCED)");
    assert!(message.contains("'zz'"), "{message}");
    assert_eq!(
        pos,
        Pos {
            line: 1,
            column: 37
        }
    );
}

#[test]
fn if_not_exists_and_temporary() {
    let table =
        create("CREATE TEMPORARY TABLE IF NOT EXISTS t (a INT) WITH ('connector' = 'print')")
            .expect("parses");
    assert!(table.if_not_exists);
    assert_eq!(
        table.name_pos,
        Pos {
            line: 1,
            column: 38
        }
    );
    assert_eq!(table.def.connector(), "print");
}

#[test]
fn unsupported_type_names_type_and_position() {
    let (message, pos) = plan_error("CREATE TABLE t (\n  a INT,\n  price DECIMAL(10, 2)\n)");
    assert!(message.contains("DECIMAL(10,2)"), "{message}");
    assert!(message.contains("'price'"), "{message}");
    assert_eq!(pos, Pos { line: 3, column: 9 });

    let (message, pos) = plan_error("CREATE TABLE t (tags ARRAY<STRING>)");
    assert!(message.contains("ARRAY"), "{message}");
    assert_eq!(
        pos,
        Pos {
            line: 1,
            column: 22
        }
    );

    let (message, _) = plan_error("CREATE TABLE t (ts TIMESTAMP(6))");
    assert!(message.contains("TIMESTAMP(6)"), "{message}");
}

#[test]
fn duplicate_column_is_an_error() {
    let (message, pos) = plan_error("CREATE TABLE t (a INT,\n A BIGINT)");
    assert!(message.contains("duplicate column 'A'"), "{message}");
    assert!(message.contains("line 1, column 17"), "{message}");
    assert_eq!(pos, Pos { line: 2, column: 2 });
}

#[test]
fn watermark_errors() {
    let (message, pos) = plan_error("CREATE TABLE t (ts TIMESTAMP(3), WATERMARK FOR nope AS nope)");
    assert!(message.contains("'nope'"), "{message}");
    assert_eq!(
        pos,
        Pos {
            line: 1,
            column: 48
        }
    );

    let (message, pos) = plan_error("CREATE TABLE t (ts BIGINT, WATERMARK FOR ts AS ts)");
    assert!(
        message.contains("TIMESTAMP(3)") && message.contains("BIGINT"),
        "{message}"
    );
    assert_eq!(
        pos,
        Pos {
            line: 1,
            column: 42
        }
    );

    let (message, pos) =
        plan_error("CREATE TABLE t (ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' YEAR)");
    assert!(message.contains("YEAR"), "{message}");
    assert_eq!(pos.line, 1);

    let (message, _) = plan_error(
        "CREATE TABLE t (ts TIMESTAMP(3), WATERMARK FOR ts AS ts + INTERVAL '1' SECOND)",
    );
    assert!(
        message.contains("WATERMARK expression must be"),
        "{message}"
    );

    let (message, _) = plan_error(
        "CREATE TABLE t (ts TIMESTAMP(3), u TIMESTAMP(3), WATERMARK FOR ts AS u - INTERVAL '1' SECOND)",
    );
    assert!(message.contains("'u'"), "{message}");

    let (message, pos) = plan_error(
        "CREATE TABLE t (ts TIMESTAMP(3), WATERMARK FOR ts AS ts, WATERMARK FOR ts AS ts)",
    );
    assert!(message.contains("more than one WATERMARK"), "{message}");
    assert_eq!(
        pos,
        Pos {
            line: 1,
            column: 58
        }
    );
}

#[test]
fn option_errors() {
    let (message, pos) = plan_error("CREATE TABLE t (a INT) WITH ('k' = 'v', 'k' = 'w')");
    assert!(message.contains("'k' is given twice"), "{message}");
    assert_eq!(
        pos,
        Pos {
            line: 1,
            column: 41
        }
    );

    let (message, pos) = plan_error("CREATE TABLE t (a INT) WITH (connector = 'kafka')");
    assert!(message.contains("quoted option key"), "{message}");
    assert_eq!(
        pos,
        Pos {
            line: 1,
            column: 30
        }
    );
}

proptest::proptest! {
    /// Any set of distinct column names and supported types parses back as declared.
    #[test]
    fn declared_columns_round_trip(
        columns in proptest::collection::btree_map("[a-z][a-z0-9_]{0,8}", 0usize..7, 1..12)
    ) {
        let types = [
            ("STRING", ColumnType::String),
            ("BOOLEAN", ColumnType::Boolean),
            ("INT", ColumnType::Int),
            ("BIGINT", ColumnType::BigInt),
            ("FLOAT", ColumnType::Float),
            ("DOUBLE", ColumnType::Double),
            ("TIMESTAMP(3)", ColumnType::Timestamp),
        ];
        let list: Vec<String> = columns
            .iter()
            .map(|(name, t)| format!("`{name}` {}", types[*t].0))
            .collect();
        let sql = format!("CREATE TABLE t ({}) WITH ('connector' = 'print')", list.join(", "));
        let table = create(&sql).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?.def;
        let parsed: Vec<(String, ColumnType)> = table.columns.iter().map(|c| (c.name.clone(), c.ty)).collect();
        let expected: Vec<(String, ColumnType)> = columns.iter().map(|(n, t)| (n.clone(), types[*t].1)).collect();
        proptest::prop_assert_eq!(parsed, expected);
    }
}

#[test]
fn syntax_errors_keep_positions() {
    let (message, pos) = plan_error("CREATE TABLE t (a INT b INT)");
    assert!(message.starts_with("syntax error"), "{message}");
    assert_eq!(
        pos,
        Pos {
            line: 1,
            column: 23
        }
    );

    let (message, pos) = plan_error("CREATE TABLE t (a INT");
    assert!(message.contains("EOF"), "{message}");
    assert_eq!(
        pos,
        Pos {
            line: 1,
            column: 22
        }
    );

    let (message, _) = plan_error("CREATE TABLE db.t (a INT)");
    assert!(message.contains("qualified"), "{message}");

    let (message, _) = plan_error("CREATE VIEW v AS SELECT 1");
    assert!(message.contains("only CREATE TABLE"), "{message}");
}

#[test]
fn proctime_column() {
    let sql = "CREATE TABLE bid (bidder BIGINT, ts TIMESTAMP(3),\n  p_time AS PROCTIME() COMMENT 'wall clock',\n  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)";
    let table = create(sql).expect("parses").def;
    let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["bidder", "ts", "p_time"]);
    assert_eq!(table.columns[2].ty, ColumnType::ProcTime);
    assert!(!table.columns[2].nullable);
    assert_eq!(table.proctime_column(), Some(2));
    assert_eq!(
        table.watermark,
        Some(WatermarkSpec {
            column: 1,
            bound_ms: 1_000
        })
    );
    let schema = table.schema();
    assert!(crate::proctime::is_proctime_field(schema.field(2)));
    assert!(!crate::proctime::is_proctime_field(schema.field(1)));
    assert_eq!(
        schema.field(2).data_type(),
        &ColumnType::Timestamp.to_arrow()
    );

    let lower = create("CREATE TABLE t (a INT, pt AS proctime())")
        .expect("parses")
        .def;
    assert_eq!(lower.proctime_column(), Some(1));
    let none = create("CREATE TABLE t (a INT)").expect("parses").def;
    assert_eq!(none.proctime_column(), None);
}

#[test]
fn proctime_errors() {
    let (message, pos) = plan_error("CREATE TABLE t (a INT, p AS PROCTIME(1))");
    assert!(
        message.contains("PROCTIME() takes no arguments"),
        "{message}"
    );
    assert_eq!(
        pos,
        Pos {
            line: 1,
            column: 29
        }
    );

    let (message, pos) = plan_error("CREATE TABLE t (a INT, b AS a + 1)");
    assert!(
        message.contains("computed column 'b' is not supported yet")
            && message.contains("'b AS PROCTIME()'"),
        "{message}"
    );
    assert_eq!(
        pos,
        Pos {
            line: 1,
            column: 29
        }
    );
    let (message, _) = plan_error("CREATE TABLE t (a INT, b AS PROCTIME)");
    assert!(message.contains("computed column 'b'"), "{message}");
    let (message, _) = plan_error("CREATE TABLE t (a INT, b AS NOW())");
    assert!(message.contains("computed column 'b'"), "{message}");

    let (message, pos) = plan_error("CREATE TABLE t (a INT, p AS PROCTIME(),\n q AS PROCTIME())");
    assert!(
        message.contains("more than one PROCTIME() column ('p' and 'q')"),
        "{message}"
    );
    assert_eq!(pos, Pos { line: 2, column: 2 });

    let (message, pos) =
        plan_error("CREATE TABLE t (a INT, p AS PROCTIME(), WATERMARK FOR p AS p)");
    assert!(
        message.contains("WATERMARK FOR 'p': a processing-time column"),
        "{message}"
    );
    assert_eq!(
        pos,
        Pos {
            line: 1,
            column: 55
        }
    );

    let (message, _) = plan_error("CREATE TABLE t (a INT, a AS PROCTIME())");
    assert!(message.contains("duplicate column 'a'"), "{message}");
}
