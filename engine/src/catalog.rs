//! Table definitions as declared by `CREATE TABLE`.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::error::Pos;

/// The SQL column types spillway supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// STRING, VARCHAR, VARCHAR(n), CHAR(n)
    String,
    /// BOOLEAN
    Boolean,
    /// INT, INTEGER
    Int,
    /// BIGINT
    BigInt,
    /// FLOAT, REAL
    Float,
    /// DOUBLE, DOUBLE PRECISION
    Double,
    /// TIMESTAMP(3) (and TIMESTAMP, TIMESTAMP_LTZ(3)): milliseconds since the epoch, UTC.
    Timestamp,
    /// A processing-time column `name AS PROCTIME()` (Flink's `TIMESTAMP_LTZ(3) *PROCTIME*`):
    /// a TIMESTAMP(3) not read from the record but filled at decode time with the wall clock
    /// (see `crate::proctime`). As in Flink, the time attribute is part of the type.
    ProcTime,
}

impl ColumnType {
    pub fn to_arrow(self) -> DataType {
        match self {
            ColumnType::String => DataType::Utf8,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Int => DataType::Int32,
            ColumnType::BigInt => DataType::Int64,
            ColumnType::Float => DataType::Float32,
            ColumnType::Double => DataType::Float64,
            ColumnType::Timestamp | ColumnType::ProcTime => {
                DataType::Timestamp(TimeUnit::Millisecond, None)
            }
        }
    }

    /// The SQL name, for messages and EXPLAIN.
    pub fn sql_name(self) -> &'static str {
        match self {
            ColumnType::String => "STRING",
            ColumnType::Boolean => "BOOLEAN",
            ColumnType::Int => "INT",
            ColumnType::BigInt => "BIGINT",
            ColumnType::Float => "FLOAT",
            ColumnType::Double => "DOUBLE",
            ColumnType::Timestamp => "TIMESTAMP(3)",
            ColumnType::ProcTime => "TIMESTAMP_LTZ(3) *PROCTIME*",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
    pub nullable: bool,
}

/// `WATERMARK FOR col AS col - INTERVAL 'n' unit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatermarkSpec {
    /// Index of the event-time column in the table's columns.
    pub column: usize,
    /// Bounded out-of-orderness in milliseconds (0 for `WATERMARK FOR ts AS ts`).
    pub bound_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TableDef {
    pub name: String,
    pub columns: Vec<Column>,
    pub watermark: Option<WatermarkSpec>,
    /// Indexes of the PRIMARY KEY columns, empty when none was declared.
    pub primary_key: Vec<usize>,
    /// WITH options, keys as written (case kept), values unquoted.
    pub options: BTreeMap<String, String>,
    /// Where the CREATE TABLE starts, for messages.
    pub pos: Pos,
}

impl TableDef {
    /// The Arrow schema of the table's rows. A processing-time column's field carries the
    /// metadata [`crate::proctime::PROCTIME_FIELD_METADATA_KEY`], so that every decoder
    /// built from this schema fills it with the wall clock instead of reading it.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| {
                    let field = Field::new(&c.name, c.ty.to_arrow(), c.nullable);
                    if c.ty == ColumnType::ProcTime {
                        crate::proctime::mark_proctime_field(field)
                    } else {
                        field
                    }
                })
                .collect::<Vec<_>>(),
        ))
    }

    /// The index of the processing-time column (`name AS PROCTIME()`), if the table has one.
    pub fn proctime_column(&self) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.ty == ColumnType::ProcTime)
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
    }

    pub fn option(&self, key: &str) -> Option<&str> {
        self.options.get(key).map(String::as_str)
    }

    /// The `connector` option, lower-cased.
    pub fn connector(&self) -> String {
        self.option("connector").unwrap_or("").to_ascii_lowercase()
    }
}
