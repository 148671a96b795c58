//! Smoke mode of `spillway-bench checkpoint`: a few thousand keys, so the benchmark never
//! rots. The run itself checks that the final checkpoint loads back with every key.

use spillway_bench::checkpoint_bench::{run_checkpoint_bench, CheckpointArgs};

fn args(keys: u64) -> CheckpointArgs {
    CheckpointArgs {
        keys,
        updates: 400_000,
        hot_fraction: 0.01,
        interval_ms: 10,
        shards: 2,
        dir: None,
        no_pin: true,
    }
}

#[test]
fn checkpoint_bench_measures_and_reloads_every_key() {
    let r = run_checkpoint_bench(&args(5_000)).expect("benchmark");
    assert!(r.checkpoints >= 1, "{r:?}");
    assert!(r.restored_groups >= 5_000, "{r:?}");
    assert!(r.bytes_total > 5_000 * 20, "{r:?}");
    assert!(r.duration_max_us >= r.duration_p50_us);
    assert!(r.text().contains("recovery: "));
}

#[test]
fn bad_options_are_refused() {
    let mut a = args(0);
    assert!(run_checkpoint_bench(&a).is_err());
    a.keys = 10;
    a.updates = 0;
    assert!(run_checkpoint_bench(&a)
        .expect_err("no updates")
        .to_string()
        .contains("--updates"));
}
