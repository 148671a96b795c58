//! The plan of a job: what the SQL front end (`sql/`) produces and the shards execute.
//!
//! A [`Program`] is every table of a SQL file plus one [`Pipeline`] per `INSERT INTO`
//! (a bare `SELECT` becomes a pipeline into an implicit `print` sink). A pipeline is:
//!
//! ```text
//! source rows (table schema)
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

/// Window kinds. Later windows (HOP, SESSION, CUMULATE) add variants here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// Tumbling windows `[start, start + size)` with `start = ts - (ts - offset) mod size`.
    Tumble { size_ms: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    pub kind: WindowKind,
    /// Index of the event-time column in the source schema. Must be the column the source
    /// table's WATERMARK is declared on.
    pub time_column: usize,
    pub offset_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFunc {
    /// COUNT(*) when `arg` is None, else COUNT(arg): non-null values.
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AggCall {
    pub func: AggFunc,
    /// Over the filtered source schema. None only for COUNT(*).
    pub arg: Option<Expr>,
    /// COUNT: Int64. SUM: Int64 for integer args, Float64 for floating ones. AVG: Float64.
    /// MIN/MAX: the argument's type.
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
        for (a, name) in self.aggregates.iter().zip(&self.agg_names) {
            let nullable = a.func != AggFunc::Count;
            fields.push(Field::new(name, a.output_type.clone(), nullable));
        }
        Arc::new(Schema::new(fields))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// The source table's name (a key of `Program::tables`).
    pub source: String,
    /// The sink table's name (a key of `Program::tables`).
    pub sink: String,
    /// WHERE, over the source schema.
    pub filter: Option<Expr>,
    pub aggregation: Option<Aggregation>,
    /// One expression per sink column, already cast to the sink column's type.
    pub projection: Vec<Expr>,
    /// The sink table's schema; the projection's output has exactly these types.
    pub output_schema: SchemaRef,
    /// Where the INSERT (or SELECT) starts.
    pub pos: Pos,
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
