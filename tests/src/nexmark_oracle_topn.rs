//! The per-window top-N Nexmark queries of `examples/nexmark/` (q5, q7, top_bids) against
//! an independent batch computation over the generated bids (plain Rust over the parsed
//! JSON events; none of the engine's code).

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use crate::oracle::{format_time, Event};

/// q7's and top_bids' tumbling window, ms.
pub const TUMBLE_MS: i64 = 10_000;
/// q5's hopping window: size and slide, ms.
pub const HOP_SIZE_MS: i64 = 10_000;
pub const HOP_SLIDE_MS: i64 = 2_000;
/// top_bids keeps this many bids per window.
pub const TOP_BIDS_N: usize = 3;

/// The example queries (file stem, SQL text).
pub const TOPN_QUERIES: &[(&str, &str)] = &[
    ("q5", include_str!("../../examples/nexmark/q5.sql")),
    ("q7", include_str!("../../examples/nexmark/q7.sql")),
    (
        "top_bids",
        include_str!("../../examples/nexmark/top_bids.sql"),
    ),
];

/// The SQL of example query `name`.
pub fn topn_query_sql(name: &str) -> Result<&'static str, String> {
    TOPN_QUERIES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, sql)| *sql)
        .ok_or_else(|| format!("no top-N example query '{name}'"))
}

/// The fields that order a query's rows for comparison.
pub fn topn_key_fields(name: &str) -> &'static [&'static str] {
    match name {
        "q5" => &["auction", "num"],
        "q7" => &["dateTime", "auction", "bidder", "price"],
        _ => &["window_start", "rownum"],
    }
}

fn int(e: &Event, name: &str) -> i64 {
    match e.i64(name) {
        Some(v) => v,
        None => panic!("oracle: bid without integer '{name}': {:?}", e.fields),
    }
}

fn text<'e>(e: &'e Event, name: &str) -> &'e str {
    e.str(name).unwrap_or("")
}

fn window_start(ts: i64, size: i64) -> i64 {
    ts - ts.rem_euclid(size)
}

/// q7: per 10 s window, every bid whose price equals the window's highest price.
fn q7(bids: &[Event]) -> Vec<Value> {
    let mut max: HashMap<i64, i64> = HashMap::new();
    for b in bids {
        let m = max
            .entry(window_start(b.ts_ms, TUMBLE_MS))
            .or_insert(i64::MIN);
        *m = (*m).max(int(b, "price"));
    }
    bids.iter()
        .filter(|b| max[&window_start(b.ts_ms, TUMBLE_MS)] == int(b, "price"))
        .map(|b| {
            json!({
                "auction": int(b, "auction"),
                "price": int(b, "price"),
                "bidder": int(b, "bidder"),
                "dateTime": format_time(b.ts_ms),
                "extra": text(b, "extra"),
            })
        })
        .collect()
}

/// q5: per hopping window (10 s every 2 s), the auctions with the most bids.
fn q5(bids: &[Event]) -> Vec<Value> {
    let mut counts: BTreeMap<i64, HashMap<i64, i64>> = BTreeMap::new();
    for b in bids {
        let last = window_start(b.ts_ms, HOP_SLIDE_MS);
        let mut start = last - HOP_SIZE_MS + HOP_SLIDE_MS;
        while start <= last {
            *counts
                .entry(start)
                .or_default()
                .entry(int(b, "auction"))
                .or_default() += 1;
            start += HOP_SLIDE_MS;
        }
    }
    let mut rows = Vec::new();
    for by_auction in counts.values() {
        let best = by_auction.values().copied().max().unwrap_or(0);
        for (auction, n) in by_auction {
            if *n == best {
                rows.push(json!({"auction": auction, "num": n}));
            }
        }
    }
    rows
}

/// top_bids: per 10 s window, the 3 highest bids, ties broken by the bid's columns in
/// their declared order (auction, bidder, channel, url, dateTime, extra) ascending.
fn top_bids(bids: &[Event]) -> Vec<Value> {
    let mut windows: BTreeMap<i64, Vec<&Event>> = BTreeMap::new();
    for b in bids {
        windows
            .entry(window_start(b.ts_ms, TUMBLE_MS))
            .or_default()
            .push(b);
    }
    let mut rows = Vec::new();
    for (start, mut in_window) in windows {
        in_window.sort_by(|a, b| {
            (
                std::cmp::Reverse(int(a, "price")),
                int(a, "auction"),
                int(a, "bidder"),
                text(a, "channel"),
                text(a, "url"),
                a.ts_ms,
                text(a, "extra"),
            )
                .cmp(&(
                    std::cmp::Reverse(int(b, "price")),
                    int(b, "auction"),
                    int(b, "bidder"),
                    text(b, "channel"),
                    text(b, "url"),
                    b.ts_ms,
                    text(b, "extra"),
                ))
        });
        for (i, b) in in_window.iter().take(TOP_BIDS_N).enumerate() {
            rows.push(json!({
                "window_start": format_time(start),
                "window_end": format_time(start + TUMBLE_MS),
                "rownum": i as i64 + 1,
                "auction": int(b, "auction"),
                "bidder": int(b, "bidder"),
                "price": int(b, "price"),
            }));
        }
    }
    rows
}

/// The rows of top-N example query `name` over the bids `bids`.
pub fn topn_expected_rows(name: &str, bids: &[Event]) -> Result<Vec<Value>, String> {
    match name {
        "q5" => Ok(q5(bids)),
        "q7" => Ok(q7(bids)),
        "top_bids" => Ok(top_bids(bids)),
        other => Err(format!("no oracle for '{other}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bid(auction: i64, price: i64, ts_ms: i64) -> Event {
        let fields = json!({"auction": auction, "bidder": 1, "price": price, "extra": ""});
        let Value::Object(fields) = fields else {
            panic!("an object")
        };
        Event { fields, ts_ms }
    }

    #[test]
    fn oracles_keep_ties_and_hop_windows() {
        let bids = [
            bid(1, 5, 100),
            bid(2, 5, 200),
            bid(3, 4, 300),
            bid(4, 9, 10_000),
        ];
        let rows = q7(&bids);
        assert_eq!(
            rows.len(),
            3,
            "two tied in the first window, one in the second"
        );
        // q5: auction 1 has 2 bids in the windows holding both; auction 2 one.
        let bids = [bid(1, 1, 100), bid(1, 1, 1_900), bid(2, 1, 2_100)];
        let rows = q5(&bids);
        // Windows starting -8 s .. 0 s hold both bids of auction 1 (5 windows); the window
        // [2 s, 12 s) holds only auction 2's bid.
        assert_eq!(rows.iter().filter(|r| r["auction"] == 1).count(), 5);
        assert_eq!(rows.iter().filter(|r| r["auction"] == 2).count(), 1);
        assert_eq!(
            top_bids(&[bid(1, 1, 0), bid(2, 3, 1), bid(3, 2, 2), bid(4, 0, 3)]).len(),
            3
        );
    }
}
