//! Joins of two streams: window joins and interval joins (planned by `sql/stream_join.rs`
//! into [`crate::plan::StreamJoin`]).
//!
//! ```text
//! every shard: left partitions  -> decode -> window bounds, side WHERE, projection -+
//!              right partitions -> decode -> window bounds, side WHERE, projection -+
//!                 -> late rows (by this shard's watermark) counted and dropped
//!                 -> split by the owner of the join key (hash of the key's row bytes)
//!                 -> ExchangeMsg::JoinRows to the owner (or straight to this shard's operator)
//! owner shard: StreamJoinOperator: per-side state keyed by join key
//!                 interval: probe the other side on arrival, emit matches; free rows once
//!                           the global watermark says no partner can still come
//!                 window:   buffer per window; at the global watermark >= window end,
//!                           join by key (DISTINCT per side when the side groups), free
//!              -> WHERE over the joined schema -> projection -> sink (the emitter)
//! ```
//!
//! The shard watermark is the minimum over both sides' partitions (each side its own
//! bound and idle timeout); the global watermark the minimum over every shard's, carried
//! by the exchange as for windows. On every ring a shard's rows precede the watermark that
//! passes them, so an owner that saw every shard pass a window's end has all its rows.
//!
//! Ranked joins (Nexmark q9: `R.ts BETWEEN L.ts AND L.until`, ROW_NUMBER per left row,
//! `rn <= N`): `top_state.rs` keeps each left row until the global watermark passes its
//! `until`, with its best N right rows, then emits them once (see `TopJoinState`).
//!
//! Limits: `JoinLimits` (rows and bytes of join state per shard); past either the job fails
//! naming the limit. Checkpoints: not supported yet; the job refuses a stream join with
//! checkpoints (see [`prepare`]).

pub mod keys;
pub mod operator;
pub mod routing;
pub mod shard_loop;
pub mod state;
pub mod top_state;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use spillway_connectors::{PartitionInfo, SourceFactory};

use crate::catalog::TableDef;
use crate::error::{EngineError, Result};
use crate::limits::JoinLimits;
use crate::plan::{Pipeline, Program};

pub use shard_loop::run_join_shard;

/// The setting that bounds the rows of join state per shard.
pub const ROWS_MAX_SETTING: &str = "join.state.rows-max";
/// The setting that bounds the bytes of join state per shard.
pub const BYTES_MAX_SETTING: &str = "join.state.bytes-max";

/// The second (right) input of a join of two streams, ready for the shards.
pub struct JoinInput {
    pub right_table: Arc<TableDef>,
    pub right_source: Arc<dyn SourceFactory>,
    /// Every partition of the right source, sorted.
    pub right_partitions: Vec<PartitionInfo>,
    pub right_idle_timeout: Duration,
    pub limits: JoinLimits,
}

impl JoinInput {
    /// The right partitions shard `shard` of `shards` reads.
    pub fn partitions_for(&self, shard: usize, shards: usize) -> Vec<PartitionInfo> {
        crate::job::assign_partitions(&self.right_partitions, shard, shards)
    }
}

/// The join limits from `SET 'join.state.rows-max'` / `SET 'join.state.bytes-max'`.
pub fn limits_from_settings(settings: &BTreeMap<String, String>) -> Result<JoinLimits> {
    let mut limits = JoinLimits::default();
    if let Some(v) = settings.get(ROWS_MAX_SETTING) {
        limits.join_state_rows_max = v.trim().parse().ok().filter(|n| *n > 0).ok_or_else(|| {
            EngineError::Config(format!(
                "'{ROWS_MAX_SETTING}' = '{v}' is not a positive number of rows"
            ))
        })?;
    }
    if let Some(v) = settings.get(BYTES_MAX_SETTING) {
        limits.join_state_bytes_max = parse_bytes(v).filter(|n| *n > 0).ok_or_else(|| {
            EngineError::Config(format!(
                "'{BYTES_MAX_SETTING}' = '{v}' is not a size (examples: '512 MiB', '2 GiB')"
            ))
        })?;
    }
    Ok(limits)
}

/// `'1000'`, `'64 KiB'`, `'512 MiB'`, `'2 GiB'`.
fn parse_bytes(text: &str) -> Option<usize> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "kib" | "kb" => 10,
        "mib" | "mb" => 20,
        "gib" | "gb" => 30,
        _ => return None,
    };
    number.checked_mul(1usize << shift)
}

/// The right input of `pipeline`'s stream join, if it has one. Refused: checkpoints (join
/// state is not in checkpoints yet), allowed lateness and a late-data sink.
pub fn prepare(
    program: &Program,
    pipeline: &Pipeline,
    kafka_properties: &BTreeMap<String, String>,
    shards: usize,
    record_bytes_max: usize,
    idle_timeout_ms_default: i64,
    checkpointing: bool,
) -> Result<Option<Arc<JoinInput>>> {
    let Some(join) = &pipeline.stream_join else {
        return Ok(None);
    };
    if checkpointing {
        let updating = if pipeline.aggregation.is_some() {
            " (nor that of the updating aggregate over its results)"
        } else {
            ""
        };
        return Err(EngineError::Config(format!(
            "not supported yet: checkpoints of a join of two streams ('{}' and '{}'): its state{updating} is not checkpointed; run it without checkpoint.dir",
            join.left.table, join.right.table
        )));
    }
    if pipeline.late.allowed_lateness_ms > 0 || pipeline.late.late_sink.is_some() {
        return Err(EngineError::Config(format!(
            "not supported yet: 'allowed-lateness' or 'late.sink' on a join of two streams ('{}' and '{}'); late join rows are counted and dropped",
            join.left.table, join.right.table
        )));
    }
    let table = program.table(&join.right.table).cloned().ok_or_else(|| {
        EngineError::Internal(format!(
            "table '{}' missing from the plan",
            join.right.table
        ))
    })?;
    let table = crate::connector_registry::with_kafka_properties(table, kafka_properties);
    let source = crate::connector_registry::source_factory(&table, shards, record_bytes_max)?;
    let mut partitions = source.discover()?;
    partitions.sort();
    let idle_ms =
        crate::connector_registry::idle_timeout_ms(&table)?.unwrap_or(idle_timeout_ms_default);
    Ok(Some(Arc::new(JoinInput {
        right_table: Arc::new(table),
        right_source: source,
        right_partitions: partitions,
        right_idle_timeout: Duration::from_millis(idle_ms as u64),
        limits: limits_from_settings(&program.settings)?,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_come_from_settings() {
        let mut s = BTreeMap::new();
        assert_eq!(limits_from_settings(&s).ok(), Some(JoinLimits::default()));
        s.insert(ROWS_MAX_SETTING.to_string(), "1000".to_string());
        s.insert(BYTES_MAX_SETTING.to_string(), "64 MiB".to_string());
        let l = limits_from_settings(&s).expect("valid");
        assert_eq!(l.join_state_rows_max, 1000);
        assert_eq!(l.join_state_bytes_max, 64 << 20);
        s.insert(BYTES_MAX_SETTING.to_string(), "lots".to_string());
        let e = limits_from_settings(&s).expect_err("invalid").to_string();
        assert!(e.contains(BYTES_MAX_SETTING), "{e}");
    }

    #[test]
    fn checkpoints_of_a_stream_join_are_refused() {
        let sql = "
            CREATE TABLE a (k BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
              WITH ('connector' = 'filesystem', 'path' = 'a.jsonl');
            CREATE TABLE b (k BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
              WITH ('connector' = 'filesystem', 'path' = 'b.jsonl');
            SELECT a.k FROM a JOIN b ON a.k = b.k AND a.ts BETWEEN b.ts AND b.ts;";
        let program = crate::sql::parse_program(sql).expect("plans");
        let pipeline = &program.pipelines[0];
        let e = match prepare(&program, pipeline, &BTreeMap::new(), 1, 1 << 20, 1000, true) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a stream join with checkpoints was prepared"),
        };
        assert!(e.contains("not supported yet: checkpoints"), "{e}");
    }
}
