//! Per-window top-N over the groups of an aggregate subquery (`TopNInput::Groups`): the
//! inner aggregation runs per window inside the top-N's state; its columns map to the top-N
//! output as (window bounds, inner keys, inner aggregates). See `window_topn.rs`.

use arrow::datatypes::DataType;
use sqlparser::ast::{Query, Select, Spanned};

use super::expr_planner::plan_expr;
use super::planner::{plan_query, require_boolean, PlannedQuery};
use super::pos_of;
use super::subquery::{and, plan_outputs, DerivedScope, Side};
use super::window_topn::{column_at, direction, remap, Input, Ranked};
use crate::accumulator::{inner_aggregate_allowed, Accumulator};
use crate::error::{EngineError, Pos, Result};
use crate::plan::{Aggregation, Expr, Program};

/// Maps a column of an inner aggregation's output (keys, bounds, aggregates) to the top-N
/// output (bounds, keys, aggregates).
pub(super) fn groups_index(key_count: usize) -> impl Fn(usize) -> usize {
    move |c| {
        if c < key_count {
            c + 2
        } else if c == key_count {
            0
        } else if c == key_count + 1 {
            1
        } else {
            c
        }
    }
}

/// Plans an aggregate subquery whose rows a top-N ranks: its plan, its columns.
pub(super) fn inner_aggregate(
    query: &Query,
    program: &Program,
    pos: Pos,
) -> Result<(PlannedQuery, Aggregation)> {
    let planned = plan_query(query, program, pos)?;
    let aggregation = match &planned.aggregation {
        Some(a) if a.window.is_some() && a.top_n.is_none() => a.clone(),
        _ => {
            return Err(EngineError::plan(
                "a per-window top-N ranks a window TVF's rows or a window aggregate \
                 (GROUP BY ..., window_start, window_end) subquery",
                pos,
            ))
        }
    };
    if planned.stream_join.is_some() {
        return Err(EngineError::plan(
            "not supported yet: a per-window top-N over a join of two streams",
            pos,
        ));
    }
    for (call, acc) in aggregation.aggregates.iter().zip(
        aggregation
            .aggregates
            .iter()
            .map(Accumulator::new)
            .collect::<Result<Vec<_>>>()?,
    ) {
        if !inner_aggregate_allowed(&acc) {
            return Err(EngineError::plan(
                format!(
                    "{} is not supported inside a per-window top-N; use COUNT, SUM, AVG, MIN or MAX over numbers",
                    call.func.sql_name()
                ),
                pos,
            ));
        }
    }
    Ok((planned, aggregation))
}

/// ROW_NUMBER over the groups of an aggregate subquery.
#[allow(clippy::too_many_arguments)]
pub(super) fn ranked_groups(
    select: &Select,
    subquery: &Query,
    qualifier: Option<String>,
    rn_index: usize,
    rn_name: &str,
    spec: &sqlparser::ast::WindowSpec,
    program: &Program,
    pos: Pos,
) -> Result<Ranked> {
    let (planned, mut aggregation) = inner_aggregate(subquery, program, pos)?;
    let k = aggregation.group_keys.len();
    let sides = [Side {
        qualifier,
        columns: planned
            .outputs
            .iter()
            .map(|o| (o.name.clone(), o.expr.clone()))
            .collect(),
    }];
    let mut scope = DerivedScope {
        sides: &sides,
        clause: "PARTITION BY",
        fallback: pos,
    };
    let mut bounds = (false, false);
    for e in &spec.partition_by {
        let p = pos_of(e.span(), pos);
        match plan_expr(e, &mut scope)? {
            Expr::Column { index, .. } if index == k => bounds.0 = true,
            Expr::Column { index, .. } if index == k + 1 => bounds.1 = true,
            _ => {
                return Err(EngineError::plan(
                    "not supported yet: PARTITION BY keys besides window_start, window_end over an aggregate subquery",
                    p,
                ))
            }
        }
    }
    if bounds != (true, true) {
        return Err(EngineError::plan(
            "a per-window top-N must PARTITION BY window_start, window_end",
            pos,
        ));
    }
    scope.clause = "ORDER BY";
    let map = groups_index(k);
    let mut order = Vec::new();
    for o in &spec.order_by {
        let p = pos_of(o.expr.span(), pos);
        match plan_expr(&o.expr, &mut scope)? {
            Expr::Column { index, .. } if index != k && index != k + 1 => {
                order.push((map(index) - 2, direction(o, p)?))
            }
            _ => {
                return Err(EngineError::plan(
                    "ORDER BY a group key or an aggregate of the subquery, as it is",
                    p,
                ))
            }
        }
    }
    if order.is_empty() {
        return Err(EngineError::plan("ROW_NUMBER() needs an ORDER BY", pos));
    }
    if let Some(c) = &select.selection {
        // WHERE of the ranking query: applies to the inner groups before they are ranked.
        let p = pos_of(c.span(), pos);
        scope.clause = "WHERE";
        let condition = require_boolean(plan_expr(c, &mut scope)?, "WHERE", p)?;
        aggregation.having = and(aggregation.having.take(), Some(condition));
    }
    let rn_at = 2 + k + aggregation.aggregates.len();
    let mut columns = Vec::new();
    for (i, item) in select.projection.iter().enumerate() {
        if i == rn_index {
            columns.push((
                rn_name.to_string(),
                column_at(rn_at, rn_name, DataType::Int64),
            ));
            continue;
        }
        let mut outputs = plan_outputs(
            &Select {
                projection: vec![item.clone()],
                ..select.clone()
            },
            &sides,
            pos,
        )?;
        for o in &mut outputs {
            remap(&mut o.expr, &map);
            columns.push((o.name.clone(), o.expr.clone()));
        }
    }
    Ok(Ranked {
        source: planned.source,
        join: planned.join,
        filter: planned.filter,
        window: aggregation
            .window
            .ok_or_else(|| EngineError::Internal("window".into()))?,
        input: Input::Groups(aggregation),
        partition_keys: Vec::new(),
        order,
        columns,
        row_number: Some(rn_name.to_string()),
    })
}
