//! Planning checks of an updating aggregate: a `GROUP BY` without a window over an
//! append-only input whose rows are final (a ranked or aggregating join's output, as in
//! Nexmark q4's `AVG(Q.final) ... GROUP BY Q.category`). It keeps one row per key and
//! emits a key again whenever it changes (see `crate::updating_aggregate`).
//!
//! - Aggregates: those whose state is their slot: COUNT, SUM, AVG, MIN and MAX over
//!   numbers (an input row is never withdrawn, so no aggregate has to be retracted).
//! - HAVING is refused (a key leaving the HAVING would need a withdrawal).
//! - The sink must tell updates apart: a `row_kind STRING` column (filled with "+I", "-U",
//!   "+U"), or `upsert-kafka` (upsert form: "+U" overwrites the key), or `blackhole`.

use sqlparser::ast::{Select, Spanned};

use super::pos_of;
use crate::accumulator::{inner_aggregate_allowed, Accumulator};
use crate::catalog::{Column, ColumnType, TableDef};
use crate::error::{EngineError, Pos, Result};
use crate::plan::Aggregation;
use crate::row_kind::ROW_KIND_COLUMN;

/// Checks the aggregates and clauses of an updating aggregate.
pub(crate) fn check_aggregation(
    aggregation: &Aggregation,
    select: &Select,
    pos: Pos,
) -> Result<()> {
    if let Some(having) = &select.having {
        return Err(EngineError::plan(
            "not supported yet: HAVING in a GROUP BY without a window (an updating aggregate would have to withdraw a key that stops passing it); filter outside",
            pos_of(having.span(), pos),
        ));
    }
    for call in &aggregation.aggregates {
        let allowed = Accumulator::new(call).is_ok_and(|a| inner_aggregate_allowed(&a));
        if !allowed {
            return Err(EngineError::plan(
                format!(
                    "not supported yet: {} over {} in a GROUP BY without a window; an updating aggregate supports COUNT, SUM, AVG, MIN and MAX over numbers",
                    call.func.sql_name(),
                    call.arg
                        .as_ref()
                        .map(|a| super::explain::sql_type_name(&a.data_type()))
                        .unwrap_or_else(|| "*".into()),
                ),
                pos,
            ));
        }
    }
    Ok(())
}

/// Checks that `sink` can take an updating aggregate's rows; returns whether updates are
/// emitted as "-U" / "+U" pairs (false: upsert form, "+U" only).
pub(crate) fn check_sink(
    sink: &TableDef,
    row_kind_column: Option<usize>,
    pos: Pos,
) -> Result<bool> {
    match sink.connector().as_str() {
        "upsert-kafka" => Ok(false),
        "blackhole" => Ok(true),
        _ if row_kind_column.is_some() => Ok(true),
        _ => Err(EngineError::plan(
            format!(
                "a GROUP BY without a window is an updating aggregate: it emits a key again each time it changes (-U old row, +U new row); declare a `row_kind STRING` column in sink '{}' (the engine fills it with +I / -U / +U) or write into an upsert-kafka table keyed by the group keys",
                sink.name
            ),
            pos,
        )),
    }
}

/// Appends a `row_kind STRING` column to the implicit print sink of a bare SELECT; returns
/// its index.
pub(crate) fn add_row_kind_column(sink: &mut TableDef) -> usize {
    sink.columns.push(Column {
        name: ROW_KIND_COLUMN.to_string(),
        ty: ColumnType::String,
        nullable: false,
    });
    sink.columns.len() - 1
}
