//! The Nexmark queries of `examples/nexmark/` against an independent batch computation.
//!
//! The input is the stream the `nexmark` connector generates (its JSON lines, parsed here
//! with serde_json into [`Event`]s); the expected rows are computed in plain Rust: the
//! pass-through, projection and selection queries event by event, the windowed ones with
//! [`OracleQuery`]. Nothing here uses the engine's code. [`nexmark_program`] points an
//! example's tables at a test's stream options and a filesystem sink.

use std::path::Path;

use serde_json::{json, Value};
use spillway_connectors::nexmark::json::write_event_json;
use spillway_connectors::nexmark::{EventKind, NexmarkGenerator, StreamConfig};
use spillway_engine::plan::Program;
use spillway_engine::sql::parse_program;

use crate::oracle::{args, format_time, parse_event, Agg, Event, Key, OracleQuery};

/// The time column of every Nexmark table.
pub const TIME_COLUMN: &str = "dateTime";
/// Window size of the windowed example queries, ms.
pub const WINDOW_MS: i64 = 10_000;
/// The watermark bound the example tables declare, ms.
pub const BOUND_MS: i64 = 4_000;
/// The factor of q1's currency conversion.
pub const DOLLAR_TO_EURO: f64 = 0.908;
/// q2 keeps the bids whose auction id is a multiple of this.
pub const Q2_AUCTION_MODULUS: i64 = 123;

/// The example queries (file stem, SQL text).
pub const QUERIES: &[(&str, &str)] = &[
    ("q0", include_str!("../../examples/nexmark/q0.sql")),
    ("q1", include_str!("../../examples/nexmark/q1.sql")),
    ("q2", include_str!("../../examples/nexmark/q2.sql")),
    (
        "q7_simplified",
        include_str!("../../examples/nexmark/q7_simplified.sql"),
    ),
    (
        "window_auction",
        include_str!("../../examples/nexmark/window_auction.sql"),
    ),
    (
        "window_channel",
        include_str!("../../examples/nexmark/window_channel.sql"),
    ),
];

/// The SQL of example query `name`.
pub fn query_sql(name: &str) -> Result<&'static str, String> {
    QUERIES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, sql)| *sql)
        .ok_or_else(|| format!("no example query '{name}' in examples/nexmark/"))
}

/// The events of `kind` among the first `events_num` events of `stream`, as the connector
/// writes them, parsed as the oracle reads them.
pub fn events_of(stream: StreamConfig, kind: EventKind, events_num: u64) -> Vec<Event> {
    let mut generator = NexmarkGenerator::new(stream);
    let mut line = Vec::new();
    let mut events = Vec::new();
    for n in (0..events_num).filter(|n| EventKind::of(*n) == kind) {
        line.clear();
        write_event_json(&generator.event(n), &mut line);
        let text = String::from_utf8_lossy(&line);
        match parse_event(&text, TIME_COLUMN) {
            Ok(e) => events.push(e),
            Err(e) => panic!("nexmark event {n} is not what the oracle reads: {e}"),
        }
    }
    events
}

/// `parse_program(sql)` with the options of table `source` set (added or replaced) from
/// `source_options`, and the pipeline's sink table pointed at a JSON-lines file `output`.
pub fn nexmark_program(
    sql: &str,
    source: &str,
    source_options: &[(&str, String)],
    output: &Path,
) -> Result<Program, String> {
    program_with(sql, source, source_options, false, output)
}

/// As [`nexmark_program`], but the options of table `source` are exactly `source_options`
/// (e.g. a Kafka source instead of the generator).
pub fn nexmark_program_with_source(
    sql: &str,
    source: &str,
    source_options: &[(&str, String)],
    output: &Path,
) -> Result<Program, String> {
    program_with(sql, source, source_options, true, output)
}

fn program_with(
    sql: &str,
    source: &str,
    source_options: &[(&str, String)],
    replace: bool,
    output: &Path,
) -> Result<Program, String> {
    let mut program = parse_program(sql).map_err(|e| format!("the SQL does not parse: {e}"))?;
    let sink = match program.pipelines.as_slice() {
        [p] => p.sink.clone(),
        other => return Err(format!("{} pipelines, expected one", other.len())),
    };
    if program.table(source).is_none() {
        return Err(format!("the SQL declares no table '{source}'"));
    }
    for table in program.tables.values_mut() {
        if table.name.eq_ignore_ascii_case(source) {
            if replace {
                table.options.clear();
            }
            for (k, v) in source_options {
                table.options.insert((*k).to_string(), v.clone());
            }
        } else if table.name.eq_ignore_ascii_case(&sink) {
            table.options.clear();
            table
                .options
                .insert("connector".into(), "filesystem".into());
            table.options.insert("format".into(), "json".into());
            table
                .options
                .insert("path".into(), output.display().to_string());
        }
    }
    Ok(program)
}

fn int(e: &Event, name: &str) -> i64 {
    match e.i64(name) {
        Some(v) => v,
        None => panic!("oracle: event without integer '{name}': {:?}", e.fields),
    }
}

fn field(e: &Event, name: &str) -> Value {
    e.fields.get(name).cloned().unwrap_or(Value::Null)
}

/// The rows of example query `name` over the bids `bids`.
pub fn expected_rows(name: &str, bids: &[Event]) -> Result<Vec<Value>, String> {
    let time = |e: &Event| Value::from(format_time(e.ts_ms));
    Ok(match name {
        "q0" => bids
            .iter()
            .map(|e| {
                json!({"auction": field(e, "auction"), "bidder": field(e, "bidder"),
                       "price": field(e, "price"), "dateTime": time(e), "extra": field(e, "extra")})
            })
            .collect(),
        "q1" => bids
            .iter()
            .map(|e| {
                let euros = DOLLAR_TO_EURO * int(e, "price") as f64;
                json!({"auction": field(e, "auction"), "bidder": field(e, "bidder"),
                       "price": euros, "dateTime": time(e), "extra": field(e, "extra")})
            })
            .collect(),
        "q2" => bids
            .iter()
            .filter(|e| int(e, "auction") % Q2_AUCTION_MODULUS == 0)
            .map(|e| json!({"auction": field(e, "auction"), "price": field(e, "price")}))
            .collect(),
        "q7_simplified" => {
            OracleQuery::tumble(WINDOW_MS)
                .agg(Agg::max(args::int("price")))
                .output(|g| {
                    Some(json!({"window_start": g.start(), "window_end": g.end(),
                                "maxprice": g.aggs[0]}))
                })
                .run(bids)
                .rows
        }
        "window_auction" | "window_channel" => {
            let (key_column, by_auction) = if name == "window_auction" {
                ("auction", true)
            } else {
                ("channel", false)
            };
            OracleQuery::tumble(WINDOW_MS)
                .keys(move |e| {
                    vec![if by_auction {
                        Key::Int(int(e, "auction"))
                    } else {
                        args::str_key(e, "channel")
                    }]
                })
                .agg(Agg::count_star())
                .agg(Agg::max(args::int("price")))
                .agg(Agg::min(args::int("price")))
                .agg(Agg::sum_int(|e| e.i64("price")))
                .agg(Agg::avg(|e| e.f64("price")))
                .output(move |g| {
                    Some(json!({
                        key_column: g.key(0), "window_start": g.start(), "window_end": g.end(),
                        "bids": g.aggs[0], "max_price": g.aggs[1], "min_price": g.aggs[2],
                        "sum_price": g.aggs[3], "avg_price": g.aggs[4],
                    }))
                })
                .run(bids)
                .rows
        }
        other => return Err(format!("the oracle has no query '{other}'")),
    })
}

/// The fields that identify a row of example query `name`, for sorting and diffs.
pub fn key_fields(name: &str) -> &'static [&'static str] {
    match name {
        // `extra` (about 70 random letters) tells the bids apart; floats are no keys.
        "q0" | "q1" => &["auction", "dateTime", "extra"],
        "q2" => &["auction", "price"],
        "q7_simplified" => &["window_start"],
        "window_auction" => &["window_start", "auction"],
        _ => &["window_start", "channel"],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_parses_and_has_an_oracle() {
        let dir = std::env::temp_dir();
        for (name, sql) in QUERIES {
            let out = dir.join(format!("{name}.jsonl"));
            let program = nexmark_program(sql, "bid", &[("events.num", "100".into())], &out)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let bid = program.table("bid").expect("a bid table");
            assert_eq!(bid.option("events.num"), Some("100"), "{name}");
            assert_eq!(bid.connector(), "nexmark", "{name}");
            let sink = &program.pipelines[0].sink;
            let sink = program.table(sink).expect("sink table");
            assert_eq!(sink.connector(), "filesystem", "{name}");
            assert!(expected_rows(name, &[]).is_ok(), "{name}");
        }
        assert!(query_sql("q99").is_err());
    }

    #[test]
    fn bids_are_parsed_with_their_times() {
        let stream = StreamConfig::default();
        let bids = events_of(stream, EventKind::Bid, 100);
        assert_eq!(bids.len(), 92);
        assert_eq!(bids[0].ts_ms, stream.nominal_time_ms(4));
        let q2 = expected_rows("q2", &bids).expect("q2");
        assert!(q2.len() < bids.len());
        let q1 = expected_rows("q1", &bids).expect("q1");
        let ratio = q1[0]["price"].as_f64().unwrap_or(0.0) / int(&bids[0], "price") as f64;
        assert!((ratio - DOLLAR_TO_EURO).abs() < 1e-12);
    }
}
