//! SQL types: sqlparser's `DataType` -> [`ColumnType`], and the coercion rules of the
//! planner (numeric widening INT < BIGINT < FLOAT < DOUBLE).

use arrow::datatypes::{DataType, TimeUnit};
use sqlparser::ast::{
    DataType as SqlType, ExactNumberInfo, ObjectName, TimezoneInfo, TypeModifier,
};

use crate::catalog::ColumnType;

/// Why a SQL type is not a spillway column type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TypeError {
    /// The type is not supported at all (DECIMAL, ARRAY, ROW, ...).
    Unsupported(String),
    /// A timestamp with a precision other than 0..=3.
    TimestampPrecision(u64),
}

impl TypeError {
    pub(crate) fn message(&self) -> String {
        match self {
            TypeError::Unsupported(name) => format!(
                "column type {name} is not supported (supported: STRING, VARCHAR, CHAR, BOOLEAN, INT, BIGINT, FLOAT, DOUBLE, TIMESTAMP(3), TIMESTAMP_LTZ(3))"
            ),
            TypeError::TimestampPrecision(p) => format!(
                "TIMESTAMP({p}) is not supported: spillway keeps milliseconds, use TIMESTAMP(3)"
            ),
        }
    }
}

/// Maps a parsed SQL type to the column type spillway stores it as.
pub(crate) fn column_type_of(sql: &SqlType) -> Result<ColumnType, TypeError> {
    let unsupported = || TypeError::Unsupported(sql.to_string());
    Ok(match sql {
        SqlType::String(_)
        | SqlType::Varchar(_)
        | SqlType::Char(_)
        | SqlType::Character(_)
        | SqlType::CharacterVarying(_)
        | SqlType::CharVarying(_)
        | SqlType::Text => ColumnType::String,
        SqlType::Boolean | SqlType::Bool => ColumnType::Boolean,
        SqlType::Int(None) | SqlType::Integer(None) => ColumnType::Int,
        SqlType::BigInt(None) => ColumnType::BigInt,
        SqlType::Float(ExactNumberInfo::None) | SqlType::Real => ColumnType::Float,
        SqlType::Double(ExactNumberInfo::None) | SqlType::DoublePrecision => ColumnType::Double,
        SqlType::Timestamp(precision, TimezoneInfo::None) => {
            check_timestamp_precision(*precision)?;
            ColumnType::Timestamp
        }
        SqlType::Custom(name, modifiers) if is_timestamp_ltz(name) => {
            let precision = match modifiers.as_slice() {
                [] => None,
                [TypeModifier::Number(n, _)] => Some(n.parse::<u64>().map_err(|_| unsupported())?),
                _ => return Err(unsupported()),
            };
            check_timestamp_precision(precision)?;
            ColumnType::Timestamp
        }
        _ => return Err(unsupported()),
    })
}

fn is_timestamp_ltz(name: &ObjectName) -> bool {
    matches!(name.0.as_slice(), [part] if part
        .as_ident()
        .is_some_and(|i| i.value.eq_ignore_ascii_case("TIMESTAMP_LTZ")))
}

fn check_timestamp_precision(precision: Option<u64>) -> Result<(), TypeError> {
    match precision {
        None | Some(0..=3) => Ok(()),
        Some(p) => Err(TypeError::TimestampPrecision(p)),
    }
}

/// The column type of an Arrow type produced by the planner (None for types that no column
/// can hold, e.g. the type of a bare NULL).
pub(crate) fn column_type_of_arrow(data_type: &DataType) -> Option<ColumnType> {
    Some(match data_type {
        DataType::Utf8 => ColumnType::String,
        DataType::Boolean => ColumnType::Boolean,
        DataType::Int32 => ColumnType::Int,
        DataType::Int64 => ColumnType::BigInt,
        DataType::Float32 => ColumnType::Float,
        DataType::Float64 => ColumnType::Double,
        DataType::Timestamp(TimeUnit::Millisecond, None) => ColumnType::Timestamp,
        _ => return None,
    })
}

/// The timestamp type of every TIMESTAMP column and window bound.
pub(crate) fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

/// The rank of a numeric type in the widening order INT < BIGINT < FLOAT < DOUBLE.
pub(crate) fn numeric_rank(data_type: &DataType) -> Option<u8> {
    match data_type {
        DataType::Int32 => Some(0),
        DataType::Int64 => Some(1),
        DataType::Float32 => Some(2),
        DataType::Float64 => Some(3),
        _ => None,
    }
}

pub(crate) fn is_integer(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Int32 | DataType::Int64)
}

/// The type both operands are cast to before a binary operator or in CASE branches: the
/// same type, the wider numeric type, or the other type when one side is an untyped NULL.
pub(crate) fn common_type(left: &DataType, right: &DataType) -> Option<DataType> {
    if left == right {
        return Some(left.clone());
    }
    if *left == DataType::Null {
        return Some(right.clone());
    }
    if *right == DataType::Null {
        return Some(left.clone());
    }
    match (numeric_rank(left), numeric_rank(right)) {
        (Some(l), Some(r)) => Some(if l >= r { left.clone() } else { right.clone() }),
        _ => None,
    }
}

/// Whether a value of type `from` may be written into a column of type `to` without an
/// explicit CAST: the same type or numeric widening.
pub(crate) fn is_implicit_widening(from: &DataType, to: &DataType) -> bool {
    from == to
        || *from == DataType::Null
        || matches!((numeric_rank(from), numeric_rank(to)), (Some(f), Some(t)) if f <= t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::ast::CharacterLength;

    #[test]
    fn supported_types_map() {
        assert_eq!(
            column_type_of(&SqlType::String(None)),
            Ok(ColumnType::String)
        );
        assert_eq!(
            column_type_of(&SqlType::Varchar(Some(CharacterLength::IntegerLength {
                length: 3,
                unit: None
            }))),
            Ok(ColumnType::String)
        );
        assert_eq!(column_type_of(&SqlType::Int(None)), Ok(ColumnType::Int));
        assert_eq!(column_type_of(&SqlType::Real), Ok(ColumnType::Float));
        assert_eq!(
            column_type_of(&SqlType::Timestamp(Some(3), TimezoneInfo::None)),
            Ok(ColumnType::Timestamp)
        );
        assert_eq!(
            column_type_of(&SqlType::Timestamp(Some(6), TimezoneInfo::None)),
            Err(TypeError::TimestampPrecision(6))
        );
        let decimal = SqlType::Decimal(ExactNumberInfo::PrecisionAndScale(10, 2));
        match column_type_of(&decimal) {
            Err(TypeError::Unsupported(name)) => assert_eq!(name, "DECIMAL(10,2)"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn widening_order() {
        assert_eq!(
            common_type(&DataType::Int32, &DataType::Int64),
            Some(DataType::Int64)
        );
        assert_eq!(
            common_type(&DataType::Float64, &DataType::Int32),
            Some(DataType::Float64)
        );
        assert_eq!(
            common_type(&DataType::Null, &DataType::Utf8),
            Some(DataType::Utf8)
        );
        assert_eq!(common_type(&DataType::Utf8, &DataType::Int32), None);
        assert!(is_implicit_widening(&DataType::Int64, &DataType::Float64));
        assert!(!is_implicit_widening(&DataType::Float64, &DataType::Int64));
        assert!(!is_implicit_widening(&DataType::Int32, &DataType::Utf8));
    }
}
