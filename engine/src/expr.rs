//! Evaluation of planned expressions ([`Expr`]) over Arrow record batches, with Arrow's
//! compute kernels.
//!
//! Literals are evaluated as one-row `Scalar` datums, so `price * 2` multiplies a column by
//! a scalar without materialising a column of 2s. Arithmetic is checked: an integer
//! overflow or a division by zero is an [`EngineError::Eval`] naming the operator.
//!
//! The planner makes both sides of every operator the same type, with one exception:
//! `timestamp + ms` / `timestamp - ms`, a `Binary` of type TIMESTAMP(3) whose right side is
//! BIGINT milliseconds (from `ts + INTERVAL '1' SECOND`).
//!
//! `AND`, `OR` and `CASE` evaluate their later operands only on the rows that need them, so
//! `x <> 0 AND 10 / x > 1` and `CASE WHEN x = 0 THEN 0 ELSE 10 / x END` never divide by zero.

use std::sync::Arc;

use arrow::array::{
    new_null_array, Array, ArrayRef, BooleanArray, Datum, Float32Array, Float64Array, Int32Array,
    Int64Array, RecordBatch, Scalar, StringArray, TimestampMillisecondArray, UInt32Array,
};
use arrow::compute::kernels::{boolean, cmp, numeric};
use arrow::compute::{
    cast_with_options, filter_record_batch, interleave, is_not_null, is_null,
    prep_null_mask_filter, take, CastOptions,
};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::util::display::FormatOptions;

use crate::error::{EngineError, Result};
use crate::plan::{BinaryOp, Expr, Literal, UnaryOp};

/// How CAST renders timestamps as strings (as the sinks write them).
const TIMESTAMP_TEXT_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.3f";

impl Literal {
    /// The Arrow type of this literal.
    pub fn data_type(&self) -> DataType {
        match self {
            Literal::Null(data_type) => data_type.clone(),
            Literal::Boolean(_) => DataType::Boolean,
            Literal::Int32(_) => DataType::Int32,
            Literal::Int64(_) => DataType::Int64,
            Literal::Float32(_) => DataType::Float32,
            Literal::Float64(_) => DataType::Float64,
            Literal::Utf8(_) => DataType::Utf8,
            Literal::TimestampMs(_) => DataType::Timestamp(TimeUnit::Millisecond, None),
        }
    }

    /// This literal as a one-element array.
    fn to_array(&self) -> ArrayRef {
        match self {
            Literal::Null(data_type) => new_null_array(data_type, 1),
            Literal::Boolean(v) => Arc::new(BooleanArray::from(vec![*v])),
            Literal::Int32(v) => Arc::new(Int32Array::from(vec![*v])),
            Literal::Int64(v) => Arc::new(Int64Array::from(vec![*v])),
            Literal::Float32(v) => Arc::new(Float32Array::from(vec![*v])),
            Literal::Float64(v) => Arc::new(Float64Array::from(vec![*v])),
            Literal::Utf8(v) => Arc::new(StringArray::from(vec![v.as_str()])),
            Literal::TimestampMs(v) => Arc::new(TimestampMillisecondArray::from(vec![*v])),
        }
    }
}

impl Expr {
    /// The Arrow type this expression evaluates to.
    pub fn data_type(&self) -> DataType {
        match self {
            Expr::Column { data_type, .. }
            | Expr::Binary { data_type, .. }
            | Expr::Case { data_type, .. } => data_type.clone(),
            Expr::Literal(literal) => literal.data_type(),
            Expr::Unary {
                op: UnaryOp::Not, ..
            }
            | Expr::IsNull { .. } => DataType::Boolean,
            Expr::Unary {
                op: UnaryOp::Negate,
                expr,
            } => expr.data_type(),
            Expr::Cast { to, .. } => to.clone(),
        }
    }

    /// Rewrites every column index of this expression with `f` (planners moving an
    /// expression onto another schema).
    pub fn remap_columns(&mut self, f: &dyn Fn(usize) -> usize) {
        match self {
            Expr::Column { index, .. } => *index = f(*index),
            Expr::Literal(_) => {}
            Expr::Binary { left, right, .. } => {
                left.remap_columns(f);
                right.remap_columns(f);
            }
            Expr::Unary { expr, .. } | Expr::IsNull { expr, .. } | Expr::Cast { expr, .. } => {
                expr.remap_columns(f)
            }
            Expr::Case {
                branches,
                otherwise,
                ..
            } => {
                for (c, v) in branches {
                    c.remap_columns(f);
                    v.remap_columns(f);
                }
                if let Some(o) = otherwise {
                    o.remap_columns(f);
                }
            }
        }
    }

    /// Evaluates this expression over `batch`: one value per row.
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        let value = eval(self, batch)?;
        value.into_array(batch.num_rows())
    }
}

/// Evaluates a boolean `expr` over `batch` into a filter mask: NULL counts as false.
pub fn evaluate_predicate(expr: &Expr, batch: &RecordBatch) -> Result<BooleanArray> {
    let values = expr.evaluate(batch)?;
    let mask = as_boolean(&values, "a predicate")?;
    Ok(null_as_false(mask))
}

/// `mask` with NULL replaced by false.
fn null_as_false(mask: &BooleanArray) -> BooleanArray {
    // prep_null_mask_filter requires a null buffer.
    if mask.nulls().is_some() {
        prep_null_mask_filter(mask)
    } else {
        mask.clone()
    }
}

/// The rows of `batch` where `mask` is true (a mask from [`evaluate_predicate`]).
pub fn filter_batch(batch: &RecordBatch, mask: &BooleanArray) -> Result<RecordBatch> {
    if mask.len() != batch.num_rows() {
        return Err(EngineError::Internal(format!(
            "filter mask has {} rows, the batch {}",
            mask.len(),
            batch.num_rows()
        )));
    }
    if mask.null_count() == 0 && mask.true_count() == mask.len() {
        return Ok(batch.clone());
    }
    Ok(filter_record_batch(batch, mask)?)
}

/// An intermediate value: a column, or one value for every row (a literal, or anything
/// computed from literals only) held as a one-row array.
enum Value {
    Array(ArrayRef),
    Scalar(ArrayRef),
}

impl Value {
    fn scalar(array: ArrayRef) -> Result<Value> {
        if array.len() != 1 {
            return Err(EngineError::Internal(format!(
                "a scalar value has {} rows",
                array.len()
            )));
        }
        Ok(Value::Scalar(array))
    }

    /// This value as a kernel argument (a `Scalar` datum for scalars).
    fn datum(&self) -> Box<dyn Datum> {
        match self {
            Value::Array(array) => Box::new(Arc::clone(array)),
            Value::Scalar(array) => Box::new(Scalar::new(Arc::clone(array))),
        }
    }

    fn is_scalar(&self) -> bool {
        matches!(self, Value::Scalar(_))
    }

    /// The values of a kernel's result: scalar when every input was.
    fn from_result(array: ArrayRef, all_scalar: bool) -> Result<Value> {
        if all_scalar {
            Value::scalar(array)
        } else {
            Ok(Value::Array(array))
        }
    }

    /// The underlying array (one row for a scalar).
    fn array(&self) -> &ArrayRef {
        match self {
            Value::Array(array) | Value::Scalar(array) => array,
        }
    }

    /// A full column of `len` rows.
    fn into_array(self, len: usize) -> Result<ArrayRef> {
        match self {
            Value::Array(array) => {
                if array.len() != len {
                    return Err(EngineError::Internal(format!(
                        "an expression produced {} rows for a batch of {len}",
                        array.len()
                    )));
                }
                Ok(array)
            }
            Value::Scalar(single) => {
                if len == 1 {
                    return Ok(single);
                }
                let indices = UInt32Array::from(vec![0u32; len]);
                Ok(take(single.as_ref(), &indices, None)?)
            }
        }
    }
}

fn eval(expr: &Expr, batch: &RecordBatch) -> Result<Value> {
    match expr {
        Expr::Column {
            index,
            name,
            data_type,
        } => {
            let column = batch.columns().get(*index).ok_or_else(|| {
                EngineError::Internal(format!(
                    "column {index} ('{name}') is missing: the batch has {} columns",
                    batch.num_columns()
                ))
            })?;
            if column.data_type() != data_type {
                return Err(EngineError::Internal(format!(
                    "column {index} ('{name}') is {} in the batch, the plan expects {data_type}",
                    column.data_type()
                )));
            }
            Ok(Value::Array(Arc::clone(column)))
        }
        Expr::Literal(literal) => Value::scalar(literal.to_array()),
        Expr::Binary {
            op,
            left,
            right,
            data_type,
        } => match op {
            BinaryOp::And | BinaryOp::Or => eval_logic(*op, left, right, batch),
            _ => {
                let l = eval(left, batch)?;
                let r = eval(right, batch)?;
                eval_binary(*op, &l, &r, data_type)
            }
        },
        Expr::Unary { op, expr } => {
            let value = eval(expr, batch)?;
            let scalar = value.is_scalar();
            let result: ArrayRef = match op {
                UnaryOp::Not => Arc::new(boolean::not(as_boolean(value.array(), "NOT")?)?),
                UnaryOp::Negate => numeric::neg(value.array().as_ref())
                    .map_err(|e| operator_error("unary -", e))?,
            };
            Value::from_result(result, scalar)
        }
        Expr::IsNull { expr, negated } => {
            let value = eval(expr, batch)?;
            let array = value.array().as_ref();
            let result = if *negated {
                is_not_null(array)?
            } else {
                is_null(array)?
            };
            Value::from_result(Arc::new(result), value.is_scalar())
        }
        Expr::Cast { expr, to } => {
            let value = eval(expr, batch)?;
            let result = cast_value(value.array(), to)?;
            Value::from_result(result, value.is_scalar())
        }
        Expr::Case {
            branches,
            otherwise,
            data_type,
        } => eval_case(branches, otherwise.as_deref(), data_type, batch).map(Value::Array),
    }
}

fn eval_binary(op: BinaryOp, l: &Value, r: &Value, data_type: &DataType) -> Result<Value> {
    let all_scalar = l.is_scalar() && r.is_scalar();
    let symbol = crate::sql::binary_symbol(op);
    let (ld, rd) = (l.datum(), r.datum());
    let (ld, rd) = (ld.as_ref(), rd.as_ref());
    let result: ArrayRef = match op {
        BinaryOp::Plus | BinaryOp::Minus
            if matches!(data_type, DataType::Timestamp(..))
                && r.array().data_type() == &DataType::Int64 =>
        {
            // timestamp +/- milliseconds: the milliseconds as a Duration.
            let duration = cast_value(r.array(), &DataType::Duration(TimeUnit::Millisecond))?;
            let duration = if r.is_scalar() {
                Value::scalar(duration)?
            } else {
                Value::Array(duration)
            };
            let shifted = if op == BinaryOp::Plus {
                numeric::add(ld, duration.datum().as_ref())
            } else {
                numeric::sub(ld, duration.datum().as_ref())
            };
            shifted.map_err(|e| operator_error(symbol, e))?
        }
        BinaryOp::Plus => numeric::add(ld, rd).map_err(|e| operator_error(symbol, e))?,
        BinaryOp::Minus => numeric::sub(ld, rd).map_err(|e| operator_error(symbol, e))?,
        BinaryOp::Multiply => numeric::mul(ld, rd).map_err(|e| operator_error(symbol, e))?,
        BinaryOp::Divide => numeric::div(ld, rd).map_err(|e| operator_error(symbol, e))?,
        BinaryOp::Modulo => numeric::rem(ld, rd).map_err(|e| operator_error(symbol, e))?,
        BinaryOp::Eq => Arc::new(cmp::eq(ld, rd).map_err(|e| operator_error(symbol, e))?),
        BinaryOp::NotEq => Arc::new(cmp::neq(ld, rd).map_err(|e| operator_error(symbol, e))?),
        BinaryOp::Lt => Arc::new(cmp::lt(ld, rd).map_err(|e| operator_error(symbol, e))?),
        BinaryOp::LtEq => Arc::new(cmp::lt_eq(ld, rd).map_err(|e| operator_error(symbol, e))?),
        BinaryOp::Gt => Arc::new(cmp::gt(ld, rd).map_err(|e| operator_error(symbol, e))?),
        BinaryOp::GtEq => Arc::new(cmp::gt_eq(ld, rd).map_err(|e| operator_error(symbol, e))?),
        BinaryOp::And | BinaryOp::Or => {
            return Err(EngineError::Internal(
                "AND/OR reached the arithmetic evaluator".to_string(),
            ))
        }
    };
    Value::from_result(result, all_scalar)
}

/// `left AND right` / `left OR right` (three-valued), evaluating `right` only on the rows
/// whose result `left` does not decide already.
fn eval_logic(op: BinaryOp, left: &Expr, right: &Expr, batch: &RecordBatch) -> Result<Value> {
    let rows = batch.num_rows();
    let l = eval(left, batch)?.into_array(rows)?;
    let l = as_boolean(&l, "AND/OR")?;
    // AND needs `right` where left is not false; OR where left is not true.
    let needed: BooleanArray = l
        .iter()
        .map(|v| Some(v != Some(op == BinaryOp::Or)))
        .collect();
    let r = eval_on_rows(right, batch, &needed)?;
    let r = as_boolean(&r, "AND/OR")?;
    let result = if op == BinaryOp::And {
        boolean::and_kleene(l, r)?
    } else {
        boolean::or_kleene(l, r)?
    };
    Ok(Value::Array(Arc::new(result)))
}

/// Evaluates `expr` on the rows of `batch` where `rows` is true; the other rows are NULL.
fn eval_on_rows(expr: &Expr, batch: &RecordBatch, rows: &BooleanArray) -> Result<ArrayRef> {
    let len = batch.num_rows();
    let selected = rows.true_count();
    if selected == len {
        return eval(expr, batch)?.into_array(len);
    }
    if selected == 0 {
        return Ok(new_null_array(&expr.data_type(), len));
    }
    let subset = filter_record_batch(batch, rows)?;
    let values = eval(expr, &subset)?.into_array(subset.num_rows())?;
    let nulls = new_null_array(values.data_type(), 1);
    let mut next = 0;
    let indices: Vec<(usize, usize)> = (0..len)
        .map(|i| {
            if rows.value(i) {
                next += 1;
                (0, next - 1)
            } else {
                (1, 0)
            }
        })
        .collect();
    Ok(interleave(&[values.as_ref(), nulls.as_ref()], &indices)?)
}

/// CASE WHEN ... THEN ... ELSE ... END: each result is evaluated only on the rows that
/// take its branch.
fn eval_case(
    branches: &[(Expr, Expr)],
    otherwise: Option<&Expr>,
    data_type: &DataType,
    batch: &RecordBatch,
) -> Result<ArrayRef> {
    let len = batch.num_rows();
    let mut remaining = BooleanArray::from(vec![true; len]);
    let mut sources: Vec<ArrayRef> = Vec::with_capacity(branches.len() + 2);
    // For each row: (index into `sources`, row in that source); None = NULL.
    let mut picks: Vec<Option<(usize, usize)>> = vec![None; len];
    let mut take_rows =
        |rows: &BooleanArray, value: &Expr, sources: &mut Vec<ArrayRef>| -> Result<()> {
            if rows.true_count() == 0 {
                return Ok(());
            }
            let subset = filter_record_batch(batch, rows)?;
            let values = eval(value, &subset)?.into_array(subset.num_rows())?;
            let source = sources.len();
            sources.push(values);
            let mut next = 0;
            for (i, pick) in picks.iter_mut().enumerate() {
                if rows.value(i) {
                    *pick = Some((source, next));
                    next += 1;
                }
            }
            Ok(())
        };
    for (condition, value) in branches {
        if remaining.true_count() == 0 {
            break;
        }
        let tested = eval_on_rows(condition, batch, &remaining)?;
        let tested = as_boolean(&tested, "CASE WHEN")?;
        let tested = null_as_false(tested);
        let taken = boolean::and(&remaining, &tested)?;
        take_rows(&taken, value, &mut sources)?;
        remaining = boolean::and(&remaining, &boolean::not(&taken)?)?;
    }
    if let Some(otherwise) = otherwise {
        take_rows(&remaining, otherwise, &mut sources)?;
    }
    let null_source = sources.len();
    sources.push(new_null_array(data_type, 1));
    let indices: Vec<(usize, usize)> = picks
        .into_iter()
        .map(|p| p.unwrap_or((null_source, 0)))
        .collect();
    let arrays: Vec<&dyn Array> = sources.iter().map(|a| a.as_ref()).collect();
    Ok(interleave(&arrays, &indices)?)
}

fn cast_value(array: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    let options = CastOptions {
        safe: false,
        format_options: FormatOptions::default().with_timestamp_format(Some(TIMESTAMP_TEXT_FORMAT)),
    };
    cast_with_options(array.as_ref(), to, &options).map_err(|e| {
        EngineError::Eval(format!(
            "CAST from {} to {}: {e}",
            crate::sql::sql_type_name(array.data_type()),
            crate::sql::sql_type_name(to)
        ))
    })
}

fn as_boolean<'a>(array: &'a ArrayRef, what: &str) -> Result<&'a BooleanArray> {
    array
        .as_any()
        .downcast_ref::<BooleanArray>()
        .ok_or_else(|| {
            EngineError::Internal(format!(
                "{what} evaluated to {}, not BOOLEAN",
                array.data_type()
            ))
        })
}

fn operator_error(symbol: &str, error: arrow::error::ArrowError) -> EngineError {
    EngineError::Eval(format!("operator '{symbol}': {error}"))
}

#[cfg(test)]
#[path = "expr_tests.rs"]
mod tests;
