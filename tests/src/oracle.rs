//! An independent batch implementation of the test queries: the "oracle" that the engine's
//! streaming output is compared with, row for row.
//!
//! Nothing here uses the engine's code: input JSON lines are parsed with serde_json, event
//! times with chrono, windows (tumbling, hopping, cumulating) are assigned naively by integer
//! arithmetic, every event to every window holding it, and each test
//! query's WHERE, GROUP BY keys, aggregates, HAVING and projection are plain Rust closures
//! written next to the SQL they mirror.
//!
//! Lateness: with a disorder no larger than the watermark bound nothing is ever late, so
//! [`OracleQuery::run`] ignores it. For exact late-event tests the engine must see one event
//! per poll from one partition (`batch_rows_max = 1`); [`OracleQuery::run_with_lateness`] then
//! simulates its watermark event by event: an event is late when the end of the last window
//! holding it (for TUMBLE: its one window) is at or before the watermark *before* it; an event
//! on time updates only its windows ending after that watermark (the others were emitted);
//! and every decoded event (even one the WHERE drops) advances the watermark to
//! `max(ts) - bound` afterwards.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde_json::{Map, Value};

/// One input event: its JSON object and its event time.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub fields: Map<String, Value>,
    /// Event time, milliseconds since the epoch (UTC).
    pub ts_ms: i64,
}

impl Event {
    /// The string field `name`, if present and a string.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }

    /// The numeric field `name` as a float, if present and a number.
    pub fn f64(&self, name: &str) -> Option<f64> {
        self.fields.get(name).and_then(Value::as_f64)
    }

    /// The integer field `name`, if present and an integer.
    pub fn i64(&self, name: &str) -> Option<i64> {
        self.fields.get(name).and_then(Value::as_i64)
    }
}

/// Parses an event time: epoch milliseconds (a JSON integer) or a string in one of the forms
/// `yyyy-MM-dd HH:mm:ss[.f]`, `yyyy-MM-ddTHH:mm:ss[.f]Z`, RFC 3339 with an offset, or a
/// date alone (midnight UTC). Fractions finer than milliseconds are truncated.
pub fn parse_time(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => parse_time_str(s),
        _ => None,
    }
}

fn parse_time_str(s: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(truncate_to_ms(t.timestamp(), t.timestamp_subsec_nanos()));
    }
    for form in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        let text = s.strip_suffix('Z').unwrap_or(s);
        if let Ok(t) = NaiveDateTime::parse_from_str(text, form) {
            let t = t.and_utc();
            return Some(truncate_to_ms(t.timestamp(), t.timestamp_subsec_nanos()));
        }
    }
    let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp() * 1000)
}

fn truncate_to_ms(seconds: i64, nanos: u32) -> i64 {
    seconds * 1000 + i64::from(nanos / 1_000_000)
}

/// Formats epoch milliseconds as the sinks do: `yyyy-MM-dd HH:mm:ss.SSS`, UTC.
pub fn format_time(ms: i64) -> String {
    match DateTime::from_timestamp_millis(ms) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        None => panic!("oracle: {ms} ms is outside chrono's range"),
    }
}

/// Formats epoch milliseconds as ISO-8601 with a `Z`: `yyyy-MM-ddTHH:mm:ss.SSSZ`.
pub fn format_time_iso(ms: i64) -> String {
    match DateTime::from_timestamp_millis(ms) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => panic!("oracle: {ms} ms is outside chrono's range"),
    }
}

/// Parses JSON lines into events (blank lines are ignored). Every line must be a JSON
/// object with a valid event time in `time_field`: the oracle is only given good records.
pub fn parse_events(text: &str, time_field: &str) -> Result<Vec<Event>, String> {
    let mut events = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        events.push(parse_event(line, time_field).map_err(|e| format!("line {}: {e}", n + 1))?);
    }
    Ok(events)
}

/// Parses one JSON line into an event.
pub fn parse_event(line: &str, time_field: &str) -> Result<Event, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e}): {line}"))?;
    let Value::Object(fields) = value else {
        return Err(format!("not a JSON object: {line}"));
    };
    let ts_ms = fields
        .get(time_field)
        .and_then(parse_time)
        .ok_or_else(|| format!("no valid event time in '{time_field}': {line}"))?;
    Ok(Event { fields, ts_ms })
}

/// The tumbling window `[start, end)` of size `size_ms`, shifted by `offset_ms`, holding `ts`.
pub fn tumble_window(ts: i64, size_ms: i64, offset_ms: i64) -> (i64, i64) {
    assert!(size_ms > 0, "oracle: window size must be positive");
    let start = offset_ms + (ts - offset_ms).div_euclid(size_ms) * size_ms;
    (start, start + size_ms)
}

#[path = "oracle_windows.rs"]
mod windows;
use windows::Windows;
pub use windows::{cumulate_windows, hop_windows};

/// A group key value (ordered, so groups come out in a fixed order).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
}

impl Key {
    /// The key as the sink writes it.
    pub fn to_json(&self) -> Value {
        match self {
            Key::Null => Value::Null,
            Key::Bool(b) => Value::Bool(*b),
            Key::Int(i) => Value::from(*i),
            Key::Str(s) => Value::from(s.as_str()),
        }
    }
}

use crate::oracle_aggregate::AccState;
pub use crate::oracle_aggregate::{Agg, Num, Scalar};

/// One finished group: what HAVING and the projection of a test query look at.
#[derive(Debug)]
pub struct Group<'g> {
    pub keys: &'g [Key],
    pub window_start: i64,
    pub window_end: i64,
    /// The aggregates' results, in the order they were added (JSON null for SQL NULL).
    pub aggs: &'g [Value],
}

impl Group<'_> {
    /// Group key `i` as the sink writes it.
    pub fn key(&self, i: usize) -> Value {
        self.keys[i].to_json()
    }
    /// Aggregate `i` as a float (panics on NULL: the test's data has none there).
    pub fn agg_f64(&self, i: usize) -> f64 {
        match self.aggs[i].as_f64() {
            Some(v) => v,
            None => panic!("oracle: aggregate {i} is {} in {self:?}", self.aggs[i]),
        }
    }
    /// Aggregate `i` as an integer (panics on NULL or a float).
    pub fn agg_i64(&self, i: usize) -> i64 {
        match self.aggs[i].as_i64() {
            Some(v) => v,
            None => panic!("oracle: aggregate {i} is {} in {self:?}", self.aggs[i]),
        }
    }
    /// `window_start` as the sink writes it.
    pub fn start(&self) -> Value {
        Value::from(format_time(self.window_start))
    }
    /// `window_end` as the sink writes it.
    pub fn end(&self) -> Value {
        Value::from(format_time(self.window_end))
    }
}

type FilterFn<'a> = Box<dyn Fn(&Event) -> bool + 'a>;
type KeysFn<'a> = Box<dyn Fn(&Event) -> Vec<Key> + 'a>;
type OutputFn<'a> = Box<dyn Fn(&Group) -> Option<Value> + 'a>;

/// A windowed aggregate query, written as closures.
pub struct OracleQuery<'a> {
    windows: Windows,
    offset_ms: i64,
    filter: FilterFn<'a>,
    keys: KeysFn<'a>,
    aggs: Vec<Agg<'a>>,
    output: OutputFn<'a>,
}

/// What the oracle computed.
#[derive(Debug, Clone, PartialEq)]
pub struct OracleOutput {
    /// The result rows, ordered by window, then keys.
    pub rows: Vec<Value>,
    /// Events dropped as late (only [`OracleQuery::run_with_lateness`] counts any).
    pub late_events: u64,
    /// Events that passed the filter and were aggregated.
    pub events_aggregated: u64,
}

impl<'a> OracleQuery<'a> {
    /// A query over tumbling windows of `size_ms`; no filter, no keys, no aggregates yet, and
    /// an output of `{window_start, window_end}` until [`Self::output`] is given.
    pub fn tumble(size_ms: i64) -> Self {
        Self::with_windows(Windows::Tumble { size_ms })
    }

    /// Like [`Self::tumble`], over hopping windows of `size_ms` every `slide_ms` (SQL
    /// `HOP(..., slide, size)`).
    pub fn hop(size_ms: i64, slide_ms: i64) -> Self {
        Self::with_windows(Windows::Hop { size_ms, slide_ms })
    }

    /// Like [`Self::tumble`], over cumulating windows growing by `step_ms` up to `max_ms`
    /// (SQL `CUMULATE(..., step, max_size)`).
    pub fn cumulate(step_ms: i64, max_ms: i64) -> Self {
        Self::with_windows(Windows::Cumulate { step_ms, max_ms })
    }

    fn with_windows(windows: Windows) -> Self {
        OracleQuery {
            windows,
            offset_ms: 0,
            filter: Box::new(|_| true),
            keys: Box::new(|_| Vec::new()),
            aggs: Vec::new(),
            output: Box::new(|g| {
                Some(serde_json::json!({"window_start": g.start(), "window_end": g.end()}))
            }),
        }
    }

    /// The window offset (the last argument of the window table function).
    pub fn offset(mut self, offset_ms: i64) -> Self {
        self.offset_ms = offset_ms;
        self
    }

    /// WHERE.
    pub fn filter(mut self, f: impl Fn(&Event) -> bool + 'a) -> Self {
        self.filter = Box::new(f);
        self
    }

    /// The GROUP BY keys besides the window.
    pub fn keys(mut self, f: impl Fn(&Event) -> Vec<Key> + 'a) -> Self {
        self.keys = Box::new(f);
        self
    }

    /// Adds an aggregate; [`Group::aggs`] holds the results in the order added.
    pub fn agg(mut self, agg: Agg<'a>) -> Self {
        self.aggs.push(agg);
        self
    }

    /// HAVING and the projection: the output row of a group, or None to drop it.
    pub fn output(mut self, f: impl Fn(&Group) -> Option<Value> + 'a) -> Self {
        self.output = Box::new(f);
        self
    }

    /// Runs the query over all events; nothing is late.
    pub fn run(&self, events: &[Event]) -> OracleOutput {
        self.evaluate(events, None)
    }

    /// Runs the query as the engine sees `events` one per poll from one partition, with a
    /// watermark bound of `bound_ms`: late events are counted and dropped.
    pub fn run_with_lateness(&self, events: &[Event], bound_ms: i64) -> OracleOutput {
        self.evaluate(events, Some(bound_ms))
    }

    fn evaluate(&self, events: &[Event], bound_ms: Option<i64>) -> OracleOutput {
        let mut groups: BTreeMap<(i64, i64, Vec<Key>), Vec<AccState>> = BTreeMap::new();
        let mut watermark = i64::MIN;
        let mut late_events = 0;
        let mut events_aggregated = 0;
        for e in events {
            let windows = self.windows.holding(e.ts_ms, self.offset_ms);
            let last_end = windows.iter().map(|w| w.1).max().unwrap_or(i64::MIN);
            if (self.filter)(e) {
                if bound_ms.is_some() && last_end <= watermark {
                    late_events += 1;
                } else {
                    events_aggregated += 1;
                    let keys = (self.keys)(e);
                    // windows already emitted (end at or before the watermark) keep their result
                    for &(start, end) in windows.iter().filter(|w| w.1 > watermark) {
                        let state = groups
                            .entry((start, end, keys.clone()))
                            .or_insert_with(|| vec![AccState::EMPTY; self.aggs.len()]);
                        for (acc, agg) in state.iter_mut().zip(&self.aggs) {
                            acc.add_event(agg, e);
                        }
                    }
                }
            }
            if let Some(bound) = bound_ms {
                watermark = watermark.max(e.ts_ms.saturating_sub(bound));
            }
        }
        let rows = groups
            .iter()
            .filter_map(|((start, end, keys), state)| {
                let aggs: Vec<Value> = state
                    .iter()
                    .zip(&self.aggs)
                    .map(|(acc, agg)| acc.finish(agg.kind))
                    .collect();
                (self.output)(&Group {
                    keys,
                    window_start: *start,
                    window_end: *end,
                    aggs: &aggs,
                })
            })
            .collect();
        OracleOutput {
            rows,
            late_events,
            events_aggregated,
        }
    }
}

/// A dimension table as the oracle sees it: every change of every key, in changelog order,
/// with the time it takes effect (for a lookup join the time is ignored: the last change
/// wins).
#[derive(Debug, Clone, Default)]
pub struct DimensionOracle {
    changes: BTreeMap<String, Vec<DimensionChange>>,
}

/// One change of a key: the time it takes effect and the row (None: a delete).
type DimensionChange = (i64, Option<Map<String, Value>>);

impl DimensionOracle {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// `key` becomes `row` from `valid_from_ms` on.
    pub fn upsert(&mut self, key: &str, row: Map<String, Value>, valid_from_ms: i64) {
        self.changes
            .entry(key.to_string())
            .or_default()
            .push((valid_from_ms, Some(row)));
    }

    /// `key` is deleted from `at_ms` on.
    pub fn delete(&mut self, key: &str, at_ms: i64) {
        self.changes
            .entry(key.to_string())
            .or_default()
            .push((at_ms, None));
    }

    /// The row of `key` after every change (lookup join).
    pub fn latest(&self, key: &str) -> Option<&Map<String, Value>> {
        self.changes.get(key)?.last()?.1.as_ref()
    }

    /// The row of `key` valid at `ts_ms` (temporal join): the change with the largest time at
    /// or before `ts_ms`, the later one in changelog order among equal times.
    pub fn as_of(&self, key: &str, ts_ms: i64) -> Option<&Map<String, Value>> {
        let mut best: Option<&DimensionChange> = None;
        for change in self.changes.get(key)? {
            if change.0 <= ts_ms && best.is_none_or(|b| change.0 >= b.0) {
                best = Some(change);
            }
        }
        best?.1.as_ref()
    }
}

/// The events joined with a dimension table: each event gets the fields of the row
/// `row_of` finds, renamed `prefix.field` (e.g. `s.name`). LEFT JOIN (`inner` false): an
/// event without a row keeps only its own fields, which group keys read as NULL; inner join:
/// it is dropped.
pub fn join_events<'d>(
    events: &[Event],
    inner: bool,
    prefix: &str,
    row_of: impl Fn(&Event) -> Option<&'d Map<String, Value>>,
) -> Vec<Event> {
    events
        .iter()
        .filter_map(|e| match row_of(e) {
            Some(row) => {
                let mut joined = e.clone();
                for (k, v) in row {
                    joined.fields.insert(format!("{prefix}.{k}"), v.clone());
                }
                Some(joined)
            }
            None if inner => None,
            None => Some(e.clone()),
        })
        .collect()
}

/// The argument helpers most test queries need.
pub mod args {
    use super::{Event, Key, Num};

    /// A float field as an aggregate argument.
    pub fn float(name: &'static str) -> impl Fn(&Event) -> Option<Num> {
        move |e| e.f64(name).map(Num::Float)
    }
    /// An integer field as an aggregate argument.
    pub fn int(name: &'static str) -> impl Fn(&Event) -> Option<Num> {
        move |e| e.i64(name).map(Num::Int)
    }
    /// A string field as a group key (NULL when absent).
    pub fn str_key(e: &Event, name: &str) -> Key {
        e.str(name).map_or(Key::Null, |s| Key::Str(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn events(lines: &[Value]) -> Vec<Event> {
        let text: Vec<String> = lines.iter().map(Value::to_string).collect();
        parse_events(&text.join("\n"), "ts").expect("good events")
    }

    #[test]
    fn dimension_oracle_latest_and_as_of() {
        let row = |n: &str| match json!({ "name": n }) {
            Value::Object(m) => m,
            _ => unreachable!("an object"),
        };
        let mut d = DimensionOracle::new();
        d.upsert("a", row("a1"), 100);
        d.upsert("a", row("a2"), 200);
        d.delete("a", 300);
        d.upsert("b", row("b1"), 0);
        assert!(d.latest("a").is_none());
        assert_eq!(d.latest("b"), Some(&row("b1")));
        assert!(d.as_of("a", 99).is_none());
        assert_eq!(d.as_of("a", 250), Some(&row("a2")));
        assert!(d.as_of("a", 300).is_none());
        let evs = events(&[json!({"k": "a", "ts": 150}), json!({"k": "c", "ts": 150})]);
        let left = join_events(&evs, false, "s", |e| d.as_of(e.str("k")?, e.ts_ms));
        assert_eq!(left.len(), 2);
        assert_eq!(left[0].str("s.name"), Some("a1"));
        assert_eq!(left[1].str("s.name"), None);
        let inner = join_events(&evs, true, "s", |e| d.as_of(e.str("k")?, e.ts_ms));
        assert_eq!(inner.len(), 1);
    }

    #[test]
    fn times_parse_in_every_accepted_form() {
        let ms = 1_700_000_000_123;
        assert_eq!(parse_time(&json!(ms)), Some(ms));
        assert_eq!(format_time(ms), "2023-11-14 22:13:20.123");
        assert_eq!(parse_time(&json!("2023-11-14 22:13:20.123")), Some(ms));
        assert_eq!(parse_time(&json!(format_time_iso(ms))), Some(ms));
        assert_eq!(
            parse_time(&json!("2023-11-14T23:13:20.123456+01:00")),
            Some(ms)
        );
        assert_eq!(parse_time(&json!("2023-11-14 22:13:20")), Some(ms - 123));
        assert_eq!(parse_time(&json!("2023-11-14")), Some(ms - 80_000_123));
        assert_eq!(parse_time(&json!("yesterday")), None);
        assert_eq!(parse_time(&json!(1.5)), None);
    }

    #[test]
    fn windows_hold_their_events_also_before_the_epoch() {
        assert_eq!(tumble_window(1_999, 1_000, 0), (1_000, 2_000));
        assert_eq!(tumble_window(2_000, 1_000, 0), (2_000, 3_000));
        assert_eq!(tumble_window(-1, 1_000, 0), (-1_000, 0));
        assert_eq!(tumble_window(1_250, 1_000, 500), (500, 1_500));
    }

    #[test]
    fn aggregates_filter_and_having() {
        let evs = events(&[
            json!({"s": "a", "p": 2.0, "v": 3, "ts": 100}),
            json!({"s": "a", "p": 4.0, "v": 5, "ts": 900}),
            json!({"s": "b", "p": 1.0, "v": 7, "ts": 950}),
            json!({"s": "a", "p": 9.0, "v": 1, "ts": 1_100}),
            json!({"s": "b", "p": 8.0, "v": 100, "ts": 1_200}),
        ]);
        let out = OracleQuery::tumble(1_000)
            .filter(|e| e.i64("v") != Some(100))
            .keys(|e| vec![args::str_key(e, "s")])
            .agg(Agg::count_star())
            .agg(Agg::sum_int(|e| e.i64("v")))
            .agg(Agg::avg(|e| e.f64("p")))
            .agg(Agg::min(args::float("p")))
            .agg(Agg::max(args::int("v")))
            .output(|g| {
                (g.agg_i64(0) >= 1).then(|| {
                    json!([
                        g.key(0),
                        g.window_start,
                        g.aggs[0],
                        g.aggs[1],
                        g.aggs[2],
                        g.aggs[3],
                        g.aggs[4]
                    ])
                })
            })
            .run(&evs);
        assert_eq!(
            out.rows,
            vec![
                json!(["a", 0, 2, 8, 3.0, 2.0, 5]),
                json!(["b", 0, 1, 7, 1.0, 1.0, 7]),
                json!(["a", 1_000, 1, 1, 9.0, 9.0, 1]),
            ]
        );
        assert_eq!(out.late_events, 0);
        assert_eq!(out.events_aggregated, 4);
    }

    #[test]
    fn lateness_follows_the_watermark_before_each_event() {
        // bound 100: after ts 2_150 the watermark is 2_050, so window [1_000, 2_000) is closed
        let evs = events(&[
            json!({"ts": 1_500}),
            json!({"ts": 2_150}),
            json!({"ts": 1_990}),
            json!({"ts": 2_010}),
        ]);
        let q = OracleQuery::tumble(1_000)
            .agg(Agg::count_star())
            .output(|g| Some(json!([g.window_start, g.aggs[0]])));
        let out = q.run_with_lateness(&evs, 100);
        assert_eq!(out.late_events, 1);
        assert_eq!(out.rows, vec![json!([1_000, 1]), json!([2_000, 2])]);
        // with a larger bound the same event is on time
        let out = q.run_with_lateness(&evs, 200);
        assert_eq!(out.late_events, 0);
        assert_eq!(out.rows, vec![json!([1_000, 2]), json!([2_000, 2])]);
    }

    #[test]
    fn a_late_hop_event_only_reaches_windows_not_emitted() {
        // 3 s windows every 1 s, bound 0: after ts 2_500 the watermark is 2_500, so the
        // windows ending at 1 s and 2 s are emitted; the second event at 500 still counts in
        // [0, 3 s) (with 500 and 2_500), and one at -600 (last window [-1 s, 2 s)) is late.
        let evs = events(&[
            json!({"ts": 500}),
            json!({"ts": 2_500}),
            json!({"ts": 500}),
            json!({"ts": -600}),
        ]);
        let out = OracleQuery::hop(3_000, 1_000)
            .agg(Agg::count_star())
            .output(|g| Some(json!([g.window_start, g.window_end, g.aggs[0]])))
            .run_with_lateness(&evs, 0);
        assert_eq!(out.late_events, 1);
        assert_eq!(
            out.rows,
            vec![
                json!([-2_000, 1_000, 1]),
                json!([-1_000, 2_000, 1]),
                json!([0, 3_000, 3]),
                json!([1_000, 4_000, 1]),
                json!([2_000, 5_000, 1]),
            ]
        );
    }

    #[test]
    fn bad_lines_are_refused() {
        assert!(parse_events("{\"ts\": 1}\nnot json", "ts").is_err());
        assert!(parse_events("[1, 2]", "ts").is_err());
        assert!(parse_events("{\"x\": 1}", "ts").is_err());
        assert_eq!(
            parse_events("{\"ts\": 1}\n\n", "ts").map(|e| e.len()),
            Ok(1)
        );
    }
}
