//! SESSION windows in checkpoints (`crate::session`). The owner stage's state is a bag of
//! sessions that merge in any order, so a checkpoint holds it as session groups: at the cut,
//! every open session (with its accumulators) and every kept bound of a fired session, in
//! chunks of [`SESSION_CHUNK`] groups, plus the mini-sessions in flight at the cut. The whole
//! stage is written at each cut (not incrementally, unlike pane windows) and the previous
//! checkpoint's session chunks are deleted. Recovery routes each group to its key's owner on
//! any number of shards, which merges them (`SessionStage::restore`).
//!
//! Key: `StateKey::Window { kind: KIND_SESSION, start: epoch, end: 0, chunk: sequence }`.
//! Value: group count n (u32 LE), n times (start i64 LE, end i64 LE, fired u8), then the
//! groups as `encode_partial` writes them (fired bounds have empty slots).

use crate::checkpoint::chunk_codec::{decode_groups, encode_partial, StateKey, KIND_SESSION};
use crate::error::{EngineError, Result};
use crate::exchange::PartialWindow;
use crate::session::SessionStage;
use crate::window_operator::AggregateLayout;

/// Session groups per checkpoint chunk.
pub const SESSION_CHUNK: usize = 1024;

/// The state key of session chunk `seq` of checkpoint `epoch`.
pub fn session_key(epoch: u64, seq: u32) -> Vec<u8> {
    StateKey::Window {
        kind: KIND_SESSION,
        start: epoch as i64,
        end: 0,
        chunk: seq,
    }
    .encode()
}

/// Appends the session groups of `p` (its `session_bounds`, `session_fired`) to `out`.
pub fn encode_session_groups(layout: &AggregateLayout, p: &PartialWindow, out: &mut Vec<u8>) {
    debug_assert_eq!(p.session_bounds.len(), p.len());
    out.extend_from_slice(&(p.len() as u32).to_le_bytes());
    for i in 0..p.len() {
        let [start, end] = p.session_bounds[i];
        out.extend_from_slice(&start.to_le_bytes());
        out.extend_from_slice(&end.to_le_bytes());
        out.push(u8::from(p.session_fired.get(i).copied().unwrap_or(false)));
    }
    encode_partial(layout, p, out);
}

/// Reads what [`encode_session_groups`] wrote; damaged bytes are an error.
pub fn decode_session_groups(layout: &AggregateLayout, bytes: &[u8]) -> Result<PartialWindow> {
    let damaged = |what: &str| EngineError::Data(format!("session state record: {what}"));
    let n = bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| damaged("ends before its group count"))? as usize;
    let bounds_end = n
        .checked_mul(17)
        .and_then(|b| b.checked_add(4))
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| damaged(&format!("claims {n} groups in {} bytes", bytes.len())))?;
    let mut bounds = Vec::with_capacity(n);
    let mut fired = Vec::with_capacity(n);
    for rec in bytes[4..bounds_end].chunks_exact(17) {
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&rec[at..at + 8]);
            i64::from_le_bytes(w)
        };
        bounds.push([word(0), word(8)]);
        fired.push(match rec[16] {
            0 => false,
            1 => true,
            other => return Err(damaged(&format!("fired flag {other}"))),
        });
    }
    let mut p = decode_groups(layout, 0, 0, &bytes[bounds_end..])?;
    if p.len() != n {
        return Err(damaged(&format!("{n} bounds but {} groups", p.len())));
    }
    p.session_bounds = bounds;
    p.session_fired = fired;
    Ok(p)
}

/// Appends the puts of the whole owner stage (chunks `*seq..`) for checkpoint `epoch`, and
/// their keys to `keys` (the next checkpoint deletes them).
pub fn save_sessions(
    stage: &SessionStage,
    epoch: u64,
    seq: &mut u32,
    puts: &mut Vec<(Vec<u8>, Vec<u8>)>,
    keys: &mut Vec<Vec<u8>>,
) {
    let layout = stage.layout().clone();
    stage.export(SESSION_CHUNK, |p| {
        put_chunk(&layout, &p, epoch, seq, puts, keys)
    });
}

/// Appends the mini-sessions in flight at checkpoint `epoch` (recorded by the links).
pub fn save_inflight(
    layout: &AggregateLayout,
    recorded: &[PartialWindow],
    epoch: u64,
    seq: &mut u32,
    puts: &mut Vec<(Vec<u8>, Vec<u8>)>,
    keys: &mut Vec<Vec<u8>>,
) {
    for p in recorded.iter().filter(|p| !p.is_empty()) {
        put_chunk(layout, p, epoch, seq, puts, keys);
    }
}

fn put_chunk(
    layout: &AggregateLayout,
    p: &PartialWindow,
    epoch: u64,
    seq: &mut u32,
    puts: &mut Vec<(Vec<u8>, Vec<u8>)>,
    keys: &mut Vec<Vec<u8>>,
) {
    let key = session_key(epoch, *seq);
    *seq += 1;
    let mut value = Vec::new();
    encode_session_groups(layout, p, &mut value);
    keys.push(key.clone());
    puts.push((key, value));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::test_support::layout_of;
    use proptest::prelude::*;

    fn layout() -> std::sync::Arc<AggregateLayout> {
        layout_of("SELECT k, COUNT(*), MAX(k) FROM t GROUP BY k, SESSION(ts, INTERVAL '1' SECOND)")
            .0
    }

    proptest! {
        #[test]
        fn session_groups_round_trip(
            groups in proptest::collection::vec(
                ("[a-z]{0,6}", any::<i64>(), any::<i64>(), any::<bool>(), 0u64..100, proptest::option::of("[a-z]{1,5}")),
                0..20,
            ),
        ) {
            let layout = layout();
            let mut p = PartialWindow::default();
            for (k, s, e, fired, n, text) in &groups {
                p.key_bytes.extend_from_slice(k.as_bytes());
                p.key_ends.push(p.key_bytes.len() as u32);
                p.hashes.push(layout.hash_key(k.as_bytes()));
                p.session_bounds.push([*s, *e]);
                p.session_fired.push(*fired);
                p.slots.push(crate::accumulator::Slot { a: *n, b: 0 });
                match text {
                    Some(t) => {
                        p.strings.push(t.as_bytes().into());
                        p.slots.push(crate::accumulator::Slot { a: (p.strings.len() - 1) as u64, b: 1 });
                    }
                    None => p.slots.push(crate::accumulator::Slot::EMPTY),
                }
            }
            let mut bytes = Vec::new();
            encode_session_groups(&layout, &p, &mut bytes);
            let back = decode_session_groups(&layout, &bytes).expect("decodes");
            prop_assert_eq!(&back.key_bytes, &p.key_bytes);
            prop_assert_eq!(&back.session_bounds, &p.session_bounds);
            prop_assert_eq!(&back.session_fired, &p.session_fired);
            prop_assert_eq!(&back.slots, &p.slots);
            prop_assert_eq!(&back.strings, &p.strings);
            // Any truncation is an error, never a panic.
            for cut in 0..bytes.len() {
                prop_assert!(decode_session_groups(&layout, &bytes[..cut]).is_err());
            }
        }
    }
}
