//! Golden tests of Nexmark q9 (winning bids: a join of auctions and bids whose time bound
//! is the auction's own `expires`, ranked per auction) and q4 (the MAX bid per auction over
//! the same join, then an updating AVG per category): the engine's rows over the
//! `nexmark` source with a fixed seed must equal an independent batch computation over the
//! same generated events (`nexmark_oracle_q4_q9.rs`), three ways: straight (one partition,
//! one shard), with event times out of order within the watermark bound (2 partitions on 2
//! shards), and with 4 partitions on 2 shards (an auction's bids come from both shards and
//! meet on the auction's owner; a category's auctions close on both shards and meet on the
//! category's owner).
//!
//! q4 emits a changelog: its final value per category (the last row the sink got for the
//! key) is compared with the oracle, and the changelog must be well formed ("+I" first,
//! then each "-U" equal to the key's previous row and followed by a "+U").

use std::collections::BTreeMap;

use serde_json::Value;
use spillway_connectors::nexmark::EventKind;
use spillway_engine::job::run_program;
use spillway_tests::compare::{assert_rows_match, read_json_lines};
use spillway_tests::job::{options, Scratch};
use spillway_tests::nexmark_oracle::events_of;
use spillway_tests::nexmark_oracle_joins::program_with_sources;
use spillway_tests::nexmark_oracle_q4_q9::{
    q4_expected, q9_expected, winning_bids, Q4_SQL, Q9_SQL,
};
use spillway_tests::nexmark_runs::NexmarkRun as Run;
use spillway_tests::oracle::Event;

const SEED: u64 = 20_240_611;
/// Events of the whole stream: 100 s of event time at [`EVENT_RATE`] (about 6 000
/// auctions and 92 000 bids).
const EVENTS: u64 = 100_000;
const EVENT_RATE: u64 = 1_000;
/// Within the 4 s watermark bound of q9's tables.
const DISORDER_MS: u64 = 3_000;

/// Straight, out of order within the bound on 2 shards, 4 partitions on 2 shards.
fn three_ways() -> [Run; 3] {
    Run::three_ways(SEED, EVENTS, EVENT_RATE, DISORDER_MS)
}

/// Runs `sql` over the auctions and bids of `run`'s stream; returns the rows written, the
/// auctions and the bids.
fn run_query(sql: &str, run: Run) -> (Vec<Value>, Vec<Event>, Vec<Event>) {
    let stream = run.stream();
    let auctions = events_of(stream, EventKind::Auction, EVENTS);
    let bids = events_of(stream, EventKind::Bid, EVENTS);
    if run.disorder_ms > 0 {
        let backwards = bids.windows(2).filter(|w| w[1].ts_ms < w[0].ts_ms).count();
        assert!(
            backwards > bids.len() / 4,
            "{run:?}: only {backwards} bids out of order"
        );
    }
    let scratch = Scratch::new();
    let output = scratch.path("out.jsonl");
    let source_options = run.source_options();
    let program = program_with_sources(sql, &["auction", "bid"], &source_options, &output)
        .unwrap_or_else(|e| panic!("{e}"));
    let report = run_program(&program, &options(run.shards))
        .unwrap_or_else(|e| panic!("{run:?}: the job failed: {e}"));
    let rows = read_json_lines(&output).unwrap_or_else(|e| panic!("{run:?}: {e}"));
    assert_eq!(
        report.records_in(),
        (auctions.len() + bids.len()) as u64,
        "{run:?}: both streams are read completely"
    );
    assert_eq!(report.skipped_total(), 0, "{run:?}: {:?}", report.skipped());
    assert_eq!(
        report.late_events(),
        0,
        "{run:?}: disorder within the bound is never late"
    );
    assert_eq!(report.rows_out(), rows.len() as u64, "{run:?}");
    (rows, auctions, bids)
}

#[test]
fn q9_winning_bids_three_ways() {
    let mut counts = Vec::new();
    for run in three_ways() {
        let (rows, auctions, bids) = run_query(Q9_SQL, run);
        let expected = q9_expected(&auctions, &bids);
        assert_rows_match(&rows, &expected, &["id"]);
        // Most auctions get a bid and some do not, or the join proves little.
        assert!(
            rows.len() * 2 > auctions.len() && rows.len() < auctions.len(),
            "{run:?}: {} winners of {} auctions",
            rows.len(),
            auctions.len()
        );
        counts.push(rows.len());
    }
    eprintln!("q9 rows per run: {counts:?}");
    assert_eq!(counts[0], counts[2], "partitions do not change the result");
}

#[test]
fn q9_top_two_bids_per_auction() {
    // rownum <= 2 keeps the two best bids of each auction, numbered 1 and 2.
    let sql = Q9_SQL
        .replace("WHERE rownum <= 1;", "WHERE rownum <= 2;")
        .replace(
            "  bid_extra VARCHAR\n)",
            "  bid_extra VARCHAR,\n  rownum BIGINT\n)",
        )
        .replace(
            "bid_dateTime, bid_extra\nFROM",
            "bid_dateTime, bid_extra, rownum\nFROM",
        );
    assert!(sql.contains("rownum <= 2") && sql.contains("rownum BIGINT"));
    let run = three_ways()[1];
    let (rows, auctions, bids) = run_query(&sql, run);
    let winners = q9_expected(&auctions, &bids);
    let first: Vec<Value> = rows
        .iter()
        .filter(|r| r["rownum"] == 1)
        .map(|r| {
            let mut r = r.clone();
            if let Some(o) = r.as_object_mut() {
                o.remove("rownum");
            }
            r
        })
        .collect();
    assert_rows_match(&first, &winners, &["id"]);
    let seconds: Vec<&Value> = rows.iter().filter(|r| r["rownum"] == 2).collect();
    assert_eq!(
        first.len() + seconds.len(),
        rows.len(),
        "only ranks 1 and 2"
    );
    assert!(!seconds.is_empty(), "some auctions have two bids");
    for s in seconds {
        let w = first
            .iter()
            .find(|w| w["id"] == s["id"])
            .unwrap_or_else(|| panic!("a second bid without a first: {s}"));
        assert!(
            s["price"].as_i64() <= w["price"].as_i64(),
            "second {s} beats first {w}"
        );
        assert_ne!(s["bidder"], Value::Null);
    }
}

/// Checks that `rows` (in the order the sink got them) are a well-formed changelog per
/// `category`: "+I" first, then pairs of a "-U" equal to the key's last row and a "+U"
/// with new values; returns each key's last row (without its kind).
fn final_rows(rows: &[Value], run: Run) -> Vec<Value> {
    let mut last: BTreeMap<i64, (String, Value)> = BTreeMap::new();
    for row in rows {
        let key = row["category"]
            .as_i64()
            .unwrap_or_else(|| panic!("{run:?}: a row without a category: {row}"));
        let kind = row["row_kind"].as_str().unwrap_or_default().to_string();
        let mut value = row.clone();
        if let Some(o) = value.as_object_mut() {
            o.remove("row_kind");
        }
        match (kind.as_str(), last.get(&key)) {
            ("+I", None) => {}
            ("-U", Some((before, previous))) => {
                assert!(
                    before == "+I" || before == "+U",
                    "{run:?}: -U of {key} after {before}: {row}"
                );
                assert_eq!(previous, &value, "{run:?}: -U of {key} is not its last row");
            }
            ("+U", Some((before, previous))) => {
                assert_eq!(before, "-U", "{run:?}: +U of {key} without its -U: {row}");
                assert_ne!(
                    previous, &value,
                    "{run:?}: an update of {key} that changes nothing"
                );
            }
            (kind, before) => panic!("{run:?}: {kind} of {key} after {before:?}: {row}"),
        }
        last.insert(key, (kind, value));
    }
    last.into_iter()
        .map(|(category, (kind, value))| {
            assert_ne!(kind, "-U", "{run:?}: {category} ends withdrawn");
            value
        })
        .collect()
}

#[test]
fn q4_average_closing_price_per_category_three_ways() {
    for run in three_ways() {
        let (rows, auctions, bids) = run_query(Q4_SQL, run);
        let expected = q4_expected(&auctions, &bids);
        assert_rows_match(&final_rows(&rows, run), &expected, &["category"]);
        // Every category changes many times: the changelog is exercised, not just +I.
        let updates = rows.iter().filter(|r| r["row_kind"] == "+U").count();
        assert!(
            updates > 10 * expected.len(),
            "{run:?}: {updates} updates of {} categories",
            expected.len()
        );
        eprintln!(
            "q4 {run:?}: {} changelog rows, {} categories",
            rows.len(),
            expected.len()
        );
    }
}

#[test]
fn q4_partials_of_one_shard_are_never_emitted_as_totals() {
    // With 4 partitions on 2 shards a category's auctions close on both shards. Each row
    // of a key is its total so far, so its COUNT(*) only grows; a shard's partial emitted
    // as a total would make it go back (and end below the oracle's count).
    let sql = Q4_SQL
        .replace(
            "  avg_final DOUBLE,\n  row_kind STRING",
            "  avg_final DOUBLE,\n  auctions BIGINT,\n  row_kind STRING",
        )
        .replace(
            "AVG(Q.final) AS avg_final\n",
            "AVG(Q.final) AS avg_final, COUNT(*) AS auctions\n",
        );
    assert!(sql.contains("COUNT(*) AS auctions") && sql.contains("auctions BIGINT"));
    let run = three_ways()[2];
    let (rows, auctions, bids) = run_query(&sql, run);
    let mut counts: BTreeMap<i64, i64> = BTreeMap::new();
    for row in rows.iter().filter(|r| r["row_kind"] != "-U") {
        let key = row["category"].as_i64().unwrap_or_default();
        let count = row["auctions"].as_i64().unwrap_or_default();
        let before = counts.insert(key, count).unwrap_or(0);
        assert!(
            count > before,
            "{run:?}: category {key}'s auction count went from {before} to {count}: a partial emitted as a total"
        );
    }
    let mut expected_counts: BTreeMap<i64, i64> = BTreeMap::new();
    for (a, _) in winning_bids(&auctions, &bids) {
        *expected_counts
            .entry(a.i64("category").unwrap_or_default())
            .or_default() += 1;
    }
    assert_eq!(counts, expected_counts, "{run:?}: final auction counts");
    let expected: Vec<Value> = q4_expected(&auctions, &bids)
        .into_iter()
        .map(|mut r| {
            let n = expected_counts[&r["category"].as_i64().unwrap_or_default()];
            r["auctions"] = n.into();
            r
        })
        .collect();
    assert_rows_match(&final_rows(&rows, run), &expected, &["category"]);
}
