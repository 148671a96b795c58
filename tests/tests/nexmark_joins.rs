//! Golden tests of Nexmark q8 (a window join of persons and auctions) and q3 (a regular
//! join of auctions and persons): the engine's rows
//! over the `nexmark` source with a fixed seed must equal an independent batch computation
//! over the same generated events (`nexmark_oracle_joins.rs`), three ways: straight (one
//! partition, one shard), with event times out of order within the watermark bound (2
//! partitions on 2 shards), and with 4 partitions on 2 shards (every key's rows come from
//! both shards and meet on the key's owner).

use serde_json::Value;
use spillway_connectors::nexmark::EventKind;
use spillway_engine::job::run_program;
use spillway_tests::compare::{assert_rows_match, read_json_lines};
use spillway_tests::job::{options, Scratch};
use spillway_tests::nexmark_oracle::events_of;
use spillway_tests::nexmark_oracle_joins::{
    program_with_sources, q3_expected, q8_expected, q8_hop_expected, Q3_SQL, Q8_SQL,
};
use spillway_tests::nexmark_runs::NexmarkRun as Run;
use spillway_tests::oracle::Event;

const SEED: u64 = 20_240_601;
/// Events of the whole stream: 100 s of event time at [`EVENT_RATE`] (about 2 000 persons
/// and 6 000 auctions in 10 windows).
const EVENTS: u64 = 100_000;
const EVENT_RATE: u64 = 1_000;
/// Within the 4 s watermark bound of q8's tables.
const DISORDER_MS: u64 = 3_000;

/// Runs `sql` over the persons and auctions of `run`'s stream and compares its rows with
/// `oracle`'s; returns the number of rows.
fn check_query(
    sql: &str,
    oracle: fn(&[Event], &[Event]) -> Vec<Value>,
    key_fields: &[&str],
    run: Run,
) -> usize {
    let stream = run.stream();
    let persons = events_of(stream, EventKind::Person, EVENTS);
    let auctions = events_of(stream, EventKind::Auction, EVENTS);
    if run.disorder_ms > 0 {
        let backwards = auctions
            .windows(2)
            .filter(|w| w[1].ts_ms < w[0].ts_ms)
            .count();
        assert!(
            backwards > auctions.len() / 4,
            "{run:?}: only {backwards} auctions out of order"
        );
    }
    let expected = oracle(&persons, &auctions);
    let scratch = Scratch::new();
    let output = scratch.path("out.jsonl");
    let source_options = run.source_options();
    let program = program_with_sources(sql, &["person", "auction"], &source_options, &output)
        .unwrap_or_else(|e| panic!("{e}"));
    let report = run_program(&program, &options(run.shards))
        .unwrap_or_else(|e| panic!("{run:?}: the job failed: {e}"));
    let rows = read_json_lines(&output).unwrap_or_else(|e| panic!("{run:?}: {e}"));
    assert_eq!(
        report.records_in(),
        (persons.len() + auctions.len()) as u64,
        "{run:?}: both streams are read completely"
    );
    assert_eq!(report.skipped_total(), 0, "{run:?}: {:?}", report.skipped());
    assert_eq!(
        report.late_events(),
        0,
        "{run:?}: disorder within the bound is never late"
    );
    assert_eq!(report.rows_out(), rows.len() as u64, "{run:?}");
    assert_rows_match(&rows, &expected, key_fields);
    rows.len()
}

/// Straight, out of order within the bound on 2 shards, 4 partitions on 2 shards.
fn three_ways() -> [Run; 3] {
    Run::three_ways(SEED, EVENTS, EVENT_RATE, DISORDER_MS)
}

#[test]
fn q8_new_users_who_opened_auctions_three_ways() {
    let mut counts = Vec::new();
    for run in three_ways() {
        counts.push(check_query(Q8_SQL, q8_expected, &["starttime", "id"], run));
    }
    eprintln!("q8 rows per run: {counts:?}");
    // The join keeps some persons and drops most, or it proves nothing.
    let persons = EventKind::Person.count_in(EVENTS) as usize;
    assert!(
        counts[0] > 20 && counts[0] < persons,
        "{counts:?} of {persons} persons"
    );
    assert_eq!(counts[0], counts[2], "partitions do not change the result");
}

#[test]
fn q3_sellers_of_category_10_in_three_states_three_ways() {
    let mut counts = Vec::new();
    for run in three_ways() {
        counts.push(check_query(Q3_SQL, q3_expected, &["id"], run));
    }
    // Some auctions pass both filters and most do not.
    let auctions = EventKind::Auction.count_in(EVENTS) as usize;
    assert!(
        counts[0] > 50 && counts[0] * 5 < auctions,
        "{counts:?} of {auctions} auctions"
    );
    assert_eq!(counts[0], counts[2], "partitions do not change the result");
}

fn q8_hop_oracle(persons: &[Event], auctions: &[Event]) -> Vec<Value> {
    q8_hop_expected(persons, auctions, 10_000, 5_000)
}

#[test]
fn q8_over_hop_windows_three_ways() {
    // q8 with HOP windows of 10 s sliding by 5 s: every event is in two windows.
    let sql = Q8_SQL.replace(
        "TUMBLE(TABLE person, DESCRIPTOR(dateTime), INTERVAL '10' SECOND)",
        "HOP(TABLE person, DESCRIPTOR(dateTime), INTERVAL '5' SECOND, INTERVAL '10' SECOND)",
    );
    let sql = sql.replace(
        "TUMBLE(TABLE auction, DESCRIPTOR(dateTime), INTERVAL '10' SECOND)",
        "HOP(TABLE auction, DESCRIPTOR(dateTime), INTERVAL '5' SECOND, INTERVAL '10' SECOND)",
    );
    assert_eq!(sql.matches("HOP(TABLE").count(), 2);
    let mut counts = Vec::new();
    for run in three_ways() {
        counts.push(check_query(&sql, q8_hop_oracle, &["starttime", "id"], run));
    }
    let tumbling = check_query(Q8_SQL, q8_expected, &["starttime", "id"], three_ways()[0]);
    assert!(
        counts[0] > tumbling,
        "{counts:?}: HOP windows find more than {tumbling}"
    );
    assert_eq!(counts[0], counts[2]);
}
