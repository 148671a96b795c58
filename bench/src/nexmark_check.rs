//! The result check of `spillway-bench nexmark`: what a Nexmark query of
//! `examples/nexmark/` must give over some events (its row count and column sums, computed
//! from the generated events directly, without JSON or engine code), and the sink that adds
//! up what the engine gave. The joins (q3, q4, q8, q9) have theirs in `nexmark_join_check.rs`.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use arrow::record_batch::RecordBatch;
use spillway_connectors::nexmark::{Event, EventKind, NexmarkGenerator, StreamConfig};
use spillway_connectors::{Sink, SinkFactory};

use crate::error::{BenchError, Result};
use crate::nexmark_join_check::join_expected;

/// Window size of the windowed queries, ms.
const WINDOW_MS: i64 = 10_000;
/// q1's conversion factor and q2's modulus, as the SQL has them.
const DOLLAR_TO_EURO: f64 = 0.908;
const Q2_AUCTION_MODULUS: u64 = 123;
/// Relative tolerance of a float column's sum (partial sums add up in another order).
const FLOAT_SUM_TOLERANCE_REL: f64 = 1e-9;

/// What a query's result over some events must hold: its row count and the sums of some
/// of its integer and float columns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NexmarkExpected {
    /// Bids among the events.
    pub bids: u64,
    /// The records of the tables the query reads among the events (what its sources
    /// deliver).
    pub records: u64,
    pub rows: u64,
    pub int_sums: BTreeMap<&'static str, i128>,
    pub float_sums: BTreeMap<&'static str, f64>,
    /// A changelog query (q4): per key (the first column) the value (the first DOUBLE
    /// column) of its last row; `rows` is then the number of keys.
    pub finals: BTreeMap<i64, f64>,
}

impl NexmarkExpected {
    /// Whether the query emits a changelog (its final row per key is checked).
    pub fn is_changelog(&self) -> bool {
        !self.finals.is_empty()
    }
}

/// One group of a windowed query.
#[derive(Debug, Clone, Copy)]
struct GroupAcc {
    key: i64,
    count: i64,
    max: i64,
    min: i64,
    sum: i64,
}

/// Computes what query `query` (a file stem of `examples/nexmark/`) gives over events
/// `events` of `stream`, from the generated events directly (no JSON, no engine code).
pub fn nexmark_expected(query: &str, stream: StreamConfig, events: Range<u64>) -> NexmarkExpected {
    if let Some(out) = join_expected(query, stream, events.clone()) {
        return out;
    }
    let mut out = match query {
        "q5" | "q7" => top_n_expected(query, stream, events),
        "q11" => sessions_expected(stream, events),
        _ => bids_expected(query, stream, events),
    };
    out.records = out.bids;
    out
}

/// What a query over bids without a top-n or a session window gives.
fn bids_expected(query: &str, stream: StreamConfig, events: Range<u64>) -> NexmarkExpected {
    let mut generator = NexmarkGenerator::new(stream);
    let mut out = NexmarkExpected::default();
    let mut groups: HashMap<(i64, i64), GroupAcc> = HashMap::new();
    let (mut auction_sum, mut bidder_sum, mut price_sum) = (0i128, 0i128, 0i128);
    let mut euro_sum = 0.0;
    for n in events.filter(|n| EventKind::of(*n) == EventKind::Bid) {
        let Event::Bid(b) = generator.event(n) else {
            continue;
        };
        out.bids += 1;
        let key = match query {
            "q0" | "q1" => {
                out.rows += 1;
                auction_sum += i128::from(b.auction);
                bidder_sum += i128::from(b.bidder);
                price_sum += i128::from(b.price);
                euro_sum += DOLLAR_TO_EURO * b.price as f64;
                continue;
            }
            "q2" => {
                if b.auction % Q2_AUCTION_MODULUS == 0 {
                    out.rows += 1;
                    auction_sum += i128::from(b.auction);
                    price_sum += i128::from(b.price);
                }
                continue;
            }
            "window_auction" => b.auction as i64,
            "window_channel" => i64::from(b.channel.number),
            _ => 0,
        };
        let window = b.date_time_ms - b.date_time_ms.rem_euclid(WINDOW_MS);
        let price = b.price as i64;
        let acc = groups.entry((window, key)).or_insert(GroupAcc {
            key,
            count: 0,
            max: price,
            min: price,
            sum: 0,
        });
        acc.count += 1;
        acc.max = acc.max.max(price);
        acc.min = acc.min.min(price);
        acc.sum += price;
    }
    match query {
        "q0" | "q1" => {
            out.int_sums.insert("auction", auction_sum);
            out.int_sums.insert("bidder", bidder_sum);
            if query == "q0" {
                out.int_sums.insert("price", price_sum);
            } else {
                out.float_sums.insert("price", euro_sum);
            }
        }
        "q2" => {
            out.int_sums.insert("auction", auction_sum);
            out.int_sums.insert("price", price_sum);
        }
        "q7_simplified" => {
            out.rows = groups.len() as u64;
            let max_sum = groups.values().map(|g| i128::from(g.max)).sum();
            out.int_sums.insert("maxprice", max_sum);
        }
        _ => {
            out.rows = groups.len() as u64;
            let sum = |f: fn(&GroupAcc) -> i64| groups.values().map(|g| i128::from(f(g))).sum();
            out.int_sums.insert("bids", sum(|g| g.count));
            out.int_sums.insert("max_price", sum(|g| g.max));
            out.int_sums.insert("min_price", sum(|g| g.min));
            out.int_sums.insert("sum_price", sum(|g| g.sum));
            if query == "window_auction" {
                out.int_sums.insert("auction", sum(|g| g.key));
            }
            let avg_sum = groups.values().map(|g| g.sum as f64 / g.count as f64).sum();
            out.float_sums.insert("avg_price", avg_sum);
        }
    }
    out
}

/// q11's session gap, ms.
const SESSION_GAP_MS: i64 = 10_000;

/// q11 (bids per bidder per session of 10 s gap): a bidder's bids sorted by time start a new
/// session wherever the next bid comes more than a gap after the previous one (windows
/// `[ts, ts + gap)` that overlap or touch merge).
fn sessions_expected(stream: StreamConfig, events: Range<u64>) -> NexmarkExpected {
    let mut generator = NexmarkGenerator::new(stream);
    let mut out = NexmarkExpected::default();
    let mut times: HashMap<i64, Vec<i64>> = HashMap::new();
    for n in events.filter(|n| EventKind::of(*n) == EventKind::Bid) {
        if let Event::Bid(b) = generator.event(n) {
            out.bids += 1;
            times
                .entry(b.bidder as i64)
                .or_default()
                .push(b.date_time_ms);
        }
    }
    let (mut bidder_sum, mut count_sum) = (0i128, 0i128);
    for (bidder, mut ts) in times {
        ts.sort_unstable();
        let mut sessions = 1u64;
        for pair in ts.windows(2) {
            if pair[1] > pair[0] + SESSION_GAP_MS {
                sessions += 1;
            }
        }
        out.rows += sessions;
        bidder_sum += i128::from(bidder) * i128::from(sessions);
        count_sum += ts.len() as i128;
    }
    out.int_sums.insert("bidder", bidder_sum);
    out.int_sums.insert("bid_count", count_sum);
    out
}

/// q5's hopping window: size and slide, ms.
const HOP_SIZE_MS: i64 = 10_000;
const HOP_SLIDE_MS: i64 = 2_000;

/// q7's state of one window: the highest price and the (auction, price, bidder) at it.
type WindowBest = (i64, Vec<(i64, i64, i64)>);

/// q5 (per 10 s window sliding 2 s, the auctions with the most bids) and q7 (per 10 s
/// window, the bids with the highest price): row counts and column sums.
fn top_n_expected(query: &str, stream: StreamConfig, events: Range<u64>) -> NexmarkExpected {
    let mut generator = NexmarkGenerator::new(stream);
    let mut out = NexmarkExpected::default();
    // q7: (window -> max price, bids at it); q5: window start -> auction -> bids.
    let mut best: HashMap<i64, WindowBest> = HashMap::new();
    let mut counts: HashMap<i64, HashMap<i64, i64>> = HashMap::new();
    for n in events.filter(|n| EventKind::of(*n) == EventKind::Bid) {
        let Event::Bid(b) = generator.event(n) else {
            continue;
        };
        out.bids += 1;
        let (auction, price, bidder) = (b.auction as i64, b.price as i64, b.bidder as i64);
        if query == "q7" {
            let window = b.date_time_ms - b.date_time_ms.rem_euclid(WINDOW_MS);
            let e = best.entry(window).or_insert((price, Vec::new()));
            if price > e.0 {
                *e = (price, Vec::new());
            }
            if price == e.0 {
                e.1.push((auction, price, bidder));
            }
            continue;
        }
        let last = b.date_time_ms - b.date_time_ms.rem_euclid(HOP_SLIDE_MS);
        let mut start = last - HOP_SIZE_MS + HOP_SLIDE_MS;
        while start <= last {
            *counts.entry(start).or_default().entry(auction).or_default() += 1;
            start += HOP_SLIDE_MS;
        }
    }
    let (mut auction_sum, mut second_sum, mut bidder_sum) = (0i128, 0i128, 0i128);
    for (_, rows) in best.values() {
        for &(a, p, b) in rows {
            out.rows += 1;
            auction_sum += i128::from(a);
            second_sum += i128::from(p);
            bidder_sum += i128::from(b);
        }
    }
    for by_auction in counts.values() {
        let top = by_auction.values().copied().max().unwrap_or(0);
        for (&a, &c) in by_auction.iter().filter(|(_, &c)| c == top) {
            out.rows += 1;
            auction_sum += i128::from(a);
            second_sum += i128::from(c);
        }
    }
    out.int_sums.insert("auction", auction_sum);
    if query == "q7" {
        out.int_sums.insert("price", second_sum);
        out.int_sums.insert("bidder", bidder_sum);
    } else {
        out.int_sums.insert("num", second_sum);
    }
    out
}

/// Row count and column sums of what the sinks received.
#[derive(Debug, Default)]
struct Totals {
    rows: u64,
    int_sums: HashMap<String, i128>,
    float_sums: HashMap<String, f64>,
    /// Changelog queries (a `row_kind` column): the value of the last row per key (a key's
    /// rows all come from one shard).
    finals: HashMap<i64, f64>,
    error: Option<String>,
}

impl Totals {
    fn add(&mut self, other: &mut Totals) {
        self.rows += std::mem::take(&mut other.rows);
        for (k, v) in other.int_sums.drain() {
            *self.int_sums.entry(k).or_default() += v;
        }
        for (k, v) in other.float_sums.drain() {
            *self.float_sums.entry(k).or_default() += v;
        }
        self.finals.extend(other.finals.drain());
        if self.error.is_none() {
            self.error = other.error.take();
        }
    }
}

/// Builds the sinks that add up the result of a Nexmark query.
#[derive(Debug, Clone, Default)]
pub struct NexmarkCheckSinkFactory {
    totals: Arc<Mutex<Totals>>,
}

impl NexmarkCheckSinkFactory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the rows of every sink against `expected`: the row count, each expected
    /// integer column sum exactly, each float sum within a relative 1e-9.
    pub fn check(&self, expected: &NexmarkExpected) -> Result<()> {
        let totals = self
            .totals
            .lock()
            .map_err(|_| BenchError::WrongResult("a checking sink panicked".into()))?;
        let wrong = |m: String| Err(BenchError::WrongResult(m));
        if let Some(e) = &totals.error {
            return wrong(e.clone());
        }
        if expected.is_changelog() {
            return check_finals(&totals.finals, &expected.finals);
        }
        if totals.rows != expected.rows {
            return wrong(format!(
                "{} result rows, expected {}",
                totals.rows, expected.rows
            ));
        }
        for (column, want) in &expected.int_sums {
            let got = totals.int_sums.get(*column).copied();
            if got != Some(*want) && !(expected.rows == 0 && got.is_none()) {
                return wrong(format!(
                    "the sum of column '{column}' is {got:?}, expected {want}"
                ));
            }
        }
        for (column, want) in &expected.float_sums {
            let got = totals.float_sums.get(*column).copied().unwrap_or(0.0);
            if (got - want).abs() > FLOAT_SUM_TOLERANCE_REL * want.abs().max(1.0) {
                return wrong(format!(
                    "the sum of column '{column}' is {got}, expected {want}"
                ));
            }
        }
        Ok(())
    }
}

/// The last value per key a changelog sink got against the oracle's (relative 1e-9).
fn check_finals(got: &HashMap<i64, f64>, want: &BTreeMap<i64, f64>) -> Result<()> {
    if got.len() != want.len() {
        return Err(BenchError::WrongResult(format!(
            "{} keys in the changelog, expected {}",
            got.len(),
            want.len()
        )));
    }
    for (key, want) in want {
        let value = got.get(key).copied();
        let close = value
            .is_some_and(|v| (v - want).abs() <= FLOAT_SUM_TOLERANCE_REL * want.abs().max(1.0));
        if !close {
            return Err(BenchError::WrongResult(format!(
                "key {key} ends at {value:?}, expected {want}"
            )));
        }
    }
    Ok(())
}

impl SinkFactory for NexmarkCheckSinkFactory {
    fn open(&self, _shard: usize) -> spillway_connectors::Result<Box<dyn Sink>> {
        Ok(Box::new(NexmarkCheckSink {
            shared: self.totals.clone(),
            local: Totals::default(),
            rows_written: 0,
        }))
    }

    fn close(&self) -> spillway_connectors::Result<()> {
        Ok(())
    }

    fn describe(&self) -> String {
        "benchmark result check (row count and column sums)".into()
    }
}

/// The sink of one shard: adds up its batches, hands the totals over on flush and drop.
struct NexmarkCheckSink {
    shared: Arc<Mutex<Totals>>,
    local: Totals,
    rows_written: u64,
}

impl NexmarkCheckSink {
    fn hand_over(&mut self) {
        if let Ok(mut shared) = self.shared.lock() {
            shared.add(&mut self.local);
        }
    }
}

impl NexmarkCheckSink {
    /// A changelog's rows: the first column is the key, the first DOUBLE column the value;
    /// "-U" rows (withdrawn) are skipped.
    fn note_finals(&mut self, batch: &RecordBatch, kinds: &arrow::array::ArrayRef) {
        let keys = batch.column(0).as_primitive_opt::<Int64Type>();
        let values = batch
            .columns()
            .iter()
            .find_map(|c| c.as_primitive_opt::<Float64Type>());
        let (Some(keys), Some(values), Some(kinds)) = (keys, values, kinds.as_string_opt::<i32>())
        else {
            self.local.error = Some("a changelog without an integer key and a DOUBLE value".into());
            return;
        };
        for i in 0..batch.num_rows() {
            if kinds.value(i) != "-U" {
                self.local.finals.insert(keys.value(i), values.value(i));
            }
        }
    }
}

impl Sink for NexmarkCheckSink {
    fn write(&mut self, batch: &RecordBatch) -> spillway_connectors::Result<()> {
        let schema = batch.schema();
        for (field, column) in schema.fields().iter().zip(batch.columns()) {
            if column.null_count() > 0 && self.local.error.is_none() {
                self.local.error = Some(format!("column '{}' holds NULLs", field.name()));
            }
            match column.data_type() {
                DataType::Int64 => {
                    let sum: i128 = column
                        .as_primitive::<Int64Type>()
                        .iter()
                        .flatten()
                        .map(i128::from)
                        .sum();
                    *self.local.int_sums.entry(field.name().clone()).or_default() += sum;
                }
                DataType::Float64 => {
                    let sum: f64 = column.as_primitive::<Float64Type>().iter().flatten().sum();
                    *self
                        .local
                        .float_sums
                        .entry(field.name().clone())
                        .or_default() += sum;
                }
                _ => {}
            }
        }
        if let Some(kinds) = schema.index_of("row_kind").ok().map(|c| batch.column(c)) {
            self.note_finals(batch, kinds);
        }
        self.local.rows += batch.num_rows() as u64;
        self.rows_written += batch.num_rows() as u64;
        Ok(())
    }

    fn flush(&mut self) -> spillway_connectors::Result<()> {
        self.hand_over();
        Ok(())
    }

    fn rows_written(&self) -> u64 {
        self.rows_written
    }
}

impl Drop for NexmarkCheckSink {
    fn drop(&mut self) {
        self.hand_over();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oracle_counts_what_each_query_keeps() {
        let stream = StreamConfig::default();
        let q0 = nexmark_expected("q0", stream, 0..5_000);
        assert_eq!(q0.bids, 4_600);
        assert_eq!(q0.rows, 4_600);
        let q2 = nexmark_expected("q2", stream, 0..5_000);
        assert!(q2.rows > 0 && q2.rows < q0.rows / 10, "{}", q2.rows);
        let q1 = nexmark_expected("q1", stream, 0..5_000);
        let (euros, dollars) = (q1.float_sums["price"], q0.int_sums["price"] as f64);
        assert!((euros / dollars - DOLLAR_TO_EURO).abs() < 1e-9);
        // 0.5 s of event time at 10 000 events/s: one 10 s window.
        let q7 = nexmark_expected("q7_simplified", stream, 0..5_000);
        assert_eq!(q7.rows, 1);
        let by_auction = nexmark_expected("window_auction", stream, 0..5_000);
        assert_eq!(by_auction.int_sums["bids"], 4_600);
        assert_eq!(by_auction.int_sums["sum_price"], q0.int_sums["price"]);
        assert!(by_auction.rows > 10);
    }

    #[test]
    fn top_n_oracles_keep_the_leaders_of_every_window() {
        let stream = StreamConfig::default();
        // 0.5 s of event time: one tumbling window; the hopping windows holding it are 5.
        let q7 = nexmark_expected("q7", stream, 0..5_000);
        let max = nexmark_expected("q7_simplified", stream, 0..5_000);
        assert!(q7.rows >= 1, "at least the highest bid");
        assert_eq!(
            q7.int_sums["price"],
            max.int_sums["maxprice"] * q7.rows as i128
        );
        let q5 = nexmark_expected("q5", stream, 0..5_000);
        assert!(
            q5.rows >= 5,
            "one leader per hopping window at least: {}",
            q5.rows
        );
        assert!(q5.int_sums["num"] >= 5);
    }

    #[test]
    fn session_oracle_counts_every_bid_once() {
        let stream = StreamConfig::default();
        let q11 = nexmark_expected("q11", stream, 0..5_000);
        assert_eq!(q11.int_sums["bid_count"], i128::from(q11.bids));
        assert!(q11.rows >= 1 && q11.rows <= q11.bids, "{q11:?}");
    }

    #[test]
    fn the_sink_check_catches_a_wrong_sum() {
        let sink_factory = NexmarkCheckSinkFactory::new();
        let mut sink = sink_factory.open(0).expect("sink");
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("auction", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(arrow::array::Int64Array::from(vec![1000, 1246]))],
        )
        .expect("batch");
        sink.write(&batch).expect("written");
        sink.flush().expect("flushed");
        let mut expected = NexmarkExpected {
            bids: 2,
            rows: 2,
            ..NexmarkExpected::default()
        };
        expected.int_sums.insert("auction", 2246);
        assert!(sink_factory.check(&expected).is_ok());
        expected.int_sums.insert("auction", 2247);
        let err = sink_factory.check(&expected).expect_err("wrong sum");
        assert!(err.to_string().contains("'auction'"), "{err}");
    }

    #[test]
    fn the_changelog_check_takes_each_keys_last_row() {
        let stream = StreamConfig::default();
        let q4 = nexmark_expected("q4", stream, 0..20_000);
        assert!(q4.is_changelog() && q4.rows > 1, "{q4:?}");
        assert_eq!(
            q4.records,
            EventKind::Bid.count_in(20_000) + EventKind::Auction.count_in(20_000)
        );
        let sink_factory = NexmarkCheckSinkFactory::new();
        let mut sink = sink_factory.open(0).expect("sink");
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("category", DataType::Int64, false),
            arrow::datatypes::Field::new("avg_final", DataType::Float64, false),
            arrow::datatypes::Field::new("row_kind", DataType::Utf8, false),
        ]));
        let rows = |keys: Vec<i64>, values: Vec<f64>, kind: &str| {
            let kinds = vec![kind; keys.len()];
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(arrow::array::Int64Array::from(keys)),
                    Arc::new(arrow::array::Float64Array::from(values)),
                    Arc::new(arrow::array::StringArray::from(kinds)),
                ],
            )
            .expect("batch")
        };
        sink.write(&rows(vec![1, 2], vec![5.0, 7.0], "+I"))
            .expect("written");
        sink.write(&rows(vec![1], vec![5.0], "-U"))
            .expect("written");
        sink.write(&rows(vec![1], vec![6.0], "+U"))
            .expect("written");
        sink.flush().expect("flushed");
        let mut expected = NexmarkExpected::default();
        expected.finals.insert(1, 6.0);
        expected.finals.insert(2, 7.0);
        assert!(sink_factory.check(&expected).is_ok());
        expected.finals.insert(1, 5.0);
        let err = sink_factory.check(&expected).expect_err("a stale value");
        assert!(err.to_string().contains("key 1"), "{err}");
    }
}
