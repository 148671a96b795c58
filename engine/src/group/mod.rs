//! Group mode: several spillway processes share one job through Kafka consumer groups (see
//! "Several processes" in docs/ARCHITECTURE.md).
//!
//! - `forwarder.rs`, stage A: reads the source partitions the group `G` gives this process and
//!   sends each row to the repartition-topic partition of its GROUP BY key, with time marks.
//! - `membership.rs`: the process's member of group `G-aggregate` on the repartition topic; its
//!   assignments start and stop the job instances.
//! - `partition_lock.rs`: the lock file that keeps a partition's instance single, whatever
//!   the group protocol does.
//! - `runner.rs`, stage B: one job instance per repartition partition owned (one shard, state
//!   and sink files under that partition's own directory). State follows its partition through
//!   the compacted state topic (`connectors/src/state_topic.rs`: restored before the instance
//!   starts, published after each checkpoint) or a shared checkpoint directory.

pub mod forwarder;
pub mod membership;
pub mod partition_lock;
pub mod plan;
pub mod runner;

pub use plan::{plan_group, GroupPlan};
pub use runner::run_group;
