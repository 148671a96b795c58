//! The `upsert-kafka` changelog of a dimension table: one librdkafka consumer per shard,
//! assigned every partition of the topic from the earliest offset (no group membership, no
//! committed offsets), read for as long as the job runs.
//!
//! Options: `connector` = 'upsert-kafka', `topic`, `properties.bootstrap.servers`
//! (required), any other `properties.X`, `format` / `key.format` / `value.format` = 'json',
//! `scan.connect.timeout` (default '10 s'), `source.record-bytes-max` (default 1 MiB; larger
//! records are skipped). The value is the row; a null value (tombstone) deletes the row whose
//! key the message key (the JSON object of the PRIMARY KEY columns, as the `upsert-kafka`
//! sink writes it) names. `scan.startup.mode` and `scan.bounded.mode` are refused: a
//! dimension table is always the whole topic.
//!
//! Caught up: librdkafka's ListOffsets answer is the first end of each partition; since some
//! brokers (tansu) answer it short, the end is raised to the high watermark of the first
//! fetch response, and a partition is caught up once its position reached both.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::bindings::{rd_kafka_message_timestamp, rd_kafka_timestamp_type_t};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR;
use rdkafka::{Offset, TopicPartitionList};

use crate::dimension_changelog::{
    ChangelogBatch, ChangelogSource, ChangelogSourceFactory, TIME_NONE,
};
use crate::error::{ConnectorError, Result};
use crate::kafka_batch_queue::NativeQueues;
use crate::kafka_options::{self, KafkaSourceOptions, WarnLimiter};

/// How often a reader asks librdkafka for its positions while idle (they move past offsets
/// never delivered as records: transaction markers, compacted-away tombstones).
const POSITION_CHECK_INTERVAL_MS: u64 = 50;
/// Largest number of messages taken from librdkafka per call.
const TAKE_MESSAGES_MAX: usize = 256;
/// Options of the Kafka source that a dimension table refuses.
const REFUSED_OPTIONS: &[&str] = &["scan.startup.mode", "scan.bounded.mode", "key.fields"];

/// Builds the changelog readers of one `upsert-kafka` dimension table.
#[derive(Debug, Clone)]
pub struct KafkaChangelogFactory {
    table: String,
    options: KafkaSourceOptions,
}

impl KafkaChangelogFactory {
    /// Parses and checks the table's connector options (no network access yet).
    pub fn from_options(table: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        let mut kafka = BTreeMap::new();
        for (key, value) in options {
            if REFUSED_OPTIONS.contains(&key.as_str()) {
                return Err(ConnectorError::config(
                    table,
                    format!(
                        "option '{key}' does not apply to an 'upsert-kafka' dimension table, \
                         which is always read whole from the earliest offset"
                    ),
                ));
            }
            match key.as_str() {
                "connector" => {
                    if !value.trim().eq_ignore_ascii_case("upsert-kafka") {
                        return Err(ConnectorError::config(
                            table,
                            format!("option 'connector' = '{value}' given to the upsert-kafka changelog"),
                        ));
                    }
                }
                "key.format" | "value.format" => {
                    if !value.trim().eq_ignore_ascii_case("json") {
                        return Err(ConnectorError::config(
                            table,
                            format!("option '{key}' = '{value}' is not supported (accepted: json)"),
                        ));
                    }
                }
                _ => {
                    kafka.insert(key.clone(), value.clone());
                }
            }
        }
        kafka.insert(
            "scan.startup.mode".to_string(),
            "earliest-offset".to_string(),
        );
        Ok(KafkaChangelogFactory {
            table: table.to_string(),
            options: KafkaSourceOptions::parse(table, &kafka)?,
        })
    }

    fn context(&self) -> String {
        format!(
            "dimension table '{}' (topic '{}' at {})",
            self.table, self.options.common.topic, self.options.common.bootstrap_servers
        )
    }
}

impl ChangelogSourceFactory for KafkaChangelogFactory {
    fn check(&self) -> Result<()> {
        kafka_options::topic_partitions(
            &self.options.common.properties,
            &self.options.common.bootstrap_servers,
            &self.options.common.topic,
            self.options.connect_timeout_ms,
        )
        .map(|_| ())
    }

    fn open(&self, shard: usize) -> Result<Box<dyn ChangelogSource>> {
        let o = &self.options;
        let context = self.context();
        let timeout = Duration::from_millis(o.connect_timeout_ms);
        let partitions = kafka_options::topic_partitions(
            &o.common.properties,
            &o.common.bootstrap_servers,
            &o.common.topic,
            o.connect_timeout_ms,
        )?;
        let consumer: BaseConsumer = o
            .consumer_config(&self.table, &format!("dimension-shard{shard}"))
            .create()
            .map_err(|e| {
                ConnectorError::Kafka(format!("{context}: cannot create the consumer: {e}"))
            })?;
        let queues = NativeQueues::new(&consumer).map_err(|e| {
            ConnectorError::Kafka(format!("{context}: cannot set up the consumer queues: {e}"))
        })?;
        let mut state = CatchUp::default();
        let mut tpl = TopicPartitionList::with_capacity(partitions.len());
        for &p in &partitions {
            let (low, high) = consumer
                .fetch_watermarks(&o.common.topic, p, timeout)
                .map_err(|e| {
                    ConnectorError::Kafka(format!(
                        "{context}: cannot read the offsets of partition {p}: {e}"
                    ))
                })?;
            state.add_partition(p, low, high);
            tpl.add_partition_offset(&o.common.topic, p, Offset::Offset(low))
                .map_err(|e| ConnectorError::Kafka(format!("{context}: assignment: {e}")))?;
        }
        consumer
            .assign(&tpl)
            .map_err(|e| ConnectorError::Kafka(format!("{context}: cannot assign: {e}")))?;
        Ok(Box::new(KafkaChangelog {
            context,
            topic: o.common.topic.clone(),
            queues,
            consumer,
            state,
            record_bytes_max: o.record_bytes_max,
            warn_limiter: WarnLimiter::default(),
            log_limiter: WarnLimiter::default(),
            position_checked_at: Instant::now(),
        }))
    }

    fn describe(&self) -> String {
        format!(
            "upsert-kafka topic '{}' at {}, all partitions from the earliest offset on every shard",
            self.options.common.topic, self.options.common.bootstrap_servers
        )
    }
}

/// Positions and start-up ends of a reader's partitions (tested apart from the client).
#[derive(Debug, Default)]
struct CatchUp {
    /// Partition numbers, in index order.
    partitions: Vec<i32>,
    /// Partition number -> index (usize::MAX: not read).
    index_of: Vec<usize>,
    /// Next offset to read per index.
    positions: Vec<i64>,
    /// The end to reach before the start-up catch-up is done, per index: the ListOffsets
    /// answer, raised to the first fetched high watermark once known.
    ends: Vec<i64>,
    /// Whether `ends[i]` already includes a fetched high watermark.
    end_confirmed: Vec<bool>,
    caught_up: bool,
}

impl CatchUp {
    fn add_partition(&mut self, partition: i32, low: i64, high: i64) {
        let id = usize::try_from(partition).unwrap_or(usize::MAX);
        if id != usize::MAX {
            if self.index_of.len() <= id {
                self.index_of.resize(id + 1, usize::MAX);
            }
            self.index_of[id] = self.partitions.len();
        }
        self.partitions.push(partition);
        self.positions.push(low.max(0));
        self.ends.push(high.max(low).max(0));
        self.end_confirmed.push(false);
    }

    fn index(&self, partition: i32) -> Option<usize> {
        let i = *self.index_of.get(usize::try_from(partition).ok()?)?;
        (i != usize::MAX).then_some(i)
    }

    /// A record at `offset` of partition index `i` was delivered.
    fn delivered(&mut self, i: usize, offset: i64) {
        self.positions[i] = self.positions[i].max(offset + 1);
    }

    /// librdkafka's position of partition index `i` (past markers and gaps).
    fn advance(&mut self, i: usize, position: i64) {
        self.positions[i] = self.positions[i].max(position);
    }

    /// The high watermark of a fetch response for partition index `i`.
    fn fetched_high(&mut self, i: usize, high: i64) {
        if !self.end_confirmed[i] {
            self.ends[i] = self.ends[i].max(high);
            self.end_confirmed[i] = true;
        }
    }

    /// Updates and returns whether every partition reached its start-up end.
    fn check(&mut self) -> bool {
        if !self.caught_up {
            self.caught_up = (0..self.partitions.len())
                .all(|i| self.end_confirmed[i] && self.positions[i] >= self.ends[i]);
        }
        self.caught_up
    }
}

/// One shard's reader of an `upsert-kafka` changelog.
struct KafkaChangelog {
    context: String,
    topic: String,
    /// Declared before `consumer`: its queue handles are released before the client.
    queues: NativeQueues,
    consumer: BaseConsumer,
    state: CatchUp,
    record_bytes_max: usize,
    warn_limiter: WarnLimiter,
    log_limiter: WarnLimiter,
    position_checked_at: Instant,
}

impl KafkaChangelog {
    /// The high watermark of the last fetch response of `partition` (no network round trip).
    fn cached_high(&self, partition: i32) -> Option<i64> {
        let topic = std::ffi::CString::new(self.topic.as_str()).ok()?;
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: the client handle lives as long as `self.consumer`; the topic is a valid
        // NUL-terminated string for the call; librdkafka writes only the two out-parameters.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(
                self.consumer.client().native_ptr(),
                topic.as_ptr(),
                partition,
                &mut low,
                &mut high,
            )
        };
        (err == RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
    }

    /// Before the catch-up is done: confirms ends from fetch responses and moves positions
    /// past offsets never delivered, at most every `POSITION_CHECK_INTERVAL_MS`.
    fn check_catch_up(&mut self) {
        if self.state.caught_up {
            return;
        }
        if self.position_checked_at.elapsed() < Duration::from_millis(POSITION_CHECK_INTERVAL_MS) {
            return;
        }
        self.position_checked_at = Instant::now();
        for i in 0..self.state.partitions.len() {
            if let Some(high) = self.cached_high(self.state.partitions[i]) {
                self.state.fetched_high(i, high);
            }
        }
        if let Ok(tpl) = self.consumer.position() {
            for elem in tpl.elements() {
                if let (Offset::Offset(position), Some(i)) =
                    (elem.offset(), self.state.index(elem.partition()))
                {
                    self.state.advance(i, position);
                }
            }
        }
        self.state.check();
    }
}

impl ChangelogSource for KafkaChangelog {
    fn poll(
        &mut self,
        out: &mut ChangelogBatch,
        records_max: usize,
        bytes_max: usize,
    ) -> Result<()> {
        let bytes_start = out.records.bytes();
        let mut handled = 0usize;
        while handled < records_max && out.records.bytes() - bytes_start < bytes_max {
            let want = (records_max - handled).min(TAKE_MESSAGES_MAX);
            let taken = self.queues.consume_batch(want)?;
            let drained = taken.len() < want;
            handled += taken.len();
            for message in taken.iter() {
                if message.err != RD_KAFKA_RESP_ERR_NO_ERROR {
                    let code: RDKafkaErrorCode = message.err.into();
                    if code == RDKafkaErrorCode::PartitionEOF {
                        continue;
                    }
                    if let Some((fatal, reason)) = self.consumer.client().fatal_error() {
                        return Err(ConnectorError::Kafka(format!(
                            "{}: fatal error: {fatal}: {reason}",
                            self.context
                        )));
                    }
                    let detail = taken.error_text(message);
                    if matches!(
                        code,
                        RDKafkaErrorCode::UnknownTopic
                            | RDKafkaErrorCode::UnknownPartition
                            | RDKafkaErrorCode::TopicAuthorizationFailed
                    ) {
                        return Err(ConnectorError::Kafka(format!(
                            "{}: partition {}: {code}: {detail}",
                            self.context, message.partition
                        )));
                    }
                    if let Some(suppressed) = self.warn_limiter.allow() {
                        tracing::warn!(
                            "{}: partition {}: {code}: {detail} (librdkafka retries; \
                             {suppressed} similar warnings suppressed)",
                            self.context,
                            message.partition
                        );
                    }
                    continue;
                }
                let Some(index) = self.state.index(message.partition) else {
                    continue;
                };
                self.state.delivered(index, message.offset);
                let mut ts_type = rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
                // SAFETY: `message` is a live message of this batch; librdkafka only reads it
                // and writes the timestamp type.
                let ts = unsafe { rd_kafka_message_timestamp(message, &mut ts_type) };
                let time_ms = if ts >= 0 { ts } else { TIME_NONE };
                // SAFETY: librdkafka guarantees `payload` / `key` point to `len` / `key_len`
                // bytes (or are null) until the message is destroyed, after this loop.
                let payload = (!message.payload.is_null() && message.len > 0).then(|| unsafe {
                    std::slice::from_raw_parts(message.payload as *const u8, message.len)
                });
                let key = (!message.key.is_null() && message.key_len > 0).then(|| unsafe {
                    std::slice::from_raw_parts(message.key as *const u8, message.key_len)
                });
                let partition = index as u32;
                match (payload, key) {
                    (Some(p), _) if p.len() > self.record_bytes_max => out.records.oversized += 1,
                    (Some(p), _) => out.push_value(partition, message.offset, time_ms, p),
                    (None, Some(k)) if k.len() > self.record_bytes_max => {
                        out.records.oversized += 1
                    }
                    (None, Some(k)) => out.push_tombstone(partition, message.offset, time_ms, k),
                    (None, None) => out.keyless_tombstones += 1,
                }
            }
            if drained {
                break;
            }
        }
        self.queues.serve_logs(&self.context, &mut self.log_limiter);
        if let Some((code, reason)) = self.consumer.client().fatal_error() {
            return Err(ConnectorError::Kafka(format!(
                "{}: fatal error: {code}: {reason}",
                self.context
            )));
        }
        self.check_catch_up();
        Ok(())
    }

    fn caught_up(&self) -> bool {
        self.state.caught_up
    }

    fn progress(&self) -> String {
        let s = &self.state;
        let parts: Vec<String> = (0..s.partitions.len())
            .map(|i| {
                format!(
                    "partition {} at offset {} of {}{}",
                    s.partitions[i],
                    s.positions[i],
                    s.ends[i],
                    if s.end_confirmed[i] {
                        ""
                    } else {
                        " (no fetch answered yet)"
                    }
                )
            })
            .collect();
        format!("{}: {}", self.context, parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn options_are_checked_and_described() {
        let base = [
            ("connector", "upsert-kafka"),
            ("topic", "securities"),
            ("properties.bootstrap.servers", "127.0.0.1:9"),
            ("key.format", "json"),
            ("value.format", "json"),
        ];
        let f = KafkaChangelogFactory::from_options("s", &opts(&base)).expect("valid");
        assert!(
            f.describe().contains("topic 'securities'"),
            "{}",
            f.describe()
        );
        let mut bounded = base.to_vec();
        bounded.push(("scan.bounded.mode", "latest-offset"));
        let e = KafkaChangelogFactory::from_options("s", &opts(&bounded)).unwrap_err();
        assert!(e.to_string().contains("read whole"), "{e}");
        let mut avro = base.to_vec();
        avro[3] = ("key.format", "avro");
        let e = KafkaChangelogFactory::from_options("s", &opts(&avro)).unwrap_err();
        assert!(e.to_string().contains("'key.format' = 'avro'"), "{e}");
        let e = KafkaChangelogFactory::from_options("s", &opts(&base[..2])).unwrap_err();
        assert!(e.to_string().contains("bootstrap.servers"), "{e}");
    }

    #[test]
    fn catch_up_needs_a_fetched_high_watermark_and_the_position() {
        let mut s = CatchUp::default();
        s.add_partition(0, 0, 3);
        s.add_partition(2, 5, 5);
        assert_eq!(s.index(2), Some(1));
        assert_eq!(s.index(1), None);
        for offset in 0..3 {
            s.delivered(0, offset);
        }
        assert!(!s.check(), "no fetch answered yet");
        // The broker answered ListOffsets short: the fetch knows of 2 more records.
        s.fetched_high(0, 5);
        s.fetched_high(1, 5);
        assert!(!s.check());
        s.delivered(0, 3);
        s.advance(0, 5); // a transaction marker at offset 4
        assert!(s.check());
        // Later high watermarks do not move the start-up end.
        s.fetched_high(0, 50);
        assert_eq!(s.ends[0], 5);
        assert!(s.check());
    }
}
