//! A sink that keeps what the trades query produced, so a benchmark can check its result
//! before it reports a figure: the (symbol, window start, COUNT) of every row.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMillisecondType};
use arrow::record_batch::RecordBatch;
use spillway_connectors::{ConnectorError, Sink, SinkFactory};

use crate::error::{BenchError, Result};
use crate::trades_data::Expected;

/// Largest number of result rows the checking sinks of one job keep.
pub const CHECK_ROWS_MAX: usize = 10_000_000;

/// Column names of the sink table of `examples/trades.sql`.
const SYMBOL_COLUMN: &str = "symbol";
const WINDOW_START_COLUMN: &str = "window_start";
const COUNT_COLUMN: &str = "trades";

/// One result row, as far as the check needs it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ResultRow {
    symbol: String,
    window_start: i64,
    count: i64,
}

/// The rows of every shard's sink, merged when a sink flushes or is dropped.
#[derive(Debug, Default)]
struct Collected {
    rows: Vec<ResultRow>,
    /// The first error a sink met (wrong schema, too many rows).
    error: Option<String>,
}

/// Builds one [`CheckingSink`] per shard; all of them report to this factory.
#[derive(Debug, Clone, Default)]
pub struct CheckingSinkFactory {
    collected: Arc<Mutex<Collected>>,
}

impl CheckingSinkFactory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the rows every sink received against `expected`: each (symbol, window) once,
    /// the sum of COUNT(*) equal to the number of trades, one row per (symbol, window) pair,
    /// and per window the same symbol counts as computed from the trades.
    pub fn check(&self, expected: &Expected) -> Result<ResultSummary> {
        let collected = self
            .collected
            .lock()
            .map_err(|_| BenchError::WrongResult("a checking sink panicked".into()))?;
        if let Some(e) = &collected.error {
            return Err(BenchError::WrongResult(e.clone()));
        }
        check_rows(&collected.rows, expected)
    }
}

/// What a checked result held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultSummary {
    /// Result rows.
    pub rows: u64,
    /// Sum of the COUNT(*) column.
    pub count_sum: u64,
    /// Distinct windows.
    pub windows: u64,
}

fn check_rows(rows: &[ResultRow], expected: &Expected) -> Result<ResultSummary> {
    let wrong = |m: String| Err(BenchError::WrongResult(m));
    let mut seen: HashSet<(&str, i64)> = HashSet::with_capacity(rows.len());
    let mut windows: BTreeMap<i64, Vec<u64>> = BTreeMap::new();
    let mut count_sum: u64 = 0;
    for row in rows {
        if !seen.insert((row.symbol.as_str(), row.window_start)) {
            return wrong(format!(
                "window starting at {} ms of symbol '{}' was emitted more than once",
                row.window_start, row.symbol
            ));
        }
        if row.count <= 0 {
            return wrong(format!(
                "window starting at {} ms of symbol '{}' has COUNT(*) = {}",
                row.window_start, row.symbol, row.count
            ));
        }
        count_sum += row.count as u64;
        windows
            .entry(row.window_start)
            .or_default()
            .push(row.count as u64);
    }
    if count_sum != expected.events {
        return wrong(format!(
            "the sum of COUNT(*) over all result rows is {count_sum}, expected {} (the trades \
             generated)",
            expected.events
        ));
    }
    if rows.len() as u64 != expected.rows() {
        return wrong(format!(
            "{} result rows, expected {} (one per (symbol, window) pair of the trades)",
            rows.len(),
            expected.rows()
        ));
    }
    for counts in windows.values_mut() {
        counts.sort_unstable();
    }
    for (start, want) in &expected.windows {
        match windows.get(start) {
            Some(got) if got == want => {}
            Some(got) => {
                return wrong(format!(
                    "window starting at {start} ms: symbol counts {got:?}, expected {want:?}"
                ))
            }
            None => return wrong(format!("window starting at {start} ms is missing")),
        }
    }
    if let Some(start) = windows.keys().find(|s| !expected.windows.contains_key(s)) {
        return wrong(format!(
            "window starting at {start} ms was emitted but holds no trade"
        ));
    }
    Ok(ResultSummary {
        rows: rows.len() as u64,
        count_sum,
        windows: windows.len() as u64,
    })
}

impl SinkFactory for CheckingSinkFactory {
    fn open(&self, _shard: usize) -> spillway_connectors::Result<Box<dyn Sink>> {
        Ok(Box::new(CheckingSink {
            collected: self.collected.clone(),
            rows: Vec::new(),
            rows_written: 0,
        }))
    }

    fn close(&self) -> spillway_connectors::Result<()> {
        Ok(())
    }

    fn describe(&self) -> String {
        "benchmark result check (keeps symbol, window_start and COUNT(*) of each row)".into()
    }
}

/// The sink of one shard: extracts the checked columns of each batch.
pub struct CheckingSink {
    collected: Arc<Mutex<Collected>>,
    rows: Vec<ResultRow>,
    rows_written: u64,
}

/// Column `name` of a result batch, checked to have type `want` and no NULLs; `who` names
/// the sink in messages.
pub(crate) fn checked_column<'a>(
    who: &str,
    batch: &'a RecordBatch,
    name: &str,
    want: &DataType,
) -> spillway_connectors::Result<&'a dyn Array> {
    let schema = batch.schema();
    let index = schema.index_of(name).map_err(|_| {
        ConnectorError::Internal(format!(
            "{who}: the result has no column '{name}' (columns: {:?})",
            schema.fields().iter().map(|f| f.name()).collect::<Vec<_>>()
        ))
    })?;
    let array = batch.column(index).as_ref();
    if array.data_type() != want {
        return Err(ConnectorError::Internal(format!(
            "{who}: column '{name}' is {}, expected {want}",
            array.data_type()
        )));
    }
    if array.null_count() > 0 {
        return Err(ConnectorError::Internal(format!(
            "{who}: column '{name}' holds NULLs"
        )));
    }
    Ok(array)
}

impl CheckingSink {
    fn extract(&mut self, batch: &RecordBatch) -> spillway_connectors::Result<()> {
        let symbols = checked_column("checking sink", batch, SYMBOL_COLUMN, &DataType::Utf8)?
            .as_string::<i32>();
        let starts = checked_column(
            "checking sink",
            batch,
            WINDOW_START_COLUMN,
            &DataType::Timestamp(TimeUnit::Millisecond, None),
        )?
        .as_primitive::<TimestampMillisecondType>();
        let counts = checked_column("checking sink", batch, COUNT_COLUMN, &DataType::Int64)?
            .as_primitive::<Int64Type>();
        if self.rows.len() + batch.num_rows() > CHECK_ROWS_MAX {
            return Err(ConnectorError::Limit(format!(
                "checking sink: more than {CHECK_ROWS_MAX} result rows (CHECK_ROWS_MAX)"
            )));
        }
        for i in 0..batch.num_rows() {
            if symbols.is_null(i) || starts.is_null(i) || counts.is_null(i) {
                return Err(ConnectorError::Internal(format!(
                    "checking sink: row {i} has a NULL symbol, window_start or COUNT(*)"
                )));
            }
            self.rows.push(ResultRow {
                symbol: symbols.value(i).to_string(),
                window_start: starts.value(i),
                count: counts.value(i),
            });
        }
        Ok(())
    }

    /// Hands the rows kept so far to the factory.
    fn hand_over(&mut self, error: Option<String>) {
        if let Ok(mut c) = self.collected.lock() {
            if c.rows.len() + self.rows.len() > CHECK_ROWS_MAX && c.error.is_none() {
                c.error = Some(format!(
                    "more than {CHECK_ROWS_MAX} result rows in all (CHECK_ROWS_MAX)"
                ));
            }
            c.rows.append(&mut self.rows);
            if c.error.is_none() {
                c.error = error;
            }
        }
    }
}

impl Sink for CheckingSink {
    fn write(&mut self, batch: &RecordBatch) -> spillway_connectors::Result<()> {
        if let Err(e) = self.extract(batch) {
            self.hand_over(Some(e.to_string()));
            return Err(e);
        }
        self.rows_written += batch.num_rows() as u64;
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

impl Drop for CheckingSink {
    fn drop(&mut self) {
        self.hand_over(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{Field, Schema};

    fn batch(rows: &[(&str, i64, i64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, true),
            Field::new(
                "window_start",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                true,
            ),
            Field::new("trades", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(TimestampMillisecondArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
            ],
        )
        .expect("batch")
    }

    fn expected(windows: &[(i64, &[u64])]) -> Expected {
        Expected {
            events: windows.iter().flat_map(|w| w.1).sum(),
            windows: windows.iter().map(|(s, c)| (*s, c.to_vec())).collect(),
        }
    }

    fn run(shard_batches: &[&[(&str, i64, i64)]]) -> CheckingSinkFactory {
        let factory = CheckingSinkFactory::new();
        for (shard, rows) in shard_batches.iter().enumerate() {
            let mut sink = factory.open(shard).expect("open");
            sink.write(&batch(rows)).expect("write");
            assert_eq!(sink.rows_written(), rows.len() as u64);
            sink.flush().expect("flush");
        }
        factory
    }

    #[test]
    fn rows_of_several_shards_pass_the_check() {
        let f = run(&[&[("A", 0, 3), ("B", 0, 1)], &[("A", 1000, 2)]]);
        let s = f
            .check(&expected(&[(0, &[1, 3]), (1000, &[2])]))
            .expect("check");
        assert_eq!(
            s,
            ResultSummary {
                rows: 3,
                count_sum: 6,
                windows: 2
            }
        );
    }

    #[test]
    fn a_lost_event_fails_the_check() {
        let f = run(&[&[("A", 0, 2), ("B", 0, 1)]]);
        let e = f.check(&expected(&[(0, &[1, 3])])).expect_err("lost");
        assert!(e.to_string().contains("sum of COUNT(*)"), "{e}");
    }

    #[test]
    fn a_window_emitted_twice_fails_the_check() {
        let f = run(&[&[("A", 0, 1)], &[("A", 0, 1)]]);
        let e = f.check(&expected(&[(0, &[2])])).expect_err("twice");
        assert!(e.to_string().contains("more than once"), "{e}");
    }

    #[test]
    fn a_missing_row_fails_the_check() {
        let f = run(&[&[("A", 0, 2)]]);
        let e = f
            .check(&expected(&[(0, &[1, 1])]))
            .expect_err("missing row");
        assert!(e.to_string().contains("result rows"), "{e}");
    }

    #[test]
    fn counts_in_the_wrong_window_fail_the_check() {
        let f = run(&[&[("A", 0, 2), ("A", 1000, 1)]]);
        let e = f
            .check(&expected(&[(0, &[1]), (1000, &[2])]))
            .expect_err("shifted");
        assert!(e.to_string().contains("window starting at 0 ms"), "{e}");
    }

    proptest::proptest! {
        /// However the correct rows are spread over shards and batches, the check passes;
        /// with one count changed, it fails.
        #[test]
        fn any_split_of_correct_rows_passes_and_a_changed_count_fails(
            counts in proptest::collection::vec((0usize..8, 0i64..5, 1i64..100), 1..60),
            shards in 1usize..4,
            changed in 0usize..60,
        ) {
            let mut rows: std::collections::BTreeMap<(String, i64), i64> = Default::default();
            for (sym, win, n) in &counts {
                *rows.entry((format!("S{sym}"), win * 1000)).or_insert(0) += n;
            }
            let rows: Vec<(String, i64, i64)> =
                rows.into_iter().map(|((s, w), n)| (s, w, n)).collect();
            let mut windows: BTreeMap<i64, Vec<u64>> = BTreeMap::new();
            for (_, w, n) in &rows {
                windows.entry(*w).or_default().push(*n as u64);
            }
            for c in windows.values_mut() {
                c.sort_unstable();
            }
            let want = Expected {
                events: rows.iter().map(|r| r.2 as u64).sum(),
                windows,
            };
            let feed = |rows: &[(String, i64, i64)]| {
                let factory = CheckingSinkFactory::new();
                let mut sinks: Vec<_> =
                    (0..shards).map(|s| factory.open(s).expect("open")).collect();
                for (i, chunk) in rows.chunks(3).enumerate() {
                    let b: Vec<(&str, i64, i64)> =
                        chunk.iter().map(|r| (r.0.as_str(), r.1, r.2)).collect();
                    sinks[i % shards].write(&batch(&b)).expect("write");
                }
                drop(sinks);
                factory
            };
            proptest::prop_assert!(feed(&rows).check(&want).is_ok());
            let mut wrong = rows.clone();
            let i = changed % wrong.len();
            wrong[i].2 += 1;
            proptest::prop_assert!(feed(&wrong).check(&want).is_err());
        }
    }

    #[test]
    fn a_result_without_the_count_column_is_an_error() {
        let factory = CheckingSinkFactory::new();
        let mut sink = factory.open(0).expect("open");
        let schema = Arc::new(Schema::new(vec![Field::new(
            "symbol",
            DataType::Utf8,
            true,
        )]));
        let b = RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec!["A"]))])
            .expect("batch");
        let e = sink.write(&b).expect_err("no window_start");
        assert!(e.to_string().contains("window_start"), "{e}");
        drop(sink);
        assert!(factory.check(&expected(&[])).is_err());
    }
}
