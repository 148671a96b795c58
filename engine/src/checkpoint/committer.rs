//! The committer: one per job, on the job's own thread (not a shard's core). It asks the
//! shards for a checkpoint every interval, takes their reports from the lock-free mailboxes,
//! and once every shard's part of an epoch is durable it commits the epoch: the job record
//! first (from then on recovery starts there), then the sink's epoch (exactly-once files
//! appear), then the source positions to the Kafka consumer group (monitoring only).
//!
//! Invariant: an epoch is requested only after the previous one is committed, so each shard
//! has at most one checkpoint between snapshot and durable, and every shard store keeps the
//! last committed checkpoint (the store retains two).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spillway_connectors::{OffsetCommitter, PartitionInfo, SinkFactory};

use crate::checkpoint::control::EpochControl;
use crate::checkpoint::job_marker::{generation_dir, JobMarker, Marker};
use crate::error::{EngineError, Result};

/// How often the committer looks at the mailboxes.
const POLL_INTERVAL: Duration = Duration::from_millis(1);

/// Copies each committed checkpoint somewhere other processes can read it (group mode's
/// state topic). Called after the job's record of the epoch is durable locally and before the
/// sink publishes the epoch: an epoch the publisher refuses is never visible downstream.
pub trait CheckpointPublisher: Send {
    /// Publishes checkpoint `epoch`, whose files are all under `dir`.
    fn publish(&mut self, dir: &Path, epoch: u64) -> Result<()>;
}

/// A publisher shared between a job's options and its committer.
pub type SharedPublisher = Arc<Mutex<dyn CheckpointPublisher>>;

/// What the committer needs.
pub struct Committer {
    pub dir: PathBuf,
    pub interval: Duration,
    pub final_timeout: Duration,
    pub marker: JobMarker,
    pub generation: u64,
    /// The generation recovery read, deleted once this run has committed a checkpoint.
    pub old_generation: Option<u64>,
    pub query: String,
    pub shards: usize,
    pub sink: Arc<dyn SinkFactory>,
    pub offsets: Option<Box<dyn OffsetCommitter>>,
    /// Live metrics (`spillway serve`).
    pub metrics: Option<Arc<crate::metrics::JobMetrics>>,
    /// Publishes each committed checkpoint before the sink's epoch (group mode).
    pub publisher: Option<SharedPublisher>,
}

/// What the job's checkpoints did.
#[derive(Debug, Clone)]
pub struct CheckpointSummary {
    /// The last committed epoch (0: none).
    pub committed: u64,
    /// Checkpoints committed by this run.
    pub checkpoints: u64,
    /// Bytes the shards wrote to their stores.
    pub bytes: u64,
    /// Request to commit, per checkpoint, microseconds.
    pub duration_us: hdrhistogram::Histogram<u64>,
    /// The longest hot-path stall of any shard, per checkpoint, microseconds.
    pub stall_us: hdrhistogram::Histogram<u64>,
    /// Whether the final checkpoint (on stop or end of input) was committed.
    pub final_committed: bool,
}

impl Committer {
    /// Runs until the final epoch is committed, the job fails (`failed()`), or every shard has
    /// exited (`running()` false).
    pub fn run(
        mut self,
        control: &EpochControl,
        failed: impl Fn() -> bool,
        running: impl Fn() -> bool,
    ) -> Result<CheckpointSummary> {
        let mut committed = self.marker.last().map_or(0, |m| m.epoch);
        let mut summary = CheckpointSummary {
            committed,
            checkpoints: 0,
            bytes: 0,
            duration_us: crate::emitter::latency_histogram(),
            stall_us: crate::emitter::latency_histogram(),
            final_committed: false,
        };
        let mut durable = vec![committed; self.shards];
        let mut offsets: BTreeMap<PartitionInfo, i64> = BTreeMap::new();
        let mut requested_at = Instant::now();
        let mut last_request = Instant::now();
        let mut stall_max = Duration::ZERO;
        let mut bytes_epoch = 0u64;
        loop {
            let exited = !running();
            if failed() {
                control.abort();
                return Ok(summary);
            }
            for (shard, mailbox) in control.done.iter().enumerate() {
                let Some(done) = mailbox.take() else { continue };
                match done.result {
                    Ok(fig) => {
                        durable[shard] = done.epoch;
                        summary.bytes += fig.bytes;
                        bytes_epoch += fig.bytes;
                        stall_max = stall_max.max(fig.stall);
                        offsets.extend(done.offsets);
                    }
                    Err(e) => {
                        control.abort();
                        return Err(EngineError::Data(format!(
                            "{e}; the last complete checkpoint ({committed}) is intact"
                        )));
                    }
                }
            }
            let requested = control.requested();
            if requested > committed && durable.iter().all(|&d| d >= requested) {
                self.commit(requested, &offsets)
                    .inspect_err(|_| control.abort())?;
                committed = requested;
                summary.committed = committed;
                summary.checkpoints += 1;
                summary
                    .duration_us
                    .saturating_record((requested_at.elapsed().as_micros() as u64).max(1));
                summary
                    .stall_us
                    .saturating_record((stall_max.as_micros() as u64).max(1));
                if let Some(m) = &self.metrics {
                    let c = &m.checkpoints;
                    c.committed_total.fetch_add(1, Ordering::Relaxed);
                    c.epoch.store(committed, Ordering::Relaxed);
                    c.duration_us
                        .store(requested_at.elapsed().as_micros() as u64, Ordering::Relaxed);
                    c.stall_us
                        .store(stall_max.as_micros() as u64, Ordering::Relaxed);
                    c.bytes_total.fetch_add(bytes_epoch, Ordering::Relaxed);
                }
                stall_max = Duration::ZERO;
                bytes_epoch = 0;
                if control.final_epoch() == Some(committed) {
                    summary.final_committed = true;
                    return Ok(summary);
                }
            }
            if exited {
                // Shards stopped without a final checkpoint (an error, reported by the job).
                return Ok(summary);
            }
            if control.requested() == committed && control.final_epoch().is_none() {
                let last = control.all_quiescent();
                if last || last_request.elapsed() >= self.interval {
                    control.request(committed + 1, last);
                    requested_at = Instant::now();
                    last_request = requested_at;
                }
            }
            if control.final_epoch().is_some() && requested_at.elapsed() > self.final_timeout {
                control.abort();
                return Err(EngineError::Internal(format!(
                    "the final checkpoint did not complete within {:?}; the last complete one \
                     ({committed}) is intact",
                    self.final_timeout
                )));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn commit(&mut self, epoch: u64, offsets: &BTreeMap<PartitionInfo, i64>) -> Result<()> {
        self.marker.commit(Marker {
            generation: self.generation,
            epoch,
            shards: self.shards,
            query: self.query.clone(),
        })?;
        crate::checkpoint::crash_points::reached("marker-committed");
        if let Some(old) = self.old_generation.take() {
            let dir = generation_dir(&self.dir, old);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!("cannot remove old checkpoints in {}: {e}", dir.display());
            }
        }
        if let Some(p) = &self.publisher {
            p.lock()
                .unwrap_or_else(|e| e.into_inner())
                .publish(&self.dir, epoch)?;
        }
        self.sink.commit_epochs(epoch, offsets)?;
        if let Some(c) = &self.offsets {
            let list: Vec<(PartitionInfo, i64)> =
                offsets.iter().map(|(p, o)| (p.clone(), *o)).collect();
            if let Err(e) = c.commit(&list) {
                // The checkpoint is the source of truth; the group's offsets are for tools.
                tracing::warn!("checkpoint {epoch}: cannot commit offsets to Kafka: {e}");
            }
        }
        Ok(())
    }
}
