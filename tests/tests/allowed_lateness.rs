//! Allowed lateness against its oracle (`spillway_tests::lateness_oracle`): late events within
//! the lateness update their windows, which are emitted again as "+U"; events beyond it are
//! counted and land in the late-data table exactly; each window's "+I" is emitted once.
//!
//! Inputs are in-memory partitions with explicitly placed late events, one partition per shard
//! and one record per poll, so which events are too late is exact (the shard's watermark is its
//! partition's). Keys are spread over the partitions: on 2 shards a window's partials come
//! from both. Every case runs on 1 and 2 shards, straight and stopped mid-way with a
//! checkpoint then resumed (same shard count: the per-partition rule needs one partition per
//! shard).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use serde_json::Value;
use spillway_connectors::file_sink::FileSinkFactory;
use spillway_connectors::memory_source::MemorySourceFactory;
use spillway_connectors::{EpochPrepared, EpochSinkContext, PartitionInfo, Sink, SinkFactory};
use spillway_engine::checkpoint::CheckpointConfig;
use spillway_engine::job::{JobOptions, JobReport};
use spillway_engine::limits::Limits;
use spillway_tests::compare::read_json_lines;
use spillway_tests::job::{options, run_sql, Scratch};
use spillway_tests::lateness_oracle::{
    expected, generate, LatenessCase, LatenessExpected, Trade, WindowResults,
};
use spillway_tests::oracle::format_time;
use spillway_tests::process::committed_rows;

const START_MS: i64 = 1_700_000_000_000;
const OUT_COLUMNS: &str = "symbol STRING, window_start TIMESTAMP(3), \
    window_end TIMESTAMP(3), trades BIGINT, volume BIGINT, row_kind STRING";

fn sql(case: &LatenessCase, out: &Path, late: &Path) -> String {
    let window = if case.slide_ms == case.size_ms {
        format!(
            "TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '{}' MILLISECOND)",
            case.size_ms
        )
    } else {
        format!(
            "HOP(TABLE trades, DESCRIPTOR(ts), INTERVAL '{}' MILLISECOND, INTERVAL '{}' MILLISECOND)",
            case.slide_ms, case.size_ms
        )
    };
    format!(
        "CREATE TABLE trades (symbol STRING, price DOUBLE, volume BIGINT, ts TIMESTAMP(3),
           WATERMARK FOR ts AS ts - INTERVAL '{bound}' MILLISECOND)
         WITH ('connector' = 'filesystem', 'path' = 'replaced-by-memory-partitions.jsonl',
               'format' = 'json', 'allowed-lateness' = '{lateness} ms',
               'late.sink' = 'late_trades');
         CREATE TABLE late_trades (symbol STRING, volume BIGINT, ts TIMESTAMP(3))
         WITH ('connector' = 'filesystem', 'path' = '{late}', 'format' = 'json');
         CREATE TABLE out ({OUT_COLUMNS})
         WITH ('connector' = 'filesystem', 'path' = '{out}', 'format' = 'json');
         INSERT INTO out
         SELECT symbol, window_start, window_end, COUNT(*), SUM(volume)
         FROM TABLE({window})
         GROUP BY symbol, window_start, window_end;",
        bound = case.bound_ms,
        lateness = case.lateness_ms,
        late = late.display(),
        out = out.display(),
    )
}

/// Options: one shard per partition, one record per poll, the partitions in memory.
fn job_options(data: &[Vec<Trade>]) -> JobOptions {
    let partitions = data
        .iter()
        .map(|trades| {
            let text: Vec<String> = trades.iter().map(Trade::line).collect();
            Arc::new(text.join("\n").into_bytes())
        })
        .collect();
    JobOptions {
        limits: Limits {
            batch_rows_max: 1,
            ..Limits::default()
        },
        source_override: Some(Arc::new(MemorySourceFactory::new("trades", partitions))),
        ..options(data.len())
    }
}

/// What the runs of one job produced, in output order.
struct Produced {
    rows: Vec<Value>,
    late_rows: Vec<Value>,
    late_events: u64,
    late_rows_out: u64,
    windows_updated: u64,
    late_partial_groups: u64,
    /// Runs it took (more than one: stopped with a checkpoint and resumed).
    runs: usize,
}

impl Produced {
    fn add(&mut self, r: &JobReport) {
        self.late_events += r.late_events();
        self.late_rows_out += r.late_rows_out();
        self.windows_updated += r.windows_updated();
        self.late_partial_groups += r.late_partial_groups();
        self.runs += 1;
    }
}

fn empty() -> Produced {
    Produced {
        rows: Vec::new(),
        late_rows: Vec::new(),
        late_events: 0,
        late_rows_out: 0,
        windows_updated: 0,
        late_partial_groups: 0,
        runs: 0,
    }
}

fn run_straight(data: &[Vec<Trade>], case: &LatenessCase) -> Produced {
    let scratch = Scratch::new();
    let (out, late) = (scratch.path("out.jsonl"), scratch.path("late.jsonl"));
    let text = sql(case, &out, &late);
    let report = run_sql(&text, &job_options(data)).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mut p = empty();
    p.add(&report);
    p.rows = read_json_lines(&out).expect("rows");
    p.late_rows = read_json_lines(&late).expect("late rows");
    p
}

/// The filesystem sink in epoch mode (as the engine builds it when the job checkpoints), which
/// sets `stop` once it has been handed `after` rows: a run stopped mid-way whatever the
/// machine's speed.
struct StopAfterRows {
    inner: Arc<dyn SinkFactory>,
    stop: Arc<AtomicBool>,
    rows: Arc<AtomicU64>,
    after: u64,
}

struct StopAfterRowsSink {
    inner: Box<dyn Sink>,
    stop: Arc<AtomicBool>,
    rows: Arc<AtomicU64>,
    after: u64,
}

impl SinkFactory for StopAfterRows {
    fn open(&self, shard: usize) -> spillway_connectors::Result<Box<dyn Sink>> {
        Ok(Box::new(StopAfterRowsSink {
            inner: self.inner.open(shard)?,
            stop: self.stop.clone(),
            rows: self.rows.clone(),
            after: self.after,
        }))
    }
    fn close(&self) -> spillway_connectors::Result<()> {
        self.inner.close()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn epoch_committed(&self) -> bool {
        self.inner.epoch_committed()
    }
    fn commit_epochs(
        &self,
        epoch: u64,
        positions: &BTreeMap<PartitionInfo, i64>,
    ) -> spillway_connectors::Result<()> {
        self.inner.commit_epochs(epoch, positions)
    }
    fn bind_job(&self, context: &EpochSinkContext) -> spillway_connectors::Result<()> {
        self.inner.bind_job(context)
    }
    fn recover_epochs(&self, committed: Option<u64>) -> spillway_connectors::Result<()> {
        self.inner.recover_epochs(committed)
    }
}

impl Sink for StopAfterRowsSink {
    fn write(&mut self, batch: &RecordBatch) -> spillway_connectors::Result<()> {
        let n = batch.num_rows() as u64;
        if self.rows.fetch_add(n, Ordering::AcqRel) + n >= self.after {
            self.stop.store(true, Ordering::Release);
        }
        self.inner.write(batch)
    }
    fn flush(&mut self) -> spillway_connectors::Result<()> {
        self.inner.flush()
    }
    fn rows_written(&self) -> u64 {
        self.inner.rows_written()
    }
    fn prepare_epoch(&mut self, epoch: u64) -> spillway_connectors::Result<EpochPrepared> {
        self.inner.prepare_epoch(epoch)
    }
}

/// Runs with checkpoints every 10 ms, each run stopped (gracefully, with a final checkpoint)
/// once it has written `stop_after_rows` more result rows, and resumed, until the input is
/// done.
fn run_resumed(data: &[Vec<Trade>], case: &LatenessCase, stop_after_rows: u64) -> Produced {
    run_resumed_on(data, case, stop_after_rows, &[data.len()])
}

/// [`run_resumed`] with run `i` on `shards[i % shards.len()]` shards.
fn run_resumed_on(
    data: &[Vec<Trade>],
    case: &LatenessCase,
    stop_after_rows: u64,
    shards: &[usize],
) -> Produced {
    let scratch = Scratch::new();
    let (out, late) = (scratch.path("out"), scratch.path("late"));
    let state = scratch.path("state");
    let text = sql(case, &out, &late);
    let mut p = empty();
    loop {
        let stop = Arc::new(AtomicBool::new(false));
        let options = BTreeMap::from([
            ("connector".to_string(), "filesystem".to_string()),
            ("path".to_string(), out.display().to_string()),
            ("format".to_string(), "json".to_string()),
        ]);
        let files = FileSinkFactory::from_options("out", &options).expect("file sink");
        let sink = StopAfterRows {
            inner: Arc::new(files.with_epochs()),
            stop: stop.clone(),
            rows: Arc::new(AtomicU64::new(0)),
            after: stop_after_rows,
        };
        let opts = JobOptions {
            checkpoint: Some(
                CheckpointConfig::new(&state, Duration::from_millis(10)).expect("config"),
            ),
            stop,
            sink_override: Some(Arc::new(sink)),
            shards: Some(shards[p.runs % shards.len()]),
            ..job_options(data)
        };
        let report = run_sql(&text, &opts).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let c = report.checkpoints.as_ref().expect("the job checkpoints");
        assert!(c.final_committed, "every run ends with a final checkpoint");
        p.add(&report);
        if report.shards.iter().all(|s| s.finished) {
            break;
        }
        assert!(p.runs < 50, "the job does not finish");
    }
    p.rows = committed_rows(&out).expect("rows");
    p.late_rows = committed_rows(&late).expect("late rows");
    p
}

/// (symbol, window_start, window_end) of a result row, times formatted as in the output.
type RowKey = (String, String, String);

fn row_key(r: &Value) -> RowKey {
    let s = |f: &str| {
        r[f].as_str()
            .unwrap_or_else(|| panic!("{f} in {r}"))
            .to_string()
    };
    (s("symbol"), s("window_start"), s("window_end"))
}

fn row_value(r: &Value) -> (u64, i64) {
    let trades = r["trades"]
        .as_u64()
        .unwrap_or_else(|| panic!("trades in {r}"));
    let volume = r["volume"]
        .as_i64()
        .unwrap_or_else(|| panic!("volume in {r}"));
    (trades, volume)
}

fn formatted(results: &WindowResults) -> BTreeMap<RowKey, (u64, i64)> {
    results
        .iter()
        .map(|((symbol, start, end), v)| {
            ((symbol.clone(), format_time(*start), format_time(*end)), *v)
        })
        .collect()
}

/// Sorts late rows by volume (unique per event).
fn by_volume(rows: &[Value]) -> Vec<Value> {
    let mut rows = rows.to_vec();
    rows.sort_by_key(|r| r["volume"].as_i64().unwrap_or(i64::MIN));
    rows
}

/// `exact`: the final results are deterministic (one shard, or TUMBLE).
fn check(what: &str, p: &Produced, want: &LatenessExpected, exact: bool) {
    // Beyond the lateness: counted, and in the late table exactly.
    let too_late = want.too_late.len() as u64;
    assert_eq!(p.late_events, too_late, "{what}: late events counted");
    assert_eq!(p.late_rows_out, too_late, "{what}: late rows written");
    assert_eq!(
        by_volume(&p.late_rows),
        by_volume(&want.too_late),
        "{what}: the late table holds exactly the too-late events"
    );
    assert_eq!(p.late_partial_groups, 0, "{what}: no partial dropped");
    assert!(p.windows_updated > 0, "{what}: some windows were updated");
    // Each window's +I once, never after a +U; the last row per window is final.
    let mut inserted = BTreeSet::new();
    let mut updated = BTreeSet::new();
    let mut last = BTreeMap::new();
    let mut firsts = BTreeMap::new();
    for r in &p.rows {
        let key = row_key(r);
        match r["row_kind"].as_str() {
            Some("+I") => {
                assert!(!updated.contains(&key), "{what}: +I after +U: {r}");
                assert!(inserted.insert(key.clone()), "{what}: +I twice: {r}");
                firsts.insert(key.clone(), row_value(r));
            }
            Some("+U") => {
                updated.insert(key.clone());
            }
            other => panic!("{what}: row kind {other:?} in {r}"),
        }
        last.insert(key, row_value(r));
    }
    if exact {
        assert_eq!(
            last,
            formatted(&want.final_results),
            "{what}: the last row of every window is its result over the events not too late"
        );
    } else {
        // HOP on several shards: whether a window past its lateness on the event's shard
        // still takes the event depends on the owner's watermark (the minimum over shards).
        let strict = formatted(&want.final_results);
        let loose = formatted(&want.final_results_loose);
        for (key, v) in &strict {
            assert!(
                last.contains_key(key),
                "{what}: window {key:?} ({v:?}) missing"
            );
        }
        for (key, &(n, volume)) in &last {
            let low = strict.get(key).copied().unwrap_or((0, 0));
            let high = loose.get(key).copied().unwrap_or((0, 0));
            assert!(
                low.0 <= n && n <= high.0 && low.1 <= volume && volume <= high.1,
                "{what}: window {key:?} has {:?}, not within {low:?} ..= {high:?}",
                (n, volume)
            );
        }
        assert_ne!(
            strict, loose,
            "{what}: the bounds differ (the data is meaningful)"
        );
    }
    if let Some(first) = &want.first_results {
        if p.runs == 1 {
            assert_eq!(
                firsts,
                formatted(first),
                "{what}: every +I holds the events that arrived before its watermark"
            );
        } else {
            // After a restart, windows the old run emitted come back as +U (no second +I);
            // every +I that was written is still the window's first result.
            for (key, v) in &firsts {
                assert_eq!(formatted(first).get(key), Some(v), "{what}: +I of {key:?}");
            }
        }
    }
}

fn check_case(name: &str, case: LatenessCase) {
    for shards in [1, 2] {
        let data = generate(shards, 10_000, START_MS, &case, 20, 11 + shards as u64);
        let want = expected(&data, &case);
        assert!(
            want.too_late.len() > 10 && want.late_within > 10,
            "{name}: the data has late events of both kinds ({} too late, {} within)",
            want.too_late.len(),
            want.late_within
        );
        let exact = shards == 1 || case.size_ms == case.slide_ms;
        let what = format!("{name} on {shards} shard(s), straight");
        check(&what, &run_straight(&data, &case), &want, exact);
        let what = format!("{name} on {shards} shard(s), stopped and resumed");
        let resumed = run_resumed(&data, &case, 300);
        assert!(
            resumed.runs > 1,
            "{what}: the first run was stopped mid-way"
        );
        check(&what, &resumed, &want, exact);
    }
}

#[test]
fn tumble_late_events_update_their_windows_and_too_late_ones_reach_the_late_table() {
    check_case(
        "TUMBLE 1 s, lateness 1.5 s",
        LatenessCase {
            size_ms: 1_000,
            slide_ms: 1_000,
            bound_ms: 200,
            lateness_ms: 1_500,
        },
    );
}

#[test]
fn hop_late_events_update_every_emitted_window_within_the_lateness() {
    check_case(
        "HOP 2 s every 500 ms, lateness 1 s",
        LatenessCase {
            size_ms: 2_000,
            slide_ms: 500,
            bound_ms: 150,
            lateness_ms: 1_000,
        },
    );
}

#[test]
fn without_a_row_kind_column_an_append_sink_is_refused() {
    let scratch = Scratch::new();
    let case = LatenessCase {
        size_ms: 1_000,
        slide_ms: 1_000,
        bound_ms: 100,
        lateness_ms: 1_000,
    };
    let text = sql(
        &case,
        &scratch.path("out.jsonl"),
        &scratch.path("late.jsonl"),
    )
    .replace(", row_kind STRING", "");
    let e = match run_sql(&text, &options(1)) {
        Ok(_) => panic!("planned without a row_kind column"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("re-emits updated windows") && e.contains("row_kind STRING"),
        "{e}"
    );
}

#[test]
fn resumed_on_other_shard_counts_every_window_is_inserted_once_and_ends_consistent() {
    // Two partitions read by 2, then 1, then 2 ... shards: which events are too late depends
    // on the shard layout of the moment (a shard's watermark is the minimum over its
    // partitions), so the oracle is the late table itself: every window ends as the batch
    // result over all events except those the late table received.
    let case = LatenessCase {
        size_ms: 1_000,
        slide_ms: 1_000,
        bound_ms: 200,
        lateness_ms: 1_500,
    };
    let data = generate(2, 10_000, START_MS, &case, 20, 5);
    let p = run_resumed_on(&data, &case, 300, &[2, 1]);
    assert!(
        p.runs > 2,
        "stopped and resumed on both shard counts ({} runs)",
        p.runs
    );
    assert_eq!(
        p.late_events,
        p.late_rows.len() as u64,
        "every too-late event is in the table"
    );
    assert_eq!(p.late_rows_out, p.late_events);
    assert_eq!(p.late_partial_groups, 0, "no partial dropped");
    let dropped: BTreeSet<i64> = p
        .late_rows
        .iter()
        .map(|r| {
            r["volume"]
                .as_i64()
                .unwrap_or_else(|| panic!("volume in {r}"))
        })
        .collect();
    assert_eq!(dropped.len(), p.late_rows.len(), "each too-late event once");
    let mut want = WindowResults::new();
    for t in data
        .iter()
        .flatten()
        .filter(|t| !dropped.contains(&t.volume))
    {
        for (start, end) in case.windows_of(t.ts) {
            let e = want.entry((t.symbol.clone(), start, end)).or_default();
            e.0 += 1;
            e.1 += t.volume;
        }
    }
    let mut inserted = BTreeSet::new();
    let mut last = BTreeMap::new();
    for r in &p.rows {
        let key = row_key(r);
        if r["row_kind"] == "+I" {
            assert!(inserted.insert(key.clone()), "+I twice: {r}");
        }
        last.insert(key, row_value(r));
    }
    assert_eq!(last, formatted(&want));
}
