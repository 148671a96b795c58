//! The forwarder's Kafka side: the consumer context (rebalance callbacks, the owned
//! partitions' offsets and clocks), the producer to the repartition topic, commits and marks.
//!
//! Invariant: a revoked partition's offset is committed (synchronously) only up to records
//! whose rows were acknowledged, after its last mark was acknowledged.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use spillway_connectors::repartition::{mark_headers, REPARTITION_MARK_INTERVAL_MS};
use spillway_connectors::ConnectorError;

use super::{ForwarderStats, DELIVERY_WAIT_MS_MAX};
use crate::error::{EngineError, Result};

/// What the forwarder knows of one owned source partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct PartitionClock {
    /// Next offset whose predecessors are all acknowledged (what a commit stores).
    pub(super) next_offset: Option<i64>,
    /// The offset last committed synchronously.
    pub(super) committed: Option<i64>,
    /// Largest event time decoded (rows sent or filtered out).
    pub(super) ts_max: Option<i64>,
    /// Event time of the last mark sent, and when.
    pub(super) ts_marked: Option<i64>,
    pub(super) marked_at: Option<Instant>,
}

impl PartitionClock {
    pub(super) fn observe(&mut self, ts: i64) {
        self.ts_max = Some(self.ts_max.map_or(ts, |m| m.max(ts)));
    }

    /// The time of the mark to send now, if any: the event time advanced since the last mark
    /// and (unless `force`) `interval` passed since it.
    pub(super) fn mark_due(&self, now: Instant, interval: Duration, force: bool) -> Option<i64> {
        let ts = self.ts_max?;
        if self.ts_marked.is_some_and(|m| m >= ts) {
            return None;
        }
        let recent = self
            .marked_at
            .is_some_and(|at| now.saturating_duration_since(at) < interval);
        (force || !recent).then_some(ts)
    }
}

/// The owned partitions, shared by the forwarder loop and its rebalance callbacks.
#[derive(Default)]
pub(super) struct Owned {
    pub(super) clocks: BTreeMap<i32, PartitionClock>,
    /// Partitions revoked since the loop last looked (their records in the batch being taken
    /// must be dropped: their new owner reads them from the committed offset).
    pub(super) revoked: Vec<i32>,
    /// The first failure inside a callback, returned by the loop.
    pub(super) error: Option<EngineError>,
}

/// Delivery reports of the producer to the repartition topic.
pub(super) struct DeliveryReports {
    pub(super) topic: String,
    pub(super) failures: AtomicU64,
    pub(super) first_failure: Mutex<Option<String>>,
}

impl ClientContext for DeliveryReports {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_librdkafka(&self.topic, level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!("forwarder producer to '{}': {error}: {reason}", self.topic);
    }
}

impl ProducerContext for DeliveryReports {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, message)) = result {
            self.failures.fetch_add(1, Ordering::Relaxed);
            let mut first = lock(&self.first_failure);
            first.get_or_insert_with(|| format!("partition {}: {error}", message.partition()));
        }
    }
}

/// The consumer's context: the producer, the owned partitions and the rebalance handling.
pub(super) struct ForwarderContext {
    pub(super) producer: BaseProducer<DeliveryReports>,
    pub(super) source_topic: String,
    pub(super) repartition_topic: String,
    pub(super) repartition_partitions: i32,
    pub(super) group_id: String,
    pub(super) owned: Mutex<Owned>,
    /// Set by a revoke (a cheap check after each poll).
    pub(super) revoked_pending: AtomicBool,
    /// Set once the forwarder failed: callbacks then only commit what was acknowledged.
    pub(super) failed: AtomicBool,
    pub(super) stats: Arc<ForwarderStats>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the plain data inside inconsistent in a way
    // that matters more than the panic itself.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn log_librdkafka(topic: &str, level: RDKafkaLogLevel, facility: &str, message: &str) {
    // Expected, and reported elsewhere: the forwarder sets `enable.gapless.guarantee` on
    // purpose (see `Forwarder::start`), so librdkafka's warning that the property is
    // experimental says nothing new; a failed offset commit (refused during every
    // rebalance) reaches `commit_callback`, and the next commit covers it.
    let expected = facility == "COMMITFAIL"
        || (facility == "CONFWARN" && message.contains("enable.gapless.guarantee"));
    if expected {
        tracing::debug!("forwarder ('{topic}'): librdkafka {facility}: {message}");
        return;
    }
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error
        | RDKafkaLogLevel::Warning => {
            tracing::warn!("forwarder ('{topic}'): librdkafka {facility}: {message}")
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!("forwarder ('{topic}'): librdkafka {facility}: {message}")
        }
        RDKafkaLogLevel::Debug => {
            tracing::debug!("forwarder ('{topic}'): librdkafka {facility}: {message}")
        }
    }
}

pub(super) fn kafka_error(message: String) -> EngineError {
    EngineError::Connector(ConnectorError::Kafka(message))
}

impl ClientContext for ForwarderContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_librdkafka(&self.source_topic, level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(
            "forwarder of topic '{}' (group '{}'): {error}: {reason}",
            self.source_topic,
            self.group_id
        );
    }
}

impl ConsumerContext for ForwarderContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                self.stats.rebalances.fetch_add(1, Ordering::Relaxed);
                let partitions = self.source_partitions(tpl);
                if let Err(e) = self.revoke(consumer, &partitions) {
                    self.fail(e);
                }
            }
            Rebalance::Error(e) => tracing::warn!(
                "forwarder of topic '{}' (group '{}'): rebalance error: {e}",
                self.source_topic,
                self.group_id
            ),
            Rebalance::Assign(_) => {}
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.stats.rebalances.fetch_add(1, Ordering::Relaxed);
            let partitions = self.source_partitions(tpl);
            let mut owned = lock(&self.owned);
            for p in &partitions {
                owned.clocks.entry(*p).or_default();
            }
            let count = owned.clocks.len() as u64;
            drop(owned);
            self.stats.partitions_owned.store(count, Ordering::Relaxed);
            tracing::debug!(
                "forwarder of topic '{}' (group '{}'): assigned {partitions:?}",
                self.source_topic,
                self.group_id
            );
        }
    }

    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _: &TopicPartitionList) {
        if let Err(e) = result {
            // The next commit covers the same partitions again; a lower committed offset only
            // means rows sent twice, which stage B drops.
            tracing::debug!(
                "forwarder of topic '{}': an offset commit to group '{}' failed: {e}",
                self.source_topic,
                self.group_id
            );
        }
    }
}

impl ForwarderContext {
    pub(super) fn source_partitions(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements()
            .iter()
            .filter(|e| e.topic() == self.source_topic)
            .map(|e| e.partition())
            .collect()
    }

    pub(super) fn fail(&self, e: EngineError) {
        self.failed.store(true, Ordering::Release);
        lock(&self.owned).error.get_or_insert(e);
    }

    pub(super) fn take_error(&self) -> Result<()> {
        match lock(&self.owned).error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Gives up `partitions`: their last marks are sent and acknowledged, their offsets
    /// committed synchronously, their clocks forgotten.
    pub(super) fn revoke(&self, consumer: &BaseConsumer<Self>, partitions: &[i32]) -> Result<()> {
        // The offsets below are acknowledged whatever happens to the marks: they are
        // committed even when the marks fail (the failure is returned after).
        let mut marks = Ok(());
        if !self.failed.load(Ordering::Acquire) && !consumer.assignment_lost() {
            marks = match self.send_due_marks(Instant::now(), true, Some(partitions)) {
                Ok(0) => Ok(()),
                Ok(_) => self.wait_for_acks(),
                Err(e) => Err(e),
            };
        }
        let mut owned = lock(&self.owned);
        let mut offsets = Vec::new();
        for p in partitions {
            if let Some(clock) = owned.clocks.remove(p) {
                match clock.next_offset {
                    Some(next) if clock.committed != Some(next) => offsets.push((*p, next)),
                    _ => {}
                }
            }
            owned.revoked.push(*p);
        }
        let count = owned.clocks.len() as u64;
        drop(owned);
        self.revoked_pending.store(true, Ordering::Release);
        self.stats.partitions_owned.store(count, Ordering::Relaxed);
        tracing::debug!(
            "forwarder of topic '{}' (group '{}'): revoked {partitions:?}, committing {offsets:?}",
            self.source_topic,
            self.group_id
        );
        if consumer.assignment_lost() {
            // The group moved on without us: a commit would be refused. The new owners read
            // from the last committed offsets (rows sent twice are dropped by stage B).
            return marks;
        }
        if let Err(e) = self.commit(consumer, &offsets, CommitMode::Sync) {
            tracing::warn!("{e} (the new owners may forward some rows again)");
        }
        marks
    }

    /// Commits `(partition, next offset)` pairs of the source topic to group G.
    pub(super) fn commit(
        &self,
        consumer: &BaseConsumer<Self>,
        offsets: &[(i32, i64)],
        mode: CommitMode,
    ) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::with_capacity(offsets.len());
        for &(p, next) in offsets {
            tpl.add_partition_offset(&self.source_topic, p, Offset::Offset(next))
                .map_err(|e| kafka_error(format!("commit offset {next}: {e}")))?;
        }
        consumer.commit(&tpl, mode).map_err(|e| {
            kafka_error(format!(
                "cannot commit offsets {offsets:?} of topic '{}' to group '{}': {e}",
                self.source_topic, self.group_id
            ))
        })?;
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        if let CommitMode::Sync = mode {
            let mut owned = lock(&self.owned);
            for &(p, next) in offsets {
                if let Some(clock) = owned.clocks.get_mut(&p) {
                    clock.committed = Some(next);
                }
            }
        }
        Ok(())
    }

    /// Enqueues one record, waiting for room in the producer queue if needed.
    pub(super) fn send(
        &self,
        mut record: BaseRecord<'_, (), [u8]>,
        started: Instant,
    ) -> Result<()> {
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    self.check_delivery_wait(started)?;
                    self.producer.poll(Duration::from_millis(1));
                }
                Err((e, r)) => {
                    return Err(kafka_error(format!(
                        "cannot send a record to partition {} of repartition topic '{}': {e}",
                        r.partition.unwrap_or(-1),
                        self.repartition_topic
                    )))
                }
            }
        }
    }

    pub(super) fn check_delivery_wait(&self, started: Instant) -> Result<()> {
        if started.elapsed() > Duration::from_millis(DELIVERY_WAIT_MS_MAX) {
            return Err(kafka_error(format!(
                "repartition topic '{}': {} records not acknowledged within {DELIVERY_WAIT_MS_MAX} \
                 ms (is the topic writable, are its brokers up?)",
                self.repartition_topic,
                self.producer.in_flight_count()
            )));
        }
        Ok(())
    }

    /// Sends the marks that are due (of `only` these partitions, when given); returns how
    /// many mark records were enqueued.
    pub(super) fn send_due_marks(
        &self,
        now: Instant,
        force: bool,
        only: Option<&[i32]>,
    ) -> Result<usize> {
        let interval = Duration::from_millis(REPARTITION_MARK_INTERVAL_MS);
        let mut due = Vec::new();
        {
            let mut owned = lock(&self.owned);
            for (p, clock) in owned.clocks.iter_mut() {
                if only.is_some_and(|o| !o.contains(p)) {
                    continue;
                }
                if let Some(ts) = clock.mark_due(now, interval, force) {
                    clock.ts_marked = Some(ts);
                    clock.marked_at = Some(now);
                    due.push((*p, ts));
                }
            }
        }
        let started = Instant::now();
        for &(p, ts) in &due {
            for r in 0..self.repartition_partitions {
                let record = BaseRecord::<(), [u8]>::to(&self.repartition_topic)
                    .partition(r)
                    .headers(mark_headers(p, ts));
                self.send(record, started)?;
            }
        }
        let sent = due.len() * self.repartition_partitions as usize;
        self.stats
            .marks_sent
            .fetch_add(sent as u64, Ordering::Relaxed);
        Ok(sent)
    }

    /// Polls the producer until every record sent is acknowledged; a failed delivery or the
    /// wait passing [`DELIVERY_WAIT_MS_MAX`] is an error.
    pub(super) fn wait_for_acks(&self) -> Result<()> {
        let started = Instant::now();
        while self.producer.in_flight_count() > 0 {
            self.check_delivery_wait(started)?;
            self.producer.poll(Duration::from_millis(1));
        }
        // Reports of records acknowledged meanwhile may still be queued.
        self.producer.poll(Duration::ZERO);
        let reports = self.producer.context();
        if reports.failures.load(Ordering::Relaxed) > 0 {
            let first = lock(&reports.first_failure).clone().unwrap_or_default();
            return Err(kafka_error(format!(
                "{} records were not delivered to repartition topic '{}' (first: {first})",
                reports.failures.load(Ordering::Relaxed),
                self.repartition_topic
            )));
        }
        Ok(())
    }
}
