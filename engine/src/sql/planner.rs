//! `INSERT INTO sink SELECT ...` and bare `SELECT` -> [`Pipeline`].

use std::collections::{BTreeMap, HashSet};

use sqlparser::ast::{
    GroupByExpr, Insert, Query, Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr,
    Spanned, TableObject, WildcardAdditionalOptions,
};

use super::aggregate_planner::{rename_columns, AggregatePlanner, NamedOutput};
use super::explain::sql_type_name;
use super::expr_planner::{coerce, contains_aggregate, plan_expr, unnest, Scope};
use super::join::plan_join;
use super::source::{lookup_table, resolve_from, Source, SourceScope};
use super::types::{column_type_of_arrow, is_implicit_widening, numeric_rank};
use super::{pos_of, PRINT_SINK_NAME};
use crate::catalog::{Column, TableDef};
use crate::error::{EngineError, Pos, Result};
use crate::plan::{Aggregation, Expr, JoinPlan, Pipeline, Program};

use arrow::datatypes::DataType;

/// One column of the SELECT list, planned.
pub(super) struct SelectOutput {
    /// Over the source rows, or over the aggregation output.
    pub(super) expr: Expr,
    /// The alias, the column name, or `EXPR$n`.
    pub(super) name: String,
    pub(super) alias: Option<String>,
    /// Written as `CAST(... AS type)` at the top (allows narrowing into a sink column).
    pub(super) explicit_cast: bool,
    pub(super) pos: Pos,
}

/// A planned SELECT, not yet bound to a sink.
pub(super) struct PlannedQuery {
    /// The stream table's name.
    pub(super) source: String,
    pub(super) join: Option<JoinPlan>,
    /// A join with a second stream (`super::stream_join`).
    pub(super) stream_join: Option<crate::plan::StreamJoin>,
    pub(super) filter: Option<Expr>,
    pub(super) aggregation: Option<Aggregation>,
    pub(super) outputs: Vec<SelectOutput>,
    pub(super) pos: Pos,
}

/// Plans `INSERT INTO sink SELECT ...` starting at `pos`.
pub(crate) fn plan_insert(insert: &Insert, program: &Program, pos: Pos) -> Result<Pipeline> {
    let sink_name = match &insert.table {
        TableObject::TableName(name) => match name.0.as_slice() {
            [part] => part.as_ident().map(|i| i.value.clone()),
            _ => None,
        }
        .ok_or_else(|| {
            EngineError::plan(
                format!("qualified table names like {name} are not supported"),
                pos_of(name.span(), pos),
            )
        })?,
        TableObject::TableFunction(_) | TableObject::TableQuery(_) => {
            return Err(EngineError::plan(
                "INSERT INTO must name a table",
                pos_of(insert.table.span(), pos),
            ))
        }
    };
    let sink_pos = pos_of(insert.table.span(), pos);
    if !insert.columns.is_empty() {
        return Err(EngineError::plan(
            "INSERT INTO t (columns) is not supported yet; select the values in the order of the sink's columns",
            sink_pos,
        ));
    }
    if insert.overwrite {
        return Err(EngineError::plan("INSERT OVERWRITE is not supported", pos));
    }
    if insert.partitioned.is_some() || insert.on.is_some() || insert.returning.is_some() {
        return Err(EngineError::plan(
            "INSERT with PARTITION / ON CONFLICT / RETURNING is not supported",
            pos,
        ));
    }
    let Some(query) = &insert.source else {
        return Err(EngineError::plan(
            "INSERT needs a SELECT (INSERT ... VALUES is not supported)",
            pos,
        ));
    };
    let sink = lookup_table(program, &sink_name, sink_pos)?;
    if let Some(c) = sink.proctime_column() {
        return Err(EngineError::plan(
            format!(
                "sink table '{sink_name}' declares the processing-time column '{}'; a sink's \
                 columns are written from the SELECT: declare it as TIMESTAMP(3)",
                sink.columns[c].name
            ),
            sink_pos,
        ));
    }
    let planned = plan_query(query, program, pos)?;
    let (projected_sink, row_kind) = super::late::split_row_kind(sink, planned.outputs.len());
    let mut projection = project_to_sink(&planned.outputs, &projected_sink, planned.pos)?;
    super::late::insert_row_kind(&mut projection, row_kind);
    let source_table = lookup_table(program, &planned.source, pos)?;
    let mut late = super::late::plan_late(
        program,
        source_table,
        sink,
        planned.aggregation.as_ref(),
        row_kind,
        pos,
    )?;
    if planned
        .aggregation
        .as_ref()
        .is_some_and(|a| a.window.is_none())
    {
        late.update_before = super::updating::check_sink(sink, row_kind, sink_pos)?;
    }
    Ok(Pipeline {
        source: planned.source,
        sink: sink.name.clone(),
        join: planned.join,
        filter: planned.filter,
        aggregation: planned.aggregation,
        projection,
        output_schema: sink.schema(),
        late,
        stream_join: planned.stream_join.clone(),
        pos,
    })
}

/// Plans a bare `SELECT`: a pipeline into the implicit print sink, whose table it returns.
pub(crate) fn plan_select(
    query: &Query,
    program: &Program,
    pos: Pos,
) -> Result<(Pipeline, TableDef)> {
    let planned = plan_query(query, program, pos)?;
    let mut used = HashSet::new();
    let mut columns = Vec::with_capacity(planned.outputs.len());
    for (i, output) in planned.outputs.iter().enumerate() {
        let data_type = output.expr.data_type();
        let ty = column_type_of_arrow(&data_type).ok_or_else(|| {
            EngineError::plan(
                format!(
                    "cannot infer the type of SELECT column {} ('{}'); use CAST(NULL AS type)",
                    i + 1,
                    output.name
                ),
                output.pos,
            )
        })?;
        // Flink names repeated columns a, a0, a1, ...
        let mut name = output.name.clone();
        let mut n = 0;
        while !used.insert(name.to_ascii_lowercase()) {
            name = format!("{}{n}", output.name);
            n += 1;
        }
        columns.push(Column {
            name,
            ty,
            nullable: true,
        });
    }
    let sink = TableDef {
        name: PRINT_SINK_NAME.to_string(),
        columns,
        watermark: None,
        primary_key: Vec::new(),
        options: BTreeMap::from([("connector".to_string(), "print".to_string())]),
        pos,
    };
    let mut projection: Vec<Expr> = planned.outputs.into_iter().map(|o| o.expr).collect();
    let mut sink = sink;
    // An updating aggregate's rows are printed with their kind (+I, -U, +U).
    let updating = planned
        .aggregation
        .as_ref()
        .is_some_and(|a| a.window.is_none());
    let row_kind = updating.then(|| super::updating::add_row_kind_column(&mut sink));
    super::late::insert_row_kind(&mut projection, row_kind);
    let source_table = lookup_table(program, &planned.source, pos)?;
    let mut late = super::late::plan_late(
        program,
        source_table,
        &sink,
        planned.aggregation.as_ref(),
        row_kind,
        pos,
    )?;
    late.update_before = updating;
    let pipeline = Pipeline {
        source: planned.source,
        sink: sink.name.clone(),
        join: planned.join,
        filter: planned.filter,
        aggregation: planned.aggregation,
        projection,
        output_schema: sink.schema(),
        late,
        stream_join: planned.stream_join.clone(),
        pos,
    };
    Ok((pipeline, sink))
}

/// One expression per sink column, cast to its type (numeric widening implicitly; any
/// numeric conversion when the SELECT column is an explicit CAST).
fn project_to_sink(outputs: &[SelectOutput], sink: &TableDef, pos: Pos) -> Result<Vec<Expr>> {
    if outputs.len() != sink.columns.len() {
        return Err(EngineError::plan(
            format!(
                "the SELECT has {} columns but the sink table '{}' has {} ({})",
                outputs.len(),
                sink.name,
                sink.columns.len(),
                sink.columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            pos,
        ));
    }
    let mut projection = Vec::with_capacity(outputs.len());
    for (i, (output, column)) in outputs.iter().zip(&sink.columns).enumerate() {
        let to = column.ty.to_arrow();
        let from = output.expr.data_type();
        let coerced = coerce(output.expr.clone(), &to);
        let converted_literal = matches!(coerced, Expr::Literal(_)) && coerced.data_type() == to;
        let numeric_cast =
            output.explicit_cast && numeric_rank(&from).is_some() && numeric_rank(&to).is_some();
        if is_implicit_widening(&from, &to) || converted_literal || numeric_cast {
            projection.push(coerced);
            continue;
        }
        let hint = if numeric_rank(&from).is_some() && numeric_rank(&to).is_some() {
            format!(
                "; write CAST(... AS {}) to convert it",
                column.ty.sql_name()
            )
        } else {
            String::new()
        };
        return Err(EngineError::plan(
            format!(
                "SELECT column {} ('{}') is {}, but column '{}' of table '{}' is {}{hint}",
                i + 1,
                output.name,
                sql_type_name(&from),
                column.name,
                sink.name,
                column.ty.sql_name()
            ),
            output.pos,
        ));
    }
    Ok(projection)
}

pub(super) fn plan_query(query: &Query, program: &Program, pos: Pos) -> Result<PlannedQuery> {
    refuse_query_clauses(query, pos)?;
    let select = match query.body.as_ref() {
        SetExpr::Select(select) => select,
        SetExpr::Query(inner) => return plan_query(inner, program, pos),
        SetExpr::SetOperation { op, right, .. } => {
            return Err(EngineError::plan(
                format!("{op} is not supported yet"),
                pos_of(right.span(), pos),
            ))
        }
        SetExpr::Values(_) => return Err(EngineError::plan("VALUES is not supported yet", pos)),
        other => {
            return Err(EngineError::plan(
                format!("{other} is not supported here"),
                pos,
            ))
        }
    };
    let select_pos = pos_of(select.select_token.0.span, pos);
    refuse_select_clauses(select, select_pos)?;
    // A join of two different streams (window or interval join) is a source of its own.
    let stream_join = super::stream_join::plan_stream_join(select, program, select_pos)?;
    // Subqueries in FROM (flattened, per-window top-N, a per-window MAX joined back).
    if stream_join.is_none() {
        if let Some(planned) = super::subquery::plan_derived(select, program, select_pos)? {
            return Ok(planned);
        }
    }
    let stream = match &stream_join {
        Some(j) => j.source(),
        None => resolve_from(select, program, select_pos)?,
    };
    let joined = match &stream_join {
        Some(_) => None,
        None => plan_join(select, program, &stream, select_pos)?,
    };
    let source = match &joined {
        Some(j) => j.source(&stream),
        None => stream.clone(),
    };

    let filter = match &select.selection {
        Some(condition) => {
            let where_pos = pos_of(condition.span(), select_pos);
            let mut scope = SourceScope {
                source: &source,
                clause: "WHERE",
                fallback: where_pos,
            };
            let planned = plan_expr(condition, &mut scope)?;
            Some(require_boolean(planned, "WHERE", where_pos)?)
        }
        None => None,
    };

    let group_by: &[sqlparser::ast::Expr] = match &select.group_by {
        GroupByExpr::Expressions(exprs, modifiers) => {
            if !modifiers.is_empty() {
                return Err(EngineError::plan(
                    "GROUP BY ... WITH ROLLUP / CUBE / TOTALS is not supported",
                    select_pos,
                ));
            }
            exprs
        }
        GroupByExpr::All(_) => {
            return Err(EngineError::plan(
                "GROUP BY ALL is not supported",
                select_pos,
            ))
        }
    };
    let is_aggregate = !group_by.is_empty()
        || select.having.is_some()
        || select.projection.iter().any(|item| match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                contains_aggregate(e)
            }
            _ => false,
        });

    // A ranked or aggregating join emits each row once, when final: an updating
    // aggregate (GROUP BY without a window) may read it.
    let updating = stream_join
        .as_ref()
        .is_some_and(|j| j.plan.append_only_final());
    if is_aggregate && stream_join.is_some() && !updating {
        return Err(EngineError::plan(
            "not supported yet: aggregating the result of a join of two streams (except a ranked or aggregating join's, whose rows are final: Nexmark q4)",
            select_pos,
        ));
    }
    let (outputs, aggregation) = if is_aggregate {
        let planned = plan_aggregate_query(select, &source, group_by, updating, select_pos)?;
        if let Some(a) = &planned.1 {
            if a.window.is_some() && stream_join.is_some() {
                return Err(EngineError::plan(
                    "not supported yet: a window aggregation over a join of two streams; group the join's results without a window (an updating aggregate)",
                    select_pos,
                ));
            }
            if a.window.is_none() {
                super::updating::check_aggregation(a, select, select_pos)?;
            }
        }
        planned
    } else {
        if source.window_tvf.is_some() {
            return Err(EngineError::plan(
                "not supported yet: a query over FROM TABLE(TUMBLE(...)) must aggregate with GROUP BY window_start, window_end",
                source.pos,
            ));
        }
        let mut scope = SourceScope {
            source: &source,
            clause: "SELECT",
            fallback: select_pos,
        };
        (
            plan_select_list(select, &source, &mut scope, false, select_pos)?,
            None,
        )
    };
    Ok(PlannedQuery {
        source: stream.table.name.clone(),
        join: joined.map(|j| j.plan),
        stream_join: stream_join.map(|j| j.plan),
        filter,
        aggregation,
        outputs,
        pos: select_pos,
    })
}

pub(super) fn plan_aggregate_query(
    select: &Select,
    source: &Source,
    group_by: &[sqlparser::ast::Expr],
    updating: bool,
    select_pos: Pos,
) -> Result<(Vec<SelectOutput>, Option<Aggregation>)> {
    let mut planner = AggregatePlanner::new(source, group_by, updating, select_pos)?;
    let mut outputs = plan_select_list(select, source, &mut planner, true, select_pos)?;
    let having = match &select.having {
        Some(condition) => {
            let having_pos = pos_of(condition.span(), select_pos);
            planner.set_clause("HAVING", having_pos);
            let planned = plan_expr(condition, &mut planner)?;
            Some(require_boolean(planned, "HAVING", having_pos)?)
        }
        None => None,
    };
    let named: Vec<NamedOutput> = outputs
        .iter()
        .enumerate()
        .map(|(index, o)| NamedOutput {
            expr: &o.expr,
            alias: o.alias.as_deref(),
            index,
        })
        .collect();
    let mut aggregation = planner.finish(&named, having);
    let schema = aggregation.output_schema();
    for output in &mut outputs {
        rename_columns(&mut output.expr, &schema);
    }
    if let Some(having) = &mut aggregation.having {
        rename_columns(having, &schema);
    }
    Ok((outputs, Some(aggregation)))
}

/// The SELECT list, `*` expanded to the source columns (only outside aggregate queries).
fn plan_select_list(
    select: &Select,
    source: &Source,
    scope: &mut dyn Scope,
    aggregate: bool,
    select_pos: Pos,
) -> Result<Vec<SelectOutput>> {
    let mut outputs = Vec::new();
    for item in &select.projection {
        let item_pos = pos_of(item.span(), select_pos);
        let (expr, alias) = match item {
            SelectItem::UnnamedExpr(e) => (e, None),
            SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.value.clone())),
            SelectItem::ExprWithAliases { .. } => {
                return Err(EngineError::plan(
                    "multiple aliases AS (a, b) are not supported",
                    item_pos,
                ))
            }
            SelectItem::Wildcard(options) | SelectItem::QualifiedWildcard(_, options) => {
                if aggregate {
                    return Err(EngineError::plan(
                        "SELECT * is not supported in an aggregate query; list the group keys and aggregates",
                        item_pos,
                    ));
                }
                check_wildcard(item, options, source, item_pos)?;
                for index in 0..source.table.columns.len() {
                    outputs.push(SelectOutput {
                        expr: source.column_expr(index),
                        name: source.table.columns[index].name.clone(),
                        alias: None,
                        explicit_cast: false,
                        pos: item_pos,
                    });
                }
                continue;
            }
        };
        let planned = plan_expr(expr, scope)?;
        let name = match (&alias, unnest(expr)) {
            (Some(alias), _) => alias.clone(),
            (None, sqlparser::ast::Expr::Identifier(ident)) => ident.value.clone(),
            (None, sqlparser::ast::Expr::CompoundIdentifier(parts)) => parts
                .last()
                .map(|p| p.value.clone())
                .unwrap_or_else(|| format!("EXPR${}", outputs.len())),
            (None, _) => format!("EXPR${}", outputs.len()),
        };
        outputs.push(SelectOutput {
            expr: planned,
            name,
            alias,
            explicit_cast: matches!(unnest(expr), sqlparser::ast::Expr::Cast { .. }),
            pos: item_pos,
        });
    }
    Ok(outputs)
}

fn check_wildcard(
    item: &SelectItem,
    options: &WildcardAdditionalOptions,
    source: &Source,
    pos: Pos,
) -> Result<()> {
    if options.opt_ilike.is_some()
        || options.opt_exclude.is_some()
        || options.opt_except.is_some()
        || options.opt_replace.is_some()
        || options.opt_rename.is_some()
        || options.opt_alias.is_some()
    {
        return Err(EngineError::plan(
            "SELECT * with EXCEPT / EXCLUDE / REPLACE / RENAME is not supported",
            pos,
        ));
    }
    if let SelectItem::QualifiedWildcard(kind, _) = item {
        let qualifier = match kind {
            SelectItemQualifiedWildcardKind::ObjectName(name) => name.to_string(),
            SelectItemQualifiedWildcardKind::Expr(e) => e.to_string(),
        };
        let unquoted = qualifier.trim_matches(|c| c == '`' || c == '"');
        if !unquoted.eq_ignore_ascii_case(&source.qualifier) {
            return Err(EngineError::plan(
                format!(
                    "unknown table or alias '{qualifier}' in {qualifier}.* (the FROM clause names '{}')",
                    source.qualifier
                ),
                pos,
            ));
        }
    }
    Ok(())
}

pub(super) fn require_boolean(expr: Expr, clause: &str, pos: Pos) -> Result<Expr> {
    match expr.data_type() {
        DataType::Boolean => Ok(expr),
        DataType::Null => Ok(coerce(expr, &DataType::Boolean)),
        other => Err(EngineError::plan(
            format!(
                "{clause} needs a BOOLEAN condition, found {}",
                sql_type_name(&other)
            ),
            pos,
        )),
    }
}

fn refuse_query_clauses(query: &Query, pos: Pos) -> Result<()> {
    if let Some(with) = &query.with {
        return Err(EngineError::plan(
            "WITH (common table expressions) is not supported yet",
            pos_of(with.span(), pos),
        ));
    }
    if let Some(order_by) = &query.order_by {
        return Err(EngineError::plan(
            "ORDER BY is not supported (a streaming query emits each window's results once, when it closes)",
            pos_of(order_by.span(), pos),
        ));
    }
    if let Some(limit) = &query.limit_clause {
        return Err(EngineError::plan(
            "LIMIT / OFFSET is not supported yet",
            pos_of(limit.span(), pos),
        ));
    }
    if let Some(fetch) = &query.fetch {
        return Err(EngineError::plan(
            "FETCH is not supported",
            pos_of(fetch.span(), pos),
        ));
    }
    if !query.locks.is_empty()
        || query.for_clause.is_some()
        || query.settings.is_some()
        || query.format_clause.is_some()
        || !query.pipe_operators.is_empty()
    {
        return Err(EngineError::plan(
            "this query clause (FOR ..., SETTINGS, FORMAT, |>) is not supported",
            pos,
        ));
    }
    Ok(())
}

fn refuse_select_clauses(select: &Select, pos: Pos) -> Result<()> {
    let refused = if select.distinct.is_some() {
        Some("SELECT DISTINCT is not supported yet")
    } else if select.top.is_some() {
        Some("SELECT TOP is not supported")
    } else if select.into.is_some() {
        Some("SELECT INTO is not supported")
    } else if select.select_modifiers.is_some() || select.exclude.is_some() {
        Some("SELECT modifiers are not supported")
    } else if !select.lateral_views.is_empty() {
        Some("LATERAL VIEW is not supported")
    } else if select.prewhere.is_some() {
        Some("PREWHERE is not supported")
    } else if !select.connect_by.is_empty() {
        Some("CONNECT BY is not supported")
    } else if !select.cluster_by.is_empty()
        || !select.distribute_by.is_empty()
        || !select.sort_by.is_empty()
    {
        Some("CLUSTER BY / DISTRIBUTE BY / SORT BY are not supported")
    } else if !select.named_window.is_empty() {
        Some("the WINDOW clause (window functions) is not supported yet")
    } else if select.qualify.is_some() {
        Some("QUALIFY is not supported")
    } else if select.value_table_mode.is_some() {
        Some("SELECT AS VALUE / STRUCT is not supported")
    } else {
        None
    };
    match refused {
        Some(message) => Err(EngineError::plan(message, pos)),
        None => Ok(()),
    }
}
