//! io_uring backend: writes are submitted in batches with at most `io_depth_max` in flight;
//! fsyncs are io_uring fsync operations issued once the file's writes are done.
//!
//! **Invariant:** a buffer handed to the kernel stays owned by `slots` until its completion is
//! reaped; the backend waits for every in-flight operation before it is dropped.

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use io_uring::{opcode, types, IoUring};

use crate::backend::{sync_dir_blocking, FileId, FileTable, StorageBackend};

/// errno of an interrupted system call.
const EINTR: i32 = 4;

/// `user_data` of the single fsync in flight (write slots use their index).
const FSYNC_USER_DATA: u64 = u64::MAX;

/// One write in flight.
struct InFlight {
    fd: i32,
    buf: Vec<u8>,
    offset: u64,
    /// Bytes of `buf` the kernel has already written (short writes are resubmitted).
    done: usize,
}

/// State writes through io_uring.
pub struct UringBackend {
    ring: IoUring,
    files: FileTable,
    /// Write slots; `None` is free. Length is `io_depth_max`.
    slots: Vec<Option<InFlight>>,
    slots_free: Vec<usize>,
    /// First error of a completed write, reported by the next call.
    error_pending: Option<io::Error>,
    /// Buffers of completed writes, kept for reuse (at most `io_depth_max`).
    buffers_spare: Vec<Vec<u8>>,
}

impl UringBackend {
    /// Creates a ring for `io_depth_max` writes in flight; fails if the kernel refuses io_uring.
    pub fn new(io_depth_max: u32) -> io::Result<Self> {
        let depth = io_depth_max.max(1);
        let ring = IoUring::new(depth.next_power_of_two())?;
        Ok(UringBackend {
            ring,
            files: FileTable::default(),
            slots: (0..depth).map(|_| None).collect(),
            slots_free: (0..depth as usize).rev().collect(),
            error_pending: None,
            buffers_spare: Vec::new(),
        })
    }

    fn in_flight(&self) -> usize {
        self.slots.len() - self.slots_free.len()
    }

    /// Pushes the remaining bytes of slot `slot` to the submission queue.
    fn push_write(&mut self, slot: usize) -> io::Result<()> {
        let w = self.slots[slot]
            .as_ref()
            .ok_or_else(|| io::Error::other("io_uring write slot is empty"))?;
        let rest = &w.buf[w.done..];
        let len = u32::try_from(rest.len()).map_err(|_| io::Error::other("write over 4 GiB"))?;
        let entry = opcode::Write::new(types::Fd(w.fd), rest.as_ptr(), len)
            .offset(w.offset + w.done as u64)
            .build()
            .user_data(slot as u64);
        self.push(&entry)
    }

    /// Submits, again when a signal interrupted the system call (EINTR is not an I/O error).
    fn submit(&mut self) -> io::Result<usize> {
        loop {
            match self.ring.submit() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    /// Submits and waits for `want` completions, again when a signal interrupted the wait.
    fn submit_and_wait(&mut self, want: usize) -> io::Result<usize> {
        loop {
            match self.ring.submit_and_wait(want) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    fn push(&mut self, entry: &io_uring::squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: the buffer the entry points to is owned by `self.slots` until its
            // completion is reaped (or, for fsync, no buffer is involved).
            let pushed = unsafe { self.ring.submission().push(entry) };
            if pushed.is_ok() {
                return Ok(());
            }
            self.submit()?;
        }
    }

    /// Reaps completions; resubmits short writes; frees slots. Returns the fsync result if its
    /// completion was seen.
    fn reap(&mut self) -> io::Result<Option<i32>> {
        let mut fsync_result = None;
        let completions: Vec<(u64, i32)> = self
            .ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        for (user_data, result) in completions {
            if user_data == FSYNC_USER_DATA {
                fsync_result = Some(result);
                continue;
            }
            let slot = user_data as usize;
            let Some(w) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
                return Err(io::Error::other(format!(
                    "io_uring completion for unknown slot {slot}"
                )));
            };
            if result == -EINTR {
                // Interrupted by a signal before writing anything: write it again.
                self.push_write(slot)?;
            } else if result < 0 {
                self.error_pending
                    .get_or_insert(io::Error::from_raw_os_error(-result));
                self.free_slot(slot);
            } else if result == 0 && w.done < w.buf.len() {
                self.error_pending
                    .get_or_insert(io::Error::from(io::ErrorKind::WriteZero));
                self.free_slot(slot);
            } else {
                w.done += result as usize;
                if w.done < w.buf.len() {
                    self.push_write(slot)?;
                } else {
                    self.free_slot(slot);
                }
            }
        }
        Ok(fsync_result)
    }

    fn free_slot(&mut self, slot: usize) {
        if let Some(w) = self.slots[slot].take() {
            let mut buf = w.buf;
            if self.buffers_spare.len() < self.slots.len() {
                buf.clear();
                self.buffers_spare.push(buf);
            }
        }
        self.slots_free.push(slot);
    }

    /// Waits until every write in flight has completed, then reports the first error.
    fn drain(&mut self) -> io::Result<()> {
        while self.in_flight() > 0 {
            self.submit_and_wait(1)?;
            self.reap()?;
        }
        self.take_error()
    }

    fn take_error(&mut self) -> io::Result<()> {
        match self.error_pending.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl StorageBackend for UringBackend {
    fn name(&self) -> &'static str {
        "io_uring"
    }
    fn create(&mut self, path: &Path) -> io::Result<FileId> {
        self.files.open(path, true)
    }
    fn open_existing(&mut self, path: &Path) -> io::Result<FileId> {
        self.files.open(path, false)
    }
    fn write(&mut self, file: FileId, offset: u64, buf: Vec<u8>) -> io::Result<()> {
        self.take_error()?;
        if buf.is_empty() {
            return Ok(());
        }
        let fd = self.files.get(file)?.as_raw_fd();
        while self.slots_free.is_empty() {
            self.submit_and_wait(1)?;
            self.reap()?;
        }
        let Some(slot) = self.slots_free.pop() else {
            return Err(io::Error::other("io_uring write slot accounting is broken"));
        };
        self.slots[slot] = Some(InFlight {
            fd,
            buf,
            offset,
            done: 0,
        });
        self.push_write(slot)?;
        self.submit()?;
        self.reap()?;
        self.take_error()
    }
    fn wait(&mut self, file: FileId) -> io::Result<()> {
        self.files.get(file)?;
        self.drain()
    }
    fn sync(&mut self, file: FileId) -> io::Result<()> {
        let fd = self.files.get(file)?.as_raw_fd();
        self.drain()?;
        let entry = opcode::Fsync::new(types::Fd(fd))
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .user_data(FSYNC_USER_DATA);
        self.push(&entry)?;
        loop {
            self.submit_and_wait(1)?;
            if let Some(result) = self.reap()? {
                if result == -EINTR {
                    self.push(&entry)?;
                    continue;
                }
                return if result < 0 {
                    Err(io::Error::from_raw_os_error(-result))
                } else {
                    Ok(())
                };
            }
        }
    }
    fn truncate(&mut self, file: FileId, len: u64) -> io::Result<()> {
        self.drain()?;
        self.files.get(file)?.set_len(len)
    }
    fn close(&mut self, file: FileId) -> io::Result<()> {
        let drained = self.drain();
        self.files.close(file)?;
        drained
    }
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        self.drain()?;
        sync_dir_blocking(dir)
    }
    fn remove(&mut self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn recycled_buffer(&mut self) -> Option<Vec<u8>> {
        self.buffers_spare.pop()
    }
}

impl Drop for UringBackend {
    fn drop(&mut self) {
        // The kernel may still read the buffers of writes in flight: wait for them all.
        while self.in_flight() > 0 {
            if self.submit_and_wait(1).is_err() || self.reap().is_err() {
                // Nothing else can be done safely: leak the buffers rather than free them.
                for slot in self.slots.iter_mut() {
                    if let Some(w) = slot.take() {
                        std::mem::forget(w.buf);
                    }
                }
                return;
            }
        }
    }
}
