//! Compaction: rewrites the live state of the latest checkpoint into one new snapshot segment
//! and makes the latest checkpoint read only that segment. Segments that no retained checkpoint
//! reads any more are then deleted.

use std::time::{Duration, Instant};

use crate::checkpoint::replay;
use crate::error::{StateError, StateResult};
use crate::live_index::LiveIndex;
use crate::manifest::SegmentRef;
use crate::segment::{
    encode_commit, encode_meta, encode_put, SEGMENT_FLAG_SNAPSHOT, SEGMENT_HEADER_BYTES,
};
use crate::store::{ActiveSegment, StateStore};

/// What a compaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionStats {
    /// The checkpoint whose state was rewritten.
    pub checkpoint_id: u64,
    /// The new snapshot segment.
    pub segment_seq: u64,
    /// Bytes of the new segment.
    pub bytes: u64,
    /// Records written (puts and meta).
    pub records: u64,
    /// Bytes the latest checkpoint read before (segment headers excluded).
    pub bytes_before: u64,
    /// Segment files deleted because no retained checkpoint reads them any more.
    pub segments_deleted: usize,
    /// Time it took.
    pub duration: Duration,
}

impl StateStore {
    /// Bytes the latest checkpoint's replay reads (segment headers excluded).
    pub(crate) fn latest_chain_bytes(&self) -> u64 {
        self.manifest.latest().map_or(0, |c| {
            c.segments
                .iter()
                .map(|s| s.end.saturating_sub(SEGMENT_HEADER_BYTES as u64))
                .sum()
        })
    }

    /// Whether the dead fraction of the latest checkpoint's segments calls for a compaction.
    pub(crate) fn compaction_due(&self) -> bool {
        let chain = self.latest_chain_bytes();
        if chain == 0 || chain < self.options.compaction_bytes_min || self.index_stale {
            return false;
        }
        let dead = chain.saturating_sub(self.index.bytes());
        dead as f64 / chain as f64 >= self.options.compaction_dead_fraction_min
    }

    /// Rewrites the latest checkpoint's live state into a new snapshot segment (verifying
    /// every record on the way) and deletes segments no retained checkpoint reads any more.
    pub fn compact(&mut self) -> StateResult<CompactionStats> {
        self.check_not_poisoned()?;
        let started = Instant::now();
        let Some(latest) = self.manifest.latest().cloned() else {
            return Err(StateError::Usage(
                "there is no checkpoint to compact".into(),
            ));
        };
        let bytes_before = self.latest_chain_bytes();
        let (checkpoint, _) = replay(&self.dir, self.shard, &latest)?;
        let mut appender = self.create_segment(latest.id, SEGMENT_FLAG_SNAPSHOT)?;
        let mut records = 0u64;
        let written = (|| -> StateResult<()> {
            let io_path = appender.path.clone();
            let io_err = |e: std::io::Error| StateError::io("write", &io_path, e);
            for (name, value) in checkpoint.meta_iter() {
                encode_meta(name, value, appender.buf_mut());
                records += 1;
            }
            for (key, value) in checkpoint.iter() {
                encode_put(key, value, appender.buf_mut());
                records += 1;
                appender
                    .flush_if_full(self.backend.as_mut())
                    .map_err(io_err)?;
            }
            encode_commit(latest.id, records, appender.buf_mut());
            appender.flush(self.backend.as_mut()).map_err(io_err)?;
            self.sync_file(appender.file, &io_path)?;
            self.sync_dir()
        })();
        let end = appender.end();
        let switched = written.and_then(|()| {
            let mut manifest = self.manifest.clone();
            manifest.generation += 1;
            if let Some(last) = manifest.checkpoints.last_mut() {
                last.segments = vec![SegmentRef {
                    seq: appender.seq,
                    end,
                }];
            }
            self.switch_manifest(manifest)
        });
        if let Err(e) = switched {
            let _ = self.backend.close(appender.file);
            if self.poisoned.is_some() {
                // The manifest may name the new segment already: leave it to the next open.
                return Err(e);
            }
            if let Err(re) = self.backend.remove(&appender.path) {
                tracing::warn!(path = %appender.path.display(), error = %re,
                    "cannot remove an abandoned compaction segment");
            }
            return Err(e);
        }
        if let Some(old) = self.active.take() {
            if let Err(e) = self.backend.close(old.file) {
                tracing::warn!(path = %old.path.display(), error = %e, "closing a state segment failed");
            }
        }
        self.active = Some(ActiveSegment {
            seq: appender.seq,
            path: appender.path.clone(),
            file: appender.file,
            end,
        });
        self.index = LiveIndex::from_checkpoint(&checkpoint);
        self.index_stale = false;
        let segments_deleted = self.remove_unreferenced_segments();
        Ok(CompactionStats {
            checkpoint_id: latest.id,
            segment_seq: appender.seq,
            bytes: end,
            records,
            bytes_before,
            segments_deleted,
            duration: started.elapsed(),
        })
    }
}
