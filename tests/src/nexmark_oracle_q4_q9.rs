//! Nexmark q9 (winning bids) and q4 (average closing price per category) against
//! independent batch computations over the generated auctions and bids: plain Rust over
//! the events' JSON (maps and sorts); nothing here uses the engine's code.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use crate::oracle::{format_time, parse_time, Event};

/// The SQL of `examples/nexmark/q9.sql`.
pub const Q9_SQL: &str = include_str!("../../examples/nexmark/q9.sql");
/// The SQL of `examples/nexmark/q4.sql`.
pub const Q4_SQL: &str = include_str!("../../examples/nexmark/q4.sql");

fn int(e: &Event, name: &str) -> i64 {
    match e.i64(name) {
        Some(v) => v,
        None => panic!("oracle: event without integer '{name}': {:?}", e.fields),
    }
}

fn time(e: &Event, name: &str) -> i64 {
    match e.fields.get(name).and_then(parse_time) {
        Some(v) => v,
        None => panic!("oracle: event without time '{name}': {:?}", e.fields),
    }
}

fn text<'e>(e: &'e Event, name: &str) -> &'e str {
    e.str(name).unwrap_or_default()
}

/// The order of q9's ranking: price descending, then time ascending; equal bids of an
/// auction are ordered by their columns as the subquery lists them (auction, bidder,
/// price, time, extra), so the winner does not depend on arrival.
fn rank(b: &Event) -> impl Ord + '_ {
    (
        Reverse(int(b, "price")),
        b.ts_ms,
        int(b, "auction"),
        int(b, "bidder"),
        int(b, "price"),
        b.ts_ms,
        text(b, "extra"),
    )
}

/// The winning bid of each auction: the best bid (see [`rank`]) with `auction = id` and
/// `dateTime` between the auction's `dateTime` and `expires` (both included). Auctions
/// without such a bid have none.
pub fn winning_bids<'e>(auctions: &'e [Event], bids: &'e [Event]) -> Vec<(&'e Event, &'e Event)> {
    let mut by_auction: HashMap<i64, Vec<&Event>> = HashMap::new();
    for b in bids {
        by_auction.entry(int(b, "auction")).or_default().push(b);
    }
    let mut out = Vec::new();
    for a in auctions {
        let (opens, expires) = (a.ts_ms, time(a, "expires"));
        let best = by_auction
            .get(&int(a, "id"))
            .into_iter()
            .flatten()
            .filter(|b| b.ts_ms >= opens && b.ts_ms <= expires)
            .min_by(|x, y| rank(x).cmp(&rank(y)));
        if let Some(b) = best {
            out.push((a, *b));
        }
    }
    out
}

/// Nexmark q9's rows: each auction's columns with its winning bid's.
pub fn q9_expected(auctions: &[Event], bids: &[Event]) -> Vec<Value> {
    winning_bids(auctions, bids)
        .into_iter()
        .map(|(a, b)| {
            json!({
                "id": int(a, "id"), "itemName": text(a, "itemName"),
                "description": text(a, "description"), "initialBid": int(a, "initialBid"),
                "reserve": int(a, "reserve"), "dateTime": format_time(a.ts_ms),
                "expires": format_time(time(a, "expires")), "seller": int(a, "seller"),
                "category": int(a, "category"), "extra": text(a, "extra"),
                "auction": int(b, "auction"), "bidder": int(b, "bidder"),
                "price": int(b, "price"), "bid_dateTime": format_time(b.ts_ms),
                "bid_extra": text(b, "extra"),
            })
        })
        .collect()
}

/// Nexmark q4's final rows: per category, the average of its auctions' closing prices
/// (the highest bid between opening and expiry; auctions without bids do not count).
pub fn q4_expected(auctions: &[Event], bids: &[Event]) -> Vec<Value> {
    let mut per_category: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for (a, b) in winning_bids(auctions, bids) {
        let e = per_category.entry(int(a, "category")).or_default();
        e.0 += int(b, "price");
        e.1 += 1;
    }
    per_category
        .into_iter()
        .map(|(c, (sum, n))| json!({"category": c, "avg_final": sum as f64 / n as f64}))
        .collect()
}

/// Compares two bids by q9's ranking (for tests of the oracle itself).
pub fn rank_order(x: &Event, y: &Event) -> Ordering {
    rank(x).cmp(&rank(y))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(fields: Value, ts_ms: i64) -> Event {
        let Value::Object(fields) = fields else {
            panic!("test events are objects")
        };
        Event { fields, ts_ms }
    }

    #[test]
    fn the_highest_bid_within_the_auction_wins_and_ties_go_to_the_earliest() {
        let auction = event(json!({"id": 1, "expires": 100, "category": 10}), 10);
        let bid = |price: i64, ts: i64, bidder: i64| {
            event(
                json!({"auction": 1, "bidder": bidder, "price": price, "extra": ""}),
                ts,
            )
        };
        let bids = vec![
            bid(50, 20, 1),
            bid(70, 60, 2),
            bid(70, 40, 3),
            // outside the auction's lifetime
            bid(90, 5, 4),
            bid(90, 101, 5),
        ];
        let auctions = vec![auction];
        let won = winning_bids(&auctions, &bids);
        assert_eq!(won.len(), 1);
        assert_eq!(int(won[0].1, "bidder"), 3);
        assert_eq!(rank_order(&bids[2], &bids[1]), Ordering::Less);
        let q4 = q4_expected(&auctions, &bids);
        assert_eq!(q4, vec![json!({"category": 10, "avg_final": 70.0})]);
    }
}
