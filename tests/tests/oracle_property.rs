//! Property test against the oracle: random small streams (keys, event times around the
//! epoch with a bounded disorder, odd window sizes, negative and positive values), random
//! partition counts and placements on librdkafka's mock cluster, 1 to 3 shards. Whatever
//! proptest draws, the engine's rows equal the oracle's and nothing is late.

use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use serde_json::{json, Value};
use spillway_connectors::embedded_kafka::EmbeddedKafka;
use spillway_tests::compare::compare_rows;
use spillway_tests::job::{file_sink_table, kafka_source_table, options, run_to_rows, Scratch};
use spillway_tests::kafka::{produce, Batching};
use spillway_tests::oracle::{args, parse_events, Agg, OracleQuery};

/// One drawn event: symbol index, event-time step from the previous nominal time, how far
/// it is delivered late (a fraction of the disorder), price in cents, volume, partition.
type Draw = (u8, u16, u8, u32, i64, u8);

fn events_strategy() -> impl Strategy<Value = Vec<Draw>> {
    prop::collection::vec(
        (
            0u8..5,
            0u16..40,
            0u8..=100,
            1u32..1_000_000,
            -1_000i64..1_000,
            0u8..4,
        ),
        1..300,
    )
}

struct Case {
    lines: Vec<String>,
    partitions: Vec<i32>,
}

/// Builds JSON lines: nominal times ascend from `base`, each delivered up to `disorder_ms`
/// late (so disorder never exceeds it).
fn build(draws: &[Draw], base: i64, disorder_ms: i64, partitions: i32) -> Case {
    let mut nominal = base;
    let mut lines = Vec::with_capacity(draws.len());
    let mut parts = Vec::with_capacity(draws.len());
    for &(symbol, step, late_pct, cents, volume, partition) in draws {
        nominal += i64::from(step);
        let ts = nominal - disorder_ms * i64::from(late_pct) / 100;
        let price = f64::from(cents) / 100.0;
        lines.push(
            json!({"symbol": format!("K{symbol}"), "price": price, "volume": volume, "ts": ts})
                .to_string(),
        );
        parts.push(i32::from(partition) % partitions);
    }
    Case {
        lines,
        partitions: parts,
    }
}

const COLUMNS: &str = "symbol STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3), \
    trades BIGINT, volume BIGINT, low BIGINT, high DOUBLE, avg_price DOUBLE";

fn check_case(
    kafka: &EmbeddedKafka,
    case: &Case,
    size_ms: i64,
    bound_ms: i64,
    partitions: i32,
    shards: usize,
) -> Result<(), String> {
    static TOPIC: AtomicUsize = AtomicUsize::new(0);
    let topic = format!("prop-{}", TOPIC.fetch_add(1, Ordering::Relaxed));
    kafka
        .create_topic(&topic, partitions)
        .map_err(|e| e.to_string())?;
    let bootstrap = kafka.bootstrap_servers();
    let records = case
        .lines
        .iter()
        .zip(&case.partitions)
        .map(|(l, p)| (*p, l.as_bytes()));
    produce(&bootstrap, &topic, records, Batching::Default)?;

    let scratch = Scratch::new();
    let output = scratch.path("out.jsonl");
    let sql = format!(
        "{}{}INSERT INTO out
         SELECT symbol, window_start, window_end, COUNT(*), SUM(volume), MIN(volume),
                MAX(price), AVG(price)
         FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '{size_ms}' MILLISECOND))
         GROUP BY symbol, window_start, window_end;",
        kafka_source_table("trades", &topic, &bootstrap, bound_ms),
        file_sink_table("out", COLUMNS, &output)
    );
    let outcome = run_to_rows(&sql, &options(shards), &output)?;
    if outcome.report.late_events() != 0 {
        return Err(format!("{} late events", outcome.report.late_events()));
    }
    let events = parse_events(&case.lines.join("\n"), "ts")?;
    let expected: Vec<Value> = OracleQuery::tumble(size_ms)
        .keys(|e| vec![args::str_key(e, "symbol")])
        .agg(Agg::count_star())
        .agg(Agg::sum_int(|e| e.i64("volume")))
        .agg(Agg::min(args::int("volume")))
        .agg(Agg::max(args::float("price")))
        .agg(Agg::avg(|e| e.f64("price")))
        .output(|g| {
            Some(json!({
                "symbol": g.key(0), "window_start": g.start(), "window_end": g.end(),
                "trades": g.aggs[0], "volume": g.aggs[1], "low": g.aggs[2], "high": g.aggs[3],
                "avg_price": g.aggs[4],
            }))
        })
        .run(&events)
        .rows;
    compare_rows(&outcome.rows, &expected, &["window_start", "symbol"])
}

#[test]
fn random_streams_match_the_oracle() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    let config = ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        draws in events_strategy(),
        base in -5_000i64..5_000,
        size_ms in prop::sample::select(vec![7i64, 100, 1_000]),
        disorder_ms in 0i64..300,
        extra_bound_ms in 0i64..50,
        partitions in 1i32..=4,
        shards in 1usize..=3,
    )| {
        let case = build(&draws, base, disorder_ms, partitions);
        let result = check_case(&kafka, &case, size_ms, disorder_ms + extra_bound_ms, partitions, shards);
        prop_assert!(result.is_ok(), "{} partitions, {} shards, {} ms windows: {}",
            partitions, shards, size_ms, result.err().unwrap_or_default());
    });
}
