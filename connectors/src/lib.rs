//! Sources and sinks of spillway.
//!
//! A [`SourceFactory`] is built once per job from a table's WITH options; it discovers the
//! partitions (checking that the broker, topic or file is there), and each shard then opens
//! its own [`Source`] over the partitions it owns. A [`SinkFactory`] likewise opens one
//! [`Sink`] per shard.

pub mod blackhole_sink;
pub mod crash_points;
pub mod dimension_changelog;
pub mod dimension_file;
pub mod dimension_kafka;
pub mod duration;
pub mod embedded_kafka;
pub mod epoch_files;
pub mod error;
pub mod file_sink;
pub mod file_source;
pub mod generated_partitions;
pub mod generator_source;
pub mod io_retry;
pub mod json_lines;
pub mod kafka_batch_queue;
pub mod kafka_options;
pub mod kafka_sink;
pub mod kafka_source;
pub mod kafka_txn;
pub mod kafka_txn_log;
pub mod kafka_txn_writer;
pub mod memory_source;
pub mod nexmark;
pub mod print_sink;
pub mod raw_batch;
pub mod repartition;
pub mod repartition_source;
pub mod repartition_topic;
pub mod state_topic;
pub mod table_options;
pub mod timestamp;
pub mod trades_generator;
pub mod writer_thread;

pub use error::{ConnectorError, Result};
pub use raw_batch::RawBatch;

use std::collections::BTreeMap;
use std::path::PathBuf;

use arrow::record_batch::RecordBatch;

/// One partition of a source: a Kafka topic partition, or a split of a file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionInfo {
    /// Topic name, or the file path.
    pub topic: String,
    /// Kafka partition number, or the split number of a file.
    pub partition: i32,
}

/// What a poll found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceStatus {
    /// Records were appended.
    Data,
    /// Nothing now; poll again later.
    Idle,
    /// A bounded source has delivered everything of all its partitions.
    Finished,
}

/// The reading end of a shard: owns a disjoint set of partitions.
pub trait Source: Send {
    /// The partitions this source reads, in the order `RawBatch::partition` indexes them.
    fn partitions(&self) -> &[PartitionInfo];

    /// Appends up to `records_max` records (and about `bytes_max` bytes) to `out` without
    /// blocking. `out` is not cleared.
    fn poll(
        &mut self,
        out: &mut RawBatch,
        records_max: usize,
        bytes_max: usize,
    ) -> Result<SourceStatus>;

    /// The next offset to read of partition `index` (what a checkpoint or commit stores).
    fn position(&self, index: u32) -> i64;

    /// The high watermark (offset after the last record) of partition `index` as of the
    /// last fetch, when the source knows it without a network round trip (None otherwise).
    /// Consumer lag is this minus [`Source::position`]. Called every ~100 ms, not per record.
    fn high_watermark(&self, index: u32) -> Option<i64> {
        let _ = index;
        None
    }
}

/// Builds the sources of one table for the shards.
pub trait SourceFactory: Send + Sync {
    /// Checks the source is reachable and lists its partitions (an unreachable broker, a
    /// missing topic or a missing file is an error here, before any shard starts).
    fn discover(&self) -> Result<Vec<PartitionInfo>>;

    /// Opens a source over `partitions` (a subset of what `discover` returned), inside the
    /// shard that will poll it. `shard` is the shard's number, for client ids. `resume`, when
    /// given, holds for each partition the next offset to read (from a checkpoint) and
    /// overrides the startup mode.
    fn open(
        &self,
        shard: usize,
        partitions: Vec<PartitionInfo>,
        resume: Option<Vec<i64>>,
    ) -> Result<Box<dyn Source>>;

    /// One line for EXPLAIN, e.g. `kafka topic 'trades' at 127.0.0.1:9092, earliest, bounded`.
    fn describe(&self) -> String;

    /// A client that records checkpointed positions where the source's own tools see them
    /// (Kafka: the consumer group's committed offsets), if the source has such a place.
    fn offset_committer(&self) -> Result<Option<Box<dyn OffsetCommitter>>> {
        Ok(None)
    }

    /// The Kafka consumer group whose committed offsets are this source's positions, if the
    /// source is a Kafka topic (a transactional sink commits them in its transactions).
    fn consumer_group(&self) -> Option<KafkaGroup> {
        None
    }
}

/// A Kafka source's consumer group: where it is and how to reach it.
#[derive(Clone)]
pub struct KafkaGroup {
    /// `bootstrap.servers` of the source.
    pub bootstrap_servers: String,
    /// The group id.
    pub group_id: String,
    /// The source's consumer configuration (its properties, the group id).
    pub consumer_config: rdkafka::ClientConfig,
}

impl std::fmt::Debug for KafkaGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "group '{}' at {}", self.group_id, self.bootstrap_servers)
    }
}

/// What an epoch-committed sink learns about its job before recovery (see
/// [`SinkFactory::bind_job`]).
#[derive(Debug, Clone)]
pub struct EpochSinkContext {
    /// A directory inside the job's checkpoint directory that only this sink uses.
    pub dir: PathBuf,
    /// This run's number (the checkpoint generation): it grows by one per restart.
    pub attempt: u64,
    /// The source partitions of each shard of this run.
    pub shard_partitions: Vec<Vec<PartitionInfo>>,
    /// The next offset to read per partition at the last committed checkpoint (empty without
    /// one).
    pub committed_positions: BTreeMap<PartitionInfo, i64>,
    /// The source's consumer group, when the source is Kafka.
    pub source_group: Option<KafkaGroup>,
    /// The checkpoint interval (an epoch lasts about this long).
    pub checkpoint_interval: std::time::Duration,
}

/// Records positions (the next offset to read per partition) outside spillway, for
/// monitoring: the checkpoint, not this, is what recovery reads.
pub trait OffsetCommitter: Send {
    fn commit(&self, offsets: &[(PartitionInfo, i64)]) -> Result<()>;
}

/// The writing end of a shard.
pub trait Sink: Send {
    /// Writes result rows; the batch has the sink table's schema.
    fn write(&mut self, batch: &RecordBatch) -> Result<()>;
    /// Makes everything written so far durable or delivered (as far as the sink can).
    fn flush(&mut self) -> Result<()>;
    /// Rows written so far by this sink instance.
    fn rows_written(&self) -> u64;
    /// Ends this shard's epoch `epoch`: everything written since the previous call becomes
    /// durable but stays invisible until [`SinkFactory::commit_epochs`] covers `epoch`.
    /// Non-transactional sinks just flush. Epochs passed by one shard strictly increase.
    /// The slow part (fsync, rename) may still run on another thread when this returns: the
    /// epoch is prepared once [`EpochPrepared::wait`] returns Ok (the checkpoint writer
    /// waits, the shard's hot path does not).
    fn prepare_epoch(&mut self, epoch: u64) -> Result<EpochPrepared> {
        let _ = epoch;
        self.flush()?;
        Ok(EpochPrepared::done())
    }
}

/// The end of a sink's epoch, possibly still under way on the sink's own thread.
#[must_use = "an epoch is prepared only once `wait` returns Ok"]
pub struct EpochPrepared(Option<Box<dyn FnOnce() -> Result<()> + Send>>);

impl EpochPrepared {
    /// Already prepared.
    pub fn done() -> Self {
        EpochPrepared(None)
    }

    /// Prepared when `wait` returns Ok.
    pub fn later(wait: impl FnOnce() -> Result<()> + Send + 'static) -> Self {
        EpochPrepared(Some(Box::new(wait)))
    }

    /// Waits until the epoch is prepared (durable, invisible).
    pub fn wait(self) -> Result<()> {
        match self.0 {
            Some(w) => w(),
            None => Ok(()),
        }
    }
}

/// Builds the sinks of one table for the shards.
pub trait SinkFactory: Send + Sync {
    /// Opens the sink instance of `shard`.
    fn open(&self, shard: usize) -> Result<Box<dyn Sink>>;
    /// Opens the late-data sink of `shard`, when this factory carries one besides the main
    /// sink (the engine's wrapper for a source table's `'late.sink'`); None otherwise.
    fn open_late(&self, shard: usize) -> Result<Option<Box<dyn Sink>>> {
        let _ = shard;
        Ok(None)
    }
    /// Called once after every shard's sink was flushed and dropped: joins writer threads,
    /// closes files.
    fn close(&self) -> Result<()>;
    /// One line for EXPLAIN.
    fn describe(&self) -> String;
    /// Whether this sink publishes results only when their epoch commits (exactly-once).
    fn epoch_committed(&self) -> bool {
        false
    }
    /// Makes every prepared epoch <= `epoch` visible, for all shards. Called from a thread that
    /// is not a shard, after the checkpoint of `epoch` is durable; idempotent (may be called
    /// again after a crash with the same or a smaller epoch). `positions` holds the next offset
    /// to read of every source partition at the checkpoint of `epoch`.
    fn commit_epochs(&self, epoch: u64, positions: &BTreeMap<PartitionInfo, i64>) -> Result<()> {
        let _ = (epoch, positions);
        Ok(())
    }
    /// Called once at start-up of a checkpointing job, before [`SinkFactory::recover_epochs`]
    /// and any `open`.
    fn bind_job(&self, context: &EpochSinkContext) -> Result<()> {
        let _ = context;
        Ok(())
    }
    /// Whether the sink commits the source's offsets itself (in its transactions); the job
    /// then does not commit them to the consumer group separately.
    fn commits_source_offsets(&self) -> bool {
        false
    }
    /// Called once at start-up, before any `open`, with the last committed epoch (None: no
    /// checkpoint yet): commits prepared epochs <= it, deletes prepared epochs > it and any
    /// unprepared in-progress output of a previous run.
    fn recover_epochs(&self, committed: Option<u64>) -> Result<()> {
        let _ = committed;
        Ok(())
    }
}
