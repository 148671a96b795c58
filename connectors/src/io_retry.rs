//! System calls interrupted by a signal (EINTR, e.g. SIGTERM on its way to a clean stop) are
//! retried, not reported as I/O errors.

use std::io;

/// Runs `op` until it does not fail with `ErrorKind::Interrupted`.
pub fn retry_interrupted<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interruptions_are_retried_and_other_errors_returned() {
        let mut calls = 0;
        let r = retry_interrupted(|| {
            calls += 1;
            if calls < 3 {
                Err(io::Error::from(io::ErrorKind::Interrupted))
            } else {
                Ok(calls)
            }
        });
        assert_eq!(r.expect("third call"), 3);
        let e = retry_interrupted(|| -> io::Result<()> {
            Err(io::Error::from(io::ErrorKind::StorageFull))
        });
        assert_eq!(e.expect_err("kept").kind(), io::ErrorKind::StorageFull);
    }
}
