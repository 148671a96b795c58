//! Shared harness of spillway's end-to-end and oracle tests (the test files are in `tests/`).
//!
//! - `oracle.rs`: an independent batch computation of the test queries (serde_json, chrono,
//!   plain Rust closures; none of the engine's code); its aggregates in `oracle_aggregate.rs`.
//! - `compare.rs`: row-for-row comparison with a float tolerance and a readable diff.
//! - `data.rs`: generated trades as JSON lines, to a file or to a topic's partitions.
//! - `kafka.rs`: topic creation, a checked producer, metadata look-ups (mock cluster or tansu).
//! - `tansu.rs`: a real `tansu` broker process (installed with cargo if missing).
//! - `job.rs`: SQL table helpers and running a program through the engine's library API.

pub mod compare;
pub mod data;
pub mod group_run;
pub mod job;
pub mod kafka;
pub mod lateness_oracle;
pub mod nexmark_oracle;
pub mod nexmark_oracle_joins;
pub mod nexmark_oracle_q4_q9;
pub mod nexmark_oracle_topn;
pub mod nexmark_runs;
pub mod oracle;
pub mod oracle_aggregate;
pub mod process;
pub mod session_oracle;
pub mod tansu;
pub mod trades_stats;
