//! Exactly-once results into Kafka: one transaction per shard per checkpoint epoch.
//!
//! Each shard has one transactional producer whose `transactional.id` is derived from the
//! job (`sink.transactional-id-prefix`, by default the source's consumer group and the table)
//! and the shard's source partitions, e.g. `spillway-g-stats-trades-p0.2`: a restart on the
//! same layout reuses it, which fences the previous process's producer.
//!
//! The flow of epoch E on shard s:
//! 1. The shard's first result of E begins the transaction; every record is produced inside
//!    it with headers `spillway.epoch`, `spillway.shard`, `spillway.attempt` (the run), and is
//!    also appended to the epoch's redo buffer (bounded by `sink.transaction.buffer-bytes`).
//! 2. At the checkpoint cut the shard *prepares* E: it stops producing (results of E+1 wait in
//!    the next redo buffer), and its checkpoint writer waits until the brokers acknowledged
//!    every record of E, then writes the redo buffer to a pending file (fsynced).
//! 3. Once every shard's checkpoint of E is durable the committer writes the job record (the
//!    commit point), then, for each shard, sends the source's offsets at the cut into the
//!    transaction (`send_offsets_to_transaction`, metadata `spillway epoch=E`) and commits it,
//!    logs the outcome to `transactions.jsonl` and deletes the pending file.
//!
//! Recovery, given the last committed epoch C (from the job record): every transactional id
//! of earlier runs is initialised again, which fences their producers and aborts any open
//! transaction. A pending file of an epoch <= C whose transaction the log does not show as
//! committed is looked up in the consumer group: if the group's offsets carry the metadata of
//! epoch E, Kafka committed it (the offsets commit atomically with the records); otherwise
//! its records are produced again, from the file, in a new transaction of the same id with the
//! same offsets. Pending files of epochs > C are deleted: their transactions were aborted.
//! The crash between the job record and the Kafka commit therefore rolls forward, never loses
//! or duplicates an epoch (the case Arroyo's issue 224 describes).
//!
//! **Invariant:** a shard produces only while its transaction is open, and the committer
//! commits only a prepared transaction: `prepared > committed` hands the producer to the
//! committer, `committed >= prepared` hands it back.
//! **Boundary:** a failed or timed-out commit fails the job; the restart recovers as above.
//! Every shard must read at least one source partition (its offsets mark its commits).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::error::{ConnectorError, Result};
use crate::kafka_options::{format_duration_ms, KafkaSinkOptions};
use crate::kafka_sink::DeliveryCounter;
use crate::kafka_txn_log::{self as files, Outcome, RedoHeader, TxnId, TxnRecord};
pub use crate::kafka_txn_writer::TxnWriter;
use crate::kafka_txn_writer::{record_headers, send_frame};
use crate::{EpochSinkContext, PartitionInfo};

/// Header naming a record's checkpoint epoch.
pub const HEADER_EPOCH: &str = "spillway.epoch";
/// Header naming the shard that wrote a record.
pub const HEADER_SHARD: &str = "spillway.shard";
/// Header naming the run (checkpoint generation) that produced a record.
pub const HEADER_ATTEMPT: &str = "spillway.attempt";

pub(crate) type TxnProducer = BaseProducer<DeliveryCounter>;

/// 1 µs .. 1 h, 3 significant digits.
fn delay_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
    })
}

/// The consumer-group offsets metadata of epoch `epoch`.
fn offsets_metadata(epoch: u64, shard: usize, attempt: u64) -> String {
    format!("spillway epoch={epoch} shard={shard} attempt={attempt}")
}

/// The epoch in consumer-group offsets metadata written by [`offsets_metadata`].
pub fn metadata_epoch(metadata: &str) -> Option<u64> {
    let rest = metadata.strip_prefix("spillway epoch=")?;
    rest.split(' ').next()?.parse().ok()
}

/// The transactional id of a shard reading `partitions`.
pub fn transactional_id(prefix: &str, partitions: &[PartitionInfo]) -> String {
    let topic = partitions.first().map_or("none", |p| p.topic.as_str());
    let numbers: Vec<String> = partitions.iter().map(|p| p.partition.to_string()).collect();
    format!("{prefix}-{topic}-p{}", numbers.join("."))
}

/// What a shard's sink and the committer share about one shard's transactions.
pub struct ShardTxn {
    pub(crate) shard: usize,
    pub(crate) transactional_id: String,
    pub(crate) partitions: Vec<PartitionInfo>,
    pub(crate) producer: TxnProducer,
    /// The last epoch the shard prepared.
    pub(crate) prepared: AtomicU64,
    /// The last epoch whose transaction committed.
    pub(crate) committed: AtomicU64,
    /// Records of the prepared, not yet committed epoch.
    pub(crate) prepared_records: AtomicU64,
    /// When the prepared epoch's batches were produced: (records, ns since `clock`).
    pub(crate) prepared_batches: Mutex<Vec<(u64, u64)>>,
}

/// What `bind_job` established.
struct Bound {
    dir: PathBuf,
    attempt: u64,
    ids: Vec<TxnId>,
    shard_partitions: Vec<Vec<PartitionInfo>>,
    committed_positions: BTreeMap<PartitionInfo, i64>,
    group_consumer: BaseConsumer,
    group: ConsumerGroupMetadata,
    group_id: String,
    /// The last committed epoch, set by recovery.
    committed: u64,
}

impl std::fmt::Debug for TxnCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TxnCoordinator({})", self.table)
    }
}

/// The transactional side of an exactly-once Kafka sink factory.
pub struct TxnCoordinator {
    table: String,
    options: KafkaSinkOptions,
    bound: Mutex<Option<Bound>>,
    shards: Mutex<Vec<Option<Arc<ShardTxn>>>>,
    /// The time base of the batch times.
    clock: Instant,
    /// How long records waited from their write to their transaction's commit, µs.
    commit_delay_us: Mutex<Histogram<u64>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TxnCoordinator {
    /// The coordinator of table `table`'s exactly-once sink.
    pub fn new(table: &str, options: KafkaSinkOptions) -> Self {
        TxnCoordinator {
            table: table.to_string(),
            options,
            bound: Mutex::new(None),
            shards: Mutex::new(Vec::new()),
            clock: Instant::now(),
            commit_delay_us: Mutex::new(delay_histogram()),
        }
    }

    /// How long records waited from their write to their transaction's commit (µs): the
    /// latency exactly-once adds for read_committed readers.
    pub fn commit_delay_us(&self) -> Histogram<u64> {
        lock(&self.commit_delay_us).clone()
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.options.transaction.timeout_ms)
    }

    fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.options.connect_timeout_ms)
    }

    fn error(&self, what: impl std::fmt::Display) -> ConnectorError {
        ConnectorError::Kafka(format!(
            "table '{}' (exactly-once, topic '{}' at {}): {what}",
            self.table, self.options.common.topic, self.options.common.bootstrap_servers
        ))
    }

    /// Checks the job suits exactly-once and records what the transactions need.
    pub fn bind(&self, ctx: &EpochSinkContext) -> Result<()> {
        let Some(group) = &ctx.source_group else {
            return Err(ConnectorError::config(
                &self.table,
                "'sink.delivery-guarantee' = 'exactly-once' commits the source's offsets in \
                 each transaction: the source must be a Kafka table",
            ));
        };
        if group.bootstrap_servers != self.options.common.bootstrap_servers {
            return Err(ConnectorError::config(
                &self.table,
                format!(
                    "'sink.delivery-guarantee' = 'exactly-once' commits the source's offsets in \
                     the sink's transactions, so source and sink must be on one Kafka cluster \
                     (source at {}, sink at {})",
                    group.bootstrap_servers, self.options.common.bootstrap_servers
                ),
            ));
        }
        let timeout_ms = self.options.transaction.timeout_ms;
        if ctx.checkpoint_interval.as_millis() as u64 * 2 > timeout_ms {
            return Err(ConnectorError::config(
                &self.table,
                format!(
                    "'sink.transaction.timeout' = '{}' must be at least twice the checkpoint \
                     interval ({}): a transaction stays open for an interval and its commit",
                    format_duration_ms(timeout_ms),
                    format_duration_ms(ctx.checkpoint_interval.as_millis() as u64)
                ),
            ));
        }
        if let Some(idle) = ctx.shard_partitions.iter().position(Vec::is_empty) {
            return Err(ConnectorError::config(
                &self.table,
                format!(
                    "'sink.delivery-guarantee' = 'exactly-once' needs every shard to read a \
                     source partition (the offsets in its transactions mark its commits), but \
                     shard {idle} of {} reads none: run on at most as many cores as the source \
                     topic has partitions",
                    ctx.shard_partitions.len()
                ),
            ));
        }
        let consumer: BaseConsumer = group
            .consumer_config
            .create()
            .map_err(|e| self.error(format!("cannot create the group client: {e}")))?;
        let metadata = consumer
            .group_metadata()
            .ok_or_else(|| self.error("the group client has no group metadata"))?;
        crate::epoch_files::create_dir(&ctx.dir)?;
        // The run's attempt number must differ from every earlier run's, also from runs that
        // crashed before their first checkpoint (they share the checkpoint generation).
        let attempt = files::read_ids(&ctx.dir)?
            .iter()
            .map(|i| i.attempt + 1)
            .max()
            .map_or(ctx.attempt, |next| next.max(ctx.attempt));
        let prefix = self
            .options
            .transaction
            .id_prefix
            .clone()
            .unwrap_or_else(|| format!("spillway-{}-{}", group.group_id, self.table));
        let ids = ctx
            .shard_partitions
            .iter()
            .enumerate()
            .map(|(shard, parts)| TxnId {
                shard,
                attempt,
                transactional_id: transactional_id(&prefix, parts),
            })
            .collect();
        *lock(&self.bound) = Some(Bound {
            dir: ctx.dir.clone(),
            attempt,
            ids,
            shard_partitions: ctx.shard_partitions.clone(),
            committed_positions: ctx.committed_positions.clone(),
            group_consumer: consumer,
            group: metadata,
            group_id: group.group_id.clone(),
            committed: 0,
        });
        Ok(())
    }

    /// A producer with `id`, its transactions initialised (which fences earlier producers of
    /// `id` and aborts their open transaction).
    fn init_producer(&self, id: &str, client: &str) -> Result<TxnProducer> {
        let context = format!(
            "Kafka sink of table '{}' (transactional id '{id}')",
            self.table
        );
        let producer: TxnProducer = self
            .options
            .transactional_config(&self.table, client, id)
            .create_with_context(DeliveryCounter::new(context))
            .map_err(|e| self.error(format!("cannot create producer '{id}': {e}")))?;
        producer
            .init_transactions(self.connect_timeout())
            .map_err(|e| {
                self.error(format!(
                    "the brokers do not support Kafka transactions, which \
                     'sink.delivery-guarantee' = 'exactly-once' needs (initialising \
                     transactional id '{id}' failed within {}: {e}); use 'at-least-once', or \
                     the 'upsert-kafka' connector, whose replays rewrite the same keys",
                    format_duration_ms(self.options.connect_timeout_ms)
                ))
            })?;
        Ok(producer)
    }

    /// Settles the transactions of earlier runs against the last committed epoch `committed`
    /// (see the module documentation).
    pub fn recover(&self, committed: Option<u64>) -> Result<RecoveryReport> {
        let mut guard = lock(&self.bound);
        let bound = guard
            .as_mut()
            .ok_or_else(|| ConnectorError::Internal("recover before bind_job".into()))?;
        let c = committed.unwrap_or(0);
        bound.committed = c;
        let dir = bound.dir.clone();
        let old_ids = files::read_ids(&dir)?;
        let log = files::read_log(&dir)?;
        let logged = |outcome: Outcome| -> BTreeSet<(u64, usize, u64)> {
            log.iter()
                .filter(|r| r.outcome == outcome)
                .map(|r| (r.epoch, r.shard, r.attempt))
                .collect()
        };
        let logged_committed = logged(Outcome::Committed);
        let mut logged_aborted = logged(Outcome::Aborted);
        // Keep the old ids in the file until they are fenced, in case this recovery crashes.
        let mut all_ids = old_ids.clone();
        all_ids.extend(bound.ids.iter().cloned());
        files::write_ids(&dir, &all_ids)?;
        let mut producers: HashMap<String, TxnProducer> = HashMap::new();
        for id in &all_ids {
            if !producers.contains_key(&id.transactional_id) {
                let p = self.init_producer(&id.transactional_id, "recovery")?;
                producers.insert(id.transactional_id.clone(), p);
            }
        }
        if let Some(first) = bound.ids.first() {
            if let Some(p) = producers.get(&first.transactional_id) {
                self.probe_transactions(p, bound, &first.transactional_id)?;
            }
        }
        let mut report = RecoveryReport::default();
        for (epoch, _, path) in files::list_pending(&dir)? {
            let redo = files::read_redo(&path)?;
            let h = &redo.header;
            let key = (h.epoch, h.shard, h.attempt);
            let mut log_once = |r: TxnRecord| -> Result<()> {
                if r.outcome == Outcome::Aborted
                    && !logged_aborted.insert((r.epoch, r.shard, r.attempt))
                {
                    return Ok(()); // logged by an earlier, interrupted recovery
                }
                files::append_log(&dir, &r)
            };
            if epoch > c {
                log_once(record(
                    h,
                    Outcome::Aborted,
                    redo.records,
                    "epoch not committed; fenced at recovery",
                ))?;
                report.aborted += 1;
            } else if logged_committed.contains(&key) {
                // Committed and logged; only the file's deletion was lost.
            } else if self.group_shows_committed(bound, h)? {
                log_once(record(
                    h,
                    Outcome::Committed,
                    redo.records,
                    "found committed at recovery",
                ))?;
                report.found_committed += 1;
            } else {
                log_once(record(
                    h,
                    Outcome::Aborted,
                    redo.records,
                    "not committed; fenced at recovery; resent",
                ))?;
                let producer = match producers.get(&h.transactional_id) {
                    Some(p) => p,
                    None => {
                        let p = self.init_producer(&h.transactional_id, "recovery")?;
                        producers.entry(h.transactional_id.clone()).or_insert(p)
                    }
                };
                let mut resent = h.clone();
                resent.attempt = bound.attempt;
                self.resend(producer, bound, &resent, &redo.frames)?;
                log_once(record(
                    &resent,
                    Outcome::Committed,
                    redo.records,
                    "resent at recovery",
                ))?;
                report.resent += 1;
            }
            std::fs::remove_file(&path)
                .map_err(|e| ConnectorError::io(format!("deleting '{}'", path.display()), e))?;
        }
        // Transactions open at the crash (no pending file) were aborted by the fencing above.
        let logged_committed: BTreeSet<_> = files::read_log(&dir)?
            .into_iter()
            .filter(|r| r.outcome == Outcome::Committed)
            .map(|r| (r.epoch, r.shard, r.attempt))
            .collect();
        for id in &old_ids {
            for epoch in [c, c + 1] {
                let key = (epoch, id.shard, id.attempt);
                if epoch > 0 && !logged_committed.contains(&key) && !logged_aborted.contains(&key) {
                    files::append_log(
                        &dir,
                        &TxnRecord {
                            epoch,
                            shard: id.shard,
                            attempt: id.attempt,
                            outcome: Outcome::Aborted,
                            records: None,
                            how: "open at the crash; fenced at recovery".into(),
                        },
                    )?;
                    logged_aborted.insert(key);
                    report.aborted += 1;
                }
            }
        }
        drop(producers);
        files::write_ids(&dir, &bound.ids)?;
        Ok(report)
    }

    /// Runs one transaction that only sends offsets and is aborted (it changes nothing), so a
    /// broker without transactions is found at start-up: some accept `InitProducerId` but
    /// not the requests of a transaction.
    fn probe_transactions(&self, producer: &TxnProducer, bound: &Bound, id: &str) -> Result<()> {
        let unsupported = |e: &KafkaError| {
            let text = e.to_string();
            if text.contains("not supported") {
                self.error(format!(
                    "the brokers do not support Kafka transactions, which \
                     'sink.delivery-guarantee' = 'exactly-once' needs (a test transaction of \
                     transactional id '{id}' failed: {text}); use 'at-least-once', or the \
                     'upsert-kafka' connector, whose replays rewrite the same keys"
                ))
            } else {
                self.error(format!(
                    "a test transaction of transactional id '{id}' failed at start-up: {text}"
                ))
            }
        };
        let mut tpl = TopicPartitionList::new();
        for p in bound.shard_partitions.iter().flatten().take(1) {
            tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(0))
                .map_err(|e| self.error(e))?;
        }
        producer.begin_transaction().map_err(|e| unsupported(&e))?;
        let sent = producer.send_offsets_to_transaction(&tpl, &bound.group, self.connect_timeout());
        let aborted = producer.abort_transaction(self.connect_timeout());
        sent.and(aborted).map_err(|e| unsupported(&e))
    }

    /// Whether the consumer group's offsets of `h`'s partitions carry epoch `h.epoch` or later
    /// (Kafka commits a transaction's offsets atomically with its records).
    fn group_shows_committed(&self, bound: &Bound, h: &RedoHeader) -> Result<bool> {
        let mut tpl = TopicPartitionList::with_capacity(h.partitions.len());
        for (topic, partition) in &h.partitions {
            tpl.add_partition(topic, *partition);
        }
        let offsets = bound
            .group_consumer
            .committed_offsets(tpl, self.connect_timeout())
            .map_err(|e| {
                self.error(format!(
                    "cannot read the committed offsets of group '{}': {e}",
                    bound.group_id
                ))
            })?;
        Ok(offsets
            .elements()
            .iter()
            .any(|e| metadata_epoch(e.metadata()).is_some_and(|m| m >= h.epoch)))
    }

    /// Produces `frames` again in a new transaction of `producer`, with the offsets of the
    /// last committed checkpoint, and commits it.
    fn resend(
        &self,
        producer: &TxnProducer,
        bound: &Bound,
        h: &RedoHeader,
        frames: &[u8],
    ) -> Result<()> {
        producer
            .begin_transaction()
            .map_err(|e| self.error(format!("cannot begin a transaction: {e}")))?;
        let headers = record_headers(h.epoch, h.shard, h.attempt);
        let mut pos = 0;
        while let Some(frame) = files::next_frame(frames, &mut pos)? {
            send_frame(producer, &self.options.common.topic, &frame, &headers)
                .map_err(|e| self.error(e))?;
        }
        let partitions: Vec<PartitionInfo> = h
            .partitions
            .iter()
            .map(|(topic, partition)| PartitionInfo {
                topic: topic.clone(),
                partition: *partition,
            })
            .collect();
        let tpl = offsets_list(&partitions, &bound.committed_positions, h)?;
        producer
            .send_offsets_to_transaction(&tpl, &bound.group, self.timeout())
            .and_then(|()| producer.commit_transaction(self.timeout()))
            .map_err(|e| {
                self.error(format!(
                    "cannot commit the resent epoch {} of shard {}: {e}",
                    h.epoch, h.shard
                ))
            })
    }

    /// The transactional writer of `shard` (its producer initialised).
    pub fn open_shard(&self, shard: usize) -> Result<TxnWriter> {
        let guard = lock(&self.bound);
        let bound = guard
            .as_ref()
            .ok_or_else(|| ConnectorError::Internal("open before bind_job".into()))?;
        let id = bound.ids.get(shard).ok_or_else(|| {
            ConnectorError::Internal(format!("shard {shard} has no transactional id"))
        })?;
        let producer = self.init_producer(&id.transactional_id, &format!("shard{shard}"))?;
        let handle = Arc::new(ShardTxn {
            shard,
            transactional_id: id.transactional_id.clone(),
            partitions: bound.shard_partitions[shard].clone(),
            producer,
            prepared: AtomicU64::new(bound.committed),
            committed: AtomicU64::new(bound.committed),
            prepared_records: AtomicU64::new(0),
            prepared_batches: Mutex::new(Vec::new()),
        });
        let mut shards = lock(&self.shards);
        if shards.len() <= shard {
            shards.resize(shard + 1, None);
        }
        shards[shard] = Some(handle.clone());
        Ok(TxnWriter {
            context: format!(
                "Kafka sink of table '{}', shard {shard} (transactional id '{}')",
                self.table, id.transactional_id
            ),
            handle,
            topic: self.options.common.topic.clone(),
            dir: bound.dir.clone(),
            attempt: bound.attempt,
            epoch: bound.committed + 1,
            headers: record_headers(bound.committed + 1, shard, bound.attempt),
            frames: Vec::new(),
            records: 0,
            produced: 0,
            open: false,
            clock: self.clock,
            batches: Vec::new(),
            records_timed: 0,
            buffer_bytes_max: self.options.transaction.buffer_bytes,
            flush_timeout_ms: self.options.flush_timeout_ms,
        })
    }

    /// Commits every shard's transaction of `epoch` with the source's offsets `positions`.
    pub fn commit(&self, epoch: u64, positions: &BTreeMap<PartitionInfo, i64>) -> Result<()> {
        let guard = lock(&self.bound);
        let Some(bound) = guard.as_ref() else {
            return Ok(()); // nothing was opened
        };
        let shards: Vec<Arc<ShardTxn>> = lock(&self.shards).iter().flatten().cloned().collect();
        let mut outcomes = Vec::with_capacity(shards.len());
        for s in &shards {
            if s.committed.load(Ordering::Acquire) >= epoch {
                continue;
            }
            let prepared = s.prepared.load(Ordering::Acquire);
            if prepared != epoch {
                return Err(ConnectorError::Internal(format!(
                    "table '{}': commit of epoch {epoch}, but shard {} prepared epoch {prepared}",
                    self.table, s.shard
                )));
            }
            let header = RedoHeader {
                epoch,
                shard: s.shard,
                attempt: bound.attempt,
                transactional_id: s.transactional_id.clone(),
                partitions: s
                    .partitions
                    .iter()
                    .map(|p| (p.topic.clone(), p.partition))
                    .collect(),
            };
            let tpl = offsets_list(&s.partitions, positions, &header)?;
            self.commit_with_retries(s, &tpl, &bound.group)?;
            crate::crash_points::reached("transaction-committed");
            let records = s.prepared_records.load(Ordering::Acquire);
            let now_ns = self.clock.elapsed().as_nanos() as u64;
            {
                let mut delays = lock(&self.commit_delay_us);
                for &(n, at_ns) in lock(&s.prepared_batches).iter() {
                    let us = now_ns.saturating_sub(at_ns) / 1_000;
                    delays.saturating_record_n(us.max(1), n);
                }
            }
            outcomes.push(record(&header, Outcome::Committed, records, "committed"));
            s.committed.store(epoch, Ordering::Release);
        }
        for r in &outcomes {
            files::append_log(&bound.dir, r)?;
        }
        for r in &outcomes {
            let path = bound.dir.join(files::pending_name(r.epoch, r.shard));
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!("cannot delete '{}': {e}", path.display());
            }
        }
        Ok(())
    }

    /// Sends the offsets and commits, retrying what librdkafka calls retriable until the
    /// transaction timeout.
    fn commit_with_retries(
        &self,
        s: &ShardTxn,
        tpl: &TopicPartitionList,
        group: &ConsumerGroupMetadata,
    ) -> Result<()> {
        let deadline = Instant::now() + self.timeout();
        let retriable = |e: &KafkaError| match e {
            KafkaError::Transaction(t) => {
                t.is_retriable() && t.code() != RDKafkaErrorCode::UnsupportedFeature
            }
            _ => false,
        };
        let mut sent = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let result = if sent {
                Ok(())
            } else {
                s.producer.send_offsets_to_transaction(tpl, group, left)
            }
            .inspect(|()| sent = true)
            .and_then(|()| s.producer.commit_transaction(left));
            match result {
                Ok(()) => return Ok(()),
                Err(e) if retriable(&e) && Instant::now() < deadline => {
                    tracing::warn!(
                        "table '{}', shard {}: committing a transaction: {e}; retrying",
                        self.table,
                        s.shard
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => {
                    return Err(self.error(format!(
                        "shard {}: cannot commit the transaction of epoch {} (transactional \
                         id '{}'): {e}; the restart from the last checkpoint will complete it",
                        s.shard,
                        s.prepared.load(Ordering::Acquire),
                        s.transactional_id
                    )))
                }
            }
        }
    }
}

/// What recovery did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Transactions of committed epochs found committed in the consumer group.
    pub found_committed: usize,
    /// Transactions of committed epochs produced again from their redo file.
    pub resent: usize,
    /// Transactions recorded as aborted.
    pub aborted: usize,
}

fn record(h: &RedoHeader, outcome: Outcome, records: u64, how: &str) -> TxnRecord {
    TxnRecord {
        epoch: h.epoch,
        shard: h.shard,
        attempt: h.attempt,
        outcome,
        records: Some(records),
        how: how.to_string(),
    }
}

/// The offsets of `partitions` at `positions`, with the epoch's metadata.
fn offsets_list(
    partitions: &[PartitionInfo],
    positions: &BTreeMap<PartitionInfo, i64>,
    h: &RedoHeader,
) -> Result<TopicPartitionList> {
    let metadata = offsets_metadata(h.epoch, h.shard, h.attempt);
    let mut tpl = TopicPartitionList::with_capacity(partitions.len());
    for p in partitions {
        let Some(&offset) = positions.get(p) else {
            continue;
        };
        let mut e = tpl.add_partition(&p.topic, p.partition);
        e.set_offset(Offset::Offset(offset))
            .map_err(|e| ConnectorError::Kafka(format!("offset {offset}: {e}")))?;
        e.set_metadata(&metadata);
    }
    Ok(tpl)
}

#[cfg(test)]
#[path = "kafka_txn_tests.rs"]
mod tests;
