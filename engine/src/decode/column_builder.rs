//! Typed Arrow column builders of the JSON decoder, and the conversion of one JSON scalar
//! into a column's type.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float32Builder, Float64Builder, Int32Builder, Int64Builder,
    StringBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, TimeUnit};
use simd_json::{Node, StaticNode};

use spillway_connectors::timestamp::parse_timestamp_ms;

/// The column types the decoder fills (the Arrow types of `catalog::ColumnType`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ColumnKind {
    Utf8,
    Boolean,
    Int32,
    Int64,
    Float32,
    Float64,
    /// Milliseconds since the epoch, with the field's time zone (None for spillway tables).
    TimestampMs(Option<Arc<str>>),
}

impl ColumnKind {
    /// The kind of an Arrow type, or `None` when the decoder cannot fill it.
    pub(crate) fn of(data_type: &DataType) -> Option<ColumnKind> {
        Some(match data_type {
            DataType::Utf8 => ColumnKind::Utf8,
            DataType::Boolean => ColumnKind::Boolean,
            DataType::Int32 => ColumnKind::Int32,
            DataType::Int64 => ColumnKind::Int64,
            DataType::Float32 => ColumnKind::Float32,
            DataType::Float64 => ColumnKind::Float64,
            DataType::Timestamp(TimeUnit::Millisecond, zone) => {
                ColumnKind::TimestampMs(zone.clone())
            }
            _ => return None,
        })
    }

    /// The SQL name, for messages.
    pub(crate) fn sql_name(&self) -> &'static str {
        match self {
            ColumnKind::Utf8 => "STRING",
            ColumnKind::Boolean => "BOOLEAN",
            ColumnKind::Int32 => "INT",
            ColumnKind::Int64 => "BIGINT",
            ColumnKind::Float32 => "FLOAT",
            ColumnKind::Float64 => "DOUBLE",
            ColumnKind::TimestampMs(_) => "TIMESTAMP(3)",
        }
    }

    /// Converts the JSON value `node` (a scalar or the head of an object or array) at tape
    /// index `index` into a cell of this kind.
    #[inline]
    pub(crate) fn convert(&self, node: &Node<'_>, index: u32) -> Result<Cell, Mismatch> {
        let scalar = match node {
            Node::Static(scalar) => scalar,
            Node::String(s) => {
                return match self {
                    ColumnKind::Utf8 => Ok(Cell::Utf8 { node: index }),
                    ColumnKind::TimestampMs(_) => parse_timestamp_ms(s.as_bytes())
                        .map(Cell::Int64)
                        .ok_or(Mismatch::BadTimestamp),
                    _ => Err(Mismatch::Type),
                };
            }
            Node::Object { .. } | Node::Array { .. } => return Err(Mismatch::Type),
        };
        match (self, scalar) {
            (_, StaticNode::Null) => Ok(Cell::Null),
            (ColumnKind::Boolean, StaticNode::Bool(b)) => Ok(Cell::Boolean(*b)),
            (ColumnKind::Int64 | ColumnKind::TimestampMs(_), StaticNode::I64(v)) => {
                Ok(Cell::Int64(*v))
            }
            (ColumnKind::Int64 | ColumnKind::TimestampMs(_), StaticNode::U64(v)) => {
                i64::try_from(*v)
                    .map(Cell::Int64)
                    .map_err(|_| Mismatch::Range)
            }
            (ColumnKind::Int32, StaticNode::I64(v)) => i32::try_from(*v)
                .map(Cell::Int32)
                .map_err(|_| Mismatch::Range),
            (ColumnKind::Int32, StaticNode::U64(v)) => i32::try_from(*v)
                .map(Cell::Int32)
                .map_err(|_| Mismatch::Range),
            (ColumnKind::Float64, StaticNode::F64(v)) => Ok(Cell::Float64(*v)),
            (ColumnKind::Float64, StaticNode::I64(v)) => Ok(Cell::Float64(*v as f64)),
            (ColumnKind::Float64, StaticNode::U64(v)) => Ok(Cell::Float64(*v as f64)),
            (ColumnKind::Float32, StaticNode::F64(v)) => {
                let narrow = *v as f32;
                // A finite double beyond FLOAT's range would silently become an infinity.
                if narrow.is_infinite() {
                    Err(Mismatch::Range)
                } else {
                    Ok(Cell::Float32(narrow))
                }
            }
            (ColumnKind::Float32, StaticNode::I64(v)) => Ok(Cell::Float32(*v as f32)),
            (ColumnKind::Float32, StaticNode::U64(v)) => Ok(Cell::Float32(*v as f32)),
            _ => Err(Mismatch::Type),
        }
    }
}

/// Why a JSON value does not fit a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mismatch {
    /// The JSON type is not one the column accepts.
    Type,
    /// A number outside the column type's range.
    Range,
    /// A string that is not a timestamp.
    BadTimestamp,
}

/// The name of the JSON type of `node`, for messages.
pub(crate) fn json_type_name(node: &Node<'_>) -> &'static str {
    match node {
        Node::String(_) => "string",
        Node::Object { .. } => "object",
        Node::Array { .. } => "array",
        Node::Static(StaticNode::Null) => "null",
        Node::Static(StaticNode::Bool(_)) => "boolean",
        Node::Static(StaticNode::F64(_)) => "float",
        Node::Static(_) => "integer",
    }
}

/// One validated value of a record, waiting to be appended once the whole record is valid.
/// Strings stay in the tape: `node` is their tape index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Cell {
    Null,
    Boolean(bool),
    Int32(i32),
    Int64(i64),
    Float32(f32),
    Float64(f64),
    Utf8 { node: u32 },
}

/// An Arrow builder of one column.
pub(crate) enum ColumnBuilder {
    Utf8(StringBuilder),
    Boolean(BooleanBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    TimestampMs(TimestampMillisecondBuilder),
}

impl ColumnBuilder {
    /// A builder for `rows` rows holding about `string_bytes` bytes of strings.
    pub(crate) fn new(kind: &ColumnKind, rows: usize, string_bytes: usize) -> Self {
        match kind {
            ColumnKind::Utf8 => {
                ColumnBuilder::Utf8(StringBuilder::with_capacity(rows, string_bytes))
            }
            ColumnKind::Boolean => ColumnBuilder::Boolean(BooleanBuilder::with_capacity(rows)),
            ColumnKind::Int32 => ColumnBuilder::Int32(Int32Builder::with_capacity(rows)),
            ColumnKind::Int64 => ColumnBuilder::Int64(Int64Builder::with_capacity(rows)),
            ColumnKind::Float32 => ColumnBuilder::Float32(Float32Builder::with_capacity(rows)),
            ColumnKind::Float64 => ColumnBuilder::Float64(Float64Builder::with_capacity(rows)),
            ColumnKind::TimestampMs(zone) => ColumnBuilder::TimestampMs(
                TimestampMillisecondBuilder::with_capacity(rows).with_timezone_opt(zone.clone()),
            ),
        }
    }

    /// Appends `cell`, which [`ColumnKind::convert`] made for this column's kind from the
    /// tape `nodes`.
    #[inline]
    pub(crate) fn append(&mut self, cell: Cell, nodes: &[Node<'_>]) {
        match (self, cell) {
            (ColumnBuilder::Utf8(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Boolean(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Int32(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Int64(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Float32(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Float64(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::TimestampMs(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Utf8(b), Cell::Utf8 { node }) => match nodes.get(node as usize) {
                Some(Node::String(s)) => b.append_value(s),
                other => unreachable!("string cell points at {other:?}"),
            },
            (ColumnBuilder::Boolean(b), Cell::Boolean(v)) => b.append_value(v),
            (ColumnBuilder::Int32(b), Cell::Int32(v)) => b.append_value(v),
            (ColumnBuilder::Int64(b), Cell::Int64(v)) => b.append_value(v),
            (ColumnBuilder::Float32(b), Cell::Float32(v)) => b.append_value(v),
            (ColumnBuilder::Float64(b), Cell::Float64(v)) => b.append_value(v),
            (ColumnBuilder::TimestampMs(b), Cell::Int64(v)) => b.append_value(v),
            (_, cell) => unreachable!("cell {cell:?} does not match its column builder"),
        }
    }

    /// The column built so far; the builder is left empty.
    pub(crate) fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Utf8(b) => Arc::new(b.finish()),
            ColumnBuilder::Boolean(b) => Arc::new(b.finish()),
            ColumnBuilder::Int32(b) => Arc::new(b.finish()),
            ColumnBuilder::Int64(b) => Arc::new(b.finish()),
            ColumnBuilder::Float32(b) => Arc::new(b.finish()),
            ColumnBuilder::Float64(b) => Arc::new(b.finish()),
            ColumnBuilder::TimestampMs(b) => Arc::new(b.finish()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(v: i64) -> Node<'static> {
        Node::Static(StaticNode::I64(v))
    }

    #[test]
    fn conversions_follow_the_type_rules() {
        let big = Node::Static(StaticNode::U64(u64::MAX));
        assert_eq!(ColumnKind::Int64.convert(&int(-5), 0), Ok(Cell::Int64(-5)));
        assert_eq!(ColumnKind::Int64.convert(&big, 0), Err(Mismatch::Range));
        assert_eq!(
            ColumnKind::Int32.convert(&int(i64::from(i32::MAX) + 1), 0),
            Err(Mismatch::Range)
        );
        assert_eq!(ColumnKind::Int32.convert(&int(-7), 0), Ok(Cell::Int32(-7)));
        assert_eq!(
            ColumnKind::Float64.convert(&int(3), 0),
            Ok(Cell::Float64(3.0))
        );
        assert_eq!(
            ColumnKind::Float32.convert(&Node::Static(StaticNode::F64(1e300)), 0),
            Err(Mismatch::Range)
        );
        assert_eq!(
            ColumnKind::Int64.convert(&Node::Static(StaticNode::F64(1.0)), 0),
            Err(Mismatch::Type)
        );
        let ts = ColumnKind::TimestampMs(None);
        assert_eq!(
            ts.convert(&Node::String("1970-01-01 00:00:01"), 0),
            Ok(Cell::Int64(1000))
        );
        assert_eq!(
            ts.convert(&Node::String("yesterday"), 0),
            Err(Mismatch::BadTimestamp)
        );
        assert_eq!(
            ts.convert(&Node::Static(StaticNode::F64(1.5)), 0),
            Err(Mismatch::Type)
        );
        assert_eq!(
            ColumnKind::Utf8.convert(&Node::String("x"), 4),
            Ok(Cell::Utf8 { node: 4 })
        );
        assert_eq!(ColumnKind::Utf8.convert(&int(1), 0), Err(Mismatch::Type));
        assert_eq!(
            ColumnKind::Boolean.convert(&Node::Array { len: 0, count: 0 }, 0),
            Err(Mismatch::Type)
        );
        assert_eq!(
            ColumnKind::Boolean.convert(&Node::Static(StaticNode::Null), 0),
            Ok(Cell::Null)
        );
    }

    #[test]
    fn kinds_of_arrow_types() {
        assert_eq!(ColumnKind::of(&DataType::Int64), Some(ColumnKind::Int64));
        assert_eq!(ColumnKind::of(&DataType::Date32), None);
        assert_eq!(
            ColumnKind::of(&DataType::Timestamp(TimeUnit::Millisecond, None)),
            Some(ColumnKind::TimestampMs(None))
        );
        assert_eq!(
            ColumnKind::of(&DataType::Timestamp(TimeUnit::Second, None)),
            None
        );
    }
}
