//! The I/O boundary of the store: every write, fsync, rename and removal of state files goes
//! through a [`StorageBackend`], so tests can inject faults and io_uring can be swapped for
//! ordinary pwrite/fsync.
//!
//! Writes may be queued: an error of a queued write is reported by a later call on the backend
//! (`write`, `wait`, `sync` or `close`). Reads do not go through the backend (recovery reads
//! whole files with `std::fs`).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{StateError, StateResult};
use crate::options::BackendChoice;
use crate::uring_backend::UringBackend;

/// Handle of a file opened through a backend.
pub type FileId = u32;

/// Environment variable that, set to `1`, makes `BackendChoice::Auto` use pwrite/fsync.
pub const DISABLE_IO_URING_ENV: &str = "SPILLWAY_DISABLE_IO_URING";

/// Writes, fsyncs and directory changes of state files.
pub trait StorageBackend: Send {
    /// Short name for logs (`io_uring`, `blocking`, ...).
    fn name(&self) -> &'static str;
    /// Creates a new file for writing; fails if it exists.
    fn create(&mut self, path: &Path) -> io::Result<FileId>;
    /// Opens an existing file for writing.
    fn open_existing(&mut self, path: &Path) -> io::Result<FileId>;
    /// Writes all of `buf` at `offset`; the write may still be in flight when this returns.
    fn write(&mut self, file: FileId, offset: u64, buf: Vec<u8>) -> io::Result<()>;
    /// Waits until every queued write of `file` is done.
    fn wait(&mut self, file: FileId) -> io::Result<()>;
    /// Waits for the queued writes of `file`, then makes its data durable (fdatasync).
    fn sync(&mut self, file: FileId) -> io::Result<()>;
    /// Sets the length of `file` (queued writes are waited for first).
    fn truncate(&mut self, file: FileId, len: u64) -> io::Result<()>;
    /// Waits for the queued writes of `file` and closes it.
    fn close(&mut self, file: FileId) -> io::Result<()>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the entries of directory `dir` durable (fsync of the directory).
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&mut self, path: &Path) -> io::Result<()>;
    /// An empty buffer to fill for the next `write`, reused from completed writes if possible.
    fn recycled_buffer(&mut self) -> Option<Vec<u8>> {
        None
    }
}

/// Files opened by a backend, by id.
#[derive(Default)]
pub(crate) struct FileTable {
    files: HashMap<FileId, File>,
    id_next: FileId,
}

impl FileTable {
    /// Creates (`create_new`) or opens `path` for writing and returns its id.
    pub(crate) fn open(&mut self, path: &Path, create: bool) -> io::Result<FileId> {
        let mut options = OpenOptions::new();
        options.write(true);
        if create {
            options.create_new(true);
        }
        let file = options.open(path)?;
        let id = self.id_next;
        self.id_next = self.id_next.wrapping_add(1);
        self.files.insert(id, file);
        Ok(id)
    }

    /// The open file `id`.
    pub(crate) fn get(&self, id: FileId) -> io::Result<&File> {
        self.files.get(&id).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("state file id {id} is not open"),
            )
        })
    }

    /// Closes file `id`.
    pub(crate) fn close(&mut self, id: FileId) -> io::Result<()> {
        self.files.remove(&id).map(drop).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("state file id {id} is not open"),
            )
        })
    }
}

/// Opens and fsyncs directory `dir`.
pub(crate) fn sync_dir_blocking(dir: &Path) -> io::Result<()> {
    let d = File::open(dir)?;
    loop {
        match d.sync_all() {
            // A signal (SIGTERM on its way to a clean stop) is not an I/O error.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Ordinary blocking pwrite/fdatasync: the fallback when io_uring is not available.
#[derive(Default)]
pub struct BlockingBackend {
    files: FileTable,
    buffer_spare: Option<Vec<u8>>,
}

impl BlockingBackend {
    /// A backend with no open files.
    pub fn new() -> Self {
        Self::default()
    }
}

impl StorageBackend for BlockingBackend {
    fn name(&self) -> &'static str {
        "blocking"
    }
    fn create(&mut self, path: &Path) -> io::Result<FileId> {
        self.files.open(path, true)
    }
    fn open_existing(&mut self, path: &Path) -> io::Result<FileId> {
        self.files.open(path, false)
    }
    fn write(&mut self, file: FileId, offset: u64, mut buf: Vec<u8>) -> io::Result<()> {
        self.files.get(file)?.write_all_at(&buf, offset)?;
        buf.clear();
        self.buffer_spare = Some(buf);
        Ok(())
    }
    fn wait(&mut self, file: FileId) -> io::Result<()> {
        self.files.get(file).map(drop)
    }
    fn sync(&mut self, file: FileId) -> io::Result<()> {
        let f = self.files.get(file)?;
        loop {
            match f.sync_data() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
    fn truncate(&mut self, file: FileId, len: u64) -> io::Result<()> {
        self.files.get(file)?.set_len(len)
    }
    fn close(&mut self, file: FileId) -> io::Result<()> {
        self.files.close(file)
    }
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        sync_dir_blocking(dir)
    }
    fn remove(&mut self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn recycled_buffer(&mut self) -> Option<Vec<u8>> {
        self.buffer_spare.take()
    }
}

/// Builds the backend `choice` asks for. `Auto` falls back to [`BlockingBackend`] with a
/// warning when io_uring is disabled by `SPILLWAY_DISABLE_IO_URING=1` or the kernel refuses it.
pub fn open_backend(
    choice: BackendChoice,
    io_depth_max: u32,
) -> StateResult<Box<dyn StorageBackend>> {
    match choice {
        BackendChoice::Blocking => Ok(Box::new(BlockingBackend::new())),
        BackendChoice::IoUring => UringBackend::new(io_depth_max)
            .map(|b| Box::new(b) as Box<dyn StorageBackend>)
            .map_err(|source| StateError::Io {
                op: "create io_uring",
                path: "(io_uring)".into(),
                source,
            }),
        BackendChoice::Auto => {
            let env = std::env::var(DISABLE_IO_URING_ENV).ok();
            Ok(auto_backend(
                io_uring_disabled_by(env.as_deref()),
                io_depth_max,
            ))
        }
    }
}

/// Whether a value of `SPILLWAY_DISABLE_IO_URING` disables io_uring.
pub(crate) fn io_uring_disabled_by(env_value: Option<&str>) -> bool {
    env_value.is_some_and(|v| v.trim() == "1")
}

/// The `Auto` choice: io_uring unless `disabled` or refused by the kernel.
pub(crate) fn auto_backend(disabled: bool, io_depth_max: u32) -> Box<dyn StorageBackend> {
    if disabled {
        tracing::warn!(
            "{DISABLE_IO_URING_ENV}=1: state writes use pwrite/fsync instead of io_uring"
        );
        return Box::new(BlockingBackend::new());
    }
    match UringBackend::new(io_depth_max) {
        Ok(b) => Box::new(b),
        Err(e) => {
            tracing::warn!(
                error = %e,
                "the kernel refused io_uring: state writes use pwrite/fsync instead"
            );
            Box::new(BlockingBackend::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(backend: &mut dyn StorageBackend, dir: &Path) -> Vec<u8> {
        let path = dir.join("f");
        let id = backend.create(&path).unwrap();
        assert!(
            backend.create(&path).is_err(),
            "create must not replace a file"
        );
        for i in 0..40u8 {
            let mut buf = backend.recycled_buffer().unwrap_or_default();
            assert!(buf.is_empty());
            buf.extend(std::iter::repeat_n(i, 1000));
            backend.write(id, u64::from(i) * 1000, buf).unwrap();
        }
        backend.sync(id).unwrap();
        backend.truncate(id, 39_500).unwrap();
        backend.close(id).unwrap();
        backend.rename(&path, &dir.join("g")).unwrap();
        backend.sync_dir(dir).unwrap();
        let bytes = std::fs::read(dir.join("g")).unwrap();
        backend.remove(&dir.join("g")).unwrap();
        assert!(!dir.join("g").exists());
        bytes
    }

    #[test]
    fn blocking_and_io_uring_backends_write_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let blocking = exercise(&mut BlockingBackend::new(), dir.path());
        assert_eq!(blocking.len(), 39_500);
        assert!(blocking[..1000].iter().all(|&b| b == 0));
        assert!(blocking[39_000..].iter().all(|&b| b == 39));
        match UringBackend::new(4) {
            Ok(mut uring) => assert_eq!(exercise(&mut uring, dir.path()), blocking),
            Err(e) => eprintln!("io_uring unavailable here ({e}); only the fallback was tested"),
        }
    }

    #[test]
    fn closing_an_unknown_file_is_an_error() {
        let mut backend = BlockingBackend::new();
        assert_eq!(
            backend.close(7).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
