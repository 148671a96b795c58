//! Which keys and meta blobs are live, and how many bytes their latest records take: the
//! input of the `state_bytes_max` limit and of the compaction decision.

use std::collections::HashMap;

use crate::checkpoint::Checkpoint;
use crate::segment::{meta_record_bytes, put_record_bytes};

/// Live keys and meta names with the on-disk size of their latest record.
#[derive(Default)]
pub(crate) struct LiveIndex {
    keys: HashMap<Box<[u8]>, u64, ahash::RandomState>,
    meta: HashMap<String, u64, ahash::RandomState>,
    /// Sum of all sizes above.
    bytes: u64,
}

impl LiveIndex {
    /// The index of a recovered checkpoint.
    pub(crate) fn from_checkpoint(c: &Checkpoint) -> Self {
        let mut index = LiveIndex::default();
        index.keys.reserve(c.len());
        for (k, v) in c.iter() {
            index.put(k, put_record_bytes(k.len(), v.len()));
        }
        for (name, v) in c.meta_iter() {
            index.put_meta(name, meta_record_bytes(name.len(), v.len()));
        }
        index
    }

    /// Live bytes after `key` gets a record of `record_bytes`.
    pub(crate) fn bytes_after_put(&self, key: &[u8], record_bytes: u64) -> u64 {
        self.bytes - self.keys.get(key).copied().unwrap_or(0) + record_bytes
    }

    /// Live bytes after meta `name` gets a record of `record_bytes`.
    pub(crate) fn bytes_after_meta(&self, name: &str, record_bytes: u64) -> u64 {
        self.bytes - self.meta.get(name).copied().unwrap_or(0) + record_bytes
    }

    /// Records that `key` is live with a record of `record_bytes`.
    pub(crate) fn put(&mut self, key: &[u8], record_bytes: u64) {
        match self.keys.get_mut(key) {
            Some(old) => {
                self.bytes = self.bytes - *old + record_bytes;
                *old = record_bytes;
            }
            None => {
                self.keys.insert(key.into(), record_bytes);
                self.bytes += record_bytes;
            }
        }
    }

    /// Records that `key` is deleted; returns whether it was live.
    pub(crate) fn delete(&mut self, key: &[u8]) -> bool {
        match self.keys.remove(key) {
            Some(old) => {
                self.bytes -= old;
                true
            }
            None => false,
        }
    }

    /// Records that meta `name` has a record of `record_bytes`.
    pub(crate) fn put_meta(&mut self, name: &str, record_bytes: u64) {
        let old = self
            .meta
            .insert(name.to_string(), record_bytes)
            .unwrap_or(0);
        self.bytes = self.bytes - old + record_bytes;
    }

    /// Bytes of all live records.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_follow_overwrites_and_deletes() {
        let mut index = LiveIndex::default();
        index.put(b"a", 10);
        index.put(b"b", 20);
        assert_eq!(index.bytes_after_put(b"a", 15), 35);
        index.put(b"a", 15);
        index.put_meta("wm", 5);
        index.put_meta("wm", 7);
        assert_eq!(index.bytes(), 42);
        assert!(index.delete(b"b"));
        assert!(!index.delete(b"b"));
        assert_eq!(index.bytes(), 22);
        assert_eq!(index.bytes_after_meta("wm", 1), 16);
    }
}
