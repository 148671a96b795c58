//! Runs one benchmark job with a deadline, so a job that stalls fails the benchmark with a
//! clear error instead of hanging it (and the test suite) forever.

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use spillway_engine::job::{run_prepared, JobOptions, JobReport, PreparedJob};

use crate::error::{BenchError, Result};

/// Every job may take at least this long before it counts as stalled.
pub const JOB_DEADLINE_S_MIN: u64 = 60;
/// Further time a job may take per 100 000 input events, seconds.
pub const JOB_DEADLINE_S_PER_100K_EVENTS: u64 = 1;
/// How long a job may take to stop once told to, before it is abandoned.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The deadline of a job over `events` input events.
pub fn job_deadline(events: u64) -> Duration {
    Duration::from_secs(JOB_DEADLINE_S_MIN + events / 100_000 * JOB_DEADLINE_S_PER_100K_EVENTS)
}

/// Runs `job` on its own thread; past `deadline` the job is told to stop (`opts.stop`) and
/// the benchmark fails. A job that does not even stop then is abandoned: its threads keep
/// running until the process exits.
pub fn run_with_deadline(
    job: PreparedJob,
    opts: &JobOptions,
    deadline: Duration,
) -> Result<JobReport> {
    let (tx, rx) = mpsc::sync_channel(1);
    let thread_opts = opts.clone();
    std::thread::Builder::new()
        .name("spillway-bench-job".into())
        .spawn(move || {
            let _ = tx.send(run_prepared(job, &thread_opts));
        })
        .map_err(|e| BenchError::io("cannot start the job thread", e))?;
    match rx.recv_timeout(deadline) {
        Ok(result) => return Ok(result?),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            return Err(BenchError::Stalled(
                "the job thread ended without a report".into(),
            ))
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {}
    }
    opts.stop.store(true, Ordering::Release);
    let stopped = match rx.recv_timeout(STOP_GRACE) {
        Ok(_) => "it stopped when told to",
        Err(_) => "it did not stop when told to either; its threads were abandoned",
    };
    Err(BenchError::Stalled(format!(
        "the job did not finish within {} s ({stopped}); see 'Known problems' in \
         docs/benchmarks.md",
        deadline.as_secs()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_grows_with_the_input() {
        assert_eq!(job_deadline(0), Duration::from_secs(JOB_DEADLINE_S_MIN));
        assert_eq!(
            job_deadline(10_000_000),
            Duration::from_secs(JOB_DEADLINE_S_MIN + 100)
        );
    }
}
