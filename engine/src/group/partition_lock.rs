//! One job instance per repartition partition at a time, whatever the group protocol does.
//!
//! The cooperative protocol releases a partition only after its owner revoked it (and the
//! revoke callback waits for the instance's final checkpoint), but that relies on every client
//! and broker playing by it, and a member the group expelled (a long pause) does not know it
//! yet. So an instance also holds an exclusive lock on `<checkpoint.dir>/partition-<r>.lock`
//! (`flock`, which the kernel, or an NFSv4 server's lease, releases when the process dies)
//! for as long as it runs; a new owner waits for it before it restores the partition's state.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::{EngineError, Result};

/// How often a waiting instance tries the lock again.
const LOCK_RETRY_MS: u64 = 20;
/// How often a waiting instance says it is still waiting.
const LOCK_WAIT_LOG_MS: u64 = 5_000;

/// Waits until this process holds the partition's lock (Some: held until dropped) or `stop`
/// is set (None).
pub fn acquire(path: &Path, stop: &AtomicBool) -> Result<Option<File>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| EngineError::io(format!("cannot create {}", dir.display()), e))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| EngineError::io(format!("cannot open the lock {}", path.display()), e))?;
    let started = Instant::now();
    let mut logged = started;
    loop {
        match file.try_lock() {
            Ok(()) => {
                if started.elapsed() >= Duration::from_millis(LOCK_RETRY_MS) {
                    tracing::info!(
                        "{}: the previous owner let go after {:?}",
                        path.display(),
                        started.elapsed()
                    );
                }
                return Ok(Some(file));
            }
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => {
                return Err(EngineError::io(
                    format!("cannot lock {}", path.display()),
                    e,
                ))
            }
        }
        if stop.load(Ordering::Acquire) {
            return Ok(None);
        }
        if logged.elapsed() >= Duration::from_millis(LOCK_WAIT_LOG_MS) {
            tracing::warn!(
                "{}: still held by another process after {:?} (its instance of this partition \
                 has not stopped yet)",
                path.display(),
                started.elapsed()
            );
            logged = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(LOCK_RETRY_MS));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_second_owner_waits_until_the_first_lets_go_or_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/partition-3.lock");
        let no_stop = AtomicBool::new(false);
        let first = acquire(&path, &no_stop).unwrap().expect("free lock");
        // Stopped while waiting: gives up without the lock.
        let stop = AtomicBool::new(true);
        assert!(acquire(&path, &stop).unwrap().is_none());
        // Waiting: gets it once the first owner drops it.
        let p = path.clone();
        let got = Arc::new(AtomicBool::new(false));
        let g = got.clone();
        let waiter = std::thread::spawn(move || {
            let lock = acquire(&p, &AtomicBool::new(false)).unwrap();
            g.store(true, Ordering::Release);
            lock.is_some()
        });
        std::thread::sleep(Duration::from_millis(150));
        assert!(!got.load(Ordering::Acquire), "the lock is held");
        drop(first);
        assert!(waiter.join().unwrap());
    }
}
