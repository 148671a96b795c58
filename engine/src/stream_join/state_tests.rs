//! Tests of the join state: matches equal a nested-loop join whatever the arrival order
//! within the watermark bound, and the watermark frees what can no longer match.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use proptest::prelude::*;

use super::*;
use crate::plan::Expr;
use crate::stream_join::keys::KeyEncoder;

/// A row of a test side: (id, key, ts).
type Row = (i64, i64, i64);

fn schema() -> arrow::datatypes::SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("k", DataType::Int64, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
    ]))
}

fn batch(rows: &[Row]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            )),
            Arc::new(TimestampMillisecondArray::from(
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            )),
        ],
    )
    .expect("test batch")
}

fn encoder() -> KeyEncoder {
    KeyEncoder::new(vec![Expr::Column {
        index: 1,
        name: "k".into(),
        data_type: DataType::Int64,
    }])
    .expect("encoder")
}

fn ids(b: &RecordBatch, row: u32) -> i64 {
    b.column(0)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(row as usize)
}

/// Runs an interval join over `arrivals` (side, row), advancing the watermark to
/// `max(ts) - bound` after each, and returns the (left id, right id) pairs.
fn run_interval(
    arrivals: &[(JoinSide, Row)],
    bound: i64,
    lower: i64,
    upper: i64,
) -> (Vec<(i64, i64)>, usize) {
    let enc = encoder();
    let mut state = IntervalJoinState::new(lower, upper);
    let mut out = Vec::new();
    let mut ts_max = i64::MIN;
    for (side, row) in arrivals {
        let b = batch(&[*row]);
        let (keys, nulls) = enc.encode(&b).expect("keys");
        for ((l, li), (r, ri)) in state.insert(*side, b, &keys, &[row.2], &nulls) {
            let lb = state.batch(JoinSide::Left, l).expect("left batch");
            let rb = state.batch(JoinSide::Right, r).expect("right batch");
            out.push((ids(lb, li), ids(rb, ri)));
        }
        state.release_empty();
        ts_max = ts_max.max(row.2);
        state.expire(ts_max - bound);
    }
    out.sort_unstable();
    (out, state.rows)
}

fn nested_loop(left: &[Row], right: &[Row], lower: i64, upper: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    for l in left {
        for r in right {
            let d = l.2 - r.2;
            if l.1 == r.1 && d >= lower && d <= upper {
                out.push((l.0, r.0));
            }
        }
    }
    out.sort_unstable();
    out
}

/// Events in time order, then each moved back by up to `bound` (a valid disorder: no event
/// arrives after the watermark passed it).
fn disordered(events: Vec<(JoinSide, Row)>, jitter: &[i64], bound: i64) -> Vec<(JoinSide, Row)> {
    let mut keyed: Vec<(i64, usize, (JoinSide, Row))> = events
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            (
                e.1 .2 - jitter[i % jitter.len()].rem_euclid(bound + 1),
                i,
                e,
            )
        })
        .collect();
    keyed.sort_by_key(|(at, i, _)| (*at, *i));
    keyed.into_iter().map(|(_, _, e)| e).collect()
}

#[test]
fn interval_join_matches_both_arrival_orders_and_frees_rows() {
    let left = [(1, 7, 1_000), (2, 7, 5_000), (3, 8, 5_000)];
    let right = [(10, 7, 900), (11, 7, 4_000), (12, 8, 9_000)];
    let mut arrivals: Vec<(JoinSide, Row)> = left.iter().map(|r| (JoinSide::Left, *r)).collect();
    arrivals.extend(right.iter().map(|r| (JoinSide::Right, *r)));
    arrivals.sort_by_key(|(_, r)| r.2);
    // left.ts - right.ts in [0, 1000]
    let (got, _) = run_interval(&arrivals, 0, 0, 1_000);
    assert_eq!(got, vec![(1, 10), (2, 11)]);
    assert_eq!(got, nested_loop(&left, &right, 0, 1_000));
    // Far beyond every row: everything freed.
    let mut state = IntervalJoinState::new(0, 1_000);
    let enc = encoder();
    let b = batch(&left);
    let (keys, nulls) = enc.encode(&b).expect("keys");
    state.insert(JoinSide::Left, b, &keys, &[1_000, 5_000, 5_000], &nulls);
    assert_eq!(state.rows, 3);
    assert!(state.bytes > 0);
    state.expire(1_001);
    assert_eq!(
        state.rows, 2,
        "the left row at 1000 can meet no right row at >= 1001"
    );
    state.expire(i64::MAX);
    assert_eq!((state.rows, state.bytes), (0, 0));
}

#[test]
fn window_join_distinct_sides_and_null_keys() {
    let l = batch(&[(1, 7, 0), (1, 7, 0), (2, 8, 0)]);
    let r = batch(&[(10, 7, 0), (11, 9, 0)]);
    let left = window_side(&[l], &schema(), true).expect("left");
    assert_eq!(left.num_rows(), 2, "the duplicate (1, 7) row is dropped");
    let enc = encoder();
    let (lk, ln) = enc.encode(&left).expect("left keys");
    let (rk, rn) = enc.encode(&r).expect("right keys");
    let (li, ri) = join_window(&lk, &ln, &rk, &rn);
    assert_eq!((li, ri), (vec![0], vec![0]));
    // NULL keys match nothing, not even each other.
    let (li, _) = join_window(&lk, &[true, true], &rk, &rn);
    assert!(li.is_empty());
}

#[test]
fn window_state_closes_windows_by_end() {
    let mut state = WindowJoinState::default();
    // column 2 is the window end here
    state
        .insert(JoinSide::Left, batch(&[(1, 7, 10), (2, 7, 20)]), 2)
        .expect("insert");
    state
        .insert(JoinSide::Right, batch(&[(3, 7, 10)]), 2)
        .expect("insert");
    assert_eq!((state.windows(), state.rows), (2, 3));
    let closed = state.close(15);
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].end, 10);
    assert_eq!((closed[0].left.len(), closed[0].right.len()), (1, 1));
    assert_eq!(state.rows, 1);
    assert!(state.close(19).is_empty());
    assert_eq!(state.close(20).len(), 1);
    assert_eq!((state.rows, state.bytes), (0, 0));
}

proptest! {
    #[test]
    fn interval_join_is_independent_of_arrival_order_within_the_bound(
        left in proptest::collection::vec((0i64..4, 0i64..20_000), 0..40),
        right in proptest::collection::vec((0i64..4, 0i64..20_000), 0..40),
        jitter in proptest::collection::vec(0i64..10_000, 1..16),
        bound in 0i64..3_000,
        lower in -3_000i64..1_000,
        width in 0i64..3_000,
    ) {
        let upper = lower + width;
        let left: Vec<Row> = left.iter().enumerate().map(|(i, (k, t))| (i as i64, *k, *t)).collect();
        let right: Vec<Row> = right.iter().enumerate().map(|(i, (k, t))| (1_000 + i as i64, *k, *t)).collect();
        let mut events: Vec<(JoinSide, Row)> = left.iter().map(|r| (JoinSide::Left, *r)).collect();
        events.extend(right.iter().map(|r| (JoinSide::Right, *r)));
        events.sort_by_key(|(_, r)| (r.2, r.0));
        let expected = nested_loop(&left, &right, lower, upper);
        let (straight, _) = run_interval(&events, bound, lower, upper);
        prop_assert_eq!(&straight, &expected);
        let shuffled = disordered(events, &jitter, bound);
        let (got, _) = run_interval(&shuffled, bound, lower, upper);
        prop_assert_eq!(&got, &expected);
    }
}

/// Runs a window join (TUMBLE of `size`, windows by end in column 2) over `arrivals`,
/// closing windows as the watermark `max(ts) - bound` passes them; (left id, right id).
fn run_window(arrivals: &[(JoinSide, Row)], bound: i64, size: i64) -> Vec<(i64, i64)> {
    let enc = encoder();
    let mut state = WindowJoinState::default();
    let mut out = Vec::new();
    let mut ts_max = i64::MIN;
    let close = |state: &mut WindowJoinState, wm: i64, out: &mut Vec<(i64, i64)>| {
        for w in state.close(wm) {
            let l = window_side(&w.left, &schema(), false).expect("left");
            let r = window_side(&w.right, &schema(), false).expect("right");
            let (lk, ln) = enc.encode(&l).expect("keys");
            let (rk, rn) = enc.encode(&r).expect("keys");
            let (li, ri) = join_window(&lk, &ln, &rk, &rn);
            for (a, b) in li.into_iter().zip(ri) {
                out.push((ids(&l, a), ids(&r, b)));
            }
        }
    };
    for (side, row) in arrivals {
        let end = row.2 - row.2.rem_euclid(size) + size;
        // the third column holds the window end here
        state
            .insert(*side, batch(&[(row.0, row.1, end)]), 2)
            .expect("insert");
        ts_max = ts_max.max(row.2);
        close(&mut state, ts_max - bound, &mut out);
    }
    close(&mut state, i64::MAX, &mut out);
    assert_eq!((state.rows, state.bytes), (0, 0), "every window freed");
    out.sort_unstable();
    out
}

proptest! {
    #[test]
    fn window_join_is_independent_of_arrival_order_within_the_bound(
        left in proptest::collection::vec((0i64..4, 0i64..20_000), 0..40),
        right in proptest::collection::vec((0i64..4, 0i64..20_000), 0..40),
        jitter in proptest::collection::vec(0i64..10_000, 1..16),
        bound in 0i64..3_000,
        size in 1i64..5_000,
    ) {
        let left: Vec<Row> = left.iter().enumerate().map(|(i, (k, t))| (i as i64, *k, *t)).collect();
        let right: Vec<Row> = right.iter().enumerate().map(|(i, (k, t))| (1_000 + i as i64, *k, *t)).collect();
        let mut expected = Vec::new();
        for l in &left {
            for r in &right {
                if l.1 == r.1 && l.2.div_euclid(size) == r.2.div_euclid(size) {
                    expected.push((l.0, r.0));
                }
            }
        }
        expected.sort_unstable();
        let mut events: Vec<(JoinSide, Row)> = left.iter().map(|r| (JoinSide::Left, *r)).collect();
        events.extend(right.iter().map(|r| (JoinSide::Right, *r)));
        events.sort_by_key(|(_, r)| (r.2, r.0));
        prop_assert_eq!(&run_window(&events, bound, size), &expected);
        let shuffled = disordered(events, &jitter, bound);
        prop_assert_eq!(&run_window(&shuffled, bound, size), &expected);
    }
}
