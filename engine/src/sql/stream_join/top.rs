//! The best N matches per left row of a join of two streams whose time bound is a column
//! of the left row (Nexmark q9, winning bids):
//!
//! ```sql
//! SELECT ... FROM (
//!   SELECT A.*, B.auction, B.price, B.dateTime AS bid_dateTime, ...,
//!     ROW_NUMBER() OVER (PARTITION BY A.id ORDER BY B.price DESC, B.dateTime ASC) AS rownum
//!   FROM auction A, bid B            -- or: FROM auction A JOIN bid B ON ...
//!   WHERE A.id = B.auction AND B.dateTime BETWEEN A.dateTime AND A.expires
//! ) WHERE rownum <= 1
//! ```
//!
//! The subquery's SELECT list becomes the two sides' projections (its left columns must
//! come first, then the right ones, as plain columns with optional aliases); columns the
//! join needs and the list lacks are appended, named `$left.<col>` / `$right.<col>`. The
//! joined source the outer query reads is that list, then the row number. PARTITION BY
//! must be the left side's join key (the rank is per left row: the key is taken to be
//! unique per left row, as Nexmark's auction ids are), ORDER BY plain columns (a left
//! column is the same for the whole partition and is ignored).

use std::collections::BTreeSet;

use sqlparser::ast::{
    BinaryOperator, Expr as AstExpr, FunctionArguments, GroupByExpr, JoinConstraint, JoinOperator,
    Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, Spanned, TableFactor, WindowSpec,
    WindowType,
};

use super::super::expr_planner::{plan_expr, unnest};
use super::super::pos_of;
use super::super::source::SourceScope;
use super::super::window_topn::direction;
use super::condition::{
    check_top_where, columns_of, join_kind, plan_condition, renumber, side_filters, split_and,
    Conditions,
};
use super::side::plan_side;
use super::{check_qualifiers, joined_from, PlannedSide, StreamJoinFrom};
use crate::catalog::{Column, ColumnType};
use crate::error::{EngineError, Pos, Result};
use crate::plan::{Expr, JoinTopN, Program, StreamJoinKind};

/// The most rows kept per left row (`WHERE rn <= N`).
pub const TOP_ROWS_MAX: usize = 1000;

/// The `ROW_NUMBER() OVER (...) AS name` item of a SELECT list.
struct RowNumber<'a> {
    index: usize,
    name: String,
    spec: &'a WindowSpec,
    pos: Pos,
}

fn row_number(select: &Select, fallback: Pos) -> Result<Option<RowNumber<'_>>> {
    for (index, item) in select.projection.iter().enumerate() {
        let (expr, alias) = match item {
            SelectItem::UnnamedExpr(e) => (e, None),
            SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias)),
            _ => continue,
        };
        let AstExpr::Function(f) = unnest(expr) else {
            continue;
        };
        let Some(over) = &f.over else { continue };
        let pos = pos_of(item.span(), fallback);
        let name = f.name.to_string().to_ascii_uppercase();
        let no_args = matches!(&f.args, FunctionArguments::None)
            || matches!(&f.args, FunctionArguments::List(l) if l.args.is_empty());
        if name != "ROW_NUMBER" || !no_args {
            return Err(EngineError::plan(
                format!(
                    "{name}() OVER over a join of two streams is not supported; ROW_NUMBER() is"
                ),
                pos,
            ));
        }
        let WindowType::WindowSpec(spec) = over else {
            return Err(EngineError::plan(
                "named windows (OVER w) are not supported; write OVER (PARTITION BY ... ORDER BY ...)",
                pos,
            ));
        };
        if spec.window_frame.is_some() || spec.window_name.is_some() {
            return Err(EngineError::plan(
                "a window frame (ROWS / RANGE ...) is not supported with ROW_NUMBER()",
                pos,
            ));
        }
        let Some(alias) = alias else {
            return Err(EngineError::plan(
                "name the row number (ROW_NUMBER() OVER (...) AS rn) to filter it with WHERE rn <= N outside",
                pos,
            ));
        };
        return Ok(Some(RowNumber {
            index,
            name: alias.value.clone(),
            spec,
            pos,
        }));
    }
    Ok(None)
}

/// The name of the stream table a FROM item is (event time, no PRIMARY KEY), if it is one.
fn stream_table(factor: &TableFactor, program: &Program) -> Option<String> {
    let TableFactor::Table {
        name, args: None, ..
    } = factor
    else {
        return None;
    };
    program
        .table(&name.to_string())
        .filter(|t| t.primary_key.is_empty() && t.watermark.is_some())
        .map(|t| t.name.clone())
}

/// N of the outer `WHERE rn <= N` (or `rn < N + 1`, `rn = 1`).
fn rank_limit(selection: Option<&AstExpr>, name: &str, pos: Pos) -> Result<usize> {
    let mut conjuncts = Vec::new();
    if let Some(selection) = selection {
        split_and(selection, &mut conjuncts);
    }
    for conjunct in conjuncts {
        let AstExpr::BinaryOp { left, op, right } = conjunct else {
            continue;
        };
        let (column, op, value) = match (unnest(left.as_ref()), unnest(right.as_ref())) {
            (AstExpr::Identifier(c), v) => (c, op.clone(), v),
            (v, AstExpr::Identifier(c)) => {
                let flipped = match op {
                    BinaryOperator::GtEq => BinaryOperator::LtEq,
                    BinaryOperator::Gt => BinaryOperator::Lt,
                    other => other.clone(),
                };
                (c, flipped, v)
            }
            _ => continue,
        };
        if !column.value.eq_ignore_ascii_case(name) {
            continue;
        }
        let at = pos_of(conjunct.span(), pos);
        let value: i64 = value.to_string().parse().map_err(|_| {
            EngineError::plan(format!("compare {name} with a number: {conjunct}"), at)
        })?;
        let n = match op {
            BinaryOperator::LtEq => value,
            BinaryOperator::Lt => value - 1,
            BinaryOperator::Eq if value == 1 => 1,
            _ => {
                return Err(EngineError::plan(
                    format!("not supported yet: {conjunct}; keep the best rows with {name} <= N"),
                    at,
                ))
            }
        };
        if n < 1 || n as u64 > TOP_ROWS_MAX as u64 {
            return Err(EngineError::plan(
                format!("{conjunct}: N must be between 1 and {TOP_ROWS_MAX}"),
                at,
            ));
        }
        return Ok(n as usize);
    }
    Err(EngineError::plan(
        format!("not supported yet: ROW_NUMBER() over a join of two streams without WHERE {name} <= N outside the subquery (every match would be kept)"),
        pos,
    ))
}

/// Keeps the side's output columns `outputs` ((output index, name) of its current outputs).
fn reproject(side: &mut PlannedSide, outputs: &[(usize, String)]) {
    side.side.projection = outputs
        .iter()
        .map(|(c, _)| side.side.projection[*c].clone())
        .collect();
    side.side.output_names = outputs.iter().map(|(_, n)| n.clone()).collect();
    side.columns = outputs
        .iter()
        .map(|(c, name)| Column {
            name: name.clone(),
            ..side.columns[*c].clone()
        })
        .collect();
}

/// Plans `FROM (SELECT ..., ROW_NUMBER() OVER (PARTITION BY L.key ORDER BY R.col ..) AS rn
/// FROM l L, r R WHERE ...) WHERE rn <= N` over two streams, if the FROM clause is that.
pub(super) fn plan_top_join(
    select: &Select,
    program: &Program,
    fallback: Pos,
) -> Result<Option<StreamJoinFrom>> {
    let [from] = select.from.as_slice() else {
        return Ok(None);
    };
    let TableFactor::Derived {
        lateral,
        subquery,
        alias,
        ..
    } = &from.relation
    else {
        return Ok(None);
    };
    if !from.joins.is_empty() {
        return Ok(None);
    }
    let SetExpr::Select(inner) = subquery.body.as_ref() else {
        return Ok(None);
    };
    let pos = pos_of(from.relation.span(), fallback);
    let (left_factor, right_factor, on) = match inner.from.as_slice() {
        [a, b] if a.joins.is_empty() && b.joins.is_empty() => (&a.relation, &b.relation, None),
        [a] => match a.joins.as_slice() {
            [j] => match &j.join_operator {
                JoinOperator::Join(JoinConstraint::On(c))
                | JoinOperator::Inner(JoinConstraint::On(c)) => (&a.relation, &j.relation, Some(c)),
                _ => return Ok(None),
            },
            _ => return Ok(None),
        },
        _ => return Ok(None),
    };
    match (
        stream_table(left_factor, program),
        stream_table(right_factor, program),
    ) {
        (Some(l), Some(r)) if !l.eq_ignore_ascii_case(&r) => {}
        _ => return Ok(None),
    }
    let grouped = !matches!(&inner.group_by, GroupByExpr::Expressions(e, _) if e.is_empty());
    let Some(rn) = row_number(inner, pos)? else {
        if grouped {
            if *lateral || inner.having.is_some() || inner.distinct.is_some() {
                return Err(EngineError::plan(
                    "not supported yet: LATERAL, HAVING or DISTINCT in a subquery aggregating a join of two streams",
                    pos,
                ));
            }
            let until = UntilJoin::plan(left_factor, right_factor, on, inner, program, pos)?;
            let alias = alias.as_ref().map(|a| a.name.value.clone());
            return super::aggregate::plan_aggregate_join(inner, until, alias, pos).map(Some);
        }
        return Ok(None);
    };
    if *lateral || grouped || inner.having.is_some() || inner.distinct.is_some() {
        return Err(EngineError::plan(
            "not supported yet: LATERAL, GROUP BY, HAVING or DISTINCT in a subquery ranking a join of two streams",
            pos,
        ));
    }
    let until = UntilJoin::plan(left_factor, right_factor, on, inner, program, pos)?;
    let identity = joined_from(&until.left, &until.right);
    let source = identity.source();
    let (left, right) = (&until.left, &until.right);
    let offset = left.columns.len();

    // PARTITION BY the left key; ORDER BY right columns.
    let mut scope = SourceScope {
        source: &source,
        clause: "ROW_NUMBER() OVER",
        fallback: rn.pos,
    };
    let mut partition = BTreeSet::new();
    for e in &rn.spec.partition_by {
        match plan_expr(e, &mut scope)? {
            Expr::Column { index, .. } if index < offset => partition.insert(index),
            _ => {
                return Err(EngineError::plan(
                    format!("not supported yet: PARTITION BY {e}; a ranked join ranks per left row: PARTITION BY the left side's join key"),
                    pos_of(e.span(), rn.pos),
                ))
            }
        };
    }
    let key_columns: Option<BTreeSet<usize>> = until
        .conditions
        .keys
        .iter()
        .map(|(l, _)| match columns_of(l).as_slice() {
            [c] => Some(*c),
            _ => None,
        })
        .collect();
    if key_columns.as_ref() != Some(&partition) {
        return Err(EngineError::plan(
            "not supported yet: ROW_NUMBER() over a join of two streams must PARTITION BY the left side's join key columns (the rank is per left row)",
            rn.pos,
        ));
    }
    if rn.spec.order_by.is_empty() {
        return Err(EngineError::plan("ROW_NUMBER() needs an ORDER BY", rn.pos));
    }
    let mut order = Vec::new();
    for o in &rn.spec.order_by {
        let at = pos_of(o.expr.span(), rn.pos);
        let descending = direction(o, at)?;
        match plan_expr(&o.expr, &mut scope)? {
            Expr::Column { index, .. } if index >= offset => {
                order.push((index - offset, descending))
            }
            // A left column is the same for every row of the partition.
            Expr::Column { .. } => {}
            _ => {
                return Err(EngineError::plan(
                    format!(
                        "not supported yet: ORDER BY {} in a ranked join; order by columns",
                        o.expr
                    ),
                    at,
                ))
            }
        }
    }

    // The subquery's SELECT list: the left columns, then the right ones.
    let mut outputs: [Vec<(usize, String)>; 2] = Default::default();
    let mut names = BTreeSet::new();
    let mut seen_right = false;
    let mut list_scope = SourceScope {
        source: &source,
        clause: "SELECT",
        fallback: pos,
    };
    for (i, item) in inner.projection.iter().enumerate() {
        if i == rn.index {
            continue;
        }
        let at = pos_of(item.span(), pos);
        let picked: Vec<(usize, usize, String)> = match item {
            SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(q), _) => {
                let q = q.to_string();
                let side = if q.eq_ignore_ascii_case(&left.side.qualifier) {
                    left
                } else if q.eq_ignore_ascii_case(&right.side.qualifier) {
                    right
                } else {
                    return Err(EngineError::plan(
                        format!("{q}.* names neither side of the join"),
                        at,
                    ));
                };
                let s = usize::from(std::ptr::eq(side, right));
                side.columns
                    .iter()
                    .enumerate()
                    .map(|(c, col)| (s, c, col.name.clone()))
                    .collect()
            }
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                let alias = match item {
                    SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
                    _ => None,
                };
                match plan_expr(e, &mut list_scope)? {
                    Expr::Column { index, name, .. } => {
                        let name = alias.unwrap_or(name);
                        if index < offset {
                            vec![(0, index, name)]
                        } else {
                            vec![(1, index - offset, name)]
                        }
                    }
                    _ => {
                        return Err(EngineError::plan(
                            format!("not supported yet: {e} in the SELECT list of a subquery ranking a join; select columns there and compute outside"),
                            at,
                        ))
                    }
                }
            }
            _ => {
                return Err(EngineError::plan(
                    "spell out the columns of a subquery ranking a join (L.*, R.col AS name, ...); * would repeat names",
                    at,
                ))
            }
        };
        for (side, c, name) in picked {
            if side == 0 && seen_right {
                return Err(EngineError::plan(
                    "not supported yet: in a subquery ranking a join, list the left table's columns first, then the right table's",
                    at,
                ));
            }
            seen_right |= side == 1;
            if !names.insert(name.to_ascii_lowercase()) {
                return Err(EngineError::plan(
                    format!("the subquery selects two columns named '{name}'; give one an alias"),
                    at,
                ));
            }
            outputs[side].push((c, name));
        }
    }
    if names.contains(&rn.name.to_ascii_lowercase()) {
        return Err(EngineError::plan(
            format!(
                "the subquery selects a column named '{}' besides the row number",
                rn.name
            ),
            rn.pos,
        ));
    }
    let mut outputs = SideOutputs(outputs);
    let right_needed: Vec<usize> = order.iter().map(|(c, _)| *c).collect();
    let top = JoinTopN {
        rank_max: rank_limit(select.selection.as_ref(), &rn.name, pos)?,
        order: Vec::new(),
    };
    let alias = alias.as_ref().map(|a| a.name.value.clone());
    let mut joined = until.finish(&mut outputs, &right_needed, alias);
    joined.table.columns.push(Column {
        name: rn.name.clone(),
        ty: ColumnType::BigInt,
        nullable: false,
    });
    joined.plan.top = Some(JoinTopN {
        order: order
            .iter()
            .map(|&(c, d)| (outputs.position(1, c), d))
            .collect(),
        ..top
    });
    Ok(Some(joined))
}

/// The output columns of both sides of a join: (column of the side's planned output,
/// name), left then right.
pub(super) struct SideOutputs(pub(super) [Vec<(usize, String)>; 2]);

impl SideOutputs {
    /// The new index of column `c` of side `side` (0 left, 1 right).
    pub(super) fn position(&self, side: usize, c: usize) -> usize {
        self.0[side]
            .iter()
            .position(|(i, _)| *i == c)
            .unwrap_or(usize::MAX)
    }
}

/// A join of two streams whose time bound is a column of the left row (`R.ts BETWEEN
/// L.ts AND L.until`), planned up to its output columns: shared by the ranked join and
/// the aggregating one (`super::aggregate`).
pub(super) struct UntilJoin {
    pub(super) left: PlannedSide,
    pub(super) right: PlannedSide,
    pub(super) conditions: Conditions,
    from_ms: i64,
    until_column: usize,
    filters: [Option<Expr>; 2],
    left_time: usize,
    right_time: usize,
}

impl UntilJoin {
    /// Plans the two sides, the WHERE (key equalities, the time bounds, conditions over
    /// one side) and the join kind of the subquery `inner`.
    pub(super) fn plan(
        left_factor: &TableFactor,
        right_factor: &TableFactor,
        on: Option<&AstExpr>,
        inner: &Select,
        program: &Program,
        pos: Pos,
    ) -> Result<Self> {
        let left = plan_side(left_factor, program, pos)?;
        let right = plan_side(right_factor, program, pos)?;
        check_qualifiers(&left, &right)?;
        let identity = joined_from(&left, &right);
        let source = identity.source();
        let selection = inner.selection.as_ref();
        let conditions = plan_condition(on, selection, &source, &left, &right, pos)?;
        check_top_where(selection, &source, &left, &right, pos)?;
        let kind = join_kind(&conditions, &left, &right, true, pos)?;
        let StreamJoinKind::IntervalUntil {
            from_ms,
            until_column,
        } = kind
        else {
            return Err(EngineError::Internal(format!(
                "a ranked join of two streams planned as {kind:?}"
            )));
        };
        let filters = side_filters(selection, &source, &left, &right, pos);
        let (Some(left_time), Some(right_time)) = (left.event_time, right.event_time) else {
            return Err(EngineError::Internal(
                "a ranked join's time columns were checked".into(),
            ));
        };
        Ok(UntilJoin {
            left,
            right,
            conditions,
            from_ms,
            until_column,
            filters,
            left_time,
            right_time,
        })
    }

    /// Appends the columns the join needs (its time, bound and key columns, and
    /// `right_needed`) that `outputs` lacks, named `$left.<col>` / `$right.<col>`, projects
    /// both sides onto `outputs` and returns the joined FROM (its columns: the left
    /// outputs, then the right ones; named after `alias` when given).
    pub(super) fn finish(
        mut self,
        outputs: &mut SideOutputs,
        right_needed: &[usize],
        alias: Option<String>,
    ) -> StreamJoinFrom {
        let mut needed: [Vec<usize>; 2] = [
            vec![self.left_time, self.until_column],
            vec![self.right_time],
        ];
        for (l, r) in &self.conditions.keys {
            needed[0].extend(columns_of(l));
            needed[1].extend(columns_of(r));
        }
        needed[1].extend_from_slice(right_needed);
        for (s, side) in [&self.left, &self.right].into_iter().enumerate() {
            for &c in &needed[s] {
                if !outputs.0[s].iter().any(|(i, _)| *i == c) {
                    let word = if s == 0 { "left" } else { "right" };
                    outputs.0[s].push((c, format!("${word}.{}", side.columns[c].name)));
                }
            }
        }
        let left_keys: Vec<Expr> = self
            .conditions
            .keys
            .iter()
            .map(|(l, _)| renumber(l.clone(), &|c| outputs.position(0, c)))
            .collect();
        let right_keys: Vec<Expr> = self
            .conditions
            .keys
            .iter()
            .map(|(_, r)| renumber(r.clone(), &|c| outputs.position(1, c)))
            .collect();
        let kind = StreamJoinKind::IntervalUntil {
            from_ms: self.from_ms,
            until_column: outputs.position(0, self.until_column),
        };
        let (left_time, right_time) = (
            outputs.position(0, self.left_time),
            outputs.position(1, self.right_time),
        );
        reproject(&mut self.left, &outputs.0[0]);
        reproject(&mut self.right, &outputs.0[1]);

        let mut joined = joined_from(&self.left, &self.right);
        joined.scope = None;
        if let Some(alias) = alias {
            joined.left_qualifier = alias;
        }
        let [left_filter, right_filter] = self.filters;
        let plan = &mut joined.plan;
        plan.kind = kind;
        plan.left.filter = left_filter;
        plan.right.filter = right_filter;
        plan.left.keys = left_keys;
        plan.right.keys = right_keys;
        plan.left.time_column = left_time;
        plan.right.time_column = right_time;
        joined
    }
}

#[cfg(test)]
#[path = "top_tests.rs"]
mod tests;
