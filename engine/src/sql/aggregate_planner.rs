//! GROUP BY, aggregate functions and HAVING: expressions of an aggregate query are planned
//! over the aggregation's output (group keys, `window_start`, `window_end`, aggregates; see
//! `crate::plan`), and every aggregate they use is collected once into the `Aggregation`.

use std::collections::HashSet;

use arrow::datatypes::{DataType, Schema};
use sqlparser::ast::{Expr as AstExpr, FunctionArgExpr, Ident, Spanned};

use super::explain::sql_type_name;
use super::expr_planner::{
    call_with_filter_of, plan_expr, unnest, Call, Scope, AGGREGATE_FUNCTIONS,
};
use super::pos_of;
use super::source::{ColumnRef, Source, SourceScope};
use super::types::{is_integer, numeric_rank, timestamp_type};
use super::window::{
    matches_group_window, parse_group_window, window_bound_of, WindowBound, WindowFunction,
    WINDOW_END, WINDOW_START,
};
use crate::error::{EngineError, Pos, Result};
use crate::plan::{AggCall, AggFunc, Aggregation, Expr, Literal, WindowSpec};

/// How the query declared its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WindowForm {
    /// `FROM TABLE(TUMBLE(...)) ... GROUP BY window_start, window_end`
    TableFunction,
    /// `GROUP BY TUMBLE(ts, size)` with `TUMBLE_START` / `TUMBLE_END`
    GroupBy,
}

/// A SELECT-list expression of an aggregate query, for naming the aggregation's columns.
pub(crate) struct NamedOutput<'a> {
    /// Planned over the aggregation output (before any cast to a sink type).
    pub expr: &'a Expr,
    pub alias: Option<&'a str>,
    /// Position in the SELECT list (Flink's `EXPR$n`).
    pub index: usize,
}

/// Plans the expressions of an aggregate query (a [`Scope`] over the aggregation output).
pub(crate) struct AggregatePlanner<'s, 'p> {
    source: &'s Source<'p>,
    /// None: an updating aggregate (no window; see [`AggregatePlanner::new`]).
    window: Option<(WindowSpec, WindowForm)>,
    group_keys: Vec<Expr>,
    aggregates: Vec<AggCall>,
    clause: &'static str,
    fallback: Pos,
}

impl<'s, 'p> AggregatePlanner<'s, 'p> {
    /// Reads the GROUP BY list: the window (either form) and the other group keys. Without
    /// a window the aggregation is an updating one, allowed only when `updating` (its
    /// input is append-only and final, as a ranked or aggregating join's output is).
    pub fn new(
        source: &'s Source<'p>,
        group_by: &[AstExpr],
        updating: bool,
        fallback: Pos,
    ) -> Result<Self> {
        let mut window: Option<(WindowSpec, WindowForm)> = None;
        let mut window_bounds_seen = (false, false);
        let mut group_keys: Vec<Expr> = Vec::new();
        let group_by_pos = group_by
            .first()
            .map(|e| pos_of(e.span(), fallback))
            .unwrap_or(fallback);
        for ast in group_by {
            let pos = pos_of(ast.span(), fallback);
            if let AstExpr::Function(function) = unnest(ast) {
                if let Some(spec) = parse_group_window(function, source, pos)? {
                    if source.window_tvf.is_some() {
                        return Err(EngineError::plan(
                            "GROUP BY TUMBLE(...) cannot be combined with FROM TABLE(TUMBLE(...)); group by window_start, window_end",
                            pos,
                        ));
                    }
                    if window.is_some() {
                        return Err(EngineError::plan(
                            "only one window per GROUP BY is supported",
                            pos,
                        ));
                    }
                    window = Some((spec, WindowForm::GroupBy));
                    continue;
                }
            }
            if source.window_tvf.is_some() {
                if let Some(column) = window_column(source, ast, pos) {
                    match column {
                        ColumnRef::WindowStart => window_bounds_seen.0 = true,
                        ColumnRef::WindowEnd => window_bounds_seen.1 = true,
                        _ => {
                            return Err(EngineError::plan(
                                "GROUP BY window_time is not supported yet; group by window_start, window_end",
                                pos,
                            ))
                        }
                    }
                    continue;
                }
            }
            let mut scope = SourceScope {
                source,
                clause: "GROUP BY",
                fallback: pos,
            };
            let key = plan_expr(ast, &mut scope)?;
            if !group_keys.contains(&key) {
                group_keys.push(key);
            }
        }
        if let Some(spec) = source.window_tvf {
            if window_bounds_seen != (true, true) {
                return Err(EngineError::plan(
                    "a query over FROM TABLE(TUMBLE(...)) must GROUP BY window_start, window_end",
                    group_by_pos,
                ));
            }
            window = Some((spec, WindowForm::TableFunction));
        }
        if window.is_none() && !updating {
            return Err(EngineError::plan(
                "not supported yet: GROUP BY needs a window (TUMBLE, HOP or CUMULATE); aggregates over a whole unbounded stream are not supported (except over a join's final results, as Nexmark q4's)",
                group_by_pos,
            ));
        }
        Ok(AggregatePlanner {
            source,
            window,
            group_keys,
            aggregates: Vec::new(),
            clause: "SELECT",
            fallback,
        })
    }

    /// The clause planned next ("SELECT", "HAVING"), for messages.
    pub fn set_clause(&mut self, clause: &'static str, fallback: Pos) {
        self.clause = clause;
        self.fallback = fallback;
    }

    /// The aggregation, its columns named after the SELECT list (alias, column name, or
    /// Flink's `EXPR$n`). Names are unique.
    pub fn finish(self, outputs: &[NamedOutput], having: Option<Expr>) -> Aggregation {
        let key_count = self.group_keys.len();
        let agg_base = key_count + self.window_columns();
        let select_len = outputs.len();
        let direct = |index: usize| {
            outputs
                .iter()
                .find(|o| matches!(o.expr, Expr::Column { index: i, .. } if *i == index))
        };
        let mut used: HashSet<String> = [WINDOW_START, WINDOW_END]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // Columns not selected directly are numbered after the SELECT list.
        let mut hidden = select_len;
        let mut next_hidden = |used: &HashSet<String>| loop {
            let name = format!("EXPR${hidden}");
            hidden += 1;
            if !used.contains(&name.to_ascii_lowercase()) {
                return name;
            }
        };
        let mut group_key_names = Vec::with_capacity(key_count);
        for (i, key) in self.group_keys.iter().enumerate() {
            let output = direct(i);
            let candidate = output
                .and_then(|o| o.alias.map(str::to_string))
                .or_else(|| match key {
                    Expr::Column { name, .. } => Some(name.clone()),
                    _ => None,
                })
                .or_else(|| output.map(|o| format!("EXPR${}", o.index)))
                .unwrap_or_else(|| next_hidden(&used));
            group_key_names.push(unique_name(candidate, &mut used));
        }
        let mut agg_names = Vec::with_capacity(self.aggregates.len());
        for j in 0..self.aggregates.len() {
            let output = direct(agg_base + j);
            let candidate = match output {
                Some(o) => match o.alias {
                    Some(alias) => alias.to_string(),
                    None => format!("EXPR${}", o.index),
                },
                None => next_hidden(&used),
            };
            agg_names.push(unique_name(candidate, &mut used));
        }
        Aggregation {
            window: self.window.map(|w| w.0),
            group_keys: self.group_keys,
            group_key_names,
            aggregates: self.aggregates,
            agg_names,
            having,
            top_n: None,
        }
    }

    /// `window_start` and `window_end` in the output: 2, or 0 without a window.
    fn window_columns(&self) -> usize {
        if self.window.is_some() {
            2
        } else {
            0
        }
    }

    fn key_column(&self, index: usize) -> Expr {
        Expr::Column {
            index,
            name: match &self.group_keys[index] {
                Expr::Column { name, .. } => name.clone(),
                _ => format!("EXPR${index}"),
            },
            data_type: self.group_keys[index].data_type(),
        }
    }

    fn bound_column(&self, bound: WindowBound) -> Expr {
        let (offset, name) = match bound {
            WindowBound::Start => (0, WINDOW_START),
            WindowBound::End => (1, WINDOW_END),
        };
        Expr::Column {
            index: self.group_keys.len() + offset,
            name: name.to_string(),
            data_type: timestamp_type(),
        }
    }

    /// An aggregate call: the argument (and FILTER condition) are planned over the source
    /// rows; FILTER is folded into the argument (see `AggFunc`).
    fn plan_aggregate(&mut self, call: &Call) -> Result<Expr> {
        let name = call.name.as_str();
        let func = match name {
            "COUNT" if call.distinct => AggFunc::CountDistinct,
            "COUNT" => AggFunc::Count,
            "SUM" => AggFunc::Sum,
            "AVG" => AggFunc::Avg,
            "MIN" => AggFunc::Min,
            "MAX" => AggFunc::Max,
            "FIRST_VALUE" => AggFunc::FirstValue,
            "LAST_VALUE" => AggFunc::LastValue,
            "STDDEV_POP" => AggFunc::StddevPop,
            "STDDEV_SAMP" => AggFunc::StddevSamp,
            "VAR_POP" => AggFunc::VarPop,
            "VAR_SAMP" => AggFunc::VarSamp,
            _ => AggFunc::ApproxCountDistinct,
        };
        // DISTINCT changes nothing for MIN, MAX and APPROX_COUNT_DISTINCT.
        let distinct_ok = matches!(
            func,
            AggFunc::CountDistinct | AggFunc::Min | AggFunc::Max | AggFunc::ApproxCountDistinct
        );
        if call.distinct && !distinct_ok {
            return Err(EngineError::plan(
                format!(
                    "{name}(DISTINCT ...) is not supported; of the DISTINCT aggregates only \
                     COUNT(DISTINCT ...) is (and MIN, MAX, APPROX_COUNT_DISTINCT, where DISTINCT \
                     changes nothing)"
                ),
                call.pos,
            ));
        }
        let arg = match call.args.as_slice() {
            [FunctionArgExpr::Wildcard] if func == AggFunc::Count => None,
            [FunctionArgExpr::Expr(e)] => {
                let mut scope = SourceScope {
                    source: self.source,
                    clause: "an aggregate function's argument",
                    fallback: call.pos,
                };
                Some(plan_expr(e, &mut scope)?)
            }
            [_] => {
                let distinct = if call.distinct { "DISTINCT " } else { "" };
                return Err(EngineError::plan(
                    format!("{name}({distinct}*) is not supported; only COUNT(*) takes *"),
                    call.pos,
                ));
            }
            args => {
                return Err(EngineError::plan(
                    format!("{name} takes exactly one argument, found {}", args.len()),
                    call.pos,
                ))
            }
        };
        // COUNT(1) counts rows like COUNT(*).
        let arg = match (func, arg) {
            (AggFunc::Count, Some(Expr::Literal(literal)))
                if !matches!(literal, Literal::Null(_)) =>
            {
                None
            }
            (_, arg) => arg,
        };
        let arg_type = arg.as_ref().map(Expr::data_type);
        let value_type = arg_type.as_ref().filter(|t| {
            numeric_rank(t).is_some()
                || matches!(t, DataType::Utf8 | DataType::Boolean)
                || *t == &timestamp_type()
        });
        let output_type = match (func, &arg_type) {
            (AggFunc::Count, _) => DataType::Int64,
            (AggFunc::Sum, Some(t)) if is_integer(t) => DataType::Int64,
            (
                AggFunc::Sum
                | AggFunc::Avg
                | AggFunc::StddevPop
                | AggFunc::StddevSamp
                | AggFunc::VarPop
                | AggFunc::VarSamp,
                Some(t),
            ) if numeric_rank(t).is_some() => DataType::Float64,
            (AggFunc::Min | AggFunc::Max, Some(t)) if *t != DataType::Null => t.clone(),
            (AggFunc::CountDistinct | AggFunc::ApproxCountDistinct, _) if value_type.is_some() => {
                DataType::Int64
            }
            (AggFunc::FirstValue | AggFunc::LastValue, _) if value_type.is_some() => {
                arg_type.clone().unwrap_or(DataType::Null)
            }
            (_, t) => {
                let found = t.as_ref().map(sql_type_name).unwrap_or_default();
                let needs = match func {
                    AggFunc::Sum
                    | AggFunc::Avg
                    | AggFunc::StddevPop
                    | AggFunc::StddevSamp
                    | AggFunc::VarPop
                    | AggFunc::VarSamp => "a numeric argument",
                    AggFunc::Min | AggFunc::Max => "a typed argument (use CAST for NULL)",
                    _ => "a numeric, STRING, BOOLEAN or TIMESTAMP argument (use CAST for NULL)",
                };
                return Err(EngineError::plan(
                    format!("{name} needs {needs}, found {found}"),
                    call.pos,
                ));
            }
        };
        let arg = match call.filter {
            None => arg,
            Some(condition) => Some(self.filtered_arg(name, condition, arg, call.pos)?),
        };
        let agg = AggCall {
            func,
            arg,
            output_type: output_type.clone(),
        };
        let j = match self.aggregates.iter().position(|a| *a == agg) {
            Some(j) => j,
            None => {
                self.aggregates.push(agg);
                self.aggregates.len() - 1
            }
        };
        Ok(Expr::Column {
            index: self.group_keys.len() + self.window_columns() + j,
            name: format!("{name}(...)"),
            data_type: output_type,
        })
    }

    /// `CASE WHEN condition THEN arg END` (`arg` TRUE for COUNT(*)): rows the FILTER
    /// refuses become NULL, which every aggregate skips.
    fn filtered_arg(
        &self,
        name: &str,
        condition: &AstExpr,
        arg: Option<Expr>,
        pos: Pos,
    ) -> Result<Expr> {
        let condition_pos = pos_of(condition.span(), pos);
        let mut scope = SourceScope {
            source: self.source,
            clause: "FILTER (WHERE ...)",
            fallback: condition_pos,
        };
        let condition = plan_expr(condition, &mut scope)?;
        let condition_type = condition.data_type();
        if !matches!(condition_type, DataType::Boolean | DataType::Null) {
            return Err(EngineError::plan(
                format!(
                    "the FILTER (WHERE ...) of {name} must be a BOOLEAN condition, found {}",
                    sql_type_name(&condition_type)
                ),
                condition_pos,
            ));
        }
        let value = arg.unwrap_or(Expr::Literal(Literal::Boolean(true)));
        let data_type = value.data_type();
        Ok(Expr::Case {
            branches: vec![(condition, value)],
            otherwise: None,
            data_type,
        })
    }

    /// The group key `ast` is (planned over the source), if any.
    fn match_group_key(&self, ast: &AstExpr, pos: Pos) -> Option<usize> {
        if self.group_keys.is_empty() {
            return None;
        }
        let mut scope = SourceScope {
            source: self.source,
            clause: self.clause,
            fallback: pos,
        };
        let planned = plan_expr(ast, &mut scope).ok()?;
        self.group_keys.iter().position(|k| *k == planned)
    }
}

/// `window_start` / `window_end` / `window_time` of a window table function, if `ast` names one.
fn window_column(source: &Source, ast: &AstExpr, pos: Pos) -> Option<ColumnRef> {
    let parts: &[Ident] = match unnest(ast) {
        AstExpr::Identifier(ident) => std::slice::from_ref(ident),
        AstExpr::CompoundIdentifier(parts) => parts,
        _ => return None,
    };
    match source.resolve(parts, pos).ok()? {
        ColumnRef::Table(_) => None,
        other => Some(other),
    }
}

impl Scope for AggregatePlanner<'_, '_> {
    fn column(&mut self, parts: &[Ident], pos: Pos) -> Result<Expr> {
        match self.source.resolve(parts, pos)? {
            ColumnRef::Table(index) => {
                let key = self
                    .group_keys
                    .iter()
                    .position(|k| matches!(k, Expr::Column { index: i, .. } if *i == index));
                match key {
                    Some(k) => Ok(self.key_column(k)),
                    None => Err(EngineError::plan(
                        format!(
                            "column '{}' in {} must be in GROUP BY or inside an aggregate function",
                            self.source.table.columns[index].name, self.clause
                        ),
                        pos,
                    )),
                }
            }
            ColumnRef::WindowStart => Ok(self.bound_column(WindowBound::Start)),
            ColumnRef::WindowEnd => Ok(self.bound_column(WindowBound::End)),
            ColumnRef::WindowTime => Err(EngineError::plan(
                "window_time is not supported yet; select window_start or window_end",
                pos,
            )),
        }
    }

    fn intercept(&mut self, ast: &AstExpr, pos: Pos) -> Result<Option<Expr>> {
        match ast {
            AstExpr::Value(_)
            | AstExpr::TypedString(_)
            | AstExpr::Interval(_)
            | AstExpr::Identifier(_)
            | AstExpr::CompoundIdentifier(_)
            | AstExpr::Nested(_) => return Ok(None),
            AstExpr::Function(function) => {
                let call = call_with_filter_of(function, pos)?;
                let name = call.name.as_str();
                if AGGREGATE_FUNCTIONS.contains(&name) {
                    return self.plan_aggregate(&call).map(Some);
                }
                if call.filter.is_some() {
                    return Err(EngineError::plan(
                        format!(
                            "{name}(...) FILTER (WHERE ...) applies only to aggregate functions"
                        ),
                        pos,
                    ));
                }
                if let Some((window, bound)) = window_bound_of(name, pos)? {
                    let Some((spec, form)) = self.window else {
                        return Err(EngineError::plan(
                            format!(
                                "{name} needs a window in GROUP BY, and this query groups by none"
                            ),
                            pos,
                        ));
                    };
                    if form == WindowForm::TableFunction {
                        return Err(EngineError::plan(
                            format!("{name} belongs to GROUP BY {}(...); over FROM TABLE({}(...)) select window_start / window_end", window.name(), window.name()),
                            pos,
                        ));
                    }
                    if !matches_group_window(function, window, &spec, self.source, pos)? {
                        return Err(EngineError::plan(
                            format!("{function} must match the GROUP BY window exactly (same time column and size)"),
                            pos,
                        ));
                    }
                    return Ok(Some(self.bound_column(bound)));
                }
                if let Some(window) = WindowFunction::from_name(name) {
                    if matches!(window, WindowFunction::Tumble | WindowFunction::Hop) {
                        return Err(EngineError::plan(
                            format!("{name}(...) is only allowed in GROUP BY; select {name}_START(...) or {name}_END(...)"),
                            pos,
                        ));
                    }
                }
            }
            _ => {}
        }
        Ok(self.match_group_key(ast, pos).map(|k| self.key_column(k)))
    }

    fn clause(&self) -> &'static str {
        self.clause
    }

    fn fallback(&self) -> Pos {
        self.fallback
    }
}

/// `candidate`, or `EXPR$n` for the first free n when it is taken (case-insensitive).
fn unique_name(candidate: String, used: &mut HashSet<String>) -> String {
    let mut name = candidate;
    let mut n = 0;
    while used.contains(&name.to_ascii_lowercase()) {
        name = format!("EXPR${n}");
        n += 1;
    }
    used.insert(name.to_ascii_lowercase());
    name
}

/// Gives every `Column` in `expr` the name of its field in `schema`.
pub(crate) fn rename_columns(expr: &mut Expr, schema: &Schema) {
    match expr {
        Expr::Column { index, name, .. } => {
            if let Some(field) = schema.fields().get(*index) {
                *name = field.name().clone();
            }
        }
        Expr::Literal(_) => {}
        Expr::Binary { left, right, .. } => {
            rename_columns(left, schema);
            rename_columns(right, schema);
        }
        Expr::Unary { expr, .. } | Expr::IsNull { expr, .. } | Expr::Cast { expr, .. } => {
            rename_columns(expr, schema)
        }
        Expr::Case {
            branches,
            otherwise,
            ..
        } => {
            for (condition, value) in branches {
                rename_columns(condition, schema);
                rename_columns(value, schema);
            }
            if let Some(o) = otherwise {
                rename_columns(o, schema);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{aggregation, assert_error};
    use super::*;

    const FROM: &str = "FROM trades GROUP BY symbol, TUMBLE(ts, INTERVAL '1' SECOND)";

    #[test]
    fn new_aggregates_plan_with_their_output_types() {
        let agg = aggregation(&format!(
            "SELECT symbol, COUNT(DISTINCT volume), FIRST_VALUE(price), LAST_VALUE(symbol), \
             STDDEV_POP(volume), STDDEV_SAMP(price), VAR_POP(price), VAR_SAMP(volume), \
             APPROX_COUNT_DISTINCT(symbol), MAX(DISTINCT price) {FROM}"
        ));
        let got: Vec<(AggFunc, DataType)> = agg
            .aggregates
            .iter()
            .map(|a| (a.func, a.output_type.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (AggFunc::CountDistinct, DataType::Int64),
                (AggFunc::FirstValue, DataType::Float64),
                (AggFunc::LastValue, DataType::Utf8),
                (AggFunc::StddevPop, DataType::Float64),
                (AggFunc::StddevSamp, DataType::Float64),
                (AggFunc::VarPop, DataType::Float64),
                (AggFunc::VarSamp, DataType::Float64),
                (AggFunc::ApproxCountDistinct, DataType::Int64),
                (AggFunc::Max, DataType::Float64),
            ]
        );
        let schema = agg.output_schema();
        assert!(
            !schema.field(3).is_nullable(),
            "COUNT(DISTINCT) is never NULL"
        );
        assert!(
            schema.field(4).is_nullable(),
            "FIRST_VALUE of no values is NULL"
        );
    }

    #[test]
    fn filter_folds_into_the_argument() {
        let agg = aggregation(&format!(
            "SELECT symbol, COUNT(*) FILTER (WHERE price > 10), SUM(volume) FILTER (WHERE volume > 0), \
             SUM(volume) {FROM} HAVING COUNT(*) FILTER (WHERE price > 10) > 1"
        ));
        assert_eq!(
            agg.aggregates.len(),
            3,
            "the HAVING aggregate is the first one again"
        );
        let count = &agg.aggregates[0];
        assert_eq!(count.func, AggFunc::Count);
        match &count.arg {
            Some(Expr::Case {
                branches,
                otherwise: None,
                data_type: DataType::Boolean,
            }) => {
                assert_eq!(branches.len(), 1);
                assert_eq!(branches[0].1, Expr::Literal(Literal::Boolean(true)));
            }
            other => panic!("COUNT(*) FILTER should count a CASE, got {other:?}"),
        }
        match &agg.aggregates[1].arg {
            Some(Expr::Case { data_type, .. }) => assert_eq!(data_type, &DataType::Int64),
            other => panic!("SUM FILTER should sum a CASE, got {other:?}"),
        }
        assert!(matches!(agg.aggregates[2].arg, Some(Expr::Column { .. })));
        assert!(agg.having.is_some());
    }

    #[test]
    fn errors_name_the_problem_and_its_place() {
        assert_error(
            &format!("SELECT symbol,\n  STDDEV_POP(symbol) {FROM}"),
            "STDDEV_POP needs a numeric argument, found STRING",
            "STDDEV_POP",
        );
        assert_error(
            &format!("SELECT symbol, SUM(DISTINCT volume) {FROM}"),
            "SUM(DISTINCT ...) is not supported",
            "SUM",
        );
        assert_error(
            &format!("SELECT symbol, COUNT(DISTINCT *) {FROM}"),
            "COUNT(DISTINCT *) is not supported",
            "COUNT",
        );
        assert_error(
            &format!("SELECT symbol, FIRST_VALUE(NULL) {FROM}"),
            "FIRST_VALUE needs a numeric, STRING, BOOLEAN or TIMESTAMP argument",
            "FIRST_VALUE",
        );
        assert_error(
            &format!("SELECT symbol, SUM(volume) FILTER (WHERE volume + 1) {FROM}"),
            "must be a BOOLEAN condition, found BIGINT",
            "volume + 1",
        );
        assert_error(
            &format!("SELECT symbol, COUNT(*) FILTER (WHERE SUM(volume) > 1) {FROM}"),
            "aggregate function SUM is not allowed in FILTER (WHERE ...)",
            "SUM(volume) > 1",
        );
        assert_error(
            &format!("SELECT symbol, TUMBLE_END(ts, INTERVAL '1' SECOND) FILTER (WHERE volume > 1) {FROM}"),
            "applies only to aggregate functions",
            "TUMBLE_END",
        );
        assert_error(
            &format!("SELECT symbol, VAR_SAMP(volume, price) {FROM}"),
            "VAR_SAMP takes exactly one argument, found 2",
            "VAR_SAMP",
        );
    }
}
