//! Tuning profiles on the command line: `spillway tune --output`, then `spillway run
//! --profile` and `spillway explain --profile` with it, and a bad profile's error.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use spillway_engine::profile::Profile;

fn spillway(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spillway"))
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the spillway binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("test file written");
}

/// Writes 900 trades over 3 s of event time and the query over them; returns the query
/// path, the output path and the expected trade count per (symbol, window start).
fn query_over_a_file(dir: &Path) -> (String, std::path::PathBuf, BTreeMap<(String, i64), u64>) {
    let input = dir.join("trades.jsonl");
    let output = dir.join("stats.jsonl");
    let mut lines = String::new();
    let mut expected = BTreeMap::new();
    for i in 0..900i64 {
        let symbol = format!("S{}", i % 4);
        let ts = 1_700_000_000_000 + i * 3 + (i % 7) * 20;
        lines.push_str(&format!(
            "{{\"symbol\":\"{symbol}\",\"price\":{}.5,\"volume\":{},\"ts\":{ts}}}\n",
            100 + i % 10,
            1 + i % 5
        ));
        *expected.entry((symbol, ts - ts % 1000)).or_insert(0u64) += 1;
    }
    write(&input, &lines);
    let sql = dir.join("q.sql");
    write(
        &sql,
        &format!(
            "CREATE TABLE trades (symbol STRING, price DOUBLE, volume BIGINT, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
CREATE TABLE stats (symbol STRING, window_start TIMESTAMP(3), trades BIGINT)
WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
INSERT INTO stats SELECT symbol, window_start, COUNT(*)
FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' SECOND))
GROUP BY symbol, window_start, window_end;\n",
            input.display(),
            output.display()
        ),
    );
    (sql.display().to_string(), output, expected)
}

/// The sorted trade counts of the output rows.
fn counts(output: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(output).expect("the sink wrote its file");
    let mut counts: Vec<u64> = text
        .lines()
        .map(|l| {
            let row: Value = serde_json::from_str(l).expect("a JSON row");
            row["trades"].as_u64().expect("trades is a count")
        })
        .collect();
    counts.sort_unstable();
    counts
}

#[test]
fn tune_writes_a_profile_that_run_uses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = spillway(
        &[
            "tune",
            "--output",
            "tuned.toml",
            "--state-dir",
            "state",
            "--bench-events",
            "20000",
        ],
        dir.path(),
    );
    let err = stderr(&out);
    assert!(out.status.success(), "spillway tune failed:\n{err}");
    assert!(err.contains("profile written to tuned.toml"), "{err}");
    assert!(
        !dir.path().join("state").exists(),
        "tune removes the state dir it made"
    );
    let text = std::fs::read_to_string(dir.path().join("tuned.toml")).expect("profile written");
    assert!(text.contains("# fsync median"), "{text}");
    assert!(text.contains("events/s per shard"), "{text}");
    let profile = Profile::load(dir.path().join("tuned.toml")).expect("the profile loads back");
    assert!(profile.kafka.contains_key("fetch.wait.max.ms"));

    let (sql, output, expected) = query_over_a_file(dir.path());
    let out = spillway(
        &["run", &sql, "--profile", "tuned.toml", "--no-pin"],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "spillway run failed:\n{}",
        stderr(&out)
    );
    let mut want: Vec<u64> = expected.values().copied().collect();
    want.sort_unstable();
    assert_eq!(counts(&output), want);
}

#[test]
fn run_and_explain_follow_the_profile() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        &dir.path().join("one.toml"),
        "cores = [0]\n[limits]\nbatch_rows_max = 1\n",
    );
    let (sql, output, expected) = query_over_a_file(dir.path());
    let out = spillway(&["explain", &sql, "--profile", "one.toml"], dir.path());
    let plan = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "explain failed:\n{}", stderr(&out));
    assert!(
        plan.contains("shards: 1"),
        "one core listed, one shard:\n{plan}"
    );
    assert!(plan.contains("shard 0 on core 0"), "{plan}");

    let out = spillway(&["run", &sql, "--profile", "one.toml"], dir.path());
    let err = stderr(&out);
    assert!(out.status.success(), "spillway run failed:\n{err}");
    assert!(err.contains("events in:      900 "), "{err}");
    let mut want: Vec<u64> = expected.values().copied().collect();
    want.sort_unstable();
    assert_eq!(
        counts(&output),
        want,
        "batches of one row give the same counts"
    );
}

#[test]
fn a_bad_profile_fails_naming_file_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sql, output, _) = query_over_a_file(dir.path());
    for (name, text, wanted) in [
        (
            "unknown.toml",
            "[limits]\ncheckpoint_interval_ms = 10\n",
            "checkpoint_interval_ms",
        ),
        (
            "range.toml",
            "[limits]\npoll_idle_us = 2000000\n",
            "poll_idle_us = 2000000 is out of range [0, 1000000]",
        ),
        ("cores.toml", "cores = [100000]\n", "core 100000"),
    ] {
        write(&dir.path().join(name), text);
        let out = spillway(&["run", &sql, "--profile", name], dir.path());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(
            err.contains("error:") && err.contains(name) && err.contains(wanted),
            "{err}"
        );
        assert!(!output.exists(), "nothing runs with a bad profile");
    }
    let out = spillway(&["run", &sql, "--profile", "missing.toml"], dir.path());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("missing.toml"), "{err}");
}
