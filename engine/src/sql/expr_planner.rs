//! AST expressions -> typed [`plan::Expr`](crate::plan::Expr): name resolution (through a
//! [`Scope`]), literals, type checking and the casts that give both operands of an operator
//! the same type.

use arrow::datatypes::DataType;
use sqlparser::ast::{
    BinaryOperator, CastKind, DuplicateTreatment, Expr as AstExpr, Function, FunctionArg,
    FunctionArgExpr, FunctionArguments, Ident, InTarget, Spanned, TypedString, UnaryOperator,
    Value, ValueWithSpan,
};

use super::explain::sql_type_name;
use super::interval::{interval_ms, parse_timestamp_ms};
use super::pos_of;
use super::types::{column_type_of, common_type, numeric_rank, timestamp_type};
use super::window::{window_bound_of, WindowFunction};
use crate::error::{EngineError, Pos, Result};
use crate::plan::{BinaryOp, Expr, Literal, UnaryOp};

/// The aggregate functions spillway computes.
pub(crate) const AGGREGATE_FUNCTIONS: [&str; 12] = [
    "COUNT",
    "SUM",
    "AVG",
    "MIN",
    "MAX",
    "FIRST_VALUE",
    "LAST_VALUE",
    "STDDEV_POP",
    "STDDEV_SAMP",
    "VAR_POP",
    "VAR_SAMP",
    "APPROX_COUNT_DISTINCT",
];

/// Where names in an expression resolve, and which nodes have a meaning of their own there
/// (aggregates and group keys in an aggregate query).
pub(crate) trait Scope {
    /// Plans a column name (`col` or `t.col`) at `pos`.
    fn column(&mut self, parts: &[Ident], pos: Pos) -> Result<Expr>;

    /// Plans `ast` when this scope gives it a meaning (aggregates, group keys, window
    /// bounds). Ok(None): the generic planner handles it.
    fn intercept(&mut self, _ast: &AstExpr, _pos: Pos) -> Result<Option<Expr>> {
        Ok(None)
    }

    /// The clause being planned, for messages (e.g. "WHERE").
    fn clause(&self) -> &'static str;

    /// The position used for AST nodes without a span.
    fn fallback(&self) -> Pos;
}

/// A function call's parts, with the unsupported decorations (OVER, WITHIN GROUP, ...)
/// refused.
pub(crate) struct Call<'a> {
    /// Upper-cased.
    pub name: String,
    pub args: Vec<&'a FunctionArgExpr>,
    pub distinct: bool,
    /// `FILTER (WHERE ...)`: only aggregate calls (see [`call_with_filter_of`]) keep one.
    pub filter: Option<&'a AstExpr>,
    pub pos: Pos,
}

/// Splits a function call into name and positional arguments; refuses FILTER.
pub(crate) fn call_of(function: &Function, pos: Pos) -> Result<Call<'_>> {
    let call = call_with_filter_of(function, pos)?;
    if call.filter.is_some() {
        return Err(EngineError::plan(
            format!(
                "{}(...) FILTER (WHERE ...) applies only to aggregate functions",
                call.name
            ),
            pos,
        ));
    }
    Ok(call)
}

/// Splits a function call into name, positional arguments and FILTER condition.
pub(crate) fn call_with_filter_of(function: &Function, pos: Pos) -> Result<Call<'_>> {
    let name = match function.name.0.as_slice() {
        [part] => part.as_ident().map(|i| i.value.to_ascii_uppercase()),
        _ => None,
    }
    .ok_or_else(|| {
        EngineError::plan(
            format!(
                "qualified function names like {} are not supported",
                function.name
            ),
            pos,
        )
    })?;
    if function.over.is_some() {
        return Err(EngineError::plan(
            format!("window functions ({name}(...) OVER ...) are not supported yet"),
            pos,
        ));
    }
    if !function.within_group.is_empty() || function.null_treatment.is_some() {
        return Err(EngineError::plan(
            format!("{name}(...) WITHIN GROUP / IGNORE NULLS is not supported"),
            pos,
        ));
    }
    let (args, distinct) = match &function.args {
        FunctionArguments::None => (Vec::new(), false),
        FunctionArguments::Subquery(_) => {
            return Err(EngineError::plan("subqueries are not supported yet", pos))
        }
        FunctionArguments::List(list) => {
            if !list.clauses.is_empty() {
                return Err(EngineError::plan(
                    format!("clauses inside {name}(...) (ORDER BY, LIMIT, ...) are not supported"),
                    pos,
                ));
            }
            let mut args = Vec::with_capacity(list.args.len());
            for arg in &list.args {
                match arg {
                    FunctionArg::Unnamed(a) => args.push(a),
                    FunctionArg::Named { name: arg_name, .. } => {
                        return Err(EngineError::plan(
                            format!("named arguments ({arg_name} => ...) are not supported; pass {name}'s arguments by position"),
                            pos_of(arg_name.span, pos),
                        ))
                    }
                    FunctionArg::ExprNamed { .. } => {
                        return Err(EngineError::plan(
                            format!("named arguments are not supported; pass {name}'s arguments by position"),
                            pos,
                        ))
                    }
                }
            }
            let distinct = matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct));
            (args, distinct)
        }
    };
    Ok(Call {
        name,
        args,
        distinct,
        filter: function.filter.as_deref(),
        pos,
    })
}

/// Plans `ast` in `scope`.
pub(crate) fn plan_expr(ast: &AstExpr, scope: &mut dyn Scope) -> Result<Expr> {
    let pos = pos_of(ast.span(), scope.fallback());
    if let Some(planned) = scope.intercept(ast, pos)? {
        return Ok(planned);
    }
    match ast {
        AstExpr::Identifier(ident) => scope.column(std::slice::from_ref(ident), pos),
        AstExpr::CompoundIdentifier(parts) => scope.column(parts, pos),
        AstExpr::Nested(inner) => plan_expr(inner, scope),
        AstExpr::Value(value) => Ok(Expr::Literal(literal_of(value, false, pos)?)),
        AstExpr::TypedString(typed) => typed_string(typed, pos),
        AstExpr::UnaryOp { op, expr } => plan_unary(*op, expr, scope, pos),
        AstExpr::BinaryOp { left, op, right } => plan_binary(left, op, right, scope, pos),
        AstExpr::IsNull(inner) | AstExpr::IsNotNull(inner) => Ok(Expr::IsNull {
            expr: Box::new(plan_expr(inner, scope)?),
            negated: matches!(ast, AstExpr::IsNotNull(_)),
        }),
        AstExpr::Between {
            expr,
            negated,
            low,
            high,
        } => {
            let value = plan_expr(expr, scope)?;
            let low = plan_expr(low, scope)?;
            let high = plan_expr(high, scope)?;
            // x BETWEEN a AND b  ==  x >= a AND x <= b;  NOT BETWEEN  ==  x < a OR x > b
            let (low_op, high_op, join) = if *negated {
                (BinaryOp::Lt, BinaryOp::Gt, BinaryOp::Or)
            } else {
                (BinaryOp::GtEq, BinaryOp::LtEq, BinaryOp::And)
            };
            let low = typed_binary(low_op, value.clone(), low, pos)?;
            let high = typed_binary(high_op, value, high, pos)?;
            typed_binary(join, low, high, pos)
        }
        AstExpr::In {
            expr,
            target,
            negated,
            ..
        } => {
            let InTarget::List(items) = target else {
                return Err(EngineError::plan(
                    "IN is only supported with a list of values, e.g. x IN (1, 2, 3)",
                    pos,
                ));
            };
            let value = plan_expr(expr, scope)?;
            // x IN (a, b) == x = a OR x = b;  NOT IN == x <> a AND x <> b
            let (compare, join) = if *negated {
                (BinaryOp::NotEq, BinaryOp::And)
            } else {
                (BinaryOp::Eq, BinaryOp::Or)
            };
            let mut result: Option<Expr> = None;
            for item in items {
                let item_pos = pos_of(item.span(), pos);
                let item = plan_expr(item, scope)?;
                let test = typed_binary(compare, value.clone(), item, item_pos)?;
                result = Some(match result {
                    Some(acc) => typed_binary(join, acc, test, pos)?,
                    None => test,
                });
            }
            result.ok_or_else(|| EngineError::plan("IN () needs at least one value", pos))
        }
        AstExpr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => plan_case(operand.as_deref(), conditions, else_result.as_deref(), scope, pos),
        AstExpr::Cast {
            kind,
            expr,
            data_type,
            ..
        } => {
            if !matches!(kind, CastKind::Cast | CastKind::DoubleColon) {
                return Err(EngineError::plan(
                    "TRY_CAST / SAFE_CAST are not supported yet; use CAST",
                    pos,
                ));
            }
            let to = column_type_of(data_type)
                .map_err(|e| EngineError::plan(format!("CAST: {}", e.message()), pos))?
                .to_arrow();
            let inner = plan_expr(expr, scope)?;
            plan_cast(inner, to, pos)
        }
        AstExpr::Function(function) => Err(misplaced_function(function, scope, pos)),
        AstExpr::Interval(_) => Err(EngineError::plan(
            "INTERVAL values are only supported in window definitions and in timestamp arithmetic (ts + INTERVAL '1' SECOND)",
            pos,
        )),
        AstExpr::Subquery(_) | AstExpr::Exists { .. } => {
            Err(EngineError::plan("subqueries are not supported yet", pos))
        }
        AstExpr::Like { .. } | AstExpr::ILike { .. } | AstExpr::SimilarTo { .. } | AstExpr::RLike { .. } => {
            Err(EngineError::plan("LIKE / SIMILAR TO is not supported yet", pos))
        }
        AstExpr::Wildcard(_) | AstExpr::QualifiedWildcard(..) => Err(EngineError::plan(
            "* is only allowed as SELECT * or COUNT(*)",
            pos,
        )),
        other => Err(EngineError::plan(
            format!("the expression {other} is not supported"),
            pos,
        )),
    }
}

/// The error for a function call no scope gave a meaning to.
fn misplaced_function(function: &Function, scope: &dyn Scope, pos: Pos) -> EngineError {
    let call = match call_with_filter_of(function, pos) {
        Ok(call) => call,
        Err(e) => return e,
    };
    let name = call.name.as_str();
    let clause = scope.clause();
    if AGGREGATE_FUNCTIONS.contains(&name) {
        return EngineError::plan(
            format!("aggregate function {name} is not allowed in {clause}"),
            pos,
        );
    }
    if let Some(window) = WindowFunction::from_name(name) {
        let message = match window {
            WindowFunction::Tumble => format!(
                "{name}(...) is only allowed in GROUP BY (or as FROM TABLE({name}(TABLE t, DESCRIPTOR(ts), ...)))"
            ),
            _ => format!("{name} windows are not supported yet (supported: TUMBLE)"),
        };
        return EngineError::plan(message, pos);
    }
    match window_bound_of(name, pos) {
        Err(e) => return e,
        Ok(Some((window, _))) => {
            return EngineError::plan(
                format!(
                    "{name} is not allowed in {clause}: it needs GROUP BY {}(ts, size) and may only be used in SELECT or HAVING",
                    window.name()
                ),
                pos,
            )
        }
        Ok(None) => {}
    }
    EngineError::plan(
        format!("unknown function {name} (supported: COUNT, SUM, AVG, MIN, MAX, FIRST_VALUE, LAST_VALUE, STDDEV_POP, STDDEV_SAMP, VAR_POP, VAR_SAMP, APPROX_COUNT_DISTINCT, CAST, TUMBLE, TUMBLE_START, TUMBLE_END)"),
        pos,
    )
}

/// A literal value. `negate` folds a leading unary minus into a number (so that
/// `-2147483648` is an INT).
fn literal_of(value: &ValueWithSpan, negate: bool, pos: Pos) -> Result<Literal> {
    let pos = pos_of(value.span, pos);
    Ok(match &value.value {
        Value::Number(text, long) => number_literal(text, *long, negate, pos)?,
        Value::SingleQuotedString(s) if !negate => Literal::Utf8(s.clone()),
        Value::Boolean(b) if !negate => Literal::Boolean(*b),
        Value::Null if !negate => Literal::Null(DataType::Null),
        other if negate => {
            return Err(EngineError::plan(
                format!("cannot negate {other}: unary minus needs a number"),
                pos,
            ))
        }
        other => {
            return Err(EngineError::plan(
                format!("the literal {other} is not supported"),
                pos,
            ))
        }
    })
}

/// Integer literals are INT when they fit, else BIGINT; decimals are DOUBLE.
fn number_literal(text: &str, long: bool, negate: bool, pos: Pos) -> Result<Literal> {
    let signed = if negate {
        format!("-{text}")
    } else {
        text.to_string()
    };
    if text.contains(['.', 'e', 'E']) {
        return signed
            .parse::<f64>()
            .map(Literal::Float64)
            .map_err(|_| EngineError::plan(format!("invalid number {signed}"), pos));
    }
    let value: i64 = signed.parse().map_err(|_| {
        EngineError::plan(
            format!("the integer {signed} is out of range for BIGINT"),
            pos,
        )
    })?;
    Ok(match i32::try_from(value) {
        Ok(small) if !long => Literal::Int32(small),
        _ => Literal::Int64(value),
    })
}

fn typed_string(typed: &TypedString, pos: Pos) -> Result<Expr> {
    let text = match &typed.value.value {
        Value::SingleQuotedString(s) => s.as_str(),
        other => {
            return Err(EngineError::plan(
                format!(
                    "expected a quoted string after {}, found {other}",
                    typed.data_type
                ),
                pos,
            ))
        }
    };
    let to = column_type_of(&typed.data_type)
        .map_err(|e| EngineError::plan(e.message(), pos))?
        .to_arrow();
    let literal = coerce_literal(&Literal::Utf8(text.to_string()), &to).ok_or_else(|| {
        EngineError::plan(
            format!("'{text}' is not a valid {} literal", sql_type_name(&to)),
            pos,
        )
    })?;
    Ok(Expr::Literal(literal))
}

fn plan_unary(op: UnaryOperator, inner: &AstExpr, scope: &mut dyn Scope, pos: Pos) -> Result<Expr> {
    match op {
        UnaryOperator::Minus => {
            if let AstExpr::Value(value) = inner {
                if matches!(value.value, Value::Number(..)) {
                    return Ok(Expr::Literal(literal_of(value, true, pos)?));
                }
            }
            let planned = plan_expr(inner, scope)?;
            let data_type = planned.data_type();
            if numeric_rank(&data_type).is_none() && data_type != DataType::Null {
                return Err(EngineError::plan(
                    format!(
                        "unary minus needs a number, found {}",
                        sql_type_name(&data_type)
                    ),
                    pos,
                ));
            }
            Ok(Expr::Unary {
                op: UnaryOp::Negate,
                expr: Box::new(planned),
            })
        }
        UnaryOperator::Plus => {
            let planned = plan_expr(inner, scope)?;
            let data_type = planned.data_type();
            if numeric_rank(&data_type).is_none() {
                return Err(EngineError::plan(
                    format!(
                        "unary plus needs a number, found {}",
                        sql_type_name(&data_type)
                    ),
                    pos,
                ));
            }
            Ok(planned)
        }
        UnaryOperator::Not => {
            let planned = coerce_boolean(plan_expr(inner, scope)?, "NOT", pos)?;
            Ok(Expr::Unary {
                op: UnaryOp::Not,
                expr: Box::new(planned),
            })
        }
        other => Err(EngineError::plan(
            format!("the operator {other} is not supported"),
            pos,
        )),
    }
}

fn plan_binary(
    left: &AstExpr,
    op: &BinaryOperator,
    right: &AstExpr,
    scope: &mut dyn Scope,
    pos: Pos,
) -> Result<Expr> {
    let op = match op {
        BinaryOperator::Plus => BinaryOp::Plus,
        BinaryOperator::Minus => BinaryOp::Minus,
        BinaryOperator::Multiply => BinaryOp::Multiply,
        BinaryOperator::Divide => BinaryOp::Divide,
        BinaryOperator::Modulo => BinaryOp::Modulo,
        BinaryOperator::Eq => BinaryOp::Eq,
        BinaryOperator::NotEq => BinaryOp::NotEq,
        BinaryOperator::Lt => BinaryOp::Lt,
        BinaryOperator::LtEq => BinaryOp::LtEq,
        BinaryOperator::Gt => BinaryOp::Gt,
        BinaryOperator::GtEq => BinaryOp::GtEq,
        BinaryOperator::And => BinaryOp::And,
        BinaryOperator::Or => BinaryOp::Or,
        BinaryOperator::StringConcat => {
            return Err(EngineError::plan(
                "string concatenation (||) is not supported yet",
                pos,
            ))
        }
        other => {
            return Err(EngineError::plan(
                format!("the operator {other} is not supported"),
                pos,
            ))
        }
    };
    // ts + INTERVAL ..., ts - INTERVAL ..., INTERVAL ... + ts
    if matches!(op, BinaryOp::Plus | BinaryOp::Minus) {
        if let AstExpr::Interval(interval) = unnest(right) {
            let ms = interval_ms(interval, pos)?;
            let timestamp = plan_expr(left, scope)?;
            return timestamp_shift(op, timestamp, ms, pos);
        }
        if let AstExpr::Interval(interval) = unnest(left) {
            if op == BinaryOp::Minus {
                return Err(EngineError::plan(
                    "INTERVAL - timestamp is not defined; write timestamp - INTERVAL ...",
                    pos,
                ));
            }
            let ms = interval_ms(interval, pos)?;
            let timestamp = plan_expr(right, scope)?;
            return timestamp_shift(op, timestamp, ms, pos);
        }
    }
    let left = plan_expr(left, scope)?;
    let right = plan_expr(right, scope)?;
    typed_binary(op, left, right, pos)
}

/// `timestamp +/- ms`: a Binary whose right side is BIGINT milliseconds (see `crate::expr`).
fn timestamp_shift(op: BinaryOp, timestamp: Expr, ms: i64, pos: Pos) -> Result<Expr> {
    let data_type = timestamp.data_type();
    if data_type != timestamp_type() {
        return Err(EngineError::plan(
            format!(
                "INTERVAL arithmetic needs a TIMESTAMP, found {}",
                sql_type_name(&data_type)
            ),
            pos,
        ));
    }
    Ok(Expr::Binary {
        op,
        left: Box::new(timestamp),
        right: Box::new(Expr::Literal(Literal::Int64(ms))),
        data_type,
    })
}

/// A binary operator over planned operands, with the casts that make their types equal.
pub(crate) fn typed_binary(op: BinaryOp, left: Expr, right: Expr, pos: Pos) -> Result<Expr> {
    let symbol = super::explain::binary_symbol(op);
    match op {
        BinaryOp::And | BinaryOp::Or => {
            let left = coerce_boolean(left, symbol, pos)?;
            let right = coerce_boolean(right, symbol, pos)?;
            Ok(binary(op, left, right, DataType::Boolean))
        }
        BinaryOp::Eq
        | BinaryOp::NotEq
        | BinaryOp::Lt
        | BinaryOp::LtEq
        | BinaryOp::Gt
        | BinaryOp::GtEq => {
            let (left, right) = timestamp_literals(left, right);
            let (lt, rt) = (left.data_type(), right.data_type());
            let common = match common_type(&lt, &rt) {
                Some(DataType::Null) => DataType::Boolean,
                Some(t) => t,
                None => {
                    return Err(EngineError::plan(
                        format!(
                            "cannot compare {} with {} (operator {symbol}); use CAST",
                            sql_type_name(&lt),
                            sql_type_name(&rt)
                        ),
                        pos,
                    ))
                }
            };
            Ok(binary(
                op,
                coerce(left, &common),
                coerce(right, &common),
                DataType::Boolean,
            ))
        }
        BinaryOp::Plus
        | BinaryOp::Minus
        | BinaryOp::Multiply
        | BinaryOp::Divide
        | BinaryOp::Modulo => {
            let (lt, rt) = (left.data_type(), right.data_type());
            let common = common_type(&lt, &rt)
                .filter(|t| numeric_rank(t).is_some())
                .or_else(|| {
                    (lt == DataType::Null && rt == DataType::Null).then_some(DataType::Int32)
                })
                .ok_or_else(|| {
                    EngineError::plan(
                        format!(
                            "operator {symbol} needs numbers, found {} and {}",
                            sql_type_name(&lt),
                            sql_type_name(&rt)
                        ),
                        pos,
                    )
                })?;
            Ok(binary(
                op,
                coerce(left, &common),
                coerce(right, &common),
                common,
            ))
        }
    }
}

fn binary(op: BinaryOp, left: Expr, right: Expr, data_type: DataType) -> Expr {
    Expr::Binary {
        op,
        left: Box::new(left),
        right: Box::new(right),
        data_type,
    }
}

/// In a comparison of a TIMESTAMP with a string literal, the literal becomes a timestamp
/// (when it parses as one; otherwise the comparison reports the type mismatch).
fn timestamp_literals(left: Expr, right: Expr) -> (Expr, Expr) {
    let ts = timestamp_type();
    let convert = |e: Expr, other: &Expr| -> Expr {
        match (&e, other.data_type() == ts) {
            (Expr::Literal(lit @ Literal::Utf8(_)), true) => match coerce_literal(lit, &ts) {
                Some(converted) => Expr::Literal(converted),
                None => e,
            },
            _ => e,
        }
    };
    let left2 = convert(left, &right);
    let right2 = convert(right, &left2);
    (left2, right2)
}

fn coerce_boolean(expr: Expr, operator: &str, pos: Pos) -> Result<Expr> {
    match expr.data_type() {
        DataType::Boolean => Ok(expr),
        DataType::Null => Ok(coerce(expr, &DataType::Boolean)),
        other => Err(EngineError::plan(
            format!(
                "{operator} needs a BOOLEAN, found {}",
                sql_type_name(&other)
            ),
            pos,
        )),
    }
}

/// `expr` as type `to`: unchanged, a converted literal, or a Cast node.
pub(crate) fn coerce(expr: Expr, to: &DataType) -> Expr {
    if expr.data_type() == *to {
        return expr;
    }
    if let Expr::Literal(literal) = &expr {
        if let Some(converted) = coerce_literal(literal, to) {
            return Expr::Literal(converted);
        }
    }
    Expr::Cast {
        expr: Box::new(expr),
        to: to.clone(),
    }
}

/// Converts a literal at plan time (numeric widening, NULL, timestamp strings); None when
/// the conversion is not one of these.
pub(crate) fn coerce_literal(literal: &Literal, to: &DataType) -> Option<Literal> {
    Some(match (literal, to) {
        (Literal::Null(_), _) => Literal::Null(to.clone()),
        (Literal::Int32(v), DataType::Int64) => Literal::Int64(i64::from(*v)),
        (Literal::Int32(v), DataType::Float32) => Literal::Float32(*v as f32),
        (Literal::Int32(v), DataType::Float64) => Literal::Float64(f64::from(*v)),
        (Literal::Int64(v), DataType::Float32) => Literal::Float32(*v as f32),
        (Literal::Int64(v), DataType::Float64) => Literal::Float64(*v as f64),
        (Literal::Float32(v), DataType::Float64) => Literal::Float64(f64::from(*v)),
        (Literal::Utf8(s), DataType::Timestamp(..)) if *to == timestamp_type() => {
            Literal::TimestampMs(parse_timestamp_ms(s)?)
        }
        _ => return None,
    })
}

/// `CAST(inner AS to)`, refused when Arrow cannot convert the types.
pub(crate) fn plan_cast(inner: Expr, to: DataType, pos: Pos) -> Result<Expr> {
    let from = inner.data_type();
    if from == to {
        return Ok(inner);
    }
    if let Expr::Literal(Literal::Null(_)) = inner {
        return Ok(Expr::Literal(Literal::Null(to)));
    }
    if !arrow::compute::can_cast_types(&from, &to) {
        return Err(EngineError::plan(
            format!(
                "cannot CAST {} to {}",
                sql_type_name(&from),
                sql_type_name(&to)
            ),
            pos,
        ));
    }
    Ok(Expr::Cast {
        expr: Box::new(inner),
        to,
    })
}

fn plan_case(
    operand: Option<&AstExpr>,
    conditions: &[sqlparser::ast::CaseWhen],
    else_result: Option<&AstExpr>,
    scope: &mut dyn Scope,
    pos: Pos,
) -> Result<Expr> {
    let operand = match operand {
        Some(ast) => Some(plan_expr(ast, scope)?),
        None => None,
    };
    let mut branches = Vec::with_capacity(conditions.len());
    for when in conditions {
        let when_pos = pos_of(when.condition.span(), pos);
        let condition = plan_expr(&when.condition, scope)?;
        let condition = match &operand {
            // CASE x WHEN v THEN ...  ==  CASE WHEN x = v THEN ...
            Some(value) => typed_binary(BinaryOp::Eq, value.clone(), condition, when_pos)?,
            None => coerce_boolean(condition, "CASE WHEN", when_pos)?,
        };
        branches.push((condition, plan_expr(&when.result, scope)?));
    }
    let otherwise = match else_result {
        Some(ast) => Some(plan_expr(ast, scope)?),
        None => None,
    };
    let mut data_type = DataType::Null;
    for result in branches.iter().map(|(_, r)| r).chain(otherwise.iter()) {
        let result_type = result.data_type();
        data_type = common_type(&data_type, &result_type).ok_or_else(|| {
            EngineError::plan(
                format!(
                    "CASE results have incompatible types {} and {}",
                    sql_type_name(&data_type),
                    sql_type_name(&result_type)
                ),
                pos,
            )
        })?;
    }
    let branches = branches
        .into_iter()
        .map(|(c, r)| (c, coerce(r, &data_type)))
        .collect();
    Ok(Expr::Case {
        branches,
        otherwise: otherwise.map(|o| Box::new(coerce(o, &data_type))),
        data_type,
    })
}

/// Removes parentheses.
pub(crate) fn unnest(expr: &AstExpr) -> &AstExpr {
    match expr {
        AstExpr::Nested(inner) => unnest(inner),
        other => other,
    }
}

/// Whether `ast` calls an aggregate function (outside of nested subqueries).
pub(crate) fn contains_aggregate(ast: &AstExpr) -> bool {
    match ast {
        AstExpr::Function(function) => {
            let is_aggregate = matches!(function.name.0.as_slice(), [part]
                if part.as_ident().is_some_and(|i| AGGREGATE_FUNCTIONS.iter().any(|a| i.value.eq_ignore_ascii_case(a))));
            is_aggregate
                || match &function.args {
                    FunctionArguments::List(list) => list.args.iter().any(|arg| match arg {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(e))
                        | FunctionArg::Named {
                            arg: FunctionArgExpr::Expr(e),
                            ..
                        } => contains_aggregate(e),
                        _ => false,
                    }),
                    _ => false,
                }
        }
        AstExpr::Nested(e)
        | AstExpr::UnaryOp { expr: e, .. }
        | AstExpr::IsNull(e)
        | AstExpr::IsNotNull(e)
        | AstExpr::Cast { expr: e, .. } => contains_aggregate(e),
        AstExpr::BinaryOp { left, right, .. } => {
            contains_aggregate(left) || contains_aggregate(right)
        }
        AstExpr::Between {
            expr, low, high, ..
        } => contains_aggregate(expr) || contains_aggregate(low) || contains_aggregate(high),
        AstExpr::In { expr, target, .. } => {
            contains_aggregate(expr)
                || matches!(target, InTarget::List(items) if items.iter().any(contains_aggregate))
        }
        AstExpr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            operand.as_deref().is_some_and(contains_aggregate)
                || conditions
                    .iter()
                    .any(|w| contains_aggregate(&w.condition) || contains_aggregate(&w.result))
                || else_result.as_deref().is_some_and(contains_aggregate)
        }
        _ => false,
    }
}
