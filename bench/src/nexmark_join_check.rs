//! The oracles of the Nexmark joins of persons and auctions (q3, q8) and of auctions and
//! bids (q4, q9): what the query gives over some events, computed from the generated events
//! directly (no JSON, no engine code).
//!
//! Each oracle joins only the events of its range: a partner outside it (in an earlier or
//! later round of `--broker mock`, which the engine reads as a job of its own) never
//! matches, as in the engine.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;

use spillway_connectors::nexmark::{Event, EventKind, NexmarkGenerator, StreamConfig};

use crate::nexmark_check::NexmarkExpected;

/// q3's category and states, as the SQL has them.
const Q3_CATEGORY: u64 = 10;
const Q3_STATES: [&str; 3] = ["or", "id", "ca"];
/// q8's tumbling window, ms.
const Q8_WINDOW_MS: i64 = 10_000;

/// Computes what join query `query` (q3, q4, q8 or q9) gives over events `events` of `stream`;
/// `None` for another query.
pub fn join_expected(
    query: &str,
    stream: StreamConfig,
    events: Range<u64>,
) -> Option<NexmarkExpected> {
    match query {
        "q3" => Some(local_items_expected(stream, events)),
        "q4" => Some(closing_prices_expected(stream, events)),
        "q8" => Some(new_users_expected(stream, events)),
        "q9" => Some(winning_bids_expected(stream, events)),
        _ => None,
    }
}

/// q3 (persons of some states joined with their auctions of category 10): a row per pair;
/// the sum of the auction ids.
fn local_items_expected(stream: StreamConfig, events: Range<u64>) -> NexmarkExpected {
    let mut generator = NexmarkGenerator::new(stream);
    let mut out = NexmarkExpected::default();
    let mut sellers: HashSet<u64> = HashSet::new();
    let mut auctions: Vec<(u64, u64)> = Vec::new();
    for n in events {
        match generator.event(n) {
            Event::Person(p) => {
                out.records += 1;
                if Q3_STATES.contains(&p.state) {
                    sellers.insert(p.id);
                }
            }
            Event::Auction(a) => {
                out.records += 1;
                if a.category == Q3_CATEGORY {
                    auctions.push((a.id, a.seller));
                }
            }
            Event::Bid(_) => {}
        }
    }
    let mut id_sum = 0i128;
    for (id, _) in auctions.iter().filter(|(_, s)| sellers.contains(s)) {
        out.rows += 1;
        id_sum += i128::from(*id);
    }
    out.int_sums.insert("id", id_sum);
    out
}

/// q8 (persons who opened an auction in the 10 s window they registered in): a row per
/// such person (ids are unique); the sum of their ids.
fn new_users_expected(stream: StreamConfig, events: Range<u64>) -> NexmarkExpected {
    let mut generator = NexmarkGenerator::new(stream);
    let mut out = NexmarkExpected::default();
    let window = |ms: i64| ms - ms.rem_euclid(Q8_WINDOW_MS);
    let mut persons: Vec<(u64, i64)> = Vec::new();
    let mut sellers: HashSet<(u64, i64)> = HashSet::new();
    for n in events {
        match generator.event(n) {
            Event::Person(p) => {
                out.records += 1;
                persons.push((p.id, window(p.date_time_ms)));
            }
            Event::Auction(a) => {
                out.records += 1;
                sellers.insert((a.seller, window(a.date_time_ms)));
            }
            Event::Bid(_) => {}
        }
    }
    let mut id_sum = 0i128;
    for (id, _) in persons.iter().filter(|p| sellers.contains(p)) {
        out.rows += 1;
        id_sum += i128::from(*id);
    }
    out.int_sums.insert("id", id_sum);
    out
}

/// An auction of q4 and q9 and its best bid so far: (price, time).
struct AuctionBest {
    initial_bid: u64,
    reserve: u64,
    opens_ms: i64,
    expires_ms: i64,
    seller: u64,
    category: u64,
    best: Option<(u64, i64)>,
}

/// The auctions among `events` with their best bids among `events` (between opening and
/// expiry, both included; the highest, ties: the earliest); `out` counts the records read.
fn best_bids(
    stream: StreamConfig,
    events: Range<u64>,
    out: &mut NexmarkExpected,
) -> HashMap<u64, AuctionBest> {
    let mut generator = NexmarkGenerator::new(stream);
    let mut auctions: HashMap<u64, AuctionBest> = HashMap::new();
    for n in events.clone() {
        if let Event::Auction(a) = generator.event(n) {
            out.records += 1;
            let auction = AuctionBest {
                initial_bid: a.initial_bid,
                reserve: a.reserve,
                opens_ms: a.date_time_ms,
                expires_ms: a.expires_ms,
                seller: a.seller,
                category: a.category,
                best: None,
            };
            auctions.insert(a.id, auction);
        }
    }
    for n in events.filter(|n| EventKind::of(*n) == EventKind::Bid) {
        let Event::Bid(b) = generator.event(n) else {
            continue;
        };
        out.bids += 1;
        out.records += 1;
        let Some(a) = auctions.get_mut(&b.auction) else {
            continue;
        };
        if !(a.opens_ms..=a.expires_ms).contains(&b.date_time_ms) {
            continue;
        }
        let better = a.best.is_none_or(|(price, time)| {
            b.price > price || (b.price == price && b.date_time_ms < time)
        });
        if better {
            a.best = Some((b.price, b.date_time_ms));
        }
    }
    auctions
}

/// q4 (per category the average closing price of its auctions: the highest bid between an
/// auction's opening and expiry; auctions without bids do not count): the last value per
/// category.
fn closing_prices_expected(stream: StreamConfig, events: Range<u64>) -> NexmarkExpected {
    let mut out = NexmarkExpected::default();
    let mut per_category: BTreeMap<u64, (u128, u64)> = BTreeMap::new();
    for a in best_bids(stream, events, &mut out).into_values() {
        if let Some((price, _)) = a.best {
            let e = per_category.entry(a.category).or_default();
            e.0 += u128::from(price);
            e.1 += 1;
        }
    }
    for (category, (sum, n)) in per_category {
        out.finals.insert(category as i64, sum as f64 / n as f64);
    }
    out.rows = out.finals.len() as u64;
    out
}

/// q9 (each auction with its best bid, see [`best_bids`]): a row per auction with such a
/// bid; the sums of the integer columns but the bidder (a tie on price and time is decided
/// by other columns of the bid).
fn winning_bids_expected(stream: StreamConfig, events: Range<u64>) -> NexmarkExpected {
    let mut out = NexmarkExpected::default();
    let auctions = best_bids(stream, events, &mut out);
    let mut sums = [0i128; 7];
    for (id, a) in &auctions {
        let Some((price, _)) = a.best else {
            continue;
        };
        out.rows += 1;
        let row = [
            id,
            &a.initial_bid,
            &a.reserve,
            &a.seller,
            &a.category,
            id,
            &price,
        ];
        for (sum, value) in sums.iter_mut().zip(row) {
            *sum += i128::from(*value);
        }
    }
    let columns = [
        "id",
        "initialBid",
        "reserve",
        "seller",
        "category",
        "auction",
        "price",
    ];
    out.int_sums.extend(columns.into_iter().zip(sums));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A join over a cut range loses the pairs whose partners fall on either side of the
    /// cut: the rounds' results add up to at most the whole range's.
    #[test]
    fn join_oracles_only_join_the_events_of_their_range() {
        let stream = StreamConfig::default();
        for query in ["q3", "q8", "q9"] {
            let whole = join_expected(query, stream, 0..60_000).expect("a join");
            let rounds: Vec<NexmarkExpected> = [0..25_000, 25_000..60_000]
                .into_iter()
                .map(|r| join_expected(query, stream, r).expect("a join"))
                .collect();
            assert!(whole.rows > 10, "{query}: {whole:?}");
            let round_rows: u64 = rounds.iter().map(|r| r.rows).sum();
            assert!(round_rows <= whole.rows, "{query}");
            let round_records: u64 = rounds.iter().map(|r| r.records).sum();
            assert_eq!(round_records, whole.records, "{query}");
        }
        let q3 = join_expected("q3", stream, 0..60_000).expect("q3");
        assert_eq!(
            q3.records,
            EventKind::Person.count_in(60_000) + EventKind::Auction.count_in(60_000)
        );
        let q9 = join_expected("q9", stream, 0..60_000).expect("q9");
        assert_eq!(q9.int_sums["id"], q9.int_sums["auction"]);
        assert!(q9.rows <= EventKind::Auction.count_in(60_000));
        assert!(join_expected("q1", stream, 0..10).is_none());
    }
}
