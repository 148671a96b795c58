//! `spillway tune`: inspects the host (cores and topology, memory, io_uring, the locked-memory
//! limit, fsync latency of the state directory, a decode + aggregate micro-benchmark) and
//! writes a tuning profile ([`crate::profile`]) with its reasoning as comments.
//!
//! Measuring ([`inspect_host`]) and deciding ([`profile_text`]) are separate, so the
//! decisions can be tested on made-up hosts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use spillway_connectors::blackhole_sink::BlackholeSinkFactory;
use spillway_connectors::memory_source::MemorySourceFactory;
use spillway_connectors::trades_generator::{TradeGenConfig, TradeGenerator};

use crate::error::{EngineError, Result};
use crate::job::{available_cores, run_program, JobOptions};
use crate::limits::Limits;

/// Default number of generated trades of the micro-benchmark.
pub const BENCH_EVENTS_DEFAULT: u64 = 200_000;
/// Largest number of generated trades of the micro-benchmark (about 70 bytes each).
pub const BENCH_EVENTS_MAX: u64 = 10_000_000;
/// Default number of files written and fsynced to measure fsync latency.
pub const FSYNC_FILES_DEFAULT: usize = 9;
/// Largest number of files of the fsync measurement.
pub const FSYNC_FILES_MAX: usize = 1_000;
/// Bytes written to each file of the fsync measurement.
pub const FSYNC_FILE_BYTES: usize = 4096;
/// A shard's window state may take at most this share of the available memory, all shards
/// together (the rest is for librdkafka's queues, batches and the OS page cache).
const STATE_MEMORY_SHARE: u64 = 2;
/// Bytes of window state one group takes, roughly (key, window, accumulators, hash slot).
const GROUP_BYTES_ESTIMATE: u64 = 100;
/// How long one batch should take to decode and aggregate, so a shard polls its reactor and
/// its source often enough (microseconds).
const BATCH_WORK_US_TARGET: f64 = 1_000.0;

/// What `tune` measures and where.
#[derive(Debug, Clone)]
pub struct TuneOptions {
    /// Directory whose disk the fsync latency is measured on (created if missing).
    pub state_dir: PathBuf,
    /// Trades of the micro-benchmark.
    pub bench_events: u64,
    /// Files written and fsynced.
    pub fsync_files: usize,
}

impl Default for TuneOptions {
    fn default() -> Self {
        TuneOptions {
            state_dir: PathBuf::from("./state"),
            bench_events: BENCH_EVENTS_DEFAULT,
            fsync_files: FSYNC_FILES_DEFAULT,
        }
    }
}

/// What `tune` found out about the host. `Err` values say why something was not measured.
#[derive(Debug, Clone)]
pub struct HostFacts {
    /// The cores this process may run on.
    pub cores: Vec<usize>,
    /// Distinct physical cores among them (from /sys topology), if known.
    pub physical_cores: Option<usize>,
    /// Distinct CPU packages (sockets) among them, if known.
    pub packages: Option<usize>,
    /// `MemTotal` of /proc/meminfo.
    pub memory_total_bytes: Option<u64>,
    /// `MemAvailable` of /proc/meminfo.
    pub memory_available_bytes: Option<u64>,
    /// Whether an io_uring could be created.
    pub io_uring: std::result::Result<(), String>,
    /// Soft RLIMIT_MEMLOCK: `Some(None)` is unlimited, `None` unknown.
    pub memlock_bytes: Option<Option<u64>>,
    /// The state directory measured.
    pub state_dir: PathBuf,
    /// Median latency of writing and fsyncing a small file in the state directory (µs).
    pub fsync_median_us: std::result::Result<u64, String>,
    /// Decode + aggregate throughput of all shards of the micro-benchmark (events/s).
    pub bench_events_per_second: std::result::Result<f64, String>,
    /// Shards (cores) the micro-benchmark ran on.
    pub bench_shards: usize,
}

/// Cores left to librdkafka's threads, the committer and interrupts on a host with `n` cores.
pub fn reserved_cores(n: usize) -> usize {
    match n {
        0..=2 => 0,
        3..=8 => 1,
        _ => 2,
    }
}

/// The cores that run shards: all but the [`reserved_cores`] lowest ones (core 0 usually
/// takes most interrupts).
pub fn shard_cores(cores: &[usize]) -> Vec<usize> {
    cores[reserved_cores(cores.len()).min(cores.len().saturating_sub(1))..].to_vec()
}

fn read_sys_u32(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Counts distinct physical cores and packages of `cores` from /sys (None when absent).
fn topology(cores: &[usize]) -> (Option<usize>, Option<usize>) {
    let mut physical = std::collections::BTreeSet::new();
    let mut packages = std::collections::BTreeSet::new();
    for c in cores {
        let dir = PathBuf::from(format!("/sys/devices/system/cpu/cpu{c}/topology"));
        let package = read_sys_u32(&dir.join("physical_package_id"));
        let core = read_sys_u32(&dir.join("core_id"));
        match (package, core) {
            (Some(p), Some(k)) => {
                packages.insert(p);
                physical.insert((p, k));
            }
            _ => return (None, None),
        }
    }
    (Some(physical.len()), Some(packages.len()))
}

/// A `Key:   123 kB` line of /proc/meminfo, in bytes.
fn meminfo_bytes(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let rest = line[key.len()..].trim_start_matches(':').trim();
    let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
    Some(kb.saturating_mul(1024))
}

/// The soft limit of `Max locked memory` in /proc/self/limits.
fn memlock_from_limits(text: &str) -> Option<Option<u64>> {
    let line = text.lines().find(|l| l.starts_with("Max locked memory"))?;
    let soft = line["Max locked memory".len()..]
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        return Some(None);
    }
    soft.parse().ok().map(Some)
}

fn io_uring_support() -> std::result::Result<(), String> {
    io_uring::IoUring::new(8)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Writes and fsyncs `files` small files in `dir` (created if missing, removed again if so),
/// and returns the median latency in microseconds.
pub fn fsync_median_us(dir: &Path, files: usize) -> Result<u64> {
    use std::io::Write;
    if files == 0 || files > FSYNC_FILES_MAX {
        return Err(EngineError::Config(format!(
            "fsync files = {files} is out of range [1, {FSYNC_FILES_MAX}]"
        )));
    }
    let shown = dir.display();
    let created = !dir.exists();
    std::fs::create_dir_all(dir)
        .map_err(|e| EngineError::io(format!("cannot create the state directory {shown}"), e))?;
    let block = vec![0x5au8; FSYNC_FILE_BYTES];
    let mut samples = Vec::with_capacity(files);
    let mut result = Ok(());
    for i in 0..files {
        let path = dir.join(format!(".spillway-tune-fsync-{}-{i}", std::process::id()));
        let started = Instant::now();
        let written = std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(&block).and_then(|_| f.sync_all()));
        samples.push(started.elapsed().as_micros() as u64);
        let _ = std::fs::remove_file(&path);
        if let Err(e) = written {
            result = Err(EngineError::io(
                format!("cannot write and fsync {}", path.display()),
                e,
            ));
            break;
        }
    }
    if created {
        let _ = std::fs::remove_dir(dir);
    }
    result?;
    samples.sort_unstable();
    Ok(samples[samples.len() / 2])
}

/// Runs `examples/trades.sql` (decode + 1 s tumbling window aggregate) over `events`
/// generated trades in memory into the blackhole sink on `cores`; checks what it read and
/// returns events per second.
pub fn micro_benchmark(events: u64, cores: &[usize]) -> Result<f64> {
    if events == 0 || events > BENCH_EVENTS_MAX {
        return Err(EngineError::Config(format!(
            "micro-benchmark events = {events} is out of range [1, {BENCH_EVENTS_MAX}]"
        )));
    }
    let shards = cores.len().max(1);
    let mut generator = TradeGenerator::new(TradeGenConfig {
        seed: 42,
        events_per_second: 100_000,
        disorder_ms: 200,
        ..TradeGenConfig::default()
    });
    let mut buffers: Vec<Vec<u8>> = (0..shards)
        .map(|_| Vec::with_capacity((events as usize / shards + 1) * 72))
        .collect();
    for i in 0..events {
        let trade = generator.next();
        let buf = &mut buffers[(i % shards as u64) as usize];
        generator.write_json(&trade, buf);
        buf.push(b'\n');
    }
    let mut program = crate::sql::parse_program(crate::demo::TRADES_SQL)?;
    for table in program.tables.values_mut() {
        if table.name.eq_ignore_ascii_case("stats") {
            table.options.clear();
            table.options.insert("connector".into(), "blackhole".into());
        }
    }
    let sink = Arc::new(BlackholeSinkFactory::default());
    let opts = JobOptions {
        shards: Some(shards),
        cores: Some(cores.to_vec()),
        source_override: Some(Arc::new(MemorySourceFactory::new(
            "trades",
            buffers.into_iter().map(Arc::new).collect(),
        ))),
        sink_override: Some(sink.clone()),
        ..JobOptions::default()
    };
    let report = run_program(&program, &opts)?;
    let wrong = |what: String| {
        Err(EngineError::Internal(format!(
            "the tune micro-benchmark got a wrong result: {what}"
        )))
    };
    if report.records_in() != events {
        return wrong(format!("read {} of {events} trades", report.records_in()));
    }
    if report.skipped_total() > 0 || report.late_events() > 0 {
        return wrong(format!(
            "skipped {:?}, {} late",
            report.skipped(),
            report.late_events()
        ));
    }
    if report.rows_out() == 0 || sink.rows_total() != report.rows_out() {
        return wrong(format!(
            "{} result rows, the sink got {}",
            report.rows_out(),
            sink.rows_total()
        ));
    }
    Ok(report.events_per_second())
}

/// Measures the host.
pub fn inspect_host(opts: &TuneOptions) -> Result<HostFacts> {
    if opts.bench_events == 0 || opts.bench_events > BENCH_EVENTS_MAX {
        return Err(EngineError::Config(format!(
            "micro-benchmark events = {} is out of range [1, {BENCH_EVENTS_MAX}]",
            opts.bench_events
        )));
    }
    if opts.fsync_files == 0 || opts.fsync_files > FSYNC_FILES_MAX {
        return Err(EngineError::Config(format!(
            "fsync files = {} is out of range [1, {FSYNC_FILES_MAX}]",
            opts.fsync_files
        )));
    }
    let cores = available_cores();
    let (physical_cores, packages) = topology(&cores);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let bench_cores = shard_cores(&cores);
    let bench = micro_benchmark(opts.bench_events, &bench_cores);
    Ok(HostFacts {
        physical_cores,
        packages,
        memory_total_bytes: meminfo_bytes(&meminfo, "MemTotal"),
        memory_available_bytes: meminfo_bytes(&meminfo, "MemAvailable"),
        io_uring: io_uring_support(),
        memlock_bytes: memlock_from_limits(&limits),
        state_dir: opts.state_dir.clone(),
        fsync_median_us: fsync_median_us(&opts.state_dir, opts.fsync_files)
            .map_err(|e| e.to_string()),
        bench_events_per_second: bench.map_err(|e| e.to_string()),
        bench_shards: bench_cores.len(),
        cores,
    })
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// The profile `tune` writes for a host, with its reasoning as comments. It loads back with
/// [`crate::profile::Profile::from_toml_str`] on that host.
pub fn profile_text(facts: &HostFacts) -> String {
    let d = Limits::default();
    let n = facts.cores.len();
    let shard_cores = shard_cores(&facts.cores);
    let shards = shard_cores.len().max(1) as u64;
    let mut t = String::new();
    let mut line = |s: String| {
        t.push_str(&s);
        t.push('\n');
    };
    line("# spillway tuning profile written by `spillway tune`; see tuning/README.md.".into());
    line("# Load it with `spillway run QUERY.sql --profile FILE`.".into());
    line(String::new());
    // Cores.
    let topo = match (facts.physical_cores, facts.packages) {
        (Some(p), Some(s)) => format!("{p} physical cores in {s} package(s)"),
        _ => "topology unknown (no /sys/devices/system/cpu/*/topology)".into(),
    };
    line(format!("# {n} cores available ({topo})."));
    if facts.physical_cores.is_some_and(|p| p < n) {
        line(
            "# SMT: sibling hyper-threads share a core's caches; shards on siblings run slower."
                .into(),
        );
    }
    if shard_cores.len() == n {
        line(format!(
            "# {n} cores: all run shards; librdkafka threads share them (cores left out = every core)."
        ));
        line(
            "# Shards not pinned: librdkafka's threads need the same cores, and a pinned shard \
             cannot\n# move away from them (pinned, 4 of 15 latency runs had a 50-110 ms stall on \
             2 cores:\n# docs/benchmarks.md, Latency)."
                .to_string(),
        );
        line("pin = false".to_string());
    } else {
        let reserved = &facts.cores[..n - shard_cores.len()];
        line(format!(
            "# cores {reserved:?} are left to librdkafka threads, the committer and interrupts;"
        ));
        line(format!(
            "# the other {} run one shard each.",
            shard_cores.len()
        ));
        line(format!("cores = {shard_cores:?}"));
    }
    line(String::new());
    // Memory, io_uring, memlock, fsync: facts that later settings build on.
    match (facts.memory_total_bytes, facts.memory_available_bytes) {
        (Some(total), Some(avail)) => line(format!(
            "# memory: {} total, {} available.",
            mib(total),
            mib(avail)
        )),
        _ => line(
            "# memory: unknown (no /proc/meminfo); memory limits kept at their defaults.".into(),
        ),
    }
    match &facts.io_uring {
        Ok(()) => line("# io_uring: available (the state log can use it).".into()),
        Err(e) => line(format!(
            "# io_uring: not available ({e}); the state log falls back to plain I/O."
        )),
    }
    match facts.memlock_bytes {
        Some(None) => line("# locked-memory limit (RLIMIT_MEMLOCK): unlimited.".into()),
        Some(Some(b)) if b < 1 << 20 => line(format!(
            "# locked-memory limit (RLIMIT_MEMLOCK): {b} bytes, low: io_uring rings on kernels \
             before 5.12 need locked memory; raise it (ulimit -l)."
        )),
        Some(Some(b)) => line(format!(
            "# locked-memory limit (RLIMIT_MEMLOCK): {} bytes.",
            b
        )),
        None => line("# locked-memory limit: unknown (no /proc/self/limits).".into()),
    }
    match &facts.fsync_median_us {
        Ok(us) => line(format!(
            "# fsync median {:.2} ms ({} KiB files in {}).",
            *us as f64 / 1000.0,
            FSYNC_FILE_BYTES / 1024,
            facts.state_dir.display()
        )),
        Err(e) => line(format!("# fsync: not measured ({e}).")),
    }
    line(String::new());
    // Limits.
    line("[limits]".into());
    let per_shard_eps = facts
        .bench_events_per_second
        .as_ref()
        .ok()
        .map(|eps| eps / facts.bench_shards.max(1) as f64);
    let batch_rows = match per_shard_eps {
        Some(eps) if eps > 0.0 => {
            let rows = (eps * BATCH_WORK_US_TARGET / 1e6).clamp(1024.0, 16384.0) as usize;
            let rows = 1usize << (usize::BITS - 1 - rows.leading_zeros());
            line(format!(
                "# decode + aggregate ran at {:.0} events/s per shard ({} shard(s)): a batch of",
                eps, facts.bench_shards
            ));
            line(format!(
                "# {rows} rows takes about {:.2} ms, short enough for a shard to see its reactor often.",
                rows as f64 / eps * 1000.0
            ));
            rows
        }
        _ => {
            let why = facts
                .bench_events_per_second
                .as_ref()
                .err()
                .cloned()
                .unwrap_or_else(|| "no events".into());
            line(format!(
                "# micro-benchmark failed ({why}); batch size kept at its default."
            ));
            d.batch_rows_max
        }
    };
    line(format!("batch_rows_max = {batch_rows}"));
    let batch_bytes = (batch_rows * 1024).clamp(d.batch_bytes_max, 64 << 20);
    line("# about 1 KiB per record at most, never below the default.".into());
    line(format!("batch_bytes_max = {batch_bytes}"));
    line("# default: larger records are skipped and counted.".into());
    line(format!("record_bytes_max = {}", d.record_bytes_max));
    let (state_bytes, groups) = match facts.memory_available_bytes {
        Some(avail) => {
            let per_shard = (avail / STATE_MEMORY_SHARE / shards).clamp(1 << 26, 1 << 40);
            let per_shard = per_shard & !((1 << 20) - 1);
            line(format!(
                "# window state: half the available memory over {shards} shard(s) = {} per shard;",
                mib(per_shard)
            ));
            line(format!(
                "# about {GROUP_BYTES_ESTIMATE} bytes per group bounds the groups."
            ));
            (
                per_shard,
                (per_shard / GROUP_BYTES_ESTIMATE).clamp(1000, 1 << 32),
            )
        }
        None => {
            line("# window state: defaults (memory unknown).".into());
            (d.state_bytes_max as u64, d.state_groups_max as u64)
        }
    };
    line(format!("state_bytes_max = {state_bytes}"));
    line(format!("state_groups_max = {groups}"));
    line(format!("windows_open_max = {}", d.windows_open_max));
    line(format!("sessions_open_max = {}", d.sessions_open_max));
    line(format!("exchange_queue_max = {}", d.exchange_queue_max));
    let poll_idle_us = if shard_cores.len() == n {
        line("# shards share their cores with librdkafka: sleep a little longer when idle.".into());
        200
    } else {
        line("# shards own their cores: poll again soon when idle, for latency.".into());
        50
    };
    line(format!("poll_idle_us = {poll_idle_us}"));
    line(format!(
        "idle_timeout_ms_default = {}",
        d.idle_timeout_ms_default
    ));
    line(String::new());
    // Kafka.
    line("[kafka]".into());
    line(
        "# low latency: the broker answers a fetch after 10 ms at most (librdkafka: 500 ms)."
            .into(),
    );
    line("fetch.wait.max.ms = 10".into());
    line("fetch.min.bytes = 1".into());
    line("# producers batch for at most 5 ms.".into());
    line("linger.ms = 5".into());
    if let Some(avail) = facts.memory_available_bytes {
        let kb = (avail / 1024 / 16 / shards).clamp(4096, 65536);
        line(format!(
            "# pre-fetch queue per consumer: 1/16 of available memory over {shards} shard(s), \
             at most librdkafka's default."
        ));
        line(format!("queued.max.messages.kbytes = {kb}"));
    }
    t
}

/// Measures the host and returns its facts and the profile text.
pub fn run_tune(opts: &TuneOptions) -> Result<(HostFacts, String)> {
    let facts = inspect_host(opts)?;
    let text = profile_text(&facts);
    Ok((facts, text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;

    fn fake_host(cores: usize, memory_gib: u64) -> HostFacts {
        HostFacts {
            cores: (0..cores).collect(),
            physical_cores: Some(cores / 2),
            packages: Some(1),
            memory_total_bytes: Some(memory_gib << 30),
            memory_available_bytes: Some((memory_gib << 30) / 4 * 3),
            io_uring: Err("Operation not permitted".into()),
            memlock_bytes: Some(Some(65536)),
            state_dir: PathBuf::from("./state"),
            fsync_median_us: Ok(1800),
            bench_events_per_second: Ok(3_000_000.0),
            bench_shards: shard_cores(&(0..cores).collect::<Vec<_>>()).len(),
        }
    }

    #[test]
    fn reserved_cores_grow_with_the_host() {
        assert_eq!(shard_cores(&[0]), vec![0]);
        assert_eq!(shard_cores(&[0, 1]), vec![0, 1]);
        assert_eq!(shard_cores(&[0, 1, 2, 3]), vec![1, 2, 3]);
        assert_eq!(
            shard_cores(&(0..16).collect::<Vec<_>>()),
            (2..16).collect::<Vec<_>>()
        );
    }

    #[test]
    fn made_up_hosts_give_profiles_that_load() {
        for (cores, gib) in [(1, 1), (2, 4), (4, 8), (16, 64), (128, 1024)] {
            let facts = fake_host(cores, gib);
            let text = profile_text(&facts);
            let p = Profile::from_toml_str(&text, "tuned.toml")
                .unwrap_or_else(|e| panic!("{cores} cores: {e}\n{text}"));
            p.check_cores(&facts.cores, "tuned.toml").unwrap();
            assert!(text.contains("# fsync median 1.80 ms"), "{text}");
            assert!(text.contains("io_uring: not available"), "{text}");
            let shards = shard_cores(&facts.cores).len() as u64;
            assert!(
                p.limits.state_bytes_max as u64 * shards
                    <= facts.memory_available_bytes.unwrap().max(shards << 26)
            );
            assert_eq!(
                p.kafka.get("fetch.wait.max.ms").map(String::as_str),
                Some("10")
            );
            if cores <= 2 {
                assert_eq!(p.cores, None, "{text}");
                assert!(text.contains("all run shards; librdkafka threads share them"));
            } else {
                assert!(!p.cores.as_ref().unwrap().contains(&0));
            }
        }
    }

    #[test]
    fn failed_measurements_keep_defaults() {
        let mut facts = fake_host(2, 4);
        facts.bench_events_per_second = Err("no shards".into());
        facts.memory_available_bytes = None;
        facts.fsync_median_us = Err("read-only".into());
        let text = profile_text(&facts);
        let p = Profile::from_toml_str(&text, "t.toml").unwrap();
        let d = Limits::default();
        assert_eq!(p.limits.batch_rows_max, d.batch_rows_max);
        assert_eq!(p.limits.state_bytes_max, d.state_bytes_max);
        assert!(text.contains("fsync: not measured (read-only)"), "{text}");
    }

    #[test]
    fn proc_files_are_parsed() {
        let meminfo = "MemTotal:       16310832 kB\nMemFree:  1 kB\nMemAvailable:    8000000 kB\n";
        assert_eq!(meminfo_bytes(meminfo, "MemTotal"), Some(16310832 * 1024));
        assert_eq!(meminfo_bytes(meminfo, "MemAvailable"), Some(8000000 * 1024));
        assert_eq!(meminfo_bytes(meminfo, "SwapTotal"), None);
        let limits =
            "Max open files  1024  4096  files\nMax locked memory  8388608  8388608  bytes\n";
        assert_eq!(memlock_from_limits(limits), Some(Some(8388608)));
        let limits = "Max locked memory  unlimited  unlimited  bytes\n";
        assert_eq!(memlock_from_limits(limits), Some(None));
    }

    #[test]
    fn fsync_is_measured_and_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let us = fsync_median_us(&state, 3).unwrap();
        assert!(us > 0 && us < 10_000_000, "{us}");
        assert!(
            !state.exists(),
            "a state directory tune created is removed again"
        );
        assert!(fsync_median_us(dir.path(), 0).is_err());
    }

    #[test]
    fn tune_output_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let opts = TuneOptions {
            state_dir: dir.path().to_path_buf(),
            bench_events: 20_000,
            fsync_files: 3,
        };
        let (facts, text) = run_tune(&opts).unwrap();
        let eps = facts.bench_events_per_second.clone().unwrap();
        assert!(eps > 0.0);
        assert!(facts.fsync_median_us.is_ok());
        let path = dir.path().join("tuned.toml");
        std::fs::write(&path, &text).unwrap();
        let p = Profile::load(&path).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(p.limits.batch_rows_max >= 1024 && p.limits.batch_rows_max <= 16384);
        assert!(text.contains("# fsync median"), "{text}");
    }
}
