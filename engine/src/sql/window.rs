//! Windows, in both of Flink's forms (and Flink's argument order):
//! - the window table functions `FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), size [, offset]))`,
//!   `TABLE(HOP(TABLE t, DESCRIPTOR(ts), slide, size [, offset]))` and
//!   `TABLE(CUMULATE(TABLE t, DESCRIPTOR(ts), step, max_size [, offset]))`, with
//!   `GROUP BY ..., window_start, window_end`;
//! - the group windows `GROUP BY ..., TUMBLE(ts, size)` / `HOP(ts, slide, size)` with
//!   `TUMBLE_START(ts, size)` / `HOP_END(ts, slide, size)` ... in the SELECT list (Flink has
//!   no group-window form of CUMULATE);
//! - SESSION in both forms: `TABLE(SESSION(TABLE t, DESCRIPTOR(ts), gap))` with `GROUP BY
//!   key, window_start, window_end`, and `GROUP BY key, SESSION(ts, gap)` with
//!   `SESSION_START(ts, gap)` / `SESSION_END(ts, gap)`. Sessions have no panes (see
//!   `crate::session`); Flink's `PARTITION BY` inside the table function is not supported
//!   (the GROUP BY keys partition the sessions).
//!
//! Both give the same [`WindowSpec`]. HOP and CUMULATE run on shared panes of the slide or
//! step (see `window_assigner.rs`), so, as in Flink, a HOP size must be a multiple of its
//! slide and a CUMULATE max size a multiple of its step, and a window may span at most
//! [`WINDOW_PANES_MAX`] panes. A new window kind (SESSION) adds its name to
//! [`WindowFunction`], its arguments to [`window_kind`] and a `WindowKind` variant.

use sqlparser::ast::{Expr as AstExpr, Function, FunctionArgExpr, Spanned};

use super::dialect::TABLE_ARGUMENT_PREFIX;
use super::expr_planner::{call_of, plan_expr, Call};
use super::interval::{explain_interval, interval_ms};
use super::pos_of;
use super::source::{lookup_table, Source, SourceScope};
use crate::catalog::TableDef;
use crate::error::{EngineError, Pos, Result};
use crate::plan::{Expr, Program, WindowKind, WindowSpec};
use crate::window_assigner::WINDOW_PANES_MAX;

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

    /// The window table function's arguments.
    fn table_usage(self) -> &'static str {
        match self {
            WindowFunction::Tumble => "TUMBLE(TABLE t, DESCRIPTOR(ts), size [, offset])",
            WindowFunction::Hop => "HOP(TABLE t, DESCRIPTOR(ts), slide, size [, offset])",
            WindowFunction::Cumulate => {
                "CUMULATE(TABLE t, DESCRIPTOR(ts), step, max_size [, offset])"
            }
            WindowFunction::Session => "SESSION(TABLE t, DESCRIPTOR(ts), gap)",
        }
    }

    /// The group window's arguments.
    fn group_usage(self) -> &'static str {
        match self {
            WindowFunction::Tumble => "TUMBLE(ts, size)",
            WindowFunction::Hop => "HOP(ts, slide, size)",
            WindowFunction::Cumulate => "CUMULATE(ts, step, max_size)",
            WindowFunction::Session => "SESSION(ts, gap)",
        }
    }

    /// The names of the lengths after the time column, in order.
    fn length_names(self) -> &'static [&'static str] {
        match self {
            WindowFunction::Tumble => &["size"],
            WindowFunction::Hop => &["slide", "size"],
            WindowFunction::Cumulate => &["step", "max size"],
            WindowFunction::Session => &["gap"],
        }
    }
}

/// The window functions spillway runs, for messages.
const SUPPORTED: &str = "TUMBLE, HOP, CUMULATE, SESSION";

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
            format!("FROM TABLE({expr}) is not supported; use TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL ...)) (or HOP, CUMULATE, SESSION)"),
            pos,
        ));
    };
    let call = call_of(function, pos)?;
    let Some(window) = WindowFunction::from_name(&call.name) else {
        return Err(EngineError::plan(
            format!(
                "table function {} is not supported (supported: {SUPPORTED})",
                call.name
            ),
            call.pos,
        ));
    };
    check_plain_call(&call)?;
    let usage = window.table_usage();
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
        join: None,
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
    let (kind, offset_ms) = window_kind(window, &call, args.get(2..).unwrap_or(&[]), true, usage)?;
    check_session_time(kind, time_column, table, call.pos)?;
    Ok((table, window_spec(kind, time_column, offset_ms)))
}

/// `TUMBLE(ts, size)` or `HOP(ts, slide, size)` in GROUP BY. Ok(None): not a window function.
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
    if window == WindowFunction::Cumulate {
        return Err(EngineError::plan(
            "CUMULATE has no group-window form (neither in Flink); use FROM TABLE(CUMULATE(TABLE t, DESCRIPTOR(ts), step, max_size)) and GROUP BY window_start, window_end",
            call.pos,
        ));
    }
    check_plain_call(&call)?;
    let usage = window.group_usage();
    let args = expr_args(&call, usage)?;
    let Some(time) = args.first() else {
        return Err(argument_count_error(&call, usage));
    };
    let time_column = time_column_of(time, source, call.pos)?;
    let (kind, _) = window_kind(window, &call, &args[1..], false, usage)?;
    check_session_time(kind, time_column, source.table, call.pos)?;
    Ok(Some(window_spec(kind, time_column, 0)))
}

/// Whether `function` (`TUMBLE_START(ts, size)`, `HOP_END(ts, slide, size)` ...) names
/// exactly `spec`.
pub(crate) fn matches_group_window(
    function: &Function,
    window: WindowFunction,
    spec: &WindowSpec,
    source: &Source,
    fallback: Pos,
) -> Result<bool> {
    let pos = pos_of(function.span(), fallback);
    let call = call_of(function, pos)?;
    let usage = format!(
        "{}_START{}",
        window.name(),
        &window.group_usage()[window.name().len()..]
    );
    let args = expr_args(&call, &usage)?;
    let Some(time) = args.first() else {
        return Err(argument_count_error(&call, &usage));
    };
    let time_column = time_column_of(time, source, call.pos)?;
    let Ok((kind, _)) = window_kind(window, &call, &args[1..], false, &usage) else {
        return Ok(false);
    };
    Ok(window_spec(kind, time_column, 0) == *spec)
}

/// The window kind and offset (0 when absent) from the arguments after the time column
/// (TUMBLE: size; HOP: slide, size; CUMULATE: step, max size; SESSION: gap; then the offset
/// when `with_offset`, for the table function form; SESSION has none).
fn window_kind(
    window: WindowFunction,
    call: &Call,
    rest: &[&AstExpr],
    with_offset: bool,
    usage: &str,
) -> Result<(WindowKind, i64)> {
    let names = window.length_names();
    let with_offset = with_offset && window != WindowFunction::Session;
    if rest.len() < names.len() || rest.len() > names.len() + usize::from(with_offset) {
        return Err(argument_count_error(call, usage));
    }
    let mut lengths = [0i64; 2];
    for (i, name) in names.iter().enumerate() {
        let ms = interval_arg(rest[i], name, call.pos)?;
        if ms <= 0 {
            return Err(EngineError::plan(
                format!(
                    "the {name} of a {} window must be positive, found {}",
                    window.name(),
                    explain_interval(ms)
                ),
                pos_of(rest[i].span(), call.pos),
            ));
        }
        lengths[i] = ms;
    }
    let offset_ms = match rest.get(names.len()) {
        Some(offset) => interval_arg(offset, "offset", call.pos)?,
        None => 0,
    };
    let kind = match window {
        WindowFunction::Tumble => WindowKind::Tumble {
            size_ms: lengths[0],
        },
        WindowFunction::Hop => WindowKind::Hop {
            slide_ms: lengths[0],
            size_ms: lengths[1],
        },
        WindowFunction::Cumulate => WindowKind::Cumulate {
            step_ms: lengths[0],
            max_size_ms: lengths[1],
        },
        WindowFunction::Session => WindowKind::Session { gap_ms: lengths[0] },
    };
    if names.len() == 2 {
        check_panes(window, kind, rest[1], call.pos)?;
    }
    Ok((kind, offset_ms))
}

/// HOP and CUMULATE: the size must be a multiple of the pane (slide, step), and a window
/// may span at most [`WINDOW_PANES_MAX`] panes.
fn check_panes(
    window: WindowFunction,
    kind: WindowKind,
    size_arg: &AstExpr,
    fallback: Pos,
) -> Result<()> {
    let (pane, size) = (kind.pane_ms(), kind.size_ms());
    let [pane_name, size_name] = window.length_names() else {
        return Ok(());
    };
    let pos = pos_of(size_arg.span(), fallback);
    if size % pane != 0 {
        return Err(EngineError::plan(
            format!(
                "the {size_name} of a {} window ({}) must be a multiple of its {pane_name} ({}): \
                 like Flink, spillway computes these windows from shared panes one {pane_name} long",
                window.name(),
                explain_interval(size),
                explain_interval(pane)
            ),
            pos,
        ));
    }
    let panes = size / pane;
    if panes > WINDOW_PANES_MAX {
        return Err(EngineError::plan(
            format!(
                "a {} window of {size_name} {} and {pane_name} {} spans {panes} panes, over \
                 window_panes_max = {WINDOW_PANES_MAX} (each window merges its panes when it \
                 fires); use a larger {pane_name}",
                window.name(),
                explain_interval(size),
                explain_interval(pane)
            ),
            pos,
        ));
    }
    Ok(())
}

/// The spec with its offset normalised to the window grid (see `WindowSpec::offset_ms`).
fn window_spec(kind: WindowKind, time_column: usize, offset_ms: i64) -> WindowSpec {
    let grid_ms = match kind {
        WindowKind::Tumble { size_ms } => size_ms,
        WindowKind::Hop { slide_ms, .. } => slide_ms,
        WindowKind::Cumulate { max_size_ms, .. } => max_size_ms,
        WindowKind::Session { .. } => 1,
    };
    WindowSpec {
        kind,
        time_column,
        offset_ms: offset_ms.rem_euclid(grid_ms),
    }
}

/// The window's time column: the source column the table's WATERMARK is declared on (event
/// time), or its processing-time column `name AS PROCTIME()` (the wall clock, see
/// `crate::proctime`).
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
    if table.proctime_column() == Some(index) {
        return Ok(index);
    }
    let proctime = table
        .proctime_column()
        .map(|p| format!(" or its processing-time column '{}'", table.columns[p].name))
        .unwrap_or_default();
    match table.watermark {
        None if proctime.is_empty() => Err(EngineError::plan(
            format!(
                "windows need event time or processing time: table '{}' declares no WATERMARK (add WATERMARK FOR {name} AS {name} - INTERVAL '5' SECOND) and no processing-time column (add p_time AS PROCTIME())",
                table.name
            ),
            pos,
        )),
        None => Err(EngineError::plan(
            format!(
                "the window's time column must be a time attribute of table '{}': it declares no WATERMARK, so use{}, not '{name}'",
                table.name,
                proctime.replacen(" or", "", 1)
            ),
            pos,
        )),
        Some(watermark) if watermark.column != index => Err(EngineError::plan(
            format!(
                "the window's time column must be '{}', the column the WATERMARK of table '{}' is declared on{proctime}, not '{name}'",
                table.columns[watermark.column].name, table.name
            ),
            pos,
        )),
        Some(_) => Ok(index),
    }
}

/// Refuses SESSION windows over a processing-time column (not supported yet).
fn check_session_time(
    kind: WindowKind,
    time_column: usize,
    table: &TableDef,
    pos: Pos,
) -> Result<()> {
    if kind.session_gap_ms().is_some() && table.proctime_column() == Some(time_column) {
        return Err(EngineError::plan(
            format!(
                "SESSION windows over the processing-time column '{}' are not supported yet; use TUMBLE, HOP or CUMULATE, or a SESSION over an event-time column",
                table.columns[time_column].name
            ),
            pos,
        ));
    }
    Ok(())
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

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
