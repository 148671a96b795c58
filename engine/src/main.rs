//! The `spillway` command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use spillway_engine::demo::{run_demo, DemoOptions};
use spillway_engine::job::{prepare, run_prepared, JobOptions};
use spillway_engine::profile::Profile;
use spillway_engine::summary::summarize;

#[derive(Parser)]
#[command(
    name = "spillway",
    version,
    about = "Thread-per-core streaming SQL over Kafka"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Embedded Kafka, generated trades, examples/trades.sql live, then a summary.
    Demo {
        /// How long to run, e.g. '10 s', '2 s', '500 ms'.
        #[arg(long, default_value = "10 s")]
        duration: String,
        /// Trades produced per second.
        #[arg(long, default_value_t = 20_000)]
        rate: u64,
        /// Partitions of the trades topic (default: one per shard).
        #[arg(long)]
        partitions: Option<usize>,
        /// Shards (cores) to run on (default: every core).
        #[arg(long)]
        shards: Option<usize>,
        /// Count results instead of printing them.
        #[arg(long)]
        quiet: bool,
        /// Tuning profile (TOML): cores, limits, Kafka properties (see tuning/README.md).
        #[arg(long)]
        profile: Option<PathBuf>,
    },
    /// Run a SQL file until its sources are done, or until SIGINT/SIGTERM.
    Run {
        query: PathBuf,
        /// Shards (cores) to run on (default: every core).
        #[arg(long)]
        shards: Option<usize>,
        /// Do not pin shards to cores.
        #[arg(long)]
        no_pin: bool,
        /// Stop after this long, e.g. '30 s' (default: run until done or signalled).
        #[arg(long)]
        duration: Option<String>,
        /// Tuning profile (TOML): cores, limits, Kafka properties (see tuning/README.md).
        #[arg(long)]
        profile: Option<PathBuf>,
        /// Checkpoint into this directory and resume from it (SQL: SET 'checkpoint.dir').
        #[arg(long)]
        checkpoint_dir: Option<PathBuf>,
        /// Time between checkpoints, e.g. '1 s' (SQL: SET 'checkpoint.interval'; default: the
        /// profile's [checkpoint] interval_ms, else 1 s).
        #[arg(long)]
        checkpoint_interval: Option<String>,
    },
    /// Print the plan of a SQL file: operators, partitions per core, exchanges.
    Explain {
        query: PathBuf,
        #[arg(long)]
        shards: Option<usize>,
        /// Tuning profile (TOML): cores, limits, Kafka properties (see tuning/README.md).
        #[arg(long)]
        profile: Option<PathBuf>,
    },
    /// Run the query files of a configuration as a service: /metrics, /health, signals
    /// (see docs/operations.md).
    Serve {
        /// The configuration (TOML).
        #[arg(long, default_value = "/etc/spillway/spillway.toml")]
        config: PathBuf,
    },
    /// Inspect this host (cores, memory, io_uring, fsync latency, a micro-benchmark) and
    /// write a tuning profile for it.
    Tune {
        /// Write the profile here (default: stdout).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Directory whose disk fsync latency is measured (created and removed if missing).
        #[arg(long, default_value = "./state")]
        state_dir: PathBuf,
        /// Generated trades of the decode + aggregate micro-benchmark.
        #[arg(long, default_value_t = spillway_engine::tune::BENCH_EVENTS_DEFAULT)]
        bench_events: u64,
    },
}

fn duration_arg(text: &str) -> anyhow::Result<Duration> {
    match spillway_connectors::duration::parse_duration_ms(text) {
        Some(ms) if ms > 0 => Ok(Duration::from_millis(ms as u64)),
        _ => bail!("'{text}' is not a duration (examples: '10 s', '500 ms', '2 min')"),
    }
}

fn read_sql(path: &PathBuf) -> anyhow::Result<spillway_engine::plan::Program> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the query file {}", path.display()))?;
    spillway_engine::sql::parse_program(&text).with_context(|| format!("in {}", path.display()))
}

/// The job options of a tuning profile, or the defaults without one.
fn profile_options(profile: Option<&PathBuf>) -> anyhow::Result<JobOptions> {
    Ok(match profile {
        Some(path) => Profile::load(path)?.job_options(),
        None => JobOptions::default(),
    })
}

fn stop_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while stopping ends the process at once.
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())?;
        signal_hook::flag::register(sig, stop.clone())?;
    }
    Ok(stop)
}

fn main_inner(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo {
            duration,
            rate,
            partitions,
            shards,
            quiet,
            profile,
        } => {
            let opts = DemoOptions {
                job: profile_options(profile.as_ref())?,
                duration: duration_arg(&duration)?,
                rate,
                partitions,
                shards,
                print_results: !quiet,
                ..DemoOptions::default()
            };
            eprintln!(
                "spillway demo: embedded Kafka, {} trades/s for {:?}, query examples/trades.sql",
                opts.rate, opts.duration
            );
            let summary = run_demo(&opts)?;
            eprintln!("--- summary ---");
            eprintln!("events produced: {}", summary.produced);
            eprint!("{}", summarize(&summary.report));
        }
        Command::Run {
            query,
            shards,
            no_pin,
            duration,
            profile,
            checkpoint_dir,
            checkpoint_interval,
        } => {
            let mut base = profile_options(profile.as_ref())?;
            let interval = match &checkpoint_interval {
                Some(text) => Some(duration_arg(text)?),
                None => base.checkpoint_tuning.interval,
            };
            let dir = checkpoint_dir.or_else(|| {
                // An interval alone takes the profile's directory.
                interval.and(base.checkpoint_tuning.dir.clone())
            });
            if let Some(dir) = dir {
                let interval = interval.unwrap_or(Duration::from_millis(
                    spillway_engine::checkpoint::config::INTERVAL_MS_DEFAULT,
                ));
                let mut cfg = spillway_engine::checkpoint::CheckpointConfig::new(dir, interval)?;
                cfg.store = base.checkpoint_tuning.store.clone();
                base.checkpoint = Some(cfg);
            } else if checkpoint_interval.is_some() {
                bail!("--checkpoint-interval needs --checkpoint-dir (or a [checkpoint] dir in the profile)");
            }
            let program = read_sql(&query)?;
            let stop = stop_on_signals()?;
            if let Some(d) = duration {
                let d = duration_arg(&d)?;
                let s = stop.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(d);
                    s.store(true, std::sync::atomic::Ordering::Release);
                });
            }
            let opts = JobOptions {
                shards,
                pin_cores: base.pin_cores && !no_pin,
                stop,
                ..base
            };
            let job = prepare(&program, &opts)?;
            let report = run_prepared(job, &opts)?;
            eprint!("{}", summarize(&report));
        }
        Command::Explain {
            query,
            shards,
            profile,
        } => {
            let base = profile_options(profile.as_ref())?;
            let program = read_sql(&query)?;
            let opts = JobOptions { shards, ..base };
            let job = prepare(&program, &opts)?;
            print!(
                "{}",
                spillway_engine::explain::explain(&job, opts.pin_cores)
            );
        }
        Command::Serve { config } => spillway_engine::serve::run_serve(&config)?,
        Command::Tune {
            output,
            state_dir,
            bench_events,
        } => {
            let opts = spillway_engine::tune::TuneOptions {
                state_dir,
                bench_events,
                ..Default::default()
            };
            eprintln!(
                "spillway tune: measuring this host ({bench_events} trades micro-benchmark, \
                 fsync in {})",
                opts.state_dir.display()
            );
            let (_, text) = spillway_engine::tune::run_tune(&opts)?;
            match output {
                Some(path) => {
                    std::fs::write(&path, &text)
                        .with_context(|| format!("cannot write the profile {}", path.display()))?;
                    Profile::load(&path).context("the written profile does not load back")?;
                    eprint!("{text}");
                    eprintln!("profile written to {}", path.display());
                }
                None => print!("{text}"),
            }
        }
    }
    Ok(())
}

/// The error and its causes on one line, leaving out causes the message already quotes.
fn error_chain(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    text
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` installs its own logger (JSON or text, level changeable on SIGHUP).
    if !matches!(cli.command, Command::Serve { .. }) {
        init_logging();
    }
    match main_inner(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::from(1)
        }
    }
}

fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // librdkafka's own client logs repeat every failed connection attempt; spillway
                // reports what matters itself (RUST_LOG=librdkafka=warn shows them again).
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new(format!(
                        "warn,{}",
                        spillway_engine::serve::QUIET_TARGETS
                    ))
                }),
        )
        .with_writer(std::io::stderr)
        .init();
}
