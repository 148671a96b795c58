//! The repartition source resumes in the middle of a record batch, as a restored checkpoint
//! does, on both Kafka peers: every row from the resume position on is delivered once.
//!
//! tansu 0.6 answers a fetch at offset `o` with the batches that *start* at or after `o`, so
//! a read resumed inside a batch skips the rest of it (Kafka returns the batch holding `o`).
//! The repartition topic has no gaps, so the source notices the skipped offsets and seeks
//! back until the batch holding them is delivered. Without that, group mode on tansu lost
//! the rows after every restored checkpoint's position in its batch.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use spillway_connectors::embedded_kafka::EmbeddedKafka;
use spillway_connectors::raw_batch::RawBatch;
use spillway_connectors::repartition::{mark_headers, row_headers};
use spillway_connectors::repartition_source::RepartitionSourceFactory;
use spillway_connectors::{SourceFactory, SourceStatus};
use spillway_tests::tansu::TansuBroker;

/// Rows in one batch: a read resumed inside it gets nothing from tansu (a stall).
const ONE_BATCH: &str = "one-batch-repartition";
/// Rows in two batches: a read resumed inside the first gets the second first (a gap).
const TWO_BATCHES: &str = "two-batches-repartition";
const SOURCE: &str = "trades";
/// Rows written, with a mark every [`MARK_EVERY`] rows.
const ROWS: i64 = 300;
const MARK_EVERY: i64 = 50;
/// The repartition offset a "checkpoint" resumes from: inside the batch.
const RESUME_AT: i64 = 137;
/// How long the probe of the broker's behaviour waits for a record.
const PROBE_WAIT: Duration = Duration::from_secs(5);

/// Writes the rows (source partition 0, source offsets 0..ROWS) and marks to `topic`, in one
/// batch (one linger), or in two (a flush after half of the rows); returns the repartition
/// offset of each row's source offset.
fn write_batches(servers: &str, topic: &str) -> Vec<i64> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("linger.ms", "200")
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    let mut offsets = Vec::new();
    let mut next = 0i64;
    for so in 0..ROWS {
        let payload = format!("{{\"n\":{so}}}");
        if so == ROWS / 2 && topic == TWO_BATCHES {
            producer.flush(Duration::from_secs(30)).expect("flush");
        }
        let record = BaseRecord::<(), [u8]>::to(topic)
            .partition(0)
            .payload(payload.as_bytes())
            .headers(row_headers(0, so));
        producer.send(record).map_err(|(e, _)| e).expect("send");
        offsets.push(next);
        next += 1;
        if so % MARK_EVERY == MARK_EVERY - 1 {
            let mark = BaseRecord::<(), [u8]>::to(topic)
                .partition(0)
                .payload(&[][..])
                .headers(mark_headers(0, so));
            producer.send(mark).map_err(|(e, _)| e).expect("send mark");
            next += 1;
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    offsets
}

/// The offset of the first record a plain consumer gets within [`PROBE_WAIT`] when it starts
/// at `offset`.
fn first_offset_from(servers: &str, topic: &str, offset: i64) -> Option<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", "repartition-resume-probe")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(offset))
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + PROBE_WAIT;
    while Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            return Some(m.expect("record").offset());
        }
    }
    None
}

/// Writes `topic`, resumes the source at repartition offset `RESUME_AT` (dedupe floor: the
/// source offset of the row there) and reads to the end: each later row once, in order, and
/// the marks.
fn resume_in_the_middle_of_a_batch(servers: &str, topic: &str) {
    let offsets = write_batches(servers, topic);
    let end = *offsets.last().expect("rows") + 1;
    let first_row = offsets
        .iter()
        .position(|&o| o >= RESUME_AT)
        .expect("a row after the resume offset") as i64;

    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", servers);
    let factory = RepartitionSourceFactory::new(
        "trades",
        config,
        topic,
        0,
        SOURCE,
        1,
        1 << 20,
        Duration::from_secs(10),
    );
    let partitions = factory.discover().expect("discover");
    // [source partition 0, the data partition]
    assert_eq!(partitions.len(), 2);
    let resume = vec![first_row, RESUME_AT];
    let mut source = factory
        .open(0, partitions, Some(resume))
        .expect("open at a checkpoint");
    let mut rows = Vec::new();
    let mut marks = Vec::new();
    let mut batch = RawBatch::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while source.position(1) < end {
        assert!(
            Instant::now() < deadline,
            "position {} of {end} after 60 s; {} rows so far",
            source.position(1),
            rows.len()
        );
        batch.clear();
        let status = source.poll(&mut batch, 64, 1 << 20).expect("poll");
        rows.extend(batch.offset.iter().copied());
        marks.extend(batch.marks.iter().map(|&(_, ts)| ts));
        if status == SourceStatus::Idle {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert_eq!(
        rows,
        (first_row..ROWS).collect::<Vec<_>>(),
        "every row from the resume position on, once, in order"
    );
    let want_marks: Vec<i64> = (0..ROWS)
        .filter(|so| so % MARK_EVERY == MARK_EVERY - 1 && offsets[*so as usize] > RESUME_AT)
        .collect();
    assert_eq!(marks, want_marks, "the marks after the resume position");
}

#[test]
fn resuming_inside_a_batch_on_the_mock_cluster() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    let servers = kafka.bootstrap_servers();
    for topic in [ONE_BATCH, TWO_BATCHES] {
        kafka.create_topic(topic, 1).expect("topic");
        resume_in_the_middle_of_a_batch(&servers, topic);
    }
}

#[test]
fn resuming_inside_a_batch_on_tansu() {
    let tansu = TansuBroker::start().unwrap_or_else(|e| panic!("tansu: {e}"));
    let servers = tansu.bootstrap_servers();
    for topic in [ONE_BATCH, TWO_BATCHES] {
        tansu.create_topic(topic, 1).expect("topic");
        resume_in_the_middle_of_a_batch(&servers, topic);
    }
    // The broker behaviour this test is about: a plain consumer starting inside a batch gets
    // nothing when the batch is the partition's last, the next batch otherwise.
    let stall = first_offset_from(&servers, ONE_BATCH, RESUME_AT);
    let gap = first_offset_from(&servers, TWO_BATCHES, RESUME_AT);
    assert!(
        stall.is_none() && gap.is_some_and(|f| f > RESUME_AT),
        "tansu now answers a fetch at offset {RESUME_AT} with {stall:?} and {gap:?}: it \
         returns the batch holding the offset, so this test no longer exercises the source's \
         rewind"
    );
}
