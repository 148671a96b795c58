//! The join operator: appends the dimension table's columns to a batch of the stream.
//!
//! For each row, the probe key (the planner's expressions over the stream's columns, cast to
//! the key columns' types) is encoded and looked up in the shard's own copy of the table:
//! the latest version, or the version valid at the row's event time (temporal join). A
//! LEFT JOIN keeps rows without a match (dimension columns NULL); an inner join drops them.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::{Schema, SchemaRef, TimestampMillisecondType};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};

use super::dimension_table::DimensionTable;
use super::key_codec::KeyCodec;
use super::row_store::{RowRef, NULL_ROW};
use crate::error::{EngineError, Result};
use crate::plan::{JoinKind, JoinPlan};

/// Counts of a shard's join.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinStats {
    /// Stream rows looked up.
    pub rows_in: u64,
    /// Rows that found a dimension row.
    pub rows_matched: u64,
}

/// One shard's join operator.
pub struct LookupJoin {
    plan: JoinPlan,
    codec: KeyCodec,
    joined_schema: SchemaRef,
    refs: Vec<RowRef>,
    keep: Vec<u32>,
    stats: JoinStats,
}

impl LookupJoin {
    /// The operator of `plan`; `stream` is the stream table's schema and `dimension` the
    /// dimension table's.
    pub fn new(plan: &JoinPlan, stream: &SchemaRef, dimension: &SchemaRef) -> Result<Self> {
        if stream.fields().len() != plan.source_columns {
            return Err(EngineError::Internal(format!(
                "join planned over {} stream columns, the stream has {}",
                plan.source_columns,
                stream.fields().len()
            )));
        }
        let mut fields: Vec<_> = stream.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.extend(
            dimension
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true)),
        );
        let key_types: Vec<_> = plan.probe_keys.iter().map(|e| e.data_type()).collect();
        Ok(LookupJoin {
            plan: plan.clone(),
            codec: KeyCodec::new(&key_types)?,
            joined_schema: Arc::new(Schema::new(fields)),
            refs: Vec::new(),
            keep: Vec::new(),
            stats: JoinStats::default(),
        })
    }

    /// The schema of the joined batches.
    pub fn joined_schema(&self) -> &SchemaRef {
        &self.joined_schema
    }

    /// Counts so far.
    pub fn stats(&self) -> &JoinStats {
        &self.stats
    }

    /// Joins a batch of the stream with `table`.
    pub fn apply(&mut self, batch: &RecordBatch, table: &DimensionTable) -> Result<RecordBatch> {
        let n = batch.num_rows();
        let keys = self
            .plan
            .probe_keys
            .iter()
            .map(|e| e.evaluate(batch))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let keys = self.codec.encode(&keys)?;
        let times = match self.plan.version_time_column {
            Some(c) => Some(
                batch
                    .column(c)
                    .as_primitive_opt::<TimestampMillisecondType>()
                    .ok_or_else(|| {
                        EngineError::Internal(format!(
                            "temporal join time column {c} is not TIMESTAMP(3)"
                        ))
                    })?,
            ),
            None => None,
        };
        self.refs.clear();
        self.keep.clear();
        let inner = self.plan.kind == JoinKind::Inner;
        for i in 0..n {
            let at_ms = times.map_or(0, |t| t.value(i));
            let found = keys.key(i).and_then(|k| table.lookup(k, at_ms));
            match found {
                Some(r) => {
                    self.refs.push(r);
                    if inner {
                        self.keep.push(i as u32);
                    }
                }
                None if !inner => self.refs.push(NULL_ROW),
                None => {}
            }
        }
        self.stats.rows_in += n as u64;
        self.stats.rows_matched += self.refs.iter().filter(|r| **r != NULL_ROW).count() as u64;
        let mut columns: Vec<ArrayRef> = if inner && self.keep.len() < n {
            let indices = UInt32Array::from(std::mem::take(&mut self.keep));
            let taken = batch
                .columns()
                .iter()
                .map(|c| take(c.as_ref(), &indices, None))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            self.keep = indices.values().to_vec();
            taken
        } else {
            batch.columns().to_vec()
        };
        columns.extend(table.store.gather_rows(&self.refs)?);
        let options = RecordBatchOptions::new().with_row_count(Some(self.refs.len()));
        RecordBatch::try_new_with_options(self.joined_schema.clone(), columns, &options).map_err(
            |e| EngineError::Internal(format!("joined columns do not fit the joined schema: {e}")),
        )
    }
}

#[cfg(test)]
#[path = "lookup_join_tests.rs"]
mod tests;
