//! `spillway-bench group`: several `spillway run` processes sharing one job in group mode
//! (`'scan.partition-assignment' = 'group'`) against the embedded Kafka of this process
//! (librdkafka's mock cluster, reached by the processes over TCP).
//!
//! - Throughput, per process count K: a fresh cluster, topics, group and scratch directory per
//!   run; K processes; a warm-up whose results must all be committed (the group settled); then
//!   N trades produced as fast as the producer goes plus one sentinel per partition; the run
//!   ends when every expected result row is committed. The result is checked against an
//!   independent batch computation (each (symbol, window) once, right count and volume) before
//!   the figure counts. Then a rolling stop: SIGTERM to one process at a time, each must exit 0
//!   and the others take over its partitions before the next one is signalled.
//! - Failover (`--failover`): trades produced live at `--rate` with wall-clock event times;
//!   once results flow, one process is SIGKILLed; the recovery time is, per repartition
//!   partition, the time from the kill until its `out/partition-<r>/` gets a committed file
//!   written after the kill, max over partitions. A replacement joins, then another process
//!   leaves with SIGTERM and the same is measured. The result is checked at the end.
//!
//! The mock cluster keeps about 5 MiB per partition and drops older data silently, so one
//! run's data per partition is limited ([`PARTITION_BYTES_MAX`]). Its group coordinator
//! delays a first join by 3 s and, when a member is gone, waits session timeout - 1 s for
//! the others to rejoin: recovery times on the mock include that wait.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use clap::{Args, ValueEnum};

use crate::error::{BenchError, Result};
use crate::group_bench_data::{
    check_topic_records, committed_files, generate_trades, group_job_sql, read_all_committed,
    sentinels, warmup_trades, window_start, CommittedRows, GroupJob, LineProducer, LiveProducer,
    Oracle, ResultRow, Trades, DATA_START_TS_MS, FIRE_BEFORE_MS, SENTINEL_AFTER_MS,
    SENTINEL_SYMBOL, SYMBOLS,
};
use crate::group_processes::{with_logs, Processes, STOP_TIMEOUT_MS};
use spillway_connectors::embedded_kafka::EmbeddedKafka;

/// `properties.session.timeout.ms` of the job (a SIGKILLed member is noticed after it).
pub const SESSION_TIMEOUT_MS: u64 = 6_000;
/// Payload plus record overhead one run may put into one partition of a topic (the mock
/// cluster keeps 5 MiB per partition; the rest is room for the time marks).
pub const PARTITION_BYTES_MAX: usize = 4_608 * 1024;
/// Bytes a repartition-topic record adds to its payload (record framing and the headers).
const REPARTITION_RECORD_OVERHEAD_BYTES: usize = 48;
/// Most processes of one run.
pub const PROCESSES_MAX: usize = 64;
/// Most runs per process count.
pub const RUNS_MAX: usize = 100;
/// Highest live rate of the failover run, events/s.
pub const RATE_MAX: u64 = 1_000_000;
/// Every result must be committed within this after the last input (plus 1 s per 10k events).
const DONE_TIMEOUT_MS_MIN: u64 = 120_000;
/// Every partition must commit again within this after a process left.
const RECOVERY_TIMEOUT_MS: u64 = 120_000;
/// Failover: results flow this long before a process is stopped.
const FAILOVER_FLOW_MS: u64 = 3_000;

/// Options of `spillway-bench group`.
#[derive(Debug, Clone, Args)]
pub struct GroupArgs {
    /// Process counts to measure, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub processes: Vec<usize>,
    /// Trades per throughput run. The mock cluster keeps about 5 MiB per partition: keep
    /// events * ~120 B / partitions under 4.5 MiB (300000 over 8 partitions is fine).
    #[arg(long, default_value_t = 300_000)]
    pub events: u64,
    /// Partitions of the source and of the repartition topic.
    #[arg(long, default_value_t = 8)]
    pub partitions: usize,
    /// Checked runs per process count; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Throughput: trades per second of event time (how many 1 s windows the data spans).
    #[arg(long, default_value_t = 20_000)]
    pub event_rate: u64,
    /// Measure failover (SIGKILL, then SIGTERM of a member) instead of throughput.
    #[arg(long)]
    pub failover: bool,
    /// Failover: live trades per second (event time = wall clock; --events is not used).
    #[arg(long, default_value_t = 5_000)]
    pub rate: u64,
    /// The `spillway` binary (default: next to this executable).
    #[arg(long)]
    pub spillway: Option<PathBuf>,
    /// Keep each run's scratch directory (SQL, process logs, output, checkpoints) and print
    /// its path.
    #[arg(long)]
    pub keep: bool,
    /// Where the partitions' checkpoints live (SET 'checkpoint.storage').
    #[arg(long, value_enum, default_value_t = Storage::Kafka)]
    pub storage: Storage,
}

/// `SET 'checkpoint.storage'` of the benchmarked job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Storage {
    /// The compacted state topic `<group>-state`.
    Kafka,
    /// The checkpoint directory, shared by the processes.
    SharedDirectory,
}

/// Options of one benchmark, checked.
#[derive(Debug, Clone)]
pub struct GroupBenchOptions {
    pub processes: Vec<usize>,
    pub events: u64,
    pub partitions: usize,
    pub runs: usize,
    pub event_rate: u64,
    pub failover: bool,
    pub rate: u64,
    pub spillway_binary: PathBuf,
    /// Keep each run's scratch directory.
    pub keep_scratch: bool,
    pub storage: Storage,
}

impl GroupArgs {
    /// The checked options; the binary must exist.
    pub fn options(&self) -> Result<GroupBenchOptions> {
        let spillway_binary = match &self.spillway {
            Some(path) => path.clone(),
            None => std::env::current_exe()
                .map_err(|e| BenchError::io("cannot find this executable", e))?
                .with_file_name("spillway"),
        };
        let opts = GroupBenchOptions {
            processes: self.processes.clone(),
            events: self.events,
            partitions: self.partitions,
            runs: self.runs,
            event_rate: self.event_rate,
            failover: self.failover,
            rate: self.rate,
            spillway_binary,
            keep_scratch: self.keep,
            storage: self.storage,
        };
        opts.validate()?;
        Ok(opts)
    }
}

impl GroupBenchOptions {
    /// Checks every value is in its range and the binary exists.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(BenchError::Config(what));
        if self.processes.is_empty() || self.processes.iter().any(|&k| k == 0 || k > PROCESSES_MAX)
        {
            return bad(format!(
                "--processes {:?}: each must be in [1, {PROCESSES_MAX}]",
                self.processes
            ));
        }
        if self.failover && self.processes.iter().any(|&k| k < 2) {
            return bad("--failover needs --processes of at least 2".into());
        }
        if !(1..=1024).contains(&self.partitions) {
            return bad(format!(
                "--partitions {} is out of [1, 1024]",
                self.partitions
            ));
        }
        if !(1..=RUNS_MAX).contains(&self.runs) {
            return bad(format!("--runs {} is out of [1, {RUNS_MAX}]", self.runs));
        }
        if !(1..=1_000_000_000).contains(&self.event_rate) {
            return bad(format!(
                "--event-rate {} is out of [1, 1e9]",
                self.event_rate
            ));
        }
        if !(1..=RATE_MAX).contains(&self.rate) {
            return bad(format!("--rate {} is out of [1, {RATE_MAX}]", self.rate));
        }
        // About 70 B per trade line.
        let per_partition =
            self.events as usize / self.partitions * (70 + REPARTITION_RECORD_OVERHEAD_BYTES);
        // Failover produces live (no --events); what the mock cluster drops then was read.
        if !self.failover && (self.events == 0 || per_partition > PARTITION_BYTES_MAX) {
            return bad(format!(
                "--events {} over {} partitions puts about {per_partition} bytes into each \
                 repartition partition; the mock cluster keeps about 5 MiB per partition \
                 (limit {PARTITION_BYTES_MAX}): use fewer events or more partitions",
                self.events, self.partitions
            ));
        }
        if !self.spillway_binary.is_file() {
            return bad(format!(
                "the spillway binary {} is missing: run `cargo build --release -p \
                 spillway-engine` (or pass --spillway PATH)",
                self.spillway_binary.display()
            ));
        }
        Ok(())
    }
}

/// One checked throughput run.
#[derive(Debug, Clone, PartialEq)]
pub struct ThroughputRun {
    pub processes: usize,
    pub run: usize,
    pub events: u64,
    /// From the first data trade produced to the last result committed.
    pub elapsed: Duration,
    /// How long producing the data took (within `elapsed`).
    pub produce: Duration,
    /// Result rows of the data (without the warm-up's).
    pub rows: usize,
}

impl ThroughputRun {
    /// Data trades per second from the first produced to the last result committed.
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The run as one JSON line.
    pub fn json(&self, partitions: usize) -> String {
        serde_json::json!({
            "bench": "group", "mode": "throughput", "processes": self.processes,
            "run": self.run, "events": self.events, "partitions": partitions,
            "seconds": self.elapsed.as_secs_f64(), "produce_seconds": self.produce.as_secs_f64(),
            "events_per_second": self.events_per_second().round(),
            "events_per_second_per_process":
                (self.events_per_second() / self.processes as f64).round(),
            "result_rows": self.rows, "checked": true,
        })
        .to_string()
    }
}

/// One recovery measured in a failover run.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovery {
    /// `SIGKILL` or `SIGTERM`.
    pub signal: &'static str,
    /// Per repartition partition: from the signal to its first committed file written after it.
    pub partitions: Vec<Duration>,
}

impl Recovery {
    /// The slowest partition's recovery.
    pub fn max(&self) -> Duration {
        self.partitions.iter().copied().max().unwrap_or_default()
    }
}

/// One checked failover run.
#[derive(Debug, Clone, PartialEq)]
pub struct FailoverRun {
    pub processes: usize,
    pub run: usize,
    pub recoveries: Vec<Recovery>,
    /// Trades produced live.
    pub events: u64,
    pub rows: usize,
}

impl FailoverRun {
    /// The run as one JSON line.
    pub fn json(&self, rate: u64) -> String {
        let recoveries: Vec<serde_json::Value> = self
            .recoveries
            .iter()
            .map(|r| {
                serde_json::json!({
                    "signal": r.signal, "recovery_ms": r.max().as_millis() as u64,
                    "partitions_ms": r.partitions.iter().map(|d| d.as_millis() as u64)
                        .collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::json!({
            "bench": "group", "mode": "failover", "processes": self.processes, "run": self.run,
            "rate": rate, "session_timeout_ms": SESSION_TIMEOUT_MS, "events": self.events,
            "result_rows": self.rows, "recoveries": recoveries, "checked": true,
        })
        .to_string()
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Runs the benchmark and returns its report: a table, medians, and a JSON line per run.
pub fn run_group_bench(opts: &GroupBenchOptions) -> Result<String> {
    opts.validate()?;
    let mut text = String::new();
    if opts.failover {
        let mut runs = Vec::new();
        for &k in &opts.processes {
            for run in 1..=opts.runs {
                let r = failover_run(opts, k, run)?;
                let ms: Vec<String> = r
                    .recoveries
                    .iter()
                    .map(|x| format!("{} {} ms", x.signal, x.max().as_millis()))
                    .collect();
                eprintln!("group bench: K={k} run {run}: {} (checked)", ms.join(", "));
                runs.push(r);
            }
        }
        text += &format!(
            "group failover: {} partitions, {} events/s live, session timeout {} ms (checked)\n\
             processes  run  signal   recovery_ms (max over partitions)\n",
            opts.partitions, opts.rate, SESSION_TIMEOUT_MS
        );
        for r in &runs {
            for rec in &r.recoveries {
                text += &format!(
                    "{:>9}  {:>3}  {:<7}  {:>8}\n",
                    r.processes,
                    r.run,
                    rec.signal,
                    rec.max().as_millis()
                );
            }
        }
        for &k in &opts.processes {
            for signal in ["SIGKILL", "SIGTERM"] {
                let v: Vec<f64> = runs
                    .iter()
                    .filter(|r| r.processes == k)
                    .flat_map(|r| r.recoveries.iter().filter(|x| x.signal == signal))
                    .map(|x| x.max().as_millis() as f64)
                    .collect();
                text += &format!("median K={k} {signal}: {:.0} ms\n", median(v));
            }
        }
        runs.iter()
            .for_each(|r| text += &format!("{}\n", r.json(opts.rate)));
        return Ok(text);
    }
    let data = generate_trades(
        opts.events,
        opts.partitions,
        opts.event_rate,
        DATA_START_TS_MS,
        42,
    )?;
    let mut runs = Vec::new();
    for &k in &opts.processes {
        for run in 1..=opts.runs {
            let r = throughput_run(opts, k, run, &data)?;
            eprintln!(
                "group bench: K={k} run {run}: {:.0} events/s (checked)",
                r.events_per_second()
            );
            runs.push(r);
        }
    }
    text += &format!(
        "group throughput: {} events, {} partitions, {} symbols, {} runs per count (checked)\n\
         processes  run   events/s  events/s/proc  seconds  produce_s   rows\n",
        opts.events, opts.partitions, SYMBOLS, opts.runs
    );
    for r in &runs {
        text += &format!(
            "{:>9}  {:>3}  {:>9.0}  {:>13.0}  {:>7.2}  {:>9.2}  {:>5}\n",
            r.processes,
            r.run,
            r.events_per_second(),
            r.events_per_second() / r.processes as f64,
            r.elapsed.as_secs_f64(),
            r.produce.as_secs_f64(),
            r.rows
        );
    }
    for &k in &opts.processes {
        let v: Vec<f64> = runs
            .iter()
            .filter(|r| r.processes == k)
            .map(ThroughputRun::events_per_second)
            .collect();
        let m = median(v);
        text += &format!(
            "median K={k}: {m:.0} events/s, {:.0} per process\n",
            m / k as f64
        );
    }
    runs.iter()
        .for_each(|r| text += &format!("{}\n", r.json(opts.partitions)));
    Ok(text)
}

/// A fresh cluster, topics, group, scratch directory and SQL file for one run.
struct RunSetup {
    /// The run's cluster: it lives as long as the run.
    _kafka: EmbeddedKafka,
    scratch: tempfile::TempDir,
    job: GroupJob,
    sql: PathBuf,
}

impl RunSetup {
    /// Removes the scratch directory, or keeps it and says where.
    fn finish(self, keep: bool) {
        if keep {
            eprintln!(
                "group bench: scratch kept in {}",
                self.scratch.keep().display()
            );
        }
    }
}

fn setup_run(opts: &GroupBenchOptions, name: &str) -> Result<RunSetup> {
    let kafka = EmbeddedKafka::start(1)?;
    let group = format!("bench-{name}");
    let topic = format!("trades-{name}");
    let partitions = opts.partitions as i32;
    kafka.create_topic(&topic, partitions)?;
    kafka.create_topic(&format!("{group}-repartition"), partitions)?;
    kafka.create_topic(&format!("{group}-state"), partitions)?;
    let scratch = tempfile::Builder::new()
        .prefix(&format!("spillway-group-{name}-"))
        .tempdir()
        .map_err(|e| BenchError::io("cannot create a scratch directory", e))?;
    let job = GroupJob {
        bootstrap: kafka.bootstrap_servers(),
        topic,
        group,
        out: scratch.path().join("out"),
        state: scratch.path().join("state"),
        session_timeout_ms: SESSION_TIMEOUT_MS,
        shared_directory: opts.storage == Storage::SharedDirectory,
    };
    let sql = scratch.path().join("job.sql");
    std::fs::write(&sql, group_job_sql(&job))
        .map_err(|e| BenchError::io(format!("writing {}", sql.display()), e))?;
    std::fs::create_dir_all(scratch.path().join("logs"))
        .map_err(|e| BenchError::io("creating the log directory", e))?;
    Ok(RunSetup {
        _kafka: kafka,
        scratch,
        job,
        sql,
    })
}

fn throughput_run(
    opts: &GroupBenchOptions,
    k: usize,
    run: usize,
    data: &Trades,
) -> Result<ThroughputRun> {
    let setup = setup_run(opts, &format!("k{k}-r{run}"))?;
    let mut procs = Processes::new(&opts.spillway_binary, &setup.sql, setup.scratch.path());
    let result = throughput_measure(opts, k, run, data, &setup, &mut procs);
    let result = result.map_err(|e| with_logs(e, &procs));
    drop(procs);
    setup.finish(opts.keep_scratch);
    result
}

fn throughput_measure(
    opts: &GroupBenchOptions,
    k: usize,
    run: usize,
    data: &Trades,
    setup: &RunSetup,
    procs: &mut Processes,
) -> Result<ThroughputRun> {
    let mut producer = LineProducer::new(&setup.job.bootstrap)?;
    for i in 1..=k {
        procs.start(&format!("p{i}"))?;
    }
    let (warmup, fire) = warmup_trades(opts.partitions)?;
    producer.send_all(&setup.job.topic, &warmup.records)?;
    producer.send_all(&setup.job.topic, &fire.records)?;
    producer.wait()?;
    let fire_window = window_start(DATA_START_TS_MS - FIRE_BEFORE_MS);
    let mut rows = CommittedRows::new(&setup.job.out);
    let warmup_rows = warmup.oracle.rows();
    procs.wait_settled(opts.partitions, || {
        rows.refresh()?;
        Ok(rows.count_between(i64::MIN, fire_window) >= warmup_rows)
    })?;

    let mut main = fire.oracle.clone();
    main.merge(&data.oracle);
    let expected = main.rows();
    let started = Instant::now();
    producer.send_all(&setup.job.topic, &data.records)?;
    let sentinel_ts = data.ts_max_ms + SENTINEL_AFTER_MS;
    producer.send_all(&setup.job.topic, &sentinels(opts.partitions, sentinel_ts))?;
    producer.wait()?;
    let produce = started.elapsed();
    let timeout = DONE_TIMEOUT_MS_MIN + data.oracle.events / 10;
    procs.wait_for("every result row committed", timeout, || {
        rows.refresh()?;
        Ok(rows.count_between(fire_window, i64::MAX) >= expected)
    })?;
    let elapsed = started.elapsed();
    let records = warmup.oracle.events + fire.oracle.events + data.oracle.events;
    check_topic_records(
        &setup.job.bootstrap,
        &setup.job.topic,
        opts.partitions,
        records + opts.partitions as u64,
    )?;
    let all = read_all_committed(&setup.job.out)?;
    check_rows(&all, &warmup.oracle, &main, fire_window)?;
    procs.stop_all(opts.partitions)?;
    // Stopping publishes nothing more (every window fired once already).
    let after_stop = read_all_committed(&setup.job.out)?;
    check_rows(&after_stop, &warmup.oracle, &main, fire_window)?;
    let data_n: u64 = all
        .iter()
        .filter(|r| r.window_start_ms >= window_start(DATA_START_TS_MS - 1_000))
        .filter(|r| r.symbol.starts_with("SYM"))
        .map(|r| r.n)
        .sum();
    if data_n != data.oracle.events {
        return Err(BenchError::WrongResult(format!(
            "the counts of the data's rows sum to {data_n}, {} trades were produced",
            data.oracle.events
        )));
    }
    Ok(ThroughputRun {
        processes: k,
        run,
        events: data.oracle.events,
        elapsed,
        produce,
        rows: expected,
    })
}

/// The whole committed result: the warm-up's windows (before `split_ms`) and the rest, each
/// exactly its oracle; no sentinel window.
fn check_rows(all: &[ResultRow], warmup: &Oracle, main: &Oracle, split_ms: i64) -> Result<()> {
    if let Some(row) = all.iter().find(|r| r.symbol == SENTINEL_SYMBOL) {
        return Err(BenchError::WrongResult(format!(
            "a sentinel's window fired although nothing came after it: {row:?}"
        )));
    }
    let (early, late): (Vec<_>, Vec<_>) = all
        .iter()
        .cloned()
        .partition(|r| r.window_start_ms < split_ms);
    warmup.check(&early, "the warm-up's windows")?;
    main.check(&late, "the data's windows")
}

fn failover_run(opts: &GroupBenchOptions, k: usize, run: usize) -> Result<FailoverRun> {
    let setup = setup_run(opts, &format!("failover-k{k}-r{run}"))?;
    let mut procs = Processes::new(&opts.spillway_binary, &setup.sql, setup.scratch.path());
    let result = failover_measure(opts, k, run, &setup, &mut procs);
    let result = result.map_err(|e| with_logs(e, &procs));
    drop(procs);
    setup.finish(opts.keep_scratch);
    result
}

fn failover_measure(
    opts: &GroupBenchOptions,
    k: usize,
    run: usize,
    setup: &RunSetup,
    procs: &mut Processes,
) -> Result<FailoverRun> {
    let live = LiveProducer::start(&setup.job, opts.partitions, opts.rate)?;
    for i in 1..=k {
        procs.start(&format!("p{i}"))?;
    }
    let out = setup.job.out.clone();
    let r_count = opts.partitions;
    let every_partition_commits = || -> Result<bool> {
        for r in 0..r_count {
            if committed_files(&out.join(format!("partition-{r}")))?.is_empty() {
                return Ok(false);
            }
        }
        Ok(true)
    };
    procs.wait_settled(r_count, every_partition_commits)?;
    thread::sleep(Duration::from_millis(FAILOVER_FLOW_MS));
    let mut recoveries = Vec::new();
    recoveries.push(measure_recovery(procs, &out, r_count, "SIGKILL", "p1")?);
    procs.start(&format!("p{}", k + 1))?;
    procs.wait_settled(r_count, || Ok(true))?;
    thread::sleep(Duration::from_millis(FAILOVER_FLOW_MS));
    recoveries.push(measure_recovery(procs, &out, r_count, "SIGTERM", "p2")?);
    live.check_alive()?;

    let (oracle, ts_max) = live.stop()?;
    let mut producer = LineProducer::new(&setup.job.bootstrap)?;
    let sentinel_ts = ts_max + SENTINEL_AFTER_MS;
    producer.send_all(&setup.job.topic, &sentinels(opts.partitions, sentinel_ts))?;
    producer.wait()?;
    check_topic_records(
        &setup.job.bootstrap,
        &setup.job.topic,
        opts.partitions,
        oracle.events + opts.partitions as u64,
    )?;
    let mut rows = CommittedRows::new(&out);
    let timeout = DONE_TIMEOUT_MS_MIN + oracle.events / 10;
    procs.wait_for("every result row committed", timeout, || {
        rows.refresh()?;
        Ok(rows.rows.len() >= oracle.rows())
    })?;
    check_rows(
        &read_all_committed(&out)?,
        &Oracle::default(),
        &oracle,
        i64::MIN,
    )?;
    procs.stop_all(r_count)?;
    let all = read_all_committed(&out)?;
    check_rows(&all, &Oracle::default(), &oracle, i64::MIN)?;
    Ok(FailoverRun {
        processes: k,
        run,
        recoveries,
        events: oracle.events,
        rows: all.len(),
    })
}

/// Stops `victim` with `signal` and measures, per repartition partition, the time until a
/// committed file written after the signal appears in its directory.
fn measure_recovery(
    procs: &mut Processes,
    out: &Path,
    partitions: usize,
    signal: &'static str,
    victim: &str,
) -> Result<Recovery> {
    let dirs: Vec<PathBuf> = (0..partitions)
        .map(|r| out.join(format!("partition-{r}")))
        .collect();
    let mut before = Vec::with_capacity(partitions);
    for dir in &dirs {
        before.push(committed_files(dir)?.into_iter().collect::<HashSet<_>>());
    }
    let since = SystemTime::now();
    let started = Instant::now();
    if signal == "SIGKILL" {
        procs.kill(victim)?;
    } else {
        procs.send_term(victim)?;
    }
    let mut recovered: Vec<Option<Duration>> = vec![None; partitions];
    procs.wait_for(
        &format!("every partition commits again after {signal} to {victim}"),
        RECOVERY_TIMEOUT_MS,
        || {
            for (r, dir) in dirs.iter().enumerate() {
                if recovered[r].is_some() {
                    continue;
                }
                for path in committed_files(dir)? {
                    let written = std::fs::metadata(&path).and_then(|m| m.modified());
                    if !before[r].contains(&path) && written.is_ok_and(|t| t >= since) {
                        recovered[r] = Some(started.elapsed());
                        break;
                    }
                }
            }
            Ok(recovered.iter().all(Option::is_some))
        },
    )?;
    if signal == "SIGTERM" {
        procs.wait_exit(victim, STOP_TIMEOUT_MS)?;
    }
    Ok(Recovery {
        signal,
        partitions: recovered.into_iter().flatten().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The release `spillway` binary of this workspace (built before the tests by `cargo test
    /// --release --workspace`).
    fn spillway_binary() -> PathBuf {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
        target.join("release/spillway")
    }

    fn smoke_options() -> GroupBenchOptions {
        GroupBenchOptions {
            processes: vec![1],
            events: 2_000,
            partitions: 2,
            runs: 1,
            event_rate: 1_000,
            failover: false,
            rate: 1_000,
            spillway_binary: spillway_binary(),
            keep_scratch: false,
            storage: Storage::Kafka,
        }
    }

    #[test]
    fn options_out_of_range_are_refused() {
        let good = smoke_options();
        let cases: [fn(&mut GroupBenchOptions); 8] = [
            |o| o.processes = vec![],
            |o| o.processes = vec![0],
            |o| o.runs = 0,
            |o| o.partitions = 0,
            |o| o.events = 10_000_000,
            |o| o.rate = 0,
            |o| {
                o.failover = true;
                o.processes = vec![1]
            },
            |o| o.spillway_binary = PathBuf::from("/nonexistent/spillway"),
        ];
        for (i, change) in cases.iter().enumerate() {
            let mut o = good.clone();
            change(&mut o);
            assert!(
                matches!(o.validate(), Err(BenchError::Config(_))),
                "case {i} accepted"
            );
        }
    }

    #[test]
    fn medians_and_json_lines_report_the_runs() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0]), 2.5);
        let run = ThroughputRun {
            processes: 2,
            run: 1,
            events: 1_000,
            elapsed: Duration::from_millis(500),
            produce: Duration::from_millis(100),
            rows: 10,
        };
        assert_eq!(run.events_per_second(), 2_000.0);
        let v: serde_json::Value = serde_json::from_str(&run.json(4)).expect("json");
        assert_eq!(v["events_per_second_per_process"], 1_000.0);
        let rec = Recovery {
            signal: "SIGKILL",
            partitions: vec![Duration::from_millis(700), Duration::from_millis(900)],
        };
        assert_eq!(rec.max(), Duration::from_millis(900));
    }

    /// The throughput path through its check, tiny: 1 process, 2 partitions, 2000 events.
    #[test]
    fn smoke_throughput_runs_and_checks() {
        let opts = smoke_options();
        assert!(
            opts.spillway_binary.is_file(),
            "{} is missing: run `cargo build --release -p spillway-engine` (or the workspace \
             tests, which build it first)",
            opts.spillway_binary.display()
        );
        let text = run_group_bench(&opts).unwrap_or_else(|e| panic!("{e}"));
        assert!(text.contains("median K=1:"), "{text}");
        let json = text
            .lines()
            .find(|l| l.starts_with('{'))
            .expect("a JSON line");
        let v: serde_json::Value = serde_json::from_str(json).expect("json");
        assert_eq!(v["events"], 2_000);
        assert_eq!(v["checked"], true);
        assert!(
            v["events_per_second"].as_f64().is_some_and(|x| x > 0.0),
            "{v}"
        );
    }
}
