//! The per-shard state store: opening (see `recovery`), starting checkpoints, the manifest
//! switch and the durability rules.
//!
//! **Invariant:** a checkpoint is complete exactly when the manifest naming it is durable;
//! segments are fsynced before the manifest that names them is written.
//! **Invariant:** after a failed fsync the store accepts no more writes (`Poisoned`).

use std::io;
use std::path::{Path, PathBuf};

use crate::appender::SegmentAppender;
use crate::backend::{open_backend, FileId, StorageBackend};
use crate::checkpoint::{replay, Checkpoint};
use crate::error::{StateError, StateResult};
use crate::live_index::LiveIndex;
use crate::manifest::{Manifest, MANIFEST_FILE, MANIFEST_TMP_FILE};
use crate::options::StoreOptions;
use crate::recovery::{recover, RecoveryReport};
use crate::segment::{parse_segment_file_name, segment_file_name, SegmentHeader};
use crate::writer::CheckpointWriter;

/// The segment new checkpoints append to.
pub(crate) struct ActiveSegment {
    pub(crate) seq: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: FileId,
    /// End of the last complete checkpoint in it.
    pub(crate) end: u64,
}

/// The log-structured state store of one shard, in directory `<dir>/shard-<shard>`.
pub struct StateStore {
    pub(crate) dir: PathBuf,
    pub(crate) shard: u32,
    pub(crate) options: StoreOptions,
    pub(crate) backend: Box<dyn StorageBackend>,
    /// The manifest on disk (plus `segment_seq_next` of segments created since).
    pub(crate) manifest: Manifest,
    pub(crate) active: Option<ActiveSegment>,
    pub(crate) index: LiveIndex,
    /// The index no longer matches the latest checkpoint (a checkpoint was abandoned).
    pub(crate) index_stale: bool,
    pub(crate) poisoned: Option<String>,
    pub(crate) recovery: RecoveryReport,
}

/// Directory of shard `shard` under the store directory `dir`.
pub fn shard_dir(dir: &Path, shard: u32) -> PathBuf {
    dir.join(format!("shard-{shard:04}"))
}

impl StateStore {
    /// Opens (creating if needed) the store of `shard` under `dir`, recovering the latest
    /// complete checkpoint: a torn tail after it is reported and cut, corruption inside it is
    /// `StateError::Corrupt`. Returns `None` when there is no checkpoint yet.
    pub fn open(
        dir: impl AsRef<Path>,
        shard: u32,
        options: StoreOptions,
    ) -> StateResult<(StateStore, Option<Checkpoint>)> {
        options.validate()?;
        let backend = open_backend(options.backend, options.io_depth_max)?;
        recover(dir.as_ref(), shard, options, backend)
    }

    /// Like [`StateStore::open`] with a given I/O backend (tests inject faults this way).
    pub fn open_with_backend(
        dir: impl AsRef<Path>,
        shard: u32,
        options: StoreOptions,
        backend: Box<dyn StorageBackend>,
    ) -> StateResult<(StateStore, Option<Checkpoint>)> {
        options.validate()?;
        recover(dir.as_ref(), shard, options, backend)
    }

    /// Starts checkpoint `id`, which must be greater than every committed one. The writer
    /// records what changed since the previous checkpoint; dropping it without `commit`
    /// abandons the checkpoint.
    pub fn begin_checkpoint(&mut self, id: u64) -> StateResult<CheckpointWriter<'_>> {
        self.check_not_poisoned()?;
        if let Some(last) = self.manifest.latest() {
            if id <= last.id {
                return Err(StateError::Usage(format!(
                    "checkpoint id {id} is not greater than the last committed {}",
                    last.id
                )));
            }
        }
        if self.index_stale {
            self.index = match self.manifest.latest() {
                Some(entry) => LiveIndex::from_checkpoint(&replay(&self.dir, self.shard, entry)?.0),
                None => LiveIndex::default(),
            };
            self.index_stale = false;
        }
        let roll = self
            .active
            .as_ref()
            .is_none_or(|a| a.end >= self.options.segment_bytes_max);
        let (appender, created) = if roll {
            if let Some(old) = self.active.take() {
                self.backend
                    .close(old.file)
                    .map_err(|e| StateError::io("close", &old.path, e))?;
            }
            (self.create_segment(id, 0)?, true)
        } else {
            let a = self.active.as_ref().ok_or_else(|| {
                StateError::Usage("internal: no active segment to append to".into())
            })?;
            let appender = SegmentAppender::new(
                a.seq,
                a.path.clone(),
                a.file,
                a.end,
                self.options.write_chunk_bytes,
            );
            (appender, false)
        };
        Ok(CheckpointWriter::new(self, id, appender, created))
    }

    /// Creates the next segment file and an appender holding its header.
    pub(crate) fn create_segment(
        &mut self,
        checkpoint_id: u64,
        flags: u16,
    ) -> StateResult<SegmentAppender> {
        let seq = self.manifest.segment_seq_next;
        self.manifest.segment_seq_next += 1;
        let path = self.dir.join(segment_file_name(seq));
        let file = self
            .backend
            .create(&path)
            .map_err(|e| StateError::io("create", &path, e))?;
        let mut appender = SegmentAppender::new(seq, path, file, 0, self.options.write_chunk_bytes);
        SegmentHeader {
            flags,
            shard: self.shard,
            seq,
            checkpoint_id,
        }
        .encode(appender.buf_mut());
        Ok(appender)
    }

    /// Reads retained checkpoint `id` back from disk (verifying every checksum).
    pub fn load_checkpoint(&self, id: u64) -> StateResult<Checkpoint> {
        let entry = self
            .manifest
            .checkpoints
            .iter()
            .find(|c| c.id == id)
            .ok_or_else(|| StateError::Usage(format!("checkpoint {id} is not retained")))?;
        Ok(replay(&self.dir, self.shard, entry)?.0)
    }

    /// Ids of the retained complete checkpoints, oldest first.
    pub fn checkpoint_ids(&self) -> Vec<u64> {
        self.manifest.checkpoints.iter().map(|c| c.id).collect()
    }

    /// The shard directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The shard.
    pub fn shard(&self) -> u32 {
        self.shard
    }

    /// Name of the I/O backend in use (`io_uring`, `blocking`, ...).
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// What opening the store found and repaired.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// Bytes of the live records (what a compaction would write), as of the last write.
    pub fn live_bytes(&self) -> u64 {
        self.index.bytes()
    }

    /// Whether a failed fsync made the store refuse writes.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    pub(crate) fn check_not_poisoned(&self) -> StateResult<()> {
        match &self.poisoned {
            Some(cause) => Err(StateError::Poisoned {
                shard: self.shard,
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    fn poison(&mut self, op: &str, path: &Path, e: &io::Error) {
        let cause = format!("{op} {} failed: {e}", path.display());
        tracing::error!(shard = self.shard, %cause, "state store poisoned");
        self.poisoned.get_or_insert(cause);
    }

    /// Waits for the writes of `file`, then fsyncs it; a failed fsync poisons the store.
    pub(crate) fn sync_file(&mut self, file: FileId, path: &Path) -> StateResult<()> {
        self.backend
            .wait(file)
            .map_err(|e| StateError::io("write", path, e))?;
        self.backend.sync(file).map_err(|e| {
            self.poison("fsync", path, &e);
            StateError::io("fsync", path, e)
        })
    }

    /// Fsyncs the shard directory; a failure poisons the store.
    pub(crate) fn sync_dir(&mut self) -> StateResult<()> {
        let dir = self.dir.clone();
        self.backend.sync_dir(&dir).map_err(|e| {
            self.poison("fsync of directory", &dir, &e);
            StateError::io("fsync directory", &dir, e)
        })
    }

    /// Makes `manifest` the manifest on disk: write a temporary file, fsync, rename, fsync the
    /// directory. On success `self.manifest` is `manifest`.
    pub(crate) fn switch_manifest(&mut self, manifest: Manifest) -> StateResult<()> {
        let tmp = self.dir.join(MANIFEST_TMP_FILE);
        let path = self.dir.join(MANIFEST_FILE);
        match self.backend.remove(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StateError::io("remove", &tmp, e)),
        }
        let file = self
            .backend
            .create(&tmp)
            .map_err(|e| StateError::io("create", &tmp, e))?;
        let written = self
            .backend
            .write(file, 0, manifest.encode())
            .map_err(|e| StateError::io("write", &tmp, e))
            .and_then(|()| self.sync_file(file, &tmp));
        let closed = self.backend.close(file);
        if let Err(e) = written {
            let _ = self.backend.remove(&tmp);
            return Err(e);
        }
        closed.map_err(|e| StateError::io("close", &tmp, e))?;
        self.backend
            .rename(&tmp, &path)
            .map_err(|e| StateError::io("rename", &tmp, e))?;
        self.sync_dir()?;
        self.manifest = manifest;
        Ok(())
    }

    /// Removes the segment files no retained checkpoint reads. Failures are logged (the next
    /// open removes them). Returns the number removed.
    pub(crate) fn remove_unreferenced_segments(&mut self) -> usize {
        let referenced = self.manifest.segments_referenced();
        let active = self.active.as_ref().map(|a| a.seq);
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot list state segments");
                return 0;
            }
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(seq) = name.to_str().and_then(parse_segment_file_name) else {
                continue;
            };
            if referenced.contains_key(&seq)
                || active == Some(seq)
                || seq >= self.manifest.segment_seq_next
            {
                continue;
            }
            match self.backend.remove(&entry.path()) {
                Ok(()) => removed += 1,
                Err(e) => tracing::warn!(path = %entry.path().display(), error = %e,
                    "cannot remove an unneeded state segment"),
            }
        }
        removed
    }
}

impl Drop for StateStore {
    fn drop(&mut self) {
        if let Some(a) = self.active.take() {
            if let Err(e) = self.backend.close(a.file) {
                tracing::warn!(path = %a.path.display(), error = %e, "closing a state segment failed");
            }
        }
    }
}
