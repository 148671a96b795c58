//! A per-window MAX (or MIN) joined back (Nexmark q5, q7): `FROM rows JOIN (SELECT MAX(x)
//! AS m, window_start, window_end FROM <the same rows> GROUP BY window_start, window_end) r
//! ON ...`, planned as the top-1 with ties of each window (`window_topn.rs`): the rows whose
//! `x` equals the window's MAX. The rows are an aggregate subquery over a window (q5; the
//! windows must be equal: `a.window_start = r.window_start`) or the raw table (q7; its time
//! column must lie in the window: `rows.ts >= r.window_start AND rows.ts < r.window_end`,
//! also written `>= r.window_end - INTERVAL size`). Every other condition is a filter of the
//! result, sound because the joined rows satisfy the equalities above.

use sqlparser::ast::{
    BinaryOperator, Expr as AstExpr, FunctionArguments, GroupByExpr, Ident, JoinConstraint,
    JoinOperator, Select, SelectItem, Spanned, TableFactor,
};

use super::expr_planner::{plan_expr, unnest};
use super::interval::interval_ms;
use super::planner::{plan_query, require_boolean, PlannedQuery};
use super::pos_of;
use super::subquery::{alias_name, and, plan_outputs, refuse_outer_aggregate, DerivedScope, Side};
use super::window_topn::{
    column_at, conjuncts, finish, remap, select_of, ts_column, Input, Ranked,
};
use super::window_topn_groups::{groups_index, inner_aggregate};
use crate::error::{EngineError, Pos, Result};
use crate::plan::{Aggregation, Expr, Program, WindowKind, WindowSpec};

/// The per-window MAX (or MIN) side of a join: its columns.
enum MaxColumn {
    Start,
    End,
    Value,
}

struct MaxSide {
    qualifier: Option<String>,
    window: WindowSpec,
    descending: bool,
    columns: Vec<(String, MaxColumn)>,
    /// Raw rows: the planned MAX side (its source, filter, the MAX argument over the
    /// source). Groups: the inner aggregation, and which of its aggregates is maximised.
    rows: Option<(PlannedQuery, Expr)>,
    groups: Option<(PlannedQuery, Aggregation, usize)>,
}

fn max_func(name: &str) -> Option<bool> {
    match name.to_ascii_uppercase().as_str() {
        "MAX" => Some(true),
        "MIN" => Some(false),
        _ => None,
    }
}

/// Recognises `SELECT MAX(x) AS m, window_start, window_end FROM ... GROUP BY window_start,
/// window_end`; Ok(None) when `factor` is no such subquery.
fn max_side(factor: &TableFactor, program: &Program, pos: Pos) -> Result<Option<MaxSide>> {
    let TableFactor::Derived {
        subquery, alias, ..
    } = factor
    else {
        return Ok(None);
    };
    let Some(select) = select_of(subquery) else {
        return Ok(None);
    };
    let qualifier = alias_name(alias.as_ref(), pos)?;
    let aggregates: Vec<(usize, bool, &AstExpr)> = select
        .projection
        .iter()
        .enumerate()
        .filter_map(|(i, item)| match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                match unnest(e) {
                    AstExpr::Function(f) => {
                        max_func(&f.name.to_string()).map(|d| (i, d, unnest(e)))
                    }
                    _ => None,
                }
            }
            _ => None,
        })
        .collect();
    let [(max_index, descending, max_ast)] = aggregates.as_slice() else {
        return Ok(None);
    };
    let names: Vec<String> = select
        .projection
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            SelectItem::ExprWithAlias { alias, .. } => alias.value.clone(),
            SelectItem::UnnamedExpr(e) => match unnest(e) {
                AstExpr::Identifier(id) => id.value.clone(),
                AstExpr::CompoundIdentifier(p) => {
                    p.last().map(|x| x.value.clone()).unwrap_or_default()
                }
                _ => format!("EXPR${i}"),
            },
            _ => String::new(),
        })
        .collect();
    let first = select.from.first();
    let from_derived = first.map(|f| &f.relation);
    if let Some(TableFactor::Derived {
        subquery: inner,
        alias: inner_alias,
        ..
    }) = from_derived
    {
        // Groups: MAX over an aggregate subquery, grouped by its window bounds.
        if select.selection.is_some() || select.having.is_some() {
            return Err(EngineError::plan(
                "not supported yet: WHERE / HAVING in the per-window MAX of a top-N join",
                pos,
            ));
        }
        let (planned, aggregation) = inner_aggregate(inner, program, pos)?;
        let k = aggregation.group_keys.len();
        let sides = [Side {
            qualifier: alias_name(inner_alias.as_ref(), pos)?,
            columns: planned
                .outputs
                .iter()
                .map(|o| (o.name.clone(), o.expr.clone()))
                .collect(),
        }];
        let mut scope = DerivedScope {
            sides: &sides,
            clause: "GROUP BY",
            fallback: pos,
        };
        let mut bounds = (false, false);
        let group_by: &[AstExpr] = match &select.group_by {
            GroupByExpr::Expressions(e, _) => e,
            GroupByExpr::All(_) => &[],
        };
        for e in group_by {
            match plan_expr(e, &mut scope)? {
                Expr::Column { index, .. } if index == k => bounds.0 = true,
                Expr::Column { index, .. } if index == k + 1 => bounds.1 = true,
                _ => return Ok(None),
            }
        }
        if bounds != (true, true) || group_by.len() != 2 {
            return Ok(None);
        }
        let AstExpr::Function(f) = max_ast else {
            return Ok(None);
        };
        let FunctionArguments::List(list) = &f.args else {
            return Ok(None);
        };
        let [sqlparser::ast::FunctionArg::Unnamed(sqlparser::ast::FunctionArgExpr::Expr(arg))] =
            list.args.as_slice()
        else {
            return Ok(None);
        };
        scope.clause = "MAX";
        let j = match plan_expr(arg, &mut scope)? {
            Expr::Column { index, .. } if index >= k + 2 => index - k - 2,
            _ => {
                return Err(EngineError::plan(
                    "the per-window MAX of a top-N join must take an aggregate of its subquery as it is",
                    pos_of(arg.span(), pos),
                ))
            }
        };
        let mut columns = Vec::new();
        for (i, item) in select.projection.iter().enumerate() {
            if i == *max_index {
                columns.push((names[i].clone(), MaxColumn::Value));
                continue;
            }
            let (SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. }) = item
            else {
                return Ok(None);
            };
            scope.clause = "SELECT";
            match plan_expr(e, &mut scope)? {
                Expr::Column { index, .. } if index == k => {
                    columns.push((names[i].clone(), MaxColumn::Start))
                }
                Expr::Column { index, .. } if index == k + 1 => {
                    columns.push((names[i].clone(), MaxColumn::End))
                }
                _ => return Ok(None),
            }
        }
        let window = aggregation
            .window
            .ok_or_else(|| EngineError::Internal("window".into()))?;
        return Ok(Some(MaxSide {
            qualifier,
            window,
            descending: *descending,
            columns,
            rows: None,
            groups: Some((planned, aggregation, j)),
        }));
    }
    // Raw rows: MAX over a window TVF.
    let planned = plan_query(subquery, program, pos)?;
    let Some(aggregation) = planned.aggregation.clone() else {
        return Ok(None);
    };
    let (Some(window), true, [call]) = (
        aggregation.window,
        aggregation.group_keys.is_empty() && aggregation.top_n.is_none(),
        aggregation.aggregates.as_slice(),
    ) else {
        return Ok(None);
    };
    let Some(arg) = call.arg.clone() else {
        return Ok(None);
    };
    if planned.filter.is_some() || planned.join.is_some() || aggregation.having.is_some() {
        return Err(EngineError::plan(
            "not supported yet: WHERE / HAVING / a join in the per-window MAX of a top-N join",
            pos,
        ));
    }
    let mut columns = Vec::new();
    for o in &planned.outputs {
        let c = match &o.expr {
            Expr::Column { index: 0, .. } => MaxColumn::Start,
            Expr::Column { index: 1, .. } => MaxColumn::End,
            Expr::Column { index: 2, .. } => MaxColumn::Value,
            _ => return Ok(None),
        };
        columns.push((o.name.clone(), c));
    }
    Ok(Some(MaxSide {
        qualifier,
        window,
        descending: *descending,
        columns,
        rows: Some((planned, arg)),
        groups: None,
    }))
}

/// `FROM rows JOIN (per-window MAX of the same rows) ON ...`: the rows tied for the max.
pub(super) fn plan_max_joined_back(
    select: &Select,
    program: &Program,
    pos: Pos,
) -> Result<PlannedQuery> {
    refuse_outer_aggregate(select, pos)?;
    let first = &select.from[0];
    let [join] = first.joins.as_slice() else {
        return Err(EngineError::plan(
            "a subquery in FROM may join one other FROM item (a per-window MAX joined back)",
            pos,
        ));
    };
    let join_pos = pos_of(join.span(), pos);
    let on = match &join.join_operator {
        JoinOperator::Join(JoinConstraint::On(c)) | JoinOperator::Inner(JoinConstraint::On(c)) => c,
        _ => return Err(EngineError::plan(
            "a join with a subquery must be an inner JOIN ... ON (a per-window MAX joined back)",
            join_pos,
        )),
    };
    let unsupported = || {
        EngineError::plan(
            "not supported: of the joins with a subquery only a per-window MAX (or MIN) joined \
             back is: rows JOIN (SELECT MAX(x) AS m, window_start, window_end FROM <the same rows> \
             GROUP BY window_start, window_end) r ON <equal windows> AND rows.x >= r.m",
            join_pos,
        )
    };
    let (max, rows_factor) = match max_side(&join.relation, program, join_pos)? {
        Some(m) => (m, &first.relation),
        None => match max_side(&first.relation, program, join_pos)? {
            Some(m) => (m, &join.relation),
            None => return Err(unsupported()),
        },
    };
    // The row side, its columns over the output schema (bounds, kept columns).
    let (ranked, row_side, order_column, row_ts) = match (&max.rows, &max.groups) {
        (Some((planned, arg)), _) => {
            let TableFactor::Table { name, alias, .. } = rows_factor else {
                return Err(unsupported());
            };
            if !name
                .to_string()
                .trim_matches('"')
                .eq_ignore_ascii_case(&planned.source)
            {
                return Err(unsupported());
            }
            let table = program.table(&planned.source).ok_or_else(unsupported)?;
            let mut kept = vec![arg.clone()];
            let mut columns = Vec::new();
            for (i, c) in table.columns.iter().enumerate() {
                let e = Expr::Column {
                    index: i,
                    name: c.name.clone(),
                    data_type: c.ty.to_arrow(),
                };
                let k = match kept.iter().position(|x| *x == e) {
                    Some(k) => k,
                    None => {
                        kept.push(e.clone());
                        kept.len() - 1
                    }
                };
                columns.push((c.name.clone(), column_at(2 + k, &c.name, e.data_type())));
            }
            let ts = columns[max.window.time_column].1.clone();
            let qualifier = match alias {
                Some(a) => Some(a.name.value.clone()),
                None => Some(planned.source.clone()),
            };
            let not_null = Expr::IsNull {
                expr: Box::new(arg.clone()),
                negated: true,
            };
            let ranked = Ranked {
                source: planned.source.clone(),
                join: None,
                filter: Some(not_null),
                window: max.window,
                input: Input::Rows(kept),
                partition_keys: Vec::new(),
                order: vec![(0, max.descending)],
                columns: Vec::new(),
                row_number: None,
            };
            let order_column = column_at(2, "max", arg.data_type());
            (ranked, Side { qualifier, columns }, order_column, Some(ts))
        }
        (None, Some((inner_planned, inner_agg, j))) => {
            let TableFactor::Derived {
                subquery, alias, ..
            } = rows_factor
            else {
                return Err(unsupported());
            };
            let (planned, mut aggregation) = inner_aggregate(subquery, program, join_pos)?;
            let same = planned.source == inner_planned.source
                && planned.filter == inner_planned.filter
                && planned.join == inner_planned.join
                && aggregation.window == inner_agg.window
                && aggregation.group_keys == inner_agg.group_keys
                && aggregation.having == inner_agg.having;
            let jl = aggregation
                .aggregates
                .iter()
                .position(|a| *a == inner_agg.aggregates[*j]);
            let (true, Some(jl)) = (same, jl) else {
                return Err(EngineError::plan(
                    "the per-window MAX must be over the same aggregate subquery as the rows it is \
                     joined with (same table, WHERE, window and GROUP BY, and the aggregate it \
                     maximises)",
                    join_pos,
                ));
            };
            let k = aggregation.group_keys.len();
            let map = groups_index(k);
            let columns = planned
                .outputs
                .iter()
                .map(|o| {
                    let mut e = o.expr.clone();
                    remap(&mut e, &map);
                    (o.name.clone(), e)
                })
                .collect();
            let order_index = k + jl;
            let value_type = aggregation.aggregates[jl].output_type.clone();
            let not_null = Expr::IsNull {
                expr: Box::new(column_at(k + 2 + jl, "max", value_type.clone())),
                negated: true,
            };
            aggregation.having = and(aggregation.having.take(), Some(not_null));
            let ranked = Ranked {
                source: planned.source,
                join: planned.join,
                filter: planned.filter,
                window: max.window,
                input: Input::Groups(aggregation),
                partition_keys: Vec::new(),
                order: vec![(order_index, max.descending)],
                columns: Vec::new(),
                row_number: None,
            };
            let qualifier = alias_name(alias.as_ref(), join_pos)?;
            let order_column = column_at(2 + order_index, "max", value_type);
            (ranked, Side { qualifier, columns }, order_column, None)
        }
        _ => return Err(unsupported()),
    };
    let max_side = Side {
        qualifier: max.qualifier.clone(),
        columns: max
            .columns
            .iter()
            .map(|(n, c)| {
                let e = match c {
                    MaxColumn::Start => ts_column(0, "window_start"),
                    MaxColumn::End => ts_column(1, "window_end"),
                    MaxColumn::Value => order_column.clone(),
                };
                (n.clone(), e)
            })
            .collect(),
    };
    let sides = [row_side, max_side];
    let mut parts: Vec<&AstExpr> = conjuncts(on);
    if let Some(w) = &select.selection {
        parts.extend(conjuncts(w));
    }
    let matcher = JoinMatcher {
        sides: &sides,
        order_column: &order_column,
        ts_column: row_ts.as_ref(),
        window: max.window,
        descending: max.descending,
    };
    let mut found = Found::default();
    let mut post = None;
    for part in parts {
        let p = pos_of(part.span(), pos);
        if matcher.structural(part, p, &mut found)? {
            continue;
        }
        let mut scope = DerivedScope {
            sides: &sides,
            clause: "WHERE",
            fallback: p,
        };
        post = and(
            post,
            Some(require_boolean(plan_expr(part, &mut scope)?, "WHERE", p)?),
        );
    }
    let needs_time = row_ts.is_some();
    if !found.max || (needs_time && !(found.lower && found.upper)) || (!needs_time && !found.window)
    {
        let what = if needs_time {
            "rows.x >= r.m (or =) and the rows' time in the window: rows.ts >= r.window_start \
             (or r.window_end - INTERVAL size) AND rows.ts < r.window_end"
        } else {
            "equal windows (a.window_start = r.window_start) and a.x >= r.m (or =)"
        };
        return Err(EngineError::plan(
            format!("a per-window MAX joined back needs the conditions {what}"),
            join_pos,
        ));
    }
    let outputs = plan_outputs(select, &sides, pos)?;
    finish(ranked, 1, true, post, outputs, pos)
}

#[derive(Default)]
struct Found {
    max: bool,
    window: bool,
    lower: bool,
    upper: bool,
}

struct JoinMatcher<'a> {
    sides: &'a [Side],
    order_column: &'a Expr,
    ts_column: Option<&'a Expr>,
    window: WindowSpec,
    descending: bool,
}

impl JoinMatcher<'_> {
    /// The side and output expression a bare or qualified column name resolves to.
    fn side_of(&self, ast: &AstExpr, pos: Pos) -> Result<Option<(usize, Expr)>> {
        let parts: &[Ident] = match unnest(ast) {
            AstExpr::Identifier(i) => std::slice::from_ref(i),
            AstExpr::CompoundIdentifier(p) => p,
            _ => return Ok(None),
        };
        DerivedScope {
            sides: self.sides,
            clause: "ON",
            fallback: pos,
        }
        .find(parts, pos)
    }

    /// `r.bound [+|- INTERVAL]` of the MAX side: the bound (0 start, 1 end) and the shift.
    fn bound_of(&self, ast: &AstExpr, pos: Pos) -> Result<Option<(usize, i64)>> {
        let (col, shift) = match unnest(ast) {
            AstExpr::BinaryOp { left, op, right }
                if matches!(op, BinaryOperator::Plus | BinaryOperator::Minus) =>
            {
                let AstExpr::Interval(i) = unnest(right) else {
                    return Ok(None);
                };
                let ms = interval_ms(i, pos)?;
                (
                    left.as_ref(),
                    if *op == BinaryOperator::Minus {
                        -ms
                    } else {
                        ms
                    },
                )
            }
            other => (other, 0),
        };
        match self.side_of(col, pos)? {
            Some((1, Expr::Column { index, .. })) if index < 2 => Ok(Some((index, shift))),
            _ => Ok(None),
        }
    }

    /// Whether `part` is one of the conditions the top-N itself guarantees.
    fn structural(&self, part: &AstExpr, pos: Pos, found: &mut Found) -> Result<bool> {
        if let AstExpr::Between { expr, .. } = unnest(part) {
            if self.ts_column.is_some() && self.side_of(expr, pos)?.is_some_and(|(s, _)| s == 0) {
                return Err(EngineError::plan(
                    "not supported: BETWEEN includes the window's end, so a row at exactly \
                     window_end (which belongs to the next window) would also be compared with \
                     this window's MAX; write rows.ts >= r.window_end - INTERVAL size AND rows.ts < r.window_end",
                    pos,
                ));
            }
            return Ok(false);
        }
        let AstExpr::BinaryOp { left, op, right } = unnest(part) else {
            return Ok(false);
        };
        let (l, r) = (self.side_of(left, pos)?, self.side_of(right, pos)?);
        // The op with the row side on the left.
        let flip = |op: &BinaryOperator| match op {
            BinaryOperator::Gt => BinaryOperator::Lt,
            BinaryOperator::GtEq => BinaryOperator::LtEq,
            BinaryOperator::Lt => BinaryOperator::Gt,
            BinaryOperator::LtEq => BinaryOperator::GtEq,
            o => o.clone(),
        };
        // Equal window bounds (a.starttime = r.starttime).
        if let (Some((ls, le)), Some((rs, re))) = (&l, &r) {
            let is_bound = |e: &Expr| matches!(e, Expr::Column { index, .. } if *index < 2);
            if *op == BinaryOperator::Eq && ls != rs && same_column(le, re) && is_bound(le) {
                found.window = true;
                return Ok(true);
            }
            // The max: rows.x >= r.m.
            if ls != rs && same_column(le, re) && same_column(le, self.order_column) {
                let row_op = if *ls == 0 { op.clone() } else { flip(op) };
                let ok = matches!(
                    (self.descending, row_op),
                    (_, BinaryOperator::Eq)
                        | (true, BinaryOperator::GtEq)
                        | (false, BinaryOperator::LtEq)
                );
                if ok {
                    found.max = true;
                    return Ok(true);
                }
            }
        }
        // The rows' time in the window (raw rows).
        let Some(ts) = self.ts_column else {
            return Ok(false);
        };
        let (row_op, bound) = match (&l, &r) {
            (Some((0, e)), _) if same_column(e, ts) => (op.clone(), self.bound_of(right, pos)?),
            (_, Some((0, e))) if same_column(e, ts) => (flip(op), self.bound_of(left, pos)?),
            _ => return Ok(false),
        };
        let Some((bound, shift)) = bound else {
            return Ok(false);
        };
        let size = match self.window.kind {
            WindowKind::Tumble { size_ms } | WindowKind::Hop { size_ms, .. } => Some(size_ms),
            _ => None,
        };
        // As offsets from the window start: the lower bound must be 0, the upper the size.
        let at = |b: usize, shift: i64| match (b, size) {
            (0, _) => Some(shift),
            (_, Some(s)) => Some(s + shift),
            _ => None,
        };
        match (row_op, at(bound, shift)) {
            (BinaryOperator::GtEq, Some(0)) => found.lower = true,
            (BinaryOperator::Lt, Some(s)) if Some(s) == size => found.upper = true,
            (BinaryOperator::Lt, Some(0)) if bound == 1 && size.is_none() => found.upper = true,
            _ => {
                return Err(EngineError::plan(
                    "the rows' time must lie in the window: rows.ts >= r.window_start (or \
                     r.window_end - INTERVAL size) AND rows.ts < r.window_end",
                    pos,
                ))
            }
        }
        Ok(true)
    }
}

/// Whether two expressions are the same output column (names may differ).
fn same_column(a: &Expr, b: &Expr) -> bool {
    matches!((a, b), (Expr::Column { index: x, .. }, Expr::Column { index: y, .. }) if x == y)
}
