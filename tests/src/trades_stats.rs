//! The oracle of the trades statistics query used by several end-to-end tests: per symbol and
//! tumbling window `COUNT(*)`, `SUM(volume)`, `AVG(price)`, `MIN(price)`, `MAX(price)` as
//! columns `trades`, `volume`, `avg_price`, `low`, `high`.

use serde_json::{json, Value};

use crate::oracle::{args, parse_events, Agg, OracleQuery};

/// The expected rows of the trades statistics over `lines` with windows of `window_ms`.
pub fn trades_stats_rows(lines: &[String], window_ms: i64) -> Vec<Value> {
    let events = parse_events(&lines.join("\n"), "ts").expect("good events");
    trades_stats(OracleQuery::tumble(window_ms))
        .run(&events)
        .rows
}

/// `query` (any window kind) grouped by symbol with the five statistics, output as the stats
/// sink writes them.
pub fn trades_stats(query: OracleQuery<'_>) -> OracleQuery<'_> {
    query
        .keys(|e| vec![args::str_key(e, "symbol")])
        .agg(Agg::count_star())
        .agg(Agg::sum_int(|e| e.i64("volume")))
        .agg(Agg::avg(|e| e.f64("price")))
        .agg(Agg::min(args::float("price")))
        .agg(Agg::max(args::float("price")))
        .output(|g| {
            Some(json!({
                "symbol": g.key(0), "window_start": g.start(), "window_end": g.end(),
                "trades": g.aggs[0], "volume": g.aggs[1], "avg_price": g.aggs[2],
                "low": g.aggs[3], "high": g.aggs[4],
            }))
        })
}
