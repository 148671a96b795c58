//! `spillway-bench dimension`: the per-event cost of the lookup join, on one core.
//!
//! For each dimension size, a JSON-lines changelog of that many rows is read into one
//! shard's copy (the catch-up time is reported too), then the same pre-built batches of
//! trades are run through the shard's hot path twice per run: decode alone, and decode plus
//! the LEFT lookup join (keys drawn so that about 90 % of the events find a row). Before a
//! figure is kept, the joined output is checked: every event is there, the number of matches
//! is the number of events whose key exists, and every matched row carries the name of its
//! key. The report gives medians of the runs.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use arrow::array::{Array, AsArray};
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use spillway_connectors::RawBatch;
use spillway_engine::decode::JsonDecoder;
use spillway_engine::dimension::{prepare, ShardDimension};
use spillway_engine::sql::parse_program;

use crate::error::{BenchError, Result};

/// Rows of a stream batch (the engine's default `batch_rows_max`).
const BATCH_ROWS: usize = 4096;
/// One in this many events asks for a key the table does not have.
const MISS_EVERY: u64 = 10;

/// Options of `spillway-bench dimension`.
#[derive(Debug, Clone, Args)]
pub struct DimensionArgs {
    /// Dimension table sizes (rows), comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,100000,1000000")]
    pub rows: Vec<usize>,
    /// Stream events per run.
    #[arg(long, default_value_t = 2_000_000)]
    pub events: usize,
    /// Runs per size; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

/// The figures of one dimension size.
#[derive(Debug, Clone, PartialEq)]
pub struct DimensionFigure {
    pub rows: usize,
    /// Reading the changelog into the shard's copy, ms.
    pub catch_up_ms: f64,
    /// Bytes the copy holds.
    pub table_bytes: usize,
    /// Events per second through decode alone (median).
    pub decode_eps: f64,
    /// Events per second through decode and join (median).
    pub join_eps: f64,
    /// The join's own cost per event, ns (median of the per-run differences).
    pub join_ns_per_event: f64,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn key(i: u64) -> String {
    format!("K{i:08}")
}

/// Runs the benchmark for every size.
pub fn run_dimension_bench(args: &DimensionArgs) -> Result<Vec<DimensionFigure>> {
    if args.runs == 0 || args.runs > 99 || args.events == 0 || args.rows.is_empty() {
        return Err(BenchError::Config(
            "--runs must be 1..=99, --events and --rows non-empty".into(),
        ));
    }
    args.rows.iter().map(|&rows| run_size(rows, args)).collect()
}

fn run_size(rows: usize, args: &DimensionArgs) -> Result<DimensionFigure> {
    let dir = tempfile::tempdir().map_err(|e| BenchError::Config(format!("temp dir: {e}")))?;
    let path = dir.path().join("dim.jsonl");
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(&path).map_err(|e| BenchError::Config(format!("{e}")))?,
    );
    for i in 0..rows as u64 {
        writeln!(
            file,
            r#"{{"id":"{}","name":"name of {}","sector":"S{}"}}"#,
            key(i),
            i,
            i % 11
        )
        .map_err(|e| BenchError::Config(format!("{}: {e}", path.display())))?;
    }
    file.flush()
        .map_err(|e| BenchError::Config(format!("{}: {e}", path.display())))?;
    drop(file);
    let sql = format!(
        "CREATE TABLE trades (symbol STRING, price DOUBLE, volume BIGINT, ts TIMESTAMP(3),
           WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH ('connector' = 'filesystem', 'path' = 'unused');
         CREATE TABLE dim (id STRING, name STRING, sector STRING, PRIMARY KEY (id) NOT ENFORCED)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'dimension.rows-max' = '{}',
                 'dimension.bytes-max' = '8 GiB', 'dimension.startup-timeout' = '10 min');
         SELECT t.symbol, s.name FROM trades t LEFT JOIN dim s ON s.id = t.symbol;",
        path.display(),
        rows.max(1)
    );
    let program = parse_program(&sql)?;
    let pipeline = &program.pipelines[0];
    let setup = prepare(&program, pipeline, &BTreeMap::new())?
        .ok_or_else(|| BenchError::WrongResult("the query has no join".into()))?;
    let stream = program
        .table("trades")
        .ok_or_else(|| BenchError::WrongResult("no trades table".into()))?
        .schema();
    let mut dimension = ShardDimension::open(&setup, 0, &stream)?;
    let started = Instant::now();
    dimension.catch_up_blocking()?;
    let catch_up_ms = started.elapsed().as_secs_f64() * 1e3;
    let (keys, held, table_bytes) = dimension.size();
    if keys != rows || held != rows {
        return Err(BenchError::WrongResult(format!(
            "the copy holds {keys} keys and {held} rows of {rows}"
        )));
    }

    // The stream: keys mostly in the table; every MISS_EVERY-th event asks for a missing one.
    let mut rng = StdRng::seed_from_u64(7);
    let mut pristine = Vec::new();
    let mut hits = 0u64;
    let mut batch = RawBatch::default();
    for e in 0..args.events as u64 {
        let k = if e % MISS_EVERY == 0 {
            rows as u64 + rng.random_range(0..1000)
        } else {
            hits += 1;
            rng.random_range(0..rows as u64)
        };
        let line = format!(
            r#"{{"symbol":"{}","price":{}.5,"volume":{},"ts":{}}}"#,
            key(k),
            100 + e % 50,
            e % 1000,
            1_700_000_000_000 + e as i64
        );
        batch.push(0, e as i64, line.as_bytes());
        if batch.len() == BATCH_ROWS {
            pristine.push(std::mem::take(&mut batch));
        }
    }
    if !batch.is_empty() {
        pristine.push(batch);
    }

    let mut decode_eps = Vec::new();
    let mut join_eps = Vec::new();
    let mut join_ns = Vec::new();
    for _ in 0..args.runs {
        let mut decoder = JsonDecoder::new(stream.clone(), Some(3));
        let mut kept = Vec::new();
        let mut copies = copy_batches(&pristine);
        let t = Instant::now();
        let mut decoded = 0usize;
        for raw in &mut copies {
            decoded += decoder.decode(raw, &mut kept)?.num_rows();
        }
        let decode_s = t.elapsed().as_secs_f64();

        let mut copies = copy_batches(&pristine);
        let (mut joined, mut matched) = (0usize, 0u64);
        let t = Instant::now();
        for raw in &mut copies {
            let b = decoder.decode(raw, &mut kept)?;
            let out = dimension.join(&b, i64::MIN)?;
            joined += out.num_rows();
            let names = out.column(5).as_string::<i32>();
            matched += (names.len() - names.null_count()) as u64;
        }
        let join_s = t.elapsed().as_secs_f64();
        check(
            &mut dimension,
            &mut decoder,
            &pristine,
            (decoded, joined, matched),
            hits,
            args.events,
        )?;
        decode_eps.push(args.events as f64 / decode_s);
        join_eps.push(args.events as f64 / join_s);
        join_ns.push((join_s - decode_s).max(0.0) * 1e9 / args.events as f64);
    }
    Ok(DimensionFigure {
        rows,
        catch_up_ms,
        table_bytes,
        decode_eps: median(&mut decode_eps),
        join_eps: median(&mut join_eps),
        join_ns_per_event: median(&mut join_ns),
    })
}

fn copy_batches(batches: &[RawBatch]) -> Vec<RawBatch> {
    batches
        .iter()
        .map(|b| RawBatch {
            data: b.data.clone(),
            ends: b.ends.clone(),
            partition: b.partition.clone(),
            offset: b.offset.clone(),
            ..RawBatch::default()
        })
        .collect()
}

/// Refuses a figure unless the join's output is right: the counts, and the first batch
/// joined again with every row's name compared with its key's.
fn check(
    dimension: &mut ShardDimension,
    decoder: &mut JsonDecoder,
    pristine: &[RawBatch],
    counts: (usize, usize, u64),
    hits: u64,
    events: usize,
) -> Result<()> {
    let (decoded, joined, matched) = counts;
    if decoded != events || joined != events || matched != hits {
        return Err(BenchError::WrongResult(format!(
            "{events} events: {decoded} decoded, {joined} joined, {matched} matched (expected {hits})"
        )));
    }
    let (rows, _, _) = dimension.size();
    let mut first = copy_batches(&pristine[..1]);
    let mut kept = Vec::new();
    let batch = decoder.decode(&mut first[0], &mut kept)?;
    let out = dimension.join(&batch, i64::MIN)?;
    let symbols = out.column(0).as_string::<i32>();
    let names = out.column(5).as_string::<i32>();
    for i in 0..out.num_rows() {
        let k: usize = symbols.value(i)[1..]
            .parse()
            .map_err(|_| BenchError::WrongResult(format!("bad key {}", symbols.value(i))))?;
        let expected = (k < rows).then(|| format!("name of {k}"));
        let got = names.is_valid(i).then(|| names.value(i).to_string());
        if got != expected {
            return Err(BenchError::WrongResult(format!(
                "row {i} ({}): joined name {got:?}, expected {expected:?}",
                symbols.value(i)
            )));
        }
    }
    Ok(())
}

/// The report: one line per size.
pub fn render(figures: &[DimensionFigure]) -> String {
    let mut s = String::from(
        "dimension rows | catch-up ms | copy MiB | decode only ev/s/core | decode + join ev/s/core | join ns/event\n",
    );
    for f in figures {
        s.push_str(&format!(
            "{:>14} | {:>11.0} | {:>8.1} | {:>21.0} | {:>23.0} | {:>13.1}\n",
            f.rows,
            f.catch_up_ms,
            f.table_bytes as f64 / (1 << 20) as f64,
            f.decode_eps,
            f.join_eps,
            f.join_ns_per_event
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The benchmark in a tiny smoke mode, so it never rots: checked figures for two sizes.
    #[test]
    fn smoke_run_reports_checked_figures() {
        let args = DimensionArgs {
            rows: vec![10, 2000],
            events: 20_000,
            runs: 1,
        };
        let figures = run_dimension_bench(&args).expect("checked run");
        assert_eq!(figures.len(), 2);
        for f in &figures {
            assert!(f.decode_eps > 0.0 && f.join_eps > 0.0, "{f:?}");
            assert!(f.table_bytes > 0);
        }
        let text = render(&figures);
        assert_eq!(text.lines().count(), 3, "{text}");
        let bad = DimensionArgs {
            rows: vec![],
            events: 1,
            runs: 1,
        };
        assert!(run_dimension_bench(&bad).is_err());
    }
}
