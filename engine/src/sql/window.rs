//! Windows, in both of Flink's forms:
//! - the window table function `FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), size [, offset]))`
//!   with `GROUP BY ..., window_start, window_end`;
//! - the group window `GROUP BY ..., TUMBLE(ts, size)` with `TUMBLE_START(ts, size)` /
//!   `TUMBLE_END(ts, size)` in the SELECT list.
//!
//! Both give the same [`WindowSpec`]. A new window kind (HOP, SESSION, CUMULATE) adds its
//! name to [`WindowFunction`], its arguments to [`window_kind`] and a `WindowKind` variant.

use sqlparser::ast::{Expr as AstExpr, Function, FunctionArgExpr, Spanned};

use super::dialect::TABLE_ARGUMENT_PREFIX;
use super::expr_planner::{call_of, plan_expr, Call};
use super::interval::interval_ms;
use super::pos_of;
use super::source::{lookup_table, Source, SourceScope};
use crate::catalog::TableDef;
use crate::error::{EngineError, Pos, Result};
use crate::plan::{Expr, Program, WindowKind, WindowSpec};

/// Column names a window table function adds.
pub(crate) const WINDOW_START: &str = "window_start";
pub(crate) const WINDOW_END: &str = "window_end";
pub(crate) const WINDOW_TIME: &str = "window_time";

/// The window functions spillway knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WindowFunction {
    Tumble,
    Hop,
    Session,
    Cumulate,
}

impl WindowFunction {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "TUMBLE" => WindowFunction::Tumble,
            "HOP" => WindowFunction::Hop,
            "SESSION" => WindowFunction::Session,
            "CUMULATE" => WindowFunction::Cumulate,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            WindowFunction::Tumble => "TUMBLE",
            WindowFunction::Hop => "HOP",
            WindowFunction::Session => "SESSION",
            WindowFunction::Cumulate => "CUMULATE",
        }
    }
}

/// `TUMBLE_START(...)` and friends (the group-window form's auxiliary functions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WindowBound {
    Start,
    End,
}

/// Recognises `<WINDOW>_START` / `<WINDOW>_END` / `<WINDOW>_ROWTIME` / `<WINDOW>_PROCTIME`.
/// Ok(None): not a window auxiliary function.
pub(crate) fn window_bound_of(
    name: &str,
    pos: Pos,
) -> Result<Option<(WindowFunction, WindowBound)>> {
    let Some((window, suffix)) = name.split_once('_') else {
        return Ok(None);
    };
    let Some(function) = WindowFunction::from_name(window) else {
        return Ok(None);
    };
    match suffix {
        "START" => Ok(Some((function, WindowBound::Start))),
        "END" => Ok(Some((function, WindowBound::End))),
        "ROWTIME" | "PROCTIME" => Err(EngineError::plan(
            format!("{name} is not supported yet; select {window}_START or {window}_END"),
            pos,
        )),
        _ => Ok(None),
    }
}

/// Parses the expression inside `FROM TABLE(...)`; returns the source table and window.
pub(crate) fn parse_window_tvf<'p>(
    expr: &AstExpr,
    program: &'p Program,
    fallback: Pos,
) -> Result<(&'p TableDef, WindowSpec)> {
    let pos = pos_of(expr.span(), fallback);
    let AstExpr::Function(function) = expr else {
        return Err(EngineError::plan(
            format!("FROM TABLE({expr}) is not supported; use TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL ...))"),
            pos,
        ));
    };
    let call = call_of(function, pos)?;
    let Some(window) = WindowFunction::from_name(&call.name) else {
        return Err(EngineError::plan(
            format!(
                "table function {} is not supported (supported: TUMBLE)",
                call.name
            ),
            call.pos,
        ));
    };
    check_plain_call(&call)?;
    let usage = "TUMBLE(TABLE t, DESCRIPTOR(ts), size [, offset])";
    let args = expr_args(&call, usage)?;
    let Some(table_arg) = args.first() else {
        return Err(argument_count_error(&call, usage));
    };
    let table = match table_arg {
        AstExpr::Prefixed { prefix, value } if prefix.value == TABLE_ARGUMENT_PREFIX => {
            match value.as_ref() {
                AstExpr::Identifier(name) => {
                    lookup_table(program, &name.value, pos_of(name.span, call.pos))?
                }
                other => {
                    return Err(EngineError::plan(
                        format!("qualified table names like {other} are not supported"),
                        pos_of(other.span(), call.pos),
                    ))
                }
            }
        }
        other => {
            return Err(EngineError::plan(
                format!(
                    "the first argument of {} must be TABLE name, found {other}",
                    call.name
                ),
                pos_of(other.span(), call.pos),
            ))
        }
    };
    let source = Source {
        table,
        qualifier: table.name.clone(),
        window_tvf: None,
        pos: call.pos,
    };
    let time_column = match args.get(1) {
        Some(AstExpr::Function(descriptor)) => {
            let descriptor_pos = pos_of(descriptor.span(), call.pos);
            let inner = call_of(descriptor, descriptor_pos)?;
            if inner.name != "DESCRIPTOR" {
                return Err(descriptor_error(&call, descriptor_pos));
            }
            let columns = expr_args(&inner, "DESCRIPTOR(ts)")?;
            let [column] = columns.as_slice() else {
                return Err(argument_count_error(&inner, "DESCRIPTOR(ts)"));
            };
            time_column_of(column, &source, descriptor_pos)?
        }
        Some(other) => return Err(descriptor_error(&call, pos_of(other.span(), call.pos))),
        None => return Err(argument_count_error(&call, usage)),
    };
    let kind = window_kind(window, &call, args.get(2..).unwrap_or(&[]), 2, usage)?;
    let offset_ms = match args.get(3) {
        Some(offset) if window == WindowFunction::Tumble => {
            interval_arg(offset, "offset", call.pos)?
        }
        _ => 0,
    };
    Ok((table, window_spec(kind, time_column, offset_ms)))
}

/// `TUMBLE(ts, size)` in GROUP BY. Ok(None): not a window function.
pub(crate) fn parse_group_window(
    function: &Function,
    source: &Source,
    fallback: Pos,
) -> Result<Option<WindowSpec>> {
    let pos = pos_of(function.span(), fallback);
    let call = call_of(function, pos)?;
    let Some(window) = WindowFunction::from_name(&call.name) else {
        return Ok(None);
    };
    check_plain_call(&call)?;
    let usage = "TUMBLE(ts, size)";
    let args = expr_args(&call, usage)?;
    let Some(time) = args.first() else {
        return Err(argument_count_error(&call, usage));
    };
    let time_column = time_column_of(time, source, call.pos)?;
    let kind = window_kind(window, &call, &args[1..], 1, usage)?;
    Ok(Some(window_spec(kind, time_column, 0)))
}

/// Whether `function` (TUMBLE_START(ts, size) ...) names exactly `spec`.
pub(crate) fn matches_group_window(
    function: &Function,
    window: WindowFunction,
    spec: &WindowSpec,
    source: &Source,
    fallback: Pos,
) -> Result<bool> {
    let pos = pos_of(function.span(), fallback);
    let call = call_of(function, pos)?;
    let args = expr_args(&call, "TUMBLE_START(ts, size)")?;
    let Some(time) = args.first() else {
        return Err(argument_count_error(&call, "TUMBLE_START(ts, size)"));
    };
    let time_column = time_column_of(time, source, call.pos)?;
    let Ok(kind) = window_kind(window, &call, &args[1..], 1, "TUMBLE_START(ts, size)") else {
        return Ok(false);
    };
    Ok(window_spec(kind, time_column, 0) == *spec)
}

/// The window kind from the arguments after the time column (the size, for TUMBLE).
/// `rest_max` is how many such arguments the form allows (TVF: size and offset).
fn window_kind(
    window: WindowFunction,
    call: &Call,
    rest: &[&AstExpr],
    rest_max: usize,
    usage: &str,
) -> Result<WindowKind> {
    match window {
        WindowFunction::Tumble => {
            if rest.is_empty() || rest.len() > rest_max {
                return Err(argument_count_error(call, usage));
            }
            let size_ms = interval_arg(rest[0], "size", call.pos)?;
            if size_ms <= 0 {
                return Err(EngineError::plan(
                    format!("the size of a {} window must be positive", window.name()),
                    pos_of(rest[0].span(), call.pos),
                ));
            }
            Ok(WindowKind::Tumble { size_ms })
        }
        WindowFunction::Hop | WindowFunction::Session | WindowFunction::Cumulate => {
            Err(EngineError::plan(
                format!(
                    "{} windows are not supported yet (supported: TUMBLE)",
                    window.name()
                ),
                call.pos,
            ))
        }
    }
}

fn window_spec(kind: WindowKind, time_column: usize, offset_ms: i64) -> WindowSpec {
    let offset_ms = match kind {
        WindowKind::Tumble { size_ms } => offset_ms.rem_euclid(size_ms),
    };
    WindowSpec {
        kind,
        time_column,
        offset_ms,
    }
}

/// The window's time column: a column of the source with the table's WATERMARK on it.
fn time_column_of(expr: &AstExpr, source: &Source, fallback: Pos) -> Result<usize> {
    let pos = pos_of(expr.span(), fallback);
    let mut scope = SourceScope {
        source,
        clause: "a window's time column",
        fallback: pos,
    };
    let Expr::Column { index, name, .. } = plan_expr(expr, &mut scope)? else {
        return Err(EngineError::plan(
            format!("a window's time column must be a column name, found {expr}"),
            pos,
        ));
    };
    let table = source.table;
    match table.watermark {
        None => Err(EngineError::plan(
            format!(
                "windows need event time: table '{}' declares no WATERMARK (add WATERMARK FOR {name} AS {name} - INTERVAL '5' SECOND)",
                table.name
            ),
            pos,
        )),
        Some(watermark) if watermark.column != index => Err(EngineError::plan(
            format!(
                "the window's time column must be '{}', the column the WATERMARK of table '{}' is declared on, not '{name}'",
                table.columns[watermark.column].name, table.name
            ),
            pos,
        )),
        Some(_) => Ok(index),
    }
}

fn interval_arg(expr: &AstExpr, what: &str, fallback: Pos) -> Result<i64> {
    let pos = pos_of(expr.span(), fallback);
    match expr {
        AstExpr::Interval(interval) => interval_ms(interval, pos),
        AstExpr::Nested(inner) => interval_arg(inner, what, pos),
        other => Err(EngineError::plan(
            format!(
                "the window {what} must be an INTERVAL, e.g. INTERVAL '1' MINUTE, found {other}"
            ),
            pos,
        )),
    }
}

/// Refuses DISTINCT inside window function calls.
fn check_plain_call(call: &Call) -> Result<()> {
    if call.distinct {
        return Err(EngineError::plan(
            format!("DISTINCT is not allowed in {}", call.name),
            call.pos,
        ));
    }
    Ok(())
}

/// The arguments as expressions (a `*` is an error).
fn expr_args<'a>(call: &Call<'a>, usage: &str) -> Result<Vec<&'a AstExpr>> {
    call.args
        .iter()
        .map(|arg| match arg {
            FunctionArgExpr::Expr(e) => Ok(e),
            _ => Err(EngineError::plan(
                format!("{} takes expressions as arguments: {usage}", call.name),
                call.pos,
            )),
        })
        .collect()
}

fn argument_count_error(call: &Call, usage: &str) -> EngineError {
    EngineError::plan(
        format!(
            "wrong number of arguments for {}: expected {usage}, found {} argument(s)",
            call.name,
            call.args.len()
        ),
        call.pos,
    )
}

fn descriptor_error(call: &Call, pos: Pos) -> EngineError {
    EngineError::plan(
        format!(
            "the second argument of {} must be DESCRIPTOR(time_column)",
            call.name
        ),
        pos,
    )
}
