//! The rows of one shard's copy of a dimension table, stored as Arrow batches.
//!
//! Each applied changelog batch is appended whole as a *segment*; a row is addressed by
//! [`RowRef`] (segment, row). Segment 0 is one row of NULLs: the row a missed lookup points
//! at, so a join builds its dimension columns with one `interleave` and no special case.
//! Replaced and deleted rows are released (a segment whose rows are all released is freed);
//! when released rows outweigh live ones, or there are too many segments, [`RowStore::compact`]
//! copies the live rows into one new segment.

use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef};
use arrow::compute::interleave;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::error::{EngineError, Result};

/// Segments held before a compaction is due, whatever their fill.
pub const SEGMENTS_MAX: usize = 256;
/// Released rows tolerated without compaction (below this, compaction is not worth it).
const RELEASED_ROWS_SLACK: usize = 4096;

/// Where a row lives: segment and row within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RowRef {
    pub segment: u32,
    pub row: u32,
}

/// The all-NULL row (segment 0), what a missed lookup yields.
pub const NULL_ROW: RowRef = RowRef { segment: 0, row: 0 };

struct Segment {
    batch: RecordBatch,
    /// Rows of the segment still referenced.
    live: usize,
    bytes: usize,
}

/// Arrow-held rows of a dimension table (see the module docs).
pub struct RowStore {
    schema: SchemaRef,
    /// `segments[0]` is the NULL row; a freed segment is None.
    segments: Vec<Option<Segment>>,
    live_rows: usize,
    held_rows: usize,
    bytes: usize,
}

impl RowStore {
    /// An empty store of rows of `schema`.
    pub fn new(schema: SchemaRef) -> Result<Self> {
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), 1))
            .collect();
        let nulls = RecordBatch::try_new(nullable(&schema), columns)
            .map_err(|e| EngineError::Internal(format!("dimension NULL row: {e}")))?;
        let bytes = nulls.get_array_memory_size();
        Ok(RowStore {
            schema,
            segments: vec![Some(Segment {
                batch: nulls,
                live: 1,
                bytes,
            })],
            live_rows: 0,
            held_rows: 0,
            bytes,
        })
    }

    /// Appends `batch` (rows of the store's schema) as a new segment; its rows start
    /// unreferenced: [`RowStore::retain`] each row that a key points at.
    pub fn append(&mut self, batch: RecordBatch) -> Result<u32> {
        let segment = u32::try_from(self.segments.len())
            .map_err(|_| EngineError::Internal("dimension row store: 2^32 segments".into()))?;
        let batch = RecordBatch::try_new(nullable(&self.schema), batch.columns().to_vec())
            .map_err(|e| EngineError::Internal(format!("dimension segment: {e}")))?;
        let bytes = batch.get_array_memory_size();
        self.held_rows += batch.num_rows();
        self.bytes += bytes;
        self.segments.push(Some(Segment {
            batch,
            live: 0,
            bytes,
        }));
        Ok(segment)
    }

    /// Marks a row as referenced.
    pub fn retain(&mut self, r: RowRef) {
        let segment = self.segment_mut(r);
        segment.live += 1;
        self.live_rows += 1;
    }

    /// Drops one reference to a row; frees its segment when none is left. Releasing
    /// [`NULL_ROW`] is a no-op.
    pub fn release(&mut self, r: RowRef) {
        if r == NULL_ROW {
            return;
        }
        let segment = self.segment_mut(r);
        assert!(
            segment.live > 0,
            "dimension row {r:?} released more often than retained"
        );
        segment.live -= 1;
        let unreferenced = segment.live == 0;
        self.live_rows -= 1;
        if unreferenced {
            self.free(r.segment as usize);
        }
    }

    /// Keeps `segment` while its rows are applied (a row retained and released again in
    /// the same batch must not free it); [`RowStore::unpin`] ends that.
    pub fn pin(&mut self, segment: u32) {
        self.segment_mut(RowRef { segment, row: 0 }).live += 1;
    }

    /// Ends a [`RowStore::pin`]: frees the segment when none of its rows is referenced.
    pub fn unpin(&mut self, segment: u32) {
        let s = self.segment_mut(RowRef { segment, row: 0 });
        assert!(
            s.live > 0,
            "dimension segment {segment} unpinned without a pin"
        );
        s.live -= 1;
        if s.live == 0 {
            self.free(segment as usize);
        }
    }

    fn free(&mut self, index: usize) {
        if let Some(s) = self.segments[index].take() {
            self.held_rows -= s.batch.num_rows();
            self.bytes -= s.bytes;
        }
        // Trailing freed slots can be reused.
        while self.segments.len() > 1 && self.segments.last().is_some_and(|s| s.is_none()) {
            self.segments.pop();
        }
    }

    fn segment_mut(&mut self, r: RowRef) -> &mut Segment {
        match self.segments.get_mut(r.segment as usize) {
            Some(Some(s)) if (r.row as usize) < s.batch.num_rows() => s,
            _ => panic!("dimension row {r:?} does not exist"),
        }
    }

    /// Referenced rows.
    pub fn live_rows(&self) -> usize {
        self.live_rows
    }

    /// Bytes of the Arrow buffers held (live and released rows of held segments).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether a compaction would pay: many released rows, or too many segments.
    pub fn compaction_due(&self) -> bool {
        let released = self.held_rows - self.live_rows;
        (released > self.live_rows && released > RELEASED_ROWS_SLACK)
            || self.segments.len() > SEGMENTS_MAX
    }

    /// Copies the rows `refs` point at into one new segment and points them there; every
    /// other segment is freed. `refs` must be every live reference (each once).
    pub fn compact(&mut self, refs: &mut [&mut RowRef]) -> Result<()> {
        let live: Vec<(usize, usize)> = refs
            .iter()
            .filter(|r| ***r != NULL_ROW)
            .map(|r| (r.segment as usize, r.row as usize))
            .collect();
        assert_eq!(
            live.len(),
            self.live_rows,
            "dimension compaction given {} references for {} live rows",
            live.len(),
            self.live_rows
        );
        let columns = (0..self.schema.fields().len())
            .map(|c| self.gather(c, &live))
            .collect::<Result<Vec<_>>>()?;
        let batch = RecordBatch::try_new(nullable(&self.schema), columns)
            .map_err(|e| EngineError::Internal(format!("dimension compaction: {e}")))?;
        self.segments.truncate(1);
        self.held_rows = 0;
        self.bytes = self.segments[0].as_ref().map_or(0, |s| s.bytes);
        self.live_rows = 0;
        if live.is_empty() {
            return Ok(());
        }
        let segment = self.append(batch)?;
        let mut row = 0u32;
        for r in refs.iter_mut() {
            if **r != NULL_ROW {
                **r = RowRef { segment, row };
                self.retain(**r);
                row += 1;
            }
        }
        Ok(())
    }

    /// Column `column` of the rows at `rows` ((segment, row) pairs), in order.
    pub fn gather(&self, column: usize, rows: &[(usize, usize)]) -> Result<ArrayRef> {
        let null_array = self.segments[0]
            .as_ref()
            .map(|s| s.batch.column(column).clone())
            .ok_or_else(|| EngineError::Internal("dimension NULL row missing".into()))?;
        let arrays: Vec<&dyn Array> = self
            .segments
            .iter()
            .map(|s| match s {
                Some(s) => s.batch.column(column).as_ref(),
                None => null_array.as_ref(),
            })
            .collect();
        Ok(interleave(&arrays, rows)?)
    }

    /// The rows `rows` point at, as a batch of the store's schema (all columns nullable).
    pub fn gather_rows(&self, rows: &[RowRef]) -> Result<Vec<ArrayRef>> {
        let pairs: Vec<(usize, usize)> = rows
            .iter()
            .map(|r| (r.segment as usize, r.row as usize))
            .collect();
        (0..self.schema.fields().len())
            .map(|c| self.gather(c, &pairs))
            .collect()
    }

    /// The schema of the rows (as declared; stored columns are all nullable).
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }
}

/// `schema` with every field nullable (the NULL row and a LEFT JOIN's misses).
fn nullable(schema: &SchemaRef) -> SchemaRef {
    Arc::new(arrow::datatypes::Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, true),
        ]))
    }

    fn batch(keys: &[&str], values: &[i64]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(keys.to_vec())),
                Arc::new(Int64Array::from(values.to_vec())),
            ],
        )
        .expect("batch")
    }

    #[test]
    fn gather_follows_refs_and_null_row() {
        let mut store = RowStore::new(schema()).expect("store");
        let s1 = store.append(batch(&["a", "b"], &[1, 2])).expect("append");
        let s2 = store.append(batch(&["c"], &[3])).expect("append");
        let refs = [
            RowRef {
                segment: s2,
                row: 0,
            },
            NULL_ROW,
            RowRef {
                segment: s1,
                row: 1,
            },
        ];
        for r in &refs[..] {
            store.retain(*r);
        }
        let columns = store.gather_rows(&refs).expect("gather");
        let v = columns[1].as_primitive::<Int64Type>();
        assert_eq!(v.value(0), 3);
        assert!(v.is_null(1));
        assert_eq!(v.value(2), 2);
        assert_eq!(columns[0].as_string::<i32>().value(2), "b");
    }

    #[test]
    fn released_segments_are_freed_and_compaction_keeps_values() {
        let mut store = RowStore::new(schema()).expect("store");
        let empty_bytes = store.bytes();
        let s1 = store.append(batch(&["a", "b"], &[1, 2])).expect("append");
        let a = RowRef {
            segment: s1,
            row: 0,
        };
        let b = RowRef {
            segment: s1,
            row: 1,
        };
        store.retain(a);
        store.retain(b);
        assert_eq!(store.live_rows(), 2);
        assert!(store.bytes() > empty_bytes);
        store.release(a);
        let s2 = store.append(batch(&["a"], &[10])).expect("append");
        let mut a2 = RowRef {
            segment: s2,
            row: 0,
        };
        store.retain(a2);
        let mut b2 = b;
        store.compact(&mut [&mut a2, &mut b2]).expect("compact");
        assert_eq!(store.live_rows(), 2);
        assert_eq!(a2.segment, b2.segment);
        let columns = store.gather_rows(&[a2, b2]).expect("gather");
        let v = columns[1].as_primitive::<Int64Type>();
        assert_eq!((v.value(0), v.value(1)), (10, 2));
        store.release(a2);
        store.release(b2);
        assert_eq!(store.live_rows(), 0);
        assert_eq!(
            store.bytes(),
            empty_bytes,
            "all segments but the NULL row freed"
        );
    }

    #[test]
    #[should_panic(expected = "does not exist")]
    fn releasing_a_freed_row_is_a_bug() {
        let mut store = RowStore::new(schema()).expect("store");
        let s = store.append(batch(&["a", "b"], &[1, 2])).expect("append");
        let r = RowRef { segment: s, row: 0 };
        store.retain(r);
        store.release(r);
        store.release(r);
    }
}
