//! `spillway-bench`: throughput of the trades query in memory, through the embedded Kafka and
//! over a JSON-lines file. Every run's result is checked before its figures are printed.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use spillway_bench::broker_floor::{run_broker_floor, BrokerFloorArgs};
use spillway_bench::checkpoint_bench::{run_checkpoint_bench, CheckpointArgs};
use spillway_bench::dimension_bench::{render, run_dimension_bench, DimensionArgs};
use spillway_bench::eo_bench::{run_eo_bench, EoArgs};
use spillway_bench::group_bench::{run_group_bench, GroupArgs};
use spillway_bench::latency_cli::{latency_command, sweep_command, LatencyArgs, SweepArgs};
use spillway_bench::nexmark_bench::{run_nexmark, NexmarkArgs};
use spillway_bench::trades_data::{TradeDataConfig, EVENT_RATE_DEFAULT};
use spillway_bench::{
    run_file, run_kafka, run_memory, BenchSummary, FileBenchOptions, KafkaBenchOptions,
    MemoryBenchOptions,
};

#[derive(Parser)]
#[command(
    name = "spillway-bench",
    about = "Benchmarks of spillway: checked throughput of the trades query (examples/trades.sql)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Trades generated in memory (one JSON-lines buffer per partition) -> query -> checked.
    Memory {
        #[command(flatten)]
        common: Common,
        /// Partitions (in-memory buffers) the trades are dealt over, round robin.
        #[arg(long, default_value_t = 2)]
        partitions: usize,
    },
    /// A backlog produced into the embedded Kafka first, then read end to end -> checked.
    Kafka {
        #[command(flatten)]
        common: Common,
        /// Partitions of the topic; trades are dealt over them round robin.
        #[arg(long, default_value_t = 2)]
        partitions: usize,
        /// An extra librdkafka consumer setting KEY=VALUE (repeatable), e.g.
        /// fetch.queue.backoff.ms=10.
        #[arg(long = "consumer-property", value_parser = parse_key_value)]
        consumer_properties: Vec<(String, String)>,
    },
    /// A JSON-lines file through the filesystem source into a blackhole sink.
    File {
        #[command(flatten)]
        common: Common,
        /// Reuse this file if it exists, else generate it there and keep it (default: a
        /// temporary file, removed at the end).
        #[arg(long)]
        path: Option<PathBuf>,
    },
    /// Open-loop latency through Kafka (checked): p50 .. max, JSON report, SVG plot.
    Latency(LatencyArgs),
    /// The broker path's latency alone (same load, a bare consumer, no engine).
    BrokerFloor(BrokerFloorArgs),
    /// Raises the latency run's rate until p99 exceeds a limit.
    Sweep(SweepArgs),
    /// A Nexmark query of examples/nexmark/ over generated events (or through the embedded
    /// Kafka with --broker mock) -> checked.
    Nexmark(NexmarkArgs),
    /// Checkpoint duration, hot-path stall and recovery time with N keys of window state.
    Checkpoint(CheckpointArgs),
    /// Per-event cost of the lookup join with a dimension table, per size (checked).
    Dimension(DimensionArgs),
    /// The cost of exactly-once into Kafka against at-least-once, per checkpoint interval.
    ExactlyOnce(EoArgs),
    /// Several `spillway run` processes sharing a job in group mode (mock cluster): checked
    /// throughput per process count, or failover recovery time with --failover.
    Group(GroupArgs),
}

#[derive(Args)]
struct Common {
    /// Trades to generate.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Shards (cores); default: one per partition, at most one per core (file: every core).
    #[arg(long)]
    shards: Option<usize>,
    /// Checked runs; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Trades per second of event time (how many 1 s windows the data spans).
    #[arg(long, default_value_t = EVENT_RATE_DEFAULT)]
    event_rate: u64,
    /// Do not pin shards to cores.
    #[arg(long)]
    no_pin: bool,
    /// Also print one machine-readable JSON line.
    #[arg(long)]
    json: bool,
}

impl Common {
    fn data(&self, partitions: usize) -> TradeDataConfig {
        let mut data = TradeDataConfig::new(self.events, partitions);
        data.event_rate = self.event_rate;
        data
    }
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("expected KEY=VALUE, got '{text}'")),
    }
}

fn run(cli: Cli) -> anyhow::Result<(BenchSummary, bool)> {
    Ok(match cli.command {
        Command::Memory { common, partitions } => {
            let opts = MemoryBenchOptions {
                data: common.data(partitions),
                shards: common.shards,
                runs: common.runs,
                pin_cores: !common.no_pin,
            };
            (run_memory(&opts)?, common.json)
        }
        Command::Kafka {
            common,
            partitions,
            consumer_properties,
        } => {
            let mut opts = KafkaBenchOptions::new(common.events, partitions);
            opts.data = common.data(partitions);
            opts.shards = common.shards;
            opts.runs = common.runs;
            opts.pin_cores = !common.no_pin;
            opts.consumer_properties = consumer_properties;
            (run_kafka(&opts)?, common.json)
        }
        Command::File { common, path } => {
            let opts = FileBenchOptions {
                data: common.data(1),
                path,
                shards: common.shards,
                runs: common.runs,
                pin_cores: !common.no_pin,
            };
            (run_file(&opts)?, common.json)
        }
        Command::Nexmark(args) => (run_nexmark(&args.options()?)?, args.json),
        Command::Latency(_)
        | Command::Sweep(_)
        | Command::Checkpoint(_)
        | Command::Dimension(_)
        | Command::ExactlyOnce(_)
        | Command::Group(_)
        | Command::BrokerFloor(_) => {
            anyhow::bail!("internal: latency and sweep are run by main")
        }
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let latency = match &cli.command {
        Command::Latency(args) => Some(latency_command(args)),
        Command::Sweep(args) => Some(sweep_command(args)),
        Command::Checkpoint(args) => {
            Some(run_checkpoint_bench(args).map(|r| print!("{}", r.text())))
        }
        Command::BrokerFloor(args) => Some(run_broker_floor(args).map(|t| print!("{t}"))),
        Command::ExactlyOnce(args) => Some(run_eo_bench(args).map(|t| print!("{t}"))),
        Command::Group(args) => Some(
            args.options()
                .and_then(|o| run_group_bench(&o))
                .map(|t| print!("{t}")),
        ),
        Command::Dimension(args) => {
            Some(run_dimension_bench(args).map(|f| print!("{}", render(&f))))
        }
        _ => None,
    };
    if let Some(result) = latency {
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("spillway-bench: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match run(cli) {
        Ok((summary, json)) => {
            print!("{}", summary.text());
            if json {
                println!("{}", summary.json());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("spillway-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
