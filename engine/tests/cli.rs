//! The `spillway` command end to end: exit codes, error messages on stderr, `explain`,
//! `demo` and `run` over a JSON-lines file into a filesystem sink.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn spillway(args: &[&str]) -> Output {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_spillway"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the spillway binary runs");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "spillway {args:?} took {:?}",
        started.elapsed()
    );
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts exit code 1 and an `error:` line on stderr; returns stderr.
#[track_caller]
fn assert_fails(out: &Output) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "exit code; stderr:\n{err}");
    assert!(err.contains("error:"), "stderr says what failed:\n{err}");
    err
}

fn trades_source(path: &Path, extra: &str) -> String {
    format!(
        "CREATE TABLE trades (
  symbol STRING, price DOUBLE, volume BIGINT, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '200' MILLISECOND
) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json'{extra});\n",
        path.display()
    )
}

fn stats_sink(path: &Path) -> String {
    format!(
        "CREATE TABLE stats (symbol STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3),
  trades BIGINT, volume BIGINT, high DOUBLE)
WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');\n",
        path.display()
    )
}

const QUERY: &str = "INSERT INTO stats
SELECT symbol, window_start, window_end, COUNT(*), SUM(volume), MAX(price)
FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' SECOND))
GROUP BY symbol, window_start, window_end;\n";

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("test file written");
}

/// `yyyy-MM-dd HH:mm:ss.SSS` of epoch ms, for the few whole seconds of the test data
/// (2023-11-14 22:13:20 UTC is 1_700_000_000_000 ms).
fn time_text(ms: i64) -> String {
    let base = 1_700_000_000_000i64;
    let secs = 20 + (ms - base).div_euclid(1_000);
    assert!((0..60).contains(&secs), "test data stays within one minute");
    format!(
        "2023-11-14 22:13:{secs:02}.{:03}",
        (ms - base).rem_euclid(1_000)
    )
}

/// 600 trades over 3 s of event time, 3 symbols, up to 150 ms out of order.
fn trades() -> Vec<(String, f64, i64, i64)> {
    (0..600i64)
        .map(|i| {
            let symbol = format!("S{}", i % 3);
            let price = 100.0 + ((i * 37) % 50) as f64 / 4.0;
            let volume = 1 + (i * 13) % 90;
            let ts = 1_700_000_000_000 + i * 5 - (i * 71) % 150;
            (symbol, price, volume, ts)
        })
        .collect()
}

#[test]
fn run_over_a_file_writes_the_expected_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("trades.jsonl");
    let output = dir.path().join("out/stats.jsonl");
    let data = trades();
    let lines: Vec<String> = data
        .iter()
        .map(|(s, p, v, t)| json!({"symbol": s, "price": p, "volume": v, "ts": t}).to_string())
        .collect();
    write(&input, &(lines.join("\n") + "\n"));
    let sql = dir.path().join("q.sql");
    write(
        &sql,
        &format!(
            "{}{}{QUERY}",
            trades_source(&input, ""),
            stats_sink(&output)
        ),
    );

    let out = spillway(&[
        "run",
        sql.to_str().expect("utf-8 path"),
        "--shards",
        "2",
        "--no-pin",
    ]);
    let err = stderr(&out);
    assert!(out.status.success(), "spillway run failed:\n{err}");
    assert!(
        err.contains("events in:      600 "),
        "summary counts the events:\n{err}"
    );

    // The expected rows, computed here independently.
    let mut groups: BTreeMap<(i64, String), (i64, i64, f64)> = BTreeMap::new();
    for (s, p, v, t) in &data {
        let start = t - t.rem_euclid(1_000);
        let g = groups.entry((start, s.clone())).or_insert((0, 0, f64::MIN));
        g.0 += 1;
        g.1 += v;
        g.2 = g.2.max(*p);
    }
    let mut expected: Vec<Value> = groups
        .iter()
        .map(|((start, s), (n, v, high))| {
            json!({"symbol": s, "window_start": time_text(*start), "window_end": time_text(start + 1_000),
                   "trades": n, "volume": v, "high": high})
        })
        .collect();
    let text = std::fs::read_to_string(&output).expect("the sink file exists");
    let mut rows: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each result line is JSON"))
        .collect();
    let key = |r: &Value| (r["window_start"].to_string(), r["symbol"].to_string());
    rows.sort_by_key(key);
    expected.sort_by_key(key);
    assert_eq!(rows, expected);
}

#[test]
fn bad_records_are_counted_in_the_summary_and_the_run_succeeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("trades.jsonl");
    let output = dir.path().join("stats.jsonl");
    let text = "{\"symbol\":\"A\",\"price\":1.5,\"volume\":2,\"ts\":1700000000100}\n\
                {\"symbol\":\"A\",\"price\":\n\
                {\"symbol\":\"A\",\"price\":\"x\",\"volume\":2,\"ts\":1700000000200}\n\
                {\"symbol\":\"A\",\"price\":2.5,\"volume\":3,\"ts\":1700000000300}\n";
    write(&input, text);
    let sql = dir.path().join("q.sql");
    write(
        &sql,
        &format!(
            "{}{}{QUERY}",
            trades_source(&input, ""),
            stats_sink(&output)
        ),
    );
    let out = spillway(&[
        "run",
        sql.to_str().expect("utf-8 path"),
        "--shards",
        "1",
        "--no-pin",
    ]);
    let err = stderr(&out);
    assert!(out.status.success(), "spillway run failed:\n{err}");
    assert!(
        err.contains("skipped input:  2 "),
        "summary counts the skipped records:\n{err}"
    );
    let rows = std::fs::read_to_string(&output).expect("results");
    let row: Value = serde_json::from_str(rows.trim()).expect("one JSON row");
    assert_eq!(
        (row["trades"].as_i64(), row["volume"].as_i64()),
        (Some(2), Some(5)),
        "{row}"
    );
}

#[test]
fn bad_sql_fails_with_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sql = dir.path().join("bad.sql");
    // line 3, column 8: the unknown column `nope`
    write(
        &sql,
        "CREATE TABLE t (a BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) WITH ('connector' = 'filesystem', 'path' = '/tmp/x.jsonl', 'format' = 'json');\n\
         -- a comment line\n\
         SELECT nope FROM t;\n",
    );
    let err = assert_fails(&spillway(&["run", sql.to_str().expect("utf-8 path")]));
    assert!(
        err.contains("line 3, column 8"),
        "names line and column:\n{err}"
    );
    assert!(err.contains("nope"), "names the column:\n{err}");
    assert!(err.contains("bad.sql"), "names the file:\n{err}");

    write(&sql, "CREATE TABLE t (a BIGINT\nSELEC 1;\n");
    let err = assert_fails(&spillway(&["run", sql.to_str().expect("utf-8 path")]));
    assert!(err.contains("line 2"), "names the line:\n{err}");
}

#[test]
fn a_missing_query_file_fails() {
    let err = assert_fails(&spillway(&["run", "/nonexistent/spillway/query.sql"]));
    assert!(
        err.contains("/nonexistent/spillway/query.sql"),
        "names the file:\n{err}"
    );
}

#[test]
fn a_missing_input_file_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-input.jsonl");
    let sql = dir.path().join("q.sql");
    write(
        &sql,
        &format!(
            "{}{}{QUERY}",
            trades_source(&missing, ""),
            stats_sink(&dir.path().join("o.jsonl"))
        ),
    );
    let err = assert_fails(&spillway(&["run", sql.to_str().expect("utf-8 path")]));
    assert!(
        err.contains(&missing.display().to_string()),
        "names the missing file:\n{err}"
    );
}

#[test]
fn an_unreachable_broker_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sql = dir.path().join("q.sql");
    let source = "CREATE TABLE trades (
  symbol STRING, price DOUBLE, volume BIGINT, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH ('connector' = 'kafka', 'topic' = 'trades',
  'properties.bootstrap.servers' = '127.0.0.1:1',
  'scan.startup.mode' = 'earliest-offset', 'scan.connect.timeout' = '2 s', 'format' = 'json');\n";
    write(
        &sql,
        &format!("{source}{}{QUERY}", stats_sink(&dir.path().join("o.jsonl"))),
    );
    let err = assert_fails(&spillway(&["run", sql.to_str().expect("utf-8 path")]));
    assert!(err.contains("127.0.0.1:1"), "names the broker:\n{err}");
}

#[test]
fn explain_prints_shards_and_partitions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("trades.jsonl");
    write(
        &input,
        "{\"symbol\":\"A\",\"price\":1.5,\"volume\":2,\"ts\":1700000000100}\n",
    );
    let sql = dir.path().join("q.sql");
    write(
        &sql,
        &format!(
            "{}{}{QUERY}",
            trades_source(&input, ""),
            stats_sink(&dir.path().join("o.jsonl"))
        ),
    );
    let out = spillway(&[
        "explain",
        sql.to_str().expect("utf-8 path"),
        "--shards",
        "2",
    ]);
    assert!(out.status.success(), "explain failed:\n{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("shards: 2"), "{text}");
    assert!(
        text.contains("shard 0 on core") && text.contains("shard 1 on core"),
        "{text}"
    );
    let split = format!("{}[0]", input.display());
    assert!(
        text.contains(&split),
        "lists the partition {split}:\n{text}"
    );
    assert!(text.contains("TUMBLE 1000 ms"), "{text}");
    assert!(
        !dir.path().join("o.jsonl").exists(),
        "explain does not run the job"
    );
}

#[test]
fn demo_runs_for_two_seconds_and_prints_a_summary() {
    let started = Instant::now();
    let out = spillway(&["demo", "--duration", "2 s", "--quiet", "--rate", "5000"]);
    let err = stderr(&out);
    assert!(out.status.success(), "demo failed:\n{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "demo ends by itself"
    );
    let events_in: u64 = err
        .lines()
        .find_map(|l| l.strip_prefix("events in:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no 'events in:' count in the summary:\n{err}"));
    assert!(events_in > 0, "the demo processed events:\n{err}");
    assert!(err.contains("results out:"), "{err}");
    assert!(err.contains("events produced:"), "{err}");
}

#[test]
fn demo_refuses_a_bad_duration() {
    let err = assert_fails(&spillway(&["demo", "--duration", "soon"]));
    assert!(err.contains("soon"), "names the bad value:\n{err}");
}
