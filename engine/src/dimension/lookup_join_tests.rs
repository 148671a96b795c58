//! Tests of the join operator.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Float64Array, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

use super::*;
use crate::dimension::dimension_table::DimensionLimits;
use crate::dimension::row_store::RowStore;
use crate::plan::Expr;

fn dimension_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, true),
    ]))
}

fn stream_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, true),
        Field::new("price", DataType::Float64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]))
}

fn plan(kind: JoinKind, temporal: bool) -> JoinPlan {
    JoinPlan {
        dimension: "securities".into(),
        qualifier: "s".into(),
        kind,
        version_time_column: temporal.then_some(2),
        probe_keys: vec![Expr::Column {
            index: 0,
            name: "symbol".into(),
            data_type: DataType::Utf8,
        }],
        source_columns: 3,
    }
}

/// A table with (id, name, valid from) rows applied in order.
fn table(rows: &[(&str, &str, i64)], versioned: bool) -> DimensionTable {
    let store = RowStore::new(dimension_schema()).expect("store");
    let limits = DimensionLimits {
        rows_max: 100,
        bytes_max: 1 << 30,
    };
    let mut t = DimensionTable::new("securities", store, limits, versioned);
    let ids: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let names: Vec<&str> = rows.iter().map(|r| r.1).collect();
    let batch = RecordBatch::try_new(
        dimension_schema(),
        vec![
            Arc::new(StringArray::from(ids.clone())),
            Arc::new(StringArray::from(names)),
        ],
    )
    .expect("batch");
    let codec = KeyCodec::new(&[DataType::Utf8]).expect("codec");
    let keys = codec
        .encode(&[Arc::new(StringArray::from(ids)) as ArrayRef])
        .expect("keys");
    let segment = t.store.append(batch).expect("append");
    for (i, r) in rows.iter().enumerate() {
        let key = keys.key(i).expect("key");
        t.upsert(
            key,
            RowRef {
                segment,
                row: i as u32,
            },
            r.2,
        );
    }
    t
}

fn stream(symbols: &[Option<&str>], ts: &[i64]) -> RecordBatch {
    RecordBatch::try_new(
        stream_schema(),
        vec![
            Arc::new(StringArray::from(symbols.to_vec())),
            Arc::new(Float64Array::from(
                (0..symbols.len()).map(|i| i as f64).collect::<Vec<_>>(),
            )),
            Arc::new(TimestampMillisecondArray::from(ts.to_vec())),
        ],
    )
    .expect("stream batch")
}

fn names(batch: &RecordBatch) -> Vec<Option<String>> {
    let c = batch.column(4).as_string::<i32>();
    (0..c.len())
        .map(|i| c.is_valid(i).then(|| c.value(i).to_string()))
        .collect()
}

#[test]
fn left_join_keeps_misses_with_nulls() {
    let t = table(&[("AAPL", "Apple", 0), ("MSFT", "Microsoft", 0)], false);
    let mut join = LookupJoin::new(
        &plan(JoinKind::Left, false),
        &stream_schema(),
        &dimension_schema(),
    )
    .expect("join");
    let batch = stream(
        &[Some("MSFT"), Some("IBM"), None, Some("AAPL")],
        &[0, 0, 0, 0],
    );
    let out = join.apply(&batch, &t).expect("apply");
    assert_eq!(out.num_columns(), 5);
    assert_eq!(
        names(&out),
        vec![Some("Microsoft".into()), None, None, Some("Apple".into())]
    );
    let ids = out.column(3).as_string::<i32>();
    assert!(ids.is_null(1));
    assert_eq!(
        out.column(1)
            .as_primitive::<arrow::datatypes::Float64Type>()
            .value(3),
        3.0
    );
    assert_eq!(join.stats().rows_in, 4);
    assert_eq!(join.stats().rows_matched, 2);
    assert!(
        out.schema().field(3).is_nullable(),
        "dimension columns are nullable"
    );
}

#[test]
fn inner_join_drops_misses_and_keeps_stream_columns_aligned() {
    let t = table(&[("AAPL", "Apple", 0)], false);
    let mut join = LookupJoin::new(
        &plan(JoinKind::Inner, false),
        &stream_schema(),
        &dimension_schema(),
    )
    .expect("join");
    let batch = stream(
        &[Some("IBM"), Some("AAPL"), Some("X"), Some("AAPL")],
        &[0; 4],
    );
    let out = join.apply(&batch, &t).expect("apply");
    assert_eq!(out.num_rows(), 2);
    let prices = out
        .column(1)
        .as_primitive::<arrow::datatypes::Float64Type>();
    assert_eq!((prices.value(0), prices.value(1)), (1.0, 3.0));
    assert_eq!(
        names(&out),
        vec![Some("Apple".into()), Some("Apple".into())]
    );
    let none = join
        .apply(&stream(&[Some("IBM")], &[0]), &t)
        .expect("apply");
    assert_eq!(none.num_rows(), 0);
}

#[test]
fn temporal_join_uses_each_row_event_time() {
    let t = table(
        &[("AAPL", "Apple v1", 100), ("AAPL", "Apple v2", 200)],
        true,
    );
    let mut join = LookupJoin::new(
        &plan(JoinKind::Left, true),
        &stream_schema(),
        &dimension_schema(),
    )
    .expect("join");
    let batch = stream(&[Some("AAPL"); 4], &[50, 100, 199, 250]);
    let out = join.apply(&batch, &t).expect("apply");
    assert_eq!(
        names(&out),
        vec![
            None,
            Some("Apple v1".into()),
            Some("Apple v1".into()),
            Some("Apple v2".into())
        ]
    );
}

#[test]
fn a_plan_over_another_stream_is_a_bug_report() {
    let mut p = plan(JoinKind::Left, false);
    p.source_columns = 7;
    let e = LookupJoin::new(&p, &stream_schema(), &dimension_schema())
        .err()
        .expect("refused");
    assert!(e.to_string().contains("7 stream columns"), "{e}");
}
