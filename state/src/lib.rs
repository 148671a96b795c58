//! spillway's per-shard state store.
//!
//! Each shard keeps its checkpoints in its own directory: append-only segment files of
//! length-prefixed, CRC32C-checksummed records ([`record_codec`], [`segment`]) and a manifest
//! ([`manifest`]) naming the segments of every retained complete checkpoint, switched
//! atomically. A checkpoint is incremental (only what changed since the previous one); reading
//! one replays its segments. Writes and fsyncs go through a [`StorageBackend`]: io_uring, or
//! pwrite/fsync when the kernel refuses io_uring. The byte format is in docs/state-format.md.
//!
//! ```no_run
//! use spillway_state::{StateStore, StoreOptions};
//! # fn main() -> Result<(), spillway_state::StateError> {
//! let (mut store, recovered) = StateStore::open("/var/lib/spillway/state", 0, StoreOptions::default())?;
//! let next_id = recovered.as_ref().map_or(1, |c| c.id() + 1);
//! let mut writer = store.begin_checkpoint(next_id)?;
//! writer.put(b"AAPL|1700000000000", b"partial aggregate")?;
//! writer.delete(b"MSFT|1699999999000")?;
//! writer.put_meta("offsets", b"...")?;
//! let stats = writer.commit()?;
//! # let _ = stats; Ok(()) }
//! ```

mod appender;
pub mod backend;
pub mod checkpoint;
pub mod compaction;
pub mod error;
pub mod fault_backend;
mod live_index;
pub mod manifest;
pub mod options;
pub mod record_codec;
pub mod recovery;
pub mod segment;
pub mod store;
pub mod uring_backend;
pub mod writer;

#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod store_tests;
#[cfg(test)]
mod test_model;

pub use backend::{open_backend, BlockingBackend, FileId, StorageBackend, DISABLE_IO_URING_ENV};
pub use checkpoint::Checkpoint;
pub use compaction::CompactionStats;
pub use error::{StateError, StateResult};
pub use fault_backend::{FaultBackend, FaultPlan};
pub use options::{BackendChoice, StoreOptions};
pub use record_codec::{
    decode_record, encode_record, DecodeOutcome, RECORD_BYTES_MAX, RECORD_HEADER_BYTES,
};
pub use recovery::RecoveryReport;
pub use store::{shard_dir, StateStore};
pub use uring_backend::UringBackend;
pub use writer::{CheckpointStats, CheckpointWriter};
