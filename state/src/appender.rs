//! Buffers encoded records of one segment and hands them to the backend in chunks of
//! `write_chunk_bytes` (a bounded number of which may be in flight in the backend).

use std::io;
use std::path::PathBuf;

use crate::backend::{FileId, StorageBackend};

/// Appends to one open segment file from a known byte offset.
pub(crate) struct SegmentAppender {
    /// Segment sequence number.
    pub(crate) seq: u64,
    /// Segment path (for errors).
    pub(crate) path: PathBuf,
    /// The open file.
    pub(crate) file: FileId,
    /// File offset of `buf[0]`: bytes before it were handed to the backend.
    offset: u64,
    buf: Vec<u8>,
    chunk_bytes: usize,
}

impl SegmentAppender {
    /// An appender writing `file` from `offset` on.
    pub(crate) fn new(
        seq: u64,
        path: PathBuf,
        file: FileId,
        offset: u64,
        chunk_bytes: usize,
    ) -> Self {
        SegmentAppender {
            seq,
            path,
            file,
            offset,
            buf: Vec::with_capacity(chunk_bytes + chunk_bytes / 8),
            chunk_bytes,
        }
    }

    /// The buffer to encode the next records into.
    pub(crate) fn buf_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// File offset just after the last appended byte.
    pub(crate) fn end(&self) -> u64 {
        self.offset + self.buf.len() as u64
    }

    /// Submits the buffer once it holds a chunk.
    pub(crate) fn flush_if_full(&mut self, backend: &mut dyn StorageBackend) -> io::Result<()> {
        if self.buf.len() >= self.chunk_bytes {
            self.flush(backend)?;
        }
        Ok(())
    }

    /// Submits whatever is buffered.
    pub(crate) fn flush(&mut self, backend: &mut dyn StorageBackend) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut next = backend
            .recycled_buffer()
            .unwrap_or_else(|| Vec::with_capacity(self.chunk_bytes + self.chunk_bytes / 8));
        next.clear();
        let full = std::mem::replace(&mut self.buf, next);
        let len = full.len() as u64;
        let offset = self.offset;
        self.offset += len;
        backend.write(self.file, offset, full)
    }
}
