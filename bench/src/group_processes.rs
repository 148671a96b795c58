//! The `spillway run` processes of one group-mode benchmark run (`spillway-bench group`):
//! started with their own logs, stopped with SIGTERM (each must exit 0) or SIGKILL, watched
//! (one that exits by itself fails the run), and the job instances each one runs, counted
//! from the group runner's log lines. Those still running are SIGKILLed when dropped.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{BenchError, Result};

/// A SIGTERMed process must exit within this.
pub const STOP_TIMEOUT_MS: u64 = 30_000;
/// The group must settle within this.
pub const SETTLE_TIMEOUT_MS: u64 = 120_000;
/// The settled condition must hold this long (no further rebalance).
pub const SETTLE_STABLE_MS: u64 = 1_500;
/// How often the waits look at the output and the processes.
pub const POLL_INTERVAL_MS: u64 = 20;
/// Bytes of a process log quoted in an error.
const LOG_TAIL_BYTES_MAX: usize = 3_000;
/// The processes' log filter: warnings and the runner's instance starts and stops.
const PROCESS_LOG_FILTER: &str = "warn,spillway_engine::group=info";
/// Set to give the processes another log filter (`RUST_LOG` syntax), e.g. to see a
/// restore's phases: `warn,spillway_engine::group=info,spillway_connectors::state_topic=debug`.
pub const PROCESS_LOG_ENV: &str = "SPILLWAY_BENCH_PROCESS_LOG";
/// The runner's log line of a job instance started (`partition <r>: job instance started`).
const LOG_INSTANCE_STARTED: &str = ": job instance started";
/// The runner's log line of a job instance stopped.
const LOG_INSTANCE_STOPPED: &str = ": job instance stopped";

/// The error with every process's log tail appended.
pub fn with_logs(e: BenchError, procs: &Processes) -> BenchError {
    match e {
        BenchError::WrongResult(m) => {
            BenchError::WrongResult(format!("{m}\n{}", procs.log_tails()))
        }
        BenchError::Stalled(m) => BenchError::Stalled(format!("{m}\n{}", procs.log_tails())),
        other => other,
    }
}

/// One `spillway run` process.
struct Member {
    name: String,
    log: PathBuf,
    child: Child,
    exit: Option<ExitStatus>,
    /// Stopped by the benchmark (SIGTERM or SIGKILL); otherwise it must keep running.
    stopped: bool,
}

/// The processes of one run; those still running are SIGKILLed when it is dropped.
pub struct Processes {
    binary: PathBuf,
    sql: PathBuf,
    logs: PathBuf,
    members: Vec<Member>,
}

impl Processes {
    /// Processes running `binary` on `sql`, with their logs in `<scratch>/logs`.
    pub fn new(binary: &Path, sql: &Path, scratch: &Path) -> Self {
        Processes {
            binary: binary.to_path_buf(),
            sql: sql.to_path_buf(),
            logs: scratch.join("logs"),
            members: Vec::new(),
        }
    }

    /// Starts `spillway run SQL --shards 1 --no-pin` named `name`.
    pub fn start(&mut self, name: &str) -> Result<()> {
        let log = self.logs.join(format!("{name}.log"));
        let out = File::create(&log).map_err(|e| BenchError::io(log.display().to_string(), e))?;
        let err = out
            .try_clone()
            .map_err(|e| BenchError::io(log.display().to_string(), e))?;
        let child = Command::new(&self.binary)
            .arg("run")
            .arg(&self.sql)
            .args(["--shards", "1", "--no-pin"])
            .env(
                "RUST_LOG",
                std::env::var(PROCESS_LOG_ENV).unwrap_or_else(|_| PROCESS_LOG_FILTER.to_string()),
            )
            .env("NO_COLOR", "1")
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|e| BenchError::io(format!("starting {}", self.binary.display()), e))?;
        self.members.push(Member {
            name: name.to_string(),
            log,
            child,
            exit: None,
            stopped: false,
        });
        Ok(())
    }

    fn member(&mut self, name: &str) -> Result<&mut Member> {
        let member = self
            .members
            .iter_mut()
            .find(|m| m.name == name)
            .ok_or_else(|| BenchError::Config(format!("internal: no process {name}")))?;
        still_running(member)?;
        Ok(member)
    }

    /// SIGKILL to `name` (a crash); it must still be running.
    pub fn kill(&mut self, name: &str) -> Result<()> {
        let member = self.member(name)?;
        member.stopped = true;
        member
            .child
            .kill()
            .map_err(|e| BenchError::io(format!("SIGKILL to {name}"), e))?;
        member.exit = member.child.wait().ok();
        Ok(())
    }

    /// SIGTERM to `name` (a graceful stop) without waiting; see [`Processes::wait_exit`].
    pub fn send_term(&mut self, name: &str) -> Result<()> {
        let member = self.member(name)?;
        member.stopped = true;
        let status = Command::new("kill")
            .args(["-TERM", &member.child.id().to_string()])
            .status()
            .map_err(|e| BenchError::io("kill -TERM", e))?;
        if !status.success() {
            return Err(BenchError::WrongResult(format!("kill -TERM {name} failed")));
        }
        Ok(())
    }

    /// Waits for a SIGTERMed process to exit; it must exit 0 within `timeout_ms`.
    pub fn wait_exit(&mut self, name: &str, timeout_ms: u64) -> Result<Duration> {
        let started = Instant::now();
        let member = self
            .members
            .iter_mut()
            .find(|m| m.name == name)
            .ok_or_else(|| BenchError::Config(format!("internal: no process {name}")))?;
        loop {
            if member.exit.is_none() {
                member.exit = member
                    .child
                    .try_wait()
                    .map_err(|e| BenchError::io(format!("waiting for {name}"), e))?;
            }
            match member.exit {
                Some(status) if status.success() => return Ok(started.elapsed()),
                Some(status) => {
                    return Err(BenchError::WrongResult(format!(
                        "{name} exited with {status} after SIGTERM (expected 0)"
                    )))
                }
                None if started.elapsed() > Duration::from_millis(timeout_ms) => {
                    return Err(BenchError::Stalled(format!(
                        "{name} did not exit within {timeout_ms} ms of SIGTERM"
                    )))
                }
                None => thread::sleep(Duration::from_millis(POLL_INTERVAL_MS)),
            }
        }
    }

    /// A rolling stop: SIGTERM to each running process in turn; each must exit 0, and the
    /// others must take over its `partitions` before the next one is signalled.
    pub fn stop_all(&mut self, partitions: usize) -> Result<()> {
        let names: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.exit.is_none())
            .map(|m| m.name.clone())
            .collect();
        for (i, name) in names.iter().enumerate() {
            self.send_term(name)?;
            self.wait_exit(name, STOP_TIMEOUT_MS)?;
            if i + 1 < names.len() {
                self.wait_settled(partitions, || Ok(true))?;
            }
        }
        Ok(())
    }

    /// An error naming a process that exited although the benchmark did not stop it.
    pub fn check_running(&mut self) -> Result<()> {
        for member in self.members.iter_mut().filter(|m| !m.stopped) {
            still_running(member)?;
        }
        Ok(())
    }

    /// Waits up to `timeout_ms` until `done` holds, checking the processes meanwhile.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout_ms: u64,
        mut done: impl FnMut() -> Result<bool>,
    ) -> Result<Duration> {
        let started = Instant::now();
        loop {
            self.check_running()?;
            if done()? {
                return Ok(started.elapsed());
            }
            if started.elapsed() > Duration::from_millis(timeout_ms) {
                return Err(BenchError::Stalled(format!(
                    "not within {timeout_ms} ms: {what}"
                )));
            }
            thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
        }
    }

    /// Job instances each running process runs (started minus stopped in its log).
    pub fn instances(&self) -> Vec<i64> {
        self.members
            .iter()
            .filter(|m| !m.stopped)
            .map(|m| {
                let log = std::fs::read_to_string(&m.log).unwrap_or_default();
                log.matches(LOG_INSTANCE_STARTED).count() as i64
                    - log.matches(LOG_INSTANCE_STOPPED).count() as i64
            })
            .collect()
    }

    /// Waits until the group settled: the running processes run `partitions` job instances
    /// together, each at least one (when there are enough partitions), and `done` holds,
    /// continuously for [`SETTLE_STABLE_MS`].
    pub fn wait_settled(
        &mut self,
        partitions: usize,
        mut done: impl FnMut() -> Result<bool>,
    ) -> Result<Duration> {
        let started = Instant::now();
        let mut stable_since: Option<Instant> = None;
        loop {
            self.check_running()?;
            let instances = self.instances();
            let spread = instances.len() > partitions || instances.iter().all(|&n| n >= 1);
            let ok = spread && instances.iter().sum::<i64>() == partitions as i64 && done()?;
            match (ok, stable_since) {
                (false, _) => stable_since = None,
                (true, None) => stable_since = Some(Instant::now()),
                (true, Some(t)) if t.elapsed() >= Duration::from_millis(SETTLE_STABLE_MS) => {
                    return Ok(started.elapsed())
                }
                (true, Some(_)) => {}
            }
            if started.elapsed() > Duration::from_millis(SETTLE_TIMEOUT_MS) {
                return Err(BenchError::Stalled(format!(
                    "the group did not settle within {SETTLE_TIMEOUT_MS} ms: job instances per \
                     process {instances:?} (counted by their '{LOG_INSTANCE_STARTED}' log \
                     lines), {partitions} expected, first results committed: {ok}"
                )));
            }
            thread::sleep(Duration::from_millis(POLL_INTERVAL_MS * 5));
        }
    }

    /// The tail of every process's log.
    pub fn log_tails(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("----- {} -----\n{}", m.name, log_tail(&m.log)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// An error if `member` exited (reaping it).
fn still_running(member: &mut Member) -> Result<()> {
    if member.exit.is_none() {
        member.exit = member
            .child
            .try_wait()
            .map_err(|e| BenchError::io(format!("waiting for {}", member.name), e))?;
    }
    match member.exit {
        None => Ok(()),
        Some(status) => Err(BenchError::WrongResult(format!(
            "spillway process {} exited by itself ({status})",
            member.name
        ))),
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for member in self.members.iter_mut().filter(|m| m.exit.is_none()) {
            let _ = member.child.kill();
            member.exit = member.child.wait().ok();
        }
    }
}

/// The last [`LOG_TAIL_BYTES_MAX`] bytes of a log.
fn log_tail(path: &Path) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut bytes = Vec::new();
    let from = len.saturating_sub(LOG_TAIL_BYTES_MAX as u64);
    if file.seek(SeekFrom::Start(from)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return format!("(cannot read {})", path.display());
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
