//! Tests of `crate::expr` (expression evaluation over Arrow batches).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use proptest::prelude::*;

use super::{evaluate_predicate, filter_batch};
use crate::error::EngineError;
use crate::plan::{BinaryOp, Expr, Literal, UnaryOp};

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

/// a BIGINT, b DOUBLE, s STRING, ts TIMESTAMP(3), i INT; row 2 is mostly NULL.
fn batch() -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("a", DataType::Int64, true),
        Field::new("b", DataType::Float64, true),
        Field::new("s", DataType::Utf8, true),
        Field::new("ts", ts_type(), true),
        Field::new("i", DataType::Int32, true),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![Some(1), Some(2), None, Some(0)])),
        Arc::new(Float64Array::from(vec![
            Some(0.5),
            None,
            Some(2.0),
            Some(8.0),
        ])),
        Arc::new(StringArray::from(vec![
            Some("x"),
            Some("y"),
            None,
            Some("x"),
        ])),
        Arc::new(TimestampMillisecondArray::from(vec![
            Some(1_000),
            Some(2_000),
            None,
            Some(4_000),
        ])),
        Arc::new(Int32Array::from(vec![
            Some(i32::MAX),
            Some(1),
            Some(2),
            None,
        ])),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).expect("valid batch")
}

fn col(name: &str) -> Expr {
    let b = batch();
    let index = b.schema().index_of(name).expect("known column");
    Expr::Column {
        index,
        name: name.to_string(),
        data_type: b.schema().field(index).data_type().clone(),
    }
}

fn lit(l: Literal) -> Expr {
    Expr::Literal(l)
}

fn bin(op: BinaryOp, left: Expr, right: Expr) -> Expr {
    let data_type = match op {
        BinaryOp::Plus
        | BinaryOp::Minus
        | BinaryOp::Multiply
        | BinaryOp::Divide
        | BinaryOp::Modulo => left.data_type(),
        _ => DataType::Boolean,
    };
    Expr::Binary {
        op,
        left: Box::new(left),
        right: Box::new(right),
        data_type,
    }
}

fn int64s(array: &ArrayRef) -> Vec<Option<i64>> {
    let a = array.as_any().downcast_ref::<Int64Array>().expect("Int64");
    a.iter().collect()
}

fn float64s(array: &ArrayRef) -> Vec<Option<f64>> {
    let a = array
        .as_any()
        .downcast_ref::<Float64Array>()
        .expect("Float64");
    a.iter().collect()
}

fn bools(array: &ArrayRef) -> Vec<Option<bool>> {
    let a = array
        .as_any()
        .downcast_ref::<BooleanArray>()
        .expect("Boolean");
    a.iter().collect()
}

fn strings(array: &ArrayRef) -> Vec<Option<String>> {
    let a = array.as_any().downcast_ref::<StringArray>().expect("Utf8");
    a.iter().map(|v| v.map(str::to_string)).collect()
}

fn eval(e: &Expr) -> ArrayRef {
    let out = e.evaluate(&batch()).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(out.len(), 4);
    assert_eq!(
        out.data_type(),
        &e.data_type(),
        "evaluated type = declared type"
    );
    out
}

fn eval_error(e: &Expr) -> String {
    match e.evaluate(&batch()) {
        Err(EngineError::Eval(message)) => message,
        other => panic!("expected an evaluation error, got {other:?}"),
    }
}

#[test]
fn columns_and_literals() {
    assert_eq!(int64s(&eval(&col("a"))), [Some(1), Some(2), None, Some(0)]);
    // A literal alone fills every row.
    assert_eq!(int64s(&eval(&lit(Literal::Int64(7)))), [Some(7); 4]);
    assert_eq!(
        strings(&eval(&lit(Literal::Utf8("k".into())))),
        vec![Some("k".to_string()); 4]
    );
    let null = eval(&lit(Literal::Null(DataType::Float64)));
    assert_eq!(null.null_count(), 4);
    // Literal-only arithmetic is computed once and expanded.
    let sum = bin(
        BinaryOp::Plus,
        lit(Literal::Int64(1)),
        lit(Literal::Int64(2)),
    );
    assert_eq!(int64s(&eval(&sum)), [Some(3); 4]);
}

#[test]
fn arithmetic_with_nulls() {
    let plus = bin(BinaryOp::Plus, col("a"), lit(Literal::Int64(10)));
    assert_eq!(int64s(&eval(&plus)), [Some(11), Some(12), None, Some(10)]);
    let times = bin(BinaryOp::Multiply, col("b"), lit(Literal::Float64(2.0)));
    assert_eq!(
        float64s(&eval(&times)),
        [Some(1.0), None, Some(4.0), Some(16.0)]
    );
    // Integer division truncates; modulo keeps the sign of the dividend.
    let seven = bin(BinaryOp::Minus, col("a"), lit(Literal::Int64(8)));
    let div = bin(BinaryOp::Divide, seven.clone(), lit(Literal::Int64(2)));
    assert_eq!(int64s(&eval(&div)), [Some(-3), Some(-3), None, Some(-4)]);
    let rem = bin(BinaryOp::Modulo, seven, lit(Literal::Int64(3)));
    assert_eq!(int64s(&eval(&rem)), [Some(-1), Some(0), None, Some(-2)]);
    let negate = Expr::Unary {
        op: UnaryOp::Negate,
        expr: Box::new(col("a")),
    };
    assert_eq!(int64s(&eval(&negate)), [Some(-1), Some(-2), None, Some(0)]);
}

#[test]
fn overflow_and_division_by_zero_are_errors_naming_the_operator() {
    let overflow = bin(BinaryOp::Plus, col("i"), lit(Literal::Int32(1)));
    let message = eval_error(&overflow);
    assert!(
        message.contains("'+'") && message.contains("verflow"),
        "{message}"
    );

    let product = bin(BinaryOp::Multiply, col("i"), lit(Literal::Int32(2)));
    assert!(eval_error(&product).contains("'*'"));

    let divide = bin(BinaryOp::Divide, lit(Literal::Int64(1)), col("a"));
    let message = eval_error(&divide);
    assert!(
        message.contains("'/'") && message.contains("ivide by zero"),
        "{message}"
    );

    let modulo = bin(BinaryOp::Modulo, col("a"), lit(Literal::Int64(0)));
    assert!(eval_error(&modulo).contains("'%'"));

    let negate = Expr::Unary {
        op: UnaryOp::Negate,
        expr: Box::new(lit(Literal::Int32(i32::MIN))),
    };
    assert!(eval_error(&negate).contains("unary -"));
}

#[test]
fn comparisons_logic_and_null_tests() {
    let gt = bin(BinaryOp::Gt, col("a"), lit(Literal::Int64(1)));
    assert_eq!(
        bools(&eval(&gt)),
        [Some(false), Some(true), None, Some(false)]
    );
    let eq = bin(BinaryOp::Eq, col("s"), lit(Literal::Utf8("x".into())));
    assert_eq!(
        bools(&eval(&eq)),
        [Some(true), Some(false), None, Some(true)]
    );
    let b_big = bin(BinaryOp::GtEq, col("b"), lit(Literal::Float64(2.0)));
    // Three-valued logic: NULL AND FALSE = FALSE, NULL OR TRUE = TRUE.
    let and = bin(BinaryOp::And, gt.clone(), b_big.clone());
    assert_eq!(bools(&eval(&and)), [Some(false), None, None, Some(false)]);
    let or = bin(BinaryOp::Or, gt.clone(), b_big);
    assert_eq!(
        bools(&eval(&or)),
        [Some(false), Some(true), Some(true), Some(true)]
    );
    let not = Expr::Unary {
        op: UnaryOp::Not,
        expr: Box::new(gt),
    };
    assert_eq!(
        bools(&eval(&not)),
        [Some(true), Some(false), None, Some(true)]
    );
    let is_null = Expr::IsNull {
        expr: Box::new(col("s")),
        negated: false,
    };
    assert_eq!(
        bools(&eval(&is_null)),
        [Some(false), Some(false), Some(true), Some(false)]
    );
    let not_null = Expr::IsNull {
        expr: Box::new(col("b")),
        negated: true,
    };
    assert_eq!(
        bools(&eval(&not_null)),
        [Some(true), Some(false), Some(true), Some(true)]
    );
}

#[test]
fn and_or_skip_rows_already_decided() {
    // a <> 0 AND 10 / a > 1: row 3 has a = 0, which must not be divided by.
    let nonzero = bin(BinaryOp::NotEq, col("a"), lit(Literal::Int64(0)));
    let ratio = bin(BinaryOp::Divide, lit(Literal::Int64(10)), col("a"));
    let big = bin(BinaryOp::Gt, ratio, lit(Literal::Int64(1)));
    let and = bin(BinaryOp::And, nonzero.clone(), big.clone());
    assert_eq!(
        bools(&eval(&and)),
        [Some(true), Some(true), None, Some(false)]
    );
    // a = 0 OR 10 / a > 1
    let zero = bin(BinaryOp::Eq, col("a"), lit(Literal::Int64(0)));
    let or = bin(BinaryOp::Or, zero, big.clone());
    assert_eq!(
        bools(&eval(&or)),
        [Some(true), Some(true), None, Some(true)]
    );
    // Without the guard the division fails.
    assert!(eval_error(&big).contains("'/'"));
}

#[test]
fn case_picks_the_first_true_branch_and_evaluates_only_its_rows() {
    // CASE WHEN a = 0 THEN 0 WHEN a > 1 THEN 100 / a ELSE a END
    let zero = bin(BinaryOp::Eq, col("a"), lit(Literal::Int64(0)));
    let big = bin(BinaryOp::Gt, col("a"), lit(Literal::Int64(1)));
    let ratio = bin(BinaryOp::Divide, lit(Literal::Int64(100)), col("a"));
    let case = Expr::Case {
        branches: vec![(zero.clone(), lit(Literal::Int64(0))), (big, ratio)],
        otherwise: Some(Box::new(col("a"))),
        data_type: DataType::Int64,
    };
    // Row 2: a is NULL, both conditions are NULL (not true), so ELSE a = NULL.
    assert_eq!(int64s(&eval(&case)), [Some(1), Some(50), None, Some(0)]);

    // Without ELSE, unmatched rows are NULL.
    let no_else = Expr::Case {
        branches: vec![(zero, lit(Literal::Utf8("zero".into())))],
        otherwise: None,
        data_type: DataType::Utf8,
    };
    assert_eq!(
        strings(&eval(&no_else)),
        [None, None, None, Some("zero".to_string())]
    );

    // A branch no row takes is never evaluated (it would divide by zero).
    let never = Expr::Case {
        branches: vec![
            (lit(Literal::Boolean(true)), lit(Literal::Int64(5))),
            (
                lit(Literal::Boolean(true)),
                bin(
                    BinaryOp::Divide,
                    lit(Literal::Int64(1)),
                    lit(Literal::Int64(0)),
                ),
            ),
        ],
        otherwise: None,
        data_type: DataType::Int64,
    };
    assert_eq!(int64s(&eval(&never)), [Some(5); 4]);
}

#[test]
fn casts() {
    let to_double = Expr::Cast {
        expr: Box::new(col("a")),
        to: DataType::Float64,
    };
    assert_eq!(
        float64s(&eval(&to_double)),
        [Some(1.0), Some(2.0), None, Some(0.0)]
    );
    let parse = Expr::Cast {
        expr: Box::new(lit(Literal::Utf8("42".into()))),
        to: DataType::Int64,
    };
    assert_eq!(int64s(&eval(&parse)), [Some(42); 4]);
    let bad = Expr::Cast {
        expr: Box::new(col("s")),
        to: DataType::Int64,
    };
    let message = eval_error(&bad);
    assert!(message.contains("CAST from STRING to BIGINT"), "{message}");
    let text = Expr::Cast {
        expr: Box::new(col("ts")),
        to: DataType::Utf8,
    };
    assert_eq!(
        strings(&eval(&text))[0].as_deref(),
        Some("1970-01-01 00:00:01.000")
    );
    let narrow = Expr::Cast {
        expr: Box::new(lit(Literal::Float64(1e20))),
        to: DataType::Int32,
    };
    assert!(eval_error(&narrow).contains("CAST from DOUBLE to INT"));
}

#[test]
fn timestamp_arithmetic_and_comparison() {
    let shifted = Expr::Binary {
        op: BinaryOp::Plus,
        left: Box::new(col("ts")),
        right: Box::new(lit(Literal::Int64(500))),
        data_type: ts_type(),
    };
    let out = eval(&shifted);
    let out = out
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .expect("timestamps");
    assert_eq!(
        out.iter().collect::<Vec<_>>(),
        [Some(1_500), Some(2_500), None, Some(4_500)]
    );
    let back = Expr::Binary {
        op: BinaryOp::Minus,
        left: Box::new(col("ts")),
        right: Box::new(lit(Literal::Int64(1_000))),
        data_type: ts_type(),
    };
    let after = bin(BinaryOp::Gt, back, lit(Literal::TimestampMs(1_000)));
    assert_eq!(
        bools(&eval(&after)),
        [Some(false), Some(false), None, Some(true)]
    );
}

#[test]
fn predicates_treat_null_as_false_and_filter() {
    let gt = bin(BinaryOp::Gt, col("b"), lit(Literal::Float64(1.0)));
    let mask = evaluate_predicate(&gt, &batch()).expect("predicate");
    assert_eq!(mask.null_count(), 0);
    assert_eq!(
        mask.iter().collect::<Vec<_>>(),
        [Some(false), Some(false), Some(true), Some(true)]
    );
    let kept = filter_batch(&batch(), &mask).expect("filter");
    assert_eq!(kept.num_rows(), 2);
    assert_eq!(int64s(kept.column(0)), [None, Some(0)]);

    let not_boolean = evaluate_predicate(&col("a"), &batch());
    assert!(matches!(not_boolean, Err(EngineError::Internal(_))));
    let short = BooleanArray::from(vec![true]);
    assert!(matches!(
        filter_batch(&batch(), &short),
        Err(EngineError::Internal(_))
    ));
}

#[test]
fn plan_and_batch_disagreeing_is_an_internal_error() {
    let wrong_type = Expr::Column {
        index: 0,
        name: "a".into(),
        data_type: DataType::Utf8,
    };
    assert!(matches!(
        wrong_type.evaluate(&batch()),
        Err(EngineError::Internal(_))
    ));
    let missing = Expr::Column {
        index: 9,
        name: "z".into(),
        data_type: DataType::Utf8,
    };
    assert!(matches!(
        missing.evaluate(&batch()),
        Err(EngineError::Internal(_))
    ));
}

#[test]
fn planned_sql_evaluates_end_to_end() {
    let sql = "CREATE TABLE t (a BIGINT, b DOUBLE, s STRING, ts TIMESTAMP(3), i INT);
SELECT a * 2 + i, CASE WHEN s IN ('x', 'z') THEN b ELSE -1 END, ts + INTERVAL '1' SECOND
FROM t WHERE ts >= '1970-01-01 00:00:02' OR a BETWEEN 1 AND 1";
    let program = crate::sql::parse_program(sql).expect("plans");
    let pipeline = &program.pipelines[0];
    let input = batch();
    let mask = evaluate_predicate(pipeline.filter.as_ref().expect("filter"), &input).expect("mask");
    let rows = filter_batch(&input, &mask).expect("filtered");
    // Rows 0 (a = 1), 1 and 3 (ts >= 2 s); row 2 has a NULL ts and a NULL a.
    assert_eq!(rows.num_rows(), 3);
    let outputs: Vec<ArrayRef> = pipeline
        .projection
        .iter()
        .map(|e| e.evaluate(&rows))
        .collect::<Result<_, _>>()
        .expect("projection");
    assert_eq!(
        int64s(&outputs[0]),
        [Some(2 + i64::from(i32::MAX)), Some(5), None]
    );
    assert_eq!(float64s(&outputs[1]), [Some(0.5), Some(-1.0), Some(8.0)]);
    let shifted = outputs[2]
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .expect("timestamps");
    assert_eq!(
        shifted.iter().collect::<Vec<_>>(),
        [Some(2_000), Some(3_000), Some(5_000)]
    );
    let types: Vec<&DataType> = outputs.iter().map(|o| o.data_type()).collect();
    let schema_types: Vec<&DataType> = pipeline
        .output_schema
        .fields()
        .iter()
        .map(|f| f.data_type())
        .collect();
    assert_eq!(types, schema_types);
}

proptest! {
    #[test]
    fn arithmetic_matches_checked_integer_math(values in prop::collection::vec(prop::option::of(-1_000_000i64..1_000_000), 0..50), k in -1000i64..1000) {
        let n = values.len();
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let input = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.clone())) as ArrayRef]).expect("batch");
        let v = Expr::Column { index: 0, name: "v".into(), data_type: DataType::Int64 };
        // v * k - v % 7 > k  (as a filter)
        let e = bin(BinaryOp::Minus, bin(BinaryOp::Multiply, v.clone(), lit(Literal::Int64(k))), bin(BinaryOp::Modulo, v, lit(Literal::Int64(7))));
        let out = e.evaluate(&input).expect("no overflow in this range");
        let expected: Vec<Option<i64>> = values.iter().map(|x| x.map(|x| x * k - x % 7)).collect();
        prop_assert_eq!(int64s(&out), expected.clone());
        let predicate = bin(BinaryOp::Gt, e, lit(Literal::Int64(k)));
        let mask = evaluate_predicate(&predicate, &input).expect("mask");
        let kept = filter_batch(&input, &mask).expect("filter");
        let expected_rows = expected.iter().filter(|x| matches!(x, Some(y) if *y > k)).count();
        prop_assert_eq!(kept.num_rows(), expected_rows);
        prop_assert!(kept.num_rows() <= n);
    }
}
