//! The `filesystem` sink: every shard's rows as JSON lines into one file.
//!
//! All shards' sinks send their encoded rows to one [`WriterThread`], so the output is one
//! file whose lines are whole rows. The file (and its parent directories) is created and
//! truncated when the first shard opens its sink; `close` flushes, fsyncs and reports any
//! I/O error (with the path).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::error::{ConnectorError, Result};
use crate::writer_thread::{WriterSink, WriterTarget, WriterThread};
use crate::{Sink, SinkFactory};

/// Options the filesystem sink accepts.
pub const FILE_SINK_OPTIONS: &[&str] = &["connector", "path", "format"];

/// Builds the sinks of one `filesystem` table.
pub struct FileSinkFactory {
    table: String,
    path: PathBuf,
    /// Started by the first `open` (so building the factory, e.g. for EXPLAIN, touches no file).
    writer: Mutex<Option<Arc<WriterThread>>>,
}

impl FileSinkFactory {
    /// Reads the options of table `table`: `path` (required), `format` = 'json'.
    pub fn from_options(table: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        crate::table_options::check_options(
            table,
            options,
            "filesystem",
            "sink",
            FILE_SINK_OPTIONS,
        )?;
        let path = match options.get("path").map(|p| p.trim()) {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => {
                return Err(ConnectorError::config(
                    table,
                    "option 'path' (the JSON-lines file to write) is required by connector \
                     'filesystem'",
                ))
            }
        };
        Ok(FileSinkFactory {
            table: table.to_string(),
            path,
            writer: Mutex::new(None),
        })
    }

    /// The writer thread, started (file created and truncated) on first use.
    fn writer(&self) -> Result<Arc<WriterThread>> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = writer.as_ref() {
            return Ok(Arc::clone(w));
        }
        let started =
            WriterThread::spawn(WriterTarget::File(self.path.clone())).map_err(|e| match e {
                ConnectorError::Io { context, source } => {
                    ConnectorError::io(format!("table '{}': {context}", self.table), source)
                }
                other => other,
            })?;
        let started = Arc::new(started);
        *writer = Some(Arc::clone(&started));
        Ok(started)
    }
}

impl SinkFactory for FileSinkFactory {
    fn open(&self, _shard: usize) -> Result<Box<dyn Sink>> {
        Ok(Box::new(WriterSink::new(self.writer()?.handle())))
    }

    /// Flushes, fsyncs and closes the file (creating it empty if no shard wrote).
    fn close(&self) -> Result<()> {
        self.writer()?.close()
    }

    fn describe(&self) -> String {
        format!("filesystem file '{}' (JSON lines)", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;

    fn options(path: &str) -> BTreeMap<String, String> {
        [
            ("connector", "filesystem"),
            ("path", path),
            ("format", "json"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn batch(shard: usize, rows: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
            Field::new("price", DataType::Float64, false),
        ]));
        let symbols: Vec<String> = (0..rows).map(|r| format!("S{shard}-{r}")).collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(symbols)),
                Arc::new(Int64Array::from_iter_values((0..rows).map(|r| r as i64))),
                Arc::new(Float64Array::from_iter_values(
                    (0..rows).map(|r| r as f64 + 0.5),
                )),
            ],
        )
        .expect("batch")
    }

    #[test]
    fn several_sinks_write_one_file_with_every_row() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("deep/er/out.jsonl");
        let path_text = path.to_str().expect("utf8").to_string();
        let factory = FileSinkFactory::from_options("out", &options(&path_text)).expect("opts");
        assert!(!path.exists(), "building the factory creates nothing");
        std::thread::scope(|scope| {
            for shard in 0..3 {
                let factory = &factory;
                scope.spawn(move || {
                    let mut sink = factory.open(shard).expect("open");
                    for _ in 0..5 {
                        sink.write(&batch(shard, 40)).expect("write");
                    }
                    sink.flush().expect("flush");
                    assert_eq!(sink.rows_written(), 200);
                });
            }
        });
        factory.close().expect("close");
        let text = std::fs::read_to_string(&path).expect("read");
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort();
        let mut expected = Vec::new();
        for shard in 0..3 {
            for _ in 0..5 {
                for r in 0..40 {
                    expected.push(format!(
                        "{{\"symbol\":\"S{shard}-{r}\",\"n\":{r},\"price\":{}}}",
                        r as f64 + 0.5
                    ));
                }
            }
        }
        expected.sort();
        assert_eq!(lines, expected);
    }

    #[test]
    fn existing_file_is_truncated_and_empty_output_is_an_empty_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, "stale\n").expect("write");
        let factory = FileSinkFactory::from_options("out", &options(path.to_str().expect("utf8")))
            .expect("opts");
        factory.close().expect("close");
        assert_eq!(std::fs::read(&path).expect("read"), b"");
    }

    #[test]
    fn unwritable_path_is_an_error_naming_it() {
        let factory =
            FileSinkFactory::from_options("out", &options("/proc/spillway/x.jsonl")).expect("opts");
        let err = factory.open(0).err().expect("cannot create");
        let text = err.to_string();
        assert!(
            text.contains("/proc/spillway") && text.contains("'out'"),
            "{text}"
        );
    }

    #[test]
    fn disk_full_reaches_every_sink_and_close() {
        let factory = FileSinkFactory::from_options("out", &options("/dev/full")).expect("opts");
        let mut first = factory.open(0).expect("open");
        let mut second = factory.open(1).expect("open");
        first.write(&batch(0, 10)).expect("queued");
        assert!(first.flush().is_err());
        assert!(second.write(&batch(1, 1)).is_err());
        assert!(second.flush().is_err());
        let err = factory.close().expect_err("close reports it");
        assert!(err.to_string().contains("/dev/full"), "{err}");
    }

    #[test]
    fn options_are_checked() {
        let mut bad = options("x");
        bad.insert("sink.rolling".to_string(), "1".to_string());
        let err = FileSinkFactory::from_options("t", &bad)
            .err()
            .expect("unknown key");
        assert!(err.to_string().contains("'sink.rolling'"), "{err}");
        let mut no_path = options("x");
        no_path.remove("path");
        assert!(FileSinkFactory::from_options("t", &no_path).is_err());
        let mut csv = options("x");
        csv.insert("format".to_string(), "csv".to_string());
        assert!(FileSinkFactory::from_options("t", &csv).is_err());
    }
}
