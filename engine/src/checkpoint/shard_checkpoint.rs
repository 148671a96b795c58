//! A shard's side of checkpoints: the snapshot on the shard's thread, and a writer thread that
//! owns the shard's state store and makes each checkpoint durable through it.
//!
//! A snapshot (Chandy-Lamport): when the committer asks for epoch `e`, or a peer's barrier of
//! `e` arrives first, the shard takes its cut: the chunks changed since the last checkpoint in
//! its open windows and its final stage become *pending*, and it records its watermark clocks
//! and source positions, ends its sink's epoch and sends a barrier to every peer. Pending
//! chunks are serialized as they were at the cut: a few per turn of the shard's loop, or just
//! before a batch, a merge or a firing would change or drop them (copy before write), so a
//! large state never holds the hot path for long. Partials that peers sent before their own
//! barrier and that arrive after the cut were in flight: the links record them, and they join
//! the checkpoint once every barrier is in. Only then does the writer thread get the
//! checkpoint: the hot path never waits for the disk. The stall is the cut plus the longest
//! serialization turn.
//!
//! Invariant: at most one checkpoint of a shard is between snapshot and durable; the
//! committer asks for the next epoch only after the last one is durable everywhere.

use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use spillway_connectors::{EpochPrepared, PartitionInfo, Source};
use spillway_state::{StateStore, StoreOptions};

use crate::checkpoint::chunk_codec::{
    encode_partial, save_chunk, StateKey, KIND_FINAL, KIND_LOCAL,
};
use crate::checkpoint::control::{CheckpointDone, CheckpointFigures, EpochControl};
use crate::emitter::Emitter;
use crate::error::{EngineError, Result};
use crate::exchange::PartialWindow;
use crate::exchange_link::Links;
use crate::watermark::WatermarkTracker;
use crate::window_operator::{AggregateLayout, FiredWindow, WindowOperator};

/// Meta blob name of a shard's checkpoint.
pub const META_NAME: &str = "shard";

/// The clock and position of one partition in a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PartitionMeta {
    pub topic: String,
    pub partition: i32,
    /// The next offset to read.
    pub offset: i64,
    /// The largest event time seen (watermark clock), i64::MIN before any.
    pub ts_max: i64,
}

/// What a shard's checkpoint says besides its window state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardMeta {
    pub epoch: u64,
    pub generation: u64,
    pub shard: usize,
    pub shards: usize,
    /// Fingerprint of the query that wrote it.
    pub query: String,
    /// The final stage had emitted every window ending at or before this.
    pub fired_up_to: i64,
    pub partitions: Vec<PartitionMeta>,
}

/// What a shard needs to checkpoint (built by the job, one per shard).
pub struct ShardCheckpointSetup {
    pub control: Arc<EpochControl>,
    /// The directory of this run's generation (the shard's store is a sub-directory).
    pub generation_dir: PathBuf,
    pub generation: u64,
    pub store: StoreOptions,
    /// The last committed epoch (0 when starting fresh).
    pub committed: u64,
    pub query: String,
    /// Window state restored from the checkpoint, for the keys this shard owns.
    pub restored: Vec<PartialWindow>,
    /// Emitted-up-to watermarks of the shards of the restored run (empty when fresh).
    pub floors: Vec<i64>,
    /// Restored watermark clock of each of this shard's partitions.
    pub ts_max: Vec<i64>,
}

/// A checkpoint handed to the writer thread.
struct WriteJob {
    epoch: u64,
    puts: Vec<(Vec<u8>, Vec<u8>)>,
    deletes: Vec<Vec<u8>>,
    meta: Vec<u8>,
    offsets: Vec<(PartitionInfo, i64)>,
    /// The sink's end of this epoch (its fsync may still be under way).
    sink: EpochPrepared,
    stall: Duration,
    started: Instant,
}

/// A snapshot taken, waiting for its chunks to be serialized and for the peers' barriers.
struct Pending {
    job: WriteJob,
    /// Chunks of the cut may still wait to be serialized.
    chunks_left: bool,
}

/// Pending chunks a shard serializes per turn of its loop while a snapshot is in progress (a
/// chunk is 1024 groups, about 25 us): the hot path is held about 0.2 ms at a time.
pub const SNAPSHOT_CHUNKS_PER_TURN: usize = 8;

/// The checkpoint side of one shard.
pub struct ShardCheckpointer {
    shard: usize,
    shards: usize,
    generation: u64,
    query: String,
    control: Arc<EpochControl>,
    epoch: u64,
    pending: Option<Pending>,
    writer: Option<(SyncSender<WriteJob>, JoinHandle<()>)>,
    /// In-flight partial keys of the last checkpoint (deleted by the next one).
    inflight_keys: Vec<Vec<u8>>,
    /// SESSION windows: the session chunk keys of the last checkpoint (deleted by the next
    /// one, which writes the whole stage again) and the next chunk number.
    session_keys: Vec<Vec<u8>>,
    session_seq: u32,
    /// Microseconds each snapshot held the hot path.
    pub stall_us: hdrhistogram::Histogram<u64>,
    pub checkpoints: u64,
}

impl ShardCheckpointer {
    /// Opens the shard's store in this run's generation and starts its writer thread. A store
    /// that cannot be created (read-only directory, full disk) is an error here, before the
    /// shard reads anything.
    pub fn start(shard: usize, shards: usize, setup: &ShardCheckpointSetup) -> Result<Self> {
        let (store, _) =
            StateStore::open(&setup.generation_dir, shard as u32, setup.store.clone())?;
        let (tx, rx) = sync_channel::<WriteJob>(1);
        let control = setup.control.clone();
        let handle = std::thread::Builder::new()
            .name(format!("spillway-ckpt-{shard}"))
            .spawn(move || write_loop(shard, store, rx, control))
            .map_err(|e| {
                EngineError::io(
                    format!("cannot start the checkpoint writer of shard {shard}"),
                    e,
                )
            })?;
        Ok(ShardCheckpointer {
            shard,
            shards,
            generation: setup.generation,
            query: setup.query.clone(),
            control: setup.control.clone(),
            epoch: setup.committed,
            pending: None,
            writer: Some((tx, handle)),
            inflight_keys: Vec::new(),
            session_keys: Vec::new(),
            session_seq: 0,
            stall_us: crate::emitter::latency_histogram(),
            checkpoints: 0,
        })
    }

    /// The last epoch this shard snapshotted.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether the shard must snapshot now: the committer asked for a newer epoch, or a peer
    /// already took it (its ring is paused until we do).
    pub fn due(&self, links: &Links) -> bool {
        self.pending.is_none() && (self.control.requested() > self.epoch || links.wants_snapshot())
    }

    /// Whether the job failed elsewhere: stop without a final checkpoint.
    pub fn aborted(&self) -> bool {
        self.control.aborted()
    }

    /// Whether this shard's part of the final checkpoint is taken and complete.
    pub fn final_complete(&self) -> bool {
        self.pending.is_none() && self.control.final_epoch().is_some_and(|f| self.epoch >= f)
    }

    /// Says this shard reads no more input.
    pub fn set_quiescent(&self) {
        self.control.set_quiescent(self.shard);
    }

    /// Takes the snapshot of the next epoch (see the module doc). The caller then starts the
    /// epoch on its links and sends the barriers.
    pub fn snapshot(
        &mut self,
        window_op: Option<&mut WindowOperator>,
        emitter: &mut Emitter,
        tracker: &WatermarkTracker,
        source: &dyn Source,
    ) -> Result<u64> {
        let started = Instant::now();
        let epoch = self.epoch + 1;
        let mut puts = Vec::new();
        let mut deletes = std::mem::take(&mut self.inflight_keys);
        // The cut: changed chunks become pending; they are serialized a few at a time by
        // `poll`, or before their next change (copy before write).
        let mut pending = 0;
        if let Some(op) = window_op {
            delete_removed(KIND_LOCAL, op.take_removed(), &mut deletes);
            pending += op
                .windows_mut()
                .map(|w| w.groups.begin_snapshot())
                .sum::<usize>();
        }
        let mut fired_up_to = i64::MIN;
        if let Some((_, fin)) = emitter.final_stage_mut() {
            fired_up_to = fin.global_watermark();
            delete_removed(KIND_FINAL, fin.take_removed(), &mut deletes);
            pending += fin
                .windows_mut()
                .map(|w| w.groups.begin_snapshot())
                .sum::<usize>();
        }
        if let Some(stage) = emitter.sessions_mut() {
            // SESSION windows: the whole owner stage at the cut (see `session_chunks.rs`).
            fired_up_to = stage.global_watermark();
            deletes.append(&mut self.session_keys);
            self.session_seq = 0;
            crate::checkpoint::session_chunks::save_sessions(
                stage,
                epoch,
                &mut self.session_seq,
                &mut puts,
                &mut self.session_keys,
            );
        }
        let partitions: Vec<PartitionMeta> = source
            .partitions()
            .iter()
            .enumerate()
            .map(|(i, p)| PartitionMeta {
                topic: p.topic.clone(),
                partition: p.partition,
                offset: source.position(i as u32),
                ts_max: tracker.ts_max(i),
            })
            .collect();
        let offsets = partitions
            .iter()
            .map(|p| {
                (
                    PartitionInfo {
                        topic: p.topic.clone(),
                        partition: p.partition,
                    },
                    p.offset,
                )
            })
            .collect();
        let meta = ShardMeta {
            epoch,
            generation: self.generation,
            shard: self.shard,
            shards: self.shards,
            query: self.query.clone(),
            fired_up_to,
            partitions,
        };
        let meta = serde_json::to_vec(&meta)
            .map_err(|e| EngineError::Internal(format!("checkpoint meta: {e}")))?;
        let sink = emitter.prepare_epoch(epoch)?;
        let stall = started.elapsed();
        crate::checkpoint::crash_points::reached("snapshot-taken");
        self.epoch = epoch;
        self.pending = Some(Pending {
            chunks_left: pending > 0,
            job: WriteJob {
                epoch,
                puts,
                deletes,
                meta,
                offsets,
                sink,
                stall,
                started,
            },
        });
        Ok(epoch)
    }

    /// Serializes a few more pending chunks of the snapshot in progress and collects those
    /// the operators saved before changing them; once all are serialized and every peer's
    /// barrier is in, adds the recorded in-flight partials and hands the checkpoint to the
    /// writer thread.
    pub fn poll(
        &mut self,
        links: &mut Links,
        window_op: Option<&mut WindowOperator>,
        emitter: &mut Emitter,
    ) -> Result<()> {
        let Some(pending) = &mut self.pending else {
            return Ok(());
        };
        let started = Instant::now();
        let mut budget = SNAPSHOT_CHUNKS_PER_TURN;
        let mut left = false;
        let mut final_layout = None;
        if let Some(op) = window_op {
            pending.job.puts.extend(op.take_saved());
            if pending.chunks_left {
                let layout = op.layout.clone();
                left |= save_some(
                    &layout,
                    KIND_LOCAL,
                    op.windows_mut(),
                    &mut budget,
                    &mut pending.job.puts,
                );
            }
        }
        if let Some((layout, fin)) = emitter.final_stage_mut() {
            let layout = layout.clone();
            pending.job.puts.extend(fin.take_saved());
            if pending.chunks_left {
                left |= save_some(
                    &layout,
                    KIND_FINAL,
                    fin.windows_mut(),
                    &mut budget,
                    &mut pending.job.puts,
                );
            }
            final_layout = Some(layout);
        }
        pending.chunks_left = left;
        pending.job.stall = pending.job.stall.max(started.elapsed());
        if left || !links.recording_complete() {
            return Ok(());
        }
        let Some(Pending { mut job, .. }) = self.pending.take() else {
            return Ok(());
        };
        self.stall_us
            .saturating_record((job.stall.as_micros() as u64).max(1));
        let recorded = links.take_recorded();
        if let Some(stage) = emitter.sessions_mut() {
            crate::checkpoint::session_chunks::save_inflight(
                stage.layout(),
                &recorded,
                job.epoch,
                &mut self.session_seq,
                &mut job.puts,
                &mut self.session_keys,
            );
        }
        if let Some(layout) = &final_layout {
            for (seq, p) in recorded.iter().enumerate() {
                let key = StateKey::Inflight {
                    epoch: job.epoch,
                    seq: seq as u32,
                    start: p.start,
                    end: p.end,
                }
                .encode();
                let mut value = Vec::new();
                encode_partial(layout, p, &mut value);
                self.inflight_keys.push(key.clone());
                job.puts.push((key, value));
            }
        }
        let Some((tx, _)) = &self.writer else {
            return Err(EngineError::Internal(
                "checkpoint writer already stopped".into(),
            ));
        };
        match tx.try_send(job) {
            Ok(()) => {
                self.checkpoints += 1;
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(EngineError::Internal(
                "a checkpoint was handed to the writer while the previous one was not durable"
                    .into(),
            )),
            Err(TrySendError::Disconnected(_)) => Err(EngineError::Internal(format!(
                "the checkpoint writer of shard {} stopped (its error went to the committer)",
                self.shard
            ))),
        }
    }

    /// Stops the writer thread after it has written what it was given.
    pub fn finish(&mut self) {
        if let Some((tx, handle)) = self.writer.take() {
            drop(tx);
            let _ = handle.join();
        }
    }
}

impl Drop for ShardCheckpointer {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Deletes the chunks of windows that went since the last checkpoint.
fn delete_removed(kind: u8, removed: Vec<(i64, i64, u32)>, deletes: &mut Vec<Vec<u8>>) {
    for (start, end, n) in removed {
        for chunk in 0..n {
            deletes.push(
                StateKey::Window {
                    kind,
                    start,
                    end,
                    chunk,
                }
                .encode(),
            );
        }
    }
}

/// Serializes up to `budget` pending chunks of `windows`; returns whether some are left.
fn save_some<'a>(
    layout: &AggregateLayout,
    kind: u8,
    windows: impl Iterator<Item = &'a mut FiredWindow>,
    budget: &mut usize,
    puts: &mut Vec<(Vec<u8>, Vec<u8>)>,
) -> bool {
    for w in windows {
        while w.groups.has_pending() {
            if *budget == 0 {
                return true;
            }
            if let Some(chunk) = w.groups.next_pending() {
                save_chunk(layout, kind, w, chunk, puts);
                *budget -= 1;
            }
        }
    }
    false
}

/// The writer thread: writes each checkpoint through the state store, reports it.
fn write_loop(
    shard: usize,
    mut store: StateStore,
    rx: Receiver<WriteJob>,
    control: Arc<EpochControl>,
) {
    while let Ok(mut job) = rx.recv() {
        let sink = std::mem::replace(&mut job.sink, EpochPrepared::done());
        let result = write_one(&mut store, &job).and_then(|stats| {
            sink.wait()
                .map(|()| stats)
                .map_err(|e| format!("checkpoint {}: the sink's epoch: {e}", job.epoch))
        });
        let failed = result.is_err();
        if !failed {
            crate::checkpoint::crash_points::reached("state-durable");
        }
        control.done[shard].publish(CheckpointDone {
            epoch: job.epoch,
            result: result.map(|(bytes, records)| CheckpointFigures {
                bytes,
                records,
                duration: job.started.elapsed(),
                stall: job.stall,
            }),
            offsets: job.offsets,
        });
        if failed {
            // The committer fails the job; a store that failed refuses more writes anyway.
            return;
        }
    }
}

fn write_one(store: &mut StateStore, job: &WriteJob) -> std::result::Result<(u64, u64), String> {
    let shard = store.shard();
    let mut run = || -> spillway_state::StateResult<(u64, u64)> {
        let mut w = store.begin_checkpoint(job.epoch)?;
        for k in &job.deletes {
            w.delete(k)?;
        }
        for (k, v) in &job.puts {
            w.put(k, v)?;
        }
        w.put_meta(META_NAME, &job.meta)?;
        let stats = w.commit()?;
        if let Some(e) = &stats.compaction_error {
            tracing::warn!("checkpoint {}: compaction failed: {e}", job.epoch);
        }
        Ok((stats.bytes, stats.records))
    };
    run().map_err(|e| format!("checkpoint {} of shard {shard}: {e}", job.epoch))
}
