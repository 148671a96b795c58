//! The aggregates of the oracle ([`Agg`]) and their naive running state: COUNT, SUM, AVG,
//! MIN, MAX, COUNT(DISTINCT), FIRST_VALUE / LAST_VALUE, STDDEV / VAR (two-pass, over every
//! value kept), APPROX_COUNT_DISTINCT (exact here) and FILTER. Independent of the engine's
//! accumulators on purpose.

use serde_json::Value;

use crate::oracle::Event;

type RowFilterFn<'a> = Box<dyn Fn(&Event) -> bool + 'a>;

/// A number an aggregate reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    Int(i64),
    Float(f64),
}

type ArgFn<'a> = Box<dyn Fn(&Event) -> Option<Num> + 'a>;
type ScalarFn<'a> = Box<dyn Fn(&Event) -> Option<Scalar> + 'a>;

/// A value the aggregates over any type (COUNT(DISTINCT), FIRST_VALUE, ...) read.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Int(i64),
    Float(f64),
    Str(String),
}

impl Scalar {
    /// The engine's documented order for FIRST_VALUE / LAST_VALUE ties: integers by value,
    /// floats by `total_cmp`, strings bytewise.
    fn order(&self, other: &Scalar) -> std::cmp::Ordering {
        match (self, other) {
            (Scalar::Int(a), Scalar::Int(b)) => a.cmp(b),
            (Scalar::Float(a), Scalar::Float(b)) => a.total_cmp(b),
            (Scalar::Str(a), Scalar::Str(b)) => a.as_bytes().cmp(b.as_bytes()),
            (a, b) => panic!("oracle: values of mixed types {a:?} and {b:?}"),
        }
    }

    /// Equality for DISTINCT: 0.0 equals -0.0, NaN equals NaN.
    fn distinct_key(&self) -> String {
        match self {
            Scalar::Int(i) => format!("i{i}"),
            Scalar::Float(f) if *f == 0.0 => "f0".into(),
            Scalar::Float(f) if f.is_nan() => "fNaN".into(),
            Scalar::Float(f) => format!("f{f:?}"),
            Scalar::Str(s) => format!("s{s}"),
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Scalar::Int(i) => Value::from(*i),
            Scalar::Float(f) => Value::from(*f),
            Scalar::Str(s) => Value::from(s.as_str()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AggKind {
    CountStar,
    Count,
    SumInt,
    SumFloat,
    Avg,
    Min,
    Max,
    CountDistinct,
    FirstValue,
    LastValue,
    StddevPop,
    StddevSamp,
    VarPop,
    VarSamp,
    /// Computed exactly here: tests compare the engine's estimate within a tolerance.
    ApproxCountDistinct,
}

/// One aggregate of a test query, with its argument as a closure (`None` = SQL NULL).
pub struct Agg<'a> {
    pub(crate) kind: AggKind,
    arg: Option<ArgFn<'a>>,
    /// The argument of the aggregates over any type.
    value: Option<ScalarFn<'a>>,
    /// `FILTER (WHERE ...)`: rows it refuses are not aggregated at all.
    filter: Option<RowFilterFn<'a>>,
}

impl<'a> Agg<'a> {
    /// `COUNT(*)`.
    pub fn count_star() -> Self {
        Agg {
            kind: AggKind::CountStar,
            arg: None,
            value: None,
            filter: None,
        }
    }
    /// `COUNT(x)`: the non-null values.
    pub fn count(arg: impl Fn(&Event) -> Option<Num> + 'a) -> Self {
        Agg {
            kind: AggKind::Count,
            arg: Some(Box::new(arg)),
            value: None,
            filter: None,
        }
    }
    /// `SUM(x)` of an integer expression (BIGINT result, checked for overflow).
    pub fn sum_int(arg: impl Fn(&Event) -> Option<i64> + 'a) -> Self {
        Agg {
            kind: AggKind::SumInt,
            arg: Some(Box::new(move |e| arg(e).map(Num::Int))),
            value: None,
            filter: None,
        }
    }
    /// `SUM(x)` of a floating expression (DOUBLE result).
    pub fn sum_float(arg: impl Fn(&Event) -> Option<f64> + 'a) -> Self {
        Agg {
            kind: AggKind::SumFloat,
            arg: Some(Box::new(move |e| arg(e).map(Num::Float))),
            value: None,
            filter: None,
        }
    }
    /// `AVG(x)` (DOUBLE result).
    pub fn avg(arg: impl Fn(&Event) -> Option<f64> + 'a) -> Self {
        Agg {
            kind: AggKind::Avg,
            arg: Some(Box::new(move |e| arg(e).map(Num::Float))),
            value: None,
            filter: None,
        }
    }
    /// `MIN(x)`; the result has the argument's type.
    pub fn min(arg: impl Fn(&Event) -> Option<Num> + 'a) -> Self {
        Agg {
            kind: AggKind::Min,
            arg: Some(Box::new(arg)),
            value: None,
            filter: None,
        }
    }
    /// `MAX(x)`; the result has the argument's type.
    pub fn max(arg: impl Fn(&Event) -> Option<Num> + 'a) -> Self {
        Agg {
            kind: AggKind::Max,
            arg: Some(Box::new(arg)),
            value: None,
            filter: None,
        }
    }
    fn over_values(kind: AggKind, value: impl Fn(&Event) -> Option<Scalar> + 'a) -> Self {
        Agg {
            kind,
            arg: None,
            value: Some(Box::new(value)),
            filter: None,
        }
    }
    /// `COUNT(DISTINCT x)`.
    pub fn count_distinct(value: impl Fn(&Event) -> Option<Scalar> + 'a) -> Self {
        Self::over_values(AggKind::CountDistinct, value)
    }
    /// `FIRST_VALUE(x)`: the value of the smallest (event time, value).
    pub fn first_value(value: impl Fn(&Event) -> Option<Scalar> + 'a) -> Self {
        Self::over_values(AggKind::FirstValue, value)
    }
    /// `LAST_VALUE(x)`: the value of the largest (event time, value).
    pub fn last_value(value: impl Fn(&Event) -> Option<Scalar> + 'a) -> Self {
        Self::over_values(AggKind::LastValue, value)
    }
    /// `STDDEV_POP(x)` (two-pass, over the values kept).
    pub fn stddev_pop(arg: impl Fn(&Event) -> Option<f64> + 'a) -> Self {
        Self::over_values(AggKind::StddevPop, move |e| arg(e).map(Scalar::Float))
    }
    /// `STDDEV_SAMP(x)`.
    pub fn stddev_samp(arg: impl Fn(&Event) -> Option<f64> + 'a) -> Self {
        Self::over_values(AggKind::StddevSamp, move |e| arg(e).map(Scalar::Float))
    }
    /// `VAR_POP(x)`.
    pub fn var_pop(arg: impl Fn(&Event) -> Option<f64> + 'a) -> Self {
        Self::over_values(AggKind::VarPop, move |e| arg(e).map(Scalar::Float))
    }
    /// `VAR_SAMP(x)`.
    pub fn var_samp(arg: impl Fn(&Event) -> Option<f64> + 'a) -> Self {
        Self::over_values(AggKind::VarSamp, move |e| arg(e).map(Scalar::Float))
    }
    /// `APPROX_COUNT_DISTINCT(x)`: the oracle gives the exact count.
    pub fn approx_count_distinct(value: impl Fn(&Event) -> Option<Scalar> + 'a) -> Self {
        Self::over_values(AggKind::ApproxCountDistinct, value)
    }
    /// `agg(...) FILTER (WHERE f)`.
    pub fn filter(mut self, f: impl Fn(&Event) -> bool + 'a) -> Self {
        self.filter = Some(Box::new(f));
        self
    }
}

/// The running state of one aggregate of one group.
#[derive(Debug, Clone)]
pub(crate) struct AccState {
    count: i64,
    sum_int: i64,
    sum_float: f64,
    best: Option<Num>,
    /// Every (event time, value) of the aggregates over any type, finished naively.
    seen: Vec<(i64, Scalar)>,
}

impl AccState {
    pub(crate) const EMPTY: AccState = AccState {
        count: 0,
        sum_int: 0,
        sum_float: 0.0,
        best: None,
        seen: Vec::new(),
    };

    /// Adds event `e` to aggregate `agg` (its FILTER first).
    pub(crate) fn add_event(&mut self, agg: &Agg, e: &Event) {
        if agg.filter.as_ref().is_some_and(|f| !f(e)) {
            return;
        }
        match &agg.value {
            Some(value) => self.seen.extend(value(e).map(|v| (e.ts_ms, v))),
            None => self.update(agg.kind, agg.arg.as_ref().and_then(|f| f(e))),
        }
    }

    fn finish_values(&self, kind: AggKind) -> Value {
        let seen = &self.seen;
        match kind {
            AggKind::CountDistinct | AggKind::ApproxCountDistinct => {
                let keys: std::collections::BTreeSet<String> =
                    seen.iter().map(|(_, v)| v.distinct_key()).collect();
                Value::from(keys.len() as i64)
            }
            AggKind::FirstValue | AggKind::LastValue => {
                let order = |a: &&(i64, Scalar), b: &&(i64, Scalar)| {
                    a.0.cmp(&b.0).then_with(|| a.1.order(&b.1))
                };
                let pick = if kind == AggKind::FirstValue {
                    seen.iter().min_by(order)
                } else {
                    seen.iter().max_by(order)
                };
                pick.map(|(_, v)| v.to_json()).unwrap_or(Value::Null)
            }
            _ => {
                let xs: Vec<f64> = seen
                    .iter()
                    .map(|(_, v)| match v {
                        Scalar::Float(f) => *f,
                        Scalar::Int(i) => *i as f64,
                        Scalar::Str(s) => panic!("oracle: {kind:?} over the string {s:?}"),
                    })
                    .collect();
                let n = xs.len() as f64;
                let sample = matches!(kind, AggKind::StddevSamp | AggKind::VarSamp);
                if xs.is_empty() || (sample && xs.len() < 2) {
                    return Value::Null;
                }
                let mean = xs.iter().sum::<f64>() / n;
                let ss: f64 = xs.iter().map(|x| (x - mean) * (x - mean)).sum();
                let var = ss / if sample { n - 1.0 } else { n };
                match kind {
                    AggKind::StddevPop | AggKind::StddevSamp => Value::from(var.sqrt()),
                    _ => Value::from(var),
                }
            }
        }
    }

    fn update(&mut self, kind: AggKind, value: Option<Num>) {
        if kind == AggKind::CountStar {
            self.count += 1;
            return;
        }
        let Some(v) = value else { return };
        self.count += 1;
        match (kind, v) {
            (AggKind::SumInt, Num::Int(i)) => {
                self.sum_int = match self.sum_int.checked_add(i) {
                    Some(s) => s,
                    None => panic!("oracle: SUM overflows BIGINT"),
                }
            }
            (AggKind::SumFloat | AggKind::Avg, Num::Float(f)) => self.sum_float += f,
            (AggKind::SumFloat | AggKind::Avg, Num::Int(i)) => self.sum_float += i as f64,
            (AggKind::Min, v) => self.best = Some(pick(self.best, v, true)),
            (AggKind::Max, v) => self.best = Some(pick(self.best, v, false)),
            (AggKind::Count, _) => {}
            (kind, v) => panic!("oracle: {kind:?} given {v:?}"),
        }
    }

    pub(crate) fn finish(&self, kind: AggKind) -> Value {
        match kind {
            AggKind::CountDistinct
            | AggKind::FirstValue
            | AggKind::LastValue
            | AggKind::StddevPop
            | AggKind::StddevSamp
            | AggKind::VarPop
            | AggKind::VarSamp
            | AggKind::ApproxCountDistinct => self.finish_values(kind),
            AggKind::CountStar | AggKind::Count => Value::from(self.count),
            _ if self.count == 0 => Value::Null,
            AggKind::SumInt => Value::from(self.sum_int),
            AggKind::SumFloat => Value::from(self.sum_float),
            AggKind::Avg => Value::from(self.sum_float / self.count as f64),
            AggKind::Min | AggKind::Max => match self.best {
                Some(Num::Int(i)) => Value::from(i),
                Some(Num::Float(f)) => Value::from(f),
                None => Value::Null,
            },
        }
    }
}

fn pick(best: Option<Num>, v: Num, min: bool) -> Num {
    let Some(b) = best else { return v };
    let (bf, vf) = match (b, v) {
        (Num::Int(x), Num::Int(y)) => {
            return if (y < x) == min && y != x { v } else { b };
        }
        (Num::Float(x), Num::Float(y)) => (x, y),
        (b, v) => panic!("oracle: MIN/MAX over mixed types {b:?} and {v:?}"),
    };
    if (vf < bf && min) || (vf > bf && !min) {
        v
    } else {
        b
    }
}
