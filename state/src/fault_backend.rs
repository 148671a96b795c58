//! A [`StorageBackend`] that injects faults into another one, for tests of the store and of
//! the engine's recovery: fail after N writes or N fsyncs, with a chosen error (for example
//! `StorageFull` for ENOSPC), leaving a torn half-written buffer behind; refuse to create files
//! (a read-only directory).

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::backend::{FileId, StorageBackend};

/// The faults to inject, shared with the test so it can change them while the store runs.
#[derive(Debug)]
pub struct FaultPlan {
    writes_ok: AtomicU64,
    syncs_ok: AtomicU64,
    writes_done: AtomicU64,
    syncs_done: AtomicU64,
    state: Mutex<PlanState>,
}

#[derive(Debug)]
struct PlanState {
    write_error: io::ErrorKind,
    create_error: Option<io::ErrorKind>,
    first_failure: Option<&'static str>,
}

impl FaultPlan {
    /// A plan that injects nothing yet.
    pub fn new() -> Arc<Self> {
        Arc::new(FaultPlan {
            writes_ok: AtomicU64::new(u64::MAX),
            syncs_ok: AtomicU64::new(u64::MAX),
            writes_done: AtomicU64::new(0),
            syncs_done: AtomicU64::new(0),
            state: Mutex::new(PlanState {
                write_error: io::ErrorKind::Other,
                create_error: None,
                first_failure: None,
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PlanState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on, `n` more writes (write, truncate, rename) succeed; the ones after fail with
    /// `kind`; a failing write first writes half of its buffer (a torn write).
    pub fn fail_writes_after(&self, n: u64, kind: io::ErrorKind) {
        self.state().write_error = kind;
        self.writes_ok.store(n, Ordering::SeqCst);
    }

    /// From now on, `n` more fsyncs (of files or directories) succeed; the ones after fail.
    pub fn fail_syncs_after(&self, n: u64) {
        self.syncs_ok.store(n, Ordering::SeqCst);
    }

    /// Creating files fails with `kind` (for example `ReadOnlyFilesystem`), or works again
    /// with `None`.
    pub fn fail_creates(&self, kind: Option<io::ErrorKind>) {
        self.state().create_error = kind;
    }

    /// Stops injecting faults.
    pub fn heal(&self) {
        self.writes_ok.store(u64::MAX, Ordering::SeqCst);
        self.syncs_ok.store(u64::MAX, Ordering::SeqCst);
        self.state().create_error = None;
    }

    /// Writes (write, truncate, rename) attempted so far.
    pub fn writes(&self) -> u64 {
        self.writes_done.load(Ordering::SeqCst)
    }

    /// Fsyncs (files and directories) attempted so far.
    pub fn syncs(&self) -> u64 {
        self.syncs_done.load(Ordering::SeqCst)
    }

    /// The first operation that failed by injection (`write`, `truncate`, `rename`, `fsync`,
    /// `fsync directory`, `create`).
    pub fn first_failure(&self) -> Option<&'static str> {
        self.state().first_failure
    }

    /// Counts one operation against `budget`; `true` if it must fail.
    fn spend(&self, budget: &AtomicU64, done: &AtomicU64, op: &'static str) -> bool {
        done.fetch_add(1, Ordering::SeqCst);
        let fail = budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| match left {
                0 => None,
                u64::MAX => Some(u64::MAX),
                n => Some(n - 1),
            })
            .is_err();
        if fail {
            self.state().first_failure.get_or_insert(op);
        }
        fail
    }

    fn write_error(&self, op: &'static str) -> Option<io::Error> {
        if self.spend(&self.writes_ok, &self.writes_done, op) {
            let kind = self.state().write_error;
            Some(io::Error::new(kind, format!("injected {op} fault")))
        } else {
            None
        }
    }

    fn sync_error(&self, op: &'static str) -> Option<io::Error> {
        if self.spend(&self.syncs_ok, &self.syncs_done, op) {
            Some(io::Error::other(format!("injected {op} fault")))
        } else {
            None
        }
    }
}

/// Wraps a backend and injects the faults of a [`FaultPlan`].
pub struct FaultBackend {
    inner: Box<dyn StorageBackend>,
    plan: Arc<FaultPlan>,
}

impl FaultBackend {
    /// Wraps `inner`, injecting the faults of `plan`.
    pub fn new(inner: Box<dyn StorageBackend>, plan: Arc<FaultPlan>) -> Self {
        FaultBackend { inner, plan }
    }

    fn check_create(&self, path: &Path) -> io::Result<()> {
        let kind = self.plan.state().create_error;
        match kind {
            Some(kind) => {
                self.plan.state().first_failure.get_or_insert("create");
                Err(io::Error::new(
                    kind,
                    format!("injected create fault for {}", path.display()),
                ))
            }
            None => Ok(()),
        }
    }
}

impl StorageBackend for FaultBackend {
    fn name(&self) -> &'static str {
        "fault-injecting"
    }
    fn create(&mut self, path: &Path) -> io::Result<FileId> {
        self.check_create(path)?;
        self.inner.create(path)
    }
    fn open_existing(&mut self, path: &Path) -> io::Result<FileId> {
        self.inner.open_existing(path)
    }
    fn write(&mut self, file: FileId, offset: u64, buf: Vec<u8>) -> io::Result<()> {
        if let Some(e) = self.plan.write_error("write") {
            let half = buf[..buf.len() / 2].to_vec();
            if !half.is_empty() {
                self.inner.write(file, offset, half)?;
            }
            self.inner.wait(file)?;
            return Err(e);
        }
        self.inner.write(file, offset, buf)
    }
    fn wait(&mut self, file: FileId) -> io::Result<()> {
        self.inner.wait(file)
    }
    fn sync(&mut self, file: FileId) -> io::Result<()> {
        match self.plan.sync_error("fsync") {
            Some(e) => Err(e),
            None => self.inner.sync(file),
        }
    }
    fn truncate(&mut self, file: FileId, len: u64) -> io::Result<()> {
        match self.plan.write_error("truncate") {
            Some(e) => Err(e),
            None => self.inner.truncate(file, len),
        }
    }
    fn close(&mut self, file: FileId) -> io::Result<()> {
        self.inner.close(file)
    }
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        match self.plan.write_error("rename") {
            Some(e) => Err(e),
            None => self.inner.rename(from, to),
        }
    }
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        match self.plan.sync_error("fsync directory") {
            Some(e) => Err(e),
            None => self.inner.sync_dir(dir),
        }
    }
    fn remove(&mut self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }
    fn recycled_buffer(&mut self) -> Option<Vec<u8>> {
        self.inner.recycled_buffer()
    }
}
