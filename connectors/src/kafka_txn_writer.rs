//! The shard's end of the exactly-once Kafka sink (see [`crate::kafka_txn`]): records go
//! into the shard's open transaction and into the epoch's redo buffer; at the cut the shard
//! hands the transaction to the committer.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};

use crate::error::{ConnectorError, Result};
use crate::kafka_options::format_duration_ms;
use crate::kafka_txn::{lock, ShardTxn, TxnProducer, HEADER_ATTEMPT, HEADER_EPOCH, HEADER_SHARD};
use crate::kafka_txn_log::{self as files, RedoHeader};
use crate::EpochPrepared;

/// Longest a send waits in total for room in a full producer queue.
pub(crate) const QUEUE_FULL_WAIT_MS_MAX: u64 = 10_000;
/// One wait for room in the producer queue or for acknowledgements.
const POLL_WAIT: Duration = Duration::from_millis(1);
/// Batch write times kept per epoch for the commit-delay histogram (later batches of a long
/// epoch are not timed).
const EPOCH_BATCH_TIMES_MAX: usize = 100_000;

/// The record headers of `epoch` of `shard` in run `attempt`.
pub(crate) fn record_headers(epoch: u64, shard: usize, attempt: u64) -> OwnedHeaders {
    let (e, s, a) = (epoch.to_string(), shard.to_string(), attempt.to_string());
    OwnedHeaders::new_with_capacity(3)
        .insert(Header {
            key: HEADER_EPOCH,
            value: Some(e.as_bytes()),
        })
        .insert(Header {
            key: HEADER_SHARD,
            value: Some(s.as_bytes()),
        })
        .insert(Header {
            key: HEADER_ATTEMPT,
            value: Some(a.as_bytes()),
        })
}

/// Enqueues one record, waiting (bounded) while the producer queue is full.
pub(crate) fn send_frame(
    producer: &TxnProducer,
    topic: &str,
    frame: &files::Frame<'_>,
    headers: &OwnedHeaders,
) -> std::result::Result<(), String> {
    let mut record = BaseRecord::<[u8], [u8]>::to(topic)
        .payload(frame.value)
        .headers(headers.clone());
    if let Some(k) = frame.key {
        record = record.key(k);
    }
    if let Some(ts) = frame.timestamp_ms {
        record = record.timestamp(ts);
    }
    enqueue(producer, record).map_err(|e| match e {
        Enqueue::QueueFull => format!(
            "the producer queue stayed full for {} (the brokers do not keep up, or are \
             unreachable)",
            format_duration_ms(QUEUE_FULL_WAIT_MS_MAX)
        ),
        Enqueue::Failed(e) => format!("cannot send a record: {e}"),
    })
}

/// Why [`enqueue`] did not enqueue a record.
pub(crate) enum Enqueue {
    /// The producer queue stayed full for [`QUEUE_FULL_WAIT_MS_MAX`].
    QueueFull,
    /// librdkafka refused the record.
    Failed(KafkaError),
}

/// Enqueues `record`, waiting (at most [`QUEUE_FULL_WAIT_MS_MAX`]) while the producer queue is
/// full and serving delivery reports meanwhile.
pub(crate) fn enqueue(
    producer: &TxnProducer,
    mut record: BaseRecord<'_, [u8], [u8]>,
) -> std::result::Result<(), Enqueue> {
    let mut waited_since: Option<Instant> = None;
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                let since = *waited_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(QUEUE_FULL_WAIT_MS_MAX) {
                    return Err(Enqueue::QueueFull);
                }
                producer.poll(POLL_WAIT);
            }
            Err((e, _)) => return Err(Enqueue::Failed(e)),
        }
    }
}

/// The shard's end of the exactly-once sink: records go into the open transaction and into
/// the epoch's redo buffer.
pub struct TxnWriter {
    pub(crate) context: String,
    pub(crate) handle: Arc<ShardTxn>,
    pub(crate) topic: String,
    pub(crate) dir: PathBuf,
    pub(crate) attempt: u64,
    /// The epoch being written.
    pub(crate) epoch: u64,
    pub(crate) headers: OwnedHeaders,
    /// The epoch's records, as frames.
    pub(crate) frames: Vec<u8>,
    pub(crate) records: u64,
    /// Bytes of `frames` already produced.
    pub(crate) produced: usize,
    /// Whether this shard's transaction is open (the shard owns the producer).
    pub(crate) open: bool,
    pub(crate) clock: Instant,
    /// Records written per batch of this epoch and when (ns since `clock`).
    pub(crate) batches: Vec<(u64, u64)>,
    /// Records of this epoch counted in `batches`.
    pub(crate) records_timed: u64,
    pub(crate) buffer_bytes_max: usize,
    pub(crate) flush_timeout_ms: u64,
}

impl TxnWriter {
    /// Adds one record of the current epoch.
    pub fn write(&mut self, key: Option<&[u8]>, value: &[u8], ts: Option<i64>) -> Result<()> {
        files::push_frame(&mut self.frames, key, value, ts);
        self.records += 1;
        if self.frames.len() > self.buffer_bytes_max {
            return Err(ConnectorError::Limit(format!(
                "{}: the results of epoch {} reached {} bytes, the limit \
                 'sink.transaction.buffer-bytes' = {}; checkpoint more often or raise the limit",
                self.context,
                self.epoch,
                self.frames.len(),
                self.buffer_bytes_max
            )));
        }
        Ok(())
    }

    /// Produces what was written since the last call, if the transaction can be open (not
    /// while the previous epoch's commit is under way). Call after each batch.
    pub fn produce(&mut self) -> Result<()> {
        if self.records > self.records_timed && self.batches.len() < EPOCH_BATCH_TIMES_MAX {
            let now = self.clock.elapsed().as_nanos() as u64;
            self.batches.push((self.records - self.records_timed, now));
            self.records_timed = self.records;
        }
        if !self.open && !self.try_begin()? {
            return Ok(());
        }
        let mut pos = self.produced;
        while let Some(frame) = files::next_frame(&self.frames, &mut pos)? {
            send_frame(&self.handle.producer, &self.topic, &frame, &self.headers)
                .map_err(|e| ConnectorError::Kafka(format!("{}: {e}", self.context)))?;
            self.produced = pos;
        }
        self.handle.producer.poll(Duration::ZERO);
        self.check_deliveries()
    }

    fn try_begin(&mut self) -> Result<bool> {
        let h = &self.handle;
        if h.committed.load(Ordering::Acquire) < h.prepared.load(Ordering::Acquire) {
            return Ok(false);
        }
        h.producer.begin_transaction().map_err(|e| {
            ConnectorError::Kafka(format!("{}: cannot begin a transaction: {e}", self.context))
        })?;
        self.open = true;
        Ok(true)
    }

    fn check_deliveries(&self) -> Result<()> {
        check_failures(&self.handle, &self.context)
    }

    /// Ends epoch `epoch`: produces the rest, hands the transaction to the committer; the
    /// returned wait (on the checkpoint writer's thread) waits for the acknowledgements and
    /// writes the redo file.
    pub fn prepare(&mut self, epoch: u64) -> Result<EpochPrepared> {
        if epoch != self.epoch {
            return Err(ConnectorError::Internal(format!(
                "{}: epoch {epoch} prepared while writing epoch {}",
                self.context, self.epoch
            )));
        }
        self.produce()?;
        if !self.open {
            return Err(ConnectorError::Internal(format!(
                "{}: epoch {epoch} prepared before epoch {} committed",
                self.context,
                self.handle.prepared.load(Ordering::Acquire)
            )));
        }
        self.open = false;
        let header = RedoHeader {
            epoch,
            shard: self.handle.shard,
            attempt: self.attempt,
            transactional_id: self.handle.transactional_id.clone(),
            partitions: self
                .handle
                .partitions
                .iter()
                .map(|p| (p.topic.clone(), p.partition))
                .collect(),
        };
        let frames = std::mem::take(&mut self.frames);
        let records = std::mem::replace(&mut self.records, 0);
        self.produced = 0;
        self.epoch = epoch + 1;
        self.headers = record_headers(self.epoch, self.handle.shard, self.attempt);
        self.handle
            .prepared_records
            .store(records, Ordering::Release);
        *lock(&self.handle.prepared_batches) = std::mem::take(&mut self.batches);
        self.records_timed = 0;
        self.handle.prepared.store(epoch, Ordering::Release);
        let handle = self.handle.clone();
        let dir = self.dir.clone();
        let context = self.context.clone();
        let flush_timeout = Duration::from_millis(self.flush_timeout_ms);
        Ok(EpochPrepared::later(move || {
            let started = Instant::now();
            while handle.producer.in_flight_count() > 0 {
                if started.elapsed() > flush_timeout {
                    return Err(ConnectorError::Kafka(format!(
                        "{context}: {} records of epoch {epoch} not acknowledged within {} \
                         (sink.flush.timeout)",
                        handle.producer.in_flight_count(),
                        format_duration_ms(flush_timeout.as_millis() as u64)
                    )));
                }
                handle.producer.poll(POLL_WAIT);
            }
            check_failures(&handle, &context)?;
            files::write_redo(&dir, &header, records, &frames)?;
            Ok(())
        }))
    }
}

fn check_failures(handle: &ShardTxn, context: &str) -> Result<()> {
    let counter = handle.producer.context();
    let failures = counter.failures.load(Ordering::Relaxed);
    if failures == 0 {
        return Ok(());
    }
    Err(ConnectorError::Kafka(format!(
        "{context}: {failures} records were not delivered (first: {}); the transaction will \
         be aborted and the epoch produced again after the restart",
        counter.first_failure_text()
    )))
}

impl Drop for TxnWriter {
    fn drop(&mut self) {
        if self.open {
            // Readers with read_committed would wait for it until the transaction timeout.
            if let Err(e) = self
                .handle
                .producer
                .abort_transaction(Duration::from_secs(1))
            {
                tracing::warn!("{}: cannot abort the open transaction: {e}", self.context);
            }
        }
    }
}
