//! Fault injection: failed writes and fsyncs, full disk, read-only directory. After each the
//! last complete checkpoint must be intact.

use std::io;
use std::sync::Arc;

use proptest::prelude::*;

use crate::backend::{BlockingBackend, StorageBackend};
use crate::error::StateError;
use crate::fault_backend::{FaultBackend, FaultPlan};
use crate::options::StoreOptions;
use crate::store::StateStore;
use crate::test_model::{round_ops, segment_names, test_options, write_ops, Model, Op};
use crate::uring_backend::UringBackend;

fn faulty(plan: &Arc<FaultPlan>, uring: bool) -> Box<dyn StorageBackend> {
    let inner: Box<dyn StorageBackend> = match UringBackend::new(8) {
        Ok(u) if uring => Box::new(u),
        _ => Box::new(BlockingBackend::new()),
    };
    Box::new(FaultBackend::new(inner, plan.clone()))
}

/// What a faulty run left: the model of the last committed checkpoint, the model of the
/// checkpoint being written when the store got poisoned (if it did), the changes not yet
/// committed.
struct Outcome {
    committed: Model,
    attempted_when_poisoned: Option<Model>,
    pending: Vec<Op>,
    errors: usize,
    id_next: u64,
}

/// Runs `rounds` checkpoints, carrying the changes of failed ones into the next, stopping when
/// the store is poisoned.
fn run_with_faults(
    store: &mut StateStore,
    rounds: u64,
    committed: Model,
    id_first: u64,
) -> Outcome {
    let mut out = Outcome {
        committed,
        attempted_when_poisoned: None,
        pending: Vec::new(),
        errors: 0,
        id_next: id_first,
    };
    for round in 0..rounds {
        out.pending
            .extend(round_ops(round + id_first * 31, 120, 60));
        let mut attempted = out.committed.clone();
        attempted.apply(&out.pending);
        let id = out.id_next;
        out.id_next += 1;
        let result = store
            .begin_checkpoint(id)
            .and_then(|mut w| write_ops(&mut w, &out.pending).and_then(|()| w.commit()));
        match result {
            Ok(stats) => {
                if stats.compaction_error.is_some() {
                    out.errors += 1;
                }
                out.committed = attempted;
                out.pending.clear();
            }
            Err(e) => {
                out.errors += 1;
                assert!(
                    matches!(e, StateError::Io { .. } | StateError::Poisoned { .. }),
                    "an injected fault is an I/O error: {e}"
                );
                if store.is_poisoned() {
                    out.attempted_when_poisoned = Some(attempted);
                    break;
                }
            }
        }
        if store.is_poisoned() {
            out.attempted_when_poisoned
                .get_or_insert(out.committed.clone());
            break;
        }
    }
    out
}

fn fault_options() -> StoreOptions {
    StoreOptions {
        segment_bytes_max: 16 << 10,
        compaction_dead_fraction_min: 0.5,
        compaction_bytes_min: 0,
        ..test_options()
    }
}

/// Reopens with a healthy backend and checks the recovered state against the outcome.
fn check_recovery(
    dir: &std::path::Path,
    plan: &FaultPlan,
    out: &Outcome,
) -> Result<(), TestCaseError> {
    let (mut store, c) = StateStore::open(dir, 0, fault_options()).unwrap();
    let recovered = c.as_ref().map(Model::of).unwrap_or_default();
    match &out.attempted_when_poisoned {
        // The directory fsync after the manifest rename failed: the rename itself happened.
        Some(attempted)
            if plan.first_failure() == Some("fsync directory") && recovered == *attempted => {}
        _ => prop_assert_eq!(
            &recovered,
            &out.committed,
            "first failure {:?}",
            plan.first_failure()
        ),
    }
    // The recovered store takes further checkpoints.
    let mut model = recovered;
    let id = out.id_next + 1;
    let mut w = store.begin_checkpoint(id).unwrap();
    write_ops(&mut w, &out.pending).unwrap();
    w.commit().unwrap();
    model.apply(&out.pending);
    drop(store);
    let (_, c) = StateStore::open(dir, 0, fault_options()).unwrap();
    prop_assert_eq!(Model::of(&c.unwrap()), model);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn failing_after_n_writes_restores_the_last_good_checkpoint(n in 0u64..48, uring in any::<bool>()) {
        let tmp = tempfile::tempdir().unwrap();
        let plan = FaultPlan::new();
        let (mut store, _) = StateStore::open_with_backend(tmp.path(), 0, fault_options(), faulty(&plan, uring)).unwrap();
        plan.fail_writes_after(n, io::ErrorKind::Other);
        let out = run_with_faults(&mut store, 8, Model::default(), 1);
        prop_assert!(plan.writes() > n, "the fault fired ({} writes)", plan.writes());
        prop_assert!(out.errors > 0);
        prop_assert!(!store.is_poisoned(), "a failed write does not poison");
        drop(store);
        check_recovery(tmp.path(), &plan, &out)?;
    }

    #[test]
    fn failing_after_n_fsyncs_poisons_and_restores_the_last_good_checkpoint(n in 0u64..40, uring in any::<bool>()) {
        let tmp = tempfile::tempdir().unwrap();
        let plan = FaultPlan::new();
        let (mut store, _) = StateStore::open_with_backend(tmp.path(), 0, fault_options(), faulty(&plan, uring)).unwrap();
        plan.fail_syncs_after(n);
        let out = run_with_faults(&mut store, 12, Model::default(), 1);
        prop_assert!(plan.syncs() > n, "the fault fired ({} fsyncs)", plan.syncs());
        prop_assert!(store.is_poisoned());
        let refused = store.begin_checkpoint(out.id_next).err();
        let poisoned = matches!(refused, Some(StateError::Poisoned { .. }));
        prop_assert!(poisoned);
        drop(store);
        check_recovery(tmp.path(), &plan, &out)?;
    }
}

#[test]
fn a_failed_fsync_poisons_the_store_until_reopened() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    let (mut store, _) =
        StateStore::open_with_backend(tmp.path(), 0, test_options(), faulty(&plan, false)).unwrap();
    let mut w = store.begin_checkpoint(1).unwrap();
    w.put(b"a", b"1").unwrap();
    w.commit().unwrap();
    plan.fail_syncs_after(0);
    let mut w = store.begin_checkpoint(2).unwrap();
    w.put(b"a", b"2").unwrap();
    let err = w.commit().unwrap_err();
    assert!(matches!(&err, StateError::Io { op: "fsync", .. }), "{err}");
    assert!(err.to_string().contains("seg-"), "names the segment: {err}");
    assert!(store.is_poisoned());
    plan.heal();
    let err = store.begin_checkpoint(3).err().unwrap();
    assert!(
        matches!(err, StateError::Poisoned { shard: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("reopen"), "{err}");
    assert!(matches!(store.compact(), Err(StateError::Poisoned { .. })));
    drop(store);
    let (_, c) = StateStore::open(tmp.path(), 0, test_options()).unwrap();
    assert_eq!(c.unwrap().get(b"a"), Some(&b"1"[..]));
}

#[test]
fn a_full_disk_fails_the_checkpoint_clearly_and_keeps_the_last_one() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    let options = test_options();
    let (mut store, _) =
        StateStore::open_with_backend(tmp.path(), 0, options.clone(), faulty(&plan, true)).unwrap();
    let mut model = Model::default();
    let first: Vec<Op> = (0..200u32)
        .map(|i| Op::Put(i.to_le_bytes().to_vec(), vec![1; 100]))
        .collect();
    let mut w = store.begin_checkpoint(1).unwrap();
    write_ops(&mut w, &first).unwrap();
    w.commit().unwrap();
    model.apply(&first);
    let names_before = segment_names(store.dir());
    plan.fail_writes_after(2, io::ErrorKind::StorageFull);
    let second: Vec<Op> = (0..400u32)
        .map(|i| Op::Put(i.to_le_bytes().to_vec(), vec![2; 100]))
        .collect();
    let mut w = store.begin_checkpoint(2).unwrap();
    let err = write_ops(&mut w, &second)
        .and_then(|()| w.commit())
        .unwrap_err();
    match &err {
        StateError::Io {
            op: "write",
            path,
            source,
        } => {
            assert_eq!(source.kind(), io::ErrorKind::StorageFull);
            assert!(
                path.to_string_lossy().contains("seg-"),
                "{}",
                path.display()
            );
        }
        other => panic!("expected a write error, got {other}"),
    }
    assert!(!store.is_poisoned(), "ENOSPC on write does not poison");
    // Space is freed: the next checkpoint carries the changes again.
    plan.heal();
    let mut w = store.begin_checkpoint(2).unwrap();
    write_ops(&mut w, &second).unwrap();
    w.commit().unwrap();
    model.apply(&second);
    assert_eq!(segment_names(store.dir()), names_before);
    drop(store);
    let (store, c) = StateStore::open(tmp.path(), 0, options).unwrap();
    assert_eq!(Model::of(&c.unwrap()), model);
    assert_eq!(store.recovery_report().tail_bytes_cut, 0);
}

#[test]
fn a_full_disk_while_writing_the_manifest_keeps_the_last_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    let (mut store, _) =
        StateStore::open_with_backend(tmp.path(), 0, test_options(), faulty(&plan, false)).unwrap();
    let mut w = store.begin_checkpoint(1).unwrap();
    w.put(b"k", b"old").unwrap();
    w.commit().unwrap();
    // Segment chunk write succeeds, the manifest write fails.
    plan.fail_writes_after(1, io::ErrorKind::StorageFull);
    let mut w = store.begin_checkpoint(2).unwrap();
    w.put(b"k", b"new").unwrap();
    let err = w.commit().unwrap_err();
    assert!(err.to_string().contains("MANIFEST.tmp"), "{err}");
    assert!(!store.dir().join("MANIFEST.tmp").exists());
    drop(store);
    let (_, c) = StateStore::open(tmp.path(), 0, test_options()).unwrap();
    assert_eq!(c.unwrap().get(b"k"), Some(&b"old"[..]));
}

#[test]
fn a_read_only_directory_fails_clearly_and_keeps_the_last_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = FaultPlan::new();
    let options = StoreOptions {
        segment_bytes_max: 4096,
        ..test_options()
    };
    let (mut store, _) =
        StateStore::open_with_backend(tmp.path(), 0, options.clone(), faulty(&plan, false))
            .unwrap();
    let mut w = store.begin_checkpoint(1).unwrap();
    w.put(b"k", &[7; 5000]).unwrap();
    w.commit().unwrap();
    plan.fail_creates(Some(io::ErrorKind::ReadOnlyFilesystem));
    // The segment is full: the next checkpoint needs a new file.
    let err = store.begin_checkpoint(2).err().unwrap();
    match &err {
        StateError::Io {
            op: "create",
            source,
            ..
        } => {
            assert_eq!(source.kind(), io::ErrorKind::ReadOnlyFilesystem)
        }
        other => panic!("expected a create error, got {other}"),
    }
    assert!(err.to_string().contains("seg-"), "{err}");
    drop(store);
    let (_, c) = StateStore::open(tmp.path(), 0, options).unwrap();
    assert_eq!(c.unwrap().get(b"k"), Some(&[7u8; 5000][..]));
}
