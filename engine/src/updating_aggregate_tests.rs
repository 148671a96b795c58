//! Tests of the updating aggregate: keys merged from several shards emit totals (never one
//! shard's partial as a total), a changed key emits "-U" (its previous row) then "+U",
//! unchanged keys emit nothing, the upsert form has no "-U", and the limits stop the job.

use std::collections::HashMap;

use arrow::array::{Array, AsArray, Float64Array, Int64Array};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use proptest::prelude::*;

use super::*;
use crate::plan::{AggCall, AggFunc, Aggregation, Expr};

fn column(index: usize, name: &str) -> Expr {
    Expr::Column {
        index,
        name: name.into(),
        data_type: DataType::Int64,
    }
}

/// `SELECT k, COUNT(*), SUM(v), MIN(v), MAX(v), AVG(v) ... GROUP BY k` over (k, v).
fn layout() -> Arc<AggregateLayout> {
    let call = |func, output_type| AggCall {
        func,
        arg: (func != AggFunc::Count).then(|| column(1, "v")),
        output_type,
    };
    let aggregation = Aggregation {
        window: None,
        group_keys: vec![column(0, "k")],
        group_key_names: vec!["k".into()],
        aggregates: vec![
            call(AggFunc::Count, DataType::Int64),
            call(AggFunc::Sum, DataType::Int64),
            call(AggFunc::Min, DataType::Int64),
            call(AggFunc::Max, DataType::Int64),
            call(AggFunc::Avg, DataType::Float64),
        ],
        agg_names: ["n", "sum", "lo", "hi", "mean"].map(String::from).to_vec(),
        having: None,
        top_n: None,
    };
    Arc::new(AggregateLayout::new(&aggregation).expect("layout"))
}

fn input(rows: &[(i64, i64)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("v", DataType::Int64, true),
    ]));
    let k = Int64Array::from(rows.iter().map(|r| r.0).collect::<Vec<_>>());
    let v = Int64Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>());
    RecordBatch::try_new(schema, vec![Arc::new(k), Arc::new(v)]).expect("input")
}

/// A key's row: (count, sum, min, max, avg).
type Row = (i64, i64, i64, i64, f64);

/// The rows of a changelog batch by key.
fn rows_of(batch: &RecordBatch) -> Vec<(i64, Row)> {
    let int = |c: usize| batch.column(c).as_primitive::<Int64Type>().clone();
    let (k, n, sum, lo, hi) = (int(0), int(1), int(2), int(3), int(4));
    let mean = batch.column(5).as_primitive::<Float64Type>();
    (0..batch.num_rows())
        .map(|i| {
            let row = (
                n.value(i),
                sum.value(i),
                lo.value(i),
                hi.value(i),
                mean.value(i),
            );
            (k.value(i), row)
        })
        .collect()
}

/// `shards` stages of one job, and what their sinks got, in order per owner.
struct Job {
    stages: Vec<UpdatingAggregate>,
    /// Per key: the changelog its owner emitted.
    log: HashMap<i64, Vec<(RowKind, Row)>>,
}

impl Job {
    fn new(shards: usize, update_before: bool, limits: &Limits) -> Self {
        let layout = layout();
        let stages = (0..shards)
            .map(|s| {
                UpdatingAggregate::new(layout.clone(), s, shards, update_before, limits)
                    .expect("stage")
            })
            .collect();
        Job {
            stages,
            log: HashMap::new(),
        }
    }

    /// Rows arrive on shard `shard`.
    fn add(&mut self, shard: usize, rows: &[(i64, i64)]) {
        self.stages[shard].add(&input(rows)).expect("add");
    }

    /// Every shard hands its partials to the owners, which merge them (in shard order, or
    /// reversed).
    fn exchange(&mut self, reversed: bool) {
        let mut parts = Vec::new();
        for stage in &mut self.stages {
            parts.extend(stage.take_partials());
        }
        if reversed {
            parts.reverse();
        }
        for (owner, part) in parts {
            for (kind, batch) in self.stages[owner].merge(&part).expect("merge") {
                for (key, row) in rows_of(&batch) {
                    self.log.entry(key).or_default().push((kind, row));
                }
            }
        }
    }

    /// Per key, the last row emitted, after checking the changelog is well formed: "+I"
    /// first, then pairs of a "-U" equal to the row before and a "+U" (or "+U" alone in
    /// upsert form).
    fn finals(&self, update_before: bool) -> HashMap<i64, Row> {
        let mut out = HashMap::new();
        for (key, log) in &self.log {
            assert_eq!(log[0].0, RowKind::Insert, "key {key}: {log:?}");
            let mut last = log[0].1;
            let mut i = 1;
            while i < log.len() {
                if update_before {
                    assert_eq!(log[i], (RowKind::UpdateBefore, last), "key {key}: {log:?}");
                    i += 1;
                }
                assert_eq!(log[i].0, RowKind::UpdateAfter, "key {key}: {log:?}");
                assert_ne!(log[i].1, last, "key {key}: an update that changes nothing");
                last = log[i].1;
                i += 1;
            }
            out.insert(*key, last);
        }
        out
    }
}

/// The totals of a batch computation.
fn expected(rows: &[(i64, i64)]) -> HashMap<i64, Row> {
    let mut out: HashMap<i64, Vec<i64>> = HashMap::new();
    for &(k, v) in rows {
        out.entry(k).or_default().push(v);
    }
    out.into_iter()
        .map(|(k, vs)| {
            let sum: i64 = vs.iter().sum();
            let n = vs.len() as i64;
            let lo = *vs.iter().min().expect("values");
            let hi = *vs.iter().max().expect("values");
            (k, (n, sum, lo, hi, sum as f64 / n as f64))
        })
        .collect()
}

#[test]
fn a_key_from_two_shards_is_emitted_as_its_total_with_update_pairs() {
    let mut job = Job::new(2, true, &Limits::default());
    job.add(0, &[(7, 10), (7, 30)]);
    job.exchange(false);
    job.add(1, &[(7, 50)]);
    job.add(0, &[(7, 20)]);
    job.exchange(false);
    assert_eq!(
        job.log[&7],
        vec![
            (RowKind::Insert, (2, 40, 10, 30, 20.0)),
            // shard 0's partial (20) merges, then shard 1's (50): each merge emits the
            // key's total so far, never a shard's partial
            (RowKind::UpdateBefore, (2, 40, 10, 30, 20.0)),
            (RowKind::UpdateAfter, (3, 60, 10, 30, 20.0)),
            (RowKind::UpdateBefore, (3, 60, 10, 30, 20.0)),
            (RowKind::UpdateAfter, (4, 110, 10, 50, 27.5)),
        ]
    );
    assert_eq!(job.finals(true)[&7], (4, 110, 10, 50, 27.5));
    let emitted: u64 = job.stages.iter().map(|s| s.stats.keys_inserted).sum();
    assert_eq!(emitted, 1, "the key is inserted once, by its owner");
}

#[test]
fn upserts_have_no_update_before_and_no_input_emits_nothing() {
    let mut job = Job::new(1, false, &Limits::default());
    job.add(0, &[(1, 5)]);
    job.exchange(false);
    job.add(0, &[(1, 6), (2, 1)]);
    job.exchange(false);
    job.exchange(false);
    assert_eq!(job.log[&1].len(), 2, "{:?}", job.log[&1]);
    assert!(job
        .log
        .values()
        .flatten()
        .all(|(k, _)| *k != RowKind::UpdateBefore));
    let finals = job.finals(false);
    assert_eq!(finals[&1], (2, 11, 5, 6, 5.5));
    assert_eq!(finals[&2], (1, 1, 1, 1, 1.0));
}

#[test]
fn a_merge_that_changes_no_total_emits_nothing() {
    let layout = {
        let max = AggCall {
            func: AggFunc::Max,
            arg: Some(column(1, "v")),
            output_type: DataType::Int64,
        };
        let aggregation = Aggregation {
            window: None,
            group_keys: vec![column(0, "k")],
            group_key_names: vec!["k".into()],
            aggregates: vec![max],
            agg_names: vec!["hi".into()],
            having: None,
            top_n: None,
        };
        Arc::new(AggregateLayout::new(&aggregation).expect("layout"))
    };
    let mut stage = UpdatingAggregate::new(layout, 0, 1, true, &Limits::default()).expect("stage");
    stage.add(&input(&[(1, 9)])).expect("add");
    let (_, part) = stage.take_partials().pop().expect("a partial");
    assert_eq!(stage.merge(&part).expect("merge").len(), 1, "+I");
    stage.add(&input(&[(1, 3)])).expect("add");
    let (_, part) = stage.take_partials().pop().expect("a partial");
    assert!(stage.merge(&part).expect("merge").is_empty(), "MAX stays 9");
    assert!(stage.take_partials().is_empty(), "nothing new");
}

#[test]
fn the_key_limit_stops_the_job_naming_it() {
    let limits = Limits {
        state_groups_max: 3,
        ..Limits::default()
    };
    let mut stage = UpdatingAggregate::new(layout(), 0, 1, true, &limits).expect("stage");
    stage
        .add(&input(&[(1, 1), (2, 1), (3, 1)]))
        .expect("three keys fit");
    let e = stage
        .add(&input(&[(4, 1)]))
        .expect_err("a fourth key is over the limit")
        .to_string();
    assert!(
        e.contains("state_groups_max = 3") && e.contains("updating aggregate"),
        "{e}"
    );
}

#[test]
fn a_partial_for_another_owner_is_a_bug() {
    let mut job = Job::new(2, true, &Limits::default());
    job.add(0, &[(1, 1), (2, 2), (3, 3), (4, 4)]);
    let parts = job.stages[0].take_partials();
    let (owner, part) = parts.into_iter().next().expect("a partial");
    let e = job.stages[1 - owner]
        .merge(&part)
        .expect_err("not its keys")
        .to_string();
    assert!(e.contains("owns"), "{e}");
}

#[test]
fn null_values_are_skipped_and_a_null_key_is_a_key() {
    let mut stage =
        UpdatingAggregate::new(layout(), 0, 1, true, &Limits::default()).expect("stage");
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("v", DataType::Int64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![None, None, Some(1)])),
            Arc::new(Int64Array::from(vec![Some(4), None, None])),
        ],
    )
    .expect("batch");
    stage.add(&batch).expect("add");
    let (_, part) = stage.take_partials().pop().expect("a partial");
    let changes = stage.merge(&part).expect("merge");
    let (kind, out) = &changes[0];
    assert_eq!(*kind, RowKind::Insert);
    assert_eq!(out.num_rows(), 2);
    let keys = out.column(0).as_primitive::<Int64Type>();
    let counts = out.column(1).as_primitive::<Int64Type>();
    let null_key = (0..2).find(|&i| keys.is_null(i)).expect("the NULL key");
    assert_eq!(
        counts.value(null_key),
        2,
        "COUNT(*) counts rows with NULL values"
    );
    let sums = out.column(2).as_primitive::<Int64Type>();
    assert_eq!(sums.value(null_key), 4);
    let means = out
        .column(5)
        .as_any()
        .downcast_ref::<Float64Array>()
        .expect("avg");
    assert!(means.is_null(1 - null_key), "AVG of no values is NULL");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Rows spread over shards and exchanged in any order end as the batch totals, with a
    /// well-formed changelog.
    #[test]
    fn finals_equal_the_batch_totals(
        rows in proptest::collection::vec((0i64..12, -50i64..50), 1..200),
        shards in 1usize..4,
        cut in 1usize..8,
        update_before: bool,
        reversed: bool,
    ) {
        let mut job = Job::new(shards, update_before, &Limits::default());
        for (i, chunk) in rows.chunks(cut).enumerate() {
            job.add(i % shards, chunk);
            if i % 3 == 2 {
                job.exchange(reversed);
            }
        }
        job.exchange(reversed);
        prop_assert_eq!(job.finals(update_before), expected(&rows));
        let keys: usize = job.stages.iter().map(|s| s.keys()).sum();
        prop_assert_eq!(keys, expected(&rows).len(), "each key lives on one shard");
    }
}
