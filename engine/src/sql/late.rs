//! The source table's lateness options and the sink's `row_kind` column -> [`LatePlan`].
//!
//! - `'allowed-lateness' = '5 s'` (0 .. 7 days): late events within it update their windows,
//!   which are emitted again with row kind "+U" (SESSION windows may also withdraw a result,
//!   "-D"). Only for window aggregations (TUMBLE, HOP, CUMULATE, SESSION); any other query is
//!   refused with the reason. A query with lateness into a sink
//!   that is not `upsert-kafka` must declare a `row_kind STRING` column, since it emits a
//!   window more than once.
//! - `'late.sink' = 'TABLE'`: rows too late even for the lateness are written to that table;
//!   each of its columns must be a source column of the same name and type.
//! - A sink column `row_kind STRING` that the SELECT does not produce (the SELECT has one
//!   column fewer than the sink) is filled by the engine; see `crate::row_kind`.

use std::borrow::Cow;

use super::source::lookup_table;
use crate::catalog::{ColumnType, TableDef};
use crate::error::{EngineError, Pos, Result};
use crate::plan::{Aggregation, Expr, LatePlan, Literal, Program};
use crate::row_kind::{RowKind, ROW_KIND_COLUMN};

/// The source table option of the allowed lateness.
pub(crate) const ALLOWED_LATENESS_OPTION: &str = "allowed-lateness";
/// The source table option naming the late-data table.
pub(crate) const LATE_SINK_OPTION: &str = "late.sink";
/// The largest allowed lateness: 7 days.
pub(crate) const ALLOWED_LATENESS_MS_MAX: i64 = 7 * 24 * 3_600_000;

/// The index of the sink's engine-filled `row_kind STRING` column when the SELECT produces
/// `select_columns` columns, one fewer than the sink has; and the sink without it (what the
/// SELECT is projected onto).
pub(crate) fn split_row_kind(
    sink: &TableDef,
    select_columns: usize,
) -> (Cow<'_, TableDef>, Option<usize>) {
    let Some(index) = sink.column_index(ROW_KIND_COLUMN) else {
        return (Cow::Borrowed(sink), None);
    };
    if sink.columns[index].ty != ColumnType::String || select_columns + 1 != sink.columns.len() {
        return (Cow::Borrowed(sink), None);
    }
    let mut projected = sink.clone();
    projected.columns.remove(index);
    (Cow::Owned(projected), Some(index))
}

/// Puts the placeholder of the `row_kind` column (filled by the output stage) into the
/// projection at `index`.
pub(crate) fn insert_row_kind(projection: &mut Vec<Expr>, index: Option<usize>) {
    if let Some(i) = index {
        projection.insert(
            i,
            Expr::Literal(Literal::Utf8(RowKind::Insert.as_str().to_string())),
        );
    }
}

/// The lateness of a query from `source`'s options, into `sink`.
pub(crate) fn plan_late(
    program: &Program,
    source: &TableDef,
    sink: &TableDef,
    aggregation: Option<&Aggregation>,
    row_kind_column: Option<usize>,
    pos: Pos,
) -> Result<LatePlan> {
    let mut late = LatePlan {
        row_kind_column,
        ..LatePlan::default()
    };
    let lateness = source.option(ALLOWED_LATENESS_OPTION);
    let late_sink = source.option(LATE_SINK_OPTION);
    if lateness.is_none() && late_sink.is_none() {
        return Ok(late);
    }
    let windowed = aggregation
        .and_then(|a| a.window)
        .map(|w| w.kind.name())
        .filter(|name| matches!(*name, "TUMBLE" | "HOP" | "CUMULATE" | "SESSION"));
    if windowed.is_none() {
        return Err(EngineError::plan(
            format!(
                "table '{}' sets '{ALLOWED_LATENESS_OPTION}' or '{LATE_SINK_OPTION}', which \
                 apply to window aggregations (TUMBLE, HOP, CUMULATE, SESSION), but this query \
                 has none (not supported yet for other queries); remove the options or \
                 aggregate by window",
                source.name
            ),
            pos,
        ));
    }
    if let Some(text) = lateness {
        let ms = spillway_connectors::duration::parse_duration_ms(text)
            .filter(|ms| (0..=ALLOWED_LATENESS_MS_MAX).contains(ms))
            .ok_or_else(|| {
                EngineError::plan(
                    format!(
                        "table '{}': '{ALLOWED_LATENESS_OPTION}' = '{text}' is not a duration \
                         from 0 to 7 days (examples: '5 s', '500 ms', '10 min')",
                        source.name
                    ),
                    source.pos,
                )
            })?;
        late.allowed_lateness_ms = ms;
    }
    if late.allowed_lateness_ms > 0
        && row_kind_column.is_none()
        && sink.connector() != "upsert-kafka"
    {
        return Err(EngineError::plan(
            format!(
                "with '{ALLOWED_LATENESS_OPTION}' on table '{}' the query re-emits updated \
                 windows; declare a `row_kind STRING` column in sink '{}' (the engine fills it \
                 with +I / +U / -D) or use upsert-kafka",
                source.name, sink.name
            ),
            pos,
        ));
    }
    if let Some(name) = late_sink {
        let table = lookup_table(program, name, source.pos)?;
        if table.name.eq_ignore_ascii_case(&source.name)
            || table.name.eq_ignore_ascii_case(&sink.name)
        {
            return Err(EngineError::plan(
                format!(
                    "table '{}': '{LATE_SINK_OPTION}' = '{name}' must be a table of its own, \
                     not the query's source or sink",
                    source.name
                ),
                source.pos,
            ));
        }
        for column in &table.columns {
            let index = source.column_index(&column.name).ok_or_else(|| {
                EngineError::plan(
                    format!(
                        "late-data table '{}' column '{}' is not a column of source table '{}' \
                         (a late table holds source rows: declare some of the source's columns)",
                        table.name, column.name, source.name
                    ),
                    table.pos,
                )
            })?;
            let ty = source.columns[index].ty;
            if ty != column.ty {
                return Err(EngineError::plan(
                    format!(
                        "late-data table '{}' column '{}' is {}, but source table '{}' has it \
                         as {}",
                        table.name,
                        column.name,
                        column.ty.sql_name(),
                        source.name,
                        ty.sql_name()
                    ),
                    table.pos,
                ));
            }
            late.late_columns.push(index);
        }
        late.late_sink = Some(table.name.clone());
    }
    Ok(late)
}

#[cfg(test)]
mod tests {
    use crate::sql::parse_program;

    const SOURCE: &str = "CREATE TABLE t (k STRING, v BIGINT, ts TIMESTAMP(3), \
         WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
         WITH ('connector' = 'filesystem', 'path' = 'in.jsonl', 'format' = 'json'";

    fn program(
        options: &str,
        sink_columns: &str,
        query: &str,
    ) -> crate::error::Result<crate::plan::Program> {
        let sql = format!(
            "{SOURCE}{options});\n\
             CREATE TABLE late_rows (ts TIMESTAMP(3), k STRING) \
             WITH ('connector' = 'filesystem', 'path' = 'late.jsonl', 'format' = 'json');\n\
             CREATE TABLE out ({sink_columns}) \
             WITH ('connector' = 'filesystem', 'path' = 'out.jsonl', 'format' = 'json');\n\
             {query}"
        );
        parse_program(&sql)
    }

    const WINDOWED: &str = "INSERT INTO out SELECT k, window_start, window_end, COUNT(*) \
         FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' SECOND)) \
         GROUP BY k, window_start, window_end;";
    const COLUMNS: &str = "k STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3), n BIGINT";

    #[test]
    fn lateness_late_sink_and_row_kind_are_planned() {
        let p = program(
            ", 'allowed-lateness' = '5 s', 'late.sink' = 'late_rows'",
            &format!("{COLUMNS}, row_kind STRING"),
            WINDOWED,
        )
        .expect("plans");
        let late = &p.pipelines[0].late;
        assert_eq!(late.allowed_lateness_ms, 5_000);
        assert_eq!(late.late_sink.as_deref(), Some("late_rows"));
        assert_eq!(late.late_columns, vec![2, 0], "ts, k in the source");
        assert_eq!(late.row_kind_column, Some(4));
        assert_eq!(p.pipelines[0].projection.len(), 5);
        // No options: nothing, and a row_kind column is still filled.
        let p = program("", &format!("row_kind STRING, {COLUMNS}"), WINDOWED).expect("plans");
        assert_eq!(p.pipelines[0].late.allowed_lateness_ms, 0);
        assert_eq!(p.pipelines[0].late.row_kind_column, Some(0));
    }

    fn refused(options: &str, columns: &str, query: &str) -> String {
        match program(options, columns, query) {
            Ok(_) => panic!("planned: {options} / {columns} / {query}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bad_lateness_options_are_refused_with_the_reason() {
        let e = refused(", 'allowed-lateness' = '5 s'", COLUMNS, WINDOWED);
        assert!(e.contains("row_kind STRING") && e.contains("'out'"), "{e}");
        let e = refused(
            ", 'allowed-lateness' = '8 d'",
            &format!("{COLUMNS}, row_kind STRING"),
            WINDOWED,
        );
        assert!(e.contains("0 to 7 days"), "{e}");
        let e = refused(
            ", 'allowed-lateness' = 'soon'",
            &format!("{COLUMNS}, row_kind STRING"),
            WINDOWED,
        );
        assert!(e.contains("'soon'"), "{e}");
        let e = refused(
            ", 'late.sink' = 'late_rows'",
            "k STRING, v BIGINT",
            "INSERT INTO out SELECT k, v FROM t;",
        );
        assert!(e.contains("window aggregations"), "{e}");
        let e = refused(", 'late.sink' = 'nowhere'", COLUMNS, WINDOWED);
        assert!(e.contains("nowhere"), "{e}");
        let e = refused(", 'late.sink' = 'out'", COLUMNS, WINDOWED);
        assert!(e.contains("table of its own"), "{e}");
    }

    #[test]
    fn late_table_columns_must_match_source_columns() {
        let sql = format!(
            "{SOURCE}, 'late.sink' = 'bad');\n\
             CREATE TABLE bad (k BIGINT) WITH ('connector' = 'print');\n\
             CREATE TABLE out ({COLUMNS}) WITH ('connector' = 'print');\n{WINDOWED}"
        );
        let e = parse_program(&sql).expect_err("type mismatch").to_string();
        assert!(
            e.contains("column 'k' is BIGINT") && e.contains("STRING"),
            "{e}"
        );
        let sql = sql.replace("bad (k BIGINT)", "bad (price DOUBLE)");
        let e = parse_program(&sql).expect_err("unknown column").to_string();
        assert!(
            e.contains("'price' is not a column of source table 't'"),
            "{e}"
        );
    }
}
