//! Tests of a shard's dimension table against a model (`BTreeMap`s of every version).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{AsArray, Int64Array};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use proptest::prelude::*;

use super::*;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]))
}

fn limits() -> DimensionLimits {
    DimensionLimits {
        rows_max: 1_000_000,
        bytes_max: 1 << 30,
    }
}

fn table(versioned: bool, limits: DimensionLimits) -> DimensionTable {
    let store = RowStore::new(schema()).expect("store");
    DimensionTable::new("dim", store, limits, versioned)
}

/// Appends `value` as a one-row segment and upserts it.
fn put(t: &mut DimensionTable, key: &[u8], value: i64, from_ms: i64) {
    let batch = RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(vec![value]))])
        .expect("batch");
    let segment = t.store.append(batch).expect("append");
    t.upsert(key, RowRef { segment, row: 0 }, from_ms);
}

fn value(t: &DimensionTable, key: &[u8], at_ms: i64) -> Option<i64> {
    let row = t.lookup(key, at_ms)?;
    let columns = t.store.gather_rows(&[row]).expect("gather");
    Some(columns[0].as_primitive::<Int64Type>().value(0))
}

#[test]
fn latest_table_upserts_and_deletes() {
    let mut t = table(false, limits());
    put(&mut t, b"a", 1, 0);
    put(&mut t, b"b", 2, 0);
    put(&mut t, b"a", 3, 0);
    assert_eq!(value(&t, b"a", 0), Some(3));
    assert_eq!(value(&t, b"b", i64::MIN), Some(2));
    t.delete(b"b", 0);
    t.delete(b"zz", 0);
    assert_eq!(value(&t, b"b", 0), None);
    assert_eq!((t.keys(), t.rows()), (1, 1));
    t.enforce_limits().expect("within limits");
}

#[test]
fn versioned_table_answers_as_of_and_prunes_behind_the_watermark() {
    let mut t = table(true, limits());
    put(&mut t, b"a", 1, 100);
    put(&mut t, b"a", 2, 200);
    t.delete(b"a", 300);
    put(&mut t, b"a", 4, 400);
    assert_eq!(value(&t, b"a", 99), None);
    assert_eq!(value(&t, b"a", 100), Some(1));
    assert_eq!(value(&t, b"a", 250), Some(2));
    assert_eq!(value(&t, b"a", 300), None);
    assert_eq!(value(&t, b"a", 1000), Some(4));
    // Same valid-from time: the later record wins.
    put(&mut t, b"a", 5, 400);
    assert_eq!(value(&t, b"a", 400), Some(5));
    assert_eq!(t.rows(), 3);
    // The watermark at 250 still needs the version from 200; the next insert prunes.
    t.advance_watermark(250);
    put(&mut t, b"b", 9, 0);
    put(&mut t, b"a", 6, 500);
    assert_eq!(value(&t, b"a", 250), Some(2));
    assert_eq!(
        value(&t, b"a", 150),
        None,
        "the version from 100 was dropped"
    );
    assert_eq!(value(&t, b"b", 300), Some(9));
}

#[test]
fn limits_name_the_table_and_the_option() {
    let mut t = table(
        false,
        DimensionLimits {
            rows_max: 2,
            bytes_max: 1 << 30,
        },
    );
    put(&mut t, b"a", 1, 0);
    put(&mut t, b"b", 1, 0);
    t.enforce_limits().expect("two rows fit");
    put(&mut t, b"c", 1, 0);
    let e = t.enforce_limits().unwrap_err().to_string();
    assert!(
        e.contains("'dim'") && e.contains("dimension.rows-max"),
        "{e}"
    );

    let mut t = table(
        false,
        DimensionLimits {
            rows_max: 100,
            bytes_max: 4096,
        },
    );
    for i in 0..64u8 {
        put(&mut t, &[i; 20], i as i64, 0);
    }
    let e = t.enforce_limits().unwrap_err().to_string();
    assert!(e.contains("dimension.bytes-max"), "{e}");
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, i64, i64),
    Delete(u8, i64),
    Watermark(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6, any::<i64>(), 0i64..50).prop_map(|(k, v, t)| Op::Put(k, v, t)),
        1 => (0u8..6, 0i64..50).prop_map(|(k, t)| Op::Delete(k, t)),
        1 => (0i64..50).prop_map(Op::Watermark),
    ]
}

proptest! {
    /// A latest-version table equals a map that applies the same changes in order, also
    /// across compactions.
    #[test]
    fn latest_table_matches_a_map(ops in proptest::collection::vec(op(), 1..200)) {
        let mut t = table(false, limits());
        let mut model: BTreeMap<u8, i64> = BTreeMap::new();
        for (n, op) in ops.iter().enumerate() {
            match *op {
                Op::Put(k, v, _) => { put(&mut t, &[k], v, 0); model.insert(k, v); }
                Op::Delete(k, _) => { t.delete(&[k], 0); model.remove(&k); }
                Op::Watermark(_) => {}
            }
            if n % 17 == 0 {
                t.compact().expect("compact");
            }
        }
        for k in 0u8..6 {
            prop_assert_eq!(value(&t, &[k], 0), model.get(&k).copied());
        }
        prop_assert_eq!(t.rows(), model.len());
    }

    /// A versioned table answers like the full history for every time at or after the
    /// watermark, however versions arrive and are pruned.
    #[test]
    fn versioned_table_matches_the_history(ops in proptest::collection::vec(op(), 1..200)) {
        let mut t = table(true, limits());
        // key -> from -> value (None: deleted); later records at the same time win.
        let mut history: BTreeMap<u8, BTreeMap<i64, Option<i64>>> = BTreeMap::new();
        let mut watermark = i64::MIN;
        for (n, op) in ops.iter().enumerate() {
            match *op {
                // Versions behind the watermark are not modelled (they may meet pruned
                // history): the changelog is assumed ahead of the stream.
                Op::Put(k, v, at) => {
                    let at = at.max(watermark);
                    put(&mut t, &[k], v, at);
                    history.entry(k).or_default().insert(at, Some(v));
                }
                Op::Delete(k, at) => {
                    let at = at.max(watermark);
                    t.delete(&[k], at);
                    history.entry(k).or_default().insert(at, None);
                }
                Op::Watermark(w) => {
                    watermark = watermark.max(w);
                    t.advance_watermark(watermark);
                }
            }
            if n % 23 == 0 {
                t.compact().expect("compact");
            }
        }
        for k in 0u8..6 {
            for at in watermark.max(0)..55 {
                let expected = history
                    .get(&k)
                    .and_then(|h| h.range(..=at).next_back())
                    .and_then(|(_, v)| *v);
                prop_assert_eq!(value(&t, &[k], at), expected, "key {} at {}", k, at);
            }
        }
    }
}
