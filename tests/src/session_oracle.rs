//! SESSION windows computed in batch, in plain Rust (none of the engine's code): each key's
//! events sorted by event time and split where two successive events are more than the gap
//! apart (windows `[ts, ts + gap)` that overlap or touch merge, as in Flink); a session runs
//! from its first event to its last event + gap.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::oracle::{format_time, Event};

/// The gap of Nexmark q11, ms.
pub const Q11_GAP_MS: i64 = 10_000;

/// One session: its key, bounds and events (sorted by event time).
#[derive(Debug, Clone)]
pub struct OracleSession<'e, K> {
    pub key: K,
    pub start: i64,
    pub end: i64,
    pub events: Vec<&'e Event>,
}

/// The sessions of `events` per key (`key_of`; one key for keyless sessions) for `gap_ms`,
/// by key, then start.
pub fn sessions<'e, K: Ord + Clone>(
    events: &'e [Event],
    key_of: impl Fn(&Event) -> K,
    gap_ms: i64,
) -> Vec<OracleSession<'e, K>> {
    let mut by_key: BTreeMap<K, Vec<&'e Event>> = BTreeMap::new();
    for e in events {
        by_key.entry(key_of(e)).or_default().push(e);
    }
    let mut out = Vec::new();
    for (key, mut evs) in by_key {
        evs.sort_by_key(|e| e.ts_ms);
        let mut current: Option<OracleSession<'e, K>> = None;
        for e in evs {
            match &mut current {
                Some(s) if e.ts_ms <= s.end => {
                    s.end = s.end.max(e.ts_ms + gap_ms);
                    s.events.push(e);
                }
                _ => {
                    if let Some(done) = current.take() {
                        out.push(done);
                    }
                    current = Some(OracleSession {
                        key: key.clone(),
                        start: e.ts_ms,
                        end: e.ts_ms + gap_ms,
                        events: vec![e],
                    });
                }
            }
        }
        out.extend(current);
    }
    out
}

/// The rows of Nexmark q11 (`examples/nexmark/q11.sql`) over `bids`: bidder, bid_count,
/// starttime, endtime.
pub fn q11_rows(bids: &[Event]) -> Vec<Value> {
    let bidder = |e: &Event| match e.i64("bidder") {
        Some(b) => b,
        None => panic!("session oracle: a bid without bidder: {:?}", e.fields),
    };
    sessions(bids, bidder, Q11_GAP_MS)
        .into_iter()
        .map(|s| {
            json!({
                "bidder": s.key,
                "bid_count": s.events.len(),
                "starttime": format_time(s.start),
                "endtime": format_time(s.end),
            })
        })
        .collect()
}

/// The key fields of q11's rows (a bidder has one session per start).
pub const Q11_KEY_FIELDS: &[&str] = &["bidder", "starttime"];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn ev(k: &str, ts: i64) -> Event {
        let mut fields = Map::new();
        fields.insert("k".into(), json!(k));
        Event { fields, ts_ms: ts }
    }

    #[test]
    fn events_split_where_the_gap_is_exceeded_and_touching_windows_merge() {
        let events = vec![ev("a", 10_000), ev("a", 0), ev("b", 5), ev("a", 20_001)];
        let got: Vec<(String, i64, i64, usize)> =
            sessions(&events, |e| e.str("k").unwrap_or("").to_string(), 10_000)
                .into_iter()
                .map(|s| (s.key, s.start, s.end, s.events.len()))
                .collect();
        assert_eq!(
            got,
            vec![
                ("a".to_string(), 0, 20_000, 2),
                ("a".to_string(), 20_001, 30_001, 1),
                ("b".to_string(), 5, 10_005, 1),
            ]
        );
    }
}
