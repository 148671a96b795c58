//! A lookup join while the dimension table changes under a running stream, on the mock
//! cluster and on tansu: updates, a delete and a re-insert, and a key that appears only
//! later, produced between batches of stream events while the engine runs (2 shards).
//!
//! Which version an event meets depends on timing, so the oracle checks what must hold
//! whatever the timing: every event comes out exactly once; the version it met is one the
//! key had at some time (or NULL when the key was absent at some time); on each partition
//! (one shard, one copy of the table) the versions met never go back in the key's history
//! (updates apply in order); and events produced once the table stopped changing (and the
//! engine had time to read it) meet the final version.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use spillway_connectors::embedded_kafka::EmbeddedKafka;
use spillway_tests::compare::read_json_lines;
use spillway_tests::job::{file_sink_table, options, run_sql, Scratch};
use spillway_tests::kafka::{produce, Batching};
use spillway_tests::tansu::TansuBroker;

const KEYS: usize = 10;
const ROUNDS: i64 = 6;
const EVENTS_PER_ROUND: i64 = 300;
const FINAL_EVENTS: i64 = 400;
const START_TS_MS: i64 = 1_700_000_000_000;

/// The value of a key at some point: Some(version) or None (absent).
type State = Option<i64>;

/// The change of `key` in round `round` (round 0: the table before the job starts).
fn change(key: usize, round: i64) -> Option<State> {
    match (key, round) {
        (9, _) => None,                             // K9 never exists
        (8, r) if r < 2 => None,                    // K8 appears only in round 2
        (1, 3) => Some(None),                       // K1 is deleted in round 3 ...
        (1, 4) => None,                             // ... stays away in round 4 ...
        (_, r) => Some(Some(r * 100 + key as i64)), // ... and is back in round 5
    }
}

/// Every state each key goes through, in order (starting with absent).
fn histories() -> Vec<Vec<State>> {
    (0..KEYS)
        .map(|k| {
            let mut h = vec![None];
            for r in 0..=ROUNDS {
                if let Some(s) = change(k, r) {
                    if h.last() != Some(&s) {
                        h.push(s);
                    }
                }
            }
            h
        })
        .collect()
}

fn produce_round(producer: &BaseProducer, round: i64) {
    for k in 0..KEYS {
        let Some(state) = change(k, round) else {
            continue;
        };
        let key = json!({ "k": format!("K{k}") }).to_string();
        let payload = state.map(|v| json!({"k": format!("K{k}"), "version": v}).to_string());
        let mut record = BaseRecord::<String, String>::to("dim")
            .key(&key)
            .partition((k % 2) as i32);
        if let Some(p) = &payload {
            record = record.payload(p);
        }
        producer.send(record).map_err(|(e, _)| e).expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

fn events(from: i64, to: i64) -> Vec<(i32, Vec<u8>)> {
    (from..to)
        .map(|seq| {
            let line = json!({"symbol": format!("K{}", seq % KEYS as i64), "seq": seq, "ts": START_TS_MS + seq});
            ((seq % 2) as i32, line.to_string().into_bytes())
        })
        .collect()
}

fn produce_events(bootstrap: &str, from: i64, to: i64, batching: Batching) {
    let records = events(from, to);
    produce(
        bootstrap,
        "trades",
        records.iter().map(|(p, l)| (*p, l.as_slice())),
        batching,
    )
    .expect("events");
}

fn racing(bootstrap: &str, batching: Batching) {
    let scratch = Scratch::new();
    let out = scratch.path("out.jsonl");
    let sql = format!(
        "CREATE TABLE trades (symbol STRING, seq BIGINT, ts TIMESTAMP(3),
           WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH ('connector' = 'kafka', 'topic' = 'trades', 'properties.bootstrap.servers' = '{bootstrap}',
               'scan.startup.mode' = 'earliest-offset', 'format' = 'json');
         CREATE TABLE dim (k STRING, version BIGINT, PRIMARY KEY (k) NOT ENFORCED)
         WITH ('connector' = 'upsert-kafka', 'topic' = 'dim', 'properties.bootstrap.servers' = '{bootstrap}',
               'format' = 'json');
         {}INSERT INTO out SELECT t.symbol, t.seq, s.version FROM trades t LEFT JOIN dim s ON s.k = t.symbol;",
        file_sink_table("out", "symbol STRING, seq BIGINT, version BIGINT", &out)
    );
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "0")
        .set("max.in.flight.requests.per.connection", "1")
        .set("enable.idempotence", "false")
        .create()
        .expect("producer");
    produce_round(&producer, 0);
    let opts = options(2);
    let stop = opts.stop.clone();
    let job = thread::spawn(move || run_sql(&sql, &opts).map_err(|e| e.to_string()));
    thread::sleep(Duration::from_millis(500));
    let mut seq = 0;
    for round in 1..=ROUNDS {
        produce_events(bootstrap, seq, seq + EVENTS_PER_ROUND, batching);
        seq += EVENTS_PER_ROUND;
        produce_round(&producer, round);
        thread::sleep(Duration::from_millis(30));
    }
    // The table stops changing; the engine gets time to read it.
    thread::sleep(Duration::from_millis(1500));
    let final_from = seq;
    produce_events(bootstrap, seq, seq + FINAL_EVENTS, batching);
    let total = seq + FINAL_EVENTS;
    // Results are written as they are joined; wait for the engine to read everything.
    let deadline = Instant::now() + Duration::from_secs(5);
    thread::sleep(Duration::from_millis(1500));
    while Instant::now() < deadline && !job.is_finished() {
        let seen = read_json_lines(&out).map(|r| r.len() as i64).unwrap_or(0);
        if seen >= total {
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Release);
    let report = match job.join() {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => panic!("the job failed: {e}"),
        Err(_) => panic!("the job thread panicked"),
    };
    assert_eq!(report.records_in(), total as u64);
    let rows = read_json_lines(&out).expect("output");
    check(&rows, total, final_from);
}

/// The oracle's checks (see the module docs).
fn check(rows: &[Value], total: i64, final_from: i64) {
    let histories = histories();
    let mut by_seq: BTreeMap<i64, State> = BTreeMap::new();
    for r in rows {
        let seq = r["seq"].as_i64().expect("seq");
        let version = r["version"].as_i64();
        let key = (seq % KEYS as i64) as usize;
        assert_eq!(r["symbol"], Value::from(format!("K{key}")), "{r}");
        assert!(
            by_seq.insert(seq, version).is_none(),
            "event {seq} came out twice"
        );
    }
    assert_eq!(by_seq.len() as i64, total, "every event comes out once");
    // Per partition and key: the states met never go back in the key's history.
    let mut position: BTreeMap<(i64, usize), usize> = BTreeMap::new();
    let mut met_updates = 0;
    for (&seq, state) in &by_seq {
        let key = (seq % KEYS as i64) as usize;
        let history = &histories[key];
        let at = position.entry((seq % 2, key)).or_insert(0);
        let found = (*at..history.len()).find(|&i| history[i] == *state);
        match found {
            Some(i) => *at = i,
            None => panic!(
                "event {seq} of K{key} met {state:?}: not in the rest of its history {:?} (after position {at})",
                history
            ),
        }
        if seq >= final_from {
            assert_eq!(
                state,
                history.last().expect("history"),
                "event {seq} (after the table stopped changing) met an old version of K{key}"
            );
        }
        met_updates += usize::from(state.is_some_and(|v| v >= 100));
    }
    assert!(met_updates > 0, "updates reached the stream");
}

#[test]
fn histories_cover_updates_deletes_and_late_keys() {
    let h = histories();
    assert_eq!(h[9], vec![None]);
    assert_eq!(h[8][0], None);
    assert_eq!(h[8][1], Some(208));
    assert!(h[1].contains(&Some(201)) && h[1].contains(&Some(501)));
    assert_eq!(h[1].iter().filter(|s| s.is_none()).count(), 2, "{:?}", h[1]);
}

#[test]
fn updates_racing_with_the_stream_on_the_mock_cluster() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    kafka.create_topic("trades", 2).expect("topic");
    kafka.create_topic("dim", 2).expect("topic");
    racing(&kafka.bootstrap_servers(), Batching::Default);
}

#[test]
fn updates_racing_with_the_stream_on_tansu() {
    let tansu = TansuBroker::start().unwrap_or_else(|e| panic!("tansu: {e}"));
    tansu.create_topic("trades", 2).expect("topic");
    tansu.create_topic("dim", 2).expect("topic");
    racing(&tansu.bootstrap_servers(), Batching::OneRecordPerBatch);
}
