//! Aggregate accumulators: fixed-size slots updated column by column.
//!
//! Every aggregate of every group owns one [`Slot`] (two machine words). Updating is
//! vectorised: for one aggregate, one loop over the batch's rows and their group numbers.
//! Partial slots from other shards merge into final ones with [`Accumulator::merge`].
//!
//! COUNT, SUM, AVG and MIN/MAX over numbers live in the slot itself (the fast path). The
//! other aggregates keep a [`SideValue`] per group in the window's side table
//! ([`StringStore`]): MIN/MAX over strings, COUNT(DISTINCT) (`distinct_set.rs`),
//! FIRST_VALUE/LAST_VALUE (`first_last.rs`), STDDEV/VAR (`moments.rs`) and
//! APPROX_COUNT_DISTINCT (`hyperloglog.rs`). [`Accumulator::update`] returns the bytes such
//! state grew by, so the window operator counts them against `state_bytes_max`.

mod distinct_set;
mod first_last;
mod hyperloglog;
mod inner_groups;
mod moments;
mod side_state;
#[cfg(test)]
mod tests;
mod top_n;
mod top_rows;

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, PrimitiveArray, StringArray,
    StructArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Fields, Float64Type, Int64Type, TimestampMillisecondType};

use crate::error::{EngineError, Result};
use crate::plan::{AggCall, AggFunc, Aggregation};

pub use distinct_set::{canonical_float_bits, DistinctSet};
pub use first_last::{Candidate, Timed, ValueKind};
pub use hyperloglog::{hash_bytes, mix64, HyperLogLog, HLL_PRECISION, HLL_REGISTERS};
pub use inner_groups::{InnerGroups, INNER_GROUPS_MAX};
pub use moments::{MomentStat, Moments};
pub use side_state::{SideValue, StringStore};
pub use top_n::{inner_aggregate_allowed, TopNSpec, TopNState};
pub use top_rows::{TopRows, TOP_ROWS_MAX};

/// The state of one aggregate of one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct Slot {
    /// Count, integer sum, integer value, f64 bits, or an index into the side table.
    pub a: u64,
    /// Count of values (sums, averages) or 1 when a value is present (min, max, side state).
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
    /// COUNT(DISTINCT x): a [`DistinctSet`] per group.
    CountDistinct(ValueKind),
    /// FIRST_VALUE: a [`Timed`] per group; the input is a struct of (event time, value).
    First(ValueKind),
    /// LAST_VALUE, likewise.
    Last(ValueKind),
    /// STDDEV_* / VAR_*: [`Moments`] per group.
    Moments(MomentStat),
    /// APPROX_COUNT_DISTINCT: a [`HyperLogLog`] per group.
    ApproxDistinct(ValueKind),
    /// A per-window top-N: a [`TopNState`] per group (see `top_n.rs`).
    TopN,
}

/// One aggregate of a query: its kind and the types it reads and writes.
#[derive(Debug, Clone)]
pub struct Accumulator {
    pub kind: AccKind,
    /// The type the argument is cast to before updating (Int64, Float64 or Utf8).
    pub input_type: Option<DataType>,
    pub output_type: DataType,
    /// The top-N of [`AccKind::TopN`].
    pub top_n: Option<Arc<TopNSpec>>,
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

/// A prepared argument column, downcast once per batch.
enum ArgView<'a> {
    Int(&'a PrimitiveArray<Int64Type>),
    Float(&'a PrimitiveArray<Float64Type>),
    Text(&'a StringArray),
}

impl<'a> ArgView<'a> {
    fn new(kind: ValueKind, a: &'a ArrayRef) -> Option<ArgView<'a>> {
        Some(match kind {
            ValueKind::Int => ArgView::Int(a.as_primitive_opt::<Int64Type>()?),
            ValueKind::Float => ArgView::Float(a.as_primitive_opt::<Float64Type>()?),
            ValueKind::Text => ArgView::Text(a.as_string_opt::<i32>()?),
        })
    }

    /// Row `r`'s value, None when NULL.
    #[inline]
    fn get(&self, r: usize) -> Option<Candidate<'a>> {
        match self {
            ArgView::Int(a) => a.is_valid(r).then(|| Candidate::Word(a.value(r) as u64)),
            ArgView::Float(a) => a.is_valid(r).then(|| Candidate::Word(a.value(r).to_bits())),
            ArgView::Text(a) => a
                .is_valid(r)
                .then(|| Candidate::Text(a.value(r).as_bytes())),
        }
    }
}

/// The side value of `slot`, created by `init` (and counted in `grown`) if the group has none.
#[inline]
fn side_of<'s>(
    slot: &mut Slot,
    strings: &'s mut StringStore,
    grown: &mut usize,
    init: impl FnOnce() -> SideValue,
) -> &'s mut SideValue {
    if slot.b == 0 {
        let v = init();
        *grown += v.bytes();
        strings.push(v);
        slot.a = (strings.len() - 1) as u64;
        slot.b = 1;
    }
    &mut strings[slot.a as usize]
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
        let value = if int {
            Some((ValueKind::Int, DataType::Int64))
        } else if float {
            Some((ValueKind::Float, DataType::Float64))
        } else if string {
            Some((ValueKind::Text, DataType::Utf8))
        } else {
            None
        };
        let moments = |stat| match int || float {
            true => Ok((AccKind::Moments(stat), Some(DataType::Float64))),
            false => Err(unsupported()),
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
            AggFunc::StddevPop => moments(MomentStat::StddevPop)?,
            AggFunc::StddevSamp => moments(MomentStat::StddevSamp)?,
            AggFunc::VarPop => moments(MomentStat::VarPop)?,
            AggFunc::VarSamp => moments(MomentStat::VarSamp)?,
            f => {
                let (v, t) = value.ok_or_else(unsupported)?;
                let kind = match f {
                    AggFunc::CountDistinct => AccKind::CountDistinct(v),
                    AggFunc::FirstValue => AccKind::First(v),
                    AggFunc::LastValue => AccKind::Last(v),
                    AggFunc::ApproxCountDistinct => AccKind::ApproxDistinct(v),
                    _ => return Err(unsupported()),
                };
                (kind, Some(t))
            }
        };
        Ok(Accumulator {
            kind,
            input_type,
            output_type: call.output_type.clone(),
            top_n: None,
        })
    }

    /// The accumulators of an aggregation's aggregates (a top-N's with its spec).
    pub fn for_aggregation(aggregation: &Aggregation) -> Result<Vec<Accumulator>> {
        aggregation
            .aggregates
            .iter()
            .map(|call| match (call.func, &aggregation.top_n) {
                (AggFunc::TopN, Some(plan)) => Ok(Accumulator {
                    kind: AccKind::TopN,
                    input_type: None,
                    output_type: call.output_type.clone(),
                    top_n: Some(Arc::new(TopNSpec::new(plan)?)),
                }),
                _ => Accumulator::new(call),
            })
            .collect()
    }

    /// Evaluates `call`'s argument over `batch` and prepares it ([`Self::prepare`]); a
    /// top-N reads several columns of the batch.
    pub fn prepare_batch(
        &self,
        call: &AggCall,
        batch: &arrow::array::RecordBatch,
        event_time: &ArrayRef,
    ) -> Result<Option<ArrayRef>> {
        if let Some(spec) = &self.top_n {
            return Ok(Some(spec.prepare(batch, event_time)?));
        }
        let v = call.arg.as_ref().map(|e| e.evaluate(batch)).transpose()?;
        self.prepare(v.as_ref(), event_time)
    }

    /// Casts an evaluated argument to the type this accumulator reads. FIRST_VALUE and
    /// LAST_VALUE read a struct of the rows' event times (`event_time`, the window's time
    /// column) and the value.
    pub fn prepare(
        &self,
        arg: Option<&ArrayRef>,
        event_time: &ArrayRef,
    ) -> Result<Option<ArrayRef>> {
        let value = self.cast_arg(arg)?;
        match (self.kind, value) {
            (AccKind::First(_) | AccKind::Last(_), Some(v)) => {
                let time: ArrayRef = match event_time.as_primitive_opt::<TimestampMillisecondType>()
                {
                    Some(ts) => Arc::new(ts.reinterpret_cast::<Int64Type>()),
                    None => cast(event_time, &DataType::Int64)?,
                };
                let fields = Fields::from(vec![
                    Field::new("time", DataType::Int64, true),
                    Field::new("value", v.data_type().clone(), true),
                ]);
                let s = StructArray::try_new(fields, vec![time, v], None)?;
                Ok(Some(Arc::new(s)))
            }
            (_, value) => Ok(value),
        }
    }

    fn cast_arg(&self, arg: Option<&ArrayRef>) -> Result<Option<ArrayRef>> {
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

    /// Updates `slots[groups[i] * stride + index]` with row `rows[i]` of `input`. Returns
    /// the bytes the side state (`strings`) grew by, for the state limit.
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
    ) -> usize {
        debug_assert_eq!(groups.len(), rows.len());
        let at = |g: u32| g as usize * stride + index;
        match self.kind {
            AccKind::CountStar => {
                for &g in groups {
                    slots[at(g)].a += 1;
                }
            }
            AccKind::CountValues => {
                let Some(a) = input else { return 0 };
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
                let Some(a) = input else { return 0 };
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
                let Some(a) = input else { return 0 };
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
                let Some(a) = input else { return 0 };
                let a = a.as_string::<i32>();
                let mut grown = 0;
                for (&g, &r) in groups.iter().zip(rows) {
                    if a.is_null(r as usize) {
                        continue;
                    }
                    let v = a.value(r as usize).as_bytes();
                    let s = &mut slots[at(g)];
                    grown += update_string(self.kind, s, v, strings);
                }
                return grown;
            }
            _ => return self.update_side(slots, stride, index, groups, rows, input, strings),
        }
        0
    }

    /// [`Self::update`] for the aggregates with side state (other than MIN/MAX strings).
    #[allow(clippy::too_many_arguments)]
    fn update_side(
        &self,
        slots: &mut [Slot],
        stride: usize,
        index: usize,
        groups: &[u32],
        rows: &[u32],
        input: Option<&ArrayRef>,
        strings: &mut StringStore,
    ) -> usize {
        let at = |g: u32| g as usize * stride + index;
        let Some(a) = input else { return 0 };
        let mut grown = 0;
        match self.kind {
            AccKind::CountDistinct(kind) => {
                let Some(view) = ArgView::new(kind, a) else {
                    return 0;
                };
                let init = || match kind {
                    ValueKind::Text => SideValue::Distinct(DistinctSet::Texts(Default::default())),
                    _ => SideValue::Distinct(DistinctSet::Words(Default::default())),
                };
                for (&g, &r) in groups.iter().zip(rows) {
                    let Some(c) = view.get(r as usize) else {
                        continue;
                    };
                    let side = side_of(&mut slots[at(g)], strings, &mut grown, init);
                    if let SideValue::Distinct(set) = side {
                        grown += match c {
                            Candidate::Word(w) if kind == ValueKind::Float => {
                                set.insert_word(canonical_float_bits(f64::from_bits(w)))
                            }
                            Candidate::Word(w) => set.insert_word(w),
                            Candidate::Text(t) => set.insert_text(t),
                        };
                    }
                }
            }
            AccKind::ApproxDistinct(kind) => {
                let Some(view) = ArgView::new(kind, a) else {
                    return 0;
                };
                let init = || SideValue::Sketch(HyperLogLog::default());
                for (&g, &r) in groups.iter().zip(rows) {
                    let Some(c) = view.get(r as usize) else {
                        continue;
                    };
                    if let SideValue::Sketch(h) =
                        side_of(&mut slots[at(g)], strings, &mut grown, init)
                    {
                        h.add_hash(hash_candidate(kind, c));
                    }
                }
            }
            AccKind::Moments(_) => {
                let Some(a) = a.as_primitive_opt::<Float64Type>() else {
                    return 0;
                };
                let init = || SideValue::Moments(Moments::default());
                for (&g, &r) in groups.iter().zip(rows) {
                    if a.is_null(r as usize) {
                        continue;
                    }
                    let v = a.value(r as usize);
                    if let SideValue::Moments(m) =
                        side_of(&mut slots[at(g)], strings, &mut grown, init)
                    {
                        m.add(v);
                    }
                }
            }
            AccKind::First(kind) | AccKind::Last(kind) => {
                let last = matches!(self.kind, AccKind::Last(_));
                let Some(st) = a.as_struct_opt() else {
                    return 0;
                };
                let (Some(times), Some(view)) = (
                    st.column(0).as_primitive_opt::<Int64Type>(),
                    ArgView::new(kind, st.column(1)),
                ) else {
                    return 0;
                };
                let times = times.values();
                for (&g, &r) in groups.iter().zip(rows) {
                    let Some(c) = view.get(r as usize) else {
                        continue;
                    };
                    let t = times[r as usize];
                    let s = &mut slots[at(g)];
                    if s.b == 0 {
                        side_of(s, strings, &mut grown, || {
                            SideValue::Timed(Timed::new(t, c))
                        });
                    } else if let SideValue::Timed(x) = &mut strings[s.a as usize] {
                        grown += x.offer(kind, last, t, c);
                    }
                }
            }
            AccKind::TopN => {
                let Some(spec) = &self.top_n else { return 0 };
                // The prepared input's types are fixed by the plan: a failure is a bug.
                return match spec.update(slots, stride, index, groups, rows, a, strings) {
                    Ok(grown) => grown,
                    Err(e) => panic!("top-N update failed on a planned input: {e}"),
                };
            }
            _ => debug_assert!(false, "{:?} has no side state", self.kind),
        }
        grown
    }

    /// Merges a partial slot (with its side value, when [`Self::uses_strings`]) into a final
    /// one.
    pub fn merge(
        &self,
        into: &mut Slot,
        from: Slot,
        from_side: Option<&SideValue>,
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
                if let Some(v) = from_side.and_then(SideValue::as_text) {
                    update_string(self.kind, into, v, strings);
                }
            }
            _ => {
                let Some(from_side) = from_side else { return };
                if into.b == 0 {
                    strings.push(from_side.clone());
                    into.a = (strings.len() - 1) as u64;
                    into.b = 1;
                    return;
                }
                match (self.kind, &mut strings[into.a as usize], from_side) {
                    (AccKind::CountDistinct(_), SideValue::Distinct(a), SideValue::Distinct(b)) => {
                        a.merge(b);
                    }
                    (AccKind::ApproxDistinct(_), SideValue::Sketch(a), SideValue::Sketch(b)) => {
                        a.merge(b)
                    }
                    (AccKind::Moments(_), SideValue::Moments(a), SideValue::Moments(b)) => {
                        a.merge(b)
                    }
                    (AccKind::First(k), SideValue::Timed(a), SideValue::Timed(b)) => {
                        a.merge(k, false, b);
                    }
                    (AccKind::Last(k), SideValue::Timed(a), SideValue::Timed(b)) => {
                        a.merge(k, true, b);
                    }
                    (AccKind::TopN, SideValue::TopN(a), SideValue::TopN(b)) => {
                        if let Some(spec) = &self.top_n {
                            spec.merge(a, b);
                        }
                    }
                    (kind, a, b) => {
                        debug_assert!(false, "{kind:?} cannot merge {a:?} with {b:?}")
                    }
                }
            }
        }
    }

    /// Whether slots of this kind refer to the side table (`strings`) when `b > 0`.
    pub fn uses_strings(&self) -> bool {
        !matches!(
            self.kind,
            AccKind::CountStar
                | AccKind::CountValues
                | AccKind::SumInt
                | AccKind::SumFloat
                | AccKind::Avg
                | AccKind::MinInt
                | AccKind::MaxInt
                | AccKind::MinFloat
                | AccKind::MaxFloat
        )
    }

    /// Whether `value` is the kind of side value this aggregate keeps (for checking
    /// decoded checkpoints).
    pub fn accepts_side(&self, value: &SideValue) -> bool {
        matches!(
            (self.kind, value),
            (AccKind::MinStr | AccKind::MaxStr, SideValue::Text(_))
                | (AccKind::CountDistinct(_), SideValue::Distinct(_))
                | (AccKind::ApproxDistinct(_), SideValue::Sketch(_))
                | (AccKind::Moments(_), SideValue::Moments(_))
                | (AccKind::First(_) | AccKind::Last(_), SideValue::Timed(_))
                | (AccKind::TopN, SideValue::TopN(_))
        )
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
        let side = |g: u32| {
            let s = get(g);
            (s.b > 0).then(|| &strings[s.a as usize])
        };
        let array: ArrayRef = match self.kind {
            AccKind::TopN => {
                return Err(EngineError::Internal(
                    "a top-N is emitted by AggregateLayout::to_batch, not finished".into(),
                ))
            }
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
                    side(g)
                        .and_then(SideValue::as_text)
                        .map(|t| String::from_utf8_lossy(t).into_owned())
                })))
            }
            AccKind::CountDistinct(_) => Arc::new(Int64Array::from_iter_values(groups.map(|g| {
                match side(g) {
                    Some(SideValue::Distinct(d)) => d.len() as i64,
                    _ => 0,
                }
            }))),
            AccKind::ApproxDistinct(_) => Arc::new(Int64Array::from_iter_values(groups.map(|g| {
                match side(g) {
                    Some(SideValue::Sketch(h)) => h.estimate().round() as i64,
                    _ => 0,
                }
            }))),
            AccKind::Moments(stat) => {
                Arc::new(Float64Array::from_iter(groups.map(|g| match side(g) {
                    Some(SideValue::Moments(m)) => m.stat(stat),
                    _ => None,
                })))
            }
            AccKind::First(kind) | AccKind::Last(kind) => {
                let timed = move |g: u32| match side(g) {
                    Some(SideValue::Timed(t)) => Some(t),
                    _ => None,
                };
                match kind {
                    ValueKind::Int => Arc::new(Int64Array::from_iter(
                        groups.map(|g| timed(g).map(|t| t.word as i64)),
                    )),
                    ValueKind::Float => Arc::new(Float64Array::from_iter(
                        groups.map(|g| timed(g).map(|t| f64::from_bits(t.word))),
                    )),
                    ValueKind::Text => {
                        Arc::new(StringArray::from_iter(groups.map(|g| {
                            timed(g).map(|t| String::from_utf8_lossy(&t.text).into_owned())
                        })))
                    }
                }
            }
        };
        if array.data_type() == &self.output_type {
            return Ok(array);
        }
        let int_valued = matches!(
            self.kind,
            AccKind::MinInt
                | AccKind::MaxInt
                | AccKind::SumInt
                | AccKind::First(ValueKind::Int)
                | AccKind::Last(ValueKind::Int)
        );
        match &self.output_type {
            DataType::Timestamp(_, _) if int_valued => {
                let ints = array.as_primitive::<Int64Type>();
                Ok(Arc::new(
                    ints.reinterpret_cast::<TimestampMillisecondType>(),
                ))
            }
            DataType::Boolean if int_valued => {
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

/// The HyperLogLog hash of a value (floats canonical as for DISTINCT).
#[inline]
fn hash_candidate(kind: ValueKind, c: Candidate) -> u64 {
    match c {
        Candidate::Word(w) if kind == ValueKind::Float => {
            mix64(canonical_float_bits(f64::from_bits(w)))
        }
        Candidate::Word(w) => mix64(w),
        Candidate::Text(t) => hash_bytes(t),
    }
}

/// MIN/MAX over strings; returns the bytes the side table grew by.
fn update_string(kind: AccKind, s: &mut Slot, v: &[u8], strings: &mut StringStore) -> usize {
    if s.b == 0 {
        let value = SideValue::Text(v.into());
        let grown = value.bytes();
        strings.push(value);
        s.a = (strings.len() - 1) as u64;
        s.b = 1;
        return grown;
    }
    let SideValue::Text(cur) = &mut strings[s.a as usize] else {
        debug_assert!(false, "MIN/MAX slot refers to a non-string side value");
        return 0;
    };
    let better = if kind == AccKind::MinStr {
        v < &cur[..]
    } else {
        v > &cur[..]
    };
    if better {
        let grown = v.len().saturating_sub(cur.len());
        *cur = v.into();
        return grown;
    }
    0
}
