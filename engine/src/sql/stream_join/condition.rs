//! The ON condition of a join of two streams (and WHERE's time bounds): key equalities,
//! equal window bounds, or bounds between the two event times.

use sqlparser::ast::{BinaryOperator, Expr as AstExpr, Spanned};

use super::super::expr_planner::{coerce, plan_expr, unnest};
use super::super::pos_of;
use super::super::source::{Source, SourceScope};
use super::super::types::{common_type, timestamp_type};
use super::PlannedSide;
use crate::error::{EngineError, Pos, Result};
use crate::plan::{BinaryOp, Expr, Literal, StreamJoinKind, WindowKind};

/// What the ON condition (and WHERE's time bounds) say.
#[derive(Default)]
pub(super) struct Conditions {
    /// Key pairs (left over the left outputs, right over the right outputs), same types.
    pub(super) keys: Vec<(Expr, Expr)>,
    window_start_equal: bool,
    window_end_equal: bool,
    /// `left.ts - right.ts >= lower`, `<= upper`.
    lower_ms: Option<i64>,
    upper_ms: Option<i64>,
    /// `right.ts <= left[column]`: a left output column that bounds the right time.
    pub(super) until_column: Option<usize>,
}

const USAGE: &str = "the ON condition of a join of two streams must be key equalities (L.k = R.k) joined by AND with a time condition: L.window_start = R.window_start AND L.window_end = R.window_end (window join) or L.ts BETWEEN R.ts - INTERVAL .. AND R.ts + INTERVAL .. (interval join)";

pub(super) fn split_and<'a>(expr: &'a AstExpr, out: &mut Vec<&'a AstExpr>) {
    match unnest(expr) {
        AstExpr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            split_and(left, out);
            split_and(right, out);
        }
        other => out.push(other),
    }
}

/// Which side an expression reads: Some(false) only left columns, Some(true) only right
/// columns, None both or none.
pub(super) fn side_of(expr: &Expr, offset: usize) -> Option<bool> {
    let mut columns = Vec::new();
    collect_columns(expr, &mut columns);
    if columns.is_empty() {
        return None;
    }
    if columns.iter().all(|&c| c < offset) {
        Some(false)
    } else if columns.iter().all(|&c| c >= offset) {
        Some(true)
    } else {
        None
    }
}

fn collect_columns(expr: &Expr, out: &mut Vec<usize>) {
    match expr {
        Expr::Column { index, .. } => out.push(*index),
        Expr::Literal(_) => {}
        Expr::Binary { left, right, .. } => {
            collect_columns(left, out);
            collect_columns(right, out);
        }
        Expr::Unary { expr, .. } | Expr::IsNull { expr, .. } | Expr::Cast { expr, .. } => {
            collect_columns(expr, out)
        }
        Expr::Case {
            branches,
            otherwise,
            ..
        } => {
            for (c, v) in branches {
                collect_columns(c, out);
                collect_columns(v, out);
            }
            if let Some(o) = otherwise {
                collect_columns(o, out);
            }
        }
    }
}

/// Shifts the column indexes of `expr` down by `offset` (right side outputs).
fn rebase(expr: Expr, offset: usize) -> Expr {
    renumber(expr, &|index| index - offset)
}

/// `expr` with each column index `i` replaced by `new_index(i)`.
pub(super) fn renumber(mut expr: Expr, new_index: &dyn Fn(usize) -> usize) -> Expr {
    expr.remap_columns(new_index);
    expr
}

/// The columns an expression reads.
pub(super) fn columns_of(expr: &Expr) -> Vec<usize> {
    let mut out = Vec::new();
    collect_columns(expr, &mut out);
    out
}

/// `column + ms` (a TIMESTAMP column shifted by constant intervals): (column, ms).
fn linear_time(expr: &Expr) -> Option<(usize, i64)> {
    match expr {
        Expr::Column {
            index, data_type, ..
        } if *data_type == timestamp_type() => Some((*index, 0)),
        Expr::Binary {
            op: op @ (BinaryOp::Plus | BinaryOp::Minus),
            left,
            right,
            ..
        } => {
            let (c, base) = linear_time(left)?;
            let Expr::Literal(Literal::Int64(ms)) = right.as_ref() else {
                return None;
            };
            let ms = if *op == BinaryOp::Plus {
                *ms
            } else {
                ms.checked_neg()?
            };
            Some((c, base.checked_add(ms)?))
        }
        _ => None,
    }
}

#[derive(Clone, Copy)]
enum Bound {
    /// `left.ts - right.ts >= ms`
    AtLeast(i64),
    /// `left.ts - right.ts <= ms`
    AtMost(i64),
    /// `right.ts <= left[column]`
    Until(usize),
}

/// `a op b` as `right.ts <= left[column]`, where the column is a TIMESTAMP column of the
/// left side other than its event time (Nexmark q9's `B.dateTime <= A.expires`).
fn until_bound(
    a: &Expr,
    op: BinaryOp,
    b: &Expr,
    times: (Option<usize>, Option<usize>),
    offset: usize,
) -> Option<Bound> {
    let column = |e: &Expr| match e {
        Expr::Column {
            index, data_type, ..
        } if *data_type == timestamp_type() => Some(*index),
        _ => None,
    };
    let (ca, cb) = (column(a)?, column(b)?);
    let right_time = times.1? + offset;
    let is_left = |c: usize| c < offset && Some(c) != times.0;
    match op {
        BinaryOp::LtEq if ca == right_time && is_left(cb) => Some(Bound::Until(cb)),
        BinaryOp::GtEq if cb == right_time && is_left(ca) => Some(Bound::Until(ca)),
        _ => None,
    }
}

/// `a op b` as a bound on `left.ts - right.ts`, when `a` and `b` are the two sides' event
/// times shifted by constants. None: not a time bound between the sides.
fn time_bound(
    a: &Expr,
    op: BinaryOp,
    b: &Expr,
    times: (Option<usize>, Option<usize>),
    offset: usize,
) -> Option<Bound> {
    let (ca, ka) = linear_time(a)?;
    let (cb, kb) = linear_time(b)?;
    let left_time = times.0?;
    let right_time = times.1? + offset;
    // a - b op 0  <=>  (ca - cb) op (kb - ka)
    let k = kb.checked_sub(ka)?;
    let (op, k) = if ca == left_time && cb == right_time {
        (op, k)
    } else if ca == right_time && cb == left_time {
        // right - left op k  <=>  left - right op' -k
        let flipped = match op {
            BinaryOp::Lt => BinaryOp::Gt,
            BinaryOp::LtEq => BinaryOp::GtEq,
            BinaryOp::Gt => BinaryOp::Lt,
            BinaryOp::GtEq => BinaryOp::LtEq,
            other => other,
        };
        (flipped, k.checked_neg()?)
    } else {
        return None;
    };
    match op {
        BinaryOp::GtEq => Some(Bound::AtLeast(k)),
        BinaryOp::Gt => Some(Bound::AtLeast(k.checked_add(1)?)),
        BinaryOp::LtEq => Some(Bound::AtMost(k)),
        BinaryOp::Lt => Some(Bound::AtMost(k.checked_sub(1)?)),
        _ => None,
    }
}

fn comparison_op(op: &BinaryOperator) -> Option<BinaryOp> {
    Some(match op {
        BinaryOperator::Gt => BinaryOp::Gt,
        BinaryOperator::GtEq => BinaryOp::GtEq,
        BinaryOperator::Lt => BinaryOp::Lt,
        BinaryOperator::LtEq => BinaryOp::LtEq,
        _ => return None,
    })
}

/// The time bounds a conjunct states (empty: none).
fn bounds_of(
    conjunct: &AstExpr,
    scope: &mut SourceScope<'_, '_>,
    times: (Option<usize>, Option<usize>),
    offset: usize,
) -> Result<Vec<Bound>> {
    match conjunct {
        AstExpr::Between {
            expr,
            negated: false,
            low,
            high,
        } => {
            let e = plan_expr(expr, scope)?;
            let low = plan_expr(low, scope)?;
            let high = plan_expr(high, scope)?;
            let bounds: Vec<Bound> = [
                time_bound(&e, BinaryOp::GtEq, &low, times, offset)
                    .or_else(|| until_bound(&low, BinaryOp::LtEq, &e, times, offset)),
                time_bound(&e, BinaryOp::LtEq, &high, times, offset)
                    .or_else(|| until_bound(&e, BinaryOp::LtEq, &high, times, offset)),
            ]
            .into_iter()
            .flatten()
            .collect();
            // Half a BETWEEN is no bound: the conjunct is then a condition of its own.
            Ok(if bounds.len() == 2 {
                bounds
            } else {
                Vec::new()
            })
        }
        AstExpr::BinaryOp { left, op, right } => match comparison_op(op) {
            Some(op) => {
                let l = plan_expr(left, scope)?;
                let r = plan_expr(right, scope)?;
                Ok(time_bound(&l, op, &r, times, offset)
                    .or_else(|| until_bound(&l, op, &r, times, offset))
                    .into_iter()
                    .collect())
            }
            None => Ok(Vec::new()),
        },
        _ => Ok(Vec::new()),
    }
}

fn apply_bounds(conditions: &mut Conditions, bounds: &[Bound]) {
    for b in bounds {
        match *b {
            Bound::AtLeast(k) => {
                conditions.lower_ms = Some(conditions.lower_ms.map_or(k, |l| l.max(k)))
            }
            Bound::AtMost(k) => {
                conditions.upper_ms = Some(conditions.upper_ms.map_or(k, |u| u.min(k)))
            }
            Bound::Until(c) => conditions.until_column = Some(c),
        }
    }
}

pub(super) fn plan_condition(
    condition: Option<&AstExpr>,
    selection: Option<&AstExpr>,
    source: &Source<'_>,
    left: &PlannedSide,
    right: &PlannedSide,
    fallback: Pos,
) -> Result<Conditions> {
    let offset = left.columns.len();
    let times = (left.event_time, right.event_time);
    let mut conjuncts = Vec::new();
    if let Some(condition) = condition {
        split_and(condition, &mut conjuncts);
    }
    let mut out = Conditions::default();
    for conjunct in conjuncts {
        let pos = pos_of(conjunct.span(), fallback);
        let mut scope = SourceScope {
            source,
            clause: "the JOIN condition",
            fallback: pos,
        };
        if let AstExpr::BinaryOp {
            left: a,
            op: BinaryOperator::Eq,
            right: b,
        } = conjunct
        {
            let a = plan_expr(a, &mut scope)?;
            let b = plan_expr(b, &mut scope)?;
            let (l, r) = match (side_of(&a, offset), side_of(&b, offset)) {
                (Some(false), Some(true)) => (a, rebase(b, offset)),
                (Some(true), Some(false)) => (b, rebase(a, offset)),
                _ => {
                    return Err(EngineError::plan(
                        format!("{USAGE}; {conjunct} does not compare the two sides"),
                        pos,
                    ))
                }
            };
            let is = |e: &Expr, c: Option<usize>| matches!((e, c), (Expr::Column { index, .. }, Some(c)) if *index == c);
            if is(&l, left.window_start) && is(&r, right.window_start) {
                out.window_start_equal = true;
                continue;
            }
            if is(&l, left.window_end) && is(&r, right.window_end) {
                out.window_end_equal = true;
                continue;
            }
            let (lt, rt) = (l.data_type(), r.data_type());
            let common = common_type(&lt, &rt).ok_or_else(|| {
                EngineError::plan(
                    format!(
                        "{conjunct}: cannot compare {} with {}; use CAST",
                        super::super::sql_type_name(&lt),
                        super::super::sql_type_name(&rt)
                    ),
                    pos,
                )
            })?;
            out.keys.push((coerce(l, &common), coerce(r, &common)));
            continue;
        }
        let bounds = bounds_of(conjunct, &mut scope, times, offset)?;
        if bounds.is_empty() {
            return Err(EngineError::plan(
                format!("{USAGE}; found {conjunct} (other conditions go into WHERE)"),
                pos,
            ));
        }
        apply_bounds(&mut out, &bounds);
    }
    // As in Flink, WHERE may carry the time bounds of an interval join (they stay in the
    // filter too, where every joined row passes them).
    if let Some(selection) = selection {
        let mut conjuncts = Vec::new();
        split_and(selection, &mut conjuncts);
        for conjunct in conjuncts {
            let pos = pos_of(conjunct.span(), fallback);
            let mut scope = SourceScope {
                source,
                clause: "WHERE",
                fallback: pos,
            };
            if let Ok(bounds) = bounds_of(conjunct, &mut scope, times, offset) {
                apply_bounds(&mut out, &bounds);
            }
            // A comma join (`FROM a, b WHERE a.k = b.k ...`) states its keys in WHERE.
            if condition.is_none() {
                if let Some(key) = key_equality(conjunct, &mut scope, offset) {
                    out.keys.push(key);
                }
            }
        }
    }
    Ok(out)
}

/// `a = b` over one side each with comparable types: the key pair (left, right over the
/// right outputs).
fn key_equality(
    conjunct: &AstExpr,
    scope: &mut SourceScope<'_, '_>,
    offset: usize,
) -> Option<(Expr, Expr)> {
    let AstExpr::BinaryOp {
        left: a,
        op: BinaryOperator::Eq,
        right: b,
    } = conjunct
    else {
        return None;
    };
    let a = plan_expr(a, scope).ok()?;
    let b = plan_expr(b, scope).ok()?;
    let (l, r) = match (side_of(&a, offset), side_of(&b, offset)) {
        (Some(false), Some(true)) => (a, rebase(b, offset)),
        (Some(true), Some(false)) => (b, rebase(a, offset)),
        _ => return None,
    };
    let common = common_type(&l.data_type(), &r.data_type())?;
    Some((coerce(l, &common), coerce(r, &common)))
}

/// Checks that every WHERE conjunct of a top-N join is a key equality, a time bound, or
/// a condition over one side (pushed into that side): the join applies no other
/// condition before ranking.
pub(super) fn check_top_where(
    selection: Option<&AstExpr>,
    source: &Source<'_>,
    left: &PlannedSide,
    right: &PlannedSide,
    fallback: Pos,
) -> Result<()> {
    let Some(selection) = selection else {
        return Ok(());
    };
    let offset = left.columns.len();
    let times = (left.event_time, right.event_time);
    let mut conjuncts = Vec::new();
    split_and(selection, &mut conjuncts);
    for conjunct in conjuncts {
        let pos = pos_of(conjunct.span(), fallback);
        let mut scope = SourceScope {
            source,
            clause: "WHERE",
            fallback: pos,
        };
        let planned = plan_expr(conjunct, &mut scope)?;
        if side_of(&planned, offset).is_some()
            || key_equality(conjunct, &mut scope, offset).is_some()
            || !bounds_of(conjunct, &mut scope, times, offset)?.is_empty()
        {
            continue;
        }
        return Err(EngineError::plan(
            format!("not supported yet: {conjunct} in a join ranked by ROW_NUMBER(); its WHERE may hold key equalities, the time bounds and conditions over one side"),
            pos,
        ));
    }
    Ok(())
}

/// The kind of a join with a column-valued bound (`R.ts BETWEEN L.ts AND L.until`),
/// ranked by ROW_NUMBER() per left row.
fn top_join_kind(
    c: &Conditions,
    left: &PlannedSide,
    right: &PlannedSide,
    top: bool,
    pos: Pos,
) -> Result<StreamJoinKind> {
    const FORM: &str = "R.ts BETWEEN L.ts AND L.until_column (R.ts >= L.ts [+/- INTERVAL ..] AND R.ts <= L.until_column)";
    if !top {
        return Err(EngineError::plan(
            format!("not supported yet: a time bound that is a column ({FORM}) without ranking the matches per left row: use ROW_NUMBER() OVER (PARTITION BY <left key> ORDER BY ...) AS rn in a subquery and WHERE rn <= N outside"),
            pos,
        ));
    }
    if left.side.window.is_some() || right.side.window.is_some() {
        return Err(EngineError::plan(
            "not supported yet: ROW_NUMBER() over a join of window table functions",
            pos,
        ));
    }
    let (Some(until_column), Some(upper_ms), None) = (c.until_column, c.upper_ms, c.lower_ms)
    else {
        return Err(EngineError::plan(
            format!("not supported yet: ROW_NUMBER() over a join of two streams needs the time condition {FORM}, and no other time bound"),
            pos,
        ));
    };
    if left.event_time.is_none() || right.event_time.is_none() {
        return Err(EngineError::plan(
            "each side of a join of two streams must select its table's WATERMARK column (its rows are freed by event time)",
            pos,
        ));
    }
    let from_ms = upper_ms
        .checked_neg()
        .ok_or_else(|| EngineError::plan("the interval join's lower bound is out of range", pos))?;
    Ok(StreamJoinKind::IntervalUntil {
        from_ms,
        until_column,
    })
}

/// Whether `side`'s output is its input unchanged (a table or a window table function).
fn is_identity(side: &PlannedSide) -> bool {
    let input = side.table.columns.len() + if side.side.window.is_some() { 2 } else { 0 };
    side.side.projection.len() == input
        && side
            .side
            .projection
            .iter()
            .enumerate()
            .all(|(i, e)| matches!(e, Expr::Column { index, .. } if *index == i))
}

/// The WHERE conjuncts over one side only, as filters of that side (over its input), for
/// sides that are a table or a window table function: they drop rows before the join
/// state holds them. They stay in the WHERE too, where every joined row passes them.
pub(super) fn side_filters(
    selection: Option<&AstExpr>,
    source: &Source<'_>,
    left: &PlannedSide,
    right: &PlannedSide,
    fallback: Pos,
) -> [Option<Expr>; 2] {
    let mut filters: [Option<Expr>; 2] = [None, None];
    let Some(selection) = selection else {
        return filters;
    };
    let offset = left.columns.len();
    let mut conjuncts = Vec::new();
    split_and(selection, &mut conjuncts);
    for conjunct in conjuncts {
        let pos = pos_of(conjunct.span(), fallback);
        let mut scope = SourceScope {
            source,
            clause: "WHERE",
            fallback: pos,
        };
        // A conjunct that does not plan is reported by the WHERE itself.
        let Ok(planned) = plan_expr(conjunct, &mut scope) else {
            continue;
        };
        if planned.data_type() != arrow::datatypes::DataType::Boolean {
            continue;
        }
        let (slot, expr) = match side_of(&planned, offset) {
            Some(false) if is_identity(left) => (0, planned),
            Some(true) if is_identity(right) => (1, rebase(planned, offset)),
            _ => continue,
        };
        filters[slot] = Some(match filters[slot].take() {
            None => expr,
            Some(before) => Expr::Binary {
                op: BinaryOp::And,
                left: Box::new(before),
                right: Box::new(expr),
                data_type: arrow::datatypes::DataType::Boolean,
            },
        });
    }
    filters
}

pub(super) fn join_kind(
    c: &Conditions,
    left: &PlannedSide,
    right: &PlannedSide,
    top: bool,
    pos: Pos,
) -> Result<StreamJoinKind> {
    if c.keys.is_empty() {
        return Err(EngineError::plan(
            format!("{USAGE}; there is no key equality (a join of two streams without a key is not supported)"),
            pos,
        ));
    }
    if top || c.until_column.is_some() {
        return top_join_kind(c, left, right, top, pos);
    }
    match (left.side.window, right.side.window) {
        (Some(l), Some(r)) => {
            if c.lower_ms.is_some() || c.upper_ms.is_some() {
                return Err(EngineError::plan(
                    "a window join cannot also have time bounds (interval join conditions)",
                    pos,
                ));
            }
            if l.kind != r.kind || l.offset_ms != r.offset_ms {
                return Err(EngineError::plan(
                    format!(
                        "the two sides of a window join must use the same window: {:?} and {:?}",
                        l.kind, r.kind
                    ),
                    pos,
                ));
            }
            if !matches!(
                l.kind,
                WindowKind::Tumble { .. } | WindowKind::Hop { .. } | WindowKind::Cumulate { .. }
            ) {
                return Err(EngineError::plan(
                    format!(
                        "not supported yet: window joins over {} windows (TUMBLE, HOP and CUMULATE are supported)",
                        l.kind.name()
                    ),
                    pos,
                ));
            }
            if !c.window_start_equal
                || !c.window_end_equal
                || left.window_end.is_none()
                || right.window_end.is_none()
            {
                return Err(EngineError::plan(
                    format!("{USAGE}; a window join must select window_start and window_end on both sides and equate them"),
                    pos,
                ));
            }
            Ok(StreamJoinKind::Window)
        }
        (None, None) => {
            // A missing bound keeps the rows it would free: without any, a regular join
            // whose state only the join state limits bound.
            let lower_ms = c.lower_ms.unwrap_or(i64::MIN);
            let upper_ms = c.upper_ms.unwrap_or(i64::MAX);
            if left.event_time.is_none() || right.event_time.is_none() {
                return Err(EngineError::plan(
                    "each side of a join of two streams must select its table's WATERMARK column (its rows are freed by event time)",
                    pos,
                ));
            }
            if lower_ms > upper_ms {
                return Err(EngineError::plan(
                    format!("the interval join's bounds are empty: left.ts - right.ts must be >= {lower_ms} ms and <= {upper_ms} ms"),
                    pos,
                ));
            }
            Ok(StreamJoinKind::Interval { lower_ms, upper_ms })
        }
        _ => Err(EngineError::plan(
            "a window join needs the same window table function on both sides; an interval join none",
            pos,
        )),
    }
}
