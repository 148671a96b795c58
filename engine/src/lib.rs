//! spillway: a thread-per-core streaming SQL engine over Kafka.
//!
//! See `docs/ARCHITECTURE.md` for the map of this crate.

pub mod accumulator;
pub mod catalog;
pub mod checkpoint;
pub mod connector_registry;
pub mod decode;
pub mod demo;
pub mod dimension;
pub mod emitter;
pub mod error;
pub mod exchange;
pub mod exchange_link;
pub mod explain;
pub mod expr;
pub mod final_aggregate;
pub mod group;
pub mod group_table;
pub mod job;
pub mod late_sink;
pub mod lateness;
pub mod limits;
pub mod metrics;
pub mod output_stage;
pub mod plan;
pub mod proctime;
pub mod profile;
pub mod row_kind;
pub mod serve;
pub mod serve_config;
pub mod serve_http;
pub mod serve_prometheus;
pub mod session;
pub mod shard;
pub mod sql;
pub mod stream_join;
pub mod summary;
pub mod tune;
pub mod updating_aggregate;
pub mod watermark;
pub mod window_assigner;
pub mod window_operator;

pub use error::{EngineError, Result};
