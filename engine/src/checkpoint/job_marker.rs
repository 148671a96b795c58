//! The job's commit record: which checkpoint epoch is complete on every shard, and where its
//! shards' stores are. Written through a state store of its own (`<dir>/job`), so it is
//! switched atomically and checksummed like all state. Recovery starts from it; a shard
//! checkpoint newer than it was never complete and is ignored.
//!
//! Layout of the checkpoint directory:
//! `job/` (this record), `gen-NNNNNN/shard-NNNN/` (the shard stores of one run: a run that
//! resumes writes a new generation, possibly with another number of shards).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use spillway_state::{StateStore, StoreOptions};

use crate::error::{EngineError, Result};

const META_NAME: &str = "marker";

/// The last complete checkpoint of the job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Marker {
    pub generation: u64,
    pub epoch: u64,
    /// Shards of the run that wrote the checkpoint.
    pub shards: usize,
    /// Fingerprint of the query.
    pub query: String,
}

/// The directory of generation `generation` under the checkpoint directory.
pub fn generation_dir(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("gen-{generation:06}"))
}

/// The generations present under `dir`.
pub fn generations(dir: &Path) -> Result<Vec<u64>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(EngineError::io(format!("cannot list {}", dir.display()), e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| EngineError::io(format!("cannot list {}", dir.display()), e))?;
        if let Some(g) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_prefix("gen-"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push(g);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The job's commit record.
pub struct JobMarker {
    store: StateStore,
    last: Option<Marker>,
}

impl JobMarker {
    /// Opens (creating) the record under `dir`; a damaged record is an error naming it.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<JobMarker> {
        std::fs::create_dir_all(dir).map_err(|e| {
            EngineError::io(
                format!("cannot create checkpoint directory {}", dir.display()),
                e,
            )
        })?;
        let (store, latest) = StateStore::open(dir.join("job"), 0, options)?;
        let last = match latest {
            None => None,
            Some(c) => {
                let bytes = c.meta(META_NAME).ok_or_else(|| {
                    EngineError::Data(format!(
                        "the job record in {} has no marker",
                        dir.join("job").display()
                    ))
                })?;
                Some(serde_json::from_slice(bytes).map_err(|e| {
                    EngineError::Data(format!(
                        "the job record in {} is unreadable: {e}",
                        dir.join("job").display()
                    ))
                })?)
            }
        };
        Ok(JobMarker { store, last })
    }

    /// The last complete checkpoint, if any.
    pub fn last(&self) -> Option<&Marker> {
        self.last.as_ref()
    }

    /// Makes `marker` the last complete checkpoint (durable when this returns).
    pub fn commit(&mut self, marker: Marker) -> Result<()> {
        let bytes = serde_json::to_vec(&marker)
            .map_err(|e| EngineError::Internal(format!("job marker: {e}")))?;
        let mut w = self.store.begin_checkpoint(marker.epoch)?;
        w.put_meta(META_NAME, &bytes)?;
        w.commit()?;
        self.last = Some(marker);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_survives_reopen_and_generations_are_listed() {
        let dir = tempfile::tempdir().expect("dir");
        let mut m = JobMarker::open(dir.path(), StoreOptions::default()).expect("open");
        assert!(m.last().is_none());
        let first = Marker {
            generation: 1,
            epoch: 3,
            shards: 2,
            query: "q".into(),
        };
        m.commit(first.clone()).expect("commit");
        m.commit(Marker {
            epoch: 4,
            ..first.clone()
        })
        .expect("commit");
        drop(m);
        let m = JobMarker::open(dir.path(), StoreOptions::default()).expect("reopen");
        assert_eq!(m.last().map(|m| m.epoch), Some(4));
        std::fs::create_dir_all(generation_dir(dir.path(), 2)).expect("mk");
        std::fs::create_dir_all(generation_dir(dir.path(), 1)).expect("mk");
        assert_eq!(generations(dir.path()).expect("list"), vec![1, 2]);
    }
}
