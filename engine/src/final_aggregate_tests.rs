//! The final stage on panes: windows assembled from their panes, panes freed after their last
//! window, late partials, restored floors and the checkpoint bookkeeping.

use std::collections::BTreeMap;
use std::time::Instant;

use super::*;
use crate::accumulator::Slot;
use crate::plan::{WindowKind, WindowSpec};
use crate::row_kind::RowKind;

/// A layout for `k, COUNT(*), SUM(v), MAX(s)` `FROM ...` (`from` says from what, grouped how).
fn layout(from: &str) -> AggregateLayout {
    let sql = format!(
        "CREATE TABLE t (k STRING, v BIGINT, s STRING, ts TIMESTAMP(3), \
         WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
         WITH ('connector' = 'filesystem', 'path' = 'unused.jsonl', 'format' = 'json');\n\
         SELECT k, COUNT(*), SUM(v), MAX(s) FROM {from};"
    );
    let program = match crate::sql::parse_program(&sql) {
        Ok(p) => p,
        Err(e) => panic!("{e}\n{sql}"),
    };
    let aggregation = program.pipelines[0]
        .aggregation
        .as_ref()
        .expect("aggregation");
    AggregateLayout::new(aggregation).expect("layout")
}

fn hop_layout() -> AggregateLayout {
    layout("t GROUP BY k, HOP(ts, INTERVAL '1' SECOND, INTERVAL '3' SECOND)")
}

fn final_stage(layout: &AggregateLayout, shards: usize) -> FinalAggregate {
    let spec = layout.aggregation.window.expect("window");
    FinalAggregate::new(shards, WindowAssigner::new(&spec))
}

/// A partial of the pane `[start, start + pane_ms)`: per key, `n` events with `v` summing to
/// `sum`.
fn partial(
    layout: &AggregateLayout,
    start: i64,
    pane_ms: i64,
    groups: &[(&str, u64, i64)],
) -> PartialWindow {
    let mut p = PartialWindow {
        start,
        end: start + pane_ms,
        ..PartialWindow::default()
    };
    for &(k, n, sum) in groups {
        p.key_bytes.extend_from_slice(k.as_bytes());
        p.key_ends.push(p.key_bytes.len() as u32);
        p.hashes.push(layout.hash_key(k.as_bytes()));
        p.slots.extend([
            Slot { a: n, b: 0 },
            Slot {
                a: sum as u64,
                b: n,
            },
            Slot::EMPTY,
        ]);
    }
    p
}

/// (start, end) -> key -> (COUNT(*), SUM(v)) of the emitted windows.
type Emitted = BTreeMap<(i64, i64), BTreeMap<String, (u64, i64)>>;

fn emitted(out: &[ClosedWindow]) -> Emitted {
    emitted_as(out, RowKind::Insert)
}

/// [`emitted`] of the windows of kind `kind` only.
fn emitted_as(out: &[ClosedWindow], kind: RowKind) -> Emitted {
    let mut m = Emitted::new();
    for c in out.iter().filter(|c| c.kind == kind) {
        let w = &c.window;
        let groups = m.entry((w.start, w.end)).or_default();
        assert!(
            groups.is_empty(),
            "window [{}, {}) emitted twice",
            w.start,
            w.end
        );
        for g in 0..w.groups.len() as u32 {
            let s = w.groups.group_slots(g);
            let key = String::from_utf8(w.groups.key(g).to_vec()).expect("utf8");
            groups.insert(key, (s[0].a, s[1].a as i64));
        }
    }
    m
}

fn watermark(
    fin: &mut FinalAggregate,
    layout: &AggregateLayout,
    from: usize,
    wm: i64,
) -> Vec<ClosedWindow> {
    let mut out = Vec::new();
    fin.on_watermark(layout, from, wm, false, Instant::now(), &mut out);
    out
}

fn groups(entries: &[(&str, u64, i64)]) -> BTreeMap<String, (u64, i64)> {
    entries
        .iter()
        .map(|&(k, n, s)| (k.to_string(), (n, s)))
        .collect()
}

#[test]
fn hop_windows_are_assembled_from_their_panes() {
    let l = hop_layout();
    let mut fin = final_stage(&l, 1);
    // 3 s windows every 1 s; panes [0, 1 s), [1 s, 2 s) and [5 s, 6 s) hold data.
    fin.merge(&l, partial(&l, 0, 1_000, &[("a", 1, 10), ("b", 2, 5)]));
    fin.merge(&l, partial(&l, 1_000, 1_000, &[("a", 3, 1)]));
    fin.merge(&l, partial(&l, 5_000, 1_000, &[("b", 1, 7)]));
    assert_eq!(fin.open_windows(), 3, "one state per pane, not per window");
    let out = watermark(&mut fin, &l, 0, 2_500);
    let expected: Emitted = [
        ((-2_000, 1_000), groups(&[("a", 1, 10), ("b", 2, 5)])),
        ((-1_000, 2_000), groups(&[("a", 4, 11), ("b", 2, 5)])),
    ]
    .into_iter()
    .collect();
    assert_eq!(emitted(&out), expected);
    assert_eq!(fin.open_windows(), 3, "pane [0, 1 s) is needed until 3 s");
    let out = watermark(&mut fin, &l, 0, 100_000);
    let expected: Emitted = [
        ((0, 3_000), groups(&[("a", 4, 11), ("b", 2, 5)])),
        ((1_000, 4_000), groups(&[("a", 3, 1)])),
        // [2 s, 5 s) holds no pane with data: nothing is emitted for it
        ((3_000, 6_000), groups(&[("b", 1, 7)])),
        ((4_000, 7_000), groups(&[("b", 1, 7)])),
        ((5_000, 8_000), groups(&[("b", 1, 7)])),
    ]
    .into_iter()
    .collect();
    assert_eq!(emitted(&out), expected);
    assert_eq!(
        fin.open_windows(),
        0,
        "every pane is freed after its last window"
    );
}

#[test]
fn a_late_pane_reaches_only_the_windows_not_emitted_yet() {
    let l = hop_layout();
    let mut fin = final_stage(&l, 1);
    fin.merge(&l, partial(&l, 0, 1_000, &[("a", 1, 1)]));
    let out = watermark(&mut fin, &l, 0, 1_000);
    assert_eq!(emitted(&out).len(), 1, "[-2 s, 1 s)");
    // More of pane [0, 1 s) after its first window was emitted (a reopened pane).
    fin.merge(&l, partial(&l, 0, 1_000, &[("a", 10, 10), ("c", 1, 1)]));
    assert_eq!(fin.late_partial_groups, 0);
    let out = watermark(&mut fin, &l, 0, 3_000);
    let expected: Emitted = [
        ((-1_000, 2_000), groups(&[("a", 11, 11), ("c", 1, 1)])),
        ((0, 3_000), groups(&[("a", 11, 11), ("c", 1, 1)])),
    ]
    .into_iter()
    .collect();
    assert_eq!(emitted(&out), expected);
    // Every window of the pane is emitted now: more of it is late.
    fin.merge(&l, partial(&l, 0, 1_000, &[("a", 5, 5), ("d", 1, 1)]));
    assert_eq!(fin.late_partial_groups, 2);
    assert_eq!(fin.open_windows(), 0, "a late partial creates no state");
    // Same for a pane whose windows were all emitted while it was never seen.
    fin.merge(&l, partial(&l, -5_000, 1_000, &[("z", 1, 1)]));
    assert_eq!(fin.late_partial_groups, 3);
}

#[test]
fn cumulate_windows_grow_by_step_within_their_cycle() {
    let l = layout(
        "TABLE(CUMULATE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '3' SECOND)) \
         GROUP BY k, window_start, window_end",
    );
    let spec = WindowSpec {
        kind: WindowKind::Cumulate {
            step_ms: 1_000,
            max_size_ms: 3_000,
        },
        time_column: 3,
        offset_ms: 0,
    };
    assert_eq!(l.aggregation.window, Some(spec));
    let mut fin = final_stage(&l, 1);
    fin.merge(&l, partial(&l, 0, 1_000, &[("a", 1, 1)]));
    fin.merge(&l, partial(&l, 2_000, 1_000, &[("a", 2, 2)]));
    fin.merge(&l, partial(&l, 3_000, 1_000, &[("b", 4, 4)]));
    let out = watermark(&mut fin, &l, 0, 10_000);
    let expected: Emitted = [
        ((0, 1_000), groups(&[("a", 1, 1)])),
        ((0, 2_000), groups(&[("a", 1, 1)])),
        ((0, 3_000), groups(&[("a", 3, 3)])),
        ((3_000, 4_000), groups(&[("b", 4, 4)])),
        ((3_000, 5_000), groups(&[("b", 4, 4)])),
        ((3_000, 6_000), groups(&[("b", 4, 4)])),
    ]
    .into_iter()
    .collect();
    assert_eq!(emitted(&out), expected);
    assert_eq!(fin.open_windows(), 0);
}

#[test]
fn tumble_windows_are_their_panes_and_freed_panes_are_recorded_for_checkpoints() {
    let l = layout("t GROUP BY k, TUMBLE(ts, INTERVAL '1' SECOND)");
    let mut fin = final_stage(&l, 2);
    fin.merge(&l, partial(&l, 0, 1_000, &[("a", 1, 1)]));
    fin.merge(&l, partial(&l, 1_000, 1_000, &[("a", 2, 2)]));
    // A checkpoint wrote the first pane's chunk; merges mark the changed chunks dirty.
    let mut chunks = Vec::new();
    for w in fin.windows_mut() {
        w.groups.take_dirty_chunks(&mut chunks);
        assert_eq!(chunks, vec![0], "merged groups are dirty");
        if w.start == 0 {
            w.groups.persisted_chunks = 1;
        }
    }
    // Both shards must pass the end.
    assert!(watermark(&mut fin, &l, 0, 1_000).is_empty());
    let out = watermark(&mut fin, &l, 1, 1_500);
    let expected: Emitted = [((0, 1_000), groups(&[("a", 1, 1)]))].into_iter().collect();
    assert_eq!(emitted(&out), expected);
    assert_eq!(fin.take_removed(), vec![(0, 1_000, 1)]);
    assert!(fin.take_removed().is_empty());
    assert_eq!(fin.global_watermark(), 1_000);
    fin.merge(&l, partial(&l, 0, 1_000, &[("a", 1, 1)]));
    assert_eq!(
        fin.late_partial_groups, 1,
        "TUMBLE: late when the window has fired"
    );
}

#[test]
fn after_recovery_a_window_the_old_owner_emitted_leaves_its_groups_out() {
    let l = hop_layout();
    let mut fin = final_stage(&l, 1);
    let keys = ["k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"];
    let entries: Vec<(&str, u64, i64)> = keys.iter().map(|&k| (k, 1, 1)).collect();
    // Restored state: pane [0, 1 s); the old run had two shards, the old shard 0 had emitted
    // windows up to 2 s (so [-2 s, 1 s) and [-1 s, 2 s)), the old shard 1 none.
    fin.merge(&l, partial(&l, 0, 1_000, &entries));
    fin.set_restored_floors(vec![2_000, i64::MIN]);
    let old_owner = |k: &str| AggregateLayout::owner(l.hash_key(k.as_bytes()), 2);
    assert!(
        keys.iter().any(|k| old_owner(k) == 0) && keys.iter().any(|k| old_owner(k) == 1),
        "both old owners have keys"
    );
    // A group arriving now for a pane the old owner had emitted every window of is dropped.
    fin.merge(&l, partial(&l, -2_000, 1_000, &entries));
    let dropped = keys.iter().filter(|k| old_owner(k) == 0).count() as u64;
    assert_eq!(fin.late_partial_groups, dropped);
    let out = emitted(&watermark(&mut fin, &l, 0, 5_000));
    for (&(start, end), groups) in &out {
        for k in groups.keys() {
            assert!(
                old_owner(k) == 1 || end > 2_000,
                "{k} in [{start}, {end}) was already emitted by its old owner"
            );
        }
    }
    let in_window = |end: i64| out.iter().find(|(w, _)| w.1 == end).map(|(_, g)| g.len());
    assert_eq!(
        in_window(3_000),
        Some(keys.len()),
        "after the floors every key is back"
    );
    assert_eq!(in_window(2_000), Some(keys.len() - dropped as usize));
}

/// [`final_stage`] with an allowed lateness.
fn late_final_stage(layout: &AggregateLayout, shards: usize, lateness_ms: i64) -> FinalAggregate {
    let mut fin = final_stage(layout, shards);
    fin.set_allowed_lateness(lateness_ms);
    fin
}

#[test]
fn within_the_lateness_a_late_partial_re_emits_its_changed_groups_as_updates() {
    let l = layout("t GROUP BY k, TUMBLE(ts, INTERVAL '1' SECOND)");
    let mut fin = late_final_stage(&l, 2, 2_000);
    fin.merge(&l, partial(&l, 0, 1_000, &[("a", 1, 1), ("c", 5, 5)]));
    assert!(
        watermark(&mut fin, &l, 0, 1_000).is_empty(),
        "shard 1 holds it"
    );
    let out = watermark(&mut fin, &l, 1, 1_000);
    let first: Emitted = [((0, 1_000), groups(&[("a", 1, 1), ("c", 5, 5)]))]
        .into_iter()
        .collect();
    assert_eq!(emitted(&out), first);
    assert_eq!(fin.open_windows(), 1, "kept for the lateness");
    // Late deltas from both shards, then a watermark of one of them (not moving the global
    // one): one update per window, the changed keys only, with their full values.
    fin.merge(&l, partial(&l, 0, 1_000, &[("a", 2, 2)]));
    fin.merge(&l, partial(&l, 0, 1_000, &[("a", 1, 1), ("b", 1, 1)]));
    let out = watermark(&mut fin, &l, 0, 1_200);
    assert!(emitted(&out).is_empty(), "no second first emission");
    let update: Emitted = [((0, 1_000), groups(&[("a", 4, 4), ("b", 1, 1)]))]
        .into_iter()
        .collect();
    assert_eq!(emitted_as(&out, RowKind::UpdateAfter), update);
    assert!(
        watermark(&mut fin, &l, 1, 1_200).is_empty(),
        "nothing pending"
    );
    // Past end + lateness the pane is freed and a partial for it is late.
    assert!(watermark(&mut fin, &l, 0, 3_000).is_empty());
    assert!(watermark(&mut fin, &l, 1, 3_000).is_empty());
    assert_eq!(fin.open_windows(), 0);
    fin.merge(&l, partial(&l, 0, 1_000, &[("a", 1, 1)]));
    assert_eq!(fin.late_partial_groups, 1);
    assert!(watermark(&mut fin, &l, 0, 3_500).is_empty());
}

#[test]
fn hop_updates_reach_every_emitted_window_of_the_pane_within_the_lateness() {
    let l = hop_layout();
    let mut fin = late_final_stage(&l, 1, 1_500);
    fin.merge(&l, partial(&l, 0, 1_000, &[("a", 1, 1)]));
    let out = watermark(&mut fin, &l, 0, 2_500);
    assert_eq!(emitted(&out).len(), 2, "[-2 s, 1 s) and [-1 s, 2 s)");
    // Watermark 2.5 s: [-2 s, 1 s) ended 1.5 s ago (no longer updatable), [-1 s, 2 s) is
    // within the lateness, [0, 3 s) not emitted yet.
    fin.merge(&l, partial(&l, 0, 1_000, &[("a", 10, 10)]));
    let out = watermark(&mut fin, &l, 0, 3_000);
    let updates: Emitted = [((-1_000, 2_000), groups(&[("a", 11, 11)]))]
        .into_iter()
        .collect();
    assert_eq!(emitted_as(&out, RowKind::UpdateAfter), updates);
    let firsts: Emitted = [((0, 3_000), groups(&[("a", 11, 11)]))]
        .into_iter()
        .collect();
    assert_eq!(emitted(&out), firsts);
    // The pane's last window ends at 3 s: kept until 4.5 s.
    assert_eq!(fin.open_windows(), 1);
    assert!(watermark(&mut fin, &l, 0, 4_500).is_empty());
    assert_eq!(fin.open_windows(), 0);
}

#[test]
fn after_recovery_with_lateness_emitted_windows_come_back_as_updates_never_as_inserts() {
    let l = layout("t GROUP BY k, TUMBLE(ts, INTERVAL '1' SECOND)");
    let mut fin = late_final_stage(&l, 1, 5_000);
    // Restored: pane [0, 1 s) (emitted by the old single shard, whose floor is 1 s, and kept
    // for the lateness) and pane [1 s, 2 s) (not emitted).
    fin.merge(&l, partial(&l, 0, 1_000, &[("a", 1, 1)]));
    fin.merge(&l, partial(&l, 1_000, 1_000, &[("b", 1, 1)]));
    fin.set_restored_floors(vec![1_000]);
    // A late delta replayed after the restart.
    fin.merge(&l, partial(&l, 0, 1_000, &[("a", 1, 1)]));
    let out = watermark(&mut fin, &l, 0, 2_000);
    let firsts: Emitted = [((1_000, 2_000), groups(&[("b", 1, 1)]))]
        .into_iter()
        .collect();
    assert_eq!(
        emitted(&out),
        firsts,
        "[0, 1 s) was emitted before the restart"
    );
    let updates: Emitted = [((0, 1_000), groups(&[("a", 2, 2)]))].into_iter().collect();
    assert_eq!(emitted_as(&out, RowKind::UpdateAfter), updates);
    // Later deltas of both windows are updates.
    fin.merge(&l, partial(&l, 0, 1_000, &[("a", 1, 1)]));
    fin.merge(&l, partial(&l, 1_000, 1_000, &[("b", 1, 1)]));
    let out = watermark(&mut fin, &l, 0, 2_100);
    assert!(emitted(&out).is_empty());
    let updates: Emitted = [
        ((0, 1_000), groups(&[("a", 3, 3)])),
        ((1_000, 2_000), groups(&[("b", 2, 2)])),
    ]
    .into_iter()
    .collect();
    assert_eq!(emitted_as(&out, RowKind::UpdateAfter), updates);
    // Without lateness the same restore emits nothing for [0, 1 s).
    let mut fin = final_stage(&l, 1);
    fin.merge(&l, partial(&l, 0, 1_000, &[("a", 1, 1)]));
    fin.set_restored_floors(vec![1_000]);
    assert!(watermark(&mut fin, &l, 0, 2_000).is_empty());
}
