//! The plan of a job: what the SQL front end (`sql/`) produces and the shards execute.
//!
//! A [`Program`] is every table of a SQL file plus one [`Pipeline`] per `INSERT INTO`
//! (a bare `SELECT` becomes a pipeline into an implicit `print` sink). A pipeline is:
//!
//! ```text
//! source rows (table schema)
//!   -> join?             (dimension columns appended: the joined schema)
//!   -> filter            (Expr over the source schema, WHERE)
//!   -> aggregation?      (window + group keys + aggregates; output schema below)
//!      -> having         (Expr over the aggregation output schema)
//!   -> projection        (Exprs over the source schema, or over the aggregation output)
//!   -> sink              (output_schema = the sink table's columns)
//! ```
//!
//! The aggregation output schema is, in this order: the group keys (named by
//! `group_key_names`), `window_start`, `window_end` (TIMESTAMP(3), only when windowed), then
//! one column per aggregate (named `agg_names`).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::catalog::TableDef;
use crate::error::Pos;

/// A literal value in an expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// NULL of the given type.
    Null(DataType),
    Boolean(bool),
    Int32(i32),
    Int64(i64),
    Float32(f32),
    Float64(f64),
    Utf8(String),
    /// Milliseconds since the epoch, UTC.
    TimestampMs(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Plus,
    Minus,
    Multiply,
    Divide,
    Modulo,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    And,
    Or,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    Not,
    Negate,
}

/// A typed, resolved scalar expression, evaluated over an Arrow `RecordBatch` by
/// `crate::expr`. The planner inserts the casts that make both sides of a binary operator
/// the same type, so evaluation does no implicit coercion.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Column `index` of the input batch.
    Column {
        index: usize,
        name: String,
        data_type: DataType,
    },
    Literal(Literal),
    Binary {
        op: BinaryOp,
        left: Box<Expr>,
        right: Box<Expr>,
        /// The result type (Boolean for comparisons and logic).
        data_type: DataType,
    },
    Unary {
        op: UnaryOp,
        expr: Box<Expr>,
    },
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    Cast {
        expr: Box<Expr>,
        to: DataType,
    },
    /// `CASE WHEN c1 THEN v1 ... ELSE e END` (the planner rewrites `CASE x WHEN ...` to this).
    Case {
        branches: Vec<(Expr, Expr)>,
        otherwise: Option<Box<Expr>>,
        data_type: DataType,
    },
}

/// Window kinds. Every kind is computed from *panes*: tumbling windows of
/// [`WindowKind::pane_ms`] that each event updates exactly one of; a window is the union of
/// the panes it covers (see `window_assigner.rs`). SESSION windows have no panes: they are
/// computed by `crate::session`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// Tumbling windows `[start, start + size)` with `start = ts - (ts - offset) mod size`.
    /// One pane per window.
    Tumble { size_ms: i64 },
    /// Hopping windows `[start, start + size)` starting every `slide_ms` (at `offset + k *
    /// slide`); `size_ms` is a multiple of `slide_ms` and the panes are `slide_ms` long.
    Hop { size_ms: i64, slide_ms: i64 },
    /// Cumulating windows: every `max_size_ms` (at `offset + k * max_size`) a cycle starts,
    /// and its windows `[cycle, cycle + j * step)` for `j = 1 ..= max_size / step` end every
    /// `step_ms`; `max_size_ms` is a multiple of `step_ms` and the panes are `step_ms` long.
    Cumulate { step_ms: i64, max_size_ms: i64 },
    /// Session windows: an event at `ts` opens `[ts, ts + gap)`; windows of one key that
    /// overlap or touch merge (see `crate::session`). No panes: `pane_ms` and `size_ms` are
    /// the gap.
    Session { gap_ms: i64 },
}

impl WindowKind {
    /// The pane length: TUMBLE size, HOP slide, CUMULATE step.
    pub fn pane_ms(&self) -> i64 {
        match *self {
            WindowKind::Tumble { size_ms } => size_ms,
            WindowKind::Hop { slide_ms, .. } => slide_ms,
            WindowKind::Cumulate { step_ms, .. } => step_ms,
            WindowKind::Session { gap_ms } => gap_ms,
        }
    }

    /// The length of the longest window: TUMBLE and HOP size, CUMULATE max size.
    pub fn size_ms(&self) -> i64 {
        match *self {
            WindowKind::Tumble { size_ms } | WindowKind::Hop { size_ms, .. } => size_ms,
            WindowKind::Cumulate { max_size_ms, .. } => max_size_ms,
            WindowKind::Session { gap_ms } => gap_ms,
        }
    }

    /// The SQL name of the window function.
    pub fn name(&self) -> &'static str {
        match self {
            WindowKind::Tumble { .. } => "TUMBLE",
            WindowKind::Hop { .. } => "HOP",
            WindowKind::Cumulate { .. } => "CUMULATE",
            WindowKind::Session { .. } => "SESSION",
        }
    }

    /// The gap of a SESSION window; None for the pane-based kinds.
    pub fn session_gap_ms(&self) -> Option<i64> {
        match *self {
            WindowKind::Session { gap_ms } => Some(gap_ms),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    pub kind: WindowKind,
    /// Index of the event-time column in the source schema. Must be the column the source
    /// table's WATERMARK is declared on.
    pub time_column: usize,
    /// Shift of the window grid, normalised by the planner to `[0, size)` for TUMBLE,
    /// `[0, slide)` for HOP and `[0, max_size)` for CUMULATE; 0 for SESSION.
    pub offset_ms: i64,
}

/// Aggregate functions. Every aggregate skips NULL arguments; `agg(x) FILTER (WHERE c)` is
/// planned as `agg(CASE WHEN c THEN x END)` (and `COUNT(*) FILTER (WHERE c)` as
/// `COUNT(CASE WHEN c THEN TRUE END)`), so the executor needs no filter of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFunc {
    /// COUNT(*) when `arg` is None, else COUNT(arg): non-null values.
    Count,
    Sum,
    Avg,
    Min,
    Max,
    /// COUNT(DISTINCT arg): exact, a set of values per group (counted in the state bytes).
    CountDistinct,
    /// FIRST_VALUE(arg): the value of the row with the smallest event time; rows with the
    /// same event time are ordered by value (the smallest wins), so the result does not
    /// depend on arrival order, partitions or shards.
    FirstValue,
    /// LAST_VALUE(arg): the value of the row with the largest event time; ties go to the
    /// largest value (the mirror of FIRST_VALUE).
    LastValue,
    /// Population standard deviation (Welford update, Chan merge).
    StddevPop,
    /// Sample standard deviation; NULL for fewer than two values.
    StddevSamp,
    /// Population variance.
    VarPop,
    /// Sample variance; NULL for fewer than two values.
    VarSamp,
    /// APPROX_COUNT_DISTINCT(arg): HyperLogLog with 4096 registers (standard error about
    /// 1.6 %).
    ApproxCountDistinct,
    /// The per-window top-N of [`Aggregation::top_n`] (no argument): the best rows of the
    /// group's window, exploded into 0..n output rows when the window is emitted.
    TopN,
}

impl AggFunc {
    /// The SQL name, as in a query.
    pub fn sql_name(self) -> &'static str {
        match self {
            AggFunc::Count | AggFunc::CountDistinct => "COUNT",
            AggFunc::Sum => "SUM",
            AggFunc::Avg => "AVG",
            AggFunc::Min => "MIN",
            AggFunc::Max => "MAX",
            AggFunc::FirstValue => "FIRST_VALUE",
            AggFunc::LastValue => "LAST_VALUE",
            AggFunc::StddevPop => "STDDEV_POP",
            AggFunc::StddevSamp => "STDDEV_SAMP",
            AggFunc::VarPop => "VAR_POP",
            AggFunc::VarSamp => "VAR_SAMP",
            AggFunc::ApproxCountDistinct => "APPROX_COUNT_DISTINCT",
            AggFunc::TopN => "ROW_NUMBER",
        }
    }

    /// Whether the result is never NULL (counts).
    pub fn is_count(self) -> bool {
        matches!(
            self,
            AggFunc::Count | AggFunc::CountDistinct | AggFunc::ApproxCountDistinct
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AggCall {
    pub func: AggFunc,
    /// Over the filtered source schema. None only for COUNT(*). A FILTER clause is folded in
    /// (see [`AggFunc`]).
    pub arg: Option<Expr>,
    /// COUNT, COUNT(DISTINCT), APPROX_COUNT_DISTINCT: Int64. SUM: Int64 for integer args,
    /// Float64 for floating ones. AVG, STDDEV_*, VAR_*: Float64. MIN/MAX/FIRST_VALUE/
    /// LAST_VALUE: the argument's type.
    pub output_type: DataType,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Aggregation {
    pub window: Option<WindowSpec>,
    /// Group keys other than the window, over the filtered source schema.
    pub group_keys: Vec<Expr>,
    pub group_key_names: Vec<String>,
    pub aggregates: Vec<AggCall>,
    pub agg_names: Vec<String>,
    /// HAVING, over the aggregation output schema.
    pub having: Option<Expr>,
    /// A per-window top-N (subqueries with `ROW_NUMBER() OVER (PARTITION BY window_start,
    /// window_end ORDER BY ...)`, or a per-window MAX joined back): `aggregates` is then one
    /// [`AggFunc::TopN`] call, and each group's result is 0..n rows (see [`TopN`]).
    pub top_n: Option<Box<TopN>>,
}

/// What a per-window top-N ranks (see [`TopN`]).
#[derive(Debug, Clone, PartialEq)]
pub enum TopNInput {
    /// The window's rows: one expression per kept column, over the filtered source schema.
    Rows(Vec<Expr>),
    /// The groups of an inner aggregation over the same window (its group keys, aggregates
    /// and HAVING over its own output schema); the kept columns are its group keys, then its
    /// aggregates.
    Groups(Box<Aggregation>),
}

/// A per-window top-N: per group (window and the group keys of the outer aggregation) the
/// rows of [`TopNInput`] ordered by `order`, ties broken by every kept column ascending (so
/// the result depends neither on arrival order nor on shards), of which the first
/// `rows_max` are kept; with `with_ties`, also every later row whose sort keys equal the
/// last kept row's (RANK semantics: the "MAX per window joined back" pattern).
#[derive(Debug, Clone, PartialEq)]
pub struct TopN {
    pub input: TopNInput,
    /// Names of the kept columns.
    pub column_names: Vec<String>,
    /// Sort keys: (index of a kept column, descending). Ascending puts NULLs first,
    /// descending last (as Flink).
    pub order: Vec<(usize, bool)>,
    /// N of `ROW_NUMBER() ... <= N` (1 for the MAX pattern).
    pub rows_max: usize,
    pub with_ties: bool,
    /// The name of a BIGINT row number column (1, 2, ...) after the kept columns, if the
    /// query selects it.
    pub row_number_name: Option<String>,
}

impl TopN {
    /// The types of the kept columns.
    pub fn column_types(&self) -> Vec<DataType> {
        match &self.input {
            TopNInput::Rows(exprs) => exprs.iter().map(Expr::data_type).collect(),
            TopNInput::Groups(inner) => inner
                .group_keys
                .iter()
                .map(Expr::data_type)
                .chain(inner.aggregates.iter().map(|a| a.output_type.clone()))
                .collect(),
        }
    }
}

impl Aggregation {
    /// The schema of the aggregation's output (see the module docs).
    pub fn output_schema(&self) -> SchemaRef {
        let mut fields = Vec::new();
        for (k, name) in self.group_keys.iter().zip(&self.group_key_names) {
            fields.push(Field::new(name, k.data_type(), true));
        }
        if self.window.is_some() {
            let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
            fields.push(Field::new("window_start", ts.clone(), false));
            fields.push(Field::new("window_end", ts, false));
        }
        if let Some(top_n) = &self.top_n {
            for (name, t) in top_n.column_names.iter().zip(top_n.column_types()) {
                fields.push(Field::new(name, t, true));
            }
            if let Some(name) = &top_n.row_number_name {
                fields.push(Field::new(name, DataType::Int64, false));
            }
            return Arc::new(Schema::new(fields));
        }
        for (a, name) in self.aggregates.iter().zip(&self.agg_names) {
            let nullable = !a.func.is_count();
            fields.push(Field::new(name, a.output_type.clone(), nullable));
        }
        Arc::new(Schema::new(fields))
    }
}

/// How rows of the stream without a matching dimension row are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// `LEFT JOIN`: the row is kept, the dimension columns are NULL.
    Left,
    /// `JOIN` / `INNER JOIN`: the row is dropped.
    Inner,
}

/// A join of the stream (the probe side) with a dimension table (see `crate::dimension`):
/// the probe batch gets the dimension table's columns appended, right after decode.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinPlan {
    /// The dimension table's name (a key of `Program::tables`).
    pub dimension: String,
    /// The alias the query gives the dimension table (or its name), for EXPLAIN.
    pub qualifier: String,
    pub kind: JoinKind,
    /// `FOR SYSTEM_TIME AS OF t.ts`: the probe column (index in the source schema, the
    /// source's WATERMARK column) whose value picks the dimension version; None for a lookup
    /// of the latest version.
    pub version_time_column: Option<usize>,
    /// One expression per PRIMARY KEY column of the dimension table (in key order), over the
    /// source schema, cast to that key column's type.
    pub probe_keys: Vec<Expr>,
    /// The number of source columns: dimension column `i` is column `source_columns + i` of
    /// the joined schema.
    pub source_columns: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// The source table's name (a key of `Program::tables`).
    pub source: String,
    /// The sink table's name (a key of `Program::tables`).
    pub sink: String,
    /// A join with a dimension table. With a join, "the source schema" below means the
    /// joined schema: the source table's columns, then the dimension table's (nullable).
    pub join: Option<JoinPlan>,
    /// WHERE, over the source schema.
    pub filter: Option<Expr>,
    pub aggregation: Option<Aggregation>,
    /// One expression per sink column, already cast to the sink column's type.
    pub projection: Vec<Expr>,
    /// The sink table's schema; the projection's output has exactly these types.
    pub output_schema: SchemaRef,
    /// Allowed lateness and the late-data sink, from the source table's options.
    pub late: LatePlan,
    /// A join with a second stream (window or interval join, see [`StreamJoin`]). With it,
    /// `source` is the left table and "the source schema" is the joined schema: the left
    /// side's columns, then the right side's.
    pub stream_join: Option<StreamJoin>,
    /// Where the INSERT (or SELECT) starts.
    pub pos: Pos,
}

/// What happens to late events: from the source table's options `'allowed-lateness'` and
/// `'late.sink'`. An event whose last window ended at or before `watermark -
/// allowed_lateness_ms` is too late: counted, and written to `late_sink` when set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LatePlan {
    /// Events this much behind the watermark still update their windows (which are then
    /// emitted again as updates, row kind "+U"). 0: a fired window is final.
    pub allowed_lateness_ms: i64,
    /// The table (a key of `Program::tables`) too-late source rows are written to.
    pub late_sink: Option<String>,
    /// For each column of the late table, its index in the source schema (same name and
    /// type; the planner checks it). Empty without a late sink.
    pub late_columns: Vec<usize>,
    /// The sink column the engine fills with the row kind ("+I", "+U", "-D"; see
    /// `crate::row_kind`): a `row_kind STRING` column the SELECT does not produce. Its
    /// projection is a placeholder literal.
    pub row_kind_column: Option<usize>,
    /// An updating aggregate (GROUP BY without a window) emits a changed key as "-U" (its
    /// previous row) then "+U" (its new row); false: in upsert form, "+U" only (into
    /// `upsert-kafka`, which keeps the last row per key).
    pub update_before: bool,
}

/// Which input of a [`StreamJoin`] a row comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JoinSide {
    Left,
    Right,
}

impl JoinSide {
    /// 0 for the left side, 1 for the right.
    pub fn index(self) -> usize {
        match self {
            JoinSide::Left => 0,
            JoinSide::Right => 1,
        }
    }

    /// The other side.
    pub fn other(self) -> JoinSide {
        match self {
            JoinSide::Left => JoinSide::Right,
            JoinSide::Right => JoinSide::Left,
        }
    }
}

/// How the two streams of a [`StreamJoin`] meet (INNER joins only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamJoinKind {
    /// Rows of both sides with equal keys in the same window (both sides use the same
    /// window table function); a window's matches are emitted once the watermark passes its
    /// end, and its rows are then freed. Each side's `time_column` is its `window_end`.
    Window,
    /// `left.time - right.time` within `[lower_ms, upper_ms]` (from `l.ts BETWEEN r.ts -
    /// INTERVAL .. AND r.ts + INTERVAL ..`); matches are emitted as soon as both rows are
    /// there, and a row is freed once the watermark says no partner can still come. Each
    /// side's `time_column` is its event-time (WATERMARK) column. A missing bound is
    /// `i64::MIN` / `i64::MAX`: the rows it would free are kept (a regular join without
    /// time condition keeps every row, bounded by the join state limits).
    Interval { lower_ms: i64, upper_ms: i64 },
    /// `left.time + from_ms <= right.time <= left[until_column]` (Nexmark q9's `B.dateTime
    /// BETWEEN A.dateTime AND A.expires`): a left row's partners arrive until its own
    /// column's time. Only with [`StreamJoin::top`] or [`StreamJoin::aggregate`]: a left
    /// row's best partners (or the aggregates over its partners) are emitted once the
    /// watermark passes its `until_column`, and it is then freed; a right row is freed once
    /// `time < watermark + from_ms`. `until_column` is a TIMESTAMP column of the left side's
    /// output.
    IntervalUntil { from_ms: i64, until_column: usize },
}

/// The best `rank_max` right rows per left row of a [`StreamJoin`] (`ROW_NUMBER() OVER
/// (PARTITION BY <left key> ORDER BY <right columns>) AS rn ... WHERE rn <= N`). The joined
/// schema then ends with the row number (BIGINT, 1 = best).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinTopN {
    /// N: right rows kept (and emitted) per left row.
    pub rank_max: usize,
    /// ORDER BY: (column of the right side's output, descending). Equal rows are ordered
    /// by all their right columns, ascending, so the choice does not depend on arrival.
    pub order: Vec<(usize, bool)>,
}

/// Aggregates over each left row's matches of a [`StreamJoin`] (a subquery `SELECT
/// MAX(R.price) AS final, L.category ... GROUP BY L.id, L.category` whose GROUP BY holds
/// the left join key, as Nexmark q4's): one row per left row with at least one match,
/// emitted once, when final. The joined schema is then `projection` (named
/// `output_names`): the subquery's SELECT list.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinAggregate {
    /// The grouped left columns (of the left side's output), in GROUP BY order.
    pub group_columns: Vec<usize>,
    /// Per left row, over its matches; arguments over the right side's output schema.
    /// Only the aggregates whose state is their slot (COUNT, SUM, AVG, MIN, MAX over
    /// numbers).
    pub aggregates: Vec<AggCall>,
    /// The subquery's SELECT list over the grouped columns, then the aggregates.
    pub projection: Vec<Expr>,
    pub output_names: Vec<String>,
}

/// One input of a [`StreamJoin`]: a source table, optionally windowed, filtered and
/// projected (a subquery in FROM), and the join key over its output.
///
/// The side's *input schema* is the table's columns, then `window_start` and `window_end`
/// (TIMESTAMP(3)) when `window` is set; its *output schema* is `projection`.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamJoinSide {
    /// The source table's name (a key of `Program::tables`).
    pub table: String,
    /// The alias the query gives this side (or the table's name).
    pub qualifier: String,
    /// The window table function of this side (window joins).
    pub window: Option<WindowSpec>,
    /// WHERE of the side's subquery, over the side's input schema.
    pub filter: Option<Expr>,
    /// The side's output columns, over its input schema.
    pub projection: Vec<Expr>,
    pub output_names: Vec<String>,
    /// `GROUP BY` every output column without aggregates (a per-window DISTINCT): each
    /// distinct output row joins once per window.
    pub distinct: bool,
    /// The join key, over the side's output schema; both sides' keys have the same types.
    pub keys: Vec<Expr>,
    /// Index in the output schema of the row's time: `window_end` for window joins, the
    /// event time for interval joins.
    pub time_column: usize,
}

/// A join of two streams (see `crate::stream_join`): rows of each side are sent to the
/// shard that owns their key, which keeps both sides' rows until the watermark frees them.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamJoin {
    pub left: StreamJoinSide,
    pub right: StreamJoinSide,
    pub kind: StreamJoinKind,
    /// Top-N right rows per left row (the joined rows are then emitted only when final).
    pub top: Option<JoinTopN>,
    /// Aggregates per left row (instead of `top`; emitted only when final).
    pub aggregate: Option<JoinAggregate>,
}

impl StreamJoin {
    /// Whether the join emits each result row once, when final, and never withdraws it
    /// (a ranked or aggregating join): an updating aggregate may then read its output.
    pub fn append_only_final(&self) -> bool {
        self.top.is_some() || self.aggregate.is_some()
    }

    /// The given side.
    pub fn side(&self, side: JoinSide) -> &StreamJoinSide {
        match side {
            JoinSide::Left => &self.left,
            JoinSide::Right => &self.right,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Program {
    /// Tables by name as declared (lookups are case-insensitive, names are stored as written).
    pub tables: BTreeMap<String, TableDef>,
    pub pipelines: Vec<Pipeline>,
    /// `SET 'key' = 'value';` statements, in order (later ones win).
    pub settings: BTreeMap<String, String>,
}

impl Program {
    pub fn table(&self, name: &str) -> Option<&TableDef> {
        self.tables
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, t)| t)
    }
}
