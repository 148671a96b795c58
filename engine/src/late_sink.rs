//! The late-data sink of a shard (`'late.sink' = 'TABLE'` on the source table): source rows
//! too late even for the allowed lateness are written there, from the shard that saw them,
//! with the columns the late table declares (each matches a source column by name and type;
//! the planner checks it).
//!
//! It is a second [`Sink`] of the shard built by the same connector registry, and follows the
//! checkpoint epochs like the main sink: the emitter prepares both at the cut (see
//! `Emitter::prepare_epoch`), and the committer commits both factories' epochs.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{RecordBatch, UInt32Array};
use arrow::datatypes::SchemaRef;
use spillway_connectors::{EpochPrepared, EpochSinkContext, PartitionInfo, Sink, SinkFactory};

use crate::error::{EngineError, Result};
use crate::plan::{Pipeline, Program};

/// Writes too-late source rows to the late table's sink.
pub struct LateSink {
    /// The late table's name (for errors).
    table: String,
    /// For each late-table column, its index in the batches handed to [`LateSink::write`].
    columns: Vec<usize>,
    sink: Box<dyn Sink>,
    /// Rows written.
    pub rows_out: u64,
}

impl LateSink {
    /// The late sink of table `table`, whose column `i` is column `columns[i]` of the
    /// batches given to [`LateSink::write`] (the source schema, joined columns after it);
    /// `sink` is what [`SinkFactory::open_late`] opened.
    pub fn new(table: &str, columns: Vec<usize>, sink: Box<dyn Sink>) -> Self {
        LateSink {
            table: table.to_string(),
            columns,
            sink,
            rows_out: 0,
        }
    }

    /// Writes rows `rows` of `batch` (the late table's columns of them).
    pub fn write(&mut self, batch: &RecordBatch, rows: &[u32]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let indices = UInt32Array::from(rows.to_vec());
        let columns = self
            .columns
            .iter()
            .map(|&c| arrow::compute::take(batch.column(c), &indices, None))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let schema = batch.schema().project(&self.columns)?;
        let out = RecordBatch::try_new(Arc::new(schema), columns).map_err(|e| {
            EngineError::Internal(format!(
                "late rows do not match the columns of table '{}': {e}",
                self.table
            ))
        })?;
        self.sink.write(&out)?;
        self.rows_out += rows.len() as u64;
        Ok(())
    }

    /// Ends the late sink's epoch `epoch` (see `Sink::prepare_epoch`).
    pub fn prepare_epoch(&mut self, epoch: u64) -> Result<EpochPrepared> {
        Ok(self.sink.prepare_epoch(epoch)?)
    }

    pub fn flush(&mut self) -> Result<()> {
        self.sink.flush()?;
        Ok(())
    }
}

/// The main sink's factory with the late table's beside it: every epoch call goes to both
/// (the late sink's epoch files live in `late/` of the sink's checkpoint directory), and each
/// shard opens the late sink with [`SinkFactory::open_late`].
pub struct WithLateSink {
    main: Arc<dyn SinkFactory>,
    late: Arc<dyn SinkFactory>,
    late_table: String,
    late_schema: SchemaRef,
}

/// Wraps `sink` (the job's sink factory) with the late-data sink of `pipeline`, if it has
/// one. `epochs`: the job checkpoints.
pub fn attach(
    program: &Program,
    pipeline: &Pipeline,
    sink: Arc<dyn SinkFactory>,
    epochs: bool,
) -> Result<Arc<dyn SinkFactory>> {
    let Some(name) = &pipeline.late.late_sink else {
        return Ok(sink);
    };
    let table = program.table(name).ok_or_else(|| {
        EngineError::Internal(format!("late table '{name}' missing from the plan"))
    })?;
    let late = crate::connector_registry::sink_factory(table, table.schema(), epochs)?;
    if late.commits_source_offsets()
        || (epochs && late.epoch_committed() && sink.commits_source_offsets())
    {
        return Err(EngineError::Config(format!(
            "late-data table '{name}': an exactly-once Kafka table as a late sink is not \
             supported yet (its transactions would commit the source offsets a second time); \
             use 'sink.delivery-guarantee' = 'at-least-once', or a filesystem table"
        )));
    }
    Ok(Arc::new(WithLateSink {
        main: sink,
        late,
        late_table: table.name.clone(),
        late_schema: table.schema(),
    }))
}

impl SinkFactory for WithLateSink {
    fn open(&self, shard: usize) -> spillway_connectors::Result<Box<dyn Sink>> {
        self.main.open(shard)
    }

    fn open_late(&self, shard: usize) -> spillway_connectors::Result<Option<Box<dyn Sink>>> {
        Ok(Some(Box::new(Relabel {
            inner: self.late.open(shard)?,
            schema: self.late_schema.clone(),
        })))
    }

    fn close(&self) -> spillway_connectors::Result<()> {
        let main = self.main.close();
        self.late.close()?;
        main
    }

    fn describe(&self) -> String {
        format!(
            "{}; too-late rows: table '{}', {}",
            self.main.describe(),
            self.late_table,
            self.late.describe()
        )
    }

    fn epoch_committed(&self) -> bool {
        self.main.epoch_committed()
    }

    fn commit_epochs(
        &self,
        epoch: u64,
        positions: &BTreeMap<PartitionInfo, i64>,
    ) -> spillway_connectors::Result<()> {
        self.late.commit_epochs(epoch, positions)?;
        self.main.commit_epochs(epoch, positions)
    }

    fn bind_job(&self, context: &EpochSinkContext) -> spillway_connectors::Result<()> {
        self.main.bind_job(context)?;
        let mut late = context.clone();
        late.dir = context.dir.join("late");
        self.late.bind_job(&late)
    }

    fn commits_source_offsets(&self) -> bool {
        self.main.commits_source_offsets()
    }

    fn recover_epochs(&self, committed: Option<u64>) -> spillway_connectors::Result<()> {
        self.late.recover_epochs(committed)?;
        self.main.recover_epochs(committed)
    }
}

/// Hands the late table's sink batches labelled with the late table's schema (the late rows
/// carry the source's field names and nullability).
struct Relabel {
    inner: Box<dyn Sink>,
    schema: SchemaRef,
}

impl Sink for Relabel {
    fn write(&mut self, batch: &RecordBatch) -> spillway_connectors::Result<()> {
        let relabelled = RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())
            .map_err(|e| {
                spillway_connectors::ConnectorError::Internal(format!(
                    "late rows do not fit the late table: {e}"
                ))
            })?;
        self.inner.write(&relabelled)
    }

    fn flush(&mut self) -> spillway_connectors::Result<()> {
        self.inner.flush()
    }

    fn rows_written(&self) -> u64 {
        self.inner.rows_written()
    }

    fn prepare_epoch(&mut self, epoch: u64) -> spillway_connectors::Result<EpochPrepared> {
        self.inner.prepare_epoch(epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Mutex;

    /// A sink keeping what it got.
    struct Keep(Arc<Mutex<Vec<RecordBatch>>>);
    impl Sink for Keep {
        fn write(&mut self, batch: &RecordBatch) -> spillway_connectors::Result<()> {
            self.0.lock().expect("lock").push(batch.clone());
            Ok(())
        }
        fn flush(&mut self) -> spillway_connectors::Result<()> {
            Ok(())
        }
        fn rows_written(&self) -> u64 {
            0
        }
    }

    #[test]
    fn writes_the_late_tables_columns_of_the_chosen_rows() {
        let input = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int64, true),
        ]));
        let late = Arc::new(Schema::new(vec![
            Field::new("V", DataType::Int64, true),
            Field::new("k", DataType::Utf8, true),
        ]));
        let got = Arc::new(Mutex::new(Vec::new()));
        let relabel = Relabel {
            inner: Box::new(Keep(got.clone())),
            schema: late.clone(),
        };
        let mut sink = LateSink::new("late", vec![1, 0], Box::new(relabel));
        let batch = RecordBatch::try_new(
            input,
            vec![
                Arc::new(StringArray::from(vec!["a", "b", "c"])),
                Arc::new(Int64Array::from(vec![1, 2, 3])),
            ],
        )
        .expect("batch");
        sink.write(&batch, &[2, 0]).expect("write");
        sink.write(&batch, &[]).expect("nothing");
        assert_eq!(sink.rows_out, 2);
        let got = got.lock().expect("lock");
        assert_eq!(got.len(), 1, "no batch for no rows");
        assert_eq!(got[0].schema(), late, "labelled as the late table");
        let v = got[0]
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("v");
        assert_eq!(v.values(), &[3, 1]);
        let k = got[0]
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("k");
        assert_eq!(k.value(0), "c");
    }
}
