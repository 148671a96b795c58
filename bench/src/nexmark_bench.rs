//! `spillway-bench nexmark`: a Nexmark query of `examples/nexmark/` over the `nexmark`
//! source (in process) or, with `--broker mock`, over the same events written to the
//! embedded Kafka first (each table the query reads to its own topic), into a checking
//! sink. Every run's result is checked against an oracle computed from the generated events
//! (row count and column sums, `nexmark_check.rs`) before its figures count.
//!
//! The figures count the records read of the query's tables (`events`: the bids of a query
//! over bids), as the other benchmarks count records; the stream's events of all kinds
//! (those of other tables are stepped over) are in the extra figures.

use std::sync::Arc;

use clap::Args;
use rdkafka::config::ClientConfig;
use rdkafka::producer::BaseProducer;
use spillway_connectors::embedded_kafka::EmbeddedKafka;
use spillway_connectors::nexmark::model::PROPORTION_DENOMINATOR;
use spillway_connectors::nexmark::{write_to_kafka, EventKind, NexmarkTopics, StreamConfig};
use spillway_engine::job::{prepare, JobOptions, JobReport};
use spillway_engine::plan::Program;
use spillway_engine::sql::parse_program;

use crate::delivery::{wait_for_deliveries, DeliveryCounter};
use crate::error::{BenchError, Result};
use crate::figures::{BenchSummary, RunFigures};
use crate::job_runner::{job_deadline, run_with_deadline};
use crate::kafka_bench::ROUND_PARTITION_BYTES_MAX;
use crate::memory_bench::check_runs_and_shards;
use crate::nexmark_check::{nexmark_expected, NexmarkCheckSinkFactory, NexmarkExpected};

/// One benchmarked query: its file stem, its name in reports, its SQL, and the nexmark
/// tables it reads (each table is named for its kind of event).
#[derive(Debug, Clone, Copy)]
pub struct NexmarkQuery {
    pub name: &'static str,
    pub bench_name: &'static str,
    pub sql: &'static str,
    pub tables: &'static [EventKind],
}

/// The tables of the queries over bids only.
const BIDS: &[EventKind] = &[EventKind::Bid];
/// The tables of the joins of persons and auctions (q3, q8).
const PERSONS_AUCTIONS: &[EventKind] = &[EventKind::Person, EventKind::Auction];
/// The tables of the joins of auctions and bids (q4, q9).
const AUCTIONS_BIDS: &[EventKind] = &[EventKind::Auction, EventKind::Bid];

/// The queries of `examples/nexmark/`.
pub const NEXMARK_QUERIES: &[NexmarkQuery] = &[
    NexmarkQuery {
        name: "q0",
        bench_name: "nexmark q0",
        sql: include_str!("../../examples/nexmark/q0.sql"),
        tables: BIDS,
    },
    NexmarkQuery {
        name: "q1",
        bench_name: "nexmark q1",
        sql: include_str!("../../examples/nexmark/q1.sql"),
        tables: BIDS,
    },
    NexmarkQuery {
        name: "q2",
        bench_name: "nexmark q2",
        sql: include_str!("../../examples/nexmark/q2.sql"),
        tables: BIDS,
    },
    NexmarkQuery {
        name: "q3",
        bench_name: "nexmark q3",
        sql: include_str!("../../examples/nexmark/q3.sql"),
        tables: PERSONS_AUCTIONS,
    },
    NexmarkQuery {
        name: "q4",
        bench_name: "nexmark q4",
        sql: include_str!("../../examples/nexmark/q4.sql"),
        tables: AUCTIONS_BIDS,
    },
    NexmarkQuery {
        name: "q5",
        bench_name: "nexmark q5",
        sql: include_str!("../../examples/nexmark/q5.sql"),
        tables: BIDS,
    },
    NexmarkQuery {
        name: "q7",
        bench_name: "nexmark q7",
        sql: include_str!("../../examples/nexmark/q7.sql"),
        tables: BIDS,
    },
    NexmarkQuery {
        name: "q7_simplified",
        bench_name: "nexmark q7_simplified",
        sql: include_str!("../../examples/nexmark/q7_simplified.sql"),
        tables: BIDS,
    },
    NexmarkQuery {
        name: "q8",
        bench_name: "nexmark q8",
        sql: include_str!("../../examples/nexmark/q8.sql"),
        tables: PERSONS_AUCTIONS,
    },
    NexmarkQuery {
        name: "q9",
        bench_name: "nexmark q9",
        sql: include_str!("../../examples/nexmark/q9.sql"),
        tables: AUCTIONS_BIDS,
    },
    NexmarkQuery {
        name: "q11",
        bench_name: "nexmark q11",
        sql: include_str!("../../examples/nexmark/q11.sql"),
        tables: BIDS,
    },
    NexmarkQuery {
        name: "window_auction",
        bench_name: "nexmark window_auction",
        sql: include_str!("../../examples/nexmark/window_auction.sql"),
        tables: BIDS,
    },
    NexmarkQuery {
        name: "window_channel",
        bench_name: "nexmark window_channel",
        sql: include_str!("../../examples/nexmark/window_channel.sql"),
        tables: BIDS,
    },
];

/// Largest `--events`.
pub const NEXMARK_EVENTS_MAX: u64 = 1_000_000_000;
/// Largest `--partitions`.
const PARTITIONS_MAX: usize = 1024;
/// Upper bounds of one event's JSON bytes (numbers, texts, and an `extra` field of at most
/// 1.2 times the bytes the event misses to its kind's average size): a bid's at most 81
/// extra letters, an auction's 397, a person's about 180.
const BID_JSON_BYTES_MAX: usize = 320;
const AUCTION_JSON_BYTES_MAX: usize = 800;
const PERSON_JSON_BYTES_MAX: usize = 400;
/// Smallest payload bytes per partition of one round of `--broker mock` (a round holds at
/// least one cycle of the stream then).
const ROUND_PARTITION_BYTES_MIN: usize = 64 << 10;
/// Messages and kilobytes the producer of `--broker mock` may hold.
const PRODUCER_QUEUE_MESSAGES_MAX: &str = "1000000";
const PRODUCER_QUEUE_KBYTES_MAX: &str = "1048576";
/// Longest wait for a round's last deliveries, ms.
const DELIVERY_WAIT_MS_MAX: u64 = 120_000;

/// Where the events come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NexmarkBroker {
    /// The `nexmark` source generates them inside the job.
    None,
    /// Written to the embedded Kafka mock cluster first, read through the Kafka source.
    Mock,
}

/// The command-line arguments of `spillway-bench nexmark`.
#[derive(Args, Debug, Clone)]
pub struct NexmarkArgs {
    /// q0, q1, q2, q3, q4, q5, q7, q7_simplified, q8, q9, q11, window_auction or
    /// window_channel (examples/nexmark/).
    #[arg(long, default_value = "q1")]
    pub query: String,
    /// Events of the whole stream (persons, auctions and bids).
    #[arg(long, default_value_t = 10_000_000)]
    pub events: u64,
    /// Shards (cores).
    #[arg(long, default_value_t = 1)]
    pub shards: usize,
    /// Partitions of the stream; default one per shard.
    #[arg(long)]
    pub partitions: Option<usize>,
    /// Checked runs; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// `none` (generated inside the job) or `mock` (written to an embedded Kafka first).
    #[arg(long, default_value = "none")]
    pub broker: String,
    /// Seed of the stream.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Do not pin shards to cores.
    #[arg(long)]
    pub no_pin: bool,
    /// Also print one machine-readable JSON line.
    #[arg(long)]
    pub json: bool,
}

impl NexmarkArgs {
    /// The options these arguments give.
    pub fn options(&self) -> Result<NexmarkBenchOptions> {
        let broker = match self.broker.as_str() {
            "none" => NexmarkBroker::None,
            "mock" => NexmarkBroker::Mock,
            other => {
                return Err(BenchError::Config(format!(
                    "--broker {other}: expected 'none' or 'mock'"
                )))
            }
        };
        let mut opts = NexmarkBenchOptions::new(&self.query, self.events)?;
        opts.shards = self.shards;
        opts.partitions = self.partitions.unwrap_or(self.shards);
        opts.runs = self.runs;
        opts.broker = broker;
        opts.seed = self.seed;
        opts.pin_cores = !self.no_pin;
        Ok(opts)
    }
}

/// Options of the Nexmark benchmark.
#[derive(Debug, Clone, Copy)]
pub struct NexmarkBenchOptions {
    pub query: NexmarkQuery,
    /// Events of the whole stream.
    pub events: u64,
    pub shards: usize,
    pub partitions: usize,
    pub runs: usize,
    pub broker: NexmarkBroker,
    pub seed: u64,
    pub pin_cores: bool,
    /// `--broker mock`: payload bytes per partition of one round (at most
    /// [`ROUND_PARTITION_BYTES_MAX`]).
    pub round_partition_bytes: usize,
}

impl NexmarkBenchOptions {
    /// Query `query` over `events` events, one shard and partition, one run, in process.
    pub fn new(query: &str, events: u64) -> Result<Self> {
        let query = NEXMARK_QUERIES
            .iter()
            .find(|q| q.name.eq_ignore_ascii_case(query))
            .copied()
            .ok_or_else(|| {
                let names: Vec<&str> = NEXMARK_QUERIES.iter().map(|q| q.name).collect();
                BenchError::Config(format!("--query {query}: expected one of {names:?}"))
            })?;
        Ok(NexmarkBenchOptions {
            query,
            events,
            shards: 1,
            partitions: 1,
            runs: 1,
            broker: NexmarkBroker::None,
            seed: 0,
            pin_cores: true,
            round_partition_bytes: ROUND_PARTITION_BYTES_MAX,
        })
    }

    fn stream(&self) -> StreamConfig {
        StreamConfig {
            seed: self.seed,
            ..StreamConfig::default()
        }
    }

    fn validate(&self) -> Result<()> {
        check_runs_and_shards(self.runs, Some(self.shards))?;
        if self.events == 0 || self.events > NEXMARK_EVENTS_MAX {
            return Err(BenchError::Config(format!(
                "--events {} is out of range [1, {NEXMARK_EVENTS_MAX}]",
                self.events
            )));
        }
        if self.partitions == 0 || self.partitions > PARTITIONS_MAX {
            return Err(BenchError::Config(format!(
                "--partitions {} is out of range [1, {PARTITIONS_MAX}]",
                self.partitions
            )));
        }
        let round_bytes = ROUND_PARTITION_BYTES_MIN..=ROUND_PARTITION_BYTES_MAX;
        if !round_bytes.contains(&self.round_partition_bytes) {
            return Err(BenchError::Config(format!(
                "round_partition_bytes {} is out of range {round_bytes:?}",
                self.round_partition_bytes
            )));
        }
        Ok(())
    }
}

/// The query's program with each source table's options replaced by
/// `source_options(kind)` (`kind`: the events the table reads) and the sink table set to
/// `blackhole` (the job's sink override replaces it).
fn program(
    query: &NexmarkQuery,
    source_options: impl Fn(EventKind) -> Vec<(&'static str, String)>,
) -> Result<Program> {
    let mut program = parse_program(query.sql)?;
    let sink = match program.pipelines.as_slice() {
        [p] => p.sink.clone(),
        _ => {
            return Err(BenchError::Config(format!(
                "examples/nexmark/{}.sql must hold one INSERT",
                query.name
            )))
        }
    };
    let mut found = 0;
    for table in program.tables.values_mut() {
        let source = query
            .tables
            .iter()
            .find(|kind| table.name.eq_ignore_ascii_case(kind.name()));
        if let Some(kind) = source {
            found += 1;
            table.options = source_options(*kind)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
        } else if table.name.eq_ignore_ascii_case(&sink) {
            table.options = [("connector".to_string(), "blackhole".to_string())].into();
        }
    }
    if found != query.tables.len() {
        return Err(BenchError::Config(format!(
            "examples/nexmark/{}.sql does not declare the tables {:?}",
            query.name, query.tables
        )));
    }
    Ok(program)
}

/// Runs `program` once into a checking sink and checks the job and its result.
fn run_checked(
    program: &Program,
    opts: &NexmarkBenchOptions,
    expected: &NexmarkExpected,
) -> Result<RunFigures> {
    let sink = Arc::new(NexmarkCheckSinkFactory::new());
    let job_opts = JobOptions {
        shards: Some(opts.shards),
        pin_cores: opts.pin_cores,
        sink_override: Some(sink.clone()),
        ..JobOptions::default()
    };
    let job = prepare(program, &job_opts)?;
    let report = run_with_deadline(job, &job_opts, job_deadline(expected.records))?;
    check_report(&report, expected)?;
    sink.check(expected)?;
    Ok(RunFigures::from_report(&report))
}

fn check_report(report: &JobReport, expected: &NexmarkExpected) -> Result<()> {
    if expected.is_changelog() {
        // An updating query's row count depends on how updates were batched; its final
        // rows are checked by the sink.
        return crate::trades_query::check_clean_run(
            report,
            expected.records,
            "(the events of the query's tables generated)",
            report.rows_out(),
            "a changelog",
        );
    }
    crate::trades_query::check_clean_run(
        report,
        expected.records,
        "(the events of the query's tables generated)",
        expected.rows,
        "the oracle's rows",
    )
}

/// The runs of the in-process benchmark.
fn runs_in_process(opts: &NexmarkBenchOptions) -> Result<(Vec<RunFigures>, NexmarkExpected)> {
    let expected = nexmark_expected(opts.query.name, opts.stream(), 0..opts.events);
    let source_options = |kind: EventKind| {
        vec![
            ("connector", "nexmark".to_string()),
            ("nexmark.table", kind.name().to_string()),
            ("events.num", opts.events.to_string()),
            ("seed", opts.seed.to_string()),
            ("partitions", opts.partitions.to_string()),
        ]
    };
    let program = program(&opts.query, source_options)?;
    let mut runs = Vec::with_capacity(opts.runs);
    for _ in 0..opts.runs {
        runs.push(run_checked(&program, opts, &expected)?);
    }
    Ok((runs, expected))
}

/// Upper bound of the JSON bytes of one event of kind `kind`.
fn json_bytes_max(kind: EventKind) -> usize {
    match kind {
        EventKind::Person => PERSON_JSON_BYTES_MAX,
        EventKind::Auction => AUCTION_JSON_BYTES_MAX,
        EventKind::Bid => BID_JSON_BYTES_MAX,
    }
}

/// How the events of kind `kind` spread over `partitions` partitions (event `n` in partition
/// `n mod partitions`): the stream repeats every `period` events (a multiple of both the
/// proportions' cycle and `partitions`), and per period the fullest partition gets
/// `per_partition_max` of them. Returns `(period, per_partition_max)`. With 2 partitions,
/// for example, every person (event `50 k`) lands on partition 0.
fn partition_share(kind: EventKind, partitions: u64) -> (u64, u64) {
    let cycle = PROPORTION_DENOMINATOR;
    let (mut a, mut b) = (cycle, partitions.max(1));
    while b != 0 {
        (a, b) = (b, a % b);
    }
    let gcd = a;
    // Per period, partition p gets each offset o of the cycle with o = p (mod gcd) once.
    let per_partition_max = (0..gcd)
        .map(|residue| {
            (residue..cycle)
                .step_by(gcd as usize)
                .filter(|o| EventKind::of(*o) == kind)
                .count() as u64
        })
        .max()
        .unwrap_or(0);
    (cycle / gcd * partitions.max(1), per_partition_max)
}

/// Events of one round of `--broker mock`: a whole number of periods of the stream such
/// that every partition of every table's topic gets at most `partition_bytes` of JSON. The
/// largest table per partition sets it (bids on their own, auctions with persons).
fn round_events(tables: &[EventKind], partitions: usize, partition_bytes: usize) -> u64 {
    tables
        .iter()
        .map(|&kind| {
            let (period, per_partition) = partition_share(kind, partitions as u64);
            let period_bytes = per_partition.max(1) * json_bytes_max(kind) as u64;
            period * (partition_bytes as u64 / period_bytes).max(1)
        })
        .min()
        .unwrap_or(PROPORTION_DENOMINATOR)
}

/// The topic of a round's events of kind `kind`.
fn round_topic(kind: EventKind, round: usize) -> String {
    format!("nexmark-{}-{round}", kind.name())
}

/// The runs of `--broker mock`: the events of the query's tables are written to the
/// embedded Kafka in rounds (one topic per table and round), and each run reads the rounds
/// one bounded job after another. A round is checked against the oracle of its own events:
/// a join's partner in another round is in another job, and the oracle does not see it
/// either.
fn runs_through_mock(opts: &NexmarkBenchOptions) -> Result<(Vec<RunFigures>, NexmarkExpected)> {
    let kafka = EmbeddedKafka::start(1)?;
    let bootstrap = kafka.bootstrap_servers();
    let producer: BaseProducer<DeliveryCounter> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", PRODUCER_QUEUE_MESSAGES_MAX)
        .set("queue.buffering.max.kbytes", PRODUCER_QUEUE_KBYTES_MAX)
        .set("acks", "1")
        .create_with_context(DeliveryCounter::default())
        .map_err(|e| BenchError::Kafka(format!("cannot create the producer: {e}")))?;
    let step = round_events(
        opts.query.tables,
        opts.partitions,
        opts.round_partition_bytes,
    );
    let mut rounds = Vec::new();
    let mut sent = 0;
    let mut start = 0;
    while start < opts.events {
        let range = start..(start + step).min(opts.events);
        start = range.end;
        let round = rounds.len();
        for &kind in opts.query.tables {
            kafka.create_topic(&round_topic(kind, round), opts.partitions as i32)?;
        }
        let topic_of = |kind| {
            let read = opts.query.tables.contains(&kind);
            read.then(|| round_topic(kind, round))
        };
        let topics = NexmarkTopics {
            person: topic_of(EventKind::Person),
            auction: topic_of(EventKind::Auction),
            bid: topic_of(EventKind::Bid),
        };
        let stream = opts.stream();
        let written = write_to_kafka(
            &producer,
            &stream,
            range.clone(),
            opts.partitions as u32,
            &topics,
        )?;
        sent += written.records();
        wait_for_deliveries(&producer, "events", Some(sent), DELIVERY_WAIT_MS_MAX)?;
        let expected = nexmark_expected(opts.query.name, stream, range);
        let source_options = |kind: EventKind| {
            vec![
                ("connector", "kafka".to_string()),
                ("topic", round_topic(kind, round)),
                ("format", "json".to_string()),
                ("properties.bootstrap.servers", bootstrap.clone()),
                ("properties.group.id", "spillway-bench-nexmark".to_string()),
                ("scan.startup.mode", "earliest-offset".to_string()),
                ("scan.bounded.mode", "latest-offset".to_string()),
            ]
        };
        rounds.push((program(&opts.query, source_options)?, expected));
    }
    let mut runs = Vec::with_capacity(opts.runs);
    for _ in 0..opts.runs {
        let mut total: Option<RunFigures> = None;
        for (program, expected) in &rounds {
            let figures = run_checked(program, opts, expected)?;
            match &mut total {
                Some(t) => t.append(&figures),
                None => total = Some(figures),
            }
        }
        runs.extend(total);
    }
    drop(kafka);
    let mut all = NexmarkExpected::default();
    for (_, e) in &rounds {
        all.bids += e.bids;
        all.records += e.records;
        all.rows += e.rows;
    }
    Ok((runs, all))
}

/// Runs the benchmark: `runs` checked runs of the query; fails on the first wrong result.
pub fn run_nexmark(opts: &NexmarkBenchOptions) -> Result<BenchSummary> {
    opts.validate()?;
    let (runs, expected) = match opts.broker {
        NexmarkBroker::None => runs_in_process(opts)?,
        NexmarkBroker::Mock => runs_through_mock(opts)?,
    };
    let mut per_core: Vec<f64> = runs
        .iter()
        .map(|r| opts.events as f64 / r.elapsed.as_secs_f64().max(1e-9) / r.shards.max(1) as f64)
        .collect();
    per_core.sort_by(|a, b| a.total_cmp(b));
    let median = per_core.get(per_core.len().saturating_sub(1) / 2).copied();
    Ok(BenchSummary {
        name: opts.query.bench_name,
        partitions: opts.partitions,
        runs,
        extra: vec![
            ("stream_events", opts.events as f64),
            (
                "stream_events_per_second_per_core_median",
                median.unwrap_or(0.0).round(),
            ),
            ("result_rows_expected", expected.rows as f64),
            (
                "broker_mock",
                f64::from(u8::from(opts.broker == NexmarkBroker::Mock)),
            ),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use spillway_connectors::nexmark::json::write_event_json;
    use spillway_connectors::nexmark::NexmarkGenerator;

    #[test]
    fn options_are_checked() {
        assert!(NexmarkBenchOptions::new("q6", 10).is_err());
        let mut opts = NexmarkBenchOptions::new("Q1", 0).expect("q1");
        assert!(opts.validate().is_err(), "0 events");
        opts.events = 10;
        opts.partitions = 0;
        assert!(opts.validate().is_err(), "0 partitions");
        opts.partitions = 1;
        opts.round_partition_bytes = ROUND_PARTITION_BYTES_MAX + 1;
        assert!(opts.validate().is_err(), "rounds too large for the mock");
    }

    #[test]
    fn json_bytes_bounds_hold() {
        let mut generator = NexmarkGenerator::new(StreamConfig::default());
        let mut longest = [0usize; 3];
        let mut line = Vec::new();
        for n in 0..200_000 {
            line.clear();
            write_event_json(&generator.event(n), &mut line);
            let kind = EventKind::of(n);
            longest[kind as usize] = longest[kind as usize].max(line.len());
        }
        for kind in EventKind::ALL {
            let (got, bound) = (longest[kind as usize], json_bytes_max(kind));
            assert!(got <= bound && got > bound / 2, "{kind:?}: {got} bytes");
        }
    }

    /// Every partition of every topic of a round, counted event by event, stays within the
    /// round's bytes; with 2 partitions, for example, all persons land on partition 0.
    #[test]
    fn rounds_fit_the_mock_per_partition() {
        let tables_of_queries = [BIDS, PERSONS_AUCTIONS, AUCTIONS_BIDS];
        for partitions in [1usize, 2, 3, 4, 7, 10, 25, 64] {
            for tables in tables_of_queries {
                for bytes in [ROUND_PARTITION_BYTES_MIN, ROUND_PARTITION_BYTES_MAX] {
                    let round = round_events(tables, partitions, bytes);
                    // A round a few cycles in, so it starts off a period boundary too.
                    let first = 7 * PROPORTION_DENOMINATOR + 3;
                    // Bytes per (kind, partition): each kind has a topic of its own.
                    let mut per_partition = vec![0usize; 3 * partitions];
                    for n in (first..first + round).filter(|n| tables.contains(&EventKind::of(*n)))
                    {
                        let kind = EventKind::of(n);
                        let slot = kind as usize * partitions + (n % partitions as u64) as usize;
                        per_partition[slot] += json_bytes_max(kind);
                    }
                    let fullest = per_partition.iter().max().copied().unwrap_or(0);
                    assert!(fullest <= bytes, "{partitions} {tables:?} {bytes}");
                    assert!(
                        fullest * 2 > bytes,
                        "{partitions} {tables:?}: a round fills"
                    );
                }
            }
        }
        // Persons and auctions are larger but rarer than bids: a round of auctions and
        // bids is set by the bids.
        let bids = round_events(BIDS, 4, ROUND_PARTITION_BYTES_MAX);
        assert_eq!(
            round_events(AUCTIONS_BIDS, 4, ROUND_PARTITION_BYTES_MAX),
            bids
        );
        assert!(round_events(PERSONS_AUCTIONS, 4, ROUND_PARTITION_BYTES_MAX) > bids);
    }

    /// Each table of a join reads its own kind: the `nexmark` source its `nexmark.table`,
    /// the Kafka source its own topic.
    #[test]
    fn each_table_gets_its_own_options() {
        let query = NexmarkBenchOptions::new("q3", 10).expect("q3").query;
        let program =
            program(&query, |kind| vec![("topic", round_topic(kind, 4))]).expect("q3's program");
        for kind in [EventKind::Person, EventKind::Auction] {
            let table = program
                .tables
                .values()
                .find(|t| t.name.eq_ignore_ascii_case(kind.name()))
                .expect("the table");
            assert_eq!(table.options.get("topic"), Some(&round_topic(kind, 4)));
        }
    }
}
