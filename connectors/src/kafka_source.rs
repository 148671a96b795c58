//! The Kafka source: one librdkafka consumer per shard, reading the partitions it was given.
//!
//! Options (the engine passes only these keys): `connector` = 'kafka', `topic`, `format` =
//! 'json', `properties.bootstrap.servers` (required), `properties.group.id` (default
//! `spillway-<table>`), any other `properties.X` (librdkafka property `X`),
//! `scan.startup.mode` = earliest-offset | latest-offset | group-offsets (default; a partition
//! without a committed offset starts where `properties.auto.offset.reset` says, default
//! earliest), `scan.bounded.mode` = unbounded (default) | latest-offset (stop at the high
//! watermarks seen when the source opens), `scan.connect.timeout` (default '10 s'),
//! `source.record-bytes-max` (default 1 MiB; larger records are skipped and counted).
//!
//! Each shard's consumer is assigned its partitions by hand (no group membership, so shards
//! never rebalance); the group id is only used for committed offsets. The consumer never
//! commits or stores offsets itself: the checkpoint holds the positions, and the committer
//! commits them (see [`KafkaOffsetCommitter`]).
//!
//! Invariant: `position(i)` is always a concrete offset (the next one to read), resolved when
//! the source opens, never one of librdkafka's logical offsets (beginning, end, stored).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR;
use rdkafka::{Offset, TopicPartitionList};

use crate::error::{ConnectorError, Result};
use crate::kafka_batch_queue::NativeQueues;
use crate::kafka_options::{self, KafkaSourceOptions, StartupMode, WarnLimiter};
use crate::raw_batch::RawBatch;
use crate::{PartitionInfo, Source, SourceFactory, SourceStatus};

/// Largest partition number a source accepts (bounds its partition lookup table).
pub const PARTITION_ID_MAX: i32 = 65_535;
/// How often an idle bounded source asks librdkafka for its positions (which move past
/// transaction markers that are never delivered as records).
const BOUNDED_POSITION_CHECK_INTERVAL_MS: u64 = 50;

/// Builds the Kafka sources of one table.
#[derive(Debug, Clone)]
pub struct KafkaSourceFactory {
    table: String,
    options: KafkaSourceOptions,
}

impl KafkaSourceFactory {
    /// Parses and checks the table's connector options (no network access yet).
    pub fn from_options(table: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        Ok(KafkaSourceFactory {
            table: table.to_string(),
            options: KafkaSourceOptions::parse(table, options)?,
        })
    }

    /// Overrides `source.record-bytes-max`.
    pub fn with_record_bytes_max(mut self, record_bytes_max: usize) -> Self {
        self.options.record_bytes_max = record_bytes_max.max(1);
        self
    }

    /// The consumer group whose committed offsets `group-offsets` reads (and the committer
    /// writes).
    pub fn group_id(&self) -> &str {
        &self.options.group_id
    }

    /// The topic read.
    pub fn topic(&self) -> &str {
        &self.options.common.topic
    }

    /// Whether the source stops at the high watermarks seen when it opens.
    pub fn is_bounded(&self) -> bool {
        self.options.bounded
    }

    /// A client that commits offsets of this table's group (for the committer; also used by
    /// tests to set up `group-offsets`).
    pub fn offset_committer(&self) -> Result<KafkaOffsetCommitter> {
        let consumer: BaseConsumer = self
            .options
            .consumer_config(&self.table, "committer")
            .create()
            .map_err(|e| self.kafka_error("cannot create the offset committer", e))?;
        Ok(KafkaOffsetCommitter {
            consumer,
            topic: self.options.common.topic.clone(),
            group_id: self.options.group_id.clone(),
        })
    }

    fn kafka_error(&self, what: &str, e: KafkaError) -> ConnectorError {
        ConnectorError::Kafka(format!(
            "table '{}', topic '{}' at {}: {what}: {e}",
            self.table, self.options.common.topic, self.options.common.bootstrap_servers
        ))
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.options.connect_timeout_ms)
    }

    /// The offset each partition starts at, without a checkpoint.
    fn start_offsets(
        &self,
        consumer: &BaseConsumer,
        partitions: &[PartitionInfo],
        watermarks: &[(i64, i64)],
    ) -> Result<Vec<i64>> {
        let o = &self.options;
        let mut committed = vec![None; partitions.len()];
        if o.startup == StartupMode::GroupOffsets {
            let mut tpl = TopicPartitionList::with_capacity(partitions.len());
            for p in partitions {
                tpl.add_partition(&p.topic, p.partition);
            }
            let tpl = consumer
                .committed_offsets(tpl, self.timeout())
                .map_err(|e| self.kafka_error("cannot read the committed offsets", e))?;
            for (c, p) in committed.iter_mut().zip(partitions) {
                let elem = tpl.find_partition(&p.topic, p.partition);
                if let Some(Offset::Offset(offset)) = elem.map(|e| e.offset()) {
                    *c = (offset >= 0).then_some(offset);
                }
            }
        }
        let starts = partitions.iter().zip(watermarks).zip(committed);
        starts
            .map(|((p, &(low, high)), committed)| {
                match (o.startup, committed, o.reset_to_earliest) {
                    (StartupMode::EarliestOffset, _, _) => Ok(low),
                    (StartupMode::LatestOffset, _, _) => Ok(high),
                    (_, Some(offset), _) => Ok(offset),
                    (_, None, Some(true)) => Ok(low),
                    (_, None, Some(false)) => Ok(high),
                    (_, None, None) => Err(ConnectorError::Kafka(format!(
                        "table '{}': partition {} of topic '{}' has no offset committed by \
                         group '{}' and auto.offset.reset = error",
                        self.table, p.partition, p.topic, o.group_id
                    ))),
                }
            })
            .collect()
    }
}

impl SourceFactory for KafkaSourceFactory {
    fn discover(&self) -> Result<Vec<PartitionInfo>> {
        let partitions = kafka_options::topic_partitions(
            &self.options.common.properties,
            &self.options.common.bootstrap_servers,
            &self.options.common.topic,
            self.options.connect_timeout_ms,
        )?;
        Ok(partitions
            .into_iter()
            .map(|partition| PartitionInfo {
                topic: self.options.common.topic.clone(),
                partition,
            })
            .collect())
    }

    fn open(
        &self,
        shard: usize,
        partitions: Vec<PartitionInfo>,
        resume: Option<Vec<i64>>,
    ) -> Result<Box<dyn Source>> {
        let mut index_of = Vec::new();
        for (i, p) in partitions.iter().enumerate() {
            let id = usize::try_from(p.partition).ok().filter(|&id| {
                id <= PARTITION_ID_MAX as usize && p.topic == self.options.common.topic
            });
            if let Some(id) = id {
                index_of.resize(index_of.len().max(id + 1), NO_INDEX);
            }
            match id {
                Some(id) if index_of[id] == NO_INDEX => index_of[id] = i as u32,
                _ => {
                    return Err(ConnectorError::Internal(format!(
                        "Kafka source of table '{}' (topic '{}') given partitions {partitions:?}",
                        self.table, self.options.common.topic
                    )))
                }
            }
        }
        if let Some(r) = &resume {
            if r.len() != partitions.len() || r.iter().any(|&o| o < 0) {
                return Err(ConnectorError::Internal(format!(
                    "Kafka source of table '{}': {} resume offsets {:?} for {} partitions",
                    self.table,
                    r.len(),
                    r,
                    partitions.len()
                )));
            }
        }
        let consumer: BaseConsumer = self
            .options
            .consumer_config(&self.table, &format!("shard{shard}"))
            .create()
            .map_err(|e| self.kafka_error("cannot create the consumer", e))?;
        // Before anything is fetched or logged (declared after `consumer`: dropped first).
        let queues = NativeQueues::new(&consumer)
            .map_err(|e| self.kafka_error("cannot set up the consumer queues", e))?;

        // Watermarks: the bounded end, and the concrete start for earliest/latest.
        let need_watermarks = self.options.bounded || resume.is_none();
        let mut watermarks = Vec::with_capacity(partitions.len());
        for p in partitions.iter().filter(|_| need_watermarks) {
            let w = consumer
                .fetch_watermarks(&p.topic, p.partition, self.timeout())
                .map_err(|e| {
                    let what = format!("cannot read the offsets of partition {}", p.partition);
                    self.kafka_error(&what, e)
                })?;
            watermarks.push(w);
        }
        let positions = match resume {
            Some(r) => r,
            None => self.start_offsets(&consumer, &partitions, &watermarks)?,
        };
        let ends: Vec<i64> = if self.options.bounded {
            watermarks.iter().map(|&(_, high)| high).collect()
        } else {
            vec![i64::MAX; partitions.len()]
        };

        let mut finished = vec![false; partitions.len()];
        let mut pending_ended = Vec::new();
        let mut tpl = TopicPartitionList::with_capacity(partitions.len());
        for (i, p) in partitions.iter().enumerate() {
            if positions[i] >= ends[i] {
                // Nothing to read in bounded mode (an empty partition, or resumed at its end).
                finished[i] = true;
                pending_ended.push(i as u32);
                continue;
            }
            tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(positions[i]))
                .map_err(|e| self.kafka_error("cannot build the assignment", e))?;
        }
        consumer
            .assign(&tpl)
            .map_err(|e| self.kafka_error("cannot assign the partitions", e))?;

        let finished_count = pending_ended.len();
        Ok(Box::new(KafkaSource {
            context: format!(
                "Kafka source of table '{}' (topic '{}' at {})",
                self.table, self.options.common.topic, self.options.common.bootstrap_servers
            ),
            queues,
            consumer,
            state: ReadState {
                partitions,
                index_of,
                positions,
                ends,
                finished,
                finished_count,
                pending_ended,
                to_pause: Vec::new(),
                record_bytes_max: self.options.record_bytes_max,
            },
            bounded: self.options.bounded,
            warn_limiter: WarnLimiter::default(),
            log_limiter: WarnLimiter::default(),
            position_checked_at: Instant::now(),
        }))
    }

    fn offset_committer(&self) -> Result<Option<Box<dyn crate::OffsetCommitter>>> {
        Ok(Some(Box::new(KafkaSourceFactory::offset_committer(self)?)))
    }

    fn consumer_group(&self) -> Option<crate::KafkaGroup> {
        Some(crate::KafkaGroup {
            bootstrap_servers: self.options.common.bootstrap_servers.clone(),
            group_id: self.options.group_id.clone(),
            consumer_config: self.options.consumer_config(&self.table, "transactions"),
        })
    }

    fn describe(&self) -> String {
        let startup = match self.options.startup {
            StartupMode::EarliestOffset => "earliest-offset".to_string(),
            StartupMode::LatestOffset => "latest-offset".to_string(),
            StartupMode::GroupOffsets => format!("group-offsets of '{}'", self.options.group_id),
        };
        format!(
            "kafka topic '{}' at {}, {}, {}",
            self.options.common.topic,
            self.options.common.bootstrap_servers,
            startup,
            if self.options.bounded {
                "bounded"
            } else {
                "unbounded"
            }
        )
    }
}

/// Marks partition numbers this source does not read in its lookup table.
const NO_INDEX: u32 = u32::MAX;

/// The source of one shard.
pub struct KafkaSource {
    /// "Kafka source of table 't' (topic 'x' at servers)", for errors and warnings.
    context: String,
    /// Declared before `consumer`: its queue handles are released before the client.
    queues: NativeQueues,
    consumer: BaseConsumer,
    state: ReadState,
    bounded: bool,
    warn_limiter: WarnLimiter,
    log_limiter: WarnLimiter,
    position_checked_at: Instant,
}

/// Positions and bounded ends of a source's partitions: the bookkeeping of `poll`, apart
/// from the Kafka client (and tested apart from it).
struct ReadState {
    partitions: Vec<PartitionInfo>,
    /// Partition number -> index into `partitions` (or `NO_INDEX`).
    index_of: Vec<u32>,
    /// Next offset to read, per partition index.
    positions: Vec<i64>,
    /// Bounded end (exclusive) per partition index; `i64::MAX` when unbounded.
    ends: Vec<i64>,
    finished: Vec<bool>,
    finished_count: usize,
    /// Partitions finished when the source opened, reported by the first poll.
    pending_ended: Vec<u32>,
    /// Partitions finished during this poll, to pause (their fetched data is not wanted).
    to_pause: Vec<u32>,
    record_bytes_max: usize,
}

impl ReadState {
    /// Takes one record: skips it past the bounded end, counts it when empty or oversized,
    /// appends it otherwise, and advances the position.
    fn take(&mut self, partition: i32, offset: i64, payload: Option<&[u8]>, out: &mut RawBatch) {
        let index = match usize::try_from(partition)
            .ok()
            .and_then(|p| self.index_of.get(p))
        {
            Some(&i) if i != NO_INDEX => i,
            // Only assigned partitions are fetched; anything else is librdkafka's to explain.
            _ => return,
        };
        let i = index as usize;
        if self.finished[i] || offset >= self.ends[i] {
            return; // past the bounded end
        }
        self.positions[i] = offset + 1;
        match payload {
            None | Some([]) => out.empty += 1,
            Some(p) if p.len() > self.record_bytes_max => out.oversized += 1,
            Some(p) => out.push(index, offset, p),
        }
        if self.positions[i] >= self.ends[i] {
            self.finish(i, out);
        }
    }

    /// Moves partition `i` to `position` (if that is ahead), finishing it at its end.
    fn advance(&mut self, i: usize, position: i64, out: &mut RawBatch) {
        if self.finished[i] || position <= self.positions[i] {
            return;
        }
        self.positions[i] = position.min(self.ends[i]);
        if self.positions[i] >= self.ends[i] {
            self.finish(i, out);
        }
    }

    fn finish(&mut self, i: usize, out: &mut RawBatch) {
        assert!(!self.finished[i], "partition index {i} finished twice");
        self.finished[i] = true;
        self.finished_count += 1;
        out.ended.push(i as u32);
        self.to_pause.push(i as u32);
    }

    fn all_finished(&self) -> bool {
        self.finished_count == self.partitions.len()
    }
}

impl KafkaSource {
    /// Bounded and idle: move positions past offsets never delivered as records (transaction
    /// markers), so such a partition still finishes.
    fn check_positions(&mut self, out: &mut RawBatch) {
        let interval = Duration::from_millis(BOUNDED_POSITION_CHECK_INTERVAL_MS);
        if self.position_checked_at.elapsed() < interval {
            return;
        }
        self.position_checked_at = Instant::now();
        let Ok(tpl) = self.consumer.position() else {
            return;
        };
        for elem in tpl.elements() {
            let (Offset::Offset(position), Ok(p)) =
                (elem.offset(), usize::try_from(elem.partition()))
            else {
                continue;
            };
            if let Some(&index) = self.state.index_of.get(p) {
                if index != NO_INDEX {
                    self.state.advance(index as usize, position, out);
                }
            }
        }
    }

    /// Pauses partitions that finished (their prefetched records would be thrown away).
    fn pause_finished(&mut self) {
        if self.state.to_pause.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::with_capacity(self.state.to_pause.len());
        for &i in &self.state.to_pause {
            let p = &self.state.partitions[i as usize];
            tpl.add_partition(&p.topic, p.partition);
        }
        self.state.to_pause.clear();
        if let Err(e) = self.consumer.pause(&tpl) {
            tracing::warn!("{}: cannot pause finished partitions: {e}", self.context);
        }
    }
}

impl Source for KafkaSource {
    fn partitions(&self) -> &[PartitionInfo] {
        &self.state.partitions
    }

    fn poll(
        &mut self,
        out: &mut RawBatch,
        records_max: usize,
        bytes_max: usize,
    ) -> Result<SourceStatus> {
        out.ended.append(&mut self.state.pending_ended);
        let records_start = out.len();
        let bytes_start = out.bytes();
        let mut handled = 0usize;
        while handled < records_max
            && out.bytes() - bytes_start < bytes_max
            && !self.state.all_finished()
        {
            // Ask for fewer messages when the bytes limit is near (by the average size so far).
            let mut want = (records_max - handled).min(BATCH_MESSAGES_MAX);
            let bytes_used = out.bytes() - bytes_start;
            if let Some(average) = bytes_used.checked_div(out.len() - records_start) {
                want = want.min((bytes_max - bytes_used) / (average + 1) + 1);
            }
            let taken = self.queues.consume_batch(want)?;
            let drained = taken.len() < want; // nothing more queued now
            handled += taken.len();
            for message in taken.iter() {
                if message.err == RD_KAFKA_RESP_ERR_NO_ERROR {
                    // SAFETY: librdkafka guarantees `payload` points to `len` bytes (or is
                    // null) for as long as the message is not destroyed, which `taken` does
                    // only when dropped, after this loop.
                    let payload = (!message.payload.is_null()).then(|| unsafe {
                        std::slice::from_raw_parts(message.payload as *const u8, message.len)
                    });
                    self.state
                        .take(message.partition, message.offset, payload, out);
                } else {
                    consumer_error(
                        &self.context,
                        &self.consumer,
                        &mut self.warn_limiter,
                        message.err.into(),
                        message.partition,
                        &taken.error_text(message),
                    )?;
                }
            }
            if drained {
                break;
            }
        }
        self.queues.serve_logs(&self.context, &mut self.log_limiter);
        self.pause_finished();
        if out.len() > records_start {
            return Ok(SourceStatus::Data);
        }
        if let Some((code, reason)) = self.consumer.client().fatal_error() {
            return Err(ConnectorError::Kafka(format!(
                "{}: fatal error: {code}: {reason}",
                self.context
            )));
        }
        if self.bounded && !self.state.all_finished() {
            self.check_positions(out);
            self.pause_finished();
        }
        if self.bounded && self.state.all_finished() {
            Ok(SourceStatus::Finished)
        } else {
            Ok(SourceStatus::Idle)
        }
    }

    fn position(&self, index: u32) -> i64 {
        self.state.positions[index as usize]
    }

    fn high_watermark(&self, index: u32) -> Option<i64> {
        let p = self.state.partitions.get(index as usize)?;
        let topic = std::ffi::CString::new(p.topic.as_str()).ok()?;
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: the client handle lives as long as `self.consumer`; the topic is a valid
        // NUL-terminated string for the call; librdkafka writes only the two out-parameters.
        // This reads the offsets cached from the last fetch response: no network round trip.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(
                self.consumer.client().native_ptr(),
                topic.as_ptr(),
                p.partition,
                &mut low,
                &mut high,
            )
        };
        (err == RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
    }
}

/// Handles an error librdkafka returned in place of a record: fatal and permanent ones are
/// returned, the others (librdkafka retries them) logged, rate-limited.
fn consumer_error(
    context: &str,
    consumer: &BaseConsumer,
    warn_limiter: &mut WarnLimiter,
    code: RDKafkaErrorCode,
    partition: i32,
    detail: &str,
) -> Result<()> {
    if code == RDKafkaErrorCode::PartitionEOF {
        return Ok(());
    }
    if let Some((fatal, reason)) = consumer.client().fatal_error() {
        return Err(ConnectorError::Kafka(format!(
            "{context}: fatal error: {fatal}: {reason}"
        )));
    }
    if is_permanent(code) {
        return Err(ConnectorError::Kafka(format!(
            "{context}: partition {partition}: {code}: {detail}"
        )));
    }
    if let Some(suppressed) = warn_limiter.allow() {
        tracing::warn!(
            "{context}: partition {partition}: {code}: {detail} (librdkafka retries; \
             {suppressed} similar warnings suppressed)"
        );
    }
    Ok(())
}

/// Consumer errors that retrying cannot fix: librdkafka found the topic or partition gone
/// from the metadata, access is denied, or `auto.offset.reset` = error met an out-of-range
/// offset. (The broker's UnknownTopicOrPartition can be transient, e.g. during a leader
/// change, and is retried.)
fn is_permanent(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::UnknownPartition
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::AutoOffsetReset
    )
}

/// Largest number of messages taken from librdkafka by one batch call (the pointer array
/// lives in the source).
pub(crate) const BATCH_MESSAGES_MAX: usize = 256;

/// Commits offsets of one table's consumer group (the next offset to read, per partition).
pub struct KafkaOffsetCommitter {
    consumer: BaseConsumer,
    topic: String,
    group_id: String,
}

impl crate::OffsetCommitter for KafkaOffsetCommitter {
    fn commit(&self, offsets: &[(PartitionInfo, i64)]) -> Result<()> {
        let mine: Vec<(i32, i64)> = offsets
            .iter()
            .filter(|(p, _)| p.topic == self.topic)
            .map(|(p, o)| (p.partition, *o))
            .collect();
        KafkaOffsetCommitter::commit(self, &mine)
    }
}

impl KafkaOffsetCommitter {
    /// Commits `(partition, next offset to read)` pairs synchronously.
    pub fn commit(&self, offsets: &[(i32, i64)]) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::with_capacity(offsets.len());
        for &(partition, offset) in offsets {
            tpl.add_partition_offset(&self.topic, partition, Offset::Offset(offset))
                .map_err(|e| ConnectorError::Kafka(format!("commit offset {offset}: {e}")))?;
        }
        self.consumer.commit(&tpl, CommitMode::Sync).map_err(|e| {
            ConnectorError::Kafka(format!(
                "cannot commit offsets of topic '{}' for group '{}': {e}",
                self.topic, self.group_id
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn state(ends: Vec<i64>, record_bytes_max: usize) -> ReadState {
        let n = ends.len();
        ReadState {
            partitions: (0..n as i32)
                .map(|partition| PartitionInfo {
                    topic: "t".into(),
                    partition,
                })
                .collect(),
            index_of: (0..n as u32).collect(),
            positions: vec![0; n],
            ends,
            finished: vec![false; n],
            finished_count: 0,
            pending_ended: Vec::new(),
            to_pause: Vec::new(),
            record_bytes_max,
        }
    }

    #[test]
    fn describe_names_topic_servers_and_modes() {
        let o: BTreeMap<String, String> = [
            ("topic", "x"),
            ("properties.bootstrap.servers", "h:1"),
            ("scan.bounded.mode", "latest-offset"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let f = KafkaSourceFactory::from_options("t", &o).expect("f");
        assert_eq!(f.group_id(), "spillway-t");
        assert_eq!(
            f.describe(),
            "kafka topic 'x' at h:1, group-offsets of 'spillway-t', bounded"
        );
    }

    proptest! {
        /// Whatever records arrive (in offset order per partition, possibly past the end),
        /// exactly those before the bounded end are taken or counted, positions are the last
        /// offset taken + 1, and each partition that reaches its end is reported once.
        #[test]
        fn read_state_takes_records_up_to_the_end(
            ends in proptest::collection::vec(0i64..20, 1..4),
            records in proptest::collection::vec((0usize..4, 0usize..12), 0..80),
        ) {
            let mut s = state(ends.clone(), 8);
            let mut out = RawBatch::default();
            let mut next = vec![0i64; ends.len()];
            let mut want = (0usize, 0u64, 0u64); // taken, oversized, empty
            for (partition, len) in records {
                let p = partition % ends.len();
                let offset = next[p];
                next[p] += 1;
                let payload = vec![b'x'; len];
                if offset < ends[p] {
                    match len { 0 => want.2 += 1, l if l > 8 => want.1 += 1, _ => want.0 += 1 }
                }
                s.take(p as i32, offset, Some(&payload), &mut out);
            }
            prop_assert_eq!((out.len(), out.oversized, out.empty), want);
            for p in 0..ends.len() {
                prop_assert_eq!(s.positions[p], next[p].min(ends[p]));
                let reported = out.ended.iter().filter(|&&i| i as usize == p).count();
                prop_assert_eq!(reported, usize::from(ends[p] > 0 && next[p] >= ends[p]));
            }
            for i in 0..out.len() {
                let p = out.partition[i] as usize;
                prop_assert!(out.offset[i] < ends[p]);
            }
        }
    }
}
