//! Checkpoints of a job: every shard's window state, watermarks and source offsets, written
//! incrementally to its own state store, made durable together, then published (sink epochs,
//! Kafka offsets) by one committer. See docs/ARCHITECTURE.md, "Checkpoints".

pub mod chunk_codec;
pub mod committer;
pub mod config;
pub mod control;
pub use spillway_connectors::crash_points;
pub mod job_marker;
pub mod mailbox;
pub mod restore;
pub mod session_chunks;
pub mod shard_checkpoint;

#[cfg(test)]
mod barrier_tests;
#[cfg(test)]
mod test_layout;

pub use config::{CheckpointConfig, CheckpointTuning};
