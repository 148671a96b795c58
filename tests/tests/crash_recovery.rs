//! Crash recovery end to end: the `spillway` process reads trades from a Kafka broker while
//! they are being produced, and is killed with SIGKILL at random (seeded) moments, restarted
//! each time on 1 or 2 cores, now and then stopped with SIGTERM instead or crashed at a named
//! point between two steps of a commit. A last run reads to
//! the end. The results its exactly-once filesystem sink published must equal the oracle's:
//! nothing missing, nothing twice. The consumer group's committed offsets end at the end of
//! every partition (lag visible to Kafka tools).

use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use spillway_connectors::embedded_kafka::EmbeddedKafka;
use spillway_tests::compare::assert_rows_match;
use spillway_tests::data::{generate_trades, produce_lines, PartitionBy, TimeFormat, TradeSpec};
use spillway_tests::job::Scratch;
use spillway_tests::kafka::{committed_offsets, high_watermarks, Batching};
use spillway_tests::process::{committed_rows, start_run, start_run_with, terminate};
use spillway_tests::trades_stats::trades_stats_rows;

const SEED: u64 = 20_261_124;
const ROUNDS: usize = 28;
const PARTITIONS: i32 = 3;
const BOUND_MS: i64 = 300;
const TOPIC: &str = "trades";
const GROUP: &str = "spillway-crash-test";
const KEYS: [&str; 2] = ["window_start", "symbol"];
/// Crash points between the steps of a commit (see the engine's `checkpoint::crash_points`).
const CRASH_POINTS: [&str; 3] = ["state-durable", "marker-committed", "snapshot-taken"];

fn spec() -> TradeSpec {
    TradeSpec {
        events: 60_000,
        seed: SEED,
        symbols: 40,
        events_per_second: 5_000,
        disorder_ms: 250,
        times: TimeFormat::EpochMs,
        ..TradeSpec::default()
    }
}

fn oracle_rows(lines: &[String]) -> Vec<Value> {
    trades_stats_rows(lines, 100)
}

/// The query: unbounded while trades arrive, bounded (to the end) for the last run.
fn sql(bootstrap: &str, out: &Path, state: &Path, bounded: bool) -> String {
    let bounded = if bounded {
        "'scan.bounded.mode' = 'latest-offset',"
    } else {
        ""
    };
    format!(
        "CREATE TABLE trades (symbol STRING, price DOUBLE, volume BIGINT, ts TIMESTAMP(3),
           WATERMARK FOR ts AS ts - INTERVAL '{BOUND_MS}' MILLISECOND)
         WITH ('connector' = 'kafka', 'topic' = '{TOPIC}',
               'properties.bootstrap.servers' = '{bootstrap}',
               'properties.group.id' = '{GROUP}',
               'scan.startup.mode' = 'earliest-offset', {bounded}
               'format' = 'json');
         CREATE TABLE stats (symbol STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3),
           trades BIGINT, volume BIGINT, avg_price DOUBLE, low DOUBLE, high DOUBLE)
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         SET 'checkpoint.dir' = '{}';
         SET 'checkpoint.interval' = '20 ms';
         INSERT INTO stats
         SELECT symbol, window_start, window_end,
                COUNT(*), SUM(volume), AVG(price), MIN(price), MAX(price)
         FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '100' MILLISECOND))
         GROUP BY symbol, window_start, window_end;",
        out.display(),
        state.display()
    )
}

#[test]
fn sigkill_at_random_moments_publishes_every_result_exactly_once() {
    let lines = generate_trades(&spec());
    let expected = oracle_rows(&lines);
    let scratch = Scratch::new();
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    let bootstrap = kafka.bootstrap_servers();
    kafka.create_topic(TOPIC, PARTITIONS).expect("topic");
    let out = scratch.path("out");
    let state = scratch.path("state");
    let running_sql = scratch.path("running.sql");
    let final_sql = scratch.path("final.sql");
    std::fs::write(&running_sql, sql(&bootstrap, &out, &state, false)).expect("sql");
    std::fs::write(&final_sql, sql(&bootstrap, &out, &state, true)).expect("sql");

    // Trades arrive over about six seconds while the engine is killed and restarted.
    let producer = {
        let bootstrap = bootstrap.clone();
        let lines = lines.clone();
        std::thread::spawn(move || {
            for chunk in lines.chunks(1_000) {
                produce_lines(
                    &bootstrap,
                    TOPIC,
                    chunk,
                    PARTITIONS,
                    PartitionBy::RoundRobin,
                    Batching::Default,
                )
                .unwrap_or_else(|e| panic!("{e}"));
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let mut rng = StdRng::seed_from_u64(SEED);
    let mut graceful = 0;
    for round in 0..ROUNDS {
        let shards = rng.random_range(1..=2);
        let life = Duration::from_millis(rng.random_range(250..800));
        let log = scratch.path(&format!("round-{round}.log"));
        if round % 7 == 3 {
            // A crash exactly between two steps of a commit.
            let point = CRASH_POINTS[(round / 7) % CRASH_POINTS.len()];
            let nth = rng.random_range(2..12);
            let mut child =
                start_run_with(&running_sql, shards, &log, Some(&format!("{point}:{nth}")))
                    .expect("start");
            let status = child.wait().expect("wait");
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(
                text.contains("crash point") && !status.success(),
                "round {round}: crash point {point}:{nth} not reached: {status}: {text}"
            );
            continue;
        }
        let mut child = start_run(&running_sql, shards, &log).expect("start");
        std::thread::sleep(life);
        if round % 7 == 6 {
            // Now and then a graceful stop: a final checkpoint, exit 0.
            terminate(&child).expect("SIGTERM");
            let status = child.wait().expect("wait");
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(
                status.success(),
                "round {round}: SIGTERM exit {status}: {text}"
            );
            graceful += 1;
        } else {
            child.kill().expect("SIGKILL");
            let status = child.wait().expect("wait");

            if status.code().is_some() {
                // It exited by itself before the kill: that must be a failure report.
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("round {round}: spillway exited with {status} before SIGKILL: {text}");
            }
        }
    }
    assert!(graceful >= 2, "some rounds stop gracefully");
    producer.join().expect("producer");
    let ends = high_watermarks(&bootstrap, TOPIC).expect("ends");
    assert_eq!(ends.iter().sum::<i64>(), lines.len() as i64);

    // The last run reads to the end and takes its final checkpoint.
    let started = Instant::now();
    let log = scratch.path("final.log");
    let mut child = start_run(&final_sql, 2, &log).expect("start");
    let status = child.wait().expect("wait");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "final run: {status}: {text}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the final run resumed instead of starting over"
    );
    assert!(
        text.contains("final"),
        "the final checkpoint was committed: {text}"
    );
    let read_last: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("events in:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no events count in: {text}"));
    assert!(
        read_last < lines.len() as u64,
        "the last run resumed from a checkpoint ({read_last} of {} events read again)",
        lines.len()
    );

    let rows = committed_rows(&out).expect("output");
    let mut seen = std::collections::HashSet::new();
    for r in &rows {
        assert!(
            seen.insert((r["symbol"].clone(), r["window_start"].clone())),
            "a result was published twice: {r}"
        );
    }
    assert_rows_match(&rows, &expected, &KEYS);

    let committed = committed_offsets(&bootstrap, GROUP, TOPIC).expect("committed");
    let ends: Vec<Option<i64>> = ends.into_iter().map(Some).collect();
    assert_eq!(
        committed, ends,
        "the group's offsets end where the input ends"
    );
}
