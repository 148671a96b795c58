//! The command-line arguments of `spillway-bench latency` and `spillway-bench sweep`, and
//! what each prints and writes.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::error::{BenchError, Result};
use crate::latency::{run_latency, Broker, LatencyOptions, LatencyQuery};
use crate::plot_svg::latency_svg;
use crate::sweep::{run_sweep, SweepOptions};

/// What one run measures and where (shared by `latency` and `sweep`).
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Partitions of the topic; events are dealt over them round robin.
    #[arg(long, default_value_t = 1)]
    pub partitions: usize,
    /// `mock` (an embedded mock cluster) or a bootstrap list of an external broker.
    #[arg(long, default_value = "mock")]
    pub broker: String,
    /// `trades` (examples/trades.sql), `filter` (rows with volume > 500), or a SQL file
    /// reading table `trades` with TUMBLE windows by symbol into columns symbol,
    /// window_start, window_end, trades (COUNT(*)).
    #[arg(long, default_value = "trades")]
    pub query: String,
    /// Topic (created on the mock; must exist with --partitions partitions elsewhere).
    #[arg(long, default_value = "spillway-latency")]
    pub topic: String,
    /// Shards; default: one per partition, at most one per core.
    #[arg(long)]
    pub shards: Option<usize>,
    /// Results of events sent in the first SECONDS are checked but not measured.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Do not pin shards to cores.
    #[arg(long)]
    pub no_pin: bool,
    /// An extra librdkafka consumer setting KEY=VALUE of the source (repeatable), e.g.
    /// fetch.wait.max.ms=1.
    #[arg(long = "consumer-property", value_parser = parse_key_value)]
    pub consumer_properties: Vec<(String, String)>,
    /// An extra librdkafka setting KEY=VALUE of the load generator's producer (repeatable),
    /// e.g. linger.ms=0 (default 1).
    #[arg(long = "producer-property", value_parser = parse_key_value)]
    pub producer_properties: Vec<(String, String)>,
    /// A tuning profile for the engine (e.g. tuning/latency-2core.toml): its limits, Kafka
    /// properties and pinning, as `spillway run --profile` applies them.
    #[arg(long)]
    pub profile: Option<PathBuf>,
}

fn parse_key_value(text: &str) -> std::result::Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("expected KEY=VALUE, got '{text}'")),
    }
}

impl RunArgs {
    fn options(&self, rate: u64, duration_s: f64) -> Result<LatencyOptions> {
        let duration_ok = duration_s.is_finite() && duration_s > 0.0;
        if !duration_ok || self.warmup.is_nan() || self.warmup < 0.0 {
            return Err(BenchError::Config(
                "--duration must be above 0 and --warmup at least 0 seconds".into(),
            ));
        }
        let mut o = LatencyOptions::new(rate, Duration::from_secs_f64(duration_s), self.partitions);
        o.broker = match self.broker.as_str() {
            "mock" => Broker::Mock,
            addr => Broker::Address(addr.to_string()),
        };
        o.query = match self.query.as_str() {
            "trades" => LatencyQuery::Trades,
            "filter" => LatencyQuery::Filter,
            path => LatencyQuery::File(PathBuf::from(path)),
        };
        o.topic = self.topic.clone();
        o.shards = self.shards;
        o.pin_cores = !self.no_pin;
        o.consumer_properties = self.consumer_properties.clone();
        o.producer_properties = self.producer_properties.clone();
        o.profile = self.profile.clone();
        o.warmup = Duration::from_secs_f64(self.warmup.min(1e6));
        Ok(o)
    }
}

/// `spillway-bench latency`.
#[derive(Args, Debug, Clone)]
pub struct LatencyArgs {
    /// Events per second sent to each partition, on schedule (open loop).
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// Seconds of load.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    #[command(flatten)]
    pub run: RunArgs,
    /// Write the JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the SVG plot here.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

/// `spillway-bench sweep`.
#[derive(Args, Debug, Clone)]
pub struct SweepArgs {
    /// First rate, events/s per partition.
    #[arg(long)]
    pub from: u64,
    /// Rate increment.
    #[arg(long)]
    pub step: u64,
    /// Last rate tried.
    #[arg(long)]
    pub max: u64,
    /// The p99 limit (of the headline latency), ms.
    #[arg(long = "p99-max-ms")]
    pub p99_max_ms: f64,
    /// Seconds of load per rate.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    #[command(flatten)]
    pub run: RunArgs,
    /// Write the JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn write_file(path: &PathBuf, text: &str) -> Result<()> {
    std::fs::write(path, text)
        .map_err(|e| BenchError::io(format!("cannot write {}", path.display()), e))
}

/// Runs `spillway-bench latency`: prints the summary, writes the JSON and SVG files.
pub fn latency_command(args: &LatencyArgs) -> Result<()> {
    let mut opts = args.run.options(args.rate, args.duration)?;
    opts.progress = !args.quiet;
    let report = run_latency(&opts)?;
    print!("{}", report.text());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report.json())
            .map_err(|e| BenchError::Config(format!("cannot serialise the report: {e}")))?;
        write_file(path, &text)?;
    }
    if let Some(path) = &args.svg {
        write_file(path, &latency_svg(&report))?;
    }
    Ok(())
}

/// Runs `spillway-bench sweep`: prints each step and the result, writes the JSON file.
pub fn sweep_command(args: &SweepArgs) -> Result<()> {
    let opts = SweepOptions {
        run: args.run.options(args.from.max(1), args.duration)?,
        rate_from: args.from,
        rate_step: args.step,
        rate_max: args.max,
        p99_ms_max: args.p99_max_ms,
    };
    let report = run_sweep(&opts, |s| {
        eprintln!(
            "sweep: {} events/s per partition: p99 {}",
            s.rate_per_partition,
            s.p99_ms
                .map(|p| format!("{p:.3} ms"))
                .unwrap_or_else(|| "failed".into())
        )
    })?;
    print!("{}", report.text());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report.json())
            .map_err(|e| BenchError::Config(format!("cannot serialise the report: {e}")))?;
        write_file(path, &text)?;
    }
    Ok(())
}
