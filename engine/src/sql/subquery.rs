//! Subqueries in FROM: `FROM (SELECT ...) [AS] s`.
//!
//! - A subquery that ranks with `ROW_NUMBER() OVER (PARTITION BY window_start, window_end
//!   ORDER BY ...)`, filtered outside by `rn <= N`, and a JOIN of a subquery with its own
//!   per-window MAX (or MIN) are per-window top-N queries (`window_topn.rs`).
//! - Any other subquery is flattened: the outer query's names resolve to the subquery's
//!   SELECT list, the outer WHERE is added to the subquery's WHERE (or, over an aggregate
//!   subquery, to its HAVING: a post-filter of the windows' results), and the outer SELECT
//!   list is planned over the subquery's columns. Aggregating a subquery's result is refused
//!   with a message naming the supported forms.

use sqlparser::ast::{
    Expr as AstExpr, GroupByExpr, Ident, Select, SelectItem, Spanned, TableAlias, TableFactor,
};

use super::expr_planner::{contains_aggregate, plan_expr, unnest, Scope};
use super::planner::{plan_query, require_boolean, PlannedQuery, SelectOutput};
use super::pos_of;
use super::window_topn;
use crate::error::{EngineError, Pos, Result};
use crate::plan::{BinaryOp, Expr, Program};

/// One FROM item whose columns are planned expressions (a subquery, or one side of a
/// per-window top-N join).
pub(super) struct Side {
    /// The alias (or table name) that `q.col` may be qualified by; None: no alias.
    pub qualifier: Option<String>,
    /// Column name -> its expression over the query's output (or source) schema.
    pub columns: Vec<(String, Expr)>,
}

/// Names resolve to the columns of one or more [`Side`]s.
pub(super) struct DerivedScope<'a> {
    pub sides: &'a [Side],
    pub clause: &'static str,
    pub fallback: Pos,
}

impl DerivedScope<'_> {
    /// The side index and column expression `parts` names, if any (errors: unknown
    /// qualifier, ambiguous name).
    pub fn find(&self, parts: &[Ident], pos: Pos) -> Result<Option<(usize, Expr)>> {
        let (qualifier, column) = match parts {
            [c] => (None, c),
            [q, c] => (Some(q), c),
            _ => {
                let text: Vec<&str> = parts.iter().map(|p| p.value.as_str()).collect();
                return Err(EngineError::plan(
                    format!(
                        "'{}': only `column` or `alias.column` names are supported",
                        text.join(".")
                    ),
                    pos,
                ));
            }
        };
        let mut found: Option<(usize, Expr)> = None;
        let mut qualifier_known = qualifier.is_none();
        for (i, side) in self.sides.iter().enumerate() {
            if let Some(q) = qualifier {
                match &side.qualifier {
                    Some(sq) if sq.eq_ignore_ascii_case(&q.value) => qualifier_known = true,
                    _ => continue,
                }
            }
            let Some((_, e)) = side
                .columns
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(&column.value))
            else {
                continue;
            };
            if found.is_some() {
                return Err(EngineError::plan(
                    format!(
                        "column '{}' is ambiguous: both sides of the FROM clause have it; qualify it",
                        column.value
                    ),
                    pos_of(column.span, pos),
                ));
            }
            found = Some((i, e.clone()));
        }
        if !qualifier_known {
            let names: Vec<&str> = self
                .sides
                .iter()
                .filter_map(|s| s.qualifier.as_deref())
                .collect();
            return Err(EngineError::plan(
                format!(
                    "unknown alias '{}' (the FROM clause names: {})",
                    qualifier.map_or("", |q| q.value.as_str()),
                    names.join(", ")
                ),
                pos,
            ));
        }
        Ok(found)
    }

    fn known_columns(&self) -> String {
        let all: Vec<&str> = self
            .sides
            .iter()
            .flat_map(|s| s.columns.iter().map(|(n, _)| n.as_str()))
            .collect();
        all.join(", ")
    }
}

impl Scope for DerivedScope<'_> {
    fn column(&mut self, parts: &[Ident], pos: Pos) -> Result<Expr> {
        match self.find(parts, pos)? {
            Some((_, e)) => Ok(e),
            None => {
                let text: Vec<&str> = parts.iter().map(|p| p.value.as_str()).collect();
                Err(EngineError::plan(
                    format!(
                        "unknown column '{}' (the subquery has: {})",
                        text.join("."),
                        self.known_columns()
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

/// Plans a query whose FROM holds a subquery; Ok(None) when it holds none.
pub(super) fn plan_derived(
    select: &Select,
    program: &Program,
    pos: Pos,
) -> Result<Option<PlannedQuery>> {
    let Some(first) = select.from.first() else {
        return Ok(None);
    };
    let is_derived = |f: &TableFactor| matches!(f, TableFactor::Derived { .. });
    if !is_derived(&first.relation) && !first.joins.iter().any(|j| is_derived(&j.relation)) {
        return Ok(None);
    }
    if let Some(second) = select.from.get(1) {
        return Err(EngineError::plan(
            "FROM a, b is not supported; write a JOIN ... ON",
            pos_of(second.span(), pos),
        ));
    }
    if !first.joins.is_empty() {
        let planned = super::window_topn_join::plan_max_joined_back(select, program, pos)?;
        return refuse_lateness(planned, program, pos).map(Some);
    }
    let TableFactor::Derived {
        lateral,
        subquery,
        alias,
        ..
    } = &first.relation
    else {
        return Ok(None);
    };
    let from_pos = pos_of(first.relation.span(), pos);
    if *lateral {
        return Err(EngineError::plan(
            "LATERAL subqueries are not supported",
            from_pos,
        ));
    }
    let qualifier = alias_name(alias.as_ref(), from_pos)?;
    if let Some(ranked) = window_topn::ranked_subquery(subquery, program, from_pos)? {
        let planned = window_topn::plan_ranked_outer(select, ranked, qualifier, pos)?;
        return refuse_lateness(planned, program, pos).map(Some);
    }
    let inner = plan_query(subquery, program, from_pos)?;
    flatten(select, inner, qualifier, pos).map(Some)
}

/// Refuses a per-window top-N over a source with allowed lateness: a late event could
/// change which rows are the best, and withdrawing the rows that drop out is not built.
fn refuse_lateness(planned: PlannedQuery, program: &Program, pos: Pos) -> Result<PlannedQuery> {
    let lateness = program
        .table(&planned.source)
        .and_then(|t| t.options.get("allowed-lateness"))
        .filter(|v| !v.trim().starts_with('0'));
    if let Some(v) = lateness {
        return Err(EngineError::plan(
            format!(
                "not supported yet: a per-window top-N over a source with 'allowed-lateness' =                  '{v}' (a late event may change which rows are the best, and withdrawing rows                  that drop out is not built); remove the option or raise the watermark bound"
            ),
            pos,
        ));
    }
    Ok(planned)
}

/// The alias of a FROM item (column aliases refused).
pub(super) fn alias_name(alias: Option<&TableAlias>, pos: Pos) -> Result<Option<String>> {
    match alias {
        Some(a) if !a.columns.is_empty() => Err(EngineError::plan(
            "column aliases on a subquery (AS s(a, b)) are not supported; alias the columns inside it",
            pos_of(a.name.span, pos),
        )),
        Some(a) => Ok(Some(a.name.value.clone())),
        None => Ok(None),
    }
}

/// Refuses GROUP BY, HAVING and aggregates in a query over a subquery.
pub(super) fn refuse_outer_aggregate(select: &Select, pos: Pos) -> Result<()> {
    let grouped = !matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty());
    let aggregates = select.projection.iter().any(|item| match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
            contains_aggregate(e)
        }
        _ => false,
    });
    if grouped || aggregates || select.having.is_some() {
        return Err(EngineError::plan(
            "not supported yet: aggregating the result of a subquery in FROM; merge the \
             subquery into the aggregate query (the supported subqueries are projections and \
             filters, per-window top-N with ROW_NUMBER() OVER (PARTITION BY window_start, \
             window_end ORDER BY ...), and a per-window MAX joined back)",
            pos,
        ));
    }
    Ok(())
}

/// The outer SELECT list over `sides` (`*` expands every side's columns, `q.*` one side's).
pub(super) fn plan_outputs(select: &Select, sides: &[Side], pos: Pos) -> Result<Vec<SelectOutput>> {
    let mut scope = DerivedScope {
        sides,
        clause: "SELECT",
        fallback: pos,
    };
    let mut outputs = Vec::new();
    for item in &select.projection {
        let item_pos = pos_of(item.span(), pos);
        let (ast, alias) = match item {
            SelectItem::UnnamedExpr(e) => (e, None),
            SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.value.clone())),
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                let wanted = match item {
                    SelectItem::QualifiedWildcard(kind, _) => Some(kind.to_string()),
                    _ => None,
                };
                let mut any = false;
                for side in sides {
                    let matches = match (&wanted, &side.qualifier) {
                        (None, _) => true,
                        (Some(w), Some(q)) => w.trim_matches('"').eq_ignore_ascii_case(q),
                        (Some(_), None) => false,
                    };
                    if !matches {
                        continue;
                    }
                    any = true;
                    for (name, expr) in &side.columns {
                        outputs.push(SelectOutput {
                            expr: expr.clone(),
                            name: name.clone(),
                            alias: None,
                            explicit_cast: false,
                            pos: item_pos,
                        });
                    }
                }
                if !any {
                    return Err(EngineError::plan(
                        format!("{item}: no FROM item has that alias"),
                        item_pos,
                    ));
                }
                continue;
            }
            SelectItem::ExprWithAliases { .. } => {
                return Err(EngineError::plan(
                    "multiple aliases AS (a, b) are not supported",
                    item_pos,
                ))
            }
        };
        let expr = plan_expr(ast, &mut scope)?;
        let name = match (&alias, unnest(ast)) {
            (Some(a), _) => a.clone(),
            (None, AstExpr::Identifier(i)) => i.value.clone(),
            (None, AstExpr::CompoundIdentifier(parts)) => parts
                .last()
                .map(|p| p.value.clone())
                .unwrap_or_else(|| format!("EXPR${}", outputs.len())),
            (None, _) => format!("EXPR${}", outputs.len()),
        };
        outputs.push(SelectOutput {
            expr,
            name,
            alias,
            explicit_cast: matches!(unnest(ast), AstExpr::Cast { .. }),
            pos: item_pos,
        });
    }
    Ok(outputs)
}

/// `a AND b`, either side optional.
pub(super) fn and(a: Option<Expr>, b: Option<Expr>) -> Option<Expr> {
    match (a, b) {
        (Some(a), Some(b)) => Some(Expr::Binary {
            op: BinaryOp::And,
            left: Box::new(a),
            right: Box::new(b),
            data_type: arrow::datatypes::DataType::Boolean,
        }),
        (a, None) => a,
        (None, b) => b,
    }
}

/// A projection / filter over a subquery: merged into the subquery's plan.
fn flatten(
    select: &Select,
    inner: PlannedQuery,
    qualifier: Option<String>,
    pos: Pos,
) -> Result<PlannedQuery> {
    refuse_outer_aggregate(select, pos)?;
    let sides = [Side {
        qualifier,
        columns: inner
            .outputs
            .iter()
            .map(|o| (o.name.clone(), o.expr.clone()))
            .collect(),
    }];
    let condition = match &select.selection {
        Some(c) => {
            let where_pos = pos_of(c.span(), pos);
            let mut scope = DerivedScope {
                sides: &sides,
                clause: "WHERE",
                fallback: where_pos,
            };
            Some(require_boolean(
                plan_expr(c, &mut scope)?,
                "WHERE",
                where_pos,
            )?)
        }
        None => None,
    };
    let outputs = plan_outputs(select, &sides, pos)?;
    let mut planned = inner;
    match &mut planned.aggregation {
        // Over the aggregation's output: a filter of the windows' results.
        Some(aggregation) => aggregation.having = and(aggregation.having.take(), condition),
        None => planned.filter = and(planned.filter.take(), condition),
    }
    planned.outputs = outputs;
    planned.pos = pos;
    Ok(planned)
}
