//! `FROM a JOIN b ON ...` where `a` and `b` are two different streams: window joins and
//! interval joins (see `crate::stream_join` for the executor).
//!
//! - **Interval join**: `FROM a JOIN b ON a.k = b.k AND a.ts BETWEEN b.ts - INTERVAL '..'
//!   AND b.ts + INTERVAL '..'` (or `>=` / `>` / `<=` / `<` bounds, in ON or in WHERE), where
//!   `ts` are the tables' WATERMARK columns.
//! - **Window join** (Flink's form): both sides are the same window table function over
//!   their table, `(SELECT * FROM TABLE(TUMBLE(TABLE a, ...))) L` or a subquery with
//!   `GROUP BY k, ..., window_start, window_end` and no aggregates (a per-window DISTINCT,
//!   as Nexmark q8 writes it), joined `ON L.k = R.k AND L.window_start = R.window_start AND
//!   L.window_end = R.window_end`.
//!
//! The joined source the rest of the query reads has the left side's output columns, then
//! the right side's, resolved like a dimension join's (`L.col`, `R.col`, or a bare name only
//! one side has). Joins of one table with itself belong to subqueries over one table, and
//! joins with a dimension table (a PRIMARY KEY) to `super::join`: [`plan_stream_join`]
//! answers None for those.

mod aggregate;
mod condition;
mod side;
mod top;

use sqlparser::ast::{JoinConstraint, JoinOperator, Select, Spanned, TableFactor};

use super::pos_of;
use super::source::{JoinScope, Source};
use crate::catalog::{Column, TableDef};
use crate::error::{EngineError, Pos, Result};
use crate::plan::{Program, StreamJoin, StreamJoinKind, StreamJoinSide};
use condition::{join_kind, plan_condition, side_filters};
use side::{plan_side, side_table};

/// The joined FROM clause of a stream join.
pub(crate) struct StreamJoinFrom {
    /// The left side's output columns, then the right side's; named after the left table.
    pub table: TableDef,
    pub left_qualifier: String,
    /// How the right side's names resolve (None: the join is a subquery's, its columns
    /// are named by the subquery's SELECT list).
    pub scope: Option<JoinScope>,
    pub plan: StreamJoin,
    pub pos: Pos,
}

impl StreamJoinFrom {
    /// The source the rest of the query resolves names against.
    pub fn source(&self) -> Source<'_> {
        Source {
            table: &self.table,
            qualifier: self.left_qualifier.clone(),
            window_tvf: None,
            pos: self.pos,
            join: self.scope.clone(),
        }
    }
}

/// One side, planned: the plan, and what the ON condition needs to know about its outputs.
pub(super) struct PlannedSide {
    pub(super) side: StreamJoinSide,
    pub(super) table: TableDef,
    /// Output columns (name, type).
    pub(super) columns: Vec<Column>,
    pub(super) window_start: Option<usize>,
    pub(super) window_end: Option<usize>,
    /// The output column that is the table's WATERMARK column, if selected.
    pub(super) event_time: Option<usize>,
    pub(super) pos: Pos,
}

/// Plans the FROM clause as a join of two streams, if it is one (None: no JOIN, a join with
/// a dimension table, or a join of one table with itself).
pub(crate) fn plan_stream_join(
    select: &Select,
    program: &Program,
    fallback: Pos,
) -> Result<Option<StreamJoinFrom>> {
    if let Some(ranked) = top::plan_top_join(select, program, fallback)? {
        return Ok(Some(ranked));
    }
    let [from] = select.from.as_slice() else {
        return Ok(None);
    };
    let [join] = from.joins.as_slice() else {
        return Ok(None);
    };
    let (Some(left_table), Some(right_table)) = (
        side_table(&from.relation, program),
        side_table(&join.relation, program),
    ) else {
        return Ok(None);
    };
    if left_table.eq_ignore_ascii_case(&right_table) {
        return Ok(None);
    }
    if let TableFactor::Table { name, .. } = &join.relation {
        // A table with a PRIMARY KEY is a dimension table; one without event time is no
        // stream either: both are `super::join`'s (which explains what a dimension needs).
        let not_a_stream = program
            .table(&name.to_string())
            .is_some_and(|t| !t.primary_key.is_empty() || t.watermark.is_none());
        if not_a_stream {
            return Ok(None);
        }
    }
    let join_pos = pos_of(join.span(), fallback);
    let condition = match &join.join_operator {
        JoinOperator::Join(JoinConstraint::On(c)) | JoinOperator::Inner(JoinConstraint::On(c)) => {
            c
        }
        JoinOperator::Join(_) | JoinOperator::Inner(_) => {
            return Err(EngineError::plan(
                "a join of two streams needs ON left.key = right.key AND a time condition (USING, NATURAL and joins without a condition are not supported)",
                join_pos,
            ))
        }
        other => {
            let word = format!("{other:?}");
            let word = word
                .split('(')
                .next()
                .unwrap_or("this")
                .to_ascii_uppercase();
            return Err(EngineError::plan(
                format!("{word} JOIN of two streams is not supported yet; only JOIN (inner) is"),
                join_pos,
            ));
        }
    };
    let left = plan_side(&from.relation, program, fallback)?;
    let right = plan_side(&join.relation, program, join_pos)?;
    check_qualifiers(&left, &right)?;
    for side in [&left, &right] {
        if side.table.watermark.is_none() {
            return Err(EngineError::plan(
                format!(
                    "a join of two streams needs event time on both sides: table '{}' declares no WATERMARK (its rows could never be freed)",
                    side.table.name
                ),
                side.pos,
            ));
        }
    }
    let mut joined = joined_from(&left, &right);
    let conditions = {
        let source = joined.source();
        plan_condition(
            Some(condition),
            select.selection.as_ref(),
            &source,
            &left,
            &right,
            join_pos,
        )?
    };
    let kind = join_kind(&conditions, &left, &right, false, join_pos)?;
    let [left_filter, right_filter] = {
        let source = joined.source();
        side_filters(select.selection.as_ref(), &source, &left, &right, join_pos)
    };
    if let Some(f) = left_filter {
        joined.plan.left.filter = Some(f);
    }
    if let Some(f) = right_filter {
        joined.plan.right.filter = Some(f);
    }
    let (left_time, right_time) = match kind {
        StreamJoinKind::Window => (left.window_end, right.window_end),
        StreamJoinKind::Interval { .. } | StreamJoinKind::IntervalUntil { .. } => {
            (left.event_time, right.event_time)
        }
    };
    let (Some(left_time), Some(right_time)) = (left_time, right_time) else {
        return Err(EngineError::Internal(
            "a stream join's time columns were checked".into(),
        ));
    };
    joined.plan.kind = kind;
    joined.plan.left.time_column = left_time;
    joined.plan.right.time_column = right_time;
    joined.plan.left.keys = conditions.keys.iter().map(|(l, _)| l.clone()).collect();
    joined.plan.right.keys = conditions.keys.iter().map(|(_, r)| r.clone()).collect();
    Ok(Some(joined))
}

/// Refuses two sides of the same name (their columns could not be told apart).
fn check_qualifiers(left: &PlannedSide, right: &PlannedSide) -> Result<()> {
    if left
        .side
        .qualifier
        .eq_ignore_ascii_case(&right.side.qualifier)
    {
        return Err(EngineError::plan(
            format!(
                "both sides of the JOIN are called '{}'; give one an alias",
                left.side.qualifier
            ),
            right.pos,
        ));
    }
    Ok(())
}

/// The joined source of two planned sides: the left side's output columns, then the right
/// side's (`L.col`, `R.col`, or a bare name only one side has).
fn joined_from(left: &PlannedSide, right: &PlannedSide) -> StreamJoinFrom {
    let offset = left.columns.len();
    let mut columns = left.columns.clone();
    columns.extend(right.columns.iter().cloned());
    StreamJoinFrom {
        table: TableDef {
            name: left.table.name.clone(),
            columns,
            watermark: None,
            primary_key: Vec::new(),
            options: Default::default(),
            pos: left.pos,
        },
        left_qualifier: left.side.qualifier.clone(),
        scope: Some(JoinScope {
            qualifier: right.side.qualifier.clone(),
            table_name: right.table.name.clone(),
            offset,
        }),
        plan: StreamJoin {
            left: left.side.clone(),
            right: right.side.clone(),
            kind: StreamJoinKind::Window,
            top: None,
            aggregate: None,
        },
        pos: left.pos,
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
