//! Tests of the join operator: windows close only when every shard's watermark passed
//! them, late rows are counted, and the state limits stop the job with a clear error.

use std::sync::{Arc, Mutex};

use arrow::array::{Int64Array, RecordBatch, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use super::*;
use crate::output_stage::OutputStage;
use crate::plan::{StreamJoinSide, WindowKind, WindowSpec};

/// A sink that keeps the rows it gets.
struct Collect(Arc<Mutex<Vec<RecordBatch>>>);

impl spillway_connectors::Sink for Collect {
    fn write(&mut self, batch: &RecordBatch) -> spillway_connectors::Result<()> {
        if let Ok(mut rows) = self.0.lock() {
            rows.push(batch.clone());
        }
        Ok(())
    }
    fn flush(&mut self) -> spillway_connectors::Result<()> {
        Ok(())
    }
    fn rows_written(&self) -> u64 {
        0
    }
}

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

fn column(index: usize, name: &str, data_type: DataType) -> Expr {
    Expr::Column {
        index,
        name: name.into(),
        data_type,
    }
}

/// A side with outputs (k BIGINT, window_end TIMESTAMP(3)).
fn side(table: &str) -> StreamJoinSide {
    StreamJoinSide {
        table: table.into(),
        qualifier: table.into(),
        window: Some(WindowSpec {
            kind: WindowKind::Tumble { size_ms: 10 },
            time_column: 1,
            offset_ms: 0,
        }),
        filter: None,
        projection: vec![
            column(0, "k", DataType::Int64),
            column(1, "window_end", ts()),
        ],
        output_names: vec!["k".into(), "window_end".into()],
        distinct: true,
        keys: vec![column(0, "k", DataType::Int64)],
        time_column: 1,
    }
}

fn rows(side: JoinSide, keys: &[i64], end: i64) -> JoinRows {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("window_end", ts(), true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(keys.to_vec())),
            Arc::new(TimestampMillisecondArray::from(vec![end; keys.len()])),
        ],
    )
    .expect("test rows");
    JoinRows { side, batch }
}

fn setup(limits: JoinLimits) -> (StreamJoinOperator, Emitter, Arc<Mutex<Vec<RecordBatch>>>) {
    let join = StreamJoin {
        left: side("l"),
        right: side("r"),
        kind: StreamJoinKind::Window,
        top: None,
        aggregate: None,
    };
    let op = StreamJoinOperator::new(0, 2, &join, None, limits).expect("operator");
    let out_schema = Arc::new(Schema::new(vec![
        Field::new("lk", DataType::Int64, true),
        Field::new("rk", DataType::Int64, true),
    ]));
    let output = OutputStage::new(
        None,
        vec![
            column(0, "k", DataType::Int64),
            column(2, "k", DataType::Int64),
        ],
        out_schema,
    );
    let kept = Arc::new(Mutex::new(Vec::new()));
    let emitter = Emitter::new(2, None, output, Box::new(Collect(kept.clone())));
    (op, emitter, kept)
}

fn rows_out(kept: &Arc<Mutex<Vec<RecordBatch>>>) -> usize {
    kept.lock()
        .map(|k| k.iter().map(|b| b.num_rows()).sum())
        .unwrap_or(0)
}

#[test]
fn a_window_joins_once_every_shard_passed_its_end() {
    let (mut op, mut em, kept) = setup(JoinLimits::default());
    op.on_rows(rows(JoinSide::Left, &[1, 1, 2], 10), &mut em)
        .expect("rows");
    op.on_rows(rows(JoinSide::Right, &[1, 3], 10), &mut em)
        .expect("rows");
    op.on_rows(rows(JoinSide::Right, &[2], 20), &mut em)
        .expect("rows");
    assert_eq!(op.state_size().0, 6);
    op.on_watermark(0, 15, false, &mut em).expect("watermark");
    assert_eq!(
        rows_out(&kept),
        0,
        "shard 1 has not passed the window's end"
    );
    op.on_watermark(1, 10, false, &mut em).expect("watermark");
    // key 1: one distinct left row x one right row; key 2 is in another window.
    assert_eq!(rows_out(&kept), 1);
    assert_eq!(op.stats.windows_closed, 1);
    assert_eq!(op.state_size().0, 1, "the closed window's rows are freed");
    // A row for the closed window is late: counted, never joined.
    op.on_rows(rows(JoinSide::Left, &[1], 10), &mut em)
        .expect("rows");
    assert_eq!(op.stats.late_rows, 1);
    // An idle shard does not hold the watermark.
    op.on_watermark(1, 10, true, &mut em).expect("watermark");
    assert_eq!(op.stats.windows_closed, 1, "shard 0 is at 15, before 20");
}

#[test]
fn join_state_past_its_limit_is_a_clear_error() {
    let limits = JoinLimits {
        join_state_rows_max: 3,
        ..JoinLimits::default()
    };
    let (mut op, mut em, _) = setup(limits);
    op.on_rows(rows(JoinSide::Left, &[1, 2, 3], 10), &mut em)
        .expect("at the limit");
    let e = match op.on_rows(rows(JoinSide::Right, &[1], 10), &mut em) {
        Err(e) => e.to_string(),
        Ok(()) => panic!("4 rows held with a limit of 3"),
    };
    assert!(
        e.contains("join.state.rows-max = 3") && e.contains("'l' and 'r'"),
        "{e}"
    );
}
