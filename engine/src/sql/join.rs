//! `FROM stream [AS t] [LEFT] JOIN dimension [FOR SYSTEM_TIME AS OF t.ts] [AS s] ON ...`:
//! a join of the stream with a dimension table (a table with a PRIMARY KEY whose connector
//! carries its changes, see `crate::dimension`).
//!
//! The join is planned as a wider source: the joined table has the stream's columns, then
//! the dimension table's (all nullable), so WHERE, GROUP BY, aggregates, HAVING and the
//! SELECT list resolve `s.name` like any source column. The ON condition must equate every
//! PRIMARY KEY column of the dimension table with an expression over the stream's columns
//! (a lookup by key; anything else is refused with a message).

use sqlparser::ast::{
    BinaryOperator, Expr as AstExpr, JoinConstraint, JoinOperator, Select, Spanned, TableFactor,
    TableVersion,
};

use super::explain::sql_type_name;
use super::expr_planner::{coerce, plan_expr, unnest};
use super::pos_of;
use super::source::{lookup_table, JoinScope, Source, SourceScope};
use super::types::is_implicit_widening;
use crate::catalog::{Column, TableDef};
use crate::error::{EngineError, Pos, Result};
use crate::plan::{Expr, JoinKind, JoinPlan, Program};

/// Connectors that can feed a dimension table (its changelog).
pub(crate) const DIMENSION_CONNECTORS: &[&str] = &["upsert-kafka", "filesystem"];

/// The joined source of a query: the table the rest of the query reads, and the plan of the
/// join.
pub(crate) struct JoinedFrom {
    /// The stream's columns, then the dimension table's (nullable); the stream's WATERMARK.
    pub table: TableDef,
    pub scope: JoinScope,
    pub plan: JoinPlan,
}

impl JoinedFrom {
    /// The source the rest of the query resolves names against.
    pub fn source<'j>(&'j self, stream: &Source<'_>) -> Source<'j> {
        Source {
            table: &self.table,
            qualifier: stream.qualifier.clone(),
            window_tvf: stream.window_tvf,
            pos: stream.pos,
            join: Some(self.scope.clone()),
        }
    }
}

/// Plans the JOIN of the FROM clause, if there is one. `stream` is the resolved first FROM
/// item (`resolve_from` refuses a second join).
pub(crate) fn plan_join(
    select: &Select,
    program: &Program,
    stream: &Source<'_>,
    fallback: Pos,
) -> Result<Option<JoinedFrom>> {
    let Some(join) = select.from.first().and_then(|f| f.joins.first()) else {
        return Ok(None);
    };
    let join_pos = pos_of(join.span(), fallback);
    let (kind, constraint) = match &join.join_operator {
        JoinOperator::Join(c) | JoinOperator::Inner(c) => (JoinKind::Inner, c),
        JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (JoinKind::Left, c),
        other => {
            let word = format!("{other:?}");
            let word = word
                .split('(')
                .next()
                .unwrap_or("this")
                .to_ascii_uppercase();
            return Err(EngineError::plan(
                format!(
                    "{word} JOIN is not supported: a stream joins a dimension table with JOIN or LEFT JOIN ... ON"
                ),
                join_pos,
            ));
        }
    };
    let condition = match constraint {
        JoinConstraint::On(e) => e,
        _ => {
            return Err(EngineError::plan(
                "a JOIN needs ON dimension.key = stream_expression (USING, NATURAL and joins without a condition are not supported)",
                join_pos,
            ))
        }
    };
    let relation_pos = pos_of(join.relation.span(), join_pos);
    let TableFactor::Table {
        name,
        alias,
        args,
        version,
        ..
    } = &join.relation
    else {
        return Err(EngineError::plan(
            "the joined item must be a dimension table's name (subqueries, table functions and nested joins are not supported)",
            relation_pos,
        ));
    };
    if args.is_some() {
        return Err(EngineError::plan(
            format!("{name}(...): a joined table cannot take arguments"),
            relation_pos,
        ));
    }
    let table_name = match name.0.as_slice() {
        [part] => part.as_ident().map(|i| i.value.clone()),
        _ => None,
    }
    .ok_or_else(|| {
        EngineError::plan(
            format!("qualified table names like {name} are not supported"),
            relation_pos,
        )
    })?;
    let dimension = lookup_table(program, &table_name, relation_pos)?;
    check_dimension_table(dimension, stream, relation_pos)?;
    let qualifier = match alias {
        Some(alias) if !alias.columns.is_empty() => {
            return Err(EngineError::plan(
                "column aliases on a table (AS t(a, b)) are not supported",
                pos_of(alias.name.span, relation_pos),
            ))
        }
        Some(alias) => alias.name.value.clone(),
        None => dimension.name.clone(),
    };
    if qualifier.eq_ignore_ascii_case(&stream.qualifier) {
        return Err(EngineError::plan(
            format!("both sides of the JOIN are called '{qualifier}'; give one an alias (AS s)"),
            relation_pos,
        ));
    }

    let offset = stream.table.columns.len();
    let mut columns = stream.table.columns.clone();
    columns.extend(dimension.columns.iter().map(|c| Column {
        nullable: true,
        ..c.clone()
    }));
    let mut joined = JoinedFrom {
        table: TableDef {
            columns,
            primary_key: Vec::new(),
            ..stream.table.clone()
        },
        scope: JoinScope {
            qualifier,
            table_name: dimension.name.clone(),
            offset,
        },
        plan: JoinPlan {
            dimension: dimension.name.clone(),
            qualifier: String::new(),
            kind,
            version_time_column: None,
            probe_keys: Vec::new(),
            source_columns: offset,
        },
    };
    joined.plan.qualifier = joined.scope.qualifier.clone();
    let version_time_column = match version {
        None => None,
        Some(TableVersion::ForSystemTimeAsOf(expr)) => {
            Some(version_time_column(expr, stream, dimension, relation_pos)?)
        }
        Some(other) => {
            return Err(EngineError::plan(
                format!(
                "{other} is not supported; a temporal join is written FOR SYSTEM_TIME AS OF t.ts"
            ),
                relation_pos,
            ))
        }
    };
    let probe_keys = {
        let source = joined.source(stream);
        plan_condition(condition, &source, dimension, join_pos)?
    };
    joined.plan.version_time_column = version_time_column;
    joined.plan.probe_keys = probe_keys;
    Ok(Some(joined))
}

/// A joined table must be a dimension table: a PRIMARY KEY and a changelog connector.
fn check_dimension_table(dimension: &TableDef, stream: &Source<'_>, pos: Pos) -> Result<()> {
    if dimension.name.eq_ignore_ascii_case(&stream.table.name) {
        return Err(EngineError::plan(
            format!(
                "table '{}' is joined with itself; a stream joins a dimension table",
                dimension.name
            ),
            pos,
        ));
    }
    if dimension.primary_key.is_empty() {
        return Err(EngineError::plan(
            format!(
                "table '{}' has no PRIMARY KEY: a joined (dimension) table needs PRIMARY KEY (...) NOT ENFORCED, the key of its changelog",
                dimension.name
            ),
            pos,
        ));
    }
    let connector = dimension.connector();
    if !DIMENSION_CONNECTORS.contains(&connector.as_str()) {
        return Err(EngineError::plan(
            format!(
                "table '{}' (connector '{connector}') cannot be joined as a dimension table; its connector must be one of: {}",
                dimension.name,
                DIMENSION_CONNECTORS.join(", ")
            ),
            pos,
        ));
    }
    Ok(())
}

/// `FOR SYSTEM_TIME AS OF t.ts`: the stream's WATERMARK column; the dimension table needs a
/// WATERMARK too (its column is when each version became valid).
fn version_time_column(
    expr: &AstExpr,
    stream: &Source<'_>,
    dimension: &TableDef,
    fallback: Pos,
) -> Result<usize> {
    let pos = pos_of(expr.span(), fallback);
    let mut scope = SourceScope {
        source: stream,
        clause: "FOR SYSTEM_TIME AS OF",
        fallback: pos,
    };
    let planned = plan_expr(expr, &mut scope)?;
    let watermark = stream.table.watermark.ok_or_else(|| {
        EngineError::plan(
            format!(
                "FOR SYSTEM_TIME AS OF needs event time: table '{}' declares no WATERMARK",
                stream.table.name
            ),
            pos,
        )
    })?;
    match planned {
        Expr::Column { index, .. } if index == watermark.column => {}
        _ => {
            return Err(EngineError::plan(
                format!(
                    "FOR SYSTEM_TIME AS OF must name the event-time column of '{}' ({}.{}), the column its WATERMARK is declared on",
                    stream.table.name, stream.qualifier, stream.table.columns[watermark.column].name
                ),
                pos,
            ))
        }
    }
    if dimension.watermark.is_none() {
        return Err(EngineError::plan(
            format!(
                "a temporal join (FOR SYSTEM_TIME AS OF) needs a versioned table: table '{}' must declare WATERMARK FOR its time column, which says when each version became valid",
                dimension.name
            ),
            pos,
        ));
    }
    Ok(watermark.column)
}

/// The ON condition: `dim.k1 = e1 AND dim.k2 = e2 ...` over every PRIMARY KEY column once;
/// returns the stream expressions in key order, cast to the key columns' types.
fn plan_condition(
    condition: &AstExpr,
    source: &Source<'_>,
    dimension: &TableDef,
    fallback: Pos,
) -> Result<Vec<Expr>> {
    let offset = source.stream_columns();
    let mut conjuncts = Vec::new();
    split_and(condition, &mut conjuncts);
    let mut keys: Vec<Option<Expr>> = vec![None; dimension.primary_key.len()];
    let usage = format!(
        "the JOIN condition must be {}.key = expression over the stream for each PRIMARY KEY column ({}), joined by AND",
        source.join.as_ref().map_or("dimension", |j| j.qualifier.as_str()),
        key_names(dimension)
    );
    for conjunct in conjuncts {
        let pos = pos_of(conjunct.span(), fallback);
        let AstExpr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = conjunct
        else {
            return Err(EngineError::plan(format!("{usage}; found {conjunct}"), pos));
        };
        let mut scope = SourceScope {
            source,
            clause: "the JOIN condition",
            fallback: pos,
        };
        let left = plan_expr(left, &mut scope)?;
        let right = plan_expr(right, &mut scope)?;
        let (key_column, probe) = match (
            dimension_column(&left, offset),
            dimension_column(&right, offset),
        ) {
            (Some(k), None) => (k, right),
            (None, Some(k)) => (k, left),
            _ => return Err(EngineError::plan(format!("{usage}; found {conjunct}"), pos)),
        };
        if max_column(&probe).is_some_and(|c| c >= offset) {
            return Err(EngineError::plan(
                format!("{usage}; the other side of {conjunct} uses the dimension table"),
                pos,
            ));
        }
        let Some(slot) = dimension.primary_key.iter().position(|&k| k == key_column) else {
            return Err(EngineError::plan(
                format!(
                    "{conjunct}: '{}' is not a PRIMARY KEY column of '{}' ({}); a dimension table is looked up by its key",
                    dimension.columns[key_column].name,
                    dimension.name,
                    key_names(dimension)
                ),
                pos,
            ));
        };
        if keys[slot].is_some() {
            return Err(EngineError::plan(
                format!(
                    "{conjunct}: key column '{}' is equated twice",
                    dimension.columns[key_column].name
                ),
                pos,
            ));
        }
        let to = dimension.columns[key_column].ty.to_arrow();
        let from = probe.data_type();
        if !is_implicit_widening(&from, &to) {
            return Err(EngineError::plan(
                format!(
                    "{conjunct}: the stream side is {} but key column '{}' is {}; write CAST(... AS {})",
                    sql_type_name(&from),
                    dimension.columns[key_column].name,
                    sql_type_name(&to),
                    sql_type_name(&to)
                ),
                pos,
            ));
        }
        keys[slot] = Some(coerce(probe, &to));
    }
    let missing: Vec<&str> = keys
        .iter()
        .zip(&dimension.primary_key)
        .filter(|(k, _)| k.is_none())
        .map(|(_, &c)| dimension.columns[c].name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(EngineError::plan(
            format!("{usage}; missing: {}", missing.join(", ")),
            pos_of(condition.span(), fallback),
        ));
    }
    Ok(keys.into_iter().flatten().collect())
}

fn key_names(table: &TableDef) -> String {
    table
        .primary_key
        .iter()
        .map(|&c| table.columns[c].name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn split_and<'a>(expr: &'a AstExpr, out: &mut Vec<&'a AstExpr>) {
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

/// The dimension column (index within the dimension table) `expr` is, if it is one.
fn dimension_column(expr: &Expr, offset: usize) -> Option<usize> {
    match expr {
        Expr::Column { index, .. } if *index >= offset => Some(index - offset),
        _ => None,
    }
}

/// The largest column index `expr` reads.
fn max_column(expr: &Expr) -> Option<usize> {
    match expr {
        Expr::Column { index, .. } => Some(*index),
        Expr::Literal(_) => None,
        Expr::Binary { left, right, .. } => max_column(left).max(max_column(right)),
        Expr::Unary { expr, .. } | Expr::IsNull { expr, .. } | Expr::Cast { expr, .. } => {
            max_column(expr)
        }
        Expr::Case {
            branches,
            otherwise,
            ..
        } => branches
            .iter()
            .flat_map(|(c, v)| [max_column(c), max_column(v)])
            .chain(otherwise.as_deref().map(max_column))
            .max()
            .flatten(),
    }
}

#[cfg(test)]
#[path = "join_tests.rs"]
mod tests;
