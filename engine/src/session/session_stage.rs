//! The owner stage of SESSION windows: per key, the sorted sessions with their accumulators.
//! Mini-sessions from every shard (`mini_sessions.rs`) merge on insert with every session of
//! their key they overlap or touch (Flink's `TimeWindow.intersects`), with
//! `Accumulator::merge`; a session fires when the global watermark (the minimum over the
//! shards, as in `final_aggregate.rs`) *exceeds* its end. (Touching sessions merge, so an
//! event at exactly `end`, which is on time at watermark `end`, still extends the session.)
//!
//! Allowed lateness `L` (the source's `'allowed-lateness'`, 0 by default): a fired session
//! keeps its accumulators while the watermark is at most `end + L`. A mini-session that meets
//! it merges into it; the changed session is emitted again at the next watermark message
//! (shards send one when their watermark moves): "+U" when
//! its bounds are those of an emitted result, else "+I" for the new bounds and "-D" for every
//! emitted result it replaces (two emitted sessions bridged by a late event: two "-D", one
//! "+I"). A merged session that is not complete yet (its end not passed) waits for its firing
//! and says the same then. With `L = 0` a session is final when it fires.
//!
//! After `end + L` only the session's bounds are kept, one gap longer: a mini-session that
//! meets them is too late (counted in `late_partial_groups`, dropped). After that no
//! mini-session that is not too late can reach them (each of its events has
//! `ts + gap + L >=` the sender's watermark `>=` this stage's watermark), so they are freed.
//!
//! Invariant: sessions of one key are sorted by start and pairwise neither overlap nor touch;
//! a result is emitted once as "+I", and again only as "+U" or withdrawn by "-D".
//! Limit: `sessions_open_max` counts the sessions held (open, fired within the lateness, and
//! kept bounds); a merge over it is an error (reported at the next watermark, see
//! [`SessionStage::merge`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::accumulator::{Slot, StringStore};
use crate::error::{EngineError, Result};
use crate::exchange::PartialWindow;
use crate::row_kind::RowKind;
use crate::watermark::WATERMARK_MIN;
use crate::window_operator::AggregateLayout;

#[derive(Debug, Clone, Copy)]
struct PeerClock {
    watermark: i64,
    idle: bool,
}

/// One session of one key, with its accumulators.
#[derive(Debug, Clone)]
pub struct Session {
    pub start: i64,
    pub end: i64,
    /// One slot per aggregate; side values index `strings`.
    pub slots: Box<[Slot]>,
    pub strings: StringStore,
    /// Fired and kept for the allowed lateness (its end has passed).
    fired: bool,
    /// Results emitted and not withdrawn that this session stands for (with lateness only:
    /// its own last emission, and those of fired sessions merged into it), as emitted.
    emitted: Vec<Emitted>,
}

/// A result as it was emitted (for "+U" and "-D").
#[derive(Debug, Clone)]
struct Emitted {
    start: i64,
    end: i64,
    slots: Box<[Slot]>,
    strings: StringStore,
}

impl Session {
    fn new(start: i64, end: i64, stride: usize) -> Self {
        Session {
            start,
            end,
            slots: vec![Slot::EMPTY; stride].into_boxed_slice(),
            strings: StringStore::new(),
            fired: false,
            emitted: Vec::new(),
        }
    }
}

/// A session result to emit, its key and its row kind.
#[derive(Debug, Clone)]
pub struct FiredSession {
    pub key: Box<[u8]>,
    pub hash: u64,
    pub session: Session,
    pub kind: RowKind,
}

/// Sessions of one key.
#[derive(Debug)]
struct KeySessions {
    key: Box<[u8]>,
    hash: u64,
    /// Open, or fired within the lateness; sorted by start.
    open: Vec<Session>,
    /// Bounds of fired sessions past the lateness, kept to recognise late mini-sessions.
    fired: Vec<[i64; 2]>,
}

/// Session state of one shard for the keys it owns.
pub struct SessionStage {
    layout: Arc<AggregateLayout>,
    gap_ms: i64,
    /// Allowed lateness (`'allowed-lateness'`).
    lateness_ms: i64,
    sessions_open_max: usize,
    index: HashMap<Box<[u8]>, u32, ahash::RandomState>,
    keys: Vec<Option<KeySessions>>,
    free: Vec<u32>,
    /// (end, key) of every open session.
    fire_timers: BTreeSet<(i64, u32)>,
    /// (end, key) of every fired session changed since its last emission.
    dirty: BTreeSet<(i64, u32)>,
    /// (end + lateness, key) of every fired session kept: its accumulators are dropped when
    /// the watermark exceeds it.
    keep_timers: BTreeSet<(i64, u32)>,
    /// (end + lateness + gap, key) of every kept fired bound: freed when the watermark
    /// exceeds it.
    expire_timers: BTreeSet<(i64, u32)>,
    sessions_held: usize,
    peers: Vec<PeerClock>,
    /// The global watermark up to which sessions have fired.
    fired_up_to: i64,
    /// The first limit error of a merge (reported by the next watermark).
    failed: Option<String>,
    /// Mini-sessions dropped as late.
    pub late_partial_groups: u64,
    /// Sessions emitted ("+I").
    pub sessions_fired: u64,
    /// Sessions emitted again with late updates ("+U").
    pub sessions_updated: u64,
    /// Emitted sessions withdrawn ("-D").
    pub sessions_withdrawn: u64,
}

impl SessionStage {
    /// The owner stage of a SESSION aggregation (`layout`) on `shards` shards.
    pub fn new(
        shards: usize,
        layout: Arc<AggregateLayout>,
        sessions_open_max: usize,
    ) -> Result<Self> {
        let gap_ms = layout
            .aggregation
            .window
            .and_then(|w| w.kind.session_gap_ms())
            .ok_or_else(|| {
                EngineError::Internal("session stage without a SESSION window".into())
            })?;
        Ok(SessionStage {
            layout,
            gap_ms,
            lateness_ms: 0,
            sessions_open_max,
            index: HashMap::default(),
            keys: Vec::new(),
            free: Vec::new(),
            fire_timers: BTreeSet::new(),
            dirty: BTreeSet::new(),
            keep_timers: BTreeSet::new(),
            expire_timers: BTreeSet::new(),
            sessions_held: 0,
            peers: vec![
                PeerClock {
                    watermark: WATERMARK_MIN,
                    idle: false,
                };
                shards
            ],
            fired_up_to: WATERMARK_MIN,
            failed: None,
            late_partial_groups: 0,
            sessions_fired: 0,
            sessions_updated: 0,
            sessions_withdrawn: 0,
        })
    }

    /// Sets the allowed lateness (before anything is merged).
    pub fn set_allowed_lateness(&mut self, lateness_ms: i64) {
        assert!(lateness_ms >= 0, "the planner refuses a negative lateness");
        self.lateness_ms = lateness_ms;
    }

    pub fn layout(&self) -> &Arc<AggregateLayout> {
        &self.layout
    }

    /// The watermark every (non-idle) shard has passed.
    pub fn global_watermark(&self) -> i64 {
        self.fired_up_to
    }

    /// Open sessions plus kept bounds of fired ones.
    pub fn sessions_held(&self) -> usize {
        self.sessions_held
    }

    /// Open sessions (not fired yet).
    pub fn sessions_open(&self) -> usize {
        self.fire_timers.len()
    }

    /// Merges the mini-sessions of a partial (its `session_bounds` name each group's
    /// bounds). Hitting `sessions_open_max` stops merging; the error is returned by the next
    /// [`SessionStage::on_watermark`] (the exchange applies partials without a result).
    pub fn merge(&mut self, partial: &PartialWindow) {
        if self.failed.is_some() {
            return;
        }
        if let Err(e) = self.try_merge(partial) {
            self.failed = Some(e.to_string());
        }
    }

    /// [`SessionStage::merge`], returning a limit error at once.
    pub fn try_merge(&mut self, partial: &PartialWindow) -> Result<()> {
        if partial.session_bounds.len() != partial.len() {
            return Err(EngineError::Internal(format!(
                "a session partial with {} groups has {} bounds",
                partial.len(),
                partial.session_bounds.len()
            )));
        }
        let stride = self.layout.stride();
        for i in 0..partial.len() {
            if partial.session_fired.get(i).copied().unwrap_or(false) {
                self.insert_fired(partial.key(i), partial.hashes[i], partial.session_bounds[i])?;
                continue;
            }
            let slots = &partial.slots[i * stride..(i + 1) * stride];
            self.insert(
                partial.key(i),
                partial.hashes[i],
                partial.session_bounds[i],
                slots,
                &partial.strings,
            )?;
        }
        Ok(())
    }

    /// After recovery: merges the restored session groups (kept bounds of fired sessions
    /// first, so a restored mini-session that meets one is late, as it was in the old run).
    pub fn restore(&mut self, partials: &[PartialWindow]) -> Result<()> {
        for p in partials {
            for i in 0..p.len() {
                if p.session_fired.get(i).copied().unwrap_or(false) {
                    self.insert_fired(p.key(i), p.hashes[i], p.session_bounds[i])?;
                }
            }
        }
        let stride = self.layout.stride();
        for p in partials {
            if p.session_bounds.len() != p.len() {
                return Err(EngineError::Data(format!(
                    "restored session state with {} groups has {} bounds",
                    p.len(),
                    p.session_bounds.len()
                )));
            }
            for i in 0..p.len() {
                if !p.session_fired.get(i).copied().unwrap_or(false) {
                    let slots = &p.slots[i * stride..(i + 1) * stride];
                    self.insert(
                        p.key(i),
                        p.hashes[i],
                        p.session_bounds[i],
                        slots,
                        &p.strings,
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Exports the state as session groups, in partials of at most `chunk` groups (for
    /// checkpoints): every open session and every kept bound of a fired one.
    pub fn export(&self, chunk: usize, mut emit: impl FnMut(PartialWindow)) {
        let stride = self.layout.stride();
        let empty = vec![Slot::EMPTY; stride];
        let no_strings = StringStore::new();
        let mut p = PartialWindow::default();
        for k in self.keys.iter().flatten() {
            let groups = k
                .open
                .iter()
                .map(|s| ([s.start, s.end], false, &s.slots[..], &s.strings))
                .chain(k.fired.iter().map(|f| (*f, true, &empty[..], &no_strings)));
            for (bounds, fired, slots, strings) in groups {
                p.key_bytes.extend_from_slice(&k.key);
                p.key_ends.push(p.key_bytes.len() as u32);
                p.hashes.push(k.hash);
                p.session_bounds.push(bounds);
                p.session_fired.push(fired);
                for (acc, slot) in self.layout.accumulators.iter().zip(slots) {
                    let mut s = *slot;
                    if acc.uses_strings() && s.b > 0 {
                        p.strings.push(strings[s.a as usize].clone());
                        s.a = (p.strings.len() - 1) as u64;
                    }
                    p.slots.push(s);
                }
                if p.len() >= chunk {
                    emit(std::mem::take(&mut p));
                }
            }
        }
        if !p.is_empty() {
            emit(p);
        }
    }

    /// Keeps the bounds of a session that fired (restored from a checkpoint).
    fn insert_fired(&mut self, key: &[u8], hash: u64, bounds: [i64; 2]) -> Result<()> {
        let until = bounds[1]
            .saturating_add(self.lateness_ms)
            .saturating_add(self.gap_ms);
        if until < self.fired_up_to {
            return Ok(());
        }
        if self.sessions_held >= self.sessions_open_max {
            return Err(self.limit_error());
        }
        let id = self.key_id(key, hash);
        if let Some(entry) = self.keys[id as usize].as_mut() {
            entry.fired.push(bounds);
            self.expire_timers.insert((until, id));
            self.sessions_held += 1;
        }
        Ok(())
    }

    fn limit_error(&self) -> EngineError {
        EngineError::Limit(format!(
            "more than sessions_open_max = {} sessions are held on one shard (open \
             sessions, and fired ones kept one gap of {} ms to recognise late data); are \
             there that many active keys, or is the watermark bound too large?",
            self.sessions_open_max, self.gap_ms
        ))
    }

    /// The entry of `key`, created if needed.
    fn key_id(&mut self, key: &[u8], hash: u64) -> u32 {
        if let Some(&id) = self.index.get(key) {
            return id;
        }
        let entry = KeySessions {
            key: key.into(),
            hash,
            open: Vec::new(),
            fired: Vec::new(),
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.keys[id as usize] = Some(entry);
                id
            }
            None => {
                self.keys.push(Some(entry));
                (self.keys.len() - 1) as u32
            }
        };
        self.index.insert(key.into(), id);
        id
    }

    /// Inserts one mini-session `[start, end)` of `key`, merging it with the sessions it
    /// overlaps or touches.
    pub fn insert(
        &mut self,
        key: &[u8],
        hash: u64,
        [start, end]: [i64; 2],
        slots: &[Slot],
        strings: &StringStore,
    ) -> Result<()> {
        let lateness = self.lateness_ms;
        if end.saturating_add(lateness) < self.fired_up_to {
            // Complete and past the lateness already: its events were not too late for a
            // shard that had not seen the watermark this stage has (e.g. it was idle).
            self.late_partial_groups += 1;
            return Ok(());
        }
        let id = self.key_id(key, hash);
        let layout = self.layout.clone();
        let entry = self.keys[id as usize].as_mut().ok_or_else(|| {
            EngineError::Internal("session key index points at a free entry".into())
        })?;
        if entry.fired.iter().any(|f| start <= f[1] && end >= f[0]) {
            self.late_partial_groups += 1;
            if entry.open.is_empty() && entry.fired.is_empty() {
                self.remove_key(id);
            }
            return Ok(());
        }
        // The sessions it meets are contiguous in start order.
        let first = entry.open.partition_point(|s| s.end < start);
        let last = entry.open[first..].partition_point(|s| s.start <= end) + first;
        let merged_away = last - first;
        if merged_away == 0 && self.sessions_held >= self.sessions_open_max {
            let empty = entry.open.is_empty() && entry.fired.is_empty();
            let err = self.limit_error();
            if empty {
                self.remove_key(id);
            }
            return Err(err);
        }
        let mut session = Session::new(start, end, slots.len());
        merge_slots(
            &layout,
            &mut session.slots,
            &mut session.strings,
            slots,
            strings,
        );
        for old in entry.open.drain(first..last) {
            if old.fired {
                self.keep_timers
                    .remove(&(old.end.saturating_add(lateness), id));
                self.dirty.remove(&(old.end, id));
            } else {
                self.fire_timers.remove(&(old.end, id));
            }
            session.start = session.start.min(old.start);
            session.end = session.end.max(old.end);
            merge_slots(
                &layout,
                &mut session.slots,
                &mut session.strings,
                &old.slots,
                &old.strings,
            );
            session.emitted.extend(old.emitted);
        }
        self.sessions_held = self.sessions_held + 1 - merged_away;
        if !session.emitted.is_empty() && session.end < self.fired_up_to {
            // A late update of emitted results: emitted again at the next watermark.
            session.fired = true;
            self.dirty.insert((session.end, id));
            self.keep_timers
                .insert((session.end.saturating_add(lateness), id));
        } else {
            self.fire_timers.insert((session.end, id));
        }
        entry.open.insert(first, session);
        Ok(())
    }

    /// Records a shard's watermark; appends the sessions it completes (by end) to `out`.
    pub fn on_watermark(
        &mut self,
        from: usize,
        watermark: i64,
        idle: bool,
        out: &mut Vec<FiredSession>,
    ) -> Result<()> {
        if let Some(e) = self.failed.take() {
            return Err(EngineError::Limit(e));
        }
        let p = &mut self.peers[from];
        assert!(
            watermark >= p.watermark,
            "watermark of shard {from} moved back from {} to {watermark}",
            p.watermark
        );
        *p = PeerClock { watermark, idle };
        let mut min = i64::MAX;
        let mut any_active = false;
        for p in &self.peers {
            if !p.idle {
                any_active = true;
                min = min.min(p.watermark);
            }
        }
        if any_active && min > self.fired_up_to {
            self.fired_up_to = min;
        }
        self.fire(self.fired_up_to, out);
        Ok(())
    }

    /// Fires every open session whose end is before `watermark`, emits the late updates,
    /// drops the accumulators of fired sessions past the lateness, and frees the kept bounds
    /// no mini-session that is not too late can reach any more. Outputs "-D" rows first.
    fn fire(&mut self, watermark: i64, out: &mut Vec<FiredSession>) {
        let lateness = self.lateness_ms;
        let first_out = out.len();
        while let Some(&(end, id)) = self.fire_timers.first() {
            if end >= watermark {
                break;
            }
            self.fire_timers.pop_first();
            if lateness == 0 {
                self.fire_final(id, end, out);
            } else {
                self.emit(id, end, out);
                self.keep_timers.insert((end.saturating_add(lateness), id));
            }
        }
        while let Some((end, id)) = self.dirty.pop_first() {
            self.emit(id, end, out);
        }
        while let Some(&(until, id)) = self.keep_timers.first() {
            if until >= watermark {
                break;
            }
            self.keep_timers.pop_first();
            let Some(entry) = self.keys[id as usize].as_mut() else {
                panic!("a keep timer points at a free key entry");
            };
            let at = entry
                .open
                .iter()
                .position(|s| s.fired && s.end.saturating_add(lateness) == until)
                .expect("every keep timer has its fired session");
            let session = entry.open.remove(at);
            entry.fired.push([session.start, session.end]);
            self.expire_timers
                .insert((until.saturating_add(self.gap_ms), id));
        }
        while let Some(&(until, id)) = self.expire_timers.first() {
            if until >= watermark {
                break;
            }
            self.expire_timers.pop_first();
            let gap_and_lateness = self.gap_ms.saturating_add(lateness);
            let Some(entry) = self.keys[id as usize].as_mut() else {
                panic!("an expiry timer points at a free key entry");
            };
            let at = entry
                .fired
                .iter()
                .position(|f| f[1].saturating_add(gap_and_lateness) == until)
                .expect("every expiry timer has its fired bounds");
            entry.fired.swap_remove(at);
            self.sessions_held -= 1;
            if entry.open.is_empty() && entry.fired.is_empty() {
                self.remove_key(id);
            }
        }
        // Withdrawals before the results that replace them; one run per kind.
        out[first_out..].sort_by_key(|f| match f.kind {
            RowKind::Delete | RowKind::UpdateBefore => 0,
            RowKind::UpdateAfter => 1,
            RowKind::Insert => 2,
        });
    }

    /// Emits the session of key `id` ending at `end` (complete): "-D" for every emitted
    /// result it replaces, then itself as "+U" (same bounds as an emitted result) or "+I".
    fn emit(&mut self, id: u32, end: i64, out: &mut Vec<FiredSession>) {
        let keep_copy = self.lateness_ms > 0;
        let Some(entry) = self.keys[id as usize].as_mut() else {
            panic!("a session timer points at a free key entry");
        };
        let session = entry
            .open
            .iter_mut()
            .find(|s| s.end == end)
            .expect("every timer has its session");
        let mut kind = RowKind::Insert;
        for e in session.emitted.drain(..) {
            if (e.start, e.end) == (session.start, session.end) {
                kind = RowKind::UpdateAfter;
                continue;
            }
            self.sessions_withdrawn += 1;
            out.push(FiredSession {
                key: entry.key.clone(),
                hash: entry.hash,
                session: Session {
                    start: e.start,
                    end: e.end,
                    slots: e.slots,
                    strings: e.strings,
                    fired: true,
                    emitted: Vec::new(),
                },
                kind: RowKind::Delete,
            });
        }
        session.fired = true;
        if keep_copy {
            session.emitted.push(Emitted {
                start: session.start,
                end: session.end,
                slots: session.slots.clone(),
                strings: session.strings.clone(),
            });
        }
        match kind {
            RowKind::UpdateAfter => self.sessions_updated += 1,
            _ => self.sessions_fired += 1,
        }
        out.push(FiredSession {
            key: entry.key.clone(),
            hash: entry.hash,
            session: Session {
                emitted: Vec::new(),
                ..session.clone()
            },
            kind,
        });
    }

    /// Without lateness: moves the session of key `id` ending at `end` out as "+I", keeping
    /// its bounds one gap (no copy of its accumulators).
    fn fire_final(&mut self, id: u32, end: i64, out: &mut Vec<FiredSession>) {
        let Some(entry) = self.keys[id as usize].as_mut() else {
            panic!("a session timer points at a free key entry");
        };
        let at = entry
            .open
            .iter()
            .position(|s| s.end == end)
            .expect("every timer has its session");
        let session = entry.open.remove(at);
        debug_assert!(
            session.emitted.is_empty(),
            "nothing is re-emitted without lateness"
        );
        entry.fired.push([session.start, session.end]);
        self.expire_timers
            .insert((end.saturating_add(self.gap_ms), id));
        self.sessions_fired += 1;
        out.push(FiredSession {
            key: entry.key.clone(),
            hash: entry.hash,
            session,
            kind: RowKind::Insert,
        });
    }

    fn remove_key(&mut self, id: u32) {
        if let Some(entry) = self.keys[id as usize].take() {
            self.index.remove(&entry.key);
            self.free.push(id);
        }
    }
}

/// Merges one group's slots (with their side values in `strings`) into `into` (side values
/// in `into_strings`).
fn merge_slots(
    layout: &AggregateLayout,
    into: &mut [Slot],
    into_strings: &mut StringStore,
    slots: &[Slot],
    strings: &StringStore,
) {
    for (a, (acc, from)) in layout.accumulators.iter().zip(slots).enumerate() {
        let side = (acc.uses_strings() && from.b > 0).then(|| &strings[from.a as usize]);
        acc.merge(&mut into[a], *from, side, into_strings);
    }
}

#[cfg(test)]
#[path = "session_stage_tests.rs"]
mod tests;
