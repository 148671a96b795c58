//! The transactional flow against librdkafka's mock cluster (which accepts the transactional
//! protocol but neither hides aborted records nor applies offsets sent in a transaction).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::*;
use crate::embedded_kafka::test_support::options;
use crate::embedded_kafka::EmbeddedKafka;
use crate::kafka_options::KafkaSinkOptions;
use crate::kafka_txn_log::{read_log, Outcome};
use crate::KafkaGroup;

const GROUP: &str = "g";

fn part(p: i32) -> PartitionInfo {
    PartitionInfo {
        topic: "in".into(),
        partition: p,
    }
}

fn start() -> (EmbeddedKafka, String) {
    let kafka = EmbeddedKafka::start(1).expect("kafka");
    kafka.create_topic("in", 2).expect("in");
    kafka.create_topic("out", 1).expect("out");
    let servers = kafka.bootstrap_servers();
    (kafka, servers)
}

fn coordinator(servers: &str) -> TxnCoordinator {
    let o = options(
        servers,
        "out",
        &[
            ("sink.delivery-guarantee", "exactly-once"),
            ("sink.transactional-id-prefix", "job"),
            ("sink.connect.timeout", "5 s"),
        ],
    );
    TxnCoordinator::new(
        "stats",
        KafkaSinkOptions::parse("stats", &o).expect("options"),
    )
}

fn group_config(servers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", servers).set("group.id", GROUP);
    c
}

fn context(servers: &str, dir: &Path, attempt: u64, positions: &[(i32, i64)]) -> EpochSinkContext {
    EpochSinkContext {
        dir: dir.to_path_buf(),
        attempt,
        shard_partitions: vec![vec![part(0)], vec![part(1)]],
        committed_positions: positions.iter().map(|&(p, o)| (part(p), o)).collect(),
        source_group: Some(KafkaGroup {
            bootstrap_servers: servers.to_string(),
            group_id: GROUP.into(),
            consumer_config: group_config(servers),
        }),
        checkpoint_interval: Duration::from_millis(100),
    }
}

/// A coordinator of run `attempt` bound to `dir` and recovered to `committed`.
fn started(
    servers: &str,
    dir: &Path,
    attempt: u64,
    positions: &[(i32, i64)],
    committed: Option<u64>,
) -> (TxnCoordinator, RecoveryReport) {
    let coord = coordinator(servers);
    coord
        .bind(&context(servers, dir, attempt, positions))
        .expect("bind");
    let report = coord.recover(committed).expect("recover");
    (coord, report)
}

fn positions(o0: i64, o1: i64) -> BTreeMap<PartitionInfo, i64> {
    [(part(0), o0), (part(1), o1)].into_iter().collect()
}

/// ("value key=.. ts=..", epoch, shard, attempt) of every record of `out`, waiting for `n` of
/// them.
fn read_out(servers: &str, n: usize) -> Vec<(String, u64, usize, u64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", "reader")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("out", 0, Offset::Beginning)
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let (mut got, deadline) = (Vec::new(), Instant::now() + Duration::from_secs(10));
    while got.len() < n && Instant::now() < deadline {
        let Some(m) = consumer.poll(Duration::from_millis(50)) else {
            continue;
        };
        let m = m.expect("message");
        let mut h = BTreeMap::new();
        for header in m.headers().expect("headers").iter() {
            let v = String::from_utf8(header.value.unwrap_or_default().to_vec()).expect("utf8");
            h.insert(header.key.to_string(), v);
        }
        let num = |k: &str| h[k].parse::<u64>().expect("number");
        let value = String::from_utf8(m.payload().unwrap_or_default().to_vec()).expect("utf8");
        let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
        let ts = match m.timestamp() {
            rdkafka::Timestamp::CreateTime(t) => Some(t),
            _ => None,
        };
        // Key and timestamp travel with the value: a resent record must keep them too.
        let value = format!("{value} key={key:?} ts={ts:?}");
        got.push((
            value,
            num(HEADER_EPOCH),
            num(HEADER_SHARD) as usize,
            num(HEADER_ATTEMPT),
        ));
    }
    got
}

fn outcomes(dir: &Path) -> BTreeSet<(u64, usize, u64, Outcome)> {
    read_log(dir)
        .expect("log")
        .into_iter()
        .map(|r| (r.epoch, r.shard, r.attempt, r.outcome))
        .collect()
}

/// Writes one value per shard in epoch 1 and prepares it (durable, not committed).
fn prepare_epoch_one(coord: &TxnCoordinator) -> Vec<TxnWriter> {
    let mut writers = vec![
        coord.open_shard(0).expect("s0"),
        coord.open_shard(1).expect("s1"),
    ];
    for (s, w) in writers.iter_mut().enumerate() {
        w.write(
            Some(b"{\"k\":1}"),
            format!("{{\"s\":{s}}}").as_bytes(),
            Some(1_000),
        )
        .expect("write");
        w.produce().expect("produce");
    }
    let waits: Vec<_> = writers
        .iter_mut()
        .map(|w| w.prepare(1).expect("prepare"))
        .collect();
    for w in waits {
        w.wait().expect("prepared");
    }
    writers
}

#[test]
fn each_epoch_commits_once_with_headers_and_later_results_wait_for_the_commit() {
    let (_kafka, servers) = start();
    let dir = tempfile::tempdir().expect("dir");
    let (coord, report) = started(&servers, dir.path(), 1, &[], None);
    assert_eq!(report, RecoveryReport::default());
    let mut w = prepare_epoch_one(&coord);
    assert_eq!(files::list_pending(dir.path()).expect("pending").len(), 2);
    // Epoch 2's result waits in the buffer while epoch 1 is prepared, not committed.
    w[0].write(None, b"{\"s\":0,\"e\":2}", Some(2_000))
        .expect("write");
    w[0].produce().expect("held back");
    assert!(
        !w[0].open,
        "no transaction may begin before the previous one commits"
    );
    coord.commit(1, &positions(10, 20)).expect("commit 1");
    assert!(files::list_pending(dir.path()).expect("pending").is_empty());
    w[0].produce().expect("produce 2");
    assert!(w[0].open);
    let waits: Vec<_> = w
        .iter_mut()
        .map(|w| w.prepare(2).expect("prepare 2"))
        .collect();
    for wait in waits {
        wait.wait().expect("prepared 2");
    }
    coord.commit(2, &positions(11, 20)).expect("commit 2");
    coord.commit(2, &positions(11, 20)).expect("idempotent");
    assert_eq!(
        coord.commit_delay_us().len(),
        3,
        "each record's wait for its commit"
    );
    let mut got = read_out(&servers, 3);
    got.sort();
    assert_eq!(
        got,
        vec![
            (
                "{\"s\":0,\"e\":2} key=None ts=Some(2000)".to_string(),
                2,
                0,
                1
            ),
            (
                "{\"s\":0} key=Some(\"{\\\"k\\\":1}\") ts=Some(1000)".to_string(),
                1,
                0,
                1
            ),
            (
                "{\"s\":1} key=Some(\"{\\\"k\\\":1}\") ts=Some(1000)".to_string(),
                1,
                1,
                1
            ),
        ]
    );
    let want: BTreeSet<_> = [(1, 0), (1, 1), (2, 0), (2, 1)]
        .into_iter()
        .map(|(e, s)| (e, s, 1, Outcome::Committed))
        .collect();
    assert_eq!(outcomes(dir.path()), want);
    let e = w[1]
        .prepare(2)
        .map(|_| ())
        .expect_err("epochs only grow")
        .to_string();
    assert!(e.contains("epoch 2 prepared while writing epoch 3"), "{e}");
}

/// On a real broker, initialising a transactional id bumps its producer epoch, and the older
/// producer's next transactional request fails with PRODUCER_FENCED. The mock cluster hands
/// every new producer a new producer id instead (rdkafka_mock_handlers.c, InitProducerId), so
/// the fencing itself is injected here: a fenced zombie commits nothing and keeps its redo file
/// for the new owner's recovery.
#[test]
fn a_fenced_producer_commits_nothing() {
    let (kafka, servers) = start();
    let dir = tempfile::tempdir().expect("dir");
    let (coord, _) = started(&servers, dir.path(), 1, &[], None);
    let _w = prepare_epoch_one(&coord);
    let _new_owner = coord
        .init_producer("job-in-p0", "other")
        .expect("same id, new producer");
    kafka.fail_next_requests(
        RDKafkaApiKey::EndTxn,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_PRODUCER_FENCED,
        1,
    );
    let e = coord
        .commit(1, &positions(1, 1))
        .expect_err("fenced")
        .to_string();
    assert!(e.to_lowercase().contains("fenced"), "{e}");
    assert!(
        !outcomes(dir.path())
            .iter()
            .any(|o| o.3 == Outcome::Committed),
        "a fenced producer commits nothing"
    );
    assert_eq!(files::list_pending(dir.path()).expect("redo kept").len(), 2);
    let ids = files::read_ids(dir.path()).expect("ids");
    let names: Vec<&str> = ids.iter().map(|i| i.transactional_id.as_str()).collect();
    assert_eq!(
        names,
        ["job-in-p0", "job-in-p1"],
        "the ids the next run fences"
    );
}

#[test]
fn recovery_resends_a_committed_epoch_whose_transaction_did_not_commit() {
    let (_kafka, servers) = start();
    let dir = tempfile::tempdir().expect("dir");
    {
        let (coord, _) = started(&servers, dir.path(), 1, &[], None);
        prepare_epoch_one(&coord);
        // The process dies after the job record named epoch 1, before the Kafka commits.
    }
    let (coord, r) = started(&servers, dir.path(), 2, &[(0, 10), (1, 20)], Some(1));
    assert_eq!((r.resent, r.found_committed), (2, 0));
    let o = outcomes(dir.path());
    for s in 0..2 {
        assert!(o.contains(&(1, s, 1, Outcome::Aborted)), "{o:?}");
        assert!(o.contains(&(1, s, 2, Outcome::Committed)), "{o:?}");
    }
    let got = read_out(&servers, 4);
    let by_attempt = |a: u64| -> BTreeSet<String> {
        got.iter()
            .filter(|r| r.3 == a)
            .map(|r| r.0.clone())
            .collect()
    };
    assert_eq!(
        by_attempt(1),
        by_attempt(2),
        "the resent records are the prepared ones"
    );
    assert_eq!(by_attempt(2).len(), 2);
    assert!(files::list_pending(dir.path()).expect("pending").is_empty());

    // A prepared epoch the job record does not name is aborted, never resent.
    {
        let mut w = vec![
            coord.open_shard(0).expect("s0"),
            coord.open_shard(1).expect("s1"),
        ];
        for w in &mut w {
            w.write(None, b"{\"late\":true}", None).expect("write");
            w.prepare(2).expect("prepare").wait().expect("prepared");
        }
    }
    let (_coord, r) = started(&servers, dir.path(), 3, &[(0, 10), (1, 20)], Some(1));
    assert_eq!(r.resent, 0);
    let o = outcomes(dir.path());
    for s in 0..2 {
        assert!(o.contains(&(2, s, 2, Outcome::Aborted)), "{o:?}");
        assert!(!o.contains(&(2, s, 2, Outcome::Committed)), "{o:?}");
    }
    assert!(files::list_pending(dir.path()).expect("pending").is_empty());
}

#[test]
fn recovery_trusts_the_group_offsets_of_a_committed_transaction() {
    let (_kafka, servers) = start();
    let dir = tempfile::tempdir().expect("dir");
    {
        let (coord, _) = started(&servers, dir.path(), 1, &[], None);
        prepare_epoch_one(&coord);
    }
    // What a real broker shows once the transactions of epoch 1 committed (the mock cluster
    // does not apply offsets sent in a transaction, so they are committed here directly).
    let consumer: BaseConsumer = group_config(&servers).create().expect("group client");
    let mut tpl = TopicPartitionList::new();
    for (p, o) in [(0, 10), (1, 20)] {
        let mut e = tpl.add_partition("in", p);
        e.set_offset(Offset::Offset(o)).expect("offset");
        e.set_metadata(offsets_metadata(1, p as usize, 1));
    }
    consumer
        .commit(&tpl, CommitMode::Sync)
        .expect("commit offsets");
    let (_coord, r) = started(&servers, dir.path(), 2, &[(0, 10), (1, 20)], Some(1));
    assert_eq!((r.resent, r.found_committed), (0, 2));
    let o = outcomes(dir.path());
    assert!(o.contains(&(1, 0, 1, Outcome::Committed)), "{o:?}");
    assert!(!o.iter().any(|r| r.2 == 2), "nothing resent: {o:?}");
}

/// A fresh job whose epoch 1 is prepared, then the next request of kind `api` fails with
/// `error`: the commit of epoch 1 fails, logs nothing as committed and keeps the redo files.
fn commit_fails_after(api: RDKafkaApiKey, error: RDKafkaRespErr) -> String {
    let (kafka, servers) = start();
    let dir = tempfile::tempdir().expect("dir");
    let (coord, _) = started(&servers, dir.path(), 1, &[], None);
    let _w = prepare_epoch_one(&coord);
    kafka.fail_next_requests(api, error, 1);
    let e = coord
        .commit(1, &positions(10, 20))
        .expect_err("refused")
        .to_string();
    assert!(
        e.contains("cannot commit the transaction of epoch 1"),
        "{e}"
    );
    assert!(
        !outcomes(dir.path())
            .iter()
            .any(|o| o.3 == Outcome::Committed),
        "nothing logged as committed"
    );
    assert_eq!(files::list_pending(dir.path()).expect("redo kept").len(), 2);
    e
}

#[test]
fn refused_offsets_or_end_of_transaction_fail_the_commit() {
    commit_fails_after(
        RDKafkaApiKey::TxnOffsetCommit,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED,
    );
    // A transaction the broker aborted on its timeout answers EndTxn like this.
    let e = commit_fails_after(
        RDKafkaApiKey::EndTxn,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH,
    );
    assert!(
        e.contains("the restart from the last checkpoint will complete it"),
        "{e}"
    );
}

#[test]
fn jobs_that_cannot_be_exactly_once_are_refused_with_reasons() {
    let (_kafka, servers) = start();
    let dir = tempfile::tempdir().expect("dir");
    let coord = coordinator(&servers);
    let mut ctx = context(&servers, dir.path(), 1, &[]);
    ctx.source_group = None;
    let e = coord.bind(&ctx).expect_err("no group").to_string();
    assert!(e.contains("the source must be a Kafka table"), "{e}");
    let mut ctx = context(&servers, dir.path(), 1, &[]);
    if let Some(g) = ctx.source_group.as_mut() {
        g.bootstrap_servers = "elsewhere:9092".into();
    }
    let e = coord.bind(&ctx).expect_err("two clusters").to_string();
    assert!(e.contains("source at elsewhere:9092"), "{e}");
    let mut ctx = context(&servers, dir.path(), 1, &[]);
    ctx.shard_partitions.push(Vec::new());
    let e = coord.bind(&ctx).expect_err("idle shard").to_string();
    assert!(e.contains("shard 2 of 3 reads none"), "{e}");
    let mut ctx = context(&servers, dir.path(), 1, &[]);
    ctx.checkpoint_interval = Duration::from_secs(60);
    let e = coord.bind(&ctx).expect_err("interval too long").to_string();
    assert!(
        e.contains("'sink.transaction.timeout' = '1 min' must be at least twice"),
        "{e}"
    );
    assert_eq!(metadata_epoch(&offsets_metadata(42, 1, 3)), Some(42));
    assert_eq!(metadata_epoch("something else"), None);
    assert_eq!(transactional_id("j", &[part(0), part(2)]), "j-in-p0.2");
}
