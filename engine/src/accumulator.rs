//! Aggregate accumulators: fixed-size slots updated column by column.
//!
//! Every aggregate of every group owns one [`Slot`] (two machine words). Updating is
//! vectorised: for one aggregate, one loop over the batch's rows and their group numbers.
//! Partial slots from other shards merge into final ones with [`Accumulator::merge`].

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimestampMillisecondType};

use crate::error::{EngineError, Result};
use crate::plan::{AggCall, AggFunc};

/// The state of one aggregate of one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct Slot {
    /// Count, integer sum, integer value, f64 bits, or an index into the string store.
    pub a: u64,
    /// Count of values (sums, averages) or 1 when a value is present (min, max).
    pub b: u64,
}

impl Slot {
    pub const EMPTY: Slot = Slot { a: 0, b: 0 };
}

/// How the values of an aggregate are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccKind {
    CountStar,
    CountValues,
    SumInt,
    SumFloat,
    Avg,
    MinInt,
    MaxInt,
    MinFloat,
    MaxFloat,
    MinStr,
    MaxStr,
}

/// Strings kept by MIN/MAX over strings, owned by one window's group table.
pub type StringStore = Vec<Box<[u8]>>;

/// One aggregate of a query: its kind and the types it reads and writes.
#[derive(Debug, Clone)]
pub struct Accumulator {
    pub kind: AccKind,
    /// The type the argument is cast to before updating (Int64, Float64 or Utf8).
    pub input_type: Option<DataType>,
    pub output_type: DataType,
}

fn is_integer_like(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Timestamp(_, _)
            | DataType::Boolean
    )
}

impl Accumulator {
    pub fn new(call: &AggCall) -> Result<Self> {
        let arg_type = call.arg.as_ref().map(|e| e.data_type());
        let float = matches!(arg_type, Some(DataType::Float32 | DataType::Float64));
        let int = arg_type.as_ref().is_some_and(is_integer_like);
        let string = matches!(arg_type, Some(DataType::Utf8));
        let unsupported = || {
            EngineError::Internal(format!(
                "aggregate {:?} over {:?} reached the executor",
                call.func, arg_type
            ))
        };
        let (kind, input_type) = match call.func {
            AggFunc::Count if call.arg.is_none() => (AccKind::CountStar, None),
            AggFunc::Count => (AccKind::CountValues, None),
            AggFunc::Sum if int => (AccKind::SumInt, Some(DataType::Int64)),
            AggFunc::Sum if float => (AccKind::SumFloat, Some(DataType::Float64)),
            AggFunc::Avg if int || float => (AccKind::Avg, Some(DataType::Float64)),
            AggFunc::Min if int => (AccKind::MinInt, Some(DataType::Int64)),
            AggFunc::Max if int => (AccKind::MaxInt, Some(DataType::Int64)),
            AggFunc::Min if float => (AccKind::MinFloat, Some(DataType::Float64)),
            AggFunc::Max if float => (AccKind::MaxFloat, Some(DataType::Float64)),
            AggFunc::Min if string => (AccKind::MinStr, Some(DataType::Utf8)),
            AggFunc::Max if string => (AccKind::MaxStr, Some(DataType::Utf8)),
            _ => return Err(unsupported()),
        };
        Ok(Accumulator {
            kind,
            input_type,
            output_type: call.output_type.clone(),
        })
    }

    /// Casts an evaluated argument to the type this accumulator reads.
    pub fn prepare(&self, arg: Option<&ArrayRef>) -> Result<Option<ArrayRef>> {
        match (&self.input_type, arg) {
            (Some(t), Some(a)) if a.data_type() == t => Ok(Some(a.clone())),
            (Some(DataType::Int64), Some(a))
                if matches!(a.data_type(), DataType::Timestamp(_, _)) =>
            {
                let ts = a.as_primitive::<TimestampMillisecondType>();
                Ok(Some(Arc::new(ts.reinterpret_cast::<Int64Type>())))
            }
            (Some(t), Some(a)) => Ok(Some(cast(a, t)?)),
            (None, a) => Ok(a.cloned()),
            (Some(_), None) => Err(EngineError::Internal("aggregate argument missing".into())),
        }
    }

    /// Updates `slots[groups[i] * stride + index]` with row `rows[i]` of `input`.
    #[allow(clippy::too_many_arguments)] // the hot loop's inputs, kept as plain slices
    pub fn update(
        &self,
        slots: &mut [Slot],
        stride: usize,
        index: usize,
        groups: &[u32],
        rows: &[u32],
        input: Option<&ArrayRef>,
        strings: &mut StringStore,
    ) {
        debug_assert_eq!(groups.len(), rows.len());
        let at = |g: u32| g as usize * stride + index;
        match self.kind {
            AccKind::CountStar => {
                for &g in groups {
                    slots[at(g)].a += 1;
                }
            }
            AccKind::CountValues => {
                let Some(a) = input else { return };
                match a.logical_nulls() {
                    None => {
                        for &g in groups {
                            slots[at(g)].a += 1;
                        }
                    }
                    Some(nulls) => {
                        for (&g, &r) in groups.iter().zip(rows) {
                            slots[at(g)].a += nulls.is_valid(r as usize) as u64;
                        }
                    }
                }
            }
            AccKind::SumInt | AccKind::MinInt | AccKind::MaxInt => {
                let Some(a) = input else { return };
                let a = a.as_primitive::<Int64Type>();
                let values = a.values();
                let valid = |r: u32| a.is_valid(r as usize);
                for (&g, &r) in groups.iter().zip(rows) {
                    if a.null_count() > 0 && !valid(r) {
                        continue;
                    }
                    let v = values[r as usize];
                    let s = &mut slots[at(g)];
                    match self.kind {
                        AccKind::SumInt => {
                            s.a = (s.a as i64).wrapping_add(v) as u64;
                            s.b += 1;
                        }
                        AccKind::MinInt => {
                            if s.b == 0 || v < s.a as i64 {
                                s.a = v as u64;
                                s.b = 1;
                            }
                        }
                        _ => {
                            if s.b == 0 || v > s.a as i64 {
                                s.a = v as u64;
                                s.b = 1;
                            }
                        }
                    }
                }
            }
            AccKind::SumFloat | AccKind::Avg | AccKind::MinFloat | AccKind::MaxFloat => {
                let Some(a) = input else { return };
                let a = a.as_primitive::<Float64Type>();
                let values = a.values();
                let has_nulls = a.null_count() > 0;
                for (&g, &r) in groups.iter().zip(rows) {
                    if has_nulls && a.is_null(r as usize) {
                        continue;
                    }
                    let v = values[r as usize];
                    let s = &mut slots[at(g)];
                    match self.kind {
                        AccKind::SumFloat | AccKind::Avg => {
                            s.a = (f64::from_bits(s.a) + v).to_bits();
                            s.b += 1;
                        }
                        AccKind::MinFloat => {
                            if s.b == 0 || v < f64::from_bits(s.a) {
                                s.a = v.to_bits();
                                s.b = 1;
                            }
                        }
                        _ => {
                            if s.b == 0 || v > f64::from_bits(s.a) {
                                s.a = v.to_bits();
                                s.b = 1;
                            }
                        }
                    }
                }
            }
            AccKind::MinStr | AccKind::MaxStr => {
                let Some(a) = input else { return };
                let a = a.as_string::<i32>();
                for (&g, &r) in groups.iter().zip(rows) {
                    if a.is_null(r as usize) {
                        continue;
                    }
                    let v = a.value(r as usize).as_bytes();
                    let s = &mut slots[at(g)];
                    update_string(self.kind, s, v, strings);
                }
            }
        }
    }

    /// Merges a partial slot (with its strings) into a final one.
    pub fn merge(
        &self,
        into: &mut Slot,
        from: Slot,
        from_str: Option<&[u8]>,
        strings: &mut StringStore,
    ) {
        match self.kind {
            AccKind::CountStar | AccKind::CountValues => into.a += from.a,
            AccKind::SumInt => {
                into.a = (into.a as i64).wrapping_add(from.a as i64) as u64;
                into.b += from.b;
            }
            AccKind::SumFloat | AccKind::Avg => {
                into.a = (f64::from_bits(into.a) + f64::from_bits(from.a)).to_bits();
                into.b += from.b;
            }
            AccKind::MinInt | AccKind::MaxInt => {
                if from.b == 0 {
                    return;
                }
                let better = if self.kind == AccKind::MinInt {
                    (from.a as i64) < into.a as i64
                } else {
                    (from.a as i64) > into.a as i64
                };
                if into.b == 0 || better {
                    *into = from;
                }
            }
            AccKind::MinFloat | AccKind::MaxFloat => {
                if from.b == 0 {
                    return;
                }
                let (f, i) = (f64::from_bits(from.a), f64::from_bits(into.a));
                let better = if self.kind == AccKind::MinFloat {
                    f < i
                } else {
                    f > i
                };
                if into.b == 0 || better {
                    *into = from;
                }
            }
            AccKind::MinStr | AccKind::MaxStr => {
                if let Some(v) = from_str {
                    update_string(self.kind, into, v, strings);
                }
            }
        }
    }

    /// Whether slots of this kind refer to the string store.
    pub fn uses_strings(&self) -> bool {
        matches!(self.kind, AccKind::MinStr | AccKind::MaxStr)
    }

    /// Builds the output column from the slots of `groups` (in order).
    pub fn finish(
        &self,
        slots: &[Slot],
        stride: usize,
        index: usize,
        groups: impl Iterator<Item = u32> + Clone,
        strings: &StringStore,
    ) -> Result<ArrayRef> {
        let get = |g: u32| slots[g as usize * stride + index];
        let array: ArrayRef = match self.kind {
            AccKind::CountStar | AccKind::CountValues => Arc::new(Int64Array::from_iter_values(
                groups.map(|g| get(g).a as i64),
            )),
            AccKind::SumInt | AccKind::MinInt | AccKind::MaxInt => {
                Arc::new(Int64Array::from_iter(groups.map(|g| {
                    let s = get(g);
                    (s.b > 0).then_some(s.a as i64)
                })))
            }
            AccKind::SumFloat | AccKind::MinFloat | AccKind::MaxFloat => {
                Arc::new(Float64Array::from_iter(groups.map(|g| {
                    let s = get(g);
                    (s.b > 0).then_some(f64::from_bits(s.a))
                })))
            }
            AccKind::Avg => Arc::new(Float64Array::from_iter(groups.map(|g| {
                let s = get(g);
                (s.b > 0).then(|| f64::from_bits(s.a) / s.b as f64)
            }))),
            AccKind::MinStr | AccKind::MaxStr => {
                Arc::new(StringArray::from_iter(groups.map(|g| {
                    let s = get(g);
                    (s.b > 0).then(|| String::from_utf8_lossy(&strings[s.a as usize]).into_owned())
                })))
            }
        };
        if array.data_type() == &self.output_type {
            return Ok(array);
        }
        match (&self.output_type, self.kind) {
            (DataType::Timestamp(_, _), AccKind::MinInt | AccKind::MaxInt | AccKind::SumInt) => {
                let ints = array.as_primitive::<Int64Type>();
                Ok(Arc::new(
                    ints.reinterpret_cast::<TimestampMillisecondType>(),
                ))
            }
            (DataType::Boolean, _) => {
                let ints = array.as_primitive::<Int64Type>();
                Ok(Arc::new(
                    ints.iter()
                        .map(|v| v.map(|v| v != 0))
                        .collect::<BooleanArray>(),
                ))
            }
            _ => Ok(cast(&array, &self.output_type)?),
        }
    }
}

fn update_string(kind: AccKind, s: &mut Slot, v: &[u8], strings: &mut StringStore) {
    if s.b == 0 {
        strings.push(v.into());
        s.a = (strings.len() - 1) as u64;
        s.b = 1;
        return;
    }
    let cur = &strings[s.a as usize];
    let better = if kind == AccKind::MinStr {
        v < &cur[..]
    } else {
        v > &cur[..]
    };
    if better {
        strings[s.a as usize] = v.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Expr;

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
            let p = acc.prepare(Some(&input)).unwrap();
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
        let p = acc.prepare(Some(&input)).unwrap();
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
        let min =
            Accumulator::new(&call(AggFunc::Min, Some(DataType::Utf8), DataType::Utf8)).unwrap();
        let max =
            Accumulator::new(&call(AggFunc::Max, Some(DataType::Utf8), DataType::Utf8)).unwrap();
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
        let p = acc.prepare(Some(&input)).unwrap();
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
}
