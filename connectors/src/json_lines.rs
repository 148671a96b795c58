//! The JSON-lines encoder of the sinks: one JSON object per row, newline-terminated.
//!
//! Keys are the field names in schema order. Strings are escaped per RFC 8259; integers are
//! written as integers; floats as the shortest decimal that reads back to the same value
//! (NaN and infinities as `null`, JSON has no spelling for them); timestamps as the string
//! `yyyy-MM-dd HH:mm:ss.SSS` (UTC); nulls as `null`.

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, GenericStringArray, PrimitiveArray, StringViewArray,
};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    Int8Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow::record_batch::RecordBatch;

use crate::error::{ConnectorError, Result};
use crate::timestamp::format_timestamp_ms;

/// Writes every row of `batch` to `out` (appending), one JSON object and `\n` per row.
pub fn write_batch(batch: &RecordBatch, out: &mut Vec<u8>) -> Result<()> {
    let writer = RowWriter::new(batch)?;
    for row in 0..batch.num_rows() {
        writer.write_row(row, out);
    }
    Ok(())
}

/// Writes row `row` of `batch` to `out` (appending) as one JSON object and `\n`.
///
/// For many rows of one batch, [`RowWriter`] looks at the columns once instead of per row.
pub fn write_row(batch: &RecordBatch, row: usize, out: &mut Vec<u8>) -> Result<()> {
    if row >= batch.num_rows() {
        return Err(ConnectorError::Internal(format!(
            "json_lines: row {row} of a batch of {} rows",
            batch.num_rows()
        )));
    }
    out.push(b'{');
    for (i, field) in batch.schema_ref().fields().iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(field.name().as_bytes(), out);
        out.push(b':');
        Column::new(field.name(), batch.column(i))?.write(row, out);
    }
    out.extend_from_slice(b"}\n");
    Ok(())
}

/// A batch prepared for writing rows as JSON: its columns downcast and its keys escaped once.
pub struct RowWriter<'a> {
    /// `{"k0":`, `,"k1":`, ... back to back; `key_ends[i]` ends the prefix of column `i`.
    keys: Vec<u8>,
    key_ends: Vec<usize>,
    columns: Vec<Column<'a>>,
    rows: usize,
}

impl<'a> RowWriter<'a> {
    /// Prepares `batch`; fails when a column has a type the JSON writer does not support.
    pub fn new(batch: &'a RecordBatch) -> Result<Self> {
        let schema = batch.schema_ref();
        let mut keys = Vec::new();
        let mut key_ends = Vec::with_capacity(schema.fields().len());
        let mut columns = Vec::with_capacity(schema.fields().len());
        for (i, field) in schema.fields().iter().enumerate() {
            keys.push(if i == 0 { b'{' } else { b',' });
            write_string(field.name().as_bytes(), &mut keys);
            keys.push(b':');
            key_ends.push(keys.len());
            columns.push(Column::new(field.name(), batch.column(i))?);
        }
        Ok(RowWriter {
            keys,
            key_ends,
            columns,
            rows: batch.num_rows(),
        })
    }

    /// Appends row `row` (which must be below the batch's row count) and `\n` to `out`.
    pub fn write_row(&self, row: usize, out: &mut Vec<u8>) {
        self.write_object(row, out);
        out.push(b'\n');
    }

    /// Appends row `row` (which must be below the batch's row count) as one JSON object
    /// without a newline (for Kafka keys and values).
    pub fn write_object(&self, row: usize, out: &mut Vec<u8>) {
        assert!(
            row < self.rows,
            "row {row} of a batch of {} rows",
            self.rows
        );
        if self.columns.is_empty() {
            out.extend_from_slice(b"{}");
            return;
        }
        let mut key_start = 0;
        for (column, &key_end) in self.columns.iter().zip(&self.key_ends) {
            out.extend_from_slice(&self.keys[key_start..key_end]);
            key_start = key_end;
            column.write(row, out);
        }
        out.push(b'}');
    }
}

/// One column, downcast to its concrete array type.
enum Column<'a> {
    Null,
    Boolean(&'a BooleanArray),
    Utf8(&'a GenericStringArray<i32>),
    LargeUtf8(&'a GenericStringArray<i64>),
    Utf8View(&'a StringViewArray),
    Int8(&'a PrimitiveArray<Int8Type>),
    Int16(&'a PrimitiveArray<Int16Type>),
    Int32(&'a PrimitiveArray<Int32Type>),
    Int64(&'a PrimitiveArray<Int64Type>),
    UInt8(&'a PrimitiveArray<UInt8Type>),
    UInt16(&'a PrimitiveArray<UInt16Type>),
    UInt32(&'a PrimitiveArray<UInt32Type>),
    UInt64(&'a PrimitiveArray<UInt64Type>),
    Float32(&'a PrimitiveArray<Float32Type>),
    Float64(&'a PrimitiveArray<Float64Type>),
    TimestampSecond(&'a PrimitiveArray<TimestampSecondType>),
    TimestampMillisecond(&'a PrimitiveArray<TimestampMillisecondType>),
    TimestampMicrosecond(&'a PrimitiveArray<TimestampMicrosecondType>),
    TimestampNanosecond(&'a PrimitiveArray<TimestampNanosecondType>),
}

impl<'a> Column<'a> {
    fn new(name: &str, array: &'a ArrayRef) -> Result<Self> {
        let column = match array.data_type() {
            DataType::Null => Some(Column::Null),
            DataType::Boolean => array.as_boolean_opt().map(Column::Boolean),
            DataType::Utf8 => array.as_string_opt::<i32>().map(Column::Utf8),
            DataType::LargeUtf8 => array.as_string_opt::<i64>().map(Column::LargeUtf8),
            DataType::Utf8View => array.as_string_view_opt().map(Column::Utf8View),
            DataType::Int8 => primitive(array).map(Column::Int8),
            DataType::Int16 => primitive(array).map(Column::Int16),
            DataType::Int32 => primitive(array).map(Column::Int32),
            DataType::Int64 => primitive(array).map(Column::Int64),
            DataType::UInt8 => primitive(array).map(Column::UInt8),
            DataType::UInt16 => primitive(array).map(Column::UInt16),
            DataType::UInt32 => primitive(array).map(Column::UInt32),
            DataType::UInt64 => primitive(array).map(Column::UInt64),
            DataType::Float32 => primitive(array).map(Column::Float32),
            DataType::Float64 => primitive(array).map(Column::Float64),
            DataType::Timestamp(TimeUnit::Second, _) => {
                primitive(array).map(Column::TimestampSecond)
            }
            DataType::Timestamp(TimeUnit::Millisecond, _) => {
                primitive(array).map(Column::TimestampMillisecond)
            }
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                primitive(array).map(Column::TimestampMicrosecond)
            }
            DataType::Timestamp(TimeUnit::Nanosecond, _) => {
                primitive(array).map(Column::TimestampNanosecond)
            }
            _ => None,
        };
        column.ok_or_else(|| {
            ConnectorError::Internal(format!(
                "json_lines: column '{name}' has type {}, which the JSON writer does not support",
                array.data_type()
            ))
        })
    }

    /// Appends the JSON value of `row`.
    #[inline]
    fn write(&self, row: usize, out: &mut Vec<u8>) {
        match self {
            Column::Null => out.extend_from_slice(b"null"),
            Column::Boolean(a) => {
                if a.is_null(row) {
                    out.extend_from_slice(b"null");
                } else if a.value(row) {
                    out.extend_from_slice(b"true");
                } else {
                    out.extend_from_slice(b"false");
                }
            }
            Column::Utf8(a) => write_opt(a.is_null(row), out, |out| {
                write_string(a.value(row).as_bytes(), out)
            }),
            Column::LargeUtf8(a) => write_opt(a.is_null(row), out, |out| {
                write_string(a.value(row).as_bytes(), out)
            }),
            Column::Utf8View(a) => write_opt(a.is_null(row), out, |out| {
                write_string(a.value(row).as_bytes(), out)
            }),
            Column::Int8(a) => write_integer(*a, row, out),
            Column::Int16(a) => write_integer(*a, row, out),
            Column::Int32(a) => write_integer(*a, row, out),
            Column::Int64(a) => write_integer(*a, row, out),
            Column::UInt8(a) => write_integer(*a, row, out),
            Column::UInt16(a) => write_integer(*a, row, out),
            Column::UInt32(a) => write_integer(*a, row, out),
            Column::UInt64(a) => write_integer(*a, row, out),
            Column::Float32(a) => write_opt(a.is_null(row), out, |out| {
                let v = a.value(row);
                if v.is_finite() {
                    out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
                } else {
                    out.extend_from_slice(b"null");
                }
            }),
            Column::Float64(a) => write_opt(a.is_null(row), out, |out| {
                let v = a.value(row);
                if v.is_finite() {
                    out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
                } else {
                    out.extend_from_slice(b"null");
                }
            }),
            Column::TimestampSecond(a) => write_opt(a.is_null(row), out, |out| {
                write_timestamp(a.value(row).saturating_mul(1_000), out)
            }),
            Column::TimestampMillisecond(a) => write_opt(a.is_null(row), out, |out| {
                write_timestamp(a.value(row), out)
            }),
            Column::TimestampMicrosecond(a) => write_opt(a.is_null(row), out, |out| {
                write_timestamp(a.value(row).div_euclid(1_000), out)
            }),
            Column::TimestampNanosecond(a) => write_opt(a.is_null(row), out, |out| {
                write_timestamp(a.value(row).div_euclid(1_000_000), out)
            }),
        }
    }
}

fn primitive<T: ArrowPrimitiveType>(array: &ArrayRef) -> Option<&PrimitiveArray<T>> {
    array.as_primitive_opt::<T>()
}

#[inline]
fn write_opt(is_null: bool, out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    if is_null {
        out.extend_from_slice(b"null");
    } else {
        write(out);
    }
}

#[inline]
fn write_integer<T>(array: &PrimitiveArray<T>, row: usize, out: &mut Vec<u8>)
where
    T: ArrowPrimitiveType,
    T::Native: itoa::Integer,
{
    if array.is_null(row) {
        out.extend_from_slice(b"null");
    } else {
        out.extend_from_slice(itoa::Buffer::new().format(array.value(row)).as_bytes());
    }
}

#[inline]
fn write_timestamp(ms: i64, out: &mut Vec<u8>) {
    out.push(b'"');
    format_timestamp_ms(ms, out);
    out.push(b'"');
}

/// What each byte needs when written inside a JSON string: 0 = itself, `u` = `\u00XX`,
/// anything else = that letter after a backslash.
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// Appends `s` (UTF-8) as a quoted JSON string escaped per RFC 8259.
pub fn write_string(s: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push(b'"');
    let mut run_start = 0;
    for (i, &b) in s.iter().enumerate() {
        let escape = ESCAPE[b as usize];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(&s[run_start..i]);
        run_start = i + 1;
        if escape == b'u' {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', escape]);
        }
    }
    out.extend_from_slice(&s[run_start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array, StringArray,
        TimestampMillisecondArray, TimestampNanosecondArray,
    };
    use arrow::datatypes::{Field, Schema};
    use proptest::prelude::*;
    use std::sync::Arc;

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(name, a)| Field::new(*name, a.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .expect("valid batch")
    }

    fn lines(batch: &RecordBatch) -> String {
        let mut out = Vec::new();
        write_batch(batch, &mut out).expect("writes");
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn writes_every_type_in_schema_order() {
        let b = batch(vec![
            (
                "symbol",
                Arc::new(StringArray::from(vec![Some("AAPL"), None])) as ArrayRef,
            ),
            (
                "price",
                Arc::new(Float64Array::from(vec![Some(187.25), Some(0.1)])),
            ),
            (
                "volume",
                Arc::new(Int64Array::from(vec![
                    Some(300),
                    Some(-9_007_199_254_740_993),
                ])),
            ),
            (
                "qty",
                Arc::new(Int32Array::from(vec![None, Some(i32::MIN)])),
            ),
            (
                "ratio",
                Arc::new(Float32Array::from(vec![Some(0.1f32), None])),
            ),
            (
                "ok",
                Arc::new(BooleanArray::from(vec![Some(true), Some(false)])),
            ),
            (
                "ts",
                Arc::new(TimestampMillisecondArray::from(vec![
                    Some(1_700_000_000_123),
                    None,
                ])),
            ),
        ]);
        assert_eq!(
            lines(&b),
            "{\"symbol\":\"AAPL\",\"price\":187.25,\"volume\":300,\"qty\":null,\"ratio\":0.1,\"ok\":true,\"ts\":\"2023-11-14 22:13:20.123\"}\n\
             {\"symbol\":null,\"price\":0.1,\"volume\":-9007199254740993,\"qty\":-2147483648,\"ratio\":null,\"ok\":false,\"ts\":null}\n"
        );
        let mut object = Vec::new();
        RowWriter::new(&b)
            .expect("supported")
            .write_object(0, &mut object);
        assert_eq!(
            Some(object.as_slice()),
            lines(&b).lines().next().map(str::as_bytes)
        );
        let mut one = Vec::new();
        write_row(&b, 1, &mut one).expect("writes");
        assert_eq!(
            one,
            lines(&b)
                .lines()
                .nth(1)
                .map(|l| format!("{l}\n"))
                .unwrap_or_default()
                .as_bytes()
        );
        assert!(
            write_row(&b, 2, &mut one).is_err(),
            "row past the end is an error"
        );
    }

    /// The raw text of the value after `"key":` up to the next `,` or `}` (numbers only).
    fn number_text<'t>(line: &'t str, key: &str) -> &'t str {
        let pattern = format!("\"{key}\":");
        let start = line.find(&pattern).expect("key present") + pattern.len();
        let len = line[start..].find([',', '}']).expect("value ends");
        &line[start..start + len]
    }

    #[test]
    fn non_finite_floats_are_null_and_floats_round_trip() {
        let doubles = [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e300,
            -0.0,
            5e-324,
            0.1,
        ];
        let floats = [
            f32::NAN,
            f32::INFINITY,
            3.4028235e38,
            1.0,
            1e-45,
            16777216.0,
            0.1,
        ];
        let b = batch(vec![
            (
                "d",
                Arc::new(Float64Array::from(doubles.to_vec())) as ArrayRef,
            ),
            ("f", Arc::new(Float32Array::from(floats.to_vec()))),
        ]);
        let text = lines(&b);
        for (i, line) in text.lines().enumerate() {
            serde_json::from_str::<serde_json::Value>(line).expect("valid JSON");
            let d = number_text(line, "d");
            if doubles[i].is_finite() {
                assert_eq!(
                    d.parse::<f64>().map(f64::to_bits),
                    Ok(doubles[i].to_bits()),
                    "{line}"
                );
            } else {
                assert_eq!(d, "null", "{line}");
            }
            let f = number_text(line, "f");
            if floats[i].is_finite() {
                assert_eq!(
                    f.parse::<f32>().map(f32::to_bits),
                    Ok(floats[i].to_bits()),
                    "{line}"
                );
            } else {
                assert_eq!(f, "null", "{line}");
            }
        }
        let last = text.lines().last().unwrap_or_default();
        assert_eq!(
            last, "{\"d\":0.1,\"f\":0.1}",
            "shortest decimals, f32 as f32"
        );
    }

    #[test]
    fn escapes_strings_per_rfc_8259() {
        let mut out = Vec::new();
        write_string(
            "a\"b\\c\nd\te\r\u{8}\u{c}\u{1}\u{1f}\u{7f}é😀/".as_bytes(),
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).expect("UTF-8"),
            "\"a\\\"b\\\\c\\nd\\te\\r\\b\\f\\u0001\\u001f\u{7f}é😀/\""
        );
        let b = batch(vec![(
            "we\"ird\nkey",
            Arc::new(StringArray::from(vec!["x"])) as ArrayRef,
        )]);
        assert_eq!(lines(&b), "{\"we\\\"ird\\nkey\":\"x\"}\n");
    }

    #[test]
    fn timestamps_of_other_units_and_empty_schema() {
        let b = batch(vec![(
            "ts",
            Arc::new(TimestampNanosecondArray::from(vec![-1i64, 1_500_000_000])) as ArrayRef,
        )]);
        assert_eq!(
            lines(&b),
            "{\"ts\":\"1969-12-31 23:59:59.999\"}\n{\"ts\":\"1970-01-01 00:00:01.500\"}\n"
        );
        let empty = RecordBatch::try_new_with_options(
            Arc::new(Schema::empty()),
            vec![],
            &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(2)),
        )
        .expect("valid batch");
        assert_eq!(lines(&empty), "{}\n{}\n");
    }

    #[test]
    fn unsupported_type_is_an_error() {
        let b = batch(vec![(
            "d",
            Arc::new(arrow::array::Date32Array::from(vec![1])) as ArrayRef,
        )]);
        let err = write_batch(&b, &mut Vec::new()).expect_err("Date32 unsupported");
        assert!(err.to_string().contains("'d'"), "{err}");
    }

    proptest! {
        #[test]
        fn rows_read_back_with_serde_json(
            rows in proptest::collection::vec(
                (proptest::option::of(any::<String>()), proptest::option::of(any::<f64>()),
                 proptest::option::of(any::<i64>()), proptest::option::of(any::<bool>())),
                0..20)
        ) {
            let b = batch(vec![
                ("s", Arc::new(StringArray::from(rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>())) as ArrayRef),
                ("d", Arc::new(Float64Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>()))),
                ("i", Arc::new(Int64Array::from(rows.iter().map(|r| r.2).collect::<Vec<_>>()))),
                ("b", Arc::new(BooleanArray::from(rows.iter().map(|r| r.3).collect::<Vec<_>>()))),
            ]);
            let text = lines(&b);
            prop_assert_eq!(text.lines().count(), rows.len());
            for (line, row) in text.lines().zip(&rows) {
                let v: serde_json::Value = serde_json::from_str(line).expect("valid JSON");
                let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
                prop_assert_eq!(keys.len(), 4);
                prop_assert_eq!(v["s"].as_str(), row.0.as_deref());
                match row.1.filter(|d| d.is_finite()) {
                    Some(d) => prop_assert_eq!(number_text(line, "d").parse::<f64>().map(f64::to_bits), Ok(d.to_bits())),
                    None => prop_assert!(v["d"].is_null()),
                }
                prop_assert_eq!(v["i"].as_i64(), row.2);
                prop_assert_eq!(v["b"].as_bool(), row.3);
            }
        }
    }
}
