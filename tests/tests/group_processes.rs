//! Several `spillway run` (or `serve`) processes share one job through Kafka consumer groups,
//! on librdkafka's mock cluster and on tansu (group mode,
//! `'scan.partition-assignment' = 'group'`): processes join, leave with SIGTERM and crash with
//! SIGKILL while trades arrive, and the results their exactly-once filesystem sinks committed
//! (under `<path>/partition-<r>/`) must equal the oracle's: each row once, none missing, none
//! extra. A window needing a partition another process reads waits for it (the watermark is
//! the minimum over every source partition of the whole group).
//!
//! Trades are spread over the partitions round-robin, so every symbol is on every partition
//! and every result combines rows forwarded by several processes. After the data, one sentinel
//! trade per partition far beyond it moves the watermark past every data window; the
//! sentinels' own windows never fire (nothing comes after them), so the oracle is computed
//! over the data alone.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use spillway_connectors::embedded_kafka::EmbeddedKafka;
use spillway_tests::compare::compare_rows;
use spillway_tests::data::{generate_trades, produce_lines, PartitionBy, TimeFormat, TradeSpec};
use spillway_tests::group_run::{
    group_committed_rows, group_job_sql, max_event_ts, repeated_results, sentinel_line,
    window_end_ms, GroupJobSpec, GroupProcesses, GroupStorage,
};
use spillway_tests::job::Scratch;
use spillway_tests::kafka::{
    committed_offsets, high_watermarks, produce, topic_partitions, Batching,
};
use spillway_tests::tansu::TansuBroker;
use spillway_tests::trades_stats::trades_stats_rows;

const BOUND_MS: i64 = 300;
const WINDOW_MS: i64 = 100;
const IDLE_TIMEOUT_S: u64 = 60;
const KEYS: [&str; 2] = ["window_start", "symbol"];
/// A SIGTERM'd process must have stopped (final checkpoint, revokes) within this.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// The first results of a freshly started group (joins, first checkpoints) come within this.
const FIRST_ROWS_TIMEOUT: Duration = Duration::from_secs(60);
/// Every result is committed within this after the last input.
const ALL_ROWS_TIMEOUT: Duration = Duration::from_secs(120);
/// How far beyond the data the sentinels' event time is.
const SENTINEL_AFTER_MS: i64 = 60_000;

fn trades(events: usize, seed: u64, symbols: usize, events_per_second: u64) -> Vec<String> {
    generate_trades(&TradeSpec {
        events,
        seed,
        symbols,
        events_per_second,
        disorder_ms: 200,
        times: TimeFormat::EpochMs,
        ..TradeSpec::default()
    })
}

fn job_spec(
    scratch: &Scratch,
    bootstrap: &str,
    topic: &str,
    group: &str,
    storage: GroupStorage,
) -> GroupJobSpec {
    GroupJobSpec {
        bootstrap: bootstrap.to_string(),
        topic: topic.to_string(),
        group: group.to_string(),
        bound_ms: BOUND_MS,
        window_ms: WINDOW_MS,
        idle_timeout_s: IDLE_TIMEOUT_S,
        out: scratch.path("out"),
        storage,
    }
}

/// Writes the job's SQL into the scratch directory; the processes that will run it.
fn processes_for(scratch: &Scratch, spec: &GroupJobSpec) -> GroupProcesses {
    let sql = scratch.path("job.sql");
    std::fs::write(&sql, group_job_sql(spec)).expect("write the job's SQL");
    let logs = scratch.path("logs");
    std::fs::create_dir_all(&logs).expect("log directory");
    GroupProcesses::new(&sql, &logs, &spec.storage)
}

/// One sentinel per partition of `topic`, after everything else on it.
fn produce_sentinels(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    lines: &[String],
    batching: Batching,
) {
    let line = sentinel_line(sentinel_ts(lines));
    let records = (0..partitions).map(|p| (p, line.as_bytes()));
    let n = produce(bootstrap, topic, records, batching).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, partitions as u64);
}

fn produce_round_robin(
    bootstrap: &str,
    topic: &str,
    lines: &[String],
    partitions: i32,
    batching: Batching,
) {
    let n = produce_lines(
        bootstrap,
        topic,
        lines,
        partitions,
        PartitionBy::RoundRobin,
        batching,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, lines.len() as u64);
}

fn sentinel_ts(lines: &[String]) -> i64 {
    let last = max_event_ts(lines)
        .unwrap_or_else(|e| panic!("{e}"))
        .expect("some data");
    last + SENTINEL_AFTER_MS
}

/// Waits for every expected result, stops the processes still running with SIGTERM (each
/// must exit 0), and checks the committed results against the oracle: each once, none
/// missing, none extra. Every failure found is reported together.
fn finish_and_check(
    processes: &mut GroupProcesses,
    out: &Path,
    expected: &[Value],
    started: Instant,
) {
    let mut failures = Vec::new();
    match processes.wait_for_rows(out, expected.len(), ALL_ROWS_TIMEOUT) {
        Ok((rows, waited)) => eprintln!(
            "{rows} of {} rows committed {waited:.1?} after the last input ({:.1?} into the test)",
            expected.len(),
            started.elapsed()
        ),
        Err(e) => failures.push(e),
    }
    for name in processes.running() {
        match processes.terminate(&name, STOP_TIMEOUT) {
            Ok(took) => eprintln!("{name} stopped {took:.1?} after SIGTERM"),
            Err(e) => failures.push(e),
        }
    }
    let rows = group_committed_rows(out).unwrap_or_else(|e| panic!("{e}"));
    let repeated = repeated_results(&rows);
    if let Some(first) = repeated.first() {
        failures.push(format!(
            "{} results were published more than once, e.g. {first}",
            repeated.len()
        ));
    }
    if rows.iter().any(|r| r["symbol"] == "SENTINEL") {
        failures.push("a sentinel's window fired although nothing came after it".to_string());
    }
    match compare_rows(&rows, expected, &KEYS) {
        Ok(()) => eprintln!(
            "{} rows equal the oracle's; the test took {:.1?}",
            rows.len(),
            started.elapsed()
        ),
        Err(e) => failures.push(e),
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The scenario both brokers run, on a group whose source topic `TOPIC` (4 partitions)
/// exists: p1 and p2 start on the first quarter of the trades; p3 joins and p2 leaves
/// (SIGTERM) during the second; p1 is killed (SIGKILL) during the third and p4 starts; then
/// the last quarter and the sentinels. Every process keeps its own local checkpoint
/// directory, so a partition's state reaches its next owner only through the state topic.
/// Checks the results against the oracle (each once), that some process restored from the
/// state topic, and that the forwarders committed the end of every source partition.
fn join_leave_and_crash(bootstrap: &str, group: &str, lines: &[String], batching: Batching) {
    const TOPIC: &str = "trades";
    const PARTITIONS: i32 = 4;
    let started = Instant::now();
    let expected = trades_stats_rows(lines, WINDOW_MS);
    let scratch = Scratch::new();
    let storage = GroupStorage::StateTopic(scratch.path("state"));
    let spec = job_spec(&scratch, bootstrap, TOPIC, group, storage);
    let mut processes = processes_for(&scratch, &spec);
    let quarter = lines.len() / 4;
    let chunks: Vec<&[String]> = lines.chunks(quarter).collect();
    assert_eq!(chunks.len(), 4);

    produce_round_robin(bootstrap, TOPIC, chunks[0], PARTITIONS, batching);
    processes.start("p1").expect("start p1");
    processes.start("p2").expect("start p2");
    let (rows, took) = processes
        .wait_for_rows(&spec.out, 1, FIRST_ROWS_TIMEOUT)
        .unwrap_or_else(|e| panic!("p1 and p2 on the first quarter: {e}"));
    eprintln!("p1+p2: first {rows} rows committed after {took:.1?}");

    produce_round_robin(bootstrap, TOPIC, chunks[1], PARTITIONS, batching);
    processes.start("p3").expect("start p3");
    std::thread::sleep(Duration::from_secs(3));
    let took = processes
        .terminate("p2", STOP_TIMEOUT)
        .unwrap_or_else(|e| panic!("p2 leaves: {e}"));
    eprintln!("p2 left (SIGTERM) in {took:.1?}");

    produce_round_robin(bootstrap, TOPIC, chunks[2], PARTITIONS, batching);
    std::thread::sleep(Duration::from_secs(2));
    processes.check_running().unwrap_or_else(|e| panic!("{e}"));
    processes
        .kill("p1")
        .unwrap_or_else(|e| panic!("p1 crashes: {e}"));
    eprintln!(
        "p1 killed (SIGKILL) {:.1?} into the test",
        started.elapsed()
    );
    processes.start("p4").expect("start p4");

    produce_round_robin(bootstrap, TOPIC, chunks[3], PARTITIONS, batching);
    produce_sentinels(bootstrap, TOPIC, PARTITIONS, lines, batching);

    finish_and_check(&mut processes, &spec.out, &expected, started);
    let restorers = processes.logs_with_line(&["restored checkpoint", "from state topic"]);
    assert!(
        !restorers.is_empty(),
        "no process restored a partition's checkpoint from the state topic"
    );
    eprintln!("restored from the state topic by: {restorers:?}");

    // The forwarders committed every source offset (the next one to read) to the group.
    let ends = high_watermarks(bootstrap, TOPIC).expect("ends");
    assert_eq!(
        ends.iter().sum::<i64>(),
        lines.len() as i64 + i64::from(PARTITIONS)
    );
    let committed = committed_offsets(bootstrap, group, TOPIC).expect("committed offsets");
    let ends: Vec<Option<i64>> = ends.into_iter().map(Some).collect();
    assert_eq!(
        committed, ends,
        "group {group} committed the end of every partition"
    );
}

#[test]
fn processes_join_leave_and_crash_on_the_mock_cluster() {
    const GROUP: &str = "spillway-group-test";
    let lines = trades(24_000, 8_001, 32, 2_000);
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    // The mock cluster does not create topics: the repartition and state topics too.
    for (topic, partitions) in [
        ("trades".to_string(), 4),
        (format!("{GROUP}-repartition"), 4),
        (format!("{GROUP}-state"), 4),
    ] {
        kafka.create_topic(&topic, partitions).expect("topic");
    }
    join_leave_and_crash(&kafka.bootstrap_servers(), GROUP, &lines, Batching::Default);
}

/// `spillway serve` runs a group-mode query like `spillway run`: two servers of the same
/// configuration (each with its own `state_dir`) share the job; both stop on SIGTERM with exit
/// code 0, and the results equal the oracle's, each once.
#[test]
fn serve_processes_share_a_job_on_the_mock_cluster() {
    const TOPIC: &str = "trades";
    const GROUP: &str = "spillway-group-serve";
    const PARTITIONS: i32 = 4;
    let started = Instant::now();
    let lines = trades(6_000, 8_005, 16, 2_000);
    let expected = trades_stats_rows(&lines, WINDOW_MS);
    let scratch = Scratch::new();
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    let bootstrap = kafka.bootstrap_servers();
    for topic in [
        TOPIC.to_string(),
        format!("{GROUP}-repartition"),
        format!("{GROUP}-state"),
    ] {
        kafka.create_topic(&topic, PARTITIONS).expect("topic");
    }
    let storage = GroupStorage::StateTopic(scratch.path("state"));
    let spec = job_spec(&scratch, &bootstrap, TOPIC, GROUP, storage);
    let mut processes = processes_for(&scratch, &spec);
    processes.start_serve("s1").expect("start s1");
    processes.start_serve("s2").expect("start s2");
    produce_round_robin(&bootstrap, TOPIC, &lines, PARTITIONS, Batching::Default);
    produce_sentinels(&bootstrap, TOPIC, PARTITIONS, &lines, Batching::Default);
    finish_and_check(&mut processes, &spec.out, &expected, started);
    let members = processes.logs_with_line(&["job instance started"]);
    assert_eq!(
        members,
        vec!["s1".to_string(), "s2".to_string()],
        "both servers ran job instances"
    );
}

#[test]
fn a_window_waits_for_partitions_read_by_other_processes() {
    const TOPIC: &str = "trades-wait";
    const GROUP: &str = "spillway-group-wait";
    const PARTITIONS: i32 = 2;
    const EVENTS_PER_SECOND: u64 = 800;
    let started = Instant::now();
    // 20 s of event time, every symbol on both partitions.
    let lines = trades(16_000, 8_002, 16, EVENTS_PER_SECOND);
    let expected = trades_stats_rows(&lines, WINDOW_MS);
    let (p0, p1): (Vec<_>, Vec<_>) = lines.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let p0: Vec<String> = p0.into_iter().map(|(_, l)| l.clone()).collect();
    // Partition 1 only up to 5 s of event time at first.
    let early_index_end = 5 * EVENTS_PER_SECOND as usize;
    let (p1_early, p1_late): (Vec<_>, Vec<_>) =
        p1.into_iter().partition(|(i, _)| *i < early_index_end);
    let p1_early: Vec<String> = p1_early.into_iter().map(|(_, l)| l.clone()).collect();
    let p1_late: Vec<String> = p1_late.into_iter().map(|(_, l)| l.clone()).collect();

    let scratch = Scratch::new();
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    let bootstrap = kafka.bootstrap_servers();
    kafka.create_topic(TOPIC, PARTITIONS).expect("source topic");
    kafka
        .create_topic(&format!("{GROUP}-repartition"), PARTITIONS)
        .expect("repartition topic");
    let storage = GroupStorage::SharedDirectory(scratch.path("state"));
    let spec = job_spec(&scratch, &bootstrap, TOPIC, GROUP, storage);
    let mut processes = processes_for(&scratch, &spec);

    let to = |p: i32, lines: &[String]| -> Vec<(i32, Vec<u8>)> {
        lines.iter().map(|l| (p, l.clone().into_bytes())).collect()
    };
    let first: Vec<(i32, Vec<u8>)> = to(0, &p0).into_iter().chain(to(1, &p1_early)).collect();
    let n = produce(
        &bootstrap,
        TOPIC,
        first.iter().map(|(p, b)| (*p, &b[..])),
        Batching::Default,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, first.len() as u64);
    let ends_first = high_watermarks(&bootstrap, TOPIC).expect("ends");
    assert_eq!(ends_first, vec![p0.len() as i64, p1_early.len() as i64]);

    processes.start("p1").expect("start p1");
    processes.start("p2").expect("start p2");
    let (rows, took) = processes
        .wait_for_rows(&spec.out, 1, FIRST_ROWS_TIMEOUT)
        .unwrap_or_else(|e| panic!("first results: {e}"));
    eprintln!("first {rows} rows committed after {took:.1?}");
    // Both partitions have been forwarded to the end: what holds the windows is partition 1's
    // event time, not data that was not read yet.
    let want: Vec<Option<i64>> = ends_first.iter().copied().map(Some).collect();
    processes
        .wait_until(
            "the forwarders committed both partitions to their ends",
            FIRST_ROWS_TIMEOUT,
            || committed_offsets(&bootstrap, GROUP, TOPIC).ok().as_ref() == Some(&want),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_secs(4));
    processes.check_running().unwrap_or_else(|e| panic!("{e}"));

    let ts_max_p0 = max_event_ts(&p0).expect("p0").expect("p0 has data");
    let ts_max_p1 = max_event_ts(&p1_early).expect("p1").expect("p1 has data");
    let watermark_ms = ts_max_p0.min(ts_max_p1) - BOUND_MS;
    assert!(ts_max_p0 > ts_max_p1 + 10_000, "partition 0 is far ahead");
    let rows = group_committed_rows(&spec.out).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !rows.is_empty(),
        "windows before partition 1's watermark fired"
    );
    let mut end_max = i64::MIN;
    for row in &rows {
        let end = window_end_ms(row).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            end <= watermark_ms,
            "window ending {} ms after the start fired while partition 1's watermark is at {} ms: {row}",
            end - TradeSpec::default().start_ts_ms,
            watermark_ms - TradeSpec::default().start_ts_ms
        );
        end_max = end_max.max(end);
    }
    eprintln!(
        "{} rows committed while partition 1 lags: last window end {} ms, watermark {} ms (partition 0 at {} ms)",
        rows.len(),
        end_max - TradeSpec::default().start_ts_ms,
        watermark_ms - TradeSpec::default().start_ts_ms,
        ts_max_p0 - TradeSpec::default().start_ts_ms,
    );

    let rest = to(1, &p1_late);
    let n = produce(
        &bootstrap,
        TOPIC,
        rest.iter().map(|(p, b)| (*p, &b[..])),
        Batching::Default,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, rest.len() as u64);
    produce_sentinels(&bootstrap, TOPIC, PARTITIONS, &lines, Batching::Default);

    finish_and_check(&mut processes, &spec.out, &expected, started);
}

/// tansu 0.6 answers a fetch at an offset inside a record batch with the batches after it;
/// the repartition source reads such skipped records again (see `repartition_resume.rs`).
/// The source topic is written one record per batch: the forwarders resume from the
/// group's committed offsets, anywhere in a producer's batch, and a general source topic
/// may have real gaps (compaction, transactions), so nothing can be read again there.
#[test]
fn processes_join_leave_and_crash_on_tansu() {
    const GROUP: &str = "spillway-group-tansu";
    let lines = trades(8_000, 8_003, 24, 1_000);
    let tansu = TansuBroker::start().unwrap_or_else(|e| panic!("tansu: {e}"));
    // The source topic only: spillway creates the repartition and state topics itself.
    tansu.create_topic("trades", 4).expect("source topic");
    let bootstrap = tansu.bootstrap_servers();
    join_leave_and_crash(&bootstrap, GROUP, &lines, Batching::OneRecordPerBatch);
    assert_eq!(
        topic_partitions(&bootstrap, &format!("{GROUP}-repartition")),
        Ok(4),
        "spillway created the repartition topic with the source's partition count"
    );
    assert_eq!(
        topic_partitions(&bootstrap, &format!("{GROUP}-state")),
        Ok(4),
        "spillway created the state topic with the repartition topic's partition count"
    );
}
