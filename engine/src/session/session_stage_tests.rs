use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::session::mini_sessions::MiniSessions;
use crate::session::session_output::sessions_to_batches;
use crate::session::test_support::{batch, layout_of};

const SQL: &str = "SELECT k, COUNT(*), SUM(v) FROM t GROUP BY k, SESSION(ts, INTERVAL '10' SECOND)";

fn stage(shards: usize, max: usize) -> SessionStage {
    let (layout, _) = layout_of(SQL);
    SessionStage::new(shards, layout, max).expect("stage")
}

/// The mini-sessions of `rows` cut by the partial stage (one batch), for one owner.
fn minis(rows: &[(&str, i64, i64)]) -> PartialWindow {
    let (layout, schema) = layout_of(SQL);
    let mut op = MiniSessions::new(layout).expect("partial stage");
    let mut out = Vec::new();
    op.process(&batch(&schema, rows), i64::MIN, 1, &mut out)
        .expect("process");
    assert_eq!(out.len(), 1);
    out.pop().expect("one partial").1
}

/// (key's first letter, start, end, count, sum) of fired sessions, sorted.
fn summary(fired: &[FiredSession]) -> Vec<(char, i64, i64, u64, u64)> {
    let mut v: Vec<_> = fired
        .iter()
        .map(|f| {
            (
                f.key[1] as char,
                f.session.start,
                f.session.end,
                f.session.slots[0].a,
                f.session.slots[1].a,
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn mini_sessions_of_two_shards_merge_and_fire_after_the_watermark_passes_the_end() {
    let mut s = stage(2, 100);
    // Shard 0 saw a at 0 s and 25 s, shard 1 saw a at 12 s: the 12 s event bridges them
    // ([0, 10) and [12, 22) touch nothing; [12, 22) and [25, 35) are 3 s apart: no).
    s.try_merge(&minis(&[("a", 1, 0), ("a", 2, 25_000)]))
        .expect("merge");
    s.try_merge(&minis(&[("a", 4, 10_000), ("b", 8, 3_000)]))
        .expect("merge");
    assert_eq!(s.sessions_open(), 3, "a: [0, 20 s) and [25 s, 35 s); b");
    let mut out = Vec::new();
    s.on_watermark(0, 20_000, false, &mut out).expect("wm");
    assert!(out.is_empty(), "shard 1 has not passed anything yet");
    s.on_watermark(1, 20_000, false, &mut out).expect("wm");
    assert_eq!(
        summary(&out),
        vec![('b', 3_000, 13_000, 1, 8)],
        "a's [0, 20 s) is not complete at watermark 20 s: an event at 20 s would touch it"
    );
    out.clear();
    s.on_watermark(0, 20_001, false, &mut out).expect("wm");
    s.on_watermark(1, 20_001, false, &mut out).expect("wm");
    assert_eq!(summary(&out), vec![('a', 0, 20_000, 2, 5)]);
    out.clear();
    s.on_watermark(0, i64::MAX, false, &mut out).expect("wm");
    s.on_watermark(1, i64::MAX, false, &mut out).expect("wm");
    assert_eq!(summary(&out), vec![('a', 25_000, 35_000, 1, 2)]);
    assert_eq!(s.sessions_held(), 0, "every bound is freed at the end");
    assert_eq!(s.sessions_fired, 3);
}

#[test]
fn a_mini_session_bridging_two_sessions_merges_all_three() {
    let mut s = stage(1, 100);
    s.try_merge(&minis(&[("a", 1, 0), ("a", 2, 30_000)]))
        .expect("merge");
    assert_eq!(s.sessions_open(), 2);
    s.try_merge(&minis(&[("a", 4, 10_000), ("a", 8, 20_000)]))
        .expect("merge");
    assert_eq!(s.sessions_open(), 1);
    let mut out = Vec::new();
    s.on_watermark(0, i64::MAX, false, &mut out).expect("wm");
    assert_eq!(summary(&out), vec![('a', 0, 40_000, 4, 15)]);
}

#[test]
fn a_mini_session_touching_a_fired_session_is_late() {
    let mut s = stage(1, 100);
    let mut out = Vec::new();
    s.try_merge(&minis(&[("a", 1, 0)])).expect("merge");
    s.on_watermark(0, 10_001, false, &mut out).expect("wm");
    assert_eq!(summary(&out), vec![('a', 0, 10_000, 1, 1)]);
    // An event at 10 s would have extended [0, 10 s): late, counted, not a new session.
    s.try_merge(&minis(&[("a", 5, 10_000)])).expect("merge");
    assert_eq!(s.late_partial_groups, 1);
    assert_eq!(s.sessions_open(), 0);
    // One that does not touch it is on time.
    s.try_merge(&minis(&[("a", 6, 10_001)])).expect("merge");
    assert_eq!(s.sessions_open(), 1);
    // The fired bounds are freed once the watermark exceeds end + gap.
    assert_eq!(s.sessions_held(), 2);
    s.on_watermark(0, 20_001, false, &mut out).expect("wm");
    assert_eq!(s.sessions_held(), 1, "[10.001 s, 20.001 s) is still open");
}

#[test]
fn the_session_limit_is_a_clear_error_at_the_next_watermark() {
    let mut s = stage(1, 2);
    s.try_merge(&minis(&[("a", 1, 0), ("b", 1, 0)]))
        .expect("two sessions fit");
    let err = s
        .try_merge(&minis(&[("c", 1, 0)]))
        .expect_err("a third is over the limit");
    assert!(err.to_string().contains("sessions_open_max = 2"), "{err}");
    // Merging into an existing session needs no room.
    s.try_merge(&minis(&[("a", 1, 5_000)])).expect("merges");
    // Through the exchange the error comes with the next watermark.
    s.merge(&minis(&[("d", 1, 0)]));
    let err = s
        .on_watermark(0, 1, false, &mut Vec::new())
        .expect_err("reported");
    assert!(err.to_string().contains("sessions_open_max"), "{err}");
}

#[test]
fn fired_sessions_become_rows_with_their_own_bounds() {
    let mut s = stage(1, 100);
    s.try_merge(&minis(&[("a", 1, 0), ("a", 2, 50_000), ("b", 3, 7)]))
        .expect("merge");
    let mut out = Vec::new();
    s.on_watermark(0, i64::MAX, false, &mut out).expect("wm");
    let layout = s.layout().clone();
    let batches = sessions_to_batches(&layout, &out).expect("batches");
    assert_eq!(batches.len(), 2, "key a fired twice at once: two batches");
    let mut rows = Vec::new();
    for b in &batches {
        let json = rows_of(b);
        rows.extend(json);
    }
    rows.sort();
    assert_eq!(
        rows,
        vec![
            "a|0|10000|1|1".to_string(),
            "a|50000|60000|1|2".to_string(),
            "b|7|10007|1|3".to_string(),
        ]
    );
}

/// (kind, key's first letter, start, end, count, sum) of emitted results, in output order.
fn kinds(out: &[FiredSession]) -> Vec<(&'static str, char, i64, i64, u64, u64)> {
    out.iter()
        .map(|f| {
            (
                f.kind.as_str(),
                f.key[1] as char,
                f.session.start,
                f.session.end,
                f.session.slots[0].a,
                f.session.slots[1].a,
            )
        })
        .collect()
}

fn wm(s: &mut SessionStage, watermark: i64) -> Vec<FiredSession> {
    let mut out = Vec::new();
    s.on_watermark(0, watermark, false, &mut out).expect("wm");
    out
}

#[test]
fn a_late_event_inside_a_fired_session_updates_it() {
    let mut s = stage(1, 100);
    s.set_allowed_lateness(10_000);
    s.try_merge(&minis(&[("a", 1, 0), ("a", 2, 8_000)]))
        .expect("merge");
    assert_eq!(
        kinds(&wm(&mut s, 18_001)),
        vec![("+I", 'a', 0, 18_000, 2, 3)]
    );
    // Within the lateness (2 s + gap + lateness = 22 s): an event at 2 s stays inside
    // [0, 18 s): the same bounds, "+U".
    s.try_merge(&minis(&[("a", 4, 2_000)])).expect("merge");
    assert_eq!(
        kinds(&wm(&mut s, 18_002)),
        vec![("+U", 'a', 0, 18_000, 3, 7)]
    );
    assert_eq!((s.sessions_fired, s.sessions_updated), (1, 1));
    // Past end + lateness the accumulators go; a mini-session that meets the bounds is too
    // late (an event at 9 s: its own window plus the lateness, 29 s, has not passed yet).
    assert!(wm(&mut s, 28_001).is_empty());
    s.try_merge(&minis(&[("a", 8, 9_000)])).expect("merge");
    assert_eq!(s.late_partial_groups, 1);
    assert!(wm(&mut s, 50_000).is_empty());
    assert_eq!(
        s.sessions_held(),
        0,
        "the bounds go one gap after the lateness"
    );
}

#[test]
fn a_late_event_that_extends_a_fired_session_withdraws_it_when_the_new_one_fires() {
    let mut s = stage(1, 100);
    s.set_allowed_lateness(5_000);
    s.try_merge(&minis(&[("a", 1, 0)])).expect("merge");
    assert_eq!(
        kinds(&wm(&mut s, 10_001)),
        vec![("+I", 'a', 0, 10_000, 1, 1)]
    );
    // An event at 3 s makes the session [0, 13 s): not complete at 10.001 s.
    s.try_merge(&minis(&[("a", 2, 3_000)])).expect("merge");
    assert!(wm(&mut s, 12_000).is_empty());
    assert_eq!(
        kinds(&wm(&mut s, 13_001)),
        vec![("-D", 'a', 0, 10_000, 1, 1), ("+I", 'a', 0, 13_000, 2, 3)]
    );
    assert_eq!(s.sessions_withdrawn, 1);
}

#[test]
fn a_late_event_bridging_two_fired_sessions_merges_them() {
    let mut s = stage(1, 100);
    s.set_allowed_lateness(30_000);
    s.try_merge(&minis(&[("a", 1, 0), ("a", 2, 25_000), ("b", 4, 0)]))
        .expect("merge");
    assert_eq!(
        kinds(&wm(&mut s, 35_001)),
        vec![
            ("+I", 'a', 0, 10_000, 1, 1),
            ("+I", 'b', 0, 10_000, 1, 4),
            ("+I", 'a', 25_000, 35_000, 1, 2),
        ]
    );
    // Events at 10 s and 18 s: [10 s, 28 s) touches [0, 10 s) and overlaps [25 s, 35 s).
    s.try_merge(&minis(&[("a", 8, 10_000), ("a", 16, 18_000)]))
        .expect("merge");
    assert_eq!(
        s.sessions_open(),
        0,
        "complete at once: emitted at the next watermark"
    );
    assert_eq!(
        kinds(&wm(&mut s, 35_001)),
        vec![
            ("-D", 'a', 0, 10_000, 1, 1),
            ("-D", 'a', 25_000, 35_000, 1, 2),
            ("+I", 'a', 0, 35_000, 4, 27),
        ]
    );
    // And the merged session can still be updated within the lateness.
    s.try_merge(&minis(&[("a", 32, 24_000)])).expect("merge");
    assert_eq!(
        kinds(&wm(&mut s, 35_002)),
        vec![("+U", 'a', 0, 35_000, 5, 59)]
    );
}

/// `k|window_start|window_end|count|sum` per row.
pub(crate) fn rows_of(b: &arrow::array::RecordBatch) -> Vec<String> {
    use arrow::array::AsArray;
    use arrow::datatypes::{Int64Type, TimestampMillisecondType};
    let k = b.column(0).as_string::<i32>();
    let s = b.column(1).as_primitive::<TimestampMillisecondType>();
    let e = b.column(2).as_primitive::<TimestampMillisecondType>();
    let c = b.column(3).as_primitive::<Int64Type>();
    let v = b.column(4).as_primitive::<Int64Type>();
    (0..b.num_rows())
        .map(|i| {
            format!(
                "{}|{}|{}|{}|{}",
                k.value(i),
                s.value(i),
                e.value(i),
                c.value(i),
                v.value(i)
            )
        })
        .collect()
}

/// Sessions of sorted events split at gaps (the plain definition).
fn expected(events: &[(u8, i64, i64)], gap: i64) -> Vec<(char, i64, i64, u64, u64)> {
    let mut ev: Vec<_> = events.to_vec();
    ev.sort_by_key(|e| (e.0, e.2));
    let mut out: Vec<(char, i64, i64, u64, u64)> = Vec::new();
    let mut last: Option<(u8, i64)> = None;
    for &(k, v, t) in &ev {
        match last {
            Some((lk, lt)) if lk == k && t <= lt + gap => {
                let s = out.last_mut().expect("open session");
                s.2 = t + gap;
                s.3 += 1;
                s.4 += v as u64;
            }
            _ => out.push(((b'a' + k) as char, t, t + gap, 1, v as u64)),
        }
        last = Some((k, t));
    }
    out.sort();
    out
}

proptest! {
    /// Whatever the split of the events into batches and shards and the order the owner
    /// merges the mini-sessions in, the sessions are those of the sorted events.
    #[test]
    fn merge_order_does_not_change_the_sessions(
        events in proptest::collection::vec((0u8..3, 1i64..100, 0i64..60_000), 1..60),
        cuts in proptest::collection::vec(0usize..60, 0..8),
        seed in any::<u64>(),
    ) {
        let (layout, schema) = layout_of(SQL);
        let names = ["a", "b", "c"];
        let rows: Vec<(&str, i64, i64)> =
            events.iter().map(|&(k, v, t)| (names[k as usize], v, t)).collect();
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (rows.len() + 1)).collect();
        bounds.push(0);
        bounds.push(rows.len());
        bounds.sort();
        let mut op = MiniSessions::new(layout.clone()).expect("partial stage");
        let mut parts = Vec::new();
        for w in bounds.windows(2) {
            op.process(&batch(&schema, &rows[w[0]..w[1]]), i64::MIN, 1, &mut parts)
                .expect("process");
        }
        // Shuffle the partials (a deterministic permutation from the seed).
        let mut order: Vec<usize> = (0..parts.len()).collect();
        let mut x = seed | 1;
        for i in (1..order.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut s = SessionStage::new(1, Arc::clone(&layout), 1_000).expect("stage");
        for i in order {
            s.try_merge(&parts[i].1).expect("merge");
        }
        let mut out = Vec::new();
        s.on_watermark(0, i64::MAX, false, &mut out).expect("wm");
        prop_assert_eq!(summary(&out), expected(&events, 10_000));
    }
}

proptest! {
    /// With allowed lateness, events arriving in any order, one batch each: the changelog
    /// is consistent ("+I" only for a result not emitted, "+U"/"-D" only for an emitted
    /// one), and applied as upserts it ends as the sessions of the events that were not
    /// dropped as too late.
    #[test]
    fn late_updates_end_as_the_sessions_of_the_accepted_events(
        events in proptest::collection::vec((0u8..3, 1i64..100, 0i64..20_000), 1..50),
        lateness in 0i64..3_000,
        bound in 0i64..3_000,
    ) {
        let (layout, schema) = layout_of(SQL);
        let names = ["a", "b", "c"];
        let gap = 10_000;
        let mut op = MiniSessions::new(layout.clone()).expect("partial stage");
        op.set_allowed_lateness(lateness);
        let mut s = SessionStage::new(1, Arc::clone(&layout), 1_000).expect("stage");
        s.set_allowed_lateness(lateness);
        let mut published: std::collections::BTreeMap<(char, i64, i64), (u64, u64)> =
            Default::default();
        let mut apply = |out: Vec<FiredSession>| -> Result<(), TestCaseError> {
            for (kind, k, start, end, n, sum) in kinds(&out) {
                let id = (k, start, end);
                match kind {
                    "+I" => prop_assert!(published.insert(id, (n, sum)).is_none(), "+I of {id:?} twice"),
                    "+U" => prop_assert!(published.insert(id, (n, sum)).is_some(), "+U of {id:?} not emitted"),
                    _ => prop_assert!(published.remove(&id).is_some(), "-D of {id:?} not emitted"),
                }
            }
            Ok(())
        };
        let mut watermark = i64::MIN;
        let mut accepted = Vec::new();
        for &(k, v, t) in &events {
            let mut parts = Vec::new();
            op.process(&batch(&schema, &[(names[k as usize], v, t)]), watermark, 1, &mut parts)
                .expect("process");
            let late_before = s.late_partial_groups;
            for (_, p) in &parts {
                s.try_merge(p).expect("merge");
            }
            if !parts.is_empty() && s.late_partial_groups == late_before {
                accepted.push((k, v, t));
            }
            watermark = watermark.max(t - bound);
            let mut out = Vec::new();
            s.on_watermark(0, watermark, false, &mut out).expect("wm");
            apply(out)?;
        }
        let mut out = Vec::new();
        s.on_watermark(0, i64::MAX, false, &mut out).expect("wm");
        apply(out)?;
        let got: Vec<(char, i64, i64, u64, u64)> = published
            .into_iter()
            .map(|((k, start, end), (n, sum))| (k, start, end, n, sum))
            .collect();
        prop_assert_eq!(got, expected(&accepted, gap));
        prop_assert_eq!(s.sessions_held(), 0);
    }
}
