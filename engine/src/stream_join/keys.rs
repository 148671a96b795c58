//! Join keys as bytes (arrow's row format), their hash (which shard owns a key), and whole
//! rows as bytes (the per-window DISTINCT of a window join's sides).

use std::hash::{Hash, Hasher};

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::row::{RowConverter, Rows, SortField};

use crate::error::{EngineError, Result};
use crate::plan::Expr;

/// Encodes the join key of one side's rows.
pub struct KeyEncoder {
    exprs: Vec<Expr>,
    converter: RowConverter,
}

impl KeyEncoder {
    /// An encoder of `exprs` (over the side's output schema). Both sides' encoders of one
    /// join encode equal keys to equal bytes: the planner gave their keys the same types.
    pub fn new(exprs: Vec<Expr>) -> Result<Self> {
        let fields = exprs
            .iter()
            .map(|e| SortField::new(e.data_type()))
            .collect();
        let converter = RowConverter::new(fields)?;
        Ok(KeyEncoder { exprs, converter })
    }

    /// The key columns of `batch`.
    pub fn columns(&self, batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        self.exprs.iter().map(|e| e.evaluate(batch)).collect()
    }

    /// The keys of `batch`'s rows, and per row whether the key holds a NULL (such a row
    /// matches nothing).
    pub fn encode(&self, batch: &RecordBatch) -> Result<(Rows, Vec<bool>)> {
        let columns = self.columns(batch)?;
        let mut has_null = vec![false; batch.num_rows()];
        for c in &columns {
            if c.null_count() > 0 {
                for (i, flag) in has_null.iter_mut().enumerate() {
                    *flag |= c.is_null(i);
                }
            }
        }
        let rows = self.converter.convert_columns(&columns)?;
        Ok((rows, has_null))
    }
}

/// Every column of `batch`'s rows as bytes (for DISTINCT).
pub fn encode_whole_rows(batch: &RecordBatch) -> Result<Rows> {
    let fields = batch
        .schema()
        .fields()
        .iter()
        .map(|f| SortField::new(f.data_type().clone()))
        .collect();
    let converter = RowConverter::new(fields)?;
    converter
        .convert_columns(batch.columns())
        .map_err(|e| EngineError::Internal(format!("cannot encode join rows: {e}")))
}

/// A stable hash of key bytes (the same on every shard of a run).
pub fn key_hash(key: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// The shard that owns a key.
pub fn owner_of(key: &[u8], shards: usize) -> usize {
    (key_hash(key) % shards.max(1) as u64) as usize
}
