//! One shard's copy of a dimension table: key -> row (the latest version, for a lookup
//! join) or key -> versions with the time each became valid (for a temporal join), over a
//! [`RowStore`], with the table's row and byte limits.

use hashbrown::HashMap;

use super::key_bytes::KeyBytes;
use super::row_store::{RowRef, RowStore, NULL_ROW};
use crate::error::{EngineError, Result};

/// Bytes counted per key besides heap-held key bytes: the map entry (an inline key and the
/// row or versions), hash control byte and slack.
const KEY_ENTRY_BYTES: usize = 64;
/// Bytes counted per kept version of a versioned table.
const VERSION_BYTES: usize = 16;

/// The limits of one dimension table (per shard, since each shard holds a whole copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DimensionLimits {
    /// `dimension.rows-max`: rows (versions, for a temporal join) held.
    pub rows_max: usize,
    /// `dimension.bytes-max`: bytes of rows, keys and index held.
    pub bytes_max: usize,
}

/// One version of a key: valid from `from_ms` until the next version; `row` is [`NULL_ROW`]
/// for a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    from_ms: i64,
    row: RowRef,
}

enum Index {
    /// Lookup join: the latest row of each key.
    Latest(HashMap<KeyBytes, RowRef>),
    /// Temporal join: each key's versions, sorted by `from_ms`; versions older than the
    /// newest one at or before the watermark are dropped.
    Versioned {
        keys: HashMap<KeyBytes, Vec<Version>>,
        versions: usize,
        watermark_ms: i64,
        /// `versions` at the last sweep (a sweep prunes every key).
        swept_at: usize,
    },
}

/// A shard's copy of one dimension table.
pub struct DimensionTable {
    name: String,
    limits: DimensionLimits,
    pub(super) store: RowStore,
    index: Index,
    key_bytes: usize,
}

impl DimensionTable {
    /// An empty table named `name` (for messages) holding rows in `store`.
    pub fn new(name: &str, store: RowStore, limits: DimensionLimits, versioned: bool) -> Self {
        let index = if versioned {
            Index::Versioned {
                keys: HashMap::new(),
                versions: 0,
                watermark_ms: i64::MIN,
                swept_at: 0,
            }
        } else {
            Index::Latest(HashMap::new())
        };
        DimensionTable {
            name: name.to_string(),
            limits,
            store,
            index,
            key_bytes: 0,
        }
    }

    /// Keys held.
    pub fn keys(&self) -> usize {
        match &self.index {
            Index::Latest(m) => m.len(),
            Index::Versioned { keys, .. } => keys.len(),
        }
    }

    /// Rows held (versions, for a temporal join).
    pub fn rows(&self) -> usize {
        self.store.live_rows()
    }

    /// Bytes counted against `dimension.bytes-max`.
    pub fn bytes(&self) -> usize {
        let versions = match &self.index {
            Index::Latest(_) => 0,
            Index::Versioned { versions, .. } => *versions * VERSION_BYTES,
        };
        self.store.bytes() + self.key_bytes + self.keys() * KEY_ENTRY_BYTES + versions
    }

    /// Sets `key` to `row` (already in the store, not yet retained), valid from `from_ms`
    /// (ignored by a latest-version table).
    pub fn upsert(&mut self, key: &[u8], row: RowRef, from_ms: i64) {
        self.store.retain(row);
        self.set(key, row, from_ms);
    }

    /// Deletes `key` as of `from_ms` (ignored by a latest-version table).
    pub fn delete(&mut self, key: &[u8], from_ms: i64) {
        self.set(key, NULL_ROW, from_ms);
    }

    fn set(&mut self, key: &[u8], row: RowRef, from_ms: i64) {
        match &mut self.index {
            Index::Latest(map) => {
                let old = if row == NULL_ROW {
                    let old = map.remove(key);
                    if old.is_some() {
                        self.key_bytes -= key.len();
                    }
                    old
                } else {
                    match map.get_mut(key) {
                        Some(slot) => Some(std::mem::replace(slot, row)),
                        None => {
                            map.insert(key.into(), row);
                            self.key_bytes += key.len();
                            None
                        }
                    }
                };
                if let Some(old) = old {
                    self.store.release(old);
                }
            }
            Index::Versioned {
                keys,
                versions,
                watermark_ms,
                ..
            } => {
                if !keys.contains_key(key) {
                    // Also for a delete: a later-arriving older version must end there.
                    keys.insert(key.into(), Vec::new());
                    self.key_bytes += key.len();
                }
                let Some(list) = keys.get_mut(key) else {
                    unreachable!("key inserted above");
                };
                let at = list.partition_point(|v| v.from_ms <= from_ms);
                if at > 0 && list[at - 1].from_ms == from_ms {
                    let old = std::mem::replace(&mut list[at - 1].row, row);
                    self.store.release(old);
                } else {
                    list.insert(at, Version { from_ms, row });
                    *versions += 1;
                }
                let dropped = prune(list, *watermark_ms, &mut self.store);
                *versions -= dropped;
                if list.is_empty() {
                    keys.remove(key);
                    self.key_bytes -= key.len();
                }
            }
        }
    }

    /// The row of `key` valid at `at_ms` (the latest row for a lookup table).
    #[inline]
    pub fn lookup(&self, key: &[u8], at_ms: i64) -> Option<RowRef> {
        match &self.index {
            Index::Latest(map) => map.get(key).copied(),
            Index::Versioned { keys, .. } => {
                let list = keys.get(key)?;
                let at = list.partition_point(|v| v.from_ms <= at_ms);
                let row = list.get(at.checked_sub(1)?)?.row;
                (row != NULL_ROW).then_some(row)
            }
        }
    }

    /// A temporal table drops the versions the watermark no longer needs: per key, those
    /// older than its newest version at or before `watermark_ms` (a key whose newest such
    /// version is a delete goes away). Sweeps every key when enough versions piled up.
    pub fn advance_watermark(&mut self, watermark_ms: i64) {
        let Index::Versioned {
            keys,
            versions,
            watermark_ms: wm,
            swept_at,
        } = &mut self.index
        else {
            return;
        };
        if watermark_ms <= *wm {
            return;
        }
        *wm = watermark_ms;
        if *versions < keys.len() + keys.len() / 4 + 1024 || *versions < *swept_at + 1024 {
            return;
        }
        let mut removed_key_bytes = 0;
        keys.retain(|key, list| {
            *versions -= prune(list, watermark_ms, &mut self.store);
            if list.is_empty() {
                removed_key_bytes += key.as_slice().len();
            }
            !list.is_empty()
        });
        self.key_bytes -= removed_key_bytes;
        *swept_at = *versions;
    }

    /// Compacts the row store when it pays, then checks the limits: an error names the
    /// table, the limit and its option.
    pub fn enforce_limits(&mut self) -> Result<()> {
        if self.store.compaction_due() {
            self.compact()?;
        }
        if self.rows() > self.limits.rows_max {
            return Err(EngineError::Limit(format!(
                "dimension table '{}' holds {} rows on one shard, more than 'dimension.rows-max' = {} (each shard holds the whole table; raise the option or shrink the table)",
                self.name,
                self.rows(),
                self.limits.rows_max
            )));
        }
        if self.bytes() > self.limits.bytes_max && self.store.live_rows() > 0 {
            self.compact()?;
        }
        if self.bytes() > self.limits.bytes_max {
            return Err(EngineError::Limit(format!(
                "dimension table '{}' holds {} bytes on one shard ({} rows), more than 'dimension.bytes-max' = {} (each shard holds the whole table; raise the option or shrink the table)",
                self.name,
                self.bytes(),
                self.rows(),
                self.limits.bytes_max
            )));
        }
        Ok(())
    }

    fn compact(&mut self) -> Result<()> {
        let mut refs: Vec<&mut RowRef> = match &mut self.index {
            Index::Latest(map) => map.values_mut().collect(),
            Index::Versioned { keys, .. } => keys
                .values_mut()
                .flat_map(|list| list.iter_mut().map(|v| &mut v.row))
                .collect(),
        };
        self.store.compact(&mut refs)
    }
}

/// Drops the versions of `list` older than its newest version at or before `watermark_ms`,
/// and that version too when it is a delete; returns how many were dropped.
fn prune(list: &mut Vec<Version>, watermark_ms: i64, store: &mut RowStore) -> usize {
    let at_or_before = list.partition_point(|v| v.from_ms <= watermark_ms);
    if at_or_before == 0 {
        return 0;
    }
    let mut cut = at_or_before - 1;
    if list[cut].row == NULL_ROW {
        cut += 1;
    }
    for v in list.drain(..cut) {
        store.release(v.row);
    }
    cut
}

#[cfg(test)]
#[path = "dimension_table_tests.rs"]
mod tests;
