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

use crate::checkpoint::chunk_codec::{decode_groups, StateKey};
use crate::checkpoint::job_marker::{generation_dir, Marker};
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
                EngineError::Data(format!("checkpoint {} of shard {shard} has no meta", marker.epoch))
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
            let (start, end) = match StateKey::decode(key)? {
                StateKey::Window { start, end, .. } => (start, end),
                StateKey::Inflight { epoch, start, end, .. } if epoch == marker.epoch => (start, end),
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
