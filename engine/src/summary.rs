//! The human-readable summary printed at the end of `run` and `demo`.

use std::fmt::Write;

use crate::job::JobReport;

fn ms(us: u64) -> String {
    format!("{:.3} ms", us as f64 / 1000.0)
}

/// A multi-line summary of a finished job.
pub fn summarize(report: &JobReport) -> String {
    let mut s = String::new();
    let secs = report.elapsed.as_secs_f64();
    let shards = report.shards.len().max(1);
    let eps = report.events_per_second();
    let _ = writeln!(
        s,
        "events in:      {} in {:.2} s = {:.0} events/s ({:.0} events/s per core, {} shards)",
        report.records_in(),
        secs,
        eps,
        eps / shards as f64,
        shards
    );
    let _ = writeln!(
        s,
        "results out:    {} rows ({} window firings over {} shards)",
        report.rows_out(),
        report.windows_out(),
        shards
    );
    let late = report.late_events();
    let _ = write!(s, "late events:    {late} (dropped, counted)");
    if report.late_rows_out() > 0 {
        let _ = write!(
            s,
            "; {} written to the late-data sink",
            report.late_rows_out()
        );
    }
    if report.windows_updated() > 0 {
        let _ = write!(
            s,
            "; {} windows emitted again with late updates (+U)",
            report.windows_updated()
        );
    }
    if report.late_partial_groups() > 0 {
        let _ = write!(
            s,
            "; {} late partial groups from shards that were idle",
            report.late_partial_groups()
        );
    }
    let _ = writeln!(s);
    let skipped = report.skipped_total();
    let _ = write!(s, "skipped input:  {skipped}");
    if skipped > 0 {
        let reasons: Vec<String> = report
            .skipped()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        let _ = write!(s, " ({})", reasons.join(", "));
    }
    let _ = writeln!(s);
    let duplicates = report.duplicates_skipped();
    if duplicates > 0 {
        let _ = writeln!(
            s,
            "duplicates:     {duplicates} repartitioned rows sent again after a move, dropped"
        );
    }
    for sample in report.samples() {
        let _ = writeln!(s, "  e.g. {sample}");
    }
    let h = report.latency_us();
    if !h.is_empty() {
        let _ = writeln!(
            s,
            "latency from window close to result: p50 {}  p99 {}  max {}  ({} windows)",
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max()),
            h.len()
        );
    }
    if let Some(c) = &report.checkpoints {
        let mut stall = crate::emitter::latency_histogram();
        for shard in &report.shards {
            let _ = stall.add(&shard.checkpoint_stall_us);
        }
        let _ = write!(
            s,
            "checkpoints:    {} committed (last epoch {}{}), {} bytes",
            c.checkpoints,
            c.committed,
            if c.final_committed { ", final" } else { "" },
            c.bytes
        );
        if !c.duration_us.is_empty() {
            let _ = write!(
                s,
                "; duration p50 {} p99 {}; hot-path stall p50 {} p99 {} max {}",
                ms(c.duration_us.value_at_quantile(0.5)),
                ms(c.duration_us.value_at_quantile(0.99)),
                ms(stall.value_at_quantile(0.5)),
                ms(stall.value_at_quantile(0.99)),
                ms(stall.max())
            );
        }
        let _ = writeln!(s);
    }
    s
}
