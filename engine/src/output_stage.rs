//! The last operators before a sink: HAVING over aggregated rows, then the projection onto
//! the sink table's columns, and the sink's `row_kind` column (if declared) filled with the
//! rows' kind.

use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::SchemaRef;

use crate::error::{EngineError, Result};
use crate::expr::{evaluate_predicate, filter_batch};
use crate::plan::Expr;
use crate::row_kind::RowKind;

pub struct OutputStage {
    having: Option<Expr>,
    projection: Vec<Expr>,
    schema: SchemaRef,
    /// The sink column filled with the row kind (`crate::row_kind`), if the sink declares one.
    row_kind_column: Option<usize>,
}

impl OutputStage {
    pub fn new(having: Option<Expr>, projection: Vec<Expr>, schema: SchemaRef) -> Self {
        OutputStage {
            having,
            projection,
            schema,
            row_kind_column: None,
        }
    }

    /// Fills sink column `column` (a `row_kind STRING` column; its projection is a
    /// placeholder) with the kind of the rows.
    pub fn with_row_kind_column(mut self, column: Option<usize>) -> Self {
        self.row_kind_column = column;
        self
    }

    /// Applies HAVING (if any) and the projection; returns None when no row is left.
    pub fn apply(&self, batch: &RecordBatch) -> Result<Option<RecordBatch>> {
        self.apply_kind(batch, RowKind::Insert)
    }

    /// [`OutputStage::apply`] for rows of kind `kind`.
    pub fn apply_kind(&self, batch: &RecordBatch, kind: RowKind) -> Result<Option<RecordBatch>> {
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
        let mut columns = self
            .projection
            .iter()
            .map(|e| e.evaluate(input))
            .collect::<Result<Vec<_>>>()?;
        if let Some(c) = self.row_kind_column {
            let kinds =
                StringArray::from_iter_values(std::iter::repeat_n(kind.as_str(), input.num_rows()));
            let slot = columns.get_mut(c).ok_or_else(|| {
                EngineError::Internal(format!("row_kind column {c} is not a sink column"))
            })?;
            *slot = Arc::new(kinds);
        }
        let out = RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| {
            EngineError::Internal(format!("projection does not match the sink schema: {e}"))
        })?;
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Literal;
    use arrow::array::{Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn the_row_kind_column_gets_the_kind_of_the_rows() {
        let input = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let out = Arc::new(Schema::new(vec![
            Field::new("v", DataType::Int64, true),
            Field::new("row_kind", DataType::Utf8, true),
        ]));
        let projection = vec![
            Expr::Column {
                index: 0,
                name: "v".into(),
                data_type: DataType::Int64,
            },
            Expr::Literal(Literal::Utf8(RowKind::Insert.as_str().into())),
        ];
        let stage = OutputStage::new(None, projection, out).with_row_kind_column(Some(1));
        let batch = RecordBatch::try_new(input, vec![Arc::new(Int64Array::from(vec![1, 2]))])
            .expect("batch");
        for kind in [RowKind::Insert, RowKind::UpdateAfter, RowKind::Delete] {
            let got = stage
                .apply_kind(&batch, kind)
                .expect("apply")
                .expect("rows");
            let kinds = got
                .column(1)
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("strings");
            assert_eq!(kinds.len(), 2);
            assert!(kinds.iter().all(|k| k == Some(kind.as_str())), "{kind:?}");
        }
    }
}
