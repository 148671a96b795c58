//! SESSION windows (gap): an event at `ts` opens `[ts, ts + gap)`, and windows of one key
//! that overlap or touch merge (Flink's `TimeWindow.intersects`); a session is emitted once,
//! with `window_start` = its first event and `window_end` = its last event + gap.
//!
//! ```text
//! shard (any)                                     owner of the key (hash of the key)
//!   batch -> mini-sessions: events of one key      SessionStage: per key, open sessions
//!            in the batch, split where the gap       sorted by start; a mini-session merges
//!            is exceeded (mini_sessions.rs)   ──►    with every session it meets
//!            sent at once, before the shard's        (Accumulator::merge); a session fires
//!            next watermark (FIFO rings)             when the global watermark exceeds its
//!                                                    end (session_stage.rs, session_output.rs)
//! ```
//!
//! A shard cannot know when its local part of a session is complete relative to the other
//! shards, so it keeps nothing: everything it read before a watermark reaches the owner before
//! that watermark, and the owner, which sees every shard's part, decides.
//!
//! Checkpoints hold the owner stage as session groups (`checkpoint/session_chunks.rs`);
//! recovery merges them on the keys' owners, on any number of shards.
//!
//! Allowed lateness (`'allowed-lateness'`): see `session_stage.rs`; too-late rows go to the
//! late-data sink (`'late.sink'`) from the partial stage. Not supported yet (refused by
//! [`check_pipeline`]): allowed lateness together with checkpoints.

pub mod mini_sessions;
pub mod session_output;
pub mod session_route;
pub mod session_stage;

pub use mini_sessions::{MiniSessionStats, MiniSessions, SESSION_PARTIAL_GROUPS_MAX};
pub use session_output::sessions_to_batches;
pub use session_stage::{FiredSession, Session, SessionStage};

use crate::error::{EngineError, Result};
use crate::plan::Pipeline;

/// Whether the pipeline aggregates over SESSION windows.
pub fn is_session(pipeline: &Pipeline) -> bool {
    pipeline
        .aggregation
        .as_ref()
        .and_then(|a| a.window)
        .is_some_and(|w| w.kind.session_gap_ms().is_some())
}

/// Refuses what SESSION windows do not support yet: allowed lateness together with
/// checkpoints (`checkpointing`: the job checkpoints; fired sessions kept for the lateness
/// are not in checkpoints yet). Ok for every other pipeline.
pub fn check_pipeline(pipeline: &Pipeline, checkpointing: bool) -> Result<()> {
    if is_session(pipeline) && checkpointing && pipeline.late.allowed_lateness_ms > 0 {
        return Err(EngineError::Config(format!(
            "SESSION windows with 'allowed-lateness' on table '{}' and checkpoints are not \
             supported yet: remove 'allowed-lateness', or run without checkpoints",
            pipeline.source
        )));
    }
    Ok(())
}

/// The operator lines of `spillway explain` for a SESSION aggregation.
pub fn explain_lines(window: &str, keys: &[String], aggs: &[String], shards: usize) -> Vec<String> {
    let mut lines = vec![format!(
        "mini-sessions ({window}) by [{}]: {}: each batch's events of one key, split where \
         the gap is exceeded, pre-aggregated; no state kept between batches",
        keys.join(", "),
        aggs.join(", ")
    )];
    if shards > 1 {
        lines.push(format!(
            "exchange: after each batch its mini-sessions go to the shard owning each key (hash \
             of the key mod {shards}), before the shard's next watermark, over bounded \
             core-to-core queues"
        ));
    }
    lines.push(
        "session merge: per key, sessions sorted by start; a mini-session merges with every \
         session it overlaps or touches; a session fires once every shard's watermark has \
         passed its end (session_stage.rs)"
            .into(),
    );
    lines
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Helpers for the session tests: a layout from SQL over `t (k, v, ts)` and batches.
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::SchemaRef;

    use crate::window_operator::AggregateLayout;

    /// The layout of `select` (a query over table `t`) and `t`'s schema.
    pub fn layout_of(select: &str) -> (Arc<AggregateLayout>, SchemaRef) {
        let sql = format!(
            "CREATE TABLE t (k STRING, v BIGINT, ts TIMESTAMP(3), \
             WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
             WITH ('connector' = 'filesystem', 'path' = 'unused.jsonl', 'format' = 'json');\n{select};"
        );
        let program = crate::sql::parse_program(&sql).expect("plans");
        let schema = program.table("t").expect("table t").schema();
        let aggregation = program.pipelines[0]
            .aggregation
            .as_ref()
            .expect("aggregation");
        (
            Arc::new(AggregateLayout::new(aggregation).expect("layout")),
            schema,
        )
    }

    /// A batch of `(k, v, ts)` rows.
    pub fn batch(schema: &SchemaRef, rows: &[(&str, i64, i64)]) -> RecordBatch {
        let k = StringArray::from_iter_values(rows.iter().map(|r| r.0));
        let v = Int64Array::from_iter_values(rows.iter().map(|r| r.1));
        let ts = TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.2));
        RecordBatch::try_new(schema.clone(), vec![Arc::new(k), Arc::new(v), Arc::new(ts)])
            .expect("batch")
    }
}
