//! Opening a shard's store: read the manifest, replay and verify the latest complete
//! checkpoint, cut torn tails after it, remove files no checkpoint names.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::backend::StorageBackend;
use crate::checkpoint::{replay, Checkpoint};
use crate::error::{StateError, StateResult};
use crate::live_index::LiveIndex;
use crate::manifest::{Manifest, MANIFEST_FILE, MANIFEST_TMP_FILE};
use crate::options::StoreOptions;
use crate::segment::{parse_segment_file_name, scan_tail, segment_file_name, SEGMENT_HEADER_BYTES};
use crate::store::{shard_dir, ActiveSegment, StateStore};

/// What opening a store found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The recovered checkpoint, if any.
    pub checkpoint_id: Option<u64>,
    /// Records replayed to rebuild it.
    pub records_replayed: u64,
    /// Bytes cut after the last complete checkpoint (an unfinished checkpoint: torn tails of
    /// segments and segments created after it).
    pub tail_bytes_cut: u64,
    /// Complete records in those bytes (written, but never part of a complete checkpoint).
    pub tail_records_complete: u64,
    /// Whether the tail ended inside a record (a torn write).
    pub tail_torn: bool,
    /// Files removed: segments of unfinished checkpoints, segments left over from a crash after
    /// a manifest switch, a temporary manifest.
    pub files_removed: Vec<PathBuf>,
    /// Time the recovery took.
    pub duration: Duration,
}

/// Opens the store of `shard` under `dir`; see [`StateStore::open`].
pub(crate) fn recover(
    dir: &Path,
    shard: u32,
    options: StoreOptions,
    mut backend: Box<dyn StorageBackend>,
) -> StateResult<(StateStore, Option<Checkpoint>)> {
    let started = Instant::now();
    let dir = shard_dir(dir, shard);
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir).map_err(|e| StateError::io("create directory", &dir, e))?;
        if let Some(parent) = dir.parent() {
            backend
                .sync_dir(parent)
                .map_err(|e| StateError::io("fsync directory", parent, e))?;
        }
    }
    let mut on_disk = BTreeSet::new();
    let mut tmp_manifest = false;
    for entry in std::fs::read_dir(&dir).map_err(|e| StateError::io("list", &dir, e))? {
        let entry = entry.map_err(|e| StateError::io("list", &dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(seq) = parse_segment_file_name(&name) {
            on_disk.insert(seq);
        } else if name == MANIFEST_TMP_FILE {
            tmp_manifest = true;
        } else if name != MANIFEST_FILE {
            tracing::warn!(path = %entry.path().display(), "unknown file in a state directory");
        }
    }
    let manifest_path = dir.join(MANIFEST_FILE);
    let mut manifest = match std::fs::read(&manifest_path) {
        Ok(bytes) => Manifest::decode(&bytes, &manifest_path)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Manifest::empty(shard),
        Err(e) => return Err(StateError::io("read", &manifest_path, e)),
    };
    if manifest.shard != shard {
        return Err(StateError::corrupt(
            &manifest_path,
            0,
            format!(
                "manifest belongs to shard {} instead of {shard}",
                manifest.shard
            ),
        ));
    }
    let mut report = RecoveryReport::default();
    let checkpoint = match manifest.latest() {
        Some(entry) => {
            let (c, records) = replay(&dir, shard, entry)?;
            report.checkpoint_id = Some(c.id());
            report.records_replayed = records;
            Some(c)
        }
        None => None,
    };
    let referenced = manifest.segments_referenced();
    let seq_referenced_max = referenced.keys().next_back().copied();
    let mut dir_changed = false;
    for (&seq, &end) in &referenced {
        let path = dir.join(segment_file_name(seq));
        let len = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StateError::corrupt(
                    &path,
                    0,
                    "segment named by the manifest is missing",
                ))
            }
            Err(e) => return Err(StateError::io("stat", &path, e)),
        };
        if len < end {
            return Err(StateError::corrupt(
                &path,
                len,
                format!("segment ends before the manifest's end offset {end}"),
            ));
        }
        if len > end {
            let bytes = std::fs::read(&path).map_err(|e| StateError::io("read", &path, e))?;
            let tail = scan_tail(&bytes, end as usize);
            tracing::warn!(path = %path.display(), offset = end, bytes = tail.bytes,
                records_complete = tail.records_complete, torn = tail.torn,
                "cutting the unfinished checkpoint after the last complete one");
            report.tail_bytes_cut += tail.bytes;
            report.tail_records_complete += tail.records_complete;
            report.tail_torn |= tail.torn;
            let cut = (|| {
                let file = backend.open_existing(&path)?;
                backend.truncate(file, end)?;
                let synced = backend.sync(file);
                backend.close(file)?;
                synced
            })();
            cut.map_err(|e| StateError::io("truncate", &path, e))?;
        }
    }
    for &seq in on_disk.iter().filter(|s| !referenced.contains_key(s)) {
        let path = dir.join(segment_file_name(seq));
        if seq_referenced_max.is_none_or(|max| seq > max) {
            // Written after the last complete checkpoint: part of an unfinished one.
            let bytes = std::fs::read(&path).map_err(|e| StateError::io("read", &path, e))?;
            let tail = scan_tail(&bytes, SEGMENT_HEADER_BYTES.min(bytes.len()));
            report.tail_bytes_cut += bytes.len() as u64;
            report.tail_records_complete += tail.records_complete;
            report.tail_torn |= tail.torn || bytes.len() < SEGMENT_HEADER_BYTES;
            tracing::warn!(path = %path.display(), bytes = bytes.len(),
                "removing a segment of an unfinished checkpoint");
        }
        backend
            .remove(&path)
            .map_err(|e| StateError::io("remove", &path, e))?;
        report.files_removed.push(path);
        dir_changed = true;
    }
    if tmp_manifest {
        let path = dir.join(MANIFEST_TMP_FILE);
        backend
            .remove(&path)
            .map_err(|e| StateError::io("remove", &path, e))?;
        report.files_removed.push(path);
        dir_changed = true;
    }
    if dir_changed {
        backend
            .sync_dir(&dir)
            .map_err(|e| StateError::io("fsync directory", &dir, e))?;
    }
    if let Some(max) = on_disk.last() {
        manifest.segment_seq_next = manifest.segment_seq_next.max(max + 1);
    }
    let active = match manifest.latest().and_then(|c| c.segments.last()) {
        Some(seg) => {
            let path = dir.join(segment_file_name(seg.seq));
            let file = backend
                .open_existing(&path)
                .map_err(|e| StateError::io("open", &path, e))?;
            Some(ActiveSegment {
                seq: seg.seq,
                path,
                file,
                end: seg.end,
            })
        }
        None => None,
    };
    let index = checkpoint
        .as_ref()
        .map(LiveIndex::from_checkpoint)
        .unwrap_or_default();
    report.duration = started.elapsed();
    if report.tail_bytes_cut > 0 || !report.files_removed.is_empty() {
        tracing::warn!(
            shard,
            tail_bytes_cut = report.tail_bytes_cut,
            files_removed = report.files_removed.len(),
            "state recovery repaired the shard directory"
        );
    }
    let store = StateStore {
        dir,
        shard,
        options,
        backend,
        manifest,
        active,
        index,
        index_stale: false,
        poisoned: None,
        recovery: report,
    };
    Ok((store, checkpoint))
}
