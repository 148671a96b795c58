//! Processing-time windows (`p_time AS PROCTIME()`) end to end: Nexmark q12
//! (`examples/nexmark/q12.sql`, with 1 s windows) three ways (straight; bids out of order in
//! event time, which processing time ignores; 4 partitions on 2 shards), each checked
//! against a batch count per bidder; windows firing by the wall clock with no new input (a
//! `spillway run` process reading an unbounded Kafka topic, its printed rows timed as they
//! appear); checkpoints with recovery on other core counts; the DDL and planning errors;
//! the lateness options refused at run time; and EXPLAIN.
//!
//! Processing-time results are not reproducible row by row: the oracle is what is: every
//! bid counted exactly once across windows, each bidder's total equal to the batch count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use spillway_connectors::embedded_kafka::EmbeddedKafka;
use spillway_connectors::nexmark::{EventKind, StreamConfig};
use spillway_engine::checkpoint::CheckpointConfig;
use spillway_engine::job::{prepare, run_program, JobOptions, JobReport};
use spillway_engine::plan::Program;
use spillway_engine::sql::parse_program;
use spillway_engine::EngineError;
use spillway_tests::compare::read_json_lines;
use spillway_tests::data::{produce_lines, PartitionBy};
use spillway_tests::job::{options, Scratch};
use spillway_tests::kafka::Batching;
use spillway_tests::nexmark_oracle::{events_of, nexmark_program};
use spillway_tests::oracle::parse_time;
use spillway_tests::process::{committed_rows, start_run, terminate};

/// Nexmark q12 as the example file has it (10 s windows).
const Q12: &str = include_str!("../../examples/nexmark/q12.sql");
const SEED: u64 = 20_261_124;
/// Window size of the test runs.
const WINDOW_MS: i64 = 1_000;
/// Events of the whole stream: at [`RATE`] about 3 s of wall clock, so 3 to 5 windows.
const EVENTS: u64 = 6_000;
/// Events per wall-clock second (and per second of event time).
const RATE: u64 = 2_000;
/// Within q12's 4 s watermark bound on the event-time column.
const DISORDER_MS: u64 = 3_000;
/// Clock slack of the timing checks (rounding, polling the output).
const SLACK_MS: i64 = 100;

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// q12 with windows of [`WINDOW_MS`].
fn q12_sql() -> String {
    let sql = Q12.replace(
        "DESCRIPTOR(p_time), INTERVAL '10' SECOND",
        "DESCRIPTOR(p_time), INTERVAL '1' SECOND",
    );
    assert_ne!(sql, Q12, "q12.sql windows on p_time for 10 s");
    sql
}

/// One q12 result row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Row {
    bidder: i64,
    start: i64,
    end: i64,
    count: i64,
}

fn row_of(value: &Value, starts: &str, ends: &str, counts: &str) -> Row {
    let field = |name: &str| {
        value
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in {value}"))
    };
    let time = |name: &str| parse_time(field(name)).unwrap_or_else(|| panic!("{name} in {value}"));
    Row {
        bidder: field("bidder")
            .as_i64()
            .unwrap_or_else(|| panic!("bidder in {value}")),
        start: time(starts),
        end: time(ends),
        count: field(counts)
            .as_i64()
            .unwrap_or_else(|| panic!("{counts} in {value}")),
    }
}

/// Checks what every processing-time window result must satisfy: aligned windows of
/// [`WINDOW_MS`] within the wall-clock span `[from_ms, to_ms]` of the run, each bidder and
/// window at most once, and each bidder's counts summing to `expected`. Returns the windows.
fn check_windows(
    what: &str,
    rows: &[Row],
    expected: &BTreeMap<i64, i64>,
    from_ms: i64,
    to_ms: i64,
) -> BTreeSet<i64> {
    let mut pairs = BTreeSet::new();
    let mut totals: BTreeMap<i64, i64> = BTreeMap::new();
    for row in rows {
        assert_eq!(row.end - row.start, WINDOW_MS, "{what}: {row:?}");
        assert_eq!(
            row.start.rem_euclid(WINDOW_MS),
            0,
            "{what}: unaligned {row:?}"
        );
        assert!(
            row.start >= from_ms - WINDOW_MS && row.start <= to_ms,
            "{what}: window {row:?} outside the run's wall clock [{from_ms}, {to_ms}]"
        );
        assert!(row.count > 0, "{what}: {row:?}");
        assert!(
            pairs.insert((row.bidder, row.start)),
            "{what}: bidder {} and window {} appear twice",
            row.bidder,
            row.start
        );
        *totals.entry(row.bidder).or_default() += row.count;
    }
    assert_eq!(
        &totals, expected,
        "{what}: bids per bidder over all windows"
    );
    rows.iter().map(|r| r.start).collect()
}

/// The batch oracle: bids per bidder of the stream.
fn bids_per_bidder(disorder_ms: u64) -> BTreeMap<i64, i64> {
    let stream = StreamConfig {
        seed: SEED,
        event_rate: RATE,
        disorder_ms,
        ..StreamConfig::default()
    };
    let bids = events_of(stream, EventKind::Bid, EVENTS);
    assert_eq!(bids.len() as u64, EventKind::Bid.count_in(EVENTS));
    let mut counts = BTreeMap::new();
    for bid in &bids {
        let bidder = bid.i64("bidder").expect("a bid has a bidder");
        *counts.entry(bidder).or_default() += 1;
    }
    counts
}

fn run_q12(disorder_ms: u64, partitions: u32, shards: usize) {
    let what = format!("q12 disorder {disorder_ms} ms, {partitions} partitions, {shards} shards");
    let scratch = Scratch::new();
    let output = scratch.path("out.jsonl");
    let source_options = vec![
        ("events.num", EVENTS.to_string()),
        ("seed", SEED.to_string()),
        ("rate", RATE.to_string()),
        ("disorder.ms", disorder_ms.to_string()),
        ("partitions", partitions.to_string()),
    ];
    let program = nexmark_program(&q12_sql(), "bid", &source_options, &output)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let expected = bids_per_bidder(disorder_ms);
    let from_ms = wall_ms();
    let started = Instant::now();
    let report: JobReport = run_program(&program, &options(shards))
        .unwrap_or_else(|e| panic!("{what}: the job failed: {e}"));
    let to_ms = wall_ms();
    assert!(
        started.elapsed() >= Duration::from_millis(2_000),
        "{what}: the rate spreads the input over seconds"
    );
    let values = read_json_lines(&output).unwrap_or_else(|e| panic!("{what}: {e}"));
    let rows: Vec<Row> = values
        .iter()
        .map(|v| row_of(v, "starttime", "endtime", "bid_count"))
        .collect();
    let bids: i64 = expected.values().sum();
    assert_eq!(report.records_in(), bids as u64, "{what}: records in");
    assert_eq!(report.skipped_total(), 0, "{what}: {:?}", report.skipped());
    assert_eq!(
        report.late_events(),
        0,
        "{what}: processing time is never late"
    );
    assert_eq!(report.rows_out(), rows.len() as u64, "{what}: rows out");
    let windows = check_windows(&what, &rows, &expected, from_ms, to_ms);
    assert!(
        windows.len() >= 3,
        "{what}: about 3 s of input spans at least 3 windows of 1 s, got {windows:?}"
    );
}

#[test]
fn q12_straight_counts_every_bid_once() {
    run_q12(0, 1, 1);
}

#[test]
fn q12_event_time_disorder_does_not_matter() {
    run_q12(DISORDER_MS, 1, 1);
}

#[test]
fn q12_four_partitions_on_two_shards() {
    run_q12(0, 4, 2);
}

/// Lines of `log` that are result rows, with when they were first seen.
struct LogReader {
    seen_bytes: usize,
    rows: Vec<(Row, i64)>,
}

impl LogReader {
    /// Reads the complete lines added to `log` since the last call.
    fn poll(&mut self, log: &Path) {
        let Ok(text) = std::fs::read_to_string(log) else {
            return;
        };
        let now = wall_ms();
        let Some(complete) = text.get(self.seen_bytes..).and_then(|t| t.rfind('\n')) else {
            return;
        };
        let new = &text[self.seen_bytes..self.seen_bytes + complete + 1];
        self.seen_bytes += complete + 1;
        for line in new.lines().filter(|l| l.starts_with('{')) {
            if let Ok(value) = serde_json::from_str::<Value>(line) {
                if value.get("bid_count").is_some() {
                    self.rows.push((
                        row_of(&value, "window_start", "window_end", "bid_count"),
                        now,
                    ));
                }
            }
        }
    }

    fn counted(&self) -> i64 {
        self.rows.iter().map(|(r, _)| r.count).sum()
    }

    /// Polls until the rows count `bids` bids (or the time is up).
    fn wait_for(&mut self, log: &Path, bids: i64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.counted() < bids && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            self.poll(log);
        }
        let text = std::fs::read_to_string(log).unwrap_or_default();
        assert_eq!(self.counted(), bids, "bids counted so far; log:\n{text}");
    }
}

/// A bid as JSON, with a `p_time` field the processing-time column must ignore.
fn bid_line(i: usize) -> String {
    format!(
        r#"{{"bidder":{},"price":{},"dateTime":1700000000000,"p_time":0}}"#,
        i % 5,
        100 + i
    )
}

/// An unbounded Kafka source: windows fire when the wall clock passes their end, with no
/// input after them, on 2 shards whose partitions are partly idle; every printed row is
/// written after its window ended and counts each bid once.
#[test]
fn windows_fire_by_the_wall_clock_without_new_input() {
    let scratch = Scratch::new();
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    let bootstrap = kafka.bootstrap_servers();
    kafka.create_topic("bids", 4).expect("topic");
    let sql = format!(
        "CREATE TABLE bid (bidder BIGINT, price BIGINT, dateTime TIMESTAMP(3), p_time AS PROCTIME())
         WITH ('connector' = 'kafka', 'topic' = 'bids',
               'properties.bootstrap.servers' = '{bootstrap}',
               'properties.group.id' = 'spillway-proctime-test',
               'scan.startup.mode' = 'earliest-offset', 'format' = 'json');
         CREATE TABLE out (bidder BIGINT, bid_count BIGINT, window_start TIMESTAMP(3),
               window_end TIMESTAMP(3)) WITH ('connector' = 'print');
         INSERT INTO out
         SELECT bidder, COUNT(*), window_start, window_end
         FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(p_time), INTERVAL '1' SECOND))
         GROUP BY bidder, window_start, window_end;"
    );
    let sql_path = scratch.path("q.sql");
    std::fs::write(&sql_path, sql).expect("sql");
    let log = scratch.path("run.log");
    let from_ms = wall_ms();
    let mut child = start_run(&sql_path, 2, &log).expect("start spillway");
    let mut reader = LogReader {
        seen_bytes: 0,
        rows: Vec::new(),
    };

    let produce = |range: std::ops::Range<usize>| {
        let lines: Vec<String> = range.map(bid_line).collect();
        produce_lines(
            &bootstrap,
            "bids",
            &lines,
            4,
            PartitionBy::RoundRobin,
            Batching::Default,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    };
    produce(0..200);
    reader.wait_for(&log, 200, Duration::from_secs(30));
    let first_rows = reader.rows.len();
    produce(200..300);
    reader.wait_for(&log, 300, Duration::from_secs(30));
    let to_ms = wall_ms();
    terminate(&child).expect("SIGTERM");
    let status = child.wait().expect("wait");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "spillway exit {status}: {text}");

    let mut expected = BTreeMap::new();
    for i in 0..300 {
        *expected.entry((i % 5) as i64).or_default() += 1;
    }
    let rows: Vec<Row> = reader.rows.iter().map(|(r, _)| r.clone()).collect();
    check_windows("kafka", &rows, &expected, from_ms, to_ms);
    for (row, seen_ms) in &reader.rows {
        assert!(
            row.end <= seen_ms + SLACK_MS,
            "window {row:?} was written at {seen_ms}, before its end: {text}"
        );
    }
    // The second burst was produced after the first one's windows had fired.
    let first_end = reader.rows[..first_rows].iter().map(|(r, _)| r.end).max();
    let second_start = reader.rows[first_rows..].iter().map(|(r, _)| r.start).min();
    assert!(
        second_start >= first_end,
        "second burst in windows from {second_start:?}, first burst's ended {first_end:?}"
    );
}

fn plan_error(sql: &str) -> String {
    match parse_program(sql) {
        Err(EngineError::Plan { message, .. }) => message,
        other => panic!("expected a plan error for {sql}, got {other:?}"),
    }
}

const SINK: &str = "CREATE TABLE out (bidder BIGINT, n BIGINT, ws TIMESTAMP(3), we TIMESTAMP(3)) \
                    WITH ('connector' = 'blackhole');";

fn windowed(columns: &str, descriptor: &str, window: &str) -> String {
    format!(
        "CREATE TABLE bid ({columns}) WITH ('connector' = 'nexmark', 'events.num' = '1000');
         {SINK}
         INSERT INTO out SELECT bidder, COUNT(*), window_start, window_end
         FROM TABLE({window}(TABLE bid, DESCRIPTOR({descriptor}), INTERVAL '1' SECOND))
         GROUP BY bidder, window_start, window_end;"
    )
}

#[test]
fn ddl_and_planning_errors() {
    let message = plan_error("CREATE TABLE t (a BIGINT, p AS PROCTIME(3));");
    assert!(
        message.contains("PROCTIME() takes no arguments"),
        "{message}"
    );
    let message = plan_error("CREATE TABLE t (a BIGINT, p AS PROCTIME(), q AS PROCTIME());");
    assert!(
        message.contains("more than one PROCTIME() column"),
        "{message}"
    );
    let message = plan_error("CREATE TABLE t (a BIGINT, p AS a * 2);");
    assert!(
        message.contains("computed column 'p' is not supported yet"),
        "{message}"
    );
    let message = plan_error("CREATE TABLE t (a BIGINT, p AS PROCTIME(), WATERMARK FOR p AS p);");
    assert!(
        message.contains("processing-time column (AS PROCTIME()) has no watermark"),
        "{message}"
    );

    // A window must be on a time attribute; the message names the processing-time column.
    let message = plan_error(&windowed(
        "bidder BIGINT, dateTime TIMESTAMP(3), p_time AS PROCTIME()",
        "dateTime",
        "TUMBLE",
    ));
    assert!(
        message.contains("declares no WATERMARK") && message.contains("'p_time'"),
        "{message}"
    );
    let message = plan_error(&windowed(
        "bidder BIGINT, dateTime TIMESTAMP(3), p_time AS PROCTIME(), \
         WATERMARK FOR dateTime AS dateTime",
        "bidder",
        "TUMBLE",
    ));
    assert!(
        message.contains("'dateTime', the column the WATERMARK")
            && message.contains("processing-time column 'p_time'"),
        "{message}"
    );
    let message = plan_error(&windowed(
        "bidder BIGINT, p_time AS PROCTIME()",
        "p_time",
        "SESSION",
    ));
    assert!(
        message.contains(
            "SESSION windows over the processing-time column 'p_time' are not supported yet"
        ),
        "{message}"
    );

    // Both clocks on one table: the DESCRIPTOR chooses; the group-window form works too.
    let both = "bidder BIGINT, dateTime TIMESTAMP(3), p_time AS PROCTIME(), \
                WATERMARK FOR dateTime AS dateTime - INTERVAL '1' SECOND";
    for descriptor in ["p_time", "dateTime"] {
        let program = parse_program(&windowed(both, descriptor, "TUMBLE"))
            .unwrap_or_else(|e| panic!("{descriptor}: {e}"));
        let window = program.pipelines[0]
            .aggregation
            .as_ref()
            .and_then(|a| a.window)
            .expect("a window");
        let table = program.table("bid").expect("bid");
        assert_eq!(table.columns[window.time_column].name, descriptor);
    }
    let group = format!(
        "CREATE TABLE bid ({both}) WITH ('connector' = 'nexmark', 'events.num' = '1000');
         {SINK}
         INSERT INTO out SELECT bidder, COUNT(*), TUMBLE_START(p_time, INTERVAL '1' SECOND),
           TUMBLE_END(p_time, INTERVAL '1' SECOND)
         FROM bid GROUP BY bidder, TUMBLE(p_time, INTERVAL '1' SECOND);"
    );
    let program = parse_program(&group).unwrap_or_else(|e| panic!("{e}"));
    let window = program.pipelines[0]
        .aggregation
        .as_ref()
        .and_then(|a| a.window)
        .expect("a window");
    assert_eq!(window.time_column, 2);
}

fn run_error(sql: &str, opts: &JobOptions) -> String {
    let program = parse_program(sql).unwrap_or_else(|e| panic!("{e}"));
    match run_program(&program, opts) {
        Err(e) => e.to_string(),
        Ok(r) => panic!(
            "expected the job to be refused, it ran: {} rows",
            r.rows_out()
        ),
    }
}

/// The lateness options are refused with processing-time windows (rows are never late).
#[test]
fn lateness_options_are_refused() {
    let sql = windowed("bidder BIGINT, p_time AS PROCTIME()", "p_time", "TUMBLE");
    let late = sql
        .replace(
            "'events.num' = '1000'",
            "'events.num' = '1000', 'allowed-lateness' = '1 s'",
        )
        .replace("we TIMESTAMP(3))", "we TIMESTAMP(3), row_kind STRING)");
    assert_eq!(late.matches("allowed-lateness").count(), 1);
    assert_eq!(late.matches("row_kind").count(), 1);
    let message = run_error(&late, &options(1));
    assert!(message.contains("never late"), "{message}");

    // The same table windowed on event time is not affected by either check.
    let event_time = windowed(
        "bidder BIGINT, dateTime TIMESTAMP(3), p_time AS PROCTIME(), \
         WATERMARK FOR dateTime AS dateTime",
        "dateTime",
        "TUMBLE",
    );
    let program = parse_program(&event_time).unwrap_or_else(|e| panic!("{e}"));
    let report = run_program(&program, &options(1)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.records_in(), EventKind::Bid.count_in(1000));
    assert!(report.rows_out() > 0);
}

#[test]
fn explain_shows_the_processing_time_column() {
    let sql = windowed(
        "bidder BIGINT, dateTime TIMESTAMP(3), p_time AS PROCTIME()",
        "p_time",
        "TUMBLE",
    );
    let program = parse_program(&sql).unwrap_or_else(|e| panic!("{e}"));
    let job = prepare(&program, &options(2)).unwrap_or_else(|e| panic!("{e}"));
    let text = spillway_engine::explain::explain(&job, false);
    assert!(
        text.contains("p_time TIMESTAMP_LTZ(3) *PROCTIME*"),
        "the decoded columns show the processing-time column:\n{text}"
    );
    assert!(text.contains("TUMBLE 1000 ms"), "{text}");
    assert!(
        !text.contains("watermark per partition"),
        "no event-time watermark is declared:\n{text}"
    );
    assert!(
        text.contains("watermark: processing time") && text.contains("windows over p_time"),
        "the windows' clock is the wall clock:\n{text}"
    );
}

#[test]
fn a_sink_with_a_processing_time_column_is_refused() {
    let sql = "CREATE TABLE bid (bidder BIGINT, dateTime TIMESTAMP(3),
                 WATERMARK FOR dateTime AS dateTime - INTERVAL '1' SECOND)
               WITH ('connector' = 'nexmark', 'nexmark.table' = 'bid', 'events.num' = '100');
               CREATE TABLE out (bidder BIGINT, p AS PROCTIME()) WITH ('connector' = 'blackhole');
               INSERT INTO out SELECT bidder, dateTime FROM bid;";
    let e = parse_program(sql)
        .expect_err("a sink cannot declare PROCTIME()")
        .to_string();
    assert!(
        e.contains("sink table 'out' declares the processing-time column 'p'"),
        "{e}"
    );
}

fn with_checkpoints(shards: usize, dir: &Path, stop: Arc<AtomicBool>) -> JobOptions {
    JobOptions {
        checkpoint: Some(
            CheckpointConfig::new(dir, Duration::from_millis(50)).expect("checkpoint config"),
        ),
        stop,
        ..options(shards)
    }
}

/// Runs `program` until `after` (then stops with a final checkpoint) or its end; returns
/// whether it reached the end.
fn run_part(program: &Program, shards: usize, dir: &Path, after: Option<Duration>) -> bool {
    let stop = Arc::new(AtomicBool::new(false));
    if let Some(d) = after {
        let s = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(d);
            s.store(true, Ordering::Release);
        });
    }
    let report = run_program(program, &with_checkpoints(shards, dir, stop))
        .unwrap_or_else(|e| panic!("the job failed: {e}"));
    assert_eq!(report.late_events(), 0);
    let c = report.checkpoints.as_ref().expect("the job checkpoints");
    assert!(c.final_committed, "every run ends with a final checkpoint");
    report.shards.iter().all(|s| s.finished)
}

/// Open windows are in checkpoints like event-time panes: stopped mid-way and resumed on
/// 1, then 3, then 2 cores, every bid is counted exactly once; windows that were open at
/// the stop fire once the restarted shards' clocks pass their end.
#[test]
fn q12_survives_checkpoints_and_resumes_on_other_core_counts() {
    let scratch = Scratch::new();
    let out = scratch.path("out");
    let dir = scratch.path("state");
    let source_options = vec![
        ("events.num", EVENTS.to_string()),
        ("seed", SEED.to_string()),
        ("rate", RATE.to_string()),
        ("partitions", "4".to_string()),
    ];
    let program =
        nexmark_program(&q12_sql(), "bid", &source_options, &out).unwrap_or_else(|e| panic!("{e}"));
    let from_ms = wall_ms();
    let mut parts = 0;
    let mut ended = false;
    for (shards, after_ms) in [(2, 700), (1, 600), (3, 500)] {
        parts += 1;
        ended = run_part(
            &program,
            shards,
            &dir,
            Some(Duration::from_millis(after_ms)),
        );
        // The source is paced: its 6 000 events take 3 s, so the first part is cut.
        assert!(parts > 1 || !ended, "the first part stops mid-way");
        if ended {
            break;
        }
    }
    if !ended {
        assert!(run_part(&program, 2, &dir, None), "the last part ends");
    }
    let to_ms = wall_ms();
    let values = committed_rows(&out).unwrap_or_else(|e| panic!("{e}"));
    let rows: Vec<Row> = values
        .iter()
        .map(|v| row_of(v, "starttime", "endtime", "bid_count"))
        .collect();
    let windows = check_windows("resumed", &rows, &bids_per_bidder(0), from_ms, to_ms);
    assert!(windows.len() >= 3, "{windows:?}");
}
