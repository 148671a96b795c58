//! The bytes of window state in a checkpoint: keys naming a chunk of a window's groups, and
//! values holding those groups (key, hash, accumulator slots, strings).
//!
//! Key: `kind` (1 byte: `L` a shard's open window, `F` a window in the final stage, `C` a
//! partial in flight between shards when the checkpoint was taken), then for `L`/`F` the
//! window start and end (i64 big-endian) and the chunk number (u32 big-endian); for `C` the
//! epoch (u64), a sequence number (u32), and the window start and end.
//!
//! Value: `stride` (u32 LE), group count (u32 LE), then per group: key length (u32 LE), key
//! bytes, hash (u64 LE), `stride` slots of two u64 LE, then for each string-valued slot that
//! holds a value, its length (u32 LE) and bytes. Every length is checked when decoding:
//! damaged state is an error, never a panic.

use crate::accumulator::Slot;
use crate::error::{EngineError, Result};
use crate::exchange::PartialWindow;
use crate::group_table::{GroupTable, GROUP_CHUNK};
use crate::window_operator::AggregateLayout;

pub const KIND_LOCAL: u8 = b'L';
pub const KIND_FINAL: u8 = b'F';
pub const KIND_INFLIGHT: u8 = b'C';

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
            Some(&kind @ (KIND_LOCAL | KIND_FINAL)) if key.len() == 21 => Ok(StateKey::Window {
                kind,
                start: i64::from_be_bytes(be8(&key[1..9])),
                end: i64::from_be_bytes(be8(&key[9..17])),
                chunk: u32::from_be_bytes(be4(&key[17..21])),
            }),
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

fn put_group(
    layout: &AggregateLayout,
    key: &[u8],
    hash: u64,
    slots: &[Slot],
    string: impl Fn(u64) -> Vec<u8>,
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
            let text = string(s.a);
            put_u32(out, text.len());
            out.extend_from_slice(&text);
        }
    }
}

/// Appends the groups of chunk `chunk` of `table` to `out`.
pub fn encode_chunk(layout: &AggregateLayout, table: &GroupTable, chunk: u32, out: &mut Vec<u8>) {
    let first = chunk * GROUP_CHUNK;
    let last = (first + GROUP_CHUNK).min(table.len() as u32);
    put_u32(out, layout.stride());
    put_u32(out, last.saturating_sub(first) as usize);
    for g in first..last {
        put_group(
            layout,
            table.key(g),
            table.hash(g),
            table.group_slots(g),
            |i| table.strings[i as usize].to_vec(),
            out,
        );
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
            |s| p.strings[s as usize].to_vec(),
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
                p.strings.push(r.take(len)?.into());
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
            StateKey::Window { kind: KIND_LOCAL, start: -5, end: 7, chunk: 3 },
            StateKey::Window { kind: KIND_FINAL, start: i64::MIN, end: i64::MAX, chunk: 0 },
            StateKey::Inflight { epoch: 9, seq: 2, start: -1, end: 4 },
        ] {
            assert_eq!(StateKey::decode(&k.encode()).expect("key"), k);
        }
        assert!(StateKey::decode(b"Xabc").is_err());
    }
}
