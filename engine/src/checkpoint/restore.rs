//! Recovery: reads the last complete checkpoint of every shard of the run that wrote it and
//! hands its state to the shards of this run, whatever their number.
//!
//! All window state (open windows, final stages, partials in flight) is a set of partial
//! aggregates per window and key; each goes to the final stage of the shard that owns the key
//! now. Watermark clocks and offsets are per partition, so they follow the partition to
//! whichever shard reads it now.

use std::collections::BTreeMap;
use std::path::Path;

use spillway_connectors::PartitionInfo;
use spillway_state::{StateStore, StoreOptions};

use crate::checkpoint::chunk_codec::{decode_groups, StateKey, KIND_SESSION};
use crate::checkpoint::job_marker::{generation_dir, Marker};
use crate::checkpoint::session_chunks::decode_session_groups;
use crate::checkpoint::shard_checkpoint::{ShardMeta, META_NAME};
use crate::error::{EngineError, Result};
use crate::exchange::PartialWindow;
use crate::window_operator::AggregateLayout;

/// The state of a complete checkpoint, gathered from all its shards.
#[derive(Debug, Default)]
pub struct Restored {
    /// Per partition: the next offset to read and the largest event time seen.
    pub partitions: BTreeMap<PartitionInfo, (i64, i64)>,
    /// Every partial aggregate of the checkpoint.
    pub partials: Vec<PartialWindow>,
    /// Per shard of the old run: the watermark up to which it had emitted windows.
    pub floors: Vec<i64>,
    /// Groups restored (for the log).
    pub groups: usize,
}

/// Reads checkpoint `marker.epoch` of every shard of generation `marker.generation`.
pub fn load(
    dir: &Path,
    marker: &Marker,
    layout: Option<&AggregateLayout>,
    options: &StoreOptions,
) -> Result<Restored> {
    let gen_dir = generation_dir(dir, marker.generation);
    let mut out = Restored {
        floors: vec![i64::MIN; marker.shards],
        ..Restored::default()
    };
    for shard in 0..marker.shards {
        let (store, _) = StateStore::open(&gen_dir, shard as u32, options.clone())?;
        if !store.checkpoint_ids().contains(&marker.epoch) {
            return Err(EngineError::Data(format!(
                "the job record says checkpoint {} is complete, but shard {shard} in {} does \
                 not hold it (it holds {:?}); the checkpoint directory was changed by hand",
                marker.epoch,
                gen_dir.display(),
                store.checkpoint_ids()
            )));
        }
        let cp = store.load_checkpoint(marker.epoch)?;
        let meta: ShardMeta = cp
            .meta(META_NAME)
            .ok_or_else(|| {
                EngineError::Data(format!(
                    "checkpoint {} of shard {shard} has no meta",
                    marker.epoch
                ))
            })
            .and_then(|b| {
                serde_json::from_slice(b).map_err(|e| {
                    EngineError::Data(format!(
                        "checkpoint {} of shard {shard}: unreadable meta: {e}",
                        marker.epoch
                    ))
                })
            })?;
        if meta.query != marker.query {
            return Err(EngineError::Data(format!(
                "checkpoint {} of shard {shard} was written by another query",
                marker.epoch
            )));
        }
        out.floors[shard] = meta.fired_up_to;
        for p in meta.partitions {
            out.partitions.insert(
                PartitionInfo {
                    topic: p.topic,
                    partition: p.partition,
                },
                (p.offset, p.ts_max),
            );
        }
        for (key, value) in cp.iter() {
            let state_key = StateKey::decode(key)?;
            let (start, end) = match state_key {
                // SESSION state of this checkpoint (older chunks were deleted).
                StateKey::Window {
                    kind: KIND_SESSION,
                    start: epoch,
                    ..
                } => {
                    if epoch != marker.epoch as i64 {
                        continue;
                    }
                    let Some(layout) = layout else {
                        return Err(EngineError::Data(format!(
                            "checkpoint {} holds session state but the query has no window",
                            marker.epoch
                        )));
                    };
                    let p = decode_session_groups(layout, value).map_err(|e| {
                        EngineError::Data(format!(
                            "checkpoint {} of shard {shard} in {}: {e}",
                            marker.epoch,
                            gen_dir.display()
                        ))
                    })?;
                    out.groups += p.len();
                    out.partials.push(p);
                    continue;
                }
                StateKey::Window { start, end, .. } => (start, end),
                StateKey::Inflight {
                    epoch, start, end, ..
                } if epoch == marker.epoch => (start, end),
                // In flight at an older checkpoint: already part of the state it led to.
                StateKey::Inflight { .. } => continue,
            };
            let Some(layout) = layout else {
                return Err(EngineError::Data(format!(
                    "checkpoint {} holds window state but the query has no window",
                    marker.epoch
                )));
            };
            let p = decode_groups(layout, start, end, value).map_err(|e| {
                EngineError::Data(format!(
                    "checkpoint {} of shard {shard} in {}: {e}",
                    marker.epoch,
                    gen_dir.display()
                ))
            })?;
            out.groups += p.len();
            out.partials.push(p);
        }
    }
    Ok(out)
}

/// Splits restored partials by the shard (of `shards`) that owns each key.
pub fn split_for_shards(
    layout: &AggregateLayout,
    partials: Vec<PartialWindow>,
    shards: usize,
) -> Vec<Vec<PartialWindow>> {
    let stride = layout.stride();
    let mut out: Vec<Vec<PartialWindow>> = (0..shards).map(|_| Vec::new()).collect();
    for p in partials {
        let mut parts: Vec<PartialWindow> = (0..shards)
            .map(|_| PartialWindow {
                start: p.start,
                end: p.end,
                ..PartialWindow::default()
            })
            .collect();
        for i in 0..p.len() {
            let to = &mut parts[AggregateLayout::owner(p.hashes[i], shards)];
            to.key_bytes.extend_from_slice(p.key(i));
            to.key_ends.push(to.key_bytes.len() as u32);
            to.hashes.push(p.hashes[i]);
            if let Some(&b) = p.session_bounds.get(i) {
                to.session_bounds.push(b);
            }
            if let Some(&f) = p.session_fired.get(i) {
                to.session_fired.push(f);
            }
            for (a, acc) in layout.accumulators.iter().enumerate() {
                let mut s = p.slots[i * stride + a];
                if acc.uses_strings() && s.b > 0 {
                    to.strings.push(p.strings[s.a as usize].clone());
                    s.a = (to.strings.len() - 1) as u64;
                }
                to.slots.push(s);
            }
        }
        for (shard, part) in parts.into_iter().enumerate() {
            if !part.is_empty() {
                out[shard].push(part);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accumulator::Slot;
    use crate::checkpoint::chunk_codec::{encode_partial, KIND_FINAL, KIND_LOCAL};
    use crate::checkpoint::shard_checkpoint::PartitionMeta;
    use crate::checkpoint::test_layout;

    fn partial(layout: &AggregateLayout, start: i64, keys: &[&str]) -> PartialWindow {
        let mut p = PartialWindow {
            start,
            end: start + 1000,
            ..PartialWindow::default()
        };
        for k in keys {
            p.key_bytes.extend_from_slice(k.as_bytes());
            p.key_ends.push(p.key_bytes.len() as u32);
            p.hashes.push(layout.hash_key(k.as_bytes()));
            p.strings.push(k.as_bytes().into());
            p.slots.extend([
                Slot { a: 2, b: 0 },
                Slot { a: 7, b: 1 },
                Slot {
                    a: (p.strings.len() - 1) as u64,
                    b: 1,
                },
            ]);
        }
        p
    }

    fn write_shard(
        dir: &Path,
        shard: usize,
        epoch: u64,
        entries: &[(StateKey, PartialWindow)],
        query: &str,
    ) {
        let layout = test_layout::layout();
        let (mut store, _) =
            StateStore::open(dir, shard as u32, StoreOptions::default()).expect("store");
        let mut w = store.begin_checkpoint(epoch).expect("begin");
        for (k, p) in entries {
            let mut v = Vec::new();
            encode_partial(&layout, p, &mut v);
            w.put(&k.encode(), &v).expect("put");
        }
        let meta = ShardMeta {
            epoch,
            generation: 1,
            shard,
            shards: 2,
            query: query.into(),
            fired_up_to: 100 * shard as i64,
            partitions: vec![PartitionMeta {
                topic: "t".into(),
                partition: shard as i32,
                offset: 40 + shard as i64,
                ts_max: 9,
            }],
        };
        w.put_meta(META_NAME, &serde_json::to_vec(&meta).expect("json"))
            .expect("meta");
        w.commit().expect("commit");
    }

    #[test]
    fn every_kind_of_state_is_gathered_and_split_by_new_owner() {
        let layout = test_layout::layout();
        let root = tempfile::tempdir().expect("dir");
        let gen = generation_dir(root.path(), 1);
        let win = |kind, start| StateKey::Window {
            kind,
            start,
            end: start + 1000,
            chunk: 0,
        };
        write_shard(
            &gen,
            0,
            5,
            &[
                (win(KIND_LOCAL, 0), partial(&layout, 0, &["a", "b"])),
                (
                    StateKey::Inflight {
                        epoch: 5,
                        seq: 0,
                        start: 1000,
                        end: 2000,
                    },
                    partial(&layout, 1000, &["c"]),
                ),
                // In flight at an older checkpoint: already merged into the state it led to.
                (
                    StateKey::Inflight {
                        epoch: 4,
                        seq: 0,
                        start: 1000,
                        end: 2000,
                    },
                    partial(&layout, 1000, &["stale"]),
                ),
            ],
            "q",
        );
        write_shard(
            &gen,
            1,
            5,
            &[(win(KIND_FINAL, 0), partial(&layout, 0, &["a", "d", "e"]))],
            "q",
        );
        let marker = Marker {
            generation: 1,
            epoch: 5,
            shards: 2,
            query: "q".into(),
        };
        let r = load(
            root.path(),
            &marker,
            Some(&layout),
            &StoreOptions::default(),
        )
        .expect("load");
        assert_eq!(r.groups, 6);
        assert_eq!(r.floors, vec![0, 100]);
        assert_eq!(r.partitions.len(), 2);
        assert_eq!(
            r.partitions[&PartitionInfo {
                topic: "t".into(),
                partition: 1
            }],
            (41, 9)
        );
        let split = split_for_shards(&layout, r.partials, 3);
        let mut keys = Vec::new();
        for (shard, parts) in split.iter().enumerate() {
            for p in parts {
                for i in 0..p.len() {
                    assert_eq!(
                        AggregateLayout::owner(p.hashes[i], 3),
                        shard,
                        "goes to its owner"
                    );
                    let s = p.slots[i * 3 + 2];
                    assert_eq!(
                        p.strings[s.a as usize].as_text(),
                        Some(p.key(i)),
                        "its string goes with it"
                    );
                    keys.push(String::from_utf8(p.key(i).to_vec()).expect("utf8"));
                }
            }
        }
        keys.sort();
        assert_eq!(keys, vec!["a", "a", "b", "c", "d", "e"]);
    }

    #[test]
    fn another_query_or_a_missing_checkpoint_is_a_clear_error() {
        let layout = test_layout::layout();
        let root = tempfile::tempdir().expect("dir");
        let gen = generation_dir(root.path(), 1);
        write_shard(&gen, 0, 5, &[], "other");
        write_shard(&gen, 1, 5, &[], "q");
        let marker = Marker {
            generation: 1,
            epoch: 5,
            shards: 2,
            query: "q".into(),
        };
        let e = load(
            root.path(),
            &marker,
            Some(&layout),
            &StoreOptions::default(),
        )
        .expect_err("query");
        assert!(e.to_string().contains("another query"), "{e}");
        let marker = Marker { epoch: 6, ..marker };
        let e = load(
            root.path(),
            &marker,
            Some(&layout),
            &StoreOptions::default(),
        )
        .expect_err("missing");
        assert!(e.to_string().contains("does not hold it"), "{e}");
    }
}
