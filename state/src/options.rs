//! Options of a shard's state store, each a named limit or interval with a default.

use crate::error::{StateError, StateResult};

/// Which I/O backend the store writes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    /// io_uring, falling back to pwrite/fsync (with a warning) if the kernel refuses it or
    /// `SPILLWAY_DISABLE_IO_URING=1` is set.
    Auto,
    /// io_uring only: opening fails if the ring cannot be created.
    IoUring,
    /// Ordinary pwrite/fsync.
    Blocking,
}

/// Options of [`crate::StateStore`].
#[derive(Debug, Clone, PartialEq)]
pub struct StoreOptions {
    /// Complete checkpoints kept on disk (the newest ones); at least 1. Default 2.
    pub checkpoints_retained_max: usize,
    /// Writes in flight at once through io_uring. Default 32.
    pub io_depth_max: u32,
    /// Bytes buffered before one write is submitted. Default 1 MiB.
    pub write_chunk_bytes: usize,
    /// A checkpoint starts a new segment file once the current one has this many bytes.
    /// Default 64 MiB.
    pub segment_bytes_max: u64,
    /// Live state (framed bytes of all live keys and meta blobs) above which a put fails with
    /// `StateError::Limit`. Default 4 GiB.
    pub state_bytes_max: u64,
    /// After a commit, the latest checkpoint's segments are compacted when this fraction of
    /// their bytes is dead (overwritten or deleted). Default 0.5.
    pub compaction_dead_fraction_min: f64,
    /// Compaction is skipped while the latest checkpoint's segments hold fewer bytes than this.
    /// Default 4 MiB.
    pub compaction_bytes_min: u64,
    /// I/O backend.
    pub backend: BackendChoice,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            checkpoints_retained_max: 2,
            io_depth_max: 32,
            write_chunk_bytes: 1 << 20,
            segment_bytes_max: 64 << 20,
            state_bytes_max: 4 << 30,
            compaction_dead_fraction_min: 0.5,
            compaction_bytes_min: 4 << 20,
            backend: BackendChoice::Auto,
        }
    }
}

impl StoreOptions {
    /// Checks that every option is usable.
    pub fn validate(&self) -> StateResult<()> {
        let bad = |option, reason: &str| {
            Err(StateError::Config {
                option,
                reason: reason.to_string(),
            })
        };
        if self.checkpoints_retained_max == 0 {
            return bad("checkpoints_retained_max", "must be at least 1");
        }
        if self.io_depth_max == 0 || self.io_depth_max > 4096 {
            return bad("io_depth_max", "must be between 1 and 4096");
        }
        if self.write_chunk_bytes < 4096 || self.write_chunk_bytes > (256 << 20) {
            return bad("write_chunk_bytes", "must be between 4 KiB and 256 MiB");
        }
        if self.segment_bytes_max < 4096 {
            return bad("segment_bytes_max", "must be at least 4 KiB");
        }
        if !(0.0..=1.0).contains(&self.compaction_dead_fraction_min) {
            return bad(
                "compaction_dead_fraction_min",
                "must be between 0.0 and 1.0",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_the_option() {
        assert!(StoreOptions::default().validate().is_ok());
        let opts = StoreOptions {
            checkpoints_retained_max: 0,
            ..StoreOptions::default()
        };
        let err = opts.validate().unwrap_err().to_string();
        assert!(err.contains("checkpoints_retained_max"), "{err}");
        let opts = StoreOptions {
            compaction_dead_fraction_min: 1.5,
            ..StoreOptions::default()
        };
        assert!(matches!(
            opts.validate(),
            Err(StateError::Config {
                option: "compaction_dead_fraction_min",
                ..
            })
        ));
    }
}
