//! Processing time: the wall clock as a window's time.
//!
//! A table may declare one computed column `name AS PROCTIME()` (`ColumnType::ProcTime`,
//! Flink's `TIMESTAMP_LTZ(3) *PROCTIME*`). It is not read from the record: the decoder fills
//! it with [`now_ms`], one value per decoded batch. A window over that column
//! (`TUMBLE(TABLE bid, DESCRIPTOR(p_time), ...)`) runs on the same clock: the shard's
//! watermark is then the wall clock ([`WatermarkTracker::processing_time`]), advancing even
//! when no record arrives, and each shard broadcasts it through the ordinary watermark
//! messages, so a window fires once every shard's clock has passed its end.
//!
//! Invariant: there is one clock per process ([`wall_ms_at`]: a wall-clock reading taken
//! once, advanced by the monotonic clock), so it never moves back, and a row is stamped after
//! every watermark its shard (or any other) has already computed: a processing-time row is
//! never late.
//!
//! [`WatermarkTracker::processing_time`]: crate::watermark::WatermarkTracker::processing_time

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arrow::datatypes::Field;

use crate::catalog::TableDef;
use crate::error::{EngineError, Result};
use crate::plan::Pipeline;

/// The Arrow field metadata key that marks a processing-time column (value "true").
pub const PROCTIME_FIELD_METADATA_KEY: &str = "spillway.proctime";

/// The processing-time watermark moves in steps of this many milliseconds: a window fires at
/// most this long after the wall clock passed its end, and an idle shard broadcasts its
/// clock at most `1000 / PROCTIME_WATERMARK_STEP_MS` times a second.
pub const PROCTIME_WATERMARK_STEP_MS: i64 = 10;

/// `field` marked as a processing-time column (see [`PROCTIME_FIELD_METADATA_KEY`]).
pub fn mark_proctime_field(field: Field) -> Field {
    field.with_metadata(HashMap::from([(
        PROCTIME_FIELD_METADATA_KEY.to_string(),
        "true".to_string(),
    )]))
}

/// Whether `field` is a processing-time column (filled by the decoder, not read).
pub fn is_proctime_field(field: &Field) -> bool {
    field
        .metadata()
        .get(PROCTIME_FIELD_METADATA_KEY)
        .is_some_and(|v| v == "true")
}

/// The process's clock: a wall-clock reading (microseconds since the epoch) and the
/// monotonic instant it was taken at.
fn anchor() -> &'static (Instant, i64) {
    static ANCHOR: OnceLock<(Instant, i64)> = OnceLock::new();
    ANCHOR.get_or_init(|| {
        let wall_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        (Instant::now(), wall_us)
    })
}

/// The wall clock at `at`, milliseconds since the epoch: monotone in `at`, the same for
/// every shard of the process.
pub fn wall_ms_at(at: Instant) -> i64 {
    let (base, wall_us) = *anchor();
    let us = match at.checked_duration_since(base) {
        Some(after) => wall_us.saturating_add(i64::try_from(after.as_micros()).unwrap_or(i64::MAX)),
        None => wall_us.saturating_sub(i64::try_from((base - at).as_micros()).unwrap_or(i64::MAX)),
    };
    us.div_euclid(1_000)
}

/// The wall clock now, milliseconds since the epoch (what a processing-time column holds).
pub fn now_ms() -> i64 {
    wall_ms_at(Instant::now())
}

/// Whether `pipeline`'s window runs on the processing-time column of its source `table`.
pub fn windows_on_proctime(pipeline: &Pipeline, table: &TableDef) -> bool {
    let Some(proctime) = table.proctime_column() else {
        return false;
    };
    pipeline.stream_join.is_none()
        && pipeline
            .aggregation
            .as_ref()
            .and_then(|a| a.window)
            .is_some_and(|w| w.time_column == proctime)
}

/// Refuses what does not apply to processing-time windows: the lateness options (a
/// processing-time row is never late). Ok for every other pipeline.
///
/// Checkpoints need nothing more: open windows are panes like event-time ones, restored
/// (onto any shard count) and fired once the restarted shards' clocks pass their end; the
/// replayed records get new processing times.
pub fn check_pipeline(pipeline: &Pipeline, table: &TableDef) -> Result<()> {
    if !windows_on_proctime(pipeline, table) {
        return Ok(());
    }
    if pipeline.late.allowed_lateness_ms > 0 || pipeline.late.late_sink.is_some() {
        return Err(EngineError::Config(format!(
            "table '{}': 'allowed-lateness' and 'late.sink' do not apply to windows over its \
             processing-time column (a processing-time row is never late); remove them",
            table.name
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use arrow::datatypes::DataType;

    use super::*;

    #[test]
    fn clock_is_wall_time_and_monotone() {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let now = now_ms();
        assert!((now - wall).abs() < 1_000, "clock {now} vs wall {wall}");
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(1_500);
        assert_eq!(wall_ms_at(t1) - wall_ms_at(t0), 1_500);
        let earlier = t0.checked_sub(Duration::from_millis(20));
        if let Some(e) = earlier {
            assert!(wall_ms_at(e) <= wall_ms_at(t0) - 19);
        }
        let mut previous = now_ms();
        for _ in 0..1_000 {
            let next = now_ms();
            assert!(next >= previous);
            previous = next;
        }
    }

    #[test]
    fn field_marking() {
        let plain = Field::new(
            "p",
            DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None),
            false,
        );
        assert!(!is_proctime_field(&plain));
        let marked = mark_proctime_field(plain);
        assert!(is_proctime_field(&marked));
        assert_eq!(marked.name(), "p");
    }

    fn program(descriptor: &str, options: &str) -> crate::plan::Program {
        let sql = format!(
            "CREATE TABLE bid (bidder BIGINT, ts TIMESTAMP(3), p_time AS PROCTIME(),
               WATERMARK FOR ts AS ts) WITH ('connector' = 'nexmark'{options});
             CREATE TABLE out (bidder BIGINT, n BIGINT, ws TIMESTAMP(3), we TIMESTAMP(3),
               row_kind STRING) WITH ('connector' = 'blackhole');
             INSERT INTO out SELECT bidder, COUNT(*), window_start, window_end
             FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR({descriptor}), INTERVAL '1' SECOND))
             GROUP BY bidder, window_start, window_end;"
        );
        match crate::sql::parse_program(&sql) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn the_descriptor_chooses_the_clock() {
        let proctime = program("p_time", "");
        let table = proctime.table("bid").expect("bid");
        assert!(windows_on_proctime(&proctime.pipelines[0], table));
        assert!(check_pipeline(&proctime.pipelines[0], table).is_ok());
        let event_time = program("ts", "");
        let table = event_time.table("bid").expect("bid");
        assert!(!windows_on_proctime(&event_time.pipelines[0], table));
    }

    #[test]
    fn lateness_options_are_refused_for_processing_time_only() {
        let late = program("p_time", ", 'allowed-lateness' = '1 s'");
        let table = late.table("bid").expect("bid");
        match check_pipeline(&late.pipelines[0], table) {
            Err(EngineError::Config(message)) => {
                assert!(message.contains("never late"), "{message}")
            }
            other => panic!("expected a config error, got {other:?}"),
        }
        let event_time = program("ts", ", 'allowed-lateness' = '1 s'");
        let table = event_time.table("bid").expect("bid");
        assert!(check_pipeline(&event_time.pipelines[0], table).is_ok());
    }
}
