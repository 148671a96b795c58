//! What the committer and the shards share while a job checkpoints: a few atomics and one
//! mailbox per shard. Nothing here takes a lock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use spillway_connectors::PartitionInfo;

use crate::checkpoint::mailbox::Mailbox;

/// What a shard's checkpoint writer reports once a checkpoint is durable (or failed).
#[derive(Debug, Clone)]
pub struct CheckpointDone {
    pub epoch: u64,
    /// Figures of the durable checkpoint, or why it failed.
    pub result: std::result::Result<CheckpointFigures, String>,
    /// The next offset to read of every partition of the shard, as of the checkpoint.
    pub offsets: Vec<(PartitionInfo, i64)>,
}

/// Figures of one shard's checkpoint.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckpointFigures {
    /// Bytes appended to the state store.
    pub bytes: u64,
    /// Records (puts, deletes, meta) written.
    pub records: u64,
    /// From the snapshot to the durable manifest.
    pub duration: Duration,
    /// How long the snapshot held the shard's hot path.
    pub stall: Duration,
}

/// Shared by the committer (writes `requested`, `final_epoch`, `abort`) and the shards.
pub struct EpochControl {
    /// The newest epoch the committer asked for; shards snapshot every epoch up to it.
    requested: AtomicU64,
    /// The epoch after which shards stop (0: none yet).
    final_epoch: AtomicU64,
    /// Set when the job fails: shards stop at once, without a final checkpoint.
    abort: AtomicBool,
    /// Per shard: it reads no more input (stopped, or finished with every window emitted).
    quiescent: Vec<AtomicBool>,
    /// Per shard: its checkpoint writer's reports.
    pub done: Vec<Mailbox<CheckpointDone>>,
}

impl EpochControl {
    pub fn new(shards: usize, committed: u64) -> Self {
        EpochControl {
            requested: AtomicU64::new(committed),
            final_epoch: AtomicU64::new(0),
            abort: AtomicBool::new(false),
            quiescent: (0..shards).map(|_| AtomicBool::new(false)).collect(),
            done: (0..shards).map(|_| Mailbox::new()).collect(),
        }
    }

    pub fn requested(&self) -> u64 {
        self.requested.load(Ordering::Acquire)
    }

    pub fn request(&self, epoch: u64, last: bool) {
        if last {
            self.final_epoch.store(epoch, Ordering::Release);
        }
        self.requested.store(epoch, Ordering::Release);
    }

    pub fn final_epoch(&self) -> Option<u64> {
        match self.final_epoch.load(Ordering::Acquire) {
            0 => None,
            e => Some(e),
        }
    }

    pub fn abort(&self) {
        self.abort.store(true, Ordering::Release);
    }

    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::Acquire)
    }

    pub fn set_quiescent(&self, shard: usize) {
        self.quiescent[shard].store(true, Ordering::Release);
    }

    pub fn all_quiescent(&self) -> bool {
        self.quiescent.iter().all(|q| q.load(Ordering::Acquire))
    }
}
