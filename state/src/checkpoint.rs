//! A recovered checkpoint (the state it holds, in memory) and its replay from segment files.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{StateError, StateResult};
use crate::manifest::CheckpointEntry;
use crate::segment::{scan_segment, segment_file_name, Record};

/// The state of one complete checkpoint: keys with their values and the named meta blobs
/// (source offsets, watermark, timers). Built by replaying the checkpoint's segments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    id: u64,
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
    meta: BTreeMap<String, Vec<u8>>,
}

impl Checkpoint {
    /// The checkpoint id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The value of `key`, if it is live.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.entries.get(key).map(Vec::as_slice)
    }

    /// The meta blob `name`, if one was written.
    pub fn meta(&self, name: &str) -> Option<&[u8]> {
        self.meta.get(name).map(Vec::as_slice)
    }

    /// Live keys and values in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// Meta blobs in name order.
    pub fn meta_iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.meta.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// Number of live keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is live.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Applies one record (commit records change nothing).
    fn apply(&mut self, record: Record<'_>) {
        match record {
            Record::Put { key, value } => {
                if let Some(v) = self.entries.get_mut(key) {
                    v.clear();
                    v.extend_from_slice(value);
                } else {
                    self.entries.insert(key.to_vec(), value.to_vec());
                }
            }
            Record::Delete { key } => {
                self.entries.remove(key);
            }
            Record::Meta { name, value } => {
                self.meta.insert(name.to_string(), value.to_vec());
            }
            Record::Commit { .. } => {}
        }
    }
}

/// Replays checkpoint `entry` of shard `shard` from the segment files in `dir`, verifying every
/// header, checksum and commit record. Returns the checkpoint and the records read.
pub(crate) fn replay(
    dir: &Path,
    shard: u32,
    entry: &CheckpointEntry,
) -> StateResult<(Checkpoint, u64)> {
    let mut checkpoint = Checkpoint {
        id: entry.id,
        ..Checkpoint::default()
    };
    let mut records = 0;
    let mut commit_last: Option<u64> = None;
    for (i, seg) in entry.segments.iter().enumerate() {
        let path = dir.join(segment_file_name(seg.seq));
        let bytes = std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StateError::corrupt(&path, 0, "segment named by the manifest is missing")
            } else {
                StateError::io("read", &path, e)
            }
        })?;
        let scan = scan_segment(&path, &bytes, seg.end, (shard, seg.seq), |r| {
            checkpoint.apply(r)
        })?;
        records += scan.records;
        let last = i + 1 == entry.segments.len();
        let in_order = commit_last.is_none_or(|c| scan.checkpoint_id_last > c);
        let fits = if last {
            scan.checkpoint_id_last == entry.id
        } else {
            scan.checkpoint_id_last < entry.id
        };
        if !in_order || !fits {
            return Err(StateError::corrupt(
                &path,
                seg.end,
                format!(
                    "segment ends with checkpoint {} where the manifest's checkpoint {} expects otherwise",
                    scan.checkpoint_id_last, entry.id
                ),
            ));
        }
        commit_last = Some(scan.checkpoint_id_last);
    }
    Ok((checkpoint, records))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_follows_puts_deletes_and_meta_in_order() {
        let mut c = Checkpoint::default();
        c.apply(Record::Put {
            key: b"a",
            value: b"1",
        });
        c.apply(Record::Put {
            key: b"b",
            value: b"2",
        });
        c.apply(Record::Put {
            key: b"a",
            value: b"3",
        });
        c.apply(Record::Delete { key: b"b" });
        c.apply(Record::Delete { key: b"zz" });
        c.apply(Record::Meta {
            name: "wm",
            value: b"9",
        });
        assert_eq!(c.get(b"a"), Some(&b"3"[..]));
        assert_eq!(c.get(b"b"), None);
        assert_eq!(c.len(), 1);
        assert_eq!(c.meta("wm"), Some(&b"9"[..]));
        assert_eq!(c.iter().collect::<Vec<_>>(), vec![(&b"a"[..], &b"3"[..])]);
    }
}
