//! Option parsing and connection checks shared by the Kafka source and sink.
//!
//! A Kafka table's WITH options are `connector` = 'kafka', `topic`, `format` = 'json',
//! `properties.bootstrap.servers` (required), any other `properties.X` (passed to librdkafka
//! as `X`, checked against librdkafka's own list when the table is created) and the
//! connector's own `scan.*` / `sink.*` keys. Every key is checked: an unknown key is an error
//! naming it and listing the accepted ones.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::ClientConfig;

use crate::duration::parse_duration_ms;
use crate::error::{ConnectorError, Result};

/// Prefix of the options passed through to librdkafka.
pub const PROPERTIES_PREFIX: &str = "properties.";
/// Default of the connect timeouts (`scan.connect.timeout`, `sink.connect.timeout`).
pub const CONNECT_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Largest accepted timeout option (1 day): larger values are almost surely a unit mistake.
pub const TIMEOUT_MS_MAX: u64 = 86_400_000;

/// The options every Kafka table has, parsed and checked.
#[derive(Debug, Clone)]
pub struct KafkaCommonOptions {
    /// The topic.
    pub topic: String,
    /// `properties.bootstrap.servers`.
    pub bootstrap_servers: String,
    /// The librdkafka properties given by the user (`properties.` removed), including
    /// `bootstrap.servers`. They override the connector's defaults.
    pub properties: BTreeMap<String, String>,
}

/// Default of `source.record-bytes-max`: larger records are skipped and counted.
pub const RECORD_BYTES_MAX_DEFAULT: usize = 1 << 20;
/// Largest accepted `source.record-bytes-max`.
pub const RECORD_BYTES_MAX_LIMIT: usize = 256 << 20;

/// Options accepted by the Kafka source besides `properties.*`.
const SOURCE_KEYS: &[&str] = &[
    "connector",
    "topic",
    "format",
    "scan.startup.mode",
    "scan.bounded.mode",
    "scan.connect.timeout",
    "source.record-bytes-max",
    "scan.partition-assignment",
    "scan.repartition.topic",
    "scan.repartition.partitions",
];

/// Largest `scan.repartition.partitions`.
pub const REPARTITION_PARTITIONS_MAX: i32 = 4096;

/// How a source's partitions are shared out (`scan.partition-assignment`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionAssignment {
    /// This process reads every partition (default).
    Static,
    /// Processes share the partitions through the Kafka consumer group `group_id` (group mode:
    /// rows travel to key owners through a repartition topic).
    Group {
        /// `scan.repartition.topic` (default `<group id>-repartition`).
        repartition_topic: String,
        /// `scan.repartition.partitions`; None: the source topic's partition count.
        repartition_partitions: Option<i32>,
    },
}

/// Where a source starts when it is not resumed from a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupMode {
    /// The low watermark of each partition.
    EarliestOffset,
    /// The high watermark of each partition (only records produced after the start).
    LatestOffset,
    /// The group's committed offset; without one, `auto.offset.reset`.
    GroupOffsets,
}

/// The options of a Kafka source table, parsed and checked.
#[derive(Debug, Clone)]
pub struct KafkaSourceOptions {
    /// Topic, servers and librdkafka properties.
    pub common: KafkaCommonOptions,
    /// `properties.group.id`, or `spillway-<table>`.
    pub group_id: String,
    /// `scan.startup.mode` (default group-offsets).
    pub startup: StartupMode,
    /// Where group-offsets starts without a committed offset (`properties.auto.offset.reset`):
    /// the low (true) or high (false) watermark; `None` for 'error'.
    pub reset_to_earliest: Option<bool>,
    /// `scan.bounded.mode` = latest-offset.
    pub bounded: bool,
    /// `scan.connect.timeout` (default 10 s).
    pub connect_timeout_ms: u64,
    /// `source.record-bytes-max` (default 1 MiB).
    pub record_bytes_max: usize,
    /// `scan.partition-assignment` and the repartition topic of group mode.
    pub assignment: PartitionAssignment,
}

impl KafkaSourceOptions {
    /// Parses a source table's options; errors name the option and the value.
    pub fn parse(table: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        let common = parse_common(table, options, SOURCE_KEYS)?;
        let startup = match choice(
            table,
            options,
            "scan.startup.mode",
            &["earliest-offset", "latest-offset", "group-offsets"],
            "group-offsets",
        )? {
            "earliest-offset" => StartupMode::EarliestOffset,
            "latest-offset" => StartupMode::LatestOffset,
            _ => StartupMode::GroupOffsets,
        };
        let bounded = choice(
            table,
            options,
            "scan.bounded.mode",
            &["unbounded", "latest-offset"],
            "unbounded",
        )? == "latest-offset";
        let connect_timeout_ms = duration_ms(
            table,
            options,
            "scan.connect.timeout",
            CONNECT_TIMEOUT_MS_DEFAULT,
        )?;
        let record_bytes_max = bytes(
            table,
            options,
            "source.record-bytes-max",
            RECORD_BYTES_MAX_DEFAULT,
            RECORD_BYTES_MAX_LIMIT,
        )?;
        let reset = common
            .properties
            .get("auto.offset.reset")
            .map(|s| s.trim().to_ascii_lowercase())
            .unwrap_or_else(|| "earliest".to_string());
        let reset_to_earliest = match reset.as_str() {
            "earliest" | "smallest" | "beginning" => Some(true),
            "latest" | "largest" | "end" => Some(false),
            "error" => None,
            other => {
                return Err(ConnectorError::config(
                    table,
                    format!(
                        "option 'properties.auto.offset.reset' = '{other}' is not valid \
                         (accepted: earliest, latest, error)"
                    ),
                ))
            }
        };
        let group_id = common
            .properties
            .get("group.id")
            .cloned()
            .unwrap_or_else(|| format!("spillway-{table}"));
        let assignment = parse_assignment(table, options, startup, &group_id, bounded)?;
        Ok(KafkaSourceOptions {
            common,
            group_id,
            startup,
            reset_to_earliest,
            bounded,
            connect_timeout_ms,
            record_bytes_max,
            assignment,
        })
    }
}

/// `scan.partition-assignment` and, in group mode, its repartition options and preconditions.
fn parse_assignment(
    table: &str,
    options: &BTreeMap<String, String>,
    startup: StartupMode,
    group_id: &str,
    bounded: bool,
) -> Result<PartitionAssignment> {
    let mode = choice(
        table,
        options,
        "scan.partition-assignment",
        &["static", "group"],
        "static",
    )?;
    if mode == "static" {
        for key in ["scan.repartition.topic", "scan.repartition.partitions"] {
            if options.contains_key(key) {
                return Err(ConnectorError::config(
                    table,
                    format!("option '{key}' needs 'scan.partition-assignment' = 'group'"),
                ));
            }
        }
        return Ok(PartitionAssignment::Static);
    }
    let why = if startup != StartupMode::GroupOffsets {
        Some("'scan.startup.mode' = 'group-offsets' (processes resume where the group stopped)")
    } else if !options.contains_key("properties.group.id") {
        Some("an explicit 'properties.group.id' (every process of the job names the same group)")
    } else if bounded {
        Some("an unbounded source (a bounded read has no end the whole group agrees on)")
    } else {
        None
    };
    if let Some(why) = why {
        return Err(ConnectorError::config(
            table,
            format!("'scan.partition-assignment' = 'group' needs {why}"),
        ));
    }
    let repartition_topic = match options.get("scan.repartition.topic") {
        Some(t) if t.trim().is_empty() => {
            return Err(ConnectorError::config(
                table,
                "option 'scan.repartition.topic' is empty",
            ))
        }
        Some(t) => t.trim().to_string(),
        None => format!("{group_id}-repartition"),
    };
    let repartition_partitions = match options.get("scan.repartition.partitions") {
        None => None,
        Some(v) => match v.trim().parse::<i32>() {
            Ok(n) if (1..=REPARTITION_PARTITIONS_MAX).contains(&n) => Some(n),
            _ => {
                return Err(ConnectorError::config(
                    table,
                    format!(
                        "option 'scan.repartition.partitions' = '{v}' is not a whole number \
                         from 1 to {REPARTITION_PARTITIONS_MAX}"
                    ),
                ))
            }
        },
    };
    Ok(PartitionAssignment::Group {
        repartition_topic,
        repartition_partitions,
    })
}

/// librdkafka settings of the source's consumers, chosen for low latency with high throughput;
/// all can be overridden through `properties.*`.
pub const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    // Answer a fetch as soon as one byte is there, and wait at most 5 ms for it: latency.
    ("fetch.wait.max.ms", "5"),
    ("fetch.min.bytes", "1"),
    // Prefetch up to 8 MiB for the whole consumer (with `assign()` the limit covers the
    // consumer's queue, not each partition; librdkafka's default is 64 MiB): bounded memory.
    ("queued.max.messages.kbytes", "8192"),
    ("queued.min.messages", "50000"),
    // When that queue is full librdkafka postpones the next fetch of each partition by this
    // much (default 1000 ms): with many partitions per shard the shards then idle. 10 ms
    // measured 14x faster with 8 partitions per shard (docs/benchmarks.md).
    ("fetch.queue.backoff.ms", "10"),
    ("socket.nagle.disable", "true"),
    ("auto.offset.reset", "earliest"),
];

/// librdkafka settings the source relies on; they override the user's properties: offsets
/// are only committed by spillway's committer, and a source never creates its topic.
pub const CONSUMER_FORCED: &[(&str, &str)] = &[
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    ("enable.partition.eof", "false"),
    ("allow.auto.create.topics", "false"),
];

impl KafkaSourceOptions {
    /// The librdkafka configuration of a consumer of this table: the defaults, the user's
    /// properties, the group id and the forced settings. `client_suffix` names the client
    /// (e.g. `shard3`) in the broker's logs.
    pub fn consumer_config(&self, table: &str, client_suffix: &str) -> ClientConfig {
        let mut config = client_config(CONSUMER_DEFAULTS, &self.common.properties);
        config.set("group.id", &self.group_id);
        if !self.common.properties.contains_key("client.id") {
            config.set("client.id", format!("spillway-{table}-{client_suffix}"));
        }
        for (k, v) in CONSUMER_FORCED {
            config.set(*k, *v);
        }
        config
    }
}

/// Default of `sink.flush.timeout`.
pub const FLUSH_TIMEOUT_MS_DEFAULT: u64 = 30_000;

/// Options accepted by the Kafka sink besides `properties.*`.
const SINK_KEYS: &[&str] = &[
    "connector",
    "topic",
    "format",
    "key.fields",
    "sink.delivery-guarantee",
    "sink.flush.timeout",
    "sink.connect.timeout",
    "sink.transactional-id-prefix",
    "sink.transaction.timeout",
    "sink.transaction.buffer-bytes",
];

/// Default of `sink.transaction.timeout` (librdkafka's `transaction.timeout.ms` default).
pub const TRANSACTION_TIMEOUT_MS_DEFAULT: u64 = 60_000;
/// Default of `sink.transaction.buffer-bytes`: the encoded records of one shard's epoch kept
/// until the epoch is prepared.
pub const TRANSACTION_BUFFER_BYTES_DEFAULT: usize = 256 << 20;
/// Largest `sink.transaction.buffer-bytes`.
pub const TRANSACTION_BUFFER_BYTES_MAX: usize = 4 << 30;

/// `sink.delivery-guarantee`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryGuarantee {
    /// `flush` waits until the brokers acknowledged every record (acks=all); a failed
    /// delivery fails the next `write` or `flush`.
    AtLeastOnce,
    /// Fire and forget (acks=1): `flush` does not wait, failed deliveries are only logged.
    None,
    /// Each checkpoint epoch's records are written in one Kafka transaction per shard, which
    /// commits with the source's offsets once the checkpoint is durable (see `kafka_txn`).
    ExactlyOnce,
}

/// The transactional settings of an exactly-once Kafka sink.
#[derive(Debug, Clone)]
pub struct TransactionOptions {
    /// `sink.transactional-id-prefix` (default: derived from the source's group and the
    /// table).
    pub id_prefix: Option<String>,
    /// `sink.transaction.timeout` (default 60 s): librdkafka's `transaction.timeout.ms`.
    pub timeout_ms: u64,
    /// `sink.transaction.buffer-bytes`: limit of one shard's encoded records per epoch.
    pub buffer_bytes: usize,
}

/// The options of a Kafka sink table, parsed and checked (the key fields are checked against
/// the schema by the sink).
#[derive(Debug, Clone)]
pub struct KafkaSinkOptions {
    /// Topic, servers and librdkafka properties.
    pub common: KafkaCommonOptions,
    /// `key.fields`: the columns whose JSON object is the message key (none: no key).
    pub key_fields: Vec<String>,
    /// `sink.delivery-guarantee` (default at-least-once).
    pub guarantee: DeliveryGuarantee,
    /// `sink.flush.timeout` (default 30 s).
    pub flush_timeout_ms: u64,
    /// `sink.connect.timeout` (default 10 s): for the check that the topic exists.
    pub connect_timeout_ms: u64,
    /// The transactional settings (used with exactly-once).
    pub transaction: TransactionOptions,
}

/// librdkafka settings of the sink's producers (overridable through `properties.*`): send
/// after at most 2 ms of batching, up to 10000 records per request, with a bounded queue.
pub const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("linger.ms", "2"),
    ("batch.num.messages", "10000"),
    ("queue.buffering.max.messages", "100000"),
    ("queue.buffering.max.kbytes", "65536"),
    ("socket.nagle.disable", "true"),
];

impl KafkaSinkOptions {
    /// Parses a sink table's options; errors name the option and the value.
    pub fn parse(table: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        let common = parse_common(table, options, SINK_KEYS)?;
        let mut key_fields = Vec::new();
        if let Some(text) = options.get("key.fields") {
            for name in text.split(';').map(str::trim) {
                if name.is_empty() || key_fields.iter().any(|k| k == name) {
                    return Err(ConnectorError::config(
                        table,
                        format!(
                            "option 'key.fields' = '{text}': expected distinct column names \
                             separated by ';'"
                        ),
                    ));
                }
                key_fields.push(name.to_string());
            }
        }
        let guarantee = match choice(
            table,
            options,
            "sink.delivery-guarantee",
            &["at-least-once", "none", "exactly-once"],
            "at-least-once",
        )? {
            "at-least-once" => DeliveryGuarantee::AtLeastOnce,
            "none" => DeliveryGuarantee::None,
            _ => DeliveryGuarantee::ExactlyOnce,
        };
        if guarantee != DeliveryGuarantee::ExactlyOnce {
            for key in [
                "sink.transactional-id-prefix",
                "sink.transaction.timeout",
                "sink.transaction.buffer-bytes",
            ] {
                if options.contains_key(key) {
                    return Err(ConnectorError::config(
                        table,
                        format!(
                            "option '{key}' applies only to 'sink.delivery-guarantee' = \
                             'exactly-once'"
                        ),
                    ));
                }
            }
        }
        if common.properties.contains_key("transactional.id") {
            return Err(ConnectorError::config(
                table,
                "property 'transactional.id' is set by the sink (one per shard); use option \
                 'sink.transactional-id-prefix' instead",
            ));
        }
        let id_prefix = match options.get("sink.transactional-id-prefix") {
            Some(p) if p.trim().is_empty() => {
                return Err(ConnectorError::config(
                    table,
                    "option 'sink.transactional-id-prefix' is empty",
                ))
            }
            other => other.map(|p| p.trim().to_string()),
        };
        let transaction = TransactionOptions {
            id_prefix,
            timeout_ms: duration_ms(
                table,
                options,
                "sink.transaction.timeout",
                TRANSACTION_TIMEOUT_MS_DEFAULT,
            )?,
            buffer_bytes: bytes(
                table,
                options,
                "sink.transaction.buffer-bytes",
                TRANSACTION_BUFFER_BYTES_DEFAULT,
                TRANSACTION_BUFFER_BYTES_MAX,
            )?,
        };
        Ok(KafkaSinkOptions {
            common,
            key_fields,
            guarantee,
            flush_timeout_ms: duration_ms(
                table,
                options,
                "sink.flush.timeout",
                FLUSH_TIMEOUT_MS_DEFAULT,
            )?,
            connect_timeout_ms: duration_ms(
                table,
                options,
                "sink.connect.timeout",
                CONNECT_TIMEOUT_MS_DEFAULT,
            )?,
            transaction,
        })
    }

    /// The librdkafka configuration of a producer of this table: the defaults, `acks` by the
    /// delivery guarantee, then the user's properties.
    pub fn producer_config(&self, table: &str, client_suffix: &str) -> ClientConfig {
        let acks = match self.guarantee {
            DeliveryGuarantee::AtLeastOnce | DeliveryGuarantee::ExactlyOnce => "all",
            DeliveryGuarantee::None => "1",
        };
        let mut defaults = PRODUCER_DEFAULTS.to_vec();
        defaults.push(("acks", acks));
        let mut config = client_config(&defaults, &self.common.properties);
        if !self.common.properties.contains_key("client.id") {
            config.set("client.id", format!("spillway-{table}-{client_suffix}"));
        }
        config
    }

    /// The configuration of a transactional producer with `transactional_id`.
    pub fn transactional_config(
        &self,
        table: &str,
        client_suffix: &str,
        transactional_id: &str,
    ) -> ClientConfig {
        let mut config = self.producer_config(table, client_suffix);
        config.set("enable.idempotence", "true");
        config.set("acks", "all");
        config.set("transactional.id", transactional_id);
        config.set(
            "transaction.timeout.ms",
            self.transaction.timeout_ms.to_string(),
        );
        config
    }
}

/// Shortest interval between two warnings of one kind from one source or sink.
pub const WARN_INTERVAL_MS: u64 = 5_000;

/// Lets one warning through per [`WARN_INTERVAL_MS`] and counts the others (a broker that is
/// down makes librdkafka report the same error many times a second).
#[derive(Debug, Default)]
pub struct WarnLimiter {
    last: Option<std::time::Instant>,
    suppressed: u64,
}

impl WarnLimiter {
    /// `Some(number suppressed since the last one)` when a warning may be logged now.
    pub fn allow(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < Duration::from_millis(WARN_INTERVAL_MS) => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// Checks that every key of `options` is in `accepted` or starts with `properties.`, that
/// `connector` (when given) is 'kafka' and `format` (when given) is 'json', and parses the
/// topic, the bootstrap servers and the librdkafka properties (validated by librdkafka).
pub fn parse_common(
    table: &str,
    options: &BTreeMap<String, String>,
    accepted: &[&str],
) -> Result<KafkaCommonOptions> {
    for key in options.keys() {
        let known = accepted.contains(&key.as_str())
            || (key.starts_with(PROPERTIES_PREFIX) && key.len() > PROPERTIES_PREFIX.len());
        if !known {
            return Err(ConnectorError::config(
                table,
                format!(
                    "unknown option '{key}' for connector 'kafka' (accepted: {}, properties.*)",
                    accepted.join(", ")
                ),
            ));
        }
    }
    if let Some(connector) = options.get("connector") {
        if connector != "kafka" {
            return Err(ConnectorError::config(
                table,
                format!("option 'connector' = '{connector}' given to the Kafka connector"),
            ));
        }
    }
    if let Some(format) = options.get("format") {
        if format != "json" {
            return Err(ConnectorError::config(
                table,
                format!("option 'format' = '{format}' is not supported (accepted: json)"),
            ));
        }
    }
    let topic = required(table, options, "topic")?.to_string();
    let bootstrap_servers = required(table, options, "properties.bootstrap.servers")?.to_string();
    let properties: BTreeMap<String, String> = options
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(PROPERTIES_PREFIX)
                .map(|k| (k.to_string(), v.clone()))
        })
        .collect();
    // Let librdkafka check names and values now, so a typo fails at CREATE TABLE time.
    let mut config = ClientConfig::new();
    for (k, v) in &properties {
        config.set(k, v);
    }
    if let Err(e) = config.create_native_config() {
        let message = match e {
            KafkaError::ClientConfig(_, desc, key, value) => {
                format!("option 'properties.{key}' = '{value}' is rejected by librdkafka: {desc}")
            }
            other => format!("librdkafka rejects the properties: {other}"),
        };
        return Err(ConnectorError::config(table, message));
    }
    Ok(KafkaCommonOptions {
        topic,
        bootstrap_servers,
        properties,
    })
}

/// The value of a required, non-empty option.
pub fn required<'a>(
    table: &str,
    options: &'a BTreeMap<String, String>,
    key: &str,
) -> Result<&'a str> {
    match options.get(key).map(|v| v.trim()) {
        Some(v) if !v.is_empty() => Ok(v),
        Some(_) => Err(ConnectorError::config(
            table,
            format!("option '{key}' is empty"),
        )),
        None => Err(ConnectorError::config(
            table,
            format!("option '{key}' is required by connector 'kafka'"),
        )),
    }
}

/// A duration option such as `'10 s'` or `'500 ms'` in milliseconds (`default_ms` if absent);
/// must be positive and at most [`TIMEOUT_MS_MAX`].
pub fn duration_ms(
    table: &str,
    options: &BTreeMap<String, String>,
    key: &str,
    default_ms: u64,
) -> Result<u64> {
    let Some(text) = options.get(key) else {
        return Ok(default_ms);
    };
    match parse_duration_ms(text) {
        Some(ms) if ms > 0 && ms as u64 <= TIMEOUT_MS_MAX => Ok(ms as u64),
        _ => Err(ConnectorError::config(
            table,
            format!(
                "option '{key}' = '{text}' is not a duration between 1 ms and 1 day \
                 (e.g. '10 s', '500 ms', '2 min')"
            ),
        )),
    }
}

/// One of a fixed set of words (`default` if absent).
pub fn choice<'a>(
    table: &str,
    options: &BTreeMap<String, String>,
    key: &str,
    choices: &[&'a str],
    default: &'a str,
) -> Result<&'a str> {
    let Some(text) = options.get(key) else {
        return Ok(default);
    };
    let text = text.trim();
    choices
        .iter()
        .copied()
        .find(|c| c.eq_ignore_ascii_case(text))
        .ok_or_else(|| {
            ConnectorError::config(
                table,
                format!(
                    "option '{key}' = '{text}' is not valid (accepted: {})",
                    choices.join(", ")
                ),
            )
        })
}

/// A positive byte count (plain integer) between 1 and `max` (`default` if absent).
pub fn bytes(
    table: &str,
    options: &BTreeMap<String, String>,
    key: &str,
    default: usize,
    max: usize,
) -> Result<usize> {
    let Some(text) = options.get(key) else {
        return Ok(default);
    };
    match text.trim().parse::<usize>() {
        Ok(n) if n >= 1 && n <= max => Ok(n),
        _ => Err(ConnectorError::config(
            table,
            format!("option '{key}' = '{text}' is not a byte count between 1 and {max}"),
        )),
    }
}

/// A duration for messages: `10 s`, `500 ms`, `2 min`.
#[allow(clippy::manual_is_multiple_of)] // is_multiple_of needs Rust 1.87; we support 1.85
pub fn format_duration_ms(ms: u64) -> String {
    if ms >= 60_000 && ms % 60_000 == 0 {
        format!("{} min", ms / 60_000)
    } else if ms >= 1_000 && ms % 1_000 == 0 {
        format!("{} s", ms / 1_000)
    } else {
        format!("{ms} ms")
    }
}

/// A librdkafka configuration: the connector's `defaults` first, then the user's `properties`
/// (which win).
pub fn client_config(
    defaults: &[(&str, &str)],
    properties: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (k, v) in defaults {
        config.set(*k, *v);
    }
    for (k, v) in properties {
        config.set(k, v);
    }
    config
}

/// Checks that the brokers answer within `timeout_ms` and that `topic` exists (never creating
/// it), and returns its partition numbers, sorted.
///
/// Errors: "cannot reach Kafka at SERVERS within 10 s: ...", "topic 'x' does not exist at
/// SERVERS", or the topic's error as the broker reports it.
pub fn topic_partitions(
    properties: &BTreeMap<String, String>,
    bootstrap_servers: &str,
    topic: &str,
    timeout_ms: u64,
) -> Result<Vec<i32>> {
    let mut config = client_config(&[("allow.auto.create.topics", "false")], properties);
    // A metadata request must never create the topic, whatever the user's properties say.
    config.set("allow.auto.create.topics", "false");
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| ConnectorError::Kafka(format!("cannot create a Kafka client: {e}")))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_millis(timeout_ms))
        .map_err(|e| {
            ConnectorError::Kafka(format!(
                "cannot reach Kafka at {bootstrap_servers} within {}: {e}",
                format_duration_ms(timeout_ms)
            ))
        })?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(missing_topic(topic, bootstrap_servers));
    };
    if let Some(err) = found.error() {
        let code = rdkafka::error::RDKafkaErrorCode::from(err);
        if code == rdkafka::error::RDKafkaErrorCode::UnknownTopicOrPartition {
            return Err(missing_topic(topic, bootstrap_servers));
        }
        return Err(ConnectorError::Kafka(format!(
            "topic '{topic}' at {bootstrap_servers}: {code}"
        )));
    }
    let mut partitions: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
    if partitions.is_empty() {
        return Err(missing_topic(topic, bootstrap_servers));
    }
    partitions.sort_unstable();
    Ok(partitions)
}

fn missing_topic(topic: &str, bootstrap_servers: &str) -> ConnectorError {
    ConnectorError::Kafka(format!(
        "topic '{topic}' does not exist at {bootstrap_servers} (create it first; \
         spillway never creates topics)"
    ))
}

#[cfg(test)]
#[path = "kafka_options_tests.rs"]
mod tests;
