use std::sync::Arc;

use arrow::array::{AsArray, Int64Array};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use proptest::prelude::*;

use super::*;
use crate::stream_join::keys::KeyEncoder;

fn schema(names: &[&str]) -> SchemaRef {
    Arc::new(Schema::new(
        names
            .iter()
            .map(|n| Field::new(*n, DataType::Int64, true))
            .collect::<Vec<_>>(),
    ))
}

fn batch(names: &[&str], rows: &[Vec<i64>]) -> RecordBatch {
    let columns = (0..names.len())
        .map(|c| {
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r[c]).collect::<Vec<_>>(),
            )) as _
        })
        .collect();
    RecordBatch::try_new(schema(names), columns).expect("test batch")
}

fn keys(b: &RecordBatch) -> Rows {
    let key = crate::plan::Expr::Column {
        index: 0,
        name: "k".into(),
        data_type: DataType::Int64,
    };
    KeyEncoder::new(vec![key])
        .expect("encoder")
        .encode(b)
        .expect("keys")
        .0
}

/// Left rows (k, ts, until); right rows (k, ts, price); rank by price DESC, ts ASC.
struct Fixture {
    state: TopJoinState,
    ranks: RankEncoder,
    left_rows: RowCodec,
}

impl Fixture {
    fn new(from_ms: i64, rank_max: usize) -> Self {
        Fixture {
            state: TopJoinState::new(from_ms, rank_max),
            ranks: RankEncoder::new(&schema(&["k", "ts", "price"]), &[(2, true), (1, false)])
                .expect("ranks"),
            left_rows: RowCodec::new(&schema(&["k", "ts", "until"])).expect("codec"),
        }
    }

    fn left(&mut self, rows: &[Vec<i64>]) {
        let b = batch(&["k", "ts", "until"], rows);
        let times: Vec<i64> = rows.iter().map(|r| r[1]).collect();
        let until: Vec<i64> = rows.iter().map(|r| r[2]).collect();
        let k = keys(&b);
        let whole = self.left_rows.encode(&b).expect("rows");
        self.state
            .insert_left(&whole, &k, &times, &until, &vec![false; rows.len()])
            .expect("held");
    }

    fn right(&mut self, rows: &[Vec<i64>]) {
        let b = batch(&["k", "ts", "price"], rows);
        let times: Vec<i64> = rows.iter().map(|r| r[1]).collect();
        let k = keys(&b);
        let r = self.ranks.encode(&b).expect("ranks");
        self.state
            .insert_right(&k, &times, r, &vec![false; rows.len()])
            .expect("held");
    }

    /// (left key, [(right ts, price)...]) of the left rows final at `watermark`.
    fn expire(&mut self, watermark: i64) -> Vec<(i64, Vec<(i64, i64)>)> {
        let finished = self.state.expire(watermark);
        let column = |columns: &[arrow::array::ArrayRef], c: usize| -> Vec<i64> {
            columns[c].as_primitive::<Int64Type>().values().to_vec()
        };
        finished
            .iter()
            .map(|f| {
                let left = self.left_rows.decode(&[&f.left]).expect("left row");
                let best: Vec<&[u8]> = f.best.iter().map(|b| b.as_ref()).collect();
                let right = self.ranks.decode(&best).expect("right rows");
                let pairs = column(&right, 1)
                    .into_iter()
                    .zip(column(&right, 2))
                    .collect();
                (column(&left, 0)[0], pairs)
            })
            .collect()
    }
}

#[test]
fn the_best_bid_between_opening_and_until_wins_once_the_watermark_passes_until() {
    let mut f = Fixture::new(0, 1);
    // A right row before its left row (disorder) still counts.
    f.right(&[vec![1, 15, 30]]);
    f.left(&[vec![1, 10, 50], vec![2, 10, 20]]);
    f.right(&[
        vec![1, 20, 70],
        vec![1, 25, 70],
        vec![1, 51, 99],
        vec![2, 9, 99],
    ]);
    // Right rows whose key's left row is held are not held themselves (one left row per
    // key): the two left rows and the early right row.
    assert_eq!(f.state.rows, 2 + 1);
    // Key 2 has no partner in [10, 20]: freed without a result at 21.
    assert_eq!(f.expire(21), vec![]);
    assert_eq!(
        f.state.rows, 1,
        "left 2 and the right row before 21 are freed"
    );
    assert_eq!(f.expire(50), vec![], "until is included: not final at 50");
    // Ties on price go to the earlier row.
    assert_eq!(f.expire(51), vec![(1, vec![(20, 70)])]);
    assert_eq!(f.expire(i64::MAX), vec![]);
    assert_eq!(
        (f.state.rows, f.state.bytes, f.state.batches_held()),
        (0, 0, 0)
    );
}

#[test]
fn top_n_keeps_the_n_best_in_order() {
    let mut f = Fixture::new(0, 2);
    f.left(&[vec![7, 0, 100]]);
    f.right(&[vec![7, 1, 5], vec![7, 2, 9], vec![7, 3, 7], vec![7, 4, 9]]);
    assert_eq!(f.expire(101), vec![(7, vec![(2, 9), (4, 9)])]);
    assert_eq!((f.state.rows, f.state.bytes), (0, 0));
}

#[test]
fn from_ms_shifts_the_lower_bound() {
    // right.ts >= left.ts + 5
    let mut f = Fixture::new(5, 1);
    f.left(&[vec![1, 10, 40]]);
    f.right(&[vec![1, 14, 90], vec![1, 15, 10]]);
    assert_eq!(f.expire(41), vec![(1, vec![(15, 10)])]);
}

proptest! {
    /// Whatever the arrival order, the result is the best partner by (price DESC, ts ASC)
    /// (and, aggregating, the aggregates of all partners), and the state is empty at the end.
    #[test]
    fn result_is_independent_of_arrival_order(
        rights in proptest::collection::vec((0i64..3, 0i64..100, 0i64..5), 1..40),
        split in 0usize..40,
    ) {
        let lefts: Vec<Vec<i64>> = (0..3).map(|k| vec![k, 10 * k, 10 * k + 50]).collect();
        let rights: Vec<Vec<i64>> = rights.into_iter().map(|(k, ts, p)| vec![k, ts, p]).collect();
        let split = split.min(rights.len());
        let mut f = Fixture::new(0, 1);
        f.right(&rights[..split]);
        f.left(&lefts);
        f.right(&rights[split..]);
        let mut got = f.expire(i64::MAX);
        got.sort();
        let mut expected = Vec::new();
        for l in &lefts {
            let best = rights
                .iter()
                .filter(|r| r[0] == l[0] && r[1] >= l[1] && r[1] <= l[2])
                .min_by_key(|r| (std::cmp::Reverse(r[2]), r[1]));
            if let Some(b) = best {
                expected.push((l[0], vec![(b[1], b[2])]));
            }
        }
        prop_assert_eq!(got, expected);
        prop_assert_eq!((f.state.rows, f.state.bytes, f.state.batches_held()), (0, 0, 0));

        // Aggregating the same arrivals: MAX, COUNT and SUM of each left row's partners.
        let mut a = Aggregating::new();
        a.right(&rights[..split]);
        a.left(&lefts);
        a.right(&rights[split..]);
        let mut got = a.expire(i64::MAX);
        got.sort();
        let mut expected = Vec::new();
        for l in &lefts {
            let prices: Vec<i64> = rights
                .iter()
                .filter(|r| r[0] == l[0] && r[1] >= l[1] && r[1] <= l[2])
                .map(|r| r[2])
                .collect();
            if let Some(max) = prices.iter().max() {
                expected.push((l[0], vec![*max, prices.len() as i64, prices.iter().sum()]));
            }
        }
        prop_assert_eq!(got, expected);
        prop_assert_eq!((a.state.rows, a.state.bytes, a.state.batches_held()), (0, 0, 0));
    }
}

#[test]
fn a_repeated_left_key_is_refused_while_the_first_row_is_held() {
    let mut f = Fixture::new(0, 1);
    f.left(&[vec![7, 100, 1_000]]);
    let b = batch(&["k", "ts", "until"], &[vec![7, 200, 2_000]]);
    let k = keys(&b);
    let whole = f.left_rows.encode(&b).expect("rows");
    let e = f
        .state
        .insert_left(&whole, &k, &[200], &[2_000], &[false])
        .expect_err("a second held row of key 7");
    assert!(
        e.to_string().contains("unique join key per left row"),
        "{e}"
    );
    // Once the first row is final and freed, the key may come again.
    assert_eq!(f.expire(1_001).len(), 0, "no partner: nothing emitted");
    f.state
        .insert_left(&whole, &k, &[200], &[2_000], &[false])
        .expect("the key is free again");
}

/// An aggregating join's state: MAX(price), COUNT(*), SUM(price) per left row.
struct Aggregating {
    state: TopJoinState,
    left_rows: RowCodec,
    accumulators: Vec<Accumulator>,
}

impl Aggregating {
    fn new() -> Self {
        use crate::plan::{AggCall, AggFunc, Expr};
        let price = Expr::Column {
            index: 2,
            name: "price".into(),
            data_type: DataType::Int64,
        };
        let call = |func, arg: Option<Expr>| AggCall {
            func,
            arg,
            output_type: DataType::Int64,
        };
        let calls = [
            call(AggFunc::Max, Some(price.clone())),
            call(AggFunc::Count, None),
            call(AggFunc::Sum, Some(price)),
        ];
        let accumulators: Vec<Accumulator> = calls
            .iter()
            .map(|c| Accumulator::new(c).expect("slot-only"))
            .collect();
        Aggregating {
            state: TopJoinState::aggregating(0, accumulators.clone()).expect("state"),
            left_rows: RowCodec::new(&schema(&["k", "ts", "until"])).expect("codec"),
            accumulators,
        }
    }

    fn left(&mut self, rows: &[Vec<i64>]) {
        let b = batch(&["k", "ts", "until"], rows);
        let times: Vec<i64> = rows.iter().map(|r| r[1]).collect();
        let until: Vec<i64> = rows.iter().map(|r| r[2]).collect();
        let whole = self.left_rows.encode(&b).expect("rows");
        self.state
            .insert_left(&whole, &keys(&b), &times, &until, &vec![false; rows.len()])
            .expect("held");
    }

    fn right(&mut self, rows: &[Vec<i64>]) {
        let b = batch(&["k", "ts", "price"], rows);
        let times: Vec<i64> = rows.iter().map(|r| r[1]).collect();
        let values = vec![Some(b.column(2).clone()), None, Some(b.column(2).clone())];
        self.state
            .insert_right_values(&keys(&b), &times, values, &vec![false; rows.len()])
            .expect("held");
    }

    /// (left key, [max, count, sum]) of the left rows final at `watermark`.
    fn expire(&mut self, watermark: i64) -> Vec<(i64, Vec<i64>)> {
        let finished = self.state.expire(watermark);
        let mut out = Vec::new();
        for f in &finished {
            let left = self.left_rows.decode(&[&f.left]).expect("left row");
            let key = left[0].as_primitive::<Int64Type>().value(0);
            let values = self
                .accumulators
                .iter()
                .enumerate()
                .map(|(a, acc)| {
                    let strings = crate::accumulator::StringStore::new();
                    let column = acc.finish(&f.slots, 3, a, 0..1, &strings).expect("finish");
                    column.as_primitive::<Int64Type>().value(0)
                })
                .collect();
            out.push((key, values));
        }
        out
    }
}

#[test]
fn aggregating_counts_every_partner_within_the_bounds_once_final() {
    let mut f = Aggregating::new();
    // A right row before its left row (disorder) counts; one outside the bounds does not.
    f.right(&[vec![1, 15, 30], vec![1, 5, 999]]);
    f.left(&[vec![1, 10, 50], vec![2, 10, 20]]);
    f.right(&[
        vec![1, 20, 70],
        vec![1, 50, 40],
        vec![1, 51, 99],
        vec![2, 9, 99],
    ]);
    assert_eq!(f.expire(50), vec![], "until is included: not final at 50");
    // Key 2 had no partner in [10, 20]: an inner join emits nothing for it.
    assert_eq!(f.expire(51), vec![(1, vec![70, 3, 140])]);
    assert_eq!(f.expire(i64::MAX), vec![]);
    assert_eq!(
        (f.state.rows, f.state.bytes, f.state.batches_held()),
        (0, 0, 0)
    );
}

#[test]
fn ranked_rows_are_refused_by_an_aggregating_state() {
    let mut f = Aggregating::new();
    f.left(&[vec![1, 0, 10]]);
    let ranks = RankEncoder::new(&schema(&["k", "ts", "price"]), &[(2, true)]).expect("ranks");
    let b = batch(&["k", "ts", "price"], &[vec![1, 1, 5]]);
    let e = f
        .state
        .insert_right(&keys(&b), &[1], ranks.encode(&b).expect("ranks"), &[false])
        .expect_err("ranks are not aggregate values");
    assert!(e.to_string().contains("aggregating"), "{e}");
}
