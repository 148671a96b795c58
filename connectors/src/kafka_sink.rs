//! The Kafka sink: one librdkafka producer per shard, one JSON message per result row.
//!
//! Options: `connector` = 'kafka', `topic`, `format` = 'json', `properties.bootstrap.servers`
//! (required), any other `properties.X` (librdkafka property `X`), `key.fields` (`;`-separated
//! columns: the message key is the JSON object of those columns; no key by default),
//! `sink.delivery-guarantee` = at-least-once (default) | none | exactly-once,
//! `sink.flush.timeout` (default '30 s'), `sink.connect.timeout` (default '10 s'), and with
//! exactly-once `sink.transactional-id-prefix` (default `spillway-<source group>-<table>`),
//! `sink.transaction.timeout` (default '60 s') and `sink.transaction.buffer-bytes` (one
//! shard's results of one epoch, default 256 MiB). Exactly-once: see [`crate::kafka_txn`].
//!
//! The message value is the row as one JSON object (the JSON-lines encoding without the
//! newline); the message timestamp is the row's `window_end` when the table has that column.
//!
//! `upsert-kafka` (see [`KafkaSinkFactory::upsert`]) is this sink with the message key taken
//! from the table's PRIMARY KEY.
//!
//! Boundary: with at-least-once, a record counts as written only once `flush` returned Ok;
//! dropping a sink without flushing discards what librdkafka still holds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray};
use arrow::datatypes::{
    DataType, Int64Type, SchemaRef, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use arrow::record_batch::RecordBatch;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::ClientContext;

use crate::error::{ConnectorError, Result};
use crate::json_lines::RowWriter;
use crate::kafka_options::{self, DeliveryGuarantee, KafkaSinkOptions, WarnLimiter};
use crate::kafka_txn::{RecoveryReport, TxnCoordinator, TxnWriter};
use crate::kafka_txn_writer::{enqueue, Enqueue, QUEUE_FULL_WAIT_MS_MAX};
use crate::{EpochPrepared, EpochSinkContext, PartitionInfo, Sink, SinkFactory};

/// Name of the column whose value becomes the message timestamp.
pub const TIMESTAMP_COLUMN: &str = "window_end";
/// How long one wait for room in the producer queue (or for deliveries in `flush`) lasts.
const POLL_WAIT_MS: u64 = 1;
/// Largest number of delivery-report polls after a batch (each serves a whole event).
const REPORT_POLLS_MAX: usize = 16;

/// Builds the Kafka sinks of one table.
#[derive(Debug)]
pub struct KafkaSinkFactory {
    table: String,
    options: KafkaSinkOptions,
    schema: SchemaRef,
    key_columns: Vec<usize>,
    timestamp_column: Option<usize>,
    /// `upsert-kafka` with a `row_kind STRING` column: rows of kind "-D" become tombstones.
    row_kind_column: Option<usize>,
    /// With exactly-once: the transactions of every shard.
    txn: Option<TxnCoordinator>,
}

/// The sink column holding a row's kind ("+I", "+U", "-D"; filled by the engine).
const ROW_KIND_COLUMN: &str = "row_kind";
/// The row kind of a withdrawn result: `upsert-kafka` writes a tombstone for its key.
const ROW_KIND_DELETE: &str = "-D";

impl KafkaSinkFactory {
    /// The `upsert-kafka` sink: a Kafka sink whose message key is the JSON object of the
    /// table's PRIMARY KEY columns (`primary_key`, required). Window results are deterministic,
    /// so a replay after a restart writes the same value under the same key again: a reader
    /// that keeps the last value per key sees every result exactly once, without transactions.
    /// Takes the Kafka sink's options except `key.fields`.
    pub fn upsert(
        table: &str,
        options: &BTreeMap<String, String>,
        schema: SchemaRef,
        primary_key: &[String],
    ) -> Result<Self> {
        if options.contains_key("key.fields") {
            return Err(ConnectorError::config(
                table,
                "connector 'upsert-kafka' takes its message key from PRIMARY KEY (...) NOT \
                 ENFORCED; remove option 'key.fields'",
            ));
        }
        if primary_key.is_empty() {
            return Err(ConnectorError::config(
                table,
                "connector 'upsert-kafka' needs PRIMARY KEY (...) NOT ENFORCED: its columns are \
                 the message key (for window results: the group keys and window_start)",
            ));
        }
        let mut kafka = options.clone();
        kafka.insert("connector".to_string(), "kafka".to_string());
        kafka.insert("key.fields".to_string(), primary_key.join(";"));
        let mut sink = Self::from_options(table, &kafka, schema)?;
        sink.row_kind_column = sink
            .schema
            .index_of(ROW_KIND_COLUMN)
            .ok()
            .filter(|&i| sink.schema.field(i).data_type() == &DataType::Utf8);
        Ok(sink)
    }

    /// Parses the options, checks `key.fields` against `schema` (the sink table's schema),
    /// and checks that the brokers answer and the topic exists.
    pub fn from_options(
        table: &str,
        options: &BTreeMap<String, String>,
        schema: SchemaRef,
    ) -> Result<Self> {
        let options = KafkaSinkOptions::parse(table, options)?;
        let mut key_columns = Vec::with_capacity(options.key_fields.len());
        for name in &options.key_fields {
            let index = schema.index_of(name).map_err(|_| {
                let columns: Vec<&str> =
                    schema.fields().iter().map(|f| f.name().as_str()).collect();
                ConnectorError::config(
                    table,
                    format!(
                        "option 'key.fields' names column '{name}', which the table does not \
                         have (columns: {})",
                        columns.join(", ")
                    ),
                )
            })?;
            key_columns.push(index);
        }
        let timestamp_column = schema.index_of(TIMESTAMP_COLUMN).ok().filter(|&i| {
            matches!(
                schema.field(i).data_type(),
                DataType::Timestamp(_, _) | DataType::Int64
            )
        });
        kafka_options::topic_partitions(
            &options.common.properties,
            &options.common.bootstrap_servers,
            &options.common.topic,
            options.connect_timeout_ms,
        )?;
        let txn = (options.guarantee == DeliveryGuarantee::ExactlyOnce)
            .then(|| TxnCoordinator::new(table, options.clone()));
        Ok(KafkaSinkFactory {
            table: table.to_string(),
            options,
            schema,
            key_columns,
            timestamp_column,
            row_kind_column: None,
            txn,
        })
    }

    /// Whether the sink is exactly-once (it then needs the job to checkpoint).
    pub fn exactly_once(&self) -> bool {
        self.txn.is_some()
    }

    /// The transactional side, with exactly-once (for tests and tools).
    pub fn transactions(&self) -> Option<&TxnCoordinator> {
        self.txn.as_ref()
    }
}

impl SinkFactory for KafkaSinkFactory {
    fn open(&self, shard: usize) -> Result<Box<dyn Sink>> {
        let context = format!(
            "Kafka sink of table '{}' (topic '{}' at {})",
            self.table, self.options.common.topic, self.options.common.bootstrap_servers
        );
        let (producer, txn) = match &self.txn {
            Some(t) => (None, Some(t.open_shard(shard)?)),
            None => {
                let producer: BaseProducer<DeliveryCounter> = self
                    .options
                    .producer_config(&self.table, &format!("shard{shard}"))
                    .create_with_context(DeliveryCounter::new(context.clone()))
                    .map_err(|e| {
                        ConnectorError::Kafka(format!("{context}: cannot create producer: {e}"))
                    })?;
                (Some(producer), None)
            }
        };
        Ok(Box::new(KafkaSink {
            context,
            topic: self.options.common.topic.clone(),
            producer,
            txn,
            schema: self.schema.clone(),
            key_columns: self.key_columns.clone(),
            timestamp_column: self.timestamp_column,
            row_kind_column: self.row_kind_column,
            guarantee: self.options.guarantee,
            flush_timeout_ms: self.options.flush_timeout_ms,
            value: Vec::new(),
            key: Vec::new(),
            rows_written: 0,
        }))
    }

    fn close(&self) -> Result<()> {
        Ok(()) // each sink owns its producer; nothing is shared
    }

    fn describe(&self) -> String {
        let key = if self.options.key_fields.is_empty() {
            String::new()
        } else {
            format!(", key ({})", self.options.key_fields.join(", "))
        };
        let guarantee = match self.options.guarantee {
            DeliveryGuarantee::AtLeastOnce => "at-least-once",
            DeliveryGuarantee::None => "no delivery guarantee",
            DeliveryGuarantee::ExactlyOnce => "exactly-once (transactions)",
        };
        format!(
            "kafka topic '{}' at {}{key}, {guarantee}",
            self.options.common.topic, self.options.common.bootstrap_servers
        )
    }

    fn epoch_committed(&self) -> bool {
        self.txn.is_some()
    }

    fn bind_job(&self, context: &EpochSinkContext) -> Result<()> {
        match &self.txn {
            Some(t) => t.bind(context),
            None => Ok(()),
        }
    }

    fn recover_epochs(&self, committed: Option<u64>) -> Result<()> {
        if let Some(t) = &self.txn {
            let r = t.recover(committed)?;
            if r != RecoveryReport::default() {
                tracing::info!(
                    "table '{}': transactions at recovery: {} found committed, {} produced \
                     again from their redo files, {} aborted",
                    self.table,
                    r.found_committed,
                    r.resent,
                    r.aborted
                );
            }
        }
        Ok(())
    }

    fn commit_epochs(&self, epoch: u64, positions: &BTreeMap<PartitionInfo, i64>) -> Result<()> {
        match &self.txn {
            Some(t) => t.commit(epoch, positions),
            None => Ok(()),
        }
    }

    fn commits_source_offsets(&self) -> bool {
        self.txn.is_some()
    }
}

/// The producer's context: counts delivery reports, keeps the first failure, and sends
/// librdkafka's logs and errors to `tracing` (rate-limited).
pub(crate) struct DeliveryCounter {
    context: String,
    reports: AtomicU64,
    pub(crate) failures: AtomicU64,
    first_failure: Mutex<Option<String>>,
    warn_limiter: Mutex<WarnLimiter>,
}

impl DeliveryCounter {
    pub(crate) fn new(context: String) -> Self {
        DeliveryCounter {
            context,
            reports: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            first_failure: Mutex::new(None),
            warn_limiter: Mutex::new(WarnLimiter::default()),
        }
    }

    /// The first delivery failure's text (empty if none).
    pub(crate) fn first_failure_text(&self) -> String {
        self.first_failure
            .lock()
            .map(|f| f.clone().unwrap_or_default())
            .unwrap_or_default()
    }

    fn warn(&self, message: std::fmt::Arguments<'_>) {
        let allowed = match self.warn_limiter.lock() {
            Ok(mut limiter) => limiter.allow(),
            Err(_) => Some(0), // a panic elsewhere poisoned it: warn anyway
        };
        if let Some(suppressed) = allowed {
            tracing::warn!(
                "{}: {message} ({suppressed} similar warnings suppressed)",
                self.context
            );
        }
    }
}

impl ClientContext for DeliveryCounter {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning => {
                self.warn(format_args!("librdkafka {facility}: {message}"))
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!("{}: librdkafka {facility}: {message}", self.context)
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!("{}: librdkafka {facility}: {message}", self.context)
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.warn(format_args!("{error}: {reason}"));
    }
}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        self.reports.fetch_add(1, Ordering::Relaxed);
        if let Err((error, _)) = result {
            self.failures.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut first) = self.first_failure.lock() {
                first.get_or_insert_with(|| error.to_string());
            }
            self.warn(format_args!("a record was not delivered: {error}"));
        }
    }
}

/// The sink of one shard.
pub struct KafkaSink {
    /// "Kafka sink of table 't' (topic 'x' at servers)", for errors.
    context: String,
    topic: String,
    /// The producer, without exactly-once.
    producer: Option<BaseProducer<DeliveryCounter>>,
    /// The transactional writer, with exactly-once.
    txn: Option<TxnWriter>,
    schema: SchemaRef,
    key_columns: Vec<usize>,
    timestamp_column: Option<usize>,
    /// `upsert-kafka`: the `row_kind` column; "-D" rows are sent as tombstones.
    row_kind_column: Option<usize>,
    guarantee: DeliveryGuarantee,
    flush_timeout_ms: u64,
    /// Encoding buffers, reused for every row.
    value: Vec<u8>,
    key: Vec<u8>,
    rows_written: u64,
}

impl KafkaSink {
    /// With at-least-once, any failed delivery so far is an error (and stays one).
    fn check_deliveries(&self) -> Result<()> {
        let Some(producer) = &self.producer else {
            return Ok(());
        };
        let counter = producer.context();
        let failures = counter.failures.load(Ordering::Relaxed);
        if failures == 0 || self.guarantee == DeliveryGuarantee::None {
            return Ok(());
        }
        let first = counter
            .first_failure
            .lock()
            .map(|f| f.clone().unwrap_or_default())
            .unwrap_or_default();
        Err(ConnectorError::Kafka(format!(
            "{}: {failures} records were not delivered (first: {first})",
            self.context
        )))
    }

    /// Serves delivery reports without blocking, until a poll serves none.
    fn serve_reports(&self) {
        let Some(producer) = &self.producer else {
            return;
        };
        for _ in 0..REPORT_POLLS_MAX {
            let before = producer.context().reports.load(Ordering::Relaxed);
            producer.poll(Duration::ZERO);
            if producer.context().reports.load(Ordering::Relaxed) == before {
                break;
            }
        }
    }

    /// Enqueues one message, waiting (bounded) while the producer queue is full.
    /// `tombstone`: the message has the key and no value (an upsert delete).
    fn send(&self, row: usize, timestamp_ms: Option<i64>, tombstone: bool) -> Result<()> {
        let Some(producer) = &self.producer else {
            return Err(ConnectorError::Internal(format!(
                "{}: a plain send on a transactional sink",
                self.context
            )));
        };
        let mut record = BaseRecord::<[u8], [u8]>::to(&self.topic);
        if !tombstone {
            record = record.payload(&self.value[..]);
        }
        if !self.key_columns.is_empty() {
            record = record.key(&self.key[..]);
        }
        if let Some(ts) = timestamp_ms {
            record = record.timestamp(ts);
        }
        enqueue(producer, record).map_err(|e| match e {
            Enqueue::QueueFull => ConnectorError::Limit(format!(
                "{}: the producer queue stayed full for {} (the brokers do not keep up, or \
                 are unreachable)",
                self.context,
                kafka_options::format_duration_ms(QUEUE_FULL_WAIT_MS_MAX)
            )),
            Enqueue::Failed(e) => ConnectorError::Kafka(format!(
                "{}: cannot send row {row} ({} bytes): {e}",
                self.context,
                self.value.len()
            )),
        })
    }
}

impl Sink for KafkaSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.check_deliveries()?;
        if batch.schema_ref().fields().len() != self.schema.fields().len() {
            return Err(ConnectorError::Internal(format!(
                "{}: a batch of {} columns for a table of {}",
                self.context,
                batch.num_columns(),
                self.schema.fields().len()
            )));
        }
        let values = RowWriter::new(batch)?;
        let key_batch = if self.key_columns.is_empty() {
            None
        } else {
            Some(batch.project(&self.key_columns).map_err(|e| {
                ConnectorError::Internal(format!("{}: key columns: {e}", self.context))
            })?)
        };
        let keys = key_batch.as_ref().map(RowWriter::new).transpose()?;
        let timestamps = match self.timestamp_column {
            None => None,
            Some(i) => Some(TimestampColumn::new(batch.column(i)).ok_or_else(|| {
                ConnectorError::Internal(format!(
                    "{}: column {TIMESTAMP_COLUMN} has type {} in a batch",
                    self.context,
                    batch.column(i).data_type()
                ))
            })?),
        };
        let kinds = match self.row_kind_column {
            Some(i) => Some(batch.column(i).as_string_opt::<i32>().ok_or_else(|| {
                ConnectorError::Internal(format!(
                    "{}: column row_kind is not a string",
                    self.context
                ))
            })?),
            None => None,
        };
        for row in 0..batch.num_rows() {
            let tombstone =
                kinds.is_some_and(|k| k.is_valid(row) && k.value(row) == ROW_KIND_DELETE);
            self.value.clear();
            values.write_row(row, &mut self.value);
            strip_newline(&mut self.value);
            if let Some(keys) = &keys {
                self.key.clear();
                keys.write_row(row, &mut self.key);
                strip_newline(&mut self.key);
            }
            let timestamp_ms = timestamps.as_ref().and_then(|t| t.ms(row));
            match self.txn.as_mut() {
                Some(_) if tombstone => {
                    return Err(ConnectorError::config(
                        &self.context,
                        "a withdrawn result (row kind -D) needs a tombstone, which the \
                         exactly-once upsert-kafka sink does not write yet; use \
                         'sink.delivery-guarantee' = 'at-least-once'",
                    ));
                }
                Some(t) => {
                    let key = keys.is_some().then_some(&self.key[..]);
                    t.write(key, &self.value, timestamp_ms)?;
                }
                None => self.send(row, timestamp_ms, tombstone)?,
            }
        }
        match self.txn.as_mut() {
            Some(t) => t.produce()?,
            None => self.serve_reports(),
        }
        self.rows_written += batch.num_rows() as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if let Some(t) = self.txn.as_mut() {
            // Records become visible when their epoch's transaction commits.
            return t.produce();
        }
        self.serve_reports();
        let Some(producer) = &self.producer else {
            return Ok(());
        };
        if self.guarantee == DeliveryGuarantee::None {
            return Ok(());
        }
        // Not BaseProducer::flush: it waits in steps of 100 ms.
        let started = Instant::now();
        while producer.in_flight_count() > 0 {
            if started.elapsed() > Duration::from_millis(self.flush_timeout_ms) {
                return Err(ConnectorError::Kafka(format!(
                    "{}: {} records not delivered within {} (sink.flush.timeout)",
                    self.context,
                    producer.in_flight_count(),
                    kafka_options::format_duration_ms(self.flush_timeout_ms)
                )));
            }
            producer.poll(Duration::from_millis(POLL_WAIT_MS));
        }
        self.check_deliveries()
    }

    fn prepare_epoch(&mut self, epoch: u64) -> Result<EpochPrepared> {
        match self.txn.as_mut() {
            Some(t) => t.prepare(epoch),
            None => {
                self.flush()?;
                Ok(EpochPrepared::done())
            }
        }
    }

    fn rows_written(&self) -> u64 {
        self.rows_written
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        let Some(producer) = &self.producer else {
            return;
        };
        let pending = producer.in_flight_count();
        if pending > 0 {
            tracing::warn!(
                "{}: dropped with {pending} records not yet delivered (not flushed)",
                self.context
            );
        }
    }
}

/// Removes the JSON-lines newline: a Kafka message holds exactly one JSON object.
fn strip_newline(buffer: &mut Vec<u8>) {
    if buffer.last() == Some(&b'\n') {
        buffer.pop();
    }
}

/// The `window_end` column, read as epoch milliseconds.
enum TimestampColumn<'a> {
    Seconds(&'a PrimitiveArray<TimestampSecondType>),
    Millis(&'a PrimitiveArray<TimestampMillisecondType>),
    Micros(&'a PrimitiveArray<TimestampMicrosecondType>),
    Nanos(&'a PrimitiveArray<TimestampNanosecondType>),
    Int64(&'a PrimitiveArray<Int64Type>),
}

impl<'a> TimestampColumn<'a> {
    /// `None` when the column is not a timestamp or BIGINT column.
    fn new(column: &'a ArrayRef) -> Option<Self> {
        Some(match column.data_type() {
            DataType::Timestamp(TimeUnit::Second, _) => Self::Seconds(column.as_primitive_opt()?),
            DataType::Timestamp(TimeUnit::Millisecond, _) => {
                Self::Millis(column.as_primitive_opt()?)
            }
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                Self::Micros(column.as_primitive_opt()?)
            }
            DataType::Timestamp(TimeUnit::Nanosecond, _) => Self::Nanos(column.as_primitive_opt()?),
            DataType::Int64 => Self::Int64(column.as_primitive_opt()?),
            _ => return None,
        })
    }

    /// The row's timestamp in ms; `None` for null (librdkafka then stamps the send time).
    fn ms(&self, row: usize) -> Option<i64> {
        match self {
            Self::Seconds(a) => a.is_valid(row).then(|| a.value(row).saturating_mul(1000)),
            Self::Millis(a) => a.is_valid(row).then(|| a.value(row)),
            Self::Micros(a) => a.is_valid(row).then(|| a.value(row) / 1000),
            Self::Nanos(a) => a.is_valid(row).then(|| a.value(row) / 1_000_000),
            Self::Int64(a) => a.is_valid(row).then(|| a.value(row)),
        }
    }
}

#[cfg(test)]
#[path = "kafka_sink_row_kind_tests.rs"]
mod row_kind_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded_kafka::test_support::options;
    use crate::embedded_kafka::EmbeddedKafka;
    use arrow::array::{Int64Array, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{Field, Schema};
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Message, OwnedMessage};
    use rdkafka::{ClientConfig, Offset, Timestamp, TopicPartitionList};
    use std::sync::Arc;

    fn schema() -> SchemaRef {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
        Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, false),
            Field::new("window_start", ts.clone(), false),
            Field::new("window_end", ts, false),
            Field::new("trades", DataType::Int64, true),
        ]))
    }

    /// Rows (symbol, window_end ms, trades); window_start = window_end - 1000.
    fn batch(rows: &[(&str, i64, Option<i64>)]) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.1 - 1000),
            )),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.1),
            )),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.2))),
        ];
        RecordBatch::try_new(schema(), columns).expect("batch")
    }

    /// Reads `n` messages of all `partitions` of `topic` from the beginning (10 s at most).
    fn consume(servers: &str, topic: &str, partitions: i32, n: usize) -> Vec<OwnedMessage> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", servers)
            .set("group.id", "reader")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .expect("tpl");
        }
        consumer.assign(&tpl).expect("assign");
        let (mut got, deadline) = (Vec::new(), Instant::now() + Duration::from_secs(10));
        while got.len() < n && Instant::now() < deadline {
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                got.push(m.expect("message").detach());
            }
        }
        got
    }

    #[test]
    fn factory_errors_name_what_is_wrong() {
        let e = KafkaSinkFactory::from_options(
            "s",
            &options("127.0.0.1:1", "x", &[("key.fields", "symbol;nope")]),
            schema(),
        )
        .expect_err("bad key")
        .to_string();
        assert!(
            e.contains("column 'nope'") && e.contains("symbol, window_start"),
            "{e}"
        );

        let o = options("127.0.0.1:1", "x", &[("sink.connect.timeout", "300 ms")]);
        let e = KafkaSinkFactory::from_options("s", &o, schema())
            .expect_err("unreachable")
            .to_string();
        assert!(
            e.contains("cannot reach Kafka at 127.0.0.1:1 within 300 ms"),
            "{e}"
        );

        let kafka = EmbeddedKafka::start(1).expect("kafka");
        let o = options(&kafka.bootstrap_servers(), "missing", &[]);
        let e = KafkaSinkFactory::from_options("s", &o, schema())
            .expect_err("missing topic")
            .to_string();
        assert!(e.contains("topic 'missing' does not exist"), "{e}");
    }

    #[test]
    fn rows_arrive_as_json_with_keys_and_timestamps() {
        let kafka = EmbeddedKafka::start(1).expect("kafka");
        let servers = kafka.bootstrap_servers();
        kafka.create_topic("stats", 2).expect("topic");
        let o = options(&servers, "stats", &[("key.fields", "symbol")]);
        let factory = KafkaSinkFactory::from_options("s", &o, schema()).expect("factory");
        assert_eq!(
            factory.describe(),
            format!("kafka topic 'stats' at {servers}, key (symbol), at-least-once")
        );
        let mut sinks = [factory.open(0).expect("s0"), factory.open(1).expect("s1")];
        sinks[0]
            .write(&batch(&[("A", 2000, Some(3)), ("B", 2000, None)]))
            .expect("w0");
        sinks[1]
            .write(&batch(&[("C", 3000, Some(1)), ("A", 3000, Some(7))]))
            .expect("w1");
        for sink in &mut sinks {
            sink.flush().expect("flush");
        }
        assert_eq!((sinks[0].rows_written(), sinks[1].rows_written()), (2, 2));
        factory.close().expect("close");

        let messages = consume(&servers, "stats", 2, 4);
        assert_eq!(messages.len(), 4);
        let mut got: Vec<(String, String, Option<i64>, i32)> = messages
            .iter()
            .map(|m| {
                let text = |b: Option<&[u8]>| String::from_utf8(b.unwrap_or_default().to_vec());
                let key = text(m.key()).expect("key utf8");
                let value = text(m.payload()).expect("value utf8");
                let ts = match m.timestamp() {
                    Timestamp::CreateTime(t) => Some(t),
                    _ => None,
                };
                (key, value, ts, m.partition())
            })
            .collect();
        got.sort();
        let expected = [
            (r#"{"symbol":"A"}"#, "A", 2000, Some(3)),
            (r#"{"symbol":"A"}"#, "A", 3000, Some(7)),
            (r#"{"symbol":"B"}"#, "B", 2000, None),
            (r#"{"symbol":"C"}"#, "C", 3000, Some(1)),
        ];
        for ((key, value, ts, _), (want_key, symbol, end, trades)) in got.iter().zip(expected) {
            assert_eq!(key, want_key);
            let json: serde_json::Value = serde_json::from_str(value).expect("one JSON object");
            let want = serde_json::json!({
                "symbol": symbol,
                "window_start": crate::timestamp::format_timestamp_string(end - 1000),
                "window_end": crate::timestamp::format_timestamp_string(end),
                "trades": trades,
            });
            assert_eq!(json, want);
            assert_eq!(*ts, Some(end));
        }
        // Same key, same partition.
        assert_eq!(got[0].3, got[1].3);
    }

    #[test]
    fn failed_deliveries_fail_flush_and_later_writes() {
        let kafka = EmbeddedKafka::start(1).expect("kafka");
        let servers = kafka.bootstrap_servers();
        kafka.create_topic("fails", 1).expect("topic");
        let factory =
            KafkaSinkFactory::from_options("s", &options(&servers, "fails", &[]), schema())
                .expect("factory");
        let mut sink = factory.open(0).expect("sink");
        kafka.fail_next_produce_requests(50);
        sink.write(&batch(&[("A", 1000, Some(1))]))
            .expect("enqueued");
        let e = sink.flush().expect_err("not delivered").to_string();
        assert!(e.contains("1 records were not delivered"), "{e}");
        assert!(e.contains("Kafka sink of table 's'"), "{e}");
        let e = sink
            .write(&batch(&[("B", 1000, Some(1))]))
            .expect_err("sticky");
        assert!(e.to_string().contains("not delivered"), "{e}");

        // Without a delivery guarantee the same failure is only logged.
        let o = options(&servers, "fails", &[("sink.delivery-guarantee", "none")]);
        let factory = KafkaSinkFactory::from_options("s", &o, schema()).expect("factory");
        let mut sink = factory.open(0).expect("sink");
        kafka.fail_next_produce_requests(50);
        sink.write(&batch(&[("A", 1000, Some(1))]))
            .expect("enqueued");
        sink.flush().expect("no guarantee");
    }
}
