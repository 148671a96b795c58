//! Errors of the benchmarks. The variant says who is at fault.

use spillway_connectors::ConnectorError;
use spillway_engine::EngineError;

/// Errors of a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The engine failed (planning, a shard, a connector inside the job).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A connector used directly by the benchmark failed (embedded Kafka, generator).
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    /// The engine produced a wrong result: the benchmark refuses to report a figure.
    #[error("wrong result: {0}")]
    WrongResult(String),
    /// A job did not finish within its deadline (a stall of the engine).
    #[error("stalled: {0}")]
    Stalled(String),
    /// A benchmark option is out of its range.
    #[error("bad benchmark option: {0}")]
    Config(String),
    /// Producing the backlog into Kafka failed.
    #[error("Kafka producer: {0}")]
    Kafka(String),
    /// Reading or writing the benchmark's data file failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl BenchError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        BenchError::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = BenchError> = std::result::Result<T, E>;
