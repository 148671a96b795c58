//! Stage A of group mode, the forwarder: reads the source partitions that consumer group `G`
//! gives this process and sends each row to the repartition-topic partition of its GROUP BY
//! key, followed by time marks of its source partition.
//!
//! One thread per process runs [`run_forwarder`]. Its consumer subscribes to the source topic
//! in group `G` (cooperative-sticky, so a rebalance moves only the partitions that change
//! owner). Each batch goes through these steps, synchronously:
//!
//! 1. take up to `batch_rows_max` records (short polls; rebalance callbacks run here);
//! 2. decode them with the engine's JSON decoder (bad records are counted, not forwarded),
//!    note each source partition's largest event time, apply the WHERE filter;
//! 3. send each kept row's *original* bytes to partition `(hash >> 32) % R` of the
//!    repartition topic, with the headers of `spillway_connectors::repartition`;
//! 4. send the time marks that are due (at most every `REPARTITION_MARK_INTERVAL_MS` per source
//!    partition, to every repartition partition, after the rows they cover);
//! 5. poll the producer until every record is acknowledged, then commit the next offsets of
//!    the batch's partitions to group `G`.
//!
//! Invariant: the offset committed for a source partition never passes a record whose row
//! was not acknowledged by the repartition topic (delivery is at least once; stage B drops
//! the duplicates by source offset).
//! Invariant: a time mark of partition `p` is sent after every row of `p` with an event time
//! up to the mark's, on the same (idempotent, ordered) producer.
//! Boundary: only this thread touches the consumer and the producer; the rebalance callbacks
//! run inside its `poll` calls, so the shared partition table is never contended.
//!
//! `forwarder/context.rs` holds the Kafka side (consumer context, producer, commits, marks);
//! this file the loop (take, decode, filter, route) and the start-up checks.

mod context;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use arrow::datatypes::TimestampMillisecondType;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord};
use rdkafka::ClientConfig;
use spillway_connectors::kafka_options::WarnLimiter;
use spillway_connectors::repartition::row_headers;
use spillway_connectors::RawBatch;

use context::{kafka_error, lock, DeliveryReports, ForwarderContext, Owned};

use crate::catalog::TableDef;
use crate::decode::JsonDecoder;
use crate::error::{EngineError, Result};
use crate::expr::{evaluate_predicate, filter_batch};
use crate::plan::Pipeline;
use crate::window_operator::AggregateLayout;

/// How long the first poll of a batch waits for a record (later polls do not wait).
const POLL_WAIT_MS: u64 = 2;
/// How often an idle forwarder commits its acknowledged offsets again.
const COMMIT_REFRESH_MS: u64 = 1_000;
/// How long the forwarder waits for the repartition topic to acknowledge a batch (including
/// waits for room in the producer queue) before it fails. Generous: a forwarder that fails
/// stops its process, which is worse than a slow broker.
pub const DELIVERY_WAIT_MS_MAX: u64 = 120_000;
/// How long the start-up checks wait for the brokers' metadata.
const METADATA_TIMEOUT_MS: u64 = 10_000;
/// How long closing the consumer (leaving the group) may take.
const CLOSE_WAIT_MS_MAX: u64 = 10_000;
/// Largest repartition partition count accepted (as the table option's limit).
const REPARTITION_PARTITIONS_MAX: i32 =
    spillway_connectors::kafka_options::REPARTITION_PARTITIONS_MAX;

/// Everything the forwarder of one process needs.
pub struct ForwarderSetup {
    /// The source table (schema, WATERMARK column).
    pub table: Arc<TableDef>,
    /// The job's pipeline: its filter is applied here (filtered-out rows are not sent) and
    /// its aggregation's group keys pick the repartition partition.
    pub pipeline: Arc<Pipeline>,
    /// The source's consumer configuration (`group.id` = G, `properties.*`).
    pub consumer_config: ClientConfig,
    /// Bootstrap servers and `properties.*` of the producer to the repartition topic.
    pub producer_config: ClientConfig,
    pub source_topic: String,
    pub repartition_topic: String,
    /// R: the repartition topic must have at least this many partitions.
    pub repartition_partitions: i32,
    /// Records taken per batch.
    pub batch_rows_max: usize,
    /// Payload bytes taken per batch (about: the record that crosses it is kept).
    pub batch_bytes_max: usize,
    /// Larger records are skipped and counted.
    pub record_bytes_max: usize,
    /// Set to stop; honoured within about a batch (milliseconds).
    pub stop: Arc<AtomicBool>,
    /// Live counters, for metrics and reports.
    pub stats: Arc<ForwarderStats>,
}

/// Live counters of a forwarder (relaxed atomics, readable from any thread).
#[derive(Debug, Default)]
pub struct ForwarderStats {
    /// Source records taken (including the skipped ones).
    pub records_in: AtomicU64,
    /// Rows sent to the repartition topic (each batch's are acknowledged before its commit).
    pub rows_forwarded: AtomicU64,
    /// Decoded rows the WHERE filter dropped.
    pub rows_filtered_out: AtomicU64,
    /// Time-mark records sent (one per source partition and repartition partition).
    pub marks_sent: AtomicU64,
    /// Records skipped because they are not JSON (or not an object).
    pub skipped_malformed: AtomicU64,
    /// Records skipped because a declared field is missing.
    pub skipped_missing_field: AtomicU64,
    /// Records skipped because a field's value does not fit its column.
    pub skipped_wrong_type: AtomicU64,
    /// Records skipped because their event time is null.
    pub skipped_null_time: AtomicU64,
    /// Records skipped because they are over `record_bytes_max`.
    pub skipped_oversized: AtomicU64,
    /// Records without payload (tombstones), skipped.
    pub skipped_empty: AtomicU64,
    /// Source partitions this process owns now.
    pub partitions_owned: AtomicU64,
    /// Assignments and revocations received.
    pub rebalances: AtomicU64,
    /// Offset commits sent to group G.
    pub commits: AtomicU64,
}

impl ForwarderStats {
    /// Records skipped because they could not be decoded or were too large.
    pub fn skipped_bad(&self) -> u64 {
        [
            &self.skipped_malformed,
            &self.skipped_missing_field,
            &self.skipped_wrong_type,
            &self.skipped_null_time,
            &self.skipped_oversized,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }
}

/// Runs the forwarder until `setup.stop` is set or it fails. On stop it sends the last marks,
/// waits for the acknowledgements, commits synchronously and leaves the group.
pub fn run_forwarder(setup: ForwarderSetup) -> Result<()> {
    let mut forwarder = Forwarder::start(&setup)?;
    let result = forwarder.run(&setup.stop);
    match result {
        Ok(()) => forwarder.finish(),
        Err(e) => {
            forwarder
                .consumer
                .context()
                .failed
                .store(true, Ordering::Release);
            Err(e)
        }
    }
}

/// The forwarder's loop state and reused buffers.
struct Forwarder {
    consumer: BaseConsumer<ForwarderContext>,
    decoder: JsonDecoder,
    layout: AggregateLayout,
    pipeline: Arc<Pipeline>,
    time_column: Option<usize>,
    batch_rows_max: usize,
    batch_bytes_max: usize,
    record_bytes_max: usize,
    /// The records taken (parsed in place by the decoder) and a copy of their bytes.
    raw: RawBatch,
    originals: Vec<u8>,
    /// The next offset of each partition of the batch (skipped records included).
    batch_next: BTreeMap<i32, i64>,
    kept: Vec<u32>,
    selected: Vec<u32>,
    key_rows: Option<arrow::row::Rows>,
    hashes: Vec<u64>,
    ts_batch: BTreeMap<i32, i64>,
    warn_limiter: WarnLimiter,
    /// When the acknowledged offsets were last committed again while idle.
    commit_refreshed: Instant,
}

impl Forwarder {
    /// Checks the setup and the topics, creates the clients and subscribes.
    fn start(setup: &ForwarderSetup) -> Result<Self> {
        let r = setup.repartition_partitions;
        if !(1..=REPARTITION_PARTITIONS_MAX).contains(&r) {
            return Err(EngineError::Config(format!(
                "repartition topic '{}': {r} partitions requested, expected 1 to \
                 {REPARTITION_PARTITIONS_MAX}",
                setup.repartition_topic
            )));
        }
        if setup.batch_rows_max == 0 || setup.batch_bytes_max == 0 || setup.record_bytes_max == 0 {
            return Err(EngineError::Internal(
                "forwarder with a zero batch or record limit".into(),
            ));
        }
        let pipeline = setup.pipeline.clone();
        let Some(aggregation) = &pipeline.aggregation else {
            return Err(EngineError::Config(format!(
                "table '{}': group mode forwards rows by their GROUP BY key, and the query has \
                 no aggregation",
                setup.table.name
            )));
        };
        if pipeline.join.is_some() || pipeline.stream_join.is_some() {
            return Err(EngineError::Config(format!(
                "table '{}': queries with joins do not run in group mode yet",
                setup.table.name
            )));
        }
        let layout = AggregateLayout::new(aggregation)?;
        let key_rows = layout.empty_key_rows();
        let time_column = setup.table.watermark.map(|w| w.column);

        let group_id = setup
            .consumer_config
            .get("group.id")
            .unwrap_or_default()
            .to_string();
        if group_id.is_empty() {
            return Err(EngineError::Internal(
                "forwarder consumer configuration without group.id".into(),
            ));
        }
        let mut producer_config = setup.producer_config.clone();
        // Idempotence keeps each repartition partition's records in send order, and the
        // gapless guarantee makes a lost record fatal instead of letting later ones through:
        // stage B drops rows below the highest source offset it applied, so a gap followed by
        // later rows would lose the gap's rows for good.
        producer_config
            .set("enable.idempotence", "true")
            .set("enable.gapless.guarantee", "true")
            .set("acks", "all");
        if producer_config.get("linger.ms").is_none() {
            producer_config.set("linger.ms", "1");
        }
        if producer_config.get("message.timeout.ms").is_none() {
            producer_config.set("message.timeout.ms", DELIVERY_WAIT_MS_MAX.to_string());
        }
        let producer: BaseProducer<DeliveryReports> = producer_config
            .create_with_context(DeliveryReports {
                topic: setup.repartition_topic.clone(),
                failures: AtomicU64::new(0),
                first_failure: Mutex::new(None),
            })
            .map_err(|e| {
                kafka_error(format!(
                    "cannot create the producer to repartition topic '{}': {e}",
                    setup.repartition_topic
                ))
            })?;
        let mut consumer_config = setup.consumer_config.clone();
        consumer_config
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        let context = ForwarderContext {
            producer,
            source_topic: setup.source_topic.clone(),
            repartition_topic: setup.repartition_topic.clone(),
            repartition_partitions: r,
            group_id,
            owned: Mutex::new(Owned::default()),
            revoked_pending: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            stats: setup.stats.clone(),
        };
        let consumer: BaseConsumer<ForwarderContext> =
            consumer_config.create_with_context(context).map_err(|e| {
                kafka_error(format!(
                    "cannot create the consumer of topic '{}': {e}",
                    setup.source_topic
                ))
            })?;
        let servers = setup
            .consumer_config
            .get("bootstrap.servers")
            .unwrap_or("(no bootstrap.servers)");
        check_topic(&consumer, servers, &setup.source_topic, 1, "source topic")?;
        check_topic(
            &consumer,
            servers,
            &setup.repartition_topic,
            r,
            "repartition topic",
        )?;
        consumer.subscribe(&[&setup.source_topic]).map_err(|e| {
            kafka_error(format!(
                "cannot subscribe to topic '{}' in group '{}': {e}",
                setup.source_topic,
                consumer.context().group_id
            ))
        })?;
        Ok(Forwarder {
            decoder: JsonDecoder::new(setup.table.schema(), time_column),
            consumer,
            layout,
            pipeline,
            time_column,
            batch_rows_max: setup.batch_rows_max,
            batch_bytes_max: setup.batch_bytes_max,
            record_bytes_max: setup.record_bytes_max,
            raw: RawBatch::default(),
            originals: Vec::new(),
            batch_next: BTreeMap::new(),
            kept: Vec::new(),
            selected: Vec::new(),
            key_rows,
            hashes: Vec::new(),
            ts_batch: BTreeMap::new(),
            warn_limiter: WarnLimiter::default(),
            commit_refreshed: Instant::now(),
        })
    }

    fn run(&mut self, stop: &AtomicBool) -> Result<()> {
        while !stop.load(Ordering::Acquire) {
            self.take_batch()?;
            let rows = self.forward_batch()?;
            let ctx = self.consumer.context();
            let marks = ctx.send_due_marks(Instant::now(), false, None)?;
            if rows + marks > 0 {
                ctx.wait_for_acks()?;
            }
            self.commit_batch()?;
            if self.batch_next.is_empty()
                && self.commit_refreshed.elapsed() >= Duration::from_millis(COMMIT_REFRESH_MS)
            {
                self.refresh_commits();
            }
        }
        Ok(())
    }

    /// Commits every owned partition's acknowledged offset again while no records arrive:
    /// an asynchronous commit refused during a rebalance is otherwise not repeated until the
    /// next record of that partition (the group's lag would stay wrong, though harmless).
    fn refresh_commits(&mut self) {
        self.commit_refreshed = Instant::now();
        let ctx = self.consumer.context();
        let offsets: Vec<(i32, i64)> = lock(&ctx.owned)
            .clocks
            .iter()
            .filter_map(|(&p, c)| c.next_offset.map(|n| (p, n)))
            .collect();
        if offsets.is_empty() {
            return;
        }
        if let Err(e) = ctx.commit(&self.consumer, &offsets, CommitMode::Async) {
            if let Some(suppressed) = self.warn_limiter.allow() {
                tracing::warn!("{e} ({suppressed} similar warnings suppressed)");
            }
        }
    }

    /// Takes up to `batch_rows_max` records into `raw` (and their next offsets into
    /// `batch_next`), dropping those of partitions revoked meanwhile.
    fn take_batch(&mut self) -> Result<()> {
        self.raw.clear();
        self.batch_next.clear();
        let stats = self.consumer.context().stats.clone();
        let mut timeout = Duration::from_millis(POLL_WAIT_MS);
        let mut taken = 0usize;
        while taken < self.batch_rows_max && self.raw.bytes() < self.batch_bytes_max {
            let polled = self.consumer.poll(timeout);
            timeout = Duration::ZERO;
            let ctx = self.consumer.context();
            if ctx.revoked_pending.swap(false, Ordering::AcqRel) {
                let revoked = std::mem::take(&mut lock(&ctx.owned).revoked);
                drop_partitions(&mut self.raw, &mut self.batch_next, &revoked);
            }
            ctx.take_error()?;
            let message = match polled {
                None => break,
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    consumer_error(ctx, &mut self.warn_limiter, e)?;
                    continue;
                }
            };
            taken += 1;
            stats.records_in.fetch_add(1, Ordering::Relaxed);
            let (p, offset) = (message.partition(), message.offset());
            if message.topic() != ctx.source_topic || p < 0 {
                continue;
            }
            let next = self.batch_next.entry(p).or_insert(offset + 1);
            *next = (*next).max(offset + 1);
            match message.payload() {
                None | Some([]) => {
                    stats.skipped_empty.fetch_add(1, Ordering::Relaxed);
                }
                Some(b) if b.len() > self.record_bytes_max => {
                    stats.skipped_oversized.fetch_add(1, Ordering::Relaxed);
                }
                Some(b) => self.raw.push(p as u32, offset, b),
            }
        }
        Ok(())
    }

    /// Decodes, filters and sends the rows of `raw`; returns how many were sent.
    fn forward_batch(&mut self) -> Result<usize> {
        if self.raw.is_empty() {
            return Ok(0);
        }
        self.originals.clear();
        self.originals.extend_from_slice(&self.raw.data);
        let batch = self.decoder.decode(&mut self.raw, &mut self.kept)?;
        let ctx = self.consumer.context();
        publish_decode_stats(&ctx.stats, self.decoder.stats());

        if let Some(tc) = self.time_column {
            let ts = batch
                .column(tc)
                .as_primitive_opt::<TimestampMillisecondType>()
                .ok_or_else(|| {
                    EngineError::Internal(format!("event-time column {tc} is not a timestamp"))
                })?;
            self.ts_batch.clear();
            for (row, &rec) in self.kept.iter().enumerate() {
                if ts.is_valid(row) {
                    let p = self.raw.partition[rec as usize] as i32;
                    let t = ts.value(row);
                    let m = self.ts_batch.entry(p).or_insert(t);
                    *m = (*m).max(t);
                }
            }
            let mut owned = lock(&ctx.owned);
            for (p, &t) in &self.ts_batch {
                if let Some(clock) = owned.clocks.get_mut(p) {
                    clock.observe(t);
                }
            }
        }

        self.selected.clear();
        let batch = match &self.pipeline.filter {
            Some(f) => {
                let mask = evaluate_predicate(f, &batch)?;
                let out = filter_batch(&batch, &mask)?;
                self.selected.extend(
                    self.kept
                        .iter()
                        .enumerate()
                        .filter(|&(row, _)| mask.is_valid(row) && mask.value(row))
                        .map(|(_, &rec)| rec),
                );
                if out.num_rows() != self.selected.len() {
                    return Err(EngineError::Internal(format!(
                        "the filter kept {} rows and its mask {}",
                        out.num_rows(),
                        self.selected.len()
                    )));
                }
                let dropped = (batch.num_rows() - out.num_rows()) as u64;
                ctx.stats
                    .rows_filtered_out
                    .fetch_add(dropped, Ordering::Relaxed);
                out
            }
            None => {
                self.selected.extend_from_slice(&self.kept);
                batch
            }
        };
        self.layout
            .encode_keys(&batch, &mut self.key_rows, &mut self.hashes)?;

        let started = Instant::now();
        let r_count = ctx.repartition_partitions as usize;
        for (&rec, &hash) in self.selected.iter().zip(&self.hashes) {
            let rec = rec as usize;
            let (start, end) = self.raw.span(rec);
            let p = self.raw.partition[rec] as i32;
            let record = BaseRecord::<(), [u8]>::to(&ctx.repartition_topic)
                .partition(repartition_of(hash, r_count))
                .payload(&self.originals[start..end])
                .headers(row_headers(p, self.raw.offset[rec]));
            ctx.send(record, started)?;
        }
        let sent = self.selected.len();
        ctx.stats
            .rows_forwarded
            .fetch_add(sent as u64, Ordering::Relaxed);
        Ok(sent)
    }

    /// Records the batch's next offsets as acknowledged and commits them (asynchronously).
    fn commit_batch(&mut self) -> Result<()> {
        if self.batch_next.is_empty() {
            return Ok(());
        }
        let ctx = self.consumer.context();
        let mut offsets = Vec::with_capacity(self.batch_next.len());
        {
            let mut owned = lock(&ctx.owned);
            for (&p, &next) in &self.batch_next {
                // Revoked partitions were dropped from the batch; an owned one has a clock.
                if let Some(clock) = owned.clocks.get_mut(&p) {
                    clock.next_offset = Some(clock.next_offset.map_or(next, |n| n.max(next)));
                    offsets.push((p, next));
                }
            }
        }
        if let Err(e) = ctx.commit(&self.consumer, &offsets, CommitMode::Async) {
            if let Some(suppressed) = self.warn_limiter.allow() {
                tracing::warn!("{e} ({suppressed} similar warnings suppressed)");
            }
        }
        Ok(())
    }

    /// The clean end: the last marks, their acknowledgements, a synchronous commit of every
    /// owned partition, and leaving the group.
    fn finish(self) -> Result<()> {
        let ctx = self.consumer.context();
        if ctx.send_due_marks(Instant::now(), true, None)? > 0 {
            ctx.wait_for_acks()?;
        }
        let offsets: Vec<(i32, i64)> = lock(&ctx.owned)
            .clocks
            .iter()
            .filter_map(|(&p, c)| c.next_offset.map(|n| (p, n)))
            .collect();
        // A refused commit (the group is rebalancing, or moved on) costs only rows sent
        // again, which stage B drops: the stop goes on.
        if let Err(e) = ctx.commit(&self.consumer, &offsets, CommitMode::Sync) {
            tracing::warn!(
                "{e} (the next owners send those rows again; they are dropped as duplicates)"
            );
        }
        if let Err(e) = self.consumer.close_queue() {
            tracing::warn!(
                "forwarder: cannot leave group '{}' of topic '{}': {e} (the group's session \
                 timeout removes this member)",
                ctx.group_id,
                ctx.source_topic
            );
            ctx.stats.partitions_owned.store(0, Ordering::Relaxed);
            return ctx.take_error();
        }
        let started = Instant::now();
        while !self.consumer.closed() {
            if started.elapsed() > Duration::from_millis(CLOSE_WAIT_MS_MAX) {
                tracing::warn!(
                    "forwarder: the consumer of topic '{}' did not leave group '{}' within \
                     {CLOSE_WAIT_MS_MAX} ms (the group's session timeout removes it)",
                    ctx.source_topic,
                    ctx.group_id
                );
                break;
            }
            // Serves the final revoke (commits nothing new: everything is committed).
            let _ = self.consumer.poll(Duration::from_millis(POLL_WAIT_MS));
        }
        ctx.take_error()?;
        ctx.stats.partitions_owned.store(0, Ordering::Relaxed);
        Ok(())
    }
}

/// The repartition partition of a key with this hash (as shards pick owners: the high bits).
pub fn repartition_of(hash: u64, partitions: usize) -> i32 {
    AggregateLayout::owner(hash, partitions) as i32
}

/// Removes from the batch being taken every record (and next offset) of `revoked`.
fn drop_partitions(raw: &mut RawBatch, next: &mut BTreeMap<i32, i64>, revoked: &[i32]) {
    next.retain(|p, _| !revoked.contains(p));
    if !raw.partition.iter().any(|&p| revoked.contains(&(p as i32))) {
        return;
    }
    let old = std::mem::take(raw);
    for i in 0..old.len() {
        if !revoked.contains(&(old.partition[i] as i32)) {
            let (s, e) = old.span(i);
            raw.push(old.partition[i], old.offset[i], &old.data[s..e]);
        }
    }
}

fn publish_decode_stats(stats: &ForwarderStats, decode: &crate::decode::DecodeStats) {
    stats
        .skipped_malformed
        .store(decode.malformed, Ordering::Relaxed);
    stats
        .skipped_missing_field
        .store(decode.missing_field, Ordering::Relaxed);
    stats
        .skipped_wrong_type
        .store(decode.wrong_type, Ordering::Relaxed);
    stats
        .skipped_null_time
        .store(decode.null_time, Ordering::Relaxed);
}

/// Handles an error the consumer returned in place of a record: fatal ones end the
/// forwarder, the others (librdkafka retries them) are logged, rate-limited.
fn consumer_error(ctx: &ForwarderContext, limiter: &mut WarnLimiter, e: KafkaError) -> Result<()> {
    let fatal = match &e {
        KafkaError::PartitionEOF(_) => return Ok(()),
        KafkaError::MessageConsumptionFatal(_) => true,
        KafkaError::MessageConsumption(code) => matches!(
            code,
            RDKafkaErrorCode::TopicAuthorizationFailed | RDKafkaErrorCode::GroupAuthorizationFailed
        ),
        _ => false,
    };
    let what = format!(
        "forwarder of topic '{}' (group '{}'): {e}",
        ctx.source_topic, ctx.group_id
    );
    if fatal {
        return Err(kafka_error(what));
    }
    if let Some(suppressed) = limiter.allow() {
        tracing::warn!("{what} (librdkafka retries; {suppressed} similar warnings suppressed)");
    }
    Ok(())
}

/// Checks that `topic` exists with at least `partitions_min` partitions.
fn check_topic(
    consumer: &BaseConsumer<ForwarderContext>,
    servers: &str,
    topic: &str,
    partitions_min: i32,
    role: &str,
) -> Result<()> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_millis(METADATA_TIMEOUT_MS))
        .map_err(|e| {
            kafka_error(format!(
                "cannot read the metadata of {role} '{topic}' at {servers} within \
                 {METADATA_TIMEOUT_MS} ms: {e}"
            ))
        })?;
    let found = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .filter(|t| t.error().is_none() && !t.partitions().is_empty());
    let Some(found) = found else {
        return Err(kafka_error(format!(
            "{role} '{topic}' does not exist at {servers}"
        )));
    };
    let count = found.partitions().len() as i32;
    if count < partitions_min {
        return Err(EngineError::Config(format!(
            "{role} '{topic}' at {servers} has {count} partitions, the job needs \
             {partitions_min} (recreate it or lower 'scan.repartition.partitions')"
        )));
    }
    Ok(())
}

#[cfg(test)]
#[path = "forwarder_tests.rs"]
mod tests;
