//! The reading end of a join of two streams: a side's decoded rows get their window bounds
//! (window joins), the side's WHERE and projection, then are split by the shard that owns
//! their join key. Rows too late for their window or interval, and rows whose key holds a
//! NULL (they match nothing), are counted and dropped here.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, TimestampMillisecondArray, UInt32Array};
use arrow::compute::{take, take_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMillisecondType};

use super::keys::{owner_of, KeyEncoder};
use crate::catalog::TableDef;
use crate::error::{EngineError, Result};
use crate::expr::{evaluate_predicate, filter_batch};
use crate::plan::{JoinSide, StreamJoinKind, StreamJoinSide, WindowKind};
use crate::window_assigner::WindowAssigner;

/// Rows of one side for the shard that owns their keys: the side's output schema.
#[derive(Debug)]
pub struct JoinRows {
    pub side: JoinSide,
    pub batch: RecordBatch,
}

/// What routing dropped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RouteStats {
    /// Rows whose window (or interval) the watermark had already passed.
    pub late_rows: u64,
    /// Rows with a NULL in their join key.
    pub null_key_rows: u64,
    /// Rows the side's WHERE removed.
    pub filtered_rows: u64,
}

/// The output schema of a side: its output names and the projection's types (nullable).
pub fn side_schema(side: &StreamJoinSide) -> SchemaRef {
    Arc::new(Schema::new(
        side.projection
            .iter()
            .zip(&side.output_names)
            .map(|(e, n)| Field::new(n, e.data_type(), true))
            .collect::<Vec<_>>(),
    ))
}

/// Prepares and routes the rows of one side.
pub struct SideRouter {
    side: JoinSide,
    plan: StreamJoinSide,
    kind: StreamJoinKind,
    /// The side's input schema (table columns, then window bounds when windowed).
    input_schema: SchemaRef,
    output_schema: SchemaRef,
    encoder: KeyEncoder,
    /// The window of a windowed side and its time column.
    window: Option<(WindowAssigner, usize)>,
    /// TUMBLE: (size, offset), one window per row (no copy of the rows).
    tumble: Option<(i64, i64)>,
    pub stats: RouteStats,
}

impl SideRouter {
    pub fn new(
        side: JoinSide,
        plan: &StreamJoinSide,
        kind: StreamJoinKind,
        table: &TableDef,
    ) -> Result<Self> {
        let mut fields: Vec<Field> = table
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let (window, tumble) = match plan.window {
            None => (None, None),
            Some(spec) => {
                let tumble = match spec.kind {
                    WindowKind::Tumble { size_ms } => Some((size_ms, spec.offset_ms)),
                    WindowKind::Hop { .. } | WindowKind::Cumulate { .. } => None,
                    other => {
                        return Err(EngineError::Internal(format!(
                            "a window join over {} windows was planned",
                            other.name()
                        )))
                    }
                };
                let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
                fields.push(Field::new("window_start", ts.clone(), false));
                fields.push(Field::new("window_end", ts, false));
                (Some((WindowAssigner::new(&spec), spec.time_column)), tumble)
            }
        };
        Ok(SideRouter {
            side,
            plan: plan.clone(),
            kind,
            input_schema: Arc::new(Schema::new(fields)),
            output_schema: side_schema(plan),
            encoder: KeyEncoder::new(plan.keys.clone())?,
            window,
            tumble,
            stats: RouteStats::default(),
        })
    }

    /// The side's output rows of a decoded batch of its table.
    pub fn prepare(&mut self, decoded: &RecordBatch) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = decoded.columns().to_vec();
        if let Some((assigner, time_column)) = &self.window {
            let ts = decoded
                .column(*time_column)
                .as_primitive::<TimestampMillisecondType>();
            let mut starts = Vec::with_capacity(ts.len());
            let mut ends = Vec::with_capacity(ts.len());
            if let Some((size, offset)) = self.tumble {
                for &t in ts.values().iter() {
                    let start = t - (t - offset).rem_euclid(size);
                    starts.push(start);
                    ends.push(start.saturating_add(size));
                }
            } else {
                // HOP, CUMULATE: one copy of the row per window holding it.
                let mut copies = Vec::with_capacity(ts.len());
                for (i, &t) in ts.values().iter().enumerate() {
                    for (start, end) in assigner.windows_of(t) {
                        copies.push(i as u32);
                        starts.push(start);
                        ends.push(end);
                    }
                }
                let copies = UInt32Array::from(copies);
                columns = columns
                    .iter()
                    .map(|c| take(c.as_ref(), &copies, None))
                    .collect::<std::result::Result<_, _>>()?;
            }
            columns.push(Arc::new(TimestampMillisecondArray::from(starts)));
            columns.push(Arc::new(TimestampMillisecondArray::from(ends)));
        }
        let input = RecordBatch::try_new(self.input_schema.clone(), columns).map_err(|e| {
            EngineError::Internal(format!("join side input does not match its schema: {e}"))
        })?;
        let input = match &self.plan.filter {
            Some(f) => {
                let mask = evaluate_predicate(f, &input)?;
                let out = filter_batch(&input, &mask)?;
                self.stats.filtered_rows += (input.num_rows() - out.num_rows()) as u64;
                out
            }
            None => input,
        };
        let columns = self
            .plan
            .projection
            .iter()
            .map(|e| e.evaluate(&input))
            .collect::<Result<Vec<_>>>()?;
        RecordBatch::try_new(self.output_schema.clone(), columns).map_err(|e| {
            EngineError::Internal(format!("join side output does not match its schema: {e}"))
        })
    }

    /// Splits `rows` (output rows of this side) by owner shard, dropping late rows (by
    /// `late_watermark`) and rows with a NULL key.
    pub fn route(
        &mut self,
        rows: &RecordBatch,
        late_watermark: i64,
        shards: usize,
    ) -> Result<Vec<(usize, JoinRows)>> {
        if rows.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let (keys, has_null) = self.encoder.encode(rows)?;
        let times = rows
            .column(self.plan.time_column)
            .as_primitive::<TimestampMillisecondType>();
        let mut per_owner: Vec<Vec<u32>> = vec![Vec::new(); shards.max(1)];
        for (i, &null) in has_null.iter().enumerate() {
            if null || times.is_null(i) {
                self.stats.null_key_rows += 1;
                continue;
            }
            if is_late(self.kind, self.side, times.value(i), late_watermark) {
                self.stats.late_rows += 1;
                continue;
            }
            per_owner[owner_of(keys.row(i).as_ref(), shards)].push(i as u32);
        }
        let mut out = Vec::new();
        for (owner, indices) in per_owner.into_iter().enumerate() {
            if indices.is_empty() {
                continue;
            }
            let batch = if indices.len() == rows.num_rows() {
                rows.clone()
            } else {
                take_record_batch(rows, &UInt32Array::from(indices))?
            };
            out.push((
                owner,
                JoinRows {
                    side: self.side,
                    batch,
                },
            ));
        }
        Ok(out)
    }
}

/// Whether a row of `side` whose time column holds `time` (window end, or event time) is
/// late at `watermark`: its window has closed, or a partner of it may have been freed. Rows
/// of the other side are freed only when the bound that frees them is finite (a left row's
/// partners need a finite upper bound, a right row's a finite lower bound), so a join
/// without bounds (a regular join) has no late rows.
pub fn is_late(kind: StreamJoinKind, side: JoinSide, time: i64, watermark: i64) -> bool {
    match kind {
        StreamJoinKind::Window => time <= watermark,
        StreamJoinKind::Interval { lower_ms, upper_ms } => {
            let partners_freed = match side {
                JoinSide::Left => upper_ms != i64::MAX,
                JoinSide::Right => lower_ms != i64::MIN,
            };
            partners_freed && time < watermark
        }
        // A left row's partners before the watermark may have been freed; a right row's
        // left rows whose `until` passed have been emitted.
        StreamJoinKind::IntervalUntil { .. } => time < watermark,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Column, ColumnType};
    use crate::plan::{Expr, WindowSpec};
    use arrow::array::Int64Array;

    fn table() -> TableDef {
        let column = |name: &str, ty| Column {
            name: name.into(),
            ty,
            nullable: true,
        };
        TableDef {
            name: "t".into(),
            columns: vec![
                column("k", ColumnType::BigInt),
                column("ts", ColumnType::Timestamp),
            ],
            watermark: None,
            primary_key: Vec::new(),
            options: Default::default(),
            pos: Default::default(),
        }
    }

    fn side(kind: WindowKind) -> StreamJoinSide {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
        let col = |index: usize, name: &str, data_type: DataType| Expr::Column {
            index,
            name: name.into(),
            data_type,
        };
        StreamJoinSide {
            table: "t".into(),
            qualifier: "t".into(),
            window: Some(WindowSpec {
                kind,
                time_column: 1,
                offset_ms: 0,
            }),
            filter: None,
            projection: vec![
                col(0, "k", DataType::Int64),
                col(2, "window_start", ts.clone()),
                col(3, "window_end", ts),
            ],
            output_names: vec!["k".into(), "window_start".into(), "window_end".into()],
            distinct: false,
            keys: vec![col(0, "k", DataType::Int64)],
            time_column: 2,
        }
    }

    fn decoded(rows: &[(i64, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            table().schema(),
            vec![
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(TimestampMillisecondArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
            ],
        )
        .expect("test batch")
    }

    fn bounds(batch: &RecordBatch) -> Vec<(i64, i64, i64)> {
        let k = batch
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>();
        let s = batch.column(1).as_primitive::<TimestampMillisecondType>();
        let e = batch.column(2).as_primitive::<TimestampMillisecondType>();
        (0..batch.num_rows())
            .map(|i| (k.value(i), s.value(i), e.value(i)))
            .collect()
    }

    #[test]
    fn rows_get_one_copy_per_window() {
        let kind = WindowKind::Cumulate {
            step_ms: 10,
            max_size_ms: 30,
        };
        let mut r = SideRouter::new(
            JoinSide::Left,
            &side(kind),
            StreamJoinKind::Window,
            &table(),
        )
        .expect("router");
        let out = r.prepare(&decoded(&[(1, 5), (2, 25)])).expect("prepared");
        assert_eq!(
            bounds(&out),
            vec![(1, 0, 10), (1, 0, 20), (1, 0, 30), (2, 0, 30)]
        );
        let kind = WindowKind::Tumble { size_ms: 10 };
        let mut r = SideRouter::new(
            JoinSide::Left,
            &side(kind),
            StreamJoinKind::Window,
            &table(),
        )
        .expect("router");
        let out = r.prepare(&decoded(&[(1, -5), (2, 25)])).expect("prepared");
        assert_eq!(bounds(&out), vec![(1, -10, 0), (2, 20, 30)]);
    }

    #[test]
    fn routing_drops_late_rows_and_splits_by_owner() {
        let kind = WindowKind::Tumble { size_ms: 10 };
        let mut r = SideRouter::new(
            JoinSide::Left,
            &side(kind),
            StreamJoinKind::Window,
            &table(),
        )
        .expect("router");
        let out = r
            .prepare(&decoded(&[(1, 5), (2, 15), (3, 25), (4, 35)]))
            .expect("prepared");
        // The window ending at 10 has closed at watermark 10.
        let parts = r.route(&out, 10, 3).expect("routed");
        assert_eq!(r.stats.late_rows, 1);
        let routed: usize = parts.iter().map(|(_, p)| p.batch.num_rows()).sum();
        assert_eq!(routed, 3);
        assert!(parts.iter().all(|(owner, _)| *owner < 3));
        // The same key always goes to the same shard.
        let again = r.route(&out, 10, 3).expect("routed");
        let owners = |p: &[(usize, JoinRows)]| {
            p.iter()
                .map(|(o, j)| (*o, j.batch.num_rows()))
                .collect::<Vec<_>>()
        };
        assert_eq!(owners(&parts), owners(&again));
    }
}
