//! One side of a join of two streams: a table, a window table function, or a subquery over
//! one of them (WHERE, a projection, and GROUP BY without aggregates as a per-window
//! DISTINCT).

use sqlparser::ast::{
    Expr as AstExpr, GroupByExpr, Query, SelectItem, SetExpr, Spanned, TableAlias, TableFactor,
};

use super::super::expr_planner::{contains_aggregate, plan_expr, unnest};
use super::super::pos_of;
use super::super::source::{lookup_table, Source, SourceScope};
use super::super::types::column_type_of_arrow;
use super::super::window::{parse_window_tvf, WINDOW_END, WINDOW_START};
use super::PlannedSide;
use crate::catalog::{Column, ColumnType, TableDef};
use crate::error::{EngineError, Pos, Result};
use crate::plan::{Expr, Program, StreamJoinSide};

/// The table a FROM item reads: a table name, a window table function's table, or the one
/// table of a subquery. None: something else (left to the other planners' messages).
pub(super) fn side_table(factor: &TableFactor, program: &Program) -> Option<String> {
    match factor {
        TableFactor::Table {
            name, args: None, ..
        } => Some(name.to_string()),
        TableFactor::TableFunction { expr, .. } => parse_window_tvf(expr, program, Pos::default())
            .ok()
            .map(|(t, _)| t.name.clone()),
        TableFactor::Derived { subquery, .. } => match subquery.body.as_ref() {
            SetExpr::Select(inner) => match inner.from.as_slice() {
                [only] if only.joins.is_empty() => side_table(&only.relation, program),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

fn qualifier_of(alias: &Option<TableAlias>, default: &str, pos: Pos) -> Result<String> {
    match alias {
        Some(alias) if !alias.columns.is_empty() => Err(EngineError::plan(
            "column aliases on a table (AS t(a, b)) are not supported",
            pos_of(alias.name.span, pos),
        )),
        Some(alias) => Ok(alias.name.value.clone()),
        None => Ok(default.to_string()),
    }
}

/// The input of a side: its table, and the window of a window table function.
fn side_input<'p>(
    factor: &TableFactor,
    program: &'p Program,
    pos: Pos,
) -> Result<(&'p TableDef, Option<crate::plan::WindowSpec>)> {
    match factor {
        TableFactor::Table { name, .. } => {
            Ok((lookup_table(program, &name.to_string(), pos)?, None))
        }
        TableFactor::TableFunction { expr, .. } => {
            let (table, spec) = parse_window_tvf(expr, program, pos)?;
            Ok((table, Some(spec)))
        }
        _ => Err(EngineError::plan(
            "a side of a join of two streams must be a table, TABLE(TUMBLE(...)) or a subquery over one of them",
            pos,
        )),
    }
}

/// The side's input table: the table's columns, then `window_start`, `window_end` when
/// windowed.
fn input_table(table: &TableDef, windowed: bool) -> TableDef {
    let mut input = table.clone();
    if windowed {
        for name in [WINDOW_START, WINDOW_END] {
            input.columns.push(Column {
                name: name.to_string(),
                ty: ColumnType::Timestamp,
                nullable: false,
            });
        }
    }
    input
}

fn column(index: usize, table: &TableDef) -> Expr {
    let c = &table.columns[index];
    Expr::Column {
        index,
        name: c.name.clone(),
        data_type: c.ty.to_arrow(),
    }
}

pub(super) fn plan_side(
    factor: &TableFactor,
    program: &Program,
    fallback: Pos,
) -> Result<PlannedSide> {
    let pos = pos_of(factor.span(), fallback);
    let (table, window, alias, projection, names, filter, distinct) = match factor {
        TableFactor::Table { alias, .. } | TableFactor::TableFunction { alias, .. } => {
            let (table, window) = side_input(factor, program, pos)?;
            let input = input_table(table, window.is_some());
            let projection: Vec<Expr> = (0..input.columns.len())
                .map(|i| column(i, &input))
                .collect();
            let names = input.columns.iter().map(|c| c.name.clone()).collect();
            (table, window, alias, projection, names, None, false)
        }
        TableFactor::Derived {
            lateral,
            subquery,
            alias,
            ..
        } => {
            if *lateral {
                return Err(EngineError::plan("LATERAL subqueries are not supported", pos));
            }
            let (table, window, projection, names, filter, distinct) =
                plan_subquery(subquery, program, pos)?;
            (table, window, alias, projection, names, filter, distinct)
        }
        _ => {
            return Err(EngineError::plan(
                "a side of a join of two streams must be a table, TABLE(TUMBLE(...)) or a subquery over one of them",
                pos,
            ))
        }
    };
    let qualifier = qualifier_of(alias, &table.name, pos)?;
    let n = table.columns.len();
    let find = |index: usize| {
        projection
            .iter()
            .position(|e| matches!(e, Expr::Column { index: i, .. } if *i == index))
    };
    let (window_start, window_end) = match window {
        Some(_) => (find(n), find(n + 1)),
        None => (None, None),
    };
    let event_time = table.watermark.and_then(|w| find(w.column));
    let mut columns = Vec::with_capacity(projection.len());
    for (e, name) in projection.iter().zip(&names) {
        let ty = column_type_of_arrow(&e.data_type()).ok_or_else(|| {
            EngineError::plan(
                format!("cannot infer the type of column '{name}' of this join side; use CAST"),
                pos,
            )
        })?;
        columns.push(Column {
            name: name.clone(),
            ty,
            nullable: true,
        });
    }
    Ok(PlannedSide {
        side: StreamJoinSide {
            table: table.name.clone(),
            qualifier,
            window,
            filter,
            projection,
            output_names: names,
            distinct,
            keys: Vec::new(),
            time_column: 0,
        },
        table: table.clone(),
        columns,
        window_start,
        window_end,
        event_time,
        pos,
    })
}

type SubqueryPlan<'p> = (
    &'p TableDef,
    Option<crate::plan::WindowSpec>,
    Vec<Expr>,
    Vec<String>,
    Option<Expr>,
    bool,
);

/// `(SELECT ... FROM t-or-TVF [WHERE ...] [GROUP BY ...])` as a join side.
fn plan_subquery<'p>(query: &Query, program: &'p Program, pos: Pos) -> Result<SubqueryPlan<'p>> {
    if query.with.is_some()
        || query.order_by.is_some()
        || query.limit_clause.is_some()
        || query.fetch.is_some()
    {
        return Err(EngineError::plan(
            "a join side's subquery cannot have WITH, ORDER BY, LIMIT or FETCH",
            pos,
        ));
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Err(EngineError::plan(
            "a join side's subquery must be a plain SELECT",
            pos,
        ));
    };
    let select_pos = pos_of(select.select_token.0.span, pos);
    if select.distinct.is_some() || select.having.is_some() || select.qualify.is_some() {
        return Err(EngineError::plan(
            "not supported yet in a join side: DISTINCT, HAVING, QUALIFY (write GROUP BY the selected columns for a per-window DISTINCT)",
            select_pos,
        ));
    }
    let [from] = select.from.as_slice() else {
        return Err(EngineError::plan(
            "a join side's subquery reads exactly one table",
            select_pos,
        ));
    };
    let (table, window) = side_input(&from.relation, program, select_pos)?;
    let input = input_table(table, window.is_some());
    let source = Source {
        table: &input,
        qualifier: qualifier_of(
            match &from.relation {
                TableFactor::Table { alias, .. } | TableFactor::TableFunction { alias, .. } => {
                    alias
                }
                _ => &None,
            },
            &table.name,
            select_pos,
        )?,
        window_tvf: None,
        pos: select_pos,
        join: None,
    };
    let filter = match &select.selection {
        Some(c) => {
            let mut scope = SourceScope {
                source: &source,
                clause: "WHERE",
                fallback: pos_of(c.span(), select_pos),
            };
            let planned = plan_expr(c, &mut scope)?;
            if planned.data_type() != arrow::datatypes::DataType::Boolean {
                return Err(EngineError::plan(
                    "WHERE needs a BOOLEAN condition",
                    pos_of(c.span(), select_pos),
                ));
            }
            Some(planned)
        }
        None => None,
    };
    let mut projection = Vec::new();
    let mut names = Vec::new();
    for item in &select.projection {
        let item_pos = pos_of(item.span(), select_pos);
        let (expr, alias) = match item {
            SelectItem::UnnamedExpr(e) => (e, None),
            SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.value.clone())),
            SelectItem::Wildcard(_) => {
                for i in 0..input.columns.len() {
                    projection.push(column(i, &input));
                    names.push(input.columns[i].name.clone());
                }
                continue;
            }
            _ => {
                return Err(EngineError::plan(
                    "this SELECT item is not supported in a join side",
                    item_pos,
                ))
            }
        };
        if contains_aggregate(expr) {
            return Err(EngineError::plan(
                "aggregates in a side of a join of two streams are not supported yet",
                item_pos,
            ));
        }
        let mut scope = SourceScope {
            source: &source,
            clause: "SELECT",
            fallback: item_pos,
        };
        let planned = plan_expr(expr, &mut scope)?;
        let name = match (alias, unnest(expr)) {
            (Some(a), _) => a,
            (None, AstExpr::Identifier(i)) => i.value.clone(),
            (None, AstExpr::CompoundIdentifier(parts)) => parts
                .last()
                .map(|p| p.value.clone())
                .unwrap_or_else(|| format!("EXPR${}", names.len())),
            (None, _) => format!("EXPR${}", names.len()),
        };
        projection.push(planned);
        names.push(name);
    }
    let group_by = match &select.group_by {
        GroupByExpr::Expressions(exprs, modifiers) if modifiers.is_empty() => exprs,
        _ => {
            return Err(EngineError::plan(
                "GROUP BY ALL / ROLLUP / CUBE is not supported",
                select_pos,
            ))
        }
    };
    let distinct = !group_by.is_empty();
    if distinct {
        let mut keys = Vec::new();
        for g in group_by {
            let g_pos = pos_of(g.span(), select_pos);
            let mut scope = SourceScope {
                source: &source,
                clause: "GROUP BY",
                fallback: g_pos,
            };
            let planned = plan_expr(g, &mut scope)?;
            if !projection.contains(&planned) {
                return Err(EngineError::plan(
                    format!("not supported yet in a join side: GROUP BY {g} without selecting it (a join side's GROUP BY is a per-window DISTINCT of its columns)"),
                    g_pos,
                ));
            }
            keys.push(planned);
        }
        if let Some((i, _)) = projection
            .iter()
            .enumerate()
            .find(|(_, e)| !keys.contains(e))
        {
            return Err(EngineError::plan(
                format!(
                    "column '{}' of a join side must be one of its GROUP BY expressions (no aggregates there)",
                    names[i]
                ),
                select_pos,
            ));
        }
        let n = table.columns.len();
        let has = |index: usize| {
            keys.iter()
                .any(|e| matches!(e, Expr::Column { index: i, .. } if *i == index))
        };
        if window.is_none() || !has(n) || !has(n + 1) {
            return Err(EngineError::plan(
                "a join side with GROUP BY must be over a window table function and group by window_start, window_end (a per-window DISTINCT)",
                select_pos,
            ));
        }
    }
    Ok((table, window, projection, names, filter, distinct))
}
