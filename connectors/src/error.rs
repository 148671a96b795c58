//! Errors of sources and sinks.

/// Errors of the connectors. The variant says who is at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// A table option is missing or wrong (the user's configuration).
    #[error("table '{table}': {message}")]
    Config { table: String, message: String },
    /// Kafka (the broker or librdkafka) failed or cannot be reached.
    #[error("Kafka: {0}")]
    Kafka(String),
    /// A file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A named limit was reached.
    #[error("limit reached: {0}")]
    Limit(String),
    /// Another process took over a partition this process was working on (group mode).
    #[error("fenced: {0}")]
    Fenced(String),
    /// Work was stopped on request before it completed (nothing was committed).
    #[error("stopped: {0}")]
    Stopped(String),
    /// A bug in spillway.
    #[error("internal error (a bug in spillway): {0}")]
    Internal(String),
}

impl ConnectorError {
    pub fn config(table: impl Into<String>, message: impl Into<String>) -> Self {
        ConnectorError::Config {
            table: table.into(),
            message: message.into(),
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ConnectorError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<rdkafka::error::KafkaError> for ConnectorError {
    fn from(e: rdkafka::error::KafkaError) -> Self {
        ConnectorError::Kafka(e.to_string())
    }
}

pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;
