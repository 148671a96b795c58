//! The sink of `spillway-bench latency`: timestamps each result row's arrival (ns after the
//! run's start). For a windowed query it keeps (symbol, window, COUNT, arrival) per row for
//! matching after the run; for the filter query it checks each row against the event it
//! came from (its sequence number is the `price`) and records produce-to-output latency at
//! once, so nothing grows with the row count but a bitmap of the rows seen.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit, TimestampMillisecondType};
use arrow::record_batch::RecordBatch;
use hdrhistogram::Histogram;
use spillway_connectors::{ConnectorError, Sink, SinkFactory};

use crate::latency_load::{symbol_index, EventSchedule};
use crate::latency_stats::{latency_histogram, Timeline};

/// Largest number of windowed result rows one run keeps.
pub const WINDOW_ARRIVALS_MAX: usize = 10_000_000;

/// What the sink expects.
#[derive(Debug, Clone)]
pub enum LatencySinkMode {
    /// Rows `symbol, window_start, window_end, trades (COUNT(*))`.
    Windows,
    /// Rows `symbol, price (= sequence), volume, ts` of events with `volume > volume_min`;
    /// the schedule is set before the first event is sent.
    Rows {
        schedule: Arc<OnceLock<EventSchedule>>,
        volume_min: i64,
    },
}

/// One windowed result row and when it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowArrival {
    pub symbol: String,
    pub window_start: i64,
    pub window_end: i64,
    pub count: i64,
    /// ns after the run's start.
    pub arrival_ns: u64,
}

/// What the filter query's sinks saw.
#[derive(Debug, Clone)]
pub struct RowArrivals {
    /// Produce (intended send time) to sink, µs.
    pub latency_us: Histogram<u64>,
    pub timeline: Timeline,
    /// Bit `seq` set: the row of event `seq` arrived.
    pub seen: Vec<u64>,
    pub rows: u64,
}

impl RowArrivals {
    fn new() -> Self {
        RowArrivals {
            latency_us: latency_histogram(),
            timeline: Timeline::default(),
            seen: Vec::new(),
            rows: 0,
        }
    }

    /// Marks `seq` seen; false if it was seen before.
    fn mark(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        let fresh = self.seen[word] & (1 << bit) == 0;
        self.seen[word] |= 1 << bit;
        fresh
    }

    fn merge(&mut self, other: &mut RowArrivals) -> Result<(), String> {
        if self.seen.len() < other.seen.len() {
            self.seen.resize(other.seen.len(), 0);
        }
        for (i, (a, b)) in self.seen.iter_mut().zip(&other.seen).enumerate() {
            if *a & *b != 0 {
                let seq = i as u64 * 64 + u64::from((*a & *b).trailing_zeros());
                return Err(format!("the row of event {seq} arrived more than once"));
            }
            *a |= *b;
        }
        self.rows += other.rows;
        let _ = self.latency_us.add(&other.latency_us);
        self.timeline.merge(&other.timeline);
        Ok(())
    }
}

#[derive(Debug)]
struct Collected {
    windows: Vec<WindowArrival>,
    rows: RowArrivals,
    error: Option<String>,
}

/// Builds one [`LatencySink`] per shard; all report to this factory.
#[derive(Debug, Clone)]
pub struct LatencySinkFactory {
    start: Instant,
    mode: LatencySinkMode,
    collected: Arc<Mutex<Collected>>,
    rows_received: Arc<AtomicU64>,
    sinks_opened: Arc<AtomicUsize>,
}

impl LatencySinkFactory {
    /// Sinks timestamp arrivals relative to `start`.
    pub fn new(start: Instant, mode: LatencySinkMode) -> Self {
        LatencySinkFactory {
            start,
            mode,
            collected: Arc::new(Mutex::new(Collected {
                windows: Vec::new(),
                rows: RowArrivals::new(),
                error: None,
            })),
            rows_received: Arc::new(AtomicU64::new(0)),
            sinks_opened: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Result rows received so far by all sinks (live).
    pub fn rows_received(&self) -> u64 {
        self.rows_received.load(Ordering::Relaxed)
    }

    /// Sinks opened so far (one per shard once the job runs).
    pub fn sinks_opened(&self) -> usize {
        self.sinks_opened.load(Ordering::Relaxed)
    }

    /// After the job: the windowed rows of every sink, or the first error a sink met.
    pub fn take_windows(&self) -> Result<Vec<WindowArrival>, String> {
        let mut c = self
            .collected
            .lock()
            .map_err(|_| "a latency sink panicked")?;
        if let Some(e) = c.error.take() {
            return Err(e);
        }
        Ok(std::mem::take(&mut c.windows))
    }

    /// After the job: the filter query's rows, or the first error a sink met.
    pub fn take_rows(&self) -> Result<RowArrivals, String> {
        let mut c = self
            .collected
            .lock()
            .map_err(|_| "a latency sink panicked")?;
        if let Some(e) = c.error.take() {
            return Err(e);
        }
        Ok(std::mem::replace(&mut c.rows, RowArrivals::new()))
    }
}

impl SinkFactory for LatencySinkFactory {
    fn open(&self, _shard: usize) -> spillway_connectors::Result<Box<dyn Sink>> {
        self.sinks_opened.fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(LatencySink {
            factory: self.clone(),
            windows: Vec::new(),
            rows: RowArrivals::new(),
            rows_written: 0,
        }))
    }

    fn close(&self) -> spillway_connectors::Result<()> {
        Ok(())
    }

    fn describe(&self) -> String {
        "latency benchmark sink (timestamps and checks each result row)".into()
    }
}

/// The sink of one shard.
pub struct LatencySink {
    factory: LatencySinkFactory,
    windows: Vec<WindowArrival>,
    rows: RowArrivals,
    rows_written: u64,
}

fn column<'a>(
    batch: &'a RecordBatch,
    name: &str,
    want: &DataType,
) -> spillway_connectors::Result<&'a dyn Array> {
    crate::checking_sink::checked_column("latency sink", batch, name, want)
}

const TS: DataType = DataType::Timestamp(TimeUnit::Millisecond, None);

impl LatencySink {
    fn windows(&mut self, batch: &RecordBatch, arrival_ns: u64) -> spillway_connectors::Result<()> {
        let symbols = column(batch, "symbol", &DataType::Utf8)?.as_string::<i32>();
        let starts = column(batch, "window_start", &TS)?.as_primitive::<TimestampMillisecondType>();
        let ends = column(batch, "window_end", &TS)?.as_primitive::<TimestampMillisecondType>();
        let counts = column(batch, "trades", &DataType::Int64)?.as_primitive::<Int64Type>();
        if self.windows.len() + batch.num_rows() > WINDOW_ARRIVALS_MAX {
            return Err(ConnectorError::Limit(format!(
                "latency sink: more than {WINDOW_ARRIVALS_MAX} result rows (WINDOW_ARRIVALS_MAX)"
            )));
        }
        for i in 0..batch.num_rows() {
            self.windows.push(WindowArrival {
                symbol: symbols.value(i).to_string(),
                window_start: starts.value(i),
                window_end: ends.value(i),
                count: counts.value(i),
                arrival_ns,
            });
        }
        Ok(())
    }

    fn rows(
        &mut self,
        batch: &RecordBatch,
        arrival_ns: u64,
        schedule: &EventSchedule,
        volume_min: i64,
    ) -> spillway_connectors::Result<()> {
        let bad = |m: String| Err(ConnectorError::Internal(format!("latency sink: {m}")));
        let symbols = column(batch, "symbol", &DataType::Utf8)?.as_string::<i32>();
        let prices = column(batch, "price", &DataType::Float64)?.as_primitive::<Float64Type>();
        let volumes = column(batch, "volume", &DataType::Int64)?.as_primitive::<Int64Type>();
        let times = column(batch, "ts", &TS)?.as_primitive::<TimestampMillisecondType>();
        for i in 0..batch.num_rows() {
            let price = prices.value(i);
            if !(0.0..crate::latency_load::LOAD_EVENTS_MAX as f64).contains(&price)
                || price.fract() != 0.0
            {
                return bad(format!(
                    "row with price {price} was not generated (price = event number)"
                ));
            }
            let seq = price as u64;
            let e = schedule.event(seq);
            if symbol_index(symbols.value(i)) != Some(e.symbol)
                || volumes.value(i) != e.volume
                || times.value(i) != e.ts_ms
            {
                return bad(format!(
                    "row ({}, {price}, {}, {}) differs from event {seq} as sent ({:?})",
                    symbols.value(i),
                    volumes.value(i),
                    times.value(i),
                    e
                ));
            }
            if e.volume <= volume_min {
                return bad(format!(
                    "event {seq} has volume {} but passed the filter volume > {volume_min}",
                    e.volume
                ));
            }
            if !self.rows.mark(seq) {
                return bad(format!("the row of event {seq} arrived more than once"));
            }
            let us = arrival_ns.saturating_sub(schedule.intended_ns(seq)) / 1_000;
            self.rows.latency_us.saturating_record(us.max(1));
            self.rows.timeline.record(arrival_ns, us.max(1));
            self.rows.rows += 1;
        }
        Ok(())
    }

    fn hand_over(&mut self, error: Option<String>) {
        let Ok(mut c) = self.factory.collected.lock() else {
            return;
        };
        if c.windows.len() + self.windows.len() > WINDOW_ARRIVALS_MAX && c.error.is_none() {
            c.error = Some(format!(
                "more than {WINDOW_ARRIVALS_MAX} result rows in all"
            ));
        }
        c.windows.append(&mut self.windows);
        if let Err(e) = c.rows.merge(&mut self.rows) {
            c.error.get_or_insert(e);
        }
        self.rows = RowArrivals::new();
        if c.error.is_none() {
            c.error = error;
        }
    }
}

impl Sink for LatencySink {
    fn write(&mut self, batch: &RecordBatch) -> spillway_connectors::Result<()> {
        let arrival_ns = self.factory.start.elapsed().as_nanos() as u64;
        let result = match &self.factory.mode {
            LatencySinkMode::Windows => self.windows(batch, arrival_ns),
            LatencySinkMode::Rows {
                schedule,
                volume_min,
            } => match schedule.get() {
                Some(s) => {
                    let (s, min) = (*s, *volume_min);
                    self.rows(batch, arrival_ns, &s, min)
                }
                None => Err(ConnectorError::Internal(
                    "latency sink: a row arrived before the load started".into(),
                )),
            },
        };
        if let Err(e) = result {
            self.hand_over(Some(e.to_string()));
            return Err(e);
        }
        self.rows_written += batch.num_rows() as u64;
        self.factory
            .rows_received
            .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn flush(&mut self) -> spillway_connectors::Result<()> {
        self.hand_over(None);
        Ok(())
    }

    fn rows_written(&self) -> u64 {
        self.rows_written
    }
}

impl Drop for LatencySink {
    fn drop(&mut self) {
        self.hand_over(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{Field, Schema};

    fn schedule() -> EventSchedule {
        EventSchedule {
            rate_total: 1_000,
            partitions: 2,
            epoch_ms_start: 1_700_000_000_000,
            seed: 1,
            offset_ns: 0,
        }
    }

    fn rows_batch(s: &EventSchedule, seqs: &[u64], tamper: bool) -> RecordBatch {
        let events: Vec<_> = seqs.iter().map(|&q| s.event(q)).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, true),
            Field::new("price", DataType::Float64, true),
            Field::new("volume", DataType::Int64, true),
            Field::new("ts", TS, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(
                    events
                        .iter()
                        .map(|e| crate::latency_load::symbol_name(e.symbol))
                        .collect::<Vec<_>>(),
                )),
                Arc::new(Float64Array::from(
                    seqs.iter().map(|&q| q as f64).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    events
                        .iter()
                        .map(|e| e.volume + i64::from(tamper))
                        .collect::<Vec<_>>(),
                )),
                Arc::new(TimestampMillisecondArray::from(
                    events.iter().map(|e| e.ts_ms).collect::<Vec<_>>(),
                )),
            ],
        )
        .expect("batch")
    }

    fn rows_mode(s: EventSchedule) -> LatencySinkMode {
        LatencySinkMode::Rows {
            schedule: Arc::new(OnceLock::from(s)),
            volume_min: 500,
        }
    }

    fn passing(s: &EventSchedule, n: usize) -> Vec<u64> {
        (0..10_000u64)
            .filter(|&q| s.event(q).volume > 500)
            .take(n)
            .collect()
    }

    #[test]
    fn filter_rows_are_checked_timed_and_merged_across_shards() {
        let s = schedule();
        let f = LatencySinkFactory::new(Instant::now(), rows_mode(s));
        let seqs = passing(&s, 6);
        let mut a = f.open(0).expect("open");
        let mut b = f.open(1).expect("open");
        a.write(&rows_batch(&s, &seqs[..3], false)).expect("write");
        b.write(&rows_batch(&s, &seqs[3..], false)).expect("write");
        assert_eq!(f.rows_received(), 6);
        assert_eq!(f.sinks_opened(), 2);
        drop((a, b));
        let rows = f.take_rows().expect("rows");
        assert_eq!(rows.rows, 6);
        assert_eq!(rows.latency_us.len(), 6);
        let seen: u32 = rows.seen.iter().map(|w| w.count_ones()).sum();
        assert_eq!(seen, 6);
    }

    #[test]
    fn a_duplicate_row_across_shards_fails() {
        let s = schedule();
        let f = LatencySinkFactory::new(Instant::now(), rows_mode(s));
        let seqs = passing(&s, 2);
        let mut a = f.open(0).expect("open");
        let mut b = f.open(1).expect("open");
        a.write(&rows_batch(&s, &seqs, false)).expect("write");
        b.write(&rows_batch(&s, &seqs[..1], false)).expect("write");
        drop((a, b));
        let e = f.take_rows().expect_err("duplicate");
        assert!(e.contains("more than once"), "{e}");
    }

    #[test]
    fn a_changed_row_or_a_filtered_event_is_an_error() {
        let s = schedule();
        let f = LatencySinkFactory::new(Instant::now(), rows_mode(s));
        let mut a = f.open(0).expect("open");
        let e = a
            .write(&rows_batch(&s, &passing(&s, 1), true))
            .expect_err("tampered");
        assert!(e.to_string().contains("differs from event"), "{e}");
        let low: Vec<u64> = (0..1000u64)
            .filter(|&q| s.event(q).volume <= 500)
            .take(1)
            .collect();
        let e = a.write(&rows_batch(&s, &low, false)).expect_err("filtered");
        assert!(e.to_string().contains("passed the filter"), "{e}");
    }

    #[test]
    fn windowed_rows_are_kept_with_their_arrival() {
        let f = LatencySinkFactory::new(Instant::now(), LatencySinkMode::Windows);
        let schema = Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, true),
            Field::new("window_start", TS, false),
            Field::new("window_end", TS, false),
            Field::new("trades", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["S01", "S02"])),
                Arc::new(TimestampMillisecondArray::from(vec![0, 0])),
                Arc::new(TimestampMillisecondArray::from(vec![1000, 1000])),
                Arc::new(Int64Array::from(vec![3, 4])),
            ],
        )
        .expect("batch");
        let mut a = f.open(0).expect("open");
        a.write(&batch).expect("write");
        drop(a);
        let w = f.take_windows().expect("windows");
        assert_eq!(w.len(), 2);
        assert_eq!(
            (w[1].symbol.as_str(), w[1].count, w[1].window_end),
            ("S02", 4, 1000)
        );
    }
}
