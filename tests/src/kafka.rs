//! Kafka client helpers of the tests: topic creation through the Admin API, a producer that
//! puts each record on a chosen partition and checks every delivery, and metadata look-ups.
//! They work against librdkafka's mock cluster and against a real broker (tansu) alike.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};

/// How long one Kafka request of the helpers may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Records queued in the producer before `send` waits for deliveries.
const PRODUCER_QUEUE_RECORDS_MAX: usize = 100_000;

pub use spillway_connectors::repartition_topic::block_on;

/// Creates `topic` with `partitions` partitions (replication 1) through the Admin API (a real
/// broker; librdkafka's mock cluster does not answer CreateTopics: use
/// `EmbeddedKafka::create_topic` there).
pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| format!("admin client for {bootstrap}: {e}"))?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let results = block_on(admin.create_topics([&new_topic], &options))
        .map_err(|e| format!("create topic '{topic}' at {bootstrap}: {e}"))?;
    for r in results {
        if let Err((name, code)) = r {
            return Err(format!("create topic '{name}' at {bootstrap}: {code}"));
        }
    }
    // The topic is usable once its metadata lists every partition.
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    loop {
        match topic_partitions(bootstrap, topic) {
            Ok(n) if n == partitions as usize => return Ok(()),
            Ok(_) | Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            Ok(n) => {
                return Err(format!(
                    "topic '{topic}' at {bootstrap} has {n} partitions, expected {partitions}"
                ))
            }
            Err(e) => return Err(e),
        }
    }
}

/// The number of partitions of `topic` in the broker's metadata (an error if it is unknown).
pub fn topic_partitions(bootstrap: &str, topic: &str) -> Result<usize, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("allow.auto.create.topics", "false")
        .create()
        .map_err(|e| format!("metadata client for {bootstrap}: {e}"))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .map_err(|e| format!("metadata of '{topic}' at {bootstrap}: {e}"))?;
    match metadata.topics().iter().find(|t| t.name() == topic) {
        Some(t) if t.error().is_none() => Ok(t.partitions().len()),
        Some(t) => Err(format!("topic '{topic}' at {bootstrap}: {:?}", t.error())),
        None => Err(format!(
            "topic '{topic}' is not in the metadata of {bootstrap}"
        )),
    }
}

/// Whether a broker at `bootstrap` answers a metadata request within `timeout`.
pub fn answers_metadata(bootstrap: &str, timeout: Duration) -> bool {
    let consumer: Result<BaseConsumer, _> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "0")
        .create();
    match consumer {
        Ok(c) => c.fetch_metadata(None, timeout).is_ok(),
        Err(_) => false,
    }
}

/// Counts deliveries and keeps the first failure.
#[derive(Default)]
struct DeliveryCounter {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::AcqRel);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::AcqRel);
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
}

/// How records are put into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batching {
    /// librdkafka's defaults (many records per batch).
    Default,
    /// One record per batch and one request in flight, so the partition's order is kept and a
    /// broker that answers "latest offset" with the last batch's base offset + 1 (tansu) still
    /// reports the true end.
    OneRecordPerBatch,
}

/// Produces `records` (partition, payload) to `topic` and waits until every one is
/// delivered; any failed delivery is an error. Returns the number delivered.
pub fn produce<'a>(
    bootstrap: &str,
    topic: &str,
    records: impl IntoIterator<Item = (i32, &'a [u8])>,
    batching: Batching,
) -> Result<u64, String> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set(
            "queue.buffering.max.messages",
            PRODUCER_QUEUE_RECORDS_MAX.to_string(),
        )
        .set("message.timeout.ms", "60000");
    if batching == Batching::OneRecordPerBatch {
        config
            .set("linger.ms", "0")
            .set("batch.num.messages", "1")
            .set("max.in.flight.requests.per.connection", "1")
            .set("enable.idempotence", "false")
            .set("compression.type", "none");
    } else {
        config.set("linger.ms", "5");
    }
    let producer: ThreadedProducer<DeliveryCounter> = config
        .create_with_context(DeliveryCounter::default())
        .map_err(|e| format!("producer for {bootstrap}: {e}"))?;
    let mut sent = 0u64;
    for (partition, payload) in records {
        let mut record = BaseRecord::<(), [u8]>::to(topic)
            .payload(payload)
            .partition(partition);
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if Instant::now() < deadline =>
                {
                    record = r;
                    thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => {
                    return Err(format!(
                        "produce to '{topic}'[{partition}] at {bootstrap}: {e}"
                    ))
                }
            }
        }
        sent += 1;
    }
    producer
        .flush(Duration::from_secs(120))
        .map_err(|e| format!("flush of the producer to '{topic}' at {bootstrap}: {e}"))?;
    let counter = producer.context();
    let failed = counter.failed.load(Ordering::Acquire);
    if failed > 0 {
        let first = counter.first_error.lock().ok().and_then(|f| f.clone());
        return Err(format!(
            "{failed} of {sent} records to '{topic}' at {bootstrap} were not delivered; first error: {}",
            first.unwrap_or_default()
        ));
    }
    let delivered = counter.delivered.load(Ordering::Acquire);
    if delivered != sent {
        return Err(format!(
            "{delivered} of {sent} records to '{topic}' at {bootstrap} confirmed after the flush"
        ));
    }
    Ok(delivered)
}

/// The offsets group `group` has committed for each partition of `topic` (None: nothing).
pub fn committed_offsets(
    bootstrap: &str,
    group: &str,
    topic: &str,
) -> Result<Vec<Option<i64>>, String> {
    let partitions = topic_partitions(bootstrap, topic)?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .map_err(|e| format!("offsets client for {bootstrap}: {e}"))?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition(topic, p);
    }
    let got = consumer
        .committed_offsets(tpl, REQUEST_TIMEOUT)
        .map_err(|e| format!("committed offsets of '{group}' at {bootstrap}: {e}"))?;
    Ok(got
        .elements()
        .iter()
        .map(|e| match e.offset() {
            rdkafka::Offset::Offset(o) => Some(o),
            _ => None,
        })
        .collect())
}

/// A record's key and value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Every record of `topic` (whose producers have stopped), as (key, value) pairs. Reads at
/// least to the end ListOffsets reports, then until nothing more arrives for a second (tansu
/// answers ListOffsets with the last batch's base offset + 1, short of the true end).
pub fn read_topic(bootstrap: &str, topic: &str) -> Result<Vec<KeyValue>, String> {
    Ok(read_topic_records(bootstrap, topic)?
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect())
}

/// One record read back, with its headers.
#[derive(Debug, Clone)]
pub struct ReadRecord {
    pub partition: i32,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Header name to value (UTF-8).
    pub headers: std::collections::BTreeMap<String, String>,
}

/// Like [`read_topic`], with partitions and headers.
pub fn read_topic_records(bootstrap: &str, topic: &str) -> Result<Vec<ReadRecord>, String> {
    use rdkafka::message::Headers;
    use rdkafka::Message;
    const QUIET: Duration = Duration::from_secs(1);
    let ends = high_watermarks(bootstrap, topic)?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "spillway-test-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50")
        .create()
        .map_err(|e| format!("reader for {bootstrap}: {e}"))?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..ends.len() as i32 {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .map_err(|e| format!("assign '{topic}'[{p}]: {e}"))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| format!("assign '{topic}': {e}"))?;
    let at_least: i64 = ends.iter().sum();
    let mut out = Vec::new();
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut last_record = Instant::now();
    loop {
        if let Some(m) = consumer.poll(Duration::from_millis(50)) {
            let m = m.map_err(|e| format!("read '{topic}': {e}"))?;
            let mut headers = std::collections::BTreeMap::new();
            if let Some(h) = m.headers() {
                for header in h.iter() {
                    let value = String::from_utf8_lossy(header.value.unwrap_or_default());
                    headers.insert(header.key.to_string(), value.into_owned());
                }
            }
            out.push(ReadRecord {
                partition: m.partition(),
                key: m.key().unwrap_or_default().to_vec(),
                value: m.payload().unwrap_or_default().to_vec(),
                headers,
            });
            last_record = Instant::now();
            continue;
        }
        if out.len() as i64 >= at_least && last_record.elapsed() >= QUIET {
            return Ok(out);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "read {} of at least {at_least} records of '{topic}' within {REQUEST_TIMEOUT:?}",
                out.len()
            ));
        }
    }
}

/// The high watermark (next offset) of each partition of `topic`, in partition order.
pub fn high_watermarks(bootstrap: &str, topic: &str) -> Result<Vec<i64>, String> {
    let partitions = topic_partitions(bootstrap, topic)?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| format!("watermark client for {bootstrap}: {e}"))?;
    (0..partitions as i32)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, REQUEST_TIMEOUT)
                .map(|(_, high)| high)
                .map_err(|e| format!("watermarks of '{topic}'[{p}] at {bootstrap}: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use spillway_connectors::embedded_kafka::EmbeddedKafka;
    use std::sync::Arc;

    #[test]
    fn block_on_waits_for_another_thread() {
        let (tx, rx) = std::sync::mpsc::channel::<u32>();
        let value = Arc::new(Mutex::new(None));
        let slot = value.clone();
        let t = thread::spawn(move || {
            let v = rx.recv().unwrap_or(0);
            if let Ok(mut s) = slot.lock() {
                *s = Some(v);
            }
        });
        let _ = tx.send(7);
        let _ = t.join();
        let got = block_on(async { value.lock().ok().and_then(|v| *v) });
        assert_eq!(got, Some(7));
    }

    #[test]
    fn produced_records_land_on_their_partitions() {
        let kafka = EmbeddedKafka::start(1).expect("mock cluster");
        let bootstrap = kafka.bootstrap_servers();
        // The mock cluster has no CreateTopics; the Admin API path is exercised with tansu.
        kafka.create_topic("placed", 3).expect("create");
        assert_eq!(topic_partitions(&bootstrap, "placed"), Ok(3));
        let payloads: Vec<Vec<u8>> = (0..30)
            .map(|i| format!("{{\"i\":{i}}}").into_bytes())
            .collect();
        let records = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| ((i % 3 == 2) as i32 * 2, &p[..]));
        let n =
            produce(&bootstrap, "placed", records, Batching::OneRecordPerBatch).expect("produce");
        assert_eq!(n, 30);
        assert_eq!(high_watermarks(&bootstrap, "placed"), Ok(vec![20, 0, 10]));
    }

    #[test]
    fn unknown_topic_is_an_error() {
        let kafka = EmbeddedKafka::start(1).expect("mock cluster");
        let err = topic_partitions(&kafka.bootstrap_servers(), "nope").expect_err("unknown");
        assert!(err.contains("nope"), "{err}");
    }
}
