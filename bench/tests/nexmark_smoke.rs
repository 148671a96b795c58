//! Smoke mode of `spillway-bench nexmark`: every query with a tiny stream, in process and
//! through the embedded Kafka, so the benchmark never rots. Each run checks its result
//! against the oracle before it returns figures; these tests assert the checks ran and
//! passed and that the figures are sane.

use spillway_bench::nexmark_bench::{
    run_nexmark, NexmarkBenchOptions, NexmarkBroker, NexmarkQuery, NEXMARK_QUERIES,
};
use spillway_bench::BenchSummary;

const EVENTS: u64 = 30_000;

fn extra(summary: &BenchSummary, name: &str) -> Option<f64> {
    summary.extra.iter().find(|(n, _)| *n == name).map(|x| x.1)
}

/// `query` reads `events` of the stream; an updating query (q4) emits a key more than once
/// (the sink checked its last row per key).
fn assert_sane(summary: &BenchSummary, query: &NexmarkQuery, events: u64, runs: usize) {
    assert_eq!(summary.runs.len(), runs);
    let records: u64 = query.tables.iter().map(|k| k.count_in(events)).sum();
    let changelog = query.name == "q4";
    for r in &summary.runs {
        assert_eq!(
            r.events, records,
            "{}: the figures count the records read",
            summary.name
        );
        assert!(r.events_per_second() > 0.0);
        let expected = extra(summary, "result_rows_expected").unwrap_or_default();
        if changelog {
            assert!(r.rows_out as f64 >= expected, "{}", summary.name);
        } else {
            assert_eq!(r.rows_out as f64, expected, "{}", summary.name);
        }
    }
    assert_eq!(extra(summary, "stream_events"), Some(events as f64));
    assert!(extra(summary, "stream_events_per_second_per_core_median").is_some_and(|v| v > 0.0));
    let json: serde_json::Value = serde_json::from_str(&summary.json()).expect("json line");
    assert_eq!(json["events"], records);
}

#[test]
fn every_query_runs_checked_in_process() {
    for query in NEXMARK_QUERIES {
        let mut opts = NexmarkBenchOptions::new(query.name, EVENTS).expect("a query");
        opts.shards = 2;
        opts.partitions = 3;
        opts.pin_cores = false;
        let summary = run_nexmark(&opts).unwrap_or_else(|e| panic!("{}: {e}", query.name));
        assert_sane(&summary, query, EVENTS, 1);
        assert!(summary.text().contains(query.name), "{}", summary.text());
        assert!(summary.runs[0].rows_out > 0, "{}", query.name);
    }
}

#[test]
fn q1_runs_checked_through_the_mock_broker() {
    let mut opts = NexmarkBenchOptions::new("q1", EVENTS).expect("q1");
    opts.broker = NexmarkBroker::Mock;
    opts.partitions = 2;
    opts.runs = 2;
    opts.pin_cores = false;
    let summary = run_nexmark(&opts).expect("q1 through the mock broker");
    assert_sane(&summary, &opts.query, EVENTS, 2);
    assert_eq!(extra(&summary, "broker_mock"), Some(1.0));
}

/// The joins through the mock broker: each table reads its own topic (a table reading
/// another kind's topic skips its records as bad input, or reads the wrong count, and the
/// check fails). `rounds_small` cuts the stream into rounds of a few thousand events, so
/// joins lose their partners in other rounds and each round's oracle must agree.
fn join_through_the_mock_broker(query: &str, events: u64, rounds_small: bool) {
    let mut opts = NexmarkBenchOptions::new(query, events).expect("a join");
    opts.broker = NexmarkBroker::Mock;
    opts.shards = 2;
    opts.partitions = 2;
    opts.pin_cores = false;
    if rounds_small {
        opts.round_partition_bytes = 128 << 10;
    }
    let summary =
        run_nexmark(&opts).unwrap_or_else(|e| panic!("{query} through the mock broker: {e}"));
    assert_sane(&summary, &opts.query, events, 1);
    assert!(summary.runs[0].rows_out > 0, "{query}");
    assert_eq!(extra(&summary, "broker_mock"), Some(1.0));
}

#[test]
fn q9_runs_checked_through_the_mock_broker() {
    join_through_the_mock_broker("q9", 5_000, false);
}

#[test]
fn joins_run_checked_through_the_mock_broker_in_rounds() {
    join_through_the_mock_broker("q3", 30_000, true);
    join_through_the_mock_broker("q8", 30_000, true);
    join_through_the_mock_broker("q4", 12_000, true);
}

#[test]
fn bad_options_are_errors_not_panics() {
    let err = NexmarkBenchOptions::new("q42", EVENTS).expect_err("unknown query");
    assert!(err.to_string().contains("--query"), "{err}");
    let mut opts = NexmarkBenchOptions::new("q0", 0).expect("q0");
    let err = run_nexmark(&opts).expect_err("0 events");
    assert!(err.to_string().contains("--events"), "{err}");
    opts.events = EVENTS;
    opts.runs = 0;
    let err = run_nexmark(&opts).expect_err("0 runs");
    assert!(err.to_string().contains("--runs"), "{err}");
}
