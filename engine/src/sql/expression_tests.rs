//! End-to-end tests of expressions in SQL: literals, operators, types, casts, names, and
//! the projection onto the sink's columns.

use arrow::datatypes::DataType;

use super::explain_expr;
use super::tests::{assert_error, column, error, pipeline, pos_in, ts_type};
use crate::plan::{BinaryOp, Expr, Literal};

/// The single projected expression of `SELECT <expr> FROM trades`.
fn select_expr(expr: &str) -> Expr {
    let mut p = pipeline(&format!("SELECT {expr} FROM trades"));
    assert_eq!(p.projection.len(), 1);
    p.projection.remove(0)
}

#[test]
fn literal_types_follow_flink() {
    assert_eq!(select_expr("1"), Expr::Literal(Literal::Int32(1)));
    assert_eq!(
        select_expr("3000000000"),
        Expr::Literal(Literal::Int64(3_000_000_000))
    );
    assert_eq!(
        select_expr("-2147483648"),
        Expr::Literal(Literal::Int32(i32::MIN))
    );
    assert_eq!(select_expr("1.5"), Expr::Literal(Literal::Float64(1.5)));
    assert_eq!(select_expr("1e3"), Expr::Literal(Literal::Float64(1000.0)));
    assert_eq!(
        select_expr("'a''b'"),
        Expr::Literal(Literal::Utf8("a'b".into()))
    );
    assert_eq!(select_expr("TRUE"), Expr::Literal(Literal::Boolean(true)));
    assert_eq!(
        select_expr("TIMESTAMP '2024-01-01 00:00:00.250'"),
        Expr::Literal(Literal::TimestampMs(1_704_067_200_250))
    );
    assert_eq!(
        select_expr("CAST(NULL AS INT)"),
        Expr::Literal(Literal::Null(DataType::Int32))
    );
    assert_error(
        "SELECT 99999999999999999999 FROM trades",
        "out of range for BIGINT",
        "99999999999999999999",
    );
    assert_error(
        "SELECT TIMESTAMP 'not a time' FROM trades",
        "not a valid TIMESTAMP(3) literal",
        "'not a time'",
    );
    assert_error("SELECT NULL FROM trades", "cannot infer the type", "NULL");
}

#[test]
fn arithmetic_widens_numbers() {
    let e = select_expr("volume + 1");
    assert_eq!(e.data_type(), DataType::Int64);
    assert_eq!(explain_expr(&e), "volume + 1");
    assert!(
        matches!(&e, Expr::Binary { right, .. } if **right == Expr::Literal(Literal::Int64(1)))
    );

    let e = select_expr("price + volume");
    assert_eq!(e.data_type(), DataType::Float64);
    assert_eq!(explain_expr(&e), "price + CAST(volume AS DOUBLE)");

    // Integer division and modulo stay integers (Flink).
    assert_eq!(select_expr("volume / 2").data_type(), DataType::Int64);
    assert_eq!(select_expr("volume % 7").data_type(), DataType::Int64);
    assert_eq!(explain_expr(&select_expr("-(volume * 2)")), "-(volume * 2)");
    assert_eq!(
        explain_expr(&select_expr("(price - 1) * 2")),
        "(price - 1.0) * 2.0"
    );

    assert_error(
        "SELECT symbol + 1 FROM trades",
        "operator + needs numbers, found STRING and INT",
        "symbol + 1",
    );
    // sqlparser's span of `-x` starts at `x`.
    assert_error(
        "SELECT -symbol FROM trades",
        "unary minus needs a number",
        "symbol FROM",
    );
}

#[test]
fn comparisons_and_logic() {
    let e = select_expr("price > 1 AND NOT symbol = 'X' OR volume IS NULL");
    assert_eq!(e.data_type(), DataType::Boolean);
    assert_eq!(
        explain_expr(&e),
        "price > 1.0 AND NOT symbol = 'X' OR volume IS NULL"
    );
    assert_eq!(
        explain_expr(&select_expr("price BETWEEN 1 AND 2")),
        "price >= 1.0 AND price <= 2.0"
    );
    assert_eq!(
        explain_expr(&select_expr("price NOT BETWEEN 1 AND 2")),
        "price < 1.0 OR price > 2.0"
    );
    assert_eq!(
        explain_expr(&select_expr("symbol IN ('A', 'B', 'C')")),
        "symbol = 'A' OR symbol = 'B' OR symbol = 'C'"
    );
    assert_eq!(
        explain_expr(&select_expr("volume NOT IN (1, 2)")),
        "volume <> 1 AND volume <> 2"
    );
    assert_eq!(
        explain_expr(&select_expr("symbol IS NOT NULL")),
        "symbol IS NOT NULL"
    );
    assert_error(
        "SELECT * FROM trades WHERE symbol = 1",
        "cannot compare STRING with INT",
        "symbol = 1",
    );
    assert_error(
        "SELECT * FROM trades WHERE volume IN (1, 'x')",
        "cannot compare BIGINT with STRING",
        "'x'",
    );
    assert_error(
        "SELECT * FROM trades WHERE price",
        "WHERE needs a BOOLEAN",
        "price",
    );
    assert_error(
        "SELECT * FROM trades WHERE price AND TRUE",
        "AND needs a BOOLEAN, found DOUBLE",
        "price AND",
    );
}

#[test]
fn timestamps_compare_with_strings_and_shift_by_intervals() {
    let p = pipeline("SELECT ts + INTERVAL '1' SECOND, ts - INTERVAL '0.5' SECOND FROM trades WHERE ts >= '2024-01-01 00:00:00'");
    assert_eq!(
        p.filter,
        Some(Expr::Binary {
            op: BinaryOp::GtEq,
            left: Box::new(column(3, "ts", ts_type())),
            right: Box::new(Expr::Literal(Literal::TimestampMs(1_704_067_200_000))),
            data_type: DataType::Boolean,
        })
    );
    assert_eq!(
        p.projection[0],
        Expr::Binary {
            op: BinaryOp::Plus,
            left: Box::new(column(3, "ts", ts_type())),
            right: Box::new(Expr::Literal(Literal::Int64(1_000))),
            data_type: ts_type(),
        }
    );
    assert_eq!(
        explain_expr(&p.projection[1]),
        "ts - INTERVAL '500' MILLISECOND"
    );
    assert_eq!(
        explain_expr(&select_expr("INTERVAL '2' MINUTE + ts")),
        "ts + INTERVAL '2' MINUTE"
    );
    assert_error(
        "SELECT price + INTERVAL '1' SECOND FROM trades",
        "INTERVAL arithmetic needs a TIMESTAMP, found DOUBLE",
        "price +",
    );
    assert_error(
        "SELECT INTERVAL '1' SECOND FROM trades",
        "INTERVAL values are only supported",
        "'1' SECOND",
    );
    assert_error(
        "SELECT * FROM trades WHERE ts > 'soon'",
        "cannot compare TIMESTAMP(3) with STRING",
        "ts > 'soon'",
    );
}

#[test]
fn case_and_cast() {
    let e = select_expr("CASE WHEN price > 1 THEN 1 WHEN price > 0 THEN volume ELSE 2.5 END");
    assert_eq!(e.data_type(), DataType::Float64);
    assert_eq!(
        explain_expr(&e),
        "CASE WHEN price > 1.0 THEN 1.0 WHEN price > 0.0 THEN CAST(volume AS DOUBLE) ELSE 2.5 END"
    );
    let e = select_expr("CASE symbol WHEN 'A' THEN 'first' END");
    assert_eq!(e.data_type(), DataType::Utf8);
    assert_eq!(explain_expr(&e), "CASE WHEN symbol = 'A' THEN 'first' END");
    assert_error(
        "SELECT CASE WHEN price > 1 THEN 'x' ELSE 1 END FROM trades",
        "CASE results have incompatible types STRING and INT",
        "CASE",
    );
    assert_error(
        "SELECT CASE WHEN price THEN 1 END FROM trades",
        "CASE WHEN needs a BOOLEAN, found DOUBLE",
        "price THEN",
    );

    let e = select_expr("CAST(price AS BIGINT)");
    assert_eq!(e.data_type(), DataType::Int64);
    assert_eq!(explain_expr(&e), "CAST(price AS BIGINT)");
    assert_eq!(
        select_expr("CAST(symbol AS VARCHAR(10))").data_type(),
        DataType::Utf8
    );
    assert_eq!(
        select_expr("CAST(ts AS STRING)").data_type(),
        DataType::Utf8
    );
    assert_error(
        "SELECT CAST(price AS DECIMAL(10, 2)) FROM trades",
        "DECIMAL(10,2) is not supported",
        "price AS",
    );
    assert_error(
        "SELECT TRY_CAST(price AS INT) FROM trades",
        "TRY_CAST",
        "price AS INT",
    );
}

#[test]
fn name_resolution_errors() {
    assert_error(
        "SELECT * FROM nope",
        "unknown table 'nope' (declared tables: trades)",
        "nope",
    );
    assert_error(
        "SELECT symbol,\n  pricee FROM trades",
        "unknown column 'pricee' (table 'trades' has: symbol, price, volume, ts)",
        "pricee",
    );
    assert_error(
        "SELECT x.price FROM trades AS t",
        "unknown table or alias 'x'",
        "x.price",
    );
    assert_error(
        "SELECT a.b.c FROM trades",
        "only `column` or `table.column`",
        "a.b.c",
    );
    let e = select_expr("trades.price");
    assert_eq!(e, column(1, "price", DataType::Float64));
}

#[test]
fn sink_columns_are_matched_by_position_and_type() {
    let sql = |select: &str| {
        format!("CREATE TABLE out (n BIGINT, d DOUBLE, ts TIMESTAMP(3)) WITH ('connector' = 'blackhole');\nINSERT INTO out {select}")
    };
    let widened = pipeline(&sql("SELECT 1, volume, '2024-01-01 00:00:00' FROM trades"));
    assert_eq!(
        widened.projection,
        vec![
            Expr::Literal(Literal::Int64(1)),
            Expr::Cast {
                expr: Box::new(column(2, "volume", DataType::Int64)),
                to: DataType::Float64
            },
            Expr::Literal(Literal::TimestampMs(1_704_067_200_000)),
        ]
    );
    assert_eq!(widened.sink, "out");
    let cast = pipeline(&sql("SELECT CAST(price AS INT), price, ts FROM trades"));
    assert_eq!(cast.projection[0].data_type(), DataType::Int64);
    assert_eq!(
        explain_expr(&cast.projection[0]),
        "CAST(CAST(price AS INT) AS BIGINT)"
    );

    assert_error(
        &sql("SELECT price, price, ts FROM trades"),
        "SELECT column 1 ('price') is DOUBLE, but column 'n' of table 'out' is BIGINT; write CAST",
        "price,",
    );
    assert_error(
        &sql("SELECT symbol, price, ts FROM trades"),
        "SELECT column 1 ('symbol') is STRING, but column 'n' of table 'out' is BIGINT",
        "symbol,",
    );
    assert_error(
        &sql("SELECT volume, price FROM trades"),
        "the SELECT has 2 columns but the sink table 'out' has 3 (n, d, ts)",
        "SELECT",
    );
    let twice =
        sql("SELECT volume, price, ts FROM trades;\nINSERT INTO out SELECT 1, 2, ts FROM trades");
    let (message, pos) = error(&twice);
    assert!(
        message.contains("only one INSERT INTO or SELECT per file is supported"),
        "{message}"
    );
    assert_eq!(pos, pos_in(&twice, "INSERT INTO out SELECT 1"));
    assert_error(
        "INSERT INTO nowhere SELECT * FROM trades",
        "unknown table 'nowhere'",
        "nowhere",
    );
    assert_error(
        &sql("").replace(
            "INSERT INTO out ",
            "INSERT INTO out (n) SELECT 1 FROM trades",
        ),
        "INSERT INTO t (columns) is not supported yet",
        "out (n)",
    );
}

proptest::proptest! {
    /// Integer literals are INT when they fit, else BIGINT, with the value written.
    #[test]
    fn integer_literals_keep_their_value(n in proptest::num::i64::ANY) {
        let expr = super::tests::pipeline(&format!("SELECT {n} FROM trades")).projection.remove(0);
        let expected = match i32::try_from(n) {
            Ok(small) => Literal::Int32(small),
            Err(_) => Literal::Int64(n),
        };
        proptest::prop_assert_eq!(expr, Expr::Literal(expected));
    }

    /// Whitespace and comments between tokens change neither the plan nor its success.
    #[test]
    fn layout_does_not_change_the_plan(separators in proptest::collection::vec(proptest::sample::select(vec![" ", "\n", "  -- note\n", " /* c */ ", "\t"]), 12)) {
        let words = ["SELECT", "symbol,", "SUM(volume)", "FROM", "TABLE(TUMBLE(TABLE", "trades,", "DESCRIPTOR(ts),", "INTERVAL", "'1'", "SECOND))", "GROUP BY", "symbol, window_start, window_end"];
        let mut text = String::new();
        for (word, separator) in words.iter().zip(&separators) {
            text.push_str(word);
            text.push_str(separator);
        }
        let laid_out = super::tests::pipeline(&text);
        let plain = super::tests::pipeline(&words.join(" "));
        proptest::prop_assert_eq!(laid_out.aggregation, plain.aggregation);
        proptest::prop_assert_eq!(laid_out.projection, plain.projection);
    }
}
