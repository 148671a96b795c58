//! Test support: a model of the state a sequence of checkpoints should leave, and helpers to
//! drive a store with it.

use std::collections::BTreeMap;
use std::path::Path;

use crate::checkpoint::Checkpoint;
use crate::error::StateResult;
use crate::options::{BackendChoice, StoreOptions};
use crate::writer::CheckpointWriter;

/// One change written in a checkpoint.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Meta(String, Vec<u8>),
}

/// The expected state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Model {
    pub(crate) entries: BTreeMap<Vec<u8>, Vec<u8>>,
    pub(crate) meta: BTreeMap<String, Vec<u8>>,
}

impl Model {
    pub(crate) fn apply(&mut self, ops: &[Op]) {
        for op in ops {
            match op {
                Op::Put(k, v) => {
                    self.entries.insert(k.clone(), v.clone());
                }
                Op::Delete(k) => {
                    self.entries.remove(k);
                }
                Op::Meta(n, v) => {
                    self.meta.insert(n.clone(), v.clone());
                }
            }
        }
    }

    /// The model of a recovered checkpoint.
    pub(crate) fn of(c: &Checkpoint) -> Model {
        Model {
            entries: c.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect(),
            meta: c
                .meta_iter()
                .map(|(k, v)| (k.to_string(), v.to_vec()))
                .collect(),
        }
    }
}

/// Writes `ops` into `writer`.
pub(crate) fn write_ops(writer: &mut CheckpointWriter<'_>, ops: &[Op]) -> StateResult<()> {
    for op in ops {
        match op {
            Op::Put(k, v) => writer.put(k, v)?,
            Op::Delete(k) => writer.delete(k)?,
            Op::Meta(n, v) => writer.put_meta(n, v)?,
        }
    }
    Ok(())
}

/// Deterministic pseudo-random changes for round `round`: puts over `keys_max` keys (some
/// overwritten, some deleted) and a watermark meta blob.
pub(crate) fn round_ops(round: u64, ops_per_round: u64, keys_max: u64) -> Vec<Op> {
    let mut x = round.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut ops = Vec::new();
    for _ in 0..ops_per_round {
        let r = next();
        let key = format!("key-{:05}", r % keys_max).into_bytes();
        if r % 5 == 0 {
            ops.push(Op::Delete(key));
        } else {
            let len = (next() % 64) as usize;
            let value: Vec<u8> = (0..len)
                .map(|i| (round as u8).wrapping_add(i as u8))
                .collect();
            ops.push(Op::Put(key, value));
        }
    }
    ops.push(Op::Meta("watermark".into(), round.to_le_bytes().to_vec()));
    ops
}

/// Options for tests: small chunks, the blocking backend.
pub(crate) fn test_options() -> StoreOptions {
    StoreOptions {
        write_chunk_bytes: 4096,
        backend: BackendChoice::Blocking,
        compaction_bytes_min: u64::MAX,
        ..StoreOptions::default()
    }
}

/// Names of the segment files in a shard directory, sorted.
pub(crate) fn segment_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("seg-"))
        .collect();
    names.sort();
    names
}
