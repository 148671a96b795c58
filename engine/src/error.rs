//! Errors of the engine, one variant per party at fault.

use std::fmt;

/// A position in the SQL text (1-based line and column), carried by planning errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Errors of the engine. The variant says who is at fault.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The user's SQL is wrong or uses something spillway does not support.
    #[error("SQL error at {pos}: {message}")]
    Plan { message: String, pos: Pos },
    /// A user setting (table option, profile value, command-line flag) is wrong.
    #[error("configuration error: {0}")]
    Config(String),
    /// Bad data that cannot be skipped (skippable bad records are counted, not raised).
    #[error("bad data: {0}")]
    Data(String),
    /// A named limit was reached.
    #[error("limit reached: {0}")]
    Limit(String),
    /// A source or sink failed (Kafka, files).
    #[error(transparent)]
    Connector(#[from] spillway_connectors::ConnectorError),
    /// The state store (checkpoints) failed or found corruption.
    #[error(transparent)]
    State(#[from] spillway_state::StateError),
    /// The local disk or operating system failed.
    #[error("I/O error: {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Arrow refused an operation (an evaluation error such as an overflow or a division by zero).
    #[error("evaluation error: {0}")]
    Eval(String),
    /// A bug in spillway.
    #[error("internal error (a bug in spillway): {0}")]
    Internal(String),
}

impl EngineError {
    pub fn plan(message: impl Into<String>, pos: Pos) -> Self {
        EngineError::Plan {
            message: message.into(),
            pos,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        EngineError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<arrow::error::ArrowError> for EngineError {
    fn from(e: arrow::error::ArrowError) -> Self {
        EngineError::Eval(e.to_string())
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
