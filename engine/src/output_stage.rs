//! The last operators before a sink: HAVING over aggregated rows, then the projection onto
//! the sink table's columns.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::error::{EngineError, Result};
use crate::expr::{evaluate_predicate, filter_batch};
use crate::plan::Expr;

pub struct OutputStage {
    having: Option<Expr>,
    projection: Vec<Expr>,
    schema: SchemaRef,
}

impl OutputStage {
    pub fn new(having: Option<Expr>, projection: Vec<Expr>, schema: SchemaRef) -> Self {
        OutputStage {
            having,
            projection,
            schema,
        }
    }

    /// Applies HAVING (if any) and the projection; returns None when no row is left.
    pub fn apply(&self, batch: &RecordBatch) -> Result<Option<RecordBatch>> {
        let filtered;
        let input = match &self.having {
            Some(h) => {
                let mask = evaluate_predicate(h, batch)?;
                filtered = filter_batch(batch, &mask)?;
                &filtered
            }
            None => batch,
        };
        if input.num_rows() == 0 {
            return Ok(None);
        }
        let columns = self
            .projection
            .iter()
            .map(|e| e.evaluate(input))
            .collect::<Result<Vec<_>>>()?;
        let out = RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| {
            EngineError::Internal(format!("projection does not match the sink schema: {e}"))
        })?;
        Ok(Some(out))
    }
}
