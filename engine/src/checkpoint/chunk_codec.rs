//! The bytes of window state in a checkpoint: keys naming a chunk of a window's groups, and
//! values holding those groups (key, hash, accumulator slots, strings).
//!
//! Key: `kind` (1 byte: `L` a shard's open window, `F` a window in the final stage, `C` a
//! partial in flight between shards when the checkpoint was taken, `S` a chunk of SESSION
//! state, see `session_chunks.rs`), then for `L`/`F` the
//! window start and end (i64 big-endian) and the chunk number (u32 big-endian); for `C` the
//! epoch (u64), a sequence number (u32), and the window start and end.
//!
//! Value: `stride` (u32 LE), group count (u32 LE), then per group: key length (u32 LE), key
//! bytes, hash (u64 LE), `stride` slots of two u64 LE, then for each slot with side state
//! (`Accumulator::uses_strings`) that holds a value, its side value: a length (u32 LE) and
//! that many bytes. For MIN/MAX over strings the bytes are the string itself (as before the
//! other side values existed); for the others they start with a tag byte naming the variant
//! (see `docs/state-format.md`, "Aggregate side state"). Every length, count and tag is
//! checked when decoding: damaged state is an error, never a panic.

use crate::accumulator::{
    AccKind, Accumulator, DistinctSet, HyperLogLog, Moments, SideValue, Slot, StringStore, Timed,
    ValueKind, HLL_PRECISION,
};
use crate::error::{EngineError, Result};
use crate::exchange::PartialWindow;
use crate::group_table::{GroupTable, GROUP_CHUNK};
use crate::window_operator::AggregateLayout;

pub const KIND_LOCAL: u8 = b'L';
pub const KIND_FINAL: u8 = b'F';
pub const KIND_INFLIGHT: u8 = b'C';
/// SESSION windows' owner stage (see `session_chunks.rs`; `start` is the epoch).
pub const KIND_SESSION: u8 = b'S';

/// What a state key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKey {
    /// Chunk `chunk` of window [start, end) of the open windows (`L`) or the final stage (`F`).
    Window {
        kind: u8,
        start: i64,
        end: i64,
        chunk: u32,
    },
    /// A partial of window [start, end) in flight between shards at checkpoint `epoch`.
    Inflight {
        epoch: u64,
        seq: u32,
        start: i64,
        end: i64,
    },
}

impl StateKey {
    pub fn encode(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(21);
        match *self {
            StateKey::Window {
                kind,
                start,
                end,
                chunk,
            } => {
                k.push(kind);
                k.extend_from_slice(&start.to_be_bytes());
                k.extend_from_slice(&end.to_be_bytes());
                k.extend_from_slice(&chunk.to_be_bytes());
            }
            StateKey::Inflight {
                epoch,
                seq,
                start,
                end,
            } => {
                k.push(KIND_INFLIGHT);
                k.extend_from_slice(&epoch.to_be_bytes());
                k.extend_from_slice(&seq.to_be_bytes());
                k.extend_from_slice(&start.to_be_bytes());
                k.extend_from_slice(&end.to_be_bytes());
            }
        }
        k
    }

    pub fn decode(key: &[u8]) -> Result<StateKey> {
        let bad = || EngineError::Data(format!("checkpoint holds an unknown state key {key:02x?}"));
        let be8 = |b: &[u8]| -> [u8; 8] { b.try_into().unwrap_or([0; 8]) };
        let be4 = |b: &[u8]| -> [u8; 4] { b.try_into().unwrap_or([0; 4]) };
        match key.first() {
            Some(&kind @ (KIND_LOCAL | KIND_FINAL | KIND_SESSION)) if key.len() == 21 => {
                Ok(StateKey::Window {
                    kind,
                    start: i64::from_be_bytes(be8(&key[1..9])),
                    end: i64::from_be_bytes(be8(&key[9..17])),
                    chunk: u32::from_be_bytes(be4(&key[17..21])),
                })
            }
            Some(&KIND_INFLIGHT) if key.len() == 29 => Ok(StateKey::Inflight {
                epoch: u64::from_be_bytes(be8(&key[1..9])),
                seq: u32::from_be_bytes(be4(&key[9..13])),
                start: i64::from_be_bytes(be8(&key[13..21])),
                end: i64::from_be_bytes(be8(&key[21..29])),
            }),
            _ => Err(bad()),
        }
    }
}

fn put_u32(out: &mut Vec<u8>, v: usize) {
    out.extend_from_slice(&(v as u32).to_le_bytes());
}

/// Tags of side values (the first byte of their bytes; MIN/MAX strings have none).
const TAG_TIMED: u8 = b'T';
const TAG_DISTINCT_WORDS: u8 = b'W';
const TAG_DISTINCT_TEXTS: u8 = b'S';
const TAG_SKETCH: u8 = b'H';
const TAG_MOMENTS: u8 = b'M';
const TAG_TOP_N: u8 = b'N';

fn put_side(value: &SideValue, out: &mut Vec<u8>) {
    let len_at = out.len();
    put_u32(out, 0);
    match value {
        SideValue::Text(t) => out.extend_from_slice(t),
        SideValue::Timed(t) => {
            out.push(TAG_TIMED);
            out.extend_from_slice(&t.time.to_le_bytes());
            out.extend_from_slice(&t.word.to_le_bytes());
            out.extend_from_slice(&t.text);
        }
        SideValue::Distinct(DistinctSet::Words(set)) => {
            out.push(TAG_DISTINCT_WORDS);
            put_u32(out, set.len());
            set.iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        }
        SideValue::Distinct(DistinctSet::Texts(set)) => {
            out.push(TAG_DISTINCT_TEXTS);
            put_u32(out, set.len());
            for v in set {
                put_u32(out, v.len());
                out.extend_from_slice(v);
            }
        }
        SideValue::Sketch(h) => {
            out.push(TAG_SKETCH);
            out.push(HLL_PRECISION as u8);
            out.extend_from_slice(h.registers());
        }
        SideValue::Moments(m) => {
            out.push(TAG_MOMENTS);
            out.extend_from_slice(&m.count.to_le_bytes());
            out.extend_from_slice(&m.mean.to_bits().to_le_bytes());
            out.extend_from_slice(&m.m2.to_bits().to_le_bytes());
        }
        SideValue::TopN(t) => {
            out.push(TAG_TOP_N);
            t.encode(out);
        }
    }
    let len = (out.len() - len_at - 4) as u32;
    out[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
}

fn put_group(
    layout: &AggregateLayout,
    key: &[u8],
    hash: u64,
    slots: &[Slot],
    strings: &StringStore,
    out: &mut Vec<u8>,
) {
    put_u32(out, key.len());
    out.extend_from_slice(key);
    out.extend_from_slice(&hash.to_le_bytes());
    for s in slots {
        out.extend_from_slice(&s.a.to_le_bytes());
        out.extend_from_slice(&s.b.to_le_bytes());
    }
    for (acc, s) in layout.accumulators.iter().zip(slots) {
        if acc.uses_strings() && s.b > 0 {
            put_side(&strings[s.a as usize], out);
        }
    }
}

/// Appends the groups of chunk `chunk` of `table` to `out`.
pub fn encode_chunk(layout: &AggregateLayout, table: &GroupTable, chunk: u32, out: &mut Vec<u8>) {
    encode_chunk_upto(layout, table, chunk, table.len() as u32, out)
}

/// Appends the groups of chunk `chunk` of `table` that are below `groups` (the groups the
/// table had when its snapshot was taken) to `out`.
pub fn encode_chunk_upto(
    layout: &AggregateLayout,
    table: &GroupTable,
    chunk: u32,
    groups: u32,
    out: &mut Vec<u8>,
) {
    let first = chunk * GROUP_CHUNK;
    let last = (first + GROUP_CHUNK).min(groups).min(table.len() as u32);
    let n = last.saturating_sub(first) as usize;
    out.reserve(8 + n * (4 + 8 + 16 * layout.stride() + 16));
    put_u32(out, layout.stride());
    put_u32(out, last.saturating_sub(first) as usize);
    for g in first..last {
        put_group(
            layout,
            table.key(g),
            table.hash(g),
            table.group_slots(g),
            &table.strings,
            out,
        );
    }
}

/// Serializes pending chunk `chunk` of window `w` (as it was at the snapshot) into `out` as a
/// put of state kind `kind`.
pub fn save_chunk(
    layout: &AggregateLayout,
    kind: u8,
    w: &mut crate::window_operator::FiredWindow,
    chunk: u32,
    out: &mut Vec<(Vec<u8>, Vec<u8>)>,
) {
    let key = StateKey::Window {
        kind,
        start: w.start,
        end: w.end,
        chunk,
    }
    .encode();
    let mut value = Vec::new();
    encode_chunk_upto(
        layout,
        &w.groups,
        chunk,
        w.groups.pending_groups,
        &mut value,
    );
    out.push((key, value));
    w.groups.persisted_chunks = w.groups.persisted_chunks.max(chunk + 1);
}

/// Serializes every pending chunk of `w` (it is about to be removed or handed over).
pub fn save_all_pending(
    layout: &AggregateLayout,
    kind: u8,
    w: &mut crate::window_operator::FiredWindow,
    out: &mut Vec<(Vec<u8>, Vec<u8>)>,
) {
    while let Some(chunk) = w.groups.next_pending() {
        save_chunk(layout, kind, w, chunk, out);
    }
}

/// Appends every group of a partial to `out`.
pub fn encode_partial(layout: &AggregateLayout, p: &PartialWindow, out: &mut Vec<u8>) {
    let stride = layout.stride();
    put_u32(out, stride);
    put_u32(out, p.len());
    for i in 0..p.len() {
        put_group(
            layout,
            p.key(i),
            p.hashes[i],
            &p.slots[i * stride..(i + 1) * stride],
            &p.strings,
            out,
        );
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(EngineError::Data(format!(
                "window state record ends early ({} bytes, {} more needed at byte {})",
                self.bytes.len(),
                n,
                self.at
            )));
        };
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

/// Reads the side value of aggregate `index` (written by `put_side`).
fn read_side(acc: &Accumulator, index: usize, bytes: &[u8]) -> Result<SideValue> {
    let mismatch = || {
        EngineError::Data(format!(
            "window state of aggregate {} holds {} bytes that are not a {:?} state: the \
             checkpoint was written by another query, or is damaged",
            index + 1,
            bytes.len(),
            acc.kind
        ))
    };
    if matches!(acc.kind, AccKind::MinStr | AccKind::MaxStr) {
        return Ok(SideValue::Text(bytes.into()));
    }
    let (&tag, rest) = bytes.split_first().ok_or_else(mismatch)?;
    let mut r = Reader { bytes: rest, at: 0 };
    let value = match (acc.kind, tag) {
        (AccKind::First(kind) | AccKind::Last(kind), TAG_TIMED) => {
            let time = r.u64()? as i64;
            let word = r.u64()?;
            let text = r.take(rest.len() - r.at)?;
            if kind != ValueKind::Text && !text.is_empty() {
                return Err(mismatch());
            }
            SideValue::Timed(Timed {
                time,
                word,
                text: text.into(),
            })
        }
        (AccKind::CountDistinct(kind), TAG_DISTINCT_WORDS) if kind != ValueKind::Text => {
            let n = r.u32()? as usize;
            if n > rest.len() / 8 {
                return Err(mismatch());
            }
            let mut set = hashbrown::HashSet::with_capacity(n);
            for _ in 0..n {
                set.insert(r.u64()?);
            }
            SideValue::Distinct(DistinctSet::Words(set))
        }
        (AccKind::CountDistinct(ValueKind::Text), TAG_DISTINCT_TEXTS) => {
            let n = r.u32()? as usize;
            if n > rest.len() / 4 {
                return Err(mismatch());
            }
            let mut set = hashbrown::HashSet::with_capacity(n);
            for _ in 0..n {
                let len = r.u32()? as usize;
                set.insert(Box::<[u8]>::from(r.take(len)?));
            }
            SideValue::Distinct(DistinctSet::Texts(set))
        }
        (AccKind::ApproxDistinct(_), TAG_SKETCH) => {
            let precision = r.take(1)?[0];
            let registers = r.take(rest.len() - r.at)?;
            match HyperLogLog::from_registers(registers) {
                Some(h) if precision as u32 == HLL_PRECISION => SideValue::Sketch(h),
                _ => return Err(mismatch()),
            }
        }
        (AccKind::Moments(_), TAG_MOMENTS) => SideValue::Moments(Moments {
            count: r.u64()?,
            mean: f64::from_bits(r.u64()?),
            m2: f64::from_bits(r.u64()?),
        }),
        (AccKind::TopN, TAG_TOP_N) => {
            let state = acc.top_n.as_ref().and_then(|spec| spec.decode(rest));
            r.at = rest.len();
            SideValue::TopN(Box::new(state.ok_or_else(mismatch)?))
        }
        _ => return Err(mismatch()),
    };
    if r.at != rest.len() {
        return Err(mismatch());
    }
    debug_assert!(acc.accepts_side(&value));
    Ok(value)
}

/// Reads groups written by [`encode_chunk`] or [`encode_partial`] as a partial of window
/// [start, end), ready to merge into a final stage.
pub fn decode_groups(
    layout: &AggregateLayout,
    start: i64,
    end: i64,
    bytes: &[u8],
) -> Result<PartialWindow> {
    let mut r = Reader { bytes, at: 0 };
    let stride = r.u32()? as usize;
    if stride != layout.stride() {
        return Err(EngineError::Data(format!(
            "window state has {stride} aggregates per group but the query has {}: the \
             checkpoint was written by another query",
            layout.stride()
        )));
    }
    let n = r.u32()? as usize;
    let mut p = PartialWindow {
        start,
        end,
        ..PartialWindow::default()
    };
    // Each group takes at least 12 bytes: a count beyond that is damage, not a reason to allocate.
    if n > bytes.len() / 12 {
        return Err(EngineError::Data(format!(
            "window state claims {n} groups in {} bytes",
            bytes.len()
        )));
    }
    p.hashes.reserve(n);
    p.key_ends.reserve(n);
    p.slots.reserve(n * stride);
    for _ in 0..n {
        let len = r.u32()? as usize;
        p.key_bytes.extend_from_slice(r.take(len)?);
        p.key_ends.push(p.key_bytes.len() as u32);
        p.hashes.push(r.u64()?);
        let first = p.slots.len();
        for _ in 0..stride {
            let a = r.u64()?;
            let b = r.u64()?;
            p.slots.push(Slot { a, b });
        }
        for (i, acc) in layout.accumulators.iter().enumerate() {
            let s = &mut p.slots[first + i];
            if acc.uses_strings() && s.b > 0 {
                let len = r.u32()? as usize;
                p.strings.push(read_side(acc, i, r.take(len)?)?);
                s.a = (p.strings.len() - 1) as u64;
            }
        }
    }
    if r.at != bytes.len() {
        return Err(EngineError::Data(format!(
            "window state record has {} bytes after its last group",
            bytes.len() - r.at
        )));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::split_by_owner;
    use crate::window_operator::FiredWindow;
    use proptest::prelude::*;

    pub(crate) fn layout_min_max_str() -> AggregateLayout {
        crate::checkpoint::test_layout::layout()
    }

    fn table(keys: &[(Vec<u8>, i64, Option<&str>)], layout: &AggregateLayout) -> GroupTable {
        let mut t = GroupTable::new(layout.stride());
        for (k, v, s) in keys {
            let (g, _) = t.find_or_insert(k, layout.hash_key(k));
            let base = g as usize * layout.stride();
            t.slots[base].a += 1;
            t.slots[base + 1].a = (t.slots[base + 1].a as i64 + v) as u64;
            t.slots[base + 1].b += 1;
            if let Some(s) = s {
                t.strings.push(s.as_bytes().into());
                t.slots[base + 2] = Slot {
                    a: (t.strings.len() - 1) as u64,
                    b: 1,
                };
            }
        }
        t
    }

    /// A query with every aggregate that keeps side state.
    const SIDE_SQL: &str = "CREATE TABLE t (k STRING, v BIGINT, x DOUBLE, s STRING, \
        ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
        WITH ('connector' = 'filesystem', 'path' = 'unused.jsonl', 'format' = 'json');\n\
        SELECT k, COUNT(DISTINCT v), COUNT(DISTINCT s), COUNT(DISTINCT x), FIRST_VALUE(s), \
        LAST_VALUE(x), FIRST_VALUE(v), STDDEV_SAMP(x), VAR_POP(v), APPROX_COUNT_DISTINCT(s), \
        MAX(s), SUM(v) FILTER (WHERE v > 0) \
        FROM t GROUP BY k, TUMBLE(ts, INTERVAL '1' SECOND);";

    type SideRow = (u8, Option<i64>, Option<f64>, Option<String>, i64);

    fn side_layout() -> AggregateLayout {
        let program = crate::sql::parse_program(SIDE_SQL).expect("side query plans");
        let aggregation = program.pipelines[0]
            .aggregation
            .clone()
            .expect("aggregation");
        AggregateLayout::new(&aggregation).expect("layout")
    }

    /// A window's groups after the aggregates' own updates over `rows`.
    fn side_table(layout: &AggregateLayout, rows: &[SideRow]) -> GroupTable {
        use arrow::array::{
            ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
        };
        use std::sync::Arc;
        let mut t = GroupTable::new(layout.stride());
        if rows.is_empty() {
            return t;
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| format!("k{}", r.0)),
            )),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.1))),
            Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.2))),
            Arc::new(StringArray::from_iter(rows.iter().map(|r| r.3.clone()))),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.4),
            )),
        ];
        let batch = RecordBatch::try_from_iter(["k", "v", "x", "s", "ts"].into_iter().zip(columns))
            .expect("batch");
        let groups: Vec<u32> = rows
            .iter()
            .map(|r| t.find_or_insert(&[r.0], layout.hash_key(&[r.0])).0)
            .collect();
        let all: Vec<u32> = (0..rows.len() as u32).collect();
        for (i, (acc, call)) in layout
            .accumulators
            .iter()
            .zip(&layout.aggregation.aggregates)
            .enumerate()
        {
            let arg = call
                .arg
                .as_ref()
                .map(|e| e.evaluate(&batch))
                .transpose()
                .expect("arg");
            let input = acc.prepare(arg.as_ref(), batch.column(4)).expect("prepare");
            let stride = t.stride;
            acc.update(
                &mut t.slots,
                stride,
                i,
                &groups,
                &all,
                input.as_ref(),
                &mut t.strings,
            );
        }
        t
    }

    fn side_rows() -> impl Strategy<Value = Vec<SideRow>> {
        proptest::collection::vec(
            (
                0u8..40,
                proptest::option::of(-5i64..5),
                proptest::option::of(-3.0f64..3.0),
                proptest::option::of("[a-d]{0,3}"),
                0i64..1000,
            ),
            0..2500,
        )
    }

    proptest! {
        #[test]
        fn chunks_and_partials_round_trip(
            rows in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..6), -50i64..50, proptest::option::of("[a-z]{0,5}")), 0..3000)
        ) {
            let layout = layout_min_max_str();
            let rows: Vec<(Vec<u8>, i64, Option<&str>)> =
                rows.iter().map(|(k, v, s)| (k.clone(), *v, s.as_deref())).collect();
            let t = table(&rows, &layout);
            let mut merged = PartialWindow { start: 10, end: 20, ..PartialWindow::default() };
            for c in 0..t.chunks() {
                let mut bytes = Vec::new();
                encode_chunk(&layout, &t, c, &mut bytes);
                let p = decode_groups(&layout, 10, 20, &bytes).expect("decode");
                for i in 0..p.len() {
                    merged.key_bytes.extend_from_slice(p.key(i));
                    merged.key_ends.push(merged.key_bytes.len() as u32);
                    merged.hashes.push(p.hashes[i]);
                    let mut slots = p.slots[i * 3..i * 3 + 3].to_vec();
                    if slots[2].b > 0 {
                        merged.strings.push(p.strings[slots[2].a as usize].clone());
                        slots[2].a = (merged.strings.len() - 1) as u64;
                    }
                    merged.slots.extend(slots);
                }
            }
            // The same groups as splitting the window for one owner (the exchange's own copy).
            let w = FiredWindow { start: 10, end: 20, groups: t, bytes: 0 };
            let expect = split_by_owner(&layout, &w, 1).pop().map(|(_, p)| p).unwrap_or_default();
            prop_assert_eq!(&merged.key_bytes, &expect.key_bytes);
            prop_assert_eq!(&merged.hashes, &expect.hashes);
            prop_assert_eq!(&merged.slots, &expect.slots);
            prop_assert_eq!(&merged.strings, &expect.strings);
            let mut again = Vec::new();
            encode_partial(&layout, &expect, &mut again);
            let p2 = decode_groups(&layout, 10, 20, &again).expect("decode partial");
            prop_assert_eq!(&p2.slots, &expect.slots);
            prop_assert_eq!(&p2.key_ends, &expect.key_ends);
        }

        /// Every kind of side state survives chunks and partials byte for byte.
        #[test]
        fn side_state_round_trips(rows in side_rows()) {
            let layout = side_layout();
            let stride = layout.stride();
            let t = side_table(&layout, &rows);
            let mut merged = PartialWindow { start: 10, end: 20, ..PartialWindow::default() };
            for c in 0..t.chunks() {
                let mut bytes = Vec::new();
                encode_chunk(&layout, &t, c, &mut bytes);
                let p = decode_groups(&layout, 10, 20, &bytes).expect("decode");
                for i in 0..p.len() {
                    merged.key_bytes.extend_from_slice(p.key(i));
                    merged.key_ends.push(merged.key_bytes.len() as u32);
                    merged.hashes.push(p.hashes[i]);
                    for (acc, s) in layout.accumulators.iter().zip(&p.slots[i * stride..(i + 1) * stride]) {
                        let mut s = *s;
                        if acc.uses_strings() && s.b > 0 {
                            merged.strings.push(p.strings[s.a as usize].clone());
                            s.a = (merged.strings.len() - 1) as u64;
                        }
                        merged.slots.push(s);
                    }
                }
            }
            let w = FiredWindow { start: 10, end: 20, groups: t, bytes: 0 };
            let expect = split_by_owner(&layout, &w, 1).pop().map(|(_, p)| p).unwrap_or_default();
            prop_assert_eq!(&merged.key_bytes, &expect.key_bytes);
            prop_assert_eq!(&merged.slots, &expect.slots);
            prop_assert_eq!(&merged.strings, &expect.strings);
            let mut again = Vec::new();
            encode_partial(&layout, &expect, &mut again);
            let p2 = decode_groups(&layout, 10, 20, &again).expect("decode partial");
            prop_assert_eq!(&p2.slots, &expect.slots);
            prop_assert_eq!(&p2.strings, &expect.strings);
            // The decoded state gives the same results.
            let n = w.groups.len() as u32;
            for (i, acc) in layout.accumulators.iter().enumerate() {
                let before = acc.finish(&w.groups.slots, stride, i, 0..n, &w.groups.strings).expect("finish");
                let after = acc.finish(&p2.slots, stride, i, 0..n, &p2.strings).expect("finish");
                prop_assert_eq!(&before, &after);
            }
        }

        #[test]
        fn damaged_side_state_is_an_error_not_a_panic(
            rows in proptest::collection::vec((0u8..3, proptest::option::of(-5i64..5), proptest::option::of(-3.0f64..3.0), proptest::option::of("[a-d]{0,3}"), 0i64..1000), 1..20),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let layout = side_layout();
            let t = side_table(&layout, &rows);
            let mut bytes = Vec::new();
            encode_chunk(&layout, &t, 0, &mut bytes);
            let mut flipped = bytes.clone();
            let i = at.index(flipped.len());
            flipped[i] ^= byte | 1;
            let _ = decode_groups(&layout, 0, 1, &flipped);
            let short = cut.index(bytes.len());
            prop_assert!(decode_groups(&layout, 0, 1, &bytes[..short]).is_err());
        }

        #[test]
        fn damaged_values_are_errors_not_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let layout = layout_min_max_str();
            let _ = decode_groups(&layout, 0, 1, &bytes);
        }
    }

    #[test]
    fn truncated_and_foreign_state_is_named() {
        let layout = layout_min_max_str();
        let t = table(&[(b"k".to_vec(), 3, Some("x"))], &layout);
        let mut bytes = Vec::new();
        encode_chunk(&layout, &t, 0, &mut bytes);
        let e = decode_groups(&layout, 0, 1, &bytes[..bytes.len() - 1]).expect_err("short");
        assert!(e.to_string().contains("ends early"), "{e}");
        bytes[0] = 7;
        let e = decode_groups(&layout, 0, 1, &bytes).expect_err("stride");
        assert!(e.to_string().contains("another query"), "{e}");
    }

    #[test]
    fn keys_round_trip() {
        for k in [
            StateKey::Window {
                kind: KIND_LOCAL,
                start: -5,
                end: 7,
                chunk: 3,
            },
            StateKey::Window {
                kind: KIND_FINAL,
                start: i64::MIN,
                end: i64::MAX,
                chunk: 0,
            },
            StateKey::Inflight {
                epoch: 9,
                seq: 2,
                start: -1,
                end: 4,
            },
        ] {
            assert_eq!(StateKey::decode(&k.encode()).expect("key"), k);
        }
        assert!(StateKey::decode(b"Xabc").is_err());
    }

    #[test]
    fn a_pending_chunk_is_saved_as_it_was_at_the_cut() {
        let layout = layout_min_max_str();
        let rows: Vec<(Vec<u8>, i64, Option<&str>)> = (0..2500)
            .map(|i| (format!("k{i}").into_bytes(), i as i64, None))
            .collect();
        let t = table(&rows, &layout);
        let mut w = crate::window_operator::FiredWindow {
            start: 0,
            end: 10,
            groups: t,
            bytes: 0,
        };
        w.groups.mark_all_dirty();
        assert_eq!(w.groups.begin_snapshot(), 3, "2500 groups are 3 chunks");
        assert!(!w.groups.is_dirty(), "change marks start over at the cut");
        // A change to group 5 after the cut: its chunk is saved first (copy before write).
        let mut saved = Vec::new();
        assert!(w.groups.take_pending(0));
        save_chunk(&layout, KIND_LOCAL, &mut w, 0, &mut saved);
        assert!(!w.groups.take_pending(0), "saved once");
        w.groups.slots[5 * 3].a = 999;
        w.groups.mark_dirty(5);
        // Groups created after the cut are not part of it, even in a pending chunk.
        let (g, new) = w.groups.find_or_insert(b"late", layout.hash_key(b"late"));
        assert!(new && g == 2500);
        save_all_pending(&layout, KIND_LOCAL, &mut w, &mut saved);
        assert!(!w.groups.has_pending());
        assert_eq!(w.groups.persisted_chunks, 3);
        let mut groups = 0;
        for (key, value) in &saved {
            let StateKey::Window { chunk, .. } = StateKey::decode(key).expect("key") else {
                panic!("a window key");
            };
            let p = decode_groups(&layout, 0, 10, value).expect("decode");
            groups += p.len();
            if chunk == 0 {
                assert_eq!(
                    p.slots[5 * 3].a,
                    1,
                    "the value at the cut, not the later change"
                );
            }
            assert!((0..p.len()).all(|i| p.key(i) != b"late"));
        }
        assert_eq!(groups, 2500);
        assert!(w.groups.is_dirty(), "the change is in the next checkpoint");
    }
}
