//! `spillway explain`: the plan of a job, per shard.

use std::fmt::Write;

use crate::job::{assign_partitions, PreparedJob};
use crate::plan::{AggFunc, WindowKind};
use crate::sql::explain_expr;

/// Renders the plan: operators per shard, partitions per core, what crosses cores.
pub fn explain(job: &PreparedJob, pin_cores: bool) -> String {
    let p = &job.pipeline;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "INSERT INTO {} (from {})",
        job.sink_table.name, job.source_table.name
    );
    let _ = writeln!(s, "source: {}", job.source.describe());
    let _ = writeln!(s, "sink:   {}", job.sink.describe());
    let _ = writeln!(
        s,
        "shards: {} (one glommio executor each{})",
        job.shards,
        if pin_cores {
            ", pinned"
        } else {
            ", not pinned"
        }
    );
    for shard in 0..job.shards {
        let parts = assign_partitions(&job.partitions, shard, job.shards);
        let core = job.cores[shard % job.cores.len()];
        let list: Vec<String> = parts
            .iter()
            .map(|p| format!("{}[{}]", p.topic, p.partition))
            .collect();
        let _ = writeln!(
            s,
            "  shard {shard} on core {core}: {}",
            if list.is_empty() {
                "no partitions".to_string()
            } else {
                list.join(", ")
            }
        );
    }
    let _ = writeln!(s, "operators on every shard:");
    let mut step = 1;
    let mut line = |s: &mut String, text: String| {
        let _ = writeln!(s, "  {step}. {text}");
        step += 1;
    };
    let cols: Vec<String> = job
        .source_table
        .columns
        .iter()
        .map(|c| format!("{} {}", c.name, c.ty.sql_name()))
        .collect();
    line(
        &mut s,
        format!("decode JSON (simd-json) -> Arrow [{}]", cols.join(", ")),
    );
    if let Some(w) = job.source_table.watermark {
        line(
            &mut s,
            format!(
                "watermark per partition: max({}) - {} ms; shard = min over non-idle partitions (idle after {} ms)",
                job.source_table.columns[w.column].name,
                w.bound_ms,
                job.idle_timeout.as_millis()
            ),
        );
    }
    if let Some(f) = &p.filter {
        line(&mut s, format!("filter: {}", explain_expr(f)));
    }
    if let Some(a) = &p.aggregation {
        let keys: Vec<String> = a.group_keys.iter().map(explain_expr).collect();
        let aggs: Vec<String> = a
            .aggregates
            .iter()
            .map(|c| {
                let f = match c.func {
                    AggFunc::Count => "COUNT",
                    AggFunc::Sum => "SUM",
                    AggFunc::Avg => "AVG",
                    AggFunc::Min => "MIN",
                    AggFunc::Max => "MAX",
                };
                match &c.arg {
                    Some(e) => format!("{f}({})", explain_expr(e)),
                    None => format!("{f}(*)"),
                }
            })
            .collect();
        let window = match a.window.map(|w| w.kind) {
            Some(WindowKind::Tumble { size_ms }) => format!("TUMBLE {size_ms} ms"),
            None => "no window".into(),
        };
        line(
            &mut s,
            format!(
                "partial window aggregate ({window}) by [{}]: {} (state in a bumpalo arena per window)",
                keys.join(", "),
                aggs.join(", ")
            ),
        );
        if job.shards > 1 {
            line(
                &mut s,
                format!(
                    "exchange: when the shard watermark passes a window's end, its partial \
                     aggregates go to the shard owning each key (hash of the key mod {}), \
                     followed by the watermark, over bounded core-to-core queues",
                    job.shards
                ),
            );
        }
        line(
            &mut s,
            "final aggregate: merge partials; a window fires once every shard's watermark has passed its end"
                .into(),
        );
        if let Some(h) = &a.having {
            line(&mut s, format!("having: {}", explain_expr(h)));
        }
    }
    let proj: Vec<String> = p
        .projection
        .iter()
        .zip(p.output_schema.fields())
        .map(|(e, f)| format!("{} AS {}", explain_expr(e), f.name()))
        .collect();
    line(&mut s, format!("project: {}", proj.join(", ")));
    line(&mut s, format!("sink: {}", job.sink_table.name));
    s
}
