//! Per-window top-N queries, planned as a window aggregation whose one aggregate nests the
//! ranking (`plan::TopN`, executed by `accumulator/top_n.rs`):
//!
//! - `SELECT ... FROM (SELECT ..., ROW_NUMBER() OVER (PARTITION BY window_start, window_end
//!   [, keys] ORDER BY ...) AS rn FROM TABLE(TUMBLE(...)) [WHERE ...]) WHERE rn <= N`: the N
//!   best rows of each window (`rn < N`, `rn = 1` too). Extra PARTITION BY keys become the
//!   outer group keys.
//! - The same over an aggregate subquery `FROM (SELECT k, COUNT(*) AS c, window_start,
//!   window_end FROM TABLE(HOP(...)) GROUP BY k, window_start, window_end)`: the N best inner
//!   groups of each window (extra PARTITION BY keys are refused for now).
//! - A per-window MAX (or MIN) joined back (Nexmark q5, q7): `FROM rows JOIN (SELECT
//!   MAX(x) AS m, window_start, window_end FROM <same rows> GROUP BY window_start,
//!   window_end) r ON <windows equal> AND rows.x >= r.m`, where the rows are an aggregate
//!   subquery over a window (q5), or the raw table with `rows.ts >= r.window_start AND
//!   rows.ts < r.window_end` (q7). Ties are all kept (RANK semantics).
//!
//! The output schema of the aggregation: partition keys, `window_start`, `window_end`, the
//! kept columns (raw rows: the ORDER BY expressions then the selected columns; inner groups:
//! the inner keys then aggregates), and the row number.

use arrow::datatypes::DataType;
use sqlparser::ast::{
    BinaryOperator, Expr as AstExpr, FunctionArguments, GroupByExpr, Ident, OrderBySort, Query,
    Select, SelectItem, SetExpr, Spanned, TableFactor, WindowType,
};

use super::expr_planner::{plan_expr, unnest, Scope};
use super::planner::{require_boolean, PlannedQuery};
use super::pos_of;
use super::source::{resolve_from, ColumnRef, Source, SourceScope};
use super::subquery::{alias_name, and, plan_outputs, refuse_outer_aggregate, DerivedScope, Side};
use super::types::timestamp_type;
use crate::accumulator::TOP_ROWS_MAX;
use crate::error::{EngineError, Pos, Result};
use crate::plan::{
    AggCall, AggFunc, Aggregation, Expr, JoinPlan, Program, TopN, TopNInput, WindowKind, WindowSpec,
};

/// Placeholders for `window_start` / `window_end` while planning a ranked TVF select.
const START_MARK: usize = usize::MAX;
const END_MARK: usize = usize::MAX - 1;

/// What a ranked subquery ranks.
pub(super) enum Input {
    /// Raw rows of a window TVF: kept expressions over the source.
    Rows(Vec<Expr>),
    /// The groups of an inner window aggregation.
    Groups(Aggregation),
}

/// A planned top-N, before the outer query.
pub(super) struct Ranked {
    pub(super) source: String,
    pub(super) join: Option<JoinPlan>,
    pub(super) filter: Option<Expr>,
    pub(super) window: WindowSpec,
    pub(super) input: Input,
    pub(super) partition_keys: Vec<Expr>,
    pub(super) order: Vec<(usize, bool)>,
    /// The ranked subquery's columns, over the output schema (see the module docs).
    pub(super) columns: Vec<(String, Expr)>,
    pub(super) row_number: Option<String>,
}

pub(super) fn ts_column(index: usize, name: &str) -> Expr {
    Expr::Column {
        index,
        name: name.to_string(),
        data_type: timestamp_type(),
    }
}

pub(super) fn column_at(index: usize, name: &str, data_type: DataType) -> Expr {
    Expr::Column {
        index,
        name: name.to_string(),
        data_type,
    }
}

/// Rewrites every column index of `expr` with `f`.
pub(super) fn remap(expr: &mut Expr, f: &dyn Fn(usize) -> usize) {
    expr.remap_columns(f)
}

fn uses_mark(expr: &Expr) -> bool {
    let mut found = false;
    fn walk(e: &Expr, found: &mut bool) {
        match e {
            Expr::Column { index, .. } => *found |= *index == START_MARK || *index == END_MARK,
            Expr::Literal(_) => {}
            Expr::Binary { left, right, .. } => {
                walk(left, found);
                walk(right, found);
            }
            Expr::Unary { expr, .. } | Expr::IsNull { expr, .. } | Expr::Cast { expr, .. } => {
                walk(expr, found)
            }
            Expr::Case {
                branches,
                otherwise,
                ..
            } => {
                for (c, v) in branches {
                    walk(c, found);
                    walk(v, found);
                }
                if let Some(o) = otherwise {
                    walk(o, found);
                }
            }
        }
    }
    walk(expr, &mut found);
    found
}

/// Column names of a window TVF's rows, with window_start / window_end as placeholders.
struct TvfScope<'s, 'p> {
    source: &'s Source<'p>,
    clause: &'static str,
    fallback: Pos,
}

impl Scope for TvfScope<'_, '_> {
    fn column(&mut self, parts: &[Ident], pos: Pos) -> Result<Expr> {
        match self.source.resolve(parts, pos)? {
            ColumnRef::Table(i) => Ok(self.source.column_expr(i)),
            ColumnRef::WindowStart => Ok(ts_column(START_MARK, "window_start")),
            ColumnRef::WindowEnd => Ok(ts_column(END_MARK, "window_end")),
            ColumnRef::WindowTime => Err(EngineError::plan(
                "window_time is not supported in a per-window top-N; select window_start, window_end",
                pos,
            )),
        }
    }

    fn clause(&self) -> &'static str {
        self.clause
    }

    fn fallback(&self) -> Pos {
        self.fallback
    }
}

/// The SELECT of a query (parentheses removed); None for set operations and VALUES.
pub(super) fn select_of(query: &Query) -> Option<&Select> {
    match query.body.as_ref() {
        SetExpr::Select(s) => Some(s),
        SetExpr::Query(q) => select_of(q),
        _ => None,
    }
}

fn refuse_query_clauses(query: &Query, pos: Pos) -> Result<()> {
    if query.with.is_some() || query.order_by.is_some() || query.limit_clause.is_some() {
        return Err(EngineError::plan(
            "WITH / ORDER BY / LIMIT are not supported in a subquery of a per-window top-N",
            pos,
        ));
    }
    Ok(())
}

/// The `ROW_NUMBER() OVER (...)` item of a SELECT list: (its index, alias, window spec).
fn row_number_item(
    select: &Select,
    pos: Pos,
) -> Result<Option<(usize, String, &sqlparser::ast::WindowSpec)>> {
    for (i, item) in select.projection.iter().enumerate() {
        let (expr, alias) = match item {
            SelectItem::UnnamedExpr(e) => (e, None),
            SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias)),
            _ => continue,
        };
        let AstExpr::Function(f) = unnest(expr) else {
            continue;
        };
        let Some(over) = &f.over else { continue };
        let item_pos = pos_of(item.span(), pos);
        let name = f.name.to_string().to_ascii_uppercase();
        if name != "ROW_NUMBER" {
            return Err(EngineError::plan(
                format!("{name}() OVER is not supported; of the window functions only ROW_NUMBER() is (per-window top-N)"),
                item_pos,
            ));
        }
        if !matches!(&f.args, FunctionArguments::None)
            && !matches!(&f.args, FunctionArguments::List(l) if l.args.is_empty())
        {
            return Err(EngineError::plan(
                "ROW_NUMBER() takes no arguments",
                item_pos,
            ));
        }
        let WindowType::WindowSpec(spec) = over else {
            return Err(EngineError::plan(
                "named windows (OVER w) are not supported; write OVER (PARTITION BY ... ORDER BY ...)",
                item_pos,
            ));
        };
        if spec.window_frame.is_some() || spec.window_name.is_some() {
            return Err(EngineError::plan(
                "a window frame (ROWS / RANGE ...) is not supported with ROW_NUMBER()",
                item_pos,
            ));
        }
        let Some(alias) = alias else {
            return Err(EngineError::plan(
                "name the row number (ROW_NUMBER() OVER (...) AS rn) to filter it with WHERE rn <= N outside",
                item_pos,
            ));
        };
        return Ok(Some((i, alias.value.clone(), spec)));
    }
    Ok(None)
}

/// Ascending unless DESC; NULLS FIRST/LAST only where it is the default.
pub(super) fn direction(o: &sqlparser::ast::OrderByExpr, pos: Pos) -> Result<bool> {
    let descending = match &o.options.sort {
        None | Some(OrderBySort::Asc) => false,
        Some(OrderBySort::Desc) => true,
        Some(OrderBySort::Using(_)) => {
            return Err(EngineError::plan(
                "ORDER BY ... USING is not supported",
                pos,
            ))
        }
    };
    if o.options
        .nulls_first
        .is_some_and(|first| first == descending)
    {
        return Err(EngineError::plan(
            "only the default NULL order is supported (NULLS FIRST ascending, NULLS LAST descending)",
            pos,
        ));
    }
    Ok(descending)
}

/// Recognises a ranked subquery (`SELECT ..., ROW_NUMBER() OVER (...) AS rn FROM ...`);
/// Ok(None): the query has no window function.
pub(super) fn ranked_subquery(
    query: &Query,
    program: &Program,
    pos: Pos,
) -> Result<Option<Ranked>> {
    let Some(select) = select_of(query) else {
        return Ok(None);
    };
    let Some((rn_index, rn_name, spec)) = row_number_item(select, pos)? else {
        return Ok(None);
    };
    refuse_query_clauses(query, pos)?;
    let select_pos = pos_of(select.select_token.0.span, pos);
    if !matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty())
        || select.having.is_some()
    {
        return Err(EngineError::plan(
            "ROW_NUMBER() in an aggregate query is not supported; aggregate in a subquery and rank its rows outside",
            select_pos,
        ));
    }
    let first = select
        .from
        .first()
        .ok_or_else(|| EngineError::plan("ROW_NUMBER() needs a FROM clause", select_pos))?;
    if select.from.len() > 1 || !first.joins.is_empty() {
        return Err(EngineError::plan(
            "a per-window top-N ranks one FROM item (a window TVF or an aggregate subquery); joins are not supported there",
            select_pos,
        ));
    }
    let ranked = match &first.relation {
        TableFactor::Derived {
            subquery, alias, ..
        } => {
            let qualifier = alias_name(alias.as_ref(), select_pos)?;
            super::window_topn_groups::ranked_groups(
                select, subquery, qualifier, rn_index, &rn_name, spec, program, select_pos,
            )?
        }
        _ => ranked_rows(select, rn_index, &rn_name, spec, program, select_pos)?,
    };
    Ok(Some(ranked))
}

/// ROW_NUMBER over the raw rows of a window TVF.
fn ranked_rows(
    select: &Select,
    rn_index: usize,
    rn_name: &str,
    spec: &sqlparser::ast::WindowSpec,
    program: &Program,
    pos: Pos,
) -> Result<Ranked> {
    let source = resolve_from(select, program, pos)?;
    let window = source.window_tvf.ok_or_else(|| {
        EngineError::plan(
            "ROW_NUMBER() ranks within windows: rank FROM TABLE(TUMBLE(...)) (or HOP, CUMULATE) \
             with PARTITION BY window_start, window_end",
            source.pos,
        )
    })?;
    let filter = match &select.selection {
        Some(c) => {
            let p = pos_of(c.span(), pos);
            let mut scope = SourceScope {
                source: &source,
                clause: "WHERE",
                fallback: p,
            };
            Some(require_boolean(plan_expr(c, &mut scope)?, "WHERE", p)?)
        }
        None => None,
    };
    let mut scope = TvfScope {
        source: &source,
        clause: "PARTITION BY",
        fallback: pos,
    };
    let mut bounds = (false, false);
    let mut partition_keys = Vec::new();
    for e in &spec.partition_by {
        let p = pos_of(e.span(), pos);
        match plan_expr(e, &mut scope)? {
            Expr::Column {
                index: START_MARK, ..
            } => bounds.0 = true,
            Expr::Column {
                index: END_MARK, ..
            } => bounds.1 = true,
            key if uses_mark(&key) => {
                return Err(EngineError::plan(
                    "PARTITION BY window_start / window_end as they are",
                    p,
                ))
            }
            key => partition_keys.push(key),
        }
    }
    if bounds != (true, true) {
        return Err(EngineError::plan(
            "a per-window top-N must PARTITION BY window_start, window_end",
            pos,
        ));
    }
    let mut kept: Vec<Expr> = Vec::new();
    let keep = |e: Expr, kept: &mut Vec<Expr>| match kept.iter().position(|k| *k == e) {
        Some(i) => i,
        None => {
            kept.push(e);
            kept.len() - 1
        }
    };
    scope.clause = "ORDER BY";
    let mut order = Vec::new();
    for o in &spec.order_by {
        let p = pos_of(o.expr.span(), pos);
        let e = plan_expr(&o.expr, &mut scope)?;
        if uses_mark(&e) {
            return Err(EngineError::plan(
                "ordering by window_start / window_end ranks nothing",
                p,
            ));
        }
        order.push((keep(e, &mut kept), direction(o, p)?));
    }
    if order.is_empty() {
        return Err(EngineError::plan("ROW_NUMBER() needs an ORDER BY", pos));
    }
    // The selected columns: the output schema is partition keys, bounds, kept, row number.
    let p = partition_keys.len();
    enum Item {
        Start,
        End,
        Kept(usize),
        RowNumber,
    }
    let mut items: Vec<(String, Item)> = Vec::new();
    scope.clause = "SELECT";
    for (i, item) in select.projection.iter().enumerate() {
        let item_pos = pos_of(item.span(), pos);
        if i == rn_index {
            items.push((rn_name.to_string(), Item::RowNumber));
            continue;
        }
        let (ast, alias) = match item {
            SelectItem::UnnamedExpr(e) => (e, None),
            SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.value.clone())),
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                for (c, column) in source.table.columns.iter().enumerate() {
                    let k = keep(source.column_expr(c), &mut kept);
                    items.push((column.name.clone(), Item::Kept(k)));
                }
                items.push(("window_start".into(), Item::Start));
                items.push(("window_end".into(), Item::End));
                continue;
            }
            _ => {
                return Err(EngineError::plan(
                    "multiple aliases are not supported",
                    item_pos,
                ))
            }
        };
        let e = plan_expr(ast, &mut scope)?;
        let name = match (&alias, unnest(ast)) {
            (Some(a), _) => a.clone(),
            (None, AstExpr::Identifier(id)) => id.value.clone(),
            (None, AstExpr::CompoundIdentifier(parts)) => {
                parts.last().map(|x| x.value.clone()).unwrap_or_default()
            }
            (None, _) => format!("EXPR${i}"),
        };
        let it = match e {
            Expr::Column {
                index: START_MARK, ..
            } => Item::Start,
            Expr::Column {
                index: END_MARK, ..
            } => Item::End,
            e if uses_mark(&e) => {
                return Err(EngineError::plan(
                    "select window_start / window_end as they are in a ranked subquery",
                    item_pos,
                ))
            }
            e => Item::Kept(keep(e, &mut kept)),
        };
        items.push((name, it));
    }
    let rn_at = p + 2 + kept.len();
    let columns = items
        .into_iter()
        .map(|(name, it)| {
            let e = match it {
                Item::Start => ts_column(p, "window_start"),
                Item::End => ts_column(p + 1, "window_end"),
                Item::Kept(k) => column_at(p + 2 + k, &name, kept[k].data_type()),
                Item::RowNumber => column_at(rn_at, &name, DataType::Int64),
            };
            (name, e)
        })
        .collect();
    Ok(Ranked {
        source: source.table.name.clone(),
        join: None,
        filter,
        window,
        input: Input::Rows(kept),
        partition_keys,
        order,
        columns,
        row_number: Some(rn_name.to_string()),
    })
}

/// `rn <= N`, `rn < N`, `rn = 1` (either way round): N; None when `ast` is no such bound.
fn row_number_bound(ast: &AstExpr, rn: &str, pos: Pos) -> Result<Option<usize>> {
    let AstExpr::BinaryOp { left, op, right } = unnest(ast) else {
        return Ok(None);
    };
    let is_rn = |e: &AstExpr| match unnest(e) {
        AstExpr::Identifier(i) => i.value.eq_ignore_ascii_case(rn),
        AstExpr::CompoundIdentifier(p) => {
            p.last().is_some_and(|i| i.value.eq_ignore_ascii_case(rn))
        }
        _ => false,
    };
    let number = |e: &AstExpr| match unnest(e) {
        AstExpr::Value(v) => v.value.to_string().parse::<i64>().ok(),
        _ => None,
    };
    let (op, n) = if is_rn(left) {
        (op.clone(), number(right))
    } else if is_rn(right) {
        let flipped = match op {
            BinaryOperator::Gt => BinaryOperator::Lt,
            BinaryOperator::GtEq => BinaryOperator::LtEq,
            BinaryOperator::Lt => BinaryOperator::Gt,
            BinaryOperator::LtEq => BinaryOperator::GtEq,
            o => o.clone(),
        };
        (flipped, number(left))
    } else {
        return Ok(None);
    };
    let bad = || {
        EngineError::plan(
            format!("filter the row number as {rn} <= N, {rn} < N or {rn} = 1 (N an integer from 1 to {TOP_ROWS_MAX})"),
            pos,
        )
    };
    let n = n.ok_or_else(bad)?;
    let rows = match op {
        BinaryOperator::LtEq => n,
        BinaryOperator::Lt => n - 1,
        BinaryOperator::Eq if n == 1 => 1,
        _ => return Err(bad()),
    };
    if rows < 1 || rows > TOP_ROWS_MAX as i64 {
        return Err(bad());
    }
    Ok(Some(rows as usize))
}

/// The AND-ed parts of a condition.
pub(super) fn conjuncts(ast: &AstExpr) -> Vec<&AstExpr> {
    match unnest(ast) {
        AstExpr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            let mut v = conjuncts(left);
            v.extend(conjuncts(right));
            v
        }
        other => vec![other],
    }
}

/// The aggregation and planned query of a top-N.
pub(super) fn finish(
    ranked: Ranked,
    rows_max: usize,
    with_ties: bool,
    post_filter: Option<Expr>,
    outputs: Vec<super::planner::SelectOutput>,
    pos: Pos,
) -> Result<PlannedQuery> {
    if let WindowKind::Session { .. } = ranked.window.kind {
        return Err(EngineError::plan(
            "not supported yet: a per-window top-N over SESSION windows (TUMBLE, HOP and CUMULATE are)",
            pos,
        ));
    }
    let (input, column_names) = match ranked.input {
        Input::Rows(kept) => {
            let names = (0..kept.len()).map(|i| format!("kept${i}")).collect();
            (TopNInput::Rows(kept), names)
        }
        Input::Groups(a) => {
            let schema = a.output_schema();
            let k = a.group_keys.len();
            let names = schema
                .fields()
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != k && *i != k + 1)
                .map(|(_, f)| f.name().clone())
                .collect();
            (TopNInput::Groups(Box::new(a)), names)
        }
    };
    let key_names = (0..ranked.partition_keys.len())
        .map(|i| format!("partition${i}"))
        .collect();
    let aggregation = Aggregation {
        window: Some(ranked.window),
        group_keys: ranked.partition_keys,
        group_key_names: key_names,
        aggregates: vec![AggCall {
            func: AggFunc::TopN,
            arg: None,
            output_type: DataType::Int64,
        }],
        agg_names: vec!["top_n$".into()],
        having: post_filter,
        top_n: Some(Box::new(TopN {
            input,
            column_names,
            order: ranked.order,
            rows_max,
            with_ties,
            row_number_name: ranked.row_number,
        })),
    };
    Ok(PlannedQuery {
        source: ranked.source,
        join: ranked.join,
        stream_join: None,
        filter: ranked.filter,
        aggregation: Some(aggregation),
        outputs,
        pos,
    })
}

/// `SELECT ... FROM (ranked subquery) WHERE rn <= N [AND ...]`.
pub(super) fn plan_ranked_outer(
    select: &Select,
    ranked: Ranked,
    qualifier: Option<String>,
    pos: Pos,
) -> Result<PlannedQuery> {
    refuse_outer_aggregate(select, pos)?;
    let rn = ranked.row_number.clone().unwrap_or_default();
    let sides = [Side {
        qualifier,
        columns: ranked.columns.clone(),
    }];
    let mut rows_max = None;
    let mut post = None;
    if let Some(c) = &select.selection {
        for part in conjuncts(c) {
            let p = pos_of(part.span(), pos);
            if let Some(n) = row_number_bound(part, &rn, p)? {
                rows_max = Some(rows_max.map_or(n, |m: usize| m.min(n)));
                continue;
            }
            let mut scope = DerivedScope {
                sides: &sides,
                clause: "WHERE",
                fallback: p,
            };
            let e = require_boolean(plan_expr(part, &mut scope)?, "WHERE", p)?;
            post = and(post, Some(e));
        }
    }
    let rows_max = rows_max.ok_or_else(|| {
        EngineError::plan(
            format!("a ROW_NUMBER() subquery must be filtered outside by WHERE {rn} <= N (or {rn} < N, {rn} = 1): a per-window top-N"),
            pos,
        )
    })?;
    let outputs = plan_outputs(select, &sides, pos)?;
    finish(ranked, rows_max, false, post, outputs, pos)
}

#[cfg(test)]
#[path = "window_topn_tests.rs"]
mod tests;
