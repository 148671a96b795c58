//! The changelog of a dimension table, as the engine's dimension readers poll it.
//!
//! A dimension table (a table with a PRIMARY KEY that a stream joins) is read whole by every
//! shard: each shard opens its own [`ChangelogSource`] over *all* partitions of the table's
//! topic (or the whole file), so each core holds its own copy and the hot path never crosses
//! cores. A changelog record either carries a row (an upsert of its key; the engine also
//! treats a row with `"__deleted": true` as a delete) or is a Kafka tombstone (a null value:
//! the record's payload is then the message key, the JSON object of the key columns).
//!
//! Boundary: the connector hands over bytes; decoding, keys and deletes are the engine's.

use crate::error::Result;
use crate::RawBatch;

/// Marks a record without a broker timestamp in [`ChangelogBatch::time_ms`].
pub const TIME_NONE: i64 = i64::MIN;

/// The records of one poll, in changelog order (per partition).
#[derive(Debug, Default)]
pub struct ChangelogBatch {
    /// Payloads: the value, or the message key for a tombstone. `records.partition` indexes
    /// the source's partitions; `records.offset` is the offset in that partition.
    pub records: RawBatch,
    /// `tombstone[i]`: record `i` is a Kafka tombstone (null value); its payload is the key.
    pub tombstone: Vec<bool>,
    /// The Kafka message timestamp of record `i` (ms since the epoch), or [`TIME_NONE`].
    pub time_ms: Vec<i64>,
    /// Tombstones without a key, skipped during this poll (they delete nothing knowable).
    pub keyless_tombstones: u64,
}

impl ChangelogBatch {
    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.records.clear();
        self.tombstone.clear();
        self.time_ms.clear();
        self.keyless_tombstones = 0;
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Appends a record carrying a row.
    pub fn push_value(&mut self, partition: u32, offset: i64, time_ms: i64, value: &[u8]) {
        self.records.push(partition, offset, value);
        self.tombstone.push(false);
        self.time_ms.push(time_ms);
    }

    /// Appends a tombstone of the key `key`.
    pub fn push_tombstone(&mut self, partition: u32, offset: i64, time_ms: i64, key: &[u8]) {
        self.records.push(partition, offset, key);
        self.tombstone.push(true);
        self.time_ms.push(time_ms);
    }
}

/// The changelog reader of one shard's copy of a dimension table. Never blocks.
pub trait ChangelogSource: Send {
    /// Appends up to `records_max` records (and about `bytes_max` bytes) to `out` without
    /// blocking; `out` is not cleared.
    fn poll(
        &mut self,
        out: &mut ChangelogBatch,
        records_max: usize,
        bytes_max: usize,
    ) -> Result<()>;

    /// Whether every record that existed when the source opened has been delivered (the
    /// start-up catch-up is done). Once true it stays true.
    fn caught_up(&self) -> bool;

    /// Where the reader is, for a catch-up timeout message (e.g. partition positions
    /// against their ends).
    fn progress(&self) -> String;
}

/// Builds the changelog readers of one dimension table, one per shard.
pub trait ChangelogSourceFactory: Send + Sync {
    /// Checks the changelog is reachable (broker and topic, or the file), before any shard
    /// starts.
    fn check(&self) -> Result<()>;

    /// Opens shard `shard`'s reader over the whole changelog.
    fn open(&self, shard: usize) -> Result<Box<dyn ChangelogSource>>;

    /// One line for EXPLAIN.
    fn describe(&self) -> String;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_tombstones_keep_their_order_and_times() {
        let mut b = ChangelogBatch::default();
        b.push_value(0, 7, 100, br#"{"k":"a","v":1}"#);
        b.push_tombstone(1, 3, TIME_NONE, br#"{"k":"a"}"#);
        assert_eq!(b.len(), 2);
        assert_eq!(b.tombstone, vec![false, true]);
        assert_eq!(b.time_ms, vec![100, TIME_NONE]);
        let (start, end) = b.records.span(1);
        assert_eq!(&b.records.data[start..end], br#"{"k":"a"}"#);
        assert_eq!(b.records.offset, vec![7, 3]);
        b.keyless_tombstones = 2;
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.keyless_tombstones, 0);
        assert!(b.tombstone.is_empty() && b.time_ms.is_empty());
    }
}
