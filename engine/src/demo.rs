//! `spillway demo`: an embedded Kafka (librdkafka's mock cluster), generated trades at a
//! steady rate, `examples/trades.sql` on every core, live results and a summary.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::{Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use spillway_connectors::embedded_kafka::EmbeddedKafka;
use spillway_connectors::trades_generator::{TradeGenConfig, TradeGenerator};

use crate::error::{EngineError, Result};
use crate::job::{available_cores, run_program, JobOptions, JobReport};
use crate::sql::parse_program;

/// The query the demo runs.
pub const TRADES_SQL: &str = include_str!("../../examples/trades.sql");

#[derive(Clone)]
pub struct DemoOptions {
    pub duration: Duration,
    /// Trades produced per second.
    pub rate: u64,
    /// Partitions of the `trades` topic (default: one per shard).
    pub partitions: Option<usize>,
    pub shards: Option<usize>,
    /// Print results live (`print` sink) or only count them (`blackhole`).
    pub print_results: bool,
    /// Every n-th trade is 10 s old, to show late events being counted (0 = none).
    pub late_every: u64,
    /// Limits, cores and Kafka properties (a tuning profile's); `stop` and `shards` are
    /// set by the demo.
    pub job: JobOptions,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            duration: Duration::from_secs(10),
            rate: 20_000,
            partitions: None,
            shards: None,
            print_results: true,
            late_every: 5_000,
            job: JobOptions::default(),
        }
    }
}

pub struct DemoSummary {
    pub produced: u64,
    pub report: JobReport,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Produces generated trades with wall-clock event times until `stop`.
fn produce(
    bootstrap: String,
    partitions: i32,
    opts: DemoOptions,
    stop: Arc<AtomicBool>,
    produced: Arc<AtomicU64>,
) -> Result<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "2")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .map_err(|e| EngineError::Internal(format!("demo producer: {e}")))?;
    let mut generator = TradeGenerator::new(TradeGenConfig {
        seed: 7,
        ..TradeGenConfig::default()
    });
    let mut rng = rand::rngs::SmallRng::seed_from_u64(11);
    let mut buf = Vec::with_capacity(128);
    let start = Instant::now();
    let mut sent: u64 = 0;
    while !stop.load(Ordering::Acquire) {
        // Open loop: send what the schedule says is due, whatever the engine does.
        let due = (start.elapsed().as_secs_f64() * opts.rate as f64) as u64;
        let now = now_ms();
        while sent < due {
            let mut trade = generator.next();
            trade.ts_ms = now - rng.random_range(0..300);
            if opts.late_every > 0 && sent % opts.late_every == opts.late_every - 1 {
                trade.ts_ms = now - 10_000;
            }
            buf.clear();
            generator.write_json(&trade, &mut buf);
            let partition = (sent % partitions as u64) as i32;
            let record = BaseRecord::<(), [u8]>::to("trades")
                .payload(&buf[..])
                .partition(partition);
            if let Err((e, _)) = producer.send(record) {
                tracing::warn!("demo producer: {e}");
                producer.poll(Duration::from_millis(1));
                break;
            }
            sent += 1;
        }
        produced.store(sent, Ordering::Release);
        producer.poll(Duration::ZERO);
        thread::sleep(Duration::from_millis(1));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while producer.in_flight_count() > 0 && Instant::now() < deadline {
        producer.poll(Duration::from_millis(10));
    }
    Ok(())
}

/// Runs the demo and returns its summary.
pub fn run_demo(opts: &DemoOptions) -> Result<DemoSummary> {
    let shards = opts
        .shards
        .unwrap_or_else(|| available_cores().len())
        .max(1);
    let partitions = opts.partitions.unwrap_or(shards).max(1);
    let kafka = EmbeddedKafka::start(1)?;
    kafka.create_topic("trades", partitions as i32)?;
    let bootstrap = kafka.bootstrap_servers();

    let mut program = parse_program(TRADES_SQL)?;
    for table in program.tables.values_mut() {
        if table.name.eq_ignore_ascii_case("trades") {
            table
                .options
                .insert("properties.bootstrap.servers".into(), bootstrap.clone());
            table
                .options
                .insert("scan.startup.mode".into(), "earliest-offset".into());
        } else if table.name.eq_ignore_ascii_case("stats") {
            let connector = if opts.print_results {
                "print"
            } else {
                "blackhole"
            };
            table.options.clear();
            table.options.insert("connector".into(), connector.into());
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let produced = Arc::new(AtomicU64::new(0));
    let producer = {
        let (b, o, s, p) = (
            bootstrap.clone(),
            opts.clone(),
            stop.clone(),
            produced.clone(),
        );
        thread::Builder::new()
            .name("spillway-demo-producer".into())
            .spawn(move || produce(b, partitions as i32, o, s, p))
            .map_err(|e| EngineError::Internal(format!("demo producer thread: {e}")))?
    };
    let timer = {
        let (s, d) = (stop.clone(), opts.duration);
        thread::spawn(move || {
            let end = Instant::now() + d;
            while Instant::now() < end && !s.load(Ordering::Acquire) {
                thread::sleep(Duration::from_millis(20));
            }
            s.store(true, Ordering::Release);
        })
    };
    let job = JobOptions {
        shards: Some(shards),
        stop: stop.clone(),
        ..opts.job.clone()
    };
    let result = run_program(&program, &job);
    stop.store(true, Ordering::Release);
    let _ = timer.join();
    let produced_ok = producer
        .join()
        .map_err(|_| EngineError::Internal("demo producer panicked".into()))?;
    let report = result?;
    produced_ok?;
    drop(kafka);
    Ok(DemoSummary {
        produced: produced.load(Ordering::Acquire),
        report,
    })
}
