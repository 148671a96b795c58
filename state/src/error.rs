//! Errors of the state store. Each variant says who is at fault: the disk or the OS (`Io`), the
//! bytes on disk (`Corrupt`), an earlier failed fsync (`Poisoned`), a limit (`Limit`), the
//! options (`Config`) or the caller's use of the API (`Usage`, `Aborted`).

use std::path::PathBuf;

/// What went wrong in the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The operating system refused an operation on `path` (full disk, read-only directory,
    /// permissions, I/O error). The last complete checkpoint on disk is intact.
    #[error("state I/O failed: {op} {path}: {source}")]
    Io {
        /// What the store was doing (`create`, `write`, `fsync`, `rename`, ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The error of the operating system.
        #[source]
        source: std::io::Error,
    },
    /// The bytes on disk are not what the store wrote: a checksum, length, magic number or
    /// structure does not match inside a complete checkpoint.
    #[error("state file {path} is corrupt at byte offset {offset}: {reason}")]
    Corrupt {
        /// The file holding the bad bytes.
        path: PathBuf,
        /// Byte offset of the bad record or header in that file.
        offset: u64,
        /// What does not match.
        reason: String,
    },
    /// An fsync failed earlier: the kernel may have dropped dirty pages, so nothing written
    /// since the last complete checkpoint can be trusted. Reopen the store to recover.
    #[error("state store of shard {shard} refuses writes after a failed fsync ({cause}); reopen it to recover the last checkpoint")]
    Poisoned {
        /// The shard whose store is poisoned.
        shard: u32,
        /// The failure that poisoned it.
        cause: String,
    },
    /// A named limit was reached.
    #[error("state limit {limit} = {max} reached: {detail}")]
    Limit {
        /// Name of the limit (`state_bytes_max`, `RECORD_BYTES_MAX`, ...).
        limit: &'static str,
        /// Its value.
        max: u64,
        /// What went over it.
        detail: String,
    },
    /// A store option is invalid.
    #[error("invalid state store option {option}: {reason}")]
    Config {
        /// Name of the option.
        option: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// The caller used the API out of order (for example a checkpoint id that does not grow).
    #[error("state store misuse: {0}")]
    Usage(String),
    /// A checkpoint writer hit an error earlier; the checkpoint was abandoned and cannot commit.
    #[error("checkpoint {checkpoint_id} was abandoned after an earlier error: {reason}")]
    Aborted {
        /// The abandoned checkpoint.
        checkpoint_id: u64,
        /// The first error it met.
        reason: String,
    },
}

impl StateError {
    /// Wraps an I/O error with the operation and path it concerns.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StateError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Builds a `Corrupt` error.
    pub fn corrupt(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        StateError::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}

/// Result of state store operations.
pub type StateResult<T> = Result<T, StateError>;
