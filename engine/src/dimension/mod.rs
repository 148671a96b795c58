//! Dimension tables: reference data that changes, joined with the stream on every shard.
//!
//! A dimension table is a table with a PRIMARY KEY whose connector carries its changelog
//! (`upsert-kafka`: upsert by key, a tombstone deletes; `filesystem`: JSON lines, later lines
//! upsert, `"__deleted": true` deletes). Every shard reads the whole changelog into its own
//! copy ([`ShardDimension`]): its own reader (all partitions of the topic), its own key ->
//! row index over Arrow-held rows, so the join on the hot path takes no lock and crosses no
//! core. The shard waits at start until its copy caught up with the changelog's end
//! (`dimension.startup-timeout`), then polls it with a bounded budget every turn of its loop,
//! so updates apply live and in order.
//!
//! Map: `changelog_reader.rs` (changelog -> upserts/deletes), `dimension_table.rs` (latest or
//! versioned index, limits), `row_store.rs` (rows as Arrow segments), `key_codec.rs` (keys
//! as bytes), `lookup_join.rs` (the operator), `options.rs` (table options).
//!
//! Checkpoints: dimension state is not checkpointed; each shard re-reads the changelog on
//! recovery (the topic is the source of truth; see docs/ARCHITECTURE.md).

mod changelog_reader;
mod dimension_table;
mod key_bytes;
mod key_codec;
mod lookup_join;
mod options;
mod row_store;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use spillway_connectors::dimension_changelog::ChangelogSourceFactory;
use spillway_connectors::dimension_file::FileChangelogFactory;
use spillway_connectors::dimension_kafka::KafkaChangelogFactory;

pub use changelog_reader::{ChangelogReader, ChangelogStats, DELETED_FIELD};
pub use dimension_table::{DimensionLimits, DimensionTable};
pub use lookup_join::{JoinStats, LookupJoin};
pub use options::{
    DimensionOptions, BYTES_MAX_DEFAULT, ROWS_MAX_DEFAULT, STARTUP_TIMEOUT_MS_DEFAULT,
};
pub use row_store::RowStore;

use crate::catalog::TableDef;
use crate::error::{EngineError, Result};
use crate::plan::{JoinPlan, Pipeline, Program};

/// Changelog records a shard applies per turn of its loop (bounds the pause of the stream).
pub const POLL_RECORDS_MAX: usize = 1024;
/// Changelog bytes a shard reads per turn of its loop.
pub const POLL_BYTES_MAX: usize = 1 << 20;
/// Changelog records per poll during the start-up catch-up.
pub const CATCH_UP_RECORDS_MAX: usize = 8192;
/// Changelog bytes per poll during the start-up catch-up.
pub const CATCH_UP_BYTES_MAX: usize = 8 << 20;
/// How long a catching-up shard sleeps when its changelog has nothing yet.
const CATCH_UP_IDLE_MS: u64 = 1;

/// What every shard needs to build its copy of a job's dimension table (read-only, shared).
pub struct DimensionSetup {
    /// The dimension table as declared.
    pub table: Arc<TableDef>,
    pub join: JoinPlan,
    pub options: DimensionOptions,
    pub changelog: Arc<dyn ChangelogSourceFactory>,
}

impl DimensionSetup {
    /// One line for EXPLAIN.
    pub fn describe(&self) -> String {
        self.changelog.describe()
    }
}

/// The dimension table of `pipeline`'s join, with its changelog checked (reachable broker
/// and topic, or the file); None without a join. `kafka_properties` (a tuning profile's)
/// apply to an `upsert-kafka` table that does not set them.
pub fn prepare(
    program: &Program,
    pipeline: &Pipeline,
    kafka_properties: &BTreeMap<String, String>,
) -> Result<Option<Arc<DimensionSetup>>> {
    let Some(join) = &pipeline.join else {
        return Ok(None);
    };
    let mut table = program.table(&join.dimension).cloned().ok_or_else(|| {
        EngineError::Internal(format!(
            "dimension table '{}' missing from the plan",
            join.dimension
        ))
    })?;
    let options = DimensionOptions::parse(&table)?;
    let connector = table.connector();
    if connector == "upsert-kafka" {
        for (k, v) in kafka_properties {
            table
                .options
                .entry(format!("properties.{k}"))
                .or_insert_with(|| v.clone());
        }
    }
    let changelog_options = options::connector_options(&table);
    let changelog: Arc<dyn ChangelogSourceFactory> = match connector.as_str() {
        "upsert-kafka" => Arc::new(KafkaChangelogFactory::from_options(
            &table.name,
            &changelog_options,
        )?),
        "filesystem" => Arc::new(FileChangelogFactory::from_options(
            &table.name,
            &changelog_options,
        )?),
        other => {
            return Err(EngineError::Config(format!(
                "table '{}': connector '{other}' cannot feed a dimension table (upsert-kafka, filesystem)",
                table.name
            )))
        }
    };
    changelog.check()?;
    Ok(Some(Arc::new(DimensionSetup {
        table: Arc::new(table),
        join: join.clone(),
        options,
        changelog,
    })))
}

/// One shard's dimension table: its changelog reader, its copy, its join operator.
pub struct ShardDimension {
    reader: ChangelogReader,
    table: DimensionTable,
    join: LookupJoin,
    startup_timeout: Duration,
    /// Changelog records read since the shard started.
    pub records_read: u64,
}

impl ShardDimension {
    /// Opens shard `shard`'s reader; `stream` is the stream table's schema.
    pub fn open(
        setup: &DimensionSetup,
        shard: usize,
        stream: &arrow::datatypes::SchemaRef,
    ) -> Result<Self> {
        let versioned = setup.join.version_time_column.is_some();
        let source = setup.changelog.open(shard)?;
        let reader = ChangelogReader::new(&setup.table, versioned, source)?;
        let schema = setup.table.schema();
        let store = RowStore::new(schema.clone())?;
        let table = DimensionTable::new(
            &setup.table.name,
            store,
            setup.options.limits.clone(),
            versioned,
        );
        let join = LookupJoin::new(&setup.join, stream, &schema)?;
        Ok(ShardDimension {
            reader,
            table,
            join,
            startup_timeout: Duration::from_millis(setup.options.startup_timeout_ms),
            records_read: 0,
        })
    }

    /// Reads the changelog until the copy caught up with the end seen at start (or `stop`
    /// is set); an error after `dimension.startup-timeout` says where the reader is.
    pub async fn catch_up(&mut self, stop: &AtomicBool) -> Result<()> {
        let started = Instant::now();
        loop {
            let n = self
                .reader
                .poll(&mut self.table, CATCH_UP_RECORDS_MAX, CATCH_UP_BYTES_MAX)?;
            self.records_read += n as u64;
            if self.reader.caught_up() || stop.load(Ordering::Acquire) {
                return Ok(());
            }
            if started.elapsed() > self.startup_timeout {
                return Err(self.catch_up_timeout());
            }
            if n == 0 {
                glommio::timer::sleep(Duration::from_millis(CATCH_UP_IDLE_MS)).await;
            } else {
                glommio::executor().yield_task_queue_now().await;
            }
        }
    }

    fn catch_up_timeout(&self) -> EngineError {
        EngineError::Limit(format!(
            "dimension table '{}' did not catch up with its changelog within 'dimension.startup-timeout' = {} ms ({} records read; {}); is the broker slow or the table larger than expected? raise the option",
            self.reader.table_name(),
            self.startup_timeout.as_millis(),
            self.records_read,
            self.reader.progress()
        ))
    }

    /// Applies at most one turn's budget of changelog records; returns how many were read.
    pub fn poll(&mut self) -> Result<usize> {
        let n = self
            .reader
            .poll(&mut self.table, POLL_RECORDS_MAX, POLL_BYTES_MAX)?;
        self.records_read += n as u64;
        Ok(n)
    }

    /// Catches up synchronously (outside a glommio executor: benchmarks and tests), within
    /// the start-up timeout.
    pub fn catch_up_blocking(&mut self) -> Result<()> {
        let started = Instant::now();
        while !self.reader.caught_up() {
            let n = self
                .reader
                .poll(&mut self.table, CATCH_UP_RECORDS_MAX, CATCH_UP_BYTES_MAX)?;
            self.records_read += n as u64;
            if started.elapsed() > self.startup_timeout {
                return Err(self.catch_up_timeout());
            }
            if n == 0 {
                std::thread::sleep(Duration::from_millis(CATCH_UP_IDLE_MS));
            }
        }
        Ok(())
    }

    /// Joins a decoded batch of the stream; `watermark_ms` (the shard's) lets a temporal
    /// table drop the versions no event at or after it can need.
    pub fn join(&mut self, batch: &RecordBatch, watermark_ms: i64) -> Result<RecordBatch> {
        self.table.advance_watermark(watermark_ms);
        self.join.apply(batch, &self.table)
    }

    /// Keys, rows and bytes held.
    pub fn size(&self) -> (usize, usize, usize) {
        (self.table.keys(), self.table.rows(), self.table.bytes())
    }

    /// What the reader applied and skipped.
    pub fn changelog_stats(&self) -> &ChangelogStats {
        self.reader.stats()
    }

    /// Samples of skipped changelog records.
    pub fn samples(&self) -> Vec<String> {
        self.reader.samples()
    }

    /// What the join did.
    pub fn join_stats(&self) -> &JoinStats {
        self.join.stats()
    }

    /// The joined schema.
    pub fn joined_schema(&self) -> &arrow::datatypes::SchemaRef {
        self.join.joined_schema()
    }
}
