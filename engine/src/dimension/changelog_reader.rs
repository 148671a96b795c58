//! Applies a dimension table's changelog to a shard's copy: polls the connector's
//! [`ChangelogSource`], decodes rows with the table's declared schema and applies upserts
//! and deletes in changelog order.
//!
//! Rules (documented in docs/ARCHITECTURE.md, "Dimension tables"):
//! - a record with a value is an upsert of the key its PRIMARY KEY columns hold;
//! - a Kafka tombstone (null value) deletes the key its message key (a JSON object of the
//!   key columns) holds; a record whose top-level `"__deleted"` field is `true` deletes the
//!   key its key columns hold (the file connector's delete);
//! - temporal tables: a row's version is valid from its WATERMARK column's time; a delete
//!   takes effect at its own time column if it has one, else at the Kafka message timestamp;
//! - bad records (malformed JSON, a missing column, a NULL key) are skipped and counted.

use arrow::array::{ArrayRef, AsArray};
use arrow::datatypes::{Schema, TimestampMillisecondType};
use spillway_connectors::dimension_changelog::{ChangelogBatch, ChangelogSource, TIME_NONE};
use spillway_connectors::timestamp::parse_timestamp_ms;
use spillway_connectors::RawBatch;

use super::dimension_table::DimensionTable;
use super::key_codec::KeyCodec;
use super::row_store::RowRef;
use crate::catalog::TableDef;
use crate::decode::JsonDecoder;
use crate::error::Result;

/// The field that marks a row as a delete.
pub const DELETED_FIELD: &str = "__deleted";

/// What a reader applied and skipped since it opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangelogStats {
    pub upserts: u64,
    pub deletes: u64,
    /// Records skipped: undecodable, a NULL key, a delete without a time (temporal), a
    /// tombstone without a key, or larger than `source.record-bytes-max`.
    pub skipped: u64,
}

/// Reads one shard's copy of a dimension table from its changelog.
pub struct ChangelogReader {
    table_name: String,
    source: Box<dyn ChangelogSource>,
    batch: ChangelogBatch,
    row_decoder: JsonDecoder,
    key_decoder: JsonDecoder,
    key_codec: KeyCodec,
    primary_key: Vec<usize>,
    /// The WATERMARK column of a temporal table: versions are valid from its time.
    time_column: Option<usize>,
    time_field: Option<String>,
    upserts: RawBatch,
    deletes: RawBatch,
    delete_times: Vec<i64>,
    kept_upserts: Vec<u32>,
    kept_deletes: Vec<u32>,
    stats: ChangelogStats,
}

impl ChangelogReader {
    /// A reader of `table` (a dimension table: a PRIMARY KEY) from `source`; `versioned`
    /// keeps the time of each version (its WATERMARK column, which must exist then).
    pub fn new(
        table: &TableDef,
        versioned: bool,
        source: Box<dyn ChangelogSource>,
    ) -> Result<Self> {
        let schema = table.schema();
        let time_column = if versioned {
            table.watermark.map(|w| w.column)
        } else {
            None
        };
        let key_fields: Vec<_> = table
            .primary_key
            .iter()
            .map(|&c| schema.field(c).clone())
            .collect();
        let key_types: Vec<_> = key_fields.iter().map(|f| f.data_type().clone()).collect();
        Ok(ChangelogReader {
            table_name: table.name.clone(),
            source,
            batch: ChangelogBatch::default(),
            row_decoder: JsonDecoder::new(schema.clone(), time_column),
            key_decoder: JsonDecoder::new(std::sync::Arc::new(Schema::new(key_fields)), None),
            key_codec: KeyCodec::new(&key_types)?,
            primary_key: table.primary_key.clone(),
            time_column,
            time_field: time_column.map(|c| table.columns[c].name.clone()),
            upserts: RawBatch::default(),
            deletes: RawBatch::default(),
            delete_times: Vec::new(),
            kept_upserts: Vec::new(),
            kept_deletes: Vec::new(),
            stats: ChangelogStats::default(),
        })
    }

    /// Counts so far.
    pub fn stats(&self) -> &ChangelogStats {
        &self.stats
    }

    /// The first problems found in skipped records (row decoder, then key decoder).
    pub fn samples(&self) -> Vec<String> {
        let mut s = self.row_decoder.samples().to_vec();
        s.extend(self.key_decoder.samples().iter().cloned());
        s
    }

    /// Whether the start-up catch-up is done (see [`ChangelogSource::caught_up`]).
    pub fn caught_up(&self) -> bool {
        self.source.caught_up()
    }

    /// Where the reader is, for messages.
    pub fn progress(&self) -> String {
        self.source.progress()
    }

    /// The table's name.
    pub fn table_name(&self) -> &str {
        &self.table_name
    }

    /// Polls up to `records_max` changelog records (about `bytes_max` bytes) and applies
    /// them to `table` in order; returns how many records were read. Errors: the connector's,
    /// and the table's limits.
    pub fn poll(
        &mut self,
        table: &mut DimensionTable,
        records_max: usize,
        bytes_max: usize,
    ) -> Result<usize> {
        self.batch.clear();
        self.source.poll(&mut self.batch, records_max, bytes_max)?;
        let b = &self.batch;
        self.stats.skipped += b.keyless_tombstones + b.records.oversized;
        if b.is_empty() {
            return Ok(0);
        }
        self.split()?;
        self.apply(table)?;
        table.enforce_limits()?;
        Ok(self.batch.len())
    }

    /// Splits the polled records into rows to upsert and keys to delete; each keeps its
    /// position in the changelog as its `offset`.
    fn split(&mut self) -> Result<()> {
        self.upserts.clear();
        self.deletes.clear();
        self.delete_times.clear();
        let b = &self.batch;
        for i in 0..b.len() {
            let (start, end) = b.records.span(i);
            let payload = &b.records.data[start..end];
            let partition = b.records.partition[i];
            let seq = i as i64;
            if b.tombstone[i] {
                self.deletes.push(partition, seq, payload);
                self.delete_times.push(b.time_ms[i]);
            } else if let Some(marker_time) = delete_marker(payload, self.time_field.as_deref()) {
                self.deletes.push(partition, seq, payload);
                self.delete_times.push(marker_time.unwrap_or(b.time_ms[i]));
            } else {
                self.upserts.push(partition, seq, payload);
            }
        }
        Ok(())
    }

    fn apply(&mut self, table: &mut DimensionTable) -> Result<()> {
        let rows = self
            .row_decoder
            .decode(&mut self.upserts, &mut self.kept_upserts)?;
        let deleted = self
            .key_decoder
            .decode(&mut self.deletes, &mut self.kept_deletes)?;
        self.stats.skipped += (self.upserts.len() - self.kept_upserts.len() + self.deletes.len()
            - self.kept_deletes.len()) as u64;
        let row_keys: Vec<ArrayRef> = self
            .primary_key
            .iter()
            .map(|&c| rows.column(c).clone())
            .collect();
        let row_keys = self.key_codec.encode(&row_keys)?;
        let delete_keys = self.key_codec.encode(deleted.columns())?;
        let times = self.time_column.map(|c| {
            rows.column(c)
                .as_primitive::<TimestampMillisecondType>()
                .clone()
        });
        let segment = if rows.num_rows() > 0 {
            let segment = table.store.append(rows)?;
            table.store.pin(segment);
            Some(segment)
        } else {
            None
        };
        // Merge both by changelog position: changes apply in order.
        let (mut u, mut d) = (0usize, 0usize);
        let seq_u = |j: usize| self.upserts.offset[self.kept_upserts[j] as usize];
        let seq_d = |j: usize| self.deletes.offset[self.kept_deletes[j] as usize];
        while u < self.kept_upserts.len() || d < self.kept_deletes.len() {
            let take_upsert = d >= self.kept_deletes.len()
                || (u < self.kept_upserts.len() && seq_u(u) < seq_d(d));
            if take_upsert {
                match (row_keys.key(u), segment) {
                    (Some(key), Some(segment)) => {
                        let from_ms = times.as_ref().map_or(0, |t| t.value(u));
                        table.upsert(
                            key,
                            RowRef {
                                segment,
                                row: u as u32,
                            },
                            from_ms,
                        );
                        self.stats.upserts += 1;
                    }
                    _ => self.stats.skipped += 1,
                }
                u += 1;
            } else {
                let record = self.kept_deletes[d] as usize;
                let from_ms = self.delete_times[record];
                match delete_keys.key(d) {
                    Some(_) if self.time_column.is_some() && from_ms == TIME_NONE => {
                        self.stats.skipped += 1
                    }
                    Some(key) => {
                        table.delete(key, from_ms);
                        self.stats.deletes += 1;
                    }
                    None => self.stats.skipped += 1,
                }
                d += 1;
            }
        }
        if let Some(segment) = segment {
            table.store.unpin(segment);
        }
        Ok(())
    }
}

/// Whether `payload` is a row marked `"__deleted": true`; then Some(its time field's value,
/// if `time_field` is given and the row has one).
fn delete_marker(payload: &[u8], time_field: Option<&str>) -> Option<Option<i64>> {
    let needle = DELETED_FIELD.as_bytes();
    if !payload.windows(needle.len()).any(|w| w == needle) {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    if value.get(DELETED_FIELD) != Some(&serde_json::Value::Bool(true)) {
        return None;
    }
    let time = time_field.and_then(|f| value.get(f)).and_then(|t| match t {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => parse_timestamp_ms(s.as_bytes()),
        _ => None,
    });
    Some(time)
}

#[cfg(test)]
#[path = "changelog_reader_tests.rs"]
mod tests;
