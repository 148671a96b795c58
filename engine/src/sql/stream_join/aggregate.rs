//! Aggregates over each left row's matches of a join whose time bound is a column of the
//! left row (Nexmark q4's inner query, each auction's closing price):
//!
//! ```sql
//! SELECT MAX(B.price) AS final, A.category
//! FROM auction A, bid B
//! WHERE A.id = B.auction AND B.dateTime BETWEEN A.dateTime AND A.expires
//! GROUP BY A.id, A.category
//! ```
//!
//! GROUP BY must hold the left side's join key (taken to be unique per left row, as for the
//! ranked join, so a group is one left row) and may add other left columns (one value per
//! left row: functionally dependent on it). The aggregates read right columns only and are
//! the slot-only ones (COUNT, SUM, AVG, MIN, MAX over numbers). A left row's result is
//! final once the watermark passes its bound, so it is planned on the ranked join's
//! machinery (`StreamJoinKind::IntervalUntil`, `crate::stream_join::top_state`) and
//! emitted once, append-only: one row per left row with at least one match. The joined
//! source the outer query reads is the subquery's SELECT list.

use sqlparser::ast::{GroupByExpr, Select};

use super::super::planner::plan_aggregate_query;
use super::super::types::column_type_of_arrow;
use super::condition::{columns_of, renumber};
use super::top::{SideOutputs, UntilJoin};
use super::{joined_from, StreamJoinFrom};
use crate::accumulator::{inner_aggregate_allowed, Accumulator};
use crate::catalog::Column;
use crate::error::{EngineError, Pos, Result};
use crate::plan::{Expr, JoinAggregate};

/// Plans the subquery `inner` (`SELECT aggregates, L.cols ... GROUP BY L.key [, L.cols]`)
/// over the planned join `until`; `alias` names the subquery.
pub(super) fn plan_aggregate_join(
    inner: &Select,
    until: UntilJoin,
    alias: Option<String>,
    pos: Pos,
) -> Result<StreamJoinFrom> {
    let GroupByExpr::Expressions(group_by, modifiers) = &inner.group_by else {
        return Err(EngineError::plan(
            "GROUP BY ALL is not supported; group a join's matches by the left table's key",
            pos,
        ));
    };
    if !modifiers.is_empty() {
        return Err(EngineError::plan(
            "GROUP BY ... WITH ROLLUP / CUBE / TOTALS is not supported",
            pos,
        ));
    }
    let offset = until.left.columns.len();
    let identity = joined_from(&until.left, &until.right);
    let (outputs, aggregation) = {
        let source = identity.source();
        plan_aggregate_query(inner, &source, group_by, true, pos)?
    };
    let Some(aggregation) = aggregation else {
        return Err(EngineError::Internal(
            "a grouped subquery planned without an aggregation".into(),
        ));
    };

    // GROUP BY: left columns, the join key among them.
    let mut group_columns = Vec::new();
    for key in &aggregation.group_keys {
        match key {
            Expr::Column { index, .. } if *index < offset => group_columns.push(*index),
            other => {
                return Err(EngineError::plan(
                    format!("not supported yet: GROUP BY {} in a subquery aggregating a join of two streams; group by the left table's join key and other columns of the left table", expr_name(other)),
                    pos,
                ))
            }
        }
    }
    for (l, _) in &until.conditions.keys {
        if !columns_of(l).iter().all(|c| group_columns.contains(c)) {
            return Err(EngineError::plan(
                "not supported yet: a subquery aggregating a join of two streams must GROUP BY the left table's join key (one group per left row, whose matches are final when its time bound passes)",
                pos,
            ));
        }
    }
    // Aggregates over right columns, kept in their slots.
    let mut right_columns: Vec<usize> = Vec::new();
    for call in &aggregation.aggregates {
        let name = call.func.sql_name();
        let allowed = Accumulator::new(call).is_ok_and(|a| inner_aggregate_allowed(&a));
        if !allowed {
            return Err(EngineError::plan(
                format!("not supported yet: {name}(...) over a join's matches; COUNT, SUM, AVG, MIN and MAX over numbers are supported"),
                pos,
            ));
        }
        let columns = call.arg.as_ref().map(columns_of).unwrap_or_default();
        if columns.iter().any(|c| *c < offset) {
            return Err(EngineError::plan(
                format!("not supported yet: {name}(...) over a column of the left table in a subquery aggregating a join; aggregate the right table's columns (a left column has one value per group: GROUP BY it)"),
                pos,
            ));
        }
        for c in columns {
            if !right_columns.contains(&(c - offset)) {
                right_columns.push(c - offset);
            }
        }
    }

    // The sides carry the grouped and aggregated columns (and what the join needs).
    let left_outputs = group_columns
        .iter()
        .map(|&c| (c, until.left.columns[c].name.clone()))
        .collect();
    let right_outputs = right_columns
        .iter()
        .map(|&c| (c, until.right.columns[c].name.clone()))
        .collect();
    let mut sides = SideOutputs([left_outputs, right_outputs]);
    let mut joined = until.finish(&mut sides, &[], alias);

    let mut columns: Vec<Column> = Vec::with_capacity(outputs.len());
    for output in &outputs {
        let data_type = output.expr.data_type();
        let ty = column_type_of_arrow(&data_type).ok_or_else(|| {
            EngineError::plan(
                format!(
                    "cannot infer the type of the subquery's column '{}'",
                    output.name
                ),
                output.pos,
            )
        })?;
        if columns
            .iter()
            .any(|c| c.name.eq_ignore_ascii_case(&output.name))
        {
            return Err(EngineError::plan(
                format!(
                    "the subquery selects two columns named '{}'; give one an alias",
                    output.name
                ),
                output.pos,
            ));
        }
        columns.push(Column {
            name: output.name.clone(),
            ty,
            nullable: true,
        });
    }
    let aggregates = aggregation
        .aggregates
        .iter()
        .map(|call| {
            let mut call = call.clone();
            call.arg = call
                .arg
                .map(|a| renumber(a, &|c| sides.position(1, c - offset)));
            call
        })
        .collect();
    joined.plan.aggregate = Some(JoinAggregate {
        group_columns: group_columns
            .iter()
            .map(|&c| sides.position(0, c))
            .collect(),
        aggregates,
        projection: outputs.iter().map(|o| o.expr.clone()).collect(),
        output_names: columns.iter().map(|c| c.name.clone()).collect(),
    });
    joined.table.columns = columns;
    Ok(joined)
}

/// A short name of a planned expression, for messages.
fn expr_name(expr: &Expr) -> String {
    match expr {
        Expr::Column { name, .. } => name.clone(),
        _ => "an expression".into(),
    }
}

#[cfg(test)]
#[path = "aggregate_tests.rs"]
mod tests;
