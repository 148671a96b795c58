//! spillway's benchmarks as a library: each runner generates trades, runs the trades query
//! (`examples/trades.sql`) through the engine, checks the result against an oracle computed
//! from the same trades, and only then reports its figures. The `spillway-bench` binary and
//! the smoke tests (`tests/smoke.rs`) call these runners.
//!
//! Map:
//! - `trades_data.rs`: generated trades as JSON lines and their oracle.
//! - `trades_query.rs`: the query with its tables pointed at a benchmark's connectors.
//! - `checking_sink.rs`: the sink that keeps and checks the result rows.
//! - `figures.rs`: throughput, stage split, medians, text and JSON.
//! - `job_runner.rs`: runs a job with a deadline (a stall fails the benchmark).
//! - `memory_bench.rs`, `kafka_bench.rs`, `file_bench.rs`: the three benchmarks.
//! - `nexmark_bench.rs`, `nexmark_check.rs`: the Nexmark queries of `examples/nexmark/`
//!   and their result check.
//! - `latency*.rs`, `sweep.rs`, `plot_svg.rs`: open-loop latency through Kafka, rate sweep.
//! - `checkpoint_bench.rs`: checkpoint duration, hot-path stall and recovery time per key count.
//! - `group_bench.rs`, `group_bench_data.rs`, `group_processes.rs`: several `spillway run`
//!   processes in group mode: throughput per process count and failover recovery time (checked).

pub mod broker_floor;
pub mod checking_sink;
pub mod checkpoint_bench;
pub mod delivery;
pub mod dimension_bench;
pub mod eo_bench;
pub mod error;
pub mod figures;
pub mod file_bench;
pub mod group_bench;
pub mod group_bench_data;
pub mod group_processes;
pub mod job_runner;
pub mod kafka_bench;
pub mod latency;
pub mod latency_cli;
pub mod latency_load;
pub mod latency_oracle;
pub mod latency_sink;
pub mod latency_stats;
pub mod memory_bench;
pub mod nexmark_bench;
pub mod nexmark_check;
pub mod nexmark_join_check;
pub mod plot_svg;
pub mod sweep;
pub mod trades_data;
pub mod trades_query;

pub use error::{BenchError, Result};
pub use figures::{BenchSummary, RunFigures};
pub use file_bench::{run_file, FileBenchOptions};
pub use kafka_bench::{run_kafka, KafkaBenchOptions};
pub use memory_bench::{run_memory, MemoryBenchOptions};
