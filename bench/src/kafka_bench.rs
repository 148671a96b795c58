//! `spillway-bench kafka`: a backlog of generated trades produced into the embedded Kafka
//! (librdkafka's mock cluster) first, then the trades query reads it end to end through the
//! real Kafka source with `'scan.bounded.mode' = 'latest-offset'` into a checking sink.
//!
//! The mock cluster keeps at most 5 MiB of record batches per partition (a constant of
//! librdkafka, `rdkafka_mock.c`) and silently drops older batches beyond that. A backlog
//! larger than [`ROUND_PARTITION_BYTES_MAX`] per partition is therefore produced in rounds,
//! one topic per round, and each run reads the rounds one bounded job after another; a run's
//! figures are the sums over its rounds (so each job's start-up is included).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord};
use spillway_connectors::embedded_kafka::EmbeddedKafka;
use spillway_engine::job::{prepare, JobOptions};

use crate::checking_sink::CheckingSinkFactory;
use crate::delivery::{wait_for_deliveries, DeliveryCounter};
use crate::error::{BenchError, Result};
use crate::figures::{BenchSummary, RunFigures};
use crate::job_runner::{job_deadline, run_with_deadline};
use crate::memory_bench::check_runs_and_shards;
use crate::trades_data::{Expected, TradeDataConfig, TradeStream};
use crate::trades_query::{check_report, default_shards, trades_program};

/// Topic of the backlog's first round; round r > 0 goes to `trades-r`.
pub const TOPIC: &str = "trades";
/// Payload bytes produced to one partition in one round: below the 5 MiB the mock cluster
/// keeps per partition, with room for the record batches' own overhead.
pub const ROUND_PARTITION_BYTES_MAX: usize = 3 << 20;
/// Largest number of rounds (topics) of one backlog.
const ROUNDS_MAX: usize = 10_000;
/// Messages the producer may hold before `send` reports a full queue.
const PRODUCER_QUEUE_MESSAGES_MAX: &str = "2000000";
/// Kilobytes the producer may hold before `send` reports a full queue.
const PRODUCER_QUEUE_KBYTES_MAX: &str = "1048576";
/// How long the producer waits to fill a batch, ms.
const PRODUCER_LINGER_MS: &str = "20";
/// Messages of one produce batch.
const PRODUCER_BATCH_MESSAGES_MAX: &str = "10000";
/// Bytes of one produce batch.
const PRODUCER_BATCH_BYTES_MAX: &str = "1000000";
/// Sends between two non-blocking polls of the producer (which serve delivery reports).
const SENDS_PER_POLL: u64 = 1_000;
/// Longest wait for a round's last deliveries.
const DELIVERY_WAIT_MS_MAX: u64 = 120_000;

/// Options of the Kafka benchmark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaBenchOptions {
    /// The generated trades, one topic partition per data partition.
    pub data: TradeDataConfig,
    /// Shards (cores); None = one per partition, at most one per core.
    pub shards: Option<usize>,
    /// Checked runs over the same backlog; the report gives their median.
    pub runs: usize,
    /// Pin each shard to its own core.
    pub pin_cores: bool,
    /// Payload bytes per partition of one round (at most [`ROUND_PARTITION_BYTES_MAX`]).
    pub round_partition_bytes_max: usize,
    /// Extra librdkafka consumer settings, passed as `properties.KEY` table options (for
    /// tuning experiments, e.g. `fetch.queue.backoff.ms`).
    pub consumer_properties: Vec<(String, String)>,
}

impl KafkaBenchOptions {
    /// `events` trades over `partitions` partitions, default shards, one run.
    pub fn new(events: u64, partitions: usize) -> Self {
        KafkaBenchOptions {
            data: TradeDataConfig::new(events, partitions),
            shards: None,
            runs: 1,
            pin_cores: true,
            round_partition_bytes_max: ROUND_PARTITION_BYTES_MAX,
            consumer_properties: Vec::new(),
        }
    }
}

/// One round of the backlog: a topic and the oracle of its trades.
struct Round {
    topic: String,
    expected: Expected,
}

/// Produces the backlog (trade i to partition i mod P) as fast as the mock cluster takes
/// it, in rounds of at most [`ROUND_PARTITION_BYTES_MAX`] per partition; returns the rounds
/// and the produce rate in events/s.
fn produce_backlog(
    kafka: &EmbeddedKafka,
    data: &TradeDataConfig,
    round_bytes_max: usize,
) -> Result<(Vec<Round>, f64)> {
    let bootstrap = kafka.bootstrap_servers();
    let producer: BaseProducer<DeliveryCounter> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", PRODUCER_LINGER_MS)
        .set("batch.num.messages", PRODUCER_BATCH_MESSAGES_MAX)
        .set("batch.size", PRODUCER_BATCH_BYTES_MAX)
        .set("queue.buffering.max.messages", PRODUCER_QUEUE_MESSAGES_MAX)
        .set("queue.buffering.max.kbytes", PRODUCER_QUEUE_KBYTES_MAX)
        .set("acks", "1")
        .create_with_context(DeliveryCounter::default())
        .map_err(|e| BenchError::Kafka(format!("cannot create the producer: {e}")))?;
    let started = Instant::now();
    let mut stream = TradeStream::new(data)?;
    let mut rounds = Vec::new();
    let mut sent: u64 = 0;
    let mut since_poll: u64 = 0;
    while stream.remaining() > 0 {
        if rounds.len() >= ROUNDS_MAX {
            return Err(BenchError::Config(format!(
                "the backlog needs more than {ROUNDS_MAX} rounds; use more partitions"
            )));
        }
        let topic = match rounds.len() {
            0 => TOPIC.to_string(),
            r => format!("{TOPIC}-{r}"),
        };
        kafka.create_topic(&topic, data.partitions as i32)?;
        let mut bytes = vec![0usize; data.partitions];
        let expected = stream.next_chunk(|partition, line| {
            let mut record = BaseRecord::to(&topic)
                .payload(line)
                .partition(partition as i32);
            loop {
                match producer.send::<(), [u8]>(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // The local queue is full: serve delivery reports while it drains.
                        producer.poll(Duration::from_millis(5));
                        record = back;
                    }
                    Err((e, _)) => {
                        return Err(BenchError::Kafka(format!(
                            "cannot send trade {sent} to {topic} partition {partition}: {e}"
                        )))
                    }
                }
            }
            sent += 1;
            since_poll += 1;
            if since_poll == SENDS_PER_POLL {
                since_poll = 0;
                producer.poll(Duration::ZERO);
            }
            bytes[partition] += line.len();
            Ok(bytes[partition] < round_bytes_max)
        })?;
        wait_for_deliveries(&producer, "trades", Some(sent), DELIVERY_WAIT_MS_MAX)?;
        check_backlog(&bootstrap, &topic, data.partitions, expected.events)?;
        rounds.push(Round { topic, expected });
    }
    let rate = data.events as f64 / started.elapsed().as_secs_f64().max(1e-9);
    Ok((rounds, rate))
}

/// Checks `topic` holds exactly `events` records (the sum over its partitions of the high
/// minus the low watermark): the mock cluster drops old batches silently when a partition
/// outgrows its size limit, and a short read must be the source's fault, not the backlog's.
pub fn check_backlog(bootstrap: &str, topic: &str, partitions: usize, events: u64) -> Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| BenchError::Kafka(format!("cannot create a consumer: {e}")))?;
    let mut held: i64 = 0;
    let mut low_max: i64 = 0;
    for p in 0..partitions as i32 {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .map_err(|e| {
                BenchError::Kafka(format!("cannot read the offsets of {topic} [{p}]: {e}"))
            })?;
        held += high - low;
        low_max = low_max.max(low);
    }
    if held != events as i64 || low_max != 0 {
        return Err(BenchError::Kafka(format!(
            "{topic} holds {held} records (lowest offset up to {low_max}) after producing \
             {events}: the mock cluster dropped or duplicated records (too many bytes per \
             partition?)"
        )));
    }
    Ok(())
}

/// Runs the query once over one round's topic and checks its result.
fn run_round(
    bootstrap: &str,
    round: &Round,
    opts: &KafkaBenchOptions,
    shards: usize,
) -> Result<RunFigures> {
    let properties: Vec<(String, &str)> = opts
        .consumer_properties
        .iter()
        .map(|(k, v)| (format!("properties.{k}"), v.as_str()))
        .collect();
    let mut source_options = vec![
        ("connector", "kafka"),
        ("topic", round.topic.as_str()),
        ("format", "json"),
        ("properties.bootstrap.servers", bootstrap),
        ("properties.group.id", "spillway-bench"),
        ("scan.startup.mode", "earliest-offset"),
        ("scan.bounded.mode", "latest-offset"),
    ];
    source_options.extend(properties.iter().map(|(k, v)| (k.as_str(), *v)));
    let program = trades_program(&source_options, &[("connector", "checking")])?;
    let sink = Arc::new(CheckingSinkFactory::new());
    let job_opts = JobOptions {
        shards: Some(shards),
        pin_cores: opts.pin_cores,
        sink_override: Some(sink.clone()),
        ..JobOptions::default()
    };
    let job = prepare(&program, &job_opts)?;
    if job.partitions.len() != opts.data.partitions {
        return Err(BenchError::WrongResult(format!(
            "the Kafka source found {} partitions of {}, the topic has {}",
            job.partitions.len(),
            round.topic,
            opts.data.partitions
        )));
    }
    let report = run_with_deadline(job, &job_opts, job_deadline(round.expected.events))?;
    check_report(&report, &round.expected)?;
    sink.check(&round.expected)?;
    Ok(RunFigures::from_report(&report))
}

/// Starts the embedded Kafka, produces the backlog, then runs the query `runs` times over
/// it (each round of each run from the earliest offsets to the offsets seen at its start),
/// checking each result before keeping its figures.
pub fn run_kafka(opts: &KafkaBenchOptions) -> Result<BenchSummary> {
    check_runs_and_shards(opts.runs, opts.shards)?;
    opts.data.validate()?;
    if !(1..=ROUND_PARTITION_BYTES_MAX).contains(&opts.round_partition_bytes_max) {
        return Err(BenchError::Config(format!(
            "round_partition_bytes_max {} is out of range [1, {ROUND_PARTITION_BYTES_MAX}]",
            opts.round_partition_bytes_max
        )));
    }
    let kafka = EmbeddedKafka::start(1)?;
    let bootstrap = kafka.bootstrap_servers();
    let (rounds, produce_rate) =
        produce_backlog(&kafka, &opts.data, opts.round_partition_bytes_max)?;
    let shards = opts
        .shards
        .unwrap_or_else(|| default_shards(opts.data.partitions));
    let mut runs = Vec::with_capacity(opts.runs);
    for _ in 0..opts.runs {
        let mut total: Option<RunFigures> = None;
        for round in &rounds {
            let figures = run_round(&bootstrap, round, opts, shards)?;
            match &mut total {
                Some(t) => t.append(&figures),
                None => total = Some(figures),
            }
        }
        if let Some(t) = total {
            runs.push(t);
        }
    }
    drop(kafka);
    let rows: u64 = rounds.iter().map(|r| r.expected.rows()).sum();
    Ok(BenchSummary {
        name: "kafka",
        partitions: opts.data.partitions,
        runs,
        extra: vec![
            ("produce_events_per_second", produce_rate.round()),
            ("rounds", rounds.len() as f64),
            ("result_rows_expected", rows as f64),
        ],
    })
}
