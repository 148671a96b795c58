//! The top-N accumulator: any split of the rows into partials (panes, shards), merged in any
//! order and through a checkpoint's bytes, gives the same exploded rows as one pass.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use proptest::prelude::*;

use crate::checkpoint::chunk_codec::{decode_groups, encode_chunk};
use crate::group_table::GroupTable;
use crate::window_operator::AggregateLayout;

const TABLE: &str = "CREATE TABLE t (k STRING, v BIGINT, ts TIMESTAMP(3), \
    WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
    WITH ('connector' = 'filesystem', 'path' = 'unused.jsonl', 'format' = 'json');\n";

/// Raw rows: the 3 highest v per window (ties broken by k).
const ROWS_SQL: &str = "SELECT * FROM (SELECT k, v, ROW_NUMBER() OVER (PARTITION BY window_start, \
    window_end ORDER BY v DESC) AS rn FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' SECOND))) \
    WHERE rn <= 3;";
/// Inner groups: the keys with the highest SUM(v), ties kept.
const GROUPS_SQL: &str =
    "SELECT a.k, a.s FROM (SELECT k, SUM(v) AS s, COUNT(*) AS n, window_start AS ws, \
    window_end AS we FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' SECOND)) \
    GROUP BY k, window_start, window_end) a JOIN (SELECT MAX(c.s) AS m, c.ws, c.we FROM \
    (SELECT SUM(v) AS s, window_start AS ws, window_end AS we FROM TABLE(TUMBLE(TABLE t, \
    DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY k, window_start, window_end) c \
    GROUP BY c.ws, c.we) b ON a.ws = b.ws AND a.s >= b.m;";

fn layout(query: &str) -> AggregateLayout {
    let program = crate::sql::parse_program(&format!("{TABLE}{query}")).expect("plans");
    let aggregation = program.pipelines[0]
        .aggregation
        .clone()
        .expect("aggregation");
    AggregateLayout::new(&aggregation).expect("layout")
}

/// The one (keyless) group of a pane after updating it with `rows`.
fn partial(layout: &AggregateLayout, rows: &[(u8, i64)]) -> GroupTable {
    let mut t = GroupTable::new(layout.stride());
    if rows.is_empty() {
        return t;
    }
    let k = StringArray::from_iter_values(rows.iter().map(|r| format!("k{}", r.0)));
    let v = Int64Array::from_iter_values(rows.iter().map(|r| r.1));
    let ts = TimestampMillisecondArray::from_iter_values(rows.iter().map(|_| 10));
    let columns: Vec<ArrayRef> = vec![Arc::new(k), Arc::new(v), Arc::new(ts)];
    let batch =
        RecordBatch::try_from_iter(["k", "v", "ts"].into_iter().zip(columns)).expect("batch");
    let (g, _) = t.find_or_insert(&[], layout.hash_key(&[]));
    let groups = vec![g; rows.len()];
    let all: Vec<u32> = (0..rows.len() as u32).collect();
    let acc = &layout.accumulators[0];
    let call = &layout.aggregation.aggregates[0];
    let input = acc
        .prepare_batch(call, &batch, batch.column(2))
        .expect("prepare");
    let stride = t.stride;
    acc.update(
        &mut t.slots,
        stride,
        0,
        &groups,
        &all,
        input.as_ref(),
        &mut t.strings,
    );
    t
}

/// `from`'s groups merged into `into` (as the final stage merges a partial).
fn merge(layout: &AggregateLayout, into: &mut GroupTable, from: &GroupTable) {
    for g in 0..from.len() as u32 {
        let (t, _) = into.find_or_insert(from.key(g), from.hash(g));
        let slot = from.group_slots(g)[0];
        let side = (slot.b > 0).then(|| &from.strings[slot.a as usize]);
        let acc = &layout.accumulators[0];
        acc.merge(&mut into.slots[t as usize], slot, side, &mut into.strings);
    }
}

/// Through a checkpoint's bytes: encode, decode, merge into an empty table.
fn round_trip(layout: &AggregateLayout, t: &GroupTable) -> GroupTable {
    let mut out = GroupTable::new(layout.stride());
    if t.is_empty() {
        return out;
    }
    let mut bytes = Vec::new();
    encode_chunk(layout, t, 0, &mut bytes);
    let p = decode_groups(layout, 0, 1_000, &bytes).expect("decodes");
    for i in 0..p.len() {
        let (g, _) = out.find_or_insert(p.key(i), p.hashes[i]);
        let slot = p.slots[i];
        let side = (slot.b > 0).then(|| &p.strings[slot.a as usize]);
        layout.accumulators[0].merge(&mut out.slots[g as usize], slot, side, &mut out.strings);
    }
    out
}

fn check(query: &str, rows: &[(u8, i64)], parts: &[usize]) -> Result<(), TestCaseError> {
    let layout = layout(query);
    let whole = layout
        .to_batch(0, 1_000, &partial(&layout, rows))
        .expect("explodes");
    // Split the rows into 3 partials by `parts`.
    let mut split: Vec<Vec<(u8, i64)>> = vec![Vec::new(); 3];
    for (i, r) in rows.iter().enumerate() {
        split[parts.get(i).copied().unwrap_or(0) % 3].push(*r);
    }
    let partials: Vec<GroupTable> = split.iter().map(|s| partial(&layout, s)).collect();
    let mut forward = GroupTable::new(layout.stride());
    for p in &partials {
        merge(&layout, &mut forward, p);
    }
    let mut backward = GroupTable::new(layout.stride());
    for p in partials.iter().rev() {
        merge(&layout, &mut backward, &round_trip(&layout, p));
    }
    let forward = layout.to_batch(0, 1_000, &forward).expect("explodes");
    let backward = layout
        .to_batch(0, 1_000, &round_trip(&layout, &backward))
        .expect("explodes");
    prop_assert_eq!(&forward, &whole);
    prop_assert_eq!(&backward, &whole);
    Ok(())
}

proptest! {
    #[test]
    fn top_rows_merge_in_any_order(
        rows in proptest::collection::vec((0u8..6, -4i64..4), 0..80),
        parts in proptest::collection::vec(0usize..3, 80),
    ) {
        check(ROWS_SQL, &rows, &parts)?;
    }

    #[test]
    fn inner_groups_merge_in_any_order(
        rows in proptest::collection::vec((0u8..12, -3i64..5), 0..120),
        parts in proptest::collection::vec(0usize..3, 120),
    ) {
        check(GROUPS_SQL, &rows, &parts)?;
    }
}

#[test]
fn exploded_rows_are_ranked_and_tied_rows_kept() {
    let l = layout(ROWS_SQL);
    let rows = [(1, 5), (2, 9), (3, 9), (4, 1), (5, 7)];
    let b = l.to_batch(0, 1_000, &partial(&l, &rows)).expect("explodes");
    assert_eq!(b.num_rows(), 3, "ROW_NUMBER keeps exactly 3");
    let v: Vec<i64> = b
        .column(2)
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("v")
        .values()
        .to_vec();
    assert_eq!(v, [9, 9, 7]);
    let l = layout(GROUPS_SQL);
    let rows = [(1, 5), (2, 3), (2, 2), (3, 4), (4, 1)];
    let b = l.to_batch(0, 1_000, &partial(&l, &rows)).expect("explodes");
    assert_eq!(b.num_rows(), 2, "k1 and k2 both sum to 5: {b:?}");
}

#[test]
fn an_overflowed_window_fails_naming_the_limit() {
    use crate::accumulator::{SideValue, TopNState, TopRows};
    let l = layout(ROWS_SQL);
    let mut t = partial(&l, &[(1, 5)]);
    let slot = t.group_slots(0)[0];
    let Some(SideValue::TopN(state)) = t.strings.get_mut(slot.a as usize) else {
        panic!("a top-N state")
    };
    let TopNState::Rows(rows) = state.as_mut() else {
        panic!("raw rows")
    };
    *rows = TopRows {
        overflowed: true,
        ..rows.clone()
    };
    let e = l.to_batch(0, 1_000, &t).expect_err("overflowed");
    assert!(e.to_string().contains("more than 10000"), "{e}");
}
