//! Writing one incremental checkpoint: the puts, deletes and meta blobs changed since the
//! previous checkpoint, then a commit record, an fsync and the manifest switch.

use std::time::{Duration, Instant};

use crate::appender::SegmentAppender;
use crate::compaction::CompactionStats;
use crate::error::{StateError, StateResult};
use crate::manifest::{CheckpointEntry, SegmentRef};
use crate::segment::{
    check_record_size, encode_commit, encode_delete, encode_meta, encode_put, meta_record_bytes,
    put_record_bytes,
};
use crate::store::{ActiveSegment, StateStore};

/// What committing a checkpoint did.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointStats {
    /// The checkpoint id.
    pub checkpoint_id: u64,
    /// Bytes appended to the segment (records, framing, commit record; the header of a new
    /// segment included).
    pub bytes: u64,
    /// Put, delete and meta records written.
    pub records: u64,
    /// Time from `begin_checkpoint` to the durable manifest.
    pub duration: Duration,
    /// Segment the checkpoint was written to.
    pub segment_seq: u64,
    /// The compaction run after the commit, if the dead fraction called for one.
    pub compaction: Option<CompactionStats>,
    /// Why that compaction failed, if it did (the checkpoint itself is committed).
    pub compaction_error: Option<String>,
}

/// Writer of one checkpoint. Errors are sticky: after one, every call returns
/// `StateError::Aborted` and the checkpoint is abandoned. The caller keeps the changes of an
/// abandoned checkpoint and writes them again in the next one.
pub struct CheckpointWriter<'s> {
    store: &'s mut StateStore,
    id: u64,
    appender: SegmentAppender,
    /// The segment file was created for this checkpoint (removed if it is abandoned).
    created: bool,
    /// End of the last complete checkpoint in the segment (where an abandon truncates to).
    committed_end: u64,
    bytes_start: u64,
    records: u64,
    started: Instant,
    failure: Option<String>,
    done: bool,
}

impl<'s> CheckpointWriter<'s> {
    pub(crate) fn new(
        store: &'s mut StateStore,
        id: u64,
        appender: SegmentAppender,
        created: bool,
    ) -> Self {
        let committed_end = if created { 0 } else { appender.end() };
        CheckpointWriter {
            store,
            id,
            bytes_start: committed_end,
            committed_end,
            appender,
            created,
            records: 0,
            started: Instant::now(),
            failure: None,
            done: false,
        }
    }

    /// The checkpoint id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Records that `key` has `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> StateResult<()> {
        self.check_open()?;
        check_record_size(1 + 4 + key.len() + value.len(), "put").map_err(|e| self.fail(e))?;
        let record_bytes = put_record_bytes(key.len(), value.len());
        let after = self.store.index.bytes_after_put(key, record_bytes);
        self.check_state_bytes(after, "put")?;
        encode_put(key, value, self.appender.buf_mut());
        self.store.index.put(key, record_bytes);
        self.appended()
    }

    /// Records that `key` has no value any more (nothing is written if it had none).
    pub fn delete(&mut self, key: &[u8]) -> StateResult<()> {
        self.check_open()?;
        check_record_size(1 + key.len(), "delete").map_err(|e| self.fail(e))?;
        if !self.store.index.delete(key) {
            return Ok(());
        }
        encode_delete(key, self.appender.buf_mut());
        self.appended()
    }

    /// Records meta blob `name` (source offsets, watermark, timers). It keeps its value in
    /// later checkpoints until written again.
    pub fn put_meta(&mut self, name: &str, value: &[u8]) -> StateResult<()> {
        self.check_open()?;
        if name.len() > usize::from(u16::MAX) {
            let e = StateError::Limit {
                limit: "meta_name_bytes_max",
                max: u64::from(u16::MAX),
                detail: format!("meta name of {} bytes", name.len()),
            };
            return Err(self.fail(e));
        }
        check_record_size(1 + 2 + name.len() + value.len(), "meta").map_err(|e| self.fail(e))?;
        let record_bytes = meta_record_bytes(name.len(), value.len());
        let after = self.store.index.bytes_after_meta(name, record_bytes);
        self.check_state_bytes(after, "meta")?;
        encode_meta(name, value, self.appender.buf_mut());
        self.store.index.put_meta(name, record_bytes);
        self.appended()
    }

    /// Makes the checkpoint durable and the latest complete one: commit record, fsync of the
    /// segment, manifest switch; then removes segments no retained checkpoint needs and
    /// compacts if the dead fraction calls for it.
    pub fn commit(mut self) -> StateResult<CheckpointStats> {
        self.check_open()?;
        match self.commit_inner() {
            Ok(stats) => Ok(stats),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn commit_inner(&mut self) -> StateResult<CheckpointStats> {
        encode_commit(self.id, self.records, self.appender.buf_mut());
        let end = self.appender.end();
        let path = self.appender.path.clone();
        self.appender
            .flush(self.store.backend.as_mut())
            .map_err(|e| StateError::io("write", &path, e))?;
        self.store.sync_file(self.appender.file, &path)?;
        if self.created {
            self.store.sync_dir()?;
        }
        let mut manifest = self.store.manifest.clone();
        manifest.generation += 1;
        let seq = self.appender.seq;
        let mut segments = manifest
            .latest()
            .map(|c| c.segments.clone())
            .unwrap_or_default();
        match segments.last_mut() {
            Some(last) if last.seq == seq => last.end = end,
            _ => segments.push(SegmentRef { seq, end }),
        }
        manifest.checkpoints.push(CheckpointEntry {
            id: self.id,
            segments,
        });
        let retained_max = self.store.options.checkpoints_retained_max;
        if manifest.checkpoints.len() > retained_max {
            let excess = manifest.checkpoints.len() - retained_max;
            manifest.checkpoints.drain(..excess);
        }
        self.store.switch_manifest(manifest)?;
        // The checkpoint is complete from here on.
        self.done = true;
        self.store.active = Some(ActiveSegment {
            seq,
            path,
            file: self.appender.file,
            end,
        });
        self.store.remove_unreferenced_segments();
        let mut stats = CheckpointStats {
            checkpoint_id: self.id,
            bytes: end - self.bytes_start,
            records: self.records,
            duration: Duration::ZERO,
            segment_seq: seq,
            compaction: None,
            compaction_error: None,
        };
        if self.store.compaction_due() {
            match self.store.compact() {
                Ok(c) => stats.compaction = Some(c),
                Err(e) => {
                    tracing::warn!(shard = self.store.shard, error = %e, "state compaction failed");
                    stats.compaction_error = Some(e.to_string());
                }
            }
        }
        stats.duration = self.started.elapsed();
        Ok(stats)
    }

    fn appended(&mut self) -> StateResult<()> {
        self.records += 1;
        if let Err(e) = self.appender.flush_if_full(self.store.backend.as_mut()) {
            let e = StateError::io("write", &self.appender.path, e);
            return Err(self.fail(e));
        }
        Ok(())
    }

    fn check_state_bytes(&mut self, after: u64, what: &str) -> StateResult<()> {
        let max = self.store.options.state_bytes_max;
        if after > max {
            let e = StateError::Limit {
                limit: "state_bytes_max",
                max,
                detail: format!("a {what} would make the live state {after} bytes"),
            };
            return Err(self.fail(e));
        }
        Ok(())
    }

    fn check_open(&self) -> StateResult<()> {
        match &self.failure {
            Some(reason) => Err(StateError::Aborted {
                checkpoint_id: self.id,
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    fn fail(&mut self, e: StateError) -> StateError {
        self.failure.get_or_insert_with(|| e.to_string());
        e
    }
}

impl Drop for CheckpointWriter<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if self.store.poisoned.is_some() {
            // What is durable is unknown (the manifest may even name this checkpoint already):
            // leave the files as they are for the next open to sort out.
            return;
        }
        // Abandoned: the manifest still names the previous checkpoint. Undo the appends so the
        // next checkpoint starts at the committed end; failures here only leave a tail that the
        // next open cuts.
        let backend = self.store.backend.as_mut();
        let path = &self.appender.path;
        if self.created {
            let _ = backend.close(self.appender.file);
            if let Err(e) = backend.remove(path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove an abandoned segment");
            }
        } else if let Err(e) = backend.truncate(self.appender.file, self.committed_end) {
            tracing::warn!(path = %path.display(), error = %e, "cannot cut an abandoned checkpoint");
        }
        self.store.index_stale = true;
        tracing::warn!(
            shard = self.store.shard,
            checkpoint_id = self.id,
            "checkpoint abandoned"
        );
    }
}
