//! The FROM clause: one table (optionally aliased) or the window table function
//! `TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), size [, offset]))`; and how column names resolve
//! against it.

use sqlparser::ast::{Ident, Select, Spanned, TableFactor};

use super::expr_planner::Scope;
use super::pos_of;
use super::window::{parse_window_tvf, WINDOW_END, WINDOW_START, WINDOW_TIME};
use crate::catalog::TableDef;
use crate::error::{EngineError, Pos, Result};
use crate::plan::{Expr, Program, WindowSpec};

/// The resolved FROM clause of a query.
#[derive(Debug, Clone)]
pub(crate) struct Source<'p> {
    pub table: &'p TableDef,
    /// The alias, or the table's name when there is none (what `x.col` may be qualified by).
    pub qualifier: String,
    /// The window of a window table function (`FROM TABLE(TUMBLE(...))`).
    pub window_tvf: Option<WindowSpec>,
    /// Where the FROM item is.
    pub pos: Pos,
    /// A joined dimension table: `table` is then the joined table (the stream's columns,
    /// then the dimension's), see `super::join`.
    pub join: Option<JoinScope>,
}

/// The dimension table of a join, as column names resolve against it.
#[derive(Debug, Clone)]
pub(crate) struct JoinScope {
    /// The alias of the dimension table, or its name.
    pub qualifier: String,
    /// The dimension table's name, for messages.
    pub table_name: String,
    /// Index of the first dimension column in the joined table (= the stream's columns).
    pub offset: usize,
}

/// What a column name refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnRef {
    /// A column of the source table.
    Table(usize),
    /// `window_start` / `window_end` / `window_time` of a window table function.
    WindowStart,
    WindowEnd,
    WindowTime,
}

/// Resolves `select.from`.
pub(crate) fn resolve_from<'p>(
    select: &Select,
    program: &'p Program,
    fallback: Pos,
) -> Result<Source<'p>> {
    let Some(first) = select.from.first() else {
        return Err(EngineError::plan(
            "SELECT without FROM is not supported",
            fallback,
        ));
    };
    if let Some(second) = select.from.get(1) {
        return Err(EngineError::plan(
            "joins (FROM a, b) are not supported yet",
            pos_of(second.span(), fallback),
        ));
    }
    if let Some(join) = first.joins.get(1) {
        return Err(EngineError::plan(
            "only one JOIN (with one dimension table) is supported",
            pos_of(join.span(), fallback),
        ));
    }
    let pos = pos_of(first.relation.span(), fallback);
    let (table, alias, window_tvf) = match &first.relation {
        TableFactor::Table {
            name,
            alias,
            args,
            version,
            ..
        } => {
            if args.is_some() {
                return Err(EngineError::plan(
                    format!(
                        "table function {name}(...) must be written as FROM TABLE({name}(...))"
                    ),
                    pos,
                ));
            }
            if version.is_some() {
                return Err(EngineError::plan(
                    "FOR SYSTEM_TIME AS OF (temporal joins) is not supported yet",
                    pos,
                ));
            }
            let table_name = match name.0.as_slice() {
                [part] => part.as_ident().map(|i| i.value.clone()),
                _ => None,
            }
            .ok_or_else(|| {
                EngineError::plan(
                    format!("qualified table names like {name} are not supported"),
                    pos,
                )
            })?;
            let table = lookup_table(program, &table_name, pos)?;
            (table, alias, None)
        }
        TableFactor::TableFunction { expr, alias } => {
            let (table, spec) = parse_window_tvf(expr, program, pos)?;
            (table, alias, Some(spec))
        }
        TableFactor::Derived { .. } => {
            return Err(EngineError::plan(
                "subqueries in FROM are not supported yet",
                pos,
            ))
        }
        TableFactor::NestedJoin { .. } => {
            return Err(EngineError::plan("JOIN is not supported yet", pos))
        }
        other => {
            return Err(EngineError::plan(
                format!("FROM {other} is not supported; use a table name or TABLE(TUMBLE(...))"),
                pos,
            ))
        }
    };
    let qualifier = match alias {
        Some(alias) => {
            if !alias.columns.is_empty() {
                return Err(EngineError::plan(
                    "column aliases on a table (AS t(a, b)) are not supported",
                    pos_of(alias.name.span, pos),
                ));
            }
            alias.name.value.clone()
        }
        None => table.name.clone(),
    };
    if window_tvf.is_some() {
        for name in [WINDOW_START, WINDOW_END, WINDOW_TIME] {
            if table.column_index(name).is_some() {
                return Err(EngineError::plan(
                    format!("table '{}' already has a column named {name}, which the window table function adds", table.name),
                    pos,
                ));
            }
        }
    }
    Ok(Source {
        table,
        qualifier,
        window_tvf,
        pos,
        join: None,
    })
}

/// The table named `name` (case-insensitive), or an "unknown table" error.
pub(crate) fn lookup_table<'p>(program: &'p Program, name: &str, pos: Pos) -> Result<&'p TableDef> {
    program.table(name).ok_or_else(|| {
        let known: Vec<&str> = program
            .tables
            .keys()
            .map(String::as_str)
            .filter(|t| *t != super::PRINT_SINK_NAME)
            .collect();
        let hint = if known.is_empty() {
            "no table is declared before this statement".to_string()
        } else {
            format!("declared tables: {}", known.join(", "))
        };
        EngineError::plan(format!("unknown table '{name}' ({hint})"), pos)
    })
}

impl Source<'_> {
    /// Resolves `col` or `qualifier.col`.
    pub fn resolve(&self, parts: &[Ident], pos: Pos) -> Result<ColumnRef> {
        if let Some(join) = &self.join {
            if let Some(found) = self.resolve_joined(join, parts, pos)? {
                return Ok(found);
            }
        }
        let column = match parts {
            [column] => column,
            [qualifier, column] => {
                if !qualifier.value.eq_ignore_ascii_case(&self.qualifier) {
                    let also = match &self.join {
                        Some(j) => format!("' and '{}", j.qualifier),
                        None => String::new(),
                    };
                    return Err(EngineError::plan(
                        format!(
                            "unknown table or alias '{}' in '{}.{}' (the FROM clause names '{}{also}')",
                            qualifier.value, qualifier.value, column.value, self.qualifier
                        ),
                        pos_of(qualifier.span, pos),
                    ));
                }
                column
            }
            _ => {
                let text: Vec<&str> = parts.iter().map(|p| p.value.as_str()).collect();
                return Err(EngineError::plan(
                    format!(
                        "'{}': only `column` or `table.column` names are supported",
                        text.join(".")
                    ),
                    pos,
                ));
            }
        };
        let column_pos = pos_of(column.span, pos);
        let stream_columns = self
            .join
            .as_ref()
            .map_or(self.table.columns.len(), |j| j.offset);
        if let Some(index) = self.table.columns[..stream_columns]
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(&column.value))
        {
            return Ok(ColumnRef::Table(index));
        }
        if self.window_tvf.is_some() {
            let name = column.value.to_ascii_lowercase();
            match name.as_str() {
                WINDOW_START => return Ok(ColumnRef::WindowStart),
                WINDOW_END => return Ok(ColumnRef::WindowEnd),
                WINDOW_TIME => return Ok(ColumnRef::WindowTime),
                _ => {}
            }
        }
        let known: Vec<&str> = self.table.columns.iter().map(|c| c.name.as_str()).collect();
        Err(EngineError::plan(
            format!(
                "unknown column '{}' (table '{}' has: {})",
                column.value,
                self.table.name,
                known.join(", ")
            ),
            column_pos,
        ))
    }

    /// Resolves a name against the dimension table of a join: `dim.col`, or a bare `col`
    /// that only the dimension table has (a bare name both tables have is ambiguous).
    /// Ok(None): the name is the stream's (or unknown), resolved by the caller.
    fn resolve_joined(
        &self,
        join: &JoinScope,
        parts: &[Ident],
        pos: Pos,
    ) -> Result<Option<ColumnRef>> {
        let (stream, dimension) = self.table.columns.split_at(join.offset);
        let find = |columns: &[crate::catalog::Column], name: &str| {
            columns
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case(name))
        };
        match parts {
            [qualifier, column] if qualifier.value.eq_ignore_ascii_case(&join.qualifier) => {
                match find(dimension, &column.value) {
                    Some(i) => Ok(Some(ColumnRef::Table(join.offset + i))),
                    None => {
                        let known: Vec<&str> =
                            dimension.iter().map(|c| c.name.as_str()).collect();
                        Err(EngineError::plan(
                            format!(
                                "unknown column '{}' (table '{}' has: {})",
                                column.value,
                                join.table_name,
                                known.join(", ")
                            ),
                            pos_of(column.span, pos),
                        ))
                    }
                }
            }
            [column] => match (find(stream, &column.value), find(dimension, &column.value)) {
                (Some(_), Some(_)) => Err(EngineError::plan(
                    format!(
                        "column '{}' is ambiguous: both '{}' and '{}' have it; write {}.{} or {}.{}",
                        column.value,
                        self.qualifier,
                        join.qualifier,
                        self.qualifier,
                        column.value,
                        join.qualifier,
                        column.value
                    ),
                    pos_of(column.span, pos),
                )),
                (None, Some(i)) => Ok(Some(ColumnRef::Table(join.offset + i))),
                _ => Ok(None),
            },
            _ => Ok(None),
        }
    }

    /// The number of columns of the stream (the probe side): all of `table` without a join.
    pub fn stream_columns(&self) -> usize {
        self.join
            .as_ref()
            .map_or(self.table.columns.len(), |j| j.offset)
    }

    /// `Expr::Column` for column `index` of the source table.
    pub fn column_expr(&self, index: usize) -> Expr {
        let column = &self.table.columns[index];
        Expr::Column {
            index,
            name: column.name.clone(),
            data_type: column.ty.to_arrow(),
        }
    }
}

/// Expressions over the source rows: WHERE, GROUP BY keys, aggregate arguments, and the
/// SELECT list of a query without aggregation.
pub(crate) struct SourceScope<'s, 'p> {
    pub source: &'s Source<'p>,
    /// The clause being planned, for messages ("WHERE").
    pub clause: &'static str,
    pub fallback: Pos,
}

impl Scope for SourceScope<'_, '_> {
    fn column(&mut self, parts: &[Ident], pos: Pos) -> Result<Expr> {
        match self.source.resolve(parts, pos)? {
            ColumnRef::Table(index) => Ok(self.source.column_expr(index)),
            ColumnRef::WindowStart | ColumnRef::WindowEnd | ColumnRef::WindowTime => {
                Err(EngineError::plan(
                    format!(
                        "{} is not available in {}: it exists only after GROUP BY window_start, window_end",
                        parts.last().map(|p| p.value.as_str()).unwrap_or(""),
                        self.clause
                    ),
                    pos,
                ))
            }
        }
    }

    fn clause(&self) -> &'static str {
        self.clause
    }

    fn fallback(&self) -> Pos {
        self.fallback
    }
}
