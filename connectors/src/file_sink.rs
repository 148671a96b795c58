//! The `filesystem` sink, in one of two modes.
//!
//! **Single file** (the default): every shard's rows as JSON lines into one file. All shards'
//! sinks send their encoded rows to one [`WriterThread`], so the output is one file whose lines
//! are whole rows. The file (and its parent directories) is created and truncated when the
//! first shard opens its sink; `close` flushes, fsyncs and reports any I/O error (with the path).
//!
//! **Epochs** ([`FileSinkFactory::with_epochs`], chosen by the engine when the job
//! checkpoints; exactly-once, like Flink's filesystem sink): `path` is a directory. Each shard
//! has its own writer thread writing its own hidden in-progress file; `prepare_epoch` turns it
//! into a hidden pending file, `commit_epochs` makes pending epochs visible as
//! `part-<epoch:012>-<shard:04>.jsonl`, and `recover_epochs` cleans up after a crash (see
//! [`crate::epoch_files`] for the names and the protocol). `close` joins the writer threads
//! and publishes nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use arrow::record_batch::RecordBatch;

use crate::epoch_files::{self, ShardPart};
use crate::error::{ConnectorError, Result};
use crate::writer_thread::{WriterSink, WriterTarget, WriterThread};
use crate::{EpochPrepared, PartitionInfo, Sink, SinkFactory};

pub use crate::epoch_files::read_committed_lines;

/// Options the filesystem sink accepts.
pub const FILE_SINK_OPTIONS: &[&str] = &["connector", "path", "format"];

/// Builds the sinks of one `filesystem` table.
pub struct FileSinkFactory {
    table: String,
    path: PathBuf,
    /// Single-file mode: started by the first `open` (so building the factory, e.g. for
    /// EXPLAIN, touches no file).
    writer: Mutex<Option<Arc<WriterThread>>>,
    /// Epoch mode: `path` is a directory of part files published per committed epoch.
    epochs: bool,
    /// Epoch mode: the writer thread of each open shard, joined by `close`.
    shard_writers: Mutex<BTreeMap<usize, WriterThread>>,
    /// Epoch mode: serialises `commit_epochs` and `recover_epochs`.
    commit_lock: Mutex<()>,
}

/// Prefixes an I/O error's context with table `table`.
fn in_table(table: &str, error: ConnectorError) -> ConnectorError {
    match error {
        ConnectorError::Io { context, source } => {
            ConnectorError::io(format!("table '{table}': {context}"), source)
        }
        other => other,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked holding it; the map of writer
    // threads (or the unit of the commit lock) is still consistent.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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
            epochs: false,
            shard_writers: Mutex::new(BTreeMap::new()),
            commit_lock: Mutex::new(()),
        })
    }

    /// Switches to epoch mode (exactly-once; for jobs that checkpoint): `path` names a
    /// directory (created if missing) of part files that become visible only when their epoch
    /// commits. Call before any `open`. [`SinkFactory::recover_epochs`] must run first:
    /// with `None` (a new job) it deletes every part file already in the directory, committed
    /// ones too (a fresh start, as the single-file mode truncates its file); other files in
    /// the directory are left alone.
    pub fn with_epochs(mut self) -> Self {
        self.epochs = true;
        self
    }

    /// Prefixes an I/O error's context with the table.
    fn in_table(&self, error: ConnectorError) -> ConnectorError {
        in_table(&self.table, error)
    }

    /// The writer thread, started (file created and truncated) on first use.
    fn writer(&self) -> Result<Arc<WriterThread>> {
        let mut writer = lock(&self.writer);
        if let Some(w) = writer.as_ref() {
            return Ok(Arc::clone(w));
        }
        let started = WriterThread::spawn(WriterTarget::File(self.path.clone()))
            .map_err(|e| self.in_table(e))?;
        let started = Arc::new(started);
        *writer = Some(Arc::clone(&started));
        Ok(started)
    }

    /// Epoch mode: the sink of `shard` with a writer thread of its own.
    fn open_epoch_sink(&self, shard: usize) -> Result<Box<dyn Sink>> {
        epoch_files::create_dir(&self.path).map_err(|e| self.in_table(e))?;
        let mut writers = lock(&self.shard_writers);
        if writers.contains_key(&shard) {
            return Err(ConnectorError::Internal(format!(
                "table '{}': the file sink of shard {shard} was opened twice before close",
                self.table
            )));
        }
        let part = ShardPart::new(&self.path, shard);
        let thread = WriterThread::spawn(WriterTarget::Custom {
            name: part.name(),
            out: Box::new(part.writer()),
        })
        .map_err(|e| self.in_table(e))?;
        let sink = EpochFileSink {
            table: self.table.clone(),
            shard,
            inner: WriterSink::new(thread.handle()),
            part,
            epoch_prepared_last: None,
        };
        writers.insert(shard, thread);
        Ok(Box::new(sink))
    }
}

impl SinkFactory for FileSinkFactory {
    fn open(&self, shard: usize) -> Result<Box<dyn Sink>> {
        if self.epochs {
            return self.open_epoch_sink(shard);
        }
        Ok(Box::new(WriterSink::new(self.writer()?.handle())))
    }

    /// Single file: flushes, fsyncs and closes the file (creating it empty if no shard wrote).
    /// Epochs: joins every shard's writer thread (fsyncing its in-progress file) and reports
    /// the first error; publishes nothing.
    fn close(&self) -> Result<()> {
        if !self.epochs {
            return self.writer()?.close();
        }
        let writers = std::mem::take(&mut *lock(&self.shard_writers));
        let mut first_error = None;
        for thread in writers.into_values() {
            if let Err(e) = thread.close() {
                first_error.get_or_insert(self.in_table(e));
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn describe(&self) -> String {
        if self.epochs {
            format!(
                "filesystem directory '{}' (JSON-lines part files, visible when their \
                 checkpoint epoch commits)",
                self.path.display()
            )
        } else {
            format!("filesystem file '{}' (JSON lines)", self.path.display())
        }
    }

    fn epoch_committed(&self) -> bool {
        self.epochs
    }

    fn commit_epochs(&self, epoch: u64, _: &BTreeMap<PartitionInfo, i64>) -> Result<()> {
        if !self.epochs {
            return Ok(());
        }
        let _serial = lock(&self.commit_lock);
        epoch_files::commit_epochs(&self.path, epoch)
            .map(|_| ())
            .map_err(|e| self.in_table(e))
    }

    fn recover_epochs(&self, committed: Option<u64>) -> Result<()> {
        if !self.epochs {
            return Ok(());
        }
        let _serial = lock(&self.commit_lock);
        let recovery =
            epoch_files::recover_epochs(&self.path, committed).map_err(|e| self.in_table(e))?;
        tracing::info!(
            table = %self.table,
            dir = %self.path.display(),
            ?committed,
            files_committed = recovery.files_committed,
            files_deleted = recovery.files_deleted,
            "file sink recovered its epochs"
        );
        Ok(())
    }
}

/// The sink of one shard in epoch mode: encodes rows to its own writer thread (which writes
/// the shard's in-progress file) and turns the file into a pending file per epoch.
struct EpochFileSink {
    table: String,
    shard: usize,
    inner: WriterSink,
    part: Arc<ShardPart>,
    epoch_prepared_last: Option<u64>,
}

impl Sink for EpochFileSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.inner.write(batch)
    }

    /// Makes the rows durable in the in-progress file; they stay invisible.
    fn flush(&mut self) -> Result<()> {
        self.inner.flush()
    }

    fn rows_written(&self) -> u64 {
        self.inner.rows_written()
    }

    /// Queues the end of `epoch` behind the shard's rows on its writer thread, which
    /// flushes and fsyncs the in-progress file, renames it to the pending file of `epoch` and
    /// fsyncs the directory (nothing when the epoch wrote no rows). The shard does not wait;
    /// the returned [`EpochPrepared`] does.
    fn prepare_epoch(&mut self, epoch: u64) -> Result<EpochPrepared> {
        if let Some(last) = self.epoch_prepared_last {
            if epoch <= last {
                return Err(ConnectorError::Internal(format!(
                    "table '{}', file sink shard {}: epoch {epoch} prepared after epoch \
                     {last} (epochs of a shard must strictly increase)",
                    self.table, self.shard
                )));
            }
        }
        let part = Arc::clone(&self.part);
        let table = self.table.clone();
        let wait = self
            .inner
            .handle()
            .flush_then(move || {
                part.prepare(epoch)
                    .map(|_| ())
                    .map_err(|e| in_table(&table, e))
            })
            .map_err(|e| in_table(&self.table, e))?;
        self.epoch_prepared_last = Some(epoch);
        Ok(EpochPrepared::later(wait))
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

    // ---- epoch mode ----

    fn epoch_factory(dir: &std::path::Path) -> FileSinkFactory {
        let text = dir.to_str().expect("utf8").to_string();
        FileSinkFactory::from_options("out", &options(&text))
            .expect("opts")
            .with_epochs()
    }

    /// One `id` column; row `i` is written as `{"id":<ids[i]>}`.
    fn id_batch(ids: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(ids.to_vec()))]).expect("batch")
    }

    fn id_lines(ids: impl IntoIterator<Item = i64>) -> Vec<String> {
        let mut lines: Vec<String> = ids.into_iter().map(|i| format!("{{\"id\":{i}}}")).collect();
        lines.sort();
        lines
    }

    fn visible(dir: &std::path::Path) -> Vec<String> {
        let mut lines = read_committed_lines(dir).expect("read committed");
        lines.sort();
        lines
    }

    fn names_in(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Row ids of shard `shard` in epoch `epoch` (epoch 3 is never prepared).
    fn ids_of(shard: usize, epoch: u64) -> Vec<i64> {
        (0..5)
            .map(|r| (epoch * 1000 + shard as u64 * 100 + r) as i64)
            .collect()
    }

    /// Three shards on threads: epoch 1 everywhere, epoch 2 without rows on shard 2, and
    /// unprepared rows of epoch 3 on shards 0 and 1.
    fn run_three_epochs(factory: &FileSinkFactory) {
        std::thread::scope(|scope| {
            for shard in 0..3 {
                scope.spawn(move || {
                    let mut sink = factory.open(shard).expect("open");
                    for epoch in 1..=3u64 {
                        if !(shard == 2 && epoch >= 2) {
                            sink.write(&id_batch(&ids_of(shard, epoch))).expect("write");
                        }
                        if epoch < 3 {
                            sink.prepare_epoch(epoch)
                                .and_then(|p| p.wait())
                                .expect("prepare");
                        }
                    }
                    sink.flush().expect("flush");
                });
            }
        });
    }

    #[test]
    fn epochs_become_visible_only_when_committed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("stats");
        let factory = epoch_factory(&dir);
        assert!(factory.epoch_committed());
        assert!(
            factory.describe().contains("directory"),
            "{}",
            factory.describe()
        );
        assert!(!dir.exists(), "building the factory creates nothing");
        factory.recover_epochs(None).expect("recover");
        run_three_epochs(&factory);
        assert!(visible(&dir).is_empty(), "nothing committed yet");
        assert_eq!(
            names_in(&dir),
            vec![
                ".part-0000.inprogress",
                ".part-000000000001-0000.pending",
                ".part-000000000001-0001.pending",
                ".part-000000000001-0002.pending",
                ".part-000000000002-0000.pending",
                ".part-000000000002-0001.pending",
                ".part-0001.inprogress",
            ],
            "an empty epoch creates nothing"
        );
        factory
            .commit_epochs(1, &BTreeMap::new())
            .expect("commit 1");
        let epoch_1 = id_lines((0..3).flat_map(|s| ids_of(s, 1)));
        assert_eq!(visible(&dir), epoch_1);
        factory
            .commit_epochs(1, &BTreeMap::new())
            .expect("idempotent");
        factory.commit_epochs(0, &BTreeMap::new()).expect("smaller");
        assert_eq!(visible(&dir), epoch_1);
        factory
            .commit_epochs(2, &BTreeMap::new())
            .expect("commit 2");
        let epochs_1_2 = id_lines(
            (0..3)
                .flat_map(|s| ids_of(s, 1))
                .chain((0..2).flat_map(|s| ids_of(s, 2))),
        );
        assert_eq!(visible(&dir), epochs_1_2);
        factory.close().expect("close");
        assert_eq!(visible(&dir), epochs_1_2, "close publishes nothing");
        assert!(dir.join(".part-0000.inprogress").exists());
    }

    #[test]
    fn recovery_publishes_up_to_the_committed_epoch_and_deletes_the_rest() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("stats");
        let factory = epoch_factory(&dir);
        factory.recover_epochs(None).expect("recover");
        run_three_epochs(&factory);
        drop(factory); // a crash: no commit, no close
        let restarted = epoch_factory(&dir);
        restarted.recover_epochs(Some(1)).expect("recover");
        assert_eq!(visible(&dir), id_lines((0..3).flat_map(|s| ids_of(s, 1))));
        assert_eq!(
            names_in(&dir),
            vec![
                "part-000000000001-0000.jsonl",
                "part-000000000001-0001.jsonl",
                "part-000000000001-0002.jsonl",
            ],
            "pending epoch 2 and the in-progress files are gone"
        );
        // The restarted job redoes epoch 2 on two shards and commits it.
        for shard in 0..2 {
            let mut sink = restarted.open(shard).expect("open");
            sink.write(&id_batch(&ids_of(shard, 2))).expect("write");
            sink.prepare_epoch(2)
                .and_then(|p| p.wait())
                .expect("prepare");
        }
        restarted
            .commit_epochs(2, &BTreeMap::new())
            .expect("commit");
        restarted.close().expect("close");
        let all = id_lines(
            (0..3)
                .flat_map(|s| ids_of(s, 1))
                .chain((0..2).flat_map(|s| ids_of(s, 2))),
        );
        assert_eq!(visible(&dir), all, "each row once");
        // A new job (no checkpoint) starts afresh but keeps files that are not the sink's.
        std::fs::write(dir.join("README"), "mine\n").expect("write");
        let fresh = epoch_factory(&dir);
        fresh.recover_epochs(None).expect("recover");
        assert_eq!(names_in(&dir), vec!["README"]);
    }

    #[test]
    fn recovery_with_a_durable_but_uncommitted_epoch_publishes_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let factory = epoch_factory(tmp.path());
        factory.recover_epochs(None).expect("recover");
        run_three_epochs(&factory);
        factory.commit_epochs(1, &BTreeMap::new()).expect("commit");
        drop(factory);
        let restarted = epoch_factory(tmp.path());
        restarted.recover_epochs(Some(2)).expect("recover");
        let expected = id_lines(
            (0..3)
                .flat_map(|s| ids_of(s, 1))
                .chain((0..2).flat_map(|s| ids_of(s, 2))),
        );
        assert_eq!(visible(tmp.path()), expected);
        assert!(names_in(tmp.path()).iter().all(|n| n.starts_with("part-")));
    }

    #[test]
    fn epochs_of_a_shard_must_increase_and_a_shard_opens_once() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let factory = epoch_factory(tmp.path());
        let mut sink = factory.open(0).expect("open");
        sink.prepare_epoch(2).and_then(|p| p.wait()).expect("first");
        for stale in [2, 1] {
            let err = sink
                .prepare_epoch(stale)
                .and_then(|p| p.wait())
                .expect_err("not increasing");
            assert!(err.to_string().contains("strictly increase"), "{err}");
        }
        sink.prepare_epoch(3)
            .and_then(|p| p.wait())
            .expect("increasing");
        let twice = factory.open(0).err().expect("open twice");
        assert!(twice.to_string().contains("opened twice"), "{twice}");
        drop(sink);
        factory.close().expect("close");
        let _reopened = factory.open(0).expect("open after close");
    }

    #[test]
    fn prepare_failure_names_the_path_and_table() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("vanishing");
        let factory = epoch_factory(&dir);
        let mut sink = factory.open(0).expect("open");
        sink.write(&id_batch(&[1, 2])).expect("write");
        sink.flush().expect("flush");
        // The directory disappears under the open file (root is not stopped by chmod).
        std::fs::remove_dir_all(&dir).expect("rm");
        let err = sink
            .prepare_epoch(1)
            .and_then(|p| p.wait())
            .expect_err("rename fails");
        let text = err.to_string();
        assert!(
            text.contains("vanishing/.part-0000.inprogress") && text.contains("'out'"),
            "{text}"
        );
        assert!(
            sink.prepare_epoch(2).and_then(|p| p.wait()).is_err(),
            "the failure is sticky"
        );
        let err = factory
            .commit_epochs(1, &BTreeMap::new())
            .expect_err("no directory");
        assert!(err.to_string().contains("vanishing"), "{err}");
    }

    #[test]
    fn unwritable_directory_is_an_error_naming_it() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("readonly");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).expect("chmod");
        let probe = dir.join("probe");
        let root = std::fs::write(&probe, b"").is_ok();
        if root {
            // chmod does not stop root: use a directory nobody can create files in.
            let factory = epoch_factory(std::path::Path::new("/proc/spillway-epochs/out"));
            let err = factory.recover_epochs(None).expect_err("cannot create");
            assert!(
                err.to_string().contains("/proc/spillway-epochs/out"),
                "{err}"
            );
            let err = factory.open(0).err().expect("cannot create");
            let text = err.to_string();
            assert!(
                text.contains("/proc/spillway-epochs/out") && text.contains("'out'"),
                "{text}"
            );
        } else {
            let factory = epoch_factory(&dir);
            let mut sink = factory.open(1).expect("the directory exists");
            let _ = sink.write(&id_batch(&[1])); // queued, or the stored error
            let err = sink
                .prepare_epoch(1)
                .and_then(|p| p.wait())
                .expect_err("cannot create the file");
            let text = err.to_string();
            assert!(text.contains("readonly/.part-0001.inprogress"), "{text}");
            assert!(factory.close().is_err(), "close reports it too");
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    #[test]
    fn single_file_mode_ignores_epoch_calls() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("out.jsonl");
        let factory = FileSinkFactory::from_options("out", &options(path.to_str().expect("utf8")))
            .expect("opts");
        assert!(!factory.epoch_committed());
        factory.recover_epochs(None).expect("no-op");
        assert!(
            !path.exists(),
            "recover touches nothing in single-file mode"
        );
        let mut sink = factory.open(0).expect("open");
        sink.write(&id_batch(&[7])).expect("write");
        sink.prepare_epoch(1)
            .and_then(|p| p.wait())
            .expect("a flush");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "{\"id\":7}\n"
        );
        factory.commit_epochs(1, &BTreeMap::new()).expect("no-op");
        drop(sink);
        factory.close().expect("close");
    }
}
