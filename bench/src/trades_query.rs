//! The benchmarked query, `examples/trades.sql` (1 s tumbling windows, per symbol COUNT, SUM,
//! AVG, MIN, MAX), with its tables pointed at a benchmark's source and sink, and the checks
//! of a finished job that hold for every benchmark.

use std::collections::BTreeMap;

use spillway_engine::demo::TRADES_SQL;
use spillway_engine::job::{available_cores, JobReport};
use spillway_engine::plan::Program;
use spillway_engine::sql::parse_program;

use crate::error::{BenchError, Result};
use crate::trades_data::Expected;

/// The source table of the query.
pub const SOURCE_TABLE: &str = "trades";
/// The sink table of the query.
pub const SINK_TABLE: &str = "stats";
/// Table options the engine reads itself, kept when a benchmark replaces a table's options.
const KEPT_OPTIONS: &[&str] = &["scan.watermark.idle-timeout"];

/// The trades query with the WITH options of its source and sink tables replaced (the
/// watermark idle timeout of the source is kept).
pub fn trades_program(
    source_options: &[(&str, &str)],
    sink_options: &[(&str, &str)],
) -> Result<Program> {
    let mut program = parse_program(TRADES_SQL)?;
    replace_options(&mut program, SOURCE_TABLE, source_options)?;
    replace_options(&mut program, SINK_TABLE, sink_options)?;
    Ok(program)
}

fn replace_options(program: &mut Program, table: &str, options: &[(&str, &str)]) -> Result<()> {
    let def = program
        .tables
        .values_mut()
        .find(|t| t.name.eq_ignore_ascii_case(table))
        .ok_or_else(|| {
            BenchError::Config(format!("examples/trades.sql declares no table '{table}'"))
        })?;
    let kept: BTreeMap<String, String> = def
        .options
        .iter()
        .filter(|(k, _)| KEPT_OPTIONS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    def.options = kept;
    for (k, v) in options {
        def.options.insert((*k).to_string(), (*v).to_string());
    }
    Ok(())
}

/// The default number of shards for `partitions` partitions: one per partition, at most
/// one per core.
pub fn default_shards(partitions: usize) -> usize {
    partitions.min(available_cores().len()).max(1)
}

/// Checks what every benchmark's job must have done with the generated trades: read them
/// all, skipped none as bad input, dropped none as late.
pub fn check_report(report: &JobReport, expected: &Expected) -> Result<()> {
    check_clean_run(
        report,
        expected.events,
        "records (the trades generated)",
        expected.rows(),
        "one per (symbol, window) pair",
    )
}

/// Checks a benchmark job over an ordered input: it read `records` records, skipped none as
/// bad input, dropped none as late and emitted `rows` result rows (`what` and `rows_why`
/// explain the counts in messages).
pub fn check_clean_run(
    report: &JobReport,
    records: u64,
    what: &str,
    rows: u64,
    rows_why: &str,
) -> Result<()> {
    let wrong = |m: String| Err(BenchError::WrongResult(m));
    if report.records_in() != records {
        return wrong(format!(
            "the job read {} records, expected {records} {what}",
            report.records_in()
        ));
    }
    if report.skipped_total() > 0 {
        return wrong(format!(
            "the job skipped {} records as bad input: {:?}; e.g. {:?}",
            report.skipped_total(),
            report.skipped(),
            report.samples()
        ));
    }
    if report.late_events() > 0 || report.late_partial_groups() > 0 {
        return wrong(format!(
            "the job dropped {} late events and {} late partial groups of an input that is \
             never late under its watermark bound",
            report.late_events(),
            report.late_partial_groups()
        ));
    }
    if report.rows_out() != rows {
        return wrong(format!(
            "the job emitted {} result rows, expected {rows} ({rows_why})",
            report.rows_out()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_of_both_tables_are_replaced() {
        let program = trades_program(&[("connector", "memory")], &[("connector", "blackhole")])
            .expect("program");
        let source = program.table(SOURCE_TABLE).expect("source");
        assert_eq!(source.connector(), "memory");
        assert!(source.option("topic").is_none(), "Kafka options are gone");
        assert!(source.option("scan.watermark.idle-timeout").is_some());
        assert_eq!(source.watermark.map(|w| w.bound_ms), Some(1_000));
        let sink = program.table(SINK_TABLE).expect("sink");
        assert_eq!(sink.connector(), "blackhole");
        assert!(sink.option("path").is_none());
        assert_eq!(program.pipelines.len(), 1);
    }

    #[test]
    fn default_shards_is_bounded_by_partitions_and_cores() {
        assert_eq!(default_shards(1), 1);
        assert!(default_shards(64) <= available_cores().len());
        assert!(default_shards(64) >= 1);
    }
}
