//! The single writer thread behind the file and print sinks.
//!
//! Every shard's sink encodes its rows into a byte chunk and sends the chunk through one
//! bounded channel to one thread that owns the output (stdout, a file, or any `Write` given
//! by a test), so the output is one stream with whole chunks never interleaved.
//!
//! **Invariant:** only the writer thread touches the output.
//! **Boundary:** an I/O error (disk full, a read-only directory) is kept; from then on every
//! write and flush of every sink using the thread, and `close`, return it (naming the output).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use arrow::record_batch::RecordBatch;

use crate::error::{ConnectorError, Result};
use crate::io_retry::retry_interrupted;
use crate::json_lines::RowWriter;
use crate::Sink;

/// Limit of encoded chunks queued to the writer thread; a sink blocks when it is full.
pub const WRITER_QUEUE_CHUNKS_MAX: usize = 64;
/// Limit of emptied chunk buffers kept for reuse by the sinks.
pub const WRITER_POOL_CHUNKS_MAX: usize = WRITER_QUEUE_CHUNKS_MAX;
/// A recycled chunk buffer larger than this is dropped rather than kept in the pool.
pub const WRITER_POOL_CHUNK_BYTES_MAX: usize = 4 << 20;
/// Size of the buffer in front of a file.
pub const WRITER_FILE_BUFFER_BYTES: usize = 1 << 20;

/// Where a writer thread writes.
pub enum WriterTarget {
    /// Standard output, flushed after every chunk so results appear live.
    Stdout,
    /// A file, created (with its parent directories) and truncated when the thread starts;
    /// fsynced on flush and on close.
    File(PathBuf),
    /// Any writer (for tests); flushed on flush and on close. `name` is used in messages.
    Custom {
        /// The name of the output in error messages.
        name: String,
        /// The output.
        out: Box<dyn Write + Send>,
    },
}

enum Message {
    /// Encoded rows to write.
    Chunk(Vec<u8>),
    /// Flush (and fsync a file), then answer whether everything so far was written.
    Flush(SyncSender<()>),
    /// Flush, then run the step and send its result.
    FlushThen(
        Box<dyn FnOnce() -> Result<()> + Send>,
        SyncSender<Result<()>>,
    ),
    /// Flush, fsync, and stop.
    Close,
}

/// An I/O error kept by the writer thread (io::Error is not Clone: kind and text are kept).
#[derive(Debug, Clone)]
struct StoredError {
    kind: io::ErrorKind,
    message: String,
}

/// What the writer thread and the sinks share.
struct Shared {
    /// The output's name in messages, e.g. `file 'out/stats.jsonl'` or `stdout`.
    name: String,
    /// Set once an error is stored (a cheap check on every write).
    failed: AtomicBool,
    error: Mutex<Option<StoredError>>,
    /// Emptied chunk buffers for reuse, at most [`WRITER_POOL_CHUNKS_MAX`].
    pool: Mutex<Vec<Vec<u8>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked while holding it; the data (an
    // error slot or a buffer pool) is still consistent.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn store_error(&self, what: &str, error: &io::Error) {
        let mut slot = lock(&self.error);
        if slot.is_none() {
            *slot = Some(StoredError {
                kind: error.kind(),
                message: format!("{what} failed: {error}"),
            });
            self.failed.store(true, Ordering::Release);
        }
    }

    /// The stored error, if any, as a connector error naming the output.
    fn check(&self) -> Result<()> {
        if !self.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        match lock(&self.error).as_ref() {
            Some(e) => Err(ConnectorError::io(
                format!("writing {}", self.name),
                io::Error::new(e.kind, e.message.clone()),
            )),
            None => Ok(()),
        }
    }

    fn stopped_error(&self) -> ConnectorError {
        ConnectorError::Internal(format!(
            "the writer thread of {} is no longer running (written after close?)",
            self.name
        ))
    }
}

/// The output as the writer thread holds it.
enum Output {
    Stdout,
    File(BufWriter<File>),
    Custom(Box<dyn Write + Send>),
}

/// The thread's loop: writes chunks until `Close` or until every sender is gone.
fn run(shared: Arc<Shared>, mut output: Output, receiver: Receiver<Message>) {
    let stdout = io::stdout();
    let mut stdout_lock = match output {
        Output::Stdout => Some(stdout.lock()),
        _ => None,
    };
    for message in receiver {
        match message {
            Message::Chunk(mut chunk) => {
                if !shared.failed.load(Ordering::Acquire) {
                    let result = match (&mut output, stdout_lock.as_mut()) {
                        (Output::Stdout, Some(out)) => {
                            out.write_all(&chunk).and_then(|()| out.flush())
                        }
                        (Output::File(out), _) => out.write_all(&chunk),
                        (Output::Custom(out), _) => out.write_all(&chunk),
                        (Output::Stdout, None) => Ok(()),
                    };
                    if let Err(e) = result {
                        shared.store_error("write", &e);
                    }
                }
                recycle(&shared, &mut chunk);
            }
            Message::Flush(reply) => {
                flush_output(&shared, &mut output, stdout_lock.as_mut(), false);
                // The sink may have given up waiting; nothing to do then.
                let _ = reply.send(());
            }
            Message::FlushThen(step, reply) => {
                flush_output(&shared, &mut output, stdout_lock.as_mut(), false);
                let result = shared.check().and_then(|()| step());
                let _ = reply.send(result);
            }
            Message::Close => break,
        }
    }
    flush_output(&shared, &mut output, stdout_lock.as_mut(), true);
}

fn recycle(shared: &Shared, chunk: &mut Vec<u8>) {
    if chunk.capacity() > WRITER_POOL_CHUNK_BYTES_MAX {
        return;
    }
    let mut pool = lock(&shared.pool);
    if pool.len() < WRITER_POOL_CHUNKS_MAX {
        chunk.clear();
        pool.push(std::mem::take(chunk));
    }
}

/// Flushes the output; a file is also fsynced (`sync_data`, or `sync_all` when closing).
fn flush_output(
    shared: &Shared,
    output: &mut Output,
    stdout_lock: Option<&mut io::StdoutLock<'_>>,
    closing: bool,
) {
    if shared.failed.load(Ordering::Acquire) {
        return;
    }
    let result = match output {
        Output::Stdout => stdout_lock.map_or(Ok(()), |out| out.flush()),
        Output::File(out) => out.flush().and_then(|()| {
            if closing {
                retry_interrupted(|| out.get_ref().sync_all())
            } else {
                retry_interrupted(|| out.get_ref().sync_data())
            }
        }),
        Output::Custom(out) => out.flush(),
    };
    if let Err(e) = result {
        shared.store_error(if closing { "close" } else { "flush" }, &e);
    }
}

/// Opens `path` for writing: creates its parent directories and truncates it.
fn open_file(path: &Path) -> Result<File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            ConnectorError::io(
                format!(
                    "creating the directory '{}' of the output file",
                    parent.display()
                ),
                e,
            )
        })?;
    }
    File::create(path).map_err(|e| {
        ConnectorError::io(format!("creating the output file '{}'", path.display()), e)
    })
}

/// The writer thread of one sink table, owned by its sink factory.
pub struct WriterThread {
    shared: Arc<Shared>,
    sender: SyncSender<Message>,
    join: Mutex<Option<JoinHandle<()>>>,
}

impl WriterThread {
    /// Opens the target (a file is created and truncated here, so a bad path fails now) and
    /// starts the thread.
    pub fn spawn(target: WriterTarget) -> Result<WriterThread> {
        let (name, output) = match target {
            WriterTarget::Stdout => ("stdout".to_string(), Output::Stdout),
            WriterTarget::File(path) => {
                let file = open_file(&path)?;
                (
                    format!("file '{}'", path.display()),
                    Output::File(BufWriter::with_capacity(WRITER_FILE_BUFFER_BYTES, file)),
                )
            }
            WriterTarget::Custom { name, out } => (name, Output::Custom(out)),
        };
        let shared = Arc::new(Shared {
            name,
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
            pool: Mutex::new(Vec::new()),
        });
        let (sender, receiver) = sync_channel(WRITER_QUEUE_CHUNKS_MAX);
        let thread_shared = Arc::clone(&shared);
        let join = std::thread::Builder::new()
            .name("spillway-writer".to_string())
            .spawn(move || run(thread_shared, output, receiver))
            .map_err(|e| {
                ConnectorError::io(format!("starting the writer thread of {}", shared.name), e)
            })?;
        Ok(WriterThread {
            shared,
            sender,
            join: Mutex::new(Some(join)),
        })
    }

    /// A handle for one sink.
    pub fn handle(&self) -> WriterHandle {
        WriterHandle {
            shared: Arc::clone(&self.shared),
            sender: self.sender.clone(),
        }
    }

    /// The output's name in messages (`stdout`, `file 'PATH'`).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Flushes (and fsyncs a file), stops and joins the thread, and returns any error the
    /// output had. Calling it again returns the same result without doing anything.
    pub fn close(&self) -> Result<()> {
        let join = lock(&self.join).take();
        if let Some(join) = join {
            // If the thread is already gone, joining reports why.
            let _ = self.sender.send(Message::Close);
            if join.join().is_err() {
                return Err(ConnectorError::Internal(format!(
                    "the writer thread of {} panicked",
                    self.shared.name
                )));
            }
        }
        self.shared.check()
    }
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        // Never leave the thread behind with unflushed data; errors were reportable by close.
        let _ = self.close();
    }
}

/// A sink's end of the writer thread.
pub struct WriterHandle {
    shared: Arc<Shared>,
    sender: SyncSender<Message>,
}

impl WriterHandle {
    /// An empty buffer to encode the next chunk into (reused from written chunks).
    pub fn buffer(&self) -> Vec<u8> {
        lock(&self.shared.pool).pop().unwrap_or_default()
    }

    /// Queues `chunk` for writing (blocks while the queue is full). Returns the output's
    /// stored error, if it has one, instead of queueing.
    pub fn write_chunk(&self, chunk: Vec<u8>) -> Result<()> {
        self.shared.check()?;
        if chunk.is_empty() {
            return Ok(());
        }
        self.sender
            .send(Message::Chunk(chunk))
            .map_err(|_| self.shared.stopped_error())
    }

    /// Waits until everything queued so far is written and flushed (fsynced for a file);
    /// returns the output's error, if any.
    pub fn flush(&self) -> Result<()> {
        self.shared.check()?;
        let (reply_sender, reply) = sync_channel(1);
        self.sender
            .send(Message::Flush(reply_sender))
            .map_err(|_| self.shared.stopped_error())?;
        reply.recv().map_err(|_| self.shared.stopped_error())?;
        self.shared.check()
    }

    /// Queues a flush followed by `step` on the writer thread, without waiting: the returned
    /// function waits for the step's result (an output error comes first).
    pub fn flush_then(
        &self,
        step: impl FnOnce() -> Result<()> + Send + 'static,
    ) -> Result<impl FnOnce() -> Result<()> + Send + 'static> {
        self.shared.check()?;
        let (reply_sender, reply) = sync_channel(1);
        self.sender
            .send(Message::FlushThen(Box::new(step), reply_sender))
            .map_err(|_| self.shared.stopped_error())?;
        let shared = Arc::clone(&self.shared);
        Ok(move || match reply.recv() {
            Ok(result) => result,
            Err(_) => Err(shared.stopped_error()),
        })
    }

    /// The output's name in messages.
    pub fn name(&self) -> &str {
        &self.shared.name
    }
}

/// Rows of one batch are sent in chunks of about this many bytes (the limit of one chunk's
/// buffer, exceeded by at most one row).
pub const WRITER_CHUNK_BYTES_TARGET: usize = 1 << 20;

/// The sink of one shard over a writer thread: encodes rows as JSON lines and sends them.
pub struct WriterSink {
    handle: WriterHandle,
    rows_written: u64,
}

impl WriterSink {
    /// A sink sending to `handle`'s writer thread.
    pub fn new(handle: WriterHandle) -> Self {
        WriterSink {
            handle,
            rows_written: 0,
        }
    }
}

impl Sink for WriterSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.handle.shared.check()?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let rows = RowWriter::new(batch)?;
        let mut chunk = self.handle.buffer();
        for row in 0..batch.num_rows() {
            rows.write_row(row, &mut chunk);
            if chunk.len() >= WRITER_CHUNK_BYTES_TARGET {
                let full = std::mem::replace(&mut chunk, self.handle.buffer());
                self.handle.write_chunk(full)?;
            }
        }
        self.handle.write_chunk(chunk)?;
        self.rows_written += batch.num_rows() as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.handle.flush()
    }

    fn rows_written(&self) -> u64 {
        self.rows_written
    }
}

impl WriterSink {
    /// The writer thread this sink sends to.
    pub fn handle(&self) -> &WriterHandle {
        &self.handle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that fails every write once `bytes_ok` bytes were taken.
    struct FailingWriter {
        bytes_ok: usize,
        taken: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for FailingWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut taken = lock(&self.taken);
            if taken.len() + buf.len() > self.bytes_ok {
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "disk full (test)",
                ));
            }
            taken.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn failing(bytes_ok: usize) -> (WriterThread, Arc<Mutex<Vec<u8>>>) {
        let taken = Arc::new(Mutex::new(Vec::new()));
        let out = FailingWriter {
            bytes_ok,
            taken: Arc::clone(&taken),
        };
        let thread = WriterThread::spawn(WriterTarget::Custom {
            name: "test output".to_string(),
            out: Box::new(out),
        })
        .expect("spawn");
        (thread, taken)
    }

    #[test]
    fn chunks_of_several_handles_are_written_whole() {
        let (thread, taken) = failing(usize::MAX);
        let handles: Vec<WriterHandle> = (0..3).map(|_| thread.handle()).collect();
        std::thread::scope(|scope| {
            for (i, handle) in handles.iter().enumerate() {
                scope.spawn(move || {
                    for j in 0..200 {
                        let mut chunk = handle.buffer();
                        chunk.extend_from_slice(format!("{i}-{j}-a\n{i}-{j}-b\n").as_bytes());
                        handle.write_chunk(chunk).expect("write");
                    }
                    handle.flush().expect("flush");
                });
            }
        });
        thread.close().expect("close");
        let text = String::from_utf8(lock(&taken).clone()).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3 * 200 * 2);
        for pair in lines.chunks(2) {
            // The two lines of a chunk stay adjacent.
            let a = pair[0].strip_suffix("-a").expect("first line of a chunk");
            let b = pair[1].strip_suffix("-b").expect("second line of a chunk");
            assert_eq!(a, b);
        }
    }

    #[test]
    fn error_is_sticky_for_every_handle_and_close() {
        let (thread, _) = failing(10);
        let first = thread.handle();
        let second = thread.handle();
        first
            .write_chunk(b"0123456789ABCDEF\n".to_vec())
            .expect("queued");
        let err = first.flush().expect_err("the write failed");
        let text = err.to_string();
        assert!(
            text.contains("test output") && text.contains("disk full"),
            "{text}"
        );
        assert!(second.write_chunk(b"x\n".to_vec()).is_err());
        assert!(second.flush().is_err());
        let err = thread.close().expect_err("close reports the error");
        assert!(err.to_string().contains("disk full"), "{err}");
        // A second close gives the same answer.
        assert!(thread.close().is_err());
    }

    #[test]
    fn unwritable_path_fails_with_the_path() {
        let path = PathBuf::from("/proc/spillway/x.jsonl");
        let err = WriterThread::spawn(WriterTarget::File(path))
            .err()
            .expect("fails");
        assert!(err.to_string().contains("/proc/spillway"), "{err}");
    }

    #[test]
    fn disk_full_is_reported_by_write_flush_and_close() {
        // /dev/full accepts open but fails every write with ENOSPC.
        let thread = WriterThread::spawn(WriterTarget::File(PathBuf::from("/dev/full")))
            .expect("open /dev/full");
        let handle = thread.handle();
        handle
            .write_chunk(vec![b'x'; 2 * WRITER_FILE_BUFFER_BYTES])
            .expect("queued");
        let err = handle.flush().expect_err("ENOSPC");
        assert!(err.to_string().contains("/dev/full"), "{err}");
        assert!(handle.write_chunk(b"y\n".to_vec()).is_err());
        assert!(thread.close().is_err());
    }

    #[test]
    fn file_is_truncated_and_written_after_close() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b/out.jsonl");
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, b"old content that must go\n").expect("write");
        let thread = WriterThread::spawn(WriterTarget::File(path.clone())).expect("spawn");
        let handle = thread.handle();
        handle.write_chunk(b"new\n".to_vec()).expect("write");
        drop(handle);
        thread.close().expect("close");
        assert_eq!(std::fs::read(&path).expect("read"), b"new\n");
        let late = thread.handle();
        assert!(
            late.write_chunk(b"late\n".to_vec()).is_err(),
            "closed thread refuses"
        );
    }
}
