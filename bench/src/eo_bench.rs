//! `spillway-bench exactly-once`: what exactly-once into Kafka costs against at-least-once.
//!
//! An open-loop load (the latency harness's generator) sends trades into the embedded Kafka
//! at a fixed rate for a fixed time while the engine runs a query from that topic into a
//! Kafka sink, once with `'sink.delivery-guarantee' = 'at-least-once'` and once with
//! `exactly-once`, at each checkpoint interval. Per run it reports the events read, the
//! results written, the process's CPU time per event (the load generator and the broker,
//! the same in both modes, included) and, with exactly-once, how long results waited from
//! their write to their transaction's commit: the latency a read_committed reader sees on
//! top of at-least-once's.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use rdkafka::config::ClientConfig;
use rdkafka::producer::BaseProducer;
use spillway_connectors::embedded_kafka::EmbeddedKafka;
use spillway_connectors::kafka_sink::KafkaSinkFactory;
use spillway_engine::job::{prepare, run_prepared, JobOptions};
use spillway_engine::sql::parse_program;

use crate::error::{BenchError, Result};
use crate::latency_load::{run_load, DeliveryCounter, EventSchedule};

/// Arguments of `spillway-bench exactly-once`.
#[derive(Debug, Clone, Args)]
pub struct EoArgs {
    /// Events per second over all partitions.
    #[arg(long, default_value_t = 100_000)]
    pub rate: u64,
    /// Seconds of load per run.
    #[arg(long, default_value_t = 12.0)]
    pub duration: f64,
    /// Partitions of the input topic (and of the output topic); one shard per partition, at
    /// most one per core.
    #[arg(long, default_value_t = 2)]
    pub partitions: usize,
    /// Checkpoint intervals to measure, milliseconds, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [100u64, 1_000, 10_000])]
    pub intervals_ms: Vec<u64>,
    /// `window` (1 s tumbling counts per symbol: few results) or `rows` (every event is a
    /// result: what per-record costs show).
    #[arg(long, default_value = "window")]
    pub query: String,
    /// Runs per configuration; the report gives medians.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

/// One run's figures.
#[derive(Debug, Clone, Copy)]
struct RunFigures {
    events_in: u64,
    rows_out: u64,
    cpu_ns_per_event: f64,
    /// Commit delay (exactly-once), ms: p50, p99, max.
    delay_ms: Option<[f64; 3]>,
    checkpoints: u64,
    /// Checkpoint duration (request to commit), ms: p50, max.
    checkpoint_ms: [f64; 2],
}

/// Process CPU time (user + system), ns, from /proc/self/stat.
fn process_cpu_ns() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat")
        .map_err(|e| BenchError::io("reading /proc/self/stat", e))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|r| r.1).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> u64 { fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0) };
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after the name.
    Ok((ticks(11) + ticks(12)) * 10_000_000)
}

fn query_sql(
    query: &str,
    bootstrap: &str,
    guarantee: &str,
    state: &str,
    interval_ms: u64,
) -> Result<String> {
    let select = match query {
        "window" => {
            "SELECT symbol, window_start, window_end, COUNT(*) AS trades, SUM(volume) AS volume
             FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' SECOND))
             GROUP BY symbol, window_start, window_end"
        }
        "rows" => "SELECT symbol, price, volume, ts FROM trades",
        other => {
            return Err(BenchError::Config(format!(
                "--query {other}: expected window or rows"
            )))
        }
    };
    let columns = match query {
        "window" => {
            "symbol STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3), trades BIGINT, \
             volume BIGINT"
        }
        _ => "symbol STRING, price DOUBLE, volume BIGINT, ts TIMESTAMP(3)",
    };
    Ok(format!(
        "CREATE TABLE trades (symbol STRING, price DOUBLE, volume BIGINT, ts TIMESTAMP(3),
           WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH ('connector' = 'kafka', 'topic' = 'trades', 'format' = 'json',
               'properties.bootstrap.servers' = '{bootstrap}',
               'properties.group.id' = 'eo-bench', 'scan.startup.mode' = 'earliest-offset');
         CREATE TABLE results ({columns})
         WITH ('connector' = 'kafka', 'topic' = 'results', 'format' = 'json',
               'properties.bootstrap.servers' = '{bootstrap}', 'key.fields' = 'symbol',
               'sink.delivery-guarantee' = '{guarantee}');
         SET 'checkpoint.dir' = '{state}';
         SET 'checkpoint.interval' = '{interval_ms} ms';
         INSERT INTO results {select};"
    ))
}

fn run_once(args: &EoArgs, guarantee: &str, interval_ms: u64) -> Result<RunFigures> {
    let kafka = EmbeddedKafka::start(1)?;
    kafka.create_topic("trades", args.partitions as i32)?;
    kafka.create_topic("results", args.partitions as i32)?;
    let bootstrap = kafka.bootstrap_servers();
    let state = tempfile::tempdir().map_err(|e| BenchError::io("temporary directory", e))?;
    let sql = query_sql(
        &args.query,
        &bootstrap,
        guarantee,
        &state.path().display().to_string(),
        interval_ms,
    )?;
    let program = parse_program(&sql)?;
    let sink_table = program
        .table("results")
        .ok_or_else(|| BenchError::Config("no results table".into()))?;
    let options: BTreeMap<String, String> = sink_table.options.clone();
    let schema = program
        .pipelines
        .first()
        .ok_or_else(|| BenchError::Config("no pipeline".into()))?
        .output_schema
        .clone();
    let sink = Arc::new(KafkaSinkFactory::from_options("results", &options, schema)?);
    let stop = Arc::new(AtomicBool::new(false));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let job_opts = JobOptions {
        shards: Some(args.partitions.min(cores).max(1)),
        pin_cores: false,
        sink_override: Some(sink.clone()),
        stop: stop.clone(),
        ..JobOptions::default()
    };
    let job = prepare(&program, &job_opts)?;
    let cpu_before = process_cpu_ns()?;
    let job_thread = {
        let job_opts = job_opts.clone();
        std::thread::Builder::new()
            .name("eo-job".into())
            .spawn(move || run_prepared(job, &job_opts))
            .map_err(|e| BenchError::io("cannot start the job thread", e))?
    };
    let start = Instant::now();
    let epoch_ms_start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let schedule = EventSchedule {
        rate_total: args.rate,
        partitions: args.partitions,
        epoch_ms_start,
        seed: 7,
        offset_ns: 0,
    };
    let producer: BaseProducer<DeliveryCounter> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .set("acks", "1")
        .set("queue.buffering.max.messages", "1000000")
        .create_with_context(DeliveryCounter::default())
        .map_err(|e| BenchError::Config(format!("cannot create the producer: {e}")))?;
    let progress = AtomicU64::new(0);
    let load = run_load(
        &producer,
        "trades",
        &schedule,
        start,
        Duration::from_secs_f64(args.duration),
        &progress,
        &AtomicBool::new(false),
    );
    // Let the last checkpoint interval pass, then stop (a final checkpoint commits the rest).
    std::thread::sleep(Duration::from_millis(interval_ms.min(2_000) + 200));
    stop.store(true, Ordering::Release);
    let report = job_thread
        .join()
        .map_err(|_| BenchError::WrongResult("the job thread panicked".into()))??;
    let cpu_ns = process_cpu_ns()?.saturating_sub(cpu_before);
    let sent = load?.sent;
    let events_in = report.records_in();
    if events_in < sent {
        return Err(BenchError::WrongResult(format!(
            "{guarantee}, {interval_ms} ms: read {events_in} of {sent} events: the engine did \
             not keep up with {} events/s",
            args.rate
        )));
    }
    let delay_ms = sink.transactions().map(|t| {
        let h = t.commit_delay_us();
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1_000.0;
        [ms(0.5), ms(0.99), h.max() as f64 / 1_000.0]
    });
    Ok(RunFigures {
        events_in,
        rows_out: report.rows_out(),
        cpu_ns_per_event: cpu_ns as f64 / events_in.max(1) as f64,
        delay_ms,
        checkpoint_ms: report.checkpoints.as_ref().map_or([0.0; 2], |c| {
            [
                c.duration_us.value_at_quantile(0.5) as f64 / 1_000.0,
                c.duration_us.max() as f64 / 1_000.0,
            ]
        }),
        checkpoints: report.checkpoints.map_or(0, |c| c.checkpoints),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Runs every configuration and returns the report's text.
pub fn run_eo_bench(args: &EoArgs) -> Result<String> {
    if args.runs == 0 || args.intervals_ms.is_empty() || args.partitions == 0 {
        return Err(BenchError::Config(
            "--runs, --partitions and --intervals-ms must not be empty or 0".into(),
        ));
    }
    let mut out = format!(
        "exactly-once vs at-least-once: query '{}', {} events/s over {} partitions, {} s per \
         run, median of {} runs\n\n\
         | interval | guarantee | events in | results | checkpoints | checkpoint p50 / max \
         (ms) | CPU ns/event | commit delay p50 / p99 / max (ms) |\n\
         |---:|---|---:|---:|---:|---|---:|---|\n",
        args.query, args.rate, args.partitions, args.duration, args.runs
    );
    for &interval_ms in &args.intervals_ms {
        for guarantee in ["at-least-once", "exactly-once"] {
            let mut runs = Vec::with_capacity(args.runs);
            for _ in 0..args.runs {
                runs.push(run_once(args, guarantee, interval_ms)?);
            }
            let m = |f: &dyn Fn(&RunFigures) -> f64| median(runs.iter().map(f).collect());
            let delay = if runs[0].delay_ms.is_some() {
                let d = |i: usize| m(&|r| r.delay_ms.map_or(0.0, |d| d[i]));
                format!("{:.1} / {:.1} / {:.1}", d(0), d(1), d(2))
            } else {
                "-".to_string()
            };
            out.push_str(&format!(
                "| {interval_ms} ms | {guarantee} | {:.0} | {:.0} | {:.0} | {:.1} / {:.1} | {:.0} \
                 | {delay} |\n",
                m(&|r| r.events_in as f64),
                m(&|r| r.rows_out as f64),
                m(&|r| r.checkpoints as f64),
                m(&|r| r.checkpoint_ms[0]),
                m(&|r| r.checkpoint_ms[1]),
                m(&|r| r.cpu_ns_per_event),
            ));
        }
    }
    Ok(out)
}
