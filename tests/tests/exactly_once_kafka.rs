//! The exactly-once (transactional) Kafka sink end to end, on librdkafka's mock cluster: the
//! `spillway` process reads trades while they are produced and is killed with SIGKILL at
//! random (seeded) moments, crashed at named points (between the job record and the Kafka
//! commits, and between one shard's Kafka commit and its log line), cut off from the broker
//! for a while, and made to fail a commit the way a timed-out transaction does. A last run
//! reads to the end.
//!
//! The mock cluster does not hide aborted records, so the check reads every record and sorts
//! it by its headers (epoch, shard, attempt) against the engine's transaction log: the
//! records of the transactions the engine committed equal the oracle, each exactly once; every
//! other record belongs to a transaction the engine aborted. A read_committed reader on a real
//! cluster sees exactly the first set (docs/ARCHITECTURE.md, "Exactly-once into Kafka").

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde_json::Value;
use spillway_connectors::embedded_kafka::EmbeddedKafka;
use spillway_connectors::kafka_txn::{HEADER_ATTEMPT, HEADER_EPOCH, HEADER_SHARD};
use spillway_connectors::kafka_txn_log::{read_log, Outcome};
use spillway_tests::compare::assert_rows_match;
use spillway_tests::data::{generate_trades, produce_lines, PartitionBy, TimeFormat, TradeSpec};
use spillway_tests::job::Scratch;
use spillway_tests::kafka::{read_topic_records, Batching};
use spillway_tests::process::{start_run, start_run_with};
use spillway_tests::tansu::TansuBroker;
use spillway_tests::trades_stats::trades_stats_rows;

const SEED: u64 = 20_261_125;
const ROUNDS: usize = 26;
const PARTITIONS: i32 = 2;
/// Crash points: after the job record, before the Kafka commits (recovery resends the epoch
/// from its redo files); after a shard's Kafka commit, before its log line.
const CRASH_POINTS: [&str; 2] = ["marker-committed", "transaction-committed"];

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
               'properties.group.id' = 'eo-job',
               'scan.startup.mode' = 'earliest-offset', {bounded} 'format' = 'json');
         CREATE TABLE stats (symbol STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3),
           trades BIGINT, volume BIGINT, avg_price DOUBLE, low DOUBLE, high DOUBLE)
         WITH ('connector' = 'kafka', 'topic' = 'stats',
               'properties.bootstrap.servers' = '{bootstrap}', 'format' = 'json',
               'key.fields' = 'symbol',
               'sink.delivery-guarantee' = 'exactly-once',
               'sink.transactional-id-prefix' = 'eo-test',
               'sink.transaction.timeout' = '20 s');
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

/// Transactions the engine logged as committed so far.
fn commits_logged(state: &Path) -> usize {
    read_log(&state.join("sink")).map_or(0, |log| {
        log.iter()
            .filter(|r| r.outcome == Outcome::Committed)
            .count()
    })
}

/// What the log says: `(epoch, shard, attempt)` -> (outcome, records).
type Txns = BTreeMap<(u64, usize, u64), Vec<(Outcome, Option<u64>, String)>>;

#[test]
fn committed_transactions_hold_the_oracle_exactly_once_through_crashes() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    kafka.create_topic("trades", PARTITIONS).expect("topic");
    kafka.create_topic("stats", 2).expect("topic");
    let bootstrap = kafka.bootstrap_servers();
    let lines = generate_trades(&TradeSpec {
        events: 50_000,
        seed: SEED,
        symbols: 30,
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
    std::fs::write(&running, sql(&bootstrap, &state, false)).expect("sql");
    std::fs::write(&last, sql(&bootstrap, &state, true)).expect("sql");

    let producer = {
        let (bootstrap, lines) = (bootstrap.clone(), lines.clone());
        std::thread::spawn(move || {
            for chunk in lines.chunks(1_000) {
                produce_lines(
                    &bootstrap,
                    "trades",
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
    let (mut killed, mut failed_commits) = (0, 0);
    for round in 0..ROUNDS {
        let shards = rng.random_range(1..=2);
        let log = scratch.path(&format!("round-{round}.log"));
        let text = || std::fs::read_to_string(&log).unwrap_or_default();
        match round % 13 {
            4 | 10 => {
                let point = CRASH_POINTS[(round / 13 + round % 13 / 10) % CRASH_POINTS.len()];
                let nth = rng.random_range(2..10);
                let spec = format!("{point}:{nth}");
                let status = start_run_with(&running, shards, &log, Some(&spec))
                    .expect("start")
                    .wait()
                    .expect("wait");
                assert!(
                    text().contains("crash point") && !status.success(),
                    "round {round}: crash point {spec} not reached: {status}: {}",
                    text()
                );
            }
            7 => {
                // A transaction the broker timed out: its end is refused with the producer
                // epoch it bumped. The job fails; the next run completes the epoch.
                let before = commits_logged(&state);
                let mut child = start_run(&running, shards, &log).expect("start");
                // Past recovery (whose test transaction also ends with EndTxn).
                let deadline = Instant::now() + Duration::from_secs(20);
                while commits_logged(&state) <= before && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                kafka.fail_next_requests(
                    RDKafkaApiKey::EndTxn,
                    RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH,
                    1,
                );
                let status = child.wait().expect("wait");
                // The refused EndTxn hits either a regular commit or, when recovery still had
                // an epoch to resend, that resend ("cannot commit the resent epoch"): both
                // must fail the run.
                assert!(
                    !status.success()
                        && (text().contains("cannot commit the transaction")
                            || text().contains("cannot commit the resent epoch")),
                    "round {round}: a refused commit fails the run: {status}: {}",
                    text()
                );
                failed_commits += 1;
            }
            _ => {
                let mut child = start_run(&running, shards, &log).expect("start");
                std::thread::sleep(Duration::from_millis(rng.random_range(250..700)));
                if round % 13 == 1 {
                    // Connections cut and restored: the run waits for the broker, then goes on.
                    kafka.broker_down(1).expect("down");
                    std::thread::sleep(Duration::from_millis(rng.random_range(300..1_200)));
                    kafka.broker_up(1).expect("up");
                    std::thread::sleep(Duration::from_millis(400));
                }
                child.kill().expect("SIGKILL");
                let status = child.wait().expect("wait");
                assert!(
                    status.code().is_none(),
                    "round {round} exited by itself: {status}: {}",
                    text()
                );
                killed += 1;
            }
        }
    }
    assert!(killed >= 20, "{killed} SIGKILL rounds");
    assert!(failed_commits >= 2);
    producer.join().expect("producer");
    let log = scratch.path("last.log");
    let status = start_run(&last, 2, &log)
        .expect("start")
        .wait()
        .expect("wait");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "last run: {status}: {text}");

    let mut txns: Txns = BTreeMap::new();
    for r in read_log(&state.join("sink")).expect("transaction log") {
        txns.entry((r.epoch, r.shard, r.attempt))
            .or_default()
            .push((r.outcome, r.records, r.how));
    }
    let committed: BTreeSet<(u64, usize, u64)> = txns
        .iter()
        .filter(|(_, v)| v.iter().any(|o| o.0 == Outcome::Committed))
        .map(|(k, _)| *k)
        .collect();
    for (k, v) in &txns {
        let outcomes: BTreeSet<Outcome> = v.iter().map(|o| o.0).collect();
        assert_eq!(outcomes.len(), 1, "{k:?} both committed and aborted: {v:?}");
    }
    let mut epochs_committed = BTreeSet::new();
    for &(epoch, shard, attempt) in &committed {
        assert!(
            epochs_committed.insert((epoch, shard)),
            "epoch {epoch} of shard {shard} committed twice (attempt {attempt})"
        );
    }
    assert!(
        txns.values().flatten().any(|o| o.2 == "resent at recovery"),
        "some epoch was completed at recovery from its redo file"
    );

    let mut rows = Vec::new();
    let mut per_txn: BTreeMap<(u64, usize, u64), u64> = BTreeMap::new();
    let mut aborted_records = 0;
    for r in read_topic_records(&bootstrap, "stats").expect("stats") {
        let header = |name: &str| -> u64 {
            r.headers
                .get(name)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("record without header {name}: {:?}", r.headers))
        };
        let key = (
            header(HEADER_EPOCH),
            header(HEADER_SHARD) as usize,
            header(HEADER_ATTEMPT),
        );
        let outcome = txns.get(&key).map(|v| v[0].0);
        match outcome {
            Some(Outcome::Committed) => {
                *per_txn.entry(key).or_default() += 1;
                let row: Value = serde_json::from_slice(&r.value).expect("JSON value");
                let k: Value = serde_json::from_slice(&r.key).expect("JSON key");
                assert_eq!(k["symbol"], row["symbol"], "key.fields = symbol");
                rows.push(row);
            }
            Some(Outcome::Aborted) => aborted_records += 1,
            None => panic!("record of transaction {key:?}, which the engine never settled"),
        }
    }
    assert!(aborted_records > 0, "crashes left aborted transactions");
    for (key, n) in &per_txn {
        let logged = txns[key].iter().find_map(|o| o.1);
        assert_eq!(
            logged,
            Some(*n),
            "transaction {key:?}: records read vs. logged"
        );
    }
    assert_rows_match(&rows, &expected, &["window_start", "symbol"]);
}

#[test]
fn exactly_once_is_refused_at_start_by_a_broker_without_transactions() {
    let tansu = TansuBroker::start().unwrap_or_else(|e| panic!("tansu: {e}"));
    tansu.create_topic("trades", 1).expect("topic");
    tansu.create_topic("stats", 1).expect("topic");
    let scratch = Scratch::new();
    let sql_path = scratch.path("job.sql");
    let text = sql(&tansu.bootstrap_servers(), &scratch.path("state"), true)
        .replace("'20 s'", "'20 s', 'sink.connect.timeout' = '3 s'");
    std::fs::write(&sql_path, text).expect("sql");
    let log = scratch.path("run.log");
    let status = start_run(&sql_path, 1, &log)
        .expect("start")
        .wait()
        .expect("wait");
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!status.success(), "{out}");
    assert!(
        out.contains("do not support Kafka transactions") && out.contains("exactly-once"),
        "{out}"
    );
}

#[test]
fn exactly_once_without_checkpoints_is_refused() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    kafka.create_topic("trades", 1).expect("topic");
    kafka.create_topic("stats", 1).expect("topic");
    let scratch = Scratch::new();
    let text = sql(&kafka.bootstrap_servers(), &scratch.path("state"), true);
    let text: String = text
        .lines()
        .filter(|l| !l.contains("SET 'checkpoint"))
        .collect::<Vec<_>>()
        .join("\n");
    let e = spillway_tests::job::run_sql(&text, &spillway_tests::job::options(1))
        .expect_err("no checkpoints")
        .to_string();
    assert!(e.contains("turn checkpoints on"), "{e}");
}
