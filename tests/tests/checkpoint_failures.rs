//! Checkpoints that cannot be written: a directory that cannot be created fails the job at
//! start naming it; a state store over its limit fails the job mid-run with the limit named,
//! and the last complete checkpoint stays intact: a restart with room resumes from it and the
//! output equals an uninterrupted run's.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use spillway_engine::checkpoint::{CheckpointConfig, CheckpointTuning};
use spillway_engine::job::JobOptions;
use spillway_state::StoreOptions;
use spillway_tests::compare::{assert_rows_match, read_json_lines};
use spillway_tests::job::{options, run_sql, Scratch};
use spillway_tests::process::committed_rows;

/// Bids per auction in one-hour windows: the state grows with every new auction.
fn sql(out: &Path) -> String {
    format!(
        "CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel STRING,
           url STRING, dateTime TIMESTAMP(3), extra STRING,
           WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND)
         WITH ('connector' = 'nexmark', 'nexmark.table' = 'bid', 'events.num' = '120000',
               'rate' = '100000', 'seed' = '3', 'partitions' = '2');
         CREATE TABLE out (auction BIGINT, window_start TIMESTAMP(3), bids BIGINT, top BIGINT)
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         INSERT INTO out SELECT auction, window_start, COUNT(*), MAX(price)
         FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '1' HOUR))
         GROUP BY auction, window_start, window_end;",
        out.display()
    )
}

fn checkpointed(dir: &Path, state_bytes_max: u64) -> JobOptions {
    JobOptions {
        checkpoint: Some(CheckpointConfig::new(dir, Duration::from_millis(20)).expect("config")),
        checkpoint_tuning: CheckpointTuning {
            store: StoreOptions {
                state_bytes_max,
                ..StoreOptions::default()
            },
            ..CheckpointTuning::default()
        },
        ..options(2)
    }
}

#[test]
fn a_directory_that_cannot_be_created_fails_the_job_naming_it() {
    let scratch = Scratch::new();
    let opts = JobOptions {
        checkpoint: Some(
            CheckpointConfig::new("/proc/spillway-no/state", Duration::from_millis(100))
                .expect("config"),
        ),
        ..options(1)
    };
    let e = run_sql(&sql(&scratch.path("out")), &opts)
        .expect_err("cannot create /proc/...")
        .to_string();
    assert!(e.contains("/proc/spillway-no/state"), "{e}");
}

#[test]
fn a_full_store_fails_mid_run_and_the_last_checkpoint_resumes() {
    let scratch = Scratch::new();
    let straight_out = scratch.path("straight.jsonl");
    let all = run_sql(&sql(&straight_out), &options(2))
        .expect("straight run")
        .records_in();
    let straight: Vec<Value> = read_json_lines(&straight_out).expect("rows");
    assert!(straight.len() > 1000, "{} rows", straight.len());

    let out = scratch.path("out");
    let dir = scratch.path("state");
    // Room for the first checkpoints only: the window state outgrows it mid-run.
    let e = run_sql(&sql(&out), &checkpointed(&dir, 96 << 10))
        .expect_err("the store fills up")
        .to_string();
    assert!(e.contains("state_bytes_max") || e.contains("limit"), "{e}");
    assert!(e.contains("intact"), "{e}");
    let marker =
        spillway_engine::checkpoint::job_marker::JobMarker::open(&dir, StoreOptions::default())
            .expect("job record");
    let last = marker
        .last()
        .map(|m| m.epoch)
        .expect("a checkpoint completed before");
    assert!(last >= 1);

    // With room, the job resumes from that checkpoint and ends with the uninterrupted output.
    let report = run_sql(&sql(&out), &checkpointed(&dir, 1 << 30)).expect("resumed run");
    assert!(
        report.records_in() < all,
        "resumed, not restarted: {} of {all}",
        report.records_in()
    );
    let rows = committed_rows(&out).expect("rows");
    assert_rows_match(&rows, &straight, &["auction"]);
}
