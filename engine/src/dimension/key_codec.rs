//! Keys of a dimension table as bytes: arrow's row format of the PRIMARY KEY columns, so a
//! key of any column types (and several columns) is one comparable byte string, the same
//! for the changelog's rows and the stream's probe values (which the planner cast to the key
//! columns' types).

use arrow::array::{ArrayRef, AsArray, StringArray};
use arrow::datatypes::DataType;
use arrow::row::{RowConverter, Rows, SortField};

use crate::error::{EngineError, Result};

/// Encodes key columns into byte keys. A single STRING key column is its own encoding (its
/// UTF-8 bytes: shorter to hash and compare than the row format's 32-byte blocks).
pub struct KeyCodec {
    converter: RowConverter,
    width: usize,
    single_string: bool,
}

/// The keys of one batch: `key(i)` is None when a key column of row `i` is NULL (a NULL key
/// matches nothing, as in SQL).
pub struct EncodedKeys {
    encoded: Encoded,
    valid: Vec<bool>,
}

enum Encoded {
    Rows(Rows),
    Strings(StringArray),
}

impl EncodedKeys {
    /// The key of row `i`, unless one of its columns is NULL.
    #[inline]
    pub fn key(&self, i: usize) -> Option<&[u8]> {
        if !self.valid[i] {
            return None;
        }
        Some(match &self.encoded {
            Encoded::Rows(rows) => rows.row(i).data(),
            Encoded::Strings(strings) => strings.value(i).as_bytes(),
        })
    }
}

impl KeyCodec {
    /// A codec for keys of these column types, in key order.
    pub fn new(types: &[DataType]) -> Result<Self> {
        let fields = types.iter().map(|t| SortField::new(t.clone())).collect();
        let converter = RowConverter::new(fields)
            .map_err(|e| EngineError::Internal(format!("dimension key codec: {e}")))?;
        Ok(KeyCodec {
            converter,
            width: types.len(),
            single_string: types == [DataType::Utf8],
        })
    }

    /// Encodes the rows of `columns` (one array per key column, in key order).
    pub fn encode(&self, columns: &[ArrayRef]) -> Result<EncodedKeys> {
        if columns.len() != self.width {
            return Err(EngineError::Internal(format!(
                "dimension key of {} columns given {}",
                self.width,
                columns.len()
            )));
        }
        let n = columns.first().map_or(0, |c| c.len());
        let encoded = match columns {
            [single] if self.single_string => match single.as_string_opt::<i32>() {
                Some(strings) => Encoded::Strings(strings.clone()),
                None => {
                    return Err(EngineError::Internal(format!(
                        "dimension STRING key given {}",
                        single.data_type()
                    )))
                }
            },
            _ => Encoded::Rows(self.converter.convert_columns(columns)?),
        };
        let mut valid = vec![true; n];
        for column in columns {
            if column.null_count() > 0 {
                for (i, v) in valid.iter_mut().enumerate() {
                    *v &= column.is_valid(i);
                }
            }
        }
        Ok(EncodedKeys { encoded, valid })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{Int32Array, Int64Array, StringArray};
    use proptest::prelude::*;

    #[test]
    fn null_keys_match_nothing_and_equal_values_encode_equally() {
        let codec = KeyCodec::new(&[DataType::Utf8, DataType::Int64]).expect("codec");
        let a: ArrayRef = Arc::new(StringArray::from(vec![Some("x"), None, Some("x")]));
        let b: ArrayRef = Arc::new(Int64Array::from(vec![1, 1, 1]));
        let keys = codec.encode(&[a, b]).expect("encode");
        assert!(keys.key(1).is_none());
        assert_eq!(keys.key(0), keys.key(2));
        let wrong = codec.encode(&[Arc::new(Int32Array::from(vec![1]))]);
        assert!(wrong.is_err());
    }

    #[test]
    fn a_single_string_key_is_its_bytes_and_other_types_are_refused() {
        let codec = KeyCodec::new(&[DataType::Utf8]).expect("codec");
        let a: ArrayRef = Arc::new(StringArray::from(vec![Some("AAPL"), None]));
        let keys = codec.encode(&[a]).expect("encode");
        assert_eq!(keys.key(0), Some(&b"AAPL"[..]));
        assert_eq!(keys.key(1), None);
        let wrong: ArrayRef = Arc::new(Int64Array::from(vec![1]));
        assert!(codec.encode(&[wrong]).is_err());
    }

    proptest! {
        /// Two composite keys encode to the same bytes exactly when they are equal.
        #[test]
        fn encoding_is_injective(
            rows in proptest::collection::vec(("[a-c]{0,3}", -3i64..3), 1..40)
        ) {
            let codec = KeyCodec::new(&[DataType::Utf8, DataType::Int64]).expect("codec");
            let s: ArrayRef = Arc::new(StringArray::from(
                rows.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
            ));
            let n: ArrayRef = Arc::new(Int64Array::from(
                rows.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
            ));
            let keys = codec.encode(&[s, n]).expect("encode");
            for i in 0..rows.len() {
                for j in 0..rows.len() {
                    prop_assert_eq!(rows[i] == rows[j], keys.key(i) == keys.key(j));
                }
            }
        }
    }
}
