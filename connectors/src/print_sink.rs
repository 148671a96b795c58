//! The `print` sink: every shard's rows as JSON lines on stdout, live.
//!
//! One writer thread holds the stdout lock and flushes after every chunk, so rows of
//! different shards never interleave within a line and appear as soon as they are written.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::error::Result;
use crate::table_options::check_options;
use crate::writer_thread::{WriterSink, WriterTarget, WriterThread};
use crate::{Sink, SinkFactory};

/// Options the print sink accepts (`format` only as 'json').
pub const PRINT_SINK_OPTIONS: &[&str] = &["connector", "format"];

/// Where a print sink writes before its writer thread starts.
enum PendingTarget {
    Stdout,
    Custom(Box<dyn Write + Send>),
}

/// Builds the sinks of one `print` table.
pub struct PrintSinkFactory {
    /// The target, until the first `open` starts the writer thread with it.
    pending: Mutex<Option<PendingTarget>>,
    writer: Mutex<Option<Arc<WriterThread>>>,
}

impl PrintSinkFactory {
    /// Reads the options of table `table`: only `connector` = 'print' (and `format` = 'json').
    pub fn from_options(table: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        check_options(table, options, "print", "sink", PRINT_SINK_OPTIONS)?;
        Ok(PrintSinkFactory {
            pending: Mutex::new(Some(PendingTarget::Stdout)),
            writer: Mutex::new(None),
        })
    }

    /// A print sink writing to `out` instead of stdout (for tests and embedding).
    pub fn to_writer(out: Box<dyn Write + Send>) -> Self {
        PrintSinkFactory {
            pending: Mutex::new(Some(PendingTarget::Custom(out))),
            writer: Mutex::new(None),
        }
    }

    fn writer(&self) -> Result<Arc<WriterThread>> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = writer.as_ref() {
            return Ok(Arc::clone(w));
        }
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let target = match pending {
            Some(PendingTarget::Custom(out)) => WriterTarget::Custom {
                name: "print output".to_string(),
                out,
            },
            Some(PendingTarget::Stdout) | None => WriterTarget::Stdout,
        };
        let started = Arc::new(WriterThread::spawn(target)?);
        *writer = Some(Arc::clone(&started));
        Ok(started)
    }
}

impl SinkFactory for PrintSinkFactory {
    fn open(&self, _shard: usize) -> Result<Box<dyn Sink>> {
        Ok(Box::new(WriterSink::new(self.writer()?.handle())))
    }

    fn close(&self) -> Result<()> {
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match writer {
            Some(w) => w.close(),
            None => Ok(()),
        }
    }

    fn describe(&self) -> String {
        "print to stdout (JSON lines)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;

    /// A writer collecting into a shared buffer.
    struct Collect(Arc<Mutex<Vec<u8>>>);

    impl Write for Collect {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn prints_one_json_line_per_row() {
        let collected = Arc::new(Mutex::new(Vec::new()));
        let factory = PrintSinkFactory::to_writer(Box::new(Collect(Arc::clone(&collected))));
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from(vec![Some(1), None, Some(3)]))],
        )
        .expect("batch");
        let mut sink = factory.open(0).expect("open");
        sink.write(&batch).expect("write");
        sink.flush().expect("flush");
        assert_eq!(sink.rows_written(), 3);
        assert_eq!(
            String::from_utf8(collected.lock().expect("lock").clone()).expect("utf8"),
            "{\"n\":1}\n{\"n\":null}\n{\"n\":3}\n"
        );
        drop(sink);
        factory.close().expect("close");
    }

    #[test]
    fn only_connector_and_json_format_are_accepted() {
        let ok: BTreeMap<String, String> = [("connector".to_string(), "print".to_string())]
            .into_iter()
            .collect();
        assert!(PrintSinkFactory::from_options("t", &ok).is_ok());
        let mut bad = ok.clone();
        bad.insert("print-identifier".to_string(), "x".to_string());
        let err = PrintSinkFactory::from_options("t", &bad)
            .err()
            .expect("unknown key");
        assert!(err.to_string().contains("'print-identifier'"), "{err}");
    }
}
