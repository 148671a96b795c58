//! Test input: generated trades (the connectors' `TradeGenerator`, with a bounded disorder)
//! as JSON lines, written to a file or produced to a topic with a chosen partition per record.
//!
//! A subsequence of a stream whose events are at most `disorder_ms` older than any earlier
//! event keeps that property, so however the records are spread over partitions or file
//! splits, a watermark bound of at least `disorder_ms` makes nothing late.

use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

use serde_json::Value;
use spillway_connectors::trades_generator::{TradeGenConfig, TradeGenerator};

use crate::kafka::{self, Batching};
use crate::oracle::{format_time, format_time_iso, parse_events, Event};

/// How the event time of generated records is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFormat {
    /// Epoch milliseconds (what the generator writes).
    EpochMs,
    /// In turn: epoch milliseconds, `yyyy-MM-dd HH:mm:ss.SSS` and `yyyy-MM-ddTHH:mm:ss.SSSZ`.
    Mixed,
}

/// What trades to generate.
#[derive(Debug, Clone)]
pub struct TradeSpec {
    pub events: usize,
    pub seed: u64,
    pub symbols: usize,
    /// First nominal event time (epoch ms).
    pub start_ts_ms: i64,
    /// Event-time spacing: nominal events per second of event time.
    pub events_per_second: u64,
    /// Events arrive up to this many ms out of order.
    pub disorder_ms: u64,
    pub times: TimeFormat,
}

impl Default for TradeSpec {
    fn default() -> Self {
        TradeSpec {
            events: 20_000,
            seed: 42,
            symbols: 64,
            start_ts_ms: 1_700_000_000_000,
            events_per_second: 10_000,
            disorder_ms: 200,
            times: TimeFormat::EpochMs,
        }
    }
}

/// Generates the trades of `spec` as JSON lines (without newlines), in delivery order.
pub fn generate_trades(spec: &TradeSpec) -> Vec<String> {
    let mut generator = TradeGenerator::new(TradeGenConfig {
        seed: spec.seed,
        symbols: spec.symbols,
        start_ts_ms: spec.start_ts_ms,
        events_per_second: spec.events_per_second,
        disorder_ms: spec.disorder_ms,
        late_every: None,
    });
    let mut buf = Vec::with_capacity(128);
    (0..spec.events)
        .map(|i| {
            let trade = generator.next();
            buf.clear();
            generator.write_json(&trade, &mut buf);
            let line = String::from_utf8_lossy(&buf).into_owned();
            match spec.times {
                TimeFormat::EpochMs => line,
                TimeFormat::Mixed => with_time_form(&line, trade.ts_ms, i % 3),
            }
        })
        .collect()
}

/// Rewrites the `ts` of a JSON line: 0 = epoch ms, 1 = SQL form, 2 = ISO-8601.
fn with_time_form(line: &str, ts_ms: i64, form: usize) -> String {
    let Ok(Value::Object(mut fields)) = serde_json::from_str::<Value>(line) else {
        panic!("the trade generator wrote a line that is not a JSON object: {line}");
    };
    let ts = match form {
        0 => Value::from(ts_ms),
        1 => Value::from(format_time(ts_ms)),
        _ => Value::from(format_time_iso(ts_ms)),
    };
    fields.insert("ts".to_string(), ts);
    Value::Object(fields).to_string()
}

/// The watermark bound the tests declare for [`standard_trades`] (above its disorder).
pub const STANDARD_BOUND_MS: i64 = 300;

/// The data set most tests share: 200k trades over 64 symbols, 2,000 events per second of
/// event time (100 s), up to 200 ms out of order, event times in mixed forms. About 15 MB as
/// JSON lines, so a file of it is cut into 4 splits (one per 4 MiB) for 4 shards.
pub fn standard_spec() -> TradeSpec {
    TradeSpec {
        events: 200_000,
        seed: 2024,
        symbols: 64,
        start_ts_ms: 1_700_000_000_000,
        events_per_second: 2_000,
        disorder_ms: 200,
        times: TimeFormat::Mixed,
    }
}

/// The lines of [`standard_spec`], generated once per test process.
pub fn standard_trades() -> &'static [String] {
    static LINES: OnceLock<Vec<String>> = OnceLock::new();
    LINES.get_or_init(|| generate_trades(&standard_spec()))
}

/// [`standard_trades`] parsed by the oracle, once per test process.
pub fn standard_events() -> &'static [Event] {
    static EVENTS: OnceLock<Vec<Event>> = OnceLock::new();
    EVENTS.get_or_init(|| match parse_events(&standard_trades().join("\n"), "ts") {
        Ok(events) => events,
        Err(e) => panic!("the generated trades do not parse: {e}"),
    })
}

/// How records are spread over partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionBy {
    /// By a hash of the `symbol` field (like a keyed Kafka producer): a symbol stays on one
    /// partition.
    Symbol,
    /// Record `i` to partition `i mod n`: every symbol is on every partition, so partial
    /// aggregates of one key come from several shards.
    RoundRobin,
}

/// The partition of record `index` (`line`) of `partitions`.
pub fn partition_of(index: usize, line: &str, partitions: i32, by: PartitionBy) -> i32 {
    assert!(partitions > 0, "at least one partition");
    match by {
        PartitionBy::RoundRobin => (index % partitions as usize) as i32,
        PartitionBy::Symbol => {
            let symbol = serde_json::from_str::<Value>(line)
                .ok()
                .and_then(|v| v.get("symbol").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_default();
            // FNV-1a: stable across runs and platforms.
            let hash = symbol.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
            (hash % partitions as u64) as i32
        }
    }
}

/// Writes lines to `path`, one per line.
pub fn write_lines(path: &Path, lines: &[String]) -> Result<(), String> {
    let file = std::fs::File::create(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    for line in lines {
        w.write_all(line.as_bytes())
            .and_then(|()| w.write_all(b"\n"))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    w.flush()
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// 6000 generated trades (12 symbols, 2000 per second of event time, 80 ms disorder, seed
/// `seed`) with late events injected: every 40th event `old_ms` old, and every 37th between
/// `bound_ms` and `bound_ms + spread_ms` old (late or not depending on where its window ends).
pub fn trades_with_late_events(
    seed: u64,
    bound_ms: i64,
    old_ms: i64,
    spread_ms: i64,
) -> Vec<String> {
    let lines = generate_trades(&TradeSpec {
        events: 6_000,
        seed,
        symbols: 12,
        events_per_second: 2_000,
        disorder_ms: 80,
        ..TradeSpec::default()
    });
    lines
        .into_iter()
        .enumerate()
        .map(|(i, line)| {
            let back = if i > 0 && i % 40 == 0 {
                old_ms
            } else if i > 0 && i % 37 == 0 {
                bound_ms + (i as i64 * 7919) % spread_ms
            } else {
                return line;
            };
            let mut v: Value = serde_json::from_str(&line).expect("generated JSON");
            let ts = v["ts"].as_i64().expect("epoch ms");
            v["ts"] = Value::from(ts - back);
            v.to_string()
        })
        .collect()
}

/// Produces the lines to `topic` (which has `partitions` partitions), spread by `by`.
pub fn produce_lines(
    bootstrap: &str,
    topic: &str,
    lines: &[String],
    partitions: i32,
    by: PartitionBy,
    batching: Batching,
) -> Result<u64, String> {
    let records = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (partition_of(i, l, partitions, by), l.as_bytes()));
    kafka::produce(bootstrap, topic, records, batching)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_trades_are_deterministic_and_within_the_disorder() {
        let spec = TradeSpec {
            events: 5_000,
            disorder_ms: 150,
            ..TradeSpec::default()
        };
        let lines = generate_trades(&spec);
        assert_eq!(lines, generate_trades(&spec));
        assert_eq!(lines.len(), 5_000);
        let events = parse_events(&lines.join("\n"), "ts").expect("good events");
        let mut ts_max = i64::MIN;
        let mut out_of_order = 0;
        for e in &events {
            assert!(
                e.ts_ms >= ts_max.saturating_sub(150),
                "disorder over 150 ms at {e:?}"
            );
            out_of_order += usize::from(e.ts_ms < ts_max);
            ts_max = ts_max.max(e.ts_ms);
            assert!(
                e.str("symbol").is_some() && e.f64("price").is_some() && e.i64("volume").is_some()
            );
        }
        assert!(
            out_of_order > 100,
            "the data has disorder ({out_of_order} events out of order)"
        );
    }

    #[test]
    fn mixed_time_forms_keep_the_event_time() {
        let base = TradeSpec {
            events: 300,
            ..TradeSpec::default()
        };
        let mixed = TradeSpec {
            times: TimeFormat::Mixed,
            ..base.clone()
        };
        let a = parse_events(&generate_trades(&base).join("\n"), "ts").expect("epoch");
        let b_lines = generate_trades(&mixed);
        assert!(
            b_lines[1].contains("\"ts\":\"20") && b_lines[2].contains('T'),
            "{}",
            b_lines[2]
        );
        let b = parse_events(&b_lines.join("\n"), "ts").expect("mixed");
        let view = |e: &crate::oracle::Event| {
            (
                e.ts_ms,
                e.str("symbol").map(str::to_string),
                e.f64("price"),
                e.i64("volume"),
            )
        };
        assert_eq!(
            a.iter().map(view).collect::<Vec<_>>(),
            b.iter().map(view).collect::<Vec<_>>()
        );
    }

    #[test]
    fn partitions_spread_records() {
        let lines = generate_trades(&TradeSpec {
            events: 1_000,
            ..TradeSpec::default()
        });
        for by in [PartitionBy::Symbol, PartitionBy::RoundRobin] {
            let mut counts = [0usize; 4];
            for (i, l) in lines.iter().enumerate() {
                counts[partition_of(i, l, 4, by) as usize] += 1;
            }
            assert!(counts.iter().all(|&c| c > 100), "{by:?}: {counts:?}");
        }
        // by symbol, one symbol stays on one partition
        let p0 = partition_of(0, r#"{"symbol":"SYM001"}"#, 4, PartitionBy::Symbol);
        assert_eq!(
            p0,
            partition_of(9, r#"{"symbol":"SYM001","x":1}"#, 4, PartitionBy::Symbol)
        );
    }
}
