//! `spillway-bench nexmark`: a Nexmark query of `examples/nexmark/` over the `nexmark`
//! source (in process) or, with `--broker mock`, over the same bids written to the embedded
//! Kafka first, into a checking sink. Every run's result is checked against an oracle
//! computed from the generated events (row count and column sums, `nexmark_check.rs`)
//! before its figures count.
//!
//! The figures count the bids read (`events`), as the other benchmarks count records; the
//! stream's events of all kinds (persons and auctions are stepped over) are in the extra
//! figures.

use std::sync::Arc;

use clap::Args;
use rdkafka::config::ClientConfig;
use rdkafka::producer::BaseProducer;
use spillway_connectors::embedded_kafka::EmbeddedKafka;
use spillway_connectors::nexmark::model::{BID_PROPORTION, PROPORTION_DENOMINATOR};
use spillway_connectors::nexmark::{write_to_kafka, NexmarkTopics, StreamConfig};
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
/// tables it reads.
#[derive(Debug, Clone, Copy)]
pub struct NexmarkQuery {
    pub name: &'static str,
    pub bench_name: &'static str,
    pub sql: &'static str,
    pub tables: &'static [&'static str],
}

/// The tables of the queries over bids only.
const BIDS: &[&str] = &["bid"];

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
        name: "q4",
        bench_name: "nexmark q4",
        sql: include_str!("../../examples/nexmark/q4.sql"),
        tables: &["auction", "bid"],
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
/// An upper bound of one bid's JSON bytes (numbers, channel, URL, at most 81 extra letters).
const BID_JSON_BYTES_MAX: usize = 320;
/// Messages and kilobytes the producer of `--broker mock` may hold.
const PRODUCER_QUEUE_MESSAGES_MAX: &str = "1000000";
const PRODUCER_QUEUE_KBYTES_MAX: &str = "1048576";
/// Longest wait for a round's last deliveries, ms.
const DELIVERY_WAIT_MS_MAX: u64 = 120_000;

/// Where the bids come from.
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
    /// q0, q1, q2, q4, q5, q7, q7_simplified, q11, window_auction or window_channel
    /// (examples/nexmark/).
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
        Ok(())
    }
}

/// The query's program with its source tables' options replaced by `source_options` (a
/// `nexmark` source gets its table's `nexmark.table`) and the sink table set to
/// `blackhole` (the job's sink override replaces it).
fn program(query: &NexmarkQuery, source_options: &[(&str, String)]) -> Result<Program> {
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
            .find(|t| table.name.eq_ignore_ascii_case(t));
        if let Some(source) = source {
            found += 1;
            table.options = source_options
                .iter()
                .map(|(k, v)| ((*k).to_string(), v.clone()))
                .collect();
            if table.options.contains_key("nexmark.table") {
                table
                    .options
                    .insert("nexmark.table".to_string(), source.to_string());
            }
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
    let report = run_with_deadline(job, &job_opts, job_deadline(expected.bids))?;
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
            "(the auctions and bids generated)",
            report.rows_out(),
            "a changelog",
        );
    }
    crate::trades_query::check_clean_run(
        report,
        expected.bids,
        "(the bids generated)",
        expected.rows,
        "the oracle's rows",
    )
}

/// The runs of the in-process benchmark.
fn runs_in_process(opts: &NexmarkBenchOptions) -> Result<(Vec<RunFigures>, NexmarkExpected)> {
    let expected = nexmark_expected(opts.query.name, opts.stream(), 0..opts.events);
    let source_options = [
        ("connector", "nexmark".to_string()),
        ("nexmark.table", "bid".to_string()),
        ("events.num", opts.events.to_string()),
        ("seed", opts.seed.to_string()),
        ("partitions", opts.partitions.to_string()),
    ];
    let program = program(&opts.query, &source_options)?;
    let mut runs = Vec::with_capacity(opts.runs);
    for _ in 0..opts.runs {
        runs.push(run_checked(&program, opts, &expected)?);
    }
    Ok((runs, expected))
}

/// Events of one round of `--broker mock`: the bids of one round stay below
/// [`ROUND_PARTITION_BYTES_MAX`] per partition, which the mock cluster keeps.
fn round_events(partitions: usize) -> u64 {
    let bids_per_partition = (ROUND_PARTITION_BYTES_MAX / BID_JSON_BYTES_MAX) as u64;
    bids_per_partition * partitions as u64 * PROPORTION_DENOMINATOR / BID_PROPORTION
}

/// The runs of `--broker mock`: the bids are written to the embedded Kafka in rounds (one
/// topic each), and each run reads the rounds one bounded job after another.
fn runs_through_mock(opts: &NexmarkBenchOptions) -> Result<(Vec<RunFigures>, NexmarkExpected)> {
    if opts.query.tables != BIDS {
        return Err(BenchError::Config(format!(
            "--broker mock writes bids only; {} also reads {:?}: run it without --broker",
            opts.query.name, opts.query.tables
        )));
    }
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
    let step = round_events(opts.partitions);
    let mut rounds = Vec::new();
    let mut sent = 0;
    let mut start = 0;
    while start < opts.events {
        let range = start..(start + step).min(opts.events);
        start = range.end;
        let topic = format!("nexmark-bid-{}", rounds.len());
        kafka.create_topic(&topic, opts.partitions as i32)?;
        let topics = NexmarkTopics {
            bid: Some(topic.clone()),
            ..NexmarkTopics::default()
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
        wait_for_deliveries(&producer, "bids", Some(sent), DELIVERY_WAIT_MS_MAX)?;
        let expected = nexmark_expected(opts.query.name, stream, range);
        let source_options = [
            ("connector", "kafka".to_string()),
            ("topic", topic),
            ("format", "json".to_string()),
            ("properties.bootstrap.servers", bootstrap.clone()),
            ("properties.group.id", "spillway-bench-nexmark".to_string()),
            ("scan.startup.mode", "earliest-offset".to_string()),
            ("scan.bounded.mode", "latest-offset".to_string()),
        ];
        rounds.push((program(&opts.query, &source_options)?, expected));
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
    use spillway_connectors::nexmark::EventKind;

    #[test]
    fn options_are_checked_and_rounds_fit_the_mock() {
        assert!(NexmarkBenchOptions::new("q9", 10).is_err());
        let mut opts = NexmarkBenchOptions::new("Q1", 0).expect("q1");
        assert!(opts.validate().is_err(), "0 events");
        opts.events = 10;
        opts.partitions = 0;
        assert!(opts.validate().is_err(), "0 partitions");
        // A round's bids per partition stay below the bytes a mock partition keeps.
        let bids_per_partition = EventKind::Bid.count_in(round_events(4)) / 4;
        assert!(bids_per_partition as usize * BID_JSON_BYTES_MAX <= ROUND_PARTITION_BYTES_MAX);
        assert!(bids_per_partition > 1_000);
    }
}
