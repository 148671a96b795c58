//! An in-process Kafka cluster: librdkafka's mock cluster, for `spillway demo` and tests.
//!
//! The mock brokers listen on localhost ports and speak enough of the Kafka protocol for
//! producers, low-level consumers (assign, fetch, watermarks) and offset commits, so the real
//! Kafka connectors run against it unchanged. Data lives in memory and is gone when the
//! [`EmbeddedKafka`] is dropped.

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use crate::error::{ConnectorError, Result};

/// Largest number of mock brokers [`EmbeddedKafka::start`] accepts.
pub const BROKERS_MAX: i32 = 16;
/// Largest number of partitions [`EmbeddedKafka::create_topic`] accepts per topic.
pub const TOPIC_PARTITIONS_MAX: i32 = 1024;
/// Replication factor of created topics, capped by the number of brokers.
const REPLICATION_FACTOR_MAX: i32 = 3;

/// A running in-process Kafka cluster (librdkafka's mock cluster).
pub struct EmbeddedKafka {
    cluster: MockCluster<'static, DefaultProducerContext>,
    brokers: i32,
}

// SAFETY: `MockCluster` holds a raw pointer to the librdkafka mock cluster, which is why it is
// not `Send`/`Sync` automatically. Every `rd_kafka_mock_*` call that `EmbeddedKafka` makes
// (topic creation, reading the bootstrap list) is handed to the mock cluster's own thread as an
// operation on its queue or reads an immutable string, so calling them from any thread is safe;
// the pointer itself is only freed in `Drop`, which takes `&mut self`.
unsafe impl Send for EmbeddedKafka {}
// SAFETY: see the `Send` impl above: all methods take `&self` and are thread-safe in librdkafka.
unsafe impl Sync for EmbeddedKafka {}

impl EmbeddedKafka {
    /// Starts a mock cluster with `brokers` brokers (1 ..= [`BROKERS_MAX`]).
    pub fn start(brokers: i32) -> Result<Self> {
        if !(1..=BROKERS_MAX).contains(&brokers) {
            return Err(ConnectorError::Kafka(format!(
                "embedded Kafka: {brokers} brokers requested, expected 1 to {BROKERS_MAX}"
            )));
        }
        let cluster = MockCluster::new(brokers).map_err(|e| {
            ConnectorError::Kafka(format!("cannot start the embedded Kafka cluster: {e}"))
        })?;
        Ok(EmbeddedKafka { cluster, brokers })
    }

    /// The `bootstrap.servers` list of the cluster, e.g. `127.0.0.1:39457,127.0.0.1:40113`.
    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// Number of brokers of the cluster.
    pub fn brokers(&self) -> i32 {
        self.brokers
    }

    /// Creates topic `name` with `partitions` partitions (1 ..= [`TOPIC_PARTITIONS_MAX`]).
    /// Creating a topic that exists is an error of the mock cluster.
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        if name.is_empty() {
            return Err(ConnectorError::Kafka(
                "embedded Kafka: the topic name is empty".to_string(),
            ));
        }
        if !(1..=TOPIC_PARTITIONS_MAX).contains(&partitions) {
            return Err(ConnectorError::Kafka(format!(
                "embedded Kafka: topic '{name}' with {partitions} partitions requested, \
                 expected 1 to {TOPIC_PARTITIONS_MAX}"
            )));
        }
        let replication = self.brokers.min(REPLICATION_FACTOR_MAX);
        self.cluster
            .create_topic(name, partitions, replication)
            .map_err(|e| {
                ConnectorError::Kafka(format!("embedded Kafka: cannot create topic '{name}': {e}"))
            })
    }
}

impl EmbeddedKafka {
    /// Fault injection: the next `count` produce requests fail with a non-retriable error
    /// (topic authorization failed), so their records are not delivered.
    pub fn fail_next_produce_requests(&self, count: usize) {
        let errors = vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; count];
        self.cluster.request_errors(RDKafkaApiKey::Produce, &errors);
    }

    /// Fault injection: the next `count` requests of kind `api` fail with `error` (for
    /// example `EndTxn` with `INVALID_PRODUCER_EPOCH`, what a transaction that timed out on
    /// the broker gets).
    pub fn fail_next_requests(&self, api: RDKafkaApiKey, error: RDKafkaRespErr, count: usize) {
        self.cluster.request_errors(api, &vec![error; count]);
    }

    /// Fault injection: broker `broker_id` (1 ..= brokers) stops answering.
    pub fn broker_down(&self, broker_id: i32) -> Result<()> {
        self.cluster
            .broker_down(broker_id)
            .map_err(|e| ConnectorError::Kafka(format!("embedded Kafka: broker down: {e}")))
    }

    /// Fault injection: broker `broker_id` answers again.
    pub fn broker_up(&self, broker_id: i32) -> Result<()> {
        self.cluster
            .broker_up(broker_id)
            .map_err(|e| ConnectorError::Kafka(format!("embedded Kafka: broker up: {e}")))
    }
}

impl std::fmt::Debug for EmbeddedKafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedKafka")
            .field("bootstrap_servers", &self.bootstrap_servers())
            .field("brokers", &self.brokers)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::ClientConfig;
    use std::time::Duration;

    #[test]
    fn created_topic_is_visible_in_metadata() {
        let kafka = EmbeddedKafka::start(2).expect("start");
        assert_eq!(kafka.brokers(), 2);
        let servers = kafka.bootstrap_servers();
        assert_eq!(servers.split(',').count(), 2, "{servers}");
        kafka.create_topic("visible", 5).expect("create");
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &servers)
            .create()
            .expect("consumer");
        let metadata = consumer
            .fetch_metadata(Some("visible"), Duration::from_secs(5))
            .expect("metadata");
        let topic = &metadata.topics()[0];
        assert_eq!(topic.name(), "visible");
        assert!(topic.error().is_none());
        assert_eq!(topic.partitions().len(), 5);
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(EmbeddedKafka::start(0).is_err());
        let kafka = EmbeddedKafka::start(1).expect("start");
        let err = kafka.create_topic("t", 0).expect_err("0 partitions");
        assert!(err.to_string().contains("0 partitions"), "{err}");
        assert!(kafka.create_topic("", 1).is_err());
    }
}

/// Helpers of the Kafka tests: produce records, build table options, drain a source.
#[cfg(test)]
pub(crate) mod test_support {
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::ClientConfig;

    use crate::{RawBatch, Source, SourceStatus};

    /// Sends `(partition, payload)` records and waits until all are delivered.
    pub(crate) fn produce(servers: &str, topic: &str, records: &[(i32, Option<Vec<u8>>)]) {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", servers)
            .set("linger.ms", "1")
            .create()
            .expect("producer");
        for (partition, payload) in records {
            let mut record = BaseRecord::<(), [u8]>::to(topic).partition(*partition);
            if let Some(p) = payload {
                record = record.payload(p.as_slice());
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

    pub(crate) fn options(
        servers: &str,
        topic: &str,
        extra: &[(&str, &str)],
    ) -> BTreeMap<String, String> {
        let mut o: BTreeMap<String, String> = [
            ("connector", "kafka"),
            ("topic", topic),
            ("properties.bootstrap.servers", servers),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        o.insert("format".into(), "json".into());
        o
    }

    /// What a source delivered: records as (partition index, offset, payload).
    #[derive(Default)]
    pub(crate) struct Drained {
        pub(crate) records: Vec<(u32, i64, Vec<u8>)>,
        pub(crate) ended: Vec<u32>,
        pub(crate) oversized: u64,
        pub(crate) empty: u64,
        pub(crate) finished: bool,
    }

    /// Polls until Finished, or (unbounded) until `want` records came; 20 s at most.
    pub(crate) fn drain(source: &mut dyn Source, want: usize) -> Drained {
        let mut d = Drained::default();
        let mut batch = RawBatch::default();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && d.records.len() < want {
            batch.clear();
            let status = source.poll(&mut batch, 1000, 1 << 20).expect("poll");
            for i in 0..batch.len() {
                let (s, e) = batch.span(i);
                d.records.push((
                    batch.partition[i],
                    batch.offset[i],
                    batch.data[s..e].to_vec(),
                ));
            }
            d.ended.extend_from_slice(&batch.ended);
            d.oversized += batch.oversized;
            d.empty += batch.empty;
            match status {
                SourceStatus::Finished => {
                    d.finished = true;
                    break;
                }
                SourceStatus::Idle => std::thread::sleep(Duration::from_millis(1)),
                SourceStatus::Data => {}
            }
        }
        d
    }

    pub(crate) fn payloads(n: usize, partitions: i32) -> Vec<(i32, Option<Vec<u8>>)> {
        (0..n)
            .map(|k| {
                (
                    k as i32 % partitions,
                    Some(format!("{{\"k\":{k}}}").into_bytes()),
                )
            })
            .collect()
    }
}

/// The Kafka source against the embedded cluster (here rather than in `kafka_source.rs` to keep
/// that file short).
#[cfg(test)]
mod kafka_source_tests {
    use std::time::{Duration, Instant};

    use super::test_support::{drain, options, payloads, produce};
    use super::EmbeddedKafka;
    use crate::kafka_source::KafkaSourceFactory;
    use crate::{RawBatch, SourceFactory, SourceStatus};

    #[test]
    fn discover_errors_name_the_broker_and_the_topic() {
        let kafka = EmbeddedKafka::start(1).expect("kafka");
        let servers = kafka.bootstrap_servers();
        let f = KafkaSourceFactory::from_options("t", &options(&servers, "nope", &[])).expect("f");
        let e = f.discover().expect_err("missing topic").to_string();
        assert!(e.contains("topic 'nope' does not exist at"), "{e}");
        assert!(e.contains(&servers), "{e}");
        // Not created by the check either.
        assert!(f.discover().is_err());

        let o = options("127.0.0.1:1", "x", &[("scan.connect.timeout", "500 ms")]);
        let f = KafkaSourceFactory::from_options("t", &o).expect("f");
        let started = Instant::now();
        let e = f.discover().expect_err("unreachable").to_string();
        assert!(
            e.contains("cannot reach Kafka at 127.0.0.1:1 within 500 ms"),
            "{e}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn two_sources_split_a_bounded_topic() {
        let kafka = EmbeddedKafka::start(1).expect("kafka");
        let servers = kafka.bootstrap_servers();
        kafka.create_topic("split", 3).expect("topic");
        let n = 3000;
        produce(&servers, "split", &payloads(n, 3));
        let o = options(
            &servers,
            "split",
            &[
                ("scan.startup.mode", "earliest-offset"),
                ("scan.bounded.mode", "latest-offset"),
            ],
        );
        let f = KafkaSourceFactory::from_options("t", &o).expect("f");
        let parts = f.discover().expect("discover");
        assert_eq!(
            parts.iter().map(|p| p.partition).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        let mut a = f
            .open(0, vec![parts[0].clone(), parts[2].clone()], None)
            .expect("a");
        let mut b = f.open(1, vec![parts[1].clone()], None).expect("b");
        // Records produced after the sources opened are past the bounded end.
        produce(&servers, "split", &payloads(30, 3));
        let (da, db) = (drain(a.as_mut(), usize::MAX), drain(b.as_mut(), usize::MAX));
        assert!(da.finished && db.finished);
        assert_eq!(da.records.len() + db.records.len(), n);
        let mut seen = vec![false; n];
        for (d, parts_read) in [(&da, [0, 2].as_slice()), (&db, [1].as_slice())] {
            for (index, offset, payload) in &d.records {
                let partition = parts_read[*index as usize];
                let text = String::from_utf8(payload.clone()).expect("utf8");
                let k: usize = text[5..text.len() - 1].parse().expect("k");
                // Record k went to partition k % 3 as its (k / 3)-th record.
                assert_eq!((k % 3, (k / 3) as i64), (partition, *offset), "{text}");
                assert!(!std::mem::replace(&mut seen[k], true), "record {k} twice");
            }
        }
        let per_partition = (n / 3) as i64;
        assert_eq!(
            (a.position(0), a.position(1), b.position(0)),
            (per_partition, per_partition, per_partition)
        );
        let mut ended = da.ended.clone();
        ended.sort();
        assert_eq!((ended, db.ended.clone()), (vec![0, 1], vec![0]));
    }

    #[test]
    fn startup_modes_and_resume() {
        let kafka = EmbeddedKafka::start(1).expect("kafka");
        let servers = kafka.bootstrap_servers();
        kafka.create_topic("modes", 1).expect("topic");
        produce(&servers, "modes", &payloads(10, 1));
        let open = |extra: &[(&str, &str)], resume: Option<Vec<i64>>| {
            let f = KafkaSourceFactory::from_options("t", &options(&servers, "modes", extra))
                .expect("f");
            let parts = f.discover().expect("discover");
            (f.open(0, parts, resume).expect("open"), f)
        };
        let bounded = ("scan.bounded.mode", "latest-offset");

        let (mut s, _) = open(&[("scan.startup.mode", "earliest-offset"), bounded], None);
        assert_eq!(s.position(0), 0);
        let d = drain(s.as_mut(), usize::MAX);
        assert_eq!(
            (d.records.len(), d.records[0].1, s.position(0)),
            (10, 0, 10)
        );

        // latest-offset, unbounded: only what is produced after opening.
        let (mut s, _) = open(&[("scan.startup.mode", "latest-offset")], None);
        assert_eq!(s.position(0), 10);
        produce(&servers, "modes", &payloads(5, 1));
        let d = drain(s.as_mut(), 5);
        let offsets: Vec<i64> = d.records.iter().map(|r| r.1).collect();
        assert_eq!(offsets, [10, 11, 12, 13, 14]);
        assert!(!d.finished);

        // group-offsets: starts at the committed offset of the group.
        let group = ("properties.group.id", "g1");
        let (_, f) = open(&[group, ("scan.startup.mode", "earliest-offset")], None);
        f.offset_committer()
            .expect("committer")
            .commit(&[(0, 7)])
            .expect("commit");
        let (mut s, _) = open(&[group, bounded], None);
        assert_eq!(s.position(0), 7);
        let d = drain(s.as_mut(), usize::MAX);
        assert_eq!(
            (d.records.first().map(|r| r.1), d.records.len()),
            (Some(7), 8)
        );

        // group-offsets without a committed offset: auto.offset.reset decides.
        let (s, _) = open(&[("properties.group.id", "g2"), bounded], None);
        assert_eq!(s.position(0), 0);
        let latest = ("properties.auto.offset.reset", "latest");
        let (mut s, _) = open(&[("properties.group.id", "g2"), latest, bounded], None);
        assert_eq!(s.position(0), 15);
        let d = drain(s.as_mut(), usize::MAX);
        assert!(d.finished && d.records.is_empty() && d.ended == [0]);

        // Resume offsets win over the startup mode; resuming at the end finishes at once.
        let (mut s, _) = open(
            &[("scan.startup.mode", "latest-offset"), bounded],
            Some(vec![12]),
        );
        let d = drain(s.as_mut(), usize::MAX);
        assert_eq!(
            d.records.iter().map(|r| r.1).collect::<Vec<_>>(),
            [12, 13, 14]
        );
        let (mut s, _) = open(&[bounded], Some(vec![15]));
        let d = drain(s.as_mut(), usize::MAX);
        assert!(d.finished && d.records.is_empty() && d.ended == [0]);
        assert_eq!(s.position(0), 15);
    }

    #[test]
    fn oversized_and_empty_records_are_counted_not_delivered() {
        let kafka = EmbeddedKafka::start(1).expect("kafka");
        let servers = kafka.bootstrap_servers();
        kafka.create_topic("sizes", 1).expect("topic");
        let records = vec![
            (0, Some(b"{\"a\":1}".to_vec())),
            (0, Some(vec![b'x'; 100])),
            (0, None),
            (0, Some(b"{\"a\":2}".to_vec())),
        ];
        produce(&servers, "sizes", &records);
        let o = options(
            &servers,
            "sizes",
            &[
                ("scan.bounded.mode", "latest-offset"),
                ("source.record-bytes-max", "16"),
            ],
        );
        let f = KafkaSourceFactory::from_options("t", &o).expect("f");
        let mut s = f
            .open(0, f.discover().expect("discover"), None)
            .expect("open");
        let d = drain(s.as_mut(), usize::MAX);
        let got: Vec<(i64, &[u8])> = d.records.iter().map(|r| (r.1, r.2.as_slice())).collect();
        assert_eq!(got, [(0, &b"{\"a\":1}"[..]), (3, &b"{\"a\":2}"[..])]);
        assert_eq!((d.oversized, d.empty, s.position(0)), (1, 1, 4));
    }

    /// Reads `n` records of 100 bytes from one partition `rounds` times (the mock cluster
    /// keeps only about 5 MB per partition, so new sources read the same records again) and
    /// returns records per second: end to end (from the first record), and with the records
    /// already prefetched (the per-record cost of the source itself).
    fn read_rate(n: usize, rounds: usize) -> (f64, f64) {
        let kafka = EmbeddedKafka::start(1).expect("kafka");
        let servers = kafka.bootstrap_servers();
        kafka.create_topic("rate", 1).expect("topic");
        produce(&servers, "rate", &vec![(0, Some(vec![b'x'; 100])); n]);
        let o = options(&servers, "rate", &[("scan.bounded.mode", "latest-offset")]);
        let f = KafkaSourceFactory::from_options("t", &o).expect("f");
        let parts = f.discover().expect("discover");
        let mut rates = [0.0; 2];
        for (prefetch, rate) in rates.iter_mut().enumerate() {
            let (mut read, mut elapsed) = (0, Duration::ZERO);
            for _ in 0..rounds {
                let mut s = f.open(0, parts.clone(), None).expect("open");
                if prefetch == 1 {
                    std::thread::sleep(Duration::from_millis(200));
                }
                let (mut batch, mut started) = (RawBatch::default(), None);
                loop {
                    batch.clear();
                    let status = s.poll(&mut batch, 4096, 4 << 20).expect("poll");
                    if !batch.is_empty() && started.is_none() {
                        started = Some(Instant::now());
                    }
                    read += batch.len();
                    if status == SourceStatus::Finished {
                        break;
                    }
                }
                elapsed += started.map(|t| t.elapsed()).unwrap_or_default();
                assert_eq!(s.position(0), n as i64);
            }
            assert_eq!(read, n * rounds);
            *rate = read as f64 / elapsed.as_secs_f64();
        }
        (rates[0], rates[1])
    }

    #[test]
    fn read_rate_smoke() {
        let (end_to_end, prefetched) = read_rate(2_000, 2);
        assert!(end_to_end > 0.0 && prefetched > 0.0);
    }
}
