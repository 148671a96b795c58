//! `spillway-bench latency`: an open-loop load (see `latency_load.rs`) through a Kafka
//! broker (the embedded mock cluster by default) into the trades query, a filter query or a
//! query file, with the sink replaced by a timestamping one (`latency_sink.rs`). Windowed
//! results are matched to the events they cover (`latency_oracle.rs`) and checked; latencies
//! go to HDR histograms (`latency_stats.rs`); the report prints, serialises to JSON and
//! plots (`plot_svg.rs`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use rdkafka::config::ClientConfig;
use rdkafka::producer::BaseProducer;
use serde_json::{json, Value};
use spillway_connectors::embedded_kafka::EmbeddedKafka;
use spillway_engine::job::{prepare, run_prepared, JobOptions, JobReport};
use spillway_engine::plan::{Program, WindowKind};
use spillway_engine::sql::parse_program;

use crate::error::{BenchError, Result};
use crate::latency_load::{run_load, DeliveryCounter, EventSchedule};
use crate::latency_oracle::{match_windows, Replay, WindowShape};
use crate::latency_sink::{LatencySinkFactory, LatencySinkMode};
use crate::latency_stats::{percentile_curve, LatencyStats, TimelinePoint};
use crate::trades_query::{default_shards, trades_program};

/// Highest rate per partition, events/s.
pub const RATE_PER_PARTITION_MAX: u64 = 10_000_000;
/// Longest run.
pub const DURATION_S_MAX: u64 = 3_600;
/// Longest wait for the job's shards to open their sinks.
const JOB_START_MS_MAX: u64 = 15_000;
/// Pause between the job being ready and the first event: the consumer's first fetch.
const SETTLE_MS_MOCK: u64 = 200;
/// Pause before the first event on an external broker (the source starts at the latest
/// offsets, which it must have resolved before anything is sent).
const SETTLE_MS_EXTERNAL: u64 = 2_000;
/// How long the load's producer waits to fill a batch, ms: 1 ms keeps the latency path
/// short, while batches of one message (0 ms) make the mock cluster's per-batch costs slow
/// the consumer below 10k events/s (measured).
const PRODUCER_LINGER_MS: &str = "1";
/// The filter query keeps events with a volume above this.
pub const FILTER_VOLUME_MIN: i64 = 500;
/// Source table of every latency query.
const SOURCE_TABLE: &str = "trades";
/// How often the progress line is redrawn.
const PROGRESS_INTERVAL_MS: u64 = 250;

/// The filter query (`--query filter`): per row latency, no windows.
pub const FILTER_SQL: &str = "
CREATE TABLE trades (symbol STRING, price DOUBLE, volume BIGINT, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
WITH ('connector' = 'kafka', 'topic' = 'trades', 'format' = 'json',
  'scan.watermark.idle-timeout' = '5 s');
CREATE TABLE out (symbol STRING, price DOUBLE, volume BIGINT, ts TIMESTAMP(3))
WITH ('connector' = 'blackhole');
INSERT INTO out SELECT symbol, price, volume, ts FROM trades WHERE volume > 500;
";

/// Where the events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broker {
    /// A fresh embedded mock cluster (librdkafka's) per run.
    Mock,
    /// An external broker's bootstrap list; the topic must exist with `partitions`
    /// partitions.
    Address(String),
}

/// The measured query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LatencyQuery {
    /// `examples/trades.sql`.
    Trades,
    /// [`FILTER_SQL`].
    Filter,
    /// A SQL file reading table `trades`, tumbling windows grouped by `symbol`, a sink with
    /// columns `symbol, window_start, window_end, trades` (COUNT(*)); no WHERE.
    File(PathBuf),
}

/// Options of one latency run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyOptions {
    /// Events per second sent to each partition.
    pub rate_per_partition: u64,
    pub duration: Duration,
    pub partitions: usize,
    pub broker: Broker,
    pub query: LatencyQuery,
    /// Topic (created on the mock cluster; must exist on an external broker).
    pub topic: String,
    /// Shards; None = one per partition, at most one per core.
    pub shards: Option<usize>,
    pub pin_cores: bool,
    /// Results whose reference event was sent within this time of the start are checked
    /// but left out of the figures.
    pub warmup: Duration,
    /// Longest wait after the load for the results it closed.
    pub drain_max: Duration,
    /// Draw a progress line on stderr.
    pub progress: bool,
    /// Extra librdkafka consumer settings of the source (`properties.KEY`).
    pub consumer_properties: Vec<(String, String)>,
    /// Extra librdkafka settings of the load generator's producer.
    pub producer_properties: Vec<(String, String)>,
    /// A tuning profile (`tuning/*.toml`) for the engine: its limits, Kafka properties and
    /// pinning apply as in `spillway run --profile` (`pin_cores` false still wins).
    pub profile: Option<std::path::PathBuf>,
}

impl LatencyOptions {
    /// The defaults: trades query, mock broker, 1 s warm-up, 3 s drain.
    pub fn new(rate_per_partition: u64, duration: Duration, partitions: usize) -> Self {
        LatencyOptions {
            rate_per_partition,
            duration,
            partitions,
            broker: Broker::Mock,
            query: LatencyQuery::Trades,
            topic: "spillway-latency".into(),
            shards: None,
            pin_cores: true,
            warmup: Duration::from_secs(1),
            drain_max: Duration::from_secs(3),
            progress: false,
            consumer_properties: Vec::new(),
            producer_properties: Vec::new(),
            profile: None,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(BenchError::Config(m));
        if !(1..=RATE_PER_PARTITION_MAX).contains(&self.rate_per_partition) {
            return bad(format!(
                "--rate {} is out of range [1, {RATE_PER_PARTITION_MAX}] events/s per partition",
                self.rate_per_partition
            ));
        }
        if self.duration.is_zero() || self.duration.as_secs() > DURATION_S_MAX {
            return bad(format!("--duration must be in (0, {DURATION_S_MAX}] s"));
        }
        if !(1..=crate::trades_data::PARTITIONS_MAX).contains(&self.partitions) {
            return bad(format!("--partitions {} is out of range", self.partitions));
        }
        if self.shards == Some(0) {
            return bad("--shards must be at least 1".into());
        }
        Ok(())
    }
}

/// Engine stage timings from the job's own counters, per event read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageTimings {
    pub decode_ns_per_event: f64,
    pub aggregate_ns_per_event: f64,
    pub sink_ns_per_row: f64,
    /// Busy time over wall time, averaged over shards.
    pub busy_fraction: f64,
}

impl StageTimings {
    fn of(r: &JobReport) -> Self {
        let sum = |f: &dyn Fn(&spillway_engine::shard::ShardReport) -> u64| -> f64 {
            r.shards.iter().map(f).sum::<u64>() as f64
        };
        let events = r.records_in().max(1) as f64;
        let wall = r.elapsed.as_nanos() as f64 * r.shards.len().max(1) as f64;
        StageTimings {
            decode_ns_per_event: sum(&|s| s.decode_ns) / events,
            aggregate_ns_per_event: sum(&|s| s.aggregate_ns) / events,
            sink_ns_per_row: sum(&|s| s.sink_ns) / r.rows_out().max(1) as f64,
            busy_fraction: sum(&|s| s.busy_ns) / wall.max(1.0),
        }
    }
}

/// One latency series of a report.
#[derive(Debug, Clone)]
pub struct LatencySeries {
    /// `watermark_to_result`, `last_event_to_result` or `produce_to_output`.
    pub name: &'static str,
    pub stats: LatencyStats,
    pub histogram: Histogram<u64>,
}

/// What a latency run measured, checked.
#[derive(Debug, Clone)]
pub struct LatencyReport {
    /// `trades`, `filter` or `file`.
    pub query: &'static str,
    pub rate_per_partition: u64,
    pub partitions: usize,
    pub shards: usize,
    pub duration_s: f64,
    pub events_sent: u64,
    /// Events sent per second of load.
    pub events_per_second: f64,
    /// Longest delay of the generator behind its schedule (included in the latencies).
    pub generator_lag_max_ms: f64,
    /// The headline series first (the goal's figure), then the others.
    pub series: Vec<LatencySeries>,
    /// The headline series per second of the run.
    pub timeline: Vec<TimelinePoint>,
    pub stages: StageTimings,
    pub rows_checked: u64,
    pub windows_checked: u64,
}

impl LatencyReport {
    /// p99 of the headline series, ms.
    pub fn p99_ms(&self) -> f64 {
        self.series
            .first()
            .map(|s| s.stats.p99_ms)
            .unwrap_or(f64::INFINITY)
    }

    /// The terminal summary.
    pub fn text(&self) -> String {
        let mut t = format!(
            "latency  query {}  {} events/s x {} partitions on {} shards, {:.1} s: {} events \
             sent ({:.0}/s), generator lag max {:.3} ms\n",
            self.query,
            self.rate_per_partition,
            self.partitions,
            self.shards,
            self.duration_s,
            self.events_sent,
            self.events_per_second,
            self.generator_lag_max_ms
        );
        for s in &self.series {
            t += &format!("  {:<22} {}\n", s.name, s.stats.text());
        }
        t += &format!(
            "  checked {} result rows ({} windows); stages: decode {:.0} ns/event, aggregate \
             {:.0} ns/event, sink {:.0} ns/row, shards busy {:.1}%\n",
            self.rows_checked,
            self.windows_checked,
            self.stages.decode_ns_per_event,
            self.stages.aggregate_ns_per_event,
            self.stages.sink_ns_per_row,
            self.stages.busy_fraction * 100.0
        );
        t
    }

    /// The JSON report.
    pub fn json(&self) -> Value {
        let mut latency = serde_json::Map::new();
        for s in &self.series {
            let mut v = s.stats.json();
            v["percentile_curve"] = json!(percentile_curve(&s.histogram));
            latency.insert(s.name.to_string(), v);
        }
        json!({
            "benchmark": "latency",
            "query": self.query,
            "rate_per_partition": self.rate_per_partition,
            "partitions": self.partitions,
            "shards": self.shards,
            "duration_s": self.duration_s,
            "events_sent": self.events_sent,
            "events_per_second": self.events_per_second,
            "generator_lag_max_ms": self.generator_lag_max_ms,
            "headline": self.series.first().map(|s| s.name),
            "latency": latency,
            "timeline": self.timeline.iter().map(|p| json!({
                "t_s": p.t_s, "count": p.count, "p50_ms": p.p50_ms,
                "p99_ms": p.p99_ms, "max_ms": p.max_ms,
            })).collect::<Vec<_>>(),
            "stages": {
                "decode_ns_per_event": self.stages.decode_ns_per_event,
                "aggregate_ns_per_event": self.stages.aggregate_ns_per_event,
                "sink_ns_per_row": self.stages.sink_ns_per_row,
                "busy_fraction": self.stages.busy_fraction,
            },
            "check": {
                "passed": true,
                "rows_checked": self.rows_checked,
                "windows_checked": self.windows_checked,
            },
        })
    }
}

/// Points the source table at the broker and topic; keeps its idle timeout.
fn point_source(program: &mut Program, options: &[(&str, &str)]) -> Result<()> {
    let def = program
        .tables
        .values_mut()
        .find(|t| t.name.eq_ignore_ascii_case(SOURCE_TABLE))
        .ok_or_else(|| {
            BenchError::Config(format!("the query declares no table '{SOURCE_TABLE}'"))
        })?;
    def.options
        .retain(|k, _| k == "scan.watermark.idle-timeout");
    for (k, v) in options {
        def.options.insert((*k).to_string(), (*v).to_string());
    }
    Ok(())
}

/// The program of `query`, its sink mode's shape (None: rows) and its report name.
fn program_of(
    query: &LatencyQuery,
    source: &[(&str, &str)],
) -> Result<(Program, Option<WindowShape>, &'static str)> {
    let (mut program, name) = match query {
        LatencyQuery::Trades => (
            trades_program(source, &[("connector", "blackhole")])?,
            "trades",
        ),
        LatencyQuery::Filter => (parse_program(FILTER_SQL)?, "filter"),
        LatencyQuery::File(path) => {
            let sql = std::fs::read_to_string(path).map_err(|e| {
                BenchError::io(format!("cannot read --query {}", path.display()), e)
            })?;
            (parse_program(&sql)?, "file")
        }
    };
    point_source(&mut program, source)?;
    let [pipeline] = program.pipelines.as_slice() else {
        return Err(BenchError::Config(
            "the query must have exactly one INSERT INTO".into(),
        ));
    };
    if !pipeline.source.eq_ignore_ascii_case(SOURCE_TABLE) {
        return Err(BenchError::Config(format!(
            "the query must read table '{SOURCE_TABLE}'"
        )));
    }
    if *query == LatencyQuery::Filter {
        return Ok((program, None, name));
    }
    let table = program
        .table(SOURCE_TABLE)
        .ok_or_else(|| BenchError::Config(format!("no table '{SOURCE_TABLE}'")))?;
    let bound_ms = table.watermark.map(|w| w.bound_ms).ok_or_else(|| {
        BenchError::Config(format!("table '{SOURCE_TABLE}' declares no WATERMARK"))
    })?;
    let window = pipeline.aggregation.as_ref().and_then(|a| a.window);
    let Some(w) = window else {
        return Err(BenchError::Config(
            "a --query file must aggregate over TUMBLE windows (use --query filter for rows)"
                .into(),
        ));
    };
    if pipeline.filter.is_some() {
        return Err(BenchError::Config(
            "a --query file must not filter: its COUNT(*) is checked against the events sent"
                .into(),
        ));
    }
    let WindowKind::Tumble { size_ms } = w.kind else {
        return Err(BenchError::Config(
            "a --query file must aggregate over TUMBLE windows".into(),
        ));
    };
    Ok((
        program,
        Some(WindowShape {
            size_ms,
            offset_ms: w.offset_ms,
            bound_ms,
        }),
        name,
    ))
}

fn kafka_err(what: &str) -> impl Fn(rdkafka::error::KafkaError) -> BenchError + '_ {
    move |e| BenchError::Kafka(format!("{what}: {e}"))
}

/// Runs one checked latency measurement.
pub fn run_latency(opts: &LatencyOptions) -> Result<LatencyReport> {
    opts.validate()?;
    let mock = match &opts.broker {
        Broker::Mock => {
            let k = EmbeddedKafka::start(1)?;
            k.create_topic(&opts.topic, opts.partitions as i32)?;
            Some(k)
        }
        Broker::Address(_) => None,
    };
    let bootstrap = match (&mock, &opts.broker) {
        (Some(k), _) => k.bootstrap_servers(),
        (None, Broker::Address(a)) => a.clone(),
        (None, Broker::Mock) => return Err(BenchError::Config("no broker".into())),
    };
    let startup = if mock.is_some() {
        "earliest-offset"
    } else {
        "latest-offset"
    };
    let properties: Vec<(String, &str)> = opts
        .consumer_properties
        .iter()
        .map(|(k, v)| (format!("properties.{k}"), v.as_str()))
        .collect();
    let mut source = vec![
        ("connector", "kafka"),
        ("topic", opts.topic.as_str()),
        ("format", "json"),
        ("properties.bootstrap.servers", bootstrap.as_str()),
        ("properties.group.id", "spillway-bench-latency"),
        ("scan.startup.mode", startup),
    ];
    source.extend(properties.iter().map(|(k, v)| (k.as_str(), *v)));
    let (program, shape, query_name) = program_of(&opts.query, &source)?;

    let start = Instant::now();
    let epoch_ms_start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .map_err(|e| BenchError::Config(format!("the wall clock is before 1970: {e}")))?;
    let schedule_cell = Arc::new(std::sync::OnceLock::new());
    let sink_mode = match shape {
        Some(_) => LatencySinkMode::Windows,
        None => LatencySinkMode::Rows {
            schedule: schedule_cell.clone(),
            volume_min: FILTER_VOLUME_MIN,
        },
    };
    let sink = Arc::new(LatencySinkFactory::new(start, sink_mode));
    let shards = opts
        .shards
        .unwrap_or_else(|| default_shards(opts.partitions));
    let stop = Arc::new(AtomicBool::new(false));
    let mut job_opts = JobOptions::default();
    if let Some(path) = &opts.profile {
        spillway_engine::profile::Profile::load(path)?.apply(&mut job_opts);
    }
    job_opts.shards = Some(shards);
    job_opts.pin_cores &= opts.pin_cores;
    job_opts.sink_override = Some(sink.clone());
    job_opts.stop = stop.clone();
    let job = prepare(&program, &job_opts)?;
    if job.partitions.len() != opts.partitions {
        return Err(BenchError::Config(format!(
            "topic '{}' has {} partitions, --partitions is {}",
            opts.topic,
            job.partitions.len(),
            opts.partitions
        )));
    }
    let job_thread = {
        let job_opts = job_opts.clone();
        std::thread::Builder::new()
            .name("latency-job".into())
            .spawn(move || run_prepared(job, &job_opts))
            .map_err(|e| BenchError::io("cannot start the job thread", e))?
    };
    // From here on the job must be stopped on every path.
    let result = drive(
        opts,
        &bootstrap,
        mock.is_some(),
        start,
        epoch_ms_start,
        &schedule_cell,
        &sink,
        shards,
        shape,
        &job_thread,
    );
    stop.store(true, Ordering::Release);
    let job_result = job_thread
        .join()
        .map_err(|_| BenchError::WrongResult("the job thread panicked".into()))?;
    let (sent, lag_ns_max, schedule) = result?;
    let report = job_result?;
    drop(mock);
    check_job(&report, sent)?;

    let load_s = opts.duration.as_secs_f64();
    let mut series = Vec::new();
    let (timeline, rows_checked, windows_checked) = match shape {
        Some(shape) => {
            let arrivals = sink.take_windows().map_err(BenchError::WrongResult)?;
            let replay = Replay::new(&schedule, sent, shape)?;
            let warmup_ns = schedule.offset_ns + opts.warmup.as_nanos() as u64;
            let l = match_windows(&replay, &arrivals, warmup_ns)?;
            series.push(LatencySeries {
                name: "watermark_to_result",
                stats: LatencyStats::of(&l.crossing_us),
                histogram: l.crossing_us,
            });
            series.push(LatencySeries {
                name: "last_event_to_result",
                stats: LatencyStats::of(&l.last_event_us),
                histogram: l.last_event_us,
            });
            (
                l.crossing_timeline.points(),
                l.rows_checked,
                l.windows_checked,
            )
        }
        None => {
            let rows = sink.take_rows().map_err(BenchError::WrongResult)?;
            let want = filter_rows_expected(&schedule, sent);
            if rows.rows != want {
                return Err(BenchError::WrongResult(format!(
                    "{} rows passed the filter, {want} of the {sent} events sent have volume > \
                     {FILTER_VOLUME_MIN} (the engine fell behind, or lost rows)",
                    rows.rows
                )));
            }
            series.push(LatencySeries {
                name: "produce_to_output",
                stats: LatencyStats::of(&rows.latency_us),
                histogram: rows.latency_us,
            });
            (rows.timeline.points(), rows.rows, 0)
        }
    };
    Ok(LatencyReport {
        query: query_name,
        rate_per_partition: opts.rate_per_partition,
        partitions: opts.partitions,
        shards,
        duration_s: load_s,
        events_sent: sent,
        events_per_second: sent as f64 / load_s.max(1e-9),
        generator_lag_max_ms: lag_ns_max as f64 / 1e6,
        series,
        timeline,
        stages: StageTimings::of(&report),
        rows_checked,
        windows_checked,
    })
}

/// Events of `0 .. sent` the filter query keeps.
fn filter_rows_expected(schedule: &EventSchedule, sent: u64) -> u64 {
    (0..sent)
        .filter(|&q| schedule.event(q).volume > FILTER_VOLUME_MIN)
        .count() as u64
}

/// What the job must have done: read no more than was sent, skipped nothing, dropped
/// nothing as late.
fn check_job(report: &JobReport, sent: u64) -> Result<()> {
    let wrong = |m: String| Err(BenchError::WrongResult(m));
    if report.records_in() > sent {
        return wrong(format!(
            "the job read {} records, only {sent} were sent (a topic with old data?)",
            report.records_in()
        ));
    }
    if report.skipped_total() > 0 {
        return wrong(format!(
            "the job skipped records as bad input: {:?}",
            report.skipped()
        ));
    }
    if report.late_events() > 0 || report.late_partial_groups() > 0 {
        return wrong(format!(
            "the job dropped {} late events and {} late partial groups, but the events are at \
             most {} ms out of order",
            report.late_events(),
            report.late_partial_groups(),
            crate::latency_load::LOAD_DISORDER_MS
        ));
    }
    Ok(())
}

/// Waits for the job, runs the load, drains the results; returns (sent, generator lag max
/// ns, schedule).
#[allow(clippy::too_many_arguments)]
fn drive(
    opts: &LatencyOptions,
    bootstrap: &str,
    mock: bool,
    start: Instant,
    epoch_ms_start: i64,
    schedule_cell: &std::sync::OnceLock<EventSchedule>,
    sink: &LatencySinkFactory,
    shards: usize,
    shape: Option<WindowShape>,
    job: &std::thread::JoinHandle<spillway_engine::Result<JobReport>>,
) -> Result<(u64, u64, EventSchedule)> {
    let deadline = Instant::now() + Duration::from_millis(JOB_START_MS_MAX);
    while sink.sinks_opened() < shards {
        if job.is_finished() {
            return Err(BenchError::WrongResult(
                "the job ended before it started".into(),
            ));
        }
        if Instant::now() > deadline {
            return Err(BenchError::Kafka(format!(
                "the job did not start within {JOB_START_MS_MAX} ms"
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(if mock {
        SETTLE_MS_MOCK
    } else {
        SETTLE_MS_EXTERNAL
    }));
    let schedule = EventSchedule {
        rate_total: opts.rate_per_partition * opts.partitions as u64,
        partitions: opts.partitions,
        epoch_ms_start,
        seed: 42,
        offset_ns: start.elapsed().as_nanos() as u64,
    };
    let _ = schedule_cell.set(schedule);
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", PRODUCER_LINGER_MS)
        .set("acks", "1")
        .set("queue.buffering.max.messages", "1000000");
    for (k, v) in &opts.producer_properties {
        config.set(k, v);
    }
    let producer: BaseProducer<DeliveryCounter> = config
        .create_with_context(DeliveryCounter::default())
        .map_err(kafka_err("cannot create the producer"))?;
    let progress = AtomicU64::new(0);
    let load_stop = AtomicBool::new(false);
    let outcome = std::thread::scope(|scope| {
        let load = scope.spawn(|| {
            run_load(
                &producer,
                &opts.topic,
                &schedule,
                start,
                opts.duration,
                &progress,
                &load_stop,
            )
        });
        while !load.is_finished() {
            if job.is_finished() {
                load_stop.store(true, Ordering::Relaxed);
            }
            if opts.progress {
                draw_progress(opts, start, &schedule, &progress, sink);
            }
            std::thread::sleep(Duration::from_millis(PROGRESS_INTERVAL_MS));
        }
        load.join()
            .map_err(|_| BenchError::WrongResult("the load generator panicked".into()))?
    })?;
    if opts.progress {
        draw_progress(opts, start, &schedule, &progress, sink);
        eprintln!();
    }
    // Drain: wait for the results the load closed, or for the drain limit.
    let want = match shape {
        Some(shape) => Replay::new(&schedule, outcome.sent, shape)?.rows_closed(),
        None => filter_rows_expected(&schedule, outcome.sent),
    };
    let deadline = Instant::now() + opts.drain_max;
    while sink.rows_received() < want && Instant::now() < deadline && !job.is_finished() {
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok((outcome.sent, outcome.lag_ns_max, schedule))
}

fn draw_progress(
    opts: &LatencyOptions,
    start: Instant,
    schedule: &EventSchedule,
    progress: &AtomicU64,
    sink: &LatencySinkFactory,
) {
    let t = (start.elapsed().as_nanos() as u64).saturating_sub(schedule.offset_ns) as f64 / 1e9;
    let total = opts.duration.as_secs_f64();
    let width = 30usize;
    let done = ((t / total).clamp(0.0, 1.0) * width as f64) as usize;
    eprint!(
        "\r[{}{}] {:>5.1}/{:.0} s  {} events sent  {} result rows ",
        "#".repeat(done),
        "-".repeat(width - done),
        t.min(total),
        total,
        progress.load(Ordering::Relaxed),
        sink.rows_received()
    );
}
