//! The named limits of a job. Every queue, batch and state table is bounded by one of these;
//! hitting one is a clear error (or back-pressure, for queues), never unbounded growth.

use crate::error::{EngineError, Result};

/// Limits and intervals of one job (a tuning profile sets them; these are the defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Records taken from a source in one poll, and so rows in one decoded batch.
    pub batch_rows_max: usize,
    /// Bytes taken from a source in one poll.
    pub batch_bytes_max: usize,
    /// A record larger than this is skipped and counted.
    pub record_bytes_max: usize,
    /// Window state (group keys, accumulators) of one shard, in bytes.
    pub state_bytes_max: usize,
    /// Groups (distinct key and window pairs) held by one shard.
    pub state_groups_max: usize,
    /// Open panes of one shard (panes not yet sent; a TUMBLE window is one pane, a HOP or
    /// CUMULATE window is made of slide- or step-long panes).
    pub windows_open_max: usize,
    /// SESSION windows: sessions held by one shard's owner stage (open sessions, and the
    /// bounds of fired ones kept one gap long to recognise late data).
    pub sessions_open_max: usize,
    /// Messages in flight on one core-to-core queue.
    pub exchange_queue_max: usize,
    /// How long a shard sleeps when its source has nothing (microseconds); 0 only yields.
    pub poll_idle_us: u64,
    /// Default idle timeout of a partition when its table does not set
    /// `scan.watermark.idle-timeout`.
    pub idle_timeout_ms_default: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            batch_rows_max: 4096,
            batch_bytes_max: 4 << 20,
            record_bytes_max: 1 << 20,
            state_bytes_max: 2 << 30,
            state_groups_max: 20_000_000,
            windows_open_max: 100_000,
            sessions_open_max: 10_000_000,
            exchange_queue_max: 256,
            poll_idle_us: 100,
            idle_timeout_ms_default: 30_000,
        }
    }
}

impl Limits {
    /// Checks every value is in its range.
    pub fn validate(&self) -> Result<()> {
        fn check(name: &str, v: u64, lo: u64, hi: u64) -> Result<()> {
            if v < lo || v > hi {
                return Err(EngineError::Config(format!(
                    "{name} = {v} is out of range [{lo}, {hi}]"
                )));
            }
            Ok(())
        }
        check("batch_rows_max", self.batch_rows_max as u64, 1, 1 << 20)?;
        check(
            "batch_bytes_max",
            self.batch_bytes_max as u64,
            1 << 10,
            1 << 30,
        )?;
        check(
            "record_bytes_max",
            self.record_bytes_max as u64,
            64,
            1 << 30,
        )?;
        check(
            "state_bytes_max",
            self.state_bytes_max as u64,
            1 << 20,
            1 << 40,
        )?;
        check("state_groups_max", self.state_groups_max as u64, 1, 1 << 32)?;
        check("windows_open_max", self.windows_open_max as u64, 1, 1 << 24)?;
        check(
            "sessions_open_max",
            self.sessions_open_max as u64,
            1,
            1 << 30,
        )?;
        check(
            "exchange_queue_max",
            self.exchange_queue_max as u64,
            2,
            1 << 16,
        )?;
        check("poll_idle_us", self.poll_idle_us, 0, 1_000_000)?;
        check(
            "idle_timeout_ms_default",
            self.idle_timeout_ms_default as u64,
            1,
            86_400_000,
        )?;
        Ok(())
    }
}

/// Limits of the state of a join of two streams (see `crate::stream_join`), per shard.
/// Set with `SET 'join.state.rows-max' = 'N'` and `SET 'join.state.bytes-max' = '512 MiB'`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinLimits {
    /// Rows of both sides a shard holds (waiting for their window to close, or for their
    /// interval to pass).
    pub join_state_rows_max: usize,
    /// Bytes of those rows (Arrow buffers) a shard holds.
    pub join_state_bytes_max: usize,
}

impl Default for JoinLimits {
    fn default() -> Self {
        JoinLimits {
            join_state_rows_max: 10_000_000,
            join_state_bytes_max: 1 << 30,
        }
    }
}
