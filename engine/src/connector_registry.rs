//! Builds the source and sink of a pipeline from its tables' `connector` option.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use spillway_connectors::blackhole_sink::BlackholeSinkFactory;
use spillway_connectors::file_sink::FileSinkFactory;
use spillway_connectors::file_source::FileSourceFactory;
use spillway_connectors::generator_source::GeneratorSourceFactory;
use spillway_connectors::kafka_sink::KafkaSinkFactory;
use spillway_connectors::kafka_source::KafkaSourceFactory;
use spillway_connectors::print_sink::PrintSinkFactory;
use spillway_connectors::{SinkFactory, SourceFactory};

use crate::catalog::TableDef;
use crate::error::{EngineError, Result};

/// Table options the engine itself reads; they are not passed to the connector.
const ENGINE_OPTIONS: &[&str] = &[
    "format",
    "scan.watermark.idle-timeout",
    // Lateness of a source table (planned in `sql/late.rs`).
    "allowed-lateness",
    "late.sink",
];

/// Source connectors, for messages.
pub const SOURCE_CONNECTORS: &[&str] = &["kafka", "filesystem", "trades-generator", "nexmark"];
/// Sink connectors, for messages.
pub const SINK_CONNECTORS: &[&str] = &["kafka", "upsert-kafka", "filesystem", "print", "blackhole"];

/// The options a connector receives: everything but the engine's own (checked here).
pub fn connector_options(table: &TableDef) -> Result<BTreeMap<String, String>> {
    if let Some(f) = table.option("format") {
        if !f.eq_ignore_ascii_case("json") {
            return Err(EngineError::Config(format!(
                "table '{}': 'format' = '{f}' is not supported; spillway reads and writes 'json'",
                table.name
            )));
        }
    }
    Ok(table
        .options
        .iter()
        .filter(|(k, _)| !ENGINE_OPTIONS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect())
}

/// The idle timeout of a source table (`scan.watermark.idle-timeout`), if set.
pub fn idle_timeout_ms(table: &TableDef) -> Result<Option<i64>> {
    match table.option("scan.watermark.idle-timeout") {
        None => Ok(None),
        Some(v) => spillway_connectors::duration::parse_duration_ms(v)
            .filter(|ms| *ms > 0)
            .map(Some)
            .ok_or_else(|| {
                EngineError::Config(format!(
                    "table '{}': 'scan.watermark.idle-timeout' = '{v}' is not a duration \
                     (examples: '30 s', '500 ms', '1 min')",
                    table.name
                ))
            }),
    }
}

/// `table` with `properties` (librdkafka properties of a tuning profile, no prefix) added as
/// `properties.X` options when it is a Kafka table; an option the table sets itself wins.
pub fn with_kafka_properties(
    mut table: TableDef,
    properties: &BTreeMap<String, String>,
) -> TableDef {
    if table.connector() == "kafka" {
        for (k, v) in properties {
            table
                .options
                .entry(format!("properties.{k}"))
                .or_insert_with(|| v.clone());
        }
    }
    table
}

/// The option through which sources skip oversized records.
const RECORD_BYTES_MAX_OPTION: &str = "source.record-bytes-max";

/// Builds the source factory of `table`; `shards` bounds how many splits a file gets, and
/// `record_bytes_max` is the record size limit unless the table sets its own.
pub fn source_factory(
    table: &TableDef,
    shards: usize,
    record_bytes_max: usize,
) -> Result<Arc<dyn SourceFactory>> {
    let mut options = connector_options(table)?;
    let name = table.name.as_str();
    if matches!(table.connector().as_str(), "kafka" | "filesystem") {
        options
            .entry(RECORD_BYTES_MAX_OPTION.to_string())
            .or_insert_with(|| record_bytes_max.to_string());
    }
    Ok(match table.connector().as_str() {
        "kafka" => Arc::new(KafkaSourceFactory::from_options(name, &options)?),
        "filesystem" => Arc::new(FileSourceFactory::from_options(name, &options, shards)?),
        "trades-generator" => Arc::new(GeneratorSourceFactory::from_options(name, &options)?),
        "nexmark" => Arc::new(
            spillway_connectors::nexmark::NexmarkSourceFactory::from_options(
                name, &options, shards,
            )?,
        ),
        "" => {
            return Err(EngineError::Config(format!(
                "table '{name}' has no 'connector' option; sources are: {}",
                SOURCE_CONNECTORS.join(", ")
            )))
        }
        other => {
            return Err(EngineError::Config(format!(
                "table '{name}': connector '{other}' cannot be read; sources are: {}",
                SOURCE_CONNECTORS.join(", ")
            )))
        }
    })
}

/// Builds the sink factory of `table`, whose rows have `schema`. With `epochs` (the job
/// checkpoints), sinks that can publish per checkpoint epoch do: the filesystem sink writes a
/// directory of part files that appear when their checkpoint completes (exactly-once), and
/// the exactly-once Kafka sink commits one transaction per shard and epoch.
pub fn sink_factory(
    table: &TableDef,
    schema: SchemaRef,
    epochs: bool,
) -> Result<Arc<dyn SinkFactory>> {
    let options = connector_options(table)?;
    let name = table.name.as_str();
    Ok(match table.connector().as_str() {
        "kafka" => {
            let sink = KafkaSinkFactory::from_options(name, &options, schema)?;
            if sink.exactly_once() && !epochs {
                return Err(EngineError::Config(format!(
                    "table '{name}': 'sink.delivery-guarantee' = 'exactly-once' commits one \
                     transaction per checkpoint: turn checkpoints on (SET 'checkpoint.dir', \
                     --checkpoint-dir, or serve's state_dir)"
                )));
            }
            Arc::new(sink)
        }
        "upsert-kafka" => {
            let key: Vec<String> = table
                .primary_key
                .iter()
                .map(|&c| table.columns[c].name.clone())
                .collect();
            Arc::new(KafkaSinkFactory::upsert(name, &options, schema, &key)?)
        }
        "filesystem" if epochs => {
            Arc::new(FileSinkFactory::from_options(name, &options)?.with_epochs())
        }
        "filesystem" => Arc::new(FileSinkFactory::from_options(name, &options)?),
        "print" => Arc::new(PrintSinkFactory::from_options(name, &options)?),
        "blackhole" => Arc::new(BlackholeSinkFactory::from_options(name, &options)?),
        "" => {
            return Err(EngineError::Config(format!(
                "table '{name}' has no 'connector' option; sinks are: {}",
                SINK_CONNECTORS.join(", ")
            )))
        }
        other => {
            return Err(EngineError::Config(format!(
                "table '{name}': connector '{other}' cannot be written; sinks are: {}",
                SINK_CONNECTORS.join(", ")
            )))
        }
    })
}
