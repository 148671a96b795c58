//! Writes a Nexmark stream to Kafka topics (one per event kind) as the same JSON lines the
//! `nexmark` source delivers, for end-to-end runs through the Kafka source.
//!
//! Event `n` goes to partition `n mod partitions` of its kind's topic, so topic partition
//! `p` holds what partition `p` of a `nexmark` table with the same `partitions` delivers,
//! in the same order.

use std::ops::Range;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, ProducerContext};

use super::generator::{NexmarkGenerator, StreamConfig};
use super::json::write_event_json;
use super::model::EventKind;
use crate::error::{ConnectorError, Result};

/// Sends between two non-blocking polls of the producer (which serve delivery reports).
pub const SENDS_PER_POLL: u64 = 1_000;
/// How long one wait for room in a full producer queue polls, ms.
const QUEUE_FULL_POLL_MS: u64 = 5;
/// How many waits for room in a full producer queue one record may take (about a minute).
const QUEUE_FULL_WAITS_MAX: u32 = 12_000;

/// The topic of each event kind; a kind without a topic is not written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NexmarkTopics {
    pub bid: Option<String>,
    pub auction: Option<String>,
    pub person: Option<String>,
}

impl NexmarkTopics {
    /// Topics `<prefix>bid`, `<prefix>auction` and `<prefix>person`.
    pub fn all(prefix: &str) -> Self {
        NexmarkTopics {
            bid: Some(format!("{prefix}bid")),
            auction: Some(format!("{prefix}auction")),
            person: Some(format!("{prefix}person")),
        }
    }

    /// The topic of `kind`, if it is written.
    pub fn of(&self, kind: EventKind) -> Option<&str> {
        match kind {
            EventKind::Bid => self.bid.as_deref(),
            EventKind::Auction => self.auction.as_deref(),
            EventKind::Person => self.person.as_deref(),
        }
    }
}

/// What [`write_to_kafka`] sent, per kind: records and payload bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KafkaWriteReport {
    pub bids: u64,
    pub auctions: u64,
    pub persons: u64,
    pub bytes: u64,
}

impl KafkaWriteReport {
    /// Records sent of all kinds.
    pub fn records(&self) -> u64 {
        self.bids + self.auctions + self.persons
    }
}

/// Sends events `events` of `stream` with `producer`: each to partition
/// `n mod partitions` of its kind's topic in `topics` (kinds without a topic are skipped).
/// Serves delivery reports as it goes but does not wait for the last ones: flush or poll
/// the producer afterwards and check its delivery reports.
pub fn write_to_kafka<C: ProducerContext<DeliveryOpaque = ()>>(
    producer: &BaseProducer<C>,
    stream: &StreamConfig,
    events: Range<u64>,
    partitions: u32,
    topics: &NexmarkTopics,
) -> Result<KafkaWriteReport> {
    if partitions == 0 || partitions > i32::MAX as u32 {
        return Err(ConnectorError::Internal(format!(
            "write_to_kafka: {partitions} partitions"
        )));
    }
    let mut generator = NexmarkGenerator::new(*stream);
    let mut line = Vec::with_capacity(1024);
    let mut report = KafkaWriteReport::default();
    let mut since_poll = 0;
    for n in events {
        let kind = EventKind::of(n);
        let Some(topic) = topics.of(kind) else {
            continue;
        };
        line.clear();
        write_event_json(&generator.event(n), &mut line);
        let partition = (n % u64::from(partitions)) as i32;
        let mut record = BaseRecord::<(), [u8]>::to(topic)
            .payload(&line)
            .partition(partition);
        let mut waits = 0;
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if waits < QUEUE_FULL_WAITS_MAX =>
                {
                    // The local queue is full: serve delivery reports while it drains.
                    producer.poll(Duration::from_millis(QUEUE_FULL_POLL_MS));
                    waits += 1;
                    record = back;
                }
                Err((e, _)) => {
                    return Err(ConnectorError::Kafka(format!(
                        "cannot send nexmark event {n} to {topic} partition {partition}: {e}"
                    )))
                }
            }
        }
        match kind {
            EventKind::Bid => report.bids += 1,
            EventKind::Auction => report.auctions += 1,
            EventKind::Person => report.persons += 1,
        }
        report.bytes += line.len() as u64;
        since_poll += 1;
        if since_poll == SENDS_PER_POLL {
            since_poll = 0;
            producer.poll(Duration::ZERO);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded_kafka::EmbeddedKafka;
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::Producer;
    use rdkafka::Message;

    #[test]
    fn events_land_on_their_kind_topic_and_partition() {
        let kafka = EmbeddedKafka::start(1).expect("embedded kafka");
        let topics = NexmarkTopics::all("nx-");
        for kind in EventKind::ALL {
            kafka
                .create_topic(topics.of(kind).expect("topic"), 2)
                .expect("topic created");
        }
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", kafka.bootstrap_servers())
            .create()
            .expect("producer");
        let stream = StreamConfig::default();
        let report = write_to_kafka(&producer, &stream, 0..500, 2, &topics).expect("written");
        producer.flush(Duration::from_secs(30)).expect("flushed");
        assert_eq!(
            (report.persons, report.auctions, report.bids),
            (10, 30, 460)
        );

        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", kafka.bootstrap_servers())
            .set("group.id", "nexmark-writer-test")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        consumer.subscribe(&["nx-auction"]).expect("subscribed");
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while seen.len() < 30 && std::time::Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let json: serde_json::Value =
                    serde_json::from_slice(m.payload().unwrap_or_default()).expect("json");
                let id = json["id"].as_u64().expect("id");
                seen.push((m.partition(), id));
            }
        }
        seen.sort_by_key(|s| s.1);
        assert_eq!(seen.len(), 30);
        // Auction k (id 1000 + k) is event 50 * (k / 3) + 1 + k % 3: partition n mod 2.
        for (partition, id) in seen {
            let k = id - 1000;
            let n = 50 * (k / 3) + 1 + k % 3;
            assert_eq!(partition as u64, n % 2, "auction {id}");
        }
    }
}
