//! The `upsert-kafka` sink through crashes, on the mock cluster and on tansu: the engine
//! reads trades from the broker while they are produced, is killed with SIGKILL at random
//! (seeded) moments (20 rounds, some with the broker unreachable for a while first: the mock
//! broker down, tansu frozen) and restarted on 1 or 2 cores, then a last run reads to the end. Results go to an upsert topic keyed by
//! the sink table's PRIMARY KEY (symbol, window_start): replays rewrite a key with the same
//! value, so the last value of every key equals the oracle's row, with no key missing or extra.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use spillway_connectors::embedded_kafka::EmbeddedKafka;
use spillway_tests::compare::assert_rows_match;
use spillway_tests::data::{generate_trades, produce_lines, PartitionBy, TimeFormat, TradeSpec};
use spillway_tests::job::Scratch;
use spillway_tests::kafka::{read_topic, Batching};
use spillway_tests::process::start_run;
use spillway_tests::tansu::TansuBroker;
use spillway_tests::trades_stats::trades_stats_rows;

const SEED: u64 = 5;
const ROUNDS: usize = 20;
const PARTITIONS: i32 = 2;

fn sql(bootstrap: &str, state: &Path, bounded: bool) -> String {
    let bounded = if bounded {
        "'scan.bounded.mode' = 'latest-offset',"
    } else {
        ""
    };
    format!(
        "CREATE TABLE trades (symbol STRING, price DOUBLE, volume BIGINT, ts TIMESTAMP(3),
           WATERMARK FOR ts AS ts - INTERVAL '300' MILLISECOND)
         WITH ('connector' = 'kafka', 'topic' = 'trades',
               'properties.bootstrap.servers' = '{bootstrap}',
               'scan.startup.mode' = 'earliest-offset', {bounded} 'format' = 'json');
         CREATE TABLE stats (symbol STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3),
           trades BIGINT, volume BIGINT, avg_price DOUBLE, low DOUBLE, high DOUBLE,
           PRIMARY KEY (symbol, window_start) NOT ENFORCED)
         WITH ('connector' = 'upsert-kafka', 'topic' = 'stats',
               'properties.bootstrap.servers' = '{bootstrap}', 'format' = 'json');
         SET 'checkpoint.dir' = '{}';
         SET 'checkpoint.interval' = '30 ms';
         INSERT INTO stats
         SELECT symbol, window_start, window_end,
                COUNT(*), SUM(volume), AVG(price), MIN(price), MAX(price)
         FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '100' MILLISECOND))
         GROUP BY symbol, window_start, window_end;",
        state.display()
    )
}

/// Kills and restarts the engine while trades arrive at `bootstrap` (topics `trades` and
/// `stats` exist), then checks the last value of every key of `stats` against the oracle.
fn sigkill_rounds(
    bootstrap: &str,
    batching: Batching,
    events: usize,
    cut: &dyn Fn(Duration) -> Result<(), String>,
) {
    let lines = generate_trades(&TradeSpec {
        events,
        seed: SEED,
        symbols: 24,
        events_per_second: 5_000,
        disorder_ms: 250,
        times: TimeFormat::EpochMs,
        ..TradeSpec::default()
    });
    let expected = trades_stats_rows(&lines, 100);
    let scratch = Scratch::new();
    let state = scratch.path("state");
    let running = scratch.path("running.sql");
    let last = scratch.path("last.sql");
    std::fs::write(&running, sql(bootstrap, &state, false)).expect("sql");
    std::fs::write(&last, sql(bootstrap, &state, true)).expect("sql");

    let producer = {
        let (bootstrap, lines) = (bootstrap.to_string(), lines.clone());
        std::thread::spawn(move || {
            for chunk in lines.chunks(1_000) {
                produce_lines(
                    &bootstrap,
                    "trades",
                    chunk,
                    PARTITIONS,
                    PartitionBy::RoundRobin,
                    batching,
                )
                .unwrap_or_else(|e| panic!("{e}"));
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let mut rng = StdRng::seed_from_u64(SEED);
    for round in 0..ROUNDS {
        let log = scratch.path(&format!("round-{round}.log"));
        let mut child = start_run(&running, rng.random_range(1..=2), &log).expect("start");
        std::thread::sleep(Duration::from_millis(rng.random_range(250..800)));
        if round % 6 == 2 {
            // The broker unreachable for a while: the run waits, then goes on.
            cut(Duration::from_millis(rng.random_range(300..1_200))).expect("cut");
            std::thread::sleep(Duration::from_millis(400));
        }
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("wait");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            status.code().is_none(),
            "round {round} exited by itself: {status}: {text}"
        );
    }
    producer.join().expect("producer");
    let log = scratch.path("last.log");
    let status = start_run(&last, 2, &log)
        .expect("start")
        .wait()
        .expect("wait");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "last run: {status}: {text}");

    let records = read_topic(bootstrap, "stats").expect("stats topic");
    let mut latest: BTreeMap<Vec<u8>, Value> = BTreeMap::new();
    for (key, value) in &records {
        let row: Value = serde_json::from_slice(value).expect("JSON value");
        let k: Value = serde_json::from_slice(key).expect("JSON key");
        assert_eq!(
            k["symbol"], row["symbol"],
            "the key is the primary key of the row"
        );
        assert_eq!(k["window_start"], row["window_start"]);
        latest.insert(key.clone(), row);
    }
    assert!(
        records.len() >= expected.len(),
        "replays may repeat keys, never lose one"
    );
    let rows: Vec<Value> = latest.into_values().collect();
    assert_rows_match(&rows, &expected, &["window_start", "symbol"]);
}

#[test]
fn upsert_topic_holds_the_oracle_after_sigkill_rounds_on_the_mock_cluster() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    kafka.create_topic("trades", PARTITIONS).expect("topic");
    kafka.create_topic("stats", 1).expect("topic");
    let cut = |pause: Duration| -> Result<(), String> {
        kafka.broker_down(1).map_err(|e| e.to_string())?;
        std::thread::sleep(pause);
        kafka.broker_up(1).map_err(|e| e.to_string())
    };
    sigkill_rounds(&kafka.bootstrap_servers(), Batching::Default, 40_000, &cut);
}

/// tansu answers "latest offset" with the last batch's base offset + 1: the trades are
/// produced one record per batch so the bounded last run sees the true end.
#[test]
fn upsert_topic_holds_the_oracle_after_sigkill_rounds_on_tansu() {
    let tansu = TansuBroker::start().unwrap_or_else(|e| panic!("tansu: {e}"));
    tansu.create_topic("trades", PARTITIONS).expect("topic");
    tansu.create_topic("stats", 1).expect("topic");
    sigkill_rounds(
        &tansu.bootstrap_servers(),
        Batching::OneRecordPerBatch,
        20_000,
        &|pause| tansu.freeze_for(pause),
    );
}

#[test]
fn upsert_kafka_without_primary_key_or_with_key_fields_is_refused() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    let bootstrap = kafka.bootstrap_servers();
    kafka.create_topic("stats", 1).expect("topic");
    let base = |columns: &str, extra: &str| {
        format!(
            "CREATE TABLE t (k STRING, v BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) WITH (
               'connector' = 'filesystem', 'path' = '/dev/null', 'format' = 'json');
             CREATE TABLE out ({columns}) WITH ('connector' = 'upsert-kafka', 'topic' = 'stats',
               'properties.bootstrap.servers' = '{bootstrap}', 'format' = 'json'{extra});
             INSERT INTO out SELECT k, COUNT(*) FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts),
               INTERVAL '1' SECOND)) GROUP BY k, window_start, window_end;"
        )
    };
    let opts = spillway_tests::job::options(1);
    let e = spillway_tests::job::run_sql(&base("k STRING, n BIGINT", ""), &opts)
        .expect_err("no key")
        .to_string();
    assert!(e.contains("PRIMARY KEY"), "{e}");
    let e = spillway_tests::job::run_sql(
        &base(
            "k STRING, n BIGINT, PRIMARY KEY (k) NOT ENFORCED",
            ", 'key.fields' = 'k'",
        ),
        &opts,
    )
    .expect_err("key.fields")
    .to_string();
    assert!(e.contains("key.fields"), "{e}");
}
