//! The JSON decoder: simd-json tapes of raw records into Arrow columns of the declared schema.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, TimestampMillisecondArray};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use simd_json::{Buffers, Node, Tape, INPUT_PADDING};
use spillway_connectors::RawBatch;

use super::column_builder::{json_type_name, Cell, ColumnBuilder, ColumnKind, Mismatch};
use super::{DecodeStats, SAMPLES_MAX};
use crate::error::EngineError;

/// Field positions whose names are remembered from the previous record (the fast path of
/// the field-name-to-column mapping); fields further right are looked up by hashing.
const FIELD_CACHE_MAX: usize = 64;

/// Longest piece of a record value quoted in a problem sample, in characters.
const SAMPLE_VALUE_CHARS_MAX: usize = 40;

/// Marks "no column" (an extra field) in the field cache and "absent" in the slots.
const NONE: u32 = u32::MAX;

/// Decodes JSON records into Arrow record batches of one table's declared schema.
///
/// Each record must be a JSON object; its top-level fields are matched to the columns by
/// exact (case-sensitive) name and extra fields are ignored. A record is validated fully
/// before any of its values is appended, so a skipped record never leaves a partial row.
pub struct JsonDecoder {
    schema: SchemaRef,
    columns: Vec<ColumnMeta>,
    time_column: Option<usize>,
    /// Set when the schema cannot be decoded (a bug upstream); `decode` then fails.
    setup_error: Option<String>,
    column_by_name: HashMap<String, u32>,
    /// `field_cache[k]`: the name of field `k` of the previous record and its column.
    field_cache: Vec<CachedField>,
    /// Per column: the tape index of its value in the current record, or `NONE`.
    slots: Vec<u32>,
    /// Per column: the converted value of the current record.
    cells: Vec<Cell>,
    builders: Vec<ColumnBuilder>,
    buffers: Buffers,
    /// The reused tape; empty between records (its lifetime is reset per record).
    tape: Tape<'static>,
    rejections: Rejections,
}

struct ColumnMeta {
    name: String,
    kind: ColumnKind,
    nullable: bool,
    /// A processing-time column (`crate::proctime`): not read from the record, filled with
    /// the wall clock when the batch is decoded.
    proctime: bool,
}

struct CachedField {
    name: Vec<u8>,
    column: u32,
}

/// Which counter a skipped record goes to.
#[derive(Debug, Clone, Copy)]
enum Problem {
    Malformed,
    MissingField,
    WrongType,
    NullTime,
}

#[derive(Default)]
struct Rejections {
    stats: DecodeStats,
    samples: Vec<String>,
}

impl Rejections {
    /// Counts a skipped record and keeps its description while fewer than `SAMPLES_MAX`
    /// are kept (`detail` is only called then, so the common path does not allocate).
    #[cold]
    fn reject(
        &mut self,
        problem: Problem,
        partition: u32,
        offset: i64,
        detail: impl FnOnce() -> String,
    ) {
        let counter = match problem {
            Problem::Malformed => &mut self.stats.malformed,
            Problem::MissingField => &mut self.stats.missing_field,
            Problem::WrongType => &mut self.stats.wrong_type,
            Problem::NullTime => &mut self.stats.null_time,
        };
        *counter += 1;
        if self.samples.len() < SAMPLES_MAX {
            self.samples.push(format!(
                "partition {partition} offset {offset}: {}",
                detail()
            ));
        }
    }
}

impl JsonDecoder {
    /// A decoder for records of `schema` (whose types are those of `catalog::ColumnType`);
    /// `time_column` is the index of the event-time column, whose null or absence skips a
    /// record.
    pub fn new(schema: SchemaRef, time_column: Option<usize>) -> Self {
        let mut setup_error = None;
        let mut columns = Vec::with_capacity(schema.fields().len());
        let mut column_by_name = HashMap::with_capacity(schema.fields().len());
        for (i, field) in schema.fields().iter().enumerate() {
            let kind = ColumnKind::of(field.data_type()).unwrap_or_else(|| {
                setup_error.get_or_insert_with(|| {
                    format!(
                        "the JSON decoder cannot fill column '{}' of type {}",
                        field.name(),
                        field.data_type()
                    )
                });
                ColumnKind::Utf8
            });
            let proctime = crate::proctime::is_proctime_field(field);
            columns.push(ColumnMeta {
                name: field.name().clone(),
                kind,
                nullable: field.is_nullable(),
                proctime,
            });
            // A record's field named like the processing-time column is ignored (as any extra
            // field): the column is computed, never read.
            if !proctime {
                column_by_name
                    .entry(field.name().clone())
                    .or_insert(i as u32);
            }
        }
        if let Some(time) = time_column.filter(|&t| t >= columns.len()) {
            setup_error.get_or_insert_with(|| {
                format!(
                    "event-time column {time} of a schema of {} columns",
                    columns.len()
                )
            });
        }
        let width = columns.len();
        JsonDecoder {
            schema,
            columns,
            time_column,
            setup_error,
            column_by_name,
            field_cache: Vec::new(),
            slots: vec![NONE; width],
            cells: vec![Cell::Null; width],
            builders: Vec::with_capacity(width),
            buffers: Buffers::default(),
            tape: Tape::null().reset(),
            rejections: Rejections::default(),
        }
    }

    /// The schema of the batches `decode` returns.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Counts of the records skipped since this decoder was built.
    pub fn stats(&self) -> &DecodeStats {
        &self.rejections.stats
    }

    /// Descriptions of the first (at most [`SAMPLES_MAX`]) skipped records, such as
    /// `partition 2 offset 17: field 'price': expected DOUBLE, found string` (the partition
    /// is the index into the source's partitions, as in `RawBatch::partition`).
    pub fn samples(&self) -> &[String] {
        &self.rejections.samples
    }

    /// Decodes every record of `raw` and returns the good ones as a batch of the schema;
    /// `kept` is cleared and receives the index in `raw` of each returned row, in order.
    ///
    /// Records are parsed in place (their bytes are left unescaped, and `raw.data` gets
    /// `simd_json::INPUT_PADDING` spare bytes of capacity). Bad records are skipped and
    /// counted; an error means the schema or `raw` itself is unusable (a bug or a limit).
    pub fn decode(
        &mut self,
        raw: &mut RawBatch,
        kept: &mut Vec<u32>,
    ) -> Result<RecordBatch, EngineError> {
        kept.clear();
        if let Some(problem) = &self.setup_error {
            return Err(EngineError::Internal(problem.clone()));
        }
        check_raw_batch(raw)?;
        let data_len = raw.data.len();
        let records = raw.len();

        self.builders.clear();
        let string_bytes = data_len / self.columns.len().max(1);
        for column in &self.columns {
            self.builders
                .push(ColumnBuilder::new(&column.kind, records, string_bytes));
        }

        raw.data.resize(data_len + INPUT_PADDING, b' ');
        for i in 0..records {
            let (start, end) = raw.span(i);
            let (partition, offset) = (raw.partition[i], raw.offset[i]);
            let mut tape = std::mem::replace(&mut self.tape, Tape(Vec::new())).reset();
            let parsed = simd_json::fill_tape_padded(
                &mut raw.data[start..],
                end - start,
                &mut self.buffers,
                &mut tape,
            );
            let good = match parsed {
                Ok(()) => self.append_record(&tape.0, partition, offset),
                Err(e) => {
                    self.rejections
                        .reject(Problem::Malformed, partition, offset, || {
                            format!("malformed JSON: {e}")
                        });
                    false
                }
            };
            self.tape = tape.reset();
            if good {
                kept.push(i as u32);
            }
        }
        raw.data.truncate(data_len);

        let mut columns: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(ColumnBuilder::finish)
            .collect();
        // One wall-clock reading per batch, taken after the batch was read.
        let mut proctime_ms = None;
        for (c, column) in self.columns.iter().enumerate() {
            if column.proctime {
                let ms = *proctime_ms.get_or_insert_with(crate::proctime::now_ms);
                let zone = match self.schema.field(c).data_type() {
                    DataType::Timestamp(_, zone) => zone.clone(),
                    _ => None,
                };
                columns[c] = Arc::new(
                    TimestampMillisecondArray::from_value(ms, kept.len()).with_timezone_opt(zone),
                );
            }
        }
        let options = RecordBatchOptions::new().with_row_count(Some(kept.len()));
        RecordBatch::try_new_with_options(self.schema.clone(), columns, &options).map_err(|e| {
            EngineError::Internal(format!("decoded columns do not fit the schema: {e}"))
        })
    }

    /// Validates the parsed record `nodes` and appends it to the builders; false (and
    /// counted) when it is skipped.
    #[inline]
    fn append_record(&mut self, nodes: &[Node<'_>], partition: u32, offset: i64) -> bool {
        let Some(&Node::Object { len, .. }) = nodes.first() else {
            let found = nodes.first().map_or("nothing", json_type_name);
            self.rejections
                .reject(Problem::Malformed, partition, offset, || {
                    format!("not a JSON object (found {found})")
                });
            return false;
        };

        self.slots.fill(NONE);
        let mut index = 1;
        for position in 0..len {
            let (Some(Node::String(key)), Some(value)) = (nodes.get(index), nodes.get(index + 1))
            else {
                unreachable!("simd-json object without key and value at tape index {index}");
            };
            let column = self.column_of(position, key);
            if column != NONE {
                self.slots[column as usize] = (index + 1) as u32;
            }
            index += 1 + match value {
                Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
                _ => 1,
            };
        }

        for (c, column) in self.columns.iter().enumerate() {
            if column.proctime {
                // Filled per batch in `decode`; the builder only keeps the row count.
                self.cells[c] = Cell::Null;
                continue;
            }
            let slot = self.slots[c];
            if slot == NONE {
                self.rejections
                    .reject(Problem::MissingField, partition, offset, || {
                        format!("field '{}' missing", column.name)
                    });
                return false;
            }
            let node = &nodes[slot as usize];
            match column.kind.convert(node, slot) {
                Ok(Cell::Null) if self.time_column == Some(c) => {
                    self.rejections
                        .reject(Problem::NullTime, partition, offset, || {
                            format!("field '{}': event time is null", column.name)
                        });
                    return false;
                }
                Ok(Cell::Null) if !column.nullable => {
                    self.rejections
                        .reject(Problem::WrongType, partition, offset, || {
                            format!(
                                "field '{}': null in a NOT NULL {} column",
                                column.name,
                                column.kind.sql_name()
                            )
                        });
                    return false;
                }
                Ok(cell) => self.cells[c] = cell,
                Err(mismatch) => {
                    self.rejections
                        .reject(Problem::WrongType, partition, offset, || {
                            mismatch_detail(column, mismatch, node)
                        });
                    return false;
                }
            }
        }

        for (builder, &cell) in self.builders.iter_mut().zip(&self.cells) {
            builder.append(cell, nodes);
        }
        true
    }

    /// The column of field number `position` named `key`, or `NONE`. Checks first whether
    /// the previous record had the same field at the same position.
    #[inline]
    fn column_of(&mut self, position: usize, key: &str) -> u32 {
        if let Some(cached) = self.field_cache.get(position) {
            if cached.name == key.as_bytes() {
                return cached.column;
            }
        }
        let column = self.column_by_name.get(key).copied().unwrap_or(NONE);
        if let Some(cached) = self.field_cache.get_mut(position) {
            cached.name.clear();
            cached.name.extend_from_slice(key.as_bytes());
            cached.column = column;
        } else if position == self.field_cache.len() && position < FIELD_CACHE_MAX {
            self.field_cache.push(CachedField {
                name: key.as_bytes().to_vec(),
                column,
            });
        }
        column
    }
}

/// Checks the invariants of `raw` the decoder relies on (a broken one is a source's bug).
fn check_raw_batch(raw: &RawBatch) -> Result<(), EngineError> {
    let records = raw.len();
    if raw.partition.len() != records || raw.offset.len() != records {
        return Err(EngineError::Internal(format!(
            "raw batch of {records} records with {} partitions and {} offsets",
            raw.partition.len(),
            raw.offset.len()
        )));
    }
    let mut previous_end = 0;
    for &end in &raw.ends {
        if end < previous_end || end > raw.data.len() {
            return Err(EngineError::Internal(format!(
                "raw batch record end {end} after {previous_end} in {} bytes",
                raw.data.len()
            )));
        }
        previous_end = end;
    }
    // String columns use 32-bit offsets, and no record grows when decoded.
    if raw.data.len() > i32::MAX as usize || records > u32::MAX as usize {
        return Err(EngineError::Limit(format!(
            "a raw batch of {} bytes and {records} records is over the decoder's limit of {} \
             bytes; lower the source's batch bytes",
            raw.data.len(),
            i32::MAX
        )));
    }
    Ok(())
}

fn mismatch_detail(column: &ColumnMeta, mismatch: Mismatch, node: &Node<'_>) -> String {
    let sql = column.kind.sql_name();
    match (mismatch, node) {
        (Mismatch::BadTimestamp, Node::String(s)) => {
            let shown: String = s.chars().take(SAMPLE_VALUE_CHARS_MAX).collect();
            let more = if shown.len() < s.len() { "..." } else { "" };
            format!(
                "field '{}': bad timestamp string \"{shown}{more}\"",
                column.name
            )
        }
        (Mismatch::Range, Node::Static(value)) => {
            format!("field '{}': {value} is out of {sql} range", column.name)
        }
        _ => format!(
            "field '{}': expected {sql}, found {}",
            column.name,
            json_type_name(node)
        ),
    }
}
