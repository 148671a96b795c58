//! The `blackhole` sink: counts rows and writes nothing (for benchmarks).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::record_batch::RecordBatch;

use crate::error::Result;
use crate::table_options::check_options;
use crate::{Sink, SinkFactory};

/// Options the blackhole sink accepts.
pub const BLACKHOLE_SINK_OPTIONS: &[&str] = &["connector", "format"];

/// Builds the sinks of one `blackhole` table.
#[derive(Default)]
pub struct BlackholeSinkFactory {
    /// Rows written by all of its sinks.
    rows_total: Arc<AtomicU64>,
}

impl BlackholeSinkFactory {
    /// Reads the options of table `table`: only `connector` = 'blackhole'.
    pub fn from_options(table: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        check_options(table, options, "blackhole", "sink", BLACKHOLE_SINK_OPTIONS)?;
        Ok(BlackholeSinkFactory::default())
    }

    /// Rows written by all of this factory's sinks so far.
    pub fn rows_total(&self) -> u64 {
        self.rows_total.load(Ordering::Relaxed)
    }
}

/// A sink that only counts.
struct BlackholeSink {
    rows_written: u64,
    rows_total: Arc<AtomicU64>,
}

impl Sink for BlackholeSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let rows = batch.num_rows() as u64;
        self.rows_written += rows;
        self.rows_total.fetch_add(rows, Ordering::Relaxed);
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    fn rows_written(&self) -> u64 {
        self.rows_written
    }
}

impl SinkFactory for BlackholeSinkFactory {
    fn open(&self, _shard: usize) -> Result<Box<dyn Sink>> {
        Ok(Box::new(BlackholeSink {
            rows_written: 0,
            rows_total: Arc::clone(&self.rows_total),
        }))
    }

    fn close(&self) -> Result<()> {
        Ok(())
    }

    fn describe(&self) -> String {
        "blackhole (rows are counted, not written)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn counts_rows_per_sink_and_in_total() {
        let options: BTreeMap<String, String> =
            [("connector".to_string(), "blackhole".to_string())]
                .into_iter()
                .collect();
        let factory = BlackholeSinkFactory::from_options("t", &options).expect("opts");
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2, 3]))])
            .expect("batch");
        let mut a = factory.open(0).expect("open");
        let mut b = factory.open(1).expect("open");
        a.write(&batch).expect("write");
        a.write(&batch).expect("write");
        b.write(&batch).expect("write");
        assert_eq!(a.rows_written(), 6);
        assert_eq!(b.rows_written(), 3);
        assert_eq!(factory.rows_total(), 9);
        let mut bad = options.clone();
        bad.insert("path".to_string(), "x".to_string());
        assert!(BlackholeSinkFactory::from_options("t", &bad).is_err());
    }
}
