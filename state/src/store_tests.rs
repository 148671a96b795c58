//! Tests of the store through its public API: round trips, torn tails, corruption,
//! compaction, backends.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use crate::error::StateError;
use crate::manifest::MANIFEST_FILE;
use crate::options::{BackendChoice, StoreOptions};
use crate::segment::SEGMENT_HEADER_BYTES;
use crate::store::{shard_dir, StateStore};
use crate::test_model::{round_ops, segment_names, test_options, write_ops, Model, Op};
use crate::uring_backend::UringBackend;

/// Commits rounds `rounds` of [`round_ops`], returning the model after each.
fn run_rounds(
    store: &mut StateStore,
    rounds: std::ops::Range<u64>,
    model: &mut Model,
) -> Vec<Model> {
    let mut after = Vec::new();
    for round in rounds {
        let ops = round_ops(round, 60, 50);
        let mut w = store.begin_checkpoint(round + 1).unwrap();
        write_ops(&mut w, &ops).unwrap();
        w.commit().unwrap();
        model.apply(&ops);
        after.push(model.clone());
    }
    after
}

fn reopen(dir: &Path, options: &StoreOptions) -> (StateStore, Model) {
    let (store, c) = StateStore::open(dir, 0, options.clone()).unwrap();
    let model = c.as_ref().map(Model::of).unwrap_or_default();
    (store, model)
}

#[test]
fn round_trip_of_incremental_checkpoints_with_deletes() {
    let tmp = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        segment_bytes_max: 4096,
        ..test_options()
    };
    let (mut store, c) = StateStore::open(tmp.path(), 0, options.clone()).unwrap();
    assert!(c.is_none());
    let mut model = Model::default();
    for round in 0..12u64 {
        let ops = round_ops(round, 80, 40);
        let mut w = store.begin_checkpoint(round * 10 + 1).unwrap();
        write_ops(&mut w, &ops).unwrap();
        let stats = w.commit().unwrap();
        model.apply(&ops);
        assert_eq!(stats.checkpoint_id, round * 10 + 1);
        assert!(
            stats.records > 0 && stats.records <= ops.len() as u64,
            "{stats:?}"
        );
        assert!(stats.bytes > 0);
        drop(store);
        let (s, recovered) = reopen(tmp.path(), &options);
        store = s;
        assert_eq!(recovered, model, "after checkpoint {}", round * 10 + 1);
        assert_eq!(store.recovery_report().tail_bytes_cut, 0);
    }
    assert_eq!(store.checkpoint_ids(), vec![101, 111]);
    assert!(
        model.entries.len() > 10 && model.entries.len() < 40,
        "deletes happened"
    );
    let mut previous = Model::default();
    for round in 0..11 {
        previous.apply(&round_ops(round, 80, 40));
    }
    assert_eq!(Model::of(&store.load_checkpoint(101).unwrap()), previous);
    assert!(matches!(
        store.load_checkpoint(91),
        Err(StateError::Usage(_))
    ));
    assert!(segment_names(store.dir()).len() > 1, "small segments roll");
    assert!(matches!(
        store.begin_checkpoint(111),
        Err(StateError::Usage(_))
    ));
}

#[test]
fn an_abandoned_checkpoint_leaves_the_last_one_and_the_store_usable() {
    let tmp = tempfile::tempdir().unwrap();
    let options = test_options();
    let (mut store, _) = StateStore::open(tmp.path(), 0, options.clone()).unwrap();
    let mut model = Model::default();
    run_rounds(&mut store, 0..2, &mut model);
    {
        let mut w = store.begin_checkpoint(3).unwrap();
        w.put(b"never", b"committed").unwrap();
        w.delete(b"key-00001").unwrap();
    }
    let ops = vec![Op::Put(b"k".to_vec(), b"v".to_vec())];
    let mut w = store.begin_checkpoint(3).unwrap();
    write_ops(&mut w, &ops).unwrap();
    w.commit().unwrap();
    model.apply(&ops);
    drop(store);
    let (store, recovered) = reopen(tmp.path(), &options);
    assert_eq!(recovered, model);
    assert_eq!(
        store.recovery_report().tail_bytes_cut,
        0,
        "the abandon cut its own bytes"
    );
}

#[test]
fn limits_reject_a_put_and_abandon_the_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        state_bytes_max: 1000,
        ..test_options()
    };
    let (mut store, _) = StateStore::open(tmp.path(), 0, options.clone()).unwrap();
    let mut w = store.begin_checkpoint(1).unwrap();
    w.put(b"a", &[1; 100]).unwrap();
    w.commit().unwrap();
    let mut w = store.begin_checkpoint(2).unwrap();
    w.put(b"a", &[2; 500]).unwrap();
    let err = w.put(b"b", &[3; 600]).unwrap_err();
    assert!(
        matches!(
            err,
            StateError::Limit {
                limit: "state_bytes_max",
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(
        w.put(b"c", b"1"),
        Err(StateError::Aborted {
            checkpoint_id: 2,
            ..
        })
    ));
    assert!(matches!(w.commit(), Err(StateError::Aborted { .. })));
    // The index follows the last checkpoint again: a overwritten by a smaller value fits.
    let mut w = store.begin_checkpoint(2).unwrap();
    w.put(b"b", &[3; 600]).unwrap();
    w.commit().unwrap();
    let (_, c) = StateStore::open(tmp.path(), 0, options).unwrap();
    let c = c.unwrap();
    assert_eq!(c.get(b"a"), Some(&[1u8; 100][..]));
    assert_eq!(c.get(b"b"), Some(&[3u8; 600][..]));
}

/// Files of a shard directory with their bytes.
fn dir_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// State after checkpoints 1..=3, the manifest bytes and the segment's length at that point,
/// then checkpoint 4 committed; returns (model3, model4, manifest3, segment path, len3).
fn three_then_fourth(
    dir: &Path,
    options: &StoreOptions,
    fourth: &[Op],
) -> (Model, Model, Vec<u8>, PathBuf, u64) {
    let (mut store, _) = StateStore::open(dir, 0, options.clone()).unwrap();
    let mut model = Model::default();
    run_rounds(&mut store, 0..3, &mut model);
    let sdir = store.dir().to_path_buf();
    let manifest3 = std::fs::read(sdir.join(MANIFEST_FILE)).unwrap();
    let names3 = segment_names(&sdir);
    let last3 = sdir.join(names3.last().unwrap());
    let len3_of_last = std::fs::metadata(&last3).unwrap().len();
    let mut w = store.begin_checkpoint(4).unwrap();
    write_ops(&mut w, fourth).unwrap();
    w.commit().unwrap();
    let model3 = model.clone();
    model.apply(fourth);
    let names4 = segment_names(&sdir);
    let seg = sdir.join(names4.last().unwrap());
    let len3 = if seg == last3 { len3_of_last } else { 0 };
    (model3, model, manifest3, seg, len3)
}

/// Simulates a crash while checkpoint 4 was written: the old manifest, the segment cut at
/// `len3 + cut`; recovery must give checkpoint 3 and cut exactly `cut` bytes.
fn crash_and_check(
    tmp: &Path,
    options: &StoreOptions,
    fourth: &[Op],
    cut_pick: impl Fn(u64) -> Vec<u64>,
) {
    let (model3, model4, manifest3, seg, len3) = three_then_fourth(tmp, options, fourth);
    let full = std::fs::read(&seg).unwrap();
    let sdir = shard_dir(tmp, 0);
    let manifest4 = std::fs::read(sdir.join(MANIFEST_FILE)).unwrap();
    let delta = full.len() as u64 - len3;
    assert!(delta > 0);
    for cut in cut_pick(delta) {
        std::fs::write(&seg, &full[..(len3 + cut) as usize]).unwrap();
        std::fs::write(sdir.join(MANIFEST_FILE), &manifest3).unwrap();
        let (store, recovered) = reopen(tmp, options);
        assert_eq!(recovered, model3, "cut {cut} of {delta}");
        let report = store.recovery_report();
        assert_eq!(report.checkpoint_id, Some(3));
        assert_eq!(report.tail_bytes_cut, cut, "cut {cut} of {delta}");
        if len3 > 0 {
            assert_eq!(std::fs::metadata(&seg).unwrap().len(), len3);
        } else {
            assert!(!seg.exists(), "the unfinished segment is removed");
            assert_eq!(report.files_removed, vec![seg.clone()]);
        }
        drop(store);
    }
    // Once the manifest names checkpoint 4 the full bytes are checkpoint 4.
    std::fs::write(&seg, &full).unwrap();
    std::fs::write(sdir.join(MANIFEST_FILE), &manifest4).unwrap();
    let (_, recovered) = reopen(tmp, options);
    assert_eq!(recovered, model4);
}

#[test]
fn recovery_after_a_torn_write_at_every_byte_of_the_last_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let fourth = vec![
        Op::Put(b"key-00003".to_vec(), b"fresh".to_vec()),
        Op::Delete(b"key-00004".to_vec()),
        Op::Put(b"new".to_vec(), vec![9; 70]),
        Op::Meta("offsets".into(), vec![1, 2, 3]),
    ];
    crash_and_check(tmp.path(), &test_options(), &fourth, |delta| {
        (0..delta).collect()
    });
}

#[test]
fn recovery_after_a_torn_write_at_every_byte_of_a_new_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        segment_bytes_max: 4096,
        ..test_options()
    };
    let fourth = vec![
        Op::Put(b"x".to_vec(), vec![1; 50]),
        Op::Delete(b"key-00007".to_vec()),
    ];
    crash_and_check(tmp.path(), &options, &fourth, |delta| (0..delta).collect());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn recovery_after_a_torn_write_of_random_checkpoints(
        fourth in proptest::collection::vec(
            (0u8..30, proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200))), 1..40),
        cut_seed in any::<u64>(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let fourth: Vec<Op> = fourth
            .into_iter()
            .map(|(k, v)| {
                let key = format!("key-{k:05}").into_bytes();
                match v { Some(v) => Op::Put(key, v), None => Op::Delete(key) }
            })
            .collect();
        crash_and_check(tmp.path(), &test_options(), &fourth, |delta| {
            vec![cut_seed % delta, (cut_seed / 7) % delta, delta - 1]
        });
    }

    #[test]
    fn a_flipped_bit_inside_a_complete_checkpoint_is_corrupt(bit_seed in any::<u64>()) {
        let tmp = tempfile::tempdir().unwrap();
        let options = test_options();
        let (mut store, _) = StateStore::open(tmp.path(), 0, options.clone()).unwrap();
        run_rounds(&mut store, 0..3, &mut Model::default());
        let seg = store.dir().join(&segment_names(store.dir())[0]);
        drop(store);
        let mut bytes = std::fs::read(&seg).unwrap();
        let bit = bit_seed % (bytes.len() as u64 * 8);
        let byte = (bit / 8) as usize;
        bytes[byte] ^= 1 << (bit % 8);
        std::fs::write(&seg, &bytes).unwrap();
        match StateStore::open(tmp.path(), 0, options) {
            Err(StateError::Corrupt { path, offset, reason }) => {
                prop_assert_eq!(&path, &seg);
                prop_assert!(offset <= byte as u64 || byte < SEGMENT_HEADER_BYTES, "{} > {}: {}", offset, byte, reason);
            }
            Err(other) => prop_assert!(false, "unexpected error {}", other),
            Ok(_) => prop_assert!(false, "flipped bit {} of {} went unnoticed", bit, seg.display()),
        }
    }
}

#[test]
fn a_flipped_bit_in_the_manifest_is_corrupt_and_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, _) = StateStore::open(tmp.path(), 0, test_options()).unwrap();
    run_rounds(&mut store, 0..2, &mut Model::default());
    let path = store.dir().join(MANIFEST_FILE);
    drop(store);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let err = StateStore::open(tmp.path(), 0, test_options())
        .err()
        .unwrap();
    assert!(
        matches!(&err, StateError::Corrupt { path: p, .. } if *p == path),
        "{err}"
    );
    assert!(err.to_string().contains("MANIFEST"), "{err}");
}

#[test]
fn a_missing_segment_is_corrupt_and_a_leftover_temp_manifest_is_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, _) = StateStore::open(tmp.path(), 0, test_options()).unwrap();
    let mut model = Model::default();
    run_rounds(&mut store, 0..2, &mut model);
    let sdir = store.dir().to_path_buf();
    drop(store);
    std::fs::write(sdir.join("MANIFEST.tmp"), b"half a manif").unwrap();
    let (store, recovered) = reopen(tmp.path(), &test_options());
    assert_eq!(recovered, model);
    assert_eq!(
        store.recovery_report().files_removed,
        vec![sdir.join("MANIFEST.tmp")]
    );
    drop(store);
    let seg = sdir.join(&segment_names(&sdir)[0]);
    std::fs::remove_file(&seg).unwrap();
    let err = StateStore::open(tmp.path(), 0, test_options())
        .err()
        .unwrap();
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn compaction_keeps_the_state_and_deletes_unneeded_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        compaction_dead_fraction_min: 0.6,
        compaction_bytes_min: 0,
        segment_bytes_max: 8192,
        ..test_options()
    };
    let (mut store, _) = StateStore::open(tmp.path(), 0, options.clone()).unwrap();
    let mut model = Model::default();
    let mut compactions = 0;
    let mut first_names = None;
    for round in 0..40u64 {
        let ops = round_ops(round, 100, 30);
        let mut w = store.begin_checkpoint(round + 1).unwrap();
        write_ops(&mut w, &ops).unwrap();
        let stats = w.commit().unwrap();
        model.apply(&ops);
        assert_eq!(stats.compaction_error, None);
        if let Some(c) = &stats.compaction {
            compactions += 1;
            assert!(c.bytes < c.bytes_before, "{c:?}");
            first_names.get_or_insert_with(|| segment_names(store.dir()));
        }
        assert_eq!(Model::of(&store.load_checkpoint(round + 1).unwrap()), model);
    }
    assert!(
        compactions >= 3,
        "overwrites make compaction run ({compactions})"
    );
    let names = segment_names(store.dir());
    assert!(names.len() <= 3, "unneeded segments are deleted: {names:?}");
    let first_names = first_names.unwrap();
    assert!(
        first_names.iter().any(|n| !names.contains(n)),
        "old segments are gone"
    );
    drop(store);
    let (_, recovered) = reopen(tmp.path(), &options);
    assert_eq!(recovered, model);
}

#[test]
fn explicit_compaction_then_more_checkpoints_drop_the_old_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        segment_bytes_max: 4096,
        ..test_options()
    };
    let (mut store, _) = StateStore::open(tmp.path(), 0, options.clone()).unwrap();
    let mut model = Model::default();
    run_rounds(&mut store, 0..10, &mut model);
    let before = segment_names(store.dir());
    assert!(before.len() > 2);
    let stats = store.compact().unwrap();
    assert_eq!(stats.checkpoint_id, 10);
    assert_eq!(Model::of(&store.load_checkpoint(10).unwrap()), model);
    // Checkpoint 9 is still retained and still reads the old segments.
    assert!(segment_names(store.dir()).len() > before.len());
    run_rounds(&mut store, 10..12, &mut model);
    let after = segment_names(store.dir());
    assert!(
        before.iter().all(|n| !after.contains(n)),
        "{before:?} vs {after:?}"
    );
    drop(store);
    assert_eq!(reopen(tmp.path(), &options).1, model);
}

fn workload_files(dir: &Path, backend: BackendChoice) -> Vec<(String, Vec<u8>)> {
    let options = StoreOptions {
        backend,
        segment_bytes_max: 16 << 10,
        compaction_dead_fraction_min: 0.5,
        compaction_bytes_min: 0,
        ..test_options()
    };
    let (mut store, _) = StateStore::open(dir, 0, options.clone()).unwrap();
    let mut model = Model::default();
    run_rounds(&mut store, 0..25, &mut model);
    let sdir = store.dir().to_path_buf();
    drop(store);
    assert_eq!(reopen(dir, &options).1, model);
    dir_files(&sdir)
}

#[test]
fn io_uring_and_fallback_write_identical_files() {
    let blocking_dir = tempfile::tempdir().unwrap();
    let blocking = workload_files(blocking_dir.path(), BackendChoice::Blocking);
    assert!(
        blocking.len() >= 2,
        "{:?}",
        blocking.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    if let Err(e) = UringBackend::new(4) {
        eprintln!("io_uring unavailable here ({e}): only the fallback was tested");
        return;
    }
    let uring_dir = tempfile::tempdir().unwrap();
    let (store, _) = StateStore::open(
        uring_dir.path(),
        1,
        StoreOptions {
            backend: BackendChoice::IoUring,
            ..test_options()
        },
    )
    .unwrap();
    assert_eq!(store.backend_name(), "io_uring");
    drop(store);
    let uring = workload_files(uring_dir.path(), BackendChoice::IoUring);
    assert_eq!(uring.len(), blocking.len());
    for (u, b) in uring.iter().zip(&blocking) {
        assert_eq!(u.0, b.0);
        assert!(
            u.1 == b.1,
            "{} differs between io_uring and the fallback",
            u.0
        );
    }
}

#[test]
fn the_env_switch_selects_the_fallback() {
    use crate::backend::{auto_backend, io_uring_disabled_by, open_backend};
    assert!(io_uring_disabled_by(Some("1")));
    assert!(!io_uring_disabled_by(Some("0")));
    assert!(!io_uring_disabled_by(None));
    assert_eq!(auto_backend(true, 8).name(), "blocking");
    let expected = if UringBackend::new(8).is_ok() {
        "io_uring"
    } else {
        "blocking"
    };
    assert_eq!(auto_backend(false, 8).name(), expected);
    assert_eq!(
        open_backend(BackendChoice::Blocking, 8).unwrap().name(),
        "blocking"
    );
}

#[test]
fn shards_are_separate_and_a_segment_of_another_shard_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let options = test_options();
    for shard in 0..2u32 {
        let (mut store, _) = StateStore::open(tmp.path(), shard, options.clone()).unwrap();
        let mut w = store.begin_checkpoint(1).unwrap();
        w.put(b"shard", &shard.to_le_bytes()).unwrap();
        w.commit().unwrap();
    }
    let (_, c1) = StateStore::open(tmp.path(), 1, options.clone()).unwrap();
    assert_eq!(c1.unwrap().get(b"shard"), Some(&1u32.to_le_bytes()[..]));
    let d0 = shard_dir(tmp.path(), 0);
    let d1 = shard_dir(tmp.path(), 1);
    let name = &segment_names(&d0)[0];
    std::fs::copy(d1.join(name), d0.join(name)).unwrap();
    let err = StateStore::open(tmp.path(), 0, options).err().unwrap();
    assert!(err.to_string().contains("shard 1"), "{err}");
}
