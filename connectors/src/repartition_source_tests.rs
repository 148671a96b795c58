//! Tests of the repartition source: the dedupe bookkeeping alone, and the source on the
//! in-process mock cluster.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::*;
use crate::embedded_kafka::EmbeddedKafka;
use crate::repartition::{mark_headers, row_headers};

const TOPIC: &str = "G-repartition";
const SOURCE: &str = "bids";
const RECORD_BYTES_MAX: usize = 64;

/// One record written to the repartition topic.
enum Rec {
    Row(i32, i64, &'static [u8]),
    Mark(i32, i64),
    Foreign(Option<OwnedHeaders>, &'static [u8]),
}

fn produce(servers: &str, partition: i32, records: &[Rec]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("linger.ms", "1")
        .create()
        .expect("producer");
    for rec in records {
        let (headers, payload): (Option<OwnedHeaders>, &[u8]) = match rec {
            Rec::Row(sp, so, payload) => (Some(row_headers(*sp, *so)), payload),
            Rec::Mark(sp, ts) => (Some(mark_headers(*sp, *ts)), &[]),
            Rec::Foreign(h, payload) => (h.clone(), payload),
        };
        let mut record = BaseRecord::<(), [u8]>::to(TOPIC)
            .partition(partition)
            .payload(payload);
        if let Some(h) = headers {
            record = record.headers(h);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("produce: {e}"),
            }
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

fn factory(servers: &str, partition: i32, source_partitions: i32) -> RepartitionSourceFactory {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", servers);
    RepartitionSourceFactory::new(
        "t",
        config,
        TOPIC,
        partition,
        SOURCE,
        source_partitions,
        RECORD_BYTES_MAX,
        Duration::from_secs(10),
    )
}

/// What the engine passes to `open`: the discovered partitions sorted by (topic, partition).
fn sorted_partitions(f: &RepartitionSourceFactory) -> Vec<PartitionInfo> {
    let mut p = f.discover().expect("discover");
    p.sort();
    p
}

/// Everything a source delivered over several polls.
#[derive(Debug, Default)]
struct Got {
    rows: Vec<(u32, i64, Vec<u8>)>,
    marks: Vec<(u32, i64)>,
    /// `RawBatch::ended` of each poll (only the non-empty ones, with the poll's number).
    ended: Vec<(usize, Vec<u32>)>,
    duplicates: u64,
    oversized: u64,
    empty: u64,
}

/// Polls (at most `records_max` records each time) until the data partition's position
/// reaches `end`; 20 s at most.
fn drain_to(source: &mut dyn Source, data_index: u32, end: i64, records_max: usize) -> Got {
    let mut got = Got::default();
    let mut batch = RawBatch::default();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut polls = 0;
    while source.position(data_index) < end {
        assert!(Instant::now() < deadline, "timed out; so far {got:?}");
        batch.clear();
        let status = source.poll(&mut batch, records_max, 1 << 20).expect("poll");
        assert_ne!(
            status,
            SourceStatus::Finished,
            "an unbounded source never finishes"
        );
        for i in 0..batch.len() {
            let (s, e) = batch.span(i);
            got.rows.push((
                batch.partition[i],
                batch.offset[i],
                batch.data[s..e].to_vec(),
            ));
        }
        got.marks.extend_from_slice(&batch.marks);
        if !batch.ended.is_empty() {
            got.ended.push((polls, batch.ended.clone()));
        }
        got.duplicates += batch.duplicates;
        got.oversized += batch.oversized;
        got.empty += batch.empty;
        polls += 1;
        if status == SourceStatus::Idle {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    got
}

const BIG: &[u8] = &[b'x'; 100];

/// Rows of source partitions 0..3 interleaved, marks, then a forwarder restart that sends
/// some rows again. With the partitions sorted, index 0 is the data partition and source
/// partition p has index p + 1.
fn scenario() -> Vec<Rec> {
    use Rec::*;
    vec![
        Row(0, 0, b"a0"), // 0
        Row(1, 0, b"b0"), // 1
        Row(2, 0, b"c0"), // 2
        Row(0, 1, b"a1"), // 3
        Mark(0, 1000),    // 4
        Row(1, 1, b"b1"), // 5
        Row(2, 1, BIG),   // 6: oversized, still moves the floor
        Mark(1, 2000),    // 7
        Row(0, 0, b"a0"), // 8: the restart: duplicates
        Row(0, 1, b"a1"), // 9
        Row(1, 1, b"b1"), // 10
        Row(0, 2, b"a2"), // 11: new
        Row(2, 1, BIG),   // 12: duplicate of an oversized row
        Row(2, 2, b"c2"), // 13
        Mark(2, 3000),    // 14
        Row(1, 2, b""),   // 15: empty
    ]
}

const SCENARIO_LEN: i64 = 16;

fn expected_rows() -> Vec<(u32, i64, Vec<u8>)> {
    [
        (1, 0, "a0"),
        (2, 0, "b0"),
        (3, 0, "c0"),
        (1, 1, "a1"),
        (2, 1, "b1"),
        (1, 2, "a2"),
        (3, 2, "c2"),
    ]
    .iter()
    .map(|&(i, o, p)| (i, o, p.as_bytes().to_vec()))
    .collect()
}

fn cluster_with_scenario() -> (EmbeddedKafka, String) {
    let kafka = EmbeddedKafka::start(1).expect("kafka");
    kafka.create_topic(TOPIC, 2).expect("topic");
    let servers = kafka.bootstrap_servers();
    produce(&servers, 1, &scenario());
    // Another repartition partition's row: never read by the source of partition 1.
    produce(&servers, 0, &[Rec::Row(0, 5, b"other")]);
    (kafka, servers)
}

#[test]
fn delivers_each_row_once_with_marks_and_ends_the_data_partition() {
    let (_kafka, servers) = cluster_with_scenario();
    let f = factory(&servers, 1, 3);
    let partitions = sorted_partitions(&f);
    assert_eq!(
        partitions[0],
        PartitionInfo {
            topic: TOPIC.into(),
            partition: 1
        }
    );
    let mut source = f.open(0, partitions.clone(), None).expect("open");
    assert_eq!(source.partitions(), &partitions[..]);
    assert_eq!(
        (0..4).map(|i| source.position(i)).collect::<Vec<_>>(),
        vec![0; 4]
    );

    let got = drain_to(source.as_mut(), 0, SCENARIO_LEN, 1000);
    assert_eq!(got.rows, expected_rows());
    assert_eq!(got.marks, vec![(1, 1000), (2, 2000), (3, 3000)]);
    assert_eq!(
        got.ended,
        vec![(0, vec![0])],
        "the data partition ends on the first poll only"
    );
    assert_eq!((got.duplicates, got.oversized, got.empty), (4, 1, 1));
    // Floors: next source offset accepted; the data partition: next repartition offset.
    let positions: Vec<i64> = (0..4).map(|i| source.position(i)).collect();
    assert_eq!(positions, vec![SCENARIO_LEN, 3, 3, 3]);
    assert_eq!(source.high_watermark(0), Some(SCENARIO_LEN));
    assert_eq!(
        source.high_watermark(1),
        None,
        "virtual partitions have no watermark"
    );

    // Nothing more: idle, and no record of partition 0 shows up.
    let mut batch = RawBatch::default();
    std::thread::sleep(Duration::from_millis(50));
    let status = source.poll(&mut batch, 1000, 1 << 20).expect("poll");
    assert_eq!(status, SourceStatus::Idle);
    assert!(
        batch.is_empty() && batch.marks.is_empty() && batch.ended.is_empty(),
        "{batch:?}"
    );
}

#[test]
fn resuming_from_positions_delivers_the_rest_exactly_once() {
    let (_kafka, servers) = cluster_with_scenario();
    let f = factory(&servers, 1, 3);
    let partitions = sorted_partitions(&f);
    let all = expected_rows();

    // Read the first 6 records (one per poll), then "checkpoint".
    let mut first = f.open(0, partitions.clone(), None).expect("open");
    let before = drain_to(first.as_mut(), 0, 6, 1);
    let checkpoint: Vec<i64> = (0..4).map(|i| first.position(i)).collect();
    assert_eq!(checkpoint, vec![6, 2, 2, 1]);
    drop(first);
    assert_eq!(before.rows, all[..5].to_vec());

    // Resume exactly where the checkpoint was.
    let mut second = f
        .open(1, partitions.clone(), Some(checkpoint.clone()))
        .expect("reopen");
    assert_eq!(
        (0..4).map(|i| second.position(i)).collect::<Vec<_>>(),
        checkpoint
    );
    let after = drain_to(second.as_mut(), 0, SCENARIO_LEN, 1000);
    assert_eq!(after.rows, all[5..].to_vec());
    assert_eq!(after.ended, vec![(0, vec![0])]);
    assert_eq!(after.duplicates, 4);
    assert_eq!(after.marks, vec![(2, 2000), (3, 3000)]);

    // A rewound data position (rows written again, or an older repartition offset): the
    // floors drop everything already applied, marks are delivered again.
    let mut rewound = checkpoint.clone();
    rewound[0] = 0;
    let mut third = f
        .open(2, partitions, Some(rewound))
        .expect("reopen rewound");
    let again = drain_to(third.as_mut(), 0, SCENARIO_LEN, 1000);
    assert_eq!(
        again.rows,
        all[5..].to_vec(),
        "nothing delivered twice, the rest delivered"
    );
    assert_eq!(
        again.duplicates,
        4 + 5,
        "the 5 rows of the first 6 records are duplicates"
    );
    assert_eq!(again.marks, vec![(1, 1000), (2, 2000), (3, 3000)]);
    let end: Vec<i64> = (0..4).map(|i| third.position(i)).collect();
    assert_eq!(end, vec![SCENARIO_LEN, 3, 3, 3]);
}

#[test]
fn a_foreign_record_is_a_clear_error() {
    let kafka = EmbeddedKafka::start(1).expect("kafka");
    kafka.create_topic(TOPIC, 2).expect("topic");
    let servers = kafka.bootstrap_servers();
    produce(
        &servers,
        0,
        &[Rec::Row(0, 0, b"ok"), Rec::Foreign(None, b"{}")],
    );
    produce(&servers, 1, &[Rec::Row(3, 0, b"grown")]);

    let f = factory(&servers, 0, 3);
    let mut source = f.open(0, sorted_partitions(&f), None).expect("open");
    let e = poll_until_error(source.as_mut());
    assert!(
        e.contains("offset 1 of partition 0 of topic 'G-repartition'"),
        "{e}"
    );
    assert!(e.contains("no 'spillway.sp' header"), "{e}");
    assert!(
        e.contains("not a spillway repartition topic of this job"),
        "{e}"
    );

    let f = factory(&servers, 1, 3);
    let mut source = f.open(0, sorted_partitions(&f), None).expect("open");
    let e = poll_until_error(source.as_mut());
    assert!(e.contains("offset 0 of partition 1"), "{e}");
    assert!(e.contains("partition 3 of source topic 'bids'"), "{e}");
    assert!(e.contains("the source topic grew"), "{e}");
}

fn poll_until_error(source: &mut dyn Source) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut batch = RawBatch::default();
    loop {
        assert!(Instant::now() < deadline, "no error within 20 s");
        batch.clear();
        match source.poll(&mut batch, 1000, 1 << 20) {
            Ok(_) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => return e.to_string(),
        }
    }
}

#[test]
fn discover_checks_the_topic_and_partition_and_lists_virtual_partitions() {
    let kafka = EmbeddedKafka::start(1).expect("kafka");
    let servers = kafka.bootstrap_servers();
    let e = factory(&servers, 0, 2)
        .discover()
        .expect_err("missing")
        .to_string();
    assert!(
        e.contains("repartition topic 'G-repartition' does not exist"),
        "{e}"
    );
    assert!(e.contains(&servers), "{e}");

    kafka.create_topic(TOPIC, 2).expect("topic");
    let e = factory(&servers, 2, 2)
        .discover()
        .expect_err("no partition 2")
        .to_string();
    assert!(e.contains("has 2 partitions, no partition 2"), "{e}");

    let f = factory(&servers, 1, 2);
    let found = f.discover().expect("discover");
    let info = |topic: &str, partition| PartitionInfo {
        topic: topic.into(),
        partition,
    };
    assert_eq!(
        found,
        vec![info(SOURCE, 0), info(SOURCE, 1), info(TOPIC, 1)]
    );
    assert_eq!(
        f.describe(),
        format!("repartition topic 'G-repartition' partition 1 of kafka topic 'bids' (2 partitions) at {servers}")
    );
    assert!(f.offset_committer().expect("committer").is_none());
    assert!(f.consumer_group().is_none());
}

#[test]
fn bad_arguments_and_partitions_are_errors() {
    let f = factory("127.0.0.1:1", 0, 0);
    let e = f.discover().expect_err("0 source partitions").to_string();
    assert!(e.contains("has 0 partitions"), "{e}");
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", "127.0.0.1:1");
    let same = RepartitionSourceFactory::new("t", config, "x", 0, "x", 2, 10, Duration::ZERO);
    let e = same.discover().expect_err("same topics").to_string();
    assert!(e.contains("is the source topic"), "{e}");

    // `open` checks its partitions before any network access.
    let f = factory("127.0.0.1:1", 0, 2);
    let info = |topic: &str, partition| PartitionInfo {
        topic: topic.into(),
        partition,
    };
    for wrong in [
        vec![info(SOURCE, 0), info(SOURCE, 1)], // no data partition
        vec![info(SOURCE, 0), info(TOPIC, 0)],  // a source partition missing
        vec![info(SOURCE, 0), info(SOURCE, 0), info(TOPIC, 0)], // twice
        vec![info(SOURCE, 0), info(SOURCE, 2), info(TOPIC, 0)], // out of range
        vec![info(SOURCE, 0), info(SOURCE, 1), info(TOPIC, 1)], // another data partition
    ] {
        let e = f
            .open(0, wrong.clone(), None)
            .err()
            .expect("error")
            .to_string();
        assert!(e.contains("given partitions"), "{wrong:?}: {e}");
    }
    let ok = vec![info(SOURCE, 0), info(SOURCE, 1), info(TOPIC, 0)];
    let e = f
        .open(0, ok, Some(vec![0, 0]))
        .err()
        .expect("short resume")
        .to_string();
    assert!(e.contains("resume offsets"), "{e}");
}

/// The bookkeeping over `partitions` in the given order (index i = position in the list).
fn dedupe_state(partitions: &[PartitionInfo], source_partitions: i32) -> DedupeState {
    let f = factory("h:1", 0, source_partitions);
    let (index_of_source, data_index) = f.indexes(partitions).expect("indexes");
    DedupeState {
        repartition_topic: TOPIC.into(),
        partition: 0,
        source_topic: SOURCE.into(),
        partitions: partitions.to_vec(),
        index_of_source,
        data_index,
        positions: vec![0; partitions.len()],
        record_bytes_max: RECORD_BYTES_MAX,
    }
}

#[test]
fn indexes_follow_the_given_order() {
    let info = |topic: &str, partition| PartitionInfo {
        topic: topic.into(),
        partition,
    };
    let order = [
        info(SOURCE, 2),
        info(SOURCE, 0),
        info(TOPIC, 0),
        info(SOURCE, 1),
    ];
    let mut s = dedupe_state(&order, 3);
    assert_eq!(
        (s.index_of_source.clone(), s.data_index),
        (vec![1, 3, 0], 2)
    );
    s.positions[2] = 7;
    let mut out = RawBatch::default();
    let row = |sp, so| {
        Ok(RepartitionRecord::Row {
            source_partition: sp,
            source_offset: so,
            payload: b"r",
        })
    };
    assert_eq!(s.take(7, row(2, 4), &mut out).expect("row"), Step::Taken);
    let mark = s.take(
        8,
        Ok(RepartitionRecord::Mark {
            source_partition: 1,
            ts_max_ms: 9,
        }),
        &mut out,
    );
    assert_eq!(mark.expect("mark"), Step::Taken);
    assert_eq!(
        (out.partition.clone(), out.offset.clone()),
        (vec![0], vec![4])
    );
    assert_eq!(out.marks, vec![(3, 9)]);
    assert_eq!(s.positions, vec![5, 0, 9, 0]);
}

/// Records before the data position (read again after a seek back) and after it (the broker
/// skipped some) are not taken and change nothing; the next record then is.
#[test]
fn only_the_next_offset_of_the_data_partition_is_taken() {
    let info = |topic: &str, partition| PartitionInfo {
        topic: topic.into(),
        partition,
    };
    let mut s = dedupe_state(&[info(TOPIC, 0), info(SOURCE, 0)], 1);
    s.positions = vec![10, 3];
    let mut out = RawBatch::default();
    let row = |so| {
        Ok(RepartitionRecord::Row {
            source_partition: 0,
            source_offset: so,
            payload: b"r",
        })
    };
    assert_eq!(s.take(9, row(2), &mut out).expect("behind"), Step::Behind);
    assert_eq!(
        s.take(12, row(5), &mut out).expect("gap"),
        Step::Gap { expected: 10 }
    );
    assert_eq!(
        s.take(11, row(4), &mut out).expect("gap"),
        Step::Gap { expected: 10 }
    );
    assert_eq!(
        (out.len(), out.duplicates, s.positions.clone()),
        (0, 0, vec![10, 3])
    );
    assert_eq!(s.take(10, row(3), &mut out).expect("next"), Step::Taken);
    assert_eq!(s.take(11, row(4), &mut out).expect("next"), Step::Taken);
    assert_eq!(out.offset, vec![3, 4]);
    assert_eq!(s.positions, vec![12, 5]);
}

proptest! {
    /// A forwarder that restarts re-sends each source partition's rows from some earlier
    /// offset: whatever the interleaving, every source offset is delivered once, in order,
    /// the rest are counted as duplicates, and the floors end one past the last offset.
    #[test]
    fn rows_sent_again_are_delivered_once(
        sends in proptest::collection::vec((0usize..3, 1usize..6, 0usize..4), 1..40),
    ) {
        let info = |topic: &str, partition| PartitionInfo { topic: topic.into(), partition };
        let order = [info(TOPIC, 0), info(SOURCE, 0), info(SOURCE, 1), info(SOURCE, 2)];
        let mut s = dedupe_state(&order, 3);
        let mut out = RawBatch::default();
        // Per source partition: the next new offset the "forwarder" has; each send writes
        // `count` rows starting `back` rows before it (a re-send after a restart).
        let mut next = [0i64; 3];
        let (mut offset, mut sent) = (0i64, 0u64);
        for (sp, count, back) in sends {
            let start = (next[sp] - back as i64).max(0);
            for so in start..start + count as i64 {
                let payload = so.to_string();
                let record = Ok(RepartitionRecord::Row {
                    source_partition: sp as i32,
                    source_offset: so,
                    payload: payload.as_bytes(),
                });
                s.take(offset, record, &mut out).expect("take");
                offset += 1;
                sent += 1;
            }
            next[sp] = next[sp].max(start + count as i64);
        }
        for (sp, &next_offset) in next.iter().enumerate() {
            let delivered: Vec<i64> = (0..out.len())
                .filter(|&i| out.partition[i] == sp as u32 + 1)
                .map(|i| out.offset[i])
                .collect();
            prop_assert_eq!(delivered, (0..next_offset).collect::<Vec<_>>());
            prop_assert_eq!(s.positions[sp + 1], next_offset);
        }
        prop_assert_eq!(out.len() as u64 + out.duplicates, sent);
        prop_assert_eq!(s.positions[0], offset);
        for i in 0..out.len() {
            let (a, b) = out.span(i);
            let want = out.offset[i].to_string();
            prop_assert_eq!(&out.data[a..b], want.as_bytes());
        }
    }
}
