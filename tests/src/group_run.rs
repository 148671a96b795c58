//! Several `spillway run` processes sharing one job in group mode
//! (`'scan.partition-assignment' = 'group'`): the job's SQL, the processes (started, stopped
//! with SIGTERM, killed with SIGKILL, each with its own log), and the results their
//! exactly-once filesystem sinks committed under `<path>/partition-<r>/`.
//!
//! [`GroupProcesses`] kills every process it started when dropped, and when it is dropped
//! while the test panics it prints the tail of each process's log, so a failing test shows
//! what every member of the group was doing.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::job::TRADES_COLUMNS;
use crate::oracle::parse_time;
use crate::process::{spillway_binary, terminate};

/// Bytes of a process log quoted in a failure report.
pub const GROUP_LOG_TAIL_BYTES_MAX: usize = 6_000;
/// How often the waits below look at the processes and the output.
const GROUP_POLL_INTERVAL_MS: u64 = 200;
/// The processes' log filter: warnings, and the group runner's membership events (which
/// process ran which repartition partition when).
const GROUP_LOG_FILTER: &str = "warn,spillway_engine::group=info";
/// `shutdown_timeout` of a `spillway serve` member: its SIGTERM stop must end within it.
const SERVE_SHUTDOWN_S: u64 = 20;
/// Directory levels under the sink's path searched for committed part files.
const OUTPUT_DEPTH_MAX: usize = 4;

/// What the group-mode trades statistics job reads and where it writes.
#[derive(Debug, Clone)]
pub struct GroupJobSpec {
    pub bootstrap: String,
    /// The source topic.
    pub topic: String,
    /// `properties.group.id` (stage A's group; stage B's is `<group>-aggregate`).
    pub group: String,
    /// The WATERMARK bound.
    pub bound_ms: i64,
    /// The TUMBLE window size.
    pub window_ms: i64,
    /// `scan.watermark.idle-timeout` in seconds.
    pub idle_timeout_s: u64,
    /// The exactly-once filesystem sink's directory (shared by every process).
    pub out: PathBuf,
    /// Where the partitions' checkpoints live.
    pub storage: GroupStorage,
}

/// Where a group job keeps its partitions' checkpoints.
#[derive(Debug, Clone)]
pub enum GroupStorage {
    /// The state topic (`<group>-state`); each process gets its own local working directory
    /// `<dir>/<process name>` (`--checkpoint-dir`), so state moves only through Kafka.
    StateTopic(PathBuf),
    /// `SET 'checkpoint.storage' = 'shared-directory'`: this `checkpoint.dir`, shared by every
    /// process.
    SharedDirectory(PathBuf),
}

impl GroupStorage {
    /// The SQL settings this storage needs.
    fn settings(&self) -> String {
        match self {
            GroupStorage::StateTopic(_) => String::new(),
            GroupStorage::SharedDirectory(dir) => format!(
                "SET 'checkpoint.dir' = '{}';\n         SET 'checkpoint.storage' = 'shared-directory';",
                dir.display()
            ),
        }
    }

    /// The local checkpoint directory of process `name`, when each has its own.
    fn process_dir(&self, name: &str) -> Option<PathBuf> {
        match self {
            GroupStorage::StateTopic(dir) => Some(dir.join(name)),
            GroupStorage::SharedDirectory(_) => None,
        }
    }
}

/// The SQL of the job: the trades statistics per TUMBLE window and symbol over a Kafka source
/// in group mode (group offsets, cooperative membership with a 6 s session timeout), with
/// checkpoints every 200 ms and the exactly-once filesystem sink.
pub fn group_job_sql(spec: &GroupJobSpec) -> String {
    format!(
        "CREATE TABLE trades ({TRADES_COLUMNS},
           WATERMARK FOR ts AS ts - INTERVAL '{bound}' MILLISECOND)
         WITH ('connector' = 'kafka', 'topic' = '{topic}',
               'properties.bootstrap.servers' = '{bootstrap}',
               'properties.group.id' = '{group}',
               'properties.session.timeout.ms' = '6000',
               'properties.heartbeat.interval.ms' = '500',
               'scan.startup.mode' = 'group-offsets',
               'scan.partition-assignment' = 'group',
               'scan.watermark.idle-timeout' = '{idle} s',
               'format' = 'json');
         CREATE TABLE stats (symbol STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3),
           trades BIGINT, volume BIGINT, avg_price DOUBLE, low DOUBLE, high DOUBLE)
         WITH ('connector' = 'filesystem', 'path' = '{out}', 'format' = 'json');
         {storage}
         SET 'checkpoint.interval' = '200 ms';
         INSERT INTO stats
         SELECT symbol, window_start, window_end,
                COUNT(*), SUM(volume), AVG(price), MIN(price), MAX(price)
         FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '{window}' MILLISECOND))
         GROUP BY symbol, window_start, window_end;\n",
        bound = spec.bound_ms,
        topic = spec.topic,
        bootstrap = spec.bootstrap,
        group = spec.group,
        idle = spec.idle_timeout_s,
        out = spec.out.display(),
        storage = spec.storage.settings(),
        window = spec.window_ms,
    )
}

/// The rows of every committed part file under `out` (the sink's directory and its
/// `partition-<r>` subdirectories, searched recursively), directory by directory.
pub fn group_committed_rows(out: &Path) -> Result<Vec<Value>, String> {
    let mut dirs = Vec::new();
    collect_dirs(out, 0, &mut dirs)?;
    dirs.sort();
    let mut rows = Vec::new();
    for dir in dirs {
        rows.extend(crate::process::committed_rows(&dir)?);
    }
    Ok(rows)
}

/// `dir` and its subdirectories down to [`OUTPUT_DEPTH_MAX`] levels; a missing `dir` adds
/// nothing (no output yet).
fn collect_dirs(dir: &Path, depth: usize, dirs: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot list {}: {e}", dir.display())),
    };
    dirs.push(dir.to_path_buf());
    if depth >= OUTPUT_DEPTH_MAX {
        return Ok(());
    }
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir {
            collect_dirs(&entry.path(), depth + 1, dirs)?;
        }
    }
    Ok(())
}

/// The rows whose (`symbol`, `window_start`) an earlier row of `rows` already has: results
/// published more than once.
pub fn repeated_results(rows: &[Value]) -> Vec<&Value> {
    let mut seen = HashSet::new();
    rows.iter()
        .filter(|r| !seen.insert((r["symbol"].to_string(), r["window_start"].to_string())))
        .collect()
}

/// A row's `window_end` in epoch milliseconds (the sink writes `yyyy-MM-dd HH:mm:ss.SSS`).
pub fn window_end_ms(row: &Value) -> Result<i64, String> {
    parse_time(&row["window_end"]).ok_or_else(|| format!("a row without a valid window_end: {row}"))
}

/// The largest event time (`ts`, epoch ms) of trades lines; `None` for no lines.
pub fn max_event_ts(lines: &[String]) -> Result<Option<i64>, String> {
    let mut max = None;
    for line in lines {
        let v: Value =
            serde_json::from_str(line).map_err(|e| format!("bad trade line {line}: {e}"))?;
        let ts = parse_time(&v["ts"]).ok_or_else(|| format!("a trade without a ts: {line}"))?;
        max = Some(max.map_or(ts, |m: i64| m.max(ts)));
    }
    Ok(max)
}

/// A trade at `ts_ms` of its own symbol: it moves its partition's event time (and so the
/// watermark) forward; its own window never fires while nothing comes after it.
pub fn sentinel_line(ts_ms: i64) -> String {
    serde_json::json!({"symbol": "SENTINEL", "price": 1.0, "volume": 1, "ts": ts_ms}).to_string()
}

/// One process of the group.
struct Member {
    name: String,
    log: PathBuf,
    child: Child,
    /// Set once the process has been reaped.
    exit: Option<ExitStatus>,
    /// Whether the test stopped it (SIGTERM or SIGKILL); otherwise it must keep running.
    stopped_by_test: bool,
}

/// The `spillway run` processes of one test, all running the same SQL file.
pub struct GroupProcesses {
    sql: PathBuf,
    log_dir: PathBuf,
    storage: GroupStorage,
    members: Vec<Member>,
}

impl GroupProcesses {
    /// Processes that run `sql` with checkpoints in `storage` and write their logs
    /// `<name>.log` into `log_dir`.
    pub fn new(sql: &Path, log_dir: &Path, storage: &GroupStorage) -> Self {
        GroupProcesses {
            sql: sql.to_path_buf(),
            log_dir: log_dir.to_path_buf(),
            storage: storage.clone(),
            members: Vec::new(),
        }
    }

    /// Starts `spillway run SQL --shards 1 --no-pin` named `name` (unique in the test).
    pub fn start(&mut self, name: &str) -> Result<(), String> {
        let log = self.new_member_log(name)?;
        let child = start_group_run(&self.sql, &log, self.storage.process_dir(name).as_deref())?;
        self.add_member(name, log, child);
        Ok(())
    }

    /// Starts `spillway serve --config <log dir>/<name>.toml` named `name`: the SQL as its one
    /// query, the process's checkpoint directory as `state_dir` (the shared one with
    /// [`GroupStorage::SharedDirectory`]), metrics on a free local port, [`GROUP_LOG_FILTER`]
    /// as its log level.
    pub fn start_serve(&mut self, name: &str) -> Result<(), String> {
        let log = self.new_member_log(name)?;
        let state_dir = match &self.storage {
            GroupStorage::StateTopic(dir) => dir.join(name),
            GroupStorage::SharedDirectory(dir) => dir.clone(),
        };
        let port = crate::tansu::free_port()?;
        let config = self.log_dir.join(format!("{name}.toml"));
        let text = format!(
            "queries = [{sql:?}]\nstate_dir = {state:?}\nshutdown_timeout = \"{SERVE_SHUTDOWN_S} s\"\n\
             [http]\naddress = \"127.0.0.1:{port}\"\n[log]\nformat = \"text\"\n\
             level = \"{GROUP_LOG_FILTER}\"\n",
            sql = self.sql.display().to_string(),
            state = state_dir.display().to_string(),
        );
        std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
        let out = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new(spillway_binary())
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env("NO_COLOR", "1")
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|e| format!("cannot start spillway serve: {e}"))?;
        self.add_member(name, log, child);
        Ok(())
    }

    /// The log path of a new member `name`; an error if the name was used before.
    fn new_member_log(&self, name: &str) -> Result<PathBuf, String> {
        if self.members.iter().any(|m| m.name == name) {
            return Err(format!("process {name} was started before"));
        }
        Ok(self.log_dir.join(format!("{name}.log")))
    }

    fn add_member(&mut self, name: &str, log: PathBuf, child: Child) {
        self.members.push(Member {
            name: name.to_string(),
            log,
            child,
            exit: None,
            stopped_by_test: false,
        });
    }

    /// The names of the processes whose log has a line containing every one of `needles`.
    pub fn logs_with_line(&self, needles: &[&str]) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| {
                std::fs::read_to_string(&m.log).is_ok_and(|text| {
                    text.lines()
                        .any(|line| needles.iter().all(|n| line.contains(n)))
                })
            })
            .map(|m| m.name.clone())
            .collect()
    }

    fn member(&mut self, name: &str) -> Result<&mut Member, String> {
        self.members
            .iter_mut()
            .find(|m| m.name == name)
            .ok_or_else(|| format!("no process named {name}"))
    }

    /// SIGTERM to `name`, then waits up to `timeout` for it to exit; it must exit 0 (a clean
    /// stop). Returns how long it took. A process still running at the timeout is killed and
    /// that is an error.
    pub fn terminate(&mut self, name: &str, timeout: Duration) -> Result<Duration, String> {
        let member = self.member(name)?;
        check_still_running(member)?;
        member.stopped_by_test = true;
        let started = Instant::now();
        terminate(&member.child)?;
        loop {
            let status = member
                .child
                .try_wait()
                .map_err(|e| format!("waiting for {name}: {e}"))?;
            if let Some(status) = status {
                member.exit = Some(status);
                if !status.success() {
                    return Err(format!(
                        "{name} exited with {status} after SIGTERM (expected 0); its log:\n{}",
                        log_tail(&member.log)
                    ));
                }
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                let _ = member.child.kill();
                member.exit = member.child.wait().ok();
                return Err(format!(
                    "{name} did not exit within {timeout:?} of SIGTERM (killed); its log:\n{}",
                    log_tail(&member.log)
                ));
            }
            thread::sleep(Duration::from_millis(GROUP_POLL_INTERVAL_MS / 4));
        }
    }

    /// SIGKILL to `name` (a crash). It must still have been running.
    pub fn kill(&mut self, name: &str) -> Result<(), String> {
        let member = self.member(name)?;
        check_still_running(member)?;
        member.stopped_by_test = true;
        member
            .child
            .kill()
            .map_err(|e| format!("SIGKILL to {name}: {e}"))?;
        let status = member
            .child
            .wait()
            .map_err(|e| format!("waiting for {name}: {e}"))?;
        member.exit = Some(status);
        Ok(())
    }

    /// An error naming every process that exited although the test did not stop it.
    pub fn check_running(&mut self) -> Result<(), String> {
        let mut failures = Vec::new();
        for member in self.members.iter_mut().filter(|m| !m.stopped_by_test) {
            if let Err(e) = check_still_running(member) {
                failures.push(e);
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("\n"))
        }
    }

    /// The names of the processes still running.
    pub fn running(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.exit.is_none())
            .map(|m| m.name.clone())
            .collect()
    }

    /// The tail of every process's log, one section per process.
    pub fn log_tails(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let state = match m.exit {
                    Some(status) => format!("exited: {status}"),
                    None => "running".to_string(),
                };
                format!(
                    "----- {} ({state}), {} -----\n{}",
                    m.name,
                    m.log.display(),
                    log_tail(&m.log)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits up to `timeout` until the committed rows under `out` number at least `rows_min`;
    /// fails at once when a process the test did not stop exits. Returns the rows committed
    /// and the time it took.
    pub fn wait_for_rows(
        &mut self,
        out: &Path,
        rows_min: usize,
        timeout: Duration,
    ) -> Result<(usize, Duration), String> {
        let started = Instant::now();
        let mut rows = 0;
        loop {
            self.check_running()?;
            // Part files move while the processes recover; a failed read is retried.
            if let Ok(r) = group_committed_rows(out) {
                rows = r.len();
            }
            if rows >= rows_min {
                return Ok((rows, started.elapsed()));
            }
            if started.elapsed() > timeout {
                return Err(format!(
                    "{rows} rows committed under {} within {timeout:?}, expected at least {rows_min}",
                    out.display()
                ));
            }
            thread::sleep(Duration::from_millis(GROUP_POLL_INTERVAL_MS));
        }
    }

    /// Waits up to `timeout` until `done()` holds, checking the processes meanwhile.
    pub fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut() -> bool,
    ) -> Result<Duration, String> {
        let started = Instant::now();
        loop {
            self.check_running()?;
            if done() {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                return Err(format!("not within {timeout:?}: {what}"));
            }
            thread::sleep(Duration::from_millis(GROUP_POLL_INTERVAL_MS));
        }
    }
}

/// Starts `spillway run SQL --shards 1 --no-pin` with its output in `log` and
/// [`GROUP_LOG_FILTER`] as its log filter.
fn start_group_run(sql: &Path, log: &Path, checkpoint_dir: Option<&Path>) -> Result<Child, String> {
    let out = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let mut command = Command::new(spillway_binary());
    command
        .arg("run")
        .arg(sql)
        .args(["--shards", "1", "--no-pin"]);
    if let Some(dir) = checkpoint_dir {
        command.arg("--checkpoint-dir").arg(dir);
    }
    command
        .env("RUST_LOG", GROUP_LOG_FILTER)
        .env("NO_COLOR", "1")
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .map_err(|e| format!("cannot start spillway: {e}"))
}

/// An error if `member` has exited (reaping it).
fn check_still_running(member: &mut Member) -> Result<(), String> {
    if member.exit.is_none() {
        member.exit = member
            .child
            .try_wait()
            .map_err(|e| format!("waiting for {}: {e}", member.name))?;
    }
    match member.exit {
        None => Ok(()),
        Some(status) => Err(format!(
            "{} exited by itself ({status}); its log:\n{}",
            member.name,
            log_tail(&member.log)
        )),
    }
}

impl Drop for GroupProcesses {
    fn drop(&mut self) {
        for member in self.members.iter_mut().filter(|m| m.exit.is_none()) {
            let _ = member.child.kill();
            member.exit = member.child.wait().ok();
        }
        if thread::panicking() {
            eprintln!("logs of the spillway processes:\n{}", self.log_tails());
        }
    }
}

/// The last [`GROUP_LOG_TAIL_BYTES_MAX`] bytes of a log (lossy UTF-8).
fn log_tail(path: &Path) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(GROUP_LOG_TAIL_BYTES_MAX as u64);
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(from)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return format!("(cannot read {})", path.display());
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oracle::format_time;
    use serde_json::json;

    #[test]
    fn the_sql_names_the_group_options_and_paths() {
        let sql = group_job_sql(&GroupJobSpec {
            bootstrap: "127.0.0.1:1".to_string(),
            topic: "t1".to_string(),
            group: "g1".to_string(),
            bound_ms: 300,
            window_ms: 100,
            idle_timeout_s: 60,
            out: PathBuf::from("/x/out"),
            storage: GroupStorage::SharedDirectory(PathBuf::from("/x/state")),
        });
        for part in [
            "'scan.partition-assignment' = 'group'",
            "'scan.startup.mode' = 'group-offsets'",
            "'properties.group.id' = 'g1'",
            "'topic' = 't1'",
            "'scan.watermark.idle-timeout' = '60 s'",
            "'path' = '/x/out'",
            "SET 'checkpoint.dir' = '/x/state'",
            "SET 'checkpoint.storage' = 'shared-directory'",
            "INTERVAL '300' MILLISECOND",
            "INTERVAL '100' MILLISECOND))",
        ] {
            assert!(sql.contains(part), "{part} missing in {sql}");
        }
        spillway_engine::sql::parse_program(&sql).expect("the engine parses the job's SQL");
    }

    #[test]
    fn committed_rows_are_read_from_every_partition_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        assert_eq!(group_committed_rows(&out), Ok(vec![]), "no output yet");
        for (r, symbol) in [(0, "A"), (3, "B")] {
            let sub = out.join(format!("partition-{r}"));
            std::fs::create_dir_all(&sub).expect("dir");
            let row = json!({"symbol": symbol});
            std::fs::write(sub.join("part-000000000001-0000.jsonl"), format!("{row}\n"))
                .expect("committed part");
            // Not committed: never read.
            std::fs::write(
                sub.join(".part-000000000002-0000.pending"),
                "{\"symbol\":\"P\"}\n",
            )
            .expect("pending part");
        }
        let rows = group_committed_rows(&out).expect("rows");
        assert_eq!(rows, vec![json!({"symbol": "A"}), json!({"symbol": "B"})]);
    }

    #[test]
    fn repeated_results_are_found() {
        let rows = vec![
            json!({"symbol": "A", "window_start": "x", "trades": 1}),
            json!({"symbol": "B", "window_start": "x", "trades": 1}),
            json!({"symbol": "A", "window_start": "y", "trades": 1}),
            json!({"symbol": "A", "window_start": "x", "trades": 2}),
        ];
        assert_eq!(repeated_results(&rows), vec![&rows[3]]);
        assert!(repeated_results(&rows[..3]).is_empty());
    }

    #[test]
    fn window_ends_and_event_times_are_read_back() {
        let ms = 1_700_000_005_100;
        assert_eq!(
            window_end_ms(&json!({"window_end": format_time(ms)})),
            Ok(ms)
        );
        assert!(window_end_ms(&json!({"window_end": null})).is_err());
        let lines = vec![sentinel_line(7), sentinel_line(ms), sentinel_line(3)];
        assert_eq!(max_event_ts(&lines), Ok(Some(ms)));
        assert_eq!(max_event_ts(&[]), Ok(None));
        assert!(max_event_ts(&["{\"ts\": true}".to_string()]).is_err());
    }

    #[test]
    fn log_tails_keep_the_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("p.log");
        let text = format!("{}END", "x".repeat(GROUP_LOG_TAIL_BYTES_MAX * 2));
        std::fs::write(&log, &text).expect("log");
        let tail = log_tail(&log);
        assert_eq!(tail.len(), GROUP_LOG_TAIL_BYTES_MAX);
        assert!(tail.ends_with("END"));
        assert!(log_tail(&dir.path().join("missing.log")).contains("no log"));
    }
}
