//! Live metrics of running jobs: one [`ShardMetrics`] block per shard that the shard updates
//! with relaxed atomic stores of its own counters once per batch, and that another thread
//! (the HTTP server of `spillway serve`) reads at any time.
//!
//! Invariant: a shard only stores into its own block and never takes a lock to do so; the
//! reader sees each value as of some recent batch (values of one block are not a consistent
//! snapshot, each one is).
//!
//! Boundary: [`JobMetrics`] is handed to a job through `JobOptions::metrics`; the job creates
//! one block per shard before the shards start ([`JobMetrics::start`]).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use spillway_connectors::{PartitionInfo, Source};

use crate::decode::DecodeStats;
use crate::emitter::Emitter;
use crate::shard::ShardReport;
use crate::window_operator::WindowOperator;

/// Reasons a record is skipped as bad input, in the order of [`ShardMetrics::skipped`]
/// (Prometheus label values of `spillway_skipped_records_total{reason}`).
pub const SKIP_REASONS: [&str; 6] = [
    "malformed_json",
    "missing_field",
    "wrong_type",
    "null_event_time",
    "oversized",
    "empty_payload",
];

/// How often a shard publishes its latency quantiles and its partitions' high watermarks
/// (both cost more than a counter store: a histogram walk, a librdkafka call).
pub const SLOW_PUBLISH_INTERVAL_MS: u64 = 100;

/// "No value yet" of the signed gauges (watermark, high watermark).
pub const NO_VALUE: i64 = i64::MIN;

/// Live values of one partition a shard reads.
#[derive(Debug)]
pub struct PartitionMetrics {
    pub topic: String,
    pub partition: i32,
    /// The next offset to read.
    pub position: AtomicI64,
    /// The partition's high watermark as of the last fetch ([`NO_VALUE`] when unknown).
    pub high_watermark: AtomicI64,
}

impl PartitionMetrics {
    /// High watermark minus position, when the high watermark is known.
    pub fn lag(&self) -> Option<i64> {
        let high = self.high_watermark.load(Ordering::Relaxed);
        let position = self.position.load(Ordering::Relaxed);
        (high != NO_VALUE && position >= 0).then(|| (high - position).max(0))
    }
}

/// Live values of one shard. Counters only grow; gauges are the latest value.
#[derive(Debug)]
pub struct ShardMetrics {
    pub shard: usize,
    pub records_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub rows_out: AtomicU64,
    pub windows_out: AtomicU64,
    pub late_events: AtomicU64,
    /// Too-late events written to the table's `'late.sink'`.
    pub late_rows_out: AtomicU64,
    /// Windows emitted again with late updates (row kind "+U").
    pub windows_updated: AtomicU64,
    /// Skipped records per reason, indexed like [`SKIP_REASONS`].
    pub skipped: [AtomicU64; SKIP_REASONS.len()],
    /// The shard's watermark, epoch ms ([`NO_VALUE`] before the first one).
    pub watermark_ms: AtomicI64,
    pub windows_open: AtomicU64,
    pub state_bytes: AtomicU64,
    /// Result latency (window close to result) quantiles, microseconds; 0 before any result.
    pub latency_p50_us: AtomicU64,
    pub latency_p99_us: AtomicU64,
    pub latency_max_us: AtomicU64,
    /// The partitions of this shard, in the order its source indexes them.
    pub partitions: Vec<PartitionMetrics>,
}

impl ShardMetrics {
    /// A block of zeros for `shard` reading `partitions`.
    pub fn new(shard: usize, partitions: &[PartitionInfo]) -> Self {
        ShardMetrics {
            shard,
            records_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            rows_out: AtomicU64::new(0),
            windows_out: AtomicU64::new(0),
            late_events: AtomicU64::new(0),
            late_rows_out: AtomicU64::new(0),
            windows_updated: AtomicU64::new(0),
            skipped: Default::default(),
            watermark_ms: AtomicI64::new(NO_VALUE),
            windows_open: AtomicU64::new(0),
            state_bytes: AtomicU64::new(0),
            latency_p50_us: AtomicU64::new(0),
            latency_p99_us: AtomicU64::new(0),
            latency_max_us: AtomicU64::new(0),
            partitions: partitions
                .iter()
                .map(|p| PartitionMetrics {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    position: AtomicI64::new(-1),
                    high_watermark: AtomicI64::new(NO_VALUE),
                })
                .collect(),
        }
    }

    /// Skipped records of all reasons.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.iter().map(|s| s.load(Ordering::Relaxed)).sum()
    }

    /// Stores the latency quantiles of `h` (a histogram walk: call it every
    /// [`SLOW_PUBLISH_INTERVAL_MS`], not per batch).
    pub fn store_latency(&self, h: &Histogram<u64>) {
        if h.is_empty() {
            return;
        }
        store(&self.latency_p50_us, h.value_at_quantile(0.5));
        store(&self.latency_p99_us, h.value_at_quantile(0.99));
        store(&self.latency_max_us, h.max());
    }
}

fn store(cell: &AtomicU64, value: u64) {
    cell.store(value, Ordering::Relaxed);
}

/// The metric blocks of one job, read by the HTTP server.
#[derive(Debug)]
pub struct JobMetrics {
    /// The job's name (the `job` label).
    pub job: String,
    /// One block per shard of the current run (empty before the job starts). The lock is
    /// taken when a run starts and by readers; shards hold their own `Arc` and never lock.
    shards: Mutex<Vec<Arc<ShardMetrics>>>,
    /// Checkpoints of the job (written by its committer).
    pub checkpoints: CheckpointMetrics,
    /// The number of this job's first shard (group mode: an instance's shard is numbered
    /// after its repartition partition, so shards of one process's instances stay apart).
    shard_base: usize,
    /// Group mode: the blocks of the job instances running in this process.
    children: Mutex<Vec<Arc<JobMetrics>>>,
}

/// What the committer publishes after each committed checkpoint.
#[derive(Debug, Default)]
pub struct CheckpointMetrics {
    /// Checkpoints committed since the server started.
    pub committed_total: AtomicU64,
    /// Epoch of the last committed checkpoint.
    pub epoch: AtomicU64,
    /// Request to commit of the last checkpoint, microseconds.
    pub duration_us: AtomicU64,
    /// Longest hot-path stall of a shard in the last checkpoint, microseconds.
    pub stall_us: AtomicU64,
    /// Bytes written to the shards' stores since the server started.
    pub bytes_total: AtomicU64,
}

impl JobMetrics {
    pub fn new(job: impl Into<String>) -> Self {
        JobMetrics {
            job: job.into(),
            shards: Mutex::new(Vec::new()),
            checkpoints: CheckpointMetrics::default(),
            shard_base: 0,
            children: Mutex::new(Vec::new()),
        }
    }

    /// Group mode: the blocks of a job instance whose shard is numbered `shard_base`; its
    /// shards show among this job's until [`JobMetrics::remove_child`].
    pub fn child(&self, shard_base: usize) -> Arc<JobMetrics> {
        let child = Arc::new(JobMetrics {
            shard_base,
            ..JobMetrics::new(self.job.clone())
        });
        self.lock_children().push(child.clone());
        child
    }

    /// Forgets an instance's blocks (its partition went to another process).
    pub fn remove_child(&self, child: &Arc<JobMetrics>) {
        self.lock_children().retain(|c| !Arc::ptr_eq(c, child));
    }

    fn lock_children(&self) -> std::sync::MutexGuard<'_, Vec<Arc<JobMetrics>>> {
        self.children.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates the blocks of a run, one per shard (`partitions[shard]` = its partitions),
    /// replacing those of an earlier run, and returns them in shard order.
    pub fn start(&self, partitions: &[Vec<PartitionInfo>]) -> Vec<Arc<ShardMetrics>> {
        let blocks: Vec<Arc<ShardMetrics>> = partitions
            .iter()
            .enumerate()
            .map(|(shard, parts)| Arc::new(ShardMetrics::new(self.shard_base + shard, parts)))
            .collect();
        *self.lock() = blocks.clone();
        blocks
    }

    /// The blocks of the current run, in shard order (then those of the job instances).
    pub fn shards(&self) -> Vec<Arc<ShardMetrics>> {
        let mut shards = self.lock().clone();
        for child in self.lock_children().iter() {
            shards.extend(child.shards());
        }
        shards
    }

    /// Records read by all shards so far.
    pub fn records_in(&self) -> u64 {
        let shards = self.shards();
        shards
            .iter()
            .map(|s| s.records_in.load(Ordering::Relaxed))
            .sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<ShardMetrics>>> {
        // A reader that panicked cannot leave the vector half written: the data is fine.
        self.shards.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a shard shows its publisher after a batch (borrowed from the shard's own state).
pub struct ShardView<'a> {
    pub report: &'a ShardReport,
    pub decode: &'a DecodeStats,
    pub window: Option<&'a WindowOperator>,
    pub emitter: &'a Emitter,
    pub watermark_ms: i64,
    pub source: &'a dyn Source,
}

/// The shard side: stores a [`ShardView`] into the shard's block.
pub struct MetricsPublisher {
    metrics: Arc<ShardMetrics>,
    slow_published_at: Option<Instant>,
}

impl MetricsPublisher {
    pub fn new(metrics: Arc<ShardMetrics>) -> Self {
        MetricsPublisher {
            metrics,
            slow_published_at: None,
        }
    }

    /// Publishes the shard's counters (relaxed stores, no lock), and every
    /// [`SLOW_PUBLISH_INTERVAL_MS`] (or when `force`d) its latency quantiles and high
    /// watermarks.
    pub fn publish(&mut self, view: &ShardView<'_>, now: Instant, force: bool) {
        let m = &*self.metrics;
        let r = view.report;
        store(&m.records_in, r.records_in);
        store(&m.bytes_in, r.bytes_in);
        store(&m.rows_out, view.emitter.rows_out);
        store(&m.windows_out, view.emitter.windows_out);
        store(&m.late_rows_out, view.emitter.late_rows_out());
        store(&m.windows_updated, view.emitter.windows_updated);
        let d = view.decode;
        let skipped = [
            d.malformed,
            d.missing_field,
            d.wrong_type,
            d.null_time,
            r.skipped_oversized,
            r.skipped_empty,
        ];
        for (cell, n) in m.skipped.iter().zip(skipped) {
            store(cell, n);
        }
        m.watermark_ms.store(view.watermark_ms, Ordering::Relaxed);
        if let Some(w) = view.window {
            store(&m.late_events, w.stats.late_events);
            store(&m.windows_open, w.open_windows() as u64);
            store(&m.state_bytes, w.state_bytes() as u64);
        }
        for (i, p) in m.partitions.iter().enumerate() {
            p.position
                .store(view.source.position(i as u32), Ordering::Relaxed);
        }
        let interval = Duration::from_millis(SLOW_PUBLISH_INTERVAL_MS);
        let due = self
            .slow_published_at
            .is_none_or(|at| now.saturating_duration_since(at) >= interval);
        if force || due {
            self.slow_published_at = Some(now);
            m.store_latency(&view.emitter.latency_us);
            for (i, p) in m.partitions.iter().enumerate() {
                let high = view.source.high_watermark(i as u32).unwrap_or(NO_VALUE);
                p.high_watermark.store(high, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(n: i32) -> Vec<PartitionInfo> {
        (0..n)
            .map(|partition| PartitionInfo {
                topic: "trades".into(),
                partition,
            })
            .collect()
    }

    #[test]
    fn group_instances_show_as_shards_numbered_by_partition_until_removed() {
        let job = JobMetrics::new("q5");
        job.start(&[parts(2)]);
        let a = job.child(3);
        let b = job.child(1);
        a.start(&[parts(4)]);
        b.start(&[parts(4)]);
        let numbers: Vec<usize> = job.shards().iter().map(|s| s.shard).collect();
        assert_eq!(numbers, vec![0, 3, 1]);
        job.remove_child(&a);
        let numbers: Vec<usize> = job.shards().iter().map(|s| s.shard).collect();
        assert_eq!(numbers, vec![0, 1]);
    }

    #[test]
    fn start_creates_one_block_per_shard_with_its_partitions() {
        let job = JobMetrics::new("trades");
        assert!(job.shards().is_empty());
        let p = parts(3);
        let blocks = job.start(&[vec![p[0].clone(), p[2].clone()], vec![p[1].clone()]]);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[1].shard, 1);
        let read = job.shards();
        assert_eq!(read[0].partitions.len(), 2);
        assert_eq!(read[0].partitions[1].partition, 2);
        assert_eq!(read[1].partitions[0].partition, 1);
        // The reader sees what the shard stores, through its own Arc.
        blocks[0].records_in.store(7, Ordering::Relaxed);
        blocks[1].records_in.store(5, Ordering::Relaxed);
        assert_eq!(job.records_in(), 12);
        // A second run replaces the blocks of the first.
        job.start(&[vec![]]);
        assert_eq!(job.shards().len(), 1);
        assert_eq!(job.records_in(), 0);
    }

    #[test]
    fn lag_needs_a_known_high_watermark_and_never_goes_negative() {
        let m = ShardMetrics::new(0, &parts(1));
        let p = &m.partitions[0];
        p.position.store(10, Ordering::Relaxed);
        assert_eq!(p.lag(), None);
        p.high_watermark.store(25, Ordering::Relaxed);
        assert_eq!(p.lag(), Some(15));
        p.position.store(30, Ordering::Relaxed);
        assert_eq!(p.lag(), Some(0));
    }

    #[test]
    fn latency_quantiles_come_from_the_histogram() {
        let m = ShardMetrics::new(0, &[]);
        let mut h = crate::emitter::latency_histogram();
        m.store_latency(&h);
        assert_eq!(m.latency_max_us.load(Ordering::Relaxed), 0);
        for us in 1..=1000u64 {
            h.saturating_record(us);
        }
        m.store_latency(&h);
        let p50 = m.latency_p50_us.load(Ordering::Relaxed);
        let p99 = m.latency_p99_us.load(Ordering::Relaxed);
        assert!((495..=505).contains(&p50), "p50 {p50}");
        assert!((985..=995).contains(&p99), "p99 {p99}");
        assert_eq!(m.latency_max_us.load(Ordering::Relaxed), 1000);
    }

    /// A Kafka job publishes positions and, from librdkafka's cached high watermarks, the
    /// consumer lag of every partition (0 once everything produced was read).
    #[test]
    fn kafka_job_publishes_positions_and_consumer_lag() {
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
        use spillway_connectors::embedded_kafka::EmbeddedKafka;
        use std::sync::atomic::AtomicBool;

        let kafka = EmbeddedKafka::start(1).unwrap_or_else(|e| panic!("{e}"));
        kafka
            .create_topic("trades", 2)
            .unwrap_or_else(|e| panic!("{e}"));
        let producer: BaseProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", kafka.bootstrap_servers())
            .create()
            .unwrap_or_else(|e| panic!("{e}"));
        let per_partition = [30i64, 50];
        for (partition, &n) in per_partition.iter().enumerate() {
            for i in 0..n {
                let json = format!(r#"{{"symbol":"A","volume":1,"ts":{}}}"#, 1000 + i);
                let record = BaseRecord::<(), str>::to("trades")
                    .partition(partition as i32)
                    .payload(&json);
                producer.send(record).unwrap_or_else(|(e, _)| panic!("{e}"));
            }
        }
        producer
            .flush(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e}"));
        let sql = format!(
            "CREATE TABLE trades (symbol STRING, volume BIGINT, ts TIMESTAMP(3),
               WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
             WITH ('connector' = 'kafka', 'topic' = 'trades', 'format' = 'json',
               'properties.bootstrap.servers' = '{}', 'scan.startup.mode' = 'earliest-offset');
             CREATE TABLE out (symbol STRING, volume BIGINT) WITH ('connector' = 'blackhole');
             INSERT INTO out SELECT symbol, volume FROM trades;",
            kafka.bootstrap_servers()
        );
        let program = crate::sql::parse_program(&sql).unwrap_or_else(|e| panic!("{e}"));
        let metrics = Arc::new(JobMetrics::new("lag"));
        let stop = Arc::new(AtomicBool::new(false));
        let opts = crate::job::JobOptions {
            shards: Some(2),
            pin_cores: false,
            stop: stop.clone(),
            metrics: Some(metrics.clone()),
            ..Default::default()
        };
        let job = std::thread::spawn(move || crate::job::run_program(&program, &opts));
        let deadline = Instant::now() + Duration::from_secs(30);
        let lags = loop {
            let shards = metrics.shards();
            let parts: Vec<(i32, i64, Option<i64>)> = shards
                .iter()
                .flat_map(|s| s.partitions.iter())
                .map(|p| (p.partition, p.position.load(Ordering::Relaxed), p.lag()))
                .collect();
            if metrics.records_in() == 80 && parts.iter().all(|p| p.2 == Some(0)) {
                break parts;
            }
            assert!(Instant::now() < deadline, "no lag 0 in time: {parts:?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        stop.store(true, Ordering::Release);
        let report = job.join().unwrap_or_else(|_| panic!("job panicked"));
        let report = report.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report.records_in(), 80);
        let mut lags = lags;
        lags.sort();
        assert_eq!(lags, vec![(0, 30, Some(0)), (1, 50, Some(0))]);
    }

    #[test]
    fn skipped_total_sums_every_reason() {
        let m = ShardMetrics::new(0, &[]);
        for (i, cell) in m.skipped.iter().enumerate() {
            cell.store(i as u64 + 1, Ordering::Relaxed);
        }
        assert_eq!(m.skipped_total(), 21);
    }
}
