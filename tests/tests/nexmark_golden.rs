//! Golden tests of the Nexmark queries in `examples/nexmark/`: each query, run by the engine
//! over the `nexmark` source with a fixed seed, must produce exactly the rows of an
//! independent batch computation over the same generated events (`nexmark_oracle.rs`).
//! The windowed queries run three ways: straight (one partition, one shard), with event
//! times out of order within the watermark bound, and with 4 partitions on 2 shards (every
//! key's partial aggregates come from both shards). The auction and person tables, and
//! the bids through Kafka, are checked column by column as well.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer};
use serde_json::{json, Value};
use spillway_connectors::embedded_kafka::EmbeddedKafka;
use spillway_connectors::nexmark::json::{AUCTION_COLUMNS_SQL, PERSON_COLUMNS_SQL};
use spillway_connectors::nexmark::{write_to_kafka, EventKind, NexmarkTopics, StreamConfig};
use spillway_engine::job::{run_program, JobReport};
use spillway_engine::plan::Program;
use spillway_tests::compare::{assert_rows_match, read_json_lines};
use spillway_tests::job::{options, Scratch};
use spillway_tests::nexmark_oracle::{
    events_of, expected_rows, key_fields, nexmark_program, nexmark_program_with_source, query_sql,
    BOUND_MS, WINDOW_MS,
};
use spillway_tests::oracle::{format_time, Event};

/// The seed of every golden run.
const SEED: u64 = 20_240_601;
/// Events of the whole stream for the row-by-row queries (about 46 000 bids).
const EVENTS_ROWS: u64 = 50_000;
/// Events of the whole stream written to Kafka (about 18 000 bids, 2 MiB per partition).
const EVENTS_KAFKA: u64 = 20_000;
/// Events of the whole stream for the windowed queries: 100 s of event time at
/// [`EVENT_RATE`], so about 10 windows of 10 s.
const EVENTS_WINDOWED: u64 = 100_000;
/// Events per second of event time of the windowed runs.
const EVENT_RATE: u64 = 1_000;
/// Disorder of the out-of-order runs: within the 4 s watermark bound of the examples.
const DISORDER_MS: u64 = 3_000;

/// One way to run a query.
#[derive(Debug, Clone, Copy)]
struct Run {
    events: u64,
    event_rate: u64,
    disorder_ms: u64,
    partitions: u32,
    shards: usize,
}

impl Run {
    fn stream(&self) -> StreamConfig {
        StreamConfig {
            seed: SEED,
            event_rate: self.event_rate,
            disorder_ms: self.disorder_ms,
            ..StreamConfig::default()
        }
    }

    fn source_options(&self) -> Vec<(&'static str, String)> {
        vec![
            ("events.num", self.events.to_string()),
            ("seed", SEED.to_string()),
            ("event-time.rate", self.event_rate.to_string()),
            ("disorder.ms", self.disorder_ms.to_string()),
            ("partitions", self.partitions.to_string()),
        ]
    }
}

/// The bids of `run`'s stream, generated once per stream.
fn bids(run: &Run) -> &'static [Event] {
    static STRAIGHT: OnceLock<Vec<Event>> = OnceLock::new();
    static DISORDERED: OnceLock<Vec<Event>> = OnceLock::new();
    static ROWS: OnceLock<Vec<Event>> = OnceLock::new();
    let cell = match (run.events, run.disorder_ms) {
        (EVENTS_WINDOWED, 0) => &STRAIGHT,
        (EVENTS_WINDOWED, DISORDER_MS) => &DISORDERED,
        (EVENTS_ROWS, 0) => &ROWS,
        other => panic!("no cached stream for {other:?}"),
    };
    let got = cell.get_or_init(|| events_of(run.stream(), EventKind::Bid, run.events));
    assert_eq!(got.len() as u64, EventKind::Bid.count_in(run.events));
    got
}

/// Runs `program` (whose sink writes `output`) and returns its report and rows, checking
/// the counters every golden run must show.
fn run_checked(
    program: &Program,
    run: &Run,
    output: &Path,
    records: u64,
) -> (JobReport, Vec<Value>) {
    let report = match run_program(program, &options(run.shards)) {
        Ok(r) => r,
        Err(e) => panic!("{run:?}: the job failed: {e}"),
    };
    let rows = read_json_lines(output).unwrap_or_else(|e| panic!("{run:?}: {e}"));
    assert_eq!(report.records_in(), records, "{run:?}: records in");
    assert_eq!(
        report.skipped_total(),
        0,
        "{run:?}: skipped {:?}",
        report.skipped()
    );
    assert_eq!(
        report.late_events(),
        0,
        "{run:?}: disorder within the bound is never late"
    );
    assert_eq!(
        report.rows_out(),
        rows.len() as u64,
        "{run:?}: rows_out counts the sink's rows"
    );
    (report, rows)
}

/// Runs example query `name` as `run` and compares its rows with the oracle's; returns
/// the number of rows.
fn check_query(name: &str, run: Run) -> usize {
    let scratch = Scratch::new();
    let output = scratch.path("out.jsonl");
    let sql = query_sql(name).unwrap_or_else(|e| panic!("{e}"));
    let program = nexmark_program(sql, "bid", &run.source_options(), &output)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let bids = bids(&run);
    if run.disorder_ms > 0 {
        let backwards = bids.windows(2).filter(|w| w[1].ts_ms < w[0].ts_ms).count();
        assert!(
            backwards > bids.len() / 4,
            "{run:?}: only {backwards} bids out of order"
        );
    }
    let expected = expected_rows(name, bids).unwrap_or_else(|e| panic!("{e}"));
    let (_, rows) = run_checked(&program, &run, &output, bids.len() as u64);
    assert_rows_match(&rows, &expected, key_fields(name));
    expected.len()
}

const ROWS_RUN: Run = Run {
    events: EVENTS_ROWS,
    event_rate: 10_000,
    disorder_ms: 0,
    partitions: 2,
    shards: 2,
};

#[test]
fn q0_passes_every_bid_through() {
    let rows = check_query("q0", ROWS_RUN);
    assert_eq!(rows as u64, EventKind::Bid.count_in(EVENTS_ROWS));
}

#[test]
fn q1_converts_every_price() {
    let rows = check_query("q1", ROWS_RUN);
    assert_eq!(rows as u64, EventKind::Bid.count_in(EVENTS_ROWS));
}

#[test]
fn q2_selects_the_bids_of_every_123rd_auction() {
    let rows = check_query("q2", ROWS_RUN);
    // The selection keeps some bids and drops most, or it proves nothing.
    assert!(rows > 50 && rows * 20 < EVENTS_ROWS as usize, "{rows} rows");
    let rows_on_4 = check_query(
        "q2",
        Run {
            partitions: 4,
            ..ROWS_RUN
        },
    );
    assert_eq!(rows_on_4, rows);
}

/// The three ways of the windowed queries.
fn windowed_runs() -> [Run; 3] {
    let straight = Run {
        events: EVENTS_WINDOWED,
        event_rate: EVENT_RATE,
        disorder_ms: 0,
        partitions: 1,
        shards: 1,
    };
    [
        straight,
        Run {
            disorder_ms: DISORDER_MS,
            partitions: 2,
            shards: 2,
            ..straight
        },
        Run {
            partitions: 4,
            shards: 2,
            ..straight
        },
    ]
}

/// Windows of the windowed runs' event time: 10, or 11 when the disorder moves the first
/// events back into the window before the first nominal one.
fn windows_expected() -> std::ops::RangeInclusive<usize> {
    let seconds = EVENTS_WINDOWED / EVENT_RATE;
    let windows = (seconds * 1000) as usize / WINDOW_MS as usize;
    windows..=windows + 1
}

#[test]
fn q7_simplified_highest_price_per_window_three_ways() {
    assert!(DISORDER_MS < BOUND_MS as u64);
    for run in windowed_runs() {
        let rows = check_query("q7_simplified", run);
        assert!(
            windows_expected().contains(&rows),
            "{run:?}: {rows} windows"
        );
    }
}

#[test]
fn bids_per_auction_per_window_three_ways() {
    for run in windowed_runs() {
        let rows = check_query("window_auction", run);
        // Half the bids go to the hot auction of their batch; the others spread over the
        // hundred or so auctions in flight.
        assert!(rows > 10 * 50, "{run:?}: {rows} (auction, window) rows");
    }
}

#[test]
fn bids_per_channel_per_window_three_ways() {
    for run in windowed_runs() {
        let rows = check_query("window_channel", run);
        assert!(rows > 10 * 1_000, "{run:?}: {rows} (channel, window) rows");
    }
}

/// The rows a pass-through of every column of `kind` must give: the events as generated,
/// with times as the sink writes them.
fn passed_through(events: &[Event], time_columns: &[&str]) -> Vec<Value> {
    events
        .iter()
        .map(|e| {
            let mut row = e.fields.clone();
            for column in time_columns {
                let ms = row.get(*column).and_then(Value::as_i64).unwrap_or(i64::MIN);
                row.insert((*column).to_string(), json!(format_time(ms)));
            }
            Value::Object(row)
        })
        .collect()
}

#[test]
fn auction_and_person_tables_decode_every_column() {
    let run = Run {
        events: 20_000,
        event_rate: 10_000,
        disorder_ms: 500,
        partitions: 3,
        shards: 2,
    };
    let cases = [
        (
            "auction",
            AUCTION_COLUMNS_SQL,
            &["dateTime", "expires"][..],
            "id",
        ),
        ("person", PERSON_COLUMNS_SQL, &["dateTime"][..], "id"),
    ];
    for (kind_name, columns, time_columns, key) in cases {
        let kind = EventKind::from_name(kind_name).expect("a kind");
        let scratch = Scratch::new();
        let output = scratch.path("out.jsonl");
        // The table is named after its kind, so 'nexmark.table' may be left out.
        let sql = format!(
            "CREATE TABLE {kind_name} ({columns},\n  WATERMARK FOR dateTime AS dateTime - INTERVAL '1' SECOND\n\
             ) WITH ('connector' = 'nexmark');\n\
             CREATE TABLE out ({columns}) WITH ('connector' = 'blackhole');\n\
             INSERT INTO out SELECT * FROM {kind_name};\n"
        );
        let program = nexmark_program(&sql, kind_name, &run.source_options(), &output)
            .unwrap_or_else(|e| panic!("{kind_name}: {e}"));
        let events = events_of(run.stream(), kind, run.events);
        assert_eq!(events.len() as u64, kind.count_in(run.events));
        let (_, rows) = run_checked(&program, &run, &output, events.len() as u64);
        // Every column arrived: no NULL where the generator wrote a value.
        assert!(rows.iter().all(|r| r
            .as_object()
            .is_some_and(|o| o.values().all(|v| !v.is_null()))));
        assert_rows_match(&rows, &passed_through(&events, time_columns), &[key]);
    }
}

#[test]
fn q2_reads_the_same_bids_through_kafka() {
    // The mock cluster keeps at most 5 MiB per partition: 2 MiB of bids each.
    let run = Run {
        events: EVENTS_KAFKA,
        ..ROWS_RUN
    };
    let kafka = EmbeddedKafka::start(1).expect("embedded kafka");
    let bootstrap = kafka.bootstrap_servers();
    let topics = NexmarkTopics {
        bid: Some("nexmark-bid".into()),
        ..NexmarkTopics::default()
    };
    kafka
        .create_topic("nexmark-bid", run.partitions as i32)
        .expect("topic created");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let written = write_to_kafka(
        &producer,
        &run.stream(),
        0..run.events,
        run.partitions,
        &topics,
    )
    .expect("written");
    producer.flush(Duration::from_secs(60)).expect("flushed");
    assert_eq!(written.bids, EventKind::Bid.count_in(run.events));
    assert_eq!(
        written.records(),
        written.bids,
        "only the bid topic is written"
    );

    let scratch = Scratch::new();
    let output = scratch.path("out.jsonl");
    let kafka_options = vec![
        ("connector", "kafka".to_string()),
        ("topic", "nexmark-bid".to_string()),
        ("format", "json".to_string()),
        ("properties.bootstrap.servers", bootstrap.clone()),
        ("properties.group.id", "nexmark-golden".to_string()),
        ("scan.startup.mode", "earliest-offset".to_string()),
        ("scan.bounded.mode", "latest-offset".to_string()),
    ];
    let sql = query_sql("q2").unwrap_or_else(|e| panic!("{e}"));
    let program = nexmark_program_with_source(sql, "bid", &kafka_options, &output)
        .unwrap_or_else(|e| panic!("{e}"));
    let (_, rows) = run_checked(&program, &run, &output, written.bids);
    let bids = events_of(run.stream(), EventKind::Bid, run.events);
    let expected = expected_rows("q2", &bids).unwrap_or_else(|e| panic!("{e}"));
    assert!(!expected.is_empty());
    assert_rows_match(&rows, &expected, key_fields("q2"));
}
