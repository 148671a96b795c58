//! The repartition source: stage B's input in group mode, one partition of the job's
//! repartition topic presented as the source topic's partitions.
//!
//! The forwarders (stage A) write each source record to repartition partition
//! `hash(key) % R` with its source partition and offset in headers, and time marks of every
//! source partition to every repartition partition (see [`crate::repartition`]). This source
//! reads one repartition partition `r` and exposes:
//! - the P partitions of the *source topic* as virtual partitions: each row is delivered as a
//!   record of its source partition at its source offset; a mark as `RawBatch::marks`;
//! - the *data partition* (repartition topic, `r`), which never carries rows itself and is
//!   reported in `RawBatch::ended` on the first poll (so it never holds the watermark back).
//!
//! Delivery to the repartition topic is at-least-once: a forwarder that restarts sends rows
//! again. Each virtual partition keeps a **dedupe floor**, the next source offset accepted; a
//! row below it is a duplicate, counted in `RawBatch::duplicates` and dropped.
//!
//! Invariant: `position(i)` is concrete: the dedupe floor of a virtual partition (so the
//! engine checkpoints the floors as ordinary offsets), the next repartition offset to read of
//! the data partition. Resuming from those positions delivers every row exactly once.
//!
//! Boundary: the consumer is assigned the data partition by hand (never `subscribe`), never
//! commits: positions live in the checkpoints (the stage B membership group lives elsewhere).

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::types::RDKafkaRespErr::{RD_KAFKA_RESP_ERR_NO_ERROR, RD_KAFKA_RESP_ERR__NOENT};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::error::{ConnectorError, Result};
use crate::kafka_batch_queue::NativeQueues;
use crate::kafka_options::{format_duration_ms, WarnLimiter, CONSUMER_FORCED};
use crate::kafka_source::{BATCH_MESSAGES_MAX, PARTITION_ID_MAX};
use crate::raw_batch::RawBatch;
use crate::repartition::{self, RepartitionRecord};
use crate::{PartitionInfo, Source, SourceFactory, SourceStatus};

/// Builds the repartition source of one stage B job instance (one repartition partition).
#[derive(Debug, Clone)]
pub struct RepartitionSourceFactory {
    table: String,
    consumer_config: ClientConfig,
    repartition_topic: String,
    partition: i32,
    source_topic: String,
    source_partitions: i32,
    record_bytes_max: usize,
    connect_timeout: Duration,
}

impl RepartitionSourceFactory {
    /// `consumer_config`: the source table's consumer settings (bootstrap servers,
    /// properties.*) without group membership (group.id may be set but the source uses
    /// assign(), never subscribe). Reads partition `partition` of `repartition_topic`, whose
    /// rows come from the `source_partitions` partitions of `source_topic`. Rows larger than
    /// `record_bytes_max` are skipped and counted; Kafka calls at open wait at most
    /// `connect_timeout`. Checks happen in `discover` (no network access here).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        table: &str,
        consumer_config: ClientConfig,
        repartition_topic: &str,
        partition: i32,
        source_topic: &str,
        source_partitions: i32,
        record_bytes_max: usize,
        connect_timeout: Duration,
    ) -> Self {
        RepartitionSourceFactory {
            table: table.to_string(),
            consumer_config,
            repartition_topic: repartition_topic.to_string(),
            partition,
            source_topic: source_topic.to_string(),
            source_partitions,
            record_bytes_max: record_bytes_max.max(1),
            connect_timeout,
        }
    }

    fn servers(&self) -> &str {
        self.consumer_config
            .get("bootstrap.servers")
            .unwrap_or("(no bootstrap.servers)")
    }

    fn kafka_error(&self, what: &str, e: impl std::fmt::Display) -> ConnectorError {
        ConnectorError::Kafka(format!(
            "table '{}', repartition topic '{}' partition {} at {}: {what}: {e}",
            self.table,
            self.repartition_topic,
            self.partition,
            self.servers()
        ))
    }

    /// Checks the numbers and names given to `new` (a caller's mistake is a config error).
    fn check_arguments(&self) -> Result<()> {
        let message = if !(1..=PARTITION_ID_MAX + 1).contains(&self.source_partitions) {
            format!(
                "source topic '{}' has {} partitions, expected 1 to {}",
                self.source_topic,
                self.source_partitions,
                PARTITION_ID_MAX + 1
            )
        } else if !(0..=PARTITION_ID_MAX).contains(&self.partition) {
            format!(
                "repartition partition {} of topic '{}', expected 0 to {PARTITION_ID_MAX}",
                self.partition, self.repartition_topic
            )
        } else if self.repartition_topic == self.source_topic {
            format!(
                "the repartition topic '{}' is the source topic: choose another \
                 'scan.repartition.topic'",
                self.repartition_topic
            )
        } else {
            return Ok(());
        };
        Err(ConnectorError::config(&self.table, message))
    }

    /// The consumer of shard `shard`: the table's settings, a client id naming the partition,
    /// and the settings the source relies on (no commits, no auto-created topics).
    fn open_config(&self, shard: usize) -> ClientConfig {
        let mut config = self.consumer_config.clone();
        if config.get("client.id").is_none() {
            config.set(
                "client.id",
                format!(
                    "spillway-{}-repartition{}-shard{shard}",
                    self.table, self.partition
                ),
            );
        }
        // The batch reads take the consumer queue, which librdkafka has only with a group id;
        // the group is never joined (assign()) nor committed to.
        if config.get("group.id").is_none() {
            config.set("group.id", format!("spillway-{}", self.table));
        }
        for (k, v) in CONSUMER_FORCED {
            config.set(*k, *v);
        }
        config
    }

    /// Maps `partitions` (a permutation of what `discover` returns) to the index of each
    /// source partition and the index of the data partition.
    fn indexes(&self, partitions: &[PartitionInfo]) -> Result<(Vec<u32>, u32)> {
        let mut index_of_source = vec![NO_INDEX; self.source_partitions as usize];
        let mut data_index = None;
        for (i, p) in partitions.iter().enumerate() {
            let i = i as u32;
            let known = if p.topic == self.repartition_topic && p.partition == self.partition {
                data_index.replace(i).is_none()
            } else if p.topic == self.source_topic {
                let slot = usize::try_from(p.partition)
                    .ok()
                    .and_then(|s| index_of_source.get_mut(s));
                match slot {
                    Some(slot) if *slot == NO_INDEX => {
                        *slot = i;
                        true
                    }
                    _ => false,
                }
            } else {
                false
            };
            if !known {
                return Err(self.bad_partitions(partitions));
            }
        }
        match data_index {
            Some(d) if partitions.len() == self.source_partitions as usize + 1 => {
                Ok((index_of_source, d))
            }
            _ => Err(self.bad_partitions(partitions)),
        }
    }

    fn bad_partitions(&self, partitions: &[PartitionInfo]) -> ConnectorError {
        ConnectorError::Internal(format!(
            "repartition source of table '{}' ({}) given partitions {partitions:?}",
            self.table,
            self.describe()
        ))
    }
}

impl SourceFactory for RepartitionSourceFactory {
    fn discover(&self) -> Result<Vec<PartitionInfo>> {
        self.check_arguments()?;
        let mut config = self.consumer_config.clone();
        config.set("allow.auto.create.topics", "false");
        let consumer: BaseConsumer = config
            .create()
            .map_err(|e| self.kafka_error("cannot create a Kafka client", e))?;
        let metadata = consumer
            .fetch_metadata(Some(&self.repartition_topic), self.connect_timeout)
            .map_err(|e| {
                let what = format!(
                    "cannot reach Kafka within {}",
                    format_duration_ms(self.connect_timeout.as_millis() as u64)
                );
                self.kafka_error(&what, e)
            })?;
        let found = metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.repartition_topic);
        let count = match found {
            Some(t) if t.error().is_none() => t.partitions().len(),
            Some(t) => match t.error().map(RDKafkaErrorCode::from) {
                Some(RDKafkaErrorCode::UnknownTopicOrPartition) | None => 0,
                Some(code) => return Err(self.kafka_error("cannot read the topic", code)),
            },
            None => 0,
        };
        let has_partition =
            found.is_some_and(|t| t.partitions().iter().any(|p| p.id() == self.partition));
        if count == 0 {
            return Err(ConnectorError::Kafka(format!(
                "table '{}': repartition topic '{}' does not exist at {} (group mode \
                 creates it when the job starts; check 'scan.repartition.topic')",
                self.table,
                self.repartition_topic,
                self.servers()
            )));
        }
        if !has_partition {
            return Err(ConnectorError::Kafka(format!(
                "table '{}': repartition topic '{}' at {} has {count} partitions, no \
                 partition {}",
                self.table,
                self.repartition_topic,
                self.servers(),
                self.partition
            )));
        }
        let mut partitions: Vec<PartitionInfo> = (0..self.source_partitions)
            .map(|partition| PartitionInfo {
                topic: self.source_topic.clone(),
                partition,
            })
            .collect();
        partitions.push(PartitionInfo {
            topic: self.repartition_topic.clone(),
            partition: self.partition,
        });
        Ok(partitions)
    }

    fn open(
        &self,
        shard: usize,
        partitions: Vec<PartitionInfo>,
        resume: Option<Vec<i64>>,
    ) -> Result<Box<dyn Source>> {
        self.check_arguments()?;
        let (index_of_source, data_index) = self.indexes(&partitions)?;
        if let Some(r) = &resume {
            if r.len() != partitions.len() || r.iter().any(|&o| o < 0) {
                return Err(ConnectorError::Internal(format!(
                    "repartition source of table '{}': resume offsets {r:?} for partitions \
                     {partitions:?}",
                    self.table
                )));
            }
        }
        let consumer: BaseConsumer = self
            .open_config(shard)
            .create()
            .map_err(|e| self.kafka_error("cannot create the consumer", e))?;
        // Before anything is fetched or logged (declared after `consumer`: dropped first).
        let queues = NativeQueues::new(&consumer)
            .map_err(|e| self.kafka_error("cannot set up the consumer queues", e))?;
        let positions = match resume {
            Some(r) => r,
            None => {
                let (low, _) = consumer
                    .fetch_watermarks(
                        &self.repartition_topic,
                        self.partition,
                        self.connect_timeout,
                    )
                    .map_err(|e| self.kafka_error("cannot read the partition's offsets", e))?;
                let mut p = vec![0; partitions.len()];
                p[data_index as usize] = low.max(0);
                p
            }
        };
        let mut tpl = TopicPartitionList::with_capacity(1);
        tpl.add_partition_offset(
            &self.repartition_topic,
            self.partition,
            Offset::Offset(positions[data_index as usize]),
        )
        .map_err(|e| self.kafka_error("cannot build the assignment", e))?;
        consumer
            .assign(&tpl)
            .map_err(|e| self.kafka_error("cannot assign the partition", e))?;
        Ok(Box::new(RepartitionSource {
            context: format!(
                "repartition source of table '{}' ({})",
                self.table,
                self.describe()
            ),
            queues,
            consumer,
            topic_c: std::ffi::CString::new(self.repartition_topic.as_str()).ok(),
            state: DedupeState {
                repartition_topic: self.repartition_topic.clone(),
                partition: self.partition,
                source_topic: self.source_topic.clone(),
                partitions,
                index_of_source,
                data_index,
                positions,
                record_bytes_max: self.record_bytes_max,
            },
            ended_reported: false,
            rewind: None,
            seek_timeout: self.connect_timeout,
            stalled_since: Instant::now(),
            warn_limiter: WarnLimiter::default(),
            log_limiter: WarnLimiter::default(),
        }))
    }

    fn describe(&self) -> String {
        format!(
            "repartition topic '{}' partition {} of kafka topic '{}' ({} partitions) at {}",
            self.repartition_topic,
            self.partition,
            self.source_topic,
            self.source_partitions,
            self.servers()
        )
    }

    fn offset_committer(&self) -> Result<Option<Box<dyn crate::OffsetCommitter>>> {
        Ok(None)
    }

    fn consumer_group(&self) -> Option<crate::KafkaGroup> {
        None
    }
}

/// Marks source partitions this source does not know in its lookup table.
const NO_INDEX: u32 = u32::MAX;

/// The source of one stage B job instance.
pub struct RepartitionSource {
    /// "repartition source of table 't' (...)", for errors and warnings.
    context: String,
    /// Declared before `consumer`: its queue handles are released before the client.
    queues: NativeQueues,
    consumer: BaseConsumer,
    /// The repartition topic's name for librdkafka's C calls (made once: the idle path asks
    /// for the high watermark on every poll).
    topic_c: Option<std::ffi::CString>,
    state: DedupeState,
    /// Whether the data partition was reported in `RawBatch::ended` (by the first poll).
    ended_reported: bool,
    /// Set while re-reading records a fetch skipped (see [`RepartitionSource::rewind`]).
    rewind: Option<Rewind>,
    /// How long a seek may wait for the fetcher to move.
    seek_timeout: Duration,
    /// Since when the data partition has delivered nothing while records were due (reset
    /// by every record taken and every seek).
    stalled_since: Instant,
    warn_limiter: WarnLimiter,
    log_limiter: WarnLimiter,
}

/// What [`DedupeState::take`] did with a record of the data partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The next record: taken.
    Taken,
    /// Before the position (read again after a rewind): skipped.
    Behind,
    /// After the position: records `expected..offset` were not delivered.
    Gap { expected: i64 },
}

/// A rewind in progress: the data partition's fetch skipped records from `expected` on and
/// the consumer was sent back to `seek_to` to read them.
#[derive(Debug, Clone, Copy)]
struct Rewind {
    expected: i64,
    seek_to: i64,
}

/// How far before the missing offset the first rewind seeks (it doubles with every rewind
/// that still lands after the start of the batch holding the missing offset).
const REWIND_FIRST: i64 = 64;
/// The farthest a rewind seeks back: librdkafka's largest `batch.num.messages`.
const REWIND_BACK_MAX: i64 = 1_000_000;
/// How long the data partition may deliver nothing while its high watermark is past the
/// position before the source seeks back (see [`RepartitionSource::rewind`]).
const STALL_MS: u64 = 500;

/// Why a rewind started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    /// A record after the position came first.
    Gap,
    /// Nothing came, although the high watermark is past the position.
    Stall,
}

/// The positions and dedupe floors: the bookkeeping of `poll`, apart from the Kafka client
/// (and tested apart from it).
struct DedupeState {
    repartition_topic: String,
    partition: i32,
    source_topic: String,
    partitions: Vec<PartitionInfo>,
    /// Source partition number -> index into `partitions`.
    index_of_source: Vec<u32>,
    /// Index of the data partition (the repartition topic's) in `partitions`.
    data_index: u32,
    /// Per partition index: the dedupe floor (next source offset accepted) of a source
    /// partition; the next repartition offset to read of the data partition.
    positions: Vec<i64>,
    record_bytes_max: usize,
}

impl DedupeState {
    /// Takes the record at `offset` of the data partition if it is the next one: appends a
    /// new row, counts a duplicate (or an empty or oversized row), appends a mark. A record
    /// before the position was read already ([`Step::Behind`]); one after it means the
    /// broker skipped records ([`Step::Gap`]); neither is taken. A record that is not a
    /// spillway repartition record of this job is an error.
    fn take(
        &mut self,
        offset: i64,
        record: std::result::Result<RepartitionRecord<'_>, String>,
        out: &mut RawBatch,
    ) -> Result<Step> {
        let data = self.data_index as usize;
        let expected = self.positions[data];
        if offset < expected {
            return Ok(Step::Behind);
        }
        if offset > expected {
            return Ok(Step::Gap { expected });
        }
        self.positions[data] = offset + 1;
        match record.map_err(|why| self.foreign(offset, &why))? {
            RepartitionRecord::Row {
                source_partition,
                source_offset,
                payload,
            } => {
                let index = self.index_of(source_partition, offset)?;
                let floor = &mut self.positions[index as usize];
                if source_offset < *floor {
                    out.duplicates += 1;
                    return Ok(Step::Taken);
                }
                *floor = source_offset + 1;
                if payload.is_empty() {
                    out.empty += 1;
                } else if payload.len() > self.record_bytes_max {
                    out.oversized += 1;
                } else {
                    out.push(index, source_offset, payload);
                }
            }
            RepartitionRecord::Mark {
                source_partition,
                ts_max_ms,
            } => {
                let index = self.index_of(source_partition, offset)?;
                out.marks.push((index, ts_max_ms));
            }
        }
        Ok(Step::Taken)
    }

    /// The partition index of source partition `source_partition` (read at `offset`).
    fn index_of(&self, source_partition: i32, offset: i64) -> Result<u32> {
        let index = usize::try_from(source_partition)
            .ok()
            .and_then(|p| self.index_of_source.get(p));
        match index {
            Some(&i) => Ok(i),
            None => Err(self.foreign(
                offset,
                &format!(
                    "it comes from partition {source_partition} of source topic '{}', which \
                     this job reads as {} partitions: the source topic grew (restart the \
                     job in group mode with a new repartition topic) or the record is not \
                     this job's",
                    self.source_topic,
                    self.index_of_source.len()
                ),
            )),
        }
    }

    fn foreign(&self, offset: i64, why: &str) -> ConnectorError {
        ConnectorError::Kafka(format!(
            "record at offset {offset} of partition {} of topic '{}': {why}; the topic is \
             not a spillway repartition topic of this job (source topic '{}')",
            self.partition, self.repartition_topic, self.source_topic
        ))
    }
}

/// Handles an error librdkafka returned in place of a record: fatal and permanent ones are
/// returned, the others (librdkafka retries them) logged, rate-limited.
fn consumer_error(
    context: &str,
    consumer: &BaseConsumer,
    warn_limiter: &mut WarnLimiter,
    code: RDKafkaErrorCode,
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
    // Retrying cannot fix these (the broker's UnknownTopicOrPartition may be transient).
    let permanent = matches!(
        code,
        RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::UnknownPartition
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::AutoOffsetReset
    );
    if permanent {
        return Err(ConnectorError::Kafka(format!(
            "{context}: {code}: {detail}"
        )));
    }
    if let Some(suppressed) = warn_limiter.allow() {
        tracing::warn!(
            "{context}: {code}: {detail} (librdkafka retries; {suppressed} similar warnings \
             suppressed)"
        );
    }
    Ok(())
}

impl RepartitionSource {
    /// Records from `expected` on were not delivered: offset `got` came first
    /// ([`Skip::Gap`]), or the fetches return nothing although the partition holds records up
    /// to `got` ([`Skip::Stall`]).
    ///
    /// A broker must answer a fetch at offset `o` with the batch *holding* `o`; one that
    /// answers with the first batch starting at or after `o` (tansu 0.6 does) skips the rest
    /// of a batch whenever a read resumes in its middle, which a restored checkpoint does,
    /// and returns nothing at all when that batch is the last. The repartition topic has no
    /// gaps (no transactions, no compaction), so the consumer seeks back, twice as far each
    /// time, until the batch holding `expected` is delivered; records before `expected` are
    /// then skipped.
    ///
    /// Bounds: a seek goes back at most [`REWIND_BACK_MAX`] records (more than a producer
    /// batch can hold). A gap that remains there (or at offset 0) is an error: the records
    /// are gone (retention) or unreadable. A stall there is waited out (a slow broker).
    fn rewind(&mut self, expected: i64, got: i64, skip: Skip) -> Result<()> {
        let back = match self.rewind {
            Some(r) if r.expected == expected => {
                let back = expected - r.seek_to;
                if back >= REWIND_BACK_MAX || r.seek_to == 0 {
                    return match skip {
                        Skip::Gap => Err(ConnectorError::Kafka(format!(
                            "{}: offsets {expected} to {} cannot be read: a fetch from offset \
                             {} skips them too (deleted by retention, or the broker answers \
                             fetches with later batches); results would be missing",
                            self.context,
                            got - 1,
                            r.seek_to
                        ))),
                        Skip::Stall => {
                            self.stalled_since = Instant::now();
                            Ok(())
                        }
                    };
                }
                (2 * back).min(REWIND_BACK_MAX)
            }
            _ => {
                if let Some(suppressed) = self.warn_limiter.allow() {
                    let what = match skip {
                        Skip::Gap => format!("delivered offset {got} first"),
                        Skip::Stall => format!(
                            "delivered nothing for {} ms although the partition holds \
                             records up to offset {}",
                            STALL_MS,
                            got - 1
                        ),
                    };
                    tracing::warn!(
                        "{}: a fetch from offset {expected} {what}: the broker skipped the \
                         batch holding offset {expected} (a fetch must return it); seeking \
                         back to read it ({suppressed} similar warnings suppressed)",
                        self.context
                    );
                }
                REWIND_FIRST
            }
        };
        let seek_to = (expected - back).max(0);
        self.consumer
            .seek(
                &self.state.repartition_topic,
                self.state.partition,
                Offset::Offset(seek_to),
                self.seek_timeout,
            )
            .map_err(|e| {
                ConnectorError::Kafka(format!(
                    "{}: cannot seek back to offset {seek_to} to read offsets {expected}..: \
                     {e}",
                    self.context
                ))
            })?;
        self.rewind = Some(Rewind { expected, seek_to });
        self.stalled_since = Instant::now();
        Ok(())
    }

    /// Called when a poll took nothing: a partition whose fetches return nothing for
    /// [`STALL_MS`] although its high watermark is past the position is rewound.
    fn check_stall(&mut self) -> Result<()> {
        let data = self.state.data_index;
        let position = self.state.positions[data as usize];
        match self.high_watermark(data) {
            Some(high) if high > position => {
                if self.stalled_since.elapsed() >= Duration::from_millis(STALL_MS) {
                    self.rewind(position, high, Skip::Stall)?;
                }
            }
            _ => self.stalled_since = Instant::now(),
        }
        Ok(())
    }
}

impl Source for RepartitionSource {
    fn partitions(&self) -> &[PartitionInfo] {
        &self.state.partitions
    }

    /// Reads up to `records_max` repartition records (rows, duplicates and marks all count)
    /// and about `bytes_max` bytes of rows. Returns `Data` when it took any record, `Idle`
    /// otherwise; never `Finished` (the repartition topic is unbounded).
    fn poll(
        &mut self,
        out: &mut RawBatch,
        records_max: usize,
        bytes_max: usize,
    ) -> Result<SourceStatus> {
        if !self.ended_reported {
            out.ended.push(self.state.data_index);
            self.ended_reported = true;
        }
        let records_start = out.len();
        let bytes_start = out.bytes();
        let mut handled = 0usize;
        let mut taken_records = 0usize;
        let mut gap = None;
        while handled < records_max && out.bytes() - bytes_start < bytes_max {
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
                if message.err != RD_KAFKA_RESP_ERR_NO_ERROR {
                    consumer_error(
                        &self.context,
                        &self.consumer,
                        &mut self.warn_limiter,
                        message.err.into(),
                        &taken.error_text(message),
                    )?;
                    continue;
                }
                if message.partition != self.state.partition {
                    continue; // only the assigned partition is fetched
                }
                // SAFETY: librdkafka guarantees `payload` points to `len` bytes (or is null)
                // while the message lives, which `taken` ensures until after this loop.
                let payload = (!message.payload.is_null()).then(|| unsafe {
                    std::slice::from_raw_parts(message.payload as *const u8, message.len)
                });
                let mut headers = std::ptr::null_mut();
                // SAFETY: `message` is live; librdkafka sets `headers` to headers owned by the
                // message (or leaves it null), used only before the message is destroyed.
                let err =
                    unsafe { rdkafka::bindings::rd_kafka_message_headers(message, &mut headers) };
                let record = if err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR__NOENT
                {
                    // SAFETY: `headers` is null or owned by the live message (see above).
                    unsafe { repartition::decode_native(headers, payload) }
                } else {
                    Err(format!(
                        "its headers cannot be read: {}",
                        RDKafkaErrorCode::from(err)
                    ))
                };
                match self.state.take(message.offset, record, out)? {
                    Step::Taken => {
                        taken_records += 1;
                        if let Some(r) = self.rewind.take() {
                            tracing::info!(
                                "{}: offsets {}.. read again from offset {}",
                                self.context,
                                r.expected,
                                r.seek_to
                            );
                        }
                    }
                    Step::Behind => {}
                    Step::Gap { expected } => {
                        // The rest of `taken` follows the gap: dropped, fetched again.
                        gap = Some((expected, message.offset));
                        break;
                    }
                }
            }
            drop(taken);
            if let Some((expected, got)) = gap {
                self.rewind(expected, got, Skip::Gap)?;
                break;
            }
            if drained {
                break;
            }
        }
        self.queues.serve_logs(&self.context, &mut self.log_limiter);
        if taken_records > 0 {
            self.stalled_since = Instant::now();
            return Ok(SourceStatus::Data);
        }
        if gap.is_none() {
            self.check_stall()?;
        }
        if let Some((code, reason)) = self.consumer.client().fatal_error() {
            return Err(ConnectorError::Kafka(format!(
                "{}: fatal error: {code}: {reason}",
                self.context
            )));
        }
        Ok(SourceStatus::Idle)
    }

    fn position(&self, index: u32) -> i64 {
        self.state.positions[index as usize]
    }

    fn high_watermark(&self, index: u32) -> Option<i64> {
        if index != self.state.data_index {
            return None;
        }
        let topic = self.topic_c.as_ref()?;
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: the client handle lives as long as `self.consumer`; the topic is a valid
        // NUL-terminated string for the call; librdkafka writes only the two out-parameters.
        // This reads the offsets cached from the last fetch response: no network round trip.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(
                self.consumer.client().native_ptr(),
                topic.as_ptr(),
                self.state.partition,
                &mut low,
                &mut high,
            )
        };
        (err == RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
    }
}

#[cfg(test)]
#[path = "repartition_source_tests.rs"]
mod tests;
