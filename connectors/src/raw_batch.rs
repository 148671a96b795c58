//! The unit a source hands to a shard: raw record bytes with their partition and offset.

/// Raw records of one poll, stored back to back in one buffer that the shard reuses.
///
/// The decoder parses JSON in place (simd-json mutates its input), so `data` is owned and
/// mutable; each record is copied once, from librdkafka's buffer or the file, into it.
#[derive(Debug, Default)]
pub struct RawBatch {
    /// The payloads, back to back.
    pub data: Vec<u8>,
    /// `ends[i]` is the end (exclusive) of record `i` in `data`; record `i` starts at
    /// `ends[i - 1]` (or 0).
    pub ends: Vec<usize>,
    /// Index (into the source's `partitions()`) of the partition record `i` came from.
    pub partition: Vec<u32>,
    /// Offset of record `i` in its partition (line number for files).
    pub offset: Vec<i64>,
    /// Partitions (indexes) that reached the end of a bounded read during this poll.
    pub ended: Vec<u32>,
    /// Records skipped by the source during this poll because they exceeded
    /// `record_bytes_max` (counted, never copied).
    pub oversized: u64,
    /// Records with an empty (null) payload skipped during this poll (Kafka tombstones).
    pub empty: u64,
    /// Event-time marks without rows: `(partition, ts)` says partition `partition` has seen
    /// events up to `ts` (ms), as if an event with that time had been read. A repartition
    /// topic carries its writers' clocks this way (see `repartition_source`).
    pub marks: Vec<(u32, i64)>,
    /// Records skipped during this poll because they were already applied (a repartition
    /// topic's rows written again after a writer restarted).
    pub duplicates: u64,
}

impl RawBatch {
    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
        self.partition.clear();
        self.offset.clear();
        self.ended.clear();
        self.oversized = 0;
        self.empty = 0;
        self.marks.clear();
        self.duplicates = 0;
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Appends one record.
    pub fn push(&mut self, partition: u32, offset: i64, payload: &[u8]) {
        self.data.extend_from_slice(payload);
        self.ends.push(self.data.len());
        self.partition.push(partition);
        self.offset.push(offset);
    }

    /// The start and end of record `i` in `data`.
    pub fn span(&self, i: usize) -> (usize, usize) {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        (start, self.ends[i])
    }
}
