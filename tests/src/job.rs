//! Running a SQL program through the engine's library API and reading its results.
//!
//! Tests build their SQL from the table helpers here (a trades source read from a file or a
//! topic, a filesystem sink), run it with [`run_sql`] and get the `JobReport` and the rows
//! the filesystem sink wrote.

use std::path::{Path, PathBuf};

use serde_json::Value;
use spillway_engine::job::{run_program, JobOptions, JobReport};
use spillway_engine::sql::parse_program;
use spillway_engine::EngineError;

use crate::compare::read_json_lines;

/// The columns of the trades the generator writes.
pub const TRADES_COLUMNS: &str = "symbol STRING, price DOUBLE, volume BIGINT, ts TIMESTAMP(3)";

/// `CREATE TABLE name (trades columns, WATERMARK ts - bound) WITH (filesystem at path)`.
pub fn file_source_table(name: &str, path: &Path, bound_ms: i64, extra_options: &str) -> String {
    format!(
        "CREATE TABLE {name} (\n  {TRADES_COLUMNS},\n  WATERMARK FOR ts AS ts - INTERVAL '{bound_ms}' MILLISECOND\n\
         ) WITH (\n  'connector' = 'filesystem',\n  'path' = '{}',\n  'format' = 'json'{extra_options}\n);\n",
        path.display()
    )
}

/// A bounded Kafka trades table reading `topic` from the earliest offset.
pub fn kafka_source_table(name: &str, topic: &str, bootstrap: &str, bound_ms: i64) -> String {
    format!(
        "CREATE TABLE {name} (\n  {TRADES_COLUMNS},\n  WATERMARK FOR ts AS ts - INTERVAL '{bound_ms}' MILLISECOND\n\
         ) WITH (\n  'connector' = 'kafka',\n  'topic' = '{topic}',\n\
         'properties.bootstrap.servers' = '{bootstrap}',\n  'properties.group.id' = 'spillway-test-{topic}',\n\
         'scan.startup.mode' = 'earliest-offset',\n  'scan.bounded.mode' = 'latest-offset',\n\
         'format' = 'json'\n);\n"
    )
}

/// `CREATE TABLE name (columns) WITH (filesystem sink at path)`.
pub fn file_sink_table(name: &str, columns: &str, path: &Path) -> String {
    format!(
        "CREATE TABLE {name} ({columns}) WITH (\n  'connector' = 'filesystem',\n  'path' = '{}',\n  'format' = 'json'\n);\n",
        path.display()
    )
}

/// Options for a test job: `shards` shards, not pinned (tests share the machine's cores).
pub fn options(shards: usize) -> JobOptions {
    JobOptions {
        shards: Some(shards),
        pin_cores: false,
        ..JobOptions::default()
    }
}

/// What a finished job produced.
#[derive(Debug)]
pub struct Outcome {
    pub report: JobReport,
    /// The rows of the filesystem sink file.
    pub rows: Vec<Value>,
}

/// Parses and runs `sql` with `opts`.
pub fn run_sql(sql: &str, opts: &JobOptions) -> Result<JobReport, EngineError> {
    let program = parse_program(sql)?;
    run_program(&program, opts)
}

/// Runs `sql` and reads the rows its filesystem sink wrote to `output`; any engine error is
/// an `Err` with the message and the SQL.
pub fn run_to_rows(sql: &str, opts: &JobOptions, output: &Path) -> Result<Outcome, String> {
    let report = run_sql(sql, opts).map_err(|e| format!("the job failed: {e}\nSQL:\n{sql}"))?;
    let rows = read_json_lines(output)?;
    Ok(Outcome { report, rows })
}

/// Set (to anything) to keep every test's scratch directory (logs, outputs, checkpoints)
/// after the test, for a post-mortem; its path is printed.
pub const KEEP_SCRATCH_ENV: &str = "SPILLWAY_TEST_KEEP_SCRATCH";

/// A temporary directory for one test, with file names in it; removed when dropped unless
/// [`KEEP_SCRATCH_ENV`] is set.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        let keep = std::env::var_os(KEEP_SCRATCH_ENV).is_some();
        match tempfile::Builder::new()
            .prefix("spillway-test-")
            .disable_cleanup(keep)
            .tempdir()
        {
            Ok(dir) => {
                if keep {
                    eprintln!("scratch directory kept: {}", dir.path().display());
                }
                Scratch { dir }
            }
            Err(e) => panic!("cannot create a temp dir: {e}"),
        }
    }

    /// `name` inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_name_their_options() {
        let src = file_source_table("t", Path::new("/x/in.jsonl"), 250, "");
        assert!(src.contains("'path' = '/x/in.jsonl'"), "{src}");
        assert!(src.contains("INTERVAL '250' MILLISECOND"), "{src}");
        let k = kafka_source_table("t", "topic1", "127.0.0.1:1", 5);
        assert!(k.contains("'scan.bounded.mode' = 'latest-offset'"), "{k}");
        let sink = file_sink_table("s", "a BIGINT", Path::new("/y/out.jsonl"));
        assert!(
            sink.contains("(a BIGINT)") && sink.contains("/y/out.jsonl"),
            "{sink}"
        );
    }
}
