//! Smoke mode of the benchmarks: each runner with tiny sizes, so they never rot. Each runner
//! checks its result against the oracle before it returns figures; these tests assert the
//! checks ran and passed and that the figures are sane.

use spillway_bench::{
    run_file, run_kafka, run_memory, BenchSummary, FileBenchOptions, KafkaBenchOptions,
    MemoryBenchOptions,
};

const EVENTS: u64 = 20_000;

fn assert_sane(summary: &BenchSummary, runs: usize) {
    assert_eq!(summary.runs.len(), runs);
    for r in &summary.runs {
        assert_eq!(r.events, EVENTS);
        assert!(r.events_per_second() > 0.0);
        assert!(r.rows_out > 0);
        let expected_rows = summary
            .extra
            .iter()
            .find(|(n, _)| *n == "result_rows_expected")
            .map(|(_, v)| *v as u64);
        assert_eq!(Some(r.rows_out), expected_rows);
    }
    let json: serde_json::Value = serde_json::from_str(&summary.json()).expect("json line");
    assert_eq!(json["events"], EVENTS);
    assert!(json["events_per_second_median"].as_f64().unwrap_or(0.0) > 0.0);
}

#[test]
fn memory_runner_checks_its_result_on_one_and_two_shards() {
    let mut opts = MemoryBenchOptions::new(EVENTS, 2);
    opts.data.event_rate = 5_000; // 4 s of event time: several windows
    opts.runs = 2;
    let summary = run_memory(&opts).expect("memory benchmark, 2 partitions");
    assert_sane(&summary, 2);
    assert_eq!(summary.partitions, 2);

    let mut opts = MemoryBenchOptions::new(EVENTS, 1);
    opts.shards = Some(1);
    let summary = run_memory(&opts).expect("memory benchmark, 1 partition");
    assert_sane(&summary, 1);
    assert_eq!(summary.runs[0].shards, 1);
}

#[test]
fn kafka_runner_checks_its_result() {
    let mut opts = KafkaBenchOptions::new(EVENTS, 2);
    opts.data.event_rate = 5_000;
    let summary = run_kafka(&opts).expect("kafka benchmark");
    assert_sane(&summary, 1);
    let extra =
        |s: &BenchSummary, name: &str| s.extra.iter().find(|(n, _)| *n == name).map(|x| x.1);
    assert!(extra(&summary, "produce_events_per_second").is_some_and(|v| v > 0.0));
    assert_eq!(extra(&summary, "rounds"), Some(1.0));

    // A backlog larger than a round (the mock cluster keeps 5 MiB per partition) is read in
    // rounds, each checked on its own; the figures add up to all the trades.
    opts.round_partition_bytes_max = 200_000;
    let summary = run_kafka(&opts).expect("kafka benchmark in rounds");
    assert_sane(&summary, 1);
    assert!(
        extra(&summary, "rounds").is_some_and(|r| r >= 3.0),
        "{:?}",
        summary.extra
    );
}

#[test]
fn file_runner_generates_then_reuses_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("trades.jsonl");
    let mut opts = FileBenchOptions::new(EVENTS);
    opts.data.event_rate = 5_000;
    opts.path = Some(path.clone());
    let generated = run_file(&opts).expect("file benchmark, generated file");
    assert_sane(&generated, 1);
    assert!(path.exists(), "a file at --path is kept");
    // The second run reuses the file and computes its oracle from it.
    let reused = run_file(&opts).expect("file benchmark, reused file");
    assert_sane(&reused, 1);
    let flag = |s: &BenchSummary| {
        s.extra
            .iter()
            .find(|(n, _)| *n == "file_reused")
            .map(|x| x.1)
    };
    assert_eq!(flag(&generated), Some(0.0));
    assert_eq!(flag(&reused), Some(1.0));
}

#[test]
fn bad_options_are_errors_not_panics() {
    let mut opts = MemoryBenchOptions::new(EVENTS, 1);
    opts.runs = 0;
    assert!(run_memory(&opts)
        .expect_err("0 runs")
        .to_string()
        .contains("--runs"));
    let opts = MemoryBenchOptions::new(0, 1);
    assert!(run_memory(&opts)
        .expect_err("0 events")
        .to_string()
        .contains("--events"));
}
