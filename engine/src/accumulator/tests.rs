//! Tests of the accumulators through their public operations (update, merge, finish).

use super::*;
use crate::plan::Expr;
use arrow::array::{Int32Array, TimestampMillisecondArray};
use proptest::prelude::*;

fn times(n: usize) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from_iter_values(0..n as i64))
}

fn call(func: AggFunc, t: Option<DataType>, out: DataType) -> AggCall {
    AggCall {
        func,
        arg: t.map(|t| Expr::Column {
            index: 0,
            name: "x".into(),
            data_type: t,
        }),
        output_type: out,
    }
}

#[test]
fn int_aggregates_skip_nulls_and_merge() {
    let input: ArrayRef = Arc::new(Int64Array::from(vec![Some(5), None, Some(-3), Some(9)]));
    let rows = [0u32, 1, 2, 3];
    let groups = [0u32, 0, 1, 0];
    let kinds = [
        (AggFunc::Sum, DataType::Int64),
        (AggFunc::Min, DataType::Int64),
        (AggFunc::Max, DataType::Int64),
        (AggFunc::Count, DataType::Int64),
    ];
    let accs: Vec<Accumulator> = kinds
        .iter()
        .map(|(f, o)| Accumulator::new(&call(*f, Some(DataType::Int64), o.clone())).unwrap())
        .collect();
    let stride = accs.len();
    let mut slots = vec![Slot::EMPTY; 2 * stride];
    let mut strings = StringStore::new();
    for (i, acc) in accs.iter().enumerate() {
        let p = acc.prepare(Some(&input), &times(input.len())).unwrap();
        acc.update(
            &mut slots,
            stride,
            i,
            &groups,
            &rows,
            p.as_ref(),
            &mut strings,
        );
    }
    let col = |i: usize| {
        accs[i]
            .finish(&slots, stride, i, 0..2u32, &strings)
            .unwrap()
    };
    assert_eq!(col(0).as_primitive::<Int64Type>().values(), &[14, -3]);
    assert_eq!(col(1).as_primitive::<Int64Type>().values(), &[5, -3]);
    assert_eq!(col(2).as_primitive::<Int64Type>().values(), &[9, -3]);
    assert_eq!(col(3).as_primitive::<Int64Type>().values(), &[2, 1]);
    // merging group 1 into group 0 gives the totals of all rows
    let mut merged = slots.clone();
    for (i, acc) in accs.iter().enumerate() {
        let from = slots[stride + i];
        acc.merge(&mut merged[i], from, None, &mut strings);
    }
    let m = |i: usize| {
        accs[i]
            .finish(&merged, stride, i, 0..1u32, &strings)
            .unwrap()
    };
    assert_eq!(m(0).as_primitive::<Int64Type>().value(0), 11);
    assert_eq!(m(1).as_primitive::<Int64Type>().value(0), -3);
    assert_eq!(m(2).as_primitive::<Int64Type>().value(0), 9);
    assert_eq!(m(3).as_primitive::<Int64Type>().value(0), 3);
}

#[test]
fn avg_and_empty_groups_are_null() {
    let acc = Accumulator::new(&call(
        AggFunc::Avg,
        Some(DataType::Int32),
        DataType::Float64,
    ))
    .unwrap();
    let input: ArrayRef = Arc::new(arrow::array::Int32Array::from(vec![1, 2, 4]));
    let p = acc.prepare(Some(&input), &times(input.len())).unwrap();
    let mut slots = vec![Slot::EMPTY; 2];
    let mut strings = StringStore::new();
    acc.update(
        &mut slots,
        1,
        0,
        &[0, 0, 0],
        &[0, 1, 2],
        p.as_ref(),
        &mut strings,
    );
    let out = acc.finish(&slots, 1, 0, 0..2u32, &strings).unwrap();
    let out = out.as_primitive::<Float64Type>();
    assert!((out.value(0) - 7.0 / 3.0).abs() < 1e-12);
    assert!(out.is_null(1));
}

#[test]
fn min_max_strings() {
    let min = Accumulator::new(&call(AggFunc::Min, Some(DataType::Utf8), DataType::Utf8)).unwrap();
    let max = Accumulator::new(&call(AggFunc::Max, Some(DataType::Utf8), DataType::Utf8)).unwrap();
    let input: ArrayRef = Arc::new(StringArray::from(vec![
        Some("m"),
        None,
        Some("a"),
        Some("z"),
    ]));
    let mut slots = vec![Slot::EMPTY; 2];
    let mut strings = StringStore::new();
    min.update(
        &mut slots,
        2,
        0,
        &[0; 4],
        &[0, 1, 2, 3],
        Some(&input),
        &mut strings,
    );
    max.update(
        &mut slots,
        2,
        1,
        &[0; 4],
        &[0, 1, 2, 3],
        Some(&input),
        &mut strings,
    );
    let a = min.finish(&slots, 2, 0, 0..1u32, &strings).unwrap();
    let b = max.finish(&slots, 2, 1, 0..1u32, &strings).unwrap();
    assert_eq!(a.as_string::<i32>().value(0), "a");
    assert_eq!(b.as_string::<i32>().value(0), "z");
}

#[test]
fn timestamp_min_keeps_its_type() {
    let ts = DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None);
    let acc = Accumulator::new(&call(AggFunc::Max, Some(ts.clone()), ts.clone())).unwrap();
    let input: ArrayRef = Arc::new(arrow::array::TimestampMillisecondArray::from(vec![
        3, 10, 7,
    ]));
    let p = acc.prepare(Some(&input), &times(input.len())).unwrap();
    let mut slots = vec![Slot::EMPTY; 1];
    let mut strings = StringStore::new();
    acc.update(
        &mut slots,
        1,
        0,
        &[0, 0, 0],
        &[0, 1, 2],
        p.as_ref(),
        &mut strings,
    );
    let out = acc.finish(&slots, 1, 0, 0..1u32, &strings).unwrap();
    assert_eq!(out.data_type(), &ts);
    assert_eq!(out.as_primitive::<TimestampMillisecondType>().value(0), 10);
}

/// Updates one group table (one slot per group) with `rows`.
fn run(
    acc: &Accumulator,
    input: &ArrayRef,
    event_time: &ArrayRef,
    groups: &[u32],
    rows: &[u32],
    group_count: usize,
) -> (Vec<Slot>, StringStore, usize) {
    let p = acc.prepare(Some(input), event_time).expect("prepare");
    let mut slots = vec![Slot::EMPTY; group_count];
    let mut strings = StringStore::new();
    let grown = acc.update(&mut slots, 1, 0, groups, rows, p.as_ref(), &mut strings);
    (slots, strings, grown)
}

/// Merges partial tables into a final one, group by group.
fn merge_parts(
    acc: &Accumulator,
    parts: &[(Vec<Slot>, StringStore, usize)],
    group_count: usize,
) -> (Vec<Slot>, StringStore) {
    let mut slots = vec![Slot::EMPTY; group_count];
    let mut strings = StringStore::new();
    for (p_slots, p_strings, _) in parts {
        for g in 0..group_count {
            let from = p_slots[g];
            let side = (acc.uses_strings() && from.b > 0).then(|| &p_strings[from.a as usize]);
            acc.merge(&mut slots[g], from, side, &mut strings);
        }
    }
    (slots, strings)
}

fn finish(acc: &Accumulator, slots: &[Slot], strings: &StringStore) -> ArrayRef {
    acc.finish(slots, 1, 0, 0..slots.len() as u32, strings)
        .expect("finish")
}

const NEW_FUNCS: [AggFunc; 8] = [
    AggFunc::CountDistinct,
    AggFunc::FirstValue,
    AggFunc::LastValue,
    AggFunc::StddevPop,
    AggFunc::StddevSamp,
    AggFunc::VarPop,
    AggFunc::VarSamp,
    AggFunc::ApproxCountDistinct,
];

fn output_type(func: AggFunc, arg: &DataType) -> DataType {
    match func {
        AggFunc::CountDistinct | AggFunc::ApproxCountDistinct => DataType::Int64,
        AggFunc::FirstValue | AggFunc::LastValue => arg.clone(),
        _ => DataType::Float64,
    }
}

fn input_of(t: &DataType, values: &[Option<i64>]) -> ArrayRef {
    match t {
        DataType::Int32 => Arc::new(Int32Array::from_iter(
            values.iter().map(|v| v.map(|v| v as i32)),
        )),
        DataType::Float64 => Arc::new(Float64Array::from_iter(
            values.iter().map(|v| v.map(|v| v as f64 / 2.0)),
        )),
        _ => Arc::new(StringArray::from_iter(
            values.iter().map(|v| v.map(|v| format!("s{v}"))),
        )),
    }
}

fn assert_same(
    func: AggFunc,
    a: &ArrayRef,
    b: &ArrayRef,
) -> std::result::Result<(), TestCaseError> {
    if matches!(
        func,
        AggFunc::FirstValue
            | AggFunc::LastValue
            | AggFunc::CountDistinct
            | AggFunc::ApproxCountDistinct
    ) {
        prop_assert_eq!(a, b);
        return Ok(());
    }
    let (a, b) = (
        a.as_primitive::<Float64Type>(),
        b.as_primitive::<Float64Type>(),
    );
    prop_assert_eq!(a.len(), b.len());
    for i in 0..a.len() {
        prop_assert_eq!(a.is_null(i), b.is_null(i));
        if a.is_valid(i) {
            prop_assert!(
                (a.value(i) - b.value(i)).abs() < 1e-9 * (1.0 + a.value(i).abs()),
                "{} vs {}",
                a.value(i),
                b.value(i)
            );
        }
    }
    Ok(())
}

proptest! {
    /// Merging the partials of any partition of the rows gives what one table over all rows
    /// gives, for every new aggregate and argument type.
    #[test]
    fn merge_of_any_partition_equals_the_whole(
        rows in proptest::collection::vec((proptest::option::of(-4i64..4), 0i64..4, 0u32..3, 0usize..3), 0..80),
    ) {
        let values: Vec<Option<i64>> = rows.iter().map(|r| r.0).collect();
        let event_time: ArrayRef = Arc::new(TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.1)));
        let groups: Vec<u32> = rows.iter().map(|r| r.2).collect();
        let all: Vec<u32> = (0..rows.len() as u32).collect();
        for t in [DataType::Int32, DataType::Float64, DataType::Utf8] {
            let input = input_of(&t, &values);
            for func in NEW_FUNCS {
                if t == DataType::Utf8 && matches!(func, AggFunc::StddevPop | AggFunc::StddevSamp | AggFunc::VarPop | AggFunc::VarSamp) {
                    continue;
                }
                let acc = Accumulator::new(&call(func, Some(t.clone()), output_type(func, &t))).expect("accumulator");
                let (whole, whole_strings, grown) = run(&acc, &input, &event_time, &groups, &all, 3);
                if !matches!(func, AggFunc::FirstValue | AggFunc::LastValue) {
                    // growth reported by update is exactly what the side table holds
                    prop_assert_eq!(grown, whole_strings.iter().map(SideValue::bytes).sum::<usize>());
                }
                let parts: Vec<_> = (0..3).map(|part| {
                    let (g, r): (Vec<u32>, Vec<u32>) = rows.iter().enumerate()
                        .filter(|(_, row)| row.3 == part)
                        .map(|(i, row)| (row.2, i as u32))
                        .unzip();
                    run(&acc, &input, &event_time, &g, &r, 3)
                }).collect();
                let (merged, merged_strings) = merge_parts(&acc, &parts, 3);
                let a = finish(&acc, &whole, &whole_strings);
                let b = finish(&acc, &merged, &merged_strings);
                prop_assert_eq!(a.data_type(), &output_type(func, &t));
                assert_same(func, &a, &b)?;
            }
        }
    }
}

#[test]
fn new_aggregates_compute_known_values() {
    // group 0: (t, v) = (5, 3) (2, 7) (2, 1) (9, 3) (4, NULL); group 1: (1, 10)
    let values: ArrayRef = Arc::new(Int64Array::from(vec![
        Some(3),
        Some(7),
        Some(1),
        Some(3),
        None,
        Some(10),
    ]));
    let ts: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![5, 2, 2, 9, 4, 1]));
    let groups = [0u32, 0, 0, 0, 0, 1];
    let rows = [0u32, 1, 2, 3, 4, 5];
    let col = |func: AggFunc| {
        let acc = Accumulator::new(&call(
            func,
            Some(DataType::Int64),
            output_type(func, &DataType::Int64),
        ))
        .expect("acc");
        let (slots, strings, _) = run(&acc, &values, &ts, &groups, &rows, 3);
        finish(&acc, &slots, &strings)
    };
    let ints = |a: ArrayRef| a.as_primitive::<Int64Type>().iter().collect::<Vec<_>>();
    assert_eq!(
        ints(col(AggFunc::CountDistinct)),
        vec![Some(3), Some(1), Some(0)]
    );
    assert_eq!(
        ints(col(AggFunc::ApproxCountDistinct)),
        vec![Some(3), Some(1), Some(0)]
    );
    // the tie at t = 2 goes to the smaller value for FIRST_VALUE
    assert_eq!(
        ints(col(AggFunc::FirstValue)),
        vec![Some(1), Some(10), None]
    );
    assert_eq!(ints(col(AggFunc::LastValue)), vec![Some(3), Some(10), None]);
    let floats = |a: ArrayRef| a.as_primitive::<Float64Type>().iter().collect::<Vec<_>>();
    // 3, 7, 1, 3: mean 3.5, M2 = 0.25 + 12.25 + 6.25 + 0.25 = 19
    assert_eq!(
        floats(col(AggFunc::VarPop)),
        vec![Some(19.0 / 4.0), Some(0.0), None]
    );
    assert_eq!(
        floats(col(AggFunc::VarSamp)),
        vec![Some(19.0 / 3.0), None, None]
    );
    assert_eq!(
        floats(col(AggFunc::StddevSamp))[0],
        Some((19.0f64 / 3.0).sqrt())
    );
    assert_eq!(floats(col(AggFunc::StddevPop))[1], Some(0.0));
}

#[test]
fn first_value_keeps_timestamps_and_strings() {
    let ts_type = DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None);
    let acc = Accumulator::new(&call(
        AggFunc::LastValue,
        Some(ts_type.clone()),
        ts_type.clone(),
    ))
    .expect("acc");
    let values: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![100, 50, 70]));
    let ts: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![1, 3, 2]));
    let (slots, strings, _) = run(&acc, &values, &ts, &[0, 0, 0], &[0, 1, 2], 1);
    let out = finish(&acc, &slots, &strings);
    assert_eq!(out.data_type(), &ts_type);
    assert_eq!(out.as_primitive::<TimestampMillisecondType>().value(0), 50);
    let acc = Accumulator::new(&call(
        AggFunc::FirstValue,
        Some(DataType::Utf8),
        DataType::Utf8,
    ))
    .expect("acc");
    let values: ArrayRef = Arc::new(StringArray::from(vec![Some("late"), None, Some("early")]));
    let ts: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![5, 1, 2]));
    let (slots, strings, grown) = run(&acc, &values, &ts, &[0, 0, 0], &[0, 1, 2], 1);
    assert_eq!(
        finish(&acc, &slots, &strings).as_string::<i32>().value(0),
        "early"
    );
    assert!(grown >= "late".len(), "the string is counted: {grown}");
}

#[test]
fn distinct_growth_is_reported_once_per_new_value() {
    let acc = Accumulator::new(&call(
        AggFunc::CountDistinct,
        Some(DataType::Utf8),
        DataType::Int64,
    ))
    .expect("acc");
    let values: ArrayRef = Arc::new(StringArray::from(vec!["aaaa"; 100]));
    let (_, strings, grown) = run(
        &acc,
        &values,
        &times(100),
        &[0; 100],
        &(0..100).collect::<Vec<_>>(),
        1,
    );
    assert_eq!(strings.len(), 1);
    assert_eq!(grown, strings[0].bytes());
    let unique: ArrayRef = Arc::new(StringArray::from_iter_values(
        (0..100).map(|i| format!("v{i:04}")),
    ));
    let (_, _, grown_unique) = run(
        &acc,
        &unique,
        &times(100),
        &[0; 100],
        &(0..100).collect::<Vec<_>>(),
        1,
    );
    assert!(grown_unique >= grown + 99 * 5, "{grown_unique} vs {grown}");
}

#[test]
fn unsupported_argument_types_are_refused() {
    let e = Accumulator::new(&call(
        AggFunc::VarPop,
        Some(DataType::Utf8),
        DataType::Float64,
    ));
    assert!(e.is_err());
    let e = Accumulator::new(&call(
        AggFunc::CountDistinct,
        Some(DataType::Binary),
        DataType::Int64,
    ));
    assert!(e.is_err());
}
